//! Dropout: zero each element with probability `p` and scale the rest by `1 / (1 - p)`.

use rand::Rng;

use super::constant;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

impl<E: Element> Tensor<E> {
    /// Inverted dropout: `y = x * m / (1 - p)` with `m_i ~ Bernoulli(1 - p)` drawn from `rng`;
    /// identity when `training` is false or `p = 0`. `dL/dx = dL/dy * m / (1 - p)`.
    /// A composite (a constant mask times `x` through [`Mul`](super::binary::Mul)).
    ///
    /// ```
    /// use rand::{rngs::StdRng, SeedableRng};
    /// use retrograd_core::Tensor;
    /// let mut rng = StdRng::seed_from_u64(1);
    /// let x = Tensor::<f32>::ones(&[1000]);
    /// let y = x.dropout(0.5, true, &mut rng)?;
    /// assert!(y.to_vec().iter().all(|&v| v == 0.0 || v == 2.0));
    /// assert_eq!(x.dropout(0.5, false, &mut rng)?.to_vec(), x.to_vec());
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn dropout(&self, p: f64, training: bool, rng: &mut impl Rng) -> Result<Tensor<E>> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::invalid(
                "dropout",
                format!("probability must be in [0, 1], got {p}"),
            ));
        }
        if !training || p == 0.0 {
            return Ok(self.clone());
        }
        let scale = if p >= 1.0 {
            E::zero()
        } else {
            E::of_f64(1.0 / (1.0 - p))
        };
        let mask = (0..self.numel())
            .map(|_| {
                if rng.random::<f64>() < p {
                    E::zero()
                } else {
                    scale
                }
            })
            .collect();
        self.mul(&constant(mask, self.shape()))
    }
}
