//! Each key of `emqx_web_hook.conf` (and Herald's own `web.hook.*` keys)
//! parsed into its slot of a [`Draft`], with where it was set: old names
//! share their new name's slot, a key set again replaces the earlier value
//! with a warning, headers and rules are collected in order.
//!
//! One key at a time: checks that need several keys belong to `assemble`.
//! Nothing here reads files, touches the network or logs.

use super::tokenizer::{self, Entry};
use super::values::{bad, boolean, duration, header_name, integer, path, size};
use super::{
    ConfError, ConfWarning, FsyncPolicy, Header, MAX_BATCH_SIZE, MAX_DELIVERY_THREADS,
    MAX_POOL_SIZE, Origin, Problem, Secret, ServerName, SpoolMode,
};
use crate::body::Profile;
use crate::endpoint::{Endpoint, valid_host_name};
use crate::event::EventKind;
use crate::payload::PayloadEncoding;
use herald_broker::router::{parse_shared, valid_topic_filter};
use std::path::PathBuf;
use std::time::Duration;

/// A value with where it was set.
#[derive(Debug)]
pub(super) struct Set<T> {
    /// The parsed value.
    pub(super) value: T,
    /// Where it was set, for errors and warnings about it.
    pub(super) origin: Origin,
    /// The key as written (an old name stays the old name).
    pub(super) key: String,
}

/// One rule as configured, before deduplication.
#[derive(Debug)]
pub(super) struct RuleEntry {
    /// The event of `web.hook.rule.<event>.<N>`.
    pub(super) kind: EventKind,
    /// The rule's `topic`.
    pub(super) topic: Option<String>,
    /// Where it was set.
    pub(super) origin: Origin,
    /// The key as written (replacing by key: the last one wins).
    pub(super) key: String,
}

/// Settings collected so far, one slot per key (an old name shares its new
/// name's slot); `None` means not set, so the default applies.
/// `Draft::finish` (in `assemble`) checks them as a whole.
#[derive(Debug, Default)]
pub(super) struct Draft {
    pub(super) url: Option<Set<Endpoint>>,
    pub(super) headers: Vec<Set<Header>>,
    pub(super) encoding: Option<Set<PayloadEncoding>>,
    pub(super) cacertfile: Option<Set<Option<PathBuf>>>,
    pub(super) certfile: Option<Set<Option<PathBuf>>>,
    pub(super) keyfile: Option<Set<Option<PathBuf>>>,
    pub(super) verify: Option<Set<bool>>,
    pub(super) server_name: Option<Set<ServerName>>,
    pub(super) pool_size: Option<Set<usize>>,
    pub(super) delivery_threads: Option<Set<usize>>,
    pub(super) delivery_nice: Option<Set<u8>>,
    pub(super) pipelining: Option<Set<bool>>,
    pub(super) rules: Vec<RuleEntry>,
    pub(super) profile: Option<Set<Profile>>,
    pub(super) node: Option<Set<String>>,
    pub(super) spool_dir: Option<Set<Option<PathBuf>>>,
    pub(super) spool_max_bytes: Option<Set<u64>>,
    pub(super) spool_fsync: Option<Set<FsyncPolicy>>,
    pub(super) spool_mode: Option<Set<SpoolMode>>,
    pub(super) connect_timeout: Option<Set<Duration>>,
    pub(super) request_timeout: Option<Set<Duration>>,
    pub(super) initial_backoff: Option<Set<Duration>>,
    pub(super) max_backoff: Option<Set<Duration>>,
    pub(super) max_event_age: Option<Set<Option<Duration>>>,
    pub(super) batch_size: Option<Set<usize>>,
    pub(super) batch_interval: Option<Set<Duration>>,
    pub(super) sign_secret: Option<Set<Option<Secret>>>,
    pub(super) sign_header: Option<Set<String>>,
    pub(super) event_id_header: Option<Set<String>>,
    pub(super) warnings: Vec<ConfWarning>,
}

