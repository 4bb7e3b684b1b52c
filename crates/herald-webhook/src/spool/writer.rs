//! The writer thread: takes everything pending at once, appends it to the
//! lanes' segment files (group commit), fsyncs per policy, publishes the
//! records to the lanes; deletes delivered segments, persists cursors and
//! enforces the size limit.
//!
//! The only code that writes segment files. It must never make a record
//! visible to a lane before it is written.

use super::Fsync;
use super::disk::SegmentFile;
use super::files::{create_private_dir, lane_dir, segment_path, write_atomically};
use super::record::{HEAD, Record, encode_head};
use super::state::{Segment, Shared, sub};
use super::syncer::{Syncer, fsync_counted};
use herald_broker::support::{LogThrottle, lock};
use std::collections::VecDeque;
use std::fs;
use std::io::{self, IoSlice};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often the writer trims delivered segments at the latest.
pub(super) const HOUSEKEEPING: Duration = Duration::from_millis(100);

/// How often the writer persists lane cursors (and at close). A cursor
/// lost in a crash only means resending what was delivered since.
pub(super) const CURSOR_INTERVAL: Duration = Duration::from_secs(1);

/// First wait before writing again after a failed write; doubles up to
/// [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(10);

/// Longest wait between attempts to write while writes fail.
const RETRY_MAX: Duration = Duration::from_secs(1);

/// The writer thread's own state: open segment files per lane.
pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    /// The segment being appended to, per lane (disk mode).
    pub(super) active: Vec<Option<Box<dyn SegmentFile>>>,
    /// Whether a lane's file was written since the last fsync.
    pub(super) dirty: Vec<bool>,
    pub(super) last_fsync: Instant,
    pub(super) last_housekeeping: Instant,
    pub(super) last_cursor: Instant,
    /// Reused buffers for record headers, one per lane.
    pub(super) buffers: Vec<Vec<u8>>,
    /// Per lane: records taken from the pending list and not yet written,
    /// oldest first, numbered from the lane's `committed` on (a failed
    /// write keeps them here to be written again, in order).
    pub(super) held: Vec<VecDeque<Record>>,
    /// Per lane: the ticket of the newest record in `held`.
    pub(super) held_ticket: Vec<u64>,
    /// While writes fail: when the trouble began, and when to try again.
    pub(super) failing: Option<(Instant, Instant)>,
    /// The current wait between attempts while writes fail.
    pub(super) retry_wait: Duration,
    /// Rate limit of the log lines, per kind of trouble.
    pub(super) logs: [LogThrottle; 5],
    /// Counters last logged: overflow drops, refusals.
    pub(super) logged: (u64, u64),
    /// `fsync = interval` on disk: the thread that fsyncs, so the writer
    /// never waits for it (started with the writer).
    pub(super) syncer: Option<Syncer>,
}

/// Kinds of trouble, each logged at most once per [`LogThrottle::DEFAULT_EVERY`].
#[derive(Clone, Copy)]
enum Trouble {
    Write = 0,
    Full = 1,
    Overflow = 2,
    Housekeeping = 3,
    Fsync = 4,
}

impl Writer {
    pub(super) fn new(shared: Arc<Shared>) -> Writer {
        let n = shared.lanes.len();
        // Counters may be shared with an earlier generation: log only what
        // happens from now on.
        let logged = (
            shared.stats.overflow.load(Ordering::Relaxed),
            shared.stats.refused.load(Ordering::Relaxed),
        );
        Writer {
            shared,
            active: (0..n).map(|_| None).collect(),
            dirty: vec![false; n],
            last_fsync: Instant::now(),
            last_housekeeping: Instant::now(),
            last_cursor: Instant::now(),
            buffers: (0..n).map(|_| Vec::new()).collect(),
            held: (0..n).map(|_| VecDeque::new()).collect(),
            held_ticket: vec![0; n],
            failing: None,
            retry_wait: RETRY_MIN,
            logs: Default::default(),
            logged,
            syncer: None,
        }
    }

