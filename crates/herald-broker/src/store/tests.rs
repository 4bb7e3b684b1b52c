//! The store against real files: what is written is read back, damage
//! costs the damaged record alone, a file that is not a state log stops
//! the start.

use super::*;
use bytes::Bytes;
use herald_codec::{ByteStr, Properties, QoS};

fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-store-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn ack() -> PersistenceConfig {
    PersistenceConfig::default()
}

fn message(topic: &str, payload: &str, expiry: Option<u32>) -> Arc<Message> {
    message_with(topic, payload, expiry, true)
}

fn message_with(topic: &str, payload: &str, expiry: Option<u32>, retain: bool) -> Arc<Message> {
    let props = Properties {
        message_expiry_interval: expiry,
        ..Properties::default()
    };
    Arc::new(Message::new(
        ByteStr::from(topic),
        Bytes::from(payload.to_owned()),
        QoS::AtLeastOnce,
        retain,
        props,
        ByteStr::from("dev"),
        None,
    ))
}

fn open(dir: &Path, cfg: &PersistenceConfig) -> (Store, Vec<(String, String)>) {
    let (store, recovered) = Store::open(dir, cfg).unwrap().unwrap();
    let mut found: Vec<(String, String)> = recovered
        .retained
        .iter()
        .map(|m| {
            (
                m.topic.to_string(),
                String::from_utf8_lossy(&m.payload).into_owned(),
            )
        })
        .collect();
    found.sort();
    (store, found)
}

/// Waits until the writer has written `ticket` (as an acknowledgement
/// would).
async fn written(store: &Store, ticket: u64) {
    let gate = store.ack_gate().unwrap().clone();
    while gate.settled(ticket).is_none() {
        gate.changed(ticket).await;
    }
    assert_eq!(gate.settled(ticket), Some(Ok(())));
}

