//! Elementwise functions of one tensor.

use super::{constant, grads1, map, out, with_saved_output, zip_map};
use crate::element::Element;
use crate::error::Result;
use crate::tape::{InputGrads, Op};
use crate::tensor::Tensor;

/// `y = -x`; `dy/dx = -1`.
pub struct Neg;

impl Neg {
    /// Applies the op.
    pub fn forward<E: Element>(x: &Tensor<E>) -> Tensor<E> {
        let (d, l) = out(map(x, |v| -v), x.shape());
        Tensor::from_op(d, l, &[x], || Neg)
    }
}

impl<E: Element> Op<E> for Neg {
    fn name(&self) -> &'static str {
        "neg"
    }
    fn backward(&self, _: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        Ok(grads1(constant(map(g, |v| -v), g.shape())))
    }
}

/// `y = exp(x)`; `dy/dx = y`.
pub struct Exp<E: Element> {
    y: Tensor<E>,
}

impl<E: Element> Exp<E> {
    /// Applies the op.
    pub fn forward(x: &Tensor<E>) -> Tensor<E> {
        with_saved_output(map(x, |v| v.exp_k()), x.shape(), &[x], |y| Exp { y })
    }
}

impl<E: Element> Op<E> for Exp<E> {
    fn name(&self) -> &'static str {
        "exp"
    }
    fn backward(&self, _: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        Ok(grads1(constant(
            zip_map(g, &self.y, |g, y| g * y),
            g.shape(),
        )))
    }
}

/// `y = ln(x)`; `dy/dx = 1 / x`.
pub struct Log;

impl Log {
    /// Applies the op.
    pub fn forward<E: Element>(x: &Tensor<E>) -> Tensor<E> {
        let (d, l) = out(map(x, |v| v.ln()), x.shape());
        Tensor::from_op(d, l, &[x], || Log)
    }
}

impl<E: Element> Op<E> for Log {
    fn name(&self) -> &'static str {
        "log"
    }
    fn backward(&self, x: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        Ok(grads1(constant(zip_map(g, &x[0], |g, x| g / x), g.shape())))
    }
}

/// `y = sqrt(x)`; `dy/dx = 1 / (2 y)`.
pub struct Sqrt<E: Element> {
    y: Tensor<E>,
}

impl<E: Element> Sqrt<E> {
    /// Applies the op.
    pub fn forward(x: &Tensor<E>) -> Tensor<E> {
        with_saved_output(map(x, |v| v.sqrt()), x.shape(), &[x], |y| Sqrt { y })
    }
}

impl<E: Element> Op<E> for Sqrt<E> {
    fn name(&self) -> &'static str {
        "sqrt"
    }
    fn backward(&self, _: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let two = E::one() + E::one();
        Ok(grads1(constant(
            zip_map(g, &self.y, |g, y| g / (two * y)),
            g.shape(),
        )))
    }
}

/// `y = tanh(x)`; `dy/dx = 1 - y²`.
pub struct Tanh<E: Element> {
    y: Tensor<E>,
}

impl<E: Element> Tanh<E> {
    /// Applies the op.
    pub fn forward(x: &Tensor<E>) -> Tensor<E> {
        with_saved_output(map(x, |v| v.tanh_k()), x.shape(), &[x], |y| Tanh { y })
    }
}

impl<E: Element> Op<E> for Tanh<E> {
    fn name(&self) -> &'static str {
        "tanh"
    }
    fn backward(&self, _: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        Ok(grads1(constant(
            zip_map(g, &self.y, |g, y| g * (E::one() - y * y)),
            g.shape(),
        )))
    }
}

/// Logistic sigmoid `y = 1 / (1 + exp(-x))`; `dy/dx = y (1 - y)`.
pub struct Sigmoid<E: Element> {
    y: Tensor<E>,
}

impl<E: Element> Sigmoid<E> {
    /// Applies the op.
    pub fn forward(x: &Tensor<E>) -> Tensor<E> {
        with_saved_output(map(x, |v| v.sigmoid_k()), x.shape(), &[x], |y| Sigmoid {
            y,
        })
    }
}

impl<E: Element> Op<E> for Sigmoid<E> {
    fn name(&self) -> &'static str {
        "sigmoid"
    }
    fn backward(&self, _: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        Ok(grads1(constant(
            zip_map(g, &self.y, |g, y| g * y * (E::one() - y)),
            g.shape(),
        )))
    }
}

