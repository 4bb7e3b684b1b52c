//! One client connection's protocol state machine: from the CONNECT
//! handshake ([`connect`]) through the packet loop ([`Client::run`]) to the
//! end of the connection ([`disconnect`]). One file per packet family.
//!
//! A connection is one tokio task; it never blocks on another connection:
//! it hands messages to other sessions' queues and is woken when its own
//! queue fills. It must never hold a session or broker lock across `.await`.

pub mod connect;
pub mod disconnect;
pub mod ping;
pub mod publish;
pub mod subscribe;

use crate::access::Rights;
use crate::ack::PendingAcks;
use crate::broker::Broker;
use crate::connection::{Io, Stream, WRITE_HIGH_WATER};
use crate::metrics::Metrics;
use crate::session::{Attachment, Kick, Owner, Session};
use crate::transport::Peer;
use disconnect::Close;
use herald_codec::{ByteStr, Packet, PacketType, Protocol, ReasonCode, Will, take_short_ack};
use publish::PRESSURE_MAX;
use std::collections::HashMap;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, sleep_until};

/// Packet handling that has to wait (see [`Client::handle`]).
type Waiting<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Close>> + Send + 'a>>;

/// A connected client after a successful CONNECT.
pub struct Client<S> {
    /// Shared broker state.
    pub(crate) broker: Arc<Broker>,
    /// The socket and its buffers.
    pub(crate) io: Io<S>,
    /// Protocol level of this connection.
    pub(crate) protocol: Protocol,
    /// The session this connection owns (released when the client is
    /// dropped).
    pub(crate) session: Attachment,
    /// Who the client is (assigned client id, user name, peer, ...), as
    /// events report it: the same `Owner` its session keeps, shared.
    pub(crate) owner: Arc<Owner>,
    /// Keep alive in force (after any Server Keep Alive), seconds; zero:
    /// none. (Small integers here rather than `Duration`s and `usize`s:
    /// every byte of a `Client` is paid by every idle connection.)
    pub(crate) keep_alive: u16,
    /// The will message, cleared by a normal DISCONNECT.
    pub(crate) will: Option<Arc<Will>>,
    /// Session Expiry Interval in force (seconds).
    pub(crate) session_expiry: u32,
    /// Whether CONNECT asked for expiry 0 (5.0 forbids raising it later).
    pub(crate) connect_expiry_zero: bool,
    /// Client's Receive Maximum: our outbound QoS 1/2 window is the lower of
    /// this and `mqtt.max_inflight`.
    pub(crate) send_window: u16,
    /// Client's Maximum Packet Size: larger messages are not sent to it.
    pub(crate) client_max_packet: u32,
    /// Client's Topic Alias Maximum (server → client aliases).
    pub(crate) client_alias_max: u16,
    /// Topic aliases of this connection, boxed when first used: most
    /// connections never use aliases, and every byte of a `Client` is paid
    /// by every idle connection.
    pub(crate) aliases: Option<Box<Aliases>>,
    /// The session generation this connection owns.
    pub(crate) generation: u64,
    /// Backpressure: the pause for a congested session this client feeds
    /// (see `push_back` in publish.rs). Boxed: set only while paused, and
    /// an idle connection's task pays for every byte kept inline.
    pub(crate) pressure: Option<Box<Pause>>,
    /// A congested session waited on in vain; not waited on again until it
    /// has drained.
    pub(crate) ignored: Option<std::sync::Weak<Session>>,
    /// PUBACKs / PUBRECs waiting, in order, for what hooks hold them on.
    pub(crate) acks: PendingAcks,
    /// What this client may do (`None`: no rules apply to it).
    pub(crate) rights: Option<Arc<dyn Rights>>,
}

