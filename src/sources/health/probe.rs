//! One probe attempt against one address: HTTP/HTTPS GET or TCP connect, mapped to an
//! [`Outcome`]. Owns the reqwest boundary of the health source (the [`Clients`] and the
//! translation of reqwest/io/rustls errors into [`FailReason`]); no reqwest type leaves this file
//! except `reqwest::Client` inside [`Clients`].
//!
//! Imports `config` (the validated [`Probe`]) and the sibling `state` module only; never routing,
//! dns or app. No scheduling, no state: the scheduler decides when to call [`run`].

use std::error::Error as StdError;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::header::HOST;
use reqwest::redirect::Policy;
use tokio::net::TcpStream;

use super::state::{FailReason, Outcome};
use crate::config::Probe;

/// Upper bound on any probe, whatever the check says: the per-request timeout (the check's
/// `timeout`, at most its interval) always applies first; this only caps a client that is used
/// without one.
const CLIENT_TIMEOUT_CEILING: Duration = Duration::from_secs(60);

/// Installs ring as the process-wide rustls crypto provider (the one kube uses too), so exactly
/// one provider is compiled in and reqwest's `rustls-no-provider` build finds it. Safe to call
/// any number of times: "already installed" is not an error.
pub fn install_crypto_provider() {
    // Err means some provider is already the default: the first caller won, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Why a probe HTTP client could not be built.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot build the HTTP probe client{}: {message}", if *.verifying { " that verifies certificates (is there a CA store?)" } else { "" })]
pub struct ClientError {
    verifying: bool,
    message: String,
}

impl ClientError {
    fn new(verifying: bool, error: &reqwest::Error) -> ClientError {
        ClientError { verifying, message: chain(error) }
    }
}

/// The HTTP clients every probe shares: TLS verification is a per-client setting in reqwest,
/// so there is one client per verification mode. Cloning is cheap (reqwest clients are
/// reference-counted) and clones share connection pools.
///
/// The verifying client needs the system's CA certificates and is built only when a check
/// first asks for it ([`Clients::verifying`]): a minimal image with no CA store runs every
/// HTTP, TCP and unverified HTTPS check, and only a check that verifies certificates is held
/// up by a missing store, with an error that says so.
#[derive(Debug, Clone)]
pub struct Clients {
    no_verify: reqwest::Client,
    verify: Arc<OnceLock<Result<reqwest::Client, ClientError>>>,
}

impl Clients {
    pub fn new() -> Result<Clients, ClientError> {
        install_crypto_provider();
        let no_verify = client(false).map_err(|e| ClientError::new(false, &e))?;
        Ok(Clients { no_verify, verify: Arc::default() })
    }

    /// The client that verifies certificates, built on first use.
    pub fn verifying(&self) -> Result<&reqwest::Client, ClientError> {
        self.verify.get_or_init(|| client(true).map_err(|e| ClientError::new(true, &e))).as_ref().map_err(Clone::clone)
    }

    /// The client for a check with this `tls_verify` setting.
    pub fn get(&self, tls_verify: bool) -> Result<&reqwest::Client, ClientError> {
        if tls_verify { self.verifying() } else { Ok(&self.no_verify) }
    }
}

fn client(tls_verify: bool) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        // Probes go straight to the endpoint: an HTTP(S)_PROXY in the environment must not
        // turn a health check into a check of the proxy.
        .no_proxy()
        .http1_only()
        .connect_timeout(CLIENT_TIMEOUT_CEILING)
        .timeout(CLIENT_TIMEOUT_CEILING)
        // One idle connection per endpoint is enough for one probe per interval.
        .pool_max_idle_per_host(1)
        // A redirect is an answer: its status is judged against the expected range.
        .redirect(Policy::none())
        .tls_danger_accept_invalid_certs(!tls_verify)
        .build()
}

/// Runs one probe of `addr` and says whether it passed. Never takes (much) longer than
/// `timeout`: HTTP probes have it as the request timeout (connect + headers), TCP probes as the
/// connect timeout, and the whole attempt is bounded by it as well.
///
/// HTTP/HTTPS: `GET scheme://addr:port/path` with `Host: host` (default: the address); a status
/// in the expected inclusive range passes. The body is not read. HTTPS connects by address, so
/// SNI is not sent and, with `tls_verify`, the certificate must be valid for the IP address.
pub async fn run(probe: &Probe, addr: IpAddr, timeout: Duration, clients: &Clients) -> Outcome {
    let attempt = async {
        match probe {
            Probe::Tcp { port } => tcp(SocketAddr::new(addr, *port), timeout).await,
            Probe::Http { tls, tls_verify, path, port, host, expect } => {
                let target = HttpTarget { tls: *tls, path, addr: SocketAddr::new(addr, *port), host: host.as_deref() };
                // Plain HTTP never verifies anything: it needs no CA store.
                match clients.get(*tls && *tls_verify) {
                    Ok(client) => http(client, &target, *expect, timeout).await,
                    Err(e) => Outcome::fail(FailReason::Tls(e.to_string())),
                }
            }
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::fail(FailReason::Timeout(timeout)),
    }
}

async fn tcp(addr: SocketAddr, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(_stream)) => Outcome::pass("TCP connect ok"),
        Ok(Err(e)) => Outcome::fail(from_io(&e, timeout)),
        Err(_) => Outcome::fail(FailReason::Timeout(timeout)),
    }
}

