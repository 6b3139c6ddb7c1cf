//! Routing decisions on hand-built configs and a hand-built locator.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::config;
use crate::model::{GeoHit, Location, Locator, Name, RData, RType};

/// A locator from a fixed table of networks.
struct Map(Vec<(ipnet::IpNet, Location)>);

impl Locator for Map {
    fn locate(&self, ip: IpAddr) -> GeoHit {
        for (net, loc) in &self.0 {
            if net.contains(&ip) {
                return GeoHit { location: Some(*loc), country: None, prefix_len: net.prefix_len() };
            }
        }
        GeoHit::default()
    }
}

const CONFIG: &str = r#"
sites:
  london:    { location: [51.51, -0.13] }
  frankfurt: { location: [50.11, 8.68] }
  seattle:   { location: [47.61, -122.33] }
  singapore: { location: [1.35, 103.82] }
client_networks:
  - { cidr: 10.42.0.0/16, site: seattle }
health_checks:
  web: { tcp: { port: 80 } }
zones:
  geo.example.:
    soa: { mname: ns1, rname: hostmaster, serial: 7, minimum: 60 }
    ns: [ns1, ns2.elsewhere.org.]
    ttl: 300
    records:
      "@":      { TXT: ["apex text"], MX: ["10 mail"] }
      ns1:      { A: [127.0.0.1], AAAA: ["::1"] }
      www:      { CNAME: app }
      chain:    { CNAME: www }
      away:     { CNAME: www.elsewhere.org. }
      host.ent: { A: [192.0.2.54] }
    geo:
      app:
        ttl: 60
        health_check: web
        sites:
          london:    [192.0.2.1, "2001:db8::1"]
          frankfurt: [192.0.2.2, "2001:db8::2"]
          seattle:   [192.0.2.3, "2001:db8::3"]
          singapore: [192.0.2.4, "2001:db8::4"]
      multi:
        max_answers: 3
        sites:
          frankfurt: [192.0.2.21, 192.0.2.22]
          london:    [192.0.2.11, 192.0.2.12]
          singapore: [192.0.2.41]
      v4only:
        sites:
          london: [192.0.2.1]
          singapore: [192.0.2.4]
      single:
        sites:
          london: [192.0.2.99]
"#;

fn locator() -> Arc<dyn Locator> {
    Arc::new(Map(vec![
        ("81.2.69.0/24".parse().unwrap(), Location::new(51.5, -0.1)), // London
        ("5.9.0.0/16".parse().unwrap(), Location::new(50.5, 12.0)),   // Germany
        ("103.6.148.0/22".parse().unwrap(), Location::new(1.3, 103.8)), // Singapore
        ("8.8.0.0/16".parse().unwrap(), Location::new(37.4, -122.1)), // California
        ("2a01:4f8::/32".parse().unwrap(), Location::new(50.5, 12.0)), // Germany, IPv6
        ("200.160.0.0/20".parse().unwrap(), Location::new(-23.5, -46.6)), // Sao Paulo
    ]))
}

fn table_with(inputs: &Inputs) -> Built {
    let config = config::parse(CONFIG, Path::new(".")).expect("test config is valid");
    build(&config, locator(), inputs.clone(), 1)
}

fn table() -> Built {
    table_with(&Inputs::default())
}

fn n(s: &str) -> Name {
    Name::parse_absolute(s).unwrap()
}

fn ask(t: &RoutingTable, name: &str, rtype: RType, client: &str, ecs: Option<u8>) -> Answer {
    let name = n(name);
    t.resolve(&Query { name: &name, rtype, client: client.parse().unwrap(), ecs_source: ecs })
}

fn addrs(a: &Answer) -> Vec<String> {
    a.answers.iter().map(|r| r.data.to_string()).collect()
}

fn site_names(t: &RoutingTable, ids: &[usize]) -> Vec<String> {
    ids.iter().map(|i| t.sites()[*i].name.clone()).collect()
}

