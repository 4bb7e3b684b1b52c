//! The broker's state store, chosen with measurements (issue 16): the same
//! workload on three stores, on the disk the data dir is on.
//!
//! - `log`: the broker's own format (`crates/herald-broker/src/frame.rs`:
//!   `len u32 | crc32 u32 | data`), appended to one file, one `fdatasync`
//!   per group, as `store/writer.rs` does; read back by checking every
//!   frame's CRC and applying it to a map, as `store/recovery.rs` does.
//! - `redb`: one write transaction per group, committed with its default
//!   durability (immediate: fsync before `commit` returns).
//! - `log-prealloc`: the same log written into space made beforehand
//!   (zeros written and fsynced 64 MiB at a time), so a group's
//!   `fdatasync` changes no file size: whether the broker should.
//! - `fjall`: one write batch per group, committed with
//!   `PersistMode::SyncData` (its journal fsynced before `commit`
//!   returns).
//!
//! The workload is what a QoS 1/2 message to a persistent session makes
//! the broker write: `Queued` (the delivery: a 100-byte payload on a
//! 12-byte topic, 170 bytes as the broker encodes it), `Sent` (its packet
//! id, 21 bytes) and `Done` (19 bytes), the stream interleaved as a busy
//! broker writes it (`Queued(i)`, `Sent(i-64)`, `Done(i-128)`). In a
//! key-value store `Queued` is an insert, `Sent` an insert of a small key
//! beside it, `Done` removes both. Each group of 1, 16 or 256 records is
//! made durable before the next starts (a broker with 1, ~5 or ~100
//! publishers waiting on it).
//!
//! Then the start: 1,000,000 live deliveries written once, the store
//! closed, and the time to open it and read everything back into memory
//! (the broker holds its whole state in memory), with the bytes on disk.
//! The page cache is warm (dropping it would disturb other people's
//! measurements on a shared machine).
//!
//! Last, what one fsync costs on this disk: 128 bytes appended then
//! `fdatasync`, the same with `fsync`, and 128 bytes overwritten inside a
//! file already written and synced (no size change, no block allocation)
//! then `fdatasync`.
//!
//! Usage: `store-compare [--dir D] [--seconds S] [--rounds R]
//! [--records N] [--only log,log-prealloc,redb,fjall] [--skip-read]
//! [--skip-fsync]`.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Distance (in messages) between a delivery queued and sent, and sent
/// and done.
const LAG: u64 = 64;
/// Payload of every message.
const PAYLOAD: usize = 100;
/// Topic of every message.
const TOPIC: &[u8] = b"bench/topic1";
/// Client id of the session.
const CLIENT: &[u8] = b"sub-000001";

/// One change the broker makes to its state.
#[derive(Clone, Copy)]
enum Op {
    Queued(u64),
    Sent(u64),
    Done(u64),
}

/// The changes of message `i` onwards, as a busy broker interleaves them.
struct Workload {
    next: u64,
    pending: Vec<Op>,
}

impl Workload {
    fn new() -> Workload {
        Workload {
            next: 0,
            pending: Vec::new(),
        }
    }

    fn take(&mut self, n: usize, out: &mut Vec<Op>) {
        out.clear();
        while out.len() < n {
            if self.pending.is_empty() {
                let i = self.next;
                self.next += 1;
                self.pending.push(Op::Queued(i));
                if i >= LAG {
                    self.pending.push(Op::Sent(i - LAG));
                }
                if i >= 2 * LAG {
                    self.pending.push(Op::Done(i - 2 * LAG));
                }
                self.pending.reverse();
            }
            if let Some(op) = self.pending.pop() {
                out.push(op);
            }
        }
    }
}

