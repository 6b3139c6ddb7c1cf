//! Wire -> validated config. Pure: no file access, no lookups, no metrics. Every problem is
//! collected with its path, so one run reports them all.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

use indexmap::IndexMap;
use ipnet::IpNet;

use super::model::*;
use super::wire::{self, Scalar};
use super::{Problem, duration};
use crate::model::{Caa, Location, Mx, Name, RData, SiteId, Soa, Srv};

/// Defaults, documented in docs/configuration.md.
pub const DEFAULT_DNS_LISTEN: &str = "127.0.0.1:8053";
pub const DEFAULT_ZONE_TTL: u32 = 300;
pub const DEFAULT_TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long /readyz waits for a cluster's first full list before the instance is ready with
/// the clusters that did sync (`kubernetes.sync_timeout`).
pub const DEFAULT_KUBE_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_RISE: u32 = 2;
/// RRL is on by default: a public authoritative server must not be an amplifier from its first day.
pub const DEFAULT_RRL_ENABLED: bool = true;
/// NSD's shipped default; BIND and Knot have none. High enough for an ECS-aware resolver that
/// asks for one name once per client subnet from a single /24 (docs/hardening.md).
pub const DEFAULT_RRL_RESPONSES_PER_SECOND: u32 = 200;
/// BIND's default window.
pub const DEFAULT_RRL_WINDOW: Duration = Duration::from_secs(15);
/// BIND's and NSD's default: every second limited response is sent truncated, the other dropped.
pub const DEFAULT_RRL_SLIP: u32 = 2;
pub const DEFAULT_RRL_IPV4_PREFIX: u8 = 24;
/// BIND's default (NSD uses /64).
pub const DEFAULT_RRL_IPV6_PREFIX: u8 = 56;
pub const DEFAULT_TCP_MAX_CONNECTIONS: usize = 1024;
pub const DEFAULT_TCP_MAX_CONNECTIONS_PER_CLIENT: usize = 32;
pub const DEFAULT_TCP_READ_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_TCP_MAX_QUERIES_PER_CONNECTION: u32 = 1000;
pub const DEFAULT_FALL: u32 = 3;
const MAX_TTL: i64 = 0x7fff_ffff;

/// A path into the YAML document, printed the way a reader finds it:
/// `zones."geo.example.".geo.app.sites.fra`.
#[derive(Clone, Default)]
struct P(String);

impl P {
    fn key(&self, key: &str) -> P {
        let plain =
            !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'@');
        let seg = if plain { key.to_owned() } else { format!("{key:?}") };
        if self.0.is_empty() { P(seg) } else { P(format!("{}.{seg}", self.0)) }
    }
    fn idx(&self, i: usize) -> P {
        P(format!("{}[{i}]", self.0))
    }
}

struct V {
    problems: Vec<Problem>,
}

impl V {
    fn err(&mut self, path: &P, message: impl Into<String>) {
        self.problems.push(Problem { path: path.0.clone(), message: message.into() });
    }

    fn name(&mut self, path: &P, text: &str, origin: &Name) -> Option<Name> {
        Name::resolve(text, origin).map_err(|e| self.err(path, e.to_string())).ok()
    }

    fn ttl(&mut self, path: &P, v: Option<i64>, default: u32) -> u32 {
        match v {
            None => default,
            Some(t) if (0..=MAX_TTL).contains(&t) => t as u32,
            Some(t) => {
                self.err(path, format!("TTL {t} is out of range 0-{MAX_TTL}"));
                default
            }
        }
    }

    fn u32(&mut self, path: &P, v: Option<i64>, default: u32) -> u32 {
        match v {
            None => default,
            Some(t) => u32::try_from(t).unwrap_or_else(|_| {
                self.err(path, format!("{t} is out of range 0-{}", u32::MAX));
                default
            }),
        }
    }

    fn port(&mut self, path: &P, v: i64) -> u16 {
        match u16::try_from(v) {
            Ok(p) if p > 0 => p,
            _ => {
                self.err(path, format!("port {v} is out of range 1-65535"));
                0
            }
        }
    }

    fn duration(&mut self, path: &P, v: Option<&str>, default: Duration) -> Duration {
        match v {
            None => default,
            Some(text) => duration::parse(text).unwrap_or_else(|e| {
                self.err(path, e);
                default
            }),
        }
    }

