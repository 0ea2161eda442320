//! Reduce the learning rate when a validation metric stops improving (PyTorch's
//! `ReduceLROnPlateau`).

use retrograd_core::Result;

use crate::schedule::{base_state, check, read, read_base, SchedState};

/// Whether smaller or larger metric values are better.
///
/// ```
/// use retrograd_optim::PlateauMode;
/// assert_ne!(PlateauMode::Min, PlateauMode::Max);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlateauMode {
    /// Lower is better (a loss, a perplexity).
    Min,
    /// Higher is better (an accuracy).
    Max,
}

/// How `threshold` decides whether a metric improved on the best so far.
///
/// ```
/// use retrograd_optim::ThresholdMode;
/// assert_ne!(ThresholdMode::Rel, ThresholdMode::Abs);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdMode {
    /// Improvement means `m < best * (1 - threshold)` (mode min) or `m > best * (1 + threshold)`.
    Rel,
    /// Improvement means `m < best - threshold` (mode min) or `m > best + threshold`.
    Abs,
}

/// Configuration of [`ReduceLrOnPlateau`], with PyTorch's defaults.
///
/// The seeds' rule "divide the learning rate by 4 whenever the validation perplexity does not
/// improve" is [`PlateauConfig::divide_by_4_when_worse`].
///
/// ```
/// use retrograd_optim::{PlateauConfig, PlateauMode, ThresholdMode};
/// let c = PlateauConfig::default();
/// assert_eq!((c.mode, c.factor, c.patience, c.threshold), (PlateauMode::Min, 0.1, 10, 1e-4));
/// assert_eq!((c.threshold_mode, c.cooldown, c.min_lr, c.eps), (ThresholdMode::Rel, 0, 0.0, 1e-8));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlateauConfig {
    /// Min (default) or max.
    pub mode: PlateauMode,
    /// New rate = rate * factor, with 0 < factor < 1 (default 0.1).
    pub factor: f64,
    /// Bad epochs tolerated before reducing (default 10; 0 reduces on the first bad epoch).
    pub patience: u64,
    /// Minimum improvement that counts (default 1e-4).
    pub threshold: f64,
    /// Relative (default) or absolute threshold.
    pub threshold_mode: ThresholdMode,
    /// Epochs after a reduction during which bad epochs are not counted (default 0).
    pub cooldown: u64,
    /// Lower bound on the rate (default 0).
    pub min_lr: f64,
    /// Reductions smaller than this are skipped (default 1e-8).
    pub eps: f64,
}

impl Default for PlateauConfig {
    fn default() -> Self {
        PlateauConfig {
            mode: PlateauMode::Min,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lr: 0.0,
            eps: 1e-8,
        }
    }
}

impl PlateauConfig {
    /// Divide by 4 as soon as the metric (lower is better) fails to beat the best so far:
    /// factor 0.25, patience 0, threshold 0.
    ///
    /// ```
    /// use retrograd_optim::{PlateauConfig, ReduceLrOnPlateau};
    /// let mut s = ReduceLrOnPlateau::new(20.0, PlateauConfig::divide_by_4_when_worse())?;
    /// for ppl in [300.0, 250.0, 260.0, 240.0, 240.0] {
    ///     s.step_with(ppl);
    /// }
    /// assert_eq!(s.lr(), 20.0 / 16.0); // 260 was worse, 240 again did not improve
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn divide_by_4_when_worse() -> Self {
        PlateauConfig {
            factor: 0.25,
            patience: 0,
            threshold: 0.0,
            ..Self::default()
        }
    }

    fn validate(&self) -> Result<()> {
        const OP: &str = "ReduceLROnPlateau";
        check(
            OP,
            "factor (must be in (0, 1))",
            self.factor,
            self.factor > 0.0 && self.factor < 1.0,
        )?;
        check(OP, "threshold", self.threshold, self.threshold >= 0.0)?;
        check(OP, "min_lr", self.min_lr, self.min_lr >= 0.0)?;
        check(OP, "eps", self.eps, self.eps >= 0.0)
    }
}

/// Reduces the rate by `factor` when the metric passed to [`ReduceLrOnPlateau::step_with`] has
/// not improved for more than `patience` epochs, like PyTorch's `ReduceLROnPlateau`: an epoch
/// is *bad* unless the metric beats the best so far by the threshold (a tie is bad, and so is
/// NaN); after more than `patience` bad epochs in a row the rate becomes
/// `max(rate * factor, min_lr)` (skipped if that changes it by `eps` or less), then `cooldown`
/// epochs pass without counting.
///
/// ```
/// use retrograd_optim::{PlateauConfig, ReduceLrOnPlateau};
/// let cfg = PlateauConfig { factor: 0.5, patience: 1, ..PlateauConfig::default() };
/// let mut s = ReduceLrOnPlateau::new(1.0, cfg)?;
/// assert!(!s.step_with(3.0)); // best 3
/// assert!(!s.step_with(3.0)); // 1 bad epoch: within patience
/// assert!(s.step_with(3.5)); // 2 bad epochs: reduce
/// assert_eq!(s.lr(), 0.5);
/// # Ok::<(), retrograd_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ReduceLrOnPlateau {
    cfg: PlateauConfig,
    lr: f64,
    epoch: u64,
    best: f64,
    num_bad_epochs: u64,
    cooldown_counter: u64,
}

