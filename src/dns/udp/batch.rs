//! The Linux UDP loop: a thread per socket blocking in `recvmmsg`, the fast path over each batch,
//! one `sendmmsg` for the answers.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error};

use super::super::MAX_UDP_PAYLOAD;
use super::super::query::{FastQuery, NameBuf};
use super::{Fast, Handler, Metrics, NotFast, ResponseKey, Rrl, Verdict, fast, query, rrl, slow_response};
use crate::routing::{GeoRoute, RoutingTable};

/// Datagrams per `recvmmsg` / `sendmmsg` call.
pub const BATCH: usize = 32;

/// Receive room per datagram: more than the largest UDP payload (65,507 bytes over IPv4,
/// 65,527 over IPv6), so no query is cut short (`MSG_TRUNC` is still checked). Only the pages
/// datagrams land in are ever touched. The extra 64 bytes put the slots' first bytes in
/// different cache sets.
const SLOT: usize = 65536 + 64;

/// How long a blocked `recvmmsg` waits before the thread looks at the shutdown token again:
/// shutdown takes at most this long (a blocked `recvmmsg` on an unconnected UDP socket cannot
/// be woken otherwise; `shutdown(SHUT_RD)` fails with ENOTCONN there). Idle, that is 20 wake-ups
/// a second per socket.
const WAKE_EVERY: Duration = Duration::from_millis(50);

/// Serves one UDP socket on a thread of its own until `shutdown` is cancelled; returns when
/// the thread has ended (within [`WAKE_EVERY`]), and the socket is closed.
///
/// A blocking `recvmmsg` on a dedicated thread instead of a task on the runtime: each wake-up
/// then costs one system call where the readiness loop cost three (`epoll_wait`, `recvmmsg`,
/// and the `recvmmsg` that finds the socket empty), plus the runtime's scheduling; and a long
/// job on a runtime worker (a TCP burst, a slow handler) never delays UDP answers. The runtime
/// still runs TCP, the admin API, probes and the full handler, which this thread calls for the
/// queries the fast path does not take.
pub async fn serve(socket: UdpSocket, handler: Handler, rrl: Option<Arc<Rrl>>, shutdown: CancellationToken) {
    let socket = match blocking(socket) {
        Ok(s) => s,
        Err(error) => {
            error!(%error, "cannot set up a UDP socket for its thread; this socket is not served");
            return;
        }
    };
    let runtime = tokio::runtime::Handle::current();
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
fn blocking(socket: UdpSocket) -> io::Result<std::net::UdpSocket> {
    let socket = socket.into_std()?;
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(WAKE_EVERY))?;
    Ok(socket)
}