#[test]
fn nearest_site_by_great_circle_distance() {
    let t = table();
    assert_eq!(addrs(&ask(&t, "app.geo.example.", RType::A, "81.2.69.1", None)), ["192.0.2.1"]);
    assert_eq!(addrs(&ask(&t, "app.geo.example.", RType::A, "5.9.1.1", None)), ["192.0.2.2"]);
    assert_eq!(addrs(&ask(&t, "app.geo.example.", RType::A, "103.6.149.1", None)), ["192.0.2.4"]);
    assert_eq!(addrs(&ask(&t, "app.geo.example.", RType::A, "8.8.8.8", None)), ["192.0.2.3"]);
    assert_eq!(addrs(&ask(&t, "app.geo.example.", RType::Aaaa, "2a01:4f8::1", None)), ["2001:db8::2"]);
    // São Paulo: London (9,500 km) is nearer than Seattle (11,000 km) or Frankfurt (9,800 km).
    let a = ask(&t, "app.geo.example.", RType::A, "200.160.0.1", None);
    let d = a.decision.expect("geo answers carry their decision");
    assert_eq!(
        site_names(&t, &d.order.iter().map(|s| s.site).collect::<Vec<_>>()),
        ["london", "frankfurt", "seattle", "singapore"]
    );
    assert_eq!(d.rule, Rule::Nearest);
    assert_eq!(d.ttl, 60);
    let km: Vec<f64> = d.order.iter().map(|s| d.distance_km(&t, s.site).unwrap()).collect();
    assert!(km.windows(2).all(|w| w[0] <= w[1]), "{km:?}");
    assert!((9400.0..9600.0).contains(&km[0]), "Sao Paulo to London: {km:?}");
}

#[test]
fn client_networks_beat_geoip_and_unknown_clients_get_configured_order() {
    let t = table();
    let a = ask(&t, "app.geo.example.", RType::A, "10.42.9.9", None);
    assert_eq!(addrs(&a), ["192.0.2.3"]);
    assert_eq!(a.decision.unwrap().rule, Rule::ClientNetwork);
    let a = ask(&t, "app.geo.example.", RType::A, "192.168.1.1", None);
    assert_eq!(addrs(&a), ["192.0.2.1"], "first configured site");
    assert_eq!(a.decision.unwrap().rule, Rule::NoLocation);
    let a = ask(&t, "multi.geo.example.", RType::A, "192.168.1.1", None);
    assert_eq!(addrs(&a), ["192.0.2.21", "192.0.2.22", "192.0.2.11"], "configured order: frankfurt first");
}

#[test]
fn max_answers_takes_addresses_across_sites_in_order() {
    let t = table();
    let a = ask(&t, "multi.geo.example.", RType::A, "81.2.69.1", None);
    assert_eq!(addrs(&a), ["192.0.2.11", "192.0.2.12", "192.0.2.21"]);
    let a = ask(&t, "multi.geo.example.", RType::A, "103.6.148.1", None);
    assert_eq!(addrs(&a), ["192.0.2.41", "192.0.2.21", "192.0.2.22"]);
}

#[test]
fn unhealthy_sites_are_skipped_and_ttl_halved() {
    let mut inputs = Inputs::default();
    inputs.endpoint_down.insert(("web".into(), "192.0.2.1".parse().unwrap()));
    inputs.endpoint_down.insert(("web".into(), "2001:db8::1".parse().unwrap()));
    let t = table_with(&inputs);
    let a = ask(&t, "app.geo.example.", RType::A, "81.2.69.1", None);
    assert_eq!(addrs(&a), ["192.0.2.2"], "London is down: Frankfurt is next");
    assert_eq!(a.answers[0].ttl, 30);
    // Names without that health check are untouched.
    assert_eq!(addrs(&ask(&t, "v4only.geo.example.", RType::A, "81.2.69.1", None)), ["192.0.2.1"]);
    assert_eq!(ask(&t, "v4only.geo.example.", RType::A, "81.2.69.1", None).answers[0].ttl, 300);
    // One endpoint down of two: the site stays up with the other.
    let mut inputs = Inputs::default();
    inputs.endpoint_down.insert(("web".into(), "192.0.2.1".parse().unwrap()));
    let t = table_with(&inputs);
    assert_eq!(addrs(&ask(&t, "app.geo.example.", RType::Aaaa, "81.2.69.1", None)), ["2001:db8::1"]);
    assert_eq!(addrs(&ask(&t, "app.geo.example.", RType::A, "81.2.69.1", None)), ["192.0.2.2"]);
}

