//! Connections: CONNECT validation, CONNACK (session present, 5.0
//! properties), keep alive and Server Keep Alive, the CONNECT timeout, and
//! DISCONNECT in both directions. rumqttc where it can say it; raw bytes for
//! malformed CONNECTs, silence and exact reason codes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

mod common;
mod lifecycle;

use common::raw::Raw;
use common::*;
use herald_codec::{Packet, Properties, Protocol, ReasonCode};
use lifecycle::*;
use rumqttc::v5::mqttbytes::v5::ConnectReturnCode as V5Code;
use rumqttc::v5::{ConnectionError as V5Error, StateError as V5StateError};
use rumqttc::{ConnectReturnCode as V4Code, ConnectionError as V4Error};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

/// Everything the broker sends until it closes the socket.
async fn read_to_close(raw: &mut Raw) -> Vec<u8> {
    let mut out = raw.buf.split().to_vec();
    tokio::time::timeout(WAIT, raw.stream.read_to_end(&mut out))
        .await
        .expect("the broker closes within the wait")
        .expect("read");
    out
}

/// A hand-written 3.1.1-layout CONNECT with any protocol name, level and
/// flags, client id "x", keep alive 60.
fn connect_bytes(name: &[u8], level: u8, flags: u8) -> Vec<u8> {
    let mut body = vec![0, name.len() as u8];
    body.extend_from_slice(name);
    body.extend_from_slice(&[level, flags, 0, 60]);
    if level == 5 {
        body.push(0); // property length
    }
    body.extend_from_slice(&[0, 1, b'x']);
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}

/// The error a 3.1.1 connection attempt ends with.
async fn v4_refusal(options: v4::MqttOptions) -> V4Error {
    let (_client, mut eventloop) = v4::AsyncClient::new(options, 10);
    v4_until_closed(&mut eventloop).await
}

/// The error a 5.0 connection attempt ends with.
async fn v5_refusal(options: v5::MqttOptions) -> V5Error {
    let (_client, mut eventloop) = v5::AsyncClient::new(options, 10);
    v5_until_closed(&mut eventloop).await
}

// ---------------------------------------------------------------- CONNECT

#[tokio::test]
async fn unsupported_protocol_level_gets_connack_0x01_and_close() {
    let server = start().await;
    for level in [6, 2, 0x84] {
        let mut raw = raw_open(&server, Protocol::V3_1_1).await;
        raw.send_bytes(&connect_bytes(b"MQTT", level, 0x02)).await;
        // 3.1.1 §3.1.2.2: CONNACK return code 0x01 (the 5.0 reason 0x84
        // Unsupported Protocol Version), then close.
        assert_eq!(
            read_to_close(&mut raw).await,
            [0x20, 0x02, 0x00, 0x01],
            "level {level}"
        );
    }
}

