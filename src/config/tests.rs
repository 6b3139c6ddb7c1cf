//! Every shipped config parses; every invalid example fails with exactly its expected problems.

use std::path::{Path, PathBuf};

use super::*;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_config_is_valid() {
    let files = yaml_files(&repo("config"));
    assert!(!files.is_empty(), "config/ has no YAML files");
    for file in files {
        if file.file_name().is_some_and(|n| n.to_string_lossy().contains("routing-tests")) {
            continue; // routing test files are checked by the check command's tests
        }
        let config = load(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(!config.zones.is_empty(), "{}", file.display());
    }
}

#[test]
fn the_example_is_what_the_readme_says() {
    let c = load(&repo("config/example.yaml")).expect("example config is valid");
    let names: Vec<&str> = c.sites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["london", "frankfurt", "seattle", "singapore"]);
    let zone = &c.zones[0];
    assert_eq!(zone.apex.as_str(), "geo.example.");
    let app = &zone.geo[0];
    assert_eq!(app.name.as_str(), "app.geo.example.");
    assert_eq!(app.sites.len(), 4);
    assert_eq!(app.sites[0].1, vec!["192.0.2.1".parse::<std::net::IpAddr>().unwrap(), "2001:db8::1".parse().unwrap()]);
    assert_eq!(c.geoip.as_deref(), Some(repo("config").join("../geoip/geo-whois-asn-country.mmdb").as_path()));
    assert_eq!(c.server.dns_listen[0].port(), 8053);
}

#[test]
fn every_invalid_example_fails_with_its_expected_problems() {
    let files = yaml_files(&repo("config/invalid"));
    assert!(files.len() >= 5, "expected invalid examples, found {}", files.len());
    for file in files {
        let expected_file = file.with_extension("expected");
        let expected =
            std::fs::read_to_string(&expected_file).unwrap_or_else(|e| panic!("{}: {e}", expected_file.display()));
        let expected: Vec<&str> = expected.lines().filter(|l| !l.trim().is_empty()).collect();
        let err = load(&file).expect_err(&format!("{} should be rejected", file.display()));
        let got: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
        assert_eq!(got.len(), expected.len(), "{}: got {got:#?}", file.display());
        for (g, e) in got.iter().zip(&expected) {
            assert!(g.contains(e), "{}: expected {e:?} in {g:?}; all: {got:#?}", file.display());
        }
        // The rendered error names the file and every problem.
        let rendered = err.to_string();
        assert!(rendered.contains(&*file.to_string_lossy()), "{rendered}");
    }
}

#[test]
fn unknown_keys_are_rejected_everywhere() {
    let base =
        "sites: { l: { location: [1, 2] } }\nzones: { z.: { soa: { mname: ns, rname: h, serial: 1 }, ns: [ns] } }\n";
    for (extra, path) in [
        ("colour: red\n", ""),
        ("server: { dns_listen: [\"127.0.0.1:1\"], port: 53 }\n", "server"),
        ("geoip: { file: x }\n", "geoip"),
        ("health_checks: { w: { http: { path: /, verify: false } } }\n", "health_checks.w.http"),
        ("kubernetes: { clusters: [ { name: a, site: l, namespace: x } ] }\n", "kubernetes.clusters[0]"),
    ] {
        let err = parse(&format!("{base}{extra}"), Path::new(".")).expect_err(extra);
        let p = &err.problems()[0];
        assert!(p.message.contains("unknown field"), "{extra}: {p}");
        assert_eq!(p.path, path, "{extra}: {p}");
    }
}

#[test]
fn missing_file_is_a_clear_error() {
    let err = load(Path::new("/nonexistent/geodns.yaml")).unwrap_err();
    assert_eq!(err.kind(), "read");
    assert!(err.to_string().contains("/nonexistent/geodns.yaml"), "{err}");
}

#[test]
fn defaults_apply() {
    let c = parse(
        "sites: { l: { location: [1, 2] } }\nhealth_checks: { t: { tcp: { port: 22 } } }\nzones: { z.: { soa: { mname: ns, rname: h, serial: 1 }, ns: ns, records: { a: { A: 192.0.2.1 } } } }\n",
        Path::new("/etc/geodns"),
    )
    .expect("minimal config is valid");
    assert_eq!(c.server.dns_listen, vec![DEFAULT_DNS_LISTEN.parse().unwrap()]);
    assert_eq!(c.zones[0].ttl, DEFAULT_ZONE_TTL);
    assert_eq!(c.zones[0].soa.minimum, 300);
    assert_eq!(c.zones[0].ns[0].as_str(), "ns.z.");
    let t = &c.health_checks["t"];
    assert_eq!(
        (t.interval, t.timeout, t.rise, t.fall),
        (DEFAULT_INTERVAL, DEFAULT_TIMEOUT, DEFAULT_RISE, DEFAULT_FALL)
    );
    assert_eq!(t.probe, Probe::Tcp { port: 22 });
    assert!(c.geoip.is_none());
}

#[test]
fn kubernetes_clusters_validate() {
    let base = "sites: { fra: { location: [50, 8] } }\nzones: { z.: { soa: { mname: ns, rname: h, serial: 1 }, ns: [ns], geo: { app: {} } } }\n";
    let ok = parse(
        &format!("{base}kubernetes: {{ clusters: [ {{ name: eu, site: fra, kubeconfig: kc }}, {{ name: home, site_label: topology.kubernetes.io/region }} ] }}\n"),
        Path::new("/etc/geodns"),
    )
    .expect("valid clusters; a geo name may have no sites when kubernetes supplies them");
    assert_eq!(ok.kubernetes.clusters[0].placement, ClusterPlacement::Site(0));
    assert_eq!(ok.kubernetes.clusters[0].kubeconfig.as_deref(), Some(Path::new("/etc/geodns/kc")));
    assert_eq!(ok.kubernetes.sync_timeout, DEFAULT_KUBE_SYNC_TIMEOUT);
    let ok = parse(
        &format!("{base}kubernetes: {{ sync_timeout: 5s, clusters: [ {{ name: eu, site: fra }} ] }}\n"),
        Path::new("."),
    )
    .unwrap();
    assert_eq!(ok.kubernetes.sync_timeout, std::time::Duration::from_secs(5));
    let err = parse(
        &format!("{base}kubernetes: {{ sync_timeout: 0s, clusters: [ {{ name: eu, site: ber }}, {{ name: eu }}, {{ name: x, site: fra, site_label: y }} ] }}\n"),
        Path::new("."),
    )
    .unwrap_err();
    let got: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "kubernetes.clusters[0].site: unknown site \"ber\"",
            "kubernetes.clusters[1].name: cluster \"eu\" is listed more than once",
            "kubernetes.clusters[1]: set site (one cluster per site) or site_label (a stretched cluster)",
            "kubernetes.clusters[2]: set either site (one cluster per site) or site_label (a stretched cluster), not both",
            "kubernetes.sync_timeout: must be above 0",
        ]
    );
}
