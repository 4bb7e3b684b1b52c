//! The `herald-bench` command: parses the command line, runs one scenario
//! on a multi-thread tokio runtime, prints the report and writes it as JSON
//! when asked. All measuring lives in the library.

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use herald_bench::client::{Credentials, Target};
use herald_bench::conn::{self, ConnSettings};
use herald_bench::live::Live;
use herald_bench::load::{self, LoadSettings, Rate, Scenario};
use herald_bench::sink::{self, SinkSettings};
use herald_bench::state::{self, StateSettings};
use herald_bench::transport::{Tls, Transport};
use herald_codec::{Protocol, QoS};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Load generator for MQTT brokers, and a WebHook sink.
///
/// Message scenarios measure end to end from a header in each payload
/// (publisher id, sequence number, send time): sent, received, lost,
/// duplicated, out of order, throughput and latency percentiles.
#[derive(Debug, Parser)]
#[command(name = "herald-bench", version, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
}

/// Shown after `--help`.
const EXAMPLES: &str = "\
Examples:
  herald-bench fan-in --qos 1 -c 2 -d 10 --warmup 2 --json fanin.json
  herald-bench fan-out -c 20 --total-rate 5000
  herald-bench pairs -c 100 --proto 5 -n 10000
  herald-bench conn -c 10000 --hold 30 --broker-pid $(pidof herald) --source-ips 127.0.0.1-127.0.0.4
  herald-bench sink --bind 127.0.0.1:9000 --fail-ratio 0.2 --expect 100000

Flat-out runs measure throughput; their latency is mostly queueing. Measure
latency at a fixed --rate/--total-rate below the broker's capacity.";

#[derive(Debug, Subcommand)]
enum Command {
    /// N publishers → 1 subscriber on one topic (--clients: publishers, default 2).
    FanIn(LoadArgs),
    /// 1 publisher → N subscribers on one topic (--clients: subscribers, default 20).
    FanOut(LoadArgs),
    /// N publisher → subscriber pairs, each on its own topic (--clients: pairs, default 100).
    Pairs(LoadArgs),
    /// Connection rate, then optionally N idle connections held (--clients, default 1000).
    Conn(ConnArgs),
    /// An HTTP server that receives WebHook requests and checks ids, order and duplicates.
    Sink(SinkArgs),
    /// Fills a broker with persistent sessions (2 subscriptions each, QoS 1
    /// messages queued while offline) and retained messages, all
    /// acknowledged: the state a restart reads back.
    State(StateArgs),
}

/// The `state` scenario.
#[derive(Debug, Args)]
struct StateArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Persistent sessions (3.1.1 Clean Session 0).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    sessions: u32,
    /// QoS 1 messages queued for each session while it is offline.
    #[arg(long, default_value_t = 10, value_name = "N")]
    queued: u32,
    /// Retained QoS 1 messages, one topic each.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    retained: u64,
    /// Payload size in bytes.
    #[arg(long, short = 's', default_value_t = 64, value_name = "BYTES")]
    size: usize,
    /// Most unacknowledged PUBLISHes per publishing client.
    #[arg(long, default_value_t = 256)]
    inflight: u16,
}

/// Where the broker is and how to connect to it.
#[derive(Debug, Args)]
struct TargetArgs {
    /// Broker host name or address.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Broker port.
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// MQTT version: 3.1.1 (or 4) or 5.
    #[arg(long, default_value = "3.1.1", value_parser = parse_protocol)]
    proto: Protocol,
    /// Keep alive in seconds (0: none); idle clients send PINGREQ.
    #[arg(long, default_value_t = 60)]
    keepalive: u16,
    /// Local addresses to connect from, round robin: a list
    /// (127.0.0.1,127.0.0.2) and/or ranges (127.0.0.1-127.0.0.4).
    #[arg(long, value_name = "LIST", value_parser = parse_sources)]
    source_ips: Option<Sources>,
    /// Seconds a connection (and subscription) may take.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    connect_timeout: u64,
    /// Handshakes in progress at once.
    #[arg(long, default_value_t = 100, value_name = "N")]
    concurrency: usize,
    /// User name every connection sends (a broker that authenticates).
    #[arg(long, value_name = "NAME")]
    username: Option<String>,
    /// Password every connection sends (with --username).
    #[arg(long, value_name = "PASSWORD", requires = "username")]
    password: Option<String>,
    /// What to connect over: tcp, tls, ws (WebSocket) or wss (WebSocket
    /// over TLS).
    #[arg(long, default_value = "tcp", value_parser = ["tcp", "tls", "ws", "wss"])]
    transport: String,
    /// PEM file of the CAs to trust (tls, wss).
    #[arg(long, value_name = "FILE", required_if_eq_any = [("transport", "tls"), ("transport", "wss")])]
    cafile: Option<PathBuf>,
    /// Name the broker's certificate must carry (tls, wss); default: --host.
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    /// WebSocket path (ws, wss).
    #[arg(long, default_value = "/mqtt", value_name = "PATH")]
    ws_path: String,
    /// Write the report as JSON to this file ("-": standard output).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// No progress line.
    #[arg(long, short)]
    quiet: bool,
}

