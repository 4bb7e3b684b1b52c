//! One HTTP/1.1 connection to the web service, plain or TLS (rustls), and
//! POSTs over it: one at a time, or several pipelined (written together,
//! answered in order). A delivery lane owns one of these and reconnects
//! when it breaks.
//!
//! The client side of HTTP/1.1 is small enough to do here rather than
//! through hyper's client, which sends one request at a time: requests are
//! written as `POST <path> HTTP/1.1` with `host`, `content-type`,
//! `content-length` and the configured headers; answers are parsed with
//! `httparse`, their bodies (`content-length`, `chunked`, or up to the end
//! of the connection) skipped, interim `1xx` answers ignored, and
//! `connection: close` (or an HTTP/1.0 answer without keep-alive) ends the
//! connection after that answer.
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
use bytes::{Buf, Bytes, BytesMut};
use hyper::StatusCode;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
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

/// An open HTTP/1.1 connection.
pub struct Connection {
    io: Box<dyn Stream>,
    /// Bytes read and not parsed yet.
    input: BytesMut,
    /// Requests queued and not written yet.
    output: Vec<u8>,
    /// The server said it closes the connection after an answer already
    /// read: no more answers come, nothing more may be sent.
    closed: bool,
}

impl Connection {
    /// Whether the server closes the connection: it must not be reused.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether an idle connection was closed or broken by the server
    /// meanwhile (web servers close idle keep-alive connections after a
    /// few seconds): anything readable now is the end of the stream, an
    /// error or bytes nobody asked for. Checked before reuse, so an event
    /// is not sent into a connection that is already gone.
    pub async fn gone(&mut self) -> bool {
        if self.closed {
            return true;
        }
        let mut probe = [0u8; 1];
        tokio::select! {
            biased;
            _ = self.io.read(&mut probe) => true,
            _ = std::future::ready(()) => false,
        }
    }
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
    /// The first bytes of the body of an answer that is not a success
    /// (kept with a dead letter; empty for 2xx).
    pub body: Bytes,
}

