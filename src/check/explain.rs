//! "What would this client get, and why?": one query resolved against a routing table, with
//! the client's placement, every site in order with its distance and health, the rule that
//! decided, the answer, TTL and ECS scope.

use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::model::{Name, RType};
use crate::routing::{Answer, PlacedBy, Query, Rcode, RoutingTable};

/// Who is asking: an address seen as the packet's source, or a subnet sent as ECS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Source(IpAddr),
    Subnet(IpNet),
}

impl Client {
    pub fn parse(text: &str) -> Result<Client, String> {
        if text.contains('/') {
            let net: IpNet = text.parse().map_err(|_| format!("{text:?} is not an address or a CIDR subnet"))?;
            if net.trunc() != net {
                return Err(format!("{net} has host bits set; did you mean {}?", net.trunc()));
            }
            Ok(Client::Subnet(net))
        } else {
            text.parse().map(Client::Source).map_err(|_| format!("{text:?} is not an address or a CIDR subnet"))
        }
    }

    pub fn query<'a>(&self, name: &'a Name, rtype: RType) -> Query<'a> {
        match *self {
            Client::Source(ip) => Query { name, rtype, client: ip, ecs_source: None },
            Client::Subnet(net) => Query {
                name,
                rtype,
                // ECS with source prefix 0 places the packet's source; offline that is unknown.
                client: net.network(),
                ecs_source: Some(net.prefix_len()),
            },
        }
    }
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Client::Source(ip) => write!(f, "{ip}"),
            Client::Subnet(net) => write!(f, "{net}"),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Explanation {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub client: String,
    pub rcode: String,
    pub placement: Option<PlacementReport>,
    pub rule: String,
    pub sites: Vec<SiteReport>,
    pub answer: Vec<RecordReport>,
    pub ttl: Option<u32>,
    /// The ECS scope of the reply (only when the client was given as a subnet).
    pub ecs_scope: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PlacementReport {
    /// "client_network" or "geoip".
    pub by: &'static str,
    pub client_network: Option<String>,
    pub site: Option<String>,
    pub country: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// The prefix within which every client is placed the same way.
    pub network_prefix: u8,
}

#[derive(Debug, Serialize)]
pub struct SiteReport {
    pub site: String,
    pub distance_km: Option<f64>,
    pub health: &'static str,
    pub has_addresses: bool,
    pub answered: bool,
}

#[derive(Debug, Serialize)]
pub struct RecordReport {
    pub owner: String,
    pub ttl: u32,
    #[serde(rename = "type")]
    pub rtype: String,
    pub data: String,
}

pub fn rcode_name(r: Rcode) -> &'static str {
    match r {
        Rcode::NoError => "NOERROR",
        Rcode::NxDomain => "NXDOMAIN",
        Rcode::ServFail => "SERVFAIL",
        Rcode::Refused => "REFUSED",
    }
}

