//! The update task: the single writer of the dynamic records. UPDATE requests arrive from the
//! DNS handler (through [`UpdateHandle`], the `dns::UpdateService`); each is checked and applied
//! by `updates::apply`, made durable in its zone's store, then handed to the builder as an
//! input; it is acknowledged once a table serving it is published.
//!
//! Two stores (`zones.<zone>.updates`): a journal file, appended and fsynced (replayed at
//! start-up before the first table is built), or a ConfigMap in a home cluster
//! ([`kube_store`]), written with optimistic concurrency and watched, so that the records one
//! replica accepts are served by every replica that watches it. The ConfigMap's watch events
//! come to this task too: it stays the one writer of the records the builder serves.
//!
//! A reload applies new TSIG keys and new `allow` rules live ([`UpdateHandle::reconfigure`]):
//! they are swapped as one [`Policy`], and each UPDATE is verified and checked against the one
//! policy in force when its MAC was verified. A zone starting or stopping to take updates, or
//! changing its store, needs a restart: the running setup of that zone stays, with a warning.

mod kube_store;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::Event;
use crate::admin::UpdateStoreStatus;
use crate::config::{Config, TsigKeyConfig, UpdateStore, UpdatesConfig, ZoneConfig};
use crate::dns::UpdateService;
use crate::model::{Dynamic, DynamicZone, Name, UpdateRcode, UpdateRequest};
use crate::updates::journal::{Journal, JournalError};
use crate::updates::{self, served_serial};

pub use kube_store::StoreOpenError;
use kube_store::{KubeZone, Watched};

/// How long an applied update waits for its table to be published before it is answered
/// anyway (it is durable: the next table has it).
const PUBLISH_WAIT: Duration = Duration::from_secs(10);

type Submission = (UpdateRequest, Arc<Policy>, oneshot::Sender<UpdateRcode>);

/// Why the update stores could not be opened at start-up.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the updates journal: {0}")]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Kube(#[from] StoreOpenError),
}

/// The keys and rules an UPDATE is checked against: replaced whole by a reload, so that each
/// UPDATE sees either the old set or the new one, never a mix.
pub struct Policy {
    keys: Vec<TsigKeyConfig>,
    /// The zones that take updates (those of the start-up config), each with its rules in force.
    zones: Vec<ZoneConfig>,
}

impl Policy {
    fn key(&self, name: &Name) -> Option<&TsigKeyConfig> {
        self.keys.iter().find(|k| k.name == *name)
    }
}

/// The DNS handler's side: the policy to verify TSIG with, and the queue to the update task.
pub struct UpdateHandle {
    policy: ArcSwap<Policy>,
    /// Each updatable zone's updates as started: its store cannot change without a restart.
    started: BTreeMap<Name, UpdatesConfig>,
    /// Bounded: a burst waits here for the single writer rather than growing memory.
    tx: mpsc::Sender<Submission>,
}

impl UpdateService for UpdateHandle {
    fn key(&self, name: &Name) -> Option<TsigKeyConfig> {
        self.policy.load().key(name).cloned()
    }

    fn submit(
        &self,
        request: UpdateRequest,
        verified_with: &TsigKeyConfig,
    ) -> Pin<Box<dyn Future<Output = UpdateRcode> + Send>> {
        let policy = self.policy.load_full();
        if policy.key(&request.key) != Some(verified_with) {
            // A reload replaced the keys between the MAC check and now: under the keys in
            // force this key is unknown or has another secret.
            warn!(zone = %request.zone, key = %request.key, reason = "the key was changed or removed by a reload while the update was being verified", "UPDATE refused");
            return Box::pin(std::future::ready(UpdateRcode::NotAuth));
        }
        let tx = self.tx.clone();
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            if tx.send((request, policy, reply)).await.is_err() {
                return UpdateRcode::ServFail;
            }
            rx.await.unwrap_or(UpdateRcode::ServFail)
        })
    }
}

