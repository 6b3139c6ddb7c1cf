//! The hickory boundary: binds the DNS sockets, decodes queries (question, EDNS, Client Subnet),
//! asks the routing table, and encodes answers. hickory's types never leave this folder.
//!
//! Imports `routing` and `model`; never `sources` or `admin`.

pub mod client;
mod convert;
mod ecs;
mod handler;
mod listen;
mod wire;

pub use ecs::{Ecs, EcsError};
pub use handler::{Handler, MAX_UDP_PAYLOAD};
pub use listen::DnsServer;
