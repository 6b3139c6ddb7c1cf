//! Country centroids: one representative point per ISO 3166-1 alpha-2 code, used to place
//! clients of country-only databases. The table ships in the repository
//! (`geoip/country-centroids.csv`, see `geoip/README.md` for its source and licence) and is
//! compiled into the binary.

use std::sync::OnceLock;

use crate::model::Location;

/// The shipped table: header `iso_code,latitude,longitude,name`, one country per line.
const CSV: &str = include_str!("../../geoip/country-centroids.csv");

/// Two upper-case ASCII letters index a dense 26 x 26 table: one array access per lookup.
const SLOTS: usize = 26 * 26;

type Table = [Option<Location>; SLOTS];

fn table() -> &'static Table {
    static TABLE: OnceLock<Box<Table>> = OnceLock::new();
    TABLE.get_or_init(|| Box::new(parse(CSV)))
}

fn slot(code: [u8; 2]) -> Option<usize> {
    let [a, b] = code;
    if a.is_ascii_uppercase() && b.is_ascii_uppercase() {
        Some(usize::from(a - b'A') * 26 + usize::from(b - b'A'))
    } else {
        None
    }
}

/// Parses the CSV; malformed lines are skipped (the unit tests make sure there are none).
fn parse(csv: &str) -> Table {
    let mut table: Table = [None; SLOTS];
    for line in csv.lines().skip(1) {
        let mut fields = line.splitn(4, ',');
        let (Some(code), Some(lat), Some(lon)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let (Some(code), Ok(lat), Ok(lon)) =
            (normalize_code(code.as_bytes()), lat.trim().parse::<f64>(), lon.trim().parse::<f64>())
        else {
            continue;
        };
        let location = Location::new(lat, lon);
        if let (Some(i), true) = (slot(code), location.is_valid()) {
            table[i] = Some(location);
        }
    }
    table
}

/// Upper-cases a two-letter ASCII code; anything else (empty, "EUR", digits) is `None`.
pub(crate) fn normalize_code(code: &[u8]) -> Option<[u8; 2]> {
    match code {
        [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
        }
        _ => None,
    }
}

/// Centroid of a normalized (upper-case) country code.
pub(crate) fn centroid_of(code: [u8; 2]) -> Option<Location> {
    slot(code).and_then(|i| table()[i])
}

/// The representative point of a country, by ISO 3166-1 alpha-2 code (case-insensitive):
/// `country_centroid("GB")` is about (54, -2). `None` for codes the table does not know.
pub fn country_centroid(iso_code: &str) -> Option<Location> {
    normalize_code(iso_code.trim().as_bytes()).and_then(centroid_of)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_the_shipped_table_parses() {
        let mut lines = CSV.lines();
        assert_eq!(lines.next(), Some("iso_code,latitude,longitude,name"));
        let rows: Vec<&str> = lines.collect();
        assert!(rows.len() >= 245, "{} rows", rows.len());
        let known = table().iter().filter(|l| l.is_some()).count();
        assert_eq!(known, rows.len(), "a line failed to parse or a code is duplicated");
    }

    #[test]
    fn sanity_of_a_few_centroids() {
        let near = |code: &str, lat: f64, lon: f64| {
            let got = country_centroid(code).unwrap_or_else(|| panic!("{code} missing"));
            let d = got.distance_km(&Location::new(lat, lon));
            assert!(d < 500.0, "{code}: {got:?} is {d} km from ({lat}, {lon})");
        };
        near("GB", 54.0, -2.0);
        near("SG", 1.35, 103.8);
        near("US", 39.0, -98.0);
        near("BR", -10.0, -55.0);
        near("de", 51.0, 9.0);
    }

    #[test]
    fn unknown_or_malformed_codes() {
        assert_eq!(country_centroid(""), None);
        assert_eq!(country_centroid("ZZ"), None);
        assert_eq!(country_centroid("GBR"), None);
        assert_eq!(country_centroid("1A"), None);
        assert_eq!(normalize_code(b"gb"), Some(*b"GB"));
    }
}