impl UpdateHandle {
    /// Applies a reloaded (valid) config's keys and rules in one swap. What cannot change
    /// without a restart keeps its running setup, with a warning naming the zone: a zone that
    /// starts or stops taking updates, and a zone's store (journal path, ConfigMap).
    pub fn reconfigure(&self, config: &Config) {
        let old = self.policy.load_full();
        let mut zones = Vec::new();
        for (apex, started) in &self.started {
            let store = &started.store;
            let Some(zone) = config.zones.iter().find(|z| z.apex == *apex) else {
                warn!(zone = %apex, "the reloaded config does not serve this zone: its updates are refused; its store stays open until a restart");
                continue;
            };
            let mut zone = zone.clone();
            match &mut zone.updates {
                Some(updates) if updates.store == *store => {}
                Some(updates) => {
                    warn!(zone = %apex, running = %describe(store), configured = %describe(&updates.store),
                        "the reloaded config changes this zone's update store: that needs a restart; the zone keeps its running store, and its new allow rules apply");
                    updates.store = store.clone();
                }
                None => {
                    warn!(zone = %apex, "the reloaded config stops updates for this zone: that needs a restart; the zone keeps taking updates under its running allow rules");
                    // The rules in force: the zone's last ones, or its start-up ones if it
                    // left the policy (by no longer being served).
                    let running = old.zones.iter().find(|z| z.apex == *apex).and_then(|z| z.updates.clone());
                    zone.updates = Some(running.unwrap_or_else(|| started.clone()));
                }
            }
            zones.push(zone);
        }
        for z in config.zones.iter().filter(|z| z.updates.is_some() && !self.started.contains_key(&z.apex)) {
            warn!(zone = %z.apex, "the reloaded config starts updates for this zone: that needs a restart; the zone takes no updates until then");
        }
        let new = Policy { keys: config.tsig_keys.clone(), zones };
        log_changes(&old, &new);
        self.policy.store(Arc::new(new));
    }
}

fn describe(store: &UpdateStore) -> String {
    match store {
        UpdateStore::Journal(p) => format!("journal {}", p.display()),
        UpdateStore::ConfigMap(at) => at.to_string(),
    }
}

