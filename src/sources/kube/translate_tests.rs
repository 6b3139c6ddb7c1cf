//! Unit tests for the pure translation, with hand-built objects.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

use super::*;
use crate::model::Location;

fn sites() -> Vec<SiteConfig> {
    ["london", "frankfurt", "seattle"]
        .into_iter()
        .map(|name| SiteConfig { name: name.into(), location: Location::new(0.0, 0.0) })
        .collect()
}

const LONDON: SiteId = 0;
const FRANKFURT: SiteId = 1;
const SEATTLE: SiteId = 2;

fn service(name: &str, hostname: Option<&str>, lb: &[Value]) -> Service {
    let mut v = json!({
        "metadata": { "name": name, "namespace": "web" },
        "status": { "loadBalancer": { "ingress": lb } },
    });
    if let Some(h) = hostname {
        v["metadata"]["annotations"] = json!({ HOSTNAME_ANNOTATION: h });
    }
    serde_json::from_value(v).expect("valid Service")
}

/// `endpoints`: (nodeName, ready) where ready `None` leaves out the condition.
fn slice(name: &str, service: &str, endpoints: &[(&str, Option<bool>)]) -> EndpointSlice {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .enumerate()
        .map(|(i, (node, ready))| {
            let mut e = json!({ "addresses": [format!("10.42.0.{}", i + 1)], "nodeName": node });
            if let Some(r) = ready {
                e["conditions"] = json!({ "ready": r });
            }
            e
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": "web",
                      "labels": { SERVICE_NAME_LABEL: service } },
        "addressType": "IPv4",
        "endpoints": endpoints,
    }))
    .expect("valid EndpointSlice")
}

fn node(name: &str, region: Option<&str>, addrs: &[(&str, &str)], public_ip: Option<&str>) -> Node {
    let mut v = json!({
        "metadata": { "name": name },
        "spec": { "podCIDR": "10.42.1.0/24", "podCIDRs": ["10.42.1.0/24", "fd00:42:1::/64"] },
        "status": { "addresses": addrs.iter().map(|(t, a)| json!({"type": t, "address": a}))
                                      .collect::<Vec<_>>() },
    });
    if let Some(r) = region {
        v["metadata"]["labels"] = json!({ "topology.kubernetes.io/region": r });
    }
    if let Some(p) = public_ip {
        v["metadata"]["annotations"] = json!({ PUBLIC_IP_ANNOTATION: p });
    }
    serde_json::from_value(v).expect("valid Node")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("valid address")
}

fn name(s: &str) -> Name {
    Name::parse_absolute(s).expect("valid name")
}

#[test]
fn hostnames_split_trim_skip_invalid_and_dedup() {
    let svc = service("app", Some(" app.geo.example , b.geo.example.,bad name,, app.geo.example"), &[]);
    assert_eq!(hostnames(&svc), vec![name("app.geo.example."), name("b.geo.example.")]);
    assert!(hostnames(&service("plain", None, &[])).is_empty());
}

#[test]
fn load_balancer_ips_ignore_hostname_only_ingress() {
    let svc = service(
        "app",
        None,
        &[
            json!({"ip": "192.0.2.2"}),
            json!({"hostname": "elb.example"}),
            json!({"ip": "2001:db8::2"}),
            json!({"ip": "192.0.2.2"}),
        ],
    );
    assert_eq!(load_balancer_ips(&svc), vec![ip("192.0.2.2"), ip("2001:db8::2")]);
}

#[test]
fn readiness_counts_missing_condition_as_ready() {
    let slices =
        [slice("app-1", "app", &[("n1", Some(false)), ("n2", None)]), slice("other-1", "other", &[("n3", Some(true))])];
    assert_eq!(ready_endpoint_count(&slices, "web", "app"), 1);
    assert_eq!(ready_endpoint_count(&slices, "web", "missing"), 0);
    assert_eq!(ready_endpoint_count(&slices, "other-ns", "other"), 0);
    let nodes = ready_endpoint_nodes(&slices, "web", "app");
    assert_eq!(nodes.into_iter().collect::<Vec<_>>(), vec!["n2".to_owned()]);
}

#[test]
fn slice_with_no_endpoints_field_is_not_ready() {
    let empty: EndpointSlice = serde_json::from_value(json!({
        "metadata": { "name": "app-1", "namespace": "web", "labels": { SERVICE_NAME_LABEL: "app" } },
        "addressType": "IPv4",
    }))
    .expect("valid EndpointSlice");
    assert_eq!(ready_endpoint_count([&empty], "web", "app"), 0);
}

