//! The broker's own state survives `kill -9` (`[persistence]`, issue 16):
//! retained messages acknowledged under `durability = "ack"` are there
//! after the restart, a cleared one stays cleared, and 5.0 message expiry
//! counts from the original publish across the restart.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

mod support;
use support::*;

/// Starts herald on `data`; returns it with its MQTT address.
fn start(data: &Path, durability: &str) -> (Running, SocketAddr) {
    start_with(data, durability, &[])
}

/// [`start`] with more environment.
fn start_with(data: &Path, durability: &str, more: &[(&str, &str)]) -> (Running, SocketAddr) {
    let mut env = vec![
        ("HERALD_METRICS__BIND", ""),
        ("HERALD_SYS__INTERVAL", "0"),
        ("HERALD_PERSISTENCE__DURABILITY", durability),
        ("RUST_LOG", "info"),
    ];
    env.extend_from_slice(more);
    let mut herald = Running::spawn(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &env,
    );
    if durability != "off" {
        herald.stderr_line("broker state recovered");
    }
    let mqtt = logged_addr(&herald.stderr_line("listening for MQTT"));
    (herald, mqtt)
}

/// A connected 5.0 client.
async fn connect(mqtt: SocketAddr, id: &str) -> (AsyncClient, EventLoop) {
    let mut opts = MqttOptions::new(id, mqtt.ip().to_string(), mqtt.port());
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(opts, 100);
    loop {
        if let Event::Incoming(Packet::ConnAck(_)) = next(&mut events).await {
            return (client, events);
        }
    }
}

async fn next(events: &mut EventLoop) -> Event {
    match tokio::time::timeout(WAIT, events.poll()).await {
        Ok(Ok(event)) => event,
        Ok(Err(e)) => panic!("connection failed: {e}"),
        Err(_) => panic!("nothing from the broker within {WAIT:?}"),
    }
}

/// Publishes a retained message and waits for its PUBACK / PUBCOMP: the
/// broker has acknowledged it.
async fn retain(
    client: &AsyncClient,
    events: &mut EventLoop,
    topic: &str,
    payload: &str,
    qos: QoS,
    expiry: Option<u32>,
) {
    let props = PublishProperties {
        message_expiry_interval: expiry,
        ..PublishProperties::default()
    };
    client
        .publish_with_properties(topic, qos, true, payload.to_owned(), props)
        .await
        .unwrap();
    loop {
        match next(events).await {
            Event::Incoming(Packet::PubAck(_)) if qos == QoS::AtLeastOnce => return,
            Event::Incoming(Packet::PubComp(_)) if qos == QoS::ExactlyOnce => return,
            _ => {}
        }
    }
}

