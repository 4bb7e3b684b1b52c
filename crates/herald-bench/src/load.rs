//! The message scenarios: fan-in (N publishers → 1 subscriber), fan-out
//! (1 publisher → N subscribers) and pairs (N publisher/subscriber pairs,
//! each on its own topic).
//!
//! A run connects and subscribes every subscriber first, then connects the
//! publishers, starts them all at one instant, stops them at the end of
//! `--duration` (or after `--count` messages each), waits for stragglers,
//! and adds up what every client saw into a [`LoadReport`]. Topics carry a
//! per-run tag, so leftovers of an earlier run cannot be counted.

use crate::client::{self, ClientError, Conn, Target};
use crate::error::BenchError;
use crate::histogram::{Histogram, LatencySummary};
use crate::live::{self, Live, Show, Timing};
use crate::payload::{self, HEADER_LEN};
use crate::publisher::{self, PublisherPlan, PublisherResult};
use crate::subscriber::{self, Expect, SubscriberPlan, SubscriberResult};
use herald_codec::{Protocol, QoS};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Which message scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// N publishers → 1 subscriber, one topic.
    FanIn,
    /// 1 publisher → N subscribers, one topic.
    FanOut,
    /// N pairs, topic i from publisher i to subscriber i.
    Pairs,
}

impl Scenario {
    /// Its command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::FanIn => "fan-in",
            Scenario::FanOut => "fan-out",
            Scenario::Pairs => "pairs",
        }
    }
}

/// How fast publishers send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// As fast as the broker takes them.
    FlatOut,
    /// This many messages per second, per publisher.
    PerPublisher(f64),
    /// This many messages per second, shared evenly by the publishers.
    Total(f64),
}

/// Everything a message scenario run needs.
#[derive(Debug, Clone)]
pub struct LoadSettings {
    /// The broker and how to connect.
    pub target: Target,
    /// Which scenario.
    pub scenario: Scenario,
    /// Publishers (fan-in), subscribers (fan-out) or pairs.
    pub clients: u32,
    /// QoS of publications and subscriptions.
    pub qos: QoS,
    /// Payload bytes, at least [`HEADER_LEN`].
    pub size: usize,
    /// Sending rate.
    pub rate: Rate,
    /// How long publishers send after the warm-up (ignored with `count`).
    pub duration: Duration,
    /// Messages per publisher instead of a duration.
    pub count: Option<u64>,
    /// Time at the start not counted in rates and latency.
    pub warmup: Duration,
    /// Most unacknowledged QoS 1/2 messages per publisher.
    pub inflight: u16,
    /// How long to wait for late messages and acknowledgements at the end.
    pub drain: Duration,
    /// First level(s) of every topic.
    pub topic_prefix: String,
    /// Subscribers keep their session.
    pub persistent: bool,
    /// Messages are published retained.
    pub retain: bool,
    /// Connections being set up at once.
    pub connect_concurrency: usize,
    /// Print the progress line.
    pub progress: bool,
    /// Measure each QoS 1/2 publisher's acknowledgement latency
    /// ([`LoadReport::ack_latency_us`]).
    pub ack_latency: bool,
    /// The broker's process id, for its CPU time (see [`WindowCpu`]).
    pub broker_pid: Option<u32>,
}

/// CPU used while messages flowed: from the start signal until the last
/// expected delivery arrived (or the drain gave up). Both sides share the
/// machine's cores: whichever uses them up is the ceiling of the run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct WindowCpu {
    /// Length of the window, seconds.
    pub wall_s: f64,
    /// This program's CPU time (user + system) in the window, seconds.
    pub loadgen_cpu_s: f64,
    /// The broker's (`--broker-pid`), seconds.
    pub broker_cpu_s: Option<f64>,
}

/// Wall clock and CPU times at one moment, for [`WindowCpu`].
struct CpuMark(Instant, Option<f64>, Option<f64>);

