//! The event ids the WebHook puts in its id header: `<spool>-<lane>-<seq>`,
//! read from the right since a spool id may hold dashes.
//!
//! Parsing only: nothing here counts or remembers an id.

use std::borrow::Cow;

/// One event id: `<spool>-<lane>-<seq>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventId<'a> {
    /// The spool's id.
    pub spool: &'a str,
    /// Lane number.
    pub lane: u32,
    /// Sequence number within the lane.
    pub seq: u64,
}

/// Parses one event id; the spool id may itself contain dashes.
pub fn parse_event_id(s: &str) -> Option<EventId<'_>> {
    let mut parts = s.trim().rsplitn(3, '-');
    let seq = parts.next()?.parse().ok()?;
    let lane = parts.next()?.parse().ok()?;
    let spool = parts.next().filter(|s| !s.is_empty())?;
    Some(EventId { spool, lane, seq })
}

/// Parses one event id and names its lane, `<spool>-<lane>`: borrowed from
/// the id when the lane number is written the way it prints (no sign, no
/// leading zero), so that `s-01-5` still counts in lane `s-1`.
pub(super) fn parse_with_lane(s: &str) -> Option<(EventId<'_>, Cow<'_, str>)> {
    let id = parse_event_id(s)?;
    let (key, _) = s.trim().rsplit_once('-')?;
    let number = &key[id.spool.len() + 1..];
    let canonical = !number.starts_with('+') && (number.len() == 1 || !number.starts_with('0'));
    let key = if canonical {
        Cow::Borrowed(key)
    } else {
        Cow::Owned(format!("{}-{}", id.spool, id.lane))
    };
    Some((id, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_parse_from_the_right() {
        assert_eq!(
            parse_event_id("a1b2c3d4e5f6-3-42"),
            Some(EventId {
                spool: "a1b2c3d4e5f6",
                lane: 3,
                seq: 42
            })
        );
        assert_eq!(
            parse_event_id(" my-spool-0-7 "),
            Some(EventId {
                spool: "my-spool",
                lane: 0,
                seq: 7
            })
        );
        for bad in ["", "x", "a-1", "-1-2", "a-b-3", "a-1-c", "a-1-"] {
            assert_eq!(parse_event_id(bad), None, "{bad:?}");
        }
    }
}
