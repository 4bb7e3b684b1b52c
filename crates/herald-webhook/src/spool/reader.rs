//! A lane's reader: hands out committed records in order and acknowledges
//! delivered ones.
//!
//! Records come from memory when they can: the lane's in-memory list
//! (memory mode) or its read cache (disk mode: the newest committed
//! records, so a lane that keeps up never reads the disk). A lane that fell
//! behind reads its segment files, and those reads never run on the async
//! task that asks (a tokio worker that also serves MQTT connections): they
//! run on tokio's blocking pool (`spawn_blocking`), one chunk of up to
//! [`READ_AHEAD`] bytes of consecutive records per call, kept in a
//! read-ahead queue that [`LaneReader::next`] and [`LaneReader::try_next`]
//! serve first. A chunk being read survives a cancelled `next` (the lane
//! waits for it again), so nothing is read twice.
//!
//! Why the blocking pool rather than the writer thread or a reader thread
//! of our own: a read waits only for its own lane (a slow or failing disk
//! read never holds up another lane, nor the writer's group commits, on
//! which publishers' acknowledgements wait); the pool starts threads on
//! demand and lets idle ones go, so a spool whose lanes keep up costs no
//! thread; and with a chunk per call the hand-over (a few µs) is shared by
//! hundreds of records.
//!
//! Measured (`cargo bench -p herald-webhook --bench spool_read`: 8 lanes
//! drain 200,000 records of ~300 B from their files on a one-thread
//! runtime beside a task that yields in a loop; 3 rounds, reads inline as
//! before against this, interleaved, load average 15–18 on 2 cores): before,
//! a lane with records on disk never let go of the thread, and the other
//! task ran once in the whole drain (waits of 94–182 ms); now it waits
//! 0.5 µs at the median and 0.5–0.7 µs at p99 (the maxima, 58–106 ms, are
//! the loaded machine taking the thread away). The drain rate is unchanged
//! within the noise: 1.2–1.9 M records/s against 1.1–2.1 M.
//!
//! Reads only; it never writes or deletes a file.
use super::record::{Record, read_record};
use super::state::{Shared, sub};
use herald_broker::support::{LogThrottle, lock};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::task::JoinHandle;

/// Most bytes of records one disk read (one `spawn_blocking` call) takes
/// ahead: enough that the hand-over is a small part of the cost, little
/// enough that every lane of a big `pool_size` may hold one.
pub const READ_AHEAD: u64 = 256 * 1024;

/// Reads one lane's records in order and acknowledges delivered ones.
pub struct LaneReader {
    pub(super) shared: Arc<Shared>,
    pub(super) lane: usize,
    /// Sequence number of the next record to hand out.
    pub(super) next: u64,
    /// Disk mode: the segment being read (with the reader while a chunk is
    /// being read).
    pub(super) file: Option<SegmentReader>,
    /// Records read from the disk ahead of `next`, in order.
    pub(super) ahead: VecDeque<Record>,
    /// A chunk being read on the blocking pool.
    pub(super) reading: Option<JoinHandle<Chunk>>,
    /// Rate limit of the "cannot read" log line.
    pub(super) log: LogThrottle,
}

/// What one disk read brought: the segment (to go on from), the records
/// read, and the error that ended it early, if one did.
pub(super) struct Chunk {
    file: Option<SegmentReader>,
    records: Vec<Record>,
    error: Option<io::Error>,
}

/// Where the next record is.
enum Found {
    /// In memory, handed out.
    Record(Record),
    /// Only on disk: in this segment, whose committed records end before
    /// `until`.
    Disk {
        first_seq: u64,
        path: PathBuf,
        until: u64,
    },
    /// Nowhere yet: nothing committed beyond the read position.
    Nothing,
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
    /// A reader of `lane` from sequence number `next` on.
    pub(super) fn new(shared: Arc<Shared>, lane: usize, next: u64) -> LaneReader {
        LaneReader {
            shared,
            lane,
            next,
            file: None,
            ahead: VecDeque::new(),
            reading: None,
            log: LogThrottle::default(),
        }
    }

    /// This reader's lane.
    pub fn lane(&self) -> usize {
        self.lane
    }

    /// The next record, waiting until one is committed (and, if it is only
    /// on disk, read on the blocking pool). `None` once the spool is closed
    /// or sealed and this lane has nothing more. Cancel-safe: a record is
    /// handed out only by a call that returns it.
    pub async fn next(&mut self) -> Option<Record> {
        let shared = self.shared.clone();
        loop {
            if let Some(reading) = self.reading.as_mut() {
                let chunk = reading.await;
                self.reading = None;
                match chunk {
                    Ok(chunk) => self.took(chunk),
                    Err(e) => {
                        // The runtime is shutting down (or the read
                        // panicked): nothing was taken; try again.
                        if self.log.ready() {
                            tracing::warn!(lane = self.lane, error = %e, "webhook spool: a segment read did not complete; reading again");
                        }
                        tokio::task::yield_now().await;
                    }
                }
                continue;
            }
            // Registered before looking, so a commit in between still wakes us.
            let wake = shared.lane_wake[self.lane].notified();
            // Read before looking: once sealed, nothing more is committed.
            let sealed = shared.sealed.load(Ordering::Acquire);
            match self.look() {
                Found::Record(record) => return Some(record),
                Found::Disk {
                    first_seq,
                    path,
                    until,
                } => {
                    let (file, next, lane) = (self.file.take(), self.next, self.lane);
                    self.reading = Some(tokio::task::spawn_blocking(move || {
                        read_chunk(file, first_seq, &path, next, until, lane)
                    }));
                    continue;
                }
                Found::Nothing => {}
            }
            if sealed || self.shared.closing.load(Ordering::Acquire) {
                return None;
            }
            wake.await;
        }
    }

