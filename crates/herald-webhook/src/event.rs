//! The thirteen WebHook event kinds of the contract (`docs/webhook.md` §2)
//! and what the rest of the crate needs to know about a broker [`Event`]:
//! its kind, the topic rules match against and the client it belongs to.
//!
//! This module only classifies: it never decides whether an event is sent
//! (that is [`crate::rules`]) and never builds a body (that is
//! [`crate::body`]).

use herald_broker::hooks::Event;

/// A WebHook event kind: one of the thirteen of §2. Broker events outside
/// the contract (`session.created`, `session.resumed`, ...) have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// `client.connect`: CONNECT received, before authentication.
    ClientConnect,
    /// `client.connack`: CONNACK about to be sent.
    ClientConnack,
    /// `client.connected`: the client is connected.
    ClientConnected,
    /// `client.disconnected`: the connection is closing.
    ClientDisconnected,
    /// `client.subscribe`: one filter of a SUBSCRIBE.
    ClientSubscribe,
    /// `client.unsubscribe`: one filter of an UNSUBSCRIBE.
    ClientUnsubscribe,
    /// `session.subscribed`: a subscription was added.
    SessionSubscribed,
    /// `session.unsubscribed`: a subscription was removed.
    SessionUnsubscribed,
    /// `session.terminated`: a session ended.
    SessionTerminated,
    /// `message.publish`: a message is about to be routed.
    MessagePublish,
    /// `message.delivered`: a message is about to be sent to a subscriber.
    MessageDelivered,
    /// `message.acked`: a subscriber acknowledged a message.
    MessageAcked,
    /// `message.dropped`: a message was dropped.
    MessageDropped,
}

impl EventKind {
    /// How many kinds there are (for per-kind arrays and counters).
    pub const COUNT: usize = 13;

    /// Every kind, in the order of §2's table ([`EventKind::index`] order).
    pub const ALL: [EventKind; EventKind::COUNT] = [
        EventKind::ClientConnect,
        EventKind::ClientConnack,
        EventKind::ClientConnected,
        EventKind::ClientDisconnected,
        EventKind::ClientSubscribe,
        EventKind::ClientUnsubscribe,
        EventKind::SessionSubscribed,
        EventKind::SessionUnsubscribed,
        EventKind::SessionTerminated,
        EventKind::MessagePublish,
        EventKind::MessageDelivered,
        EventKind::MessageAcked,
        EventKind::MessageDropped,
    ];

    /// Position in [`EventKind::ALL`], `0..COUNT`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The event's name in the contract and in rule keys: `client.connect`.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::ClientConnect => "client.connect",
            EventKind::ClientConnack => "client.connack",
            EventKind::ClientConnected => "client.connected",
            EventKind::ClientDisconnected => "client.disconnected",
            EventKind::ClientSubscribe => "client.subscribe",
            EventKind::ClientUnsubscribe => "client.unsubscribe",
            EventKind::SessionSubscribed => "session.subscribed",
            EventKind::SessionUnsubscribed => "session.unsubscribed",
            EventKind::SessionTerminated => "session.terminated",
            EventKind::MessagePublish => "message.publish",
            EventKind::MessageDelivered => "message.delivered",
            EventKind::MessageAcked => "message.acked",
            EventKind::MessageDropped => "message.dropped",
        }
    }

    /// The kind named `name` (`client.connect`), if it is one of the thirteen.
    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The `action` a rule on this event must carry: `on_client_connect`.
    pub fn rule_action(self) -> &'static str {
        match self {
            EventKind::ClientConnect => "on_client_connect",
            EventKind::ClientConnack => "on_client_connack",
            EventKind::ClientConnected => "on_client_connected",
            EventKind::ClientDisconnected => "on_client_disconnected",
            EventKind::ClientSubscribe => "on_client_subscribe",
            EventKind::ClientUnsubscribe => "on_client_unsubscribe",
            EventKind::SessionSubscribed => "on_session_subscribed",
            EventKind::SessionUnsubscribed => "on_session_unsubscribed",
            EventKind::SessionTerminated => "on_session_terminated",
            EventKind::MessagePublish => "on_message_publish",
            EventKind::MessageDelivered => "on_message_delivered",
            EventKind::MessageAcked => "on_message_acked",
            EventKind::MessageDropped => "on_message_dropped",
        }
    }

    /// The `action` field of the request body: `client_connect`.
    pub fn body_action(self) -> &'static str {
        // `on_` + body action is the rule action.
        &self.rule_action()[3..]
    }

    /// Whether a rule's `topic` applies to this kind (§2's last column);
    /// for the others it is ignored.
    pub fn has_topic(self) -> bool {
        !matches!(
            self,
            EventKind::ClientConnect
                | EventKind::ClientConnack
                | EventKind::ClientConnected
                | EventKind::ClientDisconnected
                | EventKind::SessionTerminated
        )
    }

    /// Whether this is a message event (publish, delivered, acked, dropped):
    /// never sent for `$SYS/` topics.
    pub fn is_message(self) -> bool {
        matches!(
            self,
            EventKind::MessagePublish
                | EventKind::MessageDelivered
                | EventKind::MessageAcked
                | EventKind::MessageDropped
        )
    }

    /// The kind of a broker event, `None` for events the WebHook contract
    /// does not send (`session.created`, `session.resumed`,
    /// `session.takeovered`, `session.discarded`).
    pub fn of(event: &Event<'_>) -> Option<EventKind> {
        Some(match event {
            Event::ClientConnect { .. } => EventKind::ClientConnect,
            Event::ClientConnack { .. } => EventKind::ClientConnack,
            Event::ClientConnected { .. } => EventKind::ClientConnected,
            Event::ClientDisconnected { .. } => EventKind::ClientDisconnected,
            Event::ClientSubscribe { .. } => EventKind::ClientSubscribe,
            Event::ClientUnsubscribe { .. } => EventKind::ClientUnsubscribe,
            Event::SessionSubscribed { .. } => EventKind::SessionSubscribed,
            Event::SessionUnsubscribed { .. } => EventKind::SessionUnsubscribed,
            Event::SessionTerminated { .. } => EventKind::SessionTerminated,
            Event::MessagePublish { .. } => EventKind::MessagePublish,
            Event::MessageDelivered { .. } => EventKind::MessageDelivered,
            Event::MessageAcked { .. } => EventKind::MessageAcked,
            Event::MessageDropped { .. } => EventKind::MessageDropped,
            Event::SessionCreated { .. }
            | Event::SessionResumed { .. }
            | Event::SessionTakeovered { .. }
            | Event::SessionDiscarded { .. } => return None,
        })
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The topic a rule's filter is matched against: the message topic for
/// message events, the filter (without `$share/<group>/`) for subscribe
/// events, `None` for events without a topic.
pub fn topic<'a>(event: &Event<'a>) -> Option<&'a str> {
    match *event {
        Event::ClientSubscribe { sub, .. } | Event::SessionSubscribed { sub, .. } => {
            Some(sub.topic)
        }
        Event::ClientUnsubscribe { topic, .. } | Event::SessionUnsubscribed { topic, .. } => {
            Some(topic)
        }
        Event::MessagePublish { message }
        | Event::MessageDelivered { message, .. }
        | Event::MessageAcked { message, .. }
        | Event::MessageDropped { message, .. } => Some(&message.topic),
        _ => None,
    }
}

