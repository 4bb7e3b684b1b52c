//! The `herald` binary with the WebHook: an EMQX conf with a mistake stops
//! start-up (exit 2, the file, line and key named, nothing started); a
//! good one runs the WebHook and `/metrics` until SIGTERM; `herald webhook
//! listen` prints what it receives.
//!
//! Processes are watched through their output, read on threads into
//! channels; nothing sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

use std::process::{Command, Output};
use std::time::Duration;

use herald_webhook::listen;

mod support;
use support::*;

/// Runs `herald` to completion with only the environment in `env`.
fn herald(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    // Metrics on a free port unless a test says otherwise.
    // State in a folder of the test's own unless a test says otherwise
    // (never ./data in the crate's folder).
    let data = std::env::temp_dir().join(format!("herald-bin-test-{}-data", std::process::id()));
    cmd.env_clear()
        .args(args)
        .env("HERALD_METRICS__BIND", "127.0.0.1:0")
        .env("HERALD_DATA_DIR", &data);
    for (k, v) in env {
        cmd.env(k, v);
    }
    match cmd.output() {
        Ok(output) => output,
        Err(err) => panic!("cannot run herald: {err}"),
    }
}

/// Exit status 2, every needle in stderr, and nothing started.
fn assert_refused(output: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "missing {needle:?} in: {stderr}");
    }
    assert!(!stderr.contains("listening for MQTT"), "started: {stderr}");
}

