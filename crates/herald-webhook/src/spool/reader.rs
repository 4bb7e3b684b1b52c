//! A lane's reader: hands out committed records in order (from memory when
//! it can, else from the segment files) and acknowledges delivered ones.
//!
//! Reads only; it never writes or deletes a file.

use super::record::{Record, read_record};
use super::state::{Shared, sub};
use herald_broker::support::lock;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Reads one lane's records in order and acknowledges delivered ones.
pub struct LaneReader {
    pub(super) shared: Arc<Shared>,
    pub(super) lane: usize,
    /// Sequence number of the next record to hand out.
    pub(super) next: u64,
    /// Disk mode: the segment being read.
    pub(super) file: Option<SegmentReader>,
}

/// An open segment and where in it the reader is.
pub(super) struct SegmentReader {
    /// The segment's first sequence number (which segment this is).
    pub(super) first_seq: u64,
    /// Sequence number of the record at the read position.
    pub(super) at: u64,
    pub(super) reader: BufReader<File>,
}

impl SegmentReader {
    /// Moves forward, record by record without reading bodies, to the
    /// first record numbered `seq` or more (numbers may have gaps where
    /// recovery removed a damaged record).
    fn skip_to(&mut self, seq: u64) -> io::Result<()> {
        while self.at < seq {
            let mut head = [0u8; 16];
            self.reader.read_exact(&mut head)?;
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            let mut at = [0u8; 8];
            at.copy_from_slice(&head[8..16]);
            let at = u64::from_be_bytes(at);
            if at >= seq {
                self.reader.seek_relative(-16)?;
                self.at = at;
                return Ok(());
            }
            self.reader.seek_relative(i64::from(len) - 8)?;
            self.at = at + 1;
        }
        Ok(())
    }
}

/// The record numbered `seq` in a lane's in-memory list (sorted by seq).
pub(super) fn find(records: &VecDeque<Record>, seq: u64) -> Option<Record> {
    records
        .binary_search_by_key(&seq, |r| r.seq)
        .ok()
        .and_then(|i| records.get(i).cloned())
}

/// Drops records below `seq` from the front of an in-memory list; returns
/// the bytes they held.
pub(super) fn trim_front(records: &mut VecDeque<Record>, seq: u64) -> u64 {
    let mut freed = 0;
    while records.front().is_some_and(|r| r.seq < seq) {
        if let Some(r) = records.pop_front() {
            freed += r.stored_len();
        }
    }
    freed
}

impl LaneReader {
    /// This reader's lane.
    pub fn lane(&self) -> usize {
        self.lane
    }

