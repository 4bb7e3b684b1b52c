//! Rebuilding a lane's bookkeeping from its folder when the spool opens:
//! the cursor, then every segment scanned record by record.
//!
//! Runs once per lane before the writer thread starts; never while records
//! are being appended.

use super::files::create_private_dir;
use super::record::{LENGTHS, read_record};
use super::state::{Lane, Segment};
use super::{SpoolError, io_err};
use herald_broker::frame;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// How often reading a file is tried before an I/O error stops the start.
const READ_TRIES: u32 = 3;

/// Rebuilds a lane's bookkeeping from its folder: every segment scanned
/// record by record (a damaged record costs that record alone: counted in
/// `lost`, logged with the segment and offset, the file rewritten without
/// it), then the cursor, checked against the data (a cursor that cannot
/// be read or points beyond the data is not trusted: the lane is delivered
/// again from its oldest record, at least once, with a warning); segments
/// entirely delivered are deleted.
pub(super) fn recover_lane(dir: &Path, lane: &mut Lane, lost: &mut u64) -> Result<(), SpoolError> {
    create_private_dir(dir).map_err(io_err(dir))?;
    let mut names: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let path = e.path();
            let first = path
                .file_name()?
                .to_str()?
                .strip_suffix(".seg")?
                .parse()
                .ok()?;
            Some((first, path))
        })
        .collect();
    names.sort();
    let mut found = Vec::new();
    for (i, (first_seq, path)) in names.iter().enumerate() {
        // A segment's records end where the next segment begins (a write
        // that failed and was redone in a new segment may have left a tail).
        let limit = names.get(i + 1).map(|(next, _)| *next);
        let scanned = scan_segment(path, *first_seq, limit)?;
        *lost += scanned.lost;
        found.push((*first_seq, path.clone(), scanned));
    }
    let end = found.iter().map(|(_, _, s)| s.end_seq).max();
    let floor = found
        .iter()
        .find(|(first, _, s)| s.end_seq > *first)
        .map(|(first, _, _)| *first);
    let cursor = read_cursor(&dir.join("cursor"));
    lane.acked = match (cursor, end, floor) {
        (Cursor::Value(c), Some(end), Some(floor)) if c > end => {
            tracing::warn!(dir = %dir.display(), cursor = c, end, "webhook spool: the lane's cursor points beyond its data; delivering the lane again from its oldest record");
            // Ids must stay unique: new records are numbered after it.
            lane.committed = c;
            floor
        }
        (Cursor::Value(c), _, _) => c,
        (Cursor::Missing, _, _) => 0,
        (Cursor::Unreadable, _, floor) => {
            tracing::warn!(dir = %dir.display(), "webhook spool: the lane's cursor cannot be read; delivering the lane again from its oldest record");
            floor.unwrap_or(0)
        }
    };
    let mut next = lane.acked.max(lane.committed);
    for (first_seq, path, scanned) in found {
        if scanned.end_seq <= lane.acked || scanned.end_seq == first_seq {
            fs::remove_file(&path).map_err(io_err(&path))?;
            continue;
        }
        lane.bytes += scanned.len;
        next = next.max(scanned.end_seq);
        lane.segments.push_back(Segment {
            first_seq,
            end_seq: scanned.end_seq,
            len: scanned.len,
            path,
        });
    }
    lane.committed = next;
    lane.floor = lane.segments.front().map_or(next, |s| s.first_seq);
    if lane.acked < lane.floor {
        lane.acked = lane.floor;
    }
    Ok(())
}

/// What a lane's cursor file says.
enum Cursor {
    Value(u64),
    Missing,
    Unreadable,
}

fn read_cursor(path: &Path) -> Cursor {
    match read_retrying(path) {
        Ok(bytes) => match std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            Some(n) => Cursor::Value(n),
            None => Cursor::Unreadable,
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Cursor::Missing,
        Err(_) => Cursor::Unreadable,
    }
}

