//! The rows route of `deferred.rs` for a weight read transposed (`x @ w.t()`, the recurrent
//! and input weights of an RNN, LSTM or GRU step, a `Linear`'s weight): each chunk's product
//! is formed as `gᵀ a`, rows of `w`'s own layout, and added into the running sum there (on
//! one thread as the tiles are stored; on two by the chunk's job, a block of rows each).
//!
//! The panel route of `deferred.rs` forms `aᵀ g` (the transposed `a`s times the `g`s' rows
//! packed into panels) and transposes the whole sum once at the end. Here the `a`s are packed
//! into panels instead (a row-major copy, no transpose: B1's chunk has 256 columns of `a`
//! against 1024 of `g`), the `g`s' columns are packed six at a time into strips (six
//! contiguous values a row, 48 columns at a time), and the six-row tile that reads its left
//! operand column-major ([`CmTileFn`](crate::element::CmTileFn)) writes `w`'s rows in place,
//! adding a chunk's sums to the running sum as it stores them ([`CmMode::Fold`]). So the
//! transposes of the `a`s and of the sum, and the pass that added each chunk's tiles into the
//! running sum, are gone.
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

/// Columns of the `g`s packed into strips at a time (eight strips): B1's chunk then packs
/// 48 KiB at a time instead of 1 MiB, which would have pushed the recurrent weight's panels
/// out of L2.
const STRIP_GROUP: usize = 48;

/// Rows of a `g` packed per step of [`pack_strips`]: sixteen rows' six values of one strip
/// are 96 contiguous values written, while the sixteen rows read stay in L1.
const PACK_ROWS: usize = 16;

/// Columns `c0..c0 + n` of `g` (`[r, g_cols]` row-major), rows `row0..row0 + r` of the
/// chunk's `rows`, into the strips of `strips`: strip `t` holds columns `6t..6t + 6` of the
/// chunk row after row (six contiguous values a row, `6 * rows` a strip), the last strip's
/// columns past `n` zero. The six-row tile then reads its left operand as one sequential
/// stream; read in place from a row-major copy, each row of a strip was a new line 4 KiB
/// (B1) from the last, which the prefetcher does not follow.
fn pack_strips<E: Element>(
    g: &[E],
    g_cols: usize,
    (c0, n): (usize, usize),
    (rows, row0): (usize, usize),
    strips: &mut [E],
) {
    let whole = n / 6;
    for (b, block) in g.chunks(PACK_ROWS * g_cols).enumerate() {
        let p0 = row0 + b * PACK_ROWS;
        let block_rows = || block.chunks_exact(g_cols).map(|row| &row[c0..c0 + n]);
        for t in 0..whole {
            let dst = &mut strips[(t * rows + p0) * 6..];
            for (d, src) in dst.chunks_exact_mut(6).zip(block_rows()) {
                d.copy_from_slice(&src[6 * t..6 * t + 6]);
            }
        }
        if whole * 6 < n {
            let dst = &mut strips[(whole * rows + p0) * 6..];
            for (d, src) in dst.chunks_exact_mut(6).zip(block_rows()) {
                d[..n - whole * 6].copy_from_slice(&src[whole * 6..]);
                d[n - whole * 6..].fill(E::zero());
            }
        }
    }
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
    // every element the tiles read is written below (the last strip's padding only feeds
    // the rows past `n` of a last partial tile, which are not copied out)
    let mut panels = LineAligned::overwritable(rows * a_cols);
    let mut strips = LineAligned::overwritable(STRIP_GROUP.min(n).div_ceil(6) * rows * 6);
    let mut gs = Vec::with_capacity(pairs.len());
    let mut row0 = 0;
    for (a, g) in pairs {
        panel::pack_rows(
            &a.contiguous_data(),
            a_cols,
            (rows, a_cols),
            row0,
            &mut panels,
        );
        row0 += a.shape()[0];
        gs.push((a.shape()[0], g.contiguous_data()));
    }
    // the rows of a last tile of fewer than six, with what `out` holds there (no buffer when
    // the tiles are whole)
    let whole = n / 6 * 6;
    let mut last = match whole < n {
        true => crate::storage::zeros(6 * a_cols),
        false => Vec::new(),
    };
    last[..(n - whole) * a_cols].copy_from_slice(&out[whole * a_cols..]);
    for j0 in (0..n).step_by(STRIP_GROUP) {
        let w = STRIP_GROUP.min(n - j0);
        let mut row0 = 0;
        for (r, g) in &gs {
            pack_strips(g, g_cols, (c0 + j0, w), (rows, row0), &mut strips);
            row0 += r;
        }
        // a tile's strip serves every panel in turn
        for (t, strip) in strips[..w.div_ceil(6) * rows * 6]
            .chunks_exact(rows * 6)
            .enumerate()
        {
            let i0 = j0 + 6 * t;
            for (q, panel) in panels.chunks_exact(rows * NR).enumerate() {
                let dst = match i0 < whole {
                    true => &mut out[i0 * a_cols + q * NR..],
                    false => &mut last[q * NR..],
                };
                (kern.six)(rows, strip, 6, panel, dst, a_cols, mode);
            }
        }
    }
    out[whole * a_cols..].copy_from_slice(&last[..(n - whole) * a_cols]);
    crate::storage::give(last);
    crate::storage::give(strips.into_vec());
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

    /// Strip `t` holds columns `c0 + 6t ..` of the chunk's rows, six values a row, the last
    /// strip zero past `n`; rows outside `row0..row0 + r` are left as they were.
    #[test]
    fn strips_hold_six_columns_a_row_and_zeros_past_the_last() {
        let (r, g_cols, c0, n, rows, row0): (usize, usize, usize, usize, usize, usize) =
            (21, 20, 3, 13, 25, 2);
        let g: Vec<f32> = (0..r * g_cols).map(|i| i as f32).collect();
        let mut strips = vec![-1.0f32; n.div_ceil(6) * rows * 6];
        pack_strips(&g, g_cols, (c0, n), (rows, row0), &mut strips);
        for t in 0..n.div_ceil(6) {
            for p in 0..rows {
                for j in 0..6 {
                    let got = strips[(t * rows + p) * 6 + j];
                    let col = 6 * t + j;
                    let want = match (p.checked_sub(row0).filter(|&i| i < r), col < n) {
                        (None, _) => -1.0,
                        (Some(_), false) => 0.0,
                        (Some(i), true) => g[i * g_cols + c0 + col],
                    };
                    assert_eq!(got, want, "strip {t} row {p} value {j}");
                }
            }
        }
    }

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
