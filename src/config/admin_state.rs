//! The admin state file: an operator's overrides that survive restarts and need no config
//! change (in the spirit of gdnsd's admin_state). geodns watches the file and applies changes
//! within a second.
//!
//! ```yaml
//! sites:
//!   london: down            # drain a whole site, for every name
//! endpoints:
//!   web/192.0.2.2: down     # CHECK/ADDRESS: force one endpoint down ...
//!   web/192.0.2.3: up       # ... or up, whatever its probes say
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

use super::{Config, Problem};
use crate::model::SiteId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forced {
    Up,
    Down,
}

impl Forced {
    pub fn as_str(&self) -> &'static str {
        match self {
            Forced::Up => "up",
            Forced::Down => "down",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    #[serde(default)]
    sites: BTreeMap<String, Forced>,
    #[serde(default)]
    endpoints: BTreeMap<String, Forced>,
}

/// The overrides in force, resolved against a config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminState {
    pub sites: BTreeMap<SiteId, Forced>,
    /// Keyed by (health check name, address).
    pub endpoints: BTreeMap<(String, IpAddr), Forced>,
}

impl AdminState {
    pub fn is_empty(&self) -> bool {
        self.sites.is_empty() && self.endpoints.is_empty()
    }
}

/// Parses the file's text against `config` (site and check names must exist); an empty file
/// means no overrides.
pub fn parse_admin_state(text: &str, config: &Config) -> Result<AdminState, Vec<Problem>> {
    if text.trim().is_empty() {
        return Ok(AdminState::default());
    }
    let wire: Wire =
        serde_yaml_ng::from_str(text).map_err(|e| vec![Problem { path: String::new(), message: e.to_string() }])?;
    let mut problems = Vec::new();
    let mut state = AdminState::default();
    for (site, forced) in wire.sites {
        match config.site_id(&site) {
            Some(id) => {
                state.sites.insert(id, forced);
            }
            None => problems.push(Problem { path: format!("sites.{site}"), message: format!("unknown site {site:?}") }),
        }
    }
    for (key, forced) in wire.endpoints {
        let path = format!("endpoints.{key:?}");
        let Some((check, addr)) = key.split_once('/') else {
            problems.push(Problem { path, message: "write endpoints as CHECK/ADDRESS (web/192.0.2.1)".into() });
            continue;
        };
        if !config.health_checks.contains_key(check) {
            problems.push(Problem { path, message: format!("unknown health check {check:?}") });
            continue;
        }
        match addr.parse::<IpAddr>() {
            Ok(ip) => {
                state.endpoints.insert((check.to_owned(), ip), forced);
            }
            Err(_) => problems.push(Problem { path, message: format!("{addr:?} is not an address") }),
        }
    }
    if problems.is_empty() { Ok(state) } else { Err(problems) }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config() -> Config {
        super::super::parse(
            "sites: { london: { location: [51, 0] }, paris: { location: [48, 2] } }\nhealth_checks: { web: { tcp: { port: 80 } } }\nzones: { z.: { soa: { mname: ns, rname: h, serial: 1 }, ns: [ns], records: { ns: { A: 192.0.2.1 } } } }\n",
            Path::new("."),
        )
        .unwrap()
    }

    #[test]
    fn parses_sites_and_endpoints() {
        let s = parse_admin_state(
            "sites: { paris: down }\nendpoints: { web/192.0.2.7: up, \"web/2001:db8::1\": down }\n",
            &config(),
        )
        .unwrap();
        assert_eq!(s.sites.get(&1), Some(&Forced::Down));
        assert_eq!(s.endpoints.get(&("web".into(), "192.0.2.7".parse().unwrap())), Some(&Forced::Up));
        assert_eq!(s.endpoints.len(), 2);
        assert!(parse_admin_state("", &config()).unwrap().is_empty());
        assert!(parse_admin_state("# nothing drained\n", &config()).unwrap().is_empty());
    }

    #[test]
    fn reports_every_problem() {
        let err = parse_admin_state(
            "sites: { rome: down }\nendpoints: { x/1.2.3.4: down, web/nope: up, plain: down }\n",
            &config(),
        )
        .unwrap_err();
        let got: Vec<String> = err.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "sites.rome: unknown site \"rome\"",
                "endpoints.\"plain\": write endpoints as CHECK/ADDRESS (web/192.0.2.1)",
                "endpoints.\"web/nope\": \"nope\" is not an address",
                "endpoints.\"x/1.2.3.4\": unknown health check \"x\"",
            ]
        );
        assert!(parse_admin_state("sites: { london: sideways }", &config()).is_err());
        assert!(parse_admin_state("colour: red", &config()).is_err());
    }
}
