//! Kubernetes discovery: where geo names run, learnt from the API of one or more clusters
//! (DESIGN.md section 6), published as [`KubeSnapshot`]s on a watch channel.
//!
//! - [`translate`]: pure functions from k8s-openapi objects to [`Discovered`] and
//!   [`ClientNetwork`] (the annotation contract lives there).
//! - `client`: one `kube::Client` per cluster from a kubeconfig context or in-cluster config.
//! - `cluster`: one task per cluster (watchers + reflector stores + debounce).
//! - [`configmap`]: a zone's dynamic records kept in a ConfigMap (read, written with
//!   optimistic concurrency, watched); the app's update task is its one user.
//! - this module: the public API and the aggregator task that merges the clusters into one
//!   snapshot.
//!
//! Imports `model` and `config` only; never routing, dns, admin or app. The routing builder
//! subscribes and merges the discovered endpoints with the configured ones.

mod client;
mod cluster;
pub mod configmap;
mod heartbeat;
pub mod translate;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use client::{ClientError, build as build_client};
pub use heartbeat::Heartbeat;

use self::cluster::{ClusterTask, ClusterView};
use self::translate::ClusterOutput;
use crate::config::{ClientNetwork, ClusterConfig, SiteConfig};
use crate::model::Discovered;

/// Everything Kubernetes says right now, across clusters.
#[derive(Debug, Clone, Default)]
pub struct KubeSnapshot {
    /// Per cluster name (every configured cluster has an entry from the first snapshot on).
    pub clusters: BTreeMap<String, ClusterStatus>,
    /// Each cluster's output, in config order: `None` until its first full list is in.
    outputs: Vec<(String, Option<Arc<ClusterOutput>>)>,
    /// Discovered endpoints of every synced cluster, clusters in config order, each sorted by
    /// (name, site, origin). A cluster contributes nothing until its first full list is in, and
    /// keeps contributing its last known state while its API server is unreachable.
    pub discovered: Vec<Discovered>,
    /// Networks of the synced clusters' nodes (pod CIDRs and node addresses) at the nodes' sites.
    pub client_networks: Vec<ClientNetwork>,
    /// What is drained by annotation, as "cluster: node NAME" or "cluster: service NS/NAME".
    pub drains: Vec<String>,
}

impl KubeSnapshot {
    /// True when every cluster has completed its first full list (for /readyz).
    pub fn all_synced(&self) -> bool {
        self.clusters.values().all(|c| c.synced)
    }

    /// This snapshot, with each cluster that has not listed yet taking its output from
    /// `previous` (a source replaced by a reload): a reload never drops a cluster's names,
    /// even while its API server is unreachable, and never holds back the clusters that did
    /// list. Statuses stay this snapshot's.
    pub fn with_fallback(&self, previous: &KubeSnapshot) -> KubeSnapshot {
        let outputs = self
            .outputs
            .iter()
            .map(|(name, output)| {
                let kept = || previous.outputs.iter().find(|(n, _)| n == name).and_then(|(_, o)| o.clone());
                (name.clone(), output.clone().or_else(kept))
            })
            .collect();
        KubeSnapshot::new(self.clusters.clone(), outputs)
    }

    fn new(clusters: BTreeMap<String, ClusterStatus>, outputs: Vec<(String, Option<Arc<ClusterOutput>>)>) -> Self {
        let mut snapshot = KubeSnapshot { clusters, ..KubeSnapshot::default() };
        for (cluster, output) in outputs.iter().filter_map(|(c, o)| Some((c, o.as_deref()?))) {
            snapshot.discovered.extend(output.discovered.iter().cloned());
            snapshot.client_networks.extend(output.client_networks.iter().cloned());
            snapshot.drains.extend(output.drains.iter().map(|d| format!("{cluster}: {d}")));
        }
        snapshot.outputs = outputs;
        snapshot
    }
}

/// The health of one cluster's watches, for logs, metrics and /status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterStatus {
    /// The first full list of Services, EndpointSlices and Nodes is done (stays true).
    pub synced: bool,
    /// When the API server last delivered list or watch data (see [`Self::last_sync`]).
    pub heartbeat: Heartbeat,
    /// Watch and list errors since start (including client construction failures).
    pub watch_errors: u64,
    pub last_error: Option<String>,
    /// The API server answered the last request: false before the first answer and during an
    /// outage (the last known objects keep being published meanwhile).
    pub connected: bool,
}

impl ClusterStatus {
    /// When the API server last delivered list or watch data: a completed (re-)list, a watch
    /// event or a bookmark (bookmarks only through clients built here, which watch for them).
    /// Read now: it moves without a new snapshot.
    pub fn last_sync(&self) -> Option<SystemTime> {
        self.heartbeat.last()
    }
}

/// A running Kubernetes source. Dropping it does not stop the tasks: cancel the token given
/// to [`spawn`].
pub struct KubeSource {
    /// Written only by the aggregator task; read by the routing builder and admin.
    /// `watch` because consumers want the latest complete state, not every step.
    rx: watch::Receiver<Arc<KubeSnapshot>>,
}

