//! Why a packet could not be decoded or encoded.
//!
//! Every decoding rule the MQTT specifications state has its own variant, so a
//! log line says which rule broke, and [`DecodeError::reason_code`] maps it to
//! the reason code the broker answers with (0x81 malformed packet, 0x82
//! protocol error, 0x95 packet too large, ...).

use crate::packet::PacketType;
use crate::reason::ReasonCode;

/// A violation found while decoding. Nothing here is recoverable on the same
/// connection: the broker answers with [`DecodeError::reason_code`] (MQTT 5.0)
/// or closes silently (3.x).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Remaining Length (or another variable byte integer) used more than 4 bytes.
    #[error("variable byte integer longer than 4 bytes")]
    VarIntTooLong,
    /// A variable byte integer was not written in its shortest form.
    #[error("variable byte integer not in its shortest form")]
    VarIntNotMinimal,
    /// The packet is larger than the configured maximum packet size.
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge {
        /// Total packet size: fixed header plus remaining length.
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// Packet type 0 (reserved) was received.
    #[error("reserved packet type 0")]
    ReservedPacketType,
    /// A packet type that only the other side may send (e.g. CONNACK to a
    /// server) or AUTH on a 3.x connection.
    #[error("{0:?} is not valid for this protocol level")]
    UnexpectedPacketType(PacketType),
    /// Fixed-header flag bits that the packet type reserves were wrong.
    #[error("reserved fixed-header flags 0x{flags:X} on {packet:?}")]
    InvalidHeaderFlags {
        /// The packet whose flags were wrong.
        packet: PacketType,
        /// The low four bits of the first byte.
        flags: u8,
    },
    /// QoS 3 in a PUBLISH or a will (both Malformed Packets in 5.0).
    #[error("QoS 3 is not a valid QoS")]
    InvalidQoS,
    /// Maximum QoS 3 in a subscription's options: 5.0 §3.8.3.1 makes it a
    /// Protocol Error (3.1.1 calls it malformed, but 3.x has no reason
    /// codes: the connection closes either way).
    #[error("subscription maximum QoS 3 is not valid")]
    InvalidSubscriptionQoS,
    /// DUP set on a QoS 0 PUBLISH.
    #[error("DUP flag set on a QoS 0 PUBLISH")]
    DupOnQoS0,
    /// The content ended before a field the packet must have.
    #[error("{packet:?} ends before its {field}")]
    Truncated {
        /// The packet being decoded.
        packet: PacketType,
        /// The field that did not fit.
        field: &'static str,
    },
    /// Bytes remained after the last field of the packet.
    #[error("{packet:?} has {extra} bytes after its last field")]
    TrailingBytes {
        /// The packet being decoded.
        packet: PacketType,
        /// How many bytes were left over.
        extra: usize,
    },
    /// The CONNECT protocol name is neither `MQTT` nor `MQIsdp`.
    #[error("unknown protocol name {0:?}")]
    InvalidProtocolName(String),
    /// The CONNECT protocol level is not 3, 4 or 5 (or does not fit its name).
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolLevel(u8),
    /// The reserved bit 0 of the CONNECT flags was set.
    #[error("reserved CONNECT flag bit set")]
    ConnectReservedFlag,
    /// Will QoS or Will Retain was set without the Will Flag.
    #[error("will QoS or will retain set without the will flag")]
    WillFlagsWithoutWill,
    /// A 3.x CONNECT had the password flag without the username flag.
    #[error("password flag set without username flag")]
    PasswordWithoutUsername,
    /// A string was not well-formed UTF-8.
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 {
        /// Which string.
        field: &'static str,
    },
    /// A string contained U+0000.
    #[error("{field} contains U+0000")]
    NullCharacter {
        /// Which string.
        field: &'static str,
    },
    /// A PUBLISH topic name contained `+` or `#`.
    #[error("wildcard in topic name {0:?}")]
    WildcardInTopicName(String),
    /// A PUBLISH topic name was empty (and, in 5.0, had no topic alias).
    #[error("empty topic name without a topic alias")]
    EmptyTopicName,
    /// A packet identifier of 0 where a non-zero one is required.
    #[error("packet identifier 0 in {0:?}")]
    ZeroPacketId(PacketType),
    /// A property identifier that MQTT 5.0 does not define.
    #[error("unknown property identifier 0x{0:02X}")]
    UnknownProperty(u8),
    /// A property that the packet may not carry.
    #[error("property 0x{id:02X} is not allowed in {packet}")]
    PropertyNotAllowed {
        /// The property identifier.
        id: u8,
        /// Where it appeared: a packet name or "will properties".
        packet: &'static str,
    },
    /// A property that may appear once appeared twice.
    #[error("property 0x{0:02X} appears more than once")]
    DuplicateProperty(u8),
    /// A property value outside its allowed range (e.g. Receive Maximum 0).
    #[error("property 0x{id:02X} has invalid value {value}")]
    InvalidPropertyValue {
        /// The property identifier.
        id: u8,
        /// The value received.
        value: u32,
    },
    /// The property length ran past the end of the packet.
    #[error("property length exceeds the packet")]
    PropertiesOverrun,
    /// Reserved bits of a subscription options byte were set.
    #[error("reserved bits set in subscription options 0x{0:02X}")]
    SubscriptionOptionsReserved(u8),
    /// Retain Handling 3.
    #[error("retain handling 3 is not valid")]
    InvalidRetainHandling,
    /// A SUBSCRIBE or UNSUBSCRIBE with no topic filter.
    #[error("{0:?} without any topic filter")]
    NoTopicFilters(PacketType),
    /// A reason code that the packet may not carry.
    #[error("reason code 0x{code:02X} is not valid in {packet:?}")]
    InvalidReasonCode {
        /// The packet being decoded.
        packet: PacketType,
        /// The code received.
        code: u8,
    },
    /// A 3.x CONNACK return code above 5 or reserved acknowledge flags.
    #[error("invalid CONNACK: {0}")]
    InvalidConnAck(&'static str),
}

impl DecodeError {
    /// The MQTT 5.0 reason code the broker answers this error with.
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            InvalidProtocolName(_) | UnsupportedProtocolLevel(_) => {
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
            }
            WildcardInTopicName(_) => ReasonCode::TOPIC_NAME_INVALID,
            // 5.0 §3.3.4: "A Topic Alias value of 0 ... is a Protocol Error,
            // the receiver uses DISCONNECT with Reason Code of 0x94 (Topic
            // Alias invalid)".
            InvalidPropertyValue {
                id: crate::properties::id::TOPIC_ALIAS,
                ..
            } => ReasonCode::TOPIC_ALIAS_INVALID,
            UnexpectedPacketType(_)
            | EmptyTopicName
            | ZeroPacketId(_)
            | DuplicateProperty(_)
            | InvalidPropertyValue { .. }
            | InvalidRetainHandling
            | InvalidSubscriptionQoS
            | NoTopicFilters(_) => ReasonCode::PROTOCOL_ERROR,
            VarIntTooLong
            | VarIntNotMinimal
            | ReservedPacketType
            | InvalidHeaderFlags { .. }
            | InvalidQoS
            | DupOnQoS0
            | Truncated { .. }
            | TrailingBytes { .. }
            | ConnectReservedFlag
            | WillFlagsWithoutWill
            | PasswordWithoutUsername
            | InvalidUtf8 { .. }
            | NullCharacter { .. }
            | UnknownProperty(_)
            | PropertyNotAllowed { .. }
            | PropertiesOverrun
            | SubscriptionOptionsReserved(_)
            | InvalidReasonCode { .. }
            | InvalidConnAck(_) => ReasonCode::MALFORMED_PACKET,
        }
    }
}

/// A packet that cannot be written: a field does not fit the wire format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A string or binary field is longer than 65,535 bytes.
    #[error("{field} is {len} bytes, more than 65535")]
    FieldTooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// The remaining length exceeds 268,435,455 bytes, or a variable byte
    /// integer value does not fit in four bytes.
    #[error("value {0} does not fit a variable byte integer")]
    VarIntTooLarge(usize),
    /// QoS 1/2 PUBLISH, SUBSCRIBE, UNSUBSCRIBE or an acknowledgement with packet id 0.
    #[error("packet identifier 0 in {0:?}")]
    ZeroPacketId(PacketType),
    /// A packet the protocol level does not have (AUTH in 3.x).
    #[error("{0:?} does not exist in this protocol level")]
    NotInProtocol(PacketType),
}
