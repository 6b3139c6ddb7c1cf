//! Scheduler tests: paused tokio time and a scripted prober, no network.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::time::Instant;

use super::*;
use crate::config::Probe;
use crate::sources::health::state::FailReason;

/// A prober whose answer per address is set by the test; records when each target was probed.
#[derive(Default)]
struct Script {
    /// Address -> passes? (missing = pass).
    up: Mutex<HashMap<IpAddr, bool>>,
    /// Every probe started, in order: (key, time).
    calls: Mutex<Vec<((String, IpAddr), Instant)>>,
    /// Addresses whose probe never answers (exercises the scheduler's timeout).
    hang: Mutex<HashSet<IpAddr>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// How long each probe takes.
    delay: Duration,
}

impl Script {
    fn set(&self, addr: IpAddr, up: bool) {
        self.up.lock().unwrap().insert(addr, up);
    }

    fn calls(&self) -> Vec<((String, IpAddr), Instant)> {
        self.calls.lock().unwrap().clone()
    }

    fn times(&self, addr: IpAddr) -> Vec<Instant> {
        self.calls().into_iter().filter(|(k, _)| k.1 == addr).map(|(_, t)| t).collect()
    }
}

impl Prober for Arc<Script> {
    async fn probe(&self, target: &Target) -> Outcome {
        self.calls.lock().unwrap().push((target.key(), Instant::now()));
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let hang = self.hang.lock().unwrap().contains(&target.addr);
        if hang {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(self.delay).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let up = self.up.lock().unwrap().get(&target.addr).copied().unwrap_or(true);
        if up { Outcome::pass("HTTP status 200") } else { Outcome::fail(FailReason::Status(503)) }
    }
}

fn check(interval_ms: u64, jitter_ms: u64, rise: u32, fall: u32) -> HealthCheck {
    HealthCheck {
        probe: Probe::Tcp { port: 80 },
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(interval_ms / 2),
        jitter: Duration::from_millis(jitter_ms),
        rise,
        fall,
    }
}

fn target(check_name: &str, config: &HealthCheck, addr: &str) -> Target {
    Target { check: check_name.to_owned(), config: config.clone(), addr: addr.parse().unwrap() }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Lets spawned tasks run until they are all waiting on a timer or a channel.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn one_probe_per_distinct_target() {
    let web = check(1000, 0, 2, 2);
    let tcp = check(1000, 0, 2, 2);
    let script = Arc::new(Script::default());
    let shutdown = CancellationToken::new();
    let targets = vec![
        target("web", &web, "192.0.2.1"),
        target("web", &web, "192.0.2.1"), // a second name using the same endpoint
        target("web", &web, "192.0.2.1"),
        target("web", &web, "192.0.2.2"),
        target("tcp", &tcp, "192.0.2.1"), // another check on the same address is its own target
    ];
    let monitor = spawn_with(targets, script.clone(), shutdown.clone());
    settle().await;
    let keys: Vec<_> = script.calls().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert_eq!(keys.iter().collect::<HashSet<_>>().len(), 3);
    assert_eq!(monitor.snapshot().endpoints.len(), 3);

    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(script.calls().len(), 3 * 5, "five rounds of three targets");
    shutdown.cancel();
    monitor.stopped().await;
}

#[tokio::test(start_paused = true)]
async fn snapshot_starts_unknown_and_not_down() {
    let c = check(1000, 0, 2, 2);
    let shutdown = CancellationToken::new();
    let monitor = spawn_with(vec![target("web", &c, "192.0.2.1")], Arc::new(Script::default()), shutdown.clone());
    let snap = monitor.snapshot();
    let e = &snap.endpoints[&("web".to_owned(), ip("192.0.2.1"))];
    assert_eq!((e.state, e.reason.as_str(), e.probes, &e.last_outcome), (State::Unknown, NOT_YET_CHECKED, 0, &None));
    assert_eq!(snap.down().count(), 0);
    shutdown.cancel();
    monitor.stopped().await;
}

#[tokio::test(start_paused = true)]
async fn rise_and_fall_count_probe_rounds_and_publish_at_the_deciding_probe() {
    let c = check(1000, 0, 2, 3);
    let addr = ip("192.0.2.1");
    let script = Arc::new(Script::default());
    let shutdown = CancellationToken::new();
    let start = Instant::now();
    let monitor = spawn_with(vec![target("web", &c, "192.0.2.1")], script.clone(), shutdown.clone());
    let mut rx = monitor.subscribe();
    let key = ("web".to_owned(), addr);

    // Probes at 0 s and 1 s pass: Up at the second one, published at that instant.
    rx.changed().await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    let snap = rx.borrow_and_update().clone();
    assert_eq!(snap.endpoints[&key].state, State::Up);
    assert_eq!(snap.endpoints[&key].reason, "HTTP status 200");
    assert_eq!(snap.endpoints[&key].probes, 2);

    // Fails from the 2 s probe on: Down at the third failure (4 s).
    script.set(addr, false);
    rx.changed().await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(4));
    let snap = rx.borrow_and_update().clone();
    assert_eq!(snap.endpoints[&key].state, State::Down);
    assert_eq!(snap.endpoints[&key].reason, "HTTP status 503");
    assert_eq!(snap.down().collect::<Vec<_>>(), [&key]);

    // Passes again from 5 s: Up at the second pass (6 s).
    script.set(addr, true);
    rx.changed().await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(6));
    assert_eq!(rx.borrow_and_update().endpoints[&key].state, State::Up);
    assert_eq!(rx.borrow().down().count(), 0);

