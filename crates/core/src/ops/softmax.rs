//! Softmax and log-softmax over one dim, computed stably (the max is subtracted first).

use crate::storage::Storage;
use std::sync::Arc;

use super::{constant, grads1, out};
use crate::element::Element;
use crate::error::Result;
use crate::layout::resolve_dim;
use crate::tape::{InputGrads, Op};
use crate::tensor::Tensor;

/// Calls `f(base, stride, len)` for every 1-d lane along `dim` of a contiguous `shape`.
fn for_each_lane(shape: &[usize], dim: usize, mut f: impl FnMut(usize, usize, usize)) {
    let outer: usize = shape[..dim].iter().product();
    let len = shape[dim];
    let inner: usize = shape[dim + 1..].iter().product();
    for o in 0..outer {
        for i in 0..inner {
            f(o * len * inner + i, inner, len);
        }
    }
}

/// The largest element, NaNs skipped (`-inf` for none), over sixteen lanes so it vectorizes
/// (one running maximum is a chain of dependent compares: a third of a 10k-class softmax).
fn max_skipping_nan<E: Element>(x: &[E]) -> E {
    const LANES: usize = 16;
    let pick = |a: E, v: E| if v > a { v } else { a };
    let mut acc = [E::neg_infinity(); LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] = pick(acc[l], c[l]);
        }
    }
    let m = chunks
        .remainder()
        .iter()
        .fold(E::neg_infinity(), |a, &v| pick(a, v));
    acc.into_iter().fold(m, pick)
}

/// Writes `exp(x - m)` into `y` for the row maximum `m` (0 when it is not finite) and returns
/// `(m, z)`, `z` the sum of `y`: the stable first half of every softmax.
pub(super) fn exp_shifted<E: Element>(x: &[E], y: &mut [E]) -> (E, E) {
    let m = max_skipping_nan(x);
    let m = if m.is_finite() { m } else { E::zero() };
    match E::lanes() {
        Some(lanes) => (lanes.exp_shifted)(y, x, m),
        None => exp_shifted_scalar(y, x, m),
    }
    (m, super::sum_slice(y))
}

/// `y = exp(x - m)` as a scalar loop (the compiler vectorizes it); the sixteen-lane kernel of
/// `Element::lanes` runs it on its tail.
pub(crate) fn exp_shifted_scalar<E: Element>(y: &mut [E], x: &[E], m: E) {
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv = (xv - m).exp_k();
    }
}

/// `d = w · (exp(x - m) / z)`, a softmax row scaled (cross-entropy's gradient before its
/// target's `-w`), through the sixteen-lane kernel of `Element::lanes` where there is one.
pub(super) fn softmax_scaled<E: Element>(d: &mut [E], x: &[E], m: E, z: E, w: E) {
    match E::lanes() {
        Some(lanes) => (lanes.softmax_scaled)(d, x, m, z, w),
        None => softmax_scaled_scalar(d, x, m, z, w),
    }
}

/// [`softmax_scaled`] as a scalar loop; the sixteen-lane kernel runs it on its tail.
pub(crate) fn softmax_scaled_scalar<E: Element>(d: &mut [E], x: &[E], m: E, z: E, w: E) {
    for (d, &x) in d.iter_mut().zip(x) {
        *d = w * ((x - m).exp_k() / z);
    }
}

/// Softmax (or log-softmax) of one dense row into `y`.
fn softmax_row<E: Element>(x: &[E], y: &mut [E], log: bool) {
    let (m, z) = exp_shifted(x, y);
    if log {
        let lz = z.ln();
        for (yv, &xv) in y.iter_mut().zip(x) {
            *yv = xv - m - lz;
        }
    } else {
        for yv in y.iter_mut() {
            *yv /= z;
        }
    }
}

