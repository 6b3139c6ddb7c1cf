//! The routing table: one immutable snapshot of everything a query needs (zones, static
//! RRsets, geo names with their sites' addresses and health, client networks, the GeoIP
//! locator). Built by [`build`] off the query path; published whole behind one `ArcSwap`.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroUsize;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::config::{AllDown, ClientNetwork, Config, GeoNameConfig, SiteConfig};
use crate::model::{Discovered, Locator, Name, RData, RType, SiteId, UnitVector};

use super::incremental::AddressIndex;
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
    /// The labels of the answer counters, by [`GeoSite::answers`] (shared by the tables
    /// rebuilt from this one).
    pub(super) answer_series: Arc<[AnswerSeries]>,
    /// The inputs this table was built from: a rebuild compares the new ones with them.
    pub(super) inputs: Arc<Inputs>,
    /// The config's address index, when built with one: a rebuild from the same config (the
    /// same index) can reuse this table's unchanged routes (see [`super::incremental`]).
    pub(super) index: Option<Arc<AddressIndex>>,
    /// The distinct rank slots of this table's routes (one per site list that has one).
    pub(super) rank_slots: Arc<[Arc<RankSlot>]>,
}

/// At most this many (name, site) pairs get answer counters of their own; the answers of the
/// rest are counted per site (see [`AnswerSeries::Other`]), so a table of many names neither
/// grows the metrics without bound nor makes counting an answer a lookup in a large map.
pub const MAX_NAMED_ANSWER_SERIES: usize = 10_000;

/// Above this many names, a table's lookups and site entries (about 700 bytes a name at 8
/// sites) no longer fit a core's 1 MiB L2 cache.
pub const MANY_NAMES: usize = 1024;

/// What one answer counter counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AnswerSeries {
    /// Answers for this name from this site.
    Named(Name, SiteId),
    /// Answers from this site for names beyond the first [`MAX_NAMED_ANSWER_SERIES`] pairs.
    Other(SiteId),
}

/// Gives each (name, site) its answer counter, in the order routes are added.
#[derive(Default)]
struct SeriesAssigner {
    series: Vec<AnswerSeries>,
    /// By SiteId: the site's `Other` series, once it has one.
    other: Vec<Option<u32>>,
}

impl SeriesAssigner {
    fn assign(&mut self, name: &Name, sites: &mut [GeoSite]) {
        for s in sites {
            s.answers = if self.series.len() < MAX_NAMED_ANSWER_SERIES {
                self.series.push(AnswerSeries::Named(name.clone(), s.site));
                (self.series.len() - 1) as u32
            } else {
                if self.other.len() <= s.site {
                    self.other.resize(s.site + 1, None);
                }
                *self.other[s.site].get_or_insert_with(|| {
                    self.series.push(AnswerSeries::Other(s.site));
                    (self.series.len() - 1) as u32
                })
            };
        }
    }
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
    /// SipHash on short names, still seeded per map), keyed by the name's text kept in the map
    /// itself when short (see [`Key`]).
    pub nodes: HashMap<Key, Node, foldhash::fast::RandomState>,
}

/// A name as a key of a zone's node map: up to [`Key::INLINE`] characters in the map's own
/// entry, so that comparing keys during a lookup reads no other memory (in a table of many
/// names, that would be one more cache miss per query); longer names in a shared [`Name`].
/// Hashes and compares as the name's text, so maps are searched with a `&str`.
#[derive(Clone)]
pub(super) enum Key {
    Inline { len: u8, text: [u8; Key::INLINE] },
    Shared(Name),
}

impl Key {
    pub const INLINE: usize = 30;

    fn new(name: &Name) -> Key {
        let s = name.as_str();
        if s.len() <= Key::INLINE {
            let mut text = [0; Key::INLINE];
            text[..s.len()].copy_from_slice(s.as_bytes());
            Key::Inline { len: s.len() as u8, text }
        } else {
            Key::Shared(name.clone())
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Key::Inline { len, text } => {
                // SAFETY: `Key::new` copied a whole `str` of `len` bytes into `text`, and nothing
                // changes it after: valid UTF-8.
                #[allow(unsafe_code)]
                unsafe {
                    std::str::from_utf8_unchecked(&text[..usize::from(*len)])
                }
            }
            Key::Shared(name) => name.as_str(),
        }
    }
}

