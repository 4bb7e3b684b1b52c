//! The hooks API seen from a plugin: a recording handler captures every
//! event with the fields the WebHook needs (`docs/webhook.md` §2–§3), and the
//! tests assert the exact order of one client's events and their fields for
//! each lifecycle: connect, refusal, keep alive, takeover, discard, expiry,
//! subscriptions, deliveries and drops, wills; plus the decision handlers
//! (authentication, authorization, priorities) and runtime registration.
//!
//! Nothing sleeps on the real clock: tests wait for the event they expect
//! (the recorder wakes waiters on every event), and timers run on paused
//! time.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

mod common;

use bytes::Bytes;
use common::raw::Raw;
use common::*;
use herald_broker::Server;
use herald_broker::hooks::{
    AclAction, AclRequest, AuthRequest, Authenticator, Authorizer, Decision, DecisionFuture, Event,
    Handler, Hooks,
};
use herald_broker::reason::{DisconnectReason, DropReason, TerminationReason};
use herald_broker::support::now_ms;
use herald_codec::{
    ByteStr, ConnAck, Connect, Disconnect, Packet, Properties, Protocol, PubResp, Publish, QoS,
    ReasonCode, RetainHandling, SubOptions, Subscribe, Subscription, Unsubscribe, Will,
};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

// ------------------------------------------------------------- recording

/// A message as message events carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Msg {
    from_client_id: String,
    from_username: Option<String>,
    topic: String,
    qos: u8,
    retain: bool,
    payload: Bytes,
    received_at_ms: u64,
}

/// Subscription options as `opts` of the subscribe bodies: qos, nl, rap, rh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Opts {
    qos: u8,
    nl: bool,
    rap: bool,
    rh: u8,
}

fn opts(qos: u8, nl: bool, rap: bool, rh: u8) -> Opts {
    Opts { qos, nl, rap, rh }
}

/// An owned summary of one event.
#[derive(Debug, Clone, Default)]
struct Ev {
    /// `client.connect`, `message.acked`, ...
    name: &'static str,
    /// Whose event it is: the client's id for client and session events,
    /// the subscriber's for message.delivered / message.acked, the
    /// publisher's (`from_client_id`) for message.publish / message.dropped.
    client_id: String,
    /// User name (of the client; of the publisher for message events).
    username: Option<String>,
    /// Client details, for events that carry a `ClientInfo`.
    peer_ip: Option<IpAddr>,
    keepalive: Option<u16>,
    proto_ver: Option<u8>,
    connected_at_ms: Option<u64>,
    /// `conn_ack` of client.connack.
    conn_ack: Option<&'static str>,
    /// `reason` of client.disconnected.
    disconnect: Option<DisconnectReason>,
    /// `reason` of session.terminated.
    termination: Option<TerminationReason>,
    /// Topic of subscribe / unsubscribe events (without `$share/g/`).
    topic: Option<String>,
    /// Share group of subscribe / unsubscribe events.
    share: Option<String>,
    /// Options of subscribe events.
    opts: Option<Opts>,
    /// Subscription identifier of subscribe events.
    subid: Option<u32>,
    /// `is_new` of session.subscribed.
    is_new: Option<bool>,
    /// The message of message events.
    message: Option<Msg>,
    /// QoS and RETAIN the subscriber receives (delivered / acked).
    delivery: Option<(u8, bool)>,
    /// `reason` of message.dropped.
    drop_reason: Option<DropReason>,
}

impl Ev {
    fn client(mut self, c: &herald_broker::hooks::ClientInfo) -> Ev {
        self.client_id = c.client_id.to_string();
        self.username = c.username.as_ref().map(|u| u.to_string());
        self.peer_ip = Some(c.peer.ip());
        self.keepalive = Some(c.keepalive);
        self.proto_ver = Some(c.proto_ver());
        self.connected_at_ms = Some(c.connected_at_ms);
        self
    }

    fn message(mut self, m: &herald_broker::message::Message) -> Ev {
        self.message = Some(Msg {
            from_client_id: m.from_client_id.to_string(),
            from_username: m.from_username.as_ref().map(|u| u.to_string()),
            topic: m.topic.to_string(),
            qos: m.qos as u8,
            retain: m.retain,
            payload: m.payload.clone(),
            received_at_ms: m.received_at_ms,
        });
        self
    }

    fn sub(mut self, s: &herald_broker::hooks::SubscriptionInfo<'_>) -> Ev {
        self.topic = Some(s.topic.to_owned());
        self.share = s.share.map(str::to_owned);
        self.opts = Some(Opts {
            qos: s.options.qos as u8,
            nl: s.options.no_local,
            rap: s.options.retain_as_published,
            rh: s.options.retain_handling as u8,
        });
        self.subid = s.subscription_id;
        self
    }

    fn msg(&self) -> &Msg {
        self.message.as_ref().expect("a message event")
    }

    fn disconnect(&self) -> DisconnectReason {
        self.disconnect.expect("a client.disconnected event")
    }

    fn termination(&self) -> TerminationReason {
        self.termination.expect("a session.terminated event")
    }

    /// Whether this is an event about `client` (and not about `$SYS`).
    fn of(&self, client: &str) -> bool {
        let sys = self
            .message
            .as_ref()
            .is_some_and(|m| m.topic.starts_with("$SYS/"));
        self.client_id == client && !sys
    }
}

fn summarize(event: &Event<'_>) -> Ev {
    let ev = Ev {
        name: event.name(),
        ..Ev::default()
    };
    match *event {
        Event::ClientConnect { client, .. }
        | Event::ClientConnected { client }
        | Event::SessionCreated { client }
        | Event::SessionResumed { client }
        | Event::SessionTakeovered { client }
        | Event::SessionDiscarded { client } => ev.client(client),
        Event::ClientConnack { client, reason } => Ev {
            conn_ack: Some(reason.name()),
            ..ev.client(client)
        },
        Event::ClientDisconnected { client, reason } => Ev {
            disconnect: Some(reason),
            ..ev.client(client)
        },
        Event::ClientSubscribe { client, sub } => ev.client(client).sub(&sub),
        Event::SessionSubscribed {
            client,
            sub,
            is_new,
        } => Ev {
            is_new: Some(is_new),
            ..ev.client(client).sub(&sub)
        },
        Event::ClientUnsubscribe {
            client,
            topic,
            share,
        }
        | Event::SessionUnsubscribed {
            client,
            topic,
            share,
        } => Ev {
            topic: Some(topic.to_owned()),
            share: share.map(str::to_owned),
            ..ev.client(client)
        },
        Event::SessionTerminated {
            client_id,
            username,
            reason,
        } => Ev {
            client_id: client_id.to_owned(),
            username: username.map(str::to_owned),
            termination: Some(reason),
            ..ev
        },
        Event::MessagePublish { message } => {
            let ev = ev.message(message);
            Ev {
                client_id: message.from_client_id.to_string(),
                username: message.from_username.as_ref().map(|u| u.to_string()),
                ..ev
            }
        }
        Event::MessageDelivered {
            client,
            message,
            qos,
            retain,
        }
        | Event::MessageAcked {
            client,
            message,
            qos,
            retain,
        } => Ev {
            delivery: Some((qos as u8, retain)),
            ..ev.client(client).message(message)
        },
        Event::MessageDropped { message, reason } => {
            let ev = ev.message(message);
            Ev {
                client_id: message.from_client_id.to_string(),
                username: message.from_username.as_ref().map(|u| u.to_string()),
                drop_reason: Some(reason),
                ..ev
            }
        }
    }
}

/// The recording handler: keeps every event and wakes whoever waits.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Ev>>,
    notify: Notify,
}

impl Handler for Recorder {
    fn on_event(&self, event: &Event<'_>) {
        let ev = summarize(event);
        self.events.lock().unwrap().push(ev);
        self.notify.notify_waiters();
    }
}

impl Recorder {
    /// A recorder registered on `hooks` at priority 0.
    fn install(hooks: &Hooks) -> Arc<Recorder> {
        let recorder = Arc::new(Recorder::default());
        hooks.add_handler(0, recorder.clone());
        recorder
    }

    /// Every event recorded so far.
    fn all(&self) -> Vec<Ev> {
        self.events.lock().unwrap().clone()
    }

    /// The events of one client, in order.
    fn of(&self, client: &str) -> Vec<Ev> {
        self.all().into_iter().filter(|e| e.of(client)).collect()
    }

    /// The names of one client's events, in order.
    fn names(&self, client: &str) -> Vec<&'static str> {
        self.of(client).iter().map(|e| e.name).collect()
    }

    /// The one event `name` of `client`; fails if there are none or several.
    fn one(&self, client: &str, name: &str) -> Ev {
        let found: Vec<Ev> = self
            .of(client)
            .into_iter()
            .filter(|e| e.name == name)
            .collect();
        assert_eq!(found.len(), 1, "{name} of {client}: {found:#?}");
        found.into_iter().next().unwrap()
    }

    /// Waits until `pick` finds something in the events; fails after `WAIT`.
    async fn wait_until<T>(&self, what: &str, mut pick: impl FnMut(&[Ev]) -> Option<T>) -> T {
        let found = tokio::time::timeout(WAIT, async {
            loop {
                let notified = self.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(t) = pick(&self.events.lock().unwrap()) {
                    return t;
                }
                notified.await;
            }
        })
        .await;
        match found {
            Ok(t) => t,
            Err(_) => panic!("timed out waiting for {what}; events: {:#?}", self.all()),
        }
    }

    /// Waits for the `n`th (from 1) event `name` of `client`.
    async fn nth(&self, client: &str, name: &str, n: usize) -> Ev {
        self.wait_until(&format!("{name} #{n} of {client}"), |evs| {
            evs.iter()
                .filter(|e| e.name == name && e.of(client))
                .nth(n - 1)
                .cloned()
        })
        .await
    }

    /// Waits for the first event `name` of `client`.
    async fn wait(&self, client: &str, name: &str) -> Ev {
        self.nth(client, name, 1).await
    }
}

