//! The release binary with its WebHook spool on a small filesystem that
//! fills up (a 4 MiB tmpfs, mounted when the test runs as root, as CI does;
//! otherwise it says SKIPPED and why): with the web service down, publishers
//! fill the disk; no PUBACK goes out for an event that is not written; when
//! the web service comes up everything drains, every publish is
//! acknowledged and its event delivered, and the space comes back; events
//! acknowledged after that survive `kill -9`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

use herald_webhook::listen;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod support;
use support::*;

const CLIENTS: usize = 4;
/// Per client while the disk fills: 4 × 1,500 events of about 1.3 KiB
/// (8 MiB) on a 4 MiB filesystem.
const FILL: usize = 1_500;
/// Per client after the drain, then `kill -9`.
const LATER: usize = 200;

fn free_port() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap()
}

fn metrics_text(metrics: SocketAddr) -> String {
    http(
        metrics,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
}

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Polls `/metrics` (an external process: nothing to await but its
/// answers) until `check` holds for it.
fn wait_metrics(metrics: SocketAddr, what: &str, check: impl Fn(&str) -> bool) -> String {
    let until = Instant::now() + WAIT * 4;
    loop {
        let text = metrics_text(metrics);
        if check(&text) {
            return text;
        }
        assert!(Instant::now() < until, "{what}; metrics:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

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

/// Publishes `count` QoS 1 messages (payload: the index, a space, padding)
/// from client `id`, counting PUBACKs into `acked`; returns once all are
/// acknowledged.
async fn publish(mqtt: SocketAddr, id: String, from: usize, count: usize, acked: Arc<AtomicU64>) {
    let mut opts = MqttOptions::new(id, mqtt.ip().to_string(), mqtt.port());
    opts.set_keep_alive(Duration::from_secs(60));
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let pad = "p".repeat(1000);
    let sending = tokio::spawn(async move {
        for i in from..from + count {
            client
                .publish("sensors/t", QoS::AtLeastOnce, false, format!("{i} {pad}"))
                .await
                .unwrap();
        }
        client
    });
    let mut got = 0;
    while got < count {
        let polled = tokio::time::timeout(WAIT * 8, eventloop.poll())
            .await
            .expect("the broker answers within the wait")
            .expect("the connection stays up");
        if let Event::Incoming(Packet::PubAck(_)) = polled {
            got += 1;
            acked.fetch_add(1, Ordering::SeqCst);
        }
    }
    let _client = sending.await.unwrap();
}

/// Per client, the payload indexes of the unique events (by event id) the
/// web service accepted (answered 200), in arrival order.
type Collected = Arc<std::sync::Mutex<HashMap<String, Vec<usize>>>>;

/// A web service that records what it accepts; while `refuse_from` is
/// set, it answers 503 (retry later) to events with that index or more.
async fn web_service(
    addr: SocketAddr,
    refuse_from: Arc<AtomicU64>,
) -> (listen::Receiver, Collected) {
    let collected = Collected::default();
    let into = collected.clone();
    let seen = Arc::new(std::sync::Mutex::new(HashSet::new()));
    let decide: listen::Decide = Arc::new(move |r: &listen::Received| {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let index: usize = body["payload"]
            .as_str()
            .and_then(|p| p.split(' ').next()?.parse().ok())
            .unwrap();
        if index as u64 >= refuse_from.load(Ordering::SeqCst) {
            return listen::Reply::Status(503);
        }
        let id = r.headers["x-herald-event-id"].to_str().unwrap().to_owned();
        if seen.lock().unwrap().insert(id) {
            let client = body["from_client_id"].as_str().unwrap().to_owned();
            into.lock().unwrap().entry(client).or_default().push(index);
        }
        listen::Reply::Status(200)
    });
    let (receiver, mut rx) = listen::channel(addr, Some(decide)).await.unwrap();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    (receiver, collected)
}

/// Waits until every client `c<n>` has events `from..to`, in order.
async fn wait_events(collected: &Collected, from: usize, to: usize) {
    let until = Instant::now() + WAIT * 4;
    loop {
        let done = {
            let got = collected.lock().unwrap();
            (0..CLIENTS).all(|c| {
                got.get(&format!("c{c}")).is_some_and(|v| {
                    v.iter().filter(|&&i| (from..to).contains(&i)).count() == to - from
                })
            })
        };
        if done {
            break;
        }
        assert!(
            Instant::now() < until,
            "events {from}..{to} did not all arrive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = collected.lock().unwrap();
    for c in 0..CLIENTS {
        let mine: Vec<usize> = got[&format!("c{c}")]
            .iter()
            .copied()
            .filter(|i| (from..to).contains(i))
            .collect();
        assert_eq!(
            mine,
            (from..to).collect::<Vec<_>>(),
            "c{c}: every event, in order"
        );
    }
}

/// KiB used on the filesystem of `dir` (deleted files still open count).
fn used_kib(dir: &Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["-k", "--output=used"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_withholds_pubacks_drains_frees_its_space_and_later_events_survive_sigkill() {
    let dir = temp_dir("disk-full");
    let Some(fs) = Tmpfs::mount(&dir.join("small"), "4m") else {
        println!(
            "SKIPPED a_full_disk_…_survive_sigkill: needs root to mount a tmpfs (CI runs it as root)"
        );
        return;
    };
    let web = free_port();
    let spool = fs.path().join("spool");
    let conf = dir.join("emqx_web_hook.conf");
    write(
        &conf,
        &format!(
            "web.hook.url = http://{web}/hook\n\
             web.hook.pool_size = 4\n\
             web.hook.spool.dir = {}\n\
             web.hook.retry.initial_backoff = 20ms\n\
             web.hook.retry.max_backoff = 100ms\n\
             web.hook.request.connect_timeout = 200ms\n\
             web.hook.rule.message.publish.1 = {{\"action\": \"on_message_publish\", \"topic\": \"sensors/#\"}}\n",
            spool.display()
        ),
    );
    let conf = conf.display().to_string();
    let data = dir.join("data").display().to_string();
    let (mut herald, mqtt, metrics) = start(&conf, &data);

    // The web service is down: publishers fill the disk.
    let acked: Vec<Arc<AtomicU64>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let publishers: Vec<_> = (0..CLIENTS)
        .map(|c| tokio::spawn(publish(mqtt, format!("c{c}"), 0, FILL, acked[c].clone())))
        .collect();
    let full = wait_metrics(metrics, "the disk never filled", |m| {
        metric(m, "herald_webhook_spool_write_errors_total").is_some_and(|n| n > 0)
            && metric(m, "herald_webhook_spool_healthy") == Some(0)
    });
    herald.log.extend(herald.stderr.try_iter());
    assert!(
        herald
            .log
            .iter()
            .any(|l| l.contains("webhook spool: cannot write")),
        "the trouble is logged:\n{}",
        herald.log.join("\n")
    );
    // Acknowledged means written: never more PUBACKs than committed events
    // (the counter read after the PUBACKs, so it can only be higher).
    let pubacks: u64 = acked.iter().map(|a| a.load(Ordering::SeqCst)).sum();
    let text = metrics_text(metrics);
    let committed = metric(&text, "herald_webhook_spool_committed_total").unwrap();
    assert!(
        pubacks <= committed,
        "{pubacks} PUBACKs but only {committed} events written:\n{text}"
    );
    assert!(
        pubacks < (CLIENTS * FILL) as u64,
        "every publish acknowledged on a full disk:\n{full}"
    );

    // The web service comes up: everything drains, every publish is
    // acknowledged, every event arrives in order, the space comes back.
    let refuse_from = Arc::new(AtomicU64::new(u64::MAX));
    let (_service, collected) = web_service(web, refuse_from.clone()).await;
    for p in publishers {
        p.await.unwrap();
    }
    wait_events(&collected, 0, FILL).await;
    wait_metrics(metrics, "the spool never healed", |m| {
        metric(m, "herald_webhook_spool_healthy") == Some(1)
    });
    let until = Instant::now() + WAIT * 2;
    while used_kib(fs.path()) > 512 {
        assert!(
            Instant::now() < until,
            "space not back after the drain: {} KiB used of 4 MiB",
            used_kib(fs.path())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Later events wait (the web service answers 503 to them): they are
    // acknowledged (written to the healed spool) and the broker is killed
    // right after the last PUBACK.
    refuse_from.store(FILL as u64, Ordering::SeqCst);
    let later: Vec<_> = (0..CLIENTS)
        .map(|c| tokio::spawn(publish(mqtt, format!("c{c}"), FILL, LATER, Arc::default())))
        .collect();
    for p in later {
        p.await.unwrap();
    }
    herald.child.kill().unwrap();
    let _ = herald.child.wait();
    drop(herald);
    assert!(
        collected
            .lock()
            .unwrap()
            .values()
            .flatten()
            .all(|&i| i < FILL),
        "no later event was delivered before the kill"
    );

    // Restart, the web service taking everything: the later events arrive,
    // each client's in order.
    refuse_from.store(u64::MAX, Ordering::SeqCst);
    let (_again, _, _) = start(&conf, &data);
    wait_events(&collected, FILL, FILL + LATER).await;
    drop(fs);
    let _ = std::fs::remove_dir_all(&dir);
}
