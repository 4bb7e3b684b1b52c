//! The WebHook sink: an HTTP/1.1 server (hyper, keep-alive, answers to
//! pipelined requests flushed together) that plays the web service and
//! checks what the WebHook promises — every event delivered, none twice,
//! each client's events in order. It is cheap per request so that it is not
//! the bottleneck of a WebHook benchmark: bodies are read for their client
//! ids only, without building a `serde_json::Value`, and outside the lock
//! on the accounts.
//!
//! Every request carries its event id(s) in a header (`x-herald-event-id`
//! by default): `<spool id>-<lane>-<seq>`, a comma-separated list in batch
//! mode, where the body is a JSON array with one event per id. Per lane
//! (spool id and lane number), sequence numbers are checked with a
//! [`SeqTracker`] (gaps, duplicates, late arrivals); per client (`clientid`,
//! or `from_client_id` for message events), each new event must come after
//! the previous one. Only requests answered with a 2xx count: anything else
//! the WebHook must send again.
//!
//! It can answer with another status, fail a fraction of requests with 500,
//! delay answers or never answer at all, to exercise retries.
//!
//! The report carries a timeline (distinct events every 100 ms) and each
//! lane's lowest sequence number, so scripts can compute rates over a
//! window and stitch the reports of two sink runs (an outage) together.
//!
//! # Layout
//!
//! - this file: the settings, the report and [`run`], the loop that
//!   samples the counts and stops the sink;
//! - [`event_id`]: the `<spool>-<lane>-<seq>` ids of the id header;
//! - `body`: the request body read for its client ids only;
//! - [`accounts`]: what has been received, per lane and per client;
//! - `server`: the HTTP server on its own thread, and how it answers.

mod accounts;
mod body;
mod event_id;
mod server;

pub use accounts::Accounts;
pub use event_id::{EventId, parse_event_id};

use crate::error::BenchError;
use crate::live::thousands;
use serde::Serialize;
use server::{Server, Sink};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What the sink is told.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    /// Where to listen.
    pub bind: SocketAddr,
    /// Status to answer with.
    pub status: u16,
    /// Fraction of requests (0 to 1) answered 500 instead, at random.
    pub fail_ratio: f64,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Accept requests but never answer them.
    pub hang: bool,
    /// Header holding the event ids.
    pub event_id_header: String,
    /// Stop after this long (`None`: until interrupted or `expect`).
    pub duration: Option<Duration>,
    /// Stop once this many distinct events have been received.
    pub expect: Option<u64>,
    /// Print a line every second.
    pub progress: bool,
}

/// Per-lane figures.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LaneReport {
    /// `<spool id>-<lane>`.
    pub lane: String,
    /// Events received (duplicates included).
    pub received: u64,
    /// Events received more than once.
    pub duplicates: u64,
    /// Events that arrived after a later one of the same lane.
    pub out_of_order: u64,
    /// Forward jumps in the lane's sequence.
    pub gaps: u64,
    /// Events skipped and never received.
    pub missing: u64,
    /// One past the highest sequence number seen.
    pub next_seq: Option<u64>,
    /// The lowest sequence number seen.
    pub first_seq: Option<u64>,
}

/// The figures of a sink run.
#[derive(Debug, Clone, Serialize)]
pub struct SinkReport {
    /// Always `sink`.
    pub scenario: &'static str,
    /// Seconds the sink ran.
    pub elapsed_s: f64,
    /// Requests received (any answer).
    pub requests: u64,
    /// Requests answered with a non-2xx status (to be retried).
    pub refused: u64,
    /// Requests answered 2xx.
    pub accepted: u64,
    /// Events in accepted requests (duplicates included).
    pub events: u64,
    /// Distinct events.
    pub unique: u64,
    /// Events received more than once.
    pub duplicates: u64,
    /// Events that arrived after a later one of their lane.
    pub out_of_order: u64,
    /// Forward jumps in lane sequences.
    pub gaps: u64,
    /// Events skipped and never received.
    pub missing: u64,
    /// Events that came after a later event of the same client.
    pub client_order_violations: u64,
    /// Distinct clients seen.
    pub clients: u64,
    /// Requests whose ids or body could not be read, or did not match.
    pub malformed: u64,
    /// Distinct events per second over the run.
    pub events_per_s: f64,
    /// Highest one-second event count.
    pub peak_events_per_s: u64,
    /// Wall-clock time the sink started, seconds since the Unix epoch.
    pub started_unix_s: f64,
    /// `[seconds since start, distinct events so far]`, every 100 ms.
    pub timeline: Vec<(f64, u64)>,
    /// Per lane.
    pub lanes: Vec<LaneReport>,
}

