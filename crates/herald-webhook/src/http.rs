//! One HTTP/1.1 connection to the web service, plain or TLS (rustls), and
//! one POST over it. A delivery lane owns one of these and reconnects when
//! it breaks.
//!
//! TLS follows `web.hook.ssl.*`: a CA bundle (else the system's roots), a
//! client certificate and key for mutual TLS, verification on (default) or
//! off, and the name checked and sent as SNI: the URL's host, another name,
//! or `disable` (no SNI sent, no host-name check; the chain is still
//! verified unless verification is off).
//!
//! This module never retries and never decides what a status means: it
//! reports what happened, and the lane decides.

use crate::conf::{Header, ServerName as Sni, TlsSettings};
use crate::endpoint::{Endpoint, Host};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// Why the HTTP side could not be set up (at start-up).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A certificate or key file could not be read or holds nothing usable.
    #[error("{key} = {path}: {why}")]
    File {
        /// The configuration key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A configured header has a name or value HTTP does not allow.
    #[error("web.hook.headers.{name}: {why}")]
    Header {
        /// The header name.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// The TLS configuration was refused.
    #[error("TLS settings: {0}")]
    Tls(String),
}

/// Why a request did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Connecting took longer than the connect timeout.
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// The TCP connection or the TLS handshake failed.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// No complete answer within the request timeout.
    #[error("no answer within {0:?}")]
    RequestTimeout(Duration),
    /// The connection broke or the answer was not valid HTTP.
    #[error("request failed: {0}")]
    Http(String),
}

/// Where and how requests are sent.
pub struct Target {
    endpoint: Endpoint,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// `Host` header value.
    host_header: HeaderValue,
    /// Configured headers (content-type already removed).
    headers: Vec<(HeaderName, HeaderValue)>,
    connect_timeout: Duration,
    request_timeout: Duration,
}

/// An open HTTP/1.1 connection.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

/// What the server answered.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: StatusCode,
    /// `Retry-After` in seconds, if given as a number.
    pub retry_after: Option<Duration>,
}

impl Target {
    /// Prepares the target: loads certificate files, checks headers.
    pub fn new(
        endpoint: Endpoint,
        tls: &TlsSettings,
        headers: &[Header],
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Target, SetupError> {
        let tls = if endpoint.is_https() {
            Some(tls_connector(&endpoint, tls)?)
        } else {
            None
        };
        let mut checked = Vec::new();
        for Header { name, value } in headers {
            let header = |why: String| SetupError::Header {
                name: name.clone(),
                why,
            };
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|e| header(e.to_string()))?;
            if n == CONTENT_TYPE || n == CONTENT_LENGTH || n == HOST {
                continue;
            }
            let v = HeaderValue::from_str(value).map_err(|e| header(e.to_string()))?;
            checked.push((n, v));
        }
        let host_header =
            HeaderValue::from_str(&endpoint.authority()).map_err(|e| SetupError::Header {
                name: "host".into(),
                why: e.to_string(),
            })?;
        Ok(Target {
            endpoint,
            tls,
            host_header,
            headers: checked,
            connect_timeout,
            request_timeout,
        })
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Opens a connection (TCP, then TLS for https), within the connect
    /// timeout.
    pub async fn connect(&self) -> Result<Connection, SendError> {
        let connecting = async {
            let port = self.endpoint.port();
            let tcp = match self.endpoint.host() {
                Host::Ipv4(ip) => TcpStream::connect(SocketAddr::new(IpAddr::V4(*ip), port)).await,
                Host::Ipv6(ip) => TcpStream::connect(SocketAddr::new(IpAddr::V6(*ip), port)).await,
                Host::Name(name) => TcpStream::connect((name.as_str(), port)).await,
            }
            .map_err(|e| SendError::Connect(e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                None => handshake(TokioIo::new(tcp)).await,
                Some((connector, name)) => {
                    let stream = connector
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|e| SendError::Connect(format!("TLS: {e}")))?;
                    handshake(TokioIo::new(stream)).await
                }
            }
        };
        tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| SendError::ConnectTimeout(self.connect_timeout))?
    }

