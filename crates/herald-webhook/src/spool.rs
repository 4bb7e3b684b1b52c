//! The WebHook's durable spool: every accepted event is appended here before
//! it is sent, survives a restart (graceful or `kill -9`), and is trimmed
//! once delivered.
//!
//! Shape: one queue per delivery lane, so each lane reads its events in the
//! order they were accepted. On disk a lane is a folder of segment files
//! (`lane-007/00000000000000000042.seg`, named by their first sequence
//! number) and a `cursor` file holding the first sequence number not yet
//! delivered. A record is `len u32 | crc32 u32 | seq u64 | enqueued_ms u64 |
//! kind u8 | [client u32] | body`, all big-endian; `client` is there when
//! the top bit of `kind` is set (records written before it existed lack
//! it); `len` counts from `seq` to the end and the CRC covers the same
//! bytes, so a torn write at a crash is found and cut off at the next
//! start.
//!
//! Who does what:
//! - [`Spool::push`] (the MQTT path, via the WebHook handler) only appends
//!   to an in-memory pending list and signals; it never touches the disk and
//!   never waits.
//! - One writer thread takes everything pending at once, appends it to the
//!   lanes' segment files, fsyncs according to [`Fsync`] (group commit), and
//!   only then makes the records visible to the lanes. It also deletes
//!   delivered segments, writes cursors and enforces the size limit by
//!   dropping the oldest segment of the fullest lane (counted and logged).
//! - Each lane's [`LaneReader`] reads committed records in order (from the
//!   page cache, sequentially) and [`LaneReader::ack`]s delivered ones.
//!
//! In memory-only mode the same structure keeps the records in memory and
//! nothing survives a restart.
//!
//! The spool must never block [`Spool::push`] on I/O, never hand a lane a
//! record before it is committed, and never reorder a lane.

use bytes::{Buf, Bytes};
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, IoSlice, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Bytes of a record before its body: len, crc, seq, enqueued_ms, kind.
const HEADER: usize = 4 + 4 + 8 + 8 + 1;
/// Bytes covered by `len` besides the body (and the client).
const LEN_FIXED: usize = 8 + 8 + 1;
/// Bytes of the client field.
const CLIENT: usize = 4;
/// Set in the stored `kind` byte when the client field follows.
const HAS_CLIENT: u8 = 0x80;
/// Refuse records claiming more than this (a corrupt length field).
const MAX_RECORD: usize = 64 * 1024 * 1024;
/// Most bytes accepted and waiting in memory for the writer thread.
const PENDING_MAX: u64 = 64 << 20;
/// How long the writer lets events gather after a commit before it takes
/// the next group: a bound on the commits per second, so each carries many
/// events under load.
const GROUP_COMMIT: Duration = Duration::from_millis(1);
/// How often the writer trims delivered segments at the latest.
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// How often the writer persists lane cursors (and at close). A cursor
/// lost in a crash only means resending what was delivered since.
const CURSOR_INTERVAL: Duration = Duration::from_secs(1);
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

/// One spooled event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The lane it belongs to.
    pub lane: usize,
    /// Its position in the lane (unique per spool and lane, across restarts).
    pub seq: u64,
    /// When it was accepted, ms since the epoch (for a maximum event age).
    pub enqueued_ms: u64,
    /// The caller's event kind tag (for per-kind metrics), below 0x80.
    pub kind: u8,
    /// Identifies the client the event is about (a hash: two clients may
    /// share one; `None` for records from before it was kept, which must
    /// be taken as anyone's).
    pub client: Option<u32>,
    /// The request body.
    pub body: Bytes,
}

