//! RMSprop (plain or centered, with optional momentum), following `torch.optim.RMSprop`.

use retrograd_core::{Element, GradStore, Parameter, Result};

use crate::adam::lerp;
use crate::optimizer::{
    check_lr, check_non_negative, check_unit, op_names, optimizer_via_core, Core, HParams,
    SlotState,
};
use crate::state::{HParamVisitor, Reader, Writer};

/// Hyperparameters of [`RmsProp`], with PyTorch's defaults.
///
/// ```
/// use retrograd_optim::RmsPropConfig;
/// let cfg = RmsPropConfig::default().centered(true).momentum(0.9);
/// assert_eq!((cfg.lr, cfg.alpha, cfg.eps, cfg.weight_decay), (1e-2, 0.99, 1e-8, 0.0));
/// assert!(cfg.centered && cfg.momentum == 0.9);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsPropConfig {
    /// Learning rate (default 1e-2).
    pub lr: f64,
    /// Smoothing constant of the squared-gradient average, in [0, 1) (default 0.99).
    pub alpha: f64,
    /// Added to the denominator (default 1e-8).
    pub eps: f64,
    /// L2 penalty added to the gradient (default 0).
    pub weight_decay: f64,
    /// Momentum factor (default 0: none).
    pub momentum: f64,
    /// Divide by the estimated standard deviation instead of the root mean square (default
    /// false).
    pub centered: bool,
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        RmsPropConfig {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
        }
    }
}

impl RmsPropConfig {
    /// Sets the learning rate.
    pub fn lr(mut self, lr: f64) -> Self {
        self.lr = lr;
        self
    }
    /// Sets alpha.
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
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
    /// Sets the momentum factor.
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }
    /// Turns the centered variant on or off.
    pub fn centered(mut self, centered: bool) -> Self {
        self.centered = centered;
        self
    }
}

impl HParams for RmsPropConfig {
    fn validate(&self, op: &'static str) -> Result<()> {
        check_lr(op, self.lr)?;
        check_unit(op, "alpha", self.alpha)?;
        check_non_negative(op, "eps", self.eps)?;
        check_non_negative(op, "weight_decay", self.weight_decay)?;
        check_non_negative(op, "momentum", self.momentum)
    }

