//! Reductions: sum and max over dims (mean is sum times a constant).

use std::sync::Arc;

use super::{constant, grads1, out};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::layout::{contiguous_strides, resolve_dim, Dims, Layout};
use crate::tape::{InputGrads, Op};
use crate::tensor::Tensor;

/// Which dims to reduce, from user dims (negative allowed; empty = all dims).
fn reduce_mask(op: &'static str, rank: usize, dims: &[isize]) -> Result<Vec<bool>> {
    let mut mask = vec![dims.is_empty(); rank];
    for &d in dims {
        let d = resolve_dim(op, d, rank)?;
        if mask[d] {
            return Err(Error::invalid(
                op,
                format!("dim {d} given twice in {dims:?}"),
            ));
        }
        mask[d] = true;
    }
    Ok(mask)
}

fn kept_shape(shape: &[usize], mask: &[bool]) -> Dims {
    shape
        .iter()
        .zip(mask)
        .map(|(&d, &r)| if r { 1 } else { d })
        .collect()
}

fn final_shape(shape: &[usize], mask: &[bool], keepdim: bool) -> Dims {
    if keepdim {
        return kept_shape(shape, mask);
    }
    shape
        .iter()
        .zip(mask)
        .filter(|(_, &r)| !r)
        .map(|(&d, _)| d)
        .collect()
}

/// For every input element in row-major order, the offset of its output slot
/// (the keepdim output is contiguous; reduced dims get stride 0).
fn output_slots(shape: &[usize], mask: &[bool]) -> Layout {
    let mut strides = contiguous_strides(&kept_shape(shape, mask));
    for (s, &r) in strides.iter_mut().zip(mask) {
        if r {
            *s = 0;
        }
    }
    Layout::from_parts(shape.into(), strides, 0)
}

/// From this many elements, [`column_sums`] has the helper thread sum half of the columns.
const SPLIT_COLUMN_SUMS: usize = 1 << 16;

/// `Σ_i g_ij` for a 2-D `g`, each column summed over the rows in order (the loop of
/// [`sum_kernel`] over dim 0, so its bits). From [`SPLIT_COLUMN_SUMS`] elements on two
/// threads, the helper sums the right half of the columns while the caller sums the left
/// (each column is still summed whole, in the same order, by one thread).
pub(crate) fn column_sums<E: Element>(g: &Tensor<E>) -> Vec<E> {
    let (m, n) = (g.shape()[0], g.shape()[1]);
    let g = if g.is_contiguous() {
        g.clone()
    } else {
        constant(g.to_vec(), g.shape())
    };
    let sums = move |g: &Tensor<E>, cols: std::ops::Range<usize>| {
        let mut acc = crate::storage::zeros(cols.len());
        add_columns(&mut acc, &g.contiguous_data(), n, cols.start);
        acc
    };
    if m * n >= SPLIT_COLUMN_SUMS && n >= 2 && crate::threads::product_threads() >= 2 {
        let (half, right) = (n / 2, g.clone());
        if let Ok(pending) = crate::helper::spawn(move || sums(&right, half..n)) {
            let mut left = sums(&g, 0..half);
            let right = pending.wait();
            left.extend_from_slice(&right);
            crate::storage::give(right);
            return left;
        }
    }
    sums(&g, 0..n)
}

/// Adds columns `j0..j0 + acc.len()` of the row-major `data` (rows of `n`) into `acc`, row
/// after row.
fn add_columns<E: Element>(acc: &mut [E], data: &[E], n: usize, j0: usize) {
    if n == 0 {
        return; // no rows to walk (and chunks of zero length are not allowed)
    }
    let cols = j0..j0 + acc.len();
    for row in data.chunks_exact(n) {
        for (a, &v) in acc.iter_mut().zip(&row[cols.clone()]) {
            *a += v;
        }
    }
}

/// Sums over the masked dims; returns the keepdim-shaped contiguous buffer.
pub(crate) fn sum_kernel<E: Element>(x: &Tensor<E>, mask: &[bool]) -> (Vec<E>, Dims) {
    let kept = kept_shape(x.shape(), mask);
    let mut acc = crate::storage::zeros(kept.iter().product());
    let data = x.contiguous_data();
    // fast paths: reduced dims all before kept ones (a bias gradient), or all after (row sums)
    let first_kept = mask.iter().position(|&r| !r).unwrap_or(mask.len());
    let last_kept = mask.iter().rposition(|&r| !r).map_or(0, |p| p + 1);
    let leading = mask[first_kept..].iter().all(|&r| !r);
    let trailing = mask[..last_kept].iter().all(|&r| !r);
    if !acc.is_empty() && trailing {
        let len = data.len() / acc.len();
        if len > 0 {
            for (a, row) in acc.iter_mut().zip(data.chunks_exact(len)) {
                *a = super::sum_slice(row);
            }
        }
    } else if !acc.is_empty() && leading {
        let inner = acc.len();
        add_columns(&mut acc, &data, inner, 0);
    } else {
        let mut i = 0;
        output_slots(x.shape(), mask).for_each_offset(|o| {
            acc[o] += data[i];
            i += 1;
        });
    }
    (acc, kept)
}

