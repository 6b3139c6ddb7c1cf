//! The validated configuration: typed, resolved (names absolute, sites by index, paths
//! relative to the config file made absolute) and internally consistent.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use ipnet::IpNet;

use crate::model::{Location, Name, RData, SiteId, Soa};

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    /// The GeoIP database file; `None` means no GeoIP (clients are placed only by
    /// `client_networks`; everyone else gets the configured site order).
    pub geoip: Option<PathBuf>,
    /// Sites in the order written; a [`SiteId`] indexes this list.
    pub sites: Vec<SiteConfig>,
    pub client_networks: Vec<ClientNetwork>,
    pub health_checks: IndexMap<String, HealthCheck>,
    pub zones: Vec<ZoneConfig>,
    pub kubernetes: KubernetesConfig,
    /// TSIG keys, in the order written (docs/updates.md).
    pub tsig_keys: Vec<TsigKeyConfig>,
}

impl Config {
    pub fn site_id(&self, name: &str) -> Option<SiteId> {
        self.sites.iter().position(|s| s.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub dns_listen: Vec<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    /// The idle timeout of a TCP connection: `server.tcp.idle_timeout`, or the older
    /// `server.tcp_timeout` (always equal to `tcp.idle_timeout`).
    pub tcp_timeout: Duration,
    pub shutdown_grace: Duration,
    /// The admin state file, watched for operator overrides; `None` disables overrides.
    pub admin_state: Option<PathBuf>,
    pub rrl: RrlConfig,
    /// Who RRL never limits (`server.rrl.exempt*`). Apart from [`RrlConfig`], which the
    /// limiter is made from once at start: this goes into every routing table, so it follows
    /// reloads and the networks discovered at run time.
    pub rrl_exempt: RrlExempt,
    pub tcp: TcpConfig,
}

/// The clients response rate limiting never limits (docs/hardening.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RrlExempt {
    /// `server.rrl.exempt`: loopback unless set.
    pub networks: Vec<IpNet>,
    /// `server.rrl.exempt_client_networks`: the config's `client_networks` too.
    pub client_networks: bool,
    /// `server.rrl.exempt_kubernetes`: the client networks discovered from Kubernetes too.
    pub kubernetes: bool,
}

/// Response rate limiting of UDP answers (docs/hardening.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RrlConfig {
    pub enabled: bool,
    /// Identical responses per second allowed to one client prefix.
    pub responses_per_second: u32,
    /// How long a flood is remembered: after it stops, its prefix is answered again within
    /// this time.
    pub window: Duration,
    /// Every `slip`-th limited response is sent truncated (TC=1); 0 drops them all, 1 slips all.
    pub slip: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
}

/// Limits of the TCP DNS listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpConfig {
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// The longest wait for the first byte of the next query.
    pub idle_timeout: Duration,
    /// The longest time from a query's first byte to its last.
    pub read_timeout: Duration,
    pub max_queries_per_connection: u32,
}

#[derive(Debug, Clone)]
pub struct SiteConfig {
    pub name: String,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientNetwork {
    pub net: IpNet,
    pub site: SiteId,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    pub jitter: Duration,
    pub rise: u32,
    pub fall: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    Http {
        tls: bool,
        tls_verify: bool,
        path: String,
        port: u16,
        host: Option<String>,
        /// Inclusive range of status codes that count as a pass.
        expect: (u16, u16),
    },
    Tcp {
        port: u16,
    },
}

#[derive(Debug, Clone)]
pub struct ZoneConfig {
    pub apex: Name,
    pub soa: Soa,
    pub ns: Vec<Name>,
    pub ttl: u32,
    pub records: Vec<StaticNode>,
    pub geo: Vec<GeoNameConfig>,
    /// Signing, when the zone is signed (docs/dnssec.md).
    pub dnssec: Option<DnssecConfig>,
    /// Dynamic updates, when the zone accepts them (docs/updates.md).
    pub updates: Option<UpdatesConfig>,
}

/// A TSIG key (RFC 8945).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsigKeyConfig {
    /// The key's name as clients send it (`acme` is the DNS name `acme.`).
    pub name: Name,
    pub algorithm: TsigAlgorithm,
    pub secret: TsigSecret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsigAlgorithm {
    HmacSha256,
    HmacSha512,
}

impl TsigAlgorithm {
    pub const NAMES: [(&'static str, TsigAlgorithm); 2] =
        [("hmac-sha256", TsigAlgorithm::HmacSha256), ("hmac-sha512", TsigAlgorithm::HmacSha512)];

    /// The algorithm's name in the config and, with a trailing dot, on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }
}

/// A key's secret: decoded from the config, or a file the load step reads (base64 text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TsigSecret {
    Inline(Vec<u8>),
    File(PathBuf),
}

/// A zone's dynamic updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdatesConfig {
    /// Where applied updates are kept.
    pub store: UpdateStore,
    pub allow: Vec<UpdateRule>,
}

/// Where a zone's applied updates are kept (docs/updates.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateStore {
    /// A journal file (relative paths joined to the config file's directory).
    Journal(PathBuf),
    /// A ConfigMap in one of the `kubernetes` clusters, shared by every replica that names it.
    ConfigMap(ConfigMapRef),
}

