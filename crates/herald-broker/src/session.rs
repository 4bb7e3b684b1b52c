//! Session state that outlives a connection: subscriptions, the queue of
//! messages waiting to be sent, the outbound inflight window with its packet
//! identifiers, inbound QoS 2 packet ids awaiting PUBREL, and expiry.
//!
//! Each session has its own lock; routing a message to a session takes only
//! that lock, briefly, and never awaits while holding it. The connection that
//! owns the session is woken through [`Session::wake`].

use crate::access::{Rights, Verdict};
use crate::ack::Refused;
use crate::hooks::{AclAction, ClientInfo, DropReason};
use crate::message::Delivery;
use crate::queue::{Batch, Queue};
use crate::store::{Change, Store};
use futures_util::task::AtomicWaker;
use herald_codec::{ByteStr, QoS, SubOptions, Will};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use tokio::sync::Notify;

/// A subscription as the session remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubEntry {
    /// Options granted (QoS already capped by the broker's maximum).
    pub options: SubOptions,
    /// Subscription identifier (5.0), if the SUBSCRIBE carried one.
    pub id: Option<u32>,
}

/// Who a session's last connection was: kept with the session (and
/// stored with it), so its rights and its will can be worked out without
/// that connection, after a restart too.
#[derive(Debug, Clone)]
pub struct Owner {
    /// The client as it connected.
    pub info: ClientInfo,
    /// Whether its authentication made it a superuser (no access rules).
    pub superuser: bool,
}

impl Owner {
    /// A client known by its id and user name alone (a session stored
    /// before identities were): no address, no certificate, no superuser.
    pub fn unknown(client_id: &ByteStr, username: &Option<ByteStr>) -> Owner {
        Owner {
            info: ClientInfo {
                client_id: client_id.clone(),
                username: username.clone(),
                peer: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
                protocol: herald_codec::Protocol::V5,
                keepalive: 0,
                clean_start: false,
                connected_at_ms: 0,
                listener: crate::transport::ListenerKind::Tcp,
                cert: None,
            },
            superuser: false,
        }
    }
}

/// A will kept with its session: the last connection's, until it is
/// published or cleared. Stored with a persistent session, so a will
/// survives a restart (see [`crate::store`]).
#[derive(Debug, Clone)]
pub struct SessionWill {
    /// The will as CONNECT gave it (with its Will Delay Interval).
    pub will: Arc<Will>,
    /// When it is due, ms since the epoch; [`crate::store::CONNECTED`]
    /// while its connection is up (if the broker dies then, the will is
    /// due its delay after the restart).
    pub due_ms: u64,
}

impl SessionWill {
    /// The Will Delay Interval, seconds.
    pub fn delay(&self) -> u32 {
        self.will.properties.will_delay_interval.unwrap_or(0)
    }
}

/// What queuing a delivery did: whether the session is online with its
/// queue above high water (the publisher should pause), and for a stored
/// session the store's ticket for it (`Err`: refused by the store).
pub type Queued = (bool, Option<Result<u64, Refused>>);

/// An outbound QoS 1/2 message not yet fully acknowledged.
#[derive(Debug, Clone)]
pub struct Inflight {
    /// Packet identifier it was sent with.
    pub packet_id: u16,
    /// The message; kept after PUBREC too, so `message.acked` can say what
    /// was acknowledged.
    pub delivery: Delivery,
    /// QoS 2 only: PUBREC received and PUBREL sent; awaiting PUBCOMP.
    pub released: bool,
    /// Not sent (again) on the current connection yet: a resumed session's
    /// inflight messages beyond the new connection's Receive Maximum wait
    /// for a free slot.
    pub unsent: bool,
    /// QoS 2, stored, `durability = "ack"`: the store's ticket for its
    /// last record (`Sent`, then `Released`), which the PUBLISH or PUBREL
    /// must not go out before (a resend on a new connection waits for it
    /// too); 0: nothing to wait for.
    pub ticket: u64,
}

/// Why a connection is told to close from outside ([`Session::kick`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kick {
    /// A new connection with the same client id (0x8E).
    TakenOver = 1,
    /// The server is shutting down (0x8B).
    Shutdown = 2,
}

