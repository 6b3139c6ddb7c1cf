//! Operating geodns: the admin endpoints, metrics after known traffic, reloads under continuous
//! queries (valid and invalid), and a graceful stop.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::dns::{addresses, query, udp_raw_wait, with_ecs};
use common::server::v4;
use geodns::app;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

const FIXTURE: &[(&str, f64, f64, &str)] =
    &[("81.2.69.0/24", 51.5, -0.1, "GB"), ("103.6.148.0/22", 1.29, 103.85, "SG")];

fn http() -> reqwest::Client {
    geodns::sources::health::install_crypto_provider();
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap()
}

fn config_text(dir: &Path) -> String {
    let db = dir.join("city.mmdb");
    common::mmdb::write_city_db(&db, FIXTURE);
    common::server::test_config(&db).replace(
        "  dns_listen: [\"127.0.0.1:0\", \"[::1]:0\"]\n",
        "  dns_listen: [\"127.0.0.1:0\"]\n  admin_listen: \"127.0.0.1:0\"\n",
    )
}

async fn start_from_file(dir: &Path, text: &str) -> (std::path::PathBuf, app::Running) {
    let path = dir.join("geodns.yaml");
    std::fs::write(&path, text).unwrap();
    let loaded = app::load(&path).expect("config loads");
    let running = app::start_with(loaded, Some(path.clone())).await.expect("server starts");
    (path, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_answer_with_the_right_content_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let (_path, s) = start_from_file(dir.path(), &config_text(dir.path())).await;
    let admin = s.admin_addr.expect("admin_listen is set");
    let c = http();
    let get = |path: &str| c.get(format!("http://{admin}{path}")).send();

    let r = get("/livez").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok\n");
    let r = get("/readyz").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ready\n");

    let r = get("/status").await.unwrap();
    assert_eq!(r.status(), 200);
    let st: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(st["ready"], true);
    assert!(st["generation"].as_u64().unwrap() >= 1);
    assert_eq!(st["zones"][0], "geo.example.");
    assert_eq!(st["sites"].as_array().unwrap().len(), 4);
    assert_eq!(st["sites"][0]["name"], "london");
    assert_eq!(st["geoip"]["database_type"], "GeoIP2-City");
    let app_name = st["names"].as_array().unwrap().iter().find(|n| n["name"] == "app.geo.example.").unwrap();
    assert_eq!(app_name["sites"][3]["site"], "singapore");
    assert_eq!(app_name["sites"][3]["addresses"][0], "192.0.2.4");
    assert!(st["config"]["path"].as_str().unwrap().ends_with("geodns.yaml"));

    let r = get("/").await.unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("<svg id=\"map\"") && page.contains("fetch(\"/status\""), "the status page");
    assert_eq!(get("/nope").await.unwrap().status(), 404);

    // Stopping: /readyz turns 503 while draining, before the listeners close.
    let status = s.subscribe_status();
    let stopping = tokio::spawn(s.stop());
    let mut status = status;
    let deadline = Instant::now() + Duration::from_secs(5);
    while status.borrow().ready && Instant::now() < deadline {
        let _ = tokio::time::timeout(Duration::from_millis(100), status.changed()).await;
    }
    assert!(!status.borrow().ready);
    assert_eq!(status.borrow().not_ready, ["shutting down"]);
    stopping.await.unwrap();
}

fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_known_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let (_path, s) = start_from_file(dir.path(), &config_text(dir.path())).await;
    let admin = s.admin_addr.unwrap();
    let dns = v4(&s);
    let c = http();
    let scrape = || async { c.get(format!("http://{admin}/metrics")).send().await.unwrap().text().await.unwrap() };
    // The recorder is process-wide; other tests in this binary may add traffic, so compare deltas
    // of series only this test touches (the `pool` name) and lower bounds elsewhere.
    let before = scrape().await;
    for _ in 0..5 {
        let r = common::dns::udp(dns, &with_ecs(query("pool.geo.example.", RecordType::A), "103.6.148.0/24")).await;
        assert_eq!(r.answers.len(), 3);
    }
    for _ in 0..3 {
        common::dns::udp(dns, &query("missing.geo.example.", RecordType::A)).await;
    }
    let after = scrape().await;
    let delta = |name, labels: &[(&str, &str)]| metric(&after, name, labels) - metric(&before, name, labels);
    assert_eq!(delta("geodns_answers_total", &[("name", "pool.geo.example."), ("site", "singapore")]), 5.0, "{after}");
    assert!(delta("geodns_queries_total", &[("transport", "udp"), ("rcode", "nxdomain")]) >= 3.0, "{after}");
    assert!(delta("geodns_queries_total", &[("transport", "udp"), ("rcode", "noerror")]) >= 5.0);
    assert!(delta("geodns_queries_ecs_total", &[("ecs", "present")]) >= 5.0);
    // The UDP fast path times one query in every 16 on each of its sockets (one per CPU): 160
    // more queries hold at least 160 / 16 - (sockets - 1) multiples of 16, however they spread.
    let sockets = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let before = after;
    for _ in 0..160 {
        common::dns::udp(dns, &query("static.geo.example.", RecordType::A)).await;
    }
    let after = scrape().await;
    let delta = |name, labels: &[(&str, &str)]| metric(&after, name, labels) - metric(&before, name, labels);
    let timed = delta("geodns_query_duration_seconds_count", &[]);
    assert!(timed >= (10.0 - (sockets - 1.0)).max(1.0), "{timed} timed with {sockets} sockets: {after}");
    assert!(delta("geodns_queries_total", &[("transport", "udp"), ("rcode", "noerror")]) >= 160.0);
    assert!(after.contains("# TYPE geodns_query_duration_seconds histogram"), "histograms, not summaries");
    assert!(after.contains("geodns_build_info{version=\""), "{after}");
    assert!(metric(&after, "geodns_table_generation", &[]) >= 1.0);
    assert!(metric(&after, "geodns_table_rebuilds_total", &[("result", "ok")]) >= 1.0);
    s.stop().await;
}

