//! The record layouts geodns understands, decoded leniently and without allocation, and their
//! translation into a [`GeoHit`].
//!
//! - MaxMind GeoIP2/GeoLite2 City and DB-IP City: `location.latitude`, `location.longitude`
//!   (double), `country.iso_code`, `registered_country.iso_code`.
//! - MaxMind GeoIP2/GeoLite2 Country and DB-IP Country: `country`, `registered_country` only.
//! - ip-location-db (npm `@ip-location-db/*-mmdb`): flat `country_code`, `latitude`,
//!   `longitude`, the coordinates stored as *float* (f32).
//!
//! Every other key is skipped by the decoder without being materialized.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::centroids::{centroid_of, normalize_code};
use crate::model::{GeoHit, Location};

/// The union of all supported layouts; every field is optional.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Record<'a> {
    #[serde(default)]
    location: Option<LocationRec>,
    #[serde(default, borrow)]
    country: Option<CountryRec<'a>>,
    #[serde(default, borrow)]
    registered_country: Option<CountryRec<'a>>,
    #[serde(default, borrow)]
    country_code: Option<&'a str>,
    #[serde(default)]
    latitude: Option<Coord>,
    #[serde(default)]
    longitude: Option<Coord>,
}

#[derive(Debug, Default, Deserialize)]
struct LocationRec {
    #[serde(default)]
    latitude: Option<Coord>,
    #[serde(default)]
    longitude: Option<Coord>,
}

#[derive(Debug, Default, Deserialize)]
struct CountryRec<'a> {
    #[serde(default, borrow)]
    iso_code: Option<&'a str>,
}

/// A coordinate stored as double, float, integer or numeric string.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Coord(f64);

impl<'de> Deserialize<'de> for Coord {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CoordVisitor;

        impl Visitor<'_> for CoordVisitor {
            type Value = Coord;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number (double, float or integer)")
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Coord, E> {
                Ok(Coord(v))
            }

            fn visit_f32<E: de::Error>(self, v: f32) -> Result<Coord, E> {
                Ok(Coord(f64::from(v)))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Coord, E> {
                Ok(Coord(v as f64))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Coord, E> {
                Ok(Coord(v as f64))
            }

            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Coord, E> {
                Ok(Coord(v as f64))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Coord, E> {
                v.trim().parse().map(Coord).map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }

        deserializer.deserialize_any(CoordVisitor)
    }
}

impl Record<'_> {
    /// Coordinates of the record itself (City layouts, flat layout), when both are present
    /// and valid.
    fn coordinates(&self) -> Option<Location> {
        let (lat, lon) = match &self.location {
            Some(LocationRec { latitude: Some(lat), longitude: Some(lon) }) => (lat, lon),
            _ => (self.latitude.as_ref()?, self.longitude.as_ref()?),
        };
        let location = Location::new(lat.0, lon.0);
        location.is_valid().then_some(location)
    }

    /// Country codes in order of preference, normalized; invalid ones are skipped.
    fn country_codes(&self) -> impl Iterator<Item = [u8; 2]> + '_ {
        [
            self.country.as_ref().and_then(|c| c.iso_code),
            self.registered_country.as_ref().and_then(|c| c.iso_code),
            self.country_code,
        ]
        .into_iter()
        .flatten()
        .filter_map(|code| normalize_code(code.trim().as_bytes()))
    }

    /// Translates the record: record coordinates when valid, else the centroid of the first
    /// country code (country, registered country, flat `country_code`) the table knows.
    pub(crate) fn to_hit(&self, prefix_len: u8) -> GeoHit {
        let country = self.country_codes().next();
        let location = self.coordinates().or_else(|| self.country_codes().find_map(centroid_of));
        GeoHit { location, country, prefix_len }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec<'a>(
        coords: Option<(f64, f64)>,
        country: Option<&'a str>,
        registered: Option<&'a str>,
        flat: Option<&'a str>,
    ) -> Record<'a> {
        Record {
            location: coords.map(|(lat, lon)| LocationRec { latitude: Some(Coord(lat)), longitude: Some(Coord(lon)) }),
            country: country.map(|c| CountryRec { iso_code: Some(c) }),
            registered_country: registered.map(|c| CountryRec { iso_code: Some(c) }),
            country_code: flat,
            latitude: None,
            longitude: None,
        }
    }

    #[test]
    fn coordinates_win_over_the_centroid() {
        let hit = rec(Some((51.5, -0.1)), Some("gb"), None, None).to_hit(24);
        assert_eq!(hit.location, Some(Location::new(51.5, -0.1)));
        assert_eq!(hit.country_str(), Some("GB"));
        assert_eq!(hit.prefix_len, 24);
    }

    #[test]
    fn invalid_coordinates_fall_back_to_the_centroid() {
        let hit = rec(Some((123.0, 0.0)), Some("SG"), None, None).to_hit(16);
        assert_eq!(hit.location, super::super::country_centroid("SG"));
    }

    #[test]
    fn precedence_of_country_codes() {
        let hit = rec(None, None, Some("fr"), Some("DE")).to_hit(8);
        assert_eq!(hit.country_str(), Some("FR"));
        assert_eq!(hit.location, super::super::country_centroid("FR"));
        // An unknown code ("EU") is skipped for placement.
        let hit = rec(None, Some("EU"), Some("DE"), None).to_hit(8);
        assert_eq!(hit.country_str(), Some("EU"));
        assert_eq!(hit.location, super::super::country_centroid("DE"));
    }

    #[test]
    fn nothing_known() {
        let hit = Record::default().to_hit(0);
        assert_eq!(hit, GeoHit::default());
        let hit = rec(None, Some("United Kingdom"), None, None).to_hit(3);
        assert_eq!((hit.country, hit.location), (None, None));
    }
}
