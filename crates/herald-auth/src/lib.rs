//! Herald's access-control sources behind the broker's
//! [`AccessControl`] trait: a mosquitto password file ([`passwd`]), an ACL
//! file in mosquitto's or EMQX 4.x's format ([`acl`]) and an EMQX 4.x
//! `emqx_auth_http` service ([`http`]).
//!
//! Authentication asks the sources in order, password file then HTTP; each
//! may allow, deny or pass (a user the file does not know, an HTTP body of
//! `ignore`). ACL: the file's rules first (first match wins), then the HTTP
//! `acl_req`, then `acl.nomatch`; a superuser (HTTP `super_req`) skips both.
//!
//! Per-client rights are compiled when the client connects and remember
//! their answers per topic, so the check at each delivery is a comparison
//! with the last topic checked, else a hash lookup.
//! [`Auth::reload`] re-reads every file; a file that fails to load leaves
//! the loaded sources in force. It never logs a password.

pub mod acl;
pub mod http;
pub mod metrics;
pub mod passwd;

use acl::{Acl, Compiled, Format};
use herald_broker::access::{AccessControl, Authentication, AuthenticationFuture, Rights, Verdict};
use herald_broker::config::{Config, Nomatch};
use herald_broker::hooks::{AclAction, AuthRequest, ClientInfo, Decision, DecisionFuture};
use herald_codec::ReasonCode;
use http::{HttpAuth, HttpVerdict};
use metrics::{Metrics, Outcome, Source};
use passwd::{Check, PasswordFile};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Answers remembered per client, per action, before the cache is cleared.
const CACHE_LIMIT: usize = 4096;

/// The files to read, from `[auth]` and `[acl]`.
#[derive(Debug, Clone, Default)]
pub struct Paths {
    /// `auth.password_file`.
    pub password_file: Option<PathBuf>,
    /// `auth.http_conf`.
    pub http_conf: Option<PathBuf>,
    /// `acl.file`.
    pub acl_file: Option<PathBuf>,
}

impl Paths {
    /// The paths a broker configuration names.
    pub fn of(config: &Config) -> Paths {
        Paths {
            password_file: config.auth.password_file.as_deref().map(Path::to_path_buf),
            http_conf: config.auth.http_conf.as_deref().map(Path::to_path_buf),
            acl_file: config.acl.file.as_deref().map(Path::to_path_buf),
        }
    }

    /// Whether any source is configured.
    pub fn any(&self) -> bool {
        self.password_file.is_some() || self.http_conf.is_some() || self.acl_file.is_some()
    }
}

/// What the files held when last loaded.
struct Sources {
    password: Option<PasswordFile>,
    acl: Option<(Acl, Format)>,
    http: Option<Arc<HttpAuth>>,
}

impl Sources {
    fn load(paths: &Paths, metrics: &Arc<Metrics>) -> Result<Sources, String> {
        Ok(Sources {
            password: paths
                .password_file
                .as_deref()
                .map(PasswordFile::load)
                .transpose()?,
            acl: paths.acl_file.as_deref().map(Acl::load).transpose()?,
            http: paths
                .http_conf
                .as_deref()
                .map(|p| HttpAuth::load(p).map(|h| Arc::new(h.counting(metrics.clone()))))
                .transpose()?,
        })
    }
}

