//! Table size and rebuilds (issue #8): the time of one full routing table build at scale, and
//! the cost of one query against tables of 10 to 100,000 names (it should not grow with them).
//!
//! Run: `cargo bench --bench table_scale`. Configs are generated as YAML and go through the real
//! parse -> validate -> open GeoIP path (shape in benches/common/scale.rs: 100 sites over the
//! globe, geo names with one IPv4 and one IPv6 address per site and a health check, a few static
//! names, the shipped country database).
//!
//! - `rebuild/<names> x <sites>`: one `Loaded::build` (what the builder task runs on every health
//!   flip, admin override and reload) with about 1% of the endpoints down; the old table is
//!   dropped outside the timing (`rebuild+drop/...` includes it, as the builder pays it).
//! - `query/names=N`: the whole UDP fast path, wire bytes in -> wire bytes out (`dns::parse`
//!   then `dns::answer`, as the UDP loops call them), an A query with ECS /24, cycling over 8,192 (name, subnet) pairs drawn
//!   uniformly from the whole table and 1,024 located subnets; every name has 8 of the 100 sites.
//! - `resolve/names=N`: the routing decision alone (`RoutingTable::resolve`), same queries.
//! - `status/names as JSON, ...`: the `names` section of `/status` for the 10,000 x 100 table,
//!   serialized (what one request for `/status` costs; see docs/operations.md).
//!
//! After criterion, a summary times the same queries again, table sizes interleaved round by
//! round (so drift from other load on the machine hits every size alike), and prints the ratio
//! of the largest to the smallest table's cost. `TABLE_SCALE_SUMMARY=0` skips it.
//! `TABLE_SCALE_HOT_NAMES=64` queries only the first 64 names of every table (a working set that
//! stays in cache, whatever the table's size), to tell the table's size from its memory traffic.

#[allow(dead_code)]
#[path = "common/scale.rs"]
mod scale;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use criterion::{Criterion, criterion_group};
use geodns::admin::Names;
use geodns::app::Loaded;
use geodns::dns::{self, Handler};
use geodns::model::{Name, RType};
use geodns::routing::{Inputs, Query};
use scale::{Rng, Shape};

const SITES: usize = 100;
const SITES_PER_NAME: usize = 8;
const SIZES: [usize; 5] = [10, 100, 1_000, 10_000, 100_000];
/// Distinct queries cycled over (a power of two).
const QUERIES: usize = 8192;
const SRC: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// One table size, ready to query.
struct Sized {
    names: usize,
    handler: Handler,
    packets: Vec<Vec<u8>>,
    queries: Vec<(Name, IpAddr)>,
}

fn load(shape: &Shape) -> Loaded {
    let started = Instant::now();
    let loaded = scale::load(shape);
    eprintln!("setup: {}: generate + parse + validate + open GeoIP in {:.2?}", shape.label(), started.elapsed());
    loaded
}

fn sized(shape: Shape, subnets: &[Ipv4Addr]) -> Sized {
    let loaded = load(&shape);
    let table = loaded.build(scale::inputs(&loaded.config, 0), 1);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ shape.names as u64);
    let queried = std::env::var("TABLE_SCALE_HOT_NAMES").ok().and_then(|v| v.parse().ok()).unwrap_or(usize::MAX);
    let mut packets = Vec::with_capacity(QUERIES);
    let mut queries = Vec::with_capacity(QUERIES);
    for k in 0..QUERIES {
        let name = scale::name(rng.below(shape.names.min(queried).max(1)));
        let subnet = subnets[rng.below(subnets.len())];
        packets.push(scale::wire_query(&name, subnet, k as u16));
        queries.push((Name::parse_absolute(&name).unwrap(), IpAddr::V4(subnet)));
    }
    Sized { names: shape.names, handler: Handler::new(Arc::new(ArcSwap::new(table.into_table()))), packets, queries }
}

fn setup() -> Vec<Sized> {
    let probe = load(&Shape { names: 1, sites: SITES, sites_per_name: 1 });
    let subnets = scale::located_subnets(&probe, 1024);
    SIZES.iter().map(|&names| sized(Shape { names, sites: SITES, sites_per_name: SITES_PER_NAME }, &subnets)).collect()
}

/// One answer on the fast path for the `k`-th query.
fn answer(s: &Sized, k: usize, out: &mut Vec<u8>) -> usize {
    assert!(fast(&s.handler, &s.packets[k & (QUERIES - 1)], out));
    out.len()
}

/// The UDP loops' step for one query: a table load, a parse into a name buffer, the answer.
fn fast(handler: &Handler, packet: &[u8], out: &mut Vec<u8>) -> bool {
    let mut name = dns::NameBuf::new();
    let outcome = dns::answer(&handler.table(), &dns::parse(packet, &mut name), SRC, dns::Transport::Udp, out);
    matches!(outcome, dns::Outcome::Answered(_))
}

fn resolve(s: &Sized, k: usize) -> usize {
    let (name, client) = &s.queries[k & (QUERIES - 1)];
    let table = s.handler.table();
    let a = table.resolve(&Query { name, rtype: RType::A, client: *client, ecs_source: Some(24) });
    a.answers.len()
}

