//! Retained messages: store, replace, delete on an empty payload, delivery
//! on subscribe as Retain Handling says, the RETAIN flag on delivery
//! (3.1.1 rules and 5.0 Retain As Published), expiry of a retained message.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

mod common;
mod pumped;

use common::*;
use herald_codec::{Packet, Protocol, QoS, ReasonCode};
use pumped::*;
use std::time::Duration;

fn rh_filter(filter: &str, rule: RetainForwardRule) -> Filter {
    let mut f = Filter::new(filter, v5::QoS::AtLeastOnce);
    f.retain_forward_rule = rule;
    f
}

/// The next `n` messages as (payload, RETAIN flag).
async fn payload_and_retain(s: &mut C5, n: usize) -> Vec<(String, bool)> {
    let mut got = Vec::new();
    for _ in 0..n {
        let m = s.next_publish().await;
        got.push((String::from_utf8_lossy(&m.payload).into_owned(), m.retain));
    }
    got
}

#[tokio::test]
async fn retained_store_replace_and_delete() {
    let server = start().await;
    let mut p = client4(&server, "p").await;
    p.publish("r/a", v4::QoS::AtLeastOnce, true, b"one").await;
    p.publish("r/a", v4::QoS::AtLeastOnce, true, b"two").await;
    p.publish("r/b", v4::QoS::AtLeastOnce, true, b"bee").await;
    p.publish("r/c", v4::QoS::AtLeastOnce, false, b"not kept")
        .await;
    assert_eq!(server.broker.retained_count(), 2);

    let mut s = client4(&server, "s").await;
    s.subscribe("r/#", v4::QoS::AtLeastOnce).await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = s.next_publish().await;
        assert!(
            m.retain,
            "RETAIN 1 on a message sent for a new subscription"
        );
        got.push((m.topic, String::from_utf8_lossy(&m.payload).into_owned()));
    }
    got.sort();
    assert_eq!(
        got,
        [
            ("r/a".to_owned(), "two".to_owned()),
            ("r/b".to_owned(), "bee".to_owned())
        ]
    );

    // An empty retained payload deletes, and is itself delivered live.
    p.publish("r/a", v4::QoS::AtLeastOnce, true, b"").await;
    let m = s.next_publish().await;
    assert_eq!(
        (m.topic.as_str(), m.payload.len(), m.retain),
        ("r/a", 0, false)
    );
    assert_eq!(server.broker.retained_count(), 1);

    let mut late = client4(&server, "late").await;
    late.subscribe("r/#", v4::QoS::AtLeastOnce).await;
    p.publish("r/end", v4::QoS::AtLeastOnce, false, b"end")
        .await;
    assert_eq!(late.payloads_until("end").await, ["bee", "end"]);
    server.shutdown().await;
}

/// 3.1.1: RETAIN is 1 on messages sent because of a new subscription and 0
/// on messages matching an established one; QoS is the lower of the stored
/// and the granted.
#[tokio::test]
async fn retain_flag_rules_v311() {
    let server = start().await;
    let mut p = client4(&server, "p").await;
    p.publish("f/x", v4::QoS::ExactlyOnce, true, b"stored")
        .await;
    let mut s = client4(&server, "s").await;
    s.subscribe("f/#", v4::QoS::AtLeastOnce).await;
    let m = s.next_publish().await;
    assert_eq!(
        (&m.payload[..], m.retain, m.qos),
        (&b"stored"[..], true, v4::QoS::AtLeastOnce)
    );
    p.publish("f/x", v4::QoS::AtLeastOnce, true, b"live").await;
    let m = s.next_publish().await;
    assert_eq!((&m.payload[..], m.retain), (&b"live"[..], false));
    server.shutdown().await;
}

/// 5.0 Retain As Published: live messages keep their RETAIN flag for a RAP
/// subscription and lose it otherwise; messages sent for a new subscription
/// always have it.
#[tokio::test]
async fn retain_as_published_v5() {
    let server = start().await;
    let mut p = client5(&server, "p").await;
    p.publish("rap/old", v5::QoS::AtLeastOnce, true, b"old")
        .await;
    let mut rap = client5(&server, "rap").await;
    let mut f = Filter::new("rap/#", v5::QoS::AtLeastOnce);
    f.preserve_retain = true;
    rap.subscribe_filters(vec![f], None).await;
    let mut plain = client5(&server, "plain").await;
    plain.subscribe("rap/#", v5::QoS::AtLeastOnce).await;
    for s in [&mut rap, &mut plain] {
        let m = s.next_publish().await;
        assert_eq!((&m.payload[..], m.retain), (&b"old"[..], true));
    }
    p.publish("rap/x", v5::QoS::AtLeastOnce, true, b"kept")
        .await;
    p.publish("rap/x", v5::QoS::AtLeastOnce, false, b"live")
        .await;
    assert_eq!(
        payload_and_retain(&mut rap, 2).await,
        [("kept".to_owned(), true), ("live".to_owned(), false)]
    );
    assert_eq!(
        payload_and_retain(&mut plain, 2).await,
        [("kept".to_owned(), false), ("live".to_owned(), false)]
    );
    server.shutdown().await;
}

