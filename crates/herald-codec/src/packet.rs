//! The packet enum, the fixed header, and the two entry points: [`decode`]
//! (one packet from the front of a read buffer) and [`Packet::encode`].
//!
//! `decode` never consumes anything unless it returns a packet or an error,
//! and never panics: it is meant to sit under a framed reader.

use crate::connect::{ConnAck, Connect};
use crate::control::{Auth, Disconnect};
use crate::error::{DecodeError, EncodeError};
use crate::publish::{PubResp, Publish};
use crate::subscribe::{SubAck, Subscribe, UnsubAck, Unsubscribe};
use crate::wire::{Reader, put_varint, read_varint, varint_len};
use bytes::{Buf, BufMut, BytesMut};

/// The MQTT protocol level of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// MQTT 3.1, protocol name `MQIsdp`, level 3.
    V3_1,
    /// MQTT 3.1.1, protocol name `MQTT`, level 4.
    V3_1_1,
    /// MQTT 5.0, protocol name `MQTT`, level 5.
    V5,
}

impl Protocol {
    /// The protocol level byte of CONNECT (3, 4 or 5).
    pub fn level(self) -> u8 {
        match self {
            Protocol::V3_1 => 3,
            Protocol::V3_1_1 => 4,
            Protocol::V5 => 5,
        }
    }

    /// The version as people write it: `3.1`, `3.1.1` or `5.0`.
    pub fn version(self) -> &'static str {
        match self {
            Protocol::V3_1 => "3.1",
            Protocol::V3_1_1 => "3.1.1",
            Protocol::V5 => "5.0",
        }
    }

    /// Whether this is MQTT 5.0 (properties and reason codes on the wire).
    pub fn is_v5(self) -> bool {
        self == Protocol::V5
    }
}

/// Quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum QoS {
    /// At most once.
    #[default]
    AtMostOnce = 0,
    /// At least once.
    AtLeastOnce = 1,
    /// Exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// QoS from its two-bit value; 3 is an error.
    pub fn from_u8(v: u8) -> Result<QoS, DecodeError> {
        match v {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            _ => Err(DecodeError::InvalidQoS),
        }
    }
}

/// The control packet types (upper four bits of the first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// CONNECT: a client opens a session.
    Connect = 1,
    /// CONNACK: the server's answer to CONNECT.
    ConnAck = 2,
    /// PUBLISH: an application message, either direction.
    Publish = 3,
    /// PUBACK: QoS 1 acknowledgement.
    PubAck = 4,
    /// PUBREC: QoS 2, first acknowledgement (received).
    PubRec = 5,
    /// PUBREL: QoS 2, second step (release).
    PubRel = 6,
    /// PUBCOMP: QoS 2, last step (complete).
    PubComp = 7,
    /// SUBSCRIBE: a client asks for topic filters.
    Subscribe = 8,
    /// SUBACK: the server's answer to SUBSCRIBE.
    SubAck = 9,
    /// UNSUBSCRIBE: a client drops topic filters.
    Unsubscribe = 10,
    /// UNSUBACK: the server's answer to UNSUBSCRIBE.
    UnsubAck = 11,
    /// PINGREQ: the client keeps the connection alive.
    PingReq = 12,
    /// PINGRESP: the server's answer to PINGREQ.
    PingResp = 13,
    /// DISCONNECT: either side closes cleanly (the server only in 5.0).
    Disconnect = 14,
    /// AUTH: a step of 5.0 enhanced authentication.
    Auth = 15,
}

impl PacketType {
    fn from_u8(v: u8) -> Result<PacketType, DecodeError> {
        use PacketType::*;
        Ok(match v {
            1 => Connect,
            2 => ConnAck,
            3 => Publish,
            4 => PubAck,
            5 => PubRec,
            6 => PubRel,
            7 => PubComp,
            8 => Subscribe,
            9 => SubAck,
            10 => Unsubscribe,
            11 => UnsubAck,
            12 => PingReq,
            13 => PingResp,
            14 => Disconnect,
            15 => Auth,
            _ => return Err(DecodeError::ReservedPacketType),
        })
    }

