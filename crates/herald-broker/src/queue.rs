//! A session's queue of messages waiting for its connection.
//!
//! Messages read together from one publisher and routed together (see
//! [`crate::broker::Broker::publish_all`]) are queued to a subscriber as
//! one entry, a [`Run`], that shares the batch with every other subscriber
//! of the topic: a wide fan-out then costs one entry and one reference
//! count per subscriber and batch, not per message. Everything else (a
//! message routed alone, a stored delivery, one a shared group picked this
//! subscriber for) is an entry of its own. Either way the queue hands out
//! one [`Delivery`] at a time, in the order they were queued.
//!
//! A run keeps its whole batch alive until the subscription has taken the
//! last of it: messages already sent from a run that waits at the front
//! (for a slot in the inflight window) stay in memory until then. That is
//! at most one batch per session beyond what the queue counts, and a
//! batch is what one read of the publisher's connection held at once.

use crate::message::{Delivery, Message};
use herald_codec::QoS;
use std::collections::VecDeque;
use std::sync::Arc;

/// Room for entries an empty queue keeps.
const KEPT_ENTRIES: usize = 8;

/// Messages routed together, shared by the runs queued from them.
pub type Batch = Arc<[Arc<Message>]>;

/// The queue: entries in order, with the messages and bytes they hold.
#[derive(Default)]
pub struct Queue {
    entries: VecDeque<Entry>,
    /// Messages in `entries` (a run counts those it has left).
    len: usize,
    /// [`Message::size`] summed over those messages.
    bytes: usize,
}

enum Entry {
    One(Delivery),
    Run(Run),
}

/// The messages of a batch one subscription has not been sent yet: the
/// batch's from `next` on, with the subscription's QoS, Retain As
/// Published and identifiers applied to each as it is taken.
struct Run {
    batch: Batch,
    next: usize,
    granted: QoS,
    retain_as_published: bool,
    subscription_ids: Vec<u32>,
}

impl Queue {
    /// Messages queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes queued ([`Message::size`] summed).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Queues one delivery after the rest.
    pub fn push(&mut self, delivery: Delivery) {
        self.len += 1;
        self.bytes += delivery.message.size();
        self.entries.push_back(Entry::One(delivery));
    }

    /// Queues every message of `batch` after the rest, each as the
    /// subscription (`granted` QoS, Retain As Published, identifiers)
    /// receives it; `bytes` is their [`Message::size`] summed.
    pub fn push_run(
        &mut self,
        batch: &Batch,
        bytes: usize,
        granted: QoS,
        retain_as_published: bool,
        subscription_ids: Vec<u32>,
    ) {
        if batch.is_empty() {
            return;
        }
        self.len += batch.len();
        self.bytes += bytes;
        self.entries.push_back(Entry::Run(Run {
            batch: batch.clone(),
            next: 0,
            granted,
            retain_as_published,
            subscription_ids,
        }));
    }

    /// QoS of the delivery [`Queue::pop`] would return.
    pub fn front_qos(&self) -> Option<QoS> {
        match self.entries.front()? {
            Entry::One(d) => Some(d.qos),
            Entry::Run(run) => run.batch.get(run.next).map(|m| m.qos.min(run.granted)),
        }
    }

    /// Takes the first delivery.
    pub fn pop(&mut self) -> Option<Delivery> {
        let delivery = match self.entries.front_mut()? {
            Entry::One(_) => {
                let Some(Entry::One(d)) = self.entries.pop_front() else {
                    return None;
                };
                d
            }
            Entry::Run(run) => {
                let message = run.batch.get(run.next)?;
                let last = run.next + 1 >= run.batch.len();
                let ids = if last {
                    std::mem::take(&mut run.subscription_ids)
                } else {
                    run.subscription_ids.clone()
                };
                let delivery =
                    Delivery::to_subscriber(message, run.granted, run.retain_as_published, ids);
                run.next += 1;
                if last {
                    self.entries.pop_front();
                }
                delivery
            }
        };
        self.len -= 1;
        self.bytes = self.bytes.saturating_sub(delivery.message.size());
        // Emptied after a backlog: its room goes (a few entries' worth
        // stays, for the next message without an allocation).
        if self.entries.is_empty() && self.entries.capacity() > KEPT_ENTRIES {
            self.entries = VecDeque::new();
        }
        Some(delivery)
    }

