//! Byte-exact vectors: hand-written packets following the field layouts and
//! examples of the MQTT 3.1, 3.1.1 and 5.0 specifications. Each vector
//! asserts both directions: decode(bytes) == value and encode(value) == bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

use bytes::{Bytes, BytesMut};
use herald_codec::{
    Auth, ByteStr, ConnAck, Connect, DecodeOptions, Disconnect, MAX_PACKET_SIZE, Packet,
    Properties, Protocol, PubResp, Publish, QoS, ReasonCode, RetainHandling, SubAck, SubOptions,
    Subscribe, Subscription, UnsubAck, Unsubscribe, Will, decode,
};

/// Bytes from a string of hex pairs; whitespace and `|` (field separators in
/// the layouts below) are ignored.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'|')
        .collect();
    assert!(
        digits.len().is_multiple_of(2),
        "odd number of hex digits in {s:?}"
    );
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).expect("ascii");
            u8::from_str_radix(pair, 16).unwrap_or_else(|_| panic!("bad hex {pair:?}"))
        })
        .collect()
}

fn opts(protocol: Protocol) -> DecodeOptions {
    DecodeOptions {
        protocol,
        max_packet_size: MAX_PACKET_SIZE,
    }
}

/// Asserts decode(bytes) == packet (consuming all bytes) and
/// encode(packet) == bytes.
fn check(name: &str, protocol: Protocol, bytes: &[u8], packet: Packet) {
    let mut buf = BytesMut::from(bytes);
    assert_eq!(
        decode(&mut buf, &opts(protocol)),
        Ok(Some(packet.clone())),
        "{name}: decode"
    );
    assert!(buf.is_empty(), "{name}: {} bytes left over", buf.len());
    let mut out = BytesMut::new();
    assert_eq!(
        packet.encode(protocol, &mut out),
        Ok(bytes.len()),
        "{name}: encode length"
    );
    assert_eq!(&out[..], bytes, "{name}: encode bytes");
}

/// Asserts only decode(bytes) == packet, for valid non-canonical forms the
/// encoder writes shorter.
fn check_decode(name: &str, protocol: Protocol, bytes: &[u8], packet: Packet) {
    let mut buf = BytesMut::from(bytes);
    assert_eq!(
        decode(&mut buf, &opts(protocol)),
        Ok(Some(packet)),
        "{name}: decode"
    );
    assert!(buf.is_empty(), "{name}: {} bytes left over", buf.len());
}

fn s(v: &str) -> ByteStr {
    ByteStr::from(v)
}

fn b(v: &[u8]) -> Bytes {
    Bytes::copy_from_slice(v)
}

