//! UPDATE (opcode 5, RFC 2136) on the full path: read the message ([`wire`]), verify its TSIG
//! (RFC 8945, HMAC-SHA256/512 with ring, over the message's own bytes), hand the request to the
//! [`UpdateService`] the app provides (policy, prerequisites, the journal), and answer with a
//! response signed with the request's key. Updates are rare: they never touch the fast path
//! (its reader sends every opcode but QUERY here).
//!
//! TSIG errors answer NOTAUTH with the TSIG error: BADKEY (unknown key or algorithm) and
//! BADSIG (wrong MAC) unsigned, BADTIME (outside the fudge) signed with the server's time.
//! An update without TSIG is REFUSED. Every refusal is logged with its reason.

pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use ::metrics::counter;
use ring::hmac;
use tracing::{debug, warn};

use crate::config::{TsigAlgorithm, TsigKeyConfig, TsigSecret};
use crate::metrics;
use crate::model::{Name, UpdateRcode, UpdateRequest};
use wire::{CLASS_ANY, Malformed, Message, TYPE_TSIG, Tsig, name_wire};

/// What applies authenticated updates: the app's update task. Keys are asked for by name.
pub trait UpdateService: Send + Sync + 'static {
    /// The TSIG key of this name (with its secret read), if configured.
    fn key(&self, name: &Name) -> Option<TsigKeyConfig>;
    /// Applies the request (durably) and says how it went; NOTAUTH for a zone not served.
    /// `verified_with` is the key the request's MAC was verified with: keys can be reloaded
    /// between [`key`](Self::key) and this call, and the request is checked against one set
    /// of keys and rules only.
    fn submit(
        &self,
        request: UpdateRequest,
        verified_with: &TsigKeyConfig,
    ) -> Pin<Box<dyn Future<Output = UpdateRcode> + Send>>;
}

pub const BADSIG: u16 = 16;
pub const BADKEY: u16 = 17;
pub const BADTIME: u16 = 18;

/// True when the message is an UPDATE request (QR=0, opcode 5).
pub fn is_update(packet: &[u8]) -> bool {
    packet.len() >= 12 && packet[2] & 0x80 == 0 && (packet[2] >> 3) & 0x0F == 5
}

