//! The thread pool that large matrix products run on.
//!
//! retrograd splits a big GEMM into one block per thread (products under about two million
//! multiply-adds stay on the calling thread). Large row-wise ops (cross-entropy from 64k
//! elements) are cut into row blocks that the caller and a pool worker take in turn
//! ([`map_claimed`]). The thread count counts the caller, as `torch.set_num_threads` does:
//! with `n` threads the global [rayon] pool has `n - 1` workers, because the calling thread
//! takes its own share of every split. By default `n` is the number of logical CPUs;
//! `RAYON_NUM_THREADS` or [`set_num_threads`] change that. (A pool of `n` workers beside the
//! caller put three busy threads on a two-core machine: B2's mean step was 4-5% slower, from
//! steps where a worker or the helper shared a core.)
//!
//! With two threads (the default on a two-core machine), the second block goes to a
//! helper thread that stays awake between products (`helper.rs`) rather than to a rayon worker,
//! which sleeps between them; one-row products from 64k multiply-adds (batch-1 sampling) are
//! split with that helper too. With one thread everything stays on the caller.
//!
//! [`join`] runs two independent pieces of graph building at once (the two directions of a
//! bidirectional recurrent layer): the second on the pool, with the caller's grad and anomaly
//! modes, and products inside either piece stay on their own thread.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

thread_local! {
    /// Set while this thread runs one side of a [`join`]: its products stay single-threaded.
    static IN_JOIN: Cell<bool> = const { Cell::new(false) };
}

/// The number of threads a product issued on this thread may use: [`pool_threads`], or 1
/// inside a [`join`].
pub(crate) fn product_threads() -> usize {
    if IN_JOIN.with(|j| j.get()) {
        1
    } else {
        pool_threads()
    }
}

/// The thread count the global pool was started with here (by [`set_num_threads`] or by
/// default): this many threads work on a split, the caller and `THREADS - 1` pool workers.
/// 0 until then, and if someone else started the global pool.
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Starts the global pool with the default count on first use, unless it runs already.
static DEFAULT_POOL: Once = Once::new();

/// The threads that share a split issued on this thread: on a pool thread (inside
/// `ThreadPool::install`, say) the pool's size; elsewhere the thread count this module
/// started the global pool with, which counts the caller (or the pool's size, if another
/// library started it).
fn pool_threads() -> usize {
    if rayon::current_thread_index().is_some() {
        return rayon::current_num_threads();
    }
    DEFAULT_POOL.call_once(|| {
        // a pool someone else built first keeps its size (see THREADS)
        let _ = start_pool(default_threads());
    });
    match THREADS.load(Ordering::Acquire) {
        0 => rayon::current_num_threads(),
        n => n,
    }
}

/// `RAYON_NUM_THREADS` when it is a positive number, else the number of logical CPUs.
fn default_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Starts the global pool for `n` threads: `n - 1` workers beside the caller (one idle worker
/// for `n = 1`, as a pool has at least one).
fn start_pool(n: usize) -> std::result::Result<(), rayon::ThreadPoolBuildError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads((n - 1).max(1))
        .build_global()?;
    THREADS.store(n, Ordering::Release);
    Ok(())
}

/// Marks this thread as inside a join until dropped.
struct JoinMark(bool);

impl JoinMark {
    fn set() -> Self {
        JoinMark(IN_JOIN.with(|j| j.replace(true)))
    }
}

impl Drop for JoinMark {
    fn drop(&mut self) {
        IN_JOIN.with(|j| j.set(self.0));
    }
}

/// Runs `f` with the products it issues kept on this thread (as inside a [`join`]).
pub(crate) fn single_threaded<R>(f: impl FnOnce() -> R) -> R {
    let _mark = JoinMark::set();
    f()
}

