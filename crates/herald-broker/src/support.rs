//! Small helpers every Herald crate needs the same way: the wall clock in
//! milliseconds, locks that shrug off poisoning, and a throttle for log
//! lines that could otherwise flood.
//!
//! They live in the broker because it is the lowest crate that every user
//! (the broker, the WebHook, the binary) depends on. Nothing here knows
//! about MQTT.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Locks `m`, also when a thread panicked while holding it: every value
/// Herald guards is left consistent between statements, and one panicked
/// handler must not take the broker down with it.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Read-locks `l`, ignoring poisoning as [`lock`] does.
pub fn read<T: ?Sized>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

/// Write-locks `l`, ignoring poisoning as [`lock`] does.
pub fn write<T: ?Sized>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// Lets a repeated log line through at most once per period, so a failure
/// that repeats thousands of times a second (a client can trigger some of
/// them at will) costs one line, not a flood. It counts the occurrences in
/// between, so the line can say how many there were. Shared by reference:
/// any thread may record an occurrence.
#[derive(Debug)]
pub struct LogThrottle {
    /// Shortest time between two lines.
    every: Duration,
    /// When a line last went through; `None` before the first.
    last: Mutex<Option<Instant>>,
    /// Occurrences since the last line went through.
    since: AtomicU64,
}

impl LogThrottle {
    /// How often Herald repeats a line about a failure that persists.
    pub const DEFAULT_EVERY: Duration = Duration::from_secs(10);

    /// A throttle letting one line through per `every`; the first passes.
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            last: Mutex::new(None),
            since: AtomicU64::new(0),
        }
    }

    /// Whether a line may be logged now; if so, the period starts again.
    pub fn ready(&self) -> bool {
        self.hit(Instant::now()).is_some()
    }

    /// Records one occurrence at `now`. `Some(n)`: log now, `n` occurrences
    /// (this one included) since the previous line went through.
    pub fn hit(&self, now: Instant) -> Option<u64> {
        let n = self.since.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = lock(&self.last);
        if last.is_some_and(|at| now.saturating_duration_since(at) < self.every) {
            return None;
        }
        *last = Some(now);
        self.since.fetch_sub(n, Ordering::Relaxed);
        Some(n)
    }
}

impl Default for LogThrottle {
    fn default() -> Self {
        Self::new(Self::DEFAULT_EVERY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn throttle_lets_one_line_through_per_period_with_the_count() {
        let t = LogThrottle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.hit(t0), Some(1), "the first line passes");
        for i in 1..5 {
            assert_eq!(t.hit(t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(t.hit(t0 + Duration::from_millis(9_999)), None);
        assert_eq!(t.hit(t0 + Duration::from_secs(10)), Some(6));
        assert_eq!(
            t.hit(t0 + Duration::from_secs(15)),
            None,
            "period restarted at 10 s"
        );
        assert_eq!(t.hit(t0 + Duration::from_secs(20)), Some(2));
        assert_eq!(LogThrottle::default().every, Duration::from_secs(10));
    }

    #[test]
    fn locks_survive_a_panicking_holder() {
        let m = Arc::new(Mutex::new(1));
        let l = Arc::new(RwLock::new(2));
        let (m2, l2) = (m.clone(), l.clone());
        let joined = std::thread::spawn(move || {
            let _m = m2.lock();
            let _l = l2.write();
            panic!("poison both");
        })
        .join();
        assert!(joined.is_err());
        assert!(m.is_poisoned() && l.is_poisoned());
        *lock(&m) += 1;
        *write(&l) += 1;
        assert_eq!((*lock(&m), *read(&l)), (2, 3));
    }

    #[test]
    fn now_ms_is_the_wall_clock() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let now = u128::from(now_ms());
        assert!(now >= before && now < before + 60_000, "{before} {now}");
    }
}
