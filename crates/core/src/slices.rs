//! Gradients that arrive as slices of their input (the backward of `narrow`, `select` and other
//! ops with a [`grad_slice`](crate::tape::Op::grad_slice)). An LSTM step reads its four gates
//! as column blocks of one product, and every step reads its rows of the input projection, so
//! the input projection's gradient arrives as one row block per time step.
//!
//! The tape's `pending` map holds either kind of gradient ([`Pending`]). A slice arriving
//! after a whole gradient is added into it. The first slice of an input with none starts a
//! buffer of the input's size that is not zero-filled: slices that land on parts nothing has
//! covered yet (along the first slice's dim) are copied there, and only when a slice overlaps
//! a covered part, or cuts another dim, are the parts still uncovered zeroed and the slice
//! added. When the gradient is taken, whatever is still uncovered is zeroed. Slices that tile
//! the input (a recurrent layer's steps, an LSTM's gates) therefore cost one copy each and no
//! zero fill or read-modify-write, and every element still gets `0 + s₁ + s₂ + …` in the
//! order the slices came, so the bits are those of adding them into zeros. Each slice is
//! released as soon as it is placed.
//!
//! Rows picked from a matrix (`index_select` along dim 0, reported by
//! [`grad_rows`](crate::tape::Op::grad_rows)) come back the same way: each gradient row is
//! added into its row of the accumulated gradient ([`Pending::add_rows`]), so a table read
//! one batch of rows per time step keeps one gradient instead of a zero-filled copy per
//! step. A gradient made of such rows alone remembers which rows they were
//! ([`Pending::Rows`]): all its other rows are zero, which the tape passes on to the
//! [`GradStore`](crate::GradStore) (`nonzero_rows`), so that clipping and plain SGD can skip
//! them.

use crate::element::Element;
use crate::error::Result;
use crate::layout::Layout;
use crate::tensor::Tensor;

/// A gradient waiting in the tape: a whole one, or one still being put together from slices.
pub(crate) enum Pending<E: Element> {
    Whole(Tensor<E>),
    Sliced(Assembly<E>),
    /// A 2-D gradient that only rows picked by `grad_rows` have reached: every other row is
    /// zero. The row ids are those reports in order (unsorted, repeats kept).
    Rows(Tensor<E>, Vec<usize>),
}

impl<E: Element> Pending<E> {
    /// Starts or continues a gradient with `g`, the gradient of the slice at `start` along
    /// `dim` of an input of shape `shape` (the caller has checked that it fits): added into a
    /// whole gradient, placed in an assembly.
    pub(crate) fn add_slice(
        acc: Option<Self>,
        shape: &[usize],
        dim: usize,
        start: usize,
        g: &Tensor<E>,
    ) -> Result<Self> {
        Ok(match acc {
            Some(Pending::Whole(acc) | Pending::Rows(acc, _)) => {
                Pending::Whole(add_into_slice(acc, shape, dim, start, g)?)
            }
            Some(Pending::Sliced(mut a)) => {
                a.place(shape, dim, start, g);
                Pending::Sliced(a)
            }
            None => {
                let mut a = Assembly {
                    data: crate::storage::overwritable(crate::layout::numel(shape)),
                    partial: Some((dim, Vec::new())),
                };
                a.place(shape, dim, start, g);
                Pending::Sliced(a)
            }
        })
    }

    /// Starts or continues the gradient of a 2-D input of shape `shape` with `g`, whose row
    /// `j` is the gradient of the input's row `rows[j]` (the caller has checked the shapes and
    /// rows): each row of `g` is added into its row in order, in place when the buffer is
    /// ours, starting from zeros when nothing came before. With no earlier gradient the sums
    /// are those of `index_select`'s own backward (`0 + g₀ + g₁ + …` per row). A gradient
    /// that only rows have reached stays [`Pending::Rows`], with these rows added to its list.
    pub(crate) fn add_rows(
        acc: Option<Self>,
        shape: &[usize],
        rows: &[usize],
        g: &Tensor<E>,
    ) -> Result<Self> {
        let (acc, reached) = match acc {
            None => {
                let zeros = crate::storage::zeros(crate::layout::numel(shape));
                (Tensor::from_vec(zeros, shape)?, Some(Vec::new()))
            }
            Some(Pending::Rows(t, reached)) => (t, Some(reached)),
            Some(p) => (p.into_tensor(shape)?, None),
        };
        let sum = add_rows_into(acc, shape, rows, g)?;
        Ok(match reached {
            Some(mut reached) => {
                reached.extend_from_slice(rows);
                Pending::Rows(sum, reached)
            }
            None => Pending::Whole(sum),
        })
    }

