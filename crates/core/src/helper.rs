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
//! Two kinds of block reach it, neither needing `unsafe`:
//! * jobs that own their data (`'static`, [`spawn`]): callers share operand storage through
//!   its `Arc` and get the helper's block back as a buffer, which they copy into place;
//! * blocks that borrow the caller's data ([`split_in_place`]), such as a product's rows
//!   written straight into their part of the output. The helper's loop runs as the only job
//!   of a one-thread rayon pool, and such a block reaches it as a job of that pool's scope
//!   (the scope does not end before its jobs have run). It is handed over only while the
//!   helper polls for work, and the helper keeps polling until every caller that found it so
//!   is done, so the caller never waits for it to wake or to finish a background job. Writing
//!   in place saves the copy, which lands in memory the step has not touched yet: B1's
//!   forward pass spent 9–12 µs of each time step's 110 copying the helper's 64 KB half of
//!   the gates.
//!
//! Besides the split blocks ([`spawn`]), the helper takes *background* jobs ([`background`]):
//! work that is ready early but needed only later, such as the partial weight gradients of the
//! backward pass (`deferred.rs`). It runs them when no block is waiting, and while it runs
//! one, [`spawn`] hands blocks back, so the caller computes its product whole instead of
//! waiting behind the background job. A block the helper has not taken by the time its caller
//! waits for it (the helper was asleep, or off the CPU) is run by the caller
//! ([`Pending::wait`]), and so is a background job the helper has not started when its result
//! is wanted ([`Background::join`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// What waits for the helper: at most one split block (numbered, so that its caller can tell
/// it is still there), and background jobs in order.
#[derive(Default)]
struct Mailbox {
    job: Option<Job>,
    /// The number of the last block sent.
    sent: u64,
    background: VecDeque<Arc<dyn Chore>>,
}

/// The helper's mailbox and flags.
struct Helper {
    slot: Mutex<Mailbox>,
    /// A split block waits in the mailbox.
    has_job: AtomicBool,
    /// Background jobs wait in the mailbox.
    has_chore: AtomicBool,
    /// The helper is running a background job: [`spawn`] hands blocks back meanwhile.
    in_chore: AtomicBool,
    /// Set (under the `slot` lock) while the helper waits on `wake`: only then does a sender
    /// pay for a notify system call.
    asleep: AtomicBool,
    wake: Condvar,
    /// Set while the helper polls for work (not running a job or a background job, and not
    /// asleep): only then does [`split_in_place`] hand it a block.
    polling: AtomicBool,
    /// Callers of [`split_in_place`] between their check of `polling` and the end of their
    /// block: while any are, the helper keeps polling (and runs their blocks).
    scoped: AtomicUsize,
    /// The one-thread rayon pool the helper's loop runs on: blocks that borrow the caller's
    /// data reach it as that pool's scoped jobs.
    pool: rayon::ThreadPool,
}

thread_local! {
    /// Set on the helper thread: it never sends itself a job (it would wait for itself).
    static ON_HELPER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

static HELPER: OnceLock<Option<&'static Helper>> = OnceLock::new();

/// The helper, started on first use (`None` if the OS refused a thread).
fn helper() -> Option<&'static Helper> {
    *HELPER.get_or_init(|| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "retrograd-helper".into())
            .build()
            .ok()?;
        let h: &'static Helper = Box::leak(Box::new(Helper {
            slot: Mutex::new(Mailbox::default()),
            has_job: AtomicBool::new(false),
            has_chore: AtomicBool::new(false),
            in_chore: AtomicBool::new(false),
            asleep: AtomicBool::new(false),
            wake: Condvar::new(),
            polling: AtomicBool::new(false),
            scoped: AtomicUsize::new(0),
            pool,
        }));
        h.pool.spawn(move || {
            ON_HELPER.with(|o| o.set(true));
            h.run()
        });
        Some(h)
    })
}

/// The helper, for any thread but the helper itself, which never sends itself work (it would
/// wait for itself).
fn for_others() -> Option<&'static Helper> {
    if ON_HELPER.with(|o| o.get()) {
        None
    } else {
        helper()
    }
}

