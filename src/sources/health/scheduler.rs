//! The probe scheduler: one task per distinct target probing on `tokio::time`, and one
//! aggregator task that owns every endpoint's hysteresis and is the single writer of the
//! [`HealthSnapshot`] watch channel.
//!
//! Imports `config` and the sibling `state`/`probe` modules only; never routing, dns or app (the
//! app turns [`HealthSnapshot::down`] into routing inputs). The network is reached only through
//! the [`Prober`] trait, so everything here is tested with paused time and a scripted prober.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::probe::{self, ClientError, Clients};
use super::state::{FailReason, Flip, Hysteresis, Outcome, State};
use crate::config::HealthCheck;

/// At most this many probes are in flight at once, across all checks: a config with thousands of
/// endpoints (or all of them timing out together) must not open thousands of sockets at once.
/// 64 keeps a 2 s timeout / 5 s interval check of several hundred endpoints on schedule.
pub const MAX_IN_FLIGHT_PROBES: usize = 64;

/// Probe results waiting for the aggregator. Each probe task has at most one result in flight,
/// so this only needs to absorb a burst; a full queue makes probe tasks wait (backpressure).
const REPORT_QUEUE: usize = 256;

/// Results that flip nothing are folded into the published snapshot without notifying readers
/// (see [`spawn_with`]), at most this often, so `/status` shows recent probe results without
/// copying the whole snapshot on every probe.
pub const STATUS_REFRESH: Duration = Duration::from_secs(1);

/// `reason` of an endpoint that has no verdict yet.
pub const NOT_YET_CHECKED: &str = "not yet checked";

/// One endpoint to probe with one health check.
///
/// Equality compares every field; hashing uses only [`Target::key`] (consistent with equality:
/// equal targets have equal keys). Targets with the same key are probed once.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The health check's name (its key under `health_checks`).
    pub check: String,
    pub config: HealthCheck,
    pub addr: IpAddr,
}

// Every field of `HealthCheck` (durations, counts, strings, ports) has a total equality; it just
// does not derive `Eq`.
impl Eq for Target {}

impl Hash for Target {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.check.hash(state);
        self.addr.hash(state);
    }
}

impl Target {
    /// The identity of a probed endpoint: (check name, address), as in `routing::Inputs`.
    pub fn key(&self) -> (String, IpAddr) {
        (self.check.clone(), self.addr)
    }
}

/// Runs one probe attempt. The scheduler bounds it with the check's timeout as well.
pub trait Prober: Send + Sync + 'static {
    fn probe(&self, target: &Target) -> impl Future<Output = Outcome> + Send;
}

/// The real prober: HTTP/HTTPS/TCP over the network ([`probe::run`]).
#[derive(Debug, Clone)]
pub struct NetProber {
    clients: Clients,
}

impl NetProber {
    pub fn new(clients: Clients) -> NetProber {
        NetProber { clients }
    }
}

impl Prober for NetProber {
    async fn probe(&self, target: &Target) -> Outcome {
        probe::run(&target.config.probe, target.addr, target.config.timeout, &self.clients).await
    }
}

/// What the health checks say about every endpoint. Immutable once published.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthSnapshot {
    pub endpoints: BTreeMap<(String, IpAddr), EndpointHealth>,
}

