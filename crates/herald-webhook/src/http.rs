//! One HTTP/1.1 connection to the web service, plain or TLS (rustls), and
//! POSTs over it: one at a time, or several pipelined (written together,
//! answered in order). A delivery lane owns one of these and reconnects
//! when it breaks.
//!
//! The client side of HTTP/1.1 is small enough to do here rather than
//! through hyper's client, which sends one request at a time: requests are
//! written as `POST <path> HTTP/1.1` with `host`, `content-type`,
//! `content-length` and the configured headers; answers are read by
//! [`AnswerParser`] as their bytes arrive (heads with `httparse`), so a
//! server can make it neither buffer without bound nor re-read what it has
//! seen: bodies (`content-length`, `chunked`, or up to the end of the
//! connection, as RFC 9112 §6.3 frames them) are discarded as they stream,
//! heads and trailers are limited, interim `1xx` answers are skipped, and
//! `connection: close` (or an HTTP/1.0 answer without keep-alive) ends the
//! connection after that answer. A server that is slow or endless is cut
//! off by the request timeout.
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
    /// Where the reading of the current answer stands.
    parser: AnswerParser,
    /// Requests queued and not written yet.
    output: Vec<u8>,
    /// The server said it closes the connection after an answer already
    /// read: no more answers come, nothing more may be sent.
    closed: bool,
    /// MEASUREMENT ONLY (issue 17): the same connection through hyper's
    /// `client::conn::http1` instead (`io` is then unused).
    hyper: Option<HyperConn>,
}

/// MEASUREMENT ONLY (issue 17): which HTTP/1.1 client the lanes use, from
/// `HERALD_WEBHOOK_HTTP_CLIENT` (`hyper`, else the hand-written one), so
/// that one build can run both side by side in `bench/webhook.sh`.
fn use_hyper() -> bool {
    std::env::var("HERALD_WEBHOOK_HTTP_CLIENT").is_ok_and(|v| v == "hyper")
}

/// The hyper connection future: polled by the lane's own task whenever it
/// waits on the connection (no second task, no wake-ups across tasks).
type HyperDriver =
    hyper::client::conn::http1::Connection<hyper_util::rt::TokioIo<Box<dyn Stream>>, HyperBody>;
type HyperBody = http_body_util::Full<Bytes>;

/// A hyper HTTP/1.1 connection: requests queued, sent one at a time by
/// [`Target::answer`].
struct HyperConn {
    sender: hyper::client::conn::http1::SendRequest<HyperBody>,
    queued: std::collections::VecDeque<hyper::Request<HyperBody>>,
    /// `None` once it has ended (the connection is then unusable).
    driver: Option<std::pin::Pin<Box<HyperDriver>>>,
}

