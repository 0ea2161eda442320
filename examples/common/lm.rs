//! The training core of `char_rnn` and `word_lm`: a model, its optimizer and a stateful
//! truncated-BPTT batcher, stepped window by window.

use rand::rngs::StdRng;
use rand::SeedableRng;
use retrograd::optim::Optimizer;
use retrograd::text::{
    evaluate_lm, tokenize_words, train_step, BpttBatcher, CellType, CharVocab, LmConfig, LmState,
    LossMeter, RnnLm, WordVocab,
};
use retrograd::Result;

use super::{build_optimizer, human, AnyResult};
use retrograd::nn::Module;

/// Model and optimisation settings of a language-model run.
#[derive(Debug, Clone, PartialEq)]
pub struct LmTrainConfig {
    /// Recurrent cell.
    pub cell: CellType,
    /// Stacked recurrent layers.
    pub layers: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Embedding size.
    pub embed: usize,
    /// Truncated-BPTT window length.
    pub seq: usize,
    /// Parallel streams.
    pub batch: usize,
    /// Dropout probability.
    pub dropout: f64,
    /// Learning rate.
    pub lr: f64,
    /// Optimizer name (see `OPTIMIZERS`).
    pub optimizer: String,
    /// Gradient clipping (total L2 norm), if any.
    pub clip: Option<f64>,
    /// Seed of the weight initialisation and dropout.
    pub seed: u64,
}

/// A training run in progress.
pub struct LmSession {
    /// The model.
    pub model: RnnLm<f32>,
    /// Its optimizer.
    pub opt: Box<dyn Optimizer<f32>>,
    /// Windows of the training stream.
    pub batcher: BpttBatcher,
    /// Hidden state carried to the next window (detached).
    pub state: Option<LmState<f32>>,
    /// Steps taken so far.
    pub step: usize,
    /// Gradient clipping.
    pub clip: Option<f64>,
}

impl LmSession {
    /// A fresh model over `vocab_size` tokens trained on `train_ids`.
    pub fn new(cfg: &LmTrainConfig, vocab_size: usize, train_ids: Vec<usize>) -> Result<Self> {
        let batcher = BpttBatcher::new(train_ids, cfg.batch, cfg.seq)?;
        Self::with_batcher(cfg, vocab_size, batcher)
    }

    /// A fresh model over `vocab_size` tokens trained on `batcher`'s windows (whose batch and
    /// seq win over `cfg`'s).
    pub fn with_batcher(
        cfg: &LmTrainConfig,
        vocab_size: usize,
        batcher: BpttBatcher,
    ) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let lm_cfg = LmConfig {
            vocab_size,
            embed_size: cfg.embed,
            hidden_size: cfg.hidden,
            num_layers: cfg.layers,
            cell: cfg.cell,
            dropout: cfg.dropout,
        };
        let model = RnnLm::new(lm_cfg, &mut rng)?;
        let opt = build_optimizer(&cfg.optimizer, &model, cfg.lr)?;
        Ok(LmSession {
            model,
            opt,
            batcher,
            state: None,
            step: 0,
            clip: cfg.clip,
        })
    }

    /// A fresh model trained on `train_ids`, and the validation windows over `val_ids` (at
    /// most `cfg.batch` streams, fewer if the held-out part is short). A part too short for
    /// its windows is an error naming `corpus` (e.g. `"a.txt (1.2k words)"`).
    pub fn with_validation(
        cfg: &LmTrainConfig,
        vocab_size: usize,
        train_ids: &[usize],
        val_ids: &[usize],
        corpus: &str,
    ) -> AnyResult<(Self, BpttBatcher)> {
        let too_short = |part: &str, e: retrograd::Error| {
            format!(
                "corpus {corpus} is too short for the {part} windows: {e}; use a longer text or \
                 a smaller --batch / --seq"
            )
        };
        let train_windows = BpttBatcher::new(train_ids.to_vec(), cfg.batch, cfg.seq)
            .map_err(|e| too_short("training", e))?;
        let session = Self::with_batcher(cfg, vocab_size, train_windows)?;
        let val_batch = cfg
            .batch
            .min((val_ids.len().saturating_sub(1) / cfg.seq).max(1));
        let val = BpttBatcher::new(val_ids.to_vec(), val_batch, cfg.seq)
            .map_err(|e| too_short("validation", e))?;
        Ok((session, val))
    }

    /// The model and optimizer as the examples print them before training, e.g.
    /// `lstm x1 hidden 8 embed 4 (1.1k parameters), adam lr 0.002` (`cfg` built the session).
    pub fn describe(&self, cfg: &LmTrainConfig) -> String {
        format!(
            "{} x{} hidden {} embed {} ({} parameters), {} lr {}",
            cfg.cell,
            cfg.layers,
            cfg.hidden,
            cfg.embed,
            human(self.model.num_parameters() as f64),
            cfg.optimizer,
            self.opt.lr()
        )
    }

    /// One window: train on it and carry the state on. Returns the window's mean loss. On
    /// error (e.g. a NaN loss) the model keeps its previous weights.
    pub fn step(&mut self) -> Result<f64> {
        let batch = self.batcher.next_batch();
        let (loss, next) = train_step(
            &self.model,
            self.opt.as_mut(),
            &batch,
            self.state.as_ref(),
            self.clip,
        )
        .map_err(|e| e.context(format!("step {}", self.step + 1)))?;
        self.state = Some(next);
        self.step += 1;
        Ok(loss)
    }

    /// `steps` windows; `on_step(step, loss)` after each. Returns the losses.
    pub fn train(&mut self, steps: usize, mut on_step: impl FnMut(usize, f64)) -> Result<Vec<f64>> {
        let mut losses = Vec::with_capacity(steps);
        for _ in 0..steps {
            let loss = self.step()?;
            losses.push(loss);
            on_step(self.step, loss);
        }
        Ok(losses)
    }

    /// Mean loss over a whole held-out stream.
    pub fn evaluate(&mut self, batcher: &mut BpttBatcher) -> Result<LossMeter> {
        evaluate_lm(&mut self.model, batcher)
    }
}

/// What a core run reports.
#[derive(Debug, Clone)]
pub struct CoreRun {
    /// Training loss of every step.
    pub losses: Vec<f64>,
    /// Vocabulary size (the uniform baseline loss is its log).
    pub vocab_size: usize,
}

/// `char_rnn`'s core: a character model trained `steps` windows on `text`.
pub fn char_core(text: &str, cfg: &LmTrainConfig, steps: usize) -> Result<CoreRun> {
    let vocab = CharVocab::build(text)?;
    let ids = vocab.encode(text)?;
    let mut s = LmSession::new(cfg, vocab.len(), ids)?;
    let losses = s.train(steps, |_, _| {})?;
    Ok(CoreRun {
        losses,
        vocab_size: vocab.len(),
    })
}

/// `word_lm`'s core: a word model (vocabulary of at most `max_vocab` words) trained `steps`
/// windows on `text`.
pub fn word_core(
    text: &str,
    cfg: &LmTrainConfig,
    max_vocab: usize,
    steps: usize,
) -> Result<CoreRun> {
    let tokens = tokenize_words(text);
    let vocab = WordVocab::build_limited(&tokens, max_vocab)?;
    let ids = vocab.encode(&tokens)?;
    let mut s = LmSession::new(cfg, vocab.len(), ids)?;
    let losses = s.train(steps, |_, _| {})?;
    Ok(CoreRun {
        losses,
        vocab_size: vocab.len(),
    })
}
