//! Encoding refuses packets the wire format cannot carry, and on error
//! appends nothing to the buffer (it may already hold other packets).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

use bytes::{Bytes, BytesMut};
use herald_codec::{
    ByteStr, EncodeError, Packet, PacketType, Properties, Protocol, PubResp, Publish, QoS,
    SubOptions, Subscribe, Subscription,
};

/// Encodes into a buffer that already holds bytes; returns the result and
/// asserts those bytes are all that is left on error.
fn encode_after_prefix(packet: &Packet, protocol: Protocol) -> Result<usize, EncodeError> {
    let mut buf = BytesMut::from(&b"earlier packet"[..]);
    let result = packet.encode(protocol, &mut buf);
    if result.is_err() {
        assert_eq!(&buf[..], b"earlier packet", "encode appended on error");
    }
    result
}

#[test]
fn remaining_length_over_the_varint_limit_appends_nothing() {
    // Remaining length 2 + 1 + payload = 268,435,456: one more than a
    // variable byte integer holds. (The zeroed allocation is lazy.)
    let payload = Bytes::from(vec![0u8; 268_435_453]);
    let packet = Packet::Publish(Publish {
        topic: ByteStr::from("t"),
        payload,
        ..Publish::default()
    });
    assert_eq!(
        packet.encoded_len(Protocol::V3_1_1),
        Err(EncodeError::VarIntTooLarge(268_435_456))
    );
    assert_eq!(
        encode_after_prefix(&packet, Protocol::V3_1_1),
        Err(EncodeError::VarIntTooLarge(268_435_456))
    );
}

#[test]
fn string_over_65535_bytes_appends_nothing() {
    let packet = Packet::Publish(Publish {
        topic: ByteStr::from("t".repeat(65_536)),
        ..Publish::default()
    });
    assert_eq!(
        encode_after_prefix(&packet, Protocol::V5),
        Err(EncodeError::FieldTooLong {
            field: "topic name",
            len: 65_536
        })
    );
    let packet = Packet::PubAck(PubResp {
        packet_id: 1,
        reason: Default::default(),
        properties: Properties {
            reason_string: Some(ByteStr::from("r".repeat(70_000))),
            ..Properties::default()
        },
    });
    assert_eq!(
        encode_after_prefix(&packet, Protocol::V5),
        Err(EncodeError::FieldTooLong {
            field: "reason string",
            len: 70_000
        })
    );
}

#[test]
fn zero_packet_ids_are_refused() {
    let publish = Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: ByteStr::from("t"),
        packet_id: 0,
        ..Publish::default()
    });
    assert_eq!(
        encode_after_prefix(&publish, Protocol::V3_1_1),
        Err(EncodeError::ZeroPacketId(PacketType::Publish))
    );
    for (packet, kind) in [
        (Packet::PubAck(PubResp::new(0)), PacketType::PubAck),
        (Packet::PubRec(PubResp::new(0)), PacketType::PubRec),
        (Packet::PubRel(PubResp::new(0)), PacketType::PubRel),
        (Packet::PubComp(PubResp::new(0)), PacketType::PubComp),
    ] {
        for protocol in [Protocol::V3_1_1, Protocol::V5] {
            assert_eq!(
                encode_after_prefix(&packet, protocol),
                Err(EncodeError::ZeroPacketId(kind))
            );
        }
    }
    let subscribe = Packet::Subscribe(Subscribe {
        packet_id: 0,
        properties: Properties::default(),
        filters: vec![Subscription {
            filter: ByteStr::from("a"),
            options: SubOptions::default(),
        }],
    });
    assert_eq!(
        encode_after_prefix(&subscribe, Protocol::V5),
        Err(EncodeError::ZeroPacketId(PacketType::Subscribe))
    );
}

#[test]
fn subscription_identifier_over_the_varint_limit_is_refused() {
    let packet = Packet::Publish(Publish {
        topic: ByteStr::from("t"),
        properties: Properties {
            subscription_identifiers: vec![268_435_456],
            ..Properties::default()
        },
        ..Publish::default()
    });
    assert_eq!(
        encode_after_prefix(&packet, Protocol::V5),
        Err(EncodeError::VarIntTooLarge(268_435_456))
    );
}