    /// The fixed-header flags every packet but PUBLISH must carry.
    fn required_flags(self) -> u8 {
        match self {
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => 0b0010,
            _ => 0,
        }
    }
}

/// One MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT: a client opens a session.
    Connect(Box<Connect>),
    /// CONNACK: the server's answer to CONNECT.
    ConnAck(ConnAck),
    /// PUBLISH: an application message, either direction.
    Publish(Publish),
    /// PUBACK: QoS 1 acknowledgement.
    PubAck(PubResp),
    /// PUBREC: QoS 2, first acknowledgement (received).
    PubRec(PubResp),
    /// PUBREL: QoS 2, second step (release).
    PubRel(PubResp),
    /// PUBCOMP: QoS 2, last step (complete).
    PubComp(PubResp),
    /// SUBSCRIBE: a client asks for topic filters.
    Subscribe(Subscribe),
    /// SUBACK: the server's answer to SUBSCRIBE.
    SubAck(SubAck),
    /// UNSUBSCRIBE: a client drops topic filters.
    Unsubscribe(Unsubscribe),
    /// UNSUBACK: the server's answer to UNSUBSCRIBE.
    UnsubAck(UnsubAck),
    /// PINGREQ: the client keeps the connection alive.
    PingReq,
    /// PINGRESP: the server's answer to PINGREQ.
    PingResp,
    /// DISCONNECT: either side closes cleanly (the server only in 5.0).
    Disconnect(Disconnect),
    /// AUTH: a step of 5.0 enhanced authentication.
    Auth(Auth),
}

/// What the decoder needs to know about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// The connection's protocol level (ignored for CONNECT, which carries
    /// its own).
    pub protocol: Protocol,
    /// Largest packet accepted, fixed header included; at most 268,435,460.
    pub max_packet_size: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            protocol: Protocol::V5,
            max_packet_size: MAX_PACKET_SIZE,
        }
    }
}

/// The largest packet MQTT can express: 1 type byte, 4 length bytes and
/// 268,435,455 bytes of content.
pub const MAX_PACKET_SIZE: usize = 1 + 4 + crate::wire::VARINT_MAX;

/// Most a pending packet's header makes [`decode`] reserve at once.
const RESERVE_STEP: usize = 64 * 1024;

/// Decodes one packet from the front of `buf`.
///
/// - `Ok(Some(packet))`: the packet's bytes were removed from `buf`; string
///   and payload fields share the buffer's memory (no copy).
/// - `Ok(None)`: more bytes are needed; `buf` is unchanged.
/// - `Err(e)`: a protocol violation; the connection must close (see
///   [`DecodeError::reason_code`]). `buf` is left in an unspecified state.
///
/// A packet larger than `opts.max_packet_size` is refused as soon as its
/// length is known, before its content arrives.
#[inline]
pub fn decode(buf: &mut BytesMut, opts: &DecodeOptions) -> Result<Option<Packet>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let packet_type = PacketType::from_u8(first >> 4)?;
    let flags = first & 0x0F;
    let Some((remaining, len_bytes)) = read_varint(buf.get(1..).unwrap_or_default())? else {
        return Ok(None);
    };
    let header = 1 + len_bytes;
    let size = header + remaining as usize;
    if size > opts.max_packet_size {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: opts.max_packet_size,
        });
    }
    if buf.len() < size {
        // Reserve so the reader fills the packet in few reads, but only in
        // steps of at most RESERVE_STEP: a header alone must not make a
        // connection hold a maximum-size buffer before the bytes arrive.
        buf.reserve((size - buf.len()).min(RESERVE_STEP));
        return Ok(None);
    }
    if packet_type != PacketType::Publish && flags != packet_type.required_flags() {
        return Err(DecodeError::InvalidHeaderFlags {
            packet: packet_type,
            flags,
        });
    }
    let mut body = buf.split_to(size).freeze();
    body.advance(header);
    decode_body(Reader::new(body, packet_type), flags, opts.protocol)
}

