//! Reading the state log at start: every record replayed in order into the
//! live state, a damaged record skipped (the scan resynchronises on the
//! next valid one, [`crate::frame::resync`]) and counted, a torn tail (the
//! group being written when the process died, never acknowledged) cut.
//!
//! Runs once, before the writer thread starts. A file that cannot be read,
//! or is not a state log, stops the start with an error naming it: never
//! an empty start over data that is there.

use super::entry::{self, Change};
use super::{MAGIC, MAX_RECORD, StoreError};
use crate::frame;
use crate::message::Message;
use bytes::Bytes;
use herald_codec::ByteStr;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The live state: what the last record about each key says.
#[derive(Default)]
pub(crate) struct Live {
    /// Retained messages by topic.
    pub(crate) retained: HashMap<ByteStr, Arc<Message>>,
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
