//! The hooks API: the one extension point of the broker. The WebHook, and
//! later metrics, authentication and authorization plugins, attach here and
//! see the broker only through it.
//!
//! # Events
//!
//! Every broker event of the WebHook contract (`docs/webhook.md` §2) is an
//! [`Event`] variant, fired where that section says:
//!
//! | event | fired |
//! |---|---|
//! | `client.connect` | CONNECT received, before authentication; `client_id` as sent (may be empty; then `assigned` is the id it will get) |
//! | `client.connack` | CONNACK about to be sent, success or refusal |
//! | `client.connected` | after the successful CONNACK was queued |
//! | `client.disconnected` | the connection is about to close, for any reason |
//! | `client.subscribe` | per topic filter of a SUBSCRIBE, before authorization |
//! | `client.unsubscribe` | per topic filter of an UNSUBSCRIBE |
//! | `session.created` / `session.resumed` | a connection got a new / existing session |
//! | `session.subscribed` / `session.unsubscribed` | a subscription was added / removed |
//! | `session.takeovered` | a new connection took over a session that another connection owned |
//! | `session.discarded` | a clean-start connection discarded an existing session |
//! | `session.terminated` | a session ended (clean session closed, expired, discarded, taken over) |
//! | `message.publish` | a message is about to be routed (client PUBLISH, will, `$SYS`) |
//! | `message.delivered` | a message is about to be sent to a subscriber |
//! | `message.acked` | a subscriber acknowledged a QoS 1/2 message (PUBACK / PUBCOMP) |
//! | `message.dropped` | a message was dropped; [`DropReason`] says why |
//!
//! For one successful connection the order is always: `client.connect`,
//! then `session.takeovered` or `session.discarded` when they apply, then
//! `session.created` or `session.resumed`, then `client.connack`, then
//! `client.connected`. A refused connection fires `client.connect` and
//! `client.connack` only. A taken-over connection's `client.disconnected`
//! ([`DisconnectReason::TakenOver`]) always comes before its successor's
//! `client.connected`. A clean-start connection that replaces a session
//! fires `session.discarded` and then the old session's `session.terminated`
//! ([`TerminationReason::Discarded`]), also when it took the client id from a live
//! connection.
//!
//! For a SUBSCRIBE, each filter's `client.subscribe` is followed by its
//! `session.subscribed` (if granted) before the next filter's events; an
//! UNSUBSCRIBE likewise pairs `client.unsubscribe` with
//! `session.unsubscribed` (if the subscription existed).
//!
//! # Writing a handler
//!
//! A notification handler implements [`Handler`] and is registered with a
//! priority (higher runs first):
//!
//! ```
//! use herald_broker::hooks::{Event, Handler, Hooks};
//! use std::sync::Arc;
//!
//! struct Log;
//! impl Handler for Log {
//!     fn on_event(&self, event: &Event<'_>) {
//!         if let Event::MessagePublish { message } = event {
//!             println!("{} published to {}", message.from_client_id, message.topic);
//!         }
//!     }
//! }
//! let hooks = Hooks::default();
//! let id = hooks.add_handler(0, Arc::new(Log));
//! // ... later, e.g. on a configuration reload:
//! hooks.remove(id);
//! ```
//!
//! Handlers run inline on the connection's task, so they must not block or
//! do I/O: copy what you need (payloads are `Bytes`, cloning shares them)
//! and hand it to your own task through a bounded, non-blocking channel.
//! Events borrow the broker's data; nothing is copied to fire one. A
//! panicking handler is caught and logged; the connection goes on.
//!
//! Decision handlers ([`Authenticator`] for `client.authenticate`,
//! [`Authorizer`] for `client.check_acl`) may be async; they run in priority
//! order until one answers [`Decision::Allow`] or [`Decision::Deny`]. If all
//! answer [`Decision::Ignore`], the broker's own access control decides
//! ([`crate::access`]: `authz.deny_publish`, `authz.deny_subscribe`, the
//! installed sources and rules, the anonymous policy).
//! A decision handler that panics is logged and counts as `Ignore`.
//!
//! Registration works at start-up and at runtime; [`Hooks::replace_handler`]
//! swaps a handler atomically (no event is seen by neither or both).

