//! A wide weight gradient: `gᵀ a` for a decoder over a large vocabulary (B2's `10000 x 400 x
//! 200`: `g` the `[m, n]` gradient of the logits, `a` the decoder's `[m, k]` input), laid out
//! like the weight (`[n, k]`, row-major) and formed a block of its rows at a time, so that
//! the early blocks of `deferred.rs` can share it between threads.
//!
//! With the AVX-512 kernels (`Element::wide_kernels`), `a` is packed once into 64-column
//! panels and each block of `g`'s columns copied row by row (no transpose) into a buffer that
//! a six-row tile reads column-major; the columns past the last whole panel (B2: 8 of 200) go
//! through a kernel that holds 48 output rows in vectors. Elsewhere the blocks are `aᵀ g`
//! through the row-major GEMM path, each transposed into its rows. Every output is an
//! `fma` chain over the `m` terms in order, one chain per output on both routes as long as the
//! `gemm` crate's depth blocks do not cut the sum (B2's 400 terms: the same bits either way;
//! a 600-term sum is cut there, so its bits differ in the last places).

use super::matmul::matmul_into;
use crate::element::{CmMode, Element, WideKernels};
use crate::error::Result;
use crate::ops::gemm::MatRef;
use crate::panel::{LineAligned, NR};
use crate::tensor::Tensor;

/// Whether a column-major `aᵀ g` (`a: [m, k]`, `g: [m, n]`) is formed by [`at_g_rows`]
/// rather than as `gᵀ a`: for `f32` when `g` is far wider than `a` (a decoder's gradient over
/// a large vocabulary). `gᵀ a` reads `g` column by column into the GEMM's packed blocks: B2's
/// `10000 x 400 x 200` took 15.5 ms in the step that way, against 13.0 for the blocks of the
/// row-major `200 x 400 x 10000` through `gemm` with their transposes (one thread).
pub(crate) fn wide_gradient<E: Element>(m: usize, k: usize, n: usize) -> bool {
    E::DTYPE == crate::element::DType::F32 && n >= 8 * k && k >= 128 && m * n >= 1 << 20
}

/// Rows of the gradient per block that [`at_g_rows`] is asked for on two threads (early
/// blocks start at multiples of it). On the `gemm` route, also the columns of `g` per product:
/// the `[k, 256]` block stays in L2 for its transpose (whole, the transpose of B2's 8 MB
/// product read it from memory: 4.3 ms; blocks of 512 columns took 17 ms in all, of 128 and
/// 256 about 13).
pub(crate) const WIDE_BLOCK: usize = 256;

/// Columns of `g` copied per block on the kernel route: a multiple of 48 (the rows of
/// [`Cols8Fn`](crate::element::Cols8Fn)) and of 6 (the tile's), its `m x 144` copy (B2: 225
/// KiB) in L2. A scratch run (one thread, B2's shape) took 11.4 ms with 144, 11.5 with 192.
const COPY_COLS: usize = 144;

/// The depth of one pass of the six-row tile (its part of a panel, 32 KiB, stays in L1).
const DEPTH: usize = 128;

/// The decoder input `a` of a wide gradient, prepared once for all blocks.
pub(crate) enum Lead<E: Element> {
    /// For the kernels: `a` (`[m, k]`, contiguous: the caller's tensor itself when it is)
    /// and its whole 64-column panels.
    Panels {
        kernels: WideKernels<E>,
        a: Tensor<E>,
        panels: LineAligned<E>,
    },
    /// For the `gemm` blocks: `aᵀ` copied row-major.
    Transposed(Tensor<E>),
}

impl<E: Element> Lead<E> {
    /// Prepares `a` (`[m, k]`) for the kernels where this CPU has them and `k` is a multiple
    /// of eight, else for the `gemm` blocks.
    pub(crate) fn new(a: &Tensor<E>) -> Result<Self> {
        let (m, k) = a.dims2()?;
        match E::wide_kernels().filter(|_| k.is_multiple_of(8)) {
            Some(kernels) => {
                let a = a.contiguous();
                let panels = crate::panel::pack(
                    m,
                    k / NR * NR,
                    MatRef {
                        data: &a.contiguous_data(),
                        rs: k,
                        cs: 1,
                    },
                );
                Ok(Lead::Panels { kernels, a, panels })
            }
            None => Ok(Lead::Transposed(a.t()?.contiguous())),
        }
    }
}