/// Runs `work` while driving the hyper connection.
async fn drive<F: std::future::Future>(
    driver: &mut Option<std::pin::Pin<Box<HyperDriver>>>,
    work: F,
) -> Result<F::Output, SendError> {
    let Some(conn) = driver.as_mut() else {
        return Err(SendError::Http("the connection has ended".into()));
    };
    tokio::pin!(work);
    tokio::select! {
        biased;
        out = &mut work => Ok(out),
        end = conn.as_mut() => {
            *driver = None;
            Err(SendError::Http(match end {
                Ok(()) => "the server closed the connection".into(),
                Err(e) => e.to_string(),
            }))
        }
    }
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
        if let Some(h) = self.hyper.as_mut() {
            let Some(driver) = h.driver.as_mut() else {
                return true;
            };
            let ended = tokio::select! {
                biased;
                _ = driver.as_mut() => true,
                _ = std::future::ready(()) => false,
            };
            if ended {
                h.driver = None;
            }
            return ended || h.sender.is_closed();
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
    /// The first bytes ([`KEPT_BODY`] at most) of the body of an answer
    /// that is not a success; empty for 2xx. The rest is discarded as it
    /// arrives.
    pub body: Bytes,
}

/// Most bytes of an answer's head (status line and headers), and of a
/// chunked body's trailers: a server sending more is treated as broken.
const MAX_HEAD: usize = 64 << 10;
/// Most bytes of one chunk-size line.
const MAX_CHUNK_LINE: usize = 1 << 10;
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
            if use_hyper() {
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                        .await
                        .map_err(|e| SendError::Connect(e.to_string()))?;
                let driver = Some(Box::pin(conn));
                return Ok(Connection {
                    io: Box::new(tokio::io::empty()),
                    input: BytesMut::new(),
                    parser: AnswerParser::default(),
                    output: Vec::new(),
                    closed: false,
                    hyper: Some(HyperConn {
                        sender,
                        queued: Default::default(),
                        driver,
                    }),
                });
            }
            Ok(Connection {
                io,
                input: BytesMut::with_capacity(4096),
                parser: AnswerParser::default(),
                output: Vec::with_capacity(4096),
                closed: false,
                hyper: None,
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
        if let Some(h) = conn.hyper.as_mut() {
            let mut request =
                hyper::Request::new(http_body_util::Full::new(Bytes::copy_from_slice(body)));
            *request.method_mut() = hyper::Method::POST;
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
            h.queued.push_back(request);
            return;
        }
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
        if conn.hyper.is_some() {
            return Ok(());
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

/// Sends the oldest queued request through hyper and reads its answer
/// (the body discarded as it streams, but for [`KEPT_BODY`] bytes of a
/// failed one).
async fn hyper_answer(h: &mut HyperConn) -> Result<Answer, SendError> {
    use http_body_util::BodyExt as _;
    use hyper::body::Body as _;
    let http = |e: hyper::Error| SendError::Http(e.to_string());
    let request = h
        .queued
        .pop_front()
        .ok_or_else(|| SendError::Http("no request queued".into()))?;
    drive(&mut h.driver, h.sender.ready())
        .await?
        .map_err(http)?;
    let response = drive(&mut h.driver, h.sender.send_request(request))
        .await?
        .map_err(http)?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(hyper::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let close = response.version() == hyper::Version::HTTP_10
        || response
            .headers()
            .get(hyper::header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
    let keep = !status.is_success();
    let mut kept = Vec::new();
    let mut body = response.into_body();
    loop {
        let frame = match drive(&mut h.driver, body.frame()).await {
            Ok(frame) => frame,
            // The connection ended: the body is complete only if it says so.
            Err(e) if !body.is_end_stream() => return Err(e),
            Err(_) => None,
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(http)?;
        if let Some(data) = frame.data_ref() {
            if keep && kept.len() < KEPT_BODY {
                let more = data.len().min(KEPT_BODY - kept.len());
                kept.extend_from_slice(&data[..more]);
            }
        }
    }
    Ok(Answer {
        status,
        retry_after,
        close,
        body: Bytes::from(kept),
    })
}

async fn read_answer(conn: &mut Connection) -> Result<Answer, SendError> {
    if let Some(h) = conn.hyper.as_mut() {
        let answer = hyper_answer(h).await?;
        conn.closed |= answer.close || h.sender.is_closed();
        return Ok(answer);
    }
    let mut eof = false;
    loop {
        if let Some(answer) = conn
            .parser
            .feed(&mut conn.input, eof)
            .map_err(SendError::Http)?
        {
            conn.closed |= answer.close;
            return Ok(answer);
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
/// will come (an answer without a length ends there). The whole-buffer form
/// of [`AnswerParser`], for tests.
#[cfg(test)]
fn parse_answer(buf: &[u8], eof: bool) -> Result<Option<(Answer, usize)>, String> {
    let mut input = BytesMut::from(buf);
    let answer = AnswerParser::default().feed(&mut input, eof)?;
    Ok(answer.map(|a| (a, buf.len() - input.len())))
}

/// Reads answers from the bytes of a connection as they arrive, keeping
/// its place between reads: each byte is looked at a bounded number of
/// times (no re-parsing from the start on a slow server), bodies are
/// discarded as they stream (only [`KEPT_BODY`] bytes of a failed answer
/// are kept), heads and trailers are limited to [`MAX_HEAD`] bytes, and
/// interim `1xx` answers are skipped however many come. Framing follows
/// RFC 9112 §6.3: `Transfer-Encoding` ending in `chunked` is chunked, any
/// other transfer coding runs to the end of the connection, else
/// `Content-Length`, else the end of the connection; 204 and 304 have no
/// body.
#[derive(Debug, Default)]
pub struct AnswerParser {
    state: State,
}

/// Where the parser stands in the current answer.
#[derive(Debug)]
enum State {
    /// Reading a head; `scanned` bytes of input hold no blank line.
    Head { scanned: usize },
    /// Reading the body of `answer`.
    Body {
        answer: Answer,
        kept: Vec<u8>,
        framing: Framing,
    },
}

impl Default for State {
    fn default() -> Self {
        State::Head { scanned: 0 }
    }
}

/// How the body being read ends.
#[derive(Debug)]
enum Framing {
    /// This many bytes are left.
    Length(u64),
    /// At the end of the connection.
    UntilClose,
    /// A chunk-size line; `scanned` bytes of input hold no line end.
    ChunkSize { scanned: usize },
    /// This many bytes of the current chunk are left.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer lines up to an empty one; `scanned` as above, `seen` bytes
    /// of trailers so far.
    Trailers { scanned: usize, seen: usize },
}

/// Where `needle` starts in `input`, looking from `from` on.
fn find(input: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    input
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| from + i)
}

impl AnswerParser {
    /// Takes what it can from the start of `input`: returns the answer once
    /// it is complete (its bytes consumed; what follows, e.g. a pipelined
    /// answer, stays in `input`), `Ok(None)` when more bytes are needed.
    /// `eof`: nothing more will come.
    pub fn feed(&mut self, input: &mut BytesMut, eof: bool) -> Result<Option<Answer>, String> {
        loop {
            match &mut self.state {
                State::Head { scanned } => {
                    let Some(blank) = find(input, scanned.saturating_sub(3), b"\r\n\r\n") else {
                        if input.len() > MAX_HEAD {
                            return Err(format!("answer head longer than {MAX_HEAD} bytes"));
                        }
                        if eof {
                            return Err(if input.is_empty() {
                                "the server closed the connection before answering".into()
                            } else {
                                "the server closed the connection in the middle of an answer".into()
                            });
                        }
                        *scanned = input.len();
                        return Ok(None);
                    };
                    let end = blank + 4;
                    if end > MAX_HEAD {
                        return Err(format!("answer head longer than {MAX_HEAD} bytes"));
                    }
                    let head = parse_head(&input[..end])?;
                    input.advance(end);
                    self.state = match head {
                        None => State::Head { scanned: 0 },
                        Some((answer, framing)) => State::Body {
                            answer,
                            kept: Vec::new(),
                            framing,
                        },
                    };
                }
                State::Body {
                    answer,
                    kept,
                    framing,
                } => {
                    let keep = !answer.status.is_success();
                    let mut take = |input: &mut BytesMut, n: usize| {
                        if keep && kept.len() < KEPT_BODY {
                            let more = n.min(KEPT_BODY - kept.len());
                            kept.extend_from_slice(&input[..more]);
                        }
                        input.advance(n);
                    };
                    // Each arm returns or continues unless the body is complete.
                    match framing {
                        Framing::Length(left) | Framing::ChunkData(left) => {
                            let n = usize::try_from(*left)
                                .unwrap_or(usize::MAX)
                                .min(input.len());
                            take(input, n);
                            *left -= n as u64;
                            if *left > 0 {
                                return more_or_cut(eof);
                            }
                            if let Framing::ChunkData(_) = framing {
                                *framing = Framing::ChunkEnd;
                                continue;
                            }
                        }
                        Framing::UntilClose => {
                            let n = input.len();
                            take(input, n);
                            if !eof {
                                return Ok(None);
                            }
                            answer.close = true;
                        }
                        Framing::ChunkEnd => {
                            if input.len() < 2 {
                                return more_or_cut(eof);
                            }
                            if &input[..2] != b"\r\n" {
                                return Err("chunk not followed by CRLF".into());
                            }
                            input.advance(2);
                            *framing = Framing::ChunkSize { scanned: 0 };
                            continue;
                        }
                        Framing::ChunkSize { scanned } => {
                            let Some(eol) = find(input, scanned.saturating_sub(1), b"\r\n") else {
                                if input.len() > MAX_CHUNK_LINE {
                                    return Err("chunk-size line too long".into());
                                }
                                *scanned = input.len();
                                return more_or_cut(eof);
                            };
                            let size = chunk_size(&input[..eol])?;
                            input.advance(eol + 2);
                            *framing = if size == 0 {
                                Framing::Trailers {
                                    scanned: 0,
                                    seen: 0,
                                }
                            } else {
                                Framing::ChunkData(size)
                            };
                            continue;
                        }
                        Framing::Trailers { scanned, seen } => {
                            let Some(eol) = find(input, scanned.saturating_sub(1), b"\r\n") else {
                                if *seen + input.len() > MAX_HEAD {
                                    return Err(format!("trailers longer than {MAX_HEAD} bytes"));
                                }
                                *scanned = input.len();
                                return more_or_cut(eof);
                            };
                            input.advance(eol + 2);
                            *seen += eol + 2;
                            *scanned = 0;
                            if eol != 0 {
                                continue;
                            }
                        }
                    }
                    let State::Body {
                        mut answer, kept, ..
                    } = std::mem::take(&mut self.state)
                    else {
                        continue;
                    };
                    answer.body = Bytes::from(kept);
                    return Ok(Some(answer));
                }
            }
        }
    }
}

/// `Ok(None)` (wait for more), or the error for an answer cut short by the
/// end of the connection.
fn more_or_cut(eof: bool) -> Result<Option<Answer>, String> {
    if eof {
        Err("the server closed the connection in the middle of an answer".into())
    } else {
        Ok(None)
    }
}

/// The size on a chunk-size line (extensions after `;` ignored).
fn chunk_size(line: &[u8]) -> Result<u64, String> {
    let line = std::str::from_utf8(line).map_err(|_| "invalid chunk-size line")?;
    let hex = line.split(';').next().unwrap_or("").trim();
    u64::from_str_radix(hex, 16)
        .ok()
        .filter(|_| !hex.is_empty() && hex.len() <= 16 && !hex.starts_with('+'))
        .ok_or_else(|| format!("invalid chunk size {hex:?}"))
}

/// A complete head (up to and including its blank line): `None` for an
/// interim `1xx` answer, else the answer (without its body) and how its
/// body is framed.
fn parse_head(head: &[u8]) -> Result<Option<(Answer, Framing)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut res = httparse::Response::new(&mut headers);
    match res.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("invalid HTTP answer: incomplete head".into()),
        Err(e) => return Err(format!("invalid HTTP answer: {e}")),
    }
    let code = res.code.unwrap_or(0);
    if (100..200).contains(&code) && code != 101 {
        return Ok(None);
    }
    let status = StatusCode::from_u16(code).map_err(|_| format!("invalid HTTP status {code}"))?;
    let mut length: Option<u64> = None;
    // The last transfer coding, when the header is present.
    let mut coding: Option<bool> = None;
    let mut close = res.version == Some(0);
    let mut retry_after = None;
    for h in res.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value
                .parse()
                .map_err(|_| format!("invalid content-length {value:?}"))?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting content-length headers".into());
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = value.rsplit(',').next().unwrap_or("").trim();
            coding = Some(last.eq_ignore_ascii_case("chunked"));
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
    let framing = match (code, coding, length) {
        (204 | 304, _, _) => Framing::Length(0),
        (_, Some(true), _) => Framing::ChunkSize { scanned: 0 },
        // A transfer coding other than chunked: the body runs to the end
        // of the connection (RFC 9112 §6.3), whatever content-length says.
        (_, Some(false), _) | (_, None, None) => {
            close = true;
            Framing::UntilClose
        }
        (_, None, Some(n)) => Framing::Length(n),
    };
    let answer = Answer {
        status,
        retry_after,
        close,
        body: Bytes::new(),
    };
    Ok(Some((answer, framing)))
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

    use super::{AnswerParser, KEPT_BODY, MAX_HEAD};
    use bytes::BytesMut;
    use proptest::prelude::*;

    /// Feeds `stream` to one parser `step` bytes at a time, as reads would
    /// bring it; returns (status, close, kept body) of each answer, and the
    /// largest the input buffer grew.
    fn feed_in_steps(stream: &[u8], step: usize) -> (Vec<(u16, bool, Vec<u8>)>, usize) {
        let mut parser = AnswerParser::default();
        let mut input = BytesMut::new();
        let mut answers = Vec::new();
        let mut most = 0;
        let mut chunks = stream.chunks(step.max(1)).peekable();
        loop {
            let eof = chunks.peek().is_none();
            while let Some(a) = parser.feed(&mut input, eof).expect("valid") {
                answers.push((a.status.as_u16(), a.close, a.body.to_vec()));
                if eof && input.is_empty() {
                    return (answers, most);
                }
            }
            most = most.max(input.len());
            match chunks.next() {
                Some(c) => input.extend_from_slice(c),
                None => return (answers, most),
            }
        }
    }

    const PIPELINED: &str = "HTTP/1.1 100 Continue\r\n\r\n\
        HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello\
        HTTP/1.1 400 Bad\r\ntransfer-encoding: chunked\r\n\r\n3\r\nbad\r\n4;x=y\r\n req\r\n0\r\nt: 1\r\n\r\n\
        HTTP/1.1 204 No Content\r\ncontent-length: 9\r\n\r\n\
        HTTP/1.1 503 Busy\r\n\r\nuntil the end";

    #[test]
    fn answers_read_in_any_pieces_are_the_same() {
        let whole = feed_in_steps(PIPELINED.as_bytes(), PIPELINED.len()).0;
        assert_eq!(
            whole,
            vec![
                (200, false, vec![]),
                (400, false, b"bad req".to_vec()),
                (204, false, vec![]),
                (503, true, b"until the end".to_vec()),
            ]
        );
        for step in [1, 2, 3, 7, 64] {
            assert_eq!(
                feed_in_steps(PIPELINED.as_bytes(), step).0,
                whole,
                "step {step}"
            );
        }
    }

    #[test]
    fn bodies_are_discarded_as_they_stream() {
        // 100 MB of body in 64 KiB reads: the buffer never holds more than
        // one read, and only the first bytes of a failed answer are kept.
        for status in ["200 OK", "500 Oops"] {
            let mut parser = AnswerParser::default();
            let mut input = BytesMut::from(
                format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n", 100 << 20).as_bytes(),
            );
            let piece = vec![b'x'; 64 << 10];
            let mut answer = None;
            for _ in 0..(100 << 20) / piece.len() {
                assert!(answer.is_none());
                answer = parser.feed(&mut input, false).expect("valid");
                assert!(input.len() <= piece.len(), "{} buffered", input.len());
                input.extend_from_slice(&piece);
            }
            let answer = parser
                .feed(&mut input, false)
                .expect("valid")
                .expect("complete");
            let kept = if status.starts_with('2') {
                0
            } else {
                KEPT_BODY
            };
            assert_eq!(answer.body.len(), kept);
            assert!(input.is_empty());
        }
    }

    #[test]
    fn a_transfer_coding_other_than_chunked_runs_to_the_end() {
        let text = "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\ncontent-length: 2\r\n\r\nabcdef";
        assert_eq!(
            parse(text, false),
            None,
            "content-length is not the framing"
        );
        assert_eq!(parse(text, true), Some((200, true, text.len())));
    }

    #[test]
    fn heads_and_trailers_are_bounded_and_endless_interims_take_no_memory() {
        let mut parser = AnswerParser::default();
        let mut input = BytesMut::from(&b"HTTP/1.1 200 OK\r\nx-endless: "[..]);
        let err = loop {
            input.extend_from_slice(&[b'a'; 4096]);
            match parser.feed(&mut input, false) {
                Ok(None) => assert!(input.len() <= MAX_HEAD + 4096),
                Ok(Some(a)) => panic!("answer from an endless head: {a:?}"),
                Err(e) => break e,
            }
        };
        assert!(err.contains("head longer than"), "{err}");

        let trailers = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n".to_owned()
            + &"x: y\r\n".repeat(MAX_HEAD / 6 + 1);
        let err = parse_answer(trailers.as_bytes(), false).unwrap_err();
        assert!(err.contains("trailers longer than"), "{err}");

        let mut parser = AnswerParser::default();
        let mut input = BytesMut::new();
        for _ in 0..100_000 {
            input.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            assert!(parser.feed(&mut input, false).expect("valid").is_none());
            assert!(input.is_empty());
        }
    }

    #[test]
    fn cut_answers_are_errors_at_the_end_of_the_connection() {
        for cut in [
            "",
            "HTTP/1.1 200 OK\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhel",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhe",
        ] {
            assert!(parse_answer(cut.as_bytes(), true).is_err(), "{cut:?}");
        }
    }

    proptest! {
        /// Whatever a server sends, in whatever pieces: no panic, and the
        /// same answers (or the same failure) as all at once.
        #[test]
        fn any_bytes_in_any_pieces(
            junk in prop::collection::vec(any::<u8>(), 0..200),
            prefix in 0..PIPELINED.len(),
            step in 1usize..40,
        ) {
            let mut stream = PIPELINED.as_bytes()[..prefix].to_vec();
            stream.extend_from_slice(&junk);
            let run = |step: usize| {
                let mut parser = AnswerParser::default();
                let mut input = BytesMut::new();
                let mut out = Vec::new();
                for chunk in stream.chunks(step) {
                    input.extend_from_slice(chunk);
                    loop {
                        match parser.feed(&mut input, false) {
                            Ok(Some(a)) => out.push(Ok(a.status.as_u16())),
                            Ok(None) => break,
                            Err(e) => { out.push(Err(e)); return out; }
                        }
                    }
                }
                out
            };
            let whole = run(stream.len().max(1));
            let pieces = run(step);
            // A failure may be seen at a different point, but the answers
            // before it are the same.
            let ok = |v: &Vec<Result<u16, String>>| v.iter().filter_map(|r| r.clone().ok()).collect::<Vec<_>>();
            prop_assert_eq!(ok(&whole), ok(&pieces));
        }
    }

    /// A web server on loopback that answers its n-th connection the n-th
    /// way: each gets the request, then `answer` writes what it likes.
    async fn hostile_server(
        answers: Vec<fn(tokio::net::TcpStream) -> BoxedAnswer>,
    ) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for answer in answers {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = vec![0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut request).await;
                tokio::spawn(answer(stream));
            }
        });
        addr
    }

    type BoxedAnswer = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

    async fn write_forever(
        mut stream: tokio::net::TcpStream,
        head: &'static [u8],
        again: &'static [u8],
    ) {
        use tokio::io::AsyncWriteExt;
        if stream.write_all(head).await.is_err() {
            return;
        }
        while stream.write_all(again).await.is_ok() {}
    }

    #[tokio::test]
    async fn hostile_servers_cost_bounded_memory_and_time_and_the_next_request_works() {
        use super::{SendError, Target};
        use crate::conf::TlsSettings;
        use crate::endpoint::Endpoint;
        use tokio::io::AsyncWriteExt;
        let endless_interims: fn(tokio::net::TcpStream) -> BoxedAnswer =
            |s| Box::pin(write_forever(s, b"", b"HTTP/1.1 100 Continue\r\n\r\n"));
        let endless_header: fn(tokio::net::TcpStream) -> BoxedAnswer = |s| {
            Box::pin(write_forever(
                s,
                b"HTTP/1.1 200 OK\r\nx-a: ",
                b"aaaaaaaaaaaaaaaa",
            ))
        };
        let huge_body: fn(tokio::net::TcpStream) -> BoxedAnswer = |mut s| {
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
        let slow_body: fn(tokio::net::TcpStream) -> BoxedAnswer = |mut s| {
            Box::pin(async move {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
                    .await;
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    if s.write_all(b"x").await.is_err() {
                        return;
                    }
                }
            })
        };
        let fine: fn(tokio::net::TcpStream) -> BoxedAnswer = |mut s| {
            Box::pin(async move {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
            })
        };
        let addr = hostile_server(vec![
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
        let timeout = std::time::Duration::from_secs(1);
        let endpoint = Endpoint::parse(&format!("http://{addr}/hook")).unwrap();
        let target = Target::new(endpoint, &TlsSettings::default(), &[], timeout, timeout).unwrap();
        for case in ["endless 1xx", "endless header", "100 MB body", "slow body"] {
            let mut conn = target.connect().await.unwrap();
            target.queue(&mut conn, b"{}", &[]);
            target.flush(&mut conn).await.unwrap();
            let answer = target.answer(&mut conn).await;
            match case {
                "endless 1xx" | "slow body" => {
                    assert!(
                        matches!(answer, Err(SendError::RequestTimeout(_))),
                        "{case}: {answer:?}"
                    )
                }
                "endless header" => {
                    assert!(
                        matches!(&answer, Err(SendError::Http(e)) if e.contains("head longer")),
                        "{case}: {answer:?}"
                    )
                }
                _ => assert_eq!(answer.unwrap().status.as_u16(), 200, "{case}"),
            }
            assert!(
                conn.input.capacity() <= MAX_HEAD + (64 << 10),
                "{case}: {} bytes buffered",
                conn.input.capacity()
            );
            drop(conn);
            // A new connection (as the lane makes after a failure) works.
            let mut conn = target.connect().await.unwrap();
            target.queue(&mut conn, b"{}", &[]);
            target.flush(&mut conn).await.unwrap();
            assert_eq!(
                target.answer(&mut conn).await.unwrap().status.as_u16(),
                200,
                "after {case}"
            );
        }
    }
}
