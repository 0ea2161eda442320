//! The element types a [`Tensor`](crate::Tensor) can hold: `f32` (the default) and `f64`.

use std::fmt::{Debug, Display};
use std::iter::Sum;

use crate::ops::addmm_act::Activation;
use num_traits::{Float, NumAssign};

/// Data type tag of an element type, used in error messages and checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 64-bit IEEE float.
    F64,
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DType::F32 => write!(f, "f32"),
            DType::F64 => write!(f, "f64"),
        }
    }
}

/// A floating-point element type usable in tensors.
///
/// Implemented for `f32` and `f64`. The trait carries the one piece of code that differs between
/// them: the call into `matrixmultiply`'s GEMM.
///
/// ```
/// use retrograd_core::{Element, DType};
/// assert_eq!(<f64 as Element>::DTYPE, DType::F64);
/// assert_eq!(<f32 as Element>::of_f64(0.5), 0.5f32);
/// ```
pub trait Element:
    Float + NumAssign + Sum + Default + Debug + Display + Send + Sync + 'static
{
    /// The dtype tag.
    const DTYPE: DType;

    /// Converts from `f64` (rounding for `f32`).
    fn of_f64(v: f64) -> Self;

    /// Converts to `f64` (exact).
    fn as_f64(self) -> f64;

    /// `e^x` as the elementwise kernels compute it: the correctly rounded libm result for `f64`,
    /// a branch-free polynomial for `f32` (within 2 ulp; it vectorizes, libm calls do not).
    fn exp_k(self) -> Self {
        self.exp()
    }

    /// `tanh(x)` as the elementwise kernels compute it (see [`Element::exp_k`]).
    fn tanh_k(self) -> Self {
        self.tanh()
    }

    /// The tile kernel of retrograd's packed-panel products on this CPU and how it walks a
    /// panel, if this type has one (`f32` on x86-64 with AVX-512, or AVX2 and FMA); internal
    /// to the GEMM dispatch.
    #[doc(hidden)]
    fn panel_tile() -> Option<PanelTiles<Self>> {
        None
    }

    /// The one-row kernel of the packed-panel products, where [`Element::panel_tile`] exists.
    #[doc(hidden)]
    fn panel_row() -> Option<RowFn<Self>> {
        None
    }

    /// The kernels of a wide weight gradient formed without transposes, if this type has
    /// them on this CPU (`f32` with AVX-512); internal to the GEMM dispatch.
    #[doc(hidden)]
    fn wide_kernels() -> Option<WideKernels<Self>> {
        None
    }

    /// The activation and softmax loops at the CPU's widest vectors, if this type has them
    /// (`f32` on a CPU with AVX-512, see the crate's `lanes` module); internal to the
    /// elementwise ops.
    #[doc(hidden)]
    fn lanes() -> Option<&'static Lanes<Self>> {
        None
    }

    /// `1 / (1 + e^-x)` as the elementwise kernels compute it (see [`Element::exp_k`]).
    fn sigmoid_k(self) -> Self {
        if self >= Self::zero() {
            Self::one() / (Self::one() + (-self).exp())
        } else {
            let e = self.exp();
            e / (Self::one() + e)
        }
    }

    /// `C = alpha * A @ B + beta * C` for strided row/column layouts.
    ///
    /// `a` must hold every element `a[i * rsa + p * csa]` for `i < m`, `p < k`; likewise for `b`
    /// (`k x n`) and `c` (`m x n`), with non-negative strides. Panics otherwise (checked in O(1)
    /// before the call into the GEMM crate, so a bad call can never read out of bounds).
    ///
    /// `f64` products, and the `f32` products that `prefers_gemm_crate` leaves to it, run on
    /// `matrixmultiply`; the other `f32` products on the `gemm` crate (it took 0.6–0.97 of
    /// `matrixmultiply`'s time on the left operands with contiguous rows that forward products
    /// and input gradients have).
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: &[Self],
        rsa: isize,
        csa: isize,
        b: &[Self],
        rsb: isize,
        csb: isize,
        beta: Self,
        c: &mut [Self],
        rsc: isize,
        csc: isize,
    );
}

