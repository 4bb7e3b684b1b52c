//! CONNECT (with its will message) and CONNACK (spec 3.1.1 §3.1–3.2, 5.0
//! §3.1–3.2).

use crate::bytestr::ByteStr;
use crate::error::{DecodeError, EncodeError};
use crate::packet::{PacketType, Protocol, QoS};
use crate::properties::{Context, Properties};
use crate::reason::ReasonCode;
use crate::wire::{Reader, check_len, put_binary};
use bytes::{BufMut, Bytes, BytesMut};

/// A CONNECT packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol level the client speaks; decides every later packet's format.
    pub protocol: Protocol,
    /// Clean Session (3.x) / Clean Start (5.0).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 turns it off.
    pub keep_alive: u16,
    /// CONNECT properties (5.0 only).
    pub properties: Properties,
    /// Client identifier as sent; may be empty.
    pub client_id: ByteStr,
    /// The will message, if the Will Flag was set.
    pub will: Option<Will>,
    /// User name, if the flag was set.
    pub username: Option<ByteStr>,
    /// Password, if the flag was set.
    pub password: Option<Bytes>,
}

/// The will message of a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Topic the will is published to.
    pub topic: ByteStr,
    /// Will payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will Retain.
    pub retain: bool,
    /// Will properties (5.0 only), including the Will Delay Interval.
    pub properties: Properties,
}

impl Will {
    /// Gives the topic, payload and properties allocations of their own: a
    /// will is kept for the whole connection, and must not keep the
    /// CONNECT's read buffer alive meanwhile.
    pub fn detach(&mut self) {
        (self.topic, self.payload) = self.topic.detached_with(&self.payload);
        self.properties.detach();
    }
}

