//! Access control against the real binary: the secure default (nothing
//! configured: anonymous clients from loopback only, one start-up line
//! naming `auth.allow_anonymous`), tested through a PROXY protocol header
//! that carries a remote address so no traffic leaves the machine; and the
//! `herald_auth_*` counters on `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use support::{Running, WAIT, http, logged_addr, temp_dir, varint, write};

/// A CONNECT at protocol level `level` (4: 3.1.1, 5: 5.0), optionally with
/// a user name and password.
fn connect_packet(level: u8, client_id: &str, credentials: Option<(&str, &str)>) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level];
    let flags = 0x02 | credentials.map_or(0, |_| 0xC0);
    body.extend([flags, 0, 60]);
    if level == 5 {
        body.push(0); // no properties
    }
    let mut field = |s: &str| {
        body.extend((s.len() as u16).to_be_bytes());
        body.extend(s.as_bytes());
    };
    field(client_id);
    if let Some((user, password)) = credentials {
        field(user);
        field(password);
    }
    let mut packet = vec![0x10];
    varint(body.len(), &mut packet);
    packet.extend(body);
    packet
}

/// Sends `prefix` (a PROXY header, or nothing) and a CONNECT; returns the
/// CONNACK's return code (3.1.1) or reason code (5.0).
fn connack_code(
    mqtt: SocketAddr,
    prefix: &[u8],
    level: u8,
    credentials: Option<(&str, &str)>,
) -> u8 {
    let mut s = TcpStream::connect(mqtt).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut out = prefix.to_vec();
    out.extend(connect_packet(level, "probe", credentials));
    s.write_all(&out).unwrap();
    let mut head = [0u8; 4];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x20, "CONNACK expected, got {head:?}");
    head[3]
}

fn proxy_v1(source: &str) -> Vec<u8> {
    let family = if source.contains(':') { "TCP6" } else { "TCP4" };
    let dest = if source.contains(':') {
        "::1"
    } else {
        "127.0.0.1"
    };
    format!("PROXY {family} {source} {dest} 40001 1883\r\n").into_bytes()
}

fn start(data_dir: &str, env: &[(&str, &str)]) -> (Running, SocketAddr) {
    let mut all = vec![
        ("HERALD_LISTENER__PROXY_PROTOCOL", "true"),
        ("HERALD_METRICS__BIND", ""),
        ("HERALD_SYS__INTERVAL", "0"),
    ];
    all.extend_from_slice(env);
    let mut herald = Running::spawn(&["--listen", "127.0.0.1:0", "--data-dir", data_dir], &all);
    let mqtt = logged_addr(&herald.stderr_line("listening for MQTT"));
    (herald, mqtt)
}

