//! Subscriptions: wildcard matching, `$` topics, overlapping subscriptions
//! (3.1.1 and 5.0 with identifiers), No Local, shared subscriptions, SUBACK
//! failure codes and UNSUBSCRIBE. Retain As Published and Retain Handling
//! are in `retained.rs`, the authorization point in `sys_authz.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

mod common;
mod pumped;

use common::*;
use herald_codec::{
    ByteStr, Packet, Properties, Protocol, QoS, ReasonCode, SubOptions, Subscribe, Subscription,
};
use pumped::*;

fn sub(filter: &str, qos: QoS) -> Subscription {
    Subscription {
        filter: ByteStr::from(filter),
        options: SubOptions {
            qos,
            ..SubOptions::default()
        },
    }
}

#[tokio::test]
async fn plus_and_hash_match_whole_levels() {
    let server = start().await;
    let mut s = client4(&server, "sub").await;
    for f in ["a/+/c", "x/#", "end"] {
        s.subscribe(f, v4::QoS::AtLeastOnce).await;
    }
    let mut p = client4(&server, "pub").await;
    let cases = [
        ("a/b/c", true),
        ("a/b/d", false),
        ("a/c", false),
        ("a/b/c/d", false),
        ("a//c", true),
        ("x", true),
        ("x/y/z", true),
        ("xy", false),
    ];
    for (topic, _) in cases {
        p.publish(topic, v4::QoS::AtLeastOnce, false, topic.as_bytes())
            .await;
    }
    p.publish("end", v4::QoS::AtLeastOnce, false, b"end").await;
    let mut expected: Vec<String> = cases
        .iter()
        .filter(|c| c.1)
        .map(|c| c.0.to_owned())
        .collect();
    expected.push("end".into());
    assert_eq!(s.payloads_until("end").await, expected);
    server.shutdown().await;
}

#[tokio::test]
async fn first_level_wildcards_never_match_dollar_topics() {
    let server = start().await;
    let mut wild = client4(&server, "wild").await;
    for f in ["#", "+/info", "+/+"] {
        wild.subscribe(f, v4::QoS::AtLeastOnce).await;
    }
    let mut dollar = client4(&server, "dollar").await;
    dollar.subscribe("$app/#", v4::QoS::AtLeastOnce).await;
    let mut p = client4(&server, "pub").await;
    p.publish("$app/info", v4::QoS::AtLeastOnce, false, b"dollar")
        .await;
    p.publish("plain/info", v4::QoS::AtLeastOnce, false, b"end")
        .await;
    assert_eq!(wild.payloads_until("end").await, ["end"]);
    let got = dollar.next_publish().await;
    assert_eq!(got.topic, "$app/info");
    assert_eq!(&got.payload[..], b"dollar");
    server.shutdown().await;
}

