//! A publisher: sends numbered, time-stamped messages on one topic, flat
//! out or at a fixed rate, keeping at most `inflight` QoS 1/2 messages
//! unacknowledged, and answers PUBREC with PUBREL at QoS 2.
//!
//! Each PUBLISH is a copy of a frame encoded once by `herald-codec`
//! ([`Template`]) with its packet identifier and payload header patched in,
//! so sending costs a memcpy; flat out, frames are batched up to
//! [`HIGH_WATER`] bytes per write. The send time in the header is taken once
//! per batch, just before it is written.

use crate::client::{ClientError, Conn, PacketIds};
use crate::histogram::Histogram;
use crate::live::{Live, Timing};
use crate::payload::{self, HEADER_LEN, Header};
use bytes::{Bytes, BytesMut};
use herald_codec::{ByteStr, EncodeError, Packet, Protocol, PubResp, Publish, QoS};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Refill the write buffer when it holds less than this.
const LOW_WATER: usize = 16 * 1024;
/// Fill the write buffer up to about this much per batch.
const HIGH_WATER: usize = 64 * 1024;
/// Longest a client sleeps without looking at its flags and timers.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// A PUBLISH frame encoded once, to be copied and patched per message.
#[derive(Debug, Clone)]
pub struct Template {
    /// The whole frame, payload zeroed.
    frame: Vec<u8>,
    /// Where the packet identifier is (QoS 1 and 2).
    id_at: Option<usize>,
    /// Where the payload starts.
    payload_at: usize,
}

impl Template {
    /// Encodes a PUBLISH of `size` payload bytes on `topic` at `qos`.
    pub fn new(
        topic: &str,
        qos: QoS,
        size: usize,
        protocol: Protocol,
    ) -> Result<Template, EncodeError> {
        Template::with_retain(topic, qos, size, protocol, false)
    }

    /// [`Template::new`] with the RETAIN flag as `retain` says.
    pub fn with_retain(
        topic: &str,
        qos: QoS,
        size: usize,
        protocol: Protocol,
        retain: bool,
    ) -> Result<Template, EncodeError> {
        let publish = Publish {
            qos,
            retain,
            topic: ByteStr::from(topic),
            packet_id: if qos == QoS::AtMostOnce { 0 } else { 1 },
            payload: Bytes::from(vec![0u8; size]),
            ..Publish::default()
        };
        let packet = Packet::Publish(publish);
        let remaining = packet.remaining_len(protocol)?;
        let mut buf = BytesMut::new();
        let total = packet.encode(protocol, &mut buf)?;
        let header = total - remaining;
        let payload_at = total - size;
        // Topic length prefix and topic, then the identifier.
        let id_at = (qos != QoS::AtMostOnce).then_some(header + 2 + topic.len());
        Ok(Template {
            frame: buf.to_vec(),
            id_at,
            payload_at,
        })
    }

    /// Bytes per message on the wire.
    pub fn len(&self) -> usize {
        self.frame.len()
    }

    /// Whether the frame is empty (never, for a valid template).
    pub fn is_empty(&self) -> bool {
        self.frame.is_empty()
    }

    /// Appends one PUBLISH with `packet_id` (ignored at QoS 0) and `header`.
    #[inline]
    pub fn put(&self, buf: &mut BytesMut, packet_id: u16, header: &Header) {
        let start = buf.len();
        buf.extend_from_slice(&self.frame);
        let Some(frame) = buf.get_mut(start..) else {
            return;
        };
        if let Some(at) = self.id_at
            && let Some(id) = frame.get_mut(at..at + 2)
        {
            id.copy_from_slice(&packet_id.to_be_bytes());
        }
        if let Some(payload) = frame.get_mut(self.payload_at..) {
            header.write(payload);
        }
    }
}

/// What one publisher is told to do.
#[derive(Debug, Clone)]
pub struct PublisherPlan {
    /// Its id in payload headers.
    pub id: u32,
    /// Topic it publishes to.
    pub topic: String,
    /// QoS of its messages.
    pub qos: QoS,
    /// Payload size in bytes (at least [`HEADER_LEN`]).
    pub size: usize,
    /// Messages per second, or `None` for flat out.
    pub rate: Option<f64>,
    /// Stop after this many messages (otherwise at `Timing::end`).
    pub count: Option<u64>,
    /// Most QoS 1/2 messages unacknowledged at once.
    pub inflight: u16,
    /// Keep alive in seconds, to send PINGREQ when idle (0: never).
    pub keep_alive: u16,
    /// Measure the acknowledgement latency of QoS 1/2 messages (PUBLISH
    /// written → PUBACK / PUBREC read): costs a send-time slot per packet
    /// identifier (512 KiB per publisher), so only when asked.
    pub ack_latency: bool,
    /// Whether its messages are published retained.
    pub retain: bool,
}