fn serve_blocking(
    socket: &std::net::UdpSocket,
    handler: &Handler,
    rrl: Option<&Rrl>,
    shutdown: &CancellationToken,
    runtime: &tokio::runtime::Handle,
) {
    let fd = socket.as_raw_fd();
    let mut slots = Slots::new();
    // Per slot: the source address and the fast path's response.
    let mut srcs = [SocketAddr::from(([0, 0, 0, 0], 0)); BATCH];
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(MAX_UDP_PAYLOAD as usize)).collect();
    // The slots whose response goes out in this batch's sendmmsg.
    let mut ready: Vec<usize> = Vec::with_capacity(BATCH);
    // A batch that `warm` looks ahead in is parsed up front; the parses are kept here for the
    // answers, the vector's allocation reused from batch to batch (`recycle`), each query's
    // name in its slot's buffer of `name_bufs`. A query parsed as it is answered uses `name`.
    let mut kept: Vec<Parsed<'static>> = Vec::with_capacity(BATCH);
    let mut name_bufs: Box<[NameBuf]> = (0..BATCH).map(|_| NameBuf::new()).collect();
    let mut name = NameBuf::new();
    let mut m = Metrics::new();
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let n = match slots.recv(fd) {
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
        // One table and one clock reading (for RRL, whose buckets count seconds) per batch;
        // the query duration is timed for one query in `SAMPLE_EVERY`.
        let now = Instant::now();
        let mut table = handler.table();
        let mut parsed = recycle(std::mem::take(&mut kept));
        let many_names = table.larger_than_caches();
        if n > 1 && (many_names || (1..=FEW_RANK_TABLES).contains(&table.rank_table_count())) {
            parsed
                .extend(name_bufs.iter_mut().take(n).enumerate().map(|(i, name)| query::parse(slots.packet(i), name)));
            warm(&table, &parsed, &slots, many_names);
        }
        for i in 0..n {
            let start = m.sample_due().then(Instant::now);
            let Some(src) = slots.source(i) else {
                debug!("UDP datagram without an IPv4 or IPv6 source address; dropped");
                continue;
            };
            if slots.truncated(i) {
                debug!(%src, "UDP datagram larger than the receive buffer; dropped");
                continue;
            }
            srcs[i] = src;
            let packet = slots.packet(i);
            let here;
            let q = match parsed.get(i) {
                Some(q) => q,
                None => {
                    here = query::parse(packet, &mut name);
                    &here
                }
            };
            let q = match q {
                Ok(q) => q,
                Err(NotFast::Drop) => continue,
                Err(NotFast::Slow) => {
                    // Counts are flushed with the table they came from (see Metrics).
                    m.flush(&table);
                    drop(table);
                    slow_blocking(socket, handler, rrl, packet, src, runtime);
                    table = handler.table();
                    continue;
                }
            };
            match fast::answer(&table, q, src.ip(), &mut outs[i]) {
                Fast::Answered(info) => {
                    if let Some(start) = start {
                        m.duration.record(start.elapsed().as_secs_f64());
                    }
                    m.record(&info, start.is_some());
                    let verdict =
                        rrl.map_or(Verdict::Send, |r| r.check(src.ip(), ResponseKey::from_response(&outs[i]), now));
                    match verdict {
                        Verdict::Send => ready.push(i),
                        Verdict::Slip => {
                            if let Some(t) = rrl::truncated(&outs[i]) {
                                outs[i].clear();
                                outs[i].extend_from_slice(&t);
                                ready.push(i);
                            }
                        }
                        Verdict::Drop => {}
                    }
                }
                Fast::Slow => {
                    m.flush(&table);
                    drop(table);
                    slow_blocking(socket, handler, rrl, packet, src, runtime);
                    table = handler.table();
                }
            }
        }
        m.flush(&table);
        drop(table);
        kept = recycle(parsed);
        if !ready.is_empty() {
            let sent = match send(fd, &ready, &outs, &slots) {
                Ok(sent) => sent,
                Err(error) => {
                    if error.kind() != io::ErrorKind::WouldBlock {
                        debug!(%error, "UDP sendmmsg error");
                    }
                    0
                }
            };
            // sendmmsg stops at a full socket buffer or at the first message that fails:
            // the rest go one at a time (blocking until there is room), each error logged.
            for &i in &ready[sent..] {
                if let Err(error) = socket.send_to(&outs[i], srcs[i]) {
                    debug!(%error, dst = %srcs[i], "UDP send error");
                }
            }
            ready.clear();
        }
    }
}

/// The full path for one query, from the UDP thread: the handler runs on the runtime.
fn slow_blocking(
    socket: &std::net::UdpSocket,
    handler: &Handler,
    rrl: Option<&Rrl>,
    packet: &[u8],
    src: SocketAddr,
    runtime: &tokio::runtime::Handle,
) {
    let Some(response) = runtime.block_on(slow_response(handler, packet, src)) else { return };
    let verdict =
        rrl.map_or(Verdict::Send, |r| r.check(src.ip(), ResponseKey::from_response(&response), Instant::now()));
    let result = match verdict {
        Verdict::Send => socket.send_to(&response, src),
        Verdict::Slip => match rrl::truncated(&response) {
            Some(t) => socket.send_to(&t, src),
            None => return,
        },
        Verdict::Drop => return,
    };
    if let Err(error) = result {
        debug!(%error, dst = %src, "UDP send error");
    }
}

/// Receive buffers and source addresses for one batch, allocated once per socket task.
struct Slots {
    /// `BATCH` slots of `SLOT` bytes.
    bufs: Vec<u8>,
    names: Vec<libc::sockaddr_storage>,
    name_lens: [libc::socklen_t; BATCH],
    lens: [usize; BATCH],
    flags: [libc::c_int; BATCH],
}

