//! The real `herald` binary with its WebHook pointed at a hostile web
//! server (issue 17): endless `1xx` answers, an endless header, a 100 MB
//! body, a body slower than one byte a second. Its memory stays bounded
//! (VmHWM from `/proc/<pid>/status`), its lane recovers and delivers every
//! event once the server behaves, and an MQTT client (rumqttc) publishing
//! QoS 1 throughout keeps getting its PUBACKs at once: the MQTT side never
//! waits for the WebHook.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

use herald_webhook::listen;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod support;
use support::*;

/// How long the lane waits for an answer: the endless `1xx` and the slow
/// body each hold the lane this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);

/// What the server does with the n-th connection it accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    EndlessInterim,
    EndlessHeader,
    HugeBody,
    SlowBody,
    /// Passed through to a real HTTP server (hyper, `herald_webhook::listen`).
    Fine,
}

const HOSTILE: [Behaviour; 4] = [
    Behaviour::EndlessInterim,
    Behaviour::EndlessHeader,
    Behaviour::HugeBody,
    Behaviour::SlowBody,
];

/// Writes `again` until the client goes away.
async fn write_forever(stream: &mut TcpStream, head: &[u8], again: &[u8]) {
    if stream.write_all(head).await.is_err() {
        return;
    }
    let again = again.repeat((64 << 10) / again.len());
    while stream.write_all(&again).await.is_ok() {}
}

async fn misbehave(mut stream: TcpStream, how: Behaviour) {
    let mut request = vec![0u8; 64 << 10];
    let _ = stream.read(&mut request).await;
    match how {
        Behaviour::EndlessInterim => {
            write_forever(&mut stream, b"", b"HTTP/1.1 100 Continue\r\n\r\n").await
        }
        Behaviour::EndlessHeader => {
            write_forever(&mut stream, b"HTTP/1.1 200 OK\r\nx-endless: ", b"a").await
        }
        Behaviour::HugeBody => {
            // A failure (retried), so the event must still arrive later;
            // the lane keeps only the first bytes of a failed answer.
            let head = format!("HTTP/1.1 503 Busy\r\ncontent-length: {}\r\n\r\n", 100 << 20);
            let _ = stream.write_all(head.as_bytes()).await;
            let piece = vec![b'x'; 1 << 20];
            for _ in 0..100 {
                if stream.write_all(&piece).await.is_err() {
                    return;
                }
            }
        }
        Behaviour::SlowBody => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
                .await;
            // One byte every two seconds, until the client gives up.
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                if stream.write_all(b"x").await.is_err() {
                    return;
                }
            }
        }
        Behaviour::Fine => unreachable!("served by the real server"),
    }
}

/// The hostile server: its first connections misbehave in turn, later ones
/// are relayed to `fine`. `accepted` counts connections.
async fn hostile_server(fine: SocketAddr, accepted: Arc<AtomicUsize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let n = accepted.fetch_add(1, Ordering::SeqCst);
            let how = HOSTILE.get(n).copied().unwrap_or(Behaviour::Fine);
            tokio::spawn(async move {
                if how == Behaviour::Fine {
                    if let Ok(mut upstream) = TcpStream::connect(fine).await {
                        let _ = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
                    }
                } else {
                    misbehave(stream, how).await;
                }
            });
        }
    });
    addr
}

