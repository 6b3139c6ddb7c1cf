//! Where routing tables are built and freed: off the runtime, on threads of their own, and
//! first at the lowest CPU priority, so that when the machine is busy answering queries, the
//! answering comes first; when it is not, a rebuild runs at once and at full speed.
//!
//! A full rebuild of a large table takes tens of milliseconds of one core (10,000 names x 100
//! sites: about 80 ms, and freeing the old table a few more). On a runtime worker it would stall
//! every task queued behind it; at the priority of the UDP threads it would take their CPU when
//! every core is busy.
//!
//! On Linux a build first runs on `geodns-build`, a `SCHED_IDLE` thread: it runs only on CPU
//! time no other thread wants, and the scheduler places waking threads (the UDP threads, the
//! runtime's) on a CPU it occupies as if that CPU were idle. So that a health flip still reaches
//! DNS when the CPUs are saturated for long, a build not done within [`PATIENCE`] is started
//! again on `geodns-build-now`, a thread at normal priority; whichever finishes first is used,
//! and the other is skipped or discarded. (An unprivileged thread cannot raise its own priority
//! back from `SCHED_IDLE`, hence a second thread.)

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::debug;

/// How long a build may wait for idle CPU time before it is also started at normal priority.
pub const PATIENCE: Duration = Duration::from_millis(250);

type Job = Box<dyn FnOnce() + Send>;

/// The two build threads (`geodns-build`, `geodns-build-now`); they end when the last handle
/// is dropped.
#[derive(Clone)]
pub struct BuildThreads {
    idle: mpsc::Sender<Job>,
    now: mpsc::Sender<Job>,
    /// Numbers builds; the highest whose result was taken (older copies are skipped).
    next: Arc<AtomicU64>,
    taken: Arc<AtomicU64>,
}

fn spawn(name: &str, idle: bool) -> io::Result<mpsc::Sender<Job>> {
    let (jobs, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new().name(name.into()).spawn(move || {
        if idle {
            lowest_priority();
        }
        for job in rx {
            // A job that panics ends alone (its caller sees the failure), not the thread.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        }
    })?;
    Ok(jobs)
}

impl BuildThreads {
    /// Starts the threads (`geodns-build` and `geodns-build-now`).
    pub fn start() -> io::Result<Self> {
        Ok(BuildThreads {
            idle: spawn("geodns-build", true)?,
            now: spawn("geodns-build-now", false)?,
            next: Arc::new(AtomicU64::new(0)),
            taken: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Runs `f` on `thread`; the receiver gets its result, or fails if it panicked or was
    /// skipped (a later build's result was taken first).
    fn send<T: Send + 'static>(
        &self,
        thread: &mpsc::Sender<Job>,
        seq: u64,
        f: Arc<dyn Fn() -> T + Send + Sync>,
    ) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        let taken = self.taken.clone();
        let job: Job = Box::new(move || {
            if taken.load(Ordering::Relaxed) >= seq || tx.is_closed() {
                return;
            }
            // A panic drops `tx`: the caller sees the receiver fail and keeps what it had.
            let _ = tx.send(f());
        });
        if thread.send(job).is_err() {
            debug!("a build thread has ended");
        }
        rx
    }

    /// Builds with `f`: at the lowest priority, and also at normal priority if that has not
    /// finished within [`PATIENCE`]. `None` if `f` panicked.
    pub async fn build<T: Send + 'static>(&self, f: impl Fn() -> T + Send + Sync + 'static) -> Option<T> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let f: Arc<dyn Fn() -> T + Send + Sync> = Arc::new(f);
        let mut idle = self.send(&self.idle, seq, f.clone());
        let result = match tokio::time::timeout(PATIENCE, &mut idle).await {
            Ok(result) => result.ok(),
            Err(_) => {
                debug!(seq, "no idle CPU for the build within its patience: building at normal priority too");
                let mut now = self.send(&self.now, seq, f);
                tokio::select! {
                    r = &mut idle => match r {
                        Ok(t) => Some(t),
                        Err(_) => now.await.ok(),
                    },
                    r = &mut now => match r {
                        Ok(t) => Some(t),
                        Err(_) => idle.await.ok(),
                    },
                }
            }
        };
        self.taken.fetch_max(seq, Ordering::Relaxed);
        result
    }

    /// [`BuildThreads::build`] from outside a runtime (benchmarks and tools), waiting on the
    /// calling thread.
    pub fn build_blocking<T: Send + 'static>(&self, f: impl Fn() -> T + Send + Sync + 'static) -> Option<T> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().ok()?;
        rt.block_on(self.build(f))
    }

    /// Frees `value` on the lowest-priority thread, off the caller's (a routing table: a few
    /// milliseconds for a large one).
    pub fn drop_later<T: Send + 'static>(&self, value: T) {
        let job: Job = Box::new(move || drop(value));
        let _ = self.idle.send(job);
    }
}

