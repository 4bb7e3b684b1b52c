//! Sessions: clean session (3.1.1), clean start and session expiry (5.0),
//! takeover, the offline queue and its limits, and will messages (on
//! abnormal disconnect only, Will Delay Interval). Timers run on paused time.
//!
//! "Not delivered" is shown with a marker: the same publisher publishes the
//! marker after the message that must not arrive, so the marker arriving
//! first proves the message was never queued.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

mod common;
mod lifecycle;

use common::*;
use herald_broker::metrics::Metrics;
use herald_codec::{Packet, Properties, Protocol, ReasonCode};
use lifecycle::*;
use rumqttc::v5::mqttbytes::v5::{LastWill as V5Will, LastWillProperties};
use std::time::Duration;
use tokio::time::Instant;

/// A 3.1.1 client without keep alive (so paused time never times it out).
async fn v4_idle(server: &herald_broker::Server, id: &str, clean: bool) -> V4Conn {
    let mut o = v4::options(server, id);
    o.set_keep_alive(Duration::ZERO);
    o.set_clean_session(clean);
    let (client, eventloop, ack) = v4_open(o).await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    V4Conn {
        client,
        eventloop,
        present: ack.session_present,
    }
}

struct V4Conn {
    client: v4::AsyncClient,
    eventloop: v4::EventLoop,
    present: bool,
}

/// 5.0 options: long keep alive, clean start as given, a session expiry.
fn v5_opts(
    server: &herald_broker::Server,
    id: &str,
    clean: bool,
    expiry: Option<u32>,
) -> v5::MqttOptions {
    let mut o = v5::options(server, id);
    o.set_keep_alive(Duration::from_secs(3600));
    o.set_clean_start(clean);
    o.set_session_expiry_interval(expiry);
    o
}

/// Publishes `payload` on `topic` (QoS 1, acknowledged) from a short-lived
/// 3.1.1 client.
async fn publish_once(server: &herald_broker::Server, topic: &str, payload: &str) {
    let mut p = v4_idle(server, "publisher", true).await;
    v4_publish_acked(&p.client, &mut p.eventloop, topic, payload).await;
    v4_disconnect(&p.client, &mut p.eventloop).await;
}

/// A watcher subscribed (QoS 1) to `filter`.
async fn watcher(server: &herald_broker::Server, id: &str, filter: &str) -> V4Conn {
    let mut w = v4_idle(server, id, true).await;
    v4_subscribe(&w.client, &mut w.eventloop, filter, v4::QoS::AtLeastOnce).await;
    w
}

/// Payload of the next message `conn` receives.
async fn next_payload(conn: &mut V4Conn) -> String {
    let msg = v4::next_publish(&mut conn.eventloop).await;
    String::from_utf8_lossy(&msg.payload).into_owned()
}

// ------------------------------------------------------- clean session 3.1.1

#[tokio::test]
async fn v311_persistent_session_keeps_subscriptions_and_queues_qos1() {
    let server = start().await;
    let mut sub = v4_idle(&server, "keeper", false).await;
    v4_subscribe(
        &sub.client,
        &mut sub.eventloop,
        "persist/#",
        v4::QoS::AtLeastOnce,
    )
    .await;
    v4_disconnect(&sub.client, &mut sub.eventloop).await;
    until("the session is offline", || is_offline(&server, "keeper")).await;

    let mut p = v4_idle(&server, "pub", true).await;
    for i in 0..3 {
        v4_publish_acked(&p.client, &mut p.eventloop, "persist/x", &format!("m{i}")).await;
    }
    assert_eq!(
        server.broker.sessions()["keeper"].lock().queue.len(),
        3,
        "queued while offline"
    );

    // Back without subscribing again: the queued messages arrive, in order,
    // at QoS 1, and the subscription still routes new ones.
    let mut sub = v4_idle(&server, "keeper", false).await;
    assert!(sub.present);
    for i in 0..3 {
        let msg = v4::next_publish(&mut sub.eventloop).await;
        assert_eq!(&msg.payload[..], format!("m{i}").as_bytes());
        assert_eq!(msg.qos, v4::QoS::AtLeastOnce);
    }
    v4_publish_acked(&p.client, &mut p.eventloop, "persist/y", "live").await;
    assert_eq!(next_payload(&mut sub).await, "live");
}