#[test]
fn all_down_policies() {
    let all_down = |policy: &str| {
        let text = CONFIG.replace(
            "        health_check: web\n",
            &format!("        health_check: web\n        all_down: {policy}\n"),
        );
        let config = config::parse(&text, Path::new(".")).unwrap();
        let mut inputs = Inputs::default();
        inputs.sites_down.extend(0..4);
        build(&config, locator(), inputs, 1)
    };
    let a = ask(&all_down("all"), "app.geo.example.", RType::A, "103.6.148.1", None);
    assert_eq!(addrs(&a), ["192.0.2.4", "192.0.2.2", "192.0.2.1", "192.0.2.3"], "every site, nearest first");
    assert_eq!(a.decision.unwrap().rule, Rule::AllDown(config::AllDown::All));
    let a = ask(&all_down("first"), "app.geo.example.", RType::A, "103.6.148.1", None);
    assert_eq!(addrs(&a), ["192.0.2.4"]);
    let a = ask(&all_down("nodata"), "app.geo.example.", RType::A, "103.6.148.1", None);
    assert_eq!((a.rcode, a.answers.len(), a.authority.len()), (Rcode::NoError, 0, 1));
    let a = ask(&all_down("servfail"), "app.geo.example.", RType::A, "103.6.148.1", None);
    assert_eq!((a.rcode, a.answers.len()), (Rcode::ServFail, 0));
}

#[test]
fn negative_answers_carry_the_soa() {
    let t = table();
    let a = ask(&t, "nope.geo.example.", RType::A, "81.2.69.1", None);
    assert_eq!(a.rcode, Rcode::NxDomain);
    assert_eq!(a.authority.len(), 1);
    assert_eq!(a.authority[0].ttl, 60, "min(SOA TTL 300, minimum 60)");
    assert!(matches!(a.authority[0].data, RData::Soa(_)));
    // Empty non-terminal: NODATA.
    let a = ask(&t, "ent.geo.example.", RType::A, "81.2.69.1", None);
    assert_eq!((a.rcode, a.answers.len(), a.authority.len()), (Rcode::NoError, 0, 1));
    // A name below an existing name that does not exist: NXDOMAIN.
    assert_eq!(ask(&t, "x.host.ent.geo.example.", RType::A, "81.2.69.1", None).rcode, Rcode::NxDomain);
    // Existing name, other type: NODATA.
    let a = ask(&t, "ns1.geo.example.", RType::Txt, "81.2.69.1", None);
    assert_eq!((a.rcode, a.answers.len(), a.authority.len()), (Rcode::NoError, 0, 1));
    let a = ask(&t, "app.geo.example.", RType::Mx, "81.2.69.1", None);
    assert_eq!((a.rcode, a.answers.len(), a.authority.len()), (Rcode::NoError, 0, 1));
    // IPv4-only geo name asked for AAAA: NODATA.
    let a = ask(&t, "v4only.geo.example.", RType::Aaaa, "81.2.69.1", None);
    assert_eq!((a.rcode, a.answers.len(), a.authority.len()), (Rcode::NoError, 0, 1));
}

#[test]
fn outside_zones_and_transfers_are_refused() {
    let t = table();
    assert_eq!(ask(&t, "example.com.", RType::A, "81.2.69.1", None).rcode, Rcode::Refused);
    assert_eq!(ask(&t, "example.", RType::A, "81.2.69.1", None).rcode, Rcode::Refused);
    assert_eq!(ask(&t, "geo.example.", RType::Transfer, "81.2.69.1", None).rcode, Rcode::Refused);
}

