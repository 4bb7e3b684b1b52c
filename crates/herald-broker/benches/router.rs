//! Topic matching with 100,000 subscriptions in the router's trie: the cost
//! the publish path pays per message to find its subscribers.
//!
//! The subscriptions model a fleet: `site/{s}/dev/{d}/temp` exact filters,
//! `site/{s}/+/+/temp` and `site/{s}/#` wildcards, 100,000 in all.
//!
//! Run: `cargo bench -p herald-broker --bench router`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: fixed inputs, a panic is a broken bench

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use herald_broker::router::Trie;
use std::hint::black_box;

fn fleet() -> Trie<u32, u8> {
    let mut trie = Trie::new();
    let mut id = 0u32;
    'fill: for site in 0..1000 {
        for dev in 0..98 {
            trie.insert(&format!("site/{site}/dev/{dev}/temp"), id, 1);
            id += 1;
            if id == 100_000 {
                break 'fill;
            }
        }
        trie.insert(&format!("site/{site}/+/+/temp"), id, 1);
        trie.insert(&format!("site/{site}/#"), id + 1, 0);
        id += 2;
        if id >= 100_000 {
            break;
        }
    }
    trie
}

fn matching(c: &mut Criterion) {
    let trie = fleet();
    let mut group = c.benchmark_group("trie_100k");
    group.throughput(Throughput::Elements(1));
    group.bench_function("match_exact_and_wildcards", |b| {
        b.iter(|| {
            let mut n = 0;
            trie.for_each_match(black_box("site/512/dev/42/temp"), |_, _, _| n += 1);
            black_box(n)
        })
    });
    group.bench_function("match_nothing", |b| {
        b.iter(|| {
            let mut n = 0;
            trie.for_each_match(black_box("other/512/dev/42/temp"), |_, _, _| n += 1);
            black_box(n)
        })
    });
    group.finish();
}

criterion_group!(benches, matching);
criterion_main!(benches);
