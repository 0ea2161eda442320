//! The [`Optimizer`] trait and the parameter bookkeeping every optimizer shares.

use std::collections::HashSet;

use retrograd_core::{Element, Error, GradStore, Parameter, Result, Tensor};

use crate::state::{HParamVisitor, OptimState, Reader, Writer};

/// What every optimizer can do: update its parameters from a [`GradStore`], report and change
/// its learning rate, and save/restore its state.
///
/// Parameters without a gradient in the store are skipped (their state is untouched), like
/// PyTorch parameters whose `.grad` is `None`.
///
/// ```
/// use retrograd_core::{Parameter, Tensor};
/// use retrograd_optim::{Optimizer, Sgd, SgdConfig};
/// let w = Parameter::new(Tensor::<f32>::from_vec(vec![1.0, 2.0], &[2])?);
/// let mut opt: Box<dyn Optimizer> =
///     Box::new(Sgd::new([("w".to_string(), w.clone())], SgdConfig::new(0.5))?);
/// let grads = w.value().sum_all().backward()?; // d/dw sum(w) = 1
/// opt.step(&grads)?;
/// assert_eq!(w.to_vec(), vec![0.5, 1.5]);
/// opt.set_lr(0.25)?;
/// assert_eq!(opt.lr(), 0.25);
/// # Ok::<(), retrograd_core::Error>(())
/// ```
pub trait Optimizer<E: Element = f32> {
    /// The optimizer's name as recorded in its state (`"SGD"`, `"Adam"`, `"AdamW"`, ...).
    fn kind(&self) -> &'static str;

    /// Updates every parameter that has a gradient in `grads`, in place.
    ///
    /// Fails, before changing anything, if a gradient's shape differs from its parameter's.
    fn step(&mut self, grads: &GradStore<E>) -> Result<()>;

    /// The current learning rate.
    fn lr(&self) -> f64;

    /// Sets the learning rate (e.g. from an [`LrScheduler`](crate::LrScheduler)). Fails on a
    /// negative or non-finite value.
    fn set_lr(&mut self, lr: f64) -> Result<()>;

    /// The parameters, with the names they were given.
    fn params(&self) -> &[(String, Parameter<E>)];

    /// The state (hyperparameters, step counts, moment buffers) as an [`OptimState`].
    fn state_dict(&self) -> OptimState<E>;

    /// Restores a state saved by [`Optimizer::state_dict`] of the same kind over parameters
    /// with the same names and shapes, including the hyperparameters (so a learning rate set by
    /// a scheduler comes back too). On error nothing is changed.
    fn load_state_dict(&mut self, state: &OptimState<E>) -> Result<()>;
}

/// Checks a learning rate for `set_lr` and the constructors.
pub(crate) fn check_lr(op: &'static str, lr: f64) -> Result<()> {
    check_non_negative(op, "learning rate", lr)
}

/// Checks `value >= 0` (and not NaN/inf) for a named hyperparameter.
pub(crate) fn check_non_negative(op: &'static str, what: &str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(
            op,
            format!("{what} must be finite and >= 0, got {value}"),
        ))
    }
}

/// Checks `0 <= value < 1` for a named hyperparameter (betas, RMSprop's alpha ...).
pub(crate) fn check_unit(op: &'static str, what: &str, value: f64) -> Result<()> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::invalid(
            op,
            format!("{what} must be in [0, 1), got {value}"),
        ))
    }
}

/// Per-parameter optimizer state that can be saved to and restored from an [`OptimState`].
pub(crate) trait SlotState<E: Element>: Sized + Send {
    /// Hyperparameters deciding which buffers exist (e.g. amsgrad).
    type Config;
    /// Writes this parameter's step and buffers.
    fn save(&self, name: &str, shape: &[usize], w: &mut Writer<E>);
    /// Reads this parameter's state, `None` if it has none.
    fn load(
        cfg: &Self::Config,
        name: &str,
        shape: &[usize],
        r: &mut Reader<E>,
    ) -> Result<Option<Self>>;
}

/// One parameter's share of a step: the parameter, its state slot, its gradient, and the
/// rows known to be nonzero (with the row length) when only those are updated.
type Item<'a, E, S> = (
    &'a Parameter<E>,
    &'a mut Option<S>,
    &'a Tensor<E>,
    Option<(&'a [usize], usize)>,
);

/// Named parameters plus one optional state slot per parameter (`None` until its first step).
pub(crate) struct ParamSet<E: Element, S> {
    pub(crate) entries: Vec<(String, Parameter<E>)>,
    pub(crate) state: Vec<Option<S>>,
}

