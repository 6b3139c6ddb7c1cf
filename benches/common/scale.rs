//! Large generated configs for the scale benchmarks (`table_scale`, `rebuild_load`), written as
//! YAML and loaded through the real parse -> validate -> open GeoIP path.
//!
//! Shape: `sites` sites (100 in the benchmarks) on a Fibonacci lattice over the whole globe;
//! `names` geo names `n<i>.r<i % 16>.scale.example.` (so 16 empty non-terminals), each with the
//! health check `web` and served from `sites_per_name` sites, with one IPv4 and one IPv6 address
//! of its own at each site; and a few static names (apex TXT, ns1 A, www CNAME, static A/AAAA).
//! Names share [`SITE_SETS`] site lists (name i has list `i % SITE_SETS`: sites
//! `(7 * list + 13k) % sites` for k in 0..sites_per_name), as names of one deployment share a few
//! footprints; fewer than the 8 site sets that get precomputed rankings (`routing::rank`), so
//! every name is answered from them. GeoIP: the shipped country database.

use std::collections::HashSet;
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use geodns::app::{self, Loaded};
use geodns::config::Config;
use geodns::routing::Inputs;

pub const ZONE: &str = "scale.example.";

/// Distinct site lists the names are spread over.
pub const SITE_SETS: usize = 4;

#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub names: usize,
    pub sites: usize,
    pub sites_per_name: usize,
}

impl Shape {
    pub fn label(&self) -> String {
        if self.sites_per_name == self.sites {
            format!("{} names x {} sites", self.names, self.sites)
        } else {
            format!("{} names x {} of {} sites", self.names, self.sites_per_name, self.sites)
        }
    }
}

/// The absolute name of geo name `i`.
pub fn name(i: usize) -> String {
    format!("n{i}.r{}.{ZONE}", i % 16)
}

/// The sites of name `i`, in its configured order.
pub fn sites_of(shape: &Shape, i: usize) -> impl Iterator<Item = usize> {
    let (n, list) = (shape.sites, i % SITE_SETS);
    (0..shape.sites_per_name).map(move |k| (7 * list + 13 * k) % n)
}

/// Name `i`'s own addresses at `site`.
pub fn addrs(shape: &Shape, i: usize, site: usize) -> (Ipv4Addr, Ipv6Addr) {
    let k = (i * shape.sites + site) as u32;
    (
        Ipv4Addr::from(0x0a00_0000 | (k & 0x00ff_ffff)),
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, (k >> 16) as u16, k as u16),
    )
}

/// A site's location: a Fibonacci lattice, evenly spread over the sphere.
pub fn location(site: usize, sites: usize) -> (f64, f64) {
    let golden = std::f64::consts::PI * (3.0 - 5f64.sqrt());
    let lat = (1.0 - 2.0 * (site as f64 + 0.5) / sites as f64).asin().to_degrees();
    let lon = ((site as f64 * golden).to_degrees() % 360.0) - 180.0;
    (lat, lon)
}

