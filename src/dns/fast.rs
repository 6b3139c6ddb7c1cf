//! The fast path: answers a [`FastQuery`] from the routing table and writes the response bytes
//! directly (question copied from the query, names compressed against it), without hickory's
//! message types. Everything it cannot answer goes to the full handler.

use std::net::IpAddr;

use hickory_proto::rr::rdata::opt::ClientSubnet;

use super::ecs::Ecs;
use super::handler::MAX_UDP_PAYLOAD;
use super::query::FastQuery;
use crate::model::{Name, RData, RType, SiteId};
use crate::routing::{Answer, Query, QuickGeo, Rcode, Rec, RoutingTable};

/// What the fast path did with a query.
#[derive(Debug)]
pub enum Fast<'t> {
    /// `out` holds the response.
    Answered(Answered<'t>),
    /// The full handler must answer (malformed ECS gets its FORMERR there).
    Slow,
}

#[derive(Debug)]
pub struct Answered<'t> {
    pub rcode: Rcode,
    pub ecs: bool,
    pub scope: u8,
    /// For a geo answer: the name and the (first) site its addresses came from.
    pub geo: Option<(&'t Name, SiteId)>,
}

/// Answers `q` from `table` into `out` (cleared first), for a client at `src` over UDP.
pub fn answer<'t>(table: &'t RoutingTable, q: &FastQuery<'_>, src: IpAddr, out: &mut Vec<u8>) -> Fast<'t> {
    let ecs = match q.edns.and_then(|e| e.ecs) {
        Some(opt) => {
            let cs = ClientSubnet::new(opt.address, opt.source_prefix, opt.scope_prefix);
            match Ecs::from_option(&cs, Some(4 + opt.address_octets)) {
                Ok(e) => Some(e),
                Err(_) => return Fast::Slow,
            }
        }
        None => None,
    };
    let rtype = RType::from_code(q.qtype);
    let client = Ecs::client(ecs.as_ref(), src);
    let ecs_source = ecs.map(|e| e.source_prefix);
    let limit = match q.edns {
        Some(e) => e.udp_size.clamp(512, MAX_UDP_PAYLOAD),
        None => 512,
    } as usize;
    if let Some(g) = table.quick_geo(q.name.as_str(), rtype, client, ecs_source)
        && encode_quick(q, &g, rtype, ecs.as_ref(), limit, out)
    {
        let geo = Some((&g.route.name, g.site.site));
        return Fast::Answered(Answered { rcode: Rcode::NoError, ecs: ecs.is_some(), scope: g.scope, geo });
    }
    let name = Name::from_canonical(q.name.as_str());
    let answer = table.resolve(&Query { name: &name, rtype, client, ecs_source });
    encode(q, &name, &answer, ecs.as_ref(), limit, out);
    let geo = answer.decision.as_ref().and_then(|d| Some((&table.geo_route(&d.name)?.name, *d.answered_from.first()?)));
    Fast::Answered(Answered { rcode: answer.rcode, ecs: ecs.is_some(), scope: answer.scope, geo })
}

fn rcode_value(r: Rcode) -> u8 {
    match r {
        Rcode::NoError => 0,
        Rcode::ServFail => 2,
        Rcode::NxDomain => 3,
        Rcode::Refused => 5,
    }
}

/// Writes the header (counts zero, patched by the caller) and the question.
fn header(q: &FastQuery<'_>, rcode: Rcode, out: &mut Vec<u8>) {
    out.clear();
    let authoritative = rcode != Rcode::Refused;
    out.extend_from_slice(&q.id.to_be_bytes());
    // QR, opcode 0, AA, RD copied; RA clear, CD copied.
    out.push(0x80 | if authoritative { 0x04 } else { 0 } | (q.flags & 0x01));
    out.push(rcode_value(rcode));
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(q.question);
}

/// Length of the OPT record [`opt`] writes.
fn opt_len(q: &FastQuery<'_>, ecs: Option<&Ecs>) -> usize {
    q.edns.map_or(0, |_| 11 + ecs.map_or(0, |e| 8 + e_octets(e)))
}

