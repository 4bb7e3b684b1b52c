//! Bad input: malformed packets, oversized packets, garbage and floods. The
//! offending connection is closed (5.0: with the right DISCONNECT reason;
//! 3.x: silently), another client keeps working, nothing panics, and what a
//! flooding client can make the broker hold stays bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

mod common;
mod lifecycle;

use common::*;
use herald_broker::Server;
use herald_broker::metrics::Metrics;
use herald_codec::{Packet, Protocol, ReasonCode};
use lifecycle::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn protocol_errors(server: &Server) -> u64 {
    Metrics::get(&server.broker.metrics.protocol_errors)
}

/// Malformed packets after CONNECT, valid in neither 3.1.1 nor 5.0.
const MALFORMED_ANY_LEVEL: &[(&str, &[u8])] = &[
    ("reserved packet type 0", &[0x00, 0x00]),
    ("PUBLISH with QoS 3", &[0x36, 0x06, 0, 1, b'a', 0, 1, 0]),
    (
        "SUBSCRIBE with flags 0",
        &[0x80, 0x07, 0, 1, 0, 0, 1, b'a', 0],
    ),
    (
        "remaining length over 4 bytes",
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
    ),
    ("length field past the end", &[0x30, 0x03, 0, 10, b'a']),
    ("topic not UTF-8", &[0x30, 0x05, 0, 2, 0xC3, 0x28, 0]),
    (
        "wildcard in a topic name",
        &[0x30, 0x06, 0, 3, b'a', b'/', b'+', 0],
    ),
    ("QoS 1 with packet id 0", &[0x32, 0x06, 0, 1, b'a', 0, 0, 0]),
    ("SUBSCRIBE without filters", &[0x82, 0x03, 0, 1, 0]),
    ("CONNACK from a client", &[0x20, 0x03, 0, 0, 0]),
];

#[tokio::test]
async fn v311_malformed_packets_close_silently() {
    watch_panics();
    let server = start().await;
    for (i, (what, bytes)) in MALFORMED_ANY_LEVEL.iter().enumerate() {
        let mut raw = connected(&server, Protocol::V3_1_1, &format!("bad{i}")).await;
        raw.send_bytes(bytes).await;
        let next = raw.recv().await;
        assert!(
            next.is_none(),
            "{what}: expected a silent close, got {next:?}"
        );
    }
    // AUTH does not exist in 3.1.1.
    let mut raw = connected(&server, Protocol::V3_1_1, "auth").await;
    raw.send_bytes(&[0xF0, 0x00]).await;
    assert_closed_silently(&mut raw).await;

    until("every close counted", || {
        protocol_errors(&server) == MALFORMED_ANY_LEVEL.len() as u64 + 1
    })
    .await;
    assert_bystander_round_trip(&server, "bystander").await;
    assert_no_panics();
}

#[tokio::test]
async fn v5_malformed_packets_get_the_right_reason_code() {
    watch_panics();
    let server = start().await;
    let mut cases: Vec<(&str, Vec<u8>, ReasonCode)> = vec![
        (
            "topic alias 0",
            vec![0x30, 0x07, 0, 1, b'a', 3, 0x23, 0, 0],
            ReasonCode::TOPIC_ALIAS_INVALID,
        ),
        (
            "topic alias above the maximum",
            vec![0x30, 0x07, 0, 1, b'a', 3, 0x23, 0, 33],
            ReasonCode::TOPIC_ALIAS_INVALID,
        ),
        (
            "unknown topic alias with an empty topic",
            vec![0x30, 0x06, 0, 0, 3, 0x23, 0, 5],
            ReasonCode::PROTOCOL_ERROR,
        ),
        (
            "unknown property",
            vec![0x30, 0x06, 0, 1, b'a', 2, 0x7F, 0],
            ReasonCode::MALFORMED_PACKET,
        ),
        (
            "property length past the end",
            vec![0x30, 0x04, 0, 1, b'a', 5],
            ReasonCode::MALFORMED_PACKET,
        ),
        (
            "property given twice",
            vec![0x30, 0x08, 0, 1, b'a', 4, 0x01, 0, 0x01, 0],
            ReasonCode::PROTOCOL_ERROR,
        ),
        (
            "subscription identifier from a client",
            vec![0x30, 0x06, 0, 1, b'a', 2, 0x0B, 1],
            ReasonCode::PROTOCOL_ERROR,
        ),
        (
            "DISCONNECT with an undefined reason code",
            vec![0xE0, 0x02, 0x03, 0],
            ReasonCode::MALFORMED_PACKET,
        ),
    ];
    for (what, bytes) in MALFORMED_ANY_LEVEL {
        let code = match *what {
            "wildcard in a topic name" => ReasonCode::TOPIC_NAME_INVALID,
            "QoS 1 with packet id 0" | "SUBSCRIBE without filters" | "CONNACK from a client" => {
                ReasonCode::PROTOCOL_ERROR
            }
            _ => ReasonCode::MALFORMED_PACKET,
        };
        cases.push((what, bytes.to_vec(), code));
    }
    for (i, (what, bytes, code)) in cases.iter().enumerate() {
        let mut raw = connected(&server, Protocol::V5, &format!("bad{i}")).await;
        raw.send_bytes(bytes).await;
        match raw.recv().await {
            Some(Packet::Disconnect(d)) => assert_eq!(d.reason, *code, "{what}"),
            other => panic!("{what}: expected DISCONNECT {code}, got {other:?}"),
        }
        let next = raw.recv().await;
        assert!(next.is_none(), "{what}: still open after DISCONNECT");
    }
    until("every close counted", || {
        protocol_errors(&server) == cases.len() as u64
    })
    .await;
    assert_bystander_round_trip(&server, "bystander").await;
    assert_no_panics();
}

