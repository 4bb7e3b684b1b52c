//! The `herald` command: parses the command line, loads and validates the
//! configuration (the broker's and the WebHook's), sets up logging and runs
//! the broker, the WebHook and `/metrics` until SIGINT or SIGTERM.
//! `herald webhook listen` runs a local receiver that prints what the
//! WebHook sends.
//!
//! It holds no broker or WebHook logic; everything it starts lives in the
//! library crates. Exit status: 0 after a clean shutdown, 2 for a bad flag
//! or configuration, 1 when something fails to start or fails while
//! running.

mod fdlimit;
mod health;
mod listen_addr;
mod metrics;
#[cfg(unix)]
mod notify;

/// mimalloc: the broker allocates on one thread and frees on another all
/// the time (messages, WebHook bodies); glibc's allocator spends a lot on
/// that, mimalloc little.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use herald::config::{self, HeraldConfig, LogConfig};
use herald::webhook;
use herald_broker::ServeError;
use herald_broker::access::Anonymous;
use herald_broker::broker::Broker;
use herald_webhook::conf::DEFAULT_EVENT_ID_HEADER;
use herald_webhook::dead_letter;
use herald_webhook::listen::Reply;
use herald_webhook::service::StartError;
use herald_webhook::{WebHook, WebhookConfig};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// Exit status for a bad flag or configuration, as clap uses for bad flags.
const EXIT_USAGE: u8 = 2;

/// How long the WebHook may take at shutdown to finish requests in flight;
/// what is not delivered by then stays in the spool for the next start.
const WEBHOOK_SHUTDOWN: Duration = Duration::from_secs(5);

/// Where `herald webhook listen` listens by default: the URL of the
/// shipped `etc/plugins/emqx_web_hook.conf`.
const LISTEN_DEFAULT: &str = "127.0.0.1:9000";

/// Herald: an MQTT broker (3.1, 3.1.1, 5.0) whose events become WebHook
/// requests.
#[derive(Debug, Parser)]
#[command(name = "herald", version)]
#[command(after_help = AFTER_HELP, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Settings for running the broker (used when no subcommand is given).
    #[command(flatten)]
    run: RunArgs,
    /// Something other than running the broker.
    #[command(subcommand)]
    command: Option<Command>,
}

/// Text shown after the flags in `--help`.
const AFTER_HELP: &str = "\
Settings are read from, each overriding the one before: built-in defaults,
the --config file (TOML; see etc/herald.toml for every key), environment
variables HERALD_<SECTION>__<KEY> (e.g. HERALD_MQTT__MAX_INFLIGHT=64,
HERALD_LISTENER__BIND=127.0.0.1:1883,[::1]:1883, HERALD_DATA_DIR=/var/lib/herald),
then the flags above. Logging is set with RUST_LOG (default: info).

The WebHook reads an EMQX 4.x emqx_web_hook.conf (--webhook-conf) and the
[webhook] table of the config file, same keys. Prometheus metrics are served
at http://127.0.0.1:9464/metrics unless [metrics] bind says otherwise.
`herald webhook listen` prints what the WebHook sends.";

