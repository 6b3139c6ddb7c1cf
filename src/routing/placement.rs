//! Where a client is, for routing: the `client_networks` entry that holds it (which beats
//! GeoIP), else what the GeoIP locator says; and the ECS scope for which that holds.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::ClientNetwork;
use crate::model::{GeoHit, Locator, SiteId};

/// The configured (and, later, discovered) client networks, most specific first.
#[derive(Debug, Clone, Default)]
pub struct ClientNetworks {
    entries: Vec<ClientNetwork>,
}

impl ClientNetworks {
    pub fn new(mut entries: Vec<ClientNetwork>) -> Self {
        // Longest prefix first, so the first match is the most specific one.
        entries.sort_by_key(|e| std::cmp::Reverse(e.net.prefix_len()));
        Self { entries }
    }

    pub fn entries(&self) -> &[ClientNetwork] {
        &self.entries
    }

    pub(super) fn longest_match(&self, ip: IpAddr) -> Option<&ClientNetwork> {
        self.entries.iter().find(|e| e.net.contains(&ip))
    }

    /// The shortest prefix of `ip` that still excludes every client network more specific than
    /// `base` which does not hold `ip`: beyond it, some client would be placed differently.
    pub(super) fn refine(&self, ip: IpAddr, base: u8) -> u8 {
        let mut scope = base;
        for e in &self.entries {
            let len = e.net.prefix_len();
            if len <= base || e.net.contains(&ip) {
                continue;
            }
            if let Some(common) = common_prefix_len(ip, e.net.network())
                && common >= base
            {
                // The entry lies inside the block of `ip` at `base`: split just before it.
                scope = scope.max(common.min(len) + 1);
            }
        }
        scope
    }
}

/// Why a client was placed where it was.
#[derive(Debug, Clone, PartialEq)]
pub enum PlacedBy {
    /// A `client_networks` entry holds the client.
    ClientNetwork { net: IpNet, site: SiteId },
    /// The GeoIP database placed the client (its hit may still have no location).
    GeoIp(GeoHit),
}

/// Where a client is, and how far that knowledge reaches.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub by: PlacedBy,
    /// The prefix length (in the address's family) of the block around the client within which
    /// every address is placed the same way; for a geo answer, widened to the block answered
    /// the same way when the name's precomputed rankings say so. The ECS scope is this, capped
    /// at the source prefix.
    pub scope: u8,
}

impl Placement {
    pub fn site_override(&self) -> Option<SiteId> {
        match self.by {
            PlacedBy::ClientNetwork { site, .. } => Some(site),
            PlacedBy::GeoIp(_) => None,
        }
    }
}

/// Places `ip` (already the ECS address when the query carried one).
pub fn place(ip: IpAddr, networks: &ClientNetworks, locator: &dyn Locator) -> Placement {
    if let Some(e) = networks.longest_match(ip) {
        let base = e.net.prefix_len();
        return Placement {
            by: PlacedBy::ClientNetwork { net: e.net, site: e.site },
            scope: networks.refine(ip, base),
        };
    }
    let hit = locator.locate(ip);
    let scope = networks.refine(ip, hit.prefix_len.min(max_len(ip)));
    Placement { by: PlacedBy::GeoIp(hit), scope }
}

pub fn max_len(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// Number of leading bits two addresses share; `None` across families.
fn common_prefix_len(a: IpAddr, b: IpAddr) -> Option<u8> {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => Some((u32::from(a) ^ u32::from(b)).leading_zeros() as u8),
        (IpAddr::V6(a), IpAddr::V6(b)) => Some((u128::from(a) ^ u128::from(b)).leading_zeros() as u8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Location, NoLocator};

    struct Fixed(GeoHit);
    impl Locator for Fixed {
        fn locate(&self, _ip: IpAddr) -> GeoHit {
            self.0.clone()
        }
    }

    fn nets(list: &[(&str, SiteId)]) -> ClientNetworks {
        ClientNetworks::new(list.iter().map(|(n, s)| ClientNetwork { net: n.parse().unwrap(), site: *s }).collect())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn client_network_beats_geoip_and_most_specific_wins() {
        let n = nets(&[("10.0.0.0/8", 0), ("10.42.0.0/16", 1)]);
        let geo = Fixed(GeoHit { location: Some(Location::new(1.0, 1.0)), country: None, prefix_len: 24 });
        let p = place(ip("10.42.1.1"), &n, &geo);
        assert_eq!(p.site_override(), Some(1));
        assert_eq!(p.scope, 16);
        // In 10/8 but outside 10.42/16: the scope must be narrow enough to exclude 10.42/16.
        let p = place(ip("10.1.1.1"), &n, &geo);
        assert_eq!(p.site_override(), Some(0));
        assert_eq!(p.scope, 11, "10.0.0.0/11 holds 10.1.1.1 and not 10.42.0.0/16");
        let p = place(ip("10.200.1.1"), &n, &geo);
        assert_eq!(p.scope, 9);
    }

    #[test]
    fn geoip_scope_is_the_database_network_narrowed_by_client_networks() {
        let geo = Fixed(GeoHit { location: Some(Location::new(1.0, 1.0)), country: None, prefix_len: 8 });
        let n = nets(&[("10.42.0.0/16", 1)]);
        let p = place(ip("10.1.2.3"), &n, &geo);
        assert!(matches!(p.by, PlacedBy::GeoIp(_)));
        assert_eq!(p.scope, 11);
        let p = place(ip("192.0.2.1"), &n, &geo);
        assert_eq!(p.scope, 8, "client networks elsewhere do not narrow the scope");
        let p = place(ip("2001:db8::1"), &n, &NoLocator);
        assert_eq!(p.scope, 0);
    }

    #[test]
    fn common_prefix() {
        assert_eq!(common_prefix_len(ip("10.0.0.0"), ip("10.42.0.0")), Some(10));
        assert_eq!(common_prefix_len(ip("10.0.0.0"), ip("::1")), None);
        assert_eq!(common_prefix_len(ip("::1"), ip("::1")), Some(128));
    }
}
