//! Fuzz smoke, part of the normal test suite: a bounded number of random and mutated packets
//! (seeded, so every run is the same) through the real handler in-process, and mutated config
//! texts through `config::parse`. The cargo-fuzz targets in fuzz/ explore the same two entry
//! points without a bound.
//!
//! Every packet must be dropped (shorter than a header, or QR=1), answered FORMERR (header
//! parses, body does not), or answered by the handler with a response that parses, echoes the
//! ID, has QR set, fits the UDP size, and, for error rcodes, is no larger than the request (no
//! amplification).

#[path = "support/inproc.rs"]
mod inproc;
#[path = "common/wire.rs"]
mod wire;

use std::net::SocketAddr;
use std::path::Path;

use geodns::dns;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use hickory_server::net::xfer::Protocol;
use inproc::Outcome;
use wire::WireQuery;

/// SplitMix64: small, seeded, good enough to spread mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

const NAMES: &[&str] = &[
    "app.geo.example.",
    "APP.Geo.Example.",
    "static.geo.example.",
    "www.geo.example.",
    "ent.geo.example.",
    "host.ent.geo.example.",
    "geo.example.",
    "nope.geo.example.",
    "other.org.",
    ".",
];

const TYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::ANY,
    RecordType::SOA,
    RecordType::NS,
    RecordType::TXT,
    RecordType::CNAME,
    RecordType::AXFR,
    RecordType::IXFR,
    RecordType::MX,
    RecordType::Unknown(65280),
];

