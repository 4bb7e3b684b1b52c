//! Reading the state log at start: every record replayed in order into the
//! live state, a damaged record skipped (the scan resynchronises on the
//! next valid one, [`crate::frame::resync`]) and counted, a torn tail (the
//! group being written when the process died, never acknowledged) cut,
//! and the zeros of the space the writer made ahead (after the last
//! record) taken as the end, not as damage.
//!
//! Runs once, before the writer thread starts, reading the file a chunk
//! at a time (never whole). A file that cannot be read,
//! or is not a state log, stops the start with an error naming it: never
//! an empty start over data that is there.

use super::entry::{self, Change, StoredSession};
use super::{MAGIC, MAX_RECORD, StoreError};
use crate::frame;
use crate::message::{Delivery, Message};
use bytes::Bytes;
use herald_codec::ByteStr;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
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

/// Bytes read from the log at a time: what reading it holds in memory
/// besides the state (plus one record larger than this, if any).
const CHUNK: usize = 8 * 1024 * 1024;

/// Reads the log at `path`; `Ok(None)` when there is none yet. The log is
/// read in [`CHUNK`]s, record by record, never whole: at start the memory
/// is the state's, not the state's plus the file's. At the first record
/// that does not read well (damage, a torn tail, the zeros of the space
/// made ahead) the rest of the file is read and handled by [`replay`].
pub(crate) fn recover(path: &Path) -> Result<Option<Recovered>, StoreError> {
    let unreadable = |reason: String| StoreError::Unreadable {
        path: path.to_owned(),
        reason,
    };
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e.to_string())),
    };
    let mut magic = [0u8; MAGIC.len()];
    if let Err(e) = file.read_exact(&mut magic) {
        return Err(unreadable(
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "not a Herald state log (wrong first bytes)".into()
            } else {
                e.to_string()
            },
        ));
    }
    if &magic != MAGIC {
        return Err(unreadable(
            "not a Herald state log (wrong first bytes)".into(),
        ));
    }
    let mut out = Recovered {
        live: Live::default(),
        records: 0,
        damaged: 0,
        good_end: MAGIC.len() as u64,
        damaged_inside: false,
    };
    // `buf[pos..]`: bytes read and not yet taken; `base`: the file offset
    // of `buf[0]`.
    let mut buf: Vec<u8> = Vec::new();
    let (mut base, mut pos) = (MAGIC.len() as u64, 0usize);
    let mut at_end = false;
    loop {
        // A whole record at `pos`, if the bytes read hold one.
        let need = buf
            .get(pos..pos + frame::HEAD)
            .map(|h| frame::HEAD + u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize);
        let whole =
            need.is_some_and(|n| lengths().contains(&(n - frame::HEAD)) && buf.len() - pos >= n);
        if whole {
            match frame::at(&buf, pos, lengths()).and_then(|d| decodable(d).map(|c| (c, d.len()))) {
                Some((change, len)) => {
                    out.live.apply(&change);
                    out.records += 1;
                    pos += frame::HEAD + len;
                    out.good_end = base + pos as u64;
                    continue;
                }
                None => break,
            }
        }
        if need.is_some_and(|n| !lengths().contains(&(n - frame::HEAD))) || at_end {
            break;
        }
        // More bytes: keep what is not taken, read the next chunk (or what
        // the record at `pos` needs).
        buf.drain(..pos);
        base += pos as u64;
        pos = 0;
        let want = need.unwrap_or(0).max(CHUNK);
        let start = buf.len();
        buf.resize(start + want, 0);
        let mut got = 0;
        while got < want {
            match file.read(&mut buf[start + got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(unreadable(e.to_string())),
            }
        }
        buf.truncate(start + got);
        at_end = got < want;
        if buf.is_empty() {
            return Ok(Some(out));
        }
    }
    // The rest, whole: damage to skip, a tail to cut, or zeros.
    if let Err(e) = file.read_to_end(&mut buf) {
        return Err(unreadable(e.to_string()));
    }
    replay(path, &buf, pos, base, &mut out);
    Ok(Some(out))
}

/// The change a record's data holds, if it decodes.
fn decodable(d: &[u8]) -> Option<Change> {
    entry::decode(Bytes::copy_from_slice(d)).ok()
}

/// Reads the records of `data` (the file from offset `base` on) from
/// `pos` to its end into `out`: a damaged record is skipped (the scan
/// resynchronises on the next valid one) and counted, a torn or damaged
/// tail is cut, and zeros after the last record (the space the writer
/// made ahead) end the log.
fn replay(path: &Path, data: &[u8], mut pos: usize, base: u64, out: &mut Recovered) {
    while pos < data.len() {
        if let Some(d) = frame::at(data, pos, lengths())
            && let Some(change) = decodable(d)
        {
            out.live.apply(&change);
            out.records += 1;
            pos += frame::HEAD + d.len();
            out.good_end = base + pos as u64;
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
        let offset = base + pos as u64;
        match frame::resync(data, pos, lengths(), |_, d| decodable(d).is_some()) {
            Some(next) => {
                tracing::warn!(path = %path.display(), offset, skipped_bytes = next - pos, "state log: skipping a damaged record");
                out.damaged_inside = true;
                pos = next;
            }
            None => {
                tracing::warn!(path = %path.display(), offset, cut_bytes = data.len() - pos, "state log: cutting a torn or damaged tail");
                break;
            }
        }
    }
}
