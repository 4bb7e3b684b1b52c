//! MQTT 5.0 properties (spec §2.2.2): one struct holding every property, the
//! per-packet sets of properties allowed, decoding with all the validity
//! rules (unknown identifier, not allowed here, repeated, value out of range)
//! and encoding.
//!
//! A 3.x packet has no properties: its `Properties` is always the default.

use crate::bytestr::ByteStr;
use crate::error::{DecodeError, EncodeError};
use crate::wire::{Reader, check_len, put_binary, put_varint, varint_len};
use bytes::{BufMut, Bytes, BytesMut};

/// Property identifiers (5.0 §2.2.2.2), the first byte of each property.
pub mod id {
    /// 0 = unspecified bytes, 1 = UTF-8 text (PUBLISH, will).
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    /// Seconds a message may wait before it is discarded undelivered.
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    /// The payload's MIME type, as the publisher describes it.
    pub const CONTENT_TYPE: u8 = 0x03;
    /// Where a request/response receiver should publish its answer.
    pub const RESPONSE_TOPIC: u8 = 0x08;
    /// Bytes that tie a response to its request.
    pub const CORRELATION_DATA: u8 = 0x09;
    /// A number the subscriber gave its subscription, echoed on matching PUBLISHes.
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    /// Seconds the session outlives the connection.
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    /// The client id the server chose for a client that sent none (CONNACK).
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    /// The keep alive the server imposes instead of the client's (CONNACK).
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    /// Name of the enhanced authentication method (CONNECT, CONNACK, AUTH).
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    /// Data of the enhanced authentication exchange.
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    /// Whether the client wants reason strings and user properties on errors.
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    /// Seconds the server waits after a disconnect before publishing the will.
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    /// Whether the client asks for response information in CONNACK.
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    /// A basis for response topics, given by the server in CONNACK.
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    /// Another server the client should use (CONNACK, DISCONNECT).
    pub const SERVER_REFERENCE: u8 = 0x1C;
    /// Human-readable diagnostic text accompanying a reason code.
    pub const REASON_STRING: u8 = 0x1F;
    /// How many QoS 1/2 PUBLISHes the sender of this property accepts unacknowledged.
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    /// The highest topic alias the sender of this property accepts.
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    /// A number standing for the topic, so later PUBLISHes can omit it.
    pub const TOPIC_ALIAS: u8 = 0x23;
    /// The highest QoS the server accepts (CONNACK).
    pub const MAXIMUM_QOS: u8 = 0x24;
    /// Whether the server accepts retained messages (CONNACK).
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    /// An application-defined name/value pair; may repeat.
    pub const USER_PROPERTY: u8 = 0x26;
    /// The largest packet the sender of this property accepts.
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    /// Whether the server accepts `+` and `#` in filters (CONNACK).
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    /// Whether the server accepts subscription identifiers (CONNACK).
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    /// Whether the server accepts `$share/` subscriptions (CONNACK).
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// Where a property set appears, with the identifiers allowed there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// Name used in error messages.
    pub name: &'static str,
    /// Bit `n` set: property identifier `n` is allowed.
    allowed: u64,
}

const fn mask(ids: &[u8]) -> u64 {
    let mut m = 0u64;
    let mut i = 0;
    while i < ids.len() {
        m |= 1 << ids[i];
        i += 1;
    }
    m
}

use id::*;

