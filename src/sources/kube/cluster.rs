//! One task per cluster: list+watch Services, EndpointSlices and Nodes with kube-rs watchers
//! (default backoff) feeding reflector stores, and send the cluster's translated output and
//! status to the aggregator whenever either changes (debounced).
//!
//! Why the raw watcher events: the stores swap their contents atomically at `InitDone` after
//! every (re-)list, and objects deleted while a watch was broken only disappear then.
//! `applied_objects()` would hide `InitDone`, so this task rebuilds on `Apply`, `Delete` and
//! `InitDone` alike.
//!
//! Outages: stream errors are counted and remembered, never propagated; the stores keep the
//! last known objects, so the last output keeps being published while the API server is away.
//! `connected` goes false on a transport error (the server did not answer) and true again on
//! the next event or successful `/version` probe; one warn per outage, a reminder every
//! [`OUTAGE_REMINDER`] while it lasts, one info on recovery (the kube client's own per-request
//! error lines are off in the default log filter: see `telemetry`).

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, SelectAll};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_stream};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::ClusterStatus;
use super::client;
use super::translate::{self, ClusterOutput};
use crate::config::{ClusterConfig, SiteConfig};

/// Quiet time after the last event before the output is rebuilt: a re-list or a rollout
/// produces bursts of events that should become one snapshot.
const DEBOUNCE_QUIET: Duration = Duration::from_millis(30);
/// Upper bound on the delay a continuous stream of events can impose on a rebuild.
const DEBOUNCE_MAX: Duration = Duration::from_millis(250);
/// How often an API server that stopped answering is asked for `/version` to notice its
/// recovery when the resumed watches have nothing to say.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// While an API server stays unreachable, a reminder is logged this often (one warning when
/// it goes, one line when it is back, and nothing else in between).
const OUTAGE_REMINDER: Duration = Duration::from_secs(300);
/// Retry bounds for building the client (bad kubeconfig, missing in-cluster environment).
const CLIENT_RETRY_MIN: Duration = Duration::from_secs(1);
const CLIENT_RETRY_MAX: Duration = Duration::from_secs(30);

/// What a cluster task tells the aggregator: its status, and its output once the first full
/// list of all three kinds is in (`None` before: a half-listed cluster would report every
/// Service as not ready).
#[derive(Debug, Clone)]
pub(super) struct ClusterView {
    pub status: ClusterStatus,
    pub output: Option<Arc<ClusterOutput>>,
}

/// The three watched kinds, for logs and sync tracking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Services = 0,
    EndpointSlices = 1,
    Nodes = 2,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Services => "services",
            Kind::EndpointSlices => "endpointslices",
            Kind::Nodes => "nodes",
        }
    }
}

/// A watcher event with the object dropped (the reflector already stored it).
enum Signal {
    /// A (re-)list started or delivered an object: the store is buffering, nothing to rebuild.
    Listing,
    /// An object was added, changed or deleted.
    Changed,
    /// A (re-)list completed and the store swapped to it.
    Synced,
}

type Item = (Kind, Result<Signal, watcher::Error>);

/// Everything the task needs, moved into it.
pub(super) struct ClusterTask {
    pub index: usize,
    pub cluster: ClusterConfig,
    pub sites: Arc<[SiteConfig]>,
    /// A ready-made client (tests); `None` builds one from the cluster's config.
    pub client: Option<Client>,
    /// To the aggregator; the aggregator lives as long as any cluster task.
    pub tx: mpsc::Sender<(usize, ClusterView)>,
    pub shutdown: CancellationToken,
}

/// Watches one kind cluster-wide, stores it in `writer`'s store, and reduces events to signals.
fn watch_kind<K>(client: &Client, kind: Kind) -> (Store<K>, BoxStream<'static, Item>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let stream = watch_stream(Api::<K>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        // managedFields are large and never read: keep the stores small.
        .map_ok(|event| event.modify(|obj| obj.managed_fields_mut().clear()))
        .reflect(writer)
        .map(move |result| {
            let signal = result.map(|event| match event {
                Event::Init | Event::InitApply(_) => Signal::Listing,
                Event::Apply(_) | Event::Delete(_) => Signal::Changed,
                Event::InitDone => Signal::Synced,
            });
            (kind, signal)
        })
        .boxed();
    (store, stream)
}

/// True when the error means the API server did not answer (as opposed to answering with an
/// error status, such as 410 Gone or 403 Forbidden).
fn is_transport(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => {
            !matches!(e, kube::Error::Api(_))
        }
        watcher::Error::WatchError(_) | watcher::Error::NoResourceVersion => false,
    }
}