#[tokio::test]
async fn v311_clean_session_discards_subscriptions() {
    let server = start().await;
    // A clean session ends with its connection.
    let mut sub = v4_idle(&server, "cleaner", true).await;
    v4_subscribe(
        &sub.client,
        &mut sub.eventloop,
        "clean/#",
        v4::QoS::AtLeastOnce,
    )
    .await;
    v4_disconnect(&sub.client, &mut sub.eventloop).await;
    until("the session ended", || !has_session(&server, "cleaner")).await;

    // A persistent session is discarded by a clean reconnect.
    let mut sub = v4_idle(&server, "cleaner", false).await;
    assert!(!sub.present);
    v4_subscribe(
        &sub.client,
        &mut sub.eventloop,
        "clean/#",
        v4::QoS::AtLeastOnce,
    )
    .await;
    v4_disconnect(&sub.client, &mut sub.eventloop).await;
    let mut sub = v4_idle(&server, "cleaner", true).await;
    assert!(!sub.present);
    v4_subscribe(
        &sub.client,
        &mut sub.eventloop,
        "marker",
        v4::QoS::AtLeastOnce,
    )
    .await;

    let mut p = v4_idle(&server, "pub", true).await;
    v4_publish_acked(&p.client, &mut p.eventloop, "clean/x", "old subscription").await;
    v4_publish_acked(&p.client, &mut p.eventloop, "marker", "marker").await;
    assert_eq!(next_payload(&mut sub).await, "marker");
    assert_eq!(
        Metrics::get(&server.broker.metrics.dropped_no_subscribers),
        1
    );
}

// ------------------------------------------------- clean start / expiry 5.0

#[tokio::test(start_paused = true)]
async fn v5_session_lives_for_its_expiry_interval() {
    let server = start().await;
    let opts = v5_opts(&server, "expiring", false, Some(60));
    let (c, mut l, ack) = v5_open(opts.clone()).await;
    assert!(!ack.session_present);
    v5_subscribe(&c, &mut l, "exp/#", v5::QoS::AtLeastOnce).await;
    c.disconnect().await.unwrap();
    v5_until_closed(&mut l).await;

    tokio::time::sleep(Duration::from_millis(59_900)).await;
    assert!(
        has_session(&server, "expiring"),
        "kept until the interval ends"
    );
    publish_once(&server, "exp/1", "while away").await;
    let (c, mut l, ack) = v5_open(opts.clone()).await;
    assert!(ack.session_present);
    let msg = v5::next_publish(&mut l).await;
    assert_eq!(&msg.payload[..], b"while away");
    c.disconnect().await.unwrap();
    loop {
        let e = l.poll().await;
        eprintln!("POLL {:?} {e:?}", tokio::time::Instant::now());
        if e.is_err() {
            break;
        }
    }

    // The interval restarts at each disconnect; 60 s later it is over.
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_millis(59_900)).await;
    assert!(has_session(&server, "expiring"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !has_session(&server, "expiring"),
        "gone {:?} after",
        t0.elapsed()
    );
    let (_c, _l, ack) = v5_open(opts).await;
    assert!(!ack.session_present);
}

#[tokio::test]
async fn v5_no_expiry_interval_ends_session_with_connection() {
    let server = start().await;
    let (c, mut l, _) = v5_open(v5_opts(&server, "brief", false, None)).await;
    v5_subscribe(&c, &mut l, "brief/#", v5::QoS::AtLeastOnce).await;
    c.disconnect().await.unwrap();
    v5_until_closed(&mut l).await;
    until("the session ended", || !has_session(&server, "brief")).await;
    let (_c, _l, ack) = v5_open(v5_opts(&server, "brief", false, Some(60))).await;
    assert!(!ack.session_present);
}

#[tokio::test]
async fn v5_clean_start_discards_a_live_session() {
    let server = start().await;
    let (c, mut l, _) = v5_open(v5_opts(&server, "restart", false, Some(600))).await;
    v5_subscribe(&c, &mut l, "restart/#", v5::QoS::AtLeastOnce).await;
    c.disconnect().await.unwrap();
    v5_until_closed(&mut l).await;
    until("the session is offline", || is_offline(&server, "restart")).await;
    publish_once(&server, "restart/1", "for the old session").await;

    let (c, mut l, ack) = v5_open(v5_opts(&server, "restart", true, Some(600))).await;
    assert!(!ack.session_present);
    v5_subscribe(&c, &mut l, "marker", v5::QoS::AtLeastOnce).await;
    publish_once(&server, "restart/2", "old subscription").await;
    publish_once(&server, "marker", "marker").await;
    let msg = v5::next_publish(&mut l).await;
    assert_eq!(
        &msg.payload[..],
        b"marker",
        "queue and subscriptions are gone"
    );
}