/// Flags that override the configuration when running the broker.
#[derive(Debug, Args)]
struct RunArgs {
    /// Read settings from this TOML file; without it, defaults and
    /// environment overrides only.
    #[arg(long, value_name = "FILE", env = config::CONFIG_FILE_ENV)]
    config: Option<PathBuf>,
    /// Accept MQTT over TCP on this address: IP:PORT (127.0.0.1:1883,
    /// [::1]:1883), HOST:PORT (every address of the name), or :PORT / PORT
    /// (every interface, IPv6 and IPv4); repeat for several. Replaces
    /// listener.bind.
    #[arg(long, value_name = "HOST:PORT", value_parser = listen_addr::parse)]
    listen: Vec<listen_addr::ListenAddrs>,
    /// Accept MQTT over TLS on this address (same forms as --listen, e.g.
    /// :8883); repeat for several. Replaces listener.tls.bind; the
    /// certificate and key come from [listener.tls] certfile and keyfile.
    #[arg(long, value_name = "HOST:PORT", value_parser = listen_addr::parse)]
    listen_tls: Vec<listen_addr::ListenAddrs>,
    /// Accept MQTT over WebSocket on this address (same forms as --listen,
    /// e.g. :8083; path listener.ws.path); repeat for several. Replaces
    /// listener.ws.bind.
    #[arg(long, value_name = "HOST:PORT", value_parser = listen_addr::parse)]
    listen_ws: Vec<listen_addr::ListenAddrs>,
    /// Accept MQTT over secure WebSocket on this address (same forms as
    /// --listen, e.g. :8084); repeat for several. Replaces listener.wss.bind.
    #[arg(long, value_name = "HOST:PORT", value_parser = listen_addr::parse)]
    listen_wss: Vec<listen_addr::ListenAddrs>,
    /// Keep state that outlives the process (WebHook spool) in this
    /// directory. Replaces data_dir.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Enable the WebHook with this EMQX 4.x emqx_web_hook.conf. Replaces
    /// webhook_conf.
    #[arg(long, value_name = "FILE")]
    webhook_conf: Option<PathBuf>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// WebHook tools.
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// Add or replace a user in a password file (mosquitto_passwd's
    /// format, read by auth.password_file): `herald passwd [-c] [-b] FILE
    /// USER [PASSWORD]`.
    Passwd {
        /// Create a new file (overwriting an existing one).
        #[arg(short = 'c')]
        create: bool,
        /// Take the password from the command line instead of prompting.
        #[arg(short = 'b')]
        batch: bool,
        /// The password file.
        file: PathBuf,
        /// The user name.
        user: String,
        /// The password (with -b only).
        password: Option<String>,
    },
}

/// `herald webhook ...`.
#[derive(Debug, Subcommand)]
enum WebhookCommand {
    /// Receive WebHook requests and print each one: method, path, headers
    /// and the events in its body. Point web.hook.url at it to see what the
    /// WebHook sends, or answer with an error status to rehearse failures.
    Listen {
        /// Address to listen on (IP:PORT).
        #[arg(long, value_name = "HOST:PORT", default_value = LISTEN_DEFAULT)]
        bind: SocketAddr,
        /// Answer every request with this HTTP status (e.g. 503: the
        /// WebHook retries; 400: it gives up on the event).
        #[arg(long, value_name = "CODE", default_value_t = 200,
              value_parser = clap::value_parser!(u16).range(200..=599))]
        status: u16,
        /// Print the events only, without the request line and headers.
        #[arg(long)]
        quiet: bool,
    },
    /// Print the events the WebHook gave up on (answered with a status
    /// that is not retried, or older than web.hook.max_event_age), one JSON
    /// object per line, from <data_dir>/webhook-dead-letters.jsonl.
    DeadLetters {
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Send the dead letters again, in order, to web.hook.url (with their
    /// original event ids); those answered 2xx are removed from the file,
    /// the others stay. Exit status 0 when none is left, 1 otherwise.
    Replay {
        #[command(flatten)]
        source: SourceArgs,
    },
}

/// Where `herald webhook dead-letters` and `replay` find the data directory
/// and the WebHook configuration: as when running the broker.
#[derive(Debug, Args)]
struct SourceArgs {
    /// Read settings from this TOML file.
    #[arg(long, value_name = "FILE", env = config::CONFIG_FILE_ENV)]
    config: Option<PathBuf>,
    /// The data directory. Replaces data_dir.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The EMQX 4.x emqx_web_hook.conf. Replaces webhook_conf.
    #[arg(long, value_name = "FILE")]
    webhook_conf: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        None => run(cli.run),
        Some(Command::Webhook {
            command:
                WebhookCommand::Listen {
                    bind,
                    status,
                    quiet,
                },
        }) => listen(bind, status, quiet),
        Some(Command::Webhook {
            command: WebhookCommand::DeadLetters { source },
        }) => dead_letters(&source),
        Some(Command::Webhook {
            command: WebhookCommand::Replay { source },
        }) => replay(&source),
        Some(Command::Passwd {
            create,
            batch,
            file,
            user,
            password,
        }) => passwd(create, batch, &file, &user, password),
    }
}

