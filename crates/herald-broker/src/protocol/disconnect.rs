//! How a connection ends: the client's DISCONNECT, and everything after the
//! packet loop stops for any reason: the server's DISCONNECT (5.0), the will
//! message (now or after the Will Delay Interval), and the session's fate
//! (ended now, or kept until its expiry interval runs out).

use super::{Client, flush_briefly};
use crate::access::Rights;
use crate::broker::Broker;
use crate::hooks::{AclAction, ClientInfo, DropReason, Event};
use crate::message::Message;
use crate::metrics::Metrics;
use crate::reason::{DisconnectReason, TerminationReason};
use crate::session::{Session, SessionWill};
use herald_codec::{ByteStr, DecodeError, Disconnect, Packet, Properties, ReasonCode, Will};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Why the packet loop stopped.
#[derive(Debug)]
pub enum Close {
    /// The client sent DISCONNECT with reason 0x00 (or any 3.x DISCONNECT).
    Normal,
    /// A 5.0 DISCONNECT with another reason (0x04 asks for the will).
    ClientReason(ReasonCode),
    /// The socket closed (or failed) without DISCONNECT.
    TcpClosed,
    /// Nothing arrived within 1.5 × keep alive.
    KeepAliveTimeout,
    /// Another connection took the client id over.
    TakenOver,
    /// The broker is shutting down.
    ServerShutdown,
    /// A packet broke a rule the decoder checks.
    Decode(DecodeError),
    /// A packet broke a protocol rule: the 5.0 reason and what happened.
    Protocol(ReasonCode, String),
    /// A 3.x client's QoS 1/2 PUBLISH could not be stored: 3.x has no
    /// reason code to refuse it with, so the connection closes without the
    /// acknowledgement.
    NotAccepted,
    /// A PUBLISH to this topic was refused and `acl.deny_action` is
    /// `disconnect`.
    NotAuthorized(ByteStr),
}

impl Close {
    /// Why the connection closed, as hook events report it.
    pub fn reason(&self) -> DisconnectReason {
        match self {
            Close::Normal => DisconnectReason::Normal,
            Close::ClientReason(r) => DisconnectReason::ClientReason(*r),
            Close::TcpClosed => DisconnectReason::SocketClosed,
            Close::KeepAliveTimeout => DisconnectReason::KeepaliveTimeout,
            Close::TakenOver => DisconnectReason::TakenOver,
            Close::ServerShutdown => DisconnectReason::ServerShutdown,
            Close::Decode(_) => DisconnectReason::FrameError,
            Close::Protocol(..) => DisconnectReason::ProtocolError,
            Close::NotAccepted => DisconnectReason::NotAccepted,
            Close::NotAuthorized(_) => DisconnectReason::NotAuthorized,
        }
    }

