//! `geodns check --server ADDR --config FILE --dnssec`: validates what a live server returns
//! for every signed zone of the config, as a validating resolver would. The trust comes from
//! DS (or DNSKEY) records given in a file, the DS at the parent, or else from the DS of the
//! keys the config names. The apex DNSKEY RRset must be signed by a trusted key; then every
//! RRset the config's table can answer with, each test case's answer and a NXDOMAIN and a
//! NODATA probe are asked with DO and their RRSIGs and NSEC proofs verified
//! (`dnssec::verify`). Signatures expiring within the warning window and DS records that match
//! no published key are warnings; anything that would not validate is an error.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use ipnet::IpNet;
use serde::Serialize;

use crate::dns::client::{self as live, SignedReply};
use crate::dnssec::sign::{CDNSKEY, CDS, DNSKEY, RRSIG};
use crate::dnssec::verify::{self, Anchor, Dnskey, Ds, Record, Rrsig, type_name};
use crate::load::Loaded;
use crate::model::{Name, RType};
use crate::routing::Inputs;

/// Queries in flight at once.
const PARALLEL: usize = 8;
/// A label no zone is expected to hold: the NXDOMAIN probe asks for it.
const NX_LABEL: &str = "geodns-check-nxdomain";

/// Where and when the questions are asked.
#[derive(Debug, Clone, Copy)]
struct Asking {
    server: std::net::SocketAddr,
    timeout: Duration,
    /// Seconds since the epoch: signatures must be valid then.
    now: u64,
}

/// A signed zone's names: its apex and below, except the names of other zones of the config
/// below it (a child zone served by the same server is signed by its own keys).
#[derive(Debug, Clone)]
struct Scope {
    apex: Name,
    inner: Vec<Name>,
}

impl Scope {
    fn holds(&self, name: &Name) -> bool {
        name.is_in(&self.apex) && !self.inner.iter().any(|i| name.is_in(i))
    }
}

/// What `--dnssec` was given.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// DS and DNSKEY records to trust (`--trust-anchor`); default: the DS of the config's keys.
    pub trust_anchor: Option<PathBuf>,
    /// Warn about signatures expiring within this (`--warn-expiry`); default: half the zone's
    /// `refresh`.
    pub warn_expiry: Option<Duration>,
}

/// A question to put to the server with DO set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Probe {
    pub name: Name,
    pub rtype: u16,
    pub subnet: Option<IpNet>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub zones: Vec<ZoneReport>,
    /// Lines not about one zone (trust anchors for zones the config does not sign).
    pub notes: Vec<Line>,
    pub errors: usize,
    pub warnings: usize,
}

#[derive(Debug, Serialize)]
pub struct ZoneReport {
    pub zone: String,
    /// Where the trust comes from.
    pub trust: String,
    pub lines: Vec<Line>,
    pub rrsets_verified: usize,
    pub denials_proven: usize,
    /// The earliest time (seconds since the epoch) at which a verified RRset has no valid
    /// signature left.
    pub earliest_expiry: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Line {
    /// "ok", "warn" or "fail".
    pub level: &'static str,
    pub text: String,
}

impl Line {
    fn ok(text: String) -> Line {
        Line { level: "ok", text }
    }
    fn warn(text: String) -> Line {
        Line { level: "warn", text }
    }
    fn fail(text: String) -> Line {
        Line { level: "fail", text }
    }
}

/// Reads a trust anchor file; every bad line is reported with the file and its number.
pub fn read_anchors(path: &Path) -> Result<Vec<Anchor>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let anchors = verify::parse_anchors(&text).map_err(|problems| {
        problems.iter().map(|p| format!("{}: {p}", path.display())).collect::<Vec<_>>().join("\n  ")
    })?;
    if anchors.is_empty() {
        return Err(format!("{}: no DS or DNSKEY record", path.display()));
    }
    Ok(anchors)
}