impl CpuMark {
    fn now(broker_pid: Option<u32>) -> CpuMark {
        CpuMark(
            Instant::now(),
            crate::conn::cpu_seconds(std::process::id()),
            broker_pid.and_then(crate::conn::cpu_seconds),
        )
    }

    fn since(&self, start: &CpuMark) -> Option<WindowCpu> {
        Some(WindowCpu {
            wall_s: self.0.duration_since(start.0).as_secs_f64(),
            loadgen_cpu_s: self.1? - start.1?,
            broker_cpu_s: self.2.zip(start.2).map(|(end, start)| end - start),
        })
    }
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// `fan-in`, `fan-out` or `pairs`.
    pub scenario: &'static str,
    /// `3.1.1` or `5`.
    pub protocol: &'static str,
    /// QoS used.
    pub qos: u8,
    /// Payload bytes per message.
    pub payload_bytes: usize,
    /// Publishing clients.
    pub publishers: u32,
    /// Subscribing clients.
    pub subscribers: u32,
    /// Target rate per publisher (`None`: flat out).
    pub rate_per_publisher: Option<f64>,
    /// Inflight window per publisher at QoS 1/2.
    pub inflight: u16,
    /// Warm-up seconds excluded from rates and latency.
    pub warmup_s: f64,
    /// Seconds the send rate is computed over.
    pub send_window_s: f64,
    /// Seconds the receive rate is computed over (to the last arrival).
    pub recv_window_s: f64,
    /// CPU used by both sides while messages flowed.
    pub window_cpu: Option<WindowCpu>,
    /// Messages sent.
    pub sent: u64,
    /// Deliveries expected: each message times the subscribers it is for.
    pub expected: u64,
    /// Deliveries received, duplicates included.
    pub received: u64,
    /// Expected deliveries never received.
    pub lost: u64,
    /// Deliveries received more than once.
    pub duplicated: u64,
    /// Deliveries that arrived after a later one from the same publisher.
    pub out_of_order: u64,
    /// Times a subscriber saw a publisher's sequence jump forward.
    pub gaps: u64,
    /// Messages that were not this run's.
    pub foreign: u64,
    /// QoS 1/2 messages never acknowledged to their publisher.
    pub unacked: u64,
    /// Acknowledgements carrying a failure reason code.
    pub rejected: u64,
    /// Acknowledgements for identifiers not in flight.
    pub unexpected_acks: u64,
    /// Messages sent per second after the warm-up.
    pub send_rate: f64,
    /// Deliveries received per second after the warm-up.
    pub recv_rate: f64,
    /// End-to-end latency of messages sent after the warm-up.
    pub latency_us: Option<LatencySummary>,
    /// When asked for: PUBLISH written → its PUBACK / PUBREC read, for
    /// QoS 1/2 messages sent after the warm-up (what a device waits for
    /// before it may forget a message).
    pub ack_latency_us: Option<LatencySummary>,
    /// Client failures during the run (first few).
    pub errors: Vec<String>,
    /// Clients that failed.
    pub failed_clients: u64,
    /// Whether the run was interrupted.
    pub aborted: bool,
}

/// Loss and duplicate accounting over every subscriber.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Deliveries expected.
    pub expected: u64,
    /// Deliveries received, duplicates included.
    pub received: u64,
    /// Distinct deliveries received.
    pub unique: u64,
    /// Expected deliveries never received.
    pub lost: u64,
    /// Repeated deliveries.
    pub duplicated: u64,
    /// Deliveries that arrived late.
    pub out_of_order: u64,
    /// Forward jumps in a publisher's sequence.
    pub gaps: u64,
}

/// Adds up the subscribers' per-publisher accounting against what each
/// publisher says it sent.
pub fn tally(publishers: &[PublisherResult], subscribers: &[SubscriberResult]) -> Tally {
    let mut t = Tally::default();
    for sub in subscribers {
        for (id, stream) in &sub.streams {
            let sent = publishers
                .iter()
                .find(|p| p.id == *id)
                .map_or(0, |p| p.sent);
            t.expected += sent;
            t.received += stream.received;
            t.unique += stream.unique();
            t.lost += sent.saturating_sub(stream.unique());
            t.duplicated += stream.duplicates;
            t.out_of_order += stream.out_of_order;
            t.gaps += stream.gaps;
        }
    }
    t
}

