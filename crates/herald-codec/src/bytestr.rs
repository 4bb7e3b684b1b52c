//! `ByteStr`: a UTF-8 string that shares the memory of the buffer it was
//! decoded from, so decoding a topic or a property never copies it.
//!
//! It must never hold bytes that are not valid UTF-8: every constructor checks
//! (or starts from a `&str` / `String`), which is what makes `Deref<Target =
//! str>` sound. This is the workspace's only module allowed `unsafe` code
//! (one block, in [`ByteStr::as_str`]); the checks it relies on, including
//! the decoder's ([`ByteStr::from_packet_field`]), live here beside it so
//! they can be audited together.

use crate::error::DecodeError;
use bytes::Bytes;
use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

/// An immutable, cheaply cloneable UTF-8 string backed by [`Bytes`].
///
/// Hashes as its `&str` does (see the `Hash` impl), as `Borrow<str>` needs.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteStr {
    /// The UTF-8 bytes; valid UTF-8 by construction.
    bytes: Bytes,
}

impl ByteStr {
    /// The empty string, without allocating.
    pub const fn new() -> Self {
        ByteStr {
            bytes: Bytes::new(),
        }
    }

    /// Wraps `bytes` if they are valid UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(ByteStr { bytes })
    }

    /// Wraps a string field of a packet being decoded: well-formed UTF-8
    /// without U+0000, as both 3.1.1 and 5.0 require. One pass checks both
    /// rules (with an ASCII fast path), so the decoder never checks twice.
    #[inline]
    pub(crate) fn from_packet_field(
        bytes: Bytes,
        field: &'static str,
    ) -> Result<Self, DecodeError> {
        check_mqtt_string(&bytes, field)?;
        Ok(ByteStr { bytes })
    }

    /// A `'static` string without allocating.
    pub const fn from_static(s: &'static str) -> Self {
        ByteStr {
            bytes: Bytes::from_static(s.as_bytes()),
        }
    }

    /// The string as `&str`.
    #[allow(unsafe_code)] // the audited block below: re-checking on every read would cost a pass over the string
    pub fn as_str(&self) -> &str {
        // SAFETY: `from_utf8_unchecked` is sound when the bytes are valid
        // UTF-8. Every constructor of `ByteStr` establishes that:
        // `from_utf8` and `from_packet_field` check (the latter through
        // `check_mqtt_string`, which returns `Ok` only for bytes that are all
        // in 0x01..=0x7F or that `std::str::from_utf8` accepts), `new` and
        // `Default` are empty, and `from_static` and the `From<&str>` /
        // `From<String>` conversions start from Rust strings, valid UTF-8 by
        // their own invariant. `bytes` is private to this module and `Bytes`
        // is immutable, so the bytes cannot change after construction.
        unsafe { std::str::from_utf8_unchecked(&self.bytes) }
    }

    /// The underlying bytes (shares memory, no copy).
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Gives back the underlying bytes.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// The same string in an allocation of its own: for anything kept
    /// beyond the packet it was decoded from, which would otherwise keep
    /// that packet's whole read buffer alive.
    pub fn detached(&self) -> ByteStr {
        ByteStr {
            bytes: Bytes::copy_from_slice(&self.bytes),
        }
    }

    /// `self` and `payload` copied into one allocation of exactly their
    /// size (one allocation and one copy for a message's topic and
    /// payload): the pair shares nothing with the buffers they came from.
    pub fn detached_with(&self, payload: &[u8]) -> (ByteStr, Bytes) {
        let topic_len = self.bytes.len();
        let mut joined = Vec::with_capacity(topic_len + payload.len());
        joined.extend_from_slice(&self.bytes);
        joined.extend_from_slice(payload);
        let mut payload = Bytes::from(joined);
        let topic = payload.split_to(topic_len);
        (ByteStr { bytes: topic }, payload)
    }
}

impl Deref for ByteStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ByteStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// Hashes exactly as `str` does, so a `HashMap<ByteStr, _>` can be looked
/// up with a `&str` (the `Borrow<str>` contract); hashing the `Bytes` would
/// hash as `[u8]`, which differs.
impl Hash for ByteStr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl Borrow<str> for ByteStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for ByteStr {
    fn from(s: &str) -> Self {
        ByteStr {
            bytes: Bytes::copy_from_slice(s.as_bytes()),
        }
    }
}

impl From<String> for ByteStr {
    fn from(s: String) -> Self {
        ByteStr {
            bytes: Bytes::from(s.into_bytes()),
        }
    }
}

impl From<ByteStr> for String {
    fn from(s: ByteStr) -> Self {
        s.as_str().to_owned()
    }
}

impl PartialEq<str> for ByteStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ByteStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks that `bytes` are well-formed UTF-8 without U+0000 (an MQTT
/// "UTF-8 Encoded String"); `field` names the field in the error.
#[inline]
fn check_mqtt_string(bytes: &[u8], field: &'static str) -> Result<(), DecodeError> {
    // Fast path: bytes 0x01..=0x7F are ASCII, hence UTF-8, and none is
    // U+0000. A fold without early exit lets the loop vectorize.
    if bytes
        .iter()
        .fold(true, |ok, &b| ok & (b.wrapping_sub(1) < 0x7F))
    {
        return Ok(());
    }
    if std::str::from_utf8(bytes).is_err() {
        return Err(DecodeError::InvalidUtf8 { field });
    }
    if bytes.contains(&0) {
        return Err(DecodeError::NullCharacter { field });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ByteStr;
    use std::collections::HashMap;

    #[test]
    fn detached_copies_share_nothing_with_the_original() {
        let buffer = bytes::Bytes::from(b"a/bpayload and more".to_vec());
        let topic = ByteStr::from_utf8(buffer.slice(..3)).expect("utf-8");
        let payload = buffer.slice(3..10);
        let (t, p) = topic.detached_with(&payload);
        assert_eq!((&*t, &p[..]), ("a/b", &b"payload"[..]));
        let range = buffer.as_ptr_range();
        assert!(!range.contains(&t.as_bytes().as_ptr()));
        assert!(!range.contains(&p.as_ptr()));
        let d = topic.detached();
        assert_eq!(d, topic);
        assert!(!range.contains(&d.as_bytes().as_ptr()));
        let (t, p) = ByteStr::new().detached_with(b"");
        assert!(t.is_empty() && p.is_empty());
    }

    #[test]
    fn a_map_keyed_by_bytestr_is_found_by_str() {
        let mut map = HashMap::new();
        map.insert(ByteStr::from("a/b"), 1);
        assert_eq!(map.get("a/b"), Some(&1));
        assert_eq!(map.remove("a/b"), Some(1));
    }
}
