//! Incremental rebuilds: a new table from the previous one, when only health or discovery
//! changed. Routes whose inputs are unchanged are shared with the previous table (their site
//! lists are reference-counted), and only the names a change can reach are built again: a
//! flip of one endpoint rebuilds the names that have that address, not the whole table.
//!
//! A rebuild answers exactly as a full build from the same inputs would (a test compares the
//! two on random changes); whenever reuse could differ, it builds in full: operator overrides
//! of sites changed, a name's site list changed (discovery added or removed a site: answer
//! counters would shift), or the previous table came from another config.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use crate::config::Config;
use crate::model::{Discovered, Locator, Name};

use super::build::{Built, Inputs, build_with, rrl_exempt};
use super::placement::ClientNetworks;
use super::rank::RankTables;
use super::sites::{Health, by_name, geo_route, geo_sites};
use super::table::{Node, RoutingTable, Zone};

/// Which geo names have each configured address, for finding the names a flip reaches. Built
/// once per config. Compact: a 64-bit hash of the address and the name's ordinal (its place in
/// config order, zone by zone), sorted and bucketed by the hash's top bits, 12 bytes an address.
/// Hash collisions only make a rebuild redo a name it did not need to.
pub struct AddressIndex {
    hashes: Vec<u64>,
    names: Vec<u32>,
    /// `starts[b]..starts[b + 1]` holds the entries of bucket `b` (the hash's top `bits` bits).
    starts: Vec<u32>,
    bits: u32,
}

impl AddressIndex {
    pub fn new(config: &Config) -> Self {
        let mut pairs: Vec<(u64, u32)> = config
            .zones
            .iter()
            .flat_map(|z| &z.geo)
            .enumerate()
            .flat_map(|(k, g)| g.sites.iter().flat_map(|(_, addrs)| addrs).map(move |a| (address_hash(a), k as u32)))
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        // About 8 entries a bucket.
        let bits = (pairs.len() / 8).max(1).next_power_of_two().trailing_zeros().min(24);
        let mut starts = Vec::with_capacity((1 << bits) + 1);
        let mut at = 0;
        for b in 0..=(1u64 << bits) {
            while at < pairs.len() && bucket(pairs[at].0, bits) < b {
                at += 1;
            }
            starts.push(at as u32);
        }
        AddressIndex {
            hashes: pairs.iter().map(|p| p.0).collect(),
            names: pairs.iter().map(|p| p.1).collect(),
            starts,
            bits,
        }
    }

    /// The ordinals of the names that have `addr` among their configured addresses (and,
    /// rarely, of a name whose address shares its hash).
    pub fn names_with(&self, addr: &IpAddr) -> impl Iterator<Item = u32> + '_ {
        let h = address_hash(addr);
        let b = bucket(h, self.bits) as usize;
        let range = self.starts[b] as usize..self.starts[b + 1] as usize;
        self.hashes[range.clone()].iter().zip(&self.names[range]).filter(move |(k, _)| **k == h).map(|(_, n)| *n)
    }

    /// Entries held (configured addresses, counted once per name).
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

fn bucket(hash: u64, bits: u32) -> u64 {
    if bits == 0 { 0 } else { hash >> (64 - bits) }
}

/// A fixed mix of the address's bits (SplitMix64's finalizer); IPv4 and IPv6 apart.
fn address_hash(addr: &IpAddr) -> u64 {
    let raw = match addr {
        IpAddr::V4(a) => u64::from(a.to_bits()) | 1 << 40,
        IpAddr::V6(a) => {
            let b = a.to_bits();
            (b as u64) ^ ((b >> 64) as u64).rotate_left(29) ^ 0x5bd1_e995_0000_0000
        }
    };
    let mut z = raw.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The geo names a change of inputs can reach, or `None` when everything must be rebuilt.
struct Changed<'a> {
    /// By ordinal: names with a flipped address in their config.
    ordinals: HashSet<u32, foldhash::fast::RandomState>,
    /// Names whose discovered entries changed, or that have a flipped discovered address.
    names: HashSet<&'a Name, foldhash::fast::RandomState>,
}

impl Changed<'_> {
    fn reaches(&self, ordinal: u32, name: &Name) -> bool {
        self.ordinals.contains(&ordinal) || (!self.names.is_empty() && self.names.contains(name))
    }
}

fn changed<'a>(index: &AddressIndex, old: &'a Inputs, new: &'a Inputs) -> Option<Changed<'a>> {
    // Forcing a site reaches every name served from it: rare (an operator's action), so rebuild.
    // A dynamic update changes static nodes and the SOA serial: rare too.
    if old.sites_down != new.sites_down || old.sites_up != new.sites_up || old.dynamic != new.dynamic {
        return None;
    }
    let mut out = Changed { ordinals: HashSet::default(), names: HashSet::default() };
    if old.discovered != new.discovered {
        let (before, after) = (by_name(&old.discovered), by_name(&new.discovered));
        for (name, entries) in &after {
            if before.get(name) != Some(entries) {
                out.names.insert(*name);
            }
        }
        out.names.extend(before.keys().filter(|n| !after.contains_key(*n)));
    }
    let flipped: HashSet<IpAddr, foldhash::fast::RandomState> =
        old.endpoint_down.symmetric_difference(&new.endpoint_down).map(|(_, addr)| *addr).collect();
    if !flipped.is_empty() {
        for addr in &flipped {
            out.ordinals.extend(index.names_with(addr));
        }
        let discovered = |d: &&'a Discovered| d.addrs.iter().any(|a| flipped.contains(a));
        out.names.extend(old.discovered.iter().chain(&new.discovered).filter(discovered).map(|d| &d.name));
    }
    Some(out)
}

