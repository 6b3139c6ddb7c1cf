//! Memory under spoofed floods: the state RRL and the TCP listener keep about clients stays
//! bounded when the sources are random across the whole IPv4 and IPv6 space. Prints the
//! process's resident memory (VmRSS, and the peak VmHWM) before and during each flood.
//!
//! 1. **RRL.** The limiter, with the default settings, fed directly with one decision per
//!    response, as the UDP loop asks for every send: sources uniformly random over all of IPv4
//!    and all of IPv6 (half each), names random among 100,000, NOERROR and NXDOMAIN, at most
//!    `FLOOD_RATE` decisions a second for `FLOOD_SECS` seconds. A real UDP flood from random
//!    sources needs raw sockets and root, and would measure the kernel; this measures the
//!    table, which is what could grow.
//! 2. **TCP.** The TCP loop with the default limits (1,024 connections, 32 per client), and
//!    `TCP_CONNECTIONS` connections opened one after another from random sources in
//!    127.0.0.0/8 (the only addresses a bench may use; 16 million of them), every other one
//!    stalled after one byte of a length prefix, the rest idle, none closed by the client until
//!    the server closes it, in `TCP_ROUNDS` rounds against the same listener (growth that
//!    stops after the first round is warm-up, not state kept per connection). The client drops
//!    what the server closed, so the process holds about what the server holds. At the end a
//!    new client is answered.
//!
//! Run: `cargo bench --bench flood_memory` (FLOOD_SECS=20 FLOOD_RATE=2000000
//! TCP_CONNECTIONS=20000 TCP_ROUNDS=3 by default; each phase is bounded by its count and time).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use geodns::dns::Handler;
use geodns::dns::rrl::{Kind, ResponseKey, Rrl, Verdict};
use geodns::dns::tcp::{self, TcpLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

const CONFIG: &str = r#"
server: { dns_listen: ["127.0.0.1:0"] }
sites:
  london:    { location: [51.51, -0.13] }
  frankfurt: { location: [50.11, 8.68] }
zones:
  geo.example.:
    soa: { mname: ns1, rname: hostmaster, serial: 1 }
    ns: [ns1]
    records: { ns1: { A: [127.0.0.1] } }
    geo:
      app: { ttl: 60, sites: { london: [192.0.2.1], frankfurt: [192.0.2.2] } }
"#;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// VmRSS and VmHWM of this process, in KiB.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn report(what: &str) {
    let (now, peak) = rss();
    println!("{what:<58} RSS {now:>7} KiB   peak {peak:>7} KiB");
}

/// splitmix64: enough randomness to spread sources over the address space.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn rrl_flood(secs: u64, rate: u64) {
    println!("== RRL: random sources over all of IPv4 and IPv6, at most {rate}/s for {secs} s");
    report("before the limiter");
    let config = geodns::config::parse(CONFIG, Path::new(".")).expect("bench config").server.rrl;
    let rrl = Rrl::new(&config).expect("RRL is on by default");
    report("limiter made (its fixed table)");
    let names: Vec<ResponseKey> = (0..100_000)
        .map(|i| {
            ResponseKey::new(if i % 4 == 0 { Kind::NxDomain } else { Kind::Answer }, &format!("n{i}.geo.example."))
        })
        .collect();
    report("100,000 response keys made");
    let mut rng = Rng(0x5eed);
    let started = Instant::now();
    let (mut checks, mut sent, mut limited) = (0u64, 0u64, 0u64);
    let mut next_report = 1;
    while started.elapsed() < Duration::from_secs(secs) {
        // A slice of 10,000, then wait for the rate's schedule.
        for _ in 0..10_000 {
            let r = rng.next();
            let src = if r & 1 == 0 {
                IpAddr::V4(Ipv4Addr::from((r >> 32) as u32))
            } else {
                IpAddr::V6(Ipv6Addr::from(((r as u128) << 64) | u128::from(rng.next())))
            };
            let key = names[(rng.next() % names.len() as u64) as usize];
            match rrl.check(src, key, Instant::now()) {
                Verdict::Send => sent += 1,
                _ => limited += 1,
            }
        }
        checks += 10_000;
        let due = started + Duration::from_secs_f64(checks as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if started.elapsed() >= Duration::from_secs(next_report) {
            report(&format!("after {next_report:>2} s: {checks} decisions"));
            next_report += if next_report < 5 { 1 } else { 5 };
        }
    }
    let took = started.elapsed().as_secs_f64();
    println!("{checks} decisions in {took:.1} s ({:.0}/s): {sent} sent, {limited} limited", checks as f64 / took);
    report("after the RRL flood");
}

