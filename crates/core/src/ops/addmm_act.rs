//! `act(c + a @ b)` as one op: a product, an added term and an activation.

use std::sync::Arc;

use smallvec::SmallVec;

use super::constant;
use super::matmul::{addmm_values, Addmm, Block, Epilogue};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::tape::{InputGrads, Op};
use crate::tensor::Tensor;

/// The activation of an [`AddmmAct`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `tanh(x)`, derivative `1 - y²`.
    Tanh,
    /// `1 / (1 + e^-x)`, derivative `y (1 - y)`.
    Sigmoid,
    /// `max(x, 0)`, derivative `1` where `y > 0`, else `0` (as PyTorch, 0 at x = 0).
    Relu,
}

impl Activation {
    // Each loop below dispatches to the sixteen-lane kernel of `Element::lanes` where there is
    // one (`f32` with AVX-512, see the crate's `lanes` module) and otherwise runs its `_scalar`
    // twin, the loop the compiler vectorizes; the kernels run the same twins on their tails.

    /// `y = act(y)` over a slice (the values of the single-activation ops).
    pub(crate) fn apply<E: Element>(self, y: &mut [E]) {
        match E::lanes() {
            Some(lanes) => (lanes.apply)(self, y),
            None => self.apply_scalar(y),
        }
    }

    /// [`apply`](Self::apply) as a scalar loop, one per activation so each vectorizes without
    /// a branch inside.
    pub(crate) fn apply_scalar<E: Element>(self, y: &mut [E]) {
        match self {
            Activation::Tanh => y.iter_mut().for_each(|v| *v = v.tanh_k()),
            Activation::Sigmoid => y.iter_mut().for_each(|v| *v = v.sigmoid_k()),
            Activation::Relu => y
                .iter_mut()
                .for_each(|v| *v = if *v > E::zero() { *v } else { E::zero() }),
        }
    }

    /// `y = act(y + c)` over a slice, the sum rounded first (the bits of `y += c` followed by
    /// [`apply`](Self::apply)) in one pass: an `addmm_acts` epilogue (the LSTM gates).
    pub(crate) fn apply_added<E: Element>(self, y: &mut [E], c: &[E]) {
        match E::lanes() {
            Some(lanes) => (lanes.added)(self, y, c),
            None => self.apply_added_scalar(y, c),
        }
    }

    /// [`apply_added`](Self::apply_added) as a scalar loop.
    pub(crate) fn apply_added_scalar<E: Element>(self, y: &mut [E], c: &[E]) {
        let pairs = y.iter_mut().zip(c);
        match self {
            Activation::Tanh => pairs.for_each(|(v, &c)| *v = (*v + c).tanh_k()),
            Activation::Sigmoid => pairs.for_each(|(v, &c)| *v = (*v + c).sigmoid_k()),
            Activation::Relu => pairs.for_each(|(v, &c)| {
                let s = *v + c;
                *v = if s > E::zero() { s } else { E::zero() }
            }),
        }
    }

    /// Writes `act(x)` into `out` (as long as `x`).
    pub(crate) fn write_act<E: Element>(self, out: &mut [E], x: &[E]) {
        match E::lanes() {
            Some(lanes) => (lanes.act)(self, out, x),
            None => self.write_act_scalar(out, x),
        }
    }

    /// [`write_act`](Self::write_act) as a scalar loop.
    pub(crate) fn write_act_scalar<E: Element>(self, out: &mut [E], x: &[E]) {
        self.write_with(out, x, x, |t, _| t)
    }

    /// Writes `a ⊙ act(x)` into `out` (`out`, `x` and `a` the same length).
    pub(crate) fn write_mul_act<E: Element>(self, out: &mut [E], x: &[E], a: &[E]) {
        match E::lanes() {
            Some(lanes) => (lanes.mul_act)(self, out, x, a),
            None => self.write_mul_act_scalar(out, x, a),
        }
    }

