//! The MQTT client side of the load generator: one connection (TCP, TLS,
//! WebSocket or both; see [`crate::transport`]), packets encoded and
//! decoded with `herald-codec`, and nothing else.
//!
//! A [`Conn`] owns a read buffer that is filled a large chunk at a time and
//! decoded packet by packet, and a write buffer that packets are encoded
//! into and that is written with as few system calls as possible. The hot
//! loops (publisher, subscriber) drive it without blocking: `try_fill`,
//! `next_packet`, `try_flush`, and `ready` when neither can make progress.
//! The async helpers (`connect`, `subscribe`, `disconnect`) are for setup
//! and teardown. It never panics on what the broker sends: a malformed
//! packet is a [`ClientError`].

use bytes::{Bytes, BytesMut};
use herald_codec::{
    ByteStr, ConnAck, Connect, DecodeError, DecodeOptions, Disconnect, EncodeError,
    MAX_PACKET_SIZE, Packet, PacketType, Properties, Protocol, QoS, ReasonCode, SubOptions,
    Subscribe, Subscription,
};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpSocket;

use crate::transport::{Io, Transport};

/// Read at least this much per system call when the buffer runs low.
const READ_CHUNK: usize = 64 * 1024;

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection could not be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The broker's address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// Reading or writing failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The broker sent bytes that are not a valid packet.
    #[error("malformed packet from the broker: {0}")]
    Decode(#[from] DecodeError),
    /// A packet could not be encoded (a setting is out of range).
    #[error("cannot encode a packet: {0}")]
    Encode(#[from] EncodeError),
    /// CONNACK carried a failure.
    #[error("connection refused by the broker: {0}")]
    Refused(ReasonCode),
    /// SUBACK carried a failure.
    #[error("subscription to {filter} refused: {code}")]
    SubscribeRefused {
        /// The topic filter.
        filter: String,
        /// The failure code.
        code: ReasonCode,
    },
    /// The broker closed the TCP connection.
    #[error("the broker closed the connection")]
    Closed,
    /// The broker sent DISCONNECT.
    #[error("the broker sent DISCONNECT: {0}")]
    Disconnected(ReasonCode),
    /// No answer in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// A packet that has no place at this point.
    #[error("unexpected {0:?} from the broker")]
    Unexpected(PacketType),
}

/// How to open a connection.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The broker.
    pub addr: SocketAddr,
    /// Local address to connect from (port chosen by the system), to spread
    /// many connections over several source addresses.
    pub source: Option<IpAddr>,
    /// Protocol level to speak.
    pub protocol: Protocol,
    /// Client identifier.
    pub client_id: String,
    /// Keep alive in seconds (0: none).
    pub keep_alive: u16,
    /// How long TCP connect plus CONNECT/CONNACK may take.
    pub timeout: Duration,
    /// Receive Maximum to announce (5.0), so the broker may keep this many
    /// QoS 1/2 deliveries in flight towards us.
    pub receive_maximum: Option<u16>,
    /// User name and password sent in CONNECT (a broker that authenticates).
    pub credentials: Option<Credentials>,
    /// Keep the session after the connection (3.1.1 Clean Session 0; 5.0
    /// also Session Expiry 3600 s).
    pub persistent: bool,
    /// TCP, TLS, WebSocket or WebSocket over TLS.
    pub transport: Transport,
}

/// A user name and password for CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password (none: CONNECT carries only the user name).
    pub password: Option<String>,
}

/// One MQTT connection: the socket and its two buffers.
pub struct Conn {
    /// The byte stream.
    io: Io,
    /// Protocol level the packets are encoded at.
    protocol: Protocol,
    /// Bytes read and not yet decoded.
    rbuf: BytesMut,
    /// Bytes encoded and not yet written.
    wbuf: BytesMut,
    /// What the decoder needs to know.
    decode: DecodeOptions,
}

