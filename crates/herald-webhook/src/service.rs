//! The running WebHook: the hook handler that turns broker events into
//! spooled requests, and the delivery lanes that send them.
//!
//! The handler runs on the broker's connection tasks. It only matches the
//! rules, writes the JSON body and appends it to the spool's pending list:
//! no I/O, no lock held across anything slow, no waiting. Everything else
//! happens on the lanes' tasks and the spool's writer thread.

use crate::body::BodyBuilder;
use crate::conf::{FsyncPolicy, SpoolMode, WebhookConfig};
use crate::dead_letter::{self, DeadLetters};
use crate::deliver::{DeliveryOptions, Settings, Signing};
use crate::event::lane_client_id;
use crate::generation::Generations;
use crate::http::{SetupError, Target};
use crate::metrics::WebhookMetrics;
use crate::rules::Rules;
use crate::spool::{self, Fsync, Spool, SpoolError, SpoolOptions, Ticket};
use crate::threads::DeliveryThreads;
use bytes::Bytes;
use herald_broker::ack::{AckGate, AckHolds, Changed, Refused};
use herald_broker::broker::Broker;
use herald_broker::hooks::{Event, Handler, HookId};
use herald_broker::support::{lock, now_ms};
use hyper::header::HeaderName;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How often the spool fsyncs under `web.hook.spool.fsync = interval`.
const FSYNC_INTERVAL: Duration = Duration::from_millis(200);

/// Priority of the WebHook's handler: after anything that may want to see
/// events first (metrics, audit), it does not matter much.
const PRIORITY: i32 = 0;

/// Why the WebHook could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration has no `web.hook.url`.
    #[error("web.hook.url is not set")]
    NoUrl,
    /// The spool could not be opened.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The delivery threads could not be started.
    #[error("cannot start the webhook delivery threads: {0}")]
    Threads(std::io::Error),
    /// TLS files or headers are unusable.
    #[error(transparent)]
    Http(#[from] SetupError),
    /// A header name configured for the event id or signature is invalid.
    #[error("{key} = {value:?} is not a valid header name")]
    HeaderName {
        /// The configuration key.
        key: &'static str,
        /// Its value.
        value: String,
    },
}

/// The WebHook attached to a broker.
pub struct WebHook {
    broker: Arc<Broker>,
    hook: HookId,
    metrics: Arc<WebhookMetrics>,
    /// Where and how lanes deliver; a reload sends new ones.
    settings: watch::Sender<Settings>,
    /// Where the spool lives unless the configuration says otherwise.
    data_dir: PathBuf,
    state: Mutex<State>,
}

/// What a reload replaces.
struct State {
    /// The spool generations and their lanes (`None` once shut down).
    generations: Option<Generations>,
    /// The handler attached to the broker.
    handler: Arc<Enqueue>,
    /// The configuration in force.
    config: WebhookConfig,
}

/// The hook handler: rules → body → spool.
struct Enqueue {
    rules: Rules,
    bodies: BodyBuilder,
    spool: Spool,
    /// The spool as an acknowledgement gate.
    gate: Arc<dyn AckGate>,
    metrics: Arc<WebhookMetrics>,
}

impl Enqueue {
    fn new(config: &WebhookConfig, spool: Spool, metrics: Arc<WebhookMetrics>) -> Enqueue {
        Enqueue {
            rules: config.rules.clone(),
            bodies: BodyBuilder::from_config(config),
            gate: Arc::new(SpoolGate(spool.clone())),
            spool,
            metrics,
        }
    }

    /// Matches the rules, builds the body and spools it (as many times as
    /// rules match). With `holds`, the publisher's acknowledgement waits
    /// for the records to be written (or is refused if they cannot be).
    fn enqueue(&self, event: &Event<'_>, holds: Option<&mut AckHolds>) {
        let copies = self.rules.matching(event);
        if copies == 0 {
            return;
        }
        let now = now_ms();
        // Written into a per-thread scratch buffer, then copied once into
        // an allocation of the exact size (no growing, no slack kept in
        // the spool).
        let written = SCRATCH.with_borrow_mut(|out| {
            out.clear();
            let kind = self.bodies.write(event, now, out)?;
            Some((kind, Bytes::copy_from_slice(out)))
        });
        let Some((kind, body)) = written else {
            return;
        };
        let key = client_key(lane_client_id(event));
        let tag = kind.index() as u8;
        let Some(holds) = holds else {
            // The last copy takes the body itself: cloning would turn it
            // into a shared (reference-counted) buffer for nothing in the
            // usual case.
            // Counted before the push: once pushed, the event may reach
            // the web service (and a reader of /metrics) before this
            // thread runs on.
            for _ in 1..copies {
                self.metrics.matched(tag);
                self.spool.push(key, tag, now, body.clone());
            }
            self.metrics.matched(tag);
            self.spool.push(key, tag, now, body);
            return;
        };
        let mut last = None;
        let mut body = Some(body);
        for i in 0..copies {
            let copy = if i + 1 == copies {
                body.take()
            } else {
                body.clone()
            };
            let Some(copy) = copy else { break };
            self.metrics.matched(tag);
            match self.spool.push_held(key, tag, now, copy) {
                Ok(ticket) => last = Some(ticket),
                Err(_) => {
                    holds.refuse();
                    return;
                }
            }
        }
        // One client's events share a lane, written in order: the last
        // ticket settles after all the others.
        if let Some(ticket) = last {
            holds.hold(self.gate.clone(), ticket.0);
        }
    }
}

