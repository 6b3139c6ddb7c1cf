//! The load step shared by `serve` and `check`: read and validate the config, open the GeoIP
//! database it names, and build routing tables from them ([`Loaded`]). Also fills the rank
//! slots builds ask for ([`Loaded::fill_rankings`]): the routing core only asks; this module
//! builds the tables, logs what they cost, and places them in memory (`pages`).
//!
//! Signed zones (docs/dnssec.md): the keys are read here, and every table built here is
//! signed here, on the calling (build) thread, before it is returned for publishing; the
//! signatures of the table it follows are reused for unchanged RRsets.
//!
//! Imports config, geoip, routing and dnssec; never app, check, dns, sources or admin.

mod pages;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::config::{self, Config, ConfigError};
use crate::dnssec::{self, KeyFileError, ZoneKeys};
use crate::geoip::{GeoIpDb, GeoIpError};
use crate::model::{Locator, NoLocator};
use crate::routing::{self, AddressIndex, Built, Inputs, RankTables, Rankings};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    GeoIp(#[from] GeoIpError),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Keys(Vec<KeyFileError>),
    /// A `tsig_keys.<name>.secret_file` that cannot be read or is not a base64 secret.
    #[error("tsig_keys.{key}.secret_file: {path:?}: {message}")]
    TsigSecret { key: String, path: std::path::PathBuf, message: String },
    /// A `zones.<zone>.updates.journal` whose directory does not exist.
    #[error("zones.{zone:?}.updates.journal: the directory {dir:?} does not exist")]
    JournalDir { zone: String, dir: std::path::PathBuf },
}

/// A validated config with its GeoIP database open: everything a routing table is built from.
#[derive(Clone)]
pub struct Loaded {
    pub config: Config,
    /// `None` when the config names no database.
    pub geoip: Option<Arc<GeoIpDb>>,
    /// Precomputed IPv4 site rankings over `geoip`, shared by every table built from this.
    pub ranks: Arc<RankTables>,
    /// Fill rank slots as soon as a build asks for them (a small database: the first table has
    /// its rankings, so answers and scopes do not change once serving); else the app fills them
    /// in the background ([`Loaded::fill_rankings`]).
    pub rank_in_foreground: bool,
    /// Which names have each configured address, for incremental rebuilds: made by the first
    /// [`Loaded::rebuild`], on the build thread, and shared by clones.
    index: Arc<OnceLock<Arc<AddressIndex>>>,
    /// The signing keys of the signed zones (none for an unsigned config).
    pub keys: Arc<Vec<ZoneKeys>>,
    /// The `tsig_keys.<name>.secret_file` files read (their secrets are now inline in
    /// `config`): a change to one reloads the config, like a change to the config file.
    pub secret_files: Vec<PathBuf>,
}

impl Loaded {
    pub fn locator(&self) -> Arc<dyn Locator> {
        match &self.geoip {
            Some(db) => db.clone(),
            None => Arc::new(NoLocator),
        }
    }

    /// Builds a routing table from this state and the given run-time inputs (signed).
    pub fn build(&self, inputs: impl Into<Arc<Inputs>>, generation: u64) -> Built {
        let built = self.build_unsigned(inputs, generation);
        self.sign(&built, None);
        built
    }

    /// [`Loaded::build`] without signing.
    fn build_unsigned(&self, inputs: impl Into<Arc<Inputs>>, generation: u64) -> Built {
        let built = routing::build_with(
            &self.config,
            self.locator(),
            Some(&self.ranks),
            self.index.get(),
            inputs.into(),
            generation,
        );
        self.foreground_rankings();
        built
    }

    /// [`Loaded::build`], reusing the signatures of `previous` (a table built before) for
    /// the RRsets that did not change.
    pub fn build_after(&self, previous: &Built, inputs: impl Into<Arc<Inputs>>, generation: u64) -> Built {
        let built = self.build_unsigned(inputs, generation);
        self.sign(&built, Some(previous.table()));
        built
    }

    /// Signs the signed zones of `built` (reusing `previous`'s signatures where the RRsets
    /// are unchanged) and attaches the signatures to its table. Now, before it is published.
    pub fn sign(&self, built: &Built, previous: Option<&routing::RoutingTable>) {
        if self.keys.is_empty() {
            return;
        }
        let started = Instant::now();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let previous = previous.and_then(|t| Some((t, t.signed()?)));
        let (signed, stats) = dnssec::sign_table(built.table(), &self.keys, now, previous);
        built.table().set_signed(Arc::new(signed));
        let ms = started.elapsed().as_millis() as u64;
        if stats.signed > 0 {
            tracing::info!(signed = stats.signed, reused = stats.reused, ms, "zones signed");
        } else {
            tracing::debug!(reused = stats.reused, ms, "zones signed (every signature reused)");
        }
    }

    /// True when the table's signatures must be made again: some expire within their
    /// zone's refresh margin of `now` (seconds since the epoch).
    pub fn needs_resigning(&self, table: &routing::RoutingTable, now: u64) -> bool {
        let margin = self.keys.iter().map(|z| z.lifetimes.refresh.as_secs()).min().unwrap_or(0);
        table.signed().and_then(routing::Signed::earliest_expiry).is_some_and(|e| u64::from(e) <= now + margin)
    }