impl Context {
    /// Properties of CONNECT.
    pub const CONNECT: Context = Context {
        name: "CONNECT",
        allowed: mask(&[
            SESSION_EXPIRY_INTERVAL,
            RECEIVE_MAXIMUM,
            MAXIMUM_PACKET_SIZE,
            TOPIC_ALIAS_MAXIMUM,
            REQUEST_RESPONSE_INFORMATION,
            REQUEST_PROBLEM_INFORMATION,
            USER_PROPERTY,
            AUTHENTICATION_METHOD,
            AUTHENTICATION_DATA,
        ]),
    };
    /// Will properties, inside CONNECT's payload.
    pub const WILL: Context = Context {
        name: "will properties",
        allowed: mask(&[
            WILL_DELAY_INTERVAL,
            PAYLOAD_FORMAT_INDICATOR,
            MESSAGE_EXPIRY_INTERVAL,
            CONTENT_TYPE,
            RESPONSE_TOPIC,
            CORRELATION_DATA,
            USER_PROPERTY,
        ]),
    };
    /// Properties of CONNACK.
    pub const CONNACK: Context = Context {
        name: "CONNACK",
        allowed: mask(&[
            SESSION_EXPIRY_INTERVAL,
            RECEIVE_MAXIMUM,
            MAXIMUM_QOS,
            RETAIN_AVAILABLE,
            MAXIMUM_PACKET_SIZE,
            ASSIGNED_CLIENT_IDENTIFIER,
            TOPIC_ALIAS_MAXIMUM,
            REASON_STRING,
            USER_PROPERTY,
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            SHARED_SUBSCRIPTION_AVAILABLE,
            SERVER_KEEP_ALIVE,
            RESPONSE_INFORMATION,
            SERVER_REFERENCE,
            AUTHENTICATION_METHOD,
            AUTHENTICATION_DATA,
        ]),
    };
    /// Properties of PUBLISH (also carried by stored messages).
    pub const PUBLISH: Context = Context {
        name: "PUBLISH",
        allowed: mask(&[
            PAYLOAD_FORMAT_INDICATOR,
            MESSAGE_EXPIRY_INTERVAL,
            TOPIC_ALIAS,
            RESPONSE_TOPIC,
            CORRELATION_DATA,
            USER_PROPERTY,
            SUBSCRIPTION_IDENTIFIER,
            CONTENT_TYPE,
        ]),
    };
    /// PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
    pub const ACK: Context = Context {
        name: "acknowledgement",
        allowed: mask(&[REASON_STRING, USER_PROPERTY]),
    };
    /// Properties of SUBSCRIBE.
    pub const SUBSCRIBE: Context = Context {
        name: "SUBSCRIBE",
        allowed: mask(&[SUBSCRIPTION_IDENTIFIER, USER_PROPERTY]),
    };
    /// Properties of UNSUBSCRIBE.
    pub const UNSUBSCRIBE: Context = Context {
        name: "UNSUBSCRIBE",
        allowed: mask(&[USER_PROPERTY]),
    };
    /// Properties of DISCONNECT.
    pub const DISCONNECT: Context = Context {
        name: "DISCONNECT",
        allowed: mask(&[
            SESSION_EXPIRY_INTERVAL,
            REASON_STRING,
            USER_PROPERTY,
            SERVER_REFERENCE,
        ]),
    };
    /// Properties of AUTH.
    pub const AUTH: Context = Context {
        name: "AUTH",
        allowed: mask(&[
            AUTHENTICATION_METHOD,
            AUTHENTICATION_DATA,
            REASON_STRING,
            USER_PROPERTY,
        ]),
    };

    /// Whether property `id` may appear here.
    pub fn allows(self, id: u8) -> bool {
        id < 64 && self.allowed & (1 << id) != 0
    }
}