impl Handler for Enqueue {
    fn on_event(&self, event: &Event<'_>) {
        self.enqueue(event, None);
    }

    fn on_publish(&self, event: &Event<'_>, holds: &mut AckHolds) {
        if holds.is_wanted() {
            self.enqueue(event, Some(holds));
        } else {
            self.enqueue(event, None);
        }
    }
}

/// The spool as the broker's acknowledgement gate: a QoS 1/2 PUBLISH that
/// matched a rule is acknowledged once its records are written.
struct SpoolGate(Spool);

impl AckGate for SpoolGate {
    fn settled(&self, ticket: u64) -> Option<Result<(), Refused>> {
        if self.0.written(Ticket(ticket)) {
            Some(Ok(()))
        } else if self.0.stopped() {
            Some(Err(Refused))
        } else {
            None
        }
    }

    fn changed(&self, ticket: u64) -> Changed {
        let spool = self.0.clone();
        Box::pin(async move { spool.wait_written(Ticket(ticket)).await })
    }
}

thread_local! {
    /// The handler's body buffer on this thread.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(1024));
}

/// A client's key in the spool: FNV-1a of its id, so it is the same on
/// every run (the spool keeps lanes across restarts).
pub fn client_key(client_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in client_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn header_name(key: &'static str, value: &str) -> Result<HeaderName, StartError> {
    HeaderName::from_bytes(value.as_bytes()).map_err(|_| StartError::HeaderName {
        key,
        value: value.to_owned(),
    })
}

/// Where and how the lanes deliver, as `config` says.
pub(crate) fn settings_of(config: &WebhookConfig) -> Result<Settings, StartError> {
    let endpoint = config.url.clone().ok_or(StartError::NoUrl)?;
    let target = Target::new(
        endpoint,
        &config.tls,
        &config.headers,
        config.request.connect_timeout,
        config.request.request_timeout,
    )?;
    let signing = match &config.sign.secret {
        Some(secret) => Some(Signing {
            secret: secret.expose().as_bytes().to_vec(),
            header: header_name("web.hook.sign.header", &config.sign.header)?,
        }),
        None => None,
    };
    let options = DeliveryOptions {
        initial_backoff: config.retry.initial_backoff,
        max_backoff: config.retry.max_backoff,
        max_event_age: config.max_event_age,
        batch_size: config.batch.size.max(1),
        batch_interval: config.batch.interval,
        signing,
        event_id_header: header_name("web.hook.event_id_header", &config.event_id_header)?,
    };
    Ok((Arc::new(target), Arc::new(options)))
}

/// The spool as `config` says, under `data_dir` unless `web.hook.spool.dir`
/// says otherwise.
fn spool_options(config: &WebhookConfig, data_dir: &Path) -> SpoolOptions {
    let dir = match config.spool.mode {
        SpoolMode::Memory => None,
        SpoolMode::Disk => Some(
            config
                .spool
                .dir
                .clone()
                .unwrap_or_else(|| data_dir.join("webhook")),
        ),
    };
    SpoolOptions {
        dir,
        lanes: config.pool_size,
        max_bytes: config.spool.max_bytes,
        fsync: match config.spool.fsync {
            FsyncPolicy::Always => Fsync::Always,
            FsyncPolicy::Interval => Fsync::Interval(FSYNC_INTERVAL),
            FsyncPolicy::Never => Fsync::Never,
        },
        cache_bytes: spool::CACHE_BYTES.min(config.spool.max_bytes / 4),
        memory_limit: spool::MEMORY_LIMIT.min(config.spool.max_bytes),
        group_commit: spool::GROUP_COMMIT,
    }
}

impl WebHook {
    /// Opens the spool (recovering what a previous run left, with any lane
    /// count), starts the lanes and attaches the handler to `broker`'s
    /// hooks. `data_dir` is where the spool lives unless
    /// `web.hook.spool.dir` says otherwise.
    pub fn start(
        config: &WebhookConfig,
        data_dir: &Path,
        broker: &Arc<Broker>,
    ) -> Result<WebHook, StartError> {
        config.log_warnings();
        let (settings, settings_rx) = watch::channel(settings_of(config)?);
        let metrics = Arc::new(WebhookMetrics::default());
        let generations = Generations::open(
            spool_options(config, data_dir),
            settings_rx,
            metrics.clone(),
            Arc::new(DeadLetters::new(dead_letter::path(data_dir))),
            Arc::new(
                DeliveryThreads::start(config.delivery_threads, config.delivery_nice)
                    .map_err(StartError::Threads)?,
            ),
        )?;
        let spool = generations.current().clone();
        let handler = Arc::new(Enqueue::new(config, spool.clone(), metrics.clone()));
        let hook = broker.hooks.add_handler(PRIORITY, handler.clone());
        tracing::info!(
            url = %config.url.as_ref().map(|u| u.to_string()).unwrap_or_default(),
            lanes = spool.lanes(),
            delivery_threads = config.delivery_threads,
            rules = config.rules.len(),
            spool = %spool.id(),
            "webhook started"
        );
        Ok(WebHook {
            broker: broker.clone(),
            hook,
            metrics,
            settings,
            data_dir: data_dir.to_owned(),
            state: Mutex::new(State {
                generations: Some(generations),
                handler,
                config: config.clone(),
            }),
        })
    }

    /// Takes up `config` without a restart: rules and body settings for
    /// the next event; URL, headers, TLS files, timeouts, retry, batch,
    /// pipelining and signing settings for the next request (a lane
    /// waiting to retry tries the new URL at once); another `pool_size`
    /// starts a new spool generation for new events, delivered once the
    /// current one has drained (see [`crate::generation`]). Nothing
    /// spooled is lost or reordered. Spool settings (`web.hook.spool.*`)
    /// take effect at the next start. If `config` cannot be used (no URL,
    /// TLS files that do not load, a bad header name), nothing changes.
    pub fn reload(&self, config: &WebhookConfig) -> Result<(), StartError> {
        let settings = settings_of(config)?;
        let mut state = lock(&self.state);
        let State {
            generations,
            handler,
            config: running,
        } = &mut *state;
        let Some(generations) = generations.as_mut() else {
            return Ok(());
        };
        if spool_options(config, &self.data_dir).dir != spool_options(running, &self.data_dir).dir
            || config.spool != running.spool
        {
            tracing::warn!(
                "webhook reload: web.hook.spool.* settings changed; they take effect at the next start"
            );
        }
        if (config.delivery_threads, config.delivery_nice)
            != (running.delivery_threads, running.delivery_nice)
        {
            tracing::warn!(
                "webhook reload: web.hook.delivery_threads or delivery_nice changed; they take effect at the next start"
            );
        }
        let retired = if config.pool_size == running.pool_size {
            None
        } else {
            Some(generations.replace(config.pool_size)?)
        };
        let spool = generations.current().clone();
        let new = Arc::new(Enqueue::new(config, spool.clone(), self.metrics.clone()));
        self.broker.hooks.replace_handler(self.hook, new.clone());
        let old = std::mem::replace(handler, new);
        self.settings.send_replace(settings);
        tracing::info!(
            url = %config.url.as_ref().map(|u| u.to_string()).unwrap_or_default(),
            lanes = spool.lanes(),
            previous_lanes = running.pool_size,
            rules = config.rules.len(),
            "webhook configuration reloaded"
        );
        *running = config.clone();
        drop(state);
        if let Some(retired) = retired {
            tokio::spawn(async move {
                // A handler call that began before the swap may still push
                // to the old spool: it is sealed once none is left.
                while Arc::strong_count(&old) > 1 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                drop(old);
                retired.seal().await;
            });
        }
        Ok(())
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<WebhookMetrics> {
        &self.metrics
    }

    /// Whether the spool writes normally: `false` while writes fail and
    /// events are held in memory (QoS 1/2 publishes that match a rule are
    /// then refused once that memory is full). For readiness checks.
    pub fn healthy(&self) -> bool {
        self.spool().is_none_or(|s| s.healthy())
    }

    /// Whether the spool can take events now (see [`Spool::health`]).
    pub fn health(&self) -> Result<(), String> {
        self.spool().map_or(Ok(()), |s| s.health())
    }

    /// The spool new events go to (`None` once shut down).
    pub fn spool(&self) -> Option<Spool> {
        lock(&self.state)
            .generations
            .as_ref()
            .map(|g| g.current().clone())
    }

    /// Prometheus text of the WebHook's counters and spool state.
    pub fn render_metrics(&self) -> String {
        self.metrics.render(self.spool().as_ref())
    }

    /// Stops taking events, lets requests in flight finish within
    /// `deadline`, and writes what is pending to the spool so the next
    /// start delivers the rest.
    pub async fn shutdown(&self, deadline: Duration) {
        self.broker.hooks.remove(self.hook);
        let generations = lock(&self.state).generations.take();
        if let Some(generations) = generations {
            generations.shutdown(deadline).await;
        }
        tracing::info!("webhook stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::client_key;

    #[test]
    fn client_keys_are_stable_and_spread() {
        assert_eq!(client_key("c1"), client_key("c1"));
        // FNV-1a 64 of "" is the offset basis.
        assert_eq!(client_key(""), 0xcbf2_9ce4_8422_2325);
        let mut used = [false; 8];
        for i in 0..100 {
            used[(client_key(&format!("client-{i}")) % 8) as usize] = true;
        }
        assert!(used.iter().all(|&u| u), "100 clients use all 8 lanes");
    }
}
