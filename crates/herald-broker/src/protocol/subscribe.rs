//! SUBSCRIBE and UNSUBSCRIBE: per-filter validation and authorization with
//! the right SUBACK codes, subscription identifiers, and retained messages
//! for new subscriptions (queued after the SUBACK).

use super::Client;
use super::disconnect::Close;
use crate::hooks::{AclAction, Event, SubscriptionInfo};
use crate::router::{parse_shared, valid_topic_filter};
use crate::session::SubEntry;
use herald_codec::{
    Packet, Properties, QoS, ReasonCode, SubAck, Subscribe, Subscription, UnsubAck, Unsubscribe,
};
use tokio::io::{AsyncRead, AsyncWrite};

impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> Client<S> {
    pub(crate) async fn handle_subscribe(&mut self, s: Subscribe) -> Result<(), Close> {
        // 5.0 §3.8.3.1: No Local on a shared subscription is a Protocol
        // Error, and 0x82 is not a SUBACK code: close the connection.
        let no_local_shared = s
            .filters
            .iter()
            .any(|f| f.options.no_local && matches!(parse_shared(&f.filter), Ok(Some(_))));
        if no_local_shared {
            return Err(Close::Protocol(
                ReasonCode::PROTOCOL_ERROR,
                "No Local on a shared subscription".into(),
            ));
        }
        self.filters_well_formed(s.filters.iter().map(|f| &*f.filter), "SUBSCRIBE")?;
        let id = s.properties.subscription_identifiers.first().copied();
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut added = Vec::new();
        for sub in &s.filters {
            let (share, topic) = split_share(&sub.filter);
            let hooks = &self.broker.hooks;
            let mut info = SubscriptionInfo {
                topic,
                share,
                options: sub.options,
                subscription_id: id,
            };
            hooks.fire(Event::ClientSubscribe {
                client: &self.owner.info,
                sub: info,
            });
            let mut checked = self.check_filter(sub, id);
            if checked.is_ok()
                && !self
                    .broker
                    .authorize(
                        &self.owner.info,
                        self.rights.as_ref(),
                        AclAction::Subscribe,
                        topic,
                    )
                    .await
            {
                checked = Err(ReasonCode::NOT_AUTHORIZED);
            }
            match checked {
                Err(code) => codes.push(code),
                Ok(entry) => {
                    let is_new = self.broker.subscribe(&self.session, &sub.filter, entry);
                    info.options = entry.options;
                    self.broker.hooks.fire(Event::SessionSubscribed {
                        client: &self.owner.info,
                        sub: info,
                        is_new,
                    });
                    codes.push(ReasonCode(entry.options.qos as u8));
                    added.push((sub.filter.clone(), entry, is_new));
                }
            }
        }
        if !added.is_empty() {
            self.broker
                .persist_session(&self.session, crate::store::CONNECTED);
        }
        self.send(&Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            properties: Properties::default(),
            codes,
        }));
        for (filter, entry, is_new) in added {
            let pending = self
                .broker
                .send_retained(&self.session, &filter, entry, is_new);
            if !pending.is_empty() {
                self.broker.settle(pending).await;
            }
        }
        Ok(())
    }

    /// 3.x: a malformed topic filter in a SUBSCRIBE or UNSUBSCRIBE is a
    /// protocol violation that closes the connection ([MQTT-4.8.0-1]),
    /// before anything of the packet takes effect. 5.0 answers it with
    /// reason 0x8F per filter instead.
    fn filters_well_formed<'f>(
        &self,
        mut filters: impl Iterator<Item = &'f str>,
        packet: &str,
    ) -> Result<(), Close> {
        if self.protocol.is_v5() {
            return Ok(());
        }
        match filters.find(|f| !well_formed(f)) {
            Some(bad) => Err(Close::Protocol(
                ReasonCode::PROTOCOL_ERROR,
                format!("invalid topic filter {bad:?} in {packet}"),
            )),
            None => Ok(()),
        }
    }

    /// The entry to store for one filter, or the SUBACK failure code.
    fn check_filter(&self, sub: &Subscription, id: Option<u32>) -> Result<SubEntry, ReasonCode> {
        let cfg = &self.broker.config;
        let filter: &str = &sub.filter;
        if !well_formed(filter) {
            return Err(ReasonCode::TOPIC_FILTER_INVALID);
        }
        let shared = parse_shared(filter).map_err(|_| ReasonCode::TOPIC_FILTER_INVALID)?;
        let plain = match shared {
            Some((_, f)) => f,
            None => filter,
        };
        if shared.is_some() && !cfg.mqtt.shared_subscription_available {
            return Err(ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED);
        }
        if !cfg.mqtt.wildcard_subscription_available && plain.contains(['+', '#']) {
            return Err(ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED);
        }
        if id.is_some() && !cfg.mqtt.subscription_identifiers_available {
            return Err(ReasonCode::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED);
        }
        let mut options = sub.options;
        let max = match cfg.mqtt.max_qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        };
        options.qos = options.qos.min(max);
        if !self.protocol.is_v5() {
            options.retain_as_published = false;
            options.no_local = false;
        }
        Ok(SubEntry { options, id })
    }

    pub(crate) fn handle_unsubscribe(&mut self, u: Unsubscribe) -> Result<(), Close> {
        self.filters_well_formed(u.filters.iter().map(|f| &**f), "UNSUBSCRIBE")?;
        let mut codes = Vec::with_capacity(u.filters.len());
        for filter in &u.filters {
            if !well_formed(filter) {
                codes.push(ReasonCode::TOPIC_FILTER_INVALID);
                continue;
            }
            let (share, topic) = split_share(filter);
            let hooks = &self.broker.hooks;
            hooks.fire(Event::ClientUnsubscribe {
                client: &self.owner.info,
                topic,
                share,
            });
            if self.broker.unsubscribe(&self.session, filter) {
                hooks.fire(Event::SessionUnsubscribed {
                    client: &self.owner.info,
                    topic,
                    share,
                });
                codes.push(ReasonCode::SUCCESS);
            } else {
                codes.push(ReasonCode::NO_SUBSCRIPTION_EXISTED);
            }
        }
        if codes.contains(&ReasonCode::SUCCESS) {
            self.broker
                .persist_session(&self.session, crate::store::CONNECTED);
        }
        self.send(&Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            properties: Properties::default(),
            codes,
        }));
        Ok(())
    }
}

/// Whether a filter as sent (plain or `$share/g/f`) is a valid topic
/// filter.
fn well_formed(filter: &str) -> bool {
    match parse_shared(filter) {
        Ok(Some((_, f))) => valid_topic_filter(f),
        Ok(None) => valid_topic_filter(filter),
        Err(_) => false,
    }
}

/// `(share group, filter)` of a filter as sent: `$share/g/a/b` gives
/// `(Some("g"), "a/b")`; anything else (also a malformed `$share`) is taken
/// as it is.
fn split_share(filter: &str) -> (Option<&str>, &str) {
    match parse_shared(filter) {
        Ok(Some((group, topic))) => (Some(group), topic),
        _ => (None, filter),
    }
}