use crate::ack::AckHolds;
use crate::message::Message;
pub use crate::reason::{DisconnectReason, DropReason, TerminationReason};
use crate::support::lock;
use crate::transport::{ListenerKind, PeerCert};
use arc_swap::{ArcSwap, Guard};
use bytes::Bytes;
use herald_codec::{ByteStr, Protocol, QoS, ReasonCode, SubOptions};
use std::future::Future;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

/// Who a client is, as events report it.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// Client id: as sent in CONNECT for `client.connect`, the assigned one
    /// afterwards.
    pub client_id: ByteStr,
    /// User name from CONNECT.
    pub username: Option<ByteStr>,
    /// Peer address (an IPv4-mapped IPv6 address is reported as IPv4).
    pub peer: SocketAddr,
    /// Protocol level.
    pub protocol: Protocol,
    /// Keep alive from CONNECT, seconds.
    pub keepalive: u16,
    /// Clean Session / Clean Start.
    pub clean_start: bool,
    /// When the connection was accepted (CONNECT handled), ms since epoch.
    pub connected_at_ms: u64,
    /// The kind of listener it connected through.
    pub listener: ListenerKind,
    /// The names of its verified TLS client certificate (for access rules
    /// by Common Name or Distinguished Name), if it gave one.
    pub cert: Option<Arc<PeerCert>>,
}

impl ClientInfo {
    /// `proto_ver` of the WebHook bodies: 3, 4 or 5.
    pub fn proto_ver(&self) -> u8 {
        self.protocol.level()
    }
}

/// A subscription as subscribe events report it.
#[derive(Debug, Clone, Copy)]
pub struct SubscriptionInfo<'a> {
    /// The filter without any `$share/{group}/` prefix.
    pub topic: &'a str,
    /// The share group, for `$share/{group}/...`.
    pub share: Option<&'a str>,
    /// Options as requested (client.subscribe) or granted (session.subscribed).
    pub options: SubOptions,
    /// Subscription identifier (5.0).
    pub subscription_id: Option<u32>,
}

/// A broker event. Borrowed from the broker: a handler that keeps data
/// copies (or clones `Bytes`/`ByteStr`, which shares them).
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// CONNECT received, before authentication.
    ClientConnect {
        /// The connecting client, client id as sent.
        client: &'a ClientInfo,
        /// When that id is empty: the id the broker gives this client if
        /// it accepts it (the `client_id` of every later event of the
        /// connection), so a handler can file this event with them.
        assigned: Option<&'a str>,
    },
    /// CONNACK about to be sent; `reason` is success or the refusal.
    ClientConnack {
        /// The client.
        client: &'a ClientInfo,
        /// The outcome, as a reason code (success or the refusal's).
        reason: ReasonCode,
    },
    /// Connected (after a successful CONNACK).
    ClientConnected {
        /// The client.
        client: &'a ClientInfo,
    },
    /// The connection is closing, and why.
    ClientDisconnected {
        /// The client.
        client: &'a ClientInfo,
        /// Why the connection closes.
        reason: DisconnectReason,
    },
    /// One filter of a SUBSCRIBE, before authorization.
    ClientSubscribe {
        /// The subscribing client.
        client: &'a ClientInfo,
        /// The filter and the options asked for.
        sub: SubscriptionInfo<'a>,
    },
    /// One filter of an UNSUBSCRIBE.
    ClientUnsubscribe {
        /// The client.
        client: &'a ClientInfo,
        /// The filter without any `$share/{group}/` prefix.
        topic: &'a str,
        /// The share group, for `$share/{group}/...`.
        share: Option<&'a str>,
    },
    /// A connection started a new session.
    SessionCreated {
        /// The session's client.
        client: &'a ClientInfo,
    },
    /// A connection resumed an existing session.
    SessionResumed {
        /// The session's client.
        client: &'a ClientInfo,
    },
    /// A subscription was added (or replaced: `is_new` false).
    SessionSubscribed {
        /// The session's client.
        client: &'a ClientInfo,
        /// The filter and the options granted.
        sub: SubscriptionInfo<'a>,
        /// False when it replaced a subscription to the same filter.
        is_new: bool,
    },
    /// A subscription was removed.
    SessionUnsubscribed {
        /// The session's client.
        client: &'a ClientInfo,
        /// The filter without any `$share/{group}/` prefix.
        topic: &'a str,
        /// The share group, for `$share/{group}/...`.
        share: Option<&'a str>,
    },
    /// A new connection took over the session of a connected client.
    SessionTakeovered {
        /// The new connection's client.
        client: &'a ClientInfo,
    },
    /// A clean-start connection discarded the client's existing session.
    SessionDiscarded {
        /// The new connection's client.
        client: &'a ClientInfo,
    },
    /// A session ended, and why.
    SessionTerminated {
        /// The session's client id.
        client_id: &'a str,
        /// The user name of the connection that last owned it.
        username: Option<&'a str>,
        /// Why it ended.
        reason: TerminationReason,
    },
    /// A message is about to be routed.
    MessagePublish {
        /// The message as published.
        message: &'a Message,
    },
    /// A message is about to be sent to a subscriber, with the QoS and
    /// RETAIN flag it receives.
    MessageDelivered {
        /// The subscriber.
        client: &'a ClientInfo,
        /// The message as published.
        message: &'a Message,
        /// The QoS it is delivered with (at most the subscription's).
        qos: QoS,
        /// The RETAIN flag it is delivered with.
        retain: bool,
    },
    /// A subscriber acknowledged a message.
    MessageAcked {
        /// The subscriber.
        client: &'a ClientInfo,
        /// The message as published.
        message: &'a Message,
        /// The QoS it was delivered with.
        qos: QoS,
        /// The RETAIN flag it was delivered with.
        retain: bool,
    },
    /// A message was dropped.
    MessageDropped {
        /// The message as published.
        message: &'a Message,
        /// Why it was dropped.
        reason: DropReason,
    },
}

