//! A zone whose dynamic records are kept in a ConfigMap (`zones.<zone>.updates.kubernetes`).
//!
//! Write path: an update is applied to the records this replica knows, and written over the
//! `resourceVersion` they were read at. A 409 Conflict (another replica wrote first) re-reads
//! the ConfigMap and applies the update again to the fresh records (its prerequisites checked
//! again), at most [`MAX_ATTEMPTS`] times. The update is acknowledged (NOERROR) only after the
//! API server took the write; when it cannot be reached, or the attempts run out, the answer is
//! SERVFAIL and the records served here stay as they were.
//!
//! Read path: a watch task per zone ([`KubeZone::watch`]) sends every version of the ConfigMap
//! to the update task, which serves it ([`KubeZone::adopt_watched`]). An event older than the
//! records already served (a lower SOA serial: this replica's own write overtook it) is
//! skipped. When the API server goes away the last known records keep being served, and the
//! logs say so once per outage.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{Outcome, apply_logged};
use crate::admin::UpdateStoreStatus;
use crate::config::{Config, ConfigMapRef, ZoneConfig};
use crate::model::{DynamicZone, Name, UpdateRcode, UpdateRequest, serial_after};
use crate::sources::kube::configmap::{self, ConfigMapStore, StoreError, Stored};
use crate::sources::kube::{ClientError, Heartbeat, build_client};

/// Writes tried per update: the first, and one after each conflict.
pub const MAX_ATTEMPTS: u32 = 8;
/// The longest wait for one request to the API server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait for the first read at start-up; after it the zone starts with no dynamic
/// records, and its watch loads them once the API server answers.
const INITIAL_READ: Duration = Duration::from_secs(5);

/// A kube-backed zone that cannot even start: its cluster's client cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("zones.{zone:?}.updates.kubernetes: cannot build a client for cluster {cluster:?}: {source}")]
pub struct StoreOpenError {
    zone: String,
    cluster: String,
    source: ClientError,
}

/// One version of the ConfigMap, or a failure, from a zone's watch task.
pub struct Watched {
    pub zone: Name,
    item: Seen,
}

enum Seen {
    Found(Stored),
    Absent,
    /// It holds data that is not geodns's records (at this resourceVersion).
    Malformed(Option<String>),
    /// The watch failed (it retries with a backoff).
    Failed(String),
}

/// A kube-backed zone's store and what this replica knows of it.
pub struct KubeZone {
    store: ConfigMapStore,
    at: ConfigMapRef,
    /// The `resourceVersion` the served records were read or written at; `None` when the
    /// ConfigMap does not exist (a write creates it).
    version: Option<String>,
    /// The records were read from the API at least once.
    loaded: bool,
    /// The API server did not answer the last request or watch: the records may be stale.
    stale: bool,
    /// The version last reported malformed (reported once).
    malformed: Option<Option<String>>,
    /// The last failure (of a request or the watch), for /status; cleared by an answer.
    last_error: Option<String>,
}

fn timed_out() -> StoreError {
    StoreError::Api(kube::Error::Service(format!("no answer within {REQUEST_TIMEOUT:?}").into()))
}

impl KubeZone {
    /// Builds the cluster's client and reads the ConfigMap (bounded by [`INITIAL_READ`]).
    pub async fn open(
        config: &Config,
        zone: &ZoneConfig,
        at: &ConfigMapRef,
    ) -> Result<(KubeZone, DynamicZone), StoreOpenError> {
        let cluster = config
            .kubernetes
            .clusters
            .iter()
            .find(|c| c.name == at.cluster)
            .expect("validation: the store's cluster is configured");
        let client = build_client(cluster, Heartbeat::default()).await.map_err(|source| StoreOpenError {
            zone: zone.apex.to_string(),
            cluster: at.cluster.clone(),
            source,
        })?;
        let store = ConfigMapStore::new(client, at, zone.apex.clone());
        let mut kz = KubeZone {
            store,
            at: at.clone(),
            version: None,
            loaded: false,
            stale: false,
            malformed: None,
            last_error: None,
        };
        let state = match tokio::time::timeout(INITIAL_READ, kz.store.read()).await.unwrap_or_else(|_| Err(timed_out()))
        {
            Ok(stored) => {
                info!(zone = %zone.apex, configmap = %at, names = stored.state.names.len(),
                    serial = crate::updates::served_serial(zone, &stored.state), "dynamic records read");
                kz.loaded = true;
                kz.version = stored.version;
                stored.state
            }
            Err(e) => {
                kz.stale = true;
                kz.last_error = Some(e.to_string());
                warn!(zone = %zone.apex, configmap = %at, error = %e, kind = e.kind(),
                    "cannot read the dynamic records; serving none for this zone until the ConfigMap can be read");
                DynamicZone::default()
            }
        };
        Ok((kz, state))
    }

