//! `GET /metrics`: the broker's counters and the WebHook's, as Prometheus
//! text, on their own small HTTP listener (`[metrics] bind`).
//!
//! Rendering only reads atomics (and, for the session gauge, takes the
//! session registry's lock briefly); it never waits on the MQTT path.
//! Anything but `GET /metrics` (or `HEAD`) is answered 404 or 405.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use herald_broker::broker::Broker;
use herald_broker::metrics::Metrics;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Content type of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

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

/// Binds `addr` and serves `/metrics` for `broker`, plus what `extra`
/// renders.
pub async fn serve(
    addr: SocketAddr,
    broker: Arc<Broker>,
    extra: Option<Extra>,
) -> std::io::Result<MetricsServer> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::debug!(error = %err, "metrics accept failed");
                    continue;
                }
            };
            let broker = broker.clone();
            let extra = extra.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let response = answer(&request, &broker, extra.as_ref());
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(MetricsServer { addr, task })
}

fn answer(
    request: &Request<Incoming>,
    broker: &Broker,
    extra: Option<&Extra>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    if request.uri().path() != "/metrics" {
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let mut text = render_broker(broker);
    if let Some(extra) = extra {
        text.push_str(&extra());
    }
    if request.method() == Method::GET {
        *response.body_mut() = Full::new(Bytes::from(text));
    }
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT));
    response
}

/// Prometheus text of the broker's counters.
pub fn render_broker(broker: &Broker) -> String {
    let m = &broker.metrics;
    let mut out = String::new();
    let one = |out: &mut String, name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    };
    let get = Metrics::get;
    one(
        &mut out,
        "herald_uptime_seconds",
        "gauge",
        "seconds since the broker started",
        broker.started.elapsed().as_secs(),
    );
    one(
        &mut out,
        "herald_connections",
        "gauge",
        "clients connected now",
        get(&m.connected),
    );
    one(
        &mut out,
        "herald_connections_total",
        "counter",
        "connections accepted",
        get(&m.connections_total),
    );
    one(
        &mut out,
        "herald_sessions",
        "gauge",
        "sessions held (connected or not)",
        broker.sessions().len() as u64,
    );
    one(
        &mut out,
        "herald_retained_messages",
        "gauge",
        "retained messages stored",
        broker.retained_count() as u64,
    );
    one(
        &mut out,
        "herald_messages_received_total",
        "counter",
        "PUBLISH packets received from clients",
        get(&m.messages_received),
    );
    one(
        &mut out,
        "herald_messages_sent_total",
        "counter",
        "PUBLISH packets sent to clients",
        get(&m.messages_sent),
    );
    one(
        &mut out,
        "herald_bytes_received_total",
        "counter",
        "bytes read from client sockets",
        get(&m.bytes_received),
    );
    one(
        &mut out,
        "herald_bytes_sent_total",
        "counter",
        "bytes written to client sockets",
        get(&m.bytes_sent),
    );
    one(
        &mut out,
        "herald_protocol_errors_total",
        "counter",
        "connections closed for a protocol violation",
        get(&m.protocol_errors),
    );
    let dropped: [(&str, &AtomicU64); 7] = [
        ("no_subscribers", &m.dropped_no_subscribers),
        ("queue_full", &m.dropped_queue_full),
        ("qos0_offline", &m.dropped_qos0_offline),
        ("expired", &m.dropped_expired),
        ("not_authorized", &m.dropped_not_authorized),
        ("packet_too_large", &m.dropped_too_large),
        ("other", &m.dropped_other),
    ];
    let _ = writeln!(
        out,
        "# HELP herald_messages_dropped_total messages or deliveries dropped, by reason"
    );
    let _ = writeln!(out, "# TYPE herald_messages_dropped_total counter");
    for (reason, counter) in dropped {
        let _ = writeln!(
            out,
            "herald_messages_dropped_total{{reason=\"{reason}\"}} {}",
            get(counter)
        );
    }
    out
}
