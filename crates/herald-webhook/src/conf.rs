//! The WebHook's configuration: an EMQX 4.x `emqx_web_hook.conf`
//! (`key = value` lines, `#` comments) read unchanged, plus Herald's own
//! keys under `web.hook.` (`docs/webhook.md` §1).
//!
//! Two entry points share one implementation: [`WebhookConfig::parse`] /
//! [`WebhookConfig::load`] for the file, and [`WebhookConfig::from_pairs`]
//! for keys that come from elsewhere (Herald's TOML `[webhook]` table,
//! environment variables), each pair carrying the [`Origin`] to name in
//! errors. Either returns a complete configuration or the first error,
//! which names the file, the line and the key: nothing is ever
//! half-configured.
//!
//! Without `web.hook.url` (or its old name `web.hook.api.url`) the
//! WebHook is off: [`WebhookConfig::url`] is `None` and nothing is sent.
//! Rules without a URL are an error, since they show the operator meant to
//! turn it on.
//!
//! This module never touches the network or the files the configuration
//! names (certificates, spool directory): those are checked by whoever
//! opens them. It never logs while parsing either: remarks worth an
//! operator's attention are collected in [`WebhookConfig::warnings`] and
//! logged by [`WebhookConfig::log_warnings`] at start-up.
//!
//! # Keys
//!
//! EMQX 4.x keys:
//!
//! | key | values | default |
//! |---|---|---|
//! | `web.hook.url` (old: `web.hook.api.url`) | URL; no scheme means `http://`, no path means `/` | none: webhook off |
//! | `web.hook.headers.<Name>` | string; name lower-cased, `_` → `-`; `content-type` ignored | |
//! | `web.hook.body.encoding_of_payload_field` (old: `web.hook.encode_payload`) | `plain` \| `base64` \| `base62` | `plain` |
//! | `web.hook.ssl.cacertfile` (old: `web.hook.ssl.cafile`), `.certfile`, `.keyfile` | path; empty = unset | unset |
//! | `web.hook.ssl.verify` | `true` \| `false` | `true` (EMQX: `false`) |
//! | `web.hook.ssl.server_name_indication` | host name \| `disable` | the URL's host |
//! | `web.hook.pool_size` | 1 … 4096 | 32 |
//! | `web.hook.enable_pipelining` | `true` \| `false` | `true` |
//! | `web.hook.rule.<event>.<N>` | `{"action": "on_<event>", "topic": "<filter>"}` | |
//!
//! Herald's keys (durations: `500ms`, `5s`, `2m`, `1h`, `1m30s`; sizes:
//! bytes, or with `KB`/`MB`/`GB`, 1024-based):
//!
//! | key | values | default |
//! |---|---|---|
//! | `web.hook.body.profile` | `v4.0` \| `v4.4` | `v4.0` |
//! | `web.hook.node` | node name for v4.4's `node` field | `herald@127.0.0.1` |
//! | `web.hook.spool.dir` | path; empty = default | `<data_dir>/webhook` |
//! | `web.hook.spool.max_bytes` | size ≥ 1 | `1GB` |
//! | `web.hook.spool.fsync` | `always` \| `interval` \| `never` | `interval` |
//! | `web.hook.spool.mode` | `disk` \| `memory` | `disk` |
//! | `web.hook.request.connect_timeout` | duration | `5s` |
//! | `web.hook.request.request_timeout` | duration | `5s` |
//! | `web.hook.retry.initial_backoff` | duration ≤ `max_backoff` | `1s` |
//! | `web.hook.retry.max_backoff` | duration | `60s` |
//! | `web.hook.max_event_age` | duration \| `infinity` | `infinity` |
//! | `web.hook.batch.size` | 1 … 10000; 1 = no batching | `1` |
//! | `web.hook.batch.interval` | duration | `100ms` |
//! | `web.hook.sign.secret` | string; empty = no signature | unset |
//! | `web.hook.sign.header` | header name | `x-herald-signature` |
//! | `web.hook.event_id_header` | header name | `x-herald-event-id` |
//!
//! A key given twice takes the last value (as in EMQX), with a warning; an
//! old key name and its new name count as the same key.