    /// [`write_mul_act`](Self::write_mul_act) as a scalar loop.
    pub(crate) fn write_mul_act_scalar<E: Element>(self, out: &mut [E], x: &[E], a: &[E]) {
        self.write_with(out, x, a, |t, a| a * t)
    }

    /// Writes `f(act(x), o)` for each `x` of `x` and `o` of `other` into `out` (all the same
    /// length), in one pass: one loop per activation, each vectorizing with `f` inlined.
    fn write_with<E: Element>(self, out: &mut [E], x: &[E], other: &[E], f: impl Fn(E, E) -> E) {
        let slots = out.iter_mut().zip(x.iter().zip(other));
        match self {
            Activation::Tanh => slots.for_each(|(y, (&x, &o))| *y = f(x.tanh_k(), o)),
            Activation::Sigmoid => slots.for_each(|(y, (&x, &o))| *y = f(x.sigmoid_k(), o)),
            Activation::Relu => {
                slots.for_each(|(y, (&x, &o))| *y = f(if x > E::zero() { x } else { E::zero() }, o))
            }
        }
    }

    /// Writes `g ⊙ act'(y)` for each `g` of `g` and output `y` of `y` into `out` (all the same
    /// length).
    pub(crate) fn write_grads<E: Element>(self, out: &mut [E], g: &[E], y: &[E]) {
        match E::lanes() {
            Some(lanes) => (lanes.grads)(self, out, g, y),
            None => self.write_grads_scalar(out, g, y),
        }
    }

    /// [`write_grads`](Self::write_grads) as a scalar loop.
    pub(crate) fn write_grads_scalar<E: Element>(self, out: &mut [E], g: &[E], y: &[E]) {
        self.write_grad_pairs(out, g.iter().copied().zip(y.iter().copied()))
    }

    /// Writes `(g ⊙ a) ⊙ act'(y)` into `out` (all four the same length): the gradient of
    /// [`MulAct`](super::binary::MulAct) for its `b`, whose upstream gradient is `g·a`.
    pub(crate) fn write_scaled_grads<E: Element>(self, out: &mut [E], g: &[E], a: &[E], y: &[E]) {
        match E::lanes() {
            Some(lanes) => (lanes.scaled_grads)(self, out, g, a, y),
            None => self.write_scaled_grads_scalar(out, g, a, y),
        }
    }

    /// [`write_scaled_grads`](Self::write_scaled_grads) as a scalar loop.
    pub(crate) fn write_scaled_grads_scalar<E: Element>(
        self,
        out: &mut [E],
        g: &[E],
        a: &[E],
        y: &[E],
    ) {
        let upstream = g.iter().zip(a).map(|(&g, &a)| g * a);
        self.write_grad_pairs(out, upstream.zip(y.iter().copied()))
    }

    /// Writes `g ⊙ act'` for each pair `(g, y)` of an upstream gradient and an output into
    /// `out`, each value as [`grad`](Self::grad) computes it: one loop per activation that
    /// reads its operands once and writes `out` once (a copy of `g` changed in place was a
    /// second pass, about 0.7% of B1's one-thread profile). `pairs` is a zip of slice
    /// iterators, so that each loop vectorizes.
    fn write_grad_pairs<E: Element>(self, out: &mut [E], pairs: impl Iterator<Item = (E, E)>) {
        let slots = out.iter_mut().zip(pairs);
        match self {
            Activation::Tanh => slots.for_each(|(o, (g, y))| *o = Activation::Tanh.grad(g, y)),
            Activation::Sigmoid => {
                slots.for_each(|(o, (g, y))| *o = Activation::Sigmoid.grad(g, y))
            }
            Activation::Relu => slots.for_each(|(o, (g, y))| *o = Activation::Relu.grad(g, y)),
        }
    }

