//! The broker's settings: what `herald.toml` may say, the defaults used when it
//! says nothing, and the checks a loaded configuration must pass.
//!
//! Every setting is a plain value (seconds as integers, sizes in bytes) so the
//! same names work in TOML and in `HERALD_<SECTION>__<KEY>` environment
//! overrides; accessors turn them into `Duration`s where that helps. Every
//! default works on a laptop. This module never reads files or the
//! environment: loading belongs to the binary, which hands over a `Config`.
//!
//! `Config` holds the broker's settings only. The binary's configuration
//! file also carries settings of other parts (the WebHook, logging); the
//! binary's own document type embeds this one and reads its top-level keys
//! through [`Config::KEYS`] and [`Config::read_key`], so a section added
//! here (a field, its line in `KEYS` and in `read_key`) appears in the file
//! without the binary changing.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde::de::{self, MapAccess};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::config_path::ConfigPath;
use crate::router::valid_topic_filter;
pub use crate::transport::config::{
    PeerCertAsUsername, TlsListenerConfig, TlsSettings, WsListenerConfig, WssListenerConfig,
};
use crate::transport::config::{validate_header_name, validate_ws_path};

/// The largest packet MQTT can express: the Remaining Length is a variable
/// byte integer of at most four bytes.
pub const MAX_PACKET_SIZE_LIMIT: u32 = 268_435_455;

/// What a deny-list entry breaks when it is not a topic filter.
const TOPIC_FILTER_RULE: &str = "not a topic filter (1 to 65535 bytes, no NUL, \
    '+' and '#' only as whole levels, '#' only last)";

/// Everything the broker can be told at start-up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory for state that outlives the process (spools of the parts
    /// attached to the broker, later persisted sessions). Relative: to the
    /// config file's folder when the file sets it, else to the working
    /// directory (see [`ConfigPath`]).
    pub data_dir: ConfigPath,
    /// Where and how many clients may connect.
    pub listener: ListenerConfig,
    /// Protocol limits and the capabilities the broker announces to clients.
    pub mqtt: MqttConfig,
    /// Publishing of broker statistics under `$SYS/`.
    pub sys: SysConfig,
    /// Limits of the retained-message store.
    pub retained: RetainedConfig,
    /// Topics off limits to every client (and the old place of
    /// `allow_anonymous`).
    pub authz: AuthzConfig,
    /// `[auth]`: who may connect.
    pub auth: AuthConfig,
    /// `[acl]`: what a connected client may publish, subscribe to, receive.
    pub acl: AclConfig,
    /// The Prometheus `/metrics` endpoint.
    pub metrics: MetricsConfig,
    /// What of the broker's state is kept on disk, and when it is written.
    pub persistence: PersistenceConfig,
}

impl Config {
    /// The top-level keys of a `Config` in TOML, in declaration order.
    pub const KEYS: &'static [&'static str] = &[
        "data_dir",
        "listener",
        "mqtt",
        "sys",
        "retained",
        "authz",
        "auth",
        "acl",
        "metrics",
        "persistence",
    ];

    /// Reads the value of the top-level key `key` from `map` into its
    /// field, for a document that embeds the broker's settings among its own
    /// (the binary's configuration). Returns `Ok(false)`, reading nothing,
    /// when `key` is not one of [`Config::KEYS`]. Errors carry the position
    /// the deserializer gives the value, as a derived `Deserialize` would.
    pub fn read_key<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        match key {
            "data_dir" => self.data_dir = map.next_value()?,
            "listener" => self.listener = map.next_value()?,
            "mqtt" => self.mqtt = map.next_value()?,
            "sys" => self.sys = map.next_value()?,
            "retained" => self.retained = map.next_value()?,
            "authz" => self.authz = map.next_value()?,
            "auth" => self.auth = map.next_value()?,
            "acl" => self.acl = map.next_value()?,
            "metrics" => self.metrics = map.next_value()?,
            "persistence" => self.persistence = map.next_value()?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// `[metrics]`: where Prometheus text is served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the HTTP listener serving `GET /metrics`; `None` (written
    /// `""`) serves nothing. Loopback by default, so nothing is exposed
    /// beyond the machine unless asked.
    #[serde(with = "optional_addr")]
    pub bind: Option<SocketAddr>,
}

