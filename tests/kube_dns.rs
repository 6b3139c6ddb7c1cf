//! Kubernetes discovery end to end: two fake API servers (one per cluster) driven through the
//! real kube client, the real server, and real DNS queries.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::dns::{addresses, query, rcode, with_ecs};
use common::fake_kube::{FakeKube, write_kubeconfig};
use common::server::{start, v4};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

const FIXTURE: &[(&str, f64, f64, &str)] = &[("81.2.69.0/24", 51.5, -0.1, "GB"), ("8.8.8.0/24", 37.4, -122.1, "US")];

fn service(name: &str, hostname: Option<&str>, lb_ip: &str) -> Value {
    let mut v = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": name, "namespace": "web" },
        "spec": { "type": "LoadBalancer", "ports": [{ "port": 80 }] },
        "status": { "loadBalancer": { "ingress": [{ "ip": lb_ip }] } },
    });
    if let Some(h) = hostname {
        v["metadata"]["annotations"] = json!({ "geodns.io/hostname": h });
    }
    v
}

fn slice(service: &str, node: &str, ready: bool) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "name": format!("{service}-1"), "namespace": "web",
                      "labels": { "kubernetes.io/service-name": service } },
        "addressType": "IPv4",
        "endpoints": [{ "addresses": ["10.42.0.10"], "nodeName": node, "conditions": { "ready": ready } }],
        "ports": [{ "port": 8080 }],
    })
}

fn node(name: &str, internal_ip: &str, pod_cidr: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name },
        "spec": { "podCIDR": pod_cidr, "podCIDRs": [pod_cidr] },
        "status": { "addresses": [{ "type": "InternalIP", "address": internal_ip }] },
    })
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn answer(dns: SocketAddr, subnet: &str) -> Message {
    common::dns::udp(dns, &with_ecs(query("app.geo.example.", RecordType::A), subnet)).await
}

