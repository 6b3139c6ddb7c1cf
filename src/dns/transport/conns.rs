//! The TCP listener's registry of open connections: whose each one is, what it is doing and
//! since when, and how to close it. When a new connection finds its client (or the server) at
//! its limit, the registry makes room by closing that client's (or the server's) **oldest
//! waiting** connection: one idle between messages, stalled part-way through a message, or
//! blocked on a client that does not read its answers. A connection busy computing an answer
//! is never chosen; when every candidate is busy, the new connection is refused instead.
//!
//! "Oldest" is by last activity (the start of its current wait), ties broken by accept order:
//! the connection that has given the server least reason to keep it.
//!
//! Ownership: the accept loop owns the [`Registry`] alone (no lock). Each connection task
//! shares one [`Activity`] with it, an atomic the task writes at every change of state and the
//! accept loop reads only when it must choose; and watches its eviction token, which the accept
//! loop cancels to close it at once (nothing queued is sent).
//!
//! Cost: per query, two clock readings and three relaxed stores into the connection's own
//! `Activity`. Per accept at a per-client limit, a scan of that client's connections; at the
//! global limit, a scan of them all (1,024 by default: microseconds).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::task::Id;
use tokio_util::sync::CancellationToken;

/// What a connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Waiting for the first byte of a message (also just after accept), or for the client
    /// to take its answers: evictable.
    Idle,
    /// Part of a message received, waiting for the rest: evictable (a client that sends one
    /// byte of a length prefix and stops looks like this).
    Reading,
    /// A whole message received and being answered: never evicted.
    Busy,
}

const STATE_SHIFT: u32 = 62;
const MICROS: u64 = (1 << STATE_SHIFT) - 1;

/// A connection's state and the time it entered it, shared by its task (the only writer) and
/// the accept loop (the only reader). One word, so a reader never sees a state with another
/// state's time: state in the top 2 bits, microseconds since `epoch` below.
#[derive(Debug)]
pub(super) struct Activity {
    epoch: Instant,
    word: AtomicU64,
}

impl Activity {
    fn new(epoch: Instant) -> Self {
        let a = Activity { epoch, word: AtomicU64::new(0) };
        a.set(State::Idle);
        a
    }

    /// Records that the connection entered `state` now.
    pub(super) fn set(&self, state: State) {
        let micros = (Instant::now().saturating_duration_since(self.epoch).as_micros() as u64).min(MICROS);
        let tag = match state {
            State::Idle => 0,
            State::Reading => 1,
            State::Busy => 2,
        };
        // Relaxed: the accept loop needs a recent value, not an ordering with other memory.
        self.word.store((tag << STATE_SHIFT) | micros, Ordering::Relaxed);
    }

    /// The state, and when it was entered (microseconds since the registry's epoch).
    pub(super) fn get(&self) -> (State, u64) {
        let w = self.word.load(Ordering::Relaxed);
        let state = match w >> STATE_SHIFT {
            0 => State::Idle,
            1 => State::Reading,
            _ => State::Busy,
        };
        (state, w & MICROS)
    }
}

/// What a connection task is handed: its activity to write and its eviction token to watch.
#[derive(Clone)]
pub(super) struct Handle {
    pub activity: Arc<Activity>,
    pub evict: CancellationToken,
}

struct Conn {
    ip: IpAddr,
    /// Accept order, the tie-break between connections idle since the same microsecond.
    seq: u64,
    activity: Arc<Activity>,
    evict: CancellationToken,
}

/// Which limit a connection was closed for (for the debug log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Limit {
    Client,
    Global,
}

/// A connection closed to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Evicted {
    pub ip: IpAddr,
    pub limit: Limit,
    pub state: State,
}

/// No room could be made: every connection in the way is busy being answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Full(pub Limit);

