//! The UDP server loop: one loop per socket (several sockets share each address with
//! SO_REUSEPORT, so the kernel spreads queries over them). Common queries take the fast path
//! (zero-copy parse, direct encoding); everything else goes through hickory's full decoder and
//! our [`Handler`]. On Linux each socket has a thread of its own that blocks in `recvmmsg`,
//! reads up to 32 queries per call and sends the fast path's answers with one `sendmmsg`;
//! elsewhere a runtime task takes one datagram at a time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
#[cfg(not(target_os = "linux"))]
use std::time::Instant;

use ::metrics::{Counter, Histogram, counter, histogram};
use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
#[cfg(not(target_os = "linux"))]
use tracing::debug;

use super::capture::Capture;
use super::fast::{self, Fast};
use super::handler::Handler;
use super::query::{self, NotFast};
use super::rrl::{self, ResponseKey, Rrl, Verdict};
use crate::metrics;
use crate::routing::{AnswerSeries, Rcode, RoutingTable};

/// Serves one UDP socket until `shutdown` is cancelled.
pub async fn serve(socket: UdpSocket, handler: Handler, rrl: Option<Arc<Rrl>>, shutdown: CancellationToken) {
    #[cfg(target_os = "linux")]
    batch::serve(socket, handler, rrl, shutdown).await;
    #[cfg(not(target_os = "linux"))]
    serve_one_at_a_time(socket, handler, rrl, shutdown).await;
}

/// The portable loop: one `recv_from` and one `send_to` per query.
#[cfg(not(target_os = "linux"))]
async fn serve_one_at_a_time(socket: UdpSocket, handler: Handler, rrl: Option<Arc<Rrl>>, shutdown: CancellationToken) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 65535];
    let mut out = Vec::with_capacity(super::MAX_UDP_PAYLOAD as usize);
    let mut m = Metrics::new();
    loop {
        let (n, src) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(error) => {
                    // ICMP errors from earlier sends surface here on some systems; keep going.
                    debug!(%error, "UDP receive error");
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let started = Instant::now();
        let packet = &buf[..n];
        let q = match query::parse(packet) {
            Ok(q) => q,
            Err(NotFast::Drop) => continue,
            Err(NotFast::Slow) => {
                slow(&socket, &handler, rrl.as_deref(), packet, src).await;
                continue;
            }
        };
        let table = handler.table();
        match fast::answer(&table, &q, src.ip(), &mut out) {
            Fast::Answered(info) => {
                if m.sample_due() {
                    m.duration.record(started.elapsed().as_secs_f64());
                    m.record(&info, true);
                } else {
                    m.record(&info, false);
                }
                m.flush(&table);
                drop(table);
                send(&socket, rrl.as_deref(), &out, src).await;
            }
            Fast::Slow => {
                drop(table);
                slow(&socket, &handler, rrl.as_deref(), packet, src).await;
            }
        }
    }
}

/// The Linux loop: `recvmmsg` drains up to [`batch::BATCH`] queries per system call, the fast
/// path answers them in turn, and one `sendmmsg` sends the answers. Queries for the full handler
/// are answered (and sent) as they come, in between.
#[cfg(target_os = "linux")]
mod batch {
    use std::io;
    use std::mem::size_of;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::{AsRawFd, RawFd};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use tokio::net::UdpSocket;
    use tokio_util::sync::CancellationToken;
    use tracing::{debug, error};

    use super::super::MAX_UDP_PAYLOAD;
    use super::{Fast, Handler, Metrics, NotFast, ResponseKey, Rrl, Verdict, fast, query, rrl, slow_response};

    /// Datagrams per `recvmmsg` / `sendmmsg` call.
    pub const BATCH: usize = 32;

    /// Receive room per datagram: more than the largest UDP payload (65,507 bytes over IPv4,
    /// 65,527 over IPv6), so no query is cut short (`MSG_TRUNC` is still checked). Only the pages
    /// datagrams land in are ever touched. The extra 64 bytes put the slots' first bytes in
    /// different cache sets.
    const SLOT: usize = 65536 + 64;

    /// How long a blocked `recvmmsg` waits before the thread looks at the shutdown token again.
    /// Shutdown does not wait for it: it wakes the thread at once (see [`serve`]); this is the
    /// backstop should that wake-up be lost.
    const WAKE_EVERY: Duration = Duration::from_millis(500);

