//! The Linux UDP loop: a thread per socket blocking in `recvmmsg`, [`answer`] over each batch,
//! one `sendmmsg` for the answers. Queries for the full path are answered (and sent) as they
//! come, in between, by the runtime on this thread's behalf.
//!
//! What keeps a query cheap here:
//! - A thread of its own, blocking: each wake-up costs one system call, where a readiness loop
//!   costs three (`epoll_wait`, `recvmmsg`, and the `recvmmsg` that finds the socket empty) plus
//!   the runtime's scheduling; and a long job on a runtime worker (a TCP burst, a slow handler)
//!   never delays UDP answers.
//! - Batches of up to [`BATCH`] datagrams in and out per system call ([`Datagrams`]).
//! - Per batch, not per query: one table load, one clock reading (RRL's buckets count seconds),
//!   one flush of the counts ([`Metrics`]).
//! - Per slot, kept from batch to batch: the response buffer and the name buffer, so a batch's
//!   parses can be kept for its answers, and nothing is allocated per query.
//! - The lookahead of [`warm`] in batches against large tables.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error};

use super::rrl::{self, Rrl};
use super::warm;
use crate::dns::answer::{Handler, Metrics, Outcome, Transport, answer};
use crate::dns::codec::query::{self, NameBuf, Parsed};
use crate::dns::codec::response::MAX_UDP_PAYLOAD;
use crate::dns::sys::{BATCH, Datagrams};

/// How long a blocked `recvmmsg` waits before the thread looks at the shutdown token again:
/// shutdown takes at most this long (a blocked `recvmmsg` on an unconnected UDP socket cannot
/// be woken otherwise; `shutdown(SHUT_RD)` fails with ENOTCONN there). Idle, that is 20 wake-ups
/// a second per socket.
const WAKE_EVERY: Duration = Duration::from_millis(50);

/// Serves one UDP socket on a thread of its own until `shutdown` is cancelled; returns when
/// the thread has ended (within [`WAKE_EVERY`]), and the socket is closed. The runtime still
/// runs TCP, the admin API, probes and the full path, which this thread calls for the queries
/// [`answer`] leaves.
pub async fn serve(
    socket: tokio::net::UdpSocket,
    handler: Handler,
    rrl: Option<Arc<Rrl>>,
    shutdown: CancellationToken,
) {
    let socket = match blocking(socket) {
        Ok(s) => s,
        Err(error) => {
            error!(%error, "cannot set up a UDP socket for its thread; this socket is not served");
            return;
        }
    };
    let runtime = Handle::current();
    let (done_tx, mut done) = tokio::sync::oneshot::channel::<()>();
    let token = shutdown.clone();
    let spawned = std::thread::Builder::new().name("geodns-udp".into()).spawn(move || {
        serve_blocking(&socket, &handler, rrl.as_deref(), &token, &runtime);
        drop(socket);
        drop(done_tx);
    });
    if let Err(error) = spawned {
        error!(%error, "cannot start a UDP thread; this socket is not served");
        return;
    }
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = &mut done => {
            error!("a UDP thread ended before shutdown; its socket is no longer served");
            return;
        }
    }
    let _ = done.await;
}

/// The runtime's socket as a blocking std socket whose reads time out after [`WAKE_EVERY`].
fn blocking(socket: tokio::net::UdpSocket) -> io::Result<UdpSocket> {
    let socket = socket.into_std()?;
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(WAKE_EVERY))?;
    Ok(socket)
}

/// The loop: receive a batch, answer it, send the answers.
fn serve_blocking(
    socket: &UdpSocket,
    handler: &Handler,
    rrl: Option<&Rrl>,
    shutdown: &CancellationToken,
    runtime: &Handle,
) {
    let mut batch = Batch::new();
    while !shutdown.is_cancelled() {
        let n = match batch.datagrams.recv(socket) {
            Ok(0) => continue,
            Ok(n) => n,
            Err(error) => {
                match error.kind() {
                    // The read timed out, or a signal: look at the token again.
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {}
                    // ICMP errors from earlier sends (ECONNREFUSED) surface here; keep going.
                    _ => debug!(%error, "UDP receive error"),
                }
                continue;
            }
        };
        batch.answer(n, handler, rrl, |packet, src| full_blocking(socket, handler, rrl, packet, src, runtime));
        batch.send(socket);
    }
}

/// What one socket's loop keeps from batch to batch, allocated once.
struct Batch {
    datagrams: Datagrams,
    /// Per slot: the source address and the response.
    srcs: [SocketAddr; BATCH],
    outs: Vec<Vec<u8>>,
    /// The slots whose response goes out in this batch's `sendmmsg`.
    ready: Vec<usize>,
    /// A batch that [`warm`] looks ahead in is parsed up front; the parses are kept here for the
    /// answers, the vector's allocation reused from batch to batch ([`recycle`]), each query's
    /// name in its slot's buffer of `names`. A query parsed as it is answered uses `name`.
    kept: Vec<Parsed<'static>>,
    names: Box<[NameBuf]>,
    name: NameBuf,
    metrics: Metrics,
}

impl Batch {
    fn new() -> Self {
        Batch {
            datagrams: Datagrams::new(),
            srcs: [SocketAddr::from(([0, 0, 0, 0], 0)); BATCH],
            outs: (0..BATCH).map(|_| Vec::with_capacity(usize::from(MAX_UDP_PAYLOAD))).collect(),
            ready: Vec::with_capacity(BATCH),
            kept: Vec::with_capacity(BATCH),
            names: (0..BATCH).map(|_| NameBuf::new()).collect(),
            name: NameBuf::new(),
            metrics: Metrics::new(Transport::Udp),
        }
    }

