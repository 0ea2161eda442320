//! Epoch-based learning-rate schedules with PyTorch's recurrences: step decay, exponential
//! decay, cosine annealing and linear warmup. ReduceLROnPlateau is in [`crate::plateau`].
//!
//! A scheduler owns the learning rate it computes; apply it with
//! `optimizer.set_lr(scheduler.lr())?`. As in PyTorch, call `step()` once at the end of each
//! epoch (after the optimizer steps); `lr()` right after construction is epoch 0's rate.
//!
//! PyTorch updates the rate by recurrence (each epoch's rate from the previous one), which can
//! differ from the closed form in the last bits; these types use the same recurrences, so they
//! match PyTorch to rounding and a restored run continues identically.

use std::collections::BTreeMap;

use retrograd_core::{Error, Result};

/// A scheduler's resumable state: string key/values (`kind`, `epoch`, `lr`, ...) with floats in
/// round-trip formatting, ready to be stored as checkpoint metadata.
pub type SchedState = BTreeMap<String, String>;

/// An epoch-driven learning-rate schedule.
///
/// ```
/// use retrograd_core::{Parameter, Tensor};
/// use retrograd_optim::{LrScheduler, Optimizer, Sgd, SgdConfig, StepLr};
/// let w = Parameter::new(Tensor::<f32>::ones(&[1]));
/// let mut opt = Sgd::new([("w".to_string(), w.clone())], SgdConfig::new(0.1))?;
/// let mut sched = StepLr::new(0.1, 2, 0.5)?;
/// let mut seen = vec![];
/// for _epoch in 0..5 {
///     opt.set_lr(sched.lr())?;
///     seen.push(opt.lr());
///     // ... train the epoch with opt ...
///     sched.step();
/// }
/// assert_eq!(seen, vec![0.1, 0.1, 0.05, 0.05, 0.025]);
/// # Ok::<(), retrograd_core::Error>(())
/// ```
pub trait LrScheduler {
    /// The learning rate for the current epoch.
    fn lr(&self) -> f64;
    /// How many times [`LrScheduler::step`] has been called (PyTorch's `last_epoch`).
    fn epoch(&self) -> u64;
    /// Ends the current epoch and computes the next epoch's rate, which it returns.
    fn step(&mut self) -> f64;
    /// The state needed to resume: the epoch and the current rate (the configuration comes from
    /// the constructor).
    fn state_dict(&self) -> SchedState;
    /// Restores [`LrScheduler::state_dict`]'s output from a scheduler of the same kind.
    fn load_state_dict(&mut self, state: &SchedState) -> Result<()>;
}

pub(crate) fn check(op: &'static str, what: &str, v: f64, ok: bool) -> Result<()> {
    if ok && v.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(op, format!("{what} out of range: {v}")))
    }
}

/// Writes `kind`, `epoch` and `lr`.
pub(crate) fn base_state(kind: &str, epoch: u64, lr: f64) -> SchedState {
    let mut s = SchedState::new();
    s.insert("kind".into(), kind.into());
    s.insert("epoch".into(), epoch.to_string());
    s.insert("lr".into(), format!("{lr:?}"));
    s
}

/// Reads an entry of a scheduler state, naming the scheduler and key on failure.
pub(crate) fn read<T: std::str::FromStr>(op: &'static str, s: &SchedState, key: &str) -> Result<T> {
    let v = s
        .get(key)
        .ok_or_else(|| Error::Checkpoint(format!("{op}: scheduler state has no '{key}'")))?;
    v.parse()
        .map_err(|_| Error::Checkpoint(format!("{op}: cannot parse '{key}' = '{v}'")))
}

/// Checks the kind and reads `(epoch, lr)`.
pub(crate) fn read_base(op: &'static str, s: &SchedState, kind: &str) -> Result<(u64, f64)> {
    let got: String = read(op, s, "kind")?;
    if got != kind {
        return Err(Error::Checkpoint(format!(
            "{op}: state is for scheduler '{got}', this is '{kind}'"
        )));
    }
    let (epoch, lr): (u64, f64) = (read(op, s, "epoch")?, read(op, s, "lr")?);
    if !(lr.is_finite() && lr >= 0.0) {
        return Err(Error::Checkpoint(format!("{op}: invalid lr {lr}")));
    }
    Ok((epoch, lr))
}

