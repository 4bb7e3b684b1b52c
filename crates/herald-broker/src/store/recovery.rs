//! Reading the state log at start: every record replayed in order into the
//! live state, a damaged record skipped (the scan resynchronises on the
//! next valid one, [`crate::frame::resync`]) and counted, a torn tail (the
//! group being written when the process died, never acknowledged) cut,
//! and the zeros of the space the writer made ahead (after the last
//! record) taken as the end, not as damage.
//!
//! Runs once, before the writer thread starts. A file that cannot be read,
//! or is not a state log, stops the start with an error naming it: never
//! an empty start over data that is there.

use super::entry::{self, Change, StoredSession};
use super::{MAGIC, MAX_RECORD, StoreError};
use crate::frame;
use crate::message::{Delivery, Message};
use bytes::Bytes;
use herald_codec::ByteStr;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

/// The live state: what the last record about each key says.
#[derive(Default)]
pub(crate) struct Live {
    /// Retained messages by topic.
    pub(crate) retained: HashMap<ByteStr, Arc<Message>>,
    /// Persistent sessions by client id.
    pub(crate) sessions: HashMap<ByteStr, LiveSession>,
}

/// A stored session with its messages.
pub(crate) struct LiveSession {
    /// Its settings and subscriptions.
    pub(crate) record: Arc<StoredSession>,
    /// Its deliveries not yet done, by number (queue order).
    pub(crate) messages: BTreeMap<u64, LiveMessage>,
    /// Incoming QoS 2 packet ids awaiting PUBREL.
    pub(crate) qos2_in: BTreeSet<u16>,
}

/// A delivery of a stored session.
#[derive(Clone)]
pub(crate) struct LiveMessage {
    /// What is delivered.
    pub(crate) delivery: Delivery,
    /// The packet id it was sent with (0: not sent yet).
    pub(crate) packet_id: u16,
    /// QoS 2: PUBREC received.
    pub(crate) released: bool,
}

impl Live {
    /// Applies one change.
    pub(crate) fn apply(&mut self, change: &Change) {
        match change {
            Change::Retain(m) => {
                self.retained.insert(m.topic.clone(), m.clone());
            }
            Change::Unretain(topic) => {
                self.retained.remove(topic);
            }
            Change::Session(record) => match self.sessions.get_mut(&record.client_id) {
                Some(s) => s.record = record.clone(),
                None => {
                    self.sessions.insert(
                        record.client_id.clone(),
                        LiveSession {
                            record: record.clone(),
                            messages: BTreeMap::new(),
                            qos2_in: BTreeSet::new(),
                        },
                    );
                }
            },
            Change::SessionGone(client) => {
                self.sessions.remove(client);
            }
            Change::Queued(client, seq, delivery) => {
                if let Some(s) = self.sessions.get_mut(client) {
                    s.messages.insert(
                        *seq,
                        LiveMessage {
                            delivery: delivery.clone(),
                            packet_id: 0,
                            released: false,
                        },
                    );
                }
            }
            Change::Sent(client, seq, packet_id) => {
                if let Some(m) = self.message(client, *seq) {
                    m.packet_id = *packet_id;
                }
            }
            Change::Released(client, seq) => {
                if let Some(m) = self.message(client, *seq) {
                    m.released = true;
                }
            }
            Change::Done(client, seq) => {
                if let Some(s) = self.sessions.get_mut(client) {
                    s.messages.remove(seq);
                }
            }
            Change::Qos2In(client, packet_id, awaiting) => {
                if let Some(s) = self.sessions.get_mut(client) {
                    if *awaiting {
                        s.qos2_in.insert(*packet_id);
                    } else {
                        s.qos2_in.remove(packet_id);
                    }
                }
            }
        }
    }

    fn message(&mut self, client: &ByteStr, seq: u64) -> Option<&mut LiveMessage> {
        self.sessions.get_mut(client)?.messages.get_mut(&seq)
    }

    /// The records that rebuild this state, in an order that does.
    pub(crate) fn for_each_record(&self, mut f: impl FnMut(Change)) {
        for m in self.retained.values() {
            f(Change::Retain(m.clone()));
        }
        for s in self.sessions.values() {
            let client = &s.record.client_id;
            f(Change::Session(s.record.clone()));
            for (seq, m) in &s.messages {
                f(Change::Queued(client.clone(), *seq, m.delivery.clone()));
                if m.packet_id != 0 {
                    f(Change::Sent(client.clone(), *seq, m.packet_id));
                }
                if m.released {
                    f(Change::Released(client.clone(), *seq));
                }
            }
            for id in &s.qos2_in {
                f(Change::Qos2In(client.clone(), *id, true));
            }
        }
    }
}

/// What reading the log found.
pub(crate) struct Recovered {
    /// The state it describes.
    pub(crate) live: Live,
    /// Records read.
    pub(crate) records: u64,
    /// Damaged records skipped (a torn tail counts as one).
    pub(crate) damaged: u64,
    /// Bytes of the file up to the end of its last good record.
    pub(crate) good_end: u64,
    /// Whether damage was found before the last good record (the file is
    /// then rewritten without it).
    pub(crate) damaged_inside: bool,
}

/// Range of a record's length.
fn lengths() -> std::ops::RangeInclusive<usize> {
    1..=MAX_RECORD
}

/// Reads the log at `path`; `Ok(None)` when there is none yet.
pub(crate) fn recover(path: &Path) -> Result<Option<Recovered>, StoreError> {
    let data = match std::fs::read(path) {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(StoreError::Unreadable {
                path: path.to_owned(),
                reason: e.to_string(),
            });
        }
    };
    if data.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(StoreError::Unreadable {
            path: path.to_owned(),
            reason: "not a Herald state log (wrong first bytes)".into(),
        });
    }
    let decodable = |d: &[u8]| entry::decode(Bytes::copy_from_slice(d)).ok();
    let mut out = Recovered {
        live: Live::default(),
        records: 0,
        damaged: 0,
        good_end: MAGIC.len() as u64,
        damaged_inside: false,
    };
    let mut pos = MAGIC.len();
    while pos < data.len() {
        if let Some(d) = frame::at(&data, pos, lengths())
            && let Some(change) = decodable(d)
        {
            out.live.apply(&change);
            out.records += 1;
            pos += frame::HEAD + d.len();
            out.good_end = pos as u64;
            continue;
        }
        // The space the writer made ahead and had not used yet: the end.
        if data
            .get(pos..)
            .is_some_and(|rest| rest.iter().all(|&b| b == 0))
        {
            break;
        }
        out.damaged += 1;
        match frame::resync(&data, pos, lengths(), |_, d| decodable(d).is_some()) {
            Some(next) => {
                tracing::warn!(path = %path.display(), offset = pos, skipped_bytes = next - pos, "state log: skipping a damaged record");
                out.damaged_inside = true;
                pos = next;
            }
            None => {
                tracing::warn!(path = %path.display(), offset = pos, cut_bytes = data.len() - pos, "state log: cutting a torn or damaged tail");
                break;
            }
        }
    }
    Ok(Some(out))
}
