//! The signatures of a table arranged for the quick answers to DO queries: made once, when the
//! signatures are attached to the table ([`RoutingTable::set_signed`]), so that a DO query for
//! a geo name, a static RRset, a name that does not exist or the apex SOA finds its RRSIGs and NSEC proofs
//! without allocating (by name in a map searched with the query's text, and by the answer's
//! sorted addresses kept on the stack). Pure; the bytes are copied by `dns::codec::signed`.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{Name, RData, RType};

use super::resolve::QuickGeo;
use super::signed::{GeoSigs, RawSet, Signed, SignedZone, Sigs, canonical_key};
use super::table::{Node, RoutingTable};

/// The answers longer than this many addresses are left to the general path (their sorted
/// addresses are kept on the stack: small buffers, as every query clears them).
const MAX_QUICK_ADDRESSES: usize = 16;

/// A name's answer sets up to this many are searched in turn (about the cost of one hash of
/// the key); more are looked up by hash.
const SCAN_SETS: usize = 8;

/// A table's signatures and their quick index, attached together once (one `OnceLock`: the
/// index always belongs to the signatures it was made from).
pub(super) struct Attached {
    pub signed: Arc<Signed>,
    pub quick: QuickSigned,
}

/// Per signed zone (in the order of [`Signed::zones`]): what the quick DO answers read.
pub struct QuickSigned {
    zones: Vec<QuickZone>,
}

struct QuickZone {
    /// The apex SOA's RRSIGs.
    soa: Option<Sigs>,
    /// By geo name: the signatures of its A and AAAA answers (shared with the signatures).
    geo: HashMap<Name, [Option<Arc<GeoSigs>>; 2], foldhash::fast::RandomState>,
    /// By owner: the RRSIGs of its fixed RRsets (static records, SOA, NS), by type.
    fixed: HashMap<Name, Vec<(u16, Sigs)>, foldhash::fast::RandomState>,
    /// The [`canonical_key`] of each owner of the NSEC chain, in its order: the chain is
    /// searched by comparing bytes (comparing names label by label costs several times more).
    chain: Vec<Box<[u8]>>,
    /// The apex's [`canonical_key`] length (a prefix of every key of the zone).
    apex_key: usize,
}

/// Longest [`canonical_key`] of a name searched in the chain by bytes (longer ones, which
/// escapes can make, are searched label by label).
const MAX_KEY: usize = 320;

/// Writes the [`canonical_key`] of `name` into `buf`; its length, `None` when too long.
fn key_into(name: &str, buf: &mut [u8; MAX_KEY]) -> Option<usize> {
    let mut len = 0;
    for label in name.split('.').filter(|l| !l.is_empty()).rev() {
        let end = len + label.len() + 1;
        buf.get_mut(len..end - 1)?.copy_from_slice(label.as_bytes());
        *buf.get_mut(end - 1)? = 0;
        len = end;
    }
    Some(len)
}

impl QuickSigned {
    pub(super) fn new(signed: &Signed) -> Self {
        let zones = signed
            .zones
            .iter()
            .map(|z| {
                let mut geo: HashMap<Name, [Option<Arc<GeoSigs>>; 2], foldhash::fast::RandomState> = HashMap::default();
                for ((owner, rtype), sigs) in &z.geo {
                    let slot = usize::from(*rtype == RType::Aaaa.code());
                    geo.entry(owner.clone()).or_default()[slot] = Some(sigs.clone());
                }
                let soa = z.fixed.get(&(z.apex.clone(), RType::Soa.code())).cloned();
                let mut fixed: HashMap<Name, Vec<(u16, Sigs)>, foldhash::fast::RandomState> = HashMap::default();
                for ((owner, rtype), sigs) in &z.fixed {
                    fixed.entry(owner.clone()).or_default().push((*rtype, sigs.clone()));
                }
                let chain = z.nsec.iter().map(|(n, _)| canonical_key(n.as_str()).into_boxed_slice()).collect();
                QuickZone { soa, geo, fixed, chain, apex_key: canonical_key(z.apex.as_str()).len() }
            })
            .collect();
        QuickSigned { zones }
    }
}

/// One signed zone of a table, for the quick DO answers: its signatures and their index.
#[derive(Clone, Copy)]
pub struct QuickSignedZone<'t> {
    pub zone: &'t SignedZone,
    quick: &'t QuickZone,
}

/// The NSEC records that prove a negative answer, at most two, each with its RRSIGs.
#[derive(Clone, Copy, Default)]
pub struct Proof<'t> {
    records: [Option<(&'t Name, &'t RawSet)>; 2],
}

impl<'t> Proof<'t> {
    /// The NSEC records, in the order the general path writes them.
    pub fn records(&self) -> impl Iterator<Item = (&'t Name, &'t RawSet)> + '_ {
        self.records.iter().flatten().copied()
    }
}