/// Default `metrics.bind`: loopback, the port Prometheus exporters of the
/// OpenTelemetry family use.
pub const DEFAULT_METRICS_BIND: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9464);

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            bind: Some(DEFAULT_METRICS_BIND),
        }
    }
}

/// `Option<SocketAddr>` as a string, `""` meaning `None` (TOML has no null).
mod optional_addr {
    use super::*;

    pub fn serialize<S: Serializer>(addr: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match addr {
            Some(addr) => s.collect_str(addr),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(de::Error::custom)
    }
}

/// `[listener]`: where clients connect: plain TCP here, TLS, WebSocket and
/// secure WebSocket in the sub-sections; limits common to all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerConfig {
    /// Addresses to accept MQTT over TCP on; each gets its own accept loop.
    /// `[::]:PORT` accepts IPv6 and (where the OS allows) IPv4 too.
    pub bind: Vec<SocketAddr>,
    /// Whether each TCP connection starts with a PROXY protocol (v1 or v2)
    /// header whose source address is the client's (behind HAProxy, nginx,
    /// a cloud load balancer); connections without a valid one are closed.
    pub proxy_protocol: bool,
    /// Connections open at once across all listeners; further ones are
    /// closed right after accept so a flood cannot exhaust file descriptors.
    pub max_connections: u32,
    /// Seconds a new connection may take to send CONNECT before it is closed,
    /// so idle sockets cannot hold connection slots. The PROXY header and
    /// the TLS and WebSocket handshakes count against the same time.
    pub connect_timeout: u32,
    /// Largest CONNECT packet in bytes: what a connection may make the
    /// broker buffer before it is accepted. A bigger one closes the
    /// connection as soon as its length is read, so unauthenticated
    /// clients cannot hold megabytes each. At least 64.
    pub max_connect_size: u32,
    /// Seconds between checks of the TLS listeners' certificate, key and CA
    /// files: when one changed (time or size), they are read again as on
    /// SIGHUP. 0: only on SIGHUP.
    pub certificate_check_interval: u32,
    /// MQTT over TLS.
    pub tls: TlsListenerConfig,
    /// MQTT over WebSocket.
    pub ws: WsListenerConfig,
    /// MQTT over secure WebSocket.
    pub wss: WssListenerConfig,
}

/// `[mqtt]`: protocol limits. Values announced in CONNACK (MQTT 5.0) are the
/// same ones the broker enforces for every protocol version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Largest packet in bytes the broker accepts (and announces as Maximum
    /// Packet Size); bigger packets close the connection. 1..=268435455.
    pub max_packet_size: u32,
    /// Cap on Keep Alive in seconds; 0 means not enforced. Otherwise a 5.0
    /// client asking for more, or for 0 (none), is given this value as Server
    /// Keep Alive.
    pub max_keepalive: u16,
    /// How many QoS 1 and 2 PUBLISHes a client may have unacknowledged towards
    /// the broker (announced as Receive Maximum). At least 1.
    pub receive_maximum: u16,
    /// Per-session window of unacknowledged QoS 1 and 2 messages towards the
    /// client; a 5.0 client's smaller Receive Maximum wins. At least 1.
    pub max_inflight: u16,
    /// Messages held per session beyond the inflight window, while it is
    /// offline or slow; when full, new messages for it are dropped and counted.
    pub max_queued_messages: u32,
    /// Bytes (topic, payload and properties of each message) held per
    /// session beyond the inflight window; with `max_queued_messages`,
    /// whichever is reached first drops new messages for the session.
    pub max_queued_bytes: u64,
    /// Incoming QoS 2 messages a 3.1/3.1.1 client may leave awaiting
    /// PUBREL (5.0 clients are held to `receive_maximum` instead, which
    /// they are told); one more closes the connection and is counted.
    /// At least 1.
    pub max_awaiting_rel: u32,
    /// Whether QoS 0 messages are queued for offline sessions (true) or only
    /// delivered to connected clients (false).
    pub queue_qos0: bool,
    /// Longest Session Expiry Interval in seconds a client may ask for;
    /// 4294967295 means sessions may live for ever. Also the lifetime of 3.1.1
    /// sessions with Clean Session = 0.
    pub max_session_expiry: u32,
    /// Topic aliases a 5.0 client may use towards the broker (announced as
    /// Topic Alias Maximum); 0 disables them.
    pub topic_alias_maximum: u16,
    /// Highest QoS the broker grants (announced as Maximum QoS): 0, 1 or 2.
    pub max_qos: u8,
    /// Whether retained messages are stored and delivered (Retain Available).
    pub retain_available: bool,
    /// Whether `+` and `#` are accepted in subscriptions (Wildcard
    /// Subscription Available).
    pub wildcard_subscription_available: bool,
    /// Whether `$share/<group>/<filter>` subscriptions are accepted (Shared
    /// Subscription Available).
    pub shared_subscription_available: bool,
    /// Whether 5.0 Subscription Identifiers are accepted and sent back
    /// (Subscription Identifiers Available).
    pub subscription_identifiers_available: bool,
    /// Whether a client may connect with an empty Client Identifier and be
    /// given one by the broker; if false such CONNECTs are refused.
    pub allow_zero_length_client_id: bool,
}

