//! The latency histogram: herald-bench's own (`histogram.rs`) against the
//! `hdrhistogram` crate at the same precision (2 significant figures:
//! 128 buckets per power of two, as ours), in one run. Issue 11 asked to
//! keep the hand-written one only if a figure shows it wins.
//!
//! Timed (criterion): recording a value, merging 1,000 subscribers'
//! histograms (what `load.rs` does at the end of a fan-out run) and the
//! summary (five percentiles). Printed: heap bytes a subscriber's
//! histogram holds after 1,000 typical latencies (a counting allocator),
//! and the largest relative error of p50/p90/p99/p99.9 against the exact
//! sorted values.
//!
//! Run: `cargo bench -p herald-bench --bench histogram`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: fixed inputs, a panic is a broken bench
#![allow(unsafe_code)] // the counting allocator below, which only forwards to the system one

use criterion::{Criterion, criterion_group, criterion_main};
use hdrhistogram::Histogram as Hdr;
use herald_bench::histogram::Histogram as Ours;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Live heap bytes of this process.
struct Live(AtomicUsize);

unsafe impl GlobalAlloc for Live {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.0.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static LIVE: Live = Live(AtomicUsize::new(0));

/// Latencies in nanoseconds, log-uniform over 20 µs .. 50 ms, from a fixed
/// xorshift sequence (the spread a loaded fan-out run shows).
fn latencies(n: usize, seed: u64) -> Vec<u64> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            (20_000.0 * (2_500.0f64).powf(u)) as u64
        })
        .collect()
}

/// A histogram as herald-bench would use it: nanoseconds, auto-resizing.
fn hdr() -> Hdr<u64> {
    Hdr::new(2).unwrap()
}

/// Records `v`, growing the histogram as needed (`saturating_record`
/// would clamp instead of growing).
fn record_hdr(h: &mut Hdr<u64>, v: u64) {
    h.record(v)
        .expect("an auto-resizing histogram takes any value");
}

const PERCENTILES: [f64; 4] = [50.0, 90.0, 99.0, 99.9];

fn exact(sorted: &[u64], p: f64) -> u64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn worst_error(values: &[u64], at: impl Fn(f64) -> u64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    PERCENTILES
        .iter()
        .map(|&p| {
            let want = exact(&sorted, p) as f64;
            (at(p) as f64 - want).abs() / want
        })
        .fold(0.0, f64::max)
}

fn bytes_of<T>(make: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.0.load(Ordering::Relaxed);
    let h = make();
    (h, LIVE.0.load(Ordering::Relaxed) - before)
}

fn print_figures() {
    let values = latencies(1_000, 7);
    let (ours, ours_bytes) = bytes_of(|| {
        let mut h = Ours::new();
        values.iter().for_each(|&v| h.record(v));
        h
    });
    let (theirs, hdr_bytes) = bytes_of(|| {
        let mut h = hdr();
        values.iter().for_each(|&v| record_hdr(&mut h, v));
        h
    });
    println!(
        "heap per subscriber histogram (1,000 values, 20 µs..50 ms): ours {ours_bytes} B, hdrhistogram {hdr_bytes} B"
    );
    let many = latencies(100_000, 11);
    let mut o = Ours::new();
    let mut h = hdr();
    for &v in &many {
        o.record(v);
        record_hdr(&mut h, v);
    }
    println!(
        "worst relative error of p50/p90/p99/p99.9 over 100,000 values: ours {:.3} %, hdrhistogram {:.3} %",
        100.0 * worst_error(&many, |p| o.percentile(p).unwrap()),
        100.0 * worst_error(&many, |p| h.value_at_percentile(p)),
    );
    black_box((ours, theirs));
}

fn record(c: &mut Criterion) {
    print_figures();
    let values = latencies(10_000, 3);
    let mut g = c.benchmark_group("histogram_record_10k");
    g.bench_function("ours", |b| {
        b.iter(|| {
            let mut h = Ours::new();
            values.iter().for_each(|&v| h.record(v));
            black_box(h.count())
        })
    });
    g.bench_function("hdrhistogram", |b| {
        b.iter(|| {
            let mut h = hdr();
            values.iter().for_each(|&v| record_hdr(&mut h, v));
            black_box(h.len())
        })
    });
    g.finish();
}

fn merge_and_summary(c: &mut Criterion) {
    let subs: Vec<Vec<u64>> = (0..1_000).map(|i| latencies(100, i + 1)).collect();
    let ours: Vec<Ours> = subs
        .iter()
        .map(|vs| {
            let mut h = Ours::new();
            vs.iter().for_each(|&v| h.record(v));
            h
        })
        .collect();
    let theirs: Vec<Hdr<u64>> = subs
        .iter()
        .map(|vs| {
            let mut h = hdr();
            vs.iter().for_each(|&v| record_hdr(&mut h, v));
            h
        })
        .collect();
    let mut g = c.benchmark_group("histogram_merge_1000_then_summary");
    g.bench_function("ours", |b| {
        b.iter(|| {
            let mut all = Ours::new();
            ours.iter().for_each(|h| all.merge(h));
            black_box(all.summary_us())
        })
    });
    g.bench_function("hdrhistogram", |b| {
        b.iter(|| {
            let mut all = hdr();
            theirs.iter().for_each(|h| all.add(h).unwrap());
            black_box([
                all.min(),
                all.value_at_percentile(50.0),
                all.value_at_percentile(90.0),
                all.value_at_percentile(99.0),
                all.value_at_percentile(99.9),
                all.max(),
            ])
        })
    });
    g.finish();
}

criterion_group!(benches, record, merge_and_summary);
criterion_main!(benches);
