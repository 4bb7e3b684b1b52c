//! Delivery guarantees (spec §5) with a real HTTP server that misbehaves:
//! per-client order and completeness through random failures and lost
//! answers, which statuses are retried, Retry-After, event ids, batching,
//! signing and the maximum event age.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

use bytes::Bytes;
use herald_broker::broker::Broker;
use herald_broker::config::Config;
use herald_broker::hooks::Event;
use herald_broker::message::Message;
use herald_codec::{ByteStr, Properties, QoS};
use herald_webhook::listen::{self, Received, Reply};
use herald_webhook::{WebHook, WebhookConfig};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;

const WAIT: Duration = Duration::from_secs(60);

/// A broker (no listener needed: events are fired through its hooks) with
/// the WebHook pointed at `url`, configured by `extra` lines.
fn webhook(url: SocketAddr, extra: &str) -> (Arc<Broker>, WebHook) {
    let broker = Broker::new(Config::default());
    let conf = format!(
        "web.hook.url = http://{url}/hook\n\
         web.hook.spool.mode = memory\n\
         web.hook.retry.initial_backoff = 1ms\n\
         web.hook.retry.max_backoff = 5ms\n\
         web.hook.rule.message.publish.1 = {{\"action\": \"on_message_publish\"}}\n\
         {extra}"
    );
    let config = WebhookConfig::parse(&conf, "test.conf").expect("valid conf");
    let hook = WebHook::start(&config, &std::env::temp_dir(), &broker).expect("webhook starts");
    (broker, hook)
}

/// Fires `message.publish` for a message from `client` with `payload`.
fn publish(broker: &Broker, client: &str, payload: String) {
    let message = Message::new(
        ByteStr::from("t"),
        Bytes::from(payload),
        QoS::AtMostOnce,
        false,
        Properties::default(),
        ByteStr::from(client),
        None,
    );
    broker
        .hooks
        .fire(Event::MessagePublish { message: &message });
}

fn body(r: &Received) -> Value {
    serde_json::from_slice(&r.body).expect("JSON body")
}

fn event_id(r: &Received) -> String {
    r.headers
        .get("x-herald-event-id")
        .and_then(|v| v.to_str().ok())
        .expect("event id header")
        .to_owned()
}

async fn recv(rx: &mut UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a request within the wait")
        .expect("receiver open")
}

