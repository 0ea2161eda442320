//! Right-hand operands packed once, for the products that read them again and again.
//!
//! A recurrent weight is the right-hand side of two products at every time step: `h @ w.t()`
//! forward and `g @ w` backward. `matrixmultiply` packs its operands on every call: in a
//! one-thread B1 profile, packing was 21% of the step and the kernel 58%. So a storage read
//! whole as a right-hand side keeps a copy of itself packed in panels of [`NR`] columns (each
//! panel `k x NR`, row-major, the last one padded with zeros), one per orientation ([`Read`]),
//! and products read that. The copy is made on the second such read, or on the first when the
//! product has [`EAGER_M`] rows or more (the pack is then cheap next to the product); see
//! [`plan`] for the products left to `matrixmultiply`. It is dropped when the storage is
//! mutated (an optimizer step) or freed, like the transposed copy of [`crate::twin`].
//!
//! [`product`] runs a `MR x NR` tile kernel over every (panel, block of [`MR`] rows) pair,
//! reading the rows of the left operand in place; a one-row product (a batch-1 step) runs a
//! row kernel over two panels at a time. The kernels exist for `f32` on x86-64 CPUs with
//! AVX-512 ([`f32_tile`], [`f32_row`], detected at run time); elsewhere, and for `f64`,
//! products go to `matrixmultiply` as before. Every output is `fma(a[i][p], b[p][j], acc)`
//! over `p = 0, 1, ..., k - 1` in order, starting from zero: the same bits as the test-only
//! references `scalar_tile` and `scalar_row`, which the tests hold the kernels to, and as
//! `matrixmultiply`'s for `k <= 256`.
//!
//! On this project's machine (one thread, the weight packed beforehand), a 32x256x1024
//! product took about 70 µs this way against 131–160 µs through `matrixmultiply`, a
//! 32x1024x256 one 68 against 110 µs, and a 16x128x384 one 6.7 against 11–20 µs.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use crate::element::{Element, RowFn, TileFn};
use crate::ops::gemm::MatRef;

/// Columns per panel: four AVX-512 vectors of `f32`.
pub(crate) const NR: usize = 64;

/// Rows per tile: with [`NR`], sixteen accumulator registers.
pub(crate) const MR: usize = 4;

/// The largest inner size packed: a panel of `k x NR` then stays within 512 KiB, in L2.
pub(crate) const MAX_K: usize = 2048;

/// The largest left operand (elements) streamed once per panel: 1 MiB of `f32`, one core's L2.
const MAX_A: usize = 256 * 1024;

/// From this many rows, panels are made on the first read: the pack then costs under 1/128
/// of the product. (B1's 2048x1024x64 input gradient took 2.1 ms through `matrixmultiply` and
/// 1.06 ms through panels; B2's 400x200x10000 decoder 10.3 ms against 6.8 ms plus a 0.75 ms
/// pack; one thread.)
const EAGER_M: usize = 128;

/// From this many multiply-adds a one-row product may read a whole right-hand side through
/// panels (from its second read); below, the direct loops of `gemm.rs` run.
const ROW_MIN_FMAS: usize = 4096;

/// Whether a one-row product is large enough for the panel path (when the rhs has panels).
pub(crate) fn row_product(m: usize, k: usize, n: usize) -> bool {
    m == 1 && k * n >= ROW_MIN_FMAS
}

/// Whether an `m x k x n` product reads a whole right-hand side through panels: `None` when it
/// does not, else `Some(eager)`: panels made on the first read when `eager`, else from the
/// second. Not when `k` is beyond [`MAX_K`], nor when a left operand beyond [`MAX_A`] would be
/// streamed from beyond L2 once per panel for more than four panels or copied to row-major
/// first (`a_rows`: its rows are contiguous). A weight gradient `gᵀ x` has such a transposed
/// left operand: through panels, B1's 1024x2048x256 one ran at a third of `matrixmultiply`'s
/// speed.
pub(crate) fn plan(m: usize, k: usize, n: usize, a_rows: bool) -> Option<bool> {
    let a_fits = m * k <= MAX_A || (a_rows && n <= 4 * NR);
    (k <= MAX_K && a_fits).then_some(m >= EAGER_M)
}

/// How a product reads a storage as its right-hand side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// As stored: a row-major `[k, n]` matrix.
    AsStored,
    /// Transposed: the storage is a row-major `[n, k]` matrix read as its transpose (`w.t()`).
    Transposed,
}

