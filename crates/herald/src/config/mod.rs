//! `HeraldConfig`: everything `herald.toml` may say, assembled from the
//! settings of each part Herald runs, and loaded from defaults ← file ←
//! `HERALD_<SECTION>__<KEY>` variables ← command-line flags.
//!
//! # Layout
//!
//! - `mod.rs` (this file): the document type [`HeraldConfig`], the flags
//!   that override it, and its checks.
//! - [`layers`]: the engine that builds any document from its sources and
//!   remembers which source set each key; it knows no setting.
//! - [`webhook_value`]: the values of the `[webhook]` table.
//!
//! # Where a section goes
//!
//! A section lives with the code that reads it; the file's format does not
//! change with where a section is declared.
//!
//! - **The broker's settings** (`data_dir`, `[listener]`, `[mqtt]`, `[sys]`,
//!   `[authz]`, `[metrics]`) are `herald_broker::config::Config`, embedded
//!   whole as [`HeraldConfig::broker`]. A section the broker reads is
//!   added there (a field, its line in `Config::KEYS` and `Config::read_key`)
//!   and needs nothing here: access control (`[auth]`, `[acl]`, issue 14),
//!   durable state (`[persistence]`, issue 16). Listener kinds are fields of
//!   the broker's `ListenerConfig`, so `[listener.tls]`, `[listener.ws]` and
//!   `[listener.wss]` (issue 15) nest inside `[listener]` as TOML shows them.
//! - **Settings of other parts** are fields of [`HeraldConfig`] next to
//!   `broker`: the WebHook's (`webhook_conf`, `[webhook]`), and what only
//!   the binary uses, such as logging (`[log]`, issue 18). Adding one: a
//!   field with its default, its name in [`OWN_KEYS`], one arm in
//!   `HeraldConfig`'s `Deserialize`, and its checks in
//!   [`HeraldConfig::validate`].
//!
//! Either way, `HERALD_<SECTION>__<KEY>` overrides and error messages that
//! name the file's line come for free from [`layers`], and
//! `etc/herald.toml` must show the new keys (a test checks it).

pub mod layers;
pub mod webhook_value;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use anyhow::anyhow;
use herald_broker::config::{Config, ConfigError, ConfigPath};
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

pub use layers::{CONFIG_FILE_ENV, ENV_PREFIX};
pub use webhook_value::WebhookValue;

/// A loaded [`HeraldConfig`] with the source of each key.
pub type Loaded = layers::Loaded<HeraldConfig>;

/// Everything Herald can be told at start-up: the broker's settings and
/// those of the parts around it. In TOML all of them are top-level keys
/// and sections of one document; unknown keys are an error.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HeraldConfig {
    /// The broker's settings: every top-level key in `Config::KEYS`.
    #[serde(flatten)]
    pub broker: Config,
    /// `webhook_conf`: path of an EMQX 4.x `emqx_web_hook.conf`; `None`
    /// runs without the WebHook (unless `[webhook]` sets `url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_conf: Option<ConfigPath>,
    /// `[webhook]`: WebHook settings under their EMQX names, with or without
    /// the `web.hook.` prefix (`url`, `"web.hook.url"`, `ssl.verify`,
    /// `[webhook.headers]`, ...), merged over the keys of `webhook_conf`.
    /// Only carried here; the WebHook's own parser checks them.
    pub webhook: BTreeMap<String, WebhookValue>,
    /// `[log]`: what the broker logs beyond errors and warnings.
    pub log: LogConfig,
}

/// `[log]`: what is logged. (The level and the targets follow `RUST_LOG`.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// One INFO line per client connect and disconnect (client id, address,
    /// protocol, reason). A client that breaks the protocol is logged
    /// whatever this says.
    pub connections: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { connections: true }
    }
}

/// The top-level keys [`HeraldConfig`] reads itself, in declaration order;
/// every other known key is the broker's.
pub const OWN_KEYS: &[&str] = &["webhook_conf", "webhook", "log"];

/// Every top-level key of the document: the broker's, then [`OWN_KEYS`].
static ALL_KEYS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    Config::KEYS
        .iter()
        .chain(OWN_KEYS)
        .copied()
        .collect::<Vec<_>>()
});

impl HeraldConfig {
    /// Checks the rules types alone cannot express, the broker's first; the
    /// first broken one is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.broker.validate()?;
        if let Some(path) = &self.webhook_conf
            && path.as_os_str().is_empty()
        {
            return Err(ConfigError::Invalid {
                key: "webhook_conf",
                value: "\"\"".into(),
                reason: "must not be empty".into(),
            });
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for HeraldConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(DocumentVisitor)
    }
}