/// Runs `a` on this thread and `b` on the thread pool at the same time and returns both
/// results, like `rayon::join`, with what the tape needs carried over to `b`: whether grad
/// mode is on ([`no_grad`](crate::no_grad)) and whether anomaly detection is, and a
/// non-finite forward output that `b` records is reported by
/// [`forward_anomaly`](crate::forward_anomaly) on this thread. Products inside `a` and `b` run
/// single-threaded (the two sides already use the cores). With one thread, or when already
/// inside a join, `a` then `b` run here.
///
/// ```
/// use retrograd_core::{no_grad, threads::join, Tensor};
/// let x = Tensor::<f32>::ones(&[2, 2]).requires_grad();
/// let _off = no_grad();
/// let (a, b) = join(|| x.tanh(), || x.exp());
/// assert!(!a.tracks_grad() && !b.tracks_grad()); // no_grad held on both sides
/// ```
pub fn join<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    if product_threads() < 2 {
        let ra = a();
        return (ra, b());
    }
    let grad = crate::tape::is_grad_enabled();
    let anomaly = crate::anomaly::is_anomaly_enabled();
    let mut rb = None;
    let mut b_anomaly = None;
    let ra = rayon::in_place_scope(|s| {
        s.spawn(|_| {
            let _mark = JoinMark::set();
            let _grad = (!grad).then(crate::tape::no_grad);
            let _anomaly = crate::anomaly::detect_anomaly(anomaly);
            rb = Some(b());
            b_anomaly = crate::anomaly::forward_anomaly();
        });
        let _mark = JoinMark::set();
        a()
    });
    if let Some(report) = b_anomaly {
        crate::anomaly::record_forward(report);
    }
    (ra, rb.expect("the spawned side of join ran to completion"))
}

/// How long the caller of [`map_claimed`] spins for a pool worker still inside an item (or
/// not yet awake) before it blocks. Blocking costs a wake-up when the worker ends: on this
/// project's VM a median of 65 µs and a mean of 212 µs for cross-entropy's row blocks.
const CLAIM_SPIN: Duration = Duration::from_millis(2);

/// `f` of every item, in the items' order, computed by this thread and, with two threads or
/// more (and outside a [`join`]), by pool workers at the same time. Each thread
/// takes the next untaken item from a shared counter until none is left, so the caller never
/// sits waiting for a worker that is slow to wake (on this project's VM a sleeping rayon
/// worker started a median of 68 µs and a mean of 318 µs after it was asked, in B2's
/// cross-entropy): it goes on taking items meanwhile. Each item is computed whole by one
/// thread, so the results do not depend on which thread took it or on the thread count.
///
/// For kernels over independent pieces of data (row blocks, parameters) that record no ops:
/// `f` runs with products kept single-threaded, as inside a [`join`]. Put the largest items
/// first: they are taken in order. While the helper thread runs a background job (a weight
/// gradient formed during the backward pass) with two threads, this thread takes every item
/// itself: the worker would only wait for the helper's core.
///
/// ```
/// use retrograd_core::threads::map_claimed;
/// let rows: Vec<Vec<f32>> = vec![vec![1.0, 2.0], vec![3.0], vec![]];
/// let sums = map_claimed(rows, |r| r.iter().sum::<f32>());
/// assert_eq!(sums, vec![3.0, 3.0, 0.0]);
/// ```
pub fn map_claimed<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let n = items.len();
    let threads = product_threads();
    let mut workers = threads.saturating_sub(1).min(n.saturating_sub(1));
    if workers > 0 && threads <= 2 && crate::helper::in_chore() {
        // the helper holds the other core: a worker would only queue behind it
        workers = 0;
    }
    if workers == 0 {
        return items.into_iter().map(f).collect();
    }
    let slots: Vec<Mutex<(Option<T>, Option<R>)>> = items
        .into_iter()
        .map(|t| Mutex::new((Some(t), None)))
        .collect();
    let next = AtomicUsize::new(0);
    let ended = AtomicUsize::new(0);
    let started = AtomicUsize::new(0);
    let take_items = |caller: bool| {
        let _mark = JoinMark::set();
        loop {
            if caller && started.load(Ordering::Relaxed) < workers {
                // a worker not yet running may be queued behind this thread on its core
                // (B2's cross-entropy backward: it started 0.4-0.8 ms late on average)
                std::thread::yield_now();
            }
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = slots.get(i) else { break };
            let item = lock(slot).0.take();
            if let Some(item) = item {
                let r = f(item);
                lock(slot).1 = Some(r);
            }
        }
    };
    rayon::in_place_scope(|s| {
        for _ in 0..workers {
            s.spawn(|_| {
                started.fetch_add(1, Ordering::Relaxed);
                take_items(false);
                ended.fetch_add(1, Ordering::Release);
            });
        }
        take_items(true);
        // wait for workers still inside an item here, so the scope's end finds them done
        // instead of putting this thread to sleep until they wake it; a pool thread leaves
        // that to the scope, which runs a job nobody took itself
        let start = Instant::now();
        let mut polls = 0u32;
        let on_pool = rayon::current_thread_index().is_some();
        while !on_pool && ended.load(Ordering::Acquire) < workers {
            std::hint::spin_loop();
            polls = polls.wrapping_add(1);
            if polls.is_multiple_of(64) {
                if start.elapsed() > CLAIM_SPIN {
                    break;
                }
                // the worker may be waiting for this very core
                std::thread::yield_now();
            }
        }
    });
    slots
        .into_iter()
        .map(|slot| {
            let (_, r) = slot.into_inner().unwrap_or_else(|e| e.into_inner());
            r.expect("every item was taken and computed before the scope ended")
        })
        .collect()
}

