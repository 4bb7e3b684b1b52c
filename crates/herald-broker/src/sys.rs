//! `$SYS/broker/...`: the broker's own statistics, published as retained
//! QoS 0 messages every `sys.interval` seconds, so a client subscribing to
//! `$SYS/#` sees the latest values at once. Nobody listening is normal for
//! them: they are never counted as dropped.

use crate::broker::Broker;
use crate::message::Message;
use crate::metrics::Metrics;
use bytes::Bytes;
use herald_codec::{ByteStr, Properties, QoS};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The broker's version, as `$SYS/broker/version` reports it.
pub const VERSION: &str = concat!("herald ", env!("CARGO_PKG_VERSION"));

/// Publishes the statistics once.
pub fn publish_stats(broker: &Arc<Broker>) {
    let m = &broker.metrics;
    let uptime = broker.started.elapsed().as_secs();
    let stats: [(&str, String); 10] = [
        ("$SYS/broker/version", VERSION.to_owned()),
        ("$SYS/broker/uptime", uptime.to_string()),
        (
            "$SYS/broker/clients/connected",
            Metrics::get(&m.connected).to_string(),
        ),
        (
            "$SYS/broker/clients/total",
            Metrics::get(&m.connections_total).to_string(),
        ),
        (
            "$SYS/broker/messages/received",
            Metrics::get(&m.messages_received).to_string(),
        ),
        (
            "$SYS/broker/messages/sent",
            Metrics::get(&m.messages_sent).to_string(),
        ),
        (
            "$SYS/broker/messages/dropped",
            m.dropped_total().to_string(),
        ),
        (
            "$SYS/broker/bytes/received",
            Metrics::get(&m.bytes_received).to_string(),
        ),
        (
            "$SYS/broker/bytes/sent",
            Metrics::get(&m.bytes_sent).to_string(),
        ),
        (
            "$SYS/broker/retained/count",
            broker.retained_count().to_string(),
        ),
    ];
    for (topic, value) in stats {
        let message = Message::new(
            ByteStr::from_static(topic),
            Bytes::from(value),
            QoS::AtMostOnce,
            true,
            Properties::default(),
            ByteStr::from_static("$SYS"),
            None,
        );
        broker.publish_own_detached(Arc::new(message));
    }
}

/// Publishes every `interval` until shutdown.
pub async fn run(broker: Arc<Broker>, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = ticks.tick() => publish_stats(&broker),
            _ = shutdown.changed() => return,
        }
    }
}
