//! GeoIP: reads MaxMind-format (`.mmdb`) databases and translates their records into
//! [`GeoHit`]s. It owns the memory-mapped database file, the decoding of the record layouts
//! geodns understands (MaxMind and DB-IP City/Country, the flat ip-location-db layout), the
//! shipped country-centroid table that places clients of country-only databases, and the
//! rule that special-purpose addresses (private, loopback, link-local, CGNAT, multicast) are
//! never placed, whatever the database says. It knows nothing of routing, DNS or
//! configuration: the rest of the crate sees it only through [`crate::model::Locator`].

mod centroids;
mod record;
mod special;

#[cfg(test)]
mod tests;

use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::collections::HashMap;

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use maxminddb::{MaxMindDbError, Mmap, Reader, WithinOptions};
use memmap2::Advice;
use serde::Serialize;

pub use centroids::country_centroid;

use crate::model::{GeoHit, Location, Locator, RangeLocation};
use record::Record;

/// Why a GeoIP database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum GeoIpError {
    /// The file could not be opened or mapped (missing, unreadable, not a regular file).
    #[error("cannot open GeoIP database {path:?}: {reason}")]
    Open { path: PathBuf, reason: String, error: io::Error },
    /// The file was read but is not a valid MaxMind DB.
    #[error("{path:?} is not a MaxMind DB file: {error}")]
    Invalid { path: PathBuf, error: MaxMindDbError },
}

impl GeoIpError {
    /// A short, stable label for metrics and logs: `open` or `invalid`.
    pub fn kind(&self) -> &'static str {
        match self {
            GeoIpError::Open { .. } => "open",
            GeoIpError::Invalid { .. } => "invalid",
        }
    }

    /// The database path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            GeoIpError::Open { path, .. } | GeoIpError::Invalid { path, .. } => path,
        }
    }

    fn open(path: &Path, error: io::Error) -> Self {
        // "No such file or directory (os error 2)" -> "No such file or directory".
        let text = error.to_string();
        let reason = match text.rfind(" (os error ") {
            Some(i) if text.ends_with(')') => text[..i].to_owned(),
            _ => text,
        };
        GeoIpError::Open { path: path.to_owned(), reason, error }
    }
}

/// What the database says about itself (for `/status` and logs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GeoIpMeta {
    /// e.g. `GeoLite2-City`, `GeoIP2-Country`, `DBIP-City-Lite`, `geo-whois-asn-country`.
    pub database_type: String,
    /// Build time, seconds since the Unix epoch.
    pub build_epoch: u64,
    /// 4 (IPv4 addresses only) or 6 (both families).
    pub ip_version: u16,
    /// Number of nodes in the search tree.
    pub node_count: u32,
    /// The English description, or the first one present.
    pub description: Option<String>,
}

impl GeoIpMeta {
    fn from_metadata(m: &maxminddb::Metadata) -> Self {
        let description = m.description.get("en").or_else(|| m.description.values().next()).cloned();
        GeoIpMeta {
            database_type: m.database_type.clone(),
            build_epoch: m.build_epoch,
            ip_version: m.ip_version,
            node_count: m.node_count,
            description,
        }
    }
}

/// An open, memory-mapped MaxMind-format database. Lookups are lock-free and allocate
/// nothing; share it behind an `Arc`.
pub struct GeoIpDb {
    reader: Reader<SharedMap>,
    /// The mapping `reader` reads, to hand its pages back (see [`Locator::release_memory`]).
    map: Arc<Mmap>,
    /// The open file, so whole-database walks map the very file `reader` reads (the path may
    /// have been renamed over since).
    file: File,
    meta: GeoIpMeta,
    path: PathBuf,
    /// Tells this database's entries apart in the per-thread record caches.
    id: u64,
}

/// Decoded records by data-section offset, per thread (no locks on the query path). Many
/// networks share one record (a country, a city), so decoding is mostly skipped.
struct RecordCache {
    db: u64,
    records: std::collections::HashMap<usize, (Option<crate::model::Location>, Option<[u8; 2]>)>,
}

/// Entries per thread before the cache starts over (bounded memory with City databases).
const RECORD_CACHE_MAX: usize = 16_384;

