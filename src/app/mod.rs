//! Composition root for `geodns serve`: load -> validate -> open GeoIP -> start the sources
//! (health probes) -> build and publish the first routing table -> bind DNS and admin; then the
//! builder task rebuilds on every input change and reload, until a signal drains and stops it.
//!
//! `check` uses the same load step ([`crate::load`]), and stops before binding.

mod build_thread;
mod builder;
mod probes;
mod rankings;
mod status;
mod updates;
mod watch;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::admin::{self, AdminState, Status};
use crate::dns::{DnsServer, Handler};
use crate::routing::RoutingTable;
use crate::sources::health;

pub use crate::load::{LoadError, Loaded, load, open};
pub use build_thread::{BuildThreads, PATIENCE as BUILD_PATIENCE};
pub use builder::Event;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{0}")]
    Listen(io::Error),
    #[error("cannot listen on the admin address {addr}: {source}")]
    AdminListen { addr: SocketAddr, source: io::Error },
    #[error("cannot start health probes: {0}")]
    Health(#[from] health::ClientError),
    #[error(
        "health check {check:?} uses HTTPS with certificate verification: {source}; give the image a CA store, or set tls_verify: false"
    )]
    HealthCheckTls { check: String, source: health::ClientError },
    #[error("cannot start the table build threads: {0}")]
    BuildThreads(io::Error),
    #[error("cannot wait for signals: {0}")]
    Signals(io::Error),
    #[error(transparent)]
    Updates(#[from] updates::OpenError),
}

/// A running server.
pub struct Running {
    /// The DNS addresses bound (UDP and TCP on each), with any port 0 resolved.
    pub dns_addrs: Vec<SocketAddr>,
    /// The admin HTTP address, when `server.admin_listen` is set.
    pub admin_addr: Option<SocketAddr>,
    /// The published snapshot. Written only by the builder task; read by the DNS handler on
    /// every query (one atomic load) and by tests.
    table: Arc<ArcSwap<RoutingTable>>,
    status: tokio::sync::watch::Receiver<Arc<Status>>,
    events: mpsc::Sender<Event>,
    dns: DnsServer,
    /// Cancels the builder, the sources and the admin server.
    shutdown: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
    grace: Duration,
}

impl Running {
    pub fn table(&self) -> Arc<RoutingTable> {
        self.table.load_full()
    }

    /// The latest `/status` document.
    pub fn status(&self) -> Arc<Status> {
        self.status.borrow().clone()
    }

    /// A receiver that wakes whenever a new status (and so a new table) is published.
    pub fn subscribe_status(&self) -> tokio::sync::watch::Receiver<Arc<Status>> {
        self.status.clone()
    }

    /// Asks the builder to reload the config file and GeoIP database (as SIGHUP does).
    pub async fn reload(&self) {
        let _ = self.events.send(Event::Reload("requested")).await;
    }

    /// Stops accepting queries, waits up to the grace period for in-flight work, then stops
    /// every task.
    pub async fn stop(mut self) {
        let grace = self.grace;
        let _ = self.events.send(Event::Draining).await;
        if tokio::time::timeout(grace, self.dns.shutdown()).await.is_err() {
            warn!(?grace, "in-flight work did not finish within the shutdown grace period");
        }
        self.shutdown.cancel();
        let stopped = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, stopped).await.is_err() {
            warn!(?grace, "background tasks did not stop within the shutdown grace period");
        }
    }
}

/// Builds the first table and starts everything, with no config file to watch (tests, and
/// configs built in memory).
pub async fn start(loaded: Loaded) -> Result<Running, AppError> {
    start_with(loaded, None).await
}

/// Builds the first table and starts everything. With `config_path`, SIGHUP and changes to the
/// config file or GeoIP database reload them. Must run inside a Tokio runtime.
pub async fn start_with(loaded: Loaded, config_path: Option<PathBuf>) -> Result<Running, AppError> {
    let metrics = crate::metrics::install();
    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(crate::metrics::upkeep(Duration::from_secs(5), shutdown.clone()));

    let (events_tx, events_rx) = mpsc::channel(16);
    let (watched_tx, watched_rx) = tokio::sync::watch::channel(watch::Watched::default());
    let updates = updates::open(&loaded.config).await?;
    let dynamic = updates.as_ref().map(|o| o.dynamic.clone()).unwrap_or_default();
    let mut built =
        builder::Builder::start(loaded.clone(), config_path.clone(), watched_tx, dynamic, shutdown.clone())?;
    if let Some(u) = &updates {
        built.set_updates(u.handle.clone(), u.status.clone());
    }
    let table = built.table.clone();
    let status = built.status.clone();
    tasks.spawn(built.run(events_rx));

    let server = &loaded.config.server;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let handler = match updates {
        Some(updates::Opened { handle, task, .. }) => {
            tasks.spawn(task.run(events_tx.clone(), shutdown.clone()));
            Handler::with_updates(table.clone(), handle)
        }
        None => Handler::new(table.clone()),
    };
    let dns =
        DnsServer::start(handler, &server.dns_listen, &server.tcp, &server.rrl, workers).map_err(AppError::Listen)?;

    let admin_addr = match server.admin_listen {
        Some(addr) => {
            let listener =
                tokio::net::TcpListener::bind(addr).await.map_err(|source| AppError::AdminListen { addr, source })?;
            let bound = listener.local_addr().map_err(|source| AppError::AdminListen { addr, source })?;
            let state = AdminState { status: status.clone(), metrics };
            let token = shutdown.clone();
            tasks.spawn(async move {
                if let Err(error) = admin::serve(listener, state, token).await {
                    warn!(%error, "admin server stopped");
                }
            });
            info!(addr = %bound, "serving admin HTTP");
            Some(bound)
        }
        None => None,
    };

    tasks.spawn(watch::files(watched_rx, events_tx.clone(), shutdown.clone()));
    if config_path.is_some() {
        tasks.spawn(watch::sighup(events_tx.clone(), shutdown.clone()));
    }
    if let Some(db) = &loaded.geoip {
        let meta = db.metadata();
        info!(path = %db.path().display(), database_type = %meta.database_type, build_epoch = meta.build_epoch, "GeoIP database open");
    }
    Ok(Running {
        dns_addrs: dns.bound.clone(),
        admin_addr,
        table,
        status,
        events: events_tx,
        dns,
        shutdown,
        tasks,
        grace: server.shutdown_grace,
    })
}

/// `geodns serve`: runs until SIGINT or SIGTERM, then drains.
pub async fn serve(path: &Path) -> Result<(), AppError> {
    build_thread::return_large_frees_promptly();
    let loaded = load(path)?;
    info!(config = %path.display(), zones = loaded.config.zones.len(), sites = loaded.config.sites.len(), "config loaded");
    let running = start_with(loaded, Some(path.to_owned())).await?;
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