/// Checks every signed zone of `loaded` on `server`; `extra` are probes from test cases or the
/// name asked, checked in the zone that holds them. `anchors` are those of `--trust-anchor`.
pub async fn check(
    server: std::net::SocketAddr,
    loaded: &Loaded,
    anchors: Option<&[Anchor]>,
    options: &Options,
    extra: &[Probe],
    timeout: Duration,
    now: u64,
) -> Report {
    let mut report = Report { zones: Vec::new(), notes: Vec::new(), errors: 0, warnings: 0 };
    let source = options.trust_anchor.as_ref().map(|p| p.display().to_string());
    if let (Some(anchors), Some(file)) = (anchors, &source) {
        for owner in anchors.iter().map(Anchor::owner).collect::<BTreeSet<_>>() {
            if !loaded.keys.iter().any(|z| z.apex == *owner) {
                report
                    .notes
                    .push(Line::warn(format!("{file} holds records for {owner}, not a signed zone of the config")));
            }
        }
    }
    let table = loaded.build_settled(Inputs::default(), 0);
    let ask = Asking { server, timeout, now };
    for zone in loaded.keys.iter() {
        let trust: Vec<Anchor> = match anchors {
            Some(a) => a.iter().filter(|a| *a.owner() == zone.apex).cloned().collect(),
            // The DS `geodns dnssec ds` prints: of the keys that sign the DNSKEY RRset.
            None => zone
                .keys
                .iter()
                .filter(|k| k.role.signs_keys())
                .map(|k| Anchor::Ds(zone.apex.clone(), Ds::parse(&k.ds(&zone.apex)).expect("a DS we made parses")))
                .collect(),
        };
        let described = match &source {
            Some(file) => format!("{} record(s) from {file}", trust.len()),
            None => "the DS of the config's keys".to_owned(),
        };
        let warn_within = options.warn_expiry.unwrap_or(zone.lifetimes.refresh / 2);
        let mut z = ZoneReport {
            zone: zone.apex.to_string(),
            trust: described,
            lines: Vec::new(),
            rrsets_verified: 0,
            denials_proven: 0,
            earliest_expiry: None,
        };
        let inner =
            loaded.config.zones.iter().map(|c| c.apex.clone()).filter(|a| *a != zone.apex && a.is_in(&zone.apex));
        let scope = Scope { apex: zone.apex.clone(), inner: inner.collect() };
        let probes = probes(&table, &scope, extra);
        check_zone(ask, &scope, &trust, &probes, warn_within, &mut z).await;
        report.errors += z.lines.iter().filter(|l| l.level == "fail").count();
        report.warnings += z.lines.iter().filter(|l| l.level == "warn").count();
        report.zones.push(z);
    }
    report.warnings += report.notes.len();
    report
}

/// The questions for the zone `apex`: every RRset of the table's zone (geo names from this
/// machine's address; A at each CNAME too), CDS and CDNSKEY, each empty non-terminal, a name that does not exist,
/// a type the apex does not have, and the `extra` probes in the zone.
fn probes(table: &crate::routing::Built, scope: &Scope, extra: &[Probe]) -> Vec<Probe> {
    let apex = &scope.apex;
    let mut out = BTreeSet::new();
    let probe = |name: &Name, rtype: u16| Probe { name: name.clone(), rtype, subnet: None };
    out.insert(probe(apex, CDS));
    out.insert(probe(apex, CDNSKEY));
    if let Some(content) = table.table().zone_content(apex, None) {
        for set in &content.plain {
            out.insert(probe(&set.owner, set.rtype));
            // An address query at a CNAME: the alias and its target's answer.
            if set.rtype == RType::Cname.code() {
                out.insert(probe(&set.owner, RType::A.code()));
            }
        }
        for g in &content.geo {
            out.insert(probe(&g.owner, g.rtype));
        }
        for (name, types) in &content.names {
            if types.is_empty() {
                out.insert(probe(name, RType::A.code()));
            }
            if name == apex {
                let missing = [RType::Mx, RType::Txt, RType::Srv, RType::Caa, RType::Aaaa, RType::A]
                    .into_iter()
                    .find(|t| !types.contains(&t.code()));
                if let Some(t) = missing {
                    out.insert(probe(apex, t.code()));
                }
            }
        }
        let mut nx = Name::from_ascii_lossy(&format!("{NX_LABEL}.{apex}"));
        let mut i = 0;
        while content.names.iter().any(|(n, _)| *n == nx) {
            i += 1;
            nx = Name::from_ascii_lossy(&format!("{NX_LABEL}-{i}.{apex}"));
        }
        out.insert(probe(&nx, RType::A.code()));
    }
    out.extend(extra.iter().filter(|p| scope.holds(&p.name)).cloned());
    out.into_iter().collect()
}

