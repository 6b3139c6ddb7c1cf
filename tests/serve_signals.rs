//! The real `geodns serve` process and its signals: SIGHUP reloads the config (a valid one is
//! served, an invalid one is rejected with the reason while the old one keeps serving), SIGTERM
//! drains and exits 0; an invalid config exits 78 listing every problem, and a port already in
//! use exits 1 saying which.

mod common;

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::dns::{addresses, query};
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

/// `{dns}` and `{admin}` are replaced by ports. Without a GeoIP database every client has no
/// location and gets the configured site order: london first.
const CONFIG: &str = r#"
server:
  dns_listen: ["127.0.0.1:{dns}"]
  admin_listen: "127.0.0.1:{admin}"
  shutdown_grace: 2s
sites:
  london:    { location: [51.51, -0.13] }
  frankfurt: { location: [50.11, 8.68] }
zones:
  geo.example.:
    soa: { mname: ns1, rname: hostmaster, serial: 1 }
    ns: [ns1]
    records: { ns1: { A: [127.0.0.1] } }
    geo:
      app: { ttl: 60, sites: { london: [192.0.2.1], frankfurt: [192.0.2.2] } }
"#;

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `geodns serve` child process, killed (by its PID) if the test ends without stopping it.
struct Server {
    child: Child,
    stderr: PathBuf,
    dns: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn signal(&self, name: &str) {
        common::server::signal(self.child.id(), name);
    }

    /// Waits for the process to exit, up to `limit`.
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    async fn status(&self) -> serde_json::Value {
        geodns::sources::health::install_crypto_provider();
        let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();
        let r = client.get(format!("http://{}/status", self.admin)).send().await.expect("GET /status");
        assert!(r.status().is_success(), "/status: {}", r.status());
        serde_json::from_str(&r.text().await.expect("/status body")).expect("/status is JSON")
    }
}