/// Opens a connection and completes CONNECT/CONNACK. Returns the connection
/// and the broker's CONNACK.
pub async fn connect(opts: &ConnectOptions) -> Result<(Conn, ConnAck), ClientError> {
    tokio::time::timeout(opts.timeout, connect_inner(opts))
        .await
        .map_err(|_| ClientError::Timeout("CONNACK"))?
}

async fn connect_inner(opts: &ConnectOptions) -> Result<(Conn, ConnAck), ClientError> {
    let addr = opts.addr;
    let at = |source| ClientError::Connect { addr, source };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(at)?;
    if let Some(ip) = opts.source {
        socket.bind(SocketAddr::new(ip, 0)).map_err(at)?;
    }
    let stream = socket.connect(addr).await.map_err(at)?;
    stream.set_nodelay(true)?;
    let io = Io::open(stream, &opts.transport, &addr.to_string())
        .await
        .map_err(at)?;
    let mut conn = Conn {
        io,
        protocol: opts.protocol,
        rbuf: BytesMut::new(),
        wbuf: BytesMut::new(),
        decode: DecodeOptions {
            protocol: opts.protocol,
            max_packet_size: MAX_PACKET_SIZE,
        },
    };
    let mut properties = Properties::default();
    if opts.protocol.is_v5() {
        properties.receive_maximum = opts.receive_maximum;
        if opts.persistent {
            properties.session_expiry_interval = Some(3600);
        }
    }
    conn.queue(&Packet::Connect(Box::new(Connect {
        protocol: opts.protocol,
        clean_start: !opts.persistent,
        keep_alive: opts.keep_alive,
        properties,
        client_id: ByteStr::from(opts.client_id.as_str()),
        will: None,
        username: opts
            .credentials
            .as_ref()
            .map(|c| ByteStr::from(c.username.as_str())),
        password: opts
            .credentials
            .as_ref()
            .and_then(|c| c.password.clone())
            .map(Bytes::from),
    })))?;
    conn.flush().await?;
    match conn.recv().await? {
        Packet::ConnAck(ack) if ack.code.is_error() => Err(ClientError::Refused(ack.code)),
        Packet::ConnAck(ack) => Ok((conn, ack)),
        Packet::Disconnect(d) => Err(ClientError::Disconnected(d.reason)),
        other => Err(ClientError::Unexpected(other.packet_type())),
    }
}

impl Conn {
    /// The protocol level of this connection.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The write buffer, for encoders that append frames directly.
    #[inline]
    pub fn wbuf(&mut self) -> &mut BytesMut {
        &mut self.wbuf
    }

    /// Bytes waiting to be written (and 1 while a TLS or WebSocket layer
    /// holds bytes it has not flushed).
    #[inline]
    pub fn pending(&self) -> usize {
        self.wbuf.len() + self.io.unflushed()
    }

    /// Encodes `packet` into the write buffer.
    pub fn queue(&mut self, packet: &Packet) -> Result<(), ClientError> {
        packet.encode(self.protocol, &mut self.wbuf)?;
        Ok(())
    }