    fn site(&mut self, path: &P, name: &str, sites: &HashMap<&str, SiteId>) -> Option<SiteId> {
        let id = sites.get(name).copied();
        if id.is_none() {
            self.err(path, format!("unknown site {name:?}"));
        }
        id
    }
}

/// Validates a parsed file. `base` is the directory that relative file paths are relative to
/// (the config file's own directory).
pub fn validate(file: wire::File, base: &Path) -> Result<Config, Vec<Problem>> {
    let mut v = V { problems: Vec::new() };
    let root = P::default();

    let mut server = server(&mut v, &root.key("server"), &file.server);
    server.admin_state = file.server.admin_state.as_ref().map(|p| base.join(p));
    let geoip = file.geoip.as_ref().and_then(|g| g.database.as_ref()).map(|p| base.join(p));
    let sites = sites(&mut v, &root.key("sites"), &file.sites);
    let site_ids: HashMap<&str, SiteId> = file.sites.keys().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let client_networks = client_networks(&mut v, &root.key("client_networks"), &file.client_networks, &site_ids);
    let mut health_checks = IndexMap::new();
    for (name, hc) in &file.health_checks {
        if let Some(check) = health_check(&mut v, &root.key("health_checks").key(name), hc) {
            health_checks.insert(name.clone(), check);
        }
    }
    let zones = zones(&mut v, &root.key("zones"), &file, &site_ids);
    let kubernetes = match &file.kubernetes {
        Some(k) => kubernetes(&mut v, &root.key("kubernetes"), k, &site_ids, base),
        None => KubernetesConfig::default(),
    };

    if !v.problems.is_empty() {
        return Err(v.problems);
    }
    Ok(Config { server, geoip, sites, client_networks, health_checks, zones, kubernetes })
}

/// The `sites` section: names and locations, in the order written (a site's id).
fn sites(v: &mut V, path: &P, file: &IndexMap<String, wire::Site>) -> Vec<SiteConfig> {
    let mut sites = Vec::new();
    for (name, site) in file {
        let path = path.key(name);
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
            v.err(&path, "site names may use only letters, digits, '-', '_' and '.'");
        }
        let location = match site.location.as_slice() {
            [lat, lon] => {
                let loc = Location::new(*lat, *lon);
                if !loc.is_valid() {
                    v.err(
                        &path.key("location"),
                        format!("[{lat}, {lon}] is not a latitude in -90..90 and a longitude in -180..180"),
                    );
                }
                loc
            }
            _ => {
                v.err(&path.key("location"), "expected [latitude, longitude]");
                Location::new(0.0, 0.0)
            }
        };
        sites.push(SiteConfig { name: name.clone(), location });
    }
    if sites.is_empty() {
        v.err(path, "at least one site is required");
    }
    sites
}

/// The `client_networks` section: each CIDR (or single address) at a known site, once.
fn client_networks(
    v: &mut V,
    path: &P,
    file: &[wire::ClientNetwork],
    site_ids: &HashMap<&str, SiteId>,
) -> Vec<ClientNetwork> {
    let mut client_networks = Vec::new();
    let mut seen_nets = HashSet::new();
    for (i, cn) in file.iter().enumerate() {
        let path = path.idx(i);
        let site = v.site(&path.key("site"), &cn.site, site_ids);
        let net = match cn.cidr.parse::<IpNet>() {
            Ok(net) if net.trunc() != net => {
                v.err(&path.key("cidr"), format!("{net} has host bits set; did you mean {}?", net.trunc()));
                None
            }
            Ok(net) => Some(net),
            Err(_) => match cn.cidr.parse::<IpAddr>() {
                Ok(ip) => Some(IpNet::from(ip)),
                Err(_) => {
                    v.err(&path.key("cidr"), format!("{:?} is not a network (CIDR) or an address", cn.cidr));
                    None
                }
            },
        };
        if let Some(net) = net {
            if !seen_nets.insert(net) {
                v.err(&path.key("cidr"), format!("{net} is listed more than once"));
            }
            if let Some(site) = site {
                client_networks.push(ClientNetwork { net, site });
            }
        }
    }
    client_networks
}