impl Record {
    /// Bytes the record takes in a segment file.
    pub fn stored_len(&self) -> u64 {
        let client = if self.client.is_some() { CLIENT } else { 0 };
        (HEADER + client + self.body.len()) as u64
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

/// A segment file as the lane's bookkeeping knows it.
#[derive(Debug)]
struct Segment {
    /// Sequence number of its first record.
    first_seq: u64,
    /// One past its last committed record.
    end_seq: u64,
    /// Committed bytes.
    len: u64,
    /// Its file.
    path: PathBuf,
}

/// One lane's shared state.
#[derive(Debug, Default)]
struct Lane {
    /// First sequence number not yet delivered.
    acked: u64,
    /// Whether `acked` changed since the cursor file was written.
    cursor_dirty: bool,
    /// One past the last committed record.
    committed: u64,
    /// Disk mode: segments, oldest first; the last is the one being written.
    segments: VecDeque<Segment>,
    /// Memory mode (or a failed disk write): committed records not yet
    /// delivered, held only here.
    memory: VecDeque<Record>,
    /// Disk mode: the newest committed records, also on disk, so readers
    /// that keep up need not read them back; bounded by `cache_bytes`.
    cache: VecDeque<Record>,
    /// Bytes held by `cache`.
    cache_bytes: u64,
    /// Bytes held by this lane (undelivered records, as encoded).
    bytes: u64,
    /// Readers skip records below this (dropped for space).
    floor: u64,
    /// The reader's position: records below it were handed out (being
    /// delivered), so dropping them for space loses nothing.
    read: u64,
}

/// Something accepted and not yet written.
struct Pending {
    lane: usize,
    kind: u8,
    client: u32,
    enqueued_ms: u64,
    body: Bytes,
}

impl Pending {
    fn stored_len(&self) -> u64 {
        (HEADER + CLIENT + self.body.len()) as u64
    }
}

/// State shared by the pushers, the writer thread and the readers.
struct Shared {
    options: SpoolOptions,
    /// Unique id of this spool (kept on disk), for event ids.
    id: String,
    lanes: Vec<Mutex<Lane>>,
    /// Wakes the lane's reader when records were committed.
    lane_wake: Vec<Notify>,
    /// Accepted, not yet written.
    pending: Mutex<PendingList>,
    /// Wakes the writer.
    writer_wake: Condvar,
    /// Set when the spool is closing: the writer writes what is pending and
    /// exits.
    closing: AtomicBool,
    /// Counters.
    stats: SpoolStats,
    /// Size of a segment before a new one is started.
    segment_bytes: u64,
    /// Most bytes waiting in memory for the writer: if the disk cannot keep
    /// up, memory stays bounded and the oldest pending events are dropped.
    pending_limit: u64,
    /// Most bytes of a lane's read cache (disk mode).
    cache_limit: u64,
}

#[derive(Default)]
struct PendingList {
    items: VecDeque<Pending>,
    bytes: u64,
    /// The writer is waiting for work: the next push must wake it. While
    /// it works (or lingers to gather a group), pushes need not.
    idle: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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

fn lane_dir(dir: &Path, lane: usize) -> PathBuf {
    dir.join(format!("lane-{lane:03}"))
}

fn segment_path(lane_dir: &Path, first_seq: u64) -> PathBuf {
    lane_dir.join(format!("{first_seq:020}.seg"))
}

/// The spool id stored in `dir/spool.id`, created on first use.
fn spool_id(dir: &Path) -> Result<String, SpoolError> {
    let path = dir.join("spool.id");
    match fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        _ => {
            let id = random_id();
            write_atomically(&path, id.as_bytes(), true).map_err(io_err(&path))?;
            Ok(id)
        }
    }
}

/// A short id unlikely to repeat: time, process id and a counter hashed.
fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.write_u64(COUNT.fetch_add(1, Ordering::Relaxed));
    format!("{:012x}", h.finish() & 0xFFFF_FFFF_FFFF)
}

/// Replaces `path` with `data` (write a temporary file, rename it over);
/// `sync` fsyncs the data first.
fn write_atomically(path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        if sync {
            f.sync_all()?;
        }
    }
    fs::rename(&tmp, path)
}

