//! Training checkpoints: model weights, optimizer state, scheduler state, step/epoch counters
//! and random-number-generator states in **one safetensors file**, written atomically, so a run
//! can stop at any step and resume bit for bit.
//!
//! File layout (a plain safetensors file; every tensor in the model's dtype):
//!
//! | where | key | value |
//! |---|---|---|
//! | tensor | `model.<name>` | the model's state dict (PyTorch names) |
//! | tensor | `optim.<key>` | [`OptimState::tensors`] (moment buffers ...) |
//! | metadata | `checkpoint.format`, `checkpoint.version`, `checkpoint.dtype` | `retrograd-training-checkpoint`, `1`, `f32`/`f64` |
//! | metadata | `step`, `epoch` | decimal integers |
//! | metadata | `optim.<key>` | [`OptimState::metadata`] (kind, hyperparameters, step counts) |
//! | metadata | `sched.<key>` | a scheduler's [`SchedState`] |
//! | metadata | `rng.<name>.seed` / `.stream` / `.word_pos` | a [`TrainRng`]'s exact position |
//! | metadata | `module_rng.<name>.seed` / `.stream` / `.word_pos` | a module-owned stream ([`Module::rng_states`]) |
//! | metadata | `extra.<key>` | anything else (e.g. the model config) |
//!
//! **Random streams.** `rand::rngs::StdRng` cannot report its state, so the RNG a training
//! loop wants to checkpoint (batch shuffling, sampling) should be a [`TrainRng`]
//! (`rand_chacha::ChaCha12Rng`, the same generator StdRng uses today), whose seed, stream and
//! word position are saved exactly. Streams owned inside modules (a `Dropout`'s, a recurrent
//! stack's inter-layer dropout) are ChaCha12 too: [`Checkpoint::capture`] records them all
//! through [`Module::rng_states`] and [`Checkpoint::restore`] puts them back, so a resumed run
//! with active dropout draws the same masks as an uninterrupted one. A checkpoint without
//! module streams (written before they were saved, or built with [`Checkpoint::new`]) still
//! restores; the model's streams then keep whatever position they have.

use std::collections::BTreeMap;
use std::path::Path;

use rand_chacha::ChaCha12Rng;
use retrograd_core::{Element, Error, Result};
use retrograd_nn::serialize::{self, write_atomic};
use retrograd_nn::{Module, StateDict};
use retrograd_optim::{OptimState, Optimizer, SchedState};

/// The random generator whose state a [`Checkpoint`] can store: ChaCha with 12 rounds, the
/// algorithm behind `rand::rngs::StdRng`, but with its position readable.
pub type TrainRng = ChaCha12Rng;

const FORMAT: &str = "retrograd-training-checkpoint";
const VERSION: &str = "1";

/// The exact position of a [`TrainRng`] (or a module's stream): seed, stream and word
/// offset. Defined in `retrograd_nn` next to [`Module::rng_states`].
pub use retrograd_nn::RngState;

/// Everything needed to resume training. Build it with [`Checkpoint::new`] and the `with_*`
/// methods, write it with [`Checkpoint::save`]; read it with [`Checkpoint::load`] and put it
/// back with [`Checkpoint::restore`] and [`Checkpoint::rng`].
///
/// ```
/// use rand::{Rng, SeedableRng};
/// use retrograd::checkpoint::{Checkpoint, TrainRng};
/// use retrograd::nn::{Linear, Module};
/// use retrograd::optim::{Optimizer, Sgd, SgdConfig};
///
/// let mut rng = TrainRng::seed_from_u64(0);
/// let model = Linear::<f32>::new(3, 2, true, &mut rng)?;
/// let mut opt = Sgd::new(model.named_parameters(), SgdConfig::new(0.1).momentum(0.9))?;
/// // ... train ...
/// let path = std::env::temp_dir().join(format!("retrograd-doc-ckpt-{}.safetensors", std::process::id()));
/// Checkpoint::capture(&model, &opt, 100, 2).with_rng("data", &rng).save(&path)?;
///
/// // later, in a fresh process: build the same model and optimizer, then
/// let ck = Checkpoint::<f32>::load(&path)?;
/// ck.restore(&model, Some(&mut opt))?;
/// let mut resumed: TrainRng = ck.rng("data")?;
/// assert_eq!((ck.step, ck.epoch), (100, 2));
/// assert_eq!(resumed.random::<u64>(), rng.random::<u64>());
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), retrograd::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Checkpoint<E: Element = f32> {
    /// The model's state dict.
    pub model: StateDict<E>,
    /// The optimizer's state, if saved.
    pub optim: Option<OptimState<E>>,
    /// A learning-rate scheduler's state, if saved.
    pub scheduler: Option<SchedState>,
    /// Optimizer steps taken so far.
    pub step: u64,
    /// Epochs completed so far.
    pub epoch: u64,
    /// Named random-generator states.
    pub rngs: BTreeMap<String, RngState>,
    /// The model's own random streams ([`Module::rng_states`]); empty if not saved.
    pub module_rngs: BTreeMap<String, RngState>,
    /// Free-form string metadata (e.g. the model config).
    pub extra: BTreeMap<String, String>,
}