macro_rules! epoch_scheduler_common {
    ($kind:literal) => {
        fn lr(&self) -> f64 {
            self.lr
        }
        fn epoch(&self) -> u64 {
            self.epoch
        }
        fn state_dict(&self) -> SchedState {
            base_state($kind, self.epoch, self.lr)
        }
        fn load_state_dict(&mut self, state: &SchedState) -> Result<()> {
            let (epoch, lr) = read_base(concat!($kind, "::load_state_dict"), state, $kind)?;
            self.epoch = epoch;
            self.lr = lr;
            Ok(())
        }
    };
}

/// Multiplies the rate by `gamma` every `step_size` epochs (PyTorch's `StepLR`; its default
/// gamma is 0.1): `lr_e = base_lr * gamma^floor(e / step_size)`.
///
/// ```
/// use retrograd_optim::{LrScheduler, StepLr};
/// let mut s = StepLr::new(1.0, 3, 0.5)?;
/// let lrs: Vec<f64> = (0..7).map(|_| { let lr = s.lr(); s.step(); lr }).collect();
/// assert_eq!(lrs, vec![1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]);
/// # Ok::<(), retrograd_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct StepLr {
    step_size: u64,
    gamma: f64,
    epoch: u64,
    lr: f64,
}

impl StepLr {
    /// Starts at `base_lr`. Fails on a negative/non-finite rate or gamma, or `step_size` 0.
    pub fn new(base_lr: f64, step_size: u64, gamma: f64) -> Result<Self> {
        check("StepLR", "base_lr", base_lr, base_lr >= 0.0)?;
        check("StepLR", "gamma", gamma, gamma >= 0.0)?;
        if step_size == 0 {
            return Err(Error::invalid(
                "StepLR",
                "step_size must be at least 1, got 0",
            ));
        }
        Ok(StepLr {
            step_size,
            gamma,
            epoch: 0,
            lr: base_lr,
        })
    }
}

impl LrScheduler for StepLr {
    epoch_scheduler_common!("StepLR");
    fn step(&mut self) -> f64 {
        self.epoch = self.epoch.saturating_add(1);
        if self.epoch.is_multiple_of(self.step_size) {
            self.lr *= self.gamma;
        }
        self.lr
    }
}

/// Multiplies the rate by `gamma` every epoch (PyTorch's `ExponentialLR`):
/// `lr_e = base_lr * gamma^e`.
///
/// ```
/// use retrograd_optim::{ExponentialLr, LrScheduler};
/// let mut s = ExponentialLr::new(1.0, 0.5)?;
/// s.step();
/// s.step();
/// assert_eq!((s.epoch(), s.lr()), (2, 0.25));
/// # Ok::<(), retrograd_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ExponentialLr {
    gamma: f64,
    epoch: u64,
    lr: f64,
}

impl ExponentialLr {
    /// Starts at `base_lr`. Fails on a negative or non-finite rate or gamma.
    pub fn new(base_lr: f64, gamma: f64) -> Result<Self> {
        check("ExponentialLR", "base_lr", base_lr, base_lr >= 0.0)?;
        check("ExponentialLR", "gamma", gamma, gamma >= 0.0)?;
        Ok(ExponentialLr {
            gamma,
            epoch: 0,
            lr: base_lr,
        })
    }
}

impl LrScheduler for ExponentialLr {
    epoch_scheduler_common!("ExponentialLR");
    fn step(&mut self) -> f64 {
        self.epoch = self.epoch.saturating_add(1);
        self.lr *= self.gamma;
        self.lr
    }
}

/// Cosine annealing from `base_lr` down to `eta_min` over `t_max` epochs (PyTorch's
/// `CosineAnnealingLR`, default `eta_min` 0), following PyTorch's recurrence, which agrees with
/// `eta_min + (base_lr - eta_min) * (1 + cos(pi * e / t_max)) / 2`. Like PyTorch it does not
/// stop at `t_max`: the rate climbs back up along the cosine afterwards.
///
/// ```
/// use retrograd_optim::{CosineAnnealingLr, LrScheduler};
/// let mut s = CosineAnnealingLr::new(1.0, 4, 0.0)?;
/// for _ in 0..2 { s.step(); }
/// assert!((s.lr() - 0.5).abs() < 1e-15); // halfway: (1 + cos(pi/2)) / 2
/// for _ in 0..2 { s.step(); }
/// assert!(s.lr().abs() < 1e-15); // t_max: eta_min
/// # Ok::<(), retrograd_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct CosineAnnealingLr {
    base_lr: f64,
    t_max: u64,
    eta_min: f64,
    epoch: u64,
    lr: f64,
}

