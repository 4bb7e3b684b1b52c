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

/// A persistent 5.0 session `id` (expiry `expiry` s) subscribed to
/// `filter` at `qos`; its connection is dropped on return (the caller waits
/// with [`disconnected`] where the broker must have seen it go).
async fn subscribe_persistent(mqtt: SocketAddr, id: &str, expiry: u32, filter: &str, qos: QoS) {
    let (client, mut events, _) = connect_persistent(mqtt, id, expiry).await;
    client.subscribe(filter, qos).await.unwrap();
    while !matches!(next(&mut events).await, Event::Incoming(Packet::SubAck(_))) {}
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

/// Publishes a marker on `topic` and returns the topics `events` gets
/// before it: what was still on its way to that subscriber.
async fn until_marker(mqtt: SocketAddr, events: &mut EventLoop, topic: &str) -> Vec<String> {
    let (marker, mut marker_events) = connect(mqtt, "marker").await;
    marker
        .publish(topic, QoS::AtLeastOnce, false, "marker")
        .await
        .unwrap();
    while !matches!(
        next(&mut marker_events).await,
        Event::Incoming(Packet::PubAck(_))
    ) {}
    let mut before = Vec::new();
    loop {
        if let Event::Incoming(Packet::Publish(p)) = next(events).await {
            let got = String::from_utf8_lossy(&p.topic).into_owned();
            if got == topic {
                return before;
            }
            before.push(got);
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
    let before = until_marker(mqtt, &mut events, "s/end").await;
    assert_eq!(before, [] as [&str; 0], "duplicates");
    let _ = std::fs::remove_dir_all(&data);
}

/// A persistent 5.0 session `id` (expiry 3600 s), connected and
/// subscribed to `s/#` at QoS 1, whose client acknowledges nothing.
async fn subscribed_never_acking(mqtt: SocketAddr, id: &str) -> (AsyncClient, EventLoop) {
    let mut opts = MqttOptions::new(id, mqtt.ip().to_string(), mqtt.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_start(false);
    opts.set_session_expiry_interval(Some(3600));
    opts.set_manual_acks(true);
    let (client, mut events) = AsyncClient::new(opts, 100);
    client.subscribe("s/#", QoS::AtLeastOnce).await.unwrap();
    while !matches!(next(&mut events).await, Event::Incoming(Packet::SubAck(_))) {}
    (client, events)
}

#[tokio::test]
async fn inflight_messages_are_sent_again_with_dup_after_sigkill() {
    let data = temp_dir("sessions-inflight");
    let (mut herald, mqtt) = start(&data, "ack");
    let (client, mut events) = subscribed_never_acking(mqtt, "slow").await;
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

/// 5.0 session expiry runs in real time: a session whose expiry passed
/// while the broker was down is gone after the restart, and
/// `session.terminated` fires for it with reason `expired` (seen by a
/// real WebHook receiver); one within its expiry is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_is_real_time_across_a_restart() {
    let data = temp_dir("sessions-expiry");
    let (mut herald, mqtt) = start(&data, "ack");
    for (id, expiry) in [("short", 2), ("long", 3600)] {
        subscribe_persistent(mqtt, id, expiry, "e/#", QoS::AtLeastOnce).await;
    }
    // Both disconnected (sockets closed): "short" expires 2 s from now.
    disconnected(&mut herald, &["short", "long"]);
    let gone_at = Instant::now() + Duration::from_millis(2100);
    barrier(mqtt).await;
    herald.child.kill().unwrap();
    herald.child.wait().unwrap();
    // Down longer than "short"'s expiry.
    std::thread::sleep(gone_at.saturating_duration_since(Instant::now()));
    let (receiver, mut hooks) =
        herald_webhook::listen::channel("127.0.0.1:0".parse().unwrap(), None)
            .await
            .unwrap();
    let conf = data.join("emqx_web_hook.conf");
    write(
        &conf,
        &format!(
            "web.hook.url = http://{}/hook\n\
             web.hook.rule.session.terminated.1 = {{\"action\": \"on_session_terminated\"}}\n",
            receiver.addr
        ),
    );
    let conf = conf.to_str().unwrap();
    let (_herald, mqtt) = start_with(&data, "ack", &[("HERALD_WEBHOOK_CONF", conf)]);
    let r = tokio::time::timeout(WAIT, hooks.recv())
        .await
        .expect("session.terminated within the wait")
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["action"], "session_terminated", "{body}");
    assert_eq!(body["clientid"], "short", "{body}");
    assert_eq!(body["reason"], "expired", "{body}");
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
    subscribe_persistent(mqtt, "flood-sub", 3600, "sensors/#", QoS::AtLeastOnce).await;
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

/// QoS 1 PUBLISHes that arrive in one write are routed together (one
/// queue entry per subscriber for all of them), but not for an online
/// persistent session: each is stored for it before the publisher's
/// PUBACK, so `kill -9` right after the PUBACKs loses none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_read_together_for_an_online_persistent_session_survive_sigkill() {
    use std::io::{Read, Write};
    const N: u64 = 20;
    let data = temp_dir("sessions-together");
    let (mut herald, mqtt) = start(&data, "ack");
    // Receives and never acknowledges: what is not in flight stays queued.
    let (client, mut events) = subscribed_never_acking(mqtt, "online").await;
    // The session is on disk: what is missing after the restart is what
    // was not stored for it.
    barrier(mqtt).await;
    let reading = tokio::spawn(async move {
        loop {
            if events.poll().await.is_err() {
                return;
            }
        }
    });
    let publisher = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(mqtt).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .write_all(&flood::connect_packet("together"))
            .unwrap();
        let mut connack = [0u8; 4];
        stream.read_exact(&mut connack).unwrap();
        assert_eq!(connack, [0x20, 2, 0, 0]);
        let mut all = Vec::new();
        for i in 0..N {
            flood::publish_packet("s/x", i, &mut all);
        }
        stream.write_all(&all).unwrap();
        let mut acks = [0u8; 4 * N as usize];
        stream.read_exact(&mut acks).unwrap();
        acks.chunks(4)
            .map(|a| u16::from_be_bytes([a[2], a[3]]))
            .collect::<Vec<_>>()
    });
    let acked = tokio::task::spawn_blocking(move || publisher.join().unwrap())
        .await
        .unwrap();
    assert_eq!(acked, (1..=N as u16).collect::<Vec<_>>(), "every PUBACK");
    herald.child.kill().unwrap();
    herald.child.wait().unwrap();
    reading.abort();
    drop(client);

    let (herald, mqtt) = start(&data, "ack");
    let (_client, mut events, present) = connect_persistent(mqtt, "online", 3600).await;
    assert!(present, "{}", herald.log.join("\n"));
    let mut got = Vec::new();
    while got.len() < N as usize {
        if let Event::Incoming(Packet::Publish(p)) = next(&mut events).await {
            got.push(String::from_utf8_lossy(&p.payload).parse::<u64>().unwrap());
        }
    }
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "every message, in order");
    let _ = std::fs::remove_dir_all(&data);
}

