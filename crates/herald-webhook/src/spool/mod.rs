//! The WebHook's durable spool: every accepted event is appended here before
//! it is sent, survives a restart (graceful or `kill -9`), and is trimmed
//! once delivered.
//!
//! Shape: one queue per delivery lane, so each lane reads its events in the
//! order they were accepted. On disk a lane is a folder of segment files
//! (`lane-007/00000000000000000042.seg`, named by their first sequence
//! number) and a `cursor` file holding the first sequence number not yet
//! delivered ([`files`]); the record format is in [`record`].
//!
//! Who does what:
//! - [`Spool::push`] (the MQTT path, via the WebHook handler) only appends
//!   to an in-memory pending list and signals; it never touches the disk and
//!   never waits.
//! - One writer thread ([`writer`]) takes everything pending at once,
//!   appends it to the lanes' segment files, fsyncs according to [`Fsync`]
//!   (group commit), and only then makes the records visible to the lanes.
//!   It also deletes delivered segments, writes cursors and enforces the
//!   size limit by dropping the oldest segment of the fullest lane (counted
//!   and logged).
//! - Each lane's [`LaneReader`] ([`reader`]) reads committed records in
//!   order (from memory while it keeps up, else from the segment files on
//!   tokio's blocking pool, never on the async task) and
//!   [`LaneReader::ack`]s delivered ones.
//! - Under `fsync = interval`, [`syncer`]'s thread fsyncs, so the writer
//!   (and the acknowledgements waiting for it) never wait for a flush.
//! - The writer reaches segment files through [`disk`] (plain files; a
//!   failing disk in the fault tests, `fault_tests.rs`).
//! - At open, [`recovery`] rebuilds each lane from its folder.
//! - [`state`] is what these share.
//!
//! In memory-only mode the same structure keeps the records in memory and
//! nothing survives a restart.
//!
//! The spool must never block [`Spool::push`] on I/O, never hand a lane a
//! record before it is committed, and never reorder a lane.

mod disk;
#[cfg(test)]
mod fault_tests;
mod files;
pub mod generations;
mod reader;
mod record;
mod recovery;
mod state;
mod syncer;
mod writer;

pub use reader::LaneReader;
pub use record::{Record, crc32};

use bytes::Bytes;
use files::{lane_dir, random_id, spool_id};
use herald_broker::support::lock;
use record::{CLIENT, HAS_CLIENT, HEADER};
use recovery::recover_lane;
use state::{Lane, Pending, Shared};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;
use writer::Writer;

/// The default for [`SpoolOptions::memory_limit`].
pub const MEMORY_LIMIT: u64 = 64 << 20;

/// The default for [`SpoolOptions::cache_bytes`].
pub const CACHE_BYTES: u64 = 16 << 20;

/// The default for [`SpoolOptions::group_commit`]: at most about a
/// thousand commits per second under load, each carrying many events.
pub const GROUP_COMMIT: Duration = Duration::from_millis(1);

/// When the writer calls fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every group commit: nothing accepted is lost even if the
    /// machine loses power.
    Always,
    /// At most this long after a write (a process crash loses nothing, the
    /// OS keeps the data; a power loss can lose the last interval).
    Interval(Duration),
    /// Never explicitly: the OS decides.
    Never,
}

/// How the spool is set up.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// Folder for the lane folders; `None` keeps everything in memory.
    pub dir: Option<PathBuf>,
    /// Number of lanes (the WebHook's `pool_size`).
    pub lanes: usize,
    /// Most bytes the spool holds (records not yet delivered); beyond it
    /// the oldest are dropped.
    pub max_bytes: u64,
    /// fsync policy (disk mode).
    pub fsync: Fsync,
    /// Disk mode: most bytes of the newest committed records the lanes
    /// together also keep in memory, so a lane that keeps up never reads
    /// its records back from the disk (each lane gets an equal share, at
    /// least 4 KiB); a lane that falls further behind reads the disk.
    pub cache_bytes: u64,
    /// Most bytes of events accepted and not yet written (waiting for the
    /// writer, or held while writes fail): beyond it events nobody waits
    /// for are dropped and, while writes fail, those a publisher waits for
    /// are refused ([`MEMORY_LIMIT`] by default).
    pub memory_limit: u64,
    /// How long the writer lets events gather after a commit before it
    /// takes the next group ([`GROUP_COMMIT`] by default), unless a
    /// publisher waits for an event already pushed: then at once.
    pub group_commit: Duration,
}