impl Event<'_> {
    /// The event's name as in the WebHook contract (`client.connect`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Event::ClientConnect { .. } => "client.connect",
            Event::ClientConnack { .. } => "client.connack",
            Event::ClientConnected { .. } => "client.connected",
            Event::ClientDisconnected { .. } => "client.disconnected",
            Event::ClientSubscribe { .. } => "client.subscribe",
            Event::ClientUnsubscribe { .. } => "client.unsubscribe",
            Event::SessionCreated { .. } => "session.created",
            Event::SessionResumed { .. } => "session.resumed",
            Event::SessionSubscribed { .. } => "session.subscribed",
            Event::SessionUnsubscribed { .. } => "session.unsubscribed",
            Event::SessionTakeovered { .. } => "session.takeovered",
            Event::SessionDiscarded { .. } => "session.discarded",
            Event::SessionTerminated { .. } => "session.terminated",
            Event::MessagePublish { .. } => "message.publish",
            Event::MessageDelivered { .. } => "message.delivered",
            Event::MessageAcked { .. } => "message.acked",
            Event::MessageDropped { .. } => "message.dropped",
        }
    }
}

/// A notification handler: observes events, must not block.
pub trait Handler: Send + Sync {
    /// Called inline where the event happens.
    fn on_event(&self, event: &Event<'_>);

    /// `message.publish`, with the holds the publisher's acknowledgement
    /// may wait for ([`crate::ack`]): a handler whose work must be durable
    /// before the publisher is told its message is safe adds a hold (or
    /// refuses the message). The default treats it as any other event.
    fn on_publish(&self, event: &Event<'_>, holds: &mut AckHolds) {
        let _ = holds;
        self.on_event(event);
    }
}

/// The answer of a decision handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; later handlers are not asked.
    Allow,
    /// Refused with this reason code (e.g. 0x86, 0x87); later handlers are
    /// not asked.
    Deny(ReasonCode),
    /// No opinion; ask the next handler.
    Ignore,
}

/// A boxed future a decision handler returns.
pub type DecisionFuture<'a> = Pin<Box<dyn Future<Output = Decision> + Send + 'a>>;

/// What `client.authenticate` is asked about.
#[derive(Debug, Clone, Copy)]
pub struct AuthRequest<'a> {
    /// The client (client id as sent).
    pub client: &'a ClientInfo,
    /// Password from CONNECT.
    pub password: Option<&'a Bytes>,
}

/// What `client.check_acl` is asked about.
#[derive(Debug, Clone, Copy)]
pub struct AclRequest<'a> {
    /// The client.
    pub client: &'a ClientInfo,
    /// Publish or subscribe.
    pub action: AclAction,
    /// Topic name (publish) or filter without `$share` prefix (subscribe).
    pub topic: &'a str,
}

