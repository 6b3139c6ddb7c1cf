//! Binding the DNS sockets: UDP and TCP on each listen address, several UDP sockets per
//! address (SO_REUSEPORT) so the kernel spreads queries over their threads, each UDP socket
//! with Don't Fragment ([`sys::dont_fragment`]). Starts a UDP loop per socket and a TCP accept
//! loop per address, and stops them in order.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::rrl::Rrl;
use super::tcp::{self, TcpLimits};
use crate::config::{RrlConfig, TcpConfig};
use crate::dns::answer::Handler;
use crate::dns::sys;

/// A running DNS server and the addresses it actually bound (port 0 resolved).
pub struct DnsServer {
    /// Cancels the UDP loops at shutdown; then `tcp`, the TCP accept loops.
    udp: CancellationToken,
    udp_tasks: Vec<tokio::task::JoinHandle<()>>,
    tcp: CancellationToken,
    tcp_tasks: Vec<tokio::task::JoinHandle<()>>,
    pub bound: Vec<SocketAddr>,
}

/// The receive buffer the kernel gave a UDP socket (as it reports it), in KiB, for the log.
fn recv_buffer_kib(socket: &UdpSocket) -> usize {
    socket2::SockRef::from(socket).recv_buffer_size().map_or(0, |b| b / 1024)
}

/// How many times to look for a port free for both UDP and TCP when asked for port 0.
const PORT_ATTEMPTS: usize = 20;

/// The receive buffer asked for on each UDP socket, in bytes. The kernel's default
/// (`net.core.rmem_default`, 208 KiB on most hosts) holds a few hundred small queries: 10-15 ms
/// of a 20,000 qps stream. A UDP thread kept off the CPU longer than that (a reload's rebuild
/// and site rankings on a busy 2-core host, another process's burst) had the rest dropped by
/// the kernel: benches/reload lost about 0.9% of its queries that way (tests/udp_backlog.rs).
/// 4 MiB holds several thousand. The kernel grants at most `net.core.rmem_max` (and reports
/// twice what it grants, for its own bookkeeping); the size granted is logged at start-up.
pub const UDP_RECV_BUFFER: usize = 4 << 20;

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
        let rrl = Rrl::new(rrl).map(Arc::new);
        for addr in listen {
            let (udp, tcp_listener, actual) = bind_pair(*addr, udp_sockets.max(1))?;
            let udp_receive_buffer_kib = udp.first().map_or(0, recv_buffer_kib);
            for socket in udp {
                udp_tasks.push(tokio::spawn(super::serve_udp(socket, handler.clone(), rrl.clone(), udp_token.clone())));
            }
            tcp_tasks.push(tcp::spawn(tcp_listener, handler.clone(), TcpLimits::from(tcp), tcp_token.clone()));
            info!(addr = %actual, udp_receive_buffer_kib, "serving DNS over UDP and TCP");
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
    // Best effort: the kernel caps it at net.core.rmem_max, and a smaller buffer still works.
    let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER);
    sys::dont_fragment(&socket, addr.is_ipv6())?;
    socket.bind(&addr.into()).map_err(|e| io::Error::new(e.kind(), format!("cannot listen on UDP {addr}: {e}")))?;
    Ok(socket)
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
    use super::*;

    #[test]
    fn udp_sockets_send_with_dont_fragment_and_ignore_path_mtu_hints() {
        let v4 = udp_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(sys::mtu_discover(&v4, false).unwrap(), libc::IP_PMTUDISC_PROBE);
        let v6 = udp_socket("[::1]:0".parse().unwrap()).unwrap();
        assert_eq!(sys::mtu_discover(&v6, true).unwrap(), libc::IPV6_PMTUDISC_PROBE);
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
