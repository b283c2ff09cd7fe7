//! [`AppState`]: what every shard's handlers share.
//!
//! One set of compute threads, one writer handle and one set of read connections serve
//! all shards: the shards split the accept and HTTP work across threads, not the data.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use loadlab_front::Front;
use loadlab_workers::compute::Compute;
use loadlab_workers::mega::{MegaReader, WriterHandle};

use crate::config::Config;
use crate::shard::ShardStats;

/// Shared, cheaply cloneable state of the service.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    config: Config,
    compute: Compute,
    writer: WriterHandle,
    reader: MegaReader,
    started: Instant,
    listeners: Listeners,
    /// The front, when this process runs one: `/info` shows its pools' health.
    front: Option<Front>,
    /// Each shard's own counts, in shard order.
    shard_stats: Vec<Arc<ShardStats>>,
}

/// Where the process listens, for `/info`.
#[derive(Debug, Clone, Default)]
pub struct Listeners {
    /// The front's address, if it runs (TLS with `--tls-cert`).
    pub front: Option<SocketAddr>,
    /// The front's cleartext listener beside a TLS one (`--plain-bind`), if any.
    pub front_plain: Option<SocketAddr>,
    /// Each shard's address, in shard order.
    pub shards: Vec<SocketAddr>,
}

impl AppState {
    /// Bundles the parts.
    pub fn new(
        config: Config,
        compute: Compute,
        writer: WriterHandle,
        reader: MegaReader,
        listeners: Listeners,
        front: Option<Front>,
    ) -> Self {
        let shard_stats = listeners.shards.iter().map(|_| Arc::default()).collect();
        Self(Arc::new(Shared {
            config,
            compute,
            writer,
            reader,
            started: Instant::now(),
            listeners,
            front,
            shard_stats,
        }))
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// The compute threads.
    pub fn compute(&self) -> &Compute {
        &self.0.compute
    }

    /// The Mega writer.
    pub fn writer(&self) -> &WriterHandle {
        &self.0.writer
    }

    /// The Mega read connections.
    pub fn reader(&self) -> &MegaReader {
        &self.0.reader
    }

    /// When the service started.
    pub fn started(&self) -> Instant {
        self.0.started
    }

    /// Where the process listens.
    pub fn listeners(&self) -> &Listeners {
        &self.0.listeners
    }

    /// The front, when this process runs one.
    pub fn front(&self) -> Option<&Front> {
        self.0.front.as_ref()
    }

    /// Shard `index`'s own counts (fresh ones for an index past the last shard).
    pub fn shard_stats(&self, index: usize) -> Arc<ShardStats> {
        self.0.shard_stats.get(index).cloned().unwrap_or_default()
    }

    /// Requests the shards have answered, all together.
    pub fn requests_answered(&self) -> u64 {
        self.0.shard_stats.iter().map(|s| s.requests()).sum()
    }
}
