//! What /metrics says to an operator and the alerts built on it: a HELP line for every family,
//! the config reload state, series that end when their endpoint, name or cluster does, the
//! per-(name, site) up gauge, the Kubernetes sync timestamp moving on bookmarks without a
//! re-list, and the shipped alert rules naming only series a real server exports.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::backend::{Mode, on_same_port};
use common::fake_kube::{FakeKube, write_kubeconfig};
use common::wait::until_async;
use geodns::app;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

fn http() -> reqwest::Client {
    geodns::sources::health::install_crypto_provider();
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap()
}

async fn scrape(admin: SocketAddr) -> String {
    let r = http().get(format!("http://{admin}/metrics")).send().await.expect("GET /metrics");
    assert!(r.status().is_success(), "/metrics: {}", r.status());
    r.text().await.expect("/metrics body")
}

/// The value of the one sample of `name` with exactly `labels`, if there is one.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    parse(text).samples.into_iter().find(|(n, l, _)| n == name && *l == want).map(|(_, _, v)| v)
}

/// A parsed exposition: families with their HELP and TYPE, and every sample.
#[derive(Debug, Default)]
struct Scrape {
    help: BTreeMap<String, String>,
    types: BTreeMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

/// Parses the text format (label values without commas or escaped quotes, as ours are).
fn parse(text: &str) -> Scrape {
    let mut s = Scrape::default();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(s.help.insert(name.to_owned(), help.to_owned()).is_none(), "two HELP lines for {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
            assert!(s.types.insert(name.to_owned(), kind.to_owned()).is_none(), "two TYPE lines for {name}");
        } else if !line.starts_with('#') {
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').expect("labels end with }");
                    let labels = inner
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once('=').expect("label=value");
                            (k.to_owned(), v.trim_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
                None => (series.to_owned(), BTreeMap::new()),
            };
            s.samples.push((name, labels, value));
        }
    }
    s
}

/// The family a sample belongs to (histogram samples carry suffixes).
fn family_of(sample: &str, types: &BTreeMap<String, String>) -> Option<String> {
    if types.contains_key(sample) {
        return Some(sample.to_owned());
    }
    ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|suffix| sample.strip_suffix(suffix))
        .find(|base| types.contains_key(*base))
        .map(str::to_owned)
}

/// Writes `text` to `path` through a rename, so the file watcher never reads it half-written.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn config(port: u16, app_sites: &str, kube: &str) -> String {
    format!(
        r#"
server: {{ dns_listen: ["127.0.0.1:0"], admin_listen: "127.0.0.1:0" }}
sites:
  london:    {{ location: [51.51, -0.13] }}
  frankfurt: {{ location: [50.11, 8.68] }}
  seattle:   {{ location: [47.61, -122.33] }}
health_checks:
  web: {{ http: {{ path: /healthz, port: {port} }}, interval: 100ms, timeout: 80ms, rise: 1, fall: 1 }}
zones:
  geo.example.:
    soa: {{ mname: ns1, rname: hostmaster, serial: 1 }}
    ns: [ns1]
    records: {{ ns1: {{ A: [127.0.0.1] }} }}
    geo:
      app: {{ ttl: 60, health_check: web, sites: {{ {app_sites} }} }}
{kube}"#
    )
}

async fn start_from_file(dir: &Path, text: &str) -> (PathBuf, app::Running, SocketAddr) {
    let path = dir.join("geodns.yaml");
    std::fs::write(&path, text).unwrap();
    let loaded = app::load(&path).expect("config loads");
    let running = app::start_with(loaded, Some(path.clone())).await.expect("server starts");
    let admin = running.admin_addr.expect("admin_listen is set");
    (path, running, admin)
}

/// Scrapes until `done` holds for the parsed text (bounded); returns that text.
async fn scrape_until(admin: SocketAddr, what: &str, done: impl Fn(&str) -> bool) -> String {
    until_async(WAIT, what, || scrape(admin), |t: &String| done(t)).await
}

