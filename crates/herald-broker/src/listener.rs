//! Accept loops (one per bound address, whatever its kind: TCP, TLS,
//! WebSocket, secure WebSocket), the connection limit, and graceful
//! shutdown: stop accepting, tell every connection to close (5.0 clients get
//! DISCONNECT 0x8B), wait for them up to a deadline.
//!
//! The accept loop only accepts: the PROXY header, TLS and WebSocket
//! handshakes ([`crate::transport`]) run in each connection's own task,
//! under the connect timeout.

use crate::broker::Broker;
use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::protocol::serve_connection;
use crate::support::LogThrottle;
use crate::transport::tls::{TlsContext, TlsError};
use crate::transport::ws::WsSettings;
use crate::transport::{self, Endpoint, ListenerKind, Peer};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration failed validation.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listen address could not be bound.
    #[error("cannot listen for MQTT on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A TLS listener's certificate, key or CA file cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// How long shutdown waits for connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running broker.
pub struct Server {
    /// The shared state (for tests and the binary's endpoints).
    pub broker: Arc<Broker>,
    /// The TCP (`[listener] bind`) addresses actually bound (port 0
    /// resolved).
    pub local_addrs: Vec<SocketAddr>,
    /// Every address bound, with its listener kind.
    pub listeners: Vec<(ListenerKind, SocketAddr)>,
    /// The TLS configurations of the `tls` and `wss` listeners, for
    /// [`Server::reload_certificates`].
    tls: Certificates,
    /// Set to `true` to make everything stop.
    shutdown: watch::Sender<bool>,
    /// Accept loops and the `$SYS` task.
    tasks: Vec<JoinHandle<()>>,
    /// One permit per allowed connection; all back means all closed.
    slots: Arc<Semaphore>,
}

/// Binds every listener and starts serving.
pub async fn start(config: Config) -> Result<Server, ServeError> {
    config.validate()?;
    start_on(Broker::new(config)).await
}

/// Binds every listener of a broker made beforehand (so handlers can be
/// attached to its hooks before the first client connects) and starts
/// serving.
pub async fn start_on(broker: Arc<Broker>) -> Result<Server, ServeError> {
    broker.config.validate()?;
    broker.resume_stored_sessions();
    let max = broker.config.listener.max_connections;
    let sys_interval = broker.config.sys.interval();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(max as usize));
    let endpoints = endpoints(&broker.config)?;
    let all: Vec<SocketAddr> = endpoints.iter().flat_map(|(b, _)| b.clone()).collect();
    let mut listeners = Vec::new();
    let mut tasks = Vec::new();
    for (binds, endpoint) in &endpoints {
        for &addr in binds {
            let listener = bind(addr, &all).map_err(|source| ServeError::Bind { addr, source })?;
            let local = listener.local_addr().unwrap_or(addr);
            let kind = endpoint.kind;
            tracing::info!(addr = %local, listener = kind.name(), "listening for MQTT");
            listeners.push((kind, local));
            tasks.push(tokio::spawn(accept_loop(
                listener,
                endpoint.clone(),
                broker.clone(),
                slots.clone(),
                shutdown_rx.clone(),
            )));
        }
    }
    let local_addrs = listeners
        .iter()
        .filter(|(kind, _)| *kind == ListenerKind::Tcp)
        .map(|(_, addr)| *addr)
        .collect();
    let tls = Certificates(
        endpoints
            .iter()
            .filter_map(|(_, e)| e.tls.clone())
            .collect(),
    );
    if let Some(every) = broker.config.listener.certificate_check_interval()
        && !tls.0.is_empty()
    {
        let watched = Certificates(tls.0.clone());
        tasks.push(tokio::spawn(watched.watch(every, shutdown_rx.clone())));
    }
    if let Some(interval) = sys_interval {
        tasks.push(tokio::spawn(crate::sys::run(
            broker.clone(),
            interval,
            shutdown_rx.clone(),
        )));
    }
    Ok(Server {
        broker,
        local_addrs,
        listeners,
        tls,
        shutdown,
        tasks,
        slots,
    })
}

/// How many connections may wait in the kernel for `accept`: bursts of
/// connects (thousands of devices after a network outage) would otherwise
/// overflow the default of 128 and wait a second for a SYN retry.
const BACKLOG: i32 = 4096;

/// ALPN protocol offered by the TLS listener.
const ALPN_MQTT: &[&[u8]] = &[b"mqtt"];
/// ALPN protocol offered by the secure WebSocket listener.
const ALPN_HTTP: &[&[u8]] = &[b"http/1.1"];

/// The addresses of one listener kind and how its connections are set up.
type Listening = (Vec<SocketAddr>, Arc<Endpoint>);

