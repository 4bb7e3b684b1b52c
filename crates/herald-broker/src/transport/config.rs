//! The settings of the listeners other than plain TCP: `[listener.tls]`,
//! `[listener.ws]` and `[listener.wss]` of `herald.toml`, their defaults and
//! their checks. Like the rest of [`crate::config`], nothing here reads a
//! file: certificate files are read when the listener starts
//! ([`super::tls`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, ConfigPath};

/// `[listener.tls]`: MQTT over TLS (normally port 8883).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsListenerConfig {
    /// Addresses to accept MQTT over TLS on; empty: no TLS listener.
    pub bind: Vec<SocketAddr>,
    /// The server's certificate chain, PEM, leaf first.
    pub certfile: ConfigPath,
    /// The server's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub keyfile: ConfigPath,
    /// CA certificates (PEM) that client certificates must chain to.
    pub cacertfile: ConfigPath,
    /// Whether to ask clients for a certificate (verified against
    /// `cacertfile`); a client that offers a bad one is refused.
    pub verify_peer: bool,
    /// Whether a client that offers no certificate is refused (needs
    /// `verify_peer`).
    pub fail_if_no_peer_cert: bool,
    /// Whether the client certificate's subject replaces the user name of
    /// CONNECT: `""` no, `"cn"` its Common Name, `"dn"` its whole
    /// Distinguished Name (RFC 4514 text, e.g. `CN=dev1,O=Acme`).
    pub peer_cert_as_username: PeerCertAsUsername,
    /// Whether each connection starts with a PROXY protocol (v1 or v2)
    /// header whose source address is the client's.
    pub proxy_protocol: bool,
}

/// `[listener.ws]`: MQTT over WebSocket (normally port 8083).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsListenerConfig {
    /// Addresses to accept MQTT over WebSocket on; empty: none.
    pub bind: Vec<SocketAddr>,
    /// The HTTP path of the upgrade request; other paths get 404.
    pub path: String,
    /// Whether each connection starts with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// An HTTP header of the upgrade request that holds the client's
    /// address (set by an HTTP reverse proxy), e.g. `x-forwarded-for`: its
    /// first address becomes the client's; `""`: not used.
    pub proxy_address_header: String,
}

/// `[listener.wss]`: MQTT over secure WebSocket (normally port 8084). The
/// TLS settings not given here are those of `[listener.tls]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WssListenerConfig {
    /// Addresses to accept MQTT over secure WebSocket on; empty: none.
    pub bind: Vec<SocketAddr>,
    /// The HTTP path of the upgrade request; other paths get 404.
    pub path: String,
    /// Like `listener.tls.certfile`; unset: that one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certfile: Option<ConfigPath>,
    /// Like `listener.tls.keyfile`; unset: that one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyfile: Option<ConfigPath>,
    /// Like `listener.tls.cacertfile`; unset: that one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cacertfile: Option<ConfigPath>,
    /// Like `listener.tls.verify_peer`; unset: that one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_peer: Option<bool>,
    /// Like `listener.tls.fail_if_no_peer_cert`; unset: that one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_if_no_peer_cert: Option<bool>,
    /// Like `listener.tls.peer_cert_as_username`; unset: that one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_cert_as_username: Option<PeerCertAsUsername>,
    /// Whether each connection starts with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// As `listener.ws.proxy_address_header`.
    pub proxy_address_header: String,
}

/// Which part of a client certificate's subject becomes the user name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerCertAsUsername {
    /// The user name of CONNECT stays.
    #[default]
    #[serde(rename = "")]
    No,
    /// The Common Name.
    #[serde(rename = "cn")]
    Cn,
    /// The Distinguished Name, RFC 4514 text.
    #[serde(rename = "dn")]
    Dn,
}

/// The TLS settings a listener runs with, after `[listener.wss]` took what
/// it does not set from `[listener.tls]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// Certificate chain file (PEM).
    pub certfile: PathBuf,
    /// Private key file (PEM).
    pub keyfile: PathBuf,
    /// Client CA file (PEM); may be empty when peers are not verified.
    pub cacertfile: PathBuf,
    /// Ask for a client certificate.
    pub verify_peer: bool,
    /// Refuse clients without one.
    pub fail_if_no_peer_cert: bool,
    /// What of the certificate becomes the user name.
    pub peer_cert_as_username: PeerCertAsUsername,
    /// The config section these come from, for error messages
    /// (`listener.tls` or `listener.wss`).
    pub section: &'static str,
}

impl Default for TlsListenerConfig {
    fn default() -> Self {
        Self {
            bind: Vec::new(),
            certfile: ConfigPath::default(),
            keyfile: ConfigPath::default(),
            cacertfile: ConfigPath::default(),
            verify_peer: false,
            fail_if_no_peer_cert: false,
            peer_cert_as_username: PeerCertAsUsername::No,
            proxy_protocol: false,
        }
    }
}

/// The default WebSocket path, as mosquitto's clients and EMQX use.
const DEFAULT_WS_PATH: &str = "/mqtt";