impl UpdateStore {
    /// The journal file, for a zone kept in one.
    pub fn journal(&self) -> Option<&std::path::Path> {
        match self {
            UpdateStore::Journal(p) => Some(p),
            UpdateStore::ConfigMap(_) => None,
        }
    }
}

/// `zones.<zone>.updates.kubernetes`: one ConfigMap in the named cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMapRef {
    /// A `kubernetes.clusters[].name`: its kubeconfig and context reach the API server.
    pub cluster: String,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ConfigMapRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConfigMap {}/{} in cluster {}", self.namespace, self.name, self.cluster)
    }
}

/// What one key may change: owner names matching one of `names`, of one of `types`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateRule {
    pub key: Name,
    /// Globs, lower case: `*` matches any run of characters (dots too). A glob is matched
    /// against the owner relative to the zone and against the absolute owner without its dot.
    pub names: Vec<String>,
    pub types: Vec<crate::model::RType>,
}

impl UpdateRule {
    /// True when the rule allows `rtype` at `name` in the zone `apex`.
    pub fn allows(&self, apex: &Name, name: &Name, rtype: crate::model::RType) -> bool {
        self.types.contains(&rtype) && self.matches_name(apex, name)
    }

    /// True when one of the rule's globs matches `name` in the zone `apex`.
    pub fn matches_name(&self, apex: &Name, name: &Name) -> bool {
        let absolute = name.as_str().trim_end_matches('.');
        let relative = name.relative_to(apex);
        self.names.iter().any(|g| glob(g, &relative) || glob(g, absolute))
    }
}

/// `*` matches any run of characters; everything else matches itself (ASCII case-insensitively:
/// globs and names are both lower case).
pub fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(tail) = text.strip_prefix(head) else { return false };
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && glob(rest, &tail[i..]))
        }
    }
}

/// A signed zone's keys and signature lifetimes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnssecConfig {
    /// PKCS#8 PEM key files (relative paths already joined to the config file's directory);
    /// a key alone is a combined signing key (CSK). Read by the load step, not here.
    pub keys: Vec<std::path::PathBuf>,
    /// Key-signing keys of a KSK/ZSK split: they sign the DNSKEY, CDS and CDNSKEY sets.
    pub ksk: Vec<std::path::PathBuf>,
    /// Zone-signing keys of a KSK/ZSK split: they sign every other RRset.
    pub zsk: Vec<std::path::PathBuf>,
    /// How long a signature is valid from its inception (which is backdated by an hour).
    pub validity: std::time::Duration,
    /// A signature with less than this left is made again at the next build.
    pub refresh: std::time::Duration,
}

/// The static RRsets at one name (all of one node's records share its TTL).
#[derive(Debug, Clone)]
pub struct StaticNode {
    pub name: Name,
    pub ttl: u32,
    pub rdata: Vec<RData>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllDown {
    /// Fail open: answer with every site's addresses, as if all were up.
    All,
    /// Answer with the nearest site's addresses, as if it were up.
    First,
    /// Answer NOERROR with no records (NODATA).
    NoData,
    /// Answer SERVFAIL, so resolvers try elsewhere or serve stale.
    ServFail,
}

impl AllDown {
    pub const NAMES: [(&'static str, AllDown); 4] = [
        ("all", AllDown::All),
        ("first", AllDown::First),
        ("nodata", AllDown::NoData),
        ("servfail", AllDown::ServFail),
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            AllDown::All => "all",
            AllDown::First => "first",
            AllDown::NoData => "nodata",
            AllDown::ServFail => "servfail",
        }
    }
}

#[derive(Debug, Clone)]
pub struct GeoNameConfig {
    pub name: Name,
    pub ttl: u32,
    pub max_answers: Option<NonZeroUsize>,
    pub all_down: AllDown,
    pub health_check: Option<String>,
    /// Sites in the order written (the order for clients with no location) with their addresses.
    pub sites: Vec<(SiteId, Vec<IpAddr>)>,
}

/// The `kubernetes` section; no clusters when it is absent.
#[derive(Debug, Clone, PartialEq)]
pub struct KubernetesConfig {
    pub clusters: Vec<ClusterConfig>,
    /// After this long, /readyz is ready with the clusters whose first list is in; the others
    /// are named in /status and the metrics (an unreachable API server must not keep a healthy
    /// instance out of its load balancer).
    pub sync_timeout: Duration,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig { clusters: Vec::new(), sync_timeout: super::DEFAULT_KUBE_SYNC_TIMEOUT }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub name: String,
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub placement: ClusterPlacement,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClusterPlacement {
    /// Every Service of the cluster is at this site.
    Site(SiteId),
    /// A stretched cluster: each node's value of this label names its site.
    Label(String),
}
