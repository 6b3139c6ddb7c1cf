//! Micro-benchmarks of the query path: the routing decision, the GeoIP lookup, and a whole
//! request (wire bytes in, wire bytes out) through the real handler, with and without ECS.
//!
//! The `dns/fast path, varied ...` cases answer 4,096 different queries in turn (ECS from
//! IPv4 /24s, or IPv6 /56s and /48s, that the shipped database places), so the rankings'
//! lookups miss the caches as real traffic's do; `max_answers: 1` runs the same on the example
//! with that set. Compare IPv6 with IPv4 there.
//!
//! The `dns/signed zone, ...` cases answer the same kinds of queries from the example zone
//! signed (ECDSA P-256), each without and with the DO bit, and NXDOMAIN for varied names: the
//! DO answers carry RRSIGs (and NSEC proofs) and should cost about what the unsigned ones do.
//!
//! Run: `cargo bench --bench query_path`. Timing figures belong here, never in tests.

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use criterion::{Criterion, criterion_group, criterion_main};
use geodns::app;
use geodns::dns::{self, Capture, Handler, NameBuf, Outcome, Transport};
use geodns::model::{Locator, Name, RType, RangeLocation};
use geodns::routing::Query;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query as HQuery};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name as HName, RecordType};
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler};

fn example() -> app::Loaded {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml");
    app::load(&path).expect("the example config loads")
}

fn example_with(max_answers: bool) -> app::Loaded {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = if max_answers { text.replace("# max_answers: 1", "max_answers: 1") } else { text };
    let config = geodns::config::parse(&text, path.parent().unwrap()).expect("the example config parses");
    app::open(config).expect("the shipped database opens")
}

/// 4,096 ECS subnets the database places: IPv4 /24s, or IPv6 /56s and /48s (alternately).
fn subnets(loaded: &app::Loaded, v6: bool) -> Vec<String> {
    let db = loaded.geoip.clone().unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        x >> 11
    };
    let mut out = Vec::new();
    if v6 {
        let mut located: Vec<(u128, u128)> = Vec::new();
        db.for_each_ipv6_range(&mut |first, last, place| {
            if matches!(place, RangeLocation::At(_)) && first >> 125 == 1 {
                located.push((first, last));
            }
        });
        while out.len() < 4096 {
            let (first, last) = located[next() as usize % located.len()];
            let addr = first + u128::from(next()) % (last - first).max(1);
            let len = if out.len() % 2 == 0 { 56 } else { 48 };
            let net = addr & (u128::MAX << (128 - len));
            out.push(format!("{}/{len}", std::net::Ipv6Addr::from(net)));
        }
    } else {
        while out.len() < 4096 {
            let addr = (next() as u32) & 0xffff_ff00;
            if db.locate(IpAddr::from(addr.to_be_bytes())).location.is_some() {
                out.push(format!("{}/24", std::net::Ipv4Addr::from(addr)));
            }
        }
    }
    out
}

/// The example config with its zone signed by a fresh ECDSA P-256 key (written under target/).
fn example_signed() -> app::Loaded {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-dnssec");
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("query_path.key");
    std::fs::write(&key, geodns::dnssec::keys::generate(geodns::dnssec::Algorithm::EcdsaP256Sha256).unwrap()).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let text =
        text.replacen("    ttl: 300\n", &format!("    ttl: 300\n    dnssec: {{ keys: [{}] }}\n", key.display()), 1);
    let config = geodns::config::parse(&text, path.parent().unwrap()).expect("the signed example config parses");
    app::open(config).expect("the signed example opens")
}

fn wire_query(ecs: Option<&str>) -> Vec<u8> {
    wire_query_for(RecordType::A, ecs)
}

fn wire_query_for(rtype: RecordType, ecs: Option<&str>) -> Vec<u8> {
    wire_query_do("app.geo.example.", rtype, ecs, false)
}

/// A query for `name`; with EDNS (payload 1232) when it carries ECS or `dnssec_ok`.
fn wire_query_do(name: &str, rtype: RecordType, ecs: Option<&str>, dnssec_ok: bool) -> Vec<u8> {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.add_query(HQuery::query(HName::from_ascii(name).unwrap(), rtype));
    if ecs.is_some() || dnssec_ok {
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        edns.set_dnssec_ok(dnssec_ok);
        if let Some(subnet) = ecs {
            edns.options_mut().insert(EdnsOption::Subnet(subnet.parse::<ClientSubnet>().unwrap()));
        }
        m.set_edns(edns);
    }
    m.to_vec().unwrap()
}