/// Key of delivery `seq`: client id and sequence number.
fn key(seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(CLIENT.len() + 9);
    k.extend_from_slice(CLIENT);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Key of the packet id of delivery `seq`.
fn sent_key(seq: u64) -> Vec<u8> {
    let mut k = key(seq);
    k.push(b's');
    k
}

/// The delivery as the broker encodes it (sizes as in
/// `store/entry.rs`: QoS, retain, subscription ids, topic, payload,
/// publisher, times).
fn delivery(seq: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(160);
    v.push(1); // QoS
    v.push(0); // retain
    v.extend_from_slice(&0u16.to_be_bytes()); // subscription ids
    v.extend_from_slice(&(TOPIC.len() as u16).to_be_bytes());
    v.extend_from_slice(TOPIC);
    v.extend_from_slice(&(PAYLOAD as u32).to_be_bytes());
    let fill = (seq % 251) as u8;
    v.extend(std::iter::repeat_n(fill, PAYLOAD));
    v.extend_from_slice(&(CLIENT.len() as u16).to_be_bytes());
    v.extend_from_slice(b"pub-000001"); // publisher
    v.extend_from_slice(&[0; 2]); // no user name, no properties
    v.extend_from_slice(&seq.to_be_bytes()); // publish time
    v.extend_from_slice(&u64::MAX.to_be_bytes()); // expiry
    v
}

/// The record data the broker's log holds for `op`.
fn record(op: Op, out: &mut Vec<u8>) {
    out.clear();
    let (kind, seq) = match op {
        Op::Queued(s) => (5u8, s),
        Op::Sent(s) => (6, s),
        Op::Done(s) => (8, s),
    };
    out.push(kind);
    out.extend_from_slice(&(CLIENT.len() as u16).to_be_bytes());
    out.extend_from_slice(CLIENT);
    out.extend_from_slice(&seq.to_be_bytes());
    match op {
        Op::Queued(s) => out.extend_from_slice(&delivery(s)),
        Op::Sent(s) => out.extend_from_slice(&((s % 65535) as u16 + 1).to_be_bytes()),
        Op::Done(_) => {}
    }
}

/// Appends a frame (`len | crc | data`) holding `data`.
fn frame(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(data).to_be_bytes());
    out.extend_from_slice(data);
}

/// The frames of `ops`, in `buf` (`rec`: scratch).
fn frames(ops: &[Op], rec: &mut Vec<u8>, buf: &mut Vec<u8>) {
    buf.clear();
    for &op in ops {
        record(op, rec);
        frame(buf, rec);
    }
}

/// A store under test.
trait Store {
    /// Makes `ops` durable (returns once they are).
    fn group(&mut self, ops: &[Op]) -> io::Result<()>;
}

/// The broker's own log.
struct Log {
    file: File,
    buf: Vec<u8>,
    rec: Vec<u8>,
}

impl Log {
    fn create(dir: &Path) -> io::Result<Log> {
        fs::create_dir_all(dir)?;
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(dir.join("state.log"))?;
        file.write_all(b"HRLDST01")?;
        file.sync_all()?;
        Ok(Log {
            file,
            buf: Vec::new(),
            rec: Vec::new(),
        })
    }
}

impl Store for Log {
    fn group(&mut self, ops: &[Op]) -> io::Result<()> {
        frames(ops, &mut self.rec, &mut self.buf);
        self.file.write_all(&self.buf)?;
        self.file.sync_data()
    }
}

/// The broker's log, written into space made beforehand: the file is
/// extended with zeros (written and fsynced) 64 MiB at a time, and records
/// overwrite them, so a group's `fdatasync` changes no file size and
/// allocates no block (the file system's journal is not involved). Not
/// what the broker does: measured to see whether it should.
struct LogPrealloc {
    file: File,
    /// Where the next record goes.
    at: u64,
    /// Bytes made so far.
    made: u64,
    buf: Vec<u8>,
    rec: Vec<u8>,
}

/// Space made at a time by [`LogPrealloc`].
const PREALLOC: u64 = 64 << 20;

impl LogPrealloc {
    fn create(dir: &Path) -> io::Result<LogPrealloc> {
        fs::create_dir_all(dir)?;
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.join("state.log"))?;
        file.write_all(b"HRLDST01")?;
        let mut log = LogPrealloc {
            file,
            at: 8,
            made: 8,
            buf: Vec::new(),
            rec: Vec::new(),
        };
        log.make_space()?;
        Ok(log)
    }

    fn make_space(&mut self) -> io::Result<()> {
        let zeros = vec![0u8; 1 << 20];
        self.file.seek(SeekFrom::Start(self.made))?;
        for _ in 0..PREALLOC >> 20 {
            self.file.write_all(&zeros)?;
        }
        self.made += PREALLOC;
        self.file.sync_all()
    }
}

impl Store for LogPrealloc {
    fn group(&mut self, ops: &[Op]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        frames(ops, &mut self.rec, &mut self.buf);
        while self.at + self.buf.len() as u64 > self.made {
            self.make_space()?;
        }
        self.file.write_all_at(&self.buf, self.at)?;
        self.at += self.buf.len() as u64;
        self.file.sync_data()
    }
}

const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("deliveries");

