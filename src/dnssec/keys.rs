//! Signing keys: PKCS#8 PEM files in and out, their DNSKEY records, key tags (RFC 4034,
//! appendix B) and DS digests (SHA-256, RFC 4509).

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};

use super::wire;
use crate::model::Name;

/// The signing algorithms offered (their DNSSEC numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// ECDSA on P-256 with SHA-256 (13): the default; small signatures, universally validated.
    EcdsaP256Sha256,
    /// Ed25519 (15).
    Ed25519,
}

impl Algorithm {
    pub const NAMES: [(&'static str, Algorithm); 2] =
        [("ecdsap256sha256", Algorithm::EcdsaP256Sha256), ("ed25519", Algorithm::Ed25519)];

    pub fn number(self) -> u8 {
        match self {
            Algorithm::EcdsaP256Sha256 => 13,
            Algorithm::Ed25519 => 15,
        }
    }

    pub fn parse(text: &str) -> Option<Algorithm> {
        Self::NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(text)).map(|(_, a)| *a)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{}: not a PEM \"PRIVATE KEY\" (PKCS#8) file", path.display())]
    NotPem { path: PathBuf },
    #[error("{}: not an ECDSA P-256 or Ed25519 PKCS#8 key", path.display())]
    BadKey { path: PathBuf },
    #[error("cannot generate a key")]
    Generate,
}

enum Pair {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// What a key signs (docs/dnssec.md, "A KSK/ZSK split").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// A combined signing key (CSK): every RRset; its DS goes to the parent.
    Combined,
    /// A key-signing key (KSK): the DNSKEY, CDS and CDNSKEY sets; its DS goes to the parent.
    KeySigning,
    /// A zone-signing key (ZSK): every other RRset; no DS.
    ZoneSigning,
}

impl Role {
    /// DNSKEY flags: 257 (zone key, secure entry point) for a key the parent's DS names, 256
    /// (zone key) for a ZSK.
    pub fn flags(self) -> u16 {
        match self {
            Role::Combined | Role::KeySigning => 257,
            Role::ZoneSigning => 256,
        }
    }

    /// True for a key that signs the DNSKEY, CDS and CDNSKEY sets (a secure entry point).
    pub fn signs_keys(self) -> bool {
        self != Role::ZoneSigning
    }

    /// True for a key that signs the zone's other RRsets.
    pub fn signs_zone(self) -> bool {
        self != Role::KeySigning
    }
}

/// A private key ready to sign, with its public DNSKEY.
pub struct SigningKey {
    pub algorithm: Algorithm,
    pair: Pair,
    /// What the key signs, which sets its DNSKEY flags.
    pub role: Role,
    /// DNSKEY flags ([`Role::flags`]).
    pub flags: u16,
    /// The DNSKEY public key field.
    pub public: Vec<u8>,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .field("role", &self.role)
            .field("tag", &self.key_tag())
            .finish()
    }
}

impl SigningKey {
    /// Reads a PKCS#8 PEM key file.
    pub fn read(path: &Path) -> Result<SigningKey, KeyError> {
        let bytes = std::fs::read(path).map_err(|source| KeyError::Read { path: path.into(), source })?;
        let der = pem_decode(&String::from_utf8_lossy(&bytes)).ok_or_else(|| KeyError::NotPem { path: path.into() })?;
        SigningKey::from_pkcs8(&der).ok_or_else(|| KeyError::BadKey { path: path.into() })
    }

    /// A key from PKCS#8 PEM text.
    pub fn from_pem(text: &str) -> Option<SigningKey> {
        SigningKey::from_pkcs8(&pem_decode(text)?)
    }

    /// A key from PKCS#8 DER: ECDSA P-256 or Ed25519 (PKCS#8 v1 or v2).
    pub fn from_pkcs8(der: &[u8]) -> Option<SigningKey> {
        let rng = SystemRandom::new();
        let (algorithm, pair, public) =
            if let Ok(k) = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng) {
                // The uncompressed point 0x04 || X || Y; DNSKEY holds X || Y (RFC 6605).
                let public = k.public_key().as_ref()[1..].to_vec();
                (Algorithm::EcdsaP256Sha256, Pair::Ecdsa(k), public)
            } else if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
                let public = k.public_key().as_ref().to_vec();
                (Algorithm::Ed25519, Pair::Ed25519(k), public)
            } else {
                return None;
            };
        Some(SigningKey { algorithm, pair, role: Role::Combined, flags: Role::Combined.flags(), public, rng })
    }

    /// This key in `role`.
    pub fn with_role(self, role: Role) -> SigningKey {
        SigningKey { role, flags: role.flags(), ..self }
    }

    /// The DNSKEY RDATA: flags, protocol 3, algorithm, public key.
    pub fn dnskey(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.public.len());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.push(3);
        out.push(self.algorithm.number());
        out.extend_from_slice(&self.public);
        out
    }

    /// The key tag (RFC 4034, appendix B) validators compute from the DNSKEY.
    pub fn key_tag(&self) -> u16 {
        key_tag(&self.dnskey())
    }

    /// The DS RDATA (digest type 2, SHA-256) for this key at `apex`; also the CDS RDATA.
    pub fn ds(&self, apex: &Name) -> Vec<u8> {
        let dnskey = self.dnskey();
        let digest = ds_digest(apex.as_str(), &dnskey, 2).expect("SHA-256 is a digest type");
        let mut out = Vec::with_capacity(4 + 32);
        out.extend_from_slice(&key_tag(&dnskey).to_be_bytes());
        out.push(self.algorithm.number());
        out.push(2);
        out.extend_from_slice(&digest);
        out
    }

    /// The DS record in zone-file syntax.
    pub fn ds_text(&self, apex: &Name, ttl: u32) -> String {
        let ds = self.ds(apex);
        let hex: String = ds[4..].iter().map(|b| format!("{b:02X}")).collect();
        format!("{} {ttl} IN DS {} {} 2 {hex}", apex, self.key_tag(), self.algorithm.number())
    }

    /// The DNSKEY record in zone-file syntax (a trust anchor).
    pub fn dnskey_text(&self, apex: &Name, ttl: u32) -> String {
        let key = STANDARD.encode(&self.public);
        format!("{} {ttl} IN DNSKEY {} 3 {} {key}", apex, self.flags, self.algorithm.number())
    }

    /// Signs `data`: 64 bytes, r || s for ECDSA (RFC 6605), the signature for Ed25519.
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        match &self.pair {
            Pair::Ecdsa(k) => k.sign(&self.rng, data).expect("signing with a valid key cannot fail").as_ref().to_vec(),
            Pair::Ed25519(k) => k.sign(data).as_ref().to_vec(),
        }
    }
}