/// The open connections. Evicted ones leave it at once (their tasks end at their next poll),
/// so its counts are the connections the server still serves.
pub(super) struct Registry {
    epoch: Instant,
    next_seq: u64,
    conns: HashMap<Id, Conn>,
    by_client: HashMap<IpAddr, Vec<Id>>,
}

impl Registry {
    pub(super) fn new() -> Self {
        Registry { epoch: Instant::now(), next_seq: 0, conns: HashMap::new(), by_client: HashMap::new() }
    }

    /// Open connections, all clients together.
    pub(super) fn len(&self) -> usize {
        self.conns.len()
    }

    /// Open connections from `ip`.
    pub(super) fn open(&self, ip: IpAddr) -> usize {
        self.by_client.get(&ip).map_or(0, Vec::len)
    }

    /// Makes room for one more connection from `ip`: at `per_client` connections from it, its
    /// oldest waiting one is closed; otherwise, at `max` in all, the oldest waiting one of any
    /// client. At most one is closed. `Err` when the one to close would have to be busy.
    pub(super) fn make_room(&mut self, ip: IpAddr, per_client: usize, max: usize) -> Result<Option<Evicted>, Full> {
        let (candidates, limit): (Vec<Id>, Limit) = if self.open(ip) >= per_client {
            (self.by_client.get(&ip).cloned().unwrap_or_default(), Limit::Client)
        } else if self.len() >= max {
            (Vec::new(), Limit::Global)
        } else {
            return Ok(None);
        };
        let oldest = match limit {
            Limit::Client => self.oldest_waiting(candidates.iter().copied()),
            Limit::Global => self.oldest_waiting(self.conns.keys().copied()),
        };
        let Some((id, state)) = oldest else { return Err(Full(limit)) };
        let conn = self.remove(id).expect("a candidate is registered");
        conn.evict.cancel();
        Ok(Some(Evicted { ip: conn.ip, limit, state }))
    }

    /// The oldest connection of `ids` that is not busy, with its state.
    fn oldest_waiting(&self, ids: impl Iterator<Item = Id>) -> Option<(Id, State)> {
        ids.filter_map(|id| {
            let c = self.conns.get(&id)?;
            let (state, since) = c.activity.get();
            (state != State::Busy).then_some((since, c.seq, id, state))
        })
        .min_by_key(|&(since, seq, _, _)| (since, seq))
        .map(|(_, _, id, state)| (id, state))
    }

    /// A handle for a new connection, idle from now; [`Registry::insert`] it once its task has
    /// an id.
    pub(super) fn handle(&self) -> Handle {
        Handle { activity: Arc::new(Activity::new(self.epoch)), evict: CancellationToken::new() }
    }

