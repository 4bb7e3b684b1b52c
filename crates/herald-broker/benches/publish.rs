//! What the publish path pays per message, beyond topic matching:
//! - `message_new`: building a [`Message`], which copies topic, payload and
//!   properties out of the read buffer (so a stored message never keeps a
//!   larger buffer alive), against a message that shares the buffer, as
//!   messages did before the copy (the baseline);
//! - `fan_out`: `Broker::publish` of one QoS 0 message to 1, 100 and 10,000
//!   sessions subscribed to its topic (queueing included, draining not).
//!
//! Run: `cargo bench -p herald-broker --bench publish`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: fixed inputs, a panic is a broken bench

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use herald_broker::broker::Broker;
use herald_broker::config::Config;
use herald_broker::message::Message;
use herald_broker::session::SubEntry;
use herald_broker::support::now_ms;
use herald_codec::{ByteStr, Properties, QoS, SubOptions};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A topic and payload sliced from one larger buffer, as decoding leaves
/// them.
fn decoded(payload_len: usize) -> (ByteStr, Bytes) {
    let topic = "herald/bench/t";
    let mut buffer = Vec::with_capacity(16 * 1024 + topic.len() + payload_len);
    buffer.extend_from_slice(topic.as_bytes());
    buffer.resize(topic.len() + payload_len, 0x5A);
    let buffer = Bytes::from(buffer);
    let payload = buffer.slice(topic.len()..);
    let topic = ByteStr::from_utf8(buffer.slice(..topic.len())).expect("utf-8");
    (topic, payload)
}

fn message_new(c: &mut Criterion) {
    let mut group = c.benchmark_group("message_new");
    group.throughput(Throughput::Elements(1));
    for (name, len) in [("64B", 64), ("1KiB", 1024), ("1MiB", 1 << 20)] {
        let (topic, payload) = decoded(len);
        group.bench_function(format!("copied_{name}"), |b| {
            b.iter(|| {
                black_box(Message::new(
                    topic.clone(),
                    payload.clone(),
                    QoS::AtLeastOnce,
                    false,
                    Properties::default(),
                    ByteStr::from_static("publisher"),
                    None,
                ))
            })
        });
        group.bench_function(format!("shared_{name}"), |b| {
            b.iter(|| {
                black_box(Message {
                    topic: topic.clone(),
                    payload: payload.clone(),
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    properties: None,
                    from_client_id: ByteStr::from_static("publisher"),
                    from_username: None,
                    received_at_ms: now_ms(),
                    expires_at: None,
                })
            })
        });
    }
    group.finish();
}

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan_out");
    for subscribers in [1usize, 100, 10_000] {
        let broker = Broker::new(Config::default());
        let sessions: Vec<_> = (0..subscribers)
            .map(|i| {
                let s = broker.new_session(ByteStr::from(format!("sub-{i}")));
                let entry = SubEntry {
                    options: SubOptions::default(),
                    id: None,
                };
                broker.subscribe(&s, &ByteStr::from("fan/out"), entry);
                s
            })
            .collect();
        let message = Arc::new(Message::new(
            ByteStr::from("fan/out"),
            Bytes::from_static(b"0123456789abcdef"),
            QoS::AtMostOnce,
            false,
            Properties::default(),
            ByteStr::from_static("publisher"),
            None,
        ));
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_function(format!("{subscribers}_subscribers"), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    black_box(broker.publish(message.clone()));
                    spent += started.elapsed();
                    for s in &sessions {
                        drop(s.lock().take_queued());
                    }
                }
                spent
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = message_new, fan_out
}
criterion_main!(benches);
