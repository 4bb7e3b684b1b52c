//! PUBLISH packets that arrive together for one topic are routed together
//! (one lock and one wake-up per subscriber for all of them): what each
//! client sees must be what handling them one by one gives. Every test
//! sends its packets in one write, so the broker reads them together.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

mod common;
mod lifecycle;

use bytes::{Bytes, BytesMut};
use common::raw::Raw;
use common::*;
use herald_broker::Server;
use herald_codec::{ByteStr, Packet, Properties, Protocol, PubResp, Publish, QoS, ReasonCode};
use lifecycle::*;

/// A subscriber of `filter` at QoS 1.
async fn subscriber(server: &Server, protocol: Protocol, id: &str, filter: &str) -> Raw {
    let mut sub = connected(server, protocol, id).await;
    sub.send(&subscribe_packet(1, filter)).await;
    assert!(matches!(sub.recv().await, Some(Packet::SubAck(_))));
    sub
}

/// PUBLISH `n` (from 1) to `topic`: QoS 1 with packet id `n` for odd
/// `n`, QoS 0 for even, payload the number.
fn publish(topic: &str, n: u16) -> Packet {
    let qos = if n % 2 == 1 {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    };
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: ByteStr::from(topic),
        packet_id: if qos == QoS::AtMostOnce { 0 } else { n },
        properties: Properties::default(),
        payload: Bytes::from(n.to_string()),
    })
}

/// The bytes of messages `1..=n` to `topic`, for one write.
fn publishes(protocol: Protocol, topic: &str, n: u16) -> BytesMut {
    let mut out = BytesMut::new();
    for i in 1..=n {
        publish(topic, i).encode(protocol, &mut out).unwrap();
    }
    out
}

/// Reads `n` PUBLISH packets; returns their payloads as numbers (QoS 1
/// ones acknowledged).
async fn received(sub: &mut Raw, n: usize) -> Vec<u16> {
    let mut got = Vec::new();
    while got.len() < n {
        match sub.recv().await {
            Some(Packet::Publish(p)) => {
                got.push(std::str::from_utf8(&p.payload).unwrap().parse().unwrap());
                if p.qos == QoS::AtLeastOnce {
                    sub.send(&Packet::PubAck(PubResp::new(p.packet_id))).await;
                }
            }
            other => panic!("expected PUBLISH {} of {n}, got {other:?}", got.len() + 1),
        }
    }
    got
}

