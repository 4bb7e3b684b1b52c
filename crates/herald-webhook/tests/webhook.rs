//! The WebHook as a web service sees it: a real MQTT client (rumqttc)
//! against the broker, a real HTTP server receiving the requests, every
//! body compared field by field with `docs/webhook.md` §3.
//! HTTPS is in `webhook_tls.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

mod harness;

use harness::{Flow, Mqtt4, Mqtt5, Profile, Sink, WAIT, full_flow, options4, options5, start};
use herald_broker::hooks::{AuthRequest, Authenticator, Decision, DecisionFuture};
use herald_codec::ReasonCode;
use herald_webhook::listen::{self, Received, Reply};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[tokio::test]
async fn full_flow_over_http_profile_v4_0_anonymous() {
    let mut sink = Sink::http("127.0.0.1:0").await;
    let url = format!("{}/hook?src=herald", sink.base("http"));
    let extra = format!("{}{}", Profile::V40.conf(), harness::ALL_RULES);
    let hooked = start(&url, &extra, |_| {}, |_| {}).await;
    let flow = Flow {
        profile: Profile::V40,
        username: None,
        ip: "127.0.0.1",
        path: "/hook?src=herald".into(),
    };
    let got = full_flow(&hooked, &mut sink, &flow).await;
    assert_eq!(got[0].header("host"), sink.addr.to_string());
    hooked.stop().await;
}

#[tokio::test]
async fn full_flow_over_http_profile_v4_4_with_username() {
    let mut sink = Sink::http("127.0.0.1:0").await;
    // No path in the URL: requests go to `/`.
    let url = sink.base("http");
    let extra = format!("{}{}", Profile::V44.conf(), harness::ALL_RULES);
    let hooked = start(&url, &extra, |_| {}, |_| {}).await;
    let flow = Flow {
        profile: Profile::V44,
        username: Some("alice"),
        ip: "127.0.0.1",
        path: "/".into(),
    };
    full_flow(&hooked, &mut sink, &flow).await;
    hooked.stop().await;
}

#[tokio::test]
async fn full_flow_to_ipv6_loopback_in_both_profiles() {
    for profile in [Profile::V40, Profile::V44] {
        let mut sink = Sink::http("[::1]:0").await;
        let url = format!("http://[::1]:{}/ipv6", sink.addr.port());
        let extra = format!("{}{}", profile.conf(), harness::ALL_RULES);
        let hooked = start(
            &url,
            &extra,
            |c| c.listener.bind = vec!["[::1]:0".parse().unwrap_or_else(|e| panic!("{e}"))],
            |_| {},
        )
        .await;
        let flow = Flow {
            profile,
            username: None,
            ip: "::1",
            path: "/ipv6".into(),
        };
        let got = full_flow(&hooked, &mut sink, &flow).await;
        assert_eq!(got[0].header("host"), format!("[::1]:{}", sink.addr.port()));
        hooked.stop().await;
    }
}

