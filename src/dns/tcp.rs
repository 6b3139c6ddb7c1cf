//! Our TCP DNS server loop, in place of hickory's (which has no connection limits): accepts
//! connections within global and per-client limits, reads two-byte length-prefixed queries with
//! an idle and a read timeout, answers each through the same `RequestHandler` as UDP, and closes
//! a connection after a bounded number of queries.
//!
//! Pipelining: a client may write many queries without waiting. They are read and answered one
//! after another, **in order**; answering is in-memory and never waits on I/O, so ordering costs
//! nothing, and the writer sends responses while the reader takes the next query. One connection
//! is one task, so a slow or silent client only ever holds its own connection, never the accept
//! loop or another client (every read and write has a timeout).
//!
//! Malformed input: fewer than 12 bytes closes the connection; a message whose header parses but
//! whose body does not is answered FORMERR (ID and opcode mirrored, no records); a response
//! (QR=1) is ignored, as hickory does.
//!
//! Memory: per connection a 4 KiB read buffer, the query being read (at most 64 KiB) and at most
//! [`RESPONSE_QUEUE`] encoded responses; the number of connections is bounded by
//! `max_connections`. The only per-client state is the connection count of each open client.
//!
//! Imports `config` (for [`TcpConfig`]); generic over hickory's `RequestHandler`, so it serves
//! `super::Handler` in production and test handlers in tests.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use super::capture::Capture;
use crate::config::TcpConfig;

/// Responses a connection may have encoded but not yet written (as hickory's listener).
pub const RESPONSE_QUEUE: usize = 64;

/// How long the accept loop pauses after an accept error (out of file descriptors), so that it
/// does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The limits of the TCP listener (from `server.tcp` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    /// Open connections, all clients together.
    pub max_connections: usize,
    /// Open connections from one address.
    pub max_connections_per_client: usize,
    /// The longest wait for the first byte of a query (and for a response to be written).
    pub idle_timeout: Duration,
    /// The longest time from a query's first byte to its last.
    pub read_timeout: Duration,
    /// Queries answered before the server closes the connection.
    pub max_queries_per_connection: u32,
}

impl From<&TcpConfig> for TcpLimits {
    fn from(c: &TcpConfig) -> Self {
        TcpLimits {
            max_connections: c.max_connections,
            max_connections_per_client: c.max_connections_per_client,
            idle_timeout: c.idle_timeout,
            read_timeout: c.read_timeout,
            max_queries_per_connection: c.max_queries_per_connection,
        }
    }
}

/// Serves DNS over TCP on `listener` until `shutdown` is cancelled; then stops accepting, lets
/// each connection finish writing what it has answered, and ends.
pub fn spawn_tcp<H: RequestHandler>(
    listener: TcpListener,
    handler: H,
    limits: TcpLimits,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(accept_loop(listener, Arc::new(handler), limits, shutdown))
}

async fn accept_loop<H: RequestHandler>(
    listener: TcpListener,
    handler: Arc<H>,
    limits: TcpLimits,
    shutdown: CancellationToken,
) {
    // Owned by this task alone: the connection tasks, and how many each client has open. A
    // connection's end (or panic) comes back through `join_next_with_id`, so no lock is needed.
    let mut connections: JoinSet<()> = JoinSet::new();
    let mut owner: HashMap<tokio::task::Id, IpAddr> = HashMap::new();
    let mut per_client: HashMap<IpAddr, usize> = HashMap::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(done) = connections.join_next_with_id(), if !connections.is_empty() => {
                release(done, &mut owner, &mut per_client);
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let ip = peer.ip().to_canonical();
                    let open = per_client.get(&ip).copied().unwrap_or(0);
                    if connections.len() >= limits.max_connections || open >= limits.max_connections_per_client {
                        debug!(client = %ip, open, total = connections.len(), "TCP connection over the limit closed");
                        drop(stream);
                        continue;
                    }
                    let task = connections.spawn(connection(stream, peer, handler.clone(), limits, shutdown.clone()));
                    owner.insert(task.id(), ip);
                    *per_client.entry(ip).or_default() += 1;
                }
                Err(error) => {
                    warn!(%error, "TCP accept failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            }
        }
    }
    drop(listener);
    // Connections watch the same token: they stop reading and flush what they have answered.
    while let Some(done) = connections.join_next_with_id().await {
        release(done, &mut owner, &mut per_client);
    }
}

/// Forgets an ended connection; reports a panic (the connection is lost, the server is not).
fn release(
    done: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
    owner: &mut HashMap<tokio::task::Id, IpAddr>,
    per_client: &mut HashMap<IpAddr, usize>,
) {
    let id = match done {
        Ok((id, ())) => id,
        Err(e) => {
            if e.is_panic() {
                error!(error = %e, "a TCP connection task panicked; its connection was closed");
            }
            e.id()
        }
    };
    if let Some(ip) = owner.remove(&id)
        && let Some(n) = per_client.get_mut(&ip)
    {
        *n -= 1;
        if *n == 0 {
            per_client.remove(&ip);
        }
    }
}

/// One connection: a reader that answers queries in order and a writer that sends the answers.
async fn connection<H: RequestHandler>(
    stream: TcpStream,
    peer: SocketAddr,
    handler: Arc<H>,
    limits: TcpLimits,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    // Bounded: the reader (one writer of the channel) waits when the client does not read its
    // answers; the writer's timeout then ends the connection.
    let (tx, rx) = mpsc::channel::<Vec<u8>>(RESPONSE_QUEUE);
    let reader = read_queries(read, peer, handler, limits, tx, shutdown);
    let writer = write_responses(write, rx, limits.idle_timeout);
    tokio::pin!(reader, writer);
    tokio::select! {
        // The reader is done (EOF, a limit, a timeout, shutdown): the writer drains the queue.
        _ = &mut reader => writer.await,
        // The writer failed (the client stopped reading): drop the reader and close.
        _ = &mut writer => {}
    }
}

