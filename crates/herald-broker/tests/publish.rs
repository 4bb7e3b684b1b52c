//! PUBLISH: QoS 0/1/2 both ways, QoS 2 exactly once, packet identifiers,
//! the inflight window and Receive Maximum, redelivery with DUP on resume,
//! message expiry, topic aliases both ways, Maximum Packet Size both ways,
//! and the 5.0 properties forwarded unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

mod common;
mod pumped;

use bytes::Bytes;
use common::raw::Raw;
use common::*;
use herald_broker::Server;
use herald_broker::metrics::Metrics;
use herald_codec::{
    ByteStr, Packet, Properties, Protocol, PubResp, Publish, QoS, ReasonCode, SubOptions,
    Subscribe, Subscription,
};
use pumped::*;
use std::time::Duration;

fn subscribe_packet(filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: vec![Subscription {
            filter: ByteStr::from(filter),
            options: SubOptions {
                qos,
                ..SubOptions::default()
            },
        }],
    })
}

/// Subscribes a raw client and waits for its SUBACK.
async fn raw_subscribe(raw: &mut Raw, filter: &str, qos: QoS) {
    raw.send(&subscribe_packet(filter, qos)).await;
    match raw_next(raw).await {
        Packet::SubAck(a) => assert_eq!(a.codes, [ReasonCode(qos as u8)]),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

fn publish_packet(topic: &str, qos: QoS, packet_id: u16, payload: &[u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: ByteStr::from(topic),
        packet_id,
        properties: Properties::default(),
        payload: Bytes::copy_from_slice(payload),
    }
}

/// The next packet, which must be a PUBLISH.
async fn raw_publish(raw: &mut Raw) -> Publish {
    match raw_next(raw).await {
        Packet::Publish(p) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

/// Sends PINGREQ and returns every packet received before the PINGRESP:
/// everything the broker had to send at the time it handled the ping.
async fn raw_until_pingresp(raw: &mut Raw) -> Vec<Packet> {
    raw.send(&Packet::PingReq).await;
    let mut before = Vec::new();
    loop {
        match raw_next(raw).await {
            Packet::PingResp => return before,
            p => before.push(p),
        }
    }
}

fn session_inflight(server: &Server, client_id: &str) -> usize {
    let sessions = server.broker.sessions();
    let session = sessions.get(client_id).expect("session exists");
    session.lock().inflight.len()
}

#[tokio::test]
async fn qos_0_1_2_round_trips_v311() {
    let server = start().await;
    let mut s2 = client4(&server, "s2").await;
    s2.subscribe("q/#", v4::QoS::ExactlyOnce).await;
    let mut s1 = client4(&server, "s1").await;
    s1.subscribe("q/#", v4::QoS::AtLeastOnce).await;
    let mut p = client4(&server, "p").await;
    for (qos, payload) in [
        (v4::QoS::AtMostOnce, "zero"),
        (v4::QoS::AtLeastOnce, "one"),
        (v4::QoS::ExactlyOnce, "two"),
    ] {
        p.client.publish("q/x", qos, false, payload).await.unwrap();
        match qos {
            v4::QoS::AtMostOnce => {}
            v4::QoS::AtLeastOnce => {
                let ack = p
                    .inbox
                    .wait_for(|p| match p {
                        v4::Packet::PubAck(a) => Some(a.pkid),
                        _ => None,
                    })
                    .await;
                assert_ne!(ack, 0);
            }
            v4::QoS::ExactlyOnce => {
                let rec = p
                    .inbox
                    .wait_for(|p| match p {
                        v4::Packet::PubRec(a) => Some(a.pkid),
                        _ => None,
                    })
                    .await;
                let comp = p
                    .inbox
                    .wait_for(|p| match p {
                        v4::Packet::PubComp(a) => Some(a.pkid),
                        _ => None,
                    })
                    .await;
                assert_eq!(rec, comp);
            }
        }
        let m = s2.next_publish().await;
        assert_eq!((&m.payload[..], m.qos), (payload.as_bytes(), qos));
        let m = s1.next_publish().await;
        assert_eq!(&m.payload[..], payload.as_bytes());
        let lower = match qos {
            v4::QoS::AtMostOnce => v4::QoS::AtMostOnce,
            _ => v4::QoS::AtLeastOnce,
        };
        assert_eq!(m.qos, lower, "lower of published and granted");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn qos_0_1_2_round_trips_v5() {
    let server = start().await;
    let mut s = client5(&server, "s").await;
    s.subscribe("q/#", v5::QoS::ExactlyOnce).await;
    let mut p = client5(&server, "p").await;
    for (qos, payload) in [
        (v5::QoS::AtMostOnce, "zero"),
        (v5::QoS::AtLeastOnce, "one"),
        (v5::QoS::ExactlyOnce, "two"),
    ] {
        p.client.publish("q/x", qos, false, payload).await.unwrap();
        match qos {
            v5::QoS::AtMostOnce => {}
            v5::QoS::AtLeastOnce => {
                let reason = p
                    .inbox
                    .wait_for(|p| match p {
                        v5::Packet::PubAck(a) => Some(a.reason),
                        _ => None,
                    })
                    .await;
                assert_eq!(reason, PubAckReason::Success);
            }
            v5::QoS::ExactlyOnce => {
                let reason = p
                    .inbox
                    .wait_for(|p| match p {
                        v5::Packet::PubRec(a) => Some(a.reason),
                        _ => None,
                    })
                    .await;
                assert_eq!(reason, PubRecReason::Success);
                p.inbox
                    .wait_for(|p| matches!(p, v5::Packet::PubComp(_)).then_some(()))
                    .await;
            }
        }
        let m = s.next_publish().await;
        assert_eq!((&m.payload[..], m.qos), (payload.as_bytes(), qos));
    }
    // 5.0: no subscriber is reported as 0x10 on PUBACK.
    p.client
        .publish("nobody/here", v5::QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    let reason = p
        .inbox
        .wait_for(|p| match p {
            v5::Packet::PubAck(a) => Some(a.reason),
            _ => None,
        })
        .await;
    assert_eq!(reason, PubAckReason::NoMatchingSubscribers);
    server.shutdown().await;
}

/// The broker's side of outbound QoS 1 and 2: PUBLISH → PUBACK, and
/// PUBLISH → PUBREC → PUBREL → PUBCOMP, after which nothing is in flight.
#[tokio::test]
async fn subscriber_side_acknowledgement_flows() {
    let server = start().await;
    for protocol in [Protocol::V5, Protocol::V3_1_1] {
        let id = format!("raw{}", protocol.level());
        let mut raw = raw_client(&server, protocol, &id).await;
        raw_subscribe(&mut raw, "f/#", QoS::ExactlyOnce).await;
        let mut p = client5(&server, &format!("p{}", protocol.level())).await;

        p.publish("f/1", v5::QoS::AtLeastOnce, false, b"one").await;
        let m = raw_publish(&mut raw).await;
        assert_eq!(
            (m.qos, m.dup, &m.payload[..]),
            (QoS::AtLeastOnce, false, &b"one"[..])
        );
        assert_ne!(m.packet_id, 0);
        raw.send(&Packet::PubAck(PubResp::new(m.packet_id))).await;
        assert_eq!(raw_until_pingresp(&mut raw).await, []);
        assert_eq!(session_inflight(&server, &id), 0, "PUBACK ends QoS 1");

        p.publish("f/2", v5::QoS::ExactlyOnce, false, b"two").await;
        let m = raw_publish(&mut raw).await;
        assert_eq!((m.qos, &m.payload[..]), (QoS::ExactlyOnce, &b"two"[..]));
        raw.send(&Packet::PubRec(PubResp::new(m.packet_id))).await;
        match raw_next(&mut raw).await {
            Packet::PubRel(r) => {
                assert_eq!((r.packet_id, r.reason), (m.packet_id, ReasonCode::SUCCESS))
            }
            other => panic!("expected PUBREL, got {other:?}"),
        }
        assert_eq!(session_inflight(&server, &id), 1, "awaiting PUBCOMP");
        raw.send(&Packet::PubComp(PubResp::new(m.packet_id))).await;
        assert_eq!(raw_until_pingresp(&mut raw).await, []);
        assert_eq!(session_inflight(&server, &id), 0, "PUBCOMP ends QoS 2");
    }
    server.shutdown().await;
}

/// QoS 2 exactly once: a resend (DUP, same packet id) before PUBREL is
/// acknowledged but not routed again; after PUBCOMP the id is free again.
#[tokio::test]
async fn qos2_duplicate_before_pubrel_is_routed_once() {
    let server = start().await;
    let mut s = client5(&server, "s").await;
    s.subscribe("x/#", v5::QoS::ExactlyOnce).await;
    let mut raw = raw_client(&server, Protocol::V5, "pub").await;
    let first = publish_packet("x/1", QoS::ExactlyOnce, 7, b"once");
    raw.send(&Packet::Publish(first.clone())).await;
    let expect_pubrec = |p: Packet| match p {
        Packet::PubRec(r) => assert_eq!((r.packet_id, r.reason), (7, ReasonCode::SUCCESS)),
        other => panic!("expected PUBREC 7, got {other:?}"),
    };
    expect_pubrec(raw_next(&mut raw).await);
    let mut dup = first.clone();
    dup.dup = true;
    raw.send(&Packet::Publish(dup)).await;
    expect_pubrec(raw_next(&mut raw).await);
    raw.send(&Packet::PubRel(PubResp::new(7))).await;
    match raw_next(&mut raw).await {
        Packet::PubComp(c) => assert_eq!((c.packet_id, c.reason), (7, ReasonCode::SUCCESS)),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    // The id is reusable for a new message once the exchange is complete.
    raw.send(&Packet::Publish(publish_packet(
        "x/2",
        QoS::ExactlyOnce,
        7,
        b"again",
    )))
    .await;
    expect_pubrec(raw_next(&mut raw).await);
    raw.send(&Packet::PubRel(PubResp::new(7))).await;
    raw_next(&mut raw).await;
    raw.send(&Packet::Publish(publish_packet(
        "x/3",
        QoS::AtMostOnce,
        0,
        b"end",
    )))
    .await;
    assert_eq!(s.payloads_until("end").await, ["once", "again", "end"]);
    server.shutdown().await;
}

/// Packet identifier rules: outstanding deliveries carry distinct non-zero
/// ids; a PUBREL or PUBREC for an unknown id is answered 0x92 (5.0).
#[tokio::test]
async fn packet_identifier_rules() {
    let server = start().await;
    let mut raw = raw_client(&server, Protocol::V5, "raw").await;
    raw_subscribe(&mut raw, "id/#", QoS::ExactlyOnce).await;
    let mut p = client5(&server, "p").await;
    for i in 0..6u8 {
        let qos = if i % 2 == 0 {
            v5::QoS::AtLeastOnce
        } else {
            v5::QoS::ExactlyOnce
        };
        p.publish("id/x", qos, false, &[i]).await;
    }
    let mut ids = Vec::new();
    for _ in 0..6 {
        let m = raw_publish(&mut raw).await;
        assert_ne!(m.packet_id, 0);
        ids.push(m.packet_id);
    }
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        6,
        "distinct ids while unacknowledged: {ids:?}"
    );

    raw.send(&Packet::PubRel(PubResp::new(4242))).await;
    match raw_next(&mut raw).await {
        Packet::PubComp(c) => assert_eq!(
            (c.packet_id, c.reason),
            (4242, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)
        ),
        other => panic!("expected PUBCOMP 0x92, got {other:?}"),
    }
    raw.send(&Packet::PubRec(PubResp::new(4243))).await;
    match raw_next(&mut raw).await {
        Packet::PubRel(r) => assert_eq!(
            (r.packet_id, r.reason),
            (4243, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)
        ),
        other => panic!("expected PUBREL 0x92, got {other:?}"),
    }
    server.shutdown().await;
}

/// The broker keeps at most the client's Receive Maximum (5.0), or
/// `mqtt.max_inflight` (3.1.1), QoS 1/2 deliveries unacknowledged.
#[tokio::test]
async fn outbound_window_respects_receive_maximum_and_max_inflight() {
    let server = start_with(|c| c.mqtt.max_inflight = 3).await;
    for (protocol, window) in [(Protocol::V5, 2usize), (Protocol::V3_1_1, 3)] {
        let mut connect = connect_packet(protocol, &format!("w{}", protocol.level()));
        if protocol.is_v5() {
            connect.properties.receive_maximum = Some(2);
        }
        let (mut raw, _) = raw_connect(&server, connect).await;
        let topic = format!("win/{}", protocol.level());
        raw_subscribe(&mut raw, &topic, QoS::AtLeastOnce).await;
        let mut p = client5(&server, &format!("p{}", protocol.level())).await;
        for i in 0..6u8 {
            p.publish(&topic, v5::QoS::AtLeastOnce, false, &[i]).await;
        }
        let mut got = Vec::new();
        for _ in 0..window {
            got.push(raw_publish(&mut raw).await);
        }
        assert_eq!(raw_until_pingresp(&mut raw).await, [], "window full");
        while got.len() < 6 {
            let oldest = got.iter().find(|m| m.packet_id != 0).expect("one unacked");
            let id = oldest.packet_id;
            raw.send(&Packet::PubAck(PubResp::new(id))).await;
            for m in got.iter_mut().filter(|m| m.packet_id == id) {
                m.packet_id = 0;
            }
            got.push(raw_publish(&mut raw).await);
            assert_eq!(raw_until_pingresp(&mut raw).await, [], "one ack, one more");
        }
        let payloads: Vec<u8> = got.iter().map(|m| m.payload[0]).collect();
        assert_eq!(payloads, [0, 1, 2, 3, 4, 5], "in order");
    }
    server.shutdown().await;
}

/// A client with more unacknowledged QoS 2 PUBLISHes than the broker's
/// Receive Maximum is disconnected with 0x93.
#[tokio::test]
async fn exceeding_the_servers_receive_maximum_disconnects_0x93() {
    let server = start_with(|c| c.mqtt.receive_maximum = 2).await;
    let (mut raw, ack) = raw_connect(&server, connect_packet(Protocol::V5, "flood")).await;
    assert_eq!(ack.properties.receive_maximum, Some(2));
    for id in 1..=3 {
        raw.send(&Packet::Publish(publish_packet(
            "rm/x",
            QoS::ExactlyOnce,
            id,
            b"x",
        )))
        .await;
    }
    for id in 1..=2 {
        match raw_next(&mut raw).await {
            Packet::PubRec(r) => assert_eq!(r.packet_id, id),
            other => panic!("expected PUBREC {id}, got {other:?}"),
        }
    }
    match raw.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED),
        other => panic!("expected DISCONNECT 0x93, got {other:?}"),
    }
    assert_eq!(raw.recv().await, None);
    server.shutdown().await;
}

/// Unacknowledged QoS 1/2 deliveries are sent again with DUP and their ids
/// when the session resumes (3.1.1, rumqttc with manual acks).
#[tokio::test]
async fn unacked_deliveries_are_resent_with_dup_on_resume() {
    let server = start().await;
    let options = || {
        let mut o = v4::options(&server, "durable");
        o.set_clean_session(false);
        o.set_manual_acks(true);
        o
    };
    let (mut s, _) = c4(options()).await;
    s.subscribe("d/#", v4::QoS::ExactlyOnce).await;
    let mut p = client4(&server, "p").await;
    p.publish("d/1", v4::QoS::AtLeastOnce, false, b"one").await;
    p.publish("d/2", v4::QoS::ExactlyOnce, false, b"two").await;
    let first = [s.next_publish().await, s.next_publish().await];
    assert!(first.iter().all(|m| !m.dup));
    drop(s); // socket closed, nothing acknowledged

    let (mut s, ack) = c4(options()).await;
    assert!(ack.session_present);
    for before in &first {
        let again = s.next_publish().await;
        assert!(again.dup, "resent with DUP");
        assert_eq!(
            (again.pkid, again.qos, &again.payload),
            (before.pkid, before.qos, &before.payload)
        );
    }
    server.shutdown().await;
}

/// A QoS 2 delivery already PUBREC'd resumes with PUBREL, not PUBLISH.
#[tokio::test]
async fn pubrecd_delivery_resumes_with_pubrel() {
    let server = start().await;
    let connect = |clean| {
        let mut c = connect_packet(Protocol::V5, "durable");
        c.clean_start = clean;
        c.properties.session_expiry_interval = Some(60);
        c
    };
    let (mut raw, _) = raw_connect(&server, connect(true)).await;
    raw_subscribe(&mut raw, "d/#", QoS::ExactlyOnce).await;
    let mut p = client5(&server, "p").await;
    p.publish("d/x", v5::QoS::ExactlyOnce, false, b"two").await;
    let m = raw_publish(&mut raw).await;
    raw.send(&Packet::PubRec(PubResp::new(m.packet_id))).await;
    assert!(matches!(raw_next(&mut raw).await, Packet::PubRel(_)));
    drop(raw);

    let (mut raw, ack) = raw_connect(&server, connect(false)).await;
    assert!(ack.session_present);
    match raw_next(&mut raw).await {
        Packet::PubRel(r) => assert_eq!(r.packet_id, m.packet_id),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    raw.send(&Packet::PubComp(PubResp::new(m.packet_id))).await;
    assert_eq!(raw_until_pingresp(&mut raw).await, []);
    assert_eq!(session_inflight(&server, "durable"), 0);
    server.shutdown().await;
}

/// Message Expiry: a message that expires in an offline session's queue is
/// not delivered; one that has not is delivered with the time it has left.
#[tokio::test]
async fn message_expiry_in_the_offline_queue() {
    let server = start().await;
    let mut connect = connect_packet(Protocol::V5, "later");
    connect.properties.session_expiry_interval = Some(600);
    let (mut raw, _) = raw_connect(&server, connect).await;
    raw_subscribe(&mut raw, "e/#", QoS::AtLeastOnce).await;
    raw.send(&Packet::Disconnect(Default::default())).await;
    assert_eq!(raw.recv().await, None, "the broker closes after DISCONNECT");

    let mut p = client5(&server, "p").await;
    let expiring = |secs| {
        Some(PublishProperties {
            message_expiry_interval: Some(secs),
            ..PublishProperties::default()
        })
    };
    p.publish_with("e/x", v5::QoS::AtLeastOnce, false, b"short", expiring(2))
        .await;
    p.publish_with("e/x", v5::QoS::AtLeastOnce, false, b"long", expiring(10))
        .await;
    p.publish("e/x", v5::QoS::AtLeastOnce, false, b"forever")
        .await;

    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(4)).await;
    tokio::time::resume();

    let mut o = v5::options(&server, "later");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(600));
    let (mut s, ack) = c5(o).await;
    assert!(ack.session_present);
    let long = s.next_publish().await;
    assert_eq!(&long.payload[..], b"long");
    let left = long
        .properties
        .and_then(|p| p.message_expiry_interval)
        .expect("remaining expiry forwarded");
    assert!((5..=6).contains(&left), "10 s less the 4 s queued: {left}");
    let forever = s.next_publish().await;
    assert_eq!(&forever.payload[..], b"forever");
    assert_eq!(
        forever.properties.and_then(|p| p.message_expiry_interval),
        None
    );
    assert_eq!(Metrics::get(&server.broker.metrics.dropped_expired), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn topic_alias_from_client_is_resolved() {
    let server = start().await;
    let mut s = client5(&server, "s").await;
    s.subscribe("ta/#", v5::QoS::AtLeastOnce).await;
    let mut p = client5(&server, "p").await;
    let alias = |a| {
        Some(PublishProperties {
            topic_alias: Some(a),
            ..PublishProperties::default()
        })
    };
    p.publish_with("ta/long/topic", v5::QoS::AtLeastOnce, false, b"1", alias(1))
        .await;
    p.publish_with("", v5::QoS::AtLeastOnce, false, b"2", alias(1))
        .await;
    p.publish_with("ta/other", v5::QoS::AtLeastOnce, false, b"3", alias(1))
        .await;
    p.publish_with("", v5::QoS::AtLeastOnce, false, b"4", alias(1))
        .await;
    let mut got = Vec::new();
    for _ in 0..4 {
        let m = s.next_publish().await;
        got.push((String::from_utf8_lossy(&m.topic).into_owned(), m.payload[0]));
    }
    assert_eq!(
        got,
        [
            ("ta/long/topic".to_owned(), b'1'),
            ("ta/long/topic".to_owned(), b'2'),
            ("ta/other".to_owned(), b'3'),
            ("ta/other".to_owned(), b'4'),
        ]
    );
    server.shutdown().await;
}

/// A client alias above the broker's Topic Alias Maximum, or an unknown
/// one, ends the connection (0x94, 0x82).
#[tokio::test]
async fn invalid_client_topic_alias_disconnects() {
    let server = start_with(|c| c.mqtt.topic_alias_maximum = 4).await;
    for (alias, topic, reason) in [
        (5, "t", ReasonCode::TOPIC_ALIAS_INVALID),
        (2, "", ReasonCode::PROTOCOL_ERROR),
    ] {
        let mut raw = raw_client(&server, Protocol::V5, "bad").await;
        let mut p = publish_packet("t", QoS::AtMostOnce, 0, b"x");
        p.topic = ByteStr::from(topic);
        p.properties.topic_alias = Some(alias);
        raw.send(&Packet::Publish(p)).await;
        match raw.recv().await {
            Some(Packet::Disconnect(d)) => assert_eq!(d.reason, reason),
            other => panic!("expected DISCONNECT {reason}, got {other:?}"),
        }
    }
    server.shutdown().await;
}

/// Server → client aliases when the client allows them: the first message
/// on a topic carries topic and alias, later ones an empty topic.
#[tokio::test]
async fn topic_alias_to_client() {
    let server = start().await;
    let mut o = v5::options(&server, "aliased");
    o.set_topic_alias_max(Some(5));
    let (mut s, _) = c5(o).await;
    s.subscribe("tb/#", v5::QoS::AtLeastOnce).await;
    let mut plain = client5(&server, "plain").await;
    plain.subscribe("tb/#", v5::QoS::AtLeastOnce).await;
    let mut p = client5(&server, "p").await;
    for topic in ["tb/x", "tb/x", "tb/y", "tb/x"] {
        p.publish(topic, v5::QoS::AtLeastOnce, false, b"m").await;
    }
    let mut got = Vec::new();
    for _ in 0..4 {
        let m = s.next_publish().await;
        let alias = m.properties.and_then(|p| p.topic_alias);
        got.push((String::from_utf8_lossy(&m.topic).into_owned(), alias));
    }
    let x = got[0].1.expect("alias given");
    let y = got[2].1.expect("alias given");
    assert_ne!(x, y);
    assert_eq!(
        got,
        [
            ("tb/x".to_owned(), Some(x)),
            (String::new(), Some(x)),
            ("tb/y".to_owned(), Some(y)),
            (String::new(), Some(x)),
        ]
    );
    for topic in ["tb/x", "tb/x", "tb/y", "tb/x"] {
        let m = plain.next_publish().await;
        assert_eq!(&m.topic[..], topic.as_bytes());
        assert_eq!(m.properties.and_then(|p| p.topic_alias), None);
    }
    server.shutdown().await;
}

/// A message larger than a subscriber's Maximum Packet Size is not sent to
/// it (others still get it) and is counted.
#[tokio::test]
async fn message_too_large_for_a_subscriber_is_dropped_and_counted() {
    let server = start().await;
    let mut o = v5::options(&server, "small");
    o.set_max_packet_size(Some(128));
    let (mut small, _) = c5(o).await;
    small.subscribe("big/#", v5::QoS::AtLeastOnce).await;
    let mut large = client5(&server, "large").await;
    large.subscribe("big/#", v5::QoS::AtLeastOnce).await;
    let mut p = client5(&server, "p").await;
    p.publish("big/x", v5::QoS::AtLeastOnce, false, &[b'x'; 500])
        .await;
    p.publish("big/x", v5::QoS::AtLeastOnce, false, b"end")
        .await;
    assert_eq!(small.payloads_until("end").await, ["end"]);
    assert_eq!(large.next_publish().await.payload.len(), 500);
    assert_eq!(Metrics::get(&server.broker.metrics.dropped_too_large), 1);
    server.shutdown().await;
}

/// A message dropped as too large must not consume a topic alias: the
/// client never saw it, so the next message on the topic needs the name.
#[tokio::test]
async fn dropped_message_does_not_leave_an_unannounced_alias() {
    let server = start().await;
    let mut o = v5::options(&server, "small");
    o.set_max_packet_size(Some(128));
    o.set_topic_alias_max(Some(5));
    let (mut small, _) = c5(o).await;
    small.subscribe("big/#", v5::QoS::AtLeastOnce).await;
    let mut p = client5(&server, "p").await;
    p.publish("big/x", v5::QoS::AtLeastOnce, false, &[b'x'; 500])
        .await;
    p.publish("big/x", v5::QoS::AtLeastOnce, false, b"end")
        .await;
    let m = small.next_publish().await;
    assert_eq!(&m.payload[..], b"end");
    assert_eq!(&m.topic[..], b"big/x", "topic name sent with a new alias");
    server.shutdown().await;
}

/// A packet above the broker's Maximum Packet Size closes the connection:
/// DISCONNECT 0x95 for 5.0, silently for 3.1.1.
#[tokio::test]
async fn packet_over_the_servers_maximum_disconnects_0x95() {
    let server = start_with(|c| c.mqtt.max_packet_size = 1024).await;
    let (mut raw, ack) = raw_connect(&server, connect_packet(Protocol::V5, "big5")).await;
    assert_eq!(ack.properties.maximum_packet_size, Some(1024));
    raw.send(&Packet::Publish(publish_packet(
        "t",
        QoS::AtMostOnce,
        0,
        &[0; 2000],
    )))
    .await;
    match raw.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::PACKET_TOO_LARGE),
        other => panic!("expected DISCONNECT 0x95, got {other:?}"),
    }
    assert_eq!(raw.recv().await, None);

    let mut raw = raw_client(&server, Protocol::V3_1_1, "big4").await;
    raw.send(&Packet::Publish(publish_packet(
        "t",
        QoS::AtMostOnce,
        0,
        &[0; 2000],
    )))
    .await;
    assert_eq!(raw.recv().await, None);
    server.shutdown().await;
}

#[tokio::test]
async fn publish_properties_are_forwarded_unchanged() {
    let server = start().await;
    let mut s = client5(&server, "s").await;
    s.subscribe("props/#", v5::QoS::AtLeastOnce).await;
    let mut s4 = client4(&server, "s4").await;
    s4.subscribe("props/#", v4::QoS::AtLeastOnce).await;
    let mut p = client5(&server, "p").await;
    let sent = PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some("text/plain; charset=utf-8".into()),
        response_topic: Some("reply/to/me".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
        user_properties: vec![
            ("k".into(), "v1".into()),
            ("a".into(), "b".into()),
            ("k".into(), "v2".into()),
        ],
        ..PublishProperties::default()
    };
    p.publish_with(
        "props/x",
        v5::QoS::AtLeastOnce,
        false,
        b"hello",
        Some(sent.clone()),
    )
    .await;
    let m = s.next_publish().await;
    assert_eq!(&m.payload[..], b"hello");
    assert_eq!(m.properties, Some(sent));
    let m4 = s4.next_publish().await;
    assert_eq!(&m4.payload[..], b"hello");
    server.shutdown().await;
}