/// What a client wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclAction {
    /// PUBLISH to a topic (also the will).
    Publish,
    /// SUBSCRIBE to a filter.
    Subscribe,
    /// Receive a message published to a topic (checked per delivery with
    /// [`crate::access::Rights`]; the `client.check_acl` handlers are asked
    /// only about PUBLISH and SUBSCRIBE).
    Deliver,
}

/// Decides `client.authenticate`.
pub trait Authenticator: Send + Sync {
    /// Allow, deny or pass.
    fn authenticate<'a>(&'a self, request: AuthRequest<'a>) -> DecisionFuture<'a>;
}

/// Decides `client.check_acl`.
pub trait Authorizer: Send + Sync {
    /// Allow, deny or pass.
    fn check_acl<'a>(&'a self, request: AclRequest<'a>) -> DecisionFuture<'a>;
}

/// Identifies a registration, for removal or replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HookId(u64);

/// One registered handler.
struct Entry<T: ?Sized> {
    id: HookId,
    priority: i32,
    handler: Arc<T>,
}

impl<T: ?Sized> Clone for Entry<T> {
    fn clone(&self) -> Self {
        Entry {
            id: self.id,
            priority: self.priority,
            handler: self.handler.clone(),
        }
    }
}

/// Handlers of one kind, highest priority first. Firing loads the current
/// list without a lock ([`ArcSwap`]: no shared counter is written on the
/// MQTT path), so registration never waits for handlers to run and
/// handlers never see a half-updated list. Changes are serialised by
/// `changing` and published with one atomic swap.
struct List<T: ?Sized> {
    entries: ArcSwap<Vec<Entry<T>>>,
    /// Held while a change is made (registration, removal, replacement).
    changing: Mutex<()>,
    /// Whether any handler is registered: lets firing skip the load.
    any: AtomicBool,
}

impl<T: ?Sized> Default for List<T> {
    fn default() -> Self {
        List {
            entries: ArcSwap::from_pointee(Vec::new()),
            changing: Mutex::new(()),
            any: AtomicBool::new(false),
        }
    }
}

impl<T: ?Sized> List<T> {
    /// The current handlers, for running them right away (not across an
    /// `.await`: see [`List::owned`]).
    fn current(&self) -> Option<Guard<Arc<Vec<Entry<T>>>>> {
        self.any
            .load(Ordering::Acquire)
            .then(|| self.entries.load())
    }

    /// The current handlers as an owned `Arc`, for the async decision
    /// handlers that hold the list across `.await`s.
    fn owned(&self) -> Option<Arc<Vec<Entry<T>>>> {
        self.any
            .load(Ordering::Acquire)
            .then(|| self.entries.load_full())
    }

    fn update(&self, change: impl FnOnce(&mut Vec<Entry<T>>) -> bool) -> bool {
        let _changing = lock(&self.changing);
        let mut next: Vec<Entry<T>> = self.entries.load().as_ref().clone();
        let changed = change(&mut next);
        // Stable: equal priorities keep registration order.
        next.sort_by_key(|e| std::cmp::Reverse(e.priority));
        self.any.store(!next.is_empty(), Ordering::Release);
        self.entries.store(Arc::new(next));
        changed
    }

    fn add(&self, id: HookId, priority: i32, handler: Arc<T>) {
        self.update(|v| {
            v.push(Entry {
                id,
                priority,
                handler,
            });
            true
        });
    }

    fn remove(&self, id: HookId) -> bool {
        self.update(|v| {
            let before = v.len();
            v.retain(|e| e.id != id);
            v.len() != before
        })
    }

    fn replace(&self, id: HookId, handler: Arc<T>) -> bool {
        self.update(|v| match v.iter_mut().find(|e| e.id == id) {
            Some(e) => {
                e.handler = handler;
                true
            }
            None => false,
        })
    }
}

/// The registry. One per broker ([`crate::broker::Broker::hooks`]).
#[derive(Default)]
pub struct Hooks {
    /// Notification handlers.
    handlers: List<dyn Handler>,
    /// `client.authenticate` handlers.
    authenticators: List<dyn Authenticator>,
    /// `client.check_acl` handlers.
    authorizers: List<dyn Authorizer>,
    /// Source of [`HookId`]s.
    next_id: AtomicU64,
}

