//! Tests of the database reader: generated fixtures for each layout, and the shipped database.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::*;
use crate::model::Location;

#[path = "../../tests/common/mmdb.rs"]
mod fixture;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn open(path: &Path) -> GeoIpDb {
    GeoIpDb::open(path).unwrap_or_else(|e| panic!("{e}"))
}

fn assert_near(got: Option<Location>, lat: f64, lon: f64, km: f64) {
    let got = got.expect("a location");
    let d = got.distance_km(&Location::new(lat, lon));
    assert!(d <= km, "{got:?} is {d:.0} km from ({lat}, {lon})");
}

#[test]
fn city_layout_uses_record_coordinates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("city.mmdb");
    fixture::write_city_db(&path, &[("81.2.69.0/24", 51.5142, -0.0931, "GB"), ("2a02:ff0::/32", 50.11, 8.68, "de")]);
    let db = open(&path);
    assert_eq!(db.metadata().database_type, "GeoIP2-City");
    assert_eq!(db.metadata().ip_version, 6);
    assert_eq!(db.metadata().build_epoch, fixture::BUILD_EPOCH);
    assert_eq!(db.metadata().description.as_deref(), Some("geodns test fixture"));
    assert_eq!(db.path(), path);

    let hit = db.locate(ip("81.2.69.160"));
    assert_eq!(hit.location, Some(Location::new(51.5142, -0.0931)));
    assert_eq!(hit.country_str(), Some("GB"));
    // IPv4 in an IPv6 tree: the prefix is counted in IPv4 terms.
    assert_eq!(hit.prefix_len, 24);

    let hit = db.locate(ip("2a02:ff0:1::1"));
    assert_eq!(hit.location, Some(Location::new(50.11, 8.68)));
    assert_eq!(hit.country_str(), Some("DE"));
    assert_eq!(hit.prefix_len, 32);

    // The IPv4-mapped form reaches the IPv4 data through the alias, counted in IPv6 terms.
    let hit = db.locate(ip("::ffff:81.2.69.160"));
    assert_eq!(hit.country_str(), Some("GB"));
    assert_eq!(hit.prefix_len, 96 + 24);
}

#[test]
fn country_layout_is_placed_at_the_centroid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("country.mmdb");
    fixture::write_country_db(&path, &[("103.6.148.0/22", "SG"), ("2001:db8::/32", "BR")]);
    let db = open(&path);
    let hit = db.locate(ip("103.6.148.1"));
    assert_eq!(hit.country_str(), Some("SG"));
    assert_eq!(hit.location, country_centroid("SG"));
    assert_eq!(hit.prefix_len, 22);
    let hit = db.locate(ip("2001:db8:1::"));
    assert_eq!(hit.location, country_centroid("BR"));
    assert_eq!(hit.prefix_len, 32);
}

#[test]
fn flat_layout_with_f32_coordinates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flat.mmdb");
    fixture::write_flat_db(&path, &[("192.0.2.0/25", 47.61, -122.33, "US"), ("2001:db8::/48", 1.35, 103.82, "sg")]);
    let db = open(&path);
    let hit = db.locate(ip("192.0.2.7"));
    assert_near(hit.location, 47.61, -122.33, 0.01);
    assert_eq!(hit.country_str(), Some("US"));
    assert_eq!(hit.prefix_len, 25);
    let hit = db.locate(ip("2001:db8:0:ff::1"));
    assert_near(hit.location, 1.35, 103.82, 0.01);
    assert_eq!(hit.country_str(), Some("SG"));
    assert_eq!(hit.prefix_len, 48);
}

#[test]
fn flat_layout_without_coordinates_uses_the_country_code() {
    use mmdb_writer::Value;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("asn-country.mmdb");
    let record = Value::map([("country_code", Value::from("gb"))]);
    fixture::write_records(&path, "geo-whois-asn-country", false, &[("81.2.69.0/24", record)]);
    let hit = open(&path).locate(ip("81.2.69.1"));
    assert_eq!(hit.country_str(), Some("GB"));
    assert_eq!(hit.location, country_centroid("GB"));
}

