//! The spool keeps every accepted event, per lane in order, across a
//! reopen; trims what was acknowledged; cuts a torn tail; and drops the
//! oldest events, counted, at its size limit.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

use bytes::Bytes;
use herald_webhook::spool::{Fsync, LaneReader, Record, Spool, SpoolOptions};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A fresh folder under the system temp dir, removed when dropped.
struct TempDir(PathBuf);
impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "herald-spool-{name}-{}-{:?}",
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

fn options(dir: Option<PathBuf>, lanes: usize) -> SpoolOptions {
    SpoolOptions {
        dir,
        lanes,
        max_bytes: 64 << 20,
        fsync: Fsync::Always,
        cache_bytes: 16 << 20,
        memory_limit: 64 << 20,
        group_commit: herald_webhook::spool::GROUP_COMMIT,
    }
}

async fn next(reader: &mut LaneReader) -> Record {
    tokio::time::timeout(Duration::from_secs(10), reader.next())
        .await
        .expect("a record within the wait")
        .expect("spool open")
}

fn body(lane: usize, i: usize) -> Bytes {
    Bytes::from(format!("{{\"lane\":{lane},\"i\":{i}}}"))
}

#[tokio::test]
async fn memory_lanes_deliver_in_order() {
    let (spool, mut readers) = Spool::open(options(None, 3)).unwrap();
    for i in 0..50 {
        for lane in 0..3 {
            spool.push(lane as u64, 1, 0, body(lane, i));
        }
    }
    for (lane, reader) in readers.iter_mut().enumerate() {
        for i in 0..50 {
            let r = next(reader).await;
            assert_eq!(r.lane, lane);
            assert_eq!(r.seq, i as u64);
            assert_eq!(r.body, body(lane, i));
            reader.ack(r.seq);
        }
    }
    assert_eq!(spool.stats().bytes.load(Ordering::Relaxed), 0);
    assert_eq!(spool.depth(0), 0);
    spool.close();
}

#[tokio::test]
async fn disk_spool_survives_reopen_and_forgets_acked() {
    let dir = TempDir::new("reopen");
    {
        let (spool, mut readers) = Spool::open(options(Some(dir.0.clone()), 2)).unwrap();
        for i in 0..100 {
            spool.push((i % 2) as u64, 7, 1000 + i as u64, body(i % 2, i));
        }
        // Deliver the first 10 of lane 0 only.
        for _ in 0..10 {
            let r = next(&mut readers[0]).await;
            readers[0].ack(r.seq);
        }
        // Lane 1: read 5 but acknowledge none (a crash before delivery).
        for _ in 0..5 {
            next(&mut readers[1]).await;
        }
        spool.close();
    }
    let (spool, mut readers) = Spool::open(options(Some(dir.0.clone()), 2)).unwrap();
    let r = next(&mut readers[0]).await;
    assert_eq!(
        (r.seq, r.kind),
        (10, 7),
        "lane 0 resumes after its acked records"
    );
    assert_eq!(r.body, body(0, 20));
    assert_eq!(r.enqueued_ms, 1020);
    let r = next(&mut readers[1]).await;
    assert_eq!(
        r.seq, 0,
        "lane 1 starts again at its first unacknowledged record"
    );
    assert_eq!(r.body, body(1, 1));
    // New events continue the sequence after the recovered ones.
    spool.push(0, 1, 0, Bytes::from_static(b"new"));
    let mut last = None;
    for _ in 11..=50 {
        last = Some(next(&mut readers[0]).await);
    }
    let last = last.unwrap();
    assert_eq!((last.seq, &last.body[..]), (50, &b"new"[..]));
    spool.close();
}