    /// Answers the `n` datagrams received: the fast path's responses, admitted by RRL, are
    /// marked ready for [`Batch::send`]; `full` answers and sends the others as they come.
    fn answer(&mut self, n: usize, handler: &Handler, rrl: Option<&Rrl>, mut full: impl FnMut(&[u8], SocketAddr)) {
        let Batch { datagrams, srcs, outs, ready, kept, names, name, metrics } = self;
        let now = Instant::now();
        let mut table = handler.table();
        let mut parsed = recycle(std::mem::take(kept));
        if let Some(how) = warm::plan(&table, n) {
            parsed
                .extend(names.iter_mut().take(n).enumerate().map(|(i, name)| query::parse(datagrams.packet(i), name)));
            warm::warm(&table, &parsed, how, |i| datagrams.source(i));
        }
        for i in 0..n {
            let started = metrics.sample_due().then(Instant::now);
            let Some(src) = accepted_source(datagrams, i) else { continue };
            srcs[i] = src;
            let here;
            let q = match parsed.get(i) {
                Some(q) => q,
                None => {
                    here = query::parse(datagrams.packet(i), name);
                    &here
                }
            };
            match answer(&table, q, src.ip(), Transport::Udp, &mut outs[i]) {
                Outcome::Answered(info) => {
                    metrics.answered(&info, started);
                    if rrl::apply(rrl, table.rrl_exempt(), src.ip(), &mut outs[i], now) {
                        ready.push(i);
                    }
                }
                Outcome::Full => {
                    // Counts are flushed with the table they came from (see Metrics).
                    metrics.flush(&table);
                    drop(table);
                    full(datagrams.packet(i), src);
                    table = handler.table();
                }
                Outcome::Drop => {}
            }
        }
        metrics.flush(&table);
        *kept = recycle(parsed);
    }

    /// Sends the ready responses with one `sendmmsg`; what it leaves (a full socket buffer, a
    /// message that failed) goes one at a time, blocking until there is room, each error logged.
    fn send(&mut self, socket: &UdpSocket) {
        if self.ready.is_empty() {
            return;
        }
        let sent = self.datagrams.send(socket, &self.ready, &self.outs).unwrap_or_else(|error| {
            if error.kind() != io::ErrorKind::WouldBlock {
                debug!(%error, "UDP sendmmsg error");
            }
            0
        });
        for &i in &self.ready[sent..] {
            if let Err(error) = socket.send_to(&self.outs[i], self.srcs[i]) {
                debug!(%error, dst = %self.srcs[i], "UDP send error");
            }
        }
        self.ready.clear();
    }
}

/// Datagram `i`'s source, unless the datagram is to be dropped unread.
fn accepted_source(datagrams: &Datagrams, i: usize) -> Option<SocketAddr> {
    let Some(src) = datagrams.source(i) else {
        debug!("UDP datagram without an IPv4 or IPv6 source address; dropped");
        return None;
    };
    if datagrams.truncated(i) {
        debug!(%src, "UDP datagram larger than the receive buffer; dropped");
        return None;
    }
    Some(src)
}

/// The full path for one query, from the UDP thread: the handler runs on the runtime.
fn full_blocking(
    socket: &UdpSocket,
    handler: &Handler,
    rrl: Option<&Rrl>,
    packet: &[u8],
    src: SocketAddr,
    runtime: &Handle,
) {
    if crate::dns::update::is_update(packet) {
        // An UPDATE waits for its journal's fsync and for the table serving it: answered from
        // a task, so this loop goes on answering queries meanwhile. Its response is no larger
        // than the request plus a TSIG record (no amplification): not rate limited.
        let (handler, packet) = (handler.clone(), packet.to_vec());
        match socket.try_clone() {
            Ok(socket) => {
                runtime.spawn(async move {
                    if let Some(response) = handler.respond_full(&packet, src, Transport::Udp).await
                        && let Err(error) = socket.send_to(&response, src)
                    {
                        debug!(%error, dst = %src, "UDP send error");
                    }
                });
            }
            Err(error) => debug!(%error, "cannot clone the UDP socket for an UPDATE response"),
        }
        return;
    }
    let Some(mut response) = runtime.block_on(handler.respond_full(packet, src, Transport::Udp)) else { return };
    let send = rrl::apply(rrl, handler.table().rrl_exempt(), src.ip(), &mut response, Instant::now());
    if send && let Err(error) = socket.send_to(&response, src) {
        debug!(%error, dst = %src, "UDP send error");
    }
}

/// `v`, emptied, as a vector of another lifetime's parses: the same allocation (collecting a
/// vector's own iterator into a vector of an element of the same size and alignment reuses
/// it), so the kept parses borrow each batch's datagrams without an allocation per batch.
fn recycle<'b>(mut v: Vec<Parsed<'_>>) -> Vec<Parsed<'b>> {
    v.clear();
    let mut v: Vec<Parsed<'b>> = v.into_iter().map(|_| unreachable!("the vector was cleared")).collect();
    v.reserve(BATCH);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::codec::test_query::TestQuery;

    #[test]
    fn recycling_the_parses_keeps_their_allocation() {
        let packet = TestQuery::new(0x1234, "app.", 1).flags(0x0100).bytes();
        let mut name = NameBuf::new();
        let mut v = recycle(Vec::new());
        let at = v.as_ptr() as usize;
        v.push(query::parse(&packet, &mut name));
        assert_eq!(v[0].as_ref().map(|q| q.name).ok(), Some("app."));
        let again = recycle(v);
        assert!(again.is_empty());
        assert_eq!(again.as_ptr() as usize, at, "a new allocation for every batch");
        assert!(again.capacity() >= BATCH);
    }
}