/// A message scenario.
#[derive(Debug, Args)]
struct LoadArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Publishers (fan-in), subscribers (fan-out) or pairs.
    #[arg(long, short = 'c', value_name = "N")]
    clients: Option<u32>,
    /// QoS of publications and subscriptions.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Payload size in bytes (at least 20, the header).
    #[arg(long, short = 's', default_value_t = 64, value_name = "BYTES")]
    size: usize,
    /// Messages per second per publisher (default: flat out).
    #[arg(long, value_name = "MSG/S", conflicts_with = "total_rate")]
    rate: Option<f64>,
    /// Messages per second over all publishers (default: flat out).
    #[arg(long, value_name = "MSG/S")]
    total_rate: Option<f64>,
    /// Seconds to publish after the warm-up.
    #[arg(long, short = 'd', default_value_t = 10.0, value_name = "SECS")]
    duration: f64,
    /// Messages per publisher, instead of --duration.
    #[arg(long, short = 'n', value_name = "N")]
    count: Option<u64>,
    /// Seconds at the start excluded from rates and latency.
    #[arg(long, default_value_t = 0.0, value_name = "SECS")]
    warmup: f64,
    /// Most unacknowledged QoS 1/2 messages per publisher.
    #[arg(long, default_value_t = 64)]
    inflight: u16,
    /// Seconds to wait for late messages and acknowledgements at the end
    /// (the wait ends early once everything expected has arrived).
    #[arg(long, default_value_t = 3.0, value_name = "SECS")]
    drain: f64,
    /// First topic level(s); a per-run tag follows.
    #[arg(long, default_value = "herald-bench")]
    topic_prefix: String,
    /// Also measure QoS 1/2 acknowledgement latency (PUBLISH written →
    /// PUBACK/PUBREC read); costs 512 KiB per publisher.
    #[arg(long)]
    ack_latency: bool,
    /// The broker's process id, to report the CPU it used while messages
    /// flowed, next to this program's own.
    #[arg(long, value_name = "PID")]
    broker_pid: Option<u32>,
    /// Subscribers keep their session (3.1.1 Clean Session 0, 5.0
    /// Session Expiry 3600 s): a broker with persistence stores what it
    /// queues for them.
    #[arg(long)]
    persistent: bool,
    /// Publish with the RETAIN flag: every message replaces its topic's
    /// retained message (and is stored by a broker with persistence).
    #[arg(long)]
    retain: bool,
}

/// The connection scenario.
#[derive(Debug, Args)]
struct ConnArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Connections to open.
    #[arg(long, short = 'c', default_value_t = 1000, value_name = "N")]
    clients: u32,
    /// Seconds to hold the connections open once all are up (0: close at once).
    #[arg(long, default_value_t = 0.0, value_name = "SECS")]
    hold: f64,
    /// The broker's process id, to report its RSS per held connection.
    #[arg(long, value_name = "PID")]
    broker_pid: Option<u32>,
}

/// The WebHook sink.
#[derive(Debug, Args)]
struct SinkArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// HTTP status to answer with.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(100..=599))]
    status: u16,
    /// Fraction of requests (0 to 1) answered 500 instead, at random.
    #[arg(long, default_value_t = 0.0, value_name = "RATIO")]
    fail_ratio: f64,
    /// Milliseconds to wait before answering.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    delay: u64,
    /// Accept requests but never answer them (a hung web service).
    #[arg(long, conflicts_with_all = ["delay", "fail_ratio"])]
    hang: bool,
    /// Header carrying the event ids.
    #[arg(long, default_value = "x-herald-event-id")]
    event_id_header: String,
    /// Stop after this many seconds (default: at Ctrl-C or --expect).
    #[arg(long, short = 'd', value_name = "SECS")]
    duration: Option<f64>,
    /// Stop once this many distinct events have arrived.
    #[arg(long, value_name = "N")]
    expect: Option<u64>,
    /// Write the report as JSON to this file ("-": standard output).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// No progress line.
    #[arg(long, short)]
    quiet: bool,
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    match s {
        "3.1.1" | "311" | "4" => Ok(Protocol::V3_1_1),
        "5" | "5.0" => Ok(Protocol::V5),
        "3.1" | "31" | "3" => Ok(Protocol::V3_1),
        other => Err(format!("unknown MQTT version {other:?}: use 3.1.1 or 5")),
    }
}