const KIND: &str = "ReduceLROnPlateau";

impl ReduceLrOnPlateau {
    /// Starts at `base_lr`. Fails on a negative/non-finite rate, or a factor outside (0, 1), or a
    /// negative threshold, `min_lr` or eps.
    pub fn new(base_lr: f64, cfg: PlateauConfig) -> Result<Self> {
        check(KIND, "base_lr", base_lr, base_lr >= 0.0)?;
        cfg.validate()?;
        Ok(ReduceLrOnPlateau {
            cfg,
            lr: base_lr,
            epoch: 0,
            best: Self::worst(cfg.mode),
            num_bad_epochs: 0,
            cooldown_counter: 0,
        })
    }

    fn worst(mode: PlateauMode) -> f64 {
        match mode {
            PlateauMode::Min => f64::INFINITY,
            PlateauMode::Max => f64::NEG_INFINITY,
        }
    }

    /// The current learning rate.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Number of [`ReduceLrOnPlateau::step_with`] calls so far.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The best metric seen so far (infinite before the first step).
    pub fn best(&self) -> f64 {
        self.best
    }

    /// The configuration.
    pub fn config(&self) -> &PlateauConfig {
        &self.cfg
    }

    fn is_better(&self, m: f64) -> bool {
        let (t, b) = (self.cfg.threshold, self.best);
        match (self.cfg.mode, self.cfg.threshold_mode) {
            (PlateauMode::Min, ThresholdMode::Rel) => m < b * (1.0 - t),
            (PlateauMode::Min, ThresholdMode::Abs) => m < b - t,
            (PlateauMode::Max, ThresholdMode::Rel) => m > b * (t + 1.0),
            (PlateauMode::Max, ThresholdMode::Abs) => m > b + t,
        }
    }

    /// Ends an epoch whose validation metric was `metric`; returns true if the rate was reduced.
    pub fn step_with(&mut self, metric: f64) -> bool {
        self.epoch = self.epoch.saturating_add(1);
        if self.is_better(metric) {
            self.best = metric;
            self.num_bad_epochs = 0;
        } else {
            self.num_bad_epochs = self.num_bad_epochs.saturating_add(1);
        }
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.num_bad_epochs = 0;
        }
        if self.num_bad_epochs > self.cfg.patience {
            self.cooldown_counter = self.cfg.cooldown;
            self.num_bad_epochs = 0;
            let new_lr = (self.lr * self.cfg.factor).max(self.cfg.min_lr);
            if self.lr - new_lr > self.cfg.eps {
                self.lr = new_lr;
                return true;
            }
        }
        false
    }

    /// The resumable state: epoch, rate, best metric, bad-epoch and cooldown counters.
    ///
    /// ```
    /// use retrograd_optim::{PlateauConfig, ReduceLrOnPlateau};
    /// let cfg = PlateauConfig::divide_by_4_when_worse();
    /// let mut a = ReduceLrOnPlateau::new(1.0, cfg)?;
    /// a.step_with(2.0);
    /// let mut b = ReduceLrOnPlateau::new(1.0, cfg)?;
    /// b.load_state_dict(&a.state_dict())?;
    /// assert_eq!((a.step_with(2.5), b.step_with(2.5)), (true, true));
    /// assert_eq!(a.lr(), b.lr());
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn state_dict(&self) -> SchedState {
        let mut s = base_state(KIND, self.epoch, self.lr);
        s.insert("best".into(), format!("{:?}", self.best));
        s.insert("num_bad_epochs".into(), self.num_bad_epochs.to_string());
        s.insert("cooldown_counter".into(), self.cooldown_counter.to_string());
        s
    }

    /// Restores [`ReduceLrOnPlateau::state_dict`]'s output (the configuration stays this
    /// scheduler's own).
    pub fn load_state_dict(&mut self, state: &SchedState) -> Result<()> {
        const OP: &str = "ReduceLROnPlateau::load_state_dict";
        let (epoch, lr) = read_base(OP, state, KIND)?;
        let best: f64 = read(OP, state, "best")?;
        let num_bad_epochs = read(OP, state, "num_bad_epochs")?;
        let cooldown_counter = read(OP, state, "cooldown_counter")?;
        self.epoch = epoch;
        self.lr = lr;
        self.best = best;
        self.num_bad_epochs = num_bad_epochs;
        self.cooldown_counter = cooldown_counter;
        Ok(())
    }
}
