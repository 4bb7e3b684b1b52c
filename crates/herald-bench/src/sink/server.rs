//! The sink's HTTP server: hyper HTTP/1.1 with keep-alive and answers to
//! pipelined requests flushed together, on a thread of its own; and the
//! answer to each request (status, failures at random, delay, hang), after
//! which a success is counted in the [`Accounts`].
//!
//! The body is read outside the lock on the accounts; nothing else is done
//! under it.

use super::SinkSettings;
use super::accounts::Accounts;
use super::body::Events;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::HeaderName;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// A cheap random number in [0, 1) for `--fail-ratio`.
fn random_unit(state: &AtomicU64) -> f64 {
    let x = state.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// What the server shares between connections.
pub(super) struct Sink {
    /// What has been counted.
    pub(super) accounts: Mutex<Accounts>,
    /// Requests received.
    pub(super) requests: AtomicU64,
    /// Requests answered non-2xx.
    pub(super) refused: AtomicU64,
    /// State of [`random_unit`].
    seed: AtomicU64,
    /// The event id header (`None` if not a valid header name: no request
    /// has it).
    header: Option<HeaderName>,
    /// Status to answer with.
    status: u16,
    /// Fraction of requests answered 500.
    fail_ratio: f64,
    /// Wait before answering.
    delay: Duration,
    /// Never answer.
    hang: bool,
}

impl Sink {
    /// A sink as `s` says, with nothing counted yet.
    pub(super) fn new(s: &SinkSettings) -> Sink {
        Sink {
            accounts: Mutex::new(Accounts::default()),
            requests: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            seed: AtomicU64::new(
                u64::from(std::process::id()) ^ crate::payload::now_ns().rotate_left(17),
            ),
            header: HeaderName::from_bytes(s.event_id_header.to_ascii_lowercase().as_bytes()).ok(),
            status: s.status,
            fail_ratio: s.fail_ratio,
            delay: s.delay,
            hang: s.hang,
        }
    }

    /// Serves one connection: HTTP/1.1 with keep-alive, answers to
    /// pipelined requests written together.
    async fn connection(self: Arc<Self>, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let service = service_fn(move |request| self.clone().answer(request));
        let _ = http1::Builder::new()
            .keep_alive(true)
            .pipeline_flush(true)
            .serve_connection(TokioIo::new(stream), service)
            .await;
    }

    /// Reads one request, decides the answer and, if it is a success,
    /// accounts for the request.
    async fn answer(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<Empty<Bytes>>, hyper::Error> {
        let (head, body) = request.into_parts();
        let body = body.collect().await?.to_bytes();
        self.requests.fetch_add(1, Ordering::Relaxed);
        if self.hang {
            std::future::pending::<()>().await;
        }
        let code = if self.fail_ratio > 0.0 && random_unit(&self.seed) < self.fail_ratio {
            500
        } else {
            self.status
        };
        let success = (200..300).contains(&code);
        if !success {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        // Only a request that got a success answer counts as received by
        // the service; others are for the sender to retry.
        if success {
            let ids = self
                .header
                .as_ref()
                .and_then(|h| head.headers.get(h))
                .and_then(|v| v.to_str().ok());
            let events = Events::parse(&body);
            if let Ok(mut a) = self.accounts.lock() {
                a.apply(ids, &events);
            }
        }
        let mut response = Response::new(Empty::new());
        *response.status_mut() =
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Ok(response)
    }
}

/// The HTTP server, on a thread of its own with a single-threaded runtime:
/// a request then costs no wake-up of another worker, and the sink takes at
/// most one core from the broker it measures. Stops when dropped.
pub(super) struct Server {
    /// Dropped (or sent to) to stop the server.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    /// Serves `listener` (non-blocking) on a new thread.
    pub(super) fn start(
        listener: std::net::TcpListener,
        sink: Arc<Sink>,
    ) -> std::io::Result<Server> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("sink-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(listener) else {
                        return;
                    };
                    let accept = async {
                        loop {
                            match listener.accept().await {
                                Ok((stream, _)) => {
                                    tokio::spawn(sink.clone().connection(stream));
                                }
                                // Out of file descriptors, say: try again
                                // shortly.
                                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                            }
                        }
                    };
                    tokio::select! {
                        _ = stopped => {}
                        () = accept => {}
                    }
                });
                // Dropping the runtime drops the connections.
                drop(runtime);
            })?;
        Ok(Server { stop: Some(stop) })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn event(client: &str) -> String {
        format!(r#"{{"action":"client_connected","clientid":"{client}"}}"#)
    }

    /// A sink answering `status`, served on a port of its own.
    fn serve_sink(status: u16) -> (Arc<Sink>, Server, SocketAddr) {
        let settings = SinkSettings {
            bind: "127.0.0.1:0".parse().unwrap(),
            status,
            fail_ratio: 0.0,
            delay: Duration::ZERO,
            hang: false,
            event_id_header: "X-Herald-Event-Id".into(),
            duration: None,
            expect: None,
            progress: false,
        };
        let sink = Arc::new(Sink::new(&settings));
        let listener = std::net::TcpListener::bind(settings.bind).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::start(listener, sink.clone()).unwrap();
        (sink, server, addr)
    }

    /// Writes `requests` at once and reads `n` answers (without bodies).
    fn exchange(addr: SocketAddr, requests: &str, n: usize) -> String {
        use std::io::{Read, Write};
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        client.write_all(requests.as_bytes()).unwrap();
        let mut answers = String::new();
        let mut buf = [0u8; 4096];
        while answers.matches("\r\n\r\n").count() < n {
            let n = client.read(&mut buf).unwrap();
            assert!(n > 0, "closed after {answers:?}");
            answers += std::str::from_utf8(&buf[..n]).unwrap();
        }
        answers
    }

    #[test]
    fn refused_requests_are_not_counted() {
        let (sink, server, addr) = serve_sink(503);
        let body = event("c1");
        let request = format!(
            "POST / HTTP/1.1\r\nx-herald-event-id: s-0-0\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let answers = exchange(addr, &request.repeat(2), 2);
        assert_eq!(answers.matches("HTTP/1.1 503 ").count(), 2, "{answers}");
        drop(server);
        assert_eq!(sink.requests.load(Ordering::Relaxed), 2);
        assert_eq!(sink.refused.load(Ordering::Relaxed), 2);
        let a = sink.accounts.lock().unwrap();
        assert_eq!((a.accepted, a.events), (0, 0));
    }

    #[test]
    fn pipelined_requests_are_all_answered_and_counted() {
        let (sink, server, addr) = serve_sink(200);

        let request = |ids: &str, body: &str| {
            format!(
                "POST /hook HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
                 x-herald-event-id: {ids}\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        // Ten requests written at once: eight single events, a batch with an
        // escaped client id, and one without the id header.
        let mut out = String::new();
        for seq in 0..8 {
            out += &request(&format!("s-0-{seq}"), &event("c1"));
        }
        out += &request(
            "s-0-8,s-0-9",
            r#"[{"clientid":"c\u0031"},{"from_client_id":"c2"}]"#,
        );
        out += "POST /hook HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}";
        let answers = exchange(addr, &out, 10);
        assert_eq!(
            answers.matches("HTTP/1.1 200 OK\r\n").count(),
            10,
            "{answers}"
        );
        drop(server);

        assert_eq!(sink.requests.load(Ordering::Relaxed), 10);
        let a = sink.accounts.lock().unwrap();
        assert_eq!((a.accepted, a.events, a.unique()), (10, 10, 10));
        assert_eq!((a.malformed, a.client_order, a.clients.len()), (1, 0, 2));
        assert_eq!(a.lanes()[0].next_seq, Some(10));
    }

    #[test]
    fn random_unit_is_in_range_and_roughly_uniform() {
        let state = AtomicU64::new(1);
        let n = 100_000;
        let below = (0..n)
            .map(|_| random_unit(&state))
            .inspect(|x| assert!((0.0..1.0).contains(x)))
            .filter(|&x| x < 0.2)
            .count();
        let ratio = below as f64 / n as f64;
        assert!((0.18..0.22).contains(&ratio), "{ratio}");
    }
}