/// `[sys]`: broker statistics under `$SYS/`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SysConfig {
    /// Seconds between `$SYS/` publications; 0 disables them.
    pub interval: u32,
    /// Client ids allowed to publish under `$SYS/` (a bridge forwarding
    /// another broker's statistics, say). Everyone else is refused: a 5.0
    /// QoS 1/2 PUBLISH gets reason 0x87, others are dropped; both counted
    /// as dropped, not authorized.
    pub allowed_publishers: Vec<String>,
}

/// `[retained]`: limits of the retained-message store. A retained message
/// over a limit is still delivered to current subscribers but not stored;
/// it is counted (`herald_retained_refused_total`) and logged at most
/// once per 10 seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetainedConfig {
    /// Most retained messages stored (topics). Replacing one on a topic
    /// that has one always fits this limit.
    pub max_messages: u64,
    /// Most bytes (topic, payload, properties) stored in all.
    pub max_bytes: u64,
    /// Largest payload in bytes a retained message may have to be stored.
    pub max_payload_size: u32,
}

/// `[persistence]`: the broker's state on disk (`<data_dir>/broker/`): see
/// [`crate::store`] for what is kept and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PersistenceConfig {
    /// When state reaches the disk.
    pub durability: Durability,
    /// Seconds between snapshots under `durability = "periodic"` (unused
    /// otherwise).
    pub interval: u64,
}

/// `persistence.durability`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Every change is written (group commit, fsync) before a QoS 1/2
    /// publisher is acknowledged: nothing acknowledged is lost.
    Ack,
    /// The whole state is written every `interval` seconds and at a
    /// clean stop: a crash loses what changed since the last snapshot.
    Periodic,
    /// Memory only: a restart loses everything.
    Off,
}

impl Default for PersistenceConfig {
    fn default() -> Self {
        Self {
            durability: Durability::Ack,
            interval: 60,
        }
    }
}

/// `[authz]`: a deliberately small authorisation model.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthzConfig {
    /// Topic filters no client may publish to: a PUBLISH whose topic matches
    /// any of them is refused.
    pub deny_publish: Vec<String>,
    /// Topic filters no client may subscribe to: a subscription whose filter
    /// is matched by any of them is refused.
    pub deny_subscribe: Vec<String>,
    /// Old name of `auth.allow_anonymous`, still honoured when that is not
    /// set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_anonymous: Option<bool>,
}

/// `[auth]`: authentication. The sources are asked in order (password
/// file, then HTTP); a client no source knows is anonymous.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Whether clients no source authenticated may connect. Unset: `false`
    /// when a source is configured; with none, only from loopback
    /// addresses (mosquitto 2.0's "local only" default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_anonymous: Option<bool>,
    /// A password file in mosquitto_passwd's format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<ConfigPath>,
    /// An EMQX 4.x `emqx_auth_http.conf`, read unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_conf: Option<ConfigPath>,
}

/// `[acl]`: access rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AclConfig {
    /// A mosquitto `acl_file` or an EMQX 4.x `acl.conf` (told apart by
    /// their content).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<ConfigPath>,
    /// What applies when no rule matches.
    pub nomatch: Nomatch,
    /// What a refused PUBLISH does to the connection (EMQX's
    /// `acl_deny_action`).
    pub deny_action: DenyAction,
    /// Seconds an ACL answer of the HTTP source is kept per client and
    /// topic; 0 asks every time.
    pub cache_ttl: u32,
}