/// A connection's pause for a congested subscriber it feeds.
pub(crate) struct Pause {
    /// The congested session.
    session: Arc<Session>,
    /// Until when to wait for it (renewed while it takes messages).
    until: Instant,
    /// Messages it had taken when the pause (or its renewal) began.
    taken: u64,
    /// The wait for it to drain, made when the packet loop first waits.
    drained: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Pause {
    /// A pause of [`PRESSURE_MAX`] for `session`.
    pub(crate) fn new(session: Arc<Session>) -> Box<Pause> {
        Box::new(Pause {
            taken: session.taken(),
            session,
            until: Instant::now() + PRESSURE_MAX,
            drained: None,
        })
    }
}

/// The topic aliases of a connection (5.0).
#[derive(Default)]
pub(crate) struct Aliases {
    /// Topics we gave an alias.
    pub(crate) outgoing: HashMap<ByteStr, u16>,
    /// Aliases the client set.
    pub(crate) incoming: HashMap<u16, ByteStr>,
}

/// What ended a wait of the packet loop, in the order they are checked.
enum Woken {
    /// The connection was told to close (taken over, server shutdown).
    Kick(Kick),
    /// Bytes written (0: a flush).
    Written(std::io::Result<usize>),
    /// Bytes read (0: end of stream).
    Read(std::io::Result<usize>),
    /// The session queue has something.
    Queue,
    /// A congested subscriber this client feeds has drained.
    Drained,
    /// The keep-alive or pause timer fired (perhaps early).
    Timer,
    /// Something else may have changed (held acknowledgements, held
    /// sends).
    Other,
}

/// What one turn of the packet loop waits for besides the session's
/// wake-up and a kick (a byte: it is kept in every waiting connection's
/// task).
#[derive(Clone, Copy)]
struct Wants(u8);

impl Wants {
    /// Bytes to write or flush.
    const WRITE: u8 = 1;
    /// Reading is allowed (not paused, buffers below their limits).
    const READ: u8 = 2;
    /// Acknowledgements waiting for what hooks hold them on.
    const ACKS: u8 = 4;
    /// Written bytes held back for the store.
    const HELD: u8 = 8;
    /// The keep-alive or pause timer.
    const TIMER: u8 = 16;

    fn empty() -> Wants {
        Wants(0)
    }

    fn set(&mut self, what: u8, on: bool) {
        if on {
            self.0 |= what;
        }
    }

