//! Shared helpers for the broker's integration tests: start a broker on
//! `127.0.0.1:0` in-process, connect real `rumqttc` clients (3.1.1 and 5.0)
//! and wait for their events without sleeping.
#![allow(dead_code, unused_imports)]

use herald_broker::Server;
use herald_broker::config::Config;
use std::net::SocketAddr;
use std::time::Duration;

/// Longest any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A configuration for tests: one listener on an ephemeral loopback port,
/// `$SYS` off (tests that want it turn it on).
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.listener.bind = vec!["127.0.0.1:0".parse().unwrap()];
    config.sys.interval = 0;
    config
}

/// Starts a broker with `test_config()` changed by `edit`.
pub async fn start_with(edit: impl FnOnce(&mut Config)) -> Server {
    let mut config = test_config();
    edit(&mut config);
    herald_broker::start(config).await.expect("broker starts")
}

/// Starts a broker with the test defaults.
pub async fn start() -> Server {
    start_with(|_| {}).await
}

/// The broker's first listening address.
pub fn addr(server: &Server) -> SocketAddr {
    server.local_addrs[0]
}

/// MQTT 3.1.1 clients (rumqttc's v4 module).
pub mod v4 {
    use super::WAIT;
    use herald_broker::Server;
    pub use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};

    /// Options for `client_id` against `server`, keep alive 30 s.
    pub fn options(server: &Server, client_id: &str) -> MqttOptions {
        let addr = super::addr(server);
        let mut o = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        o.set_keep_alive(std::time::Duration::from_secs(30));
        o
    }

    /// Connects and waits for CONNACK; returns the client and its event loop.
    pub async fn connect(options: MqttOptions) -> (AsyncClient, EventLoop, rumqttc::ConnAck) {
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let ack = loop {
            match next_event(&mut eventloop).await {
                Event::Incoming(Packet::ConnAck(ack)) => break ack,
                _ => continue,
            }
        };
        (client, eventloop, ack)
    }

    /// The next event, failing the test on error or after `WAIT`.
    pub async fn next_event(eventloop: &mut EventLoop) -> Event {
        tokio::time::timeout(WAIT, eventloop.poll())
            .await
            .expect("event within the wait")
            .expect("connection stays up")
    }

    /// Polls until an incoming packet `pick` accepts, returning what it gave.
    pub async fn wait_for<T>(
        eventloop: &mut EventLoop,
        mut pick: impl FnMut(&Packet) -> Option<T>,
    ) -> T {
        loop {
            if let Event::Incoming(p) = next_event(eventloop).await
                && let Some(t) = pick(&p)
            {
                return t;
            }
        }
    }

    /// The next incoming PUBLISH.
    pub async fn next_publish(eventloop: &mut EventLoop) -> rumqttc::Publish {
        wait_for(eventloop, |p| match p {
            Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .await
    }
}

/// MQTT 5.0 clients (rumqttc's v5 module).
pub mod v5 {
    use super::WAIT;
    use herald_broker::Server;
    pub use rumqttc::v5::mqttbytes::QoS;
    pub use rumqttc::v5::mqttbytes::v5::{ConnAck, Packet, Publish};
    pub use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};

    /// Options for `client_id` against `server`, keep alive 30 s.
    pub fn options(server: &Server, client_id: &str) -> MqttOptions {
        let addr = super::addr(server);
        let mut o = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        o.set_keep_alive(std::time::Duration::from_secs(30));
        o
    }

    /// Connects and waits for CONNACK.
    pub async fn connect(options: MqttOptions) -> (AsyncClient, EventLoop, ConnAck) {
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let ack = loop {
            match next_event(&mut eventloop).await {
                Event::Incoming(Packet::ConnAck(ack)) => break ack,
                _ => continue,
            }
        };
        (client, eventloop, ack)
    }

    /// The next event, failing the test on error or after `WAIT`.
    pub async fn next_event(eventloop: &mut EventLoop) -> Event {
        tokio::time::timeout(WAIT, eventloop.poll())
            .await
            .expect("event within the wait")
            .expect("connection stays up")
    }

    /// Polls until an incoming packet `pick` accepts.
    pub async fn wait_for<T>(
        eventloop: &mut EventLoop,
        mut pick: impl FnMut(&Packet) -> Option<T>,
    ) -> T {
        loop {
            if let Event::Incoming(p) = next_event(eventloop).await
                && let Some(t) = pick(&p)
            {
                return t;
            }
        }
    }

    /// The next incoming PUBLISH.
    pub async fn next_publish(eventloop: &mut EventLoop) -> Publish {
        wait_for(eventloop, |p| match p {
            Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .await
    }
}

/// A raw TCP client speaking bytes through herald-codec, for what a
/// well-behaved client library cannot send (malformed packets, silence).
pub mod raw {
    use super::WAIT;
    use bytes::BytesMut;
    use herald_codec::{DecodeOptions, Packet, Protocol, decode};
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// A socket with a read buffer.
    pub struct Raw {
        pub stream: TcpStream,
        pub buf: BytesMut,
        pub protocol: Protocol,
    }

    impl Raw {
        pub async fn connect(addr: SocketAddr, protocol: Protocol) -> Raw {
            Raw {
                stream: TcpStream::connect(addr).await.expect("tcp connect"),
                buf: BytesMut::new(),
                protocol,
            }
        }

        pub async fn send(&mut self, packet: &Packet) {
            let mut out = BytesMut::new();
            packet.encode(self.protocol, &mut out).expect("encode");
            self.stream.write_all(&out).await.expect("write");
        }

        pub async fn send_bytes(&mut self, bytes: &[u8]) {
            self.stream.write_all(bytes).await.expect("write");
        }

        /// The next packet, or `None` when the broker closed the socket.
        pub async fn recv(&mut self) -> Option<Packet> {
            let opts = DecodeOptions {
                protocol: self.protocol,
                ..DecodeOptions::default()
            };
            loop {
                if let Some(p) = decode(&mut self.buf, &opts).expect("broker sends valid packets") {
                    return Some(p);
                }
                let n = tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.buf))
                    .await
                    .expect("broker answers within the wait")
                    .unwrap_or(0);
                if n == 0 {
                    return None;
                }
            }
        }
    }
}