#[tokio::test]
async fn unknown_protocol_name_gets_connack_0x01_and_close() {
    let server = start().await;
    for (name, level) in [(&b"MQTX"[..], 4), (b"MQIsdp", 4), (b"HTTP", 4)] {
        let mut raw = raw_open(&server, Protocol::V3_1_1).await;
        raw.send_bytes(&connect_bytes(name, level, 0x02)).await;
        assert_eq!(read_to_close(&mut raw).await, [0x20, 0x02, 0x00, 0x01]);
    }
    // The same layout with the right name is accepted: the bytes above were
    // refused for the name alone.
    let mut raw = raw_open(&server, Protocol::V3_1_1).await;
    raw.send_bytes(&connect_bytes(b"MQTT", 4, 0x02)).await;
    match raw.recv().await {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.code, ReasonCode::SUCCESS),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn reserved_connect_flag_closes_without_connack() {
    let server = start().await;
    for level in [4, 5] {
        let mut raw = raw_open(&server, Protocol::V3_1_1).await;
        raw.send_bytes(&connect_bytes(b"MQTT", level, 0x03)).await;
        assert_eq!(read_to_close(&mut raw).await, b"", "level {level}");
    }
    assert_eq!(
        herald_broker::metrics::Metrics::get(&server.broker.metrics.protocol_errors),
        2
    );
}

#[tokio::test]
async fn v311_zero_length_client_id_with_clean_session_is_accepted() {
    let server = start().await;
    let (client, mut eventloop, ack) = v4_open(v4::options(&server, "")).await;
    assert_eq!(ack.code, V4Code::Success);
    assert!(!ack.session_present);
    // It works like any client, under an id the broker made up.
    v4_subscribe(&client, &mut eventloop, "zero/id", v4::QoS::AtMostOnce).await;
    let ids: Vec<String> = server
        .broker
        .sessions()
        .keys()
        .map(|k| k.to_string())
        .collect();
    assert!(
        matches!(ids.as_slice(), [id] if !id.is_empty()),
        "sessions {ids:?}"
    );
}

#[tokio::test]
async fn v311_zero_length_client_id_without_clean_session_is_refused_0x02() {
    let server = start().await;
    let mut raw = raw_open(&server, Protocol::V3_1_1).await;
    raw.send(&Packet::Connect(Box::new(connect_packet(
        Protocol::V3_1_1,
        "",
        false,
        60,
    ))))
    .await;
    // 3.1.1 §3.1.3.1: return code 0x02 Identifier rejected, then close.
    assert_eq!(read_to_close(&mut raw).await, [0x20, 0x02, 0x00, 0x02]);
    assert!(server.broker.sessions().is_empty());
}

#[tokio::test]
async fn v31_zero_length_client_id_is_refused_0x02() {
    let server = start().await;
    let (mut raw, ack) = raw_connect(&server, connect_packet(Protocol::V3_1, "", true, 60)).await;
    assert_eq!(ack.code, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    assert_closed_silently(&mut raw).await;
}

#[tokio::test]
async fn v5_zero_length_client_id_gets_an_assigned_client_identifier() {
    let server = start().await;
    let mut first = v5::options(&server, "");
    first.set_clean_start(false);
    first.set_session_expiry_interval(Some(60));
    let (_c1, _l1, ack1) = v5_open(first).await;
    let (_c2, _l2, ack2) = v5_open(v5::options(&server, "")).await;
    assert_eq!(ack1.code, V5Code::Success);
    assert!(!ack1.session_present);
    let id1 = ack1
        .properties
        .and_then(|p| p.assigned_client_identifier)
        .expect("Assigned Client Identifier");
    let id2 = ack2
        .properties
        .and_then(|p| p.assigned_client_identifier)
        .expect("Assigned Client Identifier");
    assert!(!id1.is_empty());
    assert_ne!(id1, id2, "each client gets its own id");
    assert!(has_session(&server, &id1) && has_session(&server, &id2));
}

#[tokio::test]
async fn v5_connack_without_assigned_id_when_client_chose_one() {
    let server = start().await;
    let (_c, _l, ack) = v5_open(v5::options(&server, "chosen")).await;
    let props = ack.properties.expect("CONNACK properties");
    assert_eq!(props.assigned_client_identifier, None);
}

#[tokio::test]
async fn zero_length_client_id_refused_when_disabled() {
    let server = start_with(|c| c.mqtt.allow_zero_length_client_id = false).await;
    let e = v4_refusal(v4::options(&server, "")).await;
    assert!(
        matches!(e, V4Error::ConnectionRefused(V4Code::BadClientId)),
        "{e:?}"
    );
    let e = v5_refusal(v5::options(&server, "")).await;
    assert!(
        matches!(
            e,
            V5Error::ConnectionRefused(V5Code::ClientIdentifierNotValid)
        ),
        "{e:?}"
    );
    // A client id of its own is still fine.
    let (_c, _l, ack) = v4_open(v4::options(&server, "named")).await;
    assert_eq!(ack.code, V4Code::Success);
}

#[tokio::test]
async fn v5_authentication_method_is_refused_0x8c() {
    let server = start().await;
    let mut o = v5::options(&server, "auth");
    o.set_authentication_method(Some("SCRAM-SHA-256".into()));
    let e = v5_refusal(o).await;
    assert!(
        matches!(
            e,
            V5Error::ConnectionRefused(V5Code::BadAuthenticationMethod)
        ),
        "{e:?}"
    );
    assert!(!has_session(&server, "auth"));
}

#[tokio::test]
async fn anonymous_refused_when_not_allowed() {
    let server = start_with(|c| c.auth.allow_anonymous = Some(false)).await;
    // 3.1.1: return code 0x05 Not authorized.
    let e = v4_refusal(v4::options(&server, "anon4")).await;
    assert!(
        matches!(e, V4Error::ConnectionRefused(V4Code::NotAuthorized)),
        "{e:?}"
    );
    // 5.0: 0x87 Not authorized.
    let e = v5_refusal(v5::options(&server, "anon5")).await;
    assert!(
        matches!(e, V5Error::ConnectionRefused(V5Code::NotAuthorized)),
        "{e:?}"
    );
    assert!(server.broker.sessions().is_empty());
    // A user name that no source can check is no better than none.
    let mut o = v4::options(&server, "named4");
    o.set_credentials("alice", "secret");
    let e = v4_refusal(o).await;
    assert!(
        matches!(e, V4Error::ConnectionRefused(V4Code::NotAuthorized)),
        "{e:?}"
    );
    let mut o = v5::options(&server, "named5");
    o.set_credentials("bob", "");
    let e = v5_refusal(o).await;
    assert!(
        matches!(e, V5Error::ConnectionRefused(V5Code::NotAuthorized)),
        "{e:?}"
    );
    assert!(server.broker.sessions().is_empty());
}

// ---------------------------------------------------------------- CONNACK

#[tokio::test]
async fn v311_connack_session_present() {
    let server = start().await;
    let mut o = v4::options(&server, "present4");
    o.set_clean_session(false);
    let (c, mut l, ack) = v4_open(o.clone()).await;
    assert!(!ack.session_present, "nothing to resume on first connect");
    v4_disconnect(&c, &mut l).await;
    let (c, mut l, ack) = v4_open(o.clone()).await;
    assert!(ack.session_present, "clean session 0 resumes");
    v4_disconnect(&c, &mut l).await;
    o.set_clean_session(true);
    let (_c, _l, ack) = v4_open(o).await;
    assert!(!ack.session_present, "clean session 1 never resumes");
}

#[tokio::test]
async fn v5_connack_session_present() {
    let server = start().await;
    let mut o = v5::options(&server, "present5");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(60));
    let (c, mut l, ack) = v5_open(o.clone()).await;
    assert!(!ack.session_present);
    c.disconnect().await.unwrap();
    v5_until_closed(&mut l).await;
    let (c, mut l, ack) = v5_open(o.clone()).await;
    assert!(
        ack.session_present,
        "clean start 0 within the expiry resumes"
    );
    c.disconnect().await.unwrap();
    v5_until_closed(&mut l).await;
    o.set_clean_start(true);
    let (_c, _l, ack) = v5_open(o).await;
    assert!(!ack.session_present, "clean start 1 discards the session");
}

#[tokio::test]
async fn v5_connack_announces_configured_limits() {
    let server = start_with(|c| {
        c.mqtt.receive_maximum = 10;
        c.mqtt.max_packet_size = 4096;
        c.mqtt.topic_alias_maximum = 7;
        c.mqtt.max_qos = 1;
        c.mqtt.retain_available = false;
        c.mqtt.wildcard_subscription_available = false;
        c.mqtt.subscription_identifiers_available = false;
        c.mqtt.shared_subscription_available = false;
        c.mqtt.max_session_expiry = 100;
    })
    .await;
    let mut o = v5::options(&server, "limits");
    o.set_session_expiry_interval(Some(1000));
    let (_c, _l, ack) = v5_open(o).await;
    let p = ack.properties.expect("CONNACK properties");
    assert_eq!(p.receive_max, Some(10));
    assert_eq!(p.max_packet_size, Some(4096));
    assert_eq!(p.topic_alias_max, Some(7));
    assert_eq!(p.max_qos, Some(1));
    assert_eq!(p.retain_available, Some(0));
    assert_eq!(p.wildcard_subscription_available, Some(0));
    assert_eq!(p.subscription_identifiers_available, Some(0));
    assert_eq!(p.shared_subscription_available, Some(0));
    // The client asked for more than the maximum: told what it got.
    assert_eq!(p.session_expiry_interval, Some(100));
}

#[tokio::test]
async fn v5_connack_defaults_leave_out_what_is_fully_supported() {
    let server = start().await;
    let mut o = v5::options(&server, "defaults");
    o.set_session_expiry_interval(Some(60));
    let (_c, _l, ack) = v5_open(o).await;
    let p = ack.properties.expect("CONNACK properties");
    let mqtt = &server.broker.config.mqtt;
    assert_eq!(p.receive_max, Some(mqtt.receive_maximum));
    assert_eq!(p.max_packet_size, Some(mqtt.max_packet_size));
    assert_eq!(p.topic_alias_max, Some(mqtt.topic_alias_maximum));
    // Absent means QoS 2 / available (5.0 §3.2.2.3).
    assert_eq!(p.max_qos, None);
    assert_eq!(p.retain_available, None);
    assert_eq!(p.wildcard_subscription_available, None);
    assert_eq!(p.subscription_identifiers_available, None);
    assert_eq!(p.shared_subscription_available, None);
    assert_eq!(p.session_expiry_interval, None, "granted as asked");
    assert_eq!(p.server_keep_alive, None, "no cap configured");
}

// ------------------------------------------------------------- keep alive

#[tokio::test(start_paused = true)]
async fn v311_silent_client_closed_at_one_and_a_half_keep_alive() {
    let server = start().await;
    let mut raw = raw_session(&server, connect_packet(Protocol::V3_1_1, "ka4", true, 10)).await;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_millis(14_900)).await;
    assert_open_and_quiet(&raw);
    assert_closed_silently(&mut raw).await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(15) && waited < Duration::from_millis(15_100),
        "closed after {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn v5_silent_client_gets_disconnect_0x8d() {
    let server = start().await;
    let mut raw = raw_session(&server, connect_packet(Protocol::V5, "ka5", true, 4)).await;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_millis(5_900)).await;
    assert_open_and_quiet(&raw);
    assert_disconnected_with(&mut raw, ReasonCode::KEEP_ALIVE_TIMEOUT).await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(6) && waited < Duration::from_millis(6_100),
        "closed after {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn any_packet_restarts_the_keep_alive_timer() {
    let server = start().await;
    let mut raw = raw_session(&server, connect_packet(Protocol::V3_1_1, "ping", true, 10)).await;
    let t0 = Instant::now();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(14)).await;
        raw.send(&Packet::PingReq).await;
        assert!(matches!(raw.recv().await, Some(Packet::PingResp)));
    }
    // 42 s in, still connected; then silence closes it 15 s after the last
    // PINGREQ.
    tokio::time::sleep(Duration::from_millis(14_900)).await;
    assert_open_and_quiet(&raw);
    assert_closed_silently(&mut raw).await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(57) && waited < Duration::from_millis(57_100),
        "closed after {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn keep_alive_zero_means_no_timeout() {
    let server = start().await;
    let mut raw = raw_session(&server, connect_packet(Protocol::V3_1_1, "ka0", true, 0)).await;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_open_and_quiet(&raw);
    raw.send(&Packet::PingReq).await;
    assert!(matches!(raw.recv().await, Some(Packet::PingResp)));
}

