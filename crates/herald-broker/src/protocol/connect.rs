//! The CONNECT handshake: validate the CONNECT, choose or check the client
//! identifier, take the session over from an older connection or start a
//! new one, answer CONNACK, and resend what the resumed session had in
//! flight.
//!
//! A refused CONNECT gets a CONNACK with the reason and the connection
//! closes; nothing about other clients changes.

use super::{Client, flush_briefly, read_one};
use crate::access::Rights;
use crate::ack::PendingAcks;
use crate::broker::Broker;
use crate::connection::Io;
use crate::hooks::{AuthRequest, ClientInfo, Decision, Event};
use crate::metrics::Metrics;
use crate::reason::TerminationReason;
use crate::session::{Attachment, Kick, Owner, Session, SessionWill};
use crate::support::now_ms;
use crate::transport::Peer;
use herald_codec::{
    ByteStr, ConnAck, Connect, DecodeError, Packet, Properties, Protocol, ReasonCode,
};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncRead, AsyncWrite};

/// What a successful handshake hands the packet loop: the client, owning
/// its session (told to close through it: [`crate::session::Session::kick`]).
pub(crate) type Handshake<S> = Client<S>;

/// Reads and answers CONNECT. `None`: the connection is closed.
pub(crate) async fn handshake<S>(
    broker: Arc<Broker>,
    mut io: Io<S>,
    from: Peer,
) -> Option<Handshake<S>>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let timeout = broker.config.listener.connect_timeout();
    // Until CONNECT is accepted, a client may make us buffer no more than
    // a CONNECT of listener.max_connect_size (nor any packet over
    // mqtt.max_packet_size).
    let cfg = &broker.config;
    io.opts.max_packet_size = cfg.listener.max_connect_size.min(cfg.mqtt.max_packet_size) as usize;
    let peer = from.addr;
    let deadline = from.accepted_at + timeout;
    let first = match tokio::time::timeout_at(deadline, read_one(&mut io)).await {
        Err(_) => {
            tracing::debug!(%peer, "no CONNECT within {timeout:?}; closing");
            return None;
        }
        Ok(Ok(Some(packet))) => packet,
        Ok(Ok(None)) => return None,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "bad CONNECT");
            Metrics::add(&broker.metrics.protocol_errors, 1);
            if matches!(
                e,
                DecodeError::UnsupportedProtocolLevel(_) | DecodeError::InvalidProtocolName(_)
            ) {
                // 3.1.1 §3.1.2.2: answer 0x01 and close.
                io.opts.protocol = Protocol::V3_1_1;
                let _ = io.send(&Packet::ConnAck(ConnAck {
                    code: ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
                    ..ConnAck::default()
                }));
                flush_briefly(&mut io).await;
            }
            return None;
        }
    };
    let Packet::Connect(mut connect) = first else {
        tracing::debug!(%peer, "first packet is not CONNECT; closing");
        Metrics::add(&broker.metrics.protocol_errors, 1);
        return None;
    };
    io.opts.protocol = connect.protocol;
    io.opts.max_packet_size = broker.config.mqtt.max_packet_size as usize;
    if let Some(name) = from.cert_username {
        connect.username = name;
    }
    // Kept for the whole connection (and the session): copies of their
    // own, not slices of the read buffer.
    let info = ClientInfo {
        client_id: connect.client_id.detached(),
        username: connect.username.as_ref().map(ByteStr::detached),
        peer: canonical_peer(peer),
        protocol: connect.protocol,
        keepalive: connect.keep_alive,
        clean_start: connect.clean_start,
        connected_at_ms: now_ms(),
        listener: from.listener,
        cert: from.cert,
    };
    // Chosen before client.connect fires, so that event can name it.
    let assigned = connect.client_id.is_empty().then(new_client_id);
    broker.hooks.fire(Event::ClientConnect {
        client: &info,
        assigned: assigned.as_deref(),
    });
    let verdict = match accept(&broker, &connect, assigned) {
        Ok(accepted) => authenticate(&broker, &connect, &info)
            .await
            .map(|rights| (accepted, rights)),
        Err(code) => Err(code),
    };
    match verdict {
        Ok((accepted, rights)) => {
            Some(establish(broker, io, info, *connect, accepted, rights).await)
        }
        Err(code) => {
            tracing::debug!(%peer, client_id = %connect.client_id, %code, "CONNECT refused");
            broker.hooks.fire(Event::ClientConnack {
                client: &info,
                reason: code,
            });
            let _ = io.send(&Packet::ConnAck(ConnAck {
                code,
                ..ConnAck::default()
            }));
            flush_briefly(&mut io).await;
            None
        }
    }
}

