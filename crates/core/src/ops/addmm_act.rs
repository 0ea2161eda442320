//! `act(c + a @ b)` as one op: a product, an added term and an activation.

use super::matmul::{addmm_values, Addmm};
use super::{constant, out, zip_map};
use crate::element::Element;
use crate::error::Result;
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
    /// `g ⊙ act'` written with the output `y`, as the single-activation ops compute it.
    fn grad<E: Element>(self, g: E, y: E) -> E {
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
/// With `G' = G ⊙ act'(Y)` (tanh: `1 - Y²`, sigmoid: `Y (1 - Y)`, relu: `[Y > 0]`):
/// `dC = G'`, `dA = G' Bᵀ`, `dB = Aᵀ G'` (deferred and stacked like [`Addmm`]'s).
pub struct AddmmAct<E: Element> {
    act: Activation,
    y: Tensor<E>,
}

impl<E: Element> AddmmAct<E> {
    /// Applies the op.
    pub fn forward(
        c: &Tensor<E>,
        a: &Tensor<E>,
        b: &Tensor<E>,
        act: Activation,
    ) -> Result<Tensor<E>> {
        let (mut y, shape) = addmm_values("addmm_act", c, a, b)?;
        // one loop per activation, so each vectorizes without a branch inside
        match act {
            Activation::Tanh => y.iter_mut().for_each(|v| *v = v.tanh_k()),
            Activation::Sigmoid => y.iter_mut().for_each(|v| *v = v.sigmoid_k()),
            Activation::Relu => y
                .iter_mut()
                .for_each(|v| *v = if *v > E::zero() { *v } else { E::zero() }),
        }
        let (d, l) = out(y, &shape);
        let saved = (d.clone(), l.clone());
        Ok(Tensor::from_op(d, l, &[c, a, b], || AddmmAct {
            act,
            y: Tensor::constant_over(saved.0, saved.1),
        }))
    }

    /// `G ⊙ act'(Y)`.
    fn pre_grad(&self, g: &Tensor<E>) -> Tensor<E> {
        let act = self.act;
        constant(zip_map(g, &self.y, |g, y| act.grad(g, y)), g.shape())
    }
}

impl<E: Element> Op<E> for AddmmAct<E> {
    fn name(&self) -> &'static str {
        match self.act {
            Activation::Tanh => "addmm_tanh",
            Activation::Sigmoid => "addmm_sigmoid",
            Activation::Relu => "addmm_relu",
        }
    }
    fn deferred_input(&self, _: &[Tensor<E>]) -> Option<usize> {
        Some(2)
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
        AddmmAct::forward(self, a, b, act)
    }
}