/// The `zones` section: each apex once, none the root, at least one zone.
fn zones(v: &mut V, path: &P, file: &wire::File, site_ids: &HashMap<&str, SiteId>) -> Vec<ZoneConfig> {
    let mut zones = Vec::new();
    let mut apexes = HashSet::new();
    for (apex_text, z) in &file.zones {
        let path = path.key(apex_text);
        let Some(apex) = Name::parse_absolute(apex_text).map_err(|e| v.err(&path, e.to_string())).ok() else {
            continue;
        };
        if apex.is_root() {
            v.err(&path, "serving the root zone is not supported");
            continue;
        }
        if !apexes.insert(apex.clone()) {
            v.err(&path, format!("zone {apex} is defined more than once"));
            continue;
        }
        zones.push(zone(v, &path, apex, z, site_ids, &file.health_checks, file.kubernetes.is_some()));
    }
    if zones.is_empty() && v.problems.is_empty() {
        v.err(path, "at least one zone is required");
    }
    zones
}

/// The `kubernetes` section: its clusters, each placed by a site or a node label.
fn kubernetes(
    v: &mut V,
    path: &P,
    k: &wire::Kubernetes,
    site_ids: &HashMap<&str, SiteId>,
    base: &Path,
) -> KubernetesConfig {
    let mut clusters = Vec::new();
    let mut names = HashSet::new();
    for (i, c) in k.clusters.iter().enumerate() {
        let path = path.key("clusters").idx(i);
        if c.name.is_empty() {
            v.err(&path.key("name"), "a cluster needs a name");
        } else if !names.insert(c.name.as_str()) {
            v.err(&path.key("name"), format!("cluster {:?} is listed more than once", c.name));
        }
        let placement = match (&c.site, &c.site_label) {
            (Some(site), None) => v.site(&path.key("site"), site, site_ids).map(ClusterPlacement::Site),
            (None, Some(label)) if !label.is_empty() => Some(ClusterPlacement::Label(label.clone())),
            (None, Some(_)) => {
                v.err(&path.key("site_label"), "must not be empty");
                None
            }
            (Some(_), Some(_)) => {
                v.err(&path, "set either site (one cluster per site) or site_label (a stretched cluster), not both");
                None
            }
            (None, None) => {
                v.err(&path, "set site (one cluster per site) or site_label (a stretched cluster)");
                None
            }
        };
        if let Some(placement) = placement {
            clusters.push(ClusterConfig {
                name: c.name.clone(),
                kubeconfig: c.kubeconfig.as_ref().map(|p| base.join(p)),
                context: c.context.clone(),
                placement,
            });
        }
    }
    if k.clusters.is_empty() {
        v.err(&path.key("clusters"), "list at least one cluster, or remove the kubernetes section");
    }
    let sync_timeout = v.duration(&path.key("sync_timeout"), k.sync_timeout.as_deref(), DEFAULT_KUBE_SYNC_TIMEOUT);
    if sync_timeout.is_zero() {
        v.err(&path.key("sync_timeout"), "must be above 0");
    }
    KubernetesConfig { clusters, sync_timeout }
}

fn server(v: &mut V, path: &P, s: &wire::Server) -> ServerConfig {
    let mut dns_listen = Vec::new();
    let listen: Vec<String> = match &s.dns_listen {
        Some(l) => l.as_slice().to_vec(),
        None => vec![DEFAULT_DNS_LISTEN.to_owned()],
    };
    for (i, addr) in listen.iter().enumerate() {
        match addr.parse::<SocketAddr>() {
            Ok(a) if !dns_listen.contains(&a) => dns_listen.push(a),
            Ok(a) => v.err(&path.key("dns_listen").idx(i), format!("{a} is listed more than once")),
            Err(_) => v.err(
                &path.key("dns_listen").idx(i),
                format!("{addr:?} is not an address:port (write IPv6 as \"[::1]:8053\")"),
            ),
        }
    }
    if listen.is_empty() {
        v.err(&path.key("dns_listen"), "at least one address is required");
    }
    let admin_listen = s.admin_listen.as_ref().and_then(|a| {
        a.parse::<SocketAddr>()
            .map_err(|_| v.err(&path.key("admin_listen"), format!("{a:?} is not an address:port")))
            .ok()
    });
    let tcp_timeout = v.duration(&path.key("tcp_timeout"), s.tcp_timeout.as_deref(), DEFAULT_TCP_TIMEOUT);
    let tcp = tcp(v, &path.key("tcp"), s.tcp.as_ref().unwrap_or(&wire::Tcp::default()), tcp_timeout);
    if s.tcp_timeout.is_some() && s.tcp.as_ref().is_some_and(|t| t.idle_timeout.is_some()) {
        v.err(&path.key("tcp_timeout"), "set either tcp_timeout or tcp.idle_timeout, not both");
    }
    ServerConfig {
        dns_listen,
        admin_listen,
        tcp_timeout: tcp.idle_timeout,
        shutdown_grace: v.duration(&path.key("shutdown_grace"), s.shutdown_grace.as_deref(), DEFAULT_SHUTDOWN_GRACE),
        admin_state: None,
        rrl: rrl(v, &path.key("rrl"), s.rrl.as_ref().unwrap_or(&wire::Rrl::default())),
        tcp,
    }
}

