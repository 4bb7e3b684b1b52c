//! The connection scenario: open N connections as fast as the broker takes
//! them (at most `concurrency` handshakes at once) and report connections
//! per second and handshake latency; then, optionally, hold them idle for
//! a while so the broker's memory per connection can be read.
//!
//! Given the broker's process id (same machine), it reads `VmRSS` from
//! `/proc/<pid>/status` before connecting and while holding, and reports
//! the difference divided by the connections held. Held connections only
//! answer keep-alive: each costs one small task here.

use crate::client::{self, Conn, Target};
use crate::error::BenchError;
use crate::histogram::{Histogram, LatencySummary};
use crate::live::{self, Live, Show};
use crate::load::{protocol_name, run_tag};
use herald_codec::Packet;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// What the connection scenario needs.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    /// The broker and how to connect.
    pub target: Target,
    /// Connections to open.
    pub clients: u32,
    /// Handshakes in progress at once.
    pub concurrency: usize,
    /// How long to hold the connections open after they are all up.
    pub hold: Duration,
    /// The broker's process id, to read its resident memory.
    pub broker_pid: Option<u32>,
    /// Print the progress line.
    pub progress: bool,
}

/// The figures of a connection run.
#[derive(Debug, Clone, Serialize)]
pub struct ConnReport {
    /// Always `conn`.
    pub scenario: &'static str,
    /// `3.1.1` or `5`.
    pub protocol: &'static str,
    /// Connections asked for.
    pub requested: u32,
    /// Connections that completed CONNECT/CONNACK.
    pub connected: u64,
    /// Connections that failed.
    pub failed: u64,
    /// Seconds from the first connect to the last CONNACK.
    pub connect_s: f64,
    /// Connections completed per second.
    pub connect_rate: f64,
    /// TCP connect to CONNACK, per connection.
    pub handshake_us: Option<LatencySummary>,
    /// Seconds the connections were held.
    pub hold_s: f64,
    /// Held connections the broker closed.
    pub dropped_while_held: u64,
    /// Broker `VmRSS` before connecting, KiB.
    pub broker_rss_before_kib: Option<u64>,
    /// Broker `VmRSS` while holding, KiB.
    pub broker_rss_held_kib: Option<u64>,
    /// (held − before) ÷ connections, bytes.
    pub rss_per_connection_bytes: Option<f64>,
    /// First few failures.
    pub errors: Vec<String>,
}

/// `VmRSS` of process `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_rss_kib(&status)
}

/// CPU time (user + system) process `pid` has used, in seconds: fields 14
/// and 15 of `/proc/<pid>/stat`, in clock ticks of 1/100 s (Linux's
/// `USER_HZ` on every architecture it runs on here).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_seconds(&stat)
}

/// User + system ticks of a `/proc/<pid>/stat` line, as seconds. The
/// fields are counted after the command name, which may hold spaces.
fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    // After ")": state is field 3, so utime (14) is the 12th.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// The `VmRSS:` line of a `/proc/<pid>/status` text, in KiB.
fn parse_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

/// Runs the connection scenario.
pub async fn run(s: &ConnSettings, live: Arc<Live>) -> Result<ConnReport, BenchError> {
    if s.clients == 0 {
        return Err(BenchError::Invalid("--clients must be at least 1".into()));
    }
    let tag = run_tag();
    let rss_before = s.broker_pid.and_then(rss_kib);
    let progress = s
        .progress
        .then(|| live::progress(live.clone(), "conn".into(), Show::Connections));
    let limit = Arc::new(Semaphore::new(s.concurrency.max(1)));
    let mut set = JoinSet::new();
    let start = Instant::now();
    for i in 0..s.clients {
        let opts = s.target.options(i as usize, format!("hb-{tag}-c{i}"));
        let limit = limit.clone();
        let live = live.clone();
        set.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let began = Instant::now();
            let result = client::connect(&opts).await;
            if result.is_ok() {
                live.connected.fetch_add(1, Ordering::Relaxed);
            }
            (began.elapsed(), result.map(|(conn, _)| conn))
        });
    }
    let mut conns: Vec<Conn> = Vec::with_capacity(s.clients as usize);
    let mut handshake = Histogram::new();
    let mut errors = Vec::new();
    let mut failed = 0u64;
    let mut last_ok = start;
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((took, Ok(conn))) => {
                handshake.record(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
                conns.push(conn);
                last_ok = Instant::now();
            }
            Ok((_, Err(e))) => {
                failed += 1;
                if errors.len() < 10 {
                    errors.push(e.to_string());
                }
            }
            Err(e) => {
                failed += 1;
                if errors.len() < 10 {
                    errors.push(format!("connect task: {e}"));
                }
            }
        }
    }
    drop(progress);
    let connect_s = last_ok.duration_since(start).as_secs_f64();
    let connected = conns.len() as u64;

    let (stop, stopped) = watch::channel(false);
    let mut held = JoinSet::new();
    let mut rss_held = None;
    let hold_start = Instant::now();
    if !s.hold.is_zero() {
        let keep_alive = s.target.keep_alive;
        for conn in conns.drain(..) {
            held.spawn(hold(conn, keep_alive, stopped.clone()));
        }
        eprintln!(
            "conn: holding {} connections for {:.0} s",
            live::thousands(connected),
            s.hold.as_secs_f64()
        );
        // Let the broker settle before reading its memory.
        let settle = s.hold.min(Duration::from_secs(2));
        tokio::time::sleep(settle).await;
        rss_held = s.broker_pid.and_then(rss_kib);
        if let (Some(before), Some(held)) = (rss_before, rss_held) {
            eprintln!(
                "conn: broker RSS {} KiB → {} KiB: {:.0} bytes per connection",
                before,
                held,
                rss_delta_per_conn(before, held, connected).unwrap_or(0.0)
            );
        }
        tokio::time::sleep(s.hold.saturating_sub(settle)).await;
    }
    let hold_s = if s.hold.is_zero() {
        0.0
    } else {
        hold_start.elapsed().as_secs_f64()
    };
    let _ = stop.send(true);
    let mut dropped = 0u64;
    while let Some(joined) = held.join_next().await {
        if !matches!(joined, Ok(true)) {
            dropped += 1;
        }
    }
    for conn in conns {
        conn.disconnect().await;
    }
    Ok(ConnReport {
        scenario: "conn",
        protocol: protocol_name(s.target.protocol),
        requested: s.clients,
        connected,
        failed,
        connect_s,
        connect_rate: if connect_s > 0.0 {
            connected as f64 / connect_s
        } else {
            0.0
        },
        handshake_us: handshake.summary_us(),
        hold_s,
        dropped_while_held: dropped,
        broker_rss_before_kib: rss_before,
        broker_rss_held_kib: rss_held,
        rss_per_connection_bytes: match (rss_before, rss_held) {
            (Some(b), Some(h)) => rss_delta_per_conn(b, h, connected),
            _ => None,
        },
        errors,
    })
}

