//! Every call of `dns/` into the C library, its one CPU hint and its one unchecked conversion,
//! behind a safe API: this is the only file of `dns/` with `unsafe` code, each block with the
//! reason it holds.
//!
//! - [`Datagrams`] (Linux): a batch of receive slots filled by one `recvmmsg` and answered with
//!   one `sendmmsg`. One system call per wake-up reads up to [`BATCH`] queries, and one sends
//!   their answers: with full batches that is where batching pays, the kernel's cost being most
//!   of a query's. The slots (buffers, source addresses) are allocated once per socket.
//! - [`dont_fragment`]: Don't Fragment on a UDP socket (Linux; a no-op elsewhere).
//! - [`prefetch`]: asks the CPU to start fetching memory (x86-64; a no-op elsewhere).
//! - [`read_name`]: the question name's text, as the fast path's parser reads it. It writes
//!   only bytes of an ASCII table (proven at compile time) and hands the text out as a `str`
//!   unchecked: a second pass over the name to check it (`std::str::from_utf8`, or an ASCII
//!   test) was a measurable share of the parser's cost on every query.

use std::io;
use std::os::fd::AsFd;

#[cfg(target_os = "linux")]
pub use linux::{BATCH, Datagrams};

/// Answers leave with Don't Fragment set (IPv4) and are never fragmented by this host (IPv6),
/// as RFC 9715 (IP Fragmentation Avoidance in DNS over UDP, section 3.1) recommends: a UDP
/// answer is at most [`MAX_UDP_PAYLOAD`](crate::dns::MAX_UDP_PAYLOAD) (1,232) bytes, which
/// fits any path of MTU 1,280, so a fragment is never needed, and a fragmented answer is one an
/// attacker can forge a piece of.
///
/// `PMTUDISC_PROBE` rather than `PMTUDISC_DO`: DF is set, but the kernel ignores path-MTU
/// hints (ICMP "fragmentation needed", which anyone can forge to shrink a route's MTU), and
/// only the interface's MTU bounds an answer. With DF set the kernel also skips choosing an
/// IPv4 identification for each datagram, a hash and a shared counter per answer.
#[cfg(target_os = "linux")]
pub fn dont_fragment(socket: &impl AsFd, ipv6: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (level, option, value) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, libc::IPV6_PMTUDISC_PROBE)
    } else {
        (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_PROBE)
    };
    // SAFETY: the option's value is a c_int, passed by pointer with its size; the descriptor
    // is the live socket borrowed for the call.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::setsockopt(
            socket.as_fd().as_raw_fd(),
            level,
            option,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("cannot set Don't Fragment on a UDP socket: {e}")));
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub fn dont_fragment(_socket: &impl AsFd, _ipv6: bool) -> io::Result<()> {
    Ok(())
}

/// The socket's path-MTU discovery mode (`IP_MTU_DISCOVER`, or `IPV6_MTU_DISCOVER`), for the
/// tests of [`dont_fragment`].
#[cfg(all(test, target_os = "linux"))]
pub fn mtu_discover(socket: &impl AsFd, ipv6: bool) -> io::Result<libc::c_int> {
    use std::os::fd::AsRawFd;
    let (level, option) =
        if ipv6 { (libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER) } else { (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER) };
    let mut value: libc::c_int = -1;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: reads one c_int option into `value`, whose size is passed in `len`; the
    // descriptor is the live socket borrowed for the call.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::getsockopt(socket.as_fd().as_raw_fd(), level, option, (&raw mut value).cast(), &mut len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// Asks the CPU to bring up to 512 bytes from `start` into its caches. A hint: it reads
/// nothing the program sees, never faults, and any address will do (a stale one only wastes
/// the fetch).
pub fn prefetch(start: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for offset in (0..len.min(512)).step_by(64) {
        // SAFETY: `_mm_prefetch` needs SSE, which every x86-64 CPU has; a prefetch does not
        // access memory as far as the program is concerned, whatever the address.
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

/// Names are at most 255 octets on the wire, so their text is at most 254 characters + root.
pub const MAX_NAME_TEXT: usize = 256;

/// Each byte of a name the fast path takes, lower-cased: letters, digits, '-' and '_'; 0 for
/// every other byte (the full decoder takes names with those). ASCII only, as the assertion
/// below proves when the crate compiles: [`read_name`]'s `str` rests on it.
const NAME_CHAR: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' {
            t[b] = c.to_ascii_lowercase();
        }
        b += 1;
    }
    t
};

