//! The spool keeps every accepted event, per lane in order, across a
//! reopen; trims what was acknowledged; cuts a torn tail; and drops the
//! oldest events, counted, at its size limit.

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
        for i in 0..total {
            let mut payload = format!("{i:>8}").into_bytes();
            payload.resize(1000, b'x');
            spool.push(0, 1, 0, Bytes::from(payload));
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
        assert!(seen.len() < total as usize - 100, "older ones dropped");
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
    assert_eq!(
        readers[0].try_next().unwrap(),
        None,
        "nothing more than was pushed"
    );
    spool.close();
}
