//! Hand-made broker values for the WebHook tests: the anonymous MQTT 5
//! client `c1` of `docs/webhook.md` §3's example, a subscriber, messages.

#![allow(dead_code)]

use bytes::Bytes;
use herald_broker::hooks::{ClientInfo, SubscriptionInfo};
use herald_broker::message::Message;
use herald_broker::transport::ListenerKind;
use herald_codec::{ByteStr, Protocol, QoS, SubOptions};

/// `connected_at` of [`c1`]: 1700000000 s (+ 123 ms).
pub const CONNECTED_AT_MS: u64 = 1_700_000_000_123;
/// `ts` of [`message`].
pub const RECEIVED_AT_MS: u64 = 1_700_000_001_000;

/// The anonymous MQTT 5 client `c1`, keepalive 60, from 127.0.0.1.
pub fn c1() -> ClientInfo {
    ClientInfo {
        client_id: ByteStr::from("c1"),
        username: None,
        peer: "127.0.0.1:52000".parse().unwrap_or_else(|e| panic!("{e}")),
        protocol: Protocol::V5,
        keepalive: 60,
        clean_start: true,
        connected_at_ms: CONNECTED_AT_MS,
        listener: ListenerKind::Tcp,
        cert: None,
    }
}

/// A 3.1.1 subscriber `c2` with user name `u2`, from ::1.
pub fn c2() -> ClientInfo {
    ClientInfo {
        client_id: ByteStr::from("c2"),
        username: Some(ByteStr::from("u2")),
        peer: "[::1]:52001".parse().unwrap_or_else(|e| panic!("{e}")),
        protocol: Protocol::V3_1_1,
        keepalive: 30,
        clean_start: false,
        connected_at_ms: CONNECTED_AT_MS + 5_000,
        listener: ListenerKind::Tcp,
        cert: None,
    }
}

/// `Payload...` published by `c1` to `topic` with QoS 2.
pub fn message(topic: &str) -> Message {
    Message {
        topic: ByteStr::from(topic),
        payload: Bytes::from_static(b"Payload..."),
        qos: QoS::ExactlyOnce,
        retain: false,
        properties: None,
        from_client_id: ByteStr::from("c1"),
        from_username: None,
        received_at_ms: RECEIVED_AT_MS,
        expires_at: None,
    }
}

/// A subscription to `topic` with QoS 2 and every other option 0.
pub fn sub(topic: &str) -> SubscriptionInfo<'_> {
    SubscriptionInfo {
        topic,
        share: None,
        options: SubOptions {
            qos: QoS::ExactlyOnce,
            ..SubOptions::default()
        },
        subscription_id: None,
    }
}
