//! The `/status` document, assembled from what the builder knows ([`Facts`]), the table it
//! serves and the latest health snapshot.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use crate::admin::{
    ClusterStatus, ConfigStatus, EndpointStatus, GeoIpStatus, Names, ReloadStatus, SiteStatus, Status,
    UpdateStoreStatus,
};
use crate::config::{AdminState, Forced};
use crate::geoip::GeoIpDb;
use crate::routing::RoutingTable;
use crate::sources::health::{HealthSnapshot, PROBE_RESULTS, State};
use crate::sources::kube::KubeSnapshot;

/// What the builder knows that the table and the health snapshot do not say.
pub(super) struct Facts<'a> {
    pub config_path: Option<&'a Path>,
    pub loaded_at: SystemTime,
    pub last_reload: Option<&'a ReloadStatus>,
    pub geoip: Option<&'a GeoIpDb>,
    /// The admin state file's overrides, and why the last version was rejected.
    pub admin: &'a AdminState,
    pub admin_error: Option<&'a str>,
    /// Shutdown has started.
    pub draining: bool,
    pub built_at: SystemTime,
    pub kube: Option<&'a KubeSnapshot>,
    /// Readiness still waits for the clusters that have not listed (`kubernetes.sync_timeout`).
    pub kube_waiting: bool,
    /// The update stores, from the update task.
    pub updates: &'a [UpdateStoreStatus],
}

fn secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

pub(super) fn build(b: &Facts<'_>, table: &Arc<RoutingTable>, health: &HealthSnapshot) -> Status {
    let sites = table.sites();
    // One pass over every (name, site): does the site serve a name, and is it up for one?
    let (mut serving, mut up) = (vec![false; sites.len()], vec![false; sites.len()]);
    for s in table.geo_routes().flat_map(|g| g.sites.iter()) {
        serving[s.site] = true;
        up[s.site] |= s.up;
    }
    let site_status = sites
        .iter()
        .enumerate()
        .map(|(id, s)| SiteStatus {
            name: s.name.clone(),
            latitude: s.location.lat,
            longitude: s.location.lon,
            up: !serving[id] || up[id],
        })
        .collect();
    let endpoints = health
        .probed()
        .map(|((check, addr), h)| {
            let forced = b.admin.endpoints.get(&(check.clone(), *addr));
            EndpointStatus {
                check: check.clone(),
                address: addr.to_string(),
                state: match forced {
                    Some(Forced::Up) => "forced-up".to_owned(),
                    Some(Forced::Down) => "forced-down".to_owned(),
                    None => h.state.as_str().to_owned(),
                },
                reason: h.reason.clone(),
                since: secs(h.since),
                last_outcome: h.last_outcome.clone(),
                probes: h.probes,
                verdict_up: h.state != State::Down,
                results: PROBE_RESULTS.iter().copied().zip(h.results).filter(|(_, n)| *n > 0).collect(),
                flips: [h.flips_up, h.flips_down],
            }
        })
        .collect();
    let mut not_ready = Vec::new();
    if b.draining {
        not_ready.push("shutting down".to_owned());
    }
    let kube = b.kube;
    let mut kubernetes = Vec::new();
    if let Some(k) = kube {
        // After `kubernetes.sync_timeout`, ready with the clusters that did list.
        let waiting = b.kube_waiting;
        for (name, c) in &k.clusters {
            if !c.synced && waiting {
                not_ready.push(format!("kubernetes cluster {name} not synced yet"));
            }
            kubernetes.push(ClusterStatus {
                name: name.clone(),
                synced: c.synced,
                sync_timed_out: !c.synced && !waiting,
                connected: c.connected,
                last_sync: c.last_sync().map(secs),
                watch_errors: c.watch_errors,
                last_error: c.last_error.clone(),
            });
        }
    }
    let mut drained: Vec<String> = b
        .admin
        .sites
        .iter()
        .map(|(site, f)| format!("site {} forced {}", sites.get(*site).map_or("?", |s| s.name.as_str()), f.as_str()))
        .collect();
    drained.extend(b.admin.endpoints.iter().map(|((c, a), f)| format!("endpoint {c}/{a} forced {}", f.as_str())));
    if let Some(e) = b.admin_error {
        drained.push(format!("admin state file rejected: {e}"));
    }
    drained.extend(kube.iter().flat_map(|k| k.drains.iter().map(|d| format!("kubernetes {d} drained"))));
    Status {
        ready: not_ready.is_empty(),
        not_ready,
        version: env!("CARGO_PKG_VERSION"),
        generation: table.generation,
        built_at: secs(b.built_at),
        config: ConfigStatus {
            path: b.config_path.map_or_else(|| "(in memory)".to_owned(), |p| p.display().to_string()),
            loaded_at: secs(b.loaded_at),
            last_reload: b.last_reload.cloned(),
        },
        geoip: b.geoip.map(|db| {
            let m = db.metadata();
            GeoIpStatus {
                path: db.path().display().to_string(),
                database_type: m.database_type.clone(),
                build_epoch: m.build_epoch,
                ip_version: m.ip_version,
                node_count: m.node_count,
            }
        }),
        zones: table.zone_names().map(ToString::to_string).collect(),
        sites: site_status,
        names: Names(Some(table.clone())),
        endpoints,
        drained,
        kubernetes,
        updates: b.updates.to_vec(),
    }
}