/// An IPv4-mapped IPv6 peer as the IPv4 address it is.
fn canonical_peer(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => peer,
        },
        v4 => v4,
    }
}

/// Authentication: the `client.authenticate` handlers, then the installed
/// access control's sources; a client none of them knows is anonymous and
/// let in only as the anonymous policy says (`auth.allow_anonymous`). A
/// user name no configured source accepts is a bad user name or password;
/// anything else refused is not authorised. `Ok`: the client's rights,
/// and whether it is a superuser.
async fn authenticate(
    broker: &Broker,
    c: &Connect,
    info: &ClientInfo,
) -> Result<(Option<Arc<dyn Rights>>, bool), ReasonCode> {
    let request = AuthRequest {
        client: info,
        password: c.password.as_ref(),
    };
    let access = broker.access();
    let mut superuser = false;
    let decision = match broker.hooks.authenticate(request).await {
        Decision::Ignore => match &access {
            Some(access) => {
                let answer = access.authenticate(request).await;
                superuser = answer.superuser;
                answer.decision
            }
            None => Decision::Ignore,
        },
        decided => decided,
    };
    match decision {
        Decision::Allow => {}
        Decision::Deny(code) => return Err(code),
        Decision::Ignore if c.username.is_some() && broker.config.has_auth_sources() => {
            return Err(ReasonCode::BAD_USERNAME_OR_PASSWORD);
        }
        Decision::Ignore if broker.config.anonymous().admits(info.peer) => {}
        Decision::Ignore => return Err(ReasonCode::NOT_AUTHORIZED),
    }
    Ok((access.and_then(|a| a.rights(info, superuser)), superuser))
}

/// What validation decided for an acceptable CONNECT.
struct Accepted {
    /// The client id to use.
    client_id: ByteStr,
    /// Whether the server assigned it (5.0 CONNACK property).
    assigned: bool,
    /// Session expiry in force.
    session_expiry: u32,
    /// Whether that differs from what the client asked (5.0 property).
    expiry_changed: bool,
    /// Keep alive in force.
    keep_alive: u16,
    /// Whether the server changed it (5.0 Server Keep Alive).
    keep_alive_changed: bool,
}

static ASSIGNED_IDS: AtomicU64 = AtomicU64::new(1);

/// A client id for a client that sent none.
fn new_client_id() -> String {
    let n = ASSIGNED_IDS.fetch_add(1, Ordering::Relaxed);
    format!("herald-{:x}-{n}", now_ms())
}

