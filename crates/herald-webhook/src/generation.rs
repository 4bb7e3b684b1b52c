//! The WebHook's spool generations and their lanes. A generation is a
//! spool with one lane count (`pool_size`); see
//! [`crate::spool::generations`] for how they lie on disk.
//!
//! At start every generation found on disk is opened, whatever
//! `pool_size` is now. The newest is written to if its lane count is
//! `pool_size`; otherwise a new generation is created for new events. The
//! older ones are sealed (nothing more is written to them) and delivered
//! first, oldest first, by at most `pool_size` tasks, each lane in order;
//! a generation's lanes start only once the one before is drained, and a
//! drained generation's files are removed. A reload with another
//! `pool_size` does the same at runtime: a new generation takes new events
//! and the one it replaces drains before it.
//!
//! So one client's events, all in one lane of each generation, reach the
//! web service in order across any number of changes, and nothing spooled
//! is stranded. The cost: while an older generation drains, newer events
//! are accepted (spooled, acknowledged) but wait.

use crate::dead_letter::DeadLetters;
use crate::deliver::{self, Delivery, Settings, Start};
use crate::metrics::WebhookMetrics;
use crate::spool::generations::{self as on_disk};
use crate::spool::{Spool, SpoolError, SpoolOptions, SpoolStats};
use crate::threads::DeliveryThreads;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// One generation: its spool and the lanes delivering it.
struct Generation {
    /// Its number (its folder, see [`on_disk::dir_of`]).
    number: u64,
    spool: Spool,
    delivery: Delivery,
}

/// Every open generation of a WebHook: the one new events go to, and the
/// older ones still draining.
pub(crate) struct Generations {
    /// The spool folder (`None`: memory only, one generation at a time).
    root: Option<PathBuf>,
    /// Options of new generations (their `dir` and `lanes` are set here).
    options: SpoolOptions,
    /// Counters shared by all generations.
    stats: Arc<SpoolStats>,
    /// Delivery settings, shared with every lane.
    settings: watch::Receiver<Settings>,
    metrics: Arc<WebhookMetrics>,
    /// Where events given up on are kept.
    dead_letters: Arc<DeadLetters>,
    /// The threads every generation's lanes run on.
    threads: Arc<DeliveryThreads>,
    /// Where new events go.
    current: Generation,
    /// Older generations, oldest first, delivered before `current`.
    older: Vec<Generation>,
}

impl Generations {
    /// Opens every generation under `options.dir` and starts their lanes;
    /// new events go to a generation of `options.lanes` lanes.
    pub(crate) fn open(
        options: SpoolOptions,
        settings: watch::Receiver<Settings>,
        metrics: Arc<WebhookMetrics>,
        dead_letters: Arc<DeadLetters>,
        threads: Arc<DeliveryThreads>,
    ) -> Result<Generations, SpoolError> {
        let stats = Arc::<SpoolStats>::default();
        let root = options.dir.clone();
        let lanes = options.lanes.max(1);
        let found = match &root {
            Some(root) => on_disk::find(root).map_err(|source| SpoolError::Io {
                path: root.clone(),
                source,
            })?,
            None => Vec::new(),
        };
        let reuse = found.last().filter(|g| g.lanes == lanes).cloned();
        let newest = found.last().map(|g| g.number);
        let mut older = Vec::new();
        let mut gate = None;
        for g in found.iter().filter(|g| Some(*g) != reuse.as_ref()) {
            let Some(root) = &root else { break };
            let opts = SpoolOptions {
                dir: Some(g.dir.clone()),
                lanes: g.lanes,
                ..options.clone()
            };
            let (spool, readers) = Spool::open_sharing(opts, stats.clone())?;
            // Nothing is ever pushed to an older generation.
            spool.mark_sealed();
            if spool.drained() {
                spool.close();
                retire_files(root, g.number, &spool);
                continue;
            }
            let waiting: u64 = (0..spool.lanes()).map(|l| spool.depth(l)).sum();
            tracing::info!(
                generation = g.number,
                lanes = g.lanes,
                pool_size = lanes,
                waiting,
                "webhook spool: a generation with another lane count (pool_size changed) is delivered before newer events"
            );
            let start = Start {
                threads: threads.clone(),
                settings: settings.clone(),
                metrics: metrics.clone(),
                dead_letters: dead_letters.clone(),
                after: gate.take(),
                tasks: lanes,
            };
            let delivery = deliver::start(&spool, readers, start);
            gate = Some(supervise(
                Some(root.clone()),
                g.number,
                spool.clone(),
                delivery.drained(),
            ));
            older.push(Generation {
                number: g.number,
                spool,
                delivery,
            });
        }
        let (number, dir) = match (&root, reuse) {
            (None, _) => (0, None),
            (Some(_), Some(g)) => (g.number, Some(g.dir)),
            (Some(root), None) => {
                let (n, dir) = on_disk::create(root, newest).map_err(|source| SpoolError::Io {
                    path: root.clone(),
                    source,
                })?;
                (n, Some(dir))
            }
        };
        let opts = SpoolOptions {
            dir,
            lanes,
            ..options.clone()
        };
        let (spool, readers) = Spool::open_sharing(opts, stats.clone())?;
        let start = Start {
            threads: threads.clone(),
            settings: settings.clone(),
            metrics: metrics.clone(),
            dead_letters: dead_letters.clone(),
            after: gate,
            tasks: lanes,
        };
        let delivery = deliver::start(&spool, readers, start);
        Ok(Generations {
            root,
            options,
            stats,
            settings,
            metrics,
            dead_letters,
            threads,
            current: Generation {
                number,
                spool,
                delivery,
            },
            older,
        })
    }

