//! [`RnnLm`]: the recurrent language model of the examples (the seeds' `SimpleRnnlm` /
//! `Rnnlm` with a choice of cell): Embedding → RNN/LSTM/GRU stack → Dropout → Linear.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use rand::Rng;
use retrograd_core::{no_grad, Element};
use retrograd_nn::rnn::{Gru, Lstm, LstmState, Rnn, RnnConfig};
use retrograd_nn::{join_name, Dropout, Embedding, Linear, Module, ModuleRng};

use super::{Batch, TokenPredictor};
use crate::{Error, Parameter, Result, Tensor};

/// The recurrent cell of an [`RnnLm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellType {
    /// Elman RNN with tanh.
    Rnn,
    /// Long short-term memory.
    Lstm,
    /// Gated recurrent unit.
    Gru,
}

impl fmt::Display for CellType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CellType::Rnn => "rnn",
            CellType::Lstm => "lstm",
            CellType::Gru => "gru",
        })
    }
}

impl FromStr for CellType {
    type Err = Error;

    /// Parses `rnn`, `lstm` or `gru` (any case).
    ///
    /// ```
    /// use retrograd::text::CellType;
    /// assert_eq!("LSTM".parse::<CellType>()?, CellType::Lstm);
    /// assert!("transformer".parse::<CellType>().is_err());
    /// # Ok::<(), retrograd::Error>(())
    /// ```
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "rnn" => Ok(CellType::Rnn),
            "lstm" => Ok(CellType::Lstm),
            "gru" => Ok(CellType::Gru),
            _ => Err(Error::invalid(
                "cell type",
                format!("unknown cell {s:?}; expected rnn, lstm or gru"),
            )),
        }
    }
}

/// Sizes of an [`RnnLm`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LmConfig {
    /// Number of tokens (input ids and output classes).
    pub vocab_size: usize,
    /// Width of the token embedding.
    pub embed_size: usize,
    /// Hidden size of every recurrent layer.
    pub hidden_size: usize,
    /// Number of stacked recurrent layers.
    pub num_layers: usize,
    /// The recurrent cell.
    pub cell: CellType,
    /// Dropout after the embedding, between recurrent layers and before the output layer
    /// (training only).
    pub dropout: f64,
}

impl LmConfig {
    /// A one-layer LSTM without dropout.
    pub fn new(vocab_size: usize, embed_size: usize, hidden_size: usize) -> Self {
        LmConfig {
            vocab_size,
            embed_size,
            hidden_size,
            num_layers: 1,
            cell: CellType::Lstm,
            dropout: 0.0,
        }
    }

