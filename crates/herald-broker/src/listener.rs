//! Accept loops (one per bound address), the connection limit, and graceful
//! shutdown: stop accepting, tell every connection to close (5.0 clients get
//! DISCONNECT 0x8B), wait for them up to a deadline.

use crate::broker::Broker;
use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::protocol::serve_connection;
use crate::support::LogThrottle;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Semaphore, watch};
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
}

/// How long shutdown waits for connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running broker.
pub struct Server {
    /// The shared state (for tests and the binary's endpoints).
    pub broker: Arc<Broker>,
    /// The addresses actually bound (port 0 resolved).
    pub local_addrs: Vec<SocketAddr>,
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
    let max = broker.config.listener.max_connections;
    let sys_interval = broker.config.sys.interval();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(max as usize));
    let mut local_addrs = Vec::new();
    let mut tasks = Vec::new();
    for &addr in &broker.config.listener.bind {
        let listener = bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
        let local = listener.local_addr().unwrap_or(addr);
        tracing::info!(addr = %local, "listening for MQTT");
        local_addrs.push(local);
        tasks.push(tokio::spawn(accept_loop(
            listener,
            broker.clone(),
            slots.clone(),
            shutdown_rx.clone(),
        )));
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
        shutdown,
        tasks,
        slots,
    })
}

/// How many connections may wait in the kernel for `accept`: bursts of
/// connects (thousands of devices after a network outage) would otherwise
/// overflow the default of 128 and wait a second for a SYN retry.
const BACKLOG: u32 = 4096;

/// A listening socket with address reuse and a deep accept backlog.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
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
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            serve_connection(broker, stream, peer, shutdown).await;
            drop(permit);
        });
    }
}

impl Server {
    /// Stops accepting, closes every connection and waits (up to a few
    /// seconds) for them to finish.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
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
