//! What the sink has received: per lane, the sequence numbers (gaps,
//! duplicates, late arrivals, with a [`SeqTracker`]); per client, that each
//! new event comes after the previous one; and the requests it could not
//! read.
//!
//! Pure bookkeeping: no I/O, no clock, no lock of its own (the server holds
//! one around it).

use super::LaneReport;
use super::body::{Ev, Events};
use super::event_id::parse_with_lane;
use crate::seq::{Seen, SeqTracker};
use std::collections::HashMap;

/// The last event seen of one client.
#[derive(Debug, Clone, Copy)]
pub(super) struct ClientMark {
    /// Its lane (index in [`Accounts::lanes`]).
    lane: usize,
    /// Its sequence number.
    seq: u64,
}

/// One lane's accounts.
#[derive(Debug)]
struct Lane {
    /// `<spool>-<lane>`.
    key: String,
    /// Its sequence numbers.
    tracker: SeqTracker,
    /// The lowest sequence number seen.
    first: u64,
}

/// Everything the sink has counted.
#[derive(Debug, Default)]
pub struct Accounts {
    /// `<spool>-<lane>` → index in `lanes`.
    lane_index: HashMap<String, usize>,
    /// Per lane, in order of appearance.
    lanes: Vec<Lane>,
    /// Per client id, its latest event.
    pub(super) clients: HashMap<String, ClientMark>,
    /// Accepted requests.
    pub(super) accepted: u64,
    /// Events received.
    pub(super) events: u64,
    /// Client order violations.
    pub(super) client_order: u64,
    /// Unreadable or inconsistent requests.
    pub(super) malformed: u64,
}

impl Accounts {
    /// Accounts for one accepted request: its id header and body.
    pub fn record(&mut self, ids: Option<&str>, body: &[u8]) {
        self.apply(ids, &Events::parse(body));
    }

    /// Accounts for one accepted request whose body has been read (outside
    /// the lock).
    pub(super) fn apply(&mut self, ids: Option<&str>, events: &Events<'_>) {
        self.accepted += 1;
        let Some(ids) = ids else {
            self.malformed += 1;
            return;
        };
        let (mut count, mut unreadable) = (0, false);
        for (i, id) in ids.split(',').enumerate() {
            count += 1;
            let Some((id, key)) = parse_with_lane(id) else {
                unreadable = true;
                continue;
            };
            self.events += 1;
            let lane = self.lane(&key, id.seq);
            let l = &mut self.lanes[lane];
            l.first = l.first.min(id.seq);
            if l.tracker.observe(id.seq) == Seen::Duplicate {
                continue;
            }
            let Some(client) = events.get(i).and_then(Ev::client) else {
                continue;
            };
            let seq = id.seq;
            match self.clients.get_mut(client) {
                Some(mark) => {
                    if mark.lane == lane && seq < mark.seq {
                        self.client_order += 1;
                    } else {
                        *mark = ClientMark { lane, seq };
                    }
                }
                None => {
                    self.clients
                        .insert(client.to_owned(), ClientMark { lane, seq });
                }
            }
        }
        if count != events.len() || unreadable {
            self.malformed += 1;
        }
    }

    /// The index of lane `key`, added (first seen at `seq`) if new.
    fn lane(&mut self, key: &str, seq: u64) -> usize {
        if let Some(&i) = self.lane_index.get(key) {
            return i;
        }
        let i = self.lanes.len();
        self.lanes.push(Lane {
            key: key.to_owned(),
            tracker: SeqTracker::joined(),
            first: seq,
        });
        self.lane_index.insert(key.to_owned(), i);
        i
    }

    /// Distinct events.
    pub fn unique(&self) -> u64 {
        self.lanes.iter().map(|l| l.tracker.unique()).sum()
    }

    /// Distinct events, duplicates, out of order and missing, over all lanes.
    pub(super) fn totals(&self) -> (u64, u64, u64, u64) {
        self.lanes.iter().fold((0, 0, 0, 0), |(u, d, o, m), l| {
            let t = &l.tracker;
            (
                u + t.unique(),
                d + t.duplicates,
                o + t.out_of_order,
                m + t.missing(),
            )
        })
    }

