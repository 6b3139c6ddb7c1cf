//! The `/status` document: what geodns is serving and why, for operators and the status page.

use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::config::SiteConfig;
use crate::routing::{GeoRoute, RoutingTable};

#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// True once the config, GeoIP database, first Kubernetes sync (where configured) and first
    /// routing table are in.
    pub ready: bool,
    pub not_ready: Vec<String>,
    pub version: &'static str,
    /// Generation of the routing table being served, and when it was built (Unix seconds).
    pub generation: u64,
    pub built_at: f64,
    pub config: ConfigStatus,
    pub geoip: Option<GeoIpStatus>,
    pub zones: Vec<String>,
    pub sites: Vec<SiteStatus>,
    pub names: Names,
    pub endpoints: Vec<EndpointStatus>,
    pub drained: Vec<String>,
    pub kubernetes: Vec<ClusterStatus>,
    /// Each updatable zone's store (docs/updates.md); absent when no zone takes updates.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub updates: Vec<UpdateStoreStatus>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ConfigStatus {
    pub path: String,
    pub loaded_at: f64,
    /// The last reload attempt: "ok" or "failed", with the reason when it failed.
    pub last_reload: Option<ReloadStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReloadStatus {
    pub at: f64,
    pub result: &'static str,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GeoIpStatus {
    pub path: String,
    pub database_type: String,
    pub build_epoch: u64,
    pub ip_version: u16,
    pub node_count: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct SiteStatus {
    pub name: String,
    pub latitude: f64,
    pub longitude: f64,
    /// Up for at least one name (or serving no name).
    pub up: bool,
}

/// The `names` section: each geo name's sites, up or not, with their addresses, by name.
/// Written from the routing table when the document is serialized (a request for /status),
/// not when it is published: a table of 10,000 names at 100 sites has a million (name, site)
/// entries, and a table is published on every health change (up to many a second), while
/// /status is read now and then.
#[derive(Clone, Default)]
pub struct Names(pub Option<Arc<RoutingTable>>);

impl Names {
    /// Every entry, in the document's order (for callers in Rust; the document streams them).
    pub fn entries(&self) -> Vec<NameStatus> {
        self.sorted().into_iter().map(|g| NameStatus::of(g, self.sites())).collect()
    }

    pub(super) fn sorted(&self) -> Vec<&GeoRoute> {
        let mut routes: Vec<&GeoRoute> = self.0.iter().flat_map(|t| t.geo_routes()).collect();
        routes.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
        routes
    }

    pub(super) fn sites(&self) -> &[SiteConfig] {
        self.0.as_deref().map_or(&[], RoutingTable::sites)
    }
}

impl Serialize for Names {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.sorted().into_iter().map(|g| NameStatus::of(g, self.sites())))
    }
}

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.0.as_deref().map_or(0, |t| t.geo_routes().count());
        write!(f, "Names({count} geo names)")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NameStatus {
    pub name: String,
    pub ttl: u32,
    pub sites: Vec<NameSiteStatus>,
}

impl NameStatus {
    fn of(g: &GeoRoute, sites: &[SiteConfig]) -> NameStatus {
        NameStatus {
            name: g.name.to_string(),
            ttl: g.ttl,
            sites: g
                .sites
                .iter()
                .map(|s| NameSiteStatus {
                    site: sites[s.site].name.clone(),
                    up: s.up,
                    addresses: s
                        .v4
                        .iter()
                        .map(ToString::to_string)
                        .chain(s.v6.iter().map(ToString::to_string))
                        .collect(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NameSiteStatus {
    pub site: String,
    pub up: bool,
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EndpointStatus {
    pub check: String,
    pub address: String,
    /// "unknown", "up" or "down"; "forced-up" / "forced-down" when an operator overrides it.
    pub state: String,
    pub reason: String,
    /// When the state last changed (Unix seconds).
    pub since: f64,
    pub last_outcome: Option<String>,
    pub probes: u64,
    /// The probes' verdict, whatever an operator forces: up or not yet judged (for metrics).
    #[serde(skip)]
    pub verdict_up: bool,
    /// Probes so far by result label, and state changes to up and to down (for metrics).
    #[serde(skip)]
    pub results: Vec<(&'static str, u64)>,
    #[serde(skip)]
    pub flips: [u64; 2],
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub name: String,
    /// The first full list of Services, EndpointSlices and Nodes is in.
    pub synced: bool,
    /// Not synced after `kubernetes.sync_timeout`: the instance is ready without it, and
    /// serves what it knew (nothing, if it never listed).
    pub sync_timed_out: bool,
    pub connected: bool,
    pub last_sync: Option<f64>,
    pub watch_errors: u64,
    pub last_error: Option<String>,
}

/// Where a zone's dynamic updates are kept, and whether what is served may be stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdateStoreStatus {
    pub zone: String,
    /// `journal PATH`, or `configmap NAMESPACE/NAME in cluster CLUSTER`.
    pub store: String,
    /// A ConfigMap that did not answer the last request or watch: the records served are the
    /// last known ones, and updates get SERVFAIL. Always false for a journal.
    pub stale: bool,
    pub last_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::routing::Inputs;

    #[test]
    fn names_are_written_from_the_table_sorted_with_each_sites_state_and_addresses() {
        let yaml = r#"
sites:
  london:    { location: [51.51, -0.13] }
  frankfurt: { location: [50.11, 8.68] }
zones:
  geo.example.:
    soa: { mname: ns1.geo.example., rname: hostmaster.geo.example., serial: 1 }
    ns: [ns1.geo.example.]
    records:
      ns1: { A: [192.0.2.53] }
    geo:
      web: { sites: { london: [192.0.2.1], frankfurt: [192.0.2.2, "2001:db8::2"] } }
      app: { sites: { frankfurt: [192.0.2.3] } }
"#;
        let config = crate::config::parse(yaml, Path::new(".")).unwrap();
        let table =
            crate::routing::build(&config, Arc::new(crate::model::NoLocator), Inputs::default(), 1).into_table();
        let names = Names(Some(table));
        let json = serde_json::to_value(&names).unwrap();
        assert_eq!(json, serde_json::to_value(names.entries()).unwrap());
        let listed: Vec<&str> = json.as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap()).collect();
        assert_eq!(listed, ["app.geo.example.", "web.geo.example."]);
        let web = &json[1]["sites"];
        assert_eq!((&web[0]["site"], &web[0]["up"]), (&serde_json::json!("london"), &serde_json::json!(true)));
        assert_eq!(web[1]["addresses"], serde_json::json!(["192.0.2.2", "2001:db8::2"]));
        assert_eq!(serde_json::to_value(Names::default()).unwrap(), serde_json::json!([]));
        assert_eq!(format!("{names:?}"), "Names(2 geo names)");
    }
}