    /// Writes the whole write buffer, waiting as needed.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        while self.pending() > 0 {
            self.try_flush()?;
            if self.pending() > 0 {
                self.ready(true).await?;
            }
        }
        Ok(())
    }

    /// Waits for the next packet.
    pub async fn recv(&mut self) -> Result<Packet, ClientError> {
        loop {
            if let Some(packet) = self.next_packet()? {
                return Ok(packet);
            }
            if self.try_fill()? == 0 {
                self.ready(false).await?;
            }
        }
    }

    /// Decodes the next packet already read, if complete.
    #[inline]
    pub fn next_packet(&mut self) -> Result<Option<Packet>, ClientError> {
        Ok(herald_codec::decode(&mut self.rbuf, &self.decode)?)
    }

    /// Reads what the socket has without waiting; `Ok(0)` when nothing is
    /// there (the readiness is then cleared, so `ready` will wait).
    #[inline]
    pub fn try_fill(&mut self) -> Result<usize, ClientError> {
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            self.rbuf.reserve(READ_CHUNK);
        }
        match self.io.try_read(&mut self.rbuf) {
            Ok(0) => Err(ClientError::Closed),
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes as much of the write buffer as the socket takes without
    /// waiting; returns the number of bytes written.
    #[inline]
    pub fn try_flush(&mut self) -> Result<usize, ClientError> {
        if self.pending() == 0 {
            return Ok(0);
        }
        match self.io.try_write(&mut self.wbuf) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until the connection is readable, or writable when `write`
    /// is set.
    pub async fn ready(&mut self, write: bool) -> Result<(), ClientError> {
        Ok(self.io.ready(write, &mut self.rbuf, &mut self.wbuf).await?)
    }

    /// Subscribes to `filters` at `qos` and waits for the SUBACK; any
    /// refused filter is an error.
    pub async fn subscribe(
        &mut self,
        filters: &[String],
        qos: QoS,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let packet_id = 1;
        self.queue(&Packet::Subscribe(Subscribe {
            packet_id,
            properties: Properties::default(),
            filters: filters
                .iter()
                .map(|f| Subscription {
                    filter: ByteStr::from(f.as_str()),
                    options: SubOptions {
                        qos,
                        ..SubOptions::default()
                    },
                })
                .collect(),
        }))?;
        self.flush().await?;
        let ack = tokio::time::timeout(timeout, async {
            loop {
                match self.recv().await? {
                    Packet::SubAck(ack) if ack.packet_id == packet_id => return Ok(ack),
                    Packet::Disconnect(d) => return Err(ClientError::Disconnected(d.reason)),
                    Packet::PingResp | Packet::Publish(_) => continue,
                    other => return Err(ClientError::Unexpected(other.packet_type())),
                }
            }
        })
        .await
        .map_err(|_| ClientError::Timeout("SUBACK"))??;
        for (filter, &code) in filters.iter().zip(&ack.codes) {
            if code.is_error() {
                return Err(ClientError::SubscribeRefused {
                    filter: filter.clone(),
                    code,
                });
            }
        }
        Ok(())
    }

    /// Sends DISCONNECT (normal) and closes, ignoring errors: the
    /// measurement is over.
    pub async fn disconnect(mut self) {
        if self
            .queue(&Packet::Disconnect(Disconnect::default()))
            .is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.flush()).await;
        }
        let _ = self.io.shutdown().await;
    }
}

/// Packet identifiers in use (1..=65535), as a bitset; a second bit per id
/// marks QoS 2 exchanges past their first step (PUBREL sent or PUBREC sent).
pub struct PacketIds {
    /// Bit `id` set: the id is in use.
    used: Box<[u64]>,
    /// Bit `id` set: the QoS 2 exchange is in its second half.
    second: Box<[u64]>,
    /// Where the search for a free id starts.
    next: u16,
    /// Ids in use.
    count: u32,
}

impl Default for PacketIds {
    fn default() -> Self {
        PacketIds::new()
    }
}

impl PacketIds {
    /// No id in use.
    pub fn new() -> PacketIds {
        PacketIds {
            used: vec![0; 1024].into_boxed_slice(),
            second: vec![0; 1024].into_boxed_slice(),
            next: 1,
            count: 0,
        }
    }

