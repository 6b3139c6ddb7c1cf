//! Where a client is, for routing: the `client_networks` entry that holds it (which beats
//! GeoIP), else what the GeoIP locator says; and the ECS scope for which that holds.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::ClientNetwork;
use crate::model::{GeoHit, Locator, SiteId};

/// The client networks (the config's, then those discovered at run time), indexed for the
/// query path: each family's space cut into pieces at every network's edges, each piece with
/// the most specific network that holds it (or none), so that placing a client is one binary
/// search whatever the number of networks.
#[derive(Debug, Clone, Default)]
pub struct ClientNetworks {
    /// Most specific first (the order `entries` lists them in).
    entries: Vec<ClientNetwork>,
    v4: Vec<Piece>,
    v6: Vec<Piece>,
}

/// Consecutive addresses `first..=last` (a family's whole space, piece by piece) held by the
/// same most specific network, an index into `entries`, or by none.
#[derive(Debug, Clone, Copy)]
struct Piece {
    first: u128,
    last: u128,
    entry: Option<u32>,
}

/// Where a client is with respect to the client networks.
#[derive(Debug, Clone, Copy)]
pub(super) enum NetMatch<'a> {
    /// In this network (the most specific holding it); `scope` is the widest block around the
    /// client placed by the same network (nested networks cut out).
    In { entry: &'a ClientNetwork, scope: u8 },
    /// In none; `room` is the widest block around the client that holds no client network:
    /// a scope wider than that would take in clients placed elsewhere.
    Out { room: u8 },
}

impl ClientNetworks {
    pub fn new(mut entries: Vec<ClientNetwork>) -> Self {
        // Longest prefix first, so the first match is the most specific one (a stable sort: on
        // an identical prefix, the first listed wins).
        entries.sort_by_key(|e| std::cmp::Reverse(e.net.prefix_len()));
        let v4 = pieces(&entries, false);
        let v6 = pieces(&entries, true);
        Self { entries, v4, v6 }
    }

    pub fn entries(&self) -> &[ClientNetwork] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where `ip` is: one binary search (none when there are no client networks).
    pub(super) fn find(&self, ip: IpAddr) -> NetMatch<'_> {
        let (pieces, addr, bits) = match ip {
            IpAddr::V4(a) => (&self.v4, u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (&self.v6, u128::from(a), 128),
        };
        if pieces.is_empty() {
            return NetMatch::Out { room: 0 };
        }
        let p = pieces[pieces.partition_point(|p| p.first <= addr) - 1];
        let scope = widest_prefix(addr, p.first, p.last, bits);
        match p.entry {
            Some(i) => NetMatch::In { entry: &self.entries[i as usize], scope },
            None => NetMatch::Out { room: scope },
        }
    }

    pub(super) fn longest_match(&self, ip: IpAddr) -> Option<&ClientNetwork> {
        match self.find(ip) {
            NetMatch::In { entry, .. } => Some(entry),
            NetMatch::Out { .. } => None,
        }
    }

    /// The shortest prefix of `ip`, at least `base` long, whose block holds no client network
    /// that does not hold `ip` (beyond it, some client would be placed differently).
    pub(super) fn refine(&self, ip: IpAddr, base: u8) -> u8 {
        match self.find(ip) {
            NetMatch::In { scope, .. } | NetMatch::Out { room: scope } => base.max(scope),
        }
    }
}