/// Logs what a reload changed in the keys and rules (names only, never secrets).
fn log_changes(old: &Policy, new: &Policy) {
    let names = |p: &Policy, keep: &dyn Fn(&TsigKeyConfig) -> bool| -> Vec<String> {
        p.keys.iter().filter(|k| keep(k)).map(|k| k.name.to_string()).collect()
    };
    let added = names(new, &|k| old.key(&k.name).is_none());
    let removed = names(old, &|k| new.key(&k.name).is_none());
    let changed = names(new, &|k| old.key(&k.name).is_some_and(|o| o != k));
    let rules = |p: &Policy, apex: &Name| {
        p.zones.iter().find(|z| z.apex == *apex).and_then(|z| z.updates.as_ref()).map(|u| u.allow.clone())
    };
    let zones: Vec<String> = old
        .zones
        .iter()
        .chain(&new.zones)
        .map(|z| &z.apex)
        .filter(|apex| rules(old, apex) != rules(new, apex))
        .map(|apex| apex.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if added.is_empty() && removed.is_empty() && changed.is_empty() && zones.is_empty() {
        info!("update keys and rules reloaded: unchanged");
    } else {
        info!(keys_added = ?added, keys_removed = ?removed, keys_changed = ?changed, rules_changed = ?zones, "update keys and rules reloaded");
    }
}

/// Where one zone's applied updates go.
enum Store {
    /// `None` after a failed write left the file in an unknown state.
    Journal(Option<Journal>),
    Kube(Box<KubeZone>),
}

/// The update task's state: each updatable zone's config, dynamic records and store.
pub struct UpdateTask {
    zones: Vec<ZoneConfig>,
    state: BTreeMap<Name, (DynamicZone, Store)>,
    rx: mpsc::Receiver<Submission>,
    /// ConfigMap watch events, from one watch task per kube-backed zone.
    watched: mpsc::Receiver<Watched>,
    watched_tx: mpsc::Sender<Watched>,
    /// To the builder, for /status: `watch` because only the latest state matters.
    status: watch::Sender<Arc<Vec<UpdateStoreStatus>>>,
}

/// What [`open`] starts with: the handler's side, the task, and the records to serve first.
pub struct Opened {
    pub handle: Arc<UpdateHandle>,
    pub task: UpdateTask,
    pub dynamic: Arc<Dynamic>,
    /// The stores' state for /status.
    pub status: watch::Receiver<Arc<Vec<UpdateStoreStatus>>>,
}

/// Opens every updatable zone's store: replays each journal, reads each ConfigMap (bounded:
/// an unreachable API leaves that zone empty until its watch loads it). `None` when no zone
/// takes updates.
pub async fn open(config: &Config) -> Result<Option<Opened>, OpenError> {
    let zones: Vec<ZoneConfig> = config.zones.iter().filter(|z| z.updates.is_some()).cloned().collect();
    if zones.is_empty() {
        return Ok(None);
    }
    let mut state = BTreeMap::new();
    for z in &zones {
        match &z.updates.as_ref().expect("filtered on updates").store {
            UpdateStore::Journal(path) => {
                let opened = Journal::open(path)?;
                if opened.discarded > 0 {
                    warn!(journal = %path.display(), bytes = opened.discarded, "discarded the torn last record of the journal (an update that was never acknowledged)");
                }
                let dz = opened.state.unwrap_or_default();
                info!(zone = %z.apex, journal = %path.display(), names = dz.names.len(), serial = served_serial(z, &dz), "dynamic records replayed");
                state.insert(z.apex.clone(), (dz, Store::Journal(Some(opened.journal))));
            }
            UpdateStore::ConfigMap(at) => {
                let (kz, dz) = KubeZone::open(config, z, at).await?;
                state.insert(z.apex.clone(), (dz, Store::Kube(Box::new(kz))));
            }
        }
    }
    let (tx, rx) = mpsc::channel(64);
    let (watched_tx, watched) = mpsc::channel(16);
    let started = zones.iter().filter_map(|z| Some((z.apex.clone(), z.updates.clone()?))).collect();
    let policy = ArcSwap::from_pointee(Policy { keys: config.tsig_keys.clone(), zones: zones.clone() });
    let handle = Arc::new(UpdateHandle { policy, started, tx });
    let (status, status_rx) = watch::channel(Arc::new(Vec::new()));
    let task = UpdateTask { zones, state, rx, watched, watched_tx, status };
    task.publish_status();
    let dynamic = Arc::new(task.dynamic());
    Ok(Some(Opened { handle, task, dynamic, status: status_rx }))
}

impl UpdateTask {
    fn publish_status(&self) {
        let now: Vec<UpdateStoreStatus> = self
            .state
            .iter()
            .map(|(apex, (_, store))| match store {
                Store::Journal(_) => UpdateStoreStatus {
                    zone: apex.to_string(),
                    store: self
                        .zones
                        .iter()
                        .find(|z| z.apex == *apex)
                        .and_then(|z| z.updates.as_ref()?.store.journal())
                        .map_or_else(String::new, |p| format!("journal {}", p.display())),
                    stale: false,
                    last_error: None,
                },
                Store::Kube(kz) => kz.status(apex),
            })
            .collect();
        self.status.send_if_modified(|old| {
            let changed = **old != now;
            if changed {
                *old = Arc::new(now);
            }
            changed
        });
    }

    fn dynamic(&self) -> Dynamic {
        Dynamic { zones: self.state.iter().map(|(apex, (dz, _))| (apex.clone(), dz.clone())).collect() }
    }

    pub async fn run(mut self, events: mpsc::Sender<Event>, shutdown: CancellationToken) {
        for (apex, (_, store)) in &self.state {
            if let Store::Kube(kz) = store {
                tokio::spawn(kz.watch(apex.clone(), self.watched_tx.clone(), shutdown.clone()));
            }
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                next = self.rx.recv() => match next {
                    Some((request, policy, reply)) => {
                        let rcode = self.handle(request, &policy, &events).await;
                        let _ = reply.send(rcode);
                        self.publish_status();
                    }
                    None => return,
                },
                Some(watched) = self.watched.recv() => {
                    let Some((current, Store::Kube(kz))) = self.state.get_mut(&watched.zone) else { continue };
                    if kz.adopt_watched(current, watched) {
                        self.publish(&events, false).await;
                    }
                    self.publish_status();
                }
            }
        }
    }

    /// Hands the current records to the builder; with `wait`, until a table serving them is
    /// published (bounded by [`PUBLISH_WAIT`]).
    async fn publish(&self, events: &mpsc::Sender<Event>, wait: bool) {
        let (done, published) = oneshot::channel();
        if events.send(Event::Dynamic(Arc::new(self.dynamic()), done)).await.is_ok()
            && wait
            && tokio::time::timeout(PUBLISH_WAIT, published).await.is_err()
        {
            warn!("the table with the update was not published in time; answering anyway (it is stored)");
        }
    }

    /// Applies `req` under `policy`, the keys and rules its MAC was verified under.
    async fn handle(&mut self, req: UpdateRequest, policy: &Policy, events: &mpsc::Sender<Event>) -> UpdateRcode {
        let zone = policy.zones.iter().find(|z| z.apex == req.zone);
        let (Some(zone), Some((current, store))) = (zone, self.state.get_mut(&req.zone)) else {
            warn!(zone = %req.zone, key = %req.key, reason = "not a zone served here that takes updates", "UPDATE refused");
            return UpdateRcode::NotAuth;
        };
        let outcome = match store {
            Store::Journal(journal) => apply_journaled(zone, current, journal, &req).await,
            Store::Kube(kz) => kz.apply(zone, current, &req).await,
        };
        match outcome {
            Outcome::Applied => {
                self.publish(events, true).await;
                UpdateRcode::NoError
            }
            Outcome::Unchanged => UpdateRcode::NoError,
            Outcome::Failed(rcode, fresher) => {
                if fresher {
                    // A re-read brought records written elsewhere: serve them.
                    self.publish(events, false).await;
                }
                rcode
            }
        }
    }
}

