//! Why things end: a connection ([`DisconnectReason`]), a session
//! ([`TerminationReason`]) and a message ([`DropReason`]), as the broker
//! decides them and reports them in hook events.
//!
//! These are the broker's own words. Whoever reports them elsewhere (the
//! WebHook's bodies, logs, metrics) maps them to its own vocabulary; this
//! module never spells a word of another system. A disconnect reason's
//! `Display` is the broker's own word for it, for logs.

use std::fmt;

use herald_codec::{PacketType, ReasonCode};

/// Why a connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// The client sent DISCONNECT: any 3.x DISCONNECT, or 5.0 with reason
    /// 0x00 (Normal disconnection).
    Normal,
    /// The client sent a 5.0 DISCONNECT with this other reason (0x04 asks
    /// for the will).
    ClientReason(ReasonCode),
    /// The socket closed, or failed, without DISCONNECT.
    SocketClosed,
    /// Nothing arrived within 1.5 × the keep alive.
    KeepaliveTimeout,
    /// Another connection took the client id over.
    TakenOver,
    /// The broker is shutting down.
    ServerShutdown,
    /// A packet could not be decoded (a rule the decoder checks).
    FrameError,
    /// A packet broke a protocol rule of the connection's state.
    ProtocolError,
    /// A 3.x client's QoS 1/2 PUBLISH could not be made durable (an
    /// acknowledgement gate refused it); 3.x cannot say so in an
    /// acknowledgement, so the connection closes without one.
    NotAccepted,
    /// A PUBLISH was refused by access control and `acl.deny_action` is
    /// `disconnect`.
    NotAuthorized,
}

impl fmt::Display for DisconnectReason {
    /// One snake_case word for logs (`reason=socket_closed`); a client's
    /// own 5.0 reason is its MQTT reason name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DisconnectReason::Normal => "normal",
            DisconnectReason::ClientReason(code) => code.name_in(PacketType::Disconnect),
            DisconnectReason::SocketClosed => "socket_closed",
            DisconnectReason::KeepaliveTimeout => "keepalive_timeout",
            DisconnectReason::TakenOver => "taken_over",
            DisconnectReason::ServerShutdown => "server_shutdown",
            DisconnectReason::FrameError => "malformed_packet",
            DisconnectReason::ProtocolError => "protocol_error",
            DisconnectReason::NotAccepted => "quota_exceeded",
            DisconnectReason::NotAuthorized => "not_authorized",
        })
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TerminationReason {
    /// It ended with its connection (nothing asked to keep it): why that
    /// connection closed.
    Closed(DisconnectReason),
    /// A new connection took the client id over and did not resume it.
    TakenOver,
    /// A clean-start connection replaced it.
    Discarded,
    /// Its expiry interval passed while no connection had it.
    Expired,
}

/// Why a message (or one delivery of it) was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Published, but no subscription matched.
    NoSubscribers,
    /// A subscriber's queue was full.
    QueueFull,
    /// QoS 0 for an offline session that does not queue QoS 0.
    Qos0Offline,
    /// The message expired before it could be sent.
    Expired,
    /// The authorization point refused the publication.
    NotAuthorized,
    /// Larger than the subscriber's Maximum Packet Size.
    PacketTooLarge,
    /// The publisher exceeded the broker's Receive Maximum.
    ReceiveMaximumExceeded,
    /// The publisher's connection broke a protocol rule with this message.
    ProtocolError,
    /// The session holding it ended (discarded, expired) before delivery.
    SessionEnded,
}

impl DropReason {
    /// Every reason, in declaration order.
    pub const ALL: [DropReason; 9] = [
        DropReason::NoSubscribers,
        DropReason::QueueFull,
        DropReason::Qos0Offline,
        DropReason::Expired,
        DropReason::NotAuthorized,
        DropReason::PacketTooLarge,
        DropReason::ReceiveMaximumExceeded,
        DropReason::ProtocolError,
        DropReason::SessionEnded,
    ];
}

impl DisconnectReason {
    /// Every reason but [`DisconnectReason::ClientReason`], which carries
    /// any code.
    pub const FIXED: [DisconnectReason; 9] = [
        DisconnectReason::Normal,
        DisconnectReason::SocketClosed,
        DisconnectReason::KeepaliveTimeout,
        DisconnectReason::TakenOver,
        DisconnectReason::ServerShutdown,
        DisconnectReason::FrameError,
        DisconnectReason::ProtocolError,
        DisconnectReason::NotAccepted,
        DisconnectReason::NotAuthorized,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails to compile when a variant is added, as a reminder to list it.
    fn listed_drop(r: DropReason) -> bool {
        match r {
            DropReason::NoSubscribers
            | DropReason::QueueFull
            | DropReason::Qos0Offline
            | DropReason::Expired
            | DropReason::NotAuthorized
            | DropReason::PacketTooLarge
            | DropReason::ReceiveMaximumExceeded
            | DropReason::ProtocolError
            | DropReason::SessionEnded => DropReason::ALL.contains(&r),
        }
    }

    fn listed_disconnect(r: DisconnectReason) -> bool {
        match r {
            DisconnectReason::ClientReason(_) => !DisconnectReason::FIXED.contains(&r),
            DisconnectReason::Normal
            | DisconnectReason::SocketClosed
            | DisconnectReason::KeepaliveTimeout
            | DisconnectReason::TakenOver
            | DisconnectReason::ServerShutdown
            | DisconnectReason::FrameError
            | DisconnectReason::ProtocolError
            | DisconnectReason::NotAccepted
            | DisconnectReason::NotAuthorized => DisconnectReason::FIXED.contains(&r),
        }
    }

    #[test]
    fn lists_hold_every_variant_once() {
        assert!(DropReason::ALL.iter().all(|r| listed_drop(*r)));
        assert!(
            DisconnectReason::FIXED
                .iter()
                .all(|r| listed_disconnect(*r))
        );
        assert!(listed_disconnect(DisconnectReason::ClientReason(
            ReasonCode::DISCONNECT_WITH_WILL_MESSAGE
        )));
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert!(!DropReason::ALL[..i].contains(r), "{r:?} twice");
        }
        for (i, r) in DisconnectReason::FIXED.iter().enumerate() {
            assert!(!DisconnectReason::FIXED[..i].contains(r), "{r:?} twice");
        }
    }

    #[test]
    fn display_is_one_word_for_logs() {
        assert_eq!(
            DisconnectReason::ClientReason(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE).to_string(),
            "disconnect_with_will_message"
        );
        assert_eq!(DisconnectReason::SocketClosed.to_string(), "socket_closed");
        assert_eq!(DisconnectReason::TakenOver.to_string(), "taken_over");
    }
}
