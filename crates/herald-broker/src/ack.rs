//! Held acknowledgements: what lets "acknowledged" mean "stored".
//!
//! When a QoS 1/2 PUBLISH is routed, a hook handler (or, later, the
//! broker's own store) may have done something with the message that must
//! be durable before the publisher is told the message is safe: the
//! handler then puts an [`AckHold`] into the [`AckHolds`] it is given. The
//! connection sends the PUBACK / PUBREC only when every hold of that
//! PUBLISH has settled, and always in the order the PUBLISHes arrived
//! (MQTT requires it), without waiting for one before reading the next
//! packet: acknowledgements queue in [`PendingAcks`] and leave as their
//! holds settle. A hold may also be refused ([`AckHolds::refuse`] when it
//! is known at once, or [`AckGate::settled`] answering `Err` later): the
//! publisher is then told so (5.0: reason 0x97 Quota exceeded; 3.x has no
//! way to say it, so the connection closes without the acknowledgement
//! and the client sends the message again when it reconnects).
//!
//! A gate is polled, never called back: the holder keeps a counter of what
//! it has made durable and a way to wake waiters ([`AckGate::changed`]).
//! Holding costs one `Arc` clone per PUBLISH; waiting costs one boxed
//! future per wake-up of a connection, not per message.
//!
//! Nothing here does I/O or blocks.

use herald_codec::{Packet, ReasonCode};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed future that completes when a gate's state may have changed.
pub type Changed = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Why a hold was refused: what it could not make durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

/// Something that makes work durable in order and can say how far it got.
pub trait AckGate: Send + Sync {
    /// Whether the work numbered `ticket` is settled: `Some(Ok(()))`
    /// durable, `Some(Err(Refused))` refused, `None` not yet.
    fn settled(&self, ticket: u64) -> Option<Result<(), Refused>>;
    /// Completes when [`AckGate::settled`] may answer differently for
    /// `ticket` (it must not miss a change that happens between a call to
    /// `settled` and the first poll of this future: check again inside).
    fn changed(&self, ticket: u64) -> Changed;
}

/// One PUBLISH's acknowledgement waits for `ticket` of `gate`.
#[derive(Clone)]
pub struct AckHold {
    /// Who settles it.
    pub gate: Arc<dyn AckGate>,
    /// Which piece of the gate's work.
    pub ticket: u64,
}

impl std::fmt::Debug for AckHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckHold")
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}

/// The holds collected while one message is published.
#[derive(Debug, Default)]
pub struct AckHolds {
    /// Whether a publisher waits for an acknowledgement (a client's QoS 1/2
    /// PUBLISH): only then do holds matter, and only then may a handler
    /// refuse instead of dropping.
    wanted: bool,
    /// Set when a handler could not take the message at all.
    refused: bool,
    /// The holds, usually none or one.
    holds: Vec<AckHold>,
}

impl AckHolds {
    /// Holds for a message whose publisher waits for an acknowledgement.
    pub fn wanted() -> AckHolds {
        AckHolds {
            wanted: true,
            ..AckHolds::default()
        }
    }

    /// Holds for a message nobody acknowledges (QoS 0, a will, `$SYS`):
    /// handlers should not hold it.
    pub fn unwanted() -> AckHolds {
        AckHolds::default()
    }

    /// Whether an acknowledgement waits on this message.
    pub fn is_wanted(&self) -> bool {
        self.wanted
    }

    /// Holds the acknowledgement until `ticket` of `gate` settles.
    pub fn hold(&mut self, gate: Arc<dyn AckGate>, ticket: u64) {
        if self.wanted {
            self.holds.push(AckHold { gate, ticket });
        }
    }

    /// The message could not be taken: the publisher is refused.
    pub fn refuse(&mut self) {
        self.refused = true;
    }

    /// Whether a handler refused the message.
    pub fn is_refused(&self) -> bool {
        self.refused
    }

