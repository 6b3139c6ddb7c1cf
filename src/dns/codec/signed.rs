//! Responses of signed zones: records as the routing table answers them, each RRset followed by
//! its RRSIGs when the query set DO, and the NSEC proofs of negative answers, every DNSSEC
//! record copied from the signatures made when the table was built (nothing is signed here).

use super::ecs::Ecs;
use super::query::FastQuery;
use super::response::{Writer, header, opt, opt_len, set_counts};
use crate::model::RData;
use crate::routing::Rcode;

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