#[tokio::test]
async fn oversized_packet_refused_from_its_header() {
    watch_panics();
    let server = start_with(|c| c.mqtt.max_packet_size = 1024).await;
    // Only the fixed header, announcing 128 MiB: refused without waiting
    // for (or buffering) the content.
    let header = [0x30, 0x80, 0x80, 0x80, 0x40];
    let mut raw5 = connected(&server, Protocol::V5, "huge5").await;
    raw5.send_bytes(&header).await;
    assert_disconnected_with(&mut raw5, ReasonCode::PACKET_TOO_LARGE).await;
    let mut raw4 = connected(&server, Protocol::V3_1_1, "huge4").await;
    raw4.send_bytes(&header).await;
    assert_closed_silently(&mut raw4).await;

    // A whole packet one byte over the limit: 3 + 1022 = 1025 bytes.
    let mut big = vec![0x30, 0xFE, 0x07, 0, 1, b'a', 0];
    big.resize(1025, b'x');
    let mut raw5 = connected(&server, Protocol::V5, "big5").await;
    raw5.send_bytes(&big).await;
    assert_disconnected_with(&mut raw5, ReasonCode::PACKET_TOO_LARGE).await;
    // At the limit it is fine.
    let mut fits = vec![0x30, 0xFD, 0x07, 0, 1, b'a', 0];
    fits.resize(1024, b'x');
    let mut raw5 = connected(&server, Protocol::V5, "fits5").await;
    raw5.send_bytes(&fits).await;
    raw5.send(&Packet::PingReq).await;
    assert!(matches!(raw5.recv().await, Some(Packet::PingResp)));

    // An oversized CONNECT is never accepted.
    let mut raw = raw_open(&server, Protocol::V5).await;
    raw.send_bytes(&[0x10, 0x80, 0x80, 0x01]).await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, raw.stream.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "expected a close, got {read:?} {rest:?}"
    );

    assert_bystander_round_trip(&server, "bystander").await;
    assert_no_panics();
}

