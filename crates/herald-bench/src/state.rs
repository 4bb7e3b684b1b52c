//! The `state` scenario: fills a broker with the state a restart has to
//! read back (issue 16's restart benchmark): persistent sessions (3.1.1
//! Clean Session 0), each with two subscriptions and messages queued for
//! it while it is offline, and retained messages. Every message is QoS 1
//! and acknowledged before the scenario ends, so a broker that stores
//! what it acknowledges has all of it on disk.
//!
//! It measures only how long filling took; the restart itself is timed by
//! the script that stops and starts the broker (`bench/persistence.sh`).

use crate::client::{self, ClientError, Conn, Target};
use crate::error::BenchError;
use bytes::Bytes;
use herald_codec::{ByteStr, Packet, Publish, QoS};
use serde::Serialize;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// What to put in the broker.
#[derive(Debug, Clone)]
pub struct StateSettings {
    /// The broker and how to connect.
    pub target: Target,
    /// Persistent sessions to create.
    pub sessions: u32,
    /// Messages queued for each (half on each of its two subscriptions).
    pub queued: u32,
    /// Retained messages, one topic each.
    pub retained: u64,
    /// Payload bytes of every message.
    pub size: usize,
    /// Clients working at once (connecting sessions, then publishing).
    pub concurrency: usize,
    /// Most unacknowledged PUBLISHes per publishing client.
    pub inflight: u16,
}

/// What filling did.
#[derive(Debug, Clone, Serialize)]
pub struct StateReport {
    /// Persistent sessions created.
    pub sessions: u32,
    /// Messages queued for them, all acknowledged.
    pub queued: u64,
    /// Retained messages published, all acknowledged.
    pub retained: u64,
    /// Seconds creating the sessions took.
    pub sessions_s: f64,
    /// Seconds publishing (queued and retained) took.
    pub publish_s: f64,
}

impl StateReport {
    /// A line for people.
    pub fn human(&self) -> String {
        format!(
            "{} persistent sessions in {:.1} s; {} queued and {} retained QoS 1 messages acknowledged in {:.1} s",
            self.sessions, self.sessions_s, self.queued, self.retained, self.publish_s
        )
    }
}

/// The topic of session `i`'s subscription `half` (0 or 1).
fn session_topic(i: u64, half: u64) -> String {
    format!("hb-state/s/{i}/{half}")
}

/// Fills the broker (see the module docs).
pub async fn run(s: &StateSettings) -> Result<StateReport, BenchError> {
    if s.concurrency == 0 || s.inflight == 0 {
        return Err(BenchError::Invalid(
            "--concurrency and --inflight must be at least 1".into(),
        ));
    }
    let started = Instant::now();
    let workers = s.concurrency.min(s.sessions.max(1) as usize);
    let mut set = JoinSet::new();
    for w in 0..workers {
        let target = s.target.clone();
        let (n, step) = (u64::from(s.sessions), workers as u64);
        set.spawn(async move {
            let mut i = w as u64;
            while i < n {
                let name = format!("hb-state-{i}");
                let mut opts = target.options(i as usize, name.clone());
                opts.persistent = true;
                let done: Result<(), ClientError> = async {
                    let (mut conn, _) = client::connect(&opts).await?;
                    let filters = [session_topic(i, 0), session_topic(i, 1)];
                    conn.subscribe(&filters, QoS::AtLeastOnce, opts.timeout)
                        .await?;
                    conn.disconnect().await;
                    Ok(())
                }
                .await;
                done.map_err(|source| BenchError::Setup { who: name, source })?;
                i += step;
            }
            Ok::<(), BenchError>(())
        });
    }
    join_all(&mut set).await?;
    let sessions_s = started.elapsed().as_secs_f64();

    // Every message to publish, as (topic, retain), split over the workers.
    let queued = u64::from(s.sessions) * u64::from(s.queued);
    let total = queued + s.retained;
    let started = Instant::now();
    let workers = (s.concurrency as u64).min(total.max(1));
    let payload = Bytes::from(vec![b'x'; s.size]);
    let mut set = JoinSet::new();
    for w in 0..workers {
        let target = s.target.clone();
        let payload = payload.clone();
        let (per_session, inflight) = (u64::from(s.queued.max(1)), s.inflight);
        set.spawn(async move {
            let name = format!("hb-state-pub-{w}");
            let opts = target.options(w as usize, name.clone());
            let setup = |source| BenchError::Setup {
                who: name.clone(),
                source,
            };
            let (mut conn, _) = client::connect(&opts).await.map_err(setup)?;
            let mut k = w;
            let mut batch = Vec::with_capacity(usize::from(inflight));
            while k < total {
                batch.clear();
                while k < total && batch.len() < usize::from(inflight) {
                    batch.push(if k < queued {
                        let (i, j) = (k / per_session, k % per_session);
                        (session_topic(i, j % 2), false)
                    } else {
                        (format!("hb-state/r/{}", k - queued), true)
                    });
                    k += workers;
                }
                publish_batch(&mut conn, &batch, &payload)
                    .await
                    .map_err(setup)?;
            }
            conn.disconnect().await;
            Ok::<(), BenchError>(())
        });
    }
    join_all(&mut set).await?;
    Ok(StateReport {
        sessions: s.sessions,
        queued,
        retained: s.retained,
        sessions_s,
        publish_s: started.elapsed().as_secs_f64(),
    })
}

/// Publishes `batch` at QoS 1 (packet ids 1..) and waits for every PUBACK.
async fn publish_batch(
    conn: &mut Conn,
    batch: &[(String, bool)],
    payload: &Bytes,
) -> Result<(), ClientError> {
    for (n, (topic, retain)) in batch.iter().enumerate() {
        conn.queue(&Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            retain: *retain,
            topic: ByteStr::from(topic.as_str()),
            packet_id: u16::try_from(n + 1).unwrap_or(u16::MAX),
            payload: payload.clone(),
            ..Publish::default()
        }))?;
    }
    conn.flush().await?;
    let mut acked = 0;
    while acked < batch.len() {
        let packet = tokio::time::timeout(Duration::from_secs(60), conn.recv())
            .await
            .map_err(|_| ClientError::Timeout("PUBACK"))??;
        match packet {
            Packet::PubAck(ack) if ack.reason.is_error() => {
                return Err(ClientError::Refused(ack.reason));
            }
            Packet::PubAck(_) => acked += 1,
            Packet::Disconnect(d) => return Err(ClientError::Disconnected(d.reason)),
            _ => {}
        }
    }
    Ok(())
}

/// Waits for every task; the first error wins.
async fn join_all(set: &mut JoinSet<Result<(), BenchError>>) -> Result<(), BenchError> {
    while let Some(joined) = set.join_next().await {
        joined.map_err(|e| BenchError::Invalid(e.to_string()))??;
    }
    Ok(())
}
