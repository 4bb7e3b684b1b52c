//! Rebuilding a lane's bookkeeping from its folder when the spool opens:
//! the cursor, then every segment scanned record by record.
//!
//! Runs once per lane before the writer thread starts; never while records
//! are being appended.

use super::record::read_record;
use super::state::{Lane, Segment};
use super::{SpoolError, io_err};
use std::fs::{self, File, OpenOptions};
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// Rebuilds a lane's bookkeeping from its folder: the cursor, then every
/// segment scanned record by record; a torn tail is cut off, segments
/// entirely delivered are deleted.
pub(super) fn recover_lane(dir: &Path, lane: &mut Lane) -> Result<(), SpoolError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let cursor_path = dir.join("cursor");
    lane.acked = fs::read_to_string(&cursor_path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
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
    let mut next = lane.acked;
    for (first_seq, path) in names {
        let (end_seq, len) = scan_segment(&path, first_seq)?;
        if end_seq <= lane.acked || end_seq == first_seq {
            fs::remove_file(&path).map_err(io_err(&path))?;
            continue;
        }
        lane.bytes += len;
        next = next.max(end_seq);
        lane.segments.push_back(Segment {
            first_seq,
            end_seq,
            len,
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

/// Validates a segment's records; truncates a torn or corrupt tail.
/// Returns one past the last good sequence number and the good length.
pub(super) fn scan_segment(path: &Path, first_seq: u64) -> Result<(u64, u64), SpoolError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut reader = BufReader::new(file);
    let mut good_len = 0u64;
    let mut expected = first_seq;
    while let Ok(Some(record)) = read_record(&mut reader, 0) {
        if record.seq != expected {
            break;
        }
        expected += 1;
        good_len += record.stored_len();
    }
    let actual = fs::metadata(path).map_err(io_err(path))?.len();
    if actual != good_len {
        tracing::warn!(path = %path.display(), kept = good_len, found = actual, "webhook spool: cutting a torn or corrupt segment tail");
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        f.set_len(good_len).map_err(io_err(path))?;
        f.sync_all().map_err(io_err(path))?;
    }
    Ok((expected, good_len))
}