/// A persistent 5.0 client with a will on `will/{id}` (delay `delay` s).
async fn connect_with_will(
    mqtt: SocketAddr,
    id: &str,
    expiry: u32,
    delay: u32,
) -> (AsyncClient, EventLoop) {
    use rumqttc::v5::mqttbytes::v5::{LastWill, LastWillProperties};
    let mut opts = MqttOptions::new(id, mqtt.ip().to_string(), mqtt.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_start(false);
    opts.set_session_expiry_interval(Some(expiry));
    let props = LastWillProperties {
        delay_interval: Some(delay),
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        user_properties: Vec::new(),
    };
    opts.set_last_will(LastWill::new(
        format!("will/{id}"),
        format!("{id} is gone"),
        QoS::AtLeastOnce,
        false,
        Some(props),
    ));
    let (client, mut events) = AsyncClient::new(opts, 100);
    while !matches!(next(&mut events).await, Event::Incoming(Packet::ConnAck(_))) {}
    (client, events)
}

/// Wills of persistent sessions survive `kill -9`, and the broker's death
/// counts as each connected client's connection lost without DISCONNECT:
/// a will with delay 0 is published at the restart, one with a delay that
/// long after the restart unless its client connects first; a will
/// already waiting its delay when the broker died keeps its time; one
/// whose session expired while the broker was down is published at the
/// restart; a client that disconnected normally has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wills_of_persistent_sessions_survive_sigkill() {
    let data = temp_dir("wills-sigkill");
    let (mut herald, mqtt) = start(&data, "ack");
    subscribe_persistent(mqtt, "will-sub", 3600, "will/#", QoS::AtLeastOnce).await;
    // Disconnected before the kill: "waiting" waits 3 s for its will,
    // "expiring" 2 s (its session's expiry, below its delay).
    let waiting_due = Instant::now() + Duration::from_secs(3);
    drop(connect_with_will(mqtt, "waiting", 3600, 3).await);
    drop(connect_with_will(mqtt, "expiring", 2, 60).await);
    // Normal DISCONNECT: no will.
    let (normal, mut normal_events) = connect_with_will(mqtt, "normal", 3600, 0).await;
    normal.disconnect().await.unwrap();
    while next(&mut normal_events).await != Event::Outgoing(rumqttc::Outgoing::Disconnect) {}
    disconnected(&mut herald, &["will-sub", "waiting", "expiring", "normal"]);
    // Connected at the kill.
    let (_now, mut now_events) = connect_with_will(mqtt, "now", 3600, 0).await;
    let (_later, mut later_events) = connect_with_will(mqtt, "later", 3600, 2).await;
    let (_back, mut back_events) = connect_with_will(mqtt, "back", 3600, 1).await;
    let pump = tokio::spawn(async move {
        loop {
            tokio::select! {
                r = now_events.poll() => if r.is_err() { break },
                r = later_events.poll() => if r.is_err() { break },
                r = back_events.poll() => if r.is_err() { break },
            }
        }
    });
    barrier(mqtt).await;
    herald.child.kill().unwrap();
    herald.child.wait().unwrap();
    pump.abort();
    // Down longer than "expiring"'s session expiry (2 s, counted from
    // its disconnect, which came before the barrier).
    std::thread::sleep(Duration::from_millis(2100));

    // Before the start: the wills' delays count from a later instant.
    let restarted = Instant::now();
    let (herald, mqtt) = start(&data, "ack");
    // "back" connects again at once: its will (due 1 s after the restart)
    // is not published.
    let (_back, mut back_events) = connect_with_will(mqtt, "back", 3600, 1).await;
    let _pump = tokio::spawn(async move { while back_events.poll().await.is_ok() {} });
    let (_client, mut events, present) = connect_persistent(mqtt, "will-sub", 3600).await;
    assert!(present, "{}", herald.log.join("\n"));
    let mut got: BTreeMap<String, Instant> = BTreeMap::new();
    let mut order = Vec::new();
    while got.len() < 4 {
        if let Event::Incoming(Packet::Publish(p)) = next(&mut events).await {
            let topic = String::from_utf8_lossy(&p.topic).into_owned();
            let id = topic.trim_start_matches("will/").to_owned();
            assert_eq!(&p.payload[..], format!("{id} is gone").as_bytes());
            order.push(id.clone());
            assert!(got.insert(id, Instant::now()).is_none(), "once: {order:?}");
        }
    }
    for id in ["now", "later", "waiting", "expiring"] {
        assert!(got.contains_key(id), "{id}'s will: got {order:?}");
    }
    assert!(
        got["later"] >= restarted + Duration::from_millis(1900),
        "\"later\"'s will waits its 2 s delay after the restart"
    );
    assert!(
        got["waiting"] >= waiting_due - Duration::from_millis(100),
        "\"waiting\"'s will keeps its time"
    );
    // "back"'s will would have been due before "later"'s: a marker
    // published now comes next, not it (nor "normal"'s).
    let before = until_marker(mqtt, &mut events, "will/end").await;
    assert_eq!(before, [] as [&str; 0], "unexpected wills");
    let _ = std::fs::remove_dir_all(&data);
}

