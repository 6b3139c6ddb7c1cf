//! Composition root for `geodns serve`: load -> validate -> open GeoIP -> build the first
//! routing table -> publish it -> bind the listeners; then wait for a signal and drain.
//!
//! `check` uses the same [`load`] and routing build, and stops before binding.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tracing::{info, warn};

use crate::config::{self, Config, ConfigError};
use crate::dns::{DnsServer, Handler};
use crate::geoip::{GeoIpDb, GeoIpError};
use crate::model::{Locator, NoLocator};
use crate::routing::{self, Inputs, RoutingTable};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    GeoIp(#[from] GeoIpError),
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{0}")]
    Listen(io::Error),
    #[error("cannot wait for signals: {0}")]
    Signals(io::Error),
}

/// A validated config with its GeoIP database open: everything a routing table is built from.
#[derive(Clone)]
pub struct Loaded {
    pub config: Config,
    /// `None` when the config names no database.
    pub geoip: Option<Arc<GeoIpDb>>,
}

impl Loaded {
    pub fn locator(&self) -> Arc<dyn Locator> {
        match &self.geoip {
            Some(db) => db.clone(),
            None => Arc::new(NoLocator),
        }
    }

    /// Builds a routing table from this state and the given run-time inputs.
    pub fn build(&self, inputs: &Inputs, generation: u64) -> RoutingTable {
        routing::build(&self.config, self.locator(), inputs, generation)
    }
}

/// Reads and validates the config file and opens the GeoIP database it names.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    open(config::load(path)?)
}

/// Opens the GeoIP database a validated config names.
pub fn open(config: Config) -> Result<Loaded, LoadError> {
    let geoip = match &config.geoip {
        Some(path) => Some(Arc::new(GeoIpDb::open(path)?)),
        None => None,
    };
    Ok(Loaded { config, geoip })
}

/// A running server: its bound addresses, and the table it answers from.
pub struct Running {
    /// The DNS addresses bound (UDP and TCP on each), with any port 0 resolved.
    pub dns_addrs: Vec<SocketAddr>,
    /// The published snapshot. Written by the builder (here: once at start); read by the DNS
    /// handler on every query and by tests.
    table: Arc<ArcSwap<RoutingTable>>,
    dns: DnsServer,
    grace: Duration,
}

impl Running {
    pub fn table(&self) -> Arc<RoutingTable> {
        self.table.load_full()
    }

    /// Stops accepting queries and waits up to the configured grace period for in-flight work.
    pub async fn stop(self) {
        let grace = self.grace;
        if tokio::time::timeout(grace, self.dns.shutdown()).await.is_err() {
            warn!(?grace, "in-flight work did not finish within the shutdown grace period");
        }
    }
}

/// Builds the first table and starts the listeners. Must run inside a Tokio runtime.
pub async fn start(loaded: Loaded) -> Result<Running, AppError> {
    let table = Arc::new(ArcSwap::from_pointee(loaded.build(&Inputs::default(), 1)));
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let server = &loaded.config.server;
    let dns = DnsServer::start(Handler::new(table.clone()), &server.dns_listen, server.tcp_timeout, workers)
        .map_err(AppError::Listen)?;
    if let Some(db) = &loaded.geoip {
        let meta = db.metadata();
        info!(path = %db.path().display(), database_type = %meta.database_type, build_epoch = meta.build_epoch, "GeoIP database open");
    }
    Ok(Running { dns_addrs: dns.bound.clone(), table, dns, grace: server.shutdown_grace })
}

/// `geodns serve`: runs until SIGINT or SIGTERM, then drains.
pub async fn serve(path: &Path) -> Result<(), AppError> {
    let loaded = load(path)?;
    info!(config = %path.display(), zones = loaded.config.zones.len(), sites = loaded.config.sites.len(), "config loaded");
    let running = start(loaded).await?;
    wait_for_stop_signal().await.map_err(AppError::Signals)?;
    info!("stopping");
    running.stop().await;
    Ok(())
}

async fn wait_for_stop_signal() -> io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => info!(signal = "SIGTERM", "signal received"),
        _ = int.recv() => info!(signal = "SIGINT", "signal received"),
    }
    Ok(())
}
