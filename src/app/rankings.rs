//! The thread that fills the rank slots builds ask for, when the GeoIP database is large enough
//! that ranking it (about a second a site set for a City database) must not hold up serving:
//! `geodns-rank` fills the latest loaded state's pending slots, one request at a time, and
//! ends when the builder drops its handle. Queries meanwhile take the per-query decision.

use std::io;
use std::sync::{Arc, mpsc};

use crate::load::Loaded;

/// The handle of the `geodns-rank` thread.
pub(super) struct RankWorker {
    /// To the thread: the state whose pending slots to fill. Requests that queue up while it
    /// fills are folded into the latest.
    requests: mpsc::Sender<Arc<Loaded>>,
}

impl RankWorker {
    pub fn start() -> io::Result<RankWorker> {
        let (requests, rx) = mpsc::channel::<Arc<Loaded>>();
        std::thread::Builder::new().name("geodns-rank".into()).spawn(move || {
            while let Ok(mut loaded) = rx.recv() {
                while let Ok(newer) = rx.try_recv() {
                    loaded = newer;
                }
                // A panic while ranking loses that ranking only: its names keep the per-query path.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loaded.fill_rankings()));
            }
        })?;
        Ok(RankWorker { requests })
    }

    /// Fills `loaded`'s pending slots in the background, if it has any.
    pub fn fill(&self, loaded: &Arc<Loaded>) {
        if loaded.rankings_pending() {
            let _ = self.requests.send(loaded.clone());
        }
    }
}
