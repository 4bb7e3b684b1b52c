//! Delivery lanes: each lane takes its events from the spool in order and
//! POSTs them, retrying what can succeed, so one client's events (always in
//! the same lane) reach the web service in the order they happened, also
//! across retries and restarts.
//!
//! A lane sends one request at a time, in lane order, and retries a
//! failed one before anything newer (`web.hook.enable_pipelining` is
//! accepted and ignored: see [`crate::http`]).
//!
//! Outcomes: any 2xx is delivered; a connection error, a timeout, 408, 429
//! or 5xx is retried after a capped exponential backoff with jitter (or the
//! server's `Retry-After`); any other status is recorded as failed, not
//! retried, and the event kept in the dead-letter file ([`crate::dead_letter`]).
//! An event older than the optional maximum age goes to that file instead
//! of being sent. Only then is the event acknowledged to the spool.
//!
//! Every request carries an event id header (`<spool id>-<lane>-<seq>`,
//! comma-separated in batch mode) that stays the same across retries and
//! restarts, so a receiver can drop duplicates; optionally an HMAC-SHA256
//! signature header over `"<unix seconds>.<body>"`.
//!
//! A reload swaps the target and options ([`Settings`]) under running
//! lanes. The lanes of a newer spool generation wait for the older one's
//! to drain (`after`), and lanes end by themselves once their sealed spool
//! has nothing more ([`Delivery::drained`]).
//!
//! Lanes never touch the MQTT side; the MQTT side never waits for them.

use crate::dead_letter::{DeadLetters, Letter};
use crate::http::{Connection, Target};
use crate::metrics::WebhookMetrics;
use crate::spool::{LaneReader, Record, Spool};
use crate::threads::DeliveryThreads;
use bytes::{BufMut, Bytes, BytesMut};
use herald_broker::support::{LogThrottle, lock, now_ms};
use hyper::header::{HeaderName, HeaderValue};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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

/// Where and how lanes deliver: swapped at runtime by a reload (lanes pick
/// the new one up before their next request, and a lane waiting to retry
/// tries again at once).
pub type Settings = (Arc<Target>, Arc<DeliveryOptions>);

/// The running lanes.
pub struct Delivery {
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    /// Becomes `true` once every lane has ended by itself: its spool was
    /// sealed and everything in it delivered (or given up on).
    drained: watch::Receiver<bool>,
}

/// What a set of lanes starts with.
pub struct Start {
    /// The threads the lanes run on.
    pub threads: Arc<DeliveryThreads>,
    /// The current settings (and their later replacements).
    pub settings: watch::Receiver<Settings>,
    /// The counters.
    pub metrics: Arc<WebhookMetrics>,
    /// Deliver nothing before this is `true` (an older generation is
    /// draining first); stop if its sender goes away first.
    pub after: Option<watch::Receiver<bool>>,
    /// Where events given up on are kept.
    pub dead_letters: Arc<DeadLetters>,
    /// Most lanes delivering at once: with fewer tasks than readers, each
    /// task drains its lanes one after the other (an older generation
    /// with more lanes than `pool_size` now).
    pub tasks: usize,
}

/// Starts the lanes of `spool`'s readers.
pub fn start(spool: &Spool, readers: Vec<LaneReader>, start: Start) -> Delivery {
    let (stop, stop_rx) = watch::channel(false);
    let (drained_tx, drained) = watch::channel(false);
    let spool_id: Arc<str> = Arc::from(spool.id());
    let outage = Arc::new(Outage {
        failing: AtomicBool::new(false),
        since: Mutex::new(None),
        spool: spool.clone(),
    });
    let tasks_n = start.tasks.clamp(1, readers.len().max(1));
    let mut groups: Vec<Vec<LaneReader>> = (0..tasks_n).map(|_| Vec::new()).collect();
    for (i, reader) in readers.into_iter().enumerate() {
        groups[i % tasks_n].push(reader);
    }
    let finished = Arc::new((std::sync::atomic::AtomicUsize::new(0), drained_tx));
    let tasks = groups
        .into_iter()
        .map(|group| {
            let (settings, metrics) = (start.settings.clone(), start.metrics.clone());
            let dead_letters = start.dead_letters.clone();
            let (spool_id, outage) = (spool_id.clone(), outage.clone());
            let (stop, after, finished) = (stop_rx.clone(), start.after.clone(), finished.clone());
            start.threads.spawn(async move {
                if let Some(mut after) = after {
                    // Stopping wins over a gate that opens at the same time.
                    let mut stop_wait = stop.clone();
                    tokio::select! {
                        biased;
                        _ = stop_wait.wait_for(|s| *s) => return,
                        opened = after.wait_for(|d| *d) => if opened.is_err() { return },
                    }
                    if *stop.borrow() {
                        return;
                    }
                }
                for reader in group {
                    let lane_no = reader.lane();
                    let (target, options) = settings.borrow().clone();
                    let lane = Lane {
                        reader,
                        target,
                        options,
                        settings: settings.clone(),
                        metrics: metrics.clone(),
                        dead_letters: dead_letters.clone(),
                        spool_id: spool_id.clone(),
                        outage: outage.clone(),
                        conn: None,
                        stop: stop.clone(),
                        rng: seed(lane_no),
                        log_throttle: LogThrottle::default(),
                        ids: String::new(),
                    };
                    if !lane.run().await {
                        return;
                    }
                }
                let (count, drained) = &*finished;
                if count.fetch_add(1, Ordering::AcqRel) + 1 == tasks_n {
                    let _ = drained.send(true);
                }
            })
        })
        .collect();
    Delivery {
        tasks,
        stop,
        drained,
    }
}