#[test]
fn node_addresses_prefer_annotation_then_external_then_internal() {
    let internal = node("a", None, &[("InternalIP", "10.0.0.1"), ("Hostname", "a")], None);
    assert_eq!(node_public_addrs(&internal), vec![ip("10.0.0.1")]);
    let external = node("b", None, &[("InternalIP", "10.0.0.2"), ("ExternalIP", "198.51.100.2")], None);
    assert_eq!(node_public_addrs(&external), vec![ip("198.51.100.2")]);
    let annotated = node(
        "c",
        None,
        &[("InternalIP", "10.0.0.3"), ("ExternalIP", "198.51.100.3")],
        Some("203.0.113.3, 2001:db8::3,junk"),
    );
    assert_eq!(node_public_addrs(&annotated), vec![ip("203.0.113.3"), ip("2001:db8::3")]);
    let junk_only = node("d", None, &[("InternalIP", "10.0.0.4")], Some("junk"));
    assert_eq!(node_public_addrs(&junk_only), vec![ip("10.0.0.4")]);
}

#[test]
fn node_networks_hold_pod_cidrs_and_host_routes() {
    let n = node("a", None, &[("InternalIP", "10.0.0.1")], Some("203.0.113.1"));
    let nets: Vec<String> = node_networks(&n).iter().map(ToString::to_string).collect();
    assert_eq!(nets, ["10.0.0.1/32", "10.42.1.0/24", "203.0.113.1/32", "fd00:42:1::/64"]);
}

#[test]
fn multi_cluster_mode_uses_load_balancer_ips_at_the_cluster_site() {
    let svcs = [
        service("app", Some("app.geo.example"), &[json!({"ip": "192.0.2.2"})]),
        service("plain", None, &[json!({"ip": "192.0.2.9"})]),
    ];
    let slices = [slice("app-1", "app", &[("n1", Some(true))])];
    let nodes = [node("n1", None, &[("InternalIP", "10.0.0.1")], None)];
    let out = cluster_output(
        "eu",
        &ClusterPlacement::Site(FRANKFURT),
        &sites(),
        &svcs,
        &slices.iter().collect::<Vec<_>>(),
        &nodes.iter().collect::<Vec<_>>(),
    );
    assert_eq!(
        out.discovered,
        vec![Discovered {
            name: name("app.geo.example."),
            site: FRANKFURT,
            addrs: vec![ip("192.0.2.2")],
            ready: true,
            drained: Vec::new(),
            origin: "eu/web/app".into(),
        }]
    );
    // Every node of a single-site cluster is at that site, whatever its labels.
    assert!(out.client_networks.iter().all(|c| c.site == FRANKFURT));
    assert_eq!(out.client_networks.len(), 3);

    let not_ready = [slice("app-1", "app", &[("n1", Some(false))])];
    let out = cluster_output(
        "eu",
        &ClusterPlacement::Site(FRANKFURT),
        &sites(),
        &svcs,
        &not_ready.iter().collect::<Vec<_>>(),
        &[],
    );
    assert!(!out.discovered[0].ready);
    assert_eq!(out.discovered[0].addrs, vec![ip("192.0.2.2")]);
}

