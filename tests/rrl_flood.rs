//! Response rate limiting against a simulated spoofed flood: real responses from the real
//! handler (config/example.yaml), keyed as the UDP path keys them, checked by the limiter with
//! a simulated clock. The flooded prefix is limited (half slipped, half dropped); another
//! client's queries, interleaved, are all sent; the metric counts what was limited.

mod common;
#[path = "support/inproc.rs"]
mod inproc;

use geodns::dns::rrl;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::wire::WireQuery;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use hickory_server::net::xfer::Protocol;
use inproc::Outcome;
use rrl::{ResponseKey, Rrl, Verdict, truncated};

/// An A query for `name`.
fn wire(id: u16, name: &str) -> Vec<u8> {
    WireQuery::new(id, name, 1).bytes()
}

fn config() -> geodns::config::RrlConfig {
    geodns::config::RrlConfig {
        enabled: true,
        responses_per_second: 200,
        window: Duration::from_secs(15),
        slip: 2,
        ipv4_prefix: 24,
        ipv6_prefix: 56,
    }
}

#[tokio::test]
async fn a_spoofed_flood_is_limited_while_another_client_is_answered() {
    let handler = inproc::example_handler();
    let handle = geodns::metrics::install();
    let rrl = Rrl::new(&config()).unwrap();
    let t0 = Instant::now();
    let victim_port = 5353;
    let (mut sent, mut slipped, mut dropped) = (0usize, 0usize, 0usize);
    let mut legit_sent = 0;
    // 5 simulated seconds: 2,000 queries a second "from" 198.51.100.0/24 (spoofed, random
    // hosts and names that exist or not), and 10 a second from a resolver elsewhere.
    for ms in 0..5_000u64 {
        let now = t0 + Duration::from_millis(ms);
        for k in 0..2u64 {
            let i = ms * 2 + k;
            let src = SocketAddr::new(IpAddr::from([198, 51, 100, (i % 250) as u8 + 1]), victim_port);
            let name = if i % 3 == 0 { format!("r{i}.geo.example.") } else { "app.geo.example.".to_owned() };
            let Outcome::Answered(bytes) = inproc::answer(&handler, &wire(i as u16, &name), src, Protocol::Udp).await
            else {
                panic!("a valid query is answered")
            };
            match rrl.check(src.ip(), ResponseKey::from_response(&bytes), now) {
                Verdict::Send => sent += 1,
                Verdict::Slip => {
                    let t = truncated(&bytes).expect("a response has a header");
                    let m = Message::from_vec(&t).expect("the slipped response parses");
                    assert!(m.metadata.truncation && m.answers.is_empty() && t.len() <= bytes.len());
                    assert_eq!(m.metadata.id, i as u16);
                    slipped += 1
                }
                Verdict::Drop => dropped += 1,
            }
        }
        if ms % 100 == 0 {
            let src: SocketAddr = "203.0.113.53:4242".parse().unwrap();
            let Outcome::Answered(bytes) =
                inproc::answer(&handler, &wire(7, "app.geo.example."), src, Protocol::Udp).await
            else {
                panic!("answered")
            };
            assert_eq!(
                rrl.check(src.ip(), ResponseKey::from_response(&bytes), now),
                Verdict::Send,
                "the other client at {ms} ms"
            );
            legit_sent += 1;
        }
    }
    assert_eq!(legit_sent, 50);
    // Two groups for the flooded prefix (the app answer; NXDOMAIN of geo.example.). Each sends
    // its first second's 200; then the flood keeps it in debt (it spends 10x what it earns), so
    // nothing more is sent in full while the flood lasts.
    assert_eq!(sent, 2 * 200, "sent {sent}");
    assert_eq!(sent + slipped + dropped, 10_000);
    assert!(slipped.abs_diff(dropped) <= 2, "slip 2: half and half ({slipped} / {dropped})");
    let text = handle.render();
    assert!(text.contains("geodns_rrl_limited_total{action=\"slip\"}"), "{text}");
    assert!(text.contains("geodns_rrl_limited_total{action=\"drop\"}"), "{text}");
}

/// The same through the running server's UDP sockets: a burst from one address (a spoofed flood
/// looks like this) gets its budget, then truncated and dropped answers; a client in another
/// prefix (IPv6 loopback) is answered in full meanwhile. Loopback is exempt by default, so the
/// exemption is taken away here (`exempt: []`); rrl_exempt.rs tests the exemption itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_server_limits_a_flood_and_answers_another_client() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("city.mmdb");
    common::mmdb::write_city_db(&db, &[("81.2.69.0/24", 51.5, -0.1, "GB")]);
    let text = common::server::test_config(&db).replace(
        "  rrl: { enabled: false }\n",
        "  rrl: { enabled: true, responses_per_second: 5, slip: 2, exempt: [] }\n",
    );
    assert!(text.contains("responses_per_second: 5"), "the test config enables RRL");
    let s = common::server::start(&text, dir.path()).await;
    let (v4, v6) = (common::server::v4(&s), common::server::v6(&s));
    let q = common::dns::query("static.geo.example.", RecordType::A).to_vec().unwrap();
    let (mut full, mut truncated, mut dropped) = (0, 0, 0);
    // Bounded: 60 queries, each waiting at most 100 ms.
    for _ in 0..60 {
        match common::dns::udp_raw_wait(v4, &q, Duration::from_millis(100)).await {
            Some(r) => {
                let m = Message::from_vec(&r).unwrap();
                if m.metadata.truncation { truncated += 1 } else { full += 1 }
            }
            None => dropped += 1,
        }
    }
    assert!((5..60).contains(&full), "the flood got its budget and no more: {full} full");
    assert!(truncated > 0 && dropped > 0, "limited answers slip or drop: {truncated} truncated, {dropped} dropped");
    for _ in 0..5 {
        let r = common::dns::udp(v6, &common::dns::query("static.geo.example.", RecordType::A)).await;
        assert!(!r.metadata.truncation && r.answers.len() == 1, "another client is answered in full");
    }
    s.stop().await;
}