#[test]
fn ipv4_only_database_and_ipv6_queries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v4.mmdb");
    fixture::write_flat_db_v4(&path, &[("198.51.100.0/24", 52.37, 4.89, "NL")]);
    let db = open(&path);
    assert_eq!(db.metadata().ip_version, 4);
    let hit = db.locate(ip("198.51.100.200"));
    assert_eq!(hit.country_str(), Some("NL"));
    assert_eq!(hit.prefix_len, 24);
    let hit = db.locate(ip("2001:db8::1"));
    assert_eq!(hit, GeoHit::default());
}

#[test]
fn a_miss_reports_the_empty_network() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("city.mmdb");
    fixture::write_city_db(&path, &[("81.2.69.0/24", 51.5, -0.1, "GB")]);
    let db = open(&path);
    // 81.2.68.0/24 is the empty sibling of the only network: /24.
    let hit = db.locate(ip("81.2.68.9"));
    assert_eq!((hit.location, hit.country), (None, None));
    assert_eq!(hit.prefix_len, 24);
    // 11.x (0000 1011) diverges from 81.x (0101 0001) at the second bit: 0.0.0.0/2 is empty.
    let hit = db.locate(ip("11.1.2.3"));
    assert_eq!((hit.location, hit.prefix_len), (None, 2));
    // 160.x (1010 0000) diverges at the first bit: 128.0.0.0/1 is empty.
    let hit = db.locate(ip("160.1.2.3"));
    assert_eq!((hit.location, hit.prefix_len), (None, 1));
    // IPv6 outside every network and alias: 4000::/2 is empty in this tree.
    let hit = db.locate(ip("4000::1"));
    assert_eq!((hit.location, hit.prefix_len), (None, 2));
}

#[test]
fn ipv4_in_an_ipv6_tree_without_ipv4_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v6only.mmdb");
    fixture::write_city_db(&path, &[("2001:db8::/32", 1.0, 2.0, "SG")]);
    let db = open(&path);
    // maxminddb reports `::/3` for the IPv4 address (there is no IPv4 subtree at ::/96):
    // all of IPv4 gets the same empty answer, prefix 0 in IPv4 terms.
    let hit = db.locate(ip("192.0.2.1"));
    assert_eq!(hit, GeoHit::default());
    // The same bits asked as IPv6 are counted in IPv6 terms.
    assert_eq!(db.locate(ip("::c000:201")).prefix_len, 3);
}

#[test]
fn undecodable_records_have_no_location() {
    use mmdb_writer::Value;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.mmdb");
    fixture::write_records(
        &path,
        "Odd",
        false,
        &[
            // `country` is a string, not a map: the record cannot be decoded.
            ("192.0.2.0/24", Value::map([("country", Value::from("GB"))])),
            // Not a map at all.
            ("198.51.100.0/24", Value::from(42_u32)),
            // Coordinates out of range fall back to the country.
            (
                "203.0.113.0/24",
                Value::map([
                    ("country_code", Value::from("FR")),
                    ("latitude", Value::from(1000.0_f64)),
                    ("longitude", Value::from(2.0_f64)),
                ]),
            ),
        ],
    );
    let db = open(&path);
    let hit = db.locate(ip("192.0.2.1"));
    assert_eq!((hit.location, hit.prefix_len), (None, 24));
    let hit = db.locate(ip("198.51.100.1"));
    assert_eq!((hit.location, hit.prefix_len), (None, 24));
    let hit = db.locate(ip("203.0.113.1"));
    assert_eq!(hit.location, country_centroid("FR"));
}

#[test]
fn special_purpose_addresses_are_never_placed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buggy.mmdb");
    // Some free databases really do map private ranges to a country.
    fixture::write_country_db(&path, &[("192.168.0.0/16", "AU"), ("172.16.0.0/12", "AU"), ("fc00::/7", "AU")]);
    let db = open(&path);
    for (addr, len) in [("192.168.1.1", 16), ("172.20.0.1", 12), ("fd00::1", 7), ("127.0.0.1", 8)] {
        let hit = db.locate(ip(addr));
        assert_eq!(hit, GeoHit { prefix_len: len, ..GeoHit::default() }, "{addr}");
    }
}