#[tokio::test]
async fn torn_tail_is_cut_and_earlier_records_kept() {
    let dir = TempDir::new("torn");
    {
        let (spool, _readers) = Spool::open(options(Some(dir.0.clone()), 1)).unwrap();
        for i in 0..5 {
            spool.push(0, 1, 0, body(0, i));
        }
        spool.close();
    }
    let lane_dir = dir.0.join("lane-000");
    let seg = std::fs::read_dir(&lane_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .expect("a segment");
    // A crash mid-write: half a record header and some garbage.
    let mut data = std::fs::read(&seg).unwrap();
    data.extend_from_slice(&[0, 0, 0, 40, 1, 2]);
    std::fs::write(&seg, &data).unwrap();
    let (spool, mut readers) = Spool::open(options(Some(dir.0.clone()), 1)).unwrap();
    for i in 0..5 {
        assert_eq!(next(&mut readers[0]).await.body, body(0, i));
    }
    spool.push(0, 1, 0, Bytes::from_static(b"after"));
    assert_eq!(&next(&mut readers[0]).await.body[..], b"after");
    spool.close();
}

#[tokio::test]
async fn full_spool_drops_oldest_and_counts() {
    for dir in [None, Some(TempDir::new("full"))] {
        let mut opts = options(dir.as_ref().map(|d| d.0.clone()), 1);
        opts.max_bytes = 256 * 1024;
        let (spool, mut readers) = Spool::open(opts).unwrap();
        let total = 2000u64;
        let mut last = None;
        for i in 0..total {
            let mut payload = format!("{i:>8}").into_bytes();
            payload.resize(1000, b'x');
            last = spool.push_held(0, 1, 0, Bytes::from(payload)).ok();
        }
        // Everything written before the lane starts reading, so the limit
        // has to drop some.
        let last = last.expect("taken");
        tokio::time::timeout(Duration::from_secs(10), spool.wait_written(last))
            .await
            .expect("written within the wait");
        assert!(spool.written(last));
        // ... and the limit enforced on them (the writer does that after
        // publishing a group).
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while spool.stats().bytes.load(Ordering::Relaxed) > 256 * 1024 {
            assert!(std::time::Instant::now() < until, "the limit is enforced");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Read until the last event pushed (the newest is never dropped).
        let mut seen = Vec::new();
        loop {
            let r = next(&mut readers[0]).await;
            let index: u64 = std::str::from_utf8(&r.body[..8])
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            seen.push(index);
            readers[0].ack(r.seq);
            if index == total - 1 {
                break;
            }
        }
        let dropped = spool.stats().dropped.load(Ordering::Relaxed);
        assert!(dropped > 0, "some events dropped at the limit");
        assert_eq!(
            seen.len() as u64 + dropped,
            total,
            "every event delivered or counted as dropped"
        );
        // The oldest went first: what is dropped is always the oldest the
        // lane has not taken yet, so the lane sees its events in order and
        // the newest (those that fit in the limit) all arrive.
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order");
        let newest = total - 100..total;
        assert!(
            newest.clone().all(|i| seen.contains(&i)),
            "the newest 100 all delivered"
        );
        // (How many older ones go depends on how the writer grouped the
        // pushes: it drops whole segments, and one group may fill a
        // segment past the limit; `dropped > 0` above says some went.)
        spool.close();
    }
}

/// A lane that falls behind the in-memory cache of recent records reads
/// the rest from its segment files, and switches between the two as it
/// catches up and falls behind again, without losing or reordering any.
#[tokio::test]
async fn lanes_read_the_disk_where_the_cache_ends() {
    let dir = TempDir::new("cache");
    let mut opts = options(Some(dir.0.clone()), 1);
    // About 100 of these records.
    opts.cache_bytes = 4096;
    let (spool, mut readers) = Spool::open(opts).unwrap();
    let (mut pushed, mut read) = (0usize, 0usize);
    // Bursts bigger and smaller than the cache, each partly read.
    for (burst, take) in [(200, 10), (5, 100), (300, 50), (1, 346)] {
        for _ in 0..burst {
            spool.push(0, 1, 0, body(0, pushed));
            pushed += 1;
        }
        for _ in 0..take {
            let r = next(&mut readers[0]).await;
            assert_eq!(r.seq, read as u64);
            assert_eq!(r.body, body(0, read));
            read += 1;
            if read % 7 == 0 {
                readers[0].ack(r.seq);
            }
        }
    }
    assert_eq!(read, pushed);
    assert_eq!(readers[0].try_next(), None, "nothing more than was pushed");
    readers[0].ack(read as u64 - 1);
    assert_eq!(spool.depth(0), 0, "nothing committed beyond what was read");
    spool.close();
}

/// Writes `n` events (bodies `body(0, i)`) to a one-lane disk spool in
/// `dir`, closes it, and returns its one segment file.
fn spool_of(dir: &TempDir, n: usize) -> PathBuf {
    let (spool, _readers) = Spool::open(options(Some(dir.0.clone()), 1)).unwrap();
    for i in 0..n {
        spool.push(0, 1, 0, body(0, i));
    }
    spool.close();
    std::fs::read_dir(dir.0.join("lane-000"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .expect("a segment")
}

/// Byte offset of record `i` in a segment of `body(0, _)` records (each
/// record: 29 bytes of header and client, then its body).
fn offset_of(i: usize) -> usize {
    (0..i).map(|j| 29 + body(0, j).len()).sum()
}

/// Reopens the spool and reads every record it hands out, acknowledging
/// each; returns their indexes (from the body) and the corrupt count.
async fn reopen_and_read(dir: &TempDir, expected: usize) -> (Vec<usize>, u64) {
    let (spool, mut readers) = Spool::open(options(Some(dir.0.clone()), 1)).unwrap();
    let mut seen = Vec::new();
    for _ in 0..expected {
        let r = next(&mut readers[0]).await;
        let text = String::from_utf8(r.body.to_vec()).unwrap();
        let i = text
            .rsplit(':')
            .next()
            .and_then(|t| t.trim_end_matches('}').parse().ok())
            .unwrap();
        seen.push(i);
        readers[0].ack(r.seq);
    }
    // Nothing more: once sealed, the reader ends where the data ends.
    spool.mark_sealed();
    let more = tokio::time::timeout(Duration::from_secs(10), readers[0].next())
        .await
        .expect("the sealed lane ends");
    assert!(more.is_none(), "more than expected: {more:?}");
    let corrupt = spool.stats().corrupt.load(Ordering::Relaxed);
    spool.close();
    (seen, corrupt)
}

/// One byte flipped in the middle of a segment (in a record's body, then
/// in a record's length field): only that record is lost, and counted;
/// every record after it is read.
#[tokio::test]
async fn a_flipped_byte_costs_one_record() {
    for (name, within) in [("body", 29 + 3), ("length", 2)] {
        let dir = TempDir::new(&format!("flip-{name}"));
        let seg = spool_of(&dir, 1000);
        let mut data = std::fs::read(&seg).unwrap();
        data[offset_of(500) + within] ^= 0x5a;
        std::fs::write(&seg, &data).unwrap();
        let (seen, corrupt) = reopen_and_read(&dir, 999).await;
        let expected: Vec<usize> = (0..1000).filter(|&i| i != 500).collect();
        assert_eq!(seen, expected, "{name}: all but record 500, in order");
        assert_eq!(corrupt, 1, "{name}: the lost record is counted");
    }
}

/// A segment cut in the middle of its last record: the others are kept,
/// the cut one is counted.
#[tokio::test]
async fn a_truncated_record_costs_itself() {
    let dir = TempDir::new("truncate");
    let seg = spool_of(&dir, 100);
    let cut = offset_of(99) + 20;
    let file = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    file.set_len(cut as u64).unwrap();
    drop(file);
    let (seen, corrupt) = reopen_and_read(&dir, 99).await;
    assert_eq!(seen, (0..99).collect::<Vec<_>>());
    assert_eq!(corrupt, 1);
}

/// A cursor that is garbage, or points beyond the data, is not trusted:
/// the lane is delivered again from its oldest record (never skipped).
#[tokio::test]
async fn a_bad_cursor_never_skips_the_lane() {
    for cursor in ["garbage\n", "99999"] {
        let dir = TempDir::new("cursor");
        spool_of(&dir, 50);
        std::fs::write(dir.0.join("lane-000").join("cursor"), cursor).unwrap();
        let (seen, _) = reopen_and_read(&dir, 50).await;
        assert_eq!(seen, (0..50).collect::<Vec<_>>(), "cursor {cursor:?}");
    }
}

/// A lane's disk reads never run on the async task that asks: a segment
/// whose reading blocks (a FIFO put in its place, opened by nobody yet)
/// holds up that lane alone, while the runtime's only thread goes on
/// running everything else (here: the timer of a timeout); once the data
/// comes, the lane gets every record, in order (the read that was under
/// way when its wait was cancelled is taken up again, not repeated).
#[test]
fn a_blocked_disk_read_leaves_the_runtime_running() {
    let dir = TempDir::new("fifo");
    let segment = spool_of(&dir, 50);
    let data = std::fs::read(&segment).unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let fifo = segment.clone();
    let spool_dir = dir.0.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            // Opened (recovered) from the real file; then the file is
            // swapped for a FIFO: the lane's cache is empty, so its
            // first record must come from there.
            let (spool, mut readers) = Spool::open(options(Some(spool_dir.clone()), 1)).unwrap();
            let tmp = spool_dir.join("fifo.tmp");
            let made = std::process::Command::new("mkfifo")
                .arg(&tmp)
                .status()
                .unwrap();
            assert!(made.success(), "mkfifo");
            std::fs::rename(&tmp, &fifo).unwrap();
            let waited = tokio::time::timeout(Duration::from_millis(200), readers[0].next()).await;
            assert!(waited.is_err(), "nothing can be read yet: {waited:?}");
            done_tx.send("runtime ran on").unwrap();
            let mut seen = Vec::new();
            for _ in 0..50 {
                seen.push(next(&mut readers[0]).await.seq);
            }
            assert_eq!(seen, (0..50).collect::<Vec<u64>>());
            done_tx.send("read").unwrap();
            tokio::task::spawn_blocking(move || spool.close())
                .await
                .unwrap();
        });
    });
    let first = done_rx.recv_timeout(Duration::from_secs(20));
    // Whatever happened, give the FIFO its data (this also unblocks a
    // runtime stuck in the read).
    let mut writer = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    std::io::Write::write_all(&mut writer, &data).unwrap();
    drop(writer);
    assert_eq!(
        first,
        Ok("runtime ran on"),
        "the runtime's thread was blocked by the lane's disk read"
    );
    assert_eq!(done_rx.recv_timeout(Duration::from_secs(20)), Ok("read"));
}