/// Checks one zone: its keys against `trust`, then the answers to `probes`; what it finds goes
/// to `z`.
async fn check_zone(
    ask: Asking,
    scope: &Scope,
    trust: &[Anchor],
    probes: &[Probe],
    warn_within: Duration,
    z: &mut ZoneReport,
) {
    let mut expiry = Expiry::default();
    let Some(keys) = trusted_keys(ask, &scope.apex, trust, z, &mut expiry).await else { return };
    let replies: Vec<Result<SignedReply, live::ClientError>> = futures::stream::iter(probes)
        .map(|p| live::query_dnssec(ask.server, p.name.as_str(), p.rtype, p.subnet, ask.timeout))
        .buffered(PARALLEL)
        .collect()
        .await;
    for (probe, reply) in probes.iter().zip(replies) {
        let line = probe_line(scope, &keys, probe, reply, ask.now, &mut expiry, z);
        z.lines.push(line);
    }
    z.earliest_expiry = expiry.earliest.as_ref().map(|e| e.0);
    if let Some((at, owner, rtype)) = &expiry.earliest {
        let left = at.saturating_sub(ask.now);
        if Duration::from_secs(left) < warn_within {
            let soon = expiry.within(ask.now, warn_within);
            z.lines.push(Line::warn(format!(
                "{soon} RRset(s) have signatures expiring within the warning window of {}: the earliest, \
                 {owner} {}, on {} ({} left); the server should re-sign them before then",
                span(warn_within.as_secs()),
                type_name(*rtype),
                super::summary::date(*at),
                span(left)
            )));
        }
    }
}