impl<E: Element> Checkpoint<E> {
    /// A checkpoint holding only model weights (step and epoch 0).
    pub fn new(model: StateDict<E>) -> Self {
        Checkpoint {
            model,
            optim: None,
            scheduler: None,
            step: 0,
            epoch: 0,
            rngs: BTreeMap::new(),
            module_rngs: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }

    /// The model's and optimizer's current state (weights and module random streams) with
    /// the given counters.
    pub fn capture<M, O>(model: &M, optim: &O, step: u64, epoch: u64) -> Self
    where
        M: Module<E> + ?Sized,
        O: Optimizer<E> + ?Sized,
    {
        Checkpoint {
            step,
            epoch,
            module_rngs: model.rng_states(),
            ..Self::new(model.state_dict()).with_optim(optim.state_dict())
        }
    }

    /// Adds optimizer state.
    pub fn with_optim(mut self, state: OptimState<E>) -> Self {
        self.optim = Some(state);
        self
    }

    /// Adds a scheduler's state (`LrScheduler::state_dict()`).
    pub fn with_scheduler(mut self, state: SchedState) -> Self {
        self.scheduler = Some(state);
        self
    }

    /// Records the position of a generator under `name`.
    pub fn with_rng(mut self, name: &str, rng: &TrainRng) -> Self {
        self.rngs.insert(name.to_string(), RngState::capture(rng));
        self
    }

    /// Adds a free-form metadata entry.
    pub fn with_extra(mut self, key: &str, value: impl Into<String>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// The generator saved under `name`, at its saved position.
    pub fn rng(&self, name: &str) -> Result<TrainRng> {
        self.rngs.get(name).map(RngState::restore).ok_or_else(|| {
            Error::Checkpoint(format!(
                "no random generator '{name}' in the checkpoint (it has: {:?})",
                self.rngs.keys().collect::<Vec<_>>()
            ))
        })
    }

    /// Loads the weights into `model` (strictly: same names and shapes), the module random
    /// streams if the checkpoint has any (strictly: same names; none saved leaves them as they
    /// are) and, if given, the optimizer state into `optim`. All or nothing: if anything does
    /// not fit, the model's previous weights and streams are put back. An optimizer without
    /// saved state is an error.
    pub fn restore<M>(&self, model: &M, optim: Option<&mut dyn Optimizer<E>>) -> Result<()>
    where
        M: Module<E> + ?Sized,
    {
        let before = model.state_dict();
        let rngs_before = model.rng_states();
        model.load_state_dict(&self.model, true)?;
        let result = self.restore_rest(model, optim);
        if result.is_err() {
            model.load_state_dict(&before, true)?;
            model.load_rng_states(&rngs_before)?;
        }
        result
    }

    /// The module streams and optimizer part of [`Checkpoint::restore`].
    fn restore_rest<M>(&self, model: &M, optim: Option<&mut dyn Optimizer<E>>) -> Result<()>
    where
        M: Module<E> + ?Sized,
    {
        if !self.module_rngs.is_empty() {
            model.load_rng_states(&self.module_rngs)?;
        }
        let Some(opt) = optim else { return Ok(()) };
        match &self.optim {
            Some(st) => opt.load_state_dict(st),
            None => Err(Error::Checkpoint(
                "the checkpoint holds no optimizer state".into(),
            )),
        }
    }

    /// Serializes to safetensors bytes (layout in the [module docs](self)).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut tensors = StateDict::new();
        for (k, t) in &self.model {
            tensors.insert(format!("model.{k}"), t.clone());
        }
        let mut meta = BTreeMap::new();
        meta.insert("checkpoint.format".into(), FORMAT.into());
        meta.insert("checkpoint.version".into(), VERSION.into());
        meta.insert("checkpoint.dtype".into(), E::DTYPE.to_string());
        meta.insert("step".into(), self.step.to_string());
        meta.insert("epoch".into(), self.epoch.to_string());
        if let Some(st) = &self.optim {
            meta.insert("optim".into(), "present".into());
            for (k, t) in &st.tensors {
                tensors.insert(format!("optim.{k}"), t.clone());
            }
            for (k, v) in &st.metadata {
                meta.insert(format!("optim.{k}"), v.clone());
            }
        }
        if let Some(s) = &self.scheduler {
            meta.insert("sched".into(), "present".into());
            for (k, v) in s {
                meta.insert(format!("sched.{k}"), v.clone());
            }
        }
        for (group, rngs) in [("rng", &self.rngs), ("module_rng", &self.module_rngs)] {
            for (name, r) in rngs {
                let hex: String = r.seed.iter().map(|b| format!("{b:02x}")).collect();
                meta.insert(format!("{group}.{name}.seed"), hex);
                meta.insert(format!("{group}.{name}.stream"), r.stream.to_string());
                meta.insert(format!("{group}.{name}.word_pos"), r.word_pos.to_string());
            }
        }
        for (k, v) in &self.extra {
            meta.insert(format!("extra.{k}"), v.clone());
        }
        serialize::to_bytes(&tensors, Some(meta))
    }

    /// Parses bytes written by [`Checkpoint::to_bytes`]. Corrupted input, a plain state-dict
    /// file, another dtype or unknown entries are errors (never panics).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (tensors, meta) = serialize::from_bytes::<E>(bytes)?;
        parse(tensors, meta)
    }

