//! The tool proves itself against Herald started in-process on
//! `127.0.0.1:0`: short runs that must show every message delivered exactly
//! once, in order, with latency figures and acknowledgements settled.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

use herald_bench::client::Target;
use herald_bench::live::Live;
use herald_bench::load::{self, LoadReport, LoadSettings, Rate, Scenario};
use herald_broker::Server;
use herald_broker::config::Config;
use herald_codec::{Protocol, QoS};
use std::time::Duration;

async fn start_broker() -> Server {
    let mut config = Config::default();
    config.listener.bind = vec!["127.0.0.1:0".parse().expect("address")];
    config.sys.interval = 0;
    herald_broker::start(config).await.expect("broker starts")
}

fn settings(server: &Server, scenario: Scenario, clients: u32, qos: QoS) -> LoadSettings {
    LoadSettings {
        target: Target {
            addr: server.local_addrs[0],
            protocol: Protocol::V3_1_1,
            keep_alive: 30,
            sources: Vec::new(),
            timeout: Duration::from_secs(5),
            credentials: None,
            transport: Default::default(),
        },
        scenario,
        clients,
        qos,
        size: 64,
        rate: Rate::FlatOut,
        duration: Duration::from_secs(1),
        count: Some(200),
        warmup: Duration::ZERO,
        inflight: 16,
        drain: Duration::from_secs(2),
        topic_prefix: "bench-test".into(),
        persistent: false,
        retain: false,
        connect_concurrency: 10,
        progress: false,
        ack_latency: false,
        // The broker runs in this process.
        broker_pid: Some(std::process::id()),
    }
}

