//! The aggregator task and the probe tasks it owns: one task per distinct target probing on
//! `tokio::time` under a global concurrency limit, reporting to the aggregator, which keeps
//! every endpoint's hysteresis and is the single writer of the [`HealthSnapshot`] watch.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::scheduler::{
    EndpointHealth, HealthSnapshot, MAX_IN_FLIGHT_PROBES, Prober, REPORT_QUEUE, RETAIN_VERDICTS, STATUS_REFRESH,
    Target, result_index,
};
use super::state::{FailReason, Flip, Hysteresis, Outcome, State};

/// One probe result, from a probe task to the aggregator.
#[derive(Debug)]
struct Report {
    key: (String, IpAddr),
    /// The epoch of the task that probed: a result from a task since stopped or restarted
    /// (a check changed by a reload) is dropped.
    epoch: u64,
    outcome: Outcome,
}

struct ProbeTask<P> {
    key: (String, IpAddr),
    epoch: u64,
    target: Target,
    prober: Arc<P>,
    limit: Arc<Semaphore>,
    reports: mpsc::Sender<Report>,
}

impl<P: Prober> ProbeTask<P> {
    async fn run(self, shutdown: CancellationToken) {
        let config = &self.target.config;
        loop {
            let started = Instant::now();
            let outcome = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                outcome = self.attempt() => outcome,
            };
            let report = Report { key: self.key.clone(), epoch: self.epoch, outcome };
            if self.reports.send(report).await.is_err() {
                return; // the aggregator stopped: shutting down
            }
            let next = started + config.interval + random_upto(config.jitter);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {}
            }
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
pub(super) fn random_upto(max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::random_range(0..=nanos))
}

/// Everything known about one (check, address).
struct Endpoint {
    target: Target,
    machine: Hysteresis,
    health: EndpointHealth,
    /// The epoch of the task probing it now; reports of other epochs are stale.
    epoch: u64,
    /// Stops the probe task; `None` once the endpoint left the targets.
    task: Option<CancellationToken>,
    /// When it left the targets: its verdict is kept until [`RETAIN_VERDICTS`] after this.
    retired_at: Option<Instant>,
}

/// Owns every endpoint's hysteresis, the probe tasks and the current snapshot; the only
/// writer of the snapshot watch.
pub(super) struct Aggregator<P> {
    endpoints: BTreeMap<(String, IpAddr), Endpoint>,
    prober: Arc<P>,
    limit: Arc<Semaphore>,
    reports: mpsc::Sender<Report>,
    /// Every probe task; reaped as they end, so a panic in one is not lost.
    tasks: JoinSet<()>,
    shutdown: CancellationToken,
    snapshot: watch::Sender<Arc<HealthSnapshot>>,
    /// When unpublished non-flip results are due to be folded in, if any are pending.
    refresh_at: Option<Instant>,
    next_epoch: u64,
}

impl<P: Prober> Aggregator<P> {
    /// Starts the aggregator, probing `targets` (applied before it starts, so the first
    /// snapshot already lists every target as `Unknown`).
    pub(super) fn start(
        targets: Vec<Target>,
        prober: P,
        snapshot: watch::Sender<Arc<HealthSnapshot>>,
        wanted: watch::Receiver<Vec<Target>>,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        // Probe tasks -> aggregator: one writer of the snapshot, bounded for backpressure.
        let (report_tx, report_rx) = mpsc::channel(REPORT_QUEUE);
        let mut aggregator = Aggregator {
            endpoints: BTreeMap::new(),
            prober: Arc::new(prober),
            // Shared by all probe tasks; never closed.
            limit: Arc::new(Semaphore::new(MAX_IN_FLIGHT_PROBES)),
            reports: report_tx,
            tasks: JoinSet::new(),
            shutdown: shutdown.clone(),
            snapshot,
            refresh_at: None,
            next_epoch: 0,
        };
        aggregator.set_targets(targets);
        tokio::spawn(aggregator.run(wanted, report_rx, shutdown))
    }

    async fn run(
        mut self,
        mut targets: watch::Receiver<Vec<Target>>,
        mut reports: mpsc::Receiver<Report>,
        shutdown: CancellationToken,
    ) {
        let mut purge = tokio::time::interval(RETAIN_VERDICTS / 8);
        purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // False once the monitor is dropped: the last set is probed until shutdown.
        let mut targets_open = true;
        loop {
            let refresh_at = self.refresh_at;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                changed = targets.changed(), if targets_open => {
                    if changed.is_err() {
                        targets_open = false;
                        continue;
                    }
                    let wanted = targets.borrow_and_update().clone();
                    self.set_targets(wanted);
                }
                Some(report) = reports.recv() => {
                    // Results that are already queued (a burst, as when a site goes dark and
                    // its probes fail together) are folded in before one publish.
                    let mut flipped = self.record(report);
                    for _ in 1..REPORT_QUEUE {
                        let Ok(report) = reports.try_recv() else { break };
                        flipped |= self.record(report);
                    }
                    if flipped {
                        self.publish(true);
                    }
                }
                Some(done) = self.tasks.join_next() => {
                    if let Err(e) = done && e.is_panic() {
                        std::panic::resume_unwind(e.into_panic());
                    }
                }
                _ = sleep_until_some(refresh_at), if refresh_at.is_some() => self.publish(false),
                _ = purge.tick() => {
                    if self.purge() {
                        self.publish(false);
                    }
                }
            }
        }
        while let Some(done) = self.tasks.join_next().await {
            if let Err(e) = done
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }

    /// Starts probing what is new, restarts what changed, retires what is gone.
    fn set_targets(&mut self, targets: Vec<Target>) {
        let now = SystemTime::now();
        let mut wanted: HashSet<(String, IpAddr)> = HashSet::with_capacity(targets.len());
        for target in targets {
            let key = target.key();
            if !wanted.insert(key.clone()) {
                continue; // the first target with a key wins
            }
            match self.endpoints.get_mut(&key) {
                Some(e) if e.task.is_some() && e.target == target => {}
                Some(e) => {
                    // Back from retirement, or its check changed: the verdict stays; a changed
                    // rise/fall applies to the streaks from now on.
                    e.machine = e.machine.with_thresholds(target.config.rise, target.config.fall);
                    e.target = target;
                    e.retired_at = None;
                    self.restart(&key);
                }
                None => {
                    let machine = Hysteresis::new(target.config.rise, target.config.fall);
                    let endpoint = Endpoint {
                        target,
                        machine,
                        health: EndpointHealth::unchecked(now),
                        epoch: 0,
                        task: None,
                        retired_at: None,
                    };
                    self.endpoints.insert(key.clone(), endpoint);
                    self.restart(&key);
                }
            }
        }
        let at = Instant::now();
        for (key, e) in &mut self.endpoints {
            if !wanted.contains(key)
                && let Some(task) = e.task.take()
            {
                task.cancel();
                e.retired_at = Some(at);
            }
        }
        self.purge();
        // Silently: a new target is `Unknown` (not down) and a dropped one keeps its verdict,
        // so no routing input changed; /status sees the new set.
        self.publish(false);
    }

    /// (Re)starts the probe task of `key`, whose first probe runs at once.
    fn restart(&mut self, key: &(String, IpAddr)) {
        let e = self.endpoints.get_mut(key).expect("restart is called for a known endpoint");
        if let Some(old) = e.task.take() {
            old.cancel();
        }
        self.next_epoch += 1;
        e.epoch = self.next_epoch;
        let token = self.shutdown.child_token();
        e.task = Some(token.clone());
        let task = ProbeTask {
            key: key.clone(),
            epoch: e.epoch,
            target: e.target.clone(),
            prober: self.prober.clone(),
            limit: self.limit.clone(),
            reports: self.reports.clone(),
        };
        self.tasks.spawn(task.run(token));
    }

    /// Forgets the endpoints retired more than [`RETAIN_VERDICTS`] ago; true if there were any.
    fn purge(&mut self) -> bool {
        let (now, before) = (Instant::now(), self.endpoints.len());
        self.endpoints.retain(|_, e| e.retired_at.is_none_or(|at| now.duration_since(at) < RETAIN_VERDICTS));
        self.endpoints.len() != before
    }

    /// Folds one result in; true when it flipped a state (the caller publishes).
    fn record(&mut self, Report { key, epoch, outcome }: Report) -> bool {
        let Some(entry) = self.endpoints.get_mut(&key).filter(|e| e.epoch == epoch && e.task.is_some()) else {
            return false; // from a task stopped since
        };
        let flip = entry.machine.observe(&outcome);
        let now = SystemTime::now();
        let health = &mut entry.health;
        health.probes += 1;
        health.last_checked = Some(now);
        health.last_outcome = Some(outcome.to_string());
        health.results[result_index(&outcome)] += 1;
        match flip {
            Some(flip) => {
                if flip.to == State::Down {
                    health.flips_down += 1;
                } else {
                    health.flips_up += 1;
                }
                let reason = match &outcome {
                    Outcome::Pass { detail } => detail.clone(),
                    Outcome::Fail { reason } => reason.to_string(),
                };
                log_flip(&entry.target, flip, &reason, &outcome);
                health.state = flip.to;
                health.reason = reason;
                health.since = now;
                true
            }
            None => {
                if self.refresh_at.is_none() {
                    self.refresh_at = Some(Instant::now() + STATUS_REFRESH);
                }
                false
            }
        }
    }

    /// Replaces the published snapshot; wakes receivers only when `notify`.
    fn publish(&mut self, notify: bool) {
        let endpoints = self
            .endpoints
            .iter()
            .map(|(k, e)| {
                let mut h = e.health.clone();
                h.probed = e.task.is_some();
                (k.clone(), h)
            })
            .collect();
        let next = Arc::new(HealthSnapshot { endpoints });
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
