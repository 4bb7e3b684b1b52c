//! The threads the delivery lanes run on (`web.hook.delivery_threads`, one
//! by default), apart from the broker's runtime.
//!
//! Each thread runs a single-threaded tokio runtime; lanes are spread over
//! the threads round robin. A lane waits on its web server most of the
//! time and wakes once per answer: on the broker's work-stealing runtime
//! each such wake-up also woke an idle worker to look for work (a futex
//! call and a context switch per request): 10–25 % more broker CPU per
//! event on a busy 2-core machine (issue 17's measurement, in its note).
//! On a thread of their own the lanes wake only that thread, and MQTT
//! connections never queue behind delivery work on a worker.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The delivery threads, shared by every spool generation's lanes.
/// Dropping the last reference ends them (a lane task still on one
/// is dropped with its runtime).
pub struct DeliveryThreads {
    handles: Vec<Handle>,
    /// One per thread: dropping it ends that thread's runtime.
    _stop: Vec<oneshot::Sender<()>>,
    /// Round-robin position for the next task.
    next: AtomicUsize,
}

impl DeliveryThreads {
    /// Starts `n` threads (at least one), named `webhook-lanes-<i>`.
    pub fn start(n: usize) -> io::Result<DeliveryThreads> {
        let n = n.max(1);
        let mut handles = Vec::with_capacity(n);
        let mut stop = Vec::with_capacity(n);
        for i in 0..n {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let (tx, rx) = oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("webhook-lanes-{i}"))
                .spawn(move || {
                    // Ends when the sender is dropped (or sends).
                    let _ = runtime.block_on(rx);
                })?;
            stop.push(tx);
        }
        Ok(DeliveryThreads {
            handles,
            _stop: stop,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `task` on the next thread.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[i].spawn(task)
    }

    /// Number of threads.
    pub fn count(&self) -> usize {
        self.handles.len()
    }
}

#[cfg(test)]
mod tests {
    use super::DeliveryThreads;

    /// Tasks go round robin to threads of their own, and dropping the
    /// threads ends them with their tasks.
    #[tokio::test]
    async fn tasks_run_on_the_delivery_threads_until_dropped() {
        let threads = DeliveryThreads::start(2).unwrap();
        assert_eq!(threads.count(), 2);
        let mut names = Vec::new();
        for _ in 0..4 {
            let (tx, rx) = tokio::sync::oneshot::channel();
            threads.spawn(async move {
                let _ = tx.send(std::thread::current().name().map(str::to_owned));
            });
            names.push(rx.await.unwrap().unwrap());
        }
        assert_eq!(
            names,
            [
                "webhook-lanes-0",
                "webhook-lanes-1",
                "webhook-lanes-0",
                "webhook-lanes-1"
            ]
        );
        let (_keep, never) = tokio::sync::oneshot::channel::<()>();
        let waiting = threads.spawn(async move {
            let _ = never.await;
        });
        drop(threads);
        let ended = waiting.await.unwrap_err();
        assert!(ended.is_cancelled(), "{ended}");
    }
}