    /// `g ⊙ act'(y)` for an upstream gradient `g` and an op's saved output `y` (same shape),
    /// contiguous.
    pub(crate) fn grads<E: Element>(self, g: &Tensor<E>, y: &Tensor<E>) -> Vec<E> {
        super::write_runs([g, y], |out, [g, y]| self.write_grads(out, g, y))
    }

    /// `g ⊙ act'` written with the output `y`, as the single-activation ops compute it.
    pub(crate) fn grad<E: Element>(self, g: E, y: E) -> E {
        match self {
            Activation::Tanh => g * (E::one() - y * y),
            Activation::Sigmoid => g * y * (E::one() - y),
            Activation::Relu => {
                if y > E::zero() {
                    g
                } else {
                    E::zero()
                }
            }
        }
    }
}

/// `Y = act(C + A B)` for 2-D `A: [m,k]`, `B: [k,n]` and `C` of shape `[m,n]` (any view, as
/// for [`Addmm`]), with `act` one of [`Activation`]: what an RNN step (`tanh(x Wᵢₕᵀ + b + h
/// Wₕₕᵀ)`) or a `Linear` followed by an activation computes, in one node instead of two
/// (PyTorch has the same fusion as `_addmm_activation`). The values are those of `addmm`
/// followed by the activation op.
///
/// The activation may also differ by column block: with `acts = [act₀, …, act_{q-1}]`, the
/// `n` columns are cut into `q` blocks of `n / q`, and block `j` gets `act_j` (an LSTM's gates
/// `σ, σ, tanh, σ` over `[i | f | g | o]`). The block values are those of `addmm`, `narrow`
/// and each activation op. On two threads each half of a split product is added and
/// activated by the thread that computed it.
///
/// With `G' = G ⊙ act'(Y)` (tanh: `1 - Y²`, sigmoid: `Y (1 - Y)`, relu: `[Y > 0]`, by column
/// block): `dC = G'`, `dA = G' Bᵀ`, `dB = Aᵀ G'` (deferred and stacked like [`Addmm`]'s).
/// With the added term taken as rows of a table ([`AddmmAct::forward_rows`]), row `i` of `G'`
/// is added into the table's row `rows[i]`.
pub struct AddmmAct<E: Element> {
    acts: SmallVec<[Activation; 4]>,
    y: Tensor<E>,
    /// The table rows added to the product's rows ([`AddmmAct::forward_rows`]).
    rows: Option<Arc<[usize]>>,
}

impl<E: Element> AddmmAct<E> {
    /// Applies the op, `acts` one activation per column block (one for all columns).
    pub fn forward(
        c: &Tensor<E>,
        a: &Tensor<E>,
        b: &Tensor<E>,
        acts: &[Activation],
    ) -> Result<Tensor<E>> {
        Self::make(c, None, a, b, acts)
    }

    /// `act(table[rows] + a @ b)`: the op with its added term's row `i` read from row
    /// `rows[i]` of the 2-D `table` (a lookup of a projected embedding table) instead of
    /// from a picked copy. The table's gradient gets `G'`'s row `i` added into row `rows[i]`
    /// ([`Op::grad_rows_of`]). Values and gradients are those of
    /// `table.index_select(0, rows)` followed by [`AddmmAct::forward`].
    pub fn forward_rows(
        table: &Tensor<E>,
        rows: &[usize],
        a: &Tensor<E>,
        b: &Tensor<E>,
        acts: &[Activation],
    ) -> Result<Tensor<E>> {
        Self::make(table, Some(rows.into()), a, b, acts)
    }

    fn make(
        c: &Tensor<E>,
        rows: Option<Arc<[usize]>>,
        a: &Tensor<E>,
        b: &Tensor<E>,
        acts: &[Activation],
    ) -> Result<Tensor<E>> {
        let n = b.shape().get(1).copied().unwrap_or(0);
        if acts.is_empty() || n % acts.len() != 0 {
            return Err(Error::shape(
                "addmm_act",
                format!(
                    "{} activations cannot split the product's {n} columns ({:?} @ {:?}) into equal blocks",
                    acts.len(),
                    a.shape(),
                    b.shape()
                ),
            ));
        }
        let (y, shape) = addmm_values("addmm_act", c, a, b, acts, rows.as_ref())?;
        let acts: SmallVec<[Activation; 4]> = acts.into();
        Ok(super::with_saved_output(y, &shape, &[c, a, b], |y| {
            AddmmAct { acts, y, rows }
        }))
    }

