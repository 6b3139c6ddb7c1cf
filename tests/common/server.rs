//! Starting geodns in-process for the tests: a config text, DNS on 127.0.0.1:0 and [::1]:0.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;

use geodns::app::{self, Running};

/// The config used by most DNS tests: the example's four sites and zone, plus a few names that
/// exercise max_answers, truncation and CNAME chains. `{geoip}` is replaced by the database path.
pub const TEST_CONFIG: &str = r#"
server:
  dns_listen: ["127.0.0.1:0", "[::1]:0"]
  # Every test query comes from one loopback address; rate limiting is tested in rrl_flood.rs.
  rrl: { enabled: false }
geoip:
  database: "{geoip}"
sites:
  london:    { location: [51.51, -0.13] }
  frankfurt: { location: [50.11, 8.68] }
  seattle:   { location: [47.61, -122.33] }
  singapore: { location: [1.35, 103.82] }
client_networks:
  - { cidr: 10.42.0.0/16, site: frankfurt }
  - { cidr: "fd00:42::/32", site: seattle }
zones:
  geo.example.:
    soa: { mname: ns1.geo.example., rname: hostmaster.geo.example., serial: 1,
           refresh: 7200, retry: 1800, expire: 1209600, minimum: 120 }
    ns: [ns1.geo.example.]
    ttl: 300
    records:
      "@":      { TXT: ["geo.example GeoDNS zone"] }
      ns1:      { A: [127.0.0.1] }
      static:   { A: [192.0.2.53] }
      v6:       { AAAA: ["2001:db8::53"] }
      www:      { CNAME: app }
      host.ent: { A: [192.0.2.54] }
      big:      { TXT: ["{big1}", "{big2}", "{big3}"] }
    geo:
      app:
        ttl: 60
        sites:
          london:    [192.0.2.1, "2001:db8::1"]
          frankfurt: [192.0.2.2, "2001:db8::2"]
          seattle:   [192.0.2.3, "2001:db8::3"]
          singapore: [192.0.2.4, "2001:db8::4"]
      pool:
        max_answers: 3
        sites:
          london:    [192.0.2.11, 192.0.2.12]
          frankfurt: [192.0.2.21, 192.0.2.22]
          seattle:   [192.0.2.31]
          singapore: [192.0.2.41]
"#;

pub fn test_config(geoip: &Path) -> String {
    TEST_CONFIG
        .replace("{geoip}", &geoip.to_string_lossy())
        .replace("{big1}", &"a".repeat(200))
        .replace("{big2}", &"b".repeat(200))
        .replace("{big3}", &"c".repeat(200))
}

/// Starts geodns from config text; relative paths are relative to `base`.
pub async fn start(text: &str, base: &Path) -> Running {
    let config =
        geodns::config::parse(text, base).unwrap_or_else(|e| panic!("test config invalid: {:?}", e.problems()));
    let loaded = app::open(config).expect("GeoIP database opens");
    app::start(loaded).await.expect("server starts")
}

pub fn v4(running: &Running) -> SocketAddr {
    *running.dns_addrs.iter().find(|a| a.is_ipv4()).expect("an IPv4 listener")
}

pub fn v6(running: &Running) -> SocketAddr {
    *running.dns_addrs.iter().find(|a| a.is_ipv6()).expect("an IPv6 listener")
}

/// A port free for both UDP and TCP on 127.0.0.1 (bound, then released), for a `geodns serve`
/// process that must be told its port before it starts.
pub fn free_dns_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

/// Sends SIG`name` (e.g. "HUP", "STOP") to the process `pid`, which the test started.
pub fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap_or_else(|e| panic!("cannot run `kill` to send SIG{name} (install procps): {e}"));
    assert!(status.success(), "kill -{name} {pid}: {status}");
}