/// Reads PUBACKs for the odd numbers `1..=n`; returns (packet id, reason).
async fn acknowledged(publisher: &mut Raw, n: u16) -> Vec<(u16, ReasonCode)> {
    let mut acks = Vec::new();
    while acks.len() < usize::from(n.div_ceil(2)) {
        match publisher.recv().await {
            Some(Packet::PubAck(a)) => acks.push((a.packet_id, a.reason)),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    acks
}

/// The PUBACKs `acknowledged` should read for messages `1..=n`: the odd
/// ones, each with `reason`.
fn odd_acks(n: u16, reason: ReasonCode) -> Vec<(u16, ReasonCode)> {
    (1..=n).step_by(2).map(|i| (i, reason)).collect()
}

#[tokio::test]
async fn publishes_read_together_are_delivered_and_acknowledged_in_order() {
    watch_panics();
    // The batch is at most a quarter of the queue limit: 8 messages here,
    // so the 300 below go in many batches, and the limit is not reached.
    let server = start_with(|c| c.mqtt.max_queued_messages = 32).await;
    let mut subs = Vec::new();
    for (i, protocol) in [Protocol::V3_1_1, Protocol::V5, Protocol::V3_1_1]
        .into_iter()
        .enumerate()
    {
        subs.push(subscriber(&server, protocol, &format!("sub{i}"), "t/#").await);
    }
    let mut publisher = connected(&server, Protocol::V5, "pub").await;
    let n = 300;
    publisher
        .send_bytes(&publishes(Protocol::V5, "t/x", n))
        .await;
    // All read at once: a subscriber that acknowledged nothing would make
    // the publisher pause, then have messages dropped.
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut sub| tokio::spawn(async move { received(&mut sub, usize::from(n)).await }))
        .collect();
    let expected: Vec<u16> = (1..=n).collect();
    for reader in readers {
        assert_eq!(reader.await.unwrap(), expected);
    }
    let acks = acknowledged(&mut publisher, n).await;
    assert_eq!(acks, odd_acks(n, ReasonCode::SUCCESS));
    assert_no_panics();
}

#[tokio::test]
async fn publishes_read_together_without_subscribers_are_each_told_so() {
    watch_panics();
    let server = start().await;
    let mut publisher = connected(&server, Protocol::V5, "pub").await;
    let n = 100;
    publisher
        .send_bytes(&publishes(Protocol::V5, "nobody/here", n))
        .await;
    let acks = acknowledged(&mut publisher, n).await;
    assert_eq!(acks, odd_acks(n, ReasonCode::NO_MATCHING_SUBSCRIBERS));
    assert_no_panics();
}

#[tokio::test]
async fn a_broken_publish_after_others_closes_once_they_are_routed() {
    watch_panics();
    let server = start().await;
    let mut sub = subscriber(&server, Protocol::V3_1_1, "sub", "t").await;
    let mut publisher = connected(&server, Protocol::V3_1_1, "pub").await;
    // Five good messages to "t", then a QoS 1 PUBLISH to "t" whose packet
    // identifier is 0, which 3.1.1 forbids: it is read with them.
    let mut bytes = publishes(Protocol::V3_1_1, "t", 5);
    bytes.extend_from_slice(&[0x32, 6, 0, 1, b't', 0, 0, b'!']);
    publisher.send_bytes(&bytes).await;
    assert_eq!(received(&mut sub, 5).await, vec![1, 2, 3, 4, 5]);
    let acks = acknowledged(&mut publisher, 5).await;
    assert_eq!(
        acks.iter().map(|&(id, _)| id).collect::<Vec<_>>(),
        vec![1, 3, 5]
    );
    assert_closed_silently(&mut publisher).await;
    assert_bystander_round_trip(&server, "bystander").await;
    assert_no_panics();
}

#[tokio::test]
async fn a_shared_group_still_takes_turns_per_message() {
    watch_panics();
    let server = start().await;
    let mut members = Vec::new();
    for i in 0..2 {
        let mut member = connected(&server, Protocol::V3_1_1, &format!("member{i}")).await;
        member.send(&subscribe_packet(1, "$share/g/t/#")).await;
        assert!(matches!(member.recv().await, Some(Packet::SubAck(_))));
        members.push(member);
    }
    let mut publisher = connected(&server, Protocol::V3_1_1, "pub").await;
    let n = 20;
    publisher
        .send_bytes(&publishes(Protocol::V3_1_1, "t/x", n))
        .await;
    acknowledged(&mut publisher, n).await;
    // Round robin: each member gets every other message, in order.
    let mut got = Vec::new();
    for member in &mut members {
        got.push(received(member, usize::from(n / 2)).await);
    }
    got.sort();
    let odd: Vec<u16> = (1..=n).step_by(2).collect();
    let even: Vec<u16> = (2..=n).step_by(2).collect();
    assert_eq!(got, vec![odd, even]);
    assert_no_panics();
}

/// Records the names of the `message.publish` and `message.dropped`
/// events, in the order they fire.
#[derive(Default)]
struct Order(std::sync::Mutex<Vec<&'static str>>);

impl herald_broker::hooks::Handler for Order {
    fn on_event(&self, event: &herald_broker::hooks::Event<'_>) {
        let name = event.name();
        if name == "message.publish" || name == "message.dropped" {
            self.0.lock().unwrap().push(name);
        }
    }
}

#[tokio::test]
async fn a_publish_breaking_a_rule_after_others_is_dropped_after_their_events() {
    watch_panics();
    let server = start_with(|c| c.mqtt.retain_available = false).await;
    let order = std::sync::Arc::new(Order::default());
    server.broker.hooks.add_handler(0, order.clone());
    let mut sub = subscriber(&server, Protocol::V5, "sub", "t").await;
    let mut publisher = connected(&server, Protocol::V5, "pub").await;
    // Five good messages to "t", then a retained one, which this broker
    // does not take: the connection closes with 0x9A after the five.
    let mut bytes = publishes(Protocol::V5, "t", 5);
    let mut retained = publish("t", 6);
    if let Packet::Publish(p) = &mut retained {
        p.retain = true;
    }
    retained.encode(Protocol::V5, &mut bytes).unwrap();
    publisher.send_bytes(&bytes).await;
    assert_eq!(received(&mut sub, 5).await, vec![1, 2, 3, 4, 5]);
    acknowledged(&mut publisher, 5).await;
    assert_disconnected_with(&mut publisher, ReasonCode::RETAIN_NOT_SUPPORTED).await;
    let mut expected = vec!["message.publish"; 5];
    expected.push("message.dropped");
    assert_eq!(*order.0.lock().unwrap(), expected);
    assert_no_panics();
}

/// A subscriber of `filter` with these options (and, for 5.0, subscription
/// identifier `id`).
async fn subscribed_with(
    server: &Server,
    protocol: Protocol,
    client_id: &str,
    filter: &str,
    options: herald_codec::SubOptions,
    id: Option<u32>,
) -> Raw {
    let mut sub = connected(server, protocol, client_id).await;
    let mut properties = Properties::default();
    properties.subscription_identifiers.extend(id);
    sub.send(&Packet::Subscribe(herald_codec::Subscribe {
        packet_id: 1,
        properties,
        filters: vec![herald_codec::Subscription {
            filter: ByteStr::from(filter),
            options,
        }],
    }))
    .await;
    assert!(matches!(sub.recv().await, Some(Packet::SubAck(_))));
    sub
}

/// Reads `n` PUBLISH packets: (payload as a number, QoS, RETAIN,
/// subscription identifiers), QoS 1 ones acknowledged.
async fn received_as(sub: &mut Raw, n: usize) -> Vec<(u16, QoS, bool, Vec<u32>)> {
    let mut got = Vec::new();
    while got.len() < n {
        match sub.recv().await {
            Some(Packet::Publish(p)) => {
                let number = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
                let ids = p.properties.subscription_identifiers.clone();
                got.push((number, p.qos, p.retain, ids));
                if p.qos == QoS::AtLeastOnce {
                    sub.send(&Packet::PubAck(PubResp::new(p.packet_id))).await;
                }
            }
            other => panic!("expected PUBLISH {} of {n}, got {other:?}", got.len() + 1),
        }
    }
    got
}

#[tokio::test]
async fn each_subscription_gets_messages_read_together_as_it_subscribed() {
    watch_panics();
    let server = start().await;
    let options = |qos, retain_as_published| herald_codec::SubOptions {
        qos,
        retain_as_published,
        ..Default::default()
    };
    let mut at_most_once = subscribed_with(
        &server,
        Protocol::V5,
        "qos0-rap-id7",
        "t/#",
        options(QoS::AtMostOnce, true),
        Some(7),
    )
    .await;
    let mut at_least_once = subscribed_with(
        &server,
        Protocol::V5,
        "qos1",
        "t/x",
        options(QoS::AtLeastOnce, false),
        None,
    )
    .await;
    let mut v3 = subscribed_with(
        &server,
        Protocol::V3_1_1,
        "v3",
        "t/#",
        options(QoS::AtLeastOnce, false),
        None,
    )
    .await;
    // Six messages in one write: odd ones QoS 1, 3 and 4 retained.
    let mut publisher = connected(&server, Protocol::V5, "pub").await;
    let mut bytes = BytesMut::new();
    for n in 1..=6 {
        let mut packet = publish("t/x", n);
        if let Packet::Publish(p) = &mut packet {
            p.retain = n == 3 || n == 4;
        }
        packet.encode(Protocol::V5, &mut bytes).unwrap();
    }
    publisher.send_bytes(&bytes).await;
    acknowledged(&mut publisher, 6).await;
    let qos = |n: u16| {
        if n % 2 == 1 {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        }
    };
    // QoS at most the granted one; RETAIN kept only as published; the
    // subscription's identifier on each.
    let expected: Vec<_> = (1..=6)
        .map(|n| (n, QoS::AtMostOnce, n == 3 || n == 4, vec![7]))
        .collect();
    assert_eq!(received_as(&mut at_most_once, 6).await, expected);
    let expected: Vec<_> = (1..=6).map(|n| (n, qos(n), false, vec![])).collect();
    assert_eq!(received_as(&mut at_least_once, 6).await, expected);
    assert_eq!(received_as(&mut v3, 6).await, expected);
    assert_no_panics();
}
