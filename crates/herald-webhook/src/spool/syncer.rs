//! The fsync thread of `fsync = interval`: fsyncs the segments the writer
//! hands it (other handles on the same open files), so that the writer,
//! and the publishers' acknowledgements waiting on its group commits,
//! never wait for the disk's flush. Under `interval` an event is accepted
//! once written (the operating system holds it); the periodic fsync only
//! narrows what a power loss can take, so nobody needs to wait for it.
//!
//! Measured before it existed (`fsync = interval`, 200 ms, 32 lanes, a busy
//! shared disk): the writer blocked in the fsyncs of every lane five times
//! a second, and the PUBACK of a hooked QoS 1 publish waited 2 ms at the
//! median but 49 ms at p90 and 106 ms at p99 at 1,000 msg/s (2 / 6 / 34 ms
//! with `fsync = never`). Figures after: BENCHMARKS.md, "acknowledged means
//! spooled".
//!
//! It only fsyncs; it never writes, cuts or deletes a file.

use super::SpoolStats;
use super::disk::SegmentFile;
use herald_broker::support::LogThrottle;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

/// Segments to fsync, with their lane (for the log).
pub(super) type Batch = Vec<(usize, Box<dyn SegmentFile>)>;

/// The running fsync thread.
pub(super) struct Syncer {
    to_sync: mpsc::Sender<Batch>,
    /// Set while a batch is being fsynced (the writer then waits for the
    /// next interval instead of queueing another).
    busy: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Syncer {
    /// Starts the thread; it logs to the caller's tracing subscriber.
    pub(super) fn start(stats: Arc<SpoolStats>) -> io::Result<Syncer> {
        let (to_sync, batches) = mpsc::channel::<Batch>();
        let busy = Arc::new(AtomicBool::new(false));
        let flag = busy.clone();
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        let thread = std::thread::Builder::new()
            .name("webhook-fsync".into())
            .spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || run(&batches, &flag, &stats))
            })?;
        Ok(Syncer {
            to_sync,
            busy,
            thread,
        })
    }

    /// Whether the last batch is still being fsynced.
    pub(super) fn busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// Queues a batch; `Err` gives it back if the thread has gone.
    pub(super) fn sync(&self, batch: Batch) -> Result<(), Batch> {
        if batch.is_empty() {
            return Ok(());
        }
        self.busy.store(true, Ordering::Release);
        self.to_sync.send(batch).map_err(|e| e.0)
    }

    /// Fsyncs what is queued, then stops the thread.
    pub(super) fn stop(self) {
        drop(self.to_sync);
        let _ = self.thread.join();
    }
}

fn run(batches: &mpsc::Receiver<Batch>, busy: &AtomicBool, stats: &SpoolStats) {
    let log = LogThrottle::default();
    while let Ok(batch) = batches.recv() {
        for (lane, mut file) in batch {
            fsync_counted(&mut *file, stats, &log, lane);
        }
        busy.store(false, Ordering::Release);
    }
}

/// Fsyncs one lane's segment of written events; a failure is counted (and
/// now and then logged), not returned: the events were written.
pub(super) fn fsync_counted(
    file: &mut dyn SegmentFile,
    stats: &SpoolStats,
    log: &LogThrottle,
    lane: usize,
) {
    let Err(e) = file.sync_data() else {
        return;
    };
    stats.fsync_errors.fetch_add(1, Ordering::Relaxed);
    if log.ready() {
        tracing::error!(lane, error = %e, "webhook spool: fsync failed (the events were written; a power loss may lose them)");
    }
}
