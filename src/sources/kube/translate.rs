//! Pure translation from Kubernetes objects (k8s-openapi types) to our types: which geo names a
//! Service joins, its addresses and readiness per site, and the client networks its cluster's
//! nodes imply. No I/O, no clocks, no kube client: the watchers hand in what their reflector
//! stores hold and get plain [`Discovered`] and [`ClientNetwork`] values back.
//!
//! The annotation contract (DESIGN.md section 6):
//! - `geodns.io/hostname` on a Service: comma-separated absolute names the Service serves.
//! - `geodns.io/public-ip` on a Node: comma-separated addresses that replace the node's own
//!   addresses (NAT, Tailscale, residential addresses that change).
//! - `geodns.io/drain: "true"` on a Service drains every address it contributes; on a Node,
//!   every address of the node (its own, and its public-ip annotation's) wherever it appears:
//!   in a stretched cluster, and as a LoadBalancer IP (k3s ServiceLB publishes node addresses).
//!   Drained addresses are listed in [`Discovered::drained`] and are down for every name, as an
//!   endpoint forced down in the admin state file is; unlike that file, every replica that
//!   watches the cluster sees the drain.
//!
//! Multi-cluster mode ([`ClusterPlacement::Site`]): every Service of the cluster is at the
//! cluster's site; its addresses are the IPs of `status.loadBalancer.ingress`. Ingress entries
//! that carry only a `hostname` (AWS ELB style) are ignored: geodns answers A/AAAA records and
//! does not resolve names at run time. The site is ready for the Service when the Service's
//! EndpointSlices hold at least one ready endpoint.
//!
//! Stretched-cluster mode ([`ClusterPlacement::Label`]): a node's site is the value of the
//! configured label, matched against the configured site names (nodes with no label or an
//! unknown value are skipped). A Service's addresses at a site are the addresses of that site's
//! nodes that host a ready endpoint of the Service (`endpoints[].nodeName`); a site that has
//! nodes in the cluster but none hosting a ready endpoint is reported with `ready: false` and no
//! addresses, so the routing core takes it down for the name.
//!
//! Must not import routing, dns, admin or app.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tracing::debug;

use crate::config::{ClientNetwork, ClusterPlacement, SiteConfig};
use crate::model::{Discovered, Name, SiteId};

/// Service annotation naming the geo names the Service serves (comma-separated).
pub const HOSTNAME_ANNOTATION: &str = "geodns.io/hostname";
/// Node annotation whose addresses replace the node's own (comma-separated).
pub const PUBLIC_IP_ANNOTATION: &str = "geodns.io/public-ip";
/// Service or Node annotation that drains its addresses when it is "true".
pub const DRAIN_ANNOTATION: &str = "geodns.io/drain";
/// The well-known label linking an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What one cluster contributes: its discovered endpoints and the client networks of its nodes.
#[derive(Debug, Clone, Default)]
pub struct ClusterOutput {
    /// Sorted by (name, site, origin).
    pub discovered: Vec<Discovered>,
    /// Sorted by (site, net), one entry per network.
    pub client_networks: Vec<ClientNetwork>,
    /// What is drained by annotation, for /status: "node fra-1", "service web/app", sorted.
    pub drains: Vec<String>,
}

/// True when the object's `geodns.io/drain` annotation says "true" (any case, trimmed).
pub fn drained(annotations: Option<&BTreeMap<String, String>>) -> bool {
    annotations.and_then(|a| a.get(DRAIN_ANNOTATION)).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Every address of a node: InternalIP, ExternalIP and the public-ip annotation's.
fn node_all_addrs(node: &Node) -> impl Iterator<Item = IpAddr> {
    status_addresses(node, "InternalIP")
        .into_iter()
        .chain(status_addresses(node, "ExternalIP"))
        .chain(node_public_addrs(node))
}

/// The geo names of a Service's `geodns.io/hostname` annotation (comma-separated, whitespace
/// trimmed, taken as absolute names). Invalid names are skipped with a debug log; duplicates
/// are removed; the result is sorted.
pub fn hostnames(svc: &Service) -> Vec<Name> {
    let Some(value) = svc.metadata.annotations.as_ref().and_then(|a| a.get(HOSTNAME_ANNOTATION)) else {
        return Vec::new();
    };
    let mut names = BTreeSet::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match Name::parse_absolute(part) {
            Ok(name) => {
                names.insert(name);
            }
            Err(error) => debug!(
                service = %object_key(svc.metadata.namespace.as_deref(), svc.metadata.name.as_deref()),
                value = part,
                %error,
                "skipping invalid name in geodns.io/hostname"
            ),
        }
    }
    names.into_iter().collect()
}