/// The clients of a run: subscribers with their filters, publishers.
fn plan(s: &LoadSettings, tag: &str) -> (Vec<(SubscriberPlan, String)>, Vec<PublisherPlan>) {
    let n = s.clients;
    let publishers = match s.scenario {
        Scenario::FanIn | Scenario::Pairs => n,
        Scenario::FanOut => 1,
    };
    let rate = match s.rate {
        Rate::FlatOut => None,
        Rate::PerPublisher(r) => Some(r),
        Rate::Total(r) => Some(r / f64::from(publishers)),
    };
    let prefix = s.topic_prefix.trim_end_matches('/');
    let topic = |i: u32| match s.scenario {
        Scenario::FanIn => format!("{prefix}/{tag}/in"),
        Scenario::FanOut => format!("{prefix}/{tag}/out"),
        Scenario::Pairs => format!("{prefix}/{tag}/p/{i}"),
    };
    let keep_alive = s.target.keep_alive;
    let subscribers = match s.scenario {
        Scenario::FanIn => vec![(
            SubscriberPlan {
                index: 0,
                expect: Expect::All(n),
                keep_alive,
            },
            topic(0),
        )],
        Scenario::FanOut => (0..n)
            .map(|i| {
                let plan = SubscriberPlan {
                    index: i,
                    expect: Expect::One(0),
                    keep_alive,
                };
                (plan, topic(0))
            })
            .collect(),
        Scenario::Pairs => (0..n)
            .map(|i| {
                let plan = SubscriberPlan {
                    index: i,
                    expect: Expect::One(i),
                    keep_alive,
                };
                (plan, topic(i))
            })
            .collect(),
    };
    let publishers = (0..publishers)
        .map(|id| PublisherPlan {
            id,
            topic: topic(id),
            qos: s.qos,
            size: s.size,
            rate,
            count: s.count,
            inflight: s.inflight,
            keep_alive,
            ack_latency: s.ack_latency,
            retain: s.retain,
        })
        .collect();
    (subscribers, publishers)
}

/// A short tag unlikely to repeat between runs.
pub fn run_tag() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:08x}", h.finish() as u32)
}

/// The command-line spelling of a protocol level.
pub fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::V3_1 => "3.1",
        Protocol::V3_1_1 => "3.1.1",
        Protocol::V5 => "5",
    }
}

impl LoadSettings {
    fn check(&self) -> Result<(), BenchError> {
        let invalid = |m: String| Err(BenchError::Invalid(m));
        if self.size < HEADER_LEN {
            return invalid(format!(
                "--size {} is below the {HEADER_LEN}-byte payload header",
                self.size
            ));
        }
        if self.clients == 0 {
            return invalid("--clients must be at least 1".into());
        }
        if self.inflight == 0 {
            return invalid("--inflight must be at least 1".into());
        }
        if let Rate::PerPublisher(r) | Rate::Total(r) = self.rate
            && !(r.is_finite() && r > 0.0)
        {
            return invalid(format!("rate {r} must be a positive number"));
        }
        if self.count == Some(0) {
            return invalid("--count must be at least 1".into());
        }
        Ok(())
    }
}

