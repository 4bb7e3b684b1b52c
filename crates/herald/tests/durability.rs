//! The WebHook spool keeps what it accepted across a crash: with the web
//! service down, events are accepted and committed, the broker is killed
//! with SIGKILL, restarted, and once the web service comes up every
//! committed event arrives, each client's in order.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

use herald_webhook::listen;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

mod support;
use support::*;

const CLIENTS: usize = 5;
const MESSAGES: usize = 100;

/// A port nothing listens on (yet).
fn free_port() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    probe.local_addr().unwrap_or_else(|e| panic!("{e}"))
}

/// Starts herald with the WebHook conf; returns it with its MQTT and
/// metrics addresses.
fn start(conf: &str, data: &str) -> (Running, SocketAddr, SocketAddr) {
    let mut herald = Running::spawn(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data,
            "--webhook-conf",
            conf,
        ],
        &[
            ("HERALD_METRICS__BIND", "127.0.0.1:0"),
            ("HERALD_SYS__INTERVAL", "0"),
            ("RUST_LOG", "info"),
        ],
    );
    let metrics = logged_addr(&herald.stderr_line("serving Prometheus metrics"));
    let mqtt = logged_addr(&herald.stderr_line("listening for MQTT"));
    (herald, mqtt, metrics)
}

/// Publishes MESSAGES QoS 1 messages from each of CLIENTS clients and
/// waits for every PUBACK (the broker has accepted them).
async fn publish_all(mqtt: SocketAddr) {
    publish_round(mqtt, CLIENTS, MESSAGES, 0).await;
}

/// Receives until every client's MESSAGES events arrived; checks order
/// per client after dropping duplicates by event id.
async fn receive_all(rx: &mut tokio::sync::mpsc::UnboundedReceiver<listen::Received>) {
    let mut ids = HashSet::new();
    let mut per_client: HashMap<String, Vec<usize>> = HashMap::new();
    let mut unique = 0;
    while unique < CLIENTS * MESSAGES {
        let r = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {unique} events arrived"))
            .unwrap_or_else(|| panic!("receiver stopped"));
        let id = r.headers["x-herald-event-id"]
            .to_str()
            .unwrap_or_else(|e| panic!("{e}"))
            .to_owned();
        if !ids.insert(id) {
            continue;
        }
        unique += 1;
        let body: serde_json::Value =
            serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}"));
        let client = body["from_client_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let index = body["payload"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .unwrap_or(usize::MAX);
        per_client.entry(client).or_default().push(index);
    }
    assert_eq!(per_client.len(), CLIENTS);
    let expected: Vec<usize> = (0..MESSAGES).collect();
    for (client, got) in per_client {
        assert_eq!(got, expected, "{client}: every event, in order");
    }
}

