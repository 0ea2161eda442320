//! The rows route of `deferred.rs` for a weight read transposed (`x @ w.t()`, the recurrent
//! and input weights of an RNN, LSTM or GRU step, a `Linear`'s weight): each chunk's product
//! is formed as `gᵀ a`, rows of `w`'s own layout, and added into the running sum there (on
//! one thread as the tiles are stored; on two by the chunk's job, a block of rows each).
//!
//! The panel route of `deferred.rs` forms `aᵀ g` (the transposed `a`s times the `g`s' rows
//! packed into panels) and transposes the whole sum once at the end. Here the `a`s are packed
//! into panels instead (a row-major copy, no transpose: B1's chunk has 256 columns of `a`
//! against 1024 of `g`), the `g`s' rows are copied as they are, and the six-row tile that
//! reads its left operand column-major ([`CmTileFn`](crate::element::CmTileFn)) writes `w`'s
//! rows in place, adding a chunk's sums to the running sum as it stores them
//! ([`CmMode::Fold`]). So the transposes of the `a`s and of the sum, and the pass that added
//! each chunk's tiles into the running sum, are gone.
//!
//! The sums are the panel route's: every output is `sum + s`, `s` one `fma` chain from zero
//! over the chunk's rows in order (the product of two values is the same whichever factor the
//! tile broadcasts), so the gradient keeps the bits of one `matrixmultiply` product over the
//! stacked steps (tested in `tests/matmul.rs`).

use crate::element::{CmMode, Element, WideKernels};
use crate::panel::{self, LineAligned, NR};
use crate::tensor::Tensor;

/// The kernels for a chunked gradient whose pairs have `a_cols` and `n` columns, if this
/// CPU has them for `E` and `a` fills whole panels.
pub(crate) fn kernels<E: Element>(a_cols: usize, n: usize) -> Option<WideKernels<E>> {
    E::wide_kernels().filter(|_| a_cols.is_multiple_of(NR) && a_cols > 0 && n > 0)
}

/// The row stride of the copy of a chunk's `g`s: `n` rounded up to whole 64-byte lines, and
/// one line more, so that the rows start in successive L1 sets (B1's 1024 columns are 4 KiB:
/// copied at that stride, every row of a tile's column would fall in the same set).
fn copy_stride<E>(n: usize) -> usize {
    let line = 64 / std::mem::size_of::<E>();
    n.div_ceil(line) * line + line
}

/// `Σ gᵀ a` over `pairs` (stacked, at most `deferred::CHUNK_ROWS` rows), rows `c0..c0 + n`
/// of the transposed weight gradient (from columns `c0..c0 + n` of the `g`s), `[n, a_cols]`
/// row-major, put into `out` as `mode` says: [`CmMode::Write`] or [`CmMode::Fold`] (added to
/// the running sum there).
pub(crate) fn chunk_into<E: Element>(
    kern: WideKernels<E>,
    pairs: &[(Tensor<E>, Tensor<E>)],
    (c0, n): (usize, usize),
    out: &mut [E],
    mode: CmMode,
) {
    debug_assert!(mode != CmMode::Continue);
    let (a_cols, g_cols) = (pairs[0].0.shape()[1], pairs[0].1.shape()[1]);
    let rows: usize = pairs.iter().map(|(a, _)| a.shape()[0]).sum();
    debug_assert!(out.len() == n * a_cols && c0 + n <= g_cols);
    let ld = copy_stride::<E>(n);
    // every element the tiles read is written below (the stride's padding only feeds the
    // rows past `n` of a last partial tile, which are not copied out)
    let mut panels = LineAligned::overwritable(rows * a_cols);
    let mut copy = LineAligned::overwritable(rows * ld);
    let mut row0 = 0;
    for (a, g) in pairs {
        let r = a.shape()[0];
        panel::pack_rows(
            &a.contiguous_data(),
            a_cols,
            (rows, a_cols),
            row0,
            &mut panels,
        );
        let dst = copy[row0 * ld..(row0 + r) * ld].chunks_exact_mut(ld);
        for (dst, src) in dst.zip(g.contiguous_data().chunks_exact(g_cols)) {
            dst[..n].copy_from_slice(&src[c0..c0 + n]);
            dst[n..].fill(E::zero());
        }
        row0 += r;
    }
    // the rows of a last tile of fewer than six, with what `out` holds there (no buffer when
    // the tiles are whole)
    let whole = n / 6 * 6;
    let mut last = match whole < n {
        true => crate::storage::zeros(6 * a_cols),
        false => Vec::new(),
    };
    last[..(n - whole) * a_cols].copy_from_slice(&out[whole * a_cols..]);
    // a tile's six columns of the copy (one line a row) serve every panel in turn
    for i0 in (0..n).step_by(6) {
        for (q, panel) in panels.chunks_exact(rows * NR).enumerate() {
            let dst = match i0 < whole {
                true => &mut out[i0 * a_cols + q * NR..],
                false => &mut last[q * NR..],
            };
            (kern.six)(rows, &copy[i0..], ld, panel, dst, a_cols, mode);
        }
    }
    out[whole * a_cols..].copy_from_slice(&last[..(n - whole) * a_cols]);
    crate::storage::give(last);
    crate::storage::give(copy.into_vec());
    crate::storage::give(panels.into_vec());
}