/// What one publisher did.
#[derive(Debug, Clone, Default)]
pub struct PublisherResult {
    /// Its id.
    pub id: u32,
    /// Messages written.
    pub sent: u64,
    /// Messages written after the warm-up.
    pub sent_measured: u64,
    /// QoS 1/2 messages whose exchange completed.
    pub acked: u64,
    /// QoS 1/2 messages still unacknowledged when it gave up waiting.
    pub unacked: u64,
    /// Acknowledgements carrying a failure reason code (5.0).
    pub rejected: u64,
    /// Acknowledgements for identifiers not in flight.
    pub unexpected_acks: u64,
    /// When its last message was written (payload clock).
    pub last_send_ns: u64,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
    /// With [`PublisherPlan::ack_latency`]: PUBLISH written → its PUBACK
    /// (QoS 1) or PUBREC (QoS 2) read, for messages sent after the
    /// warm-up, nanoseconds.
    pub ack_latency: Histogram,
}

/// Runs one publisher to the end of the run, then disconnects.
pub async fn run(
    mut conn: Conn,
    plan: PublisherPlan,
    timing: Timing,
    live: Arc<Live>,
) -> PublisherResult {
    let mut result = PublisherResult {
        id: plan.id,
        ..PublisherResult::default()
    };
    match publish(&mut conn, &plan, &timing, &live, &mut result).await {
        Ok(()) => conn.disconnect().await,
        Err(e) => result.error = Some(format!("publisher {}: {e}", plan.id)),
    }
    result
}

async fn publish(
    conn: &mut Conn,
    plan: &PublisherPlan,
    t: &Timing,
    live: &Live,
    r: &mut PublisherResult,
) -> Result<(), ClientError> {
    debug_assert!(plan.size >= HEADER_LEN);
    let template = Template::with_retain(
        &plan.topic,
        plan.qos,
        plan.size,
        conn.protocol(),
        plan.retain,
    )?;
    let qos0 = plan.qos == QoS::AtMostOnce;
    let mut ids = PacketIds::new();
    // Send time per packet identifier, to time its acknowledgement (0: not
    // timed, sent during the warm-up).
    let mut acks = AckClock {
        sent: if plan.ack_latency && !qos0 {
            vec![0; usize::from(u16::MAX) + 1]
        } else {
            Vec::new()
        },
        warmup_end_ns: t.warmup_end_ns,
    };
    let window = if qos0 {
        u64::MAX
    } else {
        u64::from(plan.inflight.max(1))
    };
    let ping_every = (plan.keep_alive > 0).then(|| Duration::from_secs(plan.keep_alive.into()) / 2);
    let mut seq = 0u64;
    let mut stop_at: Option<Instant> = None;
    let mut last_write = Instant::now();
    tokio::time::sleep_until(t.go.into()).await;
    let sleep = tokio::time::sleep_until((t.go + TICK).into());
    tokio::pin!(sleep);
    loop {
        let now = Instant::now();
        if stop_at.is_none()
            && (t.end.is_some_and(|e| now >= e)
                || plan.count.is_some_and(|c| seq >= c)
                || live.aborted())
        {
            stop_at = Some(now + t.drain);
        }
        let mut wake = now + TICK;
        let mut progress = false;
        if stop_at.is_none() && conn.pending() < LOW_WATER {
            let mut allowed = window.saturating_sub(u64::from(ids.in_use()));
            if let Some(c) = plan.count {
                allowed = allowed.min(c.saturating_sub(seq));
            }
            if let Some(rate) = plan.rate {
                let due = (now.duration_since(t.go).as_secs_f64() * rate) as u64 + 1;
                let owed = due.saturating_sub(seq);
                if owed == 0 {
                    wake = wake.min(t.go + Duration::from_secs_f64(seq as f64 / rate));
                }
                allowed = allowed.min(owed);
            }
            if allowed > 0 {
                let stamp = payload::now_ns();
                let mut n = 0u64;
                let buf = conn.wbuf();
                while n < allowed && buf.len() < HIGH_WATER {
                    let id = if qos0 {
                        0
                    } else {
                        match ids.alloc() {
                            Some(id) => id,
                            None => break,
                        }
                    };
                    let header = Header {
                        publisher: plan.id,
                        seq,
                        sent_ns: stamp,
                    };
                    template.put(buf, id, &header);
                    acks.sent(id, stamp);
                    seq += 1;
                    n += 1;
                }
                r.sent += n;
                if stamp >= t.warmup_end_ns {
                    r.sent_measured += n;
                }
                r.last_send_ns = stamp;
                live.sent.fetch_add(n, Ordering::Relaxed);
                progress = n > 0;
            }
        }
        match stop_at {
            None => {
                if let Some(end) = t.end {
                    wake = wake.min(end);
                }
            }
            Some(stop) => {
                if conn.pending() == 0 && ids.in_use() == 0 {
                    return Ok(());
                }
                if now >= stop {
                    r.unacked = u64::from(ids.in_use());
                    return Ok(());
                }
                wake = wake.min(stop);
            }
        }
        if let Some(every) = ping_every
            && now.duration_since(last_write) >= every
        {
            conn.queue(&Packet::PingReq)?;
            last_write = now;
        }
        if conn.try_flush()? > 0 {
            last_write = now;
            progress = true;
        }
        if conn.try_fill()? > 0 {
            progress = true;
            while let Some(packet) = conn.next_packet()? {
                on_packet(conn, packet, plan.qos, &mut ids, &mut acks, r)?;
            }
        }
        if progress {
            tokio::task::consume_budget().await;
            continue;
        }
        let deadline = sleep.deadline().into_std();
        if wake < deadline || deadline <= now {
            sleep.as_mut().reset(wake.into());
        }
        tokio::select! {
            ready = conn.ready(conn.pending() > 0) => { ready?; }
            _ = &mut sleep => {}
        }
    }
}

