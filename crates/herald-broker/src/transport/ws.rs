//! MQTT over WebSocket: the HTTP/1.1 upgrade (RFC 6455 §4.2) on the
//! listener's path, then binary messages carried as a byte stream
//! ([`WsStream`]) so the MQTT connection above sees no difference from TCP.
//!
//! The upgrade request is read and answered here, so that a request for
//! another path, or one that is not an upgrade, gets a plain HTTP error
//! rather than a closed socket. Framing, masking, ping/pong and the closing
//! handshake are tungstenite's. MQTT packets may be split across messages
//! or several may share one (MQTT 5.0 §6.0): the stream does not care.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use base64::Engine as _;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Sink, Stream as _};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// The subprotocols MQTT clients ask for: `mqtt` (3.1.1 and 5.0) and
/// `mqttv3.1` (3.1).
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];
/// Largest upgrade request accepted (request line and headers).
const MAX_REQUEST: usize = 8 * 1024;
/// Most headers an upgrade request may have.
const MAX_HEADERS: usize = 64;
/// Bytes a WebSocket connection reads at a time (see [`accept`]'s config).
const WS_READ_BUFFER: usize = 4 * 1024;

/// What a WebSocket listener needs to know for the upgrade.
#[derive(Clone, Debug)]
pub struct WsSettings {
    /// The path clients must ask for.
    pub path: String,
    /// A header that holds the client's address, lower case; `None`: none.
    pub address_header: Option<String>,
    /// Largest WebSocket message (and frame) accepted.
    pub max_message: usize,
}

/// Why an upgrade failed.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// The request was refused with this HTTP status.
    #[error("upgrade refused: {0} {1}")]
    Refused(u16, &'static str),
    /// Reading or writing failed.
    #[error("upgrade: {0}")]
    Io(#[from] io::Error),
}

/// Reads the upgrade request from `stream`, answers it, and returns the
/// WebSocket byte stream. Where `settings.address_header` names a header
/// that holds an address, `peer` becomes that address.
pub async fn accept<S>(
    mut stream: S,
    settings: &WsSettings,
    peer: &mut SocketAddr,
) -> Result<WsStream<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(1024);
    let (head_len, upgrade) = loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => break (len, check(&request, settings)),
            Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST => continue,
            Ok(httparse::Status::Partial) => {
                break (0, Err((431, "Request Header Fields Too Large")));
            }
            Err(httparse::Error::TooManyHeaders) => {
                break (0, Err((431, "Request Header Fields Too Large")));
            }
            Err(_) => break (0, Err((400, "Bad Request"))),
        }
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err((status, reason)) => {
            let body = format!("{status} {reason}\n");
            let mut response = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n\
                 Content-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            if status == 426 {
                response.push_str("Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
            }
            response.push_str("\r\n");
            response.push_str(&body);
            stream.write_all(response.as_bytes()).await?;
            let _ = stream.shutdown().await;
            return Err(WsError::Refused(status, reason));
        }
    };
    if let Some(ip) = upgrade.address {
        *peer = SocketAddr::new(
            ip.ip(),
            if ip.port() == 0 {
                peer.port()
            } else {
                ip.port()
            },
        );
    }
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        upgrade.accept
    );
    if let Some(protocol) = upgrade.protocol {
        response.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
    }
    response.push_str("\r\n");
    stream.write_all(response.as_bytes()).await?;
    stream.flush().await?;
    buf.advance(head_len);
    Ok(WsStream::over(stream, buf, Role::Server, settings.max_message).await)
}

/// The client side: asks `host` for an upgrade on `path` with the `mqtt`
/// subprotocol, checks the answer (101, the `Sec-WebSocket-Accept` for
/// `key`, the subprotocol) and returns the WebSocket byte stream. Used by
/// the load generator (`herald-bench`) to measure the WebSocket listeners;
/// `key` is the client's nonce (16 bytes, RFC 6455 §4.1).
pub async fn connect<S>(
    mut stream: S,
    host: &str,
    path: &str,
    key: [u8; 16],
    max_message: usize,
) -> Result<WsStream<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let key = base64::engine::general_purpose::STANDARD.encode(key);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let refused = |status| WsError::Refused(status, "upgrade answer");
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let header = |name: &str| {
                    response
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .and_then(|h| std::str::from_utf8(h.value).ok())
                };
                if response.code != Some(101)
                    || header("sec-websocket-accept") != Some(accept_key(&key).as_str())
                    || header("sec-websocket-protocol") != Some("mqtt")
                {
                    return Err(refused(response.code.unwrap_or(0)));
                }
                buf.advance(len);
                return Ok(WsStream::over(stream, buf, Role::Client, max_message).await);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST => continue,
            Ok(httparse::Status::Partial) | Err(_) => return Err(refused(0)),
        }
    }
}

