//! Dynamic updates (RFC 2136 with TSIG) from real clients: Debian's `nsupdate` (bind9-dnsutils),
//! `knsupdate` (knot-dnsutils) and dnspython's `dns.update` (python3-dnspython) against the
//! server over UDP and TCP, answers checked with `dig`. The error cases (bad MAC, skewed time,
//! unknown key, a geo name, the apex NS, a type outside the policy) each prove that nothing
//! changed: the same SOA serial, the same answers, the same journal. Durability: a restart,
//! and `kill -9` of a `geodns serve` process during a burst of updates. Reloads: new keys,
//! removed keys, narrowed rules and rotated secret files apply live, keeping the records; what
//! needs a restart (a zone stopping updates, another journal) keeps the running setup.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::server::{start, v4};

const SECRET256: &str = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=";
const SECRET512: &str = "YW5vdGhlci1zZWNyZXQtZm9yLXNoYTUxMi1rZXlzLTY0LWJ5dGVzLWxvbmctZW5vdWdoISE=";
const WRONG: &str = "d3JvbmdrZXl3cm9uZ2tleXdyb25na2V5d3Jvbmc=";
const PYTHON: &str = "/usr/bin/python3";
const CHALLENGE: &str = "_acme-challenge.app.geo.example.";

/// `{dns}` is the listen address.
const CONFIG: &str = r#"
server:
  dns_listen: ["{dns}"]
  rrl: { enabled: false }
sites:
  london:  { location: [51.51, -0.13] }
  seattle: { location: [47.61, -122.33] }
tsig_keys:
  acme: { algorithm: hmac-sha256, secret: "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=" }
  dns512: { algorithm: hmac-sha512, secret_file: dns512.key }
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
      journal: geo.example.journal
      allow:
        - { key: acme, names: ["_acme-challenge.*"], types: [TXT] }
        - { key: dns512, names: ["_acme-challenge.*", "*.dyn"], types: [TXT, A] }
"#;

fn write_config(dir: &Path, dns: &str) -> String {
    std::fs::write(dir.join("dns512.key"), format!("{SECRET512}\n")).unwrap();
    let text = CONFIG.replace("{dns}", dns);
    std::fs::write(dir.join("geodns.yaml"), &text).unwrap();
    text
}

/// Runs a command with a bounded time; its output (stdout, stderr) and success.
fn run(cmd: &mut Command) -> (String, String, bool) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

/// `dig +short` for one name and type.
fn dig(server: SocketAddr, name: &str, rtype: &str) -> Vec<String> {
    let (out, err, ok) = run(Command::new("timeout").args([
        "10",
        "dig",
        "+short",
        "+tcp",
        "+tries=2",
        "+time=2",
        &format!("@{}", server.ip()),
        "-p",
        &server.port().to_string(),
        name,
        rtype,
    ]));
    assert!(ok, "dig failed: {err}");
    let mut lines: Vec<String> = out.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

fn serial(server: SocketAddr) -> u32 {
    let soa = dig(server, "geo.example.", "SOA");
    soa[0].split_whitespace().nth(2).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("SOA {soa:?}"))
}

fn nsupdate(server: SocketAddr, key: &str, tcp: bool, script: &str) -> (String, bool) {
    let input = format!("server {} {}\nzone geo.example.\n{script}\nsend\n", server.ip(), server.port());
    let mut cmd = Command::new("timeout");
    cmd.args(["20", "nsupdate", "-t", "5", "-y", key]);
    if tcp {
        cmd.arg("-v");
    }
    pipe(cmd, &input)
}

fn knsupdate(server: SocketAddr, key: &str, script: &str) -> (String, bool) {
    let input = format!("server {} {}\nzone geo.example.\n{script}\nsend\nanswer\n", server.ip(), server.port());
    let mut cmd = Command::new("timeout");
    cmd.args(["20", "knsupdate", "-t", "5", "-y", key]);
    pipe(cmd, &input)
}

fn pipe(mut cmd: Command, input: &str) -> (String, bool) {
    use std::io::Write;
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (text, out.status.success())
}