/// The packed copies of one storage (one per [`Read`]), and how often each was asked for.
#[derive(Debug, Default)]
pub(crate) struct PanelCache<E> {
    slots: [Slot<E>; 2],
}

#[derive(Debug, Default)]
struct Slot<E> {
    packed: OnceLock<Packed<E>>,
    reads: AtomicU32,
}

#[derive(Debug)]
struct Packed<E> {
    k: usize,
    n: usize,
    data: Vec<E>,
}

impl<E: Element> PanelCache<E> {
    /// The panels of `src` read as a `k x n` right-hand side the way `read` says: from the
    /// second request on, or from the first when `eager`; `None` before, or when panels of
    /// other dimensions were made first. `src` must hold exactly `k * n` elements.
    pub(crate) fn panels(
        &self,
        src: &[E],
        read: Read,
        (k, n): (usize, usize),
        eager: bool,
    ) -> Option<&[E]> {
        debug_assert_eq!(src.len(), k * n);
        let slot = &self.slots[read as usize];
        if slot.packed.get().is_none() && slot.reads.fetch_add(1, Ordering::Relaxed) == 0 && !eager
        {
            return None;
        }
        let p = slot.packed.get_or_init(|| {
            let b = match read {
                Read::AsStored => MatRef {
                    data: src,
                    rs: n,
                    cs: 1,
                },
                Read::Transposed => MatRef {
                    data: src,
                    rs: 1,
                    cs: k,
                },
            };
            Packed {
                k,
                n,
                data: pack(k, n, b),
            }
        });
        (p.k == k && p.n == n).then_some(&p.data[..])
    }

    /// Forgets the copies (the storage is about to change), handing their buffers to `give`.
    pub(crate) fn clear(&mut self, mut give: impl FnMut(Vec<E>)) {
        for slot in &mut self.slots {
            *slot.reads.get_mut() = 0;
            if let Some(p) = slot.packed.take() {
                give(p.data);
            }
        }
    }
}

/// The panels of a `k x n` matrix `b`: panel `q` holds columns `q * NR ..` as a row-major
/// `k x NR` block, columns past `n` zero.
pub(crate) fn pack<E: Element>(k: usize, n: usize, b: MatRef<E>) -> Vec<E> {
    /// Columns gathered together from a transposed `b`: eight contiguous source rows feed
    /// eight adjacent elements of each panel row.
    const W: usize = 8;
    let panels = n.div_ceil(NR);
    let mut out = crate::storage::zeros(panels * k * NR);
    for (q, panel) in out.chunks_exact_mut(k * NR).enumerate() {
        let cols = NR.min(n - q * NR);
        let col = |jj: usize| q * NR + jj;
        if b.cs == 1 {
            // rows of b are contiguous: one copy per panel row
            for (p, dst) in panel.chunks_exact_mut(NR).enumerate() {
                let src = p * b.rs + col(0);
                dst[..cols].copy_from_slice(&b.data[src..src + cols]);
            }
        } else if b.rs == 1 {
            // columns of b are contiguous (`w.t()` of a row-major `w`)
            let full = cols / W * W;
            for j0 in (0..full).step_by(W) {
                let src: [&[E]; W] = std::array::from_fn(|j| {
                    let s = col(j0 + j) * b.cs;
                    &b.data[s..s + k]
                });
                for (p, dst) in panel.chunks_exact_mut(NR).enumerate() {
                    for (d, s) in dst[j0..j0 + W].iter_mut().zip(&src) {
                        *d = s[p];
                    }
                }
            }
            for jj in full..cols {
                let s = col(jj) * b.cs;
                for (dst, &v) in panel.chunks_exact_mut(NR).zip(&b.data[s..s + k]) {
                    dst[jj] = v;
                }
            }
        } else {
            for (p, dst) in panel.chunks_exact_mut(NR).enumerate() {
                for (jj, d) in dst[..cols].iter_mut().enumerate() {
                    *d = b.data[p * b.rs + col(jj) * b.cs];
                }
            }
        }
    }
    out
}