#[test]
fn apex_serves_soa_ns_with_glue_and_static_records() {
    let t = table();
    let a = ask(&t, "geo.example.", RType::Soa, "81.2.69.1", None);
    assert_eq!(a.answers.len(), 1);
    assert_eq!(a.answers[0].data.to_string(), "ns1.geo.example. hostmaster.geo.example. 7 7200 1800 1209600 60");
    let a = ask(&t, "geo.example.", RType::Ns, "81.2.69.1", None);
    assert_eq!(addrs(&a), ["ns1.geo.example.", "ns2.elsewhere.org."]);
    let glue: Vec<String> = a.additional.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(glue, ["127.0.0.1", "::1"]);
    assert_eq!(addrs(&ask(&t, "geo.example.", RType::Txt, "81.2.69.1", None)), ["\"apex text\""]);
    assert_eq!(addrs(&ask(&t, "geo.example.", RType::Mx, "81.2.69.1", None)), ["10 mail.geo.example."]);
    let a = ask(&t, "geo.example.", RType::Aaaa, "81.2.69.1", None);
    assert_eq!((a.rcode, a.answers.len(), a.authority.len()), (Rcode::NoError, 0, 1));
}

#[test]
fn cnames_are_chased_inside_our_zones() {
    let t = table();
    let a = ask(&t, "chain.geo.example.", RType::A, "103.6.148.1", Some(24));
    let owners: Vec<&str> = a.answers.iter().map(|r| r.owner.as_str()).collect();
    assert_eq!(owners, ["chain.geo.example.", "www.geo.example.", "app.geo.example."]);
    assert_eq!(a.answers[2].data, RData::A("192.0.2.4".parse().unwrap()));
    assert_eq!(a.scope, 22, "the geo part decides the scope");
    let a = ask(&t, "www.geo.example.", RType::Cname, "103.6.148.1", None);
    assert_eq!(addrs(&a), ["app.geo.example."]);
    let a = ask(&t, "away.geo.example.", RType::A, "103.6.148.1", None);
    assert_eq!(addrs(&a), ["www.elsewhere.org."]);
    assert_eq!(a.rcode, Rcode::NoError);
}

#[test]
fn any_gets_one_rrset() {
    let t = table();
    let a = ask(&t, "app.geo.example.", RType::Any, "81.2.69.1", None);
    assert_eq!(addrs(&a), ["192.0.2.1"]);
    let a = ask(&t, "ns1.geo.example.", RType::Any, "81.2.69.1", None);
    assert_eq!(addrs(&a), ["127.0.0.1"]);
    let a = ask(&t, "geo.example.", RType::Any, "81.2.69.1", None);
    assert_eq!(a.answers.len(), 1);
    assert!(matches!(a.answers[0].data, RData::Soa(_)));
}

#[test]
fn ecs_scope_is_the_placing_network_capped_at_the_source_prefix() {
    let t = table();
    assert_eq!(ask(&t, "app.geo.example.", RType::A, "81.2.69.0", Some(24)).scope, 24);
    assert_eq!(ask(&t, "app.geo.example.", RType::A, "5.9.1.0", Some(24)).scope, 16);
    assert_eq!(ask(&t, "app.geo.example.", RType::A, "5.9.0.0", Some(12)).scope, 12);
    assert_eq!(ask(&t, "app.geo.example.", RType::A, "10.42.1.0", Some(24)).scope, 16);
    assert_eq!(ask(&t, "app.geo.example.", RType::Aaaa, "2a01:4f8:1::", Some(48)).scope, 32);
    // Static names and names with one site answer the same everywhere: scope 0.
    assert_eq!(ask(&t, "ns1.geo.example.", RType::A, "81.2.69.0", Some(24)).scope, 0);
    assert_eq!(ask(&t, "single.geo.example.", RType::A, "81.2.69.0", Some(24)).scope, 0);
    assert_eq!(ask(&t, "nope.geo.example.", RType::A, "81.2.69.0", Some(24)).scope, 0);
}