impl Slots {
    fn new() -> Self {
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
        #[allow(unsafe_code)]
        let empty: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        Slots {
            bufs: vec![0; BATCH * SLOT],
            names: vec![empty; BATCH],
            name_lens: [0; BATCH],
            lens: [0; BATCH],
            flags: [0; BATCH],
        }
    }

    /// One `recvmmsg`: waits for a datagram (up to the socket's read timeout, then
    /// `WouldBlock`), then reads it and whatever else is queued, up to `BATCH`, without
    /// waiting more. How many it read; 0 once the socket is shut down for reading.
    fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let base = self.bufs.as_mut_ptr();
        let mut iovs: [libc::iovec; BATCH] =
            std::array::from_fn(|i| libc::iovec { iov_base: base.wrapping_add(i * SLOT).cast(), iov_len: SLOT });
        // SAFETY: mmsghdr is plain old data; all-zero is a valid value (no name, no control).
        #[allow(unsafe_code)]
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, (msg, iov)) in msgs.iter_mut().zip(iovs.iter_mut()).enumerate() {
            msg.msg_hdr.msg_name = (&raw mut self.names[i]).cast();
            msg.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at its own iovec (a SLOT-byte slot inside `bufs`) and its
        // own sockaddr_storage with the storage's size; all of them outlive the call and
        // nothing else uses them during it. The count is the arrays' length.
        #[allow(unsafe_code)]
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE as _,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = (n as usize).min(BATCH);
        for (i, msg) in msgs.iter().enumerate().take(n) {
            self.lens[i] = (msg.msg_len as usize).min(SLOT);
            self.name_lens[i] = msg.msg_hdr.msg_namelen;
            self.flags[i] = msg.msg_hdr.msg_flags;
        }
        Ok(n)
    }

    fn packet(&self, i: usize) -> &[u8] {
        &self.bufs[i * SLOT..i * SLOT + self.lens[i]]
    }

    /// Whether the datagram was longer than its slot (and so was cut short).
    fn truncated(&self, i: usize) -> bool {
        self.flags[i] & libc::MSG_TRUNC != 0
    }

    /// The datagram's source, if the kernel gave a complete IPv4 or IPv6 address.
    fn source(&self, i: usize) -> Option<SocketAddr> {
        let storage = &self.names[i];
        let len = self.name_lens[i] as usize;
        match libc::c_int::from(storage.ss_family) {
            libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
                // SAFETY: the family is AF_INET and the kernel wrote a whole sockaddr_in;
                // sockaddr_storage is large enough and aligned for any socket address.
                #[allow(unsafe_code)]
                let a = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(a.sin_port))))
            }
            libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above, for AF_INET6 and sockaddr_in6.
                #[allow(unsafe_code)]
                let a = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                // As std converts it: flow info and scope ID as the kernel gives them.
                Some(SocketAddr::V6(SocketAddrV6::new(ip, u16::from_be(a.sin6_port), a.sin6_flowinfo, a.sin6_scope_id)))
            }
            _ => None,
        }
    }
}

/// One non-blocking `sendmmsg` of `outs[i]` to slot `i`'s source, for each `i` in `ready`
/// (at most `BATCH`): how many were sent, in order from the first.
fn send(fd: RawFd, ready: &[usize], outs: &[Vec<u8>], slots: &Slots) -> io::Result<usize> {
    let count = ready.len().min(BATCH);
    let mut iovs: [libc::iovec; BATCH] =
        std::array::from_fn(|_| libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 });
    // SAFETY: mmsghdr is plain old data; all-zero is a valid value (no name, no control).
    #[allow(unsafe_code)]
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for ((msg, iov), &i) in msgs.iter_mut().zip(iovs.iter_mut()).zip(&ready[..count]) {
        // sendmmsg only reads through these pointers; the types are just not const.
        *iov = libc::iovec { iov_base: outs[i].as_ptr().cast_mut().cast(), iov_len: outs[i].len() };
        msg.msg_hdr.msg_name = (&raw const slots.names[i]).cast_mut().cast();
        msg.msg_hdr.msg_namelen = slots.name_lens[i];
        msg.msg_hdr.msg_iov = iov;
        msg.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the first `count` headers each point at one iovec over a live response buffer
    // and at the source address recvmmsg wrote, with the length it reported; the kernel only
    // reads them (and writes msg_len). All of it outlives the call.
    #[allow(unsafe_code)]
    let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), count as libc::c_uint, libc::MSG_DONTWAIT as _) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((n as usize).min(count))
}

