//! Events the web service refuses for good (400) are kept in the
//! dead-letter file, not dropped: `herald webhook dead-letters` lists them
//! and `herald webhook replay` sends them again, removing what succeeded.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

use herald_webhook::listen::{self, Received, Reply};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod support;
use support::*;

const MESSAGES: usize = 10;

/// Runs `herald <args>` to completion: exit success, stdout, stderr.
fn herald(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .env_clear()
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn payload(r: &Received) -> String {
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    body["payload"].as_str().unwrap_or_default().to_owned()
}

async fn publish(mqtt: SocketAddr) {
    let mut opts = MqttOptions::new("dl-1", mqtt.ip().to_string(), mqtt.port());
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, MESSAGES + 10);
    for i in 0..MESSAGES {
        let kind = if i % 2 == 1 { "bad" } else { "good" };
        client
            .publish("sensors/t", QoS::AtLeastOnce, false, format!("{kind}-{i}"))
            .await
            .unwrap();
    }
    let mut acked = 0;
    while acked < MESSAGES {
        let polled = tokio::time::timeout(WAIT, eventloop.poll())
            .await
            .expect("PUBACKs");
        if let Event::Incoming(Packet::PubAck(_)) = polled.expect("connected") {
            acked += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_events_are_kept_listed_and_replayed() {
    let dir = temp_dir("dead-letters");
    let data = dir.join("data");
    // The web service refuses "bad" payloads with 400 and a reason, until
    // told to take everything.
    let take_all = Arc::new(AtomicBool::new(false));
    let decide = {
        let take_all = take_all.clone();
        Arc::new(move |r: &Received| {
            if payload(r).starts_with("bad") && !take_all.load(Ordering::SeqCst) {
                Reply::Body(400, "rejected: bad payload")
            } else {
                Reply::Status(200)
            }
        })
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let web = listen::serve(
        "127.0.0.1:0".parse().unwrap(),
        decide,
        Arc::new(move |r| {
            let _ = tx.send(r);
            Box::pin(async {})
        }),
    )
    .await
    .unwrap();
    let conf = dir.join("emqx_web_hook.conf");
    write(
        &conf,
        &format!(
            "web.hook.url = http://{}/hook\n\
             web.hook.pool_size = 2\n\
             web.hook.rule.message.publish.1 = {{\"action\": \"on_message_publish\", \"topic\": \"sensors/#\"}}\n",
            web.addr
        ),
    );
    let (data_s, conf_s) = (data.display().to_string(), conf.display().to_string());
    let mut running = Running::spawn(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data_s,
            "--webhook-conf",
            &conf_s,
        ],
        &[
            ("HERALD_METRICS__BIND", "127.0.0.1:0"),
            ("HERALD_SYS__INTERVAL", "0"),
            ("RUST_LOG", "info"),
        ],
    );
    let metrics = logged_addr(&running.stderr_line("serving Prometheus metrics"));
    let mqtt = logged_addr(&running.stderr_line("listening for MQTT"));
    publish(mqtt).await;
    // The good half arrives; the bad half is refused and kept.
    let mut good = Vec::new();
    while good.len() < MESSAGES / 2 {
        let r = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        good.push(payload(&r));
    }
    assert!(good.iter().all(|p| p.starts_with("good")), "{good:?}");
    let until = std::time::Instant::now() + WAIT;
    loop {
        let text = http(
            metrics,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        if text.contains(&format!(
            "herald_webhook_dead_letters_total {}",
            MESSAGES / 2
        )) {
            break;
        }
        assert!(std::time::Instant::now() < until, "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, log) = running.terminate_with_log();
    assert!(status.success(), "{}", log.join("\n"));

    // The file: one JSON object per refused event, owner-only.
    let file = data.join("webhook-dead-letters.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let letters: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let payloads: Vec<&str> = letters
        .iter()
        .map(|l| l["body"]["payload"].as_str().unwrap())
        .collect();
    assert_eq!(payloads, ["bad-1", "bad-3", "bad-5", "bad-7", "bad-9"]);
    for l in &letters {
        assert_eq!(l["status"], 400, "{l}");
        assert_eq!(l["response"], "rejected: bad payload", "{l}");
        assert_eq!(l["action"], "message_publish", "{l}");
        assert_eq!(l["client_id"], "dl-1", "{l}");
        assert!(l["id"].as_str().is_some_and(|id| !id.is_empty()), "{l}");
        assert!(l["time"].as_u64().is_some_and(|t| t > 0), "{l}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "dead letters readable by their owner only");
    }

    // Listed as they are.
    let (ok, out, err) = herald(&["webhook", "dead-letters", "--data-dir", &data_s]);
    assert!(ok, "{err}");
    assert_eq!(out, text);
    assert!(err.contains("5 dead letters"), "{err}");

    // Replayed once the web service takes them: sent with their original
    // ids, removed from the file.
    take_all.store(true, Ordering::SeqCst);
    let (ok, _, err) = herald(&[
        "webhook",
        "replay",
        "--data-dir",
        &data_s,
        "--webhook-conf",
        &conf_s,
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("5 delivered"), "{err}");
    let mut replayed = Vec::new();
    while replayed.len() < MESSAGES / 2 {
        let r = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        let id = r.headers["x-herald-event-id"].to_str().unwrap().to_owned();
        replayed.push((id, payload(&r)));
    }
    let expected: Vec<(String, String)> = letters
        .iter()
        .map(|l| {
            (
                l["id"].as_str().unwrap().to_owned(),
                l["body"]["payload"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(replayed, expected, "every letter, in order, with its id");
    let (ok, out, err) = herald(&["webhook", "dead-letters", "--data-dir", &data_s]);
    assert!(ok && out.is_empty(), "{out}{err}");
    drop(web);
    let _ = std::fs::remove_dir_all(&dir);
}