/// Every MQTT 5.0 property; `None` / empty means absent. Which ones a packet
/// may carry is checked on decode ([`Context`]); on encode, whatever is set
/// is written, so callers set only what belongs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    /// 0x01: 0 unspecified bytes, 1 UTF-8 payload.
    pub payload_format_indicator: Option<u8>,
    /// 0x02: seconds until the message expires.
    pub message_expiry_interval: Option<u32>,
    /// 0x03: MIME type of the payload.
    pub content_type: Option<ByteStr>,
    /// 0x08: topic for a response (request/response pattern).
    pub response_topic: Option<ByteStr>,
    /// 0x09: correlates a response with its request.
    pub correlation_data: Option<Bytes>,
    /// 0x0B: subscription identifiers (one in SUBSCRIBE, any number in a
    /// PUBLISH to a client).
    pub subscription_identifiers: Vec<u32>,
    /// 0x11: seconds the session outlives the connection.
    pub session_expiry_interval: Option<u32>,
    /// 0x12: client id the server assigned.
    pub assigned_client_identifier: Option<ByteStr>,
    /// 0x13: keep alive the server imposes.
    pub server_keep_alive: Option<u16>,
    /// 0x15: extended authentication method.
    pub authentication_method: Option<ByteStr>,
    /// 0x16: extended authentication data.
    pub authentication_data: Option<Bytes>,
    /// 0x17: 0 = no reason strings / user properties on errors, please.
    pub request_problem_information: Option<u8>,
    /// 0x18: seconds to delay the will message.
    pub will_delay_interval: Option<u32>,
    /// 0x19: 1 = the client asks for Response Information in CONNACK.
    pub request_response_information: Option<u8>,
    /// 0x1A: basis for response topics.
    pub response_information: Option<ByteStr>,
    /// 0x1C: another server to use.
    pub server_reference: Option<ByteStr>,
    /// 0x1F: human-readable reason.
    pub reason_string: Option<ByteStr>,
    /// 0x21: how many QoS 1/2 publications the sender accepts at once.
    pub receive_maximum: Option<u16>,
    /// 0x22: highest topic alias the sender accepts.
    pub topic_alias_maximum: Option<u16>,
    /// 0x23: topic alias of this PUBLISH.
    pub topic_alias: Option<u16>,
    /// 0x24: highest QoS the server supports (0 or 1; absent means 2).
    pub maximum_qos: Option<u8>,
    /// 0x25: whether the server supports retained messages.
    pub retain_available: Option<bool>,
    /// 0x26: user properties, in order, repeats allowed.
    pub user_properties: Vec<(ByteStr, ByteStr)>,
    /// 0x27: largest packet the sender accepts.
    pub maximum_packet_size: Option<u32>,
    /// 0x28: whether the server supports wildcard subscriptions.
    pub wildcard_subscription_available: Option<bool>,
    /// 0x29: whether the server supports subscription identifiers.
    pub subscription_identifier_available: Option<bool>,
    /// 0x2A: whether the server supports shared subscriptions.
    pub shared_subscription_available: Option<bool>,
}

fn set_once<T>(slot: &mut Option<T>, id: u8, value: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty(id));
    }
    *slot = Some(value);
    Ok(())
}

fn flag(id: u8, value: u8) -> Result<u8, DecodeError> {
    if value > 1 {
        return Err(DecodeError::InvalidPropertyValue {
            id,
            value: value.into(),
        });
    }
    Ok(value)
}

fn nonzero<T: Into<u32> + Copy>(id: u8, value: T) -> Result<T, DecodeError> {
    if value.into() == 0 {
        return Err(DecodeError::InvalidPropertyValue { id, value: 0 });
    }
    Ok(value)
}