/// Writes the OPT record when the query had one (echoing ECS, unless the answer is REFUSED);
/// returns how many records it wrote.
fn opt(q: &FastQuery<'_>, ecs: Option<&Ecs>, rcode: Rcode, scope: u8, out: &mut Vec<u8>) -> u16 {
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

fn set_counts(out: &mut [u8], counts: [u16; 3]) {
    out[6..8].copy_from_slice(&counts[0].to_be_bytes());
    out[8..10].copy_from_slice(&counts[1].to_be_bytes());
    out[10..12].copy_from_slice(&counts[2].to_be_bytes());
}

/// Writes a [`QuickGeo`] answer: the site's addresses, owned by the question name (a pointer to
/// offset 12). False (with `out` unspecified) when it would not fit in `limit`: the full
/// encoder then truncates.
fn encode_quick(
    q: &FastQuery<'_>,
    g: &QuickGeo<'_>,
    rtype: RType,
    ecs: Option<&Ecs>,
    limit: usize,
    out: &mut Vec<u8>,
) -> bool {
    let (count, rdlen) = if rtype == RType::Aaaa { (g.site.v6.len(), 16) } else { (g.site.v4.len(), 4) };
    if 12 + q.question.len() + count * (12 + rdlen) + opt_len(q, ecs) > limit {
        return false;
    }
    header(q, Rcode::NoError, out);
    let fixed = |out: &mut Vec<u8>| {
        out.extend_from_slice(&[0xc0, 12]);
        out.extend_from_slice(&rtype.code().to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&g.route.ttl.to_be_bytes());
        out.extend_from_slice(&(rdlen as u16).to_be_bytes());
    };
    if rtype == RType::Aaaa {
        for a in &g.site.v6 {
            fixed(out);
            out.extend_from_slice(&a.octets());
        }
    } else {
        for a in &g.site.v4 {
            fixed(out);
            out.extend_from_slice(&a.octets());
        }
    }
    let additional = opt(q, ecs, Rcode::NoError, g.scope, out);
    set_counts(out, [count as u16, 0, additional]);
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
            if w.record(r, out) {
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
    super::wire::ecs_address_octets(e.source_prefix)
}

/// Writes records, compressing names against the question name (the only name every response
/// carries at a known place: offset 12).
struct Writer<'a> {
    /// The question name, canonical text.
    qname: &'a str,
    question: &'a [u8],
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

    /// Writes one record; false when its data cannot be written (nothing is written then).
    fn record(&self, r: &Rec, out: &mut Vec<u8>) -> bool {
        self.name(r.owner.as_str(), out);
        let rtype = r.data.rtype().code();
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&r.ttl.to_be_bytes());
        let len_at = out.len();
        out.extend_from_slice(&[0, 0]);
        match &r.data {
            RData::A(a) => out.extend_from_slice(&a.octets()),
            RData::Aaaa(a) => out.extend_from_slice(&a.octets()),
            RData::Cname(n) | RData::Ns(n) => self.name(n.as_str(), out),
            RData::Soa(s) => {
                self.name(s.mname.as_str(), out);
                self.name(s.rname.as_str(), out);
                for v in [s.serial, s.refresh, s.retry, s.expire, s.minimum] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
            }
            RData::Txt(t) => {
                let mut bytes = t.as_bytes();
                loop {
                    let n = bytes.len().min(255);
                    out.push(n as u8);
                    out.extend_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    if bytes.is_empty() {
                        break;
                    }
                }
            }
            RData::Mx(m) => {
                out.extend_from_slice(&m.preference.to_be_bytes());
                self.name(m.exchange.as_str(), out);
            }
            RData::Srv(s) => {
                for v in [s.priority, s.weight, s.port] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                // RFC 2782: the target is not compressed.
                plain_name(s.target.as_str(), out);
            }
            RData::Caa(c) => {
                out.push(if c.critical { 0x80 } else { 0 });
                out.push(c.tag.len() as u8);
                out.extend_from_slice(c.tag.as_bytes());
                out.extend_from_slice(c.value.as_bytes());
            }
        }
        let rdlen = (out.len() - len_at - 2) as u16;
        out[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
        true
    }
}

fn plain_name(name: &str, out: &mut Vec<u8>) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}
