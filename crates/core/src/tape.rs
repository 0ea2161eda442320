//! The tape: how ops are recorded and how [`Tensor::backward`] replays them.
//!
//! Every recorded op output holds a `Node`: the op (which knows its own derivative) and the
//! input tensors. Ids are handed out in creation order, so visiting the reachable nodes in
//! decreasing id order is a valid reverse topological order: `backward` is one loop over a
//! sorted list, never a recursion. Graph memory belongs to the tensors that reach it and is
//! released (iteratively, see `Drop for Inner`) when the last of them is dropped.

use std::cell::Cell;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use smallvec::SmallVec;

use crate::element::Element;
use crate::error::{Error, Result, ResultExt};
pub use crate::grad_store::GradStore;
use crate::slices::Pending;
use crate::tensor::{Inner, Tensor, TensorId};

/// Gradients for an op's inputs, one entry per input (`None`: no gradient for that input).
pub type InputGrads<E> = SmallVec<[Option<Tensor<E>>; 2]>;

/// A differentiable operation: the backward half of an op type.
///
/// Each op is one type whose public `forward` computes the value and calls
/// [`Tensor::from_op`], and whose `backward` maps the gradient of the output to gradients of the
/// inputs. `backward` runs with grad mode off. An op must not store tensors that track
/// gradients (store `detach()`ed values): the inputs are handed back to `backward`.
pub trait Op<E: Element>: Send + Sync + 'static {
    /// The op's name (used in error messages and anomaly reports).
    fn name(&self) -> &'static str;

    /// Given the inputs and `grad` = dL/d(output), returns dL/d(input) for each input, each with
    /// its input's shape.
    fn backward(&self, inputs: &[Tensor<E>], grad: &Tensor<E>) -> Result<InputGrads<E>>;

    /// For an op with one input whose gradient is `grad` written into a zero tensor of the
    /// input's shape at a slice (narrow, select): `Some((dim, start))`. The tape then adds
    /// `grad` straight into that slice of the input's accumulated gradient instead of calling
    /// `backward` and summing zero-padded copies (a recurrent layer narrows one projection per
    /// time step, so this turns O(T²) work into O(T)). The default, `None`, uses `backward`.
    fn grad_slice(&self) -> Option<(usize, usize)> {
        None
    }

    /// For an op with one 2-D input whose output is rows of that input (`index_select` along
    /// dim 0): the row picked for each output row. The tape then adds each row of `grad` into
    /// that row of the input's accumulated gradient, in order, instead of calling `backward`
    /// and adding a zero-filled gradient of the whole input (a recurrent layer picks one
    /// batch of rows of a projected embedding table per time step). The default, `None`,
    /// uses `backward`.
    fn grad_rows(&self) -> Option<&[usize]> {
        None
    }

    /// For an op that reads input `input` (a 2-D table) by rows, its row `j` being the
    /// table's row `rows[j]` (a lookup fused into a product's added term, see
    /// [`Tensor::index_addmm_acts`]): `Some(rows)`. `backward` then returns, for that input,
    /// one gradient row per entry of `rows` (shape `[rows.len(), cols]`), and the tape adds
    /// each into its row of the table's accumulated gradient, in order, as for
    /// [`Op::grad_rows`]. The default, `None`, expects a gradient of the input's shape.
    fn grad_rows_of(&self, _input: usize) -> Option<&[usize]> {
        None
    }

    /// For an op whose output holds rows of its only input in a known order (an embedding
    /// lookup, a reshape): how, so [`Tensor::row_lookup`] can follow the chain.
    /// Default `None`.
    fn row_source(&self) -> Option<crate::lookup::RowSource<'_>> {
        None
    }

    /// For an op whose output is the transpose of its only input, a 2-D tensor (`t()`,
    /// `transpose(0, 1)`): `true`. When products run on two threads, a deferred product
    /// `aᵀ g` aimed at such an output is then recorded for the input instead and transposed
    /// when taken, so that a weight read as `w.t()` has its gradient formed when `w`'s turn
    /// comes, after every op that used it (at the end of the backward pass for a parameter),
    /// and a large one can run on the helper meanwhile (see [`Op::deferred_input`]). The
    /// default, `false`, records it for the output.
    fn transposes(&self) -> bool {
        false
    }

    /// For a 2-D product `y = a @ b` whose `b` may be used many times (a recurrent weight, once
    /// per time step): `Some(1)` asks the tape to call [`Op::backward_deferring`] so that
    /// `dL/db = aᵀ g` is collected and summed as one GEMM over all uses. Default `None`.
    fn deferred_input(&self, _inputs: &[Tensor<E>]) -> Option<usize> {
        None
    }

    /// With [`Op::deferred_input`] = `Some(i)`: the gradients of every input except `i`
    /// (`None` in slot `i`) and the factors `(a, g)` with `dL/d(input i) = aᵀ g`.
    fn backward_deferring(
        &self,
        inputs: &[Tensor<E>],
        grad: &Tensor<E>,
    ) -> Result<(InputGrads<E>, Tensor<E>, Tensor<E>)> {
        let _ = (inputs, grad);
        Err(Error::Backward(format!(
            "op {} asked for a deferred gradient but does not provide one",
            self.name()
        )))
    }
}

