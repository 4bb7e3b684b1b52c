//! The `herald` command: parses the command line, loads and validates the
//! configuration, sets up logging and runs the broker until SIGINT or
//! SIGTERM.
//!
//! It holds no broker logic; everything it starts lives in the library
//! crates. Exit status: 0 after a clean shutdown, 2 for a bad flag or
//! configuration, 1 when the broker fails while running.

mod config;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use herald_broker::config::Config;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// Exit status for a bad flag or configuration, as clap uses for bad flags.
const EXIT_USAGE: u8 = 2;

/// Herald: an MQTT broker (3.1, 3.1.1, 5.0) whose events become WebHook
/// requests.
#[derive(Debug, Parser)]
#[command(name = "herald", version)]
#[command(after_help = AFTER_HELP)]
struct Cli {
    /// Settings for running the broker (used when no subcommand is given).
    #[command(flatten)]
    run: RunArgs,
    /// Something other than running the broker; none yet.
    #[command(subcommand)]
    command: Option<Command>,
}

/// Text shown after the flags in `--help`.
const AFTER_HELP: &str = "\
Settings are read from, each overriding the one before: built-in defaults,
the --config file (TOML; see etc/herald.toml for every key), environment
variables HERALD_<SECTION>__<KEY> (e.g. HERALD_MQTT__MAX_INFLIGHT=64,
HERALD_LISTENER__BIND=127.0.0.1:1883,[::1]:1883, HERALD_DATA_DIR=/var/lib/herald),
then the flags above. Logging is set with RUST_LOG (default: info).";

/// Flags that override the configuration when running the broker.
#[derive(Debug, Args)]
struct RunArgs {
    /// Read settings from this TOML file; without it, defaults and
    /// environment overrides only.
    #[arg(long, value_name = "FILE", env = config::CONFIG_FILE_ENV)]
    config: Option<PathBuf>,
    /// Accept MQTT over TCP on this address (IP:PORT, e.g. 127.0.0.1:1883 or
    /// [::1]:1883); repeat for several. Replaces listener.bind.
    #[arg(long, value_name = "HOST:PORT")]
    listen: Vec<SocketAddr>,
    /// Keep state that outlives the process (WebHook spool) in this
    /// directory. Replaces data_dir.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Enable the WebHook with this EMQX 4.x emqx_web_hook.conf. Replaces
    /// webhook_conf.
    #[arg(long, value_name = "FILE")]
    webhook_conf: Option<PathBuf>,
}

/// Subcommands; reserved (`herald webhook listen` is planned).
#[derive(Debug, Subcommand)]
enum Command {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        None => run(cli.run),
        Some(command) => match command {},
    }
}

/// Logs to stderr (stdout is left to subcommands' output), filtered by
/// `RUST_LOG`, default `info`; colours only when stderr is a terminal.
fn init_logging() {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Loads the configuration, then runs the broker to completion.
fn run(args: RunArgs) -> ExitCode {
    let flags = config::Flags {
        listen: args.listen,
        data_dir: args.data_dir,
        webhook_conf: args.webhook_conf,
    };
    let loaded = match config::load(args.config.as_deref(), std::env::vars_os(), &flags) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Err(err) = loaded.validate() {
        eprintln!("error: invalid configuration: {err:#}");
        return ExitCode::from(EXIT_USAGE);
    }
    let config = loaded.config;
    tracing::info!(
        config_file = ?args.config,
        bind = ?config.listener.bind,
        data_dir = %config.data_dir.display(),
        "configuration loaded"
    );

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_broker(config)) {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "broker failed");
            ExitCode::FAILURE
        }
    }
}

/// Runs the broker until a shutdown signal, then lets it drain.
async fn run_broker(config: Config) -> anyhow::Result<()> {
    herald_broker::serve(config, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM. A signal that cannot be
/// listened for is logged and ignored, never taken as a request to stop.
async fn shutdown_signal() {
    let interrupt = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => tracing::info!(signal = "SIGINT", "shutting down"),
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGINT");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
                tracing::info!(signal = "SIGTERM", "shutting down");
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
