//! Fuzz target: the first byte picks the protocol level (and, in its top bit,
//! a small maximum packet size); the rest is decoded packet after packet
//! until the decoder needs more bytes or fails. Every packet decoded must
//! re-encode, and the re-encoding must decode back to the same packet.

#![no_main]

use bytes::BytesMut;
use herald_codec::{DecodeOptions, MAX_PACKET_SIZE, Packet, Protocol, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let protocol = match selector & 0x03 {
        0 => Protocol::V3_1,
        1 => Protocol::V3_1_1,
        _ => Protocol::V5,
    };
    let max_packet_size = if selector & 0x80 != 0 {
        64
    } else {
        MAX_PACKET_SIZE
    };
    let opts = DecodeOptions {
        protocol,
        max_packet_size,
    };
    let mut buf = BytesMut::from(rest);
    loop {
        let before = buf.len();
        match decode(&mut buf, &opts) {
            Ok(Some(packet)) => {
                assert!(buf.len() < before, "a packet consumed no bytes");
                // CONNECT is written at its own level.
                let level = match &packet {
                    Packet::Connect(c) => c.protocol,
                    _ => protocol,
                };
                let mut out = BytesMut::new();
                let n = packet
                    .encode(level, &mut out)
                    .expect("a decoded packet re-encodes");
                assert_eq!(n, out.len());
                assert_eq!(packet.encoded_len(level), Ok(n));
                let again = decode(
                    &mut out,
                    &DecodeOptions {
                        protocol: level,
                        max_packet_size: MAX_PACKET_SIZE,
                    },
                );
                assert_eq!(again, Ok(Some(packet)));
                assert!(out.is_empty());
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                break;
            }
            Err(e) => {
                assert!(e.reason_code().is_error());
                break;
            }
        }
    }
});
