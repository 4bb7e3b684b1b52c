//! Request bodies for all thirteen events in both profiles, compared field
//! by field with `docs/webhook.md` §3, and byte for byte with its example.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

mod common;

use common::{c1, c2, message, sub};
use herald_broker::hooks::{DropReason, Event, SubscriptionInfo};
use herald_broker::reason::{DisconnectReason, TerminationReason};
use herald_codec::{Protocol, QoS, ReasonCode, RetainHandling, SubOptions};
use herald_webhook::{BodyBuilder, EventKind, PayloadEncoding, Profile};
use serde_json::Value;

/// `now_ms` passed to the builder (v4.4 `disconnected_at`).
const NOW_MS: u64 = 1_700_000_009_000;

fn builder(profile: Profile) -> BodyBuilder {
    BodyBuilder::new(profile, PayloadEncoding::Plain, "herald@127.0.0.1")
}

fn text(b: &BodyBuilder, event: &Event<'_>) -> String {
    let body = b
        .build(event, NOW_MS)
        .unwrap_or_else(|| panic!("{} has no body", event.name()));
    String::from_utf8(body).unwrap_or_else(|e| panic!("body is not UTF-8: {e}"))
}

/// Compares field by field, naming every field that differs.
fn assert_fields(actual: &str, expected: &str) {
    let a: Value = serde_json::from_str(actual).unwrap_or_else(|e| panic!("{e}: {actual}"));
    let e: Value = serde_json::from_str(expected).unwrap_or_else(|e| panic!("{e}: {expected}"));
    let (Value::Object(a), Value::Object(e)) = (&a, &e) else {
        panic!("not objects: {actual}");
    };
    let mut diffs = Vec::new();
    for (k, v) in e {
        match a.get(k) {
            Some(got) if got == v => {}
            Some(got) => diffs.push(format!("{k}: got {got}, expected {v}")),
            None => diffs.push(format!("{k}: missing")),
        }
    }
    for k in a.keys().filter(|k| !e.contains_key(*k)) {
        diffs.push(format!("{k}: unexpected"));
    }
    assert!(
        diffs.is_empty(),
        "{}\n  actual:   {actual}\n  expected: {expected}",
        diffs.join("\n")
    );
    // Compact: no whitespace between tokens (no value here holds a space).
    assert!(!actual.contains(' '), "not compact: {actual}");
}

