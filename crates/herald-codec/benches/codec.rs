//! Decode and encode throughput of the packets a broker handles most: a
//! 64-byte QoS 1 PUBLISH (3.1.1), a PUBLISH with a 1 KiB payload, and a 5.0
//! CONNECT with properties and a will.
//!
//! Decode benchmarks decode a buffer holding N packets back to back; filling
//! that buffer (a copy) happens outside the timed part (`iter_batched`), and
//! so does freeing it. Dropping each decoded packet is timed, as it is part
//! of what a connection does per packet.
//!
//! Run: `cargo bench -p herald-codec --bench codec`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: fixed inputs, a panic is a broken bench

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use herald_codec::{
    ByteStr, Connect, DecodeOptions, MAX_PACKET_SIZE, Packet, Properties, Protocol, Publish, QoS,
    Will, decode,
};
use std::hint::black_box;

/// A QoS 1 PUBLISH that is exactly 64 bytes on the wire at 3.1.1: 2 bytes of
/// fixed header, 2 + 14 topic, 2 packet id, 44 payload.
fn publish_64() -> Packet {
    Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: ByteStr::from("herald/bench/t"),
        packet_id: 42,
        payload: Bytes::from(vec![0x5A; 44]),
        ..Publish::default()
    })
}

/// A QoS 1 PUBLISH with a 1 KiB payload.
fn publish_1k() -> Packet {
    Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: ByteStr::from("herald/bench/t"),
        packet_id: 42,
        payload: Bytes::from(vec![0x5A; 1024]),
        ..Publish::default()
    })
}

/// A 5.0 CONNECT with session expiry, receive maximum, user properties and a
/// will with properties, plus user name and password.
fn connect_v5() -> Packet {
    let kv = |k: &str, v: &str| (ByteStr::from(k), ByteStr::from(v));
    Packet::Connect(Box::new(Connect {
        protocol: Protocol::V5,
        clean_start: false,
        keep_alive: 60,
        properties: Properties {
            session_expiry_interval: Some(3600),
            receive_maximum: Some(64),
            maximum_packet_size: Some(1 << 20),
            topic_alias_maximum: Some(16),
            user_properties: vec![kv("region", "eu-west-1"), kv("app", "thermostat")],
            ..Properties::default()
        },
        client_id: ByteStr::from("device-00042"),
        will: Some(Will {
            topic: ByteStr::from("devices/00042/status"),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties {
                will_delay_interval: Some(5),
                message_expiry_interval: Some(600),
                content_type: Some(ByteStr::from("text/plain")),
                user_properties: vec![kv("reason", "lost")],
                ..Properties::default()
            },
        }),
        username: Some(ByteStr::from("device-00042")),
        password: Some(Bytes::from_static(b"correct horse battery staple")),
    }))
}

fn bench_packet(c: &mut Criterion, name: &str, packet: Packet, protocol: Protocol, n: usize) {
    let mut one = BytesMut::new();
    let size = packet.encode(protocol, &mut one).expect("encodes");
    let mut wire = BytesMut::with_capacity(size * n);
    for _ in 0..n {
        wire.extend_from_slice(&one);
    }
    let wire = wire.freeze();
    let opts = DecodeOptions {
        protocol,
        max_packet_size: MAX_PACKET_SIZE,
    };

    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function(format!("decode x{n} ({size} B each)"), |b| {
        b.iter_batched(
            || BytesMut::from(&wire[..]),
            |mut buf| {
                let mut count = 0;
                loop {
                    match decode(&mut buf, &opts) {
                        Ok(Some(p)) => {
                            black_box(&p);
                            count += 1;
                        }
                        Ok(None) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                assert_eq!(count, n);
                buf
            },
            BatchSize::LargeInput,
        )
    });
    let mut out = BytesMut::with_capacity(size * n);
    group.bench_function(format!("encode x{n} ({size} B each)"), |b| {
        b.iter(|| {
            out.clear();
            for _ in 0..n {
                black_box(&packet)
                    .encode(protocol, &mut out)
                    .expect("encodes");
            }
            black_box(&out);
        })
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    let p64 = publish_64();
    assert_eq!(p64.encoded_len(Protocol::V3_1_1), Ok(64));
    bench_packet(c, "publish_64B_qos1_v3.1.1", p64, Protocol::V3_1_1, 1000);
    bench_packet(
        c,
        "publish_1KiB_qos1_v3.1.1",
        publish_1k(),
        Protocol::V3_1_1,
        100,
    );
    bench_packet(c, "connect_v5_props_will", connect_v5(), Protocol::V5, 100);
}

criterion_group!(benches, codec);
criterion_main!(benches);
