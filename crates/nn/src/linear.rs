//! [`Linear`]: the affine map `y = x Wᵀ + b` over the last dimension (PyTorch's `nn.Linear`).

use rand::Rng;
use retrograd_core::{Element, Error, Parameter, Result, Tensor};

use crate::module::{join_name, Module};

/// A fully connected layer, `y = x Wᵀ + b`, applied over the last dimension of the input.
///
/// Parameters follow PyTorch exactly, so a PyTorch `state_dict` loads with no remapping:
/// `weight` is `[out_features, in_features]`, `bias` is `[out_features]` (absent when built
/// without bias). Both are initialised from U(-1/√in, 1/√in), which is what PyTorch's
/// `kaiming_uniform_(a=√5)` reduces to for the weight.
///
/// The input may have any rank ≥ 1 whose last dimension is `in_features`: `[N, in]`,
/// `[N, T, in]` (the time-distributed affine layer of a language model), or a single `[in]`
/// vector. Leading dimensions are folded into one so the whole call is one matrix product.
///
/// ```
/// use rand::{rngs::StdRng, SeedableRng};
/// use retrograd_core::Tensor;
/// use retrograd_nn::{Linear, Module};
///
/// let mut rng = StdRng::seed_from_u64(0);
/// let fc = Linear::<f32>::new(4, 3, true, &mut rng)?;
/// let x = Tensor::<f32>::ones(&[2, 5, 4]); // (N, T, in)
/// let y = fc.forward(&x)?;
/// assert_eq!(y.shape(), &[2, 5, 3]);
/// let names: Vec<String> = fc.named_parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["weight", "bias"]);
/// assert!(fc.forward(&Tensor::<f32>::ones(&[2, 5])).is_err()); // last dim 5 vs 4
/// # Ok::<(), retrograd_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Linear<E: Element = f32> {
    /// `[out_features, in_features]`.
    pub weight: Parameter<E>,
    /// `[out_features]`, or `None` for a layer without bias.
    pub bias: Option<Parameter<E>>,
    in_features: usize,
    out_features: usize,
}

impl<E: Element> Linear<E> {
    /// A layer with PyTorch's default initialisation, U(-1/√in, 1/√in) for weight and bias,
    /// drawn from `rng`. Zero sizes are an error.
    ///
    /// ```
    /// use rand::{rngs::StdRng, SeedableRng};
    /// use retrograd_nn::Linear;
    /// let mut rng = StdRng::seed_from_u64(1);
    /// let fc = Linear::<f64>::new(16, 2, false, &mut rng)?;
    /// assert!(fc.bias.is_none());
    /// assert!(fc.weight.to_vec().iter().all(|w| w.abs() <= 0.25));
    /// assert!(Linear::<f64>::new(0, 2, true, &mut rng).is_err());
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn new(
        in_features: usize,
        out_features: usize,
        bias: bool,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        if in_features == 0 || out_features == 0 {
            return Err(Error::invalid(
                "linear",
                format!(
                    "in_features and out_features must be positive, got {in_features} and {out_features}"
                ),
            ));
        }
        let bound = 1.0 / (in_features as f64).sqrt();
        let weight = Tensor::rand_uniform(&[out_features, in_features], -bound, bound, rng)?;
        let bias = if bias {
            Some(Parameter::new(Tensor::rand_uniform(
                &[out_features],
                -bound,
                bound,
                rng,
            )?))
        } else {
            None
        };
        Ok(Linear {
            weight: Parameter::new(weight),
            bias,
            in_features,
            out_features,
        })
    }

    /// A layer holding copies of the given values: `weight` `[out, in]`, `bias` `[out]`.
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// use retrograd_nn::Linear;
    /// let w = Tensor::<f64>::from_vec(vec![1., 2., 3., 4., 5., 6.], &[2, 3])?;
    /// let b = Tensor::<f64>::from_vec(vec![0.5, -0.5], &[2])?;
    /// let fc = Linear::from_weights(w, Some(b))?;
    /// let y = fc.forward(&Tensor::from_vec(vec![1., 0., 1.], &[1, 3])?)?;
    /// assert_eq!(y.to_vec(), vec![4.5, 9.5]);
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn from_weights(weight: Tensor<E>, bias: Option<Tensor<E>>) -> Result<Self> {
        let (out_features, in_features) = match weight.shape() {
            &[o, i] if o > 0 && i > 0 => (o, i),
            s => {
                return Err(Error::shape(
                    "linear",
                    format!("weight must be [out_features, in_features] with both > 0, got {s:?}"),
                ))
            }
        };
        if let Some(b) = &bias {
            if b.shape() != [out_features] {
                return Err(Error::shape(
                    "linear",
                    format!(
                        "bias {:?} vs weight {:?}: bias must be [{out_features}]",
                        b.shape(),
                        weight.shape()
                    ),
                ));
            }
        }
        Ok(Linear {
            weight: Parameter::new(weight),
            bias: bias.map(Parameter::new),
            in_features,
            out_features,
        })
    }

    /// Size of each input's last dimension.
    pub fn in_features(&self) -> usize {
        self.in_features
    }

    /// Size of each output's last dimension.
    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// `y = x Wᵀ + b` over the last dimension: `[.., in]` → `[.., out]`.
    ///
    /// The leading dimensions are folded into one (`[M, in]`), multiplied once with a
    /// transposed view of the weight (no copy), the bias added by broadcasting, and the result
    /// unfolded again. Errors name the input shape and `in_features`.
    pub fn forward(&self, x: &Tensor<E>) -> Result<Tensor<E>> {
        let shape = x.shape();
        let Some(&last) = shape.last() else {
            return Err(Error::shape(
                "linear",
                format!(
                    "input [] is a scalar; need at least one dim of size in_features {}",
                    self.in_features
                ),
            ));
        };
        if last != self.in_features {
            return Err(Error::shape(
                "linear",
                format!(
                    "input {shape:?} last dim {last} vs in_features {}",
                    self.in_features
                ),
            ));
        }
        let lead = &shape[..shape.len() - 1];
        let rows: usize = lead.iter().product();
        let x2 = if shape.len() == 2 {
            x.clone()
        } else {
            x.reshape(&[rows, self.in_features])?
        };
        let bias = self.bias.as_ref().map(Parameter::value);
        let y = affine(&x2, &self.weight.value().t()?, bias.as_ref())?;
        if shape.len() == 2 {
            return Ok(y);
        }
        let mut out_shape = lead.to_vec();
        out_shape.push(self.out_features);
        y.reshape(&out_shape)
    }
}

/// `x @ w_t + b` for a 2-D `x [rows, in]` and `w_t [in, out]`, the bias row added to every
/// row: one `addmm` node (or a plain product without a bias). Used by [`Linear`] and the
/// recurrent layers' input projections.
pub(crate) fn affine<E: Element>(
    x: &Tensor<E>,
    w_t: &Tensor<E>,
    bias: Option<&Tensor<E>>,
) -> Result<Tensor<E>> {
    match bias {
        Some(b) => b.addmm(x, w_t),
        None => x.matmul(w_t),
    }
}

impl<E: Element> Module<E> for Linear<E> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Parameter<E>)) {
        f(&join_name(prefix, "weight"), &self.weight);
        if let Some(b) = &self.bias {
            f(&join_name(prefix, "bias"), b);
        }
    }
}