fn rebuild(c: &mut Criterion) {
    let shapes = [
        Shape { names: 10_000, sites: SITES, sites_per_name: SITES },
        Shape { names: 10_000, sites: SITES, sites_per_name: SITES_PER_NAME },
    ];
    let loaded: Vec<(Shape, Loaded, Arc<Inputs>)> = shapes
        .into_iter()
        .map(|shape| {
            let loaded = load(&shape);
            let inputs = Arc::new(scale::inputs(&loaded.config, 0));
            (shape, loaded, inputs)
        })
        .collect();
    let mut group = c.benchmark_group("rebuild");
    group.sample_size(10);
    for (shape, loaded, inputs) in &loaded {
        group.bench_function(shape.label(), |b| b.iter_with_large_drop(|| loaded.build(inputs.clone(), 2)));
    }
    group.finish();

    // Incremental rebuilds from the table of `inputs`: what the builder does on a health flip.
    let mut group = c.benchmark_group("rebuild-incremental");
    group.sample_size(10);
    for (shape, loaded, inputs) in &loaded {
        let previous = loaded.rebuild(&loaded.build(inputs.clone(), 1), inputs.clone(), 1);
        let flipped = Arc::new(scale::flipped(&loaded.config, inputs, 1, 1));
        group.bench_function(format!("one endpoint flipped, {}", shape.label()), |b| {
            b.iter_with_large_drop(|| loaded.rebuild(&previous, flipped.clone(), 2))
        });
        let moved = Arc::new(scale::inputs(&loaded.config, 1));
        group.bench_function(format!("1% of endpoints moved (every name), {}", shape.label()), |b| {
            b.iter_with_large_drop(|| loaded.rebuild(&previous, moved.clone(), 2))
        });
    }
    group.finish();

    let (shape, loaded, inputs) = &loaded[0];
    let mut group = c.benchmark_group("rebuild+drop");
    group.sample_size(10);
    group.bench_function(shape.label(), |b| b.iter(|| loaded.build(inputs.clone(), 2)));
    group.finish();

    // The names section of /status for the million-entry table, written as JSON: what a
    // request for /status costs (the document is written when asked for, not on each publish).
    let names = Names(Some(loaded.build(inputs.clone(), 1).into_table()));
    let mut group = c.benchmark_group("status");
    group.sample_size(10);
    group.bench_function(format!("names as JSON, {}", shape.label()), |b| {
        b.iter(|| serde_json::to_vec(&names).expect("serializes").len())
    });
    // The same entries built as values: what every publish (health flip) cost while the
    // section was built with the document.
    group.bench_function(format!("names as values, {}", shape.label()), |b| b.iter_with_large_drop(|| names.entries()));
    group.finish();

    // The query cost when every name has all 100 sites (each query ranks 100 sites).
    let handler = Handler::new(Arc::new(ArcSwap::new(loaded.build(inputs.clone(), 1).into_table())));
    let subnets = scale::located_subnets(loaded, 1024);
    let packets: Vec<Vec<u8>> = (0..QUERIES)
        .map(|k| scale::wire_query(&scale::name(k * 7919 % shape.names), subnets[k * 31 % 1024], 1))
        .collect();
    let mut out = Vec::with_capacity(1232);
    c.bench_function(&format!("query/names={}, all {SITES} sites each", shape.names), |b| {
        let mut k = 0;
        b.iter(|| {
            k += 1;
            assert!(fast(&handler, &packets[k & (QUERIES - 1)], &mut out));
            black_box(out.len())
        })
    });
}

fn queries(c: &mut Criterion) {
    let sizes = setup();
    let mut out = Vec::with_capacity(1232);
    for s in &sizes {
        let mut k = 0;
        c.bench_function(&format!("query/names={}", s.names), |b| {
            b.iter(|| {
                k += 1;
                black_box(answer(s, k, &mut out))
            })
        });
    }
    for s in &sizes {
        let mut k = 0;
        c.bench_function(&format!("resolve/names={}", s.names), |b| {
            b.iter(|| {
                k += 1;
                black_box(resolve(s, k))
            })
        });
    }
    if std::env::args().any(|a| a == "--bench") && std::env::var("TABLE_SCALE_SUMMARY").as_deref() != Ok("0") {
        summary(&sizes);
    }
}

/// Per-query cost of each size, measured in interleaved rounds; prints medians and the ratio.
fn summary(sizes: &[Sized]) {
    const ROUNDS: usize = 15;
    const BATCH: usize = 100_000;
    let mut fast = vec![Vec::new(); sizes.len()];
    let mut routing = vec![Vec::new(); sizes.len()];
    let mut out = Vec::with_capacity(1232);
    let per_query = |d: Duration| d.as_nanos() as f64 / BATCH as f64;
    for round in 0..ROUNDS {
        for (i, s) in sizes.iter().enumerate() {
            let started = Instant::now();
            for k in 0..BATCH {
                black_box(answer(s, k + round, &mut out));
            }
            fast[i].push(per_query(started.elapsed()));
            let started = Instant::now();
            for k in 0..BATCH {
                black_box(resolve(s, k + round));
            }
            routing[i].push(per_query(started.elapsed()));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let fast: Vec<f64> = fast.iter_mut().map(median).collect();
    let routing: Vec<f64> = routing.iter_mut().map(median).collect();
    println!("\ntable_scale summary: ns per query, median of {ROUNDS} interleaved rounds of {BATCH} queries");
    println!("{:>10}  {:>12}  {:>10}", "names", "answer", "resolve");
    for (i, s) in sizes.iter().enumerate() {
        println!("{:>10}  {:>12.0}  {:>10.0}", s.names, fast[i], routing[i]);
    }
    let last = sizes.len() - 1;
    println!(
        "largest / smallest table ({} / {} names): answer {:.2}x, resolve {:.2}x (target: within 1.10x)",
        sizes[last].names,
        sizes[0].names,
        fast[last] / fast[0],
        routing[last] / routing[0]
    );
}

criterion_group!(benches, rebuild, queries);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