/// Most bytes one answer may take (head and body): a server sending more
/// is treated as broken rather than buffered without bound.
const MAX_ANSWER: usize = 8 << 20;

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
            let io: Box<dyn Stream> = match &self.tls {
                None => Box::new(tcp),
                Some((connector, name)) => Box::new(
                    connector
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|e| SendError::Connect(format!("TLS: {e}")))?,
                ),
            };
            Ok(Connection {
                io,
                input: BytesMut::with_capacity(4096),
                output: Vec::with_capacity(4096),
                closed: false,
            })
        };
        tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| SendError::ConnectTimeout(self.connect_timeout))?
    }

    /// Queues a POST of `body` with the configured headers plus `extra`;
    /// [`Target::flush`] sends what is queued.
    pub fn queue(&self, conn: &mut Connection, body: &[u8], extra: &[(&HeaderName, &[u8])]) {
        use std::io::Write as _;
        let out = &mut conn.output;
        out.extend_from_slice(b"POST ");
        out.extend_from_slice(self.endpoint.path_and_query().as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        out.extend_from_slice(self.host_header.as_bytes());
        out.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
        let _ = write!(out, "{}\r\n", body.len());
        let configured = self.headers.iter().map(|(n, v)| (n, v.as_bytes()));
        for (n, v) in configured.chain(extra.iter().copied()) {
            out.extend_from_slice(n.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
    }

    /// Writes the queued requests, within the request timeout.
    pub async fn flush(&self, conn: &mut Connection) -> Result<(), SendError> {
        if conn.closed {
            return Err(SendError::Http("the server closed the connection".into()));
        }
        let writing = async {
            conn.io.write_all(&conn.output).await?;
            conn.io.flush().await
        };
        let written = tokio::time::timeout(self.request_timeout, writing)
            .await
            .map_err(|_| SendError::RequestTimeout(self.request_timeout))?;
        conn.output.clear();
        written.map_err(|e| SendError::Http(e.to_string()))
    }

    /// Reads the answer to the oldest request not answered yet, waiting at
    /// most the request timeout.
    pub async fn answer(&self, conn: &mut Connection) -> Result<Answer, SendError> {
        tokio::time::timeout(self.request_timeout, read_answer(conn))
            .await
            .map_err(|_| SendError::RequestTimeout(self.request_timeout))?
    }
}

async fn read_answer(conn: &mut Connection) -> Result<Answer, SendError> {
    let mut eof = false;
    loop {
        match parse_answer(&conn.input, eof).map_err(SendError::Http)? {
            Some((answer, used)) => {
                conn.input.advance(used);
                conn.closed |= answer.close;
                return Ok(answer);
            }
            None if eof => {
                return Err(SendError::Http(
                    "the server closed the connection before answering".into(),
                ));
            }
            None if conn.input.len() > MAX_ANSWER => {
                return Err(SendError::Http(format!(
                    "answer larger than {MAX_ANSWER} bytes"
                )));
            }
            None => {}
        }
        conn.input.reserve(8192);
        let n = conn
            .io
            .read_buf(&mut conn.input)
            .await
            .map_err(|e| SendError::Http(e.to_string()))?;
        eof = n == 0;
    }
}

/// Parses one answer at the start of `buf`: `Ok(None)` if more bytes are
/// needed, else the answer and how many bytes it took. `eof`: nothing more
/// will come (an answer without a length ends there).
pub fn parse_answer(buf: &[u8], eof: bool) -> Result<Option<(Answer, usize)>, String> {
    // Interim answers (100 Continue, 103 Early Hints) before the real one
    // are skipped, however many a server sends.
    let mut start = 0;
    loop {
        match parse_final(&buf[start..], eof)? {
            Parsed::Interim(n) => start += n,
            Parsed::Final(answer, n) => return Ok(Some((answer, start + n))),
            Parsed::Incomplete => return Ok(None),
        }
    }
}

/// One answer at the start of a buffer.
enum Parsed {
    /// More bytes are needed.
    Incomplete,
    /// An interim (1xx) answer of this many bytes.
    Interim(usize),
    /// The answer and its length.
    Final(Answer, usize),
}

fn parse_final(buf: &[u8], eof: bool) -> Result<Parsed, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut res = httparse::Response::new(&mut headers);
    let head = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Incomplete),
        Err(e) => return Err(format!("invalid HTTP answer: {e}")),
    };
    let code = res.code.unwrap_or(0);
    if (100..200).contains(&code) && code != 101 {
        return Ok(Parsed::Interim(head));
    }
    let status = StatusCode::from_u16(code).map_err(|_| format!("invalid HTTP status {code}"))?;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut close = res.version == Some(0);
    let mut retry_after = None;
    for h in res.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| format!("invalid content-length {value:?}"))?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting content-length headers".into());
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && res.version == Some(0) {
                    close = false;
                }
            }
        } else if h.name.eq_ignore_ascii_case("retry-after") {
            retry_after = value.parse::<u64>().ok().map(Duration::from_secs);
        }
    }
    let body = &buf[head..];
    let used = if code == 204 || code == 304 {
        0
    } else if chunked {
        match chunked_len(body)? {
            Some(n) => n,
            None => return Ok(Parsed::Incomplete),
        }
    } else if let Some(n) = length {
        if body.len() < n {
            return Ok(Parsed::Incomplete);
        }
        n
    } else if eof {
        // Delimited by the end of the connection.
        close = true;
        body.len()
    } else {
        return Ok(Parsed::Incomplete);
    };
    let body = if status.is_success() {
        Bytes::new()
    } else {
        let kept = crate::dead_letter::RESPONSE_BYTES.min(used);
        Bytes::copy_from_slice(body.get(..kept).unwrap_or_default())
    };
    Ok(Parsed::Final(
        Answer {
            status,
            retry_after,
            close,
            body,
        },
        head + used,
    ))
}