#[test]
fn open_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("x.mmdb");
    let err = GeoIpDb::open(&missing).unwrap_err();
    assert_eq!(err.kind(), "open");
    assert_eq!(err.to_string(), format!("cannot open GeoIP database {missing:?}: No such file or directory"));

    let err = GeoIpDb::open(dir.path()).unwrap_err();
    assert_eq!(err.kind(), "open");
    assert!(err.to_string().contains("not a regular file"), "{err}");

    let junk = dir.path().join("junk.mmdb");
    std::fs::write(&junk, b"this is not a database").unwrap();
    let err = GeoIpDb::open(&junk).unwrap_err();
    assert_eq!(err.kind(), "invalid");
    assert!(err.to_string().starts_with(&format!("{junk:?} is not a MaxMind DB file: ")), "{err}");
    assert_eq!(err.path(), junk);

    let empty = dir.path().join("empty.mmdb");
    std::fs::write(&empty, b"").unwrap();
    let err = GeoIpDb::open(&empty).unwrap_err();
    assert_eq!(err.kind(), "invalid", "{err}");
}

#[test]
fn a_replaced_file_does_not_disturb_an_open_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("city.mmdb");
    fixture::write_city_db(&path, &[("81.2.69.0/24", 51.5, -0.1, "GB")]);
    let old = open(&path);
    fixture::write_city_db(&path, &[("81.2.69.0/24", 1.35, 103.82, "SG")]);
    let new = open(&path);
    assert_eq!(old.locate(ip("81.2.69.1")).country_str(), Some("GB"));
    assert_eq!(new.locate(ip("81.2.69.1")).country_str(), Some("SG"));
}

// ---- the shipped database ----

fn shipped_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip/geo-whois-asn-country.mmdb")
}

fn shipped() -> &'static GeoIpDb {
    static DB: std::sync::OnceLock<GeoIpDb> = std::sync::OnceLock::new();
    DB.get_or_init(|| open(&shipped_path()))
}

#[test]
fn shipped_database_metadata() {
    let meta = shipped().metadata();
    assert_eq!(meta.ip_version, 6);
    assert!(meta.node_count > 100_000, "{meta:?}");
    assert!(meta.build_epoch > 1_600_000_000, "{meta:?}");
}

#[test]
fn shipped_database_places_a_uk_address() {
    let hit = shipped().locate(ip("81.2.69.160"));
    assert_eq!(hit.country_str(), Some("GB"));
    assert_near(hit.location, 54.0, -2.0, 300.0);
    assert!((8..=32).contains(&hit.prefix_len), "{}", hit.prefix_len);
}

#[test]
fn shipped_database_places_a_singapore_address_in_asia() {
    let hit = shipped().locate(ip("103.6.148.1"));
    // Singapore, or a neighbour if the registry data moved: within 3000 km of Singapore.
    assert_near(hit.location, 1.35, 103.82, 3000.0);
    assert!((8..=32).contains(&hit.prefix_len), "{}", hit.prefix_len);
}

#[test]
fn shipped_database_places_ipv6_addresses() {
    // RIPE NCC's own network (Amsterdam) and Google's (US).
    let hit = shipped().locate(ip("2001:67c:2e8:22::c100:68b"));
    assert_eq!(hit.country_str(), Some("NL"), "{hit:?}");
    assert_near(hit.location, 52.5, 5.75, 300.0);
    assert!((16..=128).contains(&hit.prefix_len), "{}", hit.prefix_len);
    let hit = shipped().locate(ip("2001:4860:4860::8888"));
    assert_eq!(hit.country_str(), Some("US"), "{hit:?}");
    assert!((16..=128).contains(&hit.prefix_len), "{}", hit.prefix_len);
}

#[test]
fn shipped_database_leaves_private_addresses_unplaced() {
    for addr in ["10.1.2.3", "192.168.1.1", "127.0.0.1", "fd00::1"] {
        let hit = shipped().locate(ip(addr));
        assert_eq!(hit.location, None, "{addr}: {hit:?}");
        assert_eq!(hit.country, None, "{addr}: {hit:?}");
    }
    // 10.0.0.0/8 is empty as a whole (or an even larger empty network holds it).
    assert!(shipped().locate(ip("10.1.2.3")).prefix_len <= 8);
}
