//! The `zones` section: apexes, SOA and NS, static records and geo names.

use std::path::Path;
use std::time::Duration;

use super::super::wire::{self, Scalar};
use super::*;

/// The `zones` section: each apex once, none the root, at least one zone.
pub(super) fn zones(
    v: &mut V,
    path: &P,
    file: &wire::File,
    site_ids: &HashMap<&str, SiteId>,
    base: &Path,
) -> Vec<ZoneConfig> {
    let mut zones = Vec::new();
    let mut apexes = HashSet::new();
    // Each ConfigMap stores one zone.
    let mut stores: Vec<(ConfigMapRef, Name)> = Vec::new();
    for (apex_text, z) in &file.zones {
        let path = path.key(apex_text);
        let Some(apex) = Name::parse_absolute(apex_text).map_err(|e| v.err(&path, e.to_string())).ok() else {
            continue;
        };
        if apex.is_root() {
            v.err(&path, "serving the root zone is not supported");
            continue;
        }
        if !apexes.insert(apex.clone()) {
            v.err(&path, format!("zone {apex} is defined more than once"));
            continue;
        }
        let mut zone = zone(v, &path, apex, z, site_ids, &file.health_checks, file.kubernetes.is_some());
        if let Some(d) = &z.dnssec {
            zone.dnssec = dnssec(v, &path.key("dnssec"), d, base);
            // Names are served as written: a "*" label is not a wildcard here, but validators
            // would read one in the NSEC chain as a wildcard and expect it to be expanded.
            let names = zone.records.iter().map(|n| &n.name).chain(zone.geo.iter().map(|g| &g.name));
            for name in names.filter(|n| n.as_str().split('.').any(|l| l == "*")) {
                v.err(&path.key("dnssec"), format!("{name}: a \"*\" label cannot be served in a signed zone"));
            }
        }
        if let Some(u) = &z.updates {
            zone.updates =
                super::updates::updates(v, &path.key("updates"), u, &file.tsig_keys, file.kubernetes.as_ref(), base);
            if let Some(UpdateStore::ConfigMap(cm)) = zone.updates.as_ref().map(|u| &u.store) {
                if let Some(other) = stores.iter().find(|(c, _)| c == cm).map(|(_, z)| z) {
                    v.err(&path.key("updates").key("kubernetes"), format!("the {cm} already stores zone {other}"));
                }
                stores.push((cm.clone(), zone.apex.clone()));
            }
        }
        zones.push(zone);
    }
    if zones.is_empty() && v.problems.is_empty() {
        v.err(path, "at least one zone is required");
    }
    zones
}

