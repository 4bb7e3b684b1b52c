//! Rule matching (`docs/webhook.md` §2): topic filter on and off, `$SYS/`,
//! overlapping and identical rules, multi-topic subscribes, `$share`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

mod common;

use common::{c1, c2, message, sub};
use herald_broker::hooks::{DropReason, Event, SubscriptionInfo};
use herald_broker::reason::{DisconnectReason, TerminationReason};
use herald_codec::{QoS, ReasonCode};
use herald_webhook::{EventKind, Rules, WebhookConfig};

/// Rules from conf lines (with a URL added).
fn rules(lines: &str) -> Rules {
    let text = format!("web.hook.url = http://127.0.0.1:9000\n{lines}");
    match WebhookConfig::parse(&text, "test.conf") {
        Ok(c) => c.rules,
        Err(e) => panic!("{e}"),
    }
}

fn publish(rules: &Rules, topic: &str) -> usize {
    let msg = message(topic);
    rules.matching(&Event::MessagePublish { message: &msg })
}

#[test]
fn no_rules_no_requests() {
    let r = Rules::new();
    assert!(r.is_empty());
    assert_eq!(publish(&r, "a"), 0);
    let c = c1();
    assert_eq!(r.matching(&Event::ClientConnected { client: &c }), 0);
}

#[test]
fn rule_without_topic_matches_every_event_of_its_kind() {
    let r = rules(r#"web.hook.rule.message.publish.1 = {"action": "on_message_publish"}"#);
    assert_eq!(publish(&r, "a"), 1);
    assert_eq!(publish(&r, "a/b/c"), 1);
    assert_eq!(publish(&r, "$other/x"), 1);
    // Only its kind.
    let c = c1();
    let msg = message("a");
    assert_eq!(r.matching(&Event::ClientConnected { client: &c }), 0);
    assert_eq!(
        r.matching(&Event::MessageDropped {
            message: &msg,
            reason: DropReason::NoSubscribers
        }),
        0
    );
}

#[test]
fn topic_filter() {
    let r = rules(
        r#"web.hook.rule.message.publish.1 = {"action": "on_message_publish", "topic": "a/+/c"}"#,
    );
    assert_eq!(publish(&r, "a/b/c"), 1);
    assert_eq!(publish(&r, "a/x/c"), 1);
    assert_eq!(publish(&r, "a/b"), 0);
    assert_eq!(publish(&r, "b/b/c"), 0);
    let r = rules(
        r#"web.hook.rule.message.publish.1 = {"action": "on_message_publish", "topic": "a/#"}"#,
    );
    assert_eq!(publish(&r, "a"), 1);
    assert_eq!(publish(&r, "a/b/c"), 1);
    assert_eq!(publish(&r, "ab"), 0);
}

#[test]
fn dollar_topics_and_sys() {
    let r = rules(
        "web.hook.rule.message.publish.1 = {\"action\": \"on_message_publish\", \"topic\": \"#\"}\n\
         web.hook.rule.message.publish.2 = {\"action\": \"on_message_publish\", \"topic\": \"$SYS/#\"}\n\
         web.hook.rule.message.publish.3 = {\"action\": \"on_message_publish\", \"topic\": \"$other/#\"}\n\
         web.hook.rule.message.publish.4 = {\"action\": \"on_message_publish\"}",
    );
    // `#` does not match `$` topics; `$other/#` does.
    assert_eq!(publish(&r, "$other/x"), 2);
    assert_eq!(publish(&r, "plain"), 2);
    // `$SYS/` message events are never sent, whatever the rules.
    assert_eq!(publish(&r, "$SYS/brokers/herald/uptime"), 0);
    let c = c2();
    let msg = message("$SYS/x");
    let all = rules(
        "web.hook.rule.message.delivered.1 = {\"action\": \"on_message_delivered\"}\n\
         web.hook.rule.message.acked.1 = {\"action\": \"on_message_acked\"}\n\
         web.hook.rule.message.dropped.1 = {\"action\": \"on_message_dropped\"}\n\
         web.hook.rule.client.subscribe.1 = {\"action\": \"on_client_subscribe\"}",
    );
    for event in [
        Event::MessageDelivered {
            client: &c,
            message: &msg,
            qos: QoS::AtMostOnce,
            retain: false,
        },
        Event::MessageAcked {
            client: &c,
            message: &msg,
            qos: QoS::AtLeastOnce,
            retain: false,
        },
        Event::MessageDropped {
            message: &msg,
            reason: DropReason::NoSubscribers,
        },
    ] {
        assert_eq!(all.matching(&event), 0, "{}", event.name());
    }
    // Subscribing to $SYS is not a message event: it is sent.
    assert_eq!(
        all.matching(&Event::ClientSubscribe {
            client: &c,
            sub: sub("$SYS/#"),
        }),
        1
    );
}

#[test]
fn overlapping_rules_send_one_request_each() {
    let r = rules(
        "web.hook.rule.message.publish.1 = {\"action\": \"on_message_publish\", \"topic\": \"a/#\"}\n\
         web.hook.rule.message.publish.2 = {\"action\": \"on_message_publish\", \"topic\": \"a/+\"}",
    );
    assert_eq!(publish(&r, "a/b"), 2);
    assert_eq!(publish(&r, "a/b/c"), 1);
    assert_eq!(publish(&r, "b"), 0);
}

#[test]
fn identical_rules_count_once() {
    let text = "web.hook.url = http://h\n\
         web.hook.rule.message.publish.1 = {\"action\": \"on_message_publish\", \"topic\": \"a/#\"}\n\
         web.hook.rule.message.publish.2 = {\"topic\": \"a/#\", \"action\": \"on_message_publish\"}";
    let config = WebhookConfig::parse(text, "t.conf").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(publish(&config.rules, "a/b"), 1);
    assert_eq!(config.rules.len(), 1);
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.key == "web.hook.rule.message.publish.2"
                && w.message.contains("counted once")),
        "{:?}",
        config.warnings
    );
    let mut r = Rules::new();
    assert!(r.add(EventKind::MessagePublish, None));
    assert!(!r.add(EventKind::MessagePublish, None));
    assert!(r.add(EventKind::MessagePublish, Some("#".into())));
    assert_eq!(publish(&r, "x"), 2);
}

