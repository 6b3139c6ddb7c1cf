//! `server.rrl.exempt`: clients response rate limiting never limits. Real UDP bursts against the
//! running server from chosen loopback sources, far above the rate (2,000 queries for one
//! name, as fast as the server answers; the default rate is 200 a second): with the default
//! config, loopback is answered in full; with `exempt: []` the same burst is limited; a client
//! network is exempt unless switched off, and so is a pod network discovered from Kubernetes
//! (a fake API server through the real kube client). Also the keys' validation.

mod common;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use common::fake_kube::{FakeKube, write_kubeconfig};
use common::wire::WireQuery;
use serde_json::json;
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout};

const BURST: usize = 2000;
/// Queries in flight at once: the server is never asked to queue more than its socket holds.
const WINDOW: usize = 32;
/// How long the sender waits for an answer before it counts what is in flight as lost and
/// sends more (limited answers are dropped, and must not stall the burst).
const STALL: Duration = Duration::from_millis(20);

/// What came back for a burst.
#[derive(Debug, Default)]
struct Tally {
    /// Whole answers (TC clear, one record).
    full: usize,
    /// Slipped answers (TC set, no records).
    truncated: usize,
    /// Never answered.
    lost: usize,
}

/// Sends [`BURST`] A queries for `name` from `src` (a loopback address), at most [`WINDOW`] in
/// flight, and tallies the answers. Waits for the last answers until all have come, or until
/// none has come for a second (limited answers are dropped: their absence can only be waited
/// out).
async fn burst(server: SocketAddr, src: &str, name: &str) -> Tally {
    let src: IpAddr = src.parse().unwrap();
    let socket = UdpSocket::bind((src, 0)).await.expect("bind a loopback source");
    let mut seen: HashSet<u16> = HashSet::new();
    let mut tally = Tally::default();
    let mut buf = vec![0u8; 4096];
    let (mut next, mut in_flight) = (0usize, 0usize);
    let give_up = Instant::now() + Duration::from_secs(60);
    let mut quiet_since = Instant::now();
    while seen.len() < BURST {
        assert!(Instant::now() < give_up, "the burst took over a minute: {tally:?}");
        while next < BURST && in_flight < WINDOW {
            socket.send_to(&WireQuery::new(next as u16, name, 1).bytes(), server).await.expect("send");
            next += 1;
            in_flight += 1;
        }
        match timeout(STALL, socket.recv_from(&mut buf)).await {
            Ok(r) => {
                let (n, _) = r.expect("receive");
                let r = &buf[..n];
                let id = u16::from_be_bytes([r[0], r[1]]);
                assert!(usize::from(id) < BURST && seen.insert(id), "one answer per query");
                assert_eq!(r[3] & 0x0f, 0, "NOERROR");
                let answers = u16::from_be_bytes([r[6], r[7]]);
                if r[2] & 0x02 != 0 {
                    assert_eq!(answers, 0, "a slipped answer has no records");
                    tally.truncated += 1;
                } else {
                    assert_eq!(answers, 1, "a whole answer");
                    tally.full += 1;
                }
                in_flight = in_flight.saturating_sub(1);
                quiet_since = Instant::now();
            }
            Err(_) => {
                in_flight = 0;
                if next == BURST && quiet_since.elapsed() >= Duration::from_secs(1) {
                    break;
                }
            }
        }
    }
    tally.lost = BURST - seen.len();
    eprintln!("burst of {BURST} from {src}: {tally:?}");
    tally
}

fn all_answered(t: &Tally) -> bool {
    t.full == BURST && t.truncated == 0 && t.lost == 0
}

/// Limited: a budget's worth (at most a few seconds of 200) answered whole, the rest slipped
/// (every second one, `slip: 2`) or dropped.
fn limited(t: &Tally) -> bool {
    t.full < BURST / 2 && t.truncated > BURST / 4 && t.lost > BURST / 4
}

