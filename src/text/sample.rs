//! Sampling text from a trained model: temperature, top-k, explicit (seedable) randomness.

use rand::Rng;

use crate::{Error, Result};

/// How to turn a model's logits into a token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleOptions {
    /// Logits are divided by this before the softmax: below 1 sharpens the distribution,
    /// above 1 flattens it, and 0 always picks the most likely token (greedy decoding).
    pub temperature: f64,
    /// If set, only the `k` most likely tokens can be drawn.
    pub top_k: Option<usize>,
}

impl Default for SampleOptions {
    /// Temperature 1, no top-k: draw from the model's own distribution.
    fn default() -> Self {
        SampleOptions {
            temperature: 1.0,
            top_k: None,
        }
    }
}

/// A model that reads one token at a time and predicts the next: what [`generate`] needs.
/// A recurrent model implements it by keeping its hidden state between calls.
pub trait TokenPredictor {
    /// Forgets everything read so far (zero state).
    fn reset(&mut self);
    /// Reads `token` and returns the logits (one per vocabulary entry) of the next token.
    fn next_logits(&mut self, token: usize) -> Result<Vec<f32>>;
}

/// Draws a token id from `logits` (unnormalised log-probabilities) under `opts`.
/// Errors on empty or non-finite logits, a negative or NaN temperature, or `top_k == Some(0)`.
///
/// ```
/// use rand::{rngs::StdRng, SeedableRng};
/// use retrograd::text::{sample_logits, SampleOptions};
/// let logits = [0.1f32, 3.0, 0.2, 2.9];
/// let mut rng = StdRng::seed_from_u64(0);
/// let greedy = SampleOptions { temperature: 0.0, top_k: None };
/// assert_eq!(sample_logits(&logits, &greedy, &mut rng)?, 1);
/// let top2 = SampleOptions { temperature: 1.0, top_k: Some(2) };
/// for _ in 0..20 {
///     assert!([1, 3].contains(&sample_logits(&logits, &top2, &mut rng)?));
/// }
/// # Ok::<(), retrograd::Error>(())
/// ```
pub fn sample_logits(logits: &[f32], opts: &SampleOptions, rng: &mut impl Rng) -> Result<usize> {
    const OP: &str = "sample_logits";
    if logits.is_empty() {
        return Err(Error::invalid(OP, "no logits"));
    }
    if let Some(i) = logits.iter().position(|l| !l.is_finite()) {
        return Err(Error::NonFinite(format!(
            "{OP}: logit {i} of {} is {}",
            logits.len(),
            logits[i]
        )));
    }
    let t = opts.temperature;
    if t.is_nan() || t < 0.0 {
        return Err(Error::invalid(
            OP,
            format!("temperature must be >= 0, got {t}"),
        ));
    }
    if opts.top_k == Some(0) {
        return Err(Error::invalid(OP, "top_k must be at least 1"));
    }
    // Candidate ids, most likely first (ties: lower id first).
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if let Some(k) = opts.top_k {
        order.truncate(k);
    }
    if t == 0.0 {
        return Ok(order[0]);
    }
    let max = f64::from(logits[order[0]]);
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| ((f64::from(logits[i]) - max) / t).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (&id, &w) in order.iter().zip(&weights) {
        if u < w {
            return Ok(id);
        }
        u -= w;
    }
    // Rounding left `u` just above the last weight: the last candidate with weight > 0.
    let last = weights.iter().rposition(|&w| w > 0.0).unwrap_or(0);
    Ok(order[last])
}

/// Generates `len` tokens: resets `model`, reads `prompt` (which must not be empty), then
/// repeatedly draws the next token with [`sample_logits`] and feeds it back. Returns the
/// generated tokens (without the prompt). The same seed gives the same text.
///
/// ```
/// use rand::{rngs::StdRng, SeedableRng};
/// use retrograd::text::{generate, SampleOptions, TokenPredictor};
/// /// Predicts "the token after the one read", cyclically over 3 tokens.
/// struct Cycle;
/// impl TokenPredictor for Cycle {
///     fn reset(&mut self) {}
///     fn next_logits(&mut self, token: usize) -> retrograd::Result<Vec<f32>> {
///         let mut l = vec![0.0; 3];
///         l[(token + 1) % 3] = 10.0;
///         Ok(l)
///     }
/// }
/// let greedy = SampleOptions { temperature: 0.0, top_k: None };
/// let out = generate(&mut Cycle, &[0], 5, &greedy, &mut StdRng::seed_from_u64(1))?;
/// assert_eq!(out, [1, 2, 0, 1, 2]);
/// # Ok::<(), retrograd::Error>(())
/// ```
pub fn generate(
    model: &mut impl TokenPredictor,
    prompt: &[usize],
    len: usize,
    opts: &SampleOptions,
    rng: &mut impl Rng,
) -> Result<Vec<usize>> {
    let Some((&last, head)) = prompt.split_last() else {
        return Err(Error::invalid(
            "generate",
            "the prompt is empty; give at least one token",
        ));
    };
    model.reset();
    for &tok in head {
        model.next_logits(tok)?;
    }
    let mut logits = model.next_logits(last)?;
    let mut out = Vec::with_capacity(len);
    for i in 0..len {
        let tok = sample_logits(&logits, opts, rng)?;
        out.push(tok);
        if i + 1 < len {
            logits = model.next_logits(tok)?;
        }
    }
    Ok(out)
}
