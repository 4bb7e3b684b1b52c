//! Limits that hold against a hostile client (issue 13): protocol errors
//! that close a 3.1.1 connection, `$SYS/` belonging to the broker, the
//! QoS 2 limit for 3.x clients, byte limits on queues, the retained store
//! and CONNECT, and retained delivery that is complete however many
//! messages match. Each checks its counter and that others are served.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

mod common;
mod lifecycle;

use bytes::Bytes;
use common::raw::Raw;
use common::*;
use herald_broker::Server;
use herald_broker::message::Message;
use herald_broker::metrics::Metrics;
use herald_codec::{ByteStr, Packet, Properties, Protocol, PubResp, QoS, ReasonCode};
use lifecycle::*;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

fn get(counter: &AtomicU64) -> u64 {
    Metrics::get(counter)
}

/// Raw bytes of a SUBSCRIBE (packet id 1) of `filter` at QoS `qos`; for
/// 5.0 with an empty property list.
fn subscribe_bytes(filter: &[u8], qos: u8, v5: bool) -> Vec<u8> {
    let mut body = vec![0, 1];
    if v5 {
        body.push(0);
    }
    body.extend_from_slice(&(filter.len() as u16).to_be_bytes());
    body.extend_from_slice(filter);
    body.push(qos);
    let mut out = vec![0x82, body.len() as u8];
    out.extend(body);
    out
}

/// Raw bytes of an UNSUBSCRIBE (packet id 2) of `filter`.
fn unsubscribe_bytes(filter: &[u8], v5: bool) -> Vec<u8> {
    let mut body = vec![0, 2];
    if v5 {
        body.push(0);
    }
    body.extend_from_slice(&(filter.len() as u16).to_be_bytes());
    body.extend_from_slice(filter);
    let mut out = vec![0xA2, body.len() as u8];
    out.extend(body);
    out
}

const BAD_FILTERS: [&[u8]; 4] = [b"ab/+e", b"a/#/b", b"", b"$share/g"];

#[tokio::test]
async fn v311_invalid_topic_filters_close_the_connection() {
    watch_panics();
    let server = start().await;
    let mut n = 0;
    for filter in BAD_FILTERS {
        for bytes in [
            subscribe_bytes(filter, 0, false),
            unsubscribe_bytes(filter, false),
        ] {
            let mut raw = connected(&server, Protocol::V3_1_1, &format!("bad{n}")).await;
            n += 1;
            raw.send_bytes(&bytes).await;
            let next = raw.recv().await;
            let filter = String::from_utf8_lossy(filter);
            assert!(next.is_none(), "{filter:?}: got {next:?}, not a close");
        }
    }
    until("every close counted", || {
        get(&server.broker.metrics.protocol_errors) == n
    })
    .await;
    assert!(server.broker.sessions().is_empty());
    assert_bystander_round_trip(&server, "bystander").await;
    assert_no_panics();
}

#[tokio::test]
async fn v5_invalid_topic_filters_get_0x8f_and_the_connection_stays() {
    let server = start().await;
    let mut raw = connected(&server, Protocol::V5, "five").await;
    for filter in BAD_FILTERS {
        let name = String::from_utf8_lossy(filter);
        raw.send_bytes(&subscribe_bytes(filter, 0, true)).await;
        match raw.recv().await {
            Some(Packet::SubAck(a)) => {
                assert_eq!(a.codes, [ReasonCode::TOPIC_FILTER_INVALID], "{name:?}")
            }
            other => panic!("{name:?}: {other:?}"),
        }
        raw.send_bytes(&unsubscribe_bytes(filter, true)).await;
        match raw.recv().await {
            Some(Packet::UnsubAck(a)) => {
                assert_eq!(a.codes, [ReasonCode::TOPIC_FILTER_INVALID], "{name:?}")
            }
            other => panic!("{name:?}: {other:?}"),
        }
    }
    assert_eq!(get(&server.broker.metrics.protocol_errors), 0);
}

