//! Checksummed frames: `len u32 | crc32 u32 | data`, big-endian, the CRC
//! (IEEE, as zlib computes it) over `data`. The record format of every
//! append-only file Herald writes: the broker's state log ([`crate::store`])
//! and the WebHook spool's segments, which put their own fields inside
//! `data`. A torn write at a crash or a flipped byte is found when the file
//! is read again, and [`resync`] finds the next good frame after damage, so
//! a damaged record costs that record alone.
//!
//! Encoding and decoding only: no files are opened here.

use std::io::{self, Read};

/// Bytes before a frame's data: its length and its checksum.
pub const HEAD: usize = 8;

/// CRC-32 (IEEE 802.3, reflected, as zlib computes it), hardware-assisted
/// where the CPU has it.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// Appends a frame's head for data made of `parts` (written after it by
/// the caller, from their own buffers, so a large body is not copied).
pub fn put_head(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let mut crc = crc32fast::Hasher::new();
    let mut len = 0usize;
    for part in parts {
        crc.update(part);
        len += part.len();
    }
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

/// Appends a whole frame holding `data`.
pub fn put(out: &mut Vec<u8>, data: &[u8]) {
    put_head(out, &[data]);
    out.extend_from_slice(data);
}

/// The data of a valid frame (length within `len_range`, checksum right)
/// starting at `pos` of `bytes`, if one does.
pub fn at(bytes: &[u8], pos: usize, len_range: std::ops::RangeInclusive<usize>) -> Option<&[u8]> {
    let head = bytes.get(pos..pos.checked_add(HEAD)?)?;
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    if !len_range.contains(&len) {
        return None;
    }
    let start = pos + HEAD;
    let data = bytes.get(start..start.checked_add(len)?)?;
    (crc32(data) == crc).then_some(data)
}

/// The first position after `pos` where a valid frame starts that
/// `accept` (given its position and data) also takes, if any: where
/// reading goes on after a damaged frame.
pub fn resync(
    bytes: &[u8],
    pos: usize,
    len_range: std::ops::RangeInclusive<usize>,
    mut accept: impl FnMut(usize, &[u8]) -> bool,
) -> Option<usize> {
    (pos + 1..bytes.len()).find(|&p| at(bytes, p, len_range.clone()).is_some_and(|d| accept(p, d)))
}

/// Reads one frame's data from `r`; `Ok(None)` at a clean end of input,
/// `Err` (`InvalidData` or `UnexpectedEof`) for a torn or damaged one.
pub fn read(
    r: &mut impl Read,
    len_range: std::ops::RangeInclusive<usize>,
) -> io::Result<Option<Vec<u8>>> {
    let mut head = [0u8; HEAD];
    match r.read_exact(&mut head[..4]) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut head[4..])?;
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    if !len_range.contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad record length",
        ));
    }
    let mut data = vec![0u8; len];
    r.read_exact(&mut data)?;
    if crc32(&data) != crc {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad record checksum",
        ));
    }
    Ok(Some(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_damage_is_found() {
        let mut out = Vec::new();
        put(&mut out, b"hello");
        put_head(&mut out, &[b"wo", b"rld"]);
        out.extend_from_slice(b"world");
        assert_eq!(at(&out, 0, 0..=100), Some(&b"hello"[..]));
        assert_eq!(at(&out, 13, 0..=100), Some(&b"world"[..]));
        assert_eq!(at(&out, 0, 0..=4), None, "length out of range");
        let mut r = &out[..];
        assert_eq!(read(&mut r, 0..=100).unwrap(), Some(b"hello".to_vec()));
        assert_eq!(read(&mut r, 0..=100).unwrap(), Some(b"world".to_vec()));
        assert_eq!(read(&mut r, 0..=100).unwrap(), None);

        let mut bad = out.clone();
        bad[9] ^= 1;
        assert_eq!(at(&bad, 0, 0..=100), None);
        assert!(read(&mut &bad[..], 0..=100).is_err());
        assert_eq!(resync(&bad, 0, 0..=100, |_, _| true), Some(13));
        assert_eq!(resync(&bad, 0, 0..=100, |_, d| d != b"world"), None);
        let torn = &out[..20];
        assert_eq!(
            read(&mut &torn[13..], 0..=100).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