#[tokio::test(start_paused = true)]
async fn v5_server_keep_alive_caps_and_is_enforced() {
    let server = start_with(|c| c.mqtt.max_keepalive = 20).await;
    // Asking for more than the cap, or for none, gets the cap.
    for asked in [60, 0] {
        let id = format!("cap{asked}");
        let (mut raw, ack) =
            raw_connect(&server, connect_packet(Protocol::V5, &id, true, asked)).await;
        assert_eq!(ack.properties.server_keep_alive, Some(20), "asked {asked}");
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_millis(29_900)).await;
        assert_open_and_quiet(&raw);
        assert_disconnected_with(&mut raw, ReasonCode::KEEP_ALIVE_TIMEOUT).await;
        let waited = t0.elapsed();
        assert!(
            waited < Duration::from_millis(30_100),
            "closed after {waited:?}"
        );
    }
    // Within the cap: kept, and no Server Keep Alive property.
    let (_raw, ack) = raw_connect(&server, connect_packet(Protocol::V5, "under", true, 15)).await;
    assert_eq!(ack.properties.server_keep_alive, None);
    // rumqttc sees the same property.
    let mut o = v5::options(&server, "rumqttc-cap");
    o.set_keep_alive(Duration::from_secs(120));
    let (_c, _l, ack) = v5_open(o).await;
    assert_eq!(ack.properties.and_then(|p| p.server_keep_alive), Some(20));
}

