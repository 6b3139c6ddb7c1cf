//! The responses written without hickory: the fast path's answers and the header-only
//! FORMERR. Nothing here allocates: a response is written into a buffer the caller keeps (one
//! per batch slot in the UDP loop), its question copied from the query (the name's case
//! preserved), every other name compressed against the question name (the only name each
//! response holds at a known place, offset 12), and the counts patched in last.

use std::net::IpAddr;

use super::ecs::Ecs;
use super::query::FastQuery;
use super::{rcode, wire};
use crate::model::{Name, RData, RType};
use crate::routing::{Answer, QuickGeo, QuickNegative, Rcode};

/// The largest UDP response we send, whatever the client offers (DNS flag day 2020): it fits
/// any path of MTU 1,280, so an answer is never fragmented.
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// Writes the header (counts zero, patched by the caller) and the question.
pub(super) fn header(q: &FastQuery<'_>, rcode: Rcode, out: &mut Vec<u8>) {
    out.clear();
    let authoritative = rcode != Rcode::Refused;
    out.extend_from_slice(&q.id.to_be_bytes());
    // QR, opcode 0, AA, RD copied; RA and AD clear, CD copied (as the full path's hickory does).
    out.push(0x80 | if authoritative { 0x04 } else { 0 } | (q.flags[0] & 0x01));
    out.push(rcode::wire(rcode) | (q.flags[1] & 0x10));
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(q.question);
}

/// Length of the OPT record [`opt`] writes.
pub(super) fn opt_len(q: &FastQuery<'_>, ecs: Option<&Ecs>) -> usize {
    q.edns.map_or(0, |_| 11 + ecs.map_or(0, |e| 8 + e_octets(e)))
}

/// Writes the OPT record when the query had one (echoing ECS, unless the answer is REFUSED);
/// returns how many records it wrote.
pub(super) fn opt(q: &FastQuery<'_>, ecs: Option<&Ecs>, rcode: Rcode, scope: u8, out: &mut Vec<u8>) -> u16 {
    let Some(edns) = q.edns else { return 0 };
    out.push(0);
    out.extend_from_slice(&41u16.to_be_bytes());
    out.extend_from_slice(&edns.udp_size.clamp(512, MAX_UDP_PAYLOAD).to_be_bytes());
    out.extend_from_slice(&[0, 0, if edns.dnssec_ok { 0x80 } else { 0 }, 0]);
    match ecs.filter(|_| rcode != Rcode::Refused) {
        Some(e) => {
            let octets = e_octets(e);
            out.extend_from_slice(&((8 + octets) as u16).to_be_bytes());
            out.extend_from_slice(&8u16.to_be_bytes());
            out.extend_from_slice(&((4 + octets) as u16).to_be_bytes());
            out.extend_from_slice(&(if e.address.is_ipv4() { 1u16 } else { 2 }).to_be_bytes());
            out.push(e.source_prefix);
            out.push(scope);
            match e.address {
                IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()[..octets]),
                IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()[..octets]),
            }
        }
        None => out.extend_from_slice(&[0, 0]),
    }
    1
}

pub(super) fn set_counts(out: &mut [u8], counts: [u16; 3]) {
    out[6..8].copy_from_slice(&counts[0].to_be_bytes());
    out[8..10].copy_from_slice(&counts[1].to_be_bytes());
    out[10..12].copy_from_slice(&counts[2].to_be_bytes());
}

/// Writes a [`QuickGeo`] answer: the answered sites' addresses in order (at most the name's
/// `max_answers`), owned by the question name (a pointer to offset 12). False (with `out`
/// unspecified) when it would not fit in `limit`: the full encoder then truncates.
#[inline]
pub fn encode_quick(
    q: &FastQuery<'_>,
    g: &QuickGeo<'_>,
    rtype: RType,
    ecs: Option<&Ecs>,
    limit: usize,
    out: &mut Vec<u8>,
) -> bool {
    let (count, size) = quick_size(g, rtype);
    if 12 + q.question.len() + count * size + opt_len(q, ecs) > limit {
        return false;
    }
    header(q, Rcode::NoError, out);
    quick_records(g, rtype, out);
    let additional = opt(q, ecs, Rcode::NoError, g.scope, out);
    set_counts(out, [count as u16, 0, additional]);
    true
}