/// Shared by [`Auth`] and every client's rights.
struct Shared {
    sources: RwLock<Arc<Sources>>,
    /// Bumped by every successful reload: rights recompile when it moved.
    generation: AtomicU64,
    nomatch: Nomatch,
    cache_ttl: Duration,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn sources(&self) -> Arc<Sources> {
        self.sources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The access control installed into the broker.
pub struct Auth {
    paths: Paths,
    shared: Arc<Shared>,
}

impl Auth {
    /// Loads every configured file; errors are `file:line: problem`.
    pub fn load(config: &Config) -> Result<Auth, String> {
        let paths = Paths::of(config);
        let metrics = Arc::new(Metrics::default());
        let sources = Sources::load(&paths, &metrics)?;
        Ok(Auth {
            paths,
            shared: Arc::new(Shared {
                sources: RwLock::new(Arc::new(sources)),
                generation: AtomicU64::new(0),
                nomatch: config.acl.nomatch,
                cache_ttl: Duration::from_secs(config.acl.cache_ttl.into()),
                metrics,
            }),
        })
    }

    /// Re-reads every file. On an error the sources loaded before stay in
    /// force and the error (`file:line: problem`) is returned. Connected
    /// clients see the new rules from their next check.
    pub fn reload(&self) -> Result<(), String> {
        let sources = Sources::load(&self.paths, &self.shared.metrics)?;
        *self
            .shared
            .sources
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(sources);
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// A one-line summary for the start-up log (never secrets).
    pub fn describe(&self) -> String {
        let s = self.shared.sources();
        let mut parts = Vec::new();
        if let Some(p) = &s.password {
            parts.push(format!("password file ({} users)", p.len()));
        }
        if let Some(h) = &s.http {
            parts.push(format!("HTTP ({})", h.describe()));
        }
        if let Some((acl, format)) = &s.acl {
            parts.push(format!("ACL file ({format:?}, {} rules)", acl.rules.len()));
        }
        parts.join(", ")
    }

    /// The counters of outcomes ([`metrics`]), kept across reloads.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }
}

impl AccessControl for Auth {
    fn authenticate<'a>(&'a self, request: AuthRequest<'a>) -> AuthenticationFuture<'a> {
        Box::pin(async move {
            let sources = self.shared.sources();
            let client = request.client;
            let named = client.username.is_some();
            let refused = if named {
                ReasonCode::BAD_USERNAME_OR_PASSWORD
            } else {
                ReasonCode::NOT_AUTHORIZED
            };
            let mut decision = Decision::Ignore;
            if let (Some(_), Some(user)) = (&sources.password, &client.username) {
                let user = user.to_string();
                let password = request.password.cloned();
                let held = sources.clone();
                // PBKDF2 is CPU work: off the async runtime.
                let check = tokio::task::spawn_blocking(move || {
                    held.password
                        .as_ref()
                        .map_or(Check::Unknown, |p| p.check(&user, password.as_deref()))
                })
                .await
                .unwrap_or(Check::Mismatch);
                let (outcome, d) = match check {
                    Check::Match => (Outcome::Allow, Decision::Allow),
                    Check::Mismatch => (
                        Outcome::Deny,
                        Decision::Deny(ReasonCode::BAD_USERNAME_OR_PASSWORD),
                    ),
                    Check::Unknown => (Outcome::Ignore, Decision::Ignore),
                };
                self.shared
                    .metrics
                    .authenticated(Source::PasswordFile, outcome);
                decision = d;
            }
            if decision == Decision::Ignore
                && let Some(http) = &sources.http
            {
                let verdict = http.authenticate(client, request.password).await;
                let (outcome, d) = match verdict {
                    HttpVerdict::Allow => (Outcome::Allow, Decision::Allow),
                    HttpVerdict::Ignore => (Outcome::Ignore, Decision::Ignore),
                    HttpVerdict::Deny => (Outcome::Deny, Decision::Deny(refused)),
                    HttpVerdict::Failed => (Outcome::Failed, Decision::Deny(refused)),
                };
                // Counted only when auth_req is configured (an HTTP source
                // with only acl_req does not authenticate).
                if http.authenticates() {
                    self.shared.metrics.authenticated(Source::Http, outcome);
                }
                decision = d;
            }
            let superuser = match (&decision, &sources.http) {
                (Decision::Allow, Some(http)) => http.superuser(client).await,
                _ => false,
            };
            Authentication {
                decision,
                superuser,
            }
        })
    }

    fn has_sources(&self) -> bool {
        self.paths.password_file.is_some() || self.paths.http_conf.is_some()
    }

    fn rights(&self, client: &ClientInfo, superuser: bool) -> Option<Arc<dyn Rights>> {
        if superuser {
            return None;
        }
        let sources = self.shared.sources();
        if sources.acl.is_none() && sources.http.as_ref().is_none_or(|h| !h.has_acl()) {
            // No rules: everything allowed (nomatch does not apply without
            // an ACL source). A reload that adds one applies to clients
            // that connect after it.
            return None;
        }
        let rights = ClientRights {
            client: client.clone(),
            shared: self.shared.clone(),
            state: Mutex::new(State::compile(&self.shared, &sources, client)),
        };
        Some(Arc::new(rights))
    }

    fn may_ask(&self) -> bool {
        self.shared
            .sources()
            .http
            .as_ref()
            .is_some_and(|h| h.has_acl())
    }
}

/// Answers remembered per topic (a fast hash: topics are short; its seed
/// is random per process, so a client cannot aim collisions).
type Answers<V> = HashMap<Arc<str>, V, foldhash::fast::RandomState>;

/// One client's compiled rules and remembered answers.
struct State {
    generation: u64,
    rules: Vec<Compiled>,
    http: Option<Arc<HttpAuth>>,
    /// Answers of the local rules (and nomatch): publish, subscribe, deliver.
    local: [Answers<bool>; 3],
    /// The last local answer per action: a client publishing to (or a
    /// subscription receiving) one topic over and over is answered by a
    /// string comparison, without hashing.
    last: [Option<(Arc<str>, bool)>; 3],
    /// Answers of the HTTP `acl_req`, with when they expire.
    remote: [Answers<(bool, Instant)>; 3],
}

impl State {
    fn compile(shared: &Shared, sources: &Sources, client: &ClientInfo) -> State {
        State {
            generation: shared.generation.load(Ordering::Acquire),
            rules: sources
                .acl
                .as_ref()
                .map(|(acl, _)| acl.compile(client))
                .unwrap_or_default(),
            http: sources.http.clone().filter(|h| h.has_acl()),
            local: Default::default(),
            last: Default::default(),
            remote: Default::default(),
        }
    }
}

fn slot(action: AclAction) -> usize {
    match action {
        AclAction::Publish => 0,
        AclAction::Subscribe => 1,
        AclAction::Deliver => 2,
    }
}

fn remember<V>(map: &mut Answers<V>, topic: Arc<str>, value: V) {
    if map.len() >= CACHE_LIMIT {
        map.clear();
    }
    map.insert(topic, value);
}

/// A client's rights: see [`Rights`].
struct ClientRights {
    client: ClientInfo,
    shared: Arc<Shared>,
    state: Mutex<State>,
}

impl ClientRights {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.generation != self.shared.generation.load(Ordering::Acquire) {
            *st = State::compile(&self.shared, &self.shared.sources(), &self.client);
        }
        st
    }

    fn nomatch(&self) -> bool {
        self.shared.nomatch == Nomatch::Allow
    }
}

impl Rights for ClientRights {
    fn check(&self, action: AclAction, topic: &str) -> Verdict {
        let mut st = self.state();
        let i = slot(action);
        let verdict = |allowed: bool| {
            if allowed {
                Verdict::Allow
            } else {
                self.shared.metrics.acl_denied(action);
                Verdict::Deny
            }
        };
        if let Some((last, allowed)) = &st.last[i]
            && **last == *topic
        {
            return verdict(*allowed);
        }
        if let Some((key, &allowed)) = st.local[i].get_key_value(topic) {
            st.last[i] = Some((key.clone(), allowed));
            return verdict(allowed);
        }
        let local = acl::first_match(&st.rules, action, topic);
        let allowed = match (local, &st.http) {
            (Some(allowed), _) => allowed,
            (None, None) => self.nomatch(),
            (None, Some(_)) => {
                return match st.remote[i].get(topic) {
                    Some(&(allowed, until)) if Instant::now() < until => verdict(allowed),
                    _ => Verdict::Ask,
                };
            }
        };
        let key: Arc<str> = topic.into();
        remember(&mut st.local[i], key.clone(), allowed);
        st.last[i] = Some((key, allowed));
        verdict(allowed)
    }

    fn ask<'a>(&'a self, action: AclAction, topic: &'a str) -> DecisionFuture<'a> {
        Box::pin(async move {
            let http = self.state().http.clone();
            let Some(http) = http else {
                return Decision::Ignore;
            };
            let answer = http.check_acl(&self.client, action, topic).await;
            let allowed = match answer {
                HttpVerdict::Allow => true,
                HttpVerdict::Ignore => self.nomatch(),
                HttpVerdict::Deny | HttpVerdict::Failed => false,
            };
            let ttl = self.shared.cache_ttl;
            // A failure refuses this once; the next check asks again.
            if !ttl.is_zero() && answer != HttpVerdict::Failed {
                let mut st = self.state();
                remember(
                    &mut st.remote[slot(action)],
                    topic.into(),
                    (allowed, Instant::now() + ttl),
                );
            }
            if allowed {
                Decision::Allow
            } else {
                self.shared.metrics.acl_denied(action);
                Decision::Deny(ReasonCode::NOT_AUTHORIZED)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers remembered per topic (the last one, and the map) never
    /// answer for another topic or another action, and a reload replaces
    /// them.
    #[test]
    fn remembered_answers_stay_with_their_topic_and_rules() {
        let dir = std::env::temp_dir().join(format!("herald-auth-rights-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("acl");
        std::fs::write(&file, "user u\ntopic read a/#\ntopic deny a/2\n").unwrap();
        let mut config = Config::default();
        config.acl.file = Some(file.clone().into());
        config.acl.nomatch = Nomatch::Deny;
        let auth = Auth::load(&config).unwrap();
        let client = acl::tests::client("c", Some("u"), "10.0.0.1");
        let rights = auth.rights(&client, false).unwrap();
        for _ in 0..3 {
            for (action, topic, expect) in [
                (AclAction::Deliver, "a/1", Verdict::Allow),
                (AclAction::Deliver, "a/1", Verdict::Allow),
                (AclAction::Deliver, "a/2", Verdict::Deny),
                (AclAction::Publish, "a/1", Verdict::Deny),
                (AclAction::Deliver, "a/2", Verdict::Deny),
                (AclAction::Deliver, "a/3", Verdict::Allow),
                (AclAction::Subscribe, "a/2", Verdict::Deny),
                (AclAction::Subscribe, "a/1", Verdict::Allow),
            ] {
                assert_eq!(rights.check(action, topic), expect, "{action:?} {topic}");
            }
        }
        let counted = auth.metrics().render();
        for line in [
            "herald_auth_acl_denied_total{action=\"deliver\"} 6",
            "herald_auth_acl_denied_total{action=\"publish\"} 3",
            "herald_auth_acl_denied_total{action=\"subscribe\"} 3",
        ] {
            assert!(counted.lines().any(|l| l == line), "{line} in\n{counted}");
        }
        std::fs::write(&file, "user u\ntopic readwrite a/#\n").unwrap();
        auth.reload().unwrap();
        assert_eq!(rights.check(AclAction::Deliver, "a/2"), Verdict::Allow);
        assert_eq!(rights.check(AclAction::Publish, "a/1"), Verdict::Allow);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
