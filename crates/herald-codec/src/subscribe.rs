//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK.
//!
//! Topic filters are checked here only as UTF-8 strings; whether a filter is
//! valid MQTT (wildcard placement, `$share` form) is the broker's question,
//! answered with a SUBACK failure code rather than a closed connection.

use crate::bytestr::ByteStr;
use crate::error::{DecodeError, EncodeError};
use crate::packet::{PacketType, Protocol, QoS};
use crate::properties::{Context, Properties};
use crate::reason::ReasonCode;
use crate::wire::{Reader, check_len, put_binary};
use bytes::{BufMut, BytesMut};

/// When retained messages are sent for a new subscription (5.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetainHandling {
    /// 0: send retained messages at subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// 1: send them only if the subscription did not exist.
    SendAtSubscribeIfNew = 1,
    /// 2: do not send them.
    DoNotSend = 2,
}

/// The options byte of one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubOptions {
    /// Maximum QoS granted for deliveries on this subscription.
    pub qos: QoS,
    /// No Local (5.0): don't deliver the client's own publications.
    pub no_local: bool,
    /// Retain As Published (5.0): keep the RETAIN flag on forwarded messages.
    pub retain_as_published: bool,
    /// Retain Handling (5.0).
    pub retain_handling: RetainHandling,
}

impl SubOptions {
    /// The options byte: all reserved bits 0, 5.0-only bits only for 5.0.
    pub fn to_byte(self, protocol: Protocol) -> u8 {
        let mut b = self.qos as u8;
        if protocol.is_v5() {
            b |= u8::from(self.no_local) << 2;
            b |= u8::from(self.retain_as_published) << 3;
            b |= (self.retain_handling as u8) << 4;
        }
        b
    }

    /// Parses an options byte, rejecting reserved bits.
    pub fn from_byte(b: u8, protocol: Protocol) -> Result<SubOptions, DecodeError> {
        let reserved = if protocol.is_v5() { 0xC0 } else { 0xFC };
        if b & reserved != 0 {
            return Err(DecodeError::SubscriptionOptionsReserved(b));
        }
        let retain_handling = match (b >> 4) & 0x03 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendAtSubscribeIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::InvalidRetainHandling),
        };
        Ok(SubOptions {
            qos: QoS::from_u8(b & 0x03).map_err(|_| DecodeError::InvalidSubscriptionQoS)?,
            no_local: b & 0x04 != 0,
            retain_as_published: b & 0x08 != 0,
            retain_handling,
        })
    }
}

/// One topic filter of a SUBSCRIBE with its options.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subscription {
    /// The topic filter as sent (may start with `$share/`).
    pub filter: ByteStr,
    /// Its options.
    pub options: SubOptions,
}

/// A SUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscribe {
    /// Packet identifier (non-zero).
    pub packet_id: u16,
    /// Subscription identifier and user properties (5.0 only).
    pub properties: Properties,
    /// At least one subscription.
    pub filters: Vec<Subscription>,
}

fn packet_id(r: &mut Reader) -> Result<u16, DecodeError> {
    let id = r.u16("packet identifier")?;
    if id == 0 {
        return Err(DecodeError::ZeroPacketId(r.packet()));
    }
    Ok(id)
}

fn put_packet_id(buf: &mut BytesMut, id: u16, packet: PacketType) -> Result<(), EncodeError> {
    if id == 0 {
        return Err(EncodeError::ZeroPacketId(packet));
    }
    buf.put_u16(id);
    Ok(())
}

fn props_len(props: &Properties, protocol: Protocol) -> Result<usize, EncodeError> {
    if protocol.is_v5() {
        props.encoded_len_prefixed()
    } else {
        Ok(0)
    }
}

fn put_props(
    buf: &mut BytesMut,
    props: &Properties,
    protocol: Protocol,
) -> Result<(), EncodeError> {
    if protocol.is_v5() {
        props.write(buf, props.encoded_len()?)?;
    }
    Ok(())
}