impl HealthSnapshot {
    /// Endpoints judged down, as (check name, address). `Unknown` is not down (fail-open).
    pub fn down(&self) -> impl Iterator<Item = &(String, IpAddr)> {
        self.endpoints.iter().filter(|(_, h)| h.state == State::Down).map(|(k, _)| k)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EndpointHealth {
    pub state: State,
    /// Why the endpoint is in `state`: the outcome of the deciding probe, or "not yet checked".
    pub reason: String,
    /// When `state` was entered (the scheduler's start for `Unknown`).
    pub since: SystemTime,
    /// When the last probe finished, if any.
    pub last_checked: Option<SystemTime>,
    /// The last probe's outcome ("pass: HTTP status 200", "fail: connection refused").
    pub last_outcome: Option<String>,
    /// Probes completed so far.
    pub probes: u64,
}

impl EndpointHealth {
    fn unchecked(now: SystemTime) -> EndpointHealth {
        EndpointHealth {
            state: State::Unknown,
            reason: NOT_YET_CHECKED.to_owned(),
            since: now,
            last_checked: None,
            last_outcome: None,
            probes: 0,
        }
    }
}

/// A running set of probes. Tasks run until the shutdown token given to [`spawn`] is
/// cancelled; dropping the monitor does not stop them.
#[derive(Debug)]
pub struct Monitor {
    /// The aggregator holds the only sender; receivers wake on state flips only.
    snapshot: watch::Receiver<Arc<HealthSnapshot>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Monitor {
    /// A receiver of health snapshots. `changed()` fires when an endpoint's state flips;
    /// `borrow()` also sees probe results folded in since (every [`STATUS_REFRESH`] at most).
    pub fn subscribe(&self) -> watch::Receiver<Arc<HealthSnapshot>> {
        self.snapshot.clone()
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<HealthSnapshot> {
        self.snapshot.borrow().clone()
    }

    /// Waits until every task has stopped (after the shutdown token is cancelled).
    pub async fn stopped(self) {
        for task in self.tasks {
            if let Err(e) = task.await
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}

/// Starts probing `targets` over the network (builds the shared HTTP clients once).
pub fn spawn(targets: Vec<Target>, shutdown: CancellationToken) -> Result<Monitor, ClientError> {
    Ok(spawn_with(targets, NetProber::new(Clients::new()?), shutdown))
}

/// Starts probing `targets` with `prober`: one task per distinct [`Target::key`] (the first
/// target with a key wins), plus the aggregator.
///
/// Each probe task waits a random [0, jitter] before its first probe (so a restart does not
/// probe everything in the same instant), then starts a probe every `interval` + random
/// [0, jitter], measured from the previous start. At most [`MAX_IN_FLIGHT_PROBES`] run at once.
///
/// Publishing: the snapshot starts with every endpoint `Unknown`. A result that flips a state is
/// published at once (`send_replace`: receivers wake), so the flip reaches readers right after
/// the deciding probe. A result that flips nothing is recorded (`probes`, `last_checked`,
/// `last_outcome`) and folded in silently (`send_if_modified` returning false: the value is
/// replaced but nobody wakes) at most every [`STATUS_REFRESH`], because the routing table is
/// rebuilt on every notification and only flips change it.
pub fn spawn_with<P: Prober>(targets: Vec<Target>, prober: P, shutdown: CancellationToken) -> Monitor {
    let mut seen = HashSet::new();
    let targets: Vec<Target> = targets.into_iter().filter(|t| seen.insert(t.key())).collect();

    let now = SystemTime::now();
    let initial =
        HealthSnapshot { endpoints: targets.iter().map(|t| (t.key(), EndpointHealth::unchecked(now))).collect() };
    let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(initial.clone()));
    // Probe tasks -> aggregator: one writer of the snapshot, bounded for backpressure.
    let (report_tx, report_rx) = mpsc::channel(REPORT_QUEUE);
    let prober = Arc::new(prober);
    // Shared by all probe tasks; never closed.
    let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT_PROBES));

    let mut tasks = Vec::with_capacity(targets.len() + 1);
    for (index, target) in targets.iter().enumerate() {
        let task = ProbeTask {
            index,
            target: target.clone(),
            prober: prober.clone(),
            limit: limit.clone(),
            reports: report_tx.clone(),
        };
        tasks.push(tokio::spawn(task.run(shutdown.clone())));
    }
    drop(report_tx);
    let aggregator = Aggregator { targets, current: initial, snapshot: snapshot_tx, refresh_at: None };
    tasks.push(tokio::spawn(aggregator.run(report_rx, shutdown)));
    Monitor { snapshot: snapshot_rx, tasks }
}

/// One probe result, from a probe task to the aggregator.
#[derive(Debug)]
struct Report {
    /// Index of the target in the aggregator's list.
    index: usize,
    outcome: Outcome,
}

struct ProbeTask<P> {
    index: usize,
    target: Target,
    prober: Arc<P>,
    limit: Arc<Semaphore>,
    reports: mpsc::Sender<Report>,
}

impl<P: Prober> ProbeTask<P> {
    async fn run(self, shutdown: CancellationToken) {
        let config = &self.target.config;
        let mut next = Instant::now() + random_upto(config.jitter);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {}
            }
            let started = Instant::now();
            let outcome = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                outcome = self.attempt() => outcome,
            };
            let report = Report { index: self.index, outcome };
            if self.reports.send(report).await.is_err() {
                return; // the aggregator stopped: shutting down
            }
            next = started + config.interval + random_upto(config.jitter);
        }
    }