/// A `4 x 64` tile of a packed-panel product: `(k, a, b, out)` with `a` four rows of `k`
/// elements, `b` one panel `[k][64]`, and `out` the row-major tile, overwritten (see the
/// crate's `panel` module).
#[doc(hidden)]
pub type TileFn<E> = for<'a> fn(usize, [&'a [E]; 4], &[E], &mut [E; 256]);

/// A `6 x 64` tile, as [`TileFn`] for six rows of `a`: `(k, a, b, out)`.
#[doc(hidden)]
pub type Tile6Fn<E> = for<'a> fn(usize, [&'a [E]; 6], &[E], &mut [E; 384]);

/// A [`TileFn`] that writes its `4 x 64` tile into `out` with row stride `ldo` (row `i` at
/// `out[i * ldo..i * ldo + 64]`), adding to the sums already there when its last argument is
/// `true` (one more `fma` per term, continuing each chain), and starting from zero when it is
/// `false`: `(k, a, b, out, ldo, add)`.
#[doc(hidden)]
pub type AccTileFn<E> = for<'a> fn(usize, [&'a [E]; 4], &[E], &mut [E], usize, bool);

/// `out = (g ⊙ a) ⊙ act'(y)` of [`Lanes`]: `(act, out, g, a, y)`.
#[doc(hidden)]
pub type ScaledGradsFn<E> = fn(Activation, &mut [E], &[E], &[E], &[E]);

/// The elementwise loops of [`Element::lanes`], each giving the bits of the scalar loop it
/// replaces (`act` is the [`Activation`] of the op; `out` is written over).
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct Lanes<E: 'static> {
    /// `y = act(y + c)`, `c` as long as `y`.
    pub added: fn(Activation, &mut [E], &[E]),
    /// `y = act(y)`.
    pub apply: fn(Activation, &mut [E]),
    /// `out = act(x)`, `out` as long as `x`.
    pub act: fn(Activation, &mut [E], &[E]),
    /// `out = a ⊙ act(x)`: `(act, out, x, a)`.
    pub mul_act: fn(Activation, &mut [E], &[E], &[E]),
    /// `out = g ⊙ act'(y)` with `y` the activation's output: `(act, out, g, y)`.
    pub grads: fn(Activation, &mut [E], &[E], &[E]),
    /// `out = (g ⊙ a) ⊙ act'(y)`: `(act, out, g, a, y)`.
    pub scaled_grads: ScaledGradsFn<E>,
    /// `out = exp(x - m)`: `(out, x, m)`, a softmax row's numerators.
    pub exp_shifted: fn(&mut [E], &[E], E),
    /// `out = w · (exp(x - m) / z)`: `(out, x, m, z, w)`, a softmax row scaled (the
    /// cross-entropy gradient before its target's `-w`).
    pub softmax_scaled: fn(&mut [E], &[E], E, E, E),
}

/// A packed-panel product's tile kernel and how it walks a `k x 64` panel (see the crate's
/// `panel` module).
#[doc(hidden)]
#[derive(Clone, Copy)]
pub enum PanelTiles<E: 'static> {
    /// Each block of six rows (`six`), and of four where six do not fit (`four`), over the
    /// whole depth, one block after the other: the panel is read once per block (from L2 when
    /// it is larger than L1). The AVX-512 kernels run so.
    Whole {
        /// The `4 x 64` tile.
        four: TileFn<E>,
        /// The `6 x 64` tile.
        six: Tile6Fn<E>,
    },
    /// The depth in chunks of 64, every block of rows taking a chunk before the next chunk
    /// starts, each block's sums kept in its own tile and continued: the chunk of the panel
    /// (16 KiB of `f32`) is read from L1 by every block after the first. The AVX2 kernel runs
    /// so. The same `fma` chains as a whole tile, so the same bits.
    Chunked(AccTileFn<E>),
}

/// A `6 x 64` tile whose left operand is read column-major: `(k, a, lda, b, out, ldo, mode)`
/// forms, for row `i < 6` of `out` (at `out[i * ldo..i * ldo + 64]`), the sums
/// `s[i][j] = Σ_p a[p * lda + i] b[p][j]` over the `k x 64` panel `b`, one `fma` per term in
/// `p` order, and puts them in as `mode` says (see [`CmMode`]).
#[doc(hidden)]
pub type CmTileFn<E> = for<'a> fn(usize, &'a [E], usize, &'a [E], &'a mut [E], usize, CmMode);