/// Why the spool could not open.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file or folder operation failed.
    #[error("webhook spool {path}: {source}")]
    Io {
        /// What was being accessed.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Counters the spool keeps.
#[derive(Debug, Default)]
pub struct SpoolStats {
    /// Bytes of records accepted and not yet delivered.
    pub bytes: AtomicU64,
    /// Records dropped because the spool was full.
    pub dropped: AtomicU64,
    /// Records accepted.
    pub accepted: AtomicU64,
    /// Records committed: written (and fsynced per policy) and visible to
    /// the lanes. After a crash, every one of these is still there.
    pub committed: AtomicU64,
    /// Events nobody waited for (QoS 0 publishes, other events) dropped
    /// because the writer was that far behind.
    pub overflow: AtomicU64,
    /// Events a publisher waited for that were refused: writes were failing
    /// and the memory allowed for holding them was full.
    pub refused: AtomicU64,
    /// Writes (or fsyncs under `fsync = always`) that failed; the events
    /// stay held and are written again.
    pub write_errors: AtomicU64,
    /// fsyncs under `fsync = interval` that failed (the events had been
    /// written: the OS holds them, but may lose them at a power loss).
    pub fsync_errors: AtomicU64,
    /// Damaged records skipped when reading a segment.
    pub corrupt: AtomicU64,
    /// Delivered segment files that could not be deleted.
    pub delete_errors: AtomicU64,
}

/// A pushed event's place in the spool, to wait for it to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(pub u64);

/// Bits of a [`Ticket`] below the lane number.
const TICKET_LANE_SHIFT: u32 = 48;

/// Why an event was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotTaken {
    /// Writes are failing and the memory allowed for holding events is
    /// full: a publisher waiting for it must be refused.
    #[error("webhook spool cannot write and its memory is full")]
    Refused,
    /// The writer is far behind and the event is one nobody waits for: it
    /// was dropped (counted).
    #[error("webhook spool writer far behind: event dropped")]
    Dropped,
}

