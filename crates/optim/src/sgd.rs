//! Stochastic gradient descent with momentum, dampening, Nesterov momentum and (coupled) weight
//! decay, following `torch.optim.SGD`.

use retrograd_core::{Element, Error, GradStore, Parameter, Result};

use crate::optimizer::{
    check_lr, check_non_negative, op_names, optimizer_via_core, Core, HParams, SlotState,
};
use crate::state::{HParamVisitor, Reader, Writer};

/// Hyperparameters of [`Sgd`], with PyTorch's defaults (`lr` 1e-3, everything else off).
///
/// ```
/// use retrograd_optim::SgdConfig;
/// let cfg = SgdConfig::new(0.1).momentum(0.9).nesterov(true);
/// assert_eq!((cfg.lr, cfg.momentum, cfg.dampening, cfg.nesterov), (0.1, 0.9, 0.0, true));
/// assert_eq!(SgdConfig::default().lr, 1e-3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Momentum factor mu (default 0: plain SGD).
    pub momentum: f64,
    /// Dampening of the gradient in the momentum update, in [0, 1] (default 0).
    pub dampening: f64,
    /// L2 penalty added to the gradient: `g + weight_decay * w` (default 0).
    pub weight_decay: f64,
    /// Nesterov momentum (default false; needs `momentum > 0` and `dampening == 0`).
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

impl SgdConfig {
    /// The defaults with learning rate `lr`.
    pub fn new(lr: f64) -> Self {
        SgdConfig {
            lr,
            ..Self::default()
        }
    }
    /// Sets the learning rate.
    pub fn lr(mut self, lr: f64) -> Self {
        self.lr = lr;
        self
    }
    /// Sets the momentum factor.
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }
    /// Sets the dampening.
    pub fn dampening(mut self, dampening: f64) -> Self {
        self.dampening = dampening;
        self
    }
    /// Sets the (coupled, L2) weight decay.
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
    /// Turns Nesterov momentum on or off.
    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }
}

