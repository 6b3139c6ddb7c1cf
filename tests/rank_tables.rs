//! The precomputed IPv4 rankings (routing::rank) against the per-query decision, on the shipped
//! GeoIP database and the shipped example config: the same answers for every sampled client,
//! with and without a site down, and an ECS scope that is never narrower than the database
//! network's and always true (every address of the scope block gets the same answer).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use geodns::app;
use geodns::model::{Location, Locator, Name, RType};
use geodns::routing::{self, Inputs, Query, RoutingTable};

fn example() -> app::Loaded {
    app::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml")).expect("the example loads")
}

/// A deterministic spread of IPv4 addresses (a 32-bit LCG).
fn addresses(n: usize) -> impl Iterator<Item = u32> {
    let mut x: u32 = 0x2545_f491;
    (0..n).map(move |_| {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        x
    })
}

fn ask(table: &RoutingTable, name: &Name, client: u32, source: u8) -> (Vec<String>, u8) {
    let a = table.resolve(&Query {
        name,
        rtype: RType::A,
        client: IpAddr::V4(Ipv4Addr::from(client)),
        ecs_source: Some(source),
    });
    (a.answers.iter().map(|r| format!("{:?}", r.data)).collect(), a.scope)
}

fn compare(inputs: &Inputs) {
    let loaded = example();
    let ranked = loaded.build_settled(inputs.clone(), 1);
    assert!(
        !loaded.rankings_pending() && ranked.geo_routes().all(|r| r.rank_table().is_some()),
        "the rank table is built"
    );
    // The same inputs without precomputed rankings: the per-query decision.
    let plain = routing::build(&loaded.config, loaded.locator(), inputs.clone(), 1);
    let app = Name::parse_absolute("app.geo.example.").unwrap();
    let (mut quick, mut wider) = (0, 0);
    let samples = 20_000;
    for addr in addresses(samples) {
        let client = IpAddr::V4(Ipv4Addr::from(addr));
        let (want, plain_scope) = ask(&plain, &app, addr, 32);
        let (got, scope) = ask(&ranked, &app, addr, 32);
        assert_eq!(got, want, "answer for {client}");
        assert!(scope <= plain_scope, "{client}: scope /{scope} is narrower than the per-query /{plain_scope}");
        wider += usize::from(scope < plain_scope);
        if let Some(g) = ranked.quick_geo("app.geo.example.", RType::A, client, Some(32)) {
            quick += 1;
            let addrs: Vec<String> = g.site.v4.iter().map(|a| format!("{:?}", geodns::model::RData::A(*a))).collect();
            assert_eq!(addrs, want, "quick answer for {client}");
            assert_eq!(g.scope, scope, "quick and full paths give {client} the same scope");
        }
        // Every address of the scope block gets the same answer (first, last, and some between).
        let mask = if scope == 0 { 0 } else { u32::MAX << (32 - scope) };
        let (lo, hi) = (addr & mask, addr | !mask);
        for probe in [lo, hi, lo + (hi - lo) / 3, lo + (hi - lo) / 2, hi - (hi - lo) / 7] {
            assert_eq!(
                ask(&plain, &app, probe, 32).0,
                want,
                "{client} scope /{scope}: {} differs",
                Ipv4Addr::from(probe)
            );
        }
    }
    // Client-network addresses never take the quick path, and keep their own scope.
    assert!(ranked.quick_geo("app.geo.example.", RType::A, "10.42.1.1".parse().unwrap(), Some(24)).is_none());
    assert!(quick * 10 >= samples * 9, "most clients take the quick path ({quick} of {samples})");
    assert!(wider * 5 >= samples, "the widest scope is wider than the database network for many clients ({wider})");
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
    for addr in addresses(20_000).chain([0x0a00_0001, 0x7f00_0001, 0xc0a8_0101, 0xe000_0001]) {
        let i = ranges.partition_point(|r| r.0 <= addr) - 1;
        let hit = db.locate(IpAddr::V4(Ipv4Addr::from(addr)));
        assert_eq!(ranges[i].2, hit.location, "{}", Ipv4Addr::from(addr));
    }
}
