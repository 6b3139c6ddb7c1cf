//! DNSSEC signing, ahead of time: keys ([`keys`]), canonical wire forms ([`wire`]) and the
//! signer ([`sign`]), which turns what a routing table's signed zones hold
//! (`RoutingTable::zone_content`) into signatures and an NSEC chain (`routing::Signed`) that the
//! answer path copies into responses. Nothing is signed per query. docs/dnssec.md has the design.
//!
//! Imports model, config and routing (to read a table); never dns, sources, app or admin. The
//! load step reads the keys and calls [`sign_table`] on the build thread, before a table is
//! published, so the old table keeps serving while a new one is signed.

pub mod keys;
pub mod sign;
pub mod tool;
pub mod verify;
pub mod wire;

use crate::config::Config;
use crate::model::Name;
use crate::routing::{RoutingTable, Signed};

pub use keys::{Algorithm, KeyError, Role, SigningKey};
pub use sign::{Lifetimes, Stats};

/// A signed zone's keys and lifetimes, read from its config.
pub struct ZoneKeys {
    pub apex: Name,
    pub keys: Vec<SigningKey>,
    pub lifetimes: Lifetimes,
}

/// A key file that could not be used, with where the config names it.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct KeyFileError {
    /// The config path (`zones."geo.example.".dnssec.keys[0]`, or `ksk[0]`, `zsk[0]`).
    pub path: String,
    pub source: KeyError,
}

/// Reads the keys of every signed zone of `config`; every unreadable or invalid key is
/// reported, with its config path.
pub fn read_keys(config: &Config) -> Result<Vec<ZoneKeys>, Vec<KeyFileError>> {
    let mut zones = Vec::new();
    let mut errors = Vec::new();
    for z in &config.zones {
        let Some(d) = &z.dnssec else { continue };
        let mut keys = Vec::new();
        for (list, files, role) in
            [("keys", &d.keys, Role::Combined), ("ksk", &d.ksk, Role::KeySigning), ("zsk", &d.zsk, Role::ZoneSigning)]
        {
            for (i, file) in files.iter().enumerate() {
                match SigningKey::read(file) {
                    Ok(k) => keys.push(k.with_role(role)),
                    Err(source) => errors
                        .push(KeyFileError { path: format!("zones.{:?}.dnssec.{list}[{i}]", z.apex.as_str()), source }),
                }
            }
        }
        let lifetimes = Lifetimes { validity: d.validity, refresh: d.refresh };
        zones.push(ZoneKeys { apex: z.apex.clone(), keys, lifetimes });
    }
    if errors.is_empty() { Ok(zones) } else { Err(errors) }
}

/// Signs every signed zone of `table` at `now` (seconds since the epoch), reusing the
/// signatures of `previous` (the table served before) where the records are unchanged.
pub fn sign_table(
    table: &RoutingTable,
    zones: &[ZoneKeys],
    now: u64,
    previous: Option<(&RoutingTable, &Signed)>,
) -> (Signed, Stats) {
    let mut signed = Signed::default();
    let mut stats = Stats::default();
    for z in zones {
        let Some(content) = table.zone_content(&z.apex, previous.map(|p| p.0)) else { continue };
        let prev = previous.and_then(|p| p.1.zones.iter().find(|p| p.apex == z.apex));
        let (zone, s) = sign::sign_zone(&content, &z.keys, &z.lifetimes, now, prev);
        stats.signed += s.signed;
        stats.reused += s.reused;
        signed.zones.push(zone);
    }
    (signed, stats)
}