    /// The reason the server sends in its own DISCONNECT (5.0), if any.
    fn server_reason(&self) -> Option<ReasonCode> {
        match self {
            Close::Normal | Close::ClientReason(_) | Close::TcpClosed => None,
            Close::KeepAliveTimeout => Some(ReasonCode::KEEP_ALIVE_TIMEOUT),
            Close::TakenOver => Some(ReasonCode::SESSION_TAKEN_OVER),
            Close::ServerShutdown => Some(ReasonCode::SERVER_SHUTTING_DOWN),
            Close::Decode(e) => Some(e.reason_code()),
            Close::Protocol(r, _) => Some(*r),
            Close::NotAccepted => Some(crate::ack::REFUSED_REASON),
            Close::NotAuthorized(_) => Some(ReasonCode::NOT_AUTHORIZED),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> Client<S> {
    /// A DISCONNECT from the client: the will is discarded unless 5.0
    /// reason 0x04; 5.0 may update the session expiry, but not from 0.
    pub(crate) fn handle_disconnect(&mut self, d: Disconnect) -> Close {
        if let Some(expiry) = d.properties.session_expiry_interval {
            if self.connect_expiry_zero && expiry != 0 {
                return Close::Protocol(
                    ReasonCode::PROTOCOL_ERROR,
                    "session expiry set on DISCONNECT after 0 on CONNECT".into(),
                );
            }
            self.session_expiry = expiry.min(self.broker.config.mqtt.max_session_expiry);
        }
        if d.reason == ReasonCode::SUCCESS {
            Close::Normal
        } else {
            Close::ClientReason(d.reason)
        }
    }

    /// Runs once the packet loop has stopped.
    pub(crate) async fn finish(&mut self, close: Close) {
        let client_id = self.session.client_id.clone();
        let broke_rule = match &close {
            Close::Decode(e) => Some(e.to_string()),
            Close::Protocol(code, why) => Some(format!("{why} (reason {code})")),
            _ => None,
        };
        if let Close::NotAccepted = close {
            // Always worth a line: the client's message was not stored.
            tracing::info!(%client_id, peer = %self.owner.info.peer, "a QoS 1/2 message could not be stored; closing without acknowledging it");
        }
        if broke_rule.is_some() {
            Metrics::add(&self.broker.metrics.protocol_errors, 1);
        }
        let (peer, protocol) = (self.owner.info.peer, self.protocol.version());
        match broke_rule {
            // A broken rule is always worth a line, with what was broken.
            Some(error) => tracing::info!(
                %client_id, %peer, %protocol, reason = %close.reason(), %error,
                "client disconnected: it broke the protocol"
            ),
            // As is a refused PUBLISH that closes the connection.
            None if let Close::NotAuthorized(topic) = &close => tracing::info!(
                %client_id, %peer, %protocol, reason = %close.reason(), %topic,
                "client disconnected: a PUBLISH was refused (acl.deny_action = disconnect)"
            ),
            None if self.broker.logs_connections() => tracing::info!(
                %client_id, %peer, %protocol, reason = %close.reason(),
                "client disconnected"
            ),
            None => {}
        }
        self.broker.hooks.fire(Event::ClientDisconnected {
            client: &self.owner.info,
            reason: close.reason(),
        });
        if let (true, Some(reason)) = (self.protocol.is_v5(), close.server_reason()) {
            self.send(&Packet::Disconnect(Disconnect {
                reason,
                properties: Properties::default(),
            }));
        }
        if !matches!(close, Close::TcpClosed) {
            flush_briefly(&mut self.io).await;
        }
        self.broker.metrics.sub_connected(self.owner.info.listener);

        // Detach from the session, unless a newer connection already has it.
        let ours = {
            let mut st = self.session.lock();
            let ours = st.generation == self.generation;
            if ours {
                st.online = false;
                st.expiry_interval = self.session_expiry;
            }
            ours
        };
        // Offline sessions never push back: release paused publishers.
        self.session.relieve(0, 0);
        let will = if matches!(close, Close::Normal) {
            None
        } else {
            self.will.take()
        };
        let taken_over = matches!(close, Close::TakenOver);
        let ends_now = ours && self.session_expiry == 0 && !taken_over;
        // The will still waiting after this, kept (and stored) with the
        // session.
        let mut waiting = None;
        if let Some(will) = will {
            let delay = will.properties.will_delay_interval.unwrap_or(0);
            let wait = delay.min(self.session_expiry);
            let message = will_message((*will).clone(), &self.owner.info);
            if wait == 0 || ends_now {
                publish_will(
                    &self.broker,
                    &self.owner.info,
                    self.rights.as_ref(),
                    message,
                )
                .await;
            } else {
                waiting = Some(SessionWill {
                    will,
                    due_ms: crate::support::now_ms().saturating_add(u64::from(wait) * 1000),
                });
                spawn_will(
                    self.broker.clone(),
                    self.session.clone(),
                    self.generation,
                    self.owner.info.clone(),
                    self.rights.clone(),
                    message,
                    Duration::from_secs(wait.into()),
                );
            }
        }
        if ends_now {
            self.broker
                .discard_session(&self.session, TerminationReason::Closed(close.reason()));
        } else if ours && !taken_over {
            let expires_ms = if self.session_expiry == u32::MAX {
                crate::store::NEVER
            } else {
                crate::support::now_ms().saturating_add(u64::from(self.session_expiry) * 1000)
            };
            self.session.lock().will = waiting;
            self.broker.persist_session(&self.session, expires_ms);
            if self.session_expiry != u32::MAX {
                schedule_expiry(
                    self.broker.clone(),
                    self.session.clone(),
                    self.generation,
                    Duration::from_secs(self.session_expiry.into()),
                );
            }
        }
    }
}

/// Publishes the will of `session`'s connection `generation` after
/// `wait`, or when the session ends if that is sooner (5.0 §3.1.3.2.2: a
/// clean start discards it), unless the client connected again meanwhile;
/// then forgets it ([`Broker::will_done`]).
pub(crate) fn spawn_will(
    broker: Arc<Broker>,
    session: Arc<Session>,
    generation: u64,
    info: ClientInfo,
    rights: Option<Arc<dyn Rights>>,
    message: Message,
    wait: Duration,
) {
    tokio::spawn(async move {
        let registered = broker
            .sessions()
            .get(&session.client_id)
            .is_some_and(|s| Arc::ptr_eq(s, &session));
        if registered {
            let delay = tokio::time::sleep(wait);
            tokio::pin!(delay);
            loop {
                // `drained` wakes for other reasons too: look again.
                let woken = session.drained.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                if session.lock().ended {
                    break;
                }
                tokio::select! {
                    _ = &mut delay => break,
                    _ = woken => {}
                }
            }
        }
        // Not if the client came back meanwhile.
        let current = session.lock().generation == generation;
        if current {
            publish_will(&broker, &info, rights.as_ref(), message).await;
            broker.will_done(&session, generation);
        }
    });
}

/// Ends the session after `after` unless a connection took it meanwhile.
pub(crate) fn schedule_expiry(
    broker: Arc<Broker>,
    session: Arc<Session>,
    generation: u64,
    after: Duration,
) {
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let expired = {
            let st = session.lock();
            st.generation == generation && !st.online
        };
        if expired {
            tracing::debug!(client_id = %session.client_id, "session expired");
            broker.discard_session(&session, TerminationReason::Expired);
        }
    });
}

/// The will as a message from its client; the Will Delay Interval is not
/// forwarded.
pub(crate) fn will_message(will: Will, client: &ClientInfo) -> Message {
    let mut props = will.properties;
    props.will_delay_interval = None;
    Message::new(
        will.topic,
        will.payload,
        will.qos,
        will.retain,
        props,
        client.client_id.clone(),
        client.username.clone(),
    )
}

/// Publishes a will if the authorization point lets its client publish to
/// the will topic (checked now, with the rights the client had).
pub(crate) async fn publish_will(
    broker: &Broker,
    client: &ClientInfo,
    rights: Option<&Arc<dyn Rights>>,
    message: Message,
) {
    if broker.may_publish_to(&client.client_id, &message.topic)
        && broker
            .authorize(client, rights, AclAction::Publish, &message.topic)
            .await
    {
        let pending = broker.publish(Arc::new(message)).pending;
        broker.settle(pending).await;
    } else {
        broker.dropped(&message, DropReason::NotAuthorized);
    }
}