/// Runs a dnspython script with `SERVER`, `PORT` and the helpers below defined; its stdout.
fn python(server: SocketAddr, script: &str) -> String {
    let prelude = format!(
        r#"
import dns.update, dns.query, dns.tsigkeyring, dns.tsig, dns.rcode, dns.message, time
SERVER, PORT = "{ip}", {port}
ACME = dns.tsigkeyring.from_text({{"acme": "{SECRET256}"}})
WRONG = dns.tsigkeyring.from_text({{"acme": "{WRONG}"}})
NOBODY = dns.tsigkeyring.from_text({{"nobody": "{SECRET256}"}})
def update(keyring=ACME, name="acme"):
    return dns.update.UpdateMessage("geo.example.", keyring=keyring, keyname=name, keyalgorithm=dns.tsig.HMAC_SHA256)
def send(u, tcp=False):
    try:
        r = (dns.query.tcp if tcp else dns.query.udp)(u, SERVER, port=PORT, timeout=5)
        return dns.rcode.to_text(r.rcode())
    except dns.tsig.PeerBadKey: return "BADKEY"
    except dns.tsig.PeerBadSignature: return "BADSIG"
    except dns.tsig.PeerBadTime: return "BADTIME"
"#,
        ip = server.ip(),
        port = server.port()
    );
    let (out, err, ok) = run(Command::new("timeout").args(["60", PYTHON, "-c", &format!("{prelude}\n{script}")]));
    assert!(ok, "python failed:\n{out}\n{err}");
    out
}