/// True when both outputs would route the same way.
fn same_output(a: &ClusterOutput, b: &ClusterOutput) -> bool {
    a.discovered == b.discovered
        && a.drains == b.drains
        && a.client_networks.len() == b.client_networks.len()
        && a.client_networks.iter().zip(&b.client_networks).all(|(x, y)| x.net == y.net && x.site == y.site)
}

/// One cluster's unreachable spell, for its log lines.
#[derive(Default)]
struct Outage {
    /// When the API server stopped answering; `None` while it answers (or before the first
    /// failure).
    since: Option<Instant>,
    last_said: Option<Instant>,
    /// The API server has answered at least once.
    ever_connected: bool,
}

impl Outage {
    fn start(&mut self, cluster: &str, kind: Kind, error: &watcher::Error) {
        if self.since.is_none() {
            let now = Instant::now();
            self.since = Some(now);
            self.last_said = Some(now);
            warn!(cluster, kind = kind.as_str(), %error, "kubernetes API unreachable; serving the last known state");
        }
    }

    fn remind(&mut self, cluster: &str) {
        let (Some(since), Some(said)) = (self.since, self.last_said) else { return };
        if said.elapsed() >= OUTAGE_REMINDER {
            self.last_said = Some(Instant::now());
            warn!(
                cluster,
                for_secs = since.elapsed().as_secs(),
                "kubernetes API still unreachable; serving the last known state"
            );
        }
    }

    fn end(&mut self, cluster: &str) {
        match self.since.take() {
            Some(since) => info!(cluster, after_secs = since.elapsed().as_secs(), "kubernetes API reachable again"),
            None if !self.ever_connected => info!(cluster, "kubernetes API connected"),
            None => {}
        }
        self.ever_connected = true;
        self.last_said = None;
    }
}

/// Changes waiting to be sent: set by events, taken when the quiet time has passed.
#[derive(Default)]
struct Debounce {
    /// Objects changed: the output must be translated again.
    data: bool,
    /// The status changed.
    status: bool,
    /// When the first change of this burst came.
    first: Option<Instant>,
    quiet_until: Option<Instant>,
}

impl Debounce {
    fn mark(&mut self, data: bool, status: bool) {
        if !(data || status) {
            return;
        }
        let now = Instant::now();
        self.data |= data;
        self.status |= status;
        self.first.get_or_insert(now);
        self.quiet_until = Some(now + DEBOUNCE_QUIET);
    }

    /// When the pending changes are due: after [`DEBOUNCE_QUIET`] without events, and at most
    /// [`DEBOUNCE_MAX`] after the first.
    fn deadline(&self) -> Option<Instant> {
        Some(self.quiet_until?.min(self.first? + DEBOUNCE_MAX))
    }

    /// The pending (data, status) changes, cleared.
    fn take(&mut self) -> (bool, bool) {
        let taken = (self.data, self.status);
        *self = Debounce::default();
        taken
    }
}

/// What one cluster's task knows between events: its status, which kinds have listed, the
/// outage it may be in, the changes waiting to be sent, and the last output sent.
struct Tracker {
    name: String,
    status: ClusterStatus,
    synced: [bool; 3],
    outage: Outage,
    pending: Debounce,
    output: Option<Arc<ClusterOutput>>,
}

impl Tracker {
    fn new(name: String) -> Tracker {
        Tracker {
            name,
            status: ClusterStatus::default(),
            synced: [false; 3],
            outage: Outage::default(),
            pending: Debounce::default(),
            output: None,
        }
    }

    /// One watcher event or error.
    fn event(&mut self, kind: Kind, result: Result<Signal, watcher::Error>) {
        match result {
            Ok(signal) => {
                let reconnected = self.connected();
                match signal {
                    Signal::Listing => self.pending.mark(false, reconnected),
                    Signal::Changed => {
                        self.status.heartbeat.beat();
                        self.pending.mark(true, reconnected);
                    }
                    Signal::Synced => {
                        if !self.synced[kind as usize] {
                            debug!(cluster = %self.name, kind = kind.as_str(), "first list complete");
                        }
                        self.synced[kind as usize] = true;
                        self.status.synced = self.synced.iter().all(|s| *s);
                        self.status.heartbeat.beat();
                        self.pending.mark(true, true);
                    }
                }
            }
            Err(error) => {
                self.status.watch_errors += 1;
                self.status.last_error = Some(format!("{}: {error}", kind.as_str()));
                if is_transport(&error) {
                    self.status.connected = false;
                    self.outage.start(&self.name, kind, &error);
                } else {
                    debug!(cluster = %self.name, kind = kind.as_str(), %error, "watch error");
                }
                self.pending.mark(false, true);
            }
        }
    }

    /// The API server answered; true when that ends an outage (or is the first answer).
    fn connected(&mut self) -> bool {
        if self.status.connected {
            return false;
        }
        self.status.connected = true;
        self.outage.end(&self.name);
        true
    }

