//! Text utilities for language-model training: vocabularies, the truncated-BPTT batcher,
//! train/validation splits, perplexity evaluation and sampling.
//!
//! The pieces follow the classic training loop for recurrent language models (the one in
//! "Deep Learning from Scratch 2"): a token stream is cut into `batch` parallel streams that
//! start `jump = (len - 1) / batch` tokens apart, and every step reads the next `seq` tokens of
//! every stream (wrapping around the end), so a stateful model can carry its hidden state from
//! one window to the next.
//!
//! ```
//! use retrograd::text::{BpttBatcher, CharVocab};
//! let text = "hello world, hello rust";
//! let vocab = CharVocab::build(text)?;
//! let ids = vocab.encode(text)?;
//! let mut batcher = BpttBatcher::new(ids, 2, 4)?;
//! let b = batcher.next_batch();
//! assert_eq!(vocab.decode(b.input_row(0))?, "hell");
//! assert_eq!(vocab.decode(b.target_row(0))?, "ello");
//! # Ok::<(), retrograd::Error>(())
//! ```

mod batcher;
mod eval;
mod model;
mod sample;
mod split;
mod tokenize;
mod train;
mod vocab;

pub use batcher::{Batch, BpttBatcher};
pub use eval::{perplexity, LossMeter};
pub use model::{CellType, LmConfig, LmPredictor, LmState, RnnLm};
pub use sample::{generate, sample_logits, SampleOptions, TokenPredictor};
pub use split::train_val_split;
pub use tokenize::{detokenize_words, tokenize_words, EOS, UNK};
pub use train::{evaluate_lm, train_step};
pub use vocab::{CharVocab, WordVocab};
