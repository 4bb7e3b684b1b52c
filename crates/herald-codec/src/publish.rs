//! PUBLISH and its acknowledgements PUBACK, PUBREC, PUBREL, PUBCOMP.
//!
//! Decoding a PUBLISH never copies the topic or the payload: both are slices
//! of the read buffer.

use crate::bytestr::ByteStr;
use crate::control::{
    decode_reason_and_properties, reason_and_properties_len, write_reason_and_properties,
};
use crate::error::{DecodeError, EncodeError};
use crate::packet::{Packet, PacketType, Protocol, QoS};
use crate::properties::{Context, Properties};
use crate::reason::ReasonCode;
use crate::wire::{Reader, check_len, put_binary};
use bytes::{BufMut, Bytes, BytesMut};

/// A PUBLISH packet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Publish {
    /// DUP: this may be a redelivery.
    pub dup: bool,
    /// QoS of this delivery.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic name; empty only in 5.0 with a topic alias.
    pub topic: ByteStr,
    /// Packet identifier; non-zero for QoS 1 and 2, 0 (absent) for QoS 0.
    pub packet_id: u16,
    /// PUBLISH properties (5.0 only).
    pub properties: Properties,
    /// Application payload, shared with the read buffer.
    pub payload: Bytes,
}

/// Checks a topic name: no wildcards (U+0000 and UTF-8 were checked when the
/// string was read). Empty names are checked by the caller, since 5.0 allows
/// them with a topic alias.
#[inline]
pub(crate) fn check_topic_name(topic: &str) -> Result<(), DecodeError> {
    if topic.is_empty() {
        return Err(DecodeError::EmptyTopicName);
    }
    // No early exit: topics are short and the fold vectorizes.
    if topic
        .bytes()
        .fold(false, |wild, b| wild | (b == b'+') | (b == b'#'))
    {
        return Err(DecodeError::WildcardInTopicName(topic.to_owned()));
    }
    Ok(())
}

impl Publish {
    /// The packet as a [`PublishRef`], which encodes it.
    pub fn view(&self) -> PublishRef<'_> {
        PublishRef {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic: &self.topic,
            packet_id: self.packet_id,
            properties: Some(&self.properties),
            payload: &self.payload,
        }
    }

    /// Decodes a PUBLISH body into a whole [`decode`](crate::decode) result.
    ///
    /// PUBLISH is the hot path, and a `Packet` is 472 bytes: returning the
    /// same type as `decode` lets it tail-return this, so the packet is built
    /// once in the caller's return slot instead of being moved through a
    /// `Result<Publish>`, then a `Packet`, then an `Ok(Some(..))`.
    pub(crate) fn decode_packet(
        mut r: Reader,
        flags: u8,
        protocol: Protocol,
    ) -> Result<Option<Packet>, DecodeError> {
        let dup = flags & 0x08 != 0;
        let qos = QoS::from_u8((flags >> 1) & 0x03)?;
        let retain = flags & 0x01 != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::DupOnQoS0);
        }
        let topic = r.string("topic name")?;
        let packet_id = if qos == QoS::AtMostOnce {
            0
        } else {
            let id = r.u16("packet identifier")?;
            if id == 0 {
                return Err(DecodeError::ZeroPacketId(PacketType::Publish));
            }
            id
        };
        if !protocol.is_v5() {
            check_topic_name(&topic)?;
            // Properties written in place, not built aside and moved.
            return Ok(Some(Packet::Publish(Publish {
                dup,
                qos,
                retain,
                topic,
                packet_id,
                properties: Properties::default(),
                payload: r.into_rest(),
            })));
        }
        let properties = Properties::decode(&mut r, Context::PUBLISH)?;
        if !(topic.is_empty() && properties.topic_alias.is_some()) {
            check_topic_name(&topic)?;
        }
        Ok(Some(Packet::Publish(Publish {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            properties,
            payload: r.into_rest(),
        })))
    }
}

/// A PUBLISH to encode, made of borrowed parts: what a broker sends each
/// delivery of a stored message with, without building a [`Publish`] (472
/// bytes with its properties) and cloning the message's topic and payload
/// into it for every subscriber.
#[derive(Debug, Clone, Copy)]
pub struct PublishRef<'a> {
    /// DUP: this may be a redelivery.
    pub dup: bool,
    /// QoS of this delivery.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic name; empty only in 5.0 with a topic alias.
    pub topic: &'a str,
    /// Packet identifier; non-zero for QoS 1 and 2, ignored for QoS 0.
    pub packet_id: u16,
    /// PUBLISH properties (5.0 only); `None` is the same as empty ones.
    pub properties: Option<&'a Properties>,
    /// Application payload.
    pub payload: &'a [u8],
}

