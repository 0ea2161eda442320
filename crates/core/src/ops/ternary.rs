//! Elementwise ops of three tensors, `addcmul` and `lerp` (PyTorch's names and argument
//! order) and `addcmul_act` (`act(a + v·(b ⊙ c))`), and of four, `mul_add_mul`
//! (`a ⊙ b + c ⊙ d`). Each is one node and one pass where
//! the composite takes two or three; the GRU and LSTM steps use them. Shapes are broadcast
//! first, as in [`binary`](super::binary), and the values and gradients are computed in the
//! composite's order, so they have its bits.

use smallvec::smallvec;

use super::addmm_act::Activation;
use super::{constant, out};
use crate::element::Element;
use crate::error::Result;
use crate::layout::broadcast_shapes;
use crate::tape::{InputGrads, Op};
use crate::tensor::Tensor;

/// Broadcasts `N` tensors to their common shape (views; no copy when already equal).
fn broadcast_all<E: Element, const N: usize>(
    op: &'static str,
    t: [&Tensor<E>; N],
) -> Result<[Tensor<E>; N]> {
    if t.iter().all(|x| x.shape() == t[0].shape()) {
        return Ok(t.map(Tensor::clone));
    }
    let mut shape = broadcast_shapes(op, t[0].shape(), t[1].shape())?;
    for x in &t[2..] {
        shape = broadcast_shapes(op, &shape, x.shape())?;
    }
    let mut out = Vec::with_capacity(N);
    for x in t {
        out.push(x.broadcast_to(&shape)?);
    }
    Ok(out
        .try_into()
        .unwrap_or_else(|_| unreachable!("one view per input")))
}

/// Applies `f` to three tensors of the same shape elementwise, returning a contiguous buffer.
fn zip3_map<E: Element>(t: [&Tensor<E>; 3], f: impl Fn(E, E, E) -> E) -> Vec<E> {
    super::write_runs(t, |out, [a, b, c]| {
        for (((o, &a), &b), &c) in out.iter_mut().zip(a).zip(b).zip(c) {
            *o = f(a, b, c);
        }
    })
}

/// `y = a + v·(b ⊙ c)` (PyTorch's `addcmul(input, tensor1, tensor2, value=v)`);
/// `dy/da = 1`, `dy/db = v·c`, `dy/dc = v·b`.
///
/// Computed as `a + v·(b·c)` and, for the gradients, `v·(g·c)` and `v·(g·b)`: with `v = 1`
/// the bits of `a.add(&b.mul(&c)?)`.
pub struct Addcmul<E: Element> {
    value: E,
}

impl<E: Element> Addcmul<E> {
    /// Applies the op (broadcasting).
    pub fn forward(a: &Tensor<E>, b: &Tensor<E>, c: &Tensor<E>, value: f64) -> Result<Tensor<E>> {
        let v = E::of_f64(value);
        let [a, b, c] = broadcast_all("addcmul", [a, b, c])?;
        let (d, l) = out(zip3_map([&a, &b, &c], |a, b, c| a + v * (b * c)), a.shape());
        Ok(Tensor::from_op(d, l, &[&a, &b, &c], || Addcmul {
            value: v,
        }))
    }
}

impl<E: Element> Op<E> for Addcmul<E> {
    fn name(&self) -> &'static str {
        "addcmul"
    }
    fn backward(&self, x: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let (s, v) = (g.shape(), self.value);
        let times = |other: &Tensor<E>| constant(super::zip_map(g, other, |g, o| v * (g * o)), s);
        Ok(smallvec![
            x[0].tracks_grad().then(|| g.clone()),
            x[1].tracks_grad().then(|| times(&x[2])),
            x[2].tracks_grad().then(|| times(&x[1])),
        ])
    }
}

/// `y = act(a + v·(b ⊙ c))`, `act` one of [`Activation`] (a GRU step's candidate state,
/// `tanh(gx_n + r ⊙ hw_n)`); with `g' = act'` applied to `g` as the activation op writes it
/// (from `y`): `dL/da = g'`, `dL/db = v·(g'·c)`, `dL/dc = v·(g'·b)`.
///
/// The bits of `a.addcmul(&b, &c, v)?.tanh()` (or `sigmoid`, `relu`) and of its gradients,
/// with no tensor for the sum of its own. `y` is kept for backward (sharing the output's
/// storage, not copied).
pub struct AddcmulAct<E: Element> {
    value: E,
    act: Activation,
    y: Tensor<E>,
}