/// `y = Σ x` over the given dims (all dims when none are given), optionally keeping them as
/// size 1. `dL/dx = dL/dy` broadcast back over the summed dims.
pub struct Sum {
    in_shape: Dims,
    kept: Dims,
}

impl Sum {
    /// Applies the op.
    pub fn forward<E: Element>(x: &Tensor<E>, dims: &[isize], keepdim: bool) -> Result<Tensor<E>> {
        let mask = reduce_mask("sum", x.rank(), dims)?;
        let (data, kept) = sum_kernel(x, &mask);
        let (d, l) = out(data, &final_shape(x.shape(), &mask, keepdim));
        Ok(Tensor::from_op(d, l, &[x], || Sum {
            in_shape: x.shape().into(),
            kept,
        }))
    }
}

impl<E: Element> Op<E> for Sum {
    fn name(&self) -> &'static str {
        "sum"
    }
    fn backward(&self, _: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let g = constant(g.to_vec(), &self.kept);
        Ok(grads1(g.broadcast_to(&self.in_shape)?.contiguous()))
    }
}

/// `y = max x` over the given dims (all when none given). The gradient flows to the first
/// position holding the maximum of each reduced group (like `torch.max(dim)`'s indices);
/// NaN counts as the maximum, as in PyTorch.
pub struct Max {
    in_shape: Dims,
    /// For each output element, the row-major index of its argmax in the input.
    argmax: Arc<Vec<usize>>,
}

impl Max {
    /// Applies the op.
    pub fn forward<E: Element>(x: &Tensor<E>, dims: &[isize], keepdim: bool) -> Result<Tensor<E>> {
        if x.numel() == 0 {
            return Err(Error::invalid(
                "max",
                "cannot take the max of an empty tensor",
            ));
        }
        let mask = reduce_mask("max", x.rank(), dims)?;
        let kept = kept_shape(x.shape(), &mask);
        let n_out: usize = kept.iter().product();
        let mut best = vec![E::neg_infinity(); n_out];
        let mut arg = vec![usize::MAX; n_out];
        let data = x.contiguous_data();
        let mut i = 0;
        output_slots(x.shape(), &mask).for_each_offset(|o| {
            let v = data[i];
            if arg[o] == usize::MAX
                || (v > best[o] && !best[o].is_nan())
                || (v.is_nan() && !best[o].is_nan())
            {
                best[o] = v;
                arg[o] = i;
            }
            i += 1;
        });
        let (d, l) = out(best, &final_shape(x.shape(), &mask, keepdim));
        Ok(Tensor::from_op(d, l, &[x], || Max {
            in_shape: x.shape().into(),
            argmax: Arc::new(arg),
        }))
    }
}

impl<E: Element> Op<E> for Max {
    fn name(&self) -> &'static str {
        "max"
    }
    fn backward(&self, _: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let mut dx = crate::storage::zeros(self.in_shape.iter().product());
        for (gv, &a) in g.contiguous_data().iter().zip(self.argmax.iter()) {
            dx[a] += *gv;
        }
        Ok(grads1(constant(dx, &self.in_shape)))
    }
}

impl<E: Element> Tensor<E> {
    /// Sum over `dims` (all if empty), see [`Sum`].
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// let t = Tensor::<f32>::from_vec(vec![1., 2., 3., 4.], &[2, 2])?;
    /// assert_eq!(t.sum(&[0], false)?.to_vec(), vec![4., 6.]);
    /// assert_eq!(t.sum(&[-1], true)?.shape(), &[2, 1]);
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn sum(&self, dims: &[isize], keepdim: bool) -> Result<Tensor<E>> {
        Sum::forward(self, dims, keepdim)
    }

    /// Sum of all elements as a 0-d tensor.
    pub fn sum_all(&self) -> Tensor<E> {
        Sum::forward(self, &[], false).expect("summing over all dims cannot fail")
    }

    /// Mean over `dims` (all if empty): the sum times `1 / count`.
    pub fn mean(&self, dims: &[isize], keepdim: bool) -> Result<Tensor<E>> {
        reduce_mask("mean", self.rank(), dims)?;
        let s = self.sum(dims, keepdim)?;
        let count = (self.numel() / s.numel().max(1)).max(1);
        if self.numel() == 0 {
            return Ok(s.mul_scalar(f64::NAN));
        }
        Ok(s.mul_scalar(1.0 / count as f64))
    }

    /// Mean of all elements as a 0-d tensor (NaN for an empty tensor, as PyTorch).
    pub fn mean_all(&self) -> Tensor<E> {
        self.mean(&[], false)
            .expect("mean over all dims cannot fail")
    }

    /// Max over `dims` (all if empty), see [`Max`].
    pub fn max(&self, dims: &[isize], keepdim: bool) -> Result<Tensor<E>> {
        Max::forward(self, dims, keepdim)
    }
}
