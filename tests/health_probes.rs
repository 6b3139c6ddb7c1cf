//! Health probes against real servers started here on 127.0.0.1:0: a minimal HTTP/1.1
//! responder (plain and TLS with a self-signed certificate), a TCP listener, a server that
//! accepts and never answers, and a closed port. Then the monitor end to end.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use geodns::config::{HealthCheck, Probe};
use geodns::sources::health::{self, Clients, FailReason, Outcome, State, Target};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// What the test server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    host: Option<String>,
    at: Instant,
}

/// A minimal HTTP/1.1 server: answers every request with `status` and records it.
struct HttpServer {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl HttpServer {
    async fn start(status: u16) -> HttpServer {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        HttpServer::serve(listener, status, None)
    }

    async fn start_tls(status: u16) -> HttpServer {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        HttpServer::serve(listener, status, Some(self_signed_acceptor()))
    }

    fn serve(listener: TcpListener, status: u16, tls: Option<TlsAcceptor>) -> HttpServer {
        let addr = listener.local_addr().unwrap();
        let status = Arc::new(AtomicU16::new(status));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (st, sn) = (status.clone(), seen.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (st, sn, tls) = (st.clone(), sn.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => respond(stream, &st, &sn).await,
                        Some(acceptor) => {
                            // A client that rejects the certificate aborts the handshake.
                            if let Ok(stream) = acceptor.accept(stream).await {
                                respond(stream, &st, &sn).await;
                            }
                        }
                    }
                });
            }
        });
        HttpServer { addr, status, seen, task }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Stops accepting and closes the listening socket.
    async fn stop(self) -> SocketAddr {
        self.task.abort();
        let _ = self.task.await;
        self.addr
    }
}

/// Reads one request head (bounded) and answers it with the current status, then closes.
async fn respond<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, status: &AtomicU16, seen: &Mutex<Vec<Seen>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let path = lines.next().and_then(|l| l.split(' ').nth(1)).unwrap_or_default().to_owned();
    let host = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.trim().to_owned());
    seen.lock().unwrap().push(Seen { path, host, at: Instant::now() });
    let code = status.load(Ordering::SeqCst);
    let reply = format!("HTTP/1.1 {code} Test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn self_signed_acceptor() -> TlsAcceptor {
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let cert = key.cert.der().clone();
    let private = rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], private)
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

/// A server that accepts connections and never says anything.
async fn silent_server() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (addr, task)
}

/// A port on 127.0.0.1 with nothing listening (bound, then closed).
async fn closed_port() -> u16 {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    listener.local_addr().unwrap().port()
}

fn http(port: u16, path: &str, host: Option<&str>, expect: (u16, u16)) -> Probe {
    Probe::Http { tls: false, tls_verify: true, path: path.to_owned(), port, host: host.map(str::to_owned), expect }
}

fn https(port: u16, tls_verify: bool) -> Probe {
    Probe::Http { tls: true, tls_verify, path: "/".to_owned(), port, host: None, expect: (200, 399) }
}

const TIMEOUT: Duration = Duration::from_secs(2);

async fn probe(probe: &Probe, timeout: Duration) -> Outcome {
    let clients = Clients::new().unwrap();
    health::probe::run(probe, LOCALHOST, timeout, &clients).await
}

fn reason(outcome: Outcome) -> FailReason {
    match outcome {
        Outcome::Fail { reason } => reason,
        Outcome::Pass { detail } => panic!("expected a failure, got a pass ({detail})"),
    }
}

#[tokio::test]
async fn http_status_in_range_passes_and_outside_fails() {
    let server = HttpServer::start(200).await;
    let port = server.addr.port();
    assert_eq!(probe(&http(port, "/", None, (200, 399)), TIMEOUT).await, Outcome::pass("HTTP status 200"));

    server.status.store(503, Ordering::SeqCst);
    assert_eq!(reason(probe(&http(port, "/", None, (200, 399)), TIMEOUT).await), FailReason::Status(503));
    assert_eq!(probe(&http(port, "/", None, (500, 503)), TIMEOUT).await, Outcome::pass("HTTP status 503"));

    // Redirects are answers, not followed: judged by the range (both ends inclusive).
    server.status.store(302, Ordering::SeqCst);
    assert!(probe(&http(port, "/", None, (200, 399)), TIMEOUT).await.is_pass());
    assert_eq!(reason(probe(&http(port, "/", None, (200, 299)), TIMEOUT).await), FailReason::Status(302));
    assert!(probe(&http(port, "/", None, (302, 302)), TIMEOUT).await.is_pass());
    server.stop().await;
}

#[tokio::test]
async fn http_sends_the_path_and_the_configured_host_header() {
    let server = HttpServer::start(204).await;
    let port = server.addr.port();
    assert!(probe(&http(port, "/healthz?deep=1", Some("app.geo.example"), (200, 299)), TIMEOUT).await.is_pass());
    assert!(probe(&http(port, "/ready", None, (200, 299)), TIMEOUT).await.is_pass());
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].path, "/healthz?deep=1");
    assert_eq!(seen[0].host.as_deref(), Some("app.geo.example"));
    // Without a configured host, the address (and port) is the Host.
    assert_eq!(seen[1].path, "/ready");
    assert_eq!(seen[1].host, Some(format!("127.0.0.1:{port}")));
    server.stop().await;
}

