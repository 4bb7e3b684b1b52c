//! Proptest strategies for valid packets, shared by the round-trip and the
//! malformed-input tests.
//!
//! Every strategy generates only what the codec must accept at the given
//! protocol level: properties only on 5.0 and only those the packet allows,
//! reason codes the packet allows, non-zero packet ids, strings without
//! U+0000, PUBLISH topics without wildcards.

#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use herald_codec::properties::Context;
use herald_codec::{
    Auth, ByteStr, ConnAck, Connect, DecodeOptions, Disconnect, MAX_PACKET_SIZE, Packet,
    PacketType, Properties, Protocol, PubResp, Publish, QoS, ReasonCode, RetainHandling, SubAck,
    SubOptions, Subscribe, Subscription, UnsubAck, Unsubscribe, Will,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

/// Every property identifier MQTT 5.0 defines.
pub const PROPERTY_IDS: [u8; 27] = [
    0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1C,
    0x1F, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A,
];

/// Decode options for `protocol` with no size limit.
pub fn opts(protocol: Protocol) -> DecodeOptions {
    DecodeOptions {
        protocol,
        max_packet_size: MAX_PACKET_SIZE,
    }
}

/// Encodes `packet`, panicking on error (the strategies only make valid ones).
pub fn encode(packet: &Packet, protocol: Protocol) -> BytesMut {
    let mut buf = BytesMut::new();
    packet
        .encode(protocol, &mut buf)
        .unwrap_or_else(|e| panic!("encoding {packet:?} failed: {e}"));
    buf
}

pub fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        Just(Protocol::V3_1),
        Just(Protocol::V3_1_1),
        Just(Protocol::V5)
    ]
}

/// Any UTF-8 string without U+0000 (multi-byte characters included).
pub fn string() -> impl Strategy<Value = ByteStr> {
    "[^\u{0}]{0,12}".prop_map(ByteStr::from)
}

/// A valid topic name: non-empty, no wildcards, no U+0000.
pub fn topic_name() -> impl Strategy<Value = ByteStr> {
    "[^\u{0}+#]{1,12}".prop_map(ByteStr::from)
}

/// A topic filter (the codec does not judge filters; wildcards allowed).
pub fn topic_filter() -> impl Strategy<Value = ByteStr> {
    prop_oneof![
        "[^\u{0}]{1,12}".prop_map(ByteStr::from),
        select(vec!["#", "+", "a/+/b", "a/#", "$share/g/t/#", "$SYS/#"]).prop_map(ByteStr::from),
    ]
}

pub fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

pub fn packet_id() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

pub fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

/// The reason codes MQTT 5.0 allows in a packet of type `packet`.
pub fn reason_code(packet: PacketType) -> impl Strategy<Value = ReasonCode> {
    let codes: Vec<ReasonCode> = (0..=255u8)
        .map(ReasonCode)
        .filter(|c| c.allowed_in(packet))
        .collect();
    select(codes)
}

