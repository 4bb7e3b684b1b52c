//! Malformed input: one table of (name, protocol, bytes, expected error,
//! expected reason code), and "never panics" properties over random bytes
//! and random mutations of valid encodings.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

mod common;

use bytes::BytesMut;
use common::*;
use herald_codec::{
    DecodeError, DecodeOptions, MAX_PACKET_SIZE, Packet, PacketType, Protocol, ReasonCode, decode,
};
use proptest::prelude::*;

const V3_1: Protocol = Protocol::V3_1;
const V3: Protocol = Protocol::V3_1_1;
const V5: Protocol = Protocol::V5;

/// One malformed input and what decoding it must say.
struct Case {
    name: &'static str,
    protocol: Protocol,
    /// Largest packet accepted.
    max: usize,
    /// Hex pairs; whitespace and `|` are ignored.
    bytes: &'static str,
    error: DecodeError,
    /// The MQTT 5.0 reason code the broker answers with.
    reason: u8,
}

const fn case(
    name: &'static str,
    protocol: Protocol,
    bytes: &'static str,
    error: DecodeError,
    reason: u8,
) -> Case {
    Case {
        name,
        protocol,
        max: MAX_PACKET_SIZE,
        bytes,
        error,
        reason,
    }
}

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'|')
        .collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

use DecodeError::*;
use PacketType as T;

const MALFORMED: u8 = 0x81;
const PROTOCOL_ERROR: u8 = 0x82;
const UNSUPPORTED_VERSION: u8 = 0x84;
const TOPIC_NAME_INVALID: u8 = 0x90;
const TOPIC_ALIAS_INVALID: u8 = 0x94;
const TOO_LARGE: u8 = 0x95;

// CONNECT variable headers used below: "MQTT" level 4 / 5, flags, keep alive 60.
// 00 04 4D 51 54 54 | 04 | flags | 00 3C

