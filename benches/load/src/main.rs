//! `geodns-load`: a saturating, batched UDP DNS load generator.
//!
//! Reads pre-built wire-format queries (each record a 2-byte big-endian length, then the DNS
//! message: the same file dnsperf reads with `-B`), and sends them round-robin to one server
//! from N connected UDP sockets with `sendmmsg`, reading answers with `recvmmsg`, in batches.
//! Each socket keeps up to `--window` queries in flight and is refilled as soon as answers come
//! back, so the server's socket never goes idle. Answers are matched by DNS ID per socket.
//! Runs for `--duration` seconds (at most 120) or `--max-queries` queries, whichever comes
//! first, then waits up to `--timeout` for the last answers, and prints sent, received, lost
//! (no answer within the timeout), qps and latency.
//!
//! `--rate QPS` paces the sending instead of saturating. `--record FILE` writes the canonical
//! answer of each query of the file (see `check.rs`), and `--expect FILE` checks every answer
//! against the acceptable ones of its query (one column per acceptable answer, e.g. one per
//! config of a reload benchmark) and counts the wrong ones; `--timeline FILE` writes, per
//! checked answer, when its query was sent and answered and which alternatives it matched.
//!
//! `--dnssec-ok` sets the DO bit in every query of the file (each must carry EDNS), to
//! measure a signed zone's answers with their RRSIGs.
//!
//! `--wait-ready SECS` instead sends the first query of the file every millisecond until it is
//! answered and prints the time to that first answer (start-up time of a server that was
//! launched at `--since-ns`, a CLOCK_REALTIME timestamp such as `date +%s%N`).
//!
//! Loopback benchmarking tool for benches/peers; Linux only. A package of its own (not part of
//! the shipped geodns crate): sendmmsg/recvmmsg/poll through libc are the point of this tool,
//! and each of its `unsafe` blocks says why it holds.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;

mod check;

/// Longest accepted answer; larger datagrams are truncated by the kernel (and still matched).
const RECV_BUF: usize = 4096;
/// Latency histogram resolution: 1 µs buckets up to this many µs, the rest in the last one.
const HIST_US: usize = 100_000;

