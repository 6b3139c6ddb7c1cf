//! Building a routing table in full: the config's zones, every geo name's sites with health
//! applied, the answer counters' labels, and the rank slots the names' site lists ask for.
//! Pure: inputs in, a [`Built`] table out; no I/O, no threads, no clocks, no logging.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use crate::config::{ClientNetwork, Config};
use crate::model::{Discovered, Dynamic, Locator, Name, NetSet, RData, SiteId, Soa, UnitVector, serial_after};

use super::incremental::AddressIndex;
use super::placement::ClientNetworks;
use super::rank::{RankSlot, RankTables};
use super::sites::{Health, by_name, geo_route, geo_sites};
use super::table::{AnswerSeries, GeoSite, Key, MAX_NAMED_ANSWER_SERIES, Node, RoutingTable, Zone};

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
    /// Records applied by dynamic updates, per zone, with the serial each zone's SOA has
    /// after them (docs/updates.md). Served as static records are (and signed with them).
    pub dynamic: Arc<Dynamic>,
}

/// A table as built, with what the next build from the same config can reuse. The builder
/// keeps it; queries read only [`Built::table`], which is what gets published.
pub struct Built {
    pub(super) table: Arc<RoutingTable>,
    /// The inputs the table was built from: a rebuild compares the new ones with them.
    pub(super) inputs: Arc<Inputs>,
    /// The config's address index, when built with one: a rebuild from the same config (the
    /// same index) can reuse the table's unchanged routes (see [`super::rebuild`]).
    pub(super) index: Option<Arc<AddressIndex>>,
}

impl Built {
    /// The table queries read.
    pub fn table(&self) -> &Arc<RoutingTable> {
        &self.table
    }

    /// The table queries read, for publishing.
    pub fn into_table(self) -> Arc<RoutingTable> {
        self.table
    }

    /// The inputs it was built from.
    pub fn inputs(&self) -> &Arc<Inputs> {
        &self.inputs
    }
}

impl std::ops::Deref for Built {
    type Target = RoutingTable;

    fn deref(&self) -> &RoutingTable {
        &self.table
    }
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

/// Builds a table from a validated config, a locator and the current run-time inputs. Pure and
/// infallible: everything that can be wrong was rejected by config validation.
pub fn build(config: &Config, locator: Arc<dyn Locator>, inputs: impl Into<Arc<Inputs>>, generation: u64) -> Built {
    build_with(config, locator, None, None, inputs.into(), generation)
}

/// [`build`], with the precomputed rankings of `ranks` (which must belong to `locator`) for
/// the names whose site sets have them (asking for them otherwise: see [`RankTables::slot`]),
/// and recording `index` (which must be `config`'s), so that [`super::rebuild`] can later
/// reuse this table's routes.
pub fn build_with(
    config: &Config,
    locator: Arc<dyn Locator>,
    ranks: Option<&RankTables>,
    index: Option<&Arc<AddressIndex>>,
    inputs: Arc<Inputs>,
    generation: u64,
) -> Built {
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
            let dynamic = inputs.dynamic.zones.get(&zc.apex);
            // Dynamic names never collide with configured ones (updates to those are refused);
            // should a reload add a configured name that holds dynamic records, it wins.
            for (name, node) in dynamic.map(|d| &d.names).into_iter().flatten() {
                if name.is_in(&zc.apex) && *name != zc.apex && !node.rdata.is_empty() {
                    let mut rdata = node.rdata.clone();
                    rdata.sort_by_key(RData::rtype);
                    nodes.insert(Key::new(name), Node::Static { ttl: node.ttl, rdata });
                }
            }
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
            let names: Vec<Name> = zc
                .records
                .iter()
                .map(|n| &n.name)
                .chain(zc.geo.iter().map(|g| &g.name))
                .chain(dynamic.map(|d| d.names.keys()).into_iter().flatten())
                .cloned()
                .collect();
            for name in names {
                let mut cur = name.parent();
                while let Some(p) = cur {
                    if p == zc.apex || !p.is_in(&zc.apex) || nodes.contains_key(p.as_str().as_bytes()) {
                        break;
                    }
                    cur = p.parent();
                    nodes.insert(Key::new(&p), Node::Empty);
                }
            }
            Zone {
                apex: zc.apex.clone(),
                soa: RData::Soa(Box::new(Soa {
                    serial: match dynamic.and_then(|d| d.serial) {
                        Some(s) if serial_after(s, zc.soa.serial) => s,
                        _ => zc.soa.serial,
                    },
                    ..zc.soa.clone()
                })),
                soa_ttl: zc.ttl,
                negative_ttl: zc.ttl.min(zc.soa.minimum),
                ns: zc.ns.iter().cloned().map(RData::Ns).collect(),
                ttl: zc.ttl,
                nodes,
            }
        })
        .collect();
    zones.sort_by_key(|z| std::cmp::Reverse(z.apex.label_count()));
    let table = RoutingTable {
        generation,
        zones,
        sites: config.sites.clone().into(),
        site_vectors: config.sites.iter().map(|s| s.location.unit()).collect(),
        networks: ClientNetworks::new(config.client_networks.iter().chain(&inputs.client_networks).cloned().collect()),
        rrl_exempt: rrl_exempt(config, &inputs.client_networks),
        locator,
        answer_series: series.series.into(),
        signed: std::sync::OnceLock::new(),
        rank_slots: slots.into_values().flatten().collect(),
    };
    Built { table: Arc::new(table), inputs, index: index.cloned() }
}

/// The clients RRL never limits: the configured networks, plus the config's client networks
/// and those `discovered` at run time, as the config's switches say.
pub(super) fn rrl_exempt(config: &Config, discovered: &[ClientNetwork]) -> NetSet {
    let e = &config.server.rrl_exempt;
    let configured = config.client_networks.iter().filter(|_| e.client_networks);
    let found = discovered.iter().filter(|_| e.kubernetes);
    NetSet::new(e.networks.iter().copied().chain(configured.chain(found).map(|c| c.net)))
}