impl Helper {
    fn lock(&self) -> std::sync::MutexGuard<'_, Mailbox> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self) -> Option<Job> {
        self.take_if(|_| true)
    }

    /// The waiting block, if `wanted` says the mailbox holds the one wanted (else nothing is
    /// taken).
    fn take_if(&self, wanted: impl FnOnce(&Mailbox) -> bool) -> Option<Job> {
        let mut slot = self.lock();
        if !wanted(&slot) {
            return None;
        }
        // cleared under the lock, so a job sent right after is flagged again
        self.has_job.store(false, Ordering::Release);
        slot.job.take()
    }

    /// The next background job, unless a block waits. `in_chore` is set under the lock, so
    /// a block is either sent before (and taken first) or handed back by [`spawn`].
    fn take_chore(&self) -> Option<Arc<dyn Chore>> {
        let mut slot = self.lock();
        if slot.job.is_some() {
            return None;
        }
        let chore = slot.background.pop_front();
        self.has_chore
            .store(!slot.background.is_empty(), Ordering::Release);
        self.in_chore.store(chore.is_some(), Ordering::Release);
        chore
    }

    /// Stops polling, unless a caller of [`split_in_place`] counts on it: then `false`, and
    /// the helper goes on polling. Paired with that function's check, in the opposite order,
    /// so that at least one of the two sees the other.
    fn stop_polling(&self) -> bool {
        self.polling.store(false, Ordering::SeqCst);
        if self.scoped.load(Ordering::SeqCst) > 0 {
            self.polling.store(true, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Runs `work` with polling stopped, then polls again; returns what `work` returns
    /// (whether it did anything), or `false` without running it while a caller of
    /// [`split_in_place`] counts on the helper.
    fn off_polling(&self, work: impl FnOnce() -> bool) -> bool {
        if !self.stop_polling() {
            return false;
        }
        let did = work();
        self.polling.store(true, Ordering::SeqCst);
        did
    }

    fn run(&self) {
        loop {
            // awake: poll the mailbox until SPIN_AFTER_JOB passes without a job
            self.polling.store(true, Ordering::SeqCst);
            let mut idle_since = Instant::now();
            let mut spin = Spin::default();
            loop {
                if self.scoped.load(Ordering::Acquire) > 0 {
                    // a caller's scoped block is on its way, or here
                    if rayon::yield_now() == Some(rayon::Yield::Executed) {
                        idle_since = Instant::now();
                    } else {
                        spin.keep_going(idle_since, Duration::MAX);
                    }
                    continue;
                }
                if self.has_job.load(Ordering::Acquire) {
                    if self.off_polling(|| self.take().map(|job| job()).is_some()) {
                        idle_since = Instant::now();
                    }
                    continue;
                }
                if self.has_chore.load(Ordering::Acquire) {
                    let ran = self.off_polling(|| match self.take_chore() {
                        Some(chore) => {
                            // its products stay here: the helper has no one to split with
                            crate::threads::single_threaded(|| chore.run());
                            self.in_chore.store(false, Ordering::Release);
                            true
                        }
                        None => false,
                    });
                    if ran {
                        idle_since = Instant::now();
                    }
                    continue;
                }
                if !spin.keep_going(idle_since, SPIN_AFTER_JOB) {
                    if self.stop_polling() {
                        break;
                    }
                    idle_since = Instant::now();
                }
            }
            // asleep until a job arrives (the loop above takes it)
            let mut slot = self.lock();
            self.asleep.store(true, Ordering::Relaxed);
            while slot.job.is_none() && slot.background.is_empty() {
                slot = self.wake.wait(slot).unwrap_or_else(|p| p.into_inner());
            }
            self.asleep.store(false, Ordering::Relaxed);
        }
    }

    /// Wakes the helper if it sleeps; called with the mailbox lock released.
    fn nudge(&self, asleep: bool) {
        if asleep {
            self.wake.notify_one();
        }
    }
}

/// Sets its flag when dropped, also when a panic unwinds through it.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Runs `first` here and `second` on the helper at the same time, both free to borrow the
/// caller's data (`second` reaches the helper as a job of its rayon pool's scope, so a block
/// can write straight into its part of the caller's buffer). Only while the helper polls for
/// work; otherwise, or on the helper itself, both are handed back unrun.
pub(crate) fn split_in_place<A, B>(first: A, second: B) -> Result<(), (A, B)>
where
    A: FnOnce(),
    B: FnOnce() + Send,
{
    let Some(h) = for_others() else {
        return Err((first, second));
    };
    let _announced = Announced::new(&h.scoped);
    if !h.polling.load(Ordering::SeqCst) {
        return Err((first, second));
    }
    let done = AtomicBool::new(false);
    h.pool.in_place_scope(|s| {
        s.spawn(|_| {
            let _done = SetOnDrop(&done);
            second();
        });
        first();
        // the helper polls until `scoped` drops, so it takes the block soon
        let (start, mut spin) = (Instant::now(), Spin::default());
        while !done.load(Ordering::Acquire) {
            spin.keep_going(start, Duration::MAX);
        }
        // the scope's own count drops right after `done` is set: give it a moment, so
        // that the scope's end finds it down instead of blocking until it is woken
        for _ in 0..8 {
            std::hint::spin_loop();
        }
    });
    Ok(())
}

/// One caller of [`split_in_place`] counted in the helper's `scoped` while it lives (also
/// when a block's panic unwinds through it, so the helper is not left polling for good).
struct Announced<'a>(&'a AtomicUsize);

impl<'a> Announced<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Announced(count)
    }
}