/// The client id an event belongs to, for per-client ordering: the
/// client's own id for client and session events, the subscriber for
/// `message.delivered` / `message.acked`, the publisher for
/// `message.publish` / `message.dropped`.
///
/// For `client.connect` it is the id as sent, which is empty when the
/// server assigns one.
pub fn client_id<'a>(event: &Event<'a>) -> &'a str {
    match *event {
        Event::ClientConnect { client, .. }
        | Event::ClientConnack { client, .. }
        | Event::ClientConnected { client }
        | Event::ClientDisconnected { client, .. }
        | Event::ClientSubscribe { client, .. }
        | Event::ClientUnsubscribe { client, .. }
        | Event::SessionCreated { client }
        | Event::SessionResumed { client }
        | Event::SessionSubscribed { client, .. }
        | Event::SessionUnsubscribed { client, .. }
        | Event::SessionTakeovered { client }
        | Event::SessionDiscarded { client }
        | Event::MessageDelivered { client, .. }
        | Event::MessageAcked { client, .. } => &client.client_id,
        Event::SessionTerminated { client_id, .. } => client_id,
        Event::MessagePublish { message } | Event::MessageDropped { message, .. } => {
            &message.from_client_id
        }
    }
}

/// The client id whose lane an event takes: [`client_id`], except that a
/// `client.connect` without a client id takes the lane of the id the broker
/// assigns, like the rest of that client's events (so it cannot arrive
/// after them).
pub fn lane_client_id<'a>(event: &Event<'a>) -> &'a str {
    match *event {
        Event::ClientConnect {
            assigned: Some(id), ..
        } => id,
        _ => client_id(event),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_actions_agree() {
        for (i, kind) in EventKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), i);
            assert_eq!(EventKind::from_name(kind.name()), Some(kind));
            assert_eq!(kind.rule_action(), format!("on_{}", kind.body_action()));
            assert_eq!(kind.body_action(), kind.name().replace('.', "_"));
        }
        assert_eq!(EventKind::from_name("session.created"), None);
        assert_eq!(EventKind::from_name("message.deliver"), None);
    }

    #[test]
    fn topic_column_of_the_table() {
        let without: Vec<_> = EventKind::ALL
            .into_iter()
            .filter(|k| !k.has_topic())
            .map(EventKind::name)
            .collect();
        assert_eq!(
            without,
            [
                "client.connect",
                "client.connack",
                "client.connected",
                "client.disconnected",
                "session.terminated"
            ]
        );
    }
}
