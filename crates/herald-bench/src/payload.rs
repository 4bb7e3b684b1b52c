//! The benchmark payload header and the process-wide clock it is stamped
//! with.
//!
//! Every PUBLISH the load generator sends starts with 20 bytes, big-endian:
//! publisher id (u32), sequence number (u64, from 0 per publisher) and send
//! time (u64, nanoseconds since [`clock_start`]). Publishers and subscribers
//! live in the same process, so a monotonic clock is exact and immune to
//! wall-clock steps. The rest of the payload is filler.
//!
//! This module never allocates and never panics on a short or foreign
//! payload: [`Header::read`] answers `None`.

use std::sync::OnceLock;
use std::time::Instant;

/// Bytes the header takes at the start of every payload.
pub const HEADER_LEN: usize = 20;

/// The process-wide start of the benchmark clock.
static START: OnceLock<Instant> = OnceLock::new();

/// The instant [`now_ns`] counts from; fixed on first use.
pub fn clock_start() -> Instant {
    *START.get_or_init(Instant::now)
}

/// Nanoseconds since [`clock_start`].
#[inline]
pub fn now_ns() -> u64 {
    ns_since_start(Instant::now())
}

/// `at` as nanoseconds since [`clock_start`] (0 if before it).
#[inline]
pub fn ns_since_start(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(clock_start()).as_nanos()).unwrap_or(u64::MAX)
}

/// What the first [`HEADER_LEN`] bytes of a payload say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Which publisher sent it (dense ids from 0 within a run).
    pub publisher: u32,
    /// The publisher's sequence number, 0 for its first message.
    pub seq: u64,
    /// Send time, nanoseconds since [`clock_start`].
    pub sent_ns: u64,
}

impl Header {
    /// Writes the header into the first [`HEADER_LEN`] bytes of `out`;
    /// `false` (and nothing written) if `out` is shorter.
    #[inline]
    pub fn write(&self, out: &mut [u8]) -> bool {
        let Some(out) = out.get_mut(..HEADER_LEN) else {
            return false;
        };
        let (id, rest) = out.split_at_mut(4);
        let (seq, sent) = rest.split_at_mut(8);
        id.copy_from_slice(&self.publisher.to_be_bytes());
        seq.copy_from_slice(&self.seq.to_be_bytes());
        sent.copy_from_slice(&self.sent_ns.to_be_bytes());
        true
    }

    /// Reads the header at the start of `payload`; `None` if it is shorter
    /// than [`HEADER_LEN`].
    #[inline]
    pub fn read(payload: &[u8]) -> Option<Header> {
        let id: [u8; 4] = payload.get(0..4)?.try_into().ok()?;
        let seq: [u8; 8] = payload.get(4..12)?.try_into().ok()?;
        let sent: [u8; 8] = payload.get(12..20)?.try_into().ok()?;
        Some(Header {
            publisher: u32::from_be_bytes(id),
            seq: u64::from_be_bytes(seq),
            sent_ns: u64::from_be_bytes(sent),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_at_the_front_of_a_larger_payload() {
        let h = Header {
            publisher: 0xDEAD_BEEF,
            seq: 0x0102_0304_0506_0708,
            sent_ns: u64::MAX - 1,
        };
        let mut buf = vec![0xAAu8; 64];
        assert!(h.write(&mut buf));
        assert_eq!(Header::read(&buf), Some(h));
        // Filler after the header is untouched.
        assert!(buf[HEADER_LEN..].iter().all(|&b| b == 0xAA));
    }

    #[test]
    fn layout_is_big_endian_id_seq_time() {
        let h = Header {
            publisher: 1,
            seq: 2,
            sent_ns: 3,
        };
        let mut buf = [0u8; HEADER_LEN];
        assert!(h.write(&mut buf));
        let mut want = [0u8; HEADER_LEN];
        want[3] = 1;
        want[11] = 2;
        want[19] = 3;
        assert_eq!(buf, want);
    }

    #[test]
    fn short_buffers_are_refused_not_panicked_on() {
        let h = Header {
            publisher: 1,
            seq: 2,
            sent_ns: 3,
        };
        let mut short = [0u8; HEADER_LEN - 1];
        assert!(!h.write(&mut short));
        assert_eq!(short, [0u8; HEADER_LEN - 1]);
        assert_eq!(Header::read(&short), None);
        assert_eq!(Header::read(&[]), None);
        assert!(Header::read(&[0u8; HEADER_LEN]).is_some());
    }

    #[test]
    fn clock_is_monotonic() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        assert_eq!(ns_since_start(clock_start()), 0);
    }
}