/// Builds the table for `inputs`, reusing from `previous` every route the change from its
/// inputs cannot reach; a full build (recording `index`) when reuse is not possible. `index`
/// must be `config`'s, and `ranks` the same as the previous table's.
pub fn rebuild(
    config: &Config,
    locator: Arc<dyn Locator>,
    ranks: Option<&RankTables>,
    index: &Arc<AddressIndex>,
    previous: &Built,
    inputs: Arc<Inputs>,
    generation: u64,
) -> Built {
    reuse(config, index, previous, &inputs, generation)
        .unwrap_or_else(|| build_with(config, locator, ranks, Some(index), inputs, generation))
}

fn reuse(
    config: &Config,
    index: &Arc<AddressIndex>,
    built: &Built,
    inputs: &Arc<Inputs>,
    generation: u64,
) -> Option<Built> {
    let previous = &*built.table;
    if !built.index.as_ref().is_some_and(|i| Arc::ptr_eq(i, index)) {
        return None;
    }
    let changed = changed(index, &built.inputs, inputs)?;
    // Reaching most names, a full build is cheaper than copying the old table's map and
    // replacing most of its routes.
    let names = config.zones.iter().map(|z| z.geo.len()).sum::<usize>();
    if 2 * (changed.ordinals.len() + changed.names.len()) > names.max(1) {
        return None;
    }
    let discovered = by_name(&inputs.discovered);
    let health = Health::new(inputs, config.sites.len());
    let mut zones = Vec::with_capacity(previous.zones.len());
    let mut ordinal = 0u32;
    for zc in &config.zones {
        let prev = previous.zones.iter().find(|z| z.apex == zc.apex)?;
        let mut nodes = None;
        for g in &zc.geo {
            ordinal += 1;
            if !changed.reaches(ordinal - 1, &g.name) {
                continue;
            }
            let nodes = nodes.get_or_insert_with(|| prev.nodes.clone());
            let Some(Node::Geo(old)) = nodes.get_mut(g.name.as_str().as_bytes()) else { return None };
            let found = discovered.get(&g.name).map_or(&[][..], Vec::as_slice);
            let mut sites = geo_sites(g, &health, found);
            // Same sites in the same order: the same answer series and rank slot.
            if sites.len() != old.sites.len() || sites.iter().zip(old.sites.iter()).any(|(a, b)| a.site != b.site) {
                return None;
            }
            for (s, o) in Arc::get_mut(&mut sites).expect("not shared yet").iter_mut().zip(old.sites.iter()) {
                s.answers = o.answers;
            }
            *old = geo_route(g, sites, old.rank.clone());
        }
        zones.push(Zone {
            apex: prev.apex.clone(),
            soa: prev.soa.clone(),
            soa_ttl: prev.soa_ttl,
            negative_ttl: prev.negative_ttl,
            ns: prev.ns.clone(),
            ttl: prev.ttl,
            nodes: nodes.unwrap_or_else(|| prev.nodes.clone()),
        });
    }
    zones.sort_by_key(|z| std::cmp::Reverse(z.apex.label_count()));
    let (networks, rrl_exempt) = if inputs.client_networks == built.inputs.client_networks {
        (previous.networks.clone(), previous.rrl_exempt.clone())
    } else {
        (
            ClientNetworks::new(config.client_networks.iter().chain(&inputs.client_networks).cloned().collect()),
            rrl_exempt(config, &inputs.client_networks),
        )
    };
    let table = RoutingTable {
        generation,
        zones,
        sites: previous.sites.clone(),
        site_vectors: previous.site_vectors.clone(),
        networks,
        rrl_exempt,
        locator: previous.locator.clone(),
        answer_series: previous.answer_series.clone(),
        // The same site lists (a changed one builds in full), so the same slots.
        signed: std::sync::OnceLock::new(),
        rank_slots: previous.rank_slots.clone(),
    };
    Some(Built { table: Arc::new(table), inputs: inputs.clone(), index: Some(index.clone()) })
}

/// How many of `table`'s routes share their site list with `other`'s: for tests.
#[cfg(test)]
pub(super) fn shared_routes(table: &RoutingTable, other: &RoutingTable) -> usize {
    table.geo_routes().filter(|r| other.geo_route(&r.name).is_some_and(|o| Arc::ptr_eq(&o.sites, &r.sites))).count()
}