/// A `Properties` with only property `id` set, to a valid value.
fn one_property(id: u8) -> BoxedStrategy<Properties> {
    let d = Properties::default;
    match id {
        0x01 => (0..=1u8)
            .prop_map(move |v| Properties {
                payload_format_indicator: Some(v),
                ..d()
            })
            .boxed(),
        0x02 => any::<u32>()
            .prop_map(move |v| Properties {
                message_expiry_interval: Some(v),
                ..d()
            })
            .boxed(),
        0x03 => string()
            .prop_map(move |v| Properties {
                content_type: Some(v),
                ..d()
            })
            .boxed(),
        0x08 => topic_name()
            .prop_map(move |v| Properties {
                response_topic: Some(v),
                ..d()
            })
            .boxed(),
        0x09 => binary()
            .prop_map(move |v| Properties {
                correlation_data: Some(v),
                ..d()
            })
            .boxed(),
        0x0B => prop_oneof![1..=127u32, 128..=268_435_455u32]
            .prop_map(move |v| Properties {
                subscription_identifiers: vec![v],
                ..d()
            })
            .boxed(),
        0x11 => any::<u32>()
            .prop_map(move |v| Properties {
                session_expiry_interval: Some(v),
                ..d()
            })
            .boxed(),
        0x12 => string()
            .prop_map(move |v| Properties {
                assigned_client_identifier: Some(v),
                ..d()
            })
            .boxed(),
        0x13 => any::<u16>()
            .prop_map(move |v| Properties {
                server_keep_alive: Some(v),
                ..d()
            })
            .boxed(),
        0x15 => string()
            .prop_map(move |v| Properties {
                authentication_method: Some(v),
                ..d()
            })
            .boxed(),
        0x16 => binary()
            .prop_map(move |v| Properties {
                authentication_data: Some(v),
                ..d()
            })
            .boxed(),
        0x17 => (0..=1u8)
            .prop_map(move |v| Properties {
                request_problem_information: Some(v),
                ..d()
            })
            .boxed(),
        0x18 => any::<u32>()
            .prop_map(move |v| Properties {
                will_delay_interval: Some(v),
                ..d()
            })
            .boxed(),
        0x19 => (0..=1u8)
            .prop_map(move |v| Properties {
                request_response_information: Some(v),
                ..d()
            })
            .boxed(),
        0x1A => string()
            .prop_map(move |v| Properties {
                response_information: Some(v),
                ..d()
            })
            .boxed(),
        0x1C => string()
            .prop_map(move |v| Properties {
                server_reference: Some(v),
                ..d()
            })
            .boxed(),
        0x1F => string()
            .prop_map(move |v| Properties {
                reason_string: Some(v),
                ..d()
            })
            .boxed(),
        0x21 => (1..=u16::MAX)
            .prop_map(move |v| Properties {
                receive_maximum: Some(v),
                ..d()
            })
            .boxed(),
        0x22 => any::<u16>()
            .prop_map(move |v| Properties {
                topic_alias_maximum: Some(v),
                ..d()
            })
            .boxed(),
        0x23 => (1..=u16::MAX)
            .prop_map(move |v| Properties {
                topic_alias: Some(v),
                ..d()
            })
            .boxed(),
        0x24 => (0..=1u8)
            .prop_map(move |v| Properties {
                maximum_qos: Some(v),
                ..d()
            })
            .boxed(),
        0x25 => any::<bool>()
            .prop_map(move |v| Properties {
                retain_available: Some(v),
                ..d()
            })
            .boxed(),
        0x26 => (string(), string())
            .prop_map(move |kv| Properties {
                user_properties: vec![kv],
                ..d()
            })
            .boxed(),
        0x27 => (1..=u32::MAX)
            .prop_map(move |v| Properties {
                maximum_packet_size: Some(v),
                ..d()
            })
            .boxed(),
        0x28 => any::<bool>()
            .prop_map(move |v| Properties {
                wildcard_subscription_available: Some(v),
                ..d()
            })
            .boxed(),
        0x29 => any::<bool>()
            .prop_map(move |v| Properties {
                subscription_identifier_available: Some(v),
                ..d()
            })
            .boxed(),
        0x2A => any::<bool>()
            .prop_map(move |v| Properties {
                shared_subscription_available: Some(v),
                ..d()
            })
            .boxed(),
        other => panic!("no strategy for property 0x{other:02X}"),
    }
}

/// Adds `b`'s properties to `a`: single-valued ones overwrite (so each still
/// appears once on the wire), repeatable ones append.
fn merge(a: &mut Properties, b: Properties, ctx: Context) {
    macro_rules! take {
        ($($f:ident),*) => { $( if b.$f.is_some() { a.$f = b.$f; } )* };
    }
    take!(
        payload_format_indicator,
        message_expiry_interval,
        content_type,
        response_topic,
        correlation_data,
        session_expiry_interval,
        assigned_client_identifier,
        server_keep_alive,
        authentication_method,
        authentication_data,
        request_problem_information,
        will_delay_interval,
        request_response_information,
        response_information,
        server_reference,
        reason_string,
        receive_maximum,
        topic_alias_maximum,
        topic_alias,
        maximum_qos,
        retain_available,
        maximum_packet_size,
        wildcard_subscription_available,
        subscription_identifier_available,
        shared_subscription_available
    );
    if ctx == Context::SUBSCRIBE {
        // SUBSCRIBE carries at most one Subscription Identifier.
        if !b.subscription_identifiers.is_empty() {
            a.subscription_identifiers = b.subscription_identifiers;
        }
    } else {
        a.subscription_identifiers
            .extend(b.subscription_identifiers);
    }
    a.user_properties.extend(b.user_properties);
}