/// What an acceptable upgrade request asked for.
struct Upgrade {
    /// The `Sec-WebSocket-Accept` answer.
    accept: String,
    /// The subprotocol chosen, if the client offered one.
    protocol: Option<&'static str>,
    /// The client address from the address header (port 0: none given).
    address: Option<SocketAddr>,
}

/// Checks an upgrade request; an error is the HTTP status to answer.
fn check(
    request: &httparse::Request<'_, '_>,
    settings: &WsSettings,
) -> Result<Upgrade, (u16, &'static str)> {
    let header = |name: &'static str| header_values(request, name);
    let has_token = |name: &'static str, token: &str| {
        header(name).any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    let path = request.path.unwrap_or_default();
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if path != settings.path {
        return Err((404, "Not Found"));
    }
    if request.method != Some("GET") {
        return Err((405, "Method Not Allowed"));
    }
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err((426, "Upgrade Required"));
    }
    if !header("sec-websocket-version").any(|v| v.trim() == "13") {
        return Err((426, "Upgrade Required"));
    }
    let key = header("sec-websocket-key")
        .next()
        .map(str::trim)
        .filter(|k| {
            base64::engine::general_purpose::STANDARD
                .decode(k)
                .is_ok_and(|raw| raw.len() == 16)
        })
        .ok_or((400, "Bad Request"))?;
    let offered: Vec<&str> = header("sec-websocket-protocol")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let protocol = offered
        .iter()
        .find_map(|p| SUBPROTOCOLS.iter().find(|s| *s == p).copied());
    if !offered.is_empty() && protocol.is_none() {
        return Err((400, "Bad Request"));
    }
    let address = settings
        .address_header
        .as_deref()
        .and_then(|name| header_values(request, name).next())
        .and_then(forwarded_address);
    Ok(Upgrade {
        accept: accept_key(key),
        protocol,
        address,
    })
}

/// The values of every `name` header of `request` (those that are text).
fn header_values<'r>(
    request: &'r httparse::Request<'_, '_>,
    name: &'r str,
) -> impl Iterator<Item = &'r str> {
    request
        .headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
}

/// The first address of an `X-Forwarded-For`-style value (`ip`, `ip:port`
/// or `[ipv6]:port`, comma-separated); port 0 when it gives none.
fn forwarded_address(value: &str) -> Option<SocketAddr> {
    let first = value.split(',').next()?.trim();
    if let Ok(addr) = first.parse::<SocketAddr>() {
        return Some(addr);
    }
    let bare = first.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0))
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
fn accept_key(key: &str) -> String {
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ctx.finish())
}

