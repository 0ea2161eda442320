//! A second thread for split products, woken without a system call.
//!
//! A training step on a two-core machine splits each large product in two, and the products
//! come every few tens of microseconds with single-threaded elementwise work in between.
//! rayon's idle workers fall asleep within microseconds, and waking one (a futex call, then
//! the scheduler) is slow on this project's VM: B1's callers waited 52 µs on average for the
//! second block of a product whose own block took about as long. Sampling one token at a time
//! is the extreme case: each token is a few one-row products reading a megabyte of weights
//! (19 µs per token on one thread, 25-35 µs split through rayon). So this module keeps one
//! helper thread that spins for [`SPIN_AFTER_JOB`] after each job before it parks: while a
//! model trains or samples it is always awake, and afterwards it sleeps again within a
//! fraction of a millisecond.
//!
//! Only jobs that own their data (`'static`) are sent, so no `unsafe` is needed: callers share
//! operand storage through its `Arc` and get the helper's block back as a buffer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long the helper stays awake after a job, waiting for the next.
pub(crate) const SPIN_AFTER_JOB: Duration = Duration::from_micros(500);

/// How long a caller spins for its result before it blocks.
const SPIN_FOR_RESULT: Duration = Duration::from_micros(200);

type Job = Box<dyn FnOnce() + Send + 'static>;

/// One poll of a spin-wait: every 64th checks the clock (false once `limit` has passed since
/// `since`) and yields the CPU, since the scheduler may put the helper and the caller on the
/// same core, where neither could run while the other spins.
#[derive(Default)]
struct Spin {
    polls: u32,
}

impl Spin {
    fn keep_going(&mut self, since: Instant, limit: Duration) -> bool {
        std::hint::spin_loop();
        self.polls = self.polls.wrapping_add(1);
        if !self.polls.is_multiple_of(64) {
            return true;
        }
        if since.elapsed() > limit {
            return false;
        }
        std::thread::yield_now();
        true
    }
}

/// The helper's mailbox: at most one job waiting.
struct Helper {
    slot: Mutex<Option<Job>>,
    has_job: AtomicBool,
    /// Set (under the `slot` lock) while the helper waits on `wake`: only then does a sender
    /// pay for a notify system call.
    asleep: AtomicBool,
    wake: Condvar,
}

static HELPER: OnceLock<Option<&'static Helper>> = OnceLock::new();

/// The helper, started on first use (`None` if the OS refused a thread).
fn helper() -> Option<&'static Helper> {
    *HELPER.get_or_init(|| {
        let h: &'static Helper = Box::leak(Box::new(Helper {
            slot: Mutex::new(None),
            has_job: AtomicBool::new(false),
            asleep: AtomicBool::new(false),
            wake: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("retrograd-helper".into())
            .spawn(move || h.run())
            .ok()
            .map(|_| h)
    })
}

impl Helper {
    fn take(&self) -> Option<Job> {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        // cleared under the lock, so a job sent right after is flagged again
        self.has_job.store(false, Ordering::Release);
        slot.take()
    }

    fn run(&self) {
        loop {
            // awake: poll the mailbox until SPIN_AFTER_JOB passes without a job
            let mut idle_since = Instant::now();
            let mut spin = Spin::default();
            loop {
                if self.has_job.load(Ordering::Acquire) {
                    if let Some(job) = self.take() {
                        job();
                        idle_since = Instant::now();
                    }
                    continue;
                }
                if !spin.keep_going(idle_since, SPIN_AFTER_JOB) {
                    break;
                }
            }
            // asleep until a job arrives
            let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
            self.asleep.store(true, Ordering::Relaxed);
            while slot.is_none() {
                slot = self.wake.wait(slot).unwrap_or_else(|p| p.into_inner());
            }
            self.asleep.store(false, Ordering::Relaxed);
            let job = slot.take();
            self.has_job.store(false, Ordering::Release);
            drop(slot);
            if let Some(job) = job {
                job();
            }
        }
    }
}

/// The result of a job sent to the helper.
pub(crate) struct Pending<T> {
    state: Arc<Done<T>>,
}