#[test]
fn topic_is_ignored_for_connection_events() {
    let r = rules(
        "web.hook.rule.client.connect.1 = {\"action\": \"on_client_connect\", \"topic\": \"nothing/matches\"}\n\
         web.hook.rule.client.connect.2 = {\"action\": \"on_client_connect\"}\n\
         web.hook.rule.client.disconnected.1 = {\"action\": \"on_client_disconnected\", \"topic\": \"x\"}\n\
         web.hook.rule.session.terminated.1 = {\"action\": \"on_session_terminated\", \"topic\": \"x\"}",
    );
    let c = c1();
    // The topic is ignored, so both connect rules are the same rule.
    assert_eq!(
        r.matching(&Event::ClientConnect {
            client: &c,
            assigned: None,
        }),
        1
    );
    assert_eq!(
        r.matching(&Event::ClientDisconnected {
            client: &c,
            reason: DisconnectReason::Normal
        }),
        1
    );
    assert_eq!(
        r.matching(&Event::SessionTerminated {
            client_id: "c1",
            username: None,
            reason: TerminationReason::Closed(DisconnectReason::Normal)
        }),
        1
    );
    assert_eq!(
        r.matching(&Event::ClientConnack {
            client: &c,
            reason: ReasonCode::SUCCESS
        }),
        0
    );
}

#[test]
fn three_topic_subscribe_is_three_events_each_matching() {
    let r = rules(
        "web.hook.rule.client.subscribe.1 = {\"action\": \"on_client_subscribe\"}\n\
         web.hook.rule.session.subscribed.1 = {\"action\": \"on_session_subscribed\", \"topic\": \"a/#\"}",
    );
    let c = c1();
    let filters = ["a/1", "a/2", "b/3"];
    let client: Vec<usize> = filters
        .iter()
        .map(|f| {
            r.matching(&Event::ClientSubscribe {
                client: &c,
                sub: sub(f),
            })
        })
        .collect();
    assert_eq!(client, [1, 1, 1]);
    let session: Vec<usize> = filters
        .iter()
        .map(|f| {
            r.matching(&Event::SessionSubscribed {
                client: &c,
                sub: sub(f),
                is_new: true,
            })
        })
        .collect();
    assert_eq!(session, [1, 1, 0]);
}

#[test]
fn subscribe_events_match_the_filter_without_share() {
    let r = rules(
        "web.hook.rule.client.subscribe.1 = {\"action\": \"on_client_subscribe\", \"topic\": \"a/b\"}\n\
         web.hook.rule.client.unsubscribe.1 = {\"action\": \"on_client_unsubscribe\", \"topic\": \"a/+\"}\n\
         web.hook.rule.session.unsubscribed.1 = {\"action\": \"on_session_unsubscribed\", \"topic\": \"a/b\"}",
    );
    let c = c1();
    let shared = SubscriptionInfo {
        share: Some("g"),
        ..sub("a/b")
    };
    assert_eq!(
        r.matching(&Event::ClientSubscribe {
            client: &c,
            sub: shared
        }),
        1
    );
    assert_eq!(
        r.matching(&Event::ClientUnsubscribe {
            client: &c,
            topic: "a/b",
            share: Some("g")
        }),
        1
    );
    assert_eq!(
        r.matching(&Event::SessionUnsubscribed {
            client: &c,
            topic: "a/c",
            share: None
        }),
        0
    );
    // A filter is matched as a topic: `+` in it is only matched by `+`
    // or a wildcard in the rule.
    assert_eq!(
        r.matching(&Event::ClientUnsubscribe {
            client: &c,
            topic: "a/+",
            share: None
        }),
        1
    );
}

#[test]
fn events_outside_the_contract_never_match() {
    let mut r = Rules::new();
    for kind in EventKind::ALL {
        r.add(kind, None);
    }
    let c = c1();
    for event in [
        Event::SessionCreated { client: &c },
        Event::SessionResumed { client: &c },
        Event::SessionTakeovered { client: &c },
        Event::SessionDiscarded { client: &c },
    ] {
        assert_eq!(r.matching(&event), 0);
    }
    assert!(EventKind::ALL.iter().all(|k| r.wants(*k)));
    assert_eq!(r.len(), 13);
}

#[test]
fn event_helpers() {
    use herald_webhook::event::{client_id, topic};
    let c = c2();
    let msg = message("t/1");
    let delivered = Event::MessageDelivered {
        client: &c,
        message: &msg,
        qos: QoS::AtMostOnce,
        retain: false,
    };
    assert_eq!(client_id(&delivered), "c2");
    assert_eq!(topic(&delivered), Some("t/1"));
    let published = Event::MessagePublish { message: &msg };
    assert_eq!(client_id(&published), "c1");
    assert_eq!(topic(&Event::ClientConnected { client: &c }), None);
}