/// A raw MQTT 5.0 connection, to see exactly what the broker sends and
/// when.
struct Raw {
    stream: std::net::TcpStream,
}

/// A PUBLISH as [`Raw`] read it.
#[derive(Debug, PartialEq)]
struct RawPublish {
    qos: u8,
    packet_id: u16,
    dup: bool,
    payload: String,
}

impl Raw {
    /// Connects as persistent session `id` (expiry 3600 s) with this
    /// Receive Maximum and Maximum Packet Size; returns Session Present.
    fn connect(mqtt: SocketAddr, id: &str, receive_max: u16, max_packet: u32) -> (Raw, bool) {
        use std::io::Write;
        let stream = std::net::TcpStream::connect(mqtt).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut props = vec![0x11];
        props.extend_from_slice(&3600u32.to_be_bytes());
        props.push(0x21);
        props.extend_from_slice(&receive_max.to_be_bytes());
        props.push(0x27);
        props.extend_from_slice(&max_packet.to_be_bytes());
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0x00, 0, 60];
        varint(props.len(), &mut body);
        body.extend_from_slice(&props);
        body.extend_from_slice(&(id.len() as u16).to_be_bytes());
        body.extend_from_slice(id.as_bytes());
        let mut packet = vec![0x10];
        varint(body.len(), &mut packet);
        packet.extend_from_slice(&body);
        let mut raw = Raw { stream };
        raw.stream.write_all(&packet).unwrap();
        let (kind, body) = raw.read();
        assert_eq!(kind, 0x20, "CONNACK");
        assert_eq!(body[1], 0, "accepted");
        (raw, body[0] & 1 == 1)
    }

    /// The next packet: first byte and body.
    fn read(&mut self) -> (u8, Vec<u8>) {
        use std::io::Read;
        let mut b = [0u8; 1];
        self.stream.read_exact(&mut b).unwrap();
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let mut l = [0u8; 1];
            self.stream.read_exact(&mut l).unwrap();
            len |= usize::from(l[0] & 0x7f) << shift;
            shift += 7;
            if l[0] & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0; len];
        self.stream.read_exact(&mut body).unwrap();
        (b[0], body)
    }

    /// The next packet, or `None` once the connection is gone.
    fn try_read(&mut self) -> Option<(u8, Vec<u8>)> {
        use std::io::Read;
        let mut head = [0u8; 1];
        self.stream.read_exact(&mut head).ok()?;
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let mut l = [0u8; 1];
            self.stream.read_exact(&mut l).ok()?;
            len |= usize::from(l[0] & 0x7f) << shift;
            shift += 7;
            if l[0] & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0; len];
        self.stream.read_exact(&mut body).ok()?;
        Some((head[0], body))
    }

    /// Sends a PUBACK-like packet (`kind`, packet id); a connection that
    /// is gone is not an error here.
    fn answer(&mut self, kind: u8, packet_id: u16) {
        use std::io::Write;
        let id = packet_id.to_be_bytes();
        let _ = self.stream.write_all(&[kind, 2, id[0], id[1]]);
    }

    /// Sends a QoS 2 PUBLISH of `payload` on `topic` under `packet_id`.
    fn send_qos2(&mut self, packet_id: u16, topic: &str, payload: &str) {
        use std::io::Write;
        let mut body = (topic.len() as u16).to_be_bytes().to_vec();
        body.extend_from_slice(topic.as_bytes());
        body.extend_from_slice(&packet_id.to_be_bytes());
        body.push(0); // no properties
        body.extend_from_slice(payload.as_bytes());
        let mut packet = vec![0x34];
        varint(body.len(), &mut packet);
        packet.extend_from_slice(&body);
        self.stream.write_all(&packet).unwrap();
    }

    /// The next packet, which must be of type `kind` (high nibble) for
    /// `packet_id`.
    fn expect(&mut self, kind: u8, packet_id: u16) {
        let (got, body) = self.read();
        assert_eq!(got & 0xf0, kind, "packet type");
        assert_eq!(u16::from_be_bytes([body[0], body[1]]), packet_id);
    }

    /// The next PUBLISH (QoS 1).
    fn publish(&mut self) -> RawPublish {
        let (kind, body) = self.read();
        assert_eq!(kind & 0xf0, 0x30, "a PUBLISH, not {kind:#x}");
        let p = raw_publish(kind, &body);
        assert_eq!(p.qos, 1, "QoS 1");
        p
    }

    /// Sends PINGREQ and returns the PUBLISHes that came before PINGRESP:
    /// everything the broker sent on its own before reading the PINGREQ.
    fn until_pong(&mut self) -> Vec<RawPublish> {
        use std::io::Write;
        self.stream.write_all(&[0xc0, 0]).unwrap();
        let mut got = Vec::new();
        loop {
            let (kind, body) = self.read();
            match kind & 0xf0 {
                0xd0 => return got,
                0x30 => got.push(raw_publish(kind, &body)),
                other => panic!("unexpected packet {other:#x}"),
            }
        }
    }

    fn puback(&mut self, packet_id: u16) {
        use std::io::Write;
        let id = packet_id.to_be_bytes();
        self.stream.write_all(&[0x40, 2, id[0], id[1]]).unwrap();
    }
}

