//! Answers during continuous rebuilds (issue #8): the real DNS server in-process on
//! 127.0.0.1:0 with a 10,000-name x 100-site table (benches/common/scale.rs; RRL off), queried
//! over loopback UDP by one blocking client thread (A with ECS /24, cycling over 8,192 names and
//! located subnets), first idle, then while new tables are built and stored into the served
//! `ArcSwap` 10 times a second, as the builder task does on health flips (`Loaded::rebuild` from
//! the served table, on `app::BuildThreads`; the old table freed on the build thread; a rebuild
//! that overruns its slot starts the next at once), then idle again (a check for drift from
//! other load on the machine). Prints the latency of each phase, the ratio of the average
//! latencies (busy / idle; target: within 1.2x), and the rebuild times.
//!
//! What changes between rebuilds (`REBUILD_LOAD_CHANGE`):
//! - `flips` (the default): each rebuild's inputs are the last ones with `REBUILD_LOAD_FLIPS`
//!   endpoints (default 10) flipped, as health snapshots bring them: the rebuild redoes only
//!   the names those endpoints belong to.
//! - `all`: about 1% of all endpoints are down, a different 1% at each rebuild: every name
//!   changes at every rebuild, so each is as costly as a full build (the worst case: a real
//!   server sees it on a reload, not 10 times a second).
//!
//! Run: `cargo bench --bench rebuild_load`. A measurement, not a micro-benchmark: no criterion.
//! Environment: `REBUILD_LOAD_SECS` the length of each phase (default 10), `REBUILD_LOAD_NAMES`
//! the number of names (default 10000), `REBUILD_LOAD_INFLIGHT` queries in flight (default 1:
//! pure latency; 8 keeps the server busy, so idle wake-ups do not count), `REBUILD_LOAD_RETIRE=1`
//! keeps each old table until the next rebuild (so no query ever frees one). Without `--bench`
//! (`cargo test --benches`) it runs a short smoke version.

#[allow(dead_code)]
#[path = "common/scale.rs"]
mod scale;

#[path = "common/client.rs"]
mod client;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use client::{Phase, query_phase};
use geodns::app::BuildThreads;
use geodns::config::RrlConfig;
use geodns::dns::{DnsServer, Handler};
use geodns::routing::{Inputs, RoutingTable};
use scale::{Rng, Shape};

const REBUILDS_PER_SECOND: u32 = 10;
/// Distinct queries cycled over (a power of two).
const QUERIES: usize = 8192;
/// Input sets the `all` rebuilds cycle over (about 1% of the endpoints down, a different 1% each).
const INPUT_ROUNDS: usize = 8;