/// An integer key in `range`, or the default (with a problem when out of range).
fn bounded(v: &mut V, path: &P, value: Option<i64>, range: std::ops::RangeInclusive<i64>, default: i64) -> i64 {
    match value {
        None => default,
        Some(n) if range.contains(&n) => n,
        Some(n) => {
            v.err(path, format!("{n} is out of range {}-{}", range.start(), range.end()));
            default
        }
    }
}

fn rrl(v: &mut V, path: &P, r: &wire::Rrl) -> RrlConfig {
    let window = v.duration(&path.key("window"), r.window.as_deref(), DEFAULT_RRL_WINDOW);
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&window) {
        v.err(&path.key("window"), "must be between 1s and 1h");
    }
    RrlConfig {
        enabled: r.enabled.unwrap_or(DEFAULT_RRL_ENABLED),
        responses_per_second: bounded(
            v,
            &path.key("responses_per_second"),
            r.responses_per_second,
            1..=100_000,
            i64::from(DEFAULT_RRL_RESPONSES_PER_SECOND),
        ) as u32,
        window: window.clamp(Duration::from_secs(1), Duration::from_secs(3600)),
        slip: bounded(v, &path.key("slip"), r.slip, 0..=10, i64::from(DEFAULT_RRL_SLIP)) as u32,
        ipv4_prefix: bounded(v, &path.key("ipv4_prefix"), r.ipv4_prefix, 0..=32, i64::from(DEFAULT_RRL_IPV4_PREFIX))
            as u8,
        ipv6_prefix: bounded(v, &path.key("ipv6_prefix"), r.ipv6_prefix, 0..=128, i64::from(DEFAULT_RRL_IPV6_PREFIX))
            as u8,
    }
}

fn tcp(v: &mut V, path: &P, t: &wire::Tcp, idle_default: Duration) -> TcpConfig {
    let idle_timeout = v.duration(&path.key("idle_timeout"), t.idle_timeout.as_deref(), idle_default);
    let read_timeout = v.duration(&path.key("read_timeout"), t.read_timeout.as_deref(), DEFAULT_TCP_READ_TIMEOUT);
    for (key, d) in [("idle_timeout", idle_timeout), ("read_timeout", read_timeout)] {
        if d.is_zero() {
            v.err(&path.key(key), "must be more than 0");
        }
    }
    let max_connections =
        bounded(v, &path.key("max_connections"), t.max_connections, 1..=1_000_000, DEFAULT_TCP_MAX_CONNECTIONS as i64)
            as usize;
    let per_client = bounded(
        v,
        &path.key("max_connections_per_client"),
        t.max_connections_per_client,
        1..=1_000_000,
        DEFAULT_TCP_MAX_CONNECTIONS_PER_CLIENT as i64,
    ) as usize;
    TcpConfig {
        max_connections,
        max_connections_per_client: per_client.min(max_connections),
        idle_timeout,
        read_timeout,
        max_queries_per_connection: bounded(
            v,
            &path.key("max_queries_per_connection"),
            t.max_queries_per_connection,
            1..=1_000_000,
            i64::from(DEFAULT_TCP_MAX_QUERIES_PER_CONNECTION),
        ) as u32,
    }
}