/// A cheap deterministic pseudo-random stream for the server's choices.
fn chance(counter: &AtomicU64) -> u64 {
    let mut x = counter
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    x.wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 40
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_complete_and_in_order_despite_random_failures() {
    const CLIENTS: usize = 100;
    const EVENTS: usize = 1000;
    let counter = Arc::new(AtomicU64::new(1));
    // Ids whose answer the server took in and then lost: the only ones a
    // duplicate is allowed for.
    let lost: Arc<Mutex<HashSet<String>>> = Arc::default();
    let (decide_counter, decide_lost) = (counter.clone(), lost.clone());
    let decide = Arc::new(move |r: &Received| {
        let roll = chance(&decide_counter) % 100;
        if roll < 15 {
            Reply::Status(500)
        } else if roll < 20 {
            decide_lost.lock().unwrap().insert(event_id(r));
            Reply::LoseAnswer
        } else {
            Reply::Status(200)
        }
    });
    let (receiver, mut rx) = listen::channel("127.0.0.1:0".parse().unwrap(), Some(decide))
        .await
        .unwrap();
    let (broker, hook) = webhook(receiver.addr, "web.hook.pool_size = 32\n");

    let mut publishers = Vec::new();
    for c in 0..CLIENTS {
        let broker = broker.clone();
        publishers.push(tokio::spawn(async move {
            for i in 0..EVENTS {
                publish(&broker, &format!("client-{c}"), i.to_string());
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for p in publishers {
        p.await.unwrap();
    }

    let mut seen_ids = HashSet::new();
    let mut duplicates = Vec::new();
    let mut per_client: HashMap<String, Vec<usize>> = HashMap::new();
    let mut unique = 0;
    while unique < CLIENTS * EVENTS {
        let r = recv(&mut rx).await;
        let id = event_id(&r);
        if !seen_ids.insert(id.clone()) {
            duplicates.push(id);
            continue;
        }
        unique += 1;
        let b = body(&r);
        let client = b["from_client_id"].as_str().unwrap().to_owned();
        let index: usize = b["payload"].as_str().unwrap().parse().unwrap();
        per_client.entry(client).or_default().push(index);
    }
    assert_eq!(per_client.len(), CLIENTS);
    for (client, indexes) in &per_client {
        let expected: Vec<usize> = (0..EVENTS).collect();
        assert_eq!(indexes, &expected, "{client}: complete and in order");
    }
    let lost = lost.lock().unwrap().clone();
    for id in &duplicates {
        assert!(
            lost.contains(id),
            "duplicate {id} only where an answer was lost"
        );
    }
    assert!(!lost.is_empty(), "the test did lose answers");
    let metrics = hook.render_metrics();
    assert!(metrics.contains("herald_webhook_events_retried_total{event=\"message.publish\"}"));
    hook.shutdown(Duration::from_secs(1)).await;
}

/// Sends one event and collects the statuses the server is asked for until
/// one is final; returns the number of requests that reached the server.
async fn attempts_until_final(statuses: Vec<Reply>) -> (usize, Vec<Received>) {
    let queue = Arc::new(Mutex::new(statuses));
    let q = queue.clone();
    let decide = Arc::new(move |_: &Received| {
        let mut q = q.lock().unwrap();
        if q.is_empty() {
            Reply::Status(200)
        } else {
            q.remove(0)
        }
    });
    // Count every request, whatever the answer.
    let all: Arc<Mutex<Vec<Received>>> = Arc::default();
    let all_in = all.clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let counting = Arc::new(move |r: &Received| {
        all_in.lock().unwrap().push(r.clone());
        let reply = decide(r);
        let _ = tx.send(());
        reply
    });
    let (receiver, mut ok) = listen::channel("127.0.0.1:0".parse().unwrap(), Some(counting))
        .await
        .unwrap();
    let (broker, hook) = webhook(receiver.addr, "web.hook.pool_size = 1\n");
    publish(&broker, "c", "x".into());
    publish(&broker, "c", "marker".into());
    // The marker comes after the first event is settled (one lane, in order).
    loop {
        let r = recv(&mut ok).await;
        if body(&r)["payload"] == "marker" {
            break;
        }
    }
    while rx.try_recv().is_ok() {}
    hook.shutdown(Duration::from_secs(1)).await;
    let all = all.lock().unwrap().clone();
    let first: Vec<Received> = all
        .into_iter()
        .filter(|r| body(r)["payload"] == "x")
        .collect();
    (first.len(), first)
}

#[tokio::test]
async fn retried_statuses_and_final_ones() {
    // 408, 429 and 5xx are retried until a 2xx.
    let (n, reqs) = attempts_until_final(vec![
        Reply::Status(408),
        Reply::Status(429),
        Reply::Status(503),
        Reply::Close,
    ])
    .await;
    assert_eq!(n, 5, "four failures, then delivered");
    let ids: HashSet<String> = reqs.iter().map(event_id).collect();
    assert_eq!(ids.len(), 1, "the event id stays the same across retries");
    // Other 4xx are final: one request only.
    for status in [400, 401, 404, 422] {
        let (n, _) = attempts_until_final(vec![Reply::Status(status)]).await;
        assert_eq!(n, 1, "HTTP {status} is not retried");
    }
    // Any 2xx is success.
    let (n, _) = attempts_until_final(vec![Reply::Status(204)]).await;
    assert_eq!(n, 1);
}

#[tokio::test]
async fn batches_are_json_arrays_with_every_event_id() {
    let (receiver, mut rx) = listen::channel("127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let (broker, hook) = webhook(
        receiver.addr,
        "web.hook.pool_size = 1\nweb.hook.batch.size = 10\nweb.hook.batch.interval = 50ms\n",
    );
    for i in 0..25 {
        publish(&broker, "c", i.to_string());
    }
    let mut got = Vec::new();
    let mut requests = 0;
    while got.len() < 25 {
        let r = recv(&mut rx).await;
        requests += 1;
        let ids: Vec<String> = event_id(&r).split(',').map(str::to_owned).collect();
        let Value::Array(events) = body(&r) else {
            panic!("batch body is a JSON array");
        };
        assert!(events.len() <= 10);
        assert_eq!(ids.len(), events.len(), "one id per event");
        got.extend(
            events
                .iter()
                .map(|e| e["payload"].as_str().unwrap().to_owned()),
        );
    }
    let expected: Vec<String> = (0..25).map(|i| i.to_string()).collect();
    assert_eq!(got, expected);
    assert!(requests >= 3, "25 events in batches of at most 10");
    hook.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn signature_verifies_with_the_documented_recipe() {
    let (receiver, mut rx) = listen::channel("127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let (broker, hook) = webhook(receiver.addr, "web.hook.sign.secret = s3cret\n");
    publish(&broker, "c", "signed".into());
    let r = recv(&mut rx).await;
    let header = r.headers["x-herald-signature"].to_str().unwrap().to_owned();
    // t=<unix seconds>,v1=<hex hmac-sha256("<t>.<body>")>
    let (t, v1) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .expect("t=...,v1=... format");
    let t: u64 = t.parse().unwrap();
    assert_eq!(
        v1,
        herald_webhook::deliver::signature(b"s3cret", t, &r.body),
        "HMAC-SHA256 of '<t>.<body>'"
    );
    assert_ne!(v1, herald_webhook::deliver::signature(b"wrong", t, &r.body));
    hook.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn events_older_than_the_maximum_age_are_dropped_not_sent() {
    // The server refuses everything until told otherwise, so the first
    // events age in the queue.
    let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gate = open.clone();
    let decide = Arc::new(move |_: &Received| {
        if gate.load(Ordering::Relaxed) {
            Reply::Status(200)
        } else {
            Reply::Status(503)
        }
    });
    let (receiver, mut rx) = listen::channel("127.0.0.1:0".parse().unwrap(), Some(decide))
        .await
        .unwrap();
    let (broker, hook) = webhook(
        receiver.addr,
        "web.hook.pool_size = 1\nweb.hook.max_event_age = 200ms\n",
    );
    publish(&broker, "c", "old".into());
    // Let the age pass by waiting on real retries: the server must have
    // refused the event several times.
    let metrics = hook.metrics().clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = metrics.render(None);
        let retried = text
            .lines()
            .find(|l| {
                l.starts_with("herald_webhook_events_retried_total{event=\"message.publish\"}")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if retried >= 3 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    open.store(true, Ordering::Relaxed);
    publish(&broker, "c", "new".into());
    let r = recv(&mut rx).await;
    assert_eq!(
        body(&r)["payload"],
        "new",
        "the aged event was dropped, not sent"
    );
    assert!(
        metrics
            .render(None)
            .contains("herald_webhook_events_dropped_total{event=\"message.publish\"} 1")
    );
    hook.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn refused_connections_and_silent_servers_are_retried_until_delivered() {
    // Nothing listens on the port at first: connection refused.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let (broker, hook) = webhook(
        port,
        "web.hook.pool_size = 1\nweb.hook.request.request_timeout = 100ms\n\
         web.hook.request.connect_timeout = 100ms\n",
    );
    publish(&broker, "c", "patient".into());
    // Wait until at least two attempts failed to connect.
    let metrics = hook.metrics().clone();
    let retried = || {
        metrics
            .render(None)
            .lines()
            .find(|l| {
                l.starts_with("herald_webhook_events_retried_total{event=\"message.publish\"}")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while retried() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "retries happen");
        tokio::task::yield_now().await;
    }
    // Now a server that accepts but never answers the first request: the
    // request timeout makes the lane retry; the second answer is 200.
    let answered = Arc::new(AtomicU64::new(0));
    let a = answered.clone();
    let decide = Arc::new(move |_: &Received| {
        if a.fetch_add(1, Ordering::Relaxed) == 0 {
            Reply::Hang
        } else {
            Reply::Status(200)
        }
    });
    let (_receiver, mut rx) = listen::channel(port, Some(decide)).await.unwrap();
    let r = recv(&mut rx).await;
    assert_eq!(body(&r)["payload"], "patient");
    assert!(
        answered.load(Ordering::Relaxed) >= 2,
        "the silent attempt timed out and was retried"
    );
    hook.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    // The first answer is 429 with Retry-After: 1; the backoff alone
    // (1 ms to 5 ms here) would retry at once.
    let times: Arc<Mutex<Vec<std::time::Instant>>> = Arc::default();
    let t = times.clone();
    let decide = Arc::new(move |_: &Received| {
        let mut t = t.lock().unwrap();
        t.push(std::time::Instant::now());
        if t.len() == 1 {
            Reply::RetryAfter(429, 1)
        } else {
            Reply::Status(200)
        }
    });
    let (receiver, mut rx) = listen::channel("127.0.0.1:0".parse().unwrap(), Some(decide))
        .await
        .unwrap();
    let (broker, hook) = webhook(receiver.addr, "web.hook.pool_size = 1\n");
    publish(&broker, "c", "later".into());
    assert_eq!(body(&recv(&mut rx).await)["payload"], "later");
    let times = times.lock().unwrap().clone();
    assert_eq!(times.len(), 2);
    // A lower bound only: the retry cannot come before the server asked.
    assert!(
        times[1] - times[0] >= Duration::from_millis(1000),
        "retried after {:?}",
        times[1] - times[0]
    );
    hook.shutdown(Duration::from_secs(1)).await;
}

/// Complete requests at the start of `buf`: how many, and the bytes they
/// take (parsed with httparse, bodies by content-length).
fn complete_requests(buf: &[u8]) -> (usize, usize) {
    let (mut count, mut pos) = (0, 0);
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(head)) = req.parse(&buf[pos..]) else {
            return (count, pos);
        };
        let len: usize = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
            .unwrap_or(0);
        if buf.len() < pos + head + len {
            return (count, pos);
        }
        pos += head + len;
        count += 1;
    }
}

/// Five events of five clients, all committed before the web server takes
/// its first request; it answers whatever complete requests it has read,
/// and reports the most it ever held unanswered at once.
async fn most_requests_in_flight(pipelining: bool) -> usize {
    const EVENTS: usize = 5;
    // Bound but not accepting yet: the lane's connection completes in the
    // backlog and its first request waits there.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (broker, hook) = webhook(
        addr,
        &format!("web.hook.pool_size = 1\nweb.hook.enable_pipelining = {pipelining}\n"),
    );
    for c in 0..EVENTS {
        publish(&broker, &format!("client-{c}"), c.to_string());
    }
    let committed = async {
        while hook
            .spool()
            .expect("running")
            .stats()
            .committed
            .load(Ordering::Relaxed)
            < EVENTS as u64
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(WAIT, committed)
        .await
        .expect("events committed");
    let (mut stream, _) = listener.accept().await.unwrap();
    let (mut buf, mut answered, mut most) = (Vec::new(), 0, 0);
    while answered < EVENTS {
        let mut chunk = [0u8; 65536];
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("a request")
            .unwrap();
        assert!(n > 0, "the lane closed its connection");
        buf.extend_from_slice(&chunk[..n]);
        let (count, used) = complete_requests(&buf);
        buf.drain(..used);
        most = most.max(count);
        for _ in 0..count {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
        }
        answered += count;
    }
    hook.shutdown(Duration::from_secs(1)).await;
    most
}

/// `web.hook.enable_pipelining` is accepted and ignored: with it on or off
/// a lane has one request in flight, even with five clients' events ready.
#[tokio::test]
async fn one_request_at_a_time_whatever_enable_pipelining_says() {
    assert_eq!(most_requests_in_flight(true).await, 1);
    assert_eq!(most_requests_in_flight(false).await, 1);
}

/// Accepts a connection and reads from it until one request is complete.
async fn accept_a_request(listener: &tokio::net::TcpListener) -> tokio::net::TcpStream {
    let (mut stream, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .expect("a connection")
        .unwrap();
    let mut buf = Vec::new();
    while complete_requests(&buf).0 == 0 {
        let mut chunk = [0u8; 65536];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the lane closed its connection");
        buf.extend_from_slice(&chunk[..n]);
    }
    stream
}

/// Waits until the WebHook counts `n` `message.publish` events delivered
/// (its counters are the only view of that; polled).
async fn wait_delivered(hook: &WebHook, n: u64) {
    let line = format!("herald_webhook_events_delivered_total{{event=\"message.publish\"}} {n}\n");
    let counted = async {
        while !hook.render_metrics().contains(&line) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(WAIT, counted)
        .await
        .expect("events counted delivered");
}

/// A server that closes the connection after every answer (as an HTTP/1.0
/// server does): the next requests go at once on a new connection, not as
/// failures.
#[tokio::test]
async fn a_server_closing_after_each_answer_gets_the_rest_resent_at_once() {
    const EVENTS: usize = 5;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (broker, hook) = webhook(
        addr,
        "web.hook.pool_size = 1\nweb.hook.retry.max_backoff = 1h\nweb.hook.retry.initial_backoff = 1h\n",
    );
    for c in 0..EVENTS {
        publish(&broker, &format!("client-{c}"), c.to_string());
    }
    let mut answered = 0;
    while answered < EVENTS {
        let mut stream = accept_a_request(&listener).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        answered += 1;
    }
    // The lane counts a window once all its answers are in.
    wait_delivered(&hook, 5).await;
    let metrics = hook.render_metrics();
    assert!(
        metrics.contains("herald_webhook_events_retried_total{event=\"message.publish\"} 0"),
        "no retry (with a 1 h backoff, a retry would never have come): {metrics}"
    );
    hook.shutdown(Duration::from_secs(1)).await;
}

/// A web server that closes an idle keep-alive connection (Node's does
/// after 5 s) does not cost the next event a failed attempt: the lane sees
/// the connection is gone and opens a new one first.
#[tokio::test]
async fn an_idle_connection_closed_by_the_server_is_not_used() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (broker, hook) = webhook(
        addr,
        "web.hook.pool_size = 1\nweb.hook.retry.max_backoff = 1h\nweb.hook.retry.initial_backoff = 1h\n",
    );
    for n in 1..=2u64 {
        publish(&broker, "c", n.to_string());
        let mut stream = accept_a_request(&listener).await;
        // A keep-alive answer, then the server drops the idle connection.
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        drop(stream);
        wait_delivered(&hook, n).await;
    }
    assert!(
        hook.render_metrics()
            .contains("herald_webhook_events_retried_total{event=\"message.publish\"} 0"),
        "the second event went on a new connection at the first attempt"
    );
    hook.shutdown(Duration::from_secs(1)).await;
}

/// Writing a dead letter (append and fsync) never runs on the lane's async
/// task: with the dead-letter file a FIFO nobody reads yet (so the write
/// blocks), the runtime's only thread goes on running everything else;
/// once the FIFO is read, the letter is there, with the event's id.
#[test]
fn a_blocked_dead_letter_write_leaves_the_runtime_running() {
    let data = std::env::temp_dir().join(format!("herald-dead-letter-fifo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let fifo = data.join(herald_webhook::dead_letter::FILE_NAME);
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let dir = data.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            // Every request, whatever the answer (the channel gets 2xx only).
            let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
            let decide = Arc::new(move |r: &Received| {
                let _ = seen_tx.send(r.clone());
                Reply::Status(400)
            });
            let (receiver, _rx) = listen::channel("127.0.0.1:0".parse().unwrap(), Some(decide))
                .await
                .unwrap();
            let broker = Broker::new(Config::default());
            let conf = format!(
                "web.hook.url = http://{}/hook\n\
                 web.hook.spool.mode = memory\n\
                 web.hook.rule.message.publish.1 = {{\"action\": \"on_message_publish\"}}\n",
                receiver.addr
            );
            let config = WebhookConfig::parse(&conf, "test.conf").unwrap();
            let hook = WebHook::start(&config, &dir, &broker).unwrap();
            publish(&broker, "dev-1", "refused".into());
            let id = event_id(&recv(&mut seen).await);
            // The lane now writes the letter: blocked until the FIFO is read.
            let waited = tokio::time::timeout(Duration::from_millis(200), seen.recv()).await;
            assert!(waited.is_err(), "no second request: {waited:?}");
            done_tx.send(id).unwrap();
            // Keep serving until the test is done with the FIFO.
            let _ = tokio::time::timeout(WAIT, std::future::pending::<()>()).await;
            drop(hook);
        });
    });
    let id = done_rx.recv_timeout(Duration::from_secs(20));
    // Whatever happened, read the FIFO (this also unblocks a runtime stuck
    // in the write).
    let text = std::fs::read_to_string(&fifo).unwrap();
    let id = id.expect("the runtime's thread was blocked by the dead-letter write");
    assert!(text.contains(&id), "the letter, with id {id}: {text}");
    let _ = std::fs::remove_dir_all(&data);
}