impl<E: Element> AddcmulAct<E> {
    /// Applies the op (broadcasting).
    pub fn forward(
        a: &Tensor<E>,
        b: &Tensor<E>,
        c: &Tensor<E>,
        value: f64,
        act: Activation,
    ) -> Result<Tensor<E>> {
        let v = E::of_f64(value);
        let [a, b, c] = broadcast_all("addcmul_act", [a, b, c])?;
        let mut y = zip3_map([&a, &b, &c], |a, b, c| a + v * (b * c));
        act.apply(&mut y);
        Ok(super::with_saved_output(y, a.shape(), &[&a, &b, &c], |y| {
            AddcmulAct { value: v, act, y }
        }))
    }
}

impl<E: Element> Op<E> for AddcmulAct<E> {
    fn name(&self) -> &'static str {
        "addcmul_act"
    }
    fn backward(&self, x: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let (s, v, act) = (g.shape(), self.value, self.act);
        let g = constant(act.grads(g, &self.y), s);
        let times = |other: &Tensor<E>| constant(super::zip_map(&g, other, |g, o| v * (g * o)), s);
        let db = x[1].tracks_grad().then(|| times(&x[2]));
        let dc = x[2].tracks_grad().then(|| times(&x[1]));
        Ok(smallvec![x[0].tracks_grad().then(|| g.clone()), db, dc])
    }
}

/// `y = a + w ⊙ (b − a)` (PyTorch's `lerp(input, end, weight)`): `a` where `w = 0`, `b` where
/// `w = 1`. `dy/da = 1 − w`, `dy/db = w`, `dy/dw = b − a`.
///
/// Computed in the composite's order, `a + w·(b − a)`, and `dL/da` as `g − g·w`, so it has
/// the bits of `a.add(&w.mul(&b.sub(&a)?)?)` and of its gradients.
pub struct Lerp;

impl Lerp {
    /// Applies the op (broadcasting).
    pub fn forward<E: Element>(a: &Tensor<E>, b: &Tensor<E>, w: &Tensor<E>) -> Result<Tensor<E>> {
        let [a, b, w] = broadcast_all("lerp", [a, b, w])?;
        let (d, l) = out(zip3_map([&a, &b, &w], |a, b, w| a + w * (b - a)), a.shape());
        Ok(Tensor::from_op(d, l, &[&a, &b, &w], || Lerp))
    }
}

impl<E: Element> Op<E> for Lerp {
    fn name(&self) -> &'static str {
        "lerp"
    }
    fn backward(&self, x: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let s = g.shape();
        let (a, b, w) = (&x[0], &x[1], &x[2]);
        let da = a
            .tracks_grad()
            .then(|| constant(super::zip_map(g, w, |g, w| g - g * w), s));
        let db = b
            .tracks_grad()
            .then(|| constant(super::zip_map(g, w, |g, w| g * w), s));
        let dw = w
            .tracks_grad()
            .then(|| constant(zip3_map([g, b, a], |g, b, a| g * (b - a)), s));
        Ok(smallvec![da, db, dw])
    }
}

/// `y = a ⊙ b + c ⊙ d`; `dy/da = b`, `dy/db = a`, `dy/dc = d`, `dy/dd = c`.
///
/// Computed as `(a·b) + (c·d)` and the gradients as `g·b`, `g·a`, `g·d`, `g·c`: the bits of
/// `a.mul(&b)?.add(&c.mul(&d)?)` (and of `a.mul(&b)?.addcmul(&c, &d, 1.0)`, the LSTM's
/// `f ⊙ c + i ⊙ g` as PyTorch's CPU cell computes it), without the product `a ⊙ b` as a
/// tensor of its own.
pub struct MulAddMul;

