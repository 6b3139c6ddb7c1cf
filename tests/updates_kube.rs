//! Dynamic updates stored in a Kubernetes ConfigMap: `geodns serve` processes sharing one
//! fake API server (tests/common/fake_kube.rs, spoken to by the real kube client), updates
//! sent with dnspython and TSIG, answers read over TCP.
//!
//! - an update sent to one process is answered by the other within 2 s, and a delete likewise;
//! - updates sent to both processes at once all end up in the ConfigMap and in both answers
//!   (the processes race: writes refused with 409 Conflict are read again and retried);
//! - a write that conflicts is applied again to the fresh records, prerequisites included;
//! - with the API server stopped, an update gets SERVFAIL and changes nothing, the records
//!   already served stay served; once it is back, updates work again;
//! - a restarted process serves the records from the ConfigMap from its first answer, and
//!   `geodns check` names the ConfigMap as their source;
//! - an update that would take the ConfigMap past 1 MiB gets SERVFAIL and changes nothing.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::dns::{query, tcp};
use common::fake_kube::{FakeKube, write_kubeconfig};
use common::wait::{until, until_async};
use hickory_proto::rr::{RData, RecordType};
use serde_json::Value;

const SECRET: &str = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=";
const PYTHON: &str = "/usr/bin/python3";
const CHALLENGE: &str = "_acme-challenge.app.geo.example.";
const NAMESPACE: &str = "geodns";
const CONFIGMAP: &str = "geo-example-updates";
/// How soon the other replica must answer with an update (the issue's bound).
const CONVERGE: Duration = Duration::from_secs(2);
/// Bounds for things that wait on backoffs (a restarted API server) or process start-up.
const SLOW: Duration = Duration::from_secs(30);

/// `{dns}` and `{admin}` are the listen addresses.
const CONFIG: &str = r#"
server:
  dns_listen: ["{dns}"]
  admin_listen: "{admin}"
  rrl: { enabled: false }
sites:
  london:  { location: [51.51, -0.13] }
  seattle: { location: [47.61, -122.33] }
kubernetes:
  clusters:
    - { name: home, kubeconfig: kubeconfig, context: home, site: london }
tsig_keys:
  acme: { algorithm: hmac-sha256, secret: "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=" }
zones:
  geo.example.:
    soa: { mname: ns1.geo.example., rname: hostmaster.geo.example., serial: 100 }
    ns: [ns1.geo.example.]
    records:
      ns1: { A: 127.0.0.1 }
    geo:
      app:
        sites: { london: [192.0.2.1], seattle: [192.0.2.2] }
    updates:
      kubernetes: { cluster: home, namespace: geodns, configmap: geo-example-updates }
      allow:
        - { key: acme, names: ["_acme-challenge.*"], types: [TXT] }
"#;

/// A `geodns serve` process, killed (by its PID) when dropped.
struct Serve {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    log: PathBuf,
}

