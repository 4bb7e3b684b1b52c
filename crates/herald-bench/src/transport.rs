//! What a connection's bytes travel over: plain TCP, TLS, WebSocket or
//! WebSocket over TLS (the broker's four listener kinds).
//!
//! Plain TCP is driven through readiness (`try_read`/`try_write` and
//! `ready`), the cheapest way tokio offers. TLS and WebSocket are layers
//! that only speak `poll_read`/`poll_write`: [`Io`] polls them without a
//! real waker for the non-blocking calls, and `ready` polls them with the
//! task's waker, doing the read or write it waits for itself; what it moved
//! is reported by the next `try_fill`/`try_flush`, so the hot loops see the
//! same contract for every kind.

use bytes::{Buf, BytesMut};
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// Room made in the read buffer before reading from a layer (one TLS
/// record's worth).
const LAYER_READ: usize = 16 * 1024;
/// Largest WebSocket message accepted from the broker.
const MAX_WS_MESSAGE: usize = 16 * 1024 * 1024;

/// The listener kind to connect to.
#[derive(Debug, Clone, Default)]
pub enum Transport {
    /// Plain TCP.
    #[default]
    Tcp,
    /// TLS.
    Tls(Tls),
    /// WebSocket on this path.
    Ws(String),
    /// WebSocket over TLS on this path.
    Wss(Tls, String),
}

impl Transport {
    /// The kind's name, as the `--transport` flag spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls(_) => "tls",
            Transport::Ws(_) => "ws",
            Transport::Wss(..) => "wss",
        }
    }
}

/// TLS client settings: the CAs trusted and the name the certificate must
/// carry. ALPN offers `mqtt` (MQTT over TLS) or `http/1.1` (WebSocket over
/// TLS), as the broker's listeners expect.
#[derive(Clone)]
pub struct Tls {
    /// The client configuration offering `mqtt`.
    mqtt: Arc<ClientConfig>,
    /// The same offering `http/1.1`.
    http: Arc<ClientConfig>,
    /// The server's name (a DNS name or an IP address).
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Trusts the CA certificates in the PEM file `cafile`; the broker's
    /// certificate must be valid for `server_name`.
    pub fn new(cafile: &Path, server_name: &str) -> Result<Tls, String> {
        let what = |e: &dyn std::fmt::Display| format!("{}: {e}", cafile.display());
        let pem = std::fs::read(cafile).map_err(|e| what(&e))?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots
                .add(cert.map_err(|e| what(&e))?)
                .map_err(|e| what(&e))?;
        }
        if roots.is_empty() {
            return Err(what(&"no certificate in the file"));
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let offering = |alpn: &[u8]| {
            let mut c = config.clone();
            c.alpn_protocols = vec![alpn.to_vec()];
            Arc::new(c)
        };
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| format!("{server_name}: {e}"))?;
        Ok(Tls {
            mqtt: offering(b"mqtt"),
            http: offering(b"http/1.1"),
            server_name,
        })
    }

    async fn wrap<S>(&self, stream: S, ws: bool) -> io::Result<tokio_rustls::client::TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let config = if ws { &self.http } else { &self.mqtt };
        TlsConnector::from(Arc::clone(config))
            .connect(self.server_name.clone(), stream)
            .await
    }
}

/// A layered stream (TLS, WebSocket).
trait Layer: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send> Layer for T {}

/// A connection's byte stream.
pub(crate) enum Io {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS and/or WebSocket over TCP.
    Layered(Box<Layered>),
}

/// A layered stream and what `ready` moved that is not yet reported.
pub(crate) struct Layered {
    /// The stream.
    stream: Pin<Box<dyn Layer>>,
    /// Bytes `ready` read into the read buffer.
    read: usize,
    /// Bytes `ready` took from the write buffer.
    written: usize,
    /// `ready` saw the end of the stream.
    eof: bool,
    /// Bytes were written to the layer and not yet flushed through it.
    unflushed: bool,
}

/// A WebSocket nonce: unique per connection of this process.
fn ws_key() -> [u8; 16] {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut key = [0; 16];
    key[..8].copy_from_slice(&n.to_le_bytes());
    key[8..].copy_from_slice(&t.to_le_bytes());
    key
}

fn ws_error(e: herald_broker::transport::ws::WsError) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionRefused, e.to_string())
}

