//! Elementwise arithmetic of two tensors, and two with an activation: `add_act`
//! (`act(a + b)`) and `mul_act` (`a ⊙ act(b)`, a gated activation).
//! Shapes are broadcast first (by [`BroadcastTo`](super::broadcast::BroadcastTo), the one
//! place broadcasting lives), so each op here sees two tensors of the same shape.

use super::addmm_act::Activation;
use super::{constant, grads2, out, zip_map};
use crate::element::Element;
use crate::error::Result;
use crate::layout::broadcast_shapes;
use crate::tape::{InputGrads, Op};
use crate::tensor::Tensor;

/// Broadcasts `a` and `b` to their common shape (views; no copy when already equal).
fn broadcast_pair<E: Element>(
    op: &'static str,
    a: &Tensor<E>,
    b: &Tensor<E>,
) -> Result<(Tensor<E>, Tensor<E>)> {
    if a.shape() == b.shape() {
        return Ok((a.clone(), b.clone()));
    }
    let shape = broadcast_shapes(op, a.shape(), b.shape())?;
    Ok((a.broadcast_to(&shape)?, b.broadcast_to(&shape)?))
}

fn need<E: Element>(t: &Tensor<E>) -> bool {
    t.tracks_grad()
}

/// `y = a + b`; `dy/da = 1`, `dy/db = 1`.
pub struct Add;

impl Add {
    /// Applies the op (broadcasting).
    pub fn forward<E: Element>(a: &Tensor<E>, b: &Tensor<E>) -> Result<Tensor<E>> {
        let (a, b) = broadcast_pair("add", a, b)?;
        let (d, l) = out(zip_map(&a, &b, |x, y| x + y), a.shape());
        Ok(Tensor::from_op(d, l, &[&a, &b], || Add))
    }
}

impl<E: Element> Op<E> for Add {
    fn name(&self) -> &'static str {
        "add"
    }
    fn backward(&self, x: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        Ok(grads2(
            need(&x[0]).then(|| g.clone()),
            need(&x[1]).then(|| g.clone()),
        ))
    }
}

/// `y = a - b`; `dy/da = 1`, `dy/db = -1`.
pub struct Sub;

impl Sub {
    /// Applies the op (broadcasting).
    pub fn forward<E: Element>(a: &Tensor<E>, b: &Tensor<E>) -> Result<Tensor<E>> {
        let (a, b) = broadcast_pair("sub", a, b)?;
        let (d, l) = out(zip_map(&a, &b, |x, y| x - y), a.shape());
        Ok(Tensor::from_op(d, l, &[&a, &b], || Sub))
    }
}

impl<E: Element> Op<E> for Sub {
    fn name(&self) -> &'static str {
        "sub"
    }
    fn backward(&self, x: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        Ok(grads2(
            need(&x[0]).then(|| g.clone()),
            need(&x[1]).then(|| g.neg()),
        ))
    }
}

/// `y = a * b`; `dy/da = b`, `dy/db = a`.
pub struct Mul;

impl Mul {
    /// Applies the op (broadcasting).
    pub fn forward<E: Element>(a: &Tensor<E>, b: &Tensor<E>) -> Result<Tensor<E>> {
        let (a, b) = broadcast_pair("mul", a, b)?;
        let (d, l) = out(zip_map(&a, &b, |x, y| x * y), a.shape());
        Ok(Tensor::from_op(d, l, &[&a, &b], || Mul))
    }
}

impl<E: Element> Op<E> for Mul {
    fn name(&self) -> &'static str {
        "mul"
    }
    fn backward(&self, x: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let s = g.shape();
        Ok(grads2(
            need(&x[0]).then(|| constant(zip_map(g, &x[1], |g, b| g * b), s)),
            need(&x[1]).then(|| constant(zip_map(g, &x[0], |g, a| g * a), s)),
        ))
    }
}

/// `y = a / b`; `dy/da = 1 / b`, `dy/db = -a / b²`.
pub struct Div;

impl Div {
    /// Applies the op (broadcasting).
    pub fn forward<E: Element>(a: &Tensor<E>, b: &Tensor<E>) -> Result<Tensor<E>> {
        let (a, b) = broadcast_pair("div", a, b)?;
        let (d, l) = out(zip_map(&a, &b, |x, y| x / y), a.shape());
        Ok(Tensor::from_op(d, l, &[&a, &b], || Div))
    }
}

impl<E: Element> Op<E> for Div {
    fn name(&self) -> &'static str {
        "div"
    }
    fn backward(&self, x: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let s = g.shape();
        let gb = if need(&x[1]) {
            let ga = zip_map(g, &x[0], |g, a| g * a);
            let b = x[1].contiguous_data();
            Some(constant(
                ga.iter()
                    .zip(b.iter())
                    .map(|(&ga, &b)| -ga / (b * b))
                    .collect(),
                s,
            ))
        } else {
            None
        };
        Ok(grads2(
            need(&x[0]).then(|| constant(zip_map(g, &x[1], |g, b| g / b), s)),
            gb,
        ))
    }
}

/// `y = act(a + b)`, `act` one of [`Activation`] (two projections and a gate's sigmoid in a
/// GRU step, a bias and an activation); `dy/da = dy/db = act'(a + b)`, written with `y`.
///
/// Computed as `act(a + b)` and the gradient as the activation op takes `g` back through `act`
/// (for sigmoid `g·y·(1 − y)`): the bits of `a.add(&b)?.sigmoid()` (or `tanh`, `relu`) and of
/// its gradients, with no tensor for `a + b` of its own. `y` is kept for backward (sharing the
/// output's storage, not copied).
pub struct AddAct<E: Element> {
    act: Activation,
    y: Tensor<E>,
}