#[tokio::test]
async fn v5_disconnect_can_shorten_the_expiry_to_zero() {
    let server = start().await;
    let mut raw = raw_session(&server, {
        let mut c = connect_packet(Protocol::V5, "shorten", false, 60);
        c.properties.session_expiry_interval = Some(600);
        c
    })
    .await;
    let props = Properties {
        session_expiry_interval: Some(0),
        ..Properties::default()
    };
    raw.send(&Packet::Disconnect(herald_codec::Disconnect {
        reason: ReasonCode::SUCCESS,
        properties: props,
    }))
    .await;
    assert_closed_silently(&mut raw).await;
    until("the session ended", || !has_session(&server, "shorten")).await;
}

// ------------------------------------------------------------------ takeover

#[tokio::test]
async fn v5_takeover_sends_0x8e_and_resumes_the_session() {
    let server = start().await;
    // The old connection is raw: rumqttc 0.25 cannot read a DISCONNECT
    // without a property length.
    let mut old = raw_session(&server, {
        let mut c = connect_packet(Protocol::V5, "twin", false, 60);
        c.properties.session_expiry_interval = Some(600);
        c
    })
    .await;
    old.send(&subscribe_packet(1, "twin/#")).await;
    assert!(matches!(old.recv().await, Some(Packet::SubAck(_))));

    let (_c, mut l, ack) = v5_open(v5_opts(&server, "twin", false, Some(600))).await;
    assert!(
        ack.session_present,
        "the new connection resumes the session"
    );
    assert_disconnected_with(&mut old, ReasonCode::SESSION_TAKEN_OVER).await;

    publish_once(&server, "twin/1", "to the new connection").await;
    let msg = v5::next_publish(&mut l).await;
    assert_eq!(&msg.payload[..], b"to the new connection");
    assert_eq!(server.broker.sessions().len(), 1);
}

#[tokio::test]
async fn v311_takeover_closes_the_old_connection() {
    let server = start().await;
    let mut old = v4_idle(&server, "twin4", false).await;
    v4_subscribe(
        &old.client,
        &mut old.eventloop,
        "twin4/#",
        v4::QoS::AtLeastOnce,
    )
    .await;
    let mut new = v4_idle(&server, "twin4", false).await;
    assert!(new.present);
    // 3.x has no DISCONNECT from the server: the socket just closes.
    let e = v4_until_closed(&mut old.eventloop).await;
    assert!(
        matches!(
            e,
            rumqttc::ConnectionError::MqttState(_) | rumqttc::ConnectionError::Io(_)
        ),
        "{e:?}"
    );
    publish_once(&server, "twin4/1", "to the new connection").await;
    assert_eq!(next_payload(&mut new).await, "to the new connection");
}

#[tokio::test]
async fn takeover_with_clean_start_gets_a_fresh_session() {
    let server = start().await;
    let mut old = v4_idle(&server, "fresh", false).await;
    v4_subscribe(
        &old.client,
        &mut old.eventloop,
        "fresh/#",
        v4::QoS::AtLeastOnce,
    )
    .await;
    let mut new = v4_idle(&server, "fresh", true).await;
    assert!(!new.present);
    v4_until_closed(&mut old.eventloop).await;
    v4_subscribe(
        &new.client,
        &mut new.eventloop,
        "marker",
        v4::QoS::AtLeastOnce,
    )
    .await;
    publish_once(&server, "fresh/1", "old subscription").await;
    publish_once(&server, "marker", "marker").await;
    assert_eq!(next_payload(&mut new).await, "marker");
}

// ------------------------------------------------------------- offline queue

#[tokio::test]
async fn offline_queue_limit_drops_and_counts() {
    let server = start_with(|c| c.mqtt.max_queued_messages = 3).await;
    let mut sub = v4_idle(&server, "full", false).await;
    v4_subscribe(
        &sub.client,
        &mut sub.eventloop,
        "full/#",
        v4::QoS::AtLeastOnce,
    )
    .await;
    v4_disconnect(&sub.client, &mut sub.eventloop).await;
    until("the session is offline", || is_offline(&server, "full")).await;

    let mut p = v4_idle(&server, "pub", true).await;
    for i in 0..5 {
        v4_publish_acked(&p.client, &mut p.eventloop, "full/x", &format!("m{i}")).await;
    }
    assert_eq!(Metrics::get(&server.broker.metrics.dropped_queue_full), 2);

    let mut sub = v4_idle(&server, "full", false).await;
    assert!(sub.present);
    for i in 0..3 {
        assert_eq!(next_payload(&mut sub).await, format!("m{i}"));
    }
    // m3 and m4 were dropped: the next message is a new one.
    v4_publish_acked(&p.client, &mut p.eventloop, "full/x", "after").await;
    assert_eq!(next_payload(&mut sub).await, "after");
}

