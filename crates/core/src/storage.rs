//! Tensor storage, and the process-wide cache that recycles it.
//!
//! A training step allocates the same buffers every time: activations saved for backward,
//! gate blocks, gradients. Freed at the end of the step, they go back to the allocator, which
//! may return the pages to the OS; the next step faults them in again and the kernel zeroes
//! every page (`clear_page` was 18% of a B4 profile in steady state). So when the last handle
//! to a [`Storage`] of [`MIN_CACHED_BYTES`] to [`MAX_BUFFER_BYTES`] drops, its `Vec` goes into
//! a cache keyed by capacity, and the next op (on any thread) that needs a buffer of exactly
//! that length takes it back. The cache holds at most [`MAX_CACHED_BYTES`];
//! [`release_cached_buffers`] empties it (like `torch.cuda.empty_cache`). It is one cache for
//! the process, behind a mutex, because buffers often die on another thread than the one that
//! made them: the two directions of a bidirectional layer are built on two threads and the
//! graph is dropped on one.
//!
//! The cache never changes values: a recycled buffer is always fully overwritten or zeroed
//! before an op returns it.

use std::any::Any;
use std::ops::{Deref, DerefMut};
use std::sync::{LazyLock, Mutex};

use rustc_hash::FxHashMap as HashMap;

use crate::element::{DType, Element};
use crate::panel::{PanelCache, Read};
use crate::twin::Twin;

/// Buffers smaller than this are left to the allocator (which is fast for them).
pub const MIN_CACHED_BYTES: usize = 4096;

/// Buffers larger than this are left to the allocator too (B2's largest, its 16 MB logits and
/// their gradient, are cached: that measured faster and with a lower peak RSS than not).
pub const MAX_BUFFER_BYTES: usize = 64 << 20;

/// The most the cache holds; a buffer freed beyond it goes back to the allocator.
pub const MAX_CACHED_BYTES: usize = 256 << 20;

/// The elements behind one or more tensors (shared through an `Arc`; views share it too).
///
/// It derefs to a slice. Custom ops build one from a `Vec` and pass
/// `Arc::new(Storage::from(data))` to [`Tensor::from_op`](crate::Tensor::from_op).
///
/// ```
/// use retrograd_core::storage::Storage;
/// let s = Storage::from(vec![1.0f32, 2.0]);
/// assert_eq!(&s[..], &[1.0, 2.0]);
/// assert_eq!(s.into_vec(), vec![1.0, 2.0]);
/// ```
#[derive(Debug)]
pub struct Storage<E: Element> {
    data: Vec<E>,
    /// A transposed copy for products that read this storage as `w.t()` again and again;
    /// dropped whenever the elements are borrowed mutably.
    twin: Twin<E>,
    /// Packed copies for products that read this storage as their right-hand side again and
    /// again (see [`crate::panel`]); dropped with the transposed copy.
    panels: PanelCache<E>,
}

impl<E: Element> Storage<E> {
    /// The elements as a `Vec` (moved out, not copied).
    pub fn into_vec(mut self) -> Vec<E> {
        self.take_vec()
    }

    /// The elements as a `Vec` (moved out, not copied), leaving this storage empty and its
    /// derived copies dropped; for a storage about to be dropped ([`Tensor::into_vec`]).
    ///
    /// [`Tensor::into_vec`]: crate::Tensor::into_vec
    pub(crate) fn take_vec(&mut self) -> Vec<E> {
        self.forget_copies();
        std::mem::take(&mut self.data)
    }

    /// The `[cols, rows]` row-major transpose of these elements read as a row-major
    /// `[rows, cols]` matrix, from the second request on (see [`crate::twin`]).
    pub(crate) fn transposed(&self, rows: usize, cols: usize) -> Option<&[E]> {
        self.twin.transposed(&self.data, rows, cols)
    }

    /// These elements packed in panels for a `k x n` right-hand side read the way `read` says,
    /// from the second request on (see [`crate::panel`]).
    pub(crate) fn panels(&self, read: Read, kn: (usize, usize)) -> Option<&[E]> {
        self.panels.panels(&self.data, read, kn)
    }

    #[cfg(test)]
    pub(crate) fn panel_cache(&self) -> &PanelCache<E> {
        &self.panels
    }

