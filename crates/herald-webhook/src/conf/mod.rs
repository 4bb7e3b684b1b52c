//! The WebHook's configuration: an EMQX 4.x `emqx_web_hook.conf`
//! (`key = value` lines, `#` comments) read unchanged, plus Herald's own
//! keys under `web.hook.` (`docs/webhook.md` §1).
//!
//! The entry points share one implementation: [`WebhookConfig::parse`] /
//! [`WebhookConfig::load`] for the file, [`WebhookConfig::from_pairs`]
//! for keys that come from elsewhere (Herald's TOML `[webhook]` table,
//! environment variables), each pair carrying the [`Origin`] to name in
//! errors, and [`WebhookConfig::load_with`] for a file with such pairs
//! over it. Each returns a complete configuration or the first error,
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
//! # Layout
//!
//! - this file: the settings types, the defaults and the entry points;
//! - [`tokenizer`]: the `key = value` line format, with file and line;
//! - `keys`: each key's value into its slot (the table below, as code);
//! - `assemble`: the checks over keys as a whole, and the final
//!   [`WebhookConfig`];
//! - `values`: parsers of booleans, integers, durations, sizes, header
//!   names;
//! - `error`: [`Origin`], [`ConfError`], [`Problem`], [`ConfWarning`].
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
//! | `web.hook.enable_pipelining` | `true` \| `false` (accepted, does nothing) | `true` |
//! | `web.hook.rule.<event>.<N>` | `{"action": "on_<event>", "topic": "<filter>"}` | |
//!
//! Herald's keys (durations: `500ms`, `5s`, `2m`, `1h`, `1m30s`; sizes:
//! bytes, or with `KB`/`MB`/`GB`, 1024-based):
//!
//! | key | values | default |
//! |---|---|---|
//! | `web.hook.body.profile` | `v4.0` \| `v4.4` | `v4.0` |
//! | `web.hook.node` | node name for v4.4's `node` field | `herald@127.0.0.1` |
//! | `web.hook.delivery_threads` | 1 … 256 | `1` |
//! | `web.hook.delivery_nice` | 0 … 19 | `10` |
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

mod assemble;
mod error;
mod keys;
pub mod tokenizer;
mod values;

pub use error::{ConfError, ConfWarning, Origin, Problem};
pub use tokenizer::Entry;

use crate::body::Profile;
use crate::endpoint::Endpoint;
use crate::payload::PayloadEncoding;
use crate::rules::Rules;
use keys::Draft;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default `web.hook.pool_size`.
pub const DEFAULT_POOL_SIZE: usize = 32;
/// Largest `web.hook.pool_size`.
pub const MAX_POOL_SIZE: usize = 4096;
/// Largest `web.hook.delivery_threads`.
pub const MAX_DELIVERY_THREADS: usize = 256;
/// Default `web.hook.delivery_nice`.
pub const DEFAULT_DELIVERY_NICE: u8 = 10;
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
    /// Threads the lanes run on (apart from the broker's).
    pub delivery_threads: usize,
    /// How many nice steps below MQTT's the delivery threads run.
    pub delivery_nice: u8,
    /// `web.hook.enable_pipelining`: accepted for EMQX files and ignored
    /// (a lane has one request in flight at a time).
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
            delivery_threads: 1,
            delivery_nice: DEFAULT_DELIVERY_NICE,
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
        WebhookConfig::load_with(path, std::iter::empty::<(&str, &str, Origin)>())
    }

    /// Reads an `emqx_web_hook.conf` file and applies `overrides` after its
    /// last line, as [`WebhookConfig::from_pairs`] would: a key set in both
    /// takes the override's value, with a warning naming both places.
    pub fn load_with<I, K, V>(path: &Path, overrides: I) -> Result<WebhookConfig, ConfError>
    where
        I: IntoIterator<Item = (K, V, Origin)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let text = tokenizer::read(path)?;
        let mut draft = Draft::default();
        draft.apply_text(&text, &path.display().to_string())?;
        draft.apply_pairs(overrides)?;
        draft.finish()
    }

    /// Parses the text of an `emqx_web_hook.conf`; `source` (usually the
    /// file's path) is what errors and warnings name.
    pub fn parse(text: &str, source: &str) -> Result<WebhookConfig, ConfError> {
        let mut draft = Draft::default();
        draft.apply_text(text, source)?;
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
        draft.apply_pairs(pairs)?;
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