/// When each in-flight message was sent, to time its acknowledgement.
struct AckClock {
    /// Indexed by packet identifier; empty when not measuring.
    sent: Vec<u64>,
    /// Messages stamped before this are not timed.
    warmup_end_ns: u64,
}

impl AckClock {
    fn sent(&mut self, id: u16, stamp: u64) {
        if let Some(slot) = self.sent.get_mut(usize::from(id)) {
            *slot = if stamp >= self.warmup_end_ns {
                stamp
            } else {
                0
            };
        }
    }

    /// The acknowledgement of `id` was read: records its latency.
    fn acked(&mut self, id: u16, r: &mut PublisherResult) {
        if let Some(slot) = self.sent.get_mut(usize::from(id))
            && *slot != 0
        {
            r.ack_latency
                .record(payload::now_ns().saturating_sub(*slot));
            *slot = 0;
        }
    }
}

/// Handles one packet from the broker.
fn on_packet(
    conn: &mut Conn,
    packet: Packet,
    qos: QoS,
    ids: &mut PacketIds,
    acks: &mut AckClock,
    r: &mut PublisherResult,
) -> Result<(), ClientError> {
    match packet {
        Packet::PubAck(ack) => {
            if qos == QoS::AtLeastOnce && ids.release(ack.packet_id) {
                acks.acked(ack.packet_id, r);
                r.acked += 1;
                if ack.reason.is_error() {
                    r.rejected += 1;
                }
            } else {
                r.unexpected_acks += 1;
            }
        }
        Packet::PubRec(rec) => {
            let id = rec.packet_id;
            if qos != QoS::ExactlyOnce || !ids.is_used(id) {
                r.unexpected_acks += 1;
                return Ok(());
            }
            acks.acked(id, r);
            if rec.reason.is_error() {
                // The exchange ends here (5.0 §4.3.3).
                ids.release(id);
                r.acked += 1;
                r.rejected += 1;
            } else {
                ids.set_second(id);
                conn.queue(&Packet::PubRel(PubResp::new(id)))?;
            }
        }
        Packet::PubComp(comp) => {
            if qos == QoS::ExactlyOnce && ids.is_second(comp.packet_id) {
                ids.release(comp.packet_id);
                r.acked += 1;
            } else {
                r.unexpected_acks += 1;
            }
        }
        Packet::Publish(p) => {
            // Not subscribed, but acknowledge whatever arrives.
            match p.qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => conn.queue(&Packet::PubAck(PubResp::new(p.packet_id)))?,
                QoS::ExactlyOnce => conn.queue(&Packet::PubRec(PubResp::new(p.packet_id)))?,
            }
        }
        Packet::PubRel(rel) => conn.queue(&Packet::PubComp(PubResp::new(rel.packet_id)))?,
        Packet::Disconnect(d) => return Err(ClientError::Disconnected(d.reason)),
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_codec::{DecodeOptions, decode};

    fn decoded(template: &Template, id: u16, h: &Header, protocol: Protocol) -> Publish {
        let mut buf = BytesMut::new();
        template.put(&mut buf, id, h);
        template.put(&mut buf, id.wrapping_add(1).max(1), h);
        assert_eq!(buf.len(), 2 * template.len());
        let opts = DecodeOptions {
            protocol,
            ..DecodeOptions::default()
        };
        match decode(&mut buf, &opts) {
            Ok(Some(Packet::Publish(p))) => p,
            other => panic!("not a PUBLISH: {other:?}"),
        }
    }

    #[test]
    fn template_frames_decode_with_their_id_and_header() {
        let h = Header {
            publisher: 7,
            seq: 123_456,
            sent_ns: 987_654_321,
        };
        for protocol in [Protocol::V3_1_1, Protocol::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                for size in [HEADER_LEN, 64, 200, 20_000] {
                    let t = Template::new("bench/abc/in", qos, size, protocol).expect("encodes");
                    let p = decoded(&t, 0xBEEF, &h, protocol);
                    assert_eq!(p.topic, "bench/abc/in");
                    assert_eq!(p.qos, qos);
                    assert_eq!(p.payload.len(), size);
                    assert_eq!(Header::read(&p.payload), Some(h));
                    let want_id = if qos == QoS::AtMostOnce { 0 } else { 0xBEEF };
                    assert_eq!(p.packet_id, want_id, "{protocol:?} {qos:?} {size}");
                }
            }
        }
    }
}