/// Properties valid in `ctx`: any mix of the identifiers it allows.
pub fn properties(ctx: Context) -> BoxedStrategy<Properties> {
    let allowed: Vec<u8> = PROPERTY_IDS
        .iter()
        .copied()
        .filter(|&id| ctx.allows(id))
        .collect();
    vec(select(allowed).prop_flat_map(one_property), 0..5)
        .prop_map(move |ps| {
            let mut all = Properties::default();
            for p in ps {
                merge(&mut all, p, ctx);
            }
            all
        })
        .boxed()
}

/// Properties for `protocol`: none before 5.0.
pub fn properties_for(protocol: Protocol, ctx: Context) -> BoxedStrategy<Properties> {
    if protocol.is_v5() {
        properties(ctx)
    } else {
        Just(Properties::default()).boxed()
    }
}

pub fn will(protocol: Protocol) -> impl Strategy<Value = Will> {
    (
        topic_name(),
        binary(),
        qos(),
        any::<bool>(),
        properties_for(protocol, Context::WILL),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
}

pub fn connect(protocol: Protocol) -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        any::<u16>(),
        properties_for(protocol, Context::CONNECT),
        string(),
        option::of(will(protocol)),
        option::of(string()),
        option::of(binary()),
    )
        .prop_map(
            move |(
                clean_start,
                keep_alive,
                properties,
                client_id,
                will,
                mut username,
                password,
            )| {
                // 3.x: no password without a user name.
                if !protocol.is_v5() && password.is_some() && username.is_none() {
                    username = Some(ByteStr::new());
                }
                Packet::Connect(Box::new(Connect {
                    protocol,
                    clean_start,
                    keep_alive,
                    properties,
                    client_id,
                    will,
                    username,
                    password,
                }))
            },
        )
}

pub fn connack(protocol: Protocol) -> BoxedStrategy<Packet> {
    let code = if protocol.is_v5() {
        reason_code(PacketType::ConnAck).boxed()
    } else {
        // The six codes a 3.x return code maps to.
        (0..=5u8)
            .prop_map(|c| ReasonCode::from_v3_connack(c).expect("0..=5 map"))
            .boxed()
    };
    (
        any::<bool>(),
        code,
        properties_for(protocol, Context::CONNACK),
    )
        .prop_map(|(session_present, code, properties)| {
            Packet::ConnAck(ConnAck {
                session_present,
                code,
                properties,
            })
        })
        .boxed()
}

pub fn publish(protocol: Protocol) -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic_name(),
        packet_id(),
        properties_for(protocol, Context::PUBLISH),
        vec(any::<u8>(), 0..64),
        any::<bool>(),
    )
        .prop_map(
            |(dup, qos, retain, topic, id, properties, payload, use_alias)| {
                let qos0 = qos == QoS::AtMostOnce;
                // 5.0: a topic alias may stand in for the topic name.
                let topic = if use_alias && properties.topic_alias.is_some() {
                    ByteStr::new()
                } else {
                    topic
                };
                Packet::Publish(Publish {
                    dup: dup && !qos0,
                    qos,
                    retain,
                    topic,
                    packet_id: if qos0 { 0 } else { id },
                    properties,
                    payload: Bytes::from(payload),
                })
            },
        )
}

pub fn pub_resp(protocol: Protocol, packet: PacketType) -> BoxedStrategy<Packet> {
    let reason = if protocol.is_v5() {
        reason_code(packet).boxed()
    } else {
        Just(ReasonCode::SUCCESS).boxed()
    };
    (packet_id(), reason, properties_for(protocol, Context::ACK))
        .prop_map(move |(packet_id, reason, properties)| {
            let r = PubResp {
                packet_id,
                reason,
                properties,
            };
            match packet {
                PacketType::PubAck => Packet::PubAck(r),
                PacketType::PubRec => Packet::PubRec(r),
                PacketType::PubRel => Packet::PubRel(r),
                PacketType::PubComp => Packet::PubComp(r),
                other => unreachable!("{other:?} is not a publish response"),
            }
        })
        .boxed()
}