#[allow(clippy::too_many_arguments)]
fn zone(
    v: &mut V,
    path: &P,
    apex: Name,
    z: &wire::Zone,
    sites: &HashMap<&str, SiteId>,
    checks: &IndexMap<String, wire::HealthCheck>,
    has_kubernetes: bool,
) -> ZoneConfig {
    let ttl = v.ttl(&path.key("ttl"), z.ttl, DEFAULT_ZONE_TTL);
    let sp = path.key("soa");
    let soa = Soa {
        mname: v.name(&sp.key("mname"), &z.soa.mname, &apex).unwrap_or_else(|| apex.clone()),
        rname: v.name(&sp.key("rname"), &z.soa.rname, &apex).unwrap_or_else(|| apex.clone()),
        serial: v.u32(&sp.key("serial"), Some(z.soa.serial), 1),
        refresh: v.u32(&sp.key("refresh"), z.soa.refresh, 7200),
        retry: v.u32(&sp.key("retry"), z.soa.retry, 1800),
        expire: v.u32(&sp.key("expire"), z.soa.expire, 1_209_600),
        minimum: v.u32(&sp.key("minimum"), z.soa.minimum, 300),
    };
    let mut ns = Vec::new();
    for (i, n) in z.ns.as_slice().iter().enumerate() {
        if let Some(name) = v.name(&path.key("ns").idx(i), n, &apex) {
            ns.push(name);
        }
    }
    if z.ns.as_slice().is_empty() {
        v.err(&path.key("ns"), "at least one name server is required");
    }

    let mut owners: HashMap<Name, String> = HashMap::new();
    let mut owner = |v: &mut V, p: &P, text: &str| -> Option<Name> {
        let name = v.name(p, text, &apex)?;
        if !name.is_in(&apex) {
            v.err(p, format!("{name} is outside the zone {apex}"));
            return None;
        }
        if let Some(first) = owners.get(&name) {
            v.err(p, format!("{name} is already defined at {first}"));
            return None;
        }
        owners.insert(name.clone(), p.0.clone());
        Some(name)
    };

    let mut records = Vec::new();
    for (text, node) in &z.records {
        let p = path.key("records").key(text);
        let Some(name) = owner(v, &p, text) else { continue };
        let before = v.problems.len();
        let rdata = node_rdata(v, &p, node, &apex);
        if rdata.is_empty() {
            if v.problems.len() == before {
                v.err(&p, "no records (set at least one of A, AAAA, CNAME, TXT, MX, SRV, CAA)");
            }
            continue;
        }
        if name == apex && node.cname.is_some() {
            v.err(&p.key("CNAME"), "a CNAME cannot stand at the zone apex (it holds SOA and NS)");
        }
        records.push(StaticNode { name, ttl: v.ttl(&p.key("ttl"), node.ttl, ttl), rdata });
    }

    let mut geo = Vec::new();
    for (text, g) in &z.geo {
        let p = path.key("geo").key(text);
        let Some(name) = owner(v, &p, text) else { continue };
        if name == apex {
            v.err(&p, "the zone apex cannot be a geo name (it holds SOA and NS); use a name below it");
            continue;
        }
        let all_down = match &g.all_down {
            None => AllDown::All,
            Some(s) => AllDown::NAMES.iter().find(|(n, _)| n == s).map(|(_, a)| *a).unwrap_or_else(|| {
                v.err(&p.key("all_down"), format!("{s:?} is not one of all, first, nodata, servfail"));
                AllDown::All
            }),
        };
        let max_answers = g.max_answers.and_then(|m| {
            let n = usize::try_from(m).ok().and_then(NonZeroUsize::new);
            if n.is_none() {
                v.err(
                    &p.key("max_answers"),
                    format!("{m} must be 1 or more (leave it out for every address of the nearest site)"),
                );
            }
            n
        });
        if let Some(hc) = &g.health_check
            && !checks.contains_key(hc)
        {
            v.err(&p.key("health_check"), format!("unknown health check {hc:?}"));
        }
        let mut geo_sites = Vec::new();
        for (site_name, addrs) in g.sites.iter().flatten() {
            let sp = p.key("sites").key(site_name);
            let site = v.site(&sp, site_name, sites);
            let mut ips = Vec::new();
            for (i, a) in addrs.as_slice().iter().enumerate() {
                match a.text().parse::<IpAddr>() {
                    Ok(ip) if !ips.contains(&ip) => ips.push(ip),
                    Ok(ip) => v.err(&sp.idx(i), format!("{ip} is listed more than once")),
                    Err(_) => v.err(&sp.idx(i), format!("{:?} is not an IPv4 or IPv6 address", a.text())),
                }
            }
            if let Some(site) = site {
                geo_sites.push((site, ips));
            }
        }
        if z.dnssec.is_some() {
            let count = if geo_sites.is_empty() { sites.len() } else { geo_sites.len() };
            let sets = max_answer_sets(count as u64, max_answers.map(|n| n.get() as u64));
            if sets > MAX_SIGNED_ANSWER_SETS {
                v.err(
                    &p.key("max_answers"),
                    format!(
                        "in a signed zone every distinct answer is signed ahead: with {count} sites, max_answers {} \
                         makes up to {sets} of them, over the limit of {MAX_SIGNED_ANSWER_SETS} (lower max_answers)",
                        max_answers.map_or(0, |n| n.get())
                    ),
                );
            }
        }
        if geo_sites.is_empty() && !has_kubernetes {
            v.err(&p.key("sites"), "no sites: list each site's addresses (or configure kubernetes to supply them)");
        }
        geo.push(GeoNameConfig {
            name,
            ttl: v.ttl(&p.key("ttl"), g.ttl, ttl),
            max_answers,
            all_down,
            health_check: g.health_check.clone(),
            sites: geo_sites,
        });
    }

    ZoneConfig { apex, soa, ns, ttl, records, geo, dnssec: None, updates: None }
}

/// Default signature validity and refresh margin (docs/dnssec.md).
const DEFAULT_VALIDITY: Duration = Duration::from_secs(14 * 86_400);
const DEFAULT_REFRESH: Duration = Duration::from_secs(7 * 86_400);

/// At most this many distinct answers of one type for a geo name in a signed zone: each is
/// signed ahead of time (see `max_answer_sets`).
pub const MAX_SIGNED_ANSWER_SETS: u64 = 4096;

/// `zones.<zone>.dnssec`: the key files (read by the load step, not here), the lifetimes, and
/// that every geo name has few enough distinct answers to sign them all ahead of time.
fn dnssec(v: &mut V, path: &P, d: &wire::Dnssec, base: &Path) -> Option<DnssecConfig> {
    // Every RRset needs a signer: a CSK (`keys`), or a KSK for the key sets and a ZSK for the
    // rest. Both kinds together are a migration between the two.
    if d.keys.is_empty() && d.ksk.is_empty() && d.zsk.is_empty() {
        v.err(&path.key("keys"), "at least one key file is required (make one with `geodns dnssec keygen FILE`)");
    } else if d.keys.is_empty() && d.ksk.is_empty() {
        v.err(&path.key("ksk"), "zone-signing keys (zsk) need a key-signing key (ksk) or a combined key (keys)");
    } else if d.keys.is_empty() && d.zsk.is_empty() {
        v.err(&path.key("zsk"), "key-signing keys (ksk) need a zone-signing key (zsk) or a combined key (keys)");
    }
    let validity = v.duration(&path.key("validity"), d.validity.as_deref(), DEFAULT_VALIDITY);
    let refresh = v.duration(&path.key("refresh"), d.refresh.as_deref(), DEFAULT_REFRESH);
    if validity < Duration::from_secs(2 * 3600) {
        v.err(&path.key("validity"), "must be at least 2h (inception is backdated by 1h)");
    } else if refresh >= validity || refresh < Duration::from_secs(3600) {
        v.err(&path.key("refresh"), "must be at least 1h and less than the validity");
    }
    let files = |list: &[String]| list.iter().map(|k| base.join(k)).collect();
    Some(DnssecConfig { keys: files(&d.keys), ksk: files(&d.ksk), zsk: files(&d.zsk), validity, refresh })
}