/// The spool: cheap to clone, shared by the handler and the delivery side.
#[derive(Clone)]
pub struct Spool {
    shared: Arc<Shared>,
    writer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Spool {
    /// Opens (or creates) the spool, recovering what a previous run left,
    /// and starts the writer thread. Returns one reader per lane.
    pub fn open(options: SpoolOptions) -> Result<(Spool, Vec<LaneReader>), SpoolError> {
        Spool::open_sharing(options, Arc::default())
    }

    /// [`Spool::open`], counting into `stats` (shared with the other
    /// generations of a WebHook, so counters go on across a change of
    /// generation; `bytes` is added to, not set).
    pub fn open_sharing(
        options: SpoolOptions,
        stats: Arc<SpoolStats>,
    ) -> Result<(Spool, Vec<LaneReader>), SpoolError> {
        Spool::open_on(options, stats, Arc::new(disk::Files))
    }

    /// [`Spool::open_sharing`], the writer opening segment files on `disk`.
    pub(crate) fn open_on(
        options: SpoolOptions,
        stats: Arc<SpoolStats>,
        disk: Arc<dyn disk::Disk>,
    ) -> Result<(Spool, Vec<LaneReader>), SpoolError> {
        let lanes_n = options.lanes.max(1);
        let segment_bytes = (options.max_bytes / (lanes_n as u64 * 4)).clamp(64 * 1024, 8 << 20);
        let mut lanes: Vec<Lane> = (0..lanes_n).map(|_| Lane::default()).collect();
        let mut lost = 0u64;
        let id = match &options.dir {
            Some(dir) => {
                files::create_private_dir(dir).map_err(io_err(dir))?;
                for (i, lane) in lanes.iter_mut().enumerate() {
                    recover_lane(&lane_dir(dir, i), lane, &mut lost)?;
                }
                if lost > 0 {
                    tracing::warn!(dir = %dir.display(), records = lost, "webhook spool: records lost to damage at start");
                }
                spool_id(dir)?
            }
            None => random_id(),
        };
        stats.corrupt.fetch_add(lost, Ordering::Relaxed);
        let pending_limit = options.memory_limit;
        let cache_limit = (options.cache_bytes / lanes_n as u64).max(4096);
        let total: u64 = lanes.iter().map(|l| l.bytes).sum();
        stats.bytes.fetch_add(total, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            lane_wake: (0..lanes_n).map(|_| Notify::new()).collect(),
            lanes: lanes.into_iter().map(Mutex::new).collect(),
            options,
            id,
            pending: (0..lanes_n).map(|_| Mutex::default()).collect(),
            pending_count: AtomicU64::new(0),
            pending_bytes: AtomicU64::new(0),
            written: (0..lanes_n).map(|_| AtomicU64::new(0)).collect(),
            written_wake: (0..lanes_n).map(|_| Notify::new()).collect(),
            writer_idle: AtomicBool::new(false),
            writer_thread: OnceLock::new(),
            writer_gathering: AtomicBool::new(false),
            hurry: AtomicBool::new(false),
            degraded: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            sealed: AtomicBool::new(false),
            stats,
            segment_bytes,
            pending_limit,
            cache_limit,
            disk,
        });
        let readers = (0..lanes_n)
            .map(|lane| {
                let next = lock(&shared.lanes[lane]).acked;
                LaneReader::new(shared.clone(), lane, next)
            })
            .collect();
        let writer_shared = shared.clone();
        // The writer logs where the spool's opener logs (the global
        // subscriber, or a test's own).
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        let writer = std::thread::Builder::new()
            .name("webhook-spool".into())
            .spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || Writer::new(writer_shared).run())
            })
            .map_err(io_err(Path::new("<writer thread>")))?;
        let _ = shared.writer_thread.set(writer.thread().clone());
        Ok((
            Spool {
                shared,
                writer: Arc::new(Mutex::new(Some(writer))),
            },
            readers,
        ))
    }

    /// Accepts an event about the client whose hash is `key`: it goes to
    /// lane `key` modulo the lane count, tagged with the client (so a
    /// pipelining lane never has two of one client's requests in flight). A
    /// non-blocking append to the lane's pending list. Nobody waits for
    /// this event: if the events not yet written exceed the smaller of the
    /// size limit and 64 MiB (the disk cannot keep up), it is dropped and
    /// counted ([`SpoolStats::overflow`]), so memory stays bounded whatever
    /// the disk does.
    pub fn push(&self, key: u64, kind: u8, enqueued_ms: u64, body: Bytes) {
        let _ = self.take(key, kind, enqueued_ms, body, false);
    }

    /// Accepts an event a publisher's acknowledgement waits for: the
    /// returned ticket is [`Spool::written`] once its record is written
    /// (and fsynced under [`Fsync::Always`]). Never dropped for being
    /// behind (the waiting publishers are paced instead); refused only
    /// while writes fail and the memory allowed for holding events is full.
    pub fn push_held(
        &self,
        key: u64,
        kind: u8,
        enqueued_ms: u64,
        body: Bytes,
    ) -> Result<Ticket, NotTaken> {
        self.take(key, kind, enqueued_ms, body, true)
    }

    fn take(
        &self,
        key: u64,
        kind: u8,
        enqueued_ms: u64,
        body: Bytes,
        held: bool,
    ) -> Result<Ticket, NotTaken> {
        let shared = &self.shared;
        let size = (HEADER + CLIENT + body.len()) as u64;
        if shared.pending_bytes.load(Ordering::Relaxed) + size > shared.pending_limit {
            if !held {
                shared.stats.overflow.fetch_add(1, Ordering::Relaxed);
                return Err(NotTaken::Dropped);
            }
            if shared.degraded.load(Ordering::Relaxed) {
                shared.stats.refused.fetch_add(1, Ordering::Relaxed);
                return Err(NotTaken::Refused);
            }
        }
        let lane = (key % shared.lanes.len() as u64) as usize;
        let ticket = {
            let Some(pending) = shared.pending.get(lane) else {
                return Err(NotTaken::Dropped);
            };
            let mut pending = lock(pending);
            pending.pushed += 1;
            pending.items.push_back(Pending {
                kind: kind & !HAS_CLIENT,
                client: (key ^ (key >> 32)) as u32,
                enqueued_ms,
                body,
            });
            shared.pending_bytes.fetch_add(size, Ordering::Relaxed);
            shared.pending_count.fetch_add(1, Ordering::SeqCst);
            pending.pushed
        };
        shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
        // The writer looks at the count before it sleeps, so only a push
        // that finds it asleep wakes it: no system call per event.
        shared.wake_writer();
        Ok(Ticket(((lane as u64) << TICKET_LANE_SHIFT) | ticket))
    }

    /// Whether the event of `ticket` is written (and fsynced per policy).
    pub fn written(&self, ticket: Ticket) -> bool {
        let lane = (ticket.0 >> TICKET_LANE_SHIFT) as usize;
        let n = ticket.0 & ((1 << TICKET_LANE_SHIFT) - 1);
        self.shared
            .written
            .get(lane)
            .is_none_or(|w| w.load(Ordering::Acquire) >= n)
    }

    /// Completes once the event of `ticket` is written, or once the spool
    /// has closed (check [`Spool::written`]).
    pub async fn wait_written(&self, ticket: Ticket) {
        let lane = (ticket.0 >> TICKET_LANE_SHIFT) as usize;
        let Some(wake) = self.shared.written_wake.get(lane) else {
            return;
        };
        loop {
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.written(ticket) || self.stopped() {
                return;
            }
            self.shared.hurry();
            notified.await;
        }
    }

    /// Whether the writer has stopped (closed): a ticket not written by
    /// then never will be.
    pub fn stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::Acquire)
    }

    /// Whether the spool writes normally (not holding events in memory
    /// because writes fail).
    pub fn healthy(&self) -> bool {
        !self.shared.degraded.load(Ordering::Relaxed)
    }

    /// This spool's id (part of every event id).
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Number of lanes.
    pub fn lanes(&self) -> usize {
        self.shared.lanes.len()
    }

    /// Counters.
    pub fn stats(&self) -> &SpoolStats {
        &self.shared.stats
    }

    /// The counters, to share with another generation.
    pub fn shared_stats(&self) -> Arc<SpoolStats> {
        self.shared.stats.clone()
    }

    /// The folder the spool lives in (`None`: memory only).
    pub fn dir(&self) -> Option<&Path> {
        self.shared.options.dir.as_deref()
    }

    /// Waits until everything pushed so far is written (or the spool has
    /// stopped), then seals the spool: call it once nothing pushes any
    /// more. A sealed spool's readers end ([`LaneReader::next`] answers
    /// `None`) once they have handed out everything committed.
    pub async fn seal(&self) {
        for (lane, pending) in self.shared.pending.iter().enumerate() {
            let pushed = lock(pending).pushed;
            self.wait_written(Ticket(((lane as u64) << TICKET_LANE_SHIFT) | pushed))
                .await;
        }
        self.mark_sealed();
    }

    /// Seals a spool nothing was pushed to (an older generation opened
    /// from disk): see [`Spool::seal`].
    pub fn mark_sealed(&self) {
        self.shared.sealed.store(true, Ordering::Release);
        for wake in &self.shared.lane_wake {
            wake.notify_one();
        }
    }

    /// Whether every committed record of every lane is delivered (or given
    /// up on) and nothing is waiting to be written.
    pub fn drained(&self) -> bool {
        self.shared.pending_count.load(Ordering::SeqCst) == 0
            && self.shared.pending_bytes.load(Ordering::Relaxed) == 0
            && self.shared.lanes.iter().all(|l| {
                let l = lock(l);
                l.acked.max(l.floor) >= l.committed
            })
    }

    /// Records committed and not yet delivered in `lane`.
    pub fn depth(&self, lane: usize) -> u64 {
        self.shared
            .lanes
            .get(lane)
            .map(|l| {
                let l = lock(l);
                l.committed.saturating_sub(l.acked.max(l.floor))
            })
            .unwrap_or(0)
    }

    /// Whether the spool can take events now; `Err` says why not, in plain
    /// words. Checked by the binary's `/ready`. Today: the writer thread
    /// must be running while the spool is open (when it has stopped,
    /// nothing accepted reaches the disk or the lanes). A degraded state
    /// (disk full, write errors) belongs here too.
    pub fn health(&self) -> Result<(), String> {
        let stopped = lock(&self.writer)
            .as_ref()
            .is_some_and(std::thread::JoinHandle::is_finished);
        if stopped && !self.shared.closing.load(Ordering::Acquire) {
            return Err("the spool's writer thread has stopped".to_owned());
        }
        if !self.healthy() {
            return Err("the spool cannot write (disk full or I/O errors); events are held in memory and retried".to_owned());
        }
        Ok(())
    }

    /// Writes everything pending, fsyncs, persists cursors and stops the
    /// writer thread. Readers see no new records afterwards. Blocking: call
    /// from a blocking context (e.g. `spawn_blocking`).
    pub fn close(&self) {
        self.shared.closing.store(true, Ordering::Release);
        self.shared.writer_idle.store(true, Ordering::SeqCst);
        self.shared.wake_writer();
        if let Some(writer) = lock(&self.writer).take() {
            let _ = writer.join();
        }
    }
}