fn health_check(v: &mut V, path: &P, hc: &wire::HealthCheck) -> Option<HealthCheck> {
    let interval = v.duration(&path.key("interval"), hc.interval.as_deref(), DEFAULT_INTERVAL);
    let timeout = v.duration(&path.key("timeout"), hc.timeout.as_deref(), DEFAULT_TIMEOUT.min(interval));
    let jitter = v.duration(&path.key("jitter"), hc.jitter.as_deref(), interval / 10);
    if interval.is_zero() {
        v.err(&path.key("interval"), "must be more than 0");
    }
    if timeout.is_zero() || timeout > interval {
        v.err(&path.key("timeout"), format!("must be more than 0 and at most the interval ({interval:?})"));
    }
    if jitter > interval {
        v.err(&path.key("jitter"), format!("must be at most the interval ({interval:?})"));
    }
    let rise = v.u32(&path.key("rise"), hc.rise, DEFAULT_RISE);
    let fall = v.u32(&path.key("fall"), hc.fall, DEFAULT_FALL);
    for (key, n) in [("rise", rise), ("fall", fall)] {
        if !(1..=100).contains(&n) {
            v.err(&path.key(key), format!("{n} is out of range 1-100"));
        }
    }
    let kinds = [hc.http.is_some(), hc.https.is_some(), hc.tcp.is_some()];
    let probe = match kinds.iter().filter(|k| **k).count() {
        1 => {
            if let Some(t) = &hc.tcp {
                Probe::Tcp { port: v.port(&path.key("tcp").key("port"), t.port) }
            } else {
                let (tls, key, h) = match (&hc.http, &hc.https) {
                    (Some(h), _) => (false, "http", h),
                    (_, Some(h)) => (true, "https", h),
                    _ => unreachable!("exactly one kind is set"),
                };
                http_probe(v, &path.key(key), tls, h)
            }
        }
        0 => {
            v.err(path, "set one of http, https or tcp");
            return None;
        }
        _ => {
            v.err(path, "set only one of http, https or tcp");
            return None;
        }
    };
    Some(HealthCheck { probe, interval, timeout, jitter, rise, fall })
}

fn http_probe(v: &mut V, path: &P, tls: bool, h: &wire::HttpCheck) -> Probe {
    if !tls && h.tls_verify.is_some() {
        v.err(&path.key("tls_verify"), "only applies to https checks");
    }
    let port = h.port.map(|p| v.port(&path.key("port"), p)).unwrap_or(if tls { 443 } else { 80 });
    let path_text = h.path.clone().unwrap_or_else(|| "/".to_owned());
    if !path_text.starts_with('/') {
        v.err(&path.key("path"), format!("{path_text:?} must start with '/'"));
    }
    let expect = match &h.expect {
        None => (200, 399),
        Some(e) => parse_status_range(&e.text()).unwrap_or_else(|| {
            v.err(&path.key("expect"), format!("{:?} is not a status code or range like \"200-399\"", e.text()));
            (200, 399)
        }),
    };
    Probe::Http { tls, tls_verify: h.tls_verify.unwrap_or(true), path: path_text, port, host: h.host.clone(), expect }
}

fn parse_status_range(text: &str) -> Option<(u16, u16)> {
    let (lo, hi) = match text.split_once('-') {
        Some((lo, hi)) => (lo.trim().parse().ok()?, hi.trim().parse().ok()?),
        None => {
            let code = text.trim().parse().ok()?;
            (code, code)
        }
    };
    ((100..=599).contains(&lo) && (lo..=599).contains(&hi)).then_some((lo, hi))
}

