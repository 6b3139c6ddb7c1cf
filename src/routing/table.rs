//! The routing table: one immutable snapshot of everything a query needs (zones, static
//! RRsets, geo names with their sites' addresses and health, client networks, the clients
//! exempt from rate limiting, the GeoIP
//! locator, the labels of the answer counters queries count into). Built off the query path
//! ([`super::build`]); published whole behind one `ArcSwap`. What only the next build needs
//! (the inputs, the address index) stays with the builder, in [`super::Built`].

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::num::NonZeroUsize;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::config::{AllDown, SiteConfig};
use crate::model::{Locator, Name, NetSet, RData, RType, SiteId, UnitVector};

use super::placement::ClientNetworks;
use super::rank::{RankSlot, RankTable, RankTable6, Ranked};

pub struct RoutingTable {
    /// Increases by one with every table published; shown in /status and logs.
    pub generation: u64,
    pub(super) zones: Vec<Zone>,
    pub(super) sites: Arc<[SiteConfig]>,
    /// Each site's location as a unit vector, by SiteId (distances on the query path).
    pub(super) site_vectors: Vec<UnitVector>,
    pub(super) networks: ClientNetworks,
    /// The clients response rate limiting never limits: `server.rrl.exempt`, plus the client
    /// networks (the config's, those discovered) its switches take in. Here, in the snapshot,
    /// so it changes with reloads and discovery exactly when the networks do.
    pub(super) rrl_exempt: NetSet,
    pub(super) locator: Arc<dyn Locator>,
    /// The labels of the answer counters, by [`GeoSite::answers`]: the answer path counts
    /// into counters by index, and labels them from the table it answered from, so the labels
    /// belong to the table (shared by the tables rebuilt from this one).
    pub(super) answer_series: Arc<[AnswerSeries]>,
    /// The distinct rank slots of this table's routes (one per site list that has one).
    pub(super) rank_slots: Arc<[Arc<RankSlot>]>,
    /// The signatures of the signed zones' RRsets and their NSEC chains, made for this table
    /// by the load step before it is published (never set for unsigned configs), with their
    /// index for the quick DO answers (made from them, so attached with them).
    pub(super) signed: std::sync::OnceLock<super::signed_quick::Attached>,
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
/// Hashes and compares as the name's bytes, so maps are searched with a `&[u8]`.
#[derive(Clone)]
pub(super) enum Key {
    Inline { len: u8, text: [u8; Key::INLINE] },
    Shared(Name),
}

impl Key {
    pub const INLINE: usize = 30;

    pub(super) fn new(name: &Name) -> Key {
        let s = name.as_str();
        if s.len() <= Key::INLINE {
            let mut text = [0; Key::INLINE];
            text[..s.len()].copy_from_slice(s.as_bytes());
            Key::Inline { len: s.len() as u8, text }
        } else {
            Key::Shared(name.clone())
        }
    }

    /// The name this key stands for.
    pub(super) fn name(&self) -> Name {
        match self {
            Key::Inline { .. } => Name::from_canonical(std::str::from_utf8(self.as_bytes()).expect("names are ASCII")),
            Key::Shared(name) => name.clone(),
        }
    }

    pub(super) fn as_bytes_pub(&self) -> &[u8] {
        self.as_bytes()
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, text } => &text[..usize::from(*len)],
            Key::Shared(name) => name.as_str().as_bytes(),
        }
    }
}

/// Maps are searched with the name's bytes (`name.as_bytes()`): keys compare as bytes, with
/// no UTF-8 check on the query path.
impl std::borrow::Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
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
    /// The name's configured TTL (its signatures' original TTL).
    pub base_ttl: u32,
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

    /// The precomputed IPv6 rankings of this name's sites, when ready.
    pub fn rank_table6(&self) -> Option<&RankTable6> {
        self.rank.as_deref().and_then(RankSlot::get6)
    }

    /// `client`'s ranking of this name's sites from the precomputed tables, when they are
    /// built and place it.
    pub fn ranked(&self, client: std::net::IpAddr) -> Option<Ranked<'_>> {
        match client {
            std::net::IpAddr::V4(a) => Some(self.rank_table()?.lookup(u32::from(a))),
            std::net::IpAddr::V6(a) => self.rank_table6()?.lookup(u128::from(a)),
        }
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

    /// The IPv6 rank tables of this table's names (one per site list), those built so far.
    pub fn rank_tables6(&self) -> impl Iterator<Item = &RankTable6> {
        self.rank_slots.iter().filter_map(|s| s.get6())
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

    /// The clients response rate limiting never limits.
    pub fn rrl_exempt(&self) -> &NetSet {
        &self.rrl_exempt
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
        match self.find_zone(name)?.nodes.get(name.as_str().as_bytes())? {
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

/// The type order used for ANY and for listing a node's RRsets.
pub(super) fn rrset(rdata: &[RData], rtype: RType) -> impl Iterator<Item = &RData> {
    rdata.iter().filter(move |r| r.rtype() == rtype)
}

// Inline address lists take no more room than a heap pointer, length and capacity would.
const _: () = assert!(size_of::<SmallVec<[Ipv4Addr; 4]>>() == 24 && size_of::<SmallVec<[Ipv6Addr; 1]>>() == 24);
