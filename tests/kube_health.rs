//! A site that loses power leaves DNS even when its addresses come from Kubernetes: two fake
//! API servers (one cluster per site) driven through the real kube client, each Service's
//! LoadBalancer IP a loopback address with a real HTTP health endpoint behind it, the real
//! server, and real DNS queries.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use common::backend::{Backend, Mode, on_same_port};
use common::dns::{addresses, query, udp, with_ecs};
use common::fake_kube::{FakeKube, write_kubeconfig};
use common::server::{start, v4};
use common::wait;
use geodns::app::Running;
use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

const FIXTURE: &[(&str, f64, f64, &str)] = &[("81.2.69.0/24", 51.5, -0.1, "GB"), ("8.8.8.0/24", 37.4, -122.1, "US")];
/// A client in the UK (nearest Frankfurt) and one in California (nearest Seattle).
const UK: &str = "81.2.69.0/24";
const US: &str = "8.8.8.0/24";

/// Frankfurt's LoadBalancer IPs (A first, B after a change), and Seattle's.
const FRA_A: &str = "127.0.0.21";
const FRA_B: &str = "127.0.0.22";
const SEA: &str = "127.0.0.23";

const INTERVAL: Duration = Duration::from_millis(200);
const FALL: u32 = 2;
/// The bound the issue sets for a site's exit: interval x fall plus one second.
const EXIT_BOUND: Duration = Duration::from_millis(INTERVAL.as_millis() as u64 * FALL as u64 + 1000);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn service(lb_ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "app", "namespace": "web", "annotations": { "geodns.io/hostname": "app.geo.example" } },
        "spec": { "type": "LoadBalancer", "ports": [{ "port": 80 }] },
        "status": { "loadBalancer": { "ingress": [{ "ip": lb_ip }] } },
    })
}

fn slice(node: &str) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "name": "app-1", "namespace": "web", "labels": { "kubernetes.io/service-name": "app" } },
        "addressType": "IPv4",
        "endpoints": [{ "addresses": ["10.42.0.10"], "nodeName": node, "conditions": { "ready": true } }],
        "ports": [{ "port": 8080 }],
    })
}

fn node(name: &str, internal_ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name },
        "status": { "addresses": [{ "type": "InternalIP", "address": internal_ip }] },
    })
}

/// Two clusters, eu at frankfurt (LoadBalancer IP A) and us at seattle, each with one ready
/// Service for app.geo.example, and the health endpoints of A, B and Seattle, all up.
struct World {
    _dir: tempfile::TempDir,
    eu: FakeKube,
    us: FakeKube,
    backends: Vec<Backend>,
    server: Running,
}

impl World {
    async fn start(sync_timeout: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("city.mmdb");
        common::mmdb::write_city_db(&db, FIXTURE);
        let backends = on_same_port(&[FRA_A, FRA_B, SEA], Mode::Healthy).await;
        let eu = FakeKube::start().await;
        let us = FakeKube::start().await;
        eu.apply(node("fra-1", "10.0.1.1"));
        eu.apply(service(FRA_A));
        eu.apply(slice("fra-1"));
        us.apply(node("sea-1", "10.0.2.1"));
        us.apply(service(SEA));
        us.apply(slice("sea-1"));
        let kubeconfig = write_kubeconfig(dir.path(), "kubeconfig", &[("eu", &eu), ("us", &us)]);
        let text = config(&db, &kubeconfig, backends[0].addr.port(), sync_timeout);
        let server = start(&text, dir.path()).await;
        World { _dir: dir, eu, us, backends, server }
    }

    fn dns(&self) -> SocketAddr {
        v4(&self.server)
    }

    fn backend(&mut self, addr: &str) -> &mut Backend {
        self.backends.iter_mut().find(|b| b.addr.ip() == ip(addr)).expect("a backend at that address")
    }

    /// Probes of `addr` that the server has completed, from /status.
    fn probes(&self, addr: &str) -> u64 {
        self.server.status().endpoints.iter().find(|e| e.address == addr).map_or(0, |e| e.probes)
    }
}

fn config(db: &Path, kubeconfig: &Path, port: u16, sync_timeout: &str) -> String {
    format!(
        r#"
server: {{ dns_listen: ["127.0.0.1:0"], admin_listen: "127.0.0.1:0", rrl: {{ enabled: false }} }}
geoip: {{ database: "{db}" }}
sites:
  frankfurt: {{ location: [50.11, 8.68] }}
  seattle:   {{ location: [47.61, -122.33] }}
health_checks:
  web: {{ http: {{ path: /healthz, port: {port} }}, interval: 200ms, timeout: 150ms, rise: 1, fall: {FALL} }}
zones:
  geo.example.:
    soa: {{ mname: ns1, rname: hostmaster, serial: 1 }}
    ns: [ns1]
    records: {{ ns1: {{ A: [127.0.0.1] }} }}
    geo:
      app: {{ ttl: 60, health_check: web }}
kubernetes:
  sync_timeout: {sync_timeout}
  clusters:
    - {{ name: eu, kubeconfig: "{kc}", context: eu, site: frankfurt }}
    - {{ name: us, kubeconfig: "{kc}", context: us, site: seattle }}
"#,
        db = db.display(),
        kc = kubeconfig.display()
    )
}

