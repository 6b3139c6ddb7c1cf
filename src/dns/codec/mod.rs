//! DNS on the wire: reading queries and writing responses, our own way for the common query and
//! through hickory for everything else. Knows nothing of sockets or of the routing table being
//! served; imports `model` and the `routing` answer types it encodes.
//!
//! - [`query`]: the zero-copy reader of the common query (one question, class IN, at most an
//!   OPT record with Client Subnet). The query name is lowered through a lookup table into a
//!   buffer the caller keeps (one per batch slot in the UDP loop), so a parsed query is a few
//!   words, not a 256-byte copy moved into the batch's list.
//! - [`response`]: the responses written without hickory and without allocating (the question
//!   copied from the query, names compressed against it, the counts patched in last), and the
//!   header-only FORMERR.
//! - [`signed`]: responses with DNSSEC records copied from the table's precomputed signatures.
//! - [`rcode`]: response codes on the wire, in hickory's terms and as metric labels.
//! - [`ecs`]: RFC 7871 Client Subnet validation; [`wire`]: walks of raw bytes for what hickory's
//!   decoded message no longer shows.
//! - [`convert`]: our records as hickory's; [`capture`]: hickory's response encoder into a
//!   buffer (the full path).

pub mod capture;
pub mod convert;
pub mod ecs;
pub mod query;
pub mod rcode;
pub mod response;
pub mod signed;
pub mod wire;

#[cfg(test)]
pub mod test_query;
