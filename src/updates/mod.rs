//! Dynamic updates (RFC 2136) applied to a zone's dynamic records: the zone's policy (which
//! key may change which names and types), the prerequisites, the changes, and the journal that
//! makes an applied update durable before it is acknowledged ([`journal`]).
//!
//! [`apply`] is pure: a zone's config, its dynamic records and an authenticated request in, the
//! new dynamic records (or the refusal, with its reason) out; nothing changes on a refusal.
//! The app owns the state and the journal files (`app/updates.rs`). Imports model and config.

pub mod journal;

use crate::config::ZoneConfig;
use crate::model::{
    Change, DynamicNode, DynamicZone, Name, Prereq, RData, RType, UpdateRcode, UpdateRequest, serial_after,
};

/// Why an update was not applied: the response code and a reason for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rcode: UpdateRcode,
    pub reason: String,
}

fn refuse(rcode: UpdateRcode, reason: impl Into<String>) -> Refusal {
    Refusal { rcode, reason: reason.into() }
}

/// The types a name holds in the config (static records, geo names, the apex), if any.
fn configured_types(zone: &ZoneConfig, name: &Name) -> Option<Vec<RType>> {
    if *name == zone.apex {
        let mut types = vec![RType::Soa, RType::Ns];
        types.extend(zone.records.iter().filter(|n| n.name == *name).flat_map(|n| n.rdata.iter().map(RData::rtype)));
        return Some(types);
    }
    if let Some(node) = zone.records.iter().find(|n| n.name == *name) {
        return Some(node.rdata.iter().map(RData::rtype).collect());
    }
    if zone.geo.iter().any(|g| g.name == *name) {
        return Some(vec![RType::A, RType::Aaaa]);
    }
    None
}

/// True when a configured name lies below `name` (it is an empty non-terminal, and in use).
fn has_configured_descendant(zone: &ZoneConfig, name: &Name) -> bool {
    let below = |n: &Name| n != name && n.is_in(name);
    zone.records.iter().any(|n| below(&n.name)) || zone.geo.iter().any(|g| below(&g.name))
}

fn name_in_use(zone: &ZoneConfig, dynamic: &DynamicZone, name: &Name) -> bool {
    configured_types(zone, name).is_some()
        || has_configured_descendant(zone, name)
        || dynamic.names.iter().any(|(n, node)| n.is_in(name) && !node.rdata.is_empty())
}

fn rrset(zone: &ZoneConfig, dynamic: &DynamicZone, name: &Name, rtype: RType) -> Option<Vec<RData>> {
    if let Some(node) = zone.records.iter().find(|n| n.name == *name) {
        let set: Vec<RData> = node.rdata.iter().filter(|d| d.rtype() == rtype).cloned().collect();
        if !set.is_empty() {
            return Some(set);
        }
    }
    if configured_types(zone, name).is_some_and(|t| t.contains(&rtype)) {
        // The apex SOA/NS and geo addresses: present, with data a prerequisite cannot pin.
        return Some(Vec::new());
    }
    let set: Vec<RData> = dynamic.names.get(name)?.rdata.iter().filter(|d| d.rtype() == rtype).cloned().collect();
    (!set.is_empty()).then_some(set)
}