impl Delivery {
    /// Becomes `true` once every lane has ended by itself (see
    /// [`crate::spool::Spool::seal`]).
    pub fn drained(&self) -> watch::Receiver<bool> {
        self.drained.clone()
    }

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
    /// Answered with a status that is not retried (and the first bytes of
    /// the answer).
    Failed(u16, Bytes),
    Retry(String, Option<Duration>),
}

/// Since when requests are failing (retried), shared by the lanes so that
/// the recovery is one log line per outage, not one per lane.
struct Outage {
    /// Whether `since` is set: the one thing a delivered request reads.
    failing: AtomicBool,
    /// When the first request failed since delivery last worked.
    since: Mutex<Option<Instant>>,
    /// For the number of events waiting when delivery recovers.
    spool: Spool,
}

impl Outage {
    /// A request failed and will be retried.
    fn failed(&self) {
        if !self.failing.load(Ordering::Relaxed) {
            lock(&self.since).get_or_insert_with(Instant::now);
            self.failing.store(true, Ordering::Relaxed);
        }
    }

    /// A request was delivered: if requests were failing, one INFO line
    /// says delivery works again, after how long, with how many events
    /// waiting.
    fn delivered(&self, url: &dyn std::fmt::Display) {
        if !self.failing.load(Ordering::Relaxed) {
            return;
        }
        let since = {
            let mut since = lock(&self.since);
            self.failing.store(false, Ordering::Relaxed);
            since.take()
        };
        let Some(since) = since else { return };
        let waiting: u64 = (0..self.spool.lanes()).map(|l| self.spool.depth(l)).sum();
        let failed_for = since.elapsed().as_secs_f64();
        tracing::info!(
            %url,
            failed_for_s = format!("{failed_for:.1}"),
            waiting,
            "webhook delivery recovered after {failed_for:.1} s of failures; {waiting} events waiting"
        );
    }
}

/// One lane's task state.
struct Lane {
    reader: LaneReader,
    /// Where requests go (from `settings`, refreshed before each window).
    target: Arc<Target>,
    /// How (from `settings`, likewise).
    options: Arc<DeliveryOptions>,
    /// Replaced by a reload.
    settings: watch::Receiver<Settings>,
    metrics: Arc<WebhookMetrics>,
    dead_letters: Arc<DeadLetters>,
    spool_id: Arc<str>,
    /// Whether delivery is failing, across lanes.
    outage: Arc<Outage>,
    /// The lane's HTTP connection, reopened after an error.
    conn: Option<Connection>,
    stop: watch::Receiver<bool>,
    /// Jitter source.
    rng: u64,
    /// One log line per interval for repeated failures.
    log_throttle: LogThrottle,
    /// Reused buffer for the event id header.
    ids: String,
}

impl Lane {
    /// Delivers until stopped (`false`) or until the spool is sealed and
    /// this lane has nothing more (`true`).
    async fn run(mut self) -> bool {
        loop {
            let Some(first) = self.next_batch().await else {
                return !*self.stop.borrow();
            };
            self.refresh();
            let Some(last) = self.send_window(vec![first]).await else {
                // Stopping: what was not delivered stays in the spool.
                return false;
            };
            self.reader.ack(last);
        }
    }

