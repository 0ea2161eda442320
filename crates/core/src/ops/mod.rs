//! The differentiable ops, one type per op, grouped by family. Each type documents its formula
//! and derivative, has a public `forward`, and implements [`Op`](crate::Op) for the backward half.
//! Tensor methods (`x.tanh()`, `a.matmul(&b)`, ...) are thin wrappers over these types.

pub mod addmm_act;
pub mod binary;
pub mod broadcast;
pub mod dropout;
pub(crate) mod gemm;
pub mod index;
pub mod join;
pub mod loss;
pub mod matmul;
pub mod reduce;
pub mod shape;
pub mod softmax;
pub mod ternary;
pub mod unary;
pub(crate) mod wide;

use crate::storage::Storage;
use std::sync::Arc;

use crate::element::Element;
use crate::layout::Layout;
use crate::tape::InputGrads;
use crate::tensor::Tensor;

/// Applies `f` to every element, returning a contiguous buffer.
pub(crate) fn map<E: Element>(x: &Tensor<E>, f: impl Fn(E) -> E) -> Vec<E> {
    // a slice of a wider tensor (a gate block) is mapped run by run, with no gathered copy
    write_runs([x], |out, [x]| {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = f(v);
        }
    })
}

/// Calls `f` with matching runs of tensors of one shape, in row-major order: for each run, the
/// slice of every tensor's elements. A strided or broadcast operand (a gate slice, a bias row)
/// is walked run by run instead of gathered, when every operand has inner runs longer than
/// one element (each inner run is a product of trailing dims of the same shape, so the
/// shortest divides the others); otherwise, or when all are contiguous, `f` gets one run of
/// everything.
pub(crate) fn for_matching_runs<E: Element, const N: usize>(
    ts: [&Tensor<E>; N],
    mut f: impl FnMut([&[E]; N]),
) {
    let run = ts.iter().map(|t| t.layout().inner_run()).min().unwrap_or(1);
    if ts.iter().all(|t| t.is_contiguous()) || run <= 1 {
        let data = ts.map(|t| t.contiguous_data());
        f(std::array::from_fn(|i| &data[i][..]));
        return;
    }
    let offsets = ts.map(|t| {
        let mut v = Vec::with_capacity(t.numel() / run);
        t.layout().for_each_run(run, |o| v.push(o));
        v
    });
    let stores = ts.map(|t| t.storage());
    for k in 0..offsets[0].len() {
        f(std::array::from_fn(|i| {
            &stores[i][offsets[i][k]..offsets[i][k] + run]
        }));
    }
}

/// A contiguous buffer as long as `ts[0]`, written run by run: `f(out, runs)` for each set of
/// matching runs of `ts` (see [`for_matching_runs`]), `out` that run's place in the buffer (a
/// recycled one, every element written).
pub(crate) fn write_runs<E: Element, const N: usize>(
    ts: [&Tensor<E>; N],
    mut f: impl FnMut(&mut [E], [&[E]; N]),
) -> Vec<E> {
    let mut out = crate::storage::overwritable(ts[0].numel());
    let mut at = 0;
    for_matching_runs(ts, |runs| {
        let n = runs[0].len();
        f(&mut out[at..at + n], runs);
        at += n;
    });
    out
}

/// Applies `f` pairwise to two tensors of the same shape, returning a contiguous buffer.
pub(crate) fn zip_map<E: Element>(a: &Tensor<E>, b: &Tensor<E>, f: impl Fn(E, E) -> E) -> Vec<E> {
    debug_assert_eq!(a.shape(), b.shape(), "zip_map needs equal shapes");
    write_runs([a, b], |out, [x, y]| {
        for ((o, &x), &y) in out.iter_mut().zip(x).zip(y) {
            *o = f(x, y);
        }
    })
}

/// Rows per block when a row-wise op over `rows` rows of `row_len` elements is split over
/// threads (four blocks per thread, so a worker starting late still finds some), or `None`
/// to run it on the calling thread (small inputs, one thread).
fn rows_per_block(rows: usize, row_len: usize) -> Option<usize> {
    /// From this many elements a row-wise op is split over threads (measured on B2's
    /// 400 x 10000 logits; a 2-core split pays for itself well below that).
    const PARALLEL_MIN: usize = 1 << 16;
    /// Blocks per thread: enough that a worker starting late still finds some.
    const BLOCKS_PER_THREAD: usize = 4;
    let threads = crate::threads::product_threads();
    (rows * row_len >= PARALLEL_MIN && threads >= 2 && rows >= 2)
        .then(|| rows.div_ceil(threads * BLOCKS_PER_THREAD))
}