/// Below this much work in all, [`map_by_size`] runs its items on the calling thread.
const SHARE_MIN: usize = 1 << 16;

/// `f` of every item, in the items' order, where `size` says how much work an item is
/// (elements, say). When the sizes add up to 64k or more and there are several items, they
/// go through [`map_claimed`] largest first, so that the last ones taken are small and neither
/// thread waits long for the other; else they run on this thread (sharing them would cost
/// more than it saves). Per-parameter work of the optimizers and of clipping goes this way.
///
/// ```
/// use retrograd_core::threads::map_by_size;
/// let rows: Vec<Vec<f32>> = vec![vec![1.0; 3], vec![2.0; 70_000], vec![]];
/// let sums = map_by_size(rows, |r| r.len(), |r| r.iter().sum::<f32>());
/// assert_eq!(sums, vec![3.0, 140_000.0, 0.0]);
/// ```
pub fn map_by_size<T: Send, R: Send>(
    items: Vec<T>,
    size: impl Fn(&T) -> usize,
    f: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    let total: usize = items.iter().map(&size).sum();
    if total < SHARE_MIN || items.len() < 2 {
        return items.into_iter().map(f).collect();
    }
    let mut order: Vec<(usize, T)> = items.into_iter().enumerate().collect();
    order.sort_by_key(|(_, item)| std::cmp::Reverse(size(item)));
    let mut done = map_claimed(order, |(i, item)| (i, f(item)));
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// Locks `m`, poisoned or not: a slot of [`map_claimed`] (a panic in `f` is re-raised by the
/// scope, not here), or a sum that background jobs add into (a panicked job is reported by its
/// own join).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fix the number of threads large products use, the calling thread included (like
/// `torch.set_num_threads`): the global rayon pool gets `n - 1` workers. Call it once, before
/// the first product; `n = 1` runs everything on the calling thread.
///
/// Fails if `n` is 0 or the pool has already started (the first large product starts it).
///
/// ```
/// retrograd_core::set_num_threads(2)?; // this thread and one pool worker
/// assert_eq!(retrograd_core::num_threads(), 2);
/// assert_eq!(rayon::current_num_threads(), 1);
/// assert!(retrograd_core::set_num_threads(3).is_err()); // the pool runs already
/// assert!(retrograd_core::set_num_threads(0).is_err());
/// # Ok::<(), retrograd_core::Error>(())
/// ```
pub fn set_num_threads(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::invalid(
            "set_num_threads",
            "the thread count must be at least 1",
        ));
    }
    start_pool(n).map_err(|e| {
        Error::invalid(
            "set_num_threads",
            format!("the thread pool is already running ({e})"),
        )
    })
}

/// The number of threads large products issued on this thread are split over, this thread
/// included. On first use it starts the pool with the default count (`RAYON_NUM_THREADS`, or
/// one thread per logical CPU).
///
/// ```
/// assert!(retrograd_core::num_threads() >= 1);
/// ```
pub fn num_threads() -> usize {
    pool_threads()
}