/// Checks a CONNECT against the protocol rules and settings; `Err` is the
/// CONNACK reason for refusing it.
fn accept(broker: &Broker, c: &Connect, assigned: Option<String>) -> Result<Accepted, ReasonCode> {
    let cfg = &broker.config;
    let v5 = c.protocol.is_v5();
    if v5 && c.properties.authentication_method.is_some() {
        return Err(ReasonCode::BAD_AUTHENTICATION_METHOD);
    }
    let (client_id, assigned) = if c.client_id.is_empty() {
        let allowed = cfg.mqtt.allow_zero_length_client_id
            && match c.protocol {
                Protocol::V3_1 => false,
                Protocol::V3_1_1 => c.clean_start,
                Protocol::V5 => true,
            };
        if !allowed {
            return Err(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        }
        let id = assigned.unwrap_or_else(new_client_id);
        (ByteStr::from(id), true)
    } else {
        (c.client_id.detached(), false)
    };
    let max_expiry = cfg.mqtt.max_session_expiry;
    let (session_expiry, expiry_changed) = if v5 {
        let asked = c.properties.session_expiry_interval.unwrap_or(0);
        (asked.min(max_expiry), asked > max_expiry)
    } else if c.clean_start {
        (0, false)
    } else {
        (max_expiry, false)
    };
    let mut keep_alive = c.keep_alive;
    let mut keep_alive_changed = false;
    let cap = cfg.mqtt.max_keepalive;
    // A 3.x client cannot be told a different keep alive, so only 5.0
    // clients get the server's.
    if v5 && cap > 0 && (keep_alive == 0 || keep_alive > cap) {
        keep_alive = cap;
        keep_alive_changed = true;
    }
    Ok(Accepted {
        client_id,
        assigned,
        session_expiry,
        expiry_changed,
        keep_alive,
        keep_alive_changed,
    })
}

/// Attaches the session (firing the session events), answers CONNACK,
/// resends inflight messages, fires `client.connected`.
async fn establish<S>(
    broker: Arc<Broker>,
    io: Io<S>,
    mut info: ClientInfo,
    connect: Connect,
    a: Accepted,
    (rights, superuser): (Option<Arc<dyn Rights>>, bool),
) -> Handshake<S>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    info.client_id = a.client_id.clone();
    let owner = Arc::new(Owner {
        info: info.clone(),
        superuser,
    });
    let attached = attach(&broker, &owner, a.session_expiry, rights.clone()).await;
    let hooks = &broker.hooks;
    if let Some(old) = &attached.replaced {
        // A clean start discards the old session, also one it took from a
        // live connection (session.discarded says so); taken over only
        // when a resuming connection found a session it could not resume.
        let reason = if attached.taken_over && !info.clean_start {
            TerminationReason::TakenOver
        } else {
            TerminationReason::Discarded
        };
        if info.clean_start {
            hooks.fire(Event::SessionDiscarded { client: &info });
        }
        broker.discard_session(old, reason);
    }
    let will = connect.will.map(|mut will| {
        will.detach();
        Arc::new(will)
    });
    attached.session.lock().will = will.as_ref().map(|will| SessionWill {
        will: will.clone(),
        due_ms: crate::store::CONNECTED,
    });
    // Stored if persistent (a clean start's old session was discarded,
    // and its stored state with it, above), with the will.
    broker.persist_session(&attached.session, crate::store::CONNECTED);
    if attached.present {
        if attached.taken_over {
            hooks.fire(Event::SessionTakeovered { client: &info });
        }
        hooks.fire(Event::SessionResumed { client: &info });
    } else {
        hooks.fire(Event::SessionCreated { client: &info });
    }
    broker.metrics.add_connected(info.listener);
    let cfg = &broker.config.mqtt;
    let p = &connect.properties;
    let mut client = Client {
        broker: broker.clone(),
        io,
        protocol: connect.protocol,
        session: attached.session,
        owner,
        keep_alive: a.keep_alive,
        will,
        session_expiry: a.session_expiry,
        connect_expiry_zero: a.session_expiry == 0,
        send_window: p.receive_maximum.unwrap_or(u16::MAX).min(cfg.max_inflight),
        client_max_packet: p.maximum_packet_size.unwrap_or(u32::MAX),
        client_alias_max: p.topic_alias_maximum.unwrap_or(0),
        aliases: None,
        generation: attached.generation,
        pressure: None,
        ignored: None,
        acks: PendingAcks::default(),
        rights,
    };
    let mut props = Properties::default();
    if connect.protocol.is_v5() {
        if a.assigned {
            props.assigned_client_identifier = Some(a.client_id.clone());
        }
        if a.expiry_changed {
            props.session_expiry_interval = Some(a.session_expiry);
        }
        if a.keep_alive_changed {
            props.server_keep_alive = Some(a.keep_alive);
        }
        props.receive_maximum = Some(cfg.receive_maximum);
        props.maximum_packet_size = Some(cfg.max_packet_size);
        props.topic_alias_maximum = Some(cfg.topic_alias_maximum);
        if cfg.max_qos < 2 {
            props.maximum_qos = Some(cfg.max_qos);
        }
        if !cfg.retain_available {
            props.retain_available = Some(false);
        }
        if !cfg.wildcard_subscription_available {
            props.wildcard_subscription_available = Some(false);
        }
        if !cfg.subscription_identifiers_available {
            props.subscription_identifier_available = Some(false);
        }
        if !cfg.shared_subscription_available {
            props.shared_subscription_available = Some(false);
        }
    }
    hooks.fire(Event::ClientConnack {
        client: &client.owner.info,
        reason: ReasonCode::SUCCESS,
    });
    client.send(&Packet::ConnAck(ConnAck {
        session_present: attached.present,
        code: ReasonCode::SUCCESS,
        properties: props,
    }));
    hooks.fire(Event::ClientConnected {
        client: &client.owner.info,
    });
    if broker.logs_connections() {
        tracing::info!(
            client_id = %client.owner.info.client_id,
            peer = %client.owner.info.peer,
            protocol = %client.protocol.version(),
            clean_start = client.owner.info.clean_start,
            session_present = attached.present,
            "client connected"
        );
    }
    if attached.present {
        client.resend_inflight();
    }
    client
}