fn journal_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("geo.example.journal")).map_or(0, |m| m.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsupdate_adds_a_txt_dig_sees_it_and_it_is_deleted_over_udp_and_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let text = write_config(dir.path(), "127.0.0.1:0");
    let running = start(&text, dir.path()).await;
    let server = v4(&running);
    let key = format!("hmac-sha256:acme:{SECRET256}");
    let before = serial(server);
    for tcp in [false, true] {
        let (out, ok) = tokio::task::spawn_blocking({
            let key = key.clone();
            move || nsupdate(server, &key, tcp, &format!("update add {CHALLENGE} 60 TXT \"token-{tcp}\""))
        })
        .await
        .unwrap();
        assert!(ok, "nsupdate add (tcp {tcp}): {out}");
        assert_eq!(dig(server, CHALLENGE, "TXT"), [format!("\"token-{tcp}\"")]);
        let (out, ok) = tokio::task::spawn_blocking({
            let key = key.clone();
            move || nsupdate(server, &key, tcp, &format!("update delete {CHALLENGE} TXT"))
        })
        .await
        .unwrap();
        assert!(ok, "nsupdate delete (tcp {tcp}): {out}");
        assert!(dig(server, CHALLENGE, "TXT").is_empty());
    }
    assert_eq!(serial(server), before + 4, "one serial per applied update");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knsupdate_with_an_hmac_sha512_key_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = write_config(dir.path(), "127.0.0.1:0");
    let running = start(&text, dir.path()).await;
    let server = v4(&running);
    let key = format!("hmac-sha512:dns512:{SECRET512}");
    let (out, ok) = tokio::task::spawn_blocking({
        let key = key.clone();
        move || {
            knsupdate(
                server,
                &key,
                &format!("update add {CHALLENGE} 60 TXT \"knot\"\nupdate add host.dyn.geo.example. 60 A 192.0.2.77"),
            )
        }
    })
    .await
    .unwrap();
    assert!(ok && out.contains("NOERROR"), "knsupdate add: {out}");
    assert_eq!(dig(server, CHALLENGE, "TXT"), ["\"knot\""]);
    assert_eq!(dig(server, "host.dyn.geo.example.", "A"), ["192.0.2.77"]);
    let (out, ok) = tokio::task::spawn_blocking(move || {
        knsupdate(server, &key, &format!("del {CHALLENGE} TXT \"knot\"\ndel host.dyn.geo.example."))
    })
    .await
    .unwrap();
    assert!(ok && out.contains("NOERROR"), "knsupdate delete: {out}");
    assert!(dig(server, CHALLENGE, "TXT").is_empty());
    assert!(dig(server, "host.dyn.geo.example.", "A").is_empty());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dnspython_cert_manager_sequence_and_every_error_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let text = write_config(dir.path(), "127.0.0.1:0");
    let running = start(&text, dir.path()).await;
    let server = v4(&running);

    // cert-manager's sequence: add the challenge TXT, see it, delete it.
    let out = tokio::task::spawn_blocking(move || {
        python(
            server,
            r#"
u = update(); u.add("_acme-challenge.app", 60, "TXT", "cm-token"); print(send(u))
"#,
        )
    })
    .await
    .unwrap();
    assert_eq!(out.trim(), "NOERROR");
    assert_eq!(dig(server, CHALLENGE, "TXT"), ["\"cm-token\""]);
    let geo_before = dig(server, "app.geo.example.", "A");
    let ns_before = dig(server, "geo.example.", "NS");
    let serial_before = serial(server);
    let journal_before = journal_len(dir.path());

    // Every error case, over UDP and TCP: the response code, and nothing changed.
    let cases = [
        ("bad MAC", "u = update(WRONG); u.add('_acme-challenge.x', 60, 'TXT', 'no')", "BADSIG"),
        ("unknown key", "u = update(NOBODY, 'nobody'); u.add('_acme-challenge.x', 60, 'TXT', 'no')", "BADKEY"),
        (
            "skewed time",
            "real = time.time\ntime.time = lambda: real() - 3600\nu = update(); u.add('_acme-challenge.x', 60, 'TXT', 'no')\nr = send(u)\ntime.time = real\nprint(r); raise SystemExit",
            "BADTIME",
        ),
        ("a geo name", "u = update(); u.add('app', 60, 'TXT', 'no')", "REFUSED"),
        ("the apex NS", "u = update(); u.add('@', 60, 'NS', 'evil.example.')", "REFUSED"),
        ("the apex SOA", "u = update(); u.delete('@', 'SOA')", "REFUSED"),
        ("a type outside the policy", "u = update(); u.add('_acme-challenge.app', 60, 'A', '192.0.2.9')", "REFUSED"),
        (
            "one change outside the policy",
            "u = update(); u.delete('_acme-challenge.app', 'TXT'); u.add('_acme-challenge.app', 60, 'A', '192.0.2.9')",
            "REFUSED",
        ),
        (
            "a failed prerequisite",
            "u = update(); u.absent('_acme-challenge.app'); u.delete('_acme-challenge.app', 'TXT')",
            "YXDOMAIN",
        ),
    ];
    for (what, script, want) in cases {
        for tcp in ["False", "True"] {
            let script =
                format!("{}\nprint(send(u, tcp={tcp}))", script.replace("send(u)", &format!("send(u, tcp={tcp})")));
            let out = tokio::task::spawn_blocking(move || python(server, &script)).await.unwrap();
            assert_eq!(out.trim(), want, "{what} (tcp {tcp})");
            assert_eq!(serial(server), serial_before, "{what}: the serial changed");
            assert_eq!(dig(server, CHALLENGE, "TXT"), ["\"cm-token\""], "{what}: the challenge changed");
            assert!(dig(server, "_acme-challenge.x.geo.example.", "TXT").is_empty(), "{what}");
            assert_eq!(dig(server, "app.geo.example.", "A"), geo_before, "{what}: the geo name changed");
            assert_eq!(dig(server, "geo.example.", "NS"), ns_before, "{what}: the apex NS changed");
            assert_eq!(journal_len(dir.path()), journal_before, "{what}: the journal grew");
        }
    }

    let out = tokio::task::spawn_blocking(move || {
        python(server, "u = update(); u.delete('_acme-challenge.app', 'TXT', 'cm-token'); print(send(u, tcp=True))")
    })
    .await
    .unwrap();
    assert_eq!(out.trim(), "NOERROR");
    assert!(dig(server, CHALLENGE, "TXT").is_empty());
    assert_eq!(serial(server), serial_before + 1);
    let metrics = geodns::metrics::install().render();
    for result in ["NOERROR", "REFUSED", "YXDOMAIN", "BADKEY", "BADSIG", "BADTIME"] {
        assert!(metrics.contains(&format!("geodns_updates_total{{result=\"{result}\"}}")), "{result}:\n{metrics}");
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_applied_updates_and_their_serial() {
    let dir = tempfile::tempdir().unwrap();
    let text = write_config(dir.path(), "127.0.0.1:0");
    let running = start(&text, dir.path()).await;
    let server = v4(&running);
    let out = tokio::task::spawn_blocking(move || {
        python(server, "u = update(); u.add('_acme-challenge.app', 60, 'TXT', 'kept'); print(send(u))")
    })
    .await
    .unwrap();
    assert_eq!(out.trim(), "NOERROR");
    let serial_after = serial(server);
    running.stop().await;

    // `geodns check` lists the dynamic records and their journal, and explains them as served.
    let config = dir.path().join("geodns.yaml").to_string_lossy().into_owned();
    let out = geodns_cli(&["check", "--config", &config]);
    let journal = dir.path().join("geo.example.journal").to_string_lossy().into_owned();
    assert!(out.contains(&format!("1 dynamic records, serial {serial_after}, from journal {journal}")), "{out}");
    assert!(out.contains(&format!("dynamic  {CHALLENGE} 60 TXT")) && out.contains("kept"), "{out}");
    let out = geodns_cli(&["check", "--config", &config, CHALLENGE, "TXT", "--client", "192.0.2.1"]);
    assert!(out.contains("kept"), "{out}");

    let running = start(&text, dir.path()).await;
    let server = v4(&running);
    assert_eq!(dig(server, CHALLENGE, "TXT"), ["\"kept\""]);
    assert_eq!(serial(server), serial_after);
    running.stop().await;
}

/// A `geodns serve` process, killed (by its PID) when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `geodns serve` on a free port; returns once it answers.
fn serve(dir: &Path) -> (Serve, SocketAddr) {
    for _ in 0..5 {
        let server: SocketAddr = format!("127.0.0.1:{}", common::server::free_dns_port()).parse().unwrap();
        write_config(dir, &server.to_string());
        let log = std::fs::File::create(dir.join("serve.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_geodns"))
            .args(["serve", "--config"])
            .arg(dir.join("geodns.yaml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut child = Serve(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if child.0.try_wait().unwrap().is_some() {
                break; // the port was taken in between: try another
            }
            let (out, _, ok) = run(Command::new("dig").args([
                "+short",
                "+tries=1",
                "+time=1",
                &format!("@{}", server.ip()),
                "-p",
                &server.port().to_string(),
                "geo.example.",
                "SOA",
            ]));
            if ok && !out.trim().is_empty() {
                return (child, server);
            }
        }
        let _ = child.0.kill();
    }
    panic!("geodns serve did not start: {}", std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default());
}

/// Each update adds two records (`N-a` and `N-b`) in one message; the burst prints `N` once
/// acknowledged. After `kill -9` and a restart, every acknowledged N has both records, and no
/// N has only one (no half-applied update).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_burst_keeps_every_acknowledged_update_and_no_half_update() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server_proc, server) = serve(dir.path());
    let prelude_server = server;
    let script = format!(
        r#"
import dns.update, dns.query, dns.tsigkeyring, dns.tsig, dns.rcode, sys
kr = dns.tsigkeyring.from_text({{"acme": "{SECRET256}"}})
for n in range(400):
    u = dns.update.UpdateMessage("geo.example.", keyring=kr, keyname="acme", keyalgorithm=dns.tsig.HMAC_SHA256)
    u.add("_acme-challenge.burst", 60, "TXT", "%d-a" % n)
    u.add("_acme-challenge.burst", 60, "TXT", "%d-b" % n)
    try:
        r = dns.query.tcp(u, "{ip}", port={port}, timeout=5)
    except Exception:
        break
    if r.rcode() != 0:
        print("rcode", r.rcode(), flush=True); break
    print(n, flush=True)
"#,
        ip = prelude_server.ip(),
        port = prelude_server.port()
    );
    let mut burst = Command::new(PYTHON).args(["-c", &script]).stdout(Stdio::piped()).spawn().unwrap();
    let stdout = burst.stdout.take().unwrap();
    // Kill the server once 30 updates are acknowledged, while the burst goes on.
    let acked = tokio::task::spawn_blocking(move || {
        let mut acked: Vec<u32> = Vec::new();
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Some(Ok(line)) = lines.next() {
            let n: u32 = line.trim().parse().unwrap_or_else(|_| panic!("burst said {line:?}"));
            acked.push(n);
            if acked.len() == 30 {
                // kill -9, by PID, mid-burst.
                let status = Command::new("kill").args(["-9", &server_proc.0.id().to_string()]).status().unwrap();
                assert!(status.success());
                let _ = server_proc.0.wait();
            }
            assert!(Instant::now() < deadline, "the burst took too long");
        }
        acked
    })
    .await
    .unwrap();
    let _ = burst.wait();
    assert!(acked.len() >= 30, "only {} updates acknowledged", acked.len());

    let (_server_proc, server) = serve(dir.path());
    let records = dig(server, "_acme-challenge.burst.geo.example.", "TXT");
    let has = |s: String| records.contains(&format!("\"{s}\""));
    for n in &acked {
        assert!(has(format!("{n}-a")) && has(format!("{n}-b")), "acknowledged update {n} lost after kill -9");
    }
    let max = acked.iter().max().copied().unwrap_or(0);
    for n in 0..=max + 1 {
        assert_eq!(has(format!("{n}-a")), has(format!("{n}-b")), "update {n} half-applied after kill -9");
    }
    // At most the one update in flight when the server died is there unacknowledged.
    assert!(records.len() <= 2 * (acked.len() + 1), "{records:?}");
}

#[test]
fn a_missing_journal_directory_or_secret_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        CONFIG.replace("{dns}", "127.0.0.1:0").replace("journal: geo.example.journal", "journal: nowhere/geo.journal");
    let config = geodns::config::parse(&text, dir.path()).expect("valid");
    let error = geodns::app::open(config.clone()).err().expect("no secret file").to_string();
    assert!(error.contains("tsig_keys.dns512.secret_file") && error.contains("dns512.key"), "{error}");
    std::fs::write(dir.path().join("dns512.key"), "not base64!").unwrap();
    let error = geodns::app::open(config.clone()).err().expect("bad secret file").to_string();
    assert!(error.contains("tsig_keys.dns512.secret_file") && error.contains("not base64"), "{error}");
    std::fs::write(dir.path().join("dns512.key"), SECRET512).unwrap();
    let error = geodns::app::open(config).err().expect("no journal directory").to_string();
    assert!(error.contains("zones.\"geo.example.\".updates.journal") && error.contains("nowhere"), "{error}");
}