#[derive(Debug, Parser)]
#[command(
    name = "geodns-load",
    version,
    about = "Saturating batched UDP DNS load generator (sendmmsg/recvmmsg), for loopback benchmarks",
    long_about = "Sends pre-built wire-format DNS queries round-robin to one server from N UDP \
sockets, in sendmmsg/recvmmsg batches, keeping up to --window queries in flight per socket so \
the server never waits for the client. Matches answers by DNS ID per socket and prints sent, \
received, lost (no answer within --timeout), qps and latency (average, p50, p99, max).\n\n\
The query file holds records of a 2-byte big-endian length followed by the DNS message (the \
format of dnsperf -B). The first two bytes of each message (the ID) are overwritten.\n\n\
Bounded: --duration (at most 120 s) and --max-queries, whichever comes first."
)]
struct Args {
    /// Server address.
    #[arg(long, short, default_value = "127.0.0.1:8053", value_name = "ADDR:PORT")]
    server: SocketAddr,
    /// Query file: records of a 2-byte big-endian length, then the DNS message (dnsperf -B).
    #[arg(long, short = 'f', value_name = "FILE")]
    queries: PathBuf,
    /// Number of UDP sockets (clients), 1-64.
    #[arg(long, short = 'c', default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    sockets: u32,
    /// Datagrams per sendmmsg/recvmmsg call, 1-1024.
    #[arg(long, short, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    batch: u32,
    /// Queries in flight per socket, 1-4096.
    #[arg(long, short, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    window: u32,
    /// Seconds to send for (at most 120).
    #[arg(long, short, default_value_t = 10.0, value_name = "SECS")]
    duration: f64,
    /// Stop after sending this many queries.
    #[arg(long, short = 'n', default_value_t = 100_000_000)]
    max_queries: u64,
    /// Seconds after which an unanswered query counts as lost (at most 10).
    #[arg(long, short, default_value_t = 1.0, value_name = "SECS")]
    timeout: f64,
    /// Socket receive/send buffer size to ask for, in bytes (0: the system default).
    #[arg(long, default_value_t = 4 << 20)]
    bufsize: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Send at most this many queries per second (0: as fast as the windows allow).
    #[arg(long, default_value_t = 0.0, value_name = "QPS")]
    rate: f64,
    /// Write the canonical answer of each query of the file, one line each in file order
    /// (LOST for none), sending each query once (implies --max-queries = the file's count).
    #[arg(long, value_name = "FILE", conflicts_with = "expect")]
    record: Option<PathBuf>,
    /// Check every answer: FILE has one line per query, its acceptable canonical answers
    /// separated by tabs (as --record writes them). Counts and prints wrong answers.
    #[arg(long, value_name = "FILE")]
    expect: Option<PathBuf>,
    /// With --expect: write one line per checked answer: the CLOCK_REALTIME nanoseconds its
    /// query was sent at and it was received at, and the bit mask of the alternatives it
    /// matched (0: wrong).
    #[arg(long, value_name = "FILE", requires = "expect")]
    timeline: Option<PathBuf>,
    /// Probe mode: resend the first query every millisecond until answered (at most SECS
    /// seconds, at most 60) and print the time to the first answer.
    #[arg(long, value_name = "SECS")]
    wait_ready: Option<f64>,
    /// With --wait-ready: measure from this CLOCK_REALTIME time in nanoseconds (e.g. the
    /// output of `date +%s%N` taken just before starting the server) instead of from now.
    #[arg(long, value_name = "NS")]
    since_ns: Option<u128>,
    /// With --wait-ready: give up as soon as this process (the server) has exited.
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
    /// Set the DNSSEC OK (DO) bit in every query (each must carry an EDNS OPT record): a
    /// signed zone then answers with RRSIGs and NSEC proofs.
    #[arg(long)]
    dnssec_ok: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !(args.duration > 0.0 && args.duration <= 120.0) {
        eprintln!("geodns-load: --duration must be in (0, 120] seconds");
        return ExitCode::from(2);
    }
    if !(args.rate >= 0.0 && args.rate <= 10_000_000.0) {
        eprintln!("geodns-load: --rate must be in [0, 10000000] queries per second");
        return ExitCode::from(2);
    }
    if !(args.timeout > 0.0 && args.timeout <= 10.0) {
        eprintln!("geodns-load: --timeout must be in (0, 10] seconds");
        return ExitCode::from(2);
    }
    let queries = match read_queries(&args.queries) {
        Ok(mut q) if !q.is_empty() => {
            if args.dnssec_ok
                && let Some(i) = q.iter_mut().position(|m| !set_dnssec_ok(m))
            {
                eprintln!("geodns-load: {}: query {i} has no EDNS OPT record for --dnssec-ok", args.queries.display());
                return ExitCode::from(2);
            }
            q
        }
        Ok(_) => {
            eprintln!("geodns-load: {}: no queries", args.queries.display());
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("geodns-load: {}: {e}", args.queries.display());
            return ExitCode::from(2);
        }
    };
    let expect = match &args.expect {
        Some(path) => match check::Expect::read(path, queries.len()) {
            Ok(e) => Some(e),
            Err(e) => {
                eprintln!("geodns-load: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let result = match args.wait_ready {
        Some(secs) => wait_ready(&args, &queries[0], secs.clamp(0.001, 60.0)),
        None => run(&args, &queries, expect.as_ref()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("geodns-load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads a dnsperf `-B` file: records of a 2-byte big-endian length, then that many bytes.
fn read_queries(path: &PathBuf) -> io::Result<Vec<Vec<u8>>> {
    let data = fs::read(path)?;
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        if at + 2 > data.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("truncated length at byte {at}")));
        }
        let len = usize::from(u16::from_be_bytes([data[at], data[at + 1]]));
        at += 2;
        if at + len > data.len() || len < 12 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad record of {len} bytes at byte {}", at - 2),
            ));
        }
        out.push(data[at..at + len].to_vec());
        at += len;
    }
    Ok(out)
}

