//! Reloading the front's config without a restart: on SIGHUP (wired by the service
//! with the process's other reloadable parts) the file is read,
//! parsed and validated (host names resolved again), and the new [`Table`] is
//! swapped in whole; every `--resolve-interval` the file last applied is resolved
//! again, and swapped in when an address changed.
//!
//! What a reload keeps and changes is the table's business (see `table`): requests
//! in flight and open connections carry on, addresses that stay keep their health,
//! connections, slots and drain. A file that fails keeps the old configuration, logged
//! with the reason. Counted in `front_config_reloads_total{result}`; `/front/status`
//! shows the generation, the file's SHA-256 and when it was loaded.
//!
//! The work runs on a blocking thread: resolving a host name blocks, and the runtime
//! that listens for the signal also accepts the front's connections.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::bail;
use arc_swap::ArcSwap;
use metrics::Counter;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::{FrontConfig, UpstreamLimits};
use crate::pools::health::HealthChecks;
use crate::table::LocalShards;
use crate::table::{Origin, Table};

/// The `result` labels of `front_config_reloads_total`.
pub(crate) const RESULTS: [&str; 2] = ["ok", "error"];

/// The config file behind a front, and its reloads.
#[derive(Debug)]
pub(crate) struct Reloads {
    /// The file; `None`: a built-in config, nothing to reload.
    source: Option<PathBuf>,
    /// The text last applied, which `--resolve-interval` resolves again (a file
    /// edited since is not applied until a SIGHUP says so). Also serialises reloads:
    /// a signal and a resolve tick may meet.
    applied: Mutex<Option<String>>,
    /// `front_config_reloads_total{result="ok"}`, `{result="error"}`.
    counters: [Counter; 2],
    /// The same counts, for `/front/status`.
    counts: [AtomicU64; 2],
}

impl Reloads {
    pub(crate) fn new(source: Option<&Path>, text: Option<String>) -> Self {
        Self {
            source: source.map(Path::to_owned),
            applied: Mutex::new(text),
            counters: RESULTS
                .map(|result| metrics::counter!("front_config_reloads_total", "result" => result)),
            counts: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    /// The config file, if any.
    pub(crate) fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// Reloads so far, by result.
    pub(crate) fn counts(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": self.counts[0].load(Ordering::Relaxed),
            "error": self.counts[1].load(Ordering::Relaxed),
        })
    }

    fn count(&self, ok: bool) {
        let index = usize::from(!ok);
        self.counters[index].increment(1);
        self.counts[index].fetch_add(1, Ordering::Relaxed);
    }
}

/// A config file read and checked: the config, the SHA-256 of its bytes (hex), and its
/// text.
pub(crate) fn read(path: &Path) -> anyhow::Result<(FrontConfig, String, String)> {
    let (config, text) = FrontConfig::load_with_text(path)?;
    let sha256 = Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((config, sha256, text))
}

/// The front's configuration as it runs: the current table and what replacing it
/// takes. Shared by the front's handles, its admin routes and the reload task.
#[derive(Debug)]
pub(crate) struct Live {
    /// The current pools and routes; a reload swaps in a new table whole, and each
    /// request keeps the one it was dispatched with (see `table`).
    pub(crate) table: ArcSwap<Table>,
    pub(crate) limits: UpstreamLimits,
    /// Front threads, each with its own upstream connections.
    pub(crate) threads: usize,
    /// The config file and its reloads.
    pub(crate) reloads: Reloads,
    /// This process's shards that members reach in-process, re-attached to every new
    /// table. A mutex: touched at start-up and by reloads only.
    pub(crate) shards: Mutex<LocalShards>,
    /// The running health checks, once started; a reload syncs them to its upstreams.
    pub(crate) checks: Mutex<Option<HealthChecks>>,
}