/// redb.
struct Redb {
    db: redb::Database,
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl Redb {
    fn create(dir: &Path) -> io::Result<Redb> {
        fs::create_dir_all(dir)?;
        let db = redb::Database::create(dir.join("state.redb")).map_err(other)?;
        Ok(Redb { db })
    }
}

impl Store for Redb {
    fn group(&mut self, ops: &[Op]) -> io::Result<()> {
        let txn = self.db.begin_write().map_err(other)?;
        {
            let mut t = txn.open_table(TABLE).map_err(other)?;
            for &op in ops {
                match op {
                    Op::Queued(s) => {
                        t.insert(key(s).as_slice(), delivery(s).as_slice())
                            .map_err(other)?;
                    }
                    Op::Sent(s) => {
                        let id = ((s % 65535) as u16 + 1).to_be_bytes();
                        t.insert(sent_key(s).as_slice(), id.as_slice())
                            .map_err(other)?;
                    }
                    Op::Done(s) => {
                        t.remove(key(s).as_slice()).map_err(other)?;
                        t.remove(sent_key(s).as_slice()).map_err(other)?;
                    }
                }
            }
        }
        txn.commit().map_err(other)
    }
}

/// fjall.
struct Fjall {
    db: fjall::Database,
    ks: fjall::Keyspace,
}

impl Fjall {
    fn create(dir: &Path) -> io::Result<Fjall> {
        fs::create_dir_all(dir)?;
        let db = fjall::Database::builder(dir).open().map_err(other)?;
        let ks = db
            .keyspace("deliveries", fjall::KeyspaceCreateOptions::default)
            .map_err(other)?;
        Ok(Fjall { db, ks })
    }
}

impl Store for Fjall {
    fn group(&mut self, ops: &[Op]) -> io::Result<()> {
        let mut batch = self
            .db
            .batch()
            .durability(Some(fjall::PersistMode::SyncData));
        for &op in ops {
            match op {
                Op::Queued(s) => batch.insert(&self.ks, key(s), delivery(s)),
                Op::Sent(s) => batch.insert(
                    &self.ks,
                    sent_key(s),
                    ((s % 65535) as u16 + 1).to_be_bytes(),
                ),
                Op::Done(s) => {
                    batch.remove(&self.ks, key(s));
                    batch.remove(&self.ks, sent_key(s));
                }
            }
        }
        batch.commit().map_err(other)
    }
}

/// The stores by name.
const STORES: [&str; 4] = ["log", "log-prealloc", "redb", "fjall"];

fn create(name: &str, dir: &Path) -> io::Result<Box<dyn Store>> {
    Ok(match name {
        "log" => Box::new(Log::create(dir)?),
        "log-prealloc" => Box::new(LogPrealloc::create(dir)?),
        "redb" => Box::new(Redb::create(dir)?),
        "fjall" => Box::new(Fjall::create(dir)?),
        other => return Err(io::Error::other(format!("unknown store {other}"))),
    })
}

/// Latency figures of a run, microseconds.
struct Latency {
    mean: f64,
    p50: f64,
    p99: f64,
}

fn latency(mut us: Vec<f64>) -> Latency {
    us.sort_by(f64::total_cmp);
    let at = |q: f64| us[((us.len() - 1) as f64 * q) as usize];
    Latency {
        mean: us.iter().sum::<f64>() / us.len() as f64,
        p50: at(0.5),
        p99: at(0.99),
    }
}

/// Groups of `size` records for `seconds`: records/s and the group
/// latency.
fn run_groups(store: &mut dyn Store, size: usize, seconds: f64) -> io::Result<(f64, Latency)> {
    let mut work = Workload::new();
    let mut ops = Vec::with_capacity(size);
    // Warm-up: the first groups create files and tables.
    for _ in 0..3 {
        work.take(size, &mut ops);
        store.group(&ops)?;
    }
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let mut times = Vec::new();
    let mut records = 0usize;
    while Instant::now() < until {
        work.take(size, &mut ops);
        let t = Instant::now();
        store.group(&ops)?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
        records += size;
    }
    let rate = records as f64 / started.elapsed().as_secs_f64();
    Ok((rate, latency(times)))
}

/// Bytes of the files under `dir`.
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += du(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Writes `n` live deliveries to a fresh store `name` in `dir`, closes
/// it, then opens it again and reads everything into a map: (write s,
/// open + read s, entries read, bytes on disk).
fn start_up(name: &str, dir: &Path, n: u64) -> io::Result<(f64, f64, usize, u64)> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    let t = Instant::now();
    match name {
        "log" => {
            let mut f = BufWriter::with_capacity(1 << 20, File::create(dir.join("state.log"))?);
            f.write_all(b"HRLDST01")?;
            let (mut rec, mut buf) = (Vec::new(), Vec::new());
            for s in 0..n {
                record(Op::Queued(s), &mut rec);
                buf.clear();
                frame(&mut buf, &rec);
                f.write_all(&buf)?;
            }
            f.into_inner().map_err(other)?.sync_all()?;
        }
        "redb" => {
            let db = redb::Database::create(dir.join("state.redb")).map_err(other)?;
            let mut s = 0;
            while s < n {
                let txn = db.begin_write().map_err(other)?;
                {
                    let mut t = txn.open_table(TABLE).map_err(other)?;
                    for s in s..(s + 100_000).min(n) {
                        t.insert(key(s).as_slice(), delivery(s).as_slice())
                            .map_err(other)?;
                    }
                }
                txn.commit().map_err(other)?;
                s += 100_000;
            }
        }
        "fjall" => {
            let db = fjall::Database::builder(dir).open().map_err(other)?;
            let ks = db
                .keyspace("deliveries", fjall::KeyspaceCreateOptions::default)
                .map_err(other)?;
            let mut s = 0;
            while s < n {
                let mut batch = db.batch();
                for s in s..(s + 10_000).min(n) {
                    batch.insert(&ks, key(s), delivery(s));
                }
                batch.commit().map_err(other)?;
                s += 10_000;
            }
            db.persist(fjall::PersistMode::SyncAll).map_err(other)?;
        }
        other => return Err(io::Error::other(format!("unknown store {other}"))),
    }
    let write_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut live: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    match name {
        "log" => {
            let mut bytes = Vec::new();
            File::open(dir.join("state.log"))?.read_to_end(&mut bytes)?;
            let mut pos = 8;
            while pos + 8 <= bytes.len() {
                let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().map_err(other)?);
                let crc = u32::from_be_bytes(bytes[pos + 4..pos + 8].try_into().map_err(other)?);
                let data = &bytes[pos + 8..pos + 8 + len as usize];
                if crc32fast::hash(data) != crc {
                    return Err(io::Error::other("bad frame"));
                }
                // kind, client id, seq: the key; the rest: the delivery.
                let k = 1 + 2 + CLIENT.len() + 8;
                live.insert(data[3..k].to_vec(), data[k..].to_vec());
                pos += 8 + len as usize;
            }
        }
        "redb" => {
            use redb::{ReadableDatabase, ReadableTable};
            let db = redb::Database::open(dir.join("state.redb")).map_err(other)?;
            let txn = db.begin_read().map_err(other)?;
            let table = txn.open_table(TABLE).map_err(other)?;
            for item in table.iter().map_err(other)? {
                let (k, v) = item.map_err(other)?;
                live.insert(k.value().to_vec(), v.value().to_vec());
            }
        }
        "fjall" => {
            let db = fjall::Database::builder(dir).open().map_err(other)?;
            let ks = db
                .keyspace("deliveries", fjall::KeyspaceCreateOptions::default)
                .map_err(other)?;
            for item in ks.iter() {
                let (k, v) = item.into_inner().map_err(other)?;
                live.insert(k.to_vec(), v.to_vec());
            }
        }
        _ => {}
    }
    let read_s = t.elapsed().as_secs_f64();
    Ok((write_s, read_s, live.len(), du(dir)))
}