    /// POSTs `body` with the configured headers plus `extra`, waiting at
    /// most the request timeout for the whole answer.
    pub async fn post(
        &self,
        conn: &mut Connection,
        body: Bytes,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<Answer, SendError> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.endpoint.path_and_query())
            .header(HOST, self.host_header.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (n, v) in self.headers.iter().chain(extra) {
            request = request.header(n, v);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| SendError::Http(e.to_string()))?;
        let exchange = async {
            conn.sender
                .ready()
                .await
                .map_err(|e| SendError::Http(e.to_string()))?;
            let response = conn
                .sender
                .send_request(request)
                .await
                .map_err(|e| SendError::Http(e.to_string()))?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            // Read the whole body so the connection can be reused.
            response
                .into_body()
                .collect()
                .await
                .map_err(|e| SendError::Http(e.to_string()))?;
            Ok(Answer {
                status,
                retry_after,
            })
        };
        tokio::time::timeout(self.request_timeout, exchange)
            .await
            .map_err(|_| SendError::RequestTimeout(self.request_timeout))?
    }
}

async fn handshake<T>(io: TokioIo<T>) -> Result<Connection, SendError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| SendError::Connect(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "webhook connection closed");
        }
    });
    Ok(Connection { sender })
}

fn file_error(key: &'static str, path: &Path, why: impl ToString) -> SetupError {
    SetupError::File {
        key,
        path: path.to_owned(),
        why: why.to_string(),
    }
}

/// Builds the rustls configuration from the settings.
fn tls_connector(
    endpoint: &Endpoint,
    s: &TlsSettings,
) -> Result<(TlsConnector, ServerName<'static>), SetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    match &s.cacertfile {
        Some(path) => {
            let key = "web.hook.ssl.cacertfile";
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| file_error(key, path, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| file_error(key, path, e))?;
            if certs.is_empty() {
                return Err(file_error(key, path, "no certificate in the file"));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| file_error(key, path, e))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
        }
    }
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SetupError::Tls(e.to_string()))?;
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| SetupError::Tls(e.to_string()))?;
    let verifier = Arc::new(Verifier {
        inner: webpki,
        verify: s.verify,
        check_name: s.server_name != Sni::Disable,
        provider: provider.clone(),
    });
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match (&s.certfile, &s.keyfile) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| file_error("web.hook.ssl.certfile", cert, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| file_error("web.hook.ssl.certfile", cert, e))?;
            let private = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| file_error("web.hook.ssl.keyfile", key, e))?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| SetupError::Tls(e.to_string()))?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => {
            return Err(SetupError::Tls(
                "web.hook.ssl.certfile is set but web.hook.ssl.keyfile is not".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(SetupError::Tls(
                "web.hook.ssl.keyfile is set but web.hook.ssl.certfile is not".into(),
            ));
        }
    };
    config.enable_sni = s.server_name != Sni::Disable;
    let name = match (&s.server_name, endpoint.host()) {
        (Sni::Name(n), _) => n.clone(),
        (_, Host::Name(n)) => n.clone(),
        (_, Host::Ipv4(ip)) => ip.to_string(),
        (_, Host::Ipv6(ip)) => ip.to_string(),
    };
    let server_name = ServerName::try_from(name.clone())
        .map_err(|e| SetupError::Tls(format!("server name {name:?}: {e}")))?;
    Ok((TlsConnector::from(Arc::new(config)), server_name))
}

/// rustls's WebPKI verifier, with verification optionally off and the
/// host-name check optionally off (`server_name_indication = disable`).
#[derive(Debug)]
struct Verifier {
    inner: Arc<WebPkiServerVerifier>,
    verify: bool,
    check_name: bool,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self.verify {
            return Ok(ServerCertVerified::assertion());
        }
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