    /// The spool new events go to.
    pub(crate) fn current(&self) -> &Spool {
        &self.current.spool
    }

    /// Starts a new generation of `lanes` lanes for new events; the one it
    /// replaces drains first, once [`Spool::seal`] is called on the
    /// returned spool (when nothing pushes to it any more). Its lanes
    /// start only after that.
    pub(crate) fn replace(&mut self, lanes: usize) -> Result<Spool, SpoolError> {
        let lanes = lanes.max(1);
        self.older
            .retain(|g| !*g.delivery.drained().borrow() || !g.spool.stopped());
        let number = self.current.number + 1;
        let dir = match &self.root {
            Some(root) => {
                let (_, dir) =
                    on_disk::create(root, Some(self.current.number)).map_err(|source| {
                        SpoolError::Io {
                            path: root.clone(),
                            source,
                        }
                    })?;
                Some(dir)
            }
            None => None,
        };
        let opts = SpoolOptions {
            dir,
            lanes,
            ..self.options.clone()
        };
        let (spool, readers) = Spool::open_sharing(opts, self.stats.clone())?;
        let old = &self.current;
        let gate = supervise(
            self.root.clone(),
            old.number,
            old.spool.clone(),
            old.delivery.drained(),
        );
        let start = Start {
            threads: self.threads.clone(),
            settings: self.settings.clone(),
            metrics: self.metrics.clone(),
            dead_letters: self.dead_letters.clone(),
            after: Some(gate),
            tasks: lanes,
        };
        let delivery = deliver::start(&spool, readers, start);
        let new = Generation {
            number,
            spool,
            delivery,
        };
        let old = std::mem::replace(&mut self.current, new);
        let retired = old.spool.clone();
        self.older.push(old);
        Ok(retired)
    }

    /// Stops every lane (requests in flight get until `deadline`) and
    /// closes every spool: what is not delivered stays for the next start.
    pub(crate) async fn shutdown(self, deadline: Duration) {
        let mut spools = Vec::new();
        for g in self.older.into_iter().chain([self.current]) {
            g.delivery.shutdown(deadline).await;
            spools.push(g.spool);
        }
        let _ = tokio::task::spawn_blocking(move || {
            for spool in spools {
                spool.close();
            }
        })
        .await;
    }
}

/// Once a sealed generation's lanes have all drained: closes its spool,
/// removes its files, and opens the returned gate (the next generation's
/// lanes wait for it). If the lanes were stopped instead, the gate never
/// opens (its sender is dropped).
fn supervise(
    root: Option<PathBuf>,
    number: u64,
    spool: Spool,
    mut drained: watch::Receiver<bool>,
) -> watch::Receiver<bool> {
    let (open, gate) = watch::channel(false);
    tokio::spawn(async move {
        if drained.wait_for(|d| *d).await.is_err() {
            return;
        }
        let closed = tokio::task::spawn_blocking(move || {
            spool.close();
            if let Some(root) = &root {
                retire_files(root, number, &spool);
            }
        })
        .await;
        if closed.is_ok() {
            tracing::info!(
                generation = number,
                "webhook spool: older generation delivered; newer events follow"
            );
            let _ = open.send(true);
        }
    });
    gate
}

/// Removes a closed generation's files if everything in it was delivered;
/// otherwise keeps them (the next start delivers the rest) and says so.
fn retire_files(root: &Path, number: u64, spool: &Spool) {
    if !spool.drained() {
        tracing::warn!(
            generation = number,
            "webhook spool: an older generation still holds events after draining; kept for the next start"
        );
        return;
    }
    if let Err(e) = on_disk::remove(root, number) {
        tracing::warn!(generation = number, error = %e, "webhook spool: cannot remove a delivered generation's files");
    }
}
