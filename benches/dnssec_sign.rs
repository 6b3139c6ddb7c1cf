//! Signing ahead of time at scale (issue #21): the time and memory to sign every RRset of a
//! large table (each geo name's every possible answer, per type), and to sign the table that
//! follows one health flip (signatures of unchanged RRsets reused).
//!
//! Run: `cargo bench --bench dnssec_sign`. Shapes from benches/common/scale.rs (the shipped
//! country database, 100 sites over the globe, one IPv4 and one IPv6 address per name and
//! site, default `max_answers`: per name and type, one answer per site and the union of all).
//! `DNSSEC_SIGN_SHAPES=10000x8,10000x100` (names x sites per name) picks the shapes; the
//! default is 10,000 names x 8 of 100 sites, then 10,000 names x all 100 sites.
//! Memory is the process's resident set before and after (Linux), a rough figure.

#[allow(dead_code)]
#[path = "common/scale.rs"]
mod scale;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use geodns::dnssec::{Algorithm, Lifetimes, SigningKey, ZoneKeys, keys, sign_table};
use geodns::model::Name;
use scale::Shape;

fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken from the command line.
    let shapes: Vec<(usize, usize)> = std::env::var("DNSSEC_SIGN_SHAPES")
        .ok()
        .map(|s| {
            s.split(',')
                .map(|p| {
                    let (n, k) = p.split_once('x').expect("NAMESxSITES");
                    (n.parse().expect("names"), k.parse().expect("sites per name"))
                })
                .collect()
        })
        .unwrap_or_else(|| vec![(10_000, 8), (10_000, 100)]);
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    for alg in [Algorithm::EcdsaP256Sha256] {
        let key = SigningKey::from_pem(&keys::generate(alg).unwrap()).unwrap();
        let lifetimes =
            Lifetimes { validity: Duration::from_secs(14 * 86_400), refresh: Duration::from_secs(7 * 86_400) };
        let zones = [ZoneKeys { apex: Name::parse_absolute(scale::ZONE).unwrap(), keys: vec![key], lifetimes }];
        for (names, per_name) in &shapes {
            let shape = Shape { names: *names, sites: 100, sites_per_name: *per_name };
            let loaded = scale::load(&shape);
            let inputs = Arc::new(scale::inputs(&loaded.config, 0));
            let built = loaded.build(inputs.clone(), 1);
            let before = rss_mib();
            let started = Instant::now();
            let (signed, stats) = sign_table(built.table(), &zones, now, None);
            let took = started.elapsed();
            let grown = rss_mib() - before;
            println!(
                "{alg:?} {}: full signing {:.2} s, {} RRsets signed ({:.1} us each), about {grown:.0} MiB",
                shape.label(),
                took.as_secs_f64(),
                stats.signed,
                took.as_secs_f64() * 1e6 / stats.signed.max(1) as f64,
            );
            built.table().set_signed(Arc::new(signed));
            // One endpoint flips: the incremental rebuild, then its signing.
            let flipped = scale::flipped(&loaded.config, &inputs, 1, 1);
            let started = Instant::now();
            let next = loaded.rebuild(&built, flipped, 2);
            let rebuilt = started.elapsed();
            let started = Instant::now();
            let (_, stats) =
                sign_table(next.table(), &zones, now, Some((built.table(), built.table().signed().unwrap())));
            println!(
                "{alg:?} {}: after one flip, rebuild {:.1} ms, signing {:.1} ms ({} signed, {} reused)",
                shape.label(),
                rebuilt.as_secs_f64() * 1e3,
                started.elapsed().as_secs_f64() * 1e3,
                stats.signed,
                stats.reused,
            );
        }
    }
}
