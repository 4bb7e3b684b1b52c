//! Helpers for the connection-lifecycle tests (`connect.rs`, `session.rs`,
//! `bad_input.rs`): raw CONNECTs, waiting for a connection to end, a
//! bystander round trip, and a panic detector. Builds on `common`.
#![allow(dead_code)]

use crate::common::raw::Raw;
use crate::common::{WAIT, v4, v5};
use herald_broker::Server;
use herald_codec::{
    ByteStr, ConnAck, Connect, Disconnect, Packet, Properties, Protocol, QoS, ReasonCode,
    Subscribe, Subscription, Will,
};
use std::sync::{Mutex, Once};

/// A CONNECT at `protocol` with no will, user name or properties.
pub fn connect_packet(
    protocol: Protocol,
    client_id: &str,
    clean: bool,
    keep_alive: u16,
) -> Connect {
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

/// A will on `topic` with `payload`, QoS 1, not retained.
pub fn will(topic: &str, payload: &'static str) -> Will {
    Will {
        topic: ByteStr::from(topic),
        payload: bytes::Bytes::from_static(payload.as_bytes()),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::default(),
    }
}

/// A raw socket to the broker with Nagle's algorithm off. (With it on, a
/// second small packet waits for the broker's delayed ACK, ~40 ms of real
/// time, which paused time does not wait for: it jumps to the next timer.)
pub async fn raw_open(server: &Server, protocol: Protocol) -> Raw {
    let raw = Raw::connect(crate::common::addr(server), protocol).await;
    raw.stream.set_nodelay(true).expect("nodelay");
    raw
}

/// rumqttc network options with Nagle's algorithm off (see [`raw_open`]).
pub fn nodelay() -> rumqttc::NetworkOptions {
    let mut n = rumqttc::NetworkOptions::new();
    n.set_tcp_nodelay(true);
    n
}

/// Connects a 3.1.1 rumqttc client (Nagle off) and waits for CONNACK.
pub async fn v4_open(
    options: v4::MqttOptions,
) -> (v4::AsyncClient, v4::EventLoop, rumqttc::ConnAck) {
    let (client, mut eventloop) = v4::AsyncClient::new(options, 100);
    eventloop.set_network_options(nodelay());
    let ack = v4::wait_for(&mut eventloop, |p| match p {
        v4::Packet::ConnAck(a) => Some(a.clone()),
        _ => None,
    })
    .await;
    (client, eventloop, ack)
}

/// Connects a 5.0 rumqttc client (Nagle off) and waits for CONNACK.
pub async fn v5_open(
    mut options: v5::MqttOptions,
) -> (v5::AsyncClient, v5::EventLoop, v5::ConnAck) {
    options.set_network_options(nodelay());
    v5::connect(options).await
}

/// Opens a socket, sends `connect` and returns the socket and the CONNACK.
pub async fn raw_connect(server: &Server, connect: Connect) -> (Raw, ConnAck) {
    let mut raw = raw_open(server, connect.protocol).await;
    raw.send(&Packet::Connect(Box::new(connect))).await;
    match raw.recv().await {
        Some(Packet::ConnAck(ack)) => (raw, ack),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// A raw connection that has been accepted (panics otherwise).
pub async fn raw_session(server: &Server, connect: Connect) -> Raw {
    let (raw, ack) = raw_connect(server, connect).await;
    assert_eq!(ack.code, ReasonCode::SUCCESS, "CONNACK {ack:?}");
    raw
}

/// An accepted raw connection at `protocol` with a clean session and a
/// 60 s keep alive.
pub async fn connected(server: &Server, protocol: Protocol, id: &str) -> Raw {
    raw_session(server, connect_packet(protocol, id, true, 60)).await
}

/// A QoS 1 SUBSCRIBE to one filter.
pub fn subscribe_packet(packet_id: u16, filter: &str) -> Packet {
    let mut sub = Subscription {
        filter: ByteStr::from(filter),
        options: Default::default(),
    };
    sub.options.qos = QoS::AtLeastOnce;
    Packet::Subscribe(Subscribe {
        packet_id,
        properties: Properties::default(),
        filters: vec![sub],
    })
}

/// A DISCONNECT with `reason`.
pub fn disconnect_packet(reason: ReasonCode) -> Packet {
    Packet::Disconnect(Disconnect {
        reason,
        properties: Properties::default(),
    })
}

/// Asserts the broker closes the socket without sending anything more.
pub async fn assert_closed_silently(raw: &mut Raw) {
    let next = raw.recv().await;
    assert!(next.is_none(), "expected a silent close, got {next:?}");
}

/// Asserts the broker sends DISCONNECT with `code` and closes the socket.
pub async fn assert_disconnected_with(raw: &mut Raw, code: ReasonCode) {
    match raw.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, code, "DISCONNECT {d:?}"),
        other => panic!("expected DISCONNECT {code}, got {other:?}"),
    }
    let next = raw.recv().await;
    assert!(next.is_none(), "socket open after DISCONNECT: {next:?}");
}

/// Asserts the socket is open and nothing has arrived on it yet.
pub fn assert_open_and_quiet(raw: &Raw) {
    assert!(raw.buf.is_empty(), "unread bytes: {:?}", raw.buf);
    let mut byte = [0u8; 1];
    match raw.stream.try_read(&mut byte) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok(0) => panic!("the broker closed the connection"),
        Ok(_) => panic!("the broker sent 0x{:02X}", byte[0]),
        Err(e) => panic!("connection failed: {e}"),
    }
}