/// Runs `f(first_row, x_rows, out_rows, aux_rows)` over blocks of whole rows: `x` and `out`
/// hold `row_len` elements per row, `aux` one item. Large inputs are cut into four blocks per
/// thread that the caller and a pool worker take in turn ([`crate::threads::map_claimed`]):
/// the caller starts at once instead of waiting while a worker wakes, and when the worker is
/// late the caller takes its blocks. Rows are independent, so the values do not depend on who
/// computed which block. Small inputs run on the calling thread. Nothing runs when `row_len`
/// is 0. An empty `out` (an op that writes only `aux`) gives every block an empty `out_rows`.
pub(crate) fn for_row_blocks<E: Element, T: Send>(
    x: &[E],
    out: &mut [E],
    aux: &mut [T],
    row_len: usize,
    f: impl Fn(usize, &[E], &mut [E], &mut [T]) + Sync,
) {
    let rows = aux.len();
    if row_len == 0 {
        return; // no elements (and chunks of zero length are not allowed)
    }
    let Some(per) = rows_per_block(rows, row_len) else {
        f(0, x, out, aux);
        return;
    };
    let outs = out
        .chunks_mut(per * row_len)
        .chain(std::iter::repeat_with(<&mut [E]>::default));
    let blocks: Vec<_> = x
        .chunks(per * row_len)
        .zip(outs)
        .zip(aux.chunks_mut(per))
        .enumerate()
        .collect();
    crate::threads::map_claimed(blocks, |(i, ((xb, ob), ab))| f(i * per, xb, ob, ab));
}

/// Storage and layout for a fresh contiguous op output.
pub(crate) fn out<E: Element>(data: Vec<E>, shape: &[usize]) -> (Arc<Storage<E>>, Layout) {
    (Arc::new(Storage::from(data)), Layout::contiguous(shape))
}

/// The output of an op over `inputs` whose backward needs that output: `make` gets it as a
/// constant tensor sharing the output's storage (tensors are immutable), so nothing is copied.
pub(crate) fn with_saved_output<E: Element, O: crate::tape::Op<E>>(
    data: Vec<E>,
    shape: &[usize],
    inputs: &[&Tensor<E>],
    make: impl FnOnce(Tensor<E>) -> O,
) -> Tensor<E> {
    let (data, layout) = out(data, shape);
    let saved = (data.clone(), layout.clone());
    Tensor::from_op(data, layout, inputs, || {
        make(Tensor::constant_over(saved.0, saved.1))
    })
}

/// A constant contiguous tensor (used for gradients).
pub(crate) fn constant<E: Element>(data: Vec<E>, shape: &[usize]) -> Tensor<E> {
    Tensor::from_parts(data, shape)
}

/// One input gradient.
pub(crate) fn grads1<E: Element>(g: Tensor<E>) -> InputGrads<E> {
    smallvec::smallvec![Some(g)]
}

/// Two input gradients.
pub(crate) fn grads2<E: Element>(a: Option<Tensor<E>>, b: Option<Tensor<E>>) -> InputGrads<E> {
    smallvec::smallvec![a, b]
}

/// Sum of a slice with eight independent accumulators (so it vectorizes).
pub(crate) fn sum_slice<E: Element>(v: &[E]) -> E {
    let mut acc = [E::zero(); 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            acc[l] += c[l];
        }
    }
    let tail = chunks.remainder().iter().fold(E::zero(), |t, &x| t + x);
    reduce_lanes(acc) + tail
}

/// Sums an accumulator array pairwise (halves added lane by lane), so the final reduction is
/// log2(N) vector adds instead of a chain of N dependent scalar adds (which dominated the
/// batch-1 gemv: 64 cycles of latency per 16-lane dot product).
#[inline(always)]
pub(crate) fn reduce_lanes<E: Element, const N: usize>(mut acc: [E; N]) -> E {
    const {
        assert!(
            N.is_power_of_two(),
            "reduce_lanes needs a power-of-two lane count"
        )
    };
    let mut w = N;
    while w > 1 {
        w /= 2;
        for l in 0..w {
            acc[l] += acc[l + w];
        }
    }
    acc[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_blocks_cover_every_row_once_with_or_without_an_output() {
        // large enough to be cut into blocks on a two-thread pool
        let (rows, row_len) = (300, 256);
        let x: Vec<f32> = (0..rows * row_len).map(|i| (i % 1000) as f32).collect();
        let row_sum = |r: &[f32]| r.iter().sum::<f32>();
        let want: Vec<(usize, f32)> = x
            .chunks_exact(row_len)
            .enumerate()
            .map(|(i, r)| (i, row_sum(r)))
            .collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            assert!(rows_per_block(rows, row_len).is_some_and(|per| per < rows));
            // aux only: every block gets an empty output
            let mut aux = vec![(usize::MAX, 0.0f32); rows];
            for_row_blocks(&x, &mut [], &mut aux, row_len, |r0, xb, ob, ab| {
                assert!(ob.is_empty());
                for (j, (r, a)) in xb.chunks_exact(row_len).zip(ab.iter_mut()).enumerate() {
                    *a = (r0 + j, row_sum(r));
                }
            });
            assert_eq!(aux, want);
            // with an output: each row doubled
            let (mut out, mut aux) = (vec![0.0f32; rows * row_len], vec![(0, 0.0); rows]);
            for_row_blocks(&x, &mut out, &mut aux, row_len, |r0, xb, ob, ab| {
                for (j, ((r, o), a)) in xb
                    .chunks_exact(row_len)
                    .zip(ob.chunks_exact_mut(row_len))
                    .zip(ab.iter_mut())
                    .enumerate()
                {
                    o.iter_mut().zip(r).for_each(|(o, &v)| *o = 2.0 * v);
                    *a = (r0 + j, row_sum(r));
                }
            });
            assert_eq!(aux, want);
            assert!(out.iter().zip(&x).all(|(o, v)| *o == 2.0 * v));
        });
    }
}