/// The mutable part of a session.
pub struct SessionState {
    /// Topic filter as the client sent it (with any `$share/g/` prefix) →
    /// the subscription.
    /// (Hashed with foldhash, as `ids_in_use`: its state is half the
    /// standard one's. Every connection owns a `Session`, and mimalloc's
    /// size classes around it are 512 and 640 bytes.)
    pub subscriptions: HashMap<ByteStr, SubEntry, foldhash::fast::RandomState>,
    /// Messages waiting for the connection (or for a window slot). Read
    /// freely; change only through [`Session::enqueue_each`],
    /// [`Session::enqueue_run`], [`SessionState::pop_next`] and
    /// [`SessionState::take_queued`], which keep the limits.
    pub queue: Queue,
    /// What few sessions have at any time (retained messages not yet
    /// sent, inbound QoS 2 exchanges), boxed when first needed: every
    /// byte inline is paid by every idle session. `None`: both empty.
    rare: Option<Box<Rare>>,
    /// Sent QoS 1/2 messages awaiting acknowledgement, in send order.
    /// Read freely; change only through `push_inflight`, `take_inflight`,
    /// `take_inflight_at` and `take_all_inflight`, which keep `ids_in_use`
    /// in step.
    pub inflight: VecDeque<Inflight>,
    /// Packet ids of `inflight`, so finding a free id does not scan a
    /// window that may hold tens of thousands of messages.
    ids_in_use: HashSet<u16, foldhash::fast::RandomState>,
    /// How many of `inflight` are [`Inflight::unsent`] (`u32`: at most
    /// the 65,535 packet ids, and it fits beside the small fields that
    /// would leave padding; every idle session pays for each word).
    pub unsent: u32,
    /// Whether the store holds this session (it is persistent and the
    /// broker keeps its state on disk): its QoS 1/2 deliveries are stored.
    pub stored: bool,
    /// Number of the last delivery stored for it.
    pub next_seq: u64,
    /// Next packet identifier to try.
    next_packet_id: u16,
    /// Whether a connection's task owns the session: set when one
    /// attaches, cleared once that task has finished its cleanup (when its
    /// [`Attachment`] is dropped). A connection taking the session over
    /// kicks the owner and waits for this ([`Session::until_released`]).
    pub owned: bool,
    /// Bumped on every (re)connection, so timers started for an earlier
    /// connection (expiry, delayed will) can tell they are stale.
    pub generation: u64,
    /// Session Expiry Interval in seconds (0: ends with the connection).
    pub expiry_interval: u32,
    /// Whether a connection is attached right now.
    pub online: bool,
    /// What the last connection's client may receive: checked for every
    /// delivery, also while offline. `None`: no rules apply.
    pub rights: Option<Arc<dyn Rights>>,
    /// Who the last connection was (its user name is reported in events
    /// after it left). `None` only for a session no connection attached
    /// to yet.
    pub owner: Option<Arc<Owner>>,
    /// The will waiting with this session, if any.
    pub will: Option<SessionWill>,
    /// Wall-clock expiry last stored for it ([`crate::store::CONNECTED`]
    /// while connected).
    pub expires_ms: u64,
    /// Set when the session ended ([`crate::broker::Broker::discard_session`];
    /// `Session::drained` wakes those waiting for that).
    pub ended: bool,
}

/// The part of a session's state few sessions have at a time.
#[derive(Default)]
pub struct Rare {
    /// Retained messages for new subscriptions, not yet sent: served before
    /// the queue, as the inflight window and the socket allow, however many
    /// there are. They count against no queue limit: the retained store
    /// holds the messages anyway, and a subscriber gets every one of them
    /// (a slow consumer of them, not a full queue).
    pub retained_backlog: VecDeque<Delivery>,
    /// Inbound QoS 2 packet ids PUBREC'd and awaiting PUBREL.
    pub incoming_qos2: HashSet<u16, foldhash::fast::RandomState>,
}