impl Hooks {
    fn id(&self) -> HookId {
        HookId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Registers a notification handler; higher `priority` runs first.
    pub fn add_handler(&self, priority: i32, handler: Arc<dyn Handler>) -> HookId {
        let id = self.id();
        self.handlers.add(id, priority, handler);
        id
    }

    /// Registers a `client.authenticate` handler.
    pub fn add_authenticator(&self, priority: i32, handler: Arc<dyn Authenticator>) -> HookId {
        let id = self.id();
        self.authenticators.add(id, priority, handler);
        id
    }

    /// Registers a `client.check_acl` handler.
    pub fn add_authorizer(&self, priority: i32, handler: Arc<dyn Authorizer>) -> HookId {
        let id = self.id();
        self.authorizers.add(id, priority, handler);
        id
    }

    /// Unregisters any kind of handler; `false` if `id` is unknown.
    pub fn remove(&self, id: HookId) -> bool {
        self.handlers.remove(id) || self.authenticators.remove(id) || self.authorizers.remove(id)
    }

    /// Swaps a notification handler in place, keeping its id and priority.
    pub fn replace_handler(&self, id: HookId, handler: Arc<dyn Handler>) -> bool {
        self.handlers.replace(id, handler)
    }

    /// Whether any notification handler is registered (lets callers skip
    /// building an event's data).
    pub fn active(&self) -> bool {
        self.handlers.any.load(Ordering::Acquire)
    }

    /// Runs every notification handler on `event`, in priority order.
    pub fn fire(&self, event: Event<'_>) {
        self.run_handlers(&event, |handler| handler.on_event(&event));
    }

    /// Fires `message.publish` for `message`, letting handlers hold (or
    /// refuse) its acknowledgement through `holds`.
    pub fn fire_publish(&self, message: &Message, holds: &mut AckHolds) {
        let event = Event::MessagePublish { message };
        self.run_handlers(&event, |handler| handler.on_publish(&event, holds));
    }

    /// Calls `run` with each notification handler in priority order; a
    /// handler that panics is logged and the others still run.
    fn run_handlers(&self, event: &Event<'_>, mut run: impl FnMut(&dyn Handler)) {
        let Some(list) = self.handlers.current() else {
            return;
        };
        for entry in list.iter() {
            if catch_unwind(AssertUnwindSafe(|| run(entry.handler.as_ref()))).is_err() {
                tracing::error!(
                    event = event.name(),
                    hook = entry.id.0,
                    "hook handler panicked"
                );
            }
        }
    }

    /// Asks the `client.authenticate` handlers in priority order.
    pub async fn authenticate(&self, request: AuthRequest<'_>) -> Decision {
        let Some(list) = self.authenticators.owned() else {
            return Decision::Ignore;
        };
        for entry in list.iter() {
            let ask = || entry.handler.authenticate(request);
            match decide(entry.id, "client.authenticate", ask).await {
                Decision::Ignore => continue,
                decided => return decided,
            }
        }
        Decision::Ignore
    }

    /// Asks the `client.check_acl` handlers in priority order.
    pub async fn check_acl(&self, request: AclRequest<'_>) -> Decision {
        let Some(list) = self.authorizers.owned() else {
            return Decision::Ignore;
        };
        for entry in list.iter() {
            let ask = || entry.handler.check_acl(request);
            match decide(entry.id, "client.check_acl", ask).await {
                Decision::Ignore => continue,
                decided => return decided,
            }
        }
        Decision::Ignore
    }

    /// Whether any `client.check_acl` handler is registered.
    pub fn has_authorizers(&self) -> bool {
        self.authorizers.any.load(Ordering::Acquire)
    }
}

/// Runs one decision handler. A panic, when it is called or while its
/// future runs, is logged and counts as [`Decision::Ignore`], so it neither
/// kills the connection's task nor decides for the handlers after it.
async fn decide<'a>(
    hook: HookId,
    point: &'static str,
    ask: impl FnOnce() -> DecisionFuture<'a>,
) -> Decision {
    let answer = match catch_unwind(AssertUnwindSafe(ask)) {
        Ok(mut future) => {
            std::future::poll_fn(|cx| {
                match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
                    Ok(Poll::Ready(decision)) => Poll::Ready(Some(decision)),
                    Ok(Poll::Pending) => Poll::Pending,
                    Err(_) => Poll::Ready(None),
                }
            })
            .await
        }
        Err(_) => None,
    };
    answer.unwrap_or_else(|| {
        tracing::error!(event = point, hook = hook.0, "decision handler panicked");
        Decision::Ignore
    })
}
