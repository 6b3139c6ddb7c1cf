//! DNSSEC validated by real validators: delv (BIND's validating lookup tool) and unbound (a
//! validating resolver), each given a trust anchor made from what `geodns dnssec ds` prints.
//! Geo answers for clients at different sites (client networks, chosen by delv's source
//! address; ECS from two countries through unbound), after a drain, static answers, NXDOMAIN
//! and NODATA proofs, DNSKEY, CDS and CDNSKEY must all be secure; a key that does not match
//! the DS must be bogus.
//!
//! Needs `delv` (Debian: bind9-dnsutils) and `unbound`; `.ci/run` installs them.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::dns::{query, udp, with_ecs};
use common::server::{start, v4};
use common::wait::until_async;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

const GEO: &[(&str, f64, f64, &str)] =
    &[("81.2.69.0/24", 51.51, -0.13, "GB"), ("2.125.160.0/24", 51.51, -0.13, "GB"), ("5.9.0.0/16", 50.11, 8.68, "DE")];

/// The zone: geo names (one with max_answers), static names, a CNAME to a geo name and an
/// empty non-terminal (`ent`). Clients 127.0.0.2 and 127.0.0.3 are placed in London and
/// Frankfurt by client networks, so delv (which sends no ECS) reaches both sites. `key` is the
/// combined keys' list (`keys/good.key, keys/other.key`), or the whole of the zone's `dnssec`
/// keys (`ksk: [...], zsk: [...]`).
fn config(db: &Path, key: &str, dir: &Path) -> String {
    let keys = if key.contains(':') { key.to_owned() } else { format!("keys: [{key}]") };
    format!(
        r#"
server:
  dns_listen: ["127.0.0.1:0"]
  rrl: {{ enabled: false }}
  admin_state: "{dir}/admin_state"
geoip:
  database: "{db}"
sites:
  london:    {{ location: [51.51, -0.13] }}
  frankfurt: {{ location: [50.11, 8.68] }}
client_networks:
  - {{ cidr: 127.0.0.2/32, site: london }}
  - {{ cidr: 127.0.0.3/32, site: frankfurt }}
zones:
  geo.example.:
    soa: {{ mname: ns1.geo.example., rname: hostmaster.geo.example., serial: 1, minimum: 120 }}
    ns: [ns1.geo.example.]
    ttl: 300
    dnssec: {{ {keys} }}
    records:
      "@":      {{ TXT: ["geo.example GeoDNS zone"] }}
      ns1:      {{ A: [127.0.0.1] }}
      static:   {{ A: [192.0.2.53] }}
      www:      {{ CNAME: app }}
      host.ent: {{ A: [192.0.2.54] }}
    geo:
      app:
        ttl: 60
        sites:
          london:    [192.0.2.1, "2001:db8::1"]
          frankfurt: [192.0.2.2, "2001:db8::2"]
      pool:
        max_answers: 2
        sites:
          london:    [192.0.2.11, 192.0.2.12]
          frankfurt: [192.0.2.21]
"#,
        db = db.display(),
        dir = dir.display(),
    )
}

struct Setup {
    dir: tempfile::TempDir,
    /// delv's trust anchor file, from `geodns dnssec ds` for `keys/good.key`.
    anchor: PathBuf,
    /// The DS record as printed.
    ds: String,
}

/// A directory with a GeoIP database, two keys (`keys/good.key`, `keys/other.key`), the config
/// (signed with `keys/good.key`) as `geo.yaml`, and the trust anchor of its DS.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("city.mmdb");
    common::mmdb::write_city_db(&db, GEO);
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    for (file, alg) in [("good.key", "ecdsap256sha256"), ("other.key", "ecdsap256sha256"), ("ed.key", "ed25519")] {
        let out =
            geodns(&["dnssec", "keygen", &dir.path().join("keys").join(file).to_string_lossy(), "--algorithm", alg]);
        assert!(out.contains("key tag"), "{out}");
    }
    let (anchor, ds) = anchor_for(dir.path(), "good");
    Setup { dir, anchor, ds: ds.trim().to_owned() }
}