/// Reads a QoS 1/2 PUBLISH's QoS, packet id, DUP and payload.
fn raw_publish(kind: u8, body: &[u8]) -> RawPublish {
    let qos = (kind >> 1) & 3;
    assert!(qos == 1 || qos == 2, "QoS 1 or 2");
    let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let mut at = 2 + topic_len;
    let packet_id = u16::from_be_bytes([body[at], body[at + 1]]);
    at += 2;
    let (mut props, mut shift) = (0usize, 0);
    loop {
        let b = body[at];
        at += 1;
        props |= usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    at += props;
    RawPublish {
        qos,
        packet_id,
        dup: kind & 0x08 != 0,
        payload: String::from_utf8_lossy(&body[at..]).into_owned(),
    }
}

fn payloads(got: &[RawPublish]) -> Vec<(&str, bool)> {
    got.iter().map(|p| (p.payload.as_str(), p.dup)).collect()
}

/// A resumed session's queued and inflight messages go out within the
/// new connection's Receive Maximum, and one larger than its Maximum
/// Packet Size is dropped, not sent: after a reconnect and after `kill -9`
/// and a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_sessions_honour_the_new_receive_maximum_and_maximum_packet_size() {
    let data = temp_dir("sessions-limits");
    let (mut herald, mqtt) = start(&data, "ack");
    subscribe_persistent(mqtt, "limits", 3600, "l/#", QoS::AtLeastOnce).await;
    disconnected(&mut herald, &["limits"]);
    let big = "b".repeat(2000);
    let messages: Vec<String> = (0..6)
        .map(|i| if i == 2 { big.clone() } else { format!("m{i}") })
        .collect();
    {
        let (client, mut events) = connect(mqtt, "l-pub").await;
        for m in &messages {
            client
                .publish("l/x", QoS::AtLeastOnce, false, m.clone())
                .await
                .unwrap();
        }
        let mut acked = 0;
        while acked < messages.len() {
            if let Event::Incoming(Packet::PubAck(_)) = next(&mut events).await {
                acked += 1;
            }
        }
    }
    // Receive Maximum 2: two go out, unacknowledged.
    let (mut raw, present) = Raw::connect(mqtt, "limits", 2, 1000);
    assert!(present);
    let got = raw.until_pong();
    assert_eq!(payloads(&got), [("m0", false), ("m1", false)]);
    drop(raw);
    disconnected(&mut herald, &["limits"]);
    // Reconnect with Receive Maximum 1: one at a time, resent with DUP;
    // the 2,000-byte one (over 1,000) never comes.
    let (mut raw, present) = Raw::connect(mqtt, "limits", 1, 1000);
    assert!(present);
    let again = raw.until_pong();
    assert_eq!(payloads(&again), [("m0", true)]);
    assert_eq!(again[0].packet_id, got[0].packet_id, "same packet id");
    raw.puback(again[0].packet_id);
    let m1 = raw.publish();
    assert_eq!((m1.payload.as_str(), m1.dup), ("m1", true));
    assert_eq!(raw.until_pong(), [], "one in flight at a time");
    raw.puback(m1.packet_id);
    let m3 = raw.publish();
    assert_eq!((m3.payload.as_str(), m3.dup), ("m3", false), "m2 too large");
    raw.puback(m3.packet_id);
    let m4 = raw.publish();
    assert_eq!(m4.payload, "m4");
    // m4 in flight, m5 queued: kill -9 and restart.
    drop(raw);
    disconnected(&mut herald, &["limits"]);
    barrier(mqtt).await;
    herald.child.kill().unwrap();
    herald.child.wait().unwrap();
    let (_herald, mqtt) = start(&data, "ack");
    let (mut raw, present) = Raw::connect(mqtt, "limits", 1, 1000);
    assert!(present);
    let resent = raw.until_pong();
    assert_eq!(payloads(&resent), [("m4", true)], "Receive Maximum 1");
    assert_eq!(resent[0].packet_id, m4.packet_id, "same packet id");
    raw.puback(m4.packet_id);
    let m5 = raw.publish();
    assert_eq!((m5.payload.as_str(), m5.dup), ("m5", false));
    raw.puback(m5.packet_id);
    assert_eq!(raw.until_pong(), [], "nothing more");
    let _ = std::fs::remove_dir_all(&data);
}