impl<E: Element, S: SlotState<E>> ParamSet<E, S> {
    /// Takes the parameters, rejecting an empty list, repeated names and repeated parameters.
    pub(crate) fn new(
        op: &'static str,
        params: impl IntoIterator<Item = (String, Parameter<E>)>,
    ) -> Result<Self> {
        let entries: Vec<(String, Parameter<E>)> = params.into_iter().collect();
        if entries.is_empty() {
            return Err(Error::invalid(op, "got an empty parameter list"));
        }
        let mut names = HashSet::new();
        let mut ids = HashSet::new();
        for (name, p) in &entries {
            if !names.insert(name.as_str()) {
                return Err(Error::invalid(
                    op,
                    format!("parameter name '{name}' appears twice"),
                ));
            }
            if !ids.insert(p.id()) {
                return Err(Error::invalid(
                    op,
                    format!("parameter '{name}' is the same parameter as an earlier entry"),
                ));
            }
        }
        let state = entries.iter().map(|_| None).collect();
        Ok(ParamSet { entries, state })
    }

    /// Calls `update(values, grad, state)` for every parameter with a gradient, after checking
    /// all gradient shapes first (so a bad store changes nothing). Parameters are independent,
    /// so large sets are updated on both threads (see `split.rs`); the bits are the same.
    ///
    /// With `skip_zero_rows` (for an update that leaves a value unchanged where its gradient
    /// is zero, and keeps no state: plain SGD), a gradient with known
    /// [`nonzero_rows`](GradStore::nonzero_rows) has `update` called on those rows alone, one
    /// row at a time (B2's embedding: 400 of 10,000 rows), and a dense parameter holding more
    /// than half of the step's values is updated first, in pieces that both threads take
    /// (`split::for_each_chunk`; each value's update is the same).
    pub(crate) fn step(
        &mut self,
        op: &'static str,
        grads: &GradStore<E>,
        skip_zero_rows: bool,
        update: impl Fn(&mut [E], &[E], &mut Option<S>) + Sync,
    ) -> Result<()> {
        let mut todo = Vec::with_capacity(self.entries.len());
        for ((name, p), slot) in self.entries.iter().zip(self.state.iter_mut()) {
            let Some(g) = grads.get_id(p.id()) else {
                continue;
            };
            if g.shape() != p.shape() {
                return Err(Error::shape(
                    op,
                    format!(
                        "gradient of parameter '{name}' has shape {:?} but the parameter has {:?}",
                        g.shape(),
                        p.shape()
                    ),
                ));
            }
            let rows = grads
                .nonzero_rows(p.id())
                .filter(|_| skip_zero_rows)
                .map(|r| (r, p.shape()[1]));
            todo.push((p, slot, g, rows));
        }
        let work =
            |(p, _, _, rows): &Item<'_, E, S>| rows.map_or(p.numel(), |(r, cols)| r.len() * cols);
        if skip_zero_rows {
            // a stateless update of one dense parameter with most of the work is shared in
            // chunks first (B2's decoder weight: 2M of 2.7M values; as one item, one thread
            // updated it while the other finished the rest and waited)
            let total: usize = todo.iter().map(work).sum();
            let big = (0..todo.len())
                .max_by_key(|&i| work(&todo[i]))
                .filter(|&i| {
                    let w = work(&todo[i]);
                    todo[i].3.is_none() && 2 * w > total && w >= crate::split::CHUNKED_MIN
                });
            if let Some(i) = big {
                let (p, _, g, _) = todo.remove(i);
                let g = g.contiguous_data();
                p.update(|w| {
                    crate::split::for_each_chunk(w, &g, |w, g| {
                        let mut none = None;
                        update(w, g, &mut none);
                        debug_assert!(none.is_none(), "a skip_zero_rows update keeps no state");
                    })
                })?;
            }
        }
        // parameters are independent: large sets are updated on both threads (same bits)
        crate::split::for_each_split(todo, work, |(p, slot, g, rows)| {
            let g = g.contiguous_data();
            p.update(|w| match rows {
                Some((rows, cols)) => {
                    for &r in rows {
                        let span = r * cols..(r + 1) * cols;
                        update(&mut w[span.clone()], &g[span], slot);
                    }
                }
                None => update(w, &g, slot),
            })
        })
    }

    /// Writes the parameter shapes and every existing slot.
    pub(crate) fn save(&self, w: &mut Writer<E>) {
        for ((name, p), slot) in self.entries.iter().zip(&self.state) {
            w.param(name, p.shape());
            if let Some(s) = slot {
                s.save(name, p.shape(), w);
            }
        }
    }

    /// Reads one slot per parameter (the reader has already checked names and shapes).
    pub(crate) fn load(&self, cfg: &S::Config, r: &mut Reader<E>) -> Result<Vec<Option<S>>> {
        self.entries
            .iter()
            .map(|(name, p)| S::load(cfg, name, p.shape(), r))
            .collect()
    }
}

/// The operation names an optimizer puts in its errors: its kind (also used by the
/// constructor) and `<kind>::step`, `<kind>::set_lr`, `<kind>::load_state_dict`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpNames {
    pub(crate) kind: &'static str,
    pub(crate) step: &'static str,
    pub(crate) set_lr: &'static str,
    pub(crate) load_state_dict: &'static str,
}

