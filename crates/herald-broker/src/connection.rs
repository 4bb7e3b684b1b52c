//! Framed packet I/O over any `AsyncRead + AsyncWrite` (TCP, or the TLS,
//! WebSocket and PROXY layers of [`crate::transport`]): a read buffer that
//! [`herald_codec::decode`] takes packets from, and a write buffer packets
//! are encoded into.
//!
//! The buffers are public to the protocol loop, which polls reading and
//! writing in one wait ([`Io::poll_read`], [`Io::poll_write`]). Nothing
//! here interprets a packet.
//!
//! Bytes of the write buffer can be held back until a store has written
//! what they announce ([`Io::hold_from`]): a QoS 2 PUBLISH to a stored
//! session leaves only once its packet id is on disk, so a crash cannot
//! make the broker send the same message again under a new packet id
//! (which the client would take as a new message). What follows held
//! bytes waits behind them, so packets keep their order.

use crate::ack::{AckGate, Changed};
use bytes::{Buf, BytesMut};
use herald_codec::{DecodeError, DecodeOptions, EncodeError, Packet, Protocol, decode};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
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
    /// (At most [`READ_MAX`]: a `u16`, which shares a word with `flush`.)
    read_hint: u16,
    /// Bytes of `wbuf` not to be written yet (boxed: most connections
    /// never hold any).
    held: Option<Box<Held>>,
}

