//! The probe scheduler: one task per distinct target probing on `tokio::time`, and one
//! aggregator task that owns the probe tasks and every endpoint's hysteresis, and is the
//! single writer of the [`HealthSnapshot`] watch channel.
//!
//! The targets change while it runs ([`Monitor::set_targets`]): the app sets them from the
//! config and from what Kubernetes discovers. State is kept per (check, address), not per
//! target list, so a verdict survives the target set changing around it.
//!
//! Imports `config` and the sibling `state`/`probe` modules only; never routing, dns or app (the
//! app turns [`HealthSnapshot::down`] into routing inputs). The network is reached only through
//! the [`Prober`] trait, so everything here is tested with paused time and a scripted prober.

use std::collections::BTreeMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::aggregator::Aggregator;
#[cfg(test)]
use super::aggregator::random_upto;
use super::probe::{self, Clients};
use super::state::{Outcome, State};
use crate::config::HealthCheck;

/// At most this many probes are in flight at once, across all checks: a config with thousands of
/// endpoints (or all of them timing out together) must not open thousands of sockets at once.
/// 64 keeps a 2 s timeout / 5 s interval check of several hundred endpoints on schedule.
pub const MAX_IN_FLIGHT_PROBES: usize = 64;

/// Probe results waiting for the aggregator. Each probe task has at most one result in flight,
/// so this only needs to absorb a burst; a full queue makes probe tasks wait (backpressure).
pub(super) const REPORT_QUEUE: usize = 256;

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
///
/// Holds the endpoints probed now and, for [`RETAIN_VERDICTS`], those that left the targets
/// (`probed: false`) with the verdict they left with: an address that comes back (to a
/// name's config, or from Kubernetes) is judged by it in the very first table that has it,
/// before the monitor has even seen the new target set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthSnapshot {
    pub endpoints: BTreeMap<(String, IpAddr), EndpointHealth>,
}

impl HealthSnapshot {
    /// Endpoints judged down, as (check name, address), probed now or retained.
    /// `Unknown` is not down (fail-open).
    pub fn down(&self) -> impl Iterator<Item = &(String, IpAddr)> {
        self.endpoints.iter().filter(|(_, h)| h.state == State::Down).map(|(k, _)| k)
    }

    /// The endpoints probed now (for /status).
    pub fn probed(&self) -> impl Iterator<Item = (&(String, IpAddr), &EndpointHealth)> {
        self.endpoints.iter().filter(|(_, h)| h.probed)
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
    /// Probes completed so far by result, in [`PROBE_RESULTS`] order (for metrics).
    pub results: [u64; PROBE_RESULTS.len()],
    /// State changes so far to up and to down (for metrics).
    pub flips_up: u64,
    pub flips_down: u64,
    /// True while the endpoint is a target; false for a retained verdict.
    pub probed: bool,
}

/// The closed set of probe results, as metric labels: a pass or a [`super::FailReason::kind`].
pub const PROBE_RESULTS: [&str; 7] = ["pass", "status", "timeout", "refused", "connect", "tls", "other"];

/// The index of `outcome` in [`PROBE_RESULTS`].
pub(super) fn result_index(outcome: &super::Outcome) -> usize {
    let label = match outcome {
        super::Outcome::Pass { .. } => "pass",
        super::Outcome::Fail { reason } => reason.kind(),
    };
    PROBE_RESULTS.iter().position(|r| *r == label).expect("every failure kind is listed in PROBE_RESULTS")
}

impl EndpointHealth {
    pub(super) fn unchecked(now: SystemTime) -> EndpointHealth {
        EndpointHealth {
            state: State::Unknown,
            reason: NOT_YET_CHECKED.to_owned(),
            since: now,
            last_checked: None,
            last_outcome: None,
            probes: 0,
            results: [0; PROBE_RESULTS.len()],
            flips_up: 0,
            flips_down: 0,
            probed: true,
        }
    }
}

/// How long an address that left every health-checked name keeps its verdict. Within this
/// time a returning address (a LoadBalancer IP that moves away and back, a node that leaves
/// and rejoins) resumes in the state it left in: a dead address never comes back as
/// `Unknown` (fail-open). Long enough for rollouts, re-creations and short outages; after
/// it, a returning address is new again.
pub const RETAIN_VERDICTS: Duration = Duration::from_secs(3600);

/// A running set of probes whose targets can change while it runs. Its tasks run until the
/// shutdown token given to [`spawn`] is cancelled; dropping the monitor does not stop them.
#[derive(Debug)]
pub struct Monitor {
    /// The aggregator holds the only sender; receivers wake on state flips only.
    snapshot: watch::Receiver<Arc<HealthSnapshot>>,
    /// The wanted targets: written by [`Monitor::set_targets`], read by the aggregator, which
    /// only needs the latest set (`watch`).
    targets: watch::Sender<Vec<Target>>,
    aggregator: JoinHandle<()>,
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

    /// Replaces the set of targets. New ones are probed at once; kept ones go on as they were
    /// (a changed check is restarted with its verdict kept); dropped ones stop being probed
    /// and keep their verdict for [`RETAIN_VERDICTS`].
    pub fn set_targets(&self, targets: Vec<Target>) {
        // Kept even when the aggregator has stopped (shutdown): nothing probes then.
        self.targets.send_replace(targets);
    }

    /// Waits until every task has stopped (after the shutdown token is cancelled).
    pub async fn stopped(self) {
        if let Err(e) = self.aggregator.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// Starts probing `targets` over the network with the shared HTTP `clients`.
pub fn spawn(targets: Vec<Target>, clients: Clients, shutdown: CancellationToken) -> Monitor {
    spawn_with(targets, NetProber::new(clients), shutdown)
}

/// Starts probing `targets` with `prober`: one task per distinct [`Target::key`] (the first
/// target with a key wins), plus the aggregator, which owns them.
///
/// Each probe task probes at once, then starts a probe every `interval` + random [0, jitter],
/// measured from the previous start, so targets added together drift apart. At most
/// [`MAX_IN_FLIGHT_PROBES`] run at once.
///
/// Publishing: a new endpoint starts `Unknown`. A result that flips a state is published at
/// once (`send_replace`: receivers wake), so the flip reaches readers right after the
/// deciding probe. A result that flips nothing is recorded (`probes`, `last_checked`,
/// `last_outcome`) and folded in silently (`send_if_modified` returning false: the value is
/// replaced but nobody wakes) at most every [`STATUS_REFRESH`], because the routing table is
/// rebuilt on every notification and only flips change it.
pub fn spawn_with<P: Prober>(targets: Vec<Target>, prober: P, shutdown: CancellationToken) -> Monitor {
    let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(HealthSnapshot::default()));
    let (targets_tx, targets_rx) = watch::channel(Vec::new());
    let aggregator = Aggregator::start(targets, prober, snapshot_tx, targets_rx, shutdown);
    Monitor { snapshot: snapshot_rx, targets: targets_tx, aggregator }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
