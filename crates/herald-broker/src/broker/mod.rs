//! The state every connection shares: the session registry, the
//! subscription router, retained messages, counters and configuration; and
//! the operations on them that are not one connection's business: routing a
//! message, subscribing, unsubscribing, discarding a session. Its state on
//! disk (opening the store, restoring, writing session records) is in
//! [`stored`].
//!
//! Locks: the registry lock is taken only on connect and session end; the
//! router is a read-write lock read by every publish (publishers never
//! serialise on it) and written by (un)subscribes; the retained store has its
//! own. No lock is held across an `.await` or while another of these is taken,
//! except router → session (to enqueue), in that order only.

use crate::access::{AccessControl, Rights, Verdict};
use crate::ack::{AckHolds, Refused};
use crate::config::Config;
use crate::hooks::{AclAction, AclRequest, ClientInfo, Decision, DropReason, Event, Hooks};
use crate::message::{Delivery, Message};
use crate::metrics::Metrics;
use crate::queue::Batch;
use crate::reason::TerminationReason;
use crate::router::{Retained, SharedGroups, Trie, matches, parse_shared};
use crate::session::{Kick, NotQueued, Queued, Session, SubEntry};
use crate::store::{Change, LiveSession, Store};
use crate::support::{LogThrottle, lock, read, write};
use herald_codec::{ByteStr, QoS, RetainHandling};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use tokio::time::Instant;

mod stored;

/// A session as a router key: equality and hash by identity, so two
/// sessions with the same client id (old and new) never collide.
#[derive(Clone)]
pub struct SessionKey(pub Arc<Session>);

impl PartialEq for SessionKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for SessionKey {}
impl Hash for SessionKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.0), state)
    }
}

/// Who is subscribed to what.
#[derive(Default)]
struct Subscriptions {
    /// Ordinary subscriptions.
    direct: Trie<SessionKey, SubEntry>,
    /// `$share/{group}/{filter}` subscriptions.
    shared: SharedGroups<SessionKey, SubEntry>,
    /// Topics with many direct subscribers → their targets as the trie
    /// walk and [`merge_per_session`] give them (see [`Broker::route`]).
    /// Emptied by every change of `direct` or `shared`.
    wide: HashMap<ByteStr, Arc<[Target]>, foldhash::fast::RandomState>,
    /// Bumped by every change: a target list built under the read lock
    /// is kept only if nothing changed before the write lock was taken.
    generation: u64,
}

impl Subscriptions {
    /// Called on every change of the subscriptions.
    fn changed(&mut self) {
        self.generation += 1;
        if !self.wide.is_empty() {
            self.wide = HashMap::default();
        }
    }
}

/// What routing one message did.
#[derive(Default)]
pub struct RouteOutcome {
    /// Sessions the message was queued for.
    pub delivered: usize,
    /// Sessions whose queue refused it.
    pub dropped: usize,
    /// Whether any subscription matched at all.
    pub matched: bool,
    /// An online session the message pushed above its high-water mark:
    /// the publisher should pause reading until it drains.
    pub congested: Option<Arc<Session>>,
    /// Deliveries whose subscriber's rights must be asked remotely before
    /// they are queued: hand them to [`Broker::settle`].
    pub pending: Vec<Pending>,
}

/// Most messages [`Broker::publish_all`] routes together.
pub const MAX_ROUTED_TOGETHER: usize = 128;

/// One message's part in routing several together
/// ([`Broker::publish_all`]).
pub struct Route {
    /// What its acknowledgement waits for (refused, or held for the store).
    pub holds: AckHolds,
    /// What routing it did.
    pub outcome: RouteOutcome,
    /// The last store ticket its changes got (0: none).
    held: u64,
}

impl Route {
    /// A message about to be routed, with the holds of its
    /// acknowledgement.
    pub fn new(holds: AckHolds) -> Route {
        Route {
            holds,
            outcome: RouteOutcome::default(),
            held: 0,
        }
    }
}

/// A delivery waiting for its subscriber's rights to be asked.
pub struct Pending {
    /// The subscriber's session.
    session: Arc<Session>,
    /// What to queue for it if allowed.
    delivery: Delivery,
    /// Whose answer decides.
    rights: Arc<dyn Rights>,
    /// A retained message for a new subscription: it joins the session's
    /// retained backlog rather than its queue.
    retained: bool,
}

/// Where one message goes: the session, the highest QoS granted,
/// retain-as-published, and the matching subscriptions' identifiers.
type Target = (SessionKey, QoS, bool, Vec<u32>);

