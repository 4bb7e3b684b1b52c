//! TLS for the `tls` and `wss` listeners (rustls with the ring provider):
//! the server certificate and key from PEM files, optional client
//! certificates verified against a CA file, TLS 1.2 and 1.3 only.
//!
//! A [`TlsContext`] holds the current rustls configuration behind a lock
//! that is only taken to clone an `Arc`; [`TlsContext::reload`] reads the
//! files again and swaps it in, so new connections get the new certificate
//! while established ones keep theirs. A file that cannot be used is an
//! error naming the setting and the file; on reload the old configuration
//! stays. [`TlsContext::files_changed`] lets a watcher reload when the files
//! change on disk.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::server::danger::ClientCertVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, version};

use crate::config::{PeerCertAsUsername, TlsSettings};
use crate::support::{lock, read, write};

/// Why a TLS listener cannot be set up.
#[derive(Debug, thiserror::Error)]
#[error("{key} = {file:?}: {why}")]
pub struct TlsError {
    /// The setting that names the file (`listener.tls.certfile`, ...).
    pub key: &'static str,
    /// The file.
    pub file: PathBuf,
    /// What is wrong with it.
    pub why: String,
}

/// A TLS listener's current configuration, reloadable.
pub struct TlsContext {
    /// Where the files are and what to ask of clients.
    settings: TlsSettings,
    /// The configuration new connections use.
    current: RwLock<Arc<ServerConfig>>,
    /// ALPN protocols offered (`mqtt` for MQTT over TLS, `http/1.1` for
    /// secure WebSocket).
    alpn: &'static [&'static [u8]],
    /// The files' modification times and sizes when they were last read.
    stamp: Mutex<FileStamp>,
}

/// Modification time and size of each file of a context (`None` for one
/// that is not set or cannot be read).
type FileStamp = [Option<(SystemTime, u64)>; 3];

impl TlsContext {
    /// Reads the files of `settings` and builds the configuration.
    pub fn load(
        settings: TlsSettings,
        alpn: &'static [&'static [u8]],
    ) -> Result<TlsContext, TlsError> {
        let stamp = stamp(&settings);
        let config = build(&settings, alpn)?;
        Ok(TlsContext {
            settings,
            current: RwLock::new(Arc::new(config)),
            alpn,
            stamp: Mutex::new(stamp),
        })
    }

    /// Reads the files again; on success new connections use them, on
    /// failure nothing changes.
    pub fn reload(&self) -> Result<(), TlsError> {
        // Stamped before reading: a change made while reading is seen by
        // the next check.
        *lock(&self.stamp) = stamp(&self.settings);
        let config = Arc::new(build(&self.settings, self.alpn)?);
        *write(&self.current) = config;
        Ok(())
    }

    /// Whether a file changed (time or size) since it was last read. Reads
    /// file metadata: call it off the async workers.
    pub fn files_changed(&self) -> bool {
        stamp(&self.settings) != *lock(&self.stamp)
    }

    /// An acceptor with the current configuration.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(read(&self.current).clone())
    }

    /// What of a client certificate becomes the user name.
    pub fn peer_cert_as_username(&self) -> PeerCertAsUsername {
        self.settings.peer_cert_as_username
    }

    /// The settings this context was made from.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }
}

/// The modification time and size of each file of `s`.
fn stamp(s: &TlsSettings) -> FileStamp {
    let of = |path: &Path| {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    };
    [of(&s.certfile), of(&s.keyfile), of(&s.cacertfile)]
}

/// Builds a rustls server configuration from the files.
fn build(s: &TlsSettings, alpn: &[&[u8]]) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(ring::default_provider());
    let certs = read_certs(s.key("certfile"), &s.certfile)?;
    let key = read_key(s.key("keyfile"), &s.keyfile)?;
    let verifier = client_verifier(s, &provider)?;
    let fail = |why: String| TlsError {
        key: s.key("keyfile"),
        file: s.keyfile.clone(),
        why,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .map_err(|e| fail(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| fail(format!("does not fit the certificate in certfile: {e}")))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// What clients are asked for: nothing, or a certificate chaining to the
/// CAs of `cacertfile` (required with `fail_if_no_peer_cert`).
fn client_verifier(
    s: &TlsSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    if !s.verify_peer {
        return Ok(WebPkiClientVerifier::no_client_auth());
    }
    let key = s.key("cacertfile");
    let mut roots = RootCertStore::empty();
    for cert in read_certs(key, &s.cacertfile)? {
        roots.add(cert).map_err(|e| TlsError {
            key,
            file: s.cacertfile.clone(),
            why: format!("not a usable CA certificate: {e}"),
        })?;
    }
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if !s.fail_if_no_peer_cert {
        builder = builder.allow_unauthenticated();
    }
    builder.build().map_err(|e| TlsError {
        key,
        file: s.cacertfile.clone(),
        why: e.to_string(),
    })
}

/// Every certificate of a PEM file; none is an error.
fn read_certs(key: &'static str, file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |why: String| TlsError {
        key,
        file: file.to_owned(),
        why,
    };
    let text = std::fs::read(file).map_err(|e| fail(format!("cannot read: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(fail("holds no PEM certificate (BEGIN CERTIFICATE)".into()));
    }
    Ok(certs)
}

/// The first private key of a PEM file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
fn read_key(key: &'static str, file: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let fail = |why: String| TlsError {
        key,
        file: file.to_owned(),
        why,
    };
    let text = std::fs::read(file).map_err(|e| fail(format!("cannot read: {e}")))?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| {
        fail(format!(
            "holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"
        ))
    })
}