#[test]
fn ties_are_broken_by_site_name() {
    let text = r#"
sites:
  b: { location: [0, 10] }
  a: { location: [0, -10] }
zones:
  z.:
    soa: { mname: ns, rname: h, serial: 1 }
    ns: [ns]
    geo: { t: { sites: { b: [192.0.2.2], a: [192.0.2.1] } } }
"#;
    let config = config::parse(text, Path::new(".")).unwrap();
    let loc: Arc<dyn Locator> = Arc::new(Map(vec![("192.0.2.0/24".parse().unwrap(), Location::new(0.0, 0.0))]));
    let t = build(&config, loc, Inputs::default(), 1);
    assert_eq!(addrs(&ask(&t, "t.z.", RType::A, "192.0.2.77", None)), ["192.0.2.1"]);
}

#[test]
fn every_geo_route_is_listed() {
    let t = table();
    let mut names: Vec<String> = t.geo_routes().map(|g| g.name.to_string()).collect();
    names.sort();
    assert_eq!(names, ["app.geo.example.", "multi.geo.example.", "single.geo.example.", "v4only.geo.example."]);
}

#[test]
fn drained_discovered_addresses_are_down_for_every_name() {
    let d = |site: usize, addrs: &[&str], drained: &[&str]| crate::model::Discovered {
        name: n("app.geo.example."),
        site,
        addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        ready: true,
        drained: drained.iter().map(|a| a.parse().unwrap()).collect(),
        origin: "eu/default/app".into(),
    };
    // One of Frankfurt's two discovered addresses drained: the other one answers.
    let inputs =
        Inputs { discovered: vec![d(1, &["198.51.100.2", "198.51.100.4"], &["198.51.100.4"])], ..Inputs::default() };
    let t = table_with(&inputs);
    assert_eq!(addrs(&ask(&t, "app.geo.example.", RType::A, "5.9.1.1", None)), ["192.0.2.2", "198.51.100.2"]);
    // A drained address that is also in the config is down there too; with all of Frankfurt's
    // addresses drained, the site is down: Germany goes to London, at half the TTL.
    let both = ["192.0.2.2", "2001:db8::2"];
    let inputs = Inputs { discovered: vec![d(1, &both, &both)], ..Inputs::default() };
    let t = table_with(&inputs);
    let a = ask(&t, "app.geo.example.", RType::A, "5.9.1.1", None);
    assert_eq!(addrs(&a), ["192.0.2.1"]);
    assert_eq!(a.answers[0].ttl, 30);
}

#[test]
fn discovered_addresses_merge_with_the_config_and_readiness_counts() {
    let d = |site: usize, addrs: &[&str], ready: bool| crate::model::Discovered {
        name: n("app.geo.example."),
        site,
        addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        ready,
        drained: Vec::new(),
        origin: "eu/default/app".into(),
    };
    // Frankfurt gains an address; Seattle's only entry is not ready: Seattle is down.
    let inputs =
        Inputs { discovered: vec![d(1, &["198.51.100.2"], true), d(2, &["198.51.100.3"], false)], ..Inputs::default() };
    let t = table_with(&inputs);
    assert_eq!(addrs(&ask(&t, "app.geo.example.", RType::A, "5.9.1.1", None)), ["192.0.2.2", "198.51.100.2"]);
    let a = ask(&t, "app.geo.example.", RType::A, "8.8.8.8", None);
    assert_eq!(addrs(&a), ["192.0.2.1"], "seattle not ready: California goes to London");
    assert_eq!(a.answers[0].ttl, 30, "a site is down: TTL halved");
    // A name with no configured sites gets them all from discovery, in site order.
    let text = CONFIG.replace("      single:\n        sites:\n          london: [192.0.2.99]\n", "      single: {}\n");
    let config = config::parse(
        &format!("{text}kubernetes: {{ clusters: [ {{ name: eu, site: frankfurt }} ] }}\n"),
        Path::new("."),
    )
    .unwrap();
    let mut found = d(3, &["198.51.100.4"], true);
    found.name = n("single.geo.example.");
    let mut found2 = d(0, &["198.51.100.1"], true);
    found2.name = n("single.geo.example.");
    let t = build(&config, locator(), Inputs { discovered: vec![found, found2], ..Inputs::default() }, 1);
    assert_eq!(
        addrs(&ask(&t, "single.geo.example.", RType::A, "192.168.0.1", None)),
        ["198.51.100.1"],
        "no location: site order"
    );
    assert_eq!(addrs(&ask(&t, "single.geo.example.", RType::A, "103.6.148.1", None)), ["198.51.100.4"]);
}