/// An upper bound on the distinct address sets a geo name of `sites` sites can answer with
/// (one type): with `max_answers` n, the sites wholly in the answer are fewer than n (each
/// has an address), plus the one it ends in: `sites` x sum of C(sites, j) for j < n. Without
/// it, one set per site and the union of all (`all_down: all`).
pub fn max_answer_sets(sites: u64, max_answers: Option<u64>) -> u64 {
    let Some(n) = max_answers else { return sites + 1 };
    let (mut sum, mut c) = (0u64, 1u64);
    for j in 0..n.min(sites + 1) {
        sum = sum.saturating_add(c);
        c = c.saturating_mul(sites - j) / (j + 1);
    }
    sites.saturating_mul(sum).saturating_add(1)
}

fn node_rdata(v: &mut V, p: &P, node: &wire::Node, apex: &Name) -> Vec<RData> {
    let mut out = Vec::new();
    let list = |o: &Option<wire::OneOrMany<Scalar>>| -> Vec<String> {
        o.as_ref().map(|l| l.as_slice().iter().map(Scalar::text).collect()).unwrap_or_default()
    };
    for (i, a) in list(&node.a).iter().enumerate() {
        match a.parse::<Ipv4Addr>() {
            Ok(ip) => out.push(RData::A(ip)),
            Err(_) => v.err(&p.key("A").idx(i), format!("{a:?} is not an IPv4 address")),
        }
    }
    for (i, a) in list(&node.aaaa).iter().enumerate() {
        match a.parse::<Ipv6Addr>() {
            Ok(ip) => out.push(RData::Aaaa(ip)),
            Err(_) => v.err(&p.key("AAAA").idx(i), format!("{a:?} is not an IPv6 address")),
        }
    }
    for t in list(&node.txt) {
        out.push(RData::Txt(t));
    }
    for (i, m) in list(&node.mx).iter().enumerate() {
        let pp = p.key("MX").idx(i);
        match m.split_whitespace().collect::<Vec<_>>().as_slice() {
            [pref, host] => match (pref.parse(), v.name(&pp, host, apex)) {
                (Ok(preference), Some(exchange)) => out.push(RData::Mx(Mx { preference, exchange })),
                (Err(_), _) => v.err(&pp, format!("{pref:?} is not a preference 0-65535")),
                _ => {}
            },
            _ => v.err(&pp, format!("{m:?} is not \"PREFERENCE HOST\"")),
        }
    }
    for (i, s) in list(&node.srv).iter().enumerate() {
        let pp = p.key("SRV").idx(i);
        match s.split_whitespace().collect::<Vec<_>>().as_slice() {
            [prio, weight, port, target] => {
                match (prio.parse(), weight.parse(), port.parse(), v.name(&pp, target, apex)) {
                    (Ok(priority), Ok(weight), Ok(port), Some(target)) => {
                        out.push(RData::Srv(Srv { priority, weight, port, target }))
                    }
                    (_, _, _, None) => {}
                    _ => v.err(&pp, format!("{s:?}: priority, weight and port must be 0-65535")),
                }
            }
            _ => v.err(&pp, format!("{s:?} is not \"PRIORITY WEIGHT PORT TARGET\"")),
        }
    }
    for (i, c) in list(&node.caa).iter().enumerate() {
        let pp = p.key("CAA").idx(i);
        let mut parts = c.splitn(3, ' ');
        match (parts.next().map(str::parse::<u8>), parts.next(), parts.next()) {
            (Some(Ok(flags)), Some(tag), Some(value))
                if !tag.is_empty() && tag.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                out.push(RData::Caa(Caa {
                    critical: flags & 0x80 != 0,
                    tag: tag.to_ascii_lowercase(),
                    value: value.trim().trim_matches('"').to_owned(),
                }))
            }
            _ => v.err(&pp, format!("{c:?} is not \"FLAGS TAG VALUE\" (like 0 issue \"letsencrypt.org\")")),
        }
    }
    if let Some(target) = &node.cname {
        if !out.is_empty() {
            v.err(&p.key("CNAME"), "a CNAME cannot stand beside other records at the same name");
        }
        if let Some(t) = v.name(&p.key("CNAME"), target, apex) {
            out.push(RData::Cname(t));
        }
    }
    out
}