    /// Drops the derived copies (transposed, packed), their buffers going back to the cache.
    fn forget_copies(&mut self) {
        if let Some(old) = self.twin.clear() {
            give(old);
        }
        self.panels.clear(give);
    }
}

impl<E: Element> From<Vec<E>> for Storage<E> {
    fn from(data: Vec<E>) -> Self {
        Storage {
            data,
            twin: Twin::default(),
            panels: PanelCache::default(),
        }
    }
}

impl<E: Element> FromIterator<E> for Storage<E> {
    fn from_iter<I: IntoIterator<Item = E>>(iter: I) -> Self {
        Storage::from(iter.into_iter().collect::<Vec<E>>())
    }
}

impl<E: Element> Deref for Storage<E> {
    type Target = [E];
    fn deref(&self) -> &[E] {
        &self.data
    }
}

impl<E: Element> DerefMut for Storage<E> {
    fn deref_mut(&mut self) -> &mut [E] {
        self.forget_copies();
        &mut self.data
    }
}

impl<E: Element> Clone for Storage<E> {
    fn clone(&self) -> Self {
        let mut v = take(self.data.len());
        v.extend_from_slice(&self.data);
        Storage::from(v)
    }
}

impl<E: Element> Drop for Storage<E> {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.data));
        self.forget_copies();
    }
}

/// The free buffers of one capacity, and when that capacity was last taken or given.
struct Class<E> {
    used: u64,
    bufs: Vec<Vec<E>>,
}

/// Free buffers by capacity, their total size in bytes, and a use counter.
struct Cache<E> {
    free: HashMap<usize, Class<E>>,
    /// Free buffers whose every element is zero (length = capacity), at most [`MAX_ZEROED`].
    zeroed: Vec<Vec<E>>,
    bytes: usize,
    tick: u64,
}

/// How many all-zero buffers the cache keeps (one per row-sparse gradient of a model).
const MAX_ZEROED: usize = 4;

impl<E> Default for Cache<E> {
    fn default() -> Self {
        Cache {
            free: HashMap::default(),
            zeroed: Vec::new(),
            bytes: 0,
            tick: 0,
        }
    }
}

impl<E> Cache<E> {
    /// A free buffer of capacity `len`, if there is one (its old length and values intact).
    fn take(&mut self, len: usize) -> Option<Vec<E>> {
        self.tick += 1;
        let class = self.free.get_mut(&len)?;
        class.used = self.tick;
        let v = class.bufs.pop()?;
        self.bytes -= len * std::mem::size_of::<E>();
        Some(v)
    }

    /// An all-zero free buffer of length `len`, if there is one.
    fn take_zeroed(&mut self, len: usize) -> Option<Vec<E>> {
        let i = self.zeroed.iter().position(|v| v.len() == len)?;
        self.bytes -= len * std::mem::size_of::<E>();
        Some(self.zeroed.swap_remove(i))
    }

    /// Keeps `v`, all zeros, to be handed out by [`take_zeroed`](Self::take_zeroed) while
    /// there is room among the zeroed buffers and in the cache; else as any free buffer.
    fn give_zeroed(&mut self, v: Vec<E>) {
        let bytes = v.len() * std::mem::size_of::<E>();
        if v.len() == v.capacity()
            && self.zeroed.len() < MAX_ZEROED
            && self.bytes + bytes <= MAX_CACHED_BYTES
        {
            self.bytes += bytes;
            self.zeroed.push(v);
        } else {
            self.give(v);
        }
    }

    /// Keeps `v` if it is of a cached size. When the cache is full, the capacities unused for
    /// longest (other than `v`'s) are dropped to make room: a new workload's sizes replace an
    /// old one's. If only `v`'s own capacity is left, `v` goes back to the allocator.
    fn give(&mut self, v: Vec<E>) {
        let cap = v.capacity();
        if !cacheable::<E>(cap) {
            return;
        }
        let bytes = cap * std::mem::size_of::<E>();
        while self.bytes + bytes > MAX_CACHED_BYTES {
            let oldest = self
                .free
                .iter()
                .filter(|(&c, class)| c != cap && !class.bufs.is_empty())
                .min_by_key(|(_, class)| class.used)
                .map(|(&c, _)| c);
            let Some(old) = oldest else {
                return;
            };
            if let Some(class) = self.free.remove(&old) {
                self.bytes -= class.bufs.len() * old * std::mem::size_of::<E>();
            }
        }
        self.tick += 1;
        let class = self.free.entry(cap).or_insert_with(|| Class {
            used: 0,
            bufs: Vec::new(),
        });
        class.used = self.tick;
        class.bufs.push(v);
        self.bytes += bytes;
    }
}