/// Why a session did not queue a delivery.
pub enum NotQueued {
    /// Dropped, for this reason.
    Dropped(DropReason),
    /// The subscriber's rights must be asked (remotely) first; hand the
    /// delivery to [`Session::enqueue_allowed`] if they allow it.
    Ask(Delivery, Arc<dyn Rights>),
}

/// One client's session.
pub struct Session {
    /// The client identifier (assigned one if the server chose it).
    pub client_id: ByteStr,
    /// Mutable state behind this session's own lock.
    state: Mutex<SessionState>,
    /// The owning connection's task, woken when something was queued (or
    /// it was kicked): the connection is the only one who waits for that,
    /// so a waker slot does, with `woken`, what a `Notify` would, without
    /// the 64-B `Notified` every idle connection's task would keep.
    waker: AtomicWaker,
    /// Set by [`Session::wake`], taken by [`Session::poll_woken`]: a
    /// wake-up that came while the connection was busy is not lost.
    woken: AtomicBool,
    /// Set while an online session's queue is above its high-water mark;
    /// publishers feeding it pause reading until it drains (backpressure).
    congested: AtomicBool,
    /// Why the owning connection must close ([`Kick`] as `u8`; 0: it need
    /// not). Set with [`Session::kick`], which also wakes it through
    /// `waker`: a takeover or a shutdown costs a connection no channel of
    /// its own (every byte of that is paid by every idle connection).
    kicked: AtomicU8,
    /// Messages taken from the queue so far (see [`Session::taken`]).
    taken: AtomicU64,
    /// Wakes paused publishers when the queue drained below low water, or
    /// the session went offline (offline sessions never push back);
    /// connections waiting to take the session over once its owner has
    /// released it; and a delayed will's task when the session ends
    /// ([`SessionState::ended`]), so the will is published then rather
    /// than after its full delay. Waiters check their condition again when
    /// woken. (One `Notify` for all three: every session pays for each.)
    pub drained: Notify,
    /// Limit on `queue`, in messages (`u32`, as its setting: it shares a
    /// word with the flags).
    max_queued: u32,
    /// Limit on `queue`, in bytes.
    max_queued_bytes: usize,
    /// Whether QoS 0 messages are queued while offline.
    queue_qos0: bool,
}

impl Session {
    /// A fresh, empty session.
    pub fn new(
        client_id: ByteStr,
        max_queued: u32,
        max_queued_bytes: usize,
        queue_qos0: bool,
    ) -> Arc<Session> {
        Arc::new(Session {
            client_id,
            state: Mutex::new(SessionState {
                subscriptions: HashMap::default(),
                queue: Queue::default(),
                rare: None,
                inflight: VecDeque::new(),
                ids_in_use: HashSet::default(),
                unsent: 0,
                stored: false,
                next_seq: 0,
                next_packet_id: 1,
                owned: false,
                generation: 0,
                expiry_interval: 0,
                online: false,
                rights: None,
                owner: None,
                will: None,
                expires_ms: 0,
                ended: false,
            }),
            waker: AtomicWaker::new(),
            woken: AtomicBool::new(false),
            congested: AtomicBool::new(false),
            kicked: AtomicU8::new(0),
            taken: AtomicU64::new(0),
            drained: Notify::new(),
            max_queued,
            max_queued_bytes,
            queue_qos0,
        })
    }