#[test]
fn connect_3_1_1_spec_example() {
    // 3.1.1 §3.1.2.10 (Figure 3.6): protocol name "MQTT", level 4, flags
    // user name 1, password 1, will retain 0, will QoS 01, will 1, clean
    // session 1, reserved 0 (0xCE), keep alive 10. Payload §3.1.3: client
    // id, will topic, will message, user name, password.
    let bytes = hex("10 29 |
        00 04 4D 51 54 54 | 04 | CE | 00 0A |
        00 06 68 65 72 61 6C 64 |
        00 03 62 79 65 |
        00 04 67 6F 6E 65 |
        00 04 75 73 65 72 |
        00 04 70 61 73 73");
    let packet = Packet::Connect(Box::new(Connect {
        protocol: Protocol::V3_1_1,
        clean_start: true,
        keep_alive: 10,
        properties: Properties::default(),
        client_id: s("herald"),
        will: Some(Will {
            topic: s("bye"),
            payload: b(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::default(),
        }),
        username: Some(s("user")),
        password: Some(b(b"pass")),
    }));
    check("CONNECT 3.1.1", Protocol::V3_1_1, &bytes, packet);
}

#[test]
fn connect_3_1_1_minimal() {
    // Clean session only, keep alive 60, empty client id.
    let bytes = hex("10 0C | 00 04 4D 51 54 54 | 04 | 02 | 00 3C | 00 00");
    let packet = Packet::Connect(Box::new(Connect {
        protocol: Protocol::V3_1_1,
        clean_start: true,
        keep_alive: 60,
        properties: Properties::default(),
        client_id: ByteStr::new(),
        will: None,
        username: None,
        password: None,
    }));
    check("minimal CONNECT 3.1.1", Protocol::V3_1_1, &bytes, packet);
}

#[test]
fn connect_3_1() {
    // MQTT 3.1: protocol name "MQIsdp", level 3; will retain set, will QoS 2.
    let bytes = hex("10 19 |
        00 06 4D 51 49 73 64 70 | 03 | 36 | 00 3C |
        00 02 63 31 |
        00 03 61 2F 62 |
        00 02 78 79");
    let packet = Packet::Connect(Box::new(Connect {
        protocol: Protocol::V3_1,
        clean_start: true,
        keep_alive: 60,
        properties: Properties::default(),
        client_id: s("c1"),
        will: Some(Will {
            topic: s("a/b"),
            payload: b(b"xy"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: Properties::default(),
        }),
        username: None,
        password: None,
    }));
    // The decoder learns the level from the packet, whatever the options say.
    check("CONNECT 3.1", Protocol::V3_1, &bytes, packet.clone());
    check_decode(
        "CONNECT 3.1 read by a V5 decoder",
        Protocol::V5,
        &bytes,
        packet,
    );
}

#[test]
fn connect_5_spec_example() {
    // 5.0 §3.1.2.11 (Figure 3-9 style): "MQTT", version 5, flags 0xCE, keep
    // alive 10, properties length 5, Session Expiry Interval identifier 17
    // (0x11) = 10. Payload §3.1.3: client id, will properties (Will Delay
    // Interval 0x18 = 30), will topic, will payload, user name, password.
    let bytes = hex("10 35 |
        00 04 4D 51 54 54 | 05 | CE | 00 0A |
        05 | 11 00 00 00 0A |
        00 06 68 65 72 61 6C 64 |
        05 | 18 00 00 00 1E |
        00 03 62 79 65 |
        00 04 67 6F 6E 65 |
        00 04 75 73 65 72 |
        00 04 70 61 73 73");
    let packet = Packet::Connect(Box::new(Connect {
        protocol: Protocol::V5,
        clean_start: true,
        keep_alive: 10,
        properties: Properties {
            session_expiry_interval: Some(10),
            ..Properties::default()
        },
        client_id: s("herald"),
        will: Some(Will {
            topic: s("bye"),
            payload: b(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties {
                will_delay_interval: Some(30),
                ..Properties::default()
            },
        }),
        username: Some(s("user")),
        password: Some(b(b"pass")),
    }));
    check("CONNECT 5.0", Protocol::V5, &bytes, packet);
}

#[test]
fn connect_5_all_connect_properties() {
    // Every CONNECT property, in identifier order, as the encoder writes them:
    // 0x11 Session Expiry, 0x15 Authentication Method, 0x16 Authentication
    // Data, 0x17 Request Problem Information, 0x19 Request Response
    // Information, 0x21 Receive Maximum, 0x22 Topic Alias Maximum, 0x26 User
    // Property, 0x27 Maximum Packet Size. 5.0 allows a password without a
    // user name (flags 0x40).
    let bytes = hex("10 3A |
        00 04 4D 51 54 54 | 05 | 40 | 00 00 |
        28 |
        11 FF FF FF FF |
        15 00 05 53 43 52 41 4D |
        16 00 02 01 02 |
        17 00 |
        19 01 |
        21 00 14 |
        22 00 0A |
        26 00 01 6B 00 01 76 |
        27 00 00 10 00 |
        00 01 63 |
        00 02 70 77");
    let packet = Packet::Connect(Box::new(Connect {
        protocol: Protocol::V5,
        clean_start: false,
        keep_alive: 0,
        properties: Properties {
            session_expiry_interval: Some(u32::MAX),
            authentication_method: Some(s("SCRAM")),
            authentication_data: Some(b(&[1, 2])),
            request_problem_information: Some(0),
            request_response_information: Some(1),
            receive_maximum: Some(20),
            topic_alias_maximum: Some(10),
            user_properties: vec![(s("k"), s("v"))],
            maximum_packet_size: Some(4096),
            ..Properties::default()
        },
        client_id: s("c"),
        will: None,
        username: None,
        password: Some(b(b"pw")),
    }));
    check(
        "CONNECT 5.0 with all properties",
        Protocol::V5,
        &bytes,
        packet,
    );
}

#[test]
fn connack() {
    // 3.1.1 §3.2: acknowledge flags (session present), return code.
    check(
        "CONNACK 3.1.1 accepted, session present",
        Protocol::V3_1_1,
        &hex("20 02 | 01 | 00"),
        Packet::ConnAck(ConnAck {
            session_present: true,
            code: ReasonCode::SUCCESS,
            properties: Properties::default(),
        }),
    );
    // Return code 5, "not authorized", maps to reason 0x87.
    check(
        "CONNACK 3.1.1 not authorized",
        Protocol::V3_1_1,
        &hex("20 02 | 00 | 05"),
        Packet::ConnAck(ConnAck {
            session_present: false,
            code: ReasonCode::NOT_AUTHORIZED,
            properties: Properties::default(),
        }),
    );
    // 3.1 has the same layout; return code 1, unacceptable protocol version.
    check(
        "CONNACK 3.1 unacceptable protocol version",
        Protocol::V3_1,
        &hex("20 02 | 00 | 01"),
        Packet::ConnAck(ConnAck {
            session_present: false,
            code: ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            properties: Properties::default(),
        }),
    );
    // 5.0 §3.2.2: flags, reason code, properties (0x12 Assigned Client
    // Identifier, 0x21 Receive Maximum, 0x22 Topic Alias Maximum, 0x24
    // Maximum QoS, 0x28 Wildcard Subscription Available).
    check(
        "CONNACK 5.0 with properties",
        Protocol::V5,
        &hex("20 13 | 00 | 00 | 10 |
            12 00 03 61 62 63 |
            21 00 0A |
            22 00 05 |
            24 01 |
            28 00"),
        Packet::ConnAck(ConnAck {
            session_present: false,
            code: ReasonCode::SUCCESS,
            properties: Properties {
                assigned_client_identifier: Some(s("abc")),
                receive_maximum: Some(10),
                topic_alias_maximum: Some(5),
                maximum_qos: Some(1),
                wildcard_subscription_available: Some(false),
                ..Properties::default()
            },
        }),
    );
    check(
        "CONNACK 5.0 bad user name or password",
        Protocol::V5,
        &hex("20 03 | 00 | 86 | 00"),
        Packet::ConnAck(ConnAck {
            session_present: false,
            code: ReasonCode::BAD_USERNAME_OR_PASSWORD,
            properties: Properties::default(),
        }),
    );
}

#[test]
fn publish_3_1_1() {
    // 3.1.1 §3.3.2.3 (Figure 3.12): topic "a/b", packet identifier 10.
    check(
        "PUBLISH 3.1.1 QoS 1",
        Protocol::V3_1_1,
        &hex("32 09 | 00 03 61 2F 62 | 00 0A | 68 69"),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: s("a/b"),
            packet_id: 10,
            properties: Properties::default(),
            payload: b(b"hi"),
        }),
    );
    // QoS 0 has no packet identifier; RETAIN is bit 0.
    check(
        "PUBLISH 3.1.1 QoS 0 retained",
        Protocol::V3_1_1,
        &hex("31 07 | 00 03 61 2F 62 | 68 69"),
        Packet::Publish(Publish {
            retain: true,
            topic: s("a/b"),
            payload: b(b"hi"),
            ..Publish::default()
        }),
    );
    // DUP is bit 3, QoS 2 is bits 2-1 = 10: first byte 0x3C. Empty payload.
    check(
        "PUBLISH 3.1.1 QoS 2 DUP",
        Protocol::V3_1_1,
        &hex("3C 07 | 00 03 61 2F 62 | FF FF"),
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: s("a/b"),
            packet_id: 0xFFFF,
            properties: Properties::default(),
            payload: Bytes::new(),
        }),
    );
    // Same bytes at 3.1.
    check(
        "PUBLISH 3.1 QoS 1",
        Protocol::V3_1,
        &hex("32 09 | 00 03 61 2F 62 | 00 0A | 68 69"),
        Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            topic: s("a/b"),
            packet_id: 10,
            payload: b(b"hi"),
            ..Publish::default()
        }),
    );
}

#[test]
fn publish_remaining_length_needs_two_bytes() {
    // 3.1.1 §2.2.3: 128..=16383 takes two bytes; 205 = 0xCD 0x01.
    let mut bytes = hex("30 CD 01 | 00 03 61 2F 62");
    bytes.extend(std::iter::repeat_n(0xAB, 200));
    check(
        "PUBLISH with a 200-byte payload",
        Protocol::V3_1_1,
        &bytes,
        Packet::Publish(Publish {
            topic: s("a/b"),
            payload: Bytes::from(vec![0xAB; 200]),
            ..Publish::default()
        }),
    );
}

#[test]
fn publish_5() {
    // 5.0 §3.3.2: topic, packet identifier, properties (0x01 Payload Format
    // Indicator, 0x02 Message Expiry Interval, 0x03 Content Type, 0x08
    // Response Topic, 0x09 Correlation Data, 0x23 Topic Alias, 0x26 User
    // Property), payload.
    check(
        "PUBLISH 5.0 QoS 1 with properties",
        Protocol::V5,
        &hex("32 31 | 00 03 61 2F 62 | 00 0A |
            27 |
            01 01 |
            02 00 00 00 3C |
            03 00 0A 74 65 78 74 2F 70 6C 61 69 6E |
            08 00 01 72 |
            09 00 02 CA FE |
            23 00 01 |
            26 00 01 6B 00 01 76 |
            68 69"),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: s("a/b"),
            packet_id: 10,
            properties: Properties {
                payload_format_indicator: Some(1),
                message_expiry_interval: Some(60),
                content_type: Some(s("text/plain")),
                response_topic: Some(s("r")),
                correlation_data: Some(b(&[0xCA, 0xFE])),
                topic_alias: Some(1),
                user_properties: vec![(s("k"), s("v"))],
                ..Properties::default()
            },
            payload: b(b"hi"),
        }),
    );
    // §3.3.2.3.4: a zero-length topic name with a Topic Alias.
    check(
        "PUBLISH 5.0 topic alias only",
        Protocol::V5,
        &hex("30 08 | 00 00 | 03 | 23 00 01 | 68 69"),
        Packet::Publish(Publish {
            topic: ByteStr::new(),
            properties: Properties {
                topic_alias: Some(1),
                ..Properties::default()
            },
            payload: b(b"hi"),
            ..Publish::default()
        }),
    );
    // Server to client: several Subscription Identifiers (0x0B, variable
    // byte integers 1 and 128 = 0x80 0x01).
    check(
        "PUBLISH 5.0 with two subscription identifiers",
        Protocol::V5,
        &hex("30 0C | 00 03 61 2F 62 | 05 | 0B 01 | 0B 80 01 | 68"),
        Packet::Publish(Publish {
            topic: s("a/b"),
            properties: Properties {
                subscription_identifiers: vec![1, 128],
                ..Properties::default()
            },
            payload: b(b"h"),
            ..Publish::default()
        }),
    );
    // No properties: property length 0.
    check(
        "PUBLISH 5.0 QoS 0 without properties",
        Protocol::V5,
        &hex("30 06 | 00 03 61 2F 62 | 00"),
        Packet::Publish(Publish {
            topic: s("a/b"),
            ..Publish::default()
        }),
    );
}

#[test]
fn publish_acknowledgements_3_1_1() {
    // 3.1.1 §3.4–3.7: fixed header, packet identifier; PUBREL has flags 0010.
    let id10 = || PubResp::new(10);
    for protocol in [Protocol::V3_1, Protocol::V3_1_1] {
        check(
            "PUBACK",
            protocol,
            &hex("40 02 00 0A"),
            Packet::PubAck(id10()),
        );
        check(
            "PUBREC",
            protocol,
            &hex("50 02 00 0A"),
            Packet::PubRec(id10()),
        );
        check(
            "PUBREL",
            protocol,
            &hex("62 02 00 0A"),
            Packet::PubRel(id10()),
        );
        check(
            "PUBCOMP",
            protocol,
            &hex("70 02 00 0A"),
            Packet::PubComp(id10()),
        );
    }
}

#[test]
fn publish_acknowledgements_5() {
    // 5.0 §3.4.2.1: reason code 0x00 with no properties may be omitted.
    check(
        "PUBACK 5.0 success",
        Protocol::V5,
        &hex("40 02 00 0A"),
        Packet::PubAck(PubResp::new(10)),
    );
    check(
        "PUBACK 5.0 no matching subscribers",
        Protocol::V5,
        &hex("40 03 | 00 0A | 10"),
        Packet::PubAck(PubResp {
            packet_id: 10,
            reason: ReasonCode::NO_MATCHING_SUBSCRIBERS,
            properties: Properties::default(),
        }),
    );
    // Reason code, then properties: 0x1F Reason String.
    check(
        "PUBREC 5.0 not authorized with reason string",
        Protocol::V5,
        &hex("50 0B | 00 0A | 87 | 07 | 1F 00 04 6E 6F 70 65"),
        Packet::PubRec(PubResp {
            packet_id: 10,
            reason: ReasonCode::NOT_AUTHORIZED,
            properties: Properties {
                reason_string: Some(s("nope")),
                ..Properties::default()
            },
        }),
    );
    check(
        "PUBREL 5.0 packet identifier not found",
        Protocol::V5,
        &hex("62 03 | 00 0A | 92"),
        Packet::PubRel(PubResp {
            packet_id: 10,
            reason: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
            properties: Properties::default(),
        }),
    );
    // A success code with properties must be written out.
    check(
        "PUBCOMP 5.0 success with user property",
        Protocol::V5,
        &hex("70 0B | 00 0A | 00 | 07 | 26 00 01 6B 00 01 76"),
        Packet::PubComp(PubResp {
            packet_id: 10,
            reason: ReasonCode::SUCCESS,
            properties: Properties {
                user_properties: vec![(s("k"), s("v"))],
                ..Properties::default()
            },
        }),
    );
    // §3.4.2.2: a Remaining Length under 4 means property length 0; these
    // longer forms are valid and decode to the same values.
    check_decode(
        "PUBACK 5.0 explicit success and empty properties",
        Protocol::V5,
        &hex("40 04 | 00 0A | 00 | 00"),
        Packet::PubAck(PubResp::new(10)),
    );
    check_decode(
        "PUBACK 5.0 explicit success",
        Protocol::V5,
        &hex("40 03 | 00 0A | 00"),
        Packet::PubAck(PubResp::new(10)),
    );
}

#[test]
fn subscribe() {
    // 3.1.1 §3.8.2–3.8.3 (Figures 3.21–3.22): packet identifier 10, "a/b"
    // QoS 1, "c/d" QoS 2.
    let packet = Packet::Subscribe(Subscribe {
        packet_id: 10,
        properties: Properties::default(),
        filters: vec![
            Subscription {
                filter: s("a/b"),
                options: SubOptions {
                    qos: QoS::AtLeastOnce,
                    ..SubOptions::default()
                },
            },
            Subscription {
                filter: s("c/d"),
                options: SubOptions {
                    qos: QoS::ExactlyOnce,
                    ..SubOptions::default()
                },
            },
        ],
    });
    let bytes = hex("82 0E | 00 0A | 00 03 61 2F 62 | 01 | 00 03 63 2F 64 | 02");
    check("SUBSCRIBE 3.1.1", Protocol::V3_1_1, &bytes, packet.clone());
    check("SUBSCRIBE 3.1", Protocol::V3_1, &bytes, packet);

    // 5.0 §3.8.2.1 and §3.8.3.1: Subscription Identifier 5; options byte
    // QoS 1 | No Local (bit 2) | Retain As Published (bit 3) | Retain
    // Handling 2 (bits 4-5) = 0x2D.
    check(
        "SUBSCRIBE 5.0",
        Protocol::V5,
        &hex("82 0B | 00 0A | 02 | 0B 05 | 00 03 61 2F 2B | 2D"),
        Packet::Subscribe(Subscribe {
            packet_id: 10,
            properties: Properties {
                subscription_identifiers: vec![5],
                ..Properties::default()
            },
            filters: vec![Subscription {
                filter: s("a/+"),
                options: SubOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            }],
        }),
    );
}

#[test]
fn suback() {
    // 3.1.1 §3.9.3 (Figure 3.26): success QoS 0, success QoS 2, failure.
    let codes = vec![ReasonCode(0x00), ReasonCode(0x02), ReasonCode(0x80)];
    check(
        "SUBACK 3.1.1",
        Protocol::V3_1_1,
        &hex("90 05 | 00 0A | 00 02 80"),
        Packet::SubAck(SubAck {
            packet_id: 10,
            properties: Properties::default(),
            codes,
        }),
    );
    // 5.0 §3.9.3: property length, then a reason code per filter.
    check(
        "SUBACK 5.0",
        Protocol::V5,
        &hex("90 05 | 00 0A | 00 | 01 A2"),
        Packet::SubAck(SubAck {
            packet_id: 10,
            properties: Properties::default(),
            codes: vec![
                ReasonCode::GRANTED_QOS_1,
                ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
            ],
        }),
    );
}

#[test]
fn unsubscribe() {
    // 3.1.1 §3.10.3 (Figure 3.30): "a/b", "c/d".
    check(
        "UNSUBSCRIBE 3.1.1",
        Protocol::V3_1_1,
        &hex("A2 0C | 00 0A | 00 03 61 2F 62 | 00 03 63 2F 64"),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 10,
            properties: Properties::default(),
            filters: vec![s("a/b"), s("c/d")],
        }),
    );
    // 5.0 §3.10.2.1: properties (0x26 User Property) before the filters.
    check(
        "UNSUBSCRIBE 5.0",
        Protocol::V5,
        &hex("A2 0F | 00 0A | 07 | 26 00 01 6B 00 01 76 | 00 03 61 2F 62"),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 10,
            properties: Properties {
                user_properties: vec![(s("k"), s("v"))],
                ..Properties::default()
            },
            filters: vec![s("a/b")],
        }),
    );
}

