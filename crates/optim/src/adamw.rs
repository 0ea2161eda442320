//! AdamW (decoupled weight decay), following `torch.optim.AdamW`: Adam's implementation with
//! the weight decay applied to the weights instead of the gradient.

use retrograd_core::{Element, GradStore, Parameter, Result};

use crate::adam::{adam_builders, adam_update, AdamConfig, AdamCore};
use crate::optimizer::{op_names, optimizer_via_core, Core};

/// Hyperparameters of [`AdamW`]: as [`AdamConfig`] but the weight decay (default 1e-2) shrinks
/// the weights directly, `w = w * (1 - lr * weight_decay)`, instead of entering the gradient.
///
/// ```
/// use retrograd_optim::AdamWConfig;
/// let cfg = AdamWConfig::default();
/// assert_eq!((cfg.lr, cfg.weight_decay), (1e-3, 1e-2));
/// assert_eq!(cfg.weight_decay(0.1).weight_decay, 0.1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// (beta1, beta2), each in [0, 1) (default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// Added to the denominator (default 1e-8).
    pub eps: f64,
    /// Decoupled weight decay (default 1e-2).
    pub weight_decay: f64,
    /// AMSGrad (default false).
    pub amsgrad: bool,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2,
            amsgrad: false,
        }
    }
}

adam_builders!(AdamWConfig);

/// AdamW: Adam with decoupled weight decay, PyTorch's formula. Each step first shrinks the
/// weights, `w = w * (1 - lr * weight_decay)`, then applies the Adam update with the raw
/// gradient (see [`Adam`](crate::Adam)).
///
/// ```
/// use retrograd_core::{Parameter, Tensor};
/// use retrograd_optim::{AdamW, AdamWConfig, Optimizer};
/// let w = Parameter::new(Tensor::<f64>::from_vec(vec![2.0], &[1])?);
/// let mut opt = AdamW::new([("w".to_string(), w.clone())], AdamWConfig::default().lr(0.1))?;
/// opt.step(&w.value().sum_all().backward()?)?;
/// // shrink 2 * (1 - 0.1 * 0.01) = 1.998, then the Adam step of about -0.1
/// assert!((w.to_vec()[0] - (1.998 - 0.1 / (1.0 + 1e-8))).abs() < 1e-12);
/// assert_eq!(opt.kind(), "AdamW");
/// # Ok::<(), retrograd_core::Error>(())
/// ```
pub struct AdamW<E: Element = f32> {
    core: AdamCore<E>,
}

impl<E: Element> AdamW<E> {
    /// An AdamW optimizer over named parameters. Same validation as [`Adam::new`](crate::Adam::new).
    pub fn new(
        params: impl IntoIterator<Item = (String, Parameter<E>)>,
        cfg: AdamWConfig,
    ) -> Result<Self> {
        let cfg = AdamConfig {
            lr: cfg.lr,
            betas: cfg.betas,
            eps: cfg.eps,
            weight_decay: cfg.weight_decay,
            amsgrad: cfg.amsgrad,
        };
        Ok(AdamW {
            core: Core::new(op_names!("AdamW"), params, cfg)?,
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> AdamWConfig {
        let c = self.core.cfg;
        AdamWConfig {
            lr: c.lr,
            betas: c.betas,
            eps: c.eps,
            weight_decay: c.weight_decay,
            amsgrad: c.amsgrad,
        }
    }

    /// The update rule, run by [`Optimizer::step`](crate::Optimizer::step).
    fn update(&mut self, grads: &GradStore<E>) -> Result<()> {
        adam_update(&mut self.core, true, grads)
    }
}

optimizer_via_core!(AdamW);