/// A subscriber at `protocol` that got one message at `qos` from another
/// client; returns it with the PUBLISH's packet id.
async fn delivered(server: &Server, protocol: Protocol, id: &str, qos: QoS) -> (Raw, u16) {
    let mut sub = connected(server, protocol, id).await;
    let v5 = protocol.is_v5();
    sub.send_bytes(&subscribe_bytes(format!("{id}/t").as_bytes(), 2, v5))
        .await;
    assert!(matches!(sub.recv().await, Some(Packet::SubAck(_))));
    let message = Message::new(
        ByteStr::from(format!("{id}/t")),
        Bytes::from_static(b"m"),
        qos,
        false,
        Properties::default(),
        ByteStr::from("publisher"),
        None,
    );
    server.broker.publish(Arc::new(message));
    match sub.recv().await {
        Some(Packet::Publish(p)) => {
            assert_eq!(p.qos, qos);
            (sub, p.packet_id)
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

#[tokio::test]
async fn v311_acknowledgements_of_the_wrong_kind_close_the_connection() {
    watch_panics();
    let server = start().await;
    // PUBREC for a QoS 1 delivery.
    let (mut sub, id) = delivered(&server, Protocol::V3_1_1, "rec1", QoS::AtLeastOnce).await;
    let [hi, lo] = id.to_be_bytes();
    sub.send_bytes(&[0x50, 2, hi, lo]).await;
    assert_closed_silently(&mut sub).await;
    // PUBACK for a QoS 2 delivery.
    let (mut sub, id) = delivered(&server, Protocol::V3_1_1, "ack2", QoS::ExactlyOnce).await;
    let [hi, lo] = id.to_be_bytes();
    sub.send_bytes(&[0x40, 2, hi, lo]).await;
    assert_closed_silently(&mut sub).await;
    // PUBCOMP before PUBREC.
    let (mut sub, id) = delivered(&server, Protocol::V3_1_1, "comp2", QoS::ExactlyOnce).await;
    let [hi, lo] = id.to_be_bytes();
    sub.send_bytes(&[0x70, 2, hi, lo]).await;
    assert_closed_silently(&mut sub).await;
    until("every close counted", || {
        get(&server.broker.metrics.protocol_errors) == 3
    })
    .await;
    // The right acknowledgements keep the connection.
    let (mut sub, id) = delivered(&server, Protocol::V3_1_1, "good", QoS::ExactlyOnce).await;
    let [hi, lo] = id.to_be_bytes();
    sub.send_bytes(&[0x50, 2, hi, lo]).await;
    assert!(matches!(sub.recv().await, Some(Packet::PubRel(r)) if r.packet_id == id));
    sub.send_bytes(&[0x70, 2, hi, lo]).await;
    sub.send_bytes(&[0xC0, 0]).await;
    assert!(matches!(sub.recv().await, Some(Packet::PingResp)));
    assert_no_panics();
}

#[tokio::test]
async fn v5_wrong_acknowledgements_get_their_reason_codes() {
    let server = start().await;
    // PUBREC for a QoS 1 delivery: PUBREL 0x92, the connection stays.
    let (mut sub, id) = delivered(&server, Protocol::V5, "rec1", QoS::AtLeastOnce).await;
    sub.send(&Packet::PubRec(PubResp::new(id))).await;
    match sub.recv().await {
        Some(Packet::PubRel(r)) => {
            assert_eq!(r.reason, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)
        }
        other => panic!("{other:?}"),
    }
    sub.send(&Packet::PubAck(PubResp::new(id))).await;
    sub.send_bytes(&[0xC0, 0]).await;
    assert!(matches!(sub.recv().await, Some(Packet::PingResp)));
    // PUBACK for a QoS 2 delivery has no answer but DISCONNECT 0x82.
    let (mut sub, id) = delivered(&server, Protocol::V5, "ack2", QoS::ExactlyOnce).await;
    sub.send(&Packet::PubAck(PubResp::new(id))).await;
    assert_disconnected_with(&mut sub, ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn clients_cannot_publish_under_sys_unless_allowed() {
    let server = start_with(|c| c.sys.allowed_publishers = vec!["bridge".into()]).await;
    let m = &server.broker.metrics;
    let mut watcher = connected(&server, Protocol::V5, "watcher").await;
    watcher.send(&subscribe_packet(1, "$SYS/#")).await;
    assert!(matches!(watcher.recv().await, Some(Packet::SubAck(_))));

    // 5.0 QoS 1: PUBACK 0x87; QoS 2: PUBREC 0x87.
    let mut five = connected(&server, Protocol::V5, "forger5").await;
    five.send_bytes(&[
        0x32, 12, 0, 7, b'$', b'S', b'Y', b'S', b'/', b'x', b'1', 0, 1, 0,
    ])
    .await;
    match five.recv().await {
        Some(Packet::PubAck(a)) => assert_eq!(a.reason, ReasonCode::NOT_AUTHORIZED),
        other => panic!("{other:?}"),
    }
    five.send_bytes(&[
        0x34, 12, 0, 7, b'$', b'S', b'Y', b'S', b'/', b'x', b'2', 0, 2, 0,
    ])
    .await;
    match five.recv().await {
        Some(Packet::PubRec(a)) => assert_eq!(a.reason, ReasonCode::NOT_AUTHORIZED),
        other => panic!("{other:?}"),
    }
    // 3.1.1 QoS 0 and QoS 1, and 5.0 QoS 0, and the bare `$SYS`: dropped.
    let mut three = connected(&server, Protocol::V3_1_1, "forger3").await;
    three
        .send_bytes(&[
            0x31, 10, 0, 7, b'$', b'S', b'Y', b'S', b'/', b'x', b'3', b'!',
        ])
        .await;
    three
        .send_bytes(&[
            0x32, 11, 0, 7, b'$', b'S', b'Y', b'S', b'/', b'x', b'4', 0, 3,
        ])
        .await;
    assert!(matches!(three.recv().await, Some(Packet::PubAck(_))));
    five.send_bytes(&[0x30, 7, 0, 4, b'$', b'S', b'Y', b'S', 0])
        .await;
    until("five refusals counted", || {
        get(&m.dropped_not_authorized) == 5
    })
    .await;
    assert_eq!(server.broker.retained_count(), 0);

    // The configured bridge may.
    let mut bridge = connected(&server, Protocol::V5, "bridge").await;
    bridge
        .send_bytes(&[
            0x30, 11, 0, 7, b'$', b'S', b'Y', b'S', b'/', b'o', b'k', 0, b'y',
        ])
        .await;
    match watcher.recv().await {
        Some(Packet::Publish(p)) => assert_eq!(&*p.topic, "$SYS/ok"),
        other => panic!("the watcher got {other:?} first"),
    }
    assert_eq!(get(&m.dropped_not_authorized), 5);
}

/// `n` QoS 2 PUBLISHes with packet ids from 1, no PUBREL; returns how many
/// PUBRECs came back before the connection closed (or all of them).
async fn unreleased_qos2(raw: &mut Raw, n: u16) -> u16 {
    let mut bytes = Vec::new();
    for id in 1..=n {
        let [hi, lo] = id.to_be_bytes();
        bytes.extend_from_slice(&[0x34, 6, 0, 1, b'q', hi, lo, b'x']);
    }
    raw.send_bytes(&bytes).await;
    let mut recs = 0;
    while recs < n {
        match raw.recv().await {
            Some(Packet::PubRec(_)) => recs += 1,
            None => break,
            other => panic!("{other:?}"),
        }
    }
    recs
}

#[tokio::test]
async fn v311_qos2_exchanges_are_limited_by_max_awaiting_rel_not_receive_maximum() {
    let server = start_with(|c| c.mqtt.max_awaiting_rel = 300).await;
    let mut raw = connected(&server, Protocol::V3_1_1, "patient").await;
    assert_eq!(unreleased_qos2(&mut raw, 300).await, 300);
    raw.send_bytes(&[0xC0, 0]).await;
    assert!(matches!(raw.recv().await, Some(Packet::PingResp)));
    assert_eq!(get(&server.broker.metrics.awaiting_rel_full), 0);
    // One more is past the limit: the connection closes, counted.
    raw.send_bytes(&[0x34, 6, 0, 1, b'q', 0x01, 0x2D, b'x'])
        .await;
    assert_closed_silently(&mut raw).await;
    until("counted", || {
        get(&server.broker.metrics.awaiting_rel_full) == 1
    })
    .await;
    assert_bystander_round_trip(&server, "bystander").await;
}

#[tokio::test]
async fn queues_are_limited_in_bytes_too() {
    let server = start_with(|c| c.mqtt.max_queued_bytes = 1_000_000).await;
    let m = &server.broker.metrics;
    // An offline session subscribed at QoS 1.
    let mut c = connect_packet(Protocol::V5, "away", false, 60);
    c.properties.session_expiry_interval = Some(600);
    let mut sub = raw_session(&server, c).await;
    sub.send(&subscribe_packet(1, "big")).await;
    assert!(matches!(sub.recv().await, Some(Packet::SubAck(_))));
    sub.send(&disconnect_packet(ReasonCode::SUCCESS)).await;
    assert!(sub.recv().await.is_none());
    until("offline", || is_offline(&server, "away")).await;
    for _ in 0..10 {
        let message = Message::new(
            ByteStr::from("big"),
            Bytes::from(vec![7u8; 200_000]),
            QoS::AtLeastOnce,
            false,
            Properties::default(),
            ByteStr::from("publisher"),
            None,
        );
        server.broker.publish(Arc::new(message));
    }
    let session = server.broker.sessions()["away"].clone();
    let (queued, bytes) = {
        let st = session.lock();
        (st.queue.len(), st.queued_bytes())
    };
    assert_eq!(queued, 4, "4 × 200,003 bytes fit in 1,000,000");
    assert_eq!(bytes, 4 * 200_003);
    assert_eq!(get(&m.dropped_queue_full), 6);
}

fn retained(topic: &str, payload: &[u8]) -> Arc<Message> {
    retained_at(topic, payload, QoS::AtMostOnce)
}

fn retained_at(topic: &str, payload: &[u8], qos: QoS) -> Arc<Message> {
    Arc::new(Message::new(
        ByteStr::from(topic),
        Bytes::copy_from_slice(payload),
        qos,
        true,
        Properties::default(),
        ByteStr::from("publisher"),
        None,
    ))
}

#[tokio::test]
async fn retained_store_limits_refuse_and_count() {
    let server = start_with(|c| {
        c.retained.max_messages = 3;
        c.retained.max_bytes = 100;
        c.retained.max_payload_size = 50;
    })
    .await;
    let b = &server.broker;
    let refused = || get(&b.metrics.retained_refused);
    for t in ["a", "b", "c"] {
        b.publish(retained(t, b"0123456789"));
    }
    assert_eq!((b.retained_count(), b.retained_bytes()), (3, 33));
    // A fourth topic is over max_messages; replacing one is not.
    b.publish(retained("d", b"x"));
    assert_eq!((b.retained_count(), refused()), (3, 1));
    b.publish(retained("a", b"0123456789012345678901234567890123456789"));
    assert_eq!(
        (b.retained_count(), b.retained_bytes(), refused()),
        (3, 63, 1)
    );
    // Over max_payload_size: not stored, and the older value goes too.
    b.publish(retained("b", &[0u8; 51]));
    assert_eq!(
        (b.retained_count(), b.retained_bytes(), refused()),
        (2, 52, 2)
    );
    b.publish(retained("e", &[0u8; 40]));
    assert_eq!(
        (b.retained_count(), b.retained_bytes(), refused()),
        (3, 93, 2)
    );
    // Over max_bytes: 52 kept + 49 > 100.
    b.publish(retained("e", &[0u8; 48]));
    assert_eq!(
        (b.retained_count(), b.retained_bytes(), refused()),
        (2, 52, 3)
    );
    // Deleting frees room.
    b.publish(retained("a", b""));
    assert_eq!((b.retained_count(), b.retained_bytes()), (1, 11));
}

#[tokio::test]
async fn a_new_subscription_gets_every_retained_message() {
    const N: usize = 20_000;
    let server = start().await;
    assert!(N > server.broker.config.mqtt.max_queued_messages as usize * 10);
    for i in 0..N {
        let message = retained_at(&format!("r/{i}"), b"v", QoS::AtLeastOnce);
        server.broker.publish(message);
    }
    let mut sub = connected(&server, Protocol::V3_1_1, "newcomer").await;
    sub.send_bytes(&subscribe_bytes(b"#", 1, false)).await;
    assert!(matches!(sub.recv().await, Some(Packet::SubAck(_))));
    let mut seen = vec![false; N];
    let mut got = 0;
    while got < N {
        match sub.recv().await {
            Some(Packet::Publish(p)) => {
                assert!(p.retain);
                let i: usize = p.topic["r/".len()..].parse().expect("index");
                assert!(!seen[i], "r/{i} twice");
                seen[i] = true;
                got += 1;
                sub.send(&Packet::PubAck(PubResp::new(p.packet_id))).await;
            }
            other => panic!("after {got}: {other:?}"),
        }
    }
    let m = &server.broker.metrics;
    // The only drops: the N publications before anyone subscribed.
    assert_eq!(get(&m.dropped_no_subscribers), N as u64);
    assert_eq!(m.dropped_total(), N as u64);
}

#[tokio::test]
async fn a_connect_larger_than_max_connect_size_is_refused_from_its_header() {
    let server = start_with(|c| c.listener.max_connect_size = 1024).await;
    let mut raw = Raw::connect(addr(&server), Protocol::V3_1_1).await;
    // CONNECT announcing a 1 MB remaining length, then a little of it.
    raw.send_bytes(&[0x10, 0x80, 0x80, 0x40, 0, 4, b'M', b'Q', b'T', b'T'])
        .await;
    assert_closed_silently(&mut raw).await;
    until("counted", || {
        get(&server.broker.metrics.protocol_errors) == 1
    })
    .await;
    // A CONNECT within the limit, followed by PUBLISHes up to
    // mqtt.max_packet_size, is fine.
    let mut ok = connected(&server, Protocol::V3_1_1, "ok").await;
    // Remaining length 20,000 = 0xA0 0x9C 0x01.
    let mut publish = vec![0x30, 0xA0, 0x9C, 0x01, 0, 1, b'a'];
    publish.resize(4 + 20_000, 1);
    ok.send_bytes(&publish).await;
    ok.send_bytes(&[0xC0, 0]).await;
    assert!(matches!(ok.recv().await, Some(Packet::PingResp)));
}