    /// `G ⊙ act'(Y)`, by column block.
    fn pre_grad(&self, g: &Tensor<E>) -> Tensor<E> {
        if let [act] = self.acts[..] {
            return constant(act.grads(g, &self.y), g.shape());
        }
        let n = g.shape()[1];
        if g.numel() == 0 {
            return constant(Vec::new(), g.shape());
        }
        let width = n / self.acts.len();
        let (gd, yd) = (g.contiguous_data(), self.y.storage());
        let mut out = crate::storage::overwritable(g.numel());
        let rows = out
            .chunks_exact_mut(n)
            .zip(gd.chunks_exact(n).zip(yd.chunks_exact(n)));
        for (or, (gr, yr)) in rows {
            for (q, &act) in self.acts.iter().enumerate() {
                let cols = q * width..(q + 1) * width;
                act.write_grads(&mut or[cols.clone()], &gr[cols.clone()], &yr[cols]);
            }
        }
        constant(out, g.shape())
    }
}

/// The epilogue of an [`Addmm`] or [`AddmmAct`] product: `y += c`, then, with activations,
/// column block `j` (of `n / acts.len()` columns) through `acts[j]`, on each block of the
/// product where it was computed. `c` must have the product's shape `[m, n]`, or with `rows`
/// be a `[R, n]` table whose row `rows[i]` is added to product row `i`.
pub(super) fn add_then_activate<E: Element>(
    c: &Tensor<E>,
    acts: &[Activation],
    rows: Option<Arc<[usize]>>,
) -> Epilogue<E> {
    // rows of `c` are read as slices (a broadcast bias row has row stride 0)
    let c = match c.layout().strides() {
        [_, 1] => c.clone(),
        [_, _] if c.shape()[1] > 1 => Tensor::from_parts(c.to_vec(), c.shape()),
        _ => c.clone(),
    };
    let (data, offset) = (c.storage_arc().clone(), c.layout().offset());
    let rs = c.layout().strides().first().copied().unwrap_or(0);
    let width = c.shape().get(1).copied().unwrap_or(0) / acts.len().max(1);
    let acts: SmallVec<[Activation; 4]> = acts.into();
    Arc::new(move |blk: Block<'_, E>| {
        let end = blk.j0 + blk.cols;
        for r in 0..blk.rows {
            let i = rows.as_ref().map_or(blk.i0 + r, |ids| ids[blk.i0 + r]);
            let start = offset + i * rs + blk.j0;
            let row = &mut blk.data[r * blk.ld..r * blk.ld + blk.cols];
            let cs = &data[start..start + blk.cols];
            if acts.is_empty() {
                row.iter_mut().zip(cs).for_each(|(y, &cv)| *y += cv);
                continue;
            }
            let mut j = blk.j0;
            while j < end {
                let q = j / width;
                let stop = ((q + 1) * width).min(end);
                let run = j - blk.j0..stop - blk.j0;
                acts[q].apply_added(&mut row[run.clone()], &cs[run]);
                j = stop;
            }
        }
    })
}

