//! The WebHook sink: an HTTP server (`herald_webhook::listen`) that plays
//! the web service and checks what the WebHook promises — every event
//! delivered, none twice, each client's events in order.
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

use crate::error::BenchError;
use crate::live::thousands;
use crate::seq::{Seen, SeqTracker};
use herald_webhook::listen::{self, Decide, Received, Reply};
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

/// One event id: `<spool>-<lane>-<seq>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventId<'a> {
    /// The spool's id.
    pub spool: &'a str,
    /// Lane number.
    pub lane: u32,
    /// Sequence number within the lane.
    pub seq: u64,
}

/// Parses one event id; the spool id may itself contain dashes.
pub fn parse_event_id(s: &str) -> Option<EventId<'_>> {
    let mut parts = s.trim().rsplitn(3, '-');
    let seq = parts.next()?.parse().ok()?;
    let lane = parts.next()?.parse().ok()?;
    let spool = parts.next().filter(|s| !s.is_empty())?;
    Some(EventId { spool, lane, seq })
}

/// The client an event belongs to.
fn client_of(event: &serde_json::Value) -> Option<&str> {
    event
        .get("clientid")
        .or_else(|| event.get("from_client_id"))
        .and_then(|c| c.as_str())
}

/// The last event seen of one client.
#[derive(Debug, Clone)]
struct ClientMark {
    /// Its lane key.
    lane: String,
    /// Its sequence number.
    seq: u64,
}

/// Everything the sink has counted.
#[derive(Debug, Default)]
pub struct Accounts {
    /// Per `<spool>-<lane>`.
    lanes: HashMap<String, SeqTracker>,
    /// Per `<spool>-<lane>`, the lowest sequence number seen.
    first: HashMap<String, u64>,
    /// Per client id, its latest event.
    clients: HashMap<String, ClientMark>,
    /// Accepted requests.
    accepted: u64,
    /// Events received.
    events: u64,
    /// Client order violations.
    client_order: u64,
    /// Unreadable or inconsistent requests.
    malformed: u64,
}

impl Accounts {
    /// Accounts for one accepted request: its id header and body.
    pub fn record(&mut self, ids: Option<&str>, body: &[u8]) {
        self.accepted += 1;
        let Some(ids) = ids else {
            self.malformed += 1;
            return;
        };
        let ids: Vec<_> = ids.split(',').map(parse_event_id).collect();
        let events = match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(serde_json::Value::Array(events)) => events,
            Ok(event) => vec![event],
            Err(_) => Vec::new(),
        };
        if events.len() != ids.len() || ids.iter().any(Option::is_none) {
            self.malformed += 1;
        }
        for (i, id) in ids.into_iter().enumerate() {
            let Some(id) = id else { continue };
            self.events += 1;
            let lane = format!("{}-{}", id.spool, id.lane);
            self.first
                .entry(lane.clone())
                .and_modify(|f| *f = (*f).min(id.seq))
                .or_insert(id.seq);
            let seen = self
                .lanes
                .entry(lane.clone())
                .or_insert_with(SeqTracker::joined)
                .observe(id.seq);
            if seen == Seen::Duplicate {
                continue;
            }
            let Some(client) = events.get(i).and_then(client_of) else {
                continue;
            };
            match self.clients.get_mut(client) {
                Some(mark) => {
                    if mark.lane == lane && id.seq < mark.seq {
                        self.client_order += 1;
                    } else {
                        *mark = ClientMark { lane, seq: id.seq };
                    }
                }
                None => {
                    self.clients
                        .insert(client.to_owned(), ClientMark { lane, seq: id.seq });
                }
            }
        }
    }

    /// Distinct events.
    pub fn unique(&self) -> u64 {
        self.lanes.values().map(SeqTracker::unique).sum()
    }

    /// The per-lane figures, sorted by lane.
    pub fn lanes(&self) -> Vec<LaneReport> {
        let mut lanes: Vec<_> = self
            .lanes
            .iter()
            .map(|(lane, t)| LaneReport {
                lane: lane.clone(),
                received: t.received,
                duplicates: t.duplicates,
                out_of_order: t.out_of_order,
                gaps: t.gaps,
                missing: t.missing(),
                next_seq: t.next_expected(),
                first_seq: self.first.get(lane).copied(),
            })
            .collect();
        lanes.sort_by(|a, b| a.lane.cmp(&b.lane));
        lanes
    }
}