/// Waits (yielding, never sleeping) until `cond` holds; fails after `WAIT`.
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(WAIT, async {
        while !cond() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting until {what}");
}

/// Whether the broker holds a session for `client_id`.
pub fn has_session(server: &Server, client_id: &str) -> bool {
    server.broker.sessions().contains_key(client_id)
}

/// Whether the session for `client_id` exists and has no connection.
pub fn is_offline(server: &Server, client_id: &str) -> bool {
    server
        .broker
        .sessions()
        .get(client_id)
        .is_some_and(|s| !s.lock().online && !s.lock().owned)
}

/// Polls a 3.1.1 event loop until the connection fails; returns the error.
pub async fn v4_until_closed(eventloop: &mut v4::EventLoop) -> rumqttc::ConnectionError {
    let polled = tokio::time::timeout(WAIT, async {
        loop {
            if let Err(e) = eventloop.poll().await {
                return e;
            }
        }
    })
    .await;
    polled.expect("the connection closes within the wait")
}

/// Polls a 5.0 event loop until the connection fails; returns the error.
pub async fn v5_until_closed(eventloop: &mut v5::EventLoop) -> rumqttc::v5::ConnectionError {
    let polled = tokio::time::timeout(WAIT, async {
        loop {
            if let Err(e) = eventloop.poll().await {
                return e;
            }
        }
    })
    .await;
    polled.expect("the connection closes within the wait")
}

/// Sends DISCONNECT from a 3.1.1 client and waits for the broker to close.
pub async fn v4_disconnect(client: &v4::AsyncClient, eventloop: &mut v4::EventLoop) {
    client.disconnect().await.expect("request queued");
    v4_until_closed(eventloop).await;
}

/// Polls a 3.1.1 event loop in the background (acks, pings) until it fails.
pub fn v4_drive(mut eventloop: v4::EventLoop) {
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
}

/// Polls a 5.0 event loop in the background until it fails.
pub fn v5_drive(mut eventloop: v5::EventLoop) {
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
}

/// Subscribes a 3.1.1 client and waits for the SUBACK.
pub async fn v4_subscribe(
    client: &v4::AsyncClient,
    eventloop: &mut v4::EventLoop,
    filter: &str,
    qos: v4::QoS,
) {
    client.subscribe(filter, qos).await.expect("request queued");
    let codes = v4::wait_for(eventloop, |p| match p {
        v4::Packet::SubAck(a) => Some(a.return_codes.clone()),
        _ => None,
    })
    .await;
    assert!(
        matches!(codes.as_slice(), [rumqttc::SubscribeReasonCode::Success(_)]),
        "SUBACK {codes:?}"
    );
}

/// Subscribes a 5.0 client and waits for the SUBACK.
pub async fn v5_subscribe(
    client: &v5::AsyncClient,
    eventloop: &mut v5::EventLoop,
    filter: &str,
    qos: v5::QoS,
) {
    client.subscribe(filter, qos).await.expect("request queued");
    let codes = v5::wait_for(eventloop, |p| match p {
        v5::Packet::SubAck(a) => Some(a.return_codes.clone()),
        _ => None,
    })
    .await;
    assert!(
        matches!(
            codes.as_slice(),
            [rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)]
        ),
        "SUBACK {codes:?}"
    );
}

/// Publishes QoS 1 from a 3.1.1 client and waits for the PUBACK, so the
/// broker has routed the message when this returns.
pub async fn v4_publish_acked(
    client: &v4::AsyncClient,
    eventloop: &mut v4::EventLoop,
    topic: &str,
    payload: &str,
) {
    client
        .publish(
            topic,
            v4::QoS::AtLeastOnce,
            false,
            payload.as_bytes().to_vec(),
        )
        .await
        .expect("request queued");
    v4::wait_for(eventloop, |p| {
        matches!(p, v4::Packet::PubAck(_)).then_some(())
    })
    .await;
}

/// Proves the broker still serves other clients: a fresh 3.1.1 client
/// subscribes to its own topic, publishes to it and gets the message back.
pub async fn assert_bystander_round_trip(server: &Server, client_id: &str) {
    let (client, mut eventloop, ack) = v4_open(v4::options(server, client_id)).await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    let topic = format!("bystander/{client_id}");
    v4_subscribe(&client, &mut eventloop, &topic, v4::QoS::AtLeastOnce).await;
    client
        .publish(&topic, v4::QoS::AtLeastOnce, false, "still here")
        .await
        .expect("request queued");
    let msg = v4::next_publish(&mut eventloop).await;
    assert_eq!(msg.topic, topic);
    assert_eq!(&msg.payload[..], b"still here");
}

/// Names of threads on which something panicked.
static PANICKED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records every panic's thread (broker tasks of a current-thread test
/// runtime run on the test's own thread), then runs the default hook.
pub fn watch_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().unwrap_or("?").to_owned();
            PANICKED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(name);
            default(info);
        }));
    });
}

/// Fails if anything panicked on this test's thread since `watch_panics`.
pub fn assert_no_panics() {
    let me = std::thread::current().name().unwrap_or("?").to_owned();
    let panicked = PANICKED.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        !panicked.contains(&me),
        "a broker task panicked during {me}"
    );
}