    pub(super) fn run(mut self) {
        if self.shared.options.dir.is_some()
            && matches!(self.shared.options.fsync, Fsync::Interval(_))
        {
            match Syncer::start(self.shared.stats.clone()) {
                Ok(syncer) => self.syncer = Some(syncer),
                Err(e) => {
                    tracing::warn!(error = %e, "webhook spool: cannot start the fsync thread; the writer fsyncs itself");
                }
            }
        }
        loop {
            self.sleep();
            let closing = self.shared.closing.load(Ordering::Acquire);
            // Whoever waits from here on waits for events this take may
            // miss: their hurry must count for the next gather.
            self.shared.hurry.store(false, Ordering::SeqCst);
            let took = self.take_pending();
            let retry_due = self
                .failing
                .is_none_or(|(_, at)| closing || Instant::now() >= at);
            let mut worked = false;
            if retry_due && self.held.iter().any(|h| !h.is_empty()) {
                self.commit(closing);
                worked = true;
            }
            self.housekeeping(closing);
            self.log_drops();
            if closing && self.shared.pending_count.load(Ordering::SeqCst) == 0 {
                // One last try for what is held; what still cannot be
                // written is lost with the process, and said so.
                if self.held.iter().any(|h| !h.is_empty()) {
                    self.commit(true);
                }
                let lost: usize = self.held.iter().map(VecDeque::len).sum();
                if lost > 0 {
                    tracing::error!(
                        events = lost,
                        "webhook spool: closing with events that could not be written; they are lost"
                    );
                }
                if let Some(syncer) = self.syncer.take() {
                    syncer.stop();
                }
                self.sync_all();
                self.housekeeping(true);
                self.shared.stopped.store(true, Ordering::Release);
                for wake in &self.shared.written_wake {
                    wake.notify_waiters();
                }
                return;
            }
            if (worked || took) && !closing && self.failing.is_none() {
                self.gather();
            }
        }
    }

    /// Lets the next group gather (pushes meanwhile do not wake us): under
    /// load, one write and one wake-up per lane per interval instead of
    /// per event. Cut short when a publisher waits for an event already
    /// pushed ([`Shared::hurry`]): a publisher whose acknowledgements all
    /// wait for us sends nothing more, so gathering would only add the
    /// interval to its every round trip.
    fn gather(&self) {
        let shared = &self.shared;
        let until = Instant::now() + shared.options.group_commit;
        shared.writer_gathering.store(true, Ordering::SeqCst);
        while !shared.hurry.load(Ordering::SeqCst) && !shared.closing.load(Ordering::Acquire) {
            let now = Instant::now();
            if now >= until {
                break;
            }
            std::thread::park_timeout(until - now);
        }
        shared.writer_gathering.store(false, Ordering::SeqCst);
    }

    /// Sleeps until a push wakes us, a retry is due, or housekeeping is.
    fn sleep(&self) {
        let shared = &self.shared;
        let retry_in = self
            .failing
            .map(|(_, at)| at.saturating_duration_since(Instant::now()));
        let has_held = self.held.iter().any(|h| !h.is_empty());
        if has_held && retry_in.is_none_or(|d| d.is_zero()) {
            return;
        }
        shared.writer_idle.store(true, Ordering::SeqCst);
        if shared.pending_count.load(Ordering::SeqCst) == 0
            && !shared.closing.load(Ordering::Acquire)
        {
            let wait = match retry_in {
                Some(d) if has_held => d.min(HOUSEKEEPING),
                _ => HOUSEKEEPING,
            };
            std::thread::park_timeout(wait);
        }
        shared.writer_idle.store(false, Ordering::SeqCst);
    }

    /// Moves every lane's pending events behind what that lane holds,
    /// numbering them; `true` if there were any.
    fn take_pending(&mut self) -> bool {
        let shared = self.shared.clone();
        let mut took = false;
        for (lane_no, pending) in shared.pending.iter().enumerate() {
            let (items, ticket) = {
                let mut p = lock(pending);
                if p.items.is_empty() {
                    continue;
                }
                (std::mem::take(&mut p.items), p.pushed)
            };
            took = true;
            sub(&shared.pending_count, items.len() as u64);
            let base = lock(&shared.lanes[lane_no]).committed;
            let held = &mut self.held[lane_no];
            for p in items {
                let seq = base + held.len() as u64;
                held.push_back(Record {
                    lane: lane_no,
                    seq,
                    enqueued_ms: p.enqueued_ms,
                    kind: p.kind,
                    client: Some(p.client),
                    body: p.body,
                });
            }
            self.held_ticket[lane_no] = ticket;
        }
        took
    }

