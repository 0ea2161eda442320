//! Adam (L2 weight decay added to the gradient), following `torch.optim.Adam` and its
//! single-tensor operation order. The implementation is shared with [`AdamW`](crate::AdamW).

use retrograd_core::{Element, GradStore, Parameter, Result};

use crate::optimizer::{
    check_lr, check_non_negative, check_unit, op_names, optimizer_via_core, Core, HParams,
    SlotState,
};
use crate::state::{HParamVisitor, Reader, Writer};

/// Hyperparameters of [`Adam`], with PyTorch's defaults.
///
/// ```
/// use retrograd_optim::AdamConfig;
/// let cfg = AdamConfig::default().lr(2e-3).amsgrad(true);
/// assert_eq!((cfg.lr, cfg.betas, cfg.eps, cfg.weight_decay), (2e-3, (0.9, 0.999), 1e-8, 0.0));
/// assert!(cfg.amsgrad);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates (beta1, beta2) of the first and second moment averages, each in [0, 1)
    /// (default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// Added to the denominator (default 1e-8).
    pub eps: f64,
    /// L2 penalty added to the gradient, `g + weight_decay * w` (default 0).
    pub weight_decay: f64,
    /// Use the running maximum of the second moment (AMSGrad; default false).
    pub amsgrad: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
        }
    }
}

macro_rules! adam_builders {
    ($t:ty) => {
        impl $t {
            /// Sets the learning rate.
            pub fn lr(mut self, lr: f64) -> Self {
                self.lr = lr;
                self
            }
            /// Sets (beta1, beta2).
            pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
                self.betas = (beta1, beta2);
                self
            }
            /// Sets eps.
            pub fn eps(mut self, eps: f64) -> Self {
                self.eps = eps;
                self
            }
            /// Sets the weight decay.
            pub fn weight_decay(mut self, weight_decay: f64) -> Self {
                self.weight_decay = weight_decay;
                self
            }
            /// Turns AMSGrad on or off.
            pub fn amsgrad(mut self, amsgrad: bool) -> Self {
                self.amsgrad = amsgrad;
                self
            }
        }
    };
}
adam_builders!(AdamConfig);
pub(crate) use adam_builders;

impl HParams for AdamConfig {
    fn validate(&self, op: &'static str) -> Result<()> {
        check_lr(op, self.lr)?;
        check_non_negative(op, "eps", self.eps)?;
        check_unit(op, "beta1 (betas.0)", self.betas.0)?;
        check_unit(op, "beta2 (betas.1)", self.betas.1)?;
        check_non_negative(op, "weight_decay", self.weight_decay)
    }