/// Queries the server continuously from two tasks; every query must be answered, with one of
/// the allowed answers. Returns (answered, wrong, lost) when `stop` is set.
fn query_loop(
    dns: SocketAddr,
    allowed: Arc<std::sync::Mutex<Vec<IpAddr>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u64, u64, u64)> {
    tokio::spawn(async move {
        let answered = Arc::new(AtomicU64::new(0));
        let wrong = Arc::new(AtomicU64::new(0));
        let lost = Arc::new(AtomicU64::new(0));
        let mut workers = Vec::new();
        for _ in 0..2 {
            let (allowed, stop, answered, wrong, lost) =
                (allowed.clone(), stop.clone(), answered.clone(), wrong.clone(), lost.clone());
            workers.push(tokio::spawn(async move {
                let started = Instant::now();
                // Bounded: at most 20 s or 100,000 queries.
                for _ in 0..100_000 {
                    if stop.load(Ordering::SeqCst) || started.elapsed() > Duration::from_secs(20) {
                        break;
                    }
                    let q = with_ecs(query("app.geo.example.", RecordType::A), "81.2.69.0/24");
                    // Right answers: those allowed when the query left or when its answer came.
                    let mut right = allowed.lock().unwrap().clone();
                    match udp_raw_wait(dns, &q.to_vec().unwrap(), Duration::from_secs(2)).await {
                        None => {
                            lost.fetch_add(1, Ordering::SeqCst);
                        }
                        Some(bytes) => {
                            let got = addresses(&Message::from_vec(&bytes).unwrap());
                            right.extend(allowed.lock().unwrap().iter().copied());
                            let ok = got.len() == 1 && right.contains(&got[0]);
                            (if ok { &answered } else { &wrong }).fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }));
        }
        for w in workers {
            w.await.unwrap();
        }
        (answered.load(Ordering::SeqCst), wrong.load(Ordering::SeqCst), lost.load(Ordering::SeqCst))
    })
}

/// Waits until the last reload has `result` and its error (if any) contains `error`.
async fn wait_for_reload(
    status: &mut tokio::sync::watch::Receiver<Arc<geodns::admin::Status>>,
    result: &str,
    error: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let matches = |s: &geodns::admin::Status| {
        s.config
            .last_reload
            .as_ref()
            .is_some_and(|r| r.result == result && r.error.as_deref().unwrap_or_default().contains(error))
    };
    while !matches(&status.borrow_and_update()) {
        assert!(Instant::now() < deadline, "no reload {result} with {error:?}: {:?}", status.borrow().config);
        let _ = tokio::time::timeout(Duration::from_millis(200), status.changed()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_lose_nothing_and_an_invalid_config_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(dir.path());
    let (path, s) = start_from_file(dir.path(), &text).await;
    let dns = v4(&s);
    let admin = s.admin_addr.unwrap();
    let old: IpAddr = "192.0.2.1".parse().unwrap();
    let new: IpAddr = "192.0.2.101".parse().unwrap();
    let allowed = Arc::new(std::sync::Mutex::new(vec![old]));
    let stop = Arc::new(AtomicBool::new(false));
    let load = query_loop(dns, allowed.clone(), stop.clone());
    let mut status = s.subscribe_status();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A valid change: London's address moves. During the switch either answer is right.
    allowed.lock().unwrap().push(new);
    std::fs::write(&path, text.replace("london:    [192.0.2.1,", "london:    [192.0.2.101,")).unwrap();
    wait_for_reload(&mut status, "ok", "").await;
    let reply = common::dns::udp(dns, &with_ecs(query("app.geo.example.", RecordType::A), "81.2.69.0/24")).await;
    assert_eq!(addresses(&reply), [new]);
    // From now on only the new answer is right.
    allowed.lock().unwrap().retain(|a| *a == new);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // An invalid config: rejected with the reason, the old one keeps serving.
    std::fs::write(&path, text.replace("london:    [192.0.2.1,", "london:    [not-an-address,")).unwrap();
    // The rejection this test means: a poll that caught the file half-written would be
    // rejected for another reason, and the next poll reads it whole.
    wait_for_reload(&mut status, "failed", "\"not-an-address\" is not an IPv4 or IPv6 address").await;
    // An explicit reload (as SIGHUP does) of the same bad file is rejected again.
    s.reload().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = http().get(format!("http://{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metric(&metrics, "geodns_config_reloads_total", &[("result", "failed")]) >= 2.0, "{metrics}");
    assert!(metric(&metrics, "geodns_config_reloads_total", &[("result", "ok")]) >= 1.0);

    stop.store(true, Ordering::SeqCst);
    let (answered, wrong, lost) = load.await.unwrap();
    println!("queries during reloads: {answered} answered, {wrong} wrong, {lost} lost");
    assert!(answered > 100, "the load ran ({answered})");
    assert_eq!((wrong, lost), (0, 0));
    let reply = common::dns::udp(dns, &with_ecs(query("app.geo.example.", RecordType::A), "81.2.69.0/24")).await;
    assert_eq!(addresses(&reply), [new], "still the last good config");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_geoip_database_is_picked_up_and_a_broken_one_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (_path, s) = start_from_file(dir.path(), &config_text(dir.path())).await;
    let dns = v4(&s);
    let db = dir.path().join("city.mmdb");
    let ask = || async {
        addresses(&common::dns::udp(dns, &with_ecs(query("app.geo.example.", RecordType::A), "81.2.69.0/24")).await)
    };
    assert_eq!(ask().await, ["192.0.2.1".parse::<IpAddr>().unwrap()]);
    // The same network now placed in Singapore: answers follow after the file is replaced.
    common::mmdb::write_city_db(&db, &[("81.2.69.0/24", 1.29, 103.85, "SG")]);
    // The watcher looks every second; the bound is for a machine running other test binaries.
    let deadline = Instant::now() + Duration::from_secs(30);
    while ask().await != ["192.0.2.4".parse::<IpAddr>().unwrap()] {
        assert!(Instant::now() < deadline, "new database not picked up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A broken file is rejected; the loaded database keeps serving.
    common::mmdb::install(&db, b"this is not a MaxMind database at all, not even close");
    let mut status = s.subscribe_status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while status.borrow().config.last_reload.as_ref().map(|r| r.result) != Some("failed") {
        assert!(Instant::now() < deadline, "broken database not reported");
        let _ = tokio::time::timeout(Duration::from_millis(200), status.changed()).await;
    }
    assert!(status.borrow().config.last_reload.as_ref().unwrap().error.as_deref().unwrap().contains("city.mmdb"));
    assert_eq!(ask().await, ["192.0.2.4".parse::<IpAddr>().unwrap()]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_drains_and_closes_the_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let (_path, s) = start_from_file(dir.path(), &config_text(dir.path())).await;
    let dns = v4(&s);
    let allowed = Arc::new(std::sync::Mutex::new(vec!["192.0.2.1".parse().unwrap()]));
    let stop_flag = Arc::new(AtomicBool::new(false));
    let load = query_loop(dns, allowed, stop_flag.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    s.stop().await;
    let took = started.elapsed();
    stop_flag.store(true, Ordering::SeqCst);
    let (answered, wrong, _lost) = load.await.unwrap();
    assert!(answered > 0 && wrong == 0);
    assert!(took < Duration::from_secs(6), "stop is bounded by the grace period: {took:?}");
    // Nothing answers on the port any more.
    let q = query("app.geo.example.", RecordType::A).to_vec().unwrap();
    assert!(udp_raw_wait(dns, &q, Duration::from_millis(300)).await.is_none());
    assert!(tokio::net::TcpStream::connect(dns).await.is_err(), "TCP listener closed");
}