    fn has(self, what: u8) -> bool {
        self.0 & what != 0
    }
}

/// Most acknowledgements a connection keeps waiting before it stops reading
/// (paces a publisher whose messages cannot be stored as fast as it sends).
const MAX_HELD_ACKS: usize = 4096;

impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> Client<S> {
    /// The packet loop: reads and handles packets, sends queued messages,
    /// enforces keep alive, until something closes the connection.
    async fn run(&mut self) -> Close {
        let mut deadline = Instant::now() + self.grace();
        // What the loop waits on, kept from one turn to the next (an idle
        // connection's task is mostly this and the client): the queue's
        // wake-up is the session's waker slot (a takeover or shutdown
        // comes through it too, see `Session::kick`), the timer is moved
        // rather than made anew, and the rarely needed wait for a
        // congested subscriber is boxed.
        let mut timer = pin!(sleep_until(deadline));
        loop {
            while self.io.wbuf.len() < WRITE_HIGH_WATER
                && self.acks.len() < MAX_HELD_ACKS
                && !self.paused()
            {
                // Most packets of a subscriber are short acknowledgements:
                // handled without building a whole `Packet` for each.
                let done = if let Some((kind, id)) = take_short_ack(&mut self.io.rbuf) {
                    self.handle_ack(kind, id, ReasonCode::SUCCESS)
                } else {
                    // Taken out of the decode result before anything is
                    // awaited: a `match` keeps its scrutinee until its end,
                    // and one held across an await is stored in the
                    // connection's task (a whole `Packet`, for every idle
                    // connection).
                    let packet = match self.io.next_packet() {
                        Ok(Some(packet)) => packet,
                        Ok(None) => break,
                        Err(e) => return Close::Decode(e),
                    };
                    match self.handle(packet) {
                        Ok(Some(waiting)) => waiting.await,
                        other => other.map(|_| ()),
                    }
                };
                if let Err(close) = done {
                    return close;
                }
                // A subscriber this client feeds is congested: leave the
                // rest of the read buffer for later.
                if self.pressure.is_some() {
                    break;
                }
                // One unit of the scheduler's budget per packet: a
                // publisher with a full read buffer yields now and then, so
                // the subscribers it feeds get to run instead of their
                // queues overflowing.
                tokio::task::coop::consume_budget().await;
            }
            if let Err(close) = self.release_acks() {
                return close;
            }
            self.drain_queue();
            self.io.prepare_read();
            // Everything this turn's wait needs is worked out inside this
            // block and moved into the wait's closure: what is declared
            // here ends with the block, so none of it is kept in the
            // connection's task across the await (only the closure is,
            // with one reference to the client and the flags in a byte).
            let (wait, paused) = {
                let paused = self.paused();
                let mut wants = Wants::empty();
                wants.set(
                    Wants::READ,
                    self.io.wbuf.len() < WRITE_HIGH_WATER
                        && self.acks.len() < MAX_HELD_ACKS
                        && !paused,
                );
                wants.set(Wants::ACKS, !self.acks.is_empty());
                wants.set(Wants::HELD, self.io.holding());
                wants.set(Wants::WRITE, self.io.wants_write());
                wants.set(Wants::TIMER, self.keep_alive != 0 || paused);
                let wake_at = match self.pressure.as_deref_mut() {
                    Some(pause) => {
                        if pause.drained.is_none() {
                            let s = pause.session.clone();
                            pause.drained = Some(Box::pin(async move { s.until_drained().await }));
                        }
                        if self.keep_alive == 0 {
                            pause.until
                        } else {
                            pause.until.min(deadline)
                        }
                    }
                    None => deadline,
                };
                // The timer is moved only when it would fire too late (or
                // has fired): firing early costs a turn of this loop,
                // re-arming it on every read would cost a timer-wheel
                // update per read.
                if wants.has(Wants::TIMER) && (timer.is_elapsed() || timer.deadline() > wake_at) {
                    timer.as_mut().reset(wake_at);
                }
                let this = &mut *self;
                let mut timer = timer.as_mut();
                let wait =
                    std::future::poll_fn(move |cx| this.poll_turn(cx, wants, timer.as_mut()));
                (wait, paused)
            };
            let woken = wait.await;
            match woken {
                Woken::Kick(Kick::TakenOver) => return Close::TakenOver,
                Woken::Kick(Kick::Shutdown) => return Close::ServerShutdown,
                Woken::Written(Err(_)) | Woken::Read(Ok(0) | Err(_)) => return Close::TcpClosed,
                Woken::Written(Ok(n)) => Metrics::add(&self.broker.metrics.bytes_sent, n as u64),
                Woken::Read(Ok(n)) => {
                    Metrics::add(&self.broker.metrics.bytes_received, n as u64);
                    deadline = Instant::now() + self.grace();
                }
                Woken::Queue | Woken::Other => {}
                Woken::Drained => self.pressure = None,
                Woken::Timer => {
                    let now = Instant::now();
                    if paused {
                        // Not reading was our doing, not the client's
                        // silence: the keep alive starts again.
                        deadline = deadline.max(now + self.grace());
                    } else if self.keep_alive != 0 && now >= deadline {
                        return Close::KeepAliveTimeout;
                    }
                    if self.pressure.as_deref().is_some_and(|p| now >= p.until) {
                        self.pause_expired();
                    }
                }
            }
        }
    }

    /// How long the client may stay silent: 1.5 × keep alive, as both
    /// 3.1.1 and 5.0 say.
    fn grace(&self) -> Duration {
        Duration::from_millis(u64::from(self.keep_alive) * 1500)
    }

    /// One poll of a turn's wait: the first of what `wants` asks for that
    /// is ready, in the order of [`Woken`].
    fn poll_turn(
        &mut self,
        cx: &mut std::task::Context<'_>,
        wants: Wants,
        mut timer: Pin<&mut tokio::time::Sleep>,
    ) -> Poll<Woken> {
        if let Some(k) = self.session.kicked() {
            return Poll::Ready(Woken::Kick(k));
        }
        if wants.has(Wants::WRITE)
            && let Poll::Ready(w) = self.io.poll_write(cx)
        {
            return Poll::Ready(Woken::Written(w));
        }
        if wants.has(Wants::READ)
            && let Poll::Ready(r) = self.io.poll_read(cx)
        {
            return Poll::Ready(Woken::Read(r));
        }
        if self.session.poll_woken(cx).is_ready() {
            return Poll::Ready(Woken::Queue);
        }
        if wants.has(Wants::ACKS) && self.acks.poll_changed(cx).is_ready() {
            return Poll::Ready(Woken::Other);
        }
        if wants.has(Wants::HELD) && self.io.poll_held(cx).is_ready() {
            return Poll::Ready(Woken::Other);
        }
        if let Some(d) = self
            .pressure
            .as_deref_mut()
            .and_then(|p| p.drained.as_mut())
            && d.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Woken::Drained);
        }
        if wants.has(Wants::TIMER) && timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Woken::Timer);
        }
        Poll::Pending
    }

    /// Whether this connection is paused for a congested subscriber (a
    /// pause whose subscriber drained or whose time ran out ends here).
    fn paused(&mut self) -> bool {
        let Some(pause) = self.pressure.as_deref() else {
            return false;
        };
        if !pause.session.is_congested() {
            self.pressure = None;
            return false;
        }
        if Instant::now() >= pause.until {
            self.pause_expired();
        }
        self.pressure.is_some()
    }

    /// A pause ran its time: a subscriber that took messages meanwhile is
    /// slow but alive, so the pause goes on; one that took none is stuck,
    /// and is not waited on again until it drains.
    fn pause_expired(&mut self) {
        let Some(mut pause) = self.pressure.take() else {
            return;
        };
        let now_taken = pause.session.taken();
        if now_taken > pause.taken {
            pause.until = Instant::now() + PRESSURE_MAX;
            pause.taken = now_taken;
            self.pressure = Some(pause);
        } else {
            self.ignored = Some(Arc::downgrade(&pause.session));
        }
    }

    /// Handles one packet received after CONNECT. Everything is done here,
    /// synchronously, except work that may wait for a `client.check_acl`
    /// handler or remote rights (SUBSCRIBE; PUBLISH when such handlers or
    /// rights exist): that comes
    /// back as a boxed future for the loop to await. Boxing keeps the large
    /// packets out of the connection task's own state, which is what an
    /// idle connection costs.
    #[allow(clippy::type_complexity)]
    fn handle(&mut self, packet: Packet) -> Result<Option<Waiting<'_>>, Close> {
        let kind = packet.packet_type();
        match packet {
            Packet::Publish(p) if self.broker.authorization_may_wait() => {
                return Ok(Some(Box::pin(self.handle_publish(p))));
            }
            Packet::Publish(p) => self.handle_publish_now(p),
            Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
                self.handle_ack(kind, p.packet_id, p.reason)
            }
            Packet::Subscribe(p) => return Ok(Some(Box::pin(self.handle_subscribe(p)))),
            Packet::Unsubscribe(p) => self.handle_unsubscribe(p),
            Packet::PingReq => self.handle_pingreq(),
            Packet::Disconnect(p) => Err(self.handle_disconnect(p)),
            other => Err(Close::Protocol(
                ReasonCode::PROTOCOL_ERROR,
                format!("unexpected {:?} from a client", other.packet_type()),
            )),
        }
        .map(|()| None)
    }

    /// Handles an acknowledgement (PUBACK, PUBREC, PUBREL or PUBCOMP) of
    /// `packet_id` with `reason`; other packet types are not given here.
    fn handle_ack(
        &mut self,
        kind: PacketType,
        packet_id: u16,
        reason: ReasonCode,
    ) -> Result<(), Close> {
        match kind {
            PacketType::PubAck => self.handle_puback(packet_id),
            PacketType::PubRec => self.handle_pubrec(packet_id, reason),
            PacketType::PubRel => self.handle_pubrel(packet_id),
            PacketType::PubComp => self.handle_pubcomp(packet_id),
            _ => Ok(()),
        }
    }

    /// Queues a packet for sending. Encoding only fails for values the broker
    /// itself built wrongly, which is logged and the packet skipped.
    pub(crate) fn send(&mut self, packet: &Packet) {
        if let Err(e) = self.io.send(packet) {
            tracing::error!(client_id = %self.session.client_id, error = %e, "cannot encode packet");
        }
    }
}