/// What changes between two rebuilds.
#[derive(Clone, Copy)]
enum Change {
    /// This many endpoints flip.
    Flips(usize),
    /// A different 1% of all endpoints is down: every name changes.
    All,
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Rebuilds {
    /// `Loaded::build` alone.
    build: Vec<Duration>,
    /// Publishing: the swap, and dropping the previous table (or, retiring, the one before it).
    store: Vec<Duration>,
    /// Previous tables a query still held at the swap: that query's thread frees them.
    freed_by_queries: usize,
}

/// Rebuilds and publishes a table `REBUILDS_PER_SECOND` times a second until `stop`; a rebuild
/// that overruns its slot starts the next one at once, without catching up on missed slots.
/// Builds as the builder task does, on the build thread (`app::BuildThreads`: its own thread,
/// at a lower priority), and publishes as it does (swap; the old table freed on the build
/// thread), or with `retire` keeps the old table until the next rebuild and frees it then.
fn rebuild_loop(
    loaded: &Arc<geodns::app::Loaded>,
    rounds: &[Arc<Inputs>],
    change: Change,
    first: geodns::routing::Built,
    table: &ArcSwap<RoutingTable>,
    stop: &AtomicBool,
    retire: bool,
) -> Rebuilds {
    // What the builder keeps besides the published table: the last build, for the next.
    let mut current = Arc::new(first);
    let mut inputs = rounds[0].clone();
    let build_thread = BuildThreads::start().expect("start the build thread");
    let period = Duration::from_secs(1) / REBUILDS_PER_SECOND;
    let mut out = Rebuilds { build: Vec::new(), store: Vec::new(), freed_by_queries: 0 };
    let mut retired: Option<Arc<RoutingTable>> = None;
    let mut next = Instant::now();
    let mut generation = 2;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(10)));
            continue;
        }
        let started = Instant::now();
        // The builder makes its inputs from the health snapshot on the runtime, then builds.
        inputs = match change {
            Change::Flips(n) => Arc::new(scale::flipped(&loaded.config, &inputs, generation, n)),
            Change::All => rounds[generation as usize % rounds.len()].clone(),
        };
        let (l, i, previous) = (loaded.clone(), inputs.clone(), current.clone());
        let built =
            build_thread.build_blocking(move || l.rebuild(&previous, i.clone(), generation)).expect("a build succeeds");
        let stored = Instant::now();
        let old = table.swap(built.table().clone());
        build_thread.drop_later(std::mem::replace(&mut current, Arc::new(built)));
        if retire {
            if let Some(older) = retired.replace(old) {
                build_thread.drop_later(older);
            }
        } else {
            // A query holding the old table frees it instead, when it lets it go.
            out.freed_by_queries += usize::from(Arc::strong_count(&old) > 1);
            build_thread.drop_later(old);
        }
        out.build.push(stored - started);
        out.store.push(stored.elapsed());
        generation += 1;
        next = (next + period).max(Instant::now());
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let length = Duration::from_secs_f64(env_or("REBUILD_LOAD_SECS", if bench { 10.0 } else { 0.5 }));
    let names = env_or("REBUILD_LOAD_NAMES", if bench { 10_000 } else { 200 });
    let inflight: usize = env_or("REBUILD_LOAD_INFLIGHT", 1).clamp(1, QUERIES / 2);
    let retire = env_or("REBUILD_LOAD_RETIRE", 0) == 1;
    let change = match std::env::var("REBUILD_LOAD_CHANGE").as_deref() {
        Ok("all") => Change::All,
        Ok("flips") | Err(_) => Change::Flips(env_or("REBUILD_LOAD_FLIPS", 10)),
        Ok(other) => panic!("REBUILD_LOAD_CHANGE={other}: expected flips or all"),
    };
    let shape = Shape { names, sites: 100, sites_per_name: 100 };

    // The server counts queries and durations as `geodns serve` does.
    geodns::metrics::install();
    let started = Instant::now();
    let loaded = Arc::new(scale::load(&shape));
    let rounds: Vec<Arc<Inputs>> =
        (0..INPUT_ROUNDS).map(|round| Arc::new(scale::inputs(&loaded.config, round))).collect();
    // Built as the builder's first rebuild is: with the address index.
    let first = loaded.rebuild(&loaded.build(rounds[0].clone(), 1), rounds[0].clone(), 1);
    let table = Arc::new(ArcSwap::new(first.table().clone()));
    println!(
        "rebuild_load: {}, {inflight} quer{} in flight, each rebuild: {} (loaded and first table built in {:.2?})",
        shape.label(),
        if inflight == 1 { "y" } else { "ies" },
        match change {
            Change::Flips(n) => format!("{n} endpoints flipped"),
            Change::All => "a different 1% of endpoints down (every name changes)".to_owned(),
        },
        started.elapsed()
    );

    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().unwrap();
    let rrl = RrlConfig { enabled: false, ..loaded.config.server.rrl };
    let server = {
        let _in_runtime = rt.enter();
        let listen = ["127.0.0.1:0".parse().unwrap()];
        DnsServer::start(Handler::new(table.clone()), &listen, &loaded.config.server.tcp, &rrl, workers)
            .expect("start the DNS server")
    };
    let addr = server.bound[0];

    let subnets = scale::located_subnets(&loaded, 1024);
    let mut rng = Rng(0x5851_f42d_4c95_7f2d);
    let packets: Vec<Vec<u8>> = (0..QUERIES)
        .map(|k| scale::wire_query(&scale::name(rng.below(names)), subnets[rng.below(subnets.len())], k as u16))
        .collect();
    // Warm up: sockets, caches, the metric handles of every (name, site) answered.
    query_phase("warm-up", addr, &packets, length.min(Duration::from_secs(2)) / 2, inflight);

    let mut idle = query_phase("idle", addr, &packets, length, inflight);
    let stop = AtomicBool::new(false);
    let (mut busy, rebuilds) = std::thread::scope(|scope| {
        let rebuilder = scope.spawn(|| rebuild_loop(&loaded, &rounds, change, first, &table, &stop, retire));
        let busy = query_phase("rebuilding", addr, &packets, length, inflight);
        stop.store(true, Ordering::Relaxed);
        (busy, rebuilder.join().expect("the rebuild thread"))
    });
    let mut after = query_phase("idle (after)", addr, &packets, length, inflight);

    println!(
        "\n{:<14} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>6} {:>6}",
        "phase", "queries", "q/s", "avg us", "p50 us", "p99 us", "max us", ">10 ms", "lost", "wrong"
    );
    for phase in [&mut idle, &mut busy, &mut after] {
        phase.report();
    }
    let avg = |v: &[Duration]| v.iter().sum::<Duration>() / v.len().max(1) as u32;
    let max = |v: &[Duration]| v.iter().max().copied().unwrap_or_default();
    println!(
        "\nrebuilds: {} in {:.1} s ({:.1}/s, target {REBUILDS_PER_SECOND}/s); build avg {:.1} ms, max {:.1} ms",
        rebuilds.build.len(),
        busy.elapsed.as_secs_f64(),
        rebuilds.build.len() as f64 / busy.elapsed.as_secs_f64(),
        ms(avg(&rebuilds.build)),
        ms(max(&rebuilds.build)),
    );
    println!(
        "publish ({}): avg {:.1} ms, max {:.1} ms; old tables freed by a query's thread: {}",
        if retire {
            "swap; the table retired one rebuild ago freed on the build thread"
        } else {
            "swap; the old table freed on the build thread, as the builder"
        },
        ms(avg(&rebuilds.store)),
        ms(max(&rebuilds.store)),
        rebuilds.freed_by_queries,
    );
    let ratio = |a: &Phase, b: &Phase| a.average().as_secs_f64() / b.average().as_secs_f64();
    println!(
        "average latency rebuilding / idle: {:.2}x (target: within 1.2x); idle after / idle before: {:.2}x",
        ratio(&busy, &idle),
        ratio(&after, &idle)
    );
    rt.block_on(server.shutdown());
}