    /// The next record, waiting until one is committed. `None` once the
    /// spool is closed or sealed and this lane has nothing more.
    pub async fn next(&mut self) -> Option<Record> {
        let shared = self.shared.clone();
        loop {
            // Registered before looking, so a commit in between still wakes us.
            let wake = shared.lane_wake[self.lane].notified();
            // Read before looking: once sealed, nothing more is committed.
            let sealed = shared.sealed.load(Ordering::Acquire);
            match self.try_next() {
                Ok(Some(record)) => return Some(record),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(lane = self.lane, error = %e, "webhook spool: cannot read a record; skipping the rest of its segment");
                    self.skip_segment();
                    continue;
                }
            }
            if sealed || self.shared.closing.load(Ordering::Acquire) {
                return None;
            }
            wake.await;
        }
    }

    /// The next committed record if there is one, without waiting.
    pub fn try_next(&mut self) -> io::Result<Option<Record>> {
        loop {
            if let Some(found) = self.read_one()? {
                // Dropped for space while it was being read: the writer
                // counted it as dropped, so it is not handed out.
                if self.advance(found.seq + 1) {
                    return Ok(Some(found));
                }
            } else if self.next >= lock(&self.shared.lanes[self.lane]).committed {
                return Ok(None);
            }
        }
    }

    /// Reads the record at the read position; `None` if nothing is
    /// committed there (yet, or any more).
    fn read_one(&mut self) -> io::Result<Option<Record>> {
        let (in_memory, segment) = {
            let mut lane = lock(&self.shared.lanes[self.lane]);
            if self.next < lane.floor {
                self.next = lane.floor;
                self.file = None;
            }
            if self.next >= lane.committed {
                // Caught up: let go of the segment, so that once it is
                // delivered and deleted its space really comes back.
                self.file = None;
                return Ok(None);
            }
            let done = lane.acked.max(lane.floor);
            trim_front(&mut lane.memory, done);
            let freed = trim_front(&mut lane.cache, done);
            lane.cache_bytes -= freed;
            let in_memory = find(&lane.memory, self.next).or_else(|| find(&lane.cache, self.next));
            let segment = lane
                .segments
                .iter()
                .find(|s| s.first_seq <= self.next && self.next < s.end_seq)
                .map(|s| (s.first_seq, s.path.clone()));
            (in_memory, segment)
        };
        if let Some(record) = in_memory {
            return Ok(Some(record));
        }
        let Some((first_seq, path)) = segment else {
            // Nothing holds it (dropped for space meanwhile, or a gap left
            // by damage or a cursor beyond the data): on to the next
            // record that exists.
            let lane = lock(&self.shared.lanes[self.lane]);
            self.next = lane
                .segments
                .iter()
                .map(|s| s.first_seq)
                .find(|&first| first > self.next)
                .unwrap_or(lane.committed)
                .max(self.next + 1);
            return Ok(None);
        };
        // Reuse the open segment if it is this one and not past `next`
        // (records served from memory meanwhile only move `next` forward).
        let reusable = self
            .file
            .as_ref()
            .is_some_and(|f| f.first_seq == first_seq && f.at <= self.next);
        if !reusable {
            self.file = Some(SegmentReader {
                first_seq,
                at: first_seq,
                reader: BufReader::new(File::open(&path)?),
            });
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(None);
        };
        file.skip_to(self.next)?;
        let read = read_record(&mut file.reader, self.lane)?;
        match read {
            // Past `next` where recovery removed damaged records.
            Some(record) if record.seq >= self.next => {
                file.at = record.seq + 1;
                Ok(Some(record))
            }
            Some(other) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected record {} found {}", self.next, other.seq),
            )),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "segment ends early",
            )),
        }
    }

    /// Moves the read position past a record just read, also in the
    /// lane's shared state; `false` if the record was dropped for space
    /// meanwhile (the position then moves to the first record kept).
    fn advance(&mut self, next: u64) -> bool {
        let mut lane = lock(&self.shared.lanes[self.lane]);
        if next <= lane.floor {
            self.next = lane.floor;
            self.file = None;
            return false;
        }
        self.next = next;
        lane.read = next;
        if next >= lane.committed {
            // Caught up: no file kept open that the writer may delete.
            self.file = None;
        }
        true
    }

    fn skip_segment(&mut self) {
        let lane = lock(&self.shared.lanes[self.lane]);
        if let Some(s) = lane
            .segments
            .iter()
            .find(|s| s.first_seq <= self.next && self.next < s.end_seq)
        {
            self.next = s.end_seq;
        } else {
            self.next += 1;
        }
        self.file = None;
    }

    /// Marks every record up to and including `seq` delivered (or given up
    /// on): a restart will not send it again, and its space is freed (in
    /// memory now; on disk when its whole segment is delivered).
    pub fn ack(&mut self, seq: u64) {
        let mut lane = lock(&self.shared.lanes[self.lane]);
        if seq < lane.acked {
            return;
        }
        lane.acked = seq + 1;
        lane.cursor_dirty = true;
        let freed = trim_front(&mut lane.memory, seq + 1);
        let cached = trim_front(&mut lane.cache, seq + 1);
        lane.cache_bytes -= cached;
        lane.bytes = lane.bytes.saturating_sub(freed);
        drop(lane);
        sub(&self.shared.stats.bytes, freed);
    }
}
