//! Broadcasting: the one op that expands size-1 or missing leading dims.

use std::sync::Arc;

use super::grads1;
use crate::element::Element;
use crate::error::Result;
use crate::layout::Dims;
use crate::tape::{InputGrads, Op};
use crate::tensor::Tensor;

/// `y = x` viewed with shape `s` (trailing-aligned; size-1 or missing dims repeat).
/// `dL/dx` = `dL/dy` summed over the broadcast dims, reshaped to `x`'s shape.
/// A view: stride 0 on broadcast dims, no copy.
pub struct BroadcastTo {
    in_shape: Dims,
}

impl BroadcastTo {
    /// Applies the op.
    pub fn forward<E: Element>(x: &Tensor<E>, shape: &[usize]) -> Result<Tensor<E>> {
        if x.shape() == shape {
            return Ok(x.clone());
        }
        let layout = x.layout().broadcast_to(shape)?;
        Ok(Tensor::from_op(
            Arc::clone(x.storage_arc()),
            layout,
            &[x],
            || BroadcastTo {
                in_shape: x.shape().into(),
            },
        ))
    }
}

/// Sums `g` down to `shape` (the reverse of broadcasting `shape` up to `g`'s shape).
pub(crate) fn sum_to_shape<E: Element>(g: &Tensor<E>, shape: &[usize]) -> Result<Tensor<E>> {
    if g.shape() == shape {
        return Ok(g.clone());
    }
    let lead = g.rank() - shape.len();
    let mut reduce = vec![false; g.rank()];
    for (i, r) in reduce.iter_mut().enumerate() {
        *r = i < lead || (shape[i - lead] == 1 && g.shape()[i] != 1);
    }
    let (data, _) = super::reduce::sum_kernel(g, &reduce);
    Ok(super::constant(data, shape))
}

impl<E: Element> Op<E> for BroadcastTo {
    fn name(&self) -> &'static str {
        "broadcast_to"
    }
    fn backward(&self, _: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        Ok(grads1(sum_to_shape(g, &self.in_shape)?))
    }
}

impl<E: Element> Tensor<E> {
    /// Broadcasts to `shape` (a view), see [`BroadcastTo`].
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// let b = Tensor::<f32>::from_vec(vec![1., 2.], &[2])?.broadcast_to(&[2, 2])?;
    /// assert_eq!(b.to_vec(), vec![1., 2., 1., 2.]);
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor<E>> {
        BroadcastTo::forward(self, shape)
    }
}
