//! The routing table: one immutable snapshot of everything a query needs (zones, static
//! RRsets, geo names with their sites' addresses and health, client networks, the GeoIP
//! locator). Built by [`build`] off the query path; published whole behind one `ArcSwap`.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroUsize;
use std::sync::Arc;

use crate::config::{AllDown, ClientNetwork, Config, GeoNameConfig, SiteConfig};
use crate::model::{Discovered, Locator, Name, RData, RType, SiteId, UnitVector};

use super::placement::ClientNetworks;
use super::rank::{RankSlot, RankTable, RankTables};

/// Health and other run-time inputs folded into a table at build time.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Endpoints a health check has judged down, as (check name, address). Endpoints not listed
    /// are up or not yet judged (Unknown counts as up: fail-open until the first verdict).
    pub endpoint_down: HashSet<(String, IpAddr)>,
    /// Sites forced down for every name (operator drain, or `geodns check --down`).
    pub sites_down: HashSet<SiteId>,
    /// Sites an operator forced up for every name: up with all their addresses, whatever
    /// probes or readiness say. Forcing down wins over forcing up.
    pub sites_up: HashSet<SiteId>,
    /// Addresses discovered at run time (Kubernetes), merged with the config's per name and
    /// site. A site whose discovered entries are all not ready is down for that name.
    pub discovered: Vec<Discovered>,
    /// Client networks discovered at run time (node pod CIDRs and addresses). The config's
    /// entries win over discovered ones of the same prefix.
    pub client_networks: Vec<ClientNetwork>,
}

pub struct RoutingTable {
    /// Increases by one with every table published; shown in /status and logs.
    pub generation: u64,
    pub(super) zones: Vec<Zone>,
    pub(super) sites: Arc<[SiteConfig]>,
    /// Each site's location as a unit vector, by SiteId (distances on the query path).
    pub(super) site_vectors: Vec<UnitVector>,
    pub(super) networks: ClientNetworks,
    pub(super) locator: Arc<dyn Locator>,
}

pub(super) struct Zone {
    pub apex: Name,
    pub soa: RData,
    pub soa_ttl: u32,
    /// TTL of the SOA in negative answers: min(SOA TTL, SOA minimum) (RFC 2308).
    pub negative_ttl: u32,
    pub ns: Vec<RData>,
    pub ttl: u32,
    /// Looked up on every query: hashed with foldhash (several times faster than the default
    /// SipHash on short names, still seeded per map).
    pub nodes: HashMap<Name, Node, foldhash::fast::RandomState>,
}

pub(super) enum Node {
    /// Static RRsets, grouped by type in a fixed order.
    Static {
        ttl: u32,
        rdata: Vec<RData>,
    },
    Geo(GeoRoute),
    /// An empty non-terminal: exists (NODATA), holds nothing.
    Empty,
}

pub struct GeoRoute {
    pub name: Name,
    /// The name's TTL, halved while any of its sites is down.
    pub ttl: u32,
    pub max_answers: Option<NonZeroUsize>,
    pub all_down: AllDown,
    /// In configured order (the order for clients with no location).
    pub sites: Vec<GeoSite>,
    /// The precomputed IPv4 rankings of these sites, once (and if) built.
    pub(super) rank: Option<Arc<RankSlot>>,
}

impl GeoRoute {
    /// The precomputed IPv4 rankings of this name's sites, when ready.
    pub fn rank_table(&self) -> Option<&RankTable> {
        self.rank.as_deref().and_then(RankSlot::get)
    }

    /// True unless this name's rankings are still being built.
    pub fn rank_settled(&self) -> bool {
        self.rank.as_deref().is_none_or(RankSlot::settled)
    }
}

pub struct GeoSite {
    pub site: SiteId,
    pub up: bool,
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
}

impl RoutingTable {
    pub fn sites(&self) -> &[SiteConfig] {
        &self.sites
    }

    pub fn client_networks(&self) -> &ClientNetworks {
        &self.networks
    }

    pub fn locator(&self) -> &dyn Locator {
        &*self.locator
    }