    fn learning_rate(&self) -> f64 {
        self.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn visit(&mut self, v: &mut impl HParamVisitor) -> Result<()> {
        v.num("lr", &mut self.lr)?;
        v.num("beta1", &mut self.betas.0)?;
        v.num("beta2", &mut self.betas.1)?;
        v.num("eps", &mut self.eps)?;
        v.num("weight_decay", &mut self.weight_decay)?;
        v.flag("amsgrad", &mut self.amsgrad)
    }
}

/// Per-parameter state.
pub(crate) struct AdamSlot<E> {
    step: u64,
    exp_avg: Vec<E>,
    exp_avg_sq: Vec<E>,
    max_exp_avg_sq: Option<Vec<E>>,
}

impl<E: Element> SlotState<E> for AdamSlot<E> {
    type Config = AdamConfig;
    fn save(&self, name: &str, shape: &[usize], w: &mut Writer<E>) {
        w.step(name, self.step);
        w.buf(name, "exp_avg", &self.exp_avg, shape);
        w.buf(name, "exp_avg_sq", &self.exp_avg_sq, shape);
        if let Some(m) = &self.max_exp_avg_sq {
            w.buf(name, "max_exp_avg_sq", m, shape);
        }
    }
    fn load(
        cfg: &AdamConfig,
        name: &str,
        shape: &[usize],
        r: &mut Reader<E>,
    ) -> Result<Option<Self>> {
        let Some(step) = r.step(name)? else {
            return Ok(None);
        };
        Ok(Some(AdamSlot {
            step,
            exp_avg: r.need_buf(name, "exp_avg", shape)?,
            exp_avg_sq: r.need_buf(name, "exp_avg_sq", shape)?,
            max_exp_avg_sq: match cfg.amsgrad {
                true => Some(r.need_buf(name, "max_exp_avg_sq", shape)?),
                false => None,
            },
        }))
    }
}

/// PyTorch's `lerp(a, b, w)`: `a + w (b - a)` for |w| < 0.5, else `b - (b - a)(1 - w)`.
#[inline(always)]
pub(crate) fn lerp<E: Element>(a: E, b: E, w: E) -> E {
    if w.abs() < E::of_f64(0.5) {
        a + w * (b - a)
    } else {
        b - (b - a) * (E::one() - w)
    }
}

/// The moment coefficients of one Adam step.
struct Moments<E> {
    one_minus_b1: E,
    b2: E,
    one_minus_b2: E,
}

impl<E: Element> Moments<E> {
    /// Updates the moments with gradient `d` (weight decay included) and returns them:
    /// `m = lerp(m, d, 1 - beta1)`, `v = beta2 v + (1 - beta2) d²`.
    #[inline(always)]
    fn update(&self, m: &mut E, v: &mut E, d: E) -> (E, E) {
        *m = lerp(*m, d, self.one_minus_b1);
        *v = *v * self.b2 + self.one_minus_b2 * d * d;
        (*m, *v)
    }
}

/// The state Adam and AdamW keep.
pub(crate) type AdamCore<E> = Core<E, AdamConfig, AdamSlot<E>>;

/// The update rule Adam and AdamW share; `decoupled` selects the weight decay flavour.
pub(crate) fn adam_update<E: Element>(
    core: &mut AdamCore<E>,
    decoupled: bool,
    grads: &GradStore<E>,
) -> Result<()> {
    let c = core.cfg;
    let (beta1, beta2) = c.betas;
    let wd = E::of_f64(c.weight_decay);
    let shrink = E::of_f64(1.0 - c.lr * c.weight_decay);
    let one_minus_b1 = E::of_f64(1.0 - beta1);
    let b2 = E::of_f64(beta2);
    let one_minus_b2 = E::of_f64(1.0 - beta2);
    let eps = E::of_f64(c.eps);
    core.step(grads, |w, g, slot| {
        let s = slot.get_or_insert_with(|| AdamSlot {
            step: 0,
            exp_avg: vec![E::zero(); g.len()],
            exp_avg_sq: vec![E::zero(); g.len()],
            max_exp_avg_sq: c.amsgrad.then(|| vec![E::zero(); g.len()]),
        });
        // Saturating: a restored step count may be u64::MAX.
        s.step = s.step.saturating_add(1);
        // Scalars in f64 as PyTorch computes them in Python, then rounded to E.
        let t = s.step as f64;
        let bias_correction1 = 1.0 - beta1.powf(t);
        let bias_correction2 = 1.0 - beta2.powf(t);
        let neg_step_size = E::of_f64(-(c.lr / bias_correction1));
        let bc2_sqrt = E::of_f64(bias_correction2.sqrt());
        if decoupled && c.weight_decay != 0.0 {
            w.iter_mut().for_each(|x| *x *= shrink);
        }
        let k = Moments {
            one_minus_b1,
            b2,
            one_minus_b2,
        };
        let finish = |w: &mut E, m: E, v_hat: E| {
            let denom = v_hat.sqrt() / bc2_sqrt + eps;
            *w += neg_step_size * m / denom;
        };
        // The branches are hoisted out of the loops (weight decay as a closure picked once),
        // so the common case vectorizes.
        let coupled = c.weight_decay != 0.0 && !decoupled;
        let rows = w
            .iter_mut()
            .zip(g)
            .zip(s.exp_avg.iter_mut().zip(s.exp_avg_sq.iter_mut()));
        match (s.max_exp_avg_sq.as_mut(), coupled) {
            (None, false) => rows.for_each(|((w, &g), (m, v))| {
                let (m, v) = k.update(m, v, g);
                finish(w, m, v);
            }),
            (None, true) => rows.for_each(|((w, &g), (m, v))| {
                let (m, v) = k.update(m, v, g + wd * *w);
                finish(w, m, v);
            }),
            (Some(mx), _) => rows.zip(mx.iter_mut()).for_each(|(((w, &g), (m, v)), mx)| {
                let d = if coupled { g + wd * *w } else { g };
                let (m, v) = k.update(m, v, d);
                *mx = mx.max(v);
                finish(w, m, *mx);
            }),
        }
    })
}

/// Adam, PyTorch's formula. Per parameter, with step count `t` and `d = g + weight_decay * w`:
///
/// ```text
/// m = lerp(m, d, 1 - beta1)            v = beta2 * v + (1 - beta2) * d * d
/// v_hat = max(v_hat, v) if amsgrad, else v
/// denom = sqrt(v_hat) / sqrt(1 - beta2^t) + eps
/// w = w - lr / (1 - beta1^t) * m / denom
/// ```
///
/// Scalars (`1 - beta^t`, the step size) are computed in `f64` and rounded to `E`, and the
/// element arithmetic runs in `E` in PyTorch's order, so an `f64` run matches PyTorch to
/// rounding and every run is deterministic.
///
/// ```
/// use retrograd_core::{Parameter, Tensor};
/// use retrograd_optim::{Adam, AdamConfig, Optimizer};
/// let w = Parameter::new(Tensor::<f64>::from_vec(vec![1.0, -1.0], &[2])?);
/// let mut opt = Adam::new([("w".to_string(), w.clone())], AdamConfig::default().lr(0.1))?;
/// let grads = w.value().sum_all().backward()?; // gradient 1 everywhere
/// opt.step(&grads)?;
/// // first step: m_hat = v_hat = 1, so w moves by lr * 1 / (1 + eps)
/// assert!((w.to_vec()[0] - (1.0 - 0.1 / (1.0 + 1e-8))).abs() < 1e-12);
/// # Ok::<(), retrograd_core::Error>(())
/// ```
pub struct Adam<E: Element = f32> {
    core: AdamCore<E>,
}

impl<E: Element> Adam<E> {
    /// An Adam optimizer over named parameters.
    ///
    /// Fails with [`retrograd_core::Error::InvalidArgument`] on a negative lr/eps/weight decay,
    /// a beta outside [0, 1), an empty parameter list, or a repeated name/parameter.
    pub fn new(
        params: impl IntoIterator<Item = (String, Parameter<E>)>,
        cfg: AdamConfig,
    ) -> Result<Self> {
        Ok(Adam {
            core: Core::new(op_names!("Adam"), params, cfg)?,
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &AdamConfig {
        &self.core.cfg
    }

    /// The update rule, run by [`Optimizer::step`](crate::Optimizer::step).
    fn update(&mut self, grads: &GradStore<E>) -> Result<()> {
        adam_update(&mut self.core, false, grads)
    }
}

optimizer_via_core!(Adam);