impl<E: Element> AddAct<E> {
    /// Applies the op (broadcasting).
    pub fn forward(a: &Tensor<E>, b: &Tensor<E>, act: Activation) -> Result<Tensor<E>> {
        let (a, b) = broadcast_pair("add_act", a, b)?;
        let mut y = zip_map(&a, &b, |x, y| x + y);
        act.apply(&mut y);
        Ok(super::with_saved_output(y, a.shape(), &[&a, &b], |y| {
            AddAct { act, y }
        }))
    }
}

impl<E: Element> Op<E> for AddAct<E> {
    fn name(&self) -> &'static str {
        "add_act"
    }
    fn backward(&self, x: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let g = constant(self.act.grads(g, &self.y), g.shape());
        Ok(grads2(
            need(&x[0]).then(|| g.clone()),
            need(&x[1]).then_some(g),
        ))
    }
}

/// `y = a ⊙ act(b)`, `act` one of [`Activation`]: a gated activation (`o ⊙ tanh(c)` in an
/// LSTM step, `a ⊙ σ(b)` in a gated linear unit); `dy/da = act(b)`, `dy/db = a ⊙ act'(b)`.
///
/// Computed as `a·act(b)`, and the gradients as `g·act(b)` and as the single activation op
/// takes `g·a` back through `act` (for tanh `(g·a)·(1 − t²)`, `t = tanh(b)`): the bits of
/// `a.mul(&b.tanh())` and of its gradients. `act(b)` is not kept: backward computes it again
/// from `b`, with the same bits, so the forward pass writes one tensor where the composite
/// writes two.
pub struct MulAct {
    act: Activation,
}

impl MulAct {
    /// Applies the op (broadcasting).
    pub fn forward<E: Element>(a: &Tensor<E>, b: &Tensor<E>, act: Activation) -> Result<Tensor<E>> {
        let (a, b) = broadcast_pair("mul_act", a, b)?;
        let y = super::write_runs([&a, &b], |y, [a, b]| act.write_mul_act(y, b, a));
        let (y, l) = out(y, a.shape());
        Ok(Tensor::from_op(y, l, &[&a, &b], || MulAct { act }))
    }
}

impl<E: Element> Op<E> for MulAct {
    fn name(&self) -> &'static str {
        "mul_act"
    }
    fn backward(&self, x: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let (s, act) = (g.shape(), self.act);
        // act(b) again, contiguous
        let t = constant(super::write_runs([&x[1]], |t, [b]| act.write_act(t, b)), s);
        let da = need(&x[0]).then(|| constant(zip_map(g, &t, |g, t| g * t), s));
        let db = need(&x[1]).then(|| {
            // (g·a)·act'(t) in one pass, one loop per activation
            let db = super::write_runs([g, &x[0], &t], |db, [g, a, t]| {
                act.write_scaled_grads(db, g, a, t)
            });
            constant(db, s)
        });
        Ok(grads2(da, db))
    }
}

impl<E: Element> Tensor<E> {
    /// `self ⊙ act(other)` with broadcasting, see [`MulAct`].
    ///
    /// ```
    /// use retrograd_core::{Activation, Tensor};
    /// let a = Tensor::<f32>::from_vec(vec![2., 3.], &[2])?;
    /// let b = Tensor::<f32>::from_vec(vec![-1., 4.], &[2])?;
    /// assert_eq!(a.mul_act(&b, Activation::Relu)?.to_vec(), vec![0., 12.]);
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn mul_act(&self, other: &Tensor<E>, act: Activation) -> Result<Tensor<E>> {
        MulAct::forward(self, other, act)
    }

    /// `act(self + other)` with broadcasting, see [`AddAct`].
    ///
    /// ```
    /// use retrograd_core::{Activation, Tensor};
    /// let a = Tensor::<f32>::from_vec(vec![2., -3.], &[2])?;
    /// let b = Tensor::<f32>::from_vec(vec![1., 1.], &[2])?;
    /// assert_eq!(a.add_act(&b, Activation::Relu)?.to_vec(), vec![3., 0.]);
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn add_act(&self, other: &Tensor<E>, act: Activation) -> Result<Tensor<E>> {
        AddAct::forward(self, other, act)
    }

    /// `self + other` with broadcasting, see [`Add`].
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// let a = Tensor::<f32>::from_vec(vec![1., 2., 3., 4.], &[2, 2])?;
    /// let b = Tensor::<f32>::from_vec(vec![10., 20.], &[2])?;
    /// assert_eq!(a.add(&b)?.to_vec(), vec![11., 22., 13., 24.]);
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn add(&self, other: &Tensor<E>) -> Result<Tensor<E>> {
        Add::forward(self, other)
    }
    /// `self - other` with broadcasting, see [`Sub`].
    pub fn sub(&self, other: &Tensor<E>) -> Result<Tensor<E>> {
        Sub::forward(self, other)
    }
    /// `self * other` elementwise with broadcasting, see [`Mul`].
    pub fn mul(&self, other: &Tensor<E>) -> Result<Tensor<E>> {
        Mul::forward(self, other)
    }
    /// `self / other` elementwise with broadcasting, see [`Div`].
    pub fn div(&self, other: &Tensor<E>) -> Result<Tensor<E>> {
        Div::forward(self, other)
    }
}
