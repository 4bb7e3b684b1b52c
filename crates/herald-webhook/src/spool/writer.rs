//! The writer thread: takes everything pending at once, appends it to the
//! lanes' segment files (group commit), fsyncs per policy, publishes the
//! records to the lanes; deletes delivered segments, persists cursors and
//! enforces the size limit.
//!
//! The only code that writes segment files. It must never make a record
//! visible to a lane before it is written.

use super::Fsync;
use super::files::{lane_dir, segment_path, write_atomically};
use super::record::{HEAD, Record, encode_head};
use super::state::{Pending, Segment, Shared, sub};
use herald_broker::support::{LogThrottle, lock};
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long the writer lets events gather after a commit before it takes
/// the next group: a bound on the commits per second, so each carries many
/// events under load.
pub(super) const GROUP_COMMIT: Duration = Duration::from_millis(1);

/// How often the writer trims delivered segments at the latest.
pub(super) const HOUSEKEEPING: Duration = Duration::from_millis(100);

/// How often the writer persists lane cursors (and at close). A cursor
/// lost in a crash only means resending what was delivered since.
pub(super) const CURSOR_INTERVAL: Duration = Duration::from_secs(1);

/// The writer thread's own state: open segment files per lane.
pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    /// The segment being appended to, per lane (disk mode).
    pub(super) active: Vec<Option<File>>,
    /// Whether a lane's file was written since the last fsync.
    pub(super) dirty: Vec<bool>,
    pub(super) last_fsync: Instant,
    pub(super) last_housekeeping: Instant,
    pub(super) last_cursor: Instant,
    /// Reused buffers for record headers, one per lane.
    pub(super) buffers: Vec<Vec<u8>>,
    /// One failure log line per interval, not per write.
    pub(super) error_log: LogThrottle,
}

impl Writer {
    pub(super) fn new(shared: Arc<Shared>) -> Writer {
        let n = shared.lanes.len();
        Writer {
            shared,
            active: (0..n).map(|_| None).collect(),
            dirty: vec![false; n],
            last_fsync: Instant::now(),
            last_housekeeping: Instant::now(),
            last_cursor: Instant::now(),
            buffers: (0..n).map(|_| Vec::new()).collect(),
            error_log: LogThrottle::default(),
        }
    }

    pub(super) fn run(mut self) {
        // The list being committed; swapped with the pushers' list so
        // neither side allocates a new one per group.
        let mut batch = VecDeque::new();
        loop {
            {
                let mut pending = lock(&self.shared.pending);
                while pending.items.is_empty() && !self.shared.closing.load(Ordering::Acquire) {
                    pending.idle = true;
                    let (guard, _) = self
                        .shared
                        .writer_wake
                        .wait_timeout(pending, HOUSEKEEPING)
                        .unwrap_or_else(|e| e.into_inner());
                    pending = guard;
                    if pending.items.is_empty() {
                        break;
                    }
                }
                pending.idle = false;
                pending.bytes = 0;
                std::mem::swap(&mut pending.items, &mut batch);
            }
            let closing = self.shared.closing.load(Ordering::Acquire);
            let worked = !batch.is_empty();
            if worked {
                self.commit(&mut batch, closing);
            }
            self.housekeeping(closing);
            if closing && lock(&self.shared.pending).items.is_empty() {
                self.sync_all();
                self.housekeeping(true);
                return;
            }
            if worked && !closing {
                // Let the next group gather (pushes meanwhile do not wake
                // us): under load, one write and one wake-up per lane per
                // interval instead of per event.
                std::thread::sleep(GROUP_COMMIT);
            }
        }
    }