fn assert_perfect(r: &LoadReport, expected: u64) {
    assert!(r.errors.is_empty(), "client errors: {:?}", r.errors);
    assert_eq!(r.expected, expected, "{r:#?}");
    assert_eq!(r.received, expected, "{r:#?}");
    assert_eq!(r.lost, 0, "{r:#?}");
    assert_eq!(r.duplicated, 0, "{r:#?}");
    assert_eq!(r.out_of_order, 0, "{r:#?}");
    assert_eq!(r.foreign, 0, "{r:#?}");
    assert_eq!(r.unacked + r.rejected + r.unexpected_acks, 0, "{r:#?}");
    let latency = r.latency_us.expect("latency samples");
    assert_eq!(latency.samples, expected);
    assert!(latency.p50 > 0.0 && latency.p50 <= latency.p99 && latency.p99 <= latency.max);
    assert!(r.recv_rate > 0.0 && r.send_rate > 0.0);
    // Broker and load generator are this process: the same CPU clock,
    // read at the same two moments.
    let cpu = r.window_cpu.expect("CPU of the delivery window");
    assert!(cpu.wall_s > 0.0, "{cpu:?}");
    let broker = cpu.broker_cpu_s.expect("broker CPU");
    assert!((broker - cpu.loadgen_cpu_s).abs() <= 0.02, "{cpu:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_in_qos1_two_publishers_loses_nothing() {
    let server = start_broker().await;
    let mut s = settings(&server, Scenario::FanIn, 2, QoS::AtLeastOnce);
    s.ack_latency = true;
    let r = tokio::time::timeout(Duration::from_secs(10), load::run(&s, Live::new()))
        .await
        .expect("finishes in time")
        .expect("runs");
    assert_eq!((r.publishers, r.subscribers, r.sent), (2, 1, 400));
    assert_perfect(&r, 400);
    // Every PUBACK timed once.
    let acks = r.ack_latency_us.expect("acknowledgement latency samples");
    assert_eq!(acks.samples, 400, "{r:#?}");
    assert!(acks.p50 > 0.0 && acks.p50 <= acks.p99);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_qos2_over_mqtt5_loses_nothing() {
    let server = start_broker().await;
    let mut s = settings(&server, Scenario::FanOut, 3, QoS::ExactlyOnce);
    s.target.protocol = Protocol::V5;
    s.ack_latency = true;
    let r = tokio::time::timeout(Duration::from_secs(10), load::run(&s, Live::new()))
        .await
        .expect("finishes in time")
        .expect("runs");
    assert_eq!((r.publishers, r.subscribers, r.sent), (1, 3, 200));
    assert_perfect(&r, 600);
    // Every PUBREC timed once.
    let acks = r.ack_latency_us.expect("acknowledgement latency samples");
    assert_eq!(acks.samples, 200, "{r:#?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_at_a_fixed_rate_for_a_duration() {
    let server = start_broker().await;
    let mut s = settings(&server, Scenario::Pairs, 4, QoS::AtMostOnce);
    s.count = None;
    s.duration = Duration::from_millis(500);
    s.rate = Rate::Total(2000.0);
    let r = tokio::time::timeout(Duration::from_secs(10), load::run(&s, Live::new()))
        .await
        .expect("finishes in time")
        .expect("runs");
    // 500 msg/s per publisher for 0.5 s: at most 251 each (one at the
    // start, then one every 2 ms); fewer only if the machine stalls.
    assert!((500..=1004).contains(&r.sent), "{r:#?}");
    assert_perfect(&r, r.sent);
    assert!(r.ack_latency_us.is_none(), "not asked for: {r:#?}");
    server.shutdown().await;
}

/// `state` leaves what it says: persistent sessions with their queued
/// messages (the broker holds them while the sessions are offline) and the
/// retained messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_fills_sessions_queues_and_retained_messages() {
    use herald_bench::state::{self, StateSettings};
    let server = start_broker().await;
    let target = settings(&server, Scenario::FanIn, 1, QoS::AtLeastOnce).target;
    let s = StateSettings {
        target,
        sessions: 20,
        queued: 3,
        retained: 15,
        size: 64,
        concurrency: 4,
        inflight: 8,
    };
    let report = state::run(&s).await.expect("fills");
    assert_eq!(
        (report.sessions, report.queued, report.retained),
        (20, 60, 15)
    );
    assert_eq!(server.broker.retained_count(), 15);
    let sessions = server.broker.sessions();
    let queued: usize = (0..20)
        .map(|i| {
            let session = sessions
                .get(format!("hb-state-{i}").as_str())
                .expect("session kept");
            let st = session.lock();
            assert!(!st.online);
            assert_eq!(st.subscriptions.len(), 2);
            st.queue.len()
        })
        .sum();
    assert_eq!(queued, 60);
}

/// A CA and a server certificate for 127.0.0.1 (rcgen), as PEM files in a
/// fresh directory: (CA file, certificate file, key file).
fn test_pki() -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{CertificateParams, KeyPair};
    let dir = std::env::temp_dir().join(format!(
        "herald-bench-pki-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = new_ca();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let files = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&files.0, ca.pem()).unwrap();
    std::fs::write(&files.1, cert.pem()).unwrap();
    std::fs::write(&files.2, key.serialize_pem()).unwrap();
    files
}

/// Fan-in over each listener kind the broker has: every message delivered
/// once, in order, the client verifying the broker's certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_in_over_tls_ws_and_wss_loses_nothing() {
    use herald_bench::transport::{Tls, Transport};
    use herald_broker::transport::ListenerKind;
    let (ca, cert, key) = test_pki();
    let mut config = Config::default();
    config.sys.interval = 0;
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    config.listener.bind = vec![any];
    config.listener.tls.bind = vec![any];
    config.listener.ws.bind = vec![any];
    config.listener.wss.bind = vec![any];
    config.listener.tls.certfile = cert.into();
    config.listener.tls.keyfile = key.into();
    let server = herald_broker::start(config).await.expect("broker starts");
    let tls = Tls::new(&ca, "127.0.0.1").expect("CA file");
    for (kind, transport) in [
        (ListenerKind::Tls, Transport::Tls(tls.clone())),
        (ListenerKind::Ws, Transport::Ws("/mqtt".into())),
        (
            ListenerKind::Wss,
            Transport::Wss(tls.clone(), "/mqtt".into()),
        ),
    ] {
        let mut s = settings(&server, Scenario::FanIn, 2, QoS::AtLeastOnce);
        s.target.addr = server.addr_of(kind).expect("listener");
        s.target.transport = transport;
        let r = tokio::time::timeout(Duration::from_secs(20), load::run(&s, Live::new()))
            .await
            .expect("finishes in time")
            .expect("runs");
        assert_perfect(&r, 400);
    }
    // A certificate the client does not trust: the run fails to connect.
    let other = test_pki_other();
    let mut s = settings(&server, Scenario::FanIn, 1, QoS::AtLeastOnce);
    s.target.addr = server.addr_of(ListenerKind::Tls).expect("listener");
    s.target.transport = Transport::Tls(Tls::new(&other, "127.0.0.1").expect("CA file"));
    let failed = match load::run(&s, Live::new()).await {
        Err(_) => true,
        Ok(r) => r.failed_clients > 0,
    };
    assert!(
        failed,
        "a broker certificate from an untrusted CA was accepted"
    );
    server.shutdown().await;
}

/// A self-signed CA.
fn new_ca() -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap()
}

/// The CA file of another, unrelated CA.
fn test_pki_other() -> std::path::PathBuf {
    let file =
        std::env::temp_dir().join(format!("herald-bench-other-ca-{}.pem", std::process::id()));
    std::fs::write(&file, new_ca().pem()).unwrap();
    file
}
