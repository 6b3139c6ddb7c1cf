//! `geodns check --server ADDR --config FILE --dnssec`, the real binary against a real signed
//! geodns server on loopback: a healthy server passes; a DS for another key is reported as
//! matching no key and fails; two DS, one right, warn and pass; a server signing with a key
//! other than the trusted one fails; signatures altered on the way (a proxy flips a byte of
//! every RRSIG over an A RRset) fail, and so do negative answers whose NSEC records a proxy
//! drops; a warning window longer than the signatures' validity warns about expiring
//! signatures.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::server::{start, v4};
use hickory_proto::op::Message;
use hickory_proto::rr::{RData, RecordType};
use tokio::net::UdpSocket;

/// A signed zone with geo names for two sites (client networks), static names, a CNAME, an
/// empty non-terminal (`ent`), signed with `keys` (combined signing keys).
fn config(keys: &str, dir: &Path) -> String {
    config_with(&format!("keys: [{keys}]"), dir)
}

/// The same zone with `dnssec` holding `dnssec` (`keys: [...]`, or `ksk: [...], zsk: [...]`).
fn config_with(dnssec: &str, dir: &Path) -> String {
    format!(
        r#"
server:
  dns_listen: ["127.0.0.1:0"]
  rrl: {{ enabled: false }}
  admin_state: "{dir}/admin_state"
sites:
  london:    {{ location: [51.51, -0.13] }}
  frankfurt: {{ location: [50.11, 8.68] }}
client_networks:
  - {{ cidr: 10.1.0.0/16, site: london }}
  - {{ cidr: 10.2.0.0/16, site: frankfurt }}
zones:
  geo.example.:
    soa: {{ mname: ns1.geo.example., rname: hostmaster.geo.example., serial: 1, minimum: 120 }}
    ns: [ns1.geo.example.]
    ttl: 300
    dnssec: {{ {dnssec} }}
    records:
      "@":      {{ TXT: ["geo.example GeoDNS zone"] }}
      ns1:      {{ A: [127.0.0.1] }}
      www:      {{ CNAME: app }}
      host.ent: {{ A: [192.0.2.54], MX: ["10 mail.example.net."] }}
    geo:
      app:
        ttl: 60
        sites:
          london:    [192.0.2.1, "2001:db8::1"]
          frankfurt: [192.0.2.2, "2001:db8::2"]
"#,
        dir = dir.display(),
    )
}

const CASES: &str = r#"
cases:
  - { client: 10.1.0.0/24, query: app.geo.example., expect: { addresses: [192.0.2.1] } }
  - { client: 10.2.0.0/24, query: app.geo.example., type: AAAA, expect: { addresses: ["2001:db8::2"] } }
  - { client: 10.2.0.0/24, query: nothing.geo.example., expect: { rcode: NXDOMAIN } }
"#;