#[tokio::test]
async fn custom_headers_arrive_and_content_type_cannot_be_overridden() {
    let mut sink = Sink::http("127.0.0.1:0").await;
    let extra = "\
web.hook.headers.X_Custom_Header = hello world
web.hook.headers.Authorization = Bearer abc
web.hook.headers.content-type = text/plain
web.hook.headers.Content_Type = text/xml
web.hook.sign.secret = s3cret
web.hook.rule.client.connect.1 = {\"action\": \"on_client_connect\"}
";
    let hooked = start(&sink.base("http"), extra, |_| {}, |_| {}).await;
    let _c = Mqtt5::connect(options5(hooked.mqtt(), "h1")).await;
    let got = sink.next().await;
    assert_eq!(got.action(), "client_connect");
    assert_eq!(got.header("x-custom-header"), "hello world");
    assert_eq!(got.header("authorization"), "Bearer abc");
    let types: Vec<_> = got.headers.get_all("content-type").iter().collect();
    assert_eq!(types, ["application/json"], "exactly one content-type");
    assert!(!got.header("x-herald-event-id").is_empty());
    // Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">.
    let sig = got.header("x-herald-signature");
    let (t, v1) = sig
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .unwrap_or_else(|| panic!("signature header {sig:?}"));
    let t: u64 = t.parse().unwrap_or_else(|e| panic!("{e}: {sig}"));
    assert_eq!(
        v1,
        herald_webhook::deliver::signature(b"s3cret", t, &got.body)
    );
    hooked.stop().await;
}

#[tokio::test]
async fn sys_topics_are_never_sent() {
    let mut sink = Sink::http("127.0.0.1:0").await;
    let extra = "\
web.hook.rule.message.publish.1 = {\"action\": \"on_message_publish\"}
web.hook.rule.message.publish.2 = {\"action\": \"on_message_publish\", \"topic\": \"$SYS/#\"}
web.hook.rule.message.delivered.1 = {\"action\": \"on_message_delivered\"}
web.hook.rule.message.acked.1 = {\"action\": \"on_message_acked\"}
web.hook.rule.message.dropped.1 = {\"action\": \"on_message_dropped\"}
";
    // $SYS on: the first statistics go out as soon as the broker starts
    // (no subscriber yet: message.publish and message.dropped on $SYS/).
    // c1 may publish under $SYS/ (as a bridge would): its own $SYS/
    // publication must not be sent either.
    let hooked = start(
        &sink.base("http"),
        extra,
        |c| {
            c.sys.interval = 3600;
            c.sys.allowed_publishers = vec!["c1".into()];
        },
        |_| {},
    )
    .await;
    let mut c1 = Mqtt5::connect(options5(hooked.mqtt(), "c1")).await;
    c1.client
        .subscribe("$SYS/#", QoS::AtLeastOnce)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The statistics reach c1, retained or live: message.delivered on $SYS/.
    loop {
        let p = c1.publish_received().await;
        if &p.topic[..] == b"$SYS/broker/version" {
            break;
        }
    }
    // A client's own $SYS/ publication, delivered to and acked by c1.
    c1.client
        .publish("$SYS/fake", QoS::AtLeastOnce, false, "f")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    loop {
        let p = c1.publish_received().await;
        if &p.topic[..] == b"$SYS/fake" {
            break;
        }
    }
    // Then an ordinary message: it is the first thing the service sees
    // (c1's events share a lane, in order).
    c1.client
        .publish("t/1", QoS::AtLeastOnce, false, "m")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got = sink.take(2).await;
    assert_eq!(got[0].action(), "message_publish");
    assert_eq!(got[0].json["topic"], "t/1");
    assert_eq!(got[1].action(), "message_dropped");
    assert_eq!(got[1].json["topic"], "t/1");
    // Every $SYS/ event happened before t/1's; none was even enqueued.
    assert_eq!(hooked.matched("message.publish"), 1);
    assert_eq!(hooked.matched("message.dropped"), 1);
    assert_eq!(hooked.matched("message.delivered"), 0);
    assert_eq!(hooked.matched("message.acked"), 0);
    hooked.stop().await;
}

#[tokio::test]
async fn topic_filters_on_and_off_overlapping_and_identical_rules() {
    let mut sink = Sink::http("127.0.0.1:0").await;
    let extra = "\
web.hook.rule.message.publish.1 = {\"action\": \"on_message_publish\", \"topic\": \"a/#\"}
web.hook.rule.message.publish.2 = {\"action\": \"on_message_publish\", \"topic\": \"a/+\"}
web.hook.rule.message.publish.3 = {\"action\": \"on_message_publish\", \"topic\": \"a/#\"}
web.hook.rule.message.dropped.1 = {\"action\": \"on_message_dropped\"}
";
    let hooked = start(&sink.base("http"), extra, |_| {}, |_| {}).await;
    let c1 = Mqtt5::connect(options5(hooked.mqtt(), "c1")).await;
    for topic in ["b/1", "a/1", "a/b/c"] {
        c1.client
            .publish(topic, QoS::AtMostOnce, false, topic)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let got = sink.take(6).await;
    let seen: Vec<(&str, &str)> = got
        .iter()
        .map(|g| (g.action(), g.json["topic"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        seen,
        [
            // b/1: no publish rule matches; the dropped rule has no filter.
            ("message_dropped", "b/1"),
            // a/1: a/# and a/+ both match (the second a/# counts once).
            ("message_publish", "a/1"),
            ("message_publish", "a/1"),
            ("message_dropped", "a/1"),
            // a/b/c: only a/#.
            ("message_publish", "a/b/c"),
            ("message_dropped", "a/b/c"),
        ]
    );
    assert_ne!(
        got[1].header("x-herald-event-id"),
        got[2].header("x-herald-event-id"),
        "each request of an event has its own id"
    );
    assert_eq!(got[1].body, got[2].body);
    hooked.stop().await;
}

#[tokio::test]
async fn a_three_topic_subscribe_sends_three_requests() {
    let mut sink = Sink::http("127.0.0.1:0").await;
    let extra = "\
web.hook.rule.client.subscribe.1 = {\"action\": \"on_client_subscribe\"}
web.hook.rule.session.subscribed.1 = {\"action\": \"on_session_subscribed\", \"topic\": \"x/#\"}
";
    let hooked = start(&sink.base("http"), extra, |_| {}, |_| {}).await;
    let mut c1 = Mqtt5::connect(options5(hooked.mqtt(), "c1")).await;
    let mut nl = Filter::new("x/2", QoS::AtLeastOnce);
    nl.nolocal = true;
    c1.client
        .subscribe_many([
            Filter::new("x/1", QoS::AtMostOnce),
            nl,
            Filter::new("$share/g/y/3", QoS::ExactlyOnce),
        ])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    c1.suback().await;
    let got = sink.take(5).await;
    let bodies: Vec<_> = got.iter().map(|g| g.json.clone()).collect();
    let who = json!({"clientid": "c1", "username": "undefined"});
    let body = |action: &str, topic: &str, opts: serde_json::Value| {
        let mut b = who.clone();
        b["action"] = json!(action);
        b["topic"] = json!(topic);
        b["opts"] = opts;
        b
    };
    let o1 = json!({"qos": 0, "nl": 0, "rap": 0, "rh": 0});
    let o2 = json!({"qos": 1, "nl": 1, "rap": 0, "rh": 0});
    let o3 = json!({"qos": 2, "nl": 0, "rap": 0, "rh": 0, "share": "g"});
    assert_eq!(
        bodies,
        [
            body("client_subscribe", "x/1", o1.clone()),
            body("session_subscribed", "x/1", o1),
            body("client_subscribe", "x/2", o2.clone()),
            body("session_subscribed", "x/2", o2),
            // y/3 does not match the session.subscribed rule's x/#.
            body("client_subscribe", "y/3", o3),
        ]
    );
    hooked.stop().await;
}

#[tokio::test]
async fn payload_encodings_plain_base64_base62_and_binary() {
    // (configuration value, payload, field expected)
    let cases: [(&str, &[u8], &str); 5] = [
        ("base64", b"hello", "aGVsbG8="),
        ("base62", b"hello", "aGVsbGP"),
        ("base64", b"\xff\x00\xfe", "/wD+"),
        ("plain", b"\xffok\xfe", "\u{FFFD}ok\u{FFFD}"),
        ("plain", b"caf\xc3\xa9", "caf\u{e9}"),
    ];
    for (encoding, payload, expected) in cases {
        let mut sink = Sink::http("127.0.0.1:0").await;
        let extra = format!(
            "web.hook.body.encoding_of_payload_field = {encoding}\n\
             web.hook.rule.message.publish.1 = {{\"action\": \"on_message_publish\"}}\n"
        );
        let hooked = start(&sink.base("http"), &extra, |_| {}, |_| {}).await;
        let mut c1 = Mqtt5::connect(options5(hooked.mqtt(), "c1")).await;
        c1.client
            .subscribe("p", QoS::AtLeastOnce)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        c1.suback().await;
        c1.client
            .publish("p", QoS::AtLeastOnce, false, payload.to_vec())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // The message itself reaches the subscriber unchanged.
        assert_eq!(&c1.publish_received().await.payload[..], payload);
        let got = sink.next().await;
        assert_eq!(got.json["payload"], expected, "{encoding} of {payload:?}");
        // The broker goes on: the next message is sent as well.
        c1.client
            .publish("p", QoS::AtLeastOnce, false, "next")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = c1.publish_received().await;
        let next = sink.next().await;
        assert_eq!(next.action(), "message_publish");
        hooked.stop().await;
    }
}

const CONNECT_RULES: &str = "\
web.hook.rule.client.connect.1 = {\"action\": \"on_client_connect\"}
web.hook.rule.client.connack.1 = {\"action\": \"on_client_connack\"}
web.hook.rule.client.connected.1 = {\"action\": \"on_client_connected\"}
";

#[tokio::test]
async fn refused_connect_gives_connack_not_authorized() {
    let mut sink = Sink::http("127.0.0.1:0").await;
    let hooked = start(
        &sink.base("http"),
        CONNECT_RULES,
        |c| c.auth.allow_anonymous = Some(false),
        |broker| {
            broker.hooks.add_authenticator(0, Arc::new(NamedOnly));
        },
    )
    .await;
    // An anonymous MQTT 3.1.1 client is refused (return code 5)...
    let err = Mqtt4::refused(options4(hooked.mqtt(), "r1")).await;
    assert!(err.contains("NotAuthorized"), "{err}");
    // ... and one with a user name is let in.
    let mut with_user = options4(hooked.mqtt(), "r1");
    with_user.set_credentials("bob", "pw");
    let _ok = Mqtt4::connect(with_user).await;
    let got = sink.take(5).await;
    let base = json!({"clientid": "r1", "username": "undefined", "ipaddress": "127.0.0.1",
                      "keepalive": 30, "proto_ver": 4});
    let with = |action: &str, user: &str, extra: &[(&str, serde_json::Value)]| {
        let mut b = base.clone();
        b["action"] = json!(action);
        b["username"] = json!(user);
        for (k, v) in extra {
            b[*k] = v.clone();
        }
        b
    };
    let t1 = harness::now_ms();
    let expected = [
        with("client_connect", "undefined", &[]),
        with(
            "client_connack",
            "undefined",
            &[("conn_ack", json!("not_authorized"))],
        ),
        with("client_connect", "bob", &[]),
        with("client_connack", "bob", &[("conn_ack", json!("success"))]),
        with("client_connected", "bob", &[("connected_at", json!("<s>"))]),
    ];
    for (g, e) in got.iter().zip(&expected) {
        harness::check_body(&g.json, e, 0, t1);
    }
    hooked.stop().await;
}

/// Lets in every client with a user name; no opinion on others.
struct NamedOnly;

impl Authenticator for NamedOnly {
    fn authenticate<'a>(&'a self, request: AuthRequest<'a>) -> DecisionFuture<'a> {
        let named = request.client.username.is_some();
        Box::pin(async move {
            if named {
                Decision::Allow
            } else {
                Decision::Ignore
            }
        })
    }
}

/// Denies every password but `secret` with 0x86.
struct Passwords;

impl Authenticator for Passwords {
    fn authenticate<'a>(&'a self, request: AuthRequest<'a>) -> DecisionFuture<'a> {
        let ok = request.password.is_some_and(|p| &p[..] == b"secret");
        Box::pin(async move {
            if ok {
                Decision::Allow
            } else {
                Decision::Deny(ReasonCode::BAD_USERNAME_OR_PASSWORD)
            }
        })
    }
}

#[tokio::test]
async fn refused_connect_gives_connack_bad_username_or_password() {
    let mut sink = Sink::http("127.0.0.1:0").await;
    let extra = format!("{}{CONNECT_RULES}", Profile::V44.conf());
    let hooked = start(
        &sink.base("http"),
        &extra,
        |_| {},
        |broker| {
            broker.hooks.add_authenticator(0, Arc::new(Passwords));
        },
    )
    .await;
    let mut wrong = options5(hooked.mqtt(), "c1");
    wrong.set_credentials("u", "wrong");
    let err = Mqtt5::refused(wrong).await;
    assert!(err.contains("BadUserNamePassword"), "{err}");
    let mut right = options5(hooked.mqtt(), "c1");
    right.set_credentials("u", "secret");
    let _ok = Mqtt5::connect(right).await;
    let got = sink.take(5).await;
    let t1 = harness::now_ms();
    let base = json!({"clientid": "c1", "username": "u", "ipaddress": "127.0.0.1",
                      "keepalive": 60, "proto_ver": 5, "node": "herald@127.0.0.1"});
    let with = |action: &str, extra: &[(&str, serde_json::Value)]| {
        let mut b = base.clone();
        b["action"] = json!(action);
        for (k, v) in extra {
            b[*k] = v.clone();
        }
        b
    };
    let expected = [
        with("client_connect", &[]),
        // A refusal has no connected_at, even in v4.4.
        with(
            "client_connack",
            &[("conn_ack", json!("bad_username_or_password"))],
        ),
        with("client_connect", &[]),
        with(
            "client_connack",
            &[
                ("conn_ack", json!("success")),
                ("connected_at", json!("<ms>")),
            ],
        ),
        with("client_connected", &[("connected_at", json!("<ms>"))]),
    ];
    for (g, e) in got.iter().zip(&expected) {
        harness::check_body(&g.json, e, 0, t1);
    }
    hooked.stop().await;
}

/// While the web service fails every request (`failing`), an MQTT client
/// keeps round-tripping messages and stays connected; once it recovers,
/// every event arrives, in order.
async fn mqtt_unaffected_while_the_service_fails(failure: Reply) {
    let failing = Arc::new(AtomicBool::new(true));
    let (attempt_tx, mut attempts) = tokio::sync::mpsc::unbounded_channel();
    let decide = {
        let failing = failing.clone();
        Arc::new(move |_: &Received| {
            let _ = attempt_tx.send(());
            if failing.load(Ordering::SeqCst) {
                failure
            } else {
                Reply::Status(200)
            }
        })
    };
    let (receiver, mut rx) = listen::channel(
        "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
        Some(decide),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let extra = "\
web.hook.rule.client.connected.1 = {\"action\": \"on_client_connected\"}
web.hook.rule.message.publish.1 = {\"action\": \"on_message_publish\", \"topic\": \"rt/#\"}
";
    let hooked = start(&format!("http://{}/", receiver.addr), extra, |_| {}, |_| {}).await;
    let mut c1 = Mqtt5::connect(options5(hooked.mqtt(), "c1")).await;
    // The service has refused client_connected at least once...
    tokio::time::timeout(WAIT, attempts.recv())
        .await
        .unwrap_or_else(|_| panic!("no attempt within {WAIT:?}"));
    c1.client
        .subscribe("rt/#", QoS::AtLeastOnce)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    c1.suback().await;
    // ... and while it keeps failing, messages round-trip.
    const ROUND_TRIPS: usize = 20;
    for i in 0..ROUND_TRIPS {
        c1.client
            .publish(format!("rt/{i}"), QoS::AtLeastOnce, false, i.to_string())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let p = c1.publish_received().await;
        assert_eq!(p.payload, i.to_string().as_bytes());
    }
    // More attempts failed meanwhile; nothing was delivered; c1 is still
    // connected (a ping round trip works, no DISCONNECT came).
    tokio::time::timeout(WAIT, attempts.recv())
        .await
        .unwrap_or_else(|_| panic!("no retry within {WAIT:?}"));
    assert!(rx.try_recv().is_err(), "nothing accepted while failing");
    assert_eq!(
        hooked.metric("herald_webhook_events_delivered_total{event=\"client.connected\"}"),
        0
    );
    assert!(hooked.metric("herald_webhook_events_retried_total{event=\"client.connected\"}") >= 1);
    c1.client
        .publish("ping", QoS::AtLeastOnce, false, "")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    c1.wait(|p| match p {
        Packet::PubAck(_) => Some(()),
        Packet::Disconnect(d) => panic!("disconnected: {d:?}"),
        _ => None,
    })
    .await;

    // The service recovers: everything arrives, in order, once each.
    failing.store(false, Ordering::SeqCst);
    assert_eq!(next(&mut rx).await["action"], "client_connected");
    for i in 0..ROUND_TRIPS {
        let body = next(&mut rx).await;
        assert_eq!(body["action"], "message_publish");
        assert_eq!(body["payload"], i.to_string());
    }
    assert_eq!(hooked.matched("message.publish"), ROUND_TRIPS as u64);
    hooked.stop().await;
}

/// The next request the listen receiver accepted, as JSON.
async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Received>) -> serde_json::Value {
    let r = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no request within {WAIT:?}"))
        .unwrap_or_else(|| panic!("receiver stopped"));
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn a_server_answering_500_does_not_disturb_mqtt() {
    mqtt_unaffected_while_the_service_fails(Reply::Status(500)).await;
}

#[tokio::test]
async fn a_server_closing_the_connection_does_not_disturb_mqtt() {
    mqtt_unaffected_while_the_service_fails(Reply::Close).await;
}

#[tokio::test]
async fn v4_4_subscription_details_retained_delivery_and_shared_unsubscribe() {
    use rumqttc::v5::mqttbytes::v5::SubscribeProperties;
    let mut sink = Sink::http("127.0.0.1:0").await;
    let extra = format!(
        "{}\
web.hook.rule.client.subscribe.1 = {{\"action\": \"on_client_subscribe\"}}
web.hook.rule.client.unsubscribe.1 = {{\"action\": \"on_client_unsubscribe\"}}
web.hook.rule.session.subscribed.1 = {{\"action\": \"on_session_subscribed\"}}
web.hook.rule.session.unsubscribed.1 = {{\"action\": \"on_session_unsubscribed\"}}
web.hook.rule.message.publish.1 = {{\"action\": \"on_message_publish\"}}
web.hook.rule.message.delivered.1 = {{\"action\": \"on_message_delivered\"}}
",
        Profile::V44.conf()
    );
    let hooked = start(&sink.base("http"), &extra, |_| {}, |_| {}).await;
    let t0 = harness::now_ms();
    let mut c1 = Mqtt5::connect(options5(hooked.mqtt(), "c1")).await;
    // A retained message, then a subscription with an identifier: the
    // retained copy is delivered with RETAIN set.
    c1.client
        .publish("r/1", QoS::AtLeastOnce, true, "keep")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    c1.wait(|p| matches!(p, Packet::PubAck(_)).then_some(()))
        .await;
    let props = SubscribeProperties {
        id: Some(7),
        user_properties: Vec::new(),
    };
    c1.client
        .subscribe_with_properties("r/#", QoS::AtLeastOnce, props)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(c1.publish_received().await.retain);
    // The same filter again: not new.
    c1.client
        .subscribe("r/#", QoS::AtMostOnce)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    c1.suback().await;
    c1.client
        .subscribe("$share/g/s/1", QoS::AtLeastOnce)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    c1.suback().await;
    c1.client
        .unsubscribe("$share/g/s/1")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    c1.unsuback().await;
    c1.client
        .unsubscribe("r/#")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    c1.unsuback().await;
    let got = sink.take(12).await;
    let t1 = harness::now_ms();
    let who = json!({"clientid": "c1", "username": null, "node": "herald@127.0.0.1"});
    let body = |action: &str, pairs: &[(&str, serde_json::Value)]| {
        let mut b = who.clone();
        b["action"] = json!(action);
        for (k, v) in pairs {
            b[*k] = v.clone();
        }
        b
    };
    let message = |action: &str, qos: u8| {
        let mut b = json!({"action": action, "from_client_id": "c1", "from_username": null,
                           "topic": "r/1", "qos": qos, "retain": true, "payload": "keep",
                           "ts": "<ms>", "node": "herald@127.0.0.1"});
        if action == "message_delivered" {
            b["clientid"] = json!("c1");
            b["username"] = serde_json::Value::Null;
        }
        b
    };
    let opts7 = json!({"qos": 1, "nl": 0, "rap": 0, "rh": 0, "subid": 7});
    let opts0 = json!({"qos": 0, "nl": 0, "rap": 0, "rh": 0});
    let shared = json!({"qos": 1, "nl": 0, "rap": 0, "rh": 0, "share": "g"});
    let with_new = |o: &serde_json::Value, new: bool| {
        let mut o = o.clone();
        o["is_new"] = json!(new);
        o
    };
    let expected = [
        message("message_publish", 1),
        body(
            "client_subscribe",
            &[("topic", json!("r/#")), ("opts", opts7.clone())],
        ),
        body(
            "session_subscribed",
            &[("topic", json!("r/#")), ("opts", with_new(&opts7, true))],
        ),
        message("message_delivered", 1),
        body(
            "client_subscribe",
            &[("topic", json!("r/#")), ("opts", opts0.clone())],
        ),
        body(
            "session_subscribed",
            &[("topic", json!("r/#")), ("opts", with_new(&opts0, false))],
        ),
        // Retain Handling 0: the retained message is sent again.
        message("message_delivered", 0),
        body(
            "client_subscribe",
            &[("topic", json!("s/1")), ("opts", shared.clone())],
        ),
        body(
            "session_subscribed",
            &[("topic", json!("s/1")), ("opts", with_new(&shared, true))],
        ),
        body(
            "client_unsubscribe",
            &[("topic", json!("s/1")), ("opts", json!({"share": "g"}))],
        ),
        body("session_unsubscribed", &[("topic", json!("s/1"))]),
        body(
            "client_unsubscribe",
            &[("topic", json!("r/#")), ("opts", json!({}))],
        ),
    ];
    let actions: Vec<&str> = got.iter().map(|g| g.action()).collect();
    let wanted: Vec<&str> = expected
        .iter()
        .map(|e| e["action"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(actions, wanted);
    for (g, e) in got.iter().zip(&expected) {
        harness::check_body(&g.json, e, t0, t1);
    }
    let last = sink.next().await;
    harness::check_body(
        &last.json,
        &body("session_unsubscribed", &[("topic", json!("r/#"))]),
        t0,
        t1,
    );
    hooked.stop().await;
}

#[tokio::test]
async fn an_ipv4_mapped_peer_is_written_as_ipv4_and_an_assigned_id_after_connect() {
    let mut sink = Sink::http("127.0.0.1:0").await;
    let hooked = start(
        &sink.base("http"),
        CONNECT_RULES,
        // Dual stack: an IPv4 client's address is ::ffff:127.0.0.1.
        |c| c.listener.bind = vec!["[::]:0".parse().unwrap_or_else(|e| panic!("{e}"))],
        |_| {},
    )
    .await;
    let port = hooked.mqtt().port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    // An empty client id: the broker assigns one.
    let _c = Mqtt5::connect(options5(addr, "")).await;
    let mut got = sink.take(3).await;
    got.sort_by_key(|g| g.action().to_owned());
    let actions: Vec<&str> = got.iter().map(|g| g.action()).collect();
    assert_eq!(
        actions,
        ["client_connack", "client_connect", "client_connected"]
    );
    for g in &got {
        assert_eq!(g.json["ipaddress"], "127.0.0.1", "{}", g.json);
    }
    assert_eq!(got[1].json["clientid"], "");
    let assigned = got[0].json["clientid"].as_str().unwrap_or("");
    assert!(!assigned.is_empty(), "{}", got[0].json);
    assert_eq!(got[2].json["clientid"], assigned);
    hooked.stop().await;
}

/// A client without a client id: its `client_connect` (which carries the
/// empty id) takes the lane of the id the broker assigns, so it arrives
/// before that client's `client_connack` and `client_connected`.
#[tokio::test]
async fn an_assigned_ids_client_connect_takes_its_lane_and_comes_first() {
    let mut sink = Sink::http("127.0.0.1:0").await;
    let hooked = start(&sink.base("http"), CONNECT_RULES, |_| {}, |_| {}).await;
    let mut clients = Vec::new();
    // Several clients: with 4 lanes, the empty id's lane and an assigned
    // id's are the same by chance for one client in four.
    for _ in 0..8 {
        clients.push(Mqtt5::connect(options5(hooked.mqtt(), "")).await);
        let got = sink.take(3).await;
        let actions: Vec<&str> = got.iter().map(|g| g.action()).collect();
        assert_eq!(
            actions,
            ["client_connect", "client_connack", "client_connected"],
            "in the order they happened"
        );
        // Event ids are <spool id>-<lane>-<seq>.
        let lanes: Vec<&str> = got
            .iter()
            .map(|g| {
                g.header("x-herald-event-id")
                    .split('-')
                    .nth(1)
                    .unwrap_or("")
            })
            .collect();
        assert!(
            lanes.iter().all(|l| *l == lanes[0] && !l.is_empty()),
            "one lane for the client's events: {lanes:?}"
        );
        assert_eq!(
            got[0].json["clientid"], "",
            "client_connect: the id as sent"
        );
    }
    hooked.stop().await;
}

#[tokio::test]
async fn a_taken_over_clients_disconnect_arrives_before_its_successors_connected() {
    let mut sink = Sink::http("127.0.0.1:0").await;
    let extra = "\
web.hook.rule.client.connected.1 = {\"action\": \"on_client_connected\"}
web.hook.rule.client.disconnected.1 = {\"action\": \"on_client_disconnected\"}
web.hook.rule.session.terminated.1 = {\"action\": \"on_session_terminated\"}
";
    let hooked = start(&sink.base("http"), extra, |_| {}, |_| {}).await;
    let _first = Mqtt5::connect(options5(hooked.mqtt(), "dup")).await;
    let got = sink.next().await;
    assert_eq!(got.action(), "client_connected");
    let _second = Mqtt5::connect(options5(hooked.mqtt(), "dup")).await;
    let got = sink.take(3).await;
    let seen: Vec<(&str, &str)> = got
        .iter()
        .map(|g| (g.action(), g.json["reason"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(seen[2], ("client_connected", ""), "{seen:?}");
    let mut before = seen[..2].to_vec();
    before.sort();
    assert_eq!(
        before,
        [
            ("client_disconnected", "takeovered"),
            ("session_terminated", "discarded")
        ]
    );
    hooked.stop().await;
}