    /// The table for new run-time inputs, built from `previous` (a table built from this
    /// state): the routes no change reaches are shared with it, and only the names a change
    /// reaches are built again (see `routing::rebuild`). A full build otherwise.
    pub fn rebuild(&self, previous: &Built, inputs: impl Into<Arc<Inputs>>, generation: u64) -> Built {
        let index = self.index.get_or_init(|| Arc::new(AddressIndex::new(&self.config)));
        let built = routing::rebuild(
            &self.config,
            self.locator(),
            Some(&self.ranks),
            index,
            previous,
            inputs.into(),
            generation,
        );
        self.foreground_rankings();
        self.sign(&built, Some(previous.table()));
        built
    }

    /// [`Loaded::build`], with every precomputed site ranking it asks for built first: answers
    /// and ECS scopes exactly as a running server gives them once started. For `geodns check`,
    /// which explains one answer and exits: not signed (routing is the same either way).
    pub fn build_settled(&self, inputs: impl Into<Arc<Inputs>>, generation: u64) -> Built {
        let built = self.build_unsigned(inputs, generation);
        self.fill_rankings();
        built
    }

    /// True when a build asked for rankings that are not built yet.
    pub fn rankings_pending(&self) -> bool {
        !self.ranks.pending().is_empty()
    }

    fn foreground_rankings(&self) {
        if self.rank_in_foreground {
            self.fill_rankings();
        }
    }

    /// Builds the rank tables builds asked for and have not got (about a second each for a
    /// City database), in the calling thread. The tables already built keep serving meanwhile;
    /// each is used by the routes that asked for it as soon as it is filled.
    pub fn fill_rankings(&self) {
        let pending = self.ranks.pending();
        if pending.is_empty() {
            return;
        }
        let locator = self.locator();
        for slot in pending {
            let started = Instant::now();
            let tables = pages::place(Rankings::build(&*locator, &slot.sites()));
            let ms = started.elapsed().as_millis() as u64;
            match (&tables.v4, &tables.v6) {
                (None, None) => tracing::debug!("the locator cannot be enumerated: no precomputed site rankings"),
                (v4, v6) => tracing::info!(
                    sites = slot.sites().len(),
                    ranges_v4 = v4.as_ref().map_or(0, |t| t.ranges()),
                    ranges_v6 = v6.as_ref().map_or(0, |t| t.ranges()),
                    whole_blocks_pct_v4 = v4.as_ref().map_or(0, |t| t.whole_blocks_pct()),
                    whole_blocks_pct_v6 = v6.as_ref().map_or(0, |t| t.whole_blocks_pct()),
                    kib =
                        (v4.as_ref().map_or(0, |t| t.heap_bytes()) + v6.as_ref().map_or(0, |t| t.heap_bytes())) / 1024,
                    ms,
                    "site rankings precomputed"
                ),
            }
            slot.fill(tables);
        }
        // Queries now rarely walk the database: let its pages go.
        locator.release_memory();
    }
}

/// Reads and validates the config file and opens the GeoIP database it names.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    open(config::load(path)?)
}

/// GeoIP databases up to this size get their site rankings before serving (see `open`).
const FOREGROUND_RANKING_MAX_BYTES: u64 = 16 << 20;

/// Reads the TSIG secrets the config keeps in files (base64 text, as `tsig-keygen` prints it
/// and as a Kubernetes Secret mounts it).
fn read_tsig_secrets(config: &mut Config) -> Result<Vec<PathBuf>, LoadError> {
    let mut files = Vec::new();
    for key in &mut config.tsig_keys {
        if let config::TsigSecret::File(path) = &key.secret {
            files.push(path.clone());
            let err = |message: String| LoadError::TsigSecret {
                key: key.name.as_str().trim_end_matches('.').to_owned(),
                path: path.clone(),
                message,
            };
            let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
            key.secret = config::TsigSecret::Inline(config::decode_secret(&text).map_err(err)?);
        }
    }
    Ok(files)
}

/// Opens the GeoIP database a validated config names.
pub fn open(mut config: Config) -> Result<Loaded, LoadError> {
    let secret_files = read_tsig_secrets(&mut config)?;
    for zone in &config.zones {
        if let Some(journal) = zone.updates.as_ref().and_then(|u| u.store.journal()) {
            let dir = journal.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if !dir.is_dir() {
                return Err(LoadError::JournalDir { zone: zone.apex.to_string(), dir: dir.to_owned() });
            }
        }
    }
    let geoip = match &config.geoip {
        Some(path) => Some(Arc::new(GeoIpDb::open(path)?)),
        None => None,
    };
    // A small database (the shipped country one) is ranked before the first table is served;
    // a City database (100+ MB, about a second) in the background while answers are served.
    let rank_in_foreground = geoip.as_ref().is_none_or(|db| db.file_len() <= FOREGROUND_RANKING_MAX_BYTES);
    let keys = Arc::new(dnssec::read_keys(&config).map_err(LoadError::Keys)?);
    Ok(Loaded {
        config,
        geoip,
        ranks: Arc::new(RankTables::new()),
        rank_in_foreground,
        index: Arc::default(),
        keys,
        secret_files,
    })
}