/// Serves one accepted connection, its transport set up, until it closes;
/// `hold` (a connection slot) is dropped when it has.
///
/// Not an `async fn`: an async function keeps its arguments in its state
/// for its whole life, even once they are moved on (rust-lang/rust#62958),
/// and the stream and peer would be stored twice in every connection's
/// task. Here they go straight into the boxed handshake.
pub fn serve_connection<S: Stream>(
    broker: Arc<Broker>,
    stream: S,
    peer: Peer,
    hold: impl Send + 'static,
) -> impl Future<Output = ()> + Send {
    let io = Io::new(stream, broker.config.mqtt.max_packet_size as usize);
    // The handshake and the cleanup run once and hold large state while
    // they do; boxed, they cost an allocation instead of enlarging every
    // idle connection's task by their size.
    serve_connected(Box::pin(connect::handshake(broker, io, peer)), hold)
}

/// The rest of [`serve_connection`]: the handshake, the packet loop, the
/// cleanup.
async fn serve_connected<S: Stream>(
    handshake: Pin<Box<impl Future<Output = Option<connect::Handshake<S>>> + Send>>,
    hold: impl Send + 'static,
) {
    let Some(mut client) = handshake.await else {
        return;
    };
    let close = client.run().await;
    Box::pin(client.finish(close)).await;
    // Releases the session to a connection waiting to take it over.
    drop(client);
    drop(hold);
}

/// Reads until one complete packet (or EOF / error); used before CONNECT.
pub(crate) async fn read_one<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Io<S>,
) -> Result<Option<Packet>, herald_codec::DecodeError> {
    loop {
        if let Some(p) = io.next_packet()? {
            return Ok(Some(p));
        }
        io.prepare_read();
        match std::future::poll_fn(|cx| io.poll_read(cx)).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

/// Writes the buffered bytes, giving up after a short while so a client
/// that does not read cannot hold a closing connection open.
pub(crate) async fn flush_briefly<S: AsyncRead + AsyncWrite + Unpin>(io: &mut Io<S>) {
    let _ = tokio::time::timeout(Duration::from_secs(2), io.flush_all()).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), io.shutdown()).await;
}
