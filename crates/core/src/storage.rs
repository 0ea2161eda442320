//! Tensor storage, and the per-thread cache that recycles it.
//!
//! A training step allocates the same buffers every time: activations saved for backward,
//! gate blocks, gradients. Freed at the end of the step, they go back to the allocator, which
//! may return the pages to the OS; the next step faults them in again and the kernel zeroes
//! every page (`clear_page` was 18% of a B4 profile in steady state). So when the last handle
//! to a [`Storage`] of [`MIN_CACHED_BYTES`] to [`MAX_BUFFER_BYTES`] drops, its `Vec` goes into
//! a cache on that thread, keyed by capacity, and the next op that needs a buffer of exactly
//! that length takes it back. The cache holds at most [`MAX_CACHED_BYTES`] per thread;
//! [`release_cached_buffers`] empties it (like `torch.cuda.empty_cache`).
//!
//! The cache never changes values: a recycled buffer is always fully overwritten or zeroed
//! before an op returns it.

use std::any::Any;
use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

use rustc_hash::FxHashMap as HashMap;

use crate::element::{DType, Element};

/// Buffers smaller than this are left to the allocator (which is fast for them).
pub const MIN_CACHED_BYTES: usize = 4096;

/// Buffers larger than this are left to the allocator too (B2's largest, its 16 MB logits and
/// their gradient, are cached: that measured faster and with a lower peak RSS than not).
pub const MAX_BUFFER_BYTES: usize = 64 << 20;

/// The most a thread's cache holds; a buffer freed beyond it goes back to the allocator.
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
pub struct Storage<E: Element>(Vec<E>);

impl<E: Element> Storage<E> {
    /// The elements as a `Vec` (moved out, not copied).
    pub fn into_vec(mut self) -> Vec<E> {
        std::mem::take(&mut self.0)
    }
}

impl<E: Element> From<Vec<E>> for Storage<E> {
    fn from(v: Vec<E>) -> Self {
        Storage(v)
    }
}

impl<E: Element> FromIterator<E> for Storage<E> {
    fn from_iter<I: IntoIterator<Item = E>>(iter: I) -> Self {
        Storage(iter.into_iter().collect())
    }
}

impl<E: Element> Deref for Storage<E> {
    type Target = [E];
    fn deref(&self) -> &[E] {
        &self.0
    }
}

impl<E: Element> DerefMut for Storage<E> {
    fn deref_mut(&mut self) -> &mut [E] {
        &mut self.0
    }
}

impl<E: Element> Clone for Storage<E> {
    fn clone(&self) -> Self {
        let mut v = take(self.0.len());
        v.extend_from_slice(&self.0);
        Storage(v)
    }
}

impl<E: Element> Drop for Storage<E> {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.0));
    }
}

/// Free buffers by capacity, and their total size in bytes.
struct Cache<E> {
    free: HashMap<usize, Vec<Vec<E>>>,
    bytes: usize,
}

impl<E> Default for Cache<E> {
    fn default() -> Self {
        Cache {
            free: HashMap::default(),
            bytes: 0,
        }
    }
}

#[derive(Default)]
struct Caches {
    f32: Cache<f32>,
    f64: Cache<f64>,
}

thread_local! {
    static CACHES: RefCell<Caches> = RefCell::new(Caches::default());
}

/// Runs `f` on this thread's cache for `E`; `None` while the thread is being torn down.
fn with_cache<E: Element, R>(f: impl FnOnce(&mut Cache<E>) -> R) -> Option<R> {
    CACHES
        .try_with(|c| {
            let mut c = c.try_borrow_mut().ok()?;
            let c = &mut *c;
            let any: &mut dyn Any = match E::DTYPE {
                DType::F32 => &mut c.f32,
                DType::F64 => &mut c.f64,
            };
            any.downcast_mut::<Cache<E>>().map(f)
        })
        .ok()
        .flatten()
}

fn cacheable<E>(len: usize) -> bool {
    let bytes = len.saturating_mul(std::mem::size_of::<E>());
    (MIN_CACHED_BYTES..=MAX_BUFFER_BYTES).contains(&bytes)
}

/// An empty `Vec` with room for `len` elements, recycled from this thread's cache when one of
/// exactly that capacity is free. Callers fill it completely (`extend`, `resize`).
pub(crate) fn take<E: Element>(len: usize) -> Vec<E> {
    if cacheable::<E>(len) {
        let hit = with_cache::<E, _>(|c| {
            let v = c.free.get_mut(&len)?.pop()?;
            c.bytes -= len * std::mem::size_of::<E>();
            Some(v)
        })
        .flatten();
        if let Some(mut v) = hit {
            v.clear();
            return v;
        }
    }
    Vec::with_capacity(len)
}

