//! "Log at most once per interval": a condition a client can trigger
//! thousands of times a second (a refused retained message, an accept
//! failing for want of file descriptors) gets one log line per interval,
//! saying how many times it happened since the last line.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counts occurrences and says when one should be logged.
#[derive(Debug)]
pub struct LogThrottle {
    /// Shortest time between two log lines.
    interval: Duration,
    /// When the last line was allowed; `None` before the first.
    last: Mutex<Option<Instant>>,
    /// Occurrences since the last line was allowed.
    since: AtomicU64,
}

impl LogThrottle {
    /// A throttle allowing one line per `interval`.
    pub const fn new(interval: Duration) -> LogThrottle {
        LogThrottle {
            interval,
            last: Mutex::new(None),
            since: AtomicU64::new(0),
        }
    }

    /// Records one occurrence at `now`. `Some(n)`: log now, `n`
    /// occurrences (this one included) since the previous line.
    pub fn hit(&self, now: Instant) -> Option<u64> {
        let n = self.since.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| now.saturating_duration_since(at) < self.interval) {
            return None;
        }
        *last = Some(now);
        self.since.fetch_sub(n, Ordering::Relaxed);
        Some(n)
    }
}

/// The interval the broker's throttled warnings use.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_since_the_last() {
        let t = LogThrottle::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(t.hit(start), Some(1));
        for i in 1..5 {
            assert_eq!(t.hit(start + Duration::from_secs(i)), None);
        }
        assert_eq!(t.hit(start + Duration::from_secs(10)), Some(5));
        assert_eq!(t.hit(start + Duration::from_secs(11)), None);
        assert_eq!(t.hit(start + Duration::from_secs(30)), Some(2));
    }
}
