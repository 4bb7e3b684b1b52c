//! The record format of segment files: a [`herald_broker::frame`] (`len
//! u32 | crc32 u32 | data`, shared with the broker's state log) whose data
//! is `seq u64 | enqueued_ms u64 | kind u8 | [client u32] | body`, all
//! big-endian;
//! `client` is there when the top bit of `kind` is set (records written
//! before it existed lack it); `len` counts from `seq` to the end and the
//! CRC covers the same bytes, so a torn write at a crash is found at the
//! next start.
//!
//! Encoding and decoding only: no files are opened here.

use bytes::{Buf, Bytes};
use herald_broker::frame;
use std::io::{self, Read};

/// Bytes of a record before its body: len, crc, seq, enqueued_ms, kind.
pub(super) const HEADER: usize = 4 + 4 + 8 + 8 + 1;

/// Bytes covered by `len` besides the body (and the client).
pub(super) const LEN_FIXED: usize = 8 + 8 + 1;

/// Bytes of the client field.
pub(super) const CLIENT: usize = 4;

/// Set in the stored `kind` byte when the client field follows.
pub(super) const HAS_CLIENT: u8 = 0x80;

/// Refuse records claiming more than this (a corrupt length field).
pub(super) const MAX_RECORD: usize = 64 * 1024 * 1024;

/// One spooled event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The lane it belongs to.
    pub lane: usize,
    /// Its position in the lane (unique per spool and lane, across restarts).
    pub seq: u64,
    /// When it was accepted, ms since the epoch (for a maximum event age).
    pub enqueued_ms: u64,
    /// The caller's event kind tag (for per-kind metrics), below 0x80.
    pub kind: u8,
    /// Identifies the client the event is about (a hash: two clients may
    /// share one; `None` for records from before it was kept, which must
    /// be taken as anyone's).
    pub client: Option<u32>,
    /// The request body.
    pub body: Bytes,
}

impl Record {
    /// Bytes the record takes in a segment file.
    pub fn stored_len(&self) -> u64 {
        let client = if self.client.is_some() { CLIENT } else { 0 };
        (HEADER + client + self.body.len()) as u64
    }
}

/// Reads one record; `Ok(None)` at a clean end of file, `Err` for a torn or
/// corrupt one.
pub(super) fn read_record(r: &mut impl Read, lane: usize) -> io::Result<Option<Record>> {
    let Some(data) = frame::read(r, LEN_FIXED..=MAX_RECORD)? else {
        return Ok(None);
    };
    let mut data = Bytes::from(data);
    let seq = data.get_u64();
    let enqueued_ms = data.get_u64();
    let kind = data.get_u8();
    let client = if kind & HAS_CLIENT != 0 {
        if data.len() < CLIENT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "record too short for its client field",
            ));
        }
        Some(data.get_u32())
    } else {
        None
    };
    Ok(Some(Record {
        lane,
        seq,
        enqueued_ms,
        kind: kind & !HAS_CLIENT,
        client,
        body: data,
    }))
}

/// Appends a record's header (everything before the body, which is
/// written from its own buffer, not copied here).
pub(super) fn encode_head(out: &mut Vec<u8>, p: &Record) {
    let mut fixed = [0u8; LEN_FIXED + CLIENT];
    fixed[..8].copy_from_slice(&p.seq.to_be_bytes());
    fixed[8..16].copy_from_slice(&p.enqueued_ms.to_be_bytes());
    fixed[16] = p.kind | HAS_CLIENT;
    fixed[17..].copy_from_slice(&p.client.unwrap_or(0).to_be_bytes());
    frame::put_head(out, &[&fixed, &p.body]);
    out.extend_from_slice(&fixed);
}

/// Bytes of the header [`encode_head`] writes.
pub(super) const HEAD: usize = HEADER + CLIENT;

/// Where a resynchronising scan may look for the next record.
pub(super) const LENGTHS: std::ops::RangeInclusive<usize> = LEN_FIXED..=MAX_RECORD;

pub use herald_broker::frame::crc32;
