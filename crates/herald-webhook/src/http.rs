//! One HTTP/1.1 connection to the web service, plain or TLS (rustls), and
//! POSTs over it, one at a time, through hyper's `client::conn::http1`. A
//! delivery lane owns one of these and reconnects when it breaks.
//!
//! The lane's own task drives the connection while it waits on it (no task
//! per connection). Requests are `POST <path>` with `host`,
//! `content-type: application/json`, `content-length` and the configured
//! headers. Answers: interim `1xx` answers are skipped, bodies are read as
//! they stream and dropped (only [`KEPT_BODY`] bytes of a failed answer are
//! kept, for the dead-letter file), heads are limited by hyper (about
//! 400 KiB), and `connection: close` (or HTTP/1.0) ends the connection after
//! that answer. A server that is slow or endless is cut off by the request
//! timeout.
//!
//! Issue 17 measured this against a hand-written HTTP/1.1 client that
//! pipelined requests (BENCHMARKS.md, "WebHook beside RMQTT"): the
//! hand-written one was not 1.3× faster, so hyper's stays and
//! `web.hook.enable_pipelining` is accepted and does nothing.
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
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper::header::{
    CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue, RETRY_AFTER,
};
use hyper::{Method, Request, StatusCode, Version};
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
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

/// A byte stream to the web service: TCP, or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// The body of a request.
type Body = Full<Bytes>;
/// hyper's connection future: reads and writes the socket when polled.
type Driver = http1::Connection<TokioIo<Box<dyn Stream>>, Body>;

/// An open HTTP/1.1 connection.
pub struct Connection {
    sender: http1::SendRequest<Body>,
    /// Polled by whoever waits on the connection; `None` once it ended.
    driver: Option<Pin<Box<Driver>>>,
    /// Requests queued by [`Target::queue`], sent one at a time by
    /// [`Target::answer`].
    queued: VecDeque<Request<Body>>,
    /// The server said it closes the connection after an answer already
    /// read: no more answers come, nothing more may be sent.
    closed: bool,
}

impl Connection {
    /// Whether the server closes the connection: it must not be reused.
    pub fn is_closed(&self) -> bool {
        self.closed || self.driver.is_none()
    }

    /// Whether an idle connection was closed or broken by the server
    /// meanwhile (web servers close idle keep-alive connections after a
    /// few seconds): polls the connection once without waiting. Checked
    /// before reuse, so an event is not sent into a connection that is
    /// already gone.
    pub async fn gone(&mut self) -> bool {
        if self.closed {
            return true;
        }
        let Some(driver) = self.driver.as_mut() else {
            return true;
        };
        let ended = tokio::select! {
            biased;
            _ = driver.as_mut() => true,
            _ = std::future::ready(()) => false,
        };
        if ended {
            self.driver = None;
        }
        ended || self.sender.is_closed()
    }
}

/// Runs `work` while driving the connection (whose reads and writes are
/// what `work` waits for). Once the connection has ended, `work` settles
/// by itself: with what was read before the end (an answer followed by
/// the server closing), or with hyper's error.
async fn drive<F: Future>(driver: &mut Option<Pin<Box<Driver>>>, work: F) -> F::Output {
    tokio::pin!(work);
    if let Some(conn) = driver.as_mut() {
        tokio::select! {
            biased;
            out = &mut work => return out,
            _ = conn.as_mut() => *driver = None,
        }
    }
    work.await
}

/// What the server answered.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: StatusCode,
    /// `Retry-After` in seconds, if given as a number.
    pub retry_after: Option<Duration>,
    /// The server closes the connection after this answer.
    pub close: bool,
    /// The first bytes ([`KEPT_BODY`] at most) of the body of an answer
    /// that is not a success; empty for 2xx. The rest is discarded as it
    /// arrives.
    pub body: Bytes,
}

