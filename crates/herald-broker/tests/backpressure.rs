//! Backpressure: a publisher that outruns a subscriber is paused (its
//! connection stops reading) while the subscriber's queue is above high
//! water, instead of the broker acknowledging messages it then drops; and
//! a subscriber that never drains stalls a publisher at most briefly.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

mod common;
use common::*;
use herald_broker::metrics::Metrics;
use herald_codec::{
    ByteStr, Connect, Packet, Properties, Protocol, PubResp, QoS, SubOptions, Subscribe,
    Subscription,
};
use std::time::Duration;

const MESSAGES: usize = 400;

/// A raw 5.0 subscriber with Receive Maximum 1: the broker may send it one
/// unacknowledged message at a time, so everything else waits in its queue.
async fn slow_subscriber(server: &herald_broker::Server, topic: &str) -> raw::Raw {
    let mut sub = raw::Raw::connect(addr(server), Protocol::V5).await;
    sub.send(&Packet::Connect(Box::new(Connect {
        protocol: Protocol::V5,
        clean_start: true,
        keep_alive: 0,
        properties: Properties {
            receive_maximum: Some(1),
            ..Properties::default()
        },
        client_id: ByteStr::from("slow"),
        will: None,
        username: None,
        password: None,
    })))
    .await;
    assert!(matches!(sub.recv().await, Some(Packet::ConnAck(_))));
    sub.send(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: vec![Subscription {
            filter: ByteStr::from(topic),
            options: SubOptions {
                qos: QoS::AtLeastOnce,
                ..SubOptions::default()
            },
        }],
    }))
    .await;
    assert!(matches!(sub.recv().await, Some(Packet::SubAck(_))));
    sub
}

/// Publishes MESSAGES QoS 1 messages as fast as rumqttc allows.
fn flood(server: &herald_broker::Server, topic: &'static str) -> tokio::task::JoinHandle<()> {
    let options = v4::options(server, "flood");
    tokio::spawn(async move {
        let (client, mut eventloop, _) = v4::connect(options).await;
        let sender = tokio::spawn(async move {
            for i in 0..MESSAGES {
                client
                    .publish(topic, v4::QoS::AtLeastOnce, false, i.to_string())
                    .await
                    .expect("queued in rumqttc");
            }
        });
        let mut acked = 0;
        while acked < MESSAGES {
            if let v4::Event::Incoming(v4::Packet::PubAck(_)) = v4::next_event(&mut eventloop).await
            {
                acked += 1;
            }
        }
        sender.await.expect("sender");
    })
}

#[tokio::test]
async fn a_fast_publisher_is_paused_not_dropped() {
    let server = start_with(|c| c.mqtt.max_queued_messages = 20).await;
    let mut sub = slow_subscriber(&server, "bp/t").await;
    let publisher = flood(&server, "bp/t");
    // Take every message, one at a time, acknowledging each.
    for i in 0..MESSAGES {
        let Some(Packet::Publish(p)) = sub.recv().await else {
            panic!("message {i} did not arrive");
        };
        assert_eq!(&p.payload[..], i.to_string().as_bytes(), "in order");
        sub.send(&Packet::PubAck(PubResp::new(p.packet_id))).await;
    }
    publisher.await.expect("publisher got every PUBACK");
    let m = &server.broker.metrics;
    assert_eq!(Metrics::get(&m.dropped_queue_full), 0, "nothing dropped");
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_that_never_reads_stalls_a_publisher_only_briefly() {
    let server = start_with(|c| c.mqtt.max_queued_messages = 20).await;
    // Subscribes, then never acknowledges: its queue fills and stays full.
    let _stuck = slow_subscriber(&server, "bp/stuck").await;
    let started = tokio::time::Instant::now();
    flood(&server, "bp/stuck")
        .await
        .expect("every PUBACK arrives");
    // One pause of at most a second, then the stuck session is not waited
    // on again; the excess is dropped and counted.
    assert!(started.elapsed() <= Duration::from_secs(5));
    let m = &server.broker.metrics;
    assert!(Metrics::get(&m.dropped_queue_full) > 0);
    server.shutdown().await;
}
