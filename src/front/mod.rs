//! The front: a reverse proxy balancing requests over upstreams (placeholder API; the
//! implementation lands with the front issue).

use std::net::SocketAddr;
use std::path::Path;

use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::config::{EdgeLimits, UpstreamLimits};

/// Pools, routes and health-check settings.
#[derive(Debug, Clone)]
pub struct FrontConfig {
    upstreams: Vec<SocketAddr>,
}

impl FrontConfig {
    /// Loads a TOML front config.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        anyhow::bail!("front config {} not supported yet", path.display())
    }

    /// One round-robin pool over `upstreams`.
    pub fn round_robin(upstreams: &[SocketAddr]) -> Self {
        Self {
            upstreams: upstreams.to_vec(),
        }
    }
}

/// The running front.
#[derive(Debug, Clone)]
pub struct Front {
    config: FrontConfig,
}

impl Front {
    /// Builds the front.
    pub fn new(config: FrontConfig, _limits: UpstreamLimits) -> anyhow::Result<Self> {
        Ok(Self { config })
    }

    /// The front's router.
    pub fn router(&self, _edge: &EdgeLimits) -> Router {
        let _ = &self.config.upstreams;
        Router::new()
    }

    /// Pools and each upstream's health, for `/info`.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({ "upstreams": self.config.upstreams })
    }

    /// Starts the active health checks.
    pub fn spawn_health_checks(&self, _shutdown: CancellationToken) {}
}

/// `loadlab front`: the front alone.
pub fn run_standalone(_args: &crate::cli::FrontArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