    /// Watches the ConfigMap until shutdown, sending what it sees to the update task.
    pub fn watch(
        &self,
        zone: Name,
        tx: mpsc::Sender<Watched>,
        shutdown: CancellationToken,
    ) -> impl Future<Output = ()> + use<> {
        use futures::StreamExt;
        let mut stream = self.store.watch();
        async move {
            loop {
                let item = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    item = stream.next() => match item {
                        // Watchers retry forever; their end means the runtime is going away.
                        None => return,
                        Some(Ok(Some(cm))) => match configmap::decode(&cm) {
                            Ok(stored) => Seen::Found(stored),
                            Err(_) => Seen::Malformed(cm.metadata.resource_version.clone()),
                        },
                        Some(Ok(None)) => Seen::Absent,
                        Some(Err(e)) => Seen::Failed(e.to_string()),
                    },
                };
                if tx.send(Watched { zone: zone.clone(), item }).await.is_err() {
                    return;
                }
            }
        }
    }

    /// For /status.
    pub fn status(&self, zone: &Name) -> UpdateStoreStatus {
        UpdateStoreStatus {
            zone: zone.to_string(),
            store: format!("configmap {}/{} in cluster {}", self.at.namespace, self.at.name, self.at.cluster),
            stale: self.stale,
            last_error: self.last_error.clone(),
        }
    }

    fn reachable(&mut self, zone: &Name) {
        self.last_error = None;
        if std::mem::take(&mut self.stale) {
            info!(zone = %zone, configmap = %self.at, "ConfigMap reachable again");
        }
    }

    fn unreachable(&mut self, zone: &Name, error: &str) {
        self.last_error = Some(error.to_owned());
        if !std::mem::replace(&mut self.stale, true) {
            warn!(zone = %zone, configmap = %self.at, error,
                "ConfigMap unreachable; serving the last known dynamic records (updates answer SERVFAIL)");
        }
    }

    /// Takes what the watch saw; true when the served records changed.
    pub fn adopt_watched(&mut self, current: &mut DynamicZone, watched: Watched) -> bool {
        let zone = watched.zone;
        match watched.item {
            Seen::Failed(e) => {
                self.unreachable(&zone, &e);
                false
            }
            Seen::Malformed(version) => {
                self.reachable(&zone);
                if self.malformed.as_ref() != Some(&version) {
                    warn!(zone = %zone, configmap = %self.at, version = ?version,
                        "the ConfigMap's records are not geodns's; keeping the last known records");
                    self.malformed = Some(version);
                }
                false
            }
            Seen::Found(stored) => {
                self.reachable(&zone);
                if self.loaded && stored.version == self.version {
                    return false;
                }
                if let (true, Some(new), Some(old)) = (self.loaded, stored.state.serial, current.serial)
                    && serial_after(old, new)
                {
                    // This replica has already served a later write (its own, acknowledged
                    // before the watch caught up): that write's event follows.
                    debug!(zone = %zone, old_serial = new, serial = old, "skipped an older version of the ConfigMap");
                    return false;
                }
                self.adopt(&zone, current, stored)
            }
            Seen::Absent => {
                self.reachable(&zone);
                // The serial carries on, so that secondaries and caches see the next one as newer.
                let stored =
                    Stored { state: DynamicZone { serial: current.serial, names: Default::default() }, version: None };
                if self.loaded && self.version.is_none() && current.names.is_empty() {
                    return false;
                }
                if !current.names.is_empty() {
                    info!(zone = %zone, configmap = %self.at, "the ConfigMap is gone: no dynamic records");
                }
                self.adopt(&zone, current, stored)
            }
        }
    }

    /// Serves what the API holds; true when the records changed.
    fn adopt(&mut self, zone: &Name, current: &mut DynamicZone, stored: Stored) -> bool {
        self.loaded = true;
        self.version = stored.version;
        if *current == stored.state {
            return false;
        }
        info!(zone = %zone, configmap = %self.at, names = stored.state.names.len(), serial = ?stored.state.serial,
            "dynamic records loaded from the ConfigMap");
        *current = stored.state;
        true
    }

    /// One read of the ConfigMap, bounded.
    async fn read(&mut self, zone: &Name) -> Result<Stored, StoreError> {
        let read = tokio::time::timeout(REQUEST_TIMEOUT, self.store.read()).await.unwrap_or_else(|_| Err(timed_out()));
        match &read {
            Ok(_) => self.reachable(zone),
            Err(e) if e.kind() == "unreachable" => self.unreachable(zone, &e.to_string()),
            // It answered: with an error status (403: RBAC), or an object that is not ours.
            Err(e) => self.last_error = Some(e.to_string()),
        }
        read
    }

    /// Applies `req` and stores the result (see the module doc).
    pub(super) async fn apply(&mut self, zone: &ZoneConfig, current: &mut DynamicZone, req: &UpdateRequest) -> Outcome {
        let apex = &zone.apex;
        let mut fresher = false;
        let mut need_read = !self.loaded;
        for attempt in 1..=MAX_ATTEMPTS {
            if need_read {
                match self.read(apex).await {
                    Ok(stored) => fresher |= self.adopt(apex, current, stored),
                    Err(e) => {
                        error!(zone = %apex, configmap = %self.at, error = %e, kind = e.kind(),
                            "cannot read the dynamic records; UPDATE answered SERVFAIL, nothing changed");
                        return Outcome::Failed(UpdateRcode::ServFail, fresher);
                    }
                }
            }
            let next = match apply_logged(zone, current, req) {
                Err(rcode) => return Outcome::Failed(rcode, fresher),
                Ok(None) if fresher => return Outcome::Applied,
                Ok(None) => return Outcome::Unchanged,
                Ok(Some(next)) => next,
            };
            let write = tokio::time::timeout(REQUEST_TIMEOUT, self.store.write(&next, self.version.as_deref())).await;
            let unanswered = write.is_err();
            let written = write.unwrap_or_else(|_| Err(timed_out()));
            match written {
                Ok(version) => {
                    self.reachable(apex);
                    info!(zone = %apex, key = %req.key, serial = ?next.serial, changes = req.changes.len(), attempt,
                        configmap = %self.at, "UPDATE applied");
                    self.version = Some(version);
                    *current = next;
                    return Outcome::Applied;
                }
                Err(StoreError::Conflict) => {
                    self.reachable(apex);
                    debug!(zone = %apex, configmap = %self.at, attempt, "the ConfigMap changed meanwhile; reading it again");
                    need_read = true;
                }
                Err(e) => {
                    if e.kind() == "unreachable" {
                        self.unreachable(apex, &e.to_string());
                    } else {
                        self.last_error = Some(e.to_string());
                    }
                    // A write that timed out may still have reached the API server: then the
                    // watch brings it, and it is served, though the client was told SERVFAIL.
                    if unanswered {
                        error!(zone = %apex, configmap = %self.at, error = %e,
                            "no answer to the write in time; UPDATE answered SERVFAIL, and whether the API stored it is unknown (the watch will show it)");
                    } else {
                        error!(zone = %apex, configmap = %self.at, error = %e, kind = e.kind(),
                            "cannot store the update; UPDATE answered SERVFAIL, nothing changed");
                    }
                    return Outcome::Failed(UpdateRcode::ServFail, fresher);
                }
            }
        }
        warn!(zone = %apex, configmap = %self.at, attempts = MAX_ATTEMPTS,
            "the ConfigMap kept changing under the update; UPDATE answered SERVFAIL, nothing changed");
        Outcome::Failed(UpdateRcode::ServFail, fresher)
    }
}