fn endpoint_series(text: &str, endpoint: &str) -> Vec<String> {
    parse(text)
        .samples
        .into_iter()
        .filter(|(_, l, _)| l.get("endpoint").is_some_and(|e| e == endpoint))
        .map(|(n, l, _)| format!("{n}{l:?}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_state_follows_prometheus_convention() {
    let backends = on_same_port(&["127.0.0.2"], Mode::Healthy).await;
    let port = backends[0].addr.port();
    let dir = tempfile::tempdir().unwrap();
    let good = config(port, "london: [127.0.0.2]", "");
    let (path, s, admin) = start_from_file(dir.path(), &good).await;

    let text = scrape(admin).await;
    assert_eq!(sample(&text, "geodns_config_last_reload_successful", &[]), Some(1.0), "the start is a load");
    let started = sample(&text, "geodns_config_last_reload_success_timestamp_seconds", &[]).expect("timestamp");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(started > now - 600.0 && started <= now, "{started} is about now ({now})");

    // A bad config (the file watcher's reload): 0, and the time of the config still served.
    write_atomically(&path, &good.replace("london: [127.0.0.2]", "atlantis: [127.0.0.2]"));
    let text =
        scrape_until(admin, "a failed reload", |t| sample(t, "geodns_config_last_reload_successful", &[]) == Some(0.0))
            .await;
    assert_eq!(sample(&text, "geodns_config_last_reload_success_timestamp_seconds", &[]), Some(started));
    assert!(s.status().config.last_reload.as_ref().unwrap().error.as_deref().unwrap().contains("atlantis"));

    // A good one (as SIGHUP asks): 1 again, and the timestamp moves.
    write_atomically(&path, &good.replace("ttl: 60", "ttl: 61"));
    s.reload().await;
    let text =
        scrape_until(admin, "a good reload", |t| sample(t, "geodns_config_last_reload_successful", &[]) == Some(1.0))
            .await;
    let reloaded = sample(&text, "geodns_config_last_reload_success_timestamp_seconds", &[]).unwrap();
    assert!(reloaded > started, "the timestamp moved: {started} -> {reloaded}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_leaves_the_config_leaves_metrics() {
    let backends = on_same_port(&["127.0.0.2", "127.0.0.3"], Mode::Healthy).await;
    let port = backends[0].addr.port();
    let dir = tempfile::tempdir().unwrap();
    let text = config(port, "london: [127.0.0.2], frankfurt: [127.0.0.3]", "");
    let (path, s, admin) = start_from_file(dir.path(), &text).await;
    let up = |t: &str, ep: &str| sample(t, "geodns_endpoint_up", &[("check", "web"), ("endpoint", ep)]);
    let probes = |t: &str, ep: &str| {
        sample(t, "geodns_probes_total", &[("check", "web"), ("endpoint", ep), ("result", "pass")]).unwrap_or(0.0)
    };
    let site = |t: &str, site: &str| sample(t, "geodns_site_up", &[("name", "app.geo.example."), ("site", site)]);
    let both =
        scrape_until(admin, "both endpoints probed", |t| probes(t, "127.0.0.2") > 0.0 && probes(t, "127.0.0.3") > 0.0)
            .await;
    assert_eq!((up(&both, "127.0.0.2"), up(&both, "127.0.0.3")), (Some(1.0), Some(1.0)));
    assert_eq!((site(&both, "london"), site(&both, "frankfurt")), (Some(1.0), Some(1.0)));

    // Frankfurt fails: its endpoint and its site say 0, with a flip counted.
    backends[1].set_mode(Mode::Failing);
    let down = scrape_until(admin, "frankfurt down", |t| site(t, "frankfurt") == Some(0.0)).await;
    assert_eq!(up(&down, "127.0.0.3"), Some(0.0));
    assert!(
        sample(&down, "geodns_health_flips_total", &[("check", "web"), ("endpoint", "127.0.0.3"), ("to", "down")])
            .is_some_and(|n| n >= 1.0)
    );
    assert_eq!(site(&down, "london"), Some(1.0));

    // A reload takes Frankfurt out of the name: every series of its endpoint and its site
    // goes (a down-alert on it clears), London's stay.
    write_atomically(&path, &text.replace(", frankfurt: [127.0.0.3]", ""));
    let after = scrape_until(admin, "frankfurt's series gone", |t| {
        endpoint_series(t, "127.0.0.3").is_empty() && site(t, "frankfurt").is_none()
    })
    .await;
    assert_eq!(up(&after, "127.0.0.2"), Some(1.0));
    assert!(probes(&after, "127.0.0.2") > 0.0);
    assert_eq!(site(&after, "london"), Some(1.0));
    assert_eq!(sample(&after, "geodns_site_up_omitted_series", &[]), Some(0.0));
    s.stop().await;
}

fn k8s_service(lb_ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "app", "namespace": "web", "annotations": { "geodns.io/hostname": "kube.geo.example" } },
        "spec": { "type": "LoadBalancer", "ports": [{ "port": 80 }] },
        "status": { "loadBalancer": { "ingress": [{ "ip": lb_ip }] } },
    })
}