struct HttpTarget<'a> {
    tls: bool,
    path: &'a str,
    addr: SocketAddr,
    host: Option<&'a str>,
}

impl HttpTarget<'_> {
    fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        // SocketAddr's Display brackets IPv6 addresses, as a URL needs.
        let slash = if self.path.starts_with('/') { "" } else { "/" };
        format!("{scheme}://{}{slash}{}", self.addr, self.path)
    }
}

async fn http(client: &reqwest::Client, target: &HttpTarget<'_>, expect: (u16, u16), timeout: Duration) -> Outcome {
    let mut request = client.get(target.url()).timeout(timeout);
    if let Some(host) = target.host {
        // reqwest derives Host from the URL only when the request has none.
        request = request.header(HOST, host);
    }
    match request.send().await {
        Ok(response) => {
            let code = response.status().as_u16();
            if (expect.0..=expect.1).contains(&code) {
                Outcome::pass(format!("HTTP status {code}"))
            } else {
                Outcome::fail(FailReason::Status(code))
            }
        }
        Err(e) => Outcome::fail(from_reqwest(&e, timeout)),
    }
}

/// Translates a reqwest error: timeouts first, then what the error chain says (refused, TLS),
/// then connect vs anything else.
fn from_reqwest(err: &reqwest::Error, timeout: Duration) -> FailReason {
    if err.is_timeout() {
        return FailReason::Timeout(timeout);
    }
    for e in causes(err) {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return FailReason::Tls(tls.to_string());
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::ConnectionRefused => return FailReason::ConnectionRefused,
                io::ErrorKind::TimedOut => return FailReason::Timeout(timeout),
                _ => {}
            }
        }
    }
    let message = chain(err);
    if err.is_connect() { FailReason::Connect(message) } else { FailReason::Other(message) }
}

/// The causes of `err`, outermost first. `io::Error::source()` skips the error an io::Error
/// wraps (hyper-rustls wraps a `rustls::Error` in one, and hyper wraps that in another), so for
/// io errors the wrapped error is the next cause.
fn causes<'a>(err: &'a (dyn StdError + 'static)) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(err.source(), |&e: &&'a (dyn StdError + 'static)| match e.downcast_ref::<io::Error>() {
        Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
        None => e.source(),
    })
}

fn from_io(err: &io::Error, timeout: Duration) -> FailReason {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => FailReason::ConnectionRefused,
        io::ErrorKind::TimedOut => FailReason::Timeout(timeout),
        _ => FailReason::Connect(err.to_string()),
    }
}

/// The error and its causes on one line, without repeating a cause its parent already printed
/// (reqwest and hyper often include the cause in their own message).
fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_bracket_ipv6_and_keep_the_path() {
        let t = HttpTarget { tls: false, path: "/healthz?x=1", addr: "192.0.2.1:8080".parse().unwrap(), host: None };
        assert_eq!(t.url(), "http://192.0.2.1:8080/healthz?x=1");
        let t = HttpTarget { tls: true, path: "/", addr: "[2001:db8::1]:443".parse().unwrap(), host: None };
        assert_eq!(t.url(), "https://[2001:db8::1]:443/");
        let t = HttpTarget { tls: true, path: "ready", addr: "[::1]:8443".parse().unwrap(), host: None };
        assert_eq!(t.url(), "https://[::1]:8443/ready");
    }

    #[test]
    fn io_errors_map_to_reasons() {
        let t = Duration::from_secs(2);
        assert_eq!(from_io(&io::Error::from(io::ErrorKind::ConnectionRefused), t), FailReason::ConnectionRefused);
        assert_eq!(from_io(&io::Error::from(io::ErrorKind::TimedOut), t), FailReason::Timeout(t));
        assert_eq!(from_io(&io::Error::from(io::ErrorKind::ConnectionReset), t).kind(), "connect");
    }

    #[test]
    fn causes_look_inside_nested_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let inner = io::Error::new(io::ErrorKind::InvalidData, tls.clone());
        let outer = io::Error::other(inner);
        let wrapper = Wrapper(outer);
        let found: Vec<String> = causes(&wrapper).map(|e| e.to_string()).collect();
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(causes(&wrapper).any(|e| e.downcast_ref::<rustls::Error>() == Some(&tls)));
    }

    #[derive(Debug)]
    struct Wrapper(io::Error);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("request failed")
        }
    }

    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn clients_build_and_the_provider_installs_twice() {
        install_crypto_provider();
        install_crypto_provider();
        let clients = Clients::new().expect("clients build with the ring provider installed");
        // Both modes are distinct clients (reqwest has no per-request verification switch).
        let (verify, plain) = (clients.get(true).expect("this machine has a CA store"), clients.get(false).unwrap());
        assert!(!std::ptr::eq(verify, plain));
        assert!(std::ptr::eq(clients.clone().get(true).unwrap(), verify), "built once, shared by clones");
    }
}