/// A cheap random number in [0, 1) for `--fail-ratio`.
fn random_unit(state: &AtomicU64) -> f64 {
    let x = state.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

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
    let accounts = Arc::new(Mutex::new(Accounts::default()));
    let requests = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let seed = Arc::new(AtomicU64::new(
        u64::from(std::process::id()) ^ crate::payload::now_ns().rotate_left(17),
    ));
    let (status, fail_ratio, delay, hang) = (s.status, s.fail_ratio, s.delay, s.hang);
    let decide: Decide = {
        let requests = requests.clone();
        let refused = refused.clone();
        Arc::new(move |_r: &Received| {
            requests.fetch_add(1, Ordering::Relaxed);
            if hang {
                return Reply::Hang;
            }
            let code = if fail_ratio > 0.0 && random_unit(&seed) < fail_ratio {
                500
            } else {
                status
            };
            if !(200..300).contains(&code) {
                refused.fetch_add(1, Ordering::Relaxed);
            }
            if delay.is_zero() {
                Reply::Status(code)
            } else {
                Reply::Delayed(code, delay)
            }
        })
    };
    let header = s.event_id_header.to_ascii_lowercase();
    let deliver = {
        let accounts = accounts.clone();
        Arc::new(move |r: Received| -> BoxFuture {
            let ids = r.headers.get(header.as_str()).and_then(|v| v.to_str().ok());
            if let Ok(mut a) = accounts.lock() {
                a.record(ids, &r.body);
            }
            Box::pin(async {})
        })
    };
    let receiver = listen::serve(s.bind, decide, deliver)
        .await
        .map_err(|source| BenchError::Listen {
            addr: s.bind,
            source,
        })?;
    eprintln!("sink: listening on http://{}", receiver.addr);
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
        let (unique, dups, ooo, missing) = match accounts.lock() {
            Ok(a) => {
                let lanes = a.lanes();
                (
                    a.unique(),
                    lanes.iter().map(|l| l.duplicates).sum::<u64>(),
                    lanes.iter().map(|l| l.out_of_order).sum::<u64>(),
                    lanes.iter().map(|l| l.missing).sum::<u64>(),
                )
            }
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
                    thousands(requests.load(Ordering::Relaxed)),
                    thousands(refused.load(Ordering::Relaxed)),
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
    drop(receiver);
    let elapsed_s = start.elapsed().as_secs_f64();
    let a = accounts
        .lock()
        .map_err(|_| BenchError::Invalid("sink accounts poisoned".into()))?;
    let lanes = a.lanes();
    let unique = a.unique();
    Ok(SinkReport {
        scenario: "sink",
        elapsed_s,
        requests: requests.load(Ordering::Relaxed),
        refused: refused.load(Ordering::Relaxed),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_parse_from_the_right() {
        assert_eq!(
            parse_event_id("a1b2c3d4e5f6-3-42"),
            Some(EventId {
                spool: "a1b2c3d4e5f6",
                lane: 3,
                seq: 42
            })
        );
        assert_eq!(
            parse_event_id(" my-spool-0-7 "),
            Some(EventId {
                spool: "my-spool",
                lane: 0,
                seq: 7
            })
        );
        for bad in ["", "x", "a-1", "-1-2", "a-b-3", "a-1-c", "a-1-"] {
            assert_eq!(parse_event_id(bad), None, "{bad:?}");
        }
    }

    fn event(client: &str) -> String {
        format!(r#"{{"action":"client_connected","clientid":"{client}"}}"#)
    }

    #[test]
    fn single_events_in_order() {
        let mut a = Accounts::default();
        for seq in 0..5 {
            a.record(Some(&format!("s-1-{seq}")), event("c1").as_bytes());
        }
        assert_eq!(
            (a.events, a.unique(), a.client_order, a.malformed),
            (5, 5, 0, 0)
        );
        let lanes = a.lanes();
        assert_eq!(lanes.len(), 1);
        assert_eq!(lanes[0].lane, "s-1");
        assert_eq!(lanes[0].next_seq, Some(5));
    }

    #[test]
    fn batches_duplicates_gaps_and_client_order() {
        let mut a = Accounts::default();
        let batch = format!("[{},{},{}]", event("c1"), event("c2"), event("c1"));
        a.record(Some("s-0-10,s-0-11,s-0-12"), batch.as_bytes());
        // The same batch again (a retry after a lost answer): duplicates.
        a.record(Some("s-0-10,s-0-11,s-0-12"), batch.as_bytes());
        // A gap: 13 and 14 skipped.
        a.record(Some("s-0-15"), event("c2").as_bytes());
        // 13 arrives late, for c1 whose last event was 12: in order for c1.
        a.record(Some("s-0-13"), event("c1").as_bytes());
        // 14 for c2 arrives after c2's 15: a client order violation.
        a.record(Some("s-0-14"), event("c2").as_bytes());
        let lane = &a.lanes()[0];
        assert_eq!(lane.received, 9);
        assert_eq!(lane.duplicates, 3);
        assert_eq!(lane.gaps, 1);
        assert_eq!(lane.out_of_order, 2);
        assert_eq!(lane.missing, 0);
        assert_eq!(a.unique(), 6);
        assert_eq!(a.client_order, 1);
        assert_eq!(a.clients.len(), 2);
        assert_eq!(a.malformed, 0);
    }

    #[test]
    fn message_events_use_from_client_id_and_lanes_are_separate() {
        let mut a = Accounts::default();
        let publish = r#"{"action":"message_publish","from_client_id":"dev9"}"#;
        a.record(Some("s-2-5"), publish.as_bytes());
        a.record(Some("s-3-1"), event("other").as_bytes());
        a.record(Some("s-2-4"), publish.as_bytes());
        // dev9's event 4 came after its event 5.
        assert_eq!(a.client_order, 1);
        assert_eq!(a.lanes().len(), 2);
        assert!(a.clients.contains_key("dev9"));
    }

    #[test]
    fn malformed_requests_are_counted() {
        let mut a = Accounts::default();
        a.record(None, event("c").as_bytes());
        a.record(Some("s-0-1,s-0-2"), event("c").as_bytes()); // 2 ids, 1 event
        a.record(Some("garbage"), event("c").as_bytes());
        a.record(Some("s-0-3"), b"not json");
        assert_eq!(a.malformed, 4);
        assert_eq!(a.accepted, 4);
        // Ids that parsed still count as events.
        assert_eq!(a.events, 3);
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
