//! Adagrad with learning-rate decay, following `torch.optim.Adagrad`.

use retrograd_core::{Element, GradStore, Parameter, Result};

use crate::optimizer::{
    check_lr, check_non_negative, op_names, optimizer_via_core, Core, HParams, SlotState,
};
use crate::state::{HParamVisitor, Reader, Writer};

/// Hyperparameters of [`Adagrad`], with PyTorch's defaults.
///
/// ```
/// use retrograd_optim::AdagradConfig;
/// let cfg = AdagradConfig::default().lr_decay(0.01);
/// assert_eq!((cfg.lr, cfg.lr_decay, cfg.eps), (1e-2, 0.01, 1e-10));
/// assert_eq!((cfg.weight_decay, cfg.initial_accumulator_value), (0.0, 0.0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdagradConfig {
    /// Learning rate (default 1e-2).
    pub lr: f64,
    /// Step `t` uses `lr / (1 + (t - 1) * lr_decay)` (default 0).
    pub lr_decay: f64,
    /// L2 penalty added to the gradient (default 0).
    pub weight_decay: f64,
    /// Starting value of the sum of squared gradients (default 0).
    pub initial_accumulator_value: f64,
    /// Added to the denominator (default 1e-10).
    pub eps: f64,
}

impl Default for AdagradConfig {
    fn default() -> Self {
        AdagradConfig {
            lr: 1e-2,
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
        }
    }
}

impl AdagradConfig {
    /// Sets the learning rate.
    pub fn lr(mut self, lr: f64) -> Self {
        self.lr = lr;
        self
    }
    /// Sets the learning-rate decay.
    pub fn lr_decay(mut self, lr_decay: f64) -> Self {
        self.lr_decay = lr_decay;
        self
    }
    /// Sets the weight decay.
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
    /// Sets the initial accumulator value.
    pub fn initial_accumulator_value(mut self, v: f64) -> Self {
        self.initial_accumulator_value = v;
        self
    }
    /// Sets eps.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
}

impl HParams for AdagradConfig {
    fn validate(&self, op: &'static str) -> Result<()> {
        check_lr(op, self.lr)?;
        check_non_negative(op, "lr_decay", self.lr_decay)?;
        check_non_negative(op, "weight_decay", self.weight_decay)?;
        check_non_negative(
            op,
            "initial_accumulator_value",
            self.initial_accumulator_value,
        )?;
        check_non_negative(op, "eps", self.eps)
    }

    fn learning_rate(&self) -> f64 {
        self.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn visit(&mut self, v: &mut impl HParamVisitor) -> Result<()> {
        v.num("lr", &mut self.lr)?;
        v.num("lr_decay", &mut self.lr_decay)?;
        v.num("weight_decay", &mut self.weight_decay)?;
        v.num(
            "initial_accumulator_value",
            &mut self.initial_accumulator_value,
        )?;
        v.num("eps", &mut self.eps)
    }
}

/// Per-parameter state.
pub(crate) struct AdagradSlot<E> {
    step: u64,
    sum: Vec<E>,
}

impl<E: Element> SlotState<E> for AdagradSlot<E> {
    type Config = AdagradConfig;
    fn save(&self, name: &str, shape: &[usize], w: &mut Writer<E>) {
        w.step(name, self.step);
        w.buf(name, "sum", &self.sum, shape);
    }
    fn load(
        _: &AdagradConfig,
        name: &str,
        shape: &[usize],
        r: &mut Reader<E>,
    ) -> Result<Option<Self>> {
        let Some(step) = r.step(name)? else {
            return Ok(None);
        };
        Ok(Some(AdagradSlot {
            step,
            sum: r.need_buf(name, "sum", shape)?,
        }))
    }
}

/// Adagrad, PyTorch's formula. At a parameter's step `t`, with `d = g + weight_decay * w`:
///
/// ```text
/// sum = sum + d * d                  (sum starts at initial_accumulator_value)
/// w = w - lr / (1 + (t - 1) * lr_decay) * d / (sqrt(sum) + eps)
/// ```
///
/// ```
/// use retrograd_core::{Parameter, Tensor};
/// use retrograd_optim::{Adagrad, AdagradConfig, Optimizer};
/// let w = Parameter::new(Tensor::<f64>::from_vec(vec![1.0], &[1])?);
/// let mut opt = Adagrad::new([("w".to_string(), w.clone())], AdagradConfig::default().lr(0.1))?;
/// let g = w.value().mul_scalar(2.0).sum_all().backward()?; // gradient 2
/// opt.step(&g)?; // sum = 4, w = 1 - 0.1 * 2 / 2
/// assert!((w.to_vec()[0] - 0.9).abs() < 1e-9);
/// # Ok::<(), retrograd_core::Error>(())
/// ```
pub struct Adagrad<E: Element = f32> {
    core: Core<E, AdagradConfig, AdagradSlot<E>>,
}

impl<E: Element> Adagrad<E> {
    /// An Adagrad optimizer over named parameters.
    ///
    /// Fails with [`retrograd_core::Error::InvalidArgument`] on a negative lr, lr decay, weight
    /// decay, initial accumulator value or eps, an empty list, or a repeated name/parameter.
    pub fn new(
        params: impl IntoIterator<Item = (String, Parameter<E>)>,
        cfg: AdagradConfig,
    ) -> Result<Self> {
        Ok(Adagrad {
            core: Core::new(op_names!("Adagrad"), params, cfg)?,
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &AdagradConfig {
        &self.core.cfg
    }

    /// The update rule, run by [`Optimizer::step`](crate::Optimizer::step).
    fn update(&mut self, grads: &GradStore<E>) -> Result<()> {
        let c = self.core.cfg;
        let wd = E::of_f64(c.weight_decay);
        let init = E::of_f64(c.initial_accumulator_value);
        let eps = E::of_f64(c.eps);
        self.core.step(grads, |w, g, slot| {
            let s = slot.get_or_insert_with(|| AdagradSlot {
                step: 0,
                sum: vec![init; g.len()],
            });
            // Saturating: a restored step count may be u64::MAX.
            s.step = s.step.saturating_add(1);
            let clr = c.lr / (1.0 + (s.step - 1) as f64 * c.lr_decay);
            let neg_clr = E::of_f64(-clr);
            let update = |w: &mut E, d: E, sum: &mut E| {
                *sum += d * d;
                let std = sum.sqrt() + eps;
                *w += neg_clr * d / std;
            };
            // weight decay picked once, so the loop vectorizes
            let rows = w.iter_mut().zip(g).zip(s.sum.iter_mut());
            if c.weight_decay != 0.0 {
                rows.for_each(|((w, &g), sum)| update(w, g + wd * *w, sum));
            } else {
                rows.for_each(|((w, &g), sum)| update(w, g, sum));
            }
        })
    }
}

optimizer_via_core!(Adagrad);
