//! Variable-length batches: validating per-sequence lengths and the per-step masks that keep
//! padded steps out of the states (what PyTorch's packed sequences compute).
//!
//! At step `t`, sequence `n` is *active* when `t < lengths[n]`. An inactive row keeps its
//! previous state (`where(active, new, old)`) and outputs exactly 0. For the forward direction
//! that freezes the state after the last valid step; for the reverse direction, which runs
//! `t = L-1 .. 0`, it keeps the initial state until `t = lengths[n]-1`, so each sequence starts
//! at its true end.

use retrograd_core::{Element, Error, Result, Tensor};

/// Per-sequence lengths, checked against the batch.
pub(crate) struct Lengths {
    lens: Vec<usize>,
}

impl Lengths {
    /// Checks one length per sequence, each in `1..=seq_len` (any order).
    pub(crate) fn new(
        name: &'static str,
        lens: &[usize],
        batch: usize,
        seq_len: usize,
    ) -> Result<Self> {
        if lens.len() != batch {
            return Err(Error::shape(
                name,
                format!(
                    "lengths has {} entries, expected batch size {batch}",
                    lens.len()
                ),
            ));
        }
        if let Some((i, &bad)) = lens
            .iter()
            .enumerate()
            .find(|(_, &v)| v == 0 || v > seq_len)
        {
            return Err(Error::invalid(
                name,
                format!("lengths[{i}] = {bad} is outside 1..={seq_len} (the sequence length)"),
            ));
        }
        Ok(Lengths {
            lens: lens.to_vec(),
        })
    }

    /// Masks for rows of `width` features at every step.
    pub(crate) fn masks(&self, seq_len: usize, width: usize) -> StepMasks {
        let per_t = (0..seq_len)
            .map(|t| {
                if self.lens.iter().all(|&len| t < len) {
                    return None;
                }
                let active: Vec<bool> = self
                    .lens
                    .iter()
                    .flat_map(|&len| std::iter::repeat_n(t < len, width))
                    .collect();
                let padded = active.iter().map(|a| !a).collect();
                Some(StepMask { active, padded })
            })
            .collect();
        StepMasks { per_t }
    }

    /// Sets the padded steps of a 3-d input to 0, so that whatever the padding holds (even
    /// NaN) cannot reach a state or a gradient. `x` is (N, L, F) if `batch_first`, else
    /// (L, N, F).
    pub(crate) fn zero_padding<E: Element>(
        &self,
        x: &Tensor<E>,
        batch_first: bool,
    ) -> Result<Tensor<E>> {
        let (a, b, f) = x.dims3()?;
        let mask: Vec<bool> = (0..a * b)
            .flat_map(|row| {
                let (n, t) = if batch_first {
                    (row / b, row % b)
                } else {
                    (row % b, row / b)
                };
                std::iter::repeat_n(t >= self.lens[n], f)
            })
            .collect();
        x.masked_fill(&mask, 0.0)
    }
}

/// The masks of one step, row-major over [N, width].
pub(crate) struct StepMask {
    /// True where the sequence is still running.
    pub(crate) active: Vec<bool>,
    /// True where it has ended (the complement).
    pub(crate) padded: Vec<bool>,
}

/// [`StepMask`]s for every step; `None` at steps where every sequence is active.
pub(crate) struct StepMasks {
    per_t: Vec<Option<StepMask>>,
}

impl StepMasks {
    /// The mask of step `t`, or `None` when no row needs masking.
    pub(crate) fn at(&self, t: usize) -> Option<&StepMask> {
        self.per_t.get(t).and_then(Option::as_ref)
    }
}
