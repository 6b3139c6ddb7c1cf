//! Answering one query from a [`RoutingTable`]: zone lookup, static RRsets, CNAME chasing,
//! negative answers, and the geo decision (site order, health, `max_answers`, `all_down`).

use std::net::IpAddr;

use crate::config::AllDown;
use crate::model::{Name, RData, RType, SiteId, UnitVector};

use super::placement::{NetMatch, PlacedBy, Placement, place};
use super::rank::RANKED;
use super::table::{GeoRoute, GeoSite, Node, RoutingTable, Zone, rrset};

/// CNAME chains inside our own zones are followed at most this far.
const MAX_CNAME_CHAIN: usize = 8;

/// One question, with the client it is for.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub name: &'a Name,
    pub rtype: RType,
    /// The address routing places: the ECS address when the query carried one with a source
    /// prefix above 0, else the packet's source.
    pub client: IpAddr,
    /// The ECS source prefix length, when the query carried ECS; caps the reply's scope.
    pub ecs_source: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError,
    NxDomain,
    ServFail,
    Refused,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rec {
    pub owner: Name,
    pub ttl: u32,
    pub data: RData,
}

/// What to answer. Negative answers are values, not errors.
#[derive(Debug, Clone)]
pub struct Answer {
    pub rcode: Rcode,
    pub answers: Vec<Rec>,
    pub authority: Vec<Rec>,
    pub additional: Vec<Rec>,
    /// ECS scope prefix length for the reply: 0 when the answer does not depend on where the
    /// client is, else the width of the block that gets the same answer, capped at the source
    /// prefix.
    pub scope: u8,
    /// How the geo name in the answer (if any) was decided.
    pub decision: Option<Decision>,
}

impl Answer {
    fn new(rcode: Rcode) -> Self {
        Answer { rcode, answers: Vec::new(), authority: Vec::new(), additional: Vec::new(), scope: 0, decision: None }
    }
}

/// The rule that decided a geo answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The nearest healthy site(s) by great-circle distance from the client's location.
    Nearest,
    /// A `client_networks` entry named the client's site.
    ClientNetwork,
    /// The client has no location: the configured site order.
    NoLocation,
    /// Every site with addresses of the type is down: the name's `all_down` policy.
    AllDown(AllDown),
    /// No site has an address of the requested type.
    NoAddresses,
}

