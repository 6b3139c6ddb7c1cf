//! The answer to one query: its bytes, as [`codec::query`](super::codec::query) read them, in;
//! an [`Outcome`] out (answered into the caller's buffer / needs the full path / dropped).
//! Every path a query can take calls [`answer`] first: both UDP loops, TCP, the benchmarks and
//! the fuzz target. What it cannot answer goes to [`full`]: hickory's decoder, [`Handler`] and
//! hickory's encoder.
//!
//! What makes the common answer cheap, in the order [`answer`] tries it:
//! - [`RoutingTable::quick_geo`]: a geo name's answer (any `max_answers`, A or AAAA, IPv4 or
//!   IPv6 clients, clients in client networks) from the site ranking precomputed per address
//!   range (no GeoIP tree walk or record decode per query, and the widest correct ECS scope;
//!   most blocks are read from a 1 MiB jump table alone), written by
//!   [`response::encode_quick`] without allocating;
//! - [`RoutingTable::quick_negative`]: NXDOMAIN, NODATA and the apex SOA, written the same way;
//! - else [`RoutingTable::resolve`] and [`response::encode`], still without hickory.
//!
//! In a signed zone, a DO query takes [`signed::quick_answer`] (the same quick lookups, the
//! RRSIGs and NSEC proofs copied from the signatures made with the table), else the general
//! [`signed::signed_answer`] from [`RoutingTable::resolve`].
//!
//! The counts of what was answered go to a [`Metrics`] the calling loop keeps (see there).

pub mod full;
mod handler;
mod metrics;
mod signed;
#[cfg(test)]
mod signed_tests;

use std::net::IpAddr;

use hickory_proto::rr::rdata::opt::ClientSubnet;

use super::codec::ecs::Ecs;
use super::codec::query::{FastQuery, NotFast, Parsed};
use super::codec::response::{self, MAX_UDP_PAYLOAD};
use crate::model::{Name, RType};
use crate::routing::{Query, Rcode, RoutingTable};

pub use handler::Handler;
pub use metrics::Metrics;

/// The transport a query came over: what bounds the response's size, and the metrics' label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// At most the client's EDNS payload size (512 without EDNS), and never more than
    /// [`MAX_UDP_PAYLOAD`]: a larger answer is sent truncated.
    Udp,
    /// At most a DNS message's 65,535 bytes.
    Tcp,
}

