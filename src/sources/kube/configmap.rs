//! A zone's dynamic records kept in one ConfigMap of a home cluster (docs/updates.md), so that
//! every replica that watches it serves the same records.
//!
//! The object: `data.zone` (the zone's apex, for people reading it) and `data."records.json"`
//! (the records and the SOA serial, as `updates::journal::to_json` writes them). Writes carry
//! the `resourceVersion` they were based on, so the API server refuses (409 Conflict) a write
//! based on an old read: the caller reads again, applies its update to the fresh records and
//! retries (`app/updates.rs`). Reads and writes are single requests; [`ConfigMapStore::watch`]
//! is a kube watcher on the one object (list+watch with a `metadata.name` field selector,
//! default backoff), as the other sources watch theirs.
//!
//! Imports model, config and updates (for the records' JSON form) only.

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_stream};
use kube::{Api, Client};

use crate::config::ConfigMapRef;
use crate::model::{DynamicZone, Name};
use crate::updates::journal;

/// The data key holding the records.
pub const RECORDS_KEY: &str = "records.json";
/// The data key holding the zone's apex.
pub const ZONE_KEY: &str = "zone";
/// The API server refuses a ConfigMap whose data passes 1 MiB; a write that would is refused
/// here first, with this error, rather than by the API.
pub const MAX_DATA_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object changed (or was created or deleted) since the read the write was based on.
    #[error("the ConfigMap changed since it was read (409 Conflict)")]
    Conflict,
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("the ConfigMap's data.\"{RECORDS_KEY}\" is not a geodns record set")]
    Malformed,
    #[error("the records take {bytes} bytes, over the ConfigMap limit of 1 MiB")]
    TooLarge { bytes: usize },
}

impl StoreError {
    /// Closed label set for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Conflict => "conflict",
            StoreError::Api(kube::Error::Api(_)) => "api_status",
            StoreError::Api(_) => "unreachable",
            StoreError::Malformed => "malformed",
            StoreError::TooLarge { .. } => "too_large",
        }
    }
}

/// What the API holds: the records, and the `resourceVersion` they were read at (`None`: the
/// ConfigMap does not exist, and a write creates it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stored {
    pub state: DynamicZone,
    pub version: Option<String>,
}

/// One zone's ConfigMap in its home cluster.
#[derive(Clone)]
pub struct ConfigMapStore {
    api: Api<ConfigMap>,
    name: String,
    zone: Name,
}

impl ConfigMapStore {
    pub fn new(client: Client, at: &ConfigMapRef, zone: Name) -> Self {
        ConfigMapStore { api: Api::namespaced(client, &at.namespace), name: at.name.clone(), zone }
    }

    /// Reads the ConfigMap (one GET); a missing one holds no records.
    pub async fn read(&self) -> Result<Stored, StoreError> {
        match self.api.get_opt(&self.name).await? {
            Some(cm) => decode(&cm),
            None => Ok(Stored::default()),
        }
    }

    /// Writes `state` over the version read (`None`: creates the ConfigMap); the new
    /// `resourceVersion`. [`StoreError::Conflict`] when the object is no longer at `version`.
    pub async fn write(&self, state: &DynamicZone, version: Option<&str>) -> Result<String, StoreError> {
        let records = journal::to_json(state);
        let bytes = records.len() + self.zone.as_str().len();
        if bytes > MAX_DATA_BYTES {
            return Err(StoreError::TooLarge { bytes });
        }
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version: version.map(str::to_owned),
                labels: Some([("app.kubernetes.io/managed-by".to_owned(), "geodns".to_owned())].into()),
                ..ObjectMeta::default()
            },
            data: Some(
                [(ZONE_KEY.to_owned(), self.zone.as_str().to_owned()), (RECORDS_KEY.to_owned(), records)].into(),
            ),
            ..ConfigMap::default()
        };
        let pp = PostParams { field_manager: Some("geodns".to_owned()), ..PostParams::default() };
        let written = match version {
            None => self.api.create(&pp, &cm).await,
            Some(_) => self.api.replace(&self.name, &pp, &cm).await,
        };
        match written {
            Ok(cm) => Ok(cm.metadata.resource_version.unwrap_or_default()),
            // 409: a stale resourceVersion, or created meanwhile; 404: deleted meanwhile.
            Err(kube::Error::Api(status)) if status.code == 409 || (version.is_some() && status.code == 404) => {
                Err(StoreError::Conflict)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Watches the one ConfigMap: `Some` for each version of it (the first list included),
    /// `None` when it does not exist (or was deleted); errors are the watcher's, which retries
    /// them with a backoff.
    pub fn watch(&self) -> BoxStream<'static, Result<Option<ConfigMap>, watcher::Error>> {
        let config = watcher::Config::default().fields(&format!("metadata.name={}", self.name));
        watch_stream(self.api.clone(), config)
            .default_backoff()
            // Whether the object was in the current (re-)list: absent at its end means gone.
            .scan(false, |seen, event| {
                let out = match event {
                    Ok(Event::Init) => {
                        *seen = false;
                        None
                    }
                    Ok(Event::InitApply(cm)) => {
                        *seen = true;
                        Some(Ok(Some(cm)))
                    }
                    Ok(Event::Apply(cm)) => Some(Ok(Some(cm))),
                    Ok(Event::Delete(_)) => Some(Ok(None)),
                    Ok(Event::InitDone) => (!*seen).then_some(Ok(None)),
                    Err(e) => Some(Err(e)),
                };
                futures::future::ready(Some(out))
            })
            .filter_map(futures::future::ready)
            .boxed()
    }
}

/// The records a ConfigMap holds and its `resourceVersion`. A ConfigMap without the records
/// key (made empty ahead of time, as deploy/ does) holds none.
pub fn decode(cm: &ConfigMap) -> Result<Stored, StoreError> {
    let version = cm.metadata.resource_version.clone();
    let state = match cm.data.as_ref().and_then(|d| d.get(RECORDS_KEY)) {
        Some(text) => journal::from_json(text).ok_or(StoreError::Malformed)?,
        None => DynamicZone::default(),
    };
    Ok(Stored { state, version })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DynamicNode, RData};

    #[test]
    fn records_survive_a_round_trip_and_an_empty_configmap_holds_none() {
        let mut state = DynamicZone { serial: Some(7), names: Default::default() };
        let name = Name::parse_absolute("_acme-challenge.app.geo.example.").unwrap();
        state.names.insert(name, DynamicNode { ttl: 60, rdata: vec![RData::Txt("token".into())] });
        let cm = ConfigMap {
            metadata: ObjectMeta { resource_version: Some("42".into()), ..ObjectMeta::default() },
            data: Some([(RECORDS_KEY.to_owned(), journal::to_json(&state))].into()),
            ..ConfigMap::default()
        };
        assert_eq!(decode(&cm).unwrap(), Stored { state, version: Some("42".into()) });
        assert_eq!(decode(&ConfigMap::default()).unwrap(), Stored::default());
        let bad =
            ConfigMap { data: Some([(RECORDS_KEY.to_owned(), "{not json".to_owned())].into()), ..ConfigMap::default() };
        assert!(matches!(decode(&bad), Err(StoreError::Malformed)));
    }
}
