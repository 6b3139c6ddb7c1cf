//! The Kubernetes source against the in-process fake API server, through the real kube client
//! and a generated kubeconfig: list/watch, readiness, stretched clusters, outages, 410 Gone.

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::fake_kube::{FakeKube, write_kubeconfig};
use geodns::config::{ClusterConfig, ClusterPlacement, SiteConfig};
use geodns::model::{Discovered, Location, Name, SiteId};
use geodns::sources::kube::{self as kube_source, KubeSnapshot};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const LONDON: SiteId = 0;
const FRANKFURT: SiteId = 1;
const SEATTLE: SiteId = 2;
const REGION: &str = "topology.kubernetes.io/region";
/// Bound for each wait; recovery waits get more because the watchers' backoff grows.
const WAIT: Duration = Duration::from_secs(10);
const RECOVERY_WAIT: Duration = Duration::from_secs(40);

fn sites() -> Vec<SiteConfig> {
    [("london", 51.51, -0.13), ("frankfurt", 50.11, 8.68), ("seattle", 47.61, -122.33), ("singapore", 1.35, 103.82)]
        .into_iter()
        .map(|(name, lat, lon)| SiteConfig { name: name.into(), location: Location::new(lat, lon) })
        .collect()
}

fn cluster(name: &str, kubeconfig: &Path, context: &str, placement: ClusterPlacement) -> ClusterConfig {
    ClusterConfig {
        name: name.into(),
        kubeconfig: Some(kubeconfig.to_owned()),
        context: Some(context.into()),
        placement,
    }
}

fn service(name: &str, hostname: Option<&str>, lb_ips: &[&str]) -> Value {
    let mut v = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": name, "namespace": "web" },
        "spec": { "type": "LoadBalancer", "ports": [{ "port": 80 }] },
        "status": { "loadBalancer": { "ingress": lb_ips.iter().map(|ip| json!({"ip": ip}))
                                                        .collect::<Vec<_>>() } },
    });
    if let Some(h) = hostname {
        v["metadata"]["annotations"] = json!({ "geodns.io/hostname": h });
    }
    v
}

/// `endpoints`: (node name, ready).
fn slice(name: &str, service: &str, endpoints: &[(&str, bool)]) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .enumerate()
        .map(|(i, (node, ready))| {
            json!({ "addresses": [format!("10.42.0.{}", i + 10)], "nodeName": node,
                    "conditions": { "ready": ready } })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "name": name, "namespace": "web",
                      "labels": { "kubernetes.io/service-name": service } },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{ "port": 8080 }],
    })
}

fn node(name: &str, region: &str, internal_ip: &str, pod_cidr: &str, public_ip: Option<&str>) -> Value {
    let mut v = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name, "labels": { REGION: region } },
        "spec": { "podCIDR": pod_cidr, "podCIDRs": [pod_cidr] },
        "status": { "addresses": [{ "type": "InternalIP", "address": internal_ip },
                                  { "type": "Hostname", "address": name }] },
    });
    if let Some(p) = public_ip {
        v["metadata"]["annotations"] = json!({ "geodns.io/public-ip": p });
    }
    v
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("valid address")
}

fn app() -> Name {
    Name::parse_absolute("app.geo.example.").expect("valid name")
}

/// Waits (bounded) until the snapshot satisfies `pred`; panics with the last snapshot if not.
async fn wait_for(
    rx: &mut watch::Receiver<Arc<KubeSnapshot>>,
    limit: Duration,
    what: &str,
    pred: impl Fn(&KubeSnapshot) -> bool,
) -> Arc<KubeSnapshot> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let current = rx.borrow_and_update().clone();
        if pred(&current) {
            return current;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("kube source stopped while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}; last snapshot: {current:#?}"),
        }
    }
}

fn entries<'a>(snap: &'a KubeSnapshot, name: &Name) -> Vec<&'a Discovered> {
    snap.discovered.iter().filter(|d| d.name == *name).collect()
}

fn entry<'a>(snap: &'a KubeSnapshot, name: &Name, site: SiteId) -> Option<&'a Discovered> {
    snap.discovered.iter().find(|d| d.name == *name && d.site == site)
}

fn all_synced_connected(snap: &KubeSnapshot) -> bool {
    snap.clusters.values().all(|c| c.synced && c.connected)
}