    fn learning_rate(&self) -> f64 {
        self.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn visit(&mut self, v: &mut impl HParamVisitor) -> Result<()> {
        v.num("lr", &mut self.lr)?;
        v.num("alpha", &mut self.alpha)?;
        v.num("eps", &mut self.eps)?;
        v.num("weight_decay", &mut self.weight_decay)?;
        v.num("momentum", &mut self.momentum)?;
        v.flag("centered", &mut self.centered)
    }
}

/// Per-parameter state.
pub(crate) struct RmsPropSlot<E> {
    step: u64,
    square_avg: Vec<E>,
    momentum_buffer: Option<Vec<E>>,
    grad_avg: Option<Vec<E>>,
}

impl<E: Element> SlotState<E> for RmsPropSlot<E> {
    type Config = RmsPropConfig;
    fn save(&self, name: &str, shape: &[usize], w: &mut Writer<E>) {
        w.step(name, self.step);
        w.buf(name, "square_avg", &self.square_avg, shape);
        if let Some(b) = &self.momentum_buffer {
            w.buf(name, "momentum_buffer", b, shape);
        }
        if let Some(b) = &self.grad_avg {
            w.buf(name, "grad_avg", b, shape);
        }
    }
    fn load(
        cfg: &RmsPropConfig,
        name: &str,
        shape: &[usize],
        r: &mut Reader<E>,
    ) -> Result<Option<Self>> {
        let Some(step) = r.step(name)? else {
            return Ok(None);
        };
        let square_avg = r.need_buf(name, "square_avg", shape)?;
        let momentum_buffer = match cfg.momentum > 0.0 {
            true => Some(r.need_buf(name, "momentum_buffer", shape)?),
            false => None,
        };
        let grad_avg = match cfg.centered {
            true => Some(r.need_buf(name, "grad_avg", shape)?),
            false => None,
        };
        Ok(Some(RmsPropSlot {
            step,
            square_avg,
            momentum_buffer,
            grad_avg,
        }))
    }
}

/// RMSprop, PyTorch's formula. With `d = g + weight_decay * w`:
///
/// ```text
/// s = alpha * s + (1 - alpha) * d * d
/// centered: a = lerp(a, d, 1 - alpha); avg = sqrt(s - a * a) + eps
/// else:     avg = sqrt(s) + eps
/// momentum > 0: b = momentum * b + d / avg; w = w - lr * b
/// else:         w = w - lr * d / avg
/// ```
///
/// ```
/// use retrograd_core::{Parameter, Tensor};
/// use retrograd_optim::{Optimizer, RmsProp, RmsPropConfig};
/// let w = Parameter::new(Tensor::<f64>::from_vec(vec![1.0], &[1])?);
/// let mut opt = RmsProp::new([("w".to_string(), w.clone())], RmsPropConfig::default())?;
/// opt.step(&w.value().sum_all().backward()?)?;
/// // s = 0.01 * 1 * 1, so w = 1 - 0.01 * 1 / (0.1 + 1e-8)
/// assert!((w.to_vec()[0] - (1.0 - 0.01 / (0.1 + 1e-8))).abs() < 1e-12);
/// # Ok::<(), retrograd_core::Error>(())
/// ```
pub struct RmsProp<E: Element = f32> {
    core: Core<E, RmsPropConfig, RmsPropSlot<E>>,
}

impl<E: Element> RmsProp<E> {
    /// An RMSprop optimizer over named parameters.
    ///
    /// Fails with [`retrograd_core::Error::InvalidArgument`] on a negative lr, eps, weight
    /// decay or momentum, alpha outside [0, 1), an empty list, or a repeated name/parameter.
    pub fn new(
        params: impl IntoIterator<Item = (String, Parameter<E>)>,
        cfg: RmsPropConfig,
    ) -> Result<Self> {
        Ok(RmsProp {
            core: Core::new(op_names!("RMSprop"), params, cfg)?,
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &RmsPropConfig {
        &self.core.cfg
    }

    /// The update rule, run by [`Optimizer::step`](crate::Optimizer::step).
    fn update(&mut self, grads: &GradStore<E>) -> Result<()> {
        let c = self.core.cfg;
        let wd = E::of_f64(c.weight_decay);
        let alpha = E::of_f64(c.alpha);
        let one_minus_alpha = E::of_f64(1.0 - c.alpha);
        let eps = E::of_f64(c.eps);
        let mu = E::of_f64(c.momentum);
        let neg_lr = E::of_f64(-c.lr);
        self.core.step(grads, |w, g, slot| {
            let n = g.len();
            let s = slot.get_or_insert_with(|| RmsPropSlot {
                step: 0,
                square_avg: vec![E::zero(); n],
                momentum_buffer: (c.momentum > 0.0).then(|| vec![E::zero(); n]),
                grad_avg: c.centered.then(|| vec![E::zero(); n]),
            });
            // Saturating: a restored step count may be u64::MAX.
            s.step = s.step.saturating_add(1);
            let k = Rule {
                wd,
                alpha,
                one_minus_alpha,
                eps,
                mu,
                neg_lr,
            };
            let (sq, ga) = (&mut s.square_avg[..], s.grad_avg.as_deref_mut());
            let b = s.momentum_buffer.as_deref_mut();
            // one loop per variant, its branches fixed at compile time, so each vectorizes
            match (c.weight_decay != 0.0, ga, b) {
                (false, None, None) => k.run::<false, false, false>(w, g, sq, &mut [], &mut []),
                (true, None, None) => k.run::<true, false, false>(w, g, sq, &mut [], &mut []),
                (false, Some(ga), None) => k.run::<false, true, false>(w, g, sq, ga, &mut []),
                (true, Some(ga), None) => k.run::<true, true, false>(w, g, sq, ga, &mut []),
                (false, None, Some(b)) => k.run::<false, false, true>(w, g, sq, &mut [], b),
                (true, None, Some(b)) => k.run::<true, false, true>(w, g, sq, &mut [], b),
                (false, Some(ga), Some(b)) => k.run::<false, true, true>(w, g, sq, ga, b),
                (true, Some(ga), Some(b)) => k.run::<true, true, true>(w, g, sq, ga, b),
            }
        })
    }
}

/// The constants of one RMSprop update, in the element type.
#[derive(Clone, Copy)]
struct Rule<E> {
    wd: E,
    alpha: E,
    one_minus_alpha: E,
    eps: E,
    mu: E,
    neg_lr: E,
}

impl<E: Element> Rule<E> {
    /// The update over one parameter: with weight decay (`WD`), the centered average (`C`,
    /// `ga`) and momentum (`M`, `b`); `ga` and `b` are empty when their variant is off.
    fn run<const WD: bool, const C: bool, const M: bool>(
        self,
        w: &mut [E],
        g: &[E],
        sq: &mut [E],
        ga: &mut [E],
        b: &mut [E],
    ) {
        let n = w.len();
        let (g, sq) = (&g[..n], &mut sq[..n]);
        let ga = if C { &mut ga[..n] } else { ga };
        let b = if M { &mut b[..n] } else { b };
        for j in 0..n {
            let d = if WD { g[j] + self.wd * w[j] } else { g[j] };
            let s = sq[j] * self.alpha + self.one_minus_alpha * d * d;
            sq[j] = s;
            let avg = if C {
                ga[j] = lerp(ga[j], d, self.one_minus_alpha);
                (s + -ga[j] * ga[j]).sqrt()
            } else {
                s.sqrt()
            } + self.eps;
            if M {
                b[j] = b[j] * self.mu + d / avg;
                w[j] += self.neg_lr * b[j];
            } else {
                w[j] += self.neg_lr * d / avg;
            }
        }
    }
}

optimizer_via_core!(RmsProp);