impl Drop for Announced<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether the helper is running a background job: then it holds one of the cores, and a
/// pool worker asked to share other work would wait for a core (see
/// [`map_claimed`](crate::threads::map_claimed)).
pub(crate) fn in_chore() -> bool {
    HELPER
        .get()
        .copied()
        .flatten()
        .is_some_and(|h| h.in_chore.load(Ordering::Acquire))
}

/// The result of a job sent to the helper.
pub(crate) struct Pending<T> {
    state: Arc<Done<T>>,
    /// The mailbox's number for the job (see [`Mailbox::sent`]).
    number: u64,
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
/// when the helper is busy (a block already waits, or it runs a background job), unavailable,
/// or when called on the helper itself (the caller then runs `f` itself).
pub(crate) fn spawn<T, F>(f: F) -> Result<Pending<T>, F>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let Some(h) = for_others() else {
        return Err(f);
    };
    let mut slot = h.lock();
    if slot.job.is_some() || h.in_chore.load(Ordering::Acquire) {
        return Err(f);
    }
    let state = Arc::new(Done {
        value: Mutex::new(None),
        ready: AtomicBool::new(false),
        waiting: AtomicBool::new(false),
        cv: Condvar::new(),
    });
    let done = state.clone();
    slot.job = Some(Box::new(move || {
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
    slot.sent += 1;
    let number = slot.sent;
    h.has_job.store(true, Ordering::Release);
    let asleep = h.asleep.load(Ordering::Relaxed);
    drop(slot);
    h.nudge(asleep);
    Ok(Pending { state, number })
}

impl<T> Pending<T> {
    /// Waits for the result: spinning briefly (the helper is usually awake), then blocking. A
    /// job the helper has not taken yet (it is asleep, or off the CPU) is taken back and run
    /// here instead. A panic in the job resumes here.
    pub(crate) fn wait(self) -> T {
        let d = &*self.state;
        // `has_job` is cleared (under the lock) whenever a block is taken, so while it is
        // clear this block is gone from the mailbox and there is no lock to take
        let waiting =
            |h: &&Helper| !d.ready.load(Ordering::Acquire) && h.has_job.load(Ordering::Acquire);
        let mine = |slot: &Mailbox| slot.sent == self.number && slot.job.is_some();
        if let Some(job) = helper().filter(waiting).and_then(|h| h.take_if(mine)) {
            job();
        }
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

/// A background job as the helper's queue holds it.
trait Chore: Send + Sync {
    /// Runs the job unless the caller has taken it back.
    fn run(&self);
}

type BoxedJob<T> = Box<dyn FnOnce() -> T + Send + 'static>;

/// Where a background job is: waiting (with its closure), running, or finished.
enum Stage<T> {
    Queued(BoxedJob<T>),
    Running,
    Finished(std::thread::Result<T>),
    /// Taken by the thread that joins it (run there, or its result taken), or dropped before
    /// it ran.
    Gone,
}

/// A background job and its result, shared by the queue and the [`Background`] handle.
struct Task<T> {
    stage: Mutex<Stage<T>>,
    finished: Condvar,
}

impl<T> Task<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Stage<T>> {
        self.stage.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<T: Send> Chore for Task<T> {
    fn run(&self) {
        let job = {
            let mut stage = self.lock();
            match std::mem::replace(&mut *stage, Stage::Running) {
                Stage::Queued(job) => job,
                other => {
                    *stage = other;
                    return;
                }
            }
        };
        // a panic is carried back to whoever joins (and the helper lives on)
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        *self.lock() = Stage::Finished(result);
        self.finished.notify_all();
    }
}

/// The handle of a job queued with [`background`].
pub(crate) struct Background<T> {
    task: Arc<Task<T>>,
}

/// Queues `f` for the helper's spare time: it runs when no split block waits, before the
/// blocks sent after it start (a split block sent meanwhile is handed back to its caller). With
/// no helper, or called on the helper, it is only queued here: [`Background::join`] then runs
/// it on the joining thread. Whichever thread runs `f`, it is the same computation.
pub(crate) fn background<T, F>(f: F) -> Background<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let job = Background::queued(f);
    let task = job.task.clone();
    if let Some(h) = for_others() {
        let mut slot = h.lock();
        slot.background.push_back(task.clone());
        h.has_chore.store(true, Ordering::Release);
        let asleep = h.asleep.load(Ordering::Relaxed);
        drop(slot);
        h.nudge(asleep);
    }
    job
}

impl<T> Background<T> {
    /// A job not yet in the helper's queue: [`join`](Self::join) runs it if nothing else does.
    fn queued<F>(f: F) -> Self
    where
        F: FnOnce() -> T + Send + 'static,
    {
        Background {
            task: Arc::new(Task {
                stage: Mutex::new(Stage::Queued(Box::new(f))),
                finished: Condvar::new(),
            }),
        }
    }

    /// Takes the job back if nobody has started it (it will not run), so the caller can do
    /// its work another way; `false` if it is running or done (then [`join`](Self::join)).
    /// Once it returns `true`, the handle is only dropped.
    pub(crate) fn cancel(&self) -> bool {
        let mut stage = self.task.lock();
        if matches!(*stage, Stage::Queued(_)) {
            *stage = Stage::Gone;
            true
        } else {
            false
        }
    }

    /// The job's result: taken back and run here if the helper has not started it, else
    /// waited for. A panic in the job resumes here.
    pub(crate) fn join(self) -> T {
        let mut stage = self.task.lock();
        while matches!(*stage, Stage::Running) {
            stage = self
                .task
                .finished
                .wait(stage)
                .unwrap_or_else(|p| p.into_inner());
        }
        match std::mem::replace(&mut *stage, Stage::Gone) {
            Stage::Queued(job) => {
                drop(stage);
                job()
            }
            Stage::Finished(Ok(t)) => t,
            Stage::Finished(Err(panic)) => std::panic::resume_unwind(panic),
            Stage::Running | Stage::Gone => unreachable!("a background job is joined once"),
        }
    }
}

impl<T> Drop for Background<T> {
    /// A job dropped before it ran is not run.
    fn drop(&mut self) {
        let mut stage = self.task.lock();
        if matches!(*stage, Stage::Queued(_)) {
            *stage = Stage::Gone;
        }
    }
}

/// For the lib tests: wakes the helper with a job, then runs `attempt` (which hands it a block
/// in place and says whether it was taken), again until it is: the calling thread may be
/// descheduled for longer than the helper polls. Panics after five seconds.
#[cfg(test)]
pub(crate) fn until_taken(mut attempt: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if let Ok(p) = spawn(|| ()) {
            p.wait();
        }
        if attempt() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the helper never took a block in place"
        );
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
    fn jobs_run_on_the_helper_a_busy_helper_hands_them_back_and_a_waiting_caller_takes_them_back() {
        let _alone = TEST_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let me = std::thread::current().id();
        // a job sent to a free helper runs there (waited for once it is done: waiting sooner
        // could take it back)
        let on_helper = || {
            let p = spawn(move || (std::thread::current().id() != me, 6 * 7))
                .unwrap_or_else(|_| panic!("the helper should be free"));
            let start = Instant::now();
            while !p.state.ready.load(Ordering::Acquire) {
                assert!(
                    start.elapsed() < Duration::from_secs(5),
                    "the helper never ran the job"
                );
                std::thread::yield_now();
            }
            p.wait()
        };
        assert_eq!(on_helper(), (true, 42));
        // after the helper has gone back to sleep, a job still wakes it
        std::thread::sleep(SPIN_AFTER_JOB * 4);
        assert_eq!(on_helper(), (true, 42));

        // hold the helper with a job that waits for a signal (or, should a broken mailbox
        // leave this test waiting for it, five seconds)
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let g = gate.clone();
        let held = spawn(move || {
            let start = Instant::now();
            let mut open = g.0.lock().unwrap();
            while !*open && start.elapsed() < Duration::from_secs(5) {
                open = g.1.wait_timeout(open, Duration::from_millis(50)).unwrap().0;
            }
        })
        .unwrap_or_else(|_| panic!("the helper should be free"));
        // once the helper has taken that job, its mailbox takes one more...
        let start = Instant::now();
        let queued = loop {
            if let Ok(p) = spawn(move || (std::thread::current().id() == me, 2)) {
                break p;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the helper never took the job"
            );
        };
        // ...and hands a third back
        assert_eq!(spawn(|| 3).err().map(|f| f()), Some(3));
        // the helper is still held, so waiting for the queued job runs it here at once
        let waited = Instant::now();
        assert_eq!(queued.wait(), (true, 2), "the queued job ran on the helper");
        assert!(waited.elapsed() < Duration::from_secs(1));
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        held.wait();
    }

    /// Waits until `started` is set (five seconds at most).
    fn until_started(started: &AtomicBool) {
        let start = Instant::now();
        while !started.load(Ordering::Acquire) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the helper never started the job"
            );
            std::thread::yield_now();
        }
    }

    /// A gate a background job waits behind until [`open`] opens it.
    type Gate = Arc<(Mutex<bool>, Condvar)>;

    /// A background job that holds the helper until `gate` opens, then returns `value`;
    /// returned once the helper runs it.
    fn holding<T: Send + 'static>(value: T) -> (Background<T>, Gate) {
        let gate: Gate = Arc::new((Mutex::new(false), Condvar::new()));
        let started = Arc::new(AtomicBool::new(false));
        let (g, s) = (gate.clone(), started.clone());
        let held = background(move || {
            s.store(true, Ordering::Release);
            let mut open = g.0.lock().unwrap();
            while !*open {
                open = g.1.wait(open).unwrap();
            }
            value
        });
        until_started(&started);
        (held, gate)
    }

    fn open(gate: &Gate) {
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
    }

    /// One test for the background queue, under the same lock as the mailbox test.
    #[test]
    fn background_jobs_run_in_the_helpers_spare_time_or_on_the_joining_thread() {
        let _alone = TEST_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let me = std::thread::current().id();
        // a free helper runs a background job (joined once started, so not taken back)
        let started = Arc::new(AtomicBool::new(false));
        let s = started.clone();
        let job = background(move || {
            s.store(true, Ordering::Release);
            std::thread::current().id() != me
        });
        until_started(&started);
        assert!(job.join(), "the helper should have run the job");

        // while it runs one, split blocks are handed back to their callers
        let (held, gate) = holding(7);
        assert_eq!(spawn(|| 3).err().map(|f| f()), Some(3));

        // meanwhile a row-wise kernel stays on this thread: a pool worker would wait for the
        // helper's core
        assert!(in_chore());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let (caller, on) = pool.install(|| {
            let on = crate::threads::map_claimed((0..8).collect(), |_: i32| {
                std::thread::sleep(Duration::from_millis(1));
                std::thread::current().id()
            });
            (std::thread::current().id(), on)
        });
        assert!(
            on.iter().all(|&t| t == caller),
            "items ran on another worker"
        );

        // a job taken back before it starts never runs; the caller does the work its own way
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let taken = background(move || r.store(true, Ordering::Release));
        assert!(taken.cancel());
        drop(taken);

        // a job queued behind it is run by the thread that joins it, and a dropped one never runs
        let queued = background(move || std::thread::current().id() == me);
        let r = ran.clone();
        drop(background(move || r.store(true, Ordering::Release)));
        assert!(
            queued.join(),
            "the joining thread should have run the queued job"
        );
        open(&gate);
        assert_eq!(held.join(), 7);
        // the helper goes through the rest of its queue: the dropped job is skipped
        let last = background(|| 1);
        assert_eq!(last.join(), 1);
        assert!(
            !ran.load(Ordering::Acquire),
            "a dropped or taken-back job ran"
        );
        // a running or finished job cannot be taken back
        let done = background(|| 2);
        let start = Instant::now();
        while !matches!(*done.task.lock(), Stage::Finished(_)) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the helper never ran the job"
            );
            std::thread::yield_now();
        }
        assert!(!done.cancel());
        assert_eq!(done.join(), 2);

