//! The image: its tag is the crate version everywhere it is named (manifests, kustomize
//! `images:`, every overlay's build, the Containerfile's version label, docs), no image is
//! `latest` or untagged, the Containerfile pins its bases, and the config the image ships is the
//! example's, listening where a container can be reached.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::{check_everything, container, get, get_str, one, read_yaml_docs, rel, render, repo, walk};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// An image reference as (repository, tag, digest): `reg:5000/a/b:tag@sha256:...`.
fn split_image(image: &str) -> (&str, Option<&str>, Option<&str>) {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    // A tag follows the last ':' after the last '/' (a registry's port comes before a '/').
    let last = name.rfind('/').map_or(0, |i| i + 1);
    match name[last..].rfind(':') {
        Some(i) => (&name[..last + i], Some(&name[last + i + 1..]), digest),
        None => (name, None, digest),
    }
}

fn is_geodns(repository: &str) -> bool {
    repository == "geodns" || repository.ends_with("/geodns")
}

/// Every image has a tag or a digest, never `latest`; geodns's tag is the crate version.
fn check_image(at: &str, image: &str) {
    let (repository, tag, digest) = split_image(image);
    assert!(tag.is_some() || digest.is_some(), "{at}: image {image:?} has no tag, which means `latest`");
    assert_ne!(tag, Some("latest"), "{at}: image {image:?}");
    if is_geodns(repository) {
        assert_eq!(tag, Some(VERSION), "{at}: the geodns image {image:?} is tagged with the crate version");
    }
}

#[test]
fn image_reference_check_catches_latest_and_missing_tags() {
    assert_eq!(split_image("localhost/geodns:0.1.0"), ("localhost/geodns", Some("0.1.0"), None));
    assert_eq!(split_image("reg:5000/geodns"), ("reg:5000/geodns", None, None));
    assert_eq!(split_image("a/b:1@sha256:ff"), ("a/b", Some("1"), Some("sha256:ff")));
    check_image("t", &format!("registry.example.com:5000/geodns:{VERSION}"));
    check_image("t", "gcr.io/distroless/cc-debian12@sha256:00");
    for bad in ["localhost/geodns:latest", "localhost/geodns", "reg:5000/geodns", "geodns:0.0.0-old", "debian:latest"] {
        assert!(std::panic::catch_unwind(|| check_image("t", bad)).is_err(), "{bad} should be rejected");
    }
}

/// The manifests as written, the kustomize `images:` pins, and every overlay as built.
#[test]
fn deploy_pins_the_image_to_the_crate_version() {
    let found = check_everything();
    assert!(!found.images.is_empty(), "no image in deploy/");
    for (at, image) in &found.images {
        check_image(at, image);
    }
    let d = one(&found.deployments, "Deployment");
    assert_eq!(container(d).image.as_deref(), Some(format!("localhost/geodns:{VERSION}").as_str()));

    for dir in &found.kustomizations {
        let file = dir.join("kustomization.yaml");
        for doc in read_yaml_docs(&file) {
            for entry in get(&doc.value, "images").and_then(|v| v.as_sequence()).into_iter().flatten() {
                let at = rel(&file);
                let name = get_str(entry, "newName").or(get_str(entry, "name")).unwrap_or("");
                let tag = get_str(entry, "newTag");
                assert!(tag.is_some() || get_str(entry, "digest").is_some(), "{at}: images entry {name:?} pins no tag");
                assert_ne!(tag, Some("latest"), "{at}: images entry {name:?}");
                if is_geodns(name) {
                    assert_eq!(tag, Some(VERSION), "{at}: {name} is pinned to the crate version");
                }
            }
        }
        let mut built = Vec::new();
        for doc in render(dir) {
            crate::collect_images(&rel(dir), &doc, &mut built);
        }
        assert!(!built.is_empty(), "{}: the build runs no image", rel(dir));
        for (at, image) in &built {
            check_image(&format!("{at} (built)"), image);
        }
    }
    let base = found.kustomizations.iter().find(|d| d.ends_with("deploy/base")).expect("deploy/base");
    let text = std::fs::read_to_string(base.join("kustomization.yaml")).unwrap();
    assert!(text.contains(&format!("newTag: \"{VERSION}\"")), "deploy/base pins the image with kustomize `images:`");
}

