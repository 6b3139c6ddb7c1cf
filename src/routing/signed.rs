//! The DNSSEC side of a table, as data: what a signed zone holds that must be signed
//! ([`RoutingTable::zone_content`]: every RRset the table can answer with, each distinct geo
//! answer included, and the names of the NSEC chain with their types), and the signatures the
//! signer made for it ([`Signed`]), which the answer path copies into responses. Pure: no
//! cryptography and no clocks here; signatures are opaque bytes (the `dnssec` module makes
//! them, the load step attaches them with [`RoutingTable::set_signed`]).

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crate::config::AllDown;
use crate::model::{Name, RData, RType};

use super::table::{GeoRoute, Node, RoutingTable};

/// An RRset whose records are fixed in a table: SOA, NS, static records.
#[derive(Debug, Clone)]
pub struct PlainSet {
    pub owner: Name,
    pub rtype: u16,
    pub ttl: u32,
    pub rdata: Vec<RData>,
}

/// A geo name's answers of one type, to sign.
#[derive(Clone)]
pub struct GeoSets {
    pub owner: Name,
    pub rtype: u16,
    /// The configured TTL (answers halve it while a site is down; signatures keep this one).
    pub ttl: u32,
    /// The name's route: [`geo_answer_sets`] of it are what to sign.
    pub route: GeoRoute,
    /// The name's addresses and TTL are those of the previous table given to
    /// [`RoutingTable::zone_content`] (health alone may differ: the answer sets are the same).
    pub unchanged: bool,
}

/// What one signed zone of a table holds, for the signer.
#[derive(Clone)]
pub struct ZoneContent {
    pub apex: Name,
    /// The TTL of NSEC records: min(SOA TTL, SOA minimum), as negative answers' SOA.
    pub negative_ttl: u32,
    pub plain: Vec<PlainSet>,
    pub geo: Vec<GeoSets>,
    /// Every name that exists (apex, records, geo names, empty non-terminals) with the types
    /// of the RRsets it can answer with, in canonical order (RFC 4034, section 6.1).
    pub names: Vec<(Name, BTreeSet<u16>)>,
}

/// The bytes a set of records is known by: the canonical forms of its records' data, sorted
/// and joined (for addresses: the sorted address octets).
pub type SetKey = Box<[u8]>;

/// The RRSIG records of one RRset.
#[derive(Debug, Clone)]
pub struct Sigs {
    /// The TTL signed (answers may serve less, never more).
    pub original_ttl: u32,
    /// The records signed, as their [`SetKey`]: a later signing reuses these signatures only
    /// for the same records.
    pub key: SetKey,
    /// The earliest expiration of the signatures, in seconds since the epoch (mod 2^32).
    pub expires: u32,
    /// Each RRSIG's RDATA, one per key.
    pub rrsigs: Vec<Box<[u8]>>,
}

/// An RRset made by the signer (DNSKEY, CDS, CDNSKEY, NSEC): its records' data in wire form
/// (no compressible names inside) and their signatures.
#[derive(Debug, Clone)]
pub struct RawSet {
    pub rtype: u16,
    pub ttl: u32,
    pub rdata: Vec<Box<[u8]>>,
    pub sigs: Sigs,
}

/// The signatures of one signed zone.
#[derive(Debug, Clone)]
pub struct SignedZone {
    pub apex: Name,
    /// The keys that signed, each its role (what it signs) then its DNSKEY RDATA: a later
    /// signing reuses signatures only when the keys and their roles are the same.
    pub keys: Vec<Box<[u8]>>,
    /// Signatures of the fixed RRsets, by owner and type.
    pub fixed: HashMap<(Name, u16), Sigs>,
    /// Signatures of geo answers, by owner and type (shared with the next table's when the
    /// name's addresses do not change).
    pub geo: HashMap<(Name, u16), Arc<GeoSigs>>,
    /// DNSKEY, CDS and CDNSKEY at the apex.
    pub apex_sets: Vec<RawSet>,
    /// The NSEC chain, in canonical order of owner names (shared with the next table's when
    /// the names and their types do not change).
    pub nsec: Arc<Vec<(Name, RawSet)>>,
    /// A hash of the names and types the chain was made from, and the chain's earliest
    /// expiration: a later signing reuses the whole chain when both allow.
    pub chain_hash: u64,
    pub chain_expires: u32,
    /// The earliest expiration of the zone's signatures.
    pub expires: u32,
}

