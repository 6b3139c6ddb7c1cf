//! What the health monitor costs with many targets: 2,000 addresses (as a large Kubernetes
//! discovery gives), probed over HTTP every 5 s with the default jitter, fall and rise, by the
//! real monitor and the real probe client, against real HTTP servers on loopback addresses
//! (127.1.0.1 upwards, one listener each, all on one port, answering 200 with keep-alive).
//!
//! The monitor runs on its own Tokio runtime, whose threads are named `geodns-probes`; the
//! targets' servers on another (`probe-targets`). The figure is the CPU time (user + system,
//! from `/proc/self/task/<tid>/stat`) of the monitor's threads alone over the measured window,
//! as a share of one core. Target: under 5%.
//!
//! Run: `cargo bench --bench probe_scale`. Environment: `PROBE_SCALE_TARGETS` (default 2000),
//! `PROBE_SCALE_SECS` measured (default 30, after one interval of warm-up), `PROBE_SCALE_KIND`
//! (`http`, the default, or `tcp`). Without `--bench` (`cargo test --benches`) it runs a short
//! smoke version: 50 targets for 2 s.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use geodns::config::{HealthCheck, Probe};
use geodns::sources::health::{self, Clients, State, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const INTERVAL: Duration = Duration::from_secs(5);

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The `n`th target address: 127.1.0.1, 127.1.0.2, ... (250 a block), all on loopback.
fn address(n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 1, (n / 250) as u8, (n % 250 + 1) as u8))
}

/// Clock ticks (user + system) of this process's threads named `name`.
fn thread_ticks(name: &str) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc/self/task").expect("/proc/self/task").flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // Fields after the command (which is in parentheses): state is field 3, utime 14, stime 15.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let field = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        total += field(14) + field(15);
    }
    total
}

/// Serves 200 with keep-alive on `addr` until the runtime stops.
async fn serve(listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let mut got = Vec::new();
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                while let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                    got.drain(..end + 4);
                    let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
                    if stream.write_all(reply).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
}

/// Binds one listener per target address, all on one port (retrying with another port when
/// one address has it taken).
async fn listeners(count: usize) -> (u16, Vec<TcpListener>) {
    'attempt: for _ in 0..20 {
        let first = TcpListener::bind(SocketAddr::new(address(0), 0)).await.expect("bind 127.1.0.1:0");
        let port = first.local_addr().unwrap().port();
        let mut all = vec![first];
        for n in 1..count {
            match TcpListener::bind(SocketAddr::new(address(n), port)).await {
                Ok(l) => all.push(l),
                Err(_) => continue 'attempt,
            }
        }
        return (port, all);
    }
    panic!("no port free on all {count} target addresses");
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let count: usize = if bench { env_or("PROBE_SCALE_TARGETS", 2000) } else { 50 };
    let secs: u64 = if bench { env_or("PROBE_SCALE_SECS", 30) } else { 2 };
    let kind: String = env_or("PROBE_SCALE_KIND", "http".to_owned());
    let ticks_per_sec = 100.0; // USER_HZ on Linux

    let targets_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("probe-targets")
        .enable_all()
        .build()
        .expect("targets runtime");
    let (port, listening) = targets_rt.block_on(listeners(count));
    for l in listening {
        targets_rt.spawn(serve(l));
    }

    let monitor_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("geodns-probes")
        .enable_all()
        .build()
        .expect("monitor runtime");
    let probe = match kind.as_str() {
        "tcp" => Probe::Tcp { port },
        _ => {
            Probe::Http { tls: false, tls_verify: false, path: "/healthz".into(), port, host: None, expect: (200, 399) }
        }
    };
    // The config's defaults for everything but the probe (5 s interval, 2 s timeout, 0.5 s
    // jitter, rise 2, fall 3).
    let check = HealthCheck {
        probe,
        interval: INTERVAL,
        timeout: geodns::config::DEFAULT_TIMEOUT,
        jitter: INTERVAL / 10,
        rise: geodns::config::DEFAULT_RISE,
        fall: geodns::config::DEFAULT_FALL,
    };
    let targets: Vec<Target> =
        (0..count).map(|n| Target { check: "web".into(), config: check.clone(), addr: address(n) }).collect();
    let shutdown = CancellationToken::new();
    let warm_up = if bench { INTERVAL + INTERVAL / 10 } else { Duration::from_millis(500) };
    let (before, after, snapshot) = monitor_rt.block_on(async {
        let monitor = health::spawn(targets, Clients::new().expect("probe clients"), shutdown.clone());
        tokio::time::sleep(warm_up).await;
        let before = (thread_ticks("geodns-probes"), Instant::now(), probes(&monitor));
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let after = (thread_ticks("geodns-probes"), Instant::now(), probes(&monitor));
        let snapshot = monitor.snapshot();
        shutdown.cancel();
        monitor.stopped().await;
        (before, after, snapshot)
    });
    let cpu = (after.0 - before.0) as f64 / ticks_per_sec;
    let wall = (after.1 - before.1).as_secs_f64();
    let probed = after.2 - before.2;
    let up: HashSet<_> = snapshot.endpoints.iter().filter(|(_, h)| h.state == State::Up).map(|(k, _)| k).collect();
    println!(
        "probe_scale: {count} {kind} targets every {INTERVAL:?}: {probed} probes in {wall:.1} s ({:.0}/s), \
         monitor CPU {cpu:.2} s = {:.2}% of one core ({:.1} us a probe); {} of {count} up",
        probed as f64 / wall,
        100.0 * cpu / wall,
        1e6 * cpu / probed.max(1) as f64,
        up.len()
    );
    assert!(probed > 0, "no probe completed");
    drop(targets_rt);
}

/// Probes completed so far, over every endpoint (the snapshot is refreshed at least every
/// second).
fn probes(monitor: &health::Monitor) -> u64 {
    monitor.snapshot().endpoints.values().map(|h| h.probes).sum()
}