/// A valid query, sometimes with EDNS, a Client Subnet (valid or not) and odd header bits.
fn valid_query(rng: &mut Rng) -> Vec<u8> {
    let mut m = Message::new(rng.next() as u16, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = rng.chance(2);
    let name = if rng.chance(4) {
        // A random name: 1-4 labels of 1-63 random letters and digits.
        let labels: Vec<String> = (0..1 + rng.below(4))
            .map(|_| {
                (0..1 + rng.below(63))
                    .map(|_| b"abcdefghijklmnopqrstuvwxyz0123456789-_"[rng.below(38)] as char)
                    .collect()
            })
            .collect();
        format!("{}.geo.example.", labels.join("."))
    } else {
        NAMES[rng.below(NAMES.len())].to_owned()
    };
    let name = Name::from_ascii(&name).unwrap_or_else(|_| Name::root());
    m.add_query(Query::query(name, TYPES[rng.below(TYPES.len())]));
    if rng.chance(2) {
        let mut edns = Edns::new();
        edns.set_max_payload([0, 100, 512, 1232, 4096, 65535][rng.below(6)]);
        edns.set_dnssec_ok(rng.chance(3));
        if rng.chance(8) {
            edns.set_version(1 + rng.below(3) as u8);
        }
        if rng.chance(2) {
            let v6 = rng.chance(3);
            let addr: std::net::IpAddr = if v6 {
                std::net::Ipv6Addr::from(u128::from(rng.next()) << 64 | u128::from(rng.next())).into()
            } else {
                std::net::Ipv4Addr::from(rng.next() as u32).into()
            };
            let max = if v6 { 128 } else { 32 };
            let source = rng.below(max + 1) as u8;
            // Mostly masked (valid); sometimes with host bits or a scope (malformed).
            let cs = if rng.chance(4) {
                ClientSubnet::new(addr, source, rng.below(4) as u8)
            } else {
                ClientSubnet::new(mask(addr, source), source, 0)
            };
            edns.options_mut().insert(EdnsOption::Subnet(cs));
        }
        m.set_edns(edns);
    }
    m.to_vec().expect("queries encode")
}

fn mask(addr: std::net::IpAddr, len: u8) -> std::net::IpAddr {
    match addr {
        std::net::IpAddr::V4(a) => {
            let m = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            std::net::Ipv4Addr::from(u32::from(a) & m).into()
        }
        std::net::IpAddr::V6(a) => {
            let m = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            std::net::Ipv6Addr::from(u128::from(a) & m).into()
        }
    }
}

/// Mutates a packet: bit flips, byte overwrites, truncation, extension, counts, splices.
fn mutate(rng: &mut Rng, mut p: Vec<u8>) -> Vec<u8> {
    for _ in 0..1 + rng.below(4) {
        match rng.below(7) {
            0 if !p.is_empty() => {
                let i = rng.below(p.len());
                p[i] ^= 1 << rng.below(8);
            }
            1 if !p.is_empty() => {
                let i = rng.below(p.len());
                p[i] = [0, 0xff, 0xc0, 0x3f, 0x40, rng.next() as u8][rng.below(6)];
            }
            2 => p.truncate(rng.below(p.len() + 1)),
            3 => p.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
            4 if p.len() >= 12 => {
                // A header count.
                let at = 4 + 2 * rng.below(4);
                p[at..at + 2].copy_from_slice(&(rng.below(4) as u16).to_be_bytes());
            }
            5 if p.len() > 13 => {
                // A compression pointer into the packet.
                let i = 12 + rng.below(p.len() - 13);
                let to = rng.below(p.len()) as u16 | 0xc000;
                p[i..i + 2].copy_from_slice(&to.to_be_bytes());
            }
            6 if p.len() > 2 => {
                // Clear QR and set a random opcode.
                p[2] = (p[2] & 0x07) | ((rng.below(16) as u8) << 3);
            }
            _ => {}
        }
    }
    p.truncate(600);
    p
}

fn random_packet(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(601);
    let mut p: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    if p.len() > 2 && rng.chance(2) {
        p[2] &= 0x7f; // mostly queries, or nearly everything would be dropped as QR=1
    }
    p
}

/// The question's length on the wire (name + type + class), when there is one.
fn question_len(m: &Message) -> usize {
    m.queries.first().map_or(0, |q| q.name().len() + 1 + 4)
}

#[tokio::test]
async fn random_and_mutated_packets_never_break_the_handler() {
    let handler = inproc::example_handler();
    let mut rng = Rng(0x6765_6f64_6e73);
    let src: SocketAddr = "192.0.2.99:5300".parse().unwrap();
    let (mut dropped, mut formerr, mut answered, mut question_pointer) = (0, 0, 0, 0);
    let mut by_rcode = std::collections::BTreeMap::<String, usize>::new();
    let (mut fast, mut fast_out) = (0, Vec::new());
    for i in 0..20_000 {
        let packet = match i % 4 {
            0 => valid_query(&mut rng),
            1 | 2 => {
                let q = valid_query(&mut rng);
                mutate(&mut rng, q)
            }
            _ => random_packet(&mut rng),
        };
        // The fast path (`dns::answer`, src/dns/answer/) sees every packet first; what it
        // answers must meet the same bar.
        fast_out.clear();
        let mut name = dns::NameBuf::new();
        let outcome = dns::answer(
            &handler.table(),
            &dns::parse(&packet, &mut name),
            src.ip(),
            dns::Transport::Udp,
            &mut fast_out,
        );
        if matches!(outcome, dns::Outcome::Answered(_)) {
            fast += 1;
            let m = Message::from_vec(&fast_out)
                .unwrap_or_else(|e| panic!("packet {i}: fast-path response does not parse: {e}"));
            let id = u16::from_be_bytes([packet[0], packet[1]]);
            assert_eq!(m.metadata.id, id, "packet {i}: fast path echoes the ID");
            assert!(fast_out.len() <= 1232, "packet {i}: fast path sent {} bytes", fast_out.len());
            if !matches!(m.metadata.response_code, ResponseCode::NoError | ResponseCode::NXDomain) {
                let bound = packet.len().max(12 + question_len(&m));
                assert!(fast_out.len() <= bound, "packet {i}: fast-path error larger than the query");
            }
        }
        let protocol = if i % 5 == 0 { Protocol::Tcp } else { Protocol::Udp };
        let outcome = inproc::answer(&handler, &packet, src, protocol).await;
        let hex = || packet.iter().map(|b| format!("{b:02x}")).collect::<String>();
        match outcome {
            Outcome::Dropped => dropped += 1,
            Outcome::FormErr(r) => {
                assert!(r.len() <= packet.len());
                assert_eq!(r[..2], packet[..2]);
                formerr += 1;
            }
            Outcome::Answered(r) => {
                answered += 1;
                let m = match Message::from_vec(&r) {
                    Ok(m) => m,
                    // Known issue (docs/hardening.md, reported): hickory copies the question's
                    // raw bytes into the response, so a compression pointer in the question
                    // points into the response's header. Counted here, reproduced by the
                    // ignored test below; nothing else may fail to parse.
                    Err(_) if question_uses_pointer(&packet) => {
                        question_pointer += 1;
                        continue;
                    }
                    Err(e) => panic!("packet {i} ({}): response does not parse: {e}", hex()),
                };
                assert_eq!(
                    m.metadata.id,
                    u16::from_be_bytes([packet[0], packet[1]]),
                    "packet {i}: ID echoed ({})",
                    hex()
                );
                assert_eq!(m.metadata.message_type, MessageType::Response, "packet {i}");
                if protocol == Protocol::Udp {
                    assert!(r.len() <= 1232, "packet {i}: {} bytes over UDP", r.len());
                }
                let code = m.metadata.response_code;
                *by_rcode.entry(format!("{code:?}")).or_default() += 1;
                if !matches!(code, ResponseCode::NoError | ResponseCode::NXDomain) {
                    // No amplification: an error is never larger than the query, or than a bare
                    // header and the question when the query was shorter than that.
                    let bound = packet.len().max(12 + question_len(&m));
                    assert!(
                        r.len() <= bound,
                        "packet {i}: {code:?} of {} bytes for a {}-byte query ({})",
                        r.len(),
                        packet.len(),
                        hex()
                    );
                }
            }
        }
    }
    eprintln!("fuzz smoke: {fast} also answered by the UDP fast path");
    eprintln!(
        "fuzz smoke: {answered} answered {by_rcode:?}, {formerr} FORMERR undecodable, {dropped} dropped, \
         {question_pointer} unparseable answers to a question with a compression pointer (known issue)"
    );
    assert!(answered > 5_000 && formerr > 100 && dropped > 100, "the mix reaches every outcome");
}

/// True when the first question's name contains a compression pointer (legal on the wire only
/// after the name it points to, so never in a first question).
fn question_uses_pointer(p: &[u8]) -> bool {
    let mut pos = 12;
    while let Some(&l) = p.get(pos) {
        match l {
            0 => return false,
            l if l & 0xc0 == 0xc0 => return true,
            l if l & 0xc0 == 0 => pos += 1 + l as usize,
            _ => return false,
        }
    }
    false
}

/// Reproducer of the known issue: a query whose question name is a pointer to offset 2 (the
/// header's flags byte, 0x00 = the root name in the query) gets a REFUSED whose question is the
/// same pointer, now aimed at the response's flags (0x80): the response does not parse.
/// Found by this smoke: a compression pointer in the question. It is answered FORMERR with no
/// question (echoing it would point into the response header).
#[tokio::test]

async fn a_pointer_in_the_question_gets_a_parseable_response() {
    let handler = inproc::example_handler();
    // Question: a pointer to offset 2, type A, class IN.
    let packet = WireQuery::new(0x20cc, ".", 1).raw_name(&[0xc0, 0x02]).bytes();
    let src: SocketAddr = "192.0.2.99:5300".parse().unwrap();
    match inproc::answer(&handler, &packet, src, Protocol::Udp).await {
        Outcome::Answered(r) => {
            let m = Message::from_vec(&r).expect("the response parses");
            assert_eq!(m.metadata.id, 0x20cc);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn mutated_configs_never_panic_the_parser() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let example = std::fs::read_to_string(dir.join("example.yaml")).expect("example config");
    assert!(geodns::config::parse(&example, &dir).is_ok());
    let lines: Vec<&str> = example.lines().collect();
    let specials = [
        ": ",
        "- ",
        "{",
        "}",
        "[",
        "]",
        "&a ",
        "*a",
        "!!binary ",
        "\"",
        "'",
        "\t",
        "\n  ",
        "~",
        "-1",
        "1e999",
        "0x",
        "::",
        "/",
        "99999999999999999999",
        "\u{0}",
        "é",
        "<<: *a",
    ];
    let mut rng = Rng(0x636f_6e66_6967);
    for _ in 0..3_000 {
        let mut ls: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        for _ in 0..1 + rng.below(3) {
            let i = rng.below(ls.len());
            match rng.below(6) {
                0 => {
                    ls.remove(i);
                }
                1 => {
                    let l = ls[i].clone();
                    ls.insert(i, l);
                }
                2 => {
                    let l = &mut ls[i];
                    let at = rng.below(l.len() + 1);
                    if l.is_char_boundary(at) {
                        l.insert_str(at, specials[rng.below(specials.len())]);
                    }
                }
                3 => {
                    let l = &mut ls[i];
                    let at = rng.below(l.len() + 1);
                    if l.is_char_boundary(at) {
                        l.truncate(at);
                    }
                }
                4 => {
                    // Replace a number or a value by another line's tail.
                    let j = rng.below(lines.len());
                    if let (Some((k, _)), Some((_, v))) = (ls[i].clone().split_once(": "), lines[j].split_once(": ")) {
                        ls[i] = format!("{k}: {v}");
                    }
                }
                _ => {
                    let j = rng.below(ls.len());
                    ls.swap(i, j);
                }
            }
        }
        let text = ls.join("\n");
        // Must return Ok or Err, never panic.
        let _ = geodns::config::parse(&text, &dir);
        let cut = rng.below(text.len() + 1);
        if text.is_char_boundary(cut) {
            let _ = geodns::config::parse(&text[..cut], &dir);
        }
    }
}