    /// The config as string metadata (`lm.vocab_size`, `lm.cell`, ...), for a checkpoint.
    pub fn to_metadata(&self) -> BTreeMap<String, String> {
        [
            ("lm.vocab_size", self.vocab_size.to_string()),
            ("lm.embed_size", self.embed_size.to_string()),
            ("lm.hidden_size", self.hidden_size.to_string()),
            ("lm.num_layers", self.num_layers.to_string()),
            ("lm.cell", self.cell.to_string()),
            ("lm.dropout", self.dropout.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Reads a config written by [`LmConfig::to_metadata`]; a missing or malformed entry is a
    /// [`Error::Checkpoint`] naming it.
    ///
    /// ```
    /// use retrograd::text::{CellType, LmConfig};
    /// let cfg = LmConfig { cell: CellType::Gru, num_layers: 2, ..LmConfig::new(65, 16, 32) };
    /// assert_eq!(LmConfig::from_metadata(&cfg.to_metadata())?, cfg);
    /// # Ok::<(), retrograd::Error>(())
    /// ```
    pub fn from_metadata(meta: &BTreeMap<String, String>) -> Result<Self> {
        fn get<T: FromStr>(meta: &BTreeMap<String, String>, key: &str) -> Result<T> {
            let v = meta.get(key).ok_or_else(|| {
                Error::Checkpoint(format!(
                    "model config: missing {key:?} (not an RnnLm checkpoint?)"
                ))
            })?;
            v.parse()
                .map_err(|_| Error::Checkpoint(format!("model config: bad {key:?} = {v:?}")))
        }
        Ok(LmConfig {
            vocab_size: get(meta, "lm.vocab_size")?,
            embed_size: get(meta, "lm.embed_size")?,
            hidden_size: get(meta, "lm.hidden_size")?,
            num_layers: get(meta, "lm.num_layers")?,
            cell: get(meta, "lm.cell")?,
            dropout: get(meta, "lm.dropout")?,
        })
    }
}

enum Recurrent<E: Element> {
    Rnn(Rnn<E>),
    Lstm(Lstm<E>),
    Gru(Gru<E>),
}

/// The recurrent state an [`RnnLm`] carries between windows: `h` for RNN/GRU, `(h, c)` for
/// LSTM, each `(layers, batch, hidden)`.
#[derive(Clone, Debug)]
pub enum LmState<E: Element = f32> {
    /// RNN or GRU hidden state.
    Hidden(Tensor<E>),
    /// LSTM hidden and cell state.
    Lstm(LstmState<E>),
}

impl<E: Element> LmState<E> {
    /// The same values cut from the graph: what truncated BPTT carries to the next window.
    pub fn detach(&self) -> Self {
        match self {
            LmState::Hidden(h) => LmState::Hidden(h.detach()),
            LmState::Lstm(s) => LmState::Lstm(s.detach()),
        }
    }

    /// Whether every value is finite.
    pub fn is_finite(&self) -> bool {
        let fin = |t: &Tensor<E>| t.to_f64_vec().iter().all(|v| v.is_finite());
        match self {
            LmState::Hidden(h) => fin(h),
            LmState::Lstm(s) => fin(&s.h) && fin(&s.c),
        }
    }
}

/// A recurrent language model: `embedding` (Embedding), `rnn` (an RNN, LSTM or GRU stack with
/// PyTorch's parameter names), dropout, and `fc` (Linear to vocabulary logits). Parameter
/// names: `embedding.weight`, `rnn.weight_ih_l0`, ..., `fc.weight`, `fc.bias`.
///
/// ```
/// use rand::{rngs::StdRng, SeedableRng};
/// use retrograd::nn::Module;
/// use retrograd::text::{BpttBatcher, LmConfig, RnnLm};
/// let mut rng = StdRng::seed_from_u64(0);
/// let lm = RnnLm::<f32>::new(LmConfig::new(10, 8, 16), &mut rng)?;
/// let mut batcher = BpttBatcher::new((0..50).map(|i| i % 10).collect(), 2, 5)?;
/// let (loss, state) = lm.loss(&batcher.next_batch(), None)?;
/// assert!((loss.item()? - (10f32).ln()).abs() < 0.5); // about uniform before training
/// let grads = loss.backward()?;
/// assert!(lm.parameters().iter().all(|p| grads.get_id(p.id()).is_some()));
/// let (_, _) = lm.loss(&batcher.next_batch(), Some(&state.detach()))?;
/// # Ok::<(), retrograd::Error>(())
/// ```
pub struct RnnLm<E: Element = f32> {
    config: LmConfig,
    embedding: Embedding<E>,
    rnn: Recurrent<E>,
    dropout: Dropout<E>,
    fc: Linear<E>,
}

impl<E: Element> RnnLm<E> {
    /// A model with fresh weights drawn from `rng`. Errors name the bad size or dropout.
    pub fn new(config: LmConfig, rng: &mut impl Rng) -> Result<Self> {
        let embedding = Embedding::new(config.vocab_size, config.embed_size, rng)?;
        let rc = RnnConfig::new(config.embed_size, config.hidden_size)
            .num_layers(config.num_layers)
            .dropout(config.dropout);
        let rnn = match config.cell {
            CellType::Rnn => Recurrent::Rnn(Rnn::new(rc, rng)?),
            CellType::Lstm => Recurrent::Lstm(Lstm::new(rc, rng)?),
            CellType::Gru => Recurrent::Gru(Gru::new(rc, rng)?),
        };
        let dropout = Dropout::new(config.dropout, rng)?;
        let fc = Linear::new(config.hidden_size, config.vocab_size, true, rng)?;
        Ok(RnnLm {
            config,
            embedding,
            rnn,
            dropout,
            fc,
        })
    }

    /// The sizes it was built with.
    pub fn config(&self) -> &LmConfig {
        &self.config
    }

    /// Runs `ids` (time-major, `[seq, batch]` row-major) from `state` (zeros if `None`) and
    /// returns logits `[seq * batch, vocab]` (time-major rows) and the final state.
    pub fn forward(
        &self,
        ids: &[usize],
        seq: usize,
        batch: usize,
        state: Option<&LmState<E>>,
    ) -> Result<(Tensor<E>, LmState<E>)> {
        let x = self.embedding.forward(ids, &[seq, batch])?;
        let x = self.dropout.forward(&x)?;
        let bad_state = |s: &LmState<E>| {
            Error::invalid(
                "RnnLm",
                format!("a {s:?} state does not fit a {} model", self.config.cell),
            )
        };
        let (out, next) = match (&self.rnn, state) {
            (Recurrent::Lstm(m), None) => {
                let (o, s) = m.forward(&x, None)?;
                (o, LmState::Lstm(s))
            }
            (Recurrent::Lstm(m), Some(LmState::Lstm(s0))) => {
                let (o, s) = m.forward(&x, Some(s0))?;
                (o, LmState::Lstm(s))
            }
            (Recurrent::Rnn(m), s0) => {
                let h0 = match s0 {
                    None => None,
                    Some(LmState::Hidden(h)) => Some(h),
                    Some(s) => return Err(bad_state(s)),
                };
                let (o, h) = m.forward(&x, h0)?;
                (o, LmState::Hidden(h))
            }
            (Recurrent::Gru(m), s0) => {
                let h0 = match s0 {
                    None => None,
                    Some(LmState::Hidden(h)) => Some(h),
                    Some(s) => return Err(bad_state(s)),
                };
                let (o, h) = m.forward(&x, h0)?;
                (o, LmState::Hidden(h))
            }
            (Recurrent::Lstm(_), Some(s)) => return Err(bad_state(s)),
        };
        let out = self.dropout.forward(&out)?;
        let out = out.reshape(&[seq * batch, self.config.hidden_size])?;
        Ok((self.fc.forward(&out)?, next))
    }

    /// Mean cross-entropy of a window's next-token predictions, and the final state.
    pub fn loss(
        &self,
        batch: &Batch,
        state: Option<&LmState<E>>,
    ) -> Result<(Tensor<E>, LmState<E>)> {
        // Batch's fields are public: check they agree before reading rows out of them.
        let window = batch.batch.checked_mul(batch.seq);
        if window != Some(batch.inputs.len()) || window != Some(batch.targets.len()) {
            return Err(Error::invalid(
                "RnnLm",
                format!(
                    "a window of {} inputs and {} targets does not fill batch {} x seq {}",
                    batch.inputs.len(),
                    batch.targets.len(),
                    batch.batch,
                    batch.seq
                ),
            ));
        }
        let (logits, next) =
            self.forward(&batch.inputs_time_major(), batch.seq, batch.batch, state)?;
        let targets: Vec<i64> = batch
            .targets_time_major()
            .into_iter()
            .map(|t| t as i64)
            .collect();
        Ok((logits.cross_entropy(&targets)?, next))
    }

    /// A [`TokenPredictor`] reading one token at a time (for [`generate`](super::generate)).
    /// Put the model in evaluation mode first (`model.eval()`) to switch dropout off.
    pub fn predictor(&self) -> LmPredictor<'_, E> {
        LmPredictor {
            model: self,
            state: None,
        }
    }
}

impl<E: Element> Module<E> for RnnLm<E> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Parameter<E>)) {
        self.embedding
            .visit_params(&join_name(prefix, "embedding"), f);
        let rnn_prefix = join_name(prefix, "rnn");
        match &self.rnn {
            Recurrent::Rnn(m) => m.visit_params(&rnn_prefix, f),
            Recurrent::Lstm(m) => m.visit_params(&rnn_prefix, f),
            Recurrent::Gru(m) => m.visit_params(&rnn_prefix, f),
        }
        self.fc.visit_params(&join_name(prefix, "fc"), f);
    }

    /// `rnn.rng` (inter-layer dropout) and `dropout.rng`.
    fn visit_rngs(&self, prefix: &str, f: &mut dyn FnMut(&str, &Mutex<ModuleRng>)) {
        let rnn_prefix = join_name(prefix, "rnn");
        match &self.rnn {
            Recurrent::Rnn(m) => m.visit_rngs(&rnn_prefix, f),
            Recurrent::Lstm(m) => m.visit_rngs(&rnn_prefix, f),
            Recurrent::Gru(m) => m.visit_rngs(&rnn_prefix, f),
        }
        self.dropout.visit_rngs(&join_name(prefix, "dropout"), f);
    }

    fn set_training(&mut self, training: bool) {
        self.dropout.set_training(training);
        match &mut self.rnn {
            Recurrent::Rnn(m) => m.set_training(training),
            Recurrent::Lstm(m) => m.set_training(training),
            Recurrent::Gru(m) => m.set_training(training),
        }
    }
}

/// An [`RnnLm`] read one token at a time with its state kept between calls; no graph is
/// recorded. Made by [`RnnLm::predictor`].
pub struct LmPredictor<'a, E: Element = f32> {
    model: &'a RnnLm<E>,
    state: Option<LmState<E>>,
}

impl<E: Element> TokenPredictor for LmPredictor<'_, E> {
    fn reset(&mut self) {
        self.state = None;
    }

    fn next_logits(&mut self, token: usize) -> Result<Vec<f32>> {
        let _guard = no_grad();
        let (logits, state) = self.model.forward(&[token], 1, 1, self.state.as_ref())?;
        self.state = Some(state);
        Ok(logits.to_f64_vec().into_iter().map(|v| v as f32).collect())
    }
}