/// A session restored after `kill -9` has the rights its client had (from
/// the ACL file, by client id and address, as at its CONNECT) before the
/// client connects again: a message it may not receive is not queued for
/// it meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_session_keeps_its_access_rights() {
    let data = temp_dir("sessions-acl");
    let acl = data.join("acl.conf");
    write(
        &acl,
        "{deny, {'and', [{client, \"acl-sub\"}, {ipaddr, \"127.0.0.1\"}]}, subscribe, [\"acl/secret\"]}.\n\
         {allow, all}.\n",
    );
    let env = [("HERALD_ACL__FILE", acl.to_str().unwrap())];
    let (mut herald, mqtt) = start_with(&data, "ack", &env);
    subscribe_persistent(mqtt, "acl-sub", 3600, "acl/#", QoS::AtLeastOnce).await;
    disconnected(&mut herald, &["acl-sub"]);
    barrier(mqtt).await;
    herald.child.kill().unwrap();
    herald.child.wait().unwrap();

    let (_herald, mqtt) = start_with(&data, "ack", &env);
    {
        // While "acl-sub" is restored, offline.
        let (client, mut events) = connect(mqtt, "acl-pub").await;
        for topic in ["acl/secret", "acl/open"] {
            client
                .publish(topic, QoS::AtLeastOnce, false, topic)
                .await
                .unwrap();
            while !matches!(next(&mut events).await, Event::Incoming(Packet::PubAck(_))) {}
        }
    }
    let (_client, mut events, present) = connect_persistent(mqtt, "acl-sub", 3600).await;
    assert!(present);
    let got = until_marker(mqtt, &mut events, "acl/end").await;
    assert_eq!(got, ["acl/open"], "acl/secret is not delivered");
    let _ = std::fs::remove_dir_all(&data);
}

/// A QoS 2 receiver as MQTT describes it (method B): a message is
/// delivered when its PUBLISH first comes and its packet id is kept until
/// PUBREL; a PUBLISH under a kept id is a resend and is not delivered
/// again. The kept ids are the client's session state: they outlive its
/// connections.
#[derive(Default)]
struct Qos2Receiver {
    awaiting: std::collections::HashSet<u16>,
    delivered: Vec<String>,
}

impl Qos2Receiver {
    /// Takes one packet from the broker; answers it if `answer`. Returns
    /// the PUBLISH, if it was one.
    fn take(
        &mut self,
        raw: &mut Raw,
        (kind, body): (u8, Vec<u8>),
        answer: bool,
    ) -> Option<RawPublish> {
        match kind & 0xf0 {
            0x30 => {
                let p = raw_publish(kind, &body);
                assert_eq!(p.qos, 2, "QoS 2: {p:?}");
                if self.awaiting.insert(p.packet_id) {
                    self.delivered.push(p.payload.clone());
                }
                if answer {
                    raw.answer(0x50, p.packet_id); // PUBREC
                }
                Some(p)
            }
            0x60 => {
                let id = u16::from_be_bytes([body[0], body[1]]);
                self.awaiting.remove(&id);
                if answer {
                    raw.answer(0x70, id); // PUBCOMP
                }
                None
            }
            0xd0 => None,
            other => panic!("unexpected packet {other:#x}"),
        }
    }

    /// Answers what the broker sends until it is quiet: a PINGREQ's
    /// PINGRESP comes with nothing before it.
    fn settle(&mut self, raw: &mut Raw) {
        loop {
            {
                use std::io::Write;
                raw.stream.write_all(&[0xc0, 0]).unwrap(); // PINGREQ
            }
            let mut quiet = true;
            loop {
                let packet = raw.read();
                if packet.0 & 0xf0 == 0xd0 {
                    break;
                }
                quiet = false;
                self.take(raw, packet, true);
            }
            if quiet {
                return;
            }
        }
    }
}