    /// One probe under the global limit, bounded by the check's timeout (the real prober also
    /// enforces it; this makes any prober obey it).
    async fn attempt(&self) -> Outcome {
        let _permit = self.limit.acquire().await.expect("the probe semaphore is never closed");
        let timeout = self.target.config.timeout;
        match tokio::time::timeout(timeout, self.prober.probe(&self.target)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::fail(FailReason::Timeout(timeout)),
        }
    }
}

/// A uniformly random duration in [0, max].
fn random_upto(max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::random_range(0..=nanos))
}

/// Owns every endpoint's hysteresis and the current snapshot; the only writer of the watch.
struct Aggregator {
    targets: Vec<Target>,
    /// The working copy, updated on every result; cloned into the watch when published.
    current: HealthSnapshot,
    snapshot: watch::Sender<Arc<HealthSnapshot>>,
    /// When unpublished non-flip results are due to be folded in, if any are pending.
    refresh_at: Option<Instant>,
}

impl Aggregator {
    async fn run(mut self, mut reports: mpsc::Receiver<Report>, shutdown: CancellationToken) {
        let mut machines: Vec<Hysteresis> =
            self.targets.iter().map(|t| Hysteresis::new(t.config.rise, t.config.fall)).collect();
        // Not yet judged counts as up (fail-open): say so from the start.
        for t in &self.targets {
            ::metrics::gauge!(crate::metrics::ENDPOINT_UP, "check" => t.check.clone(), "endpoint" => t.addr.to_string()).set(1.0);
        }
        loop {
            let refresh_at = self.refresh_at;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                report = reports.recv() => {
                    let Some(Report { index, outcome }) = report else { return };
                    let flip = machines[index].observe(&outcome);
                    self.record(index, &outcome, flip);
                }
                _ = sleep_until_some(refresh_at), if refresh_at.is_some() => {
                    self.publish(false);
                }
            }
        }
    }

    fn record(&mut self, index: usize, outcome: &Outcome, flip: Option<Flip>) {
        let target = &self.targets[index];
        let key = target.key();
        let now = SystemTime::now();
        let entry = self.current.endpoints.get_mut(&key).expect("every target has an entry from the start");
        entry.probes += 1;
        entry.last_checked = Some(now);
        entry.last_outcome = Some(outcome.to_string());
        let endpoint = target.addr.to_string();
        let result = match outcome {
            Outcome::Pass { .. } => "pass",
            Outcome::Fail { reason } => reason.kind(),
        };
        ::metrics::counter!(crate::metrics::PROBES, "check" => target.check.clone(), "endpoint" => endpoint.clone(), "result" => result)
            .increment(1);
        match flip {
            Some(flip) => {
                ::metrics::counter!(crate::metrics::HEALTH_FLIPS, "check" => target.check.clone(), "endpoint" => endpoint.clone(), "to" => flip.to.as_str())
                    .increment(1);
                ::metrics::gauge!(crate::metrics::ENDPOINT_UP, "check" => target.check.clone(), "endpoint" => endpoint)
                    .set(if flip.to == State::Down { 0.0 } else { 1.0 });
                let reason = match outcome {
                    Outcome::Pass { detail } => detail.clone(),
                    Outcome::Fail { reason } => reason.to_string(),
                };
                log_flip(target, flip, &reason, outcome);
                entry.state = flip.to;
                entry.reason = reason;
                entry.since = now;
                self.publish(true);
            }
            None => {
                if self.refresh_at.is_none() {
                    self.refresh_at = Some(Instant::now() + STATUS_REFRESH);
                }
            }
        }
    }

    /// Replaces the published snapshot; wakes receivers only when `notify`.
    fn publish(&mut self, notify: bool) {
        let next = Arc::new(self.current.clone());
        if notify {
            // send_replace works with no receivers too (the monitor may have been dropped).
            self.snapshot.send_replace(next);
        } else {
            self.snapshot.send_if_modified(|value| {
                *value = next;
                false
            });
        }
        self.refresh_at = None;
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn log_flip(target: &Target, flip: Flip, reason: &str, outcome: &Outcome) {
    match (flip.to, outcome) {
        (State::Down, Outcome::Fail { reason: why }) => tracing::warn!(
            check = %target.check,
            address = %target.addr,
            from = flip.from.as_str(),
            reason,
            kind = why.kind(),
            "health check endpoint down"
        ),
        _ => tracing::info!(
            check = %target.check,
            address = %target.addr,
            from = flip.from.as_str(),
            to = flip.to.as_str(),
            reason,
            "health check endpoint up"
        ),
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
