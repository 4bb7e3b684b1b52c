//! The MQTT data representations (spec §1.5): integers, variable byte
//! integers, UTF-8 strings and binary data, read from a `Bytes` without
//! copying and written into a `BytesMut`.
//!
//! Reading never panics: every read checks the length first and reports a
//! [`DecodeError::Truncated`] naming the field.

use crate::bytestr::ByteStr;
use crate::error::{DecodeError, EncodeError};
use crate::packet::PacketType;
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The largest value a variable byte integer can hold.
pub const VARINT_MAX: usize = 268_435_455;

/// Reads the fields of one packet body; knows which packet it reads so errors
/// can say so.
pub(crate) struct Reader {
    /// The rest of the packet body.
    buf: Bytes,
    /// The packet being read, for error messages.
    packet: PacketType,
}

impl Reader {
    #[inline]
    pub(crate) fn new(buf: Bytes, packet: PacketType) -> Self {
        Reader { buf, packet }
    }

    #[inline]
    pub(crate) fn packet(&self) -> PacketType {
        self.packet
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    #[inline]
    fn need(&self, n: usize, field: &'static str) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            Err(DecodeError::Truncated {
                packet: self.packet,
                field,
            })
        } else {
            Ok(())
        }
    }

    #[inline]
    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        self.need(1, field)?;
        Ok(self.buf.get_u8())
    }

    #[inline]
    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.need(2, field)?;
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.need(4, field)?;
        Ok(self.buf.get_u32())
    }

    pub(crate) fn varint(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        match read_varint(&self.buf)? {
            Some((value, len)) => {
                self.buf.advance(len);
                Ok(value)
            }
            None => Err(DecodeError::Truncated {
                packet: self.packet,
                field,
            }),
        }
    }

    /// `n` bytes as a shared slice (no copy).
    #[inline]
    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        self.need(n, field)?;
        Ok(self.buf.split_to(n))
    }

    #[inline]
    pub(crate) fn binary(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.u16(field)? as usize;
        self.take(len, field)
    }

    /// A UTF-8 string: well-formed and without U+0000, as both 3.1.1 and 5.0
    /// require.
    #[inline]
    pub(crate) fn string(&mut self, field: &'static str) -> Result<ByteStr, DecodeError> {
        let bytes = self.binary(field)?;
        ByteStr::from_packet_field(bytes, field)
    }

    /// Everything left, consuming the reader (no copy).
    #[inline]
    pub(crate) fn into_rest(self) -> Bytes {
        self.buf
    }

    /// Fails if anything is left.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                packet: self.packet,
                extra: self.buf.len(),
            })
        }
    }

    /// A reader over the next `n` bytes, which it consumes from this one.
    pub(crate) fn sub(&mut self, n: usize) -> Result<Reader, DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::PropertiesOverrun);
        }
        Ok(Reader::new(self.buf.split_to(n), self.packet))
    }
}

/// Decodes a variable byte integer at the start of `buf`: `Ok(None)` if more
/// bytes are needed, else the value and how many bytes it used.
#[inline]
pub fn read_varint(buf: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for (i, &byte) in buf.iter().enumerate().take(4) {
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            // A zero continuation byte after the first one means a longer
            // encoding than needed; the spec asks for the shortest.
            if i > 0 && byte == 0 {
                return Err(DecodeError::VarIntNotMinimal);
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 4 {
        Err(DecodeError::VarIntTooLong)
    } else {
        Ok(None)
    }
}

/// How many bytes `value` takes as a variable byte integer.
pub fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

pub(crate) fn put_varint(buf: &mut BytesMut, value: usize) -> Result<(), EncodeError> {
    if value > VARINT_MAX {
        return Err(EncodeError::VarIntTooLarge(value));
    }
    let mut value = value;
    loop {
        let mut byte = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if value == 0 {
            return Ok(());
        }
    }
}

pub(crate) fn check_len(field: &'static str, len: usize) -> Result<(), EncodeError> {
    if len > u16::MAX as usize {
        Err(EncodeError::FieldTooLong { field, len })
    } else {
        Ok(())
    }
}

/// Writes a length-prefixed binary field; the caller checked the length.
pub(crate) fn put_binary(buf: &mut BytesMut, data: &[u8]) {
    buf.put_u16(data.len() as u16);
    buf.put_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_boundaries() {
        for (value, bytes) in [
            (0usize, vec![0x00]),
            (127, vec![0x7F]),
            (128, vec![0x80, 0x01]),
            (16_383, vec![0xFF, 0x7F]),
            (16_384, vec![0x80, 0x80, 0x01]),
            (2_097_151, vec![0xFF, 0xFF, 0x7F]),
            (2_097_152, vec![0x80, 0x80, 0x80, 0x01]),
            (268_435_455, vec![0xFF, 0xFF, 0xFF, 0x7F]),
        ] {
            let mut buf = BytesMut::new();
            put_varint(&mut buf, value).unwrap();
            assert_eq!(&buf[..], &bytes[..], "{value}");
            assert_eq!(varint_len(value), bytes.len());
            assert_eq!(
                read_varint(&bytes).unwrap(),
                Some((value as u32, bytes.len()))
            );
        }
        assert!(put_varint(&mut BytesMut::new(), 268_435_456).is_err());
    }

    #[test]
    fn varint_errors() {
        assert_eq!(read_varint(&[0x80, 0x80, 0x80]), Ok(None));
        assert_eq!(
            read_varint(&[0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(DecodeError::VarIntTooLong)
        );
        assert_eq!(
            read_varint(&[0x80, 0x00]),
            Err(DecodeError::VarIntNotMinimal)
        );
    }
}
