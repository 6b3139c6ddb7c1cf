//! Controllable HTTP backends for health-check tests: real servers on loopback addresses
//! (127.0.0.2, 127.0.0.3, ... all reach this machine) that answer 200, 503, alternate, or stop
//! listening, and record when they sent each failing answer.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Healthy = 0,
    Failing = 1,
    /// 200, 503, 200, 503, ...
    Flapping = 2,
}

struct Shared {
    mode: AtomicU8,
    requests: AtomicU64,
    /// When each 503 was written.
    failures: Mutex<Vec<Instant>>,
}

pub struct Backend {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl Backend {
    /// Serves on `ip:port` (port 0 picks one).
    pub async fn start(ip: IpAddr, port: u16, mode: Mode) -> std::io::Result<Backend> {
        let listener = TcpListener::bind(SocketAddr::new(ip, port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            mode: AtomicU8::new(mode as u8),
            requests: AtomicU64::new(0),
            failures: Mutex::new(Vec::new()),
        });
        let task = tokio::spawn(serve(listener, shared.clone()));
        Ok(Backend { addr, shared, task: Some(task) })
    }

    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
    }

    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    pub fn failures(&self) -> Vec<Instant> {
        self.shared.failures.lock().unwrap().clone()
    }

    /// Stops listening: connections are refused from now on.
    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Listens again on the same address.
    pub async fn restart(&mut self, mode: Mode) {
        self.stop();
        self.set_mode(mode);
        // The aborted task's listener closes asynchronously; retry briefly.
        for _ in 0..100 {
            if let Ok(listener) = TcpListener::bind(self.addr).await {
                self.task = Some(tokio::spawn(serve(listener, self.shared.clone())));
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("cannot listen on {} again", self.addr);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Binds one backend per address, all on the same port.
pub async fn on_same_port(ips: &[&str], mode: Mode) -> Vec<Backend> {
    'attempt: for _ in 0..20 {
        let first = Backend::start(ips[0].parse().unwrap(), 0, mode).await.expect("bind");
        let port = first.addr.port();
        let mut all = vec![first];
        for ip in &ips[1..] {
            match Backend::start(ip.parse().unwrap(), port, mode).await {
                Ok(b) => all.push(b),
                Err(_) => continue 'attempt,
            }
        }
        return all;
    }
    panic!("no port free on all of {ips:?}");
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let mut got = Vec::new();
            // Read the request head (bounded).
            while !got.windows(4).any(|w| w == b"\r\n\r\n") && got.len() < 16 * 1024 {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let n = shared.requests.fetch_add(1, Ordering::SeqCst);
            let fail = match shared.mode.load(Ordering::SeqCst) {
                0 => false,
                1 => true,
                _ => n % 2 == 1,
            };
            let (status, body) = if fail { ("503 Service Unavailable", "down\n") } else { ("200 OK", "ok\n") };
            let response =
                format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.flush().await;
            if fail {
                shared.failures.lock().unwrap().push(Instant::now());
            }
        });
    }
}