/// The test config with `rrl` (a YAML flow mapping) in place of its `rrl: { enabled: false }`,
/// and `networks` added to its client networks.
fn config(db: &Path, rrl: &str, networks: &[&str]) -> String {
    let text = common::server::test_config(db);
    let rrl_line = "  rrl: { enabled: false }\n";
    assert!(text.contains(rrl_line));
    let mut text = text.replace(rrl_line, &format!("  rrl: {rrl}\n"));
    for net in networks {
        text = text.replace("client_networks:\n", &format!("client_networks:\n  - {{ cidr: {net}, site: london }}\n"));
    }
    text
}

async fn serve(rrl: &str, networks: &[&str]) -> (geodns::app::Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("city.mmdb");
    common::mmdb::write_city_db(&db, &[("81.2.69.0/24", 51.5, -0.1, "GB")]);
    (common::server::start(&config(&db, rrl, networks), dir.path()).await, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_default_config_a_burst_from_loopback_is_answered_in_full() {
    // `{}`: RRL on, every key at its default.
    let (s, _dir) = serve("{}", &[]).await;
    let v4 = burst(common::server::v4(&s), "127.0.0.1", "static.geo.example.").await;
    assert!(all_answered(&v4), "127.0.0.1: {v4:?}");
    let v6 = burst(common::server::v6(&s), "::1", "app.geo.example.").await;
    assert!(all_answered(&v6), "::1: {v6:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_loopback_exemption_the_same_burst_is_limited() {
    let (s, _dir) = serve("{ exempt: [] }", &[]).await;
    let t = burst(common::server::v4(&s), "127.0.0.1", "static.geo.example.").await;
    assert!(limited(&t), "{t:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_network_is_exempt_unless_switched_off() {
    // Loopback is not exempt here; 127.0.7.0/24 is a client network.
    let (s, _dir) = serve("{ exempt: [] }", &["127.0.7.0/24"]).await;
    let inside = burst(common::server::v4(&s), "127.0.7.1", "static.geo.example.").await;
    assert!(all_answered(&inside), "in the client network: {inside:?}");
    let outside = burst(common::server::v4(&s), "127.0.8.1", "static.geo.example.").await;
    assert!(limited(&outside), "outside it: {outside:?}");
    s.stop().await;

    let (s, _dir) = serve("{ exempt: [], exempt_client_networks: false }", &["127.0.7.0/24"]).await;
    let switched_off = burst(common::server::v4(&s), "127.0.7.1", "static.geo.example.").await;
    assert!(limited(&switched_off), "client networks not exempt: {switched_off:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_exempt_network_is_never_limited() {
    let (s, _dir) = serve("{ exempt: [127.0.9.0/24], exempt_client_networks: false }", &[]).await;
    let inside = burst(common::server::v4(&s), "127.0.9.200", "static.geo.example.").await;
    assert!(all_answered(&inside), "{inside:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_network_discovered_from_kubernetes_is_exempt() {
    let dir = tempfile::tempdir().unwrap();
    let kube = FakeKube::start().await;
    // The cluster's one node: its pod network 127.46.0.0/16 (reachable on loopback).
    kube.apply(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": "fra-1" },
        "spec": { "podCIDR": "127.46.0.0/16", "podCIDRs": ["127.46.0.0/16"] },
        "status": { "addresses": [{ "type": "InternalIP", "address": "127.0.0.46" }] },
    }));
    let kubeconfig = write_kubeconfig(dir.path(), "kubeconfig", &[("eu", &kube)]);
    let text = format!(
        r#"
server: {{ dns_listen: ["127.0.0.1:0"], rrl: {{ exempt: [] }} }}
sites:
  london:    {{ location: [51.51, -0.13] }}
  frankfurt: {{ location: [50.11, 8.68] }}
zones:
  geo.example.:
    soa: {{ mname: ns1, rname: hostmaster, serial: 1 }}
    ns: [ns1]
    records: {{ ns1: {{ A: [127.0.0.1] }} }}
    geo:
      app: {{ ttl: 60, sites: {{ london: [192.0.2.1], frankfurt: [192.0.2.2] }} }}
kubernetes:
  clusters:
    - {{ name: eu, kubeconfig: "{kc}", context: eu, site: frankfurt }}
"#,
        kc = kubeconfig.display()
    );
    let s = common::server::start(&text, dir.path()).await;
    let dns = common::server::v4(&s);
    // Discovered: a pod of the cluster is placed at the cluster's site (Frankfurt), not the
    // configured order's first (London).
    let pod: IpAddr = "127.46.3.7".parse().unwrap();
    let socket = UdpSocket::bind((pod, 0)).await.unwrap();
    common::wait::until_async(
        Duration::from_secs(20),
        "the pod network to be discovered",
        || async {
            let q = WireQuery::new(7, "app.geo.example.", 1).bytes();
            socket.send_to(&q, dns).await.unwrap();
            let mut buf = vec![0u8; 512];
            match timeout(Duration::from_secs(1), socket.recv_from(&mut buf)).await {
                Ok(Ok((n, _))) => buf[..n].ends_with(&[192, 0, 2, 2]),
                _ => false,
            }
        },
        |frankfurt| *frankfurt,
    )
    .await;
    let inside = burst(dns, "127.46.3.7", "ns1.geo.example.").await;
    assert!(all_answered(&inside), "in the pod network: {inside:?}");
    let outside = burst(dns, "127.47.0.1", "ns1.geo.example.").await;
    assert!(limited(&outside), "outside it: {outside:?}");
    s.stop().await;
}

#[test]
fn the_exempt_keys_have_defaults_and_are_validated_with_their_paths() {
    let base = "sites: { a: { location: [0, 0] } }\nzones: { x.: { soa: { mname: ns.x., rname: h.x., serial: 1 }, ns: ns.x., records: { ns: { A: 127.0.0.1 } } } }\n";
    let parse = |server: &str| geodns::config::parse(&format!("{server}{base}"), Path::new("."));
    let net = |s: &str| s.parse::<ipnet::IpNet>().unwrap();

    let c = parse("").expect("valid");
    let e = &c.server.rrl_exempt;
    assert_eq!(e.networks, [net("127.0.0.0/8"), net("::1/128")], "loopback by default");
    assert!(e.client_networks && e.kubernetes, "both switches on by default");

    let c = parse("server: { rrl: { exempt: [192.0.2.1, \"2001:db8::/32\"], exempt_client_networks: false, exempt_kubernetes: false } }\n").expect("valid");
    let e = &c.server.rrl_exempt;
    assert_eq!(e.networks, [net("192.0.2.1/32"), net("2001:db8::/32")], "an address is its own network");
    assert!(!e.client_networks && !e.kubernetes);
    assert!(parse("server: { rrl: { exempt: [] } }\n").unwrap().server.rrl_exempt.networks.is_empty());

    let problems: Vec<String> =
        match parse("server: { rrl: { exempt: [127.0.0.1/8, nope, 10.0.0.0/8, 10.0.0.0/8, \"::1/129\"] } }\n") {
            Err(e) => e.problems().iter().map(|p| p.to_string()).collect(),
            Ok(_) => panic!("invalid"),
        };
    for want in [
        "server.rrl.exempt[0]: 127.0.0.1/8 has host bits set; did you mean 127.0.0.0/8?",
        "server.rrl.exempt[1]: \"nope\" is not a network (CIDR) or an address",
        "server.rrl.exempt[3]: 10.0.0.0/8 is listed more than once",
        "server.rrl.exempt[4]: \"::1/129\" is not a network (CIDR) or an address",
    ] {
        assert!(problems.iter().any(|p| p == want), "missing {want:?} in {problems:#?}");
    }
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(parse("server: { rrl: { exempt_kubernetes: maybe } }\n").is_err(), "a switch is a boolean");
    assert!(parse("server: { rrl: { exempt: 127.0.0.0/8 } }\n").is_err(), "a list");
}
