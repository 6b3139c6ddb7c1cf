//! `geodns dnssec keygen` and `geodns dnssec ds`: what an operator runs to make a key and to
//! give the parent zone its DS records.

use std::path::Path;

use super::keys::{self, Algorithm, KeyError};
use super::read_keys;
use crate::cli::DnssecCommand;
use crate::config::{self, ConfigError};
use crate::model::Name;

/// TTL of the printed DS and DNSKEY records (the parent picks its own).
const PRINTED_TTL: u32 = 3600;

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("unknown algorithm {0:?} (use ecdsap256sha256 or ed25519)")]
    Algorithm(String),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Keys(String),
    #[error("{0}")]
    Zone(String),
}

impl ToolError {
    /// A config or key problem (exit code 78), rather than a failure to write.
    pub fn is_config(&self) -> bool {
        !matches!(self, ToolError::Key(KeyError::Write { .. } | KeyError::Generate))
    }
}

pub fn run(command: DnssecCommand) -> Result<String, ToolError> {
    match command {
        DnssecCommand::Keygen { file, algorithm } => keygen(&file, &algorithm),
        DnssecCommand::Ds { config, zone } => ds(&config, zone.as_deref()),
    }
}

/// Writes a new key; returns what to print: the key's tag and algorithm.
pub fn keygen(file: &Path, algorithm: &str) -> Result<String, ToolError> {
    let alg = Algorithm::parse(algorithm).ok_or_else(|| ToolError::Algorithm(algorithm.to_owned()))?;
    let key = keys::write_new(file, alg)?;
    Ok(format!("{}: key tag {}, algorithm {}\n", file.display(), key.key_tag(), alg.number()))
}

/// The DS records of every signed zone of the config at `path` (or of `zone` alone).
pub fn ds(path: &Path, zone: Option<&str>) -> Result<String, ToolError> {
    let config = config::load(path)?;
    let wanted = match zone {
        Some(z) => Some(Name::parse_absolute(z).map_err(|e| ToolError::Zone(format!("{z:?}: {e}")))?),
        None => None,
    };
    let zones = read_keys(&config)
        .map_err(|errors| ToolError::Keys(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")))?;
    let mut out = String::new();
    for z in zones.iter().filter(|z| wanted.as_ref().is_none_or(|w| *w == z.apex)) {
        for key in z.keys.iter().filter(|k| k.role.signs_keys()) {
            out.push_str(&key.ds_text(&z.apex, PRINTED_TTL));
            out.push('\n');
        }
    }
    if out.is_empty() {
        return Err(ToolError::Zone(match wanted {
            Some(w) => format!("{w} is not a signed zone of {}", path.display()),
            None => format!("{} has no signed zone (zones.<zone>.dnssec)", path.display()),
        }));
    }
    Ok(out)
}
