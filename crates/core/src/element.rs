//! The element types a [`Tensor`](crate::Tensor) can hold: `f32` (the default) and `f64`.

use std::fmt::{Debug, Display};
use std::iter::Sum;

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

    /// `C = alpha * A @ B + beta * C` for strided row/column layouts.
    ///
    /// `a` must hold every element `a[i * rsa + p * csa]` for `i < m`, `p < k`; likewise for `b`
    /// (`k x n`) and `c` (`m x n`). The caller guarantees these bounds; this function checks them
    /// with `debug_assert!` only.
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

macro_rules! check_extent {
    ($rows:expr, $cols:expr, $rs:expr, $cs:expr, $len:expr) => {
        debug_assert!(
            $rows == 0
                || $cols == 0
                || (($rows as isize - 1) * $rs + ($cols as isize - 1) * $cs) < $len as isize,
            "gemm operand out of bounds"
        );
    };
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn of_f64(v: f64) -> Self {
        v as f32
    }
    fn as_f64(self) -> f64 {
        self as f64
    }
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
        check_extent!(m, k, rsa, csa, a.len());
        check_extent!(k, n, rsb, csb, b.len());
        check_extent!(m, n, rsc, csc, c.len());
        // SAFETY: every caller (ops::matmul) derives the strides from a validated tensor layout
        // whose elements all lie inside the given slices, so each pointer offset
        // `i * rs + j * cs` that matrixmultiply forms stays in bounds; `c` is uniquely borrowed.
        unsafe {
            matrixmultiply::sgemm(
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
}

impl Element for f64 {
    const DTYPE: DType = DType::F64;
    fn of_f64(v: f64) -> Self {
        v
    }
    fn as_f64(self) -> f64 {
        self
    }
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
        check_extent!(m, k, rsa, csa, a.len());
        check_extent!(k, n, rsb, csb, b.len());
        check_extent!(m, n, rsc, csc, c.len());
        // SAFETY: as for f32 above: strides come from validated layouts inside these slices.
        unsafe {
            matrixmultiply::dgemm(
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
}
