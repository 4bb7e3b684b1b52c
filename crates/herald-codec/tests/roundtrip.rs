//! Round-trip properties: for every packet type at every protocol level it
//! exists in, a valid packet encodes to exactly `encoded_len` bytes, decodes
//! back to an equal packet, needs more bytes on every strict prefix (without
//! touching the buffer), and decodes in order when two sit back to back.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

mod common;

use bytes::BytesMut;
use common::*;
use herald_codec::{
    DecodeError, DecodeOptions, Packet, PacketType, Protocol, PubResp, PublishRef, decode,
    peek_publish, take_short_ack,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// All the single-packet properties for one packet.
fn check_round_trip(protocol: Protocol, packet: &Packet) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::new();
    let written = packet
        .encode(protocol, &mut buf)
        .map_err(|e| TestCaseError::fail(format!("encode failed: {e}")))?;
    prop_assert_eq!(written, buf.len(), "encode's return value");
    prop_assert_eq!(
        packet.encoded_len(protocol),
        Ok(written),
        "encoded_len vs bytes written"
    );

    // Decode gives back the packet and consumes exactly its bytes.
    let wire = buf.clone().freeze();
    let decoded = decode(&mut buf, &opts(protocol));
    prop_assert_eq!(decoded, Ok(Some(packet.clone())));
    prop_assert!(buf.is_empty(), "{} bytes left after decode", buf.len());

    // Every strict prefix: "need more bytes", buffer untouched.
    for k in 0..wire.len() {
        let mut prefix = BytesMut::from(&wire[..k]);
        prop_assert_eq!(
            decode(&mut prefix, &opts(protocol)),
            Ok(None),
            "prefix of {} bytes",
            k
        );
        prop_assert_eq!(&prefix[..], &wire[..k], "prefix of {} bytes was changed", k);
        prop_assert_eq!(take_short_ack(&mut prefix), None, "prefix of {} bytes", k);
        prop_assert_eq!(&prefix[..], &wire[..k], "prefix of {} bytes was taken", k);
    }

    // The acknowledgement fast path takes exactly the 4-byte
    // acknowledgements, as decode reads them, and leaves anything else.
    let mut fast = BytesMut::from(&wire[..]);
    let ack = match packet {
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => Some(r),
        _ => None,
    };
    match take_short_ack(&mut fast) {
        Some((kind, id)) => {
            prop_assert!(fast.is_empty(), "bytes left after the fast path");
            prop_assert_eq!(kind, packet.packet_type());
            prop_assert_eq!(Some(&PubResp::new(id)), ack);
        }
        None => {
            prop_assert_eq!(&fast[..], &wire[..], "the fast path changed the buffer");
            prop_assert!(
                ack.is_none() || wire.len() != 4,
                "a short acknowledgement was left for decode"
            );
        }
    }

    // Peeking finds a whole PUBLISH's QoS and topic, and nothing else.
    let peeked = peek_publish(&wire);
    match packet {
        Packet::Publish(p) => {
            prop_assert_eq!(peeked, Some((p.qos as u8, &p.topic.as_bytes()[..])));
        }
        _ => prop_assert_eq!(peeked, None),
    }
    prop_assert_eq!(peek_publish(&wire[..wire.len() - 1]), None);

    // A PUBLISH without properties encodes the same from a view that has
    // none (what the broker sends 3.x deliveries with).
    if let Packet::Publish(p) = packet
        && p.properties.is_empty()
    {
        let mut bare = BytesMut::new();
        let view = PublishRef {
            properties: None,
            ..p.view()
        };
        prop_assert_eq!(view.encode(protocol, &mut bare), Ok(wire.len()));
        prop_assert_eq!(view.encoded_len(protocol), Ok(wire.len()));
        prop_assert_eq!(&bare[..], &wire[..]);
    }

    // The maximum packet size is inclusive: exactly the size passes, one
    // byte less is refused.
    let limit = |max_packet_size| DecodeOptions {
        protocol,
        max_packet_size,
    };
    let mut exact = BytesMut::from(&wire[..]);
    prop_assert!(matches!(
        decode(&mut exact, &limit(wire.len())),
        Ok(Some(_))
    ));
    let mut over = BytesMut::from(&wire[..]);
    prop_assert_eq!(
        decode(&mut over, &limit(wire.len() - 1)),
        Err(DecodeError::PacketTooLarge {
            size: wire.len(),
            max: wire.len() - 1
        })
    );
    Ok(())
}

/// One proptest per packet type, each run at every protocol level.
macro_rules! round_trip {
    ($($name:ident => $strategy:expr;)*) => {
        proptest! {
            $(
                #[test]
                fn $name((protocol, packet) in protocol().prop_flat_map(|p| (Just(p), $strategy(p)))) {
                    check_round_trip(protocol, &packet)?;
                }
            )*
        }
    };
}

round_trip! {
    connect_round_trips => connect;
    connack_round_trips => connack;
    publish_round_trips => publish;
    puback_round_trips => |p| pub_resp(p, PacketType::PubAck);
    pubrec_round_trips => |p| pub_resp(p, PacketType::PubRec);
    pubrel_round_trips => |p| pub_resp(p, PacketType::PubRel);
    pubcomp_round_trips => |p| pub_resp(p, PacketType::PubComp);
    subscribe_round_trips => subscribe;
    suback_round_trips => suback;
    unsubscribe_round_trips => unsubscribe;
    unsuback_round_trips => unsuback;
    pingreq_round_trips => |_| Just(Packet::PingReq);
    pingresp_round_trips => |_| Just(Packet::PingResp);
    disconnect_round_trips => disconnect;
}

proptest! {
    #[test]
    fn auth_round_trips(packet in auth()) {
        check_round_trip(Protocol::V5, &packet)?;
    }

    #[test]
    fn two_packets_back_to_back_decode_in_order(
        (protocol, first, second) in protocol().prop_flat_map(|p| (Just(p), packet(p), packet(p)))
    ) {
        let mut buf = BytesMut::new();
        let n1 = first.encode(protocol, &mut buf).expect("first encodes");
        let n2 = second.encode(protocol, &mut buf).expect("second encodes");
        prop_assert_eq!(buf.len(), n1 + n2);
        prop_assert_eq!(decode(&mut buf, &opts(protocol)), Ok(Some(first)));
        prop_assert_eq!(buf.len(), n2, "the first decode took only its own bytes");
        prop_assert_eq!(decode(&mut buf, &opts(protocol)), Ok(Some(second)));
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decode(&mut buf, &opts(protocol)), Ok(None));
    }

    /// Re-encoding a decoded packet gives the same bytes: the encoder's form
    /// is canonical.
    #[test]
    fn decode_then_encode_gives_the_same_bytes((protocol, packet) in protocol_and_packet()) {
        let wire = encode(&packet, protocol);
        let decoded = decode(&mut wire.clone(), &opts(protocol))
            .expect("decodes")
            .expect("complete");
        prop_assert_eq!(encode(&decoded, protocol), wire);
    }
}

/// AUTH does not exist before 5.0: encoding refuses it and appends nothing.
#[test]
fn auth_is_not_encoded_before_v5() {
    for protocol in [Protocol::V3_1, Protocol::V3_1_1] {
        let mut buf = BytesMut::from(&b"xy"[..]);
        let packet = Packet::Auth(herald_codec::Auth::default());
        assert_eq!(
            packet.encode(protocol, &mut buf),
            Err(herald_codec::EncodeError::NotInProtocol(PacketType::Auth))
        );
        assert_eq!(&buf[..], b"xy");
    }
}
