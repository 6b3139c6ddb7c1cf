//! The precomputed rankings (routing::rank) and the fast path (`quick_geo`) against the
//! per-query decision, on the shipped GeoIP database: for IPv4 and IPv6 clients, A and AAAA,
//! names with and without `max_answers` and with several addresses a site, clients in client
//! networks, with and without sites down. Every sampled client gets the same answer from all
//! three; the ECS scope is never narrower than the database network's and always true (every
//! address of the scope block gets the same answer).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use geodns::load::{self, Loaded};
use geodns::model::{Location, Locator, Name, RType, RangeLocation};
use geodns::routing::{self, Inputs, Query, RoutingTable};

/// The example's sites and database, with names that exercise every option of a geo name.
const CONFIG: &str = r#"
geoip: { database: "{db}" }
sites:
  london:    { location: [51.51, -0.13] }
  frankfurt: { location: [50.11, 8.68] }
  seattle:   { location: [47.61, -122.33] }
  singapore: { location: [1.35, 103.82] }
client_networks:
  - { cidr: 10.42.0.0/16, site: london }
  - { cidr: 10.42.7.0/24, site: singapore }
  - { cidr: "fd00:42::/32", site: seattle }
health_checks:
  web: { tcp: { port: 80 } }
zones:
  geo.example.:
    soa: { mname: ns1.geo.example., rname: hostmaster.geo.example., serial: 1 }
    ns: [ns1.geo.example.]
    records: { ns1: { A: [127.0.0.1] } }
    geo:
      app:
        ttl: 60
        sites:
          london:    [192.0.2.1, "2001:db8::1"]
          frankfurt: [192.0.2.2, "2001:db8::2"]
          seattle:   [192.0.2.3, "2001:db8::3"]
          singapore: [192.0.2.4, "2001:db8::4"]
      one:
        max_answers: 1
        health_check: web
        sites:
          london:    [192.0.2.11, 192.0.2.12, "2001:db8::11"]
          frankfurt: [192.0.2.21, 192.0.2.22, "2001:db8::21", "2001:db8::22"]
          seattle:   [192.0.2.31]
          singapore: [192.0.2.41, "2001:db8::41"]
      three:
        max_answers: 3
        health_check: web
        sites:
          london:    [192.0.2.11, 192.0.2.12, "2001:db8::11"]
          frankfurt: [192.0.2.21, "2001:db8::21", "2001:db8::22"]
          seattle:   [192.0.2.31, 192.0.2.32]
          singapore: [192.0.2.41, "2001:db8::41"]
      v4only:
        sites: { london: [192.0.2.51], singapore: [192.0.2.54] }
"#;

const NAMES: [&str; 4] = ["app.geo.example.", "one.geo.example.", "three.geo.example.", "v4only.geo.example."];

fn example() -> Loaded {
    let db = Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip/geo-whois-asn-country.mmdb");
    let config = geodns::config::parse(&CONFIG.replace("{db}", &db.display().to_string()), Path::new("."))
        .unwrap_or_else(|e| panic!("{:?}", e.problems()));
    load::open(config).expect("the shipped database opens")
}

/// A deterministic 64-bit sequence.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 11
    }
}

/// Sampled clients: IPv4 addresses anywhere, IPv6 addresses inside the database's located
/// IPv6 networks (and some anywhere), and addresses of the client networks, each with the
/// source prefix a resolver would send (or none).
fn clients(loaded: &Loaded, n: usize) -> Vec<(IpAddr, Option<u8>)> {
    let db = loaded.geoip.clone().expect("a database");
    let mut located: Vec<(u128, u128)> = Vec::new();
    assert!(db.for_each_ipv6_range(&mut |first, last, place| {
        // Global unicast (2000::/3): the IPv4 data the tree also holds at ::/96 is no IPv6
        // client's address.
        if matches!(place, RangeLocation::At(_)) && first >> 125 == 1 {
            located.push((first, last));
        }
    }));
    assert!(located.len() > 1000, "the shipped database places IPv6 networks");
    let mut rng = Lcg(0x2545_f491);
    let mut out = Vec::new();
    for i in 0..n {
        let r = rng.next();
        let ip = match i % 8 {
            0..=3 => IpAddr::V4(Ipv4Addr::from(r as u32)),
            4 | 5 => {
                let (first, last) = located[(r as usize) % located.len()];
                let span = last - first;
                let offset =
                    if span == u128::MAX { u128::from(rng.next()) } else { u128::from(rng.next()) % (span + 1) };
                IpAddr::V6(Ipv6Addr::from(first + offset))
            }
            6 => IpAddr::V6(Ipv6Addr::from((u128::from(rng.next()) << 64) | u128::from(rng.next()))),
            _ => match r % 3 {
                0 => IpAddr::V4(Ipv4Addr::from(0x0a2a_0000 | (r as u32 >> 16))),
                1 => IpAddr::V4(Ipv4Addr::from(0x0a2a_0700 | (r as u32 >> 24))),
                _ => IpAddr::V6(Ipv6Addr::from((0xfd00_0042_u128 << 96) | u128::from(rng.next()))),
            },
        };
        let source = match (ip, r % 4) {
            (_, 0) => None,
            (IpAddr::V4(_), _) => Some(24),
            (IpAddr::V6(_), 1) => Some(48),
            (IpAddr::V6(_), _) => Some(56),
        };
        out.push((ip, source));
    }
    out
}

