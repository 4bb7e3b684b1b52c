//! What one record of the state log says, as bytes: the data of one
//! [`crate::frame`].
//!
//! ```text
//! kind 1, a retained message: expires_ms u64 | received_ms u64
//!         | client str | has_username u8 [| username str]
//!         | the message as an MQTT 5.0 PUBLISH packet (topic, QoS,
//!           payload, properties: the codec's own encoding)
//! kind 2, a retained message cleared: topic (the rest of the record)
//! ```
//!
//! Integers are big-endian; `str` is a u16 length and UTF-8 bytes.
//! `expires_ms` is the wall-clock time (ms since the epoch) the message
//! expires at, 0 for never: expiry counts from the original publish across
//! restarts. Encoding and decoding only; nothing here does I/O.

use crate::message::Message;
use crate::support::now_ms;
use bytes::{Buf, Bytes, BytesMut};
use herald_codec::{ByteStr, DecodeOptions, Packet, Protocol, Publish, QoS};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Record kind: a retained message set on its topic.
const RETAIN: u8 = 1;
/// Record kind: the retained message of a topic cleared.
const UNRETAIN: u8 = 2;

/// One change of the stored state.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// `message` is now retained on its topic.
    Retain(Arc<Message>),
    /// Nothing is retained on this topic any more.
    Unretain(ByteStr),
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Undecodable;

/// Appends the record data of `change` to `out`.
pub(crate) fn encode(change: &Change, out: &mut Vec<u8>) {
    match change {
        Change::Retain(m) => {
            out.push(RETAIN);
            encode_message(m, out);
        }
        Change::Unretain(topic) => {
            out.push(UNRETAIN);
            out.extend_from_slice(topic.as_bytes());
        }
    }
}

/// Appends a message: its expiry, arrival, publisher and PUBLISH packet.
fn encode_message(m: &Message, out: &mut Vec<u8>) {
    let now = Instant::now();
    let expires_ms = m.expires_at.map_or(0, |at| {
        let left = at.saturating_duration_since(now);
        now_ms()
            .saturating_add(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
            .max(1)
    });
    out.extend_from_slice(&expires_ms.to_be_bytes());
    out.extend_from_slice(&m.received_at_ms.to_be_bytes());
    put_str(out, &m.from_client_id);
    match &m.from_username {
        Some(name) => {
            out.push(1);
            put_str(out, name);
        }
        None => out.push(0),
    }
    let publish = Publish {
        dup: false,
        qos: m.qos,
        retain: m.retain,
        topic: m.topic.clone(),
        packet_id: if m.qos == QoS::AtMostOnce { 0 } else { 1 },
        properties: m.properties.as_deref().cloned().unwrap_or_default(),
        payload: m.payload.clone(),
    };
    let mut packet = BytesMut::new();
    // A message the broker accepted always encodes (it was decoded from a
    // packet of at most the maximum size); should one not, the record
    // holds no packet and is skipped as undecodable when read.
    if Packet::Publish(publish)
        .encode(Protocol::V5, &mut packet)
        .is_ok()
    {
        out.extend_from_slice(&packet);
    }
}

/// Appends a u16-length-prefixed string (longer ones cannot occur: client
/// ids and user names come from MQTT strings).
fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = s.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes().get(..len).unwrap_or_default());
}

/// Reads a u16-length-prefixed UTF-8 string.
fn get_str(data: &mut Bytes) -> Result<ByteStr, Undecodable> {
    if data.remaining() < 2 {
        return Err(Undecodable);
    }
    let len = usize::from(data.get_u16());
    if data.remaining() < len {
        return Err(Undecodable);
    }
    ByteStr::from_utf8(data.split_to(len)).map_err(|_| Undecodable)
}

/// Decodes record data; a stored expiry becomes one on the broker's clock
/// (already passed if it passed while the broker was down).
pub(crate) fn decode(data: Bytes) -> Result<Change, Undecodable> {
    let mut data = data;
    if !data.has_remaining() {
        return Err(Undecodable);
    }
    match data.get_u8() {
        RETAIN => decode_message(data).map(|m| Change::Retain(Arc::new(m))),
        UNRETAIN => ByteStr::from_utf8(data)
            .map(Change::Unretain)
            .map_err(|_| Undecodable),
        _ => Err(Undecodable),
    }
}

/// Decodes what [`encode_message`] wrote.
fn decode_message(mut data: Bytes) -> Result<Message, Undecodable> {
    if data.remaining() < 16 {
        return Err(Undecodable);
    }
    let expires_ms = data.get_u64();
    let received_at_ms = data.get_u64();
    let from_client_id = get_str(&mut data)?;
    if !data.has_remaining() {
        return Err(Undecodable);
    }
    let from_username = match data.get_u8() {
        0 => None,
        1 => Some(get_str(&mut data)?),
        _ => return Err(Undecodable),
    };
    let mut packet = BytesMut::from(&data[..]);
    let Ok(Some(Packet::Publish(p))) = herald_codec::decode(&mut packet, &DecodeOptions::default())
    else {
        return Err(Undecodable);
    };
    if !packet.is_empty() {
        return Err(Undecodable);
    }
    let expires_at = (expires_ms != 0).then(|| {
        let left = expires_ms.saturating_sub(now_ms());
        Instant::now() + Duration::from_millis(left)
    });
    let mut properties = p.properties;
    properties.detach();
    let (topic, payload) = p.topic.detached_with(&p.payload);
    Ok(Message {
        topic,
        payload,
        qos: p.qos,
        retain: p.retain,
        properties: (!properties.is_empty()).then(|| Box::new(properties)),
        from_client_id: from_client_id.detached(),
        from_username: from_username.map(|u| u.detached()),
        received_at_ms,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_codec::Properties;

    #[test]
    fn a_retained_message_round_trips_with_its_expiry() {
        let mut props = Properties {
            message_expiry_interval: Some(100),
            content_type: Some(ByteStr::from("text/plain")),
            ..Properties::default()
        };
        props
            .user_properties
            .push((ByteStr::from("k"), ByteStr::from("v")));
        let m = Message::new(
            ByteStr::from("a/b"),
            Bytes::from_static(b"payload"),
            QoS::ExactlyOnce,
            true,
            props,
            ByteStr::from("dev-1"),
            Some(ByteStr::from("alice")),
        );
        let mut out = Vec::new();
        encode(&Change::Retain(Arc::new(m)), &mut out);
        let Ok(Change::Retain(back)) = decode(Bytes::from(out.clone())) else {
            panic!("decodes");
        };
        assert_eq!(back.topic, "a/b");
        assert_eq!(&back.payload[..], b"payload");
        assert_eq!(back.qos, QoS::ExactlyOnce);
        assert!(back.retain);
        assert_eq!(back.from_client_id, "dev-1");
        assert_eq!(back.from_username.as_deref(), Some("alice"));
        let props = back.properties.as_deref().expect("properties kept");
        assert_eq!(props.content_type.as_deref(), Some("text/plain"));
        assert_eq!(props.user_properties.len(), 1);
        let left = back.remaining_expiry(Instant::now()).expect("expiry kept");
        assert!((99..=100).contains(&left), "{left}");

        out.truncate(out.len() - 1);
        assert!(decode(Bytes::from(out)).is_err(), "a short record");
        let mut out = Vec::new();
        encode(&Change::Unretain(ByteStr::from("x/y")), &mut out);
        assert!(matches!(decode(Bytes::from(out)), Ok(Change::Unretain(t)) if t == "x/y"));
        assert!(decode(Bytes::from_static(&[9])).is_err());
    }
}