/// Resolves and explains one query.
pub fn explain(table: &RoutingTable, name: &Name, rtype: RType, client: Client) -> (Answer, Explanation) {
    let answer = table.resolve(&client.query(name, rtype));
    let sites = table.sites();
    let mut report = Explanation {
        name: name.to_string(),
        rtype: rtype.to_string(),
        client: client.to_string(),
        rcode: rcode_name(answer.rcode).to_owned(),
        placement: None,
        rule: match (&answer.decision, answer.rcode) {
            (Some(d), _) => d.rule.as_str().to_owned(),
            (None, Rcode::Refused) => "refused".to_owned(),
            (None, _) => "static".to_owned(),
        },
        sites: Vec::new(),
        answer: answer
            .answers
            .iter()
            .map(|r| RecordReport {
                owner: r.owner.to_string(),
                ttl: r.ttl,
                rtype: r.data.rtype().to_string(),
                data: r.data.to_string(),
            })
            .collect(),
        ttl: answer.answers.first().map(|r| r.ttl),
        ecs_scope: matches!(client, Client::Subnet(_)).then_some(answer.scope),
        note: None,
    };
    if answer.rcode == Rcode::Refused && rtype != RType::Transfer {
        let zones: Vec<String> = table.zone_names().map(ToString::to_string).collect();
        report.note = Some(format!("{name} is outside every zone served ({})", zones.join(", ")));
    }
    if let Some(d) = &answer.decision {
        report.placement = Some(match &d.placement.by {
            PlacedBy::ClientNetwork { net, site } => PlacementReport {
                by: "client_network",
                client_network: Some(net.to_string()),
                site: Some(sites[*site].name.clone()),
                country: None,
                latitude: Some(sites[*site].location.lat),
                longitude: Some(sites[*site].location.lon),
                network_prefix: d.placement.scope,
            },
            PlacedBy::GeoIp(hit) => PlacementReport {
                by: "geoip",
                client_network: None,
                site: None,
                country: hit.country_str().map(str::to_owned),
                latitude: hit.location.map(|l| l.lat),
                longitude: hit.location.map(|l| l.lon),
                network_prefix: hit.prefix_len,
            },
        });
        report.sites = d
            .order
            .iter()
            .map(|s| SiteReport {
                site: sites[s.site].name.clone(),
                distance_km: d.distance_km(table, s.site).map(|k| (k * 10.0).round() / 10.0),
                health: if s.up { "up" } else { "down" },
                has_addresses: s.has_addresses,
                answered: d.answered_from.contains(&s.site),
            })
            .collect();
        report.ttl = Some(d.ttl);
    }
    (answer, report)
}

/// The explanation for people.
pub fn render(e: &Explanation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "query      {} {} from {}", e.name, e.rtype, e.client);
    if let Some(p) = &e.placement {
        let _ = match p.by {
            "client_network" => writeln!(
                out,
                "client     in client_networks entry {} -> site {}",
                p.client_network.as_deref().unwrap_or("?"),
                p.site.as_deref().unwrap_or("?")
            ),
            _ => match (p.latitude, p.longitude) {
                (Some(lat), Some(lon)) => writeln!(
                    out,
                    "client     GeoIP: {} at ({lat:.4}, {lon:.4}), same for the whole /{}",
                    p.country.as_deref().unwrap_or("no country"),
                    p.network_prefix
                ),
                _ => writeln!(out, "client     GeoIP: no location (private or unknown address); configured site order"),
            },
        };
    }
    let _ = writeln!(out, "rule       {}", e.rule);
    if !e.sites.is_empty() {
        let _ = writeln!(out, "sites      (in the order considered)");
        for (i, s) in e.sites.iter().enumerate() {
            let distance = s.distance_km.map_or("-".to_owned(), |d| format!("{d:.0} km"));
            let _ = writeln!(
                out,
                "  {}. {:<14} {:>10}  {:<4}{}{}",
                i + 1,
                s.site,
                distance,
                s.health,
                if s.has_addresses { "" } else { "  (no addresses of this type)" },
                if s.answered { "  <- answered" } else { "" }
            );
        }
    }
    let _ = writeln!(out, "rcode      {}", e.rcode);
    if e.answer.is_empty() {
        let _ = writeln!(out, "answer     (none)");
    }
    for (i, r) in e.answer.iter().enumerate() {
        let _ = writeln!(
            out,
            "{}{} {} {} {}",
            if i == 0 { "answer     " } else { "           " },
            r.owner,
            r.ttl,
            r.rtype,
            r.data
        );
    }
    if let Some(ttl) = e.ttl {
        let _ = writeln!(out, "ttl        {ttl}");
    }
    if let Some(scope) = e.ecs_scope {
        let _ = writeln!(out, "ecs scope  /{scope}");
    }
    if let Some(note) = &e.note {
        let _ = writeln!(out, "note       {note}");
    }
    out
}