#[tokio::test]
async fn what_was_written_is_read_back_and_a_clear_stays_cleared() {
    let d = dir("round-trip");
    let (store, found) = open(&d, &ack());
    assert!(found.is_empty());
    store
        .record(Change::Retain(message("a", "1", None)))
        .unwrap();
    store
        .record(Change::Retain(message("b", "2", None)))
        .unwrap();
    store
        .record(Change::Retain(message("a", "3", None)))
        .unwrap();
    let last = store.record(Change::Unretain(ByteStr::from("b"))).unwrap();
    written(&store, last).await;
    // No close: as after kill -9, only what was written counts.
    std::mem::forget(store);
    let (store, found) = open(&d, &ack());
    assert_eq!(found, [("a".to_owned(), "3".to_owned())]);
    assert_eq!(store.metrics().corrupt_records.load(Ordering::Relaxed), 0);
    drop(store);
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn expired_messages_are_gone_after_a_restart() {
    let d = dir("expiry");
    let (store, _) = open(&d, &ack());
    store
        .record(Change::Retain(message("short", "x", Some(1))))
        .unwrap();
    let last = store
        .record(Change::Retain(message("long", "y", Some(3600))))
        .unwrap();
    written(&store, last).await;
    store.close();
    drop(store);
    // The broker is "down" until the short one's expiry passed.
    std::thread::sleep(Duration::from_millis(1100));
    let (_store, found) = open(&d, &ack());
    assert_eq!(found, [("long".to_owned(), "y".to_owned())]);
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn a_damaged_record_costs_itself_alone() {
    let d = dir("damage");
    let (store, _) = open(&d, &ack());
    let mut last = 0;
    for i in 0..100 {
        last = store
            .record(Change::Retain(message(
                &format!("t/{i}"),
                &format!("payload {i}"),
                None,
            )))
            .unwrap();
    }
    written(&store, last).await;
    // As after kill -9: the records in the order they were written.
    std::mem::forget(store);
    let path = Store::dir(&d).join("state.log");
    let mut data = std::fs::read(&path).unwrap();
    // Flip a byte inside the payload of record "t/50".
    let at = data.windows(10).position(|w| w == b"payload 50").unwrap();
    data[at + 3] ^= 0x20;
    // And tear the last record, as a crash mid-write would: its end
    // never written (the zeros of the space made ahead, or nothing).
    let at = data.windows(10).position(|w| w == b"payload 99").unwrap();
    data.truncate(at + 5);
    data.resize(at + 5 + 4096, 0);
    std::fs::write(&path, &data).unwrap();
    let (store, found) = open(&d, &ack());
    assert_eq!(found.len(), 98, "{found:?}");
    assert!(!found.iter().any(|(t, _)| t == "t/50" || t == "t/99"));
    assert_eq!(store.metrics().corrupt_records.load(Ordering::Relaxed), 2);
    // Rewritten without the damage: the next start finds none.
    drop(store);
    let (store, found) = open(&d, &ack());
    assert_eq!(found.len(), 98);
    assert_eq!(store.metrics().corrupt_records.load(Ordering::Relaxed), 0);
    drop(store);
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn the_space_made_ahead_is_not_damage_and_is_cut_at_start() {
    let d = dir("ahead");
    let (store, _) = open(&d, &ack());
    let mut last = 0;
    for i in 0..10 {
        last = store
            .record(Change::Retain(message(&format!("a/{i}"), "x", None)))
            .unwrap();
    }
    written(&store, last).await;
    std::mem::forget(store);
    let path = Store::dir(&d).join("state.log");
    let data = std::fs::read(&path).unwrap();
    let end = data.iter().rposition(|&b| b != 0).unwrap() + 1;
    assert!(
        data.len() as u64 >= end as u64 + super::writer::PREALLOC / 2,
        "space made ahead: {} bytes for {end} of records",
        data.len()
    );
    let (store, found) = open(&d, &ack());
    assert_eq!(found.len(), 10);
    assert_eq!(store.metrics().corrupt_records.load(Ordering::Relaxed), 0);
    assert!(
        std::fs::metadata(&path).unwrap().len() < data.len() as u64,
        "cut back at start"
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn records_across_the_reading_chunks_are_read_whole() {
    // 20 records of 1 MiB and some small ones between them: records span
    // the 8 MiB chunks the log is read in, one is larger than what is left
    // of a chunk, and a damaged one lies past the first chunk.
    let d = dir("chunks");
    let (store, _) = open(&d, &ack());
    let mut last = 0;
    for i in 0..20 {
        let big = format!("{i:02}").repeat(512 * 1024);
        store
            .record(Change::Retain(message(&format!("big/{i}"), &big, None)))
            .unwrap();
        last = store
            .record(Change::Retain(message(&format!("small/{i}"), "s", None)))
            .unwrap();
    }
    written(&store, last).await;
    std::mem::forget(store);
    let path = Store::dir(&d).join("state.log");
    let mut data = std::fs::read(&path).unwrap();
    let at = data.windows(7).rposition(|w| w == b"small/9").unwrap();
    data[at + 2] ^= 0x20;
    std::fs::write(&path, &data).unwrap();
    let (store, found) = open(&d, &ack());
    assert_eq!(found.len(), 39, "all but the damaged one");
    assert!(!found.iter().any(|(t, _)| t == "small/9"));
    for (topic, payload) in &found {
        if let Some(i) = topic.strip_prefix("big/") {
            assert_eq!(payload.len(), 1024 * 1024, "{topic}");
            assert_eq!(&payload[..2], format!("{:02}", i.parse::<u32>().unwrap()));
        }
    }
    assert_eq!(store.metrics().corrupt_records.load(Ordering::Relaxed), 1);
    drop(store);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_file_that_is_not_a_state_log_stops_the_start_naming_it() {
    let d = dir("not-a-log");
    std::fs::create_dir_all(Store::dir(&d)).unwrap();
    let path = Store::dir(&d).join("state.log");
    std::fs::write(&path, b"something else entirely").unwrap();
    let err = Store::open(&d, &ack()).err().unwrap();
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("not a Herald state log"), "{text}");
    // Untouched.
    assert_eq!(std::fs::read(&path).unwrap(), b"something else entirely");
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn periodic_writes_at_close_not_per_change() {
    let d = dir("periodic");
    let cfg = PersistenceConfig {
        durability: Durability::Periodic,
        interval: 3600,
    };
    let (store, _) = open(&d, &cfg);
    assert!(
        store.ack_gate().is_none(),
        "periodic holds no acknowledgement"
    );
    store
        .record(Change::Retain(message("a", "1", None)))
        .unwrap();
    let path = Store::dir(&d).join("state.log");
    let empty = std::fs::metadata(&path).unwrap().len();
    assert_eq!(empty, MAGIC.len() as u64, "nothing written per change");
    store.close();
    drop(store);
    let (_store, found) = open(&d, &cfg);
    assert_eq!(found, [("a".to_owned(), "1".to_owned())]);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn off_keeps_nothing() {
    let d = dir("off");
    let cfg = PersistenceConfig {
        durability: Durability::Off,
        interval: 60,
    };
    assert!(Store::open(&d, &cfg).unwrap().is_none());
    assert!(!d.exists());
}

#[tokio::test]
async fn a_retained_publish_is_acknowledged_only_once_written_under_ack() {
    for (durability, held) in [(Durability::Ack, true), (Durability::Periodic, false)] {
        let d = dir(&format!("held-{durability:?}"));
        let config = crate::config::Config {
            data_dir: d.clone().into(),
            persistence: PersistenceConfig {
                durability,
                interval: 3600,
            },
            ..crate::config::Config::default()
        };
        let broker = crate::broker::Broker::open(config).unwrap();
        let mut holds = crate::ack::AckHolds::wanted();
        broker.publish_held(message("kept", "v", None), &mut holds);
        assert_eq!(!holds.is_empty(), held, "{durability:?}");
        let mut unheld = crate::ack::AckHolds::wanted();
        broker.publish_held(message_with("plain", "v", None, false), &mut unheld);
        assert!(unheld.is_empty(), "only what is stored is held");
        broker.close_store();
        drop(broker);
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// Figures for the module docs: what an fsync costs on this disk, and what
/// group commit makes of it with 1, 10 and 100 publishers each waiting for
/// its own record. Run with
/// `cargo test -p herald-broker --release --lib store::tests::measure -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn measure() {
    use std::io::Write;
    let d = dir("measure");
    std::fs::create_dir_all(&d).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(d.join("fsync"))
        .unwrap();
    let rounds = 200u32;
    let started = Instant::now();
    for _ in 0..rounds {
        file.write_all(&[7u8; 200]).unwrap();
        file.sync_data().unwrap();
    }
    let each = started.elapsed() / rounds;
    println!(
        "one 200-byte record per fsync: {each:?} each = {:.0} records/s",
        1.0 / each.as_secs_f64()
    );
    for publishers in [1usize, 10, 100] {
        let sub = d.join(format!("store-{publishers}"));
        let (store, _) = open(&sub, &ack());
        let store = Arc::new(store);
        let done = Arc::new(AtomicU64::new(0));
        let until = Instant::now() + Duration::from_secs(3);
        let mut tasks = Vec::new();
        for p in 0..publishers {
            let (store, done) = (store.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let payload = "x".repeat(100);
                while Instant::now() < until {
                    let m = message(&format!("t/{p}"), &payload, None);
                    let ticket = store.record(Change::Retain(m)).unwrap();
                    written(&store, ticket).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let n = done.load(Ordering::Relaxed);
        let groups: u64 = store
            .metrics()
            .write_buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum();
        println!(
            "store, {publishers} publishers waiting for their own record: {:.0} records/s, {:.1} records per fsync",
            n as f64 / 3.0,
            n as f64 / groups.max(1) as f64
        );
    }
    let _ = std::fs::remove_dir_all(&d);
}
