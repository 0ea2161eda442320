//! Joining tensors: `cat` along an existing dim, `stack` along a new one.

use super::out;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::layout::{numel, resolve_dim, Dims, Layout};
use crate::tape::{InputGrads, Op};
use crate::tensor::Tensor;

/// Copies the inputs into one buffer: for each of `outer` blocks, `chunks[i]` elements of
/// input `i`, in input order.
fn join_blocks<E: Element>(xs: &[&Tensor<E>], outer: usize, chunks: &[usize]) -> Vec<E> {
    let total = outer * chunks.iter().sum::<usize>();
    let mut data = crate::storage::take(total);
    let parts: Vec<_> = xs.iter().map(|x| x.contiguous_data()).collect();
    for o in 0..outer {
        for (p, &c) in parts.iter().zip(chunks) {
            data.extend_from_slice(&p[o * c..(o + 1) * c]);
        }
    }
    data
}

/// `y` = the inputs joined along `dim`; `dL/dx_i` = the matching slice of `dL/dy`.
///
/// Backward hands out the slices as views of `dL/dy`, not copies (as PyTorch's `cat` backward
/// does): a bidirectional layer's output is a `cat` of its two directions, and copying their
/// gradients out cost B4 about 2% of its step (one thread). An input's gradient is copied only
/// if an op that reads it needs it contiguous.
pub struct Cat {
    dim: usize,
    sizes: Vec<usize>,
}

impl Cat {
    /// Applies the op. All inputs must agree on every dim except `dim`.
    pub fn forward<E: Element>(xs: &[&Tensor<E>], dim: isize) -> Result<Tensor<E>> {
        let first = xs
            .first()
            .ok_or_else(|| Error::invalid("cat", "needs at least one tensor"))?;
        let d = resolve_dim("cat", dim, first.rank())?;
        for x in xs {
            let ok = x.rank() == first.rank()
                && x.shape()
                    .iter()
                    .zip(first.shape())
                    .enumerate()
                    .all(|(i, (a, b))| i == d || a == b);
            if !ok {
                return Err(Error::shape(
                    "cat",
                    format!("along dim {d}: {:?} vs {:?}", first.shape(), x.shape()),
                ));
            }
        }
        if xs.len() == 1 {
            // joining one tensor gives that tensor (tensors are immutable, so sharing it is
            // unobservable); a one-step sequence's stack of outputs costs no copy
            return Ok((*first).clone());
        }
        let sizes: Vec<usize> = xs.iter().map(|x| x.shape()[d]).collect();
        let mut shape: Dims = first.shape().into();
        shape[d] = sizes.iter().sum();
        let outer: usize = shape[..d].iter().product();
        let inner: usize = shape[d + 1..].iter().product();
        let chunks: Vec<usize> = sizes.iter().map(|s| s * inner).collect();
        let (dt, l) = out(join_blocks(xs, outer, &chunks), &shape);
        Ok(Tensor::from_op(dt, l, xs, || Cat { dim: d, sizes }))
    }
}

impl<E: Element> Op<E> for Cat {
    fn name(&self) -> &'static str {
        "cat"
    }
    fn backward(&self, x: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let mut start = 0;
        let mut grads = InputGrads::new();
        for (xi, &s) in x.iter().zip(&self.sizes) {
            grads.push(if xi.tracks_grad() {
                Some(g.narrow(self.dim as isize, start, s)?)
            } else {
                None
            });
            start += s;
        }
        Ok(grads)
    }
}

/// `y` = the same-shaped inputs joined along a new dim `dim`: `y.select(dim, i) = x_i`;
/// `dL/dx_i = (dL/dy).select(dim, i)`.
///
/// One node and one copy. (Stacking as `cat` of unsqueezed inputs gave each input a reshape
/// node: 25 of the ~115 nodes of a B3 step.) Backward hands out the selections as views of
/// `dL/dy`, as [`Cat`] does.
pub struct Stack {
    dim: usize,
}

