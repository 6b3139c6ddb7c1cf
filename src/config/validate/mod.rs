//! Wire -> validated config. Pure: no file access, no lookups, no metrics. Every problem is
//! collected with its path, so one run reports them all.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

use indexmap::IndexMap;
use ipnet::IpNet;

use super::model::*;
use super::wire;
use super::{Problem, duration};

mod health;
mod kubernetes;
mod server;
mod updates;
mod zone;

use crate::model::{Caa, Location, Mx, Name, RData, SiteId, Soa, Srv};
use health::health_check;
#[cfg(test)]
use health::parse_status_range;
use kubernetes::kubernetes;
use server::server;
pub use updates::decode_secret;
use zone::zones;

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
/// The host itself: a packet with a loopback source cannot come from off the host (Linux drops
/// such "martian" packets on every other interface), so exempting it exempts no spoofer.
pub const DEFAULT_RRL_EXEMPT: [&str; 2] = ["127.0.0.0/8", "::1/128"];
/// The clusters' own resolvers are not strangers: both on unless switched off.
pub const DEFAULT_RRL_EXEMPT_CLIENT_NETWORKS: bool = true;
pub const DEFAULT_RRL_EXEMPT_KUBERNETES: bool = true;
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
    let tsig_keys = updates::tsig_keys(&mut v, &root.key("tsig_keys"), &file.tsig_keys, base);
    let zones = zones(&mut v, &root.key("zones"), &file, &site_ids, base);
    let kubernetes = match &file.kubernetes {
        Some(k) => kubernetes(&mut v, &root.key("kubernetes"), k, &site_ids, base),
        None => KubernetesConfig::default(),
    };

    if !v.problems.is_empty() {
        return Err(v.problems);
    }
    Ok(Config { server, geoip, sites, client_networks, health_checks, zones, kubernetes, tsig_keys })
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
