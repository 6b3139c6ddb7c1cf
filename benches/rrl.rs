//! The cost of one response rate limiting decision (src/dns/rrl.rs): keying an encoded
//! response, and `Rrl::check` for clients under the limit, for one flooding prefix (limited,
//! which also counts the metric), and with two threads hammering the same bucket; and the
//! exemption lookup (`server.rrl.exempt`) before it.
//!
//! Run: `cargo bench --bench rrl`.

use geodns::dns::rrl;

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use geodns::model::NetSet;
use ipnet::IpNet;
use rrl::{Kind, ResponseKey, Rrl};

fn config() -> geodns::config::RrlConfig {
    geodns::config::RrlConfig {
        enabled: true,
        responses_per_second: 200,
        window: Duration::from_secs(15),
        slip: 2,
        ipv4_prefix: 24,
        ipv6_prefix: 56,
    }
}

fn bench(c: &mut Criterion) {
    geodns::metrics::install();
    // An NXDOMAIN for nope.geo.example. with the zone's SOA (owner a pointer to offset 17).
    let mut response = vec![0x12, 0x34, 0x84, 0x03, 0, 1, 0, 0, 0, 1, 0, 0];
    response.extend_from_slice(b"\x04nope\x03geo\x07example\x00\x00\x01\x00\x01");
    response.extend_from_slice(&[0xc0, 17, 0, 6, 0, 1, 0, 0, 1, 44, 0, 0]);
    c.bench_function("rrl/key from an encoded NXDOMAIN", |b| {
        b.iter(|| black_box(ResponseKey::from_response(black_box(&response))))
    });

    let rrl = Rrl::new(&config()).unwrap();
    let key = ResponseKey::new(Kind::Answer, "app.geo.example.");
    let start = Instant::now();
    let mut n: u32 = 0;
    c.bench_function("rrl/check, many prefixes under the limit", |b| {
        b.iter(|| {
            n = n.wrapping_add(256);
            black_box(rrl.check(IpAddr::from(n.to_be_bytes()), key, start))
        })
    });
    let flooded: IpAddr = "198.51.100.7".parse().unwrap();
    c.bench_function("rrl/check, one flooding prefix (limited)", |b| {
        b.iter(|| black_box(rrl.check(flooded, key, start)))
    });

    let shared = Arc::new(Rrl::new(&config()).unwrap());
    c.bench_function("rrl/check, two threads on one bucket (per check)", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    let shared = shared.clone();
                    s.spawn(move || {
                        for _ in 0..iters / 2 {
                            black_box(shared.check(flooded, key, start));
                        }
                    });
                }
            });
            t.elapsed()
        })
    });

    // The exemption lookup every UDP response pays before `check` when RRL is on.
    let loopback = NetSet::new(["127.0.0.0/8", "::1/128"].map(|n| n.parse::<IpNet>().unwrap()));
    let mut n: u32 = 0;
    c.bench_function("rrl/exempt lookup, the default set (loopback), a client outside", |b| {
        b.iter(|| {
            n = n.wrapping_add(0x0101_0101);
            black_box(loopback.contains(black_box(IpAddr::from(n.to_be_bytes()))))
        })
    });
    // A discovered cluster of 1,000 nodes: a /24 pod network and an address each, all apart.
    let nodes = NetSet::new((0..1000u32).flat_map(|i| {
        [
            IpNet::from(ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(0x0a00_0000 + (i << 10)), 24).unwrap()),
            IpNet::from(IpAddr::from((0xc633_6400u32 + i * 2).to_be_bytes())),
        ]
    }));
    assert_eq!(nodes.ranges(), 2000);
    c.bench_function("rrl/exempt lookup, 2,000 ranges (1,000 nodes), a client outside", |b| {
        b.iter(|| {
            n = n.wrapping_add(0x0101_0101);
            black_box(nodes.contains(black_box(IpAddr::from(n.to_be_bytes()))))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