async fn tcp_flood(connections: usize, rounds: usize) {
    println!(
        "== TCP: {rounds} rounds of {connections} connections from random 127.0.0.0/8 sources, half stalled after one byte"
    );
    report("before the listener");
    let config = geodns::config::parse(CONFIG, Path::new(".")).expect("bench config");
    let limits = TcpLimits::from(&config.server.tcp);
    let loaded = geodns::app::open(config).expect("no GeoIP database to open");
    let handler =
        Handler::new(Arc::new(ArcSwap::new(loaded.build(geodns::routing::Inputs::default(), 1).into_table())));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tcp::spawn(listener, handler, limits, shutdown.clone());
    report(&format!(
        "listener up (limits {} in all, {} per client)",
        limits.max_connections, limits.max_connections_per_client
    ));
    let mut rng = Rng(0xc0ffee);
    let mut held: Vec<TcpStream> = Vec::new();
    for round in 1..=rounds {
        let started = Instant::now();
        let mut peak_held = 0;
        for i in 0..connections {
            let r = rng.next();
            let src = Ipv4Addr::new(127, (r >> 8) as u8, (r >> 16) as u8, ((r >> 24) as u8).max(1));
            let socket = TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(src.into(), 0)).expect("bind a loopback source");
            let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(5), socket.connect(server)).await else {
                println!("connection {i} from {src} not made in 5 s; stopping");
                break;
            };
            if i % 2 == 0 {
                let _ = stream.write_all(&[0]).await;
            }
            held.push(stream);
            if (i + 1) % (connections / 10).max(1000) == 0 {
                // Drop what the server has closed (EOF, or reset); keep the rest open.
                tokio::time::sleep(Duration::from_millis(20)).await;
                held.retain_mut(|s| {
                    let mut b = [0u8; 1];
                    matches!(s.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                });
                peak_held = peak_held.max(held.len());
                report(&format!("round {round}: after {:>6} connections, {:>5} still open", i + 1, held.len()));
            }
        }
        println!(
            "round {round}: {connections} connections in {:.1} s; at most {peak_held} open at a check",
            started.elapsed().as_secs_f64()
        );
    }
    // A newcomer is still answered.
    let mut stream = TcpStream::connect(server).await.expect("connect");
    let q = [
        0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'a', b'p', b'p', 3, b'g', b'e', b'o', 7, b'e', b'x', b'a', b'm',
        b'p', b'l', b'e', 0, 0, 1, 0, 1,
    ];
    stream.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
    stream.write_all(&q).await.unwrap();
    let len = tokio::time::timeout(Duration::from_secs(5), stream.read_u16()).await.expect("an answer").unwrap();
    println!("a new client is answered ({len} bytes)");
    drop(held);
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    report("after the TCP flood, all closed");
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs it briefly.
    let bench = std::env::args().any(|a| a == "--bench");
    let secs = env_or("FLOOD_SECS", if bench { 20 } else { 1 });
    let rate = env_or("FLOOD_RATE", 2_000_000);
    let connections = env_or("TCP_CONNECTIONS", if bench { 20_000 } else { 2_000 });
    let rounds = env_or("TCP_ROUNDS", if bench { 3 } else { 1 });
    rrl_flood(secs, rate);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(tcp_flood(connections, rounds));
}
