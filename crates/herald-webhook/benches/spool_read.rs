//! What a lane's disk reads cost the async tasks around it (issue 12, item
//! 8): lanes that fell behind drain a spool from its segment files (the
//! in-memory cache kept tiny, so every record comes from a file) on a
//! single-threaded runtime, next to a task that stands for the MQTT
//! connections sharing that worker: it yields in a loop and records how
//! long each time it waited to run again. Prints records/s drained and that
//! task's waits (p50, p99, max).
//!
//!     cargo bench -p herald-webhook --bench spool_read
//!
//! Knobs: SPOOL_READ_RECORDS (200000), SPOOL_READ_LANES (8),
//! SPOOL_READ_ROUNDS (5). Not part of CI; a printed figure, never a timed
//! test.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failed unwrap stops it

use bytes::Bytes;
use herald_webhook::spool::{Fsync, Spool, SpoolOptions};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn options(dir: PathBuf, lanes: usize) -> SpoolOptions {
    SpoolOptions {
        dir: Some(dir),
        lanes,
        max_bytes: 8 << 30,
        fsync: Fsync::Never,
        // Every record read back from its segment file.
        cache_bytes: 0,
        memory_limit: 1 << 30,
        group_commit: herald_webhook::spool::GROUP_COMMIT,
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let records = env("SPOOL_READ_RECORDS", 200_000);
    let lanes = env("SPOOL_READ_LANES", 8);
    let rounds = env("SPOOL_READ_ROUNDS", 5);
    let dir = std::env::temp_dir().join(format!("herald-spool-read-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // A spool of `records` events of about 300 bytes, spread over the lanes.
    {
        let (spool, _readers) = Spool::open(options(dir.clone(), lanes)).unwrap();
        let pad = "x".repeat(256);
        for i in 0..records {
            let body = Bytes::from(format!("{{\"i\":{i},\"pad\":\"{pad}\"}}"));
            spool.push(i as u64, 1, 0, body);
        }
        spool.close();
    }
    println!(
        "spool_read: {records} records of ~300 B in {lanes} lanes, read from their files; {rounds} rounds"
    );
    for round in 1..=rounds {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (drained, waits) = rt.block_on(async {
            // Nothing is acknowledged (so nothing is trimmed): each round
            // reads everything again.
            let (spool, readers) = Spool::open(options(dir.clone(), lanes)).unwrap();
            let done = Arc::new(AtomicBool::new(false));
            let ticker_done = done.clone();
            let ticker = tokio::spawn(async move {
                let mut waits = Vec::with_capacity(1 << 20);
                while !ticker_done.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    tokio::task::yield_now().await;
                    waits.push(t.elapsed().as_nanos() as u64);
                }
                waits
            });
            let started = Instant::now();
            let tasks: Vec<_> = readers
                .into_iter()
                .map(|mut reader| {
                    let want = spool.depth(reader.lane());
                    tokio::spawn(async move {
                        let mut n = 0u64;
                        while n < want {
                            if reader.next().await.is_none() {
                                break;
                            }
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap();
            }
            let elapsed = started.elapsed();
            done.store(true, Ordering::Relaxed);
            let mut waits = ticker.await.unwrap();
            waits.sort_unstable();
            assert_eq!(total, records as u64, "every record read");
            let close = spool.clone();
            tokio::task::spawn_blocking(move || close.close())
                .await
                .unwrap();
            (total as f64 / elapsed.as_secs_f64(), waits)
        });
        println!(
            "round {round}: drained {:.0} records/s; the other task waited p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs ({} waits)",
            drained,
            percentile(&waits, 50.0) as f64 / 1e3,
            percentile(&waits, 99.0) as f64 / 1e3,
            waits.last().copied().unwrap_or(0) as f64 / 1e3,
            waits.len()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