/// The signatures of every answer of one type a geo name can give, by the answer's
/// [`SetKey`].
#[derive(Debug, Clone, Default)]
pub struct GeoSigs {
    /// The earliest expiration among them.
    pub expires: u32,
    pub sets: HashMap<SetKey, Sigs>,
}

/// The signatures of a table's signed zones.
#[derive(Debug, Clone, Default)]
pub struct Signed {
    pub zones: Vec<SignedZone>,
}

impl Signed {
    /// The signed zone holding `name` (canonical text), if any.
    pub fn zone(&self, name: &str) -> Option<&SignedZone> {
        self.zones
            .iter()
            .filter(|z| super::resolve::in_zone(name, z.apex.as_str()))
            .max_by_key(|z| z.apex.label_count())
    }

    /// The earliest expiration of any signature, in seconds since the epoch (mod 2^32).
    pub fn earliest_expiry(&self) -> Option<u32> {
        self.zones.iter().map(|z| z.expires).min()
    }
}

impl SignedZone {
    /// The signatures of the RRset of `rtype` at `owner` holding `data` (a geo answer is
    /// found by its addresses).
    pub fn sigs<'a>(&self, owner: &Name, rtype: u16, data: impl Iterator<Item = &'a RData>) -> Option<&Sigs> {
        let key = (owner.clone(), rtype);
        if let Some(s) = self.fixed.get(&key) {
            return Some(s);
        }
        let sets = self.geo.get(&key)?;
        let mut addrs: Vec<RData> = data.cloned().collect();
        sort_rdata(&mut addrs);
        sets.sets.get(address_key(&addrs).as_ref())
    }

    /// DNSKEY, CDS or CDNSKEY.
    pub fn apex_set(&self, rtype: u16) -> Option<&RawSet> {
        self.apex_sets.iter().find(|s| s.rtype == rtype)
    }

    /// The NSEC record owned by `name` (canonical text): the name exists.
    pub fn nsec_at(&self, name: &str) -> Option<(&Name, &RawSet)> {
        let i = self.nsec.binary_search_by(|(n, _)| canonical_cmp(n.as_str(), name)).ok()?;
        Some((&self.nsec[i].0, &self.nsec[i].1))
    }

    /// The NSEC record whose owner is the last name before `name` in canonical order (for a
    /// name that does not exist: the record proving it).
    pub fn nsec_covering(&self, name: &str) -> Option<(&Name, &RawSet)> {
        let i = match self.nsec.binary_search_by(|(n, _)| canonical_cmp(n.as_str(), name)) {
            Ok(i) => i,
            Err(0) => self.nsec.len().checked_sub(1)?,
            Err(i) => i - 1,
        };
        self.nsec.get(i).map(|(n, s)| (n, s))
    }
}

/// Orders names (canonical text) as RFC 4034, section 6.1 does: label by label from the
/// right, each label as bytes, a name before its descendants.
pub fn canonical_cmp(a: &str, b: &str) -> Ordering {
    fn labels(s: &str) -> impl Iterator<Item = &[u8]> {
        s.split('.').filter(|l| !l.is_empty()).rev().map(str::as_bytes)
    }
    labels(a).cmp(labels(b))
}

/// A byte string that sorts as [`canonical_cmp`] orders names: the labels from the right, each
/// followed by a 0 byte (which no label of ours holds, and which sorts before every byte a label
/// can hold, so a label sorts before the longer labels it begins, and a name before its
/// descendants).
pub fn canonical_key(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 1);
    for label in name.split('.').filter(|l| !l.is_empty()).rev() {
        out.extend_from_slice(label.as_bytes());
        out.push(0);
    }
    out
}

/// Sorts records of one type by their canonical form (for addresses, by their octets).
fn sort_rdata(data: &mut [RData]) {
    data.sort_by(|a, b| match (a, b) {
        (RData::A(x), RData::A(y)) => x.octets().cmp(&y.octets()),
        (RData::Aaaa(x), RData::Aaaa(y)) => x.octets().cmp(&y.octets()),
        _ => Ordering::Equal,
    });
}