impl Rule {
    pub fn as_str(&self) -> &'static str {
        match self {
            Rule::Nearest => "nearest",
            Rule::ClientNetwork => "client_network",
            Rule::NoLocation => "no_location",
            Rule::AllDown(_) => "all_down",
            Rule::NoAddresses => "no_addresses",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RankedSite {
    pub site: SiteId,
    /// How close the site is to the client: the cosine of the angle between them (1 = same
    /// place), when the client has a location. Orders sites without trigonometry; see
    /// [`Decision::distance_km`] for kilometres.
    pub closeness: Option<f64>,
    pub up: bool,
    /// Whether the site has addresses of the requested type.
    pub has_addresses: bool,
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub name: Name,
    pub placement: Placement,
    /// Where distances are measured from: the client's location, or its override site's.
    pub origin: Option<UnitVector>,
    /// Every site of the name, in the order routing considered them.
    pub order: Vec<RankedSite>,
    pub rule: Rule,
    /// Sites whose addresses are in the answer, in answer order.
    pub answered_from: Vec<SiteId>,
    pub ttl: u32,
}

impl Decision {
    /// The great-circle distance from the client (or its override site) to `site`, in km.
    pub fn distance_km(&self, table: &RoutingTable, site: SiteId) -> Option<f64> {
        Some(self.origin?.distance_km(table.site_vectors.get(site)?))
    }
}

impl RoutingTable {
    /// Answers one query. Pure: reads the table only.
    pub fn resolve(&self, q: &Query<'_>) -> Answer {
        if q.rtype == RType::Transfer {
            return Answer::new(Rcode::Refused);
        }
        let Some(zone) = self.find_zone(q.name) else {
            return Answer::new(Rcode::Refused);
        };
        let mut out = Answer::new(Rcode::NoError);
        let mut name = q.name.clone();
        let mut zone = zone;
        for _ in 0..MAX_CNAME_CHAIN {
            match self.answer_at(zone, &name, q, &mut out) {
                Some(target) => match self.find_zone(&target) {
                    Some(z) => {
                        zone = z;
                        name = target;
                    }
                    // Out of our zones: the resolver follows it.
                    None => return out,
                },
                None => return out,
            }
        }
        out
    }

    /// Adds what `name` holds to `out`; returns a CNAME target to follow.
    fn answer_at(&self, zone: &Zone, name: &Name, q: &Query<'_>, out: &mut Answer) -> Option<Name> {
        let qtype = q.rtype;
        if *name == zone.apex {
            match qtype {
                RType::Soa | RType::Any => {
                    out.answers.push(Rec { owner: name.clone(), ttl: zone.soa_ttl, data: zone.soa.clone() });
                    return None;
                }
                RType::Ns => {
                    for ns in &zone.ns {
                        out.answers.push(Rec { owner: name.clone(), ttl: zone.ttl, data: ns.clone() });
                    }
                    self.glue(zone, out);
                    return None;
                }
                _ => {}
            }
        }
        match zone.nodes.get(name.as_str().as_bytes()) {
            None if *name == zone.apex => self.nodata(zone, out),
            None => {
                out.rcode = Rcode::NxDomain;
                self.negative(zone, out);
            }
            Some(Node::Empty) => self.nodata(zone, out),
            Some(Node::Static { ttl, rdata }) => {
                if let Some(RData::Cname(target)) = rdata.first().filter(|r| r.rtype() == RType::Cname) {
                    out.answers.push(Rec { owner: name.clone(), ttl: *ttl, data: RData::Cname(target.clone()) });
                    return (qtype != RType::Cname).then(|| target.clone());
                }
                let want = if qtype == RType::Any { rdata.first().map(RData::rtype) } else { Some(qtype) };
                let before = out.answers.len();
                if let Some(want) = want {
                    for r in rrset(rdata, want) {
                        out.answers.push(Rec { owner: name.clone(), ttl: *ttl, data: r.clone() });
                    }
                }
                if out.answers.len() == before {
                    self.nodata(zone, out);
                }
            }
            Some(Node::Geo(route)) => {
                let want = match qtype {
                    RType::A | RType::Aaaa => qtype,
                    // RFC 8482: one RRset is enough; the addresses a client would use.
                    RType::Any if route.sites.iter().any(|s| !s.v4.is_empty()) => RType::A,
                    RType::Any => RType::Aaaa,
                    _ => {
                        self.nodata(zone, out);
                        return None;
                    }
                };
                let decision = self.decide(route, want, q);
                if decision.rule == Rule::AllDown(AllDown::ServFail) {
                    out.rcode = Rcode::ServFail;
                } else {
                    let before = out.answers.len();
                    push_addresses(route, &decision, want, name, out);
                    if out.answers.len() == before {
                        self.nodata(zone, out);
                    }
                }
                out.scope = match q.ecs_source {
                    Some(source) if decision.order.iter().filter(|s| s.has_addresses).count() > 1 => {
                        decision.placement.scope.min(source)
                    }
                    _ => 0,
                };
                out.decision = Some(decision);
            }
        }
        None
    }

    fn nodata(&self, zone: &Zone, out: &mut Answer) {
        self.negative(zone, out);
    }

    fn negative(&self, zone: &Zone, out: &mut Answer) {
        out.authority.push(Rec { owner: zone.apex.clone(), ttl: zone.negative_ttl, data: zone.soa.clone() });
    }

    /// Addresses of in-zone name servers, for the additional section of an NS answer.
    fn glue(&self, zone: &Zone, out: &mut Answer) {
        for ns in &zone.ns {
            let RData::Ns(host) = ns else { continue };
            if let Some(Node::Static { ttl, rdata }) = zone.nodes.get(host.as_str().as_bytes()) {
                for r in rdata.iter().filter(|r| matches!(r.rtype(), RType::A | RType::Aaaa)) {
                    out.additional.push(Rec { owner: host.clone(), ttl: *ttl, data: r.clone() });
                }
            }
        }
    }

    /// Orders the name's sites for this client and picks the rule that decides the answer.
    pub fn decide(&self, route: &GeoRoute, rtype: RType, q: &Query<'_>) -> Decision {
        let placement = place(q.client, &self.networks, &*self.locator);
        let has = |s: &super::table::GeoSite| match rtype {
            RType::Aaaa => !s.v6.is_empty(),
            _ => !s.v4.is_empty(),
        };
        let (origin, base_rule): (Option<UnitVector>, Rule) = match &placement.by {
            PlacedBy::ClientNetwork { site, .. } => (self.site_vectors.get(*site).copied(), Rule::ClientNetwork),
            PlacedBy::GeoIp(hit) => match hit.location {
                Some(loc) => (Some(loc.unit()), Rule::Nearest),
                None => (None, Rule::NoLocation),
            },
        };
        let override_site = placement.site_override();
        let mut order: Vec<RankedSite> = route
            .sites
            .iter()
            .map(|s| RankedSite {
                site: s.site,
                closeness: origin.map(|o| o.dot(&self.site_vectors[s.site])),
                up: s.up,
                has_addresses: has(s),
            })
            .collect();
        if origin.is_some() {
            // The override site first, then by distance; ties by site name.
            order.sort_by(|a, b| {
                let key = |r: &RankedSite| (Some(r.site) != override_site, r.closeness.unwrap_or(f64::NEG_INFINITY));
                let (ka, kb) = (key(a), key(b));
                ka.0.cmp(&kb.0)
                    .then(kb.1.total_cmp(&ka.1))
                    .then_with(|| self.sites[a.site].name.cmp(&self.sites[b.site].name))
            });
        }
        let upto = route.max_answers.map(|n| Take::Addresses(n.get()));
        let candidates = order.iter().filter(|r| r.has_addresses);
        let healthy: Vec<SiteId> = candidates.clone().filter(|r| r.up).map(|r| r.site).collect();
        let (rule, answered_from) = if candidates.clone().next().is_none() {
            (Rule::NoAddresses, Vec::new())
        } else if !healthy.is_empty() {
            (base_rule, take_sites(route, rtype, &healthy, upto.unwrap_or(Take::First)))
        } else {
            let all: Vec<SiteId> = candidates.map(|r| r.site).collect();
            let from = match route.all_down {
                AllDown::All => take_sites(route, rtype, &all, upto.unwrap_or(Take::Every)),
                AllDown::First => take_sites(route, rtype, &all, Take::First),
                AllDown::NoData | AllDown::ServFail => Vec::new(),
            };
            (Rule::AllDown(route.all_down), from)
        };
        let mut placement = placement;
        if let Some(scope) = self.ranked_scope(route, q.client, &placement, &answered_from) {
            placement.scope = scope;
        }
        Decision { name: route.name.clone(), placement, origin, order, rule, answered_from, ttl: route.ttl }
    }

    /// The widest scope for a GeoIP-placed client from the name's precomputed rankings: the
    /// block around the client ranked the same, narrowed by client networks. `None` when there
    /// is no table yet (or the table leaves this address to the per-query decision), or the
    /// answer came from beyond the ranked sites (every one of them down), where addresses of
    /// the block may be answered differently.
    fn ranked_scope(&self, route: &GeoRoute, client: IpAddr, placement: &Placement, from: &[SiteId]) -> Option<u8> {
        let PlacedBy::GeoIp(_) = &placement.by else { return None };
        let ranked = route.ranked(client)?;
        let whole = route.sites.len() <= ranked.order.len();
        let inside = !from.is_empty()
            && from.iter().all(|id| ranked.order.iter().any(|&p| route.sites[usize::from(p)].site == *id));
        (whole || inside).then(|| self.networks.refine(client, ranked.prefix_len))
    }

    /// The common answers that are the zone's SOA alone, without allocating: the apex SOA,
    /// NXDOMAIN for a name the zone does not hold, NODATA at an empty non-terminal. `None` for
    /// anything else ([`RoutingTable::resolve`] answers it, the same way).
    pub fn quick_negative(&self, name: &str, rtype: RType) -> Option<QuickNegative<'_>> {
        if rtype == RType::Transfer {
            return None;
        }
        let zone = self.zones.iter().find(|z| in_zone(name, z.apex.as_str()))?;
        let negative = |nxdomain| QuickNegative {
            nxdomain,
            answer: false,
            apex: &zone.apex,
            soa: &zone.soa,
            ttl: zone.negative_ttl,
        };
        if name == zone.apex.as_str() {
            return (rtype == RType::Soa).then_some(QuickNegative {
                nxdomain: false,
                answer: true,
                apex: &zone.apex,
                soa: &zone.soa,
                ttl: zone.soa_ttl,
            });
        }
        match zone.nodes.get(name.as_bytes()) {
            None => Some(negative(true)),
            Some(Node::Empty) => Some(negative(false)),
            Some(_) => None,
        }
    }

    /// The geo route of `name` (canonical text), found as [`RoutingTable::quick_geo`] finds it.
    pub fn quick_route(&self, name: &str) -> Option<&GeoRoute> {
        let zone = self.zones.iter().find(|z| in_zone(name, z.apex.as_str()))?;
        match zone.nodes.get(name.as_bytes())? {
            Node::Geo(route) => Some(route),
            _ => None,
        }
    }

    /// A geo answer without allocating, for every client the precomputed rankings (or a client
    /// network) place, and every name: the nearest healthy site's addresses of the asked type,
    /// or with `max_answers` that many addresses from the healthy sites in order. `None` when
    /// no ranked site can answer (every one down or without addresses of the type: `all_down`
    /// and NODATA), when the table is not built yet, or for the few addresses the tables leave
    /// to the per-query decision; [`RoutingTable::resolve`] answers those, the same way.
    pub fn quick_geo(&self, name: &str, rtype: RType, client: IpAddr, ecs_source: Option<u8>) -> Option<QuickGeo<'_>> {
        if !matches!(rtype, RType::A | RType::Aaaa) {
            return None;
        }
        let route = self.quick_route(name)?;
        let mut order = [0u8; RANKED];
        let (len, prefix) = match self.networks.find(client) {
            NetMatch::In { entry, scope } => (self.override_order(route, entry.site, &mut order), scope),
            NetMatch::Out { room } => {
                let ranked = route.ranked(client)?;
                order[..ranked.order.len()].copy_from_slice(ranked.order);
                (ranked.order.len(), ranked.prefix_len.max(room))
            }
        };
        let aaaa = rtype == RType::Aaaa;
        let count = |s: &GeoSite| if aaaa { s.v6.len() } else { s.v4.len() };
        let limit = route.max_answers.map_or(usize::MAX, |n| n.get());
        let (mut sites, mut taken, mut addresses) = ([0u8; RANKED], 0, 0);
        for &p in &order[..len] {
            let site = &route.sites[usize::from(p)];
            if !site.up || count(site) == 0 {
                continue;
            }
            sites[taken] = p;
            taken += 1;
            addresses += count(site);
            if addresses >= limit || route.max_answers.is_none() {
                break;
            }
        }
        // Nothing answers within the ranked sites, or `max_answers` wants more than they hold
        // while the name has sites beyond them: the per-query decision goes on from there.
        if taken == 0 || (addresses < limit && route.max_answers.is_some() && route.sites.len() > len) {
            return None;
        }
        let several = if aaaa { route.several_v6 } else { route.several_v4 };
        let scope = match ecs_source {
            Some(source) if several => prefix.min(source),
            _ => 0,
        };
        Some(QuickGeo { route, sites, taken: taken as u8, limit, scope })
    }