    /// Writes every lane's held records (fsyncing per policy), then makes
    /// them visible to the lanes and settles their tickets. A lane whose
    /// write fails keeps its records held for the next attempt.
    fn commit(&mut self, closing: bool) {
        let shared = self.shared.clone();
        let mut error = None;
        for lane_no in 0..self.held.len() {
            if self.held[lane_no].is_empty() {
                continue;
            }
            let Some(dir) = shared.options.dir.clone() else {
                let n = self.held[lane_no].len();
                self.publish(lane_no, n);
                continue;
            };
            let always = shared.options.fsync == Fsync::Always;
            // A segment at a time, so segments stay near their size (the
            // size limit drops whole segments) and each part is published
            // as soon as it is written.
            let mut wrote = false;
            while !self.held[lane_no].is_empty() {
                // While writes fail, one record at a time until one goes
                // through: a disk with a little space back takes what fits.
                let n = if self.failing.is_some() && !wrote {
                    1
                } else {
                    self.fitting(lane_no)
                };
                wrote = true;
                match self.append(&dir, lane_no, n, always) {
                    Ok(()) => self.publish(lane_no, n),
                    Err(e) => {
                        shared.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                        self.rollback(lane_no);
                        error = Some(e);
                        break;
                    }
                }
            }
        }
        if let Some(dir) = &shared.options.dir {
            let _ = dir;
            let due = match shared.options.fsync {
                Fsync::Always => false,
                Fsync::Interval(every) => closing || self.last_fsync.elapsed() >= every,
                Fsync::Never => false,
            };
            if due {
                self.sync_soon(closing);
            }
        }
        match error {
            Some(e) => self.failed(&e),
            None => self.recovered(),
        }
        self.enforce_limit();
    }

    /// A write failed: hold on and try again later, saying so once.
    fn failed(&mut self, e: &io::Error) {
        let now = Instant::now();
        let since = match self.failing {
            Some((since, _)) => {
                self.retry_wait = (self.retry_wait * 2).min(RETRY_MAX);
                since
            }
            None => {
                self.retry_wait = RETRY_MIN;
                now
            }
        };
        self.failing = Some((since, now + self.retry_wait));
        let first = !self.shared.degraded.swap(true, Ordering::Relaxed);
        if self.logs[Trouble::Write as usize].ready() || first {
            let held: usize = self.held.iter().map(VecDeque::len).sum();
            tracing::error!(
                error = %e,
                held,
                memory_limit = self.shared.pending_limit,
                "webhook spool: cannot write; holding events in memory and retrying (QoS 1/2 publishes that match a rule are refused once the memory limit is reached)"
            );
        }
    }

    /// Writes succeed (again).
    fn recovered(&mut self) {
        if let Some((since, _)) = self.failing.take() {
            self.retry_wait = RETRY_MIN;
            self.shared.degraded.store(false, Ordering::Relaxed);
            tracing::info!(
                failed_for_ms = since.elapsed().as_millis() as u64,
                "webhook spool: writing again"
            );
        }
    }

    /// Logs (rate-limited) events dropped or refused since the last line.
    fn log_drops(&mut self) {
        let stats = &self.shared.stats;
        let overflow = stats.overflow.load(Ordering::Relaxed);
        let refused = stats.refused.load(Ordering::Relaxed);
        if (overflow, refused) == self.logged || !self.logs[Trouble::Overflow as usize].ready() {
            return;
        }
        tracing::warn!(
            dropped = overflow - self.logged.0,
            refused = refused - self.logged.1,
            dropped_total = overflow,
            refused_total = refused,
            memory_limit = self.shared.pending_limit,
            "webhook spool: events not written yet fill the memory allowed: dropping events nobody waits for, refusing QoS 1/2 publishes while writes fail"
        );
        self.logged = (overflow, refused);
    }

