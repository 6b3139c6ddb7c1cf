use std::net::IpAddr;

/// A point on the globe, in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
}

/// Mean Earth radius used for great-circle distances (IUGG), in kilometres.
const EARTH_RADIUS_KM: f64 = 6371.0088;

impl Location {
    pub const fn new(lat: f64, lon: f64) -> Self {
        Self { lat, lon }
    }

    /// Great-circle distance in kilometres (haversine formula, stable for small distances).
    pub fn distance_km(&self, other: &Location) -> f64 {
        let (lat1, lat2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlat = lat2 - lat1;
        let dlon = (other.lon - self.lon).to_radians();
        let a = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
    }

    /// The point as a unit vector from the Earth's centre, for distances without trigonometry
    /// per pair (see [`UnitVector::distance_km`]).
    pub fn unit(&self) -> UnitVector {
        let (slat, clat) = self.lat.to_radians().sin_cos();
        let (slon, clon) = self.lon.to_radians().sin_cos();
        UnitVector { x: clat * clon, y: clat * slon, z: slat }
    }

    /// True when both coordinates are finite and within their ranges.
    pub fn is_valid(&self) -> bool {
        self.lat.is_finite()
            && self.lon.is_finite()
            && (-90.0..=90.0).contains(&self.lat)
            && (-180.0..=180.0).contains(&self.lon)
    }
}

/// A point on the unit sphere. Great-circle distances between two of them cost a cross
/// product, a square root and one `atan2`, accurate at every distance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnitVector {
    pub x: f64,
    pub y: f64,
    pub z: f64,
}

impl UnitVector {
    /// The cosine of the angle between two points: larger is nearer.
    pub fn dot(&self, o: &UnitVector) -> f64 {
        self.x * o.x + self.y * o.y + self.z * o.z
    }

    pub fn distance_km(&self, o: &UnitVector) -> f64 {
        let dot = self.x * o.x + self.y * o.y + self.z * o.z;
        let (cx, cy, cz) = (self.y * o.z - self.z * o.y, self.z * o.x - self.x * o.z, self.x * o.y - self.y * o.x);
        EARTH_RADIUS_KM * (cx * cx + cy * cy + cz * cz).sqrt().atan2(dot)
    }
}

/// What a GeoIP database says about one address.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GeoHit {
    /// Where the address is, when the database places it (city coordinates, or a country's
    /// centroid for country-only records).
    pub location: Option<Location>,
    /// ISO 3166-1 alpha-2 country code, when known.
    pub country: Option<[u8; 2]>,
    /// Length of the database network that matched (or, for a miss, of the empty network that
    /// holds the address), counted in the address's own family: 0-32 for IPv4, 0-128 for IPv6.
    /// Every address in that network gets the same answer from the database.
    pub prefix_len: u8,
}

impl GeoHit {
    /// The country code as text ("GB"), when known.
    pub fn country_str(&self) -> Option<&str> {
        self.country.as_ref().and_then(|c| std::str::from_utf8(c).ok())
    }
}

/// What a locator says of every address of an IPv6 range, for precomputed tables.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RangeLocation {
    /// Every address is placed here.
    At(Location),
    /// No address is placed.
    Nowhere,
    /// Addresses may be placed differently: ask [`Locator::locate`] for each.
    PerAddress,
}

/// Places an IP address on the globe. Implemented by the GeoIP database reader; the routing
/// core only knows this trait, so it can be tested with hand-built locators.
pub trait Locator: Send + Sync + 'static {
    fn locate(&self, ip: IpAddr) -> GeoHit;

    /// Calls `f(first, last, location)` for consecutive ranges of IPv4 addresses, in address
    /// order and covering the whole IPv4 space, where every address of a range gets `location`
    /// from [`Locator::locate`]. Slow (it walks the whole database): for building precomputed
    /// tables off the query path. Returns false, having called `f` any number of times, when the
    /// locator cannot enumerate its data (the caller then keeps asking `locate`).
    fn for_each_ipv4_range(&self, f: &mut dyn FnMut(u32, u32, Option<Location>)) -> bool {
        let _ = f;
        false
    }

    /// The same for the IPv6 space: consecutive ranges in address order covering all of it,
    /// each with what [`Locator::locate`] says of every address in it, or
    /// [`RangeLocation::PerAddress`] where addresses may differ (a database alias into its
    /// IPv4 data): those are left to `locate`.
    fn for_each_ipv6_range(&self, f: &mut dyn FnMut(u128, u128, RangeLocation)) -> bool {
        let _ = f;
        false
    }

    /// Hands back memory the locator can do without for now (a database's resident pages, once
    /// precomputed tables answer most lookups); later lookups still work, maybe slower at first.
    fn release_memory(&self) {}
}

/// A locator that knows nothing: every client has no location (configured site order applies).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoLocator;

impl Locator for NoLocator {
    fn locate(&self, _ip: IpAddr) -> GeoHit {
        GeoHit::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn london_to_frankfurt_is_about_640_km() {
        let london = Location::new(51.51, -0.13);
        let frankfurt = Location::new(50.11, 8.68);
        let d = london.distance_km(&frankfurt);
        assert!((630.0..650.0).contains(&d), "{d}");
        assert_eq!(london.distance_km(&london), 0.0);
    }

    #[test]
    fn antipodes_are_half_the_circumference() {
        let a = Location::new(0.0, 0.0);
        let b = Location::new(0.0, 180.0);
        let d = a.distance_km(&b);
        assert!((d - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1e-6, "{d}");
    }

    #[test]
    fn unit_vectors_agree_with_haversine() {
        let places = [
            (51.51, -0.13),
            (50.11, 8.68),
            (47.61, -122.33),
            (1.35, 103.82),
            (-33.87, 151.21),
            (0.0, 180.0),
            (51.5101, -0.1301),
        ];
        for a in places {
            for b in places {
                let (la, lb) = (Location::new(a.0, a.1), Location::new(b.0, b.1));
                let (h, u) = (la.distance_km(&lb), la.unit().distance_km(&lb.unit()));
                assert!((h - u).abs() < 1e-6 * h.max(1.0), "{a:?} {b:?}: {h} vs {u}");
            }
        }
    }

    #[test]
    fn validity() {
        assert!(Location::new(90.0, -180.0).is_valid());
        assert!(!Location::new(91.0, 0.0).is_valid());
        assert!(!Location::new(0.0, f64::NAN).is_valid());
    }
}