/// Runs `check(event, expected v4.0, expected v4.4)` over all 13 events.
#[test]
fn all_events_both_profiles() {
    let c1 = c1();
    let c2 = c2();
    let msg = message("TopicA");
    let cases: Vec<(Event<'_>, &str, &str)> = vec![
        (
            Event::ClientConnect {
                client: &c1,
                assigned: None,
            },
            r#"{"action":"client_connect","clientid":"c1","username":"undefined","ipaddress":"127.0.0.1","keepalive":60,"proto_ver":5}"#,
            r#"{"action":"client_connect","node":"herald@127.0.0.1","clientid":"c1","username":null,"ipaddress":"127.0.0.1","keepalive":60,"proto_ver":5}"#,
        ),
        (
            Event::ClientConnack {
                client: &c1,
                reason: ReasonCode::SUCCESS,
            },
            r#"{"action":"client_connack","clientid":"c1","username":"undefined","ipaddress":"127.0.0.1","keepalive":60,"proto_ver":5,"conn_ack":"success"}"#,
            r#"{"action":"client_connack","node":"herald@127.0.0.1","clientid":"c1","username":null,"ipaddress":"127.0.0.1","keepalive":60,"proto_ver":5,"conn_ack":"success","connected_at":1700000000123}"#,
        ),
        (
            Event::ClientConnected { client: &c1 },
            r#"{"action":"client_connected","clientid":"c1","username":"undefined","ipaddress":"127.0.0.1","keepalive":60,"proto_ver":5,"connected_at":1700000000}"#,
            r#"{"action":"client_connected","node":"herald@127.0.0.1","clientid":"c1","username":null,"ipaddress":"127.0.0.1","keepalive":60,"proto_ver":5,"connected_at":1700000000123}"#,
        ),
        (
            Event::ClientDisconnected {
                client: &c1,
                reason: DisconnectReason::Normal,
            },
            r#"{"action":"client_disconnected","clientid":"c1","username":"undefined","reason":"normal"}"#,
            r#"{"action":"client_disconnected","node":"herald@127.0.0.1","clientid":"c1","username":null,"reason":"normal","connected_at":1700000000123,"disconnected_at":1700000009000}"#,
        ),
        (
            Event::ClientSubscribe {
                client: &c1,
                sub: sub("TopicA"),
            },
            r#"{"action":"client_subscribe","clientid":"c1","username":"undefined","topic":"TopicA","opts":{"qos":2,"nl":0,"rap":0,"rh":0}}"#,
            r#"{"action":"client_subscribe","node":"herald@127.0.0.1","clientid":"c1","username":null,"topic":"TopicA","opts":{"qos":2,"nl":0,"rap":0,"rh":0}}"#,
        ),
        (
            Event::ClientUnsubscribe {
                client: &c1,
                topic: "TopicA",
                share: None,
            },
            r#"{"action":"client_unsubscribe","clientid":"c1","username":"undefined","topic":"TopicA"}"#,
            r#"{"action":"client_unsubscribe","node":"herald@127.0.0.1","clientid":"c1","username":null,"topic":"TopicA","opts":{}}"#,
        ),
        (
            Event::SessionSubscribed {
                client: &c1,
                sub: sub("TopicA"),
                is_new: true,
            },
            r#"{"action":"session_subscribed","clientid":"c1","username":"undefined","topic":"TopicA","opts":{"qos":2,"nl":0,"rap":0,"rh":0}}"#,
            r#"{"action":"session_subscribed","node":"herald@127.0.0.1","clientid":"c1","username":null,"topic":"TopicA","opts":{"qos":2,"nl":0,"rap":0,"rh":0,"is_new":true}}"#,
        ),
        (
            Event::SessionUnsubscribed {
                client: &c1,
                topic: "TopicA",
                share: None,
            },
            r#"{"action":"session_unsubscribed","clientid":"c1","username":"undefined","topic":"TopicA"}"#,
            r#"{"action":"session_unsubscribed","node":"herald@127.0.0.1","clientid":"c1","username":null,"topic":"TopicA"}"#,
        ),
        (
            Event::SessionTerminated {
                client_id: "c1",
                username: None,
                reason: TerminationReason::Closed(DisconnectReason::Normal),
            },
            r#"{"action":"session_terminated","clientid":"c1","username":"undefined","reason":"normal"}"#,
            r#"{"action":"session_terminated","node":"herald@127.0.0.1","clientid":"c1","username":null,"reason":"normal"}"#,
        ),
        (
            Event::MessagePublish { message: &msg },
            r#"{"action":"message_publish","from_client_id":"c1","from_username":"undefined","topic":"TopicA","qos":2,"retain":false,"payload":"Payload...","ts":1700000001000}"#,
            r#"{"action":"message_publish","node":"herald@127.0.0.1","from_client_id":"c1","from_username":null,"topic":"TopicA","qos":2,"retain":false,"payload":"Payload...","ts":1700000001000}"#,
        ),
        (
            // A retained message delivered to c2 with QoS 1 and RETAIN set.
            Event::MessageDelivered {
                client: &c2,
                message: &msg,
                qos: QoS::AtLeastOnce,
                retain: true,
            },
            r#"{"action":"message_delivered","clientid":"c2","username":"u2","from_client_id":"c1","from_username":"undefined","topic":"TopicA","qos":1,"retain":true,"payload":"Payload...","ts":1700000001000}"#,
            r#"{"action":"message_delivered","node":"herald@127.0.0.1","clientid":"c2","username":"u2","from_client_id":"c1","from_username":null,"topic":"TopicA","qos":1,"retain":true,"payload":"Payload...","ts":1700000001000}"#,
        ),
        (
            Event::MessageAcked {
                client: &c2,
                message: &msg,
                qos: QoS::AtLeastOnce,
                retain: false,
            },
            r#"{"action":"message_acked","clientid":"c2","from_client_id":"c1","from_username":"undefined","topic":"TopicA","qos":1,"retain":false,"payload":"Payload...","ts":1700000001000}"#,
            r#"{"action":"message_acked","node":"herald@127.0.0.1","clientid":"c2","username":"u2","from_client_id":"c1","from_username":null,"topic":"TopicA","qos":1,"retain":false,"payload":"Payload...","ts":1700000001000}"#,
        ),
        (
            Event::MessageDropped {
                message: &msg,
                reason: DropReason::NoSubscribers,
            },
            r#"{"action":"message_dropped","from_client_id":"c1","from_username":"undefined","topic":"TopicA","qos":2,"retain":false,"payload":"Payload...","ts":1700000001000,"reason":"no_subscribers"}"#,
            r#"{"action":"message_dropped","node":"herald@127.0.0.1","from_client_id":"c1","from_username":null,"topic":"TopicA","qos":2,"retain":false,"payload":"Payload...","ts":1700000001000,"reason":"no_subscribers"}"#,
        ),
    ];
    let mut kinds: Vec<EventKind> = Vec::new();
    for (event, v40, v44) in &cases {
        kinds.extend(EventKind::of(event));
        assert_fields(&text(&builder(Profile::V4_0), event), v40);
        assert_fields(&text(&builder(Profile::V4_4), event), v44);
        // Field order follows the spec's examples too.
        assert_eq!(text(&builder(Profile::V4_0), event), *v40);
        assert_eq!(text(&builder(Profile::V4_4), event), *v44);
    }
    assert_eq!(kinds, EventKind::ALL, "every event kind is covered once");
}