/// The zone's published DNSKEYs, when a trust anchor names one of them and one of those signs
/// the DNSKEY RRset; `None` (with the reason in `z`) when nothing in the zone can validate.
async fn trusted_keys(
    ask: Asking,
    apex: &Name,
    trust: &[Anchor],
    z: &mut ZoneReport,
    expiry: &mut Expiry,
) -> Option<Vec<Dnskey>> {
    let now = ask.now;
    if trust.is_empty() {
        z.lines.push(Line::fail(format!("no DS or DNSKEY for {apex} in {}: nothing to validate with", z.trust)));
        return None;
    }
    let reply = match live::query_dnssec(ask.server, apex.as_str(), DNSKEY, None, ask.timeout).await {
        Ok(r) => r,
        Err(e) => {
            z.lines.push(Line::fail(format!("{apex} DNSKEY: {e}")));
            return None;
        }
    };
    let dnskey_records: Vec<&Record> = reply.answers.iter().filter(|r| r.rtype == DNSKEY && r.owner == *apex).collect();
    let keys: Vec<Dnskey> = dnskey_records.iter().filter_map(|r| Dnskey::parse(&r.rdata)).collect();
    if reply.rcode != "NOERROR" || keys.is_empty() {
        z.lines.push(Line::fail(format!(
            "{apex} DNSKEY: the server publishes no DNSKEY ({}, {} records): is the zone signed?",
            reply.rcode,
            reply.answers.len()
        )));
        return None;
    }
    let published = keys.iter().map(|k| k.tag.to_string()).collect::<Vec<_>>().join(", ");
    // Which published keys the trust anchors name.
    let mut trusted: Vec<Dnskey> = Vec::new();
    for anchor in trust {
        let (what, found) = match anchor {
            Anchor::Ds(_, ds) => (ds.to_string(), keys.iter().find(|k| ds.matches(apex, k))),
            Anchor::Dnskey(_, key) => (key.to_string(), keys.iter().find(|k| k.rdata == key.rdata)),
        };
        match found {
            Some(k) => {
                z.lines.push(Line::ok(format!("{what} matches the published {k}")));
                if !trusted.contains(k) {
                    trusted.push(k.clone());
                }
            }
            None => z.lines.push(Line::warn(format!(
                "{what} matches no DNSKEY the server publishes for {apex} (keys {published})"
            ))),
        }
    }
    if trusted.is_empty() {
        z.lines.push(Line::fail(format!(
            "none of the {} trust anchor(s) matches a DNSKEY the server publishes for {apex} (keys {published}): \
             validation cannot succeed",
            trust.len()
        )));
        return None;
    }
    // The DNSKEY RRset, signed by a trusted key.
    let rrsigs: Vec<&Record> = rrsigs_for(&reply.answers, apex, DNSKEY);
    let signers: Vec<u16> = rrsigs.iter().filter_map(|s| Rrsig::parse(&s.rdata)).map(|s| s.key_tag).collect();
    let (rrsigs, others): (Vec<&Record>, Vec<&Record>) = rrsigs
        .into_iter()
        .partition(|s| Rrsig::parse(&s.rdata).is_some_and(|r| trusted.iter().any(|k| k.tag == r.key_tag)));
    let results: Vec<_> =
        rrsigs.iter().map(|s| verify::verify_rrset(apex, &dnskey_records, &s.rdata, &trusted, now)).collect();
    match results.iter().filter_map(|r| r.as_ref().ok()).max_by_key(|v| verify::seconds_until(v.expiration, now)) {
        Some(v) => {
            z.rrsets_verified += 1;
            expiry.note(apex, DNSKEY, v.expiration, now);
            z.lines.push(Line::ok(format!(
                "{apex} DNSKEY: {} key(s) ({published}), signed by the trusted key {}",
                keys.len(),
                v.key_tag
            )));
        }
        None => {
            let why = if results.is_empty() && others.is_empty() {
                "no RRSIG".to_owned()
            } else if results.is_empty() {
                let tags: Vec<String> = signers.iter().map(ToString::to_string).collect();
                format!("no RRSIG by a trusted key (signed by {})", tags.join(", "))
            } else {
                results.iter().filter_map(|r| r.as_ref().err()).map(ToString::to_string).collect::<Vec<_>>().join("; ")
            };
            z.lines.push(Line::fail(format!("{apex} DNSKEY: not signed by a trusted key: {why}")));
            return None;
        }
    }
    Some(keys.into_iter().filter(Dnskey::is_zone_key).collect())
}

/// The report line of one question: what verified, and any error or warning.
fn probe_line(
    scope: &Scope,
    keys: &[Dnskey],
    probe: &Probe,
    reply: Result<SignedReply, live::ClientError>,
    now: u64,
    expiry: &mut Expiry,
    z: &mut ZoneReport,
) -> Line {
    let what = match probe.subnet {
        Some(net) => format!("{} {} (ECS {net})", probe.name, type_name(probe.rtype)),
        None => format!("{} {}", probe.name, type_name(probe.rtype)),
    };
    let reply = match reply {
        Ok(r) => r,
        Err(e) => return Line::fail(format!("{what}: {e}")),
    };
    let checked = check_reply(scope, keys, probe, &reply, now, expiry);
    z.rrsets_verified += checked.verified.len();
    z.denials_proven += usize::from(checked.denial.is_some());
    let mut text = format!("{what}: {}", reply.rcode);
    if !checked.verified.is_empty() {
        let _ = write!(text, ", {} verified", checked.verified.join(", "));
    }
    if let Some(d) = &checked.denial {
        let _ = write!(text, ", {d}");
    }
    if !checked.errors.is_empty() {
        Line::fail(format!("{text}; {}", checked.errors.join("; ")))
    } else if !checked.warnings.is_empty() {
        Line::warn(format!("{text}; {}", checked.warnings.join("; ")))
    } else {
        Line::ok(text)
    }
}

