//! Counters of access control's outcomes, rendered for `/metrics`:
//!
//! - `herald_auth_authentications_total{source, result}`: what each
//!   source answered a CONNECT (`password_file`: allow, deny, ignore;
//!   `http`: allow, deny, ignore, failed);
//! - `herald_auth_http_requests_total{request}` and
//!   `herald_auth_http_failures_total{request, reason}`: requests to the
//!   EMQX auth_http service (`auth_req`, `super_req`, `acl_req`) and those
//!   that failed (`status`: an answer neither 2xx nor 4xx; `timeout`;
//!   `connection`: it could not be reached; `protocol`: not HTTP, or an
//!   answer too large);
//! - `herald_auth_acl_denied_total{action}`: refusals by the ACL sources
//!   (`publish`, `subscribe`, `deliver`). Allowed checks are not counted:
//!   they run at every delivery, where a shared counter would cost more
//!   than the check.
//!
//! The counters live as long as the access control, across reloads.

use herald_broker::exposition::{Exposition, Kind};
use herald_broker::hooks::AclAction;
use std::sync::atomic::{AtomicU64, Ordering};

/// A source that authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `auth.password_file`.
    PasswordFile,
    /// `auth.http_conf`'s `auth_req`.
    Http,
}

/// What a source answered a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Let in.
    Allow,
    /// Refused.
    Deny,
    /// Passed to the next source.
    Ignore,
    /// The service failed (refused; see the failure counters).
    Failed,
}

/// An auth_http request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `auth_req`.
    Auth,
    /// `super_req`.
    Super,
    /// `acl_req`.
    Acl,
}

/// Why an auth_http request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// An answer neither 2xx nor 4xx (a 5xx, say).
    Status,
    /// No whole answer within `auth.http.timeout` (or no connection within
    /// `auth.http.connect_timeout`).
    Timeout,
    /// The service could not be reached.
    Connection,
    /// The answer was not HTTP, or too large.
    Protocol,
}

const SOURCES: [(Source, &str); 2] = [
    (Source::PasswordFile, "password_file"),
    (Source::Http, "http"),
];
const OUTCOMES: [(Outcome, &str); 4] = [
    (Outcome::Allow, "allow"),
    (Outcome::Deny, "deny"),
    (Outcome::Ignore, "ignore"),
    (Outcome::Failed, "failed"),
];
const REQUESTS: [(Request, &str); 3] = [
    (Request::Auth, "auth_req"),
    (Request::Super, "super_req"),
    (Request::Acl, "acl_req"),
];
const FAILURES: [(Failure, &str); 4] = [
    (Failure::Status, "status"),
    (Failure::Timeout, "timeout"),
    (Failure::Connection, "connection"),
    (Failure::Protocol, "protocol"),
];
const ACTIONS: [(AclAction, &str); 3] = [
    (AclAction::Publish, "publish"),
    (AclAction::Subscribe, "subscribe"),
    (AclAction::Deliver, "deliver"),
];

/// The index of `key` in a table of labels.
fn at<K: PartialEq + Copy>(table: &[(K, &str)], key: K) -> usize {
    table.iter().position(|(k, _)| *k == key).unwrap_or(0)
}

/// Access control's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    authentications: [[AtomicU64; 4]; 2],
    http_requests: [AtomicU64; 3],
    http_failures: [[AtomicU64; 4]; 3],
    acl_denied: [AtomicU64; 3],
}

