//! Answers in signed zones: what [`answer`](super::answer) hands over for a name in a zone the
//! table holds signatures for, when the query set DO (every RRset with its RRSIGs, negative
//! answers with their NSEC proofs), or asks for a type only signing creates (DNSKEY, CDS,
//! CDNSKEY at the apex, NSEC). The records are the routing table's answer, as the unsigned
//! path gives them; the DNSSEC records are copied from the signatures made with the table.
//! No query is ever signed here.
//!
//! [`quick_answer`] answers the common DO queries (geo answers, static RRsets, NXDOMAIN, NODATA at an empty
//! non-terminal, the apex SOA) from what the unsigned quick paths find and the signatures'
//! quick index, without allocating; [`signed_answer`] answers any other from the routing
//! table's general answer, and is the reference the quick answers are tested against.

use std::net::IpAddr;

use super::Answered;
use crate::dns::codec::ecs::Ecs;
use crate::dns::codec::query::FastQuery;
use crate::dns::codec::signed::{Item, encode, encode_quick_geo, encode_quick_negative, encode_quick_static};
use crate::model::{Name, RData, RType};
use crate::routing::{Answer, RawSet, Rcode, Rec, RoutingTable, Signed, SignedZone};

const RRSIG: u16 = 46;
const NSEC: u16 = 47;

/// The types answered from the signatures alone.
pub fn signing_type(qtype: u16) -> bool {
    matches!(qtype, 47 | 48 | 59 | 60)
}

/// Answers a query for a type only signing creates, when the zone has it at that name:
/// DNSKEY, CDS, CDNSKEY at the apex; NSEC at any name. `None` otherwise.
pub fn signing_answer(
    zone: &SignedZone,
    q: &FastQuery<'_>,
    dnssec_ok: bool,
    ecs: Option<&Ecs>,
    limit: usize,
    out: &mut Vec<u8>,
) -> bool {
    let set = match q.qtype {
        NSEC => zone.nsec_at(q.name).map(|(_, set)| set),
        t if q.name == zone.apex.as_str() => zone.apex_set(t),
        _ => None,
    };
    let Some(set) = set else { return false };
    let mut items = Vec::new();
    raw_set(q.name, set, set.ttl, dnssec_ok, &mut items);
    encode(q, Rcode::NoError, [&items, &[], &[]], ecs, 0, limit, out);
    true
}

/// Answers a DO query in a signed zone by the quick paths, as [`signed_answer`] would answer
/// it: a geo answer with its set's RRSIGs; a static RRset with its RRSIGs; NXDOMAIN and NODATA at an empty non-terminal with
/// the SOA, its RRSIGs and the NSEC proof; the apex SOA with its RRSIGs. `None` (with `out`
/// unspecified) for anything else, and for what would not fit in `limit`.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn quick_answer(
    table: &RoutingTable,
    q: &FastQuery<'_>,
    rtype: RType,
    client: IpAddr,
    ecs_source: Option<u8>,
    ecs: Option<&Ecs>,
    limit: usize,
    out: &mut Vec<u8>,
) -> Option<Answered> {
    let zone = table.quick_signed(q.name)?;
    if let Some(g) = table.quick_geo(q.name, rtype, client, ecs_source) {
        let sigs = zone.geo_sigs(&g, rtype)?;
        return encode_quick_geo(q, &g, rtype, sigs, ecs, limit, out).then(|| Answered {
            rcode: Rcode::NoError,
            ecs: ecs.is_some(),
            scope: g.scope,
            answers: Some(g.first().answers),
        });
    }
    if let Some(s) = table.quick_static(q.name, rtype) {
        let sigs = zone.fixed_sigs(q.name, rtype)?;
        return encode_quick_static(q, &s, sigs, ecs, limit, out).then(|| Answered {
            rcode: Rcode::NoError,
            ecs: ecs.is_some(),
            scope: 0,
            answers: None,
        });
    }
    let negative = table.quick_negative(q.name, rtype).filter(|n| *n.apex == zone.zone.apex)?;
    let proof = if negative.answer { Default::default() } else { zone.proof(q.name, negative.nxdomain) };
    if !encode_quick_negative(q, &negative, zone.soa_sigs()?, &proof, ecs, limit, out) {
        return None;
    }
    let rcode = if negative.nxdomain { Rcode::NxDomain } else { Rcode::NoError };
    Some(Answered { rcode, ecs: ecs.is_some(), scope: 0, answers: None })
}