/// Runs the geodns binary; its stdout.
fn geodns_cli(args: &[&str]) -> String {
    let (out, err, ok) = run(Command::new(env!("CARGO_BIN_EXE_geodns")).args(args));
    assert!(ok, "geodns {args:?}: {err}");
    out
}

/// delv's whole output for `name`/`rtype` at `server`, trusting `anchor`.
fn delv(server: SocketAddr, anchor: &Path, name: &str, rtype: &str) -> String {
    let (out, err, _) = run(Command::new("timeout").args([
        "20",
        "delv",
        &format!("@{}", server.ip()),
        "-p",
        &server.port().to_string(),
        "-a",
        &anchor.to_string_lossy(),
        "+root=geo.example",
        name,
        rtype,
    ]));
    format!("{out}{err}")
}

/// In a signed zone, an added TXT is served signed (delv validates it) and, once deleted, its
/// absence is proven by the NSEC chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updated_records_in_a_signed_zone_validate_and_their_deletion_is_proven() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("zone.key");
    geodns_cli(&["dnssec", "keygen", &key.to_string_lossy(), "--algorithm", "ecdsap256sha256"]);
    write_config(dir.path(), "127.0.0.1:0");
    let text = CONFIG
        .replace("{dns}", "127.0.0.1:0")
        .replace("    updates:\n", "    dnssec: { keys: [zone.key] }\n    updates:\n");
    let config_path = dir.path().join("signed.yaml");
    std::fs::write(&config_path, &text).unwrap();
    let ds = geodns_cli(&["dnssec", "ds", "--config", &config_path.to_string_lossy(), "geo.example."]);
    let f: Vec<&str> = ds.split_whitespace().collect();
    assert_eq!(f.len(), 8, "one DS record: {ds}");
    let anchor = dir.path().join("anchor");
    std::fs::write(
        &anchor,
        format!("trust-anchors {{\n  {} static-ds {} {} {} \"{}\";\n}};\n", f[0], f[4], f[5], f[6], f[7]),
    )
    .unwrap();

    let running = start(&text, dir.path()).await;
    let server = v4(&running);
    let (out, ok) = tokio::task::spawn_blocking(move || {
        nsupdate(
            server,
            &format!("hmac-sha256:acme:{SECRET256}"),
            false,
            &format!("update add {CHALLENGE} 60 TXT \"signed\""),
        )
    })
    .await
    .unwrap();
    assert!(ok, "nsupdate: {out}");
    let a = anchor.clone();
    let out = tokio::task::spawn_blocking(move || delv(server, &a, CHALLENGE, "TXT")).await.unwrap();
    assert!(out.contains("; fully validated") && out.contains("\"signed\""), "{out}");
    let out = tokio::task::spawn_blocking(move || delv(server, &anchor.clone(), "geo.example.", "SOA")).await.unwrap();
    assert!(out.contains("; fully validated") && out.contains(" 101 "), "the new serial, signed: {out}");

    let (out, ok) = tokio::task::spawn_blocking(move || {
        nsupdate(server, &format!("hmac-sha256:acme:{SECRET256}"), true, &format!("update delete {CHALLENGE}"))
    })
    .await
    .unwrap();
    assert!(ok, "nsupdate delete: {out}");
    let a = dir.path().join("anchor");
    let out = tokio::task::spawn_blocking(move || delv(server, &a, CHALLENGE, "TXT")).await.unwrap();
    assert!(out.contains("; negative response, fully validated") && out.contains(";-$NXDOMAIN"), "{out}");
    running.stop().await;
}