#[tokio::test]
async fn qos0_not_queued_offline_when_disabled() {
    let server = start_with(|c| c.mqtt.queue_qos0 = false).await;
    let mut sub = v4_idle(&server, "q0", false).await;
    v4_subscribe(
        &sub.client,
        &mut sub.eventloop,
        "q0/#",
        v4::QoS::AtLeastOnce,
    )
    .await;
    v4_disconnect(&sub.client, &mut sub.eventloop).await;
    until("the session is offline", || is_offline(&server, "q0")).await;

    let mut p = v4_idle(&server, "pub", true).await;
    p.client
        .publish("q0/x", v4::QoS::AtMostOnce, false, "qos0")
        .await
        .unwrap();
    v4_publish_acked(&p.client, &mut p.eventloop, "q0/x", "qos1").await;
    assert_eq!(Metrics::get(&server.broker.metrics.dropped_qos0_offline), 1);

    let mut sub = v4_idle(&server, "q0", false).await;
    assert!(sub.present);
    assert_eq!(next_payload(&mut sub).await, "qos1");
    // Online, QoS 0 is delivered as usual.
    p.client
        .publish("q0/x", v4::QoS::AtMostOnce, false, "online")
        .await
        .unwrap();
    v4_drive(p.eventloop);
    assert_eq!(next_payload(&mut sub).await, "online");
}

#[tokio::test]
async fn qos0_queued_offline_by_default() {
    let server = start().await;
    let mut sub = v4_idle(&server, "q0d", false).await;
    v4_subscribe(
        &sub.client,
        &mut sub.eventloop,
        "q0d/#",
        v4::QoS::AtLeastOnce,
    )
    .await;
    v4_disconnect(&sub.client, &mut sub.eventloop).await;
    until("the session is offline", || is_offline(&server, "q0d")).await;

    let mut p = v4_idle(&server, "pub", true).await;
    p.client
        .publish("q0d/x", v4::QoS::AtMostOnce, false, "qos0")
        .await
        .unwrap();
    v4_publish_acked(&p.client, &mut p.eventloop, "q0d/x", "qos1").await;

    let mut sub = v4_idle(&server, "q0d", false).await;
    let msg = v4::next_publish(&mut sub.eventloop).await;
    assert_eq!(&msg.payload[..], b"qos0");
    assert_eq!(msg.qos, v4::QoS::AtMostOnce);
    assert_eq!(next_payload(&mut sub).await, "qos1");
}

// --------------------------------------------------------------------- wills

#[tokio::test]
async fn will_published_when_the_socket_drops() {
    let server = start().await;
    let mut w = watcher(&server, "watcher", "will/#").await;
    let mut o = v4::options(&server, "dying");
    o.set_last_will(rumqttc::LastWill::new(
        "will/dying",
        "gone",
        v4::QoS::AtLeastOnce,
        false,
    ));
    let (client, eventloop, _) = v4_open(o).await;
    drop(eventloop); // closes the socket without DISCONNECT
    drop(client);
    let msg = v4::next_publish(&mut w.eventloop).await;
    assert_eq!(msg.topic, "will/dying");
    assert_eq!(&msg.payload[..], b"gone");
}

#[tokio::test]
async fn will_published_on_protocol_violation() {
    let server = start().await;
    let mut w = watcher(&server, "watcher", "will/#").await;
    let mut c = connect_packet(Protocol::V5, "violator", true, 60);
    c.will = Some(will("will/violator", "broke a rule"));
    let mut raw = raw_session(&server, c).await;
    raw.send_bytes(&[0x00, 0x00]).await; // reserved packet type 0
    assert_disconnected_with(&mut raw, ReasonCode::MALFORMED_PACKET).await;
    assert_eq!(next_payload(&mut w).await, "broke a rule");
}

#[tokio::test]
async fn will_not_published_on_normal_disconnect() {
    let server = start().await;
    let mut w = watcher(&server, "watcher", "will/#").await;

    let mut o = v4::options(&server, "polite4");
    o.set_last_will(rumqttc::LastWill::new(
        "will/polite4",
        "no",
        v4::QoS::AtLeastOnce,
        false,
    ));
    let (c, mut l, _) = v4_open(o).await;
    v4_disconnect(&c, &mut l).await;

    let mut o = v5::options(&server, "polite5");
    o.set_last_will(V5Will::new(
        "will/polite5",
        "no",
        v5::QoS::AtLeastOnce,
        false,
        None,
    ));
    let (c, mut l, _) = v5_open(o).await;
    c.disconnect().await.unwrap();
    v5_until_closed(&mut l).await;

    until("both sessions ended", || {
        !has_session(&server, "polite4") && !has_session(&server, "polite5")
    })
    .await;
    publish_once(&server, "will/marker", "marker").await;
    assert_eq!(next_payload(&mut w).await, "marker");
}