/// Has large blocks freed go back to the system at once. glibc's allocator otherwise raises
/// its thresholds as the program frees large blocks: after ranking a City database, tens of MB
/// of the walk's buffers stayed resident (free, at the top of the ranking thread's arena) for the
/// life of the process. With the thresholds fixed, blocks of 1 MiB and more are mapped and
/// unmapped on their own, and free memory above 1 MiB at the top of an arena is returned. Called
/// once, before anything large is allocated. Elsewhere (other allocators) a no-op.
pub fn return_large_frees_promptly() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets the allocator's tuning parameters (the values are valid
        // byte counts); it touches no allocated memory.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 20);
        }
    }
}

/// Moves the calling thread to the `SCHED_IDLE` policy (Linux; elsewhere it keeps its priority).
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sched_setscheduler with pid 0 changes the calling thread's policy only; the
        // parameter is a valid sched_param (priority 0, as SCHED_IDLE requires).
        #[allow(unsafe_code)]
        let rc = unsafe {
            let param = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(0, libc::SCHED_IDLE, &param)
        };
        if rc != 0 {
            debug!(error = %io::Error::last_os_error(), "cannot lower the build thread's priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_survives_a_panic() {
        let t = BuildThreads::start().unwrap();
        assert_eq!(t.build_blocking(|| 1 + 1), Some(2));
        assert_eq!(t.build_blocking(|| -> u32 { panic!("a failed build") }), None);
        assert_eq!(t.build_blocking(|| "still running"), Some("still running"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_first_thread_runs_at_the_lowest_priority() {
        /// Sends the policy of the thread that frees it.
        struct Report(mpsc::Sender<i32>);
        impl Drop for Report {
            fn drop(&mut self) {
                // SAFETY: sched_getscheduler(0) reads the calling thread's policy.
                #[allow(unsafe_code)]
                let _ = self.0.send(unsafe { libc::sched_getscheduler(0) });
            }
        }
        let t = BuildThreads::start().unwrap();
        let (tx, rx) = mpsc::channel();
        t.drop_later(Report(tx));
        // However busy the machine, an idle-priority thread gets some time within a minute.
        assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(libc::SCHED_IDLE));
    }

    #[test]
    fn a_build_that_waits_too_long_also_runs_at_normal_priority() {
        /// Holds the thread that frees it until its sender goes.
        struct Hold(mpsc::Receiver<()>);
        impl Drop for Hold {
            fn drop(&mut self) {
                let _ = self.0.recv_timeout(Duration::from_secs(10));
            }
        }
        let t = BuildThreads::start().unwrap();
        let (release, hold) = mpsc::channel();
        t.drop_later(Hold(hold));
        let started = std::time::Instant::now();
        let name = t.build_blocking(|| std::thread::current().name().map(str::to_owned));
        assert_eq!(name, Some(Some("geodns-build-now".to_owned())));
        assert!(started.elapsed() >= PATIENCE);
        drop(release);
    }
}
