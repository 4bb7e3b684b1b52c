//! Delivery lanes: each lane takes its events from the spool in order and
//! POSTs them, one request at a time, retrying what can succeed, so one
//! client's events (always in the same lane) reach the web service in the
//! order they happened, also across retries and restarts.
//!
//! Outcomes: any 2xx is delivered; a connection error, a timeout, 408, 429
//! or 5xx is retried after a capped exponential backoff with jitter (or the
//! server's `Retry-After`); any other status is recorded as failed and not
//! retried. An event older than the optional maximum age is dropped instead
//! of sent. Only then is the event acknowledged to the spool.
//!
//! Every request carries an event id header (`<spool id>-<lane>-<seq>`,
//! comma-separated in batch mode) that stays the same across retries and
//! restarts, so a receiver can drop duplicates; optionally an HMAC-SHA256
//! signature header over `"<unix seconds>.<body>"`.
//!
//! Lanes never touch the MQTT side; the MQTT side never waits for them.

use crate::http::{Connection, Target};
use crate::metrics::WebhookMetrics;
use crate::spool::{LaneReader, Record, Spool};
use bytes::{BufMut, Bytes, BytesMut};
use hyper::header::{HeaderName, HeaderValue};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Request signing: `<header>: t=<unix seconds>,v1=<hex HMAC-SHA256 of
/// "<t>.<body>" under the secret>`.
#[derive(Clone)]
pub struct Signing {
    /// The shared secret.
    pub secret: Vec<u8>,
    /// Header that carries the signature.
    pub header: HeaderName,
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signing")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// How lanes deliver.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// First retry delay.
    pub initial_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Events older than this are dropped instead of sent.
    pub max_event_age: Option<Duration>,
    /// Events per request; 1 sends each event alone (a JSON object),
    /// more sends a JSON array.
    pub batch_size: usize,
    /// How long a lane waits to fill a batch.
    pub batch_interval: Duration,
    /// Optional signature header.
    pub signing: Option<Signing>,
    /// Header carrying the event id(s).
    pub event_id_header: HeaderName,
}