// -------------------------------------------------------- CONNECT timeout

#[tokio::test(start_paused = true)]
async fn connection_without_connect_closed_after_connect_timeout() {
    let server = start_with(|c| c.listener.connect_timeout = 5).await;
    let mut silent = raw_open(&server, Protocol::V3_1_1).await;
    // Half a CONNECT is no better than none.
    let mut partial = raw_open(&server, Protocol::V3_1_1).await;
    partial
        .send_bytes(&connect_bytes(b"MQTT", 4, 0x02)[..6])
        .await;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_millis(4_900)).await;
    assert_open_and_quiet(&silent);
    assert_open_and_quiet(&partial);
    assert_closed_silently(&mut silent).await;
    assert_closed_silently(&mut partial).await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_millis(5_100),
        "closed after {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn connect_timeout_does_not_apply_after_connack() {
    let server = start_with(|c| c.listener.connect_timeout = 5).await;
    let mut raw = raw_session(&server, connect_packet(Protocol::V3_1_1, "late", true, 60)).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_open_and_quiet(&raw);
    raw.send(&Packet::PingReq).await;
    assert!(matches!(raw.recv().await, Some(Packet::PingResp)));
}

// ------------------------------------------------------------- DISCONNECT

#[tokio::test]
async fn client_disconnect_closes_the_connection() {
    let server = start().await;
    let (c4, mut l4, _) = v4_open(v4::options(&server, "bye4")).await;
    let (c5, mut l5, _) = v5_open(v5::options(&server, "bye5")).await;
    assert_eq!(
        herald_broker::metrics::Metrics::get(&server.broker.metrics.connected),
        2
    );
    v4_disconnect(&c4, &mut l4).await;
    c5.disconnect().await.unwrap();
    let e = v5_until_closed(&mut l5).await;
    // The broker closes the socket; it sends no DISCONNECT of its own.
    assert!(
        !matches!(e, V5Error::MqttState(V5StateError::ServerDisconnect { .. })),
        "{e:?}"
    );
    until("both sessions ended", || {
        !has_session(&server, "bye4") && !has_session(&server, "bye5")
    })
    .await;
    assert_eq!(
        herald_broker::metrics::Metrics::get(&server.broker.metrics.connected),
        0
    );
}