/// What came of one update in a zone's store.
enum Outcome {
    /// Applied and stored: the records changed.
    Applied,
    /// Applied, and nothing changed (NOERROR, nothing to publish).
    Unchanged,
    /// Refused or failed with this code, nothing applied; true when the records changed anyway
    /// (a conflict's re-read brought records written elsewhere).
    Failed(UpdateRcode, bool),
}

/// Applies `req` to the records, logging a refusal: `Ok(None)` when nothing changes.
fn apply_logged(
    zone: &ZoneConfig,
    current: &DynamicZone,
    req: &UpdateRequest,
) -> Result<Option<DynamicZone>, UpdateRcode> {
    match updates::apply(zone, current, req) {
        Err(refusal) => {
            warn!(zone = %req.zone, key = %req.key, rcode = refusal.rcode.as_str(), reason = %refusal.reason, "UPDATE refused");
            Err(refusal.rcode)
        }
        Ok(None) => {
            info!(zone = %req.zone, key = %req.key, "UPDATE applied: nothing changed");
            Ok(None)
        }
        Ok(Some(next)) => Ok(Some(next)),
    }
}

/// Applies an update to a journaled zone: appended and fsynced before the records change.
async fn apply_journaled(
    zone: &ZoneConfig,
    current: &mut DynamicZone,
    journal: &mut Option<Journal>,
    req: &UpdateRequest,
) -> Outcome {
    let next = match apply_logged(zone, current, req) {
        Err(rcode) => return Outcome::Failed(rcode, false),
        Ok(None) => return Outcome::Unchanged,
        Ok(Some(next)) => next,
    };
    // Durable before acknowledged: append and fsync off the runtime's threads.
    let Some(mut j) = journal.take() else {
        error!(zone = %req.zone, "journal unavailable after an earlier failure; UPDATE answered SERVFAIL");
        return Outcome::Failed(UpdateRcode::ServFail, false);
    };
    let snapshot = next.clone();
    let (j, written) = match tokio::task::spawn_blocking(move || {
        let r = j.append(&snapshot);
        (j, r)
    })
    .await
    {
        Ok(done) => done,
        Err(e) => {
            error!(zone = %req.zone, error = %e, "journal write task failed; UPDATE answered SERVFAIL");
            return Outcome::Failed(UpdateRcode::ServFail, false);
        }
    };
    *journal = Some(j);
    if let Err(e) = written {
        error!(zone = %req.zone, error = %e, "cannot write the journal; UPDATE answered SERVFAIL, nothing changed");
        return Outcome::Failed(UpdateRcode::ServFail, false);
    }
    info!(zone = %req.zone, key = %req.key, serial = ?next.serial, changes = req.changes.len(), "UPDATE applied");
    *current = next;
    Outcome::Applied
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RType;

    const CONFIG: &str = r#"
server: { dns_listen: ["127.0.0.1:0"] }
sites: { london: { location: [51.51, -0.13] } }
tsig_keys:
  acme: { algorithm: hmac-sha256, secret: "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=" }
zones:
  geo.example.:
    soa: { mname: ns1.geo.example., rname: hostmaster.geo.example., serial: 1 }
    ns: [ns1.geo.example.]
    updates:
      journal: geo.journal
      allow:
        - { key: acme, names: ["_acme-challenge.*"], types: [TXT] }
"#;

    fn config(text: &str) -> Config {
        crate::config::parse(text, std::path::Path::new("/tmp")).unwrap_or_else(|e| panic!("{:?}", e.problems()))
    }

    fn handle(config: &Config) -> (UpdateHandle, mpsc::Receiver<Submission>) {
        let zones: Vec<ZoneConfig> = config.zones.iter().filter(|z| z.updates.is_some()).cloned().collect();
        let started = zones.iter().map(|z| (z.apex.clone(), z.updates.clone().unwrap())).collect();
        let (tx, rx) = mpsc::channel(4);
        let policy = ArcSwap::from_pointee(Policy { keys: config.tsig_keys.clone(), zones });
        (UpdateHandle { policy, started, tx }, rx)
    }

    fn request(key: &str) -> UpdateRequest {
        UpdateRequest {
            zone: Name::parse_absolute("geo.example.").unwrap(),
            key: Name::parse_absolute(key).unwrap(),
            prereqs: vec![],
            changes: vec![],
        }
    }

    fn types(policy: &Policy) -> Vec<RType> {
        policy.zones[0].updates.as_ref().unwrap().allow.iter().flat_map(|r| r.types.clone()).collect()
    }

    #[tokio::test]
    async fn an_update_is_checked_against_the_policy_its_key_was_verified_under() {
        let (handle, mut rx) = handle(&config(CONFIG));
        let old_key = handle.key(&Name::parse_absolute("acme.").unwrap()).expect("acme");

        // Verified under the old policy, submitted before the reload: it carries the old rules,
        // however the rules change before the update task takes it.
        let queued = handle.submit(request("acme."), &old_key);
        let wider = CONFIG.replace("types: [TXT]", "types: [TXT, A]");
        let mut queued = tokio::spawn(queued);
        let (_, policy, reply) = rx.recv().await.expect("queued");
        handle.reconfigure(&config(&wider));
        assert_eq!(types(&policy), [RType::Txt]);
        assert_eq!(types(&handle.policy.load()), [RType::Txt, RType::A]);
        let _ = reply.send(UpdateRcode::NoError);
        assert_eq!((&mut queued).await.unwrap(), UpdateRcode::NoError);

        // Verified with the old secret, submitted after a reload changed it: refused, not queued.
        let rotated = wider.replace("c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=", "bmV3LXNlY3JldC1mb3ItdGhlLWtleQ==");
        handle.reconfigure(&config(&rotated));
        assert_ne!(handle.key(&old_key.name), Some(old_key.clone()));
        assert_eq!(handle.submit(request("acme."), &old_key).await, UpdateRcode::NotAuth);
        assert!(rx.try_recv().is_err(), "nothing reaches the update task");
    }

    #[test]
    fn what_cannot_change_live_keeps_the_running_setup() {
        let (handle, _rx) = handle(&config(CONFIG));
        // Updates removed: the zone keeps its running rules, and the new keys apply.
        let stopped = CONFIG.split("    updates:\n").next().unwrap().replace("acme:", "acme-2:");
        handle.reconfigure(&config(&stopped));
        let policy = handle.policy.load();
        assert_eq!(policy.zones.len(), 1);
        assert_eq!(types(&policy), [RType::Txt]);
        assert!(handle.key(&Name::parse_absolute("acme-2.").unwrap()).is_some());
        assert!(handle.key(&Name::parse_absolute("acme.").unwrap()).is_none());

        // Another journal: the running store stays, the new rules apply.
        let moved = CONFIG.replace("journal: geo.journal", "journal: other.journal").replace("[TXT]", "[TXT, A]");
        handle.reconfigure(&config(&moved));
        let policy = handle.policy.load();
        let updates = policy.zones[0].updates.as_ref().unwrap();
        assert_eq!(updates.store, UpdateStore::Journal("/tmp/geo.journal".into()));
        assert_eq!(types(&policy), [RType::Txt, RType::A]);

        // The zone gone: no zone takes updates.
        let gone = CONFIG.replace("geo.example.", "other.example.");
        handle.reconfigure(&config(&gone));
        assert!(handle.policy.load().zones.is_empty());
        // Back, without updates: it takes them again, under its start-up rules.
        handle.reconfigure(&config(&stopped));
        assert_eq!(types(&handle.policy.load()), [RType::Txt]);
    }
}