/// [`chunk_into`] written into a new `[n, a_cols]` tensor.
pub(crate) fn chunk_product<E: Element>(
    kern: WideKernels<E>,
    pairs: &[(Tensor<E>, Tensor<E>)],
    (c0, n): (usize, usize),
) -> Tensor<E> {
    let a_cols = pairs[0].0.shape()[1];
    let mut out = crate::storage::overwritable(n * a_cols);
    chunk_into(kern, pairs, (c0, n), &mut out, CmMode::Write);
    crate::ops::constant(out, &[n, a_cols])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written, then folded: each output is the fold's `fma` chain from zero over the second
    /// chunk's rows added to the first chunk's chain, for a `g` whose columns end in a partial
    /// tile (64 = 10 x 6 + 4) and pairs of several heights.
    #[test]
    fn chunks_written_then_folded_give_the_sum_of_their_chains() {
        let Some(kern) = kernels::<f32>(128, 64) else {
            return; // no AVX-512 on this CPU: the panel route of deferred.rs is used
        };
        let (a_cols, n) = (128, 64);
        let val = |i: usize, s: usize| ((i * s) % 31) as f32 / 31.0 - 0.5;
        let pair = |r: usize, s: usize| {
            let a = Tensor::from_vec((0..r * a_cols).map(|i| val(i, s)).collect(), &[r, a_cols]);
            let g = Tensor::from_vec((0..r * n).map(|i| val(i, s + 2)).collect(), &[r, n]);
            (a.unwrap(), g.unwrap())
        };
        let first = vec![pair(32, 3), pair(7, 5)];
        let second = vec![pair(100, 7), pair(1, 11), pair(19, 13)];
        let chain = |pairs: &[(Tensor<f32>, Tensor<f32>)], j: usize, c: usize| {
            let mut s = 0.0f32;
            for (a, g) in pairs {
                let (a, g) = (a.to_vec(), g.to_vec());
                for p in 0..a.len() / a_cols {
                    s = g[p * n + j].mul_add(a[p * a_cols + c], s);
                }
            }
            s
        };
        let mut out = chunk_product(kern, &first, (0, n)).to_vec();
        chunk_into(kern, &second, (0, n), &mut out, CmMode::Fold);
        for j in 0..n {
            for c in 0..a_cols {
                let want = chain(&first, j, c) + chain(&second, j, c);
                assert_eq!(
                    out[j * a_cols + c].to_bits(),
                    want.to_bits(),
                    "row {j} col {c}"
                );
            }
        }
        // a block of columns of the g's (of rows of the gradient): those rows of the whole
        let (c0, w) = (27, 31);
        let mut block = chunk_product(kern, &first, (c0, w)).to_vec();
        chunk_into(kern, &second, (c0, w), &mut block, CmMode::Fold);
        assert!(block
            .iter()
            .zip(&out[c0 * a_cols..(c0 + w) * a_cols])
            .all(|(b, o)| b.to_bits() == o.to_bits()));
    }
}