use crate::body::Profile;
use crate::endpoint::{Endpoint, UrlError, valid_host_name};
use crate::event::EventKind;
use crate::payload::PayloadEncoding;
use crate::rules::Rules;
use herald_broker::router::{parse_shared, valid_topic_filter};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// Default `web.hook.pool_size`.
pub const DEFAULT_POOL_SIZE: usize = 32;
/// Largest `web.hook.pool_size`.
pub const MAX_POOL_SIZE: usize = 4096;
/// Default `web.hook.node`.
pub const DEFAULT_NODE_NAME: &str = "herald@127.0.0.1";
/// Default `web.hook.spool.max_bytes`: 1 GiB.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 1 << 30;
/// Default connect and request timeouts.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `web.hook.retry.initial_backoff`.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Default `web.hook.retry.max_backoff`.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Largest `web.hook.batch.size`.
pub const MAX_BATCH_SIZE: usize = 10_000;
/// Default `web.hook.batch.interval`.
pub const DEFAULT_BATCH_INTERVAL: Duration = Duration::from_millis(100);
/// Default `web.hook.sign.header`.
pub const DEFAULT_SIGN_HEADER: &str = "x-herald-signature";
/// Default `web.hook.event_id_header`.
pub const DEFAULT_EVENT_ID_HEADER: &str = "x-herald-event-id";

/// Where a key came from: a file and line, or a description such as
/// `environment variable HERALD_WEBHOOK__...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// File path or other description; shared by every line of a file.
    source: Arc<str>,
    /// 1-based line number, when the source has lines.
    line: Option<u32>,
}

impl Origin {
    /// A source without lines.
    pub fn new(source: impl Into<Arc<str>>) -> Origin {
        Origin {
            source: source.into(),
            line: None,
        }
    }

    /// Line `line` (1-based) of `source`.
    pub fn at(source: impl Into<Arc<str>>, line: u32) -> Origin {
        Origin {
            source: source.into(),
            line: Some(line),
        }
    }

    /// The file or description.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The 1-based line, if any.
    pub fn line(&self) -> Option<u32> {
        self.line
    }
}

impl fmt::Display for Origin {
    /// `file:line` or the description.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}", self.source, line),
            None => f.write_str(&self.source),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, Error)]
pub enum ConfError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read WebHook configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line that is neither blank, a comment, nor `key = value`.
    #[error("{origin}: expected `key = value`, found `{text}`")]
    Syntax {
        /// File and line.
        origin: Origin,
        /// The line, trimmed.
        text: String,
    },
    /// A key that is unknown or whose value is wrong.
    #[error("{origin}: {key}: {problem}")]
    Key {
        /// File and line (or other source) of the key.
        origin: Origin,
        /// The key as written.
        key: String,
        /// What is wrong.
        problem: Problem,
    },
}

impl ConfError {
    fn key(origin: &Origin, key: &str, problem: Problem) -> ConfError {
        ConfError::Key {
            origin: origin.clone(),
            key: key.to_owned(),
            problem,
        }
    }

    /// Where the error is, when it is in the configuration's text.
    pub fn origin(&self) -> Option<&Origin> {
        match self {
            ConfError::Read { .. } => None,
            ConfError::Syntax { origin, .. } | ConfError::Key { origin, .. } => Some(origin),
        }
    }

    /// What is wrong with a key, for [`ConfError::Key`].
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            ConfError::Key { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

/// What is wrong with one key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Problem {
    /// Not a key of §1 nor one of Herald's.
    #[error("unknown key")]
    UnknownKey,
    /// The value has the wrong type or is out of range.
    #[error("`{value}` is not {expected}")]
    BadValue {
        /// The value as written.
        value: String,
        /// What was expected, e.g. `true or false`.
        expected: String,
    },
    /// `web.hook.url` is not a usable URL.
    #[error("invalid URL `{value}`: {error}")]
    BadUrl {
        /// The value as written.
        value: String,
        /// Why.
        error: UrlError,
    },
    /// A rule whose value does not parse as JSON.
    #[error("rule is not valid JSON: {0}")]
    RuleJson(String),
    /// `web.hook.rule.<event>.<N>` with an event that is not one of §2's.
    #[error("rule on unknown event `{0}` (events: {events})", events = event_names())]
    UnknownEvent(String),
    /// A rule whose `action` is not the one of its event.
    #[error("action `{found}` does not belong to event `{event}`; expected `{expected}`")]
    WrongAction {
        /// The rule's event.
        event: EventKind,
        /// The action written.
        found: String,
        /// The action of `event`.
        expected: &'static str,
    },
    /// A rule that parses as JSON but is not a valid rule.
    #[error("invalid rule: {0}")]
    BadRule(String),
    /// Rules are configured but no URL.
    #[error(
        "a rule is configured but web.hook.url is not set; set the URL, or remove the rules to turn the WebHook off"
    )]
    MissingUrl,
    /// Keys that do not fit together.
    #[error("{0}")]
    Conflict(String),
}