impl MulAddMul {
    /// Applies the op (broadcasting).
    pub fn forward<E: Element>(
        a: &Tensor<E>,
        b: &Tensor<E>,
        c: &Tensor<E>,
        d: &Tensor<E>,
    ) -> Result<Tensor<E>> {
        let [a, b, c, d] = broadcast_all("mul_add_mul", [a, b, c, d])?;
        let y = super::write_runs([&a, &b, &c, &d], |y, [a, b, c, d]| {
            let ab = a.iter().zip(b);
            let cd = c.iter().zip(d);
            for (y, ((&a, &b), (&c, &d))) in y.iter_mut().zip(ab.zip(cd)) {
                *y = a * b + c * d;
            }
        });
        let (y, l) = out(y, a.shape());
        Ok(Tensor::from_op(y, l, &[&a, &b, &c, &d], || MulAddMul))
    }
}

impl<E: Element> Op<E> for MulAddMul {
    fn name(&self) -> &'static str {
        "mul_add_mul"
    }
    fn backward(&self, x: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let s = g.shape();
        // each input's gradient is g times its partner in the product
        let times = |i: usize| {
            x[i].tracks_grad()
                .then(|| constant(super::zip_map(g, &x[i ^ 1], |g, o| g * o), s))
        };
        Ok(smallvec![times(0), times(1), times(2), times(3)])
    }
}

impl<E: Element> Tensor<E> {
    /// `self ⊙ b + c ⊙ d` with broadcasting, see [`MulAddMul`].
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// let a = Tensor::<f32>::from_vec(vec![1., 2.], &[2])?;
    /// let b = Tensor::<f32>::from_vec(vec![3., 4.], &[2])?;
    /// let c = Tensor::<f32>::from_vec(vec![5., 6.], &[2])?;
    /// let d = Tensor::<f32>::from_vec(vec![0.5], &[1])?;
    /// assert_eq!(a.mul_add_mul(&b, &c, &d)?.to_vec(), vec![5.5, 11.]);
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn mul_add_mul(&self, b: &Tensor<E>, c: &Tensor<E>, d: &Tensor<E>) -> Result<Tensor<E>> {
        MulAddMul::forward(self, b, c, d)
    }

    /// `self + value · (t1 ⊙ t2)` with broadcasting, see [`Addcmul`].
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// let a = Tensor::<f32>::from_vec(vec![1., 2.], &[2])?;
    /// let b = Tensor::<f32>::from_vec(vec![3., 4.], &[2])?;
    /// let c = Tensor::<f32>::from_vec(vec![5., 6.], &[2])?;
    /// assert_eq!(a.addcmul(&b, &c, 1.0)?.to_vec(), vec![16., 26.]);
    /// assert_eq!(a.addcmul(&b, &c, -0.5)?.to_vec(), vec![-6.5, -10.]);
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn addcmul(&self, t1: &Tensor<E>, t2: &Tensor<E>, value: f64) -> Result<Tensor<E>> {
        Addcmul::forward(self, t1, t2, value)
    }

    /// `act(self + value · (t1 ⊙ t2))` with broadcasting, see [`AddcmulAct`].
    ///
    /// ```
    /// use retrograd_core::{Activation, Tensor};
    /// let a = Tensor::<f32>::from_vec(vec![1., -9.], &[2])?;
    /// let b = Tensor::<f32>::from_vec(vec![3., 4.], &[2])?;
    /// let c = Tensor::<f32>::from_vec(vec![5., 2.], &[2])?;
    /// assert_eq!(a.addcmul_act(&b, &c, 1.0, Activation::Relu)?.to_vec(), vec![16., 0.]);
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn addcmul_act(
        &self,
        t1: &Tensor<E>,
        t2: &Tensor<E>,
        value: f64,
        act: Activation,
    ) -> Result<Tensor<E>> {
        AddcmulAct::forward(self, t1, t2, value, act)
    }

    /// `self + weight ⊙ (end − self)` with broadcasting, see [`Lerp`].
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// let start = Tensor::<f32>::from_vec(vec![0., 10.], &[2])?;
    /// let end = Tensor::<f32>::from_vec(vec![4., 20.], &[2])?;
    /// let w = Tensor::<f32>::from_vec(vec![0.25, 1.0], &[2])?;
    /// assert_eq!(start.lerp(&end, &w)?.to_vec(), vec![1., 20.]);
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn lerp(&self, end: &Tensor<E>, weight: &Tensor<E>) -> Result<Tensor<E>> {
        Lerp::forward(self, end, weight)
    }
}
