//! The broker's durable state: an append-only log of its own in
//! `<data_dir>/broker/state.log`, written by one thread with group commit,
//! replayed at start.
//!
//! # What is kept
//!
//! Retained messages (with their publisher, properties and the wall-clock
//! time their 5.0 Message Expiry runs out, so expiry counts from the
//! original publish across restarts; a cleared one stays cleared).
//! Persistent sessions (3.1.1 Clean Session 0, 5.0 Session Expiry > 0):
//! client id, user name, expiry interval and the wall-clock time it runs
//! out, subscriptions with their options and identifiers, who the last
//! connection was (address, listener, certificate names, superuser: its
//! rights are worked out again from that at restart), the will waiting
//! with it (and when it is due); their QoS 1/2 deliveries, queued or in
//! flight (with the packet id and whether PUBREC came), and incoming QoS 2
//! packet ids awaiting PUBREL. Not kept: QoS 0 deliveries, retained
//! messages a new subscription was still to get (they are in the retained
//! store anyway), sessions that end with their connection (and their
//! wills).
//!
//! # When it is written (`[persistence] durability`)
//!
//! - `"ack"`: every change goes to the writer thread in the order the
//!   broker made it (queued under the lock that made it); the thread
//!   appends all that is queued as one group, fsyncs once, and then
//!   publishes "written up to ticket N". A QoS 1/2 PUBLISH whose change
//!   (a retained message, a delivery queued for a persistent session, an
//!   incoming QoS 2 packet id) is in the group has its PUBACK / PUBREC held
//!   until then, through the broker's acknowledgement gate
//!   ([`crate::ack`]): acknowledged means on disk. The log is compacted
//!   (the live state written to a new file, fsynced, renamed over the old
//!   one) when it is [`writer`]'s factor larger than what is live.
//! - `"periodic"`: nothing is written per change; the whole live state is
//!   written (same file format, same rename) every `interval` seconds and
//!   at a clean stop, as mosquitto's autosave does. A crash loses the
//!   changes since the last snapshot.
//! - `"off"`: no store at all; nothing is read or written.
//!
//! # Why a log of our own
//!
//! Chosen with measurements: `bench/store-compare/` (its own Cargo
//! project, outside the workspace; `bash bench/store-compare.sh`) runs the
//! same workload on this log's format, redb 4.6 and fjall 3.1 on the disk
//! the data dir is on: the records a QoS 1/2 message to a persistent
//! session makes (`Queued` 170 B, `Sent` 21 B, `Done` 19 B, interleaved
//! as a busy broker writes them; in a key-value store an insert, a small
//! insert, two removes), made durable in groups of 1, 16 and 256 (redb: a
//! transaction committed with its default immediate durability; fjall: a
//! batch committed with `PersistMode::SyncData`; the log: one append and
//! one `fdatasync`); then 1,000,000 live deliveries written, closed, and
//! opened and read back into memory. Two runs on this project's machine
//! (2 shared cores, virtual disk), records made durable per second:
//!
//! | records per group | log | redb | fjall |
//! |---|---|---|---|
//! | 1 (02:34 UTC, load 4.1) | 1,540 | 1,431 | 2,741 |
//! | 16 | 37,992 | 20,282 | 41,883 |
//! | 256 | 290,662 | 202,326 | 175,000 |
//! | 1 (03:00 UTC, load 3.8) | 805 | 1,117 | 2,128 |
//! | 16 | 26,869 | 8,098 | 6,293 |
//! | 256 | 75,378 | 64,040 | 132,212 |
//!
//! and at start (03:00 run, median of 2): writing 1,000,000 deliveries
//! 0.65 s (log), 3.40 s (redb), 3.00 s (fjall); opening and reading them
//! all into memory 1.99 s, 1.97 s, 3.31 s; 181, 285 and 167 MB on disk.
//!
//! What decides a group commit here is the fsync, which every store pays
//! once per group: on this disk it costs 0.2 ms one minute and 4 ms the
//! next (p99 ~8 ms), and that swing (the same store 3.9× slower from one
//! run to the next) is larger than any difference between the stores,
//! none of which wins every row. The log writes a snapshot 5× faster than
//! either database (compaction and the `periodic` mode's snapshots are
//! such writes) and reads back as fast as redb and 1.7× faster than
//! fjall; it needs no dependency, where redb is one crate and fjall about
//! forty-five. What a database would add — random reads, transactions over
//! keys — the broker does not use: its whole state lives in memory and is
//! read back only at start, in order. The record format
//! ([`crate::frame`]: length, CRC-32, data) and the recovery rules (a
//! damaged record costs itself alone, a torn tail is cut, an unreadable
//! file stops the start naming it) are the WebHook spool's.
//!
//! # Bounded
//!
//! The store holds what the broker holds (the `[retained]` limits apply
//! before a change is made). While writes fail (a full disk), changes wait
//! in memory and their acknowledgements with them; past [`MEMORY_LIMIT`]
//! of waiting changes new ones are refused (5.0: reason 0x97; 3.x: the
//! connection closes without the acknowledgement), and the writer retries
//! until the disk takes them again, by itself.