fn decode_props(
    r: &mut Reader,
    protocol: Protocol,
    ctx: Context,
) -> Result<Properties, DecodeError> {
    if protocol.is_v5() {
        Properties::decode(r, ctx)
    } else {
        Ok(Properties::default())
    }
}

fn filters_len<'a>(filters: impl Iterator<Item = &'a ByteStr>) -> Result<usize, EncodeError> {
    let mut n = 0;
    for f in filters {
        check_len("topic filter", f.len())?;
        n += 2 + f.len();
    }
    Ok(n)
}

impl Subscribe {
    pub(crate) fn decode(r: &mut Reader, protocol: Protocol) -> Result<Subscribe, DecodeError> {
        let packet_id = packet_id(r)?;
        let properties = decode_props(r, protocol, Context::SUBSCRIBE)?;
        let mut filters = Vec::new();
        while !r.is_empty() {
            let filter = r.string("topic filter")?;
            let options = SubOptions::from_byte(r.u8("subscription options")?, protocol)?;
            filters.push(Subscription { filter, options });
        }
        if filters.is_empty() {
            return Err(DecodeError::NoTopicFilters(PacketType::Subscribe));
        }
        Ok(Subscribe {
            packet_id,
            properties,
            filters,
        })
    }

    pub(crate) fn remaining_len(&self, protocol: Protocol) -> Result<usize, EncodeError> {
        Ok(2 + props_len(&self.properties, protocol)?
            + filters_len(self.filters.iter().map(|s| &s.filter))?
            + self.filters.len())
    }

    pub(crate) fn write(&self, buf: &mut BytesMut, protocol: Protocol) -> Result<(), EncodeError> {
        put_packet_id(buf, self.packet_id, PacketType::Subscribe)?;
        put_props(buf, &self.properties, protocol)?;
        for s in &self.filters {
            put_binary(buf, s.filter.as_bytes());
            buf.put_u8(s.options.to_byte(protocol));
        }
        Ok(())
    }
}

/// A SUBACK packet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubAck {
    /// Packet identifier of the SUBSCRIBE.
    pub packet_id: u16,
    /// Reason string and user properties (5.0 only).
    pub properties: Properties,
    /// One code per filter: granted QoS 0/1/2 or a failure (3.x: any failure
    /// is written as 0x80).
    pub codes: Vec<ReasonCode>,
}

impl SubAck {
    pub(crate) fn decode(r: &mut Reader, protocol: Protocol) -> Result<SubAck, DecodeError> {
        let packet_id = packet_id(r)?;
        let properties = decode_props(r, protocol, Context::ACK)?;
        let mut codes = Vec::with_capacity(r.remaining());
        while !r.is_empty() {
            let code = r.u8("reason code")?;
            let ok = if protocol.is_v5() {
                ReasonCode(code).allowed_in(PacketType::SubAck)
            } else {
                matches!(code, 0 | 1 | 2 | 0x80)
            };
            if !ok {
                return Err(DecodeError::InvalidReasonCode {
                    packet: PacketType::SubAck,
                    code,
                });
            }
            codes.push(ReasonCode(code));
        }
        Ok(SubAck {
            packet_id,
            properties,
            codes,
        })
    }

    pub(crate) fn remaining_len(&self, protocol: Protocol) -> Result<usize, EncodeError> {
        Ok(2 + props_len(&self.properties, protocol)? + self.codes.len())
    }

    pub(crate) fn write(&self, buf: &mut BytesMut, protocol: Protocol) -> Result<(), EncodeError> {
        put_packet_id(buf, self.packet_id, PacketType::SubAck)?;
        put_props(buf, &self.properties, protocol)?;
        for code in &self.codes {
            let b = if !protocol.is_v5() && code.is_error() {
                0x80
            } else {
                code.0
            };
            buf.put_u8(b);
        }
        Ok(())
    }
}