/// The example of §3, byte for byte (v4.0, anonymous MQTT 5 client c1).
#[test]
fn spec_example_lines() {
    let c1 = c1();
    let msg = message("TopicA");
    let b = builder(Profile::V4_0);
    let events = [
        Event::ClientConnect {
            client: &c1,
            assigned: None,
        },
        Event::ClientConnack {
            client: &c1,
            reason: ReasonCode::SUCCESS,
        },
        Event::ClientConnected { client: &c1 },
        Event::ClientSubscribe {
            client: &c1,
            sub: sub("TopicA"),
        },
        Event::SessionSubscribed {
            client: &c1,
            sub: sub("TopicA"),
            is_new: true,
        },
        Event::MessagePublish { message: &msg },
        Event::ClientDisconnected {
            client: &c1,
            reason: DisconnectReason::Normal,
        },
        Event::SessionTerminated {
            client_id: "c1",
            username: None,
            reason: TerminationReason::Closed(DisconnectReason::Normal),
        },
    ];
    let expected = r#"{"action":"client_connect","clientid":"c1","username":"undefined","ipaddress":"127.0.0.1","keepalive":60,"proto_ver":5}
{"action":"client_connack","clientid":"c1","username":"undefined","ipaddress":"127.0.0.1","keepalive":60,"proto_ver":5,"conn_ack":"success"}
{"action":"client_connected","clientid":"c1","username":"undefined","ipaddress":"127.0.0.1","keepalive":60,"proto_ver":5,"connected_at":1700000000}
{"action":"client_subscribe","clientid":"c1","username":"undefined","topic":"TopicA","opts":{"qos":2,"nl":0,"rap":0,"rh":0}}
{"action":"session_subscribed","clientid":"c1","username":"undefined","topic":"TopicA","opts":{"qos":2,"nl":0,"rap":0,"rh":0}}
{"action":"message_publish","from_client_id":"c1","from_username":"undefined","topic":"TopicA","qos":2,"retain":false,"payload":"Payload...","ts":1700000001000}
{"action":"client_disconnected","clientid":"c1","username":"undefined","reason":"normal"}
{"action":"session_terminated","clientid":"c1","username":"undefined","reason":"normal"}"#;
    for (event, line) in events.iter().zip(expected.lines()) {
        assert_eq!(text(&b, event), line);
    }
}

