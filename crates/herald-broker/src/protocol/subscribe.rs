//! SUBSCRIBE and UNSUBSCRIBE: per-filter validation and authorization with
//! the right SUBACK codes, subscription identifiers, and retained messages
//! for new subscriptions (queued after the SUBACK).

use super::Client;
use super::disconnect::Close;
use crate::broker::Broker;
use crate::router::{parse_shared, valid_topic_filter};
use crate::session::SubEntry;
use herald_codec::{
    ByteStr, Packet, Properties, QoS, ReasonCode, SubAck, Subscribe, Subscription, UnsubAck,
    Unsubscribe,
};
use tokio::io::{AsyncRead, AsyncWrite};

impl<S: AsyncRead + AsyncWrite + Send + 'static> Client<S> {
    pub(crate) fn handle_subscribe(&mut self, s: Subscribe) -> Result<(), Close> {
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
        let id = s.properties.subscription_identifiers.first().copied();
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut added = Vec::new();
        for sub in &s.filters {
            match self.check_filter(sub, id) {
                Err(code) => codes.push(code),
                Ok(entry) => {
                    let is_new = self.broker.subscribe(&self.session, &sub.filter, entry);
                    codes.push(ReasonCode(entry.options.qos as u8));
                    added.push((sub.filter.clone(), entry, is_new));
                }
            }
        }
        self.send(&Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            properties: Properties::default(),
            codes,
        }));
        for (filter, entry, is_new) in added {
            self.broker
                .send_retained(&self.session, &filter, entry, is_new);
        }
        Ok(())
    }

    /// The entry to store for one filter, or the SUBACK failure code.
    fn check_filter(&self, sub: &Subscription, id: Option<u32>) -> Result<SubEntry, ReasonCode> {
        let cfg = &self.broker.config;
        let filter: &str = &sub.filter;
        let shared = parse_shared(filter).map_err(|_| ReasonCode::TOPIC_FILTER_INVALID)?;
        let plain = match shared {
            Some((_, f)) => f,
            None => filter,
        };
        if !valid_topic_filter(plain) {
            return Err(ReasonCode::TOPIC_FILTER_INVALID);
        }
        if shared.is_some() {
            if !cfg.mqtt.shared_subscription_available {
                return Err(ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED);
            }
        }
        if !cfg.mqtt.wildcard_subscription_available && plain.contains(['+', '#']) {
            return Err(ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED);
        }
        if id.is_some() && !cfg.mqtt.subscription_identifiers_available {
            return Err(ReasonCode::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED);
        }
        if Broker::denied(&cfg.authz.deny_subscribe, plain) {
            return Err(ReasonCode::NOT_AUTHORIZED);
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
        let codes = u
            .filters
            .iter()
            .map(|f: &ByteStr| {
                if self.broker.unsubscribe(&self.session, f) {
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::NO_SUBSCRIPTION_EXISTED
                }
            })
            .collect();
        self.send(&Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            properties: Properties::default(),
            codes,
        }));
        Ok(())
    }
}