#[test]
fn discovered_client_networks_place_clients_but_the_config_wins_ties() {
    let net = |cidr: &str, site| config::ClientNetwork { net: cidr.parse().unwrap(), site };
    let inputs = Inputs { client_networks: vec![net("10.99.0.0/24", 3), net("10.42.0.0/16", 0)], ..Inputs::default() };
    let t = table_with(&inputs);
    assert_eq!(addrs(&ask(&t, "app.geo.example.", RType::A, "10.99.0.7", None)), ["192.0.2.4"]);
    assert_eq!(addrs(&ask(&t, "app.geo.example.", RType::A, "10.42.0.7", None)), ["192.0.2.3"], "config says seattle");
}

#[test]
fn rrl_exempts_loopback_and_the_client_networks_each_switchable() {
    let net = |cidr: &str, site| config::ClientNetwork { net: cidr.parse().unwrap(), site };
    let inputs =
        Inputs { client_networks: vec![net("10.99.0.0/24", 3), net("2001:db8:99::/48", 3)], ..Inputs::default() };
    let exempt = |edit: &dyn Fn(&mut config::RrlExempt), ip: &str| {
        let mut config = config::parse(CONFIG, Path::new(".")).expect("test config is valid");
        edit(&mut config.server.rrl_exempt);
        build(&config, locator(), inputs.clone(), 1).rrl_exempt().contains(ip.parse().unwrap())
    };
    let default = |_: &mut config::RrlExempt| {};
    // Loopback, the config's client network, the discovered ones; nobody else.
    for yes in ["127.0.0.1", "127.9.9.9", "::1", "10.42.1.1", "10.99.0.7", "2001:db8:99::1"] {
        assert!(exempt(&default, yes), "{yes}");
    }
    for no in ["10.43.0.1", "10.99.1.1", "192.0.2.1", "::2", "2001:db8:9a::1"] {
        assert!(!exempt(&default, no), "{no}");
    }
    // Each part switched off alone.
    assert!(
        !exempt(&|e| e.client_networks = false, "10.42.1.1") && exempt(&|e| e.client_networks = false, "10.99.0.7")
    );
    assert!(!exempt(&|e| e.kubernetes = false, "10.99.0.7") && exempt(&|e| e.kubernetes = false, "10.42.1.1"));
    assert!(!exempt(&|e| e.networks.clear(), "127.0.0.1") && exempt(&|e| e.networks.clear(), "10.42.1.1"));
}

#[test]
fn sites_forced_up_answer_with_every_address_and_down_wins() {
    let mut inputs = Inputs::default();
    inputs.endpoint_down.insert(("web".into(), "192.0.2.1".parse().unwrap()));
    inputs.sites_up.insert(0);
    let t = table_with(&inputs);
    let a = ask(&t, "app.geo.example.", RType::A, "81.2.69.1", None);
    assert_eq!(addrs(&a), ["192.0.2.1"], "london forced up despite its probe");
    assert_eq!(a.answers[0].ttl, 60);
    inputs.sites_down.insert(0);
    let t = table_with(&inputs);
    assert_eq!(addrs(&ask(&t, "app.geo.example.", RType::A, "81.2.69.1", None)), ["192.0.2.2"]);
}