/// A recorded op application.
pub(crate) struct Node<E: Element> {
    pub(crate) op: Box<dyn Op<E>>,
    pub(crate) inputs: SmallVec<[Tensor<E>; 2]>,
}

/// What a tensor is in the graph.
pub(crate) enum GradSlot<E: Element> {
    /// A constant.
    None,
    /// A leaf that collects gradients.
    Leaf,
    /// The output of a recorded op.
    Node(Node<E>),
}

impl<E: Element> Drop for Inner<E> {
    /// Frees a chain of nodes without recursing: inputs whose last handle is ours are unlinked
    /// into a work list instead of being dropped inside this call.
    fn drop(&mut self) {
        let GradSlot::Node(node) = std::mem::replace(&mut self.grad, GradSlot::None) else {
            return;
        };
        let mut work: Vec<Tensor<E>> = node.inputs.into_vec();
        while let Some(t) = work.pop() {
            if let Some(mut inner) = std::sync::Arc::into_inner(t.inner) {
                if let GradSlot::Node(n) = std::mem::replace(&mut inner.grad, GradSlot::None) {
                    work.extend(n.inputs);
                }
            }
        }
    }
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// True unless a [`no_grad`] guard is alive on this thread.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Restores the previous grad mode when dropped. Created by [`no_grad`].
pub struct NoGradGuard {
    prev: bool,
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.prev));
    }
}

/// Turns recording off on this thread until the guard is dropped (like `torch.no_grad()`).
///
/// ```
/// use retrograd_core::{no_grad, Tensor};
/// let x = Tensor::<f32>::ones(&[2]).requires_grad();
/// let y = {
///     let _g = no_grad();
///     x.exp()
/// };
/// assert!(!y.tracks_grad());
/// assert!(x.exp().tracks_grad());
/// ```
pub fn no_grad() -> NoGradGuard {
    let prev = GRAD_ENABLED.with(|g| g.replace(false));
    NoGradGuard { prev }
}

impl<E: Element> Tensor<E> {
    /// Backpropagates from this one-element tensor (seed gradient 1) and returns the gradients
    /// of every reachable leaf. The graph is kept, so calling it again gives the same result.
    pub fn backward(&self) -> Result<GradStore<E>> {
        if self.numel() != 1 {
            return Err(Error::Backward(format!(
                "backward() needs a one-element tensor, got shape {:?}; use backward_with(grad)",
                self.shape()
            )));
        }
        self.backward_with(&Tensor::ones(self.shape()))
    }

