//! The `/status` document: what geodns is serving and why, for operators and the status page.

use serde::Serialize;

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
    pub names: Vec<NameStatus>,
    pub endpoints: Vec<EndpointStatus>,
    pub drained: Vec<String>,
    pub kubernetes: Vec<ClusterStatus>,
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

#[derive(Debug, Clone, Serialize)]
pub struct NameStatus {
    pub name: String,
    pub ttl: u32,
    pub sites: Vec<NameSiteStatus>,
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
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub name: String,
    pub synced: bool,
    pub connected: bool,
    pub last_sync: Option<f64>,
    pub watch_errors: u64,
    pub last_error: Option<String>,
}
