//! A real full disk under the spool: a 4 MiB tmpfs (mounted by the test
//! when it runs as root, as CI does; skipped with a printed line
//! otherwise). Writes fail, events are held in memory and their tickets
//! stay unwritten (so a publisher is not acknowledged), beyond the memory
//! limit events a publisher waits for are refused; once the lane drains,
//! the space comes back (no deleted segment is kept open), the spool
//! writes again by itself, and what it held reaches the disk.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

use bytes::Bytes;
use herald_webhook::spool::{Fsync, NotTaken, Spool, SpoolOptions, Ticket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// A tmpfs of `size` mounted on a fresh folder, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(name: &str, size: &str) -> Option<Tmpfs> {
        let root = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&root.stdout).trim() != "0" {
            return None;
        }
        let dir = std::env::temp_dir().join(format!("herald-{name}-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a failed test may leave the spool's files open.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// KiB used on the filesystem holding `dir` (what `df` says: deleted files
/// still open count).
fn used_kib(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-k", "--output=used"])
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("df: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("df output: {:?}", out))
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < until, "{what} within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_holds_refuses_and_recovers() {
    let Some(fs) = Tmpfs::mount("spool-full", "4m") else {
        println!(
            "SKIPPED full_disk_holds_refuses_and_recovers: needs root to mount a tmpfs (CI runs it as root)"
        );
        return;
    };
    let dir = fs.0.join("webhook");
    let (spool, mut readers) = Spool::open(SpoolOptions {
        dir: Some(dir.clone()),
        lanes: 1,
        max_bytes: 1 << 30,
        fsync: Fsync::Always,
        cache_bytes: 1 << 20,
        memory_limit: 1 << 20,
        group_commit: herald_webhook::spool::GROUP_COMMIT,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let body = Bytes::from(vec![b'x'; 4000]);

    // Fill the disk: tickets stop being written, the spool says so.
    let mut tickets: Vec<Ticket> = Vec::new();
    let mut refused = false;
    for _ in 0..10_000 {
        // As a publishing connection does: at most 1,000 acknowledgements
        // outstanding (more than the memory limit holds).
        if let Some(t) = tickets.len().checked_sub(1000).map(|i| tickets[i]) {
            wait_until("a window slot or trouble", || {
                spool.written(t) || !spool.healthy()
            });
        }
        match spool.push_held(7, 1, 0, body.clone()) {
            Ok(t) => tickets.push(t),
            Err(NotTaken::Refused) => {
                refused = true;
                break;
            }
            Err(other) => panic!("{other}"),
        }
    }
    let stats = spool.stats();
    assert!(
        refused,
        "held QoS 1/2 events are refused once memory is full (healthy {}, write errors {}, committed {})",
        spool.healthy(),
        stats.write_errors.load(Ordering::Relaxed),
        stats.committed.load(Ordering::Relaxed)
    );
    assert!(!spool.healthy(), "the spool reports that writes fail");
    assert!(stats.write_errors.load(Ordering::Relaxed) > 0);
    assert!(stats.refused.load(Ordering::Relaxed) > 0);
    let unwritten: Vec<Ticket> = tickets
        .iter()
        .copied()
        .filter(|t| !spool.written(*t))
        .collect();
    assert!(
        !unwritten.is_empty(),
        "events that could not be written are not acknowledged"
    );

    // Drain: the lane delivers what is on disk, its segments are deleted,
    // the held events get written, and so on until all are delivered.
    let reader = &mut readers[0];
    let mut delivered = 0usize;
    let until = Instant::now() + WAIT;
    while delivered < tickets.len() {
        let record = tokio::time::timeout(until - Instant::now(), reader.next())
            .await
            .unwrap_or_else(|_| panic!("only {delivered} of {} delivered", tickets.len()))
            .unwrap_or_else(|| panic!("spool closed"));
        reader.ack(record.seq);
        delivered += 1;
    }
    assert!(
        tickets.iter().all(|t| spool.written(*t)),
        "all written in the end"
    );
    wait_until("the spool heals by itself", || spool.healthy());
    // The space comes back: nothing deleted is kept open.
    wait_until("the tmpfs empties", || used_kib(&fs.0) < 256);

    // Later events are written again (and so survive a crash: they are in
    // the file, which the reopen below reads).
    let mut later = Vec::new();
    for i in 0..100u32 {
        let t = spool
            .push_held(7, 1, 0, Bytes::from(format!("later-{i}")))
            .unwrap_or_else(|e| panic!("{e}"));
        later.push(t);
    }
    let last = *later.last().unwrap_or_else(|| panic!("pushed"));
    tokio::time::timeout(WAIT, spool.wait_written(last))
        .await
        .unwrap_or_else(|_| panic!("later events written"));
    assert!(spool.written(last));
    drop(readers);
    let closing = spool.clone();
    tokio::task::spawn_blocking(move || closing.close())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let (again, mut readers) = Spool::open(SpoolOptions {
        dir: Some(dir.clone()),
        lanes: 1,
        max_bytes: 1 << 30,
        fsync: Fsync::Always,
        cache_bytes: 1 << 20,
        memory_limit: 1 << 20,
        group_commit: herald_webhook::spool::GROUP_COMMIT,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..100u32 {
        let record = tokio::time::timeout(WAIT, readers[0].next())
            .await
            .unwrap_or_else(|_| panic!("later-{i} after the reopen"))
            .unwrap_or_else(|| panic!("spool closed"));
        assert_eq!(record.body, Bytes::from(format!("later-{i}")));
        readers[0].ack(record.seq);
    }
    tokio::task::spawn_blocking(move || again.close())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}