    /// The gradient as a tensor of shape `shape` (an assembly's uncovered parts zeroed).
    pub(crate) fn into_tensor(self, shape: &[usize]) -> Result<Tensor<E>> {
        match self {
            Pending::Whole(t) | Pending::Rows(t, _) => Ok(t),
            Pending::Sliced(mut a) => {
                if let Some((dim, spans)) = &a.partial {
                    zero_uncovered(&mut a.data, shape, *dim, spans);
                }
                Tensor::from_vec(a.data, shape)
            }
        }
    }
}

/// A gradient built from slices.
pub(crate) struct Assembly<E: Element> {
    data: Vec<E>,
    /// `Some((dim, spans))` while only copies along `dim` have been made: the sorted,
    /// disjoint spans of that dim they cover (the rest of `data` is unset). `None` once every
    /// element is set.
    partial: Option<(usize, Vec<(usize, usize)>)>,
}

impl<E: Element> Assembly<E> {
    /// Copies `g` in where it lands on uncovered parts of the same dim; else sets every
    /// element (zeroing what is uncovered) and adds it.
    fn place(&mut self, shape: &[usize], dim: usize, start: usize, g: &Tensor<E>) {
        let span = (start, start + g.shape()[dim]);
        if let Some((d, spans)) = &mut self.partial {
            let at = spans.partition_point(|s| s.1 <= span.0);
            if *d == dim && spans.get(at).is_none_or(|s| s.0 >= span.1) {
                scatter(&mut self.data, shape, dim, start, g, |x, v| *x = v);
                spans.insert(at, span);
                return;
            }
            zero_uncovered(&mut self.data, shape, *d, spans);
            self.partial = None;
        }
        scatter(&mut self.data, shape, dim, start, g, |x, v| *x += v);
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
fn add_into_slice<E: Element>(
    acc: Tensor<E>,
    shape: &[usize],
    dim: usize,
    start: usize,
    g: &Tensor<E>,
) -> Result<Tensor<E>> {
    update(acc, shape, |data| {
        scatter(data, shape, dim, start, g, |a: &mut E, b| *a += b)
    })
}

/// Adds row `j` of `g` into row `rows[j]` of `acc` (2-D, `shape[1]` columns), in order, in
/// place when the buffer is ours.
fn add_rows_into<E: Element>(
    acc: Tensor<E>,
    shape: &[usize],
    rows: &[usize],
    g: &Tensor<E>,
) -> Result<Tensor<E>> {
    let cols = shape[1].max(1);
    let gd = g.contiguous_data();
    update(acc, shape, |data| {
        for (&i, src) in rows.iter().zip(gd.chunks_exact(cols)) {
            for (d, &v) in data[i * cols..(i + 1) * cols].iter_mut().zip(src) {
                *d += v;
            }
        }
    })
}

/// `acc` (of shape `shape`) after `f` has changed its elements in row-major order: in `acc`'s
/// own buffer when nothing else holds it and it is laid out contiguously from offset 0, else
/// in a copy.
fn update<E: Element>(
    mut acc: Tensor<E>,
    shape: &[usize],
    f: impl FnOnce(&mut [E]),
) -> Result<Tensor<E>> {
    if let Some(inner) = std::sync::Arc::get_mut(&mut acc.inner) {
        if inner.layout.is_contiguous() && inner.layout.offset() == 0 {
            if let Some(data) = std::sync::Arc::get_mut(&mut inner.data) {
                if data.len() == crate::layout::numel(shape) {
                    f(data);
                    return Ok(acc);
                }
            }
        }
    }
    let mut data = acc.to_vec();
    f(&mut data);
    Tensor::from_vec(data, shape)
}