/// The Containerfile's bases are pinned (a tag that is not `latest`, or a digest), and its
/// version label is the crate version.
#[test]
fn containerfile_pins_its_bases_and_labels_the_crate_version() {
    let text = std::fs::read_to_string(repo().join("Containerfile")).unwrap();
    let mut stages = Vec::new();
    let mut bases = 0;
    for line in text.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("FROM ") else { continue };
        let words: Vec<&str> = rest.split_whitespace().filter(|w| !w.starts_with("--")).collect();
        let image = words[0];
        if image != "scratch" && !stages.contains(&image) {
            check_image("Containerfile", image);
            assert!(image.contains('/'), "Containerfile: {image:?}: name the registry (podman needs it)");
            bases += 1;
        }
        if let [_, r#as, stage] = words[..]
            && r#as.eq_ignore_ascii_case("as")
        {
            stages.push(stage);
        }
    }
    assert!(bases >= 2, "Containerfile: a builder and a runtime base");
    assert!(
        text.contains(&format!("org.opencontainers.image.version=\"{VERSION}\"")),
        "Containerfile: the version label is the crate version"
    );
    assert!(text.contains("USER 65532:65532"), "Containerfile: runs as nonroot");
}

/// Files that talk about the image: no `<name>:latest`, and any `.../geodns:<version>` written
/// out is the crate version.
#[test]
fn no_latest_tag_and_no_other_geodns_version_anywhere() {
    let mut files: Vec<PathBuf> =
        ["Containerfile", "README.md", ".ci/run"].into_iter().map(|f| repo().join(f)).collect();
    for dir in ["deploy", "docs", "scripts"] {
        walk(&repo().join(dir), &mut files);
    }
    let token = |c: char| c.is_ascii_alphanumeric() || "._/-".contains(c);
    let mut problems = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        for (i, _) in text.match_indices(":latest") {
            let before = text[..i].chars().next_back().is_some_and(token);
            let after = text[i + 7..].chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
            if before && !after {
                problems.push(format!("{}: an image tagged latest: {:?}", rel(file), line_at(&text, i)));
            }
        }
        for (i, _) in text.match_indices("geodns:") {
            let tag: String = text[i + 7..].chars().take_while(|&c| token(c) && c != '/').collect();
            if tag.starts_with(|c: char| c.is_ascii_digit()) && tag.trim_end_matches('.') != VERSION {
                problems.push(format!("{}: geodns:{tag}, not the crate version {VERSION}", rel(file)));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

fn line_at(text: &str, i: usize) -> &str {
    let start = text[..i].rfind('\n').map_or(0, |s| s + 1);
    let end = text[i..].find('\n').map_or(text.len(), |e| i + e);
    text[start..end].trim()
}

/// The config the image ships is the README's example, listening on every address of the
/// container (port 53 and the admin port), with the GeoIP database where the image puts it;
/// both image builds copy it and the database there.
#[test]
fn the_image_ships_the_example_config_listening_everywhere() {
    let load = |f: &str| geodns::config::load(&repo().join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    let example = load("config/example.yaml");
    let container = load("config/container.yaml");
    let same = |c: &geodns::config::Config| {
        format!("{:?}", (&c.sites, &c.client_networks, &c.health_checks, &c.zones, &c.kubernetes))
    };
    assert_eq!(
        same(&container),
        same(&example),
        "config/container.yaml is config/example.yaml but for server and geoip"
    );
    let listen = &container.server.dns_listen;
    assert!(listen.iter().all(|a| a.ip().is_unspecified() && a.port() == 53), "dns_listen: {listen:?}");
    assert!(listen.iter().any(SocketAddr::is_ipv4) && listen.iter().any(SocketAddr::is_ipv6), "both families");
    assert_eq!(container.server.admin_listen, Some("0.0.0.0:9153".parse().unwrap()));
    let database = Path::new("/usr/share/geodns/geo-whois-asn-country.mmdb");
    assert_eq!(container.geoip.as_deref(), Some(database));

    let containerfile = std::fs::read_to_string(repo().join("Containerfile")).unwrap();
    assert!(containerfile.contains("COPY config/container.yaml /etc/geodns/config.yaml"));
    assert!(
        containerfile.contains("geoip/geo-whois-asn-country.mmdb") && containerfile.contains(" /usr/share/geodns/")
    );
    let script = std::fs::read_to_string(repo().join("scripts/build-image.sh")).unwrap();
    assert!(script.contains("config/container.yaml \"$root/etc/geodns/config.yaml\""));
    assert!(script.contains("\"$root/usr/share/geodns/$f\"") && script.contains("geo-whois-asn-country.mmdb"));
}
