//! Training checkpoints of the language-model examples: one safetensors file holding the
//! model weights, the optimizer state, the carried hidden state, the vocabulary and the
//! training position, so `--resume` continues where a run stopped and `--sample-only` needs
//! nothing else.
//!
//! Layout: tensors `model.<param>`, `optim.<key>`, `state.h` / `state.c`; metadata `format`,
//! `example`, `lm.*` (the [`LmConfig`]), `vocab` (the vocabulary's JSON), `optim.<key>`
//! (the optimizer's metadata) and `train.*` (step, time index, batch, seq, ...).

use std::collections::BTreeMap;
use std::path::Path;

use retrograd::nn::rnn::LstmState;
use retrograd::nn::serialize::{load_safetensors, save_safetensors};
use retrograd::nn::{Module, StateDict};
use retrograd::optim::{OptimState, Optimizer};
use retrograd::text::{LmConfig, LmState, RnnLm};
use retrograd::{Error, Result};

const FORMAT: &str = "retrograd-lm-checkpoint/1";

/// Everything a checkpoint holds, in memory.
pub struct Checkpoint {
    /// Which example wrote it (`char_rnn`, `word_lm`).
    pub example: String,
    /// Model sizes.
    pub config: LmConfig,
    /// The vocabulary as JSON (a `CharVocab` or `WordVocab`).
    pub vocab_json: String,
    /// Model weights by parameter name.
    pub model: StateDict<f32>,
    /// Optimizer state.
    pub optim: OptimState<f32>,
    /// The hidden state carried into the next window, if any.
    pub state: Option<LmState<f32>>,
    /// `train.*` entries (without the prefix): step, time_idx, batch, seq, optimizer, ...
    pub train: BTreeMap<String, String>,
}

impl Checkpoint {
    /// Gathers a checkpoint from a live training run.
    pub fn capture(
        example: &str,
        model: &RnnLm<f32>,
        opt: &dyn Optimizer<f32>,
        state: Option<&LmState<f32>>,
        vocab_json: String,
        train: BTreeMap<String, String>,
    ) -> Self {
        Checkpoint {
            example: example.to_string(),
            config: *model.config(),
            vocab_json,
            model: model.state_dict(),
            optim: opt.state_dict(),
            state: state.cloned(),
            train,
        }
    }

    /// Writes the checkpoint to `path` atomically (a crash leaves the previous file intact).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors: StateDict<f32> = BTreeMap::new();
        for (k, t) in &self.model {
            tensors.insert(format!("model.{k}"), t.clone());
        }
        for (k, t) in &self.optim.tensors {
            tensors.insert(format!("optim.{k}"), t.clone());
        }
        match &self.state {
            Some(LmState::Hidden(h)) => {
                tensors.insert("state.h".into(), h.clone());
            }
            Some(LmState::Lstm(s)) => {
                tensors.insert("state.h".into(), s.h.clone());
                tensors.insert("state.c".into(), s.c.clone());
            }
            None => {}
        }
        let mut meta = self.config.to_metadata();
        meta.insert("format".into(), FORMAT.into());
        meta.insert("example".into(), self.example.clone());
        meta.insert("vocab".into(), self.vocab_json.clone());
        for (k, v) in &self.optim.metadata {
            meta.insert(format!("optim.{k}"), v.clone());
        }
        for (k, v) in &self.train {
            meta.insert(format!("train.{k}"), v.clone());
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Io(format!("creating {}: {e}", dir.display())))?;
        }
        save_safetensors(&tensors, path, Some(meta))
            .map_err(|e| e.context(format!("saving checkpoint {}", path.display())))
    }

    /// Reads a checkpoint written by `example`. A file that is not a checkpoint, or one
    /// written by another example, is an error saying so.
    pub fn load(path: &Path, example: &str) -> Result<Self> {
        let ctx = |e: Error| e.context(format!("checkpoint {}", path.display()));
        // (the safetensors loader already names the file)
        let (tensors, meta) =
            load_safetensors::<f32>(path).map_err(|e| e.context("loading checkpoint"))?;
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(ctx(Error::Checkpoint(
                "not a retrograd language-model checkpoint (no \"format\" entry)".into(),
            )));
        }
        let written_by = meta.get("example").cloned().unwrap_or_default();
        if written_by != example {
            return Err(ctx(Error::Checkpoint(format!(
                "written by the {written_by} example, not by {example}"
            ))));
        }
        let config = LmConfig::from_metadata(&meta).map_err(ctx)?;
        let vocab_json = meta
            .get("vocab")
            .cloned()
            .ok_or_else(|| ctx(Error::Checkpoint("no vocabulary".into())))?;
        let (mut model, mut optim) = (BTreeMap::new(), OptimState::new());
        let (mut h, mut c) = (None, None);
        for (k, t) in tensors {
            if let Some(name) = k.strip_prefix("model.") {
                model.insert(name.to_string(), t);
            } else if let Some(name) = k.strip_prefix("optim.") {
                optim.tensors.insert(name.to_string(), t);
            } else if k == "state.h" {
                h = Some(t);
            } else if k == "state.c" {
                c = Some(t);
            }
        }
        let mut train = BTreeMap::new();
        for (k, v) in meta {
            if let Some(name) = k.strip_prefix("optim.") {
                optim.metadata.insert(name.to_string(), v);
            } else if let Some(name) = k.strip_prefix("train.") {
                train.insert(name.to_string(), v);
            }
        }
        let state = match (h, c) {
            (Some(h), Some(c)) => Some(LmState::Lstm(LstmState::new(h, c))),
            (Some(h), None) => Some(LmState::Hidden(h)),
            _ => None,
        };
        Ok(Checkpoint {
            example: written_by,
            config,
            vocab_json,
            model,
            optim,
            state,
            train,
        })
    }

    /// Loads the weights into `model` (every name and shape must match).
    pub fn restore_model(&self, model: &RnnLm<f32>) -> Result<()> {
        model.load_state_dict(&self.model, true)
    }

    /// A `train.*` entry parsed, or a checkpoint error naming it.
    pub fn train_value<T: std::str::FromStr>(&self, key: &str) -> Result<T> {
        let v = self
            .train
            .get(key)
            .ok_or_else(|| Error::Checkpoint(format!("missing train.{key}")))?;
        v.parse()
            .map_err(|_| Error::Checkpoint(format!("bad train.{key} = {v:?}")))
    }
}

/// Whether every model parameter is finite (a NaN guard before saving).
pub fn params_finite(model: &RnnLm<f32>) -> bool {
    model
        .parameters()
        .iter()
        .all(|p| p.to_vec().iter().all(|v| v.is_finite()))
}