#[test]
fn answer_series_name_the_first_pairs_and_count_the_rest_per_site() {
    // Small tables: one series per (name, site), in config order.
    let t = table();
    assert_eq!(t.answer_series().len(), 4 + 3 + 2 + 1);
    assert_eq!(t.answer_series()[0], AnswerSeries::Named(n("app.geo.example."), 0));
    assert_eq!(t.answer_series_of(&n("multi.geo.example."), 3), Some(&AnswerSeries::Named(n("multi.geo.example."), 3)));
    // Beyond the cap, one series per site.
    let names = MAX_NAMED_ANSWER_SERIES / 2 + 10;
    let mut yaml = String::from(
        "sites:\n  a: { location: [0, 0] }\n  b: { location: [10, 10] }\nzones:\n  big.example.:\n    soa: { mname: ns1, rname: h, serial: 1 }\n    ns: [ns1]\n    geo:\n",
    );
    for i in 0..names {
        yaml.push_str(&format!("      n{i}: {{ sites: {{ a: [192.0.2.1], b: [192.0.2.2] }} }}\n"));
    }
    let config = config::parse(&yaml, Path::new(".")).expect("generated config is valid");
    let t = build(&config, locator(), Inputs::default(), 1);
    assert_eq!(t.answer_series().len(), MAX_NAMED_ANSWER_SERIES + 2);
    let last = n(&format!("n{}.big.example.", names - 1));
    assert_eq!(t.answer_series_of(&last, 1), Some(&AnswerSeries::Other(1)));
    let first = n("n0.big.example.");
    assert_eq!(t.answer_series_of(&first, 1), Some(&AnswerSeries::Named(first.clone(), 1)));
    // Every site entry points at the series that names it (or its site's).
    for route in t.geo_routes() {
        for s in route.sites.iter() {
            match &t.answer_series()[s.answers as usize] {
                AnswerSeries::Named(name, site) => assert!(*name == route.name && *site == s.site),
                AnswerSeries::Other(site) => assert_eq!(*site, s.site),
            }
        }
    }
}

/// Everything a table answers from, in a canonical order: routes (TTL, sites with health,
/// addresses and answer series) and the answer series' labels.
fn dump(t: &RoutingTable) -> Vec<String> {
    let mut out: Vec<String> = t
        .geo_routes()
        .map(|r| {
            let sites: Vec<_> =
                r.sites.iter().map(|s| (s.site, s.answers, s.up, s.v4.to_vec(), s.v6.to_vec())).collect();
            format!("{} ttl={} {:?}", r.name, r.ttl, sites)
        })
        .collect();
    out.sort();
    out.extend(t.answer_series().iter().map(|s| format!("{s:?}")));
    out
}

/// What a table answers to a fixed set of queries: names x types x clients.
fn answers(t: &RoutingTable) -> Vec<String> {
    let mut out = Vec::new();
    for name in ["app.geo.example.", "multi.geo.example.", "v4only.geo.example.", "single.geo.example."] {
        for rtype in [RType::A, RType::Aaaa] {
            for client in ["81.2.69.1", "5.9.1.1", "103.6.148.1", "8.8.8.8", "10.42.1.1", "10.99.0.7", "192.168.0.1"] {
                let a = ask(t, name, rtype, client, Some(24));
                let ttls: Vec<u32> = a.answers.iter().map(|r| r.ttl).collect();
                out.push(format!("{name} {rtype:?} {client}: {:?} {ttls:?} /{} {:?}", addrs(&a), a.scope, a.rcode));
            }
        }
    }
    out
}