/// Source addresses given on the command line (one value, many addresses).
#[derive(Debug, Clone)]
struct Sources(Vec<IpAddr>);

fn parse_sources(s: &str) -> Result<Sources, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let a: Ipv4Addr = a.trim().parse().map_err(|e| format!("{a}: {e}"))?;
                let b: Ipv4Addr = b.trim().parse().map_err(|e| format!("{b}: {e}"))?;
                let (a, b) = (u32::from(a), u32::from(b));
                if b < a || b - a > 65_535 {
                    return Err(format!("bad address range {part}"));
                }
                out.extend((a..=b).map(|ip| IpAddr::V4(Ipv4Addr::from(ip))));
            }
            None => out.push(part.parse().map_err(|e| format!("{part}: {e}"))?),
        }
    }
    Ok(Sources(out))
}

fn seconds(flag: &str, secs: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|_| anyhow!("{flag} {secs}: not a duration"))
}

async fn target(args: &TargetArgs) -> Result<Target> {
    let addr = tokio::net::lookup_host((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("resolving {}", args.host))?
        .next()
        .ok_or_else(|| anyhow!("{} has no address", args.host))?;
    Ok(Target {
        addr,
        protocol: args.proto,
        keep_alive: args.keepalive,
        sources: args
            .source_ips
            .as_ref()
            .map(|s| s.0.clone())
            .unwrap_or_default(),
        timeout: Duration::from_secs(args.connect_timeout.max(1)),
        credentials: args.username.as_ref().map(|username| Credentials {
            username: username.clone(),
            password: args.password.clone(),
        }),
        transport: transport(args)?,
    })
}

fn transport(args: &TargetArgs) -> Result<Transport> {
    let tls = || -> Result<Tls> {
        let cafile = args
            .cafile
            .as_deref()
            .ok_or_else(|| anyhow!("--transport {} needs --cafile", args.transport))?;
        let name = args.server_name.as_deref().unwrap_or(&args.host);
        Tls::new(cafile, name).map_err(|e| anyhow!("--cafile {e}"))
    };
    Ok(match args.transport.as_str() {
        "tls" => Transport::Tls(tls()?),
        "ws" => Transport::Ws(args.ws_path.clone()),
        "wss" => Transport::Wss(tls()?, args.ws_path.clone()),
        _ => Transport::Tcp,
    })
}

/// Prints the human report (to stderr when the JSON goes to stdout) and
/// writes the JSON if asked.
fn output(human: &str, path: Option<&Path>, report: &impl Serialize) -> Result<()> {
    let json_to_stdout = path == Some(Path::new("-"));
    if json_to_stdout {
        eprint!("{human}");
    } else {
        print!("{human}");
    }
    let Some(path) = path else { return Ok(()) };
    let text = serde_json::to_string_pretty(report)?;
    if json_to_stdout {
        println!("{text}");
    } else {
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

async fn run_load(scenario: Scenario, a: LoadArgs) -> Result<()> {
    let default_clients = match scenario {
        Scenario::FanIn => 2,
        Scenario::FanOut => 20,
        Scenario::Pairs => 100,
    };
    let qos = match a.qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        2 => QoS::ExactlyOnce,
        q => bail!("--qos {q}: must be 0, 1 or 2"),
    };
    let rate = match (a.rate, a.total_rate) {
        (Some(r), _) => Rate::PerPublisher(r),
        (None, Some(r)) => Rate::Total(r),
        (None, None) => Rate::FlatOut,
    };
    let settings = LoadSettings {
        target: target(&a.target).await?,
        scenario,
        clients: a.clients.unwrap_or(default_clients),
        qos,
        size: a.size,
        rate,
        duration: seconds("--duration", a.duration)?,
        count: a.count,
        warmup: seconds("--warmup", a.warmup)?,
        inflight: a.inflight,
        drain: seconds("--drain", a.drain)?,
        topic_prefix: a.topic_prefix,
        persistent: a.persistent,
        retain: a.retain,
        connect_concurrency: a.target.concurrency,
        progress: !a.target.quiet,
        ack_latency: a.ack_latency,
        broker_pid: a.broker_pid,
    };
    let live = Live::new();
    let on_interrupt = live.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: stopping publishers");
            on_interrupt.abort();
        }
    });
    let report = load::run(&settings, live).await?;
    output(&report.human(), a.target.json.as_deref(), &report)
}

