//! The listener kinds end to end, with certificates made in the test
//! (rcgen) and real clients: rumqttc over TLS (rustls) and over ws/wss
//! (its `websocket` feature), a hand-written WebSocket client (so the test
//! decides how MQTT packets fall into frames), PROXY protocol headers
//! written by the test. What the broker learned about each client is read
//! from the `client.connected` event.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

mod client;
mod pki;
mod proxy;
mod rumqttc_ws;
mod tls;
mod ws;

use herald_broker::Server;
use herald_broker::config::Config;
use herald_broker::hooks::{ClientInfo, Event, Handler};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Starts a broker with only the listeners `edit` sets (TCP bound to an
/// ephemeral loopback port, `$SYS` off), recording every connected client.
pub async fn start(edit: impl FnOnce(&mut Config)) -> (Server, Connected) {
    let mut config = Config::default();
    config.listener.bind = vec!["127.0.0.1:0".parse().unwrap()];
    config.sys.interval = 0;
    // Addresses carried by PROXY headers and X-Forwarded-For are remote:
    // let them in (the secure default admits loopback clients only).
    config.auth.allow_anonymous = Some(true);
    edit(&mut config);
    let broker = herald_broker::broker::Broker::new(config);
    let (tx, rx) = mpsc::unbounded_channel();
    broker
        .hooks
        .add_handler(0, Arc::new(Recorder(Mutex::new(tx))));
    let server = herald_broker::start_on(broker)
        .await
        .expect("broker starts");
    (server, Connected(rx))
}

/// `client.connected` events as they happen.
pub struct Connected(mpsc::UnboundedReceiver<ClientInfo>);

impl Connected {
    /// The next client to connect.
    pub async fn next(&mut self) -> ClientInfo {
        tokio::time::timeout(client::WAIT, self.0.recv())
            .await
            .expect("a client connects within the wait")
            .expect("broker alive")
    }

    /// Whether no client connected so far.
    pub fn none_yet(&mut self) -> bool {
        self.0.try_recv().is_err()
    }
}

struct Recorder(Mutex<mpsc::UnboundedSender<ClientInfo>>);

impl Handler for Recorder {
    fn on_event(&self, event: &Event<'_>) {
        if let Event::ClientConnected { client } = event {
            let _ = self.0.lock().unwrap().send((*client).clone());
        }
    }
}

/// Polls `done` until it holds, failing the test after the wait (for
/// counters the broker updates after the client saw the connection end).
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + client::WAIT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