/// Stores a value, warning when it replaces an earlier one.
fn put<T>(
    slot: &mut Option<Set<T>>,
    warnings: &mut Vec<ConfWarning>,
    value: T,
    origin: Origin,
    key: &str,
) {
    if let Some(old) = slot.as_ref() {
        warnings.push(ConfWarning {
            origin: origin.clone(),
            key: key.to_owned(),
            message: format!("replaces {} set at {}", old.key, old.origin),
        });
    }
    *slot = Some(Set {
        value,
        origin,
        key: key.to_owned(),
    });
}

impl Draft {
    /// Applies every `key = value` line of an EMQX configuration text.
    pub(super) fn apply_text(&mut self, text: &str, source: &str) -> Result<(), ConfError> {
        for entry in tokenizer::entries(text, source) {
            let Entry { key, value, origin } = entry?;
            self.apply(key, value, origin)?;
        }
        Ok(())
    }

    /// Applies `(key, value, origin)` triples (key and value trimmed).
    pub(super) fn apply_pairs<I, K, V>(&mut self, pairs: I) -> Result<(), ConfError>
    where
        I: IntoIterator<Item = (K, V, Origin)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        for (key, value, origin) in pairs {
            self.apply(key.as_ref().trim(), value.as_ref().trim(), origin)?;
        }
        Ok(())
    }

    /// Parses one key's value into its slot.
    fn apply(&mut self, key: &str, value: &str, origin: Origin) -> Result<(), ConfError> {
        let err = |problem| ConfError::key(&origin, key, problem);
        let w = &mut self.warnings;
        match key {
            "web.hook.url" | "web.hook.api.url" => {
                let url = Endpoint::parse(value).map_err(|error| {
                    err(Problem::BadUrl {
                        value: value.to_owned(),
                        error,
                    })
                })?;
                put(&mut self.url, w, url, origin, key);
            }
            "web.hook.body.encoding_of_payload_field" | "web.hook.encode_payload" => {
                let enc = PayloadEncoding::from_name(value)
                    .ok_or_else(|| err(bad(value, "plain, base64 or base62")))?;
                put(&mut self.encoding, w, enc, origin, key);
            }
            "web.hook.ssl.cacertfile" | "web.hook.ssl.cafile" => {
                put(&mut self.cacertfile, w, path(value), origin, key)
            }
            "web.hook.ssl.certfile" => put(&mut self.certfile, w, path(value), origin, key),
            "web.hook.ssl.keyfile" => put(&mut self.keyfile, w, path(value), origin, key),
            "web.hook.ssl.verify" => {
                let v = boolean(value).map_err(err)?;
                put(&mut self.verify, w, v, origin, key);
            }
            "web.hook.ssl.server_name_indication" => {
                let sni = if value == "disable" {
                    ServerName::Disable
                } else if valid_host_name(value) {
                    ServerName::Name(value.to_ascii_lowercase())
                } else {
                    return Err(err(bad(value, "a host name or `disable`")));
                };
                put(&mut self.server_name, w, sni, origin, key);
            }
            "web.hook.pool_size" => {
                let n = integer(value, 1, MAX_POOL_SIZE as u64).map_err(err)?;
                put(&mut self.pool_size, w, n as usize, origin, key);
            }
            "web.hook.delivery_threads" => {
                let n = integer(value, 1, MAX_DELIVERY_THREADS as u64).map_err(err)?;
                put(&mut self.delivery_threads, w, n as usize, origin, key);
            }
            "web.hook.delivery_nice" => {
                let n = integer(value, 0, 19).map_err(err)?;
                put(&mut self.delivery_nice, w, n as u8, origin, key);
            }
            "web.hook.enable_pipelining" => {
                let v = boolean(value).map_err(err)?;
                put(&mut self.pipelining, w, v, origin, key);
            }
            "web.hook.body.profile" => {
                let p = Profile::from_name(value).ok_or_else(|| err(bad(value, "v4.0 or v4.4")))?;
                put(&mut self.profile, w, p, origin, key);
            }
            "web.hook.node" => {
                if value.is_empty() {
                    return Err(err(bad(value, "a node name")));
                }
                put(&mut self.node, w, value.to_owned(), origin, key);
            }
            "web.hook.spool.dir" => put(&mut self.spool_dir, w, path(value), origin, key),
            "web.hook.spool.max_bytes" => {
                let n = size(value).map_err(err)?;
                put(&mut self.spool_max_bytes, w, n, origin, key);
            }
            "web.hook.spool.fsync" => {
                let f = match value {
                    "always" => FsyncPolicy::Always,
                    "interval" => FsyncPolicy::Interval,
                    "never" => FsyncPolicy::Never,
                    _ => return Err(err(bad(value, "always, interval or never"))),
                };
                put(&mut self.spool_fsync, w, f, origin, key);
            }
            "web.hook.spool.mode" => {
                let m = match value {
                    "disk" => SpoolMode::Disk,
                    "memory" => SpoolMode::Memory,
                    _ => return Err(err(bad(value, "disk or memory"))),
                };
                put(&mut self.spool_mode, w, m, origin, key);
            }
            "web.hook.request.connect_timeout" => {
                let d = duration(value).map_err(err)?;
                put(&mut self.connect_timeout, w, d, origin, key);
            }
            "web.hook.request.request_timeout" => {
                let d = duration(value).map_err(err)?;
                put(&mut self.request_timeout, w, d, origin, key);
            }
            "web.hook.retry.initial_backoff" => {
                let d = duration(value).map_err(err)?;
                put(&mut self.initial_backoff, w, d, origin, key);
            }
            "web.hook.retry.max_backoff" => {
                let d = duration(value).map_err(err)?;
                put(&mut self.max_backoff, w, d, origin, key);
            }
            "web.hook.max_event_age" => {
                let d =
                    match value {
                        "infinity" => None,
                        _ => Some(duration(value).map_err(|_| {
                            err(bad(value, "a duration such as 10m, or `infinity`"))
                        })?),
                    };
                put(&mut self.max_event_age, w, d, origin, key);
            }
            "web.hook.batch.size" => {
                let n = integer(value, 1, MAX_BATCH_SIZE as u64).map_err(err)?;
                put(&mut self.batch_size, w, n as usize, origin, key);
            }
            "web.hook.batch.interval" => {
                let d = duration(value).map_err(err)?;
                put(&mut self.batch_interval, w, d, origin, key);
            }
            "web.hook.sign.secret" => {
                let s = (!value.is_empty()).then(|| Secret(value.to_owned()));
                put(&mut self.sign_secret, w, s, origin, key);
            }
            "web.hook.sign.header" => {
                let name = header_name(value).ok_or_else(|| err(bad(value, "a header name")))?;
                put(&mut self.sign_header, w, name, origin, key);
            }
            "web.hook.event_id_header" => {
                let name = header_name(value).ok_or_else(|| err(bad(value, "a header name")))?;
                put(&mut self.event_id_header, w, name, origin, key);
            }
            _ => {
                if let Some(name) = key.strip_prefix("web.hook.headers.") {
                    return self.header(key, name, value, origin);
                }
                if let Some(rest) = key.strip_prefix("web.hook.rule.") {
                    return self.rule(key, rest, value, origin);
                }
                return Err(err(Problem::UnknownKey));
            }
        }
        Ok(())
    }

    /// `web.hook.headers.<name> = value`.
    fn header(
        &mut self,
        key: &str,
        name: &str,
        value: &str,
        origin: Origin,
    ) -> Result<(), ConfError> {
        let err = |problem| ConfError::key(&origin, key, problem);
        let name = header_name(name).ok_or_else(|| err(bad(name, "a valid header name")))?;
        if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7F) {
            return Err(err(bad(value, "a header value without control characters")));
        }
        match name.as_str() {
            "content-type" => {
                self.warnings.push(ConfWarning {
                    origin,
                    key: key.to_owned(),
                    message: "ignored: content-type is always application/json".to_owned(),
                });
                return Ok(());
            }
            "content-length" | "transfer-encoding" | "connection" | "host" => {
                return Err(err(Problem::Conflict(format!(
                    "header `{name}` is set by Herald and cannot be configured"
                ))));
            }
            _ => {}
        }
        if let Some(i) = self.headers.iter().position(|h| h.value.name == name) {
            let old = self.headers.remove(i);
            self.warnings.push(ConfWarning {
                origin: origin.clone(),
                key: key.to_owned(),
                message: format!("replaces header {} set at {}", old.key, old.origin),
            });
        }
        self.headers.push(Set {
            value: Header {
                name,
                value: value.to_owned(),
            },
            origin,
            key: key.to_owned(),
        });
        Ok(())
    }

    /// `web.hook.rule.<event>.<N> = {"action": ..., "topic": ...}`.
    fn rule(
        &mut self,
        key: &str,
        rest: &str,
        value: &str,
        origin: Origin,
    ) -> Result<(), ConfError> {
        let err = |problem| ConfError::key(&origin, key, problem);
        let Some((event, number)) = rest.rsplit_once('.') else {
            return Err(err(Problem::UnknownEvent(rest.to_owned())));
        };
        let kind = EventKind::from_name(event)
            .ok_or_else(|| err(Problem::UnknownEvent(event.to_owned())))?;
        if number.is_empty()
            || !number
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(err(Problem::BadRule(format!(
                "`{number}` after the event name is not a rule number (web.hook.rule.<event>.<N>)"
            ))));
        }
        let json: serde_json::Value =
            serde_json::from_str(value).map_err(|e| err(Problem::RuleJson(e.to_string())))?;
        let serde_json::Value::Object(fields) = json else {
            return Err(err(Problem::BadRule(
                "expected a JSON object such as {\"action\": \"...\"}".to_owned(),
            )));
        };
        let mut action = None;
        let mut topic = None;
        for (name, field) in &fields {
            match (name.as_str(), field) {
                ("action", serde_json::Value::String(s)) => action = Some(s.as_str()),
                ("topic", serde_json::Value::String(s)) => topic = Some(s.clone()),
                ("action" | "topic", _) => {
                    return Err(err(Problem::BadRule(format!("`{name}` must be a string"))));
                }
                _ => {
                    return Err(err(Problem::BadRule(format!(
                        "unknown field `{name}` (a rule has `action` and `topic`)"
                    ))));
                }
            }
        }
        let Some(action) = action else {
            return Err(err(Problem::BadRule(format!(
                "missing `action` (expected \"{}\")",
                kind.rule_action()
            ))));
        };
        if action != kind.rule_action() {
            return Err(err(Problem::WrongAction {
                event: kind,
                found: action.to_owned(),
                expected: kind.rule_action(),
            }));
        }
        if let Some(filter) = &topic {
            if !valid_topic_filter(filter) {
                return Err(err(Problem::BadRule(format!(
                    "`{filter}` is not a valid topic filter"
                ))));
            }
            if !matches!(parse_shared(filter), Ok(None)) {
                return Err(err(Problem::BadRule(format!(
                    "`{filter}`: a rule's topic is matched without the $share/<group>/ prefix; write the filter alone"
                ))));
            }
            if !kind.has_topic() {
                self.warnings.push(ConfWarning {
                    origin: origin.clone(),
                    key: key.to_owned(),
                    message: format!("`topic` is ignored for {kind} rules"),
                });
            }
        }
        let entry = RuleEntry {
            kind,
            topic,
            origin,
            key: key.to_owned(),
        };
        if let Some(old) = self.rules.iter_mut().find(|r| r.key == key) {
            self.warnings.push(ConfWarning {
                origin: entry.origin.clone(),
                key: key.to_owned(),
                message: format!("replaces the rule set at {}", old.origin),
            });
            *old = entry;
        } else {
            self.rules.push(entry);
        }
        Ok(())
    }
}