    /// The first [`RANKED`] of `route`'s sites for a client that a client network places at
    /// `site`, as [`RoutingTable::decide`] orders them (that site first, then by distance from
    /// it, ties by name), as positions in the route's site list; returns how many.
    fn override_order(&self, route: &GeoRoute, site: SiteId, out: &mut [u8; RANKED]) -> usize {
        let origin = &self.site_vectors[site];
        let mut all = [0u8; 256];
        let n = route.sites.len().min(all.len());
        for (i, slot) in all.iter_mut().enumerate().take(n) {
            *slot = i as u8;
        }
        let key = |p: u8| {
            let s = route.sites[usize::from(p)].site;
            (s != site, origin.dot(&self.site_vectors[s]))
        };
        all[..n].sort_unstable_by(|&a, &b| {
            let (ka, kb) = (key(a), key(b));
            ka.0.cmp(&kb.0).then(kb.1.total_cmp(&ka.1)).then_with(|| {
                self.sites[route.sites[usize::from(a)].site]
                    .name
                    .cmp(&self.sites[route.sites[usize::from(b)].site].name)
            })
        });
        let len = n.min(RANKED);
        out[..len].copy_from_slice(&all[..len]);
        len
    }
}

/// An answer that is the zone's SOA alone, found by [`RoutingTable::quick_negative`].
#[derive(Clone, Copy)]
pub struct QuickNegative<'t> {
    /// NXDOMAIN (else NOERROR).
    pub nxdomain: bool,
    /// The SOA is the answer (an apex SOA query), else it goes in the authority section
    /// (NXDOMAIN, NODATA).
    pub answer: bool,
    pub apex: &'t Name,
    pub soa: &'t RData,
    pub ttl: u32,
}