/// A config signed with `keys/{key}.key` written as `{key}.yaml`, the DS `geodns dnssec ds`
/// prints for it, and that DS as delv's trust anchor file (`{key}.anchor`).
fn anchor_for(dir: &Path, key: &str) -> (PathBuf, String) {
    let config_path = dir.join(format!("{key}.yaml"));
    std::fs::write(&config_path, config(&dir.join("city.mmdb"), &format!("keys/{key}.key"), dir)).unwrap();
    let ds = geodns(&["dnssec", "ds", "--config", &config_path.to_string_lossy(), "geo.example."]);
    let fields: Vec<&str> = ds.split_whitespace().collect();
    assert_eq!(fields.len(), 8, "one DS record: {ds}");
    assert_eq!(&fields[..4], ["geo.example.", "3600", "IN", "DS"]);
    let anchor = dir.join(format!("{key}.anchor"));
    let text = format!(
        "trust-anchors {{\n  {} static-ds {} {} {} \"{}\";\n}};\n",
        fields[0], fields[4], fields[5], fields[6], fields[7]
    );
    std::fs::write(&anchor, text).unwrap();
    (anchor, ds.trim().to_owned())
}

/// Runs the geodns binary; returns its output, panicking when it fails.
fn geodns(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_geodns")).args(args).output().unwrap();
    assert!(out.status.success(), "geodns {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

async fn serve(setup: &Setup, key: &str) -> geodns::app::Running {
    let db = setup.dir.path().join("city.mmdb");
    start(&config(&db, key, setup.dir.path()), setup.dir.path()).await
}

/// delv's verdict on `name`/`rtype` asked of `server` from `source`, with the trust anchor:
/// its whole output (bounded by `timeout`, so a hung delv fails the test).
async fn delv(server: SocketAddr, anchor: &Path, source: &str, name: &str, rtype: &str) -> String {
    let args: Vec<String> = [
        "20",
        "delv",
        &format!("@{}", server.ip()),
        "-p",
        &server.port().to_string(),
        "-b",
        source,
        "-a",
        &anchor.to_string_lossy(),
        "+root=geo.example",
        name,
        rtype,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = tokio::task::spawn_blocking(move || Command::new("timeout").args(&args).output())
        .await
        .unwrap()
        .expect("delv runs (Debian: apt-get install bind9-dnsutils)");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Asserts delv validated `name`/`rtype` as secure and that the answer holds each of `want`.
async fn secure(server: SocketAddr, anchor: &Path, source: &str, name: &str, rtype: &str, want: &[&str]) {
    let out = delv(server, anchor, source, name, rtype).await;
    assert!(out.contains("; fully validated"), "{name} {rtype} from {source} is not secure:\n{out}");
    for w in want {
        assert!(out.contains(w), "{name} {rtype} from {source}: {w:?} missing:\n{out}");
    }
}

/// Asserts delv validated a negative answer (`NXDOMAIN` or `NXRRSET`, NODATA) as secure.
async fn secure_negative(server: SocketAddr, anchor: &Path, name: &str, rtype: &str, kind: &str) {
    let out = delv(server, anchor, "127.0.0.1", name, rtype).await;
    assert!(out.contains("; negative response, fully validated"), "{name} {rtype} not proven:\n{out}");
    assert!(out.contains(&format!(";-${kind}")), "{name} {rtype}: not {kind}:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delv_validates_geo_static_negative_and_key_answers_and_a_drain() {
    let s = setup();
    let running = serve(&s, "keys/good.key").await;
    let dns = v4(&running);
    let a = &s.anchor;
    // Geo answers from each site, both types, and with max_answers from site combinations.
    secure(dns, a, "127.0.0.2", "app.geo.example", "A", &["IN\tA\t192.0.2.1"]).await;
    secure(dns, a, "127.0.0.3", "app.geo.example", "A", &["IN\tA\t192.0.2.2"]).await;
    secure(dns, a, "127.0.0.2", "app.geo.example", "AAAA", &["2001:db8::1"]).await;
    secure(dns, a, "127.0.0.3", "app.geo.example", "AAAA", &["2001:db8::2"]).await;
    secure(dns, a, "127.0.0.2", "pool.geo.example", "A", &["192.0.2.11", "192.0.2.12"]).await;
    secure(dns, a, "127.0.0.3", "pool.geo.example", "A", &["192.0.2.21", "192.0.2.11"]).await;
    // Static answers, a CNAME to a geo name, the apex.
    secure(dns, a, "127.0.0.1", "static.geo.example", "A", &["192.0.2.53"]).await;
    secure(dns, a, "127.0.0.3", "www.geo.example", "A", &["CNAME\tapp.geo.example.", "192.0.2.2"]).await;
    secure(dns, a, "127.0.0.1", "geo.example", "TXT", &["GeoDNS zone"]).await;
    secure(dns, a, "127.0.0.1", "geo.example", "NS", &["ns1.geo.example."]).await;
    secure(dns, a, "127.0.0.1", "geo.example", "SOA", &["hostmaster.geo.example."]).await;
    // The keys, and CDS/CDNSKEY for the parent: the CDS is the DS `geodns dnssec ds` printed.
    secure(dns, a, "127.0.0.1", "geo.example", "DNSKEY", &["257 3 13"]).await;
    let ds_fields: Vec<&str> = s.ds.split_whitespace().collect();
    let cds = format!("CDS\t{} {} {} {}", ds_fields[4], ds_fields[5], ds_fields[6], &ds_fields[7][..20]);
    secure(dns, a, "127.0.0.1", "geo.example", "CDS", &[&cds]).await;
    secure(dns, a, "127.0.0.1", "geo.example", "CDNSKEY", &["257 3 13"]).await;
    // Denial: NXDOMAIN (also below a name that does not exist), NODATA at a static name, at a
    // geo name's missing type, at an empty non-terminal, and DS at the apex.
    secure_negative(dns, a, "nope.geo.example", "A", "NXDOMAIN").await;
    secure_negative(dns, a, "deep.nope.geo.example", "TXT", "NXDOMAIN").await;
    secure_negative(dns, a, "zzz.geo.example", "A", "NXDOMAIN").await;
    secure_negative(dns, a, "static.geo.example", "AAAA", "NXRRSET").await;
    secure_negative(dns, a, "app.geo.example", "TXT", "NXRRSET").await;
    secure_negative(dns, a, "ent.geo.example", "A", "NXRRSET").await;
    secure_negative(dns, a, "geo.example", "MX", "NXRRSET").await;

    // A drain (a health flip from the admin state file): London's clients go to Frankfurt,
    // signed (the answer set was signed ahead: the flip signs nothing).
    std::fs::write(s.dir.path().join("admin_state"), "sites:\n  london: down\n").unwrap();
    until_async(
        Duration::from_secs(10),
        "London's client answered from Frankfurt after the drain",
        || delv(dns, a, "127.0.0.2", "app.geo.example", "A"),
        |out| out.contains("IN\tA\t192.0.2.2"),
    )
    .await;
    secure(dns, a, "127.0.0.2", "app.geo.example", "A", &["IN\tA\t192.0.2.2"]).await;
    secure(dns, a, "127.0.0.2", "pool.geo.example", "A", &["192.0.2.21"]).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_does_not_match_the_ds_is_bogus() {
    let s = setup();
    // Served with another key than the one the anchor's DS names.
    let running = serve(&s, "keys/other.key").await;
    let dns = v4(&running);
    for (name, rtype) in [("app.geo.example", "A"), ("geo.example", "DNSKEY"), ("nope.geo.example", "A")] {
        let out = delv(dns, &s.anchor, "127.0.0.2", name, rtype).await;
        assert!(!out.contains("fully validated"), "{name} {rtype} validated with the wrong key:\n{out}");
        assert!(out.contains("resolution failed"), "{name} {rtype}: delv did not fail:\n{out}");
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollover_publishes_both_keys_and_either_ds_validates() {
    let s = setup();
    let (other_anchor, _) = anchor_for(s.dir.path(), "other");
    let (ed_anchor, _) = anchor_for(s.dir.path(), "ed");
    // Pre-publish: the old key and the new one, every RRset signed by both. A parent with
    // either DS (before and after the DS is swapped at the registrar) validates.
    let running = serve(&s, "keys/good.key, keys/other.key").await;
    let dns = v4(&running);
    for anchor in [&s.anchor, &other_anchor] {
        secure(dns, anchor, "127.0.0.2", "app.geo.example", "A", &["IN\tA\t192.0.2.1"]).await;
        secure(dns, anchor, "127.0.0.1", "geo.example", "CDS", &[]).await;
        secure_negative(dns, anchor, "nope.geo.example", "A", "NXDOMAIN").await;
    }
    let cds = delv(dns, &s.anchor, "127.0.0.1", "geo.example", "CDS").await;
    assert_eq!(cds.matches("IN\tCDS\t").count(), 2, "a CDS per key:\n{cds}");
    running.stop().await;
    // Retired: the new key alone, validated with its DS; the old DS no longer validates.
    let running = serve(&s, "keys/other.key").await;
    let dns = v4(&running);
    secure(dns, &other_anchor, "127.0.0.3", "app.geo.example", "A", &["IN\tA\t192.0.2.2"]).await;
    let out = delv(dns, &s.anchor, "127.0.0.3", "app.geo.example", "A").await;
    assert!(!out.contains("fully validated"), "the retired key's DS still validates:\n{out}");
    running.stop().await;
    // An algorithm rollover's pre-publish: ECDSA and Ed25519 keys together.
    let running = serve(&s, "keys/good.key, keys/ed.key").await;
    let dns = v4(&running);
    for anchor in [&s.anchor, &ed_anchor] {
        secure(dns, anchor, "127.0.0.2", "pool.geo.example", "A", &["192.0.2.11"]).await;
        secure_negative(dns, anchor, "static.geo.example", "AAAA", "NXRRSET").await;
    }
    running.stop().await;
}

/// A KSK/ZSK split: `geodns dnssec ds` prints the KSK's DS alone, the DNSKEY set holds both
/// keys (flags 257 and 256), CDS and CDNSKEY the KSK alone, and delv validates geo, static
/// and negative answers (signed by the ZSK) from the KSK's DS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ksk_zsk_split_validates_from_the_ksks_ds() {
    let s = setup();
    let split = "ksk: [keys/good.key], zsk: [keys/other.key]";
    let config_path = s.dir.path().join("split.yaml");
    std::fs::write(&config_path, config(&s.dir.path().join("city.mmdb"), split, s.dir.path())).unwrap();
    let ds = geodns(&["dnssec", "ds", "--config", &config_path.to_string_lossy()]);
    assert_eq!(ds.trim(), s.ds, "the KSK's DS alone (good.key's)");
    let running = serve(&s, split).await;
    let (dns, a) = (v4(&running), &s.anchor);
    let keys = delv(dns, a, "127.0.0.1", "geo.example", "DNSKEY").await;
    assert!(keys.contains("; fully validated"), "{keys}");
    assert_eq!(keys.matches("IN\tDNSKEY\t257 3 13").count(), 1, "{keys}");
    assert_eq!(keys.matches("IN\tDNSKEY\t256 3 13").count(), 1, "{keys}");
    let cdnskey = delv(dns, a, "127.0.0.1", "geo.example", "CDNSKEY").await;
    assert!(cdnskey.contains("; fully validated") && cdnskey.contains("CDNSKEY\t257 3 13"), "{cdnskey}");
    assert!(!cdnskey.contains("CDNSKEY\t256"), "no ZSK in CDNSKEY: {cdnskey}");
    secure(dns, a, "127.0.0.1", "geo.example", "CDS", &[]).await;
    secure(dns, a, "127.0.0.2", "app.geo.example", "A", &["IN\tA\t192.0.2.1"]).await;
    secure(dns, a, "127.0.0.3", "pool.geo.example", "A", &["192.0.2.21"]).await;
    secure(dns, a, "127.0.0.1", "static.geo.example", "A", &["192.0.2.53"]).await;
    secure_negative(dns, a, "nope.geo.example", "A", "NXDOMAIN").await;
    secure_negative(dns, a, "static.geo.example", "AAAA", "NXRRSET").await;
    running.stop().await;
}

/// An unbound process (killed, by its PID, when dropped).
struct Unbound(Child);

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free for both UDP and TCP now.
fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Starts unbound as a validating resolver on a loopback port: geo.example. is a stub zone
/// served by `geodns`, its trust anchor the DS `ds`; it forwards clients' ECS (up to /24).
fn unbound(dir: &Path, geodns: SocketAddr, ds: &str, port: u16) -> Unbound {
    unbound_at(dir, geodns, ds, port, None)
}

/// [`unbound`], its validator's clock set to `date` (RRSIG form, YYYYMMDDHHMMSS) when given:
/// signatures are checked against that time instead of now (unbound's `val-override-date`).
fn unbound_at(dir: &Path, geodns: SocketAddr, ds: &str, port: u16, date: Option<&str>) -> Unbound {
    let conf = dir.join(format!("unbound-{port}.conf"));
    let fields: Vec<&str> = ds.split_whitespace().collect();
    let anchor = format!("{} DS {} {} {} {}", fields[0], fields[4], fields[5], fields[6], fields[7]);
    std::fs::write(
        &conf,
        format!(
            r#"server:
  interface: 127.0.0.1@{port}
  port: {port}
  do-ip6: no
  do-not-query-localhost: no
  username: ""
  chroot: ""
  directory: "{dir}"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  val-log-level: 2
  module-config: "subnetcache validator iterator"
  send-client-subnet: 127.0.0.1
  client-subnet-always-forward: yes
  max-client-subnet-ipv4: 24
  trust-anchor: "{anchor}"
  qname-minimisation: no
  harden-referral-path: no
  val-override-date: "{date}"
stub-zone:
  name: "geo.example."
  stub-addr: {ip}@{gport}
"#,
            dir = dir.display(),
            ip = geodns.ip(),
            gport = geodns.port(),
            date = date.unwrap_or("0"),
        ),
    )
    .unwrap();
    let child = Command::new("unbound")
        .args(["-d", "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("unbound runs (Debian: apt-get install unbound)");
    Unbound(child)
}

/// A query with DO set, and ECS when `subnet` is given.
fn do_query(name: &str, rtype: RecordType, subnet: Option<&str>) -> Message {
    let mut m = common::dns::with_edns(query(name, rtype), 1232);
    if let Some(subnet) = subnet {
        m = with_ecs(m, subnet);
    }
    m.edns.as_mut().unwrap().set_dnssec_ok(true);
    m
}

/// The A records' addresses (in the order the resolver gave them: an RRset has none).
fn a_records(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbound_validates_geo_answers_for_ecs_clients_in_two_countries() {
    let s = setup();
    let running = serve(&s, "keys/good.key").await;
    let port = free_port();
    let _unbound = unbound(s.dir.path(), v4(&running), &s.ds, port);
    let resolver: SocketAddr = ([127, 0, 0, 1], port).into();
    // Unbound is up once it answers (bounded: its start takes well under a second).
    let ask = |name: &'static str, rtype, subnet: Option<&'static str>| async move {
        let m = do_query(name, rtype, subnet);
        let bytes = m.to_vec().unwrap();
        let reply = common::dns::udp_raw_wait(resolver, &bytes, Duration::from_millis(500)).await?;
        Message::from_vec(&reply).ok()
    };
    let first = until_async(
        Duration::from_secs(15),
        "unbound to answer",
        || ask("geo.example.", RecordType::DNSKEY, None),
        Option::is_some,
    )
    .await
    .unwrap();
    assert!(first.metadata.authentic_data, "DNSKEY is secure (AD): {first:?}");

    // A client in Great Britain gets London, one in Germany Frankfurt: both validated (AD).
    let gb = udp(resolver, &do_query("app.geo.example.", RecordType::A, Some("81.2.69.0/24"))).await;
    assert_eq!(gb.metadata.response_code, ResponseCode::NoError, "{gb:?}");
    assert!(gb.metadata.authentic_data, "GB answer is secure: {gb:?}");
    assert_eq!(a_records(&gb), ["192.0.2.1"]);
    let de = udp(resolver, &do_query("app.geo.example.", RecordType::A, Some("5.9.1.0/24"))).await;
    assert!(de.metadata.authentic_data, "DE answer is secure: {de:?}");
    assert_eq!(a_records(&de), ["192.0.2.2"]);
    let pool = udp(resolver, &do_query("pool.geo.example.", RecordType::A, Some("5.9.2.0/24"))).await;
    assert!(pool.metadata.authentic_data, "{pool:?}");
    let mut addrs = a_records(&pool);
    addrs.sort();
    assert_eq!(addrs, ["192.0.2.11", "192.0.2.21"], "Frankfurt's address and one of London's");
    // Static, NXDOMAIN and NODATA, CDS and CDNSKEY.
    for (name, rtype, rcode) in [
        ("static.geo.example.", RecordType::A, ResponseCode::NoError),
        ("www.geo.example.", RecordType::A, ResponseCode::NoError),
        ("nope.geo.example.", RecordType::A, ResponseCode::NXDomain),
        ("static.geo.example.", RecordType::AAAA, ResponseCode::NoError),
        ("ent.geo.example.", RecordType::A, ResponseCode::NoError),
        ("geo.example.", RecordType::CDS, ResponseCode::NoError),
        ("geo.example.", RecordType::CDNSKEY, ResponseCode::NoError),
    ] {
        let reply = udp(resolver, &do_query(name, rtype, None)).await;
        assert_eq!(reply.metadata.response_code, rcode, "{name} {rtype}: {reply:?}");
        assert!(reply.metadata.authentic_data, "{name} {rtype} is secure: {reply:?}");
    }
    running.stop().await;
}

#[tokio::test]
async fn key_files_that_cannot_be_used_are_named_by_their_config_path() {
    let s = setup();
    std::fs::write(
        s.dir.path().join("keys/junk.key"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let db = s.dir.path().join("city.mmdb");
    for (key, want) in [
        ("keys/missing.key", "cannot read"),
        ("keys/junk.key", "not an ECDSA P-256 or Ed25519 PKCS#8 key"),
        ("city.mmdb", "not a PEM"),
    ] {
        let config = geodns::config::parse(&config(&db, key, s.dir.path()), s.dir.path()).unwrap();
        let error = geodns::app::open(config).err().expect("the key is rejected").to_string();
        assert!(error.contains(r#"zones."geo.example.".dnssec.keys[0]"#), "{error}");
        assert!(error.contains(key) && error.contains(want), "{error}");
    }
}

/// The first reply of the resolver on `port` to a DO query for `name`/`rtype` (bounded: unbound
/// starts in well under a second; a resolver that never answers fails the test).
async fn first_reply(port: u16, name: &str, rtype: RecordType) -> Message {
    let resolver: SocketAddr = ([127, 0, 0, 1], port).into();
    let bytes = do_query(name, rtype, None).to_vec().unwrap();
    until_async(
        Duration::from_secs(15),
        "unbound to answer",
        || async {
            let reply = common::dns::udp_raw_wait(resolver, &bytes, Duration::from_millis(500)).await?;
            Message::from_vec(&reply).ok()
        },
        Option::is_some,
    )
    .await
    .unwrap()
}

/// A signature past its expiry, and one before its inception, are bogus: unbound, with its
/// clock set past the end of the signatures' validity (14 days by default) or before their
/// inception (an hour before signing), answers SERVFAIL; with today's clock it validates the
/// same answers (AD). Unbound forgives a clock skew of a tenth of the validity, at most a
/// day, so its clock is set three days beyond either end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_past_their_expiry_or_before_their_inception_are_bogus() {
    let s = setup();
    let running = serve(&s, "keys/good.key").await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let date = |secs: u64| {
        let out = Command::new("date").args(["-u", "-d", &format!("@{secs}"), "+%Y%m%d%H%M%S"]).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let day = 24 * 3600;
    for (clock, secure) in [(None, true), (Some(date(now + 17 * day)), false), (Some(date(now - 3 * day)), false)] {
        let port = free_port();
        let _unbound = unbound_at(s.dir.path(), v4(&running), &s.ds, port, clock.as_deref());
        for (name, rtype) in [
            ("app.geo.example.", RecordType::A),
            ("static.geo.example.", RecordType::A),
            ("nope.geo.example.", RecordType::A),
        ] {
            let reply = first_reply(port, name, rtype).await;
            if secure {
                assert!(reply.metadata.authentic_data, "{name} {rtype} is secure today: {reply:?}");
            } else {
                assert_eq!(
                    reply.metadata.response_code,
                    ResponseCode::ServFail,
                    "{name} {rtype} with the validator's clock at {clock:?} is bogus: {reply:?}"
                );
            }
        }
    }
    running.stop().await;
}
