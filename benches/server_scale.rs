//! Query cost against table size, measured on the real server (issue #8): the server CPU time
//! each answer takes, with tables of 10 to 100,000 names, over loopback UDP.
//!
//! `table_scale` times the query path alone, in a loop that keeps everything else in cache;
//! this measures what an operator pays: the server's UDP thread (its receive, parse, lookup,
//! answer and send, kernel time included) per query answered, while a client thread keeps a
//! window of queries in flight. Each table size gets its own server (one UDP socket, so one
//! UDP thread), built from the generated configs of benches/common/scale.rs (100 sites over the
//! globe, every name served from 8 of them, the shipped country database, RRL off). Each sends
//! 65,536 distinct pre-built queries (A, ECS /24), names drawn uniformly from the whole table
//! and subnets from 4,096 located ones. Sizes are interleaved round by round, so drift from
//! other load on the machine hits every size alike. The server's CPU time is its UDP thread's
//! (`/proc/self/task/<tid>/schedstat`, nanoseconds).
//!
//! Prints, per size: answers, server µs per answer (over all rounds, and in its best round),
//! answers per server CPU-second, the client's rate and average latency; and the ratio of the
//! largest table's cost per answer to the smallest's (target: within 1.1x) three ways: over
//! all rounds, the median of the rounds' ratios, and best round to best round (other load on
//! the machine only adds time, so the last two are the steadier).
//!
//! Run: `cargo bench --bench server_scale`. Environment: `SERVER_SCALE_SECS` per size and round
//! (default 2), `SERVER_SCALE_ROUNDS` (default 7), `SERVER_SCALE_INFLIGHT` (default 16),
//! `SERVER_SCALE_SIZES` (comma-separated; default 10,100,1000,10000,100000). Without `--bench`
//! (`cargo test --benches`) it runs a short smoke version.

#[allow(dead_code)]
#[path = "common/scale.rs"]
mod scale;

#[allow(dead_code)]
#[path = "common/client.rs"]
mod client;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use client::query_phase;
use geodns::config::RrlConfig;
use geodns::dns::{DnsServer, Handler};
use scale::{Rng, Shape};

const SITES: usize = 100;
const SITES_PER_NAME: usize = 8;
/// Distinct queries per size (one per DNS ID).
const PACKETS: usize = 1 << 16;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// This process's threads named `geodns-udp`.
fn udp_threads() -> HashSet<u32> {
    let mut out = HashSet::new();
    for entry in std::fs::read_dir("/proc/self/task").expect("/proc/self/task").flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() == "geodns-udp"
            && let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok())
        {
            out.insert(tid);
        }
    }
    out
}

/// Nanoseconds thread `tid` has run on a CPU.
fn cpu_ns(tid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).expect("schedstat");
    text.split_whitespace().next().and_then(|v| v.parse().ok()).expect("schedstat's first field")
}

struct Sized {
    names: usize,
    server: DnsServer,
    /// The server's UDP thread.
    tid: u32,
    packets: Vec<Vec<u8>>,
    answered: usize,
    lost: usize,
    wrong: usize,
    cpu: Duration,
    wall: Duration,
    latency: Duration,
    /// Server µs per answer, round by round.
    rounds: Vec<f64>,
}