#[test]
fn stretched_mode_places_nodes_by_label_and_uses_hosting_nodes() {
    let label = ClusterPlacement::Label("topology.kubernetes.io/region".into());
    let svcs = [service("app", Some("app.geo.example,www.geo.example"), &[])];
    let slices = [slice(
        "app-1",
        "app",
        &[("lon-1", Some(true)), ("lon-2", Some(false)), ("sea-1", Some(false)), ("mars-1", None)],
    )];
    let nodes = [
        node("lon-1", Some("london"), &[("InternalIP", "10.0.0.1")], Some("203.0.113.1")),
        node("lon-2", Some("london"), &[("ExternalIP", "198.51.100.2")], None),
        node("sea-1", Some("seattle"), &[("InternalIP", "10.0.2.1")], None),
        node("mars-1", Some("mars"), &[("InternalIP", "10.0.9.1")], None),
        node("bare", None, &[("InternalIP", "10.0.8.1")], None),
    ];
    let out = cluster_output(
        "homelab",
        &label,
        &sites(),
        &svcs,
        &slices.iter().collect::<Vec<_>>(),
        &nodes.iter().collect::<Vec<_>>(),
    );
    let summary: Vec<(String, SiteId, Vec<IpAddr>, bool)> =
        out.discovered.iter().map(|d| (d.name.to_string(), d.site, d.addrs.clone(), d.ready)).collect();
    assert_eq!(
        summary,
        vec![
            ("app.geo.example.".into(), LONDON, vec![ip("203.0.113.1")], true),
            ("app.geo.example.".into(), SEATTLE, vec![], false),
            ("www.geo.example.".into(), LONDON, vec![ip("203.0.113.1")], true),
            ("www.geo.example.".into(), SEATTLE, vec![], false),
        ]
    );
    assert!(out.discovered.iter().all(|d| d.origin == "homelab/web/app"));

    // Client networks: only nodes at known sites, each at its own site.
    let sea: Vec<String> =
        out.client_networks.iter().filter(|c| c.site == SEATTLE).map(|c| c.net.to_string()).collect();
    assert_eq!(sea, ["10.0.2.1/32"]);
    assert!(out.client_networks.iter().all(|c| c.site != FRANKFURT));
    assert!(!out.client_networks.iter().any(|c| c.net.to_string() == "10.0.9.1/32"));
    // The shared podCIDR in these fixtures is claimed by the first node only.
    let pod: Vec<SiteId> =
        out.client_networks.iter().filter(|c| c.net.to_string() == "10.42.1.0/24").map(|c| c.site).collect();
    assert_eq!(pod, vec![LONDON]);
}

fn with_annotation<T: serde::Serialize + serde::de::DeserializeOwned>(object: T, key: &str, value: &str) -> T {
    let mut v = serde_json::to_value(object).unwrap();
    v["metadata"]["annotations"][key] = json!(value);
    serde_json::from_value(v).unwrap()
}

#[test]
fn drain_annotations_mark_a_services_or_a_nodes_addresses_drained() {
    let label = ClusterPlacement::Label("topology.kubernetes.io/region".into());
    let slices = [slice("app-1", "app", &[("lon-1", Some(true)), ("lon-2", Some(true))])];
    let nodes = [
        with_annotation(
            node("lon-1", Some("london"), &[("InternalIP", "10.0.0.1")], Some("203.0.113.1")),
            DRAIN_ANNOTATION,
            " TRUE ",
        ),
        node("lon-2", Some("london"), &[("ExternalIP", "198.51.100.2")], None),
    ];
    let run = |svcs: &[Service]| {
        cluster_output(
            "homelab",
            &label,
            &sites(),
            svcs,
            &slices.iter().collect::<Vec<_>>(),
            &nodes.iter().collect::<Vec<_>>(),
        )
    };
    // A drained node: its address is listed and drained; the other node's is not.
    let out = run(&[service("app", Some("app.geo.example"), &[])]);
    assert_eq!(out.discovered.len(), 1);
    assert_eq!(out.discovered[0].addrs, [ip("198.51.100.2"), ip("203.0.113.1")]);
    assert_eq!(out.discovered[0].drained, [ip("203.0.113.1")]);
    assert_eq!(out.drains, ["node lon-1"]);
    // A drained Service: every address it contributes.
    let out = run(&[with_annotation(service("app", Some("app.geo.example"), &[]), DRAIN_ANNOTATION, "true")]);
    assert_eq!(out.discovered[0].drained, out.discovered[0].addrs);
    assert_eq!(out.drains, ["node lon-1", "service web/app"]);

    // Site mode: a LoadBalancer IP that is a drained node's address (k3s ServiceLB) is drained.
    let site = ClusterPlacement::Site(FRANKFURT);
    let svcs =
        [service("app", Some("app.geo.example"), &[json!({ "ip": "198.51.100.2" }), json!({ "ip": "10.0.0.1" })])];
    let out = cluster_output(
        "eu",
        &site,
        &sites(),
        &svcs,
        &slices.iter().collect::<Vec<_>>(),
        &nodes.iter().collect::<Vec<_>>(),
    );
    assert_eq!(out.discovered[0].drained, [ip("10.0.0.1")]);
    // Anything but "true" is no drain.
    assert!(!drained(Some(&BTreeMap::from([(DRAIN_ANNOTATION.to_owned(), "yes".to_owned())]))));
    assert!(!drained(None));
}
