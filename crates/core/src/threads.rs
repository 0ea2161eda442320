//! The thread pool that large matrix products run on.
//!
//! retrograd splits a big GEMM into one block per thread of the global [rayon] pool (products
//! under about two million multiply-adds stay on the calling thread). Large row-wise ops
//! (cross-entropy from 64k elements) are split by rows the same way. By default the pool has
//! one thread per logical CPU; `RAYON_NUM_THREADS` or [`set_num_threads`] change that, like
//! `torch.set_num_threads`.
//!
//! With a two-thread pool (the default on a two-core machine), the second block goes to a
//! helper thread that stays awake between products (`helper.rs`) rather than to a rayon worker,
//! which sleeps between them; one-row products from 64k multiply-adds (batch-1 sampling) are
//! split with that helper too. With one thread in the pool everything stays on the caller.
//!
//! [`join`] runs two independent pieces of graph building at once (the two directions of a
//! bidirectional recurrent layer): the second on the pool, with the caller's grad and anomaly
//! modes, and products inside either piece stay on their own thread.

use std::cell::Cell;

use crate::error::{Error, Result};

thread_local! {
    /// Set while this thread runs one side of a [`join`]: its products stay single-threaded.
    static IN_JOIN: Cell<bool> = const { Cell::new(false) };
}

/// The number of threads a product issued on this thread may use: the pool's size, or 1
/// inside a [`join`].
pub(crate) fn product_threads() -> usize {
    if IN_JOIN.with(|j| j.get()) {
        1
    } else {
        rayon::current_num_threads()
    }
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
/// single-threaded (the two sides already use the cores). With a one-thread pool, or when
/// already inside a join, `a` then `b` run here.
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
    if rayon::current_num_threads() < 2 || IN_JOIN.with(|j| j.get()) {
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

/// Fix the number of threads large products use. Call it once, before the first product;
/// `n = 1` runs everything on the calling thread.
///
/// Fails if `n` is 0 or the pool has already started (the first large product starts it).
///
/// ```
/// let _ = retrograd_core::set_num_threads(2); // Err if the pool is already running
/// assert!(retrograd_core::num_threads() >= 1);
/// assert!(retrograd_core::set_num_threads(0).is_err());
/// ```
pub fn set_num_threads(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::invalid(
            "set_num_threads",
            "the thread count must be at least 1",
        ));
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .map_err(|e| {
            Error::invalid(
                "set_num_threads",
                format!("the thread pool is already running ({e})"),
            )
        })
}

/// The number of threads large products are split over.
///
/// ```
/// assert!(retrograd_core::num_threads() >= 1);
/// ```
pub fn num_threads() -> usize {
    rayon::current_num_threads()
}
