//! What an operator relies on, against the real binary: `/health` and
//! `/ready` (not ready when the data directory cannot take a write),
//! systemd's readiness datagram, one INFO line per client connect and
//! disconnect (and none with `[log] connections = false`), a start-up
//! failure printed once with a hint, and relative paths in a config file
//! read against the file's folder.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use support::{Running, WAIT, http, logged_addr, temp_dir, write};

/// Starts the broker on free ports with `data_dir`; returns it with its
/// MQTT and metrics addresses.
fn start(data_dir: &str, env: &[(&str, &str)]) -> (Running, SocketAddr, SocketAddr) {
    let mut all = vec![("HERALD_METRICS__BIND", "127.0.0.1:0")];
    all.extend_from_slice(env);
    let mut herald = Running::spawn(&["--listen", "127.0.0.1:0", "--data-dir", data_dir], &all);
    let metrics = logged_addr(&herald.stderr_line("serving Prometheus metrics"));
    let mqtt = logged_addr(&herald.stderr_line("listening for MQTT"));
    (herald, mqtt, metrics)
}

fn get(addr: SocketAddr, path: &str) -> String {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
}

/// Polls `path` until its answer starts with `status` (the process runs on
/// its own; there is nothing to await but its answers).
fn wait_for(addr: SocketAddr, path: &str, status: &str) -> String {
    let until = Instant::now() + WAIT;
    loop {
        let answer = get(addr, path);
        if answer.starts_with(status) || Instant::now() > until {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn health_and_ready_follow_the_data_directory() {
    let dir = temp_dir("ready");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap_or_else(|e| panic!("{e}"));
    let socket_path = dir.join("notify.sock");
    let systemd = UnixDatagram::bind(&socket_path).unwrap_or_else(|e| panic!("{e}"));
    systemd
        .set_read_timeout(Some(WAIT))
        .unwrap_or_else(|e| panic!("{e}"));
    let notify = socket_path.display().to_string();
    let (mut herald, _mqtt, metrics) = start(
        &data.display().to_string(),
        &[("NOTIFY_SOCKET", notify.as_str())],
    );

    // systemd hears READY=1 once the listeners are bound.
    let mut datagram = [0u8; 64];
    let n = systemd
        .recv(&mut datagram)
        .unwrap_or_else(|e| panic!("no READY=1 from herald: {e}"));
    assert_eq!(&datagram[..n], b"READY=1");

    let health = get(metrics, "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
    let ready = get(metrics, "/ready");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(ready.ends_with("\r\n\r\nready\n"), "{ready}");

    // The data directory is replaced by a regular file: nothing can be
    // written below it, not even by root (permission bits would not stop
    // root, as CI runs).
    std::fs::remove_dir_all(&data).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&data, b"not a directory").unwrap_or_else(|e| panic!("{e}"));
    let not_ready = wait_for(metrics, "/ready", "HTTP/1.1 503");
    assert!(not_ready.starts_with("HTTP/1.1 503"), "{not_ready}");
    assert!(
        not_ready.contains(&format!(
            "data directory {} is not writable",
            data.display()
        )),
        "{not_ready}"
    );
    let health = get(metrics, "/health");
    assert!(
        health.starts_with("HTTP/1.1 200"),
        "alive all the same: {health}"
    );

    std::fs::remove_file(&data).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(&data).unwrap_or_else(|e| panic!("{e}"));
    let ready = wait_for(metrics, "/ready", "HTTP/1.1 200");
    assert!(ready.starts_with("HTTP/1.1 200"), "ready again: {ready}");

    // `systemctl reload` sends SIGHUP: logged, never fatal.
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &herald.child.id().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(hup.success());
    herald.stderr_line("signal=\"SIGHUP\"");
    let health = get(metrics, "/health");
    assert!(
        health.starts_with("HTTP/1.1 200"),
        "alive after SIGHUP: {health}"
    );

    let status = herald.terminate();
    assert!(status.success(), "{status:?}");
    let n = systemd
        .recv(&mut datagram)
        .unwrap_or_else(|e| panic!("no STOPPING=1 from herald: {e}"));
    assert_eq!(&datagram[..n], b"STOPPING=1");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A 3.1.1 CONNECT with a clean session and this client id.
fn connect_packet(client_id: &str) -> Vec<u8> {
    let id = client_id.as_bytes();
    let mut packet = vec![0x10, (10 + 2 + id.len()) as u8];
    packet.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60]);
    packet.extend_from_slice(&[0, id.len() as u8]);
    packet.extend_from_slice(id);
    packet
}

/// Connects with a raw 3.1.1 CONNECT and waits for the CONNACK.
fn connect(mqtt: SocketAddr, client_id: &str) -> TcpStream {
    let mut stream = TcpStream::connect(mqtt).unwrap_or_else(|e| panic!("{e}"));
    stream
        .set_read_timeout(Some(WAIT))
        .unwrap_or_else(|e| panic!("{e}"));
    stream
        .write_all(&connect_packet(client_id))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut connack = [0u8; 4];
    stream
        .read_exact(&mut connack)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(connack, [0x20, 2, 0, 0]);
    stream
}

#[test]
fn client_connects_and_disconnects_are_logged() {
    let dir = temp_dir("conn-log");
    let (mut herald, mqtt, _metrics) = start(&dir.display().to_string(), &[]);

    let mut polite = connect(mqtt, "ops-polite");
    let local = polite.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let line = herald.stderr_line("client connected");
    assert!(line.contains(" INFO "), "{line}");
    for field in [
        "client_id=ops-polite".to_owned(),
        format!("peer={local}"),
        "protocol=3.1.1".to_owned(),
    ] {
        assert!(line.contains(&field), "{field} missing: {line}");
    }
    polite
        .write_all(&[0xE0, 0])
        .unwrap_or_else(|e| panic!("{e}"));
    let line = herald.stderr_line("client disconnected");
    for field in [
        "client_id=ops-polite".to_owned(),
        format!("peer={local}"),
        "protocol=3.1.1".to_owned(),
        "reason=normal".to_owned(),
    ] {
        assert!(line.contains(&field), "{field} missing: {line}");
    }

    let rude = connect(mqtt, "ops-rude");
    herald.stderr_line("client_id=ops-rude");
    drop(rude);
    let line = herald.stderr_line("client disconnected");
    assert!(line.contains("client_id=ops-rude"), "{line}");
    assert!(line.contains("reason=socket_closed"), "{line}");
    assert!(!line.contains("Some("), "plain words: {line}");
    drop(herald);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the broker to its exit; returns the exit code and stderr.
fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.env_clear().args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run herald: {e}"));
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_port_in_use_is_reported_once_with_the_setting_that_moves_it() {
    let dir = temp_dir("port-in-use");
    let data = dir.display().to_string();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = taken
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .to_string();

    let (code, stderr) = run_to_exit(
        &["--listen", &port, "--data-dir", &data],
        &[("HERALD_METRICS__BIND", "127.0.0.1:0")],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr
            .matches(&format!("cannot listen for MQTT on {port}"))
            .count(),
        1,
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("Address already in use").count(),
        1,
        "the OS error once: {stderr}"
    );
    assert!(stderr.contains("another broker?"), "{stderr}");
    assert!(
        stderr.contains("--listen, [listener] bind or HERALD_LISTENER__BIND"),
        "{stderr}"
    );

    let (code, stderr) = run_to_exit(
        &["--listen", "127.0.0.1:0", "--data-dir", &data],
        &[("HERALD_METRICS__BIND", &port)],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr
            .matches(&format!("cannot serve metrics on {port}"))
            .count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("[metrics] bind or HERALD_METRICS__BIND"),
        "{stderr}"
    );
    drop(taken);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Started from another working directory with a relative `--config`,
/// the file's relative `data_dir` and `webhook_conf` are found next to it;
/// the same relative text in the environment or a flag means the working
/// directory.
#[test]
fn relative_paths_in_the_config_file_are_relative_to_its_folder() {
    let dir = temp_dir("relative");
    let conf = dir.join("etc");
    let cwd = dir.join("elsewhere");
    for d in [&conf, &cwd] {
        std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{e}"));
    }
    write(
        &conf.join("herald.toml"),
        "data_dir = \"./state\"\nwebhook_conf = \"hook.conf\"\n[listener]\nbind = [\"127.0.0.1:0\"]\n[metrics]\nbind = \"127.0.0.1:0\"\n",
    );
    write(
        &conf.join("hook.conf"),
        "web.hook.url = http://127.0.0.1:9/hook\nweb.hook.rule.client.connected.1 = {\"action\": \"on_client_connected\"}\n",
    );
    let config = ["--config", "../etc/herald.toml"];

    let mut herald = Running::spawn_in(Some(&cwd), &config, &[]);
    let line = herald.stderr_line("configuration loaded");
    let state = conf.join("state");
    assert!(
        line.contains(&format!("data_dir={}", state.display())),
        "{line}"
    );
    herald.stderr_line("webhook started");
    herald.stderr_line("listening for MQTT");
    assert!(
        state.join("webhook").is_dir(),
        "the spool is in {}",
        state.display()
    );
    assert!(herald.terminate().success());

    // The environment and flags: relative to the working directory.
    let mut herald = Running::spawn_in(Some(&cwd), &config, &[("HERALD_DATA_DIR", "from-env")]);
    let line = herald.stderr_line("configuration loaded");
    assert!(line.ends_with("data_dir=from-env"), "{line}");
    herald.stderr_line("listening for MQTT");
    assert!(cwd.join("from-env").join("webhook").is_dir());
    assert!(herald.terminate().success());

    let mut args = config.to_vec();
    args.extend(["--data-dir", "from-flag"]);
    let mut herald = Running::spawn_in(Some(&cwd), &args, &[]);
    herald.stderr_line("listening for MQTT");
    assert!(cwd.join("from-flag").join("webhook").is_dir());
    assert!(herald.terminate().success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn log_connections_false_keeps_connects_quiet() {
    let dir = temp_dir("quiet");
    let toml = dir.join("herald.toml");
    write(&toml, "[log]\nconnections = false\n");
    let toml = toml.display().to_string();
    let data = dir.display().to_string();
    let mut herald = Running::spawn(
        &[
            "--config",
            &toml,
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data,
        ],
        &[("HERALD_METRICS__BIND", "127.0.0.1:0")],
    );
    let mqtt = logged_addr(&herald.stderr_line("listening for MQTT"));
    let mut client = connect(mqtt, "ops-quiet");
    client
        .write_all(&[0xE0, 0])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    // Closed by the broker: a "client disconnected" line would be out by now.
    let (status, log) = herald.terminate_with_log();
    assert!(status.success());
    let log = log.join("\n");
    assert!(
        log.contains("listening for MQTT"),
        "the log was read: {log}"
    );
    assert!(!log.contains("client connected"), "{log}");
    assert!(!log.contains("client disconnected"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads stdout lines up to and including the first that satisfies `last`.
fn stdout_until(running: &mut Running, last: impl Fn(&str) -> bool) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let line = running.stdout_line();
        let done = last(&line);
        lines.push(line);
        if done {
            return lines;
        }
    }
}

/// POSTs one event to `addr` with an extra header; returns the answer.
fn post_event(addr: SocketAddr) -> String {
    let body = r#"{"action":"client_connected","clientid":"c1"}"#;
    http(
        addr,
        &format!(
            "POST /hook/path?x=1 HTTP/1.1\r\nHost: x\r\nX-Api-Key: secret\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[test]
fn webhook_listen_shows_requests_and_answers_the_chosen_status() {
    let mut listen = Running::spawn(
        &[
            "webhook",
            "listen",
            "--bind",
            "127.0.0.1:0",
            "--status",
            "503",
        ],
        &[],
    );
    let addr = logged_addr(&listen.stderr_line("waiting for WebHook requests"));
    let answer = post_event(addr);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let lines = stdout_until(&mut listen, |l| l == "}");
    let first = &lines[0];
    assert!(
        first.starts_with("── POST /hook/path?x=1 from 127.0.0.1:"),
        "{lines:?}"
    );
    assert!(first.ends_with(", answered 503"), "{lines:?}");
    assert!(lines.iter().any(|l| l == "x-api-key: secret"), "{lines:?}");
    assert!(
        lines.iter().any(|l| l == "content-type: application/json"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("── client_connected  event id")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("\"clientid\": \"c1\"")),
        "{lines:?}"
    );
    drop(listen);

    let mut quiet = Running::spawn(
        &["webhook", "listen", "--bind", "127.0.0.1:0", "--quiet"],
        &[],
    );
    let addr = logged_addr(&quiet.stderr_line("waiting for WebHook requests"));
    let answer = post_event(addr);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let lines = stdout_until(&mut quiet, |l| l == "}");
    assert!(
        lines[0].starts_with("── client_connected  event id"),
        "{lines:?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("x-api-key") || l.contains("POST")),
        "{lines:?}"
    );
}

/// While the web service is down, requests fail (WARN); when it comes up,
/// one INFO line says delivery recovered, after how long, with how many
/// events waiting; and only one, however many lanes had failed.
#[test]
fn webhook_recovery_is_one_info_line() {
    let dir = temp_dir("recovery");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    let conf = dir.join("hook.conf");
    write(
        &conf,
        &format!(
            "web.hook.url = http://127.0.0.1:{port}/hook\nweb.hook.pool_size = 4\nweb.hook.retry.initial_backoff = 100ms\nweb.hook.retry.max_backoff = 200ms\nweb.hook.rule.client.connected.1 = {{\"action\": \"on_client_connected\"}}\n"
        ),
    );
    let data = dir.join("data").display().to_string();
    let conf = conf.display().to_string();
    let mut herald = Running::spawn(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data,
            "--webhook-conf",
            &conf,
        ],
        &[("HERALD_METRICS__BIND", "127.0.0.1:0")],
    );
    let mqtt = logged_addr(&herald.stderr_line("listening for MQTT"));
    let clients: Vec<TcpStream> = (0..8)
        .map(|i| connect(mqtt, &format!("hook-{i}")))
        .collect();
    herald.stderr_line("webhook request failed; retrying");

    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let service = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let (_receiver, mut requests) = runtime
        .block_on(herald_webhook::listen::channel(service, None))
        .unwrap_or_else(|e| panic!("{e}"));
    let line = herald.stderr_line("webhook delivery recovered");
    assert!(line.contains(" INFO "), "{line}");
    assert!(line.contains("s of failures;"), "{line}");
    assert!(line.contains("events waiting"), "{line}");
    let mut got = 0;
    while got < 8 {
        let received = runtime
            .block_on(async { tokio::time::timeout(WAIT, requests.recv()).await })
            .unwrap_or_else(|_| panic!("only {got} events arrived"));
        assert!(received.is_some());
        got += 1;
    }
    drop(clients);
    let (status, log) = herald.terminate_with_log();
    assert!(status.success());
    let recovered = log
        .iter()
        .filter(|l| l.contains("webhook delivery recovered"))
        .count();
    assert_eq!(recovered, 1, "{log:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether this machine can bind IPv6 loopback (containers sometimes
/// cannot); the IPv6 halves of the listen tests need it.
fn has_ipv6() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

/// `--listen :0` and `--listen 0` bind every interface of both families on
/// one socket: an IPv4 and an IPv6 client both get in, the IPv4 one
/// seen (and logged) as the IPv4 address it is.
#[test]
fn listen_with_a_port_alone_takes_ipv4_and_ipv6_clients() {
    for form in [":0", "0"] {
        let dir = temp_dir("listen-port");
        let data = dir.display().to_string();
        let mut herald = Running::spawn(
            &["--listen", form, "--data-dir", &data],
            &[("HERALD_METRICS__BIND", "127.0.0.1:0")],
        );
        let bound = logged_addr(&herald.stderr_line("listening for MQTT"));
        let v6 = has_ipv6();
        if v6 {
            assert_eq!(bound.ip(), Ipv6Addr::UNSPECIFIED, "--listen {form}");
        } else {
            assert_eq!(bound.ip(), Ipv4Addr::UNSPECIFIED, "--listen {form}");
        }
        let v4_client = connect(SocketAddr::from((Ipv4Addr::LOCALHOST, bound.port())), "v4");
        let local = v4_client.local_addr().unwrap();
        let line = herald.stderr_line("client_id=v4");
        assert!(
            line.contains(&format!("peer={local}")),
            "--listen {form}: {line}"
        );
        if v6 {
            let v6_client = connect(SocketAddr::from((Ipv6Addr::LOCALHOST, bound.port())), "v6");
            let local = v6_client.local_addr().unwrap();
            let line = herald.stderr_line("client_id=v6");
            assert!(
                line.contains(&format!("peer={local}")),
                "--listen {form}: {line}"
            );
        }
        drop(herald);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// `--listen localhost:0` binds each address the name has (each on its
/// own free port here), and clients connect on each.
#[test]
fn listen_with_a_host_name_binds_each_of_its_addresses() {
    let dir = temp_dir("listen-host");
    let data = dir.display().to_string();
    let expected: Vec<SocketAddr> = {
        use std::net::ToSocketAddrs;
        let mut all: Vec<SocketAddr> = ("localhost", 0).to_socket_addrs().unwrap().collect();
        all.dedup();
        all
    };
    let mut herald = Running::spawn(
        &["--listen", "localhost:0", "--data-dir", &data],
        &[("HERALD_METRICS__BIND", "127.0.0.1:0")],
    );
    for (i, want) in expected.iter().enumerate() {
        let bound = logged_addr(&herald.stderr_line("listening for MQTT"));
        assert_eq!(bound.ip(), want.ip(), "address {i} of localhost");
        let id = format!("host{i}");
        let _client = connect(bound, &id);
        herald.stderr_line(&format!("client_id={id}"));
    }
    drop(herald);
    let _ = std::fs::remove_dir_all(&dir);
}