// Reloads: new keys and rules apply live (docs/updates.md, "Reloading keys and rules").

const NEW256: &str = "bmV3LXNlY3JldC1mb3ItdGhlLXJvdGF0ZWQta2V5LTEy";
const NEW512: &str = "cm90YXRlZC1zZWNyZXQtZm9yLXRoZS1zaGE1MTIta2V5LWZyb20tYS1maWxlLTY0LWJ5dGVz";

/// Starts geodns in-process from `geodns.yaml` in `dir`, watching it (and its secret files)
/// like `geodns serve`.
async fn start_watched(dir: &Path) -> geodns::app::Running {
    write_config(dir, "127.0.0.1:0");
    let path = dir.join("geodns.yaml");
    let loaded = geodns::app::load(&path).expect("config loads");
    geodns::app::start_with(loaded, Some(path)).await.expect("server starts")
}

/// Replaces a watched file the safe way: a new file renamed over the old one.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Sends one update with dnspython: `key` is (name, algorithm, base64 secret), `change` a
/// line acting on `u`; the response code (or TSIG error) it got.
async fn send_update(server: SocketAddr, key: (&str, &str, &str), change: &str) -> String {
    let (name, alg, secret) = key;
    let script = format!(
        "kr = dns.tsigkeyring.from_text({{'{name}': '{secret}'}})\n\
         u = dns.update.UpdateMessage('geo.example.', keyring=kr, keyname='{name}', keyalgorithm=dns.tsig.{alg})\n\
         {change}\nprint(send(u))"
    );
    tokio::task::spawn_blocking(move || python(server, &script)).await.unwrap().trim().to_owned()
}