/// Retain Handling 0: sent at every subscribe; 1: only if the subscription
/// is new; 2: never.
#[tokio::test]
async fn retain_handling_0_1_2() {
    let server = start().await;
    let mut p = client5(&server, "p").await;
    p.publish("rh/x", v5::QoS::AtLeastOnce, true, b"kept").await;
    for (id, rule, expected) in [
        ("rh0", RetainForwardRule::OnEverySubscribe, 2),
        ("rh1", RetainForwardRule::OnNewSubscribe, 1),
        ("rh2", RetainForwardRule::Never, 0),
    ] {
        let mut s = client5(&server, id).await;
        for _ in 0..2 {
            let codes = s
                .subscribe_filters(vec![rh_filter("rh/#", rule.clone())], None)
                .await;
            assert_eq!(codes, [SubscribeReasonCode::Success(v5::QoS::AtLeastOnce)]);
        }
        p.publish("rh/end", v5::QoS::AtLeastOnce, false, b"end")
            .await;
        let got = s.payloads_until("end").await;
        let kept = got.iter().filter(|p| *p == "kept").count();
        assert_eq!(kept, expected, "{rule:?}: {got:?}");
    }
    server.shutdown().await;
}

/// Retained messages are not sent for a shared subscription (5.0 §4.8.2).
#[tokio::test]
async fn no_retained_messages_for_shared_subscriptions() {
    let server = start().await;
    let mut p = client5(&server, "p").await;
    p.publish("sh/x", v5::QoS::AtLeastOnce, true, b"kept").await;
    let mut s = client5(&server, "s").await;
    s.subscribe("$share/g/sh/#", v5::QoS::AtLeastOnce).await;
    p.publish("sh/x", v5::QoS::AtLeastOnce, false, b"end").await;
    assert_eq!(s.payloads_until("end").await, ["end"]);
    server.shutdown().await;
}

/// A retained message whose Message Expiry Interval has passed is not
/// sent to a new subscriber; one still valid is sent with what is left,
/// and with its other properties.
#[tokio::test]
async fn retained_message_expiry() {
    let server = start().await;
    let mut p = client5(&server, "p").await;
    let props = |secs| {
        Some(PublishProperties {
            message_expiry_interval: Some(secs),
            content_type: Some("text/plain".into()),
            ..PublishProperties::default()
        })
    };
    p.publish_with("ex/short", v5::QoS::AtLeastOnce, true, b"short", props(2))
        .await;
    p.publish_with("ex/long", v5::QoS::AtLeastOnce, true, b"long", props(100))
        .await;

    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(3)).await;
    tokio::time::resume();

    let mut s = client5(&server, "s").await;
    s.subscribe("ex/#", v5::QoS::AtLeastOnce).await;
    p.publish("ex/end", v5::QoS::AtLeastOnce, false, b"end")
        .await;
    let m = s.next_publish().await;
    assert_eq!((&m.payload[..], m.retain), (&b"long"[..], true));
    let props = m.properties.expect("properties");
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
    let left = props.message_expiry_interval.expect("remaining expiry");
    assert!(
        (96..=97).contains(&left),
        "100 s less the 3 s stored: {left}"
    );
    assert_eq!(s.payloads_until("end").await, ["end"]);
    server.shutdown().await;
}

/// With `retain_available = false` a retained PUBLISH is refused (0x9A).
#[tokio::test]
async fn retain_not_available_disconnects_0x9a() {
    let server = start_with(|c| c.mqtt.retain_available = false).await;
    let (mut raw, ack) = raw_connect(&server, connect_packet(Protocol::V5, "r")).await;
    assert_eq!(ack.properties.retain_available, Some(false));
    raw.send(&Packet::Publish(herald_codec::Publish {
        retain: true,
        qos: QoS::AtMostOnce,
        topic: "t".into(),
        payload: bytes::Bytes::from_static(b"x"),
        ..Default::default()
    }))
    .await;
    match raw.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::RETAIN_NOT_SUPPORTED),
        other => panic!("expected DISCONNECT 0x9A, got {other:?}"),
    }
    assert_eq!(server.broker.retained_count(), 0);
    server.shutdown().await;
}