/// Connects (and, for subscribers, subscribes) `n` clients, at most
/// `concurrency` at a time, in index order; subscribers with a session
/// that outlives the connection if `persistent`.
async fn connect_all(
    target: &Target,
    names: Vec<String>,
    subscribe: Option<(Vec<String>, QoS)>,
    concurrency: usize,
    first_index: usize,
    persistent: bool,
) -> Result<Vec<Conn>, BenchError> {
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    let filters = Arc::new(subscribe);
    for (i, name) in names.into_iter().enumerate() {
        let mut opts = target.options(first_index + i, name.clone());
        let limit = limit.clone();
        let filters = filters.clone();
        if filters.is_some() {
            opts.receive_maximum = Some(u16::MAX);
            opts.persistent = persistent;
        }
        set.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let result: Result<Conn, ClientError> = async {
                let (mut conn, _ack) = client::connect(&opts).await?;
                if let Some((filters, qos)) = filters.as_ref() {
                    let filter = filters.get(i).cloned().unwrap_or_default();
                    conn.subscribe(&[filter], *qos, opts.timeout).await?;
                }
                Ok(conn)
            }
            .await;
            (i, name, result)
        });
    }
    let mut conns: Vec<Option<Conn>> = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (i, name, result) = joined.map_err(|e| BenchError::Invalid(e.to_string()))?;
        let conn = result.map_err(|source| BenchError::Setup { who: name, source })?;
        if conns.len() <= i {
            conns.resize_with(i + 1, || None);
        }
        if let Some(slot) = conns.get_mut(i) {
            *slot = Some(conn);
        }
    }
    Ok(conns.into_iter().flatten().collect())
}

/// Runs one message scenario and reports what it measured.
pub async fn run(s: &LoadSettings, live: Arc<Live>) -> Result<LoadReport, BenchError> {
    s.check()?;
    payload::clock_start();
    let tag = run_tag();
    let (sub_plans, pub_plans) = plan(s, &tag);
    let sub_names = sub_plans
        .iter()
        .map(|(p, _)| format!("hb-{tag}-s{}", p.index))
        .collect();
    let filters = sub_plans.iter().map(|(_, f)| f.clone()).collect();
    let sub_conns = connect_all(
        &s.target,
        sub_names,
        Some((filters, s.qos)),
        s.connect_concurrency,
        0,
        s.persistent,
    )
    .await?;
    let pub_names = pub_plans
        .iter()
        .map(|p| format!("hb-{tag}-p{}", p.id))
        .collect();
    let pub_conns = connect_all(
        &s.target,
        pub_names,
        None,
        s.connect_concurrency,
        sub_plans.len(),
        false,
    )
    .await?;

    let cpu_start = CpuMark::now(s.broker_pid);
    let go = Instant::now() + Duration::from_millis(50);
    let warmup_end = go + s.warmup;
    let timing = Timing {
        go,
        warmup_end,
        warmup_end_ns: payload::ns_since_start(warmup_end),
        end: s.count.is_none().then_some(warmup_end + s.duration),
        drain: s.drain,
    };
    let _progress = s
        .progress
        .then(|| live::progress(live.clone(), s.scenario.name().to_owned(), Show::Messages));
    let subscribers: Vec<_> = sub_conns
        .into_iter()
        .zip(sub_plans)
        .map(|(conn, (plan, _))| tokio::spawn(subscriber::run(conn, plan, timing, live.clone())))
        .collect();
    let publishers: Vec<_> = pub_conns
        .into_iter()
        .zip(pub_plans.iter().cloned())
        .map(|(conn, plan)| tokio::spawn(publisher::run(conn, plan, timing, live.clone())))
        .collect();

    let mut pub_results = Vec::with_capacity(publishers.len());
    for handle in publishers {
        pub_results.push(handle.await.unwrap_or_else(|e| PublisherResult {
            error: Some(format!("publisher task: {e}")),
            ..PublisherResult::default()
        }));
    }
    let sent: Vec<u64> = pub_results.iter().map(|p| p.sent).collect();
    let expected_total: u64 = match s.scenario {
        Scenario::FanIn | Scenario::Pairs => sent.iter().sum(),
        Scenario::FanOut => sent.iter().sum::<u64>() * u64::from(s.clients),
    };
    wait_for_stragglers(&live, expected_total, s.drain).await;
    let window_cpu = CpuMark::now(s.broker_pid).since(&cpu_start);
    live.stop_subscribers();
    let mut sub_results = Vec::with_capacity(subscribers.len());
    for handle in subscribers {
        sub_results.push(handle.await.unwrap_or_else(|e| SubscriberResult {
            error: Some(format!("subscriber task: {e}")),
            ..SubscriberResult::default()
        }));
    }
    let mut report = report(s, &timing, &pub_results, &sub_results, live.aborted());
    report.window_cpu = window_cpu;
    Ok(report)
}