/// How a [`CmTileFn`] starts its sums and puts them into its output rows.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmMode {
    /// From zero, written over what was there.
    Write,
    /// From the values already there, written back: the chains continue, so a depth cut into
    /// passes gives the bits of one pass (see `ops::wide::at_g_rows`).
    Continue,
    /// From zero, then added to what was there (`out + s`, one rounding): a deferred weight
    /// gradient's chunk added to its running sum (see `deferred.rs`).
    Fold,
}

/// Eight columns of such a product for 48 rows of its output, the rows in vectors:
/// `(k, a, lda, x, ldx, acc)` adds `Σ_p a[p * lda + r] x[p * ldx + c]` (`r < 48`, `c < 8`,
/// one `fma` per term in `p` order) to `acc[3 c + r / 16][r % 16]`.
#[doc(hidden)]
pub type Cols8Fn<E> = for<'a> fn(usize, &'a [E], usize, &'a [E], usize, &'a mut [[E; 16]; 24]);

/// The kernels of a wide weight gradient formed without transposes (see
/// `ops::wide::at_g_rows`).
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct WideKernels<E: 'static> {
    /// Six output rows against one 64-column panel.
    pub six: CmTileFn<E>,
    /// 48 output rows, eight columns, for the columns past the last whole panel.
    pub cols8: Cols8Fn<E>,
}

/// One row against two panels of a packed-panel product: `(k, a, [b0, b1], out)` with `a` one
/// row of `k` elements, `b0` and `b1` panels `[k][64]`, `out` the two 64-wide results.
#[doc(hidden)]
pub type RowFn<E> = for<'a> fn(usize, &'a [E], [&'a [E]; 2], &mut [E; 128]);

/// True if every element `i * rs + j * cs` (`i < rows`, `j < cols`) lies inside `len`, with
/// non-negative strides.
fn within(rows: usize, cols: usize, rs: isize, cs: isize, len: usize) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    if rs < 0 || cs < 0 {
        return false;
    }
    let last = (rows as u128 - 1) * rs as u128 + (cols as u128 - 1) * cs as u128;
    last < len as u128
}

/// Whether an `f32` product of `a`: `m x k` (column stride `csa`) and `b`: `k x n` (column
/// stride `csb`) runs on the `gemm` crate rather than `matrixmultiply`: when `a`'s rows are
/// contiguous, and either it has 128 rows or more or `b`'s rows are contiguous too.
///
/// Measured on the project's AVX2 machine (Zen 3, one thread, min of several products): with
/// `a` row-major, `gemm` took 0.78–0.97 of `matrixmultiply`'s time from 128 rows on whatever
/// `b`'s layout (B2's 400x200x10000 decoder 17.8 against 19.8 ms, its 400x10000x200 input
/// gradient 18.6 against 20.4, B1's 2048x1024x64 input gradient 3.1 against 4.0); below 128
/// rows it won with a row-major `b` (0.6–0.9 of the time for `m = 16`) but lost with a
/// transposed one (`w.t()`, up to 1.75x the time at `k = 1024`). With a transposed `a` (the
/// weight gradients `gᵀ x`) it won nothing and lost up to 15% (B1's 1024x2048x64).
///
/// On the Intel AVX-512 machine of the fourteenth session (`gemm` 0.19 with its `x86-v4`
/// kernels against `matrixmultiply`'s AVX-512 one, one thread) the same rule held: row-major
/// `a` from 128 rows 1.1–1.5x faster (B2's decoder 11.2 against 13.2 ms, its input gradient
/// 10.9 against 12.8), 32 rows with a row-major `b` 92 against 139 µs and with `w.t()` 209
/// against 156; transposed `a` within 10% either way (B2's `gᵀ h` 14.6 against 13.7 ms).
pub(crate) fn prefers_gemm_crate(m: usize, csa: isize, csb: isize) -> bool {
    csa == 1 && (m >= 128 || csb == 1)
}