#[test]
fn usernames_in_both_profiles() {
    let mut c = c1();
    c.username = Some("alice".into());
    let mut msg = message("t");
    msg.from_username = Some("bob".into());
    for profile in [Profile::V4_0, Profile::V4_4] {
        let b = builder(profile);
        let v: Value = serde_json::from_str(&text(
            &b,
            &Event::ClientConnect {
                client: &c,
                assigned: None,
            },
        ))
        .unwrap_or_default();
        assert_eq!(v["username"], "alice");
        let v: Value = serde_json::from_str(&text(&b, &Event::MessagePublish { message: &msg }))
            .unwrap_or_default();
        assert_eq!(v["from_username"], "bob");
    }
}

#[test]
fn addresses_and_protocol_levels() {
    let b = builder(Profile::V4_0);
    let field = |client: &herald_broker::hooks::ClientInfo, name: &str| -> Value {
        let v: Value = serde_json::from_str(&text(
            &b,
            &Event::ClientConnect {
                client,
                assigned: None,
            },
        ))
        .unwrap_or_default();
        v[name].clone()
    };
    let mut c = c1();
    c.peer = "[::ffff:10.1.2.3]:1"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(field(&c, "ipaddress"), "10.1.2.3");
    c.peer = "[::1]:1".parse().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(field(&c, "ipaddress"), "::1");
    c.peer = "[2001:db8::7]:1".parse().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(field(&c, "ipaddress"), "2001:db8::7");
    for (protocol, level) in [
        (Protocol::V3_1, 3),
        (Protocol::V3_1_1, 4),
        (Protocol::V5, 5),
    ] {
        c.protocol = protocol;
        assert_eq!(field(&c, "proto_ver"), level);
    }
    c.client_id = "".into();
    assert_eq!(field(&c, "clientid"), "");
}

#[test]
fn refused_connack_names_and_no_connected_at() {
    let c = c1();
    for (code, name) in [
        (ReasonCode::NOT_AUTHORIZED, "not_authorized"),
        (
            ReasonCode::BAD_USERNAME_OR_PASSWORD,
            "bad_username_or_password",
        ),
        (
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            "client_identifier_not_valid",
        ),
        (
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            "unsupported_protocol_version",
        ),
        (ReasonCode::SERVER_UNAVAILABLE, "server_unavailable"),
        (ReasonCode::BANNED, "banned"),
        (ReasonCode::MALFORMED_PACKET, "malformed_packet"),
    ] {
        let event = Event::ClientConnack {
            client: &c,
            reason: code,
        };
        for profile in [Profile::V4_0, Profile::V4_4] {
            let v: Value =
                serde_json::from_str(&text(&builder(profile), &event)).unwrap_or_default();
            assert_eq!(v["conn_ack"], name);
            assert!(v.get("connected_at").is_none(), "{profile}: {v}");
        }
    }
}

