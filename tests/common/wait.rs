//! Waiting for an event in tests: a condition polled until it holds, bounded, with a message
//! that says what never happened.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How often conditions are looked at again.
const POLL: Duration = Duration::from_millis(20);

/// Polls `cond` until it holds; panics with `what` after `limit`.
pub async fn until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Polls the async `look` until `done` holds for what it returns, which is returned; panics
/// with `what` and the last value after `limit`.
pub async fn until_async<T: std::fmt::Debug, F: Future<Output = T>>(
    limit: Duration,
    what: &str,
    mut look: impl FnMut() -> F,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let value = look().await;
        if done(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}; last: {value:?}");
        tokio::time::sleep(POLL).await;
    }
}
