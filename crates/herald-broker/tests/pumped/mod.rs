//! Clients for the routing tests (subscribe, publish, retained, `$SYS` and
//! authorization): a rumqttc client whose event loop runs in its own task and
//! hands every incoming packet over a channel, so one test can drive several
//! clients without polling them in turn; and a raw client that has done its
//! CONNECT. Negative checks ("nothing else arrived") use a sentinel message
//! sent afterwards on the same path, never a sleep.
#![allow(dead_code)]

use crate::common::{WAIT, raw::Raw, v4, v5};
use bytes::Bytes;
use herald_broker::Server;
use herald_codec::{ByteStr, ConnAck, Connect, Packet, Properties, Protocol};
use std::collections::VecDeque;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;

/// Incoming packets of one client; those a `wait_for` passed over are kept,
/// in order, for `next`.
pub struct Inbox<P> {
    rx: UnboundedReceiver<P>,
    stash: VecDeque<P>,
}

impl<P> Inbox<P> {
    fn new(rx: UnboundedReceiver<P>) -> Inbox<P> {
        Inbox {
            rx,
            stash: VecDeque::new(),
        }
    }

    async fn recv(&mut self) -> P {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("a packet within the wait")
            .expect("the connection stays up")
    }

    /// The next packet.
    pub async fn next(&mut self) -> P {
        match self.stash.pop_front() {
            Some(p) => p,
            None => self.recv().await,
        }
    }

    /// The first packet `pick` accepts (stashed ones first).
    pub async fn wait_for<T>(&mut self, mut pick: impl FnMut(&P) -> Option<T>) -> T {
        for i in 0..self.stash.len() {
            if let Some(t) = self.stash.get(i).and_then(&mut pick) {
                self.stash.remove(i);
                return t;
            }
        }
        loop {
            let p = self.recv().await;
            if let Some(t) = pick(&p) {
                return t;
            }
            self.stash.push_back(p);
        }
    }
}

/// A 3.1.1 rumqttc client with its event loop in a task.
pub struct C4 {
    pub client: v4::AsyncClient,
    pub inbox: Inbox<v4::Packet>,
    task: JoinHandle<()>,
}

impl Drop for C4 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn pump4(mut eventloop: v4::EventLoop, tx: UnboundedSender<v4::Packet>) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let v4::Event::Incoming(p) = event
                && tx.send(p).is_err()
            {
                return;
            }
        }
    })
}

/// Connects a 3.1.1 client (CONNACK received) and starts its event loop.
pub async fn c4(options: v4::MqttOptions) -> (C4, rumqttc::ConnAck) {
    let (client, eventloop, ack) = v4::connect(options).await;
    let (tx, rx) = unbounded_channel();
    let task = pump4(eventloop, tx);
    let c = C4 {
        client,
        inbox: Inbox::new(rx),
        task,
    };
    (c, ack)
}

/// A 3.1.1 client `id` with default options.
pub async fn client4(server: &Server, id: &str) -> C4 {
    c4(v4::options(server, id)).await.0
}

impl C4 {
    /// Subscribes to one filter and returns the SUBACK's return codes.
    pub async fn subscribe(
        &mut self,
        filter: &str,
        qos: v4::QoS,
    ) -> Vec<rumqttc::SubscribeReasonCode> {
        self.client
            .subscribe(filter, qos)
            .await
            .expect("subscribe queued");
        self.inbox
            .wait_for(|p| match p {
                v4::Packet::SubAck(a) => Some(a.return_codes.clone()),
                _ => None,
            })
            .await
    }

    /// Unsubscribes and waits for UNSUBACK.
    pub async fn unsubscribe(&mut self, filter: &str) {
        self.client
            .unsubscribe(filter)
            .await
            .expect("unsubscribe queued");
        self.inbox
            .wait_for(|p| matches!(p, v4::Packet::UnsubAck(_)).then_some(()))
            .await
    }

    /// Publishes and, for QoS 1 and 2, waits for PUBACK or PUBCOMP.
    pub async fn publish(&mut self, topic: &str, qos: v4::QoS, retain: bool, payload: &[u8]) {
        self.client
            .publish(topic, qos, retain, payload.to_vec())
            .await
            .expect("publish queued");
        match qos {
            v4::QoS::AtMostOnce => {}
            v4::QoS::AtLeastOnce => {
                self.inbox
                    .wait_for(|p| matches!(p, v4::Packet::PubAck(_)).then_some(()))
                    .await
            }
            v4::QoS::ExactlyOnce => {
                self.inbox
                    .wait_for(|p| matches!(p, v4::Packet::PubComp(_)).then_some(()))
                    .await
            }
        }
    }

    /// The next PUBLISH received.
    pub async fn next_publish(&mut self) -> rumqttc::Publish {
        self.inbox
            .wait_for(|p| match p {
                v4::Packet::Publish(p) => Some(p.clone()),
                _ => None,
            })
            .await
    }

    /// Payloads of the PUBLISHes received up to and including `sentinel`.
    pub async fn payloads_until(&mut self, sentinel: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let p = self.next_publish().await;
            let text = String::from_utf8_lossy(&p.payload).into_owned();
            let done = text == sentinel;
            seen.push(text);
            if done {
                return seen;
            }
        }
    }
}

/// A 5.0 rumqttc client with its event loop in a task.
pub struct C5 {
    pub client: v5::AsyncClient,
    pub inbox: Inbox<v5::Packet>,
    task: JoinHandle<()>,
}