impl Io {
    /// Puts `transport`'s layers over a connected socket; `host` is the
    /// WebSocket `Host` header.
    pub(crate) async fn open(tcp: TcpStream, transport: &Transport, host: &str) -> io::Result<Io> {
        use herald_broker::transport::ws;
        let layer: Pin<Box<dyn Layer>> = match transport {
            Transport::Tcp => return Ok(Io::Tcp(tcp)),
            Transport::Tls(tls) => Box::pin(tls.wrap(tcp, false).await?),
            Transport::Ws(path) => Box::pin(
                ws::connect(tcp, host, path, ws_key(), MAX_WS_MESSAGE)
                    .await
                    .map_err(ws_error)?,
            ),
            Transport::Wss(tls, path) => Box::pin(
                ws::connect(
                    tls.wrap(tcp, true).await?,
                    host,
                    path,
                    ws_key(),
                    MAX_WS_MESSAGE,
                )
                .await
                .map_err(ws_error)?,
            ),
        };
        Ok(Io::Layered(Box::new(Layered {
            stream: layer,
            read: 0,
            written: 0,
            eof: false,
            unflushed: false,
        })))
    }

    /// Reads what is there without waiting: `Ok(0)` at the end of the
    /// stream, `WouldBlock` when nothing is there.
    pub(crate) fn try_read(&mut self, rbuf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Io::Tcp(s) => s.try_read_buf(rbuf),
            Io::Layered(l) => {
                if l.read > 0 {
                    return Ok(std::mem::take(&mut l.read));
                }
                if l.eof {
                    return Ok(0);
                }
                let mut cx = Context::from_waker(Waker::noop());
                match l.poll_read(&mut cx, rbuf) {
                    Poll::Ready(r) => r,
                    Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
        }
    }

    /// Writes what the stream takes without waiting (`WouldBlock`: none)
    /// and removes it from `wbuf`.
    pub(crate) fn try_write(&mut self, wbuf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Io::Tcp(s) => {
                let n = s.try_write(wbuf)?;
                wbuf.advance(n);
                Ok(n)
            }
            Io::Layered(l) => {
                let mut cx = Context::from_waker(Waker::noop());
                // Pending: nothing moved now; what `ready` moved is still news.
                let _ = l.poll_write(&mut cx, wbuf)?;
                match std::mem::take(&mut l.written) {
                    0 => Err(io::ErrorKind::WouldBlock.into()),
                    n => Ok(n),
                }
            }
        }
    }

    /// Bytes written into a layer that it has not flushed yet (0 or 1: a
    /// flag, so callers that wait for `pending() == 0` keep flushing).
    pub(crate) fn unflushed(&self) -> usize {
        match self {
            Io::Tcp(_) => 0,
            Io::Layered(l) => usize::from(l.unflushed),
        }
    }

    /// Waits until there is something to read (or, with `write`, until
    /// writing can go on).
    pub(crate) async fn ready(
        &mut self,
        write: bool,
        rbuf: &mut BytesMut,
        wbuf: &mut BytesMut,
    ) -> io::Result<()> {
        match self {
            Io::Tcp(s) => {
                let interest = if write {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                s.ready(interest).await.map(drop)
            }
            Io::Layered(l) => {
                std::future::poll_fn(|cx| {
                    let wrote = write && l.poll_write(cx, wbuf)?.is_ready();
                    let read = match l.poll_read(cx, rbuf) {
                        Poll::Ready(Ok(0)) => {
                            l.eof = true;
                            true
                        }
                        Poll::Ready(Ok(n)) => {
                            l.read += n;
                            true
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => false,
                    };
                    if wrote || read {
                        Poll::Ready(Ok(()))
                    } else {
                        Poll::Pending
                    }
                })
                .await
            }
        }
    }

    /// Closes the stream (TLS close_notify, WebSocket Close).
    pub(crate) async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Io::Tcp(s) => s.shutdown().await,
            Io::Layered(l) => l.stream.shutdown().await,
        }
    }
}

impl Layered {
    /// Reads onto the end of `rbuf`, making room for [`LAYER_READ`] bytes
    /// first (into its spare capacity: nothing is zero-filled per read).
    fn poll_read(&mut self, cx: &mut Context<'_>, rbuf: &mut BytesMut) -> Poll<io::Result<usize>> {
        rbuf.reserve(LAYER_READ);
        std::pin::pin!(self.stream.read_buf(rbuf)).poll(cx)
    }

    /// Writes from `wbuf` into the layer and flushes it through;
    /// `Ready` when anything moved (counted in `written`) or the flush
    /// completed.
    fn poll_write(&mut self, cx: &mut Context<'_>, wbuf: &mut BytesMut) -> Poll<io::Result<()>> {
        let mut moved = false;
        while !wbuf.is_empty() {
            match self.stream.as_mut().poll_write(cx, wbuf)? {
                Poll::Ready(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(n) => {
                    wbuf.advance(n);
                    self.written += n;
                    self.unflushed = true;
                    moved = true;
                }
                Poll::Pending => break,
            }
        }
        if self.unflushed && self.stream.as_mut().poll_flush(cx)?.is_ready() {
            self.unflushed = false;
            moved = true;
        }
        if moved {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}