/// How many addresses a [`QuickGeo`] answer of `rtype` holds, and the size of each record.
#[inline]
pub(super) fn quick_size(g: &QuickGeo<'_>, rtype: RType) -> (usize, usize) {
    let aaaa = rtype == RType::Aaaa;
    let count = g.sites().map(|s| if aaaa { s.v6.len() } else { s.v4.len() }).sum::<usize>().min(g.limit);
    (count, if aaaa { 12 + 16 } else { 12 + 4 })
}

/// Writes the address records of a [`QuickGeo`] answer, owned by the question name.
#[inline]
pub(super) fn quick_records(g: &QuickGeo<'_>, rtype: RType, out: &mut Vec<u8>) {
    let aaaa = rtype == RType::Aaaa;
    let rdlen: u16 = if aaaa { 16 } else { 4 };
    let fixed = |out: &mut Vec<u8>| {
        out.extend_from_slice(&[0xc0, 12]);
        out.extend_from_slice(&rtype.code().to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&g.route.ttl.to_be_bytes());
        out.extend_from_slice(&rdlen.to_be_bytes());
    };
    if aaaa {
        for a in g.v6() {
            fixed(out);
            out.extend_from_slice(&a.octets());
        }
    } else {
        for a in g.v4() {
            fixed(out);
            out.extend_from_slice(&a.octets());
        }
    }
}

/// Writes a [`QuickNegative`]: the zone's SOA alone, in the answer section for an apex SOA
/// query, else in the authority section. False when it would not fit in `limit`.
#[inline]
pub fn encode_negative(
    q: &FastQuery<'_>,
    n: &QuickNegative<'_>,
    ecs: Option<&Ecs>,
    limit: usize,
    out: &mut Vec<u8>,
) -> bool {
    header(q, if n.nxdomain { Rcode::NxDomain } else { Rcode::NoError }, out);
    let w = Writer { qname: q.name, question: q.question };
    w.record(n.apex.as_str(), n.ttl, n.soa, out);
    if out.len() + opt_len(q, ecs) > limit {
        return false;
    }
    let additional = opt(q, ecs, Rcode::NoError, 0, out);
    let counts = if n.answer { [1, 0, additional] } else { [0, 1, additional] };
    set_counts(out, counts);
    true
}

/// Writes the whole response; truncates (TC, no records) when it exceeds `limit`.
pub fn encode(q: &FastQuery<'_>, qname: &Name, a: &Answer, ecs: Option<&Ecs>, limit: usize, out: &mut Vec<u8>) {
    header(q, a.rcode, out);
    let header_end = out.len();
    let w = Writer { qname: qname.as_str(), question: q.question };
    let mut counts = [0u16; 3];
    for (i, section) in [&a.answers, &a.authority, &a.additional].into_iter().enumerate() {
        for r in section.iter() {
            if w.record(r.owner.as_str(), r.ttl, &r.data, out) {
                counts[i] += 1;
            }
        }
    }
    if out.len() + opt_len(q, ecs) > limit {
        out.truncate(header_end);
        counts = [0; 3];
        out[2] |= 0x02; // TC
    }
    counts[2] += opt(q, ecs, a.rcode, a.scope, out);
    set_counts(out, counts);
}

fn e_octets(e: &Ecs) -> usize {
    wire::ecs_address_octets(e.source_prefix)
}

/// Writes records, compressing names against the question name (the only name every response
/// carries at a known place: offset 12).
pub(super) struct Writer<'a> {
    /// The question name, canonical text.
    pub qname: &'a str,
    pub question: &'a [u8],
}

