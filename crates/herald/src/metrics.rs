//! The operator's HTTP listener (`[metrics] bind`), no authentication:
//! - `GET /metrics`: the broker's counters and the WebHook's, as Prometheus
//!   text;
//! - `GET /health`: 200 while the process answers (liveness);
//! - `GET /ready`: 200 when every MQTT listener is bound, the data
//!   directory takes a write and the WebHook's spool is healthy, else 503
//!   with the reasons, one per line (readiness; see `health.rs`).
//!
//! Rendering only reads atomics (and, for the session gauge, takes the
//! session registry's lock briefly); it never waits on the MQTT path.
//! Any other path is answered 404, any method but `GET` and `HEAD` 405.
//!
//! The listener is bounded like the MQTT one: at most
//! [`MAX_CONNECTIONS`] at once (more are closed on accept), a request head
//! must arrive within [`HEADER_TIMEOUT`] (which is also how long a
//! keep-alive connection may sit idle between requests), and no connection
//! lives longer than [`CONNECTION_TIMEOUT`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::Bytes;
use herald_broker::broker::Broker;
use herald_broker::exposition::{Exposition, Kind};
use herald_broker::metrics::Metrics;
use herald_broker::transport::ListenerKind;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::health::Readiness;

/// Content type of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Content type of `/health` and `/ready`.
const PLAIN_TEXT: &str = "text/plain; charset=utf-8";

/// Connections served at once; more are closed right after accept, so
/// half-sent requests cannot pile up.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a request head may take to arrive, counted from when the
/// connection waits for one: a half-sent request and an idle keep-alive
/// connection are both closed after this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest any one connection lives (a client reading its answer a byte at
/// a time, say).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Renders extra metrics (the WebHook's) after the broker's.
pub type Extra = Arc<dyn Fn() -> String + Send + Sync>;