pub fn yaml(shape: &Shape) -> String {
    // 13 coprime with the site count: a name's sites are distinct.
    assert!(!shape.sites.is_multiple_of(13) && shape.sites_per_name <= shape.sites);
    let mut y = String::with_capacity(shape.names * shape.sites_per_name * 48 + 4096);
    let db = Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip/geo-whois-asn-country.mmdb");
    writeln!(y, "geoip: {{ database: {:?} }}", db.display().to_string()).unwrap();
    y.push_str("health_checks:\n  web: { tcp: { port: 80 }, interval: 5s, timeout: 2s }\nsites:\n");
    for s in 0..shape.sites {
        let (lat, lon) = location(s, shape.sites);
        writeln!(y, "  s{s:03}: {{ location: [{lat:.4}, {lon:.4}] }}").unwrap();
    }
    writeln!(y, "zones:\n  {ZONE}:").unwrap();
    writeln!(y, "    soa: {{ mname: ns1.{ZONE}, rname: hostmaster.{ZONE}, serial: 1, minimum: 300 }}").unwrap();
    writeln!(y, "    ns: [ns1.{ZONE}]\n    ttl: 300\n    records:").unwrap();
    y.push_str("      \"@\": { TXT: [\"scale benchmark zone\"] }\n      ns1: { A: [192.0.2.53] }\n");
    y.push_str("      www: { CNAME: n0.r0 }\n      static: { A: [192.0.2.54], AAAA: [\"2001:db8::54\"] }\n");
    y.push_str("    geo:\n");
    for i in 0..shape.names {
        write!(y, "      n{i}.r{}: {{ ttl: 60, health_check: web, sites: {{ ", i % 16).unwrap();
        for s in sites_of(shape, i) {
            let (v4, v6) = addrs(shape, i, s);
            write!(y, "s{s:03}: [{v4}, \"{v6}\"], ").unwrap();
        }
        y.push_str("} }\n");
    }
    y
}

/// Parses, validates and opens a generated config, as `geodns serve` loads a file.
pub fn load(shape: &Shape) -> Loaded {
    let text = yaml(shape);
    let config = geodns::config::parse(&text, Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("the generated config is valid: {:?}", &e.problems()[..1]));
    app::open(config).expect("the shipped GeoIP database opens")
}

/// Run-time inputs as the builder passes them after health probes have run: about 1% of the
/// endpoints judged down (which ones moves with `round`, as flips would), nothing forced.
pub fn inputs(config: &Config, round: usize) -> Inputs {
    let mut endpoint_down = HashSet::new();
    for (i, g) in config.zones.iter().flat_map(|z| &z.geo).enumerate() {
        for (site, addrs) in &g.sites {
            if (i * 31 + site + round).is_multiple_of(97) {
                for a in addrs.iter().filter(|a| a.is_ipv4()) {
                    endpoint_down.insert(("web".to_owned(), *a));
                }
            }
        }
    }
    Inputs { endpoint_down, ..Inputs::default() }
}

/// `base` with `count` endpoints (IPv4 addresses of random names at random sites of theirs)
/// flipped: down ones up, up ones down, as one health snapshot after a few probes changed their
/// verdicts. Which ones moves with `round`.
pub fn flipped(config: &Config, base: &Inputs, round: u64, count: usize) -> Inputs {
    let geo: Vec<_> = config.zones.iter().flat_map(|z| &z.geo).collect();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ round.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut out = base.clone();
    for _ in 0..count {
        let g = geo[rng.below(geo.len())];
        let (_, addrs) = &g.sites[rng.below(g.sites.len())];
        for a in addrs.iter().filter(|a| a.is_ipv4()) {
            let key = ("web".to_owned(), *a);
            if !out.endpoint_down.remove(&key) {
                out.endpoint_down.insert(key);
            }
        }
    }
    out
}

/// A small xorshift generator: deterministic, no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `count` distinct /24 client subnets the country database places somewhere (so every query
/// takes the nearest-site path, not the no-location one), spread over the IPv4 space.
pub fn located_subnets(loaded: &Loaded, count: usize) -> Vec<Ipv4Addr> {
    let locator = loaded.locator();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let ip = Ipv4Addr::from((rng.next() as u32) & 0xffff_ff00);
        if locator.locate(IpAddr::V4(ip)).location.is_some() && seen.insert(ip) {
            out.push(ip);
        }
    }
    out
}

/// An A query for `name` with EDNS (1232) and an ECS option for `subnet`/24.
pub fn wire_query(name: &str, subnet: Ipv4Addr, id: u16) -> Vec<u8> {
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
    use hickory_proto::rr::{Name, RecordType};
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(IpAddr::V4(subnet), 24, 0)));
    m.set_edns(edns);
    m.to_vec().unwrap()
}