impl Writer<'_> {
    /// Writes `name`; returns nothing. Uses a pointer to the question for the longest suffix of
    /// `name` that is a suffix of the question name.
    fn name(&self, name: &str, out: &mut Vec<u8>) {
        let mut rest = name;
        loop {
            if rest == "." || rest.is_empty() {
                out.push(0);
                return;
            }
            if let Some(offset) = self.suffix_offset(rest) {
                let ptr = 0xc000 | (12 + offset) as u16;
                out.extend_from_slice(&ptr.to_be_bytes());
                return;
            }
            let (label, tail) = rest.split_once('.').unwrap_or((rest, "."));
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
            rest = if tail.is_empty() { "." } else { tail };
        }
    }

    /// Offset within the question of `suffix` (canonical text), when the question name ends
    /// with it at a label boundary.
    fn suffix_offset(&self, suffix: &str) -> Option<usize> {
        if !self.qname.ends_with(suffix) {
            return None;
        }
        let skip = self.qname.len() - suffix.len();
        if skip > 0 && self.qname.as_bytes()[skip - 1] != b'.' {
            return None;
        }
        // Walk the question's wire labels until `skip` characters of text are consumed.
        let (mut text, mut wire) = (0, 0);
        while text < skip {
            let len = *self.question.get(wire)? as usize;
            text += len + 1;
            wire += len + 1;
        }
        (text == skip).then_some(wire)
    }

    /// Writes one record whose data is given in wire form (with no compressible names).
    pub(super) fn raw(&self, owner: &str, rtype: u16, ttl: u32, data: &[u8], out: &mut Vec<u8>) {
        self.name(owner, out);
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
    }

    /// Writes one record; false when its data cannot be written (nothing is written then).
    pub(super) fn record(&self, owner: &str, ttl: u32, data: &RData, out: &mut Vec<u8>) -> bool {
        self.name(owner, out);
        let rtype = data.rtype().code();
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        let len_at = out.len();
        out.extend_from_slice(&[0, 0]);
        data.write(out, |name, out| self.name(name, out));
        let rdlen = (out.len() - len_at - 2) as u16;
        out[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
        true
    }
}

/// FORMERR for a message whose header can be read but whose body cannot be decoded: the
/// header alone, with the ID, opcode, RD and CD mirrored and no question (the question may be
/// what is malformed). `None` for responses (QR=1) and for anything shorter than a header.
pub fn formerr(packet: &[u8]) -> Option<Vec<u8>> {
    if packet.len() < 12 || packet[2] & 0x80 != 0 {
        return None;
    }
    let mut out = vec![0; 12];
    out[..2].copy_from_slice(&packet[..2]);
    out[2] = 0x80 | (packet[2] & 0x79); // QR, the opcode, RD
    out[3] = (packet[3] & 0x10) | 1; // CD, FORMERR
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::test_query::TestQuery;

    #[test]
    fn formerr_mirrors_the_id_opcode_rd_and_cd_and_drops_responses() {
        // ID 0xabcd, opcode 2 (STATUS), RD, AD and CD; one question promised, none there.
        let mut q = TestQuery::header(0xabcd).flags(0x1130).questions(1).bytes();
        q.push(0xff);
        let r = super::formerr(&q).unwrap();
        assert_eq!(r, [0xab, 0xcd, 0x91, 0x11, 0, 0, 0, 0, 0, 0, 0, 0]);
        q[2] |= 0x80;
        assert!(super::formerr(&q).is_none());
        assert!(super::formerr(&q[..5]).is_none());
        // ID 0xbeef, opcode 2 (STATUS), RD, AD; 1 question (what TCP answers FORMERR).
        let request = [0xbe, 0xef, 0x11, 0x20, 0, 1, 0, 0, 0, 0, 0, 0];
        assert_eq!(super::formerr(&request).unwrap(), [0xbe, 0xef, 0x91, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
}