/// Resident set and its peak (VmRSS, VmHWM) of a process, in bytes.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_web_server_costs_bounded_memory_and_mqtt_clients_nothing() {
    let (receiver, mut received) = listen::channel("127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let server = hostile_server(receiver.addr, accepted.clone()).await;

    let dir = temp_dir("webhook-hostile");
    let conf = dir.join("webhook.conf");
    write(
        &conf,
        &format!(
            "web.hook.url = http://{server}/hook\n\
             web.hook.rule.message.publish.1 = {{\"action\": \"on_message_publish\"}}\n\
             web.hook.pool_size = 1\n\
             web.hook.request.request_timeout = {}s\n\
             web.hook.retry.initial_backoff = 100ms\n\
             web.hook.retry.max_backoff = 500ms\n",
            REQUEST_TIMEOUT.as_secs()
        ),
    );
    let data = dir.join("data");
    let (conf, data) = (conf.display().to_string(), data.display().to_string());
    let args = [
        "--webhook-conf",
        &conf,
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data,
    ];
    let env = [
        ("HERALD_METRICS__BIND", ""),
        ("HERALD_SYS__INTERVAL", "0"),
        ("RUST_LOG", "info"),
    ];
    let mut herald = Running::spawn(&args, &env);
    let mqtt = logged_addr(&herald.stderr_line("listening for MQTT"));
    let pid = herald.child.id();
    let (rss_at_start, _) = memory(pid);

    // One client publishing QoS 1, each PUBLISH after the previous PUBACK,
    // timing each round trip, until the server has misbehaved every way
    // and one more connection (the fine one) was made.
    let mut options = rumqttc::MqttOptions::new("steady", mqtt.ip().to_string(), mqtt.port());
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 10);
    let (acks_tx, mut acks) = tokio::sync::mpsc::unbounded_channel();
    let pump = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                    if acks_tx.send(()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("the MQTT connection failed: {e}"),
            }
        }
    });
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut published = 0u64;
    let mut peak_rss = rss_at_start;
    while accepted.load(Ordering::SeqCst) <= HOSTILE.len() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the lane never got past the hostile answers ({} connections)",
            accepted.load(Ordering::SeqCst)
        );
        let sent = Instant::now();
        client
            .publish(
                "sensors/steady",
                rumqttc::QoS::AtLeastOnce,
                false,
                published.to_string(),
            )
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), acks.recv())
            .await
            .unwrap_or_else(|_| panic!("no PUBACK within 10 s for message {published}"))
            .unwrap();
        slowest = slowest.max(sent.elapsed());
        published += 1;
        peak_rss = peak_rss.max(memory(pid).0);
    }
    let hostile_for = started.elapsed();
    // A few more once the server behaves: "later events".
    for _ in 0..20 {
        client
            .publish(
                "sensors/steady",
                rumqttc::QoS::AtLeastOnce,
                false,
                published.to_string(),
            )
            .await
            .unwrap();
        acks.recv().await.unwrap();
        published += 1;
    }
    println!(
        "{published} QoS 1 messages; the server was hostile for {hostile_for:?}; \
         slowest PUBACK {slowest:?}; RSS at start {} KiB, sampled peak {} KiB",
        rss_at_start >> 10,
        peak_rss >> 10
    );

    // The MQTT side never waited for the lane: the endless 1xx and the slow
    // body each held the lane for the whole request timeout, but no PUBACK
    // took half of it, and the client published all along.
    assert!(
        slowest < REQUEST_TIMEOUT / 2,
        "a PUBACK took {slowest:?} while the web server misbehaved"
    );
    assert!(
        hostile_for >= REQUEST_TIMEOUT * 2,
        "the hostile answers did not hold the lane ({hostile_for:?})"
    );
    assert!(
        published as f64 >= hostile_for.as_secs_f64() * 20.0,
        "only {published} PUBACKs in {hostile_for:?}"
    );

    // Every event arrives once the server behaves.
    let mut missing: HashSet<u64> = (0..published).collect();
    let until = Instant::now() + Duration::from_secs(60);
    while !missing.is_empty() {
        let left = until.saturating_duration_since(Instant::now());
        let Ok(Some(r)) = tokio::time::timeout(left, received.recv()).await else {
            let mut left: Vec<_> = missing.into_iter().collect();
            left.sort_unstable();
            panic!("events never delivered: {left:?}");
        };
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let n: u64 = body["payload"].as_str().unwrap().parse().unwrap();
        missing.remove(&n);
    }

    // Bounded memory: a client that buffered the 100 MB body, the endless
    // header or the endless 1xx answers would have grown by 100 MB or more.
    let (_, hwm) = memory(pid);
    println!("VmHWM {} KiB", hwm >> 10);
    assert!(
        hwm < rss_at_start + (48 << 20),
        "peak RSS {} KiB against {} KiB at start",
        hwm >> 10,
        rss_at_start >> 10
    );

    pump.abort();
    drop(client);
    let status = tokio::task::spawn_blocking(move || herald.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