/// The IPs of a Service's `status.loadBalancer.ingress` (hostname-only entries ignored),
/// sorted and deduplicated.
pub fn load_balancer_ips(svc: &Service) -> Vec<IpAddr> {
    let ips: BTreeSet<IpAddr> = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ingress| ingress.ip.as_deref())
        .filter_map(|ip| ip.trim().parse().ok())
        .collect();
    ips.into_iter().collect()
}

/// True when the endpoint counts as ready: a missing `conditions.ready` means ready (the API's
/// documented default for consumers).
fn endpoint_ready(endpoint: &k8s_openapi::api::discovery::v1::Endpoint) -> bool {
    endpoint.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true)
}

/// True when the slice belongs to the Service `namespace/name`.
fn slice_of(slice: &EndpointSlice, namespace: &str, name: &str) -> bool {
    slice.metadata.namespace.as_deref().unwrap_or_default() == namespace
        && slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)).is_some_and(|n| n == name)
}

/// Number of ready endpoints of the Service `namespace/name` across its EndpointSlices.
pub fn ready_endpoint_count<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    namespace: &str,
    name: &str,
) -> usize {
    slices
        .into_iter()
        .filter(|s| slice_of(s, namespace, name))
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| endpoint_ready(e))
        .count()
}

/// Names of the nodes that host at least one ready endpoint of the Service `namespace/name`.
pub fn ready_endpoint_nodes<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    namespace: &str,
    name: &str,
) -> BTreeSet<String> {
    slices
        .into_iter()
        .filter(|s| slice_of(s, namespace, name))
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| endpoint_ready(e))
        .filter_map(|e| e.node_name.clone())
        .collect()
}

/// Parses a comma-separated list of addresses, skipping (and debug-logging) invalid ones.
fn parse_ip_list(value: &str, node: &str) -> Vec<IpAddr> {
    value
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .filter_map(|p| match p.parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                debug!(node, value = p, "skipping invalid address in geodns.io/public-ip");
                None
            }
        })
        .collect()
}

/// The node's own addresses of one `status.addresses` type ("ExternalIP", "InternalIP").
fn status_addresses(node: &Node, kind: &str) -> Vec<IpAddr> {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == kind)
        .filter_map(|a| a.address.trim().parse().ok())
        .collect()
}

/// The addresses clients should use to reach services on this node: the `geodns.io/public-ip`
/// annotation when it holds at least one valid address, else the ExternalIP addresses, else
/// the InternalIP addresses. Sorted and deduplicated.
pub fn node_public_addrs(node: &Node) -> Vec<IpAddr> {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let annotated = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PUBLIC_IP_ANNOTATION))
        .map(|v| parse_ip_list(v, name))
        .unwrap_or_default();
    let mut addrs = if !annotated.is_empty() {
        annotated
    } else {
        let external = status_addresses(node, "ExternalIP");
        if !external.is_empty() { external } else { status_addresses(node, "InternalIP") }
    };
    addrs.sort();
    addrs.dedup();
    addrs
}

/// The networks a query from this node or its pods comes from: `spec.podCIDRs` and
/// `spec.podCIDR`, plus every address the node has (InternalIP, ExternalIP and the
/// public-ip annotation) as a host route (/32, /128). Sorted and deduplicated.
pub fn node_networks(node: &Node) -> Vec<IpNet> {
    let spec = node.spec.as_ref();
    let cidrs =
        spec.and_then(|s| s.pod_cidrs.as_ref()).into_iter().flatten().chain(spec.and_then(|s| s.pod_cidr.as_ref()));
    let mut nets: Vec<IpNet> = cidrs.filter_map(|c| c.trim().parse::<IpNet>().ok()).map(|n| n.trunc()).collect();
    nets.extend(node_all_addrs(node).map(IpNet::from));
    nets.sort();
    nets.dedup();
    nets
}

/// The site of a node in a stretched cluster: its `label` value matched against the site
/// names; `None` when the label is missing or names no configured site.
pub fn node_site(node: &Node, label: &str, sites: &[SiteConfig]) -> Option<SiteId> {
    let value = node.metadata.labels.as_ref()?.get(label)?;
    sites.iter().position(|s| s.name == *value)
}

/// "namespace/name" for logs and origins.
fn object_key(namespace: Option<&str>, name: Option<&str>) -> String {
    format!("{}/{}", namespace.unwrap_or_default(), name.unwrap_or_default())
}