#[tokio::test]
async fn overlapping_subscriptions_give_one_copy_at_the_highest_qos_v311() {
    let server = start().await;
    let mut s = client4(&server, "sub").await;
    s.subscribe("o/#", v4::QoS::AtMostOnce).await;
    s.subscribe("o/+", v4::QoS::ExactlyOnce).await;
    s.subscribe("o/b", v4::QoS::AtLeastOnce).await;
    let mut p = client4(&server, "pub").await;
    p.publish("o/b", v4::QoS::ExactlyOnce, false, b"two").await;
    p.publish("o/b", v4::QoS::AtLeastOnce, false, b"one").await;
    p.publish("o/b", v4::QoS::AtMostOnce, false, b"end").await;
    let mut got = Vec::new();
    loop {
        let m = s.next_publish().await;
        let end = &m.payload[..] == b"end";
        got.push((String::from_utf8_lossy(&m.payload).into_owned(), m.qos));
        if end {
            break;
        }
    }
    assert_eq!(
        got,
        [
            ("two".to_owned(), v4::QoS::ExactlyOnce),
            ("one".to_owned(), v4::QoS::AtLeastOnce),
            ("end".to_owned(), v4::QoS::AtMostOnce),
        ]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn overlapping_subscriptions_v5_one_copy_with_every_identifier() {
    let server = start().await;
    let mut s = client5(&server, "sub").await;
    let with_id = |id: usize| {
        Some(SubscribeProperties {
            id: Some(id),
            user_properties: Vec::new(),
        })
    };
    let subs = [
        ("s/#", v5::QoS::AtMostOnce, 1),
        ("s/+", v5::QoS::AtLeastOnce, 2),
        ("t/#", v5::QoS::AtLeastOnce, 3),
    ];
    for (f, qos, id) in subs {
        let codes = s
            .subscribe_filters(vec![Filter::new(f, qos)], with_id(id))
            .await;
        assert_eq!(codes, [SubscribeReasonCode::Success(qos)]);
    }
    // No identifier: a match through it adds none.
    s.subscribe("s/x", v5::QoS::AtMostOnce).await;
    let mut p = client5(&server, "pub").await;
    p.publish("s/x", v5::QoS::ExactlyOnce, false, b"m").await;
    p.publish("s/y", v5::QoS::AtLeastOnce, false, b"end").await;
    let m = s.next_publish().await;
    assert_eq!(&m.payload[..], b"m");
    assert_eq!(m.qos, v5::QoS::AtLeastOnce, "highest granted QoS");
    let mut ids = m.properties.expect("properties").subscription_identifiers;
    ids.sort_unstable();
    assert_eq!(ids, [1, 2]);
    let end = s.next_publish().await;
    assert_eq!(&end.payload[..], b"end", "exactly one copy of m");
    server.shutdown().await;
}

#[tokio::test]
async fn no_local_withholds_the_clients_own_messages() {
    let server = start().await;
    let mut a = client5(&server, "a").await;
    let mut f = Filter::new("nl/#", v5::QoS::AtLeastOnce);
    f.nolocal = true;
    a.subscribe_filters(vec![f], None).await;
    // Without No Local a client does get its own messages.
    let mut c = client5(&server, "c").await;
    c.subscribe("nl/#", v5::QoS::AtLeastOnce).await;
    a.publish("nl/x", v5::QoS::AtLeastOnce, false, b"own").await;
    c.publish("nl/x", v5::QoS::AtLeastOnce, false, b"other")
        .await;
    assert_eq!(a.payloads_until("other").await, ["other"]);
    assert_eq!(c.payloads_until("other").await, ["own", "other"]);
    server.shutdown().await;
}

#[tokio::test]
async fn shared_subscription_round_robin_one_copy_per_group() {
    let server = start().await;
    let mut m1 = client5(&server, "m1").await;
    let mut m2 = client4(&server, "m2").await;
    let mut solo = client5(&server, "solo").await;
    let mut plain = client5(&server, "plain").await;
    m1.subscribe("$share/g/work/#", v5::QoS::AtLeastOnce).await;
    m2.subscribe("$share/g/work/#", v4::QoS::AtLeastOnce).await;
    solo.subscribe("$share/h/work/+", v5::QoS::AtLeastOnce)
        .await;
    plain.subscribe("work/#", v5::QoS::AtLeastOnce).await;
    m1.subscribe("ctl", v5::QoS::AtLeastOnce).await;
    m2.subscribe("ctl", v4::QoS::AtLeastOnce).await;
    solo.subscribe("ctl", v5::QoS::AtLeastOnce).await;
    plain.subscribe("ctl", v5::QoS::AtLeastOnce).await;

    let mut p = client5(&server, "pub").await;
    let all: Vec<String> = (0..10).map(|i| format!("job{i}")).collect();
    for job in &all {
        p.publish(
            &format!("work/{job}"),
            v5::QoS::AtLeastOnce,
            false,
            job.as_bytes(),
        )
        .await;
    }
    p.publish("ctl", v5::QoS::AtLeastOnce, false, b"end").await;

    let strip = |mut v: Vec<String>| {
        assert_eq!(v.pop().as_deref(), Some("end"));
        v
    };
    let got1 = strip(m1.payloads_until("end").await);
    let got2 = strip(m2.payloads_until("end").await);
    assert_eq!((got1.len(), got2.len()), (5, 5), "{got1:?} {got2:?}");
    let mut both: Vec<String> = got1.into_iter().chain(got2).collect();
    both.sort();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(both, sorted, "each message to exactly one member");
    assert_eq!(strip(solo.payloads_until("end").await), all);
    assert_eq!(strip(plain.payloads_until("end").await), all);

    // A member that unsubscribes leaves the rest to the others.
    m2.unsubscribe("$share/g/work/#").await;
    for i in 0..2 {
        p.publish(
            "work/late",
            v5::QoS::AtLeastOnce,
            false,
            format!("late{i}").as_bytes(),
        )
        .await;
    }
    p.publish("ctl", v5::QoS::AtLeastOnce, false, b"end").await;
    assert_eq!(m1.payloads_until("end").await, ["late0", "late1", "end"]);
    assert_eq!(m2.payloads_until("end").await, ["end"]);
    server.shutdown().await;
}

/// SUBACK codes for filters the broker cannot accept, 5.0 and 3.1.1.
#[tokio::test]
async fn suback_reports_invalid_filters() {
    let server = start().await;
    let filters = || {
        vec![
            sub("a/#/b", QoS::AtLeastOnce),
            sub("a+/b", QoS::AtLeastOnce),
            sub("$share//x", QoS::AtLeastOnce),
            sub("$share/g", QoS::AtLeastOnce),
            sub("$share/g+/x", QoS::AtLeastOnce),
            sub("ok/+", QoS::AtLeastOnce),
            sub("ok/#", QoS::ExactlyOnce),
        ]
    };
    let subscribe = Packet::Subscribe(Subscribe {
        packet_id: 9,
        properties: Properties::default(),
        filters: filters(),
    });
    let mut raw = raw_client(&server, Protocol::V5, "raw5").await;
    raw.send(&subscribe).await;
    match raw_next(&mut raw).await {
        Packet::SubAck(ack) => {
            assert_eq!(ack.packet_id, 9);
            let codes: Vec<u8> = ack.codes.iter().map(|c| c.0).collect();
            let bad = 0x8F;
            assert_eq!(codes, [bad, bad, bad, bad, bad, 0x01, 0x02]);
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }
    // 3.1.1 has no code for a malformed filter: a protocol violation, the
    // connection closes, and nothing of the SUBSCRIBE takes effect.
    let mut raw = raw_client(&server, Protocol::V3_1_1, "raw4").await;
    raw.send(&subscribe).await;
    let next = raw.recv().await;
    assert!(next.is_none(), "expected a close, got {next:?}");
    assert!(!server.broker.sessions().contains_key("raw4"));
    server.shutdown().await;
}

#[tokio::test]
async fn suback_reports_features_not_available() {
    let server = start_with(|c| {
        c.mqtt.shared_subscription_available = false;
        c.mqtt.wildcard_subscription_available = false;
        c.mqtt.subscription_identifiers_available = false;
    })
    .await;
    let (mut s, ack) = c5(v5::options(&server, "s")).await;
    let props = ack.properties.expect("CONNACK properties");
    assert_eq!(props.shared_subscription_available, Some(0));
    assert_eq!(props.wildcard_subscription_available, Some(0));
    assert_eq!(props.subscription_identifiers_available, Some(0));
    let codes = s
        .subscribe_filters(
            vec![
                Filter::new("$share/g/a", v5::QoS::AtLeastOnce),
                Filter::new("w/+", v5::QoS::AtLeastOnce),
                Filter::new("w/#", v5::QoS::AtLeastOnce),
                Filter::new("plain", v5::QoS::AtLeastOnce),
            ],
            None,
        )
        .await;
    assert_eq!(
        codes,
        [
            SubscribeReasonCode::SharedSubscriptionsNotSupported,
            SubscribeReasonCode::WildcardSubscriptionsNotSupported,
            SubscribeReasonCode::WildcardSubscriptionsNotSupported,
            SubscribeReasonCode::Success(v5::QoS::AtLeastOnce),
        ]
    );
    let codes = s
        .subscribe_filters(
            vec![Filter::new("plain", v5::QoS::AtLeastOnce)],
            Some(SubscribeProperties {
                id: Some(7),
                user_properties: Vec::new(),
            }),
        )
        .await;
    assert_eq!(codes, [SubscribeReasonCode::SubscriptionIdNotSupported]);
    server.shutdown().await;
}

/// 5.0 §3.8.3.1: No Local on a shared subscription is a Protocol Error;
/// 0x82 is no SUBACK code, so the broker disconnects with it.
#[tokio::test]
async fn no_local_on_a_shared_subscription_is_a_protocol_error() {
    let server = start().await;
    let mut raw = raw_client(&server, Protocol::V5, "raw").await;
    let mut s = sub("$share/g/x", QoS::AtLeastOnce);
    s.options.no_local = true;
    raw.send(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: vec![s],
    }))
    .await;
    match raw.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::PROTOCOL_ERROR),
        other => panic!("expected DISCONNECT 0x82, got {other:?}"),
    }
    assert_eq!(raw.recv().await, None, "then the connection closes");
    server.shutdown().await;
}