    /// Locks the state. A panic elsewhere while holding the lock leaves the
    /// state consistent enough to go on (every update is a single step), so
    /// poisoning is ignored rather than spreading the panic.
    pub fn lock(&self) -> MutexGuard<'_, SessionState> {
        crate::support::lock(&self.state)
    }

    /// Queues one delivery its rights already allowed (see
    /// [`Session::enqueue_each`]).
    pub fn enqueue_allowed(
        &self,
        delivery: Delivery,
        store: Option<&Store>,
    ) -> Result<Queued, DropReason> {
        self.push(delivery, false, store)
            .map_err(|refused| match refused {
                NotQueued::Dropped(reason) => reason,
                NotQueued::Ask(..) => DropReason::NotAuthorized,
            })
    }

    fn push(
        &self,
        delivery: Delivery,
        check: bool,
        store: Option<&Store>,
    ) -> Result<Queued, NotQueued> {
        let queued = self.push_locked(&mut self.lock(), delivery, check, store)?;
        self.pushed(queued.0);
        Ok(queued)
    }

    /// Queues deliveries the session's client may receive, in order, under
    /// one lock, and wakes the connection once: `delivery(i)` makes the
    /// `i`th of `count` (`None`: none for this one), and `each(i, result)`
    /// is told what became of it, under the session's lock (it must not
    /// lock sessions or fire hooks). A delivery is refused when the
    /// session's rights deny the topic ([`DropReason::NotAuthorized`]) or
    /// must be asked ([`NotQueued::Ask`]), when the queue is full
    /// ([`DropReason::QueueFull`]) or for QoS 0 while offline
    /// ([`DropReason::Qos0Offline`]). For a stored session, a QoS 1/2
    /// delivery is also queued to `store`, under this session's lock (so
    /// its records keep their order). A queued one's result says whether
    /// the session is online with its queue above high water (the
    /// publisher should pause) and, if stored, the store's ticket for it
    /// (`Err`: the store refused it; it is queued in memory only and the
    /// publisher should be refused, to send it again).
    pub fn enqueue_each(
        &self,
        count: usize,
        store: Option<&Store>,
        delivery: impl FnMut(usize) -> Option<Delivery>,
        each: impl FnMut(usize, Result<Queued, NotQueued>),
    ) {
        let (queued, congested) =
            self.push_each_locked(&mut self.lock(), count, store, delivery, each);
        if queued {
            self.pushed(congested);
        }
    }

    /// [`Session::enqueue_each`] for every message of `batch` as one
    /// subscription receives it (`granted` QoS, Retain As Published,
    /// identifiers), `each(i, result)` told about the `i`th. While the
    /// session is online, its client may receive the topic, nothing of the
    /// batch is stored for it and its queue has room for all, the batch is
    /// queued as one entry (shared with the topic's other subscribers);
    /// otherwise one by one, as [`Session::enqueue_each`] does. `bytes`:
    /// the batch's [`Message::size`](crate::message::Message::size) summed.
    #[allow(clippy::too_many_arguments)]
    pub fn enqueue_run(
        &self,
        batch: &Batch,
        bytes: usize,
        granted: QoS,
        retain_as_published: bool,
        subscription_ids: &[u32],
        store: Option<&Store>,
        mut each: impl FnMut(usize, Result<Queued, NotQueued>),
    ) {
        let mut st = self.lock();
        let (queued, congested) = if self.takes_run(&st, batch, bytes, granted, store.is_some()) {
            let before = st.queue.len();
            let high = self.high_water();
            st.queue.push_run(
                batch,
                bytes,
                granted,
                retain_as_published,
                subscription_ids.to_vec(),
            );
            for i in 0..batch.len() {
                each(i, Ok((before + i + 1 >= high, None)));
            }
            (true, st.queue.len() >= high)
        } else {
            let delivery = |i: usize| {
                let message = batch.get(i)?;
                let ids = subscription_ids.to_vec();
                Some(Delivery::to_subscriber(
                    message,
                    granted,
                    retain_as_published,
                    ids,
                ))
            };
            self.push_each_locked(&mut st, batch.len(), store, delivery, each)
        };
        drop(st);
        if queued {
            self.pushed(congested);
        }
    }

    /// Whether [`Session::enqueue_run`] may queue `batch` as one entry:
    /// what [`Session::push_locked`] would check per message holds for all
    /// of them alike (online, so QoS 0 is queued; rights allow the topic;
    /// none is stored; within both limits).
    fn takes_run(
        &self,
        st: &SessionState,
        batch: &Batch,
        bytes: usize,
        granted: QoS,
        storing: bool,
    ) -> bool {
        let Some(first) = batch.first() else {
            return false;
        };
        st.online
            && st
                .rights
                .as_ref()
                .is_none_or(|r| r.check(AclAction::Deliver, &first.topic) == Verdict::Allow)
            && !(storing
                && st.stored
                && granted != QoS::AtMostOnce
                && batch.iter().any(|m| m.qos != QoS::AtMostOnce))
            && st.queue.len() + batch.len() <= self.max_queued as usize
            && st.queue.bytes().saturating_add(bytes) <= self.max_queued_bytes
    }

    /// The loop of [`Session::enqueue_each`], under the lock: whether any
    /// was queued, and whether one took an online session above high water.
    fn push_each_locked(
        &self,
        st: &mut SessionState,
        count: usize,
        store: Option<&Store>,
        mut delivery: impl FnMut(usize) -> Option<Delivery>,
        mut each: impl FnMut(usize, Result<Queued, NotQueued>),
    ) -> (bool, bool) {
        let mut queued = false;
        let mut congested = false;
        for i in 0..count {
            let Some(d) = delivery(i) else {
                continue;
            };
            let result = self.push_locked(st, d, true, store);
            if let Ok((c, _)) = &result {
                queued = true;
                congested |= c;
            }
            each(i, result);
        }
        (queued, congested)
    }

    /// The part of [`Session::push`] done under the session's lock.
    fn push_locked(
        &self,
        st: &mut SessionState,
        mut delivery: Delivery,
        check: bool,
        store: Option<&Store>,
    ) -> Result<Queued, NotQueued> {
        if !st.online && delivery.qos == QoS::AtMostOnce && !self.queue_qos0 {
            return Err(NotQueued::Dropped(DropReason::Qos0Offline));
        }
        if check && let Some(rights) = &st.rights {
            match rights.check(AclAction::Deliver, &delivery.message.topic) {
                Verdict::Allow => {}
                Verdict::Deny => return Err(NotQueued::Dropped(DropReason::NotAuthorized)),
                Verdict::Ask => return Err(NotQueued::Ask(delivery, rights.clone())),
            }
        }
        let size = delivery.message.size();
        if st.queue.len() >= self.max_queued as usize
            || st.queue.bytes().saturating_add(size) > self.max_queued_bytes
        {
            return Err(NotQueued::Dropped(DropReason::QueueFull));
        }
        let ticket = match store {
            Some(store) if st.stored && delivery.qos != QoS::AtMostOnce => {
                let seq = st.next_seq + 1;
                delivery.seq = seq;
                let ticket = store.record(Change::Queued(
                    self.client_id.clone(),
                    seq,
                    delivery.clone(),
                ));
                match ticket {
                    Ok(_) => st.next_seq = seq,
                    Err(_) => delivery.seq = 0,
                }
                Some(ticket)
            }
            _ => None,
        };
        st.queue.push(delivery);
        Ok((st.online && st.queue.len() >= self.high_water(), ticket))
    }

    /// After queueing (outside the lock): marks the session congested if
    /// a push took it above high water, and wakes the connection.
    fn pushed(&self, congested: bool) {
        if congested {
            self.congested.store(true, Ordering::Release);
        }
        self.wake();
    }

    /// Wakes the owning connection (if none is attached, the one that
    /// attaches next finds the wake-up waiting, as it would a `Notify`'s
    /// permit, and looks at the queue once more).
    pub fn wake(&self) {
        // Already set: the waker was woken when it was, and the
        // connection has not looked since.
        if !self.woken.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// Ready once [`Session::wake`] was called since the last time this was
    /// ready; registers the calling task to be woken otherwise. For the
    /// owning connection only (one waker is kept).
    pub fn poll_woken(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.woken.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // A wake between the check and the registration found no waker.
        if self.woken.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Queue length from which publishers are asked to pause.
    fn high_water(&self) -> usize {
        (self.max_queued - self.max_queued / 4).max(1) as usize
    }

    /// Messages taken from the queue so far: a paused publisher tells a
    /// slow subscriber (this grows) from a stuck one (it does not).
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// Whether publishers feeding this session should pause.
    pub fn is_congested(&self) -> bool {
        self.congested.load(Ordering::Acquire)
    }

    /// Called by the owning connection after taking `taken` messages from
    /// the queue (`queued` left), or with 0 left when it goes offline:
    /// below low water (a quarter), paused publishers are released.
    pub fn relieve(&self, queued: usize, taken: u64) {
        if taken > 0 {
            self.taken.fetch_add(taken, Ordering::Relaxed);
        }
        if queued <= (self.max_queued / 4) as usize && self.congested.swap(false, Ordering::AcqRel)
        {
            self.drained.notify_waiters();
        }
    }

    /// Resolves once the session is not congested (checked after
    /// registering for the wake-up, so none is missed).
    pub async fn until_drained(&self) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.is_congested() {
                return;
            }
            notified.await;
        }
    }

    /// Tells the connection that owns the session to close (the first
    /// reason given sticks) and wakes it. Call with the session locked and
    /// [`SessionState::owned`] set, so the kick reaches that connection
    /// and not one attaching after it.
    pub fn kick(&self, why: Kick) {
        let _ = self
            .kicked
            .compare_exchange(0, why as u8, Ordering::AcqRel, Ordering::Acquire);
        self.wake();
    }

    /// Why the owning connection was told to close, if it was.
    pub fn kicked(&self) -> Option<Kick> {
        match self.kicked.load(Ordering::Acquire) {
            0 => None,
            1 => Some(Kick::TakenOver),
            _ => Some(Kick::Shutdown),
        }
    }

    /// Marks the session owned by the calling connection (the caller holds
    /// its lock as `st`, and has checked no one else owns it).
    pub(crate) fn attach(self: &Arc<Session>, st: &mut SessionState) -> Attachment {
        st.owned = true;
        self.kicked.store(0, Ordering::Release);
        Attachment(self.clone())
    }

    /// Resolves once no connection's task owns the session (checked after
    /// registering for the wake-up, so none is missed).
    pub async fn until_released(&self) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.lock().owned {
                return;
            }
            notified.await;
        }
    }
}