/// Rows `j0..j1` of `gᵀ a` (`[n, k]` in memory), written row-major into `out`, on the calling
/// thread. On the `gemm` route, `j0` must be a multiple of [`WIDE_BLOCK`].
pub(crate) fn at_g_rows<E: Element>(
    lead: &Lead<E>,
    g: &Tensor<E>,
    (j0, j1): (usize, usize),
    out: &mut [E],
) -> Result<()> {
    match lead {
        Lead::Panels { kernels, a, panels } => {
            let (g, mk) = (g.contiguous_data(), a.dims2()?);
            rows_by_kernels(
                *kernels,
                (&a.contiguous_data(), panels),
                mk,
                &g,
                (j0, j1),
                out,
            );
            Ok(())
        }
        Lead::Transposed(a_t) => rows_by_gemm(a_t, g, (j0, j1), out),
    }
}

/// [`at_g_rows`] through the kernels: `g` is `[m, n]` row-major.
fn rows_by_kernels<E: Element>(
    kern: WideKernels<E>,
    (a, panels): (&[E], &[E]),
    (m, k): (usize, usize),
    g: &[E],
    (j0, j1): (usize, usize),
    out: &mut [E],
) {
    let n = g.len() / m.max(1);
    let whole = k / NR * NR;
    let groups = (k - whole) / 8;
    // the copy of a block of g's columns, each row padded with zeros to a multiple of 48
    let mut copy = LineAligned::<E>::overwritable(m * COPY_COLS);
    // six rows of the gradient, for a last tile of fewer rows
    let mut last = crate::storage::overwritable(6 * k);
    let mut acc = vec![[[E::zero(); 16]; 24]; groups];
    for j in (j0..j1).step_by(COPY_COLS) {
        let w = COPY_COLS.min(j1 - j);
        let ld = w.div_ceil(48) * 48;
        for (row, src) in copy.chunks_exact_mut(ld).zip(g.chunks_exact(n)).take(m) {
            row[..w].copy_from_slice(&src[j..j + w]);
            row[w..].fill(E::zero());
        }
        let copy = &copy[..m * ld];
        let block = &mut out[(j - j0) * k..(j - j0 + w) * k];
        // whole panels: six rows at a time, the depth in passes of DEPTH
        for (q, panel) in panels.chunks_exact(m * NR).enumerate() {
            for i0 in (0..w).step_by(6) {
                // six whole rows in place; the last tile's rows past the block into `last`
                let dst = match i0 + 6 <= w {
                    true => &mut block[i0 * k + q * NR..],
                    false => &mut last[q * NR..],
                };
                for p0 in (0..m).step_by(DEPTH) {
                    let p1 = (p0 + DEPTH).min(m);
                    let a_part = &copy[p0 * ld + i0..];
                    (kern.six)(
                        p1 - p0,
                        a_part,
                        ld,
                        &panel[p0 * NR..p1 * NR],
                        dst,
                        k,
                        if p0 > 0 {
                            CmMode::Continue
                        } else {
                            CmMode::Write
                        },
                    );
                }
            }
        }
        if w % 6 != 0 {
            let i0 = w / 6 * 6;
            for (r, row) in last.chunks_exact(k).take(w - i0).enumerate() {
                block[(i0 + r) * k..(i0 + r) * k + whole].copy_from_slice(&row[..whole]);
            }
        }
        // the columns past the whole panels: 48 rows of the block, eight columns at a time
        for r0 in (0..w).step_by(48) {
            acc.iter_mut().for_each(|t| *t = [[E::zero(); 16]; 24]);
            for p0 in (0..m).step_by(DEPTH) {
                let p1 = (p0 + DEPTH).min(m);
                for (c, t) in acc.iter_mut().enumerate() {
                    let x = &a[p0 * k + whole + 8 * c..];
                    (kern.cols8)(p1 - p0, &copy[p0 * ld + r0..], ld, x, k, t);
                }
            }
            for (c, t) in acc.iter().enumerate() {
                for r in 0..48.min(w - r0) {
                    let dst = &mut block[(r0 + r) * k + whole + 8 * c..][..8];
                    for (cc, d) in dst.iter_mut().enumerate() {
                        *d = t[3 * cc + r / 16][r % 16];
                    }
                }
            }
        }
    }
    crate::storage::give(copy.into_vec());
    crate::storage::give(last);
}