#[allow(clippy::too_many_arguments)]
fn zone(
    v: &mut V,
    path: &P,
    apex: Name,
    z: &wire::Zone,
    sites: &HashMap<&str, SiteId>,
    checks: &IndexMap<String, wire::HealthCheck>,
    has_kubernetes: bool,
) -> ZoneConfig {
    let ttl = v.ttl(&path.key("ttl"), z.ttl, DEFAULT_ZONE_TTL);
    let sp = path.key("soa");
    let soa = Soa {
        mname: v.name(&sp.key("mname"), &z.soa.mname, &apex).unwrap_or_else(|| apex.clone()),
        rname: v.name(&sp.key("rname"), &z.soa.rname, &apex).unwrap_or_else(|| apex.clone()),
        serial: v.u32(&sp.key("serial"), Some(z.soa.serial), 1),
        refresh: v.u32(&sp.key("refresh"), z.soa.refresh, 7200),
        retry: v.u32(&sp.key("retry"), z.soa.retry, 1800),
        expire: v.u32(&sp.key("expire"), z.soa.expire, 1_209_600),
        minimum: v.u32(&sp.key("minimum"), z.soa.minimum, 300),
    };
    let mut ns = Vec::new();
    for (i, n) in z.ns.as_slice().iter().enumerate() {
        if let Some(name) = v.name(&path.key("ns").idx(i), n, &apex) {
            ns.push(name);
        }
    }
    if z.ns.as_slice().is_empty() {
        v.err(&path.key("ns"), "at least one name server is required");
    }

    let mut owners: HashMap<Name, String> = HashMap::new();
    let mut owner = |v: &mut V, p: &P, text: &str| -> Option<Name> {
        let name = v.name(p, text, &apex)?;
        if !name.is_in(&apex) {
            v.err(p, format!("{name} is outside the zone {apex}"));
            return None;
        }
        if let Some(first) = owners.get(&name) {
            v.err(p, format!("{name} is already defined at {first}"));
            return None;
        }
        owners.insert(name.clone(), p.0.clone());
        Some(name)
    };

    let mut records = Vec::new();
    for (text, node) in &z.records {
        let p = path.key("records").key(text);
        let Some(name) = owner(v, &p, text) else { continue };
        let before = v.problems.len();
        let rdata = node_rdata(v, &p, node, &apex);
        if rdata.is_empty() {
            if v.problems.len() == before {
                v.err(&p, "no records (set at least one of A, AAAA, CNAME, TXT, MX, SRV, CAA)");
            }
            continue;
        }
        if name == apex && node.cname.is_some() {
            v.err(&p.key("CNAME"), "a CNAME cannot stand at the zone apex (it holds SOA and NS)");
        }
        records.push(StaticNode { name, ttl: v.ttl(&p.key("ttl"), node.ttl, ttl), rdata });
    }

    let mut geo = Vec::new();
    for (text, g) in &z.geo {
        let p = path.key("geo").key(text);
        let Some(name) = owner(v, &p, text) else { continue };
        if name == apex {
            v.err(&p, "the zone apex cannot be a geo name (it holds SOA and NS); use a name below it");
            continue;
        }
        let all_down = match &g.all_down {
            None => AllDown::All,
            Some(s) => AllDown::NAMES.iter().find(|(n, _)| n == s).map(|(_, a)| *a).unwrap_or_else(|| {
                v.err(&p.key("all_down"), format!("{s:?} is not one of all, first, nodata, servfail"));
                AllDown::All
            }),
        };
        let max_answers = g.max_answers.and_then(|m| {
            let n = usize::try_from(m).ok().and_then(NonZeroUsize::new);
            if n.is_none() {
                v.err(
                    &p.key("max_answers"),
                    format!("{m} must be 1 or more (leave it out for every address of the nearest site)"),
                );
            }
            n
        });
        if let Some(hc) = &g.health_check
            && !checks.contains_key(hc)
        {
            v.err(&p.key("health_check"), format!("unknown health check {hc:?}"));
        }
        let mut geo_sites = Vec::new();
        for (site_name, addrs) in g.sites.iter().flatten() {
            let sp = p.key("sites").key(site_name);
            let site = v.site(&sp, site_name, sites);
            let mut ips = Vec::new();
            for (i, a) in addrs.as_slice().iter().enumerate() {
                match a.text().parse::<IpAddr>() {
                    Ok(ip) if !ips.contains(&ip) => ips.push(ip),
                    Ok(ip) => v.err(&sp.idx(i), format!("{ip} is listed more than once")),
                    Err(_) => v.err(&sp.idx(i), format!("{:?} is not an IPv4 or IPv6 address", a.text())),
                }
            }
            if let Some(site) = site {
                geo_sites.push((site, ips));
            }
        }
        if geo_sites.is_empty() && !has_kubernetes {
            v.err(&p.key("sites"), "no sites: list each site's addresses (or configure kubernetes to supply them)");
        }
        geo.push(GeoNameConfig {
            name,
            ttl: v.ttl(&p.key("ttl"), g.ttl, ttl),
            max_answers,
            all_down,
            health_check: g.health_check.clone(),
            sites: geo_sites,
        });
    }

    ZoneConfig { apex, soa, ns, ttl, records, geo }
}

