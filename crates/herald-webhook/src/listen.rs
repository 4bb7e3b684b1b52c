//! A local WebHook receiver: an HTTP/1.1 server that accepts the POSTs the
//! WebHook sends and hands each one over (method, path, headers, body) to
//! its caller. `herald webhook listen` prints them; tests and the benchmark
//! sink inspect them.
//!
//! What it answers is up to the caller ([`Reply`]): a status (200 by
//! default), optionally after a delay, or no answer at all. It never
//! interprets the body.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One received request.
#[derive(Debug, Clone)]
pub struct Received {
    /// Request method.
    pub method: String,
    /// Request path and query.
    pub path: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Bytes,
    /// The peer that sent it.
    pub peer: SocketAddr,
}

/// How to answer a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Answer with this status now.
    Status(u16),
    /// Answer with this status and body now.
    Body(u16, &'static str),
    /// Answer with this status now and hand the request over whatever the
    /// status (for a person watching, as `herald webhook listen` does).
    Show(u16),
    /// Answer with this status after a delay.
    Delayed(u16, Duration),
    /// Answer with this status and a `Retry-After` of this many seconds.
    RetryAfter(u16, u64),
    /// Close the connection without answering.
    Close,
    /// Take the request (hand it over as received), then close the
    /// connection without answering: the sender cannot know it arrived.
    LoseAnswer,
    /// Accept but never answer (until the client gives up).
    Hang,
}

/// Decides the answer to each request; called once per request.
pub type Decide = Arc<dyn Fn(&Received) -> Reply + Send + Sync>;

/// A running receiver.
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Binds `addr` and serves until dropped: each request is decided by
/// `decide`, then given to `deliver` (in arrival order per connection).
pub async fn serve(
    addr: SocketAddr,
    decide: Decide,
    deliver: Arc<dyn Fn(Received) -> BoxFuture + Send + Sync>,
) -> std::io::Result<Receiver> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let decide = decide.clone();
            let deliver = deliver.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let decide = decide.clone();
                    let deliver = deliver.clone();
                    async move { handle(request, peer, decide, deliver).await }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Receiver { addr, task })
}

/// A receiver that answers 200 to everything and sends each request into
/// an unbounded channel.
pub async fn channel(
    addr: SocketAddr,
    decide: Option<Decide>,
) -> std::io::Result<(Receiver, tokio::sync::mpsc::UnboundedReceiver<Received>)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let decide = decide.unwrap_or_else(|| Arc::new(|_: &Received| Reply::Status(200)));
    let receiver = serve(
        addr,
        decide,
        Arc::new(move |r| {
            let _ = tx.send(r);
            Box::pin(async {})
        }),
    )
    .await?;
    Ok((receiver, rx))
}

async fn handle(
    request: Request<Incoming>,
    peer: SocketAddr,
    decide: Decide,
    deliver: Arc<dyn Fn(Received) -> BoxFuture + Send + Sync>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let method = request.method().as_str().to_owned();
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let headers = request.headers().clone();
    let body = request
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let received = Received {
        method,
        path,
        headers,
        body,
        peer,
    };
    let reply = decide(&received);
    let mut retry_after = None;
    let mut show = false;
    let mut text = "";
    let status = match reply {
        Reply::Status(s) => s,
        Reply::Body(s, body) => {
            text = body;
            s
        }
        Reply::Show(s) => {
            show = true;
            s
        }
        Reply::RetryAfter(s, secs) => {
            retry_after = Some(secs);
            s
        }
        Reply::Delayed(s, wait) => {
            tokio::time::sleep(wait).await;
            s
        }
        Reply::Close => return Err(std::io::Error::other("closing without an answer")),
        Reply::LoseAnswer => {
            deliver(received).await;
            return Err(std::io::Error::other("answer lost"));
        }
        Reply::Hang => {
            std::future::pending::<()>().await;
            500
        }
    };
    // Only a request that got a success answer counts as received by the
    // service; others are for the sender to retry.
    if show || (200..300).contains(&status) {
        deliver(received).await;
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = Response::builder().status(status);
    if let Some(secs) = retry_after {
        response = response.header(hyper::header::RETRY_AFTER, secs);
    }
    Ok(response
        .body(Full::new(Bytes::from_static(text.as_bytes())))
        .unwrap_or_default())
}

/// The request line and headers of one request, for a person: `── POST
/// /path from 127.0.0.1:50000, answered 200`, then one `name: value` line
/// per header.
pub fn head(received: &Received, status: u16) -> String {
    let mut out = format!(
        "── {} {} from {}, answered {status}",
        received.method, received.path, received.peer
    );
    for (name, value) in &received.headers {
        out.push('\n');
        out.push_str(name.as_str());
        out.push_str(": ");
        out.push_str(&String::from_utf8_lossy(value.as_bytes()));
    }
    out
}

/// Formats one request's body for a person: a header line per event and
/// the event pretty-printed (a batch prints each event of the array).
pub fn pretty(received: &Received, event_id_header: &str) -> String {
    let id = received
        .headers
        .get(event_id_header)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    match serde_json::from_slice::<serde_json::Value>(&received.body) {
        Ok(serde_json::Value::Array(events)) => events
            .iter()
            .map(|e| one(e, id))
            .collect::<Vec<_>>()
            .join("\n"),
        Ok(event) => one(&event, id),
        Err(e) => format!(
            "── not JSON ({e}) from {}: {}",
            received.peer,
            String::from_utf8_lossy(&received.body)
        ),
    }
}

fn one(event: &serde_json::Value, id: &str) -> String {
    let action = event
        .get("action")
        .and_then(|a| a.as_str())
        .unwrap_or("(no action)");
    let pretty = serde_json::to_string_pretty(event).unwrap_or_default();
    format!("── {action}  event id {id}\n{pretty}")
}