    shutdown.cancel();
    monitor.stopped().await;
}

#[tokio::test(start_paused = true)]
async fn results_that_flip_nothing_do_not_wake_readers() {
    let c = check(100, 0, 1, 2);
    let addr = ip("192.0.2.1");
    let script = Arc::new(Script::default());
    let shutdown = CancellationToken::new();
    let monitor = spawn_with(vec![target("web", &c, "192.0.2.1")], script.clone(), shutdown.clone());
    let mut rx = monitor.subscribe();
    rx.changed().await.unwrap(); // Unknown -> Up at the first pass
    rx.borrow_and_update();

    // Twenty more passes, then alternating results (changed 50 ms before each probe, so every
    // probe sees a definite value): no flip, no wake-up.
    tokio::time::sleep(Duration::from_millis(2050)).await;
    for _ in 0..10 {
        script.set(addr, false);
        tokio::time::sleep(Duration::from_millis(100)).await;
        script.set(addr, true);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!rx.has_changed().unwrap());
    // ...but the silently refreshed value shows the recent probes.
    let snap = rx.borrow().clone();
    let e = &snap.endpoints[&("web".to_owned(), addr)];
    assert_eq!(e.state, State::Up);
    assert!(e.probes >= 30, "probes {}", e.probes);
    assert!(e.last_checked.is_some() && e.last_outcome.is_some());

    shutdown.cancel();
    monitor.stopped().await;
}

#[tokio::test(start_paused = true)]
async fn first_probes_run_at_once_and_jitter_spreads_the_rest() {
    let c = check(1000, 250, 2, 2);
    let script = Arc::new(Script::default());
    let shutdown = CancellationToken::new();
    let targets: Vec<Target> = (1..=20).map(|i| target("web", &c, &format!("192.0.2.{i}"))).collect();
    let start = Instant::now();
    let monitor = spawn_with(targets, script.clone(), shutdown.clone());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut later = HashSet::new();
    for i in 1..=20 {
        let times = script.times(ip(&format!("192.0.2.{i}")));
        assert!(times.len() >= 7, "{} probes", times.len());
        assert_eq!(times[0], start, "the first probe runs at once");
        later.insert(times[3]);
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap >= Duration::from_millis(1000) && gap <= Duration::from_millis(1250), "gap {gap:?}");
        }
    }
    assert!(later.len() > 1, "later probes are spread out");
    shutdown.cancel();
    monitor.stopped().await;
}

#[tokio::test(start_paused = true)]
async fn a_target_added_later_is_probed_at_once_and_one_removed_stops() {
    let c = check(1000, 0, 1, 1);
    let script = Arc::new(Script::default());
    let shutdown = CancellationToken::new();
    let monitor = spawn_with(vec![target("web", &c, "192.0.2.1")], script.clone(), shutdown.clone());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let added = Instant::now();
    monitor.set_targets(vec![target("web", &c, "192.0.2.2")]);
    settle().await;
    assert_eq!(script.times(ip("192.0.2.2")), [added], "probed at once, not an interval later");
    tokio::time::sleep(Duration::from_millis(5500)).await;
    assert_eq!(script.times(ip("192.0.2.1")).len(), 3, "no probe of a removed target (0, 1 and 2 s only)");
    assert_eq!(script.times(ip("192.0.2.2")).len(), 6, "2.5 s to 7.5 s");
    let snap = monitor.snapshot();
    let probed: Vec<IpAddr> = snap.probed().map(|(k, _)| k.1).collect();
    assert_eq!(probed, [ip("192.0.2.2")], "/status lists what is probed");
    assert!(!snap.endpoints[&("web".to_owned(), ip("192.0.2.1"))].probed, "the removed one is retained");
    shutdown.cancel();
    monitor.stopped().await;
}