/// Why the reader stopped (for the debug log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Eof,
    Idle,
    SlowQuery,
    TooShort,
    MaxQueries,
    Shutdown,
    WriterGone,
}

async fn read_queries<H: RequestHandler>(
    read: OwnedReadHalf,
    peer: SocketAddr,
    handler: Arc<H>,
    limits: TcpLimits,
    tx: mpsc::Sender<Vec<u8>>,
    shutdown: CancellationToken,
) {
    let mut read = BufReader::with_capacity(4096, read);
    let mut answered: u32 = 0;
    let stop = loop {
        if answered >= limits.max_queries_per_connection {
            break Stop::MaxQueries;
        }
        let first = tokio::select! {
            _ = shutdown.cancelled() => break Stop::Shutdown,
            r = timeout(limits.idle_timeout, read.read_u8()) => match r {
                Ok(Ok(b)) => b,
                Ok(Err(_)) => break Stop::Eof,
                Err(_) => break Stop::Idle,
            },
        };
        let deadline = Instant::now() + limits.read_timeout;
        let rest = async {
            let second = read.read_u8().await?;
            let mut message = vec![0u8; usize::from(u16::from_be_bytes([first, second]))];
            read.read_exact(&mut message).await?;
            Ok::<_, std::io::Error>(message)
        };
        let message = tokio::select! {
            _ = shutdown.cancelled() => break Stop::Shutdown,
            r = timeout_at(deadline, rest) => match r {
                Ok(Ok(m)) => m,
                Ok(Err(_)) => break Stop::Eof,
                Err(_) => break Stop::SlowQuery,
            },
        };
        answered += 1;
        match answer(handler.as_ref(), message, peer, &tx).await {
            Ok(()) => {}
            Err(stop) => break stop,
        }
    };
    debug!(client = %peer, answered, reason = ?stop, "TCP connection closed");
}

/// Answers one message; `Err` closes the connection.
async fn answer<H: RequestHandler>(
    handler: &H,
    message: Vec<u8>,
    peer: SocketAddr,
    tx: &mpsc::Sender<Vec<u8>>,
) -> Result<(), Stop> {
    let Some(header) = message.get(..12).and_then(|h| <[u8; 12]>::try_from(h).ok()) else {
        return Err(Stop::TooShort);
    };
    if header[2] & 0x80 != 0 {
        return Ok(()); // A response: never answered.
    }
    match Request::from_bytes(message, peer, Protocol::Tcp) {
        Ok(request) => {
            let capture = Capture::new(Protocol::Tcp);
            handler.handle_request::<_, TokioTime>(&request, capture.clone()).await;
            let bytes = capture.take();
            if !bytes.is_empty() {
                tx.send(bytes).await.map_err(|_| Stop::WriterGone)?;
            }
        }
        Err(error) => {
            debug!(client = %peer, %error, "undecodable TCP query answered FORMERR");
            tx.send(error_header(&header, 1).to_vec()).await.map_err(|_| Stop::WriterGone)?;
        }
    }
    if tx.is_closed() { Err(Stop::WriterGone) } else { Ok(()) }
}

/// A response with no records and `rcode`: the request's ID, opcode and RD, with QR set.
fn error_header(request: &[u8; 12], rcode: u8) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[..2].copy_from_slice(&request[..2]);
    h[2] = 0x80 | (request[2] & 0x79); // QR, the opcode, RD
    h[3] = rcode & 0x0f;
    h
}

/// Writes framed responses; flushes whenever the queue is momentarily empty, so a burst of
/// pipelined answers leaves in few segments.
async fn write_responses(write: OwnedWriteHalf, mut rx: mpsc::Receiver<Vec<u8>>, write_timeout: Duration) {
    let mut out = BufWriter::with_capacity(16 * 1024, write);
    while let Some(message) = rx.recv().await {
        let step = async {
            // The encoder is limited to u16::MAX bytes, so the length always fits.
            let len = u16::try_from(message.len()).unwrap_or(u16::MAX);
            out.write_all(&len.to_be_bytes()).await?;
            out.write_all(&message).await?;
            if rx.is_empty() {
                out.flush().await?;
            }
            Ok::<_, std::io::Error>(())
        };
        match timeout(write_timeout, step).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                debug!(%error, "TCP write failed");
                return;
            }
            Err(_) => {
                debug!("TCP client did not read its answers in time");
                return;
            }
        }
    }
    let _ = timeout(write_timeout, async {
        out.flush().await?;
        out.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_headers_mirror_id_opcode_and_rd() {
        // ID 0xbeef, opcode 2 (STATUS), RD, AD; 1 question.
        let request = [0xbe, 0xef, 0x11, 0x20, 0, 1, 0, 0, 0, 0, 0, 0];
        let h = error_header(&request, 1);
        assert_eq!(h, [0xbe, 0xef, 0x91, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn limits_come_from_the_config() {
        let c = TcpConfig {
            max_connections: 10,
            max_connections_per_client: 2,
            idle_timeout: Duration::from_secs(3),
            read_timeout: Duration::from_secs(1),
            max_queries_per_connection: 7,
        };
        let l = TcpLimits::from(&c);
        assert_eq!((l.max_connections, l.max_connections_per_client, l.max_queries_per_connection), (10, 2, 7));
        assert_eq!((l.idle_timeout, l.read_timeout), (c.idle_timeout, c.read_timeout));
    }
}
