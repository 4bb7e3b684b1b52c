//! The writer thread: takes the changes queued since its last write as one
//! group, applies them to its copy of the live state, and, under
//! `durability = "ack"`, appends them to the log and fsyncs once for the
//! whole group before publishing "written up to ticket N" (group commit:
//! one fsync serves every publisher that waited meanwhile). Under
//! `"periodic"` it writes the whole live state as a new log every
//! `interval` instead. The log is compacted (rewritten from the live
//! state) when it has grown to several times what is live.
//!
//! A failed write or fsync is never taken as written: the file is cut back
//! to its last good length and the group written again (10 ms doubling to
//! 1 s) until it goes through; meanwhile acknowledgements wait, and the
//! store refuses new changes past a memory limit ([`super::Store`]).
//! Runs on its own OS thread: disk waits never block the async runtime.
//!
//! Space is made ahead: the file is extended with zeros, written and
//! fsynced [`PREALLOC`] at a time (once a group's waiters are released,
//! when less than half of it is left), and groups overwrite them. A group's
//! `fdatasync` then changes neither the file's size nor its blocks, and the
//! file system need not commit its journal for it. Measured here
//! (`bench/persistence.sh`, BENCHMARKS.md), QoS 1 to a persistent
//! subscriber under "ack" went 1.1–3.2× faster with it (the slower the
//! disk's minute, the larger the gain), its p99 latency 1–3 ms longer (the
//! zeros are written on this thread). Reading stops at the zeros after
//! the last record (not damage), and the start cuts them off. Where the
//! space cannot be made (a small or full disk, a file size limit), the
//! log is appended to as it comes, until the next compaction tries again.

use super::entry::{self, Change};
use super::recovery::Live;
use super::{MAGIC, Shared};
use crate::config::Durability;
use crate::frame;
use crate::support::LogThrottle;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Compaction starts when the log is this much larger than the live state
/// (and at least [`COMPACT_MIN`]).
const COMPACT_FACTOR: u64 = 3;
/// No compaction below this log size.
const COMPACT_MIN: u64 = 16 * 1024 * 1024;
/// Bytes gathered before a write during a group commit.
const WRITE_PIECE: usize = 256 * 1024;
/// Space made ahead of the log at a time (see the module docs).
pub(crate) const PREALLOC: u64 = 1024 * 1024;
/// Estimated bytes a record adds to a message's own size (frame head,
/// publisher, packet header).
pub(crate) const RECORD_OVERHEAD: u64 = 64;

/// The writer's state.
pub(crate) struct Writer {
    /// What the thread shares with the store's users.
    pub(crate) shared: Arc<Shared>,
    /// `ack` or `periodic` (`off` runs no writer).
    pub(crate) mode: Durability,
    /// Time between snapshots under `periodic`.
    pub(crate) interval: Duration,
    /// The log, open for writing (at `len`: not in append mode, which
    /// would write after the space made ahead).
    pub(crate) file: File,
    /// Its path.
    pub(crate) path: PathBuf,
    /// Bytes in it that are known good: where the next record goes.
    pub(crate) len: u64,
    /// Size of the file: zeros from `len` to here.
    pub(crate) made: u64,
    /// Whether to make space ahead (off once it failed, until the next
    /// compaction).
    pub(crate) grow: bool,
    /// The live state (shares the messages with the broker: one `Arc`
    /// per key, never a copy of a payload).
    pub(crate) live: Live,
    /// Estimated bytes of `live` as records.
    pub(crate) live_bytes: u64,
    /// Changes applied but not yet in a snapshot (`periodic`).
    pub(crate) dirty: bool,
    /// Rate of the "cannot write" warning.
    pub(crate) failures: LogThrottle,
}