fn rss_delta_per_conn(before_kib: u64, held_kib: u64, conns: u64) -> Option<f64> {
    (conns > 0).then(|| (held_kib as f64 - before_kib as f64) * 1024.0 / conns as f64)
}

/// Keeps one connection open and answering keep-alive until `stop`;
/// `true` if it was still open then.
async fn hold(mut conn: Conn, keep_alive: u16, mut stop: watch::Receiver<bool>) -> bool {
    let every = if keep_alive == 0 {
        Duration::from_secs(3600)
    } else {
        Duration::from_secs(keep_alive.into()) / 2
    };
    let mut tick = tokio::time::interval_at((Instant::now() + every).into(), every);
    loop {
        tokio::select! {
            _ = stop.changed() => {
                conn.disconnect().await;
                return true;
            }
            _ = tick.tick() => {
                if conn.queue(&Packet::PingReq).is_err() || conn.try_flush().is_err() {
                    return false;
                }
            }
            ready = conn.ready(conn.pending() > 0) => {
                if ready.is_err() {
                    return false;
                }
                if conn.try_flush().is_err() {
                    return false;
                }
                match conn.try_fill() {
                    Ok(_) => loop {
                        match conn.next_packet() {
                            Ok(Some(Packet::Disconnect(_))) | Err(_) => return false,
                            Ok(Some(_)) => continue,
                            Ok(None) => break,
                        }
                    },
                    Err(_) => return false,
                }
            }
        }
    }
}

impl ConnReport {
    /// The report for a person.
    pub fn human(&self) -> String {
        use crate::live::thousands as th;
        let mut out = format!(
            "conn MQTT {}: {} of {} connected in {:.2} s ({:.0} connections/s), {} failed\n",
            self.protocol,
            th(self.connected),
            th(u64::from(self.requested)),
            self.connect_s,
            self.connect_rate,
            self.failed
        );
        if let Some(h) = &self.handshake_us {
            out += &format!(
                "  handshake p50 {:.0} µs  p90 {:.0} µs  p99 {:.0} µs  max {:.0} µs\n",
                h.p50, h.p90, h.p99, h.max
            );
        }
        if self.hold_s > 0.0 {
            out += &format!(
                "  held {:.1} s, {} dropped by the broker\n",
                self.hold_s, self.dropped_while_held
            );
        }
        if let (Some(b), Some(h), Some(per)) = (
            self.broker_rss_before_kib,
            self.broker_rss_held_kib,
            self.rss_per_connection_bytes,
        ) {
            out += &format!("  broker RSS {b} KiB → {h} KiB: {per:.0} bytes per connection\n");
        }
        for e in &self.errors {
            out += &format!("  error: {e}\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_after_the_command_name() {
        let stat = "4242 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0";
        assert_eq!(parse_cpu_seconds(stat), Some(3.25));
        assert_eq!(parse_cpu_seconds("4242 (x) S 1 2"), None);
        assert!(cpu_seconds(std::process::id()).is_some());
    }

    #[test]
    fn rss_line_is_parsed() {
        let status = "Name:\therald\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_rss_kib(status), Some(12345));
        assert_eq!(parse_rss_kib("Name: x\n"), None);
        assert_eq!(parse_rss_kib("VmRSS: lots\n"), None);
        assert_eq!(rss_delta_per_conn(1000, 2000, 1024), Some(1000.0));
        assert_eq!(rss_delta_per_conn(1000, 2000, 0), None);
    }

    #[test]
    fn own_rss_is_readable() {
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }
}
