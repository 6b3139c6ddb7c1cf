//! The hickory boundary: everything between DNS bytes on a socket and the routing table. hickory's
//! types never leave this folder. Imports `routing`, `model` and `config`; never `sources` or
//! `admin`.
//!
//! A query's path, in data-flow order:
//! - [`transport`]: [`DnsServer`] binds the sockets (`transport::listen`); a UDP loop per
//!   socket (`transport::batch` on Linux, `transport::portable` elsewhere) or a TCP connection
//!   (`transport::tcp`) reads the query's bytes.
//! - [`codec`]: [`parse`] reads the common query without copying it.
//! - [`answer()`]: bytes as read -> [`Outcome`]: answered from the current routing table and
//!   written into the caller's buffer by `codec::response`; or needs the full path; or dropped.
//!   The loop counts what it answered in its [`answer::Metrics`].
//! - `answer::full`: the full path for the rest: hickory decodes, [`Handler`] answers, hickory
//!   encodes (`codec::capture`); FORMERR for what does not decode.
//! - back in [`transport`]: UDP responses pass response rate limiting ([`rrl::apply`]) and
//!   leave in one `sendmmsg` per batch; TCP responses are framed and written in order.
//!
//! Every call into the C library (and the CPU hint, and the parser's unchecked `str`) is in
//! `sys`, behind a safe API: the only file here with `unsafe` code.
//!
//! Beside the path: [`client`], the DNS client of `geodns check --server`.

pub mod answer;
pub mod client;
pub mod codec;
mod sys;
#[cfg(test)]
mod testing;
pub mod transport;

pub use answer::{Handler, Outcome, Transport, answer};
pub use codec::capture::Capture;
pub use codec::ecs::{Ecs, EcsError};
pub use codec::query::{NameBuf, Parsed, parse};
pub use codec::response::MAX_UDP_PAYLOAD;
pub use transport::listen::DnsServer;
pub use transport::{rrl, tcp};