/// A buffer of `len` elements with unspecified (but initialized) values, for callers that
/// overwrite every element (a GEMM output with `beta = 0`): a recycled buffer is handed over
/// as it is, with no zeroing.
pub(crate) fn overwritable<E: Element>(len: usize) -> Vec<E> {
    if cacheable::<E>(len) {
        let hit = with_cache::<E, _>(|c| {
            let v = c.free.get_mut(&len)?.pop()?;
            c.bytes -= len * std::mem::size_of::<E>();
            Some(v)
        })
        .flatten();
        if let Some(v) = hit.filter(|v| v.len() == len) {
            return v;
        }
    }
    vec![E::zero(); len]
}

/// `len` zeros, in a recycled buffer when one is free.
pub(crate) fn zeros<E: Element>(len: usize) -> Vec<E> {
    let mut v = take(len);
    v.resize(len, E::zero());
    v
}

/// Hands a buffer back to this thread's cache (or to the allocator when it is small or the
/// cache is full). [`Storage`] does this on drop; scratch buffers call it directly.
pub(crate) fn give<E: Element>(v: Vec<E>) {
    let cap = v.capacity();
    if !cacheable::<E>(cap) {
        return;
    }
    let bytes = cap * std::mem::size_of::<E>();
    with_cache::<E, _>(move |c| {
        if c.bytes + bytes <= MAX_CACHED_BYTES {
            c.bytes += bytes;
            c.free.entry(cap).or_default().push(v);
        }
    });
}

/// Returns every buffer in this thread's cache to the allocator; the result is how many
/// bytes that was.
///
/// ```
/// let x = retrograd_core::Tensor::<f32>::zeros(&[64, 64]);
/// drop(x); // 16 KiB: kept for the next buffer of that length
/// assert!(retrograd_core::storage::release_cached_buffers() >= 16384);
/// assert_eq!(retrograd_core::storage::release_cached_buffers(), 0);
/// ```
pub fn release_cached_buffers() -> usize {
    let f32 = with_cache::<f32, _>(|c| std::mem::take(c).bytes).unwrap_or(0);
    let f64 = with_cache::<f64, _>(|c| std::mem::take(c).bytes).unwrap_or(0);
    f32 + f64
}

/// Bytes held by this thread's cache.
///
/// ```
/// retrograd_core::storage::release_cached_buffers();
/// assert_eq!(retrograd_core::storage::cached_bytes(), 0);
/// ```
pub fn cached_bytes() -> usize {
    with_cache::<f32, _>(|c| c.bytes).unwrap_or(0) + with_cache::<f64, _>(|c| c.bytes).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_buffer_is_reused_for_the_same_length_only() {
        release_cached_buffers();
        let v: Vec<f32> = zeros(2048);
        let p = v.as_ptr();
        drop(Storage::from(v));
        assert_eq!(cached_bytes(), 8192);
        let other: Vec<f32> = take(1500); // another length: a fresh allocation
        assert_ne!(other.as_ptr(), p);
        let again: Vec<f32> = take(2048);
        assert_eq!(again.as_ptr(), p);
        assert!(again.is_empty() && again.capacity() >= 2048);
        assert_eq!(cached_bytes(), 0);
        // a recycled buffer handed out as zeros holds zeros
        let mut dirty = again;
        dirty.resize(2048, 7.0);
        drop(Storage::from(dirty));
        assert!(zeros::<f32>(2048).iter().all(|&v| v == 0.0));
        // f64 buffers have their own cache
        drop(Storage::from(vec![1.0f64; 1024]));
        assert_eq!(cached_bytes(), 8192);
        assert_eq!(release_cached_buffers(), 8192);
    }

    #[test]
    fn small_and_huge_buffers_are_not_cached_and_the_cache_is_bounded() {
        release_cached_buffers();
        drop(Storage::from(vec![0f32; 16]));
        drop(Storage::from(vec![0f32; MAX_BUFFER_BYTES / 4 + 1]));
        assert_eq!(cached_bytes(), 0);
        let n = MAX_BUFFER_BYTES / 4; // the largest cached size
        let fit = MAX_CACHED_BYTES / MAX_BUFFER_BYTES;
        let bufs: Vec<Storage<f32>> = (0..fit + 1).map(|_| Storage::from(vec![0f32; n])).collect();
        drop(bufs);
        // `fit` of them filled the cache, the last went back to the allocator
        assert_eq!(cached_bytes(), MAX_CACHED_BYTES);
        assert_eq!(release_cached_buffers(), MAX_CACHED_BYTES);
    }

    #[test]
    fn cloned_storage_holds_equal_values() {
        let s: Storage<f32> = (0..3000).map(|i| i as f32).collect();
        let t = s.clone();
        assert_eq!(&s[..], &t[..]);
    }
}