/// `c = a @ b` for `a: m x k` and `b` given as the panels of a `k x n` matrix (see [`pack`]),
/// writing the `m x n` result into `c` with row stride `ldc`. Only columns `j0..n` are
/// computed when `j0 > 0` (a multiple of [`NR`]); they land in `c` from its column 0.
///
/// The tile kernel reads [`MR`] rows of `a` in place when they are contiguous (a row-major
/// `a`, the usual case); other layouts are copied to row-major first.
pub(crate) fn product<E: Element>(
    tile: TileFn<E>,
    (m, k, n): (usize, usize, usize),
    j0: usize,
    a: MatRef<E>,
    panels: &[E],
    c: &mut [E],
    ldc: usize,
) {
    debug_assert_eq!(j0 % NR, 0);
    debug_assert!(panels.len() >= n.div_ceil(NR) * k * NR);
    if let (1, Some(row)) = (m, E::panel_row()) {
        product_row(row, (k, n), j0, a, panels, &mut c[..n - j0]);
        return;
    }
    let copy = (a.cs != 1).then(|| {
        let mut rows = crate::storage::overwritable(m * k);
        for (i, row) in rows.chunks_exact_mut(k).enumerate() {
            for (p, v) in row.iter_mut().enumerate() {
                *v = a.data[i * a.rs + p * a.cs];
            }
        }
        rows
    });
    let (data, rs) = match &copy {
        Some(rows) => (&rows[..], k),
        None => (a.data, a.rs),
    };
    // rows past m read zeros (and are not written back)
    let zero = if m % MR == 0 {
        Vec::new()
    } else {
        crate::storage::zeros(k)
    };
    let row = |i: usize| {
        if i < m {
            &data[i * rs..i * rs + k]
        } else {
            &zero[..]
        }
    };
    let mut out = [E::zero(); MR * NR];
    for q in j0 / NR..n.div_ceil(NR) {
        let panel = &panels[q * k * NR..(q + 1) * k * NR];
        let (c0, cols) = (q * NR - j0, NR.min(n - q * NR));
        for i0 in (0..m).step_by(MR) {
            tile(k, std::array::from_fn(|i| row(i0 + i)), panel, &mut out);
            for i in 0..MR.min(m - i0) {
                let dst = (i0 + i) * ldc + c0;
                c[dst..dst + cols].copy_from_slice(&out[i * NR..i * NR + cols]);
            }
        }
    }
    if let Some(rows) = copy {
        crate::storage::give(rows);
    }
    crate::storage::give(zero);
}

/// [`product`] for one row: `c = a @ b[:, j0..n]` two panels at a time.
fn product_row<E: Element>(
    row: RowFn<E>,
    (k, n): (usize, usize),
    j0: usize,
    a: MatRef<E>,
    panels: &[E],
    c: &mut [E],
) {
    let copy = (a.cs != 1).then(|| (0..k).map(|p| a.data[p * a.cs]).collect::<Vec<E>>());
    let a = copy.as_deref().unwrap_or(&a.data[..k]);
    let panel = |q: usize| &panels[q * k * NR..(q + 1) * k * NR];
    let mut out = [E::zero(); 2 * NR];
    let last = n.div_ceil(NR);
    for q in (j0 / NR..last).step_by(2) {
        // an odd last panel is paired with itself, its second half discarded
        row(k, a, [panel(q), panel((q + 1).min(last - 1))], &mut out);
        let (c0, cols) = (q * NR - j0, (2 * NR).min(n - q * NR));
        c[c0..c0 + cols].copy_from_slice(&out[..cols]);
    }
}

/// The reference for a row kernel: `out[h * NR + j] = Σ_p a[p] b[h][p][j]`, one `mul_add` per
/// term in `p` order, for two panels `b[0]`, `b[1]`.
#[cfg(test)]
pub(crate) fn scalar_row<E: Element>(k: usize, a: &[E], b: [&[E]; 2], out: &mut [E; 2 * NR]) {
    out.fill(E::zero());
    for (half, panel) in out.chunks_exact_mut(NR).zip(b) {
        for (&av, bp) in a[..k].iter().zip(panel.chunks_exact(NR)) {
            for (o, &bv) in half.iter_mut().zip(bp) {
                *o = av.mul_add(bv, *o);
            }
        }
    }
}

