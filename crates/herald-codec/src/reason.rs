//! MQTT 5.0 reason codes (spec §2.4), their snake_case names, which packets
//! may carry which code, and the mapping to MQTT 3.x CONNACK return codes.
//!
//! The same number can have different names in different packets (0x00 is
//! Success, Normal disconnection and Granted QoS 0); [`ReasonCode::name`]
//! gives the general name, [`ReasonCode::name_in`] the one for a packet type.

use crate::packet::PacketType;
use std::fmt;

/// A reason code as carried on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ReasonCode(pub u8);

macro_rules! reason_codes {
    ($($name:ident = $value:expr, $text:expr;)*) => {
        impl ReasonCode {
            $(
                #[doc = concat!("`", $text, "` (", stringify!($value), ")")]
                pub const $name: ReasonCode = ReasonCode($value);
            )*

            /// The snake_case name of this code (EMQX style), or `None` for
            /// a number MQTT 5.0 does not define.
            fn known_name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some($text),)*
                    _ => None,
                }
            }
        }
    };
}

reason_codes! {
    SUCCESS = 0x00, "success";
    GRANTED_QOS_1 = 0x01, "granted_qos1";
    GRANTED_QOS_2 = 0x02, "granted_qos2";
    DISCONNECT_WITH_WILL_MESSAGE = 0x04, "disconnect_with_will_message";
    NO_MATCHING_SUBSCRIBERS = 0x10, "no_matching_subscribers";
    NO_SUBSCRIPTION_EXISTED = 0x11, "no_subscription_existed";
    CONTINUE_AUTHENTICATION = 0x18, "continue_authentication";
    RE_AUTHENTICATE = 0x19, "re_authenticate";
    UNSPECIFIED_ERROR = 0x80, "unspecified_error";
    MALFORMED_PACKET = 0x81, "malformed_packet";
    PROTOCOL_ERROR = 0x82, "protocol_error";
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83, "implementation_specific_error";
    UNSUPPORTED_PROTOCOL_VERSION = 0x84, "unsupported_protocol_version";
    CLIENT_IDENTIFIER_NOT_VALID = 0x85, "client_identifier_not_valid";
    BAD_USERNAME_OR_PASSWORD = 0x86, "bad_username_or_password";
    NOT_AUTHORIZED = 0x87, "not_authorized";
    SERVER_UNAVAILABLE = 0x88, "server_unavailable";
    SERVER_BUSY = 0x89, "server_busy";
    BANNED = 0x8A, "banned";
    SERVER_SHUTTING_DOWN = 0x8B, "server_shutting_down";
    BAD_AUTHENTICATION_METHOD = 0x8C, "bad_authentication_method";
    KEEP_ALIVE_TIMEOUT = 0x8D, "keepalive_timeout";
    SESSION_TAKEN_OVER = 0x8E, "session_taken_over";
    TOPIC_FILTER_INVALID = 0x8F, "topic_filter_invalid";
    TOPIC_NAME_INVALID = 0x90, "topic_name_invalid";
    PACKET_IDENTIFIER_IN_USE = 0x91, "packet_identifier_in_use";
    PACKET_IDENTIFIER_NOT_FOUND = 0x92, "packet_identifier_not_found";
    RECEIVE_MAXIMUM_EXCEEDED = 0x93, "receive_maximum_exceeded";
    TOPIC_ALIAS_INVALID = 0x94, "topic_alias_invalid";
    PACKET_TOO_LARGE = 0x95, "packet_too_large";
    MESSAGE_RATE_TOO_HIGH = 0x96, "message_rate_too_high";
    QUOTA_EXCEEDED = 0x97, "quota_exceeded";
    ADMINISTRATIVE_ACTION = 0x98, "administrative_action";
    PAYLOAD_FORMAT_INVALID = 0x99, "payload_format_invalid";
    RETAIN_NOT_SUPPORTED = 0x9A, "retain_not_supported";
    QOS_NOT_SUPPORTED = 0x9B, "qos_not_supported";
    USE_ANOTHER_SERVER = 0x9C, "use_another_server";
    SERVER_MOVED = 0x9D, "server_moved";
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E, "shared_subscriptions_not_supported";
    CONNECTION_RATE_EXCEEDED = 0x9F, "connection_rate_exceeded";
    MAXIMUM_CONNECT_TIME = 0xA0, "maximum_connect_time";
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1, "subscription_identifiers_not_supported";
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2, "wildcard_subscriptions_not_supported";
}