/// The spool's files are its owner's alone: folders 0700, the segment,
/// cursor and id files 0600 (issue 12, item 7).
#[cfg(unix)]
#[tokio::test]
async fn spool_files_and_folders_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("modes");
    let spool_dir = dir.0.join("webhook");
    let (spool, mut readers) = Spool::open(options(Some(spool_dir.clone()), 1)).unwrap();
    spool.push(0, 1, 0, body(0, 0));
    spool.push(0, 1, 0, body(0, 1));
    let first = next(&mut readers[0]).await;
    readers[0].ack(first.seq);
    let close = spool.clone();
    tokio::task::spawn_blocking(move || close.close())
        .await
        .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let lane = spool_dir.join("lane-000");
    assert_eq!(mode(&spool_dir), 0o700, "{}", spool_dir.display());
    assert_eq!(mode(&lane), 0o700, "{}", lane.display());
    let mut files = 0;
    for entry in std::fs::read_dir(&lane).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        files += 1;
    }
    assert!(files >= 2, "a segment and the cursor");
    let id = spool_dir.join("spool.id");
    assert_eq!(mode(&id), 0o600, "{}", id.display());
}

/// A publisher waiting for its event does not wait for the group commit
/// interval: with an interval of an hour, the second event (pushed while
/// the writer lets a group gather after the first) is written as soon as
/// someone waits for it.
#[tokio::test]
async fn a_waiting_publisher_cuts_the_gathering_short() {
    for dir in [None, Some(TempDir::new("hurry"))] {
        let mut opts = options(dir.as_ref().map(|d| d.0.clone()), 2);
        opts.group_commit = Duration::from_secs(3600);
        let (spool, _readers) = Spool::open(opts).unwrap();
        for i in 0..3 {
            let ticket = spool.push_held(1, 1, 0, body(1, i)).unwrap();
            tokio::time::timeout(Duration::from_secs(10), spool.wait_written(ticket))
                .await
                .expect("written while the writer gathers, because someone waits");
            assert!(spool.written(ticket));
        }
        spool.close();
    }
}
