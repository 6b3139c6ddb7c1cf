//! Routing test files: cases of (client, name, type, sites down) -> expected site(s),
//! addresses, rcode, scope, rule or TTL; run against the config offline or a live server.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::explain::Client;
use crate::model::{Name, RType};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    cases: Vec<CaseWire>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseWire {
    #[serde(default)]
    name: Option<String>,
    client: String,
    query: String,
    #[serde(default, rename = "type")]
    rtype: Option<String>,
    #[serde(default)]
    down: Vec<String>,
    expect: Expect,
}

/// What a case expects; every key is optional, at least one is required.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The first site answered from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Exactly these sites, in this order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sites: Option<Vec<String>>,
    /// Exactly these addresses (in any order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<IpAddr>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Case {
    pub label: String,
    pub client: Client,
    pub name: Name,
    pub rtype: RType,
    pub down: Vec<String>,
    pub expect: Expect,
}

/// What a run observed for one case.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Observed {
    pub rcode: String,
    pub addresses: Vec<IpAddr>,
    /// Sites answered from (offline: the decision; live: mapped back from the addresses).
    pub sites: Option<Vec<String>>,
    pub scope: Option<u8>,
    pub rule: Option<String>,
    pub ttl: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct Outcome {
    pub case: String,
    /// "pass", "fail" or "skip".
    pub result: &'static str,
    pub problems: Vec<String>,
    pub observed: Option<Observed>,
}

/// Reads a test file; every problem in it is reported with the case it is in.
pub fn load(path: &Path) -> Result<Vec<Case>, Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("cannot read {path:?}: {e}")])?;
    let de = serde_yaml_ng::Deserializer::from_str(&text);
    let file: File =
        serde_path_to_error::deserialize(de).map_err(|e| vec![format!("{path:?}: {}: {}", e.path(), e.inner())])?;
    let mut problems = Vec::new();
    let mut cases = Vec::new();
    for (i, c) in file.cases.into_iter().enumerate() {
        let label = c
            .name
            .clone()
            .unwrap_or_else(|| format!("{} {} from {}", c.query, c.rtype.as_deref().unwrap_or("A"), c.client));
        let at = format!("cases[{i}] ({label})");
        let client = Client::parse(&c.client).map_err(|e| problems.push(format!("{at}.client: {e}"))).ok();
        let name = Name::parse_absolute(&c.query).map_err(|e| problems.push(format!("{at}.query: {e}"))).ok();
        let rtype = match &c.rtype {
            None => Some(RType::A),
            Some(t) => RType::parse(t).or_else(|| {
                problems.push(format!("{at}.type: unknown record type {t:?}"));
                None
            }),
        };
        let e = &c.expect;
        if e.site.is_none()
            && e.sites.is_none()
            && e.addresses.is_none()
            && e.rcode.is_none()
            && e.scope.is_none()
            && e.rule.is_none()
            && e.ttl.is_none()
        {
            problems
                .push(format!("{at}.expect: expect at least one of site, sites, addresses, rcode, scope, rule, ttl"));
        }
        if let (Some(client), Some(name), Some(rtype)) = (client, name, rtype) {
            cases.push(Case { label, client, name, rtype, down: c.down, expect: c.expect });
        }
    }
    if cases.is_empty() && problems.is_empty() {
        problems.push(format!("{path:?}: no cases"));
    }
    if problems.is_empty() { Ok(cases) } else { Err(problems) }
}

/// Compares what was observed with what the case expects; returns every mismatch.
pub fn compare(expect: &Expect, got: &Observed) -> Vec<String> {
    let mut problems = Vec::new();
    let sites = got.sites.clone().unwrap_or_default();
    if let Some(site) = &expect.site
        && sites.first() != Some(site)
    {
        problems.push(format!("expected site {site}, got {}", list_or_none(&sites)));
    }
    if let Some(want) = &expect.sites
        && *want != sites
    {
        problems.push(format!("expected sites {}, got {}", list_or_none(want), list_or_none(&sites)));
    }
    if let Some(want) = &expect.addresses {
        let (w, g): (BTreeSet<_>, BTreeSet<_>) = (want.iter().collect(), got.addresses.iter().collect());
        if w != g {
            problems.push(format!("expected addresses {}, got {}", list_or_none(want), list_or_none(&got.addresses)));
        }
    }
    if let Some(rcode) = &expect.rcode
        && !rcode.eq_ignore_ascii_case(&got.rcode)
    {
        problems.push(format!("expected rcode {}, got {}", rcode.to_ascii_uppercase(), got.rcode));
    }
    if let Some(scope) = expect.scope
        && got.scope != Some(scope)
    {
        problems.push(format!(
            "expected ECS scope /{scope}, got {}",
            got.scope.map_or("none".to_owned(), |s| format!("/{s}"))
        ));
    }
    if let Some(rule) = &expect.rule
        && got.rule.as_deref() != Some(rule.as_str())
    {
        problems.push(format!("expected rule {rule}, got {}", got.rule.as_deref().unwrap_or("none")));
    }
    if let Some(ttl) = expect.ttl
        && got.ttl != Some(ttl)
    {
        problems.push(format!("expected TTL {ttl}, got {}", got.ttl.map_or("none".to_owned(), |t| t.to_string())));
    }
    problems
}

fn list_or_none<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }
}

/// One line per case and the closing count line.
pub fn render(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    for o in outcomes {
        let tag = match o.result {
            "pass" => "PASS",
            "skip" => "SKIP",
            _ => "FAIL",
        };
        out.push_str(&format!("{tag}  {}", o.case));
        if !o.problems.is_empty() {
            out.push_str(&format!(": {}", o.problems.join("; ")));
        }
        out.push('\n');
    }
    out.push_str(&summary_line(outcomes));
    out.push('\n');
    out
}

pub fn summary_line(outcomes: &[Outcome]) -> String {
    let count = |r| outcomes.iter().filter(|o| o.result == r).count();
    let skipped = count("skip");
    let mut line = format!("{} passed, {} failed", count("pass"), count("fail"));
    if skipped > 0 {
        line.push_str(&format!(", {skipped} skipped"));
    }
    line
}