    /// Whether nothing holds the acknowledgement.
    pub fn is_empty(&self) -> bool {
        self.holds.is_empty()
    }

    /// Checks the holds: `Some(Ok)` when all are durable, `Some(Err)` when
    /// one was refused, `None` while one is pending (settled ones are
    /// forgotten, so each is asked until it settles, then never again).
    fn settle(&mut self) -> Option<Result<(), Refused>> {
        if self.refused {
            return Some(Err(Refused));
        }
        while let Some(first) = self.holds.last() {
            match first.gate.settled(first.ticket)? {
                Ok(()) => {
                    self.holds.pop();
                }
                Err(refused) => {
                    self.refused = true;
                    return Some(Err(refused));
                }
            }
        }
        Some(Ok(()))
    }

    /// A future that completes when the first unsettled hold may have
    /// changed.
    fn changed(&self) -> Option<Changed> {
        self.holds.last().map(|h| h.gate.changed(h.ticket))
    }
}

/// An acknowledgement waiting for its holds.
#[derive(Debug)]
struct PendingAck {
    /// The PUBACK or PUBREC to send.
    packet: Packet,
    /// What it waits for (empty: only for the ones before it).
    holds: AckHolds,
}

/// What to do with an acknowledgement whose holds settled.
#[derive(Debug)]
pub enum Released {
    /// Send it.
    Send(Packet),
    /// A hold was refused: send it with this reason (5.0) or close the
    /// connection without it (3.x); the packet still carries its original
    /// reason.
    Refused(Packet),
}

/// A connection's acknowledgements in PUBLISH order, each sent once its
/// holds (and those of all before it) have settled.
///
/// Boxed, and only once an acknowledgement had to wait: most connections
/// never hold one, and every byte inline is paid by every idle
/// connection's task. Kept once made (a connection that held one is
/// likely to again).
#[derive(Default)]
pub struct PendingAcks(Option<Box<Waiting>>);

/// What [`PendingAcks`] keeps once used.
#[derive(Default)]
struct Waiting {
    queue: VecDeque<PendingAck>,
    /// A wake-up for the head's first unsettled hold.
    waiting: Option<Changed>,
}

impl std::fmt::Debug for PendingAcks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAcks")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl PendingAcks {
    /// Whether nothing waits: an acknowledgement without holds can then be
    /// sent at once.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many acknowledgements wait.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |w| w.queue.len())
    }

    /// Queues an acknowledgement behind those already waiting.
    pub fn push(&mut self, packet: Packet, holds: AckHolds) {
        self.0
            .get_or_insert_default()
            .queue
            .push_back(PendingAck { packet, holds });
    }

    /// Takes the next acknowledgement whose holds (and those before it)
    /// have settled, in order; `None` when the head still waits or the
    /// queue is empty.
    pub fn next_released(&mut self) -> Option<Released> {
        let w = self.0.as_deref_mut()?;
        let head = w.queue.front_mut()?;
        let settled = head.holds.settle()?;
        w.waiting = None;
        let head = w.queue.pop_front()?;
        Some(match settled {
            Ok(()) => Released::Send(head.packet),
            Err(Refused) => Released::Refused(head.packet),
        })
    }

    /// Ready when the head's holds may have settled; pending for ever
    /// when nothing waits (the packet loop polls it among its wake-ups).
    pub fn poll_changed(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        let Some(w) = self.0.as_deref_mut() else {
            return std::task::Poll::Pending;
        };
        if w.waiting.is_none() {
            w.waiting = w.queue.front().and_then(|h| h.holds.changed());
        }
        match w.waiting.as_mut() {
            Some(changed) => {
                std::task::ready!(changed.as_mut().poll(cx));
                w.waiting = None;
                std::task::Poll::Ready(())
            }
            None => std::task::Poll::Pending,
        }
    }
}

/// The reason a 5.0 acknowledgement carries when its message was refused.
pub const REFUSED_REASON: ReasonCode = ReasonCode::QUOTA_EXCEEDED;
