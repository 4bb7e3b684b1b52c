//! The state the pushers, the writer thread and the lane readers share:
//! each lane's bookkeeping, the pending list, the counters' home.
//!
//! Data and locking helpers only; no I/O.

use super::disk::Disk;
use super::record::Record;
use super::{SpoolOptions, SpoolStats};
use bytes::Bytes;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::Notify;

/// A segment file as the lane's bookkeeping knows it.
#[derive(Debug)]
pub(super) struct Segment {
    /// Sequence number of its first record.
    pub(super) first_seq: u64,
    /// One past its last committed record.
    pub(super) end_seq: u64,
    /// Committed bytes.
    pub(super) len: u64,
    /// Its file.
    pub(super) path: PathBuf,
}

/// One lane's shared state.
#[derive(Debug, Default)]
pub(super) struct Lane {
    /// First sequence number not yet delivered.
    pub(super) acked: u64,
    /// Whether `acked` changed since the cursor file was written.
    pub(super) cursor_dirty: bool,
    /// One past the last committed record.
    pub(super) committed: u64,
    /// Disk mode: segments, oldest first; the last is the one being written.
    pub(super) segments: VecDeque<Segment>,
    /// Memory mode (or a failed disk write): committed records not yet
    /// delivered, held only here.
    pub(super) memory: VecDeque<Record>,
    /// Disk mode: the newest committed records, also on disk, so readers
    /// that keep up need not read them back; bounded by `cache_bytes`.
    pub(super) cache: VecDeque<Record>,
    /// Bytes held by `cache`.
    pub(super) cache_bytes: u64,
    /// Bytes held by this lane (undelivered records, as encoded).
    pub(super) bytes: u64,
    /// Readers skip records below this (dropped for space).
    pub(super) floor: u64,
    /// The reader's position: records below it were handed out (being
    /// delivered), so dropping them for space loses nothing.
    pub(super) read: u64,
}

/// Something accepted and not yet written.
pub(super) struct Pending {
    pub(super) kind: u8,
    pub(super) client: u32,
    pub(super) enqueued_ms: u64,
    pub(super) body: Bytes,
}

/// One lane's events accepted and not yet taken by the writer.
#[derive(Default)]
pub(super) struct LanePending {
    pub(super) items: VecDeque<Pending>,
    /// Events ever pushed to this lane: the last one's ticket.
    pub(super) pushed: u64,
}

/// State shared by the pushers, the writer thread and the readers.
pub(super) struct Shared {
    pub(super) options: SpoolOptions,
    /// Unique id of this spool (kept on disk), for event ids.
    pub(super) id: String,
    pub(super) lanes: Vec<Mutex<Lane>>,
    /// Wakes the lane's reader when records were committed.
    pub(super) lane_wake: Vec<Notify>,
    /// Per lane: accepted, not yet taken by the writer (one lock per lane,
    /// so pushers of different lanes never contend).
    pub(super) pending: Vec<Mutex<LanePending>>,
    /// Events pushed and not yet taken by the writer, all lanes.
    pub(super) pending_count: AtomicU64,
    /// Bytes pushed and not yet written (pending or held by the writer
    /// for a retry), all lanes.
    pub(super) pending_bytes: AtomicU64,
    /// Per lane: pushes up to this ticket are written (accepted).
    pub(super) written: Vec<AtomicU64>,
    /// Per lane: wakes those waiting for a ticket to be written.
    pub(super) written_wake: Vec<Notify>,
    /// The writer is waiting for work: the next push must wake it.
    pub(super) writer_idle: AtomicBool,
    /// The writer thread, to wake it.
    pub(super) writer_thread: OnceLock<std::thread::Thread>,
    /// The writer lets a group gather (see [`super::SpoolOptions::group_commit`]):
    /// a waiting publisher's [`Shared::hurry`] must wake it.
    pub(super) writer_gathering: AtomicBool,
    /// A publisher waits for an event pushed before the writer's next
    /// take: that take is committed without letting the group gather.
    pub(super) hurry: AtomicBool,
    /// Writes are failing: events are held in memory and retried.
    pub(super) degraded: AtomicBool,
    /// Set when the spool is closing: the writer writes what is pending and
    /// exits.
    pub(super) closing: AtomicBool,
    /// Set when the writer has exited: nothing more will be written.
    pub(super) stopped: AtomicBool,
    /// Set once nothing more will be pushed and everything pushed is
    /// written: a reader that has caught up then ends (the generation
    /// drains).
    pub(super) sealed: AtomicBool,
    /// Counters (shared by the generations of one WebHook).
    pub(super) stats: Arc<SpoolStats>,
    /// Size of a segment before a new one is started.
    pub(super) segment_bytes: u64,
    /// Most bytes waiting in memory for the writer: beyond it, events
    /// nobody waits for are dropped (counted), and while writes fail,
    /// events a publisher waits for are refused.
    pub(super) pending_limit: u64,
    /// Most bytes of a lane's read cache (disk mode).
    pub(super) cache_limit: u64,
    /// Where the writer opens segment files (the real disk, or a failing
    /// one in tests).
    pub(super) disk: Arc<dyn Disk>,
}

impl Shared {
    /// Wakes the writer if it sleeps.
    pub(super) fn wake_writer(&self) {
        if self.writer_idle.swap(false, Ordering::SeqCst)
            && let Some(t) = self.writer_thread.get()
        {
            t.unpark();
        }
    }

    /// Someone waits for what was pushed: commit it without letting more
    /// gather. Wakes the writer only if it is gathering (an idle writer is
    /// woken by the push itself; a busy one sees the flag when it would
    /// gather next).
    pub(super) fn hurry(&self) {
        if !self.hurry.swap(true, Ordering::SeqCst)
            && self.writer_gathering.load(Ordering::SeqCst)
            && let Some(t) = self.writer_thread.get()
        {
            t.unpark();
        }
    }
}

/// Subtracts without wrapping below zero.
pub(super) fn sub(counter: &AtomicU64, n: u64) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(n))
    });
}