/// Checks the client fields of every event that carries a `ClientInfo`.
fn assert_client_fields(evs: &[Ev], username: Option<&str>, keepalive: u16, proto_ver: u8) {
    for e in evs.iter().filter(|e| e.peer_ip.is_some()) {
        let what = format!("{} of {}", e.name, e.client_id);
        assert_eq!(e.peer_ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), "{what}");
        assert_eq!(e.keepalive, Some(keepalive), "{what}");
        assert_eq!(e.proto_ver, Some(proto_ver), "{what}");
        // message.delivered / acked carry the subscriber's info.
        assert_eq!(e.username.as_deref(), username, "{what}");
    }
}

/// The events of a connection that was accepted with a new session.
const CONNECTED: [&str; 4] = [
    "client.connect",
    "session.created",
    "client.connack",
    "client.connected",
];

/// `CONNECTED` followed by `rest`.
fn connected_then(rest: &[&'static str]) -> Vec<&'static str> {
    CONNECTED.iter().chain(rest).copied().collect()
}

// ------------------------------------------------------------- clients

/// Polls a 3.1.1 event loop in the background; incoming packets arrive on
/// the returned channel.
fn drive_v4(mut eventloop: v4::EventLoop) -> mpsc::UnboundedReceiver<v4::Packet> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let v4::Event::Incoming(p) = event {
                let _ = tx.send(p);
            }
        }
    });
    rx
}

/// Polls a 5.0 event loop in the background.
fn drive_v5(mut eventloop: v5::EventLoop) -> mpsc::UnboundedReceiver<v5::Packet> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let v5::Event::Incoming(p) = event {
                let _ = tx.send(p);
            }
        }
    });
    rx
}

/// A CONNECT with no will, user name or properties.
fn connect_packet(protocol: Protocol, client_id: &str, clean: bool, keep_alive: u16) -> Connect {
    Connect {
        protocol,
        clean_start: clean,
        keep_alive,
        properties: Properties::default(),
        client_id: ByteStr::from(client_id),
        will: None,
        username: None,
        password: None,
    }
}

/// A 5.0 CONNECT asking for a Session Expiry Interval.
fn connect_v5_expiry(client_id: &str, clean: bool, expiry: u32) -> Connect {
    let mut c = connect_packet(Protocol::V5, client_id, clean, 0);
    c.properties.session_expiry_interval = Some(expiry);
    c
}

/// Sends `connect` on a new socket; returns the socket and the CONNACK.
async fn raw_connect(server: &Server, connect: Connect) -> (Raw, ConnAck) {
    let mut raw = Raw::connect(addr(server), connect.protocol).await;
    raw.send(&Packet::Connect(Box::new(connect))).await;
    match raw.recv().await {
        Some(Packet::ConnAck(ack)) => (raw, ack),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// A raw connection that was accepted.
async fn raw_session(server: &Server, connect: Connect) -> Raw {
    let (raw, ack) = raw_connect(server, connect).await;
    assert_eq!(ack.code, ReasonCode::SUCCESS, "CONNACK {ack:?}");
    raw
}

/// The next packet; fails if the broker closed the socket.
async fn next(raw: &mut Raw) -> Packet {
    raw.recv().await.expect("a packet, not a closed socket")
}

fn sub(filter: &str, qos: QoS) -> Subscription {
    Subscription {
        filter: ByteStr::from(filter),
        options: SubOptions {
            qos,
            ..SubOptions::default()
        },
    }
}

/// SUBSCRIBEs and returns the SUBACK codes.
async fn raw_subscribe(
    raw: &mut Raw,
    packet_id: u16,
    properties: Properties,
    filters: Vec<Subscription>,
) -> Vec<ReasonCode> {
    raw.send(&Packet::Subscribe(Subscribe {
        packet_id,
        properties,
        filters,
    }))
    .await;
    match next(raw).await {
        Packet::SubAck(ack) if ack.packet_id == packet_id => ack.codes,
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

fn publish_packet(topic: &str, qos: QoS, packet_id: u16, payload: &'static str) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: ByteStr::from(topic),
        packet_id,
        properties: Properties::default(),
        payload: Bytes::from_static(payload.as_bytes()),
    })
}

/// Publishes QoS 1 and returns the PUBACK reason.
async fn raw_publish_qos1(
    raw: &mut Raw,
    topic: &str,
    packet_id: u16,
    payload: &'static str,
) -> ReasonCode {
    raw.send(&publish_packet(topic, QoS::AtLeastOnce, packet_id, payload))
        .await;
    match next(raw).await {
        Packet::PubAck(ack) if ack.packet_id == packet_id => ack.reason,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

fn disconnect_packet() -> Packet {
    Packet::Disconnect(Disconnect {
        reason: ReasonCode::SUCCESS,
        properties: Properties::default(),
    })
}

/// Whether the 5.0 PUBLISH `p` is on `topic` with `payload`.
fn is_publish(p: &Packet, topic: &str, payload: &[u8]) -> bool {
    matches!(p, Packet::Publish(p) if p.topic == topic && p.payload == payload)
}

// ------------------------------------------------ decision handlers

/// Lets in the password `right`, refuses any other with 0x86.
struct PasswordCheck {
    asked: AtomicUsize,
}

impl Authenticator for PasswordCheck {
    fn authenticate<'a>(&'a self, request: AuthRequest<'a>) -> DecisionFuture<'a> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let right = request.password.is_some_and(|p| p.as_ref() == b"right");
        Box::pin(async move {
            // A decision handler may await.
            tokio::task::yield_now().await;
            if right {
                Decision::Allow
            } else {
                Decision::Deny(ReasonCode::BAD_USERNAME_OR_PASSWORD)
            }
        })
    }
}

/// Always answers the same, and counts how often it was asked.
struct Fixed {
    answer: Decision,
    asked: AtomicUsize,
}

impl Fixed {
    fn new(answer: Decision) -> Arc<Fixed> {
        Arc::new(Fixed {
            answer,
            asked: AtomicUsize::new(0),
        })
    }

    fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }
}

impl Authenticator for Fixed {
    fn authenticate<'a>(&'a self, _: AuthRequest<'a>) -> DecisionFuture<'a> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let answer = self.answer;
        Box::pin(async move { answer })
    }
}

impl Authorizer for Fixed {
    fn check_acl<'a>(&'a self, _: AclRequest<'a>) -> DecisionFuture<'a> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let answer = self.answer;
        Box::pin(async move { answer })
    }
}

/// Denies PUBLISH to `secret/...` (0x87), allows every other publish and
/// has no opinion on subscriptions.
struct NoSecrets;

impl Authorizer for NoSecrets {
    fn check_acl<'a>(&'a self, r: AclRequest<'a>) -> DecisionFuture<'a> {
        let answer = match r.action {
            AclAction::Publish if r.topic.starts_with("secret/") => {
                Decision::Deny(ReasonCode::NOT_AUTHORIZED)
            }
            AclAction::Publish => Decision::Allow,
            AclAction::Subscribe | AclAction::Deliver => Decision::Ignore,
        };
        Box::pin(async move { answer })
    }
}

// ------------------------------------------- connect, subscribe, publish

#[tokio::test]
async fn v311_connect_subscribe_publish_unsubscribe_disconnect() {
    let before = now_ms();
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut options = v4::options(&server, "flow4");
    options.set_credentials("alice", "pw");
    let (client, eventloop, ack) = v4::connect(options).await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    let _incoming = drive_v4(eventloop);
    client
        .subscribe("flow/4", v4::QoS::AtLeastOnce)
        .await
        .unwrap();
    rec.wait("flow4", "session.subscribed").await;
    client
        .publish("flow/4", v4::QoS::AtLeastOnce, false, "hello")
        .await
        .unwrap();
    rec.wait("flow4", "message.acked").await;
    client.unsubscribe("flow/4").await.unwrap();
    rec.wait("flow4", "session.unsubscribed").await;
    client.disconnect().await.unwrap();
    rec.wait("flow4", "session.terminated").await;

    assert_eq!(
        rec.names("flow4"),
        connected_then(&[
            "client.subscribe",
            "session.subscribed",
            "message.publish",
            "message.delivered",
            "message.acked",
            "client.unsubscribe",
            "session.unsubscribed",
            "client.disconnected",
            "session.terminated",
        ])
    );
    let evs = rec.of("flow4");
    assert_client_fields(&evs, Some("alice"), 30, 4);
    let after = now_ms();
    let connected_at = rec
        .one("flow4", "client.connected")
        .connected_at_ms
        .unwrap();
    assert!(
        (before..=after).contains(&connected_at),
        "connected_at {connected_at}"
    );
    let received_at = rec.one("flow4", "message.publish").msg().received_at_ms;
    assert!(
        (connected_at..=after).contains(&received_at),
        "received_at {received_at}"
    );
    assert_eq!(rec.one("flow4", "client.connect").client_id, "flow4");
    assert_eq!(rec.one("flow4", "client.connack").conn_ack, Some("success"));
    let subscribe = rec.one("flow4", "client.subscribe");
    assert_eq!(subscribe.topic.as_deref(), Some("flow/4"));
    assert_eq!(subscribe.share, None);
    assert_eq!(subscribe.opts, Some(opts(1, false, false, 0)));
    assert_eq!(subscribe.subid, None);
    let subscribed = rec.one("flow4", "session.subscribed");
    assert_eq!(subscribed.topic.as_deref(), Some("flow/4"));
    assert_eq!(subscribed.opts, Some(opts(1, false, false, 0)));
    assert_eq!(subscribed.is_new, Some(true));

    let published = rec.one("flow4", "message.publish");
    let m = published.msg();
    assert_eq!(m.from_client_id, "flow4");
    assert_eq!(m.from_username.as_deref(), Some("alice"));
    assert_eq!(m.topic, "flow/4");
    assert_eq!((m.qos, m.retain), (1, false));
    assert_eq!(m.payload, "hello");
    for name in ["message.delivered", "message.acked"] {
        let e = rec.one("flow4", name);
        assert_eq!(e.msg(), m, "{name} carries the published message");
        assert_eq!(e.delivery, Some((1, false)), "{name}");
    }

    let unsubscribe = rec.one("flow4", "client.unsubscribe");
    assert_eq!(unsubscribe.topic.as_deref(), Some("flow/4"));
    assert_eq!(unsubscribe.share, None);
    assert_eq!(
        rec.one("flow4", "session.unsubscribed").topic.as_deref(),
        Some("flow/4")
    );
    assert_eq!(
        rec.one("flow4", "client.disconnected").disconnect(),
        DisconnectReason::Normal
    );
    let terminated = rec.one("flow4", "session.terminated");
    assert_eq!(
        terminated.termination(),
        TerminationReason::Closed(DisconnectReason::Normal)
    );
    assert_eq!(terminated.username.as_deref(), Some("alice"));
    server.shutdown().await;
}