impl Drop for C5 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn pump5(mut eventloop: v5::EventLoop, tx: UnboundedSender<v5::Packet>) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let v5::Event::Incoming(p) = event
                && tx.send(p).is_err()
            {
                return;
            }
        }
    })
}

/// Connects a 5.0 client (CONNACK received) and starts its event loop.
pub async fn c5(options: v5::MqttOptions) -> (C5, v5::ConnAck) {
    let (client, eventloop, ack) = v5::connect(options).await;
    let (tx, rx) = unbounded_channel();
    let task = pump5(eventloop, tx);
    let c = C5 {
        client,
        inbox: Inbox::new(rx),
        task,
    };
    (c, ack)
}

/// A 5.0 client `id` with default options.
pub async fn client5(server: &Server, id: &str) -> C5 {
    c5(v5::options(server, id)).await.0
}

#[allow(unused_imports)]
pub use rumqttc::v5::mqttbytes::v5::{
    Filter, PubAckReason, PubRecReason, PublishProperties, RetainForwardRule, SubscribeProperties,
    SubscribeReasonCode, UnsubAckReason,
};

impl C5 {
    /// Subscribes to one filter at `qos` and returns the SUBACK's codes.
    pub async fn subscribe(&mut self, filter: &str, qos: v5::QoS) -> Vec<SubscribeReasonCode> {
        self.subscribe_filters(vec![Filter::new(filter, qos)], None)
            .await
    }

    /// Subscribes with full options and properties.
    pub async fn subscribe_filters(
        &mut self,
        filters: Vec<Filter>,
        properties: Option<SubscribeProperties>,
    ) -> Vec<SubscribeReasonCode> {
        match properties {
            Some(props) => {
                self.client
                    .subscribe_many_with_properties(filters, props)
                    .await
            }
            None => self.client.subscribe_many(filters).await,
        }
        .expect("subscribe queued");
        self.inbox
            .wait_for(|p| match p {
                v5::Packet::SubAck(a) => Some(a.return_codes.clone()),
                _ => None,
            })
            .await
    }

    /// Unsubscribes and returns the UNSUBACK's reasons.
    pub async fn unsubscribe(&mut self, filter: &str) -> Vec<UnsubAckReason> {
        self.client
            .unsubscribe(filter)
            .await
            .expect("unsubscribe queued");
        self.inbox
            .wait_for(|p| match p {
                v5::Packet::UnsubAck(a) => Some(a.reasons.clone()),
                _ => None,
            })
            .await
    }

    /// Publishes and, for QoS 1 and 2, waits for PUBACK or PUBCOMP.
    pub async fn publish(&mut self, topic: &str, qos: v5::QoS, retain: bool, payload: &[u8]) {
        self.publish_with(topic, qos, retain, payload, None).await
    }

    /// Publishes with properties; waits as [`C5::publish`] does.
    pub async fn publish_with(
        &mut self,
        topic: &str,
        qos: v5::QoS,
        retain: bool,
        payload: &[u8],
        properties: Option<PublishProperties>,
    ) {
        let payload = Bytes::copy_from_slice(payload);
        match properties {
            Some(props) => {
                self.client
                    .publish_with_properties(topic, qos, retain, payload, props)
                    .await
            }
            None => self.client.publish(topic, qos, retain, payload).await,
        }
        .expect("publish queued");
        match qos {
            v5::QoS::AtMostOnce => {}
            v5::QoS::AtLeastOnce => {
                self.inbox
                    .wait_for(|p| matches!(p, v5::Packet::PubAck(_)).then_some(()))
                    .await
            }
            v5::QoS::ExactlyOnce => {
                self.inbox
                    .wait_for(|p| matches!(p, v5::Packet::PubComp(_)).then_some(()))
                    .await
            }
        }
    }

    /// The next PUBLISH received.
    pub async fn next_publish(&mut self) -> v5::Publish {
        self.inbox
            .wait_for(|p| match p {
                v5::Packet::Publish(p) => Some(p.clone()),
                _ => None,
            })
            .await
    }

    /// Payloads of the PUBLISHes received up to and including `sentinel`.
    pub async fn payloads_until(&mut self, sentinel: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let p = self.next_publish().await;
            let text = String::from_utf8_lossy(&p.payload).into_owned();
            let done = text == sentinel;
            seen.push(text);
            if done {
                return seen;
            }
        }
    }
}

/// A CONNECT for `client_id` at `protocol`, clean, keep alive 30 s.
pub fn connect_packet(protocol: Protocol, client_id: &str) -> Connect {
    Connect {
        protocol,
        clean_start: true,
        keep_alive: 30,
        properties: Properties::default(),
        client_id: ByteStr::from(client_id),
        will: None,
        username: None,
        password: None,
    }
}

/// Opens a raw connection, sends `connect` and returns the CONNACK.
pub async fn raw_connect(server: &Server, connect: Connect) -> (Raw, ConnAck) {
    let mut raw = Raw::connect(crate::common::addr(server), connect.protocol).await;
    raw.send(&Packet::Connect(Box::new(connect))).await;
    match raw.recv().await {
        Some(Packet::ConnAck(ack)) => (raw, ack),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// A raw client `client_id` at `protocol`, connected with a clean session.
pub async fn raw_client(server: &Server, protocol: Protocol, client_id: &str) -> Raw {
    raw_connect(server, connect_packet(protocol, client_id))
        .await
        .0
}

/// The next packet from the broker; panics if it closed the connection.
pub async fn raw_next(raw: &mut Raw) -> Packet {
    raw.recv()
        .await
        .expect("the broker keeps the connection open")
}