/// Sets the DO bit of the OPT record of `msg` (a query); false when it has none.
fn set_dnssec_ok(msg: &mut [u8]) -> bool {
    let count = |at: usize| usize::from(u16::from_be_bytes([msg[at], msg[at + 1]]));
    let (qd, records) = (count(4), count(6) + count(8) + count(10));
    let skip_name = |mut at: usize| -> Option<usize> {
        loop {
            let len = *msg.get(at)?;
            if len & 0xc0 == 0xc0 {
                return Some(at + 2);
            }
            at += 1 + usize::from(len);
            if len == 0 {
                return Some(at);
            }
        }
    };
    let mut at = 12;
    for _ in 0..qd {
        let Some(next) = skip_name(at) else { return false };
        at = next + 4;
    }
    for _ in 0..records {
        let Some(next) = skip_name(at) else { return false };
        if next + 10 > msg.len() {
            return false;
        }
        let rtype = u16::from_be_bytes([msg[next], msg[next + 1]]);
        let rdlen = usize::from(u16::from_be_bytes([msg[next + 8], msg[next + 9]]));
        if rtype == 41 {
            // TTL: extended RCODE, version, then the flags (DO is the top bit).
            msg[next + 6] |= 0x80;
            return true;
        }
        at = next + 10 + rdlen;
    }
    false
}

fn socket(args: &Args) -> io::Result<UdpSocket> {
    let local: SocketAddr =
        if args.server.is_ipv6() { "[::]:0".parse().unwrap() } else { "0.0.0.0:0".parse().unwrap() };
    let s =
        socket2::Socket::new(socket2::Domain::for_address(local), socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if args.bufsize > 0 {
        // Best effort: the kernel caps these at net.core.{r,w}mem_max.
        let _ = s.set_recv_buffer_size(args.bufsize);
        let _ = s.set_send_buffer_size(args.bufsize);
    }
    s.bind(&local.into())?;
    s.connect(&args.server.into())?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Per-socket state: the in-flight table indexed by DNS ID, and the send order for timeouts.
struct Client {
    sock: UdpSocket,
    /// Send time in ns since the run started, plus 1 (0 = free), per DNS ID.
    slots: Vec<u64>,
    /// Index in the query file of the query in flight, per DNS ID.
    query_of: Vec<u32>,
    /// (ID, slot value) in send order; stale entries (answered) are skipped lazily.
    order: VecDeque<(u16, u64)>,
    inflight: usize,
    next_id: u16,
    send_bufs: Vec<Vec<u8>>,
}

#[derive(Default)]
struct Stats {
    sent: u64,
    received: u64,
    timed_out: u64,
    unmatched: u64,
    send_errors: u64,
    lat_sum_ns: u128,
    lat_max_ns: u64,
    hist: Vec<u64>,
    rcodes: [u64; 16],
    /// Answers checked against --expect, wrong ones, and matches per alternative.
    checked: u64,
    wrong: u64,
    matched: Vec<u64>,
}

impl Stats {
    fn percentile_us(&self, p: f64) -> u64 {
        let target = ((self.received as f64) * p).ceil() as u64;
        let mut seen = 0;
        for (us, n) in self.hist.iter().enumerate() {
            seen += n;
            if seen >= target.max(1) {
                return us as u64;
            }
        }
        HIST_US as u64
    }
}

/// Answers being checked or recorded, and where the results go.
struct Checking<'a> {
    expect: Option<&'a check::Expect>,
    /// --record: the canonical answer per query.
    record: Option<Vec<Option<String>>>,
    /// --timeline: (send time, receive time, mask) per checked answer.
    timeline: Option<io::BufWriter<fs::File>>,
    /// CLOCK_REALTIME ns at the run's start.
    epoch_ns: u128,
    /// Wrong answers printed so far (the first few are).
    printed: u32,
}

impl Checking<'_> {
    /// Checks or records the answer `msg` to query `q`, sent and received at these times (ns
    /// since the run started).
    fn answer(&mut self, stats: &mut Stats, q: usize, sent_ns: u64, recv_ns: u64, msg: &[u8]) -> io::Result<()> {
        if self.expect.is_none() && self.record.is_none() {
            return Ok(());
        }
        let canon = check::canonical(msg).unwrap_or_else(|| "unparsable".to_owned());
        if let Some(rec) = self.record.as_mut() {
            rec[q] = Some(canon);
            return Ok(());
        }
        let expect = self.expect.expect("checked above: recording or expecting");
        let mask = expect.matches(q, &canon);
        stats.checked += 1;
        if mask == 0 {
            stats.wrong += 1;
            if self.printed < 10 {
                self.printed += 1;
                eprintln!("geodns-load: wrong answer to query {q}: {canon}; expected one of {:?}", expect.describe(q));
            }
        }
        for (i, m) in stats.matched.iter_mut().enumerate() {
            *m += u64::from(mask >> i & 1);
        }
        if let Some(t) = self.timeline.as_mut() {
            use std::io::Write as _;
            writeln!(t, "{} {} {mask}", self.epoch_ns + u128::from(sent_ns), self.epoch_ns + u128::from(recv_ns))?;
        }
        Ok(())
    }
}