/// The configuration `source` names, or the exit status for why not.
fn load_source(source: &SourceArgs) -> Result<config::Loaded, ExitCode> {
    let flags = config::Flags {
        data_dir: source.data_dir.clone(),
        webhook_conf: source.webhook_conf.clone(),
        ..config::Flags::default()
    };
    config::load(source.config.as_deref(), std::env::vars_os(), &flags).map_err(|err| {
        eprintln!("error: {err:#}");
        ExitCode::from(EXIT_USAGE)
    })
}

/// `herald webhook dead-letters`.
fn dead_letters(source: &SourceArgs) -> ExitCode {
    let loaded = match load_source(source) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let file = dead_letter::path(&loaded.config.broker.data_dir);
    match dead_letter::list(&file) {
        Ok(lines) => {
            let mut out = std::io::stdout().lock();
            for line in &lines {
                if writeln!(out, "{line}").is_err() {
                    return ExitCode::SUCCESS;
                }
            }
            eprintln!("{} dead letters in {}", lines.len(), file.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {}: {err}", file.display());
            ExitCode::FAILURE
        }
    }
}

/// `herald webhook replay`.
fn replay(source: &SourceArgs) -> ExitCode {
    let loaded = match load_source(source) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let conf = match webhook::load(&loaded) {
        Ok(Some(conf)) if conf.is_enabled() => conf,
        Ok(_) => {
            eprintln!("error: web.hook.url is not set: nowhere to send the dead letters");
            return ExitCode::from(EXIT_USAGE);
        }
        Err(err) => {
            eprintln!("error: WebHook configuration: {err}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let file = dead_letter::path(&loaded.config.broker.data_dir);
    let runtime = match tool_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(dead_letter::replay(&conf, &file)) {
        Ok(done) => {
            eprintln!(
                "{} delivered and removed, {} kept in {}",
                done.delivered,
                done.kept,
                file.display()
            );
            if done.kept == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `herald passwd [-c] [-b] FILE USER [PASSWORD]`, like mosquitto_passwd.
fn passwd(
    create: bool,
    batch: bool,
    file: &std::path::Path,
    user: &str,
    password: Option<String>,
) -> ExitCode {
    let password = match (batch, password) {
        (true, Some(p)) => p,
        (true, None) => {
            eprintln!("error: -b needs the password as the last argument");
            return ExitCode::from(EXIT_USAGE);
        }
        (false, Some(_)) => {
            eprintln!("error: a password on the command line needs -b");
            return ExitCode::from(EXIT_USAGE);
        }
        (false, None) => match prompt_password() {
            Ok(p) => p,
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::FAILURE;
            }
        },
    };
    match herald_auth::passwd::set_password(file, create, user, password.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Reads a password twice from the terminal without echo (`stty -echo`
/// around the read: the workspace allows no unsafe code for termios);
/// from a pipe, one line.
fn prompt_password() -> Result<String, String> {
    use std::io::BufRead;
    let tty = std::io::stdin().is_terminal();
    let stty = |arg: &str| {
        let _ = std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status();
    };
    let read = |prompt: &str| -> Result<String, String> {
        if tty {
            eprint!("{prompt}");
            stty("-echo");
        }
        let mut line = String::new();
        let got = std::io::stdin().lock().read_line(&mut line);
        if tty {
            stty("echo");
            eprintln!();
        }
        got.map_err(|e| format!("cannot read the password: {e}"))?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    };
    let first = read("Password: ")?;
    if tty && read("Reenter password: ")? != first {
        return Err("passwords do not match".into());
    }
    if first.is_empty() {
        return Err("empty password".into());
    }
    Ok(first)
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
        listen: listen_addr::flatten(args.listen),
        listen_tls: listen_addr::flatten(args.listen_tls),
        listen_ws: listen_addr::flatten(args.listen_ws),
        listen_wss: listen_addr::flatten(args.listen_wss),
        data_dir: args.data_dir,
        webhook_conf: args.webhook_conf,
    };
    let source = webhook::Source {
        file: args.config.clone(),
        flags: flags.clone(),
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
    let webhook = match webhook::load(&loaded) {
        Ok(webhook) => webhook,
        Err(err) => {
            eprintln!("error: WebHook configuration: {err}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let HeraldConfig {
        broker: mut config,
        log,
        ..
    } = loaded.config;
    fdlimit::raise(&mut config.listener.max_connections);
    log_anonymous_policy(&config);
    tracing::info!(
        config_file = %args
            .config
            .as_deref()
            .map_or_else(|| "none (defaults)".to_owned(), |p| p.display().to_string()),
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
    match runtime.block_on(run_broker(config, log, webhook, source)) {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(Failure::Config(err)) => {
            eprintln!("error: {err:#}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Run(err)) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// One start-up line when the secure default is in force (no
/// authentication source and `auth.allow_anonymous` unset), naming the key
/// that changes it; one when the old `authz.allow_anonymous` is used.
fn log_anonymous_policy(config: &herald_broker::config::Config) {
    if config.auth.allow_anonymous.is_none() && config.authz.allow_anonymous.is_some() {
        tracing::warn!(
            "authz.allow_anonymous is the old name of auth.allow_anonymous; please move it"
        );
    }
    if config.anonymous() == Anonymous::LoopbackOnly {
        tracing::warn!(
            "no authentication source configured and auth.allow_anonymous not set: \
             clients are accepted from loopback addresses only; set auth.allow_anonymous = true \
             (or configure auth.password_file / auth.http_conf) to accept others"
        );
    }
}

/// Why running stopped early.
enum Failure {
    /// A setting turned out unusable while starting (certificate files,
    /// header names): exit status 2.
    Config(anyhow::Error),
    /// Anything else (a port in use, a spool that cannot be opened): 1.
    Run(anyhow::Error),
}

/// Starts the WebHook (attached before the first MQTT connection is
/// accepted), the broker and `/metrics`; runs until a shutdown signal; then
/// stops the broker first, so its disconnect events still reach the
/// WebHook, then the WebHook, which gets [`WEBHOOK_SHUTDOWN`] to finish
/// requests in flight and leaves the rest in its spool.
async fn run_broker(
    config: herald_broker::config::Config,
    log: LogConfig,
    webhook: Option<WebhookConfig>,
    source: webhook::Source,
) -> Result<(), Failure> {
    let stop = shutdown_signal();
    if let Err(err) = std::fs::create_dir_all(&config.data_dir) {
        // Not fatal while nothing needs it; /ready says so until it works.
        tracing::warn!(
            data_dir = %config.data_dir.display(),
            error = %err,
            "cannot create the data directory"
        );
    }
    let broker = match Broker::open(config) {
        Ok(broker) => broker,
        Err(err) => {
            return Err(Failure::Run(
                anyhow::Error::new(err).context("cannot read the broker's stored state"),
            ));
        }
    };
    broker.set_log_connections(log.connections);
    let auth = load_access(&broker)?;
    let webhook = match webhook {
        Some(conf) if conf.is_enabled() => {
            let started = WebHook::start(&conf, &broker.config.data_dir, &broker);
            Some(Arc::new(started.map_err(|err| match err {
                StartError::Spool(_) => {
                    Failure::Run(anyhow::Error::new(err).context("cannot start the WebHook"))
                }
                _ => Failure::Config(anyhow::Error::new(err).context("WebHook configuration")),
            })?))
        }
        Some(conf) => {
            conf.log_warnings();
            tracing::info!("WebHook off: web.hook.url is not set");
            None
        }
        None => None,
    };
    let mut checks: Vec<(&'static str, health::Check)> = Vec::new();
    if broker.store().is_some() {
        let owner = broker.clone();
        checks.push((
            "broker state",
            Arc::new(move || match owner.store() {
                Some(store) if !store.healthy() => {
                    Err("the state log cannot be written (see the log)".to_owned())
                }
                _ => Ok(()),
            }),
        ));
    }
    if let Some(webhook) = &webhook {
        let webhook = webhook.clone();
        checks.push(("WebHook", Arc::new(move || webhook.health())));
    }
    let readiness = Arc::new(health::Readiness::new(
        broker.config.data_dir.to_path_buf(),
        checks,
    ));
    let metrics = match broker.config.metrics.bind {
        Some(addr) => {
            let webhook_metrics = webhook.clone();
            let auth_metrics = auth.as_ref().map(|a| a.metrics());
            let extra: Option<metrics::Extra> =
                (webhook_metrics.is_some() || auth_metrics.is_some()).then(|| {
                    Arc::new(move || {
                        let mut text = webhook_metrics
                            .as_ref()
                            .map(|w| w.render_metrics())
                            .unwrap_or_default();
                        if let Some(m) = &auth_metrics {
                            text.push_str(&m.render());
                        }
                        text
                    }) as metrics::Extra
                });
            match metrics::serve(addr, broker.clone(), extra, readiness.clone()).await {
                Ok(server) => {
                    tracing::info!(
                        addr = %server.addr,
                        "serving Prometheus metrics at /metrics, /health and /ready"
                    );
                    Some(server)
                }
                Err(err) => {
                    if let Some(webhook) = webhook {
                        webhook.shutdown(WEBHOOK_SHUTDOWN).await;
                    }
                    return Err(Failure::Run(anyhow::anyhow!(
                        "cannot serve metrics on {addr}: {err}{}",
                        bind_hint(&err, METRICS_HINT)
                    )));
                }
            }
        }
        None => None,
    };
    let server_broker = broker.clone();
    let server = match herald_broker::start_on(broker).await {
        Ok(server) => server,
        Err(err) => {
            if let Some(webhook) = webhook {
                webhook.shutdown(WEBHOOK_SHUTDOWN).await;
            }
            let hint = match &err {
                ServeError::Bind { source, .. } => bind_hint(source, LISTEN_HINT),
                // A certificate, key or CA file that cannot be used is a
                // configuration error like any other.
                ServeError::Tls(_) => return Err(Failure::Config(err.into())),
                ServeError::Config(_) => String::new(),
            };
            return Err(Failure::Run(anyhow::anyhow!("{err}{hint}")));
        }
    };
    readiness.set_listening();
    #[cfg(unix)]
    let hangups = tokio::spawn(on_hangup(
        server.certificates(),
        webhook.clone().map(|w| (w, source)),
        auth,
    ));
    #[cfg(unix)]
    notify::ready();
    stop.await;
    #[cfg(unix)]
    {
        notify::stopping();
        hangups.abort();
    }
    server.shutdown().await;
    if let Some(webhook) = webhook {
        webhook.shutdown(WEBHOOK_SHUTDOWN).await;
    }
    // Waits for the last group (and, under "periodic", a last snapshot).
    let store_owner = server_broker.clone();
    let _ = tokio::task::spawn_blocking(move || store_owner.close_store()).await;
    drop(metrics);
    Ok(())
}

/// Where the MQTT listen addresses are set, for a failure to bind one.
const LISTEN_HINT: &str = "--listen, [listener] bind or HERALD_LISTENER__BIND";

/// Where the metrics address is set, for a failure to bind it.
const METRICS_HINT: &str =
    "[metrics] bind or HERALD_METRICS__BIND (an empty value turns that listener off)";

/// What to do after a failure to bind an address, which `setting` moves.
fn bind_hint(err: &std::io::Error, setting: &str) -> String {
    if err.kind() == std::io::ErrorKind::AddrInUse {
        format!(
            "; another program (another broker?) is using that port: stop it, or choose another address with {setting}"
        )
    } else {
        format!("; choose another address with {setting}")
    }
}

/// The async runtime of a `herald webhook` tool, or the exit status for
/// why there is none.
fn tool_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            eprintln!("error: cannot start the async runtime: {err}");
            ExitCode::FAILURE
        })
}

/// `herald webhook listen`: prints every request received on `bind` until
/// SIGINT or SIGTERM. Never reads Herald's configuration.
fn listen(bind: SocketAddr, status: u16, quiet: bool) -> ExitCode {
    let runtime = match tool_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let stop = shutdown_signal();
        let (receiver, mut requests) = match herald_webhook::listen::channel(
            bind,
            Some(Arc::new(move |_: &_| Reply::Show(status))),
        )
        .await
        {
            Ok(r) => r,
            Err(err) => {
                eprintln!("error: cannot listen on {bind}: {err}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(
            addr = %receiver.addr,
            "waiting for WebHook requests on http://{}/ (Ctrl-C stops)",
            receiver.addr
        );
        tokio::pin!(stop);
        loop {
            let received = tokio::select! {
                r = requests.recv() => r,
                () = &mut stop => return ExitCode::SUCCESS,
            };
            let Some(received) = received else {
                return ExitCode::SUCCESS;
            };
            let body = herald_webhook::listen::pretty(&received, DEFAULT_EVENT_ID_HEADER);
            let text = if quiet {
                body
            } else {
                format!(
                    "{}\n\n{body}",
                    herald_webhook::listen::head(&received, status)
                )
            };
            let mut out = std::io::stdout().lock();
            // A closed stdout (`| head`) ends the command quietly.
            if writeln!(out, "{text}\n")
                .and_then(|()| out.flush())
                .is_err()
            {
                return ExitCode::SUCCESS;
            }
        }
    })
}

/// Starts listening for SIGINT (Ctrl-C) and SIGTERM now, so a signal that
/// arrives while things are still starting is not fatal, and returns a
/// future that resolves on the first of them. Call it inside the runtime
/// before starting anything. A signal that cannot be listened for is
/// logged and ignored, never taken as a request to stop.
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    let listen = |kind: SignalKind, name: &'static str| match signal(kind) {
        Ok(stream) => Some(stream),
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for {name}");
            None
        }
    };
    let interrupt = listen(SignalKind::interrupt(), "SIGINT");
    let terminate = listen(SignalKind::terminate(), "SIGTERM");
    async fn first(stream: Option<Signal>) {
        match stream {
            Some(mut stream) => {
                if stream.recv().await.is_none() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
    async move {
        tokio::select! {
            () = first(interrupt) => tracing::info!(signal = "SIGINT", "shutting down"),
            () = first(terminate) => tracing::info!(signal = "SIGTERM", "shutting down"),
        }
    }
}

/// SIGHUP (`systemctl reload`) must never stop the broker, as its default
/// action would. What reloads: the TLS listeners' certificate, key and CA
/// files (new connections get them; established ones keep theirs; files
/// that fail are logged and the old ones stay); the WebHook configuration,
/// read again from the same files (a configuration that cannot be used is
/// logged and the running one stays). The rest of the configuration stays
/// as it was.
#[cfg(unix)]
async fn on_hangup(
    certificates: herald_broker::listener::Certificates,
    webhook: Option<(Arc<WebHook>, webhook::Source)>,
    auth: Option<Arc<herald_auth::Auth>>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(stream) => stream,
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGHUP");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        tracing::info!(
            signal = "SIGHUP",
            "SIGHUP received: reloading the TLS certificates, the WebHook configuration and the access-control files; the rest of the configuration (broker) is not reloaded yet and stays as it was"
        );
        // Failures are logged where they happen; the old files stay.
        let _ = certificates.reload();
        if let Some((webhook, source)) = &webhook
            && let Err(err) = webhook::reload(webhook, source)
        {
            tracing::error!(error = %err, "WebHook configuration not reloaded; the running one stays");
        }
        if let Some(auth) = &auth {
            reload_access(auth);
        }
    }
}

/// Loads the access-control files `[auth]` and `[acl]` name, if any, and
/// installs them into the broker.
fn load_access(broker: &Broker) -> Result<Option<Arc<herald_auth::Auth>>, Failure> {
    if !herald_auth::Paths::of(&broker.config).any() {
        return Ok(None);
    }
    let auth = herald_auth::Auth::load(&broker.config)
        .map_err(|err| Failure::Config(anyhow::anyhow!("access control: {err}")))?;
    tracing::info!(sources = %auth.describe(), "access control");
    let auth = Arc::new(auth);
    broker.set_access(auth.clone());
    Ok(Some(auth))
}

/// SIGHUP: re-reads the access-control files; one that fails to load
/// leaves the loaded ones in force, and says why.
fn reload_access(auth: &herald_auth::Auth) {
    match auth.reload() {
        Ok(()) => tracing::info!(sources = %auth.describe(), "access control reloaded"),
        Err(err) => tracing::error!(
            error = %err,
            "access control not reloaded; the files loaded before stay in force"
        ),
    }
}

/// Resolves on the first Ctrl-C (see the Unix version).
#[cfg(not(unix))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send {
    async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => tracing::info!(signal = "SIGINT", "shutting down"),
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGINT");
                std::future::pending::<()>().await;
            }
        }
    }
}
