//! PUBLISH in both directions and its acknowledgements.
//!
//! Inbound: topic aliases, QoS/retain capability checks, the authorization
//! point, QoS 2 exactly-once (a message is routed on its first PUBLISH and
//! its packet id remembered until PUBREL), Receive Maximum.
//! Outbound: taking messages from the session queue into the inflight
//! window, message expiry, topic aliases, the client's Maximum Packet Size,
//! and the QoS 1/2 acknowledgement state machines.

use super::disconnect::Close;
use super::{Client, Pause};
use crate::ack::{AckHolds, REFUSED_REASON, Released};
use crate::broker::{MAX_ROUTED_TOGETHER, Pending, Route, RouteOutcome};
use crate::config::DenyAction;
use crate::connection::WRITE_HIGH_WATER;
use crate::hooks::{AclAction, DropReason, Event};
use crate::message::{Delivery, Message};
use crate::metrics::Metrics;
use crate::session::{Inflight, Session};
use crate::store::Change;
use herald_codec::{
    ByteStr, Packet, Properties, PubResp, Publish, PublishRef, QoS, ReasonCode, peek_publish,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Weak;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

/// Longest a publisher is paused for one congested subscriber.
pub(crate) const PRESSURE_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// What a PUBLISH adds to its message's topic, payload and properties,
/// about (fixed header, lengths, packet id): for sizing a write buffer.
const ENCODING_OVERHEAD: usize = 8;

/// A routed PUBLISH waiting for its answer.
pub(crate) struct Routed {
    /// Its packet id.
    packet_id: u16,
    /// Its QoS (none answered for 0).
    qos: QoS,
    /// The reason to answer with (5.0).
    reason: ReasonCode,
    /// What the answer waits for.
    holds: AckHolds,
}

impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> Client<S> {
    /// A PUBLISH from the client: checked, authorized (asking the
    /// `client.check_acl` handlers, which may wait), routed, answered.
    /// Deliveries held for a subscriber's remote rights are settled before
    /// the next packet is read, so they keep this publisher's order, and
    /// before the acknowledgement, which waits for what they stored too.
    pub(crate) async fn handle_publish(&mut self, p: Publish) -> Result<(), Close> {
        let Some((message, packet_id, qos)) = self.accept_publish(p)? else {
            return Ok(());
        };
        let allowed = self
            .broker
            .may_publish_to(&self.owner.info.client_id, &message.topic)
            && self
                .broker
                .authorize(
                    &self.owner.info,
                    self.rights.as_ref(),
                    AclAction::Publish,
                    &message.topic,
                )
                .await;
        let (pending, mut routed) = self.route_publish(message, packet_id, qos, allowed)?;
        if !pending.is_empty() {
            self.broker.settle_held(pending, &mut routed.holds).await;
        }
        self.answer(routed)
    }

    /// [`Client::handle_publish`] when nothing can wait (no
    /// `client.check_acl` handler, no rights that ask remotely).
    pub(crate) fn handle_publish_now(&mut self, p: Publish) -> Result<(), Close> {
        if self.publishes_follow(&p) && self.broken_rule(&p).is_none() {
            return self.handle_publishes(p);
        }
        self.handle_publish_alone(p)
    }

    /// [`Client::handle_publish_now`] for one PUBLISH on its own.
    fn handle_publish_alone(&mut self, p: Publish) -> Result<(), Close> {
        let Some((message, packet_id, qos)) = self.accept_publish(p)? else {
            return Ok(());
        };
        let broker = &self.broker;
        let allowed = broker.may_publish_to(&self.owner.info.client_id, &message.topic)
            && broker.authorized_now(self.rights.as_ref(), AclAction::Publish, &message.topic);
        let (pending, routed) = self.route_publish(message, packet_id, qos, allowed)?;
        debug_assert!(pending.is_empty(), "rights that ask make publishing wait");
        self.answer(routed)
    }

    /// A rule a message with a topic can break: it is dropped
    /// (protocol_error) and the connection closes.
    fn broken_rule(&self, p: &Publish) -> Option<Close> {
        let cfg = &self.broker.config.mqtt;
        if !p.properties.subscription_identifiers.is_empty() {
            Some(protocol_error(
                "subscription identifier in a client PUBLISH",
            ))
        } else if p.qos as u8 > cfg.max_qos {
            Some(Close::Protocol(
                ReasonCode::QOS_NOT_SUPPORTED,
                format!("QoS {} above maximum {}", p.qos as u8, cfg.max_qos),
            ))
        } else if p.retain && !cfg.retain_available {
            Some(Close::Protocol(
                ReasonCode::RETAIN_NOT_SUPPORTED,
                "retain is not available".into(),
            ))
        } else {
            None
        }
    }

    /// Checks a PUBLISH against the protocol rules and resolves its topic
    /// alias; `None` when there is nothing more to do (a QoS 2 resend).
    #[allow(clippy::type_complexity)]
    fn accept_publish(
        &mut self,
        mut p: Publish,
    ) -> Result<Option<(Arc<Message>, u16, QoS)>, Close> {
        let metrics = &self.broker.metrics;
        Metrics::add(&metrics.messages_received, 1);
        let cfg = &self.broker.config.mqtt;
        if let Some(alias) = p.properties.topic_alias {
            if alias == 0 || alias > cfg.topic_alias_maximum {
                return Err(Close::Protocol(
                    ReasonCode::TOPIC_ALIAS_INVALID,
                    format!(
                        "topic alias {alias} above maximum {}",
                        cfg.topic_alias_maximum
                    ),
                ));
            }
            if p.topic.is_empty() {
                match self.aliases.as_ref().and_then(|a| a.incoming.get(&alias)) {
                    Some(topic) => p.topic = topic.clone(),
                    None => return Err(protocol_error("unknown topic alias")),
                }
            } else {
                // Kept for the connection: a copy, not a read-buffer slice.
                self.aliases
                    .get_or_insert_default()
                    .incoming
                    .insert(alias, p.topic.detached());
            }
        }
        let broken = self.broken_rule(&p);
        // QoS 2 exchanges awaiting PUBREL: 5.0 clients were told Receive
        // Maximum; 3.x clients know no limit, so theirs is larger.
        let awaiting_max = if self.protocol.is_v5() {
            usize::from(cfg.receive_maximum)
        } else {
            cfg.max_awaiting_rel as usize
        };
        let duplicate_or_full = if p.qos == QoS::ExactlyOnce && broken.is_none() {
            let st = self.session.lock();
            let awaiting = st.rare().map(|r| &r.incoming_qos2);
            if awaiting.is_some_and(|a| a.contains(&p.packet_id)) {
                Some(true)
            } else {
                (awaiting.map_or(0, |a| a.len()) >= awaiting_max).then_some(false)
            }
        } else {
            None
        };
        if duplicate_or_full == Some(true) {
            // A resend of a message already routed: acknowledge only (in
            // order, behind any acknowledgement still held).
            self.acknowledge(
                Packet::PubRec(PubResp::new(p.packet_id)),
                AckHolds::unwanted(),
            )?;
            return Ok(None);
        }
        let packet_id = p.packet_id;
        let qos = p.qos;
        let message = Message::new(
            p.topic,
            p.payload,
            p.qos,
            p.retain,
            p.properties,
            self.owner.info.client_id.clone(),
            self.owner.info.username.clone(),
        );
        if let Some(close) = broken {
            self.broker.dropped(&message, DropReason::ProtocolError);
            return Err(close);
        }
        if duplicate_or_full == Some(false) {
            self.broker
                .dropped(&message, DropReason::ReceiveMaximumExceeded);
            if !self.protocol.is_v5() {
                Metrics::add(&self.broker.metrics.awaiting_rel_full, 1);
                return Err(protocol_error(&format!(
                    "more than mqtt.max_awaiting_rel = {awaiting_max} QoS 2 messages awaiting PUBREL"
                )));
            }
            return Err(Close::Protocol(
                ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                "more unacknowledged QoS 2 messages than Receive Maximum".into(),
            ));
        }
        Ok(Some((Arc::new(message), packet_id, qos)))
    }

    /// Routes an accepted PUBLISH (or drops it, if not allowed). A refused
    /// one closes the connection when `acl.deny_action` says so. Returns
    /// the deliveries held for a remote decision, and the answer to give
    /// ([`Client::answer`]) once they are settled.
    fn route_publish(
        &mut self,
        message: Arc<Message>,
        packet_id: u16,
        qos: QoS,
        allowed: bool,
    ) -> Result<(Vec<Pending>, Routed), Close> {
        let mut holds = holds_for(qos);
        let mut pending = Vec::new();
        let reason = if !allowed {
            self.broker.dropped(&message, DropReason::NotAuthorized);
            if self.broker.config.acl.deny_action == DenyAction::Disconnect {
                return Err(Close::NotAuthorized(message.topic.clone()));
            }
            ReasonCode::NOT_AUTHORIZED
        } else {
            let mut outcome = self.broker.publish_held(message, &mut holds);
            pending = std::mem::take(&mut outcome.pending);
            self.routed_reason(&holds, &mut outcome)
        };
        let routed = Routed {
            packet_id,
            qos,
            reason,
            holds,
        };
        Ok((pending, routed))
    }

    /// The reason to answer a routed message with; a subscriber it took
    /// above high water pauses this publisher.
    fn routed_reason(&mut self, holds: &AckHolds, outcome: &mut RouteOutcome) -> ReasonCode {
        if let Some(congested) = outcome.congested.take()
            && self.pressure.is_none()
        {
            self.push_back(congested);
        }
        if holds.is_refused() {
            REFUSED_REASON
        } else if outcome.matched {
            ReasonCode::SUCCESS
        } else {
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        }
    }

    /// Whether the next packet read is a PUBLISH to the topic `p` names,
    /// both at QoS 0 or 1: they are handled together
    /// ([`Client::handle_publishes`]).
    fn publishes_follow(&self, p: &Publish) -> bool {
        p.qos != QoS::ExactlyOnce
            && !p.topic.is_empty()
            && peek_publish(&self.io.rbuf).is_some_and(|(qos, topic)| {
                qos < QoS::ExactlyOnce as u8 && topic == p.topic.as_bytes()
            })
    }

    /// Handles `first` and the PUBLISH packets read after it to the same
    /// topic (QoS 0 and 1) together, as [`Client::handle_publish_now`]
    /// would one by one: each is checked and counted, routed, and answered
    /// in order, but their subscribers are locked and woken once for all
    /// of them ([`Broker::publish_all`]), and so find them all queued.
    /// At most a quarter of a session queue's limit go together, so a
    /// subscriber's queue overshoots its high water mark (where the
    /// publisher pauses) by no more than before its limit. One that breaks
    /// a rule is left out and handled after them, so its drop comes after
    /// their events, as one by one.
    fn handle_publishes(&mut self, first: Publish) -> Result<(), Close> {
        let cap = (self.broker.config.mqtt.max_queued_messages as usize / 4)
            .clamp(1, MAX_ROUTED_TOGETHER);
        let topic = first.topic.clone();
        let mut messages = Vec::new();
        let mut answers = Vec::new();
        let mut failed = None;
        let mut after = None;
        let mut next = Some(first);
        while let Some(p) = next.take() {
            let more = messages.len() + 1 < cap && self.publishes_follow(&p);
            match self.accept_publish(p) {
                Ok(Some((message, packet_id, qos))) => {
                    messages.push(message);
                    answers.push((packet_id, qos));
                }
                // Only a QoS 2 resend is not routed.
                Ok(None) => {}
                Err(close) => {
                    failed = Some(close);
                    break;
                }
            }
            if more {
                match self.io.next_packet() {
                    Ok(Some(Packet::Publish(p))) if self.broken_rule(&p).is_none() => {
                        next = Some(p);
                    }
                    Ok(Some(Packet::Publish(p))) => after = Some(p),
                    Ok(_) => failed = Some(protocol_error("a PUBLISH that did not decode as one")),
                    Err(e) => failed = Some(Close::Decode(e)),
                }
            }
        }
        // What was accepted before a broken packet is routed and answered
        // first, as it would have been one by one.
        let broker = self.broker.clone();
        let allowed = broker.may_publish_to(&self.owner.info.client_id, &topic)
            && broker.authorized_now(self.rights.as_ref(), AclAction::Publish, &topic);
        if allowed {
            let mut routes: Vec<Route> = answers
                .iter()
                .map(|&(_, qos)| Route::new(holds_for(qos)))
                .collect();
            broker.publish_all(&messages, &mut routes);
            for ((packet_id, qos), mut route) in answers.into_iter().zip(routes) {
                debug_assert!(
                    route.outcome.pending.is_empty(),
                    "rights that ask make publishing wait"
                );
                let reason = self.routed_reason(&route.holds, &mut route.outcome);
                self.answer(Routed {
                    packet_id,
                    qos,
                    reason,
                    holds: route.holds,
                })?;
            }
        } else {
            for (message, (packet_id, qos)) in messages.into_iter().zip(answers) {
                let (_, routed) = self.route_publish(message, packet_id, qos, false)?;
                self.answer(routed)?;
            }
        }
        if let Some(close) = failed {
            return Err(close);
        }
        after.map_or(Ok(()), |p| self.handle_publish_alone(p))
    }

    /// Answers a routed PUBLISH once what its acknowledgement is held on
    /// (hooks, the store) has settled.
    fn answer(&mut self, routed: Routed) -> Result<(), Close> {
        let Routed {
            packet_id,
            qos,
            reason,
            mut holds,
        } = routed;
        let mut ack = PubResp::new(packet_id);
        if self.protocol.is_v5() {
            ack.reason = reason;
        }
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.acknowledge(Packet::PubAck(ack), holds)?,
            QoS::ExactlyOnce => {
                if !reason.is_error() {
                    let mut st = self.session.lock();
                    st.rare_mut().incoming_qos2.insert(packet_id);
                    if st.stored {
                        let change =
                            Change::Qos2In(self.session.client_id.clone(), packet_id, true);
                        match self.broker.persist(change) {
                            Some(ticket) => {
                                if let Some(gate) = self.broker.store_gate() {
                                    holds.hold(gate.clone(), ticket);
                                }
                            }
                            None => holds.refuse(),
                        }
                    }
                }
                self.acknowledge(Packet::PubRec(ack), holds)?;
            }
        }
        Ok(())
    }

    /// Sends a PUBACK / PUBREC now if nothing holds it or the ones before
    /// it, else queues it to leave in order once its holds settle.
    fn acknowledge(&mut self, packet: Packet, holds: AckHolds) -> Result<(), Close> {
        if self.acks.is_empty() && holds.is_empty() && !holds.is_refused() {
            self.send(&packet);
            return Ok(());
        }
        self.acks.push(packet, holds);
        self.release_acks()
    }

    /// Sends the held acknowledgements that have settled, in order. One
    /// whose message was refused goes out with reason 0x97 (5.0) or, as
    /// 3.x cannot say so, closes the connection without it (the client
    /// sends the message again when it reconnects).
    pub(crate) fn release_acks(&mut self) -> Result<(), Close> {
        while let Some(released) = self.acks.next_released() {
            match released {
                Released::Send(packet) => self.send(&packet),
                Released::Refused(mut packet) => {
                    if let Packet::PubRec(p) = &packet {
                        // Not stored: a resend must be taken as new.
                        self.forget_incoming_qos2(p.packet_id);
                    }
                    if !self.protocol.is_v5() {
                        return Err(Close::NotAccepted);
                    }
                    if let Packet::PubAck(p) | Packet::PubRec(p) = &mut packet {
                        p.reason = REFUSED_REASON;
                    }
                    self.send(&packet);
                }
            }
        }
        Ok(())
    }

    pub(crate) fn handle_puback(&mut self, packet_id: u16) -> Result<(), Close> {
        // PUBACK for a QoS 2 delivery: a protocol error in every version
        // (5.0 gives no reason code to answer it with).
        self.complete(packet_id, "PUBACK", true, |m| {
            m.delivery.qos == QoS::AtLeastOnce
        })
    }

    /// A protocol error if inflight message `packet_id` is one `wrong` says
    /// this acknowledgement cannot be for ([MQTT-4.8.0-1]: the connection
    /// closes). An unknown id is not an error: it may be a late duplicate.
    fn wrong_ack(
        &self,
        packet_id: u16,
        ack: &str,
        wrong: impl Fn(&Inflight) -> bool,
    ) -> Result<(), Close> {
        let st = self.session.lock();
        match st.inflight.iter().find(|m| m.packet_id == packet_id) {
            Some(m) if wrong(m) => Err(wrong_ack_error(ack, m)),
            _ => Ok(()),
        }
    }

    /// Ends the exchange of inflight message `packet_id` if `expected` holds
    /// for it (right QoS, right step), firing `message.acked` and freeing
    /// its window slot (the packet loop sends what waited for it next). An
    /// unknown id is ignored, as other brokers do; so is a mismatched one
    /// unless `strict`, when it is a protocol error ([MQTT-4.8.0-1]: the
    /// connection closes).
    fn complete(
        &mut self,
        packet_id: u16,
        ack: &str,
        strict: bool,
        expected: impl Fn(&Inflight) -> bool,
    ) -> Result<(), Close> {
        let done = {
            let mut st = self.session.lock();
            let Some(pos) = st.inflight.iter().position(|m| m.packet_id == packet_id) else {
                return Ok(());
            };
            match st.inflight.get(pos) {
                Some(m) if expected(m) => {}
                Some(m) if strict => return Err(wrong_ack_error(ack, m)),
                _ => return Ok(()),
            }
            let Some(done) = st.take_inflight_at(pos) else {
                return Ok(());
            };
            self.stored_done(done.delivery.seq);
            done
        };
        self.acked(&done.delivery);
        Ok(())
    }

    pub(crate) fn handle_pubrec(
        &mut self,
        packet_id: u16,
        reason: ReasonCode,
    ) -> Result<(), Close> {
        // A PUBREC for a QoS 1 delivery: 3.x closes; 5.0 answers PUBREL
        // 0x92 (Packet Identifier not found), below.
        if !self.protocol.is_v5() {
            self.wrong_ack(packet_id, "PUBREC", |m| m.delivery.qos == QoS::AtLeastOnce)?;
        }
        let mut rel = PubResp::new(packet_id);
        let mut ticket = 0;
        {
            let mut st = self.session.lock();
            let found = st
                .inflight
                .iter_mut()
                .find(|m| m.packet_id == packet_id && m.delivery.qos == QoS::ExactlyOnce);
            match found {
                Some(m) if reason.is_error() => {
                    // 5.0: a PUBREC with an error ends the exchange.
                    let (id, seq) = (m.packet_id, m.delivery.seq);
                    st.take_inflight(id);
                    self.stored_done(seq);
                    return Ok(());
                }
                Some(m) => {
                    m.released = true;
                    if m.delivery.seq != 0 {
                        let change =
                            Change::Released(self.session.client_id.clone(), m.delivery.seq);
                        let recorded = self.broker.persist(change);
                        // Were the PUBREL out before the store knows, a
                        // crash would make the PUBLISH go again after the
                        // client completed (and forgot) its packet id.
                        if self.broker.store_gate().is_some() {
                            ticket = recorded.unwrap_or(u64::MAX);
                            m.ticket = ticket;
                        }
                    }
                }
                None if self.protocol.is_v5() => {
                    rel.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
                }
                None => {}
            }
        }
        let start = self.io.wbuf.len();
        self.send(&Packet::PubRel(rel));
        self.hold_from(start, ticket);
        Ok(())
    }

    /// Holds what was encoded from write buffer offset `start` on until
    /// the store's `ticket` is written (nothing for 0, or without a store
    /// that holds acknowledgements).
    fn hold_from(&mut self, start: usize, ticket: u64) {
        if ticket != 0
            && let Some(gate) = self.broker.store_gate()
        {
            self.io.hold_from(start, gate, ticket);
        }
    }

    /// Removes an incoming QoS 2 packet id (and its stored record); returns
    /// whether it was there, and the store's ticket for the removal (0:
    /// none).
    fn forget_incoming_qos2(&self, packet_id: u16) -> (bool, u64) {
        let mut st = self.session.lock();
        let known = st.forget_incoming_qos2(packet_id);
        let mut ticket = 0;
        if known && st.stored {
            let change = Change::Qos2In(self.session.client_id.clone(), packet_id, false);
            ticket = self.broker.persist(change).unwrap_or(u64::MAX);
        }
        (known, ticket)
    }

    pub(crate) fn handle_pubrel(&mut self, packet_id: u16) -> Result<(), Close> {
        let (known, ticket) = self.forget_incoming_qos2(packet_id);
        let mut comp = PubResp::new(packet_id);
        if !known && self.protocol.is_v5() {
            comp.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
        }
        // Were the PUBCOMP out before the store forgot the packet id, a
        // crash would bring it back, and the publisher's next message
        // under that id would be taken for a resend and lost.
        let start = self.io.wbuf.len();
        self.send(&Packet::PubComp(comp));
        self.hold_from(start, ticket);
        Ok(())
    }

    pub(crate) fn handle_pubcomp(&mut self, packet_id: u16) -> Result<(), Close> {
        // PUBCOMP before PUBREC, or for a QoS 1 delivery: 3.x closes.
        let strict = !self.protocol.is_v5();
        self.complete(packet_id, "PUBCOMP", strict, |m| m.released)
    }

    /// Records that stored delivery `seq` is done (acknowledged or
    /// dropped); nothing for a delivery that is not stored (0).
    fn stored_done(&self, seq: u64) {
        if seq != 0 {
            self.broker
                .persist(Change::Done(self.session.client_id.clone(), seq));
        }
    }

    /// Sends again (PUBLISH with DUP, or PUBREL once PUBREC came) the
    /// inflight messages of a resumed session not yet sent on this
    /// connection, in order, while this connection's Receive Maximum has
    /// room; one larger than its Maximum Packet Size is dropped
    /// (`message.dropped`, packet too large) and its slot freed.
    pub(crate) fn resend_due(&mut self) {
        let session = self.session.clone();
        let mut too_large = Vec::new();
        {
            let mut st = session.lock();
            let mut outstanding = st.inflight.len().saturating_sub(st.unsent as usize);
            let mut i = 0;
            while st.unsent > 0
                && outstanding < usize::from(self.send_window)
                && i < st.inflight.len()
            {
                let Some(m) = st.inflight.get_mut(i) else {
                    break;
                };
                i += 1;
                if !m.unsent {
                    continue;
                }
                m.unsent = false;
                let m = m.clone();
                st.unsent -= 1;
                outstanding += 1;
                let start = self.io.wbuf.len();
                if m.released {
                    self.send(&Packet::PubRel(PubResp::new(m.packet_id)));
                    self.hold_from(start, m.ticket);
                    continue;
                }
                if self.put_delivery(&m.delivery, m.packet_id, true, false, Instant::now()) {
                    self.hold_from(start, m.ticket);
                } else {
                    too_large.push(m.packet_id);
                    outstanding -= 1;
                }
            }
        }
        for packet_id in too_large {
            let taken = session.lock().take_inflight(packet_id);
            if let Some(m) = taken {
                self.stored_done(m.delivery.seq);
                self.broker
                    .dropped(&m.delivery.message, DropReason::PacketTooLarge);
            }
        }
    }

    /// Moves queued messages into the write buffer while the inflight window
    /// and the write buffer have room.
    pub(crate) fn drain_queue(&mut self) {
        if self.session.lock().unsent > 0 {
            self.resend_due();
        }
        let now = Instant::now();
        let broker = self.broker.clone();
        let metrics = &broker.metrics;
        let session = self.session.clone();
        let mut st = session.lock();
        // Room for what the queue holds at once, up to the high-water mark:
        // grown packet by packet, the buffer would be copied at each
        // doubling.
        if self.io.wbuf.capacity() == 0 && !st.queue.is_empty() {
            let estimate = st.queue.bytes() + ENCODING_OVERHEAD * st.queue.len();
            self.io.wbuf.reserve(estimate.min(WRITE_HIGH_WATER));
        }
        let mut taken = 0u64;
        // Counted once per batch: every subscriber of a wide fan-out adding
        // to one shared counter per message contends for its cache line.
        let mut sent = 0u64;
        while self.io.wbuf.len() < WRITE_HIGH_WATER {
            let Some(qos) = st.next_qos() else {
                break;
            };
            if qos != QoS::AtMostOnce && st.inflight.len() >= usize::from(self.send_window) {
                break;
            }
            let Some(delivery) = st.pop_next() else {
                break;
            };
            taken += 1;
            if delivery.message.is_expired(now) {
                self.stored_done(delivery.seq);
                broker.dropped(&delivery.message, DropReason::Expired);
                continue;
            }
            let packet_id = if delivery.qos == QoS::AtMostOnce {
                0
            } else {
                st.next_packet_id()
            };
            let start = self.io.wbuf.len();
            if !self.put_delivery(&delivery, packet_id, false, true, now) {
                self.stored_done(delivery.seq);
                broker.dropped(&delivery.message, DropReason::PacketTooLarge);
                continue;
            }
            broker.hooks.fire(Event::MessageDelivered {
                client: &self.owner.info,
                message: &delivery.message,
                qos: delivery.qos,
                retain: delivery.retain,
            });
            sent += 1;
            if packet_id != 0 {
                let mut ticket = 0;
                if delivery.seq != 0 {
                    let change = Change::Sent(session.client_id.clone(), delivery.seq, packet_id);
                    let recorded = broker.persist(change);
                    // QoS 2 exactly once: were the PUBLISH out before its
                    // packet id is on disk, a crash would make it go again
                    // under another id, which the client takes as new.
                    if delivery.qos == QoS::ExactlyOnce
                        && let Some(gate) = broker.store_gate()
                    {
                        ticket = recorded.unwrap_or(u64::MAX);
                        self.io.hold_from(start, gate, ticket);
                    }
                }
                st.push_inflight(Inflight {
                    packet_id,
                    delivery,
                    released: false,
                    unsent: false,
                    ticket,
                });
            } else {
                self.stored_done(delivery.seq);
            }
        }
        let queued = st.queue.len();
        drop(st);
        if sent > 0 {
            Metrics::add(&metrics.messages_sent, sent);
        }
        session.relieve(queued, taken);
    }

    /// Backpressure: a session this client's message pushed above high
    /// water makes this connection stop reading until it drains. Every
    /// [`PRESSURE_MAX`] the pause is renewed if the subscriber took messages
    /// meanwhile; one that took none is not waited on again until it has
    /// drained: one stuck subscriber must not stall a publisher's other
    /// subscribers for ever (beyond its queue limit messages are dropped
    /// and counted, as before).
    fn push_back(&mut self, congested: Arc<Session>) {
        if self
            .ignored
            .as_ref()
            .and_then(Weak::upgrade)
            .is_some_and(|s| Arc::ptr_eq(&s, &congested) && s.is_congested())
        {
            return;
        }
        self.ignored = None;
        if self.pressure.is_none() {
            self.pressure = Some(Pause::new(congested));
        }
    }

    /// Fires `message.acked` for a delivery the client acknowledged.
    fn acked(&self, delivery: &Delivery) {
        self.broker.hooks.fire(Event::MessageAcked {
            client: &self.owner.info,
            message: &delivery.message,
            qos: delivery.qos,
            retain: delivery.retain,
        });
    }

    /// Encodes delivery `d` under `packet_id` into the write buffer as a
    /// PUBLISH, borrowing the stored message's topic and payload (for 3.x
    /// nothing is built per delivery). 5.0 adds the delivery's properties
    /// and, with `alias`, a topic alias where the client takes them.
    /// Returns false, writing nothing, for a message larger than the
    /// client's Maximum Packet Size (or one that cannot be encoded).
    fn put_delivery(
        &mut self,
        d: &Delivery,
        packet_id: u16,
        dup: bool,
        alias: bool,
        now: Instant,
    ) -> bool {
        let mut properties = None;
        let mut new_alias = None;
        let mut topic: &str = &d.message.topic;
        if self.protocol.is_v5() {
            let props = properties.insert(outgoing_properties(d, now));
            if alias {
                let (omit, new) = self.apply_alias(props, &d.message.topic);
                if omit {
                    topic = "";
                }
                new_alias = new;
            }
        }
        let publish = PublishRef {
            dup,
            qos: d.qos,
            retain: d.retain,
            topic,
            packet_id,
            properties: properties.as_ref(),
            payload: &d.message.payload,
        };
        let fits = publish
            .encoded_len(self.protocol)
            .is_ok_and(|n| n <= self.client_max_packet as usize);
        if !fits {
            return false;
        }
        if let Err(e) = publish.encode(self.protocol, &mut self.io.wbuf) {
            tracing::warn!(client_id = %self.session.client_id, error = %e, "cannot encode message");
            return false;
        }
        // Only a sent PUBLISH tells the client an alias.
        if let Some((topic, alias)) = new_alias {
            self.aliases
                .get_or_insert_default()
                .outgoing
                .insert(topic, alias);
        }
        true
    }

    /// Server → client topic alias for `topic`: reuse the topic's alias
    /// (the PUBLISH then omits the topic: the first value returned) or give
    /// it a new one while the client's maximum allows. A new alias is
    /// returned, to be recorded once the PUBLISH that announces it is
    /// actually sent (it may yet be dropped as too large).
    fn apply_alias(
        &self,
        properties: &mut Properties,
        topic: &ByteStr,
    ) -> (bool, Option<(ByteStr, u16)>) {
        if self.client_alias_max == 0 {
            return (false, None);
        }
        let given = self.aliases.as_deref().map(|a| &a.outgoing);
        if let Some(&alias) = given.and_then(|a| a.get(topic)) {
            properties.topic_alias = Some(alias);
            return (true, None);
        }
        let count = given.map_or(0, HashMap::len);
        if count < usize::from(self.client_alias_max) {
            let alias = count as u16 + 1;
            properties.topic_alias = Some(alias);
            return (false, Some((topic.clone(), alias)));
        }
        (false, None)
    }
}

/// The message's forwarded properties plus what belongs to this delivery:
/// the remaining expiry and the subscription identifiers.
fn outgoing_properties(delivery: &Delivery, now: Instant) -> Properties {
    let mut props = delivery
        .message
        .properties
        .as_deref()
        .cloned()
        .unwrap_or_default();
    props.message_expiry_interval = delivery.message.remaining_expiry(now);
    props.subscription_identifiers = delivery.subscription_ids.clone();
    props
}

/// The holds of a new acknowledgement: none wanted for QoS 0, which has
/// none.
fn holds_for(qos: QoS) -> AckHolds {
    if qos == QoS::AtMostOnce {
        AckHolds::unwanted()
    } else {
        AckHolds::wanted()
    }
}

/// The protocol error of acknowledgement `ack` for inflight message `m`,
/// which it cannot be for.
fn wrong_ack_error(ack: &str, m: &Inflight) -> Close {
    protocol_error(&format!(
        "{ack} for packet id {}, a QoS {} delivery{}",
        m.packet_id,
        m.delivery.qos as u8,
        if m.released { " already released" } else { "" }
    ))
}

fn protocol_error(why: &str) -> Close {
    Close::Protocol(ReasonCode::PROTOCOL_ERROR, why.to_owned())
}