    /// Writes the checkpoint atomically (`<path>.tmp`, fsync, rename): an interrupted save
    /// leaves the previous checkpoint intact.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path.as_ref(), &self.to_bytes()?)
    }

    /// Reads a checkpoint file; errors name the file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes =
            std::fs::read(path).map_err(|e| Error::Io(format!("read {}: {e}", path.display())))?;
        Self::from_bytes(&bytes).map_err(|e| e.context(path.display().to_string()))
    }
}

fn bad(detail: impl Into<String>) -> Error {
    Error::Checkpoint(format!("training checkpoint: {}", detail.into()))
}

fn parse<E: Element>(
    tensors: StateDict<E>,
    mut meta: BTreeMap<String, String>,
) -> Result<Checkpoint<E>> {
    let mut take = |key: &str| {
        meta.remove(key)
            .ok_or_else(|| bad(format!("metadata entry '{key}' is missing")))
    };
    let format = take("checkpoint.format").map_err(|_| {
        bad(
            "no 'checkpoint.format' metadata: not a training checkpoint \
             (a plain state dict loads with retrograd_nn::load_safetensors)",
        )
    })?;
    if format != FORMAT {
        return Err(bad(format!("format '{format}', expected '{FORMAT}'")));
    }
    let version = take("checkpoint.version")?;
    if version != VERSION {
        return Err(bad(format!(
            "version '{version}' (this build reads {VERSION})"
        )));
    }
    take("checkpoint.dtype")?; // the tensors' dtype was already checked against E
    let int = |key: &str, v: String| {
        v.parse::<u64>()
            .map_err(|_| bad(format!("'{key}' = '{v}' is not a count")))
    };
    let step = int("step", take("step")?)?;
    let epoch = int("epoch", take("epoch")?)?;
    let has_optim = meta.remove("optim").is_some();
    let has_sched = meta.remove("sched").is_some();

    let mut ck = Checkpoint::new(StateDict::new());
    (ck.step, ck.epoch) = (step, epoch);
    let mut optim = OptimState::new();
    for (k, t) in tensors {
        if let Some(name) = k.strip_prefix("model.") {
            ck.model.insert(name.to_string(), t);
        } else if let Some(key) = k.strip_prefix("optim.").filter(|_| has_optim) {
            optim.tensors.insert(key.to_string(), t);
        } else {
            return Err(bad(format!("unexpected tensor '{k}'")));
        }
    }
    let mut sched = SchedState::new();
    // (is a module stream, name) -> [seed, stream, word_pos]
    let mut rng_parts: BTreeMap<(bool, String), [Option<String>; 3]> = BTreeMap::new();
    for (k, v) in meta {
        if let Some(key) = k.strip_prefix("optim.").filter(|_| has_optim) {
            optim.metadata.insert(key.to_string(), v);
        } else if let Some(key) = k.strip_prefix("sched.").filter(|_| has_sched) {
            sched.insert(key.to_string(), v);
        } else if let Some(key) = k.strip_prefix("extra.") {
            ck.extra.insert(key.to_string(), v);
        } else if let Some((module, rest)) = k
            .strip_prefix("rng.")
            .map(|r| (false, r))
            .or_else(|| k.strip_prefix("module_rng.").map(|r| (true, r)))
        {
            let (name, i) = [".seed", ".stream", ".word_pos"]
                .iter()
                .enumerate()
                .find_map(|(i, s)| Some((rest.strip_suffix(s)?, i)))
                .ok_or_else(|| bad(format!("unexpected metadata entry '{k}'")))?;
            rng_parts.entry((module, name.to_string())).or_default()[i] = Some(v);
        } else {
            return Err(bad(format!("unexpected metadata entry '{k}'")));
        }
    }
    for ((module, name), parts) in rng_parts {
        let state = rng_state(&name, parts)?;
        let map = if module {
            &mut ck.module_rngs
        } else {
            &mut ck.rngs
        };
        map.insert(name, state);
    }
    ck.optim = has_optim.then_some(optim);
    ck.scheduler = has_sched.then_some(sched);
    Ok(ck)
}

fn rng_state(name: &str, parts: [Option<String>; 3]) -> Result<RngState> {
    let [Some(seed), Some(stream), Some(word_pos)] = parts else {
        return Err(bad(format!(
            "random generator '{name}' needs seed, stream and word_pos"
        )));
    };
    let invalid = |what: &str, v: &str| bad(format!("rng '{name}': invalid {what} '{v}'"));
    if seed.len() != 64 || !seed.is_ascii() {
        return Err(invalid("seed", &seed));
    }
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&seed[2 * i..2 * i + 2], 16).map_err(|_| invalid("seed", &seed))?;
    }
    Ok(RngState {
        seed: key,
        stream: stream.parse().map_err(|_| invalid("stream", &stream))?,
        word_pos: word_pos
            .parse()
            .map_err(|_| invalid("word_pos", &word_pos))?,
    })
}
