//! WebHook body encoding: the JSON the hook handler writes on the
//! connection's task for each matching event, in both profiles and with
//! each payload encoding; and the `base64` payload encoding alone.
//!
//! Run: `cargo bench -p herald-webhook --bench body`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: fixed inputs, a panic is a broken bench

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use herald_broker::hooks::{ClientInfo, Event};
use herald_broker::message::Message;
use herald_broker::transport::ListenerKind;
use herald_codec::{ByteStr, Properties, Protocol, QoS, ReasonCode};
use herald_webhook::{BodyBuilder, PayloadEncoding, Profile};
use std::hint::black_box;

fn bodies(c: &mut Criterion) {
    let client = ClientInfo {
        client_id: ByteStr::from("device-00042"),
        username: Some(ByteStr::from("fleet")),
        peer: "10.1.2.3:50000".parse().expect("address"),
        protocol: Protocol::V5,
        keepalive: 60,
        clean_start: true,
        connected_at_ms: 1_700_000_000_000,
        listener: ListenerKind::Tcp,
        cert: None,
    };
    let message = Message::new(
        ByteStr::from("site/512/dev/42/temp"),
        Bytes::from(vec![b'7'; 64]),
        QoS::AtLeastOnce,
        false,
        Properties::default(),
        ByteStr::from("device-00042"),
        Some(ByteStr::from("fleet")),
    );
    // What herald-bench publishes: a binary header (sequence number,
    // timestamp) and zero padding, mostly control characters to escape.
    let mut binary = vec![0u8; 64];
    binary[..16].copy_from_slice(&0x0001_02ff_1234_5678_9abc_def0_0000_002au128.to_be_bytes());
    let binary = Message::new(
        ByteStr::from("herald-bench/1/in"),
        Bytes::from(binary),
        QoS::AtLeastOnce,
        false,
        Properties::default(),
        ByteStr::from("hb-1-p7"),
        None,
    );
    let mut group = c.benchmark_group("webhook_body");
    group.throughput(Throughput::Elements(1));
    for (name, profile, encoding, message) in [
        (
            "publish_v4.0_plain",
            Profile::V4_0,
            PayloadEncoding::Plain,
            &message,
        ),
        (
            "publish_v4.0_plain_binary",
            Profile::V4_0,
            PayloadEncoding::Plain,
            &binary,
        ),
        (
            "publish_v4.4_base64",
            Profile::V4_4,
            PayloadEncoding::Base64,
            &message,
        ),
        (
            "publish_v4.0_base62",
            Profile::V4_0,
            PayloadEncoding::Base62,
            &message,
        ),
    ] {
        let builder = BodyBuilder::new(profile, encoding, "herald@127.0.0.1");
        let event = Event::MessagePublish { message };
        group.bench_function(name, |b| {
            let mut out = Vec::with_capacity(512);
            b.iter(|| {
                out.clear();
                builder.write(black_box(&event), 1_700_000_000_000, &mut out);
                black_box(out.len())
            })
        });
    }
    let builder = BodyBuilder::new(Profile::V4_0, PayloadEncoding::Plain, "herald@127.0.0.1");
    let connack = Event::ClientConnack {
        client: &client,
        reason: ReasonCode::SUCCESS,
    };
    group.bench_function("client_connack_v4.0", |b| {
        let mut out = Vec::with_capacity(512);
        b.iter(|| {
            out.clear();
            builder.write(black_box(&connack), 1_700_000_000_000, &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

/// The `base64` payload encoding alone, at a body's usual payload size and
/// at 4 KiB, where the encoder's own speed shows.
fn base64_payload(c: &mut Criterion) {
    let mut group = c.benchmark_group("payload_base64");
    for size in [64usize, 4096] {
        let payload: Vec<u8> = (0..size).map(|i| (i * 131 % 251) as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("encode_{size}B"), |b| {
            let mut out = Vec::with_capacity(2 * size + 2);
            b.iter(|| {
                out.clear();
                PayloadEncoding::Base64.write_json(black_box(&payload), &mut out);
                black_box(out.len())
            })
        });
        let mut text = Vec::new();
        PayloadEncoding::Base64.write_json(&payload, &mut text);
        let text = String::from_utf8(text).expect("base64 is ASCII");
        let text = text.trim_matches('"').to_owned();
        group.bench_function(format!("decode_{size}B"), |b| {
            b.iter(|| {
                PayloadEncoding::Base64
                    .decode(black_box(&text))
                    .map(|v| v.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bodies, base64_payload);
criterion_main!(benches);
