//! The broker's state on disk, seen from the broker: opening the store and
//! taking over what it recovered (retained messages at once, persistent
//! sessions once hooks and access control are installed), and writing each
//! change of a stored session as it happens.

use super::Broker;
use crate::config::Config;
use crate::hooks::{DropReason, Event};
use crate::protocol::disconnect::{publish_will, spawn_will, will_message};
use crate::reason::TerminationReason;
use crate::session::{Owner, Session};
use crate::store::{CONNECTED, Change, NEVER, Store, StoreError, StoredSession};
use crate::support::{lock, now_ms, read};
use std::sync::Arc;
use std::time::Duration;

impl Broker {
    /// A broker whose state is kept in `data_dir` as `[persistence]`
    /// says: the stored state is read first (retained messages, within
    /// the `[retained]` limits), then changes are written as they happen.
    /// An unreadable store is an error naming the file, never an empty
    /// start.
    pub fn open(config: Config) -> Result<Arc<Broker>, StoreError> {
        let opened = Store::open(&config.data_dir, &config.persistence)?;
        let mut broker = Broker::in_memory(config);
        if let Some((store, mut recovered)) = opened {
            broker.store = Some(store);
            *lock(&broker.recovered_sessions) = std::mem::take(&mut recovered.sessions);
            broker.restore(recovered);
        }
        Ok(Arc::new(broker))
    }

    /// Takes over what the store recovered, within the `[retained]` limits
    /// (a message over one is dropped from the store too, and counted).
    fn restore(&mut self, recovered: crate::store::Recovered) {
        // Already in the store: not recorded again.
        let store = self.store.take();
        let mut dropped = Vec::new();
        for message in recovered.retained {
            let _ = self.retain(&message);
            if read(&self.retained).tree.get(&message.topic).is_none() {
                dropped.push(message.topic.clone());
            }
        }
        if let Some(store) = &store {
            for topic in dropped {
                let _ = store.record(Change::Unretain(topic));
            }
        }
        self.store = store;
    }

    /// Queues a change to the store, if there is one; its ticket unless
    /// refused.
    pub(crate) fn persist(&self, change: Change) -> Option<u64> {
        self.store.as_ref()?.record(change).ok()
    }

    /// The gate acknowledgements wait on, if the store holds them.
    pub(crate) fn store_gate(&self) -> Option<&Arc<dyn crate::ack::AckGate>> {
        self.store.as_ref().and_then(Store::ack_gate)
    }

    /// Records what a session is (expiry, user name, subscriptions, its
    /// last connection's identity, its waiting will) if it is persistent,
    /// or that it is gone if it was stored and no longer is.
    /// `expires_ms`: wall-clock expiry, [`crate::store::CONNECTED`] while
    /// connected.
    pub(crate) fn persist_session(&self, session: &Session, expires_ms: u64) {
        let Some(store) = &self.store else {
            return;
        };
        let mut st = session.lock();
        st.expires_ms = expires_ms;
        if st.expiry_interval > 0 {
            if store.record(Broker::session_record(session, &st)).is_ok() {
                st.stored = true;
            }
        } else if std::mem::take(&mut st.stored) {
            let _ = store.record(Change::SessionGone(session.client_id.clone()));
        }
    }

    /// The will of `session`'s connection `generation` was published (or
    /// dropped): it is no longer kept, nor stored, unless a newer
    /// connection has the session now.
    pub(crate) fn will_done(&self, session: &Session, generation: u64) {
        let mut st = session.lock();
        if st.generation != generation || st.will.take().is_none() || !st.stored {
            return;
        }
        if let Some(store) = &self.store {
            let _ = store.record(Broker::session_record(session, &st));
        }
    }

    /// A stored session's record, as its state says now.
    fn session_record(session: &Session, st: &crate::session::SessionState) -> Change {
        Change::Session(Arc::new(StoredSession {
            client_id: session.client_id.clone(),
            username: st.username(),
            expiry_interval: st.expiry_interval,
            expires_ms: st.expires_ms,
            subscriptions: st
                .subscriptions
                .iter()
                .map(|(f, e)| (f.clone(), *e))
                .collect(),
            owner: st.owner.clone(),
            will: st.will.clone(),
        }))
    }

