//! What a connection runs over before MQTT starts: the layers between an
//! accepted TCP socket and the MQTT connection, and what they learn about
//! the client.
//!
//! Each listener kind ([`ListenerKind`]) is a recipe of layers, applied in
//! this order, all optional: a PROXY protocol header ([`proxy`]), a TLS
//! handshake ([`tls`]), a WebSocket upgrade ([`ws`]). [`open`] applies them
//! in the connection's own task (never in the accept loop, so a slow
//! handshake holds up no one else) and yields one boxed byte stream and a
//! [`Peer`]: the client's address (the one the PROXY header or the address
//! header carried, if any), its certificate's names, and the listener kind
//! for metrics. Plain TCP without a PROXY header skips all of this and stays
//! unboxed. Nothing here knows MQTT.

pub mod config;
pub mod proxy;
pub mod tls;
pub mod ws;
pub mod x509;

use std::net::SocketAddr;
use std::sync::Arc;

use herald_codec::ByteStr;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::PeerCertAsUsername;
use crate::connection::Stream;
use proxy::{ProxyError, Rewind};
use tls::TlsContext;
use ws::{WsError, WsSettings};
pub use x509::PeerCert;

/// The kinds of listener; each has its own metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListenerKind {
    /// MQTT over TCP.
    Tcp,
    /// MQTT over TLS.
    Tls,
    /// MQTT over WebSocket.
    Ws,
    /// MQTT over WebSocket over TLS.
    Wss,
}

impl ListenerKind {
    /// Every kind, in the order of [`ListenerKind::index`].
    pub const ALL: [ListenerKind; 4] = [
        ListenerKind::Tcp,
        ListenerKind::Tls,
        ListenerKind::Ws,
        ListenerKind::Wss,
    ];

    /// The name used in logs and as the `listener` metrics label.
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Tcp => "tcp",
            ListenerKind::Tls => "tls",
            ListenerKind::Ws => "ws",
            ListenerKind::Wss => "wss",
        }
    }

    /// Position in [`ListenerKind::ALL`] (for per-kind counters).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Who is at the other end of a connection, as far as the layers below
/// MQTT can tell.
#[derive(Clone, Debug)]
pub struct Peer {
    /// The client's address: the socket's, or the one a PROXY header or
    /// an address header carried.
    pub addr: SocketAddr,
    /// The kind of listener it came in on.
    pub listener: ListenerKind,
    /// The names of its verified TLS client certificate, if it gave one.
    pub cert: Option<Arc<PeerCert>>,
    /// `Some`: the user name is the certificate's, not CONNECT's (`None`
    /// inside when there is no certificate or it has no such name).
    pub cert_username: Option<Option<ByteStr>>,
    /// When the connection was accepted: the connect timeout counts from
    /// here, through the handshakes and CONNECT.
    pub accepted_at: Instant,
}

impl Peer {
    /// A peer known only by its socket address.
    pub fn new(addr: SocketAddr, listener: ListenerKind) -> Peer {
        Peer {
            addr,
            listener,
            cert: None,
            cert_username: None,
            accepted_at: Instant::now(),
        }
    }
}

/// A byte stream of any of the layered kinds.
pub type BoxedStream = Box<dyn Layered>;

/// What a layered stream is: a boxed `AsyncRead + AsyncWrite`.
pub trait Layered: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Layered for T {}

impl Stream for BoxedStream {}

/// How connections of one listener are set up.
pub struct Endpoint {
    /// The listener kind.
    pub kind: ListenerKind,
    /// Whether connections start with a PROXY header.
    pub proxy_protocol: bool,
    /// The TLS configuration (`tls` and `wss`).
    pub tls: Option<Arc<TlsContext>>,
    /// The WebSocket settings (`ws` and `wss`).
    pub ws: Option<WsSettings>,
}

impl Endpoint {
    /// Whether connections are plain TCP sockets with nothing to set up.
    pub fn is_plain(&self) -> bool {
        !self.proxy_protocol && self.tls.is_none() && self.ws.is_none()
    }
}

/// Why a connection failed before MQTT started.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The PROXY header was missing or bad.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// The TLS handshake failed (bad or missing client certificate, no
    /// common protocol version, ...).
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    /// The WebSocket upgrade failed.
    #[error(transparent)]
    Ws(#[from] WsError),
}

/// Runs the layers of `endpoint` over an accepted socket.
pub async fn open(
    endpoint: &Endpoint,
    mut tcp: TcpStream,
    addr: SocketAddr,
    accepted_at: Instant,
) -> Result<(BoxedStream, Peer), TransportError> {
    let mut peer = Peer {
        accepted_at,
        ..Peer::new(addr, endpoint.kind)
    };
    let mut stream: BoxedStream = if endpoint.proxy_protocol {
        let (carried, rest) = proxy::read_header(&mut tcp).await?;
        if let Some(carried) = carried {
            peer.addr = carried;
        }
        Box::new(Rewind::new(rest, tcp))
    } else {
        Box::new(tcp)
    };
    if let Some(tls) = &endpoint.tls {
        let session = tls
            .acceptor()
            .accept(stream)
            .await
            .map_err(TransportError::Tls)?;
        let cert = session
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| PeerCert::from_der(leaf));
        peer.cert_username = match tls.peer_cert_as_username() {
            PeerCertAsUsername::No => None,
            PeerCertAsUsername::Cn => {
                Some(cert.as_ref().and_then(|c| c.cn.clone()).map(Into::into))
            }
            PeerCertAsUsername::Dn => Some(cert.as_ref().map(|c| c.dn.clone().into())),
        };
        peer.cert = cert.map(Arc::new);
        stream = Box::new(session);
    }
    if let Some(ws) = &endpoint.ws {
        stream = Box::new(ws::accept(stream, ws, &mut peer.addr).await?);
    }
    Ok((stream, peer))
}
