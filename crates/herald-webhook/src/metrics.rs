//! The WebHook's counters and their Prometheus text form: per event kind
//! matched, delivered, failed, retried and dropped; queue depth per lane;
//! spool bytes; a request latency histogram. All lock-free atomics.

use crate::event::EventKind;
use crate::spool::Spool;
use herald_broker::exposition::{Exposition, Kind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Counters of one event kind.
#[derive(Debug, Default)]
struct KindCounters {
    matched: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    dropped: AtomicU64,
}

/// Picks one counter of a kind.
type Counter = fn(&KindCounters) -> &AtomicU64;

/// Every WebHook counter.
#[derive(Debug, Default)]
pub struct WebhookMetrics {
    kinds: [KindCounters; EventKind::COUNT],
    /// Requests per bucket (cumulative buckets are computed on render).
    latency: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
    latency_count: AtomicU64,
    /// Events written to the dead-letter file.
    dead_letters: AtomicU64,
    /// Events that could not be written to the dead-letter file (lost).
    dead_letters_lost: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl WebhookMetrics {
    fn kind(&self, kind: u8) -> Option<&KindCounters> {
        self.kinds.get(usize::from(kind))
    }

    /// An event matched a rule and was accepted into the spool.
    pub fn matched(&self, kind: u8) {
        if let Some(k) = self.kind(kind) {
            inc(&k.matched);
        }
    }

    /// An event was delivered (2xx).
    pub fn delivered(&self, kind: u8) {
        if let Some(k) = self.kind(kind) {
            inc(&k.delivered);
        }
    }

    /// An event was answered with a status that is not retried.
    pub fn failed(&self, kind: u8) {
        if let Some(k) = self.kind(kind) {
            inc(&k.failed);
        }
    }

    /// An attempt to deliver an event will be retried.
    pub fn retried(&self, kind: u8) {
        if let Some(k) = self.kind(kind) {
            inc(&k.retried);
        }
    }

    /// An event was dropped (too old, or the spool was full).
    pub fn dropped(&self, kind: u8) {
        if let Some(k) = self.kind(kind) {
            inc(&k.dropped);
        }
    }

    /// `n` events given up on were written to the dead-letter file.
    pub fn dead_lettered(&self, n: u64) {
        self.dead_letters.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` events given up on could not be written to the dead-letter file.
    pub fn dead_letter_lost(&self, n: u64) {
        self.dead_letters_lost.fetch_add(n, Ordering::Relaxed);
    }

    /// Records how long one request took.
    pub fn observe_latency(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        inc(&self.latency[bucket]);
        self.latency_sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        inc(&self.latency_count);
    }

    /// Prometheus text exposition of these counters and the spool's state.
    pub fn render(&self, spool: Option<&Spool>) -> String {
        let mut page = Exposition::new();
        let series: [(&str, &str, Counter); 5] = [
            (
                "matched",
                "events that matched a rule and were accepted",
                |k| &k.matched,
            ),
            ("delivered", "events delivered (2xx)", |k| &k.delivered),
            (
                "failed",
                "events answered with a status that is not retried",
                |k| &k.failed,
            ),
            ("retried", "delivery attempts that will be retried", |k| {
                &k.retried
            }),
            (
                "dropped",
                "events too old to send (kept in the dead-letter file)",
                |k| &k.dropped,
            ),
        ];
        for (name, help, get) in series {
            let name = format!("herald_webhook_events_{name}_total");
            page.family(&name, Kind::Counter, help);
            for kind in EventKind::ALL {
                let v = get(&self.kinds[kind.index()]).load(Ordering::Relaxed);
                page.sample(&name, &[("event", kind.name())], v);
            }
        }
        let letters: [(&str, &str, &AtomicU64); 2] = [
            (
                "dead_letters_total",
                "events given up on (not retried, or too old) written to the dead-letter file",
                &self.dead_letters,
            ),
            (
                "dead_letters_lost_total",
                "events given up on that could not be written to the dead-letter file",
                &self.dead_letters_lost,
            ),
        ];
        for (name, help, value) in letters {
            let name = format!("herald_webhook_{name}");
            page.single(&name, Kind::Counter, help, value.load(Ordering::Relaxed));
        }
        if let Some(spool) = spool {
            let stats = spool.stats();
            page.single(
                "herald_webhook_spool_healthy",
                Kind::Gauge,
                "1 while the spool writes normally, 0 while writes fail and events are held in memory",
                u8::from(spool.healthy()),
            );
            let single: [(&str, Kind, &str, &AtomicU64); 9] = [
                (
                    "spool_bytes",
                    Kind::Gauge,
                    "bytes held by the spool",
                    &stats.bytes,
                ),
                (
                    "spool_committed_total",
                    Kind::Counter,
                    "events written to the spool (fsynced per policy)",
                    &stats.committed,
                ),
                (
                    "spool_dropped_total",
                    Kind::Counter,
                    "events dropped because the spool was full",
                    &stats.dropped,
                ),
                (
                    "spool_overflow_dropped_total",
                    Kind::Counter,
                    "events nobody waited for (QoS 0, other events) dropped because the events not yet written filled the memory allowed",
                    &stats.overflow,
                ),
                (
                    "spool_refused_total",
                    Kind::Counter,
                    "QoS 1/2 publishes refused because writes failed and the memory allowed was full",
                    &stats.refused,
                ),
                (
                    "spool_write_errors_total",
                    Kind::Counter,
                    "spool writes (or fsyncs under fsync = always) that failed and were retried",
                    &stats.write_errors,
                ),
                (
                    "spool_fsync_errors_total",
                    Kind::Counter,
                    "fsyncs under fsync = interval that failed",
                    &stats.fsync_errors,
                ),
                (
                    "spool_corrupt_records_total",
                    Kind::Counter,
                    "damaged records skipped when reading the spool",
                    &stats.corrupt,
                ),
                (
                    "spool_delete_errors_total",
                    Kind::Counter,
                    "delivered segment files that could not be deleted",
                    &stats.delete_errors,
                ),
            ];
            for (name, kind, help, value) in single {
                let name = format!("herald_webhook_{name}");
                page.single(&name, kind, help, value.load(Ordering::Relaxed));
            }
            let depth = "herald_webhook_queue_depth";
            page.family(depth, Kind::Gauge, "events waiting per lane");
            for lane in 0..spool.lanes() {
                page.sample(depth, &[("lane", &lane.to_string())], spool.depth(lane));
            }
        }
        let latency = "herald_webhook_request_seconds";
        let bucket = "herald_webhook_request_seconds_bucket";
        page.family(latency, Kind::Histogram, "request latency");
        let mut cumulative = 0u64;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.latency[i].load(Ordering::Relaxed);
            page.sample(bucket, &[("le", &bound.to_string())], cumulative);
        }
        cumulative += self.latency[BUCKETS.len()].load(Ordering::Relaxed);
        page.sample(bucket, &[("le", "+Inf")], cumulative);
        let sum = self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        page.sample("herald_webhook_request_seconds_sum", &[], sum);
        let count = self.latency_count.load(Ordering::Relaxed);
        page.sample("herald_webhook_request_seconds_count", &[], count);
        page.finish()
    }
}
