//! Ops that move elements around without arithmetic: reshape, permute/transpose, narrow,
//! contiguous, cat, and the composites built on them (stack, chunk, split, squeeze, ...).

use std::sync::Arc;

use smallvec::SmallVec;

use super::{constant, grads1, out};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::layout::{numel, resolve_dim, Dims, Layout};
use crate::lookup::RowSource;
use crate::tape::{InputGrads, Op};
use crate::tensor::Tensor;

/// `y = x` copied into row-major order; `dL/dx = dL/dy`.
pub struct Contiguous;

impl Contiguous {
    /// Applies the op (always copies; [`Tensor::contiguous`] skips contiguous inputs).
    pub fn forward<E: Element>(x: &Tensor<E>) -> Tensor<E> {
        let (d, l) = out(x.to_vec(), x.shape());
        Tensor::from_op(d, l, &[x], || Contiguous)
    }
}

impl<E: Element> Op<E> for Contiguous {
    fn name(&self) -> &'static str {
        "contiguous"
    }
    fn backward(&self, _: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        Ok(grads1(g.clone()))
    }
}

/// `y = x` with a new shape of the same element count (a view of contiguous data, else a copy).
/// `dL/dx = dL/dy` reshaped back.
pub struct Reshape {
    in_shape: Dims,
}

impl Reshape {
    /// Applies the op.
    pub fn forward<E: Element>(x: &Tensor<E>, shape: &[usize]) -> Result<Tensor<E>> {
        if numel(shape) != x.numel() {
            return Err(Error::shape(
                "reshape",
                format!(
                    "cannot reshape {:?} ({} elements) to {:?}",
                    x.shape(),
                    x.numel(),
                    shape
                ),
            ));
        }
        if x.shape() == shape {
            return Ok(x.clone());
        }
        let x = x.contiguous();
        let layout = Layout::from_parts(
            shape.into(),
            crate::layout::contiguous_strides(shape),
            x.layout().offset(),
        );
        Ok(Tensor::from_op(
            Arc::clone(x.storage_arc()),
            layout,
            &[&x],
            || Reshape {
                in_shape: x.shape().into(),
            },
        ))
    }
}

impl<E: Element> Op<E> for Reshape {
    fn name(&self) -> &'static str {
        "reshape"
    }
    fn row_source(&self) -> Option<RowSource<'_>> {
        Some(RowSource::Reshaped)
    }
    /// The gradient is `g` reshaped: a view when `g` is contiguous (backward runs without
    /// recording), a copy otherwise.
    fn backward(&self, _: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        Ok(grads1(g.reshape(&self.in_shape)?))
    }
}

/// `y[i_p0, i_p1, ...] = x[i0, i1, ...]`: dims reordered by `perm` (a view).
/// `dL/dx` = `dL/dy` permuted by the inverse permutation.
pub struct Permute {
    inverse: Dims,
}

impl Permute {
    /// Applies the op.
    pub fn forward<E: Element>(x: &Tensor<E>, perm: &[usize]) -> Result<Tensor<E>> {
        let layout = x.layout().permute(perm)?;
        let mut inverse: Dims = SmallVec::from_elem(0, perm.len());
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        Ok(Tensor::from_op(
            Arc::clone(x.storage_arc()),
            layout,
            &[x],
            || Permute { inverse },
        ))
    }
}

impl<E: Element> Op<E> for Permute {
    fn name(&self) -> &'static str {
        "permute"
    }
    /// A 2-D permute is a transpose (or the identity, which is not).
    fn transposes(&self) -> bool {
        self.inverse.as_slice() == [1, 0]
    }
    fn backward(&self, _: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let l = g.layout().permute(&self.inverse)?;
        let gt = Tensor::build(
            Arc::clone(g.storage_arc()),
            l,
            crate::tape::GradSlot::None,
            crate::tensor::TensorId::fresh(),
        );
        Ok(grads1(gt.contiguous()))
    }
}

/// `y = x[.., start..start+len, ..]` along `dim` (a view).
/// `dL/dx` is zero except `dL/dy` placed back in the slice.
pub struct Narrow {
    in_shape: Dims,
    dim: usize,
    start: usize,
}

impl Narrow {
    /// Applies the op.
    pub fn forward<E: Element>(
        x: &Tensor<E>,
        dim: isize,
        start: usize,
        len: usize,
    ) -> Result<Tensor<E>> {
        let d = resolve_dim("narrow", dim, x.rank())?;
        let size = x.shape()[d];
        if start.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::shape(
                "narrow",
                format!(
                    "range {start}..{} out of bounds for dim {d} of shape {:?}",
                    start.saturating_add(len),
                    x.shape()
                ),
            ));
        }
        if start == 0 && len == size {
            return Ok(x.clone());
        }
        let layout = x.layout().narrow(d, start, len);
        Ok(Tensor::from_op(
            Arc::clone(x.storage_arc()),
            layout,
            &[x],
            || Narrow {
                in_shape: x.shape().into(),
                dim: d,
                start,
            },
        ))
    }
}