/// One family's pieces (see [`Piece`]), covering its whole space; empty without networks of
/// that family.
fn pieces(entries: &[ClientNetwork], v6: bool) -> Vec<Piece> {
    let span = |e: &ClientNetwork| -> Option<(u128, u128)> {
        match (e.net, v6) {
            (IpNet::V4(n), false) => Some((u128::from(u32::from(n.network())), u128::from(u32::from(n.broadcast())))),
            (IpNet::V6(n), true) => Some((u128::from(n.network()), u128::from(n.broadcast()))),
            _ => None,
        }
    };
    // Networks by start, wider first: CIDR blocks nest or are apart, so while sweeping, the
    // networks holding a point form a stack whose top is the most specific.
    let mut nets: Vec<(u128, u128, u32)> =
        entries.iter().enumerate().filter_map(|(i, e)| span(e).map(|(f, l)| (f, l, i as u32))).collect();
    if nets.is_empty() {
        return Vec::new();
    }
    // Equal spans: the first entry listed wins (`entries` is already in that order).
    nets.sort_by_key(|&(f, l, i)| (f, std::cmp::Reverse(l), i));
    nets.dedup_by_key(|&mut (f, l, _)| (f, l));
    let max = if v6 { u128::MAX } else { u128::from(u32::MAX) };
    let mut cuts: Vec<u128> = vec![0];
    for &(f, l, _) in &nets {
        cuts.push(f);
        if l < max {
            cuts.push(l + 1);
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::with_capacity(cuts.len());
    let (mut stack, mut next): (Vec<(u128, u128, u32)>, usize) = (Vec::new(), 0);
    for (k, &first) in cuts.iter().enumerate() {
        let last = cuts.get(k + 1).map_or(max, |c| c - 1);
        while stack.last().is_some_and(|top| top.1 < first) {
            stack.pop();
        }
        while next < nets.len() && nets[next].0 <= first {
            if nets[next].1 >= first {
                stack.push(nets[next]);
            }
            next += 1;
        }
        out.push(Piece { first, last, entry: stack.last().map(|n| n.2) });
    }
    out
}

/// The shortest prefix length (of a `bits`-bit family) whose block around `addr` lies within
/// `first..=last`.
fn widest_prefix(addr: u128, first: u128, last: u128, bits: u32) -> u8 {
    let shift = 128 - bits;
    let low = if shift == 0 { 0 } else { u128::MAX >> bits };
    let (a, f, l) = (addr << shift, first << shift, (last << shift) | low);
    let from_below = if f == 0 { 0 } else { (a ^ (f - 1)).leading_zeros() + 1 };
    let from_above = if l == u128::MAX { 0 } else { (a ^ (l + 1)).leading_zeros() + 1 };
    from_below.max(from_above) as u8
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
    fn pieces_place_like_a_scan_of_every_network() {
        // Nested, adjacent, identical and IPv6 networks.
        let list = [
            ("10.0.0.0/8", 0),
            ("10.42.0.0/16", 1),
            ("10.42.7.0/24", 2),
            ("10.43.0.0/16", 3),
            ("10.42.0.0/16", 4), // the same network again: the first listed wins
            ("192.0.2.7/32", 1),
            ("fd00::/8", 2),
            ("fd00:42::/32", 3),
        ];
        let n = nets(&list);
        let scan = |ip: IpAddr| -> Option<(SiteId, u8)> {
            let mut found: Option<&ClientNetwork> = None;
            for e in n.entries() {
                if e.net.contains(&ip) && found.is_none_or(|f| e.net.prefix_len() > f.net.prefix_len()) {
                    found = Some(e);
                }
            }
            found.map(|e| (e.site, e.net.prefix_len()))
        };
        let mut x: u32 = 7;
        for _ in 0..20_000 {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            for ip in [
                IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 | (x >> 8))),
                IpAddr::V4(std::net::Ipv4Addr::from(x)),
                IpAddr::V6(std::net::Ipv6Addr::from((0xfd00_u128 << 112) | (u128::from(x) << 72))),
            ] {
                let want = scan(ip);
                match n.find(ip) {
                    NetMatch::In { entry, scope } => {
                        assert_eq!(Some((entry.site, entry.net.prefix_len())), want, "{ip}");
                        assert!(scope >= entry.net.prefix_len(), "{ip}: /{scope}");
                    }
                    NetMatch::Out { .. } => assert_eq!(want, None, "{ip}"),
                }
                // The scope (or room) block holds no other placement.
                let s = n.refine(ip, 0);
                let block: IpNet = IpNet::new(ip, s).unwrap().trunc();
                for e in n.entries() {
                    let inside = block.contains(&e.net.network()) || e.net.contains(&block.network());
                    if inside && !e.net.contains(&ip) {
                        panic!("{ip}/{s} takes in {} which does not hold it", e.net);
                    }
                }
            }
        }
        assert_eq!(n.longest_match(ip("10.42.1.1")).map(|e| e.site), Some(1));
        assert!(ClientNetworks::default().longest_match(ip("10.42.1.1")).is_none());
    }
}
