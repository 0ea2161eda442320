//! Deferred weight gradients: a weight used by a matmul at every time step receives
//! `dL/dW = Σ_t a_tᵀ g_t`. Instead of one thin GEMM per step (inner size = the batch), the tape
//! collects the factor pairs and forms the sum as one GEMM over the stacked factors when the
//! weight's turn comes (after every use, by creation order).

use rustc_hash::FxHashMap as HashMap;

use crate::element::Element;
use crate::error::Result;
use crate::layout::Layout;
use crate::tensor::{Tensor, TensorId};

/// A factor pair `(a, g)` standing for the product `aᵀ g`.
type Factors<E> = (Tensor<E>, Tensor<E>);

/// Factor pairs per tensor id.
#[derive(Default)]
pub(crate) struct DeferredProducts<E: Element> {
    pairs: HashMap<TensorId, Vec<Factors<E>>>,
}

impl<E: Element> DeferredProducts<E> {
    pub(crate) fn new() -> Self {
        DeferredProducts {
            pairs: HashMap::default(),
        }
    }

    /// Records `aᵀ g` as a gradient contribution to `id` (`a`: [m, k], `g`: [m, n]).
    pub(crate) fn push(&mut self, id: TensorId, a: Tensor<E>, g: Tensor<E>) {
        self.pairs.entry(id).or_default().push((a, g));
    }

    /// The sum of the products recorded for `id`, if any: `Aᵀ G` with the `a`s and `g`s
    /// stacked by rows, so many thin products become one GEMM. It is laid out like `like`, the
    /// tensor it is the gradient of (see [`matmul::at_g_like`](crate::ops::matmul::at_g_like)).
    pub(crate) fn take(&mut self, id: TensorId, like: &Layout) -> Result<Option<Tensor<E>>> {
        let Some(pairs) = self.pairs.remove(&id) else {
            return Ok(None);
        };
        let (a, g) = if pairs.len() == 1 {
            pairs.into_iter().next().expect("one pair")
        } else {
            let a: Vec<&Tensor<E>> = pairs.iter().map(|(a, _)| a).collect();
            let g: Vec<&Tensor<E>> = pairs.iter().map(|(_, g)| g).collect();
            (Tensor::cat(&a, 0)?, Tensor::cat(&g, 0)?)
        };
        Ok(Some(crate::ops::matmul::at_g_like(&a, &g, like)?))
    }
}