#[test]
fn unsuback() {
    // 3.1.1 §3.11: only the packet identifier.
    check(
        "UNSUBACK 3.1.1",
        Protocol::V3_1_1,
        &hex("B0 02 00 0A"),
        Packet::UnsubAck(UnsubAck {
            packet_id: 10,
            ..UnsubAck::default()
        }),
    );
    // 5.0 §3.11: property length, one reason code per filter.
    check(
        "UNSUBACK 5.0",
        Protocol::V5,
        &hex("B0 05 | 00 0A | 00 | 00 11"),
        Packet::UnsubAck(UnsubAck {
            packet_id: 10,
            properties: Properties::default(),
            codes: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
        }),
    );
}

#[test]
fn ping() {
    for protocol in [Protocol::V3_1, Protocol::V3_1_1, Protocol::V5] {
        check("PINGREQ", protocol, &hex("C0 00"), Packet::PingReq);
        check("PINGRESP", protocol, &hex("D0 00"), Packet::PingResp);
    }
}

#[test]
fn disconnect() {
    for protocol in [Protocol::V3_1, Protocol::V3_1_1, Protocol::V5] {
        check(
            "DISCONNECT",
            protocol,
            &hex("E0 00"),
            Packet::Disconnect(Disconnect::default()),
        );
    }
    // 5.0 §3.14.2.1: a reason code alone (Remaining Length 1) decodes;
    // Herald writes the zero property length too, which more clients read.
    let will = Packet::Disconnect(Disconnect {
        reason: ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
        properties: Properties::default(),
    });
    check_decode(
        "DISCONNECT 5.0 reason code alone",
        Protocol::V5,
        &hex("E0 01 | 04"),
        will.clone(),
    );
    check(
        "DISCONNECT 5.0 with will message",
        Protocol::V5,
        &hex("E0 02 | 04 | 00"),
        will,
    );
    // Reason code and properties (0x11 Session Expiry Interval = 0, 0x1C
    // Server Reference).
    check(
        "DISCONNECT 5.0 with properties",
        Protocol::V5,
        &hex("E0 0B | 9C | 09 | 11 00 00 00 00 | 1C 00 01 62"),
        Packet::Disconnect(Disconnect {
            reason: ReasonCode::USE_ANOTHER_SERVER,
            properties: Properties {
                session_expiry_interval: Some(0),
                server_reference: Some(s("b")),
                ..Properties::default()
            },
        }),
    );
}

