//! `--log-format json` (and `GEODNS_LOG_FORMAT=json`): the real `geodns serve` writes one JSON
//! object a line, with the fields log pipelines index; the default stays text.
//!
//! The server is given a DNS port this test holds, so it logs its config load and exits 1
//! saying the port is in use: every line it writes is read, and no process is left behind.

use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};

/// A port held for both UDP and TCP on 127.0.0.1 while the sockets live.
fn held_port() -> (UdpSocket, TcpListener, u16) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)) {
            return (udp, tcp, port);
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

/// Runs `geodns [args] serve` on a config whose DNS port is taken; returns its exit code and
/// stderr.
fn serve_on_taken_port(dir: &Path, args: &[&str], env: Option<&str>) -> (Option<i32>, String) {
    let (_udp, _tcp, port) = held_port();
    let config = dir.join("geodns.yaml");
    let text = format!(
        "server: {{ dns_listen: [\"127.0.0.1:{port}\"] }}\nsites: {{ london: {{ location: [51.51, -0.13] }} }}\n\
         zones:\n  geo.example.:\n    soa: {{ mname: ns1, rname: hostmaster, serial: 1 }}\n    ns: [ns1]\n\
         \x20   records: {{ ns1: {{ A: [127.0.0.1] }} }}\n"
    );
    std::fs::write(&config, text).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_geodns"));
    cmd.args(args).arg("serve").arg("--config").arg(&config);
    cmd.env_remove("RUST_LOG").env_remove("GEODNS_LOG_FORMAT");
    if let Some(format) = env {
        cmd.env("GEODNS_LOG_FORMAT", format);
    }
    let out = cmd.stdin(Stdio::null()).output().expect("geodns runs");
    (out.status.code(), String::from_utf8(out.stderr).expect("stderr is UTF-8"))
}

/// The JSON log line whose message is `message`, checked for the fields every line has.
fn json_line(stderr: &str, message: &str) -> serde_json::Value {
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty(), "no JSON lines in:\n{stderr}");
    for line in &lines {
        for field in ["timestamp", "level", "target", "message"] {
            assert!(line[field].is_string(), "{field} missing in {line}");
        }
    }
    lines.into_iter().find(|l| l["message"] == message).unwrap_or_else(|| panic!("no {message:?} line in:\n{stderr}"))
}

#[test]
fn json_log_lines_carry_level_target_message_and_fields() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = serve_on_taken_port(dir.path(), &["--log-format", "json"], None);
    assert_eq!(code, Some(1), "the port is taken:\n{stderr}");
    let loaded = json_line(&stderr, "config loaded");
    assert_eq!(loaded["level"], "INFO");
    assert_eq!(loaded["target"], "geodns::app");
    assert_eq!(loaded["zones"], 1, "the event's fields are at the top level: {loaded}");
    assert!(loaded["config"].as_str().unwrap().ends_with("geodns.yaml"));
    assert!(loaded["timestamp"].as_str().unwrap().contains('T'), "an RFC 3339 time: {loaded}");
    // Every line the server wrote through its log is JSON; the final error is the exit message.
    let last = stderr.lines().last().unwrap();
    assert!(last.starts_with("geodns: ") && last.contains("in use"), "{last}");
    assert!(stderr.lines().filter(|l| !l.starts_with("geodns: ")).all(|l| l.starts_with('{')), "{stderr}");
}

#[test]
fn the_environment_chooses_json_and_the_default_is_text() {
    let dir = tempfile::tempdir().unwrap();
    let (_, stderr) = serve_on_taken_port(dir.path(), &[], Some("json"));
    assert_eq!(json_line(&stderr, "config loaded")["level"], "INFO");

    let (_, stderr) = serve_on_taken_port(dir.path(), &[], None);
    let line = stderr.lines().find(|l| l.contains("config loaded")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(!line.starts_with('{') && line.contains("INFO"), "text by default: {line}");

    // A flag beats the environment; an unknown format is a usage error.
    let (_, stderr) = serve_on_taken_port(dir.path(), &["--log-format", "text"], Some("json"));
    assert!(stderr.lines().any(|l| l.contains("config loaded") && !l.starts_with('{')), "{stderr}");
    let (code, stderr) = serve_on_taken_port(dir.path(), &["--log-format", "xml"], None);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("xml"), "{stderr}");
}