    /// Apexes of the zones served.
    pub fn zone_names(&self) -> impl Iterator<Item = &Name> {
        self.zones.iter().map(|z| &z.apex)
    }

    /// Every geo name, zone by zone.
    pub fn geo_routes(&self) -> impl Iterator<Item = &GeoRoute> {
        self.zones.iter().flat_map(|z| {
            z.nodes.values().filter_map(|n| match n {
                Node::Geo(g) => Some(g),
                _ => None,
            })
        })
    }

    pub fn geo_route(&self, name: &Name) -> Option<&GeoRoute> {
        match self.find_zone(name)?.nodes.get(name)? {
            Node::Geo(g) => Some(g),
            _ => None,
        }
    }

    /// The zone with the longest apex that holds `name`.
    pub(super) fn find_zone(&self, name: &Name) -> Option<&Zone> {
        // Zones are sorted by apex length, longest first.
        self.zones.iter().find(|z| name.is_in(&z.apex))
    }
}

/// Builds a table from a validated config, a locator and the current run-time inputs. Pure and
/// infallible: everything that can be wrong was rejected by config validation.
pub fn build(config: &Config, locator: Arc<dyn Locator>, inputs: &Inputs, generation: u64) -> RoutingTable {
    build_with(config, locator, None, inputs, generation)
}

/// [`build`], with the precomputed rankings of `ranks` (which must belong to `locator`) for
/// the names whose site sets have them; asks for them (building in the background) otherwise.
pub fn build_with(
    config: &Config,
    locator: Arc<dyn Locator>,
    ranks: Option<&RankTables>,
    inputs: &Inputs,
    generation: u64,
) -> RoutingTable {
    let mut discovered: HashMap<&Name, Vec<&Discovered>> = HashMap::new();
    for d in &inputs.discovered {
        discovered.entry(&d.name).or_default().push(d);
    }
    let mut zones: Vec<Zone> = config
        .zones
        .iter()
        .map(|zc| {
            let mut nodes = HashMap::with_hasher(foldhash::fast::RandomState::default());
            for node in &zc.records {
                let mut rdata = node.rdata.clone();
                rdata.sort_by_key(RData::rtype);
                nodes.insert(node.name.clone(), Node::Static { ttl: node.ttl, rdata });
            }
            for g in &zc.geo {
                let found = discovered.get(&g.name).map_or(&[][..], Vec::as_slice);
                let mut route = geo_route(g, inputs, found);
                if let Some(ranks) = ranks {
                    let ids: Vec<SiteId> = route.sites.iter().map(|s| s.site).collect();
                    let locations: Vec<(UnitVector, String)> = ids
                        .iter()
                        .map(|&id| (config.sites[id].location.unit(), config.sites[id].name.clone()))
                        .collect();
                    route.rank = ranks.slot(&ids, &locations);
                }
                nodes.insert(g.name.clone(), Node::Geo(route));
            }
            // Every ancestor between a node and the apex exists, empty unless it has records.
            let names: Vec<Name> = nodes.keys().cloned().collect();
            for name in names {
                let mut cur = name.parent();
                while let Some(p) = cur {
                    if p == zc.apex || !p.is_in(&zc.apex) {
                        break;
                    }
                    nodes.entry(p.clone()).or_insert(Node::Empty);
                    cur = p.parent();
                }
            }
            Zone {
                apex: zc.apex.clone(),
                soa: RData::Soa(Box::new(zc.soa.clone())),
                soa_ttl: zc.ttl,
                negative_ttl: zc.ttl.min(zc.soa.minimum),
                ns: zc.ns.iter().cloned().map(RData::Ns).collect(),
                ttl: zc.ttl,
                nodes,
            }
        })
        .collect();
    zones.sort_by(|a, b| b.apex.label_count().cmp(&a.apex.label_count()));
    RoutingTable {
        generation,
        zones,
        sites: config.sites.clone().into(),
        site_vectors: config.sites.iter().map(|s| s.location.unit()).collect(),
        networks: ClientNetworks::new(config.client_networks.iter().chain(&inputs.client_networks).cloned().collect()),
        locator,
    }
}