/// Takes the next packet out of `buf` if it is an acknowledgement in its
/// short form: PUBACK, PUBREC, PUBREL or PUBCOMP carrying a non-zero packet
/// identifier and nothing else (success and no properties, which is what
/// nearly every acknowledgement is, in 3.x and 5.0 alike). Returns its type
/// and packet identifier; anything else stays in `buf` for [`decode`],
/// which gives the same packet. A packet loop's fast path: a [`Packet`] is
/// 472 bytes to build and move, for 4 bytes of input.
pub fn take_short_ack(buf: &mut BytesMut) -> Option<(PacketType, u16)> {
    let &[first, 2, hi, lo, ..] = buf.as_ref() else {
        return None;
    };
    let packet_type = match first {
        0x40 => PacketType::PubAck,
        0x50 => PacketType::PubRec,
        0x62 => PacketType::PubRel,
        0x70 => PacketType::PubComp,
        _ => return None,
    };
    let packet_id = u16::from_be_bytes([hi, lo]);
    if packet_id == 0 {
        return None;
    }
    buf.advance(4);
    Some((packet_type, packet_id))
}

/// The QoS bits and the topic name of the packet at the front of `buf` if
/// it is a whole PUBLISH (`None` for anything else, or a packet not all
/// there yet), without decoding it: lets a broker see which of the packets
/// read next publish to the same topic, to handle them together. Nothing
/// is checked beyond what finding the topic needs; [`decode`] still
/// decodes (and checks) the packet.
pub fn peek_publish(buf: &[u8]) -> Option<(u8, &[u8])> {
    let (&first, rest) = buf.split_first()?;
    if first >> 4 != PacketType::Publish as u8 {
        return None;
    }
    let (remaining, len_bytes) = read_varint(rest).ok()??;
    let body = rest.get(len_bytes..len_bytes + remaining as usize)?;
    let (&[hi, lo], body) = body.split_first_chunk::<2>()?;
    let topic = body.get(..usize::from(u16::from_be_bytes([hi, lo])))?;
    Some(((first >> 1) & 0x03, topic))
}

/// Decodes one packet's content. Every decoder returns (or is wrapped into)
/// the caller's `Result<Option<Packet>>` directly; PUBLISH, the hot path,
/// builds its packet in place (see `Publish::decode_packet`).
fn decode_body(
    mut r: Reader,
    flags: u8,
    protocol: Protocol,
) -> Result<Option<Packet>, DecodeError> {
    let packet = match r.packet() {
        PacketType::Publish => return Publish::decode_packet(r, flags, protocol),
        PacketType::Connect => Packet::Connect(Box::new(Connect::decode(&mut r)?)),
        PacketType::ConnAck => Packet::ConnAck(ConnAck::decode(&mut r, protocol)?),
        PacketType::PubAck => Packet::PubAck(PubResp::decode(&mut r, protocol)?),
        PacketType::PubRec => Packet::PubRec(PubResp::decode(&mut r, protocol)?),
        PacketType::PubRel => Packet::PubRel(PubResp::decode(&mut r, protocol)?),
        PacketType::PubComp => Packet::PubComp(PubResp::decode(&mut r, protocol)?),
        PacketType::Subscribe => Packet::Subscribe(Subscribe::decode(&mut r, protocol)?),
        PacketType::SubAck => Packet::SubAck(SubAck::decode(&mut r, protocol)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::decode(&mut r, protocol)?),
        PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::decode(&mut r, protocol)?),
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => Packet::Disconnect(Disconnect::decode(&mut r, protocol)?),
        PacketType::Auth => {
            if !protocol.is_v5() {
                return Err(DecodeError::UnexpectedPacketType(PacketType::Auth));
            }
            Packet::Auth(Auth::decode(&mut r)?)
        }
    };
    r.finish()?;
    Ok(Some(packet))
}

impl Packet {
    /// This packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }

