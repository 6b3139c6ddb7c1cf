//! `geodns check`: the same load -> validate -> build path as `serve`, without sockets.
//!
//! - `--config FILE`: validate and summarise.
//! - `--config FILE NAME [TYPE] --client IP|CIDR [--down SITE]`: explain one decision.
//! - `--config FILE --tests FILE`: run routing test cases against the config.
//! - `--server ADDR NAME [TYPE] --client CIDR` / `--server ADDR --tests FILE`: the same questions
//!   put to a live server (geodns or any other) over the network, with ECS.
//! - `--server ADDR --config FILE --dnssec`: validate the signed zones' answers ([`dnssec`]),
//!   alone or with the test cases or the name asked.

mod cases;
pub mod dnssec;
mod explain;
mod summary;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use cases::{Case, Expect, Observed, Outcome};
pub use dnssec::Options as DnssecOptions;
pub use explain::{Client, Explanation, explain};

use crate::dns::client as live;
use crate::load::{self, LoadError, Loaded};
use crate::model::{Name, RType};
use crate::routing::Inputs;

/// What `geodns check` was asked.
#[derive(Debug, Clone, Default)]
pub struct Args {
    pub config: Option<PathBuf>,
    pub server: Option<SocketAddr>,
    pub tests: Option<PathBuf>,
    pub name: Option<String>,
    pub rtype: Option<String>,
    pub client: Option<String>,
    pub down: Vec<String>,
    pub json: bool,
    pub timeout: Duration,
    /// `--dnssec` and its options: validate the signed zones' answers too.
    pub dnssec: Option<DnssecOptions>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The config or GeoIP database is unreadable or invalid.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The command line asks for something inconsistent.
    #[error("{0}")]
    Usage(String),
    /// A routing test file is unreadable or invalid.
    #[error("invalid routing test file:\n  {}", .0.join("\n  "))]
    Tests(Vec<String>),
    /// A `--trust-anchor` file is unreadable or invalid.
    #[error("invalid trust anchor file:\n  {0}")]
    TrustAnchor(String),
    #[error(transparent)]
    Live(#[from] live::ClientError),
}

/// The result of a check: text (or JSON) for stdout, and whether it passed.
pub struct Report {
    pub output: String,
    pub ok: bool,
}

pub async fn run(args: &Args) -> Result<Report, CheckError> {
    let loaded = match &args.config {
        Some(path) => Some(load::load(path)?),
        None => None,
    };
    if loaded.is_none() && args.server.is_none() {
        return Err(CheckError::Usage("give --config FILE, --server ADDR:PORT, or both".into()));
    }
    let anchors = match &args.dnssec {
        Some(options) => Some(dnssec_setup(args, loaded.as_ref(), options)?),
        None => None,
    };
    // The DNSSEC report, when asked, for the zones plus `extra` questions.
    let validate = async |extra: &[dnssec::Probe]| match (&args.dnssec, &anchors, args.server, &loaded) {
        (Some(options), Some(anchors), Some(server), Some(loaded)) => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            Some(dnssec::check(server, loaded, anchors.as_deref(), options, extra, args.timeout, now).await)
        }
        _ => None,
    };
    if let Some(tests) = &args.tests {
        if args.name.is_some() {
            return Err(CheckError::Usage("give either --tests FILE or a NAME to explain, not both".into()));
        }
        let cases = cases::load(tests).map_err(CheckError::Tests)?;
        let outcomes = match args.server {
            Some(server) => run_live_cases(server, loaded.as_ref(), &cases, args.timeout).await,
            None => run_cases(loaded.as_ref().expect("checked above"), &cases),
        };
        let ok = outcomes.iter().all(|o| o.result != "fail");
        let extra: Vec<dnssec::Probe> =
            cases.iter().filter(|c| c.down.is_empty()).map(|c| probe(&c.name, c.rtype, c.client)).collect();
        return Ok(match validate(&extra).await {
            None => Report { output: if args.json { json(&outcomes) } else { cases::render(&outcomes) }, ok },
            Some(d) => Report {
                output: if args.json {
                    json(&serde_json::json!({ "cases": outcomes, "dnssec": d }))
                } else {
                    format!("{}{}", cases::render(&outcomes), dnssec::render(&d))
                },
                ok: ok && d.errors == 0,
            },
        });
    }
    let Some(name_text) = &args.name else {
        if !args.down.is_empty() || args.client.is_some() {
            return Err(CheckError::Usage("--client and --down go with a NAME to explain".into()));
        }
        if let Some(d) = validate(&[]).await {
            let output = if args.json { json(&d) } else { dnssec::render(&d) };
            return Ok(Report { output, ok: d.errors == 0 });
        }
        let Some(loaded) = &loaded else {
            return Err(CheckError::Usage("with --server, give a NAME to query or --tests FILE".into()));
        };
        let s = summary::summarise(loaded, args.config.as_deref().expect("loaded implies a config path"));
        let output = if args.json { json(&s) } else { summary::render(&s) };
        return Ok(Report { output, ok: true });
    };
    let name = Name::parse_absolute(name_text).map_err(|e| CheckError::Usage(format!("NAME {name_text:?}: {e}")))?;
    let rtype = match &args.rtype {
        None => RType::A,
        Some(t) => RType::parse(t).ok_or_else(|| CheckError::Usage(format!("unknown record type {t:?}")))?,
    };
    let client_text = args
        .client
        .as_deref()
        .ok_or_else(|| CheckError::Usage("--client IP|CIDR is required to explain a NAME".into()))?;
    let client = Client::parse(client_text).map_err(|e| CheckError::Usage(format!("--client: {e}")))?;
    if let Some(server) = args.server {
        if !args.down.is_empty() {
            return Err(CheckError::Usage("--down cannot be applied to a live server".into()));
        }
        let observed = live_observe(server, loaded.as_ref(), &name, rtype, client, args.timeout).await?;
        return Ok(match validate(&[probe(&name, rtype, client)]).await {
            None => Report {
                output: if args.json { json(&observed) } else { render_live(server, &name, rtype, client, &observed) },
                ok: true,
            },
            Some(d) => Report {
                output: if args.json {
                    json(&serde_json::json!({ "answer": observed, "dnssec": d }))
                } else {
                    format!("{}{}", render_live(server, &name, rtype, client, &observed), dnssec::render(&d))
                },
                ok: d.errors == 0,
            },
        });
    }
    let loaded = loaded.expect("checked above");
    let inputs = inputs_for(&loaded, &args.down).map_err(CheckError::Usage)?;
    let table = loaded.build_settled(inputs, 0);
    let (_, explanation) = explain(&table, &name, rtype, client);
    let output = if args.json { json(&explanation) } else { explain::render(&explanation) };
    Ok(Report { output, ok: true })
}