/// Runs `geodns serve --config FILE` with stderr to a file beside it.
fn spawn(config: &Path) -> (Child, PathBuf) {
    let stderr = config.with_extension("stderr");
    let child = Command::new(env!("CARGO_BIN_EXE_geodns"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("geodns starts");
    (child, stderr)
}

/// Asks `app.geo.example. A` over UDP; `None` when no answer came within 300 ms.
async fn ask(dns: SocketAddr) -> Option<Vec<IpAddr>> {
    let q = query("app.geo.example.", RecordType::A);
    let bytes = common::dns::udp_raw_wait(dns, &q.to_vec().unwrap(), Duration::from_millis(300)).await?;
    let reply = Message::from_vec(&bytes).expect("a DNS response");
    assert_eq!(reply.metadata.id, q.metadata.id);
    Some(addresses(&reply))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Writes `config` (with ports filled in) to `path` and starts the server on free ports,
/// retrying with other ports if one was taken in between; returns once it answers DNS.
async fn start(path: &Path, config: &str) -> Server {
    for _ in 0..5 {
        let (dns, admin) = (common::server::free_dns_port(), free_tcp_port());
        std::fs::write(path, config.replace("{dns}", &dns.to_string()).replace("{admin}", &admin.to_string())).unwrap();
        let (child, stderr) = spawn(path);
        let mut server = Server {
            child,
            stderr,
            dns: SocketAddr::from(([127, 0, 0, 1], dns)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin)),
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(15) {
            if let Some(status) = server.child.try_wait().unwrap() {
                let log = server.log();
                assert!(log.contains("in use"), "geodns serve exited ({status}) before answering:\n{log}");
                break; // a port was taken in between: try others
            }
            if ask(server.dns).await.is_some() {
                return server;
            }
        }
        assert!(
            server.child.try_wait().unwrap().is_some(),
            "geodns serve did not answer DNS within 15 s:\n{}",
            server.log()
        );
    }
    panic!("could not start geodns serve on free ports in 5 attempts");
}

/// Rewrites the file in place (same inode, same size) and puts its modification time back, so
/// the config file watcher sees no change: only SIGHUP can make the server read it.
fn rewrite_unseen(path: &Path, from: &str, to: &str) {
    assert_eq!(from.len(), to.len(), "same size, so the watcher's fingerprint is unchanged");
    let before = std::fs::metadata(path).unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from:?} not in the config");
    let file = std::fs::OpenOptions::new().write(true).truncate(true).open(path).unwrap();
    use std::io::Write;
    (&file).write_all(text.replacen(from, to, 1).as_bytes()).unwrap();
    file.set_modified(before.modified().unwrap()).unwrap();
    drop(file);
    let after = std::fs::metadata(path).unwrap();
    assert_eq!((after.len(), after.modified().unwrap()), (before.len(), before.modified().unwrap()));
}

/// Polls the answer until it is `want` (bounded).
async fn wait_for_answer(server: &Server, want: &[IpAddr], what: &str) {
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < Duration::from_secs(10) {
        last = ask(server.dns).await;
        if last.as_deref() == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: still {last:?}, want {want:?}\n{}", server.log());
}

async fn wait_for_reload(server: &Server, result: &str) -> serde_json::Value {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let status = server.status().await;
        let last = &status["config"]["last_reload"];
        if last["result"] == result && last["at"].as_f64().is_some() {
            return last.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/status never reported a reload {result}: {}\n{}", server.status().await, server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_an_invalid_config_is_rejected_and_sigterm_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("geodns.yaml");
    let mut server = start(&path, CONFIG).await;
    assert_eq!(ask(server.dns).await, Some(vec![ip("192.0.2.1")]), "london's address, first in the config");
    let status = server.status().await;
    assert!(status["config"]["last_reload"].is_null(), "no reload yet: {status}");
    assert_eq!(status["config"]["path"], path.display().to_string());

    // A new address for london, unseen by the file watcher: still the old answer a watcher
    // poll later...
    rewrite_unseen(&path, "london: [192.0.2.1]", "london: [192.0.2.9]");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(ask(server.dns).await, Some(vec![ip("192.0.2.1")]), "no reload without SIGHUP");
    // ...and the new one after SIGHUP.
    server.signal("HUP");
    wait_for_answer(&server, &[ip("192.0.2.9")], "after SIGHUP with a valid config").await;
    let last = wait_for_reload(&server, "ok").await;
    assert!(last["error"].is_null(), "{last}");
    let ok_at = last["at"].as_f64().unwrap();

    // An invalid config (an unknown site): rejected with the reason; the old one keeps serving.
    rewrite_unseen(&path, "london: [192.0.2.9]", "lond0n: [192.0.2.9]");
    server.signal("HUP");
    let last = wait_for_reload(&server, "failed").await;
    let error = last["error"].as_str().unwrap_or_default();
    assert!(error.contains("unknown site \"lond0n\""), "the reason: {last}");
    assert!(last["at"].as_f64().unwrap() >= ok_at);
    for _ in 0..10 {
        assert_eq!(ask(server.dns).await, Some(vec![ip("192.0.2.9")]), "the previous config keeps serving");
    }
    let log = server.log();
    assert!(log.contains("SIGHUP"), "the signal is logged:\n{log}");
    assert!(
        log.contains("reload rejected") && log.contains("lond0n"),
        "the rejection is logged with its reason:\n{log}"
    );
    assert!(!log.contains("watched file changed"), "only SIGHUP reloaded:\n{log}");
    let metrics = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{}/metrics", server.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("geodns_config_reloads_total{result=\"ok\"} 1"), "{metrics}");
    assert!(metrics.contains("geodns_config_reloads_total{result=\"failed\"} 1"), "{metrics}");

    // SIGTERM: drains and exits 0 within the grace period (2 s) and a margin.
    server.signal("TERM");
    let status = tokio::task::block_in_place(|| server.wait_exit(Duration::from_secs(5)));
    let status = status.unwrap_or_else(|| panic!("still running 5 s after SIGTERM:\n{}", server.log()));
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM:\n{}", server.log());
    let log = server.log();
    assert!(log.contains("SIGTERM") && log.contains("stopping"), "{log}");
    // The listeners are gone.
    assert_eq!(ask(server.dns).await, None, "nothing answers after exit");
}

/// Runs `geodns serve` to its exit (bounded) and returns the status and stderr.
fn serve_until_exit(config: &Path) -> (ExitStatus, String) {
    let (child, stderr) = spawn(config);
    let mut server =
        Server { child, stderr, dns: "127.0.0.1:1".parse().unwrap(), admin: "127.0.0.1:1".parse().unwrap() };
    let status = server
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("geodns serve kept running:\n{}", server.log()));
    (status, server.log())
}

#[test]
fn an_invalid_config_exits_78_listing_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    let text = CONFIG
        .replace("{dns}", "0")
        .replace("{admin}", "0")
        .replace("shutdown_grace: 2s", "shutdown_grace: soon")
        .replace("frankfurt: [192.0.2.2]", "paris: [192.0.2.2]")
        .replace("[51.51, -0.13]", "[151.51, -0.13]");
    std::fs::write(&path, text).unwrap();
    let (status, log) = serve_until_exit(&path);
    assert_eq!(status.code(), Some(78), "{log}");
    for problem in ["shutdown_grace", "unknown site \"paris\"", "151.51"] {
        assert!(log.contains(problem), "missing the problem {problem:?} in:\n{log}");
    }
    assert!(log.contains("3 problems"), "every problem, counted:\n{log}");
}

#[test]
fn a_port_in_use_exits_1_saying_which() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("geodns.yaml");

    // The DNS port: held over UDP and TCP by this test.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = udp.local_addr().unwrap().port();
    let _tcp = TcpListener::bind(("127.0.0.1", port)).ok();
    std::fs::write(&path, CONFIG.replace("{dns}", &port.to_string()).replace("{admin}", "0")).unwrap();
    let (status, log) = serve_until_exit(&path);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("cannot listen on") && log.contains(&format!("127.0.0.1:{port}")), "{log}");
    assert!(log.contains("in use"), "{log}");

    // The admin port.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = held.local_addr().unwrap().port();
    std::fs::write(&path, CONFIG.replace("{dns}", "0").replace("{admin}", &admin.to_string())).unwrap();
    let (status, log) = serve_until_exit(&path);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains(&format!("cannot listen on the admin address 127.0.0.1:{admin}")), "{log}");
    assert!(log.contains("in use"), "{log}");
}