/// The `Element::gemm` method over one of matrixmultiply's entry points, and for the products
/// `$gemm_crate` picks, over the `gemm` crate; these two calls are the only `unsafe` in
/// retrograd.
macro_rules! impl_gemm {
    ($entry:ident, $gemm_crate:expr) => {
        fn gemm(
            m: usize,
            k: usize,
            n: usize,
            alpha: Self,
            a: &[Self],
            rsa: isize,
            csa: isize,
            b: &[Self],
            rsb: isize,
            csb: isize,
            beta: Self,
            c: &mut [Self],
            rsc: isize,
            csc: isize,
        ) {
            assert!(
                within(m, k, rsa, csa, a.len())
                    && within(k, n, rsb, csb, b.len())
                    && within(m, n, rsc, csc, c.len()),
                "gemm: operand strides reach outside the given slices"
            );
            if $gemm_crate(m, csa, csb) {
                // SAFETY: the assertion above proves that every element `gemm` reads of A
                // (m x k), B (k x n) and, when `beta != 0`, C (m x n), and every element it
                // writes of C, lies inside `a`, `b` and `c` at the given non-negative strides;
                // `c` is a unique borrow, so the write cannot alias a or b. Its
                // `dst = alpha' dst + beta' lhs rhs` takes our `beta` as `alpha'` and `alpha` as
                // `beta'`, and does not read `dst` when told not to (`beta == 0`), as BLAS.
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        c.as_mut_ptr(),
                        csc,
                        rsc,
                        beta != (0 as Self),
                        a.as_ptr(),
                        csa,
                        rsa,
                        b.as_ptr(),
                        csb,
                        rsb,
                        beta,
                        alpha,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    )
                }
                return;
            }
            // SAFETY: the assertion above proves that every offset `i * rs + j * cs`
            // matrixmultiply forms for A (m x k), B (k x n) and C (m x n) lies inside `a`, `b`
            // and `c` respectively; `c` is a unique borrow, so the write cannot alias a or b.
            unsafe {
                matrixmultiply::$entry(
                    m,
                    k,
                    n,
                    alpha,
                    a.as_ptr(),
                    rsa,
                    csa,
                    b.as_ptr(),
                    rsb,
                    csb,
                    beta,
                    c.as_mut_ptr(),
                    rsc,
                    csc,
                )
            }
        }
    };
}