/// The running lanes.
pub struct Delivery {
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

/// Starts one task per lane.
pub fn start(
    target: Arc<Target>,
    spool: &Spool,
    readers: Vec<LaneReader>,
    options: Arc<DeliveryOptions>,
    metrics: Arc<WebhookMetrics>,
) -> Delivery {
    let (stop, stop_rx) = watch::channel(false);
    let spool_id: Arc<str> = Arc::from(spool.id());
    let tasks = readers
        .into_iter()
        .map(|reader| {
            let lane = Lane {
                reader,
                target: target.clone(),
                options: options.clone(),
                metrics: metrics.clone(),
                spool_id: spool_id.clone(),
                conn: None,
                stop: stop_rx.clone(),
                rng: seed(),
                last_log: None,
            };
            tokio::spawn(lane.run())
        })
        .collect();
    Delivery { tasks, stop }
}

impl Delivery {
    /// Stops the lanes: a request in flight may finish within `deadline`;
    /// nothing else is started. Whatever was not delivered stays in the
    /// spool for the next start.
    pub async fn shutdown(self, deadline: Duration) {
        let _ = self.stop.send(true);
        let until = Instant::now() + deadline;
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(until, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

/// What one attempt came to.
enum Attempt {
    Delivered,
    Failed(String),
    Retry(String, Option<Duration>),
}

/// One lane's task state.
struct Lane {
    reader: LaneReader,
    target: Arc<Target>,
    options: Arc<DeliveryOptions>,
    metrics: Arc<WebhookMetrics>,
    spool_id: Arc<str>,
    /// The lane's HTTP connection, reopened after an error.
    conn: Option<Connection>,
    stop: watch::Receiver<bool>,
    /// Jitter source.
    rng: u64,
    /// One log line per interval for repeated failures.
    last_log: Option<Instant>,
}

impl Lane {
    async fn run(mut self) {
        loop {
            let Some(batch) = self.next_batch().await else {
                return;
            };
            let Some(last) = self.deliver(batch).await else {
                // Stopping: leave the batch in the spool.
                return;
            };
            self.reader.ack(last);
        }
    }

    /// Waits for the next record, then (in batch mode) gathers more until
    /// the batch is full or the batch interval passes. `None`: stopping.
    async fn next_batch(&mut self) -> Option<Vec<Record>> {
        let first = tokio::select! {
            r = self.reader.next() => r?,
            _ = self.stop.changed() => return None,
        };
        let mut batch = vec![first];
        if self.options.batch_size > 1 {
            let until = Instant::now() + self.options.batch_interval;
            while batch.len() < self.options.batch_size {
                tokio::select! {
                    r = self.reader.next() => match r {
                        Some(r) => batch.push(r),
                        None => break,
                    },
                    _ = tokio::time::sleep_until(until) => break,
                    _ = self.stop.changed() => break,
                }
            }
        }
        Some(batch)
    }

    /// Drops (acknowledging them) events older than the maximum age.
    fn drop_old(&mut self, batch: Vec<Record>) -> Vec<Record> {
        let Some(max_age) = self.options.max_event_age else {
            return batch;
        };
        let now = now_ms();
        let max = max_age.as_millis() as u64;
        let (old, young): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|r| now.saturating_sub(r.enqueued_ms) > max);
        if let Some(last) = old.last() {
            for r in &old {
                self.metrics.dropped(r.kind);
            }
            self.reader.ack(last.seq);
            tracing::warn!(
                lane = self.reader.lane(),
                count = old.len(),
                "webhook: dropping events older than the maximum event age"
            );
        }
        young
    }

    /// Sends a batch until delivered or failed (events that pass the
    /// maximum age meanwhile are dropped instead); returns the last sequence
    /// number to acknowledge, or `None` if told to stop first.
    async fn deliver(&mut self, batch: Vec<Record>) -> Option<u64> {
        let last = batch.last().map(|r| r.seq)?;
        let mut batch = batch;
        let mut attempt = 0u32;
        loop {
            if *self.stop.borrow() {
                return None;
            }
            batch = self.drop_old(batch);
            if batch.is_empty() {
                return Some(last);
            }
            // Built for the events still in the batch; the same on every
            // retry otherwise.
            let body = self.body(&batch);
            let ids = batch
                .iter()
                .map(|r| format!("{}-{}-{}", self.spool_id, r.lane, r.seq))
                .collect::<Vec<_>>()
                .join(",");
            let id_value = HeaderValue::from_str(&ids).ok()?;
            let started = Instant::now();
            let outcome = self.attempt(body, &id_value).await;
            self.metrics.observe_latency(started.elapsed());
            match outcome {
                Attempt::Delivered => {
                    for r in &batch {
                        self.metrics.delivered(r.kind);
                    }
                    return Some(last);
                }
                Attempt::Failed(why) => {
                    for r in &batch {
                        self.metrics.failed(r.kind);
                    }
                    self.log(&why, "not retried");
                    return Some(last);
                }
                Attempt::Retry(why, retry_after) => {
                    for r in &batch {
                        self.metrics.retried(r.kind);
                    }
                    let delay = retry_after.unwrap_or_else(|| self.backoff(attempt));
                    attempt = attempt.saturating_add(1);
                    self.log(&why, "retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.stop.changed() => return None,
                    }
                }
            }
        }
    }

    async fn attempt(&mut self, body: Bytes, id: &HeaderValue) -> Attempt {
        let conn = match self.conn.take() {
            Some(c) => c,
            None => match self.target.connect().await {
                Ok(c) => c,
                Err(e) => return Attempt::Retry(e.to_string(), None),
            },
        };
        let mut conn = conn;
        let mut extra = vec![(self.options.event_id_header.clone(), id.clone())];
        if let Some(signing) = &self.options.signing {
            extra.push((signing.header.clone(), sign(&signing.secret, &body)));
        }
        match self.target.post(&mut conn, body, &extra).await {
            Ok(answer) => {
                self.conn = Some(conn);
                let status = answer.status.as_u16();
                match status {
                    200..=299 => Attempt::Delivered,
                    408 | 429 | 500..=599 => {
                        Attempt::Retry(format!("HTTP {status}"), answer.retry_after)
                    }
                    _ => Attempt::Failed(format!("HTTP {status}")),
                }
            }
            // Any failure: the connection is in an unknown state, so it is
            // dropped (not put back) and the next attempt reconnects.
            Err(e) => Attempt::Retry(e.to_string(), None),
        }
    }

    /// The request body: the event's JSON object, or in batch mode a JSON
    /// array of them.
    fn body(&self, batch: &[Record]) -> Bytes {
        if let ([one], true) = (batch, self.options.batch_size <= 1) {
            return one.body.clone();
        }
        let size = batch.iter().map(|r| r.body.len() + 1).sum::<usize>() + 1;
        let mut out = BytesMut::with_capacity(size);
        out.put_u8(b'[');
        for (i, r) in batch.iter().enumerate() {
            if i > 0 {
                out.put_u8(b',');
            }
            out.put_slice(&r.body);
        }
        out.put_u8(b']');
        out.freeze()
    }

    /// Capped exponential backoff with jitter: between half and all of
    /// `initial × 2^attempt`, at most `max`.
    fn backoff(&mut self, attempt: u32) -> Duration {
        let base = self
            .options
            .initial_backoff
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.options.max_backoff);
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = base / 2;
        let jitter = (self.rng % 1000) as u32;
        half + half.mul_f64(f64::from(jitter) / 1000.0)
    }

    fn log(&mut self, why: &str, what: &str) {
        let quiet = self
            .last_log
            .is_some_and(|t| t.elapsed() < Duration::from_secs(10));
        if !quiet {
            tracing::warn!(lane = self.reader.lane(), url = %self.target.endpoint(), error = why, "webhook request failed; {what}");
            self.last_log = Some(Instant::now());
        }
    }
}

/// The signature header value for `body` at the current time.
pub fn sign(secret: &[u8], body: &[u8]) -> HeaderValue {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let value = format!("t={t},v1={}", signature(secret, t, body));
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Hex HMAC-SHA256 of `"<t>.<body>"` under `secret`.
pub fn signature(secret: &[u8], t: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    ctx.sign()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn seed() -> u64 {
    (now_ms() ^ u64::from(std::process::id()).rotate_left(32)) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Expected values computed independently with Python's hmac module:
        // hmac.new(b"Jefe", b"0.what do ya want for nothing?", sha256).
        assert_eq!(
            signature(b"Jefe", 0, b"what do ya want for nothing?"),
            "37f471929915ccd2cbbe79feb84ffcff4f2bb25e15fc41c2506687331ae179cc"
        );
        // RFC 4231 test case 2 checks the HMAC itself: with the "t." prefix
        // removed from the message the RFC's digest must come out.
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        let tag = ring::hmac::sign(&key, b"what do ya want for nothing?");
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
