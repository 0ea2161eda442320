//! [`Dropout`]: inverted dropout as a module with its own random stream (PyTorch's `nn.Dropout`).

use std::marker::PhantomData;
use std::sync::Mutex;

use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use retrograd_core::{Element, Error, Parameter, Result, Tensor};

use crate::module::{join_name, Module};
use crate::rng_state::ModuleRng;

/// Zeroes each element with probability `p` in training mode and scales the survivors by
/// `1 / (1 - p)`; the identity in evaluation mode. Starts in training mode, like PyTorch.
///
/// The module owns its random stream (a [`ModuleRng`] seeded once from the constructor's RNG
/// and kept behind a `Mutex`, so `forward` takes `&self` and the module stays `Send + Sync`);
/// two modules built from equally seeded RNGs drop the same elements. The stream is visited
/// as `rng` by [`Module::visit_rngs`], so a training checkpoint saves its position.
///
/// ```
/// use rand::{rngs::StdRng, SeedableRng};
/// use retrograd_core::Tensor;
/// use retrograd_nn::{Dropout, Module};
///
/// let mut d = Dropout::<f32>::new(0.5, &mut StdRng::seed_from_u64(0))?;
/// let x = Tensor::<f32>::ones(&[100]);
/// let y = d.forward(&x)?;
/// assert!(y.to_vec().iter().all(|&v| v == 0.0 || v == 2.0));
/// d.eval();
/// assert_eq!(d.forward(&x)?.to_vec(), x.to_vec());
/// assert!(Dropout::<f32>::new(1.0, &mut StdRng::seed_from_u64(0)).is_err());
/// # Ok::<(), retrograd_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Dropout<E: Element = f32> {
    p: f64,
    training: bool,
    rng: Mutex<ModuleRng>,
    _elem: PhantomData<fn() -> E>,
}

impl<E: Element> Dropout<E> {
    /// Dropout with probability `p` in `[0, 1)`, its stream seeded from `rng`.
    pub fn new(p: f64, rng: &mut impl Rng) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::invalid(
                "dropout",
                format!("probability must be in [0, 1), got {p}"),
            ));
        }
        Ok(Dropout {
            p,
            training: true,
            rng: Mutex::new(ModuleRng::from_rng(rng)),
            _elem: PhantomData,
        })
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// True in training mode (dropout active).
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// Applies dropout (training) or returns `x` unchanged (evaluation).
    pub fn forward(&self, x: &Tensor<E>) -> Result<Tensor<E>> {
        if !self.training || self.p == 0.0 {
            return Ok(x.clone());
        }
        // A poisoned lock only means another thread panicked while drawing; the RNG is intact.
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        x.dropout(self.p, true, &mut *rng)
    }
}

impl<E: Element> Module<E> for Dropout<E> {
    fn visit_params(&self, _prefix: &str, _f: &mut dyn FnMut(&str, &Parameter<E>)) {}

    fn visit_rngs(&self, prefix: &str, f: &mut dyn FnMut(&str, &Mutex<ModuleRng>)) {
        f(&join_name(prefix, "rng"), &self.rng);
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}