thread_local! {
    /// The targets of the message being routed, kept for the next message
    /// routed on this thread: a fan-out to 10,000 sessions builds a 400 KB
    /// list, and allocating it anew for every message cost more (growth
    /// copies, page faults) than the routing itself. Taken out while in
    /// use, so a handler that publishes from inside a route gets its own.
    static ROUTE_TARGETS: std::cell::RefCell<Vec<Target>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Most targets a thread's kept list may hold room for (about 4 MB); a
/// list grown beyond that by a rare huge fan-out is freed after use.
const ROUTE_TARGETS_KEPT: usize = 100_000;

/// A topic's direct targets are kept ([`Subscriptions::wide`]) from this
/// many on: building the list (a trie walk, an `Arc` clone and a sort per
/// subscriber) was a quarter of the broker's CPU in a 1 → 10,000 fan-out
/// (perf, BENCHMARKS.md, issue 13); a short one is cheaper to build than
/// to keep.
const WIDE_TARGETS: usize = 64;

/// At most this many topics' targets are kept (all are dropped when one
/// more would be added).
const WIDE_TOPICS: usize = 64;

/// Merges the matches of one session's overlapping subscriptions into one
/// target (5.0 §3.3.4: one delivery, highest QoS, every identifier).
/// Sorting by session keeps this O(n log n) in the matches: with 10,000
/// subscribers on a topic, a search per match would be 50 million
/// comparisons per message. The sort is stable, so identifiers keep their
/// match order.
fn merge_per_session(targets: &mut Vec<Target>) {
    if targets.len() < 2 {
        return;
    }
    targets.sort_by_key(|t| Arc::as_ptr(&t.0.0) as usize);
    targets.dedup_by(|later, kept| {
        if later.0 != kept.0 {
            return false;
        }
        kept.1 = kept.1.max(later.1);
        kept.2 |= later.2;
        kept.3.append(&mut later.3);
        true
    });
}

/// The retained messages and the bytes they hold, for `[retained]`'s
/// limits.
#[derive(Default)]
struct RetainedStore {
    /// Retained messages by topic.
    tree: Retained<Arc<Message>>,
    /// [`Message::size`] summed over `tree`.
    bytes: usize,
}

/// The broker's shared state.
pub struct Broker {
    /// Settings in force.
    pub config: Config,
    /// Client id → session, for connected and offline sessions alike.
    sessions: Mutex<HashMap<ByteStr, Arc<Session>>>,
    /// The subscription router.
    subs: RwLock<Subscriptions>,
    /// Retained messages by topic.
    retained: RwLock<RetainedStore>,
    /// Rate of the "retained message not stored" warning.
    retained_refusals: LogThrottle,
    /// Counters.
    pub metrics: Metrics,
    /// The extension point: event and decision handlers.
    pub hooks: Hooks,
    /// The access control installed with [`Broker::set_access`].
    access: RwLock<Option<Arc<dyn AccessControl>>>,
    /// Whether the installed access control may have to ask remotely.
    access_may_ask: AtomicBool,
    /// When the broker started, for uptime.
    pub started: Instant,
    /// Whether client connects and disconnects are logged at INFO (one
    /// line each); set by the embedding program, on by default.
    log_connections: AtomicBool,
    /// Set by [`Broker::close_connections`]: connections attaching from
    /// then on are told to close at once.
    closing: AtomicBool,
    /// The durable state, if `[persistence]` keeps one (see
    /// [`Broker::open`]).
    store: Option<Store>,
    /// Sessions the store recovered, until the listener starts and
    /// [`Broker::resume_stored_sessions`] takes them.
    recovered_sessions: Mutex<Vec<LiveSession>>,
}

impl Broker {
    /// A broker with no sessions, keeping its state in memory only
    /// (whatever `[persistence]` says): for embedding and tests.
    pub fn new(config: Config) -> Arc<Broker> {
        Arc::new(Broker::in_memory(config))
    }

    /// The broker's state before anything is restored.
    fn in_memory(config: Config) -> Broker {
        Broker {
            config,
            sessions: Mutex::new(HashMap::new()),
            subs: RwLock::new(Subscriptions::default()),
            retained: RwLock::new(RetainedStore::default()),
            retained_refusals: LogThrottle::default(),
            metrics: Metrics::default(),
            hooks: Hooks::default(),
            access: RwLock::new(None),
            access_may_ask: AtomicBool::new(false),
            started: Instant::now(),
            log_connections: AtomicBool::new(true),
            closing: AtomicBool::new(false),
            store: None,
            recovered_sessions: Mutex::new(Vec::new()),
        }
    }

    /// Turns the INFO lines for client connects and disconnects on or off.
    pub fn set_log_connections(&self, on: bool) {
        self.log_connections.store(on, Ordering::Relaxed);
    }

    /// Whether client connects and disconnects are logged at INFO.
    pub fn logs_connections(&self) -> bool {
        self.log_connections.load(Ordering::Relaxed)
    }

    /// Installs the access control (authentication sources and rules).
    /// Clients connected before keep the rights they had.
    pub fn set_access(&self, access: Arc<dyn AccessControl>) {
        self.access_may_ask
            .store(access.may_ask(), Ordering::Release);
        *write(&self.access) = Some(access);
    }

    /// The installed access control, if any.
    pub fn access(&self) -> Option<Arc<dyn AccessControl>> {
        read(&self.access).clone()
    }

    /// Whether a PUBLISH may have to wait for a decision (a
    /// `client.check_acl` handler, or rights that ask remotely).
    pub fn authorization_may_wait(&self) -> bool {
        self.hooks.has_authorizers() || self.access_may_ask.load(Ordering::Acquire)
    }

    /// The session registry, locked.
    pub fn sessions(&self) -> MutexGuard<'_, HashMap<ByteStr, Arc<Session>>> {
        lock(&self.sessions)
    }

    /// Tells every connection to close (server shutting down), those
    /// attaching later too. A connection learns it through its session
    /// ([`Session::kick`]): no per-connection shutdown channel, which every
    /// idle connection would pay for.
    pub fn close_connections(&self) {
        let sessions = self.sessions();
        self.closing.store(true, Ordering::Release);
        for session in sessions.values() {
            let st = session.lock();
            if st.owned {
                session.kick(Kick::Shutdown);
            }
        }
    }

    /// Whether [`Broker::close_connections`] was called; read under the
    /// session registry's lock.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// A new empty session with this broker's queue limits.
    pub fn new_session(&self, client_id: ByteStr) -> Arc<Session> {
        let mqtt = &self.config.mqtt;
        Session::new(
            client_id,
            mqtt.max_queued_messages,
            usize::try_from(mqtt.max_queued_bytes).unwrap_or(usize::MAX),
            mqtt.queue_qos0,
        )
    }

    /// Routes a message to every matching subscription: one delivery per
    /// session (highest granted QoS, all subscription identifiers), one
    /// member per shared group. Updates the retained store first if the
    /// message is retained. Fires `message.publish`, and `message.dropped`
    /// for no subscribers and for every session that refused it (also
    /// `not_authorized`: a subscriber that may not receive the topic,
    /// whatever filter matched it). Deliveries that need a remote decision
    /// come back in [`RouteOutcome::pending`].
    pub fn publish(&self, message: Arc<Message>) -> RouteOutcome {
        self.route(message, true, &mut AckHolds::unwanted())
    }

    /// [`Broker::publish`] for a message whose publisher waits for an
    /// acknowledgement: `holds` collects what that acknowledgement must
    /// wait for ([`crate::ack`]). A message a handler refused is not
    /// routed (the publisher will be told, and may send it again).
    pub fn publish_held(&self, message: Arc<Message>, holds: &mut AckHolds) -> RouteOutcome {
        self.route(message, true, holds)
    }

    /// [`Broker::publish`] for the broker's own messages (`$SYS`): that no
    /// one is subscribed is normal for them, not a drop.
    pub fn publish_own(&self, message: Arc<Message>) -> RouteOutcome {
        self.route(message, false, &mut AckHolds::unwanted())
    }

    /// Routes consecutive messages of one publisher to one topic together
    /// (see [`Broker::route_all`]), each with its own acknowledgement's
    /// holds and outcome (`routes[i]` for `messages[i]`).
    pub fn publish_all(&self, messages: &[Arc<Message>], routes: &mut [Route]) {
        let together = messages.chunks(MAX_ROUTED_TOGETHER);
        for (messages, routes) in together.zip(routes.chunks_mut(MAX_ROUTED_TOGETHER)) {
            self.route_all(messages, routes, true);
        }
    }

    /// Routes `message`; `count_unrouted`: a message nobody is subscribed
    /// to counts as dropped (no subscribers).
    fn route(
        &self,
        message: Arc<Message>,
        count_unrouted: bool,
        holds: &mut AckHolds,
    ) -> RouteOutcome {
        let mut route = [Route::new(std::mem::replace(holds, AckHolds::unwanted()))];
        self.route_all(&[message], &mut route, count_unrouted);
        let [route] = route;
        *holds = route.holds;
        route.outcome
    }

    /// Routes `messages`, all from one publisher to one topic, so they
    /// share their targets: each target session is locked once and woken
    /// once for all of them, in order, and its connection finds them all
    /// queued when it runs (one write, not one per message). A shared
    /// subscription's group still takes turns per message: its member is
    /// picked for each.
    /// `count_unrouted`: a message nobody is subscribed to counts as
    /// dropped (no subscribers).
    fn route_all(&self, messages: &[Arc<Message>], routes: &mut [Route], count_unrouted: bool) {
        debug_assert_eq!(messages.len(), routes.len());
        debug_assert!(messages.iter().all(
            |m| m.topic == messages[0].topic && m.from_client_id == messages[0].from_client_id
        ));
        // Which messages go on to their subscribers (hooks and the
        // retained store may refuse them), as a mask of positions
        // ([`MAX_ROUTED_TOGETHER`] at most).
        let mut live = 0u128;
        for (i, (message, route)) in messages.iter().zip(routes.iter_mut()).enumerate() {
            let holds = &mut route.holds;
            self.hooks.fire_publish(message, holds);
            if holds.is_refused() {
                continue;
            }
            if message.retain {
                match self.retain(message) {
                    // The store writes in ticket order: one hold on this
                    // message's last ticket covers all its changes.
                    Ok(Some(ticket)) => route.held = ticket,
                    Ok(None) => {}
                    Err(Refused) if holds.is_wanted() => {
                        holds.refuse();
                        continue;
                    }
                    // Nobody to tell: delivered, not retained.
                    Err(Refused) => {}
                }
            }
            live |= 1 << i;
        }
        let Some(first) = messages.get(live.trailing_zeros() as usize) else {
            return;
        };
        let is_live = |i: usize| live & (1 << i) != 0;
        // Shared groups' members, picked per message (the message's
        // position with each).
        let mut shared: Vec<(Target, usize)> = Vec::new();
        let mut targets = ROUTE_TARGETS.with(|t| std::mem::take(&mut *t.borrow_mut()));
        // A wide topic's direct targets, as kept (see `WIDE_TARGETS`).
        let mut wide: Option<Arc<[Target]>> = None;
        {
            let subs = read(&self.subs);
            let from = &first.from_client_id;
            if !subs.wide.is_empty() {
                wide = subs.wide.get(&*first.topic).cloned();
            }
            let mut keep = None;
            if wide.is_none() {
                // A list with a no-local subscription depends on the
                // publisher: not kept.
                let mut no_local = false;
                subs.direct.for_each_match(&first.topic, |_, key, entry| {
                    no_local |= entry.options.no_local;
                    if entry.options.no_local && key.0.client_id == *from {
                        return;
                    }
                    targets.push((
                        key.clone(),
                        entry.options.qos,
                        entry.options.retain_as_published,
                        entry.id.into_iter().collect(),
                    ));
                });
                // Always, even when one filter matched (its sessions are
                // distinct): the sort puts the sessions in address order,
                // and queueing to 10,000 of them in that order cost 13%
                // less CPU per delivery than in the trie's hash order
                // (bench/compare.sh, fan-out 1 → 10,000, QoS 1).
                merge_per_session(&mut targets);
                if targets.len() >= WIDE_TARGETS && !no_local {
                    keep = Some(subs.generation);
                }
            }
            if !subs.shared.is_empty() {
                for i in (0..messages.len()).filter(|&i| is_live(i)) {
                    subs.shared.for_each_match(
                        &first.topic,
                        |key| key.0.lock().online,
                        |_, _, key, entry| {
                            let target = (
                                key.clone(),
                                entry.options.qos,
                                entry.options.retain_as_published,
                                entry.id.into_iter().collect(),
                            );
                            shared.push((target, i));
                        },
                    );
                }
            }
            drop(subs);
            if let Some(generation) = keep {
                let list: Arc<[Target]> = targets.drain(..).collect();
                let mut subs = write(&self.subs);
                if subs.generation == generation {
                    if subs.wide.len() >= WIDE_TOPICS {
                        subs.wide = HashMap::default();
                    }
                    subs.wide.insert(first.topic.detached(), list.clone());
                }
                wide = Some(list);
            }
        }
        let wide_targets = wide.as_deref().unwrap_or_default();
        let matched = !targets.is_empty() || !wide_targets.is_empty() || !shared.is_empty();
        // `authz.deny_subscribe` holds for every subscriber.
        let denied_to_all =
            matched && Broker::denied(&self.config.authz.deny_subscribe, &first.topic);
        // Drops are counted (and their hooks fired) outside the session
        // locks.
        let mut drops: Vec<(usize, DropReason)> = Vec::new();
        // Two or more messages for every subscription: each is queued them
        // as one entry, the batch shared by all (see `crate::queue`), with
        // their positions here.
        let run: Option<(Batch, Vec<usize>, usize)> = (live.count_ones() >= 2
            && !denied_to_all
            && (!targets.is_empty() || !wide_targets.is_empty()))
        .then(|| {
            let at: Vec<usize> = (0..messages.len()).filter(|&i| is_live(i)).collect();
            let batch: Batch = at
                .iter()
                .filter_map(|&i| messages.get(i).cloned())
                .collect();
            let bytes = batch.iter().map(|m| m.size()).sum();
            (batch, at, bytes)
        });
        // A subscription gets every message; a shared group's member only
        // the one it was picked for.
        let every = wide_targets.iter().chain(targets.iter()).map(|t| (t, None));
        let picked = shared.iter().map(|(t, i)| (t, Some(*i)));
        for ((key, qos, rap, ids), only) in every.chain(picked) {
            let takes = |i: usize| is_live(i) && only.is_none_or(|o| o == i);
            if denied_to_all {
                drops.extend(
                    (0..messages.len())
                        .filter(|&i| takes(i))
                        .map(|i| (i, DropReason::NotAuthorized)),
                );
            } else {
                let mut each = |i: usize, result: Result<Queued, NotQueued>| {
                    let Some(route) = routes.get_mut(i) else {
                        return;
                    };
                    let outcome = &mut route.outcome;
                    match result {
                        Ok((congested, ticket)) => {
                            match ticket {
                                Some(Ok(ticket)) => route.held = route.held.max(ticket),
                                // In memory only: the publisher is
                                // refused and sends it again.
                                Some(Err(Refused)) => route.holds.refuse(),
                                None => {}
                            }
                            outcome.delivered += 1;
                            if congested && outcome.congested.is_none() {
                                outcome.congested = Some(key.0.clone());
                            }
                        }
                        Err(NotQueued::Dropped(reason)) => drops.push((i, reason)),
                        Err(NotQueued::Ask(delivery, rights)) => outcome.pending.push(Pending {
                            session: key.0.clone(),
                            delivery,
                            rights,
                            retained: false,
                        }),
                    }
                };
                match (&run, only) {
                    (Some((batch, at, bytes)), None) => key.0.enqueue_run(
                        batch,
                        *bytes,
                        *qos,
                        *rap,
                        ids,
                        self.store.as_ref(),
                        |j, result| each(at.get(j).copied().unwrap_or(usize::MAX), result),
                    ),
                    _ => key.0.enqueue_each(
                        messages.len(),
                        self.store.as_ref(),
                        |i| {
                            let message = messages.get(i).filter(|_| takes(i))?;
                            Some(Delivery::to_subscriber(message, *qos, *rap, ids.clone()))
                        },
                        each,
                    ),
                }
            }
            for (i, reason) in drops.drain(..) {
                if let (Some(message), Some(route)) = (messages.get(i), routes.get_mut(i)) {
                    route.outcome.dropped += 1;
                    self.dropped(message, reason);
                }
            }
        }
        targets.clear();
        if targets.capacity() <= ROUTE_TARGETS_KEPT {
            ROUTE_TARGETS.with(|t| *t.borrow_mut() = targets);
        }
        let gate = self.store.as_ref().and_then(Store::ack_gate);
        for (i, (message, route)) in messages.iter().zip(routes.iter_mut()).enumerate() {
            if !is_live(i) {
                continue;
            }
            route.outcome.matched = matched;
            if !matched && count_unrouted {
                self.dropped(message, DropReason::NoSubscribers);
            }
            if route.held > 0
                && let Some(gate) = gate
            {
                route.holds.hold(gate.clone(), route.held);
            }
        }
    }

    /// Queues deliveries held for a remote decision, in order, once their
    /// subscriber's rights allow them; the others are dropped
    /// (`not_authorized`). The subscribers are asked all at once, so a slow
    /// source holds the publisher for one answer's time, not one per
    /// subscriber.
    pub async fn settle(&self, pending: Vec<Pending>) {
        self.settle_held(pending, &mut AckHolds::unwanted()).await;
    }

    /// [`Broker::settle`] for a message whose publisher waits for an
    /// acknowledgement: `holds` also waits for the store to write what
    /// was queued for persistent sessions (or is refused if the store
    /// refused it), as [`Broker::publish_held`] does for the rest.
    pub async fn settle_held(&self, pending: Vec<Pending>, holds: &mut AckHolds) {
        let mut held = 0;
        let mut asked = tokio::task::JoinSet::new();
        for (i, p) in pending.iter().enumerate() {
            let rights = p.rights.clone();
            let message = p.delivery.message.clone();
            asked.spawn(async move {
                let answer = rights.ask(AclAction::Deliver, &message.topic).await;
                (i, answer == Decision::Allow)
            });
        }
        // A task that panicked counts as a refusal.
        let mut allowed = vec![false; pending.len()];
        while let Some(joined) = asked.join_next().await {
            if let Ok((i, yes)) = joined
                && let Some(slot) = allowed.get_mut(i)
            {
                *slot = yes;
            }
        }
        for (p, allowed) in pending.into_iter().zip(allowed) {
            if !allowed {
                self.dropped(&p.delivery.message, DropReason::NotAuthorized);
            } else if p.retained {
                p.session
                    .lock()
                    .rare_mut()
                    .retained_backlog
                    .push_back(p.delivery);
                p.session.wake();
            } else {
                match p
                    .session
                    .enqueue_allowed(p.delivery.clone(), self.store.as_ref())
                {
                    Ok((_, Some(Ok(ticket)))) => held = held.max(ticket),
                    Ok((_, Some(Err(Refused)))) => holds.refuse(),
                    Ok((_, None)) => {}
                    Err(reason) => self.dropped(&p.delivery.message, reason),
                }
            }
        }
        if held > 0
            && let Some(gate) = self.store_gate()
        {
            holds.hold(gate.clone(), held);
        }
    }

    /// [`Broker::publish_own`] for callers that cannot wait: held
    /// deliveries are settled on a task of their own.
    pub fn publish_own_detached(self: &Arc<Self>, message: Arc<Message>) -> RouteOutcome {
        let mut outcome = self.publish_own(message);
        let pending = std::mem::take(&mut outcome.pending);
        if !pending.is_empty() {
            let broker = self.clone();
            tokio::spawn(async move { broker.settle(pending).await });
        }
        outcome
    }

    /// Stores (or, with an empty payload, deletes) a retained message,
    /// within `[retained]`'s limits. One over a limit is not stored, and
    /// the message it would have replaced is removed too, so no
    /// subscriber gets a value older than the last one published. With a
    /// store, the change is queued to it under the same lock (so the log
    /// has changes in the order they were made): `Ok(Some(ticket))` is
    /// what an acknowledgement waits for; `Err` when the store refuses it
    /// (nothing changed then).
    fn retain(&self, message: &Arc<Message>) -> Result<Option<u64>, Refused> {
        let limits = &self.config.retained;
        let (refused, ticket) = {
            let mut store = write(&self.retained);
            let old = store.tree.get(&message.topic).map(|m| m.size());
            let size = message.size();
            let kept = store.bytes - old.unwrap_or(0);
            let refused = if message.payload.is_empty() {
                None
            } else if message.payload.len() as u64 > u64::from(limits.max_payload_size) {
                Some("payload larger than retained.max_payload_size")
            } else if old.is_none() && store.tree.len() as u64 >= limits.max_messages {
                Some("retained.max_messages reached")
            } else if (kept + size) as u64 > limits.max_bytes {
                Some("retained.max_bytes reached")
            } else {
                None
            };
            let keep = !message.payload.is_empty() && refused.is_none();
            let ticket = match &self.store {
                Some(durable) if keep => Some(durable.record(Change::Retain(message.clone()))?),
                Some(durable) => Some(durable.record(Change::Unretain(message.topic.clone()))?),
                None => None,
            };
            if keep {
                store.tree.set(&message.topic, message.clone());
                store.bytes = kept + size;
            } else {
                store.tree.remove(&message.topic);
                store.bytes = kept;
            }
            (refused, ticket)
        };
        if let Some(why) = refused {
            Metrics::add(&self.metrics.retained_refused, 1);
            if let Some(n) = self.retained_refusals.hit(std::time::Instant::now()) {
                tracing::warn!(
                    topic = %message.topic,
                    client_id = %message.from_client_id,
                    refused = n,
                    "retained message not stored: {why} (refused {n} since the last warning)"
                );
            }
        }
        Ok(ticket)
    }

    /// Bytes the retained store holds (topic, payload, properties).
    pub fn retained_bytes(&self) -> usize {
        read(&self.retained).bytes
    }

    /// Whether `client_id` may publish to `topic`: `$SYS` and what is under
    /// it belong to the broker, unless `sys.allowed_publishers` names the
    /// client.
    pub fn may_publish_to(&self, client_id: &str, topic: &str) -> bool {
        let sys = topic == "$SYS" || topic.starts_with("$SYS/");
        !sys || self
            .config
            .sys
            .allowed_publishers
            .iter()
            .any(|c| c == client_id)
    }

    /// Counts a dropped message and fires `message.dropped`.
    pub fn dropped(&self, message: &Message, reason: DropReason) {
        let m = &self.metrics;
        let counter = match reason {
            DropReason::NoSubscribers => &m.dropped_no_subscribers,
            DropReason::QueueFull => &m.dropped_queue_full,
            DropReason::Qos0Offline => &m.dropped_qos0_offline,
            DropReason::Expired => &m.dropped_expired,
            DropReason::NotAuthorized => &m.dropped_not_authorized,
            DropReason::PacketTooLarge => &m.dropped_too_large,
            DropReason::ReceiveMaximumExceeded
            | DropReason::ProtocolError
            | DropReason::SessionEnded => &m.dropped_other,
        };
        Metrics::add(counter, 1);
        self.hooks.fire(Event::MessageDropped { message, reason });
    }

    /// Adds (or replaces) a subscription of `session` on `filter` (as sent,
    /// possibly `$share/g/f`, already validated). Returns whether it is new.
    pub fn subscribe(&self, session: &Arc<Session>, filter: &ByteStr, entry: SubEntry) -> bool {
        let key = SessionKey(session.clone());
        let is_new = {
            let mut subs = write(&self.subs);
            subs.changed();
            match parse_shared(filter) {
                Ok(Some((group, f))) => subs.shared.insert(group, f, key, entry).is_none(),
                _ => subs.direct.insert(filter, key, entry).is_none(),
            }
        };
        // A copy: the SUBSCRIBE's read buffer must not live as long as
        // the subscription.
        session
            .lock()
            .subscriptions
            .insert(filter.detached(), entry);
        is_new
    }

    /// Removes a subscription; returns whether it existed.
    pub fn unsubscribe(&self, session: &Arc<Session>, filter: &str) -> bool {
        let key = SessionKey(session.clone());
        {
            let mut subs = write(&self.subs);
            subs.changed();
            match parse_shared(filter) {
                Ok(Some((group, f))) => subs.shared.remove(group, f, &key),
                _ => subs.direct.remove(filter, &key),
            };
        }
        session.lock().subscriptions.remove(filter).is_some()
    }

    /// Ends a session: removes its subscriptions and, if the registry still
    /// maps its client id to it, the registry entry; drops what it still
    /// held (`message.dropped`, [`DropReason::SessionEnded`]) and fires
    /// `session.terminated` with `reason`.
    pub fn discard_session(&self, session: &Arc<Session>, reason: TerminationReason) {
        let filters: Vec<ByteStr> = session.lock().subscriptions.keys().cloned().collect();
        for f in filters {
            self.unsubscribe(session, &f);
        }
        {
            let mut sessions = self.sessions();
            if sessions
                .get(&session.client_id)
                .is_some_and(|s| Arc::ptr_eq(s, session))
            {
                sessions.remove(&session.client_id);
            }
        }
        let (queued, inflight, username) = {
            let mut st = session.lock();
            st.ended = true;
            if std::mem::take(&mut st.stored) {
                self.persist(Change::SessionGone(session.client_id.clone()));
            }
            // The retained backlog: still in the retained store, nothing of
            // it is lost.
            st.clear_rare();
            (st.take_queued(), st.take_all_inflight(), st.username())
        };
        for d in queued.iter().chain(inflight.iter().map(|i| &i.delivery)) {
            self.dropped(&d.message, DropReason::SessionEnded);
        }
        session.drained.notify_waiters();
        self.hooks.fire(Event::SessionTerminated {
            client_id: &session.client_id,
            username: username.as_deref(),
            reason,
        });
    }

    /// Queues the retained messages matching a new subscription, as Retain
    /// Handling asks, each if the session's client may receive it. Shared
    /// subscriptions get none (5.0 §4.8.2). Returns the deliveries held for
    /// a remote decision ([`Broker::settle`]).
    #[must_use]
    pub fn send_retained(
        &self,
        session: &Arc<Session>,
        filter: &str,
        entry: SubEntry,
        is_new: bool,
    ) -> Vec<Pending> {
        let send = match entry.options.retain_handling {
            RetainHandling::SendAtSubscribe => true,
            RetainHandling::SendAtSubscribeIfNew => is_new,
            RetainHandling::DoNotSend => false,
        };
        if !send || !matches!(parse_shared(filter), Ok(None)) {
            return Vec::new();
        }
        let now = Instant::now();
        let mut found = Vec::new();
        let mut denied = Vec::new();
        read(&self.retained).tree.for_each_matching(filter, |_, m| {
            if !m.is_expired(now) {
                found.push(Delivery {
                    seq: 0,
                    qos: m.qos.min(entry.options.qos),
                    retain: true,
                    subscription_ids: entry.id.into_iter().collect(),
                    message: m.clone(),
                });
            }
        });
        let mut pending = Vec::new();
        {
            let mut st = session.lock();
            let rights = st.rights.clone();
            let mut allowed = Vec::with_capacity(found.len());
            for delivery in found {
                let topic = &delivery.message.topic;
                let verdict = if Broker::denied(&self.config.authz.deny_subscribe, topic) {
                    Verdict::Deny
                } else {
                    rights
                        .as_ref()
                        .map_or(Verdict::Allow, |r| r.check(AclAction::Deliver, topic))
                };
                match (verdict, &rights) {
                    (Verdict::Allow, _) => allowed.push(delivery),
                    (Verdict::Ask, Some(rights)) => pending.push(Pending {
                        session: session.clone(),
                        delivery,
                        rights: rights.clone(),
                        retained: true,
                    }),
                    (Verdict::Deny | Verdict::Ask, _) => denied.push(delivery.message),
                }
            }
            // Every allowed one, paced by the connection like any backlog;
            // the queue's limits are for messages the store does not hold
            // anyway.
            if !allowed.is_empty() {
                st.rare_mut().retained_backlog.extend(allowed);
            }
        }
        for message in denied {
            self.dropped(&message, DropReason::NotAuthorized);
        }
        session.wake();
        pending
    }

    /// Number of retained messages.
    pub fn retained_count(&self) -> usize {
        read(&self.retained).tree.len()
    }

    /// The authorization point for PUBLISH and SUBSCRIBE: the
    /// `client.check_acl` handlers decide; if none does, the
    /// `authz.deny_publish` / `authz.deny_subscribe` lists may refuse, then
    /// the client's `rights` (asked remotely if they must be).
    pub async fn authorize(
        &self,
        client: &ClientInfo,
        rights: Option<&Arc<dyn Rights>>,
        action: AclAction,
        topic: &str,
    ) -> bool {
        if self.hooks.has_authorizers() {
            let request = AclRequest {
                client,
                action,
                topic,
            };
            match self.hooks.check_acl(request).await {
                Decision::Allow => return true,
                Decision::Deny(_) => return false,
                Decision::Ignore => {}
            }
        }
        if !self.authorized_by_config(action, topic) {
            return false;
        }
        match rights.map(|r| (r, r.check(action, topic))) {
            None | Some((_, Verdict::Allow)) => true,
            Some((_, Verdict::Deny)) => false,
            Some((r, Verdict::Ask)) => r.ask(action, topic).await == Decision::Allow,
        }
    }

    /// [`Broker::authorize`] where nothing may wait (no `client.check_acl`
    /// handler, rights that never ask): an `Ask` counts as a refusal.
    pub fn authorized_now(
        &self,
        rights: Option<&Arc<dyn Rights>>,
        action: AclAction,
        topic: &str,
    ) -> bool {
        self.authorized_by_config(action, topic)
            && rights.is_none_or(|r| r.check(action, topic) == Verdict::Allow)
    }

    /// The configured part of the authorization point alone: the
    /// `authz.deny_publish` / `authz.deny_subscribe` lists.
    pub fn authorized_by_config(&self, action: AclAction, topic: &str) -> bool {
        let denied = match action {
            AclAction::Publish => &self.config.authz.deny_publish,
            AclAction::Subscribe | AclAction::Deliver => &self.config.authz.deny_subscribe,
        };
        !Broker::denied(denied, topic)
    }

    /// Whether `topic` is matched by one of the filters in `denied`.
    pub fn denied(denied: &[String], topic: &str) -> bool {
        denied.iter().any(|f| matches(f, topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_codec::{Properties, SubOptions};

    fn message(from: &str) -> Arc<Message> {
        Arc::new(Message::new(
            ByteStr::from("wide/topic"),
            bytes::Bytes::from_static(b"x"),
            QoS::AtLeastOnce,
            false,
            Properties::default(),
            ByteStr::from(from.to_owned()),
            None,
        ))
    }

    fn entry(no_local: bool) -> SubEntry {
        SubEntry {
            options: SubOptions {
                qos: QoS::AtLeastOnce,
                no_local,
                ..SubOptions::default()
            },
            id: None,
        }
    }

    /// One more session than makes a topic wide, `s0`, `s1`, …, each
    /// subscribed to `filter` (with no local where `no_local` says).
    fn subscribed(
        broker: &Broker,
        filter: &ByteStr,
        no_local: impl Fn(usize) -> bool,
    ) -> Vec<Arc<Session>> {
        (0..WIDE_TARGETS + 1)
            .map(|i| {
                let s = broker.new_session(ByteStr::from(format!("s{i}")));
                broker.subscribe(&s, filter, entry(no_local(i)));
                s
            })
            .collect()
    }

    fn queued(s: &Session) -> usize {
        s.lock().queue.len()
    }

    #[test]
    fn a_wide_topics_kept_targets_follow_every_subscription_change() {
        let broker = Broker::new(Config::default());
        let filter = ByteStr::from("wide/#");
        let sessions = subscribed(&broker, &filter, |_| false);
        assert_eq!(broker.publish(message("p")).delivered, WIDE_TARGETS + 1);
        assert_eq!(read(&broker.subs).wide.len(), 1, "kept");
        // Routed from the kept list.
        assert_eq!(broker.publish(message("p")).delivered, WIDE_TARGETS + 1);
        // One leaves: the next message follows.
        assert!(broker.unsubscribe(&sessions[0], &filter));
        assert_eq!(broker.publish(message("p")).delivered, WIDE_TARGETS);
        assert_eq!(queued(&sessions[0]), 2);
        // One comes: likewise.
        let late = broker.new_session(ByteStr::from("late"));
        broker.subscribe(&late, &ByteStr::from("wide/topic"), entry(false));
        assert_eq!(broker.publish(message("p")).delivered, WIDE_TARGETS + 1);
        assert_eq!(queued(&sessions[1]), 4);
        assert_eq!(queued(&late), 1);
        // A second filter of one session matching too: still one delivery.
        broker.subscribe(&sessions[1], &ByteStr::from("wide/+"), entry(false));
        assert_eq!(broker.publish(message("p")).delivered, WIDE_TARGETS + 1);
        assert_eq!(queued(&sessions[1]), 5);
    }

    #[test]
    fn a_wide_topic_with_a_no_local_subscriber_is_not_kept() {
        let broker = Broker::new(Config::default());
        let sessions = subscribed(&broker, &ByteStr::from("wide/topic"), |i| i == 0);
        // s0's own message does not come back to it; another's does.
        assert_eq!(broker.publish(message("s0")).delivered, WIDE_TARGETS);
        assert_eq!(broker.publish(message("s1")).delivered, WIDE_TARGETS + 1);
        assert_eq!(queued(&sessions[0]), 1);
        assert!(read(&broker.subs).wide.is_empty());
    }
}