    /// Registers connection task `id` from `ip` with the handle it was given.
    pub(super) fn insert(&mut self, id: Id, ip: IpAddr, handle: &Handle) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.conns.insert(id, Conn { ip, seq, activity: handle.activity.clone(), evict: handle.evict.clone() });
        self.by_client.entry(ip).or_default().push(id);
    }

    /// Forgets connection task `id` (ended, or evicted); `None` when it was not registered.
    fn remove(&mut self, id: Id) -> Option<Conn> {
        let conn = self.conns.remove(&id)?;
        if let Some(ids) = self.by_client.get_mut(&conn.ip) {
            ids.retain(|&i| i != id);
            if ids.is_empty() {
                self.by_client.remove(&conn.ip);
            }
        }
        Some(conn)
    }

    /// A connection task ended: forgets it, unless it was already evicted.
    pub(super) fn ended(&mut self, id: Id) {
        self.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry with connections from the given addresses, registered in order (their task
    /// ids from real, finished tasks), and their handles.
    async fn registry(ips: &[&str]) -> (Registry, Vec<(Id, Handle)>) {
        let mut r = Registry::new();
        let mut out = Vec::new();
        for ip in ips {
            let id = tokio::spawn(async {}).id();
            let h = r.handle();
            r.insert(id, ip.parse().unwrap(), &h);
            out.push((id, h));
        }
        (r, out)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn activity_keeps_state_and_time_in_one_word() {
        let a = Activity::new(Instant::now());
        assert_eq!(a.get().0, State::Idle);
        for s in [State::Reading, State::Busy, State::Idle] {
            let before = a.get().1;
            a.set(s);
            assert_eq!(a.get().0, s);
            assert!(a.get().1 >= before);
        }
    }

    #[tokio::test]
    async fn a_client_at_its_limit_loses_its_oldest_waiting_connection_never_a_busy_one() {
        let (mut r, h) = registry(&["192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.1"]).await;
        assert_eq!(r.make_room(ip("192.0.2.1"), 4, 100), Ok(None), "under both limits");
        // The oldest of 192.0.2.1 is busy: the next oldest goes.
        h[0].1.activity.set(State::Busy);
        let e = r.make_room(ip("192.0.2.1"), 3, 100).unwrap().unwrap();
        assert_eq!((e.ip, e.limit, e.state), (ip("192.0.2.1"), Limit::Client, State::Idle));
        assert!(h[1].1.evict.is_cancelled() && !h[0].1.evict.is_cancelled() && !h[3].1.evict.is_cancelled());
        assert_eq!((r.open(ip("192.0.2.1")), r.len()), (2, 3));
        // An evicted task's end is not counted twice.
        r.ended(h[1].0);
        assert_eq!(r.len(), 3);
        // Stalled mid-message counts as waiting.
        h[3].1.activity.set(State::Reading);
        let e = r.make_room(ip("192.0.2.1"), 2, 100).unwrap().unwrap();
        assert_eq!((e.limit, e.state), (Limit::Client, State::Reading));
        assert!(h[3].1.evict.is_cancelled());
        // Every connection of the client busy: no room, nothing closed.
        assert_eq!(r.make_room(ip("192.0.2.1"), 1, 100), Err(Full(Limit::Client)));
        assert!(!h[0].1.evict.is_cancelled() && !h[2].1.evict.is_cancelled(), "another client's is not taken");
        // Its busy connection finishes and waits again: now it can go.
        h[0].1.activity.set(State::Idle);
        assert_eq!(r.make_room(ip("192.0.2.1"), 1, 100).unwrap().unwrap().limit, Limit::Client);
        assert!(h[0].1.evict.is_cancelled());
        assert_eq!((r.open(ip("192.0.2.1")), r.len()), (0, 1));
    }

    #[tokio::test]
    async fn at_the_global_limit_the_oldest_waiting_connection_of_anyone_goes() {
        let (mut r, h) = registry(&["192.0.2.1", "2001:db8::1", "192.0.2.3"]).await;
        h[0].1.activity.set(State::Busy);
        // 192.0.2.1 is busy, so the IPv6 client's (the next oldest) is closed for a newcomer.
        let e = r.make_room(ip("198.51.100.1"), 10, 3).unwrap().unwrap();
        assert_eq!((e.ip, e.limit), (ip("2001:db8::1"), Limit::Global));
        assert!(h[1].1.evict.is_cancelled());
        assert_eq!(r.len(), 2);
        assert_eq!(r.make_room(ip("198.51.100.1"), 10, 3), Ok(None), "room left");
        // The least recently active goes first: the third becomes active again after the first.
        h[2].1.activity.set(State::Reading);
        std::thread::sleep(std::time::Duration::from_millis(2));
        h[0].1.activity.set(State::Idle);
        assert_eq!(r.make_room(ip("198.51.100.1"), 10, 2).unwrap().unwrap().ip, ip("192.0.2.3"));
        // Only busy ones left: refused.
        h[0].1.activity.set(State::Busy);
        assert_eq!(r.make_room(ip("198.51.100.1"), 10, 1), Err(Full(Limit::Global)));
        r.ended(h[0].0);
        assert_eq!((r.len(), r.open(ip("192.0.2.1"))), (0, 0));
    }
}