/// What one reply showed.
#[derive(Default)]
struct Checked {
    /// "OWNER TYPE" of each RRset verified.
    verified: Vec<String>,
    denial: Option<String>,
    errors: Vec<String>,
    warnings: Vec<String>,
}

/// The latest usable expiration of each verified RRset, to find the earliest among them.
#[derive(Default)]
struct Expiry {
    all: Vec<u64>,
    earliest: Option<(u64, Name, u16)>,
}

impl Expiry {
    fn note(&mut self, owner: &Name, rtype: u16, expiration: u32, now: u64) {
        let at = (now as i64 + verify::seconds_until(expiration, now)).max(0) as u64;
        self.all.push(at);
        if self.earliest.as_ref().is_none_or(|e| at < e.0) {
            self.earliest = Some((at, owner.clone(), rtype));
        }
    }

    /// How many RRsets expire within `window` of `now`.
    fn within(&self, now: u64, window: Duration) -> usize {
        self.all.iter().filter(|at| at.saturating_sub(now) < window.as_secs()).count()
    }
}

/// The RRSIG records among `records` at `owner` covering `rtype`.
fn rrsigs_for<'a>(records: &'a [Record], owner: &Name, rtype: u16) -> Vec<&'a Record> {
    records
        .iter()
        .filter(|r| {
            r.rtype == RRSIG && r.owner == *owner && Rrsig::parse(&r.rdata).is_some_and(|s| s.type_covered == rtype)
        })
        .collect()
}

/// Verifies every RRset of `reply` in the zone `apex` (answer and authority sections, and the
/// additional section's signed ones), and the NSEC proof of a negative answer.
fn check_reply(
    scope: &Scope,
    keys: &[Dnskey],
    probe: &Probe,
    reply: &SignedReply,
    now: u64,
    expiry: &mut Expiry,
) -> Checked {
    let mut c = Checked::default();
    if reply.rcode != "NOERROR" && reply.rcode != "NXDOMAIN" {
        c.errors.push(format!("the server answered {}", reply.rcode));
        return c;
    }
    for (section, records, required) in [
        ("answer", &reply.answers, true),
        ("authority", &reply.authority, true),
        ("additional", &reply.additional, false),
    ] {
        // RRsets by owner and type, in the order they came.
        let mut sets: BTreeMap<(Name, u16), Vec<&Record>> = BTreeMap::new();
        for r in records.iter().filter(|r| r.rtype != RRSIG && scope.holds(&r.owner)) {
            sets.entry((r.owner.clone(), r.rtype)).or_default().push(r);
        }
        for ((owner, rtype), set) in &sets {
            let sigs = rrsigs_for(records, owner, *rtype);
            let label = format!("{owner} {}", type_name(*rtype));
            if sigs.is_empty() {
                if required {
                    c.errors.push(format!("{label} ({section}): no RRSIG"));
                }
                continue;
            }
            let results: Vec<_> =
                sigs.iter().map(|s| verify::verify_rrset(&scope.apex, set, &s.rdata, keys, now)).collect();
            let failed: Vec<String> =
                results.iter().filter_map(|r| r.as_ref().err()).map(|e| format!("{label}: {e}")).collect();
            match results
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .max_by_key(|v| verify::seconds_until(v.expiration, now))
            {
                Some(v) => {
                    expiry.note(owner, *rtype, v.expiration, now);
                    c.verified.push(if *owner == probe.name { type_name(*rtype) } else { label.clone() });
                    c.warnings.extend(failed);
                }
                None => c.errors.extend(failed),
            }
        }
    }
    // Follow the answer's CNAMEs from the name asked; a negative answer is about the last one.
    let mut target = probe.name.clone();
    for _ in 0..8 {
        let next = reply
            .answers
            .iter()
            .find(|r| r.owner == target && r.rtype == RType::Cname.code() && probe.rtype != r.rtype);
        match next.and_then(|r| verify::read_name(&r.rdata, 0)) {
            Some((name, _)) => target = name,
            None => break,
        }
    }
    let answered = reply.answers.iter().any(|r| r.owner == target && r.rtype == probe.rtype);
    if answered || !scope.holds(&target) {
        return c;
    }
    let nsecs = match verify::nsecs(&reply.authority) {
        Ok(n) => n,
        Err(e) => {
            c.errors.push(e.to_string());
            return c;
        }
    };
    let proof = if reply.rcode == "NXDOMAIN" {
        verify::prove_nxdomain(&target, &nsecs).map(|ce| format!("NXDOMAIN proven (NSEC, wildcard at {ce} denied)"))
    } else {
        verify::prove_nodata(&target, probe.rtype, &nsecs).map(|()| "NODATA proven (NSEC)".to_owned())
    };
    match proof {
        Ok(text) => c.denial = Some(text),
        Err(e) => c.errors.push(format!("{} denial of {target}: {e}", reply.rcode)),
    }
    c
}

