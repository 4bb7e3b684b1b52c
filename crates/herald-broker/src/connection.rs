//! Framed packet I/O over any `AsyncRead + AsyncWrite` (TCP, or the TLS,
//! WebSocket and PROXY layers of [`crate::transport`]): a read buffer that
//! [`herald_codec::decode`] takes packets from, and a write buffer packets
//! are encoded into.
//!
//! The buffers are public to the protocol loop, which polls reading and
//! writing in one wait ([`Io::poll_read`], [`Io::poll_write`]). Nothing
//! here interprets a packet.

use bytes::BytesMut;
use herald_codec::{DecodeError, DecodeOptions, EncodeError, Packet, Protocol, decode};
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// A byte stream MQTT can run over.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {
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

/// Smallest read size hint: what a connection that reads little asks for.
const READ_MIN: usize = 64;
/// Largest read size a busy connection grows to.
const READ_MAX: usize = 16 * 1024;
/// While the read size hint is at most this, the connection keeps no read
/// buffer between reads: it reads into a buffer on the stack and keeps
/// only the bytes that came (an idle connection holds no read buffer).
const READ_LAZY: usize = READ_MIN * 4;
/// Size of that stack buffer; a read that fills it grows the hint past
/// [`READ_LAZY`], so the next reads go straight into a kept buffer.
const READ_STACK: usize = 1024;

/// Whether a stream that buffers writes has bytes waiting for a flush.
#[derive(Clone, Copy, Debug)]
pub struct Flush {
    /// The stream buffers writes (see [`Stream::BUFFERS_WRITES`]).
    needed: bool,
    /// Bytes were written and not flushed since.
    pending: bool,
}

/// A client socket with its buffers. The socket is not split into halves:
/// the packet loop polls reading and writing itself, one after the other,
/// so they need no shared lock (nor its allocation).
pub struct Io<S> {
    /// The socket.
    stream: S,
    /// Bytes read and not yet decoded.
    pub rbuf: BytesMut,
    /// Bytes encoded and not yet written.
    pub wbuf: BytesMut,
    /// Protocol level and maximum packet size for decoding.
    pub opts: DecodeOptions,
    /// Whether the stream holds written bytes that need a flush.
    pub flush: Flush,
    /// How much to read next: doubles while reads fill the buffer, halves
    /// while they come back small, so an idle connection holds no read
    /// buffer and a busy one reads in large chunks.
    read_hint: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Io<S> {
    /// Wraps a connected socket.
    pub fn new(stream: S, max_packet_size: usize) -> Io<S>
    where
        S: Stream,
    {
        Io {
            stream,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            opts: DecodeOptions {
                protocol: Protocol::V5,
                max_packet_size,
            },
            read_hint: READ_LAZY,
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
    /// releases buffers grown larger than needed once they are empty, and
    /// the read buffer altogether while reads are small, so an idle
    /// connection holds no buffer at all.
    pub fn prepare_read(&mut self) {
        // Also when its capacity is 0: a buffer all of whose bytes were
        // decoded still holds the allocation they came in.
        if self.rbuf.is_empty()
            && (self.read_hint <= READ_LAZY || self.rbuf.capacity() > 2 * self.read_hint)
        {
            self.rbuf = BytesMut::new();
        }
        if self.wbuf.is_empty() && self.wbuf.capacity() > READ_MAX {
            self.wbuf = BytesMut::new();
        }
        let lazy = self.rbuf.is_empty() && self.read_hint <= READ_LAZY;
        if !lazy && self.rbuf.capacity() - self.rbuf.len() < self.read_hint / 2 {
            self.rbuf.reserve(self.read_hint);
        }
    }

    /// Adapts the next read size to a read of `n` bytes into a buffer that
    /// had `spare` bytes free.
    fn record_read(&mut self, n: usize, spare: usize) {
        if n >= spare {
            self.read_hint = (self.read_hint * 2).min(READ_MAX);
        } else if n < self.read_hint / 4 {
            self.read_hint = (self.read_hint / 2).max(READ_MIN);
        }
    }

    /// Reads what the socket has into the read buffer (call
    /// [`Io::prepare_read`] first); `Ok(0)` is the end of the stream.
    /// Cancel-safe: nothing is kept between polls.
    pub fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.rbuf.capacity() == 0 {
            let mut stack = [0u8; READ_STACK];
            let mut buf = ReadBuf::new(&mut stack);
            ready!(Pin::new(&mut self.stream).poll_read(cx, &mut buf))?;
            let n = buf.filled().len();
            self.rbuf.extend_from_slice(buf.filled());
            self.record_read(n, READ_STACK);
            return Poll::Ready(Ok(n));
        }
        let spare = self.rbuf.capacity() - self.rbuf.len();
        let n = ready!(pin!(self.stream.read_buf(&mut self.rbuf)).poll(cx))?;
        self.record_read(n, spare);
        Poll::Ready(Ok(n))
    }

    /// Writes some of the write buffer, or, with nothing left, flushes what
    /// earlier writes left in the stream's own buffer. Returns how many
    /// bytes it took from the buffer (0 for a flush); a socket that accepts
    /// nothing is an error. Cancel-safe: one write or one flush at a time,
    /// and an interrupted flush is redone.
    pub fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.wbuf.is_empty() {
            ready!(Pin::new(&mut self.stream).poll_flush(cx))?;
            self.flush.pending = false;
            return Poll::Ready(Ok(0));
        }
        match ready!(pin!(self.stream.write_buf(&mut self.wbuf)).poll(cx))? {
            0 => Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
            n => {
                self.flush.pending = self.flush.needed;
                Poll::Ready(Ok(n))
            }
        }
    }

    /// Writes everything buffered (used when closing).
    pub async fn flush_all(&mut self) -> std::io::Result<()> {
        while !self.wbuf.is_empty() {
            self.stream.write_buf(&mut self.wbuf).await?;
        }
        self.stream.flush().await
    }

    /// Shuts the stream's write side down (used when closing).
    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        self.stream.shutdown().await
    }
}