const CONNACK_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
const PUBACK_CODES: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL_CODES: &[u8] = &[0x00, 0x92];
const SUBACK_CODES: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
const UNSUBACK_CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
const DISCONNECT_CODES: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
const AUTH_CODES: &[u8] = &[0x00, 0x18, 0x19];

impl ReasonCode {
    /// Whether this code is an error (0x80 and above).
    pub fn is_error(self) -> bool {
        self.0 >= 0x80
    }

    /// The general snake_case name, `"unknown_0xNN"`-free: unknown numbers
    /// give `"unknown"`.
    pub fn name(self) -> &'static str {
        self.known_name().unwrap_or("unknown")
    }

    /// The name this code has in a packet of type `packet`: 0x00 is
    /// `normal_disconnection` in DISCONNECT and `granted_qos0` in SUBACK.
    pub fn name_in(self, packet: PacketType) -> &'static str {
        match (self.0, packet) {
            (0x00, PacketType::Disconnect) => "normal_disconnection",
            (0x00, PacketType::SubAck) => "granted_qos0",
            _ => self.name(),
        }
    }

    /// Whether MQTT 5.0 allows this code in a packet of type `packet`.
    pub fn allowed_in(self, packet: PacketType) -> bool {
        let codes = match packet {
            PacketType::ConnAck => CONNACK_CODES,
            PacketType::PubAck | PacketType::PubRec => PUBACK_CODES,
            PacketType::PubRel | PacketType::PubComp => PUBREL_CODES,
            PacketType::SubAck => SUBACK_CODES,
            PacketType::UnsubAck => UNSUBACK_CODES,
            PacketType::Disconnect => DISCONNECT_CODES,
            PacketType::Auth => AUTH_CODES,
            _ => return false,
        };
        codes.contains(&self.0)
    }

    /// The MQTT 3.1 / 3.1.1 CONNACK return code for this reason: the five
    /// 3.x refusals map one to one; other refusals map to the closest one.
    pub fn to_v3_connack(self) -> u8 {
        match self {
            ReasonCode::SUCCESS => 0,
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => 1,
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID => 2,
            ReasonCode::BAD_USERNAME_OR_PASSWORD | ReasonCode::BAD_AUTHENTICATION_METHOD => 4,
            ReasonCode::NOT_AUTHORIZED | ReasonCode::BANNED => 5,
            _ => 3,
        }
    }

    /// The reason for an MQTT 3.x CONNACK return code, `None` for 6..=255.
    pub fn from_v3_connack(code: u8) -> Option<ReasonCode> {
        Some(match code {
            0 => ReasonCode::SUCCESS,
            1 => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            2 => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            3 => ReasonCode::SERVER_UNAVAILABLE,
            4 => ReasonCode::BAD_USERNAME_OR_PASSWORD,
            5 => ReasonCode::NOT_AUTHORIZED,
            _ => return None,
        })
    }
}

impl fmt::Debug for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReasonCode(0x{:02X} {})", self.0, self.name())
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:02X} {}", self.0, self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_packet() {
        assert_eq!(ReasonCode(0).name_in(PacketType::ConnAck), "success");
        assert_eq!(
            ReasonCode(0).name_in(PacketType::Disconnect),
            "normal_disconnection"
        );
        assert_eq!(ReasonCode(0x86).name(), "bad_username_or_password");
        assert_eq!(ReasonCode(0x03).name(), "unknown");
    }

    #[test]
    fn v3_connack_codes_round_trip() {
        for code in 0..=5u8 {
            let reason = ReasonCode::from_v3_connack(code).unwrap();
            assert_eq!(reason.to_v3_connack(), code);
        }
        assert_eq!(ReasonCode::from_v3_connack(6), None);
        assert_eq!(ReasonCode::BANNED.to_v3_connack(), 5);
    }

    #[test]
    fn allowed_sets() {
        assert!(ReasonCode::NO_MATCHING_SUBSCRIBERS.allowed_in(PacketType::PubAck));
        assert!(!ReasonCode::NO_MATCHING_SUBSCRIBERS.allowed_in(PacketType::PubRel));
        assert!(ReasonCode::PACKET_IDENTIFIER_NOT_FOUND.allowed_in(PacketType::PubComp));
        assert!(!ReasonCode::DISCONNECT_WITH_WILL_MESSAGE.allowed_in(PacketType::ConnAck));
    }
}