fn start(names: usize, subnets: &[std::net::Ipv4Addr], rt: &tokio::runtime::Runtime) -> Sized {
    let shape = Shape { names, sites: SITES, sites_per_name: SITES_PER_NAME };
    let loaded = scale::load(&shape);
    let table = Arc::new(ArcSwap::new(loaded.build(scale::inputs(&loaded.config, 0), 1).into_table()));
    let rrl = RrlConfig { enabled: false, ..loaded.config.server.rrl };
    let before = udp_threads();
    let server = {
        let _in_runtime = rt.enter();
        let listen = ["127.0.0.1:0".parse().unwrap()];
        DnsServer::start(Handler::new(table), &listen, &loaded.config.server.tcp, &rrl, 1).expect("start a server")
    };
    // The UDP thread starts once the runtime runs the server's task.
    let deadline = Instant::now() + Duration::from_secs(10);
    let tid = loop {
        let new: Vec<u32> = udp_threads().difference(&before).copied().collect();
        match new.as_slice() {
            [tid] => break *tid,
            [] if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            other => panic!("expected the server's one UDP thread, found {other:?}"),
        }
    };
    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ names as u64);
    let packets = (0..PACKETS)
        .map(|k| scale::wire_query(&scale::name(rng.below(names)), subnets[rng.below(subnets.len())], k as u16))
        .collect();
    Sized {
        names,
        server,
        tid,
        packets,
        answered: 0,
        lost: 0,
        wrong: 0,
        cpu: Duration::ZERO,
        wall: Duration::ZERO,
        latency: Duration::ZERO,
        rounds: Vec::new(),
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let length = Duration::from_secs_f64(env_or("SERVER_SCALE_SECS", if bench { 2.0 } else { 0.2 }));
    let rounds: usize = env_or("SERVER_SCALE_ROUNDS", if bench { 7 } else { 1 });
    let inflight: usize = env_or("SERVER_SCALE_INFLIGHT", 16).clamp(1, PACKETS / 2);
    let sizes: Vec<usize> = std::env::var("SERVER_SCALE_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| if bench { vec![10, 100, 1_000, 10_000, 100_000] } else { vec![10, 2_000] });
    assert!(!sizes.is_empty(), "SERVER_SCALE_SIZES names no size");

    // The server counts queries and durations as `geodns serve` does.
    geodns::metrics::install();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let probe = scale::load(&Shape { names: 1, sites: SITES, sites_per_name: 1 });
    let subnets = scale::located_subnets(&probe, 4096);
    let started = Instant::now();
    let mut servers: Vec<Sized> = sizes.iter().map(|&n| start(n, &subnets, &rt)).collect();
    println!(
        "server_scale: {} sizes x {SITES_PER_NAME} of {SITES} sites, {rounds} rounds of {length:.1?} each, {inflight} queries in flight (set up in {:.1?})",
        sizes.len(),
        started.elapsed()
    );
    // Warm up: sockets, the metric handles of the (name, site) pairs answered.
    for s in &servers {
        query_phase("warm-up", s.server.bound[0], &s.packets, length / 2, inflight);
    }
    for _ in 0..rounds {
        for s in &mut servers {
            let cpu0 = cpu_ns(s.tid);
            let phase = query_phase("measure", s.server.bound[0], &s.packets, length, inflight);
            let cpu = Duration::from_nanos(cpu_ns(s.tid) - cpu0);
            s.rounds.push(cpu.as_secs_f64() * 1e6 / phase.latencies.len().max(1) as f64);
            s.cpu += cpu;
            s.answered += phase.latencies.len();
            s.latency += phase.latencies.iter().sum::<Duration>();
            s.lost += phase.lost;
            s.wrong += phase.wrong;
            s.wall += phase.elapsed;
        }
    }

    println!(
        "\n{:>8} {:>10} {:>14} {:>11} {:>16} {:>10} {:>8} {:>6} {:>6}",
        "names", "answers", "server us/ans", "best round", "kans/server CPU-s", "client q/s", "avg us", "lost", "wrong"
    );
    let best = |s: &Sized| s.rounds.iter().copied().fold(f64::INFINITY, f64::min);
    let per_answer = |s: &Sized| s.cpu.as_secs_f64() * 1e6 / s.answered.max(1) as f64;
    for s in &servers {
        println!(
            "{:>8} {:>10} {:>14.3} {:>11.3} {:>16.1} {:>10.0} {:>8.1} {:>6} {:>6}",
            s.names,
            s.answered,
            per_answer(s),
            best(s),
            s.answered as f64 / s.cpu.as_secs_f64().max(1e-9) / 1e3,
            s.answered as f64 / s.wall.as_secs_f64(),
            s.latency.as_secs_f64() * 1e6 / s.answered.max(1) as f64,
            s.lost,
            s.wrong,
        );
        assert!(s.answered > 0 && s.wrong == 0, "{} names: {} answers, {} wrong", s.names, s.answered, s.wrong);
    }
    let (small, large) = (servers.first().unwrap(), servers.last().unwrap());
    // Other load on a shared machine only ever adds time, and it comes and goes: the sizes of
    // one round ran seconds apart, so their ratio round by round (its median) and the ratio of
    // each size's best round are steadier than the ratio of the totals.
    let mut per_round: Vec<f64> = large.rounds.iter().zip(&small.rounds).map(|(l, s)| l / s).collect();
    per_round.sort_by(f64::total_cmp);
    println!(
        "\nserver CPU per answer, {} names / {} names: {:.3}x over all rounds, {:.3}x the median round, {:.3}x best round to best round (target: within 1.1x)",
        large.names,
        small.names,
        per_answer(large) / per_answer(small),
        per_round[per_round.len() / 2],
        best(large) / best(small)
    );
    for s in servers {
        rt.block_on(s.server.shutdown());
    }
}