fn check_prereqs(zone: &ZoneConfig, dynamic: &DynamicZone, prereqs: &[Prereq]) -> Result<(), Refusal> {
    for p in prereqs {
        if !p.name().is_in(&zone.apex) {
            return Err(refuse(UpdateRcode::NotZone, format!("prerequisite name {} is outside the zone", p.name())));
        }
    }
    for p in prereqs {
        match p {
            Prereq::NameInUse(n) if !name_in_use(zone, dynamic, n) => {
                return Err(refuse(UpdateRcode::NxDomain, format!("prerequisite: {n} is not in use")));
            }
            Prereq::NameNotInUse(n) if name_in_use(zone, dynamic, n) => {
                return Err(refuse(UpdateRcode::YxDomain, format!("prerequisite: {n} is in use")));
            }
            Prereq::RrsetExists(n, t) if rrset(zone, dynamic, n, *t).is_none() => {
                return Err(refuse(UpdateRcode::NxRrset, format!("prerequisite: no {t} RRset at {n}")));
            }
            Prereq::RrsetNotExists(n, t) if rrset(zone, dynamic, n, *t).is_some() => {
                return Err(refuse(UpdateRcode::YxRrset, format!("prerequisite: {n} has a {t} RRset")));
            }
            Prereq::RrsetEquals(n, t, want) => {
                let have = rrset(zone, dynamic, n, *t).unwrap_or_default();
                let mut want_set: Vec<RData> = Vec::new();
                for d in want {
                    match d {
                        Some(d) if !want_set.contains(d) => want_set.push(d.clone()),
                        Some(_) => {}
                        None => return Err(refuse(UpdateRcode::NxRrset, format!("prerequisite: no {t} RRset at {n}"))),
                    }
                }
                let same = have.len() == want_set.len() && have.iter().all(|d| want_set.contains(d));
                if !same {
                    return Err(refuse(UpdateRcode::NxRrset, format!("prerequisite: the {t} RRset at {n} differs")));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The policy check of one change: inside the zone, not a configured name (the apex SOA and NS,
/// geo names, static records), and allowed to the key by a rule.
fn check_change(zone: &ZoneConfig, dynamic: &DynamicZone, key: &Name, change: &Change) -> Result<(), Refusal> {
    let name = change.name();
    if !name.is_in(&zone.apex) {
        return Err(refuse(UpdateRcode::NotZone, format!("{name} is outside the zone {}", zone.apex)));
    }
    let rtype = change.rtype();
    if name.as_str().split('.').any(|l| l == "*") {
        // Served as written, not as a wildcard: a validator would read one in a signed zone's
        // NSEC chain as a wildcard and expect it expanded.
        return Err(refuse(UpdateRcode::Refused, format!("{name}: a \"*\" label is not a wildcard here")));
    }
    if *name == zone.apex {
        return Err(refuse(
            UpdateRcode::Refused,
            format!("{name} is the zone apex (its SOA and NS come from the config)"),
        ));
    }
    if zone.geo.iter().any(|g| g.name == *name) {
        return Err(refuse(UpdateRcode::Refused, format!("{name} is a geo name (its answers come from routing)")));
    }
    if configured_types(zone, name).is_some() {
        return Err(refuse(UpdateRcode::Refused, format!("{name} has records in the config file")));
    }
    let Some(updates) = &zone.updates else {
        return Err(refuse(UpdateRcode::Refused, format!("zone {} takes no updates", zone.apex)));
    };
    let rules: Vec<_> = updates.allow.iter().filter(|r| r.key == *key).collect();
    let allowed = |t: RType| rules.iter().any(|r| r.allows(&zone.apex, name, t));
    let ok = match rtype {
        // Deleting every RRset at a name: allowed when the key may change each type it holds.
        RType::Any => {
            rules.iter().any(|r| r.matches_name(&zone.apex, name))
                && dynamic.names.get(name).is_none_or(|n| n.rdata.iter().all(|d| allowed(d.rtype())))
        }
        t => allowed(t),
    };
    if !ok {
        return Err(refuse(UpdateRcode::Refused, format!("key {key} may not change {rtype} records at {name}")));
    }
    Ok(())
}

/// Applies one change (RFC 2136 section 3.4.2).
fn apply_change(names: &mut std::collections::BTreeMap<Name, DynamicNode>, change: &Change) {
    match change {
        Change::Add { name, ttl, data: Some(data), .. } => {
            let node = names.entry(name.clone()).or_insert_with(|| DynamicNode { ttl: *ttl, rdata: Vec::new() });
            let has_cname = node.rdata.iter().any(|d| d.rtype() == RType::Cname);
            let is_cname = data.rtype() == RType::Cname;
            if is_cname && node.rdata.iter().any(|d| d.rtype() != RType::Cname) {
                return; // a CNAME cannot join other data: ignored
            }
            if !is_cname && has_cname {
                return; // nor other data a CNAME
            }
            if is_cname {
                node.rdata.clear();
            }
            node.ttl = *ttl;
            if !node.rdata.contains(data) {
                node.rdata.push(data.clone());
            }
        }
        Change::Add { data: None, .. } => {}
        Change::DeleteRrset { name, rtype } => {
            if let Some(node) = names.get_mut(name) {
                node.rdata.retain(|d| d.rtype() != *rtype);
            }
        }
        Change::DeleteName { name } => {
            names.remove(name);
        }
        Change::DeleteRr { name, data: Some(data), .. } => {
            if let Some(node) = names.get_mut(name) {
                node.rdata.retain(|d| d != data);
            }
        }
        Change::DeleteRr { data: None, .. } => {}
    }
    names.retain(|_, n| !n.rdata.is_empty());
}

/// Applies an authenticated request to a zone's dynamic records: `Ok(None)` when it changes
/// nothing, `Ok(Some(new))` with the serial advanced, or the refusal (nothing changed).
pub fn apply(zone: &ZoneConfig, current: &DynamicZone, req: &UpdateRequest) -> Result<Option<DynamicZone>, Refusal> {
    if zone.updates.is_none() {
        return Err(refuse(UpdateRcode::Refused, format!("zone {} takes no updates", zone.apex)));
    }
    check_prereqs(zone, current, &req.prereqs)?;
    for change in &req.changes {
        check_change(zone, current, &req.key, change)?;
    }
    let mut names = current.names.clone();
    for change in &req.changes {
        apply_change(&mut names, change);
    }
    if names == current.names {
        return Ok(None);
    }
    let serial = served_serial(zone, current).wrapping_add(1);
    Ok(Some(DynamicZone { serial: Some(serial), names }))
}

/// The SOA serial a zone serves: its last update's, unless the config's is later.
pub fn served_serial(zone: &ZoneConfig, dynamic: &DynamicZone) -> u32 {
    match dynamic.serial {
        Some(s) if serial_after(s, zone.soa.serial) => s,
        _ => zone.soa.serial,
    }
}

#[cfg(test)]
mod tests;