/// A WebSocket connection as a byte stream: binary messages read are
/// concatenated; each write becomes one binary message. Text messages are
/// an error (MQTT 5.0 §6.0 requires binary); pings are answered and a
/// close ends the stream.
pub struct WsStream<S> {
    /// The WebSocket.
    inner: WebSocketStream<S>,
    /// What is left of the last message received.
    pending: Bytes,
    /// A failure met after bytes were read: the next read returns it.
    failed: Option<io::Error>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// The stream over an upgraded connection; `read` holds what was read
    /// past the upgrade's head.
    async fn over(stream: S, read: BytesMut, role: Role, max_message: usize) -> Self {
        // tungstenite's defaults read into a 128 KiB buffer it zero-fills
        // (and keeps) and collect 128 KiB of writes before sending: 130 KB
        // of RSS for every idle WebSocket connection (bench/listeners.sh).
        // Reads of WS_READ_BUFFER suffice (a larger frame still gets a
        // buffer of its size), and writes go out at once: the connection
        // already writes its packets in batches and flushes after them.
        let config = WebSocketConfig::default()
            .read_buffer_size(WS_READ_BUFFER)
            .write_buffer_size(0)
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message));
        let inner =
            WebSocketStream::from_partially_read(stream, read.to_vec(), role, Some(config)).await;
        WsStream {
            inner,
            pending: Bytes::new(),
            failed: None,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    /// Fills `buf` with as many received messages as are there without
    /// waiting (not just one): a peer that sends each packet, or each small
    /// batch, as its own message would otherwise cost the connection above
    /// one turn of its loop, and one answering write, per message.
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.failed.take() {
            return Poll::Ready(Err(e));
        }
        let start = buf.filled().len();
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending.split_to(n));
                if buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
            }
            let got = buf.filled().len() > start;
            let failure = match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Pending if got => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
                // The end: what was read comes first, then (the stream
                // being fused) the next read returns the end again.
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Ok(Message::Binary(data)))) => {
                    self.pending = data;
                    continue;
                }
                // Pongs are queued by tungstenite and sent on the next poll.
                Poll::Ready(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => {
                    continue;
                }
                // tungstenite answers the close; the next poll ends.
                Poll::Ready(Some(Ok(Message::Close(_)))) => continue,
                Poll::Ready(Some(Ok(Message::Text(_)))) => io::Error::new(
                    io::ErrorKind::InvalidData,
                    "text WebSocket message; MQTT uses binary messages",
                ),
                Poll::Ready(Some(Err(e))) => io::Error::other(e),
            };
            // Bytes already in `buf` are delivered first; the error is the
            // next read's answer.
            if got {
                self.failed = Some(failure);
                return Poll::Ready(Ok(()));
            }
            return Poll::Ready(Err(failure));
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut inner = Pin::new(&mut self.inner);
        ready!(inner.as_mut().poll_ready(cx)).map_err(io::Error::other)?;
        inner
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(io::Error::other)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner)
            .poll_flush(cx)
            .map_err(io::Error::other)
    }

    /// Sends our Close frame, then reads until the peer's Close reply (or
    /// the end of the stream) before the socket is dropped: a client whose
    /// Close reply met a closed socket would see an error (EPIPE) after a
    /// clean DISCONNECT. The caller bounds how long this may take.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.inner).poll_close(cx)).map_err(io::Error::other)?;
        loop {
            match ready!(Pin::new(&mut self.inner).poll_next(cx)) {
                None | Some(Err(_)) => return Poll::Ready(Ok(())),
                Some(Ok(_)) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    /// A client frame (masked, final, payload under 126 bytes).
    fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xFA, 0x21, 0x3D];
        let mut out = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// The server side of a WebSocket over an in-memory pipe, and the
    /// pipe's client end (raw bytes).
    async fn server_over_pipe() -> (WsStream<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let (server, client) = tokio::io::duplex(64 * 1024);
        let ws = WsStream::over(server, BytesMut::new(), Role::Server, 1 << 20).await;
        (ws, client)
    }

    #[tokio::test]
    async fn one_read_takes_every_message_already_received() {
        let (mut ws, mut client) = server_over_pipe().await;
        let mut wire = client_frame(0x2, b"first ");
        wire.extend(client_frame(0x2, b"second "));
        wire.extend(client_frame(0x9, b"ping"));
        wire.extend(client_frame(0x2, b"third"));
        client.write_all(&wire).await.unwrap();
        let mut buf = [0u8; 256];
        let n = ws.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"first second third");
        // A read that fills the caller's buffer keeps the rest for the next.
        client
            .write_all(&client_frame(0x2, b"0123456789"))
            .await
            .unwrap();
        let mut small = [0u8; 4];
        let n = ws.read(&mut small).await.unwrap();
        assert_eq!(&small[..n], b"0123");
        let n = ws.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"456789");
    }

    #[tokio::test]
    async fn bytes_before_a_text_message_come_first_then_the_error() {
        let (mut ws, mut client) = server_over_pipe().await;
        let mut wire = client_frame(0x2, b"binary");
        wire.extend(client_frame(0x1, b"text"));
        client.write_all(&wire).await.unwrap();
        let mut buf = [0u8; 256];
        let n = ws.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"binary");
        let e = ws.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn bytes_before_the_close_come_first_then_the_end() {
        let (mut ws, mut client) = server_over_pipe().await;
        let mut wire = client_frame(0x2, b"last words");
        wire.extend(client_frame(0x8, &1000u16.to_be_bytes()));
        client.write_all(&wire).await.unwrap();
        let mut buf = [0u8; 256];
        let n = ws.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"last words");
        assert_eq!(ws.read(&mut buf).await.unwrap(), 0);
    }

    #[test]
    fn forwarded_addresses() {
        assert_eq!(
            forwarded_address("203.0.113.9, 10.0.0.1"),
            "203.0.113.9:0".parse().ok()
        );
        assert_eq!(
            forwarded_address("203.0.113.9:4711"),
            "203.0.113.9:4711".parse().ok()
        );
        assert_eq!(
            forwarded_address("2001:db8::9"),
            "[2001:db8::9]:0".parse().ok()
        );
        assert_eq!(
            forwarded_address("[2001:db8::9]:80"),
            "[2001:db8::9]:80".parse().ok()
        );
        assert_eq!(forwarded_address("unknown"), None);
    }
}