/// The [`SetKey`] of addresses sorted by [`sort_rdata`]: their octets, joined.
pub fn address_key(addrs: &[RData]) -> SetKey {
    let mut out = Vec::with_capacity(addrs.len() * 16);
    for a in addrs {
        match a {
            RData::A(v4) => out.extend_from_slice(&v4.octets()),
            RData::Aaaa(v6) => out.extend_from_slice(&v6.octets()),
            _ => {}
        }
    }
    out.into()
}

/// Stops the enumeration of one name's answers beyond this many partial answers (config
/// validation keeps signed zones far below: `config::MAX_SIGNED_ANSWER_SETS`).
const MAX_STATES: usize = 1 << 16;

/// Every distinct set of addresses of one type (`aaaa` or A) that `route` can answer with,
/// whatever the client and whichever of its sites are up, each sorted by address: with
/// `max_answers` n, the first n addresses of any sequence of distinct sites; without it, each
/// site's addresses, and all of them together (`all_down: all`).
pub fn geo_answer_sets(route: &GeoRoute, aaaa: bool) -> Vec<Vec<RData>> {
    let lists: Vec<Vec<RData>> = route
        .sites
        .iter()
        .map(|s| {
            if aaaa {
                s.v6.iter().map(|a| RData::Aaaa(*a)).collect()
            } else {
                s.v4.iter().map(|a| RData::A(*a)).collect::<Vec<_>>()
            }
        })
        .filter(|l| !l.is_empty())
        .collect();
    let mut out: HashSet<Vec<u8>> = HashSet::new();
    let mut sets = Vec::new();
    let mut add = |mut set: Vec<RData>| {
        sort_rdata(&mut set);
        if out.insert(address_key(&set).into_vec()) {
            sets.push(set);
        }
    };
    if lists.is_empty() {
        return sets;
    }
    let limit = route.max_answers.map_or(usize::MAX, |n| n.get());
    // One site alone (the nearest healthy one; or `all_down: first`), at most `limit`.
    for l in &lists {
        add(l.iter().take(limit).cloned().collect());
    }
    // Every site (`all_down: all`), at most `limit` of them when limited: the sequences.
    if route.max_answers.is_none() {
        add(lists.iter().flatten().cloned().collect());
        return sets;
    }
    // Sites wholly in the answer (fewer addresses than `limit` together), as index sets in
    // increasing order, then each other site contributing the rest.
    let mut stack: Vec<(Vec<usize>, usize)> = vec![(Vec::new(), 0)];
    let mut states = 0;
    while let Some((whole, count)) = stack.pop() {
        states += 1;
        if states > MAX_STATES {
            break;
        }
        // Only these sites up (or, all down, only these with addresses): all of theirs.
        if !whole.is_empty() {
            add(whole.iter().flat_map(|&w| lists[w].iter().cloned()).collect());
        }
        for (i, l) in lists.iter().enumerate() {
            if whole.contains(&i) {
                continue;
            }
            if count + l.len() >= limit {
                let mut set: Vec<RData> = whole.iter().flat_map(|&w| lists[w].iter().cloned()).collect();
                set.extend(l.iter().take(limit - count).cloned());
                add(set);
            } else if whole.last().is_none_or(|&last| i > last) {
                let mut next = whole.clone();
                next.push(i);
                stack.push((next, count + l.len()));
            }
        }
    }
    sets
}

impl RoutingTable {
    /// Attaches the signatures made for this table; before it is published (a second call
    /// is ignored: a table's signatures never change while it is served).
    pub fn set_signed(&self, signed: Arc<Signed>) {
        if self.signed.get().is_none() {
            let quick = super::signed_quick::QuickSigned::new(&signed);
            let _ = self.signed.set(super::signed_quick::Attached { signed, quick });
        }
    }

    /// The signatures of this table's signed zones, once attached.
    pub fn signed(&self) -> Option<&Signed> {
        self.signed.get().map(|s| &*s.signed)
    }