/// How each configured listener kind sets up its connections, with its
/// addresses; kinds with no address are left out (their files unread).
fn endpoints(config: &crate::config::Config) -> Result<Vec<Listening>, TlsError> {
    let l = &config.listener;
    // A WebSocket message may hold a whole packet and then some.
    let max_message = (config.mqtt.max_packet_size as usize).saturating_add(64 * 1024);
    let header = |name: &str| (!name.is_empty()).then(|| name.to_ascii_lowercase());
    let mut out = vec![(
        l.bind.clone(),
        Endpoint {
            kind: ListenerKind::Tcp,
            proxy_protocol: l.proxy_protocol,
            tls: None,
            ws: None,
        },
    )];
    if !l.tls.bind.is_empty() {
        let tls = TlsContext::load(l.tls.settings(), ALPN_MQTT)?;
        out.push((
            l.tls.bind.clone(),
            Endpoint {
                kind: ListenerKind::Tls,
                proxy_protocol: l.tls.proxy_protocol,
                tls: Some(Arc::new(tls)),
                ws: None,
            },
        ));
    }
    if !l.ws.bind.is_empty() {
        out.push((
            l.ws.bind.clone(),
            Endpoint {
                kind: ListenerKind::Ws,
                proxy_protocol: l.ws.proxy_protocol,
                tls: None,
                ws: Some(WsSettings {
                    path: l.ws.path.clone(),
                    address_header: header(&l.ws.proxy_address_header),
                    max_message,
                }),
            },
        ));
    }
    if !l.wss.bind.is_empty() {
        let tls = TlsContext::load(l.wss.settings(&l.tls), ALPN_HTTP)?;
        out.push((
            l.wss.bind.clone(),
            Endpoint {
                kind: ListenerKind::Wss,
                proxy_protocol: l.wss.proxy_protocol,
                tls: Some(Arc::new(tls)),
                ws: Some(WsSettings {
                    path: l.wss.path.clone(),
                    address_header: header(&l.wss.proxy_address_header),
                    max_message,
                }),
            },
        ));
    }
    Ok(out
        .into_iter()
        .map(|(binds, endpoint)| (binds, Arc::new(endpoint)))
        .collect())
}

/// A listening socket with address reuse and a deep accept backlog. An
/// IPv6 wildcard (`[::]:PORT`) also accepts IPv4 (as IPv4-mapped
/// addresses) where the OS allows, unless `all` binds the IPv4 wildcard
/// on the same port too, in which case each takes its own family. On a
/// machine without IPv6 an IPv6 wildcard falls back to `0.0.0.0:PORT`
/// (said in one INFO line), unless that is listed as well.
fn bind(addr: SocketAddr, all: &[SocketAddr]) -> std::io::Result<TcpListener> {
    match bind_exactly(addr, all) {
        Err(err) if addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) && no_ipv6(&err) => {
            let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port()));
            if all.contains(&v4) {
                return Err(err);
            }
            tracing::info!(%addr, fallback = %v4, error = %err, "no IPv6 on this machine; listening on IPv4 only");
            bind_exactly(v4, all)
        }
        other => other,
    }
}

/// Whether a socket or bind error says the machine has no IPv6: the
/// address is not available, or the family is not supported (EAFNOSUPPORT,
/// 97 on Linux).
fn no_ipv6(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::AddrNotAvailable || err.raw_os_error() == Some(97)
}

fn bind_exactly(addr: SocketAddr, all: &[SocketAddr]) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if let SocketAddr::V6(v6) = addr {
        let v4_too = all.iter().any(|other| {
            other.is_ipv4() && other.ip().is_unspecified() && other.port() == addr.port()
        });
        socket.set_only_v6(!v6.ip().is_unspecified() || (v4_too && addr.port() != 0))?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// First and longest pause of the accept loop after a failed accept.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// Whether an accept failed for want of file descriptors (EMFILE: the
/// process's limit; ENFILE: the system's; the same numbers on Linux, the
/// BSDs and macOS).
fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24))
}

