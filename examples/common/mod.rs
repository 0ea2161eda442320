//! Code shared by the examples (`char_rnn`, `word_lm`, `char_toys`) and by
//! `tests/examples_core.rs`, which runs each example's core routine at a tiny size.

// Each example uses only part of this module.
#![allow(dead_code)]

pub mod ckpt;
pub mod lm;
pub mod plot;
pub mod toys;

use std::path::{Path, PathBuf};

use retrograd::nn::Module;
use retrograd::optim::{
    Adagrad, AdagradConfig, Adam, AdamConfig, AdamW, AdamWConfig, Optimizer, RmsProp,
    RmsPropConfig, Sgd, SgdConfig,
};
use retrograd::{Error, Result};

/// Error type of the example binaries: anything printable.
pub type AnyResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The optimizers the examples accept for `--optimizer`.
pub const OPTIMIZERS: &[&str] = &["sgd", "adam", "adamw", "rmsprop", "adagrad"];

/// Builds the optimizer called `name` (see [`OPTIMIZERS`]) over `model`'s parameters.
pub fn build_optimizer(
    name: &str,
    model: &dyn Module<f32>,
    lr: f64,
) -> Result<Box<dyn Optimizer<f32>>> {
    let params = model.named_parameters();
    Ok(match name.to_ascii_lowercase().as_str() {
        "sgd" => Box::new(Sgd::new(params, SgdConfig::new(lr))?),
        "adam" => Box::new(Adam::new(params, AdamConfig::default().lr(lr))?),
        "adamw" => Box::new(AdamW::new(params, AdamWConfig::default().lr(lr))?),
        "rmsprop" => Box::new(RmsProp::new(params, RmsPropConfig::default().lr(lr))?),
        "adagrad" => Box::new(Adagrad::new(params, AdagradConfig::default().lr(lr))?),
        other => {
            return Err(Error::invalid(
                "--optimizer",
                format!("unknown optimizer {other:?}; expected one of {OPTIMIZERS:?}"),
            ))
        }
    })
}

/// The bundled corpus, `data/tinyshakespeare.txt` under the crate root.
pub fn default_corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tinyshakespeare.txt")
}

/// Creates the output directory (`out`, or `runs/<example>` under the crate root) and returns
/// it with the checkpoint path inside it.
pub fn prepare_out_dir(out: Option<&Path>, example: &str) -> AnyResult<(PathBuf, PathBuf)> {
    let out_dir = out.map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("runs")
                .join(example)
        },
        Path::to_path_buf,
    );
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let ckpt_path = out_dir.join("checkpoint.safetensors");
    Ok((out_dir, ckpt_path))
}

/// Reads a text corpus; a missing, unreadable or empty (whitespace-only) file is an error
/// naming the path.
pub fn read_corpus(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Io(format!("cannot read corpus {}: {e}", path.display())))?;
    if text.trim().is_empty() {
        return Err(Error::invalid(
            "corpus",
            format!(
                "{} is empty; give a text file with some content",
                path.display()
            ),
        ));
    }
    Ok(text)
}

/// `1234567` as `1.23M`, `12345` as `12.3k`.
pub fn human(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// Whether an error (possibly wrapped in context) reports a NaN or infinite value.
pub fn is_non_finite(e: &Error) -> bool {
    match e {
        Error::NonFinite(_) => true,
        Error::Context { source, .. } => is_non_finite(source),
        _ => false,
    }
}