#[derive(Default)]
struct Caches {
    f32: Cache<f32>,
    f64: Cache<f64>,
}

static CACHES: LazyLock<Mutex<Caches>> = LazyLock::new(|| Mutex::new(Caches::default()));

/// Runs `f` on the cache for `E`.
fn with_cache<E: Element, R>(f: impl FnOnce(&mut Cache<E>) -> R) -> Option<R> {
    let mut c = CACHES.lock().unwrap_or_else(|p| p.into_inner());
    let c = &mut *c;
    let any: &mut dyn Any = match E::DTYPE {
        DType::F32 => &mut c.f32,
        DType::F64 => &mut c.f64,
    };
    any.downcast_mut::<Cache<E>>().map(f)
}

fn cacheable<E>(len: usize) -> bool {
    let bytes = len.saturating_mul(std::mem::size_of::<E>());
    (MIN_CACHED_BYTES..=MAX_BUFFER_BYTES).contains(&bytes)
}

/// A free cached buffer of capacity `len`, if `len` is a cached size and one is free.
fn recycled<E: Element>(len: usize) -> Option<Vec<E>> {
    if !cacheable::<E>(len) {
        return None;
    }
    with_cache::<E, _>(|c| c.take(len)).flatten()
}

/// An empty `Vec` with room for `len` elements, recycled from the cache when one of exactly
/// that capacity is free. Callers fill it completely (`extend`, `resize`).
pub(crate) fn take<E: Element>(len: usize) -> Vec<E> {
    match recycled(len) {
        Some(mut v) => {
            v.clear();
            v
        }
        None => Vec::with_capacity(len),
    }
}

/// A buffer of `len` elements with unspecified (but initialized) values, for callers that
/// overwrite every element (a GEMM output with `beta = 0`): a recycled buffer is handed over
/// as it is, with no zeroing.
pub(crate) fn overwritable<E: Element>(len: usize) -> Vec<E> {
    match recycled(len) {
        Some(v) if v.len() == len => v,
        _ => vec![E::zero(); len],
    }
}

/// `len` zeros: a buffer handed back all zero ([`give_zeroed`]) as it is, else a recycled
/// buffer when one is free, zero-filled.
pub(crate) fn zeros<E: Element>(len: usize) -> Vec<E> {
    if cacheable::<E>(len) {
        if let Some(v) = with_cache::<E, _>(|c| c.take_zeroed(len)).flatten() {
            return v;
        }
    }
    let mut v = take(len);
    v.resize(len, E::zero());
    v
}

/// Hands back a buffer whose every element is zero, so that [`zeros`] can hand it out without
/// filling it again (a row-sparse gradient with its few rows zeroed, see
/// [`GradStore`](crate::GradStore)). The caller guarantees the zeros.
pub(crate) fn give_zeroed<E: Element>(v: Vec<E>) {
    debug_assert!(v.iter().all(|x| *x == E::zero()));
    if cacheable::<E>(v.capacity()) {
        with_cache::<E, _>(move |c| c.give_zeroed(v));
    }
}

/// Hands a buffer back to the cache (or to the allocator when it is small, huge, or the cache
/// is full). [`Storage`] does this on drop; scratch buffers call it directly.
pub(crate) fn give<E: Element>(v: Vec<E>) {
    if cacheable::<E>(v.capacity()) {
        with_cache::<E, _>(move |c| c.give(v));
    }
}

/// Returns every buffer in the cache to the allocator; the result is how many bytes that was.
///
/// ```
/// use retrograd_core::storage::{cached_bytes, release_cached_buffers};
/// drop(retrograd_core::Tensor::<f32>::zeros(&[64, 64])); // 16 KiB: kept for reuse
/// assert_eq!(cached_bytes(), 16384);
/// assert_eq!(release_cached_buffers(), 16384);
/// assert_eq!(cached_bytes(), 0);
/// ```
pub fn release_cached_buffers() -> usize {
    let f32 = with_cache::<f32, _>(|c| std::mem::take(c).bytes).unwrap_or(0);
    let f64 = with_cache::<f64, _>(|c| std::mem::take(c).bytes).unwrap_or(0);
    f32 + f64
}