    /// The per-lane figures, sorted by lane.
    pub fn lanes(&self) -> Vec<LaneReport> {
        let mut lanes: Vec<_> = self
            .lanes
            .iter()
            .map(|l| LaneReport {
                lane: l.key.clone(),
                received: l.tracker.received,
                duplicates: l.tracker.duplicates,
                out_of_order: l.tracker.out_of_order,
                gaps: l.tracker.gaps,
                missing: l.tracker.missing(),
                next_seq: l.tracker.next_expected(),
                first_seq: Some(l.first),
            })
            .collect();
        lanes.sort_by(|a, b| a.lane.cmp(&b.lane));
        lanes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(client: &str) -> String {
        format!(r#"{{"action":"client_connected","clientid":"{client}"}}"#)
    }

    #[test]
    fn single_events_in_order() {
        let mut a = Accounts::default();
        for seq in 0..5 {
            a.record(Some(&format!("s-1-{seq}")), event("c1").as_bytes());
        }
        assert_eq!(
            (a.events, a.unique(), a.client_order, a.malformed),
            (5, 5, 0, 0)
        );
        let lanes = a.lanes();
        assert_eq!(lanes.len(), 1);
        assert_eq!(lanes[0].lane, "s-1");
        assert_eq!(lanes[0].next_seq, Some(5));
    }

    #[test]
    fn batches_duplicates_gaps_and_client_order() {
        let mut a = Accounts::default();
        let batch = format!("[{},{},{}]", event("c1"), event("c2"), event("c1"));
        a.record(Some("s-0-10,s-0-11,s-0-12"), batch.as_bytes());
        // The same batch again (a retry after a lost answer): duplicates.
        a.record(Some("s-0-10,s-0-11,s-0-12"), batch.as_bytes());
        // A gap: 13 and 14 skipped.
        a.record(Some("s-0-15"), event("c2").as_bytes());
        // 13 arrives late, for c1 whose last event was 12: in order for c1.
        a.record(Some("s-0-13"), event("c1").as_bytes());
        // 14 for c2 arrives after c2's 15: a client order violation.
        a.record(Some("s-0-14"), event("c2").as_bytes());
        let lane = &a.lanes()[0];
        assert_eq!(lane.received, 9);
        assert_eq!(lane.duplicates, 3);
        assert_eq!(lane.gaps, 1);
        assert_eq!(lane.out_of_order, 2);
        assert_eq!(lane.missing, 0);
        assert_eq!(a.unique(), 6);
        assert_eq!(a.client_order, 1);
        assert_eq!(a.clients.len(), 2);
        assert_eq!(a.malformed, 0);
    }

    #[test]
    fn message_events_use_from_client_id_and_lanes_are_separate() {
        let mut a = Accounts::default();
        let publish = r#"{"action":"message_publish","from_client_id":"dev9"}"#;
        a.record(Some("s-2-5"), publish.as_bytes());
        a.record(Some("s-3-1"), event("other").as_bytes());
        a.record(Some("s-2-4"), publish.as_bytes());
        // dev9's event 4 came after its event 5.
        assert_eq!(a.client_order, 1);
        assert_eq!(a.lanes().len(), 2);
        assert!(a.clients.contains_key("dev9"));
    }

    #[test]
    fn malformed_requests_are_counted() {
        let mut a = Accounts::default();
        a.record(None, event("c").as_bytes());
        a.record(Some("s-0-1,s-0-2"), event("c").as_bytes()); // 2 ids, 1 event
        a.record(Some("garbage"), event("c").as_bytes());
        a.record(Some("s-0-3"), b"not json");
        assert_eq!(a.malformed, 4);
        assert_eq!(a.accepted, 4);
        // Ids that parsed still count as events.
        assert_eq!(a.events, 3);
    }

    #[test]
    fn batch_with_escaped_client_ids() {
        let mut a = Accounts::default();
        let batch = r#"[{"action":"message_publish","from_client_id":"dev\u0039","payload":"\"q\""},{"clientid":"c\\2"}]"#;
        a.record(Some("s-0-5,s-0-6"), batch.as_bytes());
        // dev9's next event, sent plain, comes before its event 5.
        a.record(
            Some("s-0-4"),
            br#"{"action":"message_publish","from_client_id":"dev9"}"#,
        );
        assert_eq!(a.malformed, 0);
        assert_eq!(a.client_order, 1);
        assert_eq!(a.clients.len(), 2);
        assert!(a.clients.contains_key("dev9"));
        assert!(a.clients.contains_key("c\\2"));
    }

    #[test]
    fn lanes_are_named_by_their_number() {
        let mut a = Accounts::default();
        a.record(Some("s-01-5"), event("c").as_bytes());
        a.record(Some("s-1-6"), event("c").as_bytes());
        a.record(Some("s-+1-7"), event("c").as_bytes());
        a.record(
            Some(" s-0-1 , s-00-2"),
            format!("[{},{}]", event("d"), event("d")).as_bytes(),
        );
        let lanes = a.lanes();
        let names: Vec<_> = lanes.iter().map(|l| l.lane.as_str()).collect();
        assert_eq!(names, ["s-0", "s-1"]);
        assert_eq!(
            (lanes[0].received, lanes[0].first_seq, lanes[0].next_seq),
            (2, Some(1), Some(3))
        );
        assert_eq!(
            (lanes[1].received, lanes[1].first_seq, lanes[1].next_seq),
            (3, Some(5), Some(8))
        );
        assert_eq!((a.unique(), a.malformed), (5, 0));
    }
}