/// A running `/metrics` listener; stops when dropped.
pub struct MetricsServer {
    /// Where it listens (port 0 resolved).
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` and serves `/metrics` for `broker` (plus what `extra`
/// renders), `/health`, and `/ready` as `readiness` says.
pub async fn serve(
    addr: SocketAddr,
    broker: Arc<Broker>,
    extra: Option<Extra>,
    readiness: Arc<Readiness>,
) -> std::io::Result<MetricsServer> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let task = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of descriptors, say: wait rather than spin.
                    tracing::debug!(error = %err, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                tracing::debug!("metrics connection limit reached; closing new connection");
                continue;
            };
            let broker = broker.clone();
            let extra = extra.clone();
            let readiness = readiness.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let (broker, extra, readiness) =
                        (broker.clone(), extra.clone(), readiness.clone());
                    async move {
                        let response = answer(&request, &broker, extra.as_ref(), &readiness).await;
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
                drop(permit);
            });
        }
    });
    Ok(MetricsServer { addr, task })
}

/// Routes one request: `/metrics`, `/health`, `/ready`.
async fn answer(
    request: &Request<Incoming>,
    broker: &Broker,
    extra: Option<&Extra>,
    readiness: &Arc<Readiness>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if !matches!(path, "/metrics" | "/health" | "/ready") {
        return reply(StatusCode::NOT_FOUND, PLAIN_TEXT, "not found\n".into());
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            PLAIN_TEXT,
            "method not allowed\n".into(),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let mut response = match path {
        "/metrics" => {
            let mut text = render_broker(broker);
            if let Some(extra) = extra {
                text.push_str(&extra());
            }
            reply(StatusCode::OK, PROMETHEUS_TEXT, text)
        }
        "/health" => reply(StatusCode::OK, PLAIN_TEXT, "ok\n".into()),
        _ => {
            let problems = readiness.problems().await;
            if problems.is_empty() {
                reply(StatusCode::OK, PLAIN_TEXT, "ready\n".into())
            } else {
                let text = format!("not ready\n{}\n", problems.join("\n"));
                reply(StatusCode::SERVICE_UNAVAILABLE, PLAIN_TEXT, text)
            }
        }
    };
    if request.method() == Method::HEAD {
        *response.body_mut() = Full::new(Bytes::new());
    }
    response
}

/// A response with this status, content type and body.
fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Prometheus text of the broker's counters.
pub fn render_broker(broker: &Broker) -> String {
    let m = &broker.metrics;
    let get = Metrics::get;
    let mut page = Exposition::new();
    page.single(
        "herald_uptime_seconds",
        Kind::Gauge,
        "seconds since the broker started",
        broker.started.elapsed().as_secs(),
    );
    let by_listener: [(&str, Kind, &str, &[AtomicU64; 4]); 3] = [
        (
            "herald_connections",
            Kind::Gauge,
            "clients connected now, by listener kind",
            &m.connected_by_listener,
        ),
        (
            "herald_connections_total",
            Kind::Counter,
            "connections accepted, by listener kind",
            &m.connections_by_listener,
        ),
        (
            "herald_handshake_errors_total",
            Kind::Counter,
            "connections closed before MQTT started (PROXY header, TLS or WebSocket \
             handshake failed or timed out), by listener kind",
            &m.handshake_errors,
        ),
    ];
    for (name, kind, help, counters) in by_listener {
        page.family(name, kind, help);
        for listener in ListenerKind::ALL {
            let value = get(&counters[listener.index()]);
            page.sample(name, &[("listener", listener.name())], value);
        }
    }
    let single: [(&str, Kind, &str, u64); 11] = [
        (
            "herald_sessions",
            Kind::Gauge,
            "sessions held (connected or not)",
            broker.sessions().len() as u64,
        ),
        (
            "herald_retained_messages",
            Kind::Gauge,
            "retained messages stored",
            broker.retained_count() as u64,
        ),
        (
            "herald_messages_received_total",
            Kind::Counter,
            "PUBLISH packets received from clients",
            get(&m.messages_received),
        ),
        (
            "herald_messages_sent_total",
            Kind::Counter,
            "PUBLISH packets sent to clients",
            get(&m.messages_sent),
        ),
        (
            "herald_bytes_received_total",
            Kind::Counter,
            "bytes read from client sockets",
            get(&m.bytes_received),
        ),
        (
            "herald_bytes_sent_total",
            Kind::Counter,
            "bytes written to client sockets",
            get(&m.bytes_sent),
        ),
        (
            "herald_protocol_errors_total",
            Kind::Counter,
            "connections closed for a protocol violation",
            get(&m.protocol_errors),
        ),
        (
            "herald_retained_bytes",
            Kind::Gauge,
            "bytes held by retained messages (topic, payload, properties)",
            broker.retained_bytes() as u64,
        ),
        (
            "herald_retained_refused_total",
            Kind::Counter,
            "retained messages not stored for a [retained] limit",
            get(&m.retained_refused),
        ),
        (
            "herald_awaiting_rel_full_total",
            Kind::Counter,
            "3.x connections closed for more QoS 2 messages awaiting PUBREL than mqtt.max_awaiting_rel",
            get(&m.awaiting_rel_full),
        ),
        (
            "herald_accept_failures_total",
            Kind::Counter,
            "MQTT accepts that failed (e.g. at the open-file limit)",
            get(&m.accept_failures),
        ),
    ];
    for (name, kind, help, value) in single {
        page.single(name, kind, help, value);
    }
    let dropped = "herald_messages_dropped_total";
    page.family(
        dropped,
        Kind::Counter,
        "messages or deliveries dropped, by reason",
    );
    for (reason, count) in m.dropped_by_reason() {
        page.sample(dropped, &[("reason", reason)], count);
    }
    if let Some(store) = broker.store() {
        render_store(&mut page, store);
    }
    page.finish()
}

/// Prometheus text of the broker's durable state (`[persistence]`).
fn render_store(page: &mut Exposition, store: &herald_broker::store::Store) {
    let s = store.metrics();
    let get = Metrics::get;
    let single: [(&str, Kind, &str, u64); 7] = [
        (
            "herald_store_retained_messages",
            Kind::Gauge,
            "retained messages in the stored state",
            get(&s.retained),
        ),
        (
            "herald_store_sessions",
            Kind::Gauge,
            "persistent sessions in the stored state",
            get(&s.sessions),
        ),
        (
            "herald_store_bytes",
            Kind::Gauge,
            "bytes of the state log on disk",
            get(&s.bytes),
        ),
        (
            "herald_store_healthy",
            Kind::Gauge,
            "1 while the state log takes writes, 0 while they fail",
            u64::from(store.healthy()),
        ),
        (
            "herald_store_write_errors_total",
            Kind::Counter,
            "failed writes or fsyncs of the state log (retried)",
            get(&s.write_errors),
        ),
        (
            "herald_store_refused_total",
            Kind::Counter,
            "changes refused while the state log could not be written",
            get(&s.refused),
        ),
        (
            "herald_store_corrupt_records",
            Kind::Gauge,
            "damaged records skipped when the state was read at start",
            get(&s.corrupt_records),
        ),
    ];
    for (name, kind, help, value) in single {
        page.single(name, kind, help, value);
    }
    page.single(
        "herald_store_recovery_seconds",
        Kind::Gauge,
        "time taken to read the state at start",
        get(&s.recovery_us) as f64 / 1e6,
    );
    let name = "herald_store_write_seconds";
    page.family(
        name,
        Kind::Histogram,
        "latency of a group write (write and fsync) of the state log",
    );
    let bucket = format!("{name}_bucket");
    let mut count = 0;
    for (i, counter) in s.write_buckets.iter().enumerate() {
        count += get(counter);
        let le = herald_broker::store::WRITE_BUCKETS
            .get(i)
            .map_or_else(|| "+Inf".to_owned(), f64::to_string);
        page.sample(&bucket, &[("le", &le)], count);
    }
    page.sample(
        &format!("{name}_sum"),
        &[],
        get(&s.write_us_sum) as f64 / 1e6,
    );
    page.sample(&format!("{name}_count"), &[], count);
}
