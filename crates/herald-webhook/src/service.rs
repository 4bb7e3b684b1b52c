//! The running WebHook: the hook handler that turns broker events into
//! spooled requests, and the delivery lanes that send them.
//!
//! The handler runs on the broker's connection tasks. It only matches the
//! rules, writes the JSON body and appends it to the spool's pending list:
//! no I/O, no lock held across anything slow, no waiting. Everything else
//! happens on the lanes' tasks and the spool's writer thread.

use crate::body::BodyBuilder;
use crate::conf::{FsyncPolicy, SpoolMode, WebhookConfig};
use crate::deliver::{self, Delivery, DeliveryOptions, Signing};
use crate::event::client_id;
use crate::http::{SetupError, Target};
use crate::metrics::WebhookMetrics;
use crate::rules::Rules;
use crate::spool::{self, Fsync, Spool, SpoolError, SpoolOptions};
use bytes::Bytes;
use herald_broker::broker::Broker;
use herald_broker::hooks::{Event, Handler, HookId};
use hyper::header::HeaderName;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    spool: Spool,
    delivery: Delivery,
    metrics: Arc<WebhookMetrics>,
}

/// The hook handler: rules → body → spool.
struct Enqueue {
    rules: Rules,
    bodies: BodyBuilder,
    spool: Spool,
    metrics: Arc<WebhookMetrics>,
}

impl Handler for Enqueue {
    fn on_event(&self, event: &Event<'_>) {
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
        let key = client_key(client_id(event));
        let tag = kind.index() as u8;
        // The last copy takes the body itself: cloning would turn it into a
        // shared (reference-counted) buffer for nothing in the usual case.
        for _ in 1..copies {
            self.spool.push(key, tag, now, body.clone());
            self.metrics.matched(tag);
        }
        self.spool.push(key, tag, now, body);
        self.metrics.matched(tag);
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn header_name(key: &'static str, value: &str) -> Result<HeaderName, StartError> {
    HeaderName::from_bytes(value.as_bytes()).map_err(|_| StartError::HeaderName {
        key,
        value: value.to_owned(),
    })
}

impl WebHook {
    /// Opens the spool (recovering what a previous run left), starts the
    /// lanes and attaches the handler to `broker`'s hooks. `data_dir` is
    /// where the spool lives unless `web.hook.spool.dir` says otherwise.
    pub fn start(
        config: &WebhookConfig,
        data_dir: &Path,
        broker: &Arc<Broker>,
    ) -> Result<WebHook, StartError> {
        let endpoint = config.url.clone().ok_or(StartError::NoUrl)?;
        config.log_warnings();
        let target = Target::new(
            endpoint,
            &config.tls,
            &config.headers,
            config.request.connect_timeout,
            config.request.request_timeout,
        )?;
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
        let (spool, readers) = Spool::open(SpoolOptions {
            dir,
            lanes: config.pool_size,
            max_bytes: config.spool.max_bytes,
            fsync: match config.spool.fsync {
                FsyncPolicy::Always => Fsync::Always,
                FsyncPolicy::Interval => Fsync::Interval(FSYNC_INTERVAL),
                FsyncPolicy::Never => Fsync::Never,
            },
            cache_bytes: spool::CACHE_BYTES.min(config.spool.max_bytes / 4),
        })?;
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
            window: if config.enable_pipelining {
                deliver::PIPELINE_WINDOW
            } else {
                1
            },
            signing,
            event_id_header: header_name("web.hook.event_id_header", &config.event_id_header)?,
        };
        let metrics = Arc::new(WebhookMetrics::default());
        let delivery = deliver::start(
            Arc::new(target),
            &spool,
            readers,
            Arc::new(options),
            metrics.clone(),
        );
        let handler = Enqueue {
            rules: config.rules.clone(),
            bodies: BodyBuilder::from_config(config),
            spool: spool.clone(),
            metrics: metrics.clone(),
        };
        let hook = broker.hooks.add_handler(PRIORITY, Arc::new(handler));
        tracing::info!(
            url = %config.url.as_ref().map(|u| u.to_string()).unwrap_or_default(),
            lanes = spool.lanes(),
            rules = config.rules.len(),
            spool = %spool.id(),
            "webhook started"
        );
        Ok(WebHook {
            broker: broker.clone(),
            hook,
            spool,
            delivery,
            metrics,
        })
    }

    /// Swaps the rules and body settings for those of `config` without a
    /// restart (the URL, TLS and spool settings stay as started).
    pub fn reload(&self, config: &WebhookConfig) {
        let handler = Enqueue {
            rules: config.rules.clone(),
            bodies: BodyBuilder::from_config(config),
            spool: self.spool.clone(),
            metrics: self.metrics.clone(),
        };
        self.broker
            .hooks
            .replace_handler(self.hook, Arc::new(handler));
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<WebhookMetrics> {
        &self.metrics
    }

    /// The spool.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Prometheus text of the WebHook's counters and spool state.
    pub fn render_metrics(&self) -> String {
        self.metrics.render(Some(&self.spool))
    }

    /// Stops taking events, lets requests in flight finish within
    /// `deadline`, and writes what is pending to the spool so the next
    /// start delivers the rest.
    pub async fn shutdown(self, deadline: Duration) {
        self.broker.hooks.remove(self.hook);
        self.delivery.shutdown(deadline).await;
        let spool = self.spool.clone();
        let _ = tokio::task::spawn_blocking(move || spool.close()).await;
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