/// Softmax (or log-softmax) of every lane along `dim` of a contiguous tensor.
fn softmax_kernel<E: Element>(x: &[E], shape: &[usize], dim: usize, log: bool) -> Vec<E> {
    let mut y = crate::storage::zeros(x.len());
    let n = shape[dim];
    if n == 0 {
        return y;
    }
    if shape[dim + 1..].iter().product::<usize>() == 1 {
        // the usual case (last dim): lanes are dense rows
        for (xr, yr) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
            softmax_row(xr, yr, log);
        }
        return y;
    }
    let mut xl = vec![E::zero(); n];
    let mut yl = vec![E::zero(); n];
    for_each_lane(shape, dim, |b, s, n| {
        for j in 0..n {
            xl[j] = x[b + j * s];
        }
        softmax_row(&xl, &mut yl, log);
        for j in 0..n {
            y[b + j * s] = yl[j];
        }
    });
    y
}

/// `y_i = exp(x_i) / Σ_j exp(x_j)` along `dim`.
/// `dL/dx_i = y_i (g_i - Σ_j g_j y_j)`.
pub struct Softmax<E: Element> {
    dim: usize,
    y: Arc<Storage<E>>,
}

impl<E: Element> Softmax<E> {
    /// Applies the op.
    pub fn forward(x: &Tensor<E>, dim: isize) -> Result<Tensor<E>> {
        let d = resolve_dim("softmax", dim, x.rank())?;
        let (data, layout) = out(
            softmax_kernel(&x.contiguous_data(), x.shape(), d, false),
            x.shape(),
        );
        let y = data.clone();
        Ok(Tensor::from_op(data, layout, &[x], || Softmax {
            dim: d,
            y,
        }))
    }
}

impl<E: Element> Op<E> for Softmax<E> {
    fn name(&self) -> &'static str {
        "softmax"
    }
    fn backward(&self, _: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let gd = g.contiguous_data();
        let y = &self.y;
        let mut dx = crate::storage::zeros(y.len());
        for_each_lane(g.shape(), self.dim, |b, s, n| {
            let dot = (0..n).map(|j| gd[b + j * s] * y[b + j * s]).sum::<E>();
            for j in 0..n {
                dx[b + j * s] = y[b + j * s] * (gd[b + j * s] - dot);
            }
        });
        Ok(grads1(constant(dx, g.shape())))
    }
}

/// `y_i = x_i - log Σ_j exp(x_j)` along `dim`.
/// `dL/dx_i = g_i - softmax(x)_i Σ_j g_j`.
pub struct LogSoftmax<E: Element> {
    dim: usize,
    y: Arc<Storage<E>>,
}

impl<E: Element> LogSoftmax<E> {
    /// Applies the op.
    pub fn forward(x: &Tensor<E>, dim: isize) -> Result<Tensor<E>> {
        let d = resolve_dim("log_softmax", dim, x.rank())?;
        let (data, layout) = out(
            softmax_kernel(&x.contiguous_data(), x.shape(), d, true),
            x.shape(),
        );
        let y = data.clone();
        Ok(Tensor::from_op(data, layout, &[x], || LogSoftmax {
            dim: d,
            y,
        }))
    }
}

impl<E: Element> Op<E> for LogSoftmax<E> {
    fn name(&self) -> &'static str {
        "log_softmax"
    }
    fn backward(&self, _: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let gd = g.contiguous_data();
        let y = &self.y;
        let mut dx = crate::storage::zeros(y.len());
        for_each_lane(g.shape(), self.dim, |b, s, n| {
            let total = (0..n).map(|j| gd[b + j * s]).sum::<E>();
            for j in 0..n {
                dx[b + j * s] = gd[b + j * s] - y[b + j * s].exp_k() * total;
            }
        });
        Ok(grads1(constant(dx, g.shape())))
    }
}

impl<E: Element> Tensor<E> {
    /// Softmax along `dim`, see [`Softmax`].
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// let p = Tensor::<f64>::from_vec(vec![0.0, 0.0], &[2])?.softmax(0)?;
    /// assert_eq!(p.to_vec(), vec![0.5, 0.5]);
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn softmax(&self, dim: isize) -> Result<Tensor<E>> {
        Softmax::forward(self, dim)
    }

    /// Log-softmax along `dim`, see [`LogSoftmax`].
    pub fn log_softmax(&self, dim: isize) -> Result<Tensor<E>> {
        LogSoftmax::forward(self, dim)
    }
}
