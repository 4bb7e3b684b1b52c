//! Broker-wide counters, read by `$SYS` and (later) `/metrics`. Lock-free:
//! every counter is an atomic updated with relaxed ordering.

use crate::transport::ListenerKind;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters; all monotonically increasing except `connected`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Clients connected right now.
    pub connected: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// PUBLISH packets received from clients.
    pub messages_received: AtomicU64,
    /// PUBLISH packets sent to clients.
    pub messages_sent: AtomicU64,
    /// Bytes read from client sockets.
    pub bytes_received: AtomicU64,
    /// Bytes written to client sockets.
    pub bytes_sent: AtomicU64,
    /// Messages published by clients with no subscriber (the broker's own
    /// `$SYS` publications are not counted).
    pub dropped_no_subscribers: AtomicU64,
    /// Deliveries dropped because a session queue was full.
    pub dropped_queue_full: AtomicU64,
    /// QoS 0 deliveries not queued for an offline session.
    pub dropped_qos0_offline: AtomicU64,
    /// Deliveries dropped because the message expired before sending.
    pub dropped_expired: AtomicU64,
    /// Publications refused by the authorization point.
    pub dropped_not_authorized: AtomicU64,
    /// Deliveries larger than the subscriber's Maximum Packet Size.
    pub dropped_too_large: AtomicU64,
    /// Messages dropped for other reasons (receive maximum exceeded,
    /// protocol errors, sessions that ended with messages queued).
    pub dropped_other: AtomicU64,
    /// Connections closed for a protocol violation.
    pub protocol_errors: AtomicU64,
    /// Retained messages not stored for a `[retained]` limit.
    pub retained_refused: AtomicU64,
    /// 3.x connections closed for more QoS 2 messages awaiting PUBREL than
    /// `mqtt.max_awaiting_rel`.
    pub awaiting_rel_full: AtomicU64,
    /// Accepts that failed (out of file descriptors and the like).
    pub accept_failures: AtomicU64,
    /// `connected` by listener kind ([`ListenerKind::index`]).
    pub connected_by_listener: [AtomicU64; 4],
    /// `connections_total` by listener kind.
    pub connections_by_listener: [AtomicU64; 4],
    /// Connections closed before MQTT started, by listener kind: a missing
    /// or bad PROXY header, a failed TLS handshake or WebSocket upgrade, or
    /// the connect timeout running out during one of them.
    pub handshake_errors: [AtomicU64; 4],
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

impl Metrics {
    /// Every drop counter with its reason label, as `/metrics` shows them;
    /// `$SYS/broker/messages/dropped` is their sum, so the two agree.
    pub fn dropped_by_reason(&self) -> [(&'static str, u64); 7] {
        [
            ("no_subscribers", Self::get(&self.dropped_no_subscribers)),
            ("queue_full", Self::get(&self.dropped_queue_full)),
            ("qos0_offline", Self::get(&self.dropped_qos0_offline)),
            ("expired", Self::get(&self.dropped_expired)),
            ("not_authorized", Self::get(&self.dropped_not_authorized)),
            ("packet_too_large", Self::get(&self.dropped_too_large)),
            ("other", Self::get(&self.dropped_other)),
        ]
    }

    /// Every message drop counted, whatever the reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_by_reason().iter().map(|(_, n)| n).sum()
    }

    /// One client more connected through a `listener`.
    pub fn add_connected(&self, listener: ListenerKind) {
        let i = listener.index();
        for counter in [
            &self.connected,
            &self.connections_total,
            &self.connected_by_listener[i],
            &self.connections_by_listener[i],
        ] {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One client fewer connected through a `listener`.
    pub fn sub_connected(&self, listener: ListenerKind) {
        self.connected.fetch_sub(1, Ordering::Relaxed);
        self.connected_by_listener[listener.index()].fetch_sub(1, Ordering::Relaxed);
    }
}
