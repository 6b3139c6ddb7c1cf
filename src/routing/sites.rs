//! A geo name's sites as a build makes them: the config's and discovery's addresses merged,
//! health (probe verdicts, drains, readiness, operator forcing) applied, and the route made
//! from them. Shared by full builds and incremental rebuilds.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::config::GeoNameConfig;
use crate::model::{Discovered, Name, SiteId};

use super::build::Inputs;
use super::rank::RankSlot;
use super::table::{GeoRoute, GeoSite};

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
        base_ttl: g.ttl,
        max_answers: g.max_answers,
        all_down: g.all_down,
        sites,
        rank,
        several_v4,
        several_v6,
    }
}