/// Something worth an operator's attention that does not stop start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfWarning {
    /// Where the key was set.
    pub origin: Origin,
    /// The key.
    pub key: String,
    /// What to know.
    pub message: String,
}

impl fmt::Display for ConfWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.origin, self.key, self.message)
    }
}

/// A request header from `web.hook.headers.<Name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Lower-case, `_` replaced by `-`.
    pub name: String,
    /// As configured, surrounding whitespace trimmed.
    pub value: String,
}

/// Which name the TLS client sends (SNI) and checks the certificate for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ServerName {
    /// The URL's host (default).
    #[default]
    UrlHost,
    /// This name instead.
    Name(String),
    /// `disable`: no SNI and no host-name check of the certificate.
    Disable,
}

/// TLS settings for `https` URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// CA bundle (PEM) to verify the server with; the system roots if unset.
    pub cacertfile: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; set together with `keyfile`.
    pub certfile: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    pub keyfile: Option<PathBuf>,
    /// Verify the server's certificate (default `true`, unlike EMQX).
    pub verify: bool,
    /// SNI / expected server name.
    pub server_name: ServerName,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            cacertfile: None,
            certfile: None,
            keyfile: None,
            verify: true,
            server_name: ServerName::UrlHost,
        }
    }
}

/// When the spool forces its writes to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// After every append: nothing accepted is lost even on power loss.
    Always,
    /// Periodically (default): survives `kill -9`, may lose the last moments
    /// on power loss.
    #[default]
    Interval,
    /// Never explicitly; the operating system decides.
    Never,
}

/// Where the spool keeps events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpoolMode {
    /// On disk (default): survives restarts.
    #[default]
    Disk,
    /// In memory only: lost on restart (tests, benchmarks).
    Memory,
}

/// The spool (delivery queue) settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolSettings {
    /// Directory; `None` means `<data_dir>/webhook`, decided by the caller.
    pub dir: Option<PathBuf>,
    /// Size limit; beyond it the oldest events are dropped.
    pub max_bytes: u64,
    /// Durability of appends.
    pub fsync: FsyncPolicy,
    /// Disk or memory.
    pub mode: SpoolMode,
}

impl Default for SpoolSettings {
    fn default() -> Self {
        SpoolSettings {
            dir: None,
            max_bytes: DEFAULT_SPOOL_MAX_BYTES,
            fsync: FsyncPolicy::Interval,
            mode: SpoolMode::Disk,
        }
    }
}

/// HTTP request timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestSettings {
    /// Time to establish a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Time for one request, from sending to the response head.
    pub request_timeout: Duration,
}