/// Everything one cluster contributes, from the full contents of its three stores.
pub fn cluster_output<'a>(
    cluster: &str,
    placement: &ClusterPlacement,
    sites: &[SiteConfig],
    services: impl IntoIterator<Item = &'a Service>,
    slices: &[&'a EndpointSlice],
    nodes: &[&'a Node],
) -> ClusterOutput {
    // Node placement first: both modes need it for client networks, stretched mode for addresses.
    let node_sites: BTreeMap<&str, SiteId> = nodes
        .iter()
        .filter_map(|n| {
            let name = n.metadata.name.as_deref()?;
            let site = match placement {
                ClusterPlacement::Site(site) => Some(*site),
                ClusterPlacement::Label(label) => node_site(n, label, sites),
            }?;
            Some((name, site))
        })
        .collect();

    let mut drains = Vec::new();
    let mut drained_nodes: BTreeSet<IpAddr> = BTreeSet::new();
    for node in nodes.iter().filter(|n| drained(n.metadata.annotations.as_ref())) {
        drains.push(format!("node {}", node.metadata.name.as_deref().unwrap_or_default()));
        drained_nodes.extend(node_all_addrs(node));
    }

    let mut discovered = Vec::new();
    for svc in services {
        let names = hostnames(svc);
        if names.is_empty() {
            continue;
        }
        let namespace = svc.metadata.namespace.as_deref().unwrap_or_default();
        let svc_name = svc.metadata.name.as_deref().unwrap_or_default();
        let origin = format!("{cluster}/{namespace}/{svc_name}");
        let svc_drained = drained(svc.metadata.annotations.as_ref());
        if svc_drained {
            drains.push(format!("service {namespace}/{svc_name}"));
        }
        let per_site: Vec<(SiteId, Vec<IpAddr>, bool)> = match placement {
            ClusterPlacement::Site(site) => {
                let ready = ready_endpoint_count(slices.iter().copied(), namespace, svc_name) > 0;
                vec![(*site, load_balancer_ips(svc), ready)]
            }
            ClusterPlacement::Label(_) => stretched_sites(svc, namespace, svc_name, slices, nodes, &node_sites),
        };
        for (site, addrs, ready) in &per_site {
            let drained: Vec<IpAddr> =
                addrs.iter().copied().filter(|a| svc_drained || drained_nodes.contains(a)).collect();
            for name in &names {
                discovered.push(Discovered {
                    name: name.clone(),
                    site: *site,
                    addrs: addrs.clone(),
                    ready: *ready,
                    drained: drained.clone(),
                    origin: origin.clone(),
                });
            }
        }
    }
    discovered.sort_by(|a, b| (&a.name, a.site, &a.origin).cmp(&(&b.name, b.site, &b.origin)));

    let mut networks: BTreeMap<IpNet, SiteId> = BTreeMap::new();
    for node in nodes {
        let Some(site) = node.metadata.name.as_deref().and_then(|n| node_sites.get(n)) else {
            continue;
        };
        for net in node_networks(node) {
            // Two nodes claiming one network (a stale podCIDR) keep the first node's site.
            networks.entry(net).or_insert(*site);
        }
    }
    let mut client_networks: Vec<ClientNetwork> =
        networks.into_iter().map(|(net, site)| ClientNetwork { net, site }).collect();
    client_networks.sort_by_key(|c| (c.site, c.net));

    drains.sort();
    ClusterOutput { discovered, client_networks, drains }
}

/// Stretched mode: per site with nodes in the cluster, the addresses of its nodes that host a
/// ready endpoint of the Service, and whether there is any.
fn stretched_sites(
    svc: &Service,
    namespace: &str,
    name: &str,
    slices: &[&EndpointSlice],
    nodes: &[&Node],
    node_sites: &BTreeMap<&str, SiteId>,
) -> Vec<(SiteId, Vec<IpAddr>, bool)> {
    let hosting = ready_endpoint_nodes(slices.iter().copied(), namespace, name);
    let mut per_site: BTreeMap<SiteId, (BTreeSet<IpAddr>, bool)> =
        node_sites.values().map(|site| (*site, (BTreeSet::new(), false))).collect();
    for node in nodes {
        let Some(node_name) = node.metadata.name.as_deref() else {
            continue;
        };
        let Some(site) = node_sites.get(node_name) else {
            continue;
        };
        if !hosting.contains(node_name) {
            continue;
        }
        let entry = per_site.get_mut(site).expect("every placed node's site has an entry");
        entry.1 = true;
        entry.0.extend(node_public_addrs(node));
    }
    let unplaced: Vec<&String> = hosting.iter().filter(|n| !node_sites.contains_key(n.as_str())).collect();
    if !unplaced.is_empty() {
        debug!(
            service = %object_key(svc.metadata.namespace.as_deref(), svc.metadata.name.as_deref()),
            nodes = ?unplaced,
            "ready endpoints on nodes with no known site are not routed"
        );
    }
    per_site.into_iter().map(|(site, (addrs, ready))| (site, addrs.into_iter().collect(), ready)).collect()
}

#[cfg(test)]
#[path = "translate_tests.rs"]
mod tests;