    fn bit(set: &[u64], id: u16) -> bool {
        set.get(usize::from(id / 64))
            .is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    fn put(set: &mut [u64], id: u16, on: bool) {
        if let Some(w) = set.get_mut(usize::from(id / 64)) {
            if on {
                *w |= 1 << (id % 64);
            } else {
                *w &= !(1 << (id % 64));
            }
        }
    }

    /// Ids in use.
    pub fn in_use(&self) -> u32 {
        self.count
    }

    /// Takes the next free id; `None` if all 65,535 are in use.
    pub fn alloc(&mut self) -> Option<u16> {
        if self.count >= 65_535 {
            return None;
        }
        loop {
            let id = self.next;
            self.next = if id == u16::MAX { 1 } else { id + 1 };
            if !Self::bit(&self.used, id) {
                Self::put(&mut self.used, id, true);
                self.count += 1;
                return Some(id);
            }
        }
    }

    /// Marks a specific id in use (a subscriber's QoS 2 reception); `false`
    /// if it already was.
    pub fn take(&mut self, id: u16) -> bool {
        if id == 0 || Self::bit(&self.used, id) {
            return false;
        }
        Self::put(&mut self.used, id, true);
        self.count += 1;
        true
    }

    /// Whether `id` is in use.
    pub fn is_used(&self, id: u16) -> bool {
        Self::bit(&self.used, id)
    }

    /// Whether `id`'s QoS 2 exchange is in its second half.
    pub fn is_second(&self, id: u16) -> bool {
        Self::bit(&self.second, id)
    }

    /// Moves `id`'s QoS 2 exchange to its second half.
    pub fn set_second(&mut self, id: u16) {
        Self::put(&mut self.second, id, true);
    }

    /// Frees `id`; `false` if it was not in use.
    pub fn release(&mut self, id: u16) -> bool {
        if !Self::bit(&self.used, id) {
            return false;
        }
        Self::put(&mut self.used, id, false);
        Self::put(&mut self.second, id, false);
        self.count -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_ids_cycle_skip_used_and_never_hand_out_zero() {
        let mut ids = PacketIds::new();
        assert_eq!(ids.alloc(), Some(1));
        assert_eq!(ids.alloc(), Some(2));
        assert!(ids.release(1));
        assert!(!ids.release(1));
        for _ in 3..=65_535u32 {
            assert!(ids.alloc().is_some());
        }
        // Wraps past 65535 to 1 (free again), skipping 2 (still in use).
        assert_eq!(ids.alloc(), Some(1));
        assert_eq!(ids.in_use(), 65_535);
        assert_eq!(ids.alloc(), None);
        assert!(ids.release(700));
        assert_eq!(ids.alloc(), Some(700));
        assert!(!ids.take(0));
        assert!(!ids.take(700));
    }

    #[test]
    fn qos2_second_half_is_cleared_on_release() {
        let mut ids = PacketIds::new();
        assert!(ids.take(9));
        assert!(!ids.is_second(9));
        ids.set_second(9);
        assert!(ids.is_second(9));
        assert!(ids.release(9));
        assert!(!ids.is_second(9) && !ids.is_used(9));
    }
}

/// Where and how every client of a run connects.
#[derive(Debug, Clone)]
pub struct Target {
    /// The broker.
    pub addr: SocketAddr,
    /// Protocol level.
    pub protocol: Protocol,
    /// Keep alive in seconds.
    pub keep_alive: u16,
    /// Source addresses to spread connections over (round robin); empty
    /// lets the system choose.
    pub sources: Vec<IpAddr>,
    /// How long connecting (TCP and CONNACK) and subscribing may take.
    pub timeout: Duration,
    /// User name and password every connection sends.
    pub credentials: Option<Credentials>,
    /// TCP, TLS, WebSocket or WebSocket over TLS.
    pub transport: Transport,
}

impl Target {
    /// Options for the `index`-th connection of a run.
    pub fn options(&self, index: usize, client_id: String) -> ConnectOptions {
        ConnectOptions {
            addr: self.addr,
            source: self.sources.get(index % self.sources.len().max(1)).copied(),
            protocol: self.protocol,
            client_id,
            keep_alive: self.keep_alive,
            timeout: self.timeout,
            receive_maximum: None,
            credentials: self.credentials.clone(),
            persistent: false,
            transport: self.transport.clone(),
        }
    }
}
