//! The [`Module`] trait: named parameters through one visitor, train/eval mode, state dicts.

use std::collections::BTreeMap;
use std::sync::Mutex;

use retrograd_core::{Element, Error, Parameter, Result, Tensor};

use crate::rng_state::{ModuleRng, RngState};

/// A state dict: parameter (and buffer) tensors by dotted name, in name order.
pub type StateDict<E = f32> = BTreeMap<String, Tensor<E>>;

/// Joins a prefix and a name with a dot (`""` + `"w"` = `"w"`, `"enc"` + `"w"` = `"enc.w"`).
pub fn join_name(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// A layer or model. Implementors provide [`Module::visit_params`] (and
/// [`Module::set_training`] when they behave differently in training); everything else is
/// derived from it. Forward methods are inherent to each module, since their signatures differ.
pub trait Module<E: Element = f32>: Send + Sync {
    /// Calls `f(name, param)` for every parameter, names dotted under `prefix`
    /// (use [`join_name`]; nested modules pass `join_name(prefix, "child")` down).
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Parameter<E>));

    /// Calls `f(name, rng)` for every random stream the module owns (dropout masks), names
    /// dotted under `prefix` like [`Module::visit_params`]. The default visits nothing;
    /// modules holding a [`ModuleRng`], and containers of such modules, override it so that
    /// [`Module::rng_states`] (and a training checkpoint) can save and restore them.
    fn visit_rngs(&self, _prefix: &str, _f: &mut dyn FnMut(&str, &Mutex<ModuleRng>)) {}

    /// Switches training mode (dropout active) on or off, for this module and its children.
    fn set_training(&mut self, _training: bool) {}

    /// Training mode (like `model.train()`).
    fn train(&mut self) {
        self.set_training(true);
    }

    /// Evaluation mode (like `model.eval()`).
    fn eval(&mut self) {
        self.set_training(false);
    }

    /// Every parameter with its dotted name, in visiting order.
    fn named_parameters(&self) -> Vec<(String, Parameter<E>)> {
        let mut out = Vec::new();
        self.visit_params("", &mut |n, p| out.push((n.to_string(), p.clone())));
        out
    }

    /// Every parameter, in visiting order.
    fn parameters(&self) -> Vec<Parameter<E>> {
        self.named_parameters()
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    /// Total number of scalar parameters.
    fn num_parameters(&self) -> usize {
        self.parameters().iter().map(|p| p.numel()).sum()
    }

    /// Current parameter values by name (constants; no gradient).
    fn state_dict(&self) -> StateDict<E> {
        self.named_parameters()
            .into_iter()
            .map(|(n, p)| (n, p.value_detached()))
            .collect()
    }

    /// Copies values from a state dict into the parameters. Every shape must match. With
    /// `strict`, a missing or unexpected name is an error too (all problems listed at once);
    /// without it, only the names present in both are copied. Nothing is changed on error.
    fn load_state_dict(&self, sd: &StateDict<E>, strict: bool) -> Result<()> {
        let params = self.named_parameters();
        let mut problems = Vec::new();
        for (name, p) in &params {
            match sd.get(name) {
                None if strict => problems.push(format!("missing tensor '{name}'")),
                None => {}
                Some(t) if t.shape() != p.shape() => problems.push(format!(
                    "tensor '{name}' has shape {:?}, the model expects {:?}",
                    t.shape(),
                    p.shape()
                )),
                Some(_) => {}
            }
        }
        if strict {
            for name in sd.keys() {
                if !params.iter().any(|(n, _)| n == name) {
                    problems.push(format!("unexpected tensor '{name}'"));
                }
            }
        }
        if !problems.is_empty() {
            return Err(Error::Checkpoint(format!(
                "load_state_dict: {}",
                problems.join("; ")
            )));
        }
        for (name, p) in &params {
            if let Some(t) = sd.get(name) {
                p.set(t)?;
            }
        }
        Ok(())
    }

    /// The exact position of every module-owned random stream, by dotted name.
    fn rng_states(&self) -> BTreeMap<String, RngState> {
        let mut out = BTreeMap::new();
        self.visit_rngs("", &mut |n, rng| {
            // A poisoned lock only means a thread panicked while drawing; the RNG is intact.
            let rng = rng.lock().unwrap_or_else(|p| p.into_inner());
            out.insert(n.to_string(), RngState::capture(&rng));
        });
        out
    }

    /// Puts every module-owned random stream at the saved position. The names must match
    /// [`Module::rng_states`] exactly: a missing or unexpected name is an error (all listed at
    /// once), and nothing is changed on error.
    fn load_rng_states(&self, states: &BTreeMap<String, RngState>) -> Result<()> {
        let mut names = Vec::new();
        self.visit_rngs("", &mut |n, _| names.push(n.to_string()));
        let mut problems: Vec<String> = names
            .iter()
            .filter(|n| !states.contains_key(*n))
            .map(|n| format!("missing random stream '{n}'"))
            .collect();
        problems.extend(
            states
                .keys()
                .filter(|k| !names.contains(k))
                .map(|k| format!("unexpected random stream '{k}'")),
        );
        if !problems.is_empty() {
            return Err(Error::Checkpoint(format!(
                "load_rng_states: {}",
                problems.join("; ")
            )));
        }
        self.visit_rngs("", &mut |n, rng| {
            if let Some(st) = states.get(n) {
                *rng.lock().unwrap_or_else(|p| p.into_inner()) = st.restore();
            }
        });
        Ok(())
    }
}
