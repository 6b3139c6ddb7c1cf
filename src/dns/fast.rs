//! The fast path: answers a [`FastQuery`] from the routing table and writes the response bytes
//! directly (question copied from the query, names compressed against it), without hickory's
//! message types. Everything it cannot answer goes to the full handler.

use std::net::IpAddr;

use hickory_proto::rr::rdata::opt::ClientSubnet;

use super::ecs::Ecs;
use super::handler::MAX_UDP_PAYLOAD;
use super::query::FastQuery;
use crate::model::{Name, RData, RType};
use crate::routing::{Answer, Query, QuickGeo, QuickNegative, Rcode, RoutingTable};

/// What the fast path did with a query.
#[derive(Debug)]
pub enum Fast {
    /// `out` holds the response.
    Answered(Answered),
    /// The full handler must answer (malformed ECS gets its FORMERR there).
    Slow,
}

#[derive(Debug)]
pub struct Answered {
    pub rcode: Rcode,
    pub ecs: bool,
    pub scope: u8,
    /// For a geo answer: the answer counter of the name and the (first) site its addresses
    /// came from ([`RoutingTable::answer_series`]).
    pub answers: Option<u32>,
}

/// Answers `q` from `table` into `out` (cleared first), for a client at `src` over UDP.
pub fn answer(table: &RoutingTable, q: &FastQuery<'_>, src: IpAddr, out: &mut Vec<u8>) -> Fast {
    answer_with(table, q, src, out, true)
}