/// What a new subscriber to `r/#` gets as retained: topic → (payload,
/// remaining expiry). A non-retained marker published after the SUBACK
/// comes after every retained message, so it ends the list.
async fn retained_now(mqtt: SocketAddr) -> BTreeMap<String, (String, Option<u32>)> {
    let (client, mut events) = connect(mqtt, "reader").await;
    client.subscribe("r/#", QoS::AtLeastOnce).await.unwrap();
    let mut found = BTreeMap::new();
    loop {
        match next(&mut events).await {
            Event::Incoming(Packet::SubAck(_)) => {
                client
                    .publish("r/end", QoS::AtLeastOnce, false, "end")
                    .await
                    .unwrap();
            }
            Event::Incoming(Packet::Publish(p)) => {
                let topic = String::from_utf8_lossy(&p.topic).into_owned();
                if topic == "r/end" {
                    return found;
                }
                assert!(p.retain, "{topic} arrives as retained");
                let expiry = p.properties.and_then(|p| p.message_expiry_interval);
                let payload = String::from_utf8_lossy(&p.payload).into_owned();
                found.insert(topic, (payload, expiry));
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn acknowledged_retained_messages_survive_sigkill() {
    let data = temp_dir("retained-sigkill");
    let (mut herald, mqtt) = start(&data, "ack");
    let (client, mut events) = connect(mqtt, "writer").await;
    retain(&client, &mut events, "r/a", "one", QoS::AtLeastOnce, None).await;
    retain(&client, &mut events, "r/b", "two", QoS::ExactlyOnce, None).await;
    retain(&client, &mut events, "r/c", "three", QoS::AtLeastOnce, None).await;
    retain(
        &client,
        &mut events,
        "r/a",
        "one again",
        QoS::AtLeastOnce,
        None,
    )
    .await;
    // Cleared: stays cleared.
    retain(&client, &mut events, "r/c", "", QoS::AtLeastOnce, None).await;
    let published = Instant::now();
    retain(
        &client,
        &mut events,
        "r/short",
        "s",
        QoS::AtLeastOnce,
        Some(2),
    )
    .await;
    retain(
        &client,
        &mut events,
        "r/long",
        "l",
        QoS::ExactlyOnce,
        Some(3600),
    )
    .await;
    herald.child.kill().unwrap();
    herald.child.wait().unwrap();

    // Down until r/short's expiry, counted from its publish, has passed.
    let expired_at = published + Duration::from_millis(2100);
    std::thread::sleep(expired_at.saturating_duration_since(Instant::now()));
    let (herald, mqtt) = start(&data, "ack");
    let found = retained_now(mqtt).await;
    let topics: Vec<&str> = found.keys().map(String::as_str).collect();
    assert_eq!(
        topics,
        ["r/a", "r/b", "r/long"],
        "{found:?}\n{}",
        herald.log.join("\n")
    );
    assert_eq!(found["r/a"], ("one again".to_owned(), None));
    assert_eq!(found["r/b"], ("two".to_owned(), None));
    let (payload, left) = &found["r/long"];
    assert_eq!(payload, "l");
    let left = left.expect("the expiry is kept");
    assert!(
        (3590..3600).contains(&left),
        "counted from the publish: {left}"
    );

    // A clean restart keeps them as well.
    herald.terminate();
    let (_herald, mqtt) = start(&data, "ack");
    let again = retained_now(mqtt).await;
    assert_eq!(
        again.keys().collect::<Vec<_>>(),
        found.keys().collect::<Vec<_>>()
    );
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn off_keeps_nothing_and_periodic_keeps_what_a_clean_stop_saved() {
    let data = temp_dir("retained-modes");
    let (herald, mqtt) = start(&data, "off");
    let (client, mut events) = connect(mqtt, "writer").await;
    retain(&client, &mut events, "r/a", "one", QoS::AtLeastOnce, None).await;
    herald.terminate();
    let (herald, mqtt) = start(&data, "periodic");
    assert!(retained_now(mqtt).await.is_empty(), "\"off\" wrote nothing");
    let (client, mut events) = connect(mqtt, "writer").await;
    retain(&client, &mut events, "r/b", "two", QoS::AtLeastOnce, None).await;
    // A clean stop writes the snapshot.
    herald.terminate();
    let (_herald, mqtt) = start(&data, "periodic");
    let found = retained_now(mqtt).await;
    assert_eq!(found.keys().collect::<Vec<_>>(), ["r/b"]);
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn an_unreadable_state_log_stops_the_start_naming_it() {
    let data = temp_dir("retained-unreadable");
    let log = data.join("broker").join("state.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    write(&log, "not a state log");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .env_clear()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .env("HERALD_METRICS__BIND", "")
        .output()
        .unwrap();
    let (status, all) = (out.status, String::from_utf8_lossy(&out.stderr));
    assert_eq!(status.code(), Some(1), "{all}");
    assert!(all.contains(&log.display().to_string()), "{all}");
    assert_eq!(std::fs::read(&log).unwrap(), b"not a state log");
    let _ = std::fs::remove_dir_all(&data);
}

/// A persistent 5.0 subscriber (`clean_start = false`, expiry `expiry`).
async fn connect_persistent(
    mqtt: SocketAddr,
    id: &str,
    expiry: u32,
) -> (AsyncClient, EventLoop, bool) {
    let mut opts = MqttOptions::new(id, mqtt.ip().to_string(), mqtt.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_start(false);
    opts.set_session_expiry_interval(Some(expiry));
    let (client, mut events) = AsyncClient::new(opts, 100);
    loop {
        if let Event::Incoming(Packet::ConnAck(ack)) = next(&mut events).await {
            return (client, events, ack.session_present);
        }
    }
}

/// A persistent 3.1.1 subscriber (Clean Session = 0).
async fn connect_v4_persistent(
    mqtt: SocketAddr,
    id: &str,
) -> (rumqttc::AsyncClient, rumqttc::EventLoop, bool) {
    let mut opts = rumqttc::MqttOptions::new(id, mqtt.ip().to_string(), mqtt.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(false);
    let (client, mut events) = rumqttc::AsyncClient::new(opts, 100);
    loop {
        let event = match tokio::time::timeout(WAIT, events.poll()).await {
            Ok(Ok(event)) => event,
            other => panic!("no CONNACK: {other:?}"),
        };
        if let rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack)) = event {
            return (client, events, ack.session_present);
        }
    }
}

/// Waits for the broker to log the disconnect of each of `clients`.
fn disconnected(herald: &mut Running, clients: &[&str]) {
    let mut left: Vec<String> = clients.iter().map(|c| format!("client_id={c} ")).collect();
    while !left.is_empty() {
        let line = herald.stderr_line("client disconnected");
        left.retain(|c| !line.contains(c.as_str()));
    }
}

/// Waits until the store has written every change made so far: a
/// retained QoS 1 message's PUBACK comes once it is on disk, and the store
/// writes in order.
async fn barrier(mqtt: SocketAddr) {
    let (client, mut events) = connect(mqtt, "barrier").await;
    retain(&client, &mut events, "barrier", "b", QoS::AtLeastOnce, None).await;
}

/// Publishes `n` messages on `s/x` (payload = index), alternating QoS 1
/// and 2, and waits for every acknowledgement.
async fn publish_acked(mqtt: SocketAddr, n: usize) {
    let (client, mut events) = connect(mqtt, "publisher").await;
    for i in 0..n {
        let qos = if i.is_multiple_of(2) {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        client
            .publish("s/x", qos, false, i.to_string())
            .await
            .unwrap();
    }
    let mut acked = 0;
    while acked < n {
        if let Event::Incoming(Packet::PubAck(_) | Packet::PubComp(_)) = next(&mut events).await {
            acked += 1;
        }
    }
}

#[tokio::test]
async fn persistent_sessions_and_their_queued_messages_survive_sigkill() {
    const N: usize = 40;
    let data = temp_dir("sessions-sigkill");
    let (mut herald, mqtt) = start(&data, "ack");
    {
        let (client, mut events, present) = connect_persistent(mqtt, "sub5", 3600).await;
        assert!(!present);
        client.subscribe("s/#", QoS::ExactlyOnce).await.unwrap();
        while !matches!(next(&mut events).await, Event::Incoming(Packet::SubAck(_))) {}
        let (client4, mut events4, present) = connect_v4_persistent(mqtt, "sub4").await;
        assert!(!present);
        client4
            .subscribe("s/#", rumqttc::QoS::ExactlyOnce)
            .await
            .unwrap();
        loop {
            let e = tokio::time::timeout(WAIT, events4.poll())
                .await
                .unwrap()
                .unwrap();
            if let rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) = e {
                break;
            }
        }
    }
    disconnected(&mut herald, &["sub5", "sub4"]);
    // Both offline now (their sockets closed); every message is queued.
    publish_acked(mqtt, N).await;
    herald.child.kill().unwrap();
    herald.child.wait().unwrap();

    let (herald, mqtt) = start(&data, "ack");
    let (_client, mut events, present) = connect_persistent(mqtt, "sub5", 3600).await;
    assert!(
        present,
        "session present after the restart\n{}",
        herald.log.join("\n")
    );
    let mut got = Vec::new();
    while got.len() < N {
        if let Event::Incoming(Packet::Publish(p)) = next(&mut events).await {
            let i: usize = String::from_utf8_lossy(&p.payload).parse().unwrap();
            let qos = if i.is_multiple_of(2) {
                QoS::AtLeastOnce
            } else {
                QoS::ExactlyOnce
            };
            assert_eq!(p.qos, qos, "message {i}");
            got.push(i);
        }
    }
    assert_eq!(
        got,
        (0..N).collect::<Vec<_>>(),
        "every message, in order, once"
    );

    let (_client4, mut events4, present) = connect_v4_persistent(mqtt, "sub4").await;
    assert!(present, "3.1.1 session present after the restart");
    let mut got = Vec::new();
    while got.len() < N {
        let e = tokio::time::timeout(WAIT, events4.poll())
            .await
            .unwrap()
            .unwrap();
        if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = e {
            got.push(
                String::from_utf8_lossy(&p.payload)
                    .parse::<usize>()
                    .unwrap(),
            );
        }
    }
    assert_eq!(
        got,
        (0..N).collect::<Vec<_>>(),
        "3.1.1: every message, in order, once"
    );
    // Nothing more (no duplicates): a marker published now is next.
    let (marker, mut marker_events) = connect(mqtt, "marker").await;
    marker
        .publish("s/end", QoS::AtLeastOnce, false, "end")
        .await
        .unwrap();
    while !matches!(
        next(&mut marker_events).await,
        Event::Incoming(Packet::PubAck(_))
    ) {}
    loop {
        if let Event::Incoming(Packet::Publish(p)) = next(&mut events).await {
            assert_eq!(&p.topic[..], b"s/end", "a duplicate: {p:?}");
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn inflight_messages_are_sent_again_with_dup_after_sigkill() {
    let data = temp_dir("sessions-inflight");
    let (mut herald, mqtt) = start(&data, "ack");
    let mut opts = MqttOptions::new("slow", mqtt.ip().to_string(), mqtt.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_start(false);
    opts.set_session_expiry_interval(Some(3600));
    opts.set_manual_acks(true);
    let (client, mut events) = AsyncClient::new(opts, 100);
    client.subscribe("s/#", QoS::AtLeastOnce).await.unwrap();
    while !matches!(next(&mut events).await, Event::Incoming(Packet::SubAck(_))) {}
    publish_acked(mqtt, 4).await;
    // Received, never acknowledged: in flight.
    let mut first = Vec::new();
    while first.len() < 4 {
        if let Event::Incoming(Packet::Publish(p)) = next(&mut events).await {
            first.push((p.pkid, p.payload.clone()));
        }
    }
    // The Sent records (not awaited by anyone) are on disk.
    barrier(mqtt).await;
    herald.child.kill().unwrap();
    herald.child.wait().unwrap();
    drop((client, events));

    let (_herald, mqtt) = start(&data, "ack");
    let (_client, mut events, present) = connect_persistent(mqtt, "slow", 3600).await;
    assert!(present);
    let mut again = Vec::new();
    while again.len() < 4 {
        if let Event::Incoming(Packet::Publish(p)) = next(&mut events).await {
            assert!(p.dup, "sent again with DUP: {p:?}");
            again.push((p.pkid, p.payload.clone()));
        }
    }
    assert_eq!(again, first, "same packet ids, same messages, same order");
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn session_expiry_is_real_time_across_a_restart() {
    let data = temp_dir("sessions-expiry");
    let (mut herald, mqtt) = start(&data, "ack");
    for (id, expiry) in [("short", 2), ("long", 3600)] {
        let (client, mut events, _) = connect_persistent(mqtt, id, expiry).await;
        client.subscribe("e/#", QoS::AtLeastOnce).await.unwrap();
        while !matches!(next(&mut events).await, Event::Incoming(Packet::SubAck(_))) {}
    }
    // Both disconnected (sockets closed): "short" expires 2 s from now.
    disconnected(&mut herald, &["short", "long"]);
    let gone_at = Instant::now() + Duration::from_millis(2100);
    barrier(mqtt).await;
    herald.child.kill().unwrap();
    herald.child.wait().unwrap();
    // Down longer than "short"'s expiry.
    std::thread::sleep(gone_at.saturating_duration_since(Instant::now()));
    let (_herald, mqtt) = start(&data, "ack");
    let (_c, _e, present) = connect_persistent(mqtt, "short", 2).await;
    assert!(!present, "expired while the broker was down");
    let (_c, _e, present) = connect_persistent(mqtt, "long", 3600).await;
    assert!(present, "still within its expiry");
    let _ = std::fs::remove_dir_all(&data);
}

/// `kill -9` in the middle of a flood of QoS 1 publishes to an offline
/// persistent session, at several points (a restart between them): after
/// the last restart the subscriber gets every message any publisher was
/// acknowledged for, each publisher's in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_flood_loses_no_message_acknowledged_for_a_persistent_session() {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    const PUBLISHERS: usize = 4;
    let data = temp_dir("sessions-flood");
    let env = [
        ("HERALD_MQTT__MAX_QUEUED_MESSAGES", "1000000"),
        ("HERALD_MQTT__MAX_QUEUED_BYTES", "1000000000"),
    ];
    let (mut herald, mut mqtt) = start_with(&data, "ack", &env);
    {
        let (client, mut events, _) = connect_persistent(mqtt, "flood-sub", 3600).await;
        client
            .subscribe("sensors/#", QoS::AtLeastOnce)
            .await
            .unwrap();
        while !matches!(next(&mut events).await, Event::Incoming(Packet::SubAck(_))) {}
    }
    disconnected(&mut herald, &["flood-sub"]);
    let kill_points = [1_000u64, 3_000, 6_000];
    let mut acked_by: HashMap<String, u64> = HashMap::new();
    for (round, kill_at) in kill_points.iter().enumerate() {
        if round > 0 {
            (herald, mqtt) = start_with(&data, "ack", &env);
        }
        let counters: Vec<(String, Arc<AtomicU64>)> = (0..PUBLISHERS)
            .map(|c| (format!("r{round}-c{c}"), Arc::new(AtomicU64::new(0))))
            .collect();
        let threads: Vec<_> = counters
            .iter()
            .map(|(id, acked)| {
                let (id, acked) = (id.clone(), acked.clone());
                let topic = format!("sensors/{id}");
                std::thread::spawn(move || flood::run(mqtt, &id, &topic, acked))
            })
            .collect();
        let total = || {
            counters
                .iter()
                .map(|(_, a)| a.load(Ordering::SeqCst))
                .sum::<u64>()
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while total() < *kill_at {
            assert!(Instant::now() < deadline, "only {} acknowledged", total());
            std::thread::sleep(Duration::from_millis(5));
        }
        herald.child.kill().unwrap();
        herald.child.wait().unwrap();
        for t in threads {
            t.join().unwrap();
        }
        for (id, acked) in &counters {
            acked_by.insert(id.clone(), acked.load(Ordering::SeqCst));
        }
    }
    let (herald, mqtt) = start_with(&data, "ack", &env);
    let (_client, mut events, present) = connect_persistent(mqtt, "flood-sub", 3600).await;
    assert!(present, "{}", herald.log.join("\n"));
    // Per publisher: the next index expected (acknowledged ones must all
    // come, in order; unacknowledged ones may or may not).
    let mut next_index: HashMap<String, u64> = HashMap::new();
    let missing = |next_index: &HashMap<String, u64>| {
        acked_by
            .iter()
            .filter(|(id, acked)| next_index.get(*id).copied().unwrap_or(0) < **acked)
            .count()
    };
    while missing(&next_index) > 0 {
        let Event::Incoming(Packet::Publish(p)) = next(&mut events).await else {
            continue;
        };
        let topic = String::from_utf8_lossy(&p.topic).into_owned();
        let id = topic.trim_start_matches("sensors/").to_owned();
        let index: u64 = String::from_utf8_lossy(&p.payload).parse().unwrap();
        let expected = next_index.entry(id.clone()).or_insert(0);
        assert_eq!(index, *expected, "{id}: in order, none missing");
        *expected += 1;
    }
}
