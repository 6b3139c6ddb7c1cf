//! Our TCP DNS server loop, in place of hickory's (which has no connection limits): accepts
//! connections within global and per-client limits, reads two-byte length-prefixed queries with
//! an idle and a read timeout, answers each as UDP does ([`answer`], then the full path when it
//! must), and closes a connection after a bounded number of queries.
//!
//! At a limit, a new connection is not refused while there is a waiting one to close: the
//! client's (globally, the server's) oldest connection that is idle or stalled mid-message is
//! closed to make room ([`conns`](super::conns)), so a client holding many idle connections
//! cannot lock out a working one from its own address. Only when every candidate is busy
//! being answered is the new connection closed instead.
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
//! Memory: per connection a 4 KiB read buffer, a 16 KiB write buffer, the query being read (at
//! most 64 KiB) and at most [`RESPONSE_QUEUE`] encoded responses; the number of connections is bounded by
//! `max_connections`. The only per-client state is the registry's list of each open client's
//! connections.
//!
//! Imports `config` (for [`TcpConfig`]). Generic over a [`Responder`]: the server's
//! [`Handler`], or ([`spawn_tcp`]) any hickory `RequestHandler` on the full path alone, which
//! is how tests inject failures.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::Guard;
use hickory_server::server::RequestHandler;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{timeout, timeout_at};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use super::conns::{Activity, Handle, Registry, State};
use crate::config::TcpConfig;
use crate::dns::answer::{Handler, Metrics, Outcome, Transport, answer, full};
use crate::dns::codec::query::{self, NameBuf};
use crate::routing::RoutingTable;

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

/// What a TCP connection answers with.
pub trait Responder: Send + Sync + 'static {
    /// The table the fast path answers from; `None` sends every query down the full path.
    fn table(&self) -> Option<Guard<Arc<RoutingTable>>>;
    /// The full path's response to one message from `peer` (`None`: nothing to send).
    fn full(&self, message: &[u8], peer: SocketAddr) -> impl Future<Output = Option<Vec<u8>>> + Send;
}

/// The server's: the fast path first, then the full path.
impl Responder for Handler {
    fn table(&self) -> Option<Guard<Arc<RoutingTable>>> {
        Some(Handler::table(self))
    }

    fn full(&self, message: &[u8], peer: SocketAddr) -> impl Future<Output = Option<Vec<u8>>> + Send {
        self.respond_full(message, peer, Transport::Tcp)
    }
}

/// Any hickory `RequestHandler`, every query on the full path: what [`spawn_tcp`] serves.
pub struct FullPath<H>(pub H);

impl<H: RequestHandler> Responder for FullPath<H> {
    fn table(&self) -> Option<Guard<Arc<RoutingTable>>> {
        None
    }

    fn full(&self, message: &[u8], peer: SocketAddr) -> impl Future<Output = Option<Vec<u8>>> + Send {
        full::respond(&self.0, message, peer, Transport::Tcp)
    }
}

/// Serves DNS over TCP on `listener` with `responder` until `shutdown` is cancelled; then stops
/// accepting, lets each connection finish writing what it has answered, and ends.
pub fn spawn<R: Responder>(
    listener: TcpListener,
    responder: R,
    limits: TcpLimits,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(accept_loop(listener, Arc::new(responder), limits, shutdown))
}

/// [`spawn`] for any hickory `RequestHandler`, every query answered by it (the full path).
pub fn spawn_tcp<H: RequestHandler>(
    listener: TcpListener,
    handler: H,
    limits: TcpLimits,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    spawn(listener, FullPath(handler), limits, shutdown)
}

async fn accept_loop<R: Responder>(
    listener: TcpListener,
    responder: Arc<R>,
    limits: TcpLimits,
    shutdown: CancellationToken,
) {
    // Owned by this task alone: the connection tasks, and the registry of the open ones (whose
    // each is, what it is doing, how to close it). A connection's end (or panic) comes back
    // through `join_next_with_id`, so no lock is needed.
    let mut connections: JoinSet<()> = JoinSet::new();
    let mut registry = Registry::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(done) = connections.join_next_with_id(), if !connections.is_empty() => {
                release(done, &mut registry);
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let ip = peer.ip().to_canonical();
                    if !admit(&mut registry, ip, &limits) {
                        drop(stream);
                        continue;
                    }
                    let handle = registry.handle();
                    let conn = connection(stream, peer, responder.clone(), limits, shutdown.clone(), handle.clone());
                    registry.insert(connections.spawn(conn).id(), ip, &handle);
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
        release(done, &mut registry);
    }
}

/// Whether a new connection from `ip` may be accepted: under both limits, or once the
/// registry has closed a waiting connection to make room; not when all in the way are busy.
fn admit(registry: &mut Registry, ip: std::net::IpAddr, limits: &TcpLimits) -> bool {
    match registry.make_room(ip, limits.max_connections_per_client, limits.max_connections) {
        Ok(None) => true,
        Ok(Some(evicted)) => {
            debug!(
                client = %ip, closed = %evicted.ip, limit = ?evicted.limit, state = ?evicted.state,
                "TCP connection limit reached; the oldest waiting connection was closed to make room"
            );
            true
        }
        Err(full) => {
            debug!(
                client = %ip, open = registry.open(ip), total = registry.len(), limit = ?full.0,
                "TCP connection over the limit closed (every connection in the way is busy)"
            );
            false
        }
    }
}

/// Forgets an ended connection; reports a panic (the connection is lost, the server is not).
fn release(done: Result<(tokio::task::Id, ()), tokio::task::JoinError>, registry: &mut Registry) {
    let id = match done {
        Ok((id, ())) => id,
        Err(e) => {
            if e.is_panic() {
                error!(error = %e, "a TCP connection task panicked; its connection was closed");
            }
            e.id()
        }
    };
    registry.ended(id);
}

