//! Where the spool keeps things on disk: lane folders, segment file names,
//! the spool id file, and replacing a small file atomically.
//!
//! Names and small files only; records are written by the writer thread.

use super::{SpoolError, io_err};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub(super) fn lane_dir(dir: &Path, lane: usize) -> PathBuf {
    dir.join(format!("lane-{lane:03}"))
}

pub(super) fn segment_path(lane_dir: &Path, first_seq: u64) -> PathBuf {
    lane_dir.join(format!("{first_seq:020}.seg"))
}

/// The spool id stored in `dir/spool.id`, created on first use.
pub(super) fn spool_id(dir: &Path) -> Result<String, SpoolError> {
    let path = dir.join("spool.id");
    match fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        _ => {
            let id = random_id();
            write_atomically(&path, id.as_bytes(), true).map_err(io_err(&path))?;
            Ok(id)
        }
    }
}

/// A short id unlikely to repeat: time, process id and a counter hashed.
pub(super) fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.write_u64(COUNT.fetch_add(1, Ordering::Relaxed));
    format!("{:012x}", h.finish() & 0xFFFF_FFFF_FFFF)
}

/// Replaces `path` with `data` (write a temporary file, readable and
/// writable by the owner only, rename it over); `sync` fsyncs the data
/// first.
pub(super) fn write_atomically(path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut options = fs::OpenOptions::new();
        options.create(true).write(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        f.write_all(data)?;
        if sync {
            f.sync_all()?;
        }
    }
    fs::rename(&tmp, path)
}

/// Creates a folder (and its parents) readable by the owner only.
pub(super) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Opens a segment file for appending, creating it readable and writable
/// by the owner only.
pub(super) fn open_segment(path: &Path) -> io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}