/// Publishes `payload` on `once/x` at QoS 2 and waits for PUBCOMP.
async fn publish_qos2(mqtt: SocketAddr, payload: &str) {
    let (client, mut events) = connect(mqtt, &format!("pub-{payload}")).await;
    client
        .publish("once/x", QoS::ExactlyOnce, false, payload.to_owned())
        .await
        .unwrap();
    while !matches!(next(&mut events).await, Event::Incoming(Packet::PubComp(_))) {}
}

/// Starts herald on `data` under "ack" with a file size limit it can be
/// given later ([`Running::limit_file_size`]); returns it with its MQTT
/// and metrics addresses.
fn start_limitable(data: &Path) -> (Running, SocketAddr, SocketAddr) {
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let env = [
        ("HERALD_METRICS__BIND", "127.0.0.1:0"),
        ("HERALD_SYS__INTERVAL", "0"),
        ("HERALD_PERSISTENCE__DURABILITY", "ack"),
        ("RUST_LOG", "info"),
    ];
    // No limit to speak of (1 TiB) until one is set.
    let mut herald = Running::spawn_with_file_size_limit(1 << 30, &args, &env);
    let metrics = logged_addr(&herald.stderr_line("serving Prometheus metrics"));
    let mqtt = logged_addr(&herald.stderr_line("listening for MQTT"));
    (herald, mqtt, metrics)
}

/// The store's failed writes so far.
fn write_errors(metrics: SocketAddr) -> u64 {
    let text = http(
        metrics,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    metric(&text, "herald_store_write_errors_total").unwrap_or(0)
}

/// The store cannot write (since before the packet the broker must not
/// answer yet was sent to it): lets the writer fail twice more (the
/// broker has long read that packet, and what it would send has had its
/// time), kills the broker with SIGKILL, and hands whatever did leave
/// before to `rx`.
fn kill_while_writes_fail(
    mut herald: Running,
    metrics: SocketAddr,
    raw: &mut Raw,
    rx: &mut Qos2Receiver,
) {
    wait_metric(
        metrics,
        "herald_store_write_errors_total",
        write_errors(metrics) + 2,
    );
    herald.child.kill().unwrap();
    herald.child.wait().unwrap();
    while let Some(packet) = raw.try_read() {
        rx.take(raw, packet, true);
    }
}

/// QoS 2 is exactly once across `kill -9` even when the broker dies
/// after deciding to send but before the store has written what it
/// sends: a PUBREL does not leave before the PUBREC it answers is on disk
/// (else the PUBLISH would come again after the client completed and
/// forgot its packet id), nor a PUBLISH before its packet id is (else it
/// would come again under another id, which the client takes as a new
/// message). The store's writes are made to fail (`RLIMIT_FSIZE`) just
/// before those records are due, so the window stays open until the kill.
/// The client is a QoS 2 receiver as MQTT describes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_is_exactly_once_when_kill_9_comes_before_the_store_has_written() {
    let data = temp_dir("qos2-once");
    let (mut herald, mqtt, metrics) = start_limitable(&data);
    subscribe_persistent(mqtt, "once", 3600, "once/#", QoS::ExactlyOnce).await;
    disconnected(&mut herald, &["once"]);
    let mut rx = Qos2Receiver::default();
    publish_qos2(mqtt, "m0").await;
    let (mut raw, present) = Raw::connect(mqtt, "once", 100, 1 << 20);
    assert!(present);
    rx.settle(&mut raw);
    assert_eq!(rx.delivered, ["m0"]);

    // 1. The PUBREL window: m1 arrives; the store stops writing; the
    // client answers PUBREC, whose record cannot be written.
    publish_qos2(mqtt, "m1").await;
    let packet = raw.read();
    let m1 = rx.take(&mut raw, packet, false).unwrap();
    assert_eq!((m1.payload.as_str(), m1.dup), ("m1", false));
    herald.limit_file_size(1);
    raw.answer(0x50, m1.packet_id); // PUBREC
    kill_while_writes_fail(herald, metrics, &mut raw, &mut rx);
    let (mut herald, mqtt, metrics) = start_limitable(&data);
    let (mut raw, present) = Raw::connect(mqtt, "once", 100, 1 << 20);
    assert!(present);
    rx.settle(&mut raw);
    assert_eq!(rx.delivered, ["m0", "m1"], "m1 once");

    // 2. The PUBLISH window. m2 goes through whole, so the next packet id
    // is not the one a restarted broker starts from (a resend under a
    // new id must not hide behind an id the client keeps).
    publish_qos2(mqtt, "m2").await;
    rx.settle(&mut raw);
    drop(raw);
    disconnected(&mut herald, &["once"]);
    // m3 is queued for the offline session (acknowledged: stored); the
    // store stops writing; the client comes back: m3's packet id cannot
    // be written.
    publish_qos2(mqtt, "m3").await;
    herald.limit_file_size(1);
    let (mut raw, present) = Raw::connect(mqtt, "once", 100, 1 << 20);
    assert!(present);
    kill_while_writes_fail(herald, metrics, &mut raw, &mut rx);
    let (_herald, mqtt, _) = start_limitable(&data);
    let (mut raw, present) = Raw::connect(mqtt, "once", 100, 1 << 20);
    assert!(present);
    rx.settle(&mut raw);
    assert_eq!(
        rx.delivered,
        ["m0", "m1", "m2", "m3"],
        "each exactly once, in order"
    );
    assert!(rx.awaiting.is_empty(), "every exchange completed");
    let _ = std::fs::remove_dir_all(&data);
}