    /// Takes up new settings if a reload brought some (a new target: the
    /// connection to the old one is dropped).
    fn refresh(&mut self) {
        if !self.settings.has_changed().unwrap_or(false) {
            return;
        }
        let (target, options) = self.settings.borrow_and_update().clone();
        if !Arc::ptr_eq(&target, &self.target) {
            self.conn = None;
            self.target = target;
        }
        self.options = options;
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

    /// Drops events older than the maximum age (counted and logged; they
    /// are acknowledged with the rest of their window).
    async fn drop_old(&mut self, batch: Vec<Record>) -> Vec<Record> {
        let Some(max_age) = self.options.max_event_age else {
            return batch;
        };
        let now = now_ms();
        let max = max_age.as_millis() as u64;
        let (old, young): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|r| now.saturating_sub(r.enqueued_ms) > max);
        if !old.is_empty() {
            for r in &old {
                self.metrics.dropped(r.kind);
            }
            tracing::warn!(
                lane = self.reader.lane(),
                count = old.len(),
                "webhook: events older than the maximum event age go to the dead-letter file"
            );
            self.dead_letter(
                &old,
                None,
                Bytes::new(),
                "older than web.hook.max_event_age",
            )
            .await;
        }
        young
    }

    /// Sends the requests (one per batch, one at a time), then retries, oldest first,
    /// those that can succeed, until each is delivered or failed. Returns
    /// the last sequence number to acknowledge, or `None` if told to stop
    /// first (having acknowledged what was settled in order before).
    async fn send_window(&mut self, window: Vec<Vec<Record>>) -> Option<u64> {
        let last = window.last()?.last()?.seq;
        let mut young = Vec::with_capacity(window.len());
        for batch in window {
            let batch = self.drop_old(batch).await;
            if !batch.is_empty() {
                young.push(batch);
            }
        }
        let window = young;
        if window.is_empty() {
            return Some(last);
        }
        let outcomes = self.attempt(&window).await;
        // Everything up to here is settled in order (may be acknowledged
        // even if stopping during the retries).
        let mut settled = None;
        let mut retry = Vec::new();
        for (batch, outcome) in window.into_iter().zip(outcomes) {
            let wait = self.record(&batch, outcome, 0).await;
            match wait {
                None if retry.is_empty() => settled = batch.last().map(|r| r.seq),
                None => {}
                Some(wait) => retry.push((batch, wait)),
            }
        }
        for (batch, wait) in retry {
            if self.deliver(batch, wait).await.is_none() {
                if let Some(seq) = settled {
                    self.reader.ack(seq);
                }
                return None;
            }
        }
        Some(last)
    }

