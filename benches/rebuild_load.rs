//! Answers during continuous rebuilds (issue #8): the real DNS server in-process on
//! 127.0.0.1:0 with a 10,000-name x 100-site table (benches/common/scale.rs; RRL off), queried
//! over loopback UDP by one blocking client thread (A with ECS /24, cycling over 8,192 names and
//! located subnets), first idle, then while another thread builds a new table and stores it into
//! the served `ArcSwap` 10 times a second (as the builder task does on health flips; a rebuild
//! that overruns its slot starts the next at once), then idle again (a check for drift from
//! other load on the machine). Prints the latency of each phase, the ratio of the average
//! latencies (busy / idle; target: within 1.2x), and the rebuild times.
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

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use geodns::config::RrlConfig;
use geodns::dns::{DnsServer, Handler};
use geodns::routing::{Inputs, RoutingTable};
use scale::{Rng, Shape};

const REBUILDS_PER_SECOND: u32 = 10;
/// Distinct queries cycled over (a power of two).
const QUERIES: usize = 8192;
/// At most this many queries per phase, whatever its length.
const MAX_QUERIES: usize = 5_000_000;
/// Input sets the rebuilds cycle over (about 1% of the endpoints down, a different 1% each).
const INPUT_ROUNDS: usize = 8;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Phase {
    name: &'static str,
    /// One entry per answered query.
    latencies: Vec<Duration>,
    lost: usize,
    wrong: usize,
    elapsed: Duration,
}

impl Phase {
    fn average(&self) -> Duration {
        self.latencies.iter().sum::<Duration>() / self.latencies.len().max(1) as u32
    }

    fn report(&mut self) {
        self.latencies.sort_unstable();
        let n = self.latencies.len();
        let pct = |p: f64| self.latencies.get(((n as f64 * p) as usize).min(n.saturating_sub(1))).copied();
        let us = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e6);
        println!(
            "{:<14} {:>9} {:>9.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>7} {:>6} {:>6}",
            self.name,
            n,
            n as f64 / self.elapsed.as_secs_f64(),
            us(Some(self.average())),
            us(pct(0.50)),
            us(pct(0.99)),
            us(self.latencies.last().copied()),
            n - self.latencies.partition_point(|&d| d <= Duration::from_millis(10)),
            self.lost,
            self.wrong,
        );
    }
}

/// Queries the server for `length`, `inflight` queries at a time (each answer sends the next).
fn query_phase(
    name: &'static str,
    server: SocketAddr,
    packets: &[Vec<u8>],
    length: Duration,
    inflight: usize,
) -> Phase {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the client socket");
    socket.connect(server).expect("connect the client socket");
    socket.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = [0u8; 1500];
    let mut phase = Phase { name, latencies: Vec::with_capacity(1 << 20), lost: 0, wrong: 0, elapsed: Duration::ZERO };
    // By query id (= the packet's index): when the query now outstanding was sent.
    let mut sent_at: Vec<Option<Instant>> = vec![None; QUERIES];
    let (mut next, mut outstanding) = (0usize, 0usize);
    let started = Instant::now();
    loop {
        let more = started.elapsed() < length && next < MAX_QUERIES;
        while more && outstanding < inflight {
            let i = next & (QUERIES - 1);
            socket.send(&packets[i]).expect("send a query");
            sent_at[i] = Some(Instant::now());
            (next, outstanding) = (next + 1, outstanding + 1);
        }
        if outstanding == 0 {
            break;
        }
        match socket.recv(&mut buf) {
            Ok(n) if n >= 12 => {
                let id = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
                // A late answer to a query already counted lost has no send time any more.
                let Some(sent) = sent_at.get_mut(id).and_then(Option::take) else { continue };
                phase.latencies.push(sent.elapsed());
                outstanding -= 1;
                // NOERROR with an answer (ECS scope and all checked by the tests, not here).
                if buf[3] & 0x0f != 0 || buf[6..8] == [0, 0] {
                    phase.wrong += 1;
                }
            }
            Ok(_) => phase.wrong += 1,
            Err(_) => {
                phase.lost += outstanding;
                sent_at.fill(None);
                outstanding = 0;
            }
        }
    }
    phase.elapsed = started.elapsed();
    phase
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
/// Publishes as the builder task does (swap, drop the old table), or with `retire` keeps the old
/// table until the next rebuild and drops it then, when no query can hold it any more.
fn rebuild_loop(
    loaded: &geodns::app::Loaded,
    inputs: &[Inputs],
    table: &ArcSwap<RoutingTable>,
    stop: &AtomicBool,
    retire: bool,
) -> Rebuilds {
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
        let built = loaded.build(&inputs[generation as usize % inputs.len()], generation);
        let stored = Instant::now();
        let old = table.swap(Arc::new(built));
        if retire {
            drop(retired.replace(old));
        } else {
            // `store` is this swap and drop; a query holding the old table frees it instead.
            out.freed_by_queries += usize::from(Arc::strong_count(&old) > 1);
            drop(old);
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
    let shape = Shape { names, sites: 100, sites_per_name: 100 };

    // The server counts queries and durations as `geodns serve` does.
    geodns::metrics::install();
    let started = Instant::now();
    let loaded = scale::load(&shape);
    let inputs: Vec<Inputs> = (0..INPUT_ROUNDS).map(|round| scale::inputs(&loaded.config, round)).collect();
    let table = Arc::new(ArcSwap::from_pointee(loaded.build(&inputs[0], 1)));
    println!(
        "rebuild_load: {}, {inflight} quer{} in flight (loaded and first table built in {:.2?})",
        shape.label(),
        if inflight == 1 { "y" } else { "ies" },
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
        let rebuilder = scope.spawn(|| rebuild_loop(&loaded, &inputs, &table, &stop, retire));
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
            "swap, drop the table retired one rebuild ago"
        } else {
            "swap and drop the old table, as the builder"
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
