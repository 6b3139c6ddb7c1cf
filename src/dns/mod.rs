//! The hickory boundary: binds the DNS sockets, decodes queries (question, EDNS, Client Subnet),
//! asks the routing table, and encodes answers. hickory's types never leave this folder.
//!
//! Imports `routing` and `model`; never `sources` or `admin`.

mod capture;
pub mod client;
mod convert;
mod ecs;
mod fast;
mod handler;
mod listen;
mod query;
pub mod rrl;
pub mod tcp;
mod udp;
mod wire;

pub use capture::Capture;
pub use ecs::{Ecs, EcsError};
pub use handler::{Handler, MAX_UDP_PAYLOAD};
pub use listen::DnsServer;

/// Answers one UDP query on the fast path into `out`; `false` when the packet must be dropped or
/// needs the full handler. For benchmarks and fuzzing; the UDP loop calls the same code.
pub fn answer_fast(handler: &Handler, packet: &[u8], src: std::net::IpAddr, out: &mut Vec<u8>) -> bool {
    match query::parse(packet, &mut query::NameBuf::new()) {
        Ok(q) => matches!(fast::answer(&handler.table(), &q, src, out), fast::Fast::Answered(_)),
        Err(_) => false,
    }
}
