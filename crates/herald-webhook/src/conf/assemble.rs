//! The keys as a whole: the checks no single key can make (both halves of
//! mutual TLS, backoff order, headers Herald sets itself, duplicate rules,
//! settings that are ignored) and the final [`WebhookConfig`] with its
//! defaults filled in.
//!
//! It works on a complete [`Draft`] only; it never parses a value (that is
//! `keys` and `values`) and never logs: remarks become warnings.

use super::keys::{Draft, RuleEntry, Set};
use super::{
    BatchSettings, ConfError, ConfWarning, DEFAULT_BATCH_INTERVAL, DEFAULT_DELIVERY_NICE,
    DEFAULT_EVENT_ID_HEADER, DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_BACKOFF, DEFAULT_NODE_NAME,
    DEFAULT_POOL_SIZE, DEFAULT_SIGN_HEADER, DEFAULT_SPOOL_MAX_BYTES, DEFAULT_TIMEOUT, FsyncPolicy,
    Problem, RequestSettings, RetrySettings, ServerName, SignSettings, SpoolMode, SpoolSettings,
    TlsSettings, WebhookConfig,
};
use crate::body::Profile;
use crate::payload::PayloadEncoding;
use crate::rules::Rules;

/// The value set for a key, or `default`.
fn value_of<T: Clone>(slot: &Option<Set<T>>, default: T) -> T {
    slot.as_ref().map_or(default, |s| s.value.clone())
}