fn bench(c: &mut Criterion) {
    let loaded = example();
    let table = loaded.build(geodns::routing::Inputs::default(), 1);
    let name = Name::parse_absolute("app.geo.example.").unwrap();
    let uk: IpAddr = "81.2.69.0".parse().unwrap();

    c.bench_function("routing/resolve geo name with ECS", |b| {
        b.iter(|| {
            black_box(table.resolve(&Query {
                name: &name,
                rtype: RType::A,
                client: black_box(uk),
                ecs_source: Some(24),
            }))
        })
    });
    let static_name = Name::parse_absolute("static.geo.example.").unwrap();
    c.bench_function("routing/resolve static name", |b| {
        b.iter(|| {
            black_box(table.resolve(&Query { name: &static_name, rtype: RType::A, client: uk, ecs_source: None }))
        })
    });

    let locator = loaded.locator();
    let mut seed: u32 = 0x1234_5678;
    c.bench_function("geoip/locate random IPv4 (shipped country db)", |b| {
        b.iter(|| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            black_box(locator.locate(IpAddr::from(seed.to_be_bytes())))
        })
    });

    let handler = Handler::new(Arc::new(ArcSwap::new(table.into_table())));
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let src: SocketAddr = "127.0.0.1:5353".parse().unwrap();
    for (label, bytes) in
        [("fast path, no ECS", wire_query(None)), ("fast path, ECS /24", wire_query(Some("81.2.69.0/24")))]
    {
        let mut out = Vec::with_capacity(1232);
        // The UDP loops' step for one query: a table load, a parse into a name buffer, the answer.
        c.bench_function(&format!("dns/{label}"), |b| {
            b.iter(|| {
                let mut name = NameBuf::new();
                let query = dns::parse(black_box(&bytes), &mut name);
                let outcome = dns::answer(&handler.table(), &query, src.ip(), Transport::Udp, &mut out);
                assert!(matches!(outcome, Outcome::Answered(_)));
                black_box(out.len())
            })
        });
    }
    // Varied clients, as real traffic has them: IPv4 /24s, IPv6 /56 and /48, A and AAAA, and a
    // name with `max_answers: 1`.
    let v4 = subnets(&loaded, false);
    let v6 = subnets(&loaded, true);
    let capped = example_with(true);
    let capped_handler =
        Handler::new(Arc::new(ArcSwap::new(capped.build_settled(geodns::routing::Inputs::default(), 1).into_table())));
    let settled =
        Handler::new(Arc::new(ArcSwap::new(loaded.build_settled(geodns::routing::Inputs::default(), 1).into_table())));
    for (label, handler, rtype, nets) in [
        ("IPv4 ECS /24, A", &settled, RecordType::A, &v4),
        ("IPv6 ECS /56 and /48, A", &settled, RecordType::A, &v6),
        ("IPv6 ECS /56 and /48, AAAA", &settled, RecordType::AAAA, &v6),
        ("IPv4 ECS /24, A, max_answers 1", &capped_handler, RecordType::A, &v4),
        ("IPv6 ECS /56 and /48, AAAA, max_answers 1", &capped_handler, RecordType::AAAA, &v6),
    ] {
        let queries: Vec<Vec<u8>> = nets.iter().map(|n| wire_query_for(rtype, Some(n))).collect();
        let mut out = Vec::with_capacity(1232);
        let mut i = 0;
        c.bench_function(&format!("dns/fast path, varied {label}"), |b| {
            b.iter(|| {
                i = (i + 1) % queries.len();
                let mut name = NameBuf::new();
                let query = dns::parse(black_box(&queries[i]), &mut name);
                let outcome = dns::answer(&handler.table(), &query, src.ip(), Transport::Udp, &mut out);
                assert!(matches!(outcome, Outcome::Answered(_)));
                black_box(out.len())
            })
        });
    }

    // A signed zone: the same kinds of queries without and with DO, on the same table.
    let signed_loaded = example_signed();
    let signed_built = signed_loaded.build_settled(geodns::routing::Inputs::default(), 1);
    signed_loaded.sign(&signed_built, None);
    assert!(signed_built.table().signed().is_some(), "the example zone is signed");
    let signed = Handler::new(Arc::new(ArcSwap::new(signed_built.into_table())));
    let none: Vec<Option<String>> = vec![None];
    let some = |nets: &[String]| nets.iter().cloned().map(Some).collect::<Vec<_>>();
    let (v4_ecs, v6_ecs) = (some(&v4), some(&v6));
    for (label, rtype, nets, nxdomain) in [
        ("varied IPv4 ECS /24, A", RecordType::A, &v4_ecs, false),
        ("varied IPv6 ECS /56 and /48, AAAA", RecordType::AAAA, &v6_ecs, false),
        ("no ECS, A", RecordType::A, &none, false),
        ("NXDOMAIN, varied names, IPv4 ECS /24", RecordType::A, &v4_ecs, true),
    ] {
        for dnssec_ok in [false, true] {
            let queries: Vec<Vec<u8>> = nets
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let name = if nxdomain { format!("nope-{i}.geo.example.") } else { "app.geo.example.".into() };
                    wire_query_do(&name, rtype, n.as_deref(), dnssec_ok)
                })
                .collect();
            let mut out = Vec::with_capacity(1232);
            let mut i = 0;
            let what = if dnssec_ok { "DO" } else { "without DO" };
            c.bench_function(&format!("dns/signed zone, {label}, {what}"), |b| {
                b.iter(|| {
                    i = (i + 1) % queries.len();
                    let mut name = NameBuf::new();
                    let query = dns::parse(black_box(&queries[i]), &mut name);
                    let outcome = dns::answer(&signed.table(), &query, src.ip(), Transport::Udp, &mut out);
                    assert!(matches!(outcome, Outcome::Answered(_)));
                    black_box(out.len())
                })
            });
        }
    }

    for (label, bytes) in
        [("full handler, no ECS", wire_query(None)), ("full handler, ECS /24", wire_query(Some("81.2.69.0/24")))]
    {
        c.bench_function(&format!("dns/{label}"), |b| {
            b.iter(|| {
                let request = Request::from_bytes(bytes.clone(), src, Protocol::Udp).unwrap();
                let capture = Capture::new(Protocol::Udp);
                rt.block_on(handler.handle_request::<_, TokioTime>(&request, capture.clone()));
                black_box(capture.take())
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
