//! Access control as the broker sees it: one trait ([`AccessControl`]) that
//! authenticates a CONNECT and hands out the client's [`Rights`], which the
//! broker consults at PUBLISH, at SUBSCRIBE and at every delivery.
//!
//! The sources (password file, ACL file, HTTP service) live outside the
//! broker (the `herald-auth` crate); the broker knows only this interface
//! and never a file format or a remote protocol.
//!
//! Order of the decision at each point:
//! 1. the `client.authenticate` / `client.check_acl` hook handlers
//!    ([`crate::hooks`]): an `Allow` or `Deny` there is final;
//! 2. for authorization, `authz.deny_publish` / `authz.deny_subscribe`;
//! 3. the installed [`AccessControl`] and the client's [`Rights`];
//! 4. for authentication, the anonymous policy ([`Anonymous`]).
//!
//! Delivery is checked with the subscriber's [`Rights`] alone (and
//! `authz.deny_subscribe`), synchronously and per message, so
//! [`Rights::check`] must be cheap: precompiled, cached per client, no I/O.
//! A source that can only answer remotely says [`Verdict::Ask`]; the
//! publisher's task then awaits [`Rights::ask`] before queueing.

use crate::hooks::{AclAction, AuthRequest, ClientInfo, Decision, DecisionFuture};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

/// A synchronous answer of [`Rights::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed.
    Allow,
    /// Refused.
    Deny,
    /// Only [`Rights::ask`] can tell (a remote source without a cached answer).
    Ask,
}

/// What a client may do, built once when it connects.
pub trait Rights: Send + Sync {
    /// Whether the client may do `action` on `topic`: a topic name for
    /// [`AclAction::Publish`] and [`AclAction::Deliver`], a filter without
    /// `$share/{group}/` for [`AclAction::Subscribe`]. Runs per delivered
    /// message: no I/O, no waiting.
    fn check(&self, action: AclAction, topic: &str) -> Verdict;

    /// The slow path when [`Rights::check`] answered [`Verdict::Ask`].
    /// `Ignore` counts as a refusal.
    fn ask<'a>(&'a self, action: AclAction, topic: &'a str) -> DecisionFuture<'a>;
}

/// The answer to a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authentication {
    /// Allow, deny (with the CONNACK reason) or no source knew the client.
    pub decision: Decision,
    /// A superuser is not subject to access rules.
    pub superuser: bool,
}

/// A boxed future of an [`Authentication`].
pub type AuthenticationFuture<'a> = Pin<Box<dyn Future<Output = Authentication> + Send + 'a>>;

/// The broker's access control: authentication sources and access rules.
pub trait AccessControl: Send + Sync {
    /// Asks the authentication sources in their order.
    fn authenticate<'a>(&'a self, request: AuthRequest<'a>) -> AuthenticationFuture<'a>;

    /// Whether any authentication source is configured (with none, the
    /// secure default lets anonymous clients in from loopback only).
    fn has_sources(&self) -> bool;

    /// The rights of a client that was let in; `None`: no rules apply to it.
    fn rights(&self, client: &ClientInfo, superuser: bool) -> Option<Arc<dyn Rights>>;

    /// Whether [`Rights::check`] may answer [`Verdict::Ask`]: PUBLISH is
    /// then handled where it can wait.
    fn may_ask(&self) -> bool;
}

/// Who may connect without being authenticated by a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anonymous {
    /// Anyone.
    Allow,
    /// No one.
    Deny,
    /// Only clients connecting from a loopback address (127.0.0.0/8, ::1,
    /// also IPv4-mapped): the default when nothing is configured.
    LoopbackOnly,
}

impl Anonymous {
    /// Whether a client from `peer` is let in without authentication.
    pub fn admits(self, peer: SocketAddr) -> bool {
        match self {
            Anonymous::Allow => true,
            Anonymous::Deny => false,
            Anonymous::LoopbackOnly => is_loopback(peer),
        }
    }
}

/// Whether `peer` is a loopback address, an IPv4-mapped one included.
pub fn is_loopback(peer: SocketAddr) -> bool {
    match peer {
        SocketAddr::V4(v4) => v4.ip().is_loopback(),
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => v4.is_loopback(),
            None => v6.ip().is_loopback(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_all_of_127_and_ipv6_one_also_mapped() {
        for yes in [
            "127.0.0.1:1",
            "127.255.3.4:1",
            "[::1]:1",
            "[::ffff:127.0.0.9]:1",
        ] {
            assert!(is_loopback(yes.parse().unwrap()), "{yes}");
        }
        for no in [
            "10.0.0.1:1",
            "0.0.0.0:1",
            "[::]:1",
            "[::ffff:10.0.0.1]:1",
            "[fe80::1]:1",
        ] {
            assert!(!is_loopback(no.parse().unwrap()), "{no}");
        }
        let remote = "10.1.1.1:5".parse().unwrap();
        assert!(!Anonymous::LoopbackOnly.admits(remote));
        assert!(Anonymous::Allow.admits(remote));
        assert!(!Anonymous::Deny.admits("127.0.0.1:1".parse().unwrap()));
    }
}