#[tokio::test]
async fn v5_disconnect_with_will_message_0x04_publishes_it() {
    let server = start().await;
    let mut w = watcher(&server, "watcher", "will/#").await;
    let mut c = connect_packet(Protocol::V5, "leaving", true, 60);
    c.will = Some(will("will/leaving", "as asked"));
    let mut raw = raw_session(&server, c).await;
    raw.send(&disconnect_packet(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE))
        .await;
    assert_closed_silently(&mut raw).await;
    let msg = v4::next_publish(&mut w.eventloop).await;
    assert_eq!(msg.topic, "will/leaving");
    assert_eq!(&msg.payload[..], b"as asked");
}

/// A 5.0 client with a will delayed by `delay` s and session expiry
/// `expiry` s; returns its options.
fn delayed_will_opts(
    server: &herald_broker::Server,
    id: &str,
    delay: u32,
    expiry: u32,
) -> v5::MqttOptions {
    let mut o = v5_opts(server, id, false, Some(expiry));
    o.set_last_will(V5Will::new(
        format!("will/{id}"),
        "late",
        v5::QoS::AtLeastOnce,
        false,
        Some(LastWillProperties {
            delay_interval: Some(delay),
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
        }),
    ));
    o
}

#[tokio::test(start_paused = true)]
async fn will_delay_interval_is_honoured() {
    let server = start().await;
    let mut w = watcher(&server, "watcher", "will/#").await;
    let (_c, l, _) = v5_open(delayed_will_opts(&server, "delayed", 10, 600)).await;
    drop(l);
    until("the session is offline", || is_offline(&server, "delayed")).await;
    let t0 = Instant::now();

    tokio::time::sleep(Duration::from_millis(9_900)).await;
    publish_once(&server, "will/marker", "marker").await;
    assert_eq!(
        next_payload(&mut w).await,
        "marker",
        "no will before the delay"
    );

    let msg = v4::next_publish(&mut w.eventloop).await;
    assert_eq!(msg.topic, "will/delayed");
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_millis(10_100),
        "will after {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn will_not_published_when_client_returns_within_the_delay() {
    let server = start().await;
    let mut w = watcher(&server, "watcher", "will/#").await;
    let opts = delayed_will_opts(&server, "back", 10, 600);
    let (_c, l, _) = v5_open(opts.clone()).await;
    drop(l);
    until("the session is offline", || is_offline(&server, "back")).await;

    tokio::time::sleep(Duration::from_secs(5)).await;
    let (c, mut l, ack) = v5_open(opts).await;
    assert!(ack.session_present);
    tokio::time::sleep(Duration::from_secs(30)).await;
    publish_once(&server, "will/marker", "marker").await;
    assert_eq!(
        next_payload(&mut w).await,
        "marker",
        "the will was cancelled"
    );
    c.disconnect().await.unwrap();
    v5_until_closed(&mut l).await;
}

#[tokio::test(start_paused = true)]
async fn will_published_when_session_expires_before_the_delay() {
    let server = start().await;
    let mut w = watcher(&server, "watcher", "will/#").await;
    let (_c, l, _) = v5_open(delayed_will_opts(&server, "short", 30, 5)).await;
    drop(l);
    until("the session is offline", || is_offline(&server, "short")).await;
    let t0 = Instant::now();
    let msg = v4::next_publish(&mut w.eventloop).await;
    assert_eq!(msg.topic, "will/short");
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_millis(5_100),
        "will after {waited:?}, the session ended after 5 s"
    );
}

#[tokio::test(start_paused = true)]
async fn will_published_when_clean_start_ends_the_session_within_the_delay() {
    let server = start().await;
    let mut w = watcher(&server, "watcher", "will/#").await;
    let (_c, l, _) = v5_open(delayed_will_opts(&server, "ended", 30, 600)).await;
    drop(l);
    until("the session is offline", || is_offline(&server, "ended")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 5.0 §3.1.3.2.2: the will is delayed until the interval passes or the
    // session ends, whichever is first; a clean start ends the session.
    let t0 = Instant::now();
    let (_c2, l2, ack) = v5_open(v5_opts(&server, "ended", true, Some(600))).await;
    assert!(!ack.session_present);
    v5_drive(l2);
    let msg = v4::next_publish(&mut w.eventloop).await;
    assert_eq!(msg.topic, "will/ended");
    let waited = t0.elapsed();
    assert!(
        waited < Duration::from_secs(1),
        "will {waited:?} after the session ended"
    );
}
