//! SIGHUP reloads the WebHook configuration of the running binary: under
//! load, a new URL, rule and pool size take effect without dropping an
//! MQTT connection or losing or reordering an event; a file that cannot be
//! used keeps the running configuration.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

use herald_webhook::listen::{self, Received, Reply};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

mod support;
use support::*;

/// What both web services received, in the order they received it (each
/// request is recorded before it is answered, and a lane sends a client's
/// next event only after the answer to the one before), with which service
/// got it.
type Log = Arc<std::sync::Mutex<Vec<(&'static str, Received)>>>;

async fn web_service(name: &'static str, log: &Log) -> listen::Receiver {
    let log = log.clone();
    listen::serve(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(|_: &Received| Reply::Status(200)),
        Arc::new(move |r| {
            log.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((name, r));
            Box::pin(async {})
        }),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

fn conf(path: &Path, url: SocketAddr, pool: usize, topic: &str) {
    write(
        path,
        &format!(
            "web.hook.url = http://{url}/hook\n\
             web.hook.pool_size = {pool}\n\
             web.hook.retry.initial_backoff = 20ms\n\
             web.hook.retry.max_backoff = 100ms\n\
             web.hook.rule.message.publish.1 = {{\"action\": \"on_message_publish\", \"topic\": \"{topic}\"}}\n"
        ),
    );
}

fn hangup(herald: &Running) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &herald.child.id().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(status.success());
}

/// One client publishing `count` QoS 1 messages (payloads `0..count`) to
/// `topic`, counting PUBACKs into `acked`; panics if its connection drops.
async fn publisher(
    mqtt: SocketAddr,
    id: String,
    topic: &'static str,
    count: u64,
    acked: Arc<AtomicU64>,
) {
    let mut opts = MqttOptions::new(id, mqtt.ip().to_string(), mqtt.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(50);
    let (client, mut eventloop) = AsyncClient::new(opts, 100);
    let sender = tokio::spawn(async move {
        for i in 0..count {
            client
                .publish(topic, QoS::AtLeastOnce, false, i.to_string())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        client
    });
    let mut mine = 0;
    while mine < count {
        let Ok(polled) = tokio::time::timeout(WAIT, eventloop.poll()).await else {
            panic!("no PUBACK within {WAIT:?}");
        };
        if let Event::Incoming(Packet::PubAck(_)) = polled.expect("the connection stays up") {
            mine += 1;
            acked.fetch_add(1, Ordering::SeqCst);
        }
    }
    let _client = sender.await.unwrap_or_else(|e| panic!("{e}"));
}

/// The events in `log` as (service, client, topic, payload), duplicates
/// (same event id) left out.
fn events(log: &Log) -> Vec<(&'static str, String, String, String)> {
    let log = log.lock().unwrap_or_else(|e| e.into_inner());
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (service, r) in log.iter() {
        let id = r.headers["x-herald-event-id"].to_str().unwrap().to_owned();
        if !seen.insert(id) {
            continue;
        }
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let field = |k: &str| body[k].as_str().unwrap_or_default().to_owned();
        out.push((
            *service,
            field("from_client_id"),
            field("topic"),
            field("payload"),
        ));
    }
    out
}

/// Polls `done` until it holds (what it looks at is an external process's
/// doing: there is nothing to await but its effects).
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let until = std::time::Instant::now() + WAIT * 2;
    while !done() {
        assert!(std::time::Instant::now() < until, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_under_load_changes_url_rule_and_pool_size_losing_nothing() {
    const CLIENTS: usize = 8;
    const MESSAGES: u64 = 600;
    let dir = temp_dir("reload");
    let log = Log::default();
    let a = web_service("A", &log).await;
    let b = web_service("B", &log).await;
    let path = dir.join("emqx_web_hook.conf");
    conf(&path, a.addr, 4, "sensors/#");
    let mut herald = Running::spawn(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &dir.join("data").display().to_string(),
            "--webhook-conf",
            &path.display().to_string(),
        ],
        &[
            ("HERALD_METRICS__BIND", "127.0.0.1:0"),
            ("HERALD_SYS__INTERVAL", "0"),
            ("RUST_LOG", "info"),
        ],
    );
    let mqtt = logged_addr(&herald.stderr_line("listening for MQTT"));

    // Not matched by the first rule set: never sent.
    let none = Arc::new(AtomicU64::new(0));
    publisher(mqtt, "probe-before".into(), "probe/x", 1, none.clone()).await;

    let acked = Arc::new(AtomicU64::new(0));
    let flood: Vec<_> = (0..CLIENTS)
        .map(|c| {
            tokio::spawn(publisher(
                mqtt,
                format!("dev-{c}"),
                "sensors/t",
                MESSAGES,
                acked.clone(),
            ))
        })
        .collect();
    // Under load: a third of the flood acknowledged, then the new file.
    let total = CLIENTS as u64 * MESSAGES;
    wait_for("the flood runs", || {
        acked.load(Ordering::SeqCst) >= total / 3
    })
    .await;
    conf(&path, b.addr, 2, "#");
    hangup(&herald);
    herald.stderr_line("webhook configuration reloaded");
    let at_reload = acked.load(Ordering::SeqCst);
    for task in flood {
        task.await.unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(at_reload < total, "the reload happened under load");

    // The new rule matches what the old one did not.
    publisher(mqtt, "probe-after".into(), "probe/x", 1, none.clone()).await;

    wait_for("every acknowledged event arrives", || {
        let got = events(&log);
        got.iter().filter(|e| e.2 == "sensors/t").count() as u64 >= total
            && got.iter().any(|e| e.1 == "probe-after")
    })
    .await;
    let got = events(&log);
    let mut per_client: HashMap<&str, Vec<u64>> = HashMap::new();
    for (_, client, topic, payload) in &got {
        if topic == "sensors/t" {
            per_client
                .entry(client)
                .or_default()
                .push(payload.parse().unwrap());
        }
    }
    for c in 0..CLIENTS {
        let id = format!("dev-{c}");
        assert_eq!(
            per_client[id.as_str()],
            (0..MESSAGES).collect::<Vec<_>>(),
            "{id}: every event once, in order, across the reload"
        );
    }
    assert!(
        got.iter().all(|e| e.1 != "probe-before"),
        "the old rule set did not match probe/x"
    );
    let on_a = got.iter().filter(|e| e.0 == "A").count();
    let on_b = got.iter().filter(|e| e.0 == "B").count();
    assert!(on_a > 0 && on_b > 0, "A got {on_a}, B got {on_b}");
    assert!(
        got.iter().any(|e| e.0 == "B" && e.1 == "probe-after"),
        "the new URL and rule"
    );

    // A file that cannot be used: the running configuration stays.
    write(
        &path,
        "web.hook.url = http://127.0.0.1:1/\nweb.hook.pool_sise = 3\n",
    );
    hangup(&herald);
    let line = herald.stderr_line("WebHook configuration not reloaded");
    assert!(
        line.contains("web.hook.pool_sise"),
        "names the problem: {line}"
    );
    publisher(mqtt, "probe-bad".into(), "other/y", 1, none.clone()).await;
    wait_for("the running configuration still delivers", || {
        events(&log)
            .iter()
            .any(|e| e.0 == "B" && e.1 == "probe-bad")
    })
    .await;
    let (status, log) = herald.terminate_with_log();
    assert!(status.success(), "{}", log.join("\n"));
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}