#[test]
fn secure_default_admits_anonymous_clients_from_loopback_only() {
    let dir = temp_dir("secure-default");
    let data = dir.join("data");
    let (herald, mqtt) = start(data.to_str().unwrap(), &[]);
    assert!(
        herald.log.iter().any(|l| l.contains("WARN")
            && l.contains("loopback addresses only")
            && l.contains("auth.allow_anonymous")),
        "one start-up line names the key: {:#?}",
        herald.log
    );
    for level in [4, 5] {
        for local in ["127.0.0.1", "127.0.0.9", "127.255.0.1", "::1"] {
            assert_eq!(
                connack_code(mqtt, &proxy_v1(local), level, None),
                0,
                "anonymous from {local} (level {level}) is accepted"
            );
        }
        let refused = if level == 5 { 0x87 } else { 5 };
        for remote in ["198.51.100.7", "10.0.0.1", "192.168.1.2", "2001:db8::7"] {
            assert_eq!(
                connack_code(mqtt, &proxy_v1(remote), level, None),
                refused,
                "anonymous from {remote} (level {level}) is not authorised"
            );
            // A user name and password change nothing: no source knows them.
            assert_eq!(
                connack_code(mqtt, &proxy_v1(remote), level, Some(("u", "p"))),
                refused,
                "a named client from {remote} (level {level}) is not authorised"
            );
        }
    }
    herald.terminate();

    // Opened on purpose, remote clients get in: the refusals above are the
    // default's doing.
    let (herald, mqtt) = start(
        data.to_str().unwrap(),
        &[("HERALD_AUTH__ALLOW_ANONYMOUS", "true")],
    );
    assert!(
        !herald
            .log
            .iter()
            .any(|l| l.contains("loopback addresses only")),
        "no warning once the key is set"
    );
    assert_eq!(connack_code(mqtt, &proxy_v1("198.51.100.7"), 4, None), 0);
    herald.terminate();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn auth_outcomes_are_counted_on_metrics() {
    let dir = temp_dir("auth-metrics");
    let passwd = dir.join("passwd");
    herald_auth::passwd::set_password(&passwd, true, "alice", b"right").unwrap();
    // An auth_http service that is not there: a port that was free a
    // moment ago and is closed again.
    let gone = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let conf = dir.join("emqx_auth_http.conf");
    write(
        &conf,
        &format!(
            "auth.http.auth_req.url = http://{gone}/auth\n\
             auth.http.auth_req.params = username=%u,password=%P\n\
             auth.http.timeout = 2s\n"
        ),
    );
    let acl = dir.join("acl");
    write(
        &acl,
        "user alice\ntopic read public/#\ntopic deny secret/#\n",
    );
    let data = dir.join("data");
    let mut herald = Running::spawn(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[
            ("HERALD_METRICS__BIND", "127.0.0.1:0"),
            ("HERALD_SYS__INTERVAL", "0"),
            ("HERALD_AUTH__PASSWORD_FILE", passwd.to_str().unwrap()),
            ("HERALD_AUTH__HTTP_CONF", conf.to_str().unwrap()),
            ("HERALD_ACL__FILE", acl.to_str().unwrap()),
        ],
    );
    let metrics = logged_addr(&herald.stderr_line("serving Prometheus metrics"));
    let mqtt = logged_addr(&herald.stderr_line("listening for MQTT"));
    assert_eq!(connack_code(mqtt, &[], 4, Some(("alice", "right"))), 0);
    assert_eq!(connack_code(mqtt, &[], 4, Some(("alice", "wrong"))), 4);
    // Not in the file: the HTTP source is asked and cannot be reached.
    assert_eq!(connack_code(mqtt, &[], 5, Some(("bob", "pw"))), 0x86);

    // alice may read public/# only: a SUBSCRIBE to secret/x is refused.
    let mut s = TcpStream::connect(mqtt).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(&connect_packet(4, "alice-sub", Some(("alice", "right"))))
        .unwrap();
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).unwrap();
    assert_eq!(connack[3], 0);
    let topic = b"secret/x";
    let mut sub = vec![
        0x82,
        (2 + 2 + topic.len() + 1) as u8,
        0,
        1,
        0,
        topic.len() as u8,
    ];
    sub.extend(topic);
    sub.push(0);
    s.write_all(&sub).unwrap();
    let mut suback = [0u8; 5];
    s.read_exact(&mut suback).unwrap();
    assert_eq!(suback, [0x90, 3, 0, 1, 0x80], "SUBACK failure");

    let page = http(
        metrics,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    for line in [
        "herald_auth_authentications_total{source=\"password_file\",result=\"allow\"} 2",
        "herald_auth_authentications_total{source=\"password_file\",result=\"deny\"} 1",
        "herald_auth_authentications_total{source=\"password_file\",result=\"ignore\"} 1",
        "herald_auth_authentications_total{source=\"http\",result=\"failed\"} 1",
        "herald_auth_http_requests_total{request=\"auth_req\"} 1",
        "herald_auth_http_failures_total{request=\"auth_req\",reason=\"connection\"} 1",
        "herald_auth_acl_denied_total{action=\"subscribe\"} 1",
    ] {
        assert!(page.lines().any(|l| l == line), "{line} in\n{page}");
    }
    drop(s);
    herald.terminate();
    std::fs::remove_dir_all(&dir).unwrap();
}