/// What one durable small write costs: (append + fdatasync, append +
/// fsync, overwrite in place + fdatasync), microseconds each.
fn fsync_costs(dir: &Path, seconds: f64) -> io::Result<[Latency; 3]> {
    fs::create_dir_all(dir)?;
    let block = [7u8; 128];
    let mut out = Vec::new();
    for how in 0..3 {
        let path = dir.join(format!("fsync-{how}"));
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        if how == 2 {
            // Written and synced once: later writes change no size and
            // allocate no block.
            f.write_all(&vec![0u8; 64 << 20])?;
            f.sync_all()?;
            f.seek(SeekFrom::Start(0))?;
        }
        let until = Instant::now() + Duration::from_secs_f64(seconds);
        let mut times = Vec::new();
        while Instant::now() < until {
            let t = Instant::now();
            f.write_all(&block)?;
            if how == 1 {
                f.sync_all()?;
            } else {
                f.sync_data()?;
            }
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
        out.push(latency(times));
        drop(f);
        fs::remove_file(&path)?;
    }
    let mut out = out.into_iter();
    match (out.next(), out.next(), out.next()) {
        (Some(a), Some(b), Some(c)) => Ok([a, b, c]),
        _ => Err(io::Error::other("no figures")),
    }
}

struct Args {
    dir: PathBuf,
    seconds: f64,
    rounds: usize,
    records: u64,
    only: Vec<String>,
    read: bool,
    fsync: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        dir: PathBuf::from("target/store-compare-data"),
        seconds: 3.0,
        rounds: 2,
        records: 1_000_000,
        only: STORES.iter().map(|s| s.to_string()).collect(),
        read: true,
        fsync: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--dir" => a.dir = PathBuf::from(value()?),
            "--seconds" => a.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--rounds" => a.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--records" => a.records = value()?.parse().map_err(|e| format!("--records: {e}"))?,
            "--only" => a.only = value()?.split(',').map(str::to_owned).collect(),
            "--skip-read" => a.read = false,
            "--skip-fsync" => a.fsync = false,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args()?;
    fs::create_dir_all(&a.dir)?;
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "# store-compare, dir {}, load {}",
        a.dir.display(),
        load.trim()
    );
    println!();
    println!(
        "## Group commit: records made durable per second, mean of the rounds (group latency µs in the last round: mean / p50 / p99)"
    );
    println!();
    let sizes = [1usize, 16, 256];
    // store → size → rates over the rounds
    let mut rates: HashMap<(String, usize), Vec<f64>> = HashMap::new();
    let mut lat: HashMap<(String, usize), Latency> = HashMap::new();
    for round in 0..a.rounds {
        for &size in &sizes {
            for name in &a.only {
                let dir = a.dir.join(format!("groups-{name}"));
                let _ = fs::remove_dir_all(&dir);
                let mut store = create(name, &dir)?;
                let (rate, l) = run_groups(store.as_mut(), size, a.seconds)?;
                drop(store);
                let _ = fs::remove_dir_all(&dir);
                eprintln!(
                    "round {round} {name} group {size}: {rate:.0} records/s, {:.0} µs",
                    l.mean
                );
                rates.entry((name.clone(), size)).or_default().push(rate);
                lat.insert((name.clone(), size), l);
            }
        }
    }
    print!("| records per group |");
    for name in &a.only {
        print!(" {name} |");
    }
    println!();
    print!("|---|");
    for _ in &a.only {
        print!("---|");
    }
    println!();
    for &size in &sizes {
        print!("| {size} |");
        for name in &a.only {
            let k = (name.clone(), size);
            let r = &rates[&k];
            let mean = r.iter().sum::<f64>() / r.len() as f64;
            let l = &lat[&k];
            print!(" {mean:.0} ({:.0} / {:.0} / {:.0}) |", l.mean, l.p50, l.p99);
        }
        println!();
    }
    if a.read {
        println!();
        println!(
            "## Start: {} live deliveries written, closed, opened and read into memory (median of {} rounds, min–max)",
            a.records, a.rounds
        );
        println!();
        println!("| store | write s | open + read s | entries | MB on disk |");
        println!("|---|---|---|---|---|");
        // The prealloc variant reads as the log does.
        let names: Vec<&String> = a.only.iter().filter(|n| *n != "log-prealloc").collect();
        let mut found: HashMap<&str, Vec<(f64, f64, usize, u64)>> = HashMap::new();
        for _ in 0..a.rounds {
            for name in &names {
                let dir = a.dir.join(format!("start-{name}"));
                let figures = start_up(name, &dir, a.records)?;
                let _ = fs::remove_dir_all(&dir);
                eprintln!(
                    "start {name}: write {:.2} s, read {:.2} s",
                    figures.0, figures.1
                );
                found.entry(name.as_str()).or_default().push(figures);
            }
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            let (lo, hi) = (v[0], v[v.len() - 1]);
            (v[v.len() / 2], lo, hi)
        };
        for name in &names {
            let runs = &found[name.as_str()];
            let (w, wl, wh) = median(runs.iter().map(|r| r.0).collect());
            let (r, rl, rh) = median(runs.iter().map(|r| r.1).collect());
            let (n, bytes) = (runs[0].2, runs[0].3);
            println!(
                "| {name} | {w:.2} ({wl:.2}–{wh:.2}) | {r:.2} ({rl:.2}–{rh:.2}) | {n} | {:.0} |",
                bytes as f64 / 1e6
            );
        }
    }
    if a.fsync {
        println!();
        println!("## One durable 128-byte write, µs (mean / p50 / p99)");
        println!();
        let [append, full, inplace] = fsync_costs(&a.dir.join("fsync"), a.seconds)?;
        for (what, l) in [
            ("append + fdatasync", append),
            ("append + fsync", full),
            ("overwrite in place + fdatasync", inplace),
        ] {
            println!("| {what} | {:.0} / {:.0} / {:.0} |", l.mean, l.p50, l.p99);
        }
    }
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!();
    println!("load at the end: {}", load.trim());
    Ok(())
}