/// A geo answer found by [`RoutingTable::quick_geo`]: the addresses of the asked type of
/// [`QuickGeo::sites`], in order, at most [`QuickGeo::limit`] of them, with the name's TTL.
#[derive(Clone, Copy)]
pub struct QuickGeo<'t> {
    pub route: &'t GeoRoute,
    /// Positions in the route's site list of the sites answered, in answer order.
    sites: [u8; RANKED],
    taken: u8,
    /// At most this many addresses (`max_answers`, or no limit).
    pub limit: usize,
    /// The ECS scope of the reply.
    pub scope: u8,
}

impl<'t> QuickGeo<'t> {
    /// The sites whose addresses make the answer, in answer order.
    pub fn sites(&self) -> impl Iterator<Item = &'t GeoSite> + '_ {
        let route = self.route;
        self.sites[..usize::from(self.taken)].iter().map(move |&p| &route.sites[usize::from(p)])
    }

    /// The first site answered (the nearest healthy one).
    pub fn first(&self) -> &'t GeoSite {
        &self.route.sites[usize::from(self.sites[0])]
    }

    /// The answer's IPv4 addresses, in order, at most `limit`.
    pub fn v4(&self) -> impl Iterator<Item = &'t std::net::Ipv4Addr> + '_ {
        self.sites().flat_map(|s| s.v4.iter()).take(self.limit)
    }

    /// The answer's IPv6 addresses, in order, at most `limit`.
    pub fn v6(&self) -> impl Iterator<Item = &'t std::net::Ipv6Addr> + '_ {
        self.sites().flat_map(|s| s.v6.iter()).take(self.limit)
    }
}