        // a panic in a background job resumes in the thread that joins it
        let boom = background(|| -> u8 { panic!("boom") });
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| boom.join()));
        assert!(caught.is_err());
        assert_eq!(
            background(|| 5).join(),
            5,
            "the helper lives on after a panic"
        );
    }

    /// Hands the helper `second` beside `first` while it polls, until it takes them.
    fn in_place_on_a_polling_helper(mut first: impl FnMut(), mut second: impl FnMut() + Send) {
        until_taken(|| split_in_place(&mut first, &mut second).is_ok());
    }

    /// Under the same lock as the tests above.
    #[test]
    fn blocks_that_borrow_run_on_a_polling_helper_and_come_back_when_it_is_busy() {
        let _alone = TEST_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let me = std::thread::current().id();
        // each side writes its half of one buffer in place, the second on the helper
        let mut data = [0u32; 8];
        let mut second_on = None;
        {
            let (lo, hi) = data.split_at_mut(4);
            in_place_on_a_polling_helper(
                || lo.fill(1),
                || {
                    hi.fill(2);
                    second_on = Some(std::thread::current().id());
                },
            );
        }
        assert_eq!(data, [1, 1, 1, 1, 2, 2, 2, 2]);
        assert!(
            second_on.is_some_and(|t| t != me),
            "the second block ran here"
        );

        // a panic in the helper's block resumes here, and the helper takes blocks afterwards
        until_taken(|| {
            let tried =
                std::panic::catch_unwind(|| split_in_place(|| (), || panic!("boom")).is_ok());
            match tried {
                Err(_) => true,
                Ok(ran) => {
                    assert!(!ran, "a panicking block returned");
                    false
                }
            }
        });
        let mut after = 0;
        in_place_on_a_polling_helper(|| (), || after += 1);
        assert_eq!(after, 1, "the helper lives on after a panic");

        // an asleep helper hands both back at once (unrun), and so does a busy one (other
        // tests in this binary may keep the helper awake for a while: hence the long limit)
        let ran = AtomicBool::new(false);
        let start = Instant::now();
        loop {
            std::thread::sleep(SPIN_AFTER_JOB * 4);
            if split_in_place(|| (), || ran.store(true, Ordering::Release)).is_err() {
                break;
            }
            ran.store(false, Ordering::Release); // it was awake and ran the block
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the helper never slept"
            );
        }
        let (held, gate) = holding(());
        let asked = Instant::now();
        let back = split_in_place(|| (), || ran.store(true, Ordering::Release));
        assert!(back.is_err() && asked.elapsed() < Duration::from_secs(1));
        open(&gate);
        held.join();
        assert!(!ran.load(Ordering::Acquire), "a block handed back ran");
        // leave the helper free for the next test (it clears the flag after the job's end)
        let start = Instant::now();
        while in_chore() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the job never ended"
            );
            std::thread::yield_now();
        }
    }
}
