//! The WebHook spool keeps what it accepted across a crash: with the web
//! service down, events are accepted and committed, the broker is killed
//! with SIGKILL, restarted, and once the web service comes up every
//! committed event arrives, each client's in order.

use herald_webhook::listen;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
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

/// The value of a metric line in Prometheus text.
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
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
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        tasks.push(tokio::spawn(async move {
            let mut opts = MqttOptions::new(format!("dev-{c}"), mqtt.ip().to_string(), mqtt.port());
            opts.set_keep_alive(Duration::from_secs(30));
            let (client, mut eventloop) = AsyncClient::new(opts, MESSAGES + 10);
            for i in 0..MESSAGES {
                client
                    .publish("sensors/t", QoS::AtLeastOnce, false, i.to_string())
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            let mut acked = 0;
            while acked < MESSAGES {
                let Ok(polled) = tokio::time::timeout(WAIT, eventloop.poll()).await else {
                    panic!("no PUBACK within {WAIT:?}");
                };
                let event = polled.expect("the connection stays up");
                if let Event::Incoming(Packet::PubAck(_)) = event {
                    acked += 1;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Polls `/metrics` until `name` reaches `at_least` (the process is
/// external: there is nothing to await but its answers).
fn wait_metric(metrics: SocketAddr, name: &str, at_least: u64) {
    let until = std::time::Instant::now() + WAIT;
    loop {
        let text = http(
            metrics,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        if metric(&text, name).is_some_and(|v| v >= at_least) {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "{name} < {at_least}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
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
