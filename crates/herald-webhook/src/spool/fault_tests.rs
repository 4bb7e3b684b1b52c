//! The spool's writer over a failing disk ([`super::disk`]): a full disk
//! (writes cut short, then ENOSPC), EIO, a failing fsync. Runs anywhere,
//! without root (the tmpfs test in `tests/spool_disk_full.rs` is the real
//! filesystem's counterpart and needs root).
//!
//! What must hold while the disk fails: no acknowledgement (tickets stay
//! unwritten), nothing counted as committed or handed to a lane, the state
//! visible (`healthy`, counters), one clear log line for the trouble (not
//! one per attempt); beyond the memory limit, publishers waiting for their
//! event are refused. Once the fault clears: everything accepted is written
//! and delivered, each lane in order, and the files hold exactly that (the
//! bytes of a cut-short write do not survive as damage or duplicates).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion
#![allow(clippy::needless_range_loop)] // lanes are numbers here: pushed to by number, read by number

use super::disk::{Disk, Files, SegmentFile};
use super::{Fsync, NotTaken, Spool, SpoolOptions, SpoolStats, Ticket};
use bytes::Bytes;
use std::io::{self, IoSlice};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the disk does now.
#[derive(Debug, Clone, Copy, Default)]
enum Fault {
    /// Works.
    #[default]
    None,
    /// Full: takes this many more bytes (a write is cut short there), then
    /// refuses every write with ENOSPC.
    Full(usize),
    /// Every write fails with EIO.
    Eio,
    /// Writes work; every fsync fails with EIO.
    Fsync,
    /// Writes work; an fsync does not return until the fault changes (a
    /// disk flushing slowly).
    FsyncHangs,
}

/// The fault in force, and the fsyncs begun.
#[derive(Default)]
struct Faults {
    now: Mutex<Fault>,
    changed: std::sync::Condvar,
    fsyncs: std::sync::atomic::AtomicU64,
}

/// Segment files on the real disk, failing as told.
#[derive(Clone, Default)]
struct FailingDisk(Arc<Faults>);

impl FailingDisk {
    fn set(&self, fault: Fault) {
        *self.0.now.lock().unwrap() = fault;
        self.0.changed.notify_all();
    }
}

impl Disk for FailingDisk {
    fn open_segment(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        Ok(Box::new(FailingFile {
            inner: Files.open_segment(path)?,
            fault: self.0.clone(),
        }))
    }
}

struct FailingFile {
    inner: Box<dyn SegmentFile>,
    fault: Arc<Faults>,
}

const ENOSPC: i32 = 28;
const EIO: i32 = 5;

impl SegmentFile for FailingFile {
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut fault = self.fault.now.lock().unwrap();
        match *fault {
            Fault::None | Fault::Fsync | Fault::FsyncHangs => self.inner.write_vectored(bufs),
            Fault::Eio => Err(io::Error::from_raw_os_error(EIO)),
            Fault::Full(0) => Err(io::Error::from_raw_os_error(ENOSPC)),
            Fault::Full(room) => {
                // What fits goes to the file for real, like a filesystem
                // with `room` bytes left.
                let mut part = Vec::new();
                for b in bufs {
                    let take = b.len().min(room - part.len());
                    part.extend_from_slice(&b[..take]);
                    if part.len() == room {
                        break;
                    }
                }
                let n = self.inner.write_vectored(&[IoSlice::new(&part)])?;
                *fault = Fault::Full(room - n);
                Ok(n)
            }
        }
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.fault.fsyncs.fetch_add(1, Ordering::SeqCst);
        let mut fault = self.fault.now.lock().unwrap();
        while matches!(*fault, Fault::FsyncHangs) {
            fault = self.fault.changed.wait(fault).unwrap();
        }
        if matches!(*fault, Fault::Fsync | Fault::Eio) {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        drop(fault);
        self.inner.sync_data()
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }

    fn try_clone(&self) -> io::Result<Box<dyn SegmentFile>> {
        Ok(Box::new(FailingFile {
            inner: self.inner.try_clone()?,
            fault: self.fault.clone(),
        }))
    }
}

/// Log lines, captured for one test (the writer thread logs where its
/// spool's opener does).
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