    /// Empties the queue, every delivery in order.
    pub fn take(&mut self) -> VecDeque<Delivery> {
        let mut all = VecDeque::with_capacity(self.len);
        while let Some(d) = self.pop() {
            all.push_back(d);
        }
        *self = Queue::default();
        all
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use herald_codec::ByteStr;

    /// A message to `t` from client `p` with this payload.
    pub(crate) fn message(payload: &[u8], qos: QoS, retain: bool) -> Arc<Message> {
        Arc::new(Message::new(
            ByteStr::from("t"),
            bytes::Bytes::copy_from_slice(payload),
            qos,
            retain,
            Default::default(),
            ByteStr::from("p"),
            None,
        ))
    }

    fn one(n: u8) -> Delivery {
        Delivery {
            message: message(&[n; 3], QoS::AtLeastOnce, false),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: Vec::new(),
            seq: 7,
        }
    }

    #[test]
    fn runs_and_single_deliveries_come_out_in_queue_order_as_the_subscription_gets_them() {
        let batch: Batch = vec![
            message(&[1; 3], QoS::AtLeastOnce, true),
            message(&[2; 3], QoS::AtMostOnce, true),
            message(&[3; 3], QoS::ExactlyOnce, false),
        ]
        .into();
        let bytes = batch.iter().map(|m| m.size()).sum();
        let mut q = Queue::default();
        q.push(one(0));
        q.push_run(&batch, bytes, QoS::AtLeastOnce, true, vec![5]);
        q.push_run(&batch, bytes, QoS::AtMostOnce, false, vec![]);
        q.push(one(4));
        assert_eq!(q.len(), 8);
        assert_eq!(q.bytes(), 8 * 4);
        let mut seen = Vec::new();
        while let Some(qos) = q.front_qos() {
            let d = q.pop().expect("front_qos said one is there");
            assert_eq!(d.qos, qos);
            seen.push((
                d.message.payload[0],
                d.qos,
                d.retain,
                d.subscription_ids,
                d.seq,
            ));
        }
        use QoS::*;
        assert_eq!(
            seen,
            [
                (0, AtLeastOnce, false, vec![], 7),
                (1, AtLeastOnce, true, vec![5], 0),
                (2, AtMostOnce, true, vec![5], 0),
                (3, AtLeastOnce, false, vec![5], 0),
                (1, AtMostOnce, false, vec![], 0),
                (2, AtMostOnce, false, vec![], 0),
                (3, AtMostOnce, false, vec![], 0),
                (4, AtLeastOnce, false, vec![], 7),
            ]
        );
        assert_eq!((q.len(), q.bytes()), (0, 0));
        assert!(q.pop().is_none());
    }

    #[test]
    fn taking_the_queue_returns_what_is_left_of_a_run_and_empties_it() {
        let batch: Batch = (1..=3)
            .map(|n| message(&[n; 3], QoS::AtMostOnce, false))
            .collect();
        let mut q = Queue::default();
        q.push_run(&batch, 12, QoS::AtLeastOnce, false, vec![]);
        q.push(one(4));
        assert_eq!(q.pop().map(|d| d.message.payload[0]), Some(1));
        let rest: Vec<u8> = q.take().iter().map(|d| d.message.payload[0]).collect();
        assert_eq!(rest, [2, 3, 4]);
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }

    /// One step of a queue's life: a delivery, a run of `n` messages
    /// (`granted` QoS, Retain As Published), a pop, or taking all.
    #[derive(Debug, Clone)]
    enum Step {
        One(u8),
        Run(u8, QoS, bool),
        Pop,
        Take,
    }

    fn qos() -> impl proptest::strategy::Strategy<Value = QoS> {
        proptest::sample::select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            any::<u8>().prop_map(Step::One),
            (1u8..6, qos(), any::<bool>()).prop_map(|(n, q, r)| Step::Run(n, q, r)),
            Just(Step::Pop),
            Just(Step::Pop),
            Just(Step::Take),
        ]
    }

    type Seen = (u8, QoS, bool, Vec<u32>, u64);

    fn seen(d: &Delivery) -> Seen {
        (
            d.message.payload[0],
            d.qos,
            d.retain,
            d.subscription_ids.clone(),
            d.seq,
        )
    }

    proptest::proptest! {
        /// Whatever is pushed, popped or taken, the queue gives what a
        /// plain list of the deliveries one by one would, and its counts
        /// of messages and bytes match that list.
        #[test]
        fn a_queue_behaves_as_the_list_of_its_deliveries(
            steps in proptest::collection::vec(step(), 0..60)
        ) {
            let mut q = Queue::default();
            let mut model: VecDeque<Delivery> = VecDeque::new();
            let mut made = 0u8;
            for s in steps {
                match s {
                    Step::One(n) => {
                        q.push(one(n));
                        model.push_back(one(n));
                    }
                    Step::Run(n, granted, rap) => {
                        let batch: Batch = (0..n)
                            .map(|i| {
                                made = made.wrapping_add(1);
                                let published = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][usize::from(i % 3)];
                                message(&[made; 3], published, i % 2 == 0)
                            })
                            .collect();
                        let bytes = batch.iter().map(|m| m.size()).sum();
                        let ids = vec![u32::from(n)];
                        q.push_run(&batch, bytes, granted, rap, ids.clone());
                        for m in batch.iter() {
                            model.push_back(Delivery::to_subscriber(m, granted, rap, ids.clone()));
                        }
                    }
                    Step::Pop => {
                        let front = q.front_qos();
                        let got = q.pop();
                        let want = model.pop_front();
                        proptest::prop_assert_eq!(front, want.as_ref().map(|d| d.qos));
                        proptest::prop_assert_eq!(got.as_ref().map(seen), want.as_ref().map(seen));
                    }
                    Step::Take => {
                        let got: Vec<Seen> = q.take().iter().map(seen).collect();
                        let want: Vec<Seen> = model.drain(..).map(|d| seen(&d)).collect();
                        proptest::prop_assert_eq!(got, want);
                    }
                }
                proptest::prop_assert_eq!(q.len(), model.len());
                let bytes: usize = model.iter().map(|d| d.message.size()).sum();
                proptest::prop_assert_eq!(q.bytes(), bytes);
            }
        }
    }

    #[test]
    fn a_queue_emptied_after_a_backlog_lets_its_room_go() {
        let mut q = Queue::default();
        for n in 0..1000 {
            q.push(one((n % 250) as u8));
        }
        while q.pop().is_some() {}
        assert!(q.entries.capacity() <= KEPT_ENTRIES);
    }
}