#[test]
fn emqx_conf_mistakes_stop_start_up_naming_file_line_and_key() {
    let dir = temp_dir("bad-conf");
    let cases = [
        (
            "unknown-key.conf",
            "web.hook.url = http://127.0.0.1:9/hook\n\n# a comment\nweb.hook.pool_sise = 8\n",
            ":4: web.hook.pool_sise: unknown key",
        ),
        (
            "bad-json.conf",
            "web.hook.url = http://127.0.0.1:9/hook\nweb.hook.rule.client.connect.1 = {\"action\": \"on_client_connect\"\n",
            ":2: web.hook.rule.client.connect.1: rule is not valid JSON",
        ),
        (
            "wrong-action.conf",
            "## EMQX style\nweb.hook.url = http://127.0.0.1:9/hook\nweb.hook.rule.client.connected.1 = {\"action\": \"on_client_connect\"}\n",
            ":3: web.hook.rule.client.connected.1: action `on_client_connect` does not belong to event `client.connected`",
        ),
    ];
    for (file, text, message) in cases {
        let conf = dir.join(file);
        write(&conf, text);
        let conf = conf.display().to_string();
        let expected = format!("{conf}{message}");
        // --webhook-conf, the environment, and the config file's key.
        let output = herald(&["--webhook-conf", &conf, "--listen", "127.0.0.1:0"], &[]);
        assert_refused(&output, &[&expected]);
        let output = herald(
            &["--listen", "127.0.0.1:0"],
            &[("HERALD_WEBHOOK_CONF", &conf)],
        );
        assert_refused(&output, &[&expected]);
        let toml = dir.join(format!("{file}.toml"));
        write(&toml, &format!("webhook_conf = {conf:?}\n"));
        let output = herald(
            &[
                "--config",
                &toml.display().to_string(),
                "--listen",
                "127.0.0.1:0",
            ],
            &[],
        );
        assert_refused(&output, &[&expected]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn webhook_table_mistakes_name_herald_toml_and_line() {
    let dir = temp_dir("bad-table");
    let toml = dir.join("herald.toml");
    write(
        &toml,
        "[listener]\nbind = [\"127.0.0.1:0\"]\n\n[webhook]\nurl = \"http://127.0.0.1:9/\"\npool_size = 0\n",
    );
    let toml = toml.display().to_string();
    let output = herald(&["--config", &toml], &[]);
    assert_refused(
        &output,
        &[&format!("{toml}:6: web.hook.pool_size: `0` is not")],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unreadable_certificate_file_stops_start_up() {
    let dir = temp_dir("bad-cert");
    let conf = dir.join("hook.conf");
    write(
        &conf,
        "web.hook.url = https://127.0.0.1:9/\nweb.hook.ssl.cacertfile = /nonexistent/ca.pem\nweb.hook.spool.mode = memory\n",
    );
    let output = herald(
        &[
            "--webhook-conf",
            &conf.display().to_string(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[("HERALD_METRICS__BIND", "")],
    );
    assert_refused(&output, &["web.hook.ssl.cacertfile", "/nonexistent/ca.pem"]);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn next_body(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<listen::Received>,
) -> serde_json::Value {
    let r = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no WebHook request within {WAIT:?}"))
        .unwrap_or_else(|| panic!("receiver stopped"));
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_the_webhook_and_metrics_until_sigterm() {
    let (receiver, mut rx) = listen::channel(
        "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let dir = temp_dir("run");
    let conf = dir.join("emqx_web_hook.conf");
    write(
        &conf,
        &format!(
            "web.hook.url = http://{}/hook\n\
             web.hook.rule.client.connect.1 = {{\"action\": \"on_client_connect\"}}\n\
             web.hook.rule.client.disconnected.1 = {{\"action\": \"on_client_disconnected\"}}\n",
            receiver.addr
        ),
    );
    // The [webhook] table adds a rule and a header over the file's keys.
    let toml = dir.join("herald.toml");
    write(
        &toml,
        "[webhook]\nheaders.X_From = \"herald.toml\"\n\"web.hook.rule.message.publish.1\" = '{\"action\": \"on_message_publish\"}'\n",
    );
    let data = dir.join("data");
    let args = [
        "--config".to_owned(),
        toml.display().to_string(),
        "--webhook-conf".to_owned(),
        conf.display().to_string(),
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--data-dir".to_owned(),
        data.display().to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = [
        ("HERALD_METRICS__BIND", "127.0.0.1:0"),
        ("RUST_LOG", "info"),
    ];
    let mut herald = Running::spawn(&args, &env);
    let metrics = logged_addr(&herald.stderr_line("serving Prometheus metrics"));
    let mqtt = logged_addr(&herald.stderr_line("listening for MQTT"));

    let mut options = rumqttc::MqttOptions::new("bin1", mqtt.ip().to_string(), mqtt.port());
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 10);
    let pump = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let connect = next_body(&mut rx).await;
    assert_eq!(connect["action"], "client_connect");
    assert_eq!(connect["clientid"], "bin1");
    assert_eq!(connect["proto_ver"], 4);
    client
        .publish("demo/x", rumqttc::QoS::AtLeastOnce, false, "hi")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let publish = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no publish request"))
        .unwrap_or_else(|| panic!("receiver stopped"));
    let body: serde_json::Value =
        serde_json::from_slice(&publish.body).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body["action"], "message_publish");
    assert_eq!(body["payload"], "hi");
    assert_eq!(
        publish.headers.get("x-from").and_then(|v| v.to_str().ok()),
        Some("herald.toml")
    );

    // /metrics: the broker's counters and the WebHook's.
    let answer = tokio::task::spawn_blocking(move || {
        http(
            metrics,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("text/plain; version=0.0.4"), "{answer}");
    for line in [
        "herald_connections{listener=\"tcp\"} 1\n",
        "herald_connections{listener=\"tls\"} 0\n",
        "herald_messages_received_total 1\n",
        "herald_webhook_events_matched_total{event=\"client.connect\"} 1\n",
        "herald_webhook_events_matched_total{event=\"message.publish\"} 1\n",
        "herald_webhook_spool_bytes ",
    ] {
        assert!(answer.contains(line), "missing {line:?} in:\n{answer}");
    }
    let not_found = tokio::task::spawn_blocking(move || {
        http(
            metrics,
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(not_found.starts_with("HTTP/1.1 404"), "{not_found}");
    // The spool lives in the data directory.
    assert!(data.join("webhook").is_dir());

    // SIGTERM: the broker stops first, so the client's disconnect is
    // captured: sent before the WebHook stops, or kept in the spool and
    // sent by the next start with the same data directory.
    let status = tokio::task::spawn_blocking(move || herald.terminate())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status:?}");
    let _ = pump.await;
    let mut again = Running::spawn(&args, &env);
    again.stderr_line("listening for MQTT");
    let gone = next_body(&mut rx).await;
    assert_eq!(gone["action"], "client_disconnected");
    assert_eq!(gone["clientid"], "bin1");
    let status = tokio::task::spawn_blocking(move || again.terminate())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn webhook_listen_prints_each_request_and_ignores_broker_settings() {
    // HERALD_* variables are the broker's business; a bad one does not
    // matter to the receiver.
    let mut listen = Running::spawn(
        &["webhook", "listen", "--bind", "127.0.0.1:0"],
        &[("HERALD_NOT_A_SETTING", "1"), ("RUST_LOG", "info")],
    );
    let line = listen.stderr_line("waiting for WebHook requests");
    let addr = logged_addr(&line);
    let body = r#"{"action":"client_connect","clientid":"c1","username":"undefined","ipaddress":"127.0.0.1","keepalive":60,"proto_ver":5}"#;
    let answer = http(
        addr,
        &format!(
            "POST /hook HTTP/1.1\r\nHost: {addr}\r\ncontent-type: application/json\r\nx-herald-event-id: abc-1-0\r\ncontent-length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut printed = Vec::new();
    loop {
        let line = listen.stdout_line();
        let end = line == "}";
        printed.push(line);
        if end {
            break;
        }
    }
    // The request line and headers, then the event.
    assert!(
        printed[0].starts_with("── POST /hook from 127.0.0.1:")
            && printed[0].ends_with(", answered 200"),
        "{printed:?}"
    );
    assert!(
        printed.contains(&"x-herald-event-id: abc-1-0".to_owned()),
        "{printed:?}"
    );
    assert!(
        printed.contains(&"── client_connect  event id abc-1-0".to_owned()),
        "{printed:?}"
    );
    assert!(
        printed.contains(&"  \"clientid\": \"c1\",".to_owned()),
        "{printed:?}"
    );
    let status = listen.terminate();
    assert!(status.success(), "{status:?}");
}