    /// Backpropagates with an explicit upstream gradient of this tensor's shape
    /// (like `tensor.backward(gradient)`).
    pub fn backward_with(&self, grad: &Tensor<E>) -> Result<GradStore<E>> {
        if !self.tracks_grad() {
            return Err(Error::Backward(
                "tensor does not track gradients (no input requires grad, or it was made under no_grad)".into(),
            ));
        }
        if grad.shape() != self.shape() {
            return Err(Error::shape(
                "backward",
                format!("gradient {:?} vs tensor {:?}", grad.shape(), self.shape()),
            ));
        }
        let _guard = no_grad();
        let order = reachable_in_reverse_order(self);
        let mut pending: HashMap<TensorId, Pending<E>> =
            HashMap::with_capacity_and_hasher(order.len(), Default::default());
        pending.insert(self.id(), Pending::Whole(grad.clone()));
        let mut store = GradStore::new();
        let mut deferred = crate::deferred::DeferredProducts::new();
        for t in &order {
            // a gradient that only picked rows reached keeps their ids for the store
            let (acc, reached) = match pending.remove(&t.id()) {
                Some(Pending::Rows(g, rows)) => (Some(g), Some(rows)),
                Some(p) => (Some(p.into_tensor(t.shape())?), None),
                None => (None, None),
            };
            let (g, reached) = match (acc, deferred.take(t.id())?) {
                (None, None) => continue,
                (Some(g), None) => (g, reached),
                (None, Some(g)) => (g, None),
                (Some(g), Some(p)) => (add_into(g, &p)?, None),
            };
            match &t.inner.grad {
                GradSlot::Leaf => store.accumulate_reached(t.id(), g, reached)?,
                GradSlot::Node(node) => match placed(node.op.as_ref()) {
                    Some(place) => {
                        let input = &node.inputs[0];
                        if input.tracks_grad() {
                            let name = node.op.name();
                            match place {
                                Placed::Slice(dim, start) => {
                                    check_grad_slice(name, input.shape(), dim, start, g.shape())?
                                }
                                Placed::Rows(rows) => {
                                    check_grad_rows(name, input.shape(), rows, g.shape())?
                                }
                            }
                            crate::anomaly::check_backward(
                                name,
                                &node.inputs,
                                &smallvec::smallvec![Some(g.clone())],
                            )?;
                            place_grad(&mut pending, input, place, &g)?;
                        }
                    }
                    None => {
                        let name = node.op.name();
                        let defer = node
                            .op
                            .deferred_input(&node.inputs)
                            .filter(|&i| node.inputs.get(i).is_some_and(|x| x.tracks_grad()));
                        let input_grads = match defer {
                            Some(i) => {
                                let (grads, a, ga) =
                                    node.op
                                        .backward_deferring(&node.inputs, &g)
                                        .with_context(|| format!("backward of {name}"))?;
                                let (m, rows) = (a.dims2()?, ga.dims2()?);
                                let want = node.inputs[i].shape();
                                if m.0 != rows.0 || want != [m.1, rows.1] {
                                    return Err(Error::Backward(format!(
                                    "op {name} deferred factors {:?} and {:?} for an input of shape {want:?}",
                                    a.shape(),
                                    ga.shape()
                                )));
                                }
                                let (target, flipped) = if crate::threads::product_threads() > 1 {
                                    through_transposes(&node.inputs[i])
                                } else {
                                    // one thread: nothing to overlap, and the factors are
                                    // warmer now than after the rest of the backward pass
                                    (node.inputs[i].clone(), false)
                                };
                                let like = node.inputs[i].layout();
                                deferred.push(target.id(), (a, ga), like, flipped)?;
                                grads
                            }
                            None => node
                                .op
                                .backward(&node.inputs, &g)
                                .with_context(|| format!("backward of {name}"))?,
                        };
                        crate::anomaly::check_backward(name, &node.inputs, &input_grads)?;
                        for (k, (input, ig)) in node.inputs.iter().zip(input_grads).enumerate() {
                            let Some(ig) = ig else { continue };
                            if !input.tracks_grad() {
                                continue;
                            }
                            if let Some(rows) = node.op.grad_rows_of(k) {
                                check_grad_rows(name, input.shape(), rows, ig.shape())?;
                                place_grad(&mut pending, input, Placed::Rows(rows), &ig)?;
                                continue;
                            }
                            if ig.shape() != input.shape() {
                                return Err(Error::Backward(format!(
                                "op {name} returned a gradient of shape {:?} for an input of shape {:?}",
                                ig.shape(),
                                input.shape()
                            )));
                            }
                            let sum = match pending.remove(&input.id()) {
                                Some(prev) => add_into(prev.into_tensor(input.shape())?, &ig)?,
                                None => ig,
                            };
                            pending.insert(input.id(), Pending::Whole(sum));
                        }
                    }
                },
                GradSlot::None => {}
            }
        }
        Ok(store)
    }
}

