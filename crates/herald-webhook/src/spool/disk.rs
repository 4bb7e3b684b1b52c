//! The writer's access to segment files, behind a trait, so that a test can
//! put a failing disk under the spool (writes cut short then refused with
//! ENOSPC, EIO, failing fsyncs) without root or a real full filesystem.
//!
//! Production uses [`Files`]: plain files, opened by
//! [`super::files::open_segment`]. Only the writer thread calls these.

use super::files::open_segment;
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::path::Path;

/// A segment file open for appending.
pub(crate) trait SegmentFile: Send {
    /// Appends some of `bufs`: how many bytes went (as
    /// [`Write::write_vectored`]).
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Flushes the written data to the device.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts the file back to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Another handle on the same open file (to fsync it from another
    /// thread while this one goes on writing).
    fn try_clone(&self) -> io::Result<Box<dyn SegmentFile>>;
}

/// Where segment files are opened.
pub(crate) trait Disk: Send + Sync {
    /// Opens (creating it, owner-only) a segment file for appending.
    fn open_segment(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>>;
}

/// The real disk: plain files.
pub(crate) struct Files;

impl Disk for Files {
    fn open_segment(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        Ok(Box::new(open_segment(path)?))
    }
}

impl SegmentFile for File {
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        Write::write_vectored(self, bufs)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    fn try_clone(&self) -> io::Result<Box<dyn SegmentFile>> {
        Ok(Box::new(File::try_clone(self)?))
    }
}
