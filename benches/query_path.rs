//! Micro-benchmarks of the query path: the routing decision, the GeoIP lookup, and a whole
//! request (wire bytes in, wire bytes out) through the real handler, with and without ECS.
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
use geodns::model::{Name, RType};
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

fn wire_query(ecs: Option<&str>) -> Vec<u8> {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.add_query(HQuery::query(HName::from_ascii("app.geo.example.").unwrap(), RecordType::A));
    if let Some(subnet) = ecs {
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        edns.options_mut().insert(EdnsOption::Subnet(subnet.parse::<ClientSubnet>().unwrap()));
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