thread_local! {
    static RECORDS: std::cell::RefCell<RecordCache> =
        std::cell::RefCell::new(RecordCache { db: u64::MAX, records: std::collections::HashMap::new() });
}

static NEXT_DB_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl std::fmt::Debug for GeoIpDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIpDb").field("path", &self.path).field("meta", &self.meta).finish_non_exhaustive()
    }
}

impl GeoIpDb {
    /// Opens and memory-maps the database at `path` and checks its metadata.
    ///
    /// The file must be replaced by renaming a new file over it (as `geoip/update.sh` does),
    /// never rewritten in place: see the SAFETY note below.
    pub fn open(path: &Path) -> Result<GeoIpDb, GeoIpError> {
        let file = File::open(path).map_err(|e| GeoIpError::open(path, e))?;
        let file_meta = file.metadata().map_err(|e| GeoIpError::open(path, e))?;
        if !file_meta.is_file() {
            return Err(GeoIpError::open(path, io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")));
        }
        // SAFETY: the mapping stays valid and unchanged as long as nobody modifies or
        // truncates this file's contents while it is mapped (truncation would make reads
        // fault with SIGBUS, writes would change data under the reader). geodns never writes
        // the file, and the documented way to refresh it (geoip/update.sh, README) writes a
        // new file and renames it over the old path: the rename swaps the directory entry,
        // while this mapping keeps the old inode alive and untouched until it is dropped.
        #[allow(unsafe_code)]
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| GeoIpError::open(path, e))?;
        // Lookups touch a few scattered nodes: reading ahead around each would only fill
        // resident memory with pages nobody asked for.
        let _ = mmap.advise(Advice::Random);
        let map = Arc::new(mmap);
        let reader = Reader::from_source(SharedMap(map.clone()))
            .map_err(|error| GeoIpError::Invalid { path: path.to_owned(), error })?;
        let meta = GeoIpMeta::from_metadata(reader.metadata());
        Ok(GeoIpDb {
            reader,
            map,
            file,
            meta,
            path: path.to_owned(),
            id: NEXT_DB_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// Walks the whole search tree and data section (slow: for `geodns check`, not for
    /// start-up or the query path).
    pub fn verify(&self) -> Result<(), GeoIpError> {
        self.reader.verify().map_err(|error| GeoIpError::Invalid { path: self.path.clone(), error })
    }

    pub fn metadata(&self) -> &GeoIpMeta {
        &self.meta
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the database file, in bytes.
    pub fn file_len(&self) -> u64 {
        self.file.metadata().map_or(u64::MAX, |m| m.len())
    }
}

/// Full length of an address's own family: the most specific (safest) ECS scope.
fn full_len(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

impl GeoIpDb {
    /// A second mapping of the same file, for one walk over the whole database: dropping it
    /// unmaps the pages the walk touched, so they do not stay in the server's resident memory.
    fn scan_reader(&self) -> Option<Reader<Mmap>> {
        // SAFETY: as in `open`: the file is never modified in place while mapped.
        #[allow(unsafe_code)]
        let mmap = unsafe { Mmap::map(&self.file) }.ok()?;
        let _ = mmap.advise(Advice::Sequential);
        Reader::from_source(mmap).ok()
    }
}

/// A shared read-only mapping as a reader's source.
struct SharedMap(Arc<Mmap>);

impl AsRef<[u8]> for SharedMap {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Every IPv4 network of `reader` as (first, last, location), in address order, with the gaps
/// between networks filled (no location). False when the tree cannot be walked in order.
fn walk_ipv4(reader: &Reader<Mmap>, f: &mut dyn FnMut(u32, u32, Option<Location>)) -> bool {
    let all = IpNetwork::V4(Ipv4Network::new(std::net::Ipv4Addr::UNSPECIFIED, 0).expect("/0 is valid"));
    let Ok(networks) = reader.within(all, WithinOptions::default().include_networks_without_data()) else {
        return false;
    };
    // Many networks share a record (a city, a country): decode each record once.
    let mut decoded: HashMap<usize, Option<Location>> = HashMap::new();
    let mut next: u64 = 0;
    for item in networks {
        let Ok(result) = item else { return false };
        let (first, last) = match result.network() {
            Ok(IpNetwork::V4(net)) => (u32::from(net.network()), u32::from(net.broadcast())),
            // An IPv6 network holding the whole IPv4 space (a tree without an IPv4 subtree).
            Ok(IpNetwork::V6(_)) => (0, u32::MAX),
            Err(_) => return false,
        };
        if u64::from(first) < next {
            return false;
        }
        if u64::from(first) > next {
            f(next as u32, first - 1, None);
        }
        let location = match result.offset() {
            Some(offset) => *decoded.entry(offset).or_insert_with(|| match result.decode::<Record<'_>>() {
                Ok(Some(record)) => record.to_hit(0).location,
                _ => None,
            }),
            None => None,
        };
        f(first, last, location);
        next = u64::from(last) + 1;
    }
    if next <= u64::from(u32::MAX) {
        f(next as u32, u32::MAX, None);
    }
    true
}

/// Every IPv6 network of `reader` as (first, last, location), in address order, covering the
/// whole space: networks without data and the gaps between networks are `Nowhere`, except the
/// gaps the walk leaves for the database's aliases of its IPv4 data (`::ffff:0:0/96`,
/// `2002::/16`), which are `PerAddress` (`locate` follows the alias for each). Networks of the
/// IPv4 subtree at `::/96` come back in IPv4 terms and are placed there. False when the tree
/// cannot be walked in order.
fn walk_ipv6(reader: &Reader<Mmap>, f: &mut dyn FnMut(u128, u128, RangeLocation)) -> bool {
    let all = IpNetwork::V6(Ipv6Network::new(std::net::Ipv6Addr::UNSPECIFIED, 0).expect("/0 is valid"));
    let Ok(networks) = reader.within(all, WithinOptions::default().include_networks_without_data()) else {
        return false;
    };
    let mut decoded: HashMap<usize, Option<Location>> = HashMap::new();
    let mut next: u128 = 0;
    let mut done = false;
    for item in networks {
        let Ok(result) = item else { return false };
        let (first, last) = match result.network() {
            Ok(IpNetwork::V6(net)) => {
                let first = u128::from(net.network());
                let host = if net.prefix() == 128 { 0 } else { u128::MAX >> net.prefix() };
                (first, first | host)
            }
            // The IPv4 subtree at ::/96, reported in IPv4 terms.
            Ok(IpNetwork::V4(net)) => (u128::from(u32::from(net.network())), u128::from(u32::from(net.broadcast()))),
            Err(_) => return false,
        };
        if done || first < next {
            return false;
        }
        if first > next {
            f(next, first - 1, RangeLocation::PerAddress);
        }
        let location = match result.offset() {
            Some(offset) => *decoded.entry(offset).or_insert_with(|| match result.decode::<Record<'_>>() {
                Ok(Some(record)) => record.to_hit(0).location,
                _ => None,
            }),
            None => None,
        };
        f(first, last, location.map_or(RangeLocation::Nowhere, RangeLocation::At));
        done = last == u128::MAX;
        next = last.wrapping_add(1);
    }
    if !done {
        f(next, u128::MAX, RangeLocation::PerAddress);
    }
    true
}

/// Passes `first..=last` on to `f`, with the IPv6 special-purpose networks inside it cut out
/// and passed as `Nowhere` (as `locate` answers them).
fn without_special_v6(first: u128, last: u128, place: RangeLocation, f: &mut dyn FnMut(u128, u128, RangeLocation)) {
    let mut from = first;
    for (s, e) in special::v6_ranges() {
        if e < from || s > last {
            continue;
        }
        if s > from {
            f(from, s - 1, place);
        }
        f(s.max(from), e.min(last), RangeLocation::Nowhere);
        if e >= last {
            return;
        }
        from = e + 1;
    }
    f(from, last, place);
}

/// Passes `first..=last` on to `f`, with the special-purpose networks inside it cut out and
/// passed without a location (as `locate` answers them).
fn without_special(first: u32, last: u32, location: Option<Location>, f: &mut dyn FnMut(u32, u32, Option<Location>)) {
    let mut from = first;
    for (s, e) in special::v4_ranges() {
        if e < from || s > last {
            continue;
        }
        if s > from {
            f(from, s - 1, location);
        }
        f(s.max(from), e.min(last), None);
        if e >= last {
            return;
        }
        from = e + 1;
    }
    f(from, last, location);
}

impl Locator for GeoIpDb {
    fn for_each_ipv4_range(&self, f: &mut dyn FnMut(u32, u32, Option<Location>)) -> bool {
        let Some(reader) = self.scan_reader() else { return false };
        walk_ipv4(&reader, &mut |first, last, location| without_special(first, last, location, f))
    }

    fn for_each_ipv6_range(&self, f: &mut dyn FnMut(u128, u128, RangeLocation)) -> bool {
        if self.meta.ip_version == 4 {
            // An IPv4-only tree places no IPv6 address (see `locate`).
            f(0, u128::MAX, RangeLocation::Nowhere);
            return true;
        }
        let Some(reader) = self.scan_reader() else { return false };
        walk_ipv6(&reader, &mut |first, last, place| without_special_v6(first, last, place, f))
    }

    fn release_memory(&self) {
        // SAFETY: `map` is a read-only shared mapping of a file that is never modified in place
        // (see `open`). MADV_DONTNEED only drops this process's page table entries for it; the
        // next read of any byte faults the very same file contents back in, so every reference
        // into the mapping keeps seeing the same data.
        #[allow(unsafe_code)]
        let result = unsafe { self.map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        if let Err(error) = result {
            tracing::debug!(%error, path = ?self.path, "cannot release the GeoIP database's resident pages");
        }
    }

    fn locate(&self, ip: IpAddr) -> GeoHit {
        if let Some(prefix_len) = special::special_purpose(ip) {
            return GeoHit { prefix_len, ..GeoHit::default() };
        }
        if ip.is_ipv6() && self.meta.ip_version == 4 {
            // An IPv4-only tree holds no IPv6 data: every IPv6 address gets the same (empty)
            // answer, so the whole family is one network.
            return GeoHit::default();
        }
        let result = match self.reader.lookup(ip) {
            Ok(result) => result,
            Err(error) => {
                tracing::debug!(%ip, %error, path = ?self.path, "GeoIP lookup failed");
                return GeoHit { prefix_len: full_len(ip), ..GeoHit::default() };
            }
        };
        // `network()` counts an IPv4 address in an IPv6 tree in IPv4 terms (0-32) when the
        // tree has an IPv4 subtree at ::/96. Without one, the IPv4 space sits inside a
        // shorter IPv6 network, which `network()` reports as `::/n`: all of IPv4 then gets
        // one answer, i.e. prefix 0 in IPv4 terms.
        let prefix_len = match result.network() {
            Ok(net) if net.is_ipv4() == ip.is_ipv4() => net.prefix(),
            Ok(_) => 0,
            Err(error) => {
                tracing::debug!(%ip, %error, "GeoIP network of a lookup result");
                full_len(ip)
            }
        };
        let offset = result.offset();
        if let Some(offset) = offset {
            let cached = RECORDS.with_borrow(|c| (c.db == self.id).then(|| c.records.get(&offset).copied()).flatten());
            if let Some((location, country)) = cached {
                return GeoHit { location, country, prefix_len };
            }
        }
        match result.decode::<Record<'_>>() {
            Ok(Some(record)) => {
                let hit = record.to_hit(prefix_len);
                if let Some(offset) = offset {
                    RECORDS.with_borrow_mut(|c| {
                        if c.db != self.id || c.records.len() >= RECORD_CACHE_MAX {
                            c.db = self.id;
                            c.records.clear();
                        }
                        c.records.insert(offset, (hit.location, hit.country));
                    });
                }
                hit
            }
            Ok(None) => GeoHit { prefix_len, ..GeoHit::default() },
            Err(error) => {
                tracing::debug!(%ip, %error, path = ?self.path, "GeoIP record not decodable");
                GeoHit { prefix_len, ..GeoHit::default() }
            }
        }
    }
}