/// Every tracking tensor reachable from `root`, sorted by decreasing id (reverse creation
/// order). Uses an explicit stack: no recursion however long the graph.
fn reachable_in_reverse_order<E: Element>(root: &Tensor<E>) -> Vec<Tensor<E>> {
    let mut seen: HashSet<TensorId> = HashSet::default();
    let mut stack = vec![root.clone()];
    let mut order = Vec::new();
    while let Some(t) = stack.pop() {
        if !seen.insert(t.id()) {
            continue;
        }
        if let GradSlot::Node(node) = &t.inner.grad {
            for input in &node.inputs {
                if input.tracks_grad() && !seen.contains(&input.id()) {
                    stack.push(input.clone());
                }
            }
        }
        order.push(t);
    }
    order.sort_unstable_by_key(|t| std::cmp::Reverse(t.id()));
    order
}

/// `acc + g`, reusing `acc`'s buffer when nothing else holds it (the common case for gradient
/// accumulation), else allocating like `add`. The buffer is reused when `acc` is contiguous, or
/// when `acc` and `g` are laid out alike over dense buffers (two transposed weight gradients),
/// element by element of the buffers.
pub(crate) fn add_into<E: Element>(mut acc: Tensor<E>, g: &Tensor<E>) -> Result<Tensor<E>> {
    // g's elements in the order of acc's buffer: g's own buffer when laid out alike, else in
    // row-major order, which a contiguous acc has
    let alike = acc.layout() == g.layout() && g.storage().len() == g.numel();
    let reusable = acc.shape() == g.shape()
        && !acc.tracks_grad()
        && acc.layout().offset() == 0
        && (alike || acc.layout().is_contiguous());
    let buffer = std::sync::Arc::get_mut(&mut acc.inner)
        .filter(|_| reusable)
        .and_then(|inner| std::sync::Arc::get_mut(&mut inner.data))
        .filter(|data| data.len() == g.numel());
    let Some(data) = buffer else {
        return acc.add(g);
    };
    let src = if alike {
        std::borrow::Cow::Borrowed(g.storage())
    } else {
        g.contiguous_data()
    };
    for (a, b) in data.iter_mut().zip(src.iter()) {
        *a += *b;
    }
    Ok(acc)
}

/// Where an op's input gets its gradient placed by the tape: its only input instead of
/// `backward` ([`Op::grad_slice`], [`Op::grad_rows`]), or the rows `backward` returned for one
/// input ([`Op::grad_rows_of`]).
#[derive(Clone, Copy)]
enum Placed<'a> {
    /// At `start` along `dim`.
    Slice(usize, usize),
    /// Row `j` of the gradient into row `rows[j]`.
    Rows(&'a [usize]),
}

/// Where a deferred product for `t` is recorded: when `t` is a transpose ([`Op::transposes`])
/// of a tensor that tracks gradients, under that tensor, and so on down a chain of
/// transposes (a loop, not a recursion). Returns the tensor and whether the product must be
/// transposed to be its gradient (an odd number of transposes). `t` is 2-D (the tape checked
/// the factors against its shape), and a transpose's input must have the transposed shape (a
/// custom op claiming [`Op::transposes`] wrongly is not followed).
fn through_transposes<E: Element>(t: &Tensor<E>) -> (Tensor<E>, bool) {
    let (mut t, mut flipped) = (t.clone(), false);
    loop {
        let source = match &t.inner.grad {
            GradSlot::Node(node)
                if node.op.transposes()
                    && node.inputs.len() == 1
                    && node.inputs[0].shape() == [t.shape()[1], t.shape()[0]]
                    && node.inputs[0].tracks_grad() =>
            {
                node.inputs[0].clone()
            }
            _ => return (t, flipped),
        };
        flipped = !flipped;
        t = source;
    }
}