struct TempDir(PathBuf);
impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "herald-spool-fault-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const LANES: usize = 2;

fn options(dir: &Path) -> SpoolOptions {
    SpoolOptions {
        dir: Some(dir.to_owned()),
        lanes: LANES,
        max_bytes: 64 << 20,
        fsync: Fsync::Always,
        // A cache of a few records: the lanes read the files (what a
        // failed write left there must not be read as records).
        cache_bytes: 0,
        // Room for about 60 of the events below while the disk fails.
        memory_limit: 64 * 1024,
        group_commit: super::GROUP_COMMIT,
    }
}

/// Event `i` of lane `lane`: 1 KiB, numbered.
fn body(lane: usize, i: usize) -> Bytes {
    Bytes::from(format!(
        "{{\"lane\":{lane},\"i\":{i:06},\"pad\":\"{}\"}}",
        "x".repeat(1000)
    ))
}

fn index(body: &[u8]) -> usize {
    let text = std::str::from_utf8(body).unwrap();
    let at = text.find("\"i\":").unwrap() + 4;
    text[at..at + 6].parse().unwrap()
}

/// Polls `f` (the writer is a thread with no event to await for a failed
/// attempt) until it holds or 10 s pass.
fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

async fn written(spool: &Spool, ticket: Ticket) {
    tokio::time::timeout(Duration::from_secs(10), spool.wait_written(ticket))
        .await
        .expect("written within 10 s");
    assert!(spool.written(ticket));
}

/// Pushes event `i` of `lane` waiting for its acknowledgement.
fn push(spool: &Spool, lane: usize, i: usize) -> Result<Ticket, NotTaken> {
    spool.push_held(lane as u64, 1, 0, body(lane, i))
}