impl Stack {
    /// Applies the op. `dim` may be `0..=rank`.
    pub fn forward<E: Element>(xs: &[&Tensor<E>], dim: usize) -> Result<Tensor<E>> {
        let first = xs
            .first()
            .ok_or_else(|| Error::invalid("stack", "needs at least one tensor"))?;
        if dim > first.rank() {
            return Err(Error::Dim {
                op: "stack",
                dim: dim as isize,
                rank: first.rank(),
            });
        }
        if let Some(x) = xs.iter().find(|x| x.shape() != first.shape()) {
            return Err(Error::shape(
                "stack",
                format!("{:?} vs {:?}", first.shape(), x.shape()),
            ));
        }
        if xs.len() == 1 {
            return first.unsqueeze(dim);
        }
        let mut shape: Dims = first.shape().into();
        shape.insert(dim, xs.len());
        let outer: usize = first.shape()[..dim].iter().product();
        let inner = numel(&first.shape()[dim..]);
        let (dt, l) = out(join_blocks(xs, outer, &vec![inner; xs.len()]), &shape);
        Ok(Tensor::from_op(dt, l, xs, || Stack { dim }))
    }
}

impl<E: Element> Op<E> for Stack {
    fn name(&self) -> &'static str {
        "stack"
    }
    fn backward(&self, x: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let (d, l) = (self.dim, g.layout());
        let mut shape: Dims = l.shape().into();
        let mut strides: Dims = l.strides().into();
        shape.remove(d);
        let step = strides.remove(d);
        Ok(x.iter()
            .enumerate()
            .map(|(i, xi)| {
                // g.select(d, i) as one view (a select is a narrow and a reshape)
                xi.tracks_grad().then(|| {
                    let offset = l.offset() + i * step;
                    let layout = Layout::from_parts(shape.clone(), strides.clone(), offset);
                    Tensor::constant_over(g.storage_arc().clone(), layout)
                })
            })
            .collect())
    }
}

impl<E: Element> Tensor<E> {
    /// Joins tensors along an existing dim, see [`Cat`].
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// let a = Tensor::<f32>::ones(&[1, 2]);
    /// let b = Tensor::<f32>::zeros(&[1, 2]);
    /// assert_eq!(Tensor::cat(&[&a, &b], 0)?.shape(), &[2, 2]);
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn cat(xs: &[&Tensor<E>], dim: isize) -> Result<Tensor<E>> {
        Cat::forward(xs, dim)
    }

    /// Joins same-shaped tensors along a new dim `dim` (`0..=rank`), see [`Stack`].
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// let a = Tensor::<f32>::from_vec(vec![1., 2.], &[2])?;
    /// let b = Tensor::<f32>::from_vec(vec![3., 4.], &[2])?;
    /// let s = Tensor::stack(&[&a, &b], 1)?;
    /// assert_eq!(s.shape(), &[2, 2]);
    /// assert_eq!(s.to_vec(), vec![1., 3., 2., 4.]);
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn stack(xs: &[&Tensor<E>], dim: usize) -> Result<Tensor<E>> {
        Stack::forward(xs, dim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(v: &[f64], shape: &[usize]) -> Tensor<f64> {
        Tensor::from_vec(v.to_vec(), shape)
            .expect("a valid leaf")
            .requires_grad()
    }

    /// The views' values, and that each shares the output gradient's buffer.
    fn views_of(grads: &InputGrads<f64>, g: &Tensor<f64>) -> Vec<Vec<f64>> {
        grads
            .iter()
            .map(|d| {
                let d = d.as_ref().expect("every input tracks gradients");
                assert!(std::sync::Arc::ptr_eq(d.storage_arc(), g.storage_arc()));
                d.to_vec()
            })
            .collect()
    }

    #[test]
    fn cat_and_stack_hand_out_views_of_the_output_gradient() -> Result<()> {
        let g = Tensor::from_vec((0..6).map(f64::from).collect(), &[2, 3])?;
        // cat along dim 1 of [2, 2] and [2, 1]: columns 0..2 and column 2 of g
        let (a, b) = (leaf(&[0.; 4], &[2, 2]), leaf(&[0.; 2], &[2, 1]));
        let cat = Cat {
            dim: 1,
            sizes: vec![2, 1],
        };
        let grads = cat.backward(&[a, b], &g)?;
        assert_eq!(views_of(&grads, &g), [vec![0., 1., 3., 4.], vec![2., 5.]]);
        // stack along dim 1 of three [2]: the columns of g
        let xs: Vec<_> = (0..3).map(|_| leaf(&[0.; 2], &[2])).collect();
        let grads = Stack { dim: 1 }.backward(&xs, &g)?;
        let columns = [vec![0., 3.], vec![1., 4.], vec![2., 5.]];
        assert_eq!(views_of(&grads, &g), columns);
        Ok(())
    }
}
