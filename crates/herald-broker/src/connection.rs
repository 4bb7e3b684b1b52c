//! Framed packet I/O over any `AsyncRead + AsyncWrite` (TCP now; TLS and
//! WebSocket later): a read buffer that [`herald_codec::decode`] takes
//! packets from, and a write buffer packets are encoded into.
//!
//! The fields are public to the protocol loop so it can poll reading and
//! writing in one `select!` (disjoint borrows). Nothing here interprets a
//! packet.

use bytes::BytesMut;
use herald_codec::{DecodeError, DecodeOptions, EncodeError, Packet, Protocol, decode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

/// Above this many unsent bytes, the connection stops reading and stops
/// taking messages from its session queue until the socket drains: the
/// bound on a connection's memory.
pub const WRITE_HIGH_WATER: usize = 64 * 1024;

/// Smallest read buffer: what an idle connection holds.
const READ_MIN: usize = 64;
/// Largest read size a busy connection grows to.
const READ_MAX: usize = 16 * 1024;

/// A client socket with its buffers.
pub struct Io<S> {
    /// Read side of the socket.
    pub reader: ReadHalf<S>,
    /// Write side of the socket.
    pub writer: WriteHalf<S>,
    /// Bytes read and not yet decoded.
    pub rbuf: BytesMut,
    /// Bytes encoded and not yet written.
    pub wbuf: BytesMut,
    /// Protocol level and maximum packet size for decoding.
    pub opts: DecodeOptions,
    /// How much to read next: doubles while reads fill the buffer, halves
    /// while they come back small, so an idle connection holds a few dozen
    /// bytes and a busy one reads in large chunks.
    read_hint: usize,
}

impl<S: AsyncRead + AsyncWrite> Io<S> {
    /// Wraps a connected socket.
    pub fn new(stream: S, max_packet_size: usize) -> Io<S> {
        let (reader, writer) = tokio::io::split(stream);
        Io {
            reader,
            writer,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            opts: DecodeOptions {
                protocol: Protocol::V5,
                max_packet_size,
            },
            read_hint: READ_MIN * 4,
        }
    }

    /// The next complete packet in the read buffer, if any.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, DecodeError> {
        decode(&mut self.rbuf, &self.opts)
    }

    /// Encodes a packet into the write buffer at the connection's level.
    pub fn send(&mut self, packet: &Packet) -> Result<usize, EncodeError> {
        packet.encode(self.opts.protocol, &mut self.wbuf)
    }

    /// Makes room for the next read, sized by how full recent reads were;
    /// releases buffers grown larger than needed once they are empty, so
    /// an idle connection holds little memory.
    pub fn prepare_read(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > 2 * self.read_hint {
            self.rbuf = BytesMut::new();
        }
        if self.wbuf.is_empty() && self.wbuf.capacity() > READ_MAX {
            self.wbuf = BytesMut::new();
        }
        if self.rbuf.capacity() - self.rbuf.len() < self.read_hint / 2 {
            self.rbuf.reserve(self.read_hint);
        }
    }

    /// Adapts the next read size to a read of `n` bytes into a buffer that
    /// had `spare` bytes free.
    pub fn record_read(&mut self, n: usize, spare: usize) {
        if n >= spare {
            self.read_hint = (self.read_hint * 2).min(READ_MAX);
        } else if n < self.read_hint / 4 {
            self.read_hint = (self.read_hint / 2).max(READ_MIN);
        }
    }

    /// Free space in the read buffer.
    pub fn read_spare(&self) -> usize {
        self.rbuf.capacity() - self.rbuf.len()
    }

    /// Writes everything buffered (used when closing).
    pub async fn flush_all(&mut self) -> std::io::Result<()> {
        while !self.wbuf.is_empty() {
            self.writer.write_buf(&mut self.wbuf).await?;
        }
        self.writer.flush().await
    }
}
