//! The thread routing tables are built and freed on: a thread of its own at a lower CPU
//! priority (nice +10 on Linux), so that when the machine is busy, answering queries comes
//! first and rebuilds wait; when it is not, a rebuild runs at full speed at once.
//!
//! A full rebuild of a large table takes tens of milliseconds of one core (10,000 names x 100
//! sites: about 80 ms, and freeing the old table a few more). On a runtime worker that would
//! stall every task queued behind it; at the same priority as the UDP threads it would take
//! their CPU when both cores are busy.

use std::io;
use std::sync::mpsc;

use tokio::sync::oneshot;
use tracing::debug;

/// The niceness the build thread runs at (on Linux; elsewhere it runs at normal priority).
pub const NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// A handle to the build thread; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct BuildThread {
    jobs: mpsc::Sender<Job>,
}

impl BuildThread {
    /// Starts the thread (named `geodns-build`).
    pub fn start() -> io::Result<Self> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new().name("geodns-build".into()).spawn(move || {
            lower_priority();
            for job in rx {
                // A job that panics ends alone (its caller sees the failure), not the thread.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
        })?;
        Ok(BuildThread { jobs })
    }

    /// Runs `f` on the build thread; the receiver gets its result, or an error if it panicked.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            // A panic drops `tx`: the caller sees the receiver fail and keeps what it had.
            let _ = tx.send(f());
        });
        if self.jobs.send(job).is_err() {
            debug!("the build thread has ended");
        }
        rx
    }

    /// [`BuildThread::run`], waiting for the result on the calling thread (outside a runtime:
    /// benchmarks and tools). `None` if `f` panicked.
    pub fn run_blocking<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        self.run(f).blocking_recv().ok()
    }

    /// Frees `value` on the build thread, off the caller's (a routing table: a few milliseconds
    /// for a large one).
    pub fn drop_later<T: Send + 'static>(&self, value: T) {
        drop(self.run(move || drop(value)));
    }
}

/// Lowers the calling thread's priority to [`NICE`].
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions; setpriority with PRIO_PROCESS and a thread ID
        // changes that thread's niceness only (Linux schedules threads as tasks).
        #[allow(unsafe_code)]
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, NICE) };
        if rc != 0 {
            debug!(error = %io::Error::last_os_error(), "cannot lower the build thread's priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_jobs_in_order_and_survives_a_panic() {
        let t = BuildThread::start().unwrap();
        assert_eq!(t.run_blocking(|| 1 + 1), Some(2));
        assert_eq!(t.run_blocking(|| -> u32 { panic!("a failed build") }), None);
        assert_eq!(t.run_blocking(|| "still running"), Some("still running"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn runs_at_lower_priority() {
        let t = BuildThread::start().unwrap();
        // SAFETY: as in lower_priority; getpriority reads the calling thread's niceness (errno
        // is cleared first: -1 is a valid niceness).
        #[allow(unsafe_code)]
        let (mine, theirs) = unsafe {
            let get = || {
                *libc::__errno_location() = 0;
                libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t)
            };
            (get(), t.run_blocking(get).unwrap())
        };
        assert_eq!(theirs, (mine + NICE).min(19), "the build thread runs at nice +{NICE}");
    }
}