impl Draft {
    /// Checks the keys as a whole and builds the configuration.
    pub(super) fn finish(mut self) -> Result<WebhookConfig, ConfError> {
        let key_err = |set: &RuleEntry, problem| ConfError::key(&set.origin, &set.key, problem);
        if self.url.is_none()
            && let Some(first) = self.rules.first()
        {
            return Err(key_err(first, Problem::MissingUrl));
        }
        // Mutual TLS needs both halves.
        match (&self.certfile, &self.keyfile) {
            (Some(c), k) if c.value.is_some() && k.as_ref().is_none_or(|k| k.value.is_none()) => {
                return Err(ConfError::key(
                    &c.origin,
                    &c.key,
                    Problem::Conflict("a client certificate needs web.hook.ssl.keyfile too".into()),
                ));
            }
            (c, Some(k)) if k.value.is_some() && c.as_ref().is_none_or(|c| c.value.is_none()) => {
                return Err(ConfError::key(
                    &k.origin,
                    &k.key,
                    Problem::Conflict("a client key needs web.hook.ssl.certfile too".into()),
                ));
            }
            _ => {}
        }
        let retry = RetrySettings {
            initial_backoff: value_of(&self.initial_backoff, DEFAULT_INITIAL_BACKOFF),
            max_backoff: value_of(&self.max_backoff, DEFAULT_MAX_BACKOFF),
        };
        if retry.initial_backoff > retry.max_backoff {
            // Name the key the operator set (the later one if both; the
            // defaults alone are ordered).
            let set = [&self.initial_backoff, &self.max_backoff];
            if let Some(at) = set.into_iter().flatten().max_by_key(|s| s.origin.line()) {
                return Err(ConfError::key(
                    &at.origin,
                    &at.key,
                    Problem::Conflict(format!(
                        "web.hook.retry.initial_backoff ({:?}) is longer than web.hook.retry.max_backoff ({:?})",
                        retry.initial_backoff, retry.max_backoff
                    )),
                ));
            }
        }
        let sign = SignSettings {
            secret: value_of(&self.sign_secret, None),
            header: value_of(&self.sign_header, DEFAULT_SIGN_HEADER.to_owned()),
        };
        let event_id_header = value_of(&self.event_id_header, DEFAULT_EVENT_ID_HEADER.to_owned());
        for h in &self.headers {
            if h.value.name == event_id_header || h.value.name == sign.header {
                return Err(ConfError::key(
                    &h.origin,
                    &h.key,
                    Problem::Conflict(format!(
                        "header `{}` is set by Herald (event id or signature header)",
                        h.value.name
                    )),
                ));
            }
        }
        if let (Some(sh), Some(eh)) = (&self.sign_header, &self.event_id_header)
            && sh.value == eh.value
        {
            return Err(ConfError::key(
                &sh.origin,
                &sh.key,
                Problem::Conflict("the signature and event id headers must differ".into()),
            ));
        }

        let tls = TlsSettings {
            cacertfile: value_of(&self.cacertfile, None),
            certfile: value_of(&self.certfile, None),
            keyfile: value_of(&self.keyfile, None),
            verify: value_of(&self.verify, true),
            server_name: value_of(&self.server_name, ServerName::UrlHost),
        };
        self.tls_warnings();

        let mut rules = Rules::new();
        let mut firsts: Vec<&RuleEntry> = Vec::new();
        for entry in &self.rules {
            if rules.add(entry.kind, entry.topic.clone()) {
                firsts.push(entry);
            } else if let Some(first) = firsts.iter().find(|f| {
                f.kind == entry.kind && (f.topic == entry.topic || !entry.kind.has_topic())
            }) {
                self.warnings.push(ConfWarning {
                    origin: entry.origin.clone(),
                    key: entry.key.clone(),
                    message: format!("same as {} ({}); counted once", first.key, first.origin),
                });
            }
        }
        if let Some(url) = &self.url
            && rules.is_empty()
        {
            self.warnings.push(ConfWarning {
                origin: url.origin.clone(),
                key: url.key.clone(),
                message: "no web.hook.rule.* keys: no event will be sent".to_owned(),
            });
        }
        let spool = SpoolSettings {
            dir: value_of(&self.spool_dir, None),
            max_bytes: value_of(&self.spool_max_bytes, DEFAULT_SPOOL_MAX_BYTES),
            fsync: value_of(&self.spool_fsync, FsyncPolicy::Interval),
            mode: value_of(&self.spool_mode, SpoolMode::Disk),
        };
        if spool.mode == SpoolMode::Memory
            && let Some(dir) = self.spool_dir.as_ref().filter(|d| d.value.is_some())
        {
            self.warnings.push(ConfWarning {
                origin: dir.origin.clone(),
                key: dir.key.clone(),
                message: "ignored: web.hook.spool.mode is memory".to_owned(),
            });
        }

        Ok(WebhookConfig {
            url: self.url.map(|s| s.value),
            headers: self.headers.into_iter().map(|s| s.value).collect(),
            payload_encoding: value_of(&self.encoding, PayloadEncoding::Plain),
            tls,
            pool_size: value_of(&self.pool_size, DEFAULT_POOL_SIZE),
            delivery_threads: value_of(&self.delivery_threads, 1),
            delivery_nice: value_of(&self.delivery_nice, DEFAULT_DELIVERY_NICE),
            enable_pipelining: value_of(&self.pipelining, true),
            rules,
            body_profile: value_of(&self.profile, Profile::V4_0),
            node_name: value_of(&self.node, DEFAULT_NODE_NAME.to_owned()),
            spool,
            request: RequestSettings {
                connect_timeout: value_of(&self.connect_timeout, DEFAULT_TIMEOUT),
                request_timeout: value_of(&self.request_timeout, DEFAULT_TIMEOUT),
            },
            retry,
            max_event_age: value_of(&self.max_event_age, None),
            batch: BatchSettings {
                size: value_of(&self.batch_size, 1),
                interval: value_of(&self.batch_interval, DEFAULT_BATCH_INTERVAL),
            },
            sign,
            event_id_header,
            warnings: self.warnings,
        })
    }

    /// Warnings about TLS settings: verification off, or TLS keys on an
    /// `http` URL.
    fn tls_warnings(&mut self) {
        if let Some(v) = &self.verify
            && !v.value
        {
            self.warnings.push(ConfWarning {
                origin: v.origin.clone(),
                key: v.key.clone(),
                message: "the web server's certificate is not verified".to_owned(),
            });
        }
        let https = self.url.as_ref().is_none_or(|u| u.value.is_https());
        if https {
            return;
        }
        let set = [
            self.cacertfile
                .as_ref()
                .filter(|s| s.value.is_some())
                .map(|s| (&s.origin, &s.key)),
            self.certfile
                .as_ref()
                .filter(|s| s.value.is_some())
                .map(|s| (&s.origin, &s.key)),
            self.keyfile
                .as_ref()
                .filter(|s| s.value.is_some())
                .map(|s| (&s.origin, &s.key)),
            self.server_name.as_ref().map(|s| (&s.origin, &s.key)),
        ];
        let notes: Vec<ConfWarning> = set
            .into_iter()
            .flatten()
            .map(|(origin, key)| ConfWarning {
                origin: origin.clone(),
                key: key.clone(),
                message: "ignored: web.hook.url is not https".to_owned(),
            })
            .collect();
        self.warnings.extend(notes);
    }
}
