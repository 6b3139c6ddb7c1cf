use std::fmt;
use std::sync::Arc;

/// A fully qualified domain name in canonical form: lower case ASCII, with the trailing dot
/// ("app.geo.example."). The root is ".". Cheap to clone (shared storage).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(Arc<str>);

/// Names hash and compare as their canonical text, so maps keyed by `Name` can be searched
/// with a `&str` (the fast path looks names up without allocating one).
impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty name")]
    Empty,
    #[error("empty label in {0:?}")]
    EmptyLabel(String),
    #[error("label longer than 63 octets in {0:?}")]
    LabelTooLong(String),
    #[error("name longer than 253 characters: {0:?}")]
    TooLong(String),
    #[error("name {0:?} has characters other than letters, digits, '-', '_' and '*'")]
    BadCharacter(String),
}

impl Name {
    /// The root name ".".
    pub fn root() -> Self {
        Name(Arc::from("."))
    }

    /// Parses an absolute name; a missing trailing dot is added.
    pub fn parse_absolute(text: &str) -> Result<Self, NameError> {
        if text == "." {
            return Ok(Self::root());
        }
        let trimmed = text.strip_suffix('.').unwrap_or(text);
        if trimmed.is_empty() {
            return Err(NameError::Empty);
        }
        if trimmed.len() > 253 {
            return Err(NameError::TooLong(text.to_owned()));
        }
        for label in trimmed.split('.') {
            if label.is_empty() {
                return Err(NameError::EmptyLabel(text.to_owned()));
            }
            if label.len() > 63 {
                return Err(NameError::LabelTooLong(text.to_owned()));
            }
            if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*') {
                return Err(NameError::BadCharacter(text.to_owned()));
            }
        }
        let mut canonical = trimmed.to_ascii_lowercase();
        canonical.push('.');
        Ok(Name(Arc::from(canonical)))
    }

    /// Resolves a name as written in a zone: "@" is the origin, a name ending in a dot is
    /// absolute, anything else is relative to the origin.
    pub fn resolve(text: &str, origin: &Name) -> Result<Self, NameError> {
        if text == "@" {
            return Ok(origin.clone());
        }
        if text.ends_with('.') {
            return Self::parse_absolute(text);
        }
        if text.is_empty() {
            return Err(NameError::Empty);
        }
        if origin.is_root() {
            return Self::parse_absolute(text);
        }
        Self::parse_absolute(&format!("{text}.{}", origin.as_str()))
    }

    /// Builds a name from wire-format text that is already known to be a valid name (for
    /// example one hickory decoded); only lower-cases it and ensures the trailing dot.
    pub fn from_ascii_lossy(text: &str) -> Self {
        let mut s = text.to_ascii_lowercase();
        if !s.ends_with('.') {
            s.push('.');
        }
        Name(Arc::from(s))
    }

    /// A name from text already in canonical form (lower case, trailing dot), as the fast
    /// path's parser produces it: one allocation, no checks beyond a debug assertion.
    pub fn from_canonical(text: &str) -> Self {
        debug_assert!(text.ends_with('.') && !text.bytes().any(|b| b.is_ascii_uppercase()), "{text:?}");
        Name(Arc::from(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        &*self.0 == "."
    }

    /// Number of labels, not counting the root ("a.b." has 2).
    pub fn label_count(&self) -> usize {
        if self.is_root() { 0 } else { self.0.matches('.').count() }
    }

    /// True when `self` equals `zone` or lies below it.
    pub fn is_in(&self, zone: &Name) -> bool {
        if zone.is_root() || self == zone {
            return true;
        }
        self.0.len() > zone.0.len()
            && self.0.ends_with(&*zone.0)
            && self.0.as_bytes()[self.0.len() - zone.0.len() - 1] == b'.'
    }

    /// The name one label up ("a.b." -> "b."); the root has none.
    pub fn parent(&self) -> Option<Name> {
        if self.is_root() {
            return None;
        }
        match self.0.find('.') {
            Some(i) if i + 1 < self.0.len() => Some(Name(Arc::from(&self.0[i + 1..]))),
            _ => Some(Name::root()),
        }
    }

    /// The name relative to `zone` ("app" for "app.geo.example." in "geo.example.", "@" for the apex).
    pub fn relative_to(&self, zone: &Name) -> String {
        if self == zone {
            return "@".to_owned();
        }
        if zone.is_root() {
            return self.0.trim_end_matches('.').to_owned();
        }
        if self.is_in(zone) {
            return self.0[..self.0.len() - zone.0.len() - 1].to_owned();
        }
        self.0.to_string()
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::parse_absolute(s).unwrap()
    }

    #[test]
    fn parse_canonicalises() {
        assert_eq!(n("App.Geo.Example").as_str(), "app.geo.example.");
        assert_eq!(n("app.geo.example.").as_str(), "app.geo.example.");
        assert!(n(".").is_root());
        assert_eq!(Name::parse_absolute("a..b"), Err(NameError::EmptyLabel("a..b".into())));
        assert!(matches!(Name::parse_absolute(&"x".repeat(64)), Err(NameError::LabelTooLong(_))));
        assert!(matches!(Name::parse_absolute("a b"), Err(NameError::BadCharacter(_))));
        assert_eq!(Name::parse_absolute(""), Err(NameError::Empty));
    }

    #[test]
    fn resolve_relative_and_absolute() {
        let zone = n("geo.example.");
        assert_eq!(Name::resolve("@", &zone).unwrap(), zone);
        assert_eq!(Name::resolve("app", &zone).unwrap(), n("app.geo.example."));
        assert_eq!(Name::resolve("host.ent", &zone).unwrap(), n("host.ent.geo.example."));
        assert_eq!(Name::resolve("other.org.", &zone).unwrap(), n("other.org."));
    }

    #[test]
    fn hierarchy() {
        let zone = n("geo.example.");
        assert!(n("a.geo.example.").is_in(&zone));
        assert!(zone.is_in(&zone));
        assert!(!n("ageo.example.").is_in(&zone));
        assert!(!n("example.").is_in(&zone));
        assert_eq!(n("a.b.geo.example.").parent(), Some(n("b.geo.example.")));
        assert_eq!(n("example.").parent(), Some(Name::root()));
        assert_eq!(n("host.ent.geo.example.").label_count(), 4);
        assert_eq!(n("host.ent.geo.example.").relative_to(&zone), "host.ent");
        assert_eq!(zone.relative_to(&zone), "@");
    }
}
