//! Triggers for reloads: SIGHUP, and changes to the config file, the GeoIP database and the
//! admin state file, found by polling their metadata (size, modification time, inode) once a
//! second. Polling needs no platform notification API and also sees a file replaced by rename.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::builder::Event;

/// How often watched files are looked at.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What identifies a version of a file: a rename, a rewrite or a touch all change it.
fn fingerprint(path: &PathBuf) -> Option<(u64, u64, i64, i64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

async fn poll(paths: Vec<PathBuf>, event: Event, events: mpsc::Sender<Event>, shutdown: CancellationToken) {
    let mut last: Vec<_> = paths.iter().map(fingerprint).collect();
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let now: Vec<_> = paths.iter().map(fingerprint).collect();
        if now != last {
            for (path, (a, b)) in paths.iter().zip(last.iter().zip(&now)) {
                if a != b {
                    info!(path = %path.display(), "watched file changed");
                }
            }
            last = now;
            if events.send(event.clone()).await.is_err() {
                return;
            }
        }
    }
}

/// Reloads when the config file or GeoIP database changes.
pub async fn config_files(paths: Vec<PathBuf>, events: mpsc::Sender<Event>, shutdown: CancellationToken) {
    poll(paths, Event::Reload("file changed"), events, shutdown).await
}

/// Re-reads the admin state file when it changes.
pub async fn admin_state(path: PathBuf, events: mpsc::Sender<Event>, shutdown: CancellationToken) {
    poll(vec![path], Event::AdminState, events, shutdown).await
}

/// Reloads on SIGHUP.
pub async fn sighup(events: mpsc::Sender<Event>, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(error) => {
            warn!(%error, "cannot watch for SIGHUP; reload by changing the config file");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                info!(signal = "SIGHUP", "signal received");
                if events.send(Event::Reload("SIGHUP")).await.is_err() {
                    return;
                }
            }
            _ = shutdown.cancelled() => return,
        }
    }
}