/// One fault, start to finish: events accepted before it, during it until
/// refused, and after it; then every accepted one must be read, in order.
async fn survive(fault: Fault, name: &str) {
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _log = tracing::subscriber::set_default(subscriber);
    let dir = TempDir::new(name);
    let disk = FailingDisk::default();
    let stats = Arc::new(SpoolStats::default());
    let (spool, mut readers) =
        Spool::open_on(options(&dir.0), stats.clone(), Arc::new(disk.clone())).unwrap();
    let mut accepted: Vec<Vec<usize>> = vec![Vec::new(); LANES];

    // Before: written, acknowledged.
    for i in 0..20 {
        for lane in 0..LANES {
            let ticket = push(&spool, lane, i).unwrap();
            accepted[lane].push(i);
            written(&spool, ticket).await;
        }
    }
    assert!(spool.healthy());
    let committed = stats.committed.load(Ordering::Relaxed);
    assert_eq!(committed, 40);

    // The disk fails: nothing more is acknowledged or committed.
    disk.set(fault);
    let mut waiting = Vec::new();
    for i in 20..30 {
        for lane in 0..LANES {
            waiting.push(push(&spool, lane, i).unwrap());
            accepted[lane].push(i);
        }
    }
    eventually("three failed attempts", || {
        stats.write_errors.load(Ordering::Relaxed) >= 3
    });
    assert!(!spool.healthy(), "degraded while writes fail");
    assert!(spool.health().is_err(), "/ready says so");
    assert!(
        waiting.iter().all(|&t| !spool.written(t)),
        "no acknowledgement while the disk fails"
    );
    assert_eq!(stats.committed.load(Ordering::Relaxed), committed);

    // Held in memory up to its limit, then refused (counted); events
    // nobody waits for are dropped there (counted).
    let mut i = 30;
    let refused_at = loop {
        match push(&spool, 0, i) {
            Ok(t) => {
                waiting.push(t);
                accepted[0].push(i);
            }
            Err(NotTaken::Refused) => break i,
            Err(other) => panic!("{other:?}"),
        }
        i += 1;
        assert!(i < 200, "never refused: memory not bounded");
    };
    assert!(refused_at > 40, "refused too early, at {refused_at}");
    assert_eq!(stats.refused.load(Ordering::Relaxed), 1);
    spool.push(1, 1, 0, body(1, 999_999));
    assert_eq!(stats.overflow.load(Ordering::Relaxed), 1);
    assert!(waiting.iter().all(|&t| !spool.written(t)));
    assert_eq!(stats.committed.load(Ordering::Relaxed), committed);

    // The lanes get what was committed before, and nothing more.
    for (lane, reader) in readers.iter_mut().enumerate() {
        for want in 0..20 {
            let r = tokio::time::timeout(Duration::from_secs(10), reader.next())
                .await
                .unwrap()
                .unwrap();
            assert_eq!((r.seq, index(&r.body)), (want as u64, want), "lane {lane}");
        }
        assert!(
            reader.try_next().is_none(),
            "lane {lane}: nothing uncommitted"
        );
    }

    // One line said so, however many attempts failed (rate-limited).
    let attempts = stats.write_errors.load(Ordering::Relaxed);
    assert!(attempts >= 3);
    assert_eq!(
        lines.count("webhook spool: cannot write; holding events in memory"),
        1,
        "one line for {attempts} failed attempts"
    );

    // The fault clears: everything held is written, acknowledged, read.
    disk.set(Fault::None);
    for &t in &waiting {
        written(&spool, t).await;
    }
    eventually("healthy again", || spool.healthy());
    assert_eq!(lines.count("webhook spool: writing again"), 1);
    // And the spool takes events normally again.
    for lane in 0..LANES {
        let i = 1000;
        written(&spool, push(&spool, lane, i).unwrap()).await;
        accepted[lane].push(i);
    }
    for (lane, reader) in readers.iter_mut().enumerate() {
        for &want in &accepted[lane][20..] {
            let r = tokio::time::timeout(Duration::from_secs(10), reader.next())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(index(&r.body), want, "lane {lane}: in order");
        }
        assert!(reader.try_next().is_none(), "lane {lane}: nothing else");
    }
    let close = spool.clone();
    tokio::task::spawn_blocking(move || close.close())
        .await
        .unwrap();

    // On disk: exactly what was accepted, in order, no damage (what a
    // cut-short write left was cut back).
    let (spool, mut readers) = Spool::open(options(&dir.0)).unwrap();
    assert_eq!(spool.stats().corrupt.load(Ordering::Relaxed), 0);
    for (lane, reader) in readers.iter_mut().enumerate() {
        for (seq, &want) in accepted[lane].iter().enumerate() {
            let r = tokio::time::timeout(Duration::from_secs(10), reader.next())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                (r.seq, index(&r.body)),
                (seq as u64, want),
                "lane {lane} after reopening"
            );
        }
        assert_eq!(spool.depth(lane), accepted[lane].len() as u64);
    }
    tokio::task::spawn_blocking(move || spool.close())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_withholds_acknowledgements_and_heals() {
    // Room for a record and a half: the first write is cut short.
    survive(Fault::Full(1500), "full").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_errors_withhold_acknowledgements_and_heal() {
    survive(Fault::Eio, "eio").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_fsyncs_withhold_acknowledgements_and_heal() {
    survive(Fault::Fsync, "fsync").await;
}

/// Under `fsync = interval` an event is accepted once written: a disk
/// whose fsync takes long (here: until told) delays no acknowledgement, as
/// the periodic fsync runs on a thread of its own, not the writer's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_fsync_delays_no_acknowledgement_under_interval() {
    let dir = TempDir::new("slow-fsync");
    let disk = FailingDisk::default();
    let mut opts = options(&dir.0);
    opts.fsync = Fsync::Interval(Duration::from_millis(5));
    let (spool, _readers) = Spool::open_on(opts, Arc::default(), Arc::new(disk.clone())).unwrap();
    disk.set(Fault::FsyncHangs);
    // Events until an fsync has begun (and hangs).
    let mut i = 0;
    while disk.0.fsyncs.load(Ordering::SeqCst) == 0 {
        written(&spool, push(&spool, i % LANES, i).unwrap()).await;
        i += 1;
        assert!(i < 100_000, "no fsync began");
        tokio::task::yield_now().await;
    }
    // While it hangs, events are still written and acknowledged.
    for j in 0..50 {
        written(&spool, push(&spool, j % LANES, i + j).unwrap()).await;
    }
    disk.set(Fault::None);
    tokio::task::spawn_blocking(move || spool.close())
        .await
        .unwrap();
}