/// Bytes of a write buffer held until a gate settles tickets.
struct Held {
    /// The gate (the broker's store: one per connection).
    gate: Arc<dyn AckGate>,
    /// Bytes taken from the write buffer since this was made: the origin
    /// of the positions in `fences`.
    written: u64,
    /// (position, ticket): the bytes from `position` on wait for `ticket`.
    /// Both increase from front to back.
    fences: VecDeque<(u64, u64)>,
    /// A wake-up for the first fence's ticket.
    waiting: Option<Changed>,
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
            read_hint: READ_LAZY as u16,
            flush: Flush {
                needed: S::BUFFERS_WRITES,
                pending: false,
            },
            held: None,
        }
    }

    /// Whether there is something to write (not held) or to flush.
    pub fn wants_write(&mut self) -> bool {
        self.writable() > 0 || self.flush.pending
    }

    /// Holds the bytes of the write buffer from offset `from` on (its
    /// length before a packet was encoded: that packet and all after it)
    /// until `ticket` of `gate` is settled. Nothing is held for a ticket
    /// already settled. A refused ticket holds for ever: the store is
    /// closing, and so is the connection. `gate` must be the same for
    /// every call on one connection, and settle tickets in order.
    pub fn hold_from(&mut self, from: usize, gate: &Arc<dyn AckGate>, ticket: u64) {
        if gate.settled(ticket) == Some(Ok(())) {
            return;
        }
        let held = self.held.get_or_insert_with(|| {
            Box::new(Held {
                gate: gate.clone(),
                written: 0,
                fences: VecDeque::new(),
                waiting: None,
            })
        });
        // Bytes behind a fence on a later ticket wait for this one anyway.
        if held.fences.back().is_some_and(|&(_, t)| t >= ticket) {
            return;
        }
        held.fences.push_back((held.written + from as u64, ticket));
    }

    /// Whether bytes are held.
    pub fn holding(&self) -> bool {
        self.held.as_ref().is_some_and(|h| !h.fences.is_empty())
    }

    /// How many bytes at the front of the write buffer may be written now
    /// (fences whose ticket settled are lifted).
    fn writable(&mut self) -> usize {
        let Some(held) = self.held.as_deref_mut() else {
            return self.wbuf.len();
        };
        while let Some(&(pos, ticket)) = held.fences.front() {
            if held.gate.settled(ticket) != Some(Ok(())) {
                let before =
                    usize::try_from(pos.saturating_sub(held.written)).unwrap_or(usize::MAX);
                return before.min(self.wbuf.len());
            }
            held.fences.pop_front();
            held.waiting = None;
        }
        self.wbuf.len()
    }

    /// Ready when held bytes may have become writable; pending for ever
    /// while none are held, or while the first fence's ticket is refused.
    pub fn poll_held(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(held) = self.held.as_deref_mut() else {
            return Poll::Pending;
        };
        let Some(&(_, ticket)) = held.fences.front() else {
            return Poll::Pending;
        };
        if held.waiting.is_none() {
            if held.gate.settled(ticket).is_some_and(|s| s.is_err()) {
                return Poll::Pending;
            }
            held.waiting = Some(held.gate.changed(ticket));
        }
        if let Some(w) = held.waiting.as_mut() {
            ready!(w.as_mut().poll(cx));
        }
        held.waiting = None;
        Poll::Ready(())
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
        let hint = usize::from(self.read_hint);
        if self.rbuf.is_empty() && (hint <= READ_LAZY || self.rbuf.capacity() > 2 * hint) {
            self.rbuf = BytesMut::new();
        }
        // An empty write buffer is let go whatever its size: kept, each of
        // 10,000 subscribers that got a burst would hold its own (fresh
        // pages the kernel must zero, held while idle); let go, the next
        // connection this thread serves takes the same memory.
        if self.wbuf.is_empty() && self.wbuf.capacity() > 0 {
            self.wbuf = BytesMut::new();
        }
        let lazy = self.rbuf.is_empty() && hint <= READ_LAZY;
        if !lazy && self.rbuf.capacity() - self.rbuf.len() < hint / 2 {
            self.rbuf.reserve(hint);
        }
    }

    /// Adapts the next read size to a read of `n` bytes into a buffer that
    /// had `spare` bytes free.
    fn record_read(&mut self, n: usize, spare: usize) {
        let hint = usize::from(self.read_hint);
        let hint = if n >= spare {
            (hint * 2).min(READ_MAX)
        } else if n < hint / 4 {
            (hint / 2).max(READ_MIN)
        } else {
            return;
        };
        self.read_hint = u16::try_from(hint).unwrap_or(u16::MAX);
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
            if n < READ_STACK {
                return Poll::Ready(Ok(n));
            }
            // The stack buffer filled: a burst after a quiet spell (a
            // publisher's first messages). The rest of what came is read
            // now, so the burst is handled as one batch and its messages
            // reach each subscriber together, not in a few writes; the
            // buffer is let go again once drained (`prepare_read`).
            self.rbuf.reserve(READ_MAX);
            let more = match pin!(self.stream.read_buf(&mut self.rbuf)).poll(cx) {
                // The end of the stream or an error shows again on the
                // next read.
                Poll::Ready(Ok(m)) => m,
                Poll::Ready(Err(_)) | Poll::Pending => 0,
            };
            return Poll::Ready(Ok(n + more));
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
        let writable = self.writable();
        if writable == 0 {
            ready!(Pin::new(&mut self.stream).poll_flush(cx))?;
            self.flush.pending = false;
            return Poll::Ready(Ok(0));
        }
        let chunk = self.wbuf.get(..writable).unwrap_or_default();
        match ready!(Pin::new(&mut self.stream).poll_write(cx, chunk))? {
            0 => Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
            n => {
                self.taken(n);
                self.flush.pending = self.flush.needed;
                Poll::Ready(Ok(n))
            }
        }
    }

    /// `n` bytes of the write buffer were written.
    fn taken(&mut self, n: usize) {
        self.wbuf.advance(n);
        if let Some(held) = self.held.as_deref_mut() {
            held.written += n as u64;
        }
    }

    /// Writes everything buffered (used when closing), held bytes once
    /// they may go.
    pub async fn flush_all(&mut self) -> std::io::Result<()> {
        loop {
            let writable = self.writable();
            if writable > 0 {
                let chunk = self.wbuf.get(..writable).unwrap_or_default();
                let n = self.stream.write(chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                self.taken(n);
            } else if self.wbuf.is_empty() {
                break;
            } else {
                std::future::poll_fn(|cx| self.poll_held(cx)).await;
            }
        }
        self.stream.flush().await
    }

    /// Shuts the stream's write side down (used when closing).
    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        self.stream.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::Refused;
    use herald_codec::{PubResp, Publish, QoS};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::task::Waker;
    use tokio::io::DuplexStream;

    impl Stream for DuplexStream {}

    /// A gate settled up to the ticket a test sets.
    #[derive(Default)]
    struct Written {
        upto: AtomicU64,
        notify: tokio::sync::Notify,
    }

    struct Gate(Arc<Written>);

    impl AckGate for Gate {
        fn settled(&self, ticket: u64) -> Option<Result<(), Refused>> {
            (self.0.upto.load(Ordering::SeqCst) >= ticket).then_some(Ok(()))
        }
        fn changed(&self, ticket: u64) -> Changed {
            let w = self.0.clone();
            Box::pin(async move {
                let notified = w.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if w.upto.load(Ordering::SeqCst) < ticket {
                    notified.await;
                }
            })
        }
    }

    fn settle(w: &Written, ticket: u64) {
        w.upto.store(ticket, Ordering::SeqCst);
        w.notify.notify_waiters();
    }

    fn publish(id: u16) -> Packet {
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: "t".into(),
            packet_id: id,
            properties: Default::default(),
            payload: bytes::Bytes::from_static(b"x"),
        })
    }

    /// Writes what may be written now; returns it as the peer reads it.
    async fn write_now(io: &mut Io<DuplexStream>, peer: &mut DuplexStream) -> Vec<u8> {
        let mut sent = 0;
        while io.wants_write() {
            sent += std::future::poll_fn(|cx| io.poll_write(cx)).await.unwrap();
        }
        let mut got = vec![0; sent];
        peer.read_exact(&mut got).await.unwrap();
        got
    }

    fn encoded(packets: &[Packet]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for p in packets {
            p.encode(Protocol::V5, &mut out).unwrap();
        }
        out.to_vec()
    }

    #[tokio::test]
    async fn held_bytes_leave_in_order_once_their_ticket_is_settled() {
        let (stream, mut peer) = tokio::io::duplex(1 << 16);
        let mut io = Io::new(stream, 1 << 20);
        let written = Arc::new(Written::default());
        let gate: Arc<dyn AckGate> = Arc::new(Gate(written.clone()));
        let mut cx = Context::from_waker(Waker::noop());
        // Before: free. Ticket 1 is settled already: nothing held.
        settle(&written, 1);
        io.send(&publish(1)).unwrap();
        let at = io.wbuf.len();
        io.send(&publish(2)).unwrap();
        io.hold_from(at, &gate, 1);
        assert!(!io.holding());
        // Publish 3 waits for ticket 3; everything after it too, also
        // what waits for a smaller ticket (2) and what waits for none.
        let at = io.wbuf.len();
        io.send(&publish(3)).unwrap();
        io.hold_from(at, &gate, 3);
        let at = io.wbuf.len();
        io.send(&Packet::PubRel(PubResp::new(4))).unwrap();
        io.hold_from(at, &gate, 2);
        io.send(&Packet::PingResp).unwrap();
        assert!(io.holding());
        assert_eq!(
            write_now(&mut io, &mut peer).await,
            encoded(&[publish(1), publish(2)])
        );
        assert!(io.poll_held(&mut cx).is_pending());
        settle(&written, 2);
        assert!(io.poll_held(&mut cx).is_ready(), "woken: may have changed");
        assert_eq!(write_now(&mut io, &mut peer).await, [] as [u8; 0]);
        settle(&written, 3);
        assert!(io.poll_held(&mut cx).is_ready());
        assert_eq!(
            write_now(&mut io, &mut peer).await,
            encoded(&[
                publish(3),
                Packet::PubRel(PubResp::new(4)),
                Packet::PingResp
            ])
        );
        assert!(!io.holding());
        assert!(
            io.poll_held(&mut cx).is_pending(),
            "nothing held: no wake-up"
        );
    }

    #[tokio::test]
    async fn closing_flushes_held_bytes_only_once_settled() {
        let (stream, mut peer) = tokio::io::duplex(1 << 16);
        let mut io = Io::new(stream, 1 << 20);
        let written = Arc::new(Written::default());
        let gate: Arc<dyn AckGate> = Arc::new(Gate(written.clone()));
        io.send(&publish(1)).unwrap();
        io.hold_from(0, &gate, 1);
        let mut flush = Box::pin(io.flush_all());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(
            flush.as_mut().poll(&mut cx).is_pending(),
            "waits for ticket 1"
        );
        settle(&written, 1);
        flush.await.unwrap();
        let mut got = vec![0; encoded(&[publish(1)]).len()];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, encoded(&[publish(1)]));
    }

    #[tokio::test]
    async fn a_write_buffer_is_let_go_once_written_and_kept_while_bytes_wait() {
        let (stream, mut peer) = tokio::io::duplex(1 << 16);
        let mut io = Io::new(stream, 1 << 20);
        let burst: Vec<Packet> = (1..=100).map(publish).collect();
        for p in &burst {
            io.send(p).unwrap();
        }
        // Not yet written: kept.
        io.prepare_read();
        assert_eq!(io.wbuf.len(), encoded(&burst).len());
        assert_eq!(write_now(&mut io, &mut peer).await, encoded(&burst));
        io.prepare_read();
        assert_eq!(
            io.wbuf.capacity(),
            0,
            "an idle connection holds no write buffer"
        );
    }
}