/// Bytes held by the cache.
///
/// ```
/// use retrograd_core::storage::cached_bytes;
/// assert_eq!(cached_bytes(), 0); // nothing freed yet in this program
/// drop(retrograd_core::Tensor::<f64>::zeros(&[1024])); // 8 KiB
/// assert_eq!(cached_bytes(), 8192);
/// ```
pub fn cached_bytes() -> usize {
    with_cache::<f32, _>(|c| c.bytes).unwrap_or(0) + with_cache::<f64, _>(|c| c.bytes).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The process-wide cache is shared with tests running in parallel, so these use lengths
    // no other test allocates, or a local `Cache`.

    #[test]
    fn a_freed_buffer_is_reused_for_its_length_only() {
        let v: Vec<f32> = zeros(2053);
        let p = v.as_ptr();
        drop(Storage::from(v));
        let again: Vec<f32> = take(2053);
        assert_eq!(again.as_ptr(), p);
        assert!(again.is_empty() && again.capacity() >= 2053);
        // a recycled buffer handed out as zeros holds zeros
        let mut dirty = again;
        dirty.resize(2053, 7.0);
        let p = dirty.as_ptr();
        drop(Storage::from(dirty));
        let z = zeros::<f32>(2053);
        assert_eq!(z.as_ptr(), p);
        assert!(z.iter().all(|&v| v == 0.0));
        // overwritable hands over the old values (its callers overwrite them)
        let q = z.as_ptr();
        give(z);
        let o = overwritable::<f32>(2053);
        assert_eq!((o.as_ptr(), o.len()), (q, 2053));
    }

    #[test]
    fn cached_sizes_and_the_bound() {
        assert!(!cacheable::<f32>(16));
        assert!(cacheable::<f32>(MIN_CACHED_BYTES / 4));
        assert!(cacheable::<f64>(MAX_BUFFER_BYTES / 8));
        assert!(!cacheable::<f32>(MAX_BUFFER_BYTES / 4 + 1));
        let mut c = Cache::<f32>::default();
        c.give(vec![0.0; 16]);
        assert_eq!(c.bytes, 0);
        let n = MAX_BUFFER_BYTES / 4; // the largest cached size
        let fit = MAX_CACHED_BYTES / MAX_BUFFER_BYTES;
        for _ in 0..=fit {
            c.give(vec![0.0; n]);
        }
        // `fit` of them filled the cache; the last, of the same size, went to the allocator
        assert_eq!(c.bytes, MAX_CACHED_BYTES);
        assert!(c.take(n).is_some());
        assert_eq!(c.bytes, MAX_CACHED_BYTES - MAX_BUFFER_BYTES);
        assert!(c.take(n + 1).is_none());
    }

    #[test]
    fn a_full_cache_drops_the_sizes_unused_longest() {
        let mut c = Cache::<f32>::default();
        let n = MAX_BUFFER_BYTES / 4;
        let fit = MAX_CACHED_BYTES / MAX_BUFFER_BYTES;
        let small = MIN_CACHED_BYTES / 4;
        c.give(vec![0.0; small]); // the oldest size
        for _ in 0..fit - 1 {
            c.give(vec![0.0; n]);
        }
        assert_eq!(c.bytes, MIN_CACHED_BYTES + (fit - 1) * MAX_BUFFER_BYTES);
        // one more large buffer of another size overflows: the oldest size makes room
        c.give(vec![0.0; n - 1]);
        assert!(c.take(small).is_none(), "the oldest size was dropped");
        assert_eq!(c.bytes, MAX_CACHED_BYTES - 4);
        // the next new size drops the next oldest, the n-sized buffers, and keeps n - 1
        c.give(vec![0.0; n - 2]);
        assert!(c.take(n).is_none(), "the n-sized buffers were dropped");
        assert!(c.take(n - 1).is_some(), "the more recent size stayed");
        assert!(c.take(n - 2).is_some(), "the new size is cached");
        assert_eq!(c.bytes, 0);
    }

    #[test]
    fn cloned_storage_holds_equal_values() {
        let s: Storage<f32> = (0..3000).map(|i| i as f32).collect();
        let t = s.clone();
        assert_eq!(&s[..], &t[..]);
    }
}
