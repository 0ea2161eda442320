//! Optimizer state as named tensors plus string metadata, so a training run can be checkpointed
//! and resumed bit for bit.
//!
//! Layout of an [`OptimState`] (every optimizer uses the same scheme):
//!
//! | where | key | value |
//! |---|---|---|
//! | metadata | `kind` | `SGD`, `Adam`, `AdamW`, `RMSprop` or `Adagrad` |
//! | metadata | `hparam.<name>` | each hyperparameter, e.g. `hparam.lr` = `0.001` (the *current* lr) |
//! | metadata | `param.<param name>` | the parameter's shape, e.g. `[3, 4]` (every parameter) |
//! | metadata | `state.<param name>.step` | the parameter's step count (only once it has state) |
//! | tensors | `state.<param name>.<buffer>` | `exp_avg`, `exp_avg_sq`, `momentum_buffer`, ... |
//!
//! Floats are written with Rust's shortest round-trip formatting, so parsing them back gives the
//! same bits. Step counts live in the metadata as decimal integers rather than in 1-element
//! tensors, because an `f32` tensor cannot hold counts above 2^24 exactly.

use std::collections::{BTreeMap, BTreeSet};

use retrograd_core::{Element, Error, Parameter, Result, Tensor};

/// The state of an optimizer: per-parameter buffers as named tensors, plus string metadata
/// (optimizer kind, hyperparameters, parameter shapes, step counts). See the [module
/// docs](self) for the key scheme. No file I/O happens here: a checkpoint writer can store
/// `tensors` and `metadata` directly as a safetensors file.
///
/// ```
/// use retrograd_core::{Parameter, Tensor};
/// use retrograd_optim::{Adam, AdamConfig, Optimizer};
/// let w = Parameter::new(Tensor::<f32>::ones(&[2]));
/// let mut opt = Adam::new([("w".to_string(), w.clone())], AdamConfig::default())?;
/// opt.step(&w.value().sum_all().backward()?)?;
/// let st = opt.state_dict();
/// assert_eq!(st.kind(), Some("Adam"));
/// assert_eq!(st.metadata["state.w.step"], "1");
/// assert_eq!(st.tensors["state.w.exp_avg"].shape(), &[2]);
/// # Ok::<(), retrograd_core::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct OptimState<E: Element = f32> {
    /// Per-parameter buffers, keyed `state.<param name>.<buffer>`.
    pub tensors: BTreeMap<String, Tensor<E>>,
    /// Kind, hyperparameters, parameter shapes and step counts, as strings.
    pub metadata: BTreeMap<String, String>,
}

impl<E: Element> OptimState<E> {
    /// An empty state.
    ///
    /// ```
    /// let st = retrograd_optim::OptimState::<f32>::new();
    /// assert!(st.tensors.is_empty() && st.kind().is_none());
    /// ```
    pub fn new() -> Self {
        OptimState {
            tensors: BTreeMap::new(),
            metadata: BTreeMap::new(),
        }
    }

    /// The optimizer kind recorded in the metadata (`"Adam"`, `"SGD"`, ...).
    pub fn kind(&self) -> Option<&str> {
        self.metadata.get("kind").map(String::as_str)
    }
}

/// Builds an [`OptimState`].
pub(crate) struct Writer<E: Element> {
    st: OptimState<E>,
}

impl<E: Element> Writer<E> {
    pub(crate) fn new(kind: &str) -> Self {
        let mut st = OptimState::new();
        st.metadata.insert("kind".into(), kind.into());
        Writer { st }
    }

    pub(crate) fn param(&mut self, name: &str, shape: &[usize]) {
        self.st
            .metadata
            .insert(format!("param.{name}"), format!("{shape:?}"));
    }

    pub(crate) fn step(&mut self, name: &str, step: u64) {
        self.st
            .metadata
            .insert(format!("state.{name}.step"), step.to_string());
    }

    pub(crate) fn buf(&mut self, name: &str, buf: &str, data: &[E], shape: &[usize]) {
        let t = Tensor::from_slice(data, shape)
            .expect("optimizer buffers always hold exactly their parameter's numel");
        self.st.tensors.insert(format!("state.{name}.{buf}"), t);
    }

    pub(crate) fn finish(self) -> OptimState<E> {
        self.st
    }
}

/// Walks an optimizer's hyperparameters as `hparam.<key>` entries, in the order the config
/// lists them: [`Writer`] stores each value, [`Reader`] replaces each with the stored one. One
/// list of keys per optimizer thus serves both saving and loading.
pub(crate) trait HParamVisitor {
    /// A numeric hyperparameter.
    fn num(&mut self, key: &str, v: &mut f64) -> Result<()>;
    /// A switch.
    fn flag(&mut self, key: &str, v: &mut bool) -> Result<()>;
}

impl<E: Element> HParamVisitor for Writer<E> {
    fn num(&mut self, key: &str, v: &mut f64) -> Result<()> {
        let v = *v;
        self.st
            .metadata
            .insert(format!("hparam.{key}"), format!("{v:?}"));
        Ok(())
    }

    fn flag(&mut self, key: &str, v: &mut bool) -> Result<()> {
        self.st
            .metadata
            .insert(format!("hparam.{key}"), v.to_string());
        Ok(())
    }
}