    /// Makes a lane's held records (now written) visible to its reader and
    /// settles their tickets.
    fn publish(&mut self, lane_no: usize, count: usize) {
        let shared = self.shared.clone();
        let held = &mut self.held[lane_no];
        let records: Vec<Record> = held.drain(..count.min(held.len())).collect();
        // Held records have consecutive tickets, the newest `held_ticket`.
        let ticket = self.held_ticket[lane_no] - held.len() as u64;
        let n = records.len() as u64;
        let bytes: u64 = records.iter().map(Record::stored_len).sum();
        {
            let mut lane = lock(&shared.lanes[lane_no]);
            lane.committed += n;
            if shared.options.dir.is_some() {
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
                lane.bytes += bytes;
                shared.stats.bytes.fetch_add(bytes, Ordering::Relaxed);
                lane.memory.extend(records);
            }
        }
        shared.stats.committed.fetch_add(n, Ordering::Relaxed);
        sub(&shared.pending_bytes, bytes);
        shared.written[lane_no].store(ticket, Ordering::Release);
        shared.written_wake[lane_no].notify_waiters();
        shared.lane_wake[lane_no].notify_one();
    }

    /// Writes the lane's held records (the encoded headers, each followed
    /// by its body, with one vectored write) to its active segment,
    /// starting a new segment when the current one is full, and fsyncs it
    /// if `sync`. Only then is the segment's bookkeeping moved on.
    fn append(&mut self, dir: &Path, lane_no: usize, count: usize, sync: bool) -> io::Result<()> {
        let shared = self.shared.clone();
        let mut heads = std::mem::take(&mut self.buffers[lane_no]);
        heads.clear();
        let held = std::mem::take(&mut self.held[lane_no]);
        let records = held.range(..count.min(held.len()));
        for r in records.clone() {
            encode_head(&mut heads, r);
        }
        let first = held.front().map_or(0, |r| r.seq);
        let count = records.len() as u64;
        let total = (heads.len() + records.clone().map(|r| r.body.len()).sum::<usize>()) as u64;
        let result = (|| {
            let rotate = {
                let lane = lock(&shared.lanes[lane_no]);
                lane.segments
                    .back()
                    .is_none_or(|s| s.len >= shared.segment_bytes)
                    || self.active[lane_no].is_none()
            };
            if rotate {
                self.rotate(dir, lane_no, first)?;
            }
            let Some(file) = self.active[lane_no].as_mut() else {
                return Err(io::Error::other("no segment open"));
            };
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
            if sync {
                file.sync_data()?;
            } else {
                self.dirty[lane_no] = true;
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
        heads.clear();
        self.buffers[lane_no] = heads;
        self.held[lane_no] = held;
        result
    }

    /// How many of a lane's held records go into its current segment (at
    /// least one: a new segment takes what fits in a whole segment).
    fn fitting(&self, lane_no: usize) -> usize {
        let limit = self.shared.segment_bytes;
        let used = match (
            &self.active[lane_no],
            lock(&self.shared.lanes[lane_no]).segments.back(),
        ) {
            (Some(_), Some(s)) if s.len < limit => s.len,
            _ => 0,
        };
        let mut bytes = used;
        let mut n = 0;
        for r in &self.held[lane_no] {
            bytes += r.stored_len();
            n += 1;
            if bytes >= limit {
                break;
            }
        }
        n.max(1)
    }

    /// Starts a new segment for a lane whose first record is `first`
    /// (reusing an empty one left by a failed write).
    fn rotate(&mut self, dir: &Path, lane_no: usize, first: u64) -> io::Result<()> {
        let ldir = lane_dir(dir, lane_no);
        create_private_dir(&ldir)?;
        let path = segment_path(&ldir, first);
        let mut file = self.shared.disk.open_segment(&path)?;
        if let Some(mut old) = self.active[lane_no].take() {
            match (self.shared.options.fsync, &self.syncer) {
                // Fsynced with every write already; or the OS decides.
                (Fsync::Always | Fsync::Never, _) => {}
                (Fsync::Interval(_), Some(syncer)) => {
                    if let Err(mut back) = syncer.sync(vec![(lane_no, old)])
                        && let Some((_, old)) = back.first_mut()
                    {
                        old.sync_data()?;
                    }
                }
                (Fsync::Interval(_), None) => old.sync_data()?,
            }
        }
        let mut lane = lock(&self.shared.lanes[lane_no]);
        let reuse = lane.segments.back().is_some_and(|s| s.first_seq == first);
        if reuse {
            // A failed write left it: whatever it holds is not committed.
            file.set_len(0)?;
            if let Some(s) = lane.segments.back_mut() {
                s.len = 0;
                s.end_seq = first;
            }
        } else {
            lane.segments.push_back(Segment {
                first_seq: first,
                end_seq: first,
                len: 0,
                path,
            });
        }
        drop(lane);
        self.active[lane_no] = Some(file);
        Ok(())
    }

    /// After a failed write: cuts the lane's active segment back to what is
    /// committed, so the records can be written again in place; if even
    /// that fails, the segment is closed (the next write starts a new one,
    /// and recovery cuts the uncommitted tail).
    fn rollback(&mut self, lane_no: usize) {
        let committed = lock(&self.shared.lanes[lane_no])
            .segments
            .back()
            .map(|s| s.len);
        let cut = match (self.active[lane_no].as_mut(), committed) {
            (Some(file), Some(len)) => file.set_len(len).is_ok(),
            _ => false,
        };
        if !cut {
            self.active[lane_no] = None;
        }
    }

    /// The interval is up: the dirty segments go to the fsync thread (not
    /// while it is still busy with the last ones: they stay dirty for the
    /// next interval); fsynced here when closing or without that thread.
    fn sync_soon(&mut self, closing: bool) {
        let Some(syncer) = self.syncer.as_ref().filter(|_| !closing) else {
            self.sync_all();
            return;
        };
        if syncer.busy() {
            return;
        }
        let fsync_log = &self.logs[Trouble::Fsync as usize];
        let mut batch = Vec::new();
        for (lane, file) in self.active.iter_mut().enumerate() {
            let (true, Some(f)) = (self.dirty[lane], file) else {
                continue;
            };
            match f.try_clone() {
                Ok(other) => batch.push((lane, other)),
                Err(_) => fsync_counted(&mut **f, &self.shared.stats, fsync_log, lane),
            }
            self.dirty[lane] = false;
        }
        if let Err(batch) = syncer.sync(batch) {
            for (lane, mut f) in batch {
                fsync_counted(&mut *f, &self.shared.stats, fsync_log, lane);
            }
        }
        self.last_fsync = Instant::now();
    }

    fn sync_all(&mut self) {
        let fsync_log = &self.logs[Trouble::Fsync as usize];
        for (lane, file) in self.active.iter_mut().enumerate() {
            if let (true, Some(f)) = (self.dirty[lane], file) {
                fsync_counted(&mut **f, &self.shared.stats, fsync_log, lane);
            }
        }
        self.dirty.iter_mut().for_each(|d| *d = false);
        self.last_fsync = Instant::now();
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
                // The segment being written goes too once all of it is
                // delivered (the next write starts a new one), so the
                // space of a drained spool comes back, also while
                // records wait for space to be written.
                while lane
                    .segments
                    .front()
                    .is_some_and(|s| s.end_seq <= lane.acked)
                {
                    if let Some(s) = lane.segments.pop_front() {
                        if lane.segments.is_empty() {
                            self.active[lane_no] = None;
                        }
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
                self.remove(&path);
            }
            if let Some(acked) = cursor {
                let path = lane_dir(&dir, lane_no).join("cursor");
                if let Err(e) = write_atomically(&path, acked.to_string().as_bytes(), now)
                    && self.logs[Trouble::Housekeeping as usize].ready()
                {
                    tracing::warn!(path = %path.display(), error = %e, "webhook spool: cannot write a cursor (a restart may resend delivered events)");
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
            // Counted before the bytes go down: whoever sees the spool back
            // under its limit also sees what that cost.
            shared.stats.dropped.fetch_add(records, Ordering::Relaxed);
            sub(&shared.stats.bytes, bytes);
            if let Some(path) = path {
                self.remove(&path);
            }
            dropped_now += records;
        }
        if dropped_now > 0 && self.logs[Trouble::Full as usize].ready() {
            tracing::warn!(
                dropped_total = shared.stats.dropped.load(Ordering::Relaxed),
                max_bytes = max,
                "webhook spool full: dropping the oldest events"
            );
        }
    }

    /// Deletes a segment file, counting (and now and then logging) a
    /// failure.
    fn remove(&mut self, path: &Path) {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                self.shared
                    .stats
                    .delete_errors
                    .fetch_add(1, Ordering::Relaxed);
                if self.logs[Trouble::Housekeeping as usize].ready() {
                    tracing::warn!(path = %path.display(), error = %e, "webhook spool: cannot delete a delivered segment");
                }
            }
        }
    }
}
