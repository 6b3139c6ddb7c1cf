//! Responses of signed zones: records as the routing table answers them, each RRset followed by
//! its RRSIGs when the query set DO, and the NSEC proofs of negative answers, every DNSSEC
//! record copied from the signatures made when the table was built (nothing is signed here).
//! [`encode`] writes any answer, given as items; [`encode_quick_geo`], [`encode_quick_static`] and
//! [`encode_quick_negative`]
//! write the quick answers to DO queries (the unsigned quick answers' records, then the RRSIGs
//! and NSEC proofs found by [`QuickSignedZone`](crate::routing::QuickSignedZone)) without
//! allocating, byte for byte as [`encode`] writes the same answer.

use super::ecs::Ecs;
use super::query::FastQuery;
use super::response::{Writer, header, opt, opt_len, quick_records, quick_size, set_counts};
use crate::model::{RData, RType};
use crate::routing::{Proof, QuickGeo, QuickNegative, QuickStatic, Rcode, Sigs};

const RRSIG: u16 = 46;
const NSEC: u16 = 47;

/// Writes a quick geo answer to a DO query: its address records, then the RRSIGs of the set
/// (`sigs`), at the answer's TTL (never above the one signed). False (with `out` unspecified)
/// when it would not fit in `limit`: the general path then truncates it.
#[inline]
pub fn encode_quick_geo(
    q: &FastQuery<'_>,
    g: &QuickGeo<'_>,
    rtype: RType,
    sigs: &Sigs,
    ecs: Option<&Ecs>,
    limit: usize,
    out: &mut Vec<u8>,
) -> bool {
    let (count, size) = quick_size(g, rtype);
    let rrsigs: usize = sigs.rrsigs.iter().map(|r| 12 + r.len()).sum();
    if 12 + q.question.len() + count * size + rrsigs + opt_len(q, ecs) > limit {
        return false;
    }
    header(q, Rcode::NoError, out);
    quick_records(g, rtype, out);
    let ttl = g.route.ttl.min(sigs.original_ttl);
    for rrsig in &sigs.rrsigs {
        // Owned by the question name: a pointer to offset 12.
        out.extend_from_slice(&[0xc0, 12]);
        out.extend_from_slice(&RRSIG.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(rrsig.len() as u16).to_be_bytes());
        out.extend_from_slice(rrsig);
    }
    let additional = opt(q, ecs, Rcode::NoError, g.scope, out);
    set_counts(out, [(count + sigs.rrsigs.len()) as u16, 0, additional]);
    true
}

/// Writes a static RRset answered to a DO query: its records owned by the question name, then
/// its RRSIGs. False when it would not fit in `limit`.
#[inline]
pub fn encode_quick_static(
    q: &FastQuery<'_>,
    s: &QuickStatic<'_>,
    sigs: &Sigs,
    ecs: Option<&Ecs>,
    limit: usize,
    out: &mut Vec<u8>,
) -> bool {
    header(q, Rcode::NoError, out);
    let w = Writer { qname: q.name, question: q.question };
    for data in s.rdata {
        w.record(q.name, s.ttl, data, out);
    }
    let ttl = s.ttl.min(sigs.original_ttl);
    for rrsig in &sigs.rrsigs {
        w.raw(q.name, RRSIG, ttl, rrsig, out);
    }
    if out.len() + opt_len(q, ecs) > limit {
        return false;
    }
    let additional = opt(q, ecs, Rcode::NoError, 0, out);
    set_counts(out, [(s.rdata.len() + sigs.rrsigs.len()) as u16, 0, additional]);
    true
}

/// Writes a quick negative answer (or the apex SOA) to a DO query: the SOA and its RRSIGs
/// (`soa_sigs`), then for NXDOMAIN and NODATA the NSEC records of `proof`, each with its
/// RRSIGs. False when it would not fit in `limit`.
#[inline]
pub fn encode_quick_negative(
    q: &FastQuery<'_>,
    n: &QuickNegative<'_>,
    soa_sigs: &Sigs,
    proof: &Proof<'_>,
    ecs: Option<&Ecs>,
    limit: usize,
    out: &mut Vec<u8>,
) -> bool {
    let rcode = if n.nxdomain { Rcode::NxDomain } else { Rcode::NoError };
    header(q, rcode, out);
    let w = Writer { qname: q.name, question: q.question };
    let apex = n.apex.as_str();
    w.record(apex, n.ttl, n.soa, out);
    let ttl = n.ttl.min(soa_sigs.original_ttl);
    for rrsig in &soa_sigs.rrsigs {
        w.raw(apex, RRSIG, ttl, rrsig, out);
    }
    let mut count = 1 + soa_sigs.rrsigs.len();
    if !n.answer {
        for (owner, set) in proof.records() {
            for data in &set.rdata {
                w.raw(owner.as_str(), NSEC, set.ttl, data, out);
            }
            for rrsig in &set.sigs.rrsigs {
                w.raw(owner.as_str(), RRSIG, set.ttl, rrsig, out);
            }
            count += set.rdata.len() + set.sigs.rrsigs.len();
        }
    }
    if out.len() + opt_len(q, ecs) > limit {
        return false;
    }
    let additional = opt(q, ecs, rcode, 0, out);
    let count = count as u16;
    set_counts(out, if n.answer { [count, 0, additional] } else { [0, count, additional] });
    true
}

/// One record of a signed response.
pub enum Item<'a> {
    /// A record of the table, at `owner` (canonical text).
    Record { owner: &'a str, ttl: u32, data: &'a RData },
    /// A record given in wire form: DNSKEY, CDS, CDNSKEY, NSEC, RRSIG.
    Raw { owner: &'a str, rtype: u16, ttl: u32, data: &'a [u8] },
}

/// Writes a response of `sections` (answer, authority, additional). Over `limit`, the
/// additional section is left out; still over, the response is truncated (TC, no records).
pub fn encode(
    q: &FastQuery<'_>,
    rcode: Rcode,
    sections: [&[Item<'_>]; 3],
    ecs: Option<&Ecs>,
    scope: u8,
    limit: usize,
    out: &mut Vec<u8>,
) {
    let w = Writer { qname: q.name, question: q.question };
    for with_additional in [true, false] {
        header(q, rcode, out);
        let mut counts = [0u16; 3];
        for (i, section) in sections.iter().enumerate() {
            if i == 2 && !with_additional {
                break;
            }
            for item in section.iter() {
                match item {
                    Item::Record { owner, ttl, data } => {
                        w.record(owner, *ttl, data, out);
                    }
                    Item::Raw { owner, rtype, ttl, data } => w.raw(owner, *rtype, *ttl, data, out),
                }
                counts[i] += 1;
            }
        }
        if out.len() + opt_len(q, ecs) <= limit {
            counts[2] += opt(q, ecs, rcode, scope, out);
            set_counts(out, counts);
            return;
        }
    }
    header(q, rcode, out);
    out[2] |= 0x02; // TC
    let additional = opt(q, ecs, rcode, scope, out);
    set_counts(out, [0, 0, additional]);
}