/// Reads the document key by key: its own keys into their fields, the
/// broker's through `Config::read_key`. Values are read straight from the
/// deserializer (no buffering, unlike `#[serde(flatten)]`), so errors keep
/// the line and column of the file.
struct DocumentVisitor;

impl<'de> Visitor<'de> for DocumentVisitor {
    type Value = HeraldConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table of settings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HeraldConfig, A::Error> {
        let mut config = HeraldConfig::default();
        while let Some(key) = map.next_key_seed(KnownKey)? {
            match key {
                "webhook_conf" => config.webhook_conf = map.next_value()?,
                "webhook" => config.webhook = map.next_value()?,
                "log" => config.log = map.next_value()?,
                broker_key => {
                    if !config.broker.read_key(broker_key, &mut map)? {
                        return Err(de::Error::unknown_field(broker_key, ALL_KEYS.as_slice()));
                    }
                }
            }
        }
        Ok(config)
    }
}

/// A top-level key, refused while it is being read when unknown, so the
/// error points at the key in the file, as a derived `Deserialize` does.
struct KnownKey;

impl<'de> DeserializeSeed<'de> for KnownKey {
    type Value = &'static str;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<&'static str, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for KnownKey {
    type Value = &'static str;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a setting's name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<&'static str, E> {
        ALL_KEYS
            .iter()
            .find(|known| **known == key)
            .copied()
            .ok_or_else(|| E::unknown_field(key, ALL_KEYS.as_slice()))
    }
}

/// The settings that have their own command-line flag; they win over the
/// file and the environment.
#[derive(Clone, Debug, Default)]
pub struct Flags {
    /// `--listen`, replacing `listener.bind` when given at least once.
    pub listen: Vec<SocketAddr>,
    /// `--listen-tls`, replacing `listener.tls.bind` when given.
    pub listen_tls: Vec<SocketAddr>,
    /// `--listen-ws`, replacing `listener.ws.bind` when given.
    pub listen_ws: Vec<SocketAddr>,
    /// `--listen-wss`, replacing `listener.wss.bind` when given.
    pub listen_wss: Vec<SocketAddr>,
    /// `--data-dir`, replacing `data_dir`.
    pub data_dir: Option<PathBuf>,
    /// `--webhook-conf`, replacing `webhook_conf`.
    pub webhook_conf: Option<PathBuf>,
}

/// Loads the configuration: defaults ← `file` ← `HERALD_*` variables in
/// `env` ← `flags`. `env` is normally `std::env::vars_os()`.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (OsString, OsString)>,
    flags: &Flags,
) -> anyhow::Result<Loaded> {
    layers::load(file, env).map(|loaded| with_flags(loaded, flags))
}

/// [`load`] with the file's contents already read.
pub fn load_from(
    file: Option<(&Path, &str)>,
    env: impl IntoIterator<Item = (OsString, OsString)>,
    flags: &Flags,
) -> anyhow::Result<Loaded> {
    layers::load_from(file, env).map(|loaded| with_flags(loaded, flags))
}

/// Applies the command-line flags, the last and strongest source.
fn with_flags(mut loaded: Loaded, flags: &Flags) -> Loaded {
    let listener = &mut loaded.config.broker.listener;
    let binds = [
        (
            &flags.listen,
            &mut listener.bind,
            "listener.bind",
            "--listen",
        ),
        (
            &flags.listen_tls,
            &mut listener.tls.bind,
            "listener.tls.bind",
            "--listen-tls",
        ),
        (
            &flags.listen_ws,
            &mut listener.ws.bind,
            "listener.ws.bind",
            "--listen-ws",
        ),
        (
            &flags.listen_wss,
            &mut listener.wss.bind,
            "listener.wss.bind",
            "--listen-wss",
        ),
    ];
    let mut set = Vec::new();
    for (given, bind, key, flag) in binds {
        if !given.is_empty() {
            bind.clone_from(given);
            set.push((key, flag));
        }
    }
    for (key, flag) in set {
        loaded.set_by(key, flag);
    }
    if let Some(dir) = &flags.data_dir {
        loaded.config.broker.data_dir = dir.clone().into();
        loaded.set_by("data_dir", "--data-dir");
    }
    if let Some(conf) = &flags.webhook_conf {
        loaded.config.webhook_conf = Some(conf.clone().into());
        loaded.set_by("webhook_conf", "--webhook-conf");
    }
    loaded
}

impl Loaded {
    /// Runs [`HeraldConfig::validate`], adding to its message which source
    /// set the offending key.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.config
            .validate()
            .map_err(|err| match self.source_of(err.key()) {
                Some(source) => anyhow!("{err} (set by {source})"),
                None => anyhow!(err),
            })
    }
}
