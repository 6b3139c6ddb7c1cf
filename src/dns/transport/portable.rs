//! The portable UDP loop, for systems without `recvmmsg`: a runtime task per socket, one
//! `recv_from` and one `send_to` per query, the same [`answer`] and full path as the Linux loop.
//! Built on Linux too, for its test, so that it keeps compiling and answering where it is
//! never deployed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::rrl::{self, Rrl};
use crate::dns::answer::{Handler, Metrics, Outcome, Transport, answer};
use crate::dns::codec::query::{self, NameBuf};
use crate::dns::codec::response::MAX_UDP_PAYLOAD;

/// Serves one UDP socket until `shutdown` is cancelled.
#[cfg_attr(target_os = "linux", allow(dead_code))]
pub async fn serve(socket: UdpSocket, handler: Handler, rrl: Option<Arc<Rrl>>, shutdown: CancellationToken) {
    let rrl = rrl.as_deref();
    let mut buf = vec![0u8; 65535];
    let mut out = Vec::with_capacity(usize::from(MAX_UDP_PAYLOAD));
    let mut name = NameBuf::new();
    let mut metrics = Metrics::new(Transport::Udp);
    loop {
        let (n, src) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(error) => {
                    // ICMP errors from earlier sends surface here on some systems; keep going.
                    debug!(%error, "UDP receive error");
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let packet = &buf[..n];
        let started = metrics.sample_due().then(Instant::now);
        let table = handler.table();
        let outcome = answer(&table, &query::parse(packet, &mut name), src.ip(), Transport::Udp, &mut out);
        if let Outcome::Answered(info) = &outcome {
            metrics.answered(info, started);
            metrics.flush(&table);
        }
        drop(table);
        match outcome {
            Outcome::Answered(_) => send(&socket, &handler, rrl, &mut out, src).await,
            Outcome::Full => {
                if let Some(mut response) = handler.respond_full(packet, src, Transport::Udp).await {
                    send(&socket, &handler, rrl, &mut response, src).await;
                }
            }
            Outcome::Drop => {}
        }
    }
}

/// Sends a response, unless response rate limiting drops it (or sends it truncated).
async fn send(socket: &UdpSocket, handler: &Handler, rrl: Option<&Rrl>, response: &mut Vec<u8>, dst: SocketAddr) {
    // Its own statement: the table's guard is released before the send awaits.
    let admitted = rrl::apply(rrl, handler.table().rrl_exempt(), dst.ip(), response, Instant::now());
    if admitted && let Err(error) = socket.send_to(response, dst).await {
        debug!(%error, %dst, "UDP send error");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::RrlConfig;
    use crate::dns::codec::test_query::TestQuery;
    use crate::dns::testing::example_table_with;
    use crate::routing::Inputs;

    /// Sends `query` from `client` and returns the answer, if one comes within `wait`.
    async fn ask(client: &UdpSocket, server: SocketAddr, query: &[u8], wait: Duration) -> Option<Vec<u8>> {
        client.send_to(query, server).await.unwrap();
        let mut buf = vec![0u8; 65535];
        let (n, from) = tokio::time::timeout(wait, client.recv_from(&mut buf)).await.ok()?.unwrap();
        assert_eq!(from, server);
        Some(buf[..n].to_vec())
    }

    #[tokio::test]
    async fn answers_drops_and_limits_one_datagram_at_a_time_until_shut_down() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server = socket.local_addr().unwrap();
        let rrl = RrlConfig {
            enabled: true,
            responses_per_second: 1,
            window: Duration::from_secs(15),
            slip: 1,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
        };
        let shutdown = CancellationToken::new();
        // The client is on loopback: exempt from RRL unless the exemption is taken away.
        let table = example_table_with(&Inputs::default(), |c| c.server.rrl_exempt.networks.clear()).into_table();
        let handler = Handler::new(Arc::new(arc_swap::ArcSwap::new(table)));
        let task = tokio::spawn(serve(socket, handler, rrl::Rrl::new(&rrl).map(Arc::new), shutdown.clone()));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let wait = Duration::from_secs(5);

        // The fast path: ID, question and an address.
        let app = TestQuery::new(0x4242, "app.geo.example.", 1).flags(0x0100).bytes();
        let r = ask(&client, server, &app, wait).await.expect("an answer");
        assert_eq!(&r[..2], &[0x42, 0x42]);
        assert_eq!(r[2] & 0x80, 0x80, "QR");
        assert_eq!(r[3] & 0x0f, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1, "one answer");
        assert_eq!(&r[12..12 + app.len() - 12], &app[12..], "the question, as asked");

        // The full path: class CH is REFUSED by the handler.
        let chaos = TestQuery::new(0x4343, "app.geo.example.", 1).class(3).bytes();
        let r = ask(&client, server, &chaos, wait).await.expect("an answer");
        assert_eq!((&r[..2], r[3] & 0x0f), (&[0x43, 0x43][..], 5));

        // Dropped: a response, and less than a header.
        let mut response = app.clone();
        response[2] |= 0x80;
        assert!(ask(&client, server, &response, Duration::from_millis(300)).await.is_none());
        assert!(ask(&client, server, &app[..11], Duration::from_millis(300)).await.is_none());

        // RRL: one answer a second for app.geo.example to this /24, the rest slipped (TC set,
        // no records). Of five asked at once, at most two (across a second's turn) are whole.
        let mut slipped = 0;
        for _ in 0..5 {
            let r = ask(&client, server, &app, wait).await.expect("an answer, whole or slipped");
            if r[2] & 0x02 != 0 {
                assert_eq!(u16::from_be_bytes([r[6], r[7]]), 0, "a slipped answer has no records");
                slipped += 1;
            }
        }
        assert!(slipped >= 3, "{slipped} of 5 slipped");

        shutdown.cancel();
        tokio::time::timeout(wait, task).await.expect("the loop ends on shutdown").unwrap();
    }
}