/// Rebuilds a lane's bookkeeping from its folder: the cursor, then every
/// segment scanned record by record; a torn tail is cut off, segments
/// entirely delivered are deleted.
fn recover_lane(dir: &Path, lane: &mut Lane) -> Result<(), SpoolError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let cursor_path = dir.join("cursor");
    lane.acked = fs::read_to_string(&cursor_path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let mut names: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let path = e.path();
            let first = path
                .file_name()?
                .to_str()?
                .strip_suffix(".seg")?
                .parse()
                .ok()?;
            Some((first, path))
        })
        .collect();
    names.sort();
    let mut next = lane.acked;
    for (first_seq, path) in names {
        let (end_seq, len) = scan_segment(&path, first_seq)?;
        if end_seq <= lane.acked || end_seq == first_seq {
            fs::remove_file(&path).map_err(io_err(&path))?;
            continue;
        }
        lane.bytes += len;
        next = next.max(end_seq);
        lane.segments.push_back(Segment {
            first_seq,
            end_seq,
            len,
            path,
        });
    }
    lane.committed = next;
    lane.floor = lane.segments.front().map_or(next, |s| s.first_seq);
    if lane.acked < lane.floor {
        lane.acked = lane.floor;
    }
    Ok(())
}

/// Validates a segment's records; truncates a torn or corrupt tail.
/// Returns one past the last good sequence number and the good length.
fn scan_segment(path: &Path, first_seq: u64) -> Result<(u64, u64), SpoolError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut reader = BufReader::new(file);
    let mut good_len = 0u64;
    let mut expected = first_seq;
    while let Ok(Some(record)) = read_record(&mut reader, 0) {
        if record.seq != expected {
            break;
        }
        expected += 1;
        good_len += record.stored_len();
    }
    let actual = fs::metadata(path).map_err(io_err(path))?.len();
    if actual != good_len {
        tracing::warn!(path = %path.display(), kept = good_len, found = actual, "webhook spool: cutting a torn or corrupt segment tail");
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        f.set_len(good_len).map_err(io_err(path))?;
        f.sync_all().map_err(io_err(path))?;
    }
    Ok((expected, good_len))
}

/// Reads one record; `Ok(None)` at a clean end of file, `Err` for a torn or
/// corrupt one.
fn read_record(r: &mut impl Read, lane: usize) -> io::Result<Option<Record>> {
    let mut head = [0u8; 8];
    match r.read_exact(&mut head[..4]) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut head[4..])?;
    let mut h = &head[..];
    let len = h.get_u32() as usize;
    let crc = h.get_u32();
    if !(LEN_FIXED..=MAX_RECORD).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad record length",
        ));
    }
    let mut data = vec![0u8; len];
    r.read_exact(&mut data)?;
    if crc32(&data) != crc {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad record checksum",
        ));
    }
    let mut data = Bytes::from(data);
    let seq = data.get_u64();
    let enqueued_ms = data.get_u64();
    let kind = data.get_u8();
    let client = if kind & HAS_CLIENT != 0 {
        if data.len() < CLIENT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "record too short for its client field",
            ));
        }
        Some(data.get_u32())
    } else {
        None
    };
    Ok(Some(Record {
        lane,
        seq,
        enqueued_ms,
        kind: kind & !HAS_CLIENT,
        client,
        body: data,
    }))
}

/// Appends a record's header (everything before the body, which is
/// written from its own buffer, not copied here).
fn encode_head(out: &mut Vec<u8>, seq: u64, p: &Pending) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&p.enqueued_ms.to_be_bytes());
    out.push(p.kind | HAS_CLIENT);
    out.extend_from_slice(&p.client.to_be_bytes());
    let len = (out.len() - start - 8 + p.body.len()) as u32;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out[start + 8..]);
    crc.update(&p.body);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.finalize().to_be_bytes());
}

/// Bytes of the header [`encode_head`] writes.
const HEAD: usize = HEADER + CLIENT;