impl<E: Element> HParamVisitor for Reader<'_, E> {
    fn num(&mut self, key: &str, v: &mut f64) -> Result<()> {
        let k = format!("hparam.{key}");
        let s = self.meta(&k)?;
        *v = s
            .parse::<f64>()
            .map_err(|_| self.err(format!("'{k}' = '{s}' is not a number")))?;
        Ok(())
    }

    fn flag(&mut self, key: &str, v: &mut bool) -> Result<()> {
        let k = format!("hparam.{key}");
        *v = match self.meta(&k)? {
            "true" => true,
            "false" => false,
            s => return Err(self.err(format!("'{k}' = '{s}' is not 'true' or 'false'"))),
        };
        Ok(())
    }
}

/// Reads and validates an [`OptimState`], tracking which entries were used so that leftovers
/// (state for parameters or buffers this optimizer does not have) are reported.
pub(crate) struct Reader<'a, E: Element> {
    op: &'static str,
    st: &'a OptimState<E>,
    used_tensors: BTreeSet<String>,
    used_meta: BTreeSet<String>,
}

impl<'a, E: Element> Reader<'a, E> {
    /// Checks the kind and that the parameter names and shapes are exactly this optimizer's.
    pub(crate) fn new(
        op: &'static str,
        st: &'a OptimState<E>,
        kind: &str,
        params: &[(String, Parameter<E>)],
    ) -> Result<Self> {
        let mut r = Reader {
            op,
            st,
            used_tensors: BTreeSet::new(),
            used_meta: BTreeSet::new(),
        };
        let got = r.meta("kind")?;
        if got != kind {
            return Err(r.err(format!(
                "state is for optimizer kind '{got}', this optimizer is '{kind}'"
            )));
        }
        for (name, p) in params {
            let key = format!("param.{name}");
            let Some(shape) = st.metadata.get(&key) else {
                return Err(r.err(format!("state has no parameter named '{name}'")));
            };
            let want = format!("{:?}", p.shape());
            if *shape != want {
                return Err(r.err(format!(
                    "parameter '{name}' has shape {want} but the state has {shape}"
                )));
            }
            r.used_meta.insert(key);
        }
        if let Some(extra) = st
            .metadata
            .keys()
            .find(|k| k.starts_with("param.") && !r.used_meta.contains(*k))
        {
            return Err(r.err(format!(
                "state has parameter '{}' which this optimizer does not have",
                &extra["param.".len()..]
            )));
        }
        Ok(r)
    }

    pub(crate) fn err(&self, detail: String) -> Error {
        Error::Checkpoint(format!("{}: {detail}", self.op))
    }

    fn meta(&mut self, key: &str) -> Result<&'a str> {
        match self.st.metadata.get(key) {
            Some(v) => {
                self.used_meta.insert(key.to_string());
                Ok(v.as_str())
            }
            None => Err(self.err(format!("metadata entry '{key}' is missing"))),
        }
    }

    /// The step count of a parameter, or `None` if the state holds nothing for it.
    pub(crate) fn step(&mut self, name: &str) -> Result<Option<u64>> {
        let k = format!("state.{name}.step");
        let Some(v) = self.st.metadata.get(&k) else {
            return Ok(None);
        };
        self.used_meta.insert(k.clone());
        v.parse::<u64>()
            .map(Some)
            .map_err(|_| self.err(format!("'{k}' = '{v}' is not a step count")))
    }

    /// A buffer of a parameter, shape-checked, or `None` if absent.
    pub(crate) fn buf(&mut self, name: &str, buf: &str, shape: &[usize]) -> Result<Option<Vec<E>>> {
        let k = format!("state.{name}.{buf}");
        let Some(t) = self.st.tensors.get(&k) else {
            return Ok(None);
        };
        if t.shape() != shape {
            return Err(self.err(format!(
                "'{k}' has shape {:?} but parameter '{name}' has shape {shape:?}",
                t.shape()
            )));
        }
        self.used_tensors.insert(k);
        Ok(Some(t.to_vec()))
    }

    /// Like [`Reader::buf`] but the buffer must be there.
    pub(crate) fn need_buf(&mut self, name: &str, buf: &str, shape: &[usize]) -> Result<Vec<E>> {
        self.buf(name, buf, shape)?.ok_or_else(|| {
            self.err(format!(
                "state for parameter '{name}' is missing buffer 'state.{name}.{buf}'"
            ))
        })
    }

    /// Fails if any tensor or `state.` metadata entry was not consumed.
    pub(crate) fn finish(self) -> Result<()> {
        if let Some(k) = self
            .st
            .tensors
            .keys()
            .find(|k| !self.used_tensors.contains(*k))
        {
            return Err(self.err(format!(
                "unexpected tensor '{k}' (unknown parameter or buffer for this configuration)"
            )));
        }
        if let Some(k) = self
            .st
            .metadata
            .keys()
            .find(|k| k.starts_with("state.") && !self.used_meta.contains(*k))
        {
            return Err(self.err(format!(
                "unexpected metadata entry '{k}' (unknown parameter, or a step without buffers)"
            )));
        }
        Ok(())
    }
}