    /// Serves one UDP socket on a thread of its own until `shutdown` is cancelled; returns when
    /// the thread has ended.
    ///
    /// A blocking `recvmmsg` on a dedicated thread instead of a task on the runtime: each wake-up
    /// then costs one system call where the readiness loop cost three (`epoll_wait`, `recvmmsg`,
    /// and the `recvmmsg` that finds the socket empty), plus the runtime's scheduling; and a
    /// long job on a runtime worker (a routing table rebuild, a TCP burst) never delays UDP
    /// answers. The runtime still runs TCP, the admin API, probes and the full handler, which
    /// this thread calls for the queries the fast path does not take.
    pub async fn serve(socket: UdpSocket, handler: Handler, rrl: Option<Arc<Rrl>>, shutdown: CancellationToken) {
        let socket = match blocking(socket) {
            Ok(s) => s,
            Err(error) => {
                error!(%error, "cannot set up a UDP socket for its thread; this socket is not served");
                return;
            }
        };
        // A second handle to the socket, to wake the thread out of recvmmsg at shutdown.
        let waker = match socket.try_clone() {
            Ok(w) => w,
            Err(error) => {
                error!(%error, "cannot set up a UDP socket for its thread; this socket is not served");
                return;
            }
        };
        let runtime = tokio::runtime::Handle::current();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let token = shutdown.clone();
        let spawned = std::thread::Builder::new().name("geodns-udp".into()).spawn(move || {
            serve_blocking(&socket, &handler, rrl.as_deref(), &token, &runtime);
            drop(done_tx);
        });
        if let Err(error) = spawned {
            error!(%error, "cannot start a UDP thread; this socket is not served");
            return;
        }
        let mut done = done_rx;
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = &mut done => {
                error!("a UDP thread ended before shutdown; its socket is no longer served");
                return;
            }
        }
        // Shutting down the reading side of a UDP socket wakes a thread blocked in recvmmsg
        // (Linux returns ENOTCONN for the call itself, yet marks the socket and wakes readers).
        let _ = socket2::SockRef::from(&waker).shutdown(std::net::Shutdown::Read);
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
        let mut m = Metrics::new();
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let n = match slots.recv(fd) {
                // Zero datagrams: the socket was shut down for reading (see `serve`).
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
                let q = match query::parse(packet) {
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
                match fast::answer(&table, &q, src.ip(), &mut outs[i]) {
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
                    Some(SocketAddr::V6(SocketAddrV6::new(
                        ip,
                        u16::from_be(a.sin6_port),
                        a.sin6_flowinfo,
                        a.sin6_scope_id,
                    )))
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
}

/// Sends a response, unless response rate limiting says to drop it or send it truncated.
#[cfg(not(target_os = "linux"))]
async fn send(socket: &UdpSocket, rrl: Option<&Rrl>, response: &[u8], dst: SocketAddr) {
    let verdict =
        rrl.map_or(Verdict::Send, |r| r.check(dst.ip(), ResponseKey::from_response(response), Instant::now()));
    let result = match verdict {
        Verdict::Send => socket.send_to(response, dst).await,
        Verdict::Slip => match rrl::truncated(response) {
            Some(t) => socket.send_to(&t, dst).await,
            None => return,
        },
        Verdict::Drop => return,
    };
    if let Err(error) = result {
        debug!(%error, %dst, "UDP send error");
    }
}

/// Metric handles registered once per socket task. [`Metrics::record`] only counts in plain
/// integers; [`Metrics::flush`] adds the counts to the shared counters once per batch.
struct Metrics {
    queries: [Counter; 4],
    ecs_present: Counter,
    ecs_absent: Counter,
    scope: Histogram,
    duration: Histogram,
    /// Answer counters by [`RoutingTable::answer_series`] index, resolved as first used, for the
    /// table of generation `series_generation` (indexes may mean other labels in another).
    series: Vec<Option<Counter>>,
    series_generation: u64,
    /// Answer counters by label, kept across tables (a rebuild keeps most of them).
    by_label: HashMap<AnswerSeries, Counter>,
    pending: Pending,
    /// Fast-path queries seen, for [`Metrics::sample_due`].
    sample: u32,
}

/// The UDP fast path times one query in this many, and records the ECS scope of the same one
/// (documented in docs/operations.md): the histograms' distributions stay true, their counts
/// are a sample. `geodns_queries_total` counts every query.
const SAMPLE_EVERY: u32 = 16;

/// Counts since the last [`Metrics::flush`].
#[derive(Default)]
struct Pending {
    queries: [u64; 4],
    ecs_present: u64,
    ecs_absent: u64,
    /// Answers by answer series (a batch answers a few names: a short list).
    answers: Vec<(u32, u64)>,
}

impl Metrics {
    fn new() -> Self {
        let q = |rcode: &'static str| counter!(metrics::QUERIES, "transport" => "udp", "rcode" => rcode);
        Metrics {
            queries: [q("noerror"), q("nxdomain"), q("servfail"), q("refused")],
            ecs_present: counter!(metrics::QUERIES_ECS, "ecs" => "present"),
            ecs_absent: counter!(metrics::QUERIES_ECS, "ecs" => "absent"),
            scope: histogram!(metrics::ECS_SCOPE),
            duration: histogram!(metrics::QUERY_DURATION),
            series: Vec::new(),
            series_generation: 0,
            by_label: HashMap::new(),
            pending: Pending::default(),
            sample: 0,
        }
    }

    /// Whether to time this query and record its scope: true for one query in
    /// [`SAMPLE_EVERY`] (histograms cost more per value than a whole fast-path answer).
    fn sample_due(&mut self) -> bool {
        // The first query, then every SAMPLE_EVERY-th: each socket that answers n queries
        // records ceil(n / SAMPLE_EVERY) of them.
        let due = self.sample % SAMPLE_EVERY == 0;
        self.sample = self.sample.wrapping_add(1);
        due
    }

    /// Counts one fast-path answer (the caller records its duration in `self.duration`), and
    /// its ECS scope when `sampled`.
    fn record(&mut self, info: &fast::Answered, sampled: bool) {
        let i = match info.rcode {
            Rcode::NoError => 0,
            Rcode::NxDomain => 1,
            Rcode::ServFail => 2,
            Rcode::Refused => 3,
        };
        self.pending.queries[i] += 1;
        if info.ecs {
            self.pending.ecs_present += 1;
            if sampled && info.rcode != Rcode::Refused {
                self.scope.record(f64::from(info.scope));
            }
        } else {
            self.pending.ecs_absent += 1;
        }
        if let Some(series) = info.answers {
            match self.pending.answers.iter_mut().find(|(s, _)| *s == series) {
                Some((_, n)) => *n += 1,
                None => self.pending.answers.push((series, 1)),
            }
        }
    }

    /// Adds the counts since the last flush to the shared counters. `table` is the one the
    /// answers counted since then came from.
    fn flush(&mut self, table: &RoutingTable) {
        let p = &mut self.pending;
        for (counter, n) in self.queries.iter().zip(&mut p.queries) {
            if *n > 0 {
                counter.increment(std::mem::take(n));
            }
        }
        for (counter, n) in [(&self.ecs_present, &mut p.ecs_present), (&self.ecs_absent, &mut p.ecs_absent)] {
            if *n > 0 {
                counter.increment(std::mem::take(n));
            }
        }
        if p.answers.is_empty() {
            return;
        }
        if self.series_generation != table.generation || self.series.len() != table.answer_series().len() {
            self.series.clear();
            self.series.resize(table.answer_series().len(), None);
            self.series_generation = table.generation;
            // Labels of names long gone (reloads) are let go now and then.
            if self.by_label.len() > 2 * table.answer_series().len() + 1024 {
                self.by_label.clear();
            }
        }
        let (by_index, by_label) = (&mut self.series, &mut self.by_label);
        for (series, n) in self.pending.answers.drain(..) {
            let Some(label) = table.answer_series().get(series as usize) else { continue };
            let counter = by_index[series as usize].get_or_insert_with(|| {
                by_label.entry(label.clone()).or_insert_with(|| super::handler::answer_counter(table, label)).clone()
            });
            counter.increment(n);
        }
    }
}

/// The full path: hickory decodes, our handler answers, hickory encodes.
#[cfg(not(target_os = "linux"))]
async fn slow(socket: &Arc<UdpSocket>, handler: &Handler, rrl: Option<&Rrl>, packet: &[u8], src: SocketAddr) {
    if let Some(bytes) = slow_response(handler, packet, src).await {
        send(socket, rrl, &bytes, src).await;
    }
}

/// The full path's response to one UDP query: hickory decodes, our handler answers, hickory
/// encodes. `None` when nothing is to be sent (a response, a packet too short for a header).
async fn slow_response(handler: &Handler, packet: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
    match Request::from_bytes(packet.to_vec(), src, Protocol::Udp) {
        Ok(request) => {
            if request.metadata.message_type == MessageType::Response {
                return None;
            }
            let capture = Capture::new(Protocol::Udp);
            handler.handle_request::<_, TokioTime>(&request, capture.clone()).await;
            Some(capture.take()).filter(|bytes| !bytes.is_empty())
        }
        // A readable header gets FORMERR (with no question); anything shorter is dropped.
        Err(_) => formerr(packet),
    }
}

/// FORMERR for a packet whose header can be read; `None` for responses and short packets.
pub fn formerr(packet: &[u8]) -> Option<Vec<u8>> {
    let header = Header::read(&mut BinDecoder::new(packet)).ok()?;
    if header.metadata.message_type == MessageType::Response {
        return None;
    }
    let mut metadata = Metadata::response_from_request(&header.metadata);
    metadata.response_code = ResponseCode::FormErr;
    let mut out = Vec::with_capacity(12);
    Header { metadata, counts: HeaderCounts::default() }.emit(&mut BinEncoder::new(&mut out)).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formerr_mirrors_the_id_and_drops_responses() {
        let mut q = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff];
        let r = super::formerr(&q).unwrap();
        assert_eq!(r.len(), 12);
        assert_eq!(&r[..2], &[0xab, 0xcd]);
        assert_eq!(r[2] & 0x80, 0x80);
        assert_eq!(r[3] & 0x0f, 1);
        q[2] |= 0x80;
        assert!(super::formerr(&q).is_none());
        assert!(super::formerr(&q[..5]).is_none());
    }
}