#[tokio::test]
async fn unsubscribe_acks_and_stops_delivery_v5() {
    let server = start().await;
    let mut s = client5(&server, "s").await;
    s.subscribe("u/a", v5::QoS::AtLeastOnce).await;
    s.subscribe("u/+", v5::QoS::AtLeastOnce).await;
    s.subscribe("u/end", v5::QoS::AtLeastOnce).await;
    assert_eq!(s.unsubscribe("u/a").await, [UnsubAckReason::Success]);
    assert_eq!(s.unsubscribe("u/+").await, [UnsubAckReason::Success]);
    assert_eq!(
        s.unsubscribe("u/a").await,
        [UnsubAckReason::NoSubscriptionExisted]
    );
    assert_eq!(
        s.unsubscribe("never").await,
        [UnsubAckReason::NoSubscriptionExisted]
    );
    let mut p = client5(&server, "p").await;
    p.publish("u/a", v5::QoS::AtLeastOnce, false, b"gone").await;
    p.publish("u/end", v5::QoS::AtLeastOnce, false, b"end")
        .await;
    assert_eq!(s.payloads_until("end").await, ["end"]);
    server.shutdown().await;
}

#[tokio::test]
async fn unsubscribe_stops_delivery_v311() {
    let server = start().await;
    let mut s = client4(&server, "s").await;
    s.subscribe("u/#", v4::QoS::AtLeastOnce).await;
    s.subscribe("end", v4::QoS::AtLeastOnce).await;
    let mut p = client4(&server, "p").await;
    p.publish("u/x", v4::QoS::AtLeastOnce, false, b"before")
        .await;
    s.unsubscribe("u/#").await;
    p.publish("u/x", v4::QoS::AtLeastOnce, false, b"after")
        .await;
    p.publish("end", v4::QoS::AtLeastOnce, false, b"end").await;
    assert_eq!(s.payloads_until("end").await, ["before", "end"]);
    server.shutdown().await;
}

/// Re-subscribing replaces the subscription (its QoS), not adds a second.
#[tokio::test]
async fn resubscribe_replaces_the_subscription() {
    let server = start().await;
    let mut s = client4(&server, "s").await;
    s.subscribe("r/x", v4::QoS::ExactlyOnce).await;
    let codes = s.subscribe("r/x", v4::QoS::AtMostOnce).await;
    assert_eq!(
        codes,
        [rumqttc::SubscribeReasonCode::Success(v4::QoS::AtMostOnce)]
    );
    let mut p = client4(&server, "p").await;
    p.publish("r/x", v4::QoS::ExactlyOnce, false, b"m").await;
    p.publish("r/x", v4::QoS::AtMostOnce, false, b"end").await;
    let m = s.next_publish().await;
    assert_eq!((&m.payload[..], m.qos), (&b"m"[..], v4::QoS::AtMostOnce));
    assert_eq!(s.payloads_until("end").await, ["end"]);
    server.shutdown().await;
}