#[tokio::test(start_paused = true)]
async fn a_dead_address_that_leaves_and_comes_back_is_still_down() {
    let c = check(1000, 0, 2, 2);
    let (dead, other) = (ip("192.0.2.1"), ip("192.0.2.2"));
    let key = ("web".to_owned(), dead);
    let script = Arc::new(Script::default());
    script.set(dead, false);
    let shutdown = CancellationToken::new();
    let monitor = spawn_with(vec![target("web", &c, "192.0.2.1")], script.clone(), shutdown.clone());
    let mut rx = monitor.subscribe();
    rx.changed().await.unwrap();
    assert_eq!(rx.borrow_and_update().endpoints[&key].state, State::Down);

    // It leaves the targets (a LoadBalancer IP moved away) ...
    monitor.set_targets(vec![target("web", &c, "192.0.2.2")]);
    settle().await;
    // ... and is still listed down while away, so a table that has it back judges it at once.
    assert_eq!(monitor.snapshot().down().collect::<Vec<_>>(), [&key]);
    tokio::time::sleep(Duration::from_secs(600)).await;
    // It comes back ten minutes later: down from the first moment, probed again at once.
    monitor.set_targets(vec![target("web", &c, "192.0.2.1"), target("web", &c, "192.0.2.2")]);
    settle().await;
    let snap = monitor.snapshot();
    let e = &snap.endpoints[&key];
    assert_eq!((e.state, e.probed), (State::Down, true));
    let back = Instant::now();
    assert_eq!(script.times(dead).last(), Some(&back), "probed again at once");
    // It recovers by the usual rule: `rise` passes (after the failed probe at its return).
    script.set(dead, true);
    rx.borrow_and_update();
    rx.changed().await.unwrap();
    assert_eq!(rx.borrow().endpoints[&key].state, State::Up);
    assert_eq!(back.elapsed(), Duration::from_secs(2), "the second pass");
    assert_eq!(monitor.snapshot().endpoints[&("web".to_owned(), other)].state, State::Up);
    shutdown.cancel();
    monitor.stopped().await;
}

#[tokio::test(start_paused = true)]
async fn verdicts_are_kept_for_the_retention_period_only() {
    let c = check(1000, 0, 1, 2);
    let dead = ip("192.0.2.1");
    let key = ("web".to_owned(), dead);
    let script = Arc::new(Script::default());
    script.set(dead, false);
    let shutdown = CancellationToken::new();
    let monitor = spawn_with(vec![target("web", &c, "192.0.2.1")], script.clone(), shutdown.clone());
    let mut rx = monitor.subscribe();
    rx.changed().await.unwrap();
    monitor.set_targets(Vec::new());
    settle().await;
    tokio::time::sleep(RETAIN_VERDICTS + RETAIN_VERDICTS / 4).await;
    assert!(monitor.snapshot().endpoints.is_empty(), "forgotten after the retention period");
    // Back after that: a new address, judged from scratch (fail-open until its first verdict).
    let calls = script.times(dead).len();
    monitor.set_targets(vec![target("web", &c, "192.0.2.1")]);
    settle().await;
    assert_eq!(monitor.snapshot().endpoints[&key].state, State::Unknown);
    assert_eq!(script.times(dead).len(), calls + 1, "probed at once");
    shutdown.cancel();
    monitor.stopped().await;
}