impl<E: Element> Op<E> for AddmmAct<E> {
    fn name(&self) -> &'static str {
        match self.acts[..] {
            [Activation::Tanh] => "addmm_tanh",
            [Activation::Sigmoid] => "addmm_sigmoid",
            [Activation::Relu] => "addmm_relu",
            _ => "addmm_acts",
        }
    }
    fn deferred_input(&self, _: &[Tensor<E>]) -> Option<usize> {
        Some(2)
    }
    fn grad_rows_of(&self, input: usize) -> Option<&[usize]> {
        (input == 0).then_some(self.rows.as_deref()).flatten()
    }
    fn backward_deferring(
        &self,
        x: &[Tensor<E>],
        g: &Tensor<E>,
    ) -> Result<(InputGrads<E>, Tensor<E>, Tensor<E>)> {
        Op::<E>::backward_deferring(&Addmm, x, &self.pre_grad(g))
    }
    fn backward(&self, x: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        Op::<E>::backward(&Addmm, x, &self.pre_grad(g))
    }
}

impl<E: Element> Tensor<E> {
    /// `act(self + a @ b)` in one op, see [`AddmmAct`]. `self` must have the product's shape.
    ///
    /// ```
    /// use retrograd_core::{Activation, Tensor};
    /// let x = Tensor::<f32>::from_vec(vec![1., -2.], &[1, 2])?;
    /// let i = Tensor::<f32>::from_vec(vec![1., 0., 0., 1.], &[2, 2])?;
    /// let c = Tensor::<f32>::from_vec(vec![0.5, 0.5], &[1, 2])?;
    /// assert_eq!(c.addmm_act(&x, &i, Activation::Relu)?.to_vec(), vec![1.5, 0.0]);
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn addmm_act(&self, a: &Tensor<E>, b: &Tensor<E>, act: Activation) -> Result<Tensor<E>> {
        AddmmAct::forward(self, a, b, &[act])
    }

    /// `self + a @ b` with `acts[j]` applied to the `j`-th of `acts.len()` equal column blocks,
    /// in one op (see [`AddmmAct`]): an LSTM's four gates from one product. The column count
    /// must divide into `acts.len()` blocks.
    ///
    /// ```
    /// use retrograd_core::{Activation, Tensor};
    /// let h = Tensor::<f32>::from_vec(vec![1., -2.], &[1, 2])?;
    /// let w = Tensor::<f32>::from_vec(vec![1., 0., 0., 1.], &[2, 2])?;
    /// let c = Tensor::<f32>::from_vec(vec![-1., 0.5], &[1, 2])?;
    /// let y = c.addmm_acts(&h, &w, &[Activation::Sigmoid, Activation::Relu])?;
    /// assert_eq!(y.to_vec(), vec![0.5, 0.0]); // σ(-1 + 1), relu(0.5 - 2)
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn addmm_acts(
        &self,
        a: &Tensor<E>,
        b: &Tensor<E>,
        acts: &[Activation],
    ) -> Result<Tensor<E>> {
        AddmmAct::forward(self, a, b, acts)
    }

    /// `self.index_select(0, rows).addmm_acts(a, b, acts)` in one op, without the picked
    /// copy (see [`AddmmAct::forward_rows`]): `self` is a 2-D table, `rows` one table row per
    /// product row. A recurrent step adds its rows of a projected embedding table this way.
    ///
    /// ```
    /// use retrograd_core::{Activation, Tensor};
    /// let table = Tensor::<f32>::from_vec(vec![0., 0., 1., -1.], &[2, 2])?;
    /// let h = Tensor::<f32>::from_vec(vec![1., 2., 3., 4.], &[2, 2])?;
    /// let w = Tensor::<f32>::from_vec(vec![1., 0., 0., 1.], &[2, 2])?;
    /// let y = table.index_addmm_acts(&[1, 0], &h, &w, &[Activation::Relu])?;
    /// assert_eq!(y.to_vec(), vec![2., 1., 3., 4.]); // relu([1, -1] + [1, 2]), relu([0, 0] + [3, 4])
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn index_addmm_acts(
        &self,
        rows: &[usize],
        a: &Tensor<E>,
        b: &Tensor<E>,
        acts: &[Activation],
    ) -> Result<Tensor<E>> {
        AddmmAct::forward_rows(self, rows, a, b, acts)
    }
}