    /// The next committed record if it is in memory (the lane's cache or
    /// what was read ahead), without waiting and without reading the disk.
    pub fn try_next(&mut self) -> Option<Record> {
        if self.reading.is_some() {
            return None;
        }
        match self.look() {
            Found::Record(record) => Some(record),
            Found::Disk { .. } | Found::Nothing => None,
        }
    }

    /// Takes in a chunk read from the disk. A read error with nothing read
    /// before it costs the rest of that segment (logged); with records read
    /// before it, those go first and the error comes back on the next read.
    fn took(&mut self, chunk: Chunk) {
        self.file = chunk.file;
        let empty = chunk.records.is_empty();
        self.ahead.extend(chunk.records);
        if let Some(e) = chunk.error {
            self.file = None;
            if empty {
                tracing::error!(lane = self.lane, error = %e, "webhook spool: cannot read a record; skipping the rest of its segment");
                self.skip_segment();
            }
        }
    }

    /// Finds the next record: hands it out if it is in memory, else says
    /// where on disk it is. No I/O.
    fn look(&mut self) -> Found {
        loop {
            while let Some(record) = self.ahead.pop_front() {
                // Below `next`: dropped for space meanwhile, or passed.
                if record.seq >= self.next && self.advance(record.seq + 1) {
                    return Found::Record(record);
                }
            }
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
                    return Found::Nothing;
                }
                let done = lane.acked.max(lane.floor);
                trim_front(&mut lane.memory, done);
                let freed = trim_front(&mut lane.cache, done);
                lane.cache_bytes -= freed;
                let in_memory =
                    find(&lane.memory, self.next).or_else(|| find(&lane.cache, self.next));
                let segment = lane
                    .segments
                    .iter()
                    .find(|s| s.first_seq <= self.next && self.next < s.end_seq)
                    .map(|s| (s.first_seq, s.path.clone(), s.end_seq.min(lane.committed)));
                (in_memory, segment)
            };
            if let Some(record) = in_memory {
                // Dropped for space while it was looked up: the writer
                // counted it as dropped, so it is not handed out.
                if self.advance(record.seq + 1) {
                    return Found::Record(record);
                }
                continue;
            }
            match segment {
                Some((first_seq, path, until)) => {
                    return Found::Disk {
                        first_seq,
                        path,
                        until,
                    };
                }
                None => {
                    // Nothing holds it (dropped for space meanwhile, or a
                    // gap left by damage or a cursor beyond the data): on
                    // to the next record that exists.
                    let lane = lock(&self.shared.lanes[self.lane]);
                    self.next = lane
                        .segments
                        .iter()
                        .map(|s| s.first_seq)
                        .find(|&first| first > self.next)
                        .unwrap_or(lane.committed)
                        .max(self.next + 1);
                }
            }
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
        self.ahead.clear();
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

/// Reads, on a blocking thread, the committed records of one segment from
/// `next` on (those numbered below `until`), up to [`READ_AHEAD`] bytes,
/// going on from `file` if it is that segment at or before `next`.
fn read_chunk(
    file: Option<SegmentReader>,
    first_seq: u64,
    path: &std::path::Path,
    next: u64,
    until: u64,
    lane: usize,
) -> Chunk {
    let mut records = Vec::new();
    let mut file = match file {
        Some(f) if f.first_seq == first_seq && f.at <= next => f,
        _ => match File::open(path) {
            Ok(f) => SegmentReader {
                first_seq,
                at: first_seq,
                reader: BufReader::with_capacity(64 * 1024, f),
            },
            Err(e) => {
                return Chunk {
                    file: None,
                    records,
                    error: Some(e),
                };
            }
        },
    };
    let mut bytes = 0;
    let error = loop {
        if let Err(e) = file.skip_to(next) {
            break Some(e);
        }
        match read_record(&mut file.reader, lane) {
            // Past `next` where recovery removed damaged records.
            Ok(Some(record)) if record.seq >= next && record.seq < until => {
                file.at = record.seq + 1;
                bytes += record.stored_len();
                let last = record.seq + 1 >= until;
                records.push(record);
                if last || bytes >= READ_AHEAD {
                    break None;
                }
            }
            Ok(Some(other)) => {
                break Some(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "expected record {next} or later (before {until}), found {}",
                        other.seq
                    ),
                ));
            }
            Ok(None) => {
                break Some(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "segment ends early",
                ));
            }
            Err(e) => break Some(e),
        }
    };
    Chunk {
        file: Some(file),
        records,
        error,
    }
}