fn node_rdata(v: &mut V, p: &P, node: &wire::Node, apex: &Name) -> Vec<RData> {
    let mut out = Vec::new();
    let list = |o: &Option<wire::OneOrMany<Scalar>>| -> Vec<String> {
        o.as_ref().map(|l| l.as_slice().iter().map(Scalar::text).collect()).unwrap_or_default()
    };
    for (i, a) in list(&node.a).iter().enumerate() {
        match a.parse::<Ipv4Addr>() {
            Ok(ip) => out.push(RData::A(ip)),
            Err(_) => v.err(&p.key("A").idx(i), format!("{a:?} is not an IPv4 address")),
        }
    }
    for (i, a) in list(&node.aaaa).iter().enumerate() {
        match a.parse::<Ipv6Addr>() {
            Ok(ip) => out.push(RData::Aaaa(ip)),
            Err(_) => v.err(&p.key("AAAA").idx(i), format!("{a:?} is not an IPv6 address")),
        }
    }
    for t in list(&node.txt) {
        out.push(RData::Txt(t));
    }
    for (i, m) in list(&node.mx).iter().enumerate() {
        let pp = p.key("MX").idx(i);
        match m.split_whitespace().collect::<Vec<_>>().as_slice() {
            [pref, host] => match (pref.parse(), v.name(&pp, host, apex)) {
                (Ok(preference), Some(exchange)) => out.push(RData::Mx(Mx { preference, exchange })),
                (Err(_), _) => v.err(&pp, format!("{pref:?} is not a preference 0-65535")),
                _ => {}
            },
            _ => v.err(&pp, format!("{m:?} is not \"PREFERENCE HOST\"")),
        }
    }
    for (i, s) in list(&node.srv).iter().enumerate() {
        let pp = p.key("SRV").idx(i);
        match s.split_whitespace().collect::<Vec<_>>().as_slice() {
            [prio, weight, port, target] => {
                match (prio.parse(), weight.parse(), port.parse(), v.name(&pp, target, apex)) {
                    (Ok(priority), Ok(weight), Ok(port), Some(target)) => {
                        out.push(RData::Srv(Srv { priority, weight, port, target }))
                    }
                    (_, _, _, None) => {}
                    _ => v.err(&pp, format!("{s:?}: priority, weight and port must be 0-65535")),
                }
            }
            _ => v.err(&pp, format!("{s:?} is not \"PRIORITY WEIGHT PORT TARGET\"")),
        }
    }
    for (i, c) in list(&node.caa).iter().enumerate() {
        let pp = p.key("CAA").idx(i);
        let mut parts = c.splitn(3, ' ');
        match (parts.next().map(str::parse::<u8>), parts.next(), parts.next()) {
            (Some(Ok(flags)), Some(tag), Some(value))
                if !tag.is_empty() && tag.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                out.push(RData::Caa(Caa {
                    critical: flags & 0x80 != 0,
                    tag: tag.to_ascii_lowercase(),
                    value: value.trim().trim_matches('"').to_owned(),
                }))
            }
            _ => v.err(&pp, format!("{c:?} is not \"FLAGS TAG VALUE\" (like 0 issue \"letsencrypt.org\")")),
        }
    }
    if let Some(target) = &node.cname {
        if !out.is_empty() {
            v.err(&p.key("CNAME"), "a CNAME cannot stand beside other records at the same name");
        }
        if let Some(t) = v.name(&p.key("CNAME"), target, apex) {
            out.push(RData::Cname(t));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges() {
        assert_eq!(parse_status_range("200-399"), Some((200, 399)));
        assert_eq!(parse_status_range("204"), Some((204, 204)));
        assert_eq!(parse_status_range("399-200"), None);
        assert_eq!(parse_status_range("abc"), None);
        assert_eq!(parse_status_range("99"), None);
    }

    #[test]
    fn paths_quote_keys_with_dots() {
        let p = P::default().key("zones").key("geo.example.").key("geo").key("app").idx(2);
        assert_eq!(p.0, "zones.\"geo.example.\".geo.app[2]");
    }
}
