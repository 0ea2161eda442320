//! Gradients that arrive as slices of their input (the backward of `narrow`, `select` and other
//! ops with a [`grad_slice`](crate::tape::Op::grad_slice)). An LSTM step reads its four gates
//! as column blocks of one product, and every step reads its rows of the input projection, so
//! the input projection's gradient arrives as one row block per time step.
//!
//! The tape keeps such slices until the gradient is needed (the input's turn, or a whole
//! gradient arriving for it). Slices that cover the input exactly once along one dim are then
//! copied into a fresh buffer, with no zero fill and no read of the buffer. Anything else is
//! added into zeros (or into the accumulated gradient) in the order the slices came, as
//! before: disjoint slices land on different elements, so either way gives the same bits.

use rustc_hash::FxHashMap as HashMap;

use crate::element::Element;
use crate::error::Result;
use crate::layout::Layout;
use crate::tensor::{Tensor, TensorId};

/// One slice gradient: `g` lies at `start..start + g.shape()[dim]` along `dim`.
struct Slice<E: Element> {
    dim: usize,
    start: usize,
    g: Tensor<E>,
}

/// Slice gradients per input id, in the order they arrived.
#[derive(Default)]
pub(crate) struct PendingSlices<E: Element> {
    pending: HashMap<TensorId, Vec<Slice<E>>>,
}

impl<E: Element> PendingSlices<E> {
    pub(crate) fn new() -> Self {
        PendingSlices {
            pending: HashMap::default(),
        }
    }

    /// Records `g` as the gradient of the slice at `start` along `dim` of tensor `id` (the
    /// caller has checked that it fits).
    pub(crate) fn push(&mut self, id: TensorId, dim: usize, start: usize, g: Tensor<E>) {
        self.pending
            .entry(id)
            .or_default()
            .push(Slice { dim, start, g });
    }

    /// The gradient of `id` (of shape `shape`): `acc` (the gradient accumulated so far, if
    /// any) plus the slices recorded for it, or `acc` alone when there are none.
    pub(crate) fn take(
        &mut self,
        id: TensorId,
        shape: &[usize],
        acc: Option<Tensor<E>>,
    ) -> Result<Option<Tensor<E>>> {
        let Some(slices) = self.pending.remove(&id) else {
            return Ok(acc);
        };
        if acc.is_none() && tiles(shape, &slices) {
            let mut data = crate::storage::overwritable(crate::layout::numel(shape));
            for s in &slices {
                scatter(&mut data, shape, s, |a, b| *a = b);
            }
            return Tensor::from_vec(data, shape).map(Some);
        }
        let mut acc = acc;
        for s in &slices {
            acc = Some(add_into_slice(acc, shape, s)?);
        }
        Ok(acc)
    }
}

/// True when `slices` all cut the same dim and cover `0..shape[dim]` exactly once.
fn tiles<E: Element>(shape: &[usize], slices: &[Slice<E>]) -> bool {
    let dim = slices[0].dim;
    if slices.iter().any(|s| s.dim != dim) {
        return false;
    }
    let mut spans: Vec<(usize, usize)> = slices
        .iter()
        .map(|s| (s.start, s.start + s.g.shape()[dim]))
        .collect();
    spans.sort_unstable();
    let mut end = 0;
    for (a, b) in spans {
        if a != end {
            return false;
        }
        end = b;
    }
    end == shape[dim]
}

/// `f(buffer element, slice element)` over the region of `s` in a contiguous buffer of `shape`.
fn scatter<E: Element>(buf: &mut [E], shape: &[usize], s: &Slice<E>, f: impl Fn(&mut E, E)) {
    let region = Layout::contiguous(shape).narrow(s.dim, s.start, s.g.shape()[s.dim]);
    let gd = s.g.contiguous_data();
    let run = region.inner_run().max(1);
    let mut i = 0;
    region.for_each_run(run, |o| {
        for (a, &b) in buf[o..o + run].iter_mut().zip(&gd[i..i + run]) {
            f(a, b);
        }
        i += run;
    });
}

/// Adds slice `s` into an accumulated gradient of shape `shape` (zeros when there is none
/// yet), in place when the buffer is ours.
fn add_into_slice<E: Element>(
    acc: Option<Tensor<E>>,
    shape: &[usize],
    s: &Slice<E>,
) -> Result<Tensor<E>> {
    let add = |a: &mut E, b: E| *a += b;
    if let Some(mut acc) = acc {
        if let Some(inner) = std::sync::Arc::get_mut(&mut acc.inner) {
            if inner.layout.is_contiguous() && inner.layout.offset() == 0 {
                if let Some(data) = std::sync::Arc::get_mut(&mut inner.data) {
                    if data.len() == crate::layout::numel(shape) {
                        scatter(data, shape, s, add);
                        return Ok(acc);
                    }
                }
            }
        }
        let mut data = acc.to_vec();
        scatter(&mut data, shape, s, add);
        return Tensor::from_vec(data, shape);
    }
    let mut data = crate::storage::zeros(crate::layout::numel(shape));
    scatter(&mut data, shape, s, add);
    Tensor::from_vec(data, shape)
}