/// [`answer`]; with `quick` false, every query goes through [`RoutingTable::resolve`] (tests
/// check that both give the same bytes).
fn answer_with(table: &RoutingTable, q: &FastQuery<'_>, src: IpAddr, out: &mut Vec<u8>, quick: bool) -> Fast {
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
    if quick
        && let Some(g) = table.quick_geo(q.name, rtype, client, ecs_source)
        && encode_quick(q, &g, rtype, ecs.as_ref(), limit, out)
    {
        let answered =
            Answered { rcode: Rcode::NoError, ecs: ecs.is_some(), scope: g.scope, answers: Some(g.site.answers) };
        return Fast::Answered(answered);
    }
    if quick
        && let Some(negative) = table.quick_negative(q.name, rtype)
        && encode_negative(q, &negative, ecs.as_ref(), limit, out)
    {
        let rcode = if negative.nxdomain { Rcode::NxDomain } else { Rcode::NoError };
        return Fast::Answered(Answered { rcode, ecs: ecs.is_some(), scope: 0, answers: None });
    }
    let name = Name::from_canonical(q.name);
    let answer = table.resolve(&Query { name: &name, rtype, client, ecs_source });
    encode(q, &name, &answer, ecs.as_ref(), limit, out);
    let answers = answer.decision.as_ref().and_then(|d| table.answer_index(&d.name, *d.answered_from.first()?));
    Fast::Answered(Answered { rcode: answer.rcode, ecs: ecs.is_some(), scope: answer.scope, answers })
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

/// Writes a [`QuickNegative`]: the zone's SOA alone, in the answer section for an apex SOA
/// query, else in the authority section. False when it would not fit in `limit`.
fn encode_negative(
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
    fn record(&self, owner: &str, ttl: u32, data: &RData, out: &mut Vec<u8>) -> bool {
        self.name(owner, out);
        let rtype = data.rtype().code();
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        let len_at = out.len();
        out.extend_from_slice(&[0, 0]);
        match data {
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::geoip::GeoIpDb;
    use crate::routing::{Built, Inputs, RankTable, RankTables, build_with};

    fn example(inputs: &Inputs) -> Built {
        let config = crate::config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml")).unwrap();
        let db: Arc<GeoIpDb> = Arc::new(GeoIpDb::open(config.geoip.as_ref().unwrap()).unwrap());
        let ranks = RankTables::new();
        let built = build_with(&config, db.clone(), Some(&ranks), None, Arc::new(inputs.clone()), 1);
        for slot in ranks.pending() {
            slot.fill(RankTable::build(&*db, &slot.sites()));
        }
        built
    }

    /// A query with EDNS (payload `size`) and, when given, an ECS option for `subnet`.
    fn query(name: &str, qtype: u16, size: Option<u16>, subnet: Option<(IpAddr, u8)>) -> Vec<u8> {
        let mut m = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(size.is_some())];
        for l in name.split('.').filter(|l| !l.is_empty()) {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        if let Some(size) = size {
            let mut opt = Vec::new();
            if let Some((addr, prefix)) = subnet {
                let octets = usize::from(prefix).div_ceil(8);
                let (family, bytes) = match addr {
                    IpAddr::V4(a) => (1u16, a.octets().to_vec()),
                    IpAddr::V6(a) => (2u16, a.octets().to_vec()),
                };
                opt.extend_from_slice(&8u16.to_be_bytes());
                opt.extend_from_slice(&((4 + octets) as u16).to_be_bytes());
                opt.extend_from_slice(&family.to_be_bytes());
                opt.extend_from_slice(&[prefix, 0]);
                opt.extend_from_slice(&bytes[..octets]);
            }
            m.extend_from_slice(&[0, 0, 41]);
            m.extend_from_slice(&size.to_be_bytes());
            m.extend_from_slice(&[0, 0, 0, 0]);
            m.extend_from_slice(&(opt.len() as u16).to_be_bytes());
            m.extend_from_slice(&opt);
        }
        m
    }

    /// Every quick answer is byte for byte the answer `resolve` and the full encoder give.
    #[test]
    fn quick_answers_are_the_resolved_answers() {
        let subnets: Vec<Option<(IpAddr, u8)>> = vec![
            None,
            Some(("81.2.69.0".parse().unwrap(), 24)),
            Some(("103.6.148.0".parse().unwrap(), 22)),
            Some(("5.9.0.0".parse().unwrap(), 16)),
            Some(("10.42.7.0".parse().unwrap(), 24)),
            Some(("192.168.1.0".parse().unwrap(), 24)),
            Some(("8.8.8.8".parse().unwrap(), 32)),
            Some(("2a01:4f8::".parse().unwrap(), 32)),
            Some(("0.0.0.0".parse().unwrap(), 0)),
        ];
        let names = [
            ("app.geo.example.", 1),
            ("APP.Geo.example.", 28),
            ("app.geo.example.", 255),
            ("app.geo.example.", 16),
            ("nope.geo.example.", 1),
            ("deep.nope.geo.example.", 28),
            ("ent.geo.example.", 1),
            ("geo.example.", 6),
            ("Geo.Example.", 2),
            ("static.geo.example.", 1),
            ("www.geo.example.", 1),
            ("other.example.", 1),
        ];
        let (mut quick, mut total) = (0, 0);
        for inputs in [Inputs::default(), Inputs { sites_down: [0, 1, 2].into(), ..Inputs::default() }] {
            let table = example(&inputs);
            for (name, qtype) in names {
                for subnet in &subnets {
                    for size in [None, Some(1232), Some(512)] {
                        let subnet = if size.is_some() { *subnet } else { None };
                        let packet = query(name, qtype, size, subnet);
                        let mut text = crate::dns::query::NameBuf::new();
                        let q = crate::dns::query::parse(&packet, &mut text).unwrap();
                        for src in ["127.0.0.1", "81.2.69.1", "::1"] {
                            let src: IpAddr = src.parse().unwrap();
                            let (mut a, mut b) = (Vec::new(), Vec::new());
                            let fa = answer_with(&table, &q, src, &mut a, true);
                            let fb = answer_with(&table, &q, src, &mut b, false);
                            assert!(matches!((&fa, &fb), (Fast::Answered(_), Fast::Answered(_))));
                            assert_eq!(a, b, "{name} {qtype} {subnet:?} {size:?} from {src}");
                            total += 1;
                            let client = subnet.filter(|s| s.1 > 0).map_or(src, |s| s.0);
                            let rtype = RType::from_code(qtype);
                            let ecs_source = subnet.map(|s| s.1);
                            if table.quick_geo(q.name, rtype, client, ecs_source).is_some()
                                || table.quick_negative(q.name, rtype).is_some()
                            {
                                quick += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(quick * 3 > total, "the quick paths are taken ({quick} of {total})");
    }
}
