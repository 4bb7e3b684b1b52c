//! An application message as the broker carries it from a publisher to its
//! subscribers: shared (`Arc`) between every queue it sits in, never copied.
//!
//! A message is immutable once routed; per-subscriber choices (QoS granted,
//! RETAIN flag, subscription identifiers) live in [`Delivery`].
//!
//! A message owns its bytes: [`Message::new`] copies the topic, payload and
//! properties out of the buffer they were decoded from. A message may be
//! kept for hours (retained, queued for an offline session), and a slice
//! would keep the publisher's whole read buffer alive with it: a 10-byte
//! retained message read together with a 1 MB one would hold the megabyte.

use crate::support::now_ms;
use bytes::Bytes;
use herald_codec::{ByteStr, Properties, QoS};
use std::sync::Arc;
use tokio::time::Instant;

/// One published message.
#[derive(Debug)]
pub struct Message {
    /// Topic name it was published to (aliases already resolved).
    pub topic: ByteStr,
    /// Application payload; one allocation with `topic`, never a slice of
    /// the publisher's read buffer.
    pub payload: Bytes,
    /// QoS it was published with.
    pub qos: QoS,
    /// RETAIN flag as published.
    pub retain: bool,
    /// Properties forwarded unchanged to 5.0 subscribers: payload format
    /// indicator, content type, response topic, correlation data, user
    /// properties. Never a topic alias, subscription identifier or expiry.
    /// Boxed and `None` when there are none: most messages have none, and
    /// every queued message carries this field.
    pub properties: Option<Box<Properties>>,
    /// Client id of the publisher (for No Local and the WebHook).
    pub from_client_id: ByteStr,
    /// User name of the publisher, if it gave one (for the WebHook).
    pub from_username: Option<ByteStr>,
    /// When the broker received it, milliseconds since the epoch.
    pub received_at_ms: u64,
    /// When it expires (Message Expiry Interval), on the broker's clock.
    pub expires_at: Option<Instant>,
}

impl Message {
    /// Builds a message; `expiry` is the Message Expiry Interval in seconds.
    /// Topic, payload and properties are copied into allocations of their
    /// own (the topic and payload into one), so the message keeps no read
    /// buffer alive however long it is stored.
    pub fn new(
        topic: ByteStr,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        mut properties: Properties,
        from_client_id: ByteStr,
        from_username: Option<ByteStr>,
    ) -> Message {
        let expires_at = properties
            .message_expiry_interval
            .take()
            .map(|s| Instant::now() + std::time::Duration::from_secs(s.into()));
        properties.topic_alias = None;
        properties.subscription_identifiers.clear();
        let properties = (!properties.is_empty()).then(|| {
            properties.detach();
            Box::new(properties)
        });
        let (topic, payload) = topic.detached_with(&payload);
        Message {
            topic,
            payload,
            qos,
            retain,
            properties,
            from_client_id,
            from_username,
            received_at_ms: now_ms(),
            expires_at,
        }
    }

    /// Seconds left before expiry (rounded up), `None` without expiry,
    /// `Some(0)` once expired.
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|at| {
            let left = at.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs).unwrap_or(u32::MAX)
        })
    }

    /// Bytes the message holds that its publisher chose: topic, payload
    /// and the variable-size properties. What byte limits (queues, the
    /// retained store) count.
    pub fn size(&self) -> usize {
        let props = self.properties.as_deref().map_or(0, |p| {
            let s = |v: &Option<ByteStr>| v.as_ref().map_or(0, |v| v.len());
            s(&p.content_type)
                + s(&p.response_topic)
                + p.correlation_data.as_ref().map_or(0, |v| v.len())
                + p.user_properties
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
        });
        self.topic.len() + self.payload.len() + props
    }

    /// Whether the message has expired at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// A message on its way to one subscriber.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The shared message.
    pub message: Arc<Message>,
    /// QoS for this subscriber: the lower of the published and granted QoS.
    pub qos: QoS,
    /// RETAIN flag this subscriber receives.
    pub retain: bool,
    /// Subscription identifiers of the matching subscriptions (5.0).
    pub subscription_ids: Vec<u32>,
    /// Its number in a stored session (the broker's state on disk); 0
    /// when it is not stored.
    pub seq: u64,
}

impl Delivery {
    /// `message` as a subscription receives it: at most its `granted`
    /// QoS, RETAIN kept only with Retain As Published, with its
    /// identifiers; not stored (yet).
    pub fn to_subscriber(
        message: &Arc<Message>,
        granted: QoS,
        retain_as_published: bool,
        subscription_ids: Vec<u32>,
    ) -> Delivery {
        Delivery {
            qos: message.qos.min(granted),
            retain: message.retain && retain_as_published,
            subscription_ids,
            message: message.clone(),
            seq: 0,
        }
    }
}