/// A static RRset found by [`RoutingTable::quick_static`]: its records, owned by the name asked.
#[derive(Clone, Copy)]
pub struct QuickStatic<'t> {
    pub ttl: u32,
    pub rdata: &'t [RData],
}

impl RoutingTable {
    /// The RRset of `rtype` at static name `name` (canonical text), as [`RoutingTable::resolve`]
    /// answers it, when that is the whole answer: not for CNAMEs (chains), ANY, NS and SOA at
    /// the apex (glue, the quick SOA), or a type the name does not hold (NODATA). Looked up
    /// without allocating.
    pub fn quick_static(&self, name: &str, rtype: RType) -> Option<QuickStatic<'_>> {
        if matches!(rtype, RType::Any | RType::Transfer | RType::Cname) {
            return None;
        }
        let zone = self.zones.iter().find(|z| super::resolve::in_zone(name, z.apex.as_str()))?;
        if name == zone.apex.as_str() && matches!(rtype, RType::Soa | RType::Ns) {
            return None;
        }
        let Node::Static { ttl, rdata } = zone.nodes.get(name.as_bytes())? else { return None };
        if rdata.first().is_some_and(|r| r.rtype() == RType::Cname) {
            return None;
        }
        // Grouped by type: one run.
        let start = rdata.iter().position(|r| r.rtype() == rtype)?;
        let len = rdata[start..].iter().take_while(|r| r.rtype() == rtype).count();
        Some(QuickStatic { ttl: *ttl, rdata: &rdata[start..start + len] })
    }

    /// The signed zone holding `name` (canonical text) with its quick index, once signatures
    /// are attached (the zone [`Signed::zone`] finds).
    pub fn quick_signed(&self, name: &str) -> Option<QuickSignedZone<'_>> {
        let attached = self.signed.get()?;
        let (i, zone) = attached
            .signed
            .zones
            .iter()
            .enumerate()
            .filter(|(_, z)| super::resolve::in_zone(name, z.apex.as_str()))
            .max_by_key(|(_, z)| z.apex.label_count())?;
        Some(QuickSignedZone { zone, quick: &attached.quick.zones[i] })
    }
}

impl<'t> QuickSignedZone<'t> {
    /// The RRSIGs of the apex SOA.
    pub fn soa_sigs(&self) -> Option<&'t Sigs> {
        self.quick.soa.as_ref()
    }

    /// The RRSIGs of the fixed RRset of `rtype` at `owner` (canonical text).
    pub fn fixed_sigs(&self, owner: &str, rtype: RType) -> Option<&'t Sigs> {
        let rtype = rtype.code();
        self.quick.fixed.get(owner)?.iter().find(|(t, _)| *t == rtype).map(|(_, s)| s)
    }

    /// The RRSIGs of the answer `g` gives for `rtype` (A or AAAA): found by the answer's
    /// addresses, sorted on the stack. `None` when the name or the set was not signed, or the
    /// answer holds more than [`MAX_QUICK_ADDRESSES`] addresses.
    pub fn geo_sigs(&self, g: &QuickGeo<'_>, rtype: RType) -> Option<&'t Sigs> {
        let aaaa = rtype == RType::Aaaa;
        let sets = self.quick.geo.get(g.route.name.as_str())?[usize::from(aaaa)].as_deref()?;
        let mut key = [0u8; MAX_QUICK_ADDRESSES * 16];
        let len = if aaaa {
            sorted_into(g.v6().map(|a| a.octets()), &mut key)?
        } else {
            sorted_into(g.v4().map(|a| a.octets()), &mut key)?
        };
        let key = &key[..len];
        if sets.sets.len() <= SCAN_SETS {
            return sets.sets.iter().find(|(k, _)| &k[..] == key).map(|(_, s)| s);
        }
        sets.sets.get(key)
    }

    /// The NSEC records proving that `name` (canonical text, in this zone) does not exist
    /// (`nxdomain`: the record covering it and the one covering the wildcard at its closest
    /// encloser, once if the same), or holds no RRset of the type asked (its own record). As
    /// the general path finds them, without allocating.
    pub fn proof(&self, name: &str, nxdomain: bool) -> Proof<'t> {
        let mut key = [0u8; MAX_KEY];
        match key_into(name, &mut key) {
            Some(len) if self.quick.chain.len() == self.zone.nsec.len() => self.proof_by_key(&key[..len], nxdomain),
            _ => self.proof_by_labels(name, nxdomain),
        }
    }

    /// [`QuickSignedZone::proof`], searching the chain's keys with the name's key.
    fn proof_by_key(&self, key: &[u8], nxdomain: bool) -> Proof<'t> {
        let (chain, nsec) = (&self.quick.chain, &self.zone.nsec);
        let at = |k: &[u8]| chain.binary_search_by(|c| (**c).cmp(k));
        let covering = |k: &[u8]| {
            let i = match at(k) {
                Ok(i) => i,
                Err(0) => chain.len().checked_sub(1)?,
                Err(i) => i - 1,
            };
            nsec.get(i).map(|(n, s)| (n, s))
        };
        let mut proof = Proof::default();
        if !nxdomain && let Ok(i) = at(key) {
            proof.records[0] = Some((&nsec[i].0, &nsec[i].1));
            return proof;
        }
        proof.records[0] = covering(key);
        // The closest encloser: the nearest ancestor that exists (the apex at worst); an
        // ancestor's key is a prefix of the name's, ending at a label's 0.
        let mut encloser = key.len();
        while encloser > 0 {
            encloser = key[..encloser - 1].iter().rposition(|&b| b == 0).map_or(0, |p| p + 1);
            if at(&key[..encloser]).is_ok() || encloser <= self.quick.apex_key {
                break;
            }
        }
        let mut wildcard = [0u8; MAX_KEY + 2];
        wildcard[..encloser].copy_from_slice(&key[..encloser]);
        wildcard[encloser..encloser + 2].copy_from_slice(b"*\0");
        if let Some(w) = covering(&wildcard[..encloser + 2])
            && proof.records[0].is_none_or(|(owner, _)| owner != w.0)
        {
            if proof.records[0].is_none() {
                proof.records[0] = Some(w);
            } else {
                proof.records[1] = Some(w);
            }
        }
        proof
    }

    /// [`QuickSignedZone::proof`], comparing names label by label.
    fn proof_by_labels(&self, name: &str, nxdomain: bool) -> Proof<'t> {
        let zone = self.zone;
        let mut proof = Proof::default();
        if !nxdomain && let Some(own) = zone.nsec_at(name) {
            proof.records[0] = Some(own);
            return proof;
        }
        proof.records[0] = zone.nsec_covering(name);
        // The closest encloser: the nearest ancestor that exists (the apex at worst).
        let mut encloser = name;
        while let Some(parent) = parent(encloser) {
            encloser = parent;
            if zone.nsec_at(encloser).is_some() || encloser == zone.apex.as_str() {
                break;
            }
        }
        let wildcard = covering_wildcard(zone, encloser);
        if let Some(w) = wildcard
            && proof.records[0].is_none_or(|(owner, _)| owner != w.0)
        {
            if proof.records[0].is_none() {
                proof.records[0] = Some(w);
            } else {
                proof.records[1] = Some(w);
            }
        }
        proof
    }
}

