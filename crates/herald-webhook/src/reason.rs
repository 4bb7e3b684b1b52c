//! The broker's reasons in EMQX's words: the `reason` field of the
//! `client_disconnected`, `session_terminated` and `message_dropped` bodies
//! (`docs/webhook.md` §3, "Values").
//!
//! One `match` per broker enum, and nowhere else: the broker names its
//! reasons in its own terms ([`herald_broker::reason`]) and never spells
//! these words. The tests check every variant against the contract.

use herald_broker::reason::{DisconnectReason, DropReason, TerminationReason};
use herald_codec::PacketType;

/// `reason` of `client_disconnected`, and of `session_terminated` when the
/// session ended with its connection.
pub fn disconnect(reason: DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::Normal => "normal",
        DisconnectReason::ClientReason(code) => code.name_in(PacketType::Disconnect),
        DisconnectReason::SocketClosed => "tcp_closed",
        DisconnectReason::KeepaliveTimeout => "keepalive_timeout",
        DisconnectReason::TakenOver => "takeovered",
        DisconnectReason::ServerShutdown => "server_shutting_down",
        DisconnectReason::FrameError => "frame_error",
        DisconnectReason::ProtocolError => "protocol_error",
        DisconnectReason::NotAccepted => "quota_exceeded",
        DisconnectReason::NotAuthorized => "not_authorized",
    }
}

/// `reason` of `session_terminated`.
pub fn termination(reason: TerminationReason) -> &'static str {
    match reason {
        TerminationReason::Closed(why) => disconnect(why),
        TerminationReason::TakenOver => "takeovered",
        TerminationReason::Discarded => "discarded",
        TerminationReason::Expired => "expired",
    }
}

/// `reason` of `message_dropped`.
pub fn dropped(reason: DropReason) -> &'static str {
    match reason {
        DropReason::NoSubscribers => "no_subscribers",
        DropReason::QueueFull => "queue_full",
        DropReason::Qos0Offline => "qos0_offline",
        DropReason::Expired => "expired",
        DropReason::NotAuthorized => "not_authorized",
        DropReason::PacketTooLarge => "packet_too_large",
        DropReason::ReceiveMaximumExceeded => "receive_maximum_exceeded",
        DropReason::ProtocolError => "protocol_error",
        DropReason::SessionEnded => "session_ended",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_codec::ReasonCode;

    /// The contract shipped with the repository.
    const CONTRACT: &str = include_str!("../../../docs/webhook.md");

    /// The words in backquotes of the "Values" bullet that starts with
    /// `head`, up to the next bullet at the same level.
    fn words_of(head: &str) -> Vec<&'static str> {
        let start = CONTRACT
            .find(head)
            .unwrap_or_else(|| panic!("docs/webhook.md has no bullet {head:?}"));
        let rest = &CONTRACT[start + head.len()..];
        let end = rest.find("\n- ").unwrap_or(rest.len());
        rest[..end].split('`').skip(1).step_by(2).collect()
    }

    fn disconnect_words() -> Vec<&'static str> {
        words_of("- `reason` of `client_disconnected` and `session_terminated`:")
    }

    #[test]
    fn every_disconnect_reason_is_a_word_of_the_contract() {
        let words = disconnect_words();
        for reason in DisconnectReason::FIXED {
            let word = disconnect(reason);
            assert!(
                words.contains(&word),
                "{reason:?} -> {word:?} not in {words:?}"
            );
        }
        // A client's own 5.0 reason is its reason name in DISCONNECT.
        let will = DisconnectReason::ClientReason(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE);
        assert_eq!(disconnect(will), "disconnect_with_will_message");
        assert!(words.contains(&disconnect(will)), "{words:?}");
        let admin = DisconnectReason::ClientReason(ReasonCode::ADMINISTRATIVE_ACTION);
        assert_eq!(disconnect(admin), "administrative_action");
        // EMQX's word when acl_deny_action = disconnect closes a publisher.
        assert_eq!(
            disconnect(DisconnectReason::NotAuthorized),
            "not_authorized"
        );
    }

    #[test]
    fn every_termination_reason_is_a_word_of_the_contract() {
        let words = disconnect_words();
        let mut reasons = vec![
            TerminationReason::TakenOver,
            TerminationReason::Discarded,
            TerminationReason::Expired,
        ];
        reasons.extend(DisconnectReason::FIXED.map(TerminationReason::Closed));
        for reason in reasons {
            let word = termination(reason);
            assert!(
                words.contains(&word),
                "{reason:?} -> {word:?} not in {words:?}"
            );
        }
        assert_eq!(
            termination(TerminationReason::Closed(DisconnectReason::SocketClosed)),
            "tcp_closed"
        );
    }

    #[test]
    fn every_drop_reason_is_a_word_of_the_contract() {
        let words = words_of("- `reason` of `message_dropped`:");
        for reason in DropReason::ALL {
            let word = dropped(reason);
            assert!(
                words.contains(&word),
                "{reason:?} -> {word:?} not in {words:?}"
            );
        }
    }

    #[test]
    fn words_are_distinct_within_each_enum() {
        let fixed: Vec<&str> = DisconnectReason::FIXED
            .iter()
            .map(|r| disconnect(*r))
            .collect();
        let drops: Vec<&str> = DropReason::ALL.iter().map(|r| dropped(*r)).collect();
        for list in [fixed, drops] {
            for (i, w) in list.iter().enumerate() {
                assert!(!list[..i].contains(w), "{w} twice");
            }
        }
    }
}