/// Sends the update again until it gets `want` (a reload takes effect after a file change is
/// seen): bounded.
async fn until_update(server: SocketAddr, key: (&str, &str, &str), change: &str, want: &str, what: &str) {
    common::wait::until_async(
        Duration::from_secs(30),
        what,
        || send_update(server, key, change),
        |rcode| rcode == want,
    )
    .await;
}

const ACME: (&str, &str, &str) = ("acme", "HMAC_SHA256", SECRET256);
const ROTATED: (&str, &str, &str) = ("acme-2", "HMAC_SHA256", NEW256);
const DNS512: (&str, &str, &str) = ("dns512", "HMAC_SHA512", SECRET512);

/// A new key with its rule replaces the old key, and a rule is narrowed, by editing the
/// config file and reloading: the new key works, the old one is BADKEY, the narrowed rule
/// refuses, each without changing anything; records added before the reload stay served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_and_removes_keys_and_narrows_rules_keeping_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let running = start_watched(dir.path()).await;
    let server = v4(&running);
    let add_challenge = "u.add('_acme-challenge.app', 60, 'TXT', 'before')";
    assert_eq!(send_update(server, ACME, add_challenge).await, "NOERROR");
    assert_eq!(send_update(server, DNS512, "u.add('host.dyn', 60, 'A', '192.0.2.70')").await, "NOERROR");
    // Not known yet.
    assert_eq!(send_update(server, ROTATED, "u.add('_acme-challenge.new', 60, 'TXT', 'no')").await, "BADKEY");

    // The new config: key acme-2 instead of acme, and dns512 narrowed to TXT at
    // _acme-challenge.* (no more *.dyn, no more A).
    let text = CONFIG
        .replace("{dns}", "127.0.0.1:0")
        .replace(
            &format!("acme: {{ algorithm: hmac-sha256, secret: \"{SECRET256}\" }}"),
            &format!("acme-2: {{ algorithm: hmac-sha256, secret: \"{NEW256}\" }}"),
        )
        .replace("{ key: acme, names", "{ key: acme-2, names")
        .replace(
            "names: [\"_acme-challenge.*\", \"*.dyn\"], types: [TXT, A]",
            "names: [\"_acme-challenge.*\"], types: [TXT]",
        );
    assert!(text.contains("acme-2:") && !text.contains("*.dyn"), "{text}");
    replace(&dir.path().join("geodns.yaml"), &text);
    running.reload().await;
    until_update(
        server,
        ROTATED,
        "u.add('_acme-challenge.new', 60, 'TXT', 'after')",
        "NOERROR",
        "the new key's update to be accepted after the reload",
    )
    .await;
    assert_eq!(dig(server, "_acme-challenge.new.geo.example.", "TXT"), ["\"after\""]);

    // Nothing below may change anything.
    let serial_before = serial(server);
    let journal_before = journal_len(dir.path());
    assert_eq!(send_update(server, ACME, "u.add('_acme-challenge.app', 60, 'TXT', 'old')").await, "BADKEY");
    assert_eq!(send_update(server, DNS512, "u.add('other.dyn', 60, 'A', '192.0.2.71')").await, "REFUSED");
    assert_eq!(send_update(server, DNS512, "u.add('_acme-challenge.app', 60, 'A', '192.0.2.72')").await, "REFUSED");
    assert_eq!(send_update(server, DNS512, "u.delete('host.dyn', 'A')").await, "REFUSED");
    assert_eq!(serial(server), serial_before, "a refused update changed the serial");
    assert_eq!(journal_len(dir.path()), journal_before, "a refused update grew the journal");
    assert!(dig(server, "other.dyn.geo.example.", "A").is_empty());
    assert!(dig(server, "_acme-challenge.app.geo.example.", "A").is_empty());

    // The records from before the reload are still served, the old key's and the narrowed
    // rule's alike, and the narrowed key still works inside its rule.
    assert_eq!(dig(server, CHALLENGE, "TXT"), ["\"before\""]);
    assert_eq!(dig(server, "host.dyn.geo.example.", "A"), ["192.0.2.70"]);
    assert_eq!(send_update(server, DNS512, "u.add('_acme-challenge.x', 60, 'TXT', 'narrow')").await, "NOERROR");
    assert_eq!(dig(server, "_acme-challenge.x.geo.example.", "TXT"), ["\"narrow\""]);
    let reload = running.status().config.last_reload.clone().expect("a reload happened");
    assert_eq!(reload.result, "ok", "{reload:?}");
    running.stop().await;
}