fn cases() -> Vec<Case> {
    vec![
        // --- Fixed header -------------------------------------------------
        case(
            "remaining length of 5 bytes",
            V3,
            "30 80 80 80 80 01",
            VarIntTooLong,
            MALFORMED,
        ),
        case(
            "remaining length not minimal (0 in two bytes)",
            V3,
            "C0 80 00",
            VarIntNotMinimal,
            MALFORMED,
        ),
        case(
            "reserved packet type 0",
            V3,
            "00 00",
            ReservedPacketType,
            MALFORMED,
        ),
        case(
            "PUBREL flags 0000 instead of 0010",
            V3,
            "60 02 00 0A",
            InvalidHeaderFlags {
                packet: T::PubRel,
                flags: 0,
            },
            MALFORMED,
        ),
        case(
            "SUBSCRIBE flags 0000 instead of 0010",
            V3,
            "80 08 00 0A 00 03 61 2F 62 01",
            InvalidHeaderFlags {
                packet: T::Subscribe,
                flags: 0,
            },
            MALFORMED,
        ),
        case(
            "UNSUBSCRIBE flags 0011 instead of 0010",
            V5,
            "A3 08 00 0A 00 00 03 61 2F 62",
            InvalidHeaderFlags {
                packet: T::Unsubscribe,
                flags: 3,
            },
            MALFORMED,
        ),
        case(
            "PINGREQ flags 0001",
            V3,
            "C1 00",
            InvalidHeaderFlags {
                packet: T::PingReq,
                flags: 1,
            },
            MALFORMED,
        ),
        case(
            "PUBACK flags 0010",
            V5,
            "42 02 00 0A",
            InvalidHeaderFlags {
                packet: T::PubAck,
                flags: 2,
            },
            MALFORMED,
        ),
        case(
            "AUTH on a 3.1.1 connection",
            V3,
            "F0 00",
            UnexpectedPacketType(T::Auth),
            PROTOCOL_ERROR,
        ),
        case(
            "AUTH on a 3.1 connection",
            V3_1,
            "F0 00",
            UnexpectedPacketType(T::Auth),
            PROTOCOL_ERROR,
        ),
        Case {
            // Only the fixed header has arrived: 0x30, remaining length 200.
            name: "packet over max_packet_size refused at its header",
            protocol: V3,
            max: 100,
            bytes: "30 C8 01",
            error: PacketTooLarge {
                size: 203,
                max: 100,
            },
            reason: TOO_LARGE,
        },
        // --- Remaining length vs content -----------------------------------
        case(
            "remaining length longer than the fields: PUBACK 3.1.1",
            V3,
            "40 03 00 0A 00",
            TrailingBytes {
                packet: T::PubAck,
                extra: 1,
            },
            MALFORMED,
        ),
        case(
            "remaining length longer than the fields: PINGREQ",
            V5,
            "C0 01 00",
            TrailingBytes {
                packet: T::PingReq,
                extra: 1,
            },
            MALFORMED,
        ),
        case(
            "remaining length longer than the fields: DISCONNECT 3.1.1",
            V3,
            "E0 01 00",
            TrailingBytes {
                packet: T::Disconnect,
                extra: 1,
            },
            MALFORMED,
        ),
        case(
            "remaining length shorter than the fields: CONNECT client id cut",
            V3,
            "10 0C 00 04 4D 51 54 54 04 02 00 3C 00 05",
            Truncated {
                packet: T::Connect,
                field: "client identifier",
            },
            MALFORMED,
        ),
        case(
            "remaining length shorter than the fields: SUBSCRIBE options cut",
            V3,
            "82 07 00 0A 00 03 61 2F 62",
            Truncated {
                packet: T::Subscribe,
                field: "subscription options",
            },
            MALFORMED,
        ),
        case(
            "remaining length shorter than the fields: PUBLISH packet id cut",
            V3,
            "32 06 00 03 61 2F 62 00",
            Truncated {
                packet: T::Publish,
                field: "packet identifier",
            },
            MALFORMED,
        ),
        case(
            "property length beyond the packet",
            V5,
            "30 08 00 03 61 2F 62 0A 01 00",
            PropertiesOverrun,
            MALFORMED,
        ),
        case(
            "property value cut by the property length",
            V5,
            "30 09 00 03 61 2F 62 02 02 00 00",
            Truncated {
                packet: T::Publish,
                field: "property value",
            },
            MALFORMED,
        ),
        // --- PUBLISH --------------------------------------------------------
        case(
            "PUBLISH QoS 3",
            V3,
            "36 07 00 03 61 2F 62 00 0A",
            InvalidQoS,
            MALFORMED,
        ),
        case(
            "PUBLISH DUP on QoS 0",
            V3,
            "38 05 00 03 61 2F 62",
            DupOnQoS0,
            MALFORMED,
        ),
        case(
            "PUBLISH topic with +",
            V3,
            "30 05 00 03 61 2F 2B",
            WildcardInTopicName("a/+".into()),
            TOPIC_NAME_INVALID,
        ),
        case(
            "PUBLISH topic with #",
            V5,
            "30 06 00 03 61 2F 23 00",
            WildcardInTopicName("a/#".into()),
            TOPIC_NAME_INVALID,
        ),
        case(
            "PUBLISH topic with malformed UTF-8",
            V3,
            "30 04 00 02 C3 28",
            InvalidUtf8 {
                field: "topic name",
            },
            MALFORMED,
        ),
        case(
            "PUBLISH topic with a UTF-16 surrogate",
            V3,
            "30 05 00 03 ED A0 80",
            InvalidUtf8 {
                field: "topic name",
            },
            MALFORMED,
        ),
        case(
            "PUBLISH topic with an overlong U+0000 (C0 80)",
            V3,
            "30 04 00 02 C0 80",
            InvalidUtf8 {
                field: "topic name",
            },
            MALFORMED,
        ),
        case(
            "PUBLISH topic with U+0000",
            V3,
            "30 05 00 03 61 00 62",
            NullCharacter {
                field: "topic name",
            },
            MALFORMED,
        ),
        case(
            "PUBLISH empty topic in 3.1.1",
            V3,
            "30 02 00 00",
            EmptyTopicName,
            PROTOCOL_ERROR,
        ),
        case(
            "PUBLISH empty topic without topic alias in 5.0",
            V5,
            "30 03 00 00 00",
            EmptyTopicName,
            PROTOCOL_ERROR,
        ),
        case(
            "PUBLISH QoS 1 packet id 0",
            V3,
            "32 07 00 03 61 2F 62 00 00",
            ZeroPacketId(T::Publish),
            PROTOCOL_ERROR,
        ),
        case(
            "PUBLISH QoS 2 packet id 0",
            V5,
            "34 08 00 03 61 2F 62 00 00 00",
            ZeroPacketId(T::Publish),
            PROTOCOL_ERROR,
        ),
        // --- Properties -----------------------------------------------------
        case(
            "Topic Alias 0",
            V5,
            "30 09 00 03 61 2F 62 03 23 00 00",
            InvalidPropertyValue { id: 0x23, value: 0 },
            TOPIC_ALIAS_INVALID,
        ),
        case(
            "unknown property id 0x04",
            V5,
            "30 08 00 03 61 2F 62 02 04 00",
            UnknownProperty(0x04),
            MALFORMED,
        ),
        case(
            "unknown property id 0xFF",
            V5,
            "30 08 00 03 61 2F 62 02 FF 00",
            UnknownProperty(0xFF),
            MALFORMED,
        ),
        case(
            "Payload Format Indicator 2",
            V5,
            "30 08 00 03 61 2F 62 02 01 02",
            InvalidPropertyValue { id: 0x01, value: 2 },
            PROTOCOL_ERROR,
        ),
        case(
            "Response Topic with a wildcard",
            V5,
            "30 0B 00 03 61 2F 62 05 08 00 02 72 23",
            WildcardInTopicName("r#".into()),
            TOPIC_NAME_INVALID,
        ),
        case(
            "Session Expiry Interval in PUBLISH",
            V5,
            "30 0B 00 03 61 2F 62 05 11 00 00 00 01",
            PropertyNotAllowed {
                id: 0x11,
                packet: "PUBLISH",
            },
            MALFORMED,
        ),
        case(
            "duplicate Session Expiry Interval in CONNECT",
            V5,
            "10 1A 00 04 4D 51 54 54 05 02 00 3C |
             0A 11 00 00 00 0A 11 00 00 00 0A | 00 03 61 62 63",
            DuplicateProperty(0x11),
            PROTOCOL_ERROR,
        ),
        case(
            "Topic Alias in CONNECT",
            V5,
            "10 13 00 04 4D 51 54 54 05 02 00 3C | 03 23 00 01 | 00 03 61 62 63",
            PropertyNotAllowed {
                id: 0x23,
                packet: "CONNECT",
            },
            MALFORMED,
        ),
        case(
            "Receive Maximum 0 in CONNECT",
            V5,
            "10 13 00 04 4D 51 54 54 05 02 00 3C | 03 21 00 00 | 00 03 61 62 63",
            InvalidPropertyValue { id: 0x21, value: 0 },
            PROTOCOL_ERROR,
        ),
        case(
            "Maximum Packet Size 0 in CONNECT",
            V5,
            "10 15 00 04 4D 51 54 54 05 02 00 3C | 05 27 00 00 00 00 | 00 03 61 62 63",
            InvalidPropertyValue { id: 0x27, value: 0 },
            PROTOCOL_ERROR,
        ),
        case(
            "Will Delay Interval in CONNECT properties",
            V5,
            "10 15 00 04 4D 51 54 54 05 02 00 3C | 05 18 00 00 00 01 | 00 03 61 62 63",
            PropertyNotAllowed {
                id: 0x18,
                packet: "CONNECT",
            },
            MALFORMED,
        ),
        case(
            "Maximum QoS 2 in CONNACK",
            V5,
            "20 05 00 00 02 24 02",
            InvalidPropertyValue { id: 0x24, value: 2 },
            PROTOCOL_ERROR,
        ),
        case(
            "Subscription Identifier 0",
            V5,
            "82 0B 00 0A 02 0B 00 00 03 61 2F 62 00",
            InvalidPropertyValue { id: 0x0B, value: 0 },
            PROTOCOL_ERROR,
        ),
        case(
            "two Subscription Identifiers in SUBSCRIBE",
            V5,
            "82 0D 00 0A 04 0B 01 0B 02 00 03 61 2F 62 00",
            DuplicateProperty(0x0B),
            PROTOCOL_ERROR,
        ),
        // --- CONNECT --------------------------------------------------------
        case(
            "unknown protocol name MQTX",
            V3,
            "10 0F 00 04 4D 51 54 58 04 02 00 3C 00 03 61 62 63",
            InvalidProtocolName("MQTX".into()),
            UNSUPPORTED_VERSION,
        ),
        case(
            "protocol level 6",
            V3,
            "10 0F 00 04 4D 51 54 54 06 02 00 3C 00 03 61 62 63",
            UnsupportedProtocolLevel(6),
            UNSUPPORTED_VERSION,
        ),
        case(
            "MQIsdp with level 4",
            V3,
            "10 11 00 06 4D 51 49 73 64 70 04 02 00 3C 00 03 61 62 63",
            UnsupportedProtocolLevel(4),
            UNSUPPORTED_VERSION,
        ),
        case(
            "CONNECT reserved flag",
            V3,
            "10 0F 00 04 4D 51 54 54 04 03 00 3C 00 03 61 62 63",
            ConnectReservedFlag,
            MALFORMED,
        ),
        case(
            "will QoS without will flag",
            V3,
            "10 0F 00 04 4D 51 54 54 04 0A 00 3C 00 03 61 62 63",
            WillFlagsWithoutWill,
            MALFORMED,
        ),
        case(
            "will retain without will flag",
            V5,
            "10 10 00 04 4D 51 54 54 05 22 00 3C 00 00 03 61 62 63",
            WillFlagsWithoutWill,
            MALFORMED,
        ),
        case(
            "will QoS 3",
            V3,
            "10 17 00 04 4D 51 54 54 04 1E 00 3C 00 03 61 62 63 | 00 01 74 | 00 03 62 79 65",
            InvalidQoS,
            MALFORMED,
        ),
        case(
            "will topic with a wildcard",
            V3,
            "10 17 00 04 4D 51 54 54 04 06 00 3C 00 03 61 62 63 | 00 01 23 | 00 03 62 79 65",
            WildcardInTopicName("#".into()),
            TOPIC_NAME_INVALID,
        ),
        case(
            "password without user name in 3.1.1",
            V3,
            "10 12 00 04 4D 51 54 54 04 42 00 3C 00 03 61 62 63 00 01 70",
            PasswordWithoutUsername,
            MALFORMED,
        ),
        case(
            "client id with malformed UTF-8",
            V3,
            "10 0F 00 04 4D 51 54 54 04 02 00 3C 00 03 61 FF 62",
            InvalidUtf8 {
                field: "client identifier",
            },
            MALFORMED,
        ),
        case(
            "client id with U+0000",
            V3,
            "10 0F 00 04 4D 51 54 54 04 02 00 3C 00 03 61 00 62",
            NullCharacter {
                field: "client identifier",
            },
            MALFORMED,
        ),
        case(
            "user name with U+0000 in 5.0",
            V5,
            "10 13 00 04 4D 51 54 54 05 82 00 3C 00 00 01 61 00 03 75 00 72",
            NullCharacter { field: "user name" },
            MALFORMED,
        ),
        // --- CONNACK --------------------------------------------------------
        case(
            "CONNACK 3.1.1 return code 6",
            V3,
            "20 02 00 06",
            InvalidConnAck("return code above 5"),
            MALFORMED,
        ),
        case(
            "CONNACK reserved acknowledge flags",
            V3,
            "20 02 02 00",
            InvalidConnAck("reserved acknowledge flags set"),
            MALFORMED,
        ),
        case(
            "CONNACK 5.0 reason code 0x04",
            V5,
            "20 03 00 04 00",
            InvalidReasonCode {
                packet: T::ConnAck,
                code: 0x04,
            },
            MALFORMED,
        ),
        // --- Acknowledgements -----------------------------------------------
        case(
            "PUBACK packet id 0",
            V3,
            "40 02 00 00",
            ZeroPacketId(T::PubAck),
            PROTOCOL_ERROR,
        ),
        case(
            "PUBCOMP packet id 0 in 5.0",
            V5,
            "70 02 00 00",
            ZeroPacketId(T::PubComp),
            PROTOCOL_ERROR,
        ),
        case(
            "PUBACK reason code 0x92 (PUBREL/PUBCOMP only)",
            V5,
            "40 03 00 0A 92",
            InvalidReasonCode {
                packet: T::PubAck,
                code: 0x92,
            },
            MALFORMED,
        ),
        case(
            "PUBREL reason code 0x10 (PUBACK/PUBREC only)",
            V5,
            "62 03 00 0A 10",
            InvalidReasonCode {
                packet: T::PubRel,
                code: 0x10,
            },
            MALFORMED,
        ),
        case(
            "SUBACK 3.1.1 return code 3",
            V3,
            "90 03 00 0A 03",
            InvalidReasonCode {
                packet: T::SubAck,
                code: 3,
            },
            MALFORMED,
        ),
        case(
            "UNSUBACK 5.0 reason code 0x10",
            V5,
            "B0 04 00 0A 00 10",
            InvalidReasonCode {
                packet: T::UnsubAck,
                code: 0x10,
            },
            MALFORMED,
        ),
        case(
            "DISCONNECT 5.0 reason code 0x84 (CONNACK only)",
            V5,
            "E0 01 84",
            InvalidReasonCode {
                packet: T::Disconnect,
                code: 0x84,
            },
            MALFORMED,
        ),
        case(
            "AUTH reason code 0x87",
            V5,
            "F0 01 87",
            InvalidReasonCode {
                packet: T::Auth,
                code: 0x87,
            },
            MALFORMED,
        ),
        // --- SUBSCRIBE / UNSUBSCRIBE ----------------------------------------
        case(
            "SUBSCRIBE packet id 0",
            V3,
            "82 08 00 00 00 03 61 2F 62 00",
            ZeroPacketId(T::Subscribe),
            PROTOCOL_ERROR,
        ),
        case(
            "UNSUBSCRIBE packet id 0",
            V3,
            "A2 07 00 00 00 03 61 2F 62",
            ZeroPacketId(T::Unsubscribe),
            PROTOCOL_ERROR,
        ),
        case(
            "SUBSCRIBE 3.1.1 options reserved bit 2",
            V3,
            "82 08 00 0A 00 03 61 2F 62 04",
            SubscriptionOptionsReserved(0x04),
            MALFORMED,
        ),
        case(
            "SUBSCRIBE 3.1 options reserved bit 7",
            V3_1,
            "82 08 00 0A 00 03 61 2F 62 80",
            SubscriptionOptionsReserved(0x80),
            MALFORMED,
        ),
        case(
            "SUBSCRIBE 5.0 options reserved bit 6",
            V5,
            "82 09 00 0A 00 00 03 61 2F 62 40",
            SubscriptionOptionsReserved(0x40),
            MALFORMED,
        ),
        case(
            "SUBSCRIBE 5.0 retain handling 3",
            V5,
            "82 09 00 0A 00 00 03 61 2F 62 30",
            InvalidRetainHandling,
            PROTOCOL_ERROR,
        ),
        case(
            "SUBSCRIBE 3.1.1 maximum QoS 3",
            V3,
            "82 08 00 0A 00 03 61 2F 62 03",
            InvalidSubscriptionQoS,
            PROTOCOL_ERROR,
        ),
        case(
            "SUBSCRIBE 5.0 maximum QoS 3",
            V5,
            "82 09 00 0A 00 00 03 61 2F 62 03",
            InvalidSubscriptionQoS,
            PROTOCOL_ERROR,
        ),
        case(
            "SUBSCRIBE 3.1.1 with no filters",
            V3,
            "82 02 00 0A",
            NoTopicFilters(T::Subscribe),
            PROTOCOL_ERROR,
        ),
        case(
            "SUBSCRIBE 5.0 with no filters",
            V5,
            "82 03 00 0A 00",
            NoTopicFilters(T::Subscribe),
            PROTOCOL_ERROR,
        ),
        case(
            "UNSUBSCRIBE with no filters",
            V3,
            "A2 02 00 0A",
            NoTopicFilters(T::Unsubscribe),
            PROTOCOL_ERROR,
        ),
        case(
            "SUBSCRIBE filter with U+0000",
            V5,
            "82 09 00 0A 00 00 03 61 00 62 00",
            NullCharacter {
                field: "topic filter",
            },
            MALFORMED,
        ),
    ]
}