    /// What the zone at `apex` holds, for signing: every RRset it can answer with (each
    /// distinct geo answer as health and the client may make it), and its names. Geo names
    /// whose addresses are as in `previous` are marked unchanged and not enumerated. `None`
    /// for a zone this table does not serve.
    pub fn zone_content(&self, apex: &Name, previous: Option<&RoutingTable>) -> Option<ZoneContent> {
        let zone = self.zones.iter().find(|z| z.apex == *apex)?;
        let before = previous.and_then(|p| p.zones.iter().find(|z| z.apex == *apex));
        let mut plain = vec![
            PlainSet {
                owner: apex.clone(),
                rtype: RType::Soa.code(),
                ttl: zone.soa_ttl,
                rdata: vec![zone.soa.clone()],
            },
            PlainSet { owner: apex.clone(), rtype: RType::Ns.code(), ttl: zone.ttl, rdata: zone.ns.clone() },
        ];
        let mut geo = Vec::new();
        let mut names: Vec<(Name, BTreeSet<u16>)> = Vec::new();
        let mut apex_types: BTreeSet<u16> = [RType::Soa.code(), RType::Ns.code()].into();
        for (key, node) in &zone.nodes {
            let name = key.name();
            let mut types = BTreeSet::new();
            match node {
                Node::Empty => {}
                Node::Static { ttl, rdata } => {
                    let mut start = 0;
                    while start < rdata.len() {
                        let rtype = rdata[start].rtype();
                        let end = start + rdata[start..].iter().take_while(|r| r.rtype() == rtype).count();
                        types.insert(rtype.code());
                        plain.push(PlainSet {
                            owner: name.clone(),
                            rtype: rtype.code(),
                            ttl: *ttl,
                            rdata: rdata[start..end].to_vec(),
                        });
                        start = end;
                    }
                }
                Node::Geo(route) => {
                    let unchanged = match before.and_then(|z| z.nodes.get(key.as_bytes_pub())) {
                        Some(Node::Geo(old)) => same_addresses(old, route),
                        _ => false,
                    };
                    for (aaaa, rtype) in [(false, RType::A), (true, RType::Aaaa)] {
                        let has = route.sites.iter().any(|s| if aaaa { !s.v6.is_empty() } else { !s.v4.is_empty() });
                        if !has {
                            continue;
                        }
                        // Every site of the type down, and the name answers NODATA then: the
                        // type is not there for any client (SERVFAIL needs no proof).
                        let up =
                            route.sites.iter().any(|s| s.up && if aaaa { !s.v6.is_empty() } else { !s.v4.is_empty() });
                        if up || !matches!(route.all_down, AllDown::NoData | AllDown::ServFail) {
                            types.insert(rtype.code());
                        }
                        geo.push(GeoSets {
                            owner: name.clone(),
                            rtype: rtype.code(),
                            ttl: route.base_ttl,
                            route: route.clone(),
                            unchanged,
                        });
                    }
                }
            }
            if name == *apex {
                apex_types.extend(types);
            } else {
                names.push((name, types));
            }
        }
        names.push((apex.clone(), apex_types));
        // Keys made once per name: a sort comparing names label by label costs several times more.
        names.sort_by_cached_key(|(n, _)| canonical_key(n.as_str()));
        Some(ZoneContent { apex: apex.clone(), negative_ttl: zone.negative_ttl, plain, geo, names })
    }
}

