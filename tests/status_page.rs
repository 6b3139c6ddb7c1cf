//! The status page at `/` in a real browser: headless Chromium (Debian's `chromium` package)
//! loads it from a running server, its script fetches `/status` and draws the sites; a site
//! whose endpoint went down must be shown down on the map and in the table, the others up. A
//! screenshot is saved to `target/status-page.png` for people to look at.
//!
//! Chromium is required: without it this test fails and says how to install it (`.ci/run`
//! installs it when missing).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::backend::{Mode, on_same_port};
use common::server::start;

const CHROMIUM: &str = "/usr/bin/chromium";

/// How long one Chromium run may take before it is killed.
const BROWSER_LIMIT: Duration = Duration::from_secs(60);

const FIXTURE: &[(&str, f64, f64, &str)] = &[
    ("81.2.69.0/24", 51.5, -0.1, "GB"),
    ("5.9.0.0/16", 52.52, 13.40, "DE"),
    ("8.8.8.0/24", 37.4, -122.1, "US"),
    ("103.6.148.0/22", 1.29, 103.85, "SG"),
];

/// Four sites with HTTP-checked endpoints on 127.0.0.2-5 (one backend each, same port), two
/// geo names, and the admin server on a free loopback port.
fn config(db: &Path, port: u16) -> String {
    format!(
        r#"
server: {{ dns_listen: ["127.0.0.1:0"], admin_listen: "127.0.0.1:0" }}
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
      app: {{ ttl: 60, health_check: web, sites: {{ london: [127.0.0.2], frankfurt: [127.0.0.3], seattle: [127.0.0.4], singapore: [127.0.0.5] }} }}
      api: {{ ttl: 30, health_check: web, sites: {{ london: [127.0.0.2], frankfurt: [127.0.0.3] }} }}
"#,
        db = db.display()
    )
}

/// Runs Chromium headless on `url` with `extra` arguments and a fresh profile; stdout goes to
/// `stdout`. Kills it (by its PID) if it runs over [`BROWSER_LIMIT`].
fn chromium(profile: &Path, url: &str, extra: &[String], stdout: &Path) -> (ExitStatus, String) {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the status page test needs headless Chromium. Install it \
         (Debian/Ubuntu: `apt-get install chromium`); .ci/run installs it when missing."
    );
    let stderr_path = stdout.with_extension("stderr");
    let mut cmd = Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-proxy-server",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(stdout).unwrap())
    .stderr(std::fs::File::create(&stderr_path).unwrap());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {CHROMIUM}: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > BROWSER_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium ran over {BROWSER_LIMIT:?} and was killed; its stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    (status, stderr)
}

async fn chromium_async(profile: PathBuf, url: String, extra: Vec<String>, stdout: PathBuf) -> (ExitStatus, String) {
    tokio::task::spawn_blocking(move || chromium(&profile, &url, &extra, &stdout))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// The `<tr data-site="NAME">...</tr>` row of the sites table in a dumped DOM.
fn site_row<'a>(dom: &'a str, site: &str) -> &'a str {
    let open = format!("<tr data-site=\"{site}\">");
    let start = dom.find(&open).unwrap_or_else(|| panic!("no sites-table row for {site} in the page:\n{dom}"));
    let end = dom[start..].find("</tr>").expect("the row closes") + start;
    &dom[start..end]
}

/// Polls `f` until it holds (at most 10 s).
async fn wait_until(what: &str, f: impl FnMut() -> bool) {
    common::wait::until(Duration::from_secs(10), what, f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_a_down_site_down_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("city.mmdb");
    common::mmdb::write_city_db(&db, FIXTURE);
    let backends = on_same_port(&["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"], Mode::Healthy).await;
    let s = start(&config(&db, backends[0].addr.port()), dir.path()).await;
    let admin = s.admin_addr.expect("admin_listen is set");

    wait_until("every endpoint up", || s.status().endpoints.iter().all(|e| e.state == "up")).await;
    // London's backend fails its probes: after `fall` (2) of them its endpoint is down.
    backends[0].set_mode(Mode::Failing);
    wait_until("london down", || {
        let st = s.status();
        st.endpoints.iter().any(|e| e.address == "127.0.0.2" && e.state == "down")
            && st.sites.iter().any(|site| site.name == "london" && !site.up)
    })
    .await;
    assert!(s.status().sites.iter().filter(|site| site.name != "london").all(|site| site.up), "{:?}", s.status().sites);

    let url = format!("http://{admin}/");

    // The DOM after the page's script has fetched /status and drawn it.
    let dom_file = dir.path().join("dom.html");
    let (status, stderr) =
        chromium_async(dir.path().join("profile-dom"), url.clone(), vec!["--dump-dom".into()], dom_file.clone()).await;
    let dom = std::fs::read_to_string(&dom_file).unwrap();
    assert!(status.success(), "chromium --dump-dom failed ({status}):\n{stderr}");
    assert!(dom.contains("<svg id=\"map\""), "no map in the page:\n{dom}");
    assert!(dom.contains("<div id=\"error\"></div>"), "the page could not fetch /status:\n{dom}");
    // On the map: one group per site, its health in data-health.
    assert!(dom.contains(r#"data-site="london" data-health="down""#), "london is not drawn down on the map:\n{dom}");
    for up in ["frankfurt", "seattle", "singapore"] {
        assert!(
            dom.contains(&format!(r#"data-site="{up}" data-health="up""#)),
            "{up} is not drawn up on the map:\n{dom}"
        );
    }
    // In the sites table.
    let london = site_row(&dom, "london");
    assert!(london.contains(r#"<td class="down">down</td>"#), "london's row: {london}");
    let frankfurt = site_row(&dom, "frankfurt");
    assert!(frankfurt.contains(r#"<td class="up">up</td>"#), "frankfurt's row: {frankfurt}");
    // The names and where each is answered from, and the endpoint with its reason.
    assert!(dom.contains("app.geo.example.") && dom.contains("api.geo.example."), "names table:\n{dom}");
    assert!(dom.contains("london down (127.0.0.2)"), "london's badge in the names table:\n{dom}");
    assert!(dom.contains("frankfurt up (127.0.0.3)"), "frankfurt's badge in the names table:\n{dom}");
    assert!(dom.contains("127.0.0.2</td><td class=\"down\">down</td>"), "london's endpoint row:\n{dom}");

    // A screenshot for people.
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/status-page.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&shot);
    let (status, stderr) = chromium_async(
        dir.path().join("profile-shot"),
        url,
        vec![format!("--screenshot={}", shot.display()), "--window-size=1000,900".into(), "--hide-scrollbars".into()],
        dir.path().join("shot.out"),
    )
    .await;
    assert!(status.success(), "chromium --screenshot failed ({status}):\n{stderr}");
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}\n{stderr}", shot.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", shot.display());
    assert!(png.len() > 10_000, "{} is only {} bytes: a blank page?", shot.display(), png.len());
    println!("screenshot: {} ({} bytes)", shot.display(), png.len());

    s.stop().await;
}