/// Runs the geodns binary (off the runtime's threads: the server answers meanwhile).
async fn geodns(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || Command::new(env!("CARGO_BIN_EXE_geodns")).args(&args).output().unwrap())
        .await
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    /// Two ECDSA keys (`keys/good.key`, `keys/other.key`) and an Ed25519 one (`keys/ed.key`).
    async fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        for (file, alg) in [("good.key", "ecdsap256sha256"), ("other.key", "ecdsap256sha256"), ("ed.key", "ed25519")] {
            let path = dir.path().join("keys").join(file).to_string_lossy().into_owned();
            let o = geodns(vec!["dnssec".into(), "keygen".into(), path, "--algorithm".into(), alg.into()]).await;
            assert!(o.status.success(), "{}", text(&o));
        }
        std::fs::write(dir.path().join("cases.yaml"), CASES).unwrap();
        Setup { dir }
    }

    /// The config signed with `keys` written to `{name}.yaml`; its path.
    fn config(&self, name: &str, keys: &str) -> PathBuf {
        self.config_with(name, &format!("keys: [{keys}]"))
    }

    /// The config with `dnssec: { DNSSEC }` written to `{name}.yaml`; its path.
    fn config_with(&self, name: &str, dnssec: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, config_with(dnssec, self.dir.path())).unwrap();
        path
    }

    async fn serve(&self, keys: &str) -> geodns::app::Running {
        start(&config(keys, self.dir.path()), self.dir.path()).await
    }

    /// What `geodns dnssec ds` prints for a config signed with `keys`.
    async fn ds(&self, keys: &str) -> String {
        let path = self.config("ds", keys);
        let o = geodns(vec!["dnssec".into(), "ds".into(), "--config".into(), path.to_string_lossy().into()]).await;
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8(o.stdout).unwrap()
    }

    /// `geodns check --server SERVER --config CONFIG --dnssec ARGS...`: exit code and output.
    async fn check(&self, server: SocketAddr, config: &Path, args: &[&str]) -> (i32, String) {
        let mut all: Vec<String> =
            ["check", "--server", &server.to_string(), "--config", &config.to_string_lossy(), "--dnssec"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        all.extend(args.iter().map(|s| s.to_string()));
        let o = geodns(all).await;
        (o.status.code().unwrap_or(-1), text(&o))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_signed_server_validates() {
    let s = Setup::new().await;
    let running = s.serve("keys/good.key").await;
    let config = s.config("good", "keys/good.key");
    let (code, out) = s.check(v4(&running), &config, &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("dnssec     geo.example. (trust: the DS of the config's keys)"), "{out}");
    assert!(out.contains("matches the published DNSKEY"), "{out}");
    assert!(out.contains("geo.example. DNSKEY: 1 key(s)"), "{out}");
    // Positive answers, each RRset named; the CNAME with its target's.
    for want in [
        "geo.example. SOA: NOERROR, SOA verified",
        "geo.example. NS: NOERROR, NS, ns1.geo.example. A verified",
        "geo.example. TXT: NOERROR, TXT verified",
        "geo.example. CDS: NOERROR, CDS verified",
        "geo.example. CDNSKEY: NOERROR, CDNSKEY verified",
        "app.geo.example. A: NOERROR, A verified",
        "app.geo.example. AAAA: NOERROR, AAAA verified",
        "www.geo.example. CNAME: NOERROR, CNAME verified",
        "www.geo.example. A: NOERROR, app.geo.example. A, CNAME verified",
        "host.ent.geo.example. MX: NOERROR, MX verified",
    ] {
        assert!(out.contains(&format!("  ok     {want}")), "{want:?} missing:\n{out}");
    }
    // Negative answers with their proofs: a name that does not exist, a type the apex lacks,
    // an empty non-terminal.
    for want in [
        "geodns-check-nxdomain.geo.example. A: NXDOMAIN, geo.example. SOA, geo.example. NSEC, \
         host.ent.geo.example. NSEC verified, NXDOMAIN proven (NSEC, wildcard at geo.example. denied)",
        "geo.example. MX: NOERROR, SOA, NSEC verified, NODATA proven (NSEC)",
        "ent.geo.example. A: NOERROR, NSEC, geo.example. SOA verified, NODATA proven (NSEC)",
    ] {
        assert!(out.contains(&format!("  ok     {want}")), "{want:?} missing:\n{out}");
    }
    assert!(!out.contains("WARN") && !out.contains("FAIL"), "{out}");
    assert!(out.contains("signatures valid until "), "{out}");
    assert!(out.contains("dnssec     OK: 1 zone(s), 0 error(s), 0 warning(s)"), "{out}");

    // With test cases: each case's answer (with its ECS) validated too.
    let cases = s.dir.path().join("cases.yaml").to_string_lossy().into_owned();
    let (code, out) = s.check(v4(&running), &config, &["--tests", &cases]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("3 passed, 0 failed"), "{out}");
    assert!(out.contains("  ok     app.geo.example. A (ECS 10.1.0.0/24): NOERROR, A verified"), "{out}");
    assert!(out.contains("  ok     app.geo.example. AAAA (ECS 10.2.0.0/24): NOERROR, AAAA verified"), "{out}");
    assert!(out.contains("  ok     nothing.geo.example. A (ECS 10.2.0.0/24): NXDOMAIN"), "{out}");

    // A NAME asked with --dnssec: the answer, then its validation with the zone's.
    let (code, out) = s.check(v4(&running), &config, &["www.geo.example", "--client", "10.2.0.0/24"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("answer     192.0.2.2"), "{out}");
    assert!(
        out.contains("  ok     www.geo.example. A (ECS 10.2.0.0/24): NOERROR, app.geo.example. A, CNAME verified"),
        "{out}"
    );

    // --json: the same report as data.
    let (code, out) = s.check(v4(&running), &config, &["--json"]).await;
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["errors"], 0);
    assert_eq!(v["zones"][0]["zone"], "geo.example.");
    assert!(v["zones"][0]["rrsets_verified"].as_u64().unwrap() >= 12, "{v}");
    assert_eq!(v["zones"][0]["denials_proven"], 3, "{v}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ds_at_the_parent_must_match_a_published_key() {
    let s = Setup::new().await;
    let running = s.serve("keys/good.key").await;
    let config = s.config("good", "keys/good.key");
    let (good_ds, other_ds) = (s.ds("keys/good.key").await, s.ds("keys/other.key").await);
    let other_tag = other_ds.split_whitespace().nth(4).unwrap().to_owned();

    // The parent holds the DS of another key: nothing can validate.
    let wrong = s.dir.path().join("wrong.ds");
    std::fs::write(&wrong, &other_ds).unwrap();
    let (code, out) = s.check(v4(&running), &config, &["--trust-anchor", &wrong.to_string_lossy()]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("  WARN   DS {other_tag} 13 2 matches no DNSKEY the server publishes")), "{out}");
    assert!(out.contains("FAIL   none of the 1 trust anchor(s) matches a DNSKEY"), "{out}");
    assert!(out.contains("validation cannot succeed"), "{out}");
    assert!(out.contains("dnssec     FAILED: 1 zone(s), 1 error(s), 1 warning(s)"), "{out}");

    // Both DS at the parent (a rollover half done): a warning, and everything validates.
    let both = s.dir.path().join("both.ds");
    std::fs::write(&both, format!("; the parent's DS RRset\n{good_ds}{other_ds}")).unwrap();
    let (code, out) = s.check(v4(&running), &config, &["--trust-anchor", &both.to_string_lossy()]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(trust: 2 record(s) from"), "{out}");
    assert!(out.contains(&format!("  WARN   DS {other_tag} 13 2 matches no DNSKEY the server publishes")), "{out}");
    assert!(out.contains("  ok     app.geo.example. A: NOERROR, A verified"), "{out}");
    assert!(out.contains("dnssec     OK: 1 zone(s), 0 error(s), 1 warning(s)"), "{out}");

    // A file that is not DS records: a config error, naming the file and line.
    let junk = s.dir.path().join("junk.ds");
    std::fs::write(&junk, "geo.example. 3600 IN DS 1 13 2 NOTHEX\n").unwrap();
    let (code, out) = s.check(v4(&running), &config, &["--trust-anchor", &junk.to_string_lossy()]).await;
    assert_eq!(code, 78, "{out}");
    assert!(out.contains("junk.ds: line 1: DS: digest"), "{out}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_signing_with_another_key_fails() {
    let s = Setup::new().await;
    // The server signs with other.key; the config checked (and its DS) names good.key.
    let running = s.serve("keys/other.key").await;
    let config = s.config("good", "keys/good.key");
    let (code, out) = s.check(v4(&running), &config, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("matches no DNSKEY the server publishes"), "{out}");
    assert!(out.contains("validation cannot succeed"), "{out}");
    running.stop().await;

    // During an algorithm rollover both keys sign: the DS of either validates.
    let running = s.serve("keys/good.key, keys/ed.key").await;
    for only in ["keys/good.key", "keys/ed.key"] {
        let ds = s.dir.path().join("one.ds");
        std::fs::write(&ds, s.ds(only).await).unwrap();
        let (code, out) = s.check(v4(&running), &config, &["--trust-anchor", &ds.to_string_lossy()]).await;
        assert_eq!(code, 0, "{only}: {out}");
        assert!(out.contains("geo.example. DNSKEY: 2 key(s)"), "{out}");
        assert!(out.contains("dnssec     OK: 1 zone(s), 0 error(s), 0 warning(s)"), "{only}: {out}");
    }
    running.stop().await;

    // A KSK/ZSK split: the KSK's DS (the default, as `geodns dnssec ds` prints it) is trusted,
    // the KSK signs the DNSKEY RRset and the ZSK (flags 256) everything else.
    let split = "ksk: [keys/good.key], zsk: [keys/other.key]";
    let running = start(&config_with(split, s.dir.path()), s.dir.path()).await;
    let config = s.config_with("split", split);
    let (code, out) = s.check(v4(&running), &config, &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("geo.example. DNSKEY: 2 key(s)"), "{out}");
    assert!(out.contains("(flags 257, algorithm 13)") && !out.contains("(flags 256, algorithm 13)"), "{out}");
    assert!(out.contains("  ok     app.geo.example. A: NOERROR, A verified"), "{out}");
    assert!(out.contains("dnssec     OK: 1 zone(s), 0 error(s), 0 warning(s)"), "{out}");
    // The ZSK as the trust anchor: it is published but signs no DNSKEY RRset, so nothing
    // validates. (Its DNSKEY record as served, flags 256.)
    let reply = common::dns::udp(v4(&running), &common::dns::query("geo.example.", RecordType::DNSKEY)).await;
    let zsk = reply
        .answers
        .iter()
        .find_map(|r| match &r.data {
            RData::Unknown { rdata, .. } if rdata.anything[..2] == [1, 0] => Some(rdata.anything.clone()),
            _ => None,
        })
        .expect("the ZSK is published");
    let anchor = s.dir.path().join("zsk.dnskey");
    let text = format!("geo.example. 300 IN DNSKEY 256 3 13 {}\n", STANDARD.encode(&zsk[4..]));
    std::fs::write(&anchor, text).unwrap();
    let (code, out) = s.check(v4(&running), &config, &["--trust-anchor", &anchor.to_string_lossy()]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("  ok     DNSKEY ") && out.contains("(flags 256, algorithm 13) matches the published"),
        "{out}"
    );
    assert!(out.contains("DNSKEY: not signed by a trusted key: no RRSIG by a trusted key"), "{out}");
    running.stop().await;
}

/// How a proxy alters replies.
#[derive(Clone, Copy)]
enum Tamper {
    /// Flip the last byte of every RRSIG over an A RRset.
    FlipASignatures,
    /// Leave out every NSEC record and its RRSIGs.
    DropNsec,
}

/// A UDP proxy to `upstream` that alters the replies. Runs until the test ends.
async fn tampering_proxy(upstream: SocketAddr, tamper: Tamper) -> SocketAddr {
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        loop {
            let Ok((n, client)) = socket.recv_from(&mut buf).await else { return };
            let query = buf[..n].to_vec();
            let socket = socket.clone();
            tokio::spawn(async move {
                let up = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                up.send_to(&query, upstream).await.unwrap();
                let mut reply = vec![0u8; 65535];
                let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), up.recv(&mut reply)).await else { return };
                let mut m = Message::from_vec(&reply[..n]).unwrap();
                match tamper {
                    Tamper::FlipASignatures => {
                        for r in m.answers.iter_mut().chain(m.authorities.iter_mut()).chain(m.additionals.iter_mut()) {
                            if let RData::Unknown { code, rdata } = &mut r.data
                                && u16::from(*code) == 46
                                && rdata.anything[..2] == [0, 1]
                            {
                                *rdata.anything.last_mut().unwrap() ^= 0x01;
                            }
                        }
                    }
                    Tamper::DropNsec => m.authorities.retain(|r| match &r.data {
                        RData::Unknown { code, rdata } => {
                            u16::from(*code) != 47 && !(u16::from(*code) == 46 && rdata.anything[..2] == [0, 47])
                        }
                        _ => true,
                    }),
                }
                let _ = socket.send_to(&m.to_vec().unwrap(), client).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_altered_or_proofs_dropped_on_the_way_fail() {
    let s = Setup::new().await;
    let running = s.serve("keys/good.key").await;
    let proxy = tampering_proxy(v4(&running), Tamper::FlipASignatures).await;
    let config = s.config("good", "keys/good.key");
    let (code, out) = s.check(proxy, &config, &[]).await;
    assert_eq!(code, 1, "{out}");
    // The key and every other type still validate; each A RRset fails.
    assert!(out.contains("  ok     geo.example. DNSKEY: 1 key(s)"), "{out}");
    assert!(out.contains("  ok     geo.example. SOA: NOERROR, SOA verified"), "{out}");
    assert!(out.contains("  FAIL   app.geo.example. A: NOERROR; app.geo.example. A: RRSIG by "), "{out}");
    assert!(out.contains("the signature does not verify"), "{out}");
    assert!(out.contains("  FAIL   ns1.geo.example. A: NOERROR; ns1.geo.example. A: RRSIG by "), "{out}");
    assert!(out.contains("dnssec     FAILED"), "{out}");

    // Negative answers without their proofs: each denial fails, positive answers still pass.
    let proxy = tampering_proxy(v4(&running), Tamper::DropNsec).await;
    let (code, out) = s.check(proxy, &config, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "  FAIL   geodns-check-nxdomain.geo.example. A: NXDOMAIN, geo.example. SOA verified; NXDOMAIN denial \
             of geodns-check-nxdomain.geo.example.: no NSEC covers geodns-check-nxdomain.geo.example."
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "  FAIL   geo.example. MX: NOERROR, SOA verified; NOERROR denial of geo.example.: no NSEC at \
             geo.example. or proving it an empty non-terminal"
        ),
        "{out}"
    );
    assert!(out.contains("  ok     app.geo.example. A: NOERROR, A verified"), "{out}");
    assert!(out.contains("dnssec     FAILED: 1 zone(s), 3 error(s), 0 warning(s)"), "{out}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_expiring_within_the_warning_window_warn() {
    let s = Setup::new().await;
    let running = s.serve("keys/good.key").await;
    let config = s.config("good", "keys/good.key");
    // Signatures are valid for 14 days (the default): a 30-day window sees them all expiring.
    let (code, out) = s.check(v4(&running), &config, &["--warn-expiry", "30d"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("  WARN   "), "{out}");
    assert!(out.contains("have signatures expiring within the warning window of 30d 0h: the earliest, "), "{out}");
    assert!(out.contains("(13d 23h left)") || out.contains("(14d 0h left)"), "{out}");
    assert!(out.contains("dnssec     OK: 1 zone(s), 0 error(s), 1 warning(s)"), "{out}");
    // The default window (half of refresh, 3.5 days) does not warn about a fresh server.
    let (code, out) = s.check(v4(&running), &config, &["--warn-expiry", "1d"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("WARN"), "{out}");
    running.stop().await;
}

#[test]
fn dnssec_needs_a_server_and_a_signed_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, config("keys/none.key", dir.path()).replace("    dnssec: { keys: [keys/none.key] }\n", ""))
        .unwrap();
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_geodns")).args(args).output().unwrap();
    let o = run(&["check", "--config", &path.to_string_lossy(), "--dnssec"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--server"), "{}", text(&o));
    let o = run(&["check", "--config", &path.to_string_lossy(), "--server", "127.0.0.1:9", "--dnssec"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("has no signed zone"), "{}", text(&o));
}