impl Default for AclConfig {
    fn default() -> Self {
        Self {
            file: None,
            nomatch: Nomatch::Allow,
            deny_action: DenyAction::Ignore,
            cache_ttl: 60,
        }
    }
}

/// `acl.nomatch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Nomatch {
    /// Allowed when no rule matches.
    Allow,
    /// Refused when no rule matches.
    Deny,
}

/// `acl.deny_action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DenyAction {
    /// Refuse the PUBLISH (5.0: PUBACK/PUBREC 0x87; 3.x: dropped).
    Ignore,
    /// Refuse it and close the connection (5.0: DISCONNECT 0x87 first).
    Disconnect,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: ConfigPath::from("./data"),
            listener: ListenerConfig::default(),
            mqtt: MqttConfig::default(),
            sys: SysConfig::default(),
            retained: RetainedConfig::default(),
            authz: AuthzConfig::default(),
            auth: AuthConfig::default(),
            acl: AclConfig::default(),
            metrics: MetricsConfig::default(),
            persistence: PersistenceConfig::default(),
        }
    }
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            bind: vec![SocketAddr::from((Ipv6Addr::UNSPECIFIED, 1883))],
            proxy_protocol: false,
            max_connections: 100_000,
            connect_timeout: 10,
            max_connect_size: 64 * 1024,
            certificate_check_interval: 10,
            tls: TlsListenerConfig::default(),
            ws: WsListenerConfig::default(),
            wss: WssListenerConfig::default(),
        }
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            max_packet_size: 1024 * 1024,
            max_keepalive: 0,
            receive_maximum: 128,
            max_inflight: 128,
            max_queued_messages: 1000,
            max_queued_bytes: 16 * 1024 * 1024,
            max_awaiting_rel: 1000,
            queue_qos0: true,
            max_session_expiry: 7200,
            topic_alias_maximum: 32,
            max_qos: 2,
            retain_available: true,
            wildcard_subscription_available: true,
            shared_subscription_available: true,
            subscription_identifiers_available: true,
            allow_zero_length_client_id: true,
        }
    }
}

impl Default for SysConfig {
    fn default() -> Self {
        Self {
            interval: 10,
            allowed_publishers: Vec::new(),
        }
    }
}

impl Default for RetainedConfig {
    fn default() -> Self {
        Self {
            max_messages: 1_000_000,
            max_bytes: 256 * 1024 * 1024,
            max_payload_size: 1024 * 1024,
        }
    }
}

/// A setting that deserialized but makes no sense.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `key` holds `value`, which breaks the rule in `reason`.
    #[error("{key} = {value}: {reason}")]
    Invalid {
        /// Dotted TOML path of the setting, e.g. `mqtt.max_qos`.
        key: &'static str,
        /// The offending value as it would be written in TOML (for a list,
        /// the offending entry).
        value: String,
        /// The rule it breaks.
        reason: String,
    },
}

impl ConfigError {
    /// Dotted TOML path of the setting at fault, e.g. `mqtt.max_qos`.
    pub fn key(&self) -> &'static str {
        match self {
            Self::Invalid { key, .. } => key,
        }
    }
}

/// Shorthand for building [`ConfigError::Invalid`].
fn invalid(key: &'static str, value: impl ToString, reason: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

impl Config {
    /// Checks the rules types alone cannot express; the first broken one is
    /// returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "\"\"", "must not be empty"));
        }
        self.listener.validate()?;
        self.mqtt.validate()?;
        if self.persistence.durability == Durability::Periodic && self.persistence.interval == 0 {
            return Err(invalid(
                "persistence.interval",
                0,
                "must be at least 1 second with durability = \"periodic\"",
            ));
        }
        self.authz.validate()
    }
}