/// How much of a failed answer's body is kept (see [`Answer::body`]): what
/// a dead letter keeps.
pub const KEPT_BODY: usize = crate::dead_letter::RESPONSE_BYTES;

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

    /// Opens a connection (TCP, then TLS for https, then the HTTP/1.1
    /// handshake), within the connect timeout.
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
            let io: Box<dyn Stream> = match &self.tls {
                None => Box::new(tcp),
                Some((connector, name)) => Box::new(
                    connector
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|e| SendError::Connect(format!("TLS: {e}")))?,
                ),
            };
            let (sender, driver) = http1::handshake(TokioIo::new(io))
                .await
                .map_err(|e| SendError::Connect(e.to_string()))?;
            Ok(Connection {
                sender,
                driver: Some(Box::pin(driver)),
                queued: VecDeque::new(),
                closed: false,
            })
        };
        tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| SendError::ConnectTimeout(self.connect_timeout))?
    }

    /// Queues a POST of `body` with the configured headers plus `extra`
    /// (a value HTTP does not allow is left out); [`Target::answer`] sends
    /// it.
    pub fn queue(&self, conn: &mut Connection, body: Bytes, extra: &[(&HeaderName, &[u8])]) {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        if let Ok(uri) = self.endpoint.path_and_query().parse() {
            *request.uri_mut() = uri;
        }
        let headers = request.headers_mut();
        headers.insert(HOST, self.host_header.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (n, v) in &self.headers {
            headers.append(n.clone(), v.clone());
        }
        for (n, v) in extra {
            if let Ok(v) = HeaderValue::from_bytes(v) {
                headers.append((*n).clone(), v);
            }
        }
        conn.queued.push_back(request);
    }

    /// Checks that queued requests can be sent: an error if the server
    /// closed the connection. (They go out one at a time, each in
    /// [`Target::answer`].)
    pub async fn flush(&self, conn: &mut Connection) -> Result<(), SendError> {
        if conn.is_closed() {
            return Err(SendError::Http("the server closed the connection".into()));
        }
        Ok(())
    }

    /// Sends the oldest queued request and reads its answer, within the
    /// request timeout.
    pub async fn answer(&self, conn: &mut Connection) -> Result<Answer, SendError> {
        tokio::time::timeout(self.request_timeout, exchange(conn))
            .await
            .map_err(|_| SendError::RequestTimeout(self.request_timeout))?
    }
}