/// Checks what `--dnssec` needs (a server, a config with a signed zone) and reads the trust
/// anchor file, if one is given.
fn dnssec_setup(
    args: &Args,
    loaded: Option<&Loaded>,
    options: &DnssecOptions,
) -> Result<Option<Vec<crate::dnssec::verify::Anchor>>, CheckError> {
    let (Some(loaded), Some(_)) = (loaded, args.server) else {
        return Err(CheckError::Usage(
            "--dnssec needs --server ADDR:PORT and --config FILE (the config names the signed zones)".into(),
        ));
    };
    if loaded.keys.is_empty() {
        return Err(CheckError::Usage(format!(
            "--dnssec: {} has no signed zone (zones.<zone>.dnssec)",
            args.config.as_deref().map_or(String::new(), |p| p.display().to_string())
        )));
    }
    options.trust_anchor.as_deref().map(dnssec::read_anchors).transpose().map_err(CheckError::TrustAnchor)
}

/// The question a case or a NAME puts to a live server, for `--dnssec`.
fn probe(name: &Name, rtype: RType, client: Client) -> dnssec::Probe {
    let subnet = match client {
        Client::Subnet(net) => net,
        Client::Source(ip) => ipnet::IpNet::from(ip),
    };
    dnssec::Probe { name: name.clone(), rtype: rtype.code(), subnet: Some(subnet) }
}

fn json<T: Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string_pretty(value).expect("reports serialise");
    s.push('\n');
    s
}

/// Run-time inputs with the named sites forced down.
fn inputs_for(loaded: &Loaded, down: &[String]) -> Result<Inputs, String> {
    let mut inputs = Inputs { dynamic: std::sync::Arc::new(dynamic_records(loaded)), ..Inputs::default() };
    for site in down {
        let id = loaded.config.site_id(site).ok_or_else(|| {
            let known: Vec<&str> = loaded.config.sites.iter().map(|s| s.name.as_str()).collect();
            format!("--down {site:?}: unknown site (sites: {})", known.join(", "))
        })?;
        inputs.sites_down.insert(id);
    }
    Ok(inputs)
}

/// The dynamic records in the zones' journals (read, never written), so that explaining a
/// name answers as the server does.
fn dynamic_records(loaded: &Loaded) -> crate::model::Dynamic {
    let zones = loaded.config.zones.iter().filter_map(|z| {
        let state = crate::updates::journal::read(z.updates.as_ref()?.store.journal()?).ok()??;
        Some((z.apex.clone(), state))
    });
    crate::model::Dynamic { zones: zones.collect() }
}

fn run_cases(loaded: &Loaded, cases: &[Case]) -> Vec<Outcome> {
    cases
        .iter()
        .map(|case| {
            let inputs = match inputs_for(loaded, &case.down) {
                Ok(i) => i,
                Err(e) => {
                    return Outcome { case: case.label.clone(), result: "fail", problems: vec![e], observed: None };
                }
            };
            let table = loaded.build_settled(inputs, 0);
            let (answer, e) = explain(&table, &case.name, case.rtype, case.client);
            let observed = Observed {
                rcode: e.rcode.clone(),
                addresses: answer.answers.iter().filter_map(|r| ip_of(&r.data)).collect(),
                sites: Some(answer.decision.as_ref().map_or_else(Vec::new, |d| {
                    d.answered_from.iter().map(|s| table.sites()[*s].name.clone()).collect()
                })),
                scope: e.ecs_scope,
                rule: Some(e.rule.clone()),
                ttl: e.ttl,
            };
            outcome(case, observed)
        })
        .collect()
}

