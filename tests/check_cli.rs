//! `geodns check` as a user runs it: the real binary, on the shipped example, on broken configs
//! and test files, and against a live in-process server.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::server::{start, test_config, v4};

fn geodns(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_geodns"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the geodns binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn validates_and_summarises_the_example() {
    let o = geodns(&["check", "--config", "config/example.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("config/example.yaml: OK\n"), "{out}");
    assert!(out.contains("zone       geo.example. (6 static names, 1 geo names)"), "{out}");
    assert!(
        out.contains("geo      app.geo.example. -> london, frankfurt, seattle, singapore (ttl 60, all_down all)"),
        "{out}"
    );
    assert!(out.contains("geoip      config/../geoip/geo-whois-asn-country.mmdb: country ipvAll, built "), "{out}");
    let o = geodns(&["check", "--config", "config/example.yaml", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("--json prints JSON");
    assert_eq!(v["zones"][0]["apex"], "geo.example.");
    assert_eq!(v["geoip"]["ip_version"], 6);
}

#[test]
fn a_broken_config_lists_every_problem_and_exits_78() {
    let o = geodns(&["check", "--config", "config/invalid/many-problems.yaml"]);
    assert_eq!(o.status.code(), Some(78));
    let err = stderr(&o);
    let expected =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/invalid/many-problems.expected"))
            .unwrap();
    for line in expected.lines() {
        assert!(err.contains(line), "missing {line:?} in:\n{err}");
    }
    assert!(stdout(&o).is_empty());
    let o = geodns(&["check", "--config", "/nonexistent.yaml"]);
    assert_eq!(o.status.code(), Some(78));
    assert!(stderr(&o).contains("cannot read config file \"/nonexistent.yaml\""), "{}", stderr(&o));
}

#[test]
fn a_missing_geoip_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml"))
        .unwrap()
        .replace("../geoip/geo-whois-asn-country.mmdb", "missing.mmdb");
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, text).unwrap();
    let o = geodns(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(78));
    assert!(stderr(&o).contains("cannot open GeoIP database"), "{}", stderr(&o));
    assert!(stderr(&o).contains("missing.mmdb"), "{}", stderr(&o));
}

#[test]
fn explains_a_decision_in_text_and_json() {
    let o = geodns(&["check", "--config", "config/example.yaml", "app.geo.example", "--client", "103.6.148.0/24"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("query      app.geo.example. A from 103.6.148.0/24"), "{out}");
    assert!(out.contains("client     GeoIP: SG at ("), "{out}");
    assert!(out.contains("rule       nearest"), "{out}");
    assert!(out.contains("1. singapore"), "{out}");
    assert!(out.contains("<- answered"), "{out}");
    assert!(out.contains("answer     app.geo.example. 60 A 192.0.2.4"), "{out}");
    assert!(out.contains("ecs scope  /22"), "{out}");

    let o = geodns(&[
        "check",
        "-c",
        "config/example.yaml",
        "app.geo.example",
        "AAAA",
        "--client",
        "81.2.69.0/24",
        "--down",
        "london",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["rule"], "nearest");
    assert_eq!(v["placement"]["country"], "GB");
    assert_eq!(v["sites"][0]["site"], "london");
    assert_eq!(v["sites"][0]["health"], "down");
    assert_eq!(v["sites"][1]["site"], "frankfurt");
    assert_eq!(v["sites"][1]["answered"], true);
    assert_eq!(v["answer"][0]["data"], "2001:db8::2");
    assert_eq!(v["ttl"], 30, "halved while a site is down");

    // A client network, and a client with no location.
    let out = stdout(&geodns(&["check", "-c", "config/example.yaml", "app.geo.example", "--client", "10.42.3.4"]));
    assert!(out.contains("client     in client_networks entry 10.42.0.0/16 -> site london"), "{out}");
    assert!(!out.contains("ecs scope"), "an address is a source, not ECS: {out}");
    let out = stdout(&geodns(&["check", "-c", "config/example.yaml", "app.geo.example", "--client", "192.168.7.7"]));
    assert!(out.contains("no location"), "{out}");
    assert!(out.contains("rule       no_location"), "{out}");
    // Outside the zones.
    let out = stdout(&geodns(&["check", "-c", "config/example.yaml", "example.com", "--client", "192.0.2.1"]));
    assert!(out.contains("rcode      REFUSED") && out.contains("outside every zone served (geo.example.)"), "{out}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["check"],
        vec!["check", "-c", "config/example.yaml", "app.geo.example"],
        vec!["check", "-c", "config/example.yaml", "app.geo.example", "--client", "1.2.3.4/8"],
        vec!["check", "-c", "config/example.yaml", "app.geo.example", "BOGUS", "--client", "1.2.3.4"],
        vec!["check", "-c", "config/example.yaml", "app.geo.example", "--client", "1.2.3.4", "--down", "paris"],
    ] {
        let o = geodns(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).is_empty(), "{args:?}");
    }
}

#[test]
fn the_shipped_routing_tests_pass() {
    let o = geodns(&["check", "--config", "config/example.yaml", "--tests", "config/example.routing-tests.yaml"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(out.lines().filter(|l| l.starts_with("PASS  ")).count() >= 10, "{out}");
    assert!(out.ends_with(" passed, 0 failed\n"), "{out}");
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn failing_cases_say_why_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let tests = write(
        dir.path(),
        "t.yaml",
        r#"
cases:
  - name: wrong site on purpose
    client: 81.2.69.0/24
    query: app.geo.example
    expect: { site: singapore, scope: 8 }
  - client: 103.6.148.0/24
    query: app.geo.example
    expect: { site: singapore }
"#,
    );
    let o = geodns(&["check", "-c", "config/example.yaml", "--tests", tests.to_str().unwrap()]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(
            "FAIL  wrong site on purpose: expected site singapore, got london; expected ECS scope /8, got /18"
        ),
        "{out}"
    );
    assert!(out.contains("PASS  app.geo.example A from 103.6.148.0/24"), "{out}");
    assert!(out.ends_with("1 passed, 1 failed\n"), "{out}");
    let o = geodns(&["check", "-c", "config/example.yaml", "--tests", tests.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v[0]["result"], "fail");
    assert_eq!(v[0]["observed"]["sites"][0], "london");
}

#[test]
fn an_invalid_test_file_names_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.yaml",
        "cases:\n  - { client: nowhere, query: app.geo.example, expect: { site: london } }\n  - { client: 1.2.3.4, query: a, type: NOPE, expect: {} }\n",
    );
    let o = geodns(&["check", "-c", "config/example.yaml", "--tests", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(78));
    let err = stderr(&o);
    assert!(
        err.contains(
            "cases[0] (app.geo.example A from nowhere).client: \"nowhere\" is not an address or a CIDR subnet"
        ),
        "{err}"
    );
    assert!(err.contains("cases[1] (a NOPE from 1.2.3.4).type: unknown record type \"NOPE\""), "{err}");
    assert!(err.contains("cases[1] (a NOPE from 1.2.3.4).expect: expect at least one of"), "{err}");
    let unknown = write(
        dir.path(),
        "unknown.yaml",
        "cases:\n  - { client: 1.2.3.4, query: a, expect: { site: x }, colour: red }\n",
    );
    let o = geodns(&["check", "-c", "config/example.yaml", "--tests", unknown.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(78));
    assert!(stderr(&o).contains("unknown field `colour`"), "{}", stderr(&o));
}

const FIXTURE: &[(&str, f64, f64, &str)] =
    &[("81.2.69.0/24", 51.5, -0.1, "GB"), ("103.6.148.0/22", 1.29, 103.85, "SG"), ("5.9.0.0/16", 52.52, 13.40, "DE")];

#[tokio::test(flavor = "multi_thread")]
async fn live_mode_queries_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("city.mmdb");
    common::mmdb::write_city_db(&db, FIXTURE);
    let text = test_config(&db);
    let config = write(dir.path(), "c.yaml", &text);
    let s = start(&text, dir.path()).await;
    let server = v4(&s).to_string();

    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || geodns(&args.iter().map(String::as_str).collect::<Vec<_>>()))
    };
    let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let o = run(a(&["check", "--server", &server, "app.geo.example", "--client", "103.6.148.0/24"])).await.unwrap();
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(out.contains("answer     192.0.2.4"), "{out}");
    assert!(out.contains("ecs scope  /22"), "{out}");
    assert!(!out.contains("sites"), "no config, no site names: {out}");

    let o = run(a(&[
        "check",
        "--server",
        &server,
        "--config",
        config.to_str().unwrap(),
        "app.geo.example",
        "AAAA",
        "--client",
        "5.9.1.0/24",
    ]))
    .await
    .unwrap();
    let out = stdout(&o);
    assert!(out.contains("answer     2001:db8::2"), "{out}");
    assert!(out.contains("sites      frankfurt"), "{out}");

    let tests = write(
        dir.path(),
        "t.yaml",
        r#"
cases:
  - { name: uk, client: 81.2.69.0/24, query: app.geo.example, expect: { site: london, scope: 3, ttl: 60 } }
  - { name: sg, client: 103.6.148.0/24, query: app.geo.example, expect: { addresses: [192.0.2.4] } }
  - { name: de down, client: 5.9.0.0/16, query: app.geo.example, down: [frankfurt], expect: { site: london } }
  - { name: nx, client: 81.2.69.0/24, query: nope.geo.example, expect: { rcode: NXDOMAIN } }
"#,
    );
    let o = run(a(&[
        "check",
        "--server",
        &server,
        "--config",
        config.to_str().unwrap(),
        "--tests",
        tests.to_str().unwrap(),
    ]))
    .await
    .unwrap();
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(out.contains("SKIP  de down: sets `down`, which cannot be applied to a live server"), "{out}");
    assert!(out.ends_with("3 passed, 0 failed, 1 skipped\n"), "{out}");

    // Without --config, site expectations cannot be checked: that case fails and says why.
    let o = run(a(&["check", "--server", &server, "--tests", tests.to_str().unwrap()])).await.unwrap();
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("FAIL  uk: expects sites or a rule: give --config"), "{out}");

    // A server that does not answer.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let o = run(a(&[
        "check",
        "--server",
        &silent_addr,
        "--timeout",
        "300ms",
        "app.geo.example",
        "--client",
        "81.2.69.0/24",
    ]))
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no answer from"), "{}", stderr(&o));
    s.stop().await;
}