#[test]
fn auth() {
    // 5.0 §3.15.2: reason code 0x18 continue authentication, properties 0x15
    // Authentication Method "SCRAM", 0x16 Authentication Data.
    check(
        "AUTH 5.0",
        Protocol::V5,
        &hex("F0 10 | 18 | 0E | 15 00 05 53 43 52 41 4D | 16 00 03 01 02 03"),
        Packet::Auth(Auth {
            reason: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: Properties {
                authentication_method: Some(s("SCRAM")),
                authentication_data: Some(b(&[1, 2, 3])),
                ..Properties::default()
            },
        }),
    );
    // §3.15.2.1: success without properties may omit everything.
    check(
        "AUTH 5.0 success",
        Protocol::V5,
        &hex("F0 00"),
        Packet::Auth(Auth::default()),
    );
}

#[test]
fn multi_byte_utf8_strings() {
    // §1.5.4: lengths count bytes, not characters. "é" is C3 A9, "𝄞" is
    // F0 9D 84 9E.
    check(
        "PUBLISH with multi-byte topic",
        Protocol::V3_1_1,
        &hex("30 08 | 00 06 C3 A9 F0 9D 84 9E"),
        Packet::Publish(Publish {
            topic: s("é𝄞"),
            ..Publish::default()
        }),
    );
}
