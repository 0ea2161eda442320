//! Indexing ops: index_select (the embedding lookup), gather, masked_fill and where.

use std::sync::Arc;

use super::{constant, grads1, grads2, out};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::layout::{contiguous_strides, resolve_dim, Dims, Layout};
use crate::lookup::RowSource;
use crate::tape::{InputGrads, Op};
use crate::tensor::Tensor;

fn check_indices(op: &'static str, idx: &[usize], size: usize) -> Result<()> {
    match idx.iter().find(|&&i| i >= size) {
        Some(&bad) => Err(Error::Index {
            op,
            index: bad as i64,
            size,
        }),
        None => Ok(()),
    }
}

/// Splits a shape around `dim` into (outer, size, inner) element counts.
fn around(shape: &[usize], dim: usize) -> (usize, usize, usize) {
    (
        shape[..dim].iter().product(),
        shape[dim],
        shape[dim + 1..].iter().product(),
    )
}

/// `y[.., j, ..] = x[.., idx[j], ..]` along `dim` (the embedding lookup when `dim = 0`).
/// `dL/dx[.., i, ..] = Σ_{j: idx[j] = i} dL/dy[.., j, ..]` (repeated ids accumulate).
pub struct IndexSelect {
    dim: usize,
    idx: Arc<Vec<usize>>,
    in_shape: Dims,
}

impl IndexSelect {
    /// Applies the op; an index `>= x.shape()[dim]` is an error naming it and the size.
    pub fn forward<E: Element>(x: &Tensor<E>, dim: isize, idx: &[usize]) -> Result<Tensor<E>> {
        let d = resolve_dim("index_select", dim, x.rank())?;
        let (outer, size, inner) = around(x.shape(), d);
        check_indices("index_select", idx, size)?;
        let src = x.contiguous_data();
        let mut data = crate::storage::take(outer * idx.len() * inner);
        for o in 0..outer {
            for &i in idx {
                let s = (o * size + i) * inner;
                data.extend_from_slice(&src[s..s + inner]);
            }
        }
        let mut shape: Dims = x.shape().into();
        shape[d] = idx.len();
        let (dt, l) = out(data, &shape);
        Ok(Tensor::from_op(dt, l, &[x], || IndexSelect {
            dim: d,
            idx: Arc::new(idx.to_vec()),
            in_shape: x.shape().into(),
        }))
    }
}

impl<E: Element> Op<E> for IndexSelect {
    fn name(&self) -> &'static str {
        "index_select"
    }
    fn row_source(&self) -> Option<RowSource<'_>> {
        (self.dim == 0 && self.in_shape.len() == 2).then(|| RowSource::Picked(&self.idx))
    }
    /// Rows of a 2-D input go back as rows: the tape adds them into the input's gradient
    /// (the same sums as `backward` when nothing else feeds that gradient).
    fn grad_rows(&self) -> Option<&[usize]> {
        (self.dim == 0 && self.in_shape.len() == 2).then(|| &self.idx[..])
    }
    fn backward(&self, _: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let (outer, size, inner) = around(&self.in_shape, self.dim);
        let mut dx = crate::storage::zeros(outer * size * inner);
        let gd = g.contiguous_data();
        let n = self.idx.len();
        for o in 0..outer {
            for (j, &i) in self.idx.iter().enumerate() {
                let src = &gd[(o * n + j) * inner..(o * n + j + 1) * inner];
                let dst = &mut dx[(o * size + i) * inner..(o * size + i + 1) * inner];
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += *s;
                }
            }
        }
        Ok(grads1(constant(dx, &self.in_shape)))
    }
}

/// `y[p] = x[p with coordinate dim replaced by index[p]]` (like `torch.gather`); `y` has the
/// index's shape, which must equal `x`'s except along `dim`.
/// `dL/dx` scatters-adds `dL/dy` back to the gathered positions.
pub struct Gather {
    /// For each output element, the row-major position in `x` it came from.
    src: Arc<Vec<usize>>,
    in_shape: Dims,
}

impl Gather {
    /// Applies the op.
    pub fn forward<E: Element>(
        x: &Tensor<E>,
        dim: isize,
        index: &[usize],
        index_shape: &[usize],
    ) -> Result<Tensor<E>> {
        let d = resolve_dim("gather", dim, x.rank())?;
        let ok = index_shape.len() == x.rank()
            && index_shape
                .iter()
                .zip(x.shape())
                .enumerate()
                .all(|(i, (a, b))| i == d || a == b)
            && index.len() == index_shape.iter().product::<usize>();
        if !ok {
            return Err(Error::shape(
                "gather",
                format!(
                    "index shape {index_shape:?} ({} values) vs input {:?} along dim {d}",
                    index.len(),
                    x.shape()
                ),
            ));
        }
        check_indices("gather", index, x.shape()[d])?;
        let xs = contiguous_strides(x.shape());
        let mut base_strides = xs.clone();
        base_strides[d] = 0;
        let mut src = Vec::with_capacity(index.len());
        let mut k = 0;
        Layout::from_parts(index_shape.into(), base_strides, 0).for_each_offset(|o| {
            src.push(o + index[k] * xs[d]);
            k += 1;
        });
        let xd = x.contiguous_data();
        let data = src.iter().map(|&s| xd[s]).collect();
        let (dt, l) = out(data, index_shape);
        Ok(Tensor::from_op(dt, l, &[x], || Gather {
            src: Arc::new(src),
            in_shape: x.shape().into(),
        }))
    }
}

