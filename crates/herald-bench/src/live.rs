//! What the running clients share: counters the progress line reads, the
//! stop flags, the run's timing, and the once-a-second progress line.
//!
//! Clients add to the counters once per batch, not per message, so sharing
//! costs next to nothing. Nothing here waits on a client.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counters and flags shared by every client of a run.
#[derive(Debug, Default)]
pub struct Live {
    /// Messages publishers have handed to their sockets.
    pub sent: AtomicU64,
    /// Messages subscribers have received (duplicates included).
    pub received: AtomicU64,
    /// Connections established (the connection scenario).
    pub connected: AtomicU64,
    /// Set on Ctrl-C: publishers stop early, the run reports what it has.
    abort: AtomicBool,
    /// Set when the run is over for subscribers.
    stop_subscribers: AtomicBool,
}

impl Live {
    /// New counters at zero.
    pub fn new() -> Arc<Live> {
        Arc::new(Live::default())
    }

    /// Whether the run was interrupted.
    #[inline]
    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// Interrupts the run.
    pub fn abort(&self) {
        self.abort.store(true, Ordering::Relaxed);
    }

    /// Whether subscribers should return their results.
    #[inline]
    pub fn subscribers_stopped(&self) -> bool {
        self.stop_subscribers.load(Ordering::Relaxed)
    }

    /// Tells subscribers to return their results.
    pub fn stop_subscribers(&self) {
        self.stop_subscribers.store(true, Ordering::Relaxed);
    }
}

/// When a load run starts, when its measurement starts and ends.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Every publisher starts at this instant.
    pub go: Instant,
    /// Messages sent from here on count in rates and latency.
    pub warmup_end: Instant,
    /// `warmup_end` on the payload clock (`payload::now_ns`).
    pub warmup_end_ns: u64,
    /// Publishers stop at this instant (`None`: they stop after `--count`).
    pub end: Option<Instant>,
    /// How long a stopping publisher waits for its acknowledgements.
    pub drain: Duration,
}

/// What the progress line shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// Sent and received messages.
    Messages,
    /// Established connections.
    Connections,
}

/// Stops the progress line when dropped.
pub struct Progress(tokio::task::JoinHandle<()>);

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Prints a progress line to stderr every second until dropped.
pub fn progress(live: Arc<Live>, label: String, show: Show) -> Progress {
    Progress(tokio::spawn(async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let (mut sent0, mut recv0, mut conn0) = (0, 0, 0);
        let mut last = Instant::now();
        loop {
            tick.tick().await;
            let secs = last.elapsed().as_secs_f64().max(1e-3);
            last = Instant::now();
            let t = start.elapsed().as_secs();
            match show {
                Show::Messages => {
                    let sent = live.sent.load(Ordering::Relaxed);
                    let recv = live.received.load(Ordering::Relaxed);
                    eprintln!(
                        "{label} {t:>4}s  sent {:>12} ({:>10}/s)  recv {:>12} ({:>10}/s)",
                        thousands(sent),
                        thousands(((sent - sent0) as f64 / secs) as u64),
                        thousands(recv),
                        thousands(((recv - recv0) as f64 / secs) as u64),
                    );
                    (sent0, recv0) = (sent, recv);
                }
                Show::Connections => {
                    let c = live.connected.load(Ordering::Relaxed);
                    eprintln!(
                        "{label} {t:>4}s  connected {:>9} ({:>8}/s)",
                        thousands(c),
                        thousands((c.saturating_sub(conn0) as f64 / secs) as u64),
                    );
                    conn0 = c;
                }
            }
        }
    }))
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
