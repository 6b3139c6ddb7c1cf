//! Small MaxMind-format databases for tests, written with the `mmdb-writer` crate.
//!
//! Each writer builds an IPv6 tree (IPv4 networks live under `::/96` and are reachable from
//! IPv4 lookups, with the usual `::ffff:0:0/96`, 6to4 and Teredo aliases) unless it says
//! otherwise, and installs the file atomically (temporary file in the same directory, then
//! rename), so a test can replace a database that a running server has memory-mapped.
//! CIDRs accept both families (`"81.2.69.0/24"`, `"2001:db8::/32"`); a malformed CIDR panics.
//!
//! Also compiled into the crate's own unit tests (`src/geoip/tests.rs`).
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, SystemTime};

use mmdb_writer::ipnet::IpNet;
use mmdb_writer::{IpVersion, Value, Writer};

/// Fixed build time (2023-11-14T22:13:20Z) so fixtures are byte-for-byte reproducible.
pub const BUILD_EPOCH: u64 = 1_700_000_000;

fn names(name: &str) -> Value {
    Value::map([("en", Value::from(name))])
}

fn country(code: &str) -> Value {
    Value::map([
        ("geoname_id", Value::from(1_u32)),
        ("iso_code", Value::from(code)),
        ("names", names(&format!("Country {code}"))),
    ])
}

/// A GeoIP2-City record: `city`, `continent`, `country`, `location` (double coordinates,
/// accuracy radius, time zone), `registered_country`.
pub fn city_record(lat: f64, lon: f64, country_code: &str) -> Value {
    Value::map([
        ("city", Value::map([("names", names("Test City"))])),
        ("continent", Value::map([("code", Value::from("EU")), ("names", names("Europe"))])),
        ("country", country(country_code)),
        (
            "location",
            Value::map([
                ("accuracy_radius", Value::from(20_u16)),
                ("latitude", Value::from(lat)),
                ("longitude", Value::from(lon)),
                ("time_zone", Value::from("Etc/UTC")),
            ]),
        ),
        ("registered_country", country(country_code)),
    ])
}

/// A GeoIP2-Country record: `continent`, `country`, `registered_country`; no coordinates.
pub fn country_record(country_code: &str) -> Value {
    Value::map([
        ("continent", Value::map([("code", Value::from("EU"))])),
        ("country", country(country_code)),
        ("registered_country", country(country_code)),
    ])
}

/// An ip-location-db flat record (e.g. `dbip-city-mmdb`): `country_code` and f32
/// `latitude`/`longitude`, plus the city/state/timezone strings those files carry.
pub fn flat_record(lat: f32, lon: f32, country_code: &str) -> Value {
    Value::map([
        ("city", Value::from("Test City")),
        ("country_code", Value::from(country_code)),
        ("latitude", Value::from(lat)),
        ("longitude", Value::from(lon)),
        ("state1", Value::from("Test State")),
        ("timezone", Value::from("Etc/UTC")),
    ])
}

/// Writes `records` (CIDR, value) as a database of `database_type`; `ipv4_only` builds a
/// 32-bit tree (`ip_version` 4), in which IPv6 networks are not allowed.
pub fn write_records(path: &Path, database_type: &str, ipv4_only: bool, records: &[(&str, Value)]) {
    let ip_version = if ipv4_only { IpVersion::V4 } else { IpVersion::V6 };
    let mut writer = Writer::builder(database_type)
        .ip_version(ip_version)
        .description(&[("en", "geodns test fixture")])
        .build_epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(BUILD_EPOCH))
        .build();
    for (cidr, value) in records {
        let net: IpNet = cidr.parse().unwrap_or_else(|e| panic!("bad CIDR {cidr:?}: {e}"));
        writer.insert_value(net, value.clone()).unwrap_or_else(|e| panic!("cannot insert {cidr}: {e}"));
    }
    let bytes = writer.to_bytes().expect("serialize mmdb");
    install(path, &bytes);
}

/// Writes `bytes` next to `path` and renames it into place.
pub fn install(path: &Path, bytes: &[u8]) {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes).unwrap_or_else(|e| panic!("write {tmp:?}: {e}"));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename to {path:?}: {e}"));
}

/// GeoIP2-City layout: `(cidr, latitude, longitude, country)`.
pub fn write_city_db(path: &Path, entries: &[(&str, f64, f64, &str)]) {
    let records: Vec<(&str, Value)> =
        entries.iter().map(|&(cidr, lat, lon, cc)| (cidr, city_record(lat, lon, cc))).collect();
    write_records(path, "GeoIP2-City", false, &records);
}

/// GeoIP2-Country layout: `(cidr, country)`; clients are placed at country centroids.
pub fn write_country_db(path: &Path, entries: &[(&str, &str)]) {
    let records: Vec<(&str, Value)> = entries.iter().map(|&(cidr, cc)| (cidr, country_record(cc))).collect();
    write_records(path, "GeoIP2-Country", false, &records);
}

/// ip-location-db flat layout (f32 coordinates), IPv6 tree: `(cidr, lat, lon, country)`.
pub fn write_flat_db(path: &Path, entries: &[(&str, f32, f32, &str)]) {
    let records: Vec<(&str, Value)> =
        entries.iter().map(|&(cidr, lat, lon, cc)| (cidr, flat_record(lat, lon, cc))).collect();
    write_records(path, "dbip-city-lite", false, &records);
}

/// Like [`write_flat_db`] but an IPv4-only tree, as ip-location-db's `*-ipv4.mmdb` files
/// (IPv6 lookups find nothing).
pub fn write_flat_db_v4(path: &Path, entries: &[(&str, f32, f32, &str)]) {
    let records: Vec<(&str, Value)> =
        entries.iter().map(|&(cidr, lat, lon, cc)| (cidr, flat_record(lat, lon, cc))).collect();
    write_records(path, "dbip-city-lite-ipv4", true, &records);
}