impl std::borrow::Borrow<str> for Key {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

#[derive(Clone)]
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

#[derive(Clone)]
pub struct GeoRoute {
    pub name: Name,
    /// The name's TTL, halved while any of its sites is down.
    pub ttl: u32,
    pub max_answers: Option<NonZeroUsize>,
    pub all_down: AllDown,
    /// In configured order (the order for clients with no location). Shared with the tables
    /// rebuilt from this one while the name's inputs do not change.
    pub sites: Arc<[GeoSite]>,
    /// The precomputed IPv4 rankings of these sites, once (and if) built.
    pub(super) rank: Option<Arc<RankSlot>>,
    /// More than one site has IPv4 (IPv6) addresses: where the client is can change the answer,
    /// so an ECS reply carries a scope (else scope 0). Kept here so a query need not read every
    /// site's entry to know.
    pub(super) several_v4: bool,
    pub(super) several_v6: bool,
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

/// One site of a geo name. Its addresses are kept inline (up to 4 IPv4 and 1 IPv6, in the space
/// a heap pointer would take; more spill to the heap): a build allocates nothing per site, and
/// an answer reads them from the name's site list without following another pointer.
pub struct GeoSite {
    pub site: SiteId,
    /// The answer counter series of this (name, site): an index into
    /// [`RoutingTable::answer_series`].
    pub answers: u32,
    pub up: bool,
    pub v4: SmallVec<[Ipv4Addr; 4]>,
    pub v6: SmallVec<[Ipv6Addr; 1]>,
}

impl RoutingTable {
    /// The rank tables of this table's names (one per site list), those built so far.
    pub fn rank_tables(&self) -> impl Iterator<Item = &RankTable> {
        self.rank_slots.iter().filter_map(|s| s.get())
    }

    /// How many site lists of this table's names have a rank table (built or being built).
    pub fn rank_table_count(&self) -> usize {
        self.rank_slots.len()
    }

    pub fn sites(&self) -> &[SiteConfig] {
        &self.sites
    }

    pub fn client_networks(&self) -> &ClientNetworks {
        &self.networks
    }

    pub fn locator(&self) -> &dyn Locator {
        &*self.locator
    }

    /// The answer counters' labels, indexed by [`GeoSite::answers`]. The same config and
    /// inputs give the same list.
    pub fn answer_series(&self) -> &[AnswerSeries] {
        &self.answer_series
    }

    /// The answer counter of `name` answered from `site`.
    pub fn answer_series_of(&self, name: &Name, site: SiteId) -> Option<&AnswerSeries> {
        self.answer_series.get(self.answer_index(name, site)? as usize)
    }

    /// The index in [`RoutingTable::answer_series`] of `name` answered from `site`.
    pub fn answer_index(&self, name: &Name, site: SiteId) -> Option<u32> {
        Some(self.geo_route(name)?.sites.iter().find(|s| s.site == site)?.answers)
    }