fn k8s_slice(ready: bool) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "name": "app-1", "namespace": "web", "labels": { "kubernetes.io/service-name": "app" } },
        "addressType": "IPv4",
        "endpoints": [{ "addresses": ["10.42.0.10"], "nodeName": "fra-1", "conditions": { "ready": ready } }],
        "ports": [{ "port": 8080 }],
    })
}

fn k8s_node() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": "fra-1" },
        "spec": { "podCIDR": "10.42.0.0/24", "podCIDRs": ["10.42.0.0/24"] },
        "status": { "addresses": [{ "type": "InternalIP", "address": "10.1.0.1" }] },
    })
}

/// The alert rules shipped in deploy/prometheus/ (rules, PrometheusRule, their promtool tests).
fn deploy_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus").join(name)
}

/// Every `geodns_*` metric name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("geodns_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_scrape_describes_every_family_and_has_every_series_the_alerts_use() {
    let backends = on_same_port(&["127.0.0.2"], Mode::Healthy).await;
    let port = backends[0].addr.port();
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeKube::start().await;
    fake.apply(k8s_node());
    fake.apply(k8s_service("198.51.100.2"));
    fake.apply(k8s_slice(true));
    let kc = write_kubeconfig(dir.path(), "kubeconfig", &[("eu", &fake)]);
    let kube = format!(
        "      kube: {{ ttl: 30 }}\nkubernetes:\n  clusters:\n    - {{ name: eu, kubeconfig: \"{}\", context: eu, site: frankfurt }}\n",
        kc.display()
    );
    // A signed zone, so that the DNSSEC family has its series too.
    let key = dir.path().join("zone.key");
    geodns::dnssec::tool::keygen(&key, "ecdsap256sha256").unwrap();
    let signed = format!("    ns: [ns1]\n    dnssec: {{ keys: [\"{}\"] }}\n", key.display());
    let text = config(port, "london: [127.0.0.2]", &kube).replacen("    ns: [ns1]\n", &signed, 1);
    assert!(text.contains("dnssec:"));
    let (path, s, admin) = start_from_file(dir.path(), &text).await;
    let kube_site = |t: &str| sample(t, "geodns_site_up", &[("name", "kube.geo.example."), ("site", "frankfurt")]);
    let synced = |t: &str| sample(t, "geodns_kube_synced", &[("cluster", "eu")]) == Some(1.0);
    scrape_until(admin, "the cluster synced and its name up", |t| synced(t) && kube_site(t) == Some(1.0)).await;

    // Traffic and a reload, so that every family has a sample.
    let q = common::dns::query("app.geo.example.", hickory_proto::rr::RecordType::A);
    common::dns::udp(common::server::v4(&s), &q).await;
    // An unsigned UPDATE (opcode 5, the zone as its one question): answered, and counted.
    let update = common::wire::WireQuery::new(7, "geo.example.", 6).flags(5 << 11).bytes();
    let reply = common::dns::udp_raw(common::server::v4(&s), &update).await.expect("an UPDATE is answered");
    assert_eq!(reply[..2], [0, 7]);
    write_atomically(&path, &text.replace("ttl: 60", "ttl: 61"));
    s.reload().await;
    let text = scrape_until(admin, "a reload counted and a probe", |t| {
        t.contains("geodns_config_reloads_total{")
            && t.contains("geodns_probes_total{")
            && t.contains("geodns_updates_total{")
    })
    .await;
    let parsed = parse(&text);

    // Every family has its HELP and TYPE, and the HELP is the documented one.
    for (name, kind) in &parsed.types {
        let help = parsed.help.get(name).unwrap_or_else(|| panic!("no HELP for {name}"));
        let (want_kind, want_help) = geodns::metrics::family(name);
        assert_eq!((kind.as_str(), help.as_str()), (want_kind.as_str(), want_help), "{name}");
    }
    for (name, _, _) in &parsed.samples {
        assert!(family_of(name, &parsed.types).is_some(), "{name} has no TYPE line");
    }
    let exported: BTreeSet<String> = parsed.types.keys().cloned().collect();
    let listed: BTreeSet<String> = geodns::metrics::FAMILIES.iter().map(|(n, _, _)| n.to_string()).collect();
    assert_eq!(
        exported, listed,
        "a scrape of a server with probes, a cluster, a signed zone, traffic, an update and a reload has every family"
    );
    assert!(!text.contains("geodns_kube_last_sync_age_seconds"), "the age gauge is gone");

    // The alert rules and their promtool tests name only series this server exports, with
    // labels it sets.
    let rules = std::fs::read_to_string(deploy_file("geodns-rules.yaml")).unwrap();
    for name in metric_names(&rules) {
        assert!(exported.contains(&name), "rule uses {name}, which /metrics does not have");
    }
    let tests = std::fs::read_to_string(deploy_file("geodns-rules.test.yaml")).unwrap();
    let labels_of = |family: &str| -> BTreeSet<String> {
        parsed
            .samples
            .iter()
            .filter(|(n, _, _)| family_of(n, &parsed.types).as_deref() == Some(family))
            .flat_map(|(_, l, _)| l.keys().cloned())
            .collect()
    };
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&tests).unwrap();
    let mut checked = 0;
    for case in doc["tests"].as_sequence().expect("tests") {
        for input in case["input_series"].as_sequence().expect("input_series") {
            let series = input["series"].as_str().expect("series");
            let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
            if name == "up" {
                continue; // Prometheus's own, per scrape target
            }
            assert!(exported.contains(name), "test series {name} is not exported");
            let have = labels_of(name);
            for pair in labels.trim_end_matches('}').split(',').filter(|p| !p.trim().is_empty()) {
                let key = pair.split('=').next().unwrap().trim();
                assert!(
                    ["job", "instance"].contains(&key) || have.contains(key),
                    "test series {series}: /metrics has no label {key} on {name} ({have:?})"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 5, "the rule tests feed series");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kube_sync_timestamp_moves_on_bookmarks_without_a_relist() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeKube::start().await;
    fake.apply(k8s_node());
    fake.apply(k8s_service("198.51.100.2"));
    fake.apply(k8s_slice(true));
    let kc = write_kubeconfig(dir.path(), "kubeconfig", &[("eu", &fake)]);
    let text = format!(
        r#"
server: {{ dns_listen: ["127.0.0.1:0"], admin_listen: "127.0.0.1:0" }}
sites:
  frankfurt: {{ location: [50.11, 8.68] }}
zones:
  geo.example.:
    soa: {{ mname: ns1, rname: hostmaster, serial: 1 }}
    ns: [ns1]
    records: {{ ns1: {{ A: [127.0.0.1] }} }}
    geo:
      kube: {{ ttl: 30 }}
kubernetes:
  clusters:
    - {{ name: eu, kubeconfig: "{}", context: eu, site: frankfurt }}
"#,
        kc.display()
    );
    let (_path, s, admin) = start_from_file(dir.path(), &text).await;
    let last = |t: &str| sample(t, "geodns_kube_last_sync_timestamp_seconds", &[("cluster", "eu")]);
    let site = |t: &str| sample(t, "geodns_site_up", &[("name", "kube.geo.example."), ("site", "frankfurt")]);
    let first = scrape_until(admin, "the first sync", |t| last(t).is_some() && site(t) == Some(1.0)).await;
    common::wait::until(WAIT, "three watches open", || fake.watch_requests() >= 3).await;
    let (lists, at) = (fake.list_requests(), last(&first).unwrap());

    // Nothing changes in the cluster: the watches only get bookmarks, and the timestamp moves.
    let moved = scrape_until(admin, "the timestamp moved", |t| last(t).is_some_and(|t| t > at + 1.0)).await;
    assert_eq!(fake.list_requests(), lists, "no re-list happened: the bookmarks moved it");
    assert_eq!(sample(&moved, "geodns_kube_connected", &[("cluster", "eu")]), Some(1.0));

    // A watch event moves it too, and the name's site follows readiness.
    let before = last(&moved).unwrap();
    fake.apply(k8s_slice(false));
    let after = scrape_until(admin, "the site not ready", |t| site(t) == Some(0.0)).await;
    assert!(last(&after).unwrap() > before);
    assert_eq!(fake.list_requests(), lists, "still no re-list");
    s.stop().await;
}

/// docs/operations.md lists every family with its type and HELP text, and every alert the
/// rule file defines.
#[test]
fn the_operations_doc_lists_every_family_and_alert() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md")).unwrap();
    for (name, kind, help) in geodns::metrics::FAMILIES {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("docs/operations.md: no metrics table row for {name}"));
        assert!(row.starts_with(&format!("| `{name}` | {} |", kind.as_str())), "{name}: type in {row}");
        assert!(row.ends_with(&format!("| {help} |")), "{name}: HELP text in {row}");
    }
    let rules: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(deploy_file("geodns-rules.yaml")).unwrap()).unwrap();
    let alerts: Vec<&str> = rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .map(|r| r["alert"].as_str().unwrap())
        .collect();
    assert!(alerts.len() >= 8, "{alerts:?}");
    for alert in alerts {
        assert!(doc.contains(&format!("| `{alert}` |")), "docs/operations.md: alert {alert} not in the alerts table");
    }
}