impl Metrics {
    /// Counts what `source` answered a CONNECT.
    pub fn authenticated(&self, source: Source, outcome: Outcome) {
        self.authentications[at(&SOURCES, source)][at(&OUTCOMES, outcome)]
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request sent to the auth_http service.
    pub fn http_request(&self, request: Request) {
        self.http_requests[at(&REQUESTS, request)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed auth_http request.
    pub fn http_failure(&self, request: Request, why: Failure) {
        self.http_failures[at(&REQUESTS, request)][at(&FAILURES, why)]
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refusal by the ACL sources.
    pub fn acl_denied(&self, action: AclAction) {
        self.acl_denied[at(&ACTIONS, action)].fetch_add(1, Ordering::Relaxed);
    }

    /// A counter's value: what `source` answered with `outcome`.
    pub fn authentications(&self, source: Source, outcome: Outcome) -> u64 {
        self.authentications[at(&SOURCES, source)][at(&OUTCOMES, outcome)].load(Ordering::Relaxed)
    }

    /// A counter's value: failed `request`s for `why`.
    pub fn http_failures(&self, request: Request, why: Failure) -> u64 {
        self.http_failures[at(&REQUESTS, request)][at(&FAILURES, why)].load(Ordering::Relaxed)
    }

    /// The families in the Prometheus text format.
    pub fn render(&self) -> String {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut page = Exposition::new();
        let name = "herald_auth_authentications_total";
        page.family(
            name,
            Kind::Counter,
            "What each authentication source answered a CONNECT.",
        );
        for (s, (_, source)) in SOURCES.iter().enumerate() {
            for (o, (outcome, result)) in OUTCOMES.iter().enumerate() {
                if *outcome == Outcome::Failed && SOURCES[s].0 == Source::PasswordFile {
                    continue;
                }
                page.sample(
                    name,
                    &[("source", source), ("result", result)],
                    load(&self.authentications[s][o]),
                );
            }
        }
        let name = "herald_auth_http_requests_total";
        page.family(
            name,
            Kind::Counter,
            "Requests sent to the auth_http service.",
        );
        for (r, (_, request)) in REQUESTS.iter().enumerate() {
            page.sample(name, &[("request", request)], load(&self.http_requests[r]));
        }
        let name = "herald_auth_http_failures_total";
        page.family(
            name,
            Kind::Counter,
            "auth_http requests that failed (and so refused), by reason.",
        );
        for (r, (_, request)) in REQUESTS.iter().enumerate() {
            for (f, (_, reason)) in FAILURES.iter().enumerate() {
                page.sample(
                    name,
                    &[("request", request), ("reason", reason)],
                    load(&self.http_failures[r][f]),
                );
            }
        }
        let name = "herald_auth_acl_denied_total";
        page.family(
            name,
            Kind::Counter,
            "Refusals by the ACL sources (file, auth_http acl_req), by action.",
        );
        for (a, (_, action)) in ACTIONS.iter().enumerate() {
            page.sample(name, &[("action", action)], load(&self.acl_denied[a]));
        }
        page.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_on_their_labels() {
        let m = Metrics::default();
        m.authenticated(Source::Http, Outcome::Failed);
        m.authenticated(Source::PasswordFile, Outcome::Deny);
        m.authenticated(Source::PasswordFile, Outcome::Deny);
        m.http_request(Request::Acl);
        m.http_failure(Request::Super, Failure::Timeout);
        m.acl_denied(AclAction::Deliver);
        let text = m.render();
        for line in [
            "herald_auth_authentications_total{source=\"http\",result=\"failed\"} 1",
            "herald_auth_authentications_total{source=\"password_file\",result=\"deny\"} 2",
            "herald_auth_authentications_total{source=\"password_file\",result=\"allow\"} 0",
            "herald_auth_http_requests_total{request=\"acl_req\"} 1",
            "herald_auth_http_failures_total{request=\"super_req\",reason=\"timeout\"} 1",
            "herald_auth_acl_denied_total{action=\"deliver\"} 1",
            "herald_auth_acl_denied_total{action=\"publish\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(
            !text.contains("source=\"password_file\",result=\"failed\""),
            "a file cannot fail"
        );
        assert_eq!(m.authentications(Source::PasswordFile, Outcome::Deny), 2);
        assert_eq!(m.http_failures(Request::Super, Failure::Timeout), 1);
    }
}