impl Writer {
    /// The thread's loop, until the store is closed and everything queued
    /// is written.
    pub(crate) fn run(mut self) {
        let mut next_snapshot = Instant::now() + self.interval;
        loop {
            let (changes, upto, stopping) = self.shared.take_group(match self.mode {
                Durability::Periodic => Some(next_snapshot),
                _ => None,
            });
            for change in &changes {
                self.apply(change);
            }
            let stored =
                self.mode != Durability::Ack || changes.is_empty() || self.append(&changes);
            drop(changes);
            if stored {
                self.shared.written(upto);
            }
            // Space for the next groups, made now that this one's waiters
            // are released rather than while the next one waits.
            if self.mode == Durability::Ack && self.made - self.len < PREALLOC / 2 {
                self.make_space(self.len);
            }
            let due = self.mode == Durability::Periodic && Instant::now() >= next_snapshot;
            if (due || stopping) && self.dirty && self.snapshot().is_ok() {
                self.dirty = false;
            }
            if due {
                next_snapshot = Instant::now() + self.interval;
            }
            if self.mode == Durability::Ack
                && self.len > COMPACT_MIN
                && self.len > COMPACT_FACTOR * self.live_bytes
            {
                let _ = self.snapshot();
            }
            self.publish_gauges();
            if stopping {
                return;
            }
        }
    }

    /// Applies a change to the live state, keeping an estimate of its
    /// size as records (what compaction compares the log with).
    fn apply(&mut self, change: &Change) {
        let old = match change {
            Change::Retain(m) => self.live.retained.get(&m.topic).map(|m| m.size()),
            Change::Unretain(t) => self.live.retained.get(t).map(|m| m.size()),
            Change::Done(client, seq) => self
                .live
                .sessions
                .get(client)
                .and_then(|s| s.messages.get(seq))
                .map(|m| m.delivery.message.size()),
            Change::SessionGone(client) => self.live.sessions.get(client).map(|s| {
                s.messages
                    .values()
                    .map(|m| m.delivery.message.size() + RECORD_OVERHEAD as usize)
                    .sum()
            }),
            _ => None,
        }
        .map_or(0, |n| n as u64 + RECORD_OVERHEAD);
        let new = match change {
            Change::Retain(m) => m.size() as u64 + RECORD_OVERHEAD,
            Change::Queued(_, _, d) => d.message.size() as u64 + RECORD_OVERHEAD,
            Change::Session(s) => {
                RECORD_OVERHEAD
                    + s.subscriptions
                        .iter()
                        .map(|(f, _)| f.len() as u64 + 8)
                        .sum::<u64>()
            }
            _ => 0,
        };
        self.live_bytes = self.live_bytes.saturating_sub(old) + new;
        self.live.apply(change);
        self.dirty = true;
    }