    /// Retries one request, after `wait`, until delivered or failed
    /// (events that pass the maximum age meanwhile are dropped instead).
    /// `None`: told to stop first.
    async fn deliver(&mut self, batch: Vec<Record>, wait: Duration) -> Option<()> {
        let mut batch = batch;
        let mut wait = wait;
        let mut attempt = 1u32;
        loop {
            let mut settings = self.settings.clone();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop.changed() => return None,
                // New settings (another URL?): try again at once.
                Ok(()) = settings.changed() => {}
            }
            if *self.stop.borrow() {
                return None;
            }
            self.refresh();
            batch = self.drop_old(batch).await;
            if batch.is_empty() {
                return Some(());
            }
            let outcome = self
                .attempt(std::slice::from_ref(&batch))
                .await
                .pop()
                .unwrap_or(Attempt::Retry("no answer".into(), None));
            match self.record(&batch, outcome, attempt).await {
                None => return Some(()),
                Some(next) => wait = next,
            }
            attempt = attempt.saturating_add(1);
        }
    }

    /// Keeps events given up on in the dead-letter file (counted; a
    /// failure to write is counted and logged). The append and its fsync
    /// run on the blocking pool, not on this task; the lane waits for them
    /// (the events are acknowledged to the spool only after).
    async fn dead_letter(
        &mut self,
        batch: &[Record],
        status: Option<u16>,
        response: Bytes,
        why: &str,
    ) {
        let letters: Vec<Letter> = batch
            .iter()
            .map(|r| Letter {
                id: event_id(&self.spool_id, r),
                body: r.body.clone(),
                status,
                response: response.clone(),
                reason: why.to_owned(),
            })
            .collect();
        let count = letters.len() as u64;
        let (file, copy) = (self.dead_letters.clone(), letters.clone());
        let kept = match tokio::task::spawn_blocking(move || file.keep(&copy, now_ms())).await {
            Ok(kept) => kept,
            // Not run (the runtime is shutting down): written here, so
            // the events are not acknowledged without their letters.
            Err(_) => self.dead_letters.keep(&letters, now_ms()),
        };
        match kept {
            Ok(()) => self.metrics.dead_lettered(count),
            Err(e) => {
                self.metrics.dead_letter_lost(count);
                tracing::error!(path = %self.dead_letters.path().display(), error = %e, events = count, "webhook: cannot write dead letters; these events are lost");
            }
        }
    }

    /// Counts and logs an outcome; for one to retry, returns the delay
    /// before the next attempt (`attempt` attempts were made before).
    async fn record(
        &mut self,
        batch: &[Record],
        outcome: Attempt,
        attempt: u32,
    ) -> Option<Duration> {
        match outcome {
            Attempt::Delivered => {
                for r in batch {
                    self.metrics.delivered(r.kind);
                }
                self.outage.delivered(&self.target.endpoint());
                None
            }
            Attempt::Failed(status, response) => {
                for r in batch {
                    self.metrics.failed(r.kind);
                }
                let why = format!("HTTP {status}");
                self.log(&why, "not retried; kept in the dead-letter file");
                self.dead_letter(batch, Some(status), response, &why).await;
                None
            }
            Attempt::Retry(why, retry_after) => {
                for r in batch {
                    self.metrics.retried(r.kind);
                }
                self.outage.failed();
                self.log(&why, "retrying");
                Some(retry_after.unwrap_or_else(|| self.backoff(attempt)))
            }
        }
    }

    /// Writes one request per batch on the connection (opening one if
    /// needed) and reads their answers in order: one outcome per batch. If
    /// the server answers one and closes the connection (`connection:
    /// close`, HTTP/1.0), it has not processed the rest: they go again, at
    /// once, on a new connection.
    async fn attempt(&mut self, window: &[Vec<Record>]) -> Vec<Attempt> {
        let mut out = Vec::with_capacity(window.len());
        while out.len() < window.len() {
            let rest = &window[out.len()..];
            let fail = |out: &mut Vec<Attempt>, why: String| {
                out.resize_with(window.len(), || Attempt::Retry(why.clone(), None));
            };
            let reusable = match self.conn.as_mut() {
                Some(c) => !c.gone().await,
                None => false,
            };
            let mut conn = match self.conn.take() {
                Some(c) if reusable => c,
                _ => match self.target.connect().await {
                    Ok(c) => c,
                    Err(e) => {
                        fail(&mut out, e.to_string());
                        break;
                    }
                },
            };
            self.queue(&mut conn, rest);
            let started = Instant::now();
            if let Err(e) = self.target.flush(&mut conn).await {
                // The connection is in an unknown state: dropped, not reused.
                fail(&mut out, e.to_string());
                break;
            }
            while out.len() < window.len() {
                match self.target.answer(&mut conn).await {
                    Ok(answer) => {
                        self.metrics.observe_latency(started.elapsed());
                        let status = answer.status.as_u16();
                        out.push(match status {
                            200..=299 => Attempt::Delivered,
                            408 | 429 | 500..=599 => {
                                Attempt::Retry(format!("HTTP {status}"), answer.retry_after)
                            }
                            _ => Attempt::Failed(status, answer.body),
                        });
                        if answer.close {
                            break;
                        }
                    }
                    Err(e) => {
                        // No answer: the request may or may not have been
                        // processed; it is sent again (a duplicate at worst).
                        fail(&mut out, e.to_string());
                        return out;
                    }
                }
            }
            if !conn.is_closed() {
                self.conn = Some(conn);
            }
        }
        out
    }

    /// Queues one request per batch: body, event id header, signature.
    fn queue(&mut self, conn: &mut Connection, batches: &[Vec<Record>]) {
        let mut ids = std::mem::take(&mut self.ids);
        for batch in batches {
            let body = self.body(batch);
            ids.clear();
            for (i, r) in batch.iter().enumerate() {
                let sep = if i > 0 { "," } else { "" };
                let _ = write!(ids, "{sep}{}", EventId(&self.spool_id, r));
            }
            let signature = self
                .options
                .signing
                .as_ref()
                .map(|s| (&s.header, sign(&s.secret, &body)));
            let mut extra = vec![(&self.options.event_id_header, ids.as_bytes())];
            if let Some((header, value)) = &signature {
                extra.push((header, value.as_bytes()));
            }
            self.target.queue(conn, body, &extra);
        }
        self.ids = ids;
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
        if self.log_throttle.ready() {
            tracing::warn!(lane = self.reader.lane(), url = %self.target.endpoint(), error = why, "webhook request failed; {what}");
        }
    }
}

/// An event's id: `<spool id>-<lane>-<seq>`.
struct EventId<'a>(&'a str, &'a Record);

impl std::fmt::Display for EventId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}-{}", self.0, self.1.lane, self.1.seq)
    }
}

fn event_id(spool_id: &str, r: &Record) -> String {
    EventId(spool_id, r).to_string()
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

/// A jitter seed of its own for each lane, so lanes failing together do
/// not retry in step.
fn seed(lane: usize) -> u64 {
    let lane = (lane as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (now_ms() ^ u64::from(std::process::id()).rotate_left(32) ^ lane) | 1
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