#[tokio::test]
async fn two_clusters_give_both_sites_and_readiness_follows_endpoint_slices() {
    let eu = FakeKube::start().await;
    let us = FakeKube::start().await;
    for (fake, lb) in [(&eu, "192.0.2.2"), (&us, "192.0.2.3")] {
        fake.apply(service("app", Some("app.geo.example"), &[lb]));
        fake.apply(service("plain", None, &["192.0.2.99"]));
        fake.apply(slice("app-abc", "app", &[("n1", true)]));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = write_kubeconfig(dir.path(), "config", &[("eu-admin", &eu), ("us-admin", &us)]);
    let token = CancellationToken::new();
    let source = kube_source::spawn(
        vec![
            cluster("eu", &kubeconfig, "eu-admin", ClusterPlacement::Site(FRANKFURT)),
            cluster("us", &kubeconfig, "us-admin", ClusterPlacement::Site(SEATTLE)),
        ],
        sites(),
        token.clone(),
    );
    let mut rx = source.subscribe();

    let snap =
        wait_for(&mut rx, WAIT, "both clusters' entries", |s| all_synced_connected(s) && entries(s, &app()).len() == 2)
            .await;
    assert_eq!(
        entries(&snap, &app()),
        vec![
            &Discovered {
                name: app(),
                site: FRANKFURT,
                addrs: vec![ip("192.0.2.2")],
                ready: true,
                drained: Vec::new(),
                origin: "eu/web/app".into(),
            },
            &Discovered {
                name: app(),
                site: SEATTLE,
                addrs: vec![ip("192.0.2.3")],
                ready: true,
                drained: Vec::new(),
                origin: "us/web/app".into(),
            },
        ]
    );
    assert_eq!(snap.discovered.len(), 2, "the unannotated Service joins no name");
    assert!(snap.clusters.values().all(|c| c.last_sync().is_some()));

    // Frankfurt loses its last ready endpoint: that site is down for the name, Seattle is not.
    eu.apply(slice("app-abc", "app", &[("n1", false)]));
    let snap =
        wait_for(&mut rx, WAIT, "frankfurt not ready", |s| entry(s, &app(), FRANKFURT).is_some_and(|d| !d.ready)).await;
    assert!(entry(&snap, &app(), SEATTLE).expect("seattle entry").ready);
    assert_eq!(entry(&snap, &app(), FRANKFURT).expect("entry").addrs, vec![ip("192.0.2.2")]);

    // And back.
    eu.apply(slice("app-abc", "app", &[("n1", false), ("n2", true)]));
    wait_for(&mut rx, WAIT, "frankfurt ready again", |s| entry(s, &app(), FRANKFURT).is_some_and(|d| d.ready)).await;
    token.cancel();
}

#[tokio::test]
async fn stretched_cluster_follows_node_public_ip_and_service_annotation() {
    let fake = FakeKube::start().await;
    fake.apply(node("lon-1", "london", "10.0.0.1", "10.42.0.0/24", Some("203.0.113.1")));
    fake.apply(node("lon-2", "london", "10.0.0.2", "10.42.1.0/24", None));
    fake.apply(node("sea-1", "seattle", "10.0.2.1", "10.42.2.0/24", None));
    fake.apply(node("mars-1", "mars", "10.0.9.1", "10.42.9.0/24", None));
    fake.apply(service("app", Some("app.geo.example, www.geo.example"), &[]));
    fake.apply(slice("app-abc", "app", &[("lon-1", true), ("lon-2", false), ("sea-1", true)]));
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = write_kubeconfig(dir.path(), "config", &[("homelab", &fake)]);
    let token = CancellationToken::new();
    let source = kube_source::spawn(
        vec![cluster("homelab", &kubeconfig, "homelab", ClusterPlacement::Label(REGION.into()))],
        sites(),
        token.clone(),
    );
    let mut rx = source.subscribe();

    let snap =
        wait_for(&mut rx, WAIT, "stretched entries", |s| all_synced_connected(s) && entries(s, &app()).len() == 2)
            .await;
    let london = entry(&snap, &app(), LONDON).expect("london entry");
    assert_eq!((london.addrs.clone(), london.ready), (vec![ip("203.0.113.1")], true));
    let seattle = entry(&snap, &app(), SEATTLE).expect("seattle entry");
    assert_eq!((seattle.addrs.clone(), seattle.ready), (vec![ip("10.0.2.1")], true));
    assert_eq!(snap.discovered.len(), 4, "two names at two sites");

    // Node pod CIDRs and addresses are client networks at the node's site; unknown sites skipped.
    let nets: Vec<(String, SiteId)> = snap.client_networks.iter().map(|c| (c.net.to_string(), c.site)).collect();
    for expected in [
        ("10.42.0.0/24", LONDON),
        ("10.42.1.0/24", LONDON),
        ("10.42.2.0/24", SEATTLE),
        ("10.0.0.1/32", LONDON),
        ("203.0.113.1/32", LONDON),
        ("10.0.2.1/32", SEATTLE),
    ] {
        assert!(nets.contains(&(expected.0.into(), expected.1)), "{expected:?} in {nets:?}");
    }
    assert!(!nets.iter().any(|(n, _)| n == "10.42.9.0/24"), "a node at an unknown site is skipped");

    // The residential address changes: the annotation follows, and so does the answer.
    fake.apply(node("lon-1", "london", "10.0.0.1", "10.42.0.0/24", Some("203.0.113.77")));
    wait_for(&mut rx, WAIT, "new public ip", |s| {
        entry(s, &app(), LONDON).is_some_and(|d| d.addrs == vec![ip("203.0.113.77")])
    })
    .await;

    // Seattle's only endpoint goes unready: the site stays listed, down, with no addresses.
    fake.apply(slice("app-abc", "app", &[("lon-1", true), ("sea-1", false)]));
    wait_for(&mut rx, WAIT, "seattle down", |s| {
        entry(s, &app(), SEATTLE).is_some_and(|d| !d.ready && d.addrs.is_empty())
    })
    .await;

    // Removing the annotation removes every entry of the Service.
    fake.apply(service("app", None, &[]));
    wait_for(&mut rx, WAIT, "entries gone", |s| s.discovered.is_empty()).await;
    token.cancel();
}

#[tokio::test]
async fn outage_keeps_the_last_state_and_the_relist_drops_what_was_deleted_meanwhile() {
    let mut fake = FakeKube::start().await;
    fake.apply(node("n1", "frankfurt", "10.1.0.1", "10.42.0.0/24", None));
    fake.apply(service("app", Some("app.geo.example"), &["192.0.2.2"]));
    fake.apply(slice("app-abc", "app", &[("n1", true)]));
    fake.apply(service("other", Some("other.geo.example"), &["192.0.2.20"]));
    fake.apply(slice("other-abc", "other", &[("n1", true)]));
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = write_kubeconfig(dir.path(), "config", &[("eu-admin", &fake)]);
    let token = CancellationToken::new();
    let source = kube_source::spawn(
        vec![cluster("eu", &kubeconfig, "eu-admin", ClusterPlacement::Site(FRANKFURT))],
        sites(),
        token.clone(),
    );
    let mut rx = source.subscribe();
    let before = wait_for(&mut rx, WAIT, "initial sync", |s| all_synced_connected(s) && s.discovered.len() == 2).await;

    let lists_before = fake.list_requests();
    fake.stop().await;
    let during = wait_for(&mut rx, WAIT, "disconnected", |s| !s.clusters["eu"].connected).await;
    assert_eq!(during.discovered, before.discovered, "an outage never drops names");
    assert_eq!(during.client_networks.len(), before.client_networks.len());
    let status = &during.clusters["eu"];
    assert!(status.synced && status.watch_errors > 0 && status.last_error.is_some());

    // While it is down, one Service goes away for good.
    assert!(fake.delete("Service", "web", "other"));
    assert!(fake.delete("EndpointSlice", "web", "other-abc"));
    fake.restart().await;
    let after = wait_for(&mut rx, RECOVERY_WAIT, "re-list without the deleted Service", |s| {
        s.clusters["eu"].connected && s.discovered.len() == 1
    })
    .await;
    assert_eq!(after.discovered, vec![before.discovered[0].clone()]);
    assert!(fake.list_requests() > lists_before, "the deletion came from a re-list (410 on resume)");
    assert_eq!(after.discovered[0].name, app());

    // Watches work again after the recovery.
    fake.apply(service("app", Some("app.geo.example"), &["192.0.2.222"]));
    wait_for(&mut rx, RECOVERY_WAIT, "change after recovery", |s| {
        entry(s, &app(), FRANKFURT).is_some_and(|d| d.addrs == vec![ip("192.0.2.222")])
    })
    .await;
    token.cancel();
}

#[tokio::test]
async fn gone_410_forces_a_relist_without_losing_state() {
    let fake = FakeKube::start().await;
    fake.apply(node("n1", "frankfurt", "10.1.0.1", "10.42.0.0/24", None));
    fake.apply(service("app", Some("app.geo.example"), &["192.0.2.2"]));
    fake.apply(slice("app-abc", "app", &[("n1", true)]));
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = write_kubeconfig(dir.path(), "config", &[("eu-admin", &fake)]);
    let token = CancellationToken::new();
    let source = kube_source::spawn(
        vec![cluster("eu", &kubeconfig, "eu-admin", ClusterPlacement::Site(FRANKFURT))],
        sites(),
        token.clone(),
    );
    let mut rx = source.subscribe();
    let before = wait_for(&mut rx, WAIT, "initial sync", |s| all_synced_connected(s) && s.discovered.len() == 1).await;
    // All three watches are open before the compaction.
    common::wait::until(WAIT, "three watches", || fake.watch_requests() >= 3).await;
    let lists = fake.list_requests();
    let first_sync = before.clusters["eu"].last_sync().expect("synced");

    fake.compact();
    common::wait::until(RECOVERY_WAIT, "three re-lists", || fake.list_requests() >= lists + 3).await;
    let after = wait_for(&mut rx, RECOVERY_WAIT, "re-list done", |s| {
        s.clusters["eu"].last_sync().is_some_and(|t| t > first_sync) && s.clusters["eu"].connected
    })
    .await;
    assert_eq!(after.discovered, before.discovered, "a 410 never drops names");
    assert!(after.clusters["eu"].watch_errors >= 1, "the 410 is counted");

    // The watches resumed after the re-list.
    fake.apply(slice("app-abc", "app", &[("n1", false)]));
    wait_for(&mut rx, RECOVERY_WAIT, "change after re-list", |s| entry(s, &app(), FRANKFURT).is_some_and(|d| !d.ready))
        .await;
    token.cancel();
}

#[tokio::test]
async fn node_pod_cidrs_of_a_single_site_cluster_map_to_its_site() {
    let fake = FakeKube::start().await;
    // The region label says nothing in a single-site cluster: the cluster's site wins.
    fake.apply(node("n1", "seattle", "10.1.0.1", "10.42.0.0/24", None));
    fake.apply(node("n2", "whatever", "10.1.0.2", "10.42.1.0/24", None));
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = write_kubeconfig(dir.path(), "config", &[("eu-admin", &fake)]);
    let token = CancellationToken::new();
    let source = kube_source::spawn(
        vec![cluster("eu", &kubeconfig, "eu-admin", ClusterPlacement::Site(FRANKFURT))],
        sites(),
        token.clone(),
    );
    let mut rx = source.subscribe();
    let snap =
        wait_for(&mut rx, WAIT, "client networks", |s| all_synced_connected(s) && s.client_networks.len() == 4).await;
    let mut nets: Vec<(String, SiteId)> = snap.client_networks.iter().map(|c| (c.net.to_string(), c.site)).collect();
    nets.sort();
    assert_eq!(
        nets,
        vec![
            ("10.1.0.1/32".into(), FRANKFURT),
            ("10.1.0.2/32".into(), FRANKFURT),
            ("10.42.0.0/24".into(), FRANKFURT),
            ("10.42.1.0/24".into(), FRANKFURT),
        ]
    );
    assert!(snap.discovered.is_empty());

    // A node leaving takes its networks with it.
    fake.delete("Node", "", "n2");
    wait_for(&mut rx, WAIT, "node gone", |s| s.client_networks.len() == 2).await;
    token.cancel();
}

#[tokio::test]
async fn unreachable_cluster_reports_errors_and_never_syncs() {
    // A server that was started and stopped: its port refuses connections.
    let mut fake = FakeKube::start().await;
    fake.stop().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = write_kubeconfig(dir.path(), "config", &[("gone", &fake)]);
    let token = CancellationToken::new();
    let source = kube_source::spawn(
        vec![cluster("gone", &kubeconfig, "gone", ClusterPlacement::Site(LONDON))],
        sites(),
        token.clone(),
    );
    let mut rx = source.subscribe();
    let snap = wait_for(&mut rx, WAIT, "errors reported", |s| s.clusters["gone"].watch_errors > 0).await;
    let status = &snap.clusters["gone"];
    assert!(!status.synced && !status.connected && status.last_error.is_some());
    assert!(!snap.all_synced());
    token.cancel();
}