impl<E: Element> Op<E> for Narrow {
    fn name(&self) -> &'static str {
        "narrow"
    }
    fn grad_slice(&self) -> Option<(usize, usize)> {
        Some((self.dim, self.start))
    }
    fn backward(&self, _: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let mut dx = crate::storage::zeros(numel(&self.in_shape));
        let slots =
            Layout::contiguous(&self.in_shape).narrow(self.dim, self.start, g.shape()[self.dim]);
        let gd = g.contiguous_data();
        let mut i = 0;
        slots.for_each_offset(|o| {
            dx[o] = gd[i];
            i += 1;
        });
        Ok(grads1(constant(dx, &self.in_shape)))
    }
}

impl<E: Element> Tensor<E> {
    /// Same elements, new shape, see [`Reshape`].
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// let t = Tensor::<f32>::arange(6).reshape(&[2, 3])?;
    /// assert_eq!(t.shape(), &[2, 3]);
    /// assert!(t.reshape(&[4]).is_err());
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor<E>> {
        Reshape::forward(self, shape)
    }

    /// Reorders dims, see [`Permute`].
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor<E>> {
        Permute::forward(self, perm)
    }

    /// Swaps two dims (a view).
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// let t = Tensor::<f32>::arange(6).reshape(&[2, 3])?.transpose(0, 1)?;
    /// assert_eq!(t.to_vec(), vec![0., 3., 1., 4., 2., 5.]);
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn transpose(&self, d0: isize, d1: isize) -> Result<Tensor<E>> {
        let a = resolve_dim("transpose", d0, self.rank())?;
        let b = resolve_dim("transpose", d1, self.rank())?;
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Transpose of a rank-2 tensor (a view).
    pub fn t(&self) -> Result<Tensor<E>> {
        if self.rank() != 2 {
            return Err(Error::shape(
                "t",
                format!("expected a rank-2 tensor, got shape {:?}", self.shape()),
            ));
        }
        self.transpose(0, 1)
    }

    /// `len` elements of `dim` from `start` (a view), see [`Narrow`].
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor<E>> {
        Narrow::forward(self, dim, start, len)
    }

    /// Index `i` of `dim`, with that dim removed (like `x[:, i]`).
    pub fn select(&self, dim: isize, i: usize) -> Result<Tensor<E>> {
        let d = resolve_dim("select", dim, self.rank())?;
        if i >= self.shape()[d] {
            return Err(Error::Index {
                op: "select",
                index: i as i64,
                size: self.shape()[d],
            });
        }
        self.narrow(d as isize, i, 1)?.squeeze(d as isize)
    }

    /// Removes a size-1 dim.
    pub fn squeeze(&self, dim: isize) -> Result<Tensor<E>> {
        let d = resolve_dim("squeeze", dim, self.rank())?;
        if self.shape()[d] != 1 {
            return Err(Error::shape(
                "squeeze",
                format!("dim {d} of {:?} is not 1", self.shape()),
            ));
        }
        let mut s: Vec<usize> = self.shape().to_vec();
        s.remove(d);
        self.view_as_shape(&s)
    }

    /// Inserts a size-1 dim at `dim` (`0..=rank`).
    pub fn unsqueeze(&self, dim: usize) -> Result<Tensor<E>> {
        if dim > self.rank() {
            return Err(Error::Dim {
                op: "unsqueeze",
                dim: dim as isize,
                rank: self.rank(),
            });
        }
        let mut s: Vec<usize> = self.shape().to_vec();
        s.insert(dim, 1);
        self.view_as_shape(&s)
    }

    /// Reshape that keeps strides when only size-1 dims change (no copy for any layout).
    fn view_as_shape(&self, shape: &[usize]) -> Result<Tensor<E>> {
        if self.is_contiguous() {
            return self.reshape(shape);
        }
        // non-contiguous: go through permute-free path by copying
        self.contiguous().reshape(shape)
    }

    /// Splits `dim` into pieces of `size` (the last may be smaller), as views. An empty `dim`
    /// gives one empty piece, as in PyTorch.
    pub fn split(&self, size: usize, dim: isize) -> Result<Vec<Tensor<E>>> {
        let d = resolve_dim("split", dim, self.rank())?;
        if size == 0 {
            return Err(Error::invalid("split", "split size must be positive"));
        }
        let total = self.shape()[d];
        if total == 0 {
            return Ok(vec![self.narrow(d as isize, 0, 0)?]);
        }
        (0..total)
            .step_by(size)
            .map(|s| self.narrow(d as isize, s, size.min(total - s)))
            .collect()
    }

    /// Splits `dim` into `n` nearly equal pieces (like `torch.chunk`), as views.
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// let parts = Tensor::<f32>::arange(8).chunk(4, 0)?;
    /// assert_eq!(parts[2].to_vec(), vec![4., 5.]);
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn chunk(&self, n: usize, dim: isize) -> Result<Vec<Tensor<E>>> {
        let d = resolve_dim("chunk", dim, self.rank())?;
        if n == 0 {
            return Err(Error::invalid("chunk", "number of chunks must be positive"));
        }
        let size = self.shape()[d].div_ceil(n).max(1);
        self.split(size, d as isize)
    }
}
