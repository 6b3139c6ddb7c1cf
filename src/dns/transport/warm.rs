//! Looking ahead in a UDP batch: before the batch is answered, the CPU is asked to fetch what
//! answering will read from memory beyond its caches, for all the batch's queries at once. Their
//! memory reads are then in flight together, not one query's after another's, and the answers
//! find them cached.
//!
//! - The client's ranking: the rank table's jump entry for its address (a random place in
//!   1 MiB, a cache miss for most queries with varied ECS), then the block's first range; in
//!   the IPv4 or the IPv6 table, by the client's family.
//! - In tables of many names ([`Lookahead::Names`]): each query's name is looked up (the map's
//!   control bytes and entry) and its route's site entries fetched; its rank table is its
//!   route's. Else the rank tables of all the table's names, when they share a few
//!   ([`Lookahead::SharedRanks`]).
//!
//! Each stage runs over the whole batch before the next, which reads what the previous one
//! fetched. The batch's queries are parsed once, for this and for the answers (the UDP loop
//! keeps the parses). `benches/server_scale.rs` and `benches/peers` measure the effect.

use std::net::{IpAddr, SocketAddr};

use crate::dns::codec::query::{FastQuery, Parsed};
use crate::dns::sys::{BATCH, prefetch};
use crate::routing::{GeoRoute, RoutingTable};

/// A table whose names share at most this many site lists has its rankings fetched ahead for
/// each query of a batch in all of them.
const FEW_RANK_TABLES: usize = 2;

/// What a batch's lookahead fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookahead {
    /// Each query's name, its route's sites, and its ranking in its route's rank table.
    Names,
    /// Each query's ranking in every rank table of the table (at most [`FEW_RANK_TABLES`]).
    SharedRanks,
}

/// Whether a batch of `n` queries against `table` is worth looking ahead in, and how: never for
/// a lone query (nothing to overlap), nor for a small table of many site lists (its rankings
/// cannot be guessed before the name is looked up, and its names are cached).
pub fn plan(table: &RoutingTable, n: usize) -> Option<Lookahead> {
    if n <= 1 {
        None
    } else if table.larger_than_caches() {
        Some(Lookahead::Names)
    } else if (1..=FEW_RANK_TABLES).contains(&table.rank_table_count()) {
        Some(Lookahead::SharedRanks)
    } else {
        None
    }
}

/// Fetches ahead what answering `parsed` (a batch, in slot order) will read; `source(i)` is
/// slot `i`'s source address, decoded only for queries without ECS.
pub fn warm(table: &RoutingTable, parsed: &[Parsed<'_>], how: Lookahead, source: impl Fn(usize) -> Option<SocketAddr>) {
    let names = how == Lookahead::Names;
    let mut routes = [None; BATCH];
    if names {
        for (route, q) in routes.iter_mut().zip(parsed) {
            if let Ok(q) = q {
                *route = table.quick_route(q.name);
            }
        }
    }
    let mut clients = [None; BATCH];
    for (i, (client, q)) in clients.iter_mut().zip(parsed).enumerate() {
        if let Ok(q) = q {
            *client = client_of(q, || source(i));
        }
    }
    let shared = if names { 0 } else { FEW_RANK_TABLES };
    // The jump entries, then (the entries fetched) each block's first range.
    for first_range in [false, true] {
        for (i, client) in clients.iter().enumerate() {
            match *client {
                Some(IpAddr::V4(a)) => {
                    let own = routes[i].and_then(|r: &GeoRoute| r.rank_table());
                    for t in own.into_iter().chain(table.rank_tables().take(shared)) {
                        let a = u32::from(a);
                        match (first_range, t.first_range(a)) {
                            (false, _) => prefetch(t.jump_entry(a), 4),
                            (true, Some(range)) => prefetch(range, 16),
                            (true, None) => {}
                        }
                    }
                }
                Some(IpAddr::V6(a)) => {
                    let own = routes[i].and_then(|r: &GeoRoute| r.rank_table6());
                    for t in own.into_iter().chain(table.rank_tables6().take(shared)) {
                        let a = u128::from(a);
                        match (first_range, t.first_range(a)) {
                            (false, _) => prefetch(t.jump_entry(a), 4),
                            (true, Some(range)) => prefetch(range, 16),
                            (true, None) => {}
                        }
                    }
                }
                None => {}
            }
        }
    }
    for route in routes.iter().flatten() {
        prefetch(route.sites.as_ptr().cast(), size_of_val(&*route.sites));
    }
}

/// The address a query's answer will likely be ranked for: its ECS address, else its
/// source's (decoded only then). Only a hint (the answer decides with every rule applied).
fn client_of(q: &FastQuery<'_>, src: impl FnOnce() -> Option<SocketAddr>) -> Option<IpAddr> {
    match q.edns.and_then(|e| e.ecs) {
        Some(ecs) => Some(ecs.address),
        None => Some(src()?.ip()),
    }
}