/// Adds `g` into `input`'s pending gradient where `place` says (checked by the caller).
fn place_grad<E: Element>(
    pending: &mut HashMap<TensorId, Pending<E>>,
    input: &Tensor<E>,
    place: Placed<'_>,
    g: &Tensor<E>,
) -> Result<()> {
    let acc = pending.remove(&input.id());
    let sum = match place {
        Placed::Slice(dim, start) => Pending::add_slice(acc, input.shape(), dim, start, g)?,
        Placed::Rows(rows) => Pending::add_rows(acc, input.shape(), rows, g)?,
    };
    pending.insert(input.id(), sum);
    Ok(())
}

/// How `op` has its input's gradient placed, if it does.
fn placed<E: Element>(op: &dyn Op<E>) -> Option<Placed<'_>> {
    match op.grad_slice() {
        Some((dim, start)) => Some(Placed::Slice(dim, start)),
        None => op.grad_rows().map(Placed::Rows),
    }
}

/// Checks a `grad_rows` report against the input and gradient shapes (a custom op may
/// report any rows; a wrong report must be an error, not a panic).
fn check_grad_rows(name: &str, input: &[usize], rows: &[usize], g: &[usize]) -> Result<()> {
    let fits = matches!((input, g), ([n, c], [r, gc]) if c == gc && *r == rows.len()
        && rows.iter().all(|&i| i < *n));
    if fits {
        Ok(())
    } else {
        Err(Error::Backward(format!(
            "op {name} reported grad_rows ({} rows, largest {:?}) for a gradient of shape {g:?} \
             and an input of shape {input:?}",
            rows.len(),
            rows.iter().max()
        )))
    }
}

/// Checks that a gradient of shape `g` fits at `start` along `dim` of an input of shape `input`
/// (a custom op may report any `grad_slice`; a wrong one must be an error, not a panic).
fn check_grad_slice(
    name: &str,
    input: &[usize],
    dim: usize,
    start: usize,
    g: &[usize],
) -> Result<()> {
    let fits = dim < input.len()
        && g.len() == input.len()
        && g.iter().zip(input).enumerate().all(|(i, (&a, &b))| {
            if i == dim {
                start.checked_add(a).is_some_and(|end| end <= b)
            } else {
                a == b
            }
        });
    if fits {
        return Ok(());
    }
    Err(Error::Backward(format!(
        "op {name} reported grad_slice (dim {dim}, start {start}) for a gradient of shape {g:?} \
         and an input of shape {input:?}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deferred_product_for_a_transpose_goes_to_what_it_transposes() {
        let w = Tensor::<f64>::ones(&[3, 2]).requires_grad();
        let to = |t: &Tensor<f64>| {
            let (target, flipped) = through_transposes(t);
            (target.id(), flipped)
        };
        // w.t() is [2, 3]: its product, transposed, is w's gradient
        let wt = w.t().unwrap();
        assert_eq!(to(&wt), (w.id(), true));
        // down a chain: w.t().t() leads back to w, transposed twice
        let wtt = wt.t().unwrap();
        assert_eq!(to(&wtt), (w.id(), false));
        // not through a transpose of a tensor without gradient, nor through other views
        let c = Tensor::<f64>::ones(&[3, 2]).t().unwrap();
        assert_eq!(to(&c), (c.id(), false));
        let n = w.narrow(0, 0, 2).unwrap();
        assert_eq!(to(&n), (n.id(), false));
        // a 3-D permute swapping two dims is no 2-D transpose
        let p = Tensor::<f64>::ones(&[2, 3, 4])
            .requires_grad()
            .permute(&[1, 0, 2])
            .unwrap();
        assert_eq!(to(&p), (p.id(), false));
    }
}