async fn run_conn(a: ConnArgs) -> Result<()> {
    let settings = ConnSettings {
        target: target(&a.target).await?,
        clients: a.clients,
        concurrency: a.target.concurrency,
        hold: seconds("--hold", a.hold)?,
        broker_pid: a.broker_pid,
        progress: !a.target.quiet,
    };
    let report = conn::run(&settings, Live::new()).await?;
    output(&report.human(), a.target.json.as_deref(), &report)
}

async fn run_state(a: StateArgs) -> Result<()> {
    let settings = StateSettings {
        target: target(&a.target).await?,
        sessions: a.sessions,
        queued: a.queued,
        retained: a.retained,
        size: a.size,
        concurrency: a.target.concurrency,
        inflight: a.inflight,
    };
    let report = state::run(&settings).await?;
    output(&report.human(), a.target.json.as_deref(), &report)
}

async fn run_sink(a: SinkArgs) -> Result<()> {
    let settings = SinkSettings {
        bind: a.bind,
        status: a.status,
        fail_ratio: a.fail_ratio,
        delay: Duration::from_millis(a.delay),
        hang: a.hang,
        event_id_header: a.event_id_header,
        duration: a.duration.map(|d| seconds("--duration", d)).transpose()?,
        expect: a.expect,
        progress: !a.quiet,
    };
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let report = sink::run(&settings, stop).await?;
    output(&report.human(), a.json.as_deref(), &report)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    herald_bench::payload::clock_start();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = cli.threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = builder.build().context("starting the tokio runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::FanIn(a) => run_load(Scenario::FanIn, a).await,
            Command::FanOut(a) => run_load(Scenario::FanOut, a).await,
            Command::Pairs(a) => run_load(Scenario::Pairs, a).await,
            Command::Conn(a) => run_conn(a).await,
            Command::Sink(a) => run_sink(a).await,
            Command::State(a) => run_state(a).await,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_option_parses() {
        let cli = Cli::try_parse_from([
            "herald-bench",
            "conn",
            "--source-ips",
            "127.0.0.1-127.0.0.3,127.0.0.9",
            "--proto",
            "5",
            "--hold",
            "2",
            "--broker-pid",
            "1",
            "--username",
            "u1",
            "--password",
            "p w",
        ])
        .expect("parses");
        let Command::Conn(a) = cli.command else {
            panic!("conn expected");
        };
        let sources = a.target.source_ips.expect("given").0;
        assert_eq!(sources.len(), 4);
        assert_eq!(sources[3], IpAddr::from([127, 0, 0, 9]));
        assert_eq!(a.target.proto, Protocol::V5);
        assert_eq!(a.target.username.as_deref(), Some("u1"));
        assert_eq!(a.target.password.as_deref(), Some("p w"));
        assert!(
            Cli::try_parse_from(["herald-bench", "conn", "--password", "x"]).is_err(),
            "a password needs a user name"
        );
        for args in [
            &[
                "herald-bench",
                "fan-in",
                "--qos",
                "2",
                "--rate",
                "10",
                "-n",
                "5",
            ][..],
            &[
                "herald-bench",
                "fan-out",
                "--total-rate",
                "1000",
                "--warmup",
                "1",
            ][..],
            &[
                "herald-bench",
                "pairs",
                "-c",
                "3",
                "--json",
                "-",
                "--proto",
                "3.1.1",
            ][..],
            &[
                "herald-bench",
                "sink",
                "--fail-ratio",
                "0.2",
                "--delay",
                "5",
                "--status",
                "503",
            ][..],
        ] {
            Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        assert!(Cli::try_parse_from(["herald-bench", "fan-in", "--qos", "3"]).is_err());
        assert!(
            Cli::try_parse_from(["herald-bench", "fan-in", "--rate", "1", "--total-rate", "2"])
                .is_err()
        );
        assert!(Cli::try_parse_from(["herald-bench", "fan-in", "--proto", "6"]).is_err());
        assert!(Cli::try_parse_from(["herald-bench", "sink", "--hang"]).is_ok());
        assert!(Cli::try_parse_from(["herald-bench", "sink", "--hang", "--delay", "5"]).is_err());
        assert!(parse_sources("127.0.0.5-127.0.0.1").is_err());
    }
}