/// `op_names!("SGD")` builds the [`OpNames`] of the optimizer kind `"SGD"`.
macro_rules! op_names {
    ($kind:literal) => {
        $crate::optimizer::OpNames {
            kind: $kind,
            step: concat!($kind, "::step"),
            set_lr: concat!($kind, "::set_lr"),
            load_state_dict: concat!($kind, "::load_state_dict"),
        }
    };
}
pub(crate) use op_names;

/// An optimizer's hyperparameters: checked, saved and restored the same way by every optimizer.
pub(crate) trait HParams: Copy + Default {
    /// Fails with [`Error::InvalidArgument`] naming `op` if a value is out of range.
    fn validate(&self, op: &'static str) -> Result<()>;
    /// The learning rate.
    fn learning_rate(&self) -> f64;
    /// Replaces the learning rate (already checked).
    fn set_learning_rate(&mut self, lr: f64);
    /// Hands every hyperparameter, with its state key, to `v` (to save or load it).
    fn visit(&mut self, v: &mut impl HParamVisitor) -> Result<()>;
}

/// What every optimizer holds: its operation names, hyperparameters and parameters with their
/// state slots. It does everything but the update rule: construction checks, `set_lr` and
/// the state dict round trip.
pub(crate) struct Core<E: Element, C, S> {
    pub(crate) names: OpNames,
    pub(crate) cfg: C,
    pub(crate) set: ParamSet<E, S>,
}

impl<E: Element, C: HParams, S: SlotState<E, Config = C>> Core<E, C, S> {
    /// Checks the hyperparameters, then takes the parameters (see [`ParamSet::new`]).
    pub(crate) fn new(
        names: OpNames,
        params: impl IntoIterator<Item = (String, Parameter<E>)>,
        cfg: C,
    ) -> Result<Self> {
        cfg.validate(names.kind)?;
        Ok(Core {
            names,
            cfg,
            set: ParamSet::new(names.kind, params)?,
        })
    }

    /// [`ParamSet::step`] under this optimizer's step name, over every row.
    pub(crate) fn step(
        &mut self,
        grads: &GradStore<E>,
        update: impl Fn(&mut [E], &[E], &mut Option<S>) + Sync,
    ) -> Result<()> {
        self.step_rows(grads, false, update)
    }

    /// [`ParamSet::step`] under this optimizer's step name; with `skip_zero_rows` (an update
    /// that leaves a value unchanged where its gradient is zero and keeps no state), rows
    /// known to be zero are skipped.
    pub(crate) fn step_rows(
        &mut self,
        grads: &GradStore<E>,
        skip_zero_rows: bool,
        update: impl Fn(&mut [E], &[E], &mut Option<S>) + Sync,
    ) -> Result<()> {
        self.set
            .step(self.names.step, grads, skip_zero_rows, update)
    }

    /// [`Optimizer::set_lr`].
    pub(crate) fn set_lr(&mut self, lr: f64) -> Result<()> {
        check_lr(self.names.set_lr, lr)?;
        self.cfg.set_learning_rate(lr);
        Ok(())
    }

    /// [`Optimizer::state_dict`].
    pub(crate) fn state_dict(&self) -> OptimState<E> {
        let mut w = Writer::new(self.names.kind);
        let mut cfg = self.cfg;
        cfg.visit(&mut w)
            .expect("writing hyperparameters to a Writer cannot fail");
        self.set.save(&mut w);
        w.finish()
    }

    /// [`Optimizer::load_state_dict`]: reads and checks everything before changing anything.
    pub(crate) fn load_state_dict(&mut self, state: &OptimState<E>) -> Result<()> {
        let op = self.names.load_state_dict;
        let mut r = Reader::new(op, state, self.names.kind, &self.set.entries)?;
        let mut cfg = C::default();
        cfg.visit(&mut r)?;
        cfg.validate(op)?;
        let slots = self.set.load(&cfg, &mut r)?;
        r.finish()?;
        self.cfg = cfg;
        self.set.state = slots;
        Ok(())
    }
}

/// Implements [`Optimizer`] for `$t<E>` by handing everything to its `core: Core<..>` field,
/// except `step`, which runs the type's own update rule `fn update(&mut self, grads)`.
macro_rules! optimizer_via_core {
    ($t:ident) => {
        impl<E: Element> $crate::optimizer::Optimizer<E> for $t<E> {
            fn kind(&self) -> &'static str {
                self.core.names.kind
            }
            fn step(&mut self, grads: &GradStore<E>) -> Result<()> {
                self.update(grads)
            }
            fn lr(&self) -> f64 {
                $crate::optimizer::HParams::learning_rate(&self.core.cfg)
            }
            fn set_lr(&mut self, lr: f64) -> Result<()> {
                self.core.set_lr(lr)
            }
            fn params(&self) -> &[(String, Parameter<E>)] {
                &self.core.set.entries
            }
            fn state_dict(&self) -> $crate::state::OptimState<E> {
                self.core.state_dict()
            }
            fn load_state_dict(&mut self, state: &$crate::state::OptimState<E>) -> Result<()> {
                self.core.load_state_dict(state)
            }
        }
    };
}
pub(crate) use optimizer_via_core;