#[tokio::test]
async fn garbage_instead_of_connect_is_closed() {
    watch_panics();
    let server = start().await;
    // A TLS ClientHello's first bytes: 0x16 is CONNECT with flags 6.
    let mut tls = raw_open(&server, Protocol::V3_1_1).await;
    tls.send_bytes(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await;
    assert_closed_silently(&mut tls).await;
    // A PINGREQ before CONNECT.
    let mut ping = raw_open(&server, Protocol::V3_1_1).await;
    ping.send(&Packet::PingReq).await;
    assert_closed_silently(&mut ping).await;
    assert_bystander_round_trip(&server, "bystander").await;
    assert_no_panics();
}

#[tokio::test(start_paused = true)]
async fn http_request_is_closed_by_the_connect_timeout_at_the_latest() {
    watch_panics();
    let server = start_with(|c| c.listener.connect_timeout = 5).await;
    // "GET" reads as a PUBACK announcing 69 bytes; 27 arrive, then nothing.
    let mut http = raw_open(&server, Protocol::V3_1_1).await;
    http.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_closed_silently(&mut http).await;
    assert_no_panics();
}

#[tokio::test]
async fn megabytes_of_garbage_close_the_connection() {
    watch_panics();
    let server = start().await;
    let raw = connected(&server, Protocol::V5, "garbage").await;
    let mut got = raw.buf.to_vec();
    let (mut rd, mut wr) = raw.stream.into_split();
    // 16 MiB of 0xFF (AUTH with reserved flags set), written while the
    // broker reads; the writer stops at the first error.
    let writer = tokio::spawn(async move {
        let chunk = vec![0xFFu8; 64 * 1024];
        let mut written = 0usize;
        for _ in 0..256 {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
            written += chunk.len();
        }
        written
    });
    let _ = tokio::time::timeout(WAIT, rd.read_to_end(&mut got))
        .await
        .expect("the broker closes the connection");
    let written = writer.await.unwrap();
    // The broker answered the first bad byte: DISCONNECT 0x81.
    assert_eq!(
        got,
        [0xE0, 0x02, 0x81, 0x00],
        "after {written} bytes written"
    );
    assert!(
        written < 16 * 1024 * 1024,
        "the broker kept reading garbage"
    );
    assert_eq!(protocol_errors(&server), 1);
    assert_bystander_round_trip(&server, "bystander").await;
    assert_no_panics();
}

#[tokio::test(start_paused = true)]
async fn client_publishing_faster_than_it_reads_is_throttled() {
    watch_panics();
    let server = start_with(|c| c.mqtt.max_queued_messages = 100).await;
    // The flooder subscribes to what it publishes, so every message it sends
    // comes back to it; it never reads, so its deliveries pile up.
    let mut raw = raw_session(
        &server,
        connect_packet(Protocol::V3_1_1, "flooder", true, 0),
    )
    .await;
    raw.send(&subscribe_packet(1, "flood/#")).await;
    assert!(matches!(raw.recv().await, Some(Packet::SubAck(_))));
    let (mut rd, mut wr) = raw.stream.into_split();

    // QoS 0 PUBLISHes of 1 KiB to flood/x.
    let mut one = vec![0x30, 0x89, 0x08, 0, 7];
    one.extend_from_slice(b"flood/x");
    one.resize(3 + 0x409, b'f');
    let chunk: Vec<u8> = one.repeat(16);
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0usize);
    // Stops by itself after 64 MiB: more than the kernel buffers hold, so
    // getting there means the broker never pushed back.
    let writer = tokio::spawn(async move {
        let mut written = 0;
        while written < 64 * 1024 * 1024 && wr.write_all(&chunk).await.is_ok() {
            written += chunk.len();
            if progress_tx.send(written).is_err() {
                break;
            }
        }
    });

    // Stuck: three rounds in a row in which the runtime went idle (paused
    // time advanced a second) without the writer getting anywhere.
    let mut still = 0;
    while still < 3 {
        match tokio::time::timeout(Duration::from_secs(1), progress.changed()).await {
            Ok(changed) => {
                changed.expect("the writer runs");
                still = 0;
            }
            Err(_) => still += 1,
        }
    }
    let written = *progress.borrow_and_update();
    let received = Metrics::get(&server.broker.metrics.bytes_received);
    assert!(written < 64 * 1024 * 1024, "the broker kept reading");
    assert!(
        received < written as u64,
        "the broker read all {written} bytes: no backpressure"
    );

    // Other clients are served meanwhile, and what they publish to the
    // stuck client waits in its queue up to the limit, the rest counted.
    assert_bystander_round_trip(&server, "bystander").await;
    let mut publisher = connected(&server, Protocol::V3_1_1, "publisher").await;
    let mut burst = Vec::new();
    for _ in 0..300 {
        burst.extend_from_slice(&[0x30, 0x0D, 0, 7]);
        burst.extend_from_slice(b"flood/x");
        burst.extend_from_slice(b"400B");
    }
    publisher.send_bytes(&burst).await;
    publisher.send(&Packet::PingReq).await;
    assert!(matches!(publisher.recv().await, Some(Packet::PingResp)));
    let queued = server.broker.sessions()["flooder"].lock().queue.len();
    assert_eq!(queued, 100, "the stuck client's queue is full, not more");
    assert!(Metrics::get(&server.broker.metrics.dropped_queue_full) >= 200);

    // Once it reads, the flood moves again: the connection is intact.
    let drain = tokio::spawn(async move {
        let mut sink = vec![0u8; 1 << 16];
        while rd.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    });
    for _ in 0..3 {
        tokio::time::timeout(WAIT, progress.changed())
            .await
            .expect("the writer moves again")
            .expect("the writer runs");
    }
    drop(progress);
    writer.await.unwrap();
    drain.abort();
    assert_no_panics();
}