impl Transport {
    /// The `transport` label of `geodns_queries_total`.
    pub const fn label(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// What became of a query.
#[derive(Debug)]
pub enum Outcome {
    /// The response is in the caller's buffer.
    Answered(Answered),
    /// The full path must answer ([`full::respond`]): what the codec's reader leaves to
    /// hickory's decoder, and a malformed Client Subnet option (its FORMERR is written there).
    Full,
    /// Nothing is sent: shorter than a header, or a response (QR=1).
    Drop,
}

/// What an answered query counts as ([`Metrics::answered`]).
#[derive(Debug)]
pub struct Answered {
    pub rcode: Rcode,
    pub ecs: bool,
    pub scope: u8,
    /// For a geo answer: the answer counter of the name and the (first) site its addresses
    /// came from ([`RoutingTable::answer_series`]).
    pub answers: Option<u32>,
}

/// Answers `query` from `table` into `out` (cleared first), for a client at `src`.
pub fn answer(
    table: &RoutingTable,
    query: &Parsed<'_>,
    src: IpAddr,
    transport: Transport,
    out: &mut Vec<u8>,
) -> Outcome {
    match query {
        Ok(q) => answer_with(table, q, src, transport, out, true),
        Err(NotFast::Drop) => Outcome::Drop,
        Err(NotFast::Slow) => Outcome::Full,
    }
}

/// [`answer`] for a query the codec read; with `quick` false, every query goes through
/// [`RoutingTable::resolve`] (tests check that both give the same bytes).
fn answer_with(
    table: &RoutingTable,
    q: &FastQuery<'_>,
    src: IpAddr,
    transport: Transport,
    out: &mut Vec<u8>,
    quick: bool,
) -> Outcome {
    let ecs = match q.edns.and_then(|e| e.ecs) {
        Some(opt) => {
            let cs = ClientSubnet::new(opt.address, opt.source_prefix, opt.scope_prefix);
            match Ecs::from_option(&cs, Some(4 + opt.address_octets)) {
                Ok(e) => Some(e),
                Err(_) => return Outcome::Full,
            }
        }
        None => None,
    };
    let rtype = RType::from_code(q.qtype);
    let client = Ecs::client(ecs.as_ref(), src);
    let ecs_source = ecs.map(|e| e.source_prefix);
    let limit = match (transport, q.edns) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, Some(e)) => usize::from(e.udp_size.clamp(512, MAX_UDP_PAYLOAD)),
        (Transport::Udp, None) => 512,
    };
    // Signed zones: DO queries get RRSIGs and NSEC proofs; DNSKEY, CDS, CDNSKEY and NSEC are
    // answered from the signatures. Everything else takes the paths below, as unsigned.
    if let Some(signed) = table.signed()
        && let Some(zone) = signed.zone(q.name)
    {
        let dnssec_ok = q.edns.is_some_and(|e| e.dnssec_ok);
        if signed::signing_type(q.qtype) && signed::signing_answer(zone, q, dnssec_ok, ecs.as_ref(), limit, out) {
            return Outcome::Answered(Answered { rcode: Rcode::NoError, ecs: ecs.is_some(), scope: 0, answers: None });
        }
        if dnssec_ok {
            if quick
                && let Some(answered) =
                    signed::quick_answer(table, q, rtype, client, ecs_source, ecs.as_ref(), limit, out)
            {
                return Outcome::Answered(answered);
            }
            let name = Name::from_canonical(q.name);
            let answer = table.resolve(&Query { name: &name, rtype, client, ecs_source });
            signed::signed_answer(signed, q, &answer, ecs.as_ref(), limit, out);
            let answers = answer.decision.as_ref().and_then(|d| table.answer_index(&d.name, *d.answered_from.first()?));
            return Outcome::Answered(Answered {
                rcode: answer.rcode,
                ecs: ecs.is_some(),
                scope: answer.scope,
                answers,
            });
        }
    }
    if quick
        && let Some(g) = table.quick_geo(q.name, rtype, client, ecs_source)
        && response::encode_quick(q, &g, rtype, ecs.as_ref(), limit, out)
    {
        let answered =
            Answered { rcode: Rcode::NoError, ecs: ecs.is_some(), scope: g.scope, answers: Some(g.first().answers) };
        return Outcome::Answered(answered);
    }
    if quick
        && let Some(negative) = table.quick_negative(q.name, rtype)
        && response::encode_negative(q, &negative, ecs.as_ref(), limit, out)
    {
        let rcode = if negative.nxdomain { Rcode::NxDomain } else { Rcode::NoError };
        return Outcome::Answered(Answered { rcode, ecs: ecs.is_some(), scope: 0, answers: None });
    }
    let name = Name::from_canonical(q.name);
    let answer = table.resolve(&Query { name: &name, rtype, client, ecs_source });
    response::encode(q, &name, &answer, ecs.as_ref(), limit, out);
    let answers = answer.decision.as_ref().and_then(|d| table.answer_index(&d.name, *d.answered_from.first()?));
    Outcome::Answered(Answered { rcode: answer.rcode, ecs: ecs.is_some(), scope: answer.scope, answers })
}

#[cfg(test)]
mod tests {
    use super::super::codec::query::{NameBuf, parse};
    use super::super::codec::test_query::TestQuery;
    use super::super::testing::example_table;
    use super::*;
    use crate::routing::Inputs;

    /// A query with EDNS (payload `size`) and, when given, an ECS option for `subnet`.
    fn query(name: &str, qtype: u16, size: Option<u16>, subnet: Option<(IpAddr, u8)>) -> Vec<u8> {
        let mut q = TestQuery::new(0xbeef, name, qtype).flags(0x0100);
        if let Some(size) = size {
            q = q.edns(size);
            if let Some((addr, prefix)) = subnet {
                q = q.subnet(addr, prefix);
            }
        }
        q.bytes()
    }