impl Serve {
    /// Starts `geodns serve` with its own config file in `dir` (sharing `dir`'s kubeconfig);
    /// returns once it answers.
    async fn start(dir: &Path, name: &str) -> Serve {
        for _ in 0..5 {
            let addr: SocketAddr = format!("127.0.0.1:{}", common::server::free_dns_port()).parse().unwrap();
            let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
            let config = dir.join(format!("{name}.yaml"));
            std::fs::write(&config, CONFIG.replace("{dns}", &addr.to_string()).replace("{admin}", &admin.to_string()))
                .unwrap();
            let log = dir.join(format!("{name}.log"));
            let child = Command::new(env!("CARGO_BIN_EXE_geodns"))
                .args(["serve", "--config"])
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            let mut serve = Serve { child, addr, admin, log };
            let deadline = tokio::time::Instant::now() + SLOW;
            while tokio::time::Instant::now() < deadline {
                if serve.child.try_wait().unwrap().is_some() {
                    break; // the port was taken in between: try another
                }
                if soa_serial(addr).await.is_some() {
                    return serve;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = serve.child.kill();
        }
        panic!("geodns serve did not start");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `/status`'s entry for the zone's update store.
    async fn store_status(&self) -> Value {
        geodns::sources::health::install_crypto_provider();
        let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();
        let r = client.get(format!("http://{}/status", self.admin)).send().await.expect("GET /status");
        let status: Value = serde_json::from_str(&r.text().await.expect("/status body")).expect("/status is JSON");
        status["updates"][0].clone()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fake API server and a kubeconfig for it in `dir`.
async fn fake_api(dir: &Path) -> FakeKube {
    let fake = FakeKube::start().await;
    write_kubeconfig(dir, "kubeconfig", &[("home", &fake)]);
    fake
}

/// One TCP query; `None` when the server does not answer (not yet started).
async fn ask(server: SocketAddr, name: &str, rtype: RecordType) -> Option<hickory_proto::op::Message> {
    let connect = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(server)).await;
    if !matches!(connect, Ok(Ok(_))) {
        return None;
    }
    Some(tcp(server, &query(name, rtype)).await)
}

/// The TXT strings at `name`, sorted.
async fn txt(server: SocketAddr, name: &str) -> Vec<String> {
    let m = ask(server, name, RecordType::TXT).await.expect("the server answers");
    let mut out: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(t.txt_data.iter().map(|d| String::from_utf8_lossy(d).into_owned()).collect()),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

async fn soa_serial(server: SocketAddr) -> Option<u32> {
    let m = ask(server, "geo.example.", RecordType::SOA).await?;
    m.answers.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    })
}

/// Runs a dnspython script with `SERVER`, `PORT`, `update()` and `send(u)` (the response code
/// as text) defined; its stdout.
async fn python(server: SocketAddr, script: &str) -> String {
    let prelude = format!(
        r#"
import dns.update, dns.query, dns.tsigkeyring, dns.tsig, dns.rcode
from concurrent.futures import ThreadPoolExecutor
SERVER, PORT = "{ip}", {port}
ACME = dns.tsigkeyring.from_text({{"acme": "{SECRET}"}})
def update():
    return dns.update.UpdateMessage("geo.example.", keyring=ACME, keyname="acme", keyalgorithm=dns.tsig.HMAC_SHA256)
def send(u):
    return dns.rcode.to_text(dns.query.tcp(u, SERVER, port=PORT, timeout=20).rcode())
"#,
        ip = server.ip(),
        port = server.port()
    );
    let script = format!("{prelude}\n{script}");
    tokio::task::spawn_blocking(move || {
        let out = Command::new("timeout").args(["120", PYTHON, "-c", &script]).output().unwrap();
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(out.status.success(), "python failed:\n{stdout}\n{stderr}");
        stdout
    })
    .await
    .unwrap()
}

/// Adds (or with `delete`, deletes) one challenge TXT value; the response code.
async fn challenge(server: SocketAddr, value: &str, delete: bool) -> String {
    let op = if delete { "delete" } else { "add" };
    let ttl = if delete { "" } else { "60, " };
    python(server, &format!("u = update(); u.{op}('_acme-challenge.app', {ttl}'TXT', '{value}'); print(send(u))"))
        .await
        .trim()
        .to_owned()
}

/// The ConfigMap's records document, as stored in the fake.
fn stored(fake: &FakeKube) -> Option<Value> {
    let cm = fake.get("ConfigMap", NAMESPACE, CONFIGMAP)?;
    serde_json::from_str(cm["data"]["records.json"].as_str()?).ok()
}

/// The TXT strings the ConfigMap holds at `name`.
fn stored_txt(fake: &FakeKube, name: &str) -> Vec<String> {
    let Some(doc) = stored(fake) else { return Vec::new() };
    let mut out: Vec<String> = doc["names"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n[0] == name)
        .flat_map(|n| n[2].as_array().unwrap().iter().filter_map(|d| d["Txt"].as_str().map(str::to_owned)))
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_sent_to_one_replica_is_answered_by_the_other_and_so_is_a_delete() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_api(dir.path()).await;
    let a = Serve::start(dir.path(), "a").await;
    let b = Serve::start(dir.path(), "b").await;
    assert_eq!(fake.get("ConfigMap", NAMESPACE, CONFIGMAP), None, "no ConfigMap before the first update");

    assert_eq!(challenge(a.addr, "from-a", false).await, "NOERROR");
    let acknowledged = std::time::Instant::now();
    assert_eq!(txt(a.addr, CHALLENGE).await, ["from-a"], "the replica that took it serves it at once");
    until_async(CONVERGE, "replica b to answer the update sent to a", || txt(b.addr, CHALLENGE), |t| *t == ["from-a"])
        .await;
    // A figure for the report, not an assertion: the deadline above is the bound.
    eprintln!("replica b answered {:?} after a acknowledged", acknowledged.elapsed());
    assert_eq!(stored_txt(&fake, CHALLENGE), ["from-a"], "created in the ConfigMap");
    assert_eq!(stored(&fake).unwrap()["serial"], 101, "the serial is stored with the records");
    assert_eq!(soa_serial(b.addr).await, Some(101));

    assert_eq!(challenge(b.addr, "from-a", true).await, "NOERROR");
    assert!(txt(b.addr, CHALLENGE).await.is_empty());
    until_async(CONVERGE, "replica a to answer the delete sent to b", || txt(a.addr, CHALLENGE), Vec::is_empty).await;
    assert!(stored_txt(&fake, CHALLENGE).is_empty());
    until_async(CONVERGE, "replica a to serve serial 102", || soa_serial(a.addr), |s| *s == Some(102)).await;
    assert_eq!(fake.conflicts(), 0, "each replica wrote over the version it had seen");
}

/// A ConfigMap holds at most 1 MiB: the update that would pass it is SERVFAIL, nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_would_pass_the_configmap_limit_is_servfail_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_api(dir.path()).await;
    let a = Serve::start(dir.path(), "a").await;
    // Each update adds 200 TXT records of 250 characters (about 54 KB stored) at a new name,
    // sent over TCP; the 20th or so passes 1 MiB. Stop at the first failure.
    let out = python(
        a.addr,
        r#"
for n in range(40):
    u = update()
    for i in range(200):
        u.add("_acme-challenge.big%d" % n, 60, "TXT", "%03d" % i + "x" * 247)
    r = send(u)
    print(n, r)
    if r != "NOERROR":
        break
"#,
    )
    .await;
    let last = out.lines().last().unwrap().to_owned();
    let (n, rcode) = last.split_once(' ').unwrap();
    assert_eq!(rcode, "SERVFAIL", "{out}");
    let n: u32 = n.parse().unwrap();
    assert!(n > 10, "the limit is 1 MiB, not less: {out}");
    let before = serde_json::to_string(&stored(&fake).unwrap()).unwrap();
    assert!(before.len() < 1 << 20);
    assert!(stored_txt(&fake, &format!("_acme-challenge.big{n}.geo.example.")).is_empty(), "not written");
    assert!(txt(a.addr, &format!("_acme-challenge.big{n}.geo.example.")).await.is_empty(), "not served");
    assert_eq!(txt(a.addr, "_acme-challenge.big0.geo.example.").await.len(), 200, "the earlier ones stay");
    assert_eq!(soa_serial(a.addr).await, Some(100 + n), "one serial per stored update");
    assert!(a.log().contains("over the ConfigMap limit of 1 MiB"), "{}", a.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_sent_to_both_replicas_at_once_all_end_up_stored_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_api(dir.path()).await;
    let a = Serve::start(dir.path(), "a").await;
    let b = Serve::start(dir.path(), "b").await;
    // Ten adds to each replica, eight at a time: the two replicas' writes race.
    let burst = |first: u32| {
        format!(
            r#"
def one(n):
    u = update(); u.add("_acme-challenge.many", 60, "TXT", "v%d" % n); return send(u)
with ThreadPoolExecutor(8) as pool:
    print(" ".join(pool.map(one, range({first}, {first} + 10))))
"#
        )
    };
    let (script_a, script_b) = (burst(0), burst(10));
    let (out_a, out_b) = tokio::join!(python(a.addr, &script_a), python(b.addr, &script_b));
    for out in [&out_a, &out_b] {
        assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["NOERROR"; 10], "every add acknowledged: {out}");
    }
    let want: Vec<String> = {
        let mut v: Vec<String> = (0..20).map(|n| format!("v{n}")).collect();
        v.sort();
        v
    };
    let name = "_acme-challenge.many.geo.example.";
    assert_eq!(stored_txt(&fake, name), want, "every acknowledged add is in the ConfigMap");
    assert_eq!(stored(&fake).unwrap()["serial"], 120, "one serial per applied update, across replicas");
    for (which, server) in [("a", a.addr), ("b", b.addr)] {
        until_async(CONVERGE, &format!("replica {which} to serve all 20"), || txt(server, name), |t| *t == want).await;
        assert_eq!(soa_serial(server).await, Some(120));
    }
    eprintln!("conflicts retried: {}, writes: {}", fake.conflicts(), fake.write_requests());
    assert_eq!(fake.write_requests(), 20, "one accepted write per update");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_write_is_applied_again_to_the_fresh_records_prerequisites_included() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_api(dir.path()).await;
    let a = Serve::start(dir.path(), "a").await;
    assert_eq!(challenge(a.addr, "first", false).await, "NOERROR");
    // Another writer adds a record just before a's next write lands: that write is refused
    // (409), and a applies its update again to the records the other writer left.
    let other = |cm: &mut Value| {
        let mut doc: Value = serde_json::from_str(cm["data"]["records.json"].as_str().unwrap()).unwrap();
        doc["serial"] = serde_json::json!(doc["serial"].as_u64().unwrap() + 1);
        doc["names"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!(["_acme-challenge.other.geo.example.", 60, [{"Txt": "elsewhere"}]]));
        cm["data"]["records.json"] = Value::String(doc.to_string());
    };
    fake.before_next_write(other);
    assert_eq!(challenge(a.addr, "second", false).await, "NOERROR");
    assert_eq!(fake.conflicts(), 1);
    assert_eq!(txt(a.addr, CHALLENGE).await, ["first", "second"]);
    assert_eq!(txt(a.addr, "_acme-challenge.other.geo.example.").await, ["elsewhere"], "the other write is kept");
    assert_eq!(stored_txt(&fake, "_acme-challenge.other.geo.example."), ["elsewhere"]);
    assert_eq!(stored_txt(&fake, CHALLENGE), ["first", "second"]);
    assert_eq!(soa_serial(a.addr).await, Some(103), "after the other writer's 102");

    // An update whose prerequisite the other writer's change breaks: checked again, refused.
    fake.before_next_write(|cm: &mut Value| {
        let mut doc: Value = serde_json::from_str(cm["data"]["records.json"].as_str().unwrap()).unwrap();
        doc["serial"] = serde_json::json!(doc["serial"].as_u64().unwrap() + 1);
        doc["names"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!(["_acme-challenge.taken.geo.example.", 60, [{"Txt": "mine"}]]));
        cm["data"]["records.json"] = Value::String(doc.to_string());
    });
    let out = python(
        a.addr,
        "u = update(); u.absent('_acme-challenge.taken'); u.add('_acme-challenge.taken', 60, 'TXT', 'yours'); print(send(u))",
    )
    .await;
    assert_eq!(out.trim(), "YXDOMAIN", "the prerequisite is checked against the fresh records");
    assert_eq!(fake.conflicts(), 2);
    assert_eq!(stored_txt(&fake, "_acme-challenge.taken.geo.example."), ["mine"]);
    // A refusal is answered without waiting for the table that serves the re-read records.
    until_async(
        CONVERGE,
        "the re-read records to be served",
        || txt(a.addr, "_acme-challenge.taken.geo.example."),
        |t| *t == ["mine"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_api_server_away_an_update_fails_and_nothing_changes_then_it_works_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = fake_api(dir.path()).await;
    let a = Serve::start(dir.path(), "a").await;
    let b = Serve::start(dir.path(), "b").await;
    assert_eq!(challenge(a.addr, "kept", false).await, "NOERROR");
    until_async(CONVERGE, "replica b to answer the update", || txt(b.addr, CHALLENGE), |t| *t == ["kept"]).await;
    let stored_before = fake.get("ConfigMap", NAMESPACE, CONFIGMAP).unwrap();
    let status = a.store_status().await;
    assert_eq!(status["store"], format!("configmap {NAMESPACE}/{CONFIGMAP} in cluster home"), "{status}");
    assert_eq!(status["stale"], false, "{status}");

    fake.stop().await;
    // Both replicas' watches notice; they keep serving what they had.
    for replica in [&a, &b] {
        until(SLOW, "the replica to log that the ConfigMap is unreachable", || {
            replica.log().contains("ConfigMap unreachable; serving the last known dynamic records")
        })
        .await;
    }
    for replica in [&a, &b] {
        until_async(SLOW, "/status to say the records may be stale", || replica.store_status(), |s| s["stale"] == true)
            .await;
    }
    for server in [a.addr, b.addr] {
        assert_eq!(challenge(server, "lost", false).await, "SERVFAIL");
        assert_eq!(txt(server, CHALLENGE).await, ["kept"], "the records already served stay served");
        assert_eq!(soa_serial(server).await, Some(101), "the serial did not move");
    }
    assert_eq!(fake.get("ConfigMap", NAMESPACE, CONFIGMAP).unwrap(), stored_before, "the ConfigMap is unchanged");

    fake.restart().await;
    assert_eq!(challenge(b.addr, "after", false).await, "NOERROR");
    assert_eq!(stored_txt(&fake, CHALLENGE), ["after", "kept"]);
    assert_eq!(txt(b.addr, CHALLENGE).await, ["after", "kept"]);
    // a's watch comes back after its backoff.
    until_async(
        SLOW,
        "replica a to answer the update made after the outage",
        || txt(a.addr, CHALLENGE),
        |t| *t == ["after", "kept"],
    )
    .await;
    assert_eq!(soa_serial(a.addr).await, Some(102));
    until_async(SLOW, "/status to say the records are current", || a.store_status(), |s| s["stale"] == false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_serves_the_records_from_the_configmap_from_its_first_answer() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_api(dir.path()).await;
    let a = Serve::start(dir.path(), "a").await;
    assert_eq!(challenge(a.addr, "stored", false).await, "NOERROR");
    drop(a);

    // A new process reads the ConfigMap before it serves: its first answers have the record.
    let a = Serve::start(dir.path(), "a").await;
    assert_eq!(txt(a.addr, CHALLENGE).await, ["stored"]);
    assert_eq!(soa_serial(a.addr).await, Some(101));
    assert!(a.log().contains("dynamic records read"), "{}", a.log());
    // And it updates from there: the serial carries on.
    assert_eq!(challenge(a.addr, "stored", true).await, "NOERROR");
    assert_eq!(soa_serial(a.addr).await, Some(102));
    assert!(stored_txt(&fake, CHALLENGE).is_empty());

    // `geodns check` says where the zone's dynamic records come from (it does not contact the API).
    let out = Command::new(env!("CARGO_BIN_EXE_geodns"))
        .args(["check", "--config"])
        .arg(dir.path().join("a.yaml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("updates  kept in the ConfigMap {NAMESPACE}/{CONFIGMAP} in cluster home")),
        "{text}"
    );
}