    /// First byte of the fixed header.
    fn first_byte(&self) -> u8 {
        let flags = match self {
            Packet::Publish(p) => p.view().header_flags(),
            other => other.packet_type().required_flags(),
        };
        ((self.packet_type() as u8) << 4) | flags
    }

    /// The remaining length (content size) at protocol level `protocol`.
    pub fn remaining_len(&self, protocol: Protocol) -> Result<usize, EncodeError> {
        Ok(match self {
            Packet::Connect(p) => p.remaining_len()?,
            Packet::ConnAck(p) => p.remaining_len(protocol)?,
            Packet::Publish(p) => p.view().remaining_len(protocol)?,
            Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
                p.remaining_len(protocol)?
            }
            Packet::Subscribe(p) => p.remaining_len(protocol)?,
            Packet::SubAck(p) => p.remaining_len(protocol)?,
            Packet::Unsubscribe(p) => p.remaining_len(protocol)?,
            Packet::UnsubAck(p) => p.remaining_len(protocol)?,
            Packet::PingReq | Packet::PingResp => 0,
            Packet::Disconnect(p) => p.remaining_len(protocol)?,
            Packet::Auth(p) => {
                if !protocol.is_v5() {
                    return Err(EncodeError::NotInProtocol(PacketType::Auth));
                }
                p.remaining_len()?
            }
        })
    }

    /// The whole packet's size on the wire, to compare with a peer's Maximum
    /// Packet Size before sending.
    pub fn encoded_len(&self, protocol: Protocol) -> Result<usize, EncodeError> {
        framed_len(self.remaining_len(protocol)?)
    }

    /// Appends the packet to `buf` at protocol level `protocol` (for CONNECT,
    /// the packet's own level is used). Returns the number of bytes written.
    /// On error nothing is appended.
    pub fn encode(&self, protocol: Protocol, buf: &mut BytesMut) -> Result<usize, EncodeError> {
        frame(
            buf,
            self.first_byte(),
            self.remaining_len(protocol)?,
            |buf| match self {
                Packet::Connect(p) => p.write(buf),
                Packet::ConnAck(p) => p.write(buf, protocol),
                Packet::Publish(p) => p.view().write(buf, protocol),
                Packet::PubAck(p) => p.write(buf, protocol, PacketType::PubAck),
                Packet::PubRec(p) => p.write(buf, protocol, PacketType::PubRec),
                Packet::PubRel(p) => p.write(buf, protocol, PacketType::PubRel),
                Packet::PubComp(p) => p.write(buf, protocol, PacketType::PubComp),
                Packet::Subscribe(p) => p.write(buf, protocol),
                Packet::SubAck(p) => p.write(buf, protocol),
                Packet::Unsubscribe(p) => p.write(buf, protocol),
                Packet::UnsubAck(p) => p.write(buf, protocol),
                Packet::PingReq | Packet::PingResp => Ok(()),
                Packet::Disconnect(p) => p.write(buf, protocol),
                Packet::Auth(p) => p.write(buf),
            },
        )
    }
}

/// The size on the wire of a packet whose content is `remaining` bytes.
pub(crate) fn framed_len(remaining: usize) -> Result<usize, EncodeError> {
    if remaining > crate::wire::VARINT_MAX {
        return Err(EncodeError::VarIntTooLarge(remaining));
    }
    Ok(1 + varint_len(remaining) + remaining)
}

/// Appends a packet: its first byte, the remaining length and what `write`
/// puts, which must be `remaining` bytes. Returns the number of bytes
/// written; on error nothing is appended.
pub(crate) fn frame(
    buf: &mut BytesMut,
    first: u8,
    remaining: usize,
    write: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
) -> Result<usize, EncodeError> {
    // Refuse before writing anything, so an error leaves `buf` as it was.
    let total = framed_len(remaining)?;
    buf.reserve(total);
    let start = buf.len();
    buf.put_u8(first);
    put_varint(buf, remaining)?;
    if let Err(e) = write(buf) {
        buf.truncate(start);
        return Err(e);
    }
    debug_assert_eq!(buf.len() - start, total);
    Ok(total)
}