/// Runs the sink until `stop` resolves, `duration` passes or `expect`
/// events arrived; returns what it counted.
pub async fn run(
    s: &SinkSettings,
    stop: impl Future<Output = ()>,
) -> Result<SinkReport, BenchError> {
    if !(0.0..=1.0).contains(&s.fail_ratio) {
        return Err(BenchError::Invalid(format!(
            "--fail-ratio {} must be between 0 and 1",
            s.fail_ratio
        )));
    }
    let sink = Arc::new(Sink::new(s));
    let listen_error = |source| BenchError::Listen {
        addr: s.bind,
        source,
    };
    let listener = std::net::TcpListener::bind(s.bind).map_err(listen_error)?;
    listener.set_nonblocking(true).map_err(listen_error)?;
    let addr = listener.local_addr().map_err(listen_error)?;
    let server = Server::start(listener, sink.clone())
        .map_err(|e| BenchError::Invalid(format!("starting the sink's server: {e}")))?;
    eprintln!("sink: listening on http://{addr}");
    let start = Instant::now();
    let started_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut timeline = Vec::new();
    let deadline = s.duration.map(|d| start + d);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut last_print = start;
    let mut last_unique = 0u64;
    let mut peak = 0u64;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {}
        }
        let (unique, dups, ooo, missing) = match sink.accounts.lock() {
            Ok(a) => a.totals(),
            Err(_) => break,
        };
        timeline.push((start.elapsed().as_secs_f64(), unique));
        if last_print.elapsed() >= Duration::from_secs(1) {
            let secs = last_print.elapsed().as_secs_f64();
            let per_s = ((unique - last_unique) as f64 / secs) as u64;
            peak = peak.max(per_s);
            if s.progress {
                eprintln!(
                    "sink {:>4}s  events {:>10} ({:>7}/s)  requests {:>9}  refused {:>7}  dup {}  late {}  missing {}",
                    start.elapsed().as_secs(),
                    thousands(unique),
                    thousands(per_s),
                    thousands(sink.requests.load(Ordering::Relaxed)),
                    thousands(sink.refused.load(Ordering::Relaxed)),
                    dups,
                    ooo,
                    missing,
                );
            }
            last_print = Instant::now();
            last_unique = unique;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) || s.expect.is_some_and(|e| unique >= e) {
            break;
        }
    }
    drop(server);
    let elapsed_s = start.elapsed().as_secs_f64();
    let a = sink
        .accounts
        .lock()
        .map_err(|_| BenchError::Invalid("sink accounts poisoned".into()))?;
    let lanes = a.lanes();
    let unique = a.unique();
    Ok(SinkReport {
        scenario: "sink",
        elapsed_s,
        requests: sink.requests.load(Ordering::Relaxed),
        refused: sink.refused.load(Ordering::Relaxed),
        accepted: a.accepted,
        events: a.events,
        unique,
        duplicates: lanes.iter().map(|l| l.duplicates).sum(),
        out_of_order: lanes.iter().map(|l| l.out_of_order).sum(),
        gaps: lanes.iter().map(|l| l.gaps).sum(),
        missing: lanes.iter().map(|l| l.missing).sum(),
        client_order_violations: a.client_order,
        clients: a.clients.len() as u64,
        malformed: a.malformed,
        events_per_s: if elapsed_s > 0.0 {
            unique as f64 / elapsed_s
        } else {
            0.0
        },
        peak_events_per_s: peak,
        started_unix_s,
        timeline,
        lanes,
    })
}

impl SinkReport {
    /// The report for a person.
    pub fn human(&self) -> String {
        let mut out = format!(
            "sink: {} events ({} distinct) in {} requests over {:.1} s, {:.0} events/s (peak {}/s)\n",
            thousands(self.events),
            thousands(self.unique),
            thousands(self.requests),
            self.elapsed_s,
            self.events_per_s,
            thousands(self.peak_events_per_s),
        );
        out += &format!(
            "  refused {}  duplicates {}  out of order {}  gaps {}  missing {}  client order violations {}  malformed {}  clients {}\n",
            self.refused,
            self.duplicates,
            self.out_of_order,
            self.gaps,
            self.missing,
            self.client_order_violations,
            self.malformed,
            self.clients
        );
        for l in &self.lanes {
            if l.duplicates + l.out_of_order + l.missing > 0 {
                out += &format!(
                    "  lane {}: received {} duplicates {} out of order {} gaps {} missing {}\n",
                    l.lane, l.received, l.duplicates, l.out_of_order, l.gaps, l.missing
                );
            }
        }
        out
    }
}