    /// Appends a batch: assigns sequence numbers, writes each lane's part
    /// with one write, fsyncs per policy, then publishes the records.
    fn commit(&mut self, batch: &mut VecDeque<Pending>, closing: bool) {
        let shared = self.shared.clone();
        let disk = shared.options.dir.clone();
        let mut committed: Vec<Vec<Record>> = (0..shared.lanes.len()).map(|_| Vec::new()).collect();
        // Only this thread moves `committed`.
        let base: Vec<u64> = shared.lanes.iter().map(|l| lock(l).committed).collect();
        for p in batch.drain(..) {
            let seq = base[p.lane] + committed[p.lane].len() as u64;
            if disk.is_some() {
                encode_head(&mut self.buffers[p.lane], seq, &p);
            }
            committed[p.lane].push(Record {
                lane: p.lane,
                seq,
                enqueued_ms: p.enqueued_ms,
                kind: p.kind,
                client: Some(p.client),
                body: p.body,
            });
        }
        let mut on_disk = vec![false; committed.len()];
        if let Some(dir) = &disk {
            for lane in 0..committed.len() {
                if committed[lane].is_empty() {
                    continue;
                }
                match self.append(dir, lane, &committed[lane]) {
                    Ok(()) => on_disk[lane] = true,
                    Err(e) => {
                        // Not on disk: keep it deliverable from memory rather
                        // than lose it (it won't survive a restart), and
                        // start a fresh segment next time so segments stay
                        // contiguous.
                        self.log_error(&e);
                        self.active[lane] = None;
                    }
                }
            }
            let due = match shared.options.fsync {
                Fsync::Always => true,
                Fsync::Interval(every) => closing || self.last_fsync.elapsed() >= every,
                Fsync::Never => false,
            };
            if due {
                self.sync_all();
            }
        }
        for (lane_no, records) in committed.into_iter().enumerate() {
            if records.is_empty() {
                continue;
            }
            {
                let mut lane = lock(&shared.lanes[lane_no]);
                let n = records.len() as u64;
                let bytes: u64 = records.iter().map(Record::stored_len).sum();
                lane.committed += n;
                shared.stats.committed.fetch_add(n, Ordering::Relaxed);
                if on_disk[lane_no] {
                    // Also kept in the lane's read cache, newest first to
                    // stay when the cache is full.
                    lane.cache_bytes += bytes;
                    lane.cache.extend(records);
                    while lane.cache_bytes > shared.cache_limit {
                        match lane.cache.pop_front() {
                            Some(r) => lane.cache_bytes -= r.stored_len(),
                            None => break,
                        }
                    }
                } else {
                    // Memory mode, or a disk write that failed (the segment
                    // bytes were counted by `append` otherwise).
                    lane.bytes += bytes;
                    shared.stats.bytes.fetch_add(bytes, Ordering::Relaxed);
                    lane.memory.extend(records);
                }
            }
            shared.lane_wake[lane_no].notify_one();
        }
        self.enforce_limit();
    }