impl HParams for SgdConfig {
    fn validate(&self, op: &'static str) -> Result<()> {
        check_lr(op, self.lr)?;
        check_non_negative(op, "momentum", self.momentum)?;
        check_non_negative(op, "weight_decay", self.weight_decay)?;
        if !(0.0..=1.0).contains(&self.dampening) {
            return Err(Error::invalid(
                op,
                format!("dampening must be in [0, 1], got {}", self.dampening),
            ));
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::invalid(
                op,
                format!(
                    "Nesterov momentum requires momentum > 0 and dampening = 0, got momentum {} and dampening {}",
                    self.momentum, self.dampening
                ),
            ));
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn visit(&mut self, v: &mut impl HParamVisitor) -> Result<()> {
        v.num("lr", &mut self.lr)?;
        v.num("momentum", &mut self.momentum)?;
        v.num("dampening", &mut self.dampening)?;
        v.num("weight_decay", &mut self.weight_decay)?;
        v.flag("nesterov", &mut self.nesterov)
    }
}

/// Per-parameter state: the momentum buffer (only when `momentum != 0`).
pub(crate) struct SgdSlot<E> {
    momentum_buffer: Vec<E>,
}

impl<E: Element> SlotState<E> for SgdSlot<E> {
    type Config = SgdConfig;
    fn save(&self, name: &str, shape: &[usize], w: &mut Writer<E>) {
        w.buf(name, "momentum_buffer", &self.momentum_buffer, shape);
    }
    fn load(_: &SgdConfig, name: &str, shape: &[usize], r: &mut Reader<E>) -> Result<Option<Self>> {
        Ok(r.buf(name, "momentum_buffer", shape)?
            .map(|momentum_buffer| SgdSlot { momentum_buffer }))
    }
}

/// SGD, PyTorch's rule. With `d = g + weight_decay * w`:
///
/// * the momentum buffer is `b = d` on a parameter's first step, then
///   `b = momentum * b + (1 - dampening) * d`;
/// * the step direction is `d + momentum * b` (Nesterov), `b` (momentum) or `d` (no momentum);
/// * `w = w - lr * direction`.
///
/// Without momentum and weight decay, a gradient known to be zero outside some rows
/// ([`GradStore::nonzero_rows`](retrograd_core::GradStore::nonzero_rows), an embedding
/// table's) updates only those rows: the others would not change.
///
/// ```
/// use retrograd_core::{Parameter, Tensor};
/// use retrograd_optim::{Optimizer, Sgd, SgdConfig};
/// let w = Parameter::new(Tensor::<f64>::from_vec(vec![1.0], &[1])?);
/// let mut opt = Sgd::new([("w".to_string(), w.clone())], SgdConfig::new(0.1).momentum(0.9))?;
/// let grads = w.value().mul_scalar(2.0).sum_all().backward()?; // gradient 2
/// opt.step(&grads)?; // b = 2,             w = 1 - 0.1 * 2   = 0.8
/// opt.step(&grads)?; // b = 0.9 * 2 + 2,   w = 0.8 - 0.1 * 3.8 = 0.42
/// assert!((w.to_vec()[0] - 0.42).abs() < 1e-15);
/// # Ok::<(), retrograd_core::Error>(())
/// ```
pub struct Sgd<E: Element = f32> {
    core: Core<E, SgdConfig, SgdSlot<E>>,
}

impl<E: Element> Sgd<E> {
    /// An SGD optimizer over named parameters (e.g. `model.named_parameters()`).
    ///
    /// Fails with [`Error::InvalidArgument`] on a negative lr, momentum or weight decay,
    /// dampening outside [0, 1], Nesterov without momentum or with dampening, an empty parameter
    /// list, or a repeated name/parameter.
    pub fn new(
        params: impl IntoIterator<Item = (String, Parameter<E>)>,
        cfg: SgdConfig,
    ) -> Result<Self> {
        Ok(Sgd {
            core: Core::new(op_names!("SGD"), params, cfg)?,
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &SgdConfig {
        &self.core.cfg
    }

    /// The update rule, run by [`Optimizer::step`](crate::Optimizer::step).
    fn update(&mut self, grads: &GradStore<E>) -> Result<()> {
        let c = self.core.cfg;
        let wd = E::of_f64(c.weight_decay);
        let mu = E::of_f64(c.momentum);
        let keep = E::of_f64(1.0 - c.dampening);
        let neg_lr = E::of_f64(-c.lr);
        let update = |w: &mut [E], g: &[E], slot: &mut Option<SgdSlot<E>>| {
            let first = slot.is_none();
            let buf = if c.momentum != 0.0 {
                let s = slot.get_or_insert_with(|| SgdSlot {
                    momentum_buffer: vec![E::zero(); g.len()],
                });
                Some(&mut s.momentum_buffer)
            } else {
                None
            };
            let decay = |w: E, g: E| if c.weight_decay != 0.0 { g + wd * w } else { g };
            match buf {
                // plain SGD (no momentum, no decay) as its own loop, so it vectorizes
                None if c.weight_decay == 0.0 => {
                    w.iter_mut().zip(g).for_each(|(w, &g)| *w += neg_lr * g);
                }
                None => w
                    .iter_mut()
                    .zip(g)
                    .for_each(|(w, &g)| *w += neg_lr * decay(*w, g)),
                Some(b) => w
                    .iter_mut()
                    .zip(g)
                    .zip(b.iter_mut())
                    .for_each(|((w, &g), b)| {
                        let d = decay(*w, g);
                        *b = if first { d } else { *b * mu + keep * d };
                        *w += neg_lr * if c.nesterov { d + mu * *b } else { *b };
                    }),
            }
        };
        // without momentum and decay, w - lr·0 is w: rows of the gradient known to be zero
        // (an embedding's) are skipped, which leaves every value as the full update would
        let plain = c.momentum == 0.0 && c.weight_decay == 0.0;
        self.core.step_rows(grads, plain, update)
    }
}

optimizer_via_core!(Sgd);