/// CRC-32 (IEEE 802.3, reflected, as zlib computes it), hardware-assisted
/// where the CPU has it (the writer checksums every record it writes).
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// The writer thread's own state: open segment files per lane.
struct Writer {
    shared: Arc<Shared>,
    /// The segment being appended to, per lane (disk mode).
    active: Vec<Option<File>>,
    /// Whether a lane's file was written since the last fsync.
    dirty: Vec<bool>,
    last_fsync: Instant,
    last_housekeeping: Instant,
    last_cursor: Instant,
    /// Reused buffers for record headers, one per lane.
    buffers: Vec<Vec<u8>>,
    /// One failure log line per interval, not per write.
    last_error_log: Option<Instant>,
}

impl Writer {
    fn new(shared: Arc<Shared>) -> Writer {
        let n = shared.lanes.len();
        Writer {
            shared,
            active: (0..n).map(|_| None).collect(),
            dirty: vec![false; n],
            last_fsync: Instant::now(),
            last_housekeeping: Instant::now(),
            last_cursor: Instant::now(),
            buffers: (0..n).map(|_| Vec::new()).collect(),
            last_error_log: None,
        }
    }

    fn run(mut self) {
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
        let quiet = self
            .last_error_log
            .is_some_and(|t| t.elapsed() < Duration::from_secs(10));
        if !quiet {
            tracing::error!(error = %e, "webhook spool: write failed; keeping events in memory");
            self.last_error_log = Some(Instant::now());
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
            let quiet = self
                .last_error_log
                .is_some_and(|t| t.elapsed() < Duration::from_secs(10));
            if !quiet {
                tracing::warn!(
                    dropped_total = shared.stats.dropped.load(Ordering::Relaxed),
                    max_bytes = max,
                    "webhook spool full: dropping the oldest events"
                );
                self.last_error_log = Some(Instant::now());
            }
        }
    }
}

/// Reads one lane's records in order and acknowledges delivered ones.
pub struct LaneReader {
    shared: Arc<Shared>,
    lane: usize,
    /// Sequence number of the next record to hand out.
    next: u64,
    /// Disk mode: the segment being read.
    file: Option<SegmentReader>,
}

/// An open segment and where in it the reader is.
struct SegmentReader {
    /// The segment's first sequence number (which segment this is).
    first_seq: u64,
    /// Sequence number of the record at the read position.
    at: u64,
    reader: BufReader<File>,
}

impl SegmentReader {
    /// Moves forward, record by record without reading bodies, to `seq`.
    fn skip_to(&mut self, seq: u64) -> io::Result<()> {
        while self.at < seq {
            let mut head = [0u8; 8];
            self.reader.read_exact(&mut head)?;
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            self.reader.seek_relative(i64::from(len))?;
            self.at += 1;
        }
        Ok(())
    }
}

/// The record numbered `seq` in a lane's in-memory list (sorted by seq).
fn find(records: &VecDeque<Record>, seq: u64) -> Option<Record> {
    records
        .binary_search_by_key(&seq, |r| r.seq)
        .ok()
        .and_then(|i| records.get(i).cloned())
}

/// Drops records below `seq` from the front of an in-memory list; returns
/// the bytes they held.
fn trim_front(records: &mut VecDeque<Record>, seq: u64) -> u64 {
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
    /// spool is closed and this lane has nothing more.
    pub async fn next(&mut self) -> Option<Record> {
        let shared = self.shared.clone();
        loop {
            // Registered before looking, so a commit in between still wakes us.
            let wake = shared.lane_wake[self.lane].notified();
            match self.try_next() {
                Ok(Some(record)) => return Some(record),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(lane = self.lane, error = %e, "webhook spool: cannot read a record; skipping the rest of its segment");
                    self.skip_segment();
                    continue;
                }
            }
            if self.shared.closing.load(Ordering::Acquire) {
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
            // Nothing holds it (dropped for space meanwhile): move on.
            self.next += 1;
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
        file.at += 1;
        match read {
            Some(record) if record.seq == self.next => Ok(Some(record)),
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

/// Subtracts without wrapping below zero.
fn sub(counter: &AtomicU64, n: u64) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(n))
    });
}