#[tokio::test]
async fn tcp_connect_passes_when_something_listens() {
    let (addr, task) = silent_server().await;
    assert_eq!(probe(&Probe::Tcp { port: addr.port() }, TIMEOUT).await, Outcome::pass("TCP connect ok"));
    task.abort();
}

#[tokio::test]
async fn closed_port_is_connection_refused() {
    let port = closed_port().await;
    assert_eq!(reason(probe(&Probe::Tcp { port }, TIMEOUT).await), FailReason::ConnectionRefused);
    assert_eq!(reason(probe(&http(port, "/", None, (200, 399)), TIMEOUT).await), FailReason::ConnectionRefused);
    assert_eq!(reason(probe(&https(port, false), TIMEOUT).await), FailReason::ConnectionRefused);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let (addr, task) = silent_server().await;
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let got = reason(probe(&http(addr.port(), "/", None, (200, 399)), timeout).await);
    let took = started.elapsed();
    assert_eq!(got, FailReason::Timeout(timeout));
    assert_eq!(got.to_string(), "timed out after 300ms");
    assert!(took >= timeout && took < timeout + Duration::from_millis(500), "took {took:?}");
    // The TLS handshake never completes either.
    assert_eq!(reason(probe(&https(addr.port(), false), timeout).await), FailReason::Timeout(timeout));
    task.abort();
}

#[tokio::test]
async fn https_with_a_self_signed_certificate_passes_only_without_verification() {
    let server = HttpServer::start_tls(200).await;
    let port = server.addr.port();
    assert_eq!(probe(&https(port, false), TIMEOUT).await, Outcome::pass("HTTP status 200"));
    let got = reason(probe(&https(port, true), TIMEOUT).await);
    assert_eq!(got.kind(), "tls", "{got}");
    // Only the unverified probe reached the HTTP layer.
    assert_eq!(server.seen().len(), 1);
    // A plain-HTTP probe of the TLS port fails without hanging.
    assert!(!probe(&http(port, "/", None, (200, 399)), TIMEOUT).await.is_pass());
    server.stop().await;
}

/// Waits (bounded) for the next snapshot in which the endpoint has `state`.
async fn wait_for(
    rx: &mut tokio::sync::watch::Receiver<Arc<health::HealthSnapshot>>,
    key: &(String, IpAddr),
    state: State,
) -> Instant {
    tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            rx.changed().await.expect("the monitor is running");
            if rx.borrow_and_update().endpoints[key].state == state {
                return Instant::now();
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("endpoint never became {state}"))
}

#[tokio::test]
async fn monitor_follows_a_server_going_away_and_coming_back() {
    let server = HttpServer::start(200).await;
    let addr = server.addr;
    let config = HealthCheck {
        probe: http(addr.port(), "/healthz", None, (200, 399)),
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(80),
        jitter: Duration::ZERO,
        rise: 2,
        fall: 2,
    };
    let shutdown = CancellationToken::new();
    let target = Target { check: "web".to_owned(), config, addr: LOCALHOST };
    let key = target.key();
    // Two names sharing the endpoint: still one probe per round.
    let monitor = health::spawn(vec![target.clone(), target], Clients::new().unwrap(), shutdown.clone());
    let mut rx = monitor.subscribe();
    assert_eq!(rx.borrow().endpoints[&key].state, State::Unknown);

    let up_at = wait_for(&mut rx, &key, State::Up).await;
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "Up after exactly two passes: {seen:?}");
    let lag = up_at - seen[1].at;
    assert!(lag < Duration::from_millis(50), "flip published {lag:?} after the deciding probe");

    // Kill the server: two refused connections later it is Down.
    let killed_at = Instant::now();
    let addr = server.stop().await;
    let down_at = wait_for(&mut rx, &key, State::Down).await;
    let snap = rx.borrow().clone();
    assert_eq!(snap.endpoints[&key].reason, "connection refused");
    assert_eq!(snap.down().collect::<Vec<_>>(), [&key]);
    let took = down_at - killed_at;
    assert!(took <= Duration::from_millis(350), "Down {took:?} after the kill (two rounds of 100 ms)");

    // Restart on the same port: Up again after two passes, published at the second one.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(addr).unwrap();
    let server = HttpServer::serve(socket.listen(64).unwrap(), 200, None);
    let up_at = wait_for(&mut rx, &key, State::Up).await;
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "Up after exactly two passes: {seen:?}");
    let lag = up_at - seen[1].at;
    assert!(lag < Duration::from_millis(50), "flip published {lag:?} after the deciding probe");
    assert_eq!(rx.borrow().down().count(), 0);
    assert_eq!(rx.borrow().endpoints[&key].reason, "HTTP status 200");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), monitor.stopped()).await.expect("tasks stop on shutdown");
    server.stop().await;
}