fn conf_for(dir: &std::path::Path, web: SocketAddr, fsync: &str) -> String {
    let conf = dir.join("emqx_web_hook.conf");
    write(
        &conf,
        &format!(
            "web.hook.url = http://{web}/hook\n\
             web.hook.pool_size = 4\n\
             web.hook.spool.fsync = {fsync}\n\
             web.hook.retry.initial_backoff = 20ms\n\
             web.hook.retry.max_backoff = 100ms\n\
             web.hook.request.connect_timeout = 200ms\n\
             web.hook.rule.message.publish.1 = {{\"action\": \"on_message_publish\", \"topic\": \"sensors/#\"}}\n"
        ),
    );
    conf.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_nothing_that_was_committed() {
    let dir = temp_dir("sigkill");
    let web = free_port();
    let conf = conf_for(&dir, web, "always");
    let data = dir.join("data").display().to_string();

    let (mut herald, mqtt, metrics) = start(&conf, &data);
    publish_all(mqtt).await;
    let total = (CLIENTS * MESSAGES) as u64;
    wait_metric(metrics, "herald_webhook_spool_committed_total", total);
    // Crash: no shutdown code runs.
    herald.child.kill().unwrap_or_else(|e| panic!("{e}"));
    let _ = herald.child.wait();
    drop(herald);

    let (_receiver, mut rx) = listen::channel(web, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (_again, _, _) = start(&conf, &data);
    receive_all(&mut rx).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_loses_nothing() {
    let dir = temp_dir("graceful");
    let web = free_port();
    // fsync never: a graceful stop must still write everything out.
    let conf = conf_for(&dir, web, "never");
    let data = dir.join("data").display().to_string();

    let (herald, mqtt, _metrics) = start(&conf, &data);
    publish_all(mqtt).await;
    // No waiting for commits: SIGTERM right after the last PUBACK.
    assert!(herald.terminate().success());

    let (_receiver, mut rx) = listen::channel(web, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (_again, _, _) = start(&conf, &data);
    receive_all(&mut rx).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Collects what the web service received: per client, the payload
/// indexes of its unique events (by event id) in arrival order.
type Collected = Arc<std::sync::Mutex<HashMap<String, Vec<u64>>>>;

fn collect(mut rx: tokio::sync::mpsc::UnboundedReceiver<listen::Received>) -> Collected {
    let collected = Collected::default();
    let into = collected.clone();
    tokio::spawn(async move {
        let mut ids = HashSet::new();
        while let Some(r) = rx.recv().await {
            let Some(id) = r
                .headers
                .get("x-herald-event-id")
                .and_then(|v| v.to_str().ok())
            else {
                continue;
            };
            if !ids.insert(id.to_owned()) {
                continue;
            }
            let Ok(body) = serde_json::from_slice::<serde_json::Value>(&r.body) else {
                continue;
            };
            let client = body["from_client_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let index = body["payload"]
                .as_str()
                .and_then(|p| p.parse().ok())
                .unwrap_or(u64::MAX);
            into.lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(client)
                .or_default()
                .push(index);
        }
    });
    collected
}

/// `kill -9` in the middle of a flood of QoS 1 publishes from 10 raw-socket
/// clients, at several points (with the web service up, so some events are
/// delivered before the kill and the rest after the restart): every
/// PUBACKed message's event reaches the web service, each client's in
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_flood_loses_no_acknowledged_event() {
    const PUBLISHERS: usize = 10;
    let dir = temp_dir("sigkill-flood");
    let web = free_port();
    let conf = conf_for(&dir, web, "interval");
    let data = dir.join("data").display().to_string();
    let (_receiver, rx) = listen::channel(web, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let collected = collect(rx);

    // Kill when the publishers together have this many PUBACKs.
    let kill_points = [2_000u64, 6_000, 12_000];
    let mut acked_by_client: HashMap<String, u64> = HashMap::new();
    for (round, kill_at) in kill_points.iter().enumerate() {
        let (mut herald, mqtt, _) = start(&conf, &data);
        let counters: Vec<(String, Arc<std::sync::atomic::AtomicU64>)> = (0..PUBLISHERS)
            .map(|c| (format!("r{round}-c{c}"), Arc::default()))
            .collect();
        let threads: Vec<_> = counters
            .iter()
            .map(|(id, acked)| {
                let (id, acked) = (id.clone(), acked.clone());
                std::thread::spawn(move || flood::run(mqtt, &id, "sensors/t", acked))
            })
            .collect();
        let total = || {
            counters
                .iter()
                .map(|(_, a)| a.load(std::sync::atomic::Ordering::SeqCst))
                .sum::<u64>()
        };
        let until = std::time::Instant::now() + WAIT * 4;
        while total() < *kill_at {
            assert!(
                std::time::Instant::now() < until,
                "only {} PUBACKs; log:\n{}",
                total(),
                herald.log.join("\n")
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // Crash in the middle of the flood: no shutdown code runs.
        herald.child.kill().unwrap_or_else(|e| panic!("{e}"));
        let _ = herald.child.wait();
        for t in threads {
            if let Err(panic) = t.join() {
                std::panic::resume_unwind(panic);
            }
        }
        for (id, acked) in &counters {
            acked_by_client.insert(id.clone(), acked.load(std::sync::atomic::Ordering::SeqCst));
        }
        drop(herald);
    }

    // Restart: whatever was acknowledged and not yet delivered arrives now.
    let (_again, _, _) = start(&conf, &data);
    let until = std::time::Instant::now() + WAIT * 4;
    loop {
        let missing: Vec<String> = {
            let got = collected.lock().unwrap_or_else(|e| e.into_inner());
            acked_by_client
                .iter()
                .filter(|(id, acked)| {
                    let seen = got
                        .get(*id)
                        .map_or(0, |v| v.iter().filter(|&&i| i < **acked).count() as u64);
                    seen < **acked
                })
                .map(|(id, acked)| format!("{id}: {acked} acknowledged"))
                .collect()
        };
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "acknowledged events never arrived: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = collected.lock().unwrap_or_else(|e| e.into_inner());
    for (id, acked) in &acked_by_client {
        // A client the kill caught before its first PUBACK has no events.
        let events = got.get(id).map(Vec::as_slice).unwrap_or_default();
        assert!(
            events.windows(2).all(|w| w[0] < w[1]),
            "{id}: events in publish order"
        );
        let acknowledged: Vec<u64> = events.iter().copied().filter(|&i| i < *acked).collect();
        assert_eq!(
            acknowledged,
            (0..*acked).collect::<Vec<_>>(),
            "{id}: every acknowledged event"
        );
    }
    assert!(
        acked_by_client.values().sum::<u64>() >= kill_points.iter().sum::<u64>(),
        "the flood ran"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Publishes `messages` QoS 1 messages (payloads `offset..offset +
/// messages`) to `sensors/t` from each of `clients` clients `dev-<n>`, and
/// waits for every PUBACK.
async fn publish_round(mqtt: SocketAddr, clients: usize, messages: usize, offset: usize) {
    let mut tasks = Vec::new();
    for c in 0..clients {
        tasks.push(tokio::spawn(async move {
            let mut opts = MqttOptions::new(format!("dev-{c}"), mqtt.ip().to_string(), mqtt.port());
            opts.set_keep_alive(Duration::from_secs(30));
            let (client, mut eventloop) = AsyncClient::new(opts, messages + 10);
            for i in 0..messages {
                client
                    .publish(
                        "sensors/t",
                        QoS::AtLeastOnce,
                        false,
                        (offset + i).to_string(),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            let mut acked = 0;
            while acked < messages {
                let Ok(polled) = tokio::time::timeout(WAIT, eventloop.poll()).await else {
                    panic!("no PUBACK within {WAIT:?}");
                };
                if let Event::Incoming(Packet::PubAck(_)) = polled.expect("the connection stays up")
                {
                    acked += 1;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Restarts with `web.hook.pool_size` 32, then 2, then 8, events spooled
/// each time (the web service down, the broker killed with SIGKILL): the
/// lanes of every earlier layout are delivered, nothing is lost, each
/// client's events arrive in order, and the drained layouts' files are
/// removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_size_changes_across_restarts_lose_and_reorder_nothing() {
    const DEVICES: usize = 24;
    const PER_ROUND: usize = 40;
    let dir = temp_dir("pool-size");
    let web = free_port();
    let data = dir.join("data").display().to_string();
    let conf = dir.join("emqx_web_hook.conf");
    let write_conf = |pool: usize| {
        write(
            &conf,
            &format!(
                "web.hook.url = http://{web}/hook\n\
                 web.hook.pool_size = {pool}\n\
                 web.hook.retry.initial_backoff = 20ms\n\
                 web.hook.retry.max_backoff = 100ms\n\
                 web.hook.request.connect_timeout = 200ms\n\
                 web.hook.rule.message.publish.1 = {{\"action\": \"on_message_publish\", \"topic\": \"sensors/#\"}}\n"
            ),
        );
    };
    let conf_path = conf.display().to_string();
    // Rounds 1 and 2: the web service is down; events wait in the spool.
    for (round, pool) in [32usize, 2].into_iter().enumerate() {
        write_conf(pool);
        let (mut herald, mqtt, metrics) = start(&conf_path, &data);
        publish_round(mqtt, DEVICES, PER_ROUND, round * PER_ROUND).await;
        wait_metric(
            metrics,
            "herald_webhook_spool_committed_total",
            (DEVICES * PER_ROUND) as u64,
        );
        herald.child.kill().unwrap_or_else(|e| panic!("{e}"));
        let _ = herald.child.wait();
    }
    // Round 3: pool_size 8, the web service up, more events published
    // while the older layouts drain.
    write_conf(8);
    let (_receiver, rx) = listen::channel(web, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let collected = collect(rx);
    let (_again, mqtt, _) = start(&conf_path, &data);
    publish_round(mqtt, DEVICES, PER_ROUND, 2 * PER_ROUND).await;
    let expected: Vec<u64> = (0..(3 * PER_ROUND) as u64).collect();
    let until = std::time::Instant::now() + WAIT * 2;
    loop {
        let short: Vec<String> = {
            let got = collected.lock().unwrap_or_else(|e| e.into_inner());
            (0..DEVICES)
                .map(|c| format!("dev-{c}"))
                .filter(|id| got.get(id).map_or(0, Vec::len) < expected.len())
                .collect()
        };
        if short.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "events missing for {short:?}: {:?}",
            collected
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&short[0])
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let got = collected.lock().unwrap_or_else(|e| e.into_inner());
        for c in 0..DEVICES {
            let id = format!("dev-{c}");
            assert_eq!(got[&id], expected, "{id}: every event, in order");
        }
    }
    // The drained layouts' files go: only the newest generation is left.
    let spool = dir.join("data").join("webhook");
    let until = std::time::Instant::now() + WAIT;
    loop {
        let left: Vec<String> = std::fs::read_dir(&spool)
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("lane-") || n.starts_with("gen-"))
            .collect();
        if left == ["gen-000002"] {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "drained generations not removed: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
