//! `$SYS` statistics (periodic and on demand) and the authorization point:
//! `authz.deny_publish` and `authz.deny_subscribe` with their PUBACK,
//! PUBREC and SUBACK codes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

mod common;
mod pumped;

use common::*;
use herald_broker::metrics::Metrics;
use herald_broker::sys::{VERSION, publish_stats};
use pumped::*;
use std::collections::HashMap;
use std::time::Duration;

/// Reads `$SYS` messages into `stats` until `done` says enough.
async fn read_stats(
    s: &mut C4,
    stats: &mut HashMap<String, String>,
    done: impl Fn(&HashMap<String, String>) -> bool,
) {
    while !done(stats) {
        let m = s.next_publish().await;
        let name = m.topic.trim_start_matches("$SYS/broker/").to_owned();
        stats.insert(name, String::from_utf8_lossy(&m.payload).into_owned());
    }
}

fn number(stats: &HashMap<String, String>, name: &str) -> u64 {
    stats
        .get(name)
        .unwrap_or_else(|| panic!("{name} published"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is a number"))
}

/// With `sys.interval = 1`, the statistics are published at start (retained,
/// so a new `$SYS/#` subscriber sees them) and again every second.
#[tokio::test]
async fn sys_statistics_published_every_interval() {
    let server = start_with(|c| c.sys.interval = 1).await;
    let mut s = client4(&server, "sys").await;
    s.subscribe("$SYS/#", v4::QoS::AtMostOnce).await;
    let mut stats = HashMap::new();
    read_stats(&mut s, &mut stats, |st| st.len() >= 10).await;
    assert_eq!(stats["version"], VERSION);

    let mut p = client4(&server, "p").await;
    for _ in 0..3 {
        p.publish("t", v4::QoS::AtLeastOnce, false, b"hello").await;
    }
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(1)).await;
    tokio::time::resume();
    stats.clear();
    read_stats(&mut s, &mut stats, |st| {
        st.len() >= 10 && st.get("messages/received").is_some_and(|v| v == "3")
    })
    .await;
    assert_eq!(stats["version"], VERSION);
    assert!(number(&stats, "uptime") >= 1);
    assert_eq!(number(&stats, "clients/connected"), 2);
    assert_eq!(number(&stats, "clients/total"), 2);
    assert!(
        number(&stats, "messages/sent") >= 10,
        "the first $SYS batch"
    );
    assert!(number(&stats, "bytes/received") > 3 * 5);
    assert!(number(&stats, "bytes/sent") > 0);
    server.shutdown().await;
}

/// `publish_stats` on demand; a subscriber to `#` or `+/broker/#` never
/// receives `$SYS` topics.
#[tokio::test]
async fn sys_statistics_on_demand_and_hidden_from_first_level_wildcards() {
    let server = start().await;
    let mut wild = client4(&server, "wild").await;
    wild.subscribe("#", v4::QoS::AtMostOnce).await;
    wild.subscribe("+/broker/#", v4::QoS::AtMostOnce).await;
    let mut s = client4(&server, "sys").await;
    s.subscribe("$SYS/broker/+", v4::QoS::AtMostOnce).await;
    s.subscribe("$SYS/broker/clients/#", v4::QoS::AtMostOnce)
        .await;

    publish_stats(&server.broker);
    let mut stats = HashMap::new();
    read_stats(&mut s, &mut stats, |st| {
        st.contains_key("version")
            && st.contains_key("uptime")
            && st.contains_key("clients/connected")
    })
    .await;
    assert_eq!(stats["version"], VERSION);
    assert_eq!(number(&stats, "clients/connected"), 2);

    let mut p = client4(&server, "p").await;
    p.publish("end", v4::QoS::AtLeastOnce, false, b"end").await;
    assert_eq!(wild.payloads_until("end").await, ["end"]);
    server.shutdown().await;
}

/// The broker's own `$SYS` publications, which nobody reads on an idle
/// broker, are never counted as dropped; a client's message that nobody is
/// subscribed to is; and `$SYS/broker/messages/dropped` says what the
/// counters of `/metrics` add up to.
#[tokio::test]
async fn sys_publications_are_not_drops_and_the_drop_counters_agree() {
    let server = start().await;
    let m = &server.broker.metrics;
    for _ in 0..3 {
        publish_stats(&server.broker);
    }
    assert_eq!(m.dropped_by_reason().map(|(_, n)| n), [0; 7]);

    let mut p = client4(&server, "p").await;
    p.publish("nobody/listens", v4::QoS::AtLeastOnce, false, b"x")
        .await;
    let by_reason = m.dropped_by_reason();
    assert_eq!(by_reason[0], ("no_subscribers", 1));
    assert_eq!(by_reason.iter().map(|(_, n)| n).sum::<u64>(), 1);

    let mut s = client4(&server, "sys").await;
    s.subscribe("$SYS/broker/messages/dropped", v4::QoS::AtMostOnce)
        .await;
    let mut stats = HashMap::new();
    read_stats(&mut s, &mut stats, |st| st.contains_key("messages/dropped")).await;
    assert_eq!(
        number(&stats, "messages/dropped"),
        0,
        "retained, from before"
    );
    publish_stats(&server.broker);
    stats.clear();
    read_stats(&mut s, &mut stats, |st| st.contains_key("messages/dropped")).await;
    assert_eq!(number(&stats, "messages/dropped"), m.dropped_total());
    assert_eq!(m.dropped_total(), 1, "the $SYS batches counted nothing");
    server.shutdown().await;
}

fn deny(c: &mut herald_broker::config::Config) {
    c.authz.deny_publish = vec!["secret/#".into()];
    c.authz.deny_subscribe = vec!["private/#".into()];
}

/// A denied PUBLISH: PUBACK 0x87 (5.0 QoS 1), PUBREC 0x87 (5.0 QoS 2),
/// plain acknowledgements in 3.1.1; never routed, never retained.
#[tokio::test]
async fn deny_publish_answers_0x87_and_routes_nothing() {
    let server = start_with(deny).await;
    let mut s = client5(&server, "s").await;
    s.subscribe("#", v5::QoS::ExactlyOnce).await;
    let mut p = client5(&server, "p").await;

    p.client
        .publish("secret/a", v5::QoS::AtLeastOnce, true, "1")
        .await
        .unwrap();
    let reason = p
        .inbox
        .wait_for(|p| match p {
            v5::Packet::PubAck(a) => Some(a.reason),
            _ => None,
        })
        .await;
    assert_eq!(reason, PubAckReason::NotAuthorized);

    p.client
        .publish("secret/b", v5::QoS::ExactlyOnce, false, "2")
        .await
        .unwrap();
    let reason = p
        .inbox
        .wait_for(|p| match p {
            v5::Packet::PubRec(a) => Some(a.reason),
            _ => None,
        })
        .await;
    assert_eq!(reason, PubRecReason::NotAuthorized);
    p.publish("secret/c", v5::QoS::AtMostOnce, false, b"3")
        .await;

    let mut p4 = client4(&server, "p4").await;
    p4.publish("secret/d", v4::QoS::AtLeastOnce, false, b"4")
        .await;
    p4.publish("secret/e", v4::QoS::ExactlyOnce, false, b"5")
        .await;

    p.publish("open/x", v5::QoS::AtLeastOnce, false, b"end")
        .await;
    assert_eq!(s.payloads_until("end").await, ["end"]);
    assert_eq!(server.broker.retained_count(), 0);
    assert_eq!(
        Metrics::get(&server.broker.metrics.dropped_not_authorized),
        5
    );
    server.shutdown().await;
}

/// A denied subscription: SUBACK 0x87 (5.0) or 0x80 (3.1.1), and no
/// messages through it; allowed filters in the same SUBSCRIBE still work.
#[tokio::test]
async fn deny_subscribe_answers_0x87_or_0x80() {
    let server = start_with(deny).await;
    let mut s5 = client5(&server, "s5").await;
    let codes = s5
        .subscribe_filters(
            vec![
                Filter::new("private/x", v5::QoS::AtLeastOnce),
                Filter::new("private/#", v5::QoS::AtLeastOnce),
                Filter::new("open/#", v5::QoS::AtLeastOnce),
            ],
            None,
        )
        .await;
    assert_eq!(
        codes,
        [
            SubscribeReasonCode::NotAuthorized,
            SubscribeReasonCode::NotAuthorized,
            SubscribeReasonCode::Success(v5::QoS::AtLeastOnce),
        ]
    );
    let shared = s5
        .subscribe("$share/g/private/x", v5::QoS::AtLeastOnce)
        .await;
    assert_eq!(shared, [SubscribeReasonCode::NotAuthorized]);

    let mut s4 = client4(&server, "s4").await;
    assert_eq!(
        s4.subscribe("private/x", v4::QoS::AtLeastOnce).await,
        [rumqttc::SubscribeReasonCode::Failure]
    );
    assert_eq!(
        s4.subscribe("open/#", v4::QoS::AtLeastOnce).await,
        [rumqttc::SubscribeReasonCode::Success(v4::QoS::AtLeastOnce)]
    );

    let mut p = client5(&server, "p").await;
    p.publish("private/x", v5::QoS::AtLeastOnce, false, b"hidden")
        .await;
    p.publish("open/x", v5::QoS::AtLeastOnce, false, b"end")
        .await;
    assert_eq!(s5.payloads_until("end").await, ["end"]);
    assert_eq!(s4.payloads_until("end").await, ["end"]);
    server.shutdown().await;
}

/// `authz.deny_subscribe` holds at delivery too: no wildcard or shared
/// subscription, and no retained message, leaks a denied topic.
#[tokio::test]
async fn denied_topics_never_delivered_through_wildcards_shares_or_retained() {
    let server = start_with(|c| c.authz.deny_subscribe = vec!["secret/#".into()]).await;
    let mut p = client5(&server, "p").await;
    p.publish("secret/a", v5::QoS::AtLeastOnce, true, b"retained-leak")
        .await;
    p.publish("open/a", v5::QoS::AtLeastOnce, true, b"retained-ok")
        .await;
    let mut subs = Vec::new();
    for (id, filter) in [("s1", "#"), ("s2", "+/a"), ("s3", "+/#")] {
        let mut s = client4(&server, id).await;
        assert_eq!(
            s.subscribe(filter, v4::QoS::AtLeastOnce).await,
            [rumqttc::SubscribeReasonCode::Success(v4::QoS::AtLeastOnce)],
            "{filter} is granted: it can receive allowed topics"
        );
        subs.push(s);
    }
    let mut shared = client5(&server, "s4").await;
    shared.subscribe("$share/g/#", v5::QoS::AtLeastOnce).await;
    p.publish("secret/a", v5::QoS::AtLeastOnce, false, b"leak")
        .await;
    p.publish("open/a", v5::QoS::AtLeastOnce, false, b"end")
        .await;
    for s in &mut subs {
        assert_eq!(s.payloads_until("end").await, ["retained-ok", "end"]);
    }
    assert_eq!(shared.payloads_until("end").await, ["end"]);
    // 4 subscribers of the live message, 3 of the retained one.
    assert_eq!(
        Metrics::get(&server.broker.metrics.dropped_not_authorized),
        7
    );
    server.shutdown().await;
}

/// `acl.deny_action = "disconnect"`: a refused PUBLISH closes the
/// connection (5.0: DISCONNECT 0x87) instead of being acknowledged.
#[tokio::test]
async fn deny_action_disconnect_closes_the_publisher() {
    use herald_codec::{ByteStr, Packet, Properties, Protocol, Publish, QoS, ReasonCode};
    let server = start_with(|c| {
        deny(c);
        c.acl.deny_action = herald_broker::config::DenyAction::Disconnect;
    })
    .await;
    for protocol in [Protocol::V5, Protocol::V3_1_1] {
        let mut raw = raw_client(&server, protocol, "p").await;
        raw.send(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: ByteStr::from("secret/a"),
            packet_id: 1,
            properties: Properties::default(),
            payload: bytes::Bytes::from_static(b"x"),
        }))
        .await;
        if protocol == Protocol::V5 {
            match raw.recv().await {
                Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::NOT_AUTHORIZED),
                other => panic!("expected DISCONNECT, got {other:?}"),
            }
        }
        assert!(raw.recv().await.is_none(), "closed, no PUBACK");
    }
    server.shutdown().await;
}