/// Whether two routes of a name answer from the same sites with the same addresses and TTL
/// (so with the same answer sets, whatever their health).
fn same_addresses(a: &GeoRoute, b: &GeoRoute) -> bool {
    a.base_ttl == b.base_ttl
        && a.max_answers == b.max_answers
        && (Arc::ptr_eq(&a.sites, &b.sites)
            || (a.sites.len() == b.sites.len()
                && a.sites.iter().zip(b.sites.iter()).all(|(x, y)| x.site == y.site && x.v4 == y.v4 && x.v6 == y.v6)))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::num::NonZeroUsize;

    use smallvec::SmallVec;

    use super::*;
    use crate::routing::table::GeoSite;

    #[test]
    fn canonical_order_is_rfc_4034s() {
        // RFC 4034, section 6.1's example, lower-cased and without escapes.
        let mut names =
            vec!["z.example.", "a.example.", "yljkjljk.a.example.", "example.", "zabc.a.example.", "z.a.example."];
        names.sort_by(|a, b| canonical_cmp(a, b));
        assert_eq!(
            names,
            ["example.", "a.example.", "yljkjljk.a.example.", "z.a.example.", "zabc.a.example.", "z.example."]
        );
        let mut by_key = names.clone();
        by_key.reverse();
        by_key.sort_by_cached_key(|n| canonical_key(n));
        assert_eq!(by_key, names);
        // Labels that begin others, digits, '-' and '_', a name and its descendants.
        let mut more = vec!["a-b.x.", "a.x.", "a0.x.", "a_.x.", "ab.x.", "b.a.x.", "x.", "*.a.x.", "a.a.x.", "aa.x."];
        let mut by_cmp = more.clone();
        by_cmp.sort_by(|a, b| canonical_cmp(a, b));
        more.sort_by_cached_key(|n| canonical_key(n));
        assert_eq!(more, by_cmp);
    }

    fn route(sites: &[&[u8]], max_answers: Option<usize>) -> GeoRoute {
        let sites: Vec<GeoSite> = sites
            .iter()
            .enumerate()
            .map(|(i, addrs)| GeoSite {
                site: i,
                answers: 0,
                up: true,
                v4: addrs.iter().map(|&o| Ipv4Addr::new(192, 0, 2, o)).collect::<SmallVec<_>>(),
                v6: SmallVec::new(),
            })
            .collect();
        GeoRoute {
            name: Name::parse_absolute("app.example.").unwrap(),
            ttl: 60,
            base_ttl: 60,
            max_answers: max_answers.and_then(NonZeroUsize::new),
            all_down: AllDown::All,
            sites: sites.into(),
            rank: None,
            several_v4: true,
            several_v6: false,
        }
    }

    fn octets(sets: &[Vec<RData>]) -> BTreeSet<Vec<u8>> {
        sets.iter()
            .map(|s| {
                s.iter()
                    .map(|r| match r {
                        RData::A(a) => a.octets()[3],
                        _ => 0,
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn every_answer_a_geo_name_can_give_is_enumerated() {
        // Default: each site's addresses, and all of them.
        let r = route(&[&[1, 2], &[3], &[4]], None);
        assert_eq!(octets(&geo_answer_sets(&r, false)), [vec![1, 2], vec![3], vec![4], vec![1, 2, 3, 4]].into());
        assert!(geo_answer_sets(&r, true).is_empty());
        // max_answers 2: the first two addresses of any order of sites.
        let r = route(&[&[1, 2], &[3], &[4]], Some(2));
        let want: BTreeSet<Vec<u8>> = [vec![1, 2], vec![3], vec![4], vec![3, 4], vec![1, 3], vec![1, 4]].into();
        assert_eq!(octets(&geo_answer_sets(&r, false)), want);
        // Brute force over every order of every subset of sites agrees, for max_answers 1..=4.
        let r = route(&[&[1], &[2, 3], &[4], &[5, 6, 7]], None);
        for n in 1..=5 {
            let mut brute = BTreeSet::new();
            let perms = permutations(&[0, 1, 2, 3]);
            for p in perms {
                for len in 1..=4 {
                    let mut s: Vec<u8> =
                        p[..len].iter().flat_map(|&i| r.sites[i].v4.iter().map(|a| a.octets()[3])).take(n).collect();
                    // A sequence counts only if it stops where the answer does: the last site
                    // is needed, or every site is in it.
                    let need: usize = p[..len - 1].iter().map(|&i| r.sites[i].v4.len()).sum();
                    if need < n {
                        s.sort();
                        brute.insert(s);
                    }
                }
            }
            let limited = route(&[&[1], &[2, 3], &[4], &[5, 6, 7]], Some(n));
            assert_eq!(octets(&geo_answer_sets(&limited, false)), brute, "max_answers {n}");
        }
    }

    fn permutations(items: &[usize]) -> Vec<Vec<usize>> {
        if items.len() <= 1 {
            return vec![items.to_vec()];
        }
        let mut out = Vec::new();
        for (i, &x) in items.iter().enumerate() {
            let mut rest = items.to_vec();
            rest.remove(i);
            for mut p in permutations(&rest) {
                p.insert(0, x);
                out.push(p);
            }
        }
        out
    }
}
