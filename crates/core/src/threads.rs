//! The thread pool that large matrix products run on.
//!
//! retrograd splits a big GEMM into one block per thread of the global [rayon] pool (products
//! under about two million multiply-adds stay on the calling thread). By default the pool has
//! one thread per logical CPU; `RAYON_NUM_THREADS` or [`set_num_threads`] change that, like
//! `torch.set_num_threads`.

use crate::error::{Error, Result};

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