fn run(args: &Args, queries: &[Vec<u8>], expect: Option<&check::Expect>) -> io::Result<ExitCode> {
    let max_queries = if args.record.is_some() { args.max_queries.min(queries.len() as u64) } else { args.max_queries };
    let mut checking = Checking {
        expect,
        record: args.record.as_ref().map(|_| vec![None; queries.len()]),
        timeline: match &args.timeline {
            Some(p) => Some(io::BufWriter::new(fs::File::create(p)?)),
            None => None,
        },
        epoch_ns: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos(),
        printed: 0,
    };
    let batch = args.batch as usize;
    let window = args.window as usize;
    let timeout_ns = (args.timeout * 1e9) as u64;
    let mut clients = Vec::new();
    for _ in 0..args.sockets {
        clients.push(Client {
            sock: socket(args)?,
            slots: vec![0; 65536],
            query_of: vec![0; 65536],
            order: VecDeque::with_capacity(window * 2),
            inflight: 0,
            next_id: 0,
            send_bufs: vec![vec![0u8; 512]; batch],
        });
    }
    let mut stats =
        Stats { hist: vec![0; HIST_US + 1], matched: vec![0; expect.map_or(0, |e| e.width)], ..Stats::default() };

    // recvmmsg buffers, shared by all sockets (processed before the next call).
    let mut recv_bufs = vec![vec![0u8; RECV_BUF]; batch];
    let mut recv_iov: Vec<libc::iovec> =
        recv_bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() }).collect();
    let mut recv_msgs: Vec<libc::mmsghdr> = recv_iov.iter_mut().map(mmsghdr).collect();
    let mut send_iov: Vec<libc::iovec> = vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; batch];
    let mut send_msgs: Vec<libc::mmsghdr> = send_iov.iter_mut().map(mmsghdr).collect();
    let mut pending_ids: Vec<u16> = Vec::with_capacity(batch);
    let mut pollfds: Vec<libc::pollfd> =
        clients.iter().map(|c| libc::pollfd { fd: c.sock.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();

    let start = Instant::now();
    let send_for = Duration::from_secs_f64(args.duration);
    let mut next_query = 0usize;
    let mut send_stopped: Option<Duration> = None;
    let mut last_answer = Duration::ZERO;
    loop {
        let elapsed = start.elapsed();
        let sending = send_stopped.is_none();
        if sending && (elapsed >= send_for || stats.sent >= max_queries) {
            send_stopped = Some(elapsed);
        }
        let total_inflight: usize = clients.iter().map(|c| c.inflight).sum();
        if let Some(stop) = send_stopped
            && (total_inflight == 0 || elapsed >= stop + Duration::from_nanos(timeout_ns))
        {
            break;
        }
        let mut progress = false;
        for c in clients.iter_mut() {
            // Answers.
            loop {
                // SAFETY: each of the `batch` headers points at its own iovec over a live
                // RECV_BUF-byte buffer of `recv_bufs` (no name, no control data); the vectors
                // outlive the call and nothing else touches them during it.
                let n = unsafe {
                    libc::recvmmsg(
                        c.sock.as_raw_fd(),
                        recv_msgs.as_mut_ptr(),
                        batch as libc::c_uint,
                        libc::MSG_DONTWAIT,
                        std::ptr::null_mut(),
                    )
                };
                if n <= 0 {
                    break; // EAGAIN, or ECONNREFUSED from an ICMP error: nothing to read now
                }
                progress = true;
                let now = start.elapsed();
                let now_ns = now.as_nanos() as u64 + 1;
                last_answer = now;
                for (i, m) in recv_msgs.iter().take(n as usize).enumerate() {
                    let len = m.msg_len as usize;
                    let buf = &recv_bufs[i];
                    if len < 4 {
                        stats.unmatched += 1;
                        continue;
                    }
                    let id = u16::from_be_bytes([buf[0], buf[1]]);
                    let sent_at = c.slots[usize::from(id)];
                    if sent_at == 0 {
                        stats.unmatched += 1;
                        continue;
                    }
                    c.slots[usize::from(id)] = 0;
                    c.inflight -= 1;
                    stats.received += 1;
                    stats.rcodes[usize::from(buf[3] & 0x0f)] += 1;
                    let lat = now_ns.saturating_sub(sent_at);
                    stats.lat_sum_ns += u128::from(lat);
                    stats.lat_max_ns = stats.lat_max_ns.max(lat);
                    stats.hist[((lat / 1000) as usize).min(HIST_US)] += 1;
                    let q = c.query_of[usize::from(id)] as usize;
                    checking.answer(&mut stats, q, sent_at - 1, now_ns - 1, &buf[..len.min(RECV_BUF)])?;
                }
                if (n as usize) < batch {
                    break;
                }
            }
            // Timeouts (and stale entries of answered queries).
            let now_ns = start.elapsed().as_nanos() as u64 + 1;
            while let Some(&(id, t)) = c.order.front() {
                if c.slots[usize::from(id)] != t {
                    c.order.pop_front();
                } else if now_ns - t > timeout_ns {
                    c.slots[usize::from(id)] = 0;
                    c.inflight -= 1;
                    stats.timed_out += 1;
                    c.order.pop_front();
                } else {
                    break;
                }
            }
            // Refill.
            if send_stopped.is_some() {
                continue;
            }
            let mut room = (window - c.inflight).min(batch).min((max_queries - stats.sent) as usize);
            if args.rate > 0.0 {
                // Paced: no more than the rate allows since the start.
                let allowed = (args.rate * start.elapsed().as_secs_f64()) as u64;
                room = room.min(allowed.saturating_sub(stats.sent) as usize);
            }
            if room == 0 {
                continue;
            }
            let now_ns = start.elapsed().as_nanos() as u64 + 1;
            pending_ids.clear();
            for k in 0..room {
                let qi = next_query;
                let q = &queries[qi];
                next_query = (next_query + 1) % queries.len();
                let mut id = c.next_id;
                while c.slots[usize::from(id)] != 0 {
                    id = id.wrapping_add(1);
                }
                c.next_id = id.wrapping_add(1);
                c.slots[usize::from(id)] = now_ns;
                c.query_of[usize::from(id)] = qi as u32;
                pending_ids.push(id);
                let buf = &mut c.send_bufs[k];
                buf.clear();
                buf.extend_from_slice(q);
                buf[..2].copy_from_slice(&id.to_be_bytes());
                send_iov[k] = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
                send_msgs[k] = mmsghdr(&mut send_iov[k]);
            }
            // SAFETY: the first `room` headers were just pointed at iovecs over this socket's
            // send buffers (one query each); the kernel only reads them (and writes msg_len).
            let n = unsafe {
                libc::sendmmsg(c.sock.as_raw_fd(), send_msgs.as_mut_ptr(), room as libc::c_uint, libc::MSG_DONTWAIT)
            };
            let n = if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::WouldBlock {
                    stats.send_errors += 1;
                }
                0
            } else {
                n as usize
            };
            for &id in &pending_ids[..n] {
                c.order.push_back((id, now_ns));
            }
            for &id in &pending_ids[n..] {
                c.slots[usize::from(id)] = 0; // not sent: free the ID again
                // Rewind so the unsent queries are the next ones sent.
                next_query = (next_query + queries.len() - 1) % queries.len();
            }
            c.inflight += n;
            stats.sent += n as u64;
            if n > 0 {
                progress = true;
            }
        }
        if !progress {
            // Nothing to read and every window full (or sending over): wait for an answer.
            // SAFETY: `pollfds` is a live array of that many pollfd structs, one per open socket.
            let r = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, 1) };
            if r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return Err(io::Error::last_os_error());
            }
        }
    }
    let send_time = send_stopped.unwrap_or_else(|| start.elapsed()).as_secs_f64();
    let still_inflight: usize = clients.iter().map(|c| c.inflight).sum();
    let lost = stats.sent - stats.received;
    let qps = stats.received as f64 / send_time.max(1e-9);
    let avg_us = if stats.received > 0 { stats.lat_sum_ns as f64 / stats.received as f64 / 1000.0 } else { 0.0 };
    let max_us = stats.lat_max_ns as f64 / 1000.0;
    let (p50, p99) = (stats.percentile_us(0.50), stats.percentile_us(0.99));
    let _ = last_answer;
    if let Some(t) = checking.timeline.as_mut() {
        use std::io::Write as _;
        t.flush()?;
    }
    if let (Some(path), Some(rec)) = (&args.record, &checking.record) {
        let text: String = rec.iter().map(|a| format!("{}\n", a.as_deref().unwrap_or("LOST"))).collect();
        fs::write(path, text)?;
    }
    let matched = stats.matched.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    if args.json {
        println!(
            "{{\"sent\":{},\"received\":{},\"lost\":{},\"timed_out\":{},\"unanswered_at_end\":{},\"unmatched\":{},\"send_errors\":{},\
\"seconds\":{:.3},\"qps\":{:.1},\"latency_avg_us\":{:.1},\"latency_p50_us\":{},\"latency_p99_us\":{},\"latency_max_us\":{:.1},\
\"noerror\":{},\"nxdomain\":{},\"other_rcode\":{},\"sockets\":{},\"batch\":{},\"window\":{},\
\"checked\":{},\"wrong\":{},\"matched\":[{}]}}",
            stats.sent,
            stats.received,
            lost,
            stats.timed_out,
            still_inflight,
            stats.unmatched,
            stats.send_errors,
            send_time,
            qps,
            avg_us,
            p50,
            p99,
            max_us,
            stats.rcodes[0],
            stats.rcodes[3],
            stats.received - stats.rcodes[0] - stats.rcodes[3],
            args.sockets,
            args.batch,
            args.window,
            stats.checked,
            stats.wrong,
            matched,
        );
    } else {
        println!(
            "geodns-load: {} to {}, {} sockets, batch {}, window {}",
            args.queries.display(),
            args.server,
            args.sockets,
            args.batch,
            args.window
        );
        println!("  Queries sent:         {}", stats.sent);
        println!("  Queries completed:    {}", stats.received);
        println!("  Queries lost:         {} ({:.3}%)", lost, 100.0 * lost as f64 / (stats.sent.max(1)) as f64);
        println!("  Unmatched answers:    {}", stats.unmatched);
        println!("  Run time (s):         {send_time:.3}");
        println!("  Queries per second:   {qps:.1}");
        println!("  Latency (us):         avg {avg_us:.1}, p50 {p50}, p99 {p99}, max {max_us:.1}");
        println!(
            "  Rcodes:               NOERROR {}, NXDOMAIN {}, other {}",
            stats.rcodes[0],
            stats.rcodes[3],
            stats.received - stats.rcodes[0] - stats.rcodes[3]
        );
        if args.expect.is_some() {
            println!(
                "  Answers checked:      {}, wrong {}, matched per alternative [{matched}]",
                stats.checked, stats.wrong
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn mmsghdr(iov: &mut libc::iovec) -> libc::mmsghdr {
    // SAFETY: mmsghdr is plain old data; all-zero is a valid value (no name, no control).
    let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
    m.msg_hdr.msg_iov = iov;
    m.msg_hdr.msg_iovlen = 1;
    m
}

/// Probe mode: the time until the server first answers `query`.
fn wait_ready(args: &Args, query: &[u8], secs: f64) -> io::Result<ExitCode> {
    let since = match args.since_ns {
        Some(ns) => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
            Instant::now() - Duration::from_nanos(now.saturating_sub(ns).min(u128::from(u64::MAX)) as u64)
        }
        None => Instant::now(),
    };
    let sock = socket(args)?;
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut q = query.to_vec();
    let mut id: u16 = 0x5a00;
    let mut buf = [0u8; RECV_BUF];
    let alive = |pid: Option<u32>| pid.is_none_or(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
    while Instant::now() < deadline {
        if !alive(args.pid) {
            eprintln!("geodns-load: process {} exited before answering", args.pid.unwrap_or(0));
            return Ok(ExitCode::FAILURE);
        }
        id = id.wrapping_add(1);
        q[..2].copy_from_slice(&id.to_be_bytes());
        let _ = sock.send(&q); // ECONNREFUSED until the server binds
        let until = Instant::now() + Duration::from_millis(1);
        while Instant::now() < until {
            match sock.recv(&mut buf) {
                Ok(n) if n >= 4 && buf[..2] == id.to_be_bytes() => {
                    let ms = since.elapsed().as_secs_f64() * 1000.0;
                    if args.json {
                        println!("{{\"ready_ms\":{ms:.1}}}");
                    } else {
                        println!("first answer after {ms:.1} ms");
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_micros(100)),
                Err(_) => std::thread::sleep(Duration::from_micros(100)),
            }
        }
    }
    eprintln!("geodns-load: no answer from {} within {secs} s", args.server);
    Ok(ExitCode::FAILURE)
}

#[cfg(test)]
mod tests {
    use super::set_dnssec_ok;

    #[test]
    fn the_do_bit_is_set_in_the_opt_record() {
        // app.geo.example A, one additional record: OPT (payload 1232), with an ECS option.
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        q.extend_from_slice(b"\x03app\x03geo\x07example\x00\x00\x01\x00\x01");
        q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 11, 0, 8, 0, 7, 0, 1, 24, 0, 81, 2, 69]);
        let mut want = q.clone();
        let flags = want.len() - 15;
        want[flags] = 0x80;
        assert!(set_dnssec_ok(&mut q));
        assert_eq!(q, want);
        // Without EDNS: nothing to set.
        let mut plain = q[..q.len() - 22].to_vec();
        plain[11] = 0;
        assert!(!set_dnssec_ok(&mut plain));
    }
}
