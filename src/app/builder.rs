//! The builder task: the single writer of the published routing table and status. It holds the
//! latest value of every input (config + GeoIP, health, admin overrides), rebuilds the table on
//! every change, and applies reloads atomically: a config or database that fails to load is
//! rejected with its reason and the old one keeps serving.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ::metrics::{counter, gauge, histogram};
use arc_swap::ArcSwap;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::build_thread::BuildThreads;
use super::probes::{Probes, all_targets, configured_targets, start_probes, verifying_client};
use super::rankings::RankWorker;
use super::{AppError, Loaded, status};
use crate::admin::{ReloadStatus, Status};
use crate::config::{self, AdminState, Forced, KubernetesConfig};
use crate::metrics;
use crate::model::{Dynamic, Name};
use crate::routing::{Built, Inputs, RoutingTable};
use crate::sources::kube::{self, KubeSnapshot};

/// What the builder is told, besides input changes it watches itself.
#[derive(Debug)]
pub enum Event {
    /// Reload the config file and GeoIP database; the reason is logged.
    Reload(&'static str),
    /// The admin state file changed.
    AdminState,
    /// Shutdown started: report not ready so traffic moves away.
    Draining,
    /// A dynamic update was applied (and journaled): build and publish a table with these
    /// dynamic records, then say so (the update is answered once it is served).
    Dynamic(Arc<Dynamic>, tokio::sync::oneshot::Sender<()>),
}

/// How often the status document is refreshed when nothing else happens (probe counters and
/// last outcomes change without flips).
const STATUS_REFRESH: Duration = Duration::from_secs(2);

/// The running Kubernetes source, when the config has clusters.
struct Kube {
    rx: watch::Receiver<Arc<KubeSnapshot>>,
    token: CancellationToken,
    config: KubernetesConfig,
    /// When this source started: /readyz stops waiting for a cluster's first list
    /// `sync_timeout` after it.
    started: Instant,
    /// After a restart (a reload that changed the clusters), the last snapshot of the previous
    /// source: each cluster that has not listed yet is served from it, so a reload never
    /// drops names, even while an API server is unreachable.
    previous: Option<Arc<KubeSnapshot>>,
}

impl Kube {
    /// When readiness stops waiting for unsynced clusters.
    fn sync_deadline(&self) -> Instant {
        self.started + self.config.sync_timeout
    }
}

fn start_kube(loaded: &Loaded, shutdown: &CancellationToken) -> Option<Kube> {
    let config = loaded.config.kubernetes.clone();
    if config.clusters.is_empty() {
        return None;
    }
    let token = shutdown.child_token();
    let source = kube::spawn(config.clusters.clone(), loaded.config.sites.clone(), token.clone());
    Some(Kube { rx: source.subscribe(), token, config, started: Instant::now(), previous: None })
}

pub(super) struct Builder {
    /// The published snapshot: written here only (one swap per build), read by every query.
    pub table: Arc<ArcSwap<RoutingTable>>,
    /// The table being served, with what the next build reuses (its inputs, the address
    /// index): only this task reads it.
    current: Arc<Built>,
    /// Fills the rank slots of large GeoIP databases in the background.
    rankings: RankWorker,
    pub status: watch::Receiver<Arc<Status>>,
    status_tx: watch::Sender<Arc<Status>>,
    loaded: Arc<Loaded>,
    /// Where tables are built and old ones freed, off the runtime and at a lower priority.
    build: BuildThreads,
    config_path: Option<PathBuf>,
    loaded_at: SystemTime,
    probes: Probes,
    kube: Option<Kube>,
    admin: AdminState,
    admin_error: Option<String>,
    last_reload: Option<ReloadStatus>,
    generation: u64,
    built_at: SystemTime,
    draining: bool,
    /// The files the watcher polls; updated after every successful reload.
    watched: watch::Sender<super::watch::Watched>,
    /// Names fed by Kubernetes without a health check, already warned about since the last
    /// (re)load: each is warned about once.
    unchecked_warned: HashSet<Name>,
    /// The records of applied dynamic updates: replaced by `Event::Dynamic` only.
    dynamic: Arc<Dynamic>,
    /// The update stores' state for /status, written by the update task (latest value only).
    updates_status: Option<watch::Receiver<Arc<Vec<crate::admin::UpdateStoreStatus>>>>,
    /// The update keys and rules, replaced by each successful reload; `None` when no zone
    /// took updates at start-up.
    updates: Option<Arc<super::updates::UpdateHandle>>,
    shutdown: CancellationToken,
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Waits for the Kubernetes snapshot to change; never resolves without a source.
async fn kube_changed(kube: &mut Option<Kube>) -> Result<(), watch::error::RecvError> {
    match kube {
        Some(k) => k.rx.changed().await,
        None => std::future::pending().await,
    }
}

fn now_secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl Builder {
    /// Starts the probes and publishes the first table.
    pub fn start(
        loaded: Loaded,
        config_path: Option<PathBuf>,
        watched: watch::Sender<super::watch::Watched>,
        dynamic: Arc<Dynamic>,
        shutdown: CancellationToken,
    ) -> Result<Builder, AppError> {
        let probes = start_probes(&loaded.config, &shutdown)?;
        let kube = start_kube(&loaded, &shutdown);
        let build = BuildThreads::start().map_err(AppError::BuildThreads)?;
        let rankings = RankWorker::start().map_err(AppError::BuildThreads)?;
        let first = Arc::new(loaded.build(Inputs::default(), 1));
        let table = Arc::new(ArcSwap::new(first.table().clone()));
        let (status_tx, status) = watch::channel(Arc::new(Status::default()));
        let now = SystemTime::now();
        let mut b = Builder {
            table,
            current: first,
            rankings,
            status,
            status_tx,
            loaded: Arc::new(loaded),
            build,
            config_path,
            loaded_at: now,
            probes,
            kube,
            admin: AdminState::default(),
            admin_error: None,
            last_reload: None,
            generation: 0,
            built_at: now,
            draining: false,
            watched,
            unchecked_warned: HashSet::new(),
            dynamic,
            updates_status: None,
            updates: None,
            shutdown,
        };
        b.update_watched();
        b.read_admin_state();
        b.warn_unchecked();
        let (inputs, generation, started) = (b.inputs(), b.generation + 1, Instant::now());
        let built = b.loaded.build_after(&b.current, inputs, generation);
        b.install(Some(built), generation, started);
        Ok(b)
    }

    /// Where /status reads the update stores' state from, and the keys and rules a reload
    /// replaces.
    pub fn set_updates(
        &mut self,
        handle: Arc<super::updates::UpdateHandle>,
        rx: watch::Receiver<Arc<Vec<crate::admin::UpdateStoreStatus>>>,
    ) {
        self.updates = Some(handle);
        self.updates_status = Some(rx);
    }

    pub async fn run(mut self, mut events: mpsc::Receiver<Event>) {
        let mut refresh = tokio::time::interval(STATUS_REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut health_open = true;
        let mut kube_open = self.kube.is_some();
        loop {
            // Until every cluster has listed, readiness is published again when its wait ends.
            let sync_deadline = self.kube.as_ref().filter(|k| !k.rx.borrow().all_synced()).map(Kube::sync_deadline);
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                changed = self.probes.rx.changed(), if health_open => {
                    // A flip: rebuild now (the flip must reach answers within 100 ms).
                    if changed.is_err() {
                        health_open = false;
                        continue;
                    }
                    self.publish().await;
                }
                changed = kube_changed(&mut self.kube), if kube_open => {
                    if changed.is_err() {
                        kube_open = false;
                        continue;
                    }
                    self.retarget();
                    self.warn_unchecked();
                    self.publish().await;
                }
                _ = sleep_until_some(sync_deadline), if sync_deadline.is_some_and(|at| at > Instant::now()) => {
                    self.publish_status();
                }
                event = events.recv() => match event {
                    Some(Event::Reload(why)) => {
                        if self.reload(why) {
                            kube_open = self.kube.is_some();
                        }
                        self.publish().await;
                    }
                    Some(Event::AdminState) => {
                        self.read_admin_state();
                        self.publish().await;
                    }
                    Some(Event::Dynamic(dynamic, done)) => {
                        self.dynamic = dynamic;
                        self.publish().await;
                        let _ = done.send(());
                    }
                    Some(Event::Draining) => {
                        self.draining = true;
                        self.publish_status();
                    }
                    None => return,
                },
                _ = refresh.tick() => {
                    // Signatures within their refresh margin of expiring: a new table signs them
                    // again (the rest are reused), off this task, while the old one serves.
                    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                    if self.loaded.needs_resigning(&self.table.load(), now) {
                        self.publish().await;
                    } else {
                        self.publish_status();
                    }
                }
            }
        }
    }

    /// The run-time inputs: probe verdicts with operator overrides applied.
    fn inputs(&self) -> Inputs {
        let health = self.probes.rx.borrow().clone();
        let mut endpoint_down: HashSet<(String, IpAddr)> = health.down().cloned().collect();
        for (key, forced) in &self.admin.endpoints {
            match forced {
                Forced::Down => {
                    endpoint_down.insert(key.clone());
                }
                Forced::Up => {
                    endpoint_down.remove(key);
                }
            }
        }
        let sites = |want: Forced| self.admin.sites.iter().filter(|(_, f)| **f == want).map(|(s, _)| *s).collect();
        let kube = self.kube_snapshot();
        Inputs {
            endpoint_down,
            sites_down: sites(Forced::Down),
            sites_up: sites(Forced::Up),
            discovered: kube.as_ref().map(|k| k.discovered.clone()).unwrap_or_default(),
            client_networks: kube.as_ref().map(|k| k.client_networks.clone()).unwrap_or_default(),
            dynamic: self.dynamic.clone(),
        }
    }

    /// Builds a new table on the build thread and publishes it, then the status.
    async fn publish(&mut self) {
        let started = Instant::now();
        let inputs = Arc::new(self.inputs());
        let generation = self.generation + 1;
        let loaded = self.loaded.clone();
        // The table served now was built by this builder from the same `loaded` (a reload
        // builds in full): the rebuild shares its routes that the change does not reach.
        let previous = self.current.clone();
        // Building is pure and validated inputs cannot fail it; should a bug panic anyway, the
        // last good table keeps serving.
        let built = self.build.build(move || loaded.rebuild(&previous, inputs.clone(), generation)).await;
        self.install(built, generation, started);
    }

    /// Publishes a built table (the old one is freed on the build thread), then the status;
    /// `None` is a build that panicked.
    fn install(&mut self, built: Option<Built>, generation: u64, started: Instant) {
        let Some(built) = built else {
            counter!(metrics::REBUILDS, "result" => "failed").increment(1);
            warn!(generation, "building the routing table failed; the previous table keeps serving");
            return;
        };
        self.generation = generation;
        let old = self.table.swap(built.table().clone());
        self.build.drop_later(old);
        self.build.drop_later(std::mem::replace(&mut self.current, Arc::new(built)));
        // A build may have asked for rankings (a new database, a new site list).
        self.rankings.fill(&self.loaded);
        self.built_at = SystemTime::now();
        let took = started.elapsed();
        histogram!(metrics::BUILD_DURATION).record(took.as_secs_f64());
        counter!(metrics::REBUILDS, "result" => "ok").increment(1);
        gauge!(metrics::GENERATION).set(self.generation as f64);
        if let Some(expires) = self.current.table().signed().and_then(crate::routing::Signed::earliest_expiry) {
            gauge!(metrics::DNSSEC_EXPIRY).set(f64::from(expires));
        }
        tracing::debug!(generation = self.generation, took_us = took.as_micros() as u64, "routing table published");
        self.publish_status();
    }

    fn kube_snapshot(&self) -> Option<Arc<KubeSnapshot>> {
        self.kube.as_ref().map(|k| {
            let current = k.rx.borrow().clone();
            match &k.previous {
                Some(prev) if !current.all_synced() => Arc::new(current.with_fallback(prev)),
                _ => current,
            }
        })
    }

    /// True once readiness no longer waits for unsynced clusters (`kubernetes.sync_timeout`).
    fn kube_wait_over(&self) -> bool {
        self.kube.as_ref().is_none_or(|k| Instant::now() >= k.sync_deadline())
    }

    /// Gives the monitor every address a health-checked name can answer with now.
    fn retarget(&mut self) {
        let targets = all_targets(&self.loaded.config, &self.probes.configured, self.kube_snapshot().as_deref());
        if targets != self.probes.targets {
            self.probes.monitor.set_targets(targets.iter().cloned().collect());
            self.probes.targets = targets;
        }
    }

    /// Warns, once per name and (re)load, about geo names fed by Kubernetes that have no
    /// health check: when their site loses power, its API server goes too, nothing takes
    /// their addresses out, and clients are sent to a dead site.
    fn warn_unchecked(&mut self) {
        let config = &self.loaded.config;
        if config.kubernetes.clusters.is_empty() {
            return;
        }
        let kube = self.kube_snapshot();
        let discovered: HashSet<&Name> = kube.iter().flat_map(|k| k.discovered.iter().map(|d| &d.name)).collect();
        for g in config.zones.iter().flat_map(|z| &z.geo) {
            let fed = g.sites.is_empty() || discovered.contains(&g.name);
            if fed && g.health_check.is_none() && self.unchecked_warned.insert(g.name.clone()) {
                warn!(
                    name = %g.name,
                    "geo name fed by Kubernetes has no health_check: if its site loses power (and its API server \
                     with it), nothing takes its addresses out of the answers; give it a health_check"
                );
            }
        }
    }

    fn publish_status(&self) {
        let health = self.probes.rx.borrow().clone();
        let table = self.table.load_full();
        let kube = self.kube_snapshot();
        let updates = self.updates_status.as_ref().map(|rx| rx.borrow().clone()).unwrap_or_default();
        let facts = status::Facts {
            config_path: self.config_path.as_deref(),
            loaded_at: self.loaded_at,
            last_reload: self.last_reload.as_ref(),
            geoip: self.loaded.geoip.as_deref(),
            admin: &self.admin,
            admin_error: self.admin_error.as_deref(),
            draining: self.draining,
            built_at: self.built_at,
            kube: kube.as_deref(),
            kube_waiting: !self.kube_wait_over(),
            updates: &updates,
        };
        let old = self.status_tx.send_replace(Arc::new(status::build(&facts, &table, &health)));
        // The old document holds the table it described: if that was its last holder (the
        // table has just been replaced), it is freed off the runtime, as tables are.
        self.build.drop_later(old);
    }

    /// Reloads the config and GeoIP database; keeps the old ones on any error. Returns true
    /// when the Kubernetes source was restarted.
    fn reload(&mut self, why: &'static str) -> bool {
        let Some(path) = self.config_path.clone() else {
            warn!(reason = why, "reload asked, but the config was not loaded from a file");
            return false;
        };
        let at = now_secs(SystemTime::now());
        let loaded = super::load(&path).map_err(|e| e.to_string()).and_then(|loaded| {
            verifying_client(&loaded.config, &self.probes.clients).map_err(|e| e.to_string())?;
            Ok(loaded)
        });
        match loaded {
            Ok(loaded) => {
                let mut restarted = false;
                let old_clusters = self.kube.as_ref().map_or(&[][..], |k| &k.config.clusters[..]);
                let clusters_changed = old_clusters != loaded.config.kubernetes.clusters.as_slice()
                    || loaded.config.sites.iter().map(|s| &s.name).ne(self.loaded.config.sites.iter().map(|s| &s.name));
                if clusters_changed {
                    let same_sites = loaded.config.sites.iter().map(|s| &s.name).eq(self
                        .loaded
                        .config
                        .sites
                        .iter()
                        .map(|s| &s.name));
                    // Site ids index the site list: an old snapshot is only meaningful with the same sites.
                    let previous = self.kube_snapshot().filter(|_| same_sites);
                    if let Some(old) = self.kube.take() {
                        old.token.cancel();
                    }
                    self.kube = start_kube(&loaded, &self.shutdown);
                    if let Some(k) = self.kube.as_mut() {
                        k.previous = previous;
                    }
                    restarted = true;
                } else if let Some(k) = self.kube.as_mut() {
                    // Only the sync timeout can differ.
                    k.config = loaded.config.kubernetes.clone();
                }
                self.probes.configured = configured_targets(&loaded.config);
                match &self.updates {
                    Some(handle) => handle.reconfigure(&loaded.config),
                    None => {
                        for z in loaded.config.zones.iter().filter(|z| z.updates.is_some()) {
                            warn!(zone = %z.apex, "the reloaded config starts updates for this zone: that needs a restart; the zone takes no updates until then");
                        }
                    }
                }
                self.loaded = Arc::new(loaded);
                self.loaded_at = SystemTime::now();
                self.retarget();
                self.unchecked_warned.clear();
                self.warn_unchecked();
                self.update_watched();
                self.read_admin_state();
                counter!(metrics::RELOADS, "result" => "ok").increment(1);
                info!(reason = why, config = %path.display(), "config reloaded");
                self.last_reload = Some(ReloadStatus { at, result: "ok", error: None });
                restarted
            }
            Err(error) => {
                counter!(metrics::RELOADS, "result" => "failed").increment(1);
                warn!(reason = why, %error, "reload rejected; the previous config keeps serving");
                self.last_reload = Some(ReloadStatus { at, result: "failed", error: Some(error) });
                false
            }
        }
    }

    /// Points the file watcher at the files the current config names.
    fn update_watched(&self) {
        let c = &self.loaded.config;
        let w = super::watch::Watched {
            config: self
                .config_path
                .iter()
                .cloned()
                .chain(c.geoip.iter().cloned())
                .chain(self.loaded.secret_files.iter().cloned())
                .collect(),
            admin_state: c.server.admin_state.clone(),
        };
        self.watched.send_if_modified(|old| {
            let changed = *old != w;
            *old = w;
            changed
        });
    }

    /// Reads the admin state file; an unreadable or invalid file keeps the previous overrides.
    fn read_admin_state(&mut self) {
        let Some(path) = self.loaded.config.server.admin_state.clone() else {
            self.admin = AdminState::default();
            return;
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            // No file: no overrides (the operator has not drained anything yet).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot read the admin state file; keeping the previous overrides");
                self.admin_error = Some(format!("cannot read {}: {e}", path.display()));
                return;
            }
        };
        match config::parse_admin_state(&text, &self.loaded.config) {
            Ok(state) => {
                if state != self.admin {
                    info!(path = %path.display(), sites = state.sites.len(), endpoints = state.endpoints.len(), "admin state applied");
                }
                self.admin = state;
                self.admin_error = None;
            }
            Err(problems) => {
                let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
                warn!(path = %path.display(), problems = %list.join("; "), "invalid admin state file; keeping the previous overrides");
                self.admin_error = Some(list.join("; "));
            }
        }
    }
}
