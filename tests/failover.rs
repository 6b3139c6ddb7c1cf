//! Health checks end to end: real HTTP backends per site on loopback, the real server, real DNS
//! queries. Answers move away from a site that fails its probes and come back when it recovers.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::backend::{Backend, Mode, on_same_port};
use common::dns::{addresses, query, udp, with_ecs};
use common::server::{start, v4};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

const FIXTURE: &[(&str, f64, f64, &str)] = &[
    ("81.2.69.0/24", 51.5, -0.1, "GB"),
    ("5.9.0.0/16", 52.52, 13.40, "DE"),
    ("8.8.8.0/24", 37.4, -122.1, "US"),
    ("103.6.148.0/22", 1.29, 103.85, "SG"),
];

/// Sites at 127.0.0.2 (london), .3 (frankfurt), .4 (seattle), .5 (singapore), each with an
/// HTTP backend on the same port, probed every 50 ms with rise and fall of 2.
fn config(db: &std::path::Path, port: u16, extra: &str) -> String {
    format!(
        r#"
server: {{ dns_listen: ["127.0.0.1:0"], rrl: {{ enabled: false }} {extra} }}
geoip: {{ database: "{db}" }}
sites:
  london:    {{ location: [51.51, -0.13] }}
  frankfurt: {{ location: [50.11, 8.68] }}
  seattle:   {{ location: [47.61, -122.33] }}
  singapore: {{ location: [1.35, 103.82] }}
health_checks:
  web: {{ http: {{ path: /healthz, port: {port} }}, interval: 50ms, timeout: 40ms, jitter: 5ms, rise: 2, fall: 2 }}
zones:
  geo.example.:
    soa: {{ mname: ns1, rname: hostmaster, serial: 1 }}
    ns: [ns1]
    records: {{ ns1: {{ A: [127.0.0.1] }} }}
    geo:
      app:     {{ ttl: 60, health_check: web, sites: {{ london: [127.0.0.2], frankfurt: [127.0.0.3], seattle: [127.0.0.4], singapore: [127.0.0.5] }} }}
      p-all:   {{ all_down: all, health_check: web, sites: {{ london: [127.0.0.2], frankfurt: [127.0.0.3] }} }}
      p-first: {{ all_down: first, health_check: web, sites: {{ london: [127.0.0.2], frankfurt: [127.0.0.3] }} }}
      p-nodata: {{ all_down: nodata, health_check: web, sites: {{ london: [127.0.0.2], frankfurt: [127.0.0.3] }} }}
      p-servfail: {{ all_down: servfail, health_check: web, sites: {{ london: [127.0.0.2], frankfurt: [127.0.0.3] }} }}
"#,
        db = db.display()
    )
}

const SITES: [&str; 4] = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn answer(server: SocketAddr, name: &str, subnet: &str) -> Vec<IpAddr> {
    addresses(&udp(server, &with_ecs(query(name, RecordType::A), subnet)).await)
}