    /// The pending changes, as a view to send if anything a reader sees changed; the output is
    /// translated again (with `translate`) only when objects changed and every kind has listed.
    fn flush(&mut self, translate: impl FnOnce() -> ClusterOutput) -> Option<ClusterView> {
        let (data, mut changed) = self.pending.take();
        if data && self.status.synced {
            let new = Arc::new(translate());
            if self.output.as_ref().is_none_or(|old| !same_output(old, &new)) {
                self.output = Some(new);
                changed = true;
            }
        }
        changed.then(|| self.view())
    }

    fn view(&self) -> ClusterView {
        ClusterView { status: self.status.clone(), output: self.output.clone() }
    }
}

impl ClusterTask {
    pub(super) async fn run(mut self) {
        let mut tracker = Tracker::new(self.cluster.name.clone());
        let client = match self.client.take() {
            Some(client) => client,
            None => match self.build_client(&mut tracker.status).await {
                Some(client) => client,
                None => return,
            },
        };
        let (services, s1) = watch_kind::<Service>(&client, Kind::Services);
        let (slices, s2) = watch_kind::<EndpointSlice>(&client, Kind::EndpointSlices);
        let (nodes, s3) = watch_kind::<Node>(&client, Kind::Nodes);
        let mut events: SelectAll<BoxStream<'static, Item>> = futures::stream::select_all([s1, s2, s3]);
        let mut probe = tokio::time::interval(PROBE_INTERVAL);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        loop {
            let deadline = tracker.pending.deadline();
            let view = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                item = events.next() => {
                    // Watchers retry forever; their end means the runtime is going away.
                    let Some((kind, result)) = item else { return };
                    tracker.event(kind, result);
                    None
                }
                _ = async { sleep_until(deadline.expect("guarded by is_some")).await }, if deadline.is_some() => {
                    tracker.flush(|| self.translate(&services, &slices, &nodes))
                }
                _ = probe.tick(), if tracker.outage.since.is_some() => {
                    tracker.outage.remind(&tracker.name);
                    let answered = matches!(timeout(PROBE_TIMEOUT, client.apiserver_version()).await, Ok(Ok(_)));
                    (answered && tracker.connected()).then(|| tracker.view())
                }
            };
            if let Some(view) = view
                && self.tx.send((self.index, view)).await.is_err()
            {
                return;
            }
        }
    }

    /// Builds the client, retrying with a backoff and reporting failures; `None` on shutdown.
    async fn build_client(&self, status: &mut ClusterStatus) -> Option<Client> {
        let mut delay = CLIENT_RETRY_MIN;
        loop {
            match client::build(&self.cluster, status.heartbeat.clone()).await {
                Ok(client) => return Some(client),
                Err(error) => {
                    if status.watch_errors == 0 {
                        warn!(cluster = %self.cluster.name, kind = error.kind(), %error,
                            "cannot build kubernetes client; retrying");
                    }
                    status.watch_errors += 1;
                    status.last_error = Some(error.to_string());
                    let view = ClusterView { status: status.clone(), output: None };
                    if self.tx.send((self.index, view)).await.is_err() {
                        return None;
                    }
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                _ = sleep(delay) => {}
            }
            delay = (delay * 2).min(CLIENT_RETRY_MAX);
        }
    }

    fn translate(
        &self,
        services: &Store<Service>,
        slices: &Store<EndpointSlice>,
        nodes: &Store<Node>,
    ) -> ClusterOutput {
        let mut services = services.state();
        let slices = slices.state();
        let mut nodes = nodes.state();
        // Stores are hash maps: sort so that ties (two nodes claiming one network) are stable.
        services.sort_by_key(|s| (s.namespace(), s.name_any()));
        nodes.sort_by_key(|n| n.name_any());
        let slices: Vec<&EndpointSlice> = slices.iter().map(|s| &**s).collect();
        let nodes: Vec<&Node> = nodes.iter().map(|n| &**n).collect();
        translate::cluster_output(
            &self.cluster.name,
            &self.cluster.placement,
            &self.sites,
            services.iter().map(|s| &**s),
            &slices,
            &nodes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn changes_wait_for_a_quiet_moment_but_not_forever() {
        let mut d = Debounce::default();
        assert_eq!(d.deadline(), None);
        d.mark(false, false);
        assert_eq!(d.deadline(), None, "nothing changed");
        let first = Instant::now();
        d.mark(true, false);
        assert_eq!(d.deadline(), Some(first + DEBOUNCE_QUIET));
        // Events keep coming every 20 ms: the quiet time moves, the cap does not.
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            d.mark(false, true);
        }
        assert_eq!(d.deadline(), Some(first + DEBOUNCE_MAX));
        assert_eq!(d.take(), (true, true));
        assert_eq!((d.deadline(), d.take()), (None, (false, false)));
    }
}