impl KubeSource {
    pub fn subscribe(&self) -> watch::Receiver<Arc<KubeSnapshot>> {
        self.rx.clone()
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<KubeSnapshot> {
        self.rx.borrow().clone()
    }
}

/// Starts one watcher task per cluster (clients built from each cluster's kubeconfig/context
/// or in-cluster config) and the aggregator. Must be called inside a Tokio runtime; everything
/// stops when `shutdown` is cancelled.
pub fn spawn(clusters: Vec<ClusterConfig>, sites: Vec<SiteConfig>, shutdown: CancellationToken) -> KubeSource {
    spawn_inner(clusters.into_iter().map(|c| (c, None)).collect(), sites, shutdown)
}

/// Like [`spawn`], with a ready-made client per cluster (tests, or callers that configure
/// the client themselves).
pub fn spawn_with_clients(
    clusters: Vec<(ClusterConfig, kube::Client)>,
    sites: Vec<SiteConfig>,
    shutdown: CancellationToken,
) -> KubeSource {
    spawn_inner(clusters.into_iter().map(|(c, k)| (c, Some(k))).collect(), sites, shutdown)
}

fn spawn_inner(
    clusters: Vec<(ClusterConfig, Option<kube::Client>)>,
    sites: Vec<SiteConfig>,
    shutdown: CancellationToken,
) -> KubeSource {
    let names: Vec<String> = clusters.iter().map(|(c, _)| c.name.clone()).collect();
    let mut views: Vec<ClusterView> =
        names.iter().map(|_| ClusterView { status: ClusterStatus::default(), output: None }).collect();
    let (tx, rx) = watch::channel(Arc::new(merge(&names, &views)));
    // Cluster tasks -> aggregator. Bounded: a slow aggregator slows the cluster tasks, whose
    // watchers then buffer in the kube client rather than here.
    let (view_tx, mut view_rx) = mpsc::channel::<(usize, ClusterView)>(16);
    let sites: Arc<[SiteConfig]> = sites.into();
    for (index, (cluster, client)) in clusters.into_iter().enumerate() {
        let task = ClusterTask {
            index,
            cluster,
            sites: sites.clone(),
            client,
            tx: view_tx.clone(),
            shutdown: shutdown.clone(),
        };
        tokio::spawn(task.run());
    }
    drop(view_tx);

    tokio::spawn(async move {
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return,
                msg = view_rx.recv() => match msg {
                    Some(msg) => msg,
                    None => return,
                },
            };
            views[first.0] = first.1;
            // Coalesce whatever else is already queued into the same snapshot.
            while let Ok((index, view)) = view_rx.try_recv() {
                views[index] = view;
            }
            tx.send_replace(Arc::new(merge(&names, &views)));
        }
    });

    KubeSource { rx }
}

/// One snapshot from every cluster's latest view.
fn merge(names: &[String], views: &[ClusterView]) -> KubeSnapshot {
    let clusters = names.iter().zip(views).map(|(name, view)| (name.clone(), view.status.clone())).collect();
    let outputs = names.iter().zip(views).map(|(name, view)| (name.clone(), view.output.clone())).collect();
    KubeSnapshot::new(clusters, outputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Name;

    fn output(addr: &str) -> Option<Arc<ClusterOutput>> {
        let name = Name::parse_absolute("app.geo.example.").unwrap();
        let d = Discovered {
            name,
            site: 0,
            addrs: vec![addr.parse().unwrap()],
            ready: true,
            drained: Vec::new(),
            origin: addr.into(),
        };
        Some(Arc::new(ClusterOutput { discovered: vec![d], client_networks: Vec::new(), drains: Vec::new() }))
    }

    fn status(synced: bool) -> ClusterStatus {
        ClusterStatus { synced, ..ClusterStatus::default() }
    }

    fn origins(s: &KubeSnapshot) -> Vec<&str> {
        s.discovered.iter().map(|d| d.origin.as_str()).collect()
    }

    #[test]
    fn a_restarted_source_serves_each_unlisted_cluster_from_the_previous_snapshot() {
        let names = ["eu".to_owned(), "us".to_owned(), "ap".to_owned()];
        let view = |synced, output| ClusterView { status: status(synced), output };
        let previous = merge(&names[..2], &[view(true, output("192.0.2.1")), view(true, output("192.0.2.2"))]);
        // After a reload: eu unreachable (never listed), us listed with news, ap new and unlisted.
        let current = merge(&names, &[view(false, None), view(true, output("192.0.2.3")), view(false, None)]);
        assert!(!current.all_synced());
        let served = current.with_fallback(&previous);
        assert_eq!(origins(&served), ["192.0.2.1", "192.0.2.3"], "eu kept, us current, ap has nothing yet");
        assert_eq!(served.clusters, current.clusters, "statuses are the current source's");
        assert_eq!(origins(&current.with_fallback(&KubeSnapshot::default())), ["192.0.2.3"]);
    }
}