mod entry;
mod recovery;
mod writer;

use crate::ack::{AckGate, Changed, Refused};
use crate::config::{Durability, PersistenceConfig};
use crate::message::Message;
use crate::support::{LogThrottle, lock};
pub(crate) use entry::{CONNECTED, Change, NEVER, StoredSession};
use recovery::Live;
pub(crate) use recovery::LiveSession;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// First bytes of a state log (format version 1).
pub(crate) const MAGIC: &[u8; 8] = b"HRLDST01";

/// Longest record accepted when reading (a packet of the largest size MQTT
/// allows, and its publisher).
pub(crate) const MAX_RECORD: usize = herald_codec::MAX_PACKET_SIZE + 1024;

/// Most bytes of changes waiting while writes fail before new ones are
/// refused.
pub const MEMORY_LIMIT: usize = 64 * 1024 * 1024;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state log exists but cannot be read or is not one.
    #[error(
        "cannot read the broker's state log {}: {reason} (move it away to start without the stored state)",
        path.display()
    )]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The folder or a new log cannot be written.
    #[error("cannot write the broker's state in {}: {error}", path.display())]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// What went wrong.
        error: std::io::Error,
    },
}

/// Upper bounds (seconds) of the write latency histogram's buckets.
pub const WRITE_BUCKETS: [f64; 8] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0];

/// The store's figures for `/metrics`.
#[derive(Debug, Default)]
pub struct StoreMetrics {
    /// Retained messages in the stored state.
    pub retained: AtomicU64,
    /// Persistent sessions in the stored state.
    pub sessions: AtomicU64,
    /// Bytes of the state log.
    pub bytes: AtomicU64,
    /// Failed writes and fsyncs.
    pub write_errors: AtomicU64,
    /// Damaged records skipped at start.
    pub corrupt_records: AtomicU64,
    /// Changes refused while writes failed.
    pub refused: AtomicU64,
    /// How long reading the state at start took, in microseconds.
    pub recovery_us: AtomicU64,
    /// Group writes (write + fsync) by latency bucket ([`WRITE_BUCKETS`],
    /// then one for larger).
    pub write_buckets: [AtomicU64; 9],
    /// Sum of the group write latencies, in microseconds.
    pub write_us_sum: AtomicU64,
}

