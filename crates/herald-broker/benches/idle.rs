//! Where an idle connection's memory goes (issue 13: "report where the
//! bytes go"). Not a timed benchmark: it prints figures.
//!
//! Starts the broker in this process on a multi-thread runtime (as the
//! binary does), opens `HERALD_IDLE_CONNS` (default 2,000) MQTT 3.1.1
//! connections from plain blocking sockets (which allocate nothing on the
//! heap), waits until each has its CONNACK, lets them settle, and prints
//! the heap bytes that are live because of them: per connection, and by
//! the size of each allocation (a counting allocator records every live
//! allocation by its requested size). The sizes name the owners: the
//! connection task (its future), the session, the socket's registration,
//! the read and write buffers.
//!
//! Run: `cargo bench -p herald-broker --bench idle` (set
//! `HERALD_IDLE_CONNS`; each connection takes two file descriptors here).
//! The requested sizes are what any allocator is asked for; the binary's
//! allocator (mimalloc) rounds them up to its size classes, and RSS adds
//! its page-level overhead (see `bench/memory.sh` for RSS).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: fixed inputs, a panic is a broken bench
#![allow(unsafe_code)] // the counting allocator below, which only forwards to the system one

use herald_broker::config::Config;
use herald_broker::hooks::ClientInfo;
use herald_broker::transport::ListenerKind;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Allocation sizes are counted in 8-byte steps up to this; larger ones
/// share the last slot.
const SLOTS: usize = 1024;

/// Live allocations by requested size (`size / 8`, capped), and their bytes.
struct Counting {
    count: [AtomicI64; SLOTS + 1],
    bytes: [AtomicI64; SLOTS + 1],
}

impl Counting {
    fn slot(size: usize) -> usize {
        (size / 8).min(SLOTS)
    }
    fn add(&self, size: usize, sign: i64) {
        let slot = Self::slot(size);
        self.count[slot].fetch_add(sign, Ordering::Relaxed);
        self.bytes[slot].fetch_add(sign * size as i64, Ordering::Relaxed);
    }
    fn snapshot(&self) -> Vec<(i64, i64)> {
        (0..=SLOTS)
            .map(|i| {
                (
                    self.count[i].load(Ordering::Relaxed),
                    self.bytes[i].load(Ordering::Relaxed),
                )
            })
            .collect()
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees hold; the counters are atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.add(layout.size(), 1);
        // SAFETY: the caller upholds `alloc`'s contract for `layout`.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.add(layout.size(), -1);
        // SAFETY: `ptr` came from `System` with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.add(layout.size(), 1);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.add(layout.size(), -1);
        self.add(new_size, 1);
        // SAFETY: `ptr` came from `System` with `layout`; the caller
        // upholds `realloc`'s contract for `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static HEAP: Counting = Counting {
    count: [const { AtomicI64::new(0) }; SLOTS + 1],
    bytes: [const { AtomicI64::new(0) }; SLOTS + 1],
};

/// Opens one MQTT 3.1.1 connection and waits for its CONNACK.
fn connect(addr: SocketAddr, i: usize) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let id = format!("idle-{i}");
    // CONNECT, 3.1.1: protocol name, level 4, clean session, keep alive 60 s.
    let mut bytes = vec![0x10, (12 + id.len()) as u8];
    bytes.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60]);
    bytes.extend_from_slice(&(id.len() as u16).to_be_bytes());
    bytes.extend_from_slice(id.as_bytes());
    stream.write_all(&bytes).expect("send CONNECT");
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).expect("CONNACK");
    assert_eq!(connack, [0x20, 2, 0, 0], "CONNACK accepted");
    stream
}

fn main() {
    let conns: usize = std::env::var("HERALD_IDLE_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut config = Config::default();
    config.listener.bind = vec!["127.0.0.1:0".parse().expect("address")];
    config.listener.max_connections = u32::try_from(conns + 1000).expect("fits");
    config.metrics.bind = None;
    config.sys.interval = 0;
    let server = runtime
        .block_on(herald_broker::start(config))
        .expect("broker starts");
    let addr = server.local_addrs[0];
    // Warm up: the first connections allocate the runtime's and the
    // broker's shared structures (timer wheel, registries); measure after.
    let warm: Vec<_> = (0..100).map(|i| connect(addr, 1_000_000 + i)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let before = HEAP.snapshot();
    let streams: Vec<_> = (0..conns).map(|i| connect(addr, i)).collect();
    // Let every connection reach its idle state (read size shrunk, etc.).
    std::thread::sleep(Duration::from_secs(2));
    let after = HEAP.snapshot();

    let n = conns as f64;
    let (count, bytes) = before
        .iter()
        .zip(&after)
        .fold((0, 0), |(c, b), (x, y)| (c + y.0 - x.0, b + y.1 - x.1));
    println!(
        "{conns} idle MQTT 3.1.1 connections (keep alive 60 s, clean start), broker in process"
    );
    println!(
        "live heap per connection: {:.0} bytes in {:.2} allocations (requested sizes)",
        bytes as f64 / n,
        count as f64 / n
    );
    println!("by allocation size (slots with at least 0.05 allocations per connection):");
    println!(
        "  {:>14}  {:>10}  {:>10}",
        "size, bytes", "allocs/conn", "bytes/conn"
    );
    for (i, (x, y)) in before.iter().zip(&after).enumerate() {
        let (c, b) = (y.0 - x.0, y.1 - x.1);
        if (c as f64 / n).abs() < 0.05 {
            continue;
        }
        let size = if i == SLOTS {
            format!(">= {}", SLOTS * 8)
        } else {
            format!("{}..{}", i * 8, i * 8 + 7)
        };
        println!(
            "  {size:>14}  {:>10.2}  {:>10.0}",
            c as f64 / n,
            b as f64 / n
        );
    }
    // The owners named by size: what the largest allocations are.
    let connection_future = runtime.block_on(async {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let peer = herald_broker::transport::Peer::new(addr, ListenerKind::Tcp);
        let serve =
            herald_broker::protocol::serve_connection(server.broker.clone(), stream, peer, ());
        std::mem::size_of_val(&serve)
    });
    println!("sizes of what those allocations hold, bytes:");
    println!("  serve_connection future (plain TCP): {connection_future}");
    println!(
        "  Client<TcpStream>: {}",
        std::mem::size_of::<herald_broker::protocol::Client<tokio::net::TcpStream>>()
    );
    println!("  ClientInfo: {}", std::mem::size_of::<ClientInfo>());
    // What the packet loop keeps from one wait to the next (the timer; the
    // queue's wake-up, which also brings a takeover or shutdown, is the
    // session's waker slot); the wait for a congested subscriber is boxed,
    // and only while paused.
    let (sleep, drained) = runtime.block_on(async {
        let session = server.broker.new_session("sizes".into());
        let sleep = std::mem::size_of_val(&tokio::time::sleep(Duration::from_secs(1)));
        let drained = std::mem::size_of_val(&session.until_drained());
        (sleep, drained)
    });
    println!(
        "  kept by the packet loop while it waits: Sleep {sleep}; \
         boxed while paused: Session::until_drained() {drained}"
    );
    println!(
        "  Session: {}",
        std::mem::size_of::<herald_broker::session::Session>()
    );
    drop(streams);
    drop(warm);
    runtime.block_on(server.shutdown());
}