impl Default for RequestSettings {
    fn default() -> Self {
        RequestSettings {
            connect_timeout: DEFAULT_TIMEOUT,
            request_timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Retry backoff: doubles from `initial_backoff` up to `max_backoff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySettings {
    /// Wait before the first retry.
    pub initial_backoff: Duration,
    /// Longest wait between retries.
    pub max_backoff: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

/// Batch mode: a JSON array of up to `size` events per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Events per request; 1 means no batching (one object per request).
    pub size: usize,
    /// Longest wait for a batch to fill.
    pub interval: Duration,
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            size: 1,
            interval: DEFAULT_BATCH_INTERVAL,
        }
    }
}

/// A secret that `Debug` does not print.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Request signing (HMAC-SHA256 of timestamp and body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignSettings {
    /// Key; `None`: requests are not signed.
    pub secret: Option<Secret>,
    /// Header carrying the signature.
    pub header: String,
}

impl Default for SignSettings {
    fn default() -> Self {
        SignSettings {
            secret: None,
            header: DEFAULT_SIGN_HEADER.to_owned(),
        }
    }
}

/// The whole WebHook configuration. `Default` is the WebHook turned off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Where requests go; `None`: the WebHook is off.
    pub url: Option<Endpoint>,
    /// Extra request headers, normalised, in configuration order; never
    /// `content-type`.
    pub headers: Vec<Header>,
    /// How message payloads are written.
    pub payload_encoding: PayloadEncoding,
    /// TLS for `https` URLs.
    pub tls: TlsSettings,
    /// Delivery lanes / HTTP connections.
    pub pool_size: usize,
    /// More than one request in flight per connection.
    pub enable_pipelining: bool,
    /// Which events are sent.
    pub rules: Rules,
    /// Which EMQX version's bodies.
    pub body_profile: Profile,
    /// `node` field of v4.4 bodies.
    pub node_name: String,
    /// The delivery queue.
    pub spool: SpoolSettings,
    /// HTTP timeouts.
    pub request: RequestSettings,
    /// Retry backoff.
    pub retry: RetrySettings,
    /// Events older than this are dropped instead of sent; `None`: never.
    pub max_event_age: Option<Duration>,
    /// Batch mode.
    pub batch: BatchSettings,
    /// Request signing.
    pub sign: SignSettings,
    /// Header carrying each event's unique id.
    pub event_id_header: String,
    /// Remarks to log at start-up ([`WebhookConfig::log_warnings`]).
    pub warnings: Vec<ConfWarning>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: None,
            headers: Vec::new(),
            payload_encoding: PayloadEncoding::Plain,
            tls: TlsSettings::default(),
            pool_size: DEFAULT_POOL_SIZE,
            enable_pipelining: true,
            rules: Rules::new(),
            body_profile: Profile::V4_0,
            node_name: DEFAULT_NODE_NAME.to_owned(),
            spool: SpoolSettings::default(),
            request: RequestSettings::default(),
            retry: RetrySettings::default(),
            max_event_age: None,
            batch: BatchSettings::default(),
            sign: SignSettings::default(),
            event_id_header: DEFAULT_EVENT_ID_HEADER.to_owned(),
            warnings: Vec::new(),
        }
    }
}

impl WebhookConfig {
    /// Reads and parses an `emqx_web_hook.conf` file.
    pub fn load(path: &Path) -> Result<WebhookConfig, ConfError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfError::Read {
            path: path.to_owned(),
            source,
        })?;
        WebhookConfig::parse(&text, &path.display().to_string())
    }

    /// Parses the text of an `emqx_web_hook.conf`; `source` (usually the
    /// file's path) is what errors and warnings name.
    pub fn parse(text: &str, source: &str) -> Result<WebhookConfig, ConfError> {
        let source: Arc<str> = source.into();
        let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
        let mut draft = Draft::default();
        for (n, line) in text.lines().enumerate() {
            let origin = Origin::at(source.clone(), u32::try_from(n + 1).unwrap_or(u32::MAX));
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(ConfError::Syntax {
                    origin,
                    text: line.to_owned(),
                });
            };
            let key = key.trim();
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(ConfError::Syntax {
                    origin,
                    text: line.to_owned(),
                });
            }
            draft.apply(key, value.trim(), origin)?;
        }
        draft.finish()
    }

    /// Builds the configuration from `(key, value, origin)` triples with
    /// the same keys and rules as the file (values are trimmed). Used for
    /// keys carried by Herald's own configuration.
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<WebhookConfig, ConfError>
    where
        I: IntoIterator<Item = (K, V, Origin)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut draft = Draft::default();
        for (key, value, origin) in pairs {
            draft.apply(key.as_ref().trim(), value.as_ref().trim(), origin)?;
        }
        draft.finish()
    }

    /// Whether the WebHook is on (a URL is configured).
    pub fn is_enabled(&self) -> bool {
        self.url.is_some()
    }

    /// Logs [`WebhookConfig::warnings`], one `warn` line each.
    pub fn log_warnings(&self) {
        for w in &self.warnings {
            tracing::warn!(origin = %w.origin, key = %w.key, "webhook configuration: {}", w.message);
        }
    }
}

/// A value with where it was set.
#[derive(Debug)]
struct Set<T> {
    /// The parsed value.
    value: T,
    /// Where it was set, for errors and warnings about it.
    origin: Origin,
    /// The key as written (an old name stays the old name).
    key: String,
}

/// One rule as configured, before deduplication.
#[derive(Debug)]
struct RuleEntry {
    /// The event of `web.hook.rule.<event>.<N>`.
    kind: EventKind,
    /// The rule's `topic`.
    topic: Option<String>,
    /// Where it was set.
    origin: Origin,
    /// The key as written (replacing by key: the last one wins).
    key: String,
}

/// Settings collected so far, one slot per key (an old name shares its new
/// name's slot); `None` means not set, so the default applies.
/// [`Draft::finish`] checks them as a whole.
#[derive(Debug, Default)]
struct Draft {
    url: Option<Set<Endpoint>>,
    headers: Vec<Set<Header>>,
    encoding: Option<Set<PayloadEncoding>>,
    cacertfile: Option<Set<Option<PathBuf>>>,
    certfile: Option<Set<Option<PathBuf>>>,
    keyfile: Option<Set<Option<PathBuf>>>,
    verify: Option<Set<bool>>,
    server_name: Option<Set<ServerName>>,
    pool_size: Option<Set<usize>>,
    pipelining: Option<Set<bool>>,
    rules: Vec<RuleEntry>,
    profile: Option<Set<Profile>>,
    node: Option<Set<String>>,
    spool_dir: Option<Set<Option<PathBuf>>>,
    spool_max_bytes: Option<Set<u64>>,
    spool_fsync: Option<Set<FsyncPolicy>>,
    spool_mode: Option<Set<SpoolMode>>,
    connect_timeout: Option<Set<Duration>>,
    request_timeout: Option<Set<Duration>>,
    initial_backoff: Option<Set<Duration>>,
    max_backoff: Option<Set<Duration>>,
    max_event_age: Option<Set<Option<Duration>>>,
    batch_size: Option<Set<usize>>,
    batch_interval: Option<Set<Duration>>,
    sign_secret: Option<Set<Option<Secret>>>,
    sign_header: Option<Set<String>>,
    event_id_header: Option<Set<String>>,
    warnings: Vec<ConfWarning>,
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

fn value_of<T: Clone>(slot: &Option<Set<T>>, default: T) -> T {
    slot.as_ref().map_or(default, |s| s.value.clone())
}

impl Draft {
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

    /// Checks the keys as a whole and builds the configuration.
    fn finish(mut self) -> Result<WebhookConfig, ConfError> {
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
            if let Some(at) = set.into_iter().flatten().max_by_key(|s| s.origin.line) {
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

/// The names of the thirteen events, for error messages.
fn event_names() -> String {
    EventKind::ALL
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn bad(value: &str, expected: &str) -> Problem {
    Problem::BadValue {
        value: value.to_owned(),
        expected: expected.to_owned(),
    }
}

/// A path; empty means unset.
fn path(value: &str) -> Option<PathBuf> {
    (!value.is_empty()).then(|| PathBuf::from(value))
}

fn boolean(value: &str) -> Result<bool, Problem> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad(value, "true or false")),
    }
}

fn integer(value: &str, min: u64, max: u64) -> Result<u64, Problem> {
    let expected = || bad(value, &format!("an integer from {min} to {max}"));
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(expected());
    }
    match value.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(expected()),
    }
}

/// A header name: lower-cased, `_` → `-`, an HTTP token.
fn header_name(name: &str) -> Option<String> {
    let name: String = name
        .chars()
        .map(|c| {
            if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    (!name.is_empty() && name.bytes().all(token)).then_some(name)
}

/// A positive duration: one or more `<integer><unit>` with units `ms`,
/// `s`, `m`, `h`, `d` (`500ms`, `5s`, `1m30s`).
fn duration(value: &str) -> Result<Duration, Problem> {
    let expected = || bad(value, "a positive duration such as 500ms, 5s, 2m or 1h");
    let mut total = Duration::ZERO;
    let mut rest = value;
    if rest.is_empty() {
        return Err(expected());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let n: u64 = number.parse().map_err(|_| expected())?;
        let part = match unit {
            "ms" => Some(Duration::from_millis(n)),
            "s" => Some(Duration::from_secs(n)),
            "m" => n.checked_mul(60).map(Duration::from_secs),
            "h" => n.checked_mul(3600).map(Duration::from_secs),
            "d" => n.checked_mul(86_400).map(Duration::from_secs),
            _ => None,
        }
        .ok_or_else(expected)?;
        total = total.checked_add(part).ok_or_else(expected)?;
        rest = tail;
    }
    if total.is_zero() {
        return Err(expected());
    }
    Ok(total)
}

/// A positive size in bytes: an integer with an optional unit `B`, `KB`,
/// `MB`, `GB` (also `K`, `KiB`, ...; all 1024-based, case-insensitive).
fn size(value: &str) -> Result<u64, Problem> {
    let expected = || bad(value, "a positive size such as 1048576, 512MB or 1GB");
    let digits = value.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = value.split_at(digits);
    let n: u64 = number.parse().map_err(|_| expected())?;
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(expected()),
    };
    match n.checked_mul(factor) {
        Some(bytes) if bytes > 0 => Ok(bytes),
        _ => Err(expected()),
    }
}