#[cfg(test)]
/// The reference tile: `out[i][j] = Σ_p a[i][p] b[p][j]` as one `mul_add` per term, in `p`
/// order, for `MR` rows of `a` and `b` one panel `[p][NR]`.
pub(crate) fn scalar_tile<E: Element>(k: usize, a: [&[E]; MR], b: &[E], out: &mut [E; MR * NR]) {
    out.fill(E::zero());
    for (p, bp) in b[..k * NR].chunks_exact(NR).enumerate() {
        for (i, row) in a.iter().enumerate() {
            for (o, &bv) in out[i * NR..(i + 1) * NR].iter_mut().zip(bp) {
                *o = row[p].mul_add(bv, *o);
            }
        }
    }
}

/// The AVX-512 `f32` tile kernel, if this CPU has AVX-512 (checked once).
pub(crate) fn f32_tile() -> Option<TileFn<f32>> {
    #[cfg(target_arch = "x86_64")]
    {
        static AVX512: OnceLock<bool> = OnceLock::new();
        if *AVX512.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f")) {
            return Some(avx512::tile_entry);
        }
    }
    None
}

/// The AVX-512 `f32` one-row kernel, if this CPU has AVX-512.
pub(crate) fn f32_row() -> Option<RowFn<f32>> {
    #[cfg(target_arch = "x86_64")]
    if f32_tile().is_some() {
        return Some(avx512::row_entry);
    }
    None
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{MR, NR};
    use std::arch::x86_64::{__m512, _mm512_fmadd_ps, _mm512_set1_ps, _mm512_setzero_ps};

    /// Handed out only by [`super::f32_tile`], after the CPU reported AVX-512.
    pub(super) fn tile_entry(k: usize, a: [&[f32]; MR], b: &[f32], out: &mut [f32; MR * NR]) {
        // SAFETY: `tile` is an ordinary safe function compiled for AVX-512; calling it is sound
        // on a CPU that has AVX-512F, which `f32_tile` checked (`is_x86_feature_detected!`)
        // before handing out this entry point. Its memory accesses are bounds-checked slices.
        unsafe { tile(k, a, b, out) }
    }

    /// Handed out only by [`super::f32_row`], after the CPU reported AVX-512.
    pub(super) fn row_entry(k: usize, a: &[f32], b: [&[f32]; 2], out: &mut [f32; 2 * NR]) {
        // SAFETY: as for `tile_entry`: `row` is a safe function compiled for AVX-512, called
        // only on a CPU that reported AVX-512F; its accesses are bounds-checked slices.
        unsafe { row(k, a, b, out) }
    }

    /// One row against two panels: eight accumulator chains (one FMA latency apart), per `p`
    /// one broadcast of `a`, eight panel loads, eight FMAs.
    #[target_feature(enable = "avx512f")]
    fn row(k: usize, a: &[f32], b: [&[f32]; 2], out: &mut [f32; 2 * NR]) {
        let mut acc = [_mm512_setzero_ps(); 2 * NR / 16];
        let (b0, b1) = (&b[0][..k * NR], &b[1][..k * NR]);
        for ((&av, p0), p1) in a[..k]
            .iter()
            .zip(b0.chunks_exact(NR))
            .zip(b1.chunks_exact(NR))
        {
            let av = _mm512_set1_ps(av);
            let bv = [
                load(p0),
                load(&p0[16..]),
                load(&p0[32..]),
                load(&p0[48..]),
                load(p1),
                load(&p1[16..]),
                load(&p1[32..]),
                load(&p1[48..]),
            ];
            for (r, &bv) in acc.iter_mut().zip(&bv) {
                *r = _mm512_fmadd_ps(av, bv, *r);
            }
        }
        for (r, d) in acc.iter().zip(out.chunks_exact_mut(16)) {
            d.copy_from_slice(&bytemuck::cast::<__m512, [f32; 16]>(*r));
        }
    }

    #[target_feature(enable = "avx512f")]
    fn load(b: &[f32]) -> __m512 {
        let v: [f32; 16] = b[..16].try_into().expect("sixteen lanes");
        bytemuck::cast(v)
    }

    /// 4 x 64 accumulators in sixteen registers; per `p`: four panel loads, four broadcasts
    /// of `a` (one element of each row), sixteen FMAs.
    #[target_feature(enable = "avx512f")]
    fn tile(k: usize, a: [&[f32]; MR], b: &[f32], out: &mut [f32; MR * NR]) {
        let mut acc = [[_mm512_setzero_ps(); NR / 16]; MR];
        let [a0, a1, a2, a3] = a.map(|r| &r[..k]);
        for (p, bp) in b[..k * NR].chunks_exact(NR).enumerate() {
            let bv = [load(bp), load(&bp[16..]), load(&bp[32..]), load(&bp[48..])];
            for (row, av) in acc.iter_mut().zip([a0[p], a1[p], a2[p], a3[p]]) {
                let av = _mm512_set1_ps(av);
                for (r, &bv) in row.iter_mut().zip(&bv) {
                    *r = _mm512_fmadd_ps(av, bv, *r);
                }
            }
        }
        for (row, dst) in acc.iter().zip(out.chunks_exact_mut(NR)) {
            for (r, d) in row.iter().zip(dst.chunks_exact_mut(16)) {
                d.copy_from_slice(&bytemuck::cast::<__m512, [f32; 16]>(*r));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gemm::naive;

    #[test]
    fn packing_pads_the_last_panel_with_zeros() {
        // b = [[0, 1, ..., 69], [70, ...]]: 2 x 70, two panels
        let b: Vec<f64> = (0..140).map(f64::from).collect();
        let p = pack(
            2,
            70,
            MatRef {
                data: &b,
                rs: 70,
                cs: 1,
            },
        );
        assert_eq!(p.len(), 2 * 2 * NR);
        assert_eq!(p[0], 0.0);
        assert_eq!(p[NR - 1], 63.0);
        assert_eq!(p[NR], 70.0); // row 1 of panel 0
        assert_eq!(p[2 * NR], 64.0); // panel 1, row 0, column 64
        assert_eq!(p[2 * NR + 5], 69.0);
        assert_eq!(p[2 * NR + 6], 0.0); // padding
        assert_eq!(p[3 * NR + 5], 139.0);
    }

    #[test]
    fn packing_reads_every_layout_of_b() {
        // a 5 x 139 matrix (three panels, the last ragged, columns not a multiple of eight)
        // stored row-major, transposed (column-major), and with both strides above one
        let (k, n) = (5, 139);
        let val = |p: usize, j: usize| (p * 1000 + j) as f64;
        let row_major: Vec<f64> = (0..k * n).map(|x| val(x / n, x % n)).collect();
        let col_major: Vec<f64> = (0..k * n).map(|x| val(x % k, x / k)).collect();
        let spread: Vec<f64> = (0..k * n * 2)
            .map(|x| val(x / (2 * n), x % (2 * n) / 2))
            .collect();
        for (data, rs, cs) in [(&row_major, n, 1), (&col_major, 1, k), (&spread, 2 * n, 2)] {
            let p = pack(k, n, MatRef { data, rs, cs });
            for q in 0..n.div_ceil(NR) {
                for pp in 0..k {
                    for jj in 0..NR {
                        let j = q * NR + jj;
                        let want = if j < n { val(pp, j) } else { 0.0 };
                        assert_eq!(
                            p[(q * k + pp) * NR + jj],
                            want,
                            "strides {rs},{cs}: ({pp}, {j})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn products_over_panels_match_the_naive_product() {
        // ragged rows (m % MR), ragged columns (n % NR), a transposed and strided lhs, and a
        // computed column range starting at a later panel
        for &(m, k, n) in &[
            (1, 3, 5),
            (5, 7, 64),
            (9, 33, 130),
            (32, 40, 200),
            (4, 1, 65),
        ] {
            let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.11).cos()).collect();
            let at: Vec<f64> = (0..m * k).map(|x| a[(x % m) * k + x / m]).collect();
            let bm = MatRef {
                data: &b,
                rs: n,
                cs: 1,
            };
            let panels = pack(k, n, bm);
            for am in [
                MatRef {
                    data: &a,
                    rs: k,
                    cs: 1,
                },
                MatRef {
                    data: &at,
                    rs: 1,
                    cs: m,
                },
            ] {
                let want = naive(m, k, n, am, bm);
                for j0 in (0..n).step_by(NR) {
                    let w = n - j0;
                    let mut c = vec![f64::NAN; m * w];
                    product(scalar_tile, (m, k, n), j0, am, &panels, &mut c, w);
                    for i in 0..m {
                        for j in 0..w {
                            let (x, y) = (c[i * w + j], want[i * n + j0 + j]);
                            assert!((x - y).abs() < 1e-12, "{m}x{k}x{n} from {j0}: {x} vs {y}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_cache_packs_on_the_second_read_and_forgets_on_clear() {
        let src: Vec<f64> = (0..6).map(f64::from).collect(); // [[0,1,2],[3,4,5]]
        let mut cache = PanelCache::default();
        assert!(cache.panels(&src, Read::AsStored, (2, 3), false).is_none());
        let p = cache.panels(&src, Read::AsStored, (2, 3), false).unwrap();
        assert_eq!(
            (p.len(), p[0], p[1], p[2], p[3], p[NR]),
            (2 * NR, 0.0, 1.0, 2.0, 0.0, 3.0)
        );
        // the transposed read has its own count: w.t() of [[0,1,2],[3,4,5]] is 3 x 2
        assert!(cache
            .panels(&src, Read::Transposed, (3, 2), false)
            .is_none());
        let t = cache.panels(&src, Read::Transposed, (3, 2), false).unwrap();
        assert_eq!((t[0], t[1], t[NR], t[NR + 1]), (0.0, 3.0, 1.0, 4.0));
        // panels of other dimensions are never handed out
        assert!(cache.panels(&src, Read::AsStored, (3, 2), false).is_none());
        let mut freed = 0;
        cache.clear(|v| freed += v.len());
        // an eager request packs on the first read
        assert!(cache.panels(&src, Read::AsStored, (2, 3), true).is_some());
        cache.clear(|v| freed += v.len());
        freed -= 2 * NR;
        assert_eq!(freed, (2 + 3) * NR); // k = 2 and k = 3 rows of one panel each
        assert!(cache.panels(&src, Read::AsStored, (2, 3), false).is_none());
    }

    #[test]
    fn the_avx512_tile_gives_the_scalar_tiles_bits() {
        let Some(tile) = f32_tile() else {
            eprintln!("this CPU has no AVX-512: the f32 panel kernel is not used here");
            return;
        };
        for k in [1, 2, 7, 256, 1000] {
            let a: Vec<f32> = (0..k * MR)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
                .collect();
            let rows: [&[f32]; MR] = std::array::from_fn(|i| &a[i * k..(i + 1) * k]);
            let b: Vec<f32> = (0..k * NR)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.021)
                .collect();
            let (mut want, mut got) = ([0f32; MR * NR], [f32::NAN; MR * NR]);
            scalar_tile(k, rows, &b, &mut want);
            tile(k, rows, &b, &mut got);
            assert_eq!(want.map(f32::to_bits), got.map(f32::to_bits), "k = {k}");
        }
    }

    #[test]
    fn the_avx512_row_kernel_gives_the_scalar_bits_and_rows_are_products() {
        let Some(row) = f32_row() else {
            eprintln!("this CPU has no AVX-512: the f32 panel kernel is not used here");
            return;
        };
        for k in [1, 5, 100, 1024] {
            let a: Vec<f32> = (0..k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
                .collect();
            let b: Vec<f32> = (0..2 * k * NR)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.021)
                .collect();
            let panels = [&b[..k * NR], &b[k * NR..]];
            let (mut want, mut got) = ([0f32; 2 * NR], [f32::NAN; 2 * NR]);
            scalar_row(k, &a, panels, &mut want);
            row(k, &a, panels, &mut got);
            assert_eq!(want.map(f32::to_bits), got.map(f32::to_bits), "k = {k}");
        }
        // one-row products over 1, 2 and 3 panels (an odd last one), from a later panel, and
        // with a strided row
        for (k, n) in [(7, 50), (9, 128), (33, 150)] {
            let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.37).sin()).collect();
            let a: Vec<f32> = (0..2 * k).map(|i| (i as f32 * 0.11).cos()).collect();
            let panels = pack(
                k,
                n,
                MatRef {
                    data: &b,
                    rs: n,
                    cs: 1,
                },
            );
            for (data, cs) in [(&a[..k], 1), (&a[..], 2)] {
                let want: Vec<f32> = (0..n)
                    .map(|j| (0..k).map(|p| data[p * cs] * b[p * n + j]).sum())
                    .collect();
                for j0 in (0..n).step_by(NR) {
                    let mut c = vec![f32::NAN; n - j0];
                    let am = MatRef {
                        data,
                        rs: k * cs,
                        cs,
                    };
                    product(
                        f32_tile().unwrap(),
                        (1, k, n),
                        j0,
                        am,
                        &panels,
                        &mut c,
                        n - j0,
                    );
                    for (x, y) in c.iter().zip(&want[j0..]) {
                        assert!((x - y).abs() < 1e-4, "{k}x{n} from {j0}: {x} vs {y}");
                    }
                }
            }
        }
    }

    /// `x @ w.t()` and `g @ w` for a weight read again and again, on `threads` threads.
    fn products(
        x: &crate::Tensor<f32>,
        g: &crate::Tensor<f32>,
        w: &crate::Tensor<f32>,
        threads: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            (
                x.matmul(&w.t().unwrap()).unwrap().to_vec(),
                g.matmul(w).unwrap().to_vec(),
            )
        })
    }

    #[test]
    fn a_weight_read_again_goes_through_panels_on_one_and_two_threads() {
        let _helper = crate::helper::TEST_LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        use rand::{rngs::StdRng, SeedableRng};
        if f32_tile().is_none() {
            eprintln!("this CPU has no AVX-512: the f32 panel kernel is not used here");
            return;
        }
        let rng = &mut StdRng::seed_from_u64(7);
        // B1's recurrent shapes (a column cut on two threads, k = 1024 beyond matrixmultiply's
        // 256-deep blocks), ragged ones (a cut moved to a panel boundary), and m > n from
        // EAGER_M rows (a row cut, panels made on the first read)
        for (m, k, n) in [
            (32, 256, 1024),
            (37, 200, 130),
            (300, 96, 72),
            (1, 256, 1024), // batch-1 sampling: the row kernel, a column cut on two threads
            (1, 100, 100),  // B3's step: an odd panel count
        ] {
            let eager = m >= EAGER_M;
            let x = crate::Tensor::<f32>::randn(&[m, k], 0.0, 1.0, rng).unwrap();
            let g = crate::Tensor::<f32>::randn(&[m, n], 0.0, 1.0, rng).unwrap();
            let p =
                crate::Parameter::new(crate::Tensor::<f32>::randn(&[n, k], 0.0, 1.0, rng).unwrap());
            let w = p.value();
            let packed = |w: &crate::Tensor<f32>| {
                let slots = &w.storage_arc().panel_cache().slots;
                slots
                    .iter()
                    .map(|s| s.packed.get().is_some())
                    .collect::<Vec<_>>()
            };
            // the first read packs only when eager (else it goes to matrixmultiply)
            let first = products(&x, &g, &w, 1);
            assert_eq!(packed(&w), [eager, eager], "{m}x{k}x{n}");
            let one = products(&x, &g, &w, 1);
            assert_eq!(packed(&w), [true, true], "{m}x{k}x{n}");
            // the values are the product's, and the panel kernel's sums are matrixmultiply's
            // bits up to its 256-deep blocks
            let (xv, gv, wv) = (x.to_f64_vec(), g.to_f64_vec(), w.to_f64_vec());
            let mat = |data, rs, cs| MatRef { data, rs, cs };
            let want = (
                naive(m, k, n, mat(&xv, k, 1), mat(&wv, 1, k)),
                naive(m, n, k, mat(&gv, n, 1), mat(&wv, k, 1)),
            );
            for (got, want) in [(&one.0, &want.0), (&one.1, &want.1)] {
                for (a, b) in got.iter().zip(want.iter()) {
                    let a = f64::from(*a);
                    assert!(
                        (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                        "{m}x{k}x{n}: {a} vs {b}"
                    );
                }
            }
            if m > 1 {
                assert_eq!(
                    one.0, first.0,
                    "{m}x{k}x{n}: k <= 256 gives matrixmultiply's bits"
                );
            }
            for _ in 0..3 {
                assert_eq!(products(&x, &g, &w, 2), one, "{m}x{k}x{n} on two threads");
            }
            // an optimizer-style update drops the panels: the next products (a first read
            // again) see the new values
            drop(w);
            p.update(|d| d.iter_mut().for_each(|v| *v *= 2.0)).unwrap();
            let doubled = products(&x, &g, &p.value(), 1);
            for (new, old) in [(&doubled.0, &first.0), (&doubled.1, &first.1)] {
                assert!(new.iter().zip(old.iter()).all(|(a, b)| *a == 2.0 * b));
            }
        }
    }
}