async fn wait_for(dns: SocketAddr, subnet: &str, want: &[&str], limit: Duration) {
    let want: Vec<IpAddr> = want.iter().map(|a| ip(a)).collect();
    let started = Instant::now();
    let mut last = Vec::new();
    while started.elapsed() < limit {
        last = addresses(&answer(dns, subnet).await);
        if last == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("from {subnet}: still {last:?} after {limit:?}, want {want:?}");
}

/// Sends a query without ECS from `source` (a loopback address) and returns the answer.
async fn from_source(dns: SocketAddr, source: &str) -> Vec<IpAddr> {
    let socket = tokio::net::UdpSocket::bind((ip(source), 0)).await.expect("bind a loopback source");
    let q = query("app.geo.example.", RecordType::A);
    socket.send_to(&q.to_vec().unwrap(), dns).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) =
        tokio::time::timeout(Duration::from_secs(3), socket.recv_from(&mut buf)).await.expect("an answer").unwrap();
    addresses(&Message::from_vec(&buf[..n]).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_in_two_clusters_answer_by_distance_readiness_and_outages() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("city.mmdb");
    common::mmdb::write_city_db(&db, FIXTURE);
    let mut eu = FakeKube::start().await;
    let us = FakeKube::start().await;
    // Frankfurt's cluster: one node whose pod network is 127.44.0.0/16 (reachable on loopback).
    eu.apply(node("fra-1", "127.0.0.44", "127.44.0.0/16"));
    eu.apply(service("app", Some("app.geo.example"), "198.51.100.2"));
    eu.apply(slice("app", "fra-1", true));
    us.apply(node("sea-1", "127.0.0.45", "127.45.0.0/16"));
    us.apply(service("app", Some("app.geo.example"), "198.51.100.3"));
    us.apply(slice("app", "sea-1", true));
    let kubeconfig = write_kubeconfig(dir.path(), "kubeconfig", &[("eu", &eu), ("us", &us)]);

    let text = format!(
        r#"
server: {{ dns_listen: ["127.0.0.1:0"], rrl: {{ enabled: false }} }}
geoip: {{ database: "{db}" }}
sites:
  london:    {{ location: [51.51, -0.13] }}
  frankfurt: {{ location: [50.11, 8.68] }}
  seattle:   {{ location: [47.61, -122.33] }}
zones:
  geo.example.:
    soa: {{ mname: ns1, rname: hostmaster, serial: 1 }}
    ns: [ns1]
    records: {{ ns1: {{ A: [127.0.0.1] }} }}
    geo:
      app: {{ ttl: 60 }}
kubernetes:
  clusters:
    - {{ name: eu, kubeconfig: "{kc}", context: eu, site: frankfurt }}
    - {{ name: us, kubeconfig: "{kc}", context: us, site: seattle }}
"#,
        db = db.display(),
        kc = kubeconfig.display()
    );
    let s = start(&text, dir.path()).await;
    let dns = v4(&s);

    // Synced: the UK is nearest Frankfurt's cluster, California Seattle's.
    wait_for(dns, "81.2.69.0/24", &["198.51.100.2"], Duration::from_secs(10)).await;
    wait_for(dns, "8.8.8.0/24", &["198.51.100.3"], Duration::from_secs(10)).await;
    let st = s.status();
    assert!(st.ready, "{:?}", st.not_ready);
    assert_eq!(
        st.kubernetes.iter().map(|c| (c.name.as_str(), c.synced)).collect::<Vec<_>>(),
        [("eu", true), ("us", true)]
    );

    // A pod of Frankfurt's cluster asking through its CoreDNS (no ECS, source in the pod CIDR)
    // gets Frankfurt; a node of Seattle's cluster gets Seattle.
    assert_eq!(from_source(dns, "127.44.3.7").await, [ip("198.51.100.2")]);
    assert_eq!(from_source(dns, "127.0.0.45").await, [ip("198.51.100.3")]);

    // Frankfurt's endpoints stop being ready: its clients move to Seattle.
    eu.apply(slice("app", "fra-1", false));
    wait_for(dns, "81.2.69.0/24", &["198.51.100.3"], Duration::from_secs(10)).await;
    eu.apply(slice("app", "fra-1", true));
    wait_for(dns, "81.2.69.0/24", &["198.51.100.2"], Duration::from_secs(10)).await;

    // Frankfurt's API server goes away: answers stay as they were.
    eu.stop().await;
    let started = Instant::now();
    while s.status().kubernetes.iter().any(|c| c.name == "eu" && c.connected) {
        assert!(started.elapsed() < Duration::from_secs(20), "the outage is noticed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(addresses(&answer(dns, "81.2.69.0/24").await), [ip("198.51.100.2")], "last known state kept");

    // It comes back without the Service (deleted during the outage): Frankfurt's entry goes.
    eu.delete("Service", "web", "app");
    eu.restart().await;
    wait_for(dns, "81.2.69.0/24", &["198.51.100.3"], Duration::from_secs(40)).await;

    // Removing the annotation in Seattle's cluster leaves the name with no addresses: NODATA.
    us.apply(service("app", None, "198.51.100.3"));
    let started = Instant::now();
    loop {
        let r = answer(dns, "8.8.8.0/24").await;
        if r.answers.is_empty() {
            assert_eq!(rcode(&r), ResponseCode::NoError);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "annotation removal not applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.stop().await;
}

fn annotated(mut object: Value, key: &str, value: &str) -> Value {
    object["metadata"]["annotations"][key] = json!(value);
    object
}

/// Waits until every replica answers `subnet` with `want`.
async fn all_answer(replicas: &[SocketAddr], subnet: &str, want: &[&str]) {
    for dns in replicas {
        wait_for(*dns, subnet, want, Duration::from_secs(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_annotations_on_a_service_and_a_node_are_seen_by_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("city.mmdb");
    common::mmdb::write_city_db(&db, FIXTURE);
    let eu = FakeKube::start().await;
    let us = FakeKube::start().await;
    // Frankfurt's LoadBalancer IP is its node's address, as k3s ServiceLB publishes it.
    eu.apply(node("fra-1", "198.51.100.2", "10.42.0.0/24"));
    eu.apply(service("app", Some("app.geo.example"), "198.51.100.2"));
    eu.apply(slice("app", "fra-1", true));
    us.apply(node("sea-1", "198.51.100.3", "10.43.0.0/24"));
    us.apply(service("app", Some("app.geo.example"), "198.51.100.3"));
    us.apply(slice("app", "sea-1", true));
    let kubeconfig = write_kubeconfig(dir.path(), "kubeconfig", &[("eu", &eu), ("us", &us)]);
    let text = format!(
        r#"
server: {{ dns_listen: ["127.0.0.1:0"], rrl: {{ enabled: false }} }}
geoip: {{ database: "{db}" }}
sites:
  frankfurt: {{ location: [50.11, 8.68] }}
  seattle:   {{ location: [47.61, -122.33] }}
zones:
  geo.example.:
    soa: {{ mname: ns1, rname: hostmaster, serial: 1 }}
    ns: [ns1]
    records: {{ ns1: {{ A: [127.0.0.1] }} }}
    geo:
      app: {{ ttl: 60 }}
kubernetes:
  clusters:
    - {{ name: eu, kubeconfig: "{kc}", context: eu, site: frankfurt }}
    - {{ name: us, kubeconfig: "{kc}", context: us, site: seattle }}
"#,
        db = db.display(),
        kc = kubeconfig.display()
    );
    // Two replicas watching the same clusters, as two geodns pods would.
    let replicas = [start(&text, dir.path()).await, start(&text, dir.path()).await];
    let dns: Vec<SocketAddr> = replicas.iter().map(v4).collect();
    all_answer(&dns, "81.2.69.0/24", &["198.51.100.2"]).await;
    let drained = |what: &str| {
        replicas.iter().all(|r| r.status().drained.iter().any(|d| d == &format!("kubernetes eu: {what} drained")))
    };

    // Drain Frankfurt's Service: every replica sends the UK to Seattle, and says why.
    eu.apply(annotated(service("app", Some("app.geo.example"), "198.51.100.2"), "geodns.io/drain", "true"));
    all_answer(&dns, "81.2.69.0/24", &["198.51.100.3"]).await;
    assert!(drained("service web/app"), "{:?}", replicas[0].status().drained);
    eu.apply(service("app", Some("app.geo.example"), "198.51.100.2"));
    all_answer(&dns, "81.2.69.0/24", &["198.51.100.2"]).await;
    assert!(replicas.iter().all(|r| r.status().drained.is_empty()));

    // Drain the node behind Frankfurt's LoadBalancer IP: the same, for every Service on it.
    eu.apply(annotated(node("fra-1", "198.51.100.2", "10.42.0.0/24"), "geodns.io/drain", "True"));
    all_answer(&dns, "81.2.69.0/24", &["198.51.100.3"]).await;
    assert!(drained("node fra-1"), "{:?}", replicas[0].status().drained);
    let names = replicas[1].status().names.entries();
    let fra = names[0].sites.iter().find(|s| s.site == "frankfurt").unwrap();
    assert!(!fra.up, "drained: down for the name");
    // Any other value undrains.
    eu.apply(annotated(node("fra-1", "198.51.100.2", "10.42.0.0/24"), "geodns.io/drain", "false"));
    all_answer(&dns, "81.2.69.0/24", &["198.51.100.2"]).await;
    for r in replicas {
        r.stop().await;
    }
}