#[tokio::test]
async fn v5_connect_subscribe_publish_unsubscribe_disconnect() {
    use rumqttc::v5::mqttbytes::v5::{Filter, RetainForwardRule, SubscribeProperties};
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut options = v5::options(&server, "flow5");
    options.set_keep_alive(Duration::from_secs(40));
    let (client, eventloop, _) = v5::connect(options).await;
    let _incoming = drive_v5(eventloop);
    let filter = Filter {
        preserve_retain: true,
        retain_forward_rule: RetainForwardRule::Never,
        ..Filter::new("flow/5/#", v5::QoS::ExactlyOnce)
    };
    let props = SubscribeProperties {
        id: Some(5),
        user_properties: Vec::new(),
    };
    client
        .subscribe_many_with_properties([filter], props)
        .await
        .unwrap();
    rec.wait("flow5", "session.subscribed").await;
    client
        .publish("flow/5/x", v5::QoS::ExactlyOnce, false, "five")
        .await
        .unwrap();
    rec.wait("flow5", "message.acked").await;
    client.unsubscribe("flow/5/#").await.unwrap();
    rec.wait("flow5", "session.unsubscribed").await;
    client.disconnect().await.unwrap();
    rec.wait("flow5", "session.terminated").await;

    assert_eq!(
        rec.names("flow5"),
        connected_then(&[
            "client.subscribe",
            "session.subscribed",
            "message.publish",
            "message.delivered",
            "message.acked",
            "client.unsubscribe",
            "session.unsubscribed",
            "client.disconnected",
            "session.terminated",
        ])
    );
    assert_client_fields(&rec.of("flow5"), None, 40, 5);
    assert_eq!(rec.one("flow5", "client.connack").conn_ack, Some("success"));
    for name in ["client.subscribe", "session.subscribed"] {
        let e = rec.one("flow5", name);
        assert_eq!(e.topic.as_deref(), Some("flow/5/#"), "{name}");
        assert_eq!(e.opts, Some(opts(2, false, true, 2)), "{name}");
        assert_eq!(e.subid, Some(5), "{name}");
    }
    let m = rec.one("flow5", "message.publish").msg().clone();
    assert_eq!(m.from_client_id, "flow5");
    assert_eq!(m.from_username, None);
    assert_eq!((m.topic.as_str(), m.qos, m.retain), ("flow/5/x", 2, false));
    assert_eq!(m.payload, "five");
    for name in ["message.delivered", "message.acked"] {
        let e = rec.one("flow5", name);
        assert_eq!(e.msg(), &m, "{name}");
        assert_eq!(e.delivery, Some((2, false)), "{name}");
    }
    assert_eq!(
        rec.one("flow5", "client.disconnected").disconnect(),
        DisconnectReason::Normal
    );
    assert_eq!(
        rec.one("flow5", "session.terminated").termination(),
        TerminationReason::Closed(DisconnectReason::Normal)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn empty_client_id_is_reported_as_sent_then_as_assigned() {
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    let (_raw, ack) = raw_connect(&server, connect_packet(Protocol::V5, "", true, 0)).await;
    let assigned = ack
        .properties
        .assigned_client_identifier
        .expect("an assigned client id")
        .to_string();
    rec.wait(&assigned, "client.connected").await;
    assert_eq!(rec.names(""), ["client.connect"]);
    assert_eq!(
        rec.names(&assigned),
        ["session.created", "client.connack", "client.connected"]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_3_1_reports_proto_ver_3() {
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    let _raw = raw_session(
        &server,
        connect_packet(Protocol::V3_1, "old-timer", true, 7),
    )
    .await;
    rec.wait("old-timer", "client.connected").await;
    assert_eq!(rec.names("old-timer"), CONNECTED);
    assert_client_fields(&rec.of("old-timer"), None, 7, 3);
    server.shutdown().await;
}

#[tokio::test]
async fn ipv4_mapped_peer_is_reported_as_ipv4() {
    // A dual-stack listener sees 127.0.0.1 as ::ffff:127.0.0.1.
    let Ok(server) = herald_broker::start({
        let mut config = test_config();
        config.listener.bind = vec!["[::]:0".parse().unwrap()];
        config
    })
    .await
    else {
        eprintln!("no IPv6 here; skipped");
        return;
    };
    let rec = Recorder::install(&server.broker.hooks);
    let port = addr(&server).port();
    let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        eprintln!("the IPv6 listener is not dual-stack here; skipped");
        return;
    };
    let mut raw = Raw {
        stream,
        buf: Default::default(),
        protocol: Protocol::V3_1_1,
    };
    raw.send(&Packet::Connect(Box::new(connect_packet(
        Protocol::V3_1_1,
        "mapped",
        true,
        0,
    ))))
    .await;
    assert!(matches!(next(&mut raw).await, Packet::ConnAck(_)));
    let connected = rec.wait("mapped", "client.connected").await;
    assert_eq!(connected.peer_ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    server.shutdown().await;
}

// --------------------------------------------------------- refusals

#[tokio::test]
async fn refused_by_authenticator_fires_connack_bad_username_or_password_only() {
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    let check = Arc::new(PasswordCheck {
        asked: AtomicUsize::new(0),
    });
    server.broker.hooks.add_authenticator(0, check.clone());

    // 3.1.1 through rumqttc.
    let mut options = v4::options(&server, "bad4");
    options.set_credentials("mallory", "wrong");
    let (_client, mut eventloop) = v4::AsyncClient::new(options, 10);
    let error = tokio::time::timeout(WAIT, eventloop.poll())
        .await
        .expect("answered within the wait")
        .expect_err("refused");
    assert!(
        matches!(
            error,
            rumqttc::ConnectionError::ConnectionRefused(
                rumqttc::ConnectReturnCode::BadUserNamePassword
            )
        ),
        "{error:?}"
    );
    // The refusal is answered after client.connack fired, so the client's
    // events are complete.
    assert_eq!(rec.names("bad4"), ["client.connect", "client.connack"]);
    let connack = rec.one("bad4", "client.connack");
    assert_eq!(connack.conn_ack, Some("bad_username_or_password"));
    assert_eq!(connack.username.as_deref(), Some("mallory"));
    assert_eq!(connack.proto_ver, Some(4));

    // 5.0, raw: the exact reason code.
    let mut connect = connect_packet(Protocol::V5, "bad5", true, 0);
    connect.username = Some(ByteStr::from("mallory"));
    connect.password = Some(Bytes::from_static(b"wrong"));
    let (mut raw, ack) = raw_connect(&server, connect.clone()).await;
    assert_eq!(ack.code, ReasonCode::BAD_USERNAME_OR_PASSWORD);
    assert!(raw.recv().await.is_none(), "closed after the refusal");
    assert_eq!(rec.names("bad5"), ["client.connect", "client.connack"]);
    assert_eq!(
        rec.one("bad5", "client.connack").conn_ack,
        Some("bad_username_or_password")
    );

    // The right password gets in.
    connect.password = Some(Bytes::from_static(b"right"));
    let _raw = raw_session(&server, connect).await;
    rec.nth("bad5", "client.connected", 1).await;
    assert_eq!(
        rec.names("bad5"),
        [
            "client.connect",
            "client.connack",
            "client.connect",
            "session.created",
            "client.connack",
            "client.connected"
        ]
    );
    assert_eq!(check.asked.load(Ordering::SeqCst), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn anonymous_refused_when_not_allowed_is_not_authorized() {
    let server = start_with(|c| c.auth.allow_anonymous = Some(false)).await;
    let rec = Recorder::install(&server.broker.hooks);
    let (mut raw, ack) =
        raw_connect(&server, connect_packet(Protocol::V3_1_1, "anon", true, 0)).await;
    assert_eq!(ack.code, ReasonCode::NOT_AUTHORIZED);
    assert!(raw.recv().await.is_none(), "closed after the refusal");
    assert_eq!(rec.names("anon"), ["client.connect", "client.connack"]);
    let connack = rec.one("anon", "client.connack");
    assert_eq!(connack.conn_ack, Some("not_authorized"));
    assert_eq!(connack.username, None);

    // A user name no source can check is refused the same way.
    let mut connect = connect_packet(Protocol::V3_1_1, "named", true, 0);
    connect.username = Some(ByteStr::from("bob"));
    let (_raw, ack) = raw_connect(&server, connect).await;
    assert_eq!(ack.code, ReasonCode::NOT_AUTHORIZED);
    assert_eq!(rec.names("named"), ["client.connect", "client.connack"]);
    server.shutdown().await;
}

// ------------------------------------------ how connections and sessions end

#[tokio::test(start_paused = true)]
async fn keepalive_timeout_disconnects_and_terminates_with_keepalive_timeout() {
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut raw = raw_session(&server, connect_packet(Protocol::V3_1_1, "ka", true, 2)).await;
    let t0 = Instant::now();
    let disconnected = rec.wait("ka", "client.disconnected").await;
    assert!(t0.elapsed() >= Duration::from_secs(3), "{:?}", t0.elapsed());
    assert_eq!(
        disconnected.disconnect(),
        DisconnectReason::KeepaliveTimeout
    );
    assert_eq!(disconnected.keepalive, Some(2));
    let terminated = rec.wait("ka", "session.terminated").await;
    assert_eq!(
        terminated.termination(),
        TerminationReason::Closed(DisconnectReason::KeepaliveTimeout)
    );
    assert_eq!(
        rec.names("ka"),
        connected_then(&["client.disconnected", "session.terminated"])
    );
    assert!(raw.recv().await.is_none(), "closed");
    server.shutdown().await;
}

#[tokio::test]
async fn takeover_old_disconnected_before_new_connected_and_session_resumed() {
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    let cases = [
        (
            "tk4",
            connect_packet(Protocol::V3_1_1, "tk4", false, 0),
            connect_packet(Protocol::V3_1_1, "tk4", false, 0),
        ),
        (
            "tk5",
            connect_v5_expiry("tk5", true, 60),
            connect_v5_expiry("tk5", false, 60),
        ),
    ];
    for (id, first, second) in cases {
        let protocol = first.protocol;
        let mut old = raw_session(&server, first).await;
        let (_new, ack) = raw_connect(&server, second).await;
        assert_eq!(ack.code, ReasonCode::SUCCESS, "{id}");
        assert!(ack.session_present, "{id}: resumed");
        rec.nth(id, "client.connected", 2).await;
        assert_eq!(
            rec.names(id),
            connected_then(&[
                "client.connect",
                "client.disconnected",
                "session.takeovered",
                "session.resumed",
                "client.connack",
                "client.connected",
            ]),
            "{id}"
        );
        assert_eq!(
            rec.one(id, "client.disconnected").disconnect(),
            DisconnectReason::TakenOver
        );
        // The old connection is closed (5.0: DISCONNECT 0x8E first).
        if protocol.is_v5() {
            match next(&mut old).await {
                Packet::Disconnect(d) => assert_eq!(d.reason, ReasonCode::SESSION_TAKEN_OVER),
                other => panic!("expected DISCONNECT, got {other:?}"),
            }
        }
        assert!(old.recv().await.is_none(), "{id}: old socket closed");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn clean_start_discards_an_offline_session() {
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut old = raw_session(&server, connect_packet(Protocol::V3_1_1, "cd", false, 0)).await;
    let codes = raw_subscribe(
        &mut old,
        1,
        Properties::default(),
        vec![sub("cd/t", QoS::AtLeastOnce)],
    )
    .await;
    assert_eq!(codes, [ReasonCode::GRANTED_QOS_1]);
    old.send(&disconnect_packet()).await;
    assert!(old.recv().await.is_none());
    rec.wait("cd", "client.disconnected").await;

    let (_new, ack) = raw_connect(&server, connect_packet(Protocol::V3_1_1, "cd", true, 0)).await;
    assert!(!ack.session_present);
    rec.nth("cd", "client.connected", 2).await;
    assert_eq!(
        rec.names("cd"),
        connected_then(&[
            "client.subscribe",
            "session.subscribed",
            "client.disconnected",
            "client.connect",
            "session.discarded",
            "session.terminated",
            "session.created",
            "client.connack",
            "client.connected",
        ])
    );
    assert_eq!(
        rec.one("cd", "client.disconnected").disconnect(),
        DisconnectReason::Normal
    );
    assert_eq!(
        rec.one("cd", "session.terminated").termination(),
        TerminationReason::Discarded
    );

    // The old session's subscription went with it.
    let mut publisher = raw_session(&server, connect_packet(Protocol::V5, "cd-pub", true, 0)).await;
    let code = raw_publish_qos1(&mut publisher, "cd/t", 1, "x").await;
    assert_eq!(code, ReasonCode::NO_MATCHING_SUBSCRIBERS);
    let dropped = rec.wait("cd-pub", "message.dropped").await;
    assert_eq!(dropped.drop_reason, Some(DropReason::NoSubscribers));
    server.shutdown().await;
}

#[tokio::test]
async fn clean_start_discards_the_session_of_a_connected_client() {
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut old = raw_session(&server, connect_packet(Protocol::V3_1_1, "ct", false, 0)).await;
    let (_new, ack) = raw_connect(&server, connect_packet(Protocol::V3_1_1, "ct", true, 0)).await;
    assert!(!ack.session_present);
    rec.nth("ct", "client.connected", 2).await;
    assert_eq!(
        rec.names("ct"),
        connected_then(&[
            "client.connect",
            "client.disconnected",
            "session.discarded",
            "session.terminated",
            "session.created",
            "client.connack",
            "client.connected",
        ])
    );
    assert_eq!(
        rec.one("ct", "client.disconnected").disconnect(),
        DisconnectReason::TakenOver
    );
    assert_eq!(
        rec.one("ct", "session.terminated").termination(),
        TerminationReason::Discarded
    );
    assert!(old.recv().await.is_none(), "old socket closed");
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn session_expiry_terminates_with_expired() {
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut raw = raw_session(&server, connect_v5_expiry("se", true, 5)).await;
    raw.send(&disconnect_packet()).await;
    let disconnected = rec.wait("se", "client.disconnected").await;
    assert_eq!(disconnected.disconnect(), DisconnectReason::Normal);
    let t0 = Instant::now();
    assert!(raw.recv().await.is_none());
    let terminated = rec.wait("se", "session.terminated").await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
        "terminated after {waited:?}"
    );
    assert_eq!(terminated.termination(), TerminationReason::Expired);
    assert_eq!(
        rec.names("se"),
        connected_then(&["client.disconnected", "session.terminated"])
    );
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn resuming_before_expiry_cancels_it() {
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut raw = raw_session(&server, connect_v5_expiry("se2", true, 5)).await;
    raw.send(&disconnect_packet()).await;
    assert!(raw.recv().await.is_none());
    rec.wait("se2", "client.disconnected").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (mut raw, ack) = raw_connect(&server, connect_v5_expiry("se2", false, 5)).await;
    assert!(ack.session_present);
    raw.send(&disconnect_packet()).await;
    assert!(raw.recv().await.is_none());
    rec.nth("se2", "client.disconnected", 2).await;
    let t1 = Instant::now();
    // The first disconnection's timer (due 2 s from now) must not end it.
    let terminated = rec.wait("se2", "session.terminated").await;
    assert!(t1.elapsed() >= Duration::from_secs(5), "{:?}", t1.elapsed());
    assert_eq!(terminated.termination(), TerminationReason::Expired);
    assert_eq!(
        rec.names("se2"),
        connected_then(&[
            "client.disconnected",
            "client.connect",
            "session.resumed",
            "client.connack",
            "client.connected",
            "client.disconnected",
            "session.terminated",
        ])
    );
    server.shutdown().await;
}

#[tokio::test]
async fn will_message_is_published_from_the_departed_client() {
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut watcher = raw_session(&server, connect_packet(Protocol::V5, "watcher", true, 0)).await;
    let codes = raw_subscribe(
        &mut watcher,
        1,
        Properties::default(),
        vec![sub("will/#", QoS::AtLeastOnce)],
    )
    .await;
    assert_eq!(codes, [ReasonCode::GRANTED_QOS_1]);

    let mut connect = connect_packet(Protocol::V3_1_1, "mortal", true, 0);
    connect.username = Some(ByteStr::from("carol"));
    connect.will = Some(Will {
        topic: ByteStr::from("will/mortal"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::default(),
    });
    let mortal = raw_session(&server, connect).await;
    rec.wait("mortal", "client.connected").await;
    drop(mortal); // the socket closes without DISCONNECT
    rec.wait("mortal", "session.terminated").await;
    assert_eq!(
        rec.names("mortal"),
        connected_then(&[
            "client.disconnected",
            "message.publish",
            "session.terminated",
        ])
    );
    assert_eq!(
        rec.one("mortal", "client.disconnected").disconnect(),
        DisconnectReason::SocketClosed
    );
    assert_eq!(
        rec.one("mortal", "session.terminated").termination(),
        TerminationReason::Closed(DisconnectReason::SocketClosed)
    );
    let will = rec.one("mortal", "message.publish");
    let m = will.msg();
    assert_eq!(m.from_client_id, "mortal");
    assert_eq!(m.from_username.as_deref(), Some("carol"));
    assert_eq!(
        (m.topic.as_str(), m.qos, m.retain),
        ("will/mortal", 1, false)
    );
    assert_eq!(m.payload, "gone");

    let got = next(&mut watcher).await;
    assert!(is_publish(&got, "will/mortal", b"gone"), "{got:?}");
    let delivered = rec.wait("watcher", "message.delivered").await;
    assert_eq!(delivered.msg(), m);
    server.shutdown().await;
}

// ---------------------------------------------------------- subscriptions

#[tokio::test]
async fn subscribe_with_three_filters_fires_three_of_each() {
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut raw = raw_session(&server, connect_packet(Protocol::V5, "three", true, 0)).await;
    let mut c = sub("c/#", QoS::ExactlyOnce);
    c.options.retain_as_published = true;
    c.options.retain_handling = RetainHandling::DoNotSend;
    let mut b = sub("b/+", QoS::AtLeastOnce);
    b.options.no_local = true;
    let codes = raw_subscribe(
        &mut raw,
        1,
        Properties::default(),
        vec![sub("a", QoS::AtMostOnce), b, c],
    )
    .await;
    assert_eq!(
        codes,
        [
            ReasonCode::SUCCESS,
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::GRANTED_QOS_2
        ]
    );
    rec.nth("three", "session.subscribed", 3).await;
    // Each filter's client.subscribe, then its session.subscribed.
    assert_eq!(
        rec.names("three"),
        connected_then(&[
            "client.subscribe",
            "session.subscribed",
            "client.subscribe",
            "session.subscribed",
            "client.subscribe",
            "session.subscribed",
        ])
    );
    let expected = [
        ("a", opts(0, false, false, 0)),
        ("b/+", opts(1, true, false, 0)),
        ("c/#", opts(2, false, true, 2)),
    ];
    for name in ["client.subscribe", "session.subscribed"] {
        let got: Vec<(String, Opts)> = rec
            .of("three")
            .into_iter()
            .filter(|e| e.name == name)
            .map(|e| (e.topic.unwrap(), e.opts.unwrap()))
            .collect();
        let want: Vec<(String, Opts)> = expected.iter().map(|(t, o)| (t.to_string(), *o)).collect();
        assert_eq!(got, want, "{name}");
    }

    // The same filter again replaces the subscription: is_new false.
    let codes = raw_subscribe(
        &mut raw,
        2,
        Properties::default(),
        vec![sub("a", QoS::AtLeastOnce)],
    )
    .await;
    assert_eq!(codes, [ReasonCode::GRANTED_QOS_1]);
    let again = rec.nth("three", "session.subscribed", 4).await;
    assert_eq!(again.topic.as_deref(), Some("a"));
    assert_eq!(again.is_new, Some(false));
    assert_eq!(again.opts, Some(opts(1, false, false, 0)));
    server.shutdown().await;
}

#[tokio::test]
async fn refused_filter_fires_client_subscribe_but_not_session_subscribed() {
    let server = start_with(|c| c.authz.deny_subscribe = vec!["private/#".into()]).await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut raw = raw_session(&server, connect_packet(Protocol::V5, "nosy", true, 0)).await;
    let codes = raw_subscribe(
        &mut raw,
        1,
        Properties::default(),
        vec![
            sub("private/x", QoS::AtLeastOnce),
            sub("public/x", QoS::AtLeastOnce),
        ],
    )
    .await;
    assert_eq!(
        codes,
        [ReasonCode::NOT_AUTHORIZED, ReasonCode::GRANTED_QOS_1]
    );
    rec.wait("nosy", "session.subscribed").await;
    assert_eq!(
        rec.names("nosy"),
        connected_then(&["client.subscribe", "client.subscribe", "session.subscribed"])
    );
    let topics: Vec<Option<String>> = rec.of("nosy")[4..]
        .iter()
        .map(|e| e.topic.clone())
        .collect();
    assert_eq!(
        topics,
        [
            Some("private/x".into()),
            Some("public/x".into()),
            Some("public/x".into())
        ]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn shared_subscription_reports_topic_and_share_group() {
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut raw = raw_session(&server, connect_packet(Protocol::V5, "member", true, 0)).await;
    let codes = raw_subscribe(
        &mut raw,
        1,
        Properties::default(),
        vec![sub("$share/g/t/x", QoS::AtLeastOnce)],
    )
    .await;
    assert_eq!(codes, [ReasonCode::GRANTED_QOS_1]);
    for name in ["client.subscribe", "session.subscribed"] {
        let e = rec.wait("member", name).await;
        assert_eq!(e.topic.as_deref(), Some("t/x"), "{name}");
        assert_eq!(e.share.as_deref(), Some("g"), "{name}");
        assert_eq!(e.opts, Some(opts(1, false, false, 0)), "{name}");
    }

    // A message to t/x reaches the member.
    let mut publisher = raw_session(&server, connect_packet(Protocol::V5, "sharer", true, 0)).await;
    let code = raw_publish_qos1(&mut publisher, "t/x", 1, "for the group").await;
    assert_eq!(code, ReasonCode::SUCCESS);
    let got = next(&mut raw).await;
    assert!(is_publish(&got, "t/x", b"for the group"), "{got:?}");
    let delivered = rec.wait("member", "message.delivered").await;
    assert_eq!(delivered.msg().from_client_id, "sharer");

    raw.send(&Packet::Unsubscribe(Unsubscribe {
        packet_id: 2,
        properties: Properties::default(),
        filters: vec![ByteStr::from("$share/g/t/x"), ByteStr::from("never/was")],
    }))
    .await;
    match next(&mut raw).await {
        Packet::UnsubAck(ack) => assert_eq!(
            ack.codes,
            [ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
        ),
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    assert_eq!(
        rec.names("member"),
        connected_then(&[
            "client.subscribe",
            "session.subscribed",
            "message.delivered",
            "client.unsubscribe",
            "session.unsubscribed",
            "client.unsubscribe",
        ])
    );
    let unsubs: Vec<(Option<String>, Option<String>)> = rec
        .of("member")
        .into_iter()
        .filter(|e| e.name.ends_with("unsubscribe") || e.name.ends_with("unsubscribed"))
        .map(|e| (e.topic, e.share))
        .collect();
    let group = || Some("g".to_string());
    assert_eq!(
        unsubs,
        [
            (Some("t/x".into()), group()),
            (Some("t/x".into()), group()),
            (Some("never/was".into()), None),
        ]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn subscription_identifier_is_reported() {
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut raw = raw_session(&server, connect_packet(Protocol::V5, "sid", true, 0)).await;
    let props = Properties {
        subscription_identifiers: vec![42],
        ..Properties::default()
    };
    let codes = raw_subscribe(&mut raw, 1, props, vec![sub("sid/#", QoS::AtMostOnce)]).await;
    assert_eq!(codes, [ReasonCode::SUCCESS]);
    for name in ["client.subscribe", "session.subscribed"] {
        let e = rec.wait("sid", name).await;
        assert_eq!(e.subid, Some(42), "{name}");
        assert_eq!(e.topic.as_deref(), Some("sid/#"), "{name}");
    }
    // A subscription without one reports none.
    let codes = raw_subscribe(
        &mut raw,
        2,
        Properties::default(),
        vec![sub("other", QoS::AtMostOnce)],
    )
    .await;
    assert_eq!(codes, [ReasonCode::SUCCESS]);
    let e = rec.nth("sid", "session.subscribed", 2).await;
    assert_eq!(e.subid, None);
    server.shutdown().await;
}

// ---------------------------------------------------- deliveries and drops

#[tokio::test]
async fn qos1_delivery_is_delivered_then_acked_on_puback() {
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut subscriber =
        raw_session(&server, connect_packet(Protocol::V3_1_1, "s1", true, 0)).await;
    let codes = raw_subscribe(
        &mut subscriber,
        1,
        Properties::default(),
        vec![sub("q1", QoS::AtLeastOnce)],
    )
    .await;
    assert_eq!(codes, [ReasonCode::GRANTED_QOS_1]);
    let mut publisher = raw_session(&server, connect_packet(Protocol::V3_1_1, "p1", true, 0)).await;
    raw_publish_qos1(&mut publisher, "q1", 7, "one").await;

    let Packet::Publish(p) = next(&mut subscriber).await else {
        panic!("expected PUBLISH");
    };
    assert_eq!(p.qos, QoS::AtLeastOnce);
    assert_eq!(
        rec.names("s1"),
        connected_then(&[
            "client.subscribe",
            "session.subscribed",
            "message.delivered"
        ]),
        "not acked before PUBACK"
    );
    subscriber
        .send(&Packet::PubAck(PubResp::new(p.packet_id)))
        .await;
    let acked = rec.wait("s1", "message.acked").await;
    assert_eq!(
        rec.names("s1"),
        connected_then(&[
            "client.subscribe",
            "session.subscribed",
            "message.delivered",
            "message.acked",
        ])
    );
    assert_eq!(rec.names("p1"), connected_then(&["message.publish"]));
    let published = rec.one("p1", "message.publish");
    let delivered = rec.one("s1", "message.delivered");
    for e in [&delivered, &acked] {
        assert_eq!(e.client_id, "s1", "{}", e.name);
        assert_eq!(e.msg(), published.msg(), "{}", e.name);
        assert_eq!(e.delivery, Some((1, false)), "{}", e.name);
    }
    assert_eq!(acked.msg().from_client_id, "p1");
    assert_eq!(acked.msg().payload, "one");
    assert_eq!(
        acked.msg().received_at_ms,
        published.msg().received_at_ms,
        "acked carries the publish time"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn qos2_delivery_is_acked_on_pubcomp_not_pubrec() {
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut subscriber = raw_session(&server, connect_packet(Protocol::V5, "s2", true, 0)).await;
    let codes = raw_subscribe(
        &mut subscriber,
        1,
        Properties::default(),
        vec![sub("q2", QoS::ExactlyOnce)],
    )
    .await;
    assert_eq!(codes, [ReasonCode::GRANTED_QOS_2]);
    let mut publisher = raw_session(&server, connect_packet(Protocol::V5, "p2", true, 0)).await;
    publisher
        .send(&publish_packet("q2", QoS::ExactlyOnce, 9, "two"))
        .await;
    assert!(matches!(next(&mut publisher).await, Packet::PubRec(r) if r.packet_id == 9));
    publisher.send(&Packet::PubRel(PubResp::new(9))).await;
    assert!(matches!(next(&mut publisher).await, Packet::PubComp(r) if r.packet_id == 9));

    let Packet::Publish(p) = next(&mut subscriber).await else {
        panic!("expected PUBLISH");
    };
    assert_eq!(p.qos, QoS::ExactlyOnce);
    subscriber
        .send(&Packet::PubRec(PubResp::new(p.packet_id)))
        .await;
    assert!(matches!(next(&mut subscriber).await, Packet::PubRel(r) if r.packet_id == p.packet_id));
    // The broker has handled PUBREC: still not acked.
    assert!(
        !rec.names("s2").contains(&"message.acked"),
        "acked before PUBCOMP"
    );
    subscriber
        .send(&Packet::PubComp(PubResp::new(p.packet_id)))
        .await;
    let acked = rec.wait("s2", "message.acked").await;
    assert_eq!(
        rec.names("s2"),
        connected_then(&[
            "client.subscribe",
            "session.subscribed",
            "message.delivered",
            "message.acked",
        ])
    );
    let published = rec.one("p2", "message.publish");
    assert_eq!(acked.msg(), published.msg());
    assert_eq!(acked.msg().qos, 2);
    assert_eq!(acked.delivery, Some((2, false)));
    assert_eq!(
        rec.one("s2", "message.delivered").msg().received_at_ms,
        published.msg().received_at_ms
    );
    server.shutdown().await;
}

#[tokio::test]
async fn unacknowledged_delivery_is_acked_after_the_session_resumes() {
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut first = raw_session(&server, connect_packet(Protocol::V3_1_1, "slow", false, 0)).await;
    let codes = raw_subscribe(
        &mut first,
        1,
        Properties::default(),
        vec![sub("later", QoS::AtLeastOnce)],
    )
    .await;
    assert_eq!(codes, [ReasonCode::GRANTED_QOS_1]);
    let mut publisher =
        raw_session(&server, connect_packet(Protocol::V3_1_1, "early", true, 0)).await;
    raw_publish_qos1(&mut publisher, "later", 1, "eventually").await;
    assert!(is_publish(&next(&mut first).await, "later", b"eventually"));
    // Gone without PUBACK; back with the session.
    drop(first);
    rec.wait("slow", "client.disconnected").await;
    let mut second = raw_session(&server, connect_packet(Protocol::V3_1_1, "slow", false, 0)).await;
    let Packet::Publish(p) = next(&mut second).await else {
        panic!("expected the resent PUBLISH");
    };
    assert!(p.dup);
    second
        .send(&Packet::PubAck(PubResp::new(p.packet_id)))
        .await;
    let acked = rec.wait("slow", "message.acked").await;
    assert_eq!(
        rec.names("slow"),
        connected_then(&[
            "client.subscribe",
            "session.subscribed",
            "message.delivered",
            "client.disconnected",
            "client.connect",
            "session.resumed",
            "client.connack",
            "client.connected",
            "message.acked",
        ])
    );
    assert_eq!(acked.msg(), rec.one("early", "message.publish").msg());
    server.shutdown().await;
}

#[tokio::test]
async fn retained_message_is_delivered_with_retain_and_its_publish_time() {
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut publisher = raw_session(&server, connect_packet(Protocol::V5, "keeper", true, 0)).await;
    let Packet::Publish(mut p) = publish_packet("kept", QoS::AtLeastOnce, 1, "remember") else {
        unreachable!()
    };
    p.retain = true;
    publisher.send(&Packet::Publish(p)).await;
    assert!(matches!(next(&mut publisher).await, Packet::PubAck(_)));
    let published = rec.wait("keeper", "message.publish").await;
    assert!(published.msg().retain);

    let mut reader = raw_session(&server, connect_packet(Protocol::V5, "reader", true, 0)).await;
    let codes = raw_subscribe(
        &mut reader,
        1,
        Properties::default(),
        vec![sub("kept", QoS::AtLeastOnce)],
    )
    .await;
    assert_eq!(codes, [ReasonCode::GRANTED_QOS_1]);
    let Packet::Publish(got) = next(&mut reader).await else {
        panic!("expected the retained PUBLISH");
    };
    assert!(got.retain);
    let delivered = rec.wait("reader", "message.delivered").await;
    assert_eq!(delivered.delivery, Some((1, true)));
    assert_eq!(delivered.msg(), published.msg(), "the original message");
    assert_eq!(
        rec.names("reader"),
        connected_then(&[
            "client.subscribe",
            "session.subscribed",
            "message.delivered"
        ])
    );
    server.shutdown().await;
}

#[tokio::test]
async fn overlapping_subscriptions_deliver_once_at_the_highest_qos() {
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut raw = raw_session(&server, connect_packet(Protocol::V5, "overlap", true, 0)).await;
    let codes = raw_subscribe(
        &mut raw,
        1,
        Properties::default(),
        vec![sub("o/#", QoS::AtMostOnce), sub("o/+", QoS::AtLeastOnce)],
    )
    .await;
    assert_eq!(codes, [ReasonCode::SUCCESS, ReasonCode::GRANTED_QOS_1]);
    let mut publisher = raw_session(&server, connect_packet(Protocol::V5, "opub", true, 0)).await;
    raw_publish_qos1(&mut publisher, "o/x", 1, "once").await;
    let Packet::Publish(p) = next(&mut raw).await else {
        panic!("expected PUBLISH");
    };
    raw.send(&Packet::PubAck(PubResp::new(p.packet_id))).await;
    rec.wait("overlap", "message.acked").await;
    assert_eq!(
        rec.names("overlap"),
        connected_then(&[
            "client.subscribe",
            "session.subscribed",
            "client.subscribe",
            "session.subscribed",
            "message.delivered",
            "message.acked",
        ])
    );
    assert_eq!(
        rec.one("overlap", "message.delivered").delivery,
        Some((1, false))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn client_subscribe_has_requested_and_session_subscribed_granted_options() {
    let server = start_with(|c| c.mqtt.max_qos = 1).await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut raw = raw_session(&server, connect_packet(Protocol::V3_1_1, "capped", true, 0)).await;
    let codes = raw_subscribe(
        &mut raw,
        1,
        Properties::default(),
        vec![sub("cap", QoS::ExactlyOnce)],
    )
    .await;
    assert_eq!(codes, [ReasonCode::GRANTED_QOS_1]);
    let requested = rec.wait("capped", "client.subscribe").await;
    let granted = rec.wait("capped", "session.subscribed").await;
    assert_eq!(requested.opts, Some(opts(2, false, false, 0)));
    assert_eq!(granted.opts, Some(opts(1, false, false, 0)));
    server.shutdown().await;
}

#[tokio::test]
async fn publish_without_subscribers_is_dropped_no_subscribers() {
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut raw = raw_session(&server, connect_packet(Protocol::V5, "lonely", true, 0)).await;
    let code = raw_publish_qos1(&mut raw, "nobody/here", 1, "echo").await;
    assert_eq!(code, ReasonCode::NO_MATCHING_SUBSCRIBERS);
    rec.wait("lonely", "message.dropped").await;
    assert_eq!(
        rec.names("lonely"),
        connected_then(&["message.publish", "message.dropped"])
    );
    let published = rec.one("lonely", "message.publish");
    let dropped = rec.one("lonely", "message.dropped");
    assert_eq!(dropped.drop_reason, Some(DropReason::NoSubscribers));
    assert_eq!(dropped.msg(), published.msg());
    assert_eq!(dropped.msg().topic, "nobody/here");
    assert_eq!(dropped.msg().payload, "echo");
    server.shutdown().await;
}

#[tokio::test]
async fn offline_queue_overflow_is_dropped_queue_full() {
    let server = start_with(|c| c.mqtt.max_queued_messages = 2).await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut away = raw_session(&server, connect_packet(Protocol::V3_1_1, "away", false, 0)).await;
    let codes = raw_subscribe(
        &mut away,
        1,
        Properties::default(),
        vec![sub("inbox", QoS::AtLeastOnce)],
    )
    .await;
    assert_eq!(codes, [ReasonCode::GRANTED_QOS_1]);
    away.send(&disconnect_packet()).await;
    assert!(away.recv().await.is_none());
    rec.wait("away", "client.disconnected").await;

    let mut sender =
        raw_session(&server, connect_packet(Protocol::V3_1_1, "sender", true, 0)).await;
    for (i, payload) in ["m1", "m2", "m3"].into_iter().enumerate() {
        raw_publish_qos1(&mut sender, "inbox", i as u16 + 1, payload).await;
    }
    rec.wait("sender", "message.dropped").await;
    assert_eq!(
        rec.names("sender"),
        connected_then(&[
            "message.publish",
            "message.publish",
            "message.publish",
            "message.dropped",
        ])
    );
    let dropped = rec.one("sender", "message.dropped");
    assert_eq!(dropped.drop_reason, Some(DropReason::QueueFull));
    assert_eq!(dropped.msg().payload, "m3");
    assert_eq!(dropped.msg().from_client_id, "sender");

    // Back online, the two queued messages are delivered.
    let mut back = raw_session(&server, connect_packet(Protocol::V3_1_1, "away", false, 0)).await;
    for want in ["m1", "m2"] {
        let got = next(&mut back).await;
        assert!(is_publish(&got, "inbox", want.as_bytes()), "{got:?}");
    }
    rec.nth("away", "message.delivered", 2).await;
    assert_eq!(
        rec.names("away"),
        connected_then(&[
            "client.subscribe",
            "session.subscribed",
            "client.disconnected",
            "client.connect",
            "session.resumed",
            "client.connack",
            "client.connected",
            "message.delivered",
            "message.delivered",
        ])
    );
    server.shutdown().await;
}

// --------------------------------------------------- decision handlers

#[tokio::test]
async fn authorizer_denying_publish_answers_0x87_and_drops_not_authorized() {
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    server.broker.hooks.add_authorizer(0, Arc::new(NoSecrets));
    let mut raw = raw_session(&server, connect_packet(Protocol::V5, "spy", true, 0)).await;
    let code = raw_publish_qos1(&mut raw, "secret/plans", 1, "classified").await;
    assert_eq!(code, ReasonCode::NOT_AUTHORIZED);
    let code = raw_publish_qos1(&mut raw, "open/news", 2, "public").await;
    assert_eq!(code, ReasonCode::NO_MATCHING_SUBSCRIBERS);
    rec.nth("spy", "message.dropped", 2).await;
    // A refused message is never routed: no message.publish for it.
    assert_eq!(
        rec.names("spy"),
        connected_then(&["message.dropped", "message.publish", "message.dropped"])
    );
    let drops: Vec<(Option<DropReason>, String)> = rec
        .of("spy")
        .into_iter()
        .filter(|e| e.name == "message.dropped")
        .map(|e| (e.drop_reason, e.msg().topic.clone()))
        .collect();
    assert_eq!(
        drops,
        [
            (Some(DropReason::NotAuthorized), "secret/plans".into()),
            (Some(DropReason::NoSubscribers), "open/news".into())
        ]
    );
    // The connection goes on.
    raw.send(&Packet::PingReq).await;
    assert!(matches!(next(&mut raw).await, Packet::PingResp));
    server.shutdown().await;
}

#[tokio::test]
async fn decision_handlers_run_in_priority_order_until_one_decides() {
    // The configuration alone would refuse publishing to `cfg/denied`.
    let server = start_with(|c| c.authz.deny_publish = vec!["cfg/denied".into()]).await;
    let hooks = &server.broker.hooks;
    let rec = Recorder::install(hooks);

    // Authorization: a higher-priority Ignore, then a lower-priority Allow.
    let ignore = Fixed::new(Decision::Ignore);
    let allow = Fixed::new(Decision::Allow);
    hooks.add_authorizer(0, allow.clone());
    hooks.add_authorizer(10, ignore.clone());
    let mut raw = raw_session(&server, connect_packet(Protocol::V5, "prio", true, 0)).await;
    let code = raw_publish_qos1(&mut raw, "cfg/denied", 1, "x").await;
    assert_eq!(code, ReasonCode::NO_MATCHING_SUBSCRIBERS, "Allow decided");
    assert_eq!((ignore.asked(), allow.asked()), (1, 1));

    // A Deny at a priority between them decides before the Allow is asked.
    let deny = Fixed::new(Decision::Deny(ReasonCode::NOT_AUTHORIZED));
    let deny_id = hooks.add_authorizer(5, deny.clone());
    let code = raw_publish_qos1(&mut raw, "anything", 2, "x").await;
    assert_eq!(code, ReasonCode::NOT_AUTHORIZED, "Deny decided");
    assert_eq!((ignore.asked(), deny.asked(), allow.asked()), (2, 1, 1));

    // Removed at runtime: the Allow decides again.
    assert!(hooks.remove(deny_id));
    assert!(!hooks.remove(deny_id), "already removed");
    let code = raw_publish_qos1(&mut raw, "anything", 3, "x").await;
    assert_eq!(code, ReasonCode::NO_MATCHING_SUBSCRIBERS);
    assert_eq!((ignore.asked(), deny.asked(), allow.asked()), (3, 1, 2));

    // Authentication: Ignore above Deny(0x86) refuses; an Allow above both
    // lets in without asking them.
    let auth_ignore = Fixed::new(Decision::Ignore);
    let auth_deny = Fixed::new(Decision::Deny(ReasonCode::BAD_USERNAME_OR_PASSWORD));
    hooks.add_authenticator(10, auth_ignore.clone());
    hooks.add_authenticator(0, auth_deny.clone());
    let (_raw, ack) = raw_connect(&server, connect_packet(Protocol::V5, "who", true, 0)).await;
    assert_eq!(ack.code, ReasonCode::BAD_USERNAME_OR_PASSWORD);
    assert_eq!((auth_ignore.asked(), auth_deny.asked()), (1, 1));
    let auth_allow = Fixed::new(Decision::Allow);
    hooks.add_authenticator(20, auth_allow.clone());
    let _raw = raw_session(&server, connect_packet(Protocol::V5, "who", true, 0)).await;
    assert_eq!(
        (auth_allow.asked(), auth_ignore.asked(), auth_deny.asked()),
        (1, 1, 1)
    );
    rec.wait("who", "client.connected").await;
    assert_eq!(
        rec.names("who"),
        [
            "client.connect",
            "client.connack",
            "client.connect",
            "session.created",
            "client.connack",
            "client.connected",
        ]
    );
    server.shutdown().await;
}

// ------------------------------------------------- runtime registration

#[tokio::test]
async fn remove_and_replace_handler_take_effect_for_the_next_event() {
    let server = start().await;
    let hooks = &server.broker.hooks;
    // Always registered: tells when an event has been fired.
    let witness = Recorder::install(hooks);
    let first = Arc::new(Recorder::default());
    let id = hooks.add_handler(5, first.clone());

    let _a = raw_session(&server, connect_packet(Protocol::V5, "ra", true, 0)).await;
    witness.wait("ra", "client.connected").await;
    assert_eq!(first.names("ra"), CONNECTED);

    // Replaced: the next events go to the new handler only.
    let second = Arc::new(Recorder::default());
    assert!(hooks.replace_handler(id, second.clone()));
    let _b = raw_session(&server, connect_packet(Protocol::V5, "rb", true, 0)).await;
    witness.wait("rb", "client.connected").await;
    assert!(first.names("rb").is_empty(), "the replaced handler saw rb");
    assert_eq!(second.names("rb"), CONNECTED);
    assert!(second.names("ra").is_empty());

    // Removed: nothing more reaches it.
    assert!(hooks.remove(id));
    assert!(!hooks.replace_handler(id, first.clone()), "unknown id");
    let mut c = raw_session(&server, connect_packet(Protocol::V5, "rc", true, 0)).await;
    witness.wait("rc", "client.connected").await;
    assert!(second.names("rc").is_empty(), "the removed handler saw rc");
    assert!(first.names("rc").is_empty());
    assert_eq!(witness.names("rc"), CONNECTED);

    // Registered at runtime, mid-connection: sees that connection's next event.
    let late = Recorder::install(hooks);
    raw_publish_qos1(&mut c, "late/topic", 1, "x").await;
    late.wait("rc", "message.dropped").await;
    assert_eq!(late.names("rc"), ["message.publish", "message.dropped"]);
    server.shutdown().await;
}

/// Panics on every event.
struct Panicker;

/// Keeps the expected panics of [`Panicker`] out of the test output; every
/// other panic is reported as usual.
fn quiet_plugin_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied());
            if !message.is_some_and(|m| m.starts_with("a broken plugin")) {
                default(info);
            }
        }));
    });
}

impl Handler for Panicker {
    fn on_event(&self, event: &Event<'_>) {
        panic!("a broken plugin on {}", event.name());
    }
}

#[tokio::test]
async fn a_panicking_handler_does_not_break_the_connection() {
    quiet_plugin_panics();
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    // Runs before the recorder on every event, and panics.
    server.broker.hooks.add_handler(100, Arc::new(Panicker));
    let mut raw = raw_session(&server, connect_packet(Protocol::V5, "brave", true, 0)).await;
    let codes = raw_subscribe(
        &mut raw,
        1,
        Properties::default(),
        vec![sub("echo", QoS::AtLeastOnce)],
    )
    .await;
    assert_eq!(codes, [ReasonCode::GRANTED_QOS_1]);
    let code = raw_publish_qos1(&mut raw, "echo", 2, "still works").await;
    assert_eq!(code, ReasonCode::SUCCESS);
    let Packet::Publish(p) = next(&mut raw).await else {
        panic!("expected PUBLISH");
    };
    assert_eq!(p.payload, "still works");
    raw.send(&Packet::PubAck(PubResp::new(p.packet_id))).await;
    raw.send(&disconnect_packet()).await;
    assert!(raw.recv().await.is_none());
    rec.wait("brave", "session.terminated").await;
    // Every event still reached the handler after the panicking one.
    assert_eq!(
        rec.names("brave"),
        connected_then(&[
            "client.subscribe",
            "session.subscribed",
            "message.publish",
            "message.delivered",
            "message.acked",
            "client.disconnected",
            "session.terminated",
        ])
    );
    server.shutdown().await;
}

// ------------------------------------------------ every other drop path

#[tokio::test(start_paused = true)]
async fn queued_message_that_expires_is_dropped_expired() {
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut sub5 = raw_session(&server, connect_v5_expiry("late", true, 100)).await;
    let codes = raw_subscribe(
        &mut sub5,
        1,
        Properties::default(),
        vec![sub("news", QoS::AtLeastOnce)],
    )
    .await;
    assert_eq!(codes, [ReasonCode::GRANTED_QOS_1]);
    sub5.send(&disconnect_packet()).await;
    assert!(sub5.recv().await.is_none());
    rec.wait("late", "client.disconnected").await;

    let mut publisher = raw_session(&server, connect_packet(Protocol::V5, "news", true, 0)).await;
    let Packet::Publish(mut p) = publish_packet("news", QoS::AtLeastOnce, 1, "stale") else {
        unreachable!()
    };
    p.properties.message_expiry_interval = Some(1);
    publisher.send(&Packet::Publish(p)).await;
    assert!(
        matches!(next(&mut publisher).await, Packet::PubAck(a) if a.reason == ReasonCode::SUCCESS)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    let _back = raw_session(&server, connect_v5_expiry("late", false, 100)).await;
    let dropped = rec.wait("news", "message.dropped").await;
    assert_eq!(dropped.drop_reason, Some(DropReason::Expired));
    assert_eq!(dropped.msg().payload, "stale");
    assert_eq!(
        rec.names("news"),
        connected_then(&["message.publish", "message.dropped"])
    );
    assert!(!rec.names("late").contains(&"message.delivered"));
    server.shutdown().await;
}

#[tokio::test]
async fn message_above_subscriber_maximum_packet_size_is_dropped_packet_too_large() {
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut connect = connect_packet(Protocol::V5, "small", true, 0);
    connect.properties.maximum_packet_size = Some(64);
    let mut small = raw_session(&server, connect).await;
    let codes = raw_subscribe(
        &mut small,
        1,
        Properties::default(),
        vec![sub("big/#", QoS::AtMostOnce)],
    )
    .await;
    assert_eq!(codes, [ReasonCode::SUCCESS]);
    let mut publisher = raw_session(&server, connect_packet(Protocol::V5, "bigpub", true, 0)).await;
    let huge: &'static str = Box::leak("x".repeat(200).into_boxed_str());
    raw_publish_qos1(&mut publisher, "big/one", 1, huge).await;
    raw_publish_qos1(&mut publisher, "big/two", 2, "fits").await;
    // The small message that follows arrives: the big one was skipped.
    let got = next(&mut small).await;
    assert!(is_publish(&got, "big/two", b"fits"), "{got:?}");
    let dropped = rec.wait("bigpub", "message.dropped").await;
    assert_eq!(dropped.drop_reason, Some(DropReason::PacketTooLarge));
    assert_eq!(dropped.msg().topic, "big/one");
    assert_eq!(
        rec.names("bigpub"),
        connected_then(&["message.publish", "message.dropped", "message.publish"])
    );
    assert_eq!(
        rec.names("small"),
        connected_then(&[
            "client.subscribe",
            "session.subscribed",
            "message.delivered"
        ])
    );
    server.shutdown().await;
}

#[tokio::test]
async fn qos2_beyond_receive_maximum_is_dropped_receive_maximum_exceeded() {
    let server = start_with(|c| c.mqtt.receive_maximum = 1).await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut raw = raw_session(&server, connect_packet(Protocol::V5, "eager", true, 0)).await;
    raw.send(&publish_packet("q/a", QoS::ExactlyOnce, 1, "first"))
        .await;
    assert!(matches!(next(&mut raw).await, Packet::PubRec(_)));
    raw.send(&publish_packet("q/b", QoS::ExactlyOnce, 2, "second"))
        .await;
    match next(&mut raw).await {
        Packet::Disconnect(d) => assert_eq!(d.reason, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    rec.wait("eager", "session.terminated").await;
    assert_eq!(
        rec.names("eager"),
        connected_then(&[
            "message.publish",
            "message.dropped",
            "message.dropped",
            "client.disconnected",
            "session.terminated",
        ])
    );
    let drops: Vec<(Option<DropReason>, Bytes)> = rec
        .of("eager")
        .into_iter()
        .filter(|e| e.name == "message.dropped")
        .map(|e| (e.drop_reason, e.msg().payload.clone()))
        .collect();
    assert_eq!(
        drops,
        [
            (
                Some(DropReason::NoSubscribers),
                Bytes::from_static(b"first")
            ),
            (
                Some(DropReason::ReceiveMaximumExceeded),
                Bytes::from_static(b"second")
            ),
        ]
    );
    assert_eq!(
        rec.one("eager", "client.disconnected").disconnect(),
        DisconnectReason::ProtocolError
    );
    server.shutdown().await;
}

#[tokio::test]
async fn qos0_for_an_offline_session_is_dropped_when_not_queued() {
    let server = start_with(|c| c.mqtt.queue_qos0 = false).await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut away = raw_session(&server, connect_packet(Protocol::V3_1_1, "off0", false, 0)).await;
    let codes = raw_subscribe(
        &mut away,
        1,
        Properties::default(),
        vec![sub("zero", QoS::AtLeastOnce)],
    )
    .await;
    assert_eq!(codes, [ReasonCode::GRANTED_QOS_1]);
    away.send(&disconnect_packet()).await;
    assert!(away.recv().await.is_none());
    rec.wait("off0", "client.disconnected").await;
    let mut publisher =
        raw_session(&server, connect_packet(Protocol::V3_1_1, "pub0", true, 0)).await;
    publisher
        .send(&publish_packet("zero", QoS::AtMostOnce, 0, "lost"))
        .await;
    let dropped = rec.wait("pub0", "message.dropped").await;
    assert_eq!(dropped.drop_reason, Some(DropReason::Qos0Offline));
    assert_eq!(dropped.msg().payload, "lost");
    assert_eq!(
        rec.names("pub0"),
        connected_then(&["message.publish", "message.dropped"])
    );
    server.shutdown().await;
}

#[tokio::test]
async fn discarded_session_drops_what_it_held() {
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut away = raw_session(&server, connect_packet(Protocol::V3_1_1, "held", false, 0)).await;
    let codes = raw_subscribe(
        &mut away,
        1,
        Properties::default(),
        vec![sub("held/t", QoS::AtLeastOnce)],
    )
    .await;
    assert_eq!(codes, [ReasonCode::GRANTED_QOS_1]);
    away.send(&disconnect_packet()).await;
    assert!(away.recv().await.is_none());
    rec.wait("held", "client.disconnected").await;
    let mut publisher =
        raw_session(&server, connect_packet(Protocol::V3_1_1, "giver", true, 0)).await;
    raw_publish_qos1(&mut publisher, "held/t", 1, "a").await;
    raw_publish_qos1(&mut publisher, "held/t", 2, "b").await;

    let _fresh = raw_session(&server, connect_packet(Protocol::V3_1_1, "held", true, 0)).await;
    rec.nth("held", "client.connected", 2).await;
    assert_eq!(
        rec.names("giver"),
        connected_then(&[
            "message.publish",
            "message.publish",
            "message.dropped",
            "message.dropped",
        ])
    );
    let reasons: Vec<Option<DropReason>> = rec
        .of("giver")
        .iter()
        .filter_map(|e| (e.name == "message.dropped").then_some(e.drop_reason))
        .collect();
    assert_eq!(
        reasons,
        [
            Some(DropReason::SessionEnded),
            Some(DropReason::SessionEnded)
        ]
    );
    // The drops come before the session's end is reported.
    let all: Vec<&'static str> = rec
        .all()
        .into_iter()
        .filter(|e| e.name == "message.dropped" || e.name == "session.terminated")
        .map(|e| e.name)
        .collect();
    assert_eq!(
        all,
        ["message.dropped", "message.dropped", "session.terminated"]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn will_refused_by_the_authorizer_is_dropped_not_authorized() {
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);
    server.broker.hooks.add_authorizer(0, Arc::new(NoSecrets));
    let mut connect = connect_packet(Protocol::V3_1_1, "leaker", true, 0);
    connect.will = Some(Will {
        topic: ByteStr::from("secret/will"),
        payload: Bytes::from_static(b"last words"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    });
    let raw = raw_session(&server, connect).await;
    drop(raw);
    rec.wait("leaker", "session.terminated").await;
    assert_eq!(
        rec.names("leaker"),
        connected_then(&[
            "client.disconnected",
            "message.dropped",
            "session.terminated",
        ])
    );
    let dropped = rec.one("leaker", "message.dropped");
    assert_eq!(dropped.drop_reason, Some(DropReason::NotAuthorized));
    assert_eq!(dropped.msg().topic, "secret/will");
    server.shutdown().await;
}

#[tokio::test]
async fn publish_breaking_a_protocol_rule_is_dropped_protocol_error() {
    let server = start_with(|c| c.mqtt.max_qos = 1).await;
    let rec = Recorder::install(&server.broker.hooks);
    let mut raw = raw_session(&server, connect_packet(Protocol::V5, "rude", true, 0)).await;
    raw.send(&publish_packet("too/high", QoS::ExactlyOnce, 1, "q2"))
        .await;
    match next(&mut raw).await {
        Packet::Disconnect(d) => assert_eq!(d.reason, ReasonCode::QOS_NOT_SUPPORTED),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    rec.wait("rude", "session.terminated").await;
    assert_eq!(
        rec.names("rude"),
        connected_then(&[
            "message.dropped",
            "client.disconnected",
            "session.terminated",
        ])
    );
    let dropped = rec.one("rude", "message.dropped");
    assert_eq!(dropped.drop_reason, Some(DropReason::ProtocolError));
    assert_eq!(dropped.msg().topic, "too/high");
    assert_eq!(
        rec.one("rude", "client.disconnected").disconnect(),
        DisconnectReason::ProtocolError
    );
    server.shutdown().await;
}

// ------------------------------------------------- disconnect reasons

#[tokio::test]
async fn disconnect_reasons_are_named_as_the_contract_says() {
    let server = start().await;
    let rec = Recorder::install(&server.broker.hooks);

    // 5.0 DISCONNECT 0x04: the reason name the client sent, and the will.
    let mut connect = connect_packet(Protocol::V5, "with-will", true, 0);
    connect.will = Some(Will {
        topic: ByteStr::from("wills/w"),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    });
    let mut raw = raw_session(&server, connect).await;
    raw.send(&Packet::Disconnect(Disconnect {
        reason: ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
        properties: Properties::default(),
    }))
    .await;
    rec.wait("with-will", "session.terminated").await;
    assert_eq!(
        rec.names("with-will"),
        connected_then(&[
            "client.disconnected",
            "message.publish",
            "message.dropped",
            "session.terminated",
        ])
    );
    assert_eq!(
        rec.one("with-will", "client.disconnected").disconnect(),
        DisconnectReason::ClientReason(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE)
    );

    // A normal DISCONNECT discards the will.
    let mut connect = connect_packet(Protocol::V3_1_1, "polite", true, 0);
    connect.will = Some(Will {
        topic: ByteStr::from("wills/p"),
        payload: Bytes::from_static(b"never"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    });
    let mut raw = raw_session(&server, connect).await;
    raw.send(&disconnect_packet()).await;
    rec.wait("polite", "session.terminated").await;
    assert_eq!(
        rec.names("polite"),
        connected_then(&["client.disconnected", "session.terminated"])
    );

    // Bytes that are no packet: frame_error.
    let mut raw = raw_session(
        &server,
        connect_packet(Protocol::V3_1_1, "garbled", true, 0),
    )
    .await;
    raw.send_bytes(&[0x00, 0x00]).await;
    let disconnected = rec.wait("garbled", "client.disconnected").await;
    assert_eq!(disconnected.disconnect(), DisconnectReason::FrameError);
    assert_eq!(
        rec.wait("garbled", "session.terminated")
            .await
            .termination(),
        TerminationReason::Closed(DisconnectReason::FrameError)
    );

    // A second CONNECT: protocol_error.
    let mut raw = raw_session(&server, connect_packet(Protocol::V3_1_1, "twice", true, 0)).await;
    raw.send(&Packet::Connect(Box::new(connect_packet(
        Protocol::V3_1_1,
        "twice",
        true,
        0,
    ))))
    .await;
    let disconnected = rec.wait("twice", "client.disconnected").await;
    assert_eq!(disconnected.disconnect(), DisconnectReason::ProtocolError);
    server.shutdown().await;
}

/// A decision handler that panics when asked.
struct PanickingDecider;

impl Authenticator for PanickingDecider {
    fn authenticate<'a>(&'a self, _: AuthRequest<'a>) -> DecisionFuture<'a> {
        Box::pin(async { panic!("a broken plugin deciding client.authenticate") })
    }
}

impl Authorizer for PanickingDecider {
    fn check_acl<'a>(&'a self, _: AclRequest<'a>) -> DecisionFuture<'a> {
        panic!("a broken plugin deciding client.check_acl")
    }
}

#[tokio::test]
async fn a_panicking_decision_handler_counts_as_ignore() {
    quiet_plugin_panics();
    let server = start().await;
    let hooks = &server.broker.hooks;
    let rec = Recorder::install(hooks);
    hooks.add_authenticator(10, Arc::new(PanickingDecider));
    hooks.add_authorizer(10, Arc::new(PanickingDecider));
    let deny = Fixed::new(Decision::Deny(ReasonCode::NOT_AUTHORIZED));
    hooks.add_authorizer(0, deny.clone());
    // Authentication: the panic is skipped, the settings let the client in.
    let mut raw = raw_session(&server, connect_packet(Protocol::V5, "steady", true, 0)).await;
    // Authorization: the panic is skipped, the next handler decides.
    let code = raw_publish_qos1(&mut raw, "any/topic", 1, "x").await;
    assert_eq!(code, ReasonCode::NOT_AUTHORIZED);
    assert_eq!(deny.asked(), 1);
    raw.send(&Packet::PingReq).await;
    assert!(matches!(next(&mut raw).await, Packet::PingResp));
    raw.send(&disconnect_packet()).await;
    rec.wait("steady", "session.terminated").await;
    assert_eq!(
        rec.names("steady"),
        connected_then(&[
            "message.dropped",
            "client.disconnected",
            "session.terminated"
        ])
    );
    server.shutdown().await;
}
