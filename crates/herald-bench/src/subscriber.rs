//! A subscriber: receives the run's messages, acknowledges them as its QoS
//! requires (PUBACK; PUBREC then PUBCOMP), and accounts for each one: end
//! to end latency from the payload's send time, and per publisher the
//! losses, duplicates and reorderings ([`SeqTracker`]).
//!
//! Messages are decoded a read batch at a time and the clock is read once
//! per batch. A payload without a valid header, or from a publisher this
//! subscriber does not expect, is counted as foreign and otherwise ignored.

use crate::client::{ClientError, Conn, PacketIds};
use crate::histogram::Histogram;
use crate::live::{Live, Timing};
use crate::payload::{self, Header};
use crate::publisher::TICK;
use crate::seq::SeqTracker;
use herald_codec::{Packet, PubResp, QoS};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Which publishers a subscriber hears from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Publishers `0..n` (fan-in).
    All(u32),
    /// Only this one (fan-out, pairs).
    One(u32),
}

/// What one subscriber is told to do.
#[derive(Debug, Clone)]
pub struct SubscriberPlan {
    /// Its index, for messages.
    pub index: u32,
    /// Which publishers it hears from.
    pub expect: Expect,
    /// Keep alive in seconds, to send PINGREQ when idle (0: never).
    pub keep_alive: u16,
}

/// Per-publisher accounting, dense for fan-in.
#[derive(Debug, Clone)]
enum Trackers {
    /// Index = publisher id.
    Dense(Vec<SeqTracker>),
    /// A single publisher.
    One(u32, SeqTracker),
}

impl Trackers {
    fn new(expect: Expect) -> Trackers {
        match expect {
            Expect::All(n) => Trackers::Dense(vec![SeqTracker::starting_at(0); n as usize]),
            Expect::One(id) => Trackers::One(id, SeqTracker::starting_at(0)),
        }
    }

    #[inline]
    fn get(&mut self, publisher: u32) -> Option<&mut SeqTracker> {
        match self {
            Trackers::Dense(v) => v.get_mut(publisher as usize),
            Trackers::One(id, t) => (*id == publisher).then_some(t),
        }
    }

    fn into_vec(self) -> Vec<(u32, SeqTracker)> {
        match self {
            Trackers::Dense(v) => (0..).zip(v).collect(),
            Trackers::One(id, t) => vec![(id, t)],
        }
    }
}

/// What one subscriber saw.
#[derive(Debug, Clone, Default)]
pub struct SubscriberResult {
    /// Its index.
    pub index: u32,
    /// Per publisher id, the accounting of its messages.
    pub streams: Vec<(u32, SeqTracker)>,
    /// End-to-end latency of messages sent after the warm-up, nanoseconds.
    pub latency: Histogram,
    /// Messages received (duplicates included).
    pub received: u64,
    /// Messages received after the warm-up.
    pub received_measured: u64,
    /// When the last message arrived (payload clock).
    pub last_recv_ns: u64,
    /// Messages that were not this run's (short payload, unknown publisher).
    pub foreign: u64,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

/// Runs one subscriber until the run tells subscribers to stop.
pub async fn run(
    mut conn: Conn,
    plan: SubscriberPlan,
    timing: Timing,
    live: Arc<Live>,
) -> SubscriberResult {
    let mut trackers = Trackers::new(plan.expect);
    let mut result = SubscriberResult {
        index: plan.index,
        ..SubscriberResult::default()
    };
    let outcome = receive(&mut conn, &plan, &timing, &live, &mut trackers, &mut result).await;
    result.streams = trackers.into_vec();
    match outcome {
        Ok(()) => conn.disconnect().await,
        Err(e) => result.error = Some(format!("subscriber {}: {e}", plan.index)),
    }
    result
}

async fn receive(
    conn: &mut Conn,
    plan: &SubscriberPlan,
    t: &Timing,
    live: &Live,
    trackers: &mut Trackers,
    r: &mut SubscriberResult,
) -> Result<(), ClientError> {
    let mut qos2 = PacketIds::new();
    let ping_every = (plan.keep_alive > 0).then(|| Duration::from_secs(plan.keep_alive.into()) / 2);
    let mut last_write = Instant::now();
    let sleep = tokio::time::sleep(TICK);
    tokio::pin!(sleep);
    loop {
        if live.subscribers_stopped() {
            return Ok(());
        }
        let mut progress = false;
        if conn.try_fill()? > 0 {
            progress = true;
            let now_ns = payload::now_ns();
            let mut got = 0u64;
            while let Some(packet) = conn.next_packet()? {
                match packet {
                    Packet::Publish(p) => {
                        match p.qos {
                            QoS::AtMostOnce => {}
                            QoS::AtLeastOnce => {
                                conn.queue(&Packet::PubAck(PubResp::new(p.packet_id)))?;
                            }
                            QoS::ExactlyOnce => {
                                let first = qos2.take(p.packet_id);
                                conn.queue(&Packet::PubRec(PubResp::new(p.packet_id)))?;
                                if !first {
                                    // A retransmission before our PUBREL
                                    // arrived: delivered once already.
                                    continue;
                                }
                            }
                        }
                        got += 1;
                        account(&p.payload, now_ns, t, trackers, r);
                    }
                    Packet::PubRel(rel) => {
                        qos2.release(rel.packet_id);
                        conn.queue(&Packet::PubComp(PubResp::new(rel.packet_id)))?;
                    }
                    Packet::Disconnect(d) => return Err(ClientError::Disconnected(d.reason)),
                    _ => {}
                }
            }
            r.received += got;
            live.received.fetch_add(got, Ordering::Relaxed);
        }
        let now = Instant::now();
        if let Some(every) = ping_every
            && now.duration_since(last_write) >= every
        {
            conn.queue(&Packet::PingReq)?;
            last_write = now;
        }
        if conn.try_flush()? > 0 {
            progress = true;
            last_write = now;
        }
        if progress {
            tokio::task::consume_budget().await;
            continue;
        }
        if sleep.deadline().into_std() <= now {
            sleep.as_mut().reset((now + TICK).into());
        }
        tokio::select! {
            ready = conn.ready(conn.pending() > 0) => { ready?; }
            _ = &mut sleep => {}
        }
    }
}

/// Accounts for one received payload at `now_ns`.
#[inline]
fn account(
    payload: &[u8],
    now_ns: u64,
    t: &Timing,
    trackers: &mut Trackers,
    r: &mut SubscriberResult,
) {
    let Some(h) = Header::read(payload) else {
        r.foreign += 1;
        return;
    };
    let Some(stream) = trackers.get(h.publisher) else {
        r.foreign += 1;
        return;
    };
    stream.observe(h.seq);
    if h.sent_ns >= t.warmup_end_ns {
        r.latency.record(now_ns.saturating_sub(h.sent_ns));
    }
    if now_ns >= t.warmup_end_ns {
        r.received_measured += 1;
    }
    r.last_recv_ns = now_ns;
}
