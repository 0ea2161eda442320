//! Perplexity: the exponential of the mean per-token negative log-likelihood.

use super::{Batch, BpttBatcher};
use crate::{Error, Result};

/// Perplexity of a mean per-token cross-entropy (natural log): `exp(mean_nll)`. A model that
/// spreads its probability uniformly over `V` tokens has perplexity `V`.
///
/// ```
/// use retrograd::text::perplexity;
/// assert!((perplexity((65f64).ln()) - 65.0).abs() < 1e-9);
/// ```
pub fn perplexity(mean_nll: f64) -> f64 {
    mean_nll.exp()
}

/// Accumulates per-window mean losses weighted by their token counts, for an exact mean
/// over an epoch (or over the last few steps for a progress display).
///
/// ```
/// use retrograd::text::LossMeter;
/// let mut m = LossMeter::new();
/// m.add(2.0, 10)?;
/// m.add(1.0, 30)?;
/// assert_eq!(m.mean(), Some(1.25));
/// assert!(m.add(f64::NAN, 1).is_err());
/// # Ok::<(), retrograd::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LossMeter {
    total: f64,
    tokens: usize,
}

impl LossMeter {
    /// An empty meter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a window whose mean per-token loss is `mean_loss` over `tokens` tokens. Errors
    /// (adding nothing) if the loss is NaN or infinite.
    pub fn add(&mut self, mean_loss: f64, tokens: usize) -> Result<()> {
        if !mean_loss.is_finite() {
            return Err(Error::NonFinite(format!(
                "loss is {mean_loss} (after {} good tokens)",
                self.tokens
            )));
        }
        self.total += mean_loss * tokens as f64;
        self.tokens += tokens;
        Ok(())
    }

    /// Tokens counted so far.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Mean per-token loss, `None` before anything was added.
    pub fn mean(&self) -> Option<f64> {
        (self.tokens > 0).then(|| self.total / self.tokens as f64)
    }

    /// Perplexity of the mean loss, `None` before anything was added.
    pub fn perplexity(&self) -> Option<f64> {
        self.mean().map(perplexity)
    }

    /// Empties the meter.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

impl BpttBatcher {
    /// Runs `loss_of` (the mean per-token loss of a window) over one epoch of windows from
    /// the start of the streams, and returns the accumulated meter. The batcher is reset
    /// first, so calling `loss_of` with a model whose state starts at zero evaluates the
    /// whole stream the same way every time. Errors from `loss_of`, and non-finite losses,
    /// are returned.
    ///
    /// ```
    /// use retrograd::text::BpttBatcher;
    /// let mut b = BpttBatcher::new((0..41).collect(), 2, 5)?;
    /// let m = b.evaluate(|w| Ok(w.inputs[0] as f64))?;
    /// assert_eq!(m.tokens(), 40);
    /// assert_eq!(m.mean(), Some((0.0 + 5.0 + 10.0 + 15.0) / 4.0));
    /// # Ok::<(), retrograd::Error>(())
    /// ```
    pub fn evaluate(
        &mut self,
        mut loss_of: impl FnMut(&Batch) -> Result<f64>,
    ) -> Result<LossMeter> {
        self.reset();
        let mut meter = LossMeter::new();
        for _ in 0..self.iters_per_epoch() {
            let w = self.next_batch();
            meter.add(loss_of(&w)?, w.num_tokens())?;
        }
        Ok(meter)
    }
}