#[tokio::test]
async fn v5_normal_disconnect_is_answered_by_close_alone() {
    let server = start().await;
    let mut raw = raw_session(&server, connect_packet(Protocol::V5, "raw-bye", true, 60)).await;
    raw.send(&disconnect_packet(ReasonCode::SUCCESS)).await;
    assert_closed_silently(&mut raw).await;
}

#[tokio::test]
async fn v5_second_connect_is_a_protocol_error_0x82() {
    let server = start().await;
    let mut raw = raw_session(&server, connect_packet(Protocol::V5, "twice5", true, 60)).await;
    raw.send(&Packet::Connect(Box::new(connect_packet(
        Protocol::V5,
        "twice5",
        true,
        60,
    ))))
    .await;
    assert_disconnected_with(&mut raw, ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn v311_second_connect_closes_silently() {
    let server = start().await;
    let mut raw = raw_session(
        &server,
        connect_packet(Protocol::V3_1_1, "twice4", true, 60),
    )
    .await;
    raw.send(&Packet::Connect(Box::new(connect_packet(
        Protocol::V3_1_1,
        "twice4",
        true,
        60,
    ))))
    .await;
    assert_closed_silently(&mut raw).await;
}

#[tokio::test]
async fn v5_disconnect_setting_expiry_after_zero_is_a_protocol_error() {
    let server = start().await;
    let mut raw = raw_session(&server, connect_packet(Protocol::V5, "expiry0", true, 60)).await;
    let props = Properties {
        session_expiry_interval: Some(30),
        ..Properties::default()
    };
    raw.send(&Packet::Disconnect(herald_codec::Disconnect {
        reason: ReasonCode::SUCCESS,
        properties: props,
    }))
    .await;
    // 5.0 §3.14.2.2.2: a Protocol Error; the server answers DISCONNECT 0x82.
    assert_disconnected_with(&mut raw, ReasonCode::PROTOCOL_ERROR).await;
    until("the session ended", || !has_session(&server, "expiry0")).await;
}

#[tokio::test]
async fn v5_client_packet_only_a_server_sends_is_a_protocol_error() {
    let server = start().await;
    let mut raw = raw_session(&server, connect_packet(Protocol::V5, "connack", true, 60)).await;
    raw.send(&Packet::ConnAck(Default::default())).await;
    assert_disconnected_with(&mut raw, ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn v5_server_shutdown_sends_disconnect_0x8b() {
    let server = start().await;
    // Raw: rumqttc 0.25 cannot read a DISCONNECT without a property length,
    // which 5.0 §3.14.2.2.1 allows.
    let mut raw5 = raw_session(&server, connect_packet(Protocol::V5, "down5", true, 60)).await;
    let mut raw4 = raw_session(&server, connect_packet(Protocol::V3_1_1, "down4", true, 60)).await;
    let down = tokio::spawn(server.shutdown());
    assert_disconnected_with(&mut raw5, ReasonCode::SERVER_SHUTTING_DOWN).await;
    assert_closed_silently(&mut raw4).await;
    down.await.unwrap();
}