    /// Brings back the persistent sessions the store recovered, once the
    /// hooks and the access control are installed (the listener calls it
    /// before accepting): with their subscriptions, queued and inflight
    /// messages, incoming QoS 2 packet ids and the rights their last
    /// connection had (worked out again from who it was, as at its
    /// CONNECT), offline, their expiry running in real time. One whose
    /// expiry passed while the broker was down ends now
    /// (`session.terminated`, reason expired).
    ///
    /// A waiting will comes back with its session. The broker's death is
    /// a connection lost without DISCONNECT for every client connected
    /// then: their wills are due their Will Delay Interval (at most the
    /// session expiry) after the restart, unless the client connects
    /// again first. A will already waiting its delay when the broker died
    /// keeps its time; one due while the broker was down, or whose session
    /// expired meanwhile, is published now.
    pub(crate) fn resume_stored_sessions(self: &Arc<Self>) {
        let recovered = std::mem::take(&mut *lock(&self.recovered_sessions));
        let now = now_ms();
        let access = self.access();
        let mut wills = Vec::new();
        for stored in recovered {
            let record = stored.record;
            let client_id = record.client_id.clone();
            let owner = record
                .owner
                .clone()
                .unwrap_or_else(|| Arc::new(Owner::unknown(&record.client_id, &record.username)));
            let rights = access
                .as_ref()
                .and_then(|a| a.rights(&owner.info, owner.superuser));
            let expired = record.expires_ms != CONNECTED
                && record.expires_ms != NEVER
                && record.expires_ms <= now;
            if expired || record.expiry_interval == 0 {
                self.persist(Change::SessionGone(client_id.clone()));
                for m in stored.messages.values() {
                    self.dropped(&m.delivery.message, DropReason::SessionEnded);
                }
                if let Some(w) = &record.will {
                    // Due by the session's end at the latest.
                    let message = will_message((*w.will).clone(), &owner.info);
                    wills.push((None, owner.info.clone(), rights, message, Duration::ZERO));
                }
                self.hooks.fire(Event::SessionTerminated {
                    client_id: &client_id,
                    username: record.username.as_deref(),
                    reason: TerminationReason::Expired,
                });
                continue;
            }
            let session = self.new_session(client_id.clone());
            let will = {
                let mut st = session.lock();
                st.expiry_interval = record.expiry_interval;
                st.stored = true;
                st.generation = 1;
                st.expires_ms = record.expires_ms;
                st.owner = Some(owner.clone());
                st.rights = rights.clone();
                st.will = record.will.clone();
                for (seq, m) in stored.messages {
                    st.next_seq = st.next_seq.max(seq);
                    if m.packet_id == 0 {
                        st.restore_queued(m.delivery);
                    } else {
                        st.push_inflight(crate::session::Inflight {
                            packet_id: m.packet_id,
                            delivery: m.delivery,
                            released: m.released,
                            unsent: true,
                            ticket: 0,
                        });
                    }
                }
                if !stored.qos2_in.is_empty() {
                    st.rare_mut().incoming_qos2 = stored.qos2_in.into_iter().collect();
                }
                // Connected at the crash: due its delay from now.
                if let Some(w) = &mut st.will
                    && w.due_ms == CONNECTED
                {
                    let wait = w.delay().min(record.expiry_interval);
                    w.due_ms = now.saturating_add(u64::from(wait) * 1000);
                }
                st.will.clone()
            };
            for (filter, entry) in &record.subscriptions {
                self.subscribe(&session, filter, *entry);
            }
            self.sessions().insert(client_id, session.clone());
            let left = match record.expires_ms {
                NEVER => None,
                // Connected at the crash: its expiry counts from now.
                CONNECTED => Some(u64::from(record.expiry_interval) * 1000),
                at => Some(at - now),
            };
            if record.expires_ms == CONNECTED || will.is_some() {
                // The times counted from now are stored.
                let at = left.map_or(NEVER, |ms| now.saturating_add(ms));
                self.persist_session(&session, at);
            }
            if let Some(left) = left {
                let left = Duration::from_millis(left);
                crate::protocol::disconnect::schedule_expiry(
                    self.clone(),
                    session.clone(),
                    1,
                    left,
                );
            }
            if let Some(w) = will {
                let message = will_message((*w.will).clone(), &owner.info);
                let wait = Duration::from_millis(w.due_ms.saturating_sub(now));
                wills.push((Some(session), owner.info.clone(), rights, message, wait));
            }
        }
        // Once every session is back with its subscriptions, so a will
        // due now reaches restored subscribers too.
        for (session, info, rights, message, wait) in wills {
            match session {
                Some(session) => spawn_will(self.clone(), session, 1, info, rights, message, wait),
                None => {
                    let broker = self.clone();
                    tokio::spawn(async move {
                        publish_will(&broker, &info, rights.as_ref(), message).await;
                    });
                }
            }
        }
    }

    /// Writes what the store still has queued and stops it (a last
    /// snapshot under `durability = "periodic"`); blocks until done.
    pub fn close_store(&self) {
        if let Some(store) = &self.store {
            store.close();
        }
    }

    /// The durable state, if kept.
    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }
}