/// "13d 23h", "5h 2m", "40s".
fn span(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// The report for people.
pub fn render(r: &Report) -> String {
    let tag = |l: &Line| match l.level {
        "ok" => "  ok     ",
        "warn" => "  WARN   ",
        _ => "  FAIL   ",
    };
    let mut out = String::new();
    for l in &r.notes {
        let _ = writeln!(out, "{}{}", tag(l), l.text);
    }
    for z in &r.zones {
        let _ = writeln!(out, "dnssec     {} (trust: {})", z.zone, z.trust);
        for l in &z.lines {
            let _ = writeln!(out, "{}{}", tag(l), l.text);
        }
        let _ = write!(
            out,
            "zone       {}: {} RRsets verified, {} denials proven",
            z.zone, z.rrsets_verified, z.denials_proven
        );
        if let Some(at) = z.earliest_expiry {
            let _ = write!(out, ", signatures valid until {} at the earliest", super::summary::date(at));
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "dnssec     {}: {} zone(s), {} error(s), {} warning(s)",
        if r.errors == 0 { "OK" } else { "FAILED" },
        r.zones.len(),
        r.errors,
        r.warnings
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::parse_absolute(s).unwrap()
    }

    #[test]
    fn a_zone_holds_its_names_but_not_a_child_zones() {
        let scope = Scope { apex: name("example."), inner: vec![name("geo.example.")] };
        assert!(scope.holds(&name("example.")));
        assert!(scope.holds(&name("www.example.")));
        assert!(!scope.holds(&name("geo.example.")));
        assert!(!scope.holds(&name("app.geo.example.")));
        assert!(!scope.holds(&name("example.net.")));
    }

    #[test]
    fn spans_read_as_days_hours_minutes() {
        assert_eq!(span(14 * 86_400 - 3600), "13d 23h");
        assert_eq!(span(5 * 3600 + 120), "5h 2m");
        assert_eq!(span(61), "1m 1s");
        assert_eq!(span(40), "40s");
    }

    #[test]
    fn the_earliest_expiry_and_how_many_are_within_the_window() {
        let mut e = Expiry::default();
        let now = 1_800_000_000;
        e.note(&name("a.example."), 1, (now + 10 * 86_400) as u32, now);
        e.note(&name("b.example."), 28, (now + 2 * 86_400) as u32, now);
        e.note(&name("c.example."), 16, (now + 3 * 86_400) as u32, now);
        assert_eq!(e.earliest, Some((now + 2 * 86_400, name("b.example."), 28)));
        assert_eq!(e.within(now, Duration::from_secs(4 * 86_400)), 2);
        assert_eq!(e.within(now, Duration::from_secs(86_400)), 0);
    }
}