async fn accept_loop(
    listener: TcpListener,
    endpoint: Arc<Endpoint>,
    broker: Arc<Broker>,
    slots: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    // One descriptor held back: at the open-file limit it is let go to
    // accept a waiting client and close it at once, so clients are refused
    // rather than left hanging without CONNACK in the backlog.
    let mut spare = std::fs::File::open("/dev/null").ok();
    let failures = LogThrottle::default();
    let refusals = LogThrottle::default();
    let mut backoff = ACCEPT_BACKOFF.0;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = ACCEPT_BACKOFF.0;
                a
            }
            Err(e) => {
                // Out of file descriptors and the like: back off (up to a
                // second) rather than spin; existing connections go on.
                Metrics::add(&broker.metrics.accept_failures, 1);
                if let Some(n) = failures.hit(std::time::Instant::now()) {
                    tracing::warn!(error = %e, failures = n, "accept failed {n} times since the last warning; backing off");
                }
                if out_of_descriptors(&e) && spare.take().is_some() {
                    let waiting = tokio::time::timeout(ACCEPT_BACKOFF.0, listener.accept());
                    if let Ok(Ok((refused, _))) = waiting.await {
                        drop(refused);
                    }
                    spare = std::fs::File::open("/dev/null").ok();
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            if let Some(n) = refusals.hit(std::time::Instant::now()) {
                tracing::warn!(%peer, refused = n, "connection limit reached; closed {n} new connections since the last warning");
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let broker = broker.clone();
        // A plain TCP connection's task is the connection itself, nothing
        // wrapped around it: what an idle connection costs.
        if endpoint.is_plain() {
            let peer = Peer::new(peer, ListenerKind::Tcp);
            tokio::spawn(serve_connection(broker, stream, peer, permit));
        } else {
            tokio::spawn(open_and_serve(
                broker,
                endpoint.clone(),
                stream,
                peer,
                shutdown.clone(),
                permit,
            ));
        }
    }
}

/// Sets up an accepted socket's transport (PROXY header, TLS, WebSocket),
/// then serves MQTT on it; `permit` is the connection's slot.
async fn open_and_serve(
    broker: Arc<Broker>,
    endpoint: Arc<Endpoint>,
    stream: TcpStream,
    addr: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
) {
    let accepted_at = tokio::time::Instant::now();
    let timeout = broker.config.listener.connect_timeout();
    // Boxed: the handshakes' state (a TLS session mid-handshake is large)
    // would otherwise be part of every connection task's size, plain TCP
    // ones included, for the whole life of the connection.
    let opening = Box::pin(tokio::time::timeout(
        timeout,
        transport::open(&endpoint, stream, addr, accepted_at),
    ));
    let opened = tokio::select! {
        opened = opening => opened,
        _ = shutdown.changed() => return,
    };
    let kind = endpoint.kind;
    let why = match opened {
        Ok(Ok((stream, peer))) => {
            return serve_connection(broker, stream, peer, permit).await;
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("not done within the connect timeout ({timeout:?})"),
    };
    Metrics::add(&broker.metrics.handshake_errors[kind.index()], 1);
    tracing::info!(peer = %addr, listener = kind.name(), error = why, "connection closed before MQTT");
}

/// The TLS configurations of a server's `tls` and `wss` listeners.
#[derive(Clone)]
pub struct Certificates(Vec<Arc<TlsContext>>);

impl Certificates {
    /// Reads the certificate, key and CA files again: new connections use
    /// them, established ones keep what they have. A listener whose files
    /// fail keeps its old ones; the first failure is returned after all were
    /// tried.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.reload_where(|_| true).1
    }

    /// Reloads the listeners whose files changed (time or size) since they
    /// were last read; returns how many were reloaded (or tried), and the
    /// first failure. Reads file metadata: call it off the async workers.
    pub fn reload_changed(&self) -> (usize, Result<(), TlsError>) {
        self.reload_where(TlsContext::files_changed)
    }

    fn reload_where(&self, pick: impl Fn(&TlsContext) -> bool) -> (usize, Result<(), TlsError>) {
        let mut first = None;
        let mut tried = 0;
        for tls in self.0.iter().filter(|tls| pick(tls)) {
            tried += 1;
            match tls.reload() {
                Ok(()) => {
                    tracing::info!(section = tls.settings().section, "certificates reloaded")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "certificates not reloaded; keeping the old ones");
                    first.get_or_insert(e);
                }
            }
        }
        (tried, first.map_or(Ok(()), Err))
    }

    /// Every `every`, reloads the listeners whose files changed, until
    /// `shutdown`.
    async fn watch(self, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let certificates = Arc::new(self);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            let check = certificates.clone();
            // Failures are logged by reload_where.
            let _ = tokio::task::spawn_blocking(move || check.reload_changed()).await;
        }
    }
}

impl Server {
    /// The first address bound for a listener kind.
    pub fn addr_of(&self, kind: ListenerKind) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, addr)| *addr)
    }

    /// Reads the certificate, key and CA files of the TLS and secure
    /// WebSocket listeners again (see [`Certificates::reload`]).
    pub fn reload_certificates(&self) -> Result<(), TlsError> {
        self.tls.reload()
    }

    /// A handle that reloads the certificates, for a signal handler.
    pub fn certificates(&self) -> Certificates {
        self.tls.clone()
    }

    /// Stops accepting, closes every connection and waits (up to a few
    /// seconds) for them to finish.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.broker.close_connections();
        for task in self.tasks {
            let _ = task.await;
        }
        let all = self.broker.config.listener.max_connections;
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.slots.acquire_many(all)).await;
        tracing::info!("broker stopped");
    }
}

/// Runs the broker until `shutdown` resolves, then stops it gracefully.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let server = start(config).await?;
    shutdown.await;
    server.shutdown().await;
    Ok(())
}
