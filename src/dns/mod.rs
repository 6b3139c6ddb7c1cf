//! The hickory boundary: everything between DNS bytes on a socket and the routing table. hickory's
//! types never leave this folder. Imports `routing`, `model` and `config`; never `sources` or
//! `admin`.
//!
//! A query's path, in data-flow order (one folder each):
//! - `transport/`: [`DnsServer`] binds the sockets (`listen.rs`); a UDP loop per socket
//!   (`batch.rs` on Linux, with its lookahead in `warm.rs`; `portable.rs` elsewhere) or a TCP
//!   connection ([`tcp`]) reads the query's bytes.
//! - `codec/`: [`parse`] reads the common query without copying it (`query.rs`).
//! - `answer/`: [`answer()`], bytes as read -> [`Outcome`]: answered from the current routing
//!   table and written into the caller's buffer (`codec/response.rs`); or needs the full path;
//!   or dropped. The loop counts what it answered (`answer/metrics.rs`).
//! - `answer/full.rs`: the full path for the rest: hickory decodes, [`Handler`] answers,
//!   hickory encodes (`codec/capture.rs`); FORMERR for what does not decode.
//! - back in `transport/`: UDP responses pass response rate limiting ([`rrl::apply`]) and
//!   leave in one `sendmmsg` per batch; TCP responses are framed and written in order.
//!
//! Every call into the C library (and the CPU hint, and the parser's unchecked `str`) is in
//! `sys.rs`, behind a safe API: the only file here with `unsafe` code.
//!
//! - `update/`: UPDATE messages (RFC 2136) from the full path: TSIG checked on their bytes,
//!   applied by the app's [`UpdateService`], answered signed.
//!
//! Beside the path: [`client`], the DNS client of `geodns check --server`.

mod answer;
pub mod client;
mod codec;
mod sys;
#[cfg(test)]
mod testing;
mod transport;
mod update;

pub use answer::{Handler, Outcome, Transport, answer};
pub use codec::capture::Capture;
pub use codec::ecs::{Ecs, EcsError};
pub use codec::query::{NameBuf, Parsed, parse};
pub use codec::response::MAX_UDP_PAYLOAD;
pub use transport::listen::DnsServer;
pub use transport::{rrl, tcp};
pub use update::UpdateService;