/// What [`attach`] did.
struct Attached {
    /// The session this connection now owns.
    session: Attachment,
    /// Whether it existed before (CONNACK session present).
    present: bool,
    /// This connection's generation of it.
    generation: u64,
    /// Whether another connection owned the client id and was told to close.
    taken_over: bool,
    /// An old session that was not resumed: the caller discards it.
    replaced: Option<Arc<Session>>,
}

/// Finds or creates the session for the client, taking it over from a
/// connection that still owns it (which is told to close, and awaited, so
/// its cleanup runs before this connection proceeds). An existing session is
/// resumed unless the client asked for a clean start or the session was
/// one that ends with its connection (expiry 0). A connection attaching
/// while the server shuts down is told to close at once.
async fn attach(
    broker: &Arc<Broker>,
    owner: &Arc<Owner>,
    expiry: u32,
    rights: Option<Arc<dyn Rights>>,
) -> Attached {
    let info = &owner.info;
    let client_id = &info.client_id;
    let mut taken_over = false;
    loop {
        // Decided under the registry lock, so two connections with one
        // client id cannot both create a session (and a shutdown, which
        // kicks every owned session under it, misses none).
        let busy = {
            let mut sessions = broker.sessions();
            let mut replaced = None;
            let mut busy = None;
            if let Some(old) = sessions.get(client_id).cloned() {
                let mut st = old.lock();
                if st.owned {
                    old.kick(Kick::TakenOver);
                    drop(st);
                    busy = Some(old);
                } else if !info.clean_start && st.expiry_interval > 0 {
                    st.generation += 1;
                    st.online = true;
                    st.expiry_interval = expiry;
                    st.rights = rights.clone();
                    st.owner = Some(owner.clone());
                    let session = old.attach(&mut st);
                    if broker.is_closing() {
                        session.kick(Kick::Shutdown);
                    }
                    let generation = st.generation;
                    drop(st);
                    return Attached {
                        session,
                        present: true,
                        generation,
                        taken_over,
                        replaced: None,
                    };
                } else {
                    drop(st);
                    replaced = Some(old);
                }
            }
            match busy {
                Some(old) => old,
                None => {
                    let session = claim_new(broker, owner, expiry, rights.clone());
                    sessions.insert(client_id.clone(), Arc::clone(&session));
                    return Attached {
                        session,
                        present: false,
                        generation: 1,
                        taken_over,
                        replaced,
                    };
                }
            }
        };
        busy.until_released().await;
        taken_over = true;
    }
}

/// A new session owned by the connection whose `handle` this is.
fn claim_new(
    broker: &Broker,
    owner: &Arc<Owner>,
    expiry: u32,
    rights: Option<Arc<dyn Rights>>,
) -> Attachment {
    let info = &owner.info;
    let session = broker.new_session(info.client_id.clone());
    {
        let mut st = session.lock();
        st.generation = 1;
        st.online = true;
        st.expiry_interval = expiry;
        st.rights = rights;
        st.owner = Some(owner.clone());
        let attached = session.attach(&mut st);
        if broker.is_closing() {
            session.kick(Kick::Shutdown);
        }
        attached
    }
}

impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> Client<S> {
    /// On session resume: resend unacknowledged PUBLISH packets with DUP set
    /// and PUBREL for those already PUBREC'd, in their original order, as
    /// many as this connection's Receive Maximum allows (the rest as
    /// acknowledgements free slots, see [`Client::resend_due`]).
    fn resend_inflight(&mut self) {
        {
            let mut st = self.session.lock();
            for m in st.inflight.iter_mut() {
                m.unsent = true;
            }
            st.unsent = u32::try_from(st.inflight.len()).unwrap_or(u32::MAX);
        }
        self.resend_due();
    }
}