/// One connection: a reader that answers queries in order and a writer that sends the answers,
/// until they end or the handle's eviction token is cancelled (the accept loop needs the room:
/// the socket is closed at once, dropping whatever is queued). The reader records its state in
/// the handle's activity.
async fn connection<R: Responder>(
    stream: TcpStream,
    peer: SocketAddr,
    responder: Arc<R>,
    limits: TcpLimits,
    shutdown: CancellationToken,
    Handle { activity, evict }: Handle,
) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    // Bounded: the reader (one writer of the channel) waits when the client does not read its
    // answers; the writer's timeout then ends the connection.
    let (tx, rx) = mpsc::channel::<Vec<u8>>(RESPONSE_QUEUE);
    let reader = read_queries(read, peer, responder, limits, tx, shutdown, &activity);
    let writer = write_responses(write, rx, limits.idle_timeout);
    let serve = async {
        tokio::pin!(reader, writer);
        tokio::select! {
            // The reader is done (EOF, a limit, a timeout, shutdown): the writer drains the queue.
            _ = &mut reader => writer.await,
            // The writer failed (the client stopped reading): drop the reader and close.
            _ = &mut writer => {}
        }
    };
    tokio::select! {
        biased;
        _ = evict.cancelled() => debug!(client = %peer, "TCP connection closed to make room for a new one"),
        _ = serve => {}
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

async fn read_queries<R: Responder>(
    read: OwnedReadHalf,
    peer: SocketAddr,
    responder: Arc<R>,
    limits: TcpLimits,
    tx: mpsc::Sender<Vec<u8>>,
    shutdown: CancellationToken,
    activity: &Activity,
) {
    let mut read = BufReader::with_capacity(4096, read);
    let mut fast = Fast::default();
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
        activity.set(State::Reading);
        let deadline = tokio::time::Instant::now() + limits.read_timeout;
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
        activity.set(State::Busy);
        let response = respond(responder.as_ref(), &message, peer, &mut fast).await;
        // Answered: from here the connection waits, for the writer's room or the next query.
        activity.set(State::Idle);
        let sent = match response {
            Ok(Some(bytes)) => tx.send(bytes).await.map_err(|_| Stop::WriterGone),
            Ok(None) => Ok(()),
            Err(stop) => Err(stop),
        };
        if let Err(stop) = sent {
            break stop;
        }
        if tx.is_closed() {
            break Stop::WriterGone;
        }
    };
    debug!(client = %peer, answered, reason = ?stop, "TCP connection closed");
}

/// A connection's state for the fast path, made when it first answers.
#[derive(Default)]
struct Fast {
    name: NameBuf,
    metrics: Option<Metrics>,
}

/// The response to one message (`None`: nothing to send); `Err` closes the connection.
async fn respond<R: Responder>(
    responder: &R,
    message: &[u8],
    peer: SocketAddr,
    fast: &mut Fast,
) -> Result<Option<Vec<u8>>, Stop> {
    if message.len() < 12 {
        return Err(Stop::TooShort);
    }
    let mut out = Vec::new();
    let outcome = match responder.table() {
        Some(table) => {
            let metrics = fast.metrics.get_or_insert_with(|| Metrics::new(Transport::Tcp));
            let started = metrics.sample_due().then(std::time::Instant::now);
            let outcome = answer(&table, &query::parse(message, &mut fast.name), peer.ip(), Transport::Tcp, &mut out);
            if let Outcome::Answered(info) = &outcome {
                metrics.answered(info, started);
                metrics.flush(&table);
            }
            outcome
        }
        None => Outcome::Full,
    };
    Ok(match outcome {
        Outcome::Answered(_) => Some(out),
        Outcome::Full => responder.full(message, peer).await,
        Outcome::Drop => None, // A response (QR=1): never answered.
    })
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
    use crate::dns::codec::test_query::TestQuery;
    use crate::dns::testing::example_handler;

    /// The server's handler over TCP: pipelined queries for the fast path and the full path are
    /// answered in order, a response is ignored, and the connection stays open.
    #[tokio::test]
    async fn the_handler_answers_pipelined_queries_in_order_on_both_paths() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = TcpLimits {
            max_connections: 8,
            max_connections_per_client: 8,
            idle_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
            max_queries_per_connection: 100,
        };
        let shutdown = CancellationToken::new();
        let task = spawn(listener, example_handler(), limits, shutdown.clone());
        let mut response = TestQuery::new(3, "app.geo.example.", 1).bytes();
        response[2] |= 0x80;
        let queries = [
            TestQuery::new(1, "app.geo.example.", 1).flags(0x0100).bytes(), // the fast path
            response,                                                       // ignored
            TestQuery::new(2, "app.geo.example.", 1).class(3).bytes(),      // the full path: REFUSED
            TestQuery::new(4, "nope.geo.example.", 28).bytes(),             // the fast path: NXDOMAIN
        ];
        let mut stream = TcpStream::connect(addr).await.unwrap();
        for q in &queries {
            stream.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
            stream.write_all(q).await.unwrap();
        }
        for (id, rcode) in [(1u16, 0u8), (2, 5), (4, 3)] {
            let len = timeout(Duration::from_secs(5), stream.read_u16()).await.expect("answered").unwrap();
            let mut r = vec![0; usize::from(len)];
            stream.read_exact(&mut r).await.unwrap();
            assert_eq!((u16::from_be_bytes([r[0], r[1]]), r[3] & 0x0f), (id, rcode));
            assert_eq!(r[2] & 0x80, 0x80, "QR");
        }
        shutdown.cancel();
        timeout(Duration::from_secs(5), task).await.expect("the listener stops").unwrap();
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