#[test]
fn malformed_table() {
    let mut failures = Vec::new();
    for c in cases() {
        let bytes = hex(c.bytes);
        let opts = DecodeOptions {
            protocol: c.protocol,
            max_packet_size: c.max,
        };
        let got = decode(&mut BytesMut::from(&bytes[..]), &opts);
        if got != Err(c.error.clone()) {
            failures.push(format!(
                "{}: expected Err({:?}), got {:?}",
                c.name, c.error, got
            ));
            continue;
        }
        if c.error.reason_code() != ReasonCode(c.reason) {
            failures.push(format!(
                "{}: expected reason 0x{:02X}, got {:?}",
                c.name,
                c.reason,
                c.error.reason_code()
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Each case names a real violation: the same bytes with the violation
/// repaired must decode (this keeps the table from passing on typos that
/// happen to break something else). Checked here for the cases where a
/// one-byte repair exists.
#[test]
fn malformed_cases_differ_from_valid_packets_by_one_rule() {
    let repairs: &[(&str, Protocol, &str)] = &[
        ("PUBREL flags", V3, "62 02 00 0A"),
        ("PUBLISH QoS 1", V3, "32 07 00 03 61 2F 62 00 0A"),
        ("PUBLISH QoS 0", V3, "30 05 00 03 61 2F 62"),
        (
            "CONNECT",
            V3,
            "10 0F 00 04 4D 51 54 54 04 02 00 3C 00 03 61 62 63",
        ),
        (
            "CONNECT 5.0 with Receive Maximum 1",
            V5,
            "10 13 00 04 4D 51 54 54 05 02 00 3C | 03 21 00 01 | 00 03 61 62 63",
        ),
        (
            "CONNECT 5.0 with one Session Expiry Interval",
            V5,
            "10 15 00 04 4D 51 54 54 05 02 00 3C | 05 11 00 00 00 0A | 00 03 61 62 63",
        ),
        (
            "PUBLISH Topic Alias 1",
            V5,
            "30 09 00 03 61 2F 62 03 23 00 01",
        ),
        (
            "SUBSCRIBE Subscription Identifier 1",
            V5,
            "82 0B 00 0A 02 0B 01 00 03 61 2F 62 00",
        ),
        (
            "SUBSCRIBE 5.0 options 0x2E",
            V5,
            "82 09 00 0A 00 00 03 61 2F 62 2E",
        ),
        ("PUBACK reason 0x10", V5, "40 03 00 0A 10"),
        (
            "will QoS 2 with will flag",
            V3,
            "10 17 00 04 4D 51 54 54 04 16 00 3C 00 03 61 62 63 | 00 01 74 | 00 03 62 79 65",
        ),
        (
            "password with user name",
            V3,
            "10 15 00 04 4D 51 54 54 04 C2 00 3C 00 03 61 62 63 00 01 75 00 01 70",
        ),
    ];
    for (name, protocol, bytes) in repairs {
        let got = decode(&mut BytesMut::from(&hex(bytes)[..]), &opts(*protocol));
        assert!(matches!(got, Ok(Some(_))), "{name}: {got:?}");
    }
}

/// The size check needs only the fixed header: with the remaining length
/// still incomplete the decoder waits, and the moment it is complete the
/// packet is refused, before any of the body.
#[test]
fn too_large_is_refused_as_soon_as_the_length_is_known() {
    let opts = DecodeOptions {
        protocol: V3,
        max_packet_size: 100,
    };
    assert_eq!(decode(&mut BytesMut::from(&[0x30][..]), &opts), Ok(None));
    assert_eq!(
        decode(&mut BytesMut::from(&[0x30, 0xC8][..]), &opts),
        Ok(None)
    );
    assert_eq!(
        decode(&mut BytesMut::from(&[0x30, 0xC8, 0x01][..]), &opts),
        Err(PacketTooLarge {
            size: 203,
            max: 100
        })
    );
    // 100 bytes exactly is fine: 2 header bytes + 98.
    assert_eq!(
        decode(&mut BytesMut::from(&[0x30, 98][..]), &opts),
        Ok(None)
    );
}

/// Decodes everything in `bytes` at `opts`; every packet it yields must
/// re-encode, and decoding the re-encoding gives the same packet.
fn decode_all(bytes: &[u8], opts: &DecodeOptions) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::from(bytes);
    loop {
        let before = buf.len();
        match decode(&mut buf, opts) {
            Ok(None) => {
                prop_assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                return Ok(());
            }
            Err(e) => {
                // Every error maps to an error reason code.
                prop_assert!(e.reason_code().is_error(), "{:?}", e);
                return Ok(());
            }
            Ok(Some(packet)) => {
                prop_assert!(buf.len() < before, "a packet consumed no bytes");
                let protocol = match &packet {
                    Packet::Connect(c) => c.protocol,
                    _ => opts.protocol,
                };
                let mut out = BytesMut::new();
                let n = packet.encode(protocol, &mut out);
                prop_assert_eq!(n, Ok(out.len()), "re-encoding {:?}", packet);
                let again = decode(&mut out, &DecodeOptions { protocol, ..*opts });
                prop_assert_eq!(again, Ok(Some(packet)));
            }
        }
    }
}

fn max_size() -> impl Strategy<Value = usize> {
    prop_oneof![Just(MAX_PACKET_SIZE), 2..64usize]
}

/// A byte-level edit of an encoding.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    if len == 0 {
        return;
    }
    match *m {
        Mutation::Set(i, b) => bytes[i % len] = b,
        Mutation::Flip(i, bit) => bytes[i % len] ^= 1 << (bit % 8),
        Mutation::Insert(i, b) => bytes.insert(i % (len + 1), b),
        Mutation::Remove(i) => {
            bytes.remove(i % len);
        }
        Mutation::Truncate(i) => bytes.truncate(i % len),
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

proptest! {
    #[test]
    fn random_bytes_never_panic(
        protocol in protocol(),
        max in max_size(),
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        decode_all(&bytes, &DecodeOptions { protocol, max_packet_size: max })?;
    }

    /// Random bodies behind a plausible fixed header reach deeper than
    /// random bytes, which mostly fail on the first byte.
    #[test]
    fn random_bodies_never_panic(
        protocol in protocol(),
        first in any::<u8>(),
        body in proptest::collection::vec(any::<u8>(), 0..127),
    ) {
        let mut bytes = vec![first, body.len() as u8];
        bytes.extend(&body);
        decode_all(&bytes, &opts(protocol))?;
    }

    #[test]
    fn mutated_encodings_never_panic(
        (protocol, packet) in protocol_and_packet(),
        decode_at in protocol(),
        max in max_size(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let mut bytes = encode(&packet, protocol).to_vec();
        for m in &mutations {
            mutate(&mut bytes, m);
        }
        decode_all(&bytes, &DecodeOptions { protocol: decode_at, max_packet_size: max })?;
    }
}