/// Writes the secret file as the kubelet updates a Secret volume: the files in a new
/// directory, the `..data` link swapped to it by a rename, the key's file a link into `..data`
/// (and here `dns512.key` a link to that).
fn kubelet_write(dir: &Path, text: &str, version: u32) {
    use std::os::unix::fs::symlink;
    let volume = dir.join("tsig");
    let data = volume.join(format!("..v{version}"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("dns512.key"), text).unwrap();
    let tmp = volume.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(format!("..v{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, volume.join("..data")).unwrap();
    if std::fs::symlink_metadata(volume.join("dns512.key")).is_err() {
        symlink("..data/dns512.key", volume.join("dns512.key")).unwrap();
        symlink("tsig/dns512.key", dir.join("dns512.key")).unwrap();
    }
}

/// A Secret's file rotated in place is picked up by the file watch alone (the config file is
/// unchanged): an unreadable secret is rejected as a whole, naming the file, and the running
/// key stays; a valid new secret then replaces the old one, which gets BADSIG.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_a_secret_file_replaces_the_key_and_a_bad_one_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    rotation(dir.path(), |text, _| replace(&dir.path().join("dns512.key"), text)).await;
}

/// The same, with the file in a Secret volume as the kubelet lays it out and updates it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_a_kubernetes_secret_volume_replaces_the_key() {
    let dir = tempfile::tempdir().unwrap();
    kubelet_write(dir.path(), &format!("{SECRET512}\n"), 1);
    rotation(dir.path(), |text, version| kubelet_write(dir.path(), text, version)).await;
}

/// Rotates dns512's secret with `write(text, version)`: first to an invalid one, then to a
/// new valid one.
async fn rotation(dir: &Path, write: impl Fn(&str, u32)) {
    let running = start_watched(dir).await;
    let server = v4(&running);
    let secret_file = dir.join("dns512.key");
    assert_eq!(send_update(server, DNS512, "u.add('_acme-challenge.a', 60, 'TXT', 'old')").await, "NOERROR");

    // Not base64: the reload is rejected, naming the file, and the running key still works.
    write("not base64!\n", 2);
    let rejected = common::wait::until_async(
        Duration::from_secs(30),
        "the reload with a bad secret file to be rejected",
        || std::future::ready(running.status().config.last_reload.clone()),
        |r| r.as_ref().is_some_and(|r| r.result == "failed"),
    )
    .await
    .expect("a reload");
    let error = rejected.error.unwrap_or_default();
    assert!(
        error.contains("tsig_keys.dns512.secret_file") && error.contains(&secret_file.display().to_string()),
        "{error}"
    );
    assert_eq!(send_update(server, DNS512, "u.add('_acme-challenge.b', 60, 'TXT', 'kept')").await, "NOERROR");

    // A valid new secret (as a Secret's rotation writes it): the new one works, the old is BADSIG.
    let rotated = ("dns512", "HMAC_SHA512", NEW512);
    write(&format!("{NEW512}\n"), 3);
    until_update(
        server,
        rotated,
        "u.add('_acme-challenge.c', 60, 'TXT', 'new')",
        "NOERROR",
        "the rotated secret's update to be accepted",
    )
    .await;
    let serial_before = serial(server);
    assert_eq!(send_update(server, DNS512, "u.add('_acme-challenge.d', 60, 'TXT', 'stale')").await, "BADSIG");
    assert_eq!(serial(server), serial_before, "the old secret changed the serial");
    assert!(dig(server, "_acme-challenge.d.geo.example.", "TXT").is_empty());
    for (name, want) in [("a", "old"), ("b", "kept"), ("c", "new")] {
        assert_eq!(dig(server, &format!("_acme-challenge.{name}.geo.example."), "TXT"), [format!("\"{want}\"")]);
    }
    running.stop().await;
}

/// On `geodns serve`, SIGHUP with a config whose zone takes no more updates (or names another
/// journal) is applied except for that: the zone keeps taking updates into its journal, with a
/// warning naming the zone and asking for a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_cannot_stop_a_zone_taking_updates_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (serve_proc, server) = serve(dir.path());
    assert_eq!(send_update(server, ACME, "u.add('_acme-challenge.app', 60, 'TXT', 'one')").await, "NOERROR");
    let log = dir.path().join("serve.log");
    let log_has = |line: &str| {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines().any(|l| l.contains(line) && l.contains("geo.example."))
    };

    // No updates section any more.
    let text = CONFIG.replace("{dns}", &server.to_string());
    let without = text.split("    updates:\n").next().unwrap().to_owned();
    replace(&dir.path().join("geodns.yaml"), &without);
    common::server::signal(serve_proc.0.id(), "HUP");
    common::wait::until(Duration::from_secs(30), "the warning about stopping updates", || {
        log_has("stops updates for this zone: that needs a restart")
    })
    .await;
    assert_eq!(send_update(server, ACME, "u.add('_acme-challenge.app', 60, 'TXT', 'two')").await, "NOERROR");
    assert_eq!(dig(server, CHALLENGE, "TXT"), ["\"one\"", "\"two\""]);

    // Another journal: the running one is kept.
    let journal_before = journal_len(dir.path());
    replace(&dir.path().join("geodns.yaml"), &text.replace("journal: geo.example.journal", "journal: other.journal"));
    common::server::signal(serve_proc.0.id(), "HUP");
    common::wait::until(Duration::from_secs(30), "the warning about changing the store", || {
        log_has("changes this zone's update store: that needs a restart")
    })
    .await;
    assert_eq!(send_update(server, ACME, "u.add('_acme-challenge.app', 60, 'TXT', 'three')").await, "NOERROR");
    assert!(journal_len(dir.path()) > journal_before, "the running journal took the update");
    assert!(!dir.path().join("other.journal").exists(), "the new journal was not opened");
    assert_eq!(dig(server, CHALLENGE, "TXT"), ["\"one\"", "\"three\"", "\"two\""]);
}
