//! The configuration file: YAML -> wire structs (`deny_unknown_fields`) -> a pure validation
//! step that reports every problem with its path -> [`Config`].
//!
//! Owns parsing and validation only: it reads the one file it is given and nothing else (the
//! GeoIP file named in it is opened by the caller). Imports `model` only.

mod admin_state;
mod duration;
mod model;
mod validate;
mod wire;

use std::fmt;
use std::path::{Path, PathBuf};

pub use admin_state::{AdminState, Forced, parse_admin_state};
pub use duration::parse as parse_duration;
pub use model::*;
pub use validate::{
    DEFAULT_DNS_LISTEN, DEFAULT_FALL, DEFAULT_INTERVAL, DEFAULT_KUBE_SYNC_TIMEOUT, DEFAULT_RISE,
    DEFAULT_SHUTDOWN_GRACE, DEFAULT_TCP_TIMEOUT, DEFAULT_TIMEOUT, DEFAULT_ZONE_TTL, decode_secret,
};

/// One problem in a config file, with the path of the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `zones."geo.example.".geo.app.sites.fra`; empty for the document itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path:?}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path:?}: {problem}")]
    Syntax { path: PathBuf, problem: Problem },
    #[error("{path:?} has {} problem{}:\n{}", problems.len(), if problems.len() == 1 { "" } else { "s" }, list(problems))]
    Invalid { path: PathBuf, problems: Vec<Problem> },
}

fn list(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
}

impl ConfigError {
    /// Every problem found (one for read and syntax errors).
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            ConfigError::Read { source, .. } => {
                vec![Problem { path: String::new(), message: source.to_string() }]
            }
            ConfigError::Syntax { problem, .. } => vec![problem.clone()],
            ConfigError::Invalid { problems, .. } => problems.clone(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ConfigError::Read { .. } => "read",
            ConfigError::Syntax { .. } => "syntax",
            ConfigError::Invalid { .. } => "invalid",
        }
    }
}

/// Reads, parses and validates a config file. Relative paths inside it (the GeoIP database,
/// kubeconfigs) are taken relative to the file's own directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).map_err(|e| match e {
        ParseError::Syntax(problem) => ConfigError::Syntax { path: path.to_owned(), problem },
        ParseError::Invalid(problems) => ConfigError::Invalid { path: path.to_owned(), problems },
    })
}

#[derive(Debug)]
pub enum ParseError {
    Syntax(Problem),
    Invalid(Vec<Problem>),
}

impl ParseError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            ParseError::Syntax(p) => std::slice::from_ref(p),
            ParseError::Invalid(p) => p,
        }
    }
}

/// Parses and validates config text; `base` is the directory relative paths are taken from.
pub fn parse(text: &str, base: &Path) -> Result<Config, ParseError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let file: wire::File = serde_path_to_error::deserialize(de).map_err(|e| {
        let mut segments: Vec<String> = e.path().iter().map(|seg| seg.to_string()).filter(|s| s != "?").collect();
        let inner = e.into_inner();
        let mut message = inner.to_string();
        // The YAML error repeats the path in front of its message; keep the message alone.
        if let Some((head, tail)) = message.split_once(": ")
            && !head.contains(' ')
            && !segments.is_empty()
        {
            message = tail.to_owned();
        }
        // An unknown key is a problem of the mapping that holds it.
        if message.starts_with("unknown field") {
            segments.pop();
        }
        let path = segments.into_iter().fold(String::new(), |acc, seg| {
            let plain = seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'@');
            let seg = if seg.starts_with('[') || plain { seg } else { format!("{seg:?}") };
            if acc.is_empty() || seg.starts_with('[') { acc + &seg } else { format!("{acc}.{seg}") }
        });
        ParseError::Syntax(Problem { path, message })
    })?;
    validate::validate(file, base).map_err(ParseError::Invalid)
}

#[cfg(test)]
mod tests;
