//! Triggers for reloads: SIGHUP, and changes to the config file, the GeoIP database, the TSIG
//! secret files (`tsig_keys.<name>.secret_file`) and the admin state file, found by polling
//! their metadata (size, modification time, inode; a symbolic link is followed, so a
//! Kubernetes Secret volume's swap of its data directory is seen) once a second. Polling needs no platform notification API and also sees a file replaced by rename.
//! A changed file is read once its metadata has stayed the same for [`SETTLE`] and it is not
//! empty (or has stayed empty for [`SETTLE_LOOKS`] looks), so a file rewritten in place is not
//! read between its truncation and its new contents. Writing the new version to a temporary
//! file and renaming it over the old one is still the safe way to change a watched file: the
//! watcher then never sees a half-written one.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::builder::Event;

/// How often watched files are looked at.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// A file seen changed is read once it has stayed the same for this long: a file written in
/// place (`printf ... > file`: truncate, then write) is otherwise read half-written. An empty
/// admin state file is valid (no overrides), so reading one between the truncate and the
/// write would undrain every drained site for a moment.
pub const SETTLE: Duration = Duration::from_millis(50);

/// Looking for a still moment gives up after this many looks (the file keeps changing, or
/// stays empty: the last version seen is read). An in-place rewrite truncates the file to
/// zero bytes first, so an empty file is looked at again for up to 20 x [`SETTLE`] = 1 s
/// before it is believed: a writer held up between truncating and writing (a busy machine)
/// would otherwise have its half-done file read. A config file is never valid empty; an empty
/// admin state file (no overrides) takes effect a second later than other changes.
const SETTLE_LOOKS: usize = 20;

/// What identifies a version of a file: a rename, a rewrite or a touch all change it.
fn fingerprint(path: &PathBuf) -> Option<(u64, u64, i64, i64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

/// The files to watch; the builder updates it after a reload that names other files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Watched {
    /// The config file, the GeoIP database and the TSIG secret files: a change to any reloads
    /// the config (and so all of them).
    pub config: Vec<PathBuf>,
    /// The admin state file: a change re-reads the overrides.
    pub admin_state: Option<PathBuf>,
}

type Prints = Vec<Option<(u64, u64, i64, i64)>>;

fn prints(paths: &[PathBuf]) -> Prints {
    paths.iter().map(fingerprint).collect()
}

/// No file of the set is empty (a missing file counts as whole: it is not being written).
fn none_empty(prints: &Prints) -> bool {
    prints.iter().flatten().all(|&(_, size, _, _)| size > 0)
}

/// Looks again every [`SETTLE`] until two looks agree and `whole` holds for the last one (at
/// most [`SETTLE_LOOKS`] times): the last look. `None` at shutdown.
async fn settle<T: PartialEq>(
    mut seen: T,
    mut look: impl FnMut() -> T,
    whole: impl Fn(&T) -> bool,
    shutdown: &CancellationToken,
) -> Option<T> {
    for _ in 0..SETTLE_LOOKS {
        tokio::select! {
            _ = tokio::time::sleep(SETTLE) => {}
            _ = shutdown.cancelled() => return None,
        }
        let again = look();
        if again == seen && whole(&again) {
            return Some(again);
        }
        seen = again;
    }
    Some(seen)
}

/// Polls the watched files and tells the builder what changed.
pub async fn files(
    mut watched: tokio::sync::watch::Receiver<Watched>,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) {
    let mut current = watched.borrow_and_update().clone();
    let admin_paths = |w: &Watched| w.admin_state.iter().cloned().collect::<Vec<_>>();
    let (mut config, mut admin) = (prints(&current.config), prints(&admin_paths(&current)));
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if watched.has_changed().unwrap_or(false) {
            // New paths (after a reload): start from their current state.
            current = watched.borrow_and_update().clone();
            config = prints(&current.config);
            admin = prints(&admin_paths(&current));
            continue;
        }
        for (paths, last, event) in [
            (current.config.clone(), &mut config, Event::Reload("file changed")),
            (admin_paths(&current), &mut admin, Event::AdminState),
        ] {
            let now = prints(&paths);
            if now != *last {
                let Some(now) = settle(now, || prints(&paths), none_empty, &shutdown).await else { return };
                if now == *last {
                    // Caught mid-rewrite, and back as it was (a rewrite to the same bytes
                    // and time): nothing changed.
                    continue;
                }
                for (path, (a, b)) in paths.iter().zip(last.iter().zip(&now)) {
                    if a != b {
                        info!(path = %path.display(), "watched file changed");
                    }
                }
                *last = now;
                if events.send(event).await.is_err() {
                    return;
                }
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `settle` over scripted looks (the last one repeats), where 0 stands for an empty file:
    /// what it returns, and how many looks it took.
    async fn settled(looks: &[u32]) -> (Option<u32>, usize) {
        let mut taken = 0;
        let token = CancellationToken::new();
        let got = settle(
            looks[0],
            || {
                taken += 1;
                looks[taken.min(looks.len() - 1)]
            },
            |v| *v != 0,
            &token,
        )
        .await;
        (got, taken)
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_file_is_read_once_two_looks_agree() {
        // Already still: one more look confirms it.
        assert_eq!(settled(&[7]).await, (Some(7), 1));
        // Truncated (0), then written (1), then still: the written version.
        assert_eq!(settled(&[0, 1, 1]).await, (Some(1), 2));
        // Empty for a while (a writer held up between truncating and writing): still the
        // written version, however many agreeing looks saw it empty.
        assert_eq!(settled(&[0, 0, 0, 0, 0, 3, 3]).await, (Some(3), 6));
        assert_eq!(settled(&[5, 0, 0, 0, 0, 3, 3]).await, (Some(3), 6));
        // Empty for good (an operator cleared the file): believed after SETTLE_LOOKS looks.
        assert_eq!(settled(&[0]).await, (Some(0), SETTLE_LOOKS));
        // Never still: gives up after SETTLE_LOOKS looks, with the last.
        let changing: Vec<u32> = (1..100).collect();
        assert_eq!(settled(&changing).await, (Some(SETTLE_LOOKS as u32 + 1), SETTLE_LOOKS));
        // Shutdown ends the wait.
        let token = CancellationToken::new();
        token.cancel();
        assert_eq!(settle(1, || 2, |_| true, &token).await, None);
    }
}