/// Sends the oldest queued request and reads its answer: the body is read
/// as it streams and dropped, but for [`KEPT_BODY`] bytes of a failed one.
async fn exchange(conn: &mut Connection) -> Result<Answer, SendError> {
    let http = |e: hyper::Error| SendError::Http(e.to_string());
    let request = conn
        .queued
        .pop_front()
        .ok_or_else(|| SendError::Http("no request queued".into()))?;
    drive(&mut conn.driver, conn.sender.ready())
        .await
        .map_err(http)?;
    let response = drive(&mut conn.driver, conn.sender.send_request(request))
        .await
        .map_err(http)?;
    let status = response.status();
    let headers = response.headers();
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let close = response.version() == Version::HTTP_10
        || headers
            .get(CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
    let keep = !status.is_success();
    let mut kept = Vec::new();
    let mut body = response.into_body();
    while let Some(frame) = drive(&mut conn.driver, body.frame()).await {
        let frame = frame.map_err(http)?;
        if let Some(data) = frame.data_ref()
            && keep
            && kept.len() < KEPT_BODY
        {
            let more = data.len().min(KEPT_BODY - kept.len());
            kept.extend_from_slice(&data[..more]);
        }
    }
    conn.closed |= close;
    Ok(Answer {
        status,
        retry_after,
        close,
        body: Bytes::from(kept),
    })
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

#[cfg(test)]
mod tests {
    use super::{KEPT_BODY, SendError, Target};
    use crate::conf::TlsSettings;
    use crate::endpoint::Endpoint;
    use bytes::Bytes;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    type BoxedAnswer = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
    type Answerer = fn(TcpStream) -> BoxedAnswer;

    /// A web server on loopback that answers its n-th connection the n-th
    /// way: each gets the request, then `answer` writes what it likes.
    async fn server(answers: Vec<Answerer>) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for answer in answers {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = vec![0u8; 4096];
                let _ = stream.read(&mut request).await;
                tokio::spawn(answer(stream));
            }
        });
        addr
    }

    fn target(addr: std::net::SocketAddr, timeout: Duration) -> Target {
        let endpoint = Endpoint::parse(&format!("http://{addr}/hook")).unwrap();
        Target::new(endpoint, &TlsSettings::default(), &[], timeout, timeout).unwrap()
    }

    async fn write_forever(mut stream: TcpStream, head: &'static [u8], again: &'static [u8]) {
        if stream.write_all(head).await.is_err() {
            return;
        }
        while stream.write_all(again).await.is_ok() {}
    }

    /// Writes `text` as the answer and keeps the connection open.
    async fn canned(mut stream: TcpStream, text: &'static str) {
        let _ = stream.write_all(text.as_bytes()).await;
        let mut rest = [0u8; 1];
        let _ = stream.read(&mut rest).await;
    }

    #[tokio::test]
    async fn answers_are_read_with_their_status_retry_after_close_and_failed_body() {
        let answers: Vec<Answerer> = vec![
            |s| {
                Box::pin(canned(
                    s,
                    "HTTP/1.1 429 Too Many\r\nretry-after: 7\r\ncontent-length: 5\r\n\r\nslow!",
                ))
            },
            |s| {
                Box::pin(canned(
                    s,
                    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                ))
            },
            |s| {
                Box::pin(canned(
                    s,
                    "HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 0\r\n\r\n",
                ))
            },
            |s| Box::pin(canned(s, "HTTP/1.0 204 No Content\r\n\r\n")),
            |mut s| {
                Box::pin(async move {
                    let body = "e".repeat(4 * KEPT_BODY);
                    let text = format!(
                        "HTTP/1.1 500 Oops\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(text.as_bytes()).await;
                })
            },
            |s| Box::pin(canned(s, "SSH-2.0-OpenSSH_9.2\r\n\r\n")),
        ];
        let target = target(server(answers).await, Duration::from_secs(5));
        let mut results = Vec::new();
        for _ in 0..6 {
            let mut conn = target.connect().await.unwrap();
            target.queue(&mut conn, Bytes::from_static(b"{}"), &[]);
            target.flush(&mut conn).await.unwrap();
            let answer = target.answer(&mut conn).await;
            results.push((answer, conn.is_closed()));
        }
        let ok = |i: usize| results[i].0.as_ref().unwrap();
        assert_eq!(ok(0).status.as_u16(), 429);
        assert_eq!(ok(0).retry_after, Some(Duration::from_secs(7)));
        assert_eq!(&ok(0).body[..], b"slow!", "a failed answer's body is kept");
        assert!(!ok(0).close && !results[0].1);
        assert_eq!(ok(1).status.as_u16(), 200, "1xx skipped");
        assert!(ok(1).body.is_empty(), "a success's body is dropped");
        assert!(ok(2).close && results[2].1, "connection: close");
        assert!(ok(3).close && results[3].1, "HTTP/1.0");
        assert_eq!(ok(3).status.as_u16(), 204);
        assert_eq!(ok(4).status.as_u16(), 500);
        assert_eq!(ok(4).body.len(), KEPT_BODY, "only the first bytes are kept");
        assert!(
            matches!(results[5].0, Err(SendError::Http(_))),
            "{:?}",
            results[5].0
        );
    }

    #[tokio::test]
    async fn a_kept_alive_connection_serves_requests_in_turn_and_a_closed_one_is_gone() {
        let answers: Vec<Answerer> = vec![|mut s| {
            Box::pin(async move {
                // Two requests, then the server closes the idle connection.
                let mut buf = vec![0u8; 4096];
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n")
                    .await;
            })
        }];
        let target = target(server(answers).await, Duration::from_secs(5));
        let mut conn = target.connect().await.unwrap();
        target.queue(&mut conn, Bytes::from_static(b"{\"n\":1}"), &[]);
        target.queue(&mut conn, Bytes::from_static(b"{\"n\":2}"), &[]);
        target.flush(&mut conn).await.unwrap();
        assert_eq!(target.answer(&mut conn).await.unwrap().status.as_u16(), 200);
        assert!(!conn.gone().await);
        assert_eq!(target.answer(&mut conn).await.unwrap().status.as_u16(), 503);
        // The server has gone: seen before the next request is sent.
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while !conn.gone().await {
            assert!(tokio::time::Instant::now() < until, "close never seen");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn hostile_servers_cost_bounded_time_and_the_next_request_works() {
        let endless_interims: Answerer =
            |s| Box::pin(write_forever(s, b"", b"HTTP/1.1 100 Continue\r\n\r\n"));
        let endless_header: Answerer = |s| {
            Box::pin(write_forever(
                s,
                b"HTTP/1.1 200 OK\r\nx-a: ",
                b"aaaaaaaaaaaaaaaa",
            ))
        };
        let huge_body: Answerer = |mut s| {
            Box::pin(async move {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 104857600\r\n\r\n")
                    .await;
                let piece = vec![b'x'; 1 << 20];
                for _ in 0..100 {
                    if s.write_all(&piece).await.is_err() {
                        return;
                    }
                }
            })
        };
        let slow_body: Answerer = |mut s| {
            Box::pin(async move {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
                    .await;
                loop {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    if s.write_all(b"x").await.is_err() {
                        return;
                    }
                }
            })
        };
        let fine: Answerer = |mut s| {
            Box::pin(async move {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
            })
        };
        let addr = server(vec![
            endless_interims,
            fine,
            endless_header,
            fine,
            huge_body,
            fine,
            slow_body,
            fine,
        ])
        .await;
        let target = target(addr, Duration::from_secs(1));
        for case in ["endless 1xx", "endless header", "100 MB body", "slow body"] {
            let mut conn = target.connect().await.unwrap();
            target.queue(&mut conn, Bytes::from_static(b"{}"), &[]);
            target.flush(&mut conn).await.unwrap();
            let answer = target.answer(&mut conn).await;
            match case {
                "endless 1xx" | "slow body" => assert!(
                    matches!(answer, Err(SendError::RequestTimeout(_))),
                    "{case}: {answer:?}"
                ),
                "endless header" => assert!(
                    matches!(&answer, Err(SendError::Http(e)) if e.contains("too large")),
                    "{case}: {answer:?}"
                ),
                _ => assert_eq!(answer.unwrap().status.as_u16(), 200, "{case}"),
            }
            drop(conn);
            // A new connection (as the lane makes after a failure) works.
            let mut conn = target.connect().await.unwrap();
            target.queue(&mut conn, Bytes::from_static(b"{}"), &[]);
            target.flush(&mut conn).await.unwrap();
            assert_eq!(
                target.answer(&mut conn).await.unwrap().status.as_u16(),
                200,
                "after {case}"
            );
        }
    }
}