#[test]
fn subscription_options() {
    let c = c1();
    let info = SubscriptionInfo {
        topic: "a/+",
        share: Some("g1"),
        options: SubOptions {
            qos: QoS::AtLeastOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::DoNotSend,
        },
        subscription_id: Some(42),
    };
    let b = builder(Profile::V4_0);
    assert_eq!(
        text(
            &b,
            &Event::ClientSubscribe {
                client: &c,
                sub: info
            }
        ),
        r#"{"action":"client_subscribe","clientid":"c1","username":"undefined","topic":"a/+","opts":{"qos":1,"nl":1,"rap":1,"rh":2,"share":"g1","subid":42}}"#
    );
    let b = builder(Profile::V4_4);
    let v: Value = serde_json::from_str(&text(
        &b,
        &Event::SessionSubscribed {
            client: &c,
            sub: info,
            is_new: false,
        },
    ))
    .unwrap_or_default();
    assert_eq!(
        v["opts"],
        serde_json::json!({"qos":1,"nl":1,"rap":1,"rh":2,"share":"g1","subid":42,"is_new":false})
    );
    let v: Value = serde_json::from_str(&text(
        &b,
        &Event::ClientUnsubscribe {
            client: &c,
            topic: "a/+",
            share: Some("g1"),
        },
    ))
    .unwrap_or_default();
    assert_eq!(v["topic"], "a/+");
    assert_eq!(v["opts"], serde_json::json!({"share":"g1"}));
}

#[test]
fn payload_encodings() {
    let mut msg = message("t");
    let payload = |enc, msg: &herald_broker::message::Message| -> Value {
        let b = BodyBuilder::new(Profile::V4_0, enc, "n");
        let v: Value = serde_json::from_str(&text(&b, &Event::MessagePublish { message: msg }))
            .unwrap_or_default();
        v["payload"].clone()
    };
    assert_eq!(payload(PayloadEncoding::Base64, &msg), "UGF5bG9hZC4uLg==");
    msg.payload = bytes::Bytes::from_static(b"hello");
    assert_eq!(payload(PayloadEncoding::Base62, &msg), "aGVsbGP");
    msg.payload = bytes::Bytes::from_static(b"\xff\xfe bin \x00 \"q\"");
    assert_eq!(
        payload(PayloadEncoding::Plain, &msg),
        "\u{FFFD}\u{FFFD} bin \u{0} \"q\""
    );
    assert_eq!(payload(PayloadEncoding::Base64, &msg), "//4gYmluIAAgInEi");
}

#[test]
fn strings_are_escaped() {
    let mut c = c1();
    c.client_id = "a\"b\\c\nd".into();
    c.username = Some("\u{1}é".into());
    let body = text(
        &builder(Profile::V4_0),
        &Event::ClientConnect {
            client: &c,
            assigned: None,
        },
    );
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["clientid"], "a\"b\\c\nd");
    assert_eq!(v["username"], "\u{1}é");
    let b = BodyBuilder::new(Profile::V4_4, PayloadEncoding::Plain, "we\"ird");
    let v: Value = serde_json::from_str(&text(
        &b,
        &Event::ClientConnect {
            client: &c,
            assigned: None,
        },
    ))
    .unwrap_or_default();
    assert_eq!(v["node"], "we\"ird");
}

#[test]
fn events_outside_the_contract_have_no_body() {
    let c = c1();
    let b = builder(Profile::V4_4);
    for event in [
        Event::SessionCreated { client: &c },
        Event::SessionResumed { client: &c },
        Event::SessionTakeovered { client: &c },
        Event::SessionDiscarded { client: &c },
    ] {
        assert!(b.build(&event, NOW_MS).is_none());
        let mut out = b"keep".to_vec();
        assert_eq!(b.write(&event, NOW_MS, &mut out), None);
        assert_eq!(out, b"keep");
    }
}

#[test]
fn write_appends() {
    let c = c1();
    let b = builder(Profile::V4_0);
    let mut out = b"[".to_vec();
    assert_eq!(
        b.write(&Event::ClientConnected { client: &c }, NOW_MS, &mut out),
        Some(EventKind::ClientConnected)
    );
    out.push(b']');
    let v: Value = serde_json::from_slice(&out).unwrap_or_default();
    assert_eq!(v[0]["action"], "client_connected");
}