/// Length of a complete chunked body at the start of `b` (trailers
/// included), `None` if incomplete.
fn chunked_len(b: &[u8]) -> Result<Option<usize>, String> {
    let line_end = |from: usize| {
        b[from..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|i| from + i)
    };
    let mut pos = 0;
    loop {
        let Some(eol) = line_end(pos) else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&b[pos..eol]).map_err(|_| "invalid chunk size line")?;
        let hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(hex, 16)
            .ok()
            .filter(|_| hex.len() <= 8)
            .ok_or_else(|| format!("invalid chunk size {hex:?}"))?;
        pos = eol + 2;
        if size == 0 {
            // Trailer lines up to an empty one.
            loop {
                let Some(eol) = line_end(pos) else {
                    return Ok(None);
                };
                if eol == pos {
                    return Ok(Some(pos + 2));
                }
                pos = eol + 2;
            }
        }
        if b.len() < pos + size + 2 {
            return Ok(None);
        }
        if &b[pos + size..pos + size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF".into());
        }
        pos += size + 2;
    }
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
    use super::parse_answer;
    use std::time::Duration;

    /// Status, close and bytes used, or `None` when incomplete.
    fn parse(text: &str, eof: bool) -> Option<(u16, bool, usize)> {
        parse_answer(text.as_bytes(), eof)
            .expect("valid")
            .map(|(a, n)| (a.status.as_u16(), a.close, n))
    }

    #[test]
    fn content_length_bodies_end_where_they_say() {
        let one = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        let two = format!("{one}HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(parse(&two, false), Some((200, false, one.len())));
        assert_eq!(parse(&two[one.len()..], false).map(|a| a.0), Some(503));
        assert_eq!(parse(&one[..one.len() - 1], false), None, "body incomplete");
        assert_eq!(parse("HTTP/1.1 200 OK\r\ncontent-le", false), None);
    }

    #[test]
    fn chunked_bodies_with_extensions_and_trailers() {
        let text = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\n";
        assert_eq!(parse(text, false), Some((200, false, text.len())));
        for cut in [text.len() - 1, text.len() - 3, text.len() - 20] {
            assert_eq!(parse(&text[..cut], false), None, "cut at {cut}");
        }
        let bad = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n";
        assert!(parse_answer(bad.as_bytes(), false).is_err());
    }

    #[test]
    fn interim_answers_are_skipped() {
        let text = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(parse(text, false), Some((204, false, text.len())));
        // However many a server sends (no recursion to overflow).
        let many = "HTTP/1.1 100 Continue\r\n\r\n".repeat(200_000) + "HTTP/1.1 200 OK\r\n\r\n";
        assert_eq!(parse(&many, true), Some((200, true, many.len())));
    }

    #[test]
    fn connection_close_and_http_1_0() {
        let close = "HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(parse(close, false).map(|a| a.1), Some(true));
        let old = "HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(parse(old, false).map(|a| a.1), Some(true));
        let kept = "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(parse(kept, false).map(|a| a.1), Some(false));
        // No length: the body runs to the end of the connection.
        let open = "HTTP/1.1 200 OK\r\n\r\nuntil the end";
        assert_eq!(parse(open, false), None);
        assert_eq!(parse(open, true), Some((200, true, open.len())));
    }

    #[test]
    fn retry_after_and_garbage() {
        let text = "HTTP/1.1 429 Too Many\r\nretry-after: 7\r\ncontent-length: 0\r\n\r\n";
        let (answer, _) = parse_answer(text.as_bytes(), false).unwrap().unwrap();
        assert_eq!(answer.retry_after, Some(Duration::from_secs(7)));
        assert!(parse_answer(b"SSH-2.0-OpenSSH\r\n\r\n", false).is_err());
        let two = "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab";
        assert!(parse_answer(two.as_bytes(), false).is_err());
    }
}