impl Properties {
    /// Whether no property is set.
    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }

    /// Gives every string and binary property an allocation of its own
    /// (see [`ByteStr::detached`]), for properties kept beyond the packet
    /// they were decoded from.
    pub fn detach(&mut self) {
        let strings = [
            &mut self.content_type,
            &mut self.response_topic,
            &mut self.assigned_client_identifier,
            &mut self.authentication_method,
            &mut self.response_information,
            &mut self.server_reference,
            &mut self.reason_string,
        ];
        for s in strings.into_iter().flatten() {
            *s = s.detached();
        }
        for b in [&mut self.correlation_data, &mut self.authentication_data]
            .into_iter()
            .flatten()
        {
            *b = Bytes::copy_from_slice(b);
        }
        for (k, v) in &mut self.user_properties {
            *k = k.detached();
            *v = v.detached();
        }
    }

    /// Reads a property length and the properties it covers.
    pub(crate) fn decode(r: &mut Reader, ctx: Context) -> Result<Properties, DecodeError> {
        let len = r.varint("property length")? as usize;
        let mut p = Properties::default();
        if len == 0 {
            return Ok(p);
        }
        let mut r = r.sub(len)?;
        while !r.is_empty() {
            let id = r.u8("property identifier")?;
            if id > SHARED_SUBSCRIPTION_AVAILABLE || !KNOWN.contains(&id) {
                return Err(DecodeError::UnknownProperty(id));
            }
            if !ctx.allows(id) {
                return Err(DecodeError::PropertyNotAllowed {
                    id,
                    packet: ctx.name,
                });
            }
            const F: &str = "property value";
            match id {
                PAYLOAD_FORMAT_INDICATOR => {
                    let v = flag(id, r.u8(F)?)?;
                    set_once(&mut p.payload_format_indicator, id, v)?
                }
                MESSAGE_EXPIRY_INTERVAL => set_once(&mut p.message_expiry_interval, id, r.u32(F)?)?,
                CONTENT_TYPE => set_once(&mut p.content_type, id, r.string("content type")?)?,
                RESPONSE_TOPIC => {
                    let topic = r.string("response topic")?;
                    if topic.is_empty() || topic.contains(['+', '#']) {
                        return Err(DecodeError::WildcardInTopicName(topic.into()));
                    }
                    set_once(&mut p.response_topic, id, topic)?
                }
                CORRELATION_DATA => set_once(&mut p.correlation_data, id, r.binary(F)?)?,
                SUBSCRIPTION_IDENTIFIER => {
                    let v = nonzero(id, r.varint(F)?)?;
                    if ctx == Context::SUBSCRIBE && !p.subscription_identifiers.is_empty() {
                        return Err(DecodeError::DuplicateProperty(id));
                    }
                    p.subscription_identifiers.push(v);
                }
                SESSION_EXPIRY_INTERVAL => set_once(&mut p.session_expiry_interval, id, r.u32(F)?)?,
                ASSIGNED_CLIENT_IDENTIFIER => set_once(
                    &mut p.assigned_client_identifier,
                    id,
                    r.string("assigned client identifier")?,
                )?,
                SERVER_KEEP_ALIVE => set_once(&mut p.server_keep_alive, id, r.u16(F)?)?,
                AUTHENTICATION_METHOD => set_once(
                    &mut p.authentication_method,
                    id,
                    r.string("authentication method")?,
                )?,
                AUTHENTICATION_DATA => set_once(&mut p.authentication_data, id, r.binary(F)?)?,
                REQUEST_PROBLEM_INFORMATION => {
                    let v = flag(id, r.u8(F)?)?;
                    set_once(&mut p.request_problem_information, id, v)?
                }
                WILL_DELAY_INTERVAL => set_once(&mut p.will_delay_interval, id, r.u32(F)?)?,
                REQUEST_RESPONSE_INFORMATION => {
                    let v = flag(id, r.u8(F)?)?;
                    set_once(&mut p.request_response_information, id, v)?
                }
                RESPONSE_INFORMATION => set_once(
                    &mut p.response_information,
                    id,
                    r.string("response information")?,
                )?,
                SERVER_REFERENCE => {
                    set_once(&mut p.server_reference, id, r.string("server reference")?)?
                }
                REASON_STRING => set_once(&mut p.reason_string, id, r.string("reason string")?)?,
                RECEIVE_MAXIMUM => {
                    let v = nonzero(id, r.u16(F)?)?;
                    set_once(&mut p.receive_maximum, id, v)?
                }
                TOPIC_ALIAS_MAXIMUM => set_once(&mut p.topic_alias_maximum, id, r.u16(F)?)?,
                TOPIC_ALIAS => {
                    let v = nonzero(id, r.u16(F)?)?;
                    set_once(&mut p.topic_alias, id, v)?
                }
                MAXIMUM_QOS => {
                    let v = flag(id, r.u8(F)?)?;
                    set_once(&mut p.maximum_qos, id, v)?
                }
                RETAIN_AVAILABLE => {
                    let v = flag(id, r.u8(F)?)? == 1;
                    set_once(&mut p.retain_available, id, v)?
                }
                USER_PROPERTY => {
                    let k = r.string("user property name")?;
                    let v = r.string("user property value")?;
                    p.user_properties.push((k, v));
                }
                MAXIMUM_PACKET_SIZE => {
                    let v = nonzero(id, r.u32(F)?)?;
                    set_once(&mut p.maximum_packet_size, id, v)?
                }
                WILDCARD_SUBSCRIPTION_AVAILABLE => {
                    let v = flag(id, r.u8(F)?)? == 1;
                    set_once(&mut p.wildcard_subscription_available, id, v)?
                }
                SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                    let v = flag(id, r.u8(F)?)? == 1;
                    set_once(&mut p.subscription_identifier_available, id, v)?
                }
                SHARED_SUBSCRIPTION_AVAILABLE => {
                    let v = flag(id, r.u8(F)?)? == 1;
                    set_once(&mut p.shared_subscription_available, id, v)?
                }
                other => return Err(DecodeError::UnknownProperty(other)),
            }
        }
        Ok(p)
    }

    /// Length of the properties without their length prefix; checks every
    /// field fits.
    pub(crate) fn encoded_len(&self) -> Result<usize, EncodeError> {
        let mut n = 0;
        let byte = |o: bool| if o { 2 } else { 0 };
        let str_len = |field: &'static str, s: &Option<ByteStr>| -> Result<usize, EncodeError> {
            match s {
                Some(s) => {
                    check_len(field, s.len())?;
                    Ok(3 + s.len())
                }
                None => Ok(0),
            }
        };
        let bin_len = |field: &'static str, b: &Option<Bytes>| -> Result<usize, EncodeError> {
            match b {
                Some(b) => {
                    check_len(field, b.len())?;
                    Ok(3 + b.len())
                }
                None => Ok(0),
            }
        };
        n += byte(self.payload_format_indicator.is_some());
        n += self.message_expiry_interval.map_or(0, |_| 5);
        n += str_len("content type", &self.content_type)?;
        n += str_len("response topic", &self.response_topic)?;
        n += bin_len("correlation data", &self.correlation_data)?;
        for &sid in &self.subscription_identifiers {
            if sid as usize > crate::wire::VARINT_MAX {
                return Err(EncodeError::VarIntTooLarge(sid as usize));
            }
            n += 1 + varint_len(sid as usize);
        }
        n += self.session_expiry_interval.map_or(0, |_| 5);
        n += str_len(
            "assigned client identifier",
            &self.assigned_client_identifier,
        )?;
        n += self.server_keep_alive.map_or(0, |_| 3);
        n += str_len("authentication method", &self.authentication_method)?;
        n += bin_len("authentication data", &self.authentication_data)?;
        n += byte(self.request_problem_information.is_some());
        n += self.will_delay_interval.map_or(0, |_| 5);
        n += byte(self.request_response_information.is_some());
        n += str_len("response information", &self.response_information)?;
        n += str_len("server reference", &self.server_reference)?;
        n += str_len("reason string", &self.reason_string)?;
        n += self.receive_maximum.map_or(0, |_| 3);
        n += self.topic_alias_maximum.map_or(0, |_| 3);
        n += self.topic_alias.map_or(0, |_| 3);
        n += byte(self.maximum_qos.is_some());
        n += byte(self.retain_available.is_some());
        for (k, v) in &self.user_properties {
            check_len("user property name", k.len())?;
            check_len("user property value", v.len())?;
            n += 5 + k.len() + v.len();
        }
        n += self.maximum_packet_size.map_or(0, |_| 5);
        n += byte(self.wildcard_subscription_available.is_some());
        n += byte(self.subscription_identifier_available.is_some());
        n += byte(self.shared_subscription_available.is_some());
        Ok(n)
    }

    /// Length including the length prefix.
    pub(crate) fn encoded_len_prefixed(&self) -> Result<usize, EncodeError> {
        let n = self.encoded_len()?;
        Ok(varint_len(n) + n)
    }

    /// Writes the length prefix and the properties; `len` is
    /// [`Properties::encoded_len`].
    pub(crate) fn write(&self, buf: &mut BytesMut, len: usize) -> Result<(), EncodeError> {
        put_varint(buf, len)?;
        if len == 0 {
            return Ok(());
        }
        fn u8p(buf: &mut BytesMut, id: u8, v: Option<u8>) {
            if let Some(v) = v {
                buf.put_u8(id);
                buf.put_u8(v);
            }
        }
        fn u16p(buf: &mut BytesMut, id: u8, v: Option<u16>) {
            if let Some(v) = v {
                buf.put_u8(id);
                buf.put_u16(v);
            }
        }
        fn u32p(buf: &mut BytesMut, id: u8, v: Option<u32>) {
            if let Some(v) = v {
                buf.put_u8(id);
                buf.put_u32(v);
            }
        }
        fn binp(buf: &mut BytesMut, id: u8, v: Option<&[u8]>) {
            if let Some(v) = v {
                buf.put_u8(id);
                put_binary(buf, v);
            }
        }
        fn s(v: &Option<ByteStr>) -> Option<&[u8]> {
            v.as_ref().map(|s| s.as_bytes().as_ref())
        }
        fn b(v: &Option<Bytes>) -> Option<&[u8]> {
            v.as_ref().map(|b| b.as_ref())
        }
        let flag = |v: Option<bool>| v.map(u8::from);
        u8p(buf, PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        u32p(buf, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        binp(buf, CONTENT_TYPE, s(&self.content_type));
        binp(buf, RESPONSE_TOPIC, s(&self.response_topic));
        binp(buf, CORRELATION_DATA, b(&self.correlation_data));
        for &sid in &self.subscription_identifiers {
            buf.put_u8(SUBSCRIPTION_IDENTIFIER);
            put_varint(buf, sid as usize)?;
        }
        u32p(buf, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        binp(
            buf,
            ASSIGNED_CLIENT_IDENTIFIER,
            s(&self.assigned_client_identifier),
        );
        u16p(buf, SERVER_KEEP_ALIVE, self.server_keep_alive);
        binp(buf, AUTHENTICATION_METHOD, s(&self.authentication_method));
        binp(buf, AUTHENTICATION_DATA, b(&self.authentication_data));
        u8p(
            buf,
            REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        u32p(buf, WILL_DELAY_INTERVAL, self.will_delay_interval);
        u8p(
            buf,
            REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        binp(buf, RESPONSE_INFORMATION, s(&self.response_information));
        binp(buf, SERVER_REFERENCE, s(&self.server_reference));
        binp(buf, REASON_STRING, s(&self.reason_string));
        u16p(buf, RECEIVE_MAXIMUM, self.receive_maximum);
        u16p(buf, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        u16p(buf, TOPIC_ALIAS, self.topic_alias);
        u8p(buf, MAXIMUM_QOS, self.maximum_qos);
        u8p(buf, RETAIN_AVAILABLE, flag(self.retain_available));
        for (k, v) in &self.user_properties {
            buf.put_u8(USER_PROPERTY);
            put_binary(buf, k.as_bytes());
            put_binary(buf, v.as_bytes());
        }
        u32p(buf, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        u8p(
            buf,
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            flag(self.wildcard_subscription_available),
        );
        u8p(
            buf,
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            flag(self.subscription_identifier_available),
        );
        u8p(
            buf,
            SHARED_SUBSCRIPTION_AVAILABLE,
            flag(self.shared_subscription_available),
        );
        Ok(())
    }
}

/// Every identifier MQTT 5.0 defines.
const KNOWN: &[u8] = &[
    0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1C,
    0x1F, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A,
];
