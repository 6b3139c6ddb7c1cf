//! Moving queries and responses: the sockets, the loops that read them, response rate
//! limiting. Each loop hands every query to [`answer`](super::answer::answer), then
//! to the full path when it must, and sends what comes back; none of them decides an answer.
//!
//! - [`listen`]: binds UDP and TCP on each address and starts the loops.
//! - UDP, per socket ([`serve_udp`]): on Linux [`batch`], a thread blocking in `recvmmsg` that
//!   answers up to 32 queries per system call, looking ahead in each batch ([`warm`]);
//!   elsewhere [`portable`], a runtime task taking one datagram at a time.
//! - [`tcp`]: our own accept loop and connections, with limits and timeouts; [`conns`], its
//!   registry of open connections, which makes room at a limit by closing the oldest waiting one.
//! - [`rrl`]: response rate limiting of UDP answers; [`rrl::apply`] is the step every UDP send
//!   goes through.
//!
//! Every system call goes through [`sys`](super::sys), the only file of `dns/` with `unsafe`.

#[cfg(target_os = "linux")]
mod batch;
mod conns;
pub mod listen;
#[cfg(any(not(target_os = "linux"), test))]
mod portable;
pub mod rrl;
pub mod tcp;
#[cfg(target_os = "linux")]
mod warm;

use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use self::rrl::Rrl;
use super::answer::Handler;

/// Serves one UDP socket until `shutdown` is cancelled. Several sockets share each address
/// (SO_REUSEPORT), so the kernel spreads queries over their loops.
pub async fn serve_udp(socket: UdpSocket, handler: Handler, rrl: Option<Arc<Rrl>>, shutdown: CancellationToken) {
    #[cfg(target_os = "linux")]
    batch::serve(socket, handler, rrl, shutdown).await;
    #[cfg(not(target_os = "linux"))]
    portable::serve(socket, handler, rrl, shutdown).await;
}