impl Connect {
    pub(crate) fn decode(r: &mut Reader) -> Result<Connect, DecodeError> {
        let name = r.string("protocol name")?;
        let level = r.u8("protocol level")?;
        let protocol = match (name.as_str(), level) {
            ("MQIsdp", 3) => Protocol::V3_1,
            ("MQTT", 4) => Protocol::V3_1_1,
            ("MQTT", 5) => Protocol::V5,
            ("MQIsdp", _) | ("MQTT", _) => {
                return Err(DecodeError::UnsupportedProtocolLevel(level));
            }
            (other, _) => return Err(DecodeError::InvalidProtocolName(other.to_owned())),
        };
        let flags = r.u8("connect flags")?;
        if flags & 0x01 != 0 {
            return Err(DecodeError::ConnectReservedFlag);
        }
        let clean_start = flags & 0x02 != 0;
        let will_flag = flags & 0x04 != 0;
        let will_qos = QoS::from_u8((flags >> 3) & 0x03)?;
        let will_retain = flags & 0x20 != 0;
        let password_flag = flags & 0x40 != 0;
        let username_flag = flags & 0x80 != 0;
        if !will_flag && (will_qos != QoS::AtMostOnce || will_retain) {
            return Err(DecodeError::WillFlagsWithoutWill);
        }
        if !protocol.is_v5() && password_flag && !username_flag {
            return Err(DecodeError::PasswordWithoutUsername);
        }
        let keep_alive = r.u16("keep alive")?;
        let properties = if protocol.is_v5() {
            Properties::decode(r, Context::CONNECT)?
        } else {
            Properties::default()
        };
        let client_id = r.string("client identifier")?;
        let will = if will_flag {
            let properties = if protocol.is_v5() {
                Properties::decode(r, Context::WILL)?
            } else {
                Properties::default()
            };
            let topic = r.string("will topic")?;
            crate::publish::check_topic_name(&topic)?;
            let payload = r.binary("will payload")?;
            Some(Will {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let username = if username_flag {
            Some(r.string("user name")?)
        } else {
            None
        };
        let password = if password_flag {
            Some(r.binary("password")?)
        } else {
            None
        };
        Ok(Connect {
            protocol,
            clean_start,
            keep_alive,
            properties,
            client_id,
            will,
            username,
            password,
        })
    }

    fn protocol_name(&self) -> &'static [u8] {
        if self.protocol == Protocol::V3_1 {
            b"MQIsdp"
        } else {
            b"MQTT"
        }
    }

    pub(crate) fn remaining_len(&self) -> Result<usize, EncodeError> {
        let v5 = self.protocol.is_v5();
        let mut n = 2 + self.protocol_name().len() + 1 + 1 + 2;
        if v5 {
            n += self.properties.encoded_len_prefixed()?;
        }
        check_len("client identifier", self.client_id.len())?;
        n += 2 + self.client_id.len();
        if let Some(will) = &self.will {
            if v5 {
                n += will.properties.encoded_len_prefixed()?;
            }
            check_len("will topic", will.topic.len())?;
            check_len("will payload", will.payload.len())?;
            n += 4 + will.topic.len() + will.payload.len();
        }
        if let Some(u) = &self.username {
            check_len("user name", u.len())?;
            n += 2 + u.len();
        }
        if let Some(p) = &self.password {
            check_len("password", p.len())?;
            n += 2 + p.len();
        }
        Ok(n)
    }

    pub(crate) fn write(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let v5 = self.protocol.is_v5();
        put_binary(buf, self.protocol_name());
        buf.put_u8(self.protocol.level());
        let mut flags = 0u8;
        if self.clean_start {
            flags |= 0x02;
        }
        if let Some(will) = &self.will {
            flags |= 0x04 | ((will.qos as u8) << 3);
            if will.retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        buf.put_u8(flags);
        buf.put_u16(self.keep_alive);
        if v5 {
            self.properties.write(buf, self.properties.encoded_len()?)?;
        }
        put_binary(buf, self.client_id.as_bytes());
        if let Some(will) = &self.will {
            if v5 {
                will.properties.write(buf, will.properties.encoded_len()?)?;
            }
            put_binary(buf, will.topic.as_bytes());
            put_binary(buf, &will.payload);
        }
        if let Some(u) = &self.username {
            put_binary(buf, u.as_bytes());
        }
        if let Some(p) = &self.password {
            put_binary(buf, p);
        }
        Ok(())
    }
}

/// A CONNACK packet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAck {
    /// Whether the server resumed a session.
    pub session_present: bool,
    /// 5.0 reason code; for 3.x, the return code mapped to its 5.0 reason
    /// (see [`ReasonCode::to_v3_connack`]).
    pub code: ReasonCode,
    /// CONNACK properties (5.0 only).
    pub properties: Properties,
}

impl ConnAck {
    pub(crate) fn decode(r: &mut Reader, protocol: Protocol) -> Result<ConnAck, DecodeError> {
        let flags = r.u8("acknowledge flags")?;
        if flags & 0xFE != 0 {
            return Err(DecodeError::InvalidConnAck(
                "reserved acknowledge flags set",
            ));
        }
        let raw = r.u8("return code")?;
        let code = if protocol.is_v5() {
            let code = ReasonCode(raw);
            if !code.allowed_in(PacketType::ConnAck) {
                return Err(DecodeError::InvalidReasonCode {
                    packet: PacketType::ConnAck,
                    code: raw,
                });
            }
            code
        } else {
            ReasonCode::from_v3_connack(raw)
                .ok_or(DecodeError::InvalidConnAck("return code above 5"))?
        };
        let properties = if protocol.is_v5() {
            Properties::decode(r, Context::CONNACK)?
        } else {
            Properties::default()
        };
        Ok(ConnAck {
            session_present: flags & 1 != 0,
            code,
            properties,
        })
    }

    pub(crate) fn remaining_len(&self, protocol: Protocol) -> Result<usize, EncodeError> {
        Ok(2 + if protocol.is_v5() {
            self.properties.encoded_len_prefixed()?
        } else {
            0
        })
    }

    pub(crate) fn write(&self, buf: &mut BytesMut, protocol: Protocol) -> Result<(), EncodeError> {
        buf.put_u8(u8::from(self.session_present));
        if protocol.is_v5() {
            buf.put_u8(self.code.0);
            self.properties.write(buf, self.properties.encoded_len()?)?;
        } else {
            buf.put_u8(self.code.to_v3_connack());
        }
        Ok(())
    }
}