impl ListenerConfig {
    /// How long a connection may stay without CONNECT.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.connect_timeout))
    }

    /// How often the certificate files are checked for changes; `None`:
    /// never.
    pub fn certificate_check_interval(&self) -> Option<Duration> {
        (self.certificate_check_interval > 0)
            .then(|| Duration::from_secs(u64::from(self.certificate_check_interval)))
    }

    /// Checks the `[listener]` section and its sub-sections.
    fn validate(&self) -> Result<(), ConfigError> {
        let all = [
            ("listener.bind", &self.bind),
            ("listener.tls.bind", &self.tls.bind),
            ("listener.ws.bind", &self.ws.bind),
            ("listener.wss.bind", &self.wss.bind),
        ];
        if all.iter().all(|(_, binds)| binds.is_empty()) {
            return Err(invalid(
                "listener.bind",
                "[]",
                "at least one address is required (here or in listener.tls.bind, \
                 listener.ws.bind, listener.wss.bind)",
            ));
        }
        let mut seen = Vec::new();
        for (key, binds) in all {
            for addr in binds.iter() {
                if addr.port() != 0 && seen.contains(addr) {
                    return Err(invalid(key, format!("\"{addr}\""), "listed more than once"));
                }
                seen.push(*addr);
            }
        }
        if self.max_connections == 0 {
            return Err(invalid("listener.max_connections", 0, "must be at least 1"));
        }
        if self.connect_timeout == 0 {
            return Err(invalid(
                "listener.connect_timeout",
                0,
                "must be at least 1 second",
            ));
        }
        if self.max_connect_size < 64 {
            return Err(invalid(
                "listener.max_connect_size",
                self.max_connect_size,
                "must be at least 64",
            ));
        }
        if !self.tls.bind.is_empty() {
            self.tls.settings().validate()?;
        }
        if !self.wss.bind.is_empty() {
            self.wss.settings(&self.tls).validate()?;
        }
        validate_ws_path("listener.ws.path", &self.ws.path)?;
        validate_ws_path("listener.wss.path", &self.wss.path)?;
        validate_header_name(
            "listener.ws.proxy_address_header",
            &self.ws.proxy_address_header,
        )?;
        validate_header_name(
            "listener.wss.proxy_address_header",
            &self.wss.proxy_address_header,
        )
    }
}

impl MqttConfig {
    /// The Keep Alive cap, or `None` when not enforced.
    pub fn max_keepalive(&self) -> Option<Duration> {
        (self.max_keepalive != 0).then(|| Duration::from_secs(u64::from(self.max_keepalive)))
    }

    /// Checks the `[mqtt]` section.
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_PACKET_SIZE_LIMIT).contains(&self.max_packet_size) {
            return Err(invalid(
                "mqtt.max_packet_size",
                self.max_packet_size,
                format!("must be between 1 and {MAX_PACKET_SIZE_LIMIT}"),
            ));
        }
        if self.receive_maximum == 0 {
            return Err(invalid("mqtt.receive_maximum", 0, "must be at least 1"));
        }
        if self.max_inflight == 0 {
            return Err(invalid("mqtt.max_inflight", 0, "must be at least 1"));
        }
        if self.max_awaiting_rel == 0 {
            return Err(invalid("mqtt.max_awaiting_rel", 0, "must be at least 1"));
        }
        if self.max_qos > 2 {
            return Err(invalid("mqtt.max_qos", self.max_qos, "must be 0, 1 or 2"));
        }
        Ok(())
    }
}

impl SysConfig {
    /// Time between `$SYS/` publications, or `None` when disabled.
    pub fn interval(&self) -> Option<Duration> {
        (self.interval != 0).then(|| Duration::from_secs(u64::from(self.interval)))
    }
}

impl Config {
    /// Whether an authentication source is configured.
    pub fn has_auth_sources(&self) -> bool {
        self.auth.password_file.is_some() || self.auth.http_conf.is_some()
    }

    /// Who may connect unauthenticated: `auth.allow_anonymous`, else the
    /// old `authz.allow_anonymous`, else `Deny` when a source is configured
    /// and loopback only when none is.
    pub fn anonymous(&self) -> crate::access::Anonymous {
        use crate::access::Anonymous;
        match self.auth.allow_anonymous.or(self.authz.allow_anonymous) {
            Some(true) => Anonymous::Allow,
            Some(false) => Anonymous::Deny,
            None if self.has_auth_sources() => Anonymous::Deny,
            None => Anonymous::LoopbackOnly,
        }
    }
}