fn outcome(case: &Case, observed: Observed) -> Outcome {
    let problems = cases::compare(&case.expect, &observed);
    Outcome {
        case: case.label.clone(),
        result: if problems.is_empty() { "pass" } else { "fail" },
        problems,
        observed: Some(observed),
    }
}

fn ip_of(d: &crate::model::RData) -> Option<IpAddr> {
    match d {
        crate::model::RData::A(a) => Some(IpAddr::V4(*a)),
        crate::model::RData::Aaaa(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

async fn run_live_cases(
    server: SocketAddr,
    loaded: Option<&Loaded>,
    cases: &[Case],
    timeout: Duration,
) -> Vec<Outcome> {
    let mut out = Vec::new();
    for case in cases {
        if !case.down.is_empty() {
            out.push(Outcome {
                case: case.label.clone(),
                result: "skip",
                problems: vec!["sets `down`, which cannot be applied to a live server".into()],
                observed: None,
            });
            continue;
        }
        if loaded.is_none() && (case.expect.site.is_some() || case.expect.sites.is_some() || case.expect.rule.is_some())
        {
            out.push(Outcome {
                case: case.label.clone(),
                result: "fail",
                problems: vec!["expects sites or a rule: give --config so addresses can be mapped to sites".into()],
                observed: None,
            });
            continue;
        }
        match live_observe(server, loaded, &case.name, case.rtype, case.client, timeout).await {
            Ok(mut observed) => {
                if case.expect.rule.is_some() {
                    // A live server does not say why; the rule is the one the config gives.
                    observed.rule = loaded.map(|l| {
                        let (_, e) =
                            explain(&l.build_settled(Inputs::default(), 0), &case.name, case.rtype, case.client);
                        e.rule
                    });
                }
                out.push(outcome(case, observed));
            }
            Err(e) => out.push(Outcome {
                case: case.label.clone(),
                result: "fail",
                problems: vec![e.to_string()],
                observed: None,
            }),
        }
    }
    out
}

/// Queries a live server and maps its addresses back to sites when a config is given.
async fn live_observe(
    server: SocketAddr,
    loaded: Option<&Loaded>,
    name: &Name,
    rtype: RType,
    client: Client,
    timeout: Duration,
) -> Result<Observed, live::ClientError> {
    let subnet = match client {
        Client::Subnet(net) => Some(net),
        // A live query comes from this machine; the address can only travel as ECS.
        Client::Source(ip) => Some(ipnet::IpNet::from(ip)),
    };
    let answer = live::query(server, name.as_str(), rtype, subnet, timeout).await?;
    let addresses: Vec<IpAddr> = answer.answers.iter().filter_map(|r| r.data.as_ref().and_then(ip_of)).collect();
    let sites = loaded.map(|l| sites_of(l, &addresses));
    let ttl = answer.answers.iter().find(|r| r.data.as_ref().and_then(ip_of).is_some()).map(|r| r.ttl);
    Ok(Observed { rcode: answer.rcode, addresses, sites, scope: answer.scope, rule: None, ttl })
}

/// The sites (in answer order, without repeats) whose configured addresses appear in `addresses`.
fn sites_of(loaded: &Loaded, addresses: &[IpAddr]) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for ip in addresses {
        for zone in &loaded.config.zones {
            for g in &zone.geo {
                for (site, addrs) in &g.sites {
                    if addrs.contains(ip) && seen.insert(*site) {
                        out.push(loaded.config.sites[*site].name.clone());
                    }
                }
            }
        }
    }
    out
}

fn render_live(server: SocketAddr, name: &Name, rtype: RType, client: Client, o: &Observed) -> String {
    let mut out = format!("server     {server}\nquery      {name} {rtype} with ECS {client}\nrcode      {}\n", o.rcode);
    if o.addresses.is_empty() {
        out.push_str("answer     (no addresses)\n");
    }
    for (i, a) in o.addresses.iter().enumerate() {
        out.push_str(&format!("{}{a}\n", if i == 0 { "answer     " } else { "           " }));
    }
    if let Some(sites) = &o.sites {
        out.push_str(&format!(
            "sites      {}\n",
            if sites.is_empty() { "(none of the config's)".to_owned() } else { sites.join(", ") }
        ));
    }
    if let Some(ttl) = o.ttl {
        out.push_str(&format!("ttl        {ttl}\n"));
    }
    out.push_str(&format!("ecs scope  {}\n", o.scope.map_or("(no ECS in the reply)".to_owned(), |s| format!("/{s}"))));
    out
}