#[test]
fn incremental_rebuilds_answer_as_full_builds_and_share_what_did_not_change() {
    let text = format!("{CONFIG}kubernetes: {{ clusters: [ {{ name: eu, site: frankfurt }} ] }}\n");
    let config = config::parse(&text, Path::new(".")).unwrap();
    let index = Arc::new(AddressIndex::new(&config));
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    // Every configured address can be probed under two checks (only `web` is used by a name).
    let addresses: Vec<IpAddr> =
        config.zones[0].geo.iter().flat_map(|g| g.sites.iter().flat_map(|(_, a)| a.clone())).collect();
    assert!(index.names_with(&ip("192.0.2.1")).count() == 2, "app and v4only have 192.0.2.1");
    let mut inputs = Inputs::default();
    let mut previous = build_with(&config, locator(), None, Some(&index), Arc::new(inputs.clone()), 1);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    let (mut reused, mut partly_shared) = (0, 0);
    for generation in 2..400 {
        // One random change, mostly probe flips, as health snapshots bring them.
        match next(20) {
            0 => {
                let s = next(4);
                if !inputs.sites_down.remove(&s) {
                    inputs.sites_down.insert(s);
                }
            }
            1 => {
                let s = next(4);
                if !inputs.sites_up.remove(&s) {
                    inputs.sites_up.insert(s);
                }
            }
            2..=5 => {
                let name = ["app.geo.example.", "single.geo.example."][next(2)];
                let site = next(4);
                let addrs =
                    [vec![ip("198.51.100.7")], vec![ip("192.0.2.2"), ip("2001:db8::77")], vec![]][next(3)].clone();
                let drained = addrs.iter().copied().filter(|_| next(4) == 0).collect();
                let found = crate::model::Discovered {
                    name: n(name),
                    site,
                    addrs,
                    ready: next(3) > 0,
                    drained,
                    origin: "eu/ns/svc".into(),
                };
                match inputs.discovered.iter().position(|d| d.name == found.name && d.site == found.site) {
                    Some(i) if next(2) == 0 => drop(inputs.discovered.remove(i)),
                    Some(i) => inputs.discovered[i] = found,
                    None => inputs.discovered.push(found),
                }
            }
            6 => {
                let net = config::ClientNetwork { net: "10.99.0.0/24".parse().unwrap(), site: next(4) };
                inputs.client_networks = if inputs.client_networks.is_empty() { vec![net] } else { vec![] };
            }
            _ => {
                let check = ["web", "other"][usize::from(next(4) == 0)];
                let pick = if next(5) == 0 { ip("198.51.100.7") } else { addresses[next(addresses.len())] };
                let key = (check.to_owned(), pick);
                if !inputs.endpoint_down.remove(&key) {
                    inputs.endpoint_down.insert(key);
                }
            }
        }
        let shared = Arc::new(inputs.clone());
        let rebuilt = rebuild(&config, locator(), None, &index, &previous, shared.clone(), generation);
        let full = build(&config, locator(), shared, generation);
        assert_eq!(dump(&rebuilt), dump(&full), "generation {generation}, inputs {inputs:?}");
        assert_eq!(answers(&rebuilt), answers(&full), "generation {generation}, inputs {inputs:?}");
        assert_eq!(rebuilt.rrl_exempt(), full.rrl_exempt(), "generation {generation}, inputs {inputs:?}");
        let same = incremental::shared_routes(&rebuilt, &previous);
        reused += usize::from(same > 0);
        partly_shared += usize::from(same > 0 && same < 4);
        previous = rebuilt;
    }
    assert!(reused > 200 && partly_shared > 50, "routes were shared: {reused} rebuilds, {partly_shared} partly");

    // A flip of one address redoes the names that have it, and only them.
    let before = build_with(&config, locator(), None, Some(&index), Arc::new(Inputs::default()), 1);
    let mut one = Inputs::default();
    one.endpoint_down.insert(("web".into(), ip("192.0.2.3")));
    let after = rebuild(&config, locator(), None, &index, &before, Arc::new(one), 2);
    assert_eq!(incremental::shared_routes(&after, &before), 3, "app is redone; multi, v4only, single are shared");
    // A table built without the index (or from another config's) is not reused.
    let plain = build(&config, locator(), Inputs::default(), 1);
    let after = rebuild(&config, locator(), None, &index, &plain, Arc::new(Inputs::default()), 2);
    assert_eq!(incremental::shared_routes(&after, &plain), 0);
}
