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
//!   order (from the page cache, sequentially) and [`LaneReader::ack`]s
//!   delivered ones.
//! - At open, [`recovery`] rebuilds each lane from its folder.
//! - [`state`] is what these share.
//!
//! In memory-only mode the same structure keeps the records in memory and
//! nothing survives a restart.
//!
//! The spool must never block [`Spool::push`] on I/O, never hand a lane a
//! record before it is committed, and never reorder a lane.

mod files;
mod reader;
mod record;
mod recovery;
mod state;
mod writer;

pub use reader::LaneReader;
pub use record::{Record, crc32};

use bytes::Bytes;
use files::{lane_dir, random_id, spool_id};
use herald_broker::support::lock;
use record::{CLIENT, HAS_CLIENT, HEADER};
use recovery::recover_lane;
use state::{Lane, Pending, PendingList, Shared};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use writer::Writer;

/// Most bytes accepted and waiting in memory for the writer thread.
const PENDING_MAX: u64 = 64 << 20;

/// The default for [`SpoolOptions::cache_bytes`].
pub const CACHE_BYTES: u64 = 16 << 20;

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
        let lanes_n = options.lanes.max(1);
        let segment_bytes = (options.max_bytes / (lanes_n as u64 * 4)).clamp(64 * 1024, 8 << 20);
        let mut lanes: Vec<Lane> = (0..lanes_n).map(|_| Lane::default()).collect();
        let id = match &options.dir {
            Some(dir) => {
                fs::create_dir_all(dir).map_err(io_err(dir))?;
                for (i, lane) in lanes.iter_mut().enumerate() {
                    recover_lane(&lane_dir(dir, i), lane)?;
                }
                spool_id(dir)?
            }
            None => random_id(),
        };
        let stats = SpoolStats::default();
        let pending_limit = options.max_bytes.min(PENDING_MAX);
        let cache_limit = (options.cache_bytes / lanes_n as u64).max(4096);
        let total: u64 = lanes.iter().map(|l| l.bytes).sum();
        stats.bytes.store(total, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            lane_wake: (0..lanes_n).map(|_| Notify::new()).collect(),
            lanes: lanes.into_iter().map(Mutex::new).collect(),
            options,
            id,
            pending: Mutex::new(PendingList::default()),
            writer_wake: Condvar::new(),
            closing: AtomicBool::new(false),
            stats,
            segment_bytes,
            pending_limit,
            cache_limit,
        });
        let readers = (0..lanes_n)
            .map(|lane| {
                let next = lock(&shared.lanes[lane]).acked;
                LaneReader {
                    shared: shared.clone(),
                    lane,
                    next,
                    file: None,
                }
            })
            .collect();
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("webhook-spool".into())
            .spawn(move || Writer::new(writer_shared).run())
            .map_err(io_err(Path::new("<writer thread>")))?;
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
    /// non-blocking append to the pending list. If the pending list alone
    /// exceeds the smaller of the size limit and 64 MiB (the disk cannot
    /// keep up), its oldest entries are dropped and counted, so memory stays
    /// bounded whatever the disk does.
    pub fn push(&self, key: u64, kind: u8, enqueued_ms: u64, body: Bytes) {
        let shared = &self.shared;
        let size = (HEADER + CLIENT + body.len()) as u64;
        let wake = {
            let mut pending = lock(&shared.pending);
            let wake = std::mem::take(&mut pending.idle);
            pending.bytes += size;
            pending.items.push_back(Pending {
                lane: (key % shared.lanes.len() as u64) as usize,
                kind: kind & !HAS_CLIENT,
                client: (key ^ (key >> 32)) as u32,
                enqueued_ms,
                body,
            });
            while pending.bytes > shared.pending_limit && pending.items.len() > 1 {
                if let Some(old) = pending.items.pop_front() {
                    pending.bytes -= old.stored_len();
                }
                shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            wake
        };
        shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
        // The writer looks at the list before it sleeps, so only a push
        // that finds it asleep wakes it: no system call per event.
        if wake {
            shared.writer_wake.notify_one();
        }
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
        Ok(())
    }

    /// Writes everything pending, fsyncs, persists cursors and stops the
    /// writer thread. Readers see no new records afterwards. Blocking: call
    /// from a blocking context (e.g. `spawn_blocking`).
    pub fn close(&self) {
        self.shared.closing.store(true, Ordering::Release);
        self.shared.writer_wake.notify_one();
        if let Some(writer) = lock(&self.writer).take() {
            let _ = writer.join();
        }
    }
}