impl Live {
    /// Reads the config file again and swaps it in; returns the new generation. On
    /// any error (unreadable, invalid, a host that does not resolve) the config in
    /// use stays, and the error says why; either way the result is logged and
    /// counted. Blocks (file, DNS): call it on a blocking thread.
    pub(crate) fn reload(&self) -> anyhow::Result<u64> {
        let reloads = &self.reloads;
        let Some(path) = reloads.source() else {
            bail!("this front was built without a config file: nothing to reload");
        };
        let mut applied = reloads.applied.lock().unwrap_or_else(|e| e.into_inner());
        let result = read(path).and_then(|(config, sha256, text)| {
            let generation = self.swap_in(config, Some(sha256))?;
            *applied = Some(text);
            Ok(generation)
        });
        reloads.count(result.is_ok());
        let file = path.display();
        match &result {
            Ok(generation) => tracing::info!(%file, generation, "front config reloaded"),
            Err(e) => {
                let error = format!("{e:#}");
                tracing::warn!(%file, %error, "front config reload failed: keeping the old one");
            }
        }
        result
    }

    /// Resolves the host names of the config last applied again; swaps it in if an
    /// address changed. Returns the new generation, `None` when nothing changed. A
    /// failure keeps the addresses in use (logged and counted). Blocks (DNS).
    pub(crate) fn reresolve(&self) -> anyhow::Result<Option<u64>> {
        let reloads = &self.reloads;
        let applied = reloads.applied.lock().unwrap_or_else(|e| e.into_inner());
        let Some(text) = applied.as_deref() else {
            return Ok(None);
        };
        let current = self.table.load_full();
        let result = FrontConfig::parse(text).and_then(|config| {
            if addresses(&config) == addresses(&current.config) {
                return Ok(None);
            }
            self.swap_in(config, current.origin.sha256.clone())
                .map(Some)
        });
        match &result {
            Ok(None) => {}
            Ok(Some(generation)) => {
                reloads.count(true);
                tracing::info!(
                    generation,
                    "upstream addresses changed: front config re-resolved"
                );
            }
            Err(e) => {
                reloads.count(false);
                let error = format!("{e:#}");
                tracing::warn!(%error, "re-resolving the upstreams failed: keeping the addresses");
            }
        }
        result
    }

    /// Builds the table of `config` over the current one and swaps it in; syncs the
    /// health checks to its upstreams. The caller holds the reload lock.
    fn swap_in(&self, config: FrontConfig, sha256: Option<String>) -> anyhow::Result<u64> {
        let current = self.table.load_full();
        if config.listen != current.config.listen {
            tracing::warn!("the front config's `listen` changed: it applies at the next restart");
        }
        let generation = current.origin.generation + 1;
        let origin = Origin {
            generation,
            sha256,
            loaded_at: SystemTime::now(),
        };
        let shards = self
            .shards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let table = Table::build(config, &self.limits, &current.upstreams, &shards, origin)?;
        let (upstreams, health) = (table.upstreams.clone(), table.config.health.clone());
        self.table.store(Arc::new(table));
        if let Some(checks) = self
            .checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            checks.sync(&upstreams, &health);
        }
        Ok(generation)
    }

    /// Resolves the host names of the config last applied again every `every`, until
    /// `shutdown`, on a task of the current runtime, each round on a blocking thread.
    /// Does nothing for a front without a config file.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub(crate) fn spawn_resolver(self: &Arc<Self>, every: Duration, shutdown: CancellationToken) {
        if self.reloads.source().is_none() {
            return;
        }
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let live = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                let live = Arc::clone(&live);
                // Errors are logged and counted where they happen.
                let _ = tokio::task::spawn_blocking(move || live.reresolve()).await;
            }
        });
    }
}

/// Each member's pool, label and resolved address, in file order.
fn addresses(config: &FrontConfig) -> Vec<(&str, &str, std::net::SocketAddr)> {
    config
        .pools
        .iter()
        .flat_map(|p| {
            p.upstreams
                .iter()
                .map(|u| (p.name.as_str(), u.label.as_str(), u.addr))
        })
        .collect()
}