/// A publisher's QoS 2 packet id released by its PUBREL is forgotten on
/// disk before the PUBCOMP leaves: else, after a `kill -9` in between,
/// the restored broker would take the publisher's next message under that
/// id for a resend of the old one and drop it, acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publishers_released_qos2_packet_id_is_written_before_pubcomp() {
    let data = temp_dir("qos2-in");
    let (mut herald, mqtt, metrics) = start_limitable(&data);
    subscribe_persistent(mqtt, "in-sub", 3600, "in/#", QoS::AtLeastOnce).await;
    disconnected(&mut herald, &["in-sub"]);
    // A persistent publisher: its incoming QoS 2 packet ids are stored.
    let (mut publisher, _) = Raw::connect(mqtt, "in-pub", 100, 1 << 20);
    publisher.send_qos2(1, "in/x", "n1");
    publisher.expect(0x50, 1); // PUBREC: stored
    herald.limit_file_size(1);
    publisher.answer(0x62, 1); // PUBREL
    wait_metric(
        metrics,
        "herald_store_write_errors_total",
        write_errors(metrics) + 2,
    );
    herald.child.kill().unwrap();
    herald.child.wait().unwrap();
    let mut completed = false;
    while let Some((kind, _)) = publisher.try_read() {
        completed |= kind & 0xf0 == 0x70;
    }
    drop(publisher);

    let (_herald, mqtt, _) = start_limitable(&data);
    let (mut publisher, present) = Raw::connect(mqtt, "in-pub", 100, 1 << 20);
    assert!(present);
    if !completed {
        // As MQTT asks of a client that had no PUBCOMP: PUBREL again.
        publisher.answer(0x62, 1);
        publisher.expect(0x70, 1);
    }
    // Packet id 1 is free: a new message under it.
    publisher.send_qos2(1, "in/x", "n2");
    publisher.expect(0x50, 1);
    publisher.answer(0x62, 1);
    publisher.expect(0x70, 1);
    let (_client, mut events, present) = connect_persistent(mqtt, "in-sub", 3600).await;
    assert!(present);
    let got = until_marker(mqtt, &mut events, "in/end").await;
    assert_eq!(got, ["in/x", "in/x"], "n1 and n2, none lost");
    let _ = std::fs::remove_dir_all(&data);
}

/// How a test fills the state log's disk, and gives it space again.
#[derive(Clone, Copy, PartialEq)]
enum Full {
    /// Writes past 8 KiB of a file fail with `EFBIG` (the process's file
    /// size limit): runs anywhere, without privileges.
    FileSizeLimit,
    /// The data dir is a small tmpfs, filled up by another file: a real
    /// `ENOSPC` (root only, as in CI).
    Tmpfs,
}

/// A tmpfs mounted for a test, unmounted when dropped.
struct Mounted(std::path::PathBuf);

impl Mounted {
    fn new(at: &Path, size: &str) -> Mounted {
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs on {}", at.display());
        Mounted(at.to_owned())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` with `dir/filler`.
fn fill(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let block = [0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}

/// The state log's disk fills up: a QoS 1 message for a persistent
/// session that could not be written gets no PUBACK; the error names the
/// file; `/ready` says so; other clients' messages that need no store go
/// on; once writes work again the PUBACK comes by itself, and after `kill
/// -9` the message is there. The subscriber's rights are asked of a real
/// HTTP ACL service (`acl_req`), so its delivery is queued once the answer
/// came: that, too, holds the PUBACK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_holds_the_acknowledgement_and_harms_nothing_else() {
    disk_full(Full::FileSizeLimit).await;
}

/// [`a_full_disk_holds_the_acknowledgement_and_harms_nothing_else`] on a
/// real full file system (root only: skipped otherwise, saying so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_tmpfs_holds_the_acknowledgement_and_harms_nothing_else() {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !root {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    disk_full(Full::Tmpfs).await;
}