impl StoreMetrics {
    /// Counts one group write that took `took`.
    fn record_write(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = WRITE_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(WRITE_BUCKETS.len());
        if let Some(bucket) = self.write_buckets.get(i) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.write_us_sum.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// Changes waiting for the writer.
#[derive(Default)]
struct Queue {
    /// In the order they were made.
    changes: Vec<Change>,
    /// Ticket of the last change queued (tickets count from 1).
    last: u64,
    /// Estimated bytes of `changes`.
    bytes: usize,
    /// Set by [`Store::close`]: the writer finishes and stops.
    stop: bool,
}

/// What the writer thread shares with the store's users.
pub(crate) struct Shared {
    /// Changes waiting.
    queue: Mutex<Queue>,
    /// Wakes the writer.
    wake: Condvar,
    /// Ticket up to which every change is written.
    written: AtomicU64,
    /// Wakes acknowledgements waiting on `written`.
    notify: tokio::sync::Notify,
    /// False while writes fail.
    healthy: AtomicBool,
    /// Set when the writer stopped with changes it could not write: their
    /// holds are refused rather than waiting for ever.
    abandoned: AtomicBool,
    /// Figures.
    metrics: StoreMetrics,
}

impl Shared {
    /// Waits for changes (or the stop, or `until`) and takes them all:
    /// the changes, the last one's ticket, and whether the store stops.
    fn take_group(&self, until: Option<Instant>) -> (Vec<Change>, u64, bool) {
        let mut q = lock(&self.queue);
        while q.changes.is_empty() && !q.stop {
            match until {
                Some(at) => {
                    let Some(left) = at.checked_duration_since(Instant::now()) else {
                        break;
                    };
                    q = self
                        .wake
                        .wait_timeout(q, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                None => q = self.wake.wait(q).unwrap_or_else(PoisonError::into_inner),
            }
        }
        q.bytes = 0;
        (std::mem::take(&mut q.changes), q.last, q.stop)
    }

    /// Everything up to `ticket` is written: wakes who waits for it.
    fn written(&self, ticket: u64) {
        if self.written.fetch_max(ticket, Ordering::AcqRel) < ticket {
            self.notify.notify_waiters();
        }
    }

    /// Whether the store is closing while writes fail: the writer gives
    /// up, and what it could not write is refused.
    fn stopping_with_failure(&self) -> bool {
        let stop = lock(&self.queue).stop;
        if stop {
            self.abandoned.store(true, Ordering::Release);
            self.notify.notify_waiters();
        }
        stop
    }
}

/// The acknowledgement gate over [`Shared::written`].
struct Gate(Arc<Shared>);

impl AckGate for Gate {
    fn settled(&self, ticket: u64) -> Option<Result<(), Refused>> {
        if self.0.written.load(Ordering::Acquire) >= ticket {
            Some(Ok(()))
        } else if self.0.abandoned.load(Ordering::Acquire) {
            Some(Err(Refused))
        } else {
            None
        }
    }

    fn changed(&self, ticket: u64) -> Changed {
        let shared = self.0.clone();
        Box::pin(async move {
            let notified = shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if shared.written.load(Ordering::Acquire) < ticket
                && !shared.abandoned.load(Ordering::Acquire)
            {
                notified.await;
            }
        })
    }
}

/// What the store read at start, for the broker to take over.
pub struct Recovered {
    /// Retained messages, none expired.
    pub retained: Vec<Arc<Message>>,
    /// Persistent sessions with their messages (expired ones too: the
    /// broker ends them, firing `session.terminated`).
    pub(crate) sessions: Vec<LiveSession>,
}

/// The broker's durable state (see the module docs).
pub struct Store {
    /// Shared with the writer thread.
    shared: Arc<Shared>,
    /// The same, as the gate acknowledgements wait on.
    gate: Arc<dyn AckGate>,
    /// The writer thread, until [`Store::close`].
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// `ack` or `periodic`.
    mode: Durability,
    /// Rate of the "refused" warning.
    refusals: LogThrottle,
}

impl Store {
    /// The folder of the state under `data_dir`.
    pub fn dir(data_dir: &Path) -> PathBuf {
        data_dir.join("broker")
    }

    /// Opens (or creates) the state under `data_dir`, reads it and starts
    /// the writer; `None` with `durability = "off"`. Logs what it
    /// recovered and how long it took.
    pub fn open(
        data_dir: &Path,
        cfg: &PersistenceConfig,
    ) -> Result<Option<(Store, Recovered)>, StoreError> {
        if cfg.durability == Durability::Off {
            return Ok(None);
        }
        let started = Instant::now();
        let dir = Store::dir(data_dir);
        let write_err = |path: &Path| {
            let path = path.to_owned();
            move |error| StoreError::Write { path, error }
        };
        create_private_dir(&dir).map_err(write_err(&dir))?;
        let path = dir.join("state.log");
        let found = recovery::recover(&path)?;
        let (mut live, records, damaged, rewrite, cut) = match found {
            Some(r) => {
                let file_len = std::fs::metadata(&path).map_or(0, |m| m.len());
                let cut = (r.good_end < file_len).then_some(r.good_end);
                (r.live, r.records, r.damaged, r.damaged_inside, cut)
            }
            None => (Live::default(), 0, 0, true, None),
        };
        // Expired while the broker was down: gone.
        let now = tokio::time::Instant::now();
        let before = live.retained.len();
        live.retained.retain(|_, m| !m.is_expired(now));
        let expired = before - live.retained.len();
        let live_bytes = live
            .retained
            .values()
            .map(|m| m.size() as u64 + writer::RECORD_OVERHEAD)
            .chain(live.sessions.values().flat_map(|s| {
                s.messages
                    .values()
                    .map(|m| m.delivery.message.size() as u64 + writer::RECORD_OVERHEAD)
            }))
            .sum();
        let retained: Vec<Arc<Message>> = live.retained.values().cloned().collect();
        let sessions: Vec<LiveSession> = live
            .sessions
            .values()
            .map(|s| LiveSession {
                record: s.record.clone(),
                messages: s.messages.clone(),
                qos2_in: s.qos2_in.clone(),
            })
            .collect();
        if let Some(len) = cut {
            let cut_back = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(len).and_then(|()| f.sync_all()));
            cut_back.map_err(write_err(&path))?;
        }
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            written: AtomicU64::new(0),
            notify: tokio::sync::Notify::new(),
            healthy: AtomicBool::new(true),
            abandoned: AtomicBool::new(false),
            metrics: StoreMetrics::default(),
        });
        let opened = if rewrite {
            writer::install_log(&path, &live)
        } else {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| Ok((f, std::fs::metadata(&path)?.len())))
        };
        let (file, len) = opened.map_err(write_err(&path))?;
        let w = writer::Writer {
            shared: shared.clone(),
            mode: cfg.durability,
            interval: Duration::from_secs(cfg.interval.max(1)),
            file,
            path: path.clone(),
            len,
            made: len,
            grow: true,
            live,
            live_bytes,
            dirty: false,
            failures: LogThrottle::default(),
        };
        let m = &shared.metrics;
        m.corrupt_records.store(damaged, Ordering::Relaxed);
        m.retained.store(retained.len() as u64, Ordering::Relaxed);
        m.sessions.store(sessions.len() as u64, Ordering::Relaxed);
        m.bytes.store(w.len, Ordering::Relaxed);
        let took = started.elapsed();
        m.recovery_us.store(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let handle = std::thread::Builder::new()
            .name("herald-state".into())
            .spawn(move || w.run())
            .map_err(write_err(&path))?;
        tracing::info!(
            path = %path.display(),
            durability = ?cfg.durability,
            retained = retained.len(),
            sessions = sessions.len(),
            queued = sessions.iter().map(|s| s.messages.len()).sum::<usize>(),
            records,
            damaged_records = damaged,
            expired_retained = expired,
            took_ms = took.as_millis() as u64,
            "broker state recovered"
        );
        if damaged > 0 {
            tracing::warn!(path = %path.display(), damaged_records = damaged, "broker state: damaged records were skipped (each lost alone; see herald_store_corrupt_records)");
        }
        let store = Store {
            gate: Arc::new(Gate(shared.clone())),
            shared,
            writer: Mutex::new(Some(handle)),
            mode: cfg.durability,
            refusals: LogThrottle::default(),
        };
        Ok(Some((store, Recovered { retained, sessions })))
    }

    /// Queues a change (call it under the lock that made the change, so
    /// changes are queued in the order they were made); returns its
    /// ticket. Refused while writes fail and [`MEMORY_LIMIT`] of changes
    /// already wait, or after [`Store::close`]. Never refused for memory:
    /// the small records that move a stored QoS 2 exchange along (`Sent`,
    /// `Released`, an incoming packet id released), which the packets
    /// they announce wait for, and of which there are at most as many as
    /// inflight windows have room.
    pub(crate) fn record(&self, change: Change) -> Result<u64, Refused> {
        let size = match &change {
            Change::Retain(m) => m.size(),
            Change::Queued(_, _, d) => d.message.size(),
            _ => 0,
        } + writer::RECORD_OVERHEAD as usize;
        let bounded = matches!(
            change,
            Change::Sent(..) | Change::Released(..) | Change::Qos2In(_, _, false)
        );
        let mut q = lock(&self.shared.queue);
        let failing = !self.shared.healthy.load(Ordering::Acquire);
        if q.stop || (failing && !bounded && q.bytes + size > MEMORY_LIMIT) {
            drop(q);
            crate::metrics::Metrics::add(&self.shared.metrics.refused, 1);
            if let Some(n) = self.refusals.hit(std::time::Instant::now()) {
                tracing::warn!(
                    refused = n,
                    "broker state: a change was refused: the state log cannot be written and {} MiB of changes wait",
                    MEMORY_LIMIT >> 20
                );
            }
            return Err(Refused);
        }
        q.changes.push(change);
        q.bytes += size;
        q.last += 1;
        let ticket = q.last;
        drop(q);
        self.shared.wake.notify_one();
        Ok(ticket)
    }

    /// The gate a change's acknowledgement waits on, if this store holds
    /// acknowledgements (`durability = "ack"`).
    pub fn ack_gate(&self) -> Option<&Arc<dyn AckGate>> {
        (self.mode == Durability::Ack).then_some(&self.gate)
    }

    /// The store's figures.
    pub fn metrics(&self) -> &StoreMetrics {
        &self.shared.metrics
    }

    /// Whether writes succeed (false while the disk refuses them).
    pub fn healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Acquire)
    }

    /// Writes what is queued (and, under `periodic`, a last snapshot) and
    /// stops the writer; blocks until it has. Changes after this are
    /// refused.
    pub fn close(&self) {
        lock(&self.shared.queue).stop = true;
        self.shared.wake.notify_one();
        let handle = lock(&self.writer).take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("broker state: the writer thread panicked");
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

/// Creates `dir` (and its parents), readable by the owner only.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests;