/// [`at_g_rows`] through `gemm`: `aᵀ g` over blocks of [`WIDE_BLOCK`] columns of `g` (from
/// column 0, so that every block is the same product whatever range is asked for), each
/// through the row-major GEMM path on the calling thread and transposed into its rows while
/// it is in cache. `a_t` is `aᵀ` copied row-major.
fn rows_by_gemm<E: Element>(
    a_t: &Tensor<E>,
    g: &Tensor<E>,
    (j0, j1): (usize, usize),
    out: &mut [E],
) -> Result<()> {
    debug_assert_eq!(j0 % WIDE_BLOCK, 0);
    let k = a_t.shape()[0];
    // one block buffer for all blocks (`matmul_into` takes `matmul_raw`'s route, so its bits)
    let mut c = crate::storage::overwritable(k * WIDE_BLOCK.min(j1 - j0));
    let formed = crate::threads::single_threaded(|| {
        for j in (j0..j1).step_by(WIDE_BLOCK) {
            let w = WIDE_BLOCK.min(j1 - j);
            matmul_into(a_t, &g.narrow(1, j, w)?, &mut c[..k * w])?;
            let dst = &mut out[(j - j0) * k..(j - j0 + w) * k];
            crate::twin::transpose_into(&c[..k * w], k, w, dst, k);
        }
        Ok(())
    });
    crate::storage::give(c);
    formed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both routes (the kernels where this CPU has them, and the `gemm` blocks on any CPU)
    /// give one f32 `fma` chain per output over B2's depth of 400 rows, for the whole
    /// gradient and for a block of rows from 256 on.
    #[test]
    fn both_routes_give_one_fma_chain_per_output_at_b2s_depth() {
        let (m, k, n) = (400, 200, 1700);
        let val = |i: usize, s: usize| ((i * s) % 29) as f32 / 29.0 - 0.5;
        let a = Tensor::from_vec((0..m * k).map(|i| val(i, 7)).collect(), &[m, k]).unwrap();
        let g = Tensor::from_vec((0..m * n).map(|i| val(i, 3)).collect(), &[m, n]).unwrap();
        let (av, gv) = (a.to_vec(), g.to_vec());
        let want: Vec<u32> = (0..n * k)
            .map(|o| {
                let (j, q) = (o / k, o % k);
                (0..m)
                    .fold(0.0f32, |s, p| gv[p * n + j].mul_add(av[p * k + q], s))
                    .to_bits()
            })
            .collect();
        let mut leads = vec![Lead::Transposed(a.t().unwrap().contiguous())];
        let lead = Lead::new(&a).unwrap();
        if let Lead::Panels { .. } = lead {
            leads.push(lead);
        }
        for lead in &leads {
            let route = match lead {
                Lead::Panels { .. } => "kernels",
                Lead::Transposed(_) => "gemm",
            };
            let mut got = vec![f32::NAN; n * k];
            at_g_rows(lead, &g, (0, n), &mut got).unwrap();
            let differ = got
                .iter()
                .zip(&want)
                .filter(|(g, &w)| g.to_bits() != w)
                .count();
            assert_eq!(differ, 0, "{route}: {differ} outputs differ");
            let mut part = vec![f32::NAN; (n - 256) * k];
            at_g_rows(lead, &g, (256, n), &mut part).unwrap();
            assert!(
                part.iter()
                    .zip(&want[256 * k..])
                    .all(|(g, &w)| g.to_bits() == w),
                "{route}: rows from 256"
            );
        }
    }
}