impl PublishRef<'_> {
    pub(crate) fn header_flags(&self) -> u8 {
        (u8::from(self.dup) << 3) | ((self.qos as u8) << 1) | u8::from(self.retain)
    }

    pub(crate) fn remaining_len(&self, protocol: Protocol) -> Result<usize, EncodeError> {
        check_len("topic name", self.topic.len())?;
        let mut n = 2 + self.topic.len() + self.payload.len();
        if self.qos != QoS::AtMostOnce {
            if self.packet_id == 0 {
                return Err(EncodeError::ZeroPacketId(PacketType::Publish));
            }
            n += 2;
        }
        if protocol.is_v5() {
            n += match self.properties {
                Some(p) => p.encoded_len_prefixed()?,
                // The length prefix of no properties.
                None => 1,
            };
        }
        Ok(n)
    }

    pub(crate) fn write(&self, buf: &mut BytesMut, protocol: Protocol) -> Result<(), EncodeError> {
        put_binary(buf, self.topic.as_bytes());
        if self.qos != QoS::AtMostOnce {
            buf.put_u16(self.packet_id);
        }
        if protocol.is_v5() {
            match self.properties {
                Some(p) => p.write(buf, p.encoded_len()?)?,
                None => buf.put_u8(0),
            }
        }
        buf.put_slice(self.payload);
        Ok(())
    }

    /// The whole packet's size on the wire at `protocol`, to compare with
    /// a peer's Maximum Packet Size before sending.
    pub fn encoded_len(&self, protocol: Protocol) -> Result<usize, EncodeError> {
        crate::packet::framed_len(self.remaining_len(protocol)?)
    }

    /// Appends the packet to `buf` at protocol level `protocol`; returns
    /// the number of bytes written. On error nothing is appended.
    pub fn encode(&self, protocol: Protocol, buf: &mut BytesMut) -> Result<usize, EncodeError> {
        let first = ((PacketType::Publish as u8) << 4) | self.header_flags();
        crate::packet::frame(buf, first, self.remaining_len(protocol)?, |buf| {
            self.write(buf, protocol)
        })
    }
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP: the packet type is the [`Packet`]
/// variant that holds it.
///
/// [`Packet`]: crate::Packet
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PubResp {
    /// Packet identifier being acknowledged (non-zero).
    pub packet_id: u16,
    /// Reason code (5.0); always success in 3.x.
    pub reason: ReasonCode,
    /// Reason string and user properties (5.0 only).
    pub properties: Properties,
}

impl PubResp {
    /// A successful acknowledgement of `packet_id`.
    pub fn new(packet_id: u16) -> PubResp {
        PubResp {
            packet_id,
            ..PubResp::default()
        }
    }

    pub(crate) fn decode(r: &mut Reader, protocol: Protocol) -> Result<PubResp, DecodeError> {
        let packet = r.packet();
        let packet_id = r.u16("packet identifier")?;
        if packet_id == 0 {
            return Err(DecodeError::ZeroPacketId(packet));
        }
        let (reason, properties) = if protocol.is_v5() {
            decode_reason_and_properties(r, Context::ACK)?
        } else {
            (ReasonCode::SUCCESS, Properties::default())
        };
        Ok(PubResp {
            packet_id,
            reason,
            properties,
        })
    }

    pub(crate) fn remaining_len(&self, protocol: Protocol) -> Result<usize, EncodeError> {
        Ok(2 + if protocol.is_v5() {
            reason_and_properties_len(self.reason, &self.properties)?
        } else {
            0
        })
    }

    pub(crate) fn write(
        &self,
        buf: &mut BytesMut,
        protocol: Protocol,
        packet: PacketType,
    ) -> Result<(), EncodeError> {
        if self.packet_id == 0 {
            return Err(EncodeError::ZeroPacketId(packet));
        }
        buf.put_u16(self.packet_id);
        if protocol.is_v5() {
            write_reason_and_properties(buf, self.reason, &self.properties)?;
        }
        Ok(())
    }
}