impl CosineAnnealingLr {
    /// Starts at `base_lr`. Fails on a negative/non-finite rate or `eta_min`, or `t_max` 0.
    pub fn new(base_lr: f64, t_max: u64, eta_min: f64) -> Result<Self> {
        check("CosineAnnealingLR", "base_lr", base_lr, base_lr >= 0.0)?;
        check("CosineAnnealingLR", "eta_min", eta_min, eta_min >= 0.0)?;
        if t_max == 0 {
            return Err(Error::invalid(
                "CosineAnnealingLR",
                "t_max must be at least 1, got 0",
            ));
        }
        Ok(CosineAnnealingLr {
            base_lr,
            t_max,
            eta_min,
            epoch: 0,
            lr: base_lr,
        })
    }
}

impl LrScheduler for CosineAnnealingLr {
    epoch_scheduler_common!("CosineAnnealingLR");
    fn step(&mut self) -> f64 {
        use std::f64::consts::PI;
        self.epoch = self.epoch.saturating_add(1);
        let (e, t) = (self.epoch, self.t_max);
        let tf = t as f64;
        // In u128: t_max is user data and 2 * t_max may not fit in a u64.
        let (e128, t128) = (u128::from(e), u128::from(t));
        if (e128 - 1 + t128) % (2 * t128) == 0 {
            // e - 1 - t_max is a multiple of 2 t_max: the rate sits at its minimum and the
            // ratio below would divide by 1 + cos(pi) = 0; PyTorch adds the first increment.
            self.lr += (self.base_lr - self.eta_min) * (1.0 - (PI / tf).cos()) / 2.0;
        } else {
            let ef = e as f64;
            self.lr = (1.0 + (PI * ef / tf).cos()) / (1.0 + (PI * (ef - 1.0) / tf).cos())
                * (self.lr - self.eta_min)
                + self.eta_min;
        }
        self.lr
    }
}

/// Linear warmup (PyTorch's `LinearLR`; its defaults are start 1/3, end 1, 5 iterations): the
/// factor applied to `base_lr` goes linearly from `start_factor` at epoch 0 to `end_factor` at
/// epoch `total_iters` and then stays there. Note that `lr()` right after construction is
/// already `base_lr * start_factor`.
///
/// ```
/// use retrograd_optim::{LinearLr, LrScheduler};
/// let mut s = LinearLr::new(1.0, 0.25, 1.0, 3)?;
/// let lrs: Vec<f64> = (0..5).map(|_| { let lr = s.lr(); s.step(); lr }).collect();
/// assert_eq!(lrs, vec![0.25, 0.5, 0.75, 1.0, 1.0]);
/// # Ok::<(), retrograd_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LinearLr {
    start_factor: f64,
    end_factor: f64,
    total_iters: u64,
    epoch: u64,
    lr: f64,
}

impl LinearLr {
    /// Fails on a negative/non-finite rate, `start_factor` outside (0, 1], `end_factor`
    /// outside [0, 1], or `total_iters` 0.
    pub fn new(base_lr: f64, start_factor: f64, end_factor: f64, total_iters: u64) -> Result<Self> {
        const OP: &str = "LinearLR";
        check(OP, "base_lr", base_lr, base_lr >= 0.0)?;
        check(
            OP,
            "start_factor (must be in (0, 1])",
            start_factor,
            start_factor > 0.0 && start_factor <= 1.0,
        )?;
        check(
            OP,
            "end_factor (must be in [0, 1])",
            end_factor,
            (0.0..=1.0).contains(&end_factor),
        )?;
        if total_iters == 0 {
            return Err(Error::invalid(OP, "total_iters must be at least 1, got 0"));
        }
        Ok(LinearLr {
            start_factor,
            end_factor,
            total_iters,
            epoch: 0,
            lr: base_lr * start_factor,
        })
    }
}

impl LrScheduler for LinearLr {
    epoch_scheduler_common!("LinearLR");
    fn step(&mut self) -> f64 {
        self.epoch = self.epoch.saturating_add(1);
        if self.epoch <= self.total_iters {
            let delta = self.end_factor - self.start_factor;
            let denom =
                self.total_iters as f64 * self.start_factor + (self.epoch - 1) as f64 * delta;
            self.lr *= 1.0 + delta / denom;
        }
        self.lr
    }
}