pub fn sub_options(protocol: Protocol) -> impl Strategy<Value = SubOptions> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![
            Just(RetainHandling::SendAtSubscribe),
            Just(RetainHandling::SendAtSubscribeIfNew),
            Just(RetainHandling::DoNotSend)
        ],
    )
        .prop_map(
            move |(qos, no_local, retain_as_published, retain_handling)| {
                if protocol.is_v5() {
                    SubOptions {
                        qos,
                        no_local,
                        retain_as_published,
                        retain_handling,
                    }
                } else {
                    SubOptions {
                        qos,
                        ..SubOptions::default()
                    }
                }
            },
        )
}

pub fn subscribe(protocol: Protocol) -> impl Strategy<Value = Packet> {
    (
        packet_id(),
        properties_for(protocol, Context::SUBSCRIBE),
        vec(
            (topic_filter(), sub_options(protocol))
                .prop_map(|(filter, options)| Subscription { filter, options }),
            1..5,
        ),
    )
        .prop_map(|(packet_id, properties, filters)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                filters,
            })
        })
}

pub fn suback(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let code = if protocol.is_v5() {
        reason_code(PacketType::SubAck).boxed()
    } else {
        select(vec![0u8, 1, 2, 0x80]).prop_map(ReasonCode).boxed()
    };
    (
        packet_id(),
        properties_for(protocol, Context::ACK),
        vec(code, 0..5),
    )
        .prop_map(|(packet_id, properties, codes)| {
            Packet::SubAck(SubAck {
                packet_id,
                properties,
                codes,
            })
        })
}

pub fn unsubscribe(protocol: Protocol) -> impl Strategy<Value = Packet> {
    (
        packet_id(),
        properties_for(protocol, Context::UNSUBSCRIBE),
        vec(topic_filter(), 1..5),
    )
        .prop_map(|(packet_id, properties, filters)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                properties,
                filters,
            })
        })
}

pub fn unsuback(protocol: Protocol) -> BoxedStrategy<Packet> {
    if protocol.is_v5() {
        (
            packet_id(),
            properties(Context::ACK),
            vec(reason_code(PacketType::UnsubAck), 0..5),
        )
            .prop_map(|(packet_id, properties, codes)| {
                Packet::UnsubAck(UnsubAck {
                    packet_id,
                    properties,
                    codes,
                })
            })
            .boxed()
    } else {
        packet_id()
            .prop_map(|packet_id| {
                Packet::UnsubAck(UnsubAck {
                    packet_id,
                    ..UnsubAck::default()
                })
            })
            .boxed()
    }
}

pub fn disconnect(protocol: Protocol) -> BoxedStrategy<Packet> {
    if protocol.is_v5() {
        (
            reason_code(PacketType::Disconnect),
            properties(Context::DISCONNECT),
        )
            .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }))
            .boxed()
    } else {
        Just(Packet::Disconnect(Disconnect::default())).boxed()
    }
}

/// AUTH exists only in 5.0.
pub fn auth() -> impl Strategy<Value = Packet> {
    (reason_code(PacketType::Auth), properties(Context::AUTH))
        .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }))
}

/// Any packet valid at `protocol`.
pub fn packet(protocol: Protocol) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(protocol).boxed(),
        connack(protocol),
        publish(protocol).boxed(),
        pub_resp(protocol, PacketType::PubAck),
        pub_resp(protocol, PacketType::PubRec),
        pub_resp(protocol, PacketType::PubRel),
        pub_resp(protocol, PacketType::PubComp),
        subscribe(protocol).boxed(),
        suback(protocol).boxed(),
        unsubscribe(protocol).boxed(),
        unsuback(protocol),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        disconnect(protocol),
    ];
    if protocol.is_v5() {
        prop_oneof![14 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}

/// A protocol level and a packet valid at it.
pub fn protocol_and_packet() -> impl Strategy<Value = (Protocol, Packet)> {
    protocol().prop_flat_map(|p| (Just(p), packet(p)))
}
