//! The update task: the single writer of the dynamic records. UPDATE requests arrive from the
//! DNS handler (through [`UpdateHandle`], the `dns::UpdateService`); each is checked and applied
//! by `updates::apply`, appended to its zone's journal and fsynced, then handed to the builder
//! as an input; it is acknowledged once a table serving it is published. On start-up each
//! zone's journal is replayed (its last complete record) before the first table is built.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::Event;
use crate::config::{Config, TsigKeyConfig, ZoneConfig};
use crate::dns::UpdateService;
use crate::model::{Dynamic, DynamicZone, Name, UpdateRcode, UpdateRequest};
use crate::updates::journal::{Journal, JournalError};
use crate::updates::{self, served_serial};

/// How long an applied update waits for its table to be published before it is answered
/// anyway (it is journaled: the next table has it).
const PUBLISH_WAIT: Duration = Duration::from_secs(10);

type Submission = (UpdateRequest, oneshot::Sender<UpdateRcode>);

/// The DNS handler's side: keys to verify TSIG with, and the queue to the update task.
pub struct UpdateHandle {
    keys: Vec<TsigKeyConfig>,
    /// Bounded: a burst waits here for the single writer rather than growing memory.
    tx: mpsc::Sender<Submission>,
}

impl UpdateService for UpdateHandle {
    fn key(&self, name: &Name) -> Option<TsigKeyConfig> {
        self.keys.iter().find(|k| k.name == *name).cloned()
    }

    fn submit(&self, request: UpdateRequest) -> Pin<Box<dyn Future<Output = UpdateRcode> + Send>> {
        let tx = self.tx.clone();
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            if tx.send((request, reply)).await.is_err() {
                return UpdateRcode::ServFail;
            }
            rx.await.unwrap_or(UpdateRcode::ServFail)
        })
    }
}

/// The update task's state: each updatable zone's config, dynamic records and journal.
pub struct UpdateTask {
    zones: Vec<ZoneConfig>,
    state: BTreeMap<Name, (DynamicZone, Option<Journal>)>,
    rx: mpsc::Receiver<Submission>,
}

/// What [`open`] starts with: the handler's side, the task, and the replayed records.
pub struct Opened {
    pub handle: Arc<UpdateHandle>,
    pub task: UpdateTask,
    pub dynamic: Arc<Dynamic>,
}

/// Opens every updatable zone's journal and replays it. `None` when no zone takes updates.
pub fn open(config: &Config) -> Result<Option<Opened>, JournalError> {
    let zones: Vec<ZoneConfig> = config.zones.iter().filter(|z| z.updates.is_some()).cloned().collect();
    if zones.is_empty() {
        return Ok(None);
    }
    let mut state = BTreeMap::new();
    for z in &zones {
        let path = &z.updates.as_ref().expect("filtered on updates").journal;
        let opened = Journal::open(path)?;
        if opened.discarded > 0 {
            warn!(journal = %path.display(), bytes = opened.discarded, "discarded the torn last record of the journal (an update that was never acknowledged)");
        }
        let dz = opened.state.unwrap_or_default();
        info!(zone = %z.apex, journal = %path.display(), names = dz.names.len(), serial = served_serial(z, &dz), "dynamic records replayed");
        state.insert(z.apex.clone(), (dz, Some(opened.journal)));
    }
    let (tx, rx) = mpsc::channel(64);
    let handle = Arc::new(UpdateHandle { keys: config.tsig_keys.clone(), tx });
    let task = UpdateTask { zones, state, rx };
    let dynamic = Arc::new(task.dynamic());
    Ok(Some(Opened { handle, task, dynamic }))
}

impl UpdateTask {
    fn dynamic(&self) -> Dynamic {
        Dynamic { zones: self.state.iter().map(|(apex, (dz, _))| (apex.clone(), dz.clone())).collect() }
    }

    pub async fn run(mut self, events: mpsc::Sender<Event>, shutdown: CancellationToken) {
        loop {
            let (request, reply) = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = self.rx.recv() => match next {
                    Some(s) => s,
                    None => return,
                },
            };
            let rcode = self.handle(request, &events).await;
            let _ = reply.send(rcode);
        }
    }

    async fn handle(&mut self, req: UpdateRequest, events: &mpsc::Sender<Event>) -> UpdateRcode {
        let Some(zone) = self.zones.iter().find(|z| z.apex == req.zone) else {
            warn!(zone = %req.zone, key = %req.key, reason = "not a zone served here that takes updates", "UPDATE refused");
            return UpdateRcode::NotAuth;
        };
        let (current, journal) = self.state.get_mut(&req.zone).expect("every updatable zone has a state");
        let next = match updates::apply(zone, current, &req) {
            Err(refusal) => {
                warn!(zone = %req.zone, key = %req.key, rcode = refusal.rcode.as_str(), reason = %refusal.reason, "UPDATE refused");
                return refusal.rcode;
            }
            Ok(None) => {
                info!(zone = %req.zone, key = %req.key, "UPDATE applied: nothing changed");
                return UpdateRcode::NoError;
            }
            Ok(Some(next)) => next,
        };
        // Durable before acknowledged: append and fsync off the runtime's threads.
        let Some(mut j) = journal.take() else {
            error!(zone = %req.zone, "journal unavailable after an earlier failure; UPDATE answered SERVFAIL");
            return UpdateRcode::ServFail;
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
                return UpdateRcode::ServFail;
            }
        };
        *journal = Some(j);
        if let Err(e) = written {
            error!(zone = %req.zone, error = %e, "cannot write the journal; UPDATE answered SERVFAIL, nothing changed");
            return UpdateRcode::ServFail;
        }
        let serial = next.serial;
        *current = next;
        info!(zone = %req.zone, key = %req.key, serial = ?serial, changes = req.changes.len(), "UPDATE applied");
        let (done, published) = oneshot::channel();
        if events.send(Event::Dynamic(Arc::new(self.dynamic()), done)).await.is_ok()
            && tokio::time::timeout(PUBLISH_WAIT, published).await.is_err()
        {
            warn!(zone = %req.zone, "the table with the update was not published in time; answering anyway (it is journaled)");
        }
        UpdateRcode::NoError
    }
}