async fn disk_full(full: Full) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let conf = temp_dir(if full == Full::Tmpfs {
        "tmpfs-full-conf"
    } else {
        "disk-full-conf"
    });
    let data = conf.join("data");
    std::fs::create_dir(&data).unwrap();
    let _mounted = (full == Full::Tmpfs).then(|| Mounted::new(&data, "256k"));
    let (acl_service, mut acl_requests) =
        herald_webhook::listen::channel("127.0.0.1:0".parse().unwrap(), None)
            .await
            .unwrap();
    let auth = conf.join("emqx_auth_http.conf");
    write(
        &auth,
        &format!(
            "auth.http.acl_req.url = http://{}/acl\n\
             auth.http.acl_req.method = post\n\
             auth.http.acl_req.params = access=%A,clientid=%c,topic=%t\n",
            acl_service.addr
        ),
    );
    let env = [
        ("HERALD_METRICS__BIND", "127.0.0.1:0"),
        ("HERALD_SYS__INTERVAL", "0"),
        ("HERALD_PERSISTENCE__DURABILITY", "ack"),
        ("HERALD_AUTH__HTTP_CONF", auth.to_str().unwrap()),
        ("HERALD_AUTH__ALLOW_ANONYMOUS", "true"),
        ("HERALD_ACL__CACHE_TTL", "0"),
        ("RUST_LOG", "info"),
    ];
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let mut herald = match full {
        Full::FileSizeLimit => Running::spawn_with_file_size_limit(8, &args, &env),
        Full::Tmpfs => Running::spawn(&args, &env),
    };
    let metrics = logged_addr(&herald.stderr_line("serving Prometheus metrics"));
    let mqtt = logged_addr(&herald.stderr_line("listening for MQTT"));
    subscribe_persistent(mqtt, "full-sub", 3600, "full/#", QoS::AtLeastOnce).await;
    disconnected(&mut herald, &["full-sub"]);
    let (free_sub, mut free_events) = connect(mqtt, "free-sub").await;
    free_sub
        .subscribe("free/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    while !matches!(
        next(&mut free_events).await,
        Event::Incoming(Packet::SubAck(_))
    ) {}

    // The publisher's PUBACKs, counted by a task polling its connection.
    let (publisher, mut pub_events) = connect(mqtt, "full-pub").await;
    let acked = Arc::new(AtomicUsize::new(0));
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel();
    let counter = acked.clone();
    let _pump = tokio::spawn(async move {
        while let Ok(event) = pub_events.poll().await {
            if let Event::Incoming(Packet::PubAck(_)) = event {
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = acked_tx.send(());
            }
        }
    });
    let puback = async |rx: &mut tokio::sync::mpsc::UnboundedReceiver<()>| {
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("a PUBACK within the wait")
    };
    publisher
        .publish("full/small", QoS::AtLeastOnce, false, "small")
        .await
        .unwrap();
    puback(&mut acked_rx).await;
    if full == Full::Tmpfs {
        fill(&data);
    }
    // Larger than what the file may still grow by.
    let big = "B".repeat(9000);
    publisher
        .publish("full/big", QoS::AtLeastOnce, false, big.clone())
        .await
        .unwrap();
    let failed = herald.stderr_line("state log: cannot write");
    assert!(failed.contains("state.log"), "names the file: {failed}");
    // Retried and failed again: still no PUBACK.
    wait_metric(metrics, "herald_store_write_errors_total", 2);
    assert_eq!(
        acked.load(Ordering::SeqCst),
        1,
        "no PUBACK for what was not written"
    );
    let ready = http(
        metrics,
        "GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(ready.contains("state log"), "{ready}");
    // The delivery to "full-sub" was asked of the ACL service first.
    let mut asked = Vec::new();
    while let Ok(r) = acl_requests.try_recv() {
        asked.push(String::from_utf8_lossy(&r.body).into_owned());
    }
    assert!(
        asked
            .iter()
            .any(|b| b.contains("clientid=full-sub") && b.contains("full%2Fbig")),
        "the delivery's rights were asked remotely: {asked:?}"
    );
    // Nothing else harmed: a message that needs no store goes through.
    {
        let (other, mut other_events) = connect(mqtt, "free-pub").await;
        other
            .publish("free/x", QoS::AtLeastOnce, false, "free")
            .await
            .unwrap();
        while !matches!(
            next(&mut other_events).await,
            Event::Incoming(Packet::PubAck(_))
        ) {}
    }
    loop {
        if let Event::Incoming(Packet::Publish(p)) = next(&mut free_events).await {
            assert_eq!(&p.payload[..], b"free");
            break;
        }
    }
    assert_eq!(acked.load(Ordering::SeqCst), 1, "still held");
    // Space again: the PUBACK comes by itself.
    match full {
        Full::FileSizeLimit => herald.lift_file_size_limit(),
        Full::Tmpfs => std::fs::remove_file(data.join("filler")).unwrap(),
    }
    puback(&mut acked_rx).await;
    herald.stderr_line("state log: writing again");
    herald.child.kill().unwrap();
    herald.child.wait().unwrap();

    let mut herald = Running::spawn(&args, &env);
    let mqtt = logged_addr(&herald.stderr_line("listening for MQTT"));
    let (_client, mut events, present) = connect_persistent(mqtt, "full-sub", 3600).await;
    assert!(present);
    let mut got = Vec::new();
    while got.len() < 2 {
        if let Event::Incoming(Packet::Publish(p)) = next(&mut events).await {
            got.push(String::from_utf8_lossy(&p.payload).into_owned());
        }
    }
    assert_eq!(got, ["small".to_owned(), big], "both, in order");
    drop(herald);
    drop(_mounted);
    let _ = std::fs::remove_dir_all(&conf);
}
