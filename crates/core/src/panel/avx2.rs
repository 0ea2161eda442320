//! The AVX2 + FMA `f32` kernels of the packed-panel products, for x86-64 CPUs without
//! AVX-512: safe functions compiled with `#[target_feature(enable = "avx2,fma")]`, entered
//! through the two functions handed out by [`super::avx2_kernels`] once the CPU has reported
//! both features.
//!
//! AVX2 has sixteen 8-lane registers, too few to hold a whole `4 x 64` tile, so the tile is
//! computed in three column blocks of 24, 24 and 16 columns (12, 12 and 8 accumulators), each
//! over the whole depth `k` it is given. The tile can continue sums already in its output,
//! so that `super::product` can walk the depth in chunks whose part of the panel stays in L1
//! for every block of rows. Every output is still one `fma` per `p` in
//! order from zero: the scalar references' bits.

use super::{MR, NR};
use std::arch::x86_64::{__m256, _mm256_fmadd_ps, _mm256_set1_ps, _mm256_setzero_ps};

/// Lanes of one register.
const L: usize = 8;

/// The tile, written to `out` with row stride `ldo` and continuing the sums there when `add`
/// is set; handed out only by [`super::avx2_kernels`], after the CPU reported AVX2 and FMA.
pub(super) fn tile_entry(
    k: usize,
    a: [&[f32]; MR],
    b: &[f32],
    out: &mut [f32],
    ldo: usize,
    add: bool,
) {
    // SAFETY: `tile` is an ordinary safe function compiled for AVX2 and FMA; calling it is
    // sound on a CPU that has both, which `avx2_kernels` checked (`is_x86_feature_detected!`)
    // before handing out this entry point. Its memory accesses are bounds-checked slices.
    unsafe { tile(k, a, b, out, ldo, add) }
}

/// Handed out only by [`super::f32_row`], after the CPU reported AVX2 and FMA.
pub(super) fn row_entry(k: usize, a: &[f32], b: [&[f32]; 2], out: &mut [f32; 2 * NR]) {
    // SAFETY: as for `tile_entry`: `row` is a safe function compiled for AVX2 and FMA, called
    // only on a CPU that reported both; its accesses are bounds-checked slices.
    unsafe { row(k, a, b, out) }
}

#[target_feature(enable = "avx2,fma")]
fn load(b: &[f32]) -> __m256 {
    let v: [f32; L] = b[..L].try_into().expect("eight lanes");
    bytemuck::cast(v)
}

#[target_feature(enable = "avx2,fma")]
fn store(r: __m256, d: &mut [f32]) {
    d[..L].copy_from_slice(&bytemuck::cast::<__m256, [f32; L]>(r));
}

/// The `4 x 64` tile as three column blocks (see the module doc), row `i` at `out[i * ldo..]`,
/// from the sums there when `add` is set.
#[target_feature(enable = "avx2,fma")]
fn tile(k: usize, a: [&[f32]; MR], b: &[f32], out: &mut [f32], ldo: usize, add: bool) {
    let a = a.map(|r| &r[..k]);
    let b = &b[..k * NR];
    // the four output rows, NR elements each, as disjoint slices
    let (r0, rest) = out.split_at_mut(ldo);
    let (r1, rest) = rest.split_at_mut(ldo);
    let (r2, r3) = rest.split_at_mut(ldo);
    let mut rows = [&mut r0[..NR], &mut r1[..NR], &mut r2[..NR], &mut r3[..NR]];
    block::<3, 0>(a, b, &mut rows, add);
    block::<3, 24>(a, b, &mut rows, add);
    block::<2, 48>(a, b, &mut rows, add);
}

/// Columns `C0 .. C0 + 8 V` of the tile: `4 x V` accumulators (zero, or loaded from `out`
/// when `add` is set); per `p`, `V` panel loads, four broadcasts of `a` (one element of each
/// row) and `4 V` FMAs.
#[target_feature(enable = "avx2,fma")]
fn block<const V: usize, const C0: usize>(
    a: [&[f32]; MR],
    b: &[f32],
    out: &mut [&mut [f32]; MR],
    add: bool,
) {
    let mut acc = [[_mm256_setzero_ps(); V]; MR];
    if add {
        for (row, src) in acc.iter_mut().zip(out.iter()) {
            for (v, r) in row.iter_mut().enumerate() {
                *r = load(&src[C0 + v * L..]);
            }
        }
    }
    let [a0, a1, a2, a3] = a;
    let rows = a0.iter().zip(a1).zip(a2).zip(a3);
    for (bp, (((&x0, &x1), &x2), &x3)) in b.chunks_exact(NR).zip(rows) {
        let bp = &bp[C0..C0 + V * L];
        let mut bv = [_mm256_setzero_ps(); V];
        for (v, r) in bv.iter_mut().enumerate() {
            *r = load(&bp[v * L..]);
        }
        for (row, x) in acc.iter_mut().zip([x0, x1, x2, x3]) {
            let x = _mm256_set1_ps(x);
            for (r, &bv) in row.iter_mut().zip(&bv) {
                *r = _mm256_fmadd_ps(x, bv, *r);
            }
        }
    }
    for (row, dst) in acc.iter().zip(out.iter_mut()) {
        for (v, r) in row.iter().enumerate() {
            store(*r, &mut dst[C0 + v * L..]);
        }
    }
}

/// One row against two panels, one panel at a time: eight accumulators (one FMA latency
/// apart on two FMA units); per `p`, one broadcast of `a`, eight panel loads, eight FMAs.
#[target_feature(enable = "avx2,fma")]
fn row(k: usize, a: &[f32], b: [&[f32]; 2], out: &mut [f32; 2 * NR]) {
    for (panel, half) in b.iter().zip(out.chunks_exact_mut(NR)) {
        let mut acc = [_mm256_setzero_ps(); NR / L];
        for (&x, bp) in a[..k].iter().zip(panel[..k * NR].chunks_exact(NR)) {
            let x = _mm256_set1_ps(x);
            for (v, r) in acc.iter_mut().enumerate() {
                *r = _mm256_fmadd_ps(x, load(&bp[v * L..]), *r);
            }
        }
        for (r, d) in acc.iter().zip(half.chunks_exact_mut(L)) {
            store(*r, d);
        }
    }
}