/// Polls the answer until it equals `want` (bounded); returns how long it took.
async fn wait_for_answer(server: SocketAddr, name: &str, subnet: &str, want: &[&str], limit: Duration) -> Duration {
    let want: Vec<IpAddr> = want.iter().map(|a| ip(a)).collect();
    let started = Instant::now();
    let mut last = Vec::new();
    while started.elapsed() < limit {
        last = answer(server, name, subnet).await;
        if last == want {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{name} from {subnet}: still {last:?} after {limit:?}, want {want:?}");
}

async fn setup(extra: &str) -> (tempfile::TempDir, Vec<Backend>, geodns::app::Running) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("city.mmdb");
    common::mmdb::write_city_db(&db, FIXTURE);
    let backends = on_same_port(&SITES, Mode::Healthy).await;
    let port = backends[0].addr.port();
    let text = config(&db, port, &extra.replace("{dir}", &dir.path().display().to_string()));
    let running = start(&text, dir.path()).await;
    (dir, backends, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_site_loses_its_clients_to_the_next_nearest_and_gets_them_back() {
    let (_dir, mut backends, s) = setup("").await;
    let dns = v4(&s);
    // Wait for the first verdicts (rise 2), then London answers the UK.
    wait_for_answer(dns, "app.geo.example.", "81.2.69.0/24", &["127.0.0.2"], Duration::from_secs(5)).await;
    wait_until(|| s.status().endpoints.iter().all(|e| e.state == "up"), "all endpoints up").await;

    // London's server goes away: after `fall` (2) failed probes the UK goes to Frankfurt.
    let before = backends[0].requests();
    backends[0].stop();
    wait_for_answer(dns, "app.geo.example.", "81.2.69.0/24", &["127.0.0.3"], Duration::from_secs(5)).await;
    let reply = udp(dns, &with_ecs(query("app.geo.example.", RecordType::A), "81.2.69.0/24")).await;
    assert_eq!(reply.answers[0].ttl, 30, "TTL halved while a site is down");
    let london = s.status().endpoints.iter().find(|e| e.address == "127.0.0.2").cloned().unwrap();
    assert_eq!(london.state, "down");
    assert!(london.reason.contains("refused"), "{london:?}");
    assert_eq!(backends[0].requests(), before, "a stopped server sees no requests");
    // Other clients are untouched.
    assert_eq!(answer(dns, "app.geo.example.", "103.6.148.0/24").await, [ip("127.0.0.5")]);

    // It comes back: after `rise` (2) passes the UK returns to London, at the full TTL.
    backends[0].restart(Mode::Healthy).await;
    wait_for_answer(dns, "app.geo.example.", "81.2.69.0/24", &["127.0.0.2"], Duration::from_secs(5)).await;
    let reply = udp(dns, &with_ecs(query("app.geo.example.", RecordType::A), "81.2.69.0/24")).await;
    assert_eq!(reply.answers[0].ttl, 60);
    s.stop().await;
}

/// Polls `f` until it holds (at most 5 s).
async fn wait_until(f: impl FnMut() -> bool, what: &str) {
    common::wait::until(Duration::from_secs(5), what, f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_changes_within_100ms_of_the_deciding_probe() {
    let (_dir, backends, s) = setup("").await;
    let dns = v4(&s);
    wait_for_answer(dns, "app.geo.example.", "5.9.1.0/24", &["127.0.0.3"], Duration::from_secs(5)).await;
    wait_until(|| s.status().endpoints.iter().all(|e| e.state == "up"), "all endpoints up").await;
    // Frankfurt starts failing; the second failing answer (fall = 2) decides.
    backends[1].set_mode(Mode::Failing);
    wait_for_answer(dns, "app.geo.example.", "5.9.1.0/24", &["127.0.0.2"], Duration::from_secs(5)).await;
    let changed_seen = Instant::now();
    let failures = backends[1].failures();
    assert!(failures.len() >= 2, "{failures:?}");
    let deciding = failures[1];
    // The answer may have changed up to one poll (5 ms + a query) before we saw it; the bound
    // is on the time from the deciding probe answer to the moment the new answer was observed.
    // With a free CPU that is well under 100 ms (printed below). When every CPU is busy (a
    // loaded test machine), the build first waits up to the build threads' patience for idle
    // CPU before it also runs at normal priority (docs/health.md), so that is allowed on top.
    let lag = changed_seen.saturating_duration_since(deciding);
    println!("deciding probe answered -> new DNS answer observed: {lag:?}");
    let bound = Duration::from_millis(100) + geodns::app::BUILD_PATIENCE;
    assert!(lag < bound, "the flip took {lag:?} to reach DNS answers");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_server_never_flips() {
    let (_dir, backends, s) = setup("").await;
    let dns = v4(&s);
    wait_until(|| s.status().endpoints.iter().all(|e| e.state == "up"), "all endpoints up").await;
    backends[0].set_mode(Mode::Flapping);
    let start_requests = backends[0].requests();
    // Watch at least 20 probe rounds: pass, fail, pass, fail... never two failures in a row.
    let started = Instant::now();
    while backends[0].requests() < start_requests + 20 {
        assert!(started.elapsed() < Duration::from_secs(10), "probes stalled");
        assert_eq!(
            answer(dns, "app.geo.example.", "81.2.69.0/24").await,
            [ip("127.0.0.2")],
            "London keeps its clients"
        );
        let london = s.status().endpoints.iter().find(|e| e.address == "127.0.0.2").cloned().unwrap();
        assert_eq!(london.state, "up", "{london:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!backends[0].failures().is_empty(), "the server did fail some probes");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_all_down_policy_when_every_site_is_down() {
    let (_dir, backends, s) = setup("").await;
    let dns = v4(&s);
    wait_until(|| s.status().endpoints.iter().all(|e| e.state == "up"), "all endpoints up").await;
    for b in &backends {
        b.set_mode(Mode::Failing);
    }
    wait_until(|| s.status().endpoints.iter().all(|e| e.state == "down"), "all endpoints down").await;
    // A UK client: London is nearest, Frankfurt next. (The status shows the newest verdicts
    // as they come; the table with the last of them follows.)
    wait_for_answer(dns, "p-all.geo.example.", "81.2.69.0/24", &["127.0.0.2", "127.0.0.3"], Duration::from_secs(5))
        .await;
    assert_eq!(answer(dns, "p-first.geo.example.", "81.2.69.0/24").await, [ip("127.0.0.2")], "first: the nearest");
    let r = udp(dns, &with_ecs(query("p-nodata.geo.example.", RecordType::A), "81.2.69.0/24")).await;
    assert_eq!(
        (r.metadata.response_code, r.answers.len(), r.authorities.len()),
        (ResponseCode::NoError, 0, 1),
        "nodata"
    );
    let r = udp(dns, &with_ecs(query("p-servfail.geo.example.", RecordType::A), "81.2.69.0/24")).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail, "servfail");
    // Recovery of one site ends it for every policy.
    backends[1].set_mode(Mode::Healthy);
    wait_for_answer(dns, "p-servfail.geo.example.", "81.2.69.0/24", &["127.0.0.3"], Duration::from_secs(5)).await;
    assert_eq!(answer(dns, "p-all.geo.example.", "81.2.69.0/24").await, [ip("127.0.0.3")]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_state_file_drains_and_forces_and_survives_a_restart() {
    let (dir, backends, s) = setup(r#", admin_state: "{dir}/admin_state""#).await;
    let dns = v4(&s);
    wait_for_answer(dns, "app.geo.example.", "81.2.69.0/24", &["127.0.0.2"], Duration::from_secs(5)).await;
    // Drain London: the UK goes to Frankfurt within the file poll interval.
    let state = dir.path().join("admin_state");
    std::fs::write(&state, "sites:\n  london: down\n").unwrap();
    wait_for_answer(dns, "app.geo.example.", "81.2.69.0/24", &["127.0.0.3"], Duration::from_secs(5)).await;
    assert!(s.status().drained.iter().any(|d| d == "site london forced down"), "{:?}", s.status().drained);
    // Force Frankfurt's failing endpoint up: it keeps serving despite its probes.
    backends[1].set_mode(Mode::Failing);
    std::fs::write(&state, "sites:\n  london: down\nendpoints:\n  web/127.0.0.3: up\n").unwrap();
    wait_until(|| s.status().endpoints.iter().any(|e| e.address == "127.0.0.3" && e.state == "forced-up"), "forced up")
        .await;
    // Several failing probe rounds, more than `fall`: still forced up.
    let failed = backends[1].failures().len();
    wait_until(|| backends[1].failures().len() >= failed + 4, "four more failed probes").await;
    assert_eq!(answer(dns, "app.geo.example.", "81.2.69.0/24").await, [ip("127.0.0.3")]);
    // An invalid file is rejected with the reason and the previous overrides stay.
    std::fs::write(&state, "sites:\n  atlantis: down\n").unwrap();
    wait_until(|| s.status().drained.iter().any(|d| d.contains("unknown site \"atlantis\"")), "rejection reported")
        .await;
    assert_eq!(answer(dns, "app.geo.example.", "81.2.69.0/24").await, [ip("127.0.0.3")]);
    std::fs::write(&state, "sites:\n  london: down\n").unwrap();
    backends[1].set_mode(Mode::Healthy);
    s.stop().await;

    // A new process with the same file starts with London drained.
    let db = dir.path().join("city.mmdb");
    let text =
        config(&db, backends[0].addr.port(), &format!(r#", admin_state: "{}/admin_state""#, dir.path().display()));
    let s = start(&text, dir.path()).await;
    let first = answer(v4(&s), "app.geo.example.", "81.2.69.0/24").await;
    assert_eq!(first, [ip("127.0.0.3")], "drained from the first answer on");
    s.stop().await;
}