impl Default for WsListenerConfig {
    fn default() -> Self {
        Self {
            bind: Vec::new(),
            path: DEFAULT_WS_PATH.into(),
            proxy_protocol: false,
            proxy_address_header: String::new(),
        }
    }
}

impl Default for WssListenerConfig {
    fn default() -> Self {
        Self {
            bind: Vec::new(),
            path: DEFAULT_WS_PATH.into(),
            certfile: None,
            keyfile: None,
            cacertfile: None,
            verify_peer: None,
            fail_if_no_peer_cert: None,
            peer_cert_as_username: None,
            proxy_protocol: false,
            proxy_address_header: String::new(),
        }
    }
}

impl TlsListenerConfig {
    /// The TLS settings of the TLS listener.
    pub fn settings(&self) -> TlsSettings {
        TlsSettings {
            certfile: self.certfile.to_path_buf(),
            keyfile: self.keyfile.to_path_buf(),
            cacertfile: self.cacertfile.to_path_buf(),
            verify_peer: self.verify_peer,
            fail_if_no_peer_cert: self.fail_if_no_peer_cert,
            peer_cert_as_username: self.peer_cert_as_username,
            section: "listener.tls",
        }
    }
}

impl WssListenerConfig {
    /// The TLS settings of the secure WebSocket listener: its own where
    /// given, `tls`'s otherwise.
    pub fn settings(&self, tls: &TlsListenerConfig) -> TlsSettings {
        let pick = |own: &Option<ConfigPath>, inherited: &ConfigPath| {
            own.as_ref().unwrap_or(inherited).to_path_buf()
        };
        TlsSettings {
            certfile: pick(&self.certfile, &tls.certfile),
            keyfile: pick(&self.keyfile, &tls.keyfile),
            cacertfile: pick(&self.cacertfile, &tls.cacertfile),
            verify_peer: self.verify_peer.unwrap_or(tls.verify_peer),
            fail_if_no_peer_cert: self
                .fail_if_no_peer_cert
                .unwrap_or(tls.fail_if_no_peer_cert),
            peer_cert_as_username: self
                .peer_cert_as_username
                .unwrap_or(tls.peer_cert_as_username),
            section: "listener.wss",
        }
    }
}

impl TlsSettings {
    /// The dotted name of one of these settings for messages: where it was
    /// (or would be) set.
    pub fn key(&self, name: &str) -> &'static str {
        match (self.section, name) {
            ("listener.wss", "certfile") => "listener.wss.certfile",
            ("listener.wss", "keyfile") => "listener.wss.keyfile",
            ("listener.wss", "cacertfile") => "listener.wss.cacertfile",
            ("listener.wss", "verify_peer") => "listener.wss.verify_peer",
            ("listener.wss", _) => "listener.wss.peer_cert_as_username",
            (_, "certfile") => "listener.tls.certfile",
            (_, "keyfile") => "listener.tls.keyfile",
            (_, "cacertfile") => "listener.tls.cacertfile",
            (_, "verify_peer") => "listener.tls.verify_peer",
            _ => "listener.tls.peer_cert_as_username",
        }
    }

    /// Checks that the settings can make a TLS listener (the files
    /// themselves are checked when it starts).
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let empty = |p: &Path| p.as_os_str().is_empty();
        for (name, path) in [("certfile", &self.certfile), ("keyfile", &self.keyfile)] {
            if empty(path) {
                return Err(ConfigError::Invalid {
                    key: self.key(name),
                    value: "\"\"".into(),
                    reason: format!("a file is required when {}.bind is set", self.section),
                });
            }
        }
        if self.verify_peer && empty(&self.cacertfile) {
            return Err(ConfigError::Invalid {
                key: self.key("cacertfile"),
                value: "\"\"".into(),
                reason: "a file of CA certificates is required when verify_peer = true".into(),
            });
        }
        if !self.verify_peer && (self.fail_if_no_peer_cert || self.peer_cert_as_username.is_on()) {
            return Err(ConfigError::Invalid {
                key: self.key("verify_peer"),
                value: "false".into(),
                reason: "fail_if_no_peer_cert and peer_cert_as_username need verify_peer = true"
                    .into(),
            });
        }
        Ok(())
    }
}

impl PeerCertAsUsername {
    /// Whether a certificate name replaces the user name.
    pub fn is_on(self) -> bool {
        self != PeerCertAsUsername::No
    }
}

/// Checks a WebSocket `path` setting.
pub(crate) fn validate_ws_path(key: &'static str, path: &str) -> Result<(), ConfigError> {
    if !path.starts_with('/')
        || path
            .chars()
            .any(|c| c.is_ascii_whitespace() || c.is_control())
    {
        return Err(ConfigError::Invalid {
            key,
            value: format!("{path:?}"),
            reason: "must be an HTTP path starting with '/', without spaces".into(),
        });
    }
    Ok(())
}

/// Checks a `proxy_address_header` setting.
pub(crate) fn validate_header_name(key: &'static str, name: &str) -> Result<(), ConfigError> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !name.chars().all(token) {
        return Err(ConfigError::Invalid {
            key,
            value: format!("{name:?}"),
            reason: "must be an HTTP header name (or \"\")".into(),
        });
    }
    Ok(())
}