/// The ECS address a resolver sends: the client truncated to the source prefix.
fn truncate(ip: IpAddr, source: Option<u8>) -> IpAddr {
    let Some(len) = source else { return ip };
    match ip {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & (u32::MAX << (32 - u32::from(len))))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & (u128::MAX << (128 - u32::from(len))))),
    }
}

fn ask(table: &RoutingTable, name: &Name, rtype: RType, client: IpAddr, source: Option<u8>) -> (Vec<String>, u8) {
    let a = table.resolve(&Query { name, rtype, client, ecs_source: source });
    (a.answers.iter().map(|r| r.data.to_string()).collect(), a.scope)
}

/// Some addresses of the block of `len` bits around `ip`.
fn block_samples(ip: IpAddr, len: u8) -> Vec<IpAddr> {
    match ip {
        IpAddr::V4(a) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            let (lo, hi) = (u32::from(a) & mask, u32::from(a) | !mask);
            [lo, hi, lo + (hi - lo) / 3, lo + (hi - lo) / 2, hi - (hi - lo) / 7]
                .into_iter()
                .map(|x| IpAddr::V4(Ipv4Addr::from(x)))
                .collect()
        }
        IpAddr::V6(a) => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            let (lo, hi) = (u128::from(a) & mask, u128::from(a) | !mask);
            [lo, hi, lo + (hi - lo) / 3, lo + (hi - lo) / 2, hi - (hi - lo) / 7]
                .into_iter()
                .map(|x| IpAddr::V6(Ipv6Addr::from(x)))
                .collect()
        }
    }
}

fn compare(inputs: &Inputs) {
    let loaded = example();
    let ranked = loaded.build_settled(inputs.clone(), 1);
    assert!(!loaded.rankings_pending(), "the rank tables are built");
    for route in ranked.geo_routes() {
        assert!(route.rank_table().is_some() && route.rank_table6().is_some(), "{}: both families ranked", route.name);
    }
    // The same inputs without precomputed rankings: the per-query decision.
    let plain = routing::build(&loaded.config, loaded.locator(), inputs.clone(), 1);
    let samples = clients(&loaded, 12_000);
    let (mut quick, mut asked, mut wider, mut ecs_asked) = (0, 0, 0, 0);
    let mut quick_v6 = 0;
    for (i, &(ip, source)) in samples.iter().enumerate() {
        let client = truncate(ip, source);
        let name_text = NAMES[i % NAMES.len()];
        let name = Name::parse_absolute(name_text).unwrap();
        for rtype in [RType::A, RType::Aaaa] {
            asked += 1;
            let (want, plain_scope) = ask(&plain, &name, rtype, client, source);
            let (got, scope) = ask(&ranked, &name, rtype, client, source);
            assert_eq!(got, want, "{name_text} {rtype:?} for {client}");
            assert!(scope <= plain_scope, "{client}: scope /{scope} is narrower than the per-query /{plain_scope}");
            if source.is_some() {
                ecs_asked += 1;
                wider += usize::from(scope < plain_scope);
            }
            if let Some(g) = ranked.quick_geo(name_text, rtype, client, source) {
                quick += 1;
                quick_v6 += usize::from(client.is_ipv6());
                let addrs: Vec<String> = if rtype == RType::Aaaa {
                    g.v6().map(ToString::to_string).collect()
                } else {
                    g.v4().map(ToString::to_string).collect()
                };
                assert_eq!(addrs, want, "quick {name_text} {rtype:?} for {client}");
                assert_eq!(g.scope, scope, "quick and full paths give {client} the same scope");
            }
            // Every address of the scope block gets the same answer: a scope is only sent with
            // ECS, and one as long as the source prefix says only that the answer is for the
            // source network the resolver sent (the database may split it finer).
            let block = if source.is_some_and(|s| scope < s) { block_samples(client, scope) } else { Vec::new() };
            for probe in block {
                assert_eq!(
                    ask(&plain, &name, rtype, probe, source).0,
                    want,
                    "{client} scope /{scope}: {probe} differs"
                );
            }
        }
    }
    println!("{quick} of {asked} answers on the fast path ({quick_v6} for IPv6 clients); {wider} scopes wider");
    assert!(quick * 10 >= asked * 8, "most answers take the fast path ({quick} of {asked})");
    assert!(quick_v6 * 4 >= quick, "IPv6 clients take it too ({quick_v6})");
    println!("{wider} of {ecs_asked} ECS answers with a scope wider than the database network's");
    assert!(wider * 10 >= ecs_asked, "the widest scope is wider than the database network for many clients ({wider})");
}

