//! The AVX-512 `f32` kernels of the packed-panel products: safe functions compiled with
//! `#[target_feature(enable = "avx512f")]`, entered through the two functions handed out by
//! [`super::kernels`] once the CPU has reported AVX-512.

use super::{MR, NR};
use crate::element::CmMode;
use std::arch::x86_64::{
    __m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_set1_ps, _mm512_setzero_ps,
};

/// Handed out only by [`super::kernels`], after the CPU reported AVX-512.
pub(super) fn tile_entry(k: usize, a: [&[f32]; MR], b: &[f32], out: &mut [f32; MR * NR]) {
    // SAFETY: `tile` is an ordinary safe function compiled for AVX-512; calling it is sound
    // on a CPU that has AVX-512F, which `kernels` checked (`is_x86_feature_detected!`)
    // before handing out this entry point. Its memory accesses are bounds-checked slices.
    unsafe { tile(k, a, b, out) }
}

/// Handed out only by [`super::kernels`], after the CPU reported AVX-512.
pub(super) fn tile6_entry(k: usize, a: [&[f32]; 6], b: &[f32], out: &mut [f32; 6 * NR]) {
    // SAFETY: as for `tile_entry`: `tile6` is a safe function compiled for AVX-512, called
    // only on a CPU that reported AVX-512F; its accesses are bounds-checked slices.
    unsafe { tile6(k, a, b, out) }
}

/// Handed out only by [`super::kernels`], after the CPU reported AVX-512.
pub(super) fn row_entry(k: usize, a: &[f32], b: [&[f32]; 2], out: &mut [f32; 2 * NR]) {
    // SAFETY: as for `tile_entry`: `row` is a safe function compiled for AVX-512, called
    // only on a CPU that reported AVX-512F; its accesses are bounds-checked slices.
    unsafe { row(k, a, b, out) }
}

/// Handed out only by [`super::f32_wide`], after the CPU reported AVX-512.
pub(super) fn tile6_cm_entry(
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    out: &mut [f32],
    ldo: usize,
    mode: CmMode,
) {
    // SAFETY: as for `tile_entry`: `tile6_cm` is a safe function compiled for AVX-512, called
    // only on a CPU that reported AVX-512F; its accesses are bounds-checked slices.
    unsafe { tile6_cm(k, a, lda, b, out, ldo, mode) }
}

/// Handed out only by [`super::f32_wide`], after the CPU reported AVX-512.
pub(super) fn cols8_entry(
    k: usize,
    a: &[f32],
    lda: usize,
    x: &[f32],
    ldx: usize,
    acc: &mut [[f32; 16]; 24],
) {
    // SAFETY: as for `tile_entry`: `cols8` is a safe function compiled for AVX-512, called
    // only on a CPU that reported AVX-512F; its accesses are bounds-checked slices.
    unsafe { cols8(k, a, lda, x, ldx, acc) }
}

/// The six-row tile of [`tile6`] with its left operand read column-major (six contiguous
/// values per `p`, `lda` apart), the sums put into six rows of `out`, `ldo` apart, as `mode`
/// says: written, continued from the values there, or added to them.
#[target_feature(enable = "avx512f")]
fn tile6_cm(k: usize, a: &[f32], lda: usize, b: &[f32], out: &mut [f32], ldo: usize, mode: CmMode) {
    let mut acc = [[_mm512_setzero_ps(); NR / 16]; 6];
    if mode == CmMode::Continue {
        for (i, row) in acc.iter_mut().enumerate() {
            for (h, r) in row.iter_mut().enumerate() {
                *r = load(&out[i * ldo + 16 * h..]);
            }
        }
    }
    for (p, bp) in b[..k * NR].chunks_exact(NR).enumerate() {
        let bv = [load(bp), load(&bp[16..]), load(&bp[32..]), load(&bp[48..])];
        let ap: &[f32; 6] = a[p * lda..p * lda + 6].try_into().expect("six rows");
        for (row, &av) in acc.iter_mut().zip(ap) {
            let av = _mm512_set1_ps(av);
            for (r, &bv) in row.iter_mut().zip(&bv) {
                *r = _mm512_fmadd_ps(av, bv, *r);
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        for (h, &r) in row.iter().enumerate() {
            let d = &mut out[i * ldo + 16 * h..i * ldo + 16 * h + 16];
            let r = match mode {
                CmMode::Fold => _mm512_add_ps(load(d), r),
                CmMode::Write | CmMode::Continue => r,
            };
            d.copy_from_slice(&bytemuck::cast::<__m512, [f32; 16]>(r));
        }
    }
}

/// 48 rows (three vectors of `a`'s row `p`) times eight broadcast values of `x`'s row `p`:
/// twenty-four accumulators, continued from `acc`.
#[target_feature(enable = "avx512f")]
fn cols8(k: usize, a: &[f32], lda: usize, x: &[f32], ldx: usize, acc: &mut [[f32; 16]; 24]) {
    let mut r: [__m512; 24] = std::array::from_fn(|i| load(&acc[i]));
    for p in 0..k {
        let ap = &a[p * lda..p * lda + 48];
        let v = [load(ap), load(&ap[16..]), load(&ap[32..])];
        let xp: &[f32; 8] = x[p * ldx..p * ldx + 8].try_into().expect("eight columns");
        for (c, &xv) in xp.iter().enumerate() {
            let xv = _mm512_set1_ps(xv);
            for (h, &v) in v.iter().enumerate() {
                r[3 * c + h] = _mm512_fmadd_ps(v, xv, r[3 * c + h]);
            }
        }
    }
    for (d, r) in acc.iter_mut().zip(&r) {
        *d = bytemuck::cast::<__m512, [f32; 16]>(*r);
    }
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

/// 6 x 64 accumulators in twenty-four registers (with the four panel vectors and a broadcast,
/// 29 of the 32); per `p`: four panel loads, six broadcasts, twenty-four FMAs. Against the
/// `4 x 64` tile, each panel row loaded feeds half as many FMAs again. On the Intel AVX-512
/// machine of the fourteenth session (scratch, one thread, whole tiles only) a 32x1024x256
/// product ran at 171 GFLOP/s against 154 for four rows.
#[target_feature(enable = "avx512f")]
fn tile6(k: usize, a: [&[f32]; 6], b: &[f32], out: &mut [f32; 6 * NR]) {
    let mut acc = [[_mm512_setzero_ps(); NR / 16]; 6];
    let [a0, a1, a2, a3, a4, a5] = a.map(|r| &r[..k]);
    let rows = a0.iter().zip(a1).zip(a2).zip(a3).zip(a4).zip(a5);
    for (bp, (((((&x0, &x1), &x2), &x3), &x4), &x5)) in b[..k * NR].chunks_exact(NR).zip(rows) {
        let bv = [load(bp), load(&bp[16..]), load(&bp[32..]), load(&bp[48..])];
        for (row, av) in acc.iter_mut().zip([x0, x1, x2, x3, x4, x5]) {
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