fn algorithm(a: TsigAlgorithm) -> hmac::Algorithm {
    match a {
        TsigAlgorithm::HmacSha256 => hmac::HMAC_SHA256,
        TsigAlgorithm::HmacSha512 => hmac::HMAC_SHA512,
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The TSIG variables (RFC 8945 section 4.3.3) appended to what is digested.
fn variables(out: &mut Vec<u8>, key: &Name, alg: &Name, time: u64, fudge: u16, error: u16, other: &[u8]) {
    name_wire(key, out);
    out.extend_from_slice(&CLASS_ANY.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    name_wire(alg, out);
    out.extend_from_slice(&time.to_be_bytes()[2..]);
    out.extend_from_slice(&fudge.to_be_bytes());
    out.extend_from_slice(&error.to_be_bytes());
    out.extend_from_slice(&(other.len() as u16).to_be_bytes());
    out.extend_from_slice(other);
}

/// The bytes a request's MAC covers: the message before its TSIG, with the original ID and
/// one fewer additional record, then the TSIG variables.
fn request_digest_input(packet: &[u8], t: &Tsig) -> Vec<u8> {
    let mut m = packet[..t.start].to_vec();
    m[0..2].copy_from_slice(&t.original_id.to_be_bytes());
    let ar = u16::from_be_bytes([m[10], m[11]]).saturating_sub(1);
    m[10..12].copy_from_slice(&ar.to_be_bytes());
    variables(&mut m, &t.key, &t.algorithm, t.time, t.fudge, t.error, &t.other);
    m
}

/// How the response is signed.
enum Sign {
    /// Not at all (no TSIG in the request, or malformed).
    No,
    /// An unsigned TSIG record carrying an error (BADKEY, BADSIG).
    Error(Tsig, u16),
    /// Signed with this key, after the request's MAC; BADTIME carries the server's time.
    With(Tsig, TsigKeyConfig, u16),
}

/// The response to an UPDATE message from `src`.
pub async fn respond(service: Option<&dyn UpdateService>, packet: &[u8], src: SocketAddr) -> Vec<u8> {
    let (msg, rcode, sign) = match wire::read(packet) {
        Err(Malformed(why)) => {
            debug!(client = %src, reason = why, "malformed UPDATE answered FORMERR");
            counter!(metrics::UPDATES, "result" => UpdateRcode::FormErr.as_str()).increment(1);
            return response(packet, None, UpdateRcode::FormErr, Sign::No);
        }
        Ok(msg) => {
            let (rcode, sign) = handle(service, packet, &msg, src).await;
            (msg, rcode, sign)
        }
    };
    let result = match &sign {
        Sign::Error(_, BADKEY) | Sign::With(_, _, BADKEY) => "BADKEY",
        Sign::Error(_, BADSIG) | Sign::With(_, _, BADSIG) => "BADSIG",
        Sign::Error(_, BADTIME) | Sign::With(_, _, BADTIME) => "BADTIME",
        _ => rcode.as_str(),
    };
    counter!(metrics::UPDATES, "result" => result).increment(1);
    response(packet, Some(&msg), rcode, sign)
}

/// Refusals that anyone can cause with a forged source (no service, unsigned, unknown key, bad
/// MAC, malformed) are logged at debug only, so a flood of them cannot flood the logs; every
/// one is counted in `geodns_updates_total`. Refusals of validly signed updates (policy,
/// BADTIME) are logged at warn.
async fn handle(
    service: Option<&dyn UpdateService>,
    packet: &[u8],
    msg: &Message,
    src: SocketAddr,
) -> (UpdateRcode, Sign) {
    let Some(service) = service else {
        debug!(client = %src, zone = %msg.zone, reason = "this server takes no updates", "UPDATE refused");
        return (UpdateRcode::Refused, Sign::No);
    };
    let Some(t) = &msg.tsig else {
        debug!(client = %src, zone = %msg.zone, reason = "not signed with a TSIG key", "UPDATE refused");
        return (UpdateRcode::Refused, Sign::No);
    };
    let key = service.key(&t.key).filter(|k| t.algorithm.as_str().trim_end_matches('.') == k.algorithm.as_str());
    let Some(key) = key else {
        debug!(client = %src, zone = %msg.zone, key = %t.key, algorithm = %t.algorithm, reason = "unknown key or algorithm (BADKEY)", "UPDATE refused");
        return (UpdateRcode::NotAuth, Sign::Error(t.clone(), BADKEY));
    };
    let TsigSecret::Inline(secret) = &key.secret else {
        warn!(key = %t.key, "TSIG key secret not read; refusing");
        return (UpdateRcode::NotAuth, Sign::Error(t.clone(), BADKEY));
    };
    let hkey = hmac::Key::new(algorithm(key.algorithm), secret);
    let full_len = algorithm(key.algorithm).digest_algorithm().output_len();
    if t.mac.len() != full_len || hmac::verify(&hkey, &request_digest_input(packet, t), &t.mac).is_err() {
        debug!(client = %src, zone = %msg.zone, key = %t.key, reason = "wrong MAC (BADSIG)", "UPDATE refused");
        return (UpdateRcode::NotAuth, Sign::Error(t.clone(), BADSIG));
    }
    let now = now();
    if now.abs_diff(t.time) > u64::from(t.fudge) {
        warn!(client = %src, zone = %msg.zone, key = %t.key, skew_s = now as i64 - t.time as i64, reason = "time outside the fudge (BADTIME)", "UPDATE refused");
        return (UpdateRcode::NotAuth, Sign::With(t.clone(), key, BADTIME));
    }
    let request = UpdateRequest {
        zone: msg.zone.clone(),
        key: t.key.clone(),
        prereqs: msg.prereqs.clone(),
        changes: msg.changes.clone(),
    };
    let rcode = service.submit(request, &key).await;
    (rcode, Sign::With(t.clone(), key, 0))
}

/// The response message: the header, the zone echoed, and the TSIG record.
fn response(packet: &[u8], msg: Option<&Message>, rcode: UpdateRcode, sign: Sign) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&packet[0..2]);
    out.push(0x80 | (5 << 3));
    out.push(rcode.code());
    let zone = msg.map_or(&[][..], |m| &packet[12..m.zone_end]);
    out.extend_from_slice(&u16::from(msg.is_some()).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(zone);
    let (t, error, mac, other) = match sign {
        Sign::No => return out,
        Sign::Error(t, error) => (t, error, Vec::new(), Vec::new()),
        Sign::With(t, key, error) => {
            let TsigSecret::Inline(secret) = &key.secret else { return out };
            let other = if error == BADTIME { now().to_be_bytes()[2..].to_vec() } else { Vec::new() };
            let mut input = Vec::with_capacity(out.len() + 128);
            input.extend_from_slice(&(t.mac.len() as u16).to_be_bytes());
            input.extend_from_slice(&t.mac);
            input.extend_from_slice(&out);
            variables(&mut input, &t.key, &t.algorithm, t.time, t.fudge, error, &other);
            let tag = hmac::sign(&hmac::Key::new(algorithm(key.algorithm), secret), &input);
            (t, error, tag.as_ref().to_vec(), other)
        }
    };
    name_wire(&t.key, &mut out);
    out.extend_from_slice(&TYPE_TSIG.to_be_bytes());
    out.extend_from_slice(&CLASS_ANY.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    let mut rdata = Vec::new();
    name_wire(&t.algorithm, &mut rdata);
    rdata.extend_from_slice(&t.time.to_be_bytes()[2..]);
    rdata.extend_from_slice(&t.fudge.to_be_bytes());
    rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    rdata.extend_from_slice(&mac);
    rdata.extend_from_slice(&t.original_id.to_be_bytes());
    rdata.extend_from_slice(&error.to_be_bytes());
    rdata.extend_from_slice(&(other.len() as u16).to_be_bytes());
    rdata.extend_from_slice(&other);
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(&rdata);
    out[11] = 1;
    out
}