/// `y = max(x, 0)`; `dy/dx = 1 if x > 0 else 0` (0 at x = 0, as PyTorch).
pub struct Relu;

impl Relu {
    /// Applies the op.
    pub fn forward<E: Element>(x: &Tensor<E>) -> Tensor<E> {
        let (d, l) = out(
            map(x, |v| if v > E::zero() { v } else { E::zero() }),
            x.shape(),
        );
        Tensor::from_op(d, l, &[x], || Relu)
    }
}

impl<E: Element> Op<E> for Relu {
    fn name(&self) -> &'static str {
        "relu"
    }
    fn backward(&self, x: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let d = zip_map(g, &x[0], |g, x| if x > E::zero() { g } else { E::zero() });
        Ok(grads1(constant(d, g.shape())))
    }
}

/// `y = x^p` for a constant exponent `p`; `dy/dx = p x^(p-1)`.
pub struct PowScalar<E: Element> {
    p: E,
}

impl<E: Element> PowScalar<E> {
    /// Applies the op.
    pub fn forward(x: &Tensor<E>, p: E) -> Tensor<E> {
        let (d, l) = out(map(x, |v| v.powf(p)), x.shape());
        Tensor::from_op(d, l, &[x], || PowScalar { p })
    }
}

impl<E: Element> Op<E> for PowScalar<E> {
    fn name(&self) -> &'static str {
        "pow"
    }
    fn backward(&self, x: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let p = self.p;
        let d = zip_map(g, &x[0], |g, x| {
            if p == E::zero() {
                E::zero()
            } else {
                g * p * x.powf(p - E::one())
            }
        });
        Ok(grads1(constant(d, g.shape())))
    }
}

/// `y = a x + b` for constants `a`, `b` (covers mul-scalar and add-scalar); `dy/dx = a`.
pub struct Affine<E: Element> {
    a: E,
}

impl<E: Element> Affine<E> {
    /// Applies the op.
    pub fn forward(x: &Tensor<E>, a: E, b: E) -> Tensor<E> {
        let (d, l) = out(map(x, |v| a * v + b), x.shape());
        Tensor::from_op(d, l, &[x], || Affine { a })
    }
}

impl<E: Element> Op<E> for Affine<E> {
    fn name(&self) -> &'static str {
        "affine"
    }
    fn backward(&self, _: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let a = self.a;
        Ok(grads1(constant(map(g, |v| a * v), g.shape())))
    }
}

impl<E: Element> Tensor<E> {
    /// `-x`, see [`Neg`].
    pub fn neg(&self) -> Tensor<E> {
        Neg::forward(self)
    }
    /// `exp(x)`, see [`Exp`].
    pub fn exp(&self) -> Tensor<E> {
        Exp::forward(self)
    }
    /// `ln(x)`, see [`Log`].
    pub fn log(&self) -> Tensor<E> {
        Log::forward(self)
    }
    /// `sqrt(x)`, see [`Sqrt`].
    pub fn sqrt(&self) -> Tensor<E> {
        Sqrt::forward(self)
    }
    /// `tanh(x)`, see [`Tanh`].
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// let y = Tensor::<f64>::from_vec(vec![0.0], &[1])?.tanh();
    /// assert_eq!(y.to_vec(), vec![0.0]);
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn tanh(&self) -> Tensor<E> {
        Tanh::forward(self)
    }
    /// `1 / (1 + exp(-x))`, see [`Sigmoid`].
    pub fn sigmoid(&self) -> Tensor<E> {
        Sigmoid::forward(self)
    }
    /// `max(x, 0)`, see [`Relu`].
    pub fn relu(&self) -> Tensor<E> {
        Relu::forward(self)
    }
    /// `x^p`, see [`PowScalar`].
    pub fn powf(&self, p: f64) -> Tensor<E> {
        PowScalar::forward(self, E::of_f64(p))
    }
    /// `a x + b`, see [`Affine`].
    pub fn affine(&self, a: f64, b: f64) -> Tensor<E> {
        Affine::forward(self, E::of_f64(a), E::of_f64(b))
    }
    /// `x * s`, see [`Affine`].
    pub fn mul_scalar(&self, s: f64) -> Tensor<E> {
        self.affine(s, 0.0)
    }
    /// `x + s`, see [`Affine`].
    pub fn add_scalar(&self, s: f64) -> Tensor<E> {
        self.affine(1.0, s)
    }
}