    /// Whether this table holds so many names that a query's lookups miss the CPU caches
    /// (more than [`MANY_NAMES`]): the UDP loop then looks a batch's names up ahead.
    pub fn larger_than_caches(&self) -> bool {
        self.zones.iter().map(|z| z.nodes.len()).sum::<usize>() > MANY_NAMES
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
        match self.find_zone(name)?.nodes.get(name.as_str())? {
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
pub fn build(
    config: &Config,
    locator: Arc<dyn Locator>,
    inputs: impl Into<Arc<Inputs>>,
    generation: u64,
) -> RoutingTable {
    build_with(config, locator, None, None, inputs.into(), generation)
}

/// [`build`], with the precomputed rankings of `ranks` (which must belong to `locator`) for
/// the names whose site sets have them (asks for them, building in the background, otherwise),
/// and recording `index` (which must be `config`'s), so that [`super::rebuild`] can later
/// reuse this table's routes.
pub fn build_with(
    config: &Config,
    locator: Arc<dyn Locator>,
    ranks: Option<&RankTables>,
    index: Option<&Arc<AddressIndex>>,
    inputs: Arc<Inputs>,
    generation: u64,
) -> RoutingTable {
    let discovered = by_name(&inputs.discovered);
    let health = Health::new(&inputs, config.sites.len());
    // Names share a few site lists: each list's rank slot is asked for once per build (its
    // locations and site names are copied only then).
    let mut slots: HashMap<Vec<SiteId>, Option<Arc<RankSlot>>, foldhash::fast::RandomState> = HashMap::default();
    let mut ids: Vec<SiteId> = Vec::new();
    let mut series = SeriesAssigner::default();
    let mut zones: Vec<Zone> = config
        .zones
        .iter()
        .map(|zc| {
            let mut nodes = HashMap::with_hasher(foldhash::fast::RandomState::default());
            for node in &zc.records {
                let mut rdata = node.rdata.clone();
                rdata.sort_by_key(RData::rtype);
                nodes.insert(Key::new(&node.name), Node::Static { ttl: node.ttl, rdata });
            }
            for g in &zc.geo {
                let found = discovered.get(&g.name).map_or(&[][..], Vec::as_slice);
                let mut sites = geo_sites(g, &health, found);
                series.assign(&g.name, Arc::get_mut(&mut sites).expect("not shared yet"));
                let mut route = geo_route(g, sites, None);
                if let Some(ranks) = ranks {
                    ids.clear();
                    ids.extend(route.sites.iter().map(|s| s.site));
                    route.rank = match slots.get(ids.as_slice()) {
                        Some(slot) => slot.clone(),
                        None => {
                            let locations: Vec<(UnitVector, String)> = ids
                                .iter()
                                .map(|&id| (config.sites[id].location.unit(), config.sites[id].name.clone()))
                                .collect();
                            let slot = ranks.slot(&ids, &locations);
                            slots.insert(ids.clone(), slot.clone());
                            slot
                        }
                    };
                }
                nodes.insert(Key::new(&g.name), Node::Geo(route));
            }
            // Every ancestor between a node and the apex exists, empty unless it has records.
            // A walk stops at a name already there: its own ancestors are (or will be) walked.
            let names: Vec<Name> =
                zc.records.iter().map(|n| &n.name).chain(zc.geo.iter().map(|g| &g.name)).cloned().collect();
            for name in names {
                let mut cur = name.parent();
                while let Some(p) = cur {
                    if p == zc.apex || !p.is_in(&zc.apex) || nodes.contains_key(p.as_str()) {
                        break;
                    }
                    cur = p.parent();
                    nodes.insert(Key::new(&p), Node::Empty);
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
    zones.sort_by_key(|z| std::cmp::Reverse(z.apex.label_count()));
    RoutingTable {
        generation,
        zones,
        sites: config.sites.clone().into(),
        site_vectors: config.sites.iter().map(|s| s.location.unit()).collect(),
        networks: ClientNetworks::new(config.client_networks.iter().chain(&inputs.client_networks).cloned().collect()),
        locator,
        answer_series: series.series.into(),
        index: index.cloned(),
        inputs,
        rank_slots: slots.into_values().flatten().collect(),
    }
}

/// The discovered entries of each name, in the order the source lists them.
pub(super) fn by_name(discovered: &[Discovered]) -> HashMap<&Name, Vec<&Discovered>> {
    let mut out: HashMap<&Name, Vec<&Discovered>> = HashMap::new();
    for d in discovered {
        out.entry(&d.name).or_default().push(d);
    }
    out
}

/// One site of a geo name before health is applied: its addresses from the config and from
/// discovery, and whether discovery says it is ready.
struct SiteAddrs {
    site: SiteId,
    addrs: Vec<IpAddr>,
    /// `None` when no source reported readiness for this site (config-only).
    ready: Option<bool>,
    /// Addresses drained at the source (down for every name).
    drained: Vec<IpAddr>,
}

/// The name's sites: the config's in written order, then sites only discovery knows, in site
/// order; addresses merged without repeats.
fn merge_sites(g: &GeoNameConfig, found: &[&Discovered]) -> Vec<SiteAddrs> {
    let mut sites: Vec<SiteAddrs> = g
        .sites
        .iter()
        .map(|(site, addrs)| SiteAddrs { site: *site, addrs: addrs.clone(), ready: None, drained: Vec::new() })
        .collect();
    let mut extra: Vec<&&Discovered> = found.iter().filter(|d| !g.sites.iter().any(|(s, _)| *s == d.site)).collect();
    extra.sort_by_key(|d| d.site);
    for d in found.iter().filter(|d| g.sites.iter().any(|(s, _)| *s == d.site)).chain(extra) {
        let entry = match sites.iter_mut().position(|s| s.site == d.site) {
            Some(i) => &mut sites[i],
            None => {
                sites.push(SiteAddrs { site: d.site, addrs: Vec::new(), ready: None, drained: Vec::new() });
                sites.last_mut().expect("just pushed")
            }
        };
        for a in &d.addrs {
            if !entry.addrs.contains(a) {
                entry.addrs.push(*a);
            }
        }
        entry.ready = Some(entry.ready.unwrap_or(false) || d.ready);
        for a in &d.drained {
            if !entry.drained.contains(a) {
                entry.drained.push(*a);
            }
        }
    }
    sites
}

/// The run-time inputs arranged for a build: endpoints down by check, so a lookup hashes one
/// address (no key to allocate per address; a build looks up every address), and the operator's
/// forcing by site id (a build asks for every site of every name).
pub(super) struct Health<'a> {
    down: HashMap<&'a str, HashSet<IpAddr, foldhash::fast::RandomState>, foldhash::fast::RandomState>,
    /// By SiteId: (forced up and not forced down, forced down).
    forced: Vec<(bool, bool)>,
}

impl<'a> Health<'a> {
    pub(super) fn new(inputs: &'a Inputs, sites: usize) -> Self {
        let mut down: HashMap<&str, HashSet<IpAddr, _>, _> = HashMap::default();
        for (check, addr) in &inputs.endpoint_down {
            down.entry(check.as_str()).or_default().insert(*addr);
        }
        let forced = (0..sites)
            .map(|id| {
                let forced_down = inputs.sites_down.contains(&id);
                (inputs.sites_up.contains(&id) && !forced_down, forced_down)
            })
            .collect();
        Health { down, forced }
    }
}

/// A geo name's sites with health applied (their answer series not yet assigned), in one
/// allocation.
pub(super) fn geo_sites(g: &GeoNameConfig, health: &Health<'_>, found: &[&Discovered]) -> Arc<[GeoSite]> {
    let down = g.health_check.as_deref().and_then(|check| health.down.get(check)).filter(|d| !d.is_empty());
    let site = |site: SiteId, addrs: &[IpAddr], ready: Option<bool>, drained: &[IpAddr]| {
        // Down: judged down by the name's check, or drained at its source.
        let endpoint_up = |ip: &IpAddr| down.is_none_or(|d| !d.contains(ip)) && !drained.contains(ip);
        let (forced_up, forced_down) = health.forced.get(site).copied().unwrap_or_default();
        let live = if forced_up || (down.is_none() && drained.is_empty()) {
            addrs.len()
        } else {
            addrs.iter().filter(|a| endpoint_up(a)).count()
        };
        // A site is down when none of its endpoints is up (probed down, or drained at its
        // source), when discovery says it has no ready endpoint, or when an operator drained it. A down site keeps all its
        // addresses, for the `all_down` policies that answer with down sites.
        let up = forced_up || (!forced_down && ready != Some(false) && (addrs.is_empty() || live > 0));
        // Every address answers when all or none are live (no second lookup).
        let every = live == 0 || live == addrs.len();
        let (mut v4, mut v6) = (SmallVec::new(), SmallVec::new());
        for a in addrs.iter().filter(|a| every || endpoint_up(a)) {
            match a {
                IpAddr::V4(a) => v4.push(*a),
                IpAddr::V6(a) => v6.push(*a),
            }
        }
        GeoSite { site, answers: 0, up, v4, v6 }
    };
    // Nothing discovered for this name (the common case): the config's addresses as they are.
    if found.is_empty() {
        g.sites.iter().map(|(id, addrs)| site(*id, addrs, None, &[])).collect()
    } else {
        merge_sites(g, found).iter().map(|s| site(s.site, &s.addrs, s.ready, &s.drained)).collect()
    }
}

/// A geo name's route from its sites (answer series assigned) and its rank slot.
pub(super) fn geo_route(g: &GeoNameConfig, sites: Arc<[GeoSite]>, rank: Option<Arc<RankSlot>>) -> GeoRoute {
    let any_down = sites.iter().any(|s| !s.up);
    let several_v4 = sites.iter().filter(|s| !s.v4.is_empty()).nth(1).is_some();
    let several_v6 = sites.iter().filter(|s| !s.v6.is_empty()).nth(1).is_some();
    GeoRoute {
        name: g.name.clone(),
        // Halved, but a TTL above 0 stays above 0.
        ttl: if any_down { (g.ttl / 2).max(g.ttl.min(1)) } else { g.ttl },
        max_answers: g.max_answers,
        all_down: g.all_down,
        sites,
        rank,
        several_v4,
        several_v6,
    }
}

/// The type order used for ANY and for listing a node's RRsets.
pub(super) fn rrset(rdata: &[RData], rtype: RType) -> impl Iterator<Item = &RData> {
    rdata.iter().filter(move |r| r.rtype() == rtype)
}

// Inline address lists take no more room than a heap pointer, length and capacity would.
const _: () = assert!(size_of::<SmallVec<[Ipv4Addr; 4]>>() == 24 && size_of::<SmallVec<[Ipv6Addr; 1]>>() == 24);