/// One site of a geo name before health is applied: its addresses from the config and from
/// discovery, and whether discovery says it is ready.
struct SiteAddrs {
    site: SiteId,
    addrs: Vec<IpAddr>,
    /// `None` when no source reported readiness for this site (config-only).
    ready: Option<bool>,
}

/// The name's sites: the config's in written order, then sites only discovery knows, in site
/// order; addresses merged without repeats.
fn merge_sites(g: &GeoNameConfig, found: &[&Discovered]) -> Vec<SiteAddrs> {
    let mut sites: Vec<SiteAddrs> =
        g.sites.iter().map(|(site, addrs)| SiteAddrs { site: *site, addrs: addrs.clone(), ready: None }).collect();
    let mut extra: Vec<&&Discovered> = found.iter().filter(|d| !g.sites.iter().any(|(s, _)| *s == d.site)).collect();
    extra.sort_by_key(|d| d.site);
    for d in found.iter().filter(|d| g.sites.iter().any(|(s, _)| *s == d.site)).chain(extra) {
        let entry = match sites.iter_mut().position(|s| s.site == d.site) {
            Some(i) => &mut sites[i],
            None => {
                sites.push(SiteAddrs { site: d.site, addrs: Vec::new(), ready: None });
                sites.last_mut().expect("just pushed")
            }
        };
        for a in &d.addrs {
            if !entry.addrs.contains(a) {
                entry.addrs.push(*a);
            }
        }
        entry.ready = Some(entry.ready.unwrap_or(false) || d.ready);
    }
    sites
}

fn geo_route(g: &GeoNameConfig, inputs: &Inputs, found: &[&Discovered]) -> GeoRoute {
    let sites: Vec<GeoSite> = merge_sites(g, found)
        .into_iter()
        .map(|SiteAddrs { site, addrs, ready }| {
            let endpoint_up = |ip: &&IpAddr| match &g.health_check {
                Some(check) => !inputs.endpoint_down.contains(&(check.clone(), **ip)),
                None => true,
            };
            let forced_up = inputs.sites_up.contains(&site) && !inputs.sites_down.contains(&site);
            let live: Vec<&IpAddr> =
                if forced_up { addrs.iter().collect() } else { addrs.iter().filter(endpoint_up).collect() };
            // A site is down when none of its endpoints is up, when discovery says it has no
            // ready endpoint, or when an operator drained it. A down site keeps all its
            // addresses, for the `all_down` policies that answer with down sites.
            let up = forced_up
                || (!inputs.sites_down.contains(&site)
                    && ready != Some(false)
                    && (addrs.is_empty() || !live.is_empty()));
            let answer: Vec<&IpAddr> = if live.is_empty() { addrs.iter().collect() } else { live };
            GeoSite {
                site,
                up,
                v4: answer
                    .iter()
                    .filter_map(|a| match a {
                        IpAddr::V4(v4) => Some(*v4),
                        IpAddr::V6(_) => None,
                    })
                    .collect(),
                v6: answer
                    .iter()
                    .filter_map(|a| match a {
                        IpAddr::V6(v6) => Some(*v6),
                        IpAddr::V4(_) => None,
                    })
                    .collect(),
            }
        })
        .collect();
    let any_down = sites.iter().any(|s| !s.up);
    GeoRoute {
        name: g.name.clone(),
        // Halved, but a TTL above 0 stays above 0.
        ttl: if any_down { (g.ttl / 2).max(g.ttl.min(1)) } else { g.ttl },
        max_answers: g.max_answers,
        all_down: g.all_down,
        sites,
        rank: None,
    }
}

/// The type order used for ANY and for listing a node's RRsets.
pub(super) fn rrset<'a>(rdata: &'a [RData], rtype: RType) -> impl Iterator<Item = &'a RData> {
    rdata.iter().filter(move |r| r.rtype() == rtype)
}