/// RFC 4034, appendix B: the one's-complement-free sum over the DNSKEY RDATA.
pub fn key_tag(dnskey: &[u8]) -> u16 {
    let mut ac: u32 = 0;
    for (i, b) in dnskey.iter().enumerate() {
        ac += if i & 1 == 1 { u32::from(*b) } else { u32::from(*b) << 8 };
    }
    ac += (ac >> 16) & 0xffff;
    (ac & 0xffff) as u16
}

/// A DS digest (RFC 4034, section 5.1.4) of the DNSKEY RDATA `dnskey` owned by `owner`: digest
/// type 1 (SHA-1, still seen at parents), 2 (SHA-256, RFC 4509) or 4 (SHA-384, RFC 6605); `None`
/// for another digest type.
pub fn ds_digest(owner: &str, dnskey: &[u8], digest_type: u8) -> Option<Vec<u8>> {
    let algorithm = match digest_type {
        1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        2 => &ring::digest::SHA256,
        4 => &ring::digest::SHA384,
        _ => return None,
    };
    let mut data = wire::name(owner);
    data.extend_from_slice(dnskey);
    Some(ring::digest::digest(algorithm, &data).as_ref().to_vec())
}

/// A new key of `algorithm`, as PKCS#8 PEM text.
pub fn generate(algorithm: Algorithm) -> Result<String, KeyError> {
    let rng = SystemRandom::new();
    let der = match algorithm {
        Algorithm::EcdsaP256Sha256 => EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| KeyError::Generate)?,
        Algorithm::Ed25519 => Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Generate)?,
    };
    Ok(pem_encode(der.as_ref()))
}

/// Writes a new key to `path` (readable by its owner only); refuses to overwrite a file.
pub fn write_new(path: &Path, algorithm: Algorithm) -> Result<SigningKey, KeyError> {
    use std::io::Write;
    let pem = generate(algorithm)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|source| KeyError::Write { path: path.into(), source })?;
    file.write_all(pem.as_bytes()).map_err(|source| KeyError::Write { path: path.into(), source })?;
    let der = pem_decode(&pem).expect("just encoded");
    Ok(SigningKey::from_pkcs8(&der).expect("just generated"))
}

fn pem_encode(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

fn pem_decode(text: &str) -> Option<Vec<u8>> {
    let start = text.find("-----BEGIN PRIVATE KEY-----")? + "-----BEGIN PRIVATE KEY-----".len();
    let end = start + text[start..].find("-----END PRIVATE KEY-----")?;
    let b64: String = text[start..end].chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(b64).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_tag_and_ds_match_rfc_4509s_example() {
        // RFC 4509, section 2.3: dskey.example.com. DNSKEY 256 3 5 ... has key tag 60485 and
        // this SHA-256 DS digest.
        let public = STANDARD
            .decode(
                "AQOeiiR0GOMYkDshWoSKz9XzfwJr1AYtsmx3TGkJaNXVbfi/2pHm822aJ5iI9BMzNXxeYCmZDRD99WYwYqUSdjMmmAphXdvxegXd/M5+X7OrzKBaMbCVdFLUUh6DhweJBjEVv5f2wwjM9XzcnOf+EPbtG9DMBmADjFDc2w/rljwvFw==",
            )
            .unwrap();
        let mut dnskey = vec![1, 0, 3, 5];
        dnskey.extend_from_slice(&public);
        assert_eq!(key_tag(&dnskey), 60485);
        let mut data = wire::name("dskey.example.com.");
        data.extend_from_slice(&dnskey);
        let digest = ring::digest::digest(&ring::digest::SHA256, &data);
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(hex, "D4B7D520E7BB5F0F67674A0CCEB1E3E0614B93C4F9E99B8383F6A1E4469DA50A");
    }

    #[test]
    fn generated_keys_read_back_and_sign() {
        for alg in [Algorithm::EcdsaP256Sha256, Algorithm::Ed25519] {
            let pem = generate(alg).unwrap();
            let key = SigningKey::from_pkcs8(&pem_decode(&pem).unwrap()).unwrap();
            assert_eq!(key.algorithm, alg);
            assert_eq!(key.public.len(), if alg == Algorithm::Ed25519 { 32 } else { 64 });
            assert_eq!(key.sign(b"data").len(), 64);
            let apex = Name::parse_absolute("geo.example.").unwrap();
            assert_eq!(key.ds(&apex).len(), 36);
            assert!(key.ds_text(&apex, 3600).starts_with("geo.example. 3600 IN DS "));
        }
        assert!(pem_decode("not a key").is_none());
        assert!(SigningKey::from_pkcs8(b"junk").is_none());
    }
}
