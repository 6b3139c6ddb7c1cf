//! The crate's layering, checked on its sources: what each layer may import, and that the
//! routing core stays pure (no threads, logging, clocks, files, sockets or memory mapping).
//! Comments are skipped; everything else in a file counts, its tests included.

use std::path::{Path, PathBuf};

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn src(layer: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(layer)
}

/// Whether `code` holds `needle`; a module of ours (`crate::dns`) as a whole path segment:
/// it is in `crate::dns::x` and `crate::dns;`, not in `crate::dnssec`.
fn contains_path(code: &str, needle: &str) -> bool {
    if !needle.starts_with("crate::") {
        return code.contains(needle);
    }
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    code.match_indices(needle).any(|(at, _)| !code[at + needle.len()..].starts_with(ident))
}

/// Every (file, line number, line) of `layer` outside comments that contains one of `needles`.
fn offending(layer: &str, needles: &[&str]) -> Vec<String> {
    let dir = src(layer);
    let files = if dir.is_dir() { sources(&dir) } else { vec![dir.with_extension("rs")] };
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for needle in needles {
                if contains_path(code, needle) {
                    let at = file.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(&file).display().to_string();
                    out.push(format!("{at}:{}: `{needle}` in {}", n + 1, line.trim()));
                }
            }
        }
    }
    out
}

#[test]
fn routing_spawns_no_thread_logs_nothing_and_maps_no_memory() {
    let forbidden = [
        // threads, waiting and clocks
        "thread::",
        "std::thread",
        "tokio",
        "sleep(",
        "Instant::now",
        "SystemTime::now",
        // logging and printing
        "tracing",
        "log::",
        "println!",
        "eprintln!",
        // files, sockets, memory mapping, the OS
        "std::fs",
        "std::net::Udp",
        "std::net::Tcp",
        "memmap",
        "mmap",
        "madvise",
        "libc",
        "unsafe",
        // foreign protocol crates: translated at the edges
        "hickory_",
        "kube::",
        "k8s_openapi",
        "reqwest::",
        "maxminddb::",
    ];
    let found = offending("routing", &forbidden);
    assert!(found.is_empty(), "routing/ must stay pure:\n{}", found.join("\n"));
}

#[test]
fn each_layer_imports_only_what_it_may() {
    // (layer, modules of ours it must not name)
    let rules: [(&str, &[&str]); 7] = [
        (
            "model",
            &[
                "crate::config",
                "crate::geoip",
                "crate::routing",
                "crate::sources",
                "crate::dns",
                "crate::admin",
                "crate::app",
                "crate::check",
                "crate::load",
            ],
        ),
        (
            "config",
            &[
                "crate::geoip",
                "crate::routing",
                "crate::sources",
                "crate::dns",
                "crate::admin",
                "crate::app",
                "crate::check",
                "crate::load",
            ],
        ),
        (
            "geoip",
            &[
                "crate::config",
                "crate::routing",
                "crate::sources",
                "crate::dns",
                "crate::admin",
                "crate::app",
                "crate::check",
                "crate::load",
            ],
        ),
        (
            "routing",
            &[
                "crate::geoip",
                "crate::sources",
                "crate::dns",
                "crate::admin",
                "crate::app",
                "crate::check",
                "crate::load",
            ],
        ),
        ("sources", &["crate::routing", "crate::dns", "crate::admin", "crate::app", "crate::check", "crate::load"]),
        ("dns", &["crate::sources", "crate::admin", "crate::app", "crate::check", "crate::load"]),
        ("check", &["crate::app"]),
    ];
    let mut found = Vec::new();
    for (layer, banned) in rules {
        found.extend(offending(layer, banned));
    }
    found.extend(offending("load", &["crate::app", "crate::check", "crate::dns", "crate::sources", "crate::admin"]));
    found.extend(offending("admin", &["crate::sources", "crate::dns", "crate::app", "crate::check", "crate::load"]));
    // Signing reads tables and config; the query path and the composition roots are not its.
    found.extend(offending(
        "dnssec",
        &["crate::dns", "crate::sources", "crate::admin", "crate::app", "crate::check", "crate::load", "crate::geoip"],
    ));
    assert!(found.is_empty(), "layering broken:\n{}", found.join("\n"));
}