/// A datagram of the batch, parsed for the fast path (or why not).
type Parsed<'a> = Result<FastQuery<'a>, NotFast>;

/// `v`, emptied, as a vector of another lifetime's parses: the same allocation (collecting a
/// vector's own iterator into a vector of an element of the same size and alignment reuses
/// it), so the kept parses borrow each batch's datagrams without an allocation per batch.
fn recycle<'b>(mut v: Vec<Parsed<'_>>) -> Vec<Parsed<'b>> {
    v.clear();
    let mut v: Vec<Parsed<'b>> = v.into_iter().map(|_| unreachable!("the vector was cleared")).collect();
    v.reserve(BATCH);
    v
}

/// A table whose names share at most this many site lists has its rankings fetched ahead for
/// each query of a batch in all of them (see [`warm`]).
const FEW_RANK_TABLES: usize = 2;

/// Before a batch is answered, asks the CPU to fetch what answering will read from memory
/// beyond the caches, for all the batch's queries at once: their memory reads are then in
/// flight together, not one query's after another's, and the answers find them cached.
///
/// - The client's ranking: the rank table's jump entry for its address (a random place in
///   1 MiB, a cache miss for most queries with varied ECS), then the block's first range.
/// - With `names` (tables of many names): each query's name is looked up (the map's control
///   bytes and entry), and its route's site entries fetched; its rank table is its route's.
///   Else the rank tables of all the table's names (at most [`FEW_RANK_TABLES`]).
///
/// Each stage runs over the whole batch before the next, which reads what the previous one
/// fetched. The queries were parsed once, for this and for the answers. Measured with
/// benches/server_scale.rs and benches/peers (README, Performance).
fn warm(table: &RoutingTable, parsed: &[Parsed<'_>], slots: &Slots, names: bool) {
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
            *client = client_v4(q, || slots.source(i));
        }
    }
    let ranks = |i: usize| {
        let own = routes[i].and_then(|r: &GeoRoute| r.rank_table());
        let shared = table.rank_tables().take(if names { 0 } else { FEW_RANK_TABLES });
        own.into_iter().chain(shared)
    };
    for (i, client) in clients.iter().enumerate() {
        if let Some(addr) = *client {
            for t in ranks(i) {
                prefetch(t.jump_entry(addr), 4);
            }
        }
    }
    for (i, client) in clients.iter().enumerate() {
        if let Some(addr) = *client {
            for t in ranks(i) {
                if let Some(range) = t.first_range(addr) {
                    prefetch(range, 16);
                }
            }
        }
    }
    for route in routes.iter().flatten() {
        prefetch(route.sites.as_ptr().cast(), size_of_val(&*route.sites));
    }
}

/// The IPv4 address a query's answer will likely be ranked for: its ECS address, else its
/// source's (decoded only then). Only a hint for `warm` (the answer decides with every rule
/// applied).
fn client_v4(q: &FastQuery<'_>, src: impl FnOnce() -> Option<SocketAddr>) -> Option<u32> {
    let ip = match q.edns.and_then(|e| e.ecs) {
        Some(ecs) => ecs.address,
        None => src()?.ip(),
    };
    match ip {
        IpAddr::V4(v4) => Some(u32::from(v4)),
        IpAddr::V6(_) => None,
    }
}

/// Asks the CPU to bring up to 512 bytes from `start` into its caches (a hint; no-op off x86-64).
fn prefetch(start: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for offset in (0..len.min(512)).step_by(64) {
        // SAFETY: a prefetch is a hint: it reads nothing the program sees and never faults,
        // whatever the address.
        #[allow(unsafe_code)]
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                start.wrapping_add(offset).cast::<i8>(),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycling_the_parses_keeps_their_allocation() {
        let packet = [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'a', b'p', b'p', 0, 0, 1, 0, 1];
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
