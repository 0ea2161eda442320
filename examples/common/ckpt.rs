//! Checkpoints of the language-model examples, on top of the library's training checkpoint
//! ([`retrograd::checkpoint::Checkpoint`]: one safetensors file, written atomically).
//!
//! Besides the model weights, optimizer state, scheduler state and step/epoch counters that
//! the library stores, an example checkpoint carries, as `extra` metadata, which example wrote
//! it, the model config (`lm.*`), the vocabulary's JSON (`vocab`) and the batcher position
//! (`train.time_idx`, `train.batch`, `train.seq`); and, next to the weights under
//! `bptt_state.h` / `bptt_state.c`, the hidden state carried into the next window, so
//! `--resume` continues bit for bit and `--sample-only` needs nothing else.

use std::collections::BTreeMap;
use std::path::Path;

use retrograd::checkpoint::Checkpoint as TrainCheckpoint;
use retrograd::nn::rnn::LstmState;
use retrograd::nn::Module;
use retrograd::optim::SchedState;
use retrograd::text::{LmConfig, LmState, RnnLm};
use retrograd::{Error, Result};

use super::lm::{LmSession, LmTrainConfig};

const STATE_H: &str = "bptt_state.h";
const STATE_C: &str = "bptt_state.c";

/// An example's checkpoint, in memory.
pub struct Checkpoint {
    /// Which example wrote it (`char_rnn`, `word_lm`).
    pub example: String,
    /// Model sizes.
    pub config: LmConfig,
    /// The vocabulary as JSON (a `CharVocab` or `WordVocab`).
    pub vocab_json: String,
    /// The hidden state carried into the next window, if any.
    pub state: Option<LmState<f32>>,
    /// `train.*` entries (without the prefix): time_idx, batch, seq.
    pub train: BTreeMap<String, String>,
    /// Weights (without the hidden state), optimizer, scheduler, step and epoch.
    pub inner: TrainCheckpoint<f32>,
}

impl Checkpoint {
    /// The state of a training session after `epoch` completed epochs.
    pub fn capture(example: &str, s: &LmSession, vocab_json: String, epoch: u64) -> Self {
        let mut train = BTreeMap::new();
        train.insert("time_idx".to_string(), s.batcher.time_idx().to_string());
        train.insert("batch".to_string(), s.batcher.batch().to_string());
        train.insert("seq".to_string(), s.batcher.seq().to_string());
        Checkpoint {
            example: example.to_string(),
            config: *s.model.config(),
            vocab_json,
            state: s.state.clone(),
            train,
            inner: TrainCheckpoint::capture(&s.model, s.opt.as_ref(), s.step as u64, epoch),
        }
    }

    /// Adds a learning-rate scheduler's state.
    pub fn with_scheduler(mut self, state: SchedState) -> Self {
        self.inner.scheduler = Some(state);
        self
    }

    /// Writes the checkpoint to `path` atomically (a crash leaves the previous file intact),
    /// creating the directory if needed.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut ck = self.inner.clone();
        match &self.state {
            Some(LmState::Hidden(h)) => {
                ck.model.insert(STATE_H.into(), h.clone());
            }
            Some(LmState::Lstm(s)) => {
                ck.model.insert(STATE_H.into(), s.h.clone());
                ck.model.insert(STATE_C.into(), s.c.clone());
            }
            None => {}
        }
        for (k, v) in self.config.to_metadata() {
            ck.extra.insert(k, v);
        }
        ck.extra.insert("example".into(), self.example.clone());
        ck.extra.insert("vocab".into(), self.vocab_json.clone());
        for (k, v) in &self.train {
            ck.extra.insert(format!("train.{k}"), v.clone());
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Io(format!("creating {}: {e}", dir.display())))?;
        }
        ck.save(path)
            .map_err(|e| e.context(format!("saving checkpoint {}", path.display())))
    }

    /// Reads a checkpoint written by `example`. A file that is not a checkpoint, or one
    /// written by another example, is an error saying so.
    pub fn load(path: &Path, example: &str) -> Result<Self> {
        // (the library's loader already names the file)
        let mut inner =
            TrainCheckpoint::<f32>::load(path).map_err(|e| e.context("loading checkpoint"))?;
        let ctx = |e: Error| e.context(format!("checkpoint {}", path.display()));
        let written_by = inner.extra.get("example").cloned().unwrap_or_default();
        if written_by != example {
            let who = if written_by.is_empty() {
                "not by a retrograd example".to_string()
            } else {
                format!("by the {written_by} example")
            };
            return Err(ctx(Error::Checkpoint(format!(
                "written {who}, not by {example}"
            ))));
        }
        let config = LmConfig::from_metadata(&inner.extra).map_err(ctx)?;
        let vocab_json = inner
            .extra
            .get("vocab")
            .cloned()
            .ok_or_else(|| ctx(Error::Checkpoint("no vocabulary".into())))?;
        let train = inner
            .extra
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("train.")?.to_string(), v.clone())))
            .collect();
        let h = inner.model.remove(STATE_H);
        let c = inner.model.remove(STATE_C);
        let state = match (h, c) {
            (Some(h), Some(c)) => Some(LmState::Lstm(LstmState::new(h, c))),
            (Some(h), None) => Some(LmState::Hidden(h)),
            _ => None,
        };
        Ok(Checkpoint {
            example: written_by,
            config,
            vocab_json,
            state,
            train,
            inner,
        })
    }

    /// [`Checkpoint::load`] of `path` if one is given (a `--resume` flag).
    pub fn load_if_given(path: Option<&Path>, example: &str) -> Result<Option<Self>> {
        path.map(|p| Self::load(p, example)).transpose()
    }

    /// Loads the weights into `model` (every name and shape must match).
    pub fn restore_model(&self, model: &RnnLm<f32>) -> Result<()> {
        self.inner.restore(model, None)
    }

    /// Puts a session back where the checkpoint was taken: weights and optimizer state (all
    /// or nothing), step, batcher position and carried state. Returns the epoch count.
    pub fn resume(&self, s: &mut LmSession) -> Result<u64> {
        self.inner.restore(&s.model, Some(s.opt.as_mut()))?;
        s.step = self.inner.step as usize;
        s.batcher.set_time_idx(self.train_value("time_idx")?);
        s.state = self.state.clone();
        Ok(self.inner.epoch)
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

    /// The training settings to resume with: model sizes, dropout and window shape from the
    /// checkpoint; `optimizer`, `lr`, `clip` and `seed` as given.
    pub fn train_config(
        &self,
        optimizer: String,
        lr: f64,
        clip: Option<f64>,
        seed: u64,
    ) -> Result<LmTrainConfig> {
        Ok(LmTrainConfig {
            cell: self.config.cell,
            layers: self.config.num_layers,
            hidden: self.config.hidden_size,
            embed: self.config.embed_size,
            seq: self.train_value("seq")?,
            batch: self.train_value("batch")?,
            dropout: self.config.dropout,
            lr,
            optimizer,
            clip,
            seed,
        })
    }

    /// The optimizer kind stored (`SGD`, `Adam`, ...), if any.
    pub fn optimizer_kind(&self) -> Option<&str> {
        self.inner.optim.as_ref().and_then(|o| o.kind())
    }
}

/// Whether every model parameter is finite (a NaN guard before saving).
pub fn params_finite(model: &RnnLm<f32>) -> bool {
    model
        .parameters()
        .iter()
        .all(|p| p.to_vec().iter().all(|v| v.is_finite()))
}