/// A session as the connection that owns it holds it (derefs to the
/// session). Dropped when that connection's task has finished its cleanup,
/// or was dropped: the session is then released to a connection waiting to
/// take it over.
pub struct Attachment(Arc<Session>);

impl std::ops::Deref for Attachment {
    type Target = Arc<Session>;
    fn deref(&self) -> &Arc<Session> {
        &self.0
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        let waker = {
            let mut st = self.0.lock();
            // A waker keeps its task's memory alive: an offline session
            // must not keep the finished connection's. Taken before the
            // session is released, so it is never the next owner's.
            let waker = self.0.waker.take();
            st.owned = false;
            self.0.kicked.store(0, Ordering::Release);
            waker
        };
        drop(waker);
        self.0.drained.notify_waiters();
    }
}

impl SessionState {
    /// User name of the last connection, for events after it left.
    pub fn username(&self) -> Option<ByteStr> {
        self.owner.as_ref().and_then(|o| o.info.username.clone())
    }

    /// Retained messages not yet sent and inbound QoS 2 exchanges, if any.
    pub fn rare(&self) -> Option<&Rare> {
        self.rare.as_deref()
    }

    /// [`SessionState::rare`], made if there was none, to add to.
    pub fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_default()
    }

    /// Forgets an inbound QoS 2 exchange; whether it was known.
    pub fn forget_incoming_qos2(&mut self, packet_id: u16) -> bool {
        self.rare
            .as_deref_mut()
            .is_some_and(|r| r.incoming_qos2.remove(&packet_id))
    }

    /// Empties the retained backlog and forgets inbound QoS 2 exchanges.
    pub fn clear_rare(&mut self) {
        self.rare = None;
    }

    /// QoS of the next delivery to send: retained messages for new
    /// subscriptions first, then the queue.
    pub fn next_qos(&self) -> Option<QoS> {
        self.rare
            .as_ref()
            .and_then(|r| r.retained_backlog.front())
            .map(|d| d.qos)
            .or_else(|| self.queue.front_qos())
    }

    /// Takes the delivery [`SessionState::next_qos`] is about.
    pub fn pop_next(&mut self) -> Option<Delivery> {
        if let Some(rare) = self.rare.as_deref_mut()
            && let Some(d) = rare.retained_backlog.pop_front()
        {
            // The last retained one sent: the box goes if nothing else
            // needs it.
            if rare.retained_backlog.is_empty() && rare.incoming_qos2.is_empty() {
                self.rare = None;
            }
            return Some(d);
        }
        self.queue.pop()
    }

    /// Bytes queued (see [`Message::size`](crate::message::Message::size)).
    pub fn queued_bytes(&self) -> usize {
        self.queue.bytes()
    }

    /// Puts a stored delivery back in the queue at start (no limit: it was
    /// within them when it was queued).
    pub fn restore_queued(&mut self, delivery: Delivery) {
        self.queue.push(delivery);
    }

    /// Empties the queue (not the retained backlog).
    pub fn take_queued(&mut self) -> VecDeque<Delivery> {
        self.queue.take()
    }

    /// A packet identifier not used by any inflight message. The caller
    /// keeps the window (≤ 65,535) so one is always free.
    pub fn next_packet_id(&mut self) -> u16 {
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if id != 0 && !self.ids_in_use.contains(&id) {
                return id;
            }
        }
    }

    /// Adds a sent message to the inflight window.
    pub fn push_inflight(&mut self, message: Inflight) {
        if message.unsent {
            self.unsent += 1;
        }
        self.ids_in_use.insert(message.packet_id);
        self.inflight.push_back(message);
    }

    /// Removes the inflight entry for `packet_id` (acknowledgements come
    /// mostly in order, so the search from the front is short).
    pub fn take_inflight(&mut self, packet_id: u16) -> Option<Inflight> {
        if !self.ids_in_use.contains(&packet_id) {
            return None;
        }
        let pos = self
            .inflight
            .iter()
            .position(|m| m.packet_id == packet_id)?;
        self.take_inflight_at(pos)
    }

    /// Removes the inflight entry at `pos` (a position in `inflight`).
    pub fn take_inflight_at(&mut self, pos: usize) -> Option<Inflight> {
        let taken = self.inflight.remove(pos)?;
        self.ids_in_use.remove(&taken.packet_id);
        if taken.unsent {
            self.unsent = self.unsent.saturating_sub(1);
        }
        Some(taken)
    }

    /// Empties the inflight window.
    pub fn take_all_inflight(&mut self) -> VecDeque<Inflight> {
        self.ids_in_use.clear();
        self.unsent = 0;
        std::mem::take(&mut self.inflight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{Wake, Waker};

    /// A waker that counts its wake-ups; its `Arc` count tells whether a
    /// copy of it is still kept somewhere.
    #[derive(Default)]
    struct Counting(AtomicU64);

    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_wake_up_is_kept_until_the_connection_looks_and_reaches_its_task() {
        let session = Session::new("c".into(), 10, 1 << 20, false);
        let counting = Arc::new(Counting::default());
        let waker = Waker::from(counting.clone());
        let mut cx = Context::from_waker(&waker);
        // A wake-up before the connection waits is not lost.
        session.wake();
        assert!(session.poll_woken(&mut cx).is_ready());
        assert!(session.poll_woken(&mut cx).is_pending(), "taken once");
        // One while it waits wakes its task, once however many come.
        session.wake();
        session.wake();
        assert_eq!(counting.0.load(Ordering::SeqCst), 1);
        assert!(session.poll_woken(&mut cx).is_ready());
        // A kick comes the same way.
        assert!(session.poll_woken(&mut cx).is_pending());
        session.kick(Kick::Shutdown);
        assert_eq!(counting.0.load(Ordering::SeqCst), 2);
        assert!(session.poll_woken(&mut cx).is_ready());
    }

    /// Rights that answer `check` with one verdict.
    struct Always(Verdict);

    impl Rights for Always {
        fn check(&self, _: AclAction, _: &str) -> Verdict {
            self.0
        }
        fn ask<'a>(&'a self, _: AclAction, _: &'a str) -> crate::hooks::DecisionFuture<'a> {
            Box::pin(async { crate::hooks::Decision::Ignore })
        }
    }

    fn batch(n: u8, qos: QoS) -> Batch {
        (0..n)
            .map(|i| crate::queue::tests::message(&[i; 9], qos, false))
            .collect()
    }

    /// What `enqueue_run` said of each message: queued (and whether above
    /// high water) or why not.
    fn run_into(session: &Session, batch: &Batch, granted: QoS) -> Vec<Result<bool, String>> {
        let bytes = batch.iter().map(|m| m.size()).sum();
        let mut told = Vec::new();
        session.enqueue_run(batch, bytes, granted, false, &[], None, |i, result| {
            assert_eq!(i, told.len(), "told in order");
            told.push(match result {
                Ok((congested, _)) => Ok(congested),
                Err(NotQueued::Dropped(reason)) => Err(format!("{reason:?}")),
                Err(NotQueued::Ask(..)) => Err("ask".to_owned()),
            });
        });
        told
    }

    fn online(max_queued: u32, max_bytes: usize) -> Arc<Session> {
        let session = Session::new("c".into(), max_queued, max_bytes, false);
        session.lock().online = true;
        session
    }

    #[test]
    fn a_batch_is_queued_whole_only_where_each_of_its_messages_would_be() {
        // Room for all: queued, above high water (8 of 10) from the 8th.
        let session = online(10, 1 << 20);
        let told = run_into(&session, &batch(9, QoS::AtMostOnce), QoS::AtLeastOnce);
        let mut expected = vec![Ok(false); 7];
        expected.extend([Ok(true), Ok(true)]);
        assert_eq!(told, expected);
        // Room for one more: it is queued, the rest dropped, as one by one.
        let told = run_into(&session, &batch(3, QoS::AtMostOnce), QoS::AtLeastOnce);
        let full = Err("QueueFull".to_owned());
        assert_eq!(told, vec![Ok(true), full.clone(), full.clone()]);
        assert_eq!(session.lock().queue.len(), 10);
        // The byte limit the same way: each message is 10 bytes.
        let session = online(100, 25);
        let told = run_into(&session, &batch(3, QoS::AtMostOnce), QoS::AtMostOnce);
        assert_eq!(told, vec![Ok(false), Ok(false), full]);
        assert_eq!(session.lock().queued_bytes(), 20);
        // Offline: QoS 0 is not queued (this session does not keep it).
        let session = Session::new("c".into(), 100, 1 << 20, false);
        let told = run_into(&session, &batch(2, QoS::AtMostOnce), QoS::AtLeastOnce);
        assert_eq!(told, vec![Err("Qos0Offline".to_owned()); 2]);
        // The client's rights: refused, or asked, message by message.
        for (verdict, answer) in [(Verdict::Deny, "NotAuthorized"), (Verdict::Ask, "ask")] {
            let session = online(100, 1 << 20);
            session.lock().rights = Some(Arc::new(Always(verdict)));
            let told = run_into(&session, &batch(2, QoS::AtLeastOnce), QoS::AtLeastOnce);
            assert_eq!(told, vec![Err(answer.to_owned()); 2]);
            assert!(session.lock().queue.is_empty());
        }
        let session = online(100, 1 << 20);
        session.lock().rights = Some(Arc::new(Always(Verdict::Allow)));
        let told = run_into(&session, &batch(2, QoS::AtLeastOnce), QoS::AtLeastOnce);
        assert_eq!(told, vec![Ok(false); 2]);
        let d = session.lock().pop_next().unwrap();
        assert_eq!((d.qos, d.message.payload[0]), (QoS::AtLeastOnce, 0));
    }

    #[test]
    fn a_finished_connection_leaves_no_waker_behind() {
        let session = Session::new("c".into(), 10, 1 << 20, false);
        let counting = Arc::new(Counting::default());
        let attachment = {
            let mut st = session.lock();
            session.attach(&mut st)
        };
        {
            let waker = Waker::from(counting.clone());
            let mut cx = Context::from_waker(&waker);
            assert!(session.poll_woken(&mut cx).is_pending());
        }
        assert_eq!(Arc::strong_count(&counting), 2, "registered");
        // The waker would keep the connection's task (its memory) alive
        // for as long as the session lives offline.
        drop(attachment);
        assert_eq!(Arc::strong_count(&counting), 1, "released with the session");
        assert!(!session.lock().owned);
    }
}
