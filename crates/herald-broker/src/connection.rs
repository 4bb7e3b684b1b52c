//! Framed packet I/O over any `AsyncRead + AsyncWrite` (TCP, or the TLS,
//! WebSocket and PROXY layers of [`crate::transport`]): a read buffer that
//! [`herald_codec::decode`] takes packets from, and a write buffer packets
//! are encoded into.
//!
//! The fields are public to the protocol loop so it can poll reading and
//! writing in one `select!` (disjoint borrows). Nothing here interprets a
//! packet.

use bytes::BytesMut;
use herald_codec::{DecodeError, DecodeOptions, EncodeError, Packet, Protocol, decode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

/// A byte stream MQTT can run over.
pub trait Stream: AsyncRead + AsyncWrite + Send + 'static {
    /// Whether written bytes may wait in the stream's own buffer until it
    /// is flushed (TLS records, WebSocket frames); a TCP socket sends them
    /// at once and is never flushed.
    const BUFFERS_WRITES: bool = true;
}

impl Stream for TcpStream {
    const BUFFERS_WRITES: bool = false;
}

/// Above this many unsent bytes, the connection stops reading and stops
/// taking messages from its session queue until the socket drains: the
/// bound on a connection's memory.
pub const WRITE_HIGH_WATER: usize = 64 * 1024;

/// Smallest read buffer: what an idle connection holds.
const READ_MIN: usize = 64;
/// Largest read size a busy connection grows to.
const READ_MAX: usize = 16 * 1024;

/// Whether a stream that buffers writes has bytes waiting for a flush.
#[derive(Clone, Copy, Debug)]
pub struct Flush {
    /// The stream buffers writes (see [`Stream::BUFFERS_WRITES`]).
    needed: bool,
    /// Bytes were written and not flushed since.
    pending: bool,
}

/// Writes some of `wbuf` to `writer`, or, with nothing left, flushes what
/// earlier writes left in the stream's own buffer. Returns how many bytes
/// it took from `wbuf` (0 for a flush); a socket that accepts nothing is an
/// error. Cancel-safe: one write or one flush at a time, and an
/// interrupted flush is redone. (Fields, not `&mut Io`, so the protocol
/// loop can read at the same time.)
pub async fn write_some<W: AsyncWrite>(
    writer: &mut WriteHalf<W>,
    wbuf: &mut BytesMut,
    flush: &mut Flush,
) -> std::io::Result<usize> {
    if wbuf.is_empty() {
        writer.flush().await?;
        flush.pending = false;
        return Ok(0);
    }
    match writer.write_buf(wbuf).await? {
        0 => Err(std::io::ErrorKind::WriteZero.into()),
        n => {
            flush.pending = flush.needed;
            Ok(n)
        }
    }
}

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
    /// Whether the stream holds written bytes that need a flush.
    pub flush: Flush,
    /// How much to read next: doubles while reads fill the buffer, halves
    /// while they come back small, so an idle connection holds a few dozen
    /// bytes and a busy one reads in large chunks.
    read_hint: usize,
}

impl<S: AsyncRead + AsyncWrite> Io<S> {
    /// Wraps a connected socket.
    pub fn new(stream: S, max_packet_size: usize) -> Io<S>
    where
        S: Stream,
    {
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
            flush: Flush {
                needed: S::BUFFERS_WRITES,
                pending: false,
            },
        }
    }

    /// Whether there is something to write or to flush.
    pub fn wants_write(&self) -> bool {
        !self.wbuf.is_empty() || self.flush.pending
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
