//! A UDP client for the benchmarks that run the real server: sends pre-built queries over one
//! connected loopback socket, a window of them in flight, and times each answer.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// At most this many queries per phase, whatever its length.
pub const MAX_QUERIES: usize = 5_000_000;

pub struct Phase {
    pub name: &'static str,
    /// One entry per answered query.
    pub latencies: Vec<Duration>,
    pub lost: usize,
    pub wrong: usize,
    pub elapsed: Duration,
}

impl Phase {
    pub fn average(&self) -> Duration {
        self.latencies.iter().sum::<Duration>() / self.latencies.len().max(1) as u32
    }

    pub fn report(&mut self) {
        self.latencies.sort_unstable();
        let n = self.latencies.len();
        let pct = |p: f64| self.latencies.get(((n as f64 * p) as usize).min(n.saturating_sub(1))).copied();
        let us = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e6);
        println!(
            "{:<14} {:>9} {:>9.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>7} {:>6} {:>6}",
            self.name,
            n,
            n as f64 / self.elapsed.as_secs_f64(),
            us(Some(self.average())),
            us(pct(0.50)),
            us(pct(0.99)),
            us(self.latencies.last().copied()),
            n - self.latencies.partition_point(|&d| d <= Duration::from_millis(10)),
            self.lost,
            self.wrong,
        );
    }
}

/// Queries the server for `length` (at most [`MAX_QUERIES`]), `inflight` queries at a time (each
/// answer sends the next), cycling over `packets` (a power of two of them, at most 65,536; the
/// DNS ID of each is its index).
pub fn query_phase(
    name: &'static str,
    server: SocketAddr,
    packets: &[Vec<u8>],
    length: Duration,
    inflight: usize,
) -> Phase {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the client socket");
    socket.connect(server).expect("connect the client socket");
    socket.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = [0u8; 1500];
    let mut phase = Phase { name, latencies: Vec::with_capacity(1 << 20), lost: 0, wrong: 0, elapsed: Duration::ZERO };
    // By query id (= the packet's index): when the query now outstanding was sent.
    assert!(packets.len().is_power_of_two() && packets.len() <= 1 << 16);
    let mut sent_at: Vec<Option<Instant>> = vec![None; packets.len()];
    let (mut next, mut outstanding) = (0usize, 0usize);
    let started = Instant::now();
    loop {
        let more = started.elapsed() < length && next < MAX_QUERIES;
        while more && outstanding < inflight {
            let i = next & (packets.len() - 1);
            socket.send(&packets[i]).expect("send a query");
            sent_at[i] = Some(Instant::now());
            (next, outstanding) = (next + 1, outstanding + 1);
        }
        if outstanding == 0 {
            break;
        }
        match socket.recv(&mut buf) {
            Ok(n) if n >= 12 => {
                let id = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
                // A late answer to a query already counted lost has no send time any more.
                let Some(sent) = sent_at.get_mut(id).and_then(Option::take) else { continue };
                phase.latencies.push(sent.elapsed());
                outstanding -= 1;
                // NOERROR with an answer (ECS scope and all checked by the tests, not here).
                if buf[3] & 0x0f != 0 || buf[6..8] == [0, 0] {
                    phase.wrong += 1;
                }
            }
            Ok(_) => phase.wrong += 1,
            Err(_) => {
                phase.lost += outstanding;
                sent_at.fill(None);
                outstanding = 0;
            }
        }
    }
    phase.elapsed = started.elapsed();
    phase
}