async fn answer(dns: SocketAddr, subnet: &str) -> Vec<IpAddr> {
    addresses(&udp(dns, &with_ecs(query("app.geo.example.", RecordType::A), subnet)).await)
}

/// Polls until the answer for `subnet` is exactly `want`; returns how long it took.
async fn answered_within(dns: SocketAddr, subnet: &str, want: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    wait::until_async(limit, &format!("{subnet} answered {want}"), || answer(dns, subnet), |a| a == &[ip(want)]).await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_whose_endpoint_dies_leaves_dns_with_or_without_its_api_server() {
    let mut w = World::start("30s").await;
    let dns = w.dns();
    answered_within(dns, UK, FRA_A, Duration::from_secs(10)).await;
    answered_within(dns, US, SEA, Duration::from_secs(10)).await;
    let eu_probed = w.probes(FRA_A);
    wait::until(Duration::from_secs(5), "Frankfurt's LoadBalancer IP probed", || w.probes(FRA_A) > eu_probed).await;

    // 1. The health endpoint dies while the API server is up and the endpoint still ready.
    w.backend(FRA_A).stop();
    let took = answered_within(dns, UK, SEA, EXIT_BOUND).await;
    println!("endpoint died, API up: UK moved to Seattle in {took:?}");
    let st = w.server.status();
    let e = st.endpoints.iter().find(|e| e.address == FRA_A).expect("A is probed");
    assert_eq!((e.check.as_str(), e.state.as_str(), e.reason.as_str()), ("web", "down", "connection refused"));
    // It comes back: the UK returns to Frankfurt.
    w.backend(FRA_A).restart(Mode::Healthy).await;
    answered_within(dns, UK, FRA_A, Duration::from_secs(5)).await;

    // 2. A power cut: the API server and the endpoint go together.
    w.eu.stop().await;
    w.backend(FRA_A).stop();
    let took = answered_within(dns, UK, SEA, EXIT_BOUND).await;
    println!("power cut: UK moved to Seattle in {took:?}");
    // Power back at the endpoint first (the API server still down): the last known address
    // is probed all along, so the site returns on its probes alone.
    w.backend(FRA_A).restart(Mode::Healthy).await;
    answered_within(dns, UK, FRA_A, Duration::from_secs(5)).await;
    assert!(
        w.server.status().kubernetes.iter().any(|c| c.name == "eu" && !c.connected),
        "still without its API server"
    );
    assert_eq!(answer(dns, US).await, [ip(SEA)], "Seattle's clients never moved");
    w.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_that_dies_alone_changes_no_answer() {
    let mut w = World::start("30s").await;
    let dns = w.dns();
    answered_within(dns, UK, FRA_A, Duration::from_secs(10)).await;
    w.eu.stop().await;
    wait::until(Duration::from_secs(20), "eu's outage noticed", || {
        w.server.status().kubernetes.iter().any(|c| c.name == "eu" && !c.connected)
    })
    .await;
    // Several probe rounds of the last known address, more than `fall`, during the outage:
    // every answer is still Frankfurt's.
    let probed = w.probes(FRA_A);
    let mut asked = 0;
    while w.probes(FRA_A) < probed + u64::from(FALL) + 2 {
        assert_eq!(answer(dns, UK).await, [ip(FRA_A)], "answer changed during the API outage");
        asked += 1;
        assert!(asked < 1000, "Frankfurt's address is no longer probed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(answer(dns, UK).await, [ip(FRA_A)]);
    w.eu.restart().await;
    w.server.stop().await;
    drop(w.us);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_address_stays_dead_across_a_loadbalancer_ip_change_away_and_back() {
    let mut w = World::start("30s").await;
    let dns = w.dns();
    answered_within(dns, UK, FRA_A, Duration::from_secs(10)).await;
    // A dies: the UK goes to Seattle.
    w.backend(FRA_A).stop();
    answered_within(dns, UK, SEA, EXIT_BOUND).await;
    // The Service moves to B (alive): the UK comes back to Frankfurt.
    w.eu.apply(service(FRA_B));
    answered_within(dns, UK, FRA_B, Duration::from_secs(10)).await;
    assert!(!w.server.status().endpoints.iter().any(|e| e.address == FRA_A), "A is no longer probed");
    // And back to A, still dead: from the first table that has A again, Frankfurt is down.
    // No answer may ever carry A (as it would if A came back `unknown`, fail-open).
    w.eu.apply(service(FRA_A));
    let back = wait::until_async(
        Duration::from_secs(10),
        "the table to have A back",
        || async {
            let a = answer(dns, UK).await;
            assert_ne!(a, [ip(FRA_A)], "the dead address came back into the answers");
            let names = w.server.status().names.entries();
            let fra = names[0].sites.iter().find(|s| s.site == "frankfurt").cloned();
            (a, fra)
        },
        |(_, fra)| fra.as_ref().is_some_and(|s| s.addresses == [FRA_A]),
    )
    .await;
    assert!(!back.1.unwrap().up, "Frankfurt is down with A back");
    assert_eq!(answer(dns, UK).await, [ip(SEA)]);
    // /status lists A as probed again (its document is refreshed apart from the table).
    wait::until(Duration::from_secs(5), "A listed as probed and down", || {
        w.server.status().endpoints.iter().any(|e| e.address == FRA_A && e.state == "down")
    })
    .await;
    // A recovers: the UK returns to Frankfurt on A.
    w.backend(FRA_A).restart(Mode::Healthy).await;
    answered_within(dns, UK, FRA_A, Duration::from_secs(5)).await;
    w.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_address_is_probed_at_once_and_served_only_until_its_first_verdict() {
    let w = World::start("30s").await;
    let dns = w.dns();
    answered_within(dns, UK, FRA_A, Duration::from_secs(10)).await;
    // The Service moves to an address with nothing behind it. New addresses are fail-open
    // (`unknown` counts as up), so it is answered until its first verdict: `fall` failures,
    // the first at once, so at most (fall - 1) x (interval + jitter) + timeout.
    // Measured from the change in the API, so the bound's extra second also covers the watch
    // event reaching geodns.
    let dead = "127.0.0.24";
    w.eu.apply(service(dead));
    let seen_dead = std::cell::Cell::new(false);
    let started = Instant::now();
    wait::until_async(
        Duration::from_secs(10),
        "the UK moved to Seattle",
        || async {
            let a = answer(dns, UK).await;
            seen_dead.set(seen_dead.get() || a == [ip(dead)]);
            a
        },
        |a| a == &[ip(SEA)],
    )
    .await;
    let took = started.elapsed();
    let jitter = INTERVAL / 10;
    let bound = (INTERVAL + jitter) * (FALL - 1) + Duration::from_millis(150);
    println!(
        "a dead new address left the answers {took:?} after it was published (seen answered: {})",
        seen_dead.get()
    );
    assert!(took <= bound + Duration::from_secs(1), "{took:?}, bound {bound:?} plus a second");
    let st = w.server.status();
    let e = st.endpoints.iter().find(|e| e.address == dead).expect("the new address is probed");
    assert_eq!((e.state.as_str(), e.reason.as_str()), ("down", "connection refused"));
    w.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_within_sync_timeout_when_a_cluster_is_unreachable_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("city.mmdb");
    common::mmdb::write_city_db(&db, FIXTURE);
    let backends = on_same_port(&[FRA_A, SEA], Mode::Healthy).await;
    // eu's API server is gone before geodns starts (its site had a power cut).
    let mut eu = FakeKube::start().await;
    eu.stop().await;
    let us = FakeKube::start().await;
    us.apply(node("sea-1", "10.0.2.1"));
    us.apply(service(SEA));
    us.apply(slice("sea-1"));
    let kubeconfig = write_kubeconfig(dir.path(), "kubeconfig", &[("eu", &eu), ("us", &us)]);
    let sync_timeout = Duration::from_secs(2);
    let text = config(&db, &kubeconfig, backends[0].addr.port(), "2s");
    let started = Instant::now();
    let server = start(&text, dir.path()).await;
    let admin = server.admin_addr.unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let readyz = || async {
        let r = http.get(format!("http://{admin}/readyz")).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let (code, _) =
        wait::until_async(sync_timeout + Duration::from_secs(5), "/readyz 200", readyz, |(code, _)| *code == 200).await;
    let took = started.elapsed();
    assert_eq!(code, 200);
    assert!(took >= sync_timeout, "ready after {took:?}, before the sync timeout, with eu never synced");
    assert!(took <= sync_timeout + Duration::from_secs(1), "ready {took:?} after start: not within sync_timeout");
    // The cluster that did not sync is named in /status and the metrics.
    let st = server.status();
    let eu_status = st.kubernetes.iter().find(|c| c.name == "eu").unwrap();
    assert!(!eu_status.synced && eu_status.sync_timed_out, "{eu_status:?}");
    assert!(st.kubernetes.iter().any(|c| c.name == "us" && c.synced && !c.sync_timed_out));
    let metrics = http.get(format!("http://{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"geodns_kube_synced{cluster="eu"} 0"#), "{metrics}");
    assert!(metrics.contains(r#"geodns_kube_synced{cluster="us"} 1"#), "{metrics}");
    // The cluster that did sync serves its names.
    answered_within(server.dns_addrs[0], UK, SEA, Duration::from_secs(5)).await;
    server.stop().await;
}
