//! `--username` / `--password`: the connection scenario against Herald
//! with a password file (herald-auth) opens every connection with the right
//! password and none with a wrong one.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

use herald_auth::Auth;
use herald_bench::client::{Credentials, Target};
use herald_bench::conn::{self, ConnSettings};
use herald_bench::live::Live;
use herald_broker::broker::Broker;
use herald_broker::config::Config;
use herald_codec::Protocol;
use std::sync::Arc;
use std::time::Duration;

fn settings(addr: std::net::SocketAddr, password: &str) -> ConnSettings {
    ConnSettings {
        target: Target {
            addr,
            protocol: Protocol::V5,
            keep_alive: 30,
            sources: Vec::new(),
            timeout: Duration::from_secs(5),
            credentials: Some(Credentials {
                username: "bench".into(),
                password: Some(password.into()),
            }),
            transport: Default::default(),
        },
        clients: 20,
        concurrency: 5,
        hold: Duration::ZERO,
        broker_pid: None,
        progress: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conn_sends_the_credentials() {
    let dir = std::env::temp_dir().join(format!("herald-bench-cred-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("passwd");
    herald_auth::passwd::set_password(&file, true, "bench", b"s3cret").unwrap();
    let mut config = Config::default();
    config.listener.bind = vec!["127.0.0.1:0".parse().unwrap()];
    config.sys.interval = 0;
    config.auth.password_file = Some(file.clone().into());
    let auth = Auth::load(&config).expect("password file loads");
    let broker = Broker::new(config);
    broker.set_access(Arc::new(auth));
    let server = herald_broker::start_on(broker)
        .await
        .expect("broker starts");
    let addr = server.local_addrs[0];

    let right = conn::run(&settings(addr, "s3cret"), Live::new())
        .await
        .unwrap();
    assert_eq!((right.connected, right.failed), (20, 0), "{right:#?}");

    let wrong = conn::run(&settings(addr, "guess"), Live::new())
        .await
        .unwrap();
    assert_eq!((wrong.connected, wrong.failed), (0, 20), "{wrong:#?}");
    assert!(
        wrong.errors[0].contains("refused"),
        "the broker's refusal is reported: {:?}",
        wrong.errors
    );
    server.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