    /// Both paths answer with the same header flags: AA, RD and CD as the full handler sets them.
    #[tokio::test]
    async fn the_fast_and_the_full_path_set_the_same_flags() {
        let handler = super::super::testing::example_handler();
        let src: std::net::SocketAddr = "192.0.2.1:5353".parse().unwrap();
        for flags in [0x0000, 0x0100, 0x0010, 0x0110] {
            for name in ["app.geo.example.", "nope.geo.example.", "static.geo.example."] {
                let packet = TestQuery::new(7, name, 1).flags(flags).bytes();
                let mut text = NameBuf::new();
                let mut fast = Vec::new();
                let outcome = answer(&handler.table(), &parse(&packet, &mut text), src.ip(), Transport::Udp, &mut fast);
                assert!(matches!(outcome, Outcome::Answered(_)));
                let full = full::respond(&handler, &packet, src, Transport::Udp).await.unwrap();
                assert_eq!((fast[2], fast[3]), (full[2], full[3]), "{name} with flags {flags:#06x}");
            }
        }
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
            let table = example_table(&inputs);
            for (name, qtype) in names {
                for subnet in &subnets {
                    for size in [None, Some(1232), Some(512)] {
                        let subnet = if size.is_some() { *subnet } else { None };
                        let packet = query(name, qtype, size, subnet);
                        let mut text = NameBuf::new();
                        let q = parse(&packet, &mut text).unwrap();
                        for src in ["127.0.0.1", "81.2.69.1", "::1"] {
                            let src: IpAddr = src.parse().unwrap();
                            let (mut a, mut b) = (Vec::new(), Vec::new());
                            let fa = answer_with(&table, &q, src, Transport::Udp, &mut a, true);
                            let fb = answer_with(&table, &q, src, Transport::Udp, &mut b, false);
                            assert!(matches!((&fa, &fb), (Outcome::Answered(_), Outcome::Answered(_))));
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

    /// A signed zone: queries without DO get the bytes the unsigned table gives; with DO,
    /// every RRset of every answer (each client place and health state) carries its RRSIG,
    /// negative answers carry NSEC records, and responses fit the client's UDP size.
    #[test]
    fn signed_zones_answer_do_queries_with_signatures_and_others_as_unsigned() {
        use hickory_proto::op::Message;
        use hickory_proto::rr::{RData as HRData, RecordType};

        use crate::dnssec::{Algorithm, Lifetimes, SigningKey, ZoneKeys, keys, sign_table};

        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let config = crate::config::parse(&super::super::testing::example_config_text(), &dir).unwrap();
        let apex = Name::from_canonical("geo.example.");
        let subnets =
            [None, Some("81.2.69.0"), Some("103.6.148.0"), Some("5.9.0.0"), Some("8.8.8.0"), Some("10.42.7.0")];
        let names = [
            ("app.geo.example.", 1),
            ("app.geo.example.", 28),
            ("pool.geo.example.", 1),
            ("pool.geo.example.", 28),
            ("drop.geo.example.", 1),
            ("drop.geo.example.", 28),
            ("www.geo.example.", 1),
            ("static.geo.example.", 1),
            ("static.geo.example.", 28),
            ("ent.geo.example.", 1),
            ("nope.geo.example.", 1),
            ("a.b.nope.geo.example.", 16),
            ("geo.example.", 2),
            ("geo.example.", 6),
            ("geo.example.", 15),
            ("geo.example.", 255),
        ];
        let sites_down: [&[usize]; 3] = [&[], &[0, 2], &[0, 1, 2, 3]];
        let (mut signed_rrsets, mut nodata_proofs) = (0, 0);
        let key = SigningKey::from_pem(&keys::generate(Algorithm::EcdsaP256Sha256).unwrap()).unwrap();
        let lifetimes = Lifetimes {
            validity: std::time::Duration::from_secs(86_400 * 14),
            refresh: std::time::Duration::from_secs(86_400 * 7),
        };
        let zones = [ZoneKeys { apex: apex.clone(), keys: vec![key], lifetimes }];
        let src: IpAddr = "192.0.2.99".parse().unwrap();
        let db = std::sync::Arc::new(crate::geoip::GeoIpDb::open(config.geoip.as_ref().unwrap()).unwrap());
        for down in sites_down {
            let inputs = Inputs { sites_down: down.iter().copied().collect(), ..Inputs::default() };
            // Without rank tables (their build is slow unoptimized): answers by `resolve`.
            let table = crate::routing::build(&config, db.clone(), inputs, 1);
            // Without DO: the bytes of the table before it was signed.
            let unsigned: Vec<Vec<u8>> = names
                .iter()
                .flat_map(|&(name, qtype)| subnets.iter().map(move |&subnet| (name, qtype, subnet)))
                .map(|(name, qtype, subnet)| {
                    let packet = query(name, qtype, Some(1232), subnet.map(|s| (s.parse().unwrap(), 24)));
                    let mut text = NameBuf::new();
                    let mut out = Vec::new();
                    answer_with(
                        table.table(),
                        &parse(&packet, &mut text).unwrap(),
                        src,
                        Transport::Udp,
                        &mut out,
                        true,
                    );
                    out
                })
                .collect();
            let (sigs, _) = sign_table(table.table(), &zones, 1_800_000_000, None);
            table.table().set_signed(std::sync::Arc::new(sigs));
            let mut i = 0;
            {
                for (name, qtype) in names {
                    for subnet in subnets {
                        let subnet = subnet.map(|s| (s.parse::<IpAddr>().unwrap(), 24));
                        // Without DO: the same bytes.
                        let packet = query(name, qtype, Some(1232), subnet);
                        let mut text = NameBuf::new();
                        let q = parse(&packet, &mut text).unwrap();
                        let mut b = Vec::new();
                        answer_with(table.table(), &q, src, Transport::Udp, &mut b, true);
                        assert_eq!(unsigned[i], b, "{name} {qtype} {subnet:?} without DO, sites down {down:?}");
                        i += 1;
                        // With DO: every RRset signed, negatives proven, within 1232 bytes.
                        let mut with_do = TestQuery::new(0xbeef, name, qtype).flags(0x0100).edns(1232).dnssec_ok();
                        if let Some((addr, prefix)) = subnet {
                            with_do = with_do.subnet(addr, prefix);
                        }
                        let packet = with_do.bytes();
                        let q = parse(&packet, &mut text).unwrap();
                        assert!(q.edns.unwrap().dnssec_ok);
                        answer_with(table.table(), &q, src, Transport::Udp, &mut b, true);
                        assert!(b.len() <= 1232, "{name} {qtype}: {} bytes", b.len());
                        let m = Message::from_vec(&b).unwrap();
                        assert!(!m.metadata.truncation, "{name} {qtype} truncated");
                        let sections = [&m.answers, &m.authorities, &m.additionals];
                        for section in sections {
                            for r in section
                                .iter()
                                .filter(|r| !matches!(r.record_type(), RecordType::RRSIG | RecordType::OPT))
                            {
                                let covered = section.iter().any(|s| match &s.data {
                                    HRData::Unknown { code: RecordType::RRSIG, rdata } => {
                                        let covered = rdata.anything.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
                                        s.name == r.name && covered == Some(u16::from(r.record_type()))
                                    }
                                    _ => false,
                                });
                                assert!(covered, "{name} {qtype} {subnet:?} down {down:?}: no RRSIG for {r:?}");
                                signed_rrsets += 1;
                            }
                        }
                        let negative = m.answers.is_empty()
                            || m.metadata.response_code == hickory_proto::op::ResponseCode::NXDomain;
                        if negative && !matches!(m.metadata.response_code, hickory_proto::op::ResponseCode::ServFail) {
                            assert!(
                                m.authorities.iter().any(|r| r.record_type() == RecordType::NSEC),
                                "{name} {qtype} {subnet:?} down {down:?}: no NSEC in {m:?}"
                            );
                            // NODATA: the name's own NSEC, its type bitmap without the type.
                            if m.metadata.response_code == hickory_proto::op::ResponseCode::NoError && qtype != 255 {
                                let own = m.authorities.iter().find_map(|r| match &r.data {
                                    HRData::Unknown { code: RecordType::NSEC, rdata }
                                        if r.name.to_ascii().eq_ignore_ascii_case(name) =>
                                    {
                                        Some(rdata.anything.clone())
                                    }
                                    _ => None,
                                });
                                let own = own.unwrap_or_else(|| panic!("{name} {qtype} down {down:?}: no own NSEC"));
                                assert!(!bitmap_has(&own, qtype), "{name} {qtype} down {down:?}: NSEC lists the type");
                                nodata_proofs += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(signed_rrsets > 500, "{signed_rrsets} RRsets checked");
        assert!(nodata_proofs > 20, "{nodata_proofs} NODATA proofs checked");
    }

    /// Whether an NSEC's RDATA (next name uncompressed, then the type bitmap) lists `rtype`.
    fn bitmap_has(rdata: &[u8], rtype: u16) -> bool {
        let mut i = 0;
        while rdata[i] != 0 {
            i += 1 + usize::from(rdata[i]);
        }
        i += 1;
        while i + 2 <= rdata.len() {
            let (window, len) = (rdata[i], usize::from(rdata[i + 1]));
            let bits = &rdata[i + 2..i + 2 + len];
            if u16::from(window) == rtype >> 8 {
                let bit = usize::from(rtype & 0xff);
                return bits.get(bit / 8).is_some_and(|b| b & (0x80 >> (bit % 8)) != 0);
            }
            i += 2 + len;
        }
        false
    }
}
