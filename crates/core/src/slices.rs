//! Gradients that arrive as slices of their input (the backward of `narrow`, `select` and other
//! ops with a [`grad_slice`](crate::tape::Op::grad_slice)). An LSTM step reads its four gates
//! as column blocks of one product, and every step reads its rows of the input projection, so
//! the input projection's gradient arrives as one row block per time step.
//!
//! The first slice of an input starts a buffer of the input's size that is not zero-filled:
//! slices that land on parts nothing has covered yet (along the first slice's dim) are copied
//! there, and only when a slice overlaps a covered part, or cuts another dim, are the parts
//! still uncovered zeroed and the slice added. When the gradient is taken, whatever is still
//! uncovered is zeroed. Slices that tile the input (a recurrent layer's steps, an LSTM's
//! gates) therefore cost one copy each and no zero fill or read-modify-write, and every
//! element still gets `0 + s₁ + s₂ + …` in the order the slices came, so the bits are those
//! of adding them into zeros. Each slice is released as soon as it is placed.

use rustc_hash::FxHashMap as HashMap;

use crate::element::Element;
use crate::error::Result;
use crate::layout::Layout;
use crate::tensor::{Tensor, TensorId};

/// The gradient of one input, built from slices.
struct Assembly<E: Element> {
    data: Vec<E>,
    /// `Some((dim, spans))` while only copies along `dim` have been made: the sorted,
    /// disjoint spans of that dim they cover (the rest of `data` is unset). `None` once every
    /// element is set.
    partial: Option<(usize, Vec<(usize, usize)>)>,
}

/// Slice gradients per input id.
#[derive(Default)]
pub(crate) struct PendingSlices<E: Element> {
    pending: HashMap<TensorId, Assembly<E>>,
}

impl<E: Element> PendingSlices<E> {
    pub(crate) fn new() -> Self {
        PendingSlices {
            pending: HashMap::default(),
        }
    }

    /// Places `g`, the gradient of the slice at `start` along `dim` of tensor `id` (of shape
    /// `shape`; the caller has checked that it fits).
    pub(crate) fn push(
        &mut self,
        id: TensorId,
        shape: &[usize],
        dim: usize,
        start: usize,
        g: &Tensor<E>,
    ) {
        let span = (start, start + g.shape()[dim]);
        let a = self.pending.entry(id).or_insert_with(|| Assembly {
            data: crate::storage::overwritable(crate::layout::numel(shape)),
            partial: Some((dim, Vec::new())),
        });
        if let Some((d, spans)) = &mut a.partial {
            let at = spans.partition_point(|s| s.1 <= span.0);
            if *d == dim && spans.get(at).is_none_or(|s| s.0 >= span.1) {
                scatter(&mut a.data, shape, dim, start, g, |x, v| *x = v);
                spans.insert(at, span);
                return;
            }
            zero_uncovered(&mut a.data, shape, *d, spans);
            a.partial = None;
        }
        scatter(&mut a.data, shape, dim, start, g, |x, v| *x += v);
    }

    /// The gradient of `id` (of shape `shape`): `acc` (a gradient accumulated apart from the
    /// slices, if any) plus the slices placed for it, or `acc` alone when there are none.
    pub(crate) fn take(
        &mut self,
        id: TensorId,
        shape: &[usize],
        acc: Option<Tensor<E>>,
    ) -> Result<Option<Tensor<E>>> {
        let Some(mut a) = self.pending.remove(&id) else {
            return Ok(acc);
        };
        if let Some((dim, spans)) = &a.partial {
            zero_uncovered(&mut a.data, shape, *dim, spans);
        }
        let sliced = Tensor::from_vec(a.data, shape)?;
        match acc {
            None => Ok(Some(sliced)),
            Some(acc) => crate::tape::add_into(acc, &sliced).map(Some),
        }
    }
}

/// Zeroes the parts of `dim` that `spans` (sorted, disjoint) leave uncovered.
fn zero_uncovered<E: Element>(
    data: &mut [E],
    shape: &[usize],
    dim: usize,
    spans: &[(usize, usize)],
) {
    let mut from = 0;
    for &(a, b) in spans
        .iter()
        .chain(std::iter::once(&(shape[dim], shape[dim])))
    {
        if a > from {
            let region = Layout::contiguous(shape).narrow(dim, from, a - from);
            let run = region.inner_run().max(1);
            region.for_each_run(run, |o| data[o..o + run].fill(E::zero()));
        }
        from = b;
    }
}

/// `f(buffer element, slice element)` over the slice at `start` along `dim` of a contiguous
/// buffer of `shape`.
fn scatter<E: Element>(
    buf: &mut [E],
    shape: &[usize],
    dim: usize,
    start: usize,
    g: &Tensor<E>,
    f: impl Fn(&mut E, E),
) {
    let region = Layout::contiguous(shape).narrow(dim, start, g.shape()[dim]);
    let gd = g.contiguous_data();
    let run = region.inner_run().max(1);
    let mut i = 0;
    region.for_each_run(run, |o| {
        for (a, &b) in buf[o..o + run].iter_mut().zip(&gd[i..i + run]) {
            f(a, b);
        }
        i += run;
    });
}

/// Adds `g`, the gradient of the slice at `start` along `dim`, into `acc`, a gradient of shape
/// `shape` accumulated so far, in place when the buffer is ours.
pub(crate) fn add_into_slice<E: Element>(
    mut acc: Tensor<E>,
    shape: &[usize],
    dim: usize,
    start: usize,
    g: &Tensor<E>,
) -> Result<Tensor<E>> {
    let add = |a: &mut E, b: E| *a += b;
    if let Some(inner) = std::sync::Arc::get_mut(&mut acc.inner) {
        if inner.layout.is_contiguous() && inner.layout.offset() == 0 {
            if let Some(data) = std::sync::Arc::get_mut(&mut inner.data) {
                if data.len() == crate::layout::numel(shape) {
                    scatter(data, shape, dim, start, g, add);
                    return Ok(acc);
                }
            }
        }
    }
    let mut data = acc.to_vec();
    scatter(&mut data, shape, dim, start, g, add);
    Tensor::from_vec(data, shape)
}