#[test]
fn precomputed_rankings_answer_as_the_per_query_decision() {
    compare(&Inputs::default());
}

#[test]
fn precomputed_rankings_answer_as_the_per_query_decision_with_sites_down() {
    // london (0) and frankfurt (1) down: European clients go to the next nearest.
    compare(&Inputs { sites_down: HashSet::from([0, 1]), ..Inputs::default() });
}

#[test]
fn precomputed_rankings_answer_as_the_per_query_decision_with_addresses_down() {
    let down = ["192.0.2.11", "192.0.2.21", "2001:db8::21", "192.0.2.4", "2001:db8::41"];
    let endpoint_down = down.iter().map(|a| ("web".to_owned(), a.parse().unwrap())).collect();
    compare(&Inputs { endpoint_down, sites_down: HashSet::from([2]), ..Inputs::default() });
}

#[test]
fn the_database_walk_covers_ipv4_and_agrees_with_lookups() {
    let loaded = example();
    let db = loaded.geoip.clone().expect("the example names a database");
    let mut ranges: Vec<(u32, u32, Option<Location>)> = Vec::new();
    assert!(db.for_each_ipv4_range(&mut |first, last, loc| ranges.push((first, last, loc))));
    assert_eq!(ranges.first().map(|r| r.0), Some(0));
    assert_eq!(ranges.last().map(|r| r.1), Some(u32::MAX));
    for pair in ranges.windows(2) {
        assert_eq!(pair[0].1.wrapping_add(1), pair[1].0, "ranges are consecutive");
    }
    let mut rng = Lcg(7);
    for addr in (0..20_000).map(|_| rng.next() as u32).chain([0x0a00_0001, 0x7f00_0001, 0xc0a8_0101, 0xe000_0001]) {
        let i = ranges.partition_point(|r| r.0 <= addr) - 1;
        let hit = db.locate(IpAddr::V4(Ipv4Addr::from(addr)));
        assert_eq!(ranges[i].2, hit.location, "{}", Ipv4Addr::from(addr));
    }
}

#[test]
fn the_database_walk_covers_ipv6_and_agrees_with_lookups() {
    let loaded = example();
    let db = loaded.geoip.clone().expect("the example names a database");
    let mut ranges: Vec<(u128, u128, RangeLocation)> = Vec::new();
    assert!(db.for_each_ipv6_range(&mut |first, last, place| ranges.push((first, last, place))));
    assert_eq!(ranges.first().map(|r| r.0), Some(0));
    assert_eq!(ranges.last().map(|r| r.1), Some(u128::MAX));
    for pair in ranges.windows(2) {
        assert_eq!(pair[0].1.wrapping_add(1), pair[1].0, "ranges are consecutive");
    }
    let located: Vec<&(u128, u128, RangeLocation)> =
        ranges.iter().filter(|r| matches!(r.2, RangeLocation::At(_))).collect();
    let mut rng = Lcg(11);
    let specials = ["::1", "fe80::1", "fd00::1", "ff02::1", "::ffff:8.8.8.8", "2002:808:808::1"];
    let sampled = (0..20_000).map(|k| {
        let r = rng.next();
        if k % 2 == 0 {
            let (first, last, _) = *located[r as usize % located.len()];
            first + u128::from(rng.next()) % (last - first).max(1)
        } else {
            (u128::from(r) << 64) | u128::from(rng.next())
        }
    });
    for addr in sampled.chain(specials.iter().map(|s| u128::from(s.parse::<Ipv6Addr>().unwrap()))) {
        let i = ranges.partition_point(|r| r.0 <= addr) - 1;
        let hit = db.locate(IpAddr::V6(Ipv6Addr::from(addr)));
        match ranges[i].2 {
            RangeLocation::At(l) => assert_eq!(Some(l), hit.location, "{}", Ipv6Addr::from(addr)),
            RangeLocation::Nowhere => assert_eq!(None, hit.location, "{}", Ipv6Addr::from(addr)),
            RangeLocation::PerAddress => {}
        }
    }
}