    /// Writes the lane's records (the encoded headers, each followed by its
    /// body, with one vectored write) to its active segment, starting a
    /// new segment when the current one is full.
    fn append(&mut self, dir: &Path, lane_no: usize, records: &[Record]) -> io::Result<()> {
        let shared = self.shared.clone();
        let heads = std::mem::take(&mut self.buffers[lane_no]);
        let first = records.first().map_or(0, |r| r.seq);
        let count = records.len() as u64;
        let total = (heads.len() + records.iter().map(|r| r.body.len()).sum::<usize>()) as u64;
        let result = (|| {
            let mut lane = lock(&shared.lanes[lane_no]);
            let rotate = lane
                .segments
                .back()
                .is_none_or(|s| s.len >= self.shared.segment_bytes)
                || self.active[lane_no].is_none();
            if rotate {
                let ldir = lane_dir(dir, lane_no);
                fs::create_dir_all(&ldir)?;
                let path = segment_path(&ldir, first);
                let file = OpenOptions::new().create(true).append(true).open(&path)?;
                if let Some(old) = self.active[lane_no].take() {
                    old.sync_all()?;
                }
                self.active[lane_no] = Some(file);
                lane.segments.push_back(Segment {
                    first_seq: first,
                    end_seq: first,
                    len: 0,
                    path,
                });
            }
            drop(lane);
            if let Some(file) = self.active[lane_no].as_mut() {
                let mut slices: Vec<IoSlice<'_>> = heads
                    .chunks(HEAD)
                    .zip(records)
                    .flat_map(|(head, r)| [IoSlice::new(head), IoSlice::new(&r.body)])
                    .collect();
                let mut rest = &mut slices[..];
                while !rest.is_empty() {
                    match file.write_vectored(rest) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => IoSlice::advance_slices(&mut rest, n),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            let mut lane = lock(&shared.lanes[lane_no]);
            if let Some(seg) = lane.segments.back_mut() {
                seg.end_seq = first + count;
                seg.len += total;
            }
            lane.bytes += total;
            shared.stats.bytes.fetch_add(total, Ordering::Relaxed);
            Ok(())
        })();
        let mut heads = heads;
        heads.clear();
        self.buffers[lane_no] = heads;
        self.dirty[lane_no] = true;
        result
    }

    fn sync_all(&mut self) {
        for (lane, file) in self.active.iter().enumerate() {
            if let (true, Some(f)) = (self.dirty[lane], file)
                && let Err(e) = f.sync_data()
            {
                tracing::error!(lane, error = %e, "webhook spool: fsync failed");
            }
        }
        self.dirty.iter_mut().for_each(|d| *d = false);
        self.last_fsync = Instant::now();
    }

    fn log_error(&mut self, e: &io::Error) {
        if self.error_log.ready() {
            tracing::error!(error = %e, "webhook spool: write failed; keeping events in memory");
        }
    }

    /// Deletes delivered segments (at most every [`HOUSEKEEPING`]) and
    /// persists lane cursors (at most every [`CURSOR_INTERVAL`]), both
    /// right away if `now` (closing: then the cursors are also fsynced).
    fn housekeeping(&mut self, now: bool) {
        if !now && self.last_housekeeping.elapsed() < HOUSEKEEPING {
            return;
        }
        self.last_housekeeping = Instant::now();
        let Some(dir) = self.shared.options.dir.clone() else {
            return;
        };
        let cursors = now || self.last_cursor.elapsed() >= CURSOR_INTERVAL;
        if cursors {
            self.last_cursor = Instant::now();
        }
        for lane_no in 0..self.shared.lanes.len() {
            let (doomed, cursor) = {
                let mut lane = lock(&self.shared.lanes[lane_no]);
                let mut doomed = Vec::new();
                while lane.segments.len() > 1
                    && lane
                        .segments
                        .front()
                        .is_some_and(|s| s.end_seq <= lane.acked)
                {
                    if let Some(s) = lane.segments.pop_front() {
                        lane.bytes = lane.bytes.saturating_sub(s.len);
                        sub(&self.shared.stats.bytes, s.len);
                        doomed.push(s.path);
                    }
                }
                let cursor = (cursors && lane.cursor_dirty).then_some(lane.acked);
                if cursors {
                    lane.cursor_dirty = false;
                }
                (doomed, cursor)
            };
            for path in doomed {
                let _ = fs::remove_file(&path);
            }
            if let Some(acked) = cursor {
                let path = lane_dir(&dir, lane_no).join("cursor");
                if let Err(e) = write_atomically(&path, acked.to_string().as_bytes(), now) {
                    self.log_error(&e);
                }
            }
        }
    }

    /// Over the size limit: drop the oldest undelivered segment (disk) or
    /// records (memory) of the fullest lane until under it.
    fn enforce_limit(&mut self) {
        let shared = self.shared.clone();
        let max = shared.options.max_bytes;
        let mut dropped_now = 0u64;
        while shared.stats.bytes.load(Ordering::Relaxed) > max {
            let Some((lane_no, _)) = shared
                .lanes
                .iter()
                .enumerate()
                .map(|(i, l)| (i, lock(l).bytes))
                .max_by_key(|&(_, b)| b)
            else {
                break;
            };
            let mut lane = lock(&shared.lanes[lane_no]);
            let (records, bytes, path) = if let Some(r) = lane.memory.pop_front() {
                lane.floor = lane.floor.max(r.seq + 1);
                let lost = u64::from(r.seq >= lane.read);
                (lost, r.stored_len(), None)
            } else if lane.segments.len() > 1 {
                match lane.segments.pop_front() {
                    Some(s) => {
                        let from = lane.read.max(lane.acked).max(s.first_seq);
                        let undelivered = s.end_seq.saturating_sub(from);
                        lane.floor = lane.floor.max(s.end_seq);
                        (undelivered, s.len, Some(s.path))
                    }
                    None => break,
                }
            } else {
                // Everything is in the segment being written: start a new
                // one so the next round can drop this one.
                self.active[lane_no] = None;
                drop(lane);
                if shared.lanes.iter().all(|l| lock(l).segments.len() <= 1) {
                    break;
                }
                continue;
            };
            lane.bytes = lane.bytes.saturating_sub(bytes);
            drop(lane);
            sub(&shared.stats.bytes, bytes);
            if let Some(path) = path {
                let _ = fs::remove_file(path);
            }
            dropped_now += records;
        }
        if dropped_now > 0 {
            shared
                .stats
                .dropped
                .fetch_add(dropped_now, Ordering::Relaxed);
            if self.error_log.ready() {
                tracing::warn!(
                    dropped_total = shared.stats.dropped.load(Ordering::Relaxed),
                    max_bytes = max,
                    "webhook spool full: dropping the oldest events"
                );
            }
        }
    }
}