/// An UNSUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unsubscribe {
    /// Packet identifier (non-zero).
    pub packet_id: u16,
    /// User properties (5.0 only).
    pub properties: Properties,
    /// At least one topic filter.
    pub filters: Vec<ByteStr>,
}

impl Unsubscribe {
    pub(crate) fn decode(r: &mut Reader, protocol: Protocol) -> Result<Unsubscribe, DecodeError> {
        let packet_id = packet_id(r)?;
        let properties = decode_props(r, protocol, Context::UNSUBSCRIBE)?;
        let mut filters = Vec::new();
        while !r.is_empty() {
            filters.push(r.string("topic filter")?);
        }
        if filters.is_empty() {
            return Err(DecodeError::NoTopicFilters(PacketType::Unsubscribe));
        }
        Ok(Unsubscribe {
            packet_id,
            properties,
            filters,
        })
    }

    pub(crate) fn remaining_len(&self, protocol: Protocol) -> Result<usize, EncodeError> {
        Ok(2 + props_len(&self.properties, protocol)? + filters_len(self.filters.iter())?)
    }

    pub(crate) fn write(&self, buf: &mut BytesMut, protocol: Protocol) -> Result<(), EncodeError> {
        put_packet_id(buf, self.packet_id, PacketType::Unsubscribe)?;
        put_props(buf, &self.properties, protocol)?;
        for f in &self.filters {
            put_binary(buf, f.as_bytes());
        }
        Ok(())
    }
}

/// An UNSUBACK packet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnsubAck {
    /// Packet identifier of the UNSUBSCRIBE.
    pub packet_id: u16,
    /// Reason string and user properties (5.0 only).
    pub properties: Properties,
    /// One code per filter (5.0 only; empty in 3.x).
    pub codes: Vec<ReasonCode>,
}

impl UnsubAck {
    pub(crate) fn decode(r: &mut Reader, protocol: Protocol) -> Result<UnsubAck, DecodeError> {
        let packet_id = packet_id(r)?;
        let mut ack = UnsubAck {
            packet_id,
            ..UnsubAck::default()
        };
        if protocol.is_v5() {
            ack.properties = Properties::decode(r, Context::ACK)?;
            while !r.is_empty() {
                let code = r.u8("reason code")?;
                if !ReasonCode(code).allowed_in(PacketType::UnsubAck) {
                    return Err(DecodeError::InvalidReasonCode {
                        packet: PacketType::UnsubAck,
                        code,
                    });
                }
                ack.codes.push(ReasonCode(code));
            }
        }
        Ok(ack)
    }

    pub(crate) fn remaining_len(&self, protocol: Protocol) -> Result<usize, EncodeError> {
        Ok(if protocol.is_v5() {
            2 + self.properties.encoded_len_prefixed()? + self.codes.len()
        } else {
            2
        })
    }

    pub(crate) fn write(&self, buf: &mut BytesMut, protocol: Protocol) -> Result<(), EncodeError> {
        put_packet_id(buf, self.packet_id, PacketType::UnsubAck)?;
        if protocol.is_v5() {
            put_props(buf, &self.properties, protocol)?;
            for code in &self.codes {
                buf.put_u8(code.0);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_byte_round_trip() {
        let o = SubOptions {
            qos: QoS::ExactlyOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::DoNotSend,
        };
        let b = o.to_byte(Protocol::V5);
        assert_eq!(b, 0b0010_1110);
        assert_eq!(SubOptions::from_byte(b, Protocol::V5), Ok(o));
        assert_eq!(
            SubOptions::from_byte(0x04, Protocol::V3_1_1),
            Err(DecodeError::SubscriptionOptionsReserved(0x04))
        );
        assert_eq!(
            SubOptions::from_byte(0x30, Protocol::V5),
            Err(DecodeError::InvalidRetainHandling)
        );
        assert_eq!(
            SubOptions::from_byte(0x03, Protocol::V5),
            Err(DecodeError::InvalidSubscriptionQoS)
        );
    }
}