/// Where a job leaves its result.
struct Done<T> {
    value: Mutex<Option<std::thread::Result<T>>>,
    ready: AtomicBool,
    /// Set (under the `value` lock) while the caller blocks on `cv`.
    waiting: AtomicBool,
    cv: Condvar,
}

/// Runs `f` on the helper thread if it is free, returning a handle to wait on; gives `f` back
/// when the helper is busy or unavailable (the caller then runs it itself).
pub(crate) fn spawn<T, F>(f: F) -> Result<Pending<T>, F>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let Some(h) = helper() else {
        return Err(f);
    };
    let mut slot = h.slot.lock().unwrap_or_else(|p| p.into_inner());
    if slot.is_some() {
        return Err(f);
    }
    let state = Arc::new(Done {
        value: Mutex::new(None),
        ready: AtomicBool::new(false),
        waiting: AtomicBool::new(false),
        cv: Condvar::new(),
    });
    let done = state.clone();
    *slot = Some(Box::new(move || {
        // a panic is carried back to the caller (and the helper lives on)
        let v = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let mut value = done.value.lock().unwrap_or_else(|p| p.into_inner());
        *value = Some(v);
        done.ready.store(true, Ordering::Release);
        let waiting = done.waiting.load(Ordering::Relaxed);
        drop(value);
        if waiting {
            done.cv.notify_one();
        }
    }));
    h.has_job.store(true, Ordering::Release);
    let asleep = h.asleep.load(Ordering::Relaxed);
    drop(slot);
    if asleep {
        h.wake.notify_one();
    }
    Ok(Pending { state })
}

impl<T> Pending<T> {
    /// Waits for the result: spinning briefly (the helper is usually awake), then blocking. A
    /// panic in the job resumes here.
    pub(crate) fn wait(self) -> T {
        let d = &*self.state;
        let (start, mut spin) = (Instant::now(), Spin::default());
        while !d.ready.load(Ordering::Acquire) {
            if !spin.keep_going(start, SPIN_FOR_RESULT) {
                break;
            }
        }
        let mut v = d.value.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match v.take() {
                Some(Ok(t)) => return t,
                Some(Err(panic)) => std::panic::resume_unwind(panic),
                None => {}
            }
            d.waiting.store(true, Ordering::Relaxed);
            v = d.cv.wait(v).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Held by the lib tests that send jobs to the helper, so that none runs beside the mailbox
/// test below, which keeps the helper busy with a job that waits for a signal (a job sent
/// meanwhile would wait for it too).
#[cfg(test)]
pub(crate) static TEST_LOCK: Mutex<()> = Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;

    /// One test, so that no other test in this process uses the helper meanwhile.
    #[test]
    fn jobs_run_on_the_helper_and_a_busy_helper_hands_them_back() {
        let _alone = TEST_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let me = std::thread::current().id();
        let p = spawn(move || (std::thread::current().id() != me, 6 * 7))
            .unwrap_or_else(|_| panic!("the helper should be free"));
        assert_eq!(p.wait(), (true, 42));
        // after the helper has gone back to sleep, a job still wakes it
        std::thread::sleep(SPIN_AFTER_JOB * 4);
        let p = spawn(|| 1).unwrap_or_else(|_| panic!("the helper should be free"));
        assert_eq!(p.wait(), 1);

        // hold the helper with a job that waits for a signal
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let g = gate.clone();
        let held = spawn(move || {
            let mut open = g.0.lock().unwrap();
            while !*open {
                open = g.1.wait(open).unwrap();
            }
        })
        .unwrap_or_else(|_| panic!("the helper should be free"));
        // once the helper has taken that job, its mailbox takes one more...
        let start = Instant::now();
        let queued = loop {
            if let Ok(p) = spawn(|| 2) {
                break p;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the helper never took the job"
            );
        };
        // ...and hands a third back
        assert_eq!(spawn(|| 3).err().map(|f| f()), Some(3));
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        held.wait();
        assert_eq!(queued.wait(), 2);
    }
}
