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
//!
//! The threads also run at a lower CPU priority than MQTT
//! (`web.hook.delivery_nice`, 10 nice steps by default, Linux): when the
//! CPU is short, a burst of MQTT traffic goes first and the spool holds
//! the events until delivery catches up, as the WebHook promises ("never
//! blocks MQTT"). On a quiet 2-core machine this measured 16–20 % more
//! MQTT throughput with the WebHook on, with the same time to deliver
//! everything. Under a load that never ends, delivery falls behind
//! (`herald_webhook_queue_depth` shows it) rather than MQTT.

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
    /// Starts `n` threads (at least one), named `webhook-lanes-<i>`, each
    /// `nice` steps below the priority of the thread that starts them.
    pub fn start(n: usize, nice: u8) -> io::Result<DeliveryThreads> {
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
                    if let Err(e) = lower_priority(nice) {
                        tracing::warn!(error = %e, nice, "webhook: cannot lower the delivery thread's priority");
                    }
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
}

/// Lowers the calling thread's CPU priority by `nice` steps (at most to
/// 19). On Linux the nice value belongs to the thread.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // two FFI calls about the calling thread; see the SAFETY notes
fn lower_priority(nice: u8) -> io::Result<()> {
    if nice == 0 {
        return Ok(());
    }
    // SAFETY: getpriority takes plain integers and reads no memory of
    // ours; PRIO_PROCESS with `who` 0 is the calling thread on Linux. It
    // cannot fail for the caller itself, so -1 is a real value here.
    let current = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    let lower = current.saturating_add(i32::from(nice)).min(19);
    // SAFETY: as above; lowering one's own priority needs no privilege.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, lower) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Elsewhere the nice value belongs to the whole process: left alone.
#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: u8) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::DeliveryThreads;

    /// Tasks go round robin to threads of their own, and dropping the
    /// threads ends them with their tasks.
    #[tokio::test]
    async fn tasks_run_on_the_delivery_threads_until_dropped() {
        let threads = DeliveryThreads::start(2, 0).unwrap();
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
        let ended = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
            .await
            .expect("the task ends with its thread")
            .unwrap_err();
        assert!(ended.is_cancelled(), "{ended}");
    }

    /// The nice value of the calling thread, from /proc.
    #[cfg(target_os = "linux")]
    fn own_nice() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // Fields after the command name (which ends with the last ')'):
        // state is field 3, nice field 19.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split(' ').nth(16).unwrap().parse().unwrap()
    }

    /// The delivery threads run `nice` steps below the thread that started
    /// them.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn delivery_threads_run_at_a_lower_priority() {
        let mine = own_nice();
        let threads = DeliveryThreads::start(1, 5).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        threads.spawn(async move {
            let _ = tx.send(own_nice());
        });
        assert_eq!(rx.await.unwrap(), (mine + 5).min(19));
    }
}
