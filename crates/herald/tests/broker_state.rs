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
    let mut herald = Running::spawn(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[
            ("HERALD_METRICS__BIND", ""),
            ("HERALD_SYS__INTERVAL", "0"),
            ("HERALD_PERSISTENCE__DURABILITY", durability),
            ("RUST_LOG", "info"),
        ],
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