/// `a * b + c`, fused (one rounding) where the build targets a CPU with FMA, as the
/// project's `.cargo/config.toml` does; two roundings elsewhere, where `f32::mul_add` would
/// be a libm call.
#[inline(always)]
fn fmadd(a: f32, b: f32, c: f32) -> f32 {
    if cfg!(target_feature = "fma") {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `(t, r)` with `z = n ln2 + r`, `|r| <= ln2 / 2` (ln2 split in a high part exact in f32
/// and a low correction; `n` rounded half to even) and `t` a float whose bits hold `n` (see
/// [`pow2`]). `z` must be within ±127 ln2.
#[inline(always)]
fn reduce_ln2(z: f32) -> (f32, f32) {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding 1.5 * 2^23 rounds to the nearest integer and leaves it in the low mantissa bits,
    // so `n` needs no float-to-int cast (Rust's saturating `as i32` does not vectorize: LLVM
    // converted each lane on its own, a third of the time of a 10k-class softmax).
    let t = fmadd(z, std::f32::consts::LOG2_E, ROUNDER);
    let n = t - ROUNDER;
    (t, fmadd(-n, LN2_LO, fmadd(-n, LN2_HI, z)))
}

/// See [`reduce_ln2`].
pub(crate) const ROUNDER: f32 = 12_582_912.0;

/// `2^n` for the `t` of [`reduce_ln2`]: its bits are ROUNDER's plus `n` (|n| <= 127), so this
/// is the biased exponent `n + 127` moved into place.
#[inline(always)]
fn pow2(t: f32) -> f32 {
    f32::from_bits(t.to_bits().wrapping_sub(ROUNDER.to_bits() - 127) << 23)
}

/// `e^x` for `f32` without a libm call, so loops over it vectorize.
///
/// Range reduction `x = n ln2 + r` (`reduce_ln2`), a degree-6 Taylor polynomial for `e^r`
/// (truncation error below 2e-8 relative on that interval) in Horner form with fused
/// multiply-adds, and `2^n` assembled from exponent bits. Overflow gives `+inf`, results below
/// the normal range flush to 0, NaN stays NaN. Within 3 ulp of `f64::exp` (test below).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    let (t, r) = reduce_ln2(x.clamp(-87.0, 88.0));
    // 1 + r + r^2/2! + ... + r^6/6!
    let p = 1.0 / 720.0;
    let p = fmadd(p, r, 1.0 / 120.0);
    let p = fmadd(p, r, 1.0 / 24.0);
    let p = fmadd(p, r, 1.0 / 6.0);
    let p = fmadd(p, r, 0.5);
    let p = fmadd(p, r, 1.0);
    let p = fmadd(p, r, 1.0);
    let y = p * pow2(t);
    let y = if x > 88.722_83 { f32::INFINITY } else { y };
    let y = if x < -87.336_54 { 0.0 } else { y };
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// `tanh(x)` for `f32` without a libm call: `tanh |x| = m / (m + 2)` with `m = e^{2|x|} - 1`,
/// the sign put back after. `m` comes from the reduction `2|x| = n ln2 + r` as
/// `2^n expm1(r) + (2^n - 1)`, with `expm1(r)` a degree-7 Taylor polynomial (truncation error
/// about 1e-8 relative for `|r| <= ln2 / 2`); for `n = 0` that is `expm1(r)` itself, so small
/// `x` keep their relative accuracy (no `1 - 2 / (e^2x + 1)` cancellation) on one branch-free
/// path. `|x|` is clamped at 9, where `tanh` rounds to 1 in f32. NaN stays NaN. Within 4 ulp
/// of `f64::tanh` (test below).
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    let (t, r) = reduce_ln2(2.0 * x.abs().min(9.0));
    // r + r^2/2! + ... + r^7/7!
    let p = 1.0 / 5040.0;
    let p = fmadd(p, r, 1.0 / 720.0);
    let p = fmadd(p, r, 1.0 / 120.0);
    let p = fmadd(p, r, 1.0 / 24.0);
    let p = fmadd(p, r, 1.0 / 6.0);
    let p = fmadd(p, r, 0.5);
    let p = fmadd(p, r, 1.0);
    let scale = pow2(t);
    let m = fmadd(scale, p * r, scale - 1.0);
    let y = (m / (m + 2.0)).copysign(x);
    if x.is_nan() {
        x
    } else {
        y
    }
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    #[inline(always)]
    fn exp_k(self) -> Self {
        exp_f32(self)
    }
    #[inline(always)]
    fn tanh_k(self) -> Self {
        tanh_f32(self)
    }
    #[inline(always)]
    fn sigmoid_k(self) -> Self {
        1.0 / (1.0 + exp_f32(-self))
    }
    fn of_f64(v: f64) -> Self {
        v as f32
    }
    fn as_f64(self) -> f64 {
        self as f64
    }
    #[inline]
    fn lanes() -> Option<&'static Lanes<Self>> {
        crate::lanes::f32_lanes()
    }
    fn panel_tile() -> Option<PanelTiles<Self>> {
        crate::panel::f32_tile()
    }
    fn panel_row() -> Option<RowFn<Self>> {
        crate::panel::f32_row()
    }
    fn wide_kernels() -> Option<WideKernels<Self>> {
        crate::panel::f32_wide()
    }
    impl_gemm!(sgemm, prefers_gemm_crate);
}

impl Element for f64 {
    const DTYPE: DType = DType::F64;
    fn of_f64(v: f64) -> Self {
        v
    }
    fn as_f64(self) -> f64 {
        self
    }
    impl_gemm!(dgemm, |_, _, _| false);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, exact: f64) -> f64 {
        let e = exact as f32;
        if e == 0.0 || !e.is_finite() {
            return if a == e { 0.0 } else { f64::INFINITY };
        }
        ((a as f64 - exact) / (e.abs() as f64 * f32::EPSILON as f64)).abs()
    }

    #[test]
    fn fast_f32_kernels_stay_within_a_few_ulp() {
        let mut worst = (0.0f64, 0.0f64, 0.0f64);
        for i in 0..200_001 {
            let x = -20.0 + 40.0 * i as f64 / 200_000.0;
            let xf = x as f32;
            let xd = xf as f64;
            worst.0 = worst.0.max(ulps(exp_f32(xf), xd.exp()));
            worst.1 = worst.1.max(ulps(tanh_f32(xf), xd.tanh()));
            worst.2 = worst.2.max(ulps(xf.sigmoid_k(), 1.0 / (1.0 + (-xd).exp())));
        }
        // tanh keeps its relative accuracy near 0 (no cancellation)
        for i in 0..100_000 {
            let xf = (1e-7 * 1.0002f64.powi(i)) as f32;
            let xd = xf as f64;
            worst.1 = worst.1.max(ulps(tanh_f32(xf), xd.tanh()));
            worst.1 = worst.1.max(ulps(tanh_f32(-xf), (-xd).tanh()));
        }
        eprintln!(
            "worst ulp: exp {} tanh {} sigmoid {}",
            worst.0, worst.1, worst.2
        );
        assert!(worst.0 <= 3.0, "exp: {} ulp", worst.0);
        assert!(worst.1 <= 4.0, "tanh: {} ulp", worst.1);
        assert!(worst.2 <= 4.0, "sigmoid: {} ulp", worst.2);
    }

    #[test]
    #[should_panic(expected = "outside the given slices")]
    fn gemm_refuses_strides_past_the_slice() {
        let a = [1.0f32; 4];
        let mut c = [0.0f32; 4];
        // a 2 x 2 times 2 x 2 with a row stride of 3 needs 5 elements of `a`
        f32::gemm(2, 2, 2, 1.0, &a, 3, 1, &a, 2, 1, 0.0, &mut c, 2, 1);
    }

    #[test]
    fn gemm_computes_a_product() {
        let a = [1.0f64, 2.0, 3.0, 4.0];
        let mut c = [0.0f64; 4];
        f64::gemm(2, 2, 2, 1.0, &a, 2, 1, &a, 2, 1, 0.0, &mut c, 2, 1);
        assert_eq!(c, [7.0, 10.0, 15.0, 22.0]);
    }

    #[test]
    fn both_f32_gemm_backends_scale_and_accumulate() {
        // `c = alpha a b + beta c`, and with `beta = 0` a NaN-filled `c` is never read: for a
        // product on the `gemm` crate (row-major `a`, 130 rows) and one on `matrixmultiply`
        // (the same `a` transposed)
        let (m, k, n) = (130, 7, 5);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let at: Vec<f32> = (0..m * k).map(|x| a[(x % m) * k + x / m]).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let prod = |i: usize, j: usize| (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum::<f32>();
        assert!(prefers_gemm_crate(m, 1, 1) && !prefers_gemm_crate(m, m as isize, 1));
        // an empty inner dimension gives `beta c` on both (here zeros, `c` unread)
        for csa in [1, m as isize] {
            let mut c = vec![f32::NAN; m * n];
            f32::gemm(
                m,
                0,
                n,
                1.0,
                &[],
                0,
                csa,
                &[],
                n as isize,
                1,
                0.0,
                &mut c,
                n as isize,
                1,
            );
            assert!(c.iter().all(|&v| v == 0.0), "k = 0, csa {csa}");
        }
        for (ad, rsa, csa) in [(&a, k as isize, 1isize), (&at, 1, m as isize)] {
            let mut c = vec![f32::NAN; m * n];
            f32::gemm(
                m, k, n, 1.0, ad, rsa, csa, &b, n as isize, 1, 0.0, &mut c, n as isize, 1,
            );
            let mut d: Vec<f32> = (0..m * n).map(|i| i as f32).collect();
            f32::gemm(
                m, k, n, 2.0, ad, rsa, csa, &b, n as isize, 1, 0.5, &mut d, n as isize, 1,
            );
            for i in 0..m {
                for j in 0..n {
                    let (want, got) = (prod(i, j), c[i * n + j]);
                    assert!(
                        (got - want).abs() < 1e-5,
                        "csa {csa} ({i}, {j}): {got} vs {want}"
                    );
                    let want = 2.0 * want + 0.5 * (i * n + j) as f32;
                    let got = d[i * n + j];
                    assert!(
                        (got - want).abs() < 1e-4,
                        "csa {csa} ({i}, {j}): {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn fast_f32_kernels_handle_the_edges() {
        assert_eq!(exp_f32(100.0), f32::INFINITY);
        assert_eq!(exp_f32(-100.0), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(tanh_f32(50.0), 1.0);
        assert_eq!(tanh_f32(-50.0), -1.0);
        assert!(tanh_f32(f32::NAN).is_nan());
        assert_eq!(tanh_f32(1e-30), 1e-30);
        assert_eq!(1e9f32.sigmoid_k(), 1.0);
        assert_eq!((-1e9f32).sigmoid_k(), 0.0);
    }
}
