//! `tsig_keys` and `zones.<zone>.updates`: keys with a known algorithm and a secret, zones whose
//! rules name known keys, globs and types that can be updated.

use std::path::Path;

use base64::Engine;

use super::super::wire;
use super::*;
use crate::model::RType;

/// The `tsig_keys` section.
pub(super) fn tsig_keys(
    v: &mut V,
    path: &P,
    file: &IndexMap<String, wire::TsigKey>,
    base: &Path,
) -> Vec<TsigKeyConfig> {
    let mut keys = Vec::new();
    for (name, key) in file {
        let p = path.key(name);
        let Some(key_name) = v.name(&p, name, &Name::root()) else { continue };
        let algorithm =
            TsigAlgorithm::NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(&key.algorithm)).map(|(_, a)| *a);
        if algorithm.is_none() {
            v.err(&p.key("algorithm"), format!("{:?} is not one of hmac-sha256, hmac-sha512", key.algorithm));
        }
        let secret = match (&key.secret, &key.secret_file) {
            (Some(text), None) => match decode_secret(text) {
                Ok(bytes) => Some(TsigSecret::Inline(bytes)),
                Err(e) => {
                    v.err(&p.key("secret"), e);
                    None
                }
            },
            (None, Some(file)) => Some(TsigSecret::File(base.join(file))),
            (Some(_), Some(_)) => {
                v.err(&p, "set one of secret and secret_file, not both");
                None
            }
            (None, None) => {
                v.err(&p, "a secret is required (secret: BASE64, or secret_file: PATH)");
                None
            }
        };
        if let (Some(algorithm), Some(secret)) = (algorithm, secret) {
            keys.push(TsigKeyConfig { name: key_name, algorithm, secret });
        }
    }
    keys
}

/// Decodes a base64 secret (as `tsig-keygen` and `keymgr` print them); also used by the load
/// step for `secret_file`.
pub fn decode_secret(text: &str) -> Result<Vec<u8>, String> {
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|e| format!("not base64: {e}"))?;
    if bytes.len() < 16 {
        return Err(format!("a {}-byte secret is too short (at least 16 bytes)", bytes.len()));
    }
    Ok(bytes)
}

/// `zones.<zone>.updates`.
pub(super) fn updates(
    v: &mut V,
    path: &P,
    u: &wire::Updates,
    keys: &IndexMap<String, wire::TsigKey>,
    kubernetes: Option<&wire::Kubernetes>,
    base: &Path,
) -> Option<UpdatesConfig> {
    let store = match (&u.journal, &u.kubernetes) {
        (Some(j), None) if !j.is_empty() => Some(UpdateStore::Journal(base.join(j))),
        (Some(_), None) => {
            v.err(&path.key("journal"), "must not be empty");
            None
        }
        (None, Some(k)) => configmap(v, &path.key("kubernetes"), k, kubernetes).map(UpdateStore::ConfigMap),
        (Some(_), Some(_)) => {
            v.err(path, "set one of journal (a file) and kubernetes (a ConfigMap), not both");
            None
        }
        (None, None) => {
            v.err(
                path,
                "a store is required: journal: FILE, or kubernetes: { cluster, namespace, configmap } (applied updates are kept there)",
            );
            None
        }
    };
    let mut allow = Vec::new();
    if u.allow.is_empty() {
        v.err(&path.key("allow"), "at least one rule is required (which key may change which names)");
    }
    for (i, rule) in u.allow.iter().enumerate() {
        let p = path.key("allow").idx(i);
        let wanted = Name::parse_absolute(&rule.key).ok();
        if !keys.keys().any(|k| Name::parse_absolute(k).ok() == wanted) {
            v.err(&p.key("key"), format!("unknown TSIG key {:?} (define it under tsig_keys)", rule.key));
        }
        let key = v.name(&p.key("key"), &rule.key, &Name::root());
        if rule.names.is_empty() {
            v.err(&p.key("names"), "at least one name glob is required (for example \"_acme-challenge.*\")");
        }
        let mut names = Vec::new();
        for (j, g) in rule.names.iter().enumerate() {
            let g = g.trim_end_matches('.').to_ascii_lowercase();
            if g.is_empty() || !g.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.*@".contains(&b)) {
                v.err(
                    &p.key("names").idx(j),
                    format!("{g:?} is not a name glob (letters, digits, '-', '_', '.', '*')"),
                );
            }
            names.push(g);
        }
        let mut types = Vec::new();
        for (j, t) in rule.types.as_deref().unwrap_or(&["TXT".to_owned()]).iter().enumerate() {
            match RType::CONFIGURABLE.iter().find(|(n, _)| n.eq_ignore_ascii_case(t)) {
                Some((_, rt)) => types.push(*rt),
                None => v.err(
                    &p.key("types").idx(j),
                    format!("{t:?} cannot be updated (one of A, AAAA, CNAME, TXT, MX, SRV, CAA)"),
                ),
            }
        }
        if let Some(key) = key {
            allow.push(UpdateRule { key, names, types });
        }
    }
    Some(UpdatesConfig { store: store?, allow })
}

/// `zones.<zone>.updates.kubernetes`: a configured cluster, and names the API accepts.
fn configmap(
    v: &mut V,
    path: &P,
    k: &wire::UpdatesKubernetes,
    kubernetes: Option<&wire::Kubernetes>,
) -> Option<ConfigMapRef> {
    let clusters: Vec<&str> =
        kubernetes.map(|k| k.clusters.iter().map(|c| c.name.as_str()).collect()).unwrap_or_default();
    let mut ok = true;
    if !clusters.contains(&k.cluster.as_str()) {
        ok = false;
        if clusters.is_empty() {
            v.err(&path.key("cluster"), format!("unknown cluster {:?} (there is no kubernetes section)", k.cluster));
        } else {
            v.err(
                &path.key("cluster"),
                format!("unknown cluster {:?} (kubernetes.clusters: {})", k.cluster, clusters.join(", ")),
            );
        }
    }
    // RFC 1123: a namespace is a label, a ConfigMap's name a subdomain.
    let label = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    if !label(&k.namespace) {
        ok = false;
        v.err(
            &path.key("namespace"),
            format!("{:?} is not a namespace name (lower-case letters, digits, '-', at most 63)", k.namespace),
        );
    }
    if k.configmap.is_empty() || k.configmap.len() > 253 || !k.configmap.split('.').all(label) {
        ok = false;
        v.err(
            &path.key("configmap"),
            format!("{:?} is not a ConfigMap name (lower-case letters, digits, '-' and '.', at most 253)", k.configmap),
        );
    }
    ok.then(|| ConfigMapRef { cluster: k.cluster.clone(), namespace: k.namespace.clone(), name: k.configmap.clone() })
}
