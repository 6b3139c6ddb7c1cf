//! Binding the DNS sockets: UDP and TCP on each listen address, several UDP sockets per
//! address (SO_REUSEPORT) so the kernel spreads queries over their threads.

use std::io;
use std::net::SocketAddr;

use std::sync::Arc;

use crate::config::{RrlConfig, TcpConfig};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::handler::Handler;
use super::tcp::TcpLimits;

/// A running DNS server and the addresses it actually bound (port 0 resolved).
pub struct DnsServer {
    /// Cancels the UDP loops at shutdown; then `tcp`, the TCP accept loops.
    udp: CancellationToken,
    udp_tasks: Vec<tokio::task::JoinHandle<()>>,
    tcp: CancellationToken,
    tcp_tasks: Vec<tokio::task::JoinHandle<()>>,
    pub bound: Vec<SocketAddr>,
}

/// How many times to look for a port free for both UDP and TCP when asked for port 0.
const PORT_ATTEMPTS: usize = 20;

impl DnsServer {
    /// Binds UDP and TCP on every address and starts serving. `udp_sockets` UDP sockets share
    /// each address. An address with port 0 gets one port, the same for UDP and TCP.
    pub fn start(
        handler: Handler,
        listen: &[SocketAddr],
        tcp: &TcpConfig,
        rrl: &RrlConfig,
        udp_sockets: usize,
    ) -> io::Result<Self> {
        let mut bound = Vec::new();
        let udp_token = CancellationToken::new();
        let tcp_token = CancellationToken::new();
        let (mut udp_tasks, mut tcp_tasks) = (Vec::new(), Vec::new());
        // One table for every UDP socket, so a client's budget is the same whichever socket
        // the kernel hands its queries to. TCP is never limited.
        let rrl = super::rrl::Rrl::new(rrl).map(Arc::new);
        for addr in listen {
            let (udp, tcp_listener, actual) = bind_pair(*addr, udp_sockets.max(1))?;
            for socket in udp {
                udp_tasks.push(tokio::spawn(super::udp::serve(
                    socket,
                    handler.clone(),
                    rrl.clone(),
                    udp_token.clone(),
                )));
            }
            tcp_tasks.push(super::tcp::spawn_tcp(
                tcp_listener,
                handler.clone(),
                TcpLimits::from(tcp),
                tcp_token.clone(),
            ));
            info!(addr = %actual, "serving DNS over UDP and TCP");
            bound.push(actual);
        }
        Ok(DnsServer { udp: udp_token, udp_tasks, tcp: tcp_token, tcp_tasks, bound })
    }

    /// Stops accepting, then waits for the listener tasks to end: the UDP sockets are closed
    /// before the TCP listeners. While a port's TCP listener is open, no other server can be
    /// given the port (binding UDP port 0 with SO_REUSEPORT may pick a port whose UDP socket is
    /// still open; the TCP bind on it then fails and another port is tried, see `bind_pair`).
    pub async fn shutdown(mut self) {
        self.udp.cancel();
        for task in self.udp_tasks.drain(..) {
            let _ = task.await;
        }
        self.tcp.cancel();
        for task in self.tcp_tasks.drain(..) {
            let _ = task.await;
        }
    }
}

fn bind_pair(addr: SocketAddr, udp_sockets: usize) -> io::Result<(Vec<UdpSocket>, TcpListener, SocketAddr)> {
    let attempts = if addr.port() == 0 { PORT_ATTEMPTS } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let first = udp_socket(addr)?;
        let actual = first.local_addr()?.as_socket().expect("an IP socket has an IP address");
        match tcp_listener(actual) {
            Ok(tcp) => {
                let mut udp = vec![first];
                for _ in 1..udp_sockets {
                    udp.push(udp_socket(actual)?);
                }
                let udp = udp.into_iter().map(|s| UdpSocket::from_std(s.into())).collect::<io::Result<Vec<_>>>()?;
                return Ok((udp, TcpListener::from_std(tcp.into())?, actual));
            }
            Err(e) => last_error = Some(e),
        }
    }
    let e = last_error.expect("at least one attempt was made");
    Err(io::Error::new(e.kind(), format!("cannot listen on TCP {addr}: {e}")))
}

fn udp_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    dont_fragment(&socket, addr.is_ipv6())?;
    socket.bind(&addr.into()).map_err(|e| io::Error::new(e.kind(), format!("cannot listen on UDP {addr}: {e}")))?;
    Ok(socket)
}

/// Answers leave with Don't Fragment set (IPv4) and are never fragmented by this host (IPv6),
/// as RFC 9715 (IP Fragmentation Avoidance in DNS over UDP, section 3.1) recommends: a UDP
/// answer is at most [`MAX_UDP_PAYLOAD`](super::MAX_UDP_PAYLOAD) (1,232) bytes, which fits
/// any path of MTU 1,280, so a fragment is never needed, and a fragmented answer is one an
/// attacker can forge a piece of.
///
/// `PMTUDISC_PROBE` rather than `PMTUDISC_DO`: DF is set, but the kernel ignores path-MTU
/// hints (ICMP "fragmentation needed", which anyone can forge to shrink a route's MTU), and
/// only the interface's MTU bounds an answer. With DF set the kernel also skips choosing an
/// IPv4 identification for each datagram (a hash and a shared counter per answer; about 1%
/// of a query's CPU time, measured with perf: README, Performance).
#[cfg(target_os = "linux")]
pub(crate) fn dont_fragment(socket: &Socket, ipv6: bool) -> io::Result<()> {
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
            socket.as_raw_fd(),
            level,
            option,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("cannot set Don't Fragment on a UDP socket: {e}")));
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn dont_fragment(_socket: &Socket, _ipv6: bool) -> io::Result<()> {
    Ok(())
}

fn tcp_listener(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    fn option(socket: &Socket, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        let mut value: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: reads one c_int option into `value`, whose size is passed in `len`.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::getsockopt(socket.as_raw_fd(), level, name, (&raw mut value).cast(), &mut len) };
        assert_eq!(rc, 0, "getsockopt: {}", io::Error::last_os_error());
        value
    }

    #[test]
    fn udp_sockets_send_with_dont_fragment_and_ignore_path_mtu_hints() {
        let v4 = udp_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(option(&v4, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER), libc::IP_PMTUDISC_PROBE);
        let v6 = udp_socket("[::1]:0".parse().unwrap()).unwrap();
        assert_eq!(option(&v6, libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER), libc::IPV6_PMTUDISC_PROBE);
        // The largest answer still leaves: DF refuses only what exceeds the interface's MTU.
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = client.local_addr().unwrap();
        let big = vec![7u8; usize::from(crate::dns::MAX_UDP_PAYLOAD)];
        assert_eq!(v4.send_to(&big, &to.into()).unwrap(), big.len());
        let mut buf = vec![0u8; 4096];
        client.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        assert_eq!(client.recv(&mut buf).unwrap(), big.len());
    }
}