const _: () = {
    let mut b = 0;
    while b < 256 {
        assert!(NAME_CHAR[b].is_ascii());
        b += 1;
    }
};

/// Reads the uncompressed name at `msg[pos..]` into `buf` as lower-case dotted text ("." for
/// the root): the text, and the position after the name. `None` for what the fast path leaves
/// to the full decoder: a compression pointer, a label over 63 octets, text over 254
/// characters, a byte other than a letter, digit, '-' or '_', a name cut short.
#[inline(always)]
pub fn read_name<'a>(msg: &[u8], mut pos: usize, buf: &'a mut [u8; MAX_NAME_TEXT]) -> Option<(&'a str, usize)> {
    // The length in a local (a register): the loop below runs per byte.
    let mut len = 0;
    loop {
        let label_len = usize::from(*msg.get(pos)?);
        pos += 1;
        if label_len == 0 {
            break;
        }
        // No compression in a question (pointers are over 63).
        if label_len > 63 || len + label_len + 1 >= MAX_NAME_TEXT - 1 {
            return None;
        }
        let label = msg.get(pos..pos + label_len)?;
        let mut valid = true;
        for (out, &b) in buf[len..len + label_len].iter_mut().zip(label) {
            let c = NAME_CHAR[usize::from(b)];
            valid &= c != 0;
            *out = c;
        }
        if !valid {
            return None;
        }
        len += label_len;
        buf[len] = b'.';
        len += 1;
        pos += label_len;
    }
    if len == 0 {
        buf[0] = b'.';
        len = 1;
    }
    // SAFETY: `buf[..len]` was written above, and only with bytes of NAME_CHAR (ASCII, by the
    // assertion beside it) and '.': ASCII is valid UTF-8.
    #[allow(unsafe_code)]
    let text = unsafe { std::str::from_utf8_unchecked(&buf[..len]) };
    Some((text, pos))
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
    use std::os::fd::AsRawFd;

    /// Datagrams per `recvmmsg` / `sendmmsg` call.
    pub const BATCH: usize = 32;

    /// Receive room per datagram: more than the largest UDP payload (65,507 bytes over IPv4,
    /// 65,527 over IPv6), so no query is cut short (`MSG_TRUNC` is still checked). Only the
    /// pages datagrams land in are ever touched. The extra 64 bytes put the slots' first bytes
    /// in different cache sets.
    const SLOT: usize = 65536 + 64;

    /// Receive buffers and source addresses for one batch, allocated once per socket.
    pub struct Datagrams {
        /// `BATCH` slots of `SLOT` bytes.
        bufs: Vec<u8>,
        names: Vec<libc::sockaddr_storage>,
        name_lens: [libc::socklen_t; BATCH],
        lens: [usize; BATCH],
        flags: [libc::c_int; BATCH],
    }

    impl Datagrams {
        pub fn new() -> Self {
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
            #[allow(unsafe_code)]
            let empty: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            Datagrams {
                bufs: vec![0; BATCH * SLOT],
                names: vec![empty; BATCH],
                name_lens: [0; BATCH],
                lens: [0; BATCH],
                flags: [0; BATCH],
            }
        }

        /// One `recvmmsg`: waits for a datagram (as the socket blocks: up to its read timeout,
        /// then `WouldBlock`), then reads it and whatever else is queued, up to `BATCH`, without
        /// waiting more. How many it read; 0 once the socket is shut down for reading.
        pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
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
            // SAFETY: every header points at its own iovec (a SLOT-byte slot inside `bufs`) and
            // its own sockaddr_storage with the storage's size; all of them outlive the call and
            // nothing else uses them during it. The count is the arrays' length.
            #[allow(unsafe_code)]
            let n = unsafe {
                libc::recvmmsg(
                    socket.as_raw_fd(),
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
                self.name_lens[i] = msg.msg_hdr.msg_namelen.min(size_of::<libc::sockaddr_storage>() as libc::socklen_t);
                self.flags[i] = msg.msg_hdr.msg_flags;
            }
            Ok(n)
        }

        /// Datagram `i` of the last batch.
        pub fn packet(&self, i: usize) -> &[u8] {
            &self.bufs[i * SLOT..i * SLOT + self.lens[i]]
        }

        /// Whether datagram `i` was longer than its slot (and so was cut short).
        pub fn truncated(&self, i: usize) -> bool {
            self.flags[i] & libc::MSG_TRUNC != 0
        }

        /// Datagram `i`'s source, if the kernel gave a complete IPv4 or IPv6 address.
        pub fn source(&self, i: usize) -> Option<SocketAddr> {
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

        /// One non-blocking `sendmmsg` of `outs[i]` to datagram `i`'s source, for each `i` in
        /// `ready` (at most `BATCH`): how many were sent, in order from the first.
        pub fn send(&self, socket: &UdpSocket, ready: &[usize], outs: &[Vec<u8>]) -> io::Result<usize> {
            let count = ready.len().min(BATCH);
            let mut iovs: [libc::iovec; BATCH] =
                std::array::from_fn(|_| libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 });
            // SAFETY: mmsghdr is plain old data; all-zero is a valid value (no name, no control).
            #[allow(unsafe_code)]
            let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            for ((msg, iov), &i) in msgs.iter_mut().zip(iovs.iter_mut()).zip(&ready[..count]) {
                // sendmmsg only reads through these pointers; the types are just not const.
                *iov = libc::iovec { iov_base: outs[i].as_ptr().cast_mut().cast(), iov_len: outs[i].len() };
                msg.msg_hdr.msg_name = (&raw const self.names[i]).cast_mut().cast();
                msg.msg_hdr.msg_namelen = self.name_lens[i];
                msg.msg_hdr.msg_iov = iov;
                msg.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: the first `count` headers each point at one iovec over a live response
            // buffer and at a sockaddr_storage with a length no larger than its size (what
            // recvmmsg reported, or 0); the kernel only reads them (and writes msg_len). All of
            // it outlives the call.
            #[allow(unsafe_code)]
            let n = unsafe {
                libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), count as libc::c_uint, libc::MSG_DONTWAIT as _)
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok((n as usize).min(count))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_as_lower_case_text() {
        let mut buf = [0; MAX_NAME_TEXT];
        let msg = b"\x03ApP\x03geo\x07Example\x00rest";
        assert_eq!(read_name(msg, 0, &mut buf), Some(("app.geo.example.", 17)));
        assert_eq!(read_name(b"\x00", 0, &mut buf), Some((".", 1)));
        assert_eq!(read_name(b"\x03a_-\x00", 0, &mut buf), Some(("a_-.", 5)));
        for bad in [&b"\x03a b\x00"[..], b"\x03ab", b"\x03ab\x00"[..3].as_ref(), b"\xc0\x0c", b"\x02\xc3\xa9\x00"] {
            assert_eq!(read_name(bad, 0, &mut buf), None, "{bad:?}");
        }
        let long: Vec<u8> = (0..4).flat_map(|_| std::iter::once(63).chain([b'a'; 63])).chain([0]).collect();
        assert_eq!(read_name(&long, 0, &mut buf), None, "256 characters of text");
    }
}