/// Waits until every expected delivery has arrived, or arrivals stopped
/// for `drain`, or the run was interrupted.
async fn wait_for_stragglers(live: &Live, expected: u64, drain: Duration) {
    let mut last = live.received.load(Ordering::Relaxed);
    let mut since = Instant::now();
    loop {
        let now = live.received.load(Ordering::Relaxed);
        if now >= expected || live.aborted() {
            return;
        }
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= drain {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn report(
    s: &LoadSettings,
    t: &Timing,
    pubs: &[PublisherResult],
    subs: &[SubscriberResult],
    aborted: bool,
) -> LoadReport {
    let tally = tally(pubs, subs);
    let mut latency = Histogram::new();
    for sub in subs {
        latency.merge(&sub.latency);
    }
    let mut ack_latency = Histogram::new();
    for p in pubs {
        ack_latency.merge(&p.ack_latency);
    }
    let secs = |ns: u64| ns as f64 / 1e9;
    let last_send = pubs.iter().map(|p| p.last_send_ns).max().unwrap_or(0);
    let send_window = match (t.end, s.count, aborted) {
        (Some(end), None, false) => end.duration_since(t.warmup_end).as_secs_f64(),
        _ => secs(last_send.saturating_sub(t.warmup_end_ns)),
    };
    let last_recv = subs.iter().map(|r| r.last_recv_ns).max().unwrap_or(0);
    let recv_window = secs(last_recv.saturating_sub(t.warmup_end_ns));
    let per_second = |n: u64, window: f64| if window > 0.0 { n as f64 / window } else { 0.0 };
    let sent_measured: u64 = pubs.iter().map(|p| p.sent_measured).sum();
    let received_measured: u64 = subs.iter().map(|r| r.received_measured).sum();
    let errors: Vec<String> = pubs
        .iter()
        .filter_map(|p| p.error.clone())
        .chain(subs.iter().filter_map(|r| r.error.clone()))
        .collect();
    let publishers = pubs.len() as u32;
    LoadReport {
        scenario: s.scenario.name(),
        protocol: protocol_name(s.target.protocol),
        qos: s.qos as u8,
        payload_bytes: s.size,
        publishers,
        subscribers: subs.len() as u32,
        rate_per_publisher: match s.rate {
            Rate::FlatOut => None,
            Rate::PerPublisher(r) => Some(r),
            Rate::Total(r) => Some(r / f64::from(publishers.max(1))),
        },
        inflight: s.inflight,
        warmup_s: s.warmup.as_secs_f64(),
        send_window_s: send_window,
        recv_window_s: recv_window,
        window_cpu: None,
        sent: pubs.iter().map(|p| p.sent).sum(),
        expected: tally.expected,
        received: tally.received,
        lost: tally.lost,
        duplicated: tally.duplicated,
        out_of_order: tally.out_of_order,
        gaps: tally.gaps,
        foreign: subs.iter().map(|r| r.foreign).sum(),
        unacked: pubs.iter().map(|p| p.unacked).sum(),
        rejected: pubs.iter().map(|p| p.rejected).sum(),
        unexpected_acks: pubs.iter().map(|p| p.unexpected_acks).sum(),
        send_rate: per_second(sent_measured, send_window),
        recv_rate: per_second(received_measured, recv_window),
        latency_us: latency.summary_us(),
        ack_latency_us: ack_latency.summary_us(),
        failed_clients: errors.len() as u64,
        errors: errors.into_iter().take(10).collect(),
        aborted,
    }
}

/// One line of the text report for a latency summary: `label` padded to
/// the report's column, then the percentiles; `note` ends the parenthesis.
fn latency_line(label: &str, l: &LatencySummary, note: &str) -> String {
    format!(
        "  {label:<9} p50 {:.0} µs  p90 {:.0} µs  p99 {:.0} µs  p99.9 {:.0} µs  max {:.0} µs  (mean {:.0} µs, {} samples{note})\n",
        l.p50,
        l.p90,
        l.p99,
        l.p999,
        l.max,
        l.mean,
        crate::live::thousands(l.samples)
    )
}

impl LoadReport {
    /// The report for a person.
    pub fn human(&self) -> String {
        use crate::live::thousands as th;
        let mut out = format!(
            "{} MQTT {} QoS {}, {} B payload, {} publisher(s) → {} subscriber(s), {}\n",
            self.scenario,
            self.protocol,
            self.qos,
            self.payload_bytes,
            self.publishers,
            self.subscribers,
            match self.rate_per_publisher {
                Some(r) => format!("{r:.0} msg/s per publisher"),
                None => "flat out".to_owned(),
            },
        );
        out += &format!(
            "  sent      {:>14}   {:>12.0} msg/s over {:.2} s\n",
            th(self.sent),
            self.send_rate,
            self.send_window_s
        );
        out += &format!(
            "  received  {:>14}   {:>12.0} msg/s over {:.2} s\n",
            th(self.received),
            self.recv_rate,
            self.recv_window_s
        );
        if let Some(w) = &self.window_cpu {
            out += &format!(
                "  CPU while messages flowed ({:.2} s): load generator {:.2} s{}\n",
                w.wall_s,
                w.loadgen_cpu_s,
                w.broker_cpu_s
                    .map(|b| format!(", broker {b:.2} s"))
                    .unwrap_or_default()
            );
        }
        out += &format!(
            "  expected  {:>14}   lost {}  duplicated {}  out of order {}  gaps {}\n",
            th(self.expected),
            th(self.lost),
            th(self.duplicated),
            th(self.out_of_order),
            th(self.gaps),
        );
        if self.qos > 0 || self.unacked + self.rejected + self.unexpected_acks > 0 {
            out += &format!(
                "  acks      unacked {}  rejected {}  unexpected {}\n",
                self.unacked, self.rejected, self.unexpected_acks
            );
        }
        match &self.latency_us {
            Some(l) => out += &latency_line("latency", l, ""),
            None => out += "  latency   no samples\n",
        }
        if let Some(l) = &self.ack_latency_us {
            out += &latency_line("ack", l, "; PUBLISH → PUBACK/PUBREC");
        }
        if self.foreign > 0 {
            out += &format!("  foreign   {} messages not from this run\n", self.foreign);
        }
        if self.failed_clients > 0 {
            out += &format!("  FAILED    {} client(s):\n", self.failed_clients);
            for e in &self.errors {
                out += &format!("    {e}\n");
            }
        }
        if self.aborted {
            out += "  (interrupted)\n";
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seq::SeqTracker;

    fn publisher(id: u32, sent: u64) -> PublisherResult {
        PublisherResult {
            id,
            sent,
            ..PublisherResult::default()
        }
    }

    fn stream(id: u32, seqs: impl IntoIterator<Item = u64>) -> (u32, SeqTracker) {
        let mut t = SeqTracker::starting_at(0);
        for s in seqs {
            t.observe(s);
        }
        (id, t)
    }

    fn subscriber(streams: Vec<(u32, SeqTracker)>) -> SubscriberResult {
        SubscriberResult {
            streams,
            ..SubscriberResult::default()
        }
    }

    #[test]
    fn everything_received_once_is_no_loss() {
        let pubs = [publisher(0, 100), publisher(1, 50)];
        let subs = [subscriber(vec![stream(0, 0..100), stream(1, 0..50)])];
        let t = tally(&pubs, &subs);
        assert_eq!(
            t,
            Tally {
                expected: 150,
                received: 150,
                unique: 150,
                ..Tally::default()
            }
        );
    }

    #[test]
    fn lost_counts_gaps_and_the_missing_tail() {
        // Publisher 0 sent 100; 10..20 never arrived, nor did 95..100.
        let pubs = [publisher(0, 100)];
        let subs = [subscriber(vec![stream(0, (0..10).chain(20..95))])];
        let t = tally(&pubs, &subs);
        assert_eq!(t.expected, 100);
        assert_eq!(t.received, 85);
        assert_eq!(t.lost, 15);
        assert_eq!(t.gaps, 1);
        assert_eq!(t.duplicated, 0);
    }

    #[test]
    fn duplicates_do_not_hide_losses() {
        // 10 messages: 3 never arrived, 4 and 5 arrived twice, 9 before 8.
        let pubs = [publisher(0, 10)];
        let subs = [subscriber(vec![stream(0, [0, 1, 2, 4, 4, 5, 5, 6, 9, 8])])];
        let t = tally(&pubs, &subs);
        assert_eq!(t.received, 10);
        assert_eq!(t.unique, 8);
        assert_eq!(t.duplicated, 2);
        assert_eq!(t.lost, 2); // 3 and 7
        assert_eq!(t.out_of_order, 1); // 8 after 9
    }

    #[test]
    fn fan_out_expects_every_message_at_every_subscriber() {
        let pubs = [publisher(0, 10)];
        let subs = [
            subscriber(vec![stream(0, 0..10)]),
            subscriber(vec![stream(0, 0..7)]),
            subscriber(vec![stream(0, [])]),
        ];
        let t = tally(&pubs, &subs);
        assert_eq!(t.expected, 30);
        assert_eq!(t.received, 17);
        assert_eq!(t.lost, 13);
    }

    #[test]
    fn plans_match_the_scenarios() {
        let target = Target {
            addr: "127.0.0.1:1883".parse().expect("addr"),
            protocol: Protocol::V3_1_1,
            keep_alive: 30,
            sources: vec![],
            timeout: Duration::from_secs(1),
            credentials: None,
            transport: Default::default(),
        };
        let mut s = LoadSettings {
            target,
            scenario: Scenario::FanIn,
            clients: 3,
            qos: QoS::AtLeastOnce,
            size: 64,
            rate: Rate::Total(300.0),
            duration: Duration::from_secs(1),
            count: None,
            warmup: Duration::ZERO,
            inflight: 64,
            drain: Duration::from_secs(1),
            topic_prefix: "b/".into(),
            persistent: false,
            retain: false,
            connect_concurrency: 10,
            progress: false,
            ack_latency: false,
            broker_pid: None,
        };
        let (subs, pubs) = plan(&s, "T");
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].0.expect, Expect::All(3));
        assert_eq!(subs[0].1, "b/T/in");
        assert_eq!(pubs.len(), 3);
        assert!(
            pubs.iter()
                .all(|p| p.topic == "b/T/in" && p.rate == Some(100.0))
        );

        s.scenario = Scenario::FanOut;
        let (subs, pubs) = plan(&s, "T");
        assert_eq!((subs.len(), pubs.len()), (3, 1));
        assert!(
            subs.iter()
                .all(|(p, f)| p.expect == Expect::One(0) && f == "b/T/out")
        );
        assert_eq!(pubs[0].rate, Some(300.0));

        s.scenario = Scenario::Pairs;
        let (subs, pubs) = plan(&s, "T");
        assert_eq!((subs.len(), pubs.len()), (3, 3));
        assert_eq!(subs[2].0.expect, Expect::One(2));
        assert_eq!(subs[2].1, "b/T/p/2");
        assert_eq!(pubs[2].topic, "b/T/p/2");

        s.size = HEADER_LEN - 1;
        assert!(s.check().is_err());
    }
}