impl AuthzConfig {
    /// Checks the `[authz]` section: every entry must be a valid topic filter.
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, filters) in [
            ("authz.deny_publish", &self.deny_publish),
            ("authz.deny_subscribe", &self.deny_subscribe),
        ] {
            if let Some(bad) = filters.iter().find(|f| !valid_topic_filter(f)) {
                return Err(invalid(key, format!("{bad:?}"), TOPIC_FILTER_RULE));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_text(config: &Config) -> String {
        match config.validate() {
            Ok(()) => String::from("valid"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn empty_toml_gives_defaults() {
        let parsed: Config = toml::from_str("").expect("empty document");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let text = toml::to_string(&Config::default()).expect("serializable");
        let parsed: Config = toml::from_str(&text).expect("parses back");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn partial_section_keeps_other_defaults() {
        let parsed: Config = toml::from_str("[mqtt]\nmax_inflight = 64\n").expect("valid");
        assert_eq!(parsed.mqtt.max_inflight, 64);
        assert_eq!(parsed.mqtt.receive_maximum, 128);
        assert_eq!(parsed.listener, ListenerConfig::default());
    }

    #[test]
    fn metrics_bind_defaults_to_loopback_and_empty_turns_it_off() {
        assert_eq!(
            Config::default().metrics.bind,
            Some("127.0.0.1:9464".parse().expect("address"))
        );
        let parsed: Config = toml::from_str("[metrics]\nbind = \"\"\n").expect("valid");
        assert_eq!(parsed.metrics.bind, None);
        let parsed: Config = toml::from_str("[metrics]\nbind = \"[::1]:9000\"\n").expect("valid");
        assert_eq!(
            parsed.metrics.bind,
            Some("[::1]:9000".parse().expect("address"))
        );
        let err = toml::from_str::<Config>("[metrics]\nbind = \"nowhere\"\n").expect_err("bad");
        assert!(err.message().contains("invalid socket address"), "{err}");
        let text = toml::to_string(&Config {
            metrics: MetricsConfig { bind: None },
            ..Config::default()
        })
        .expect("serializable");
        let back: Config = toml::from_str(&text).expect("parses back");
        assert_eq!(back.metrics.bind, None);
    }

    #[test]
    fn keys_are_the_serialized_top_level_keys() {
        let table = toml::Table::try_from(Config::default()).expect("serializable");
        let mut serialized: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut keys = Config::KEYS.to_vec();
        serialized.sort_unstable();
        keys.sort_unstable();
        assert_eq!(keys, serialized);
    }

    /// A document embedding the broker's settings next to a key of its own,
    /// as the binary's configuration does.
    #[derive(Debug, Default)]
    struct Embedding {
        own: Option<i64>,
        broker: Config,
    }

    impl<'de> Deserialize<'de> for Embedding {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> de::Visitor<'de> for V {
                type Value = Embedding;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a table")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Embedding, A::Error> {
                    let mut out = Embedding::default();
                    while let Some(key) = map.next_key::<String>()? {
                        if key == "own" {
                            out.own = Some(map.next_value()?);
                        } else if !out.broker.read_key(&key, &mut map)? {
                            return Err(de::Error::unknown_field(&key, Config::KEYS));
                        }
                    }
                    Ok(out)
                }
            }
            d.deserialize_map(V)
        }
    }

    #[test]
    fn read_key_reads_every_key_and_no_other() {
        let mut full = Config {
            data_dir: ConfigPath::from("/d"),
            ..Config::default()
        };
        full.listener.max_connections = 7;
        full.mqtt.max_qos = 1;
        full.sys.interval = 3;
        full.authz.allow_anonymous = Some(false);
        full.auth.allow_anonymous = Some(true);
        full.metrics.bind = None;
        full.persistence.durability = Durability::Periodic;
        let text = toml::to_string(&full).expect("serializable");
        for key in Config::KEYS {
            assert!(text.contains(key), "{key} is serialized: {text}");
        }
        let parsed: Embedding = toml::from_str(&format!("own = 5\n{text}")).expect("valid");
        assert_eq!(parsed.own, Some(5));
        assert_eq!(parsed.broker, full);
        let err = toml::from_str::<Embedding>("nope = 1\n").expect_err("unknown");
        assert!(err.message().contains("unknown field `nope`"), "{err}");
        let err = toml::from_str::<Embedding>("[mqtt]\nmax_qos = \"x\"\n").expect_err("bad");
        assert!(err.message().contains("expected u8"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<Config>("[mqtt]\nmax_infligh = 64\n").expect_err("unknown");
        assert!(err.message().contains("max_infligh"), "{err}");
        let err = toml::from_str::<Config>("[mqt]\n").expect_err("unknown section");
        assert!(err.message().contains("mqt"), "{err}");
    }

    #[test]
    fn max_qos_out_of_range() {
        let mut c = Config::default();
        c.mqtt.max_qos = 3;
        assert_eq!(err_text(&c), "mqtt.max_qos = 3: must be 0, 1 or 2");
        assert_eq!(c.validate().map_err(|e| e.key()), Err("mqtt.max_qos"));
    }

    #[test]
    fn max_packet_size_bounds() {
        let mut c = Config::default();
        c.mqtt.max_packet_size = 0;
        assert_eq!(
            err_text(&c),
            "mqtt.max_packet_size = 0: must be between 1 and 268435455"
        );
        c.mqtt.max_packet_size = MAX_PACKET_SIZE_LIMIT + 1;
        assert_eq!(
            err_text(&c),
            "mqtt.max_packet_size = 268435456: must be between 1 and 268435455"
        );
        c.mqtt.max_packet_size = MAX_PACKET_SIZE_LIMIT;
        assert_eq!(err_text(&c), "valid");
    }

    #[test]
    fn zero_windows_are_rejected() {
        let mut c = Config::default();
        c.mqtt.receive_maximum = 0;
        assert_eq!(err_text(&c), "mqtt.receive_maximum = 0: must be at least 1");
        let mut c = Config::default();
        c.mqtt.max_inflight = 0;
        assert_eq!(err_text(&c), "mqtt.max_inflight = 0: must be at least 1");
    }

    #[test]
    fn listener_rules() {
        let mut c = Config::default();
        c.listener.bind.clear();
        assert_eq!(
            err_text(&c),
            "listener.bind = []: at least one address is required (here or in \
             listener.tls.bind, listener.ws.bind, listener.wss.bind)"
        );
        let mut c = Config::default();
        c.listener
            .bind
            .push(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 1883)));
        assert_eq!(
            err_text(&c),
            "listener.bind = \"[::]:1883\": listed more than once"
        );
        let mut c = Config::default();
        c.listener.max_connections = 0;
        assert_eq!(
            err_text(&c),
            "listener.max_connections = 0: must be at least 1"
        );
        let mut c = Config::default();
        c.listener.connect_timeout = 0;
        assert_eq!(
            err_text(&c),
            "listener.connect_timeout = 0: must be at least 1 second"
        );
    }

    #[test]
    fn paths_must_not_be_empty() {
        let c = Config {
            data_dir: ConfigPath::default(),
            ..Config::default()
        };
        assert_eq!(err_text(&c), "data_dir = \"\": must not be empty");
    }

    #[test]
    fn deny_lists_must_hold_topic_filters() {
        let rule = "not a topic filter (1 to 65535 bytes, no NUL, \
                    '+' and '#' only as whole levels, '#' only last)";
        let mut c = Config::default();
        c.authz.deny_publish = vec!["ok/+/#".into(), "a/#/b".into()];
        assert_eq!(
            err_text(&c),
            format!("authz.deny_publish = \"a/#/b\": {rule}")
        );
        let mut c = Config::default();
        c.authz.deny_subscribe = vec!["a/b+".into()];
        assert_eq!(
            err_text(&c),
            format!("authz.deny_subscribe = \"a/b+\": {rule}")
        );
        c.authz.deny_subscribe = vec![String::new()];
        assert_eq!(err_text(&c), format!("authz.deny_subscribe = \"\": {rule}"));
        c.authz.deny_subscribe = vec!["$SYS/#".into(), "#".into(), "+".into(), "/".into()];
        assert_eq!(err_text(&c), "valid");
    }

    #[test]
    fn duration_accessors() {
        let mut c = Config::default();
        assert_eq!(c.listener.connect_timeout(), Duration::from_secs(10));
        assert_eq!(c.sys.interval(), Some(Duration::from_secs(10)));
        assert_eq!(c.mqtt.max_keepalive(), None);
        c.sys.interval = 0;
        c.mqtt.max_keepalive = 60;
        assert_eq!(c.sys.interval(), None);
        assert_eq!(c.mqtt.max_keepalive(), Some(Duration::from_secs(60)));
    }
}