/// Reads a whole file, trying again after a transient I/O error (an error
/// is never taken for the end of the data).
fn read_retrying(path: &Path) -> io::Result<Vec<u8>> {
    let mut tries = 0;
    loop {
        match fs::read(path) {
            Ok(bytes) => return Ok(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(e),
            Err(e) => {
                tries += 1;
                if tries >= READ_TRIES {
                    return Err(e);
                }
                tracing::warn!(path = %path.display(), error = %e, "webhook spool: read failed; trying again");
                std::thread::sleep(std::time::Duration::from_millis(100 * u64::from(tries)));
            }
        }
    }
}

/// What scanning a segment found.
pub(super) struct Scanned {
    /// One past the last good record's sequence number.
    pub(super) end_seq: u64,
    /// Bytes of the good records (the file's length after the scan).
    pub(super) len: u64,
    /// Records lost to damage (by the gap in sequence numbers, or one for
    /// a damaged record at the end).
    pub(super) lost: u64,
}

/// Validates a segment's records. A damaged record is skipped: the scan
/// resynchronises on the next valid record (length in range, checksum
/// right, sequence number not going back); a damaged tail is cut. If
/// anything was skipped, the file is rewritten with the good records
/// only, so readers can walk it record by record. An I/O error is retried
/// and then stops the start (naming the file), never taken as the end of
/// the data.
pub(super) fn scan_segment(
    path: &Path,
    first_seq: u64,
    limit: Option<u64>,
) -> Result<Scanned, SpoolError> {
    let data = read_retrying(path).map_err(io_err(path))?;
    let mut good: Vec<(usize, usize)> = Vec::new();
    let mut pos = 0usize;
    let mut expected = first_seq;
    let mut lost = 0u64;
    let mut damaged = false;
    let fits = |seq: u64, expected: u64| seq >= expected && limit.is_none_or(|l| seq < l);
    while pos < data.len() {
        match record_at(&data, pos) {
            Some((seq, n)) if fits(seq, expected) => {
                if seq > expected {
                    lost += seq - expected;
                }
                good.push((pos, pos + n));
                expected = seq + 1;
                pos += n;
            }
            Some((seq, _)) if limit.is_some_and(|l| seq >= l) => {
                // Written again in the next segment: this copy is not used.
                damaged = true;
                break;
            }
            _ => {
                damaged = true;
                let resume = frame::resync(&data, pos, LENGTHS, |p, _| {
                    record_at(&data, p).is_some_and(|(seq, _)| fits(seq, expected))
                });
                match resume {
                    Some(p) => {
                        tracing::warn!(path = %path.display(), offset = pos, skipped_bytes = p - pos, "webhook spool: skipping a damaged record");
                        // The gap in sequence numbers counts what was lost
                        // (nothing if the damage was not a record).
                        pos = p;
                    }
                    None => {
                        tracing::warn!(path = %path.display(), offset = pos, cut_bytes = data.len() - pos, "webhook spool: cutting a torn or damaged segment tail");
                        lost += 1;
                        break;
                    }
                }
            }
        }
    }
    let len: usize = good.iter().map(|(a, b)| b - a).sum();
    if damaged {
        let tmp = path.with_extension("seg.tmp");
        let rewrite = || -> io::Result<()> {
            let mut file = fs::File::create(&tmp)?;
            for &(a, b) in &good {
                if let Some(bytes) = data.get(a..b) {
                    file.write_all(bytes)?;
                }
            }
            file.sync_all()?;
            fs::rename(&tmp, path)
        };
        rewrite().map_err(io_err(path))?;
    }
    Ok(Scanned {
        end_seq: expected,
        len: len as u64,
        lost,
    })
}

/// The sequence number and stored length of a valid record starting at
/// `pos` of `data`, if one does.
fn record_at(data: &[u8], pos: usize) -> Option<(u64, usize)> {
    let mut slice = data.get(pos..)?;
    let record = read_record(&mut slice, 0).ok()??;
    Some((record.seq, record.stored_len() as usize))
}