impl<E: Element> Op<E> for Gather {
    fn name(&self) -> &'static str {
        "gather"
    }
    fn backward(&self, _: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let mut dx = crate::storage::zeros(self.in_shape.iter().product());
        for (gv, &s) in g.contiguous_data().iter().zip(self.src.iter()) {
            dx[s] += *gv;
        }
        Ok(grads1(constant(dx, &self.in_shape)))
    }
}

fn check_mask<E: Element>(op: &'static str, x: &Tensor<E>, mask: &[bool]) -> Result<()> {
    if mask.len() != x.numel() {
        return Err(Error::shape(
            op,
            format!(
                "mask of {} values vs tensor {:?} ({} elements)",
                mask.len(),
                x.shape(),
                x.numel()
            ),
        ));
    }
    Ok(())
}

/// `y = value where mask else x` (mask in row-major order of `x`'s shape).
/// `dL/dx = 0 where mask else dL/dy`.
pub struct MaskedFill {
    mask: Arc<Vec<bool>>,
}

impl MaskedFill {
    /// Applies the op.
    pub fn forward<E: Element>(x: &Tensor<E>, mask: &[bool], value: E) -> Result<Tensor<E>> {
        check_mask("masked_fill", x, mask)?;
        let data = x
            .contiguous_data()
            .iter()
            .zip(mask)
            .map(|(&v, &m)| if m { value } else { v })
            .collect();
        let (dt, l) = out(data, x.shape());
        Ok(Tensor::from_op(dt, l, &[x], || MaskedFill {
            mask: Arc::new(mask.to_vec()),
        }))
    }
}

impl<E: Element> Op<E> for MaskedFill {
    fn name(&self) -> &'static str {
        "masked_fill"
    }
    fn backward(&self, _: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let d = g
            .contiguous_data()
            .iter()
            .zip(self.mask.iter())
            .map(|(&v, &m)| if m { E::zero() } else { v })
            .collect();
        Ok(grads1(constant(d, g.shape())))
    }
}

/// `y = a where cond else b` (same shapes; cond in row-major order).
/// `dL/da = dL/dy where cond else 0`, `dL/db = dL/dy where not cond else 0`.
pub struct Where {
    cond: Arc<Vec<bool>>,
}

impl Where {
    /// Applies the op.
    pub fn forward<E: Element>(cond: &[bool], a: &Tensor<E>, b: &Tensor<E>) -> Result<Tensor<E>> {
        if a.shape() != b.shape() {
            return Err(Error::shape(
                "where",
                format!("{:?} vs {:?}", a.shape(), b.shape()),
            ));
        }
        check_mask("where", a, cond)?;
        let (da, db) = (a.contiguous_data(), b.contiguous_data());
        let data = cond
            .iter()
            .zip(da.iter().zip(db.iter()))
            .map(|(&c, (&x, &y))| if c { x } else { y })
            .collect();
        let (dt, l) = out(data, a.shape());
        Ok(Tensor::from_op(dt, l, &[a, b], || Where {
            cond: Arc::new(cond.to_vec()),
        }))
    }
}

impl<E: Element> Op<E> for Where {
    fn name(&self) -> &'static str {
        "where"
    }
    fn backward(&self, _: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let gd = g.contiguous_data();
        let pick = |keep: bool| {
            let d = gd
                .iter()
                .zip(self.cond.iter())
                .map(|(&v, &c)| if c == keep { v } else { E::zero() })
                .collect();
            Some(constant(d, g.shape()))
        };
        Ok(grads2(pick(true), pick(false)))
    }
}

impl<E: Element> Tensor<E> {
    /// Rows (or slices along `dim`) picked by `idx`, see [`IndexSelect`].
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// let table = Tensor::<f32>::arange(6).reshape(&[3, 2])?;
    /// assert_eq!(table.index_select(0, &[2, 0])?.to_vec(), vec![4., 5., 0., 1.]);
    /// assert!(table.index_select(0, &[3]).is_err());
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn index_select(&self, dim: isize, idx: &[usize]) -> Result<Tensor<E>> {
        IndexSelect::forward(self, dim, idx)
    }

    /// Gathers along `dim` by an index of shape `index_shape`, see [`Gather`].
    pub fn gather(&self, dim: isize, index: &[usize], index_shape: &[usize]) -> Result<Tensor<E>> {
        Gather::forward(self, dim, index, index_shape)
    }

    /// Replaces elements where `mask` is true by `value`, see [`MaskedFill`].
    pub fn masked_fill(&self, mask: &[bool], value: f64) -> Result<Tensor<E>> {
        MaskedFill::forward(self, mask, E::of_f64(value))
    }

    /// `a` where `cond` else `b`, see [`Where`].
    pub fn where_cond(cond: &[bool], a: &Tensor<E>, b: &Tensor<E>) -> Result<Tensor<E>> {
        Where::forward(cond, a, b)
    }
}