    /// Appends `changes` and fsyncs, until it goes through (true) or the
    /// store closes while it fails (false).
    fn append(&mut self, changes: &[Change]) -> bool {
        let mut backoff = Duration::from_millis(10);
        loop {
            let started = Instant::now();
            match self.write_group(changes) {
                Ok(len) => {
                    self.shared.metrics.record_write(started.elapsed());
                    self.len += len;
                    if !self.shared.healthy.swap(true, Ordering::AcqRel) {
                        tracing::info!(path = %self.path.display(), "state log: writing again");
                    }
                    return true;
                }
                Err(e) => {
                    self.failed("write", &e);
                    // Cut back to the last good length, so a partial write
                    // is not followed by the retried copy.
                    let _ = self.file.set_len(self.len);
                    self.made = self.len;
                    if self.shared.stopping_with_failure() {
                        return false;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Writes `changes` as records in pieces of about [`WRITE_PIECE`] (a
    /// large message is written from its own buffer: a group of many large
    /// messages never needs their size again in memory) and fsyncs once;
    /// returns the bytes written.
    fn write_group(&mut self, changes: &[Change]) -> io::Result<u64> {
        let mut pending = Vec::with_capacity(WRITE_PIECE.min(64 * 1024));
        let mut record = Vec::new();
        let mut len = 0u64;
        for change in changes {
            record.clear();
            entry::encode(change, &mut record);
            frame::put_head(&mut pending, &[&record]);
            if record.len() >= WRITE_PIECE {
                self.write_at(&pending, len)?;
                len += pending.len() as u64;
                self.write_at(&record, len)?;
                len += record.len() as u64;
                pending.clear();
                record = Vec::new();
                continue;
            }
            pending.extend_from_slice(&record);
            if pending.len() >= WRITE_PIECE {
                self.write_at(&pending, len)?;
                len += pending.len() as u64;
                pending.clear();
            }
        }
        self.write_at(&pending, len)?;
        len += pending.len() as u64;
        self.file.sync_data()?;
        Ok(len)
    }

    /// Writes `bytes` at `self.len + offset`, making space ahead first
    /// where it runs out.
    fn write_at(&mut self, bytes: &[u8], offset: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let at = self.len + offset;
        let end = at + bytes.len() as u64;
        if end > self.made {
            self.make_space(end);
        }
        self.file.write_all_at(bytes, at)?;
        self.made = self.made.max(end);
        Ok(())
    }

    /// Extends the file with zeros past `end` by [`PREALLOC`], written and
    /// fsynced; on failure the file is cut back and space is no longer
    /// made ahead (until the next compaction): records are then written
    /// past the end as they come.
    fn make_space(&mut self, end: u64) {
        if !self.grow {
            return;
        }
        let target = end + PREALLOC;
        match zeros(&self.file, self.made, target).and_then(|()| self.file.sync_all()) {
            Ok(()) => self.made = target,
            Err(e) => {
                tracing::debug!(path = %self.path.display(), error = %e, "state log: cannot make space ahead; appending as records come");
                let _ = self.file.set_len(self.made);
                self.grow = false;
            }
        }
    }

    /// Counts and (at most every 10 s) logs a failed write.
    fn failed(&self, what: &str, e: &io::Error) {
        crate::metrics::Metrics::add(&self.shared.metrics.write_errors, 1);
        self.shared.healthy.store(false, Ordering::Release);
        if let Some(n) = self.failures.hit(std::time::Instant::now()) {
            tracing::warn!(path = %self.path.display(), error = %e, failures = n, "state log: cannot {what}; acknowledgements of stored messages wait, and new ones are refused past the memory limit, until it works again");
        }
    }

    /// Writes the live state as a new log beside the old one and puts it
    /// in its place; the old one stays in use if anything fails.
    pub(crate) fn snapshot(&mut self) -> io::Result<()> {
        let started = Instant::now();
        match install_log(&self.path, &self.live) {
            Ok((file, len)) => {
                self.file = file;
                self.len = len;
                self.made = len;
                self.grow = true;
                tracing::debug!(path = %self.path.display(), bytes = len, took = ?started.elapsed(), "state log: snapshot written");
                Ok(())
            }
            Err(e) => {
                self.failed("write a snapshot", &e);
                Err(e)
            }
        }
    }

    /// Sets the gauges `/metrics` reads.
    fn publish_gauges(&self) {
        let m = &self.shared.metrics;
        m.retained
            .store(self.live.retained.len() as u64, Ordering::Relaxed);
        m.bytes.store(self.len, Ordering::Relaxed);
    }
}

/// Writes zeros into `file` from `from` to `to`.
fn zeros(file: &File, mut from: u64, to: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let zeros = vec![0u8; 256 * 1024];
    while from < to {
        let n = (to - from).min(zeros.len() as u64) as usize;
        file.write_all_at(zeros.get(..n).unwrap_or_default(), from)?;
        from += n as u64;
    }
    Ok(())
}

/// Writes `live` as a new log beside `path`, fsyncs it, renames it over
/// `path` and fsyncs the folder; returns it open for writing, and its
/// length. Nothing changes at `path` if this fails.
pub(crate) fn install_log(path: &Path, live: &Live) -> io::Result<(File, u64)> {
    let tmp = path.with_extension("log.tmp");
    let installed = write_log(&tmp, live).and_then(|len| {
        fs::rename(&tmp, path)?;
        sync_dir(path)?;
        Ok((OpenOptions::new().write(true).open(path)?, len))
    });
    if installed.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    installed
}

/// Writes a complete log holding `live` to `path` and fsyncs it; returns
/// its length.
fn write_log(path: &Path, live: &Live) -> io::Result<u64> {
    let mut file = io::BufWriter::with_capacity(1 << 20, File::create(path)?);
    file.write_all(MAGIC)?;
    let mut len = MAGIC.len() as u64;
    let mut data = Vec::new();
    let mut head = Vec::with_capacity(frame::HEAD);
    let mut failed = Ok(());
    live.for_each_record(|change| {
        if failed.is_err() {
            return;
        }
        data.clear();
        head.clear();
        entry::encode(&change, &mut data);
        frame::put_head(&mut head, &[&data]);
        failed = file.write_all(&head).and_then(|()| file.write_all(&data));
        len += (head.len() + data.len()) as u64;
    });
    failed?;
    let file = file.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    Ok(len)
}

/// Fsyncs the folder holding `path`, so a rename in it is durable.
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}