/// Whether canonical `name` is `apex` or below it.
pub(super) fn in_zone(name: &str, apex: &str) -> bool {
    apex == "."
        || name == apex
        || (name.len() > apex.len() && name.ends_with(apex) && name.as_bytes()[name.len() - apex.len() - 1] == b'.')
}

#[derive(Debug, Clone, Copy)]
enum Take {
    /// The first site's addresses (the default: every address of the nearest site).
    First,
    /// Sites in order until this many addresses (`max_answers`).
    Addresses(usize),
    /// Every site (the fail-open `all_down: all`).
    Every,
}

/// The sites whose addresses make the answer, in order.
fn take_sites(route: &GeoRoute, rtype: RType, ordered: &[SiteId], take: Take) -> Vec<SiteId> {
    match take {
        Take::First => ordered.iter().take(1).copied().collect(),
        Take::Every => ordered.to_vec(),
        Take::Addresses(limit) => {
            let mut count = 0;
            let mut out = Vec::new();
            for site in ordered {
                if count >= limit {
                    break;
                }
                if let Some(s) = route.sites.iter().find(|s| s.site == *site) {
                    count += if rtype == RType::Aaaa { s.v6.len() } else { s.v4.len() };
                    out.push(*site);
                }
            }
            out
        }
    }
}

/// Appends the chosen sites' addresses, at most `max_answers` of them.
fn push_addresses(route: &GeoRoute, d: &Decision, rtype: RType, owner: &Name, out: &mut Answer) {
    let limit = route.max_answers.map_or(usize::MAX, |n| n.get());
    let sites = d.answered_from.iter().filter_map(|id| route.sites.iter().find(|s| s.site == *id));
    let data: Vec<RData> = if rtype == RType::Aaaa {
        sites.flat_map(|s| s.v6.iter().map(|a| RData::Aaaa(*a))).take(limit).collect()
    } else {
        sites.flat_map(|s| s.v4.iter().map(|a| RData::A(*a))).take(limit).collect()
    };
    out.answers.extend(data.into_iter().map(|data| Rec { owner: owner.clone(), ttl: route.ttl, data }));
}