/// The parent of canonical `name` (`None` for the root), as text.
fn parent(name: &str) -> Option<&str> {
    if name == "." || name.is_empty() {
        return None;
    }
    match name.split_once('.') {
        Some((_, "")) | None => Some("."),
        Some((_, rest)) => Some(rest),
    }
}

/// [`SignedZone::nsec_covering`] of `*.encloser`, without writing that name.
fn covering_wildcard<'z>(zone: &'z SignedZone, encloser: &str) -> Option<(&'z Name, &'z RawSet)> {
    fn labels(s: &str) -> impl Iterator<Item = &[u8]> {
        s.split('.').filter(|l| !l.is_empty()).rev().map(str::as_bytes)
    }
    fn cmp(n: &str, encloser: &str) -> Ordering {
        labels(n).cmp(labels(encloser).chain(std::iter::once(&b"*"[..])))
    }
    let i = match zone.nsec.binary_search_by(|(n, _)| cmp(n.as_str(), encloser)) {
        Ok(i) => i,
        Err(0) => zone.nsec.len().checked_sub(1)?,
        Err(i) => i - 1,
    };
    zone.nsec.get(i).map(|(n, s)| (n, s))
}

/// Writes `addrs` (at most [`MAX_QUICK_ADDRESSES`] of them, else `None`), sorted, one after
/// another into `key`; returns the bytes written.
fn sorted_into<const N: usize>(addrs: impl Iterator<Item = [u8; N]>, key: &mut [u8]) -> Option<usize> {
    let mut sorted = [[0u8; N]; MAX_QUICK_ADDRESSES];
    let mut n = 0;
    for a in addrs {
        *sorted.get_mut(n)? = a;
        n += 1;
    }
    sorted[..n].sort_unstable();
    for (i, a) in sorted[..n].iter().enumerate() {
        key[i * N..(i + 1) * N].copy_from_slice(a);
    }
    Some(n * N)
}

#[cfg(test)]
mod tests {
    use super::parent;

    #[test]
    fn parents_are_found_as_name_parent_finds_them() {
        for name in ["a.b.example.", "example.", ".", "x.y."] {
            let want = crate::model::Name::from_canonical(name).parent().map(|p| p.as_str().to_owned());
            assert_eq!(parent(name).map(str::to_owned), want, "{name}");
        }
    }
}