/// Writes `answer` (the routing table's answer to `q`, a DO query) with the RRSIGs of its
/// RRsets and, for NXDOMAIN and NODATA, the NSEC records that prove it.
pub fn signed_answer(
    signed: &Signed,
    q: &FastQuery<'_>,
    answer: &Answer,
    ecs: Option<&Ecs>,
    limit: usize,
    out: &mut Vec<u8>,
) {
    let mut sections: [Vec<Item<'_>>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for (i, recs) in [&answer.answers, &answer.authority, &answer.additional].into_iter().enumerate() {
        with_rrsigs(signed, recs, &mut sections[i]);
    }
    let negative = answer.rcode == Rcode::NxDomain
        || (answer.rcode == Rcode::NoError && answer.authority.iter().any(|r| matches!(r.data, RData::Soa(_))));
    if negative {
        // The name the negative answer is about: the end of a CNAME chain, or the question.
        let name = match answer.answers.last() {
            Some(Rec { data: RData::Cname(target), .. }) => target.as_str(),
            _ => q.name,
        };
        if let Some(zone) = signed.zone(name) {
            proof(zone, name, answer.rcode == Rcode::NxDomain, &mut sections[1]);
        }
    }
    let [a, b, c] = &sections;
    encode(q, answer.rcode, [a, b, c], ecs, answer.scope, limit, out);
}

/// Appends `recs`, each RRset (a run of one owner and type) followed by its RRSIGs.
fn with_rrsigs<'a>(signed: &'a Signed, recs: &'a [Rec], out: &mut Vec<Item<'a>>) {
    let mut start = 0;
    while start < recs.len() {
        let (owner, rtype) = (&recs[start].owner, recs[start].data.rtype());
        let len = recs[start..].iter().take_while(|r| r.owner == *owner && r.data.rtype() == rtype).count();
        let set = &recs[start..start + len];
        for r in set {
            out.push(Item::Record { owner: r.owner.as_str(), ttl: r.ttl, data: &r.data });
        }
        let sigs = signed.zone(owner.as_str()).and_then(|z| z.sigs(owner, rtype.code(), set.iter().map(|r| &r.data)));
        if let Some(sigs) = sigs {
            // The TTL served, never above the one signed.
            let ttl = set[0].ttl.min(sigs.original_ttl);
            for rrsig in &sigs.rrsigs {
                out.push(Item::Raw { owner: owner.as_str(), rtype: RRSIG, ttl, data: rrsig });
            }
        }
        start += len;
    }
}

/// Appends `set` at `owner`, with its RRSIGs when `dnssec_ok`.
fn raw_set<'a>(owner: &'a str, set: &'a RawSet, ttl: u32, dnssec_ok: bool, out: &mut Vec<Item<'a>>) {
    for data in &set.rdata {
        out.push(Item::Raw { owner, rtype: set.rtype, ttl, data });
    }
    if dnssec_ok {
        for rrsig in &set.sigs.rrsigs {
            out.push(Item::Raw { owner, rtype: RRSIG, ttl, data: rrsig });
        }
    }
}

/// The NSEC records (with RRSIGs) that prove `name` does not exist (NXDOMAIN: the record
/// covering it, and the one covering the wildcard at its closest encloser), or holds no
/// RRset of the type asked (NODATA: its own NSEC, whose type bitmap leaves the type out).
fn proof<'a>(zone: &'a SignedZone, name: &str, nxdomain: bool, out: &mut Vec<Item<'a>>) {
    if !nxdomain && let Some((owner, set)) = zone.nsec_at(name) {
        raw_set(owner.as_str(), set, set.ttl, true, out);
        return;
    }
    let mut owners: Vec<&Name> = Vec::with_capacity(2);
    if let Some((owner, _)) = zone.nsec_covering(name) {
        owners.push(owner);
    }
    // The closest encloser: the nearest ancestor that exists (the apex at worst).
    let mut encloser = Name::from_canonical(name);
    while let Some(parent) = encloser.parent() {
        encloser = parent;
        if zone.nsec_at(encloser.as_str()).is_some() || encloser == zone.apex {
            break;
        }
    }
    let wildcard = format!("*.{}", encloser.as_str());
    if let Some((owner, _)) = zone.nsec_covering(&wildcard)
        && !owners.contains(&owner)
    {
        owners.push(owner);
    }
    for owner in owners {
        let (_, set) = zone.nsec_at(owner.as_str()).expect("an owner of the chain");
        raw_set(owner.as_str(), set, set.ttl, true, out);
    }
}
