//! The YAML file as written: loose types (strings for addresses, durations and names) so that
//! validation, not the parser, reports every problem with its path, all at once. Unknown keys
//! are rejected here.

use indexmap::IndexMap;
use serde::Deserialize;

/// One value or a list of them (`CNAME: app` or `A: [192.0.2.1, 192.0.2.2]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(v) => std::slice::from_ref(v),
            OneOrMany::Many(v) => v,
        }
    }
}

/// A scalar written as a number or a string (`port: 80`, `expect: "200-399"`, `A: [127.0.0.1]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
}

impl Scalar {
    pub fn text(&self) -> String {
        match self {
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Text(s) => s.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub geoip: Option<GeoIp>,
    #[serde(default)]
    pub sites: IndexMap<String, Site>,
    #[serde(default)]
    pub client_networks: Vec<ClientNetwork>,
    #[serde(default)]
    pub health_checks: IndexMap<String, HealthCheck>,
    #[serde(default)]
    pub zones: IndexMap<String, Zone>,
    #[serde(default)]
    pub kubernetes: Option<Kubernetes>,
    /// TSIG keys that may send dynamic updates (docs/updates.md).
    #[serde(default)]
    pub tsig_keys: IndexMap<String, TsigKey>,
}

/// `tsig_keys.<name>`: an HMAC key, its secret inline (base64) or in a file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsigKey {
    pub algorithm: String,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub secret_file: Option<String>,
}

/// `zones.<zone>.updates`: where applied updates are journaled and who may send them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Updates {
    #[serde(default)]
    pub journal: Option<String>,
    /// Instead of `journal`: a ConfigMap in one of the `kubernetes` clusters.
    #[serde(default)]
    pub kubernetes: Option<UpdatesKubernetes>,
    #[serde(default)]
    pub allow: Vec<UpdateRule>,
}

/// `zones.<zone>.updates.kubernetes`: the ConfigMap that stores the zone's dynamic records.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatesKubernetes {
    pub cluster: String,
    pub namespace: String,
    pub configmap: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRule {
    pub key: String,
    pub names: Vec<String>,
    #[serde(default)]
    pub types: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    #[serde(default)]
    pub dns_listen: Option<OneOrMany<String>>,
    #[serde(default)]
    pub admin_listen: Option<String>,
    /// Idle timeout of a TCP DNS connection.
    #[serde(default)]
    pub tcp_timeout: Option<String>,
    /// How long SIGTERM/SIGINT waits for in-flight work before exiting.
    #[serde(default)]
    pub shutdown_grace: Option<String>,
    /// The admin state file (operator overrides: drained sites, forced endpoints).
    #[serde(default)]
    pub admin_state: Option<String>,
    /// Response rate limiting of UDP answers.
    #[serde(default)]
    pub rrl: Option<Rrl>,
    /// Limits of the TCP DNS listener.
    #[serde(default)]
    pub tcp: Option<Tcp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rrl {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub responses_per_second: Option<i64>,
    #[serde(default)]
    pub window: Option<String>,
    #[serde(default)]
    pub slip: Option<i64>,
    #[serde(default)]
    pub ipv4_prefix: Option<i64>,
    #[serde(default)]
    pub ipv6_prefix: Option<i64>,
    /// Networks never limited (CIDRs or addresses); absent: loopback.
    #[serde(default)]
    pub exempt: Option<Vec<String>>,
    /// Whether the `client_networks` are never limited too.
    #[serde(default)]
    pub exempt_client_networks: Option<bool>,
    /// Whether the networks discovered from Kubernetes (node pod CIDRs and addresses) are never
    /// limited too.
    #[serde(default)]
    pub exempt_kubernetes: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tcp {
    #[serde(default)]
    pub max_connections: Option<i64>,
    #[serde(default)]
    pub max_connections_per_client: Option<i64>,
    /// Replaces `server.tcp_timeout` (setting both is an error).
    #[serde(default)]
    pub idle_timeout: Option<String>,
    #[serde(default)]
    pub read_timeout: Option<String>,
    #[serde(default)]
    pub max_queries_per_connection: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoIp {
    pub database: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    pub location: Vec<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientNetwork {
    pub cidr: String,
    pub site: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(default)]
    pub http: Option<HttpCheck>,
    #[serde(default)]
    pub https: Option<HttpCheck>,
    #[serde(default)]
    pub tcp: Option<TcpCheck>,
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub jitter: Option<String>,
    #[serde(default)]
    pub rise: Option<i64>,
    #[serde(default)]
    pub fall: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub port: Option<i64>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub expect: Option<Scalar>,
    /// HTTPS only: verify the server's certificate (default true).
    #[serde(default)]
    pub tls_verify: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpCheck {
    pub port: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub soa: Soa,
    pub ns: OneOrMany<String>,
    #[serde(default)]
    pub ttl: Option<i64>,
    #[serde(default)]
    pub records: IndexMap<String, Node>,
    #[serde(default)]
    pub geo: IndexMap<String, GeoName>,
    #[serde(default)]
    pub dnssec: Option<Dnssec>,
    #[serde(default)]
    pub updates: Option<Updates>,
}

/// `zones.<zone>.dnssec`: signing keys and signature lifetimes (docs/dnssec.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dnssec {
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub ksk: Vec<String>,
    #[serde(default)]
    pub zsk: Vec<String>,
    #[serde(default)]
    pub validity: Option<String>,
    #[serde(default)]
    pub refresh: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Soa {
    pub mname: String,
    pub rname: String,
    pub serial: i64,
    #[serde(default)]
    pub refresh: Option<i64>,
    #[serde(default)]
    pub retry: Option<i64>,
    #[serde(default)]
    pub expire: Option<i64>,
    #[serde(default)]
    pub minimum: Option<i64>,
}

/// The static RRsets at one name.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    #[serde(default)]
    pub ttl: Option<i64>,
    #[serde(default, rename = "A")]
    pub a: Option<OneOrMany<Scalar>>,
    #[serde(default, rename = "AAAA")]
    pub aaaa: Option<OneOrMany<Scalar>>,
    #[serde(default, rename = "CNAME")]
    pub cname: Option<String>,
    #[serde(default, rename = "TXT")]
    pub txt: Option<OneOrMany<Scalar>>,
    #[serde(default, rename = "MX")]
    pub mx: Option<OneOrMany<Scalar>>,
    #[serde(default, rename = "SRV")]
    pub srv: Option<OneOrMany<Scalar>>,
    #[serde(default, rename = "CAA")]
    pub caa: Option<OneOrMany<Scalar>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoName {
    #[serde(default)]
    pub ttl: Option<i64>,
    #[serde(default)]
    pub max_answers: Option<i64>,
    #[serde(default)]
    pub all_down: Option<String>,
    #[serde(default)]
    pub health_check: Option<String>,
    #[serde(default)]
    pub sites: Option<IndexMap<String, OneOrMany<Scalar>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kubernetes {
    #[serde(default)]
    pub clusters: Vec<Cluster>,
    #[serde(default)]
    pub sync_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub name: String,
    #[serde(default)]
    pub kubeconfig: Option<String>,
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub site: Option<String>,
    #[serde(default)]
    pub site_label: Option<String>,
}