#[tokio::test(start_paused = true)]
async fn a_changed_check_restarts_its_probes_and_keeps_the_verdict() {
    let slow = check(1000, 0, 2, 2);
    let fast = check(200, 0, 1, 1);
    let addr = ip("192.0.2.1");
    let key = ("web".to_owned(), addr);
    let script = Arc::new(Script { delay: Duration::from_millis(50), ..Script::default() });
    script.set(addr, false);
    let shutdown = CancellationToken::new();
    let monitor = spawn_with(vec![target("web", &slow, "192.0.2.1")], script.clone(), shutdown.clone());
    let mut rx = monitor.subscribe();
    rx.changed().await.unwrap();
    assert_eq!(rx.borrow_and_update().endpoints[&key].state, State::Down);
    let probes = rx.borrow().endpoints[&key].probes;
    // A reload changes the check while a probe of the old one is in flight: its result is
    // dropped, the verdict stays, and the new check probes at once and every 200 ms.
    tokio::time::sleep(Duration::from_millis(975)).await;
    monitor.set_targets(vec![target("web", &fast, "192.0.2.1")]);
    let changed = Instant::now();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let times: Vec<Instant> = script.times(addr).into_iter().filter(|t| *t >= changed).collect();
    assert_eq!(times.len(), 5, "{times:?}");
    assert_eq!(times[0], changed);
    assert_eq!(monitor.snapshot().endpoints[&key].state, State::Down);
    assert!(!rx.has_changed().unwrap(), "no flip");
    // Up after one pass: the new rise.
    script.set(addr, true);
    rx.changed().await.unwrap();
    assert_eq!(rx.borrow().endpoints[&key].state, State::Up);
    assert!(rx.borrow().endpoints[&key].probes > probes);
    shutdown.cancel();
    monitor.stopped().await;
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_never_answers_times_out_and_counts_as_a_failure() {
    let c = check(1000, 0, 1, 2); // timeout 500 ms
    let addr = ip("192.0.2.9");
    let script = Arc::new(Script::default());
    script.hang.lock().unwrap().insert(addr);
    let shutdown = CancellationToken::new();
    let start = Instant::now();
    let monitor = spawn_with(vec![target("web", &c, "192.0.2.9")], script.clone(), shutdown.clone());
    let mut rx = monitor.subscribe();
    rx.changed().await.unwrap();
    // Probes at 0 s and 1 s each time out 500 ms later: Down at 1.5 s.
    assert_eq!(start.elapsed(), Duration::from_millis(1500));
    let snap = rx.borrow().clone();
    let e = &snap.endpoints[&("web".to_owned(), addr)];
    assert_eq!((e.state, e.reason.as_str()), (State::Down, "timed out after 500ms"));
    shutdown.cancel();
    monitor.stopped().await;
}

#[tokio::test(start_paused = true)]
async fn in_flight_probes_are_limited() {
    let c = check(1000, 0, 2, 2);
    let script = Arc::new(Script { delay: Duration::from_millis(100), ..Script::default() });
    let shutdown = CancellationToken::new();
    let targets: Vec<Target> =
        (0..200u32).map(|i| target("web", &c, &format!("10.0.{}.{}", i / 256, i % 256))).collect();
    let monitor = spawn_with(targets, script.clone(), shutdown.clone());
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(script.max_in_flight.load(Ordering::SeqCst), MAX_IN_FLIGHT_PROBES);
    // Queued probes still all ran within the round: 200 / 64 batches of 100 ms.
    assert_eq!(script.calls().len(), 200);
    shutdown.cancel();
    monitor.stopped().await;
}

#[tokio::test(start_paused = true)]
async fn cancellation_stops_every_task() {
    let c = check(1000, 100, 2, 2);
    let script = Arc::new(Script::default());
    let shutdown = CancellationToken::new();
    let targets = vec![target("web", &c, "192.0.2.1"), target("web", &c, "192.0.2.2")];
    let monitor = spawn_with(targets, script.clone(), shutdown.clone());
    let mut rx = monitor.subscribe();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let before = script.calls().len();
    assert!(before >= 4);

    shutdown.cancel();
    monitor.stopped().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(script.calls().len(), before, "no probe after shutdown");
    // The aggregator dropped the only sender.
    rx.borrow_and_update();
    assert!(rx.changed().await.is_err());
}

#[test]
fn targets_hash_by_key_and_compare_by_value() {
    use std::hash::BuildHasher;
    let a = target("web", &check(1000, 0, 2, 2), "192.0.2.1");
    let b = target("web", &check(2000, 0, 2, 2), "192.0.2.1");
    let hasher = std::collections::hash_map::RandomState::new();
    assert_eq!(hasher.hash_one(&a), hasher.hash_one(&b));
    assert_ne!(a, b);
    assert_eq!(a, a.clone());
    assert_eq!(a.key(), ("web".to_owned(), ip("192.0.2.1")));
}

#[test]
fn random_upto_stays_in_range() {
    assert_eq!(random_upto(Duration::ZERO), Duration::ZERO);
    for _ in 0..1000 {
        assert!(random_upto(Duration::from_millis(3)) <= Duration::from_millis(3));
    }
}
