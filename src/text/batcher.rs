//! The truncated-BPTT batcher: `batch` parallel streams over one token stream, read `seq`
//! steps at a time, exactly as the classic stateful RNN-LM training loop does.

use crate::{Error, Result};

/// One window of a [`BpttBatcher`]: `batch x seq` input ids and the ids that follow them.
/// Both are stored row-major (`[batch, seq]`, row `i` = stream `i`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Input ids, `[batch, seq]` row-major.
    pub inputs: Vec<usize>,
    /// Target ids (each input's next token), `[batch, seq]` row-major.
    pub targets: Vec<usize>,
    /// Number of parallel streams.
    pub batch: usize,
    /// Steps per window.
    pub seq: usize,
}

impl Batch {
    /// The inputs of stream `i` (`seq` ids). Panics if `i >= batch`.
    pub fn input_row(&self, i: usize) -> &[usize] {
        &self.inputs[i * self.seq..(i + 1) * self.seq]
    }

    /// The targets of stream `i` (`seq` ids). Panics if `i >= batch`.
    pub fn target_row(&self, i: usize) -> &[usize] {
        &self.targets[i * self.seq..(i + 1) * self.seq]
    }

    /// The inputs reordered time-major (`[seq, batch]` row-major), the layout of a
    /// recurrent layer's `(L, N, H_in)` input.
    ///
    /// ```
    /// use retrograd::text::Batch;
    /// let b = Batch { inputs: vec![1, 2, 3, 4, 5, 6], targets: vec![0; 6], batch: 2, seq: 3 };
    /// assert_eq!(b.inputs_time_major(), [1, 4, 2, 5, 3, 6]);
    /// ```
    pub fn inputs_time_major(&self) -> Vec<usize> {
        time_major(&self.inputs, self.batch, self.seq)
    }

    /// The targets reordered time-major (`[seq, batch]` row-major).
    pub fn targets_time_major(&self) -> Vec<usize> {
        time_major(&self.targets, self.batch, self.seq)
    }

    /// Number of target tokens in the window (`batch * seq`).
    pub fn num_tokens(&self) -> usize {
        self.batch * self.seq
    }
}

fn time_major(rows: &[usize], batch: usize, seq: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(rows.len());
    for t in 0..seq {
        for i in 0..batch {
            out.push(rows[i * seq + t]);
        }
    }
    out
}

/// Splits a token stream into `batch` parallel streams and yields consecutive `(input,
/// target)` windows of `seq` steps, as the stateful truncated-BPTT training loop does:
///
/// * inputs are `tokens[..n-1]`, targets `tokens[1..]` (`data_size = n - 1`);
/// * stream `i` starts at `offset_i = i * jump` with `jump = data_size / batch`;
/// * a step at time index `t` reads position `(offset_i + t) % data_size` of every stream,
///   and the time index keeps counting across windows and epochs (wrapping by the modulo);
/// * an epoch is `data_size / (batch * seq)` windows.
///
/// Because stream `i`'s next window continues where its last one stopped, a model can carry
/// its (detached) hidden state across windows.
///
/// ```
/// use retrograd::text::BpttBatcher;
/// let mut b = BpttBatcher::new((0..11).collect(), 2, 3)?; // data_size 10, jump 5
/// let w = b.next_batch();
/// assert_eq!(w.inputs, [0, 1, 2, 5, 6, 7]);
/// assert_eq!(w.targets, [1, 2, 3, 6, 7, 8]);
/// let w = b.next_batch();
/// assert_eq!(w.inputs, [3, 4, 5, 8, 9, 0]); // stream 1 wraps around
/// # Ok::<(), retrograd::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct BpttBatcher {
    tokens: Vec<usize>,
    batch: usize,
    seq: usize,
    jump: usize,
    time_idx: usize,
}

impl BpttBatcher {
    /// A batcher over `tokens`. Errors when `batch` or `seq` is 0, or when the stream is
    /// shorter than one window (`tokens.len() - 1 < batch * seq`).
    pub fn new(tokens: Vec<usize>, batch: usize, seq: usize) -> Result<Self> {
        if batch == 0 || seq == 0 {
            return Err(Error::invalid(
                "BpttBatcher",
                format!("batch and seq must be at least 1, got batch {batch}, seq {seq}"),
            ));
        }
        let data_size = tokens.len().saturating_sub(1);
        // In u128 so that huge batch / seq values are an error, not an overflow.
        let needed = batch as u128 * seq as u128 + 1;
        if (tokens.len() as u128) < needed {
            return Err(Error::invalid(
                "BpttBatcher",
                format!(
                    "a stream of {} tokens is shorter than one batch window: batch {batch} x \
                     seq {seq} needs at least {} tokens",
                    tokens.len(),
                    needed
                ),
            ));
        }
        Ok(BpttBatcher {
            jump: data_size / batch,
            tokens,
            batch,
            seq,
            time_idx: 0,
        })
    }

    /// Number of parallel streams.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Steps per window.
    pub fn seq(&self) -> usize {
        self.seq
    }

    /// Number of (input, target) positions: the stream length minus one.
    pub fn data_size(&self) -> usize {
        self.tokens.len() - 1
    }

    /// Distance between the starts of consecutive streams (`data_size / batch`).
    pub fn jump(&self) -> usize {
        self.jump
    }

    /// Start position of every stream (`i * jump`).
    pub fn offsets(&self) -> Vec<usize> {
        (0..self.batch).map(|i| i * self.jump).collect()
    }

    /// Windows per epoch (`data_size / (batch * seq)`, at least 1).
    pub fn iters_per_epoch(&self) -> usize {
        self.data_size() / (self.batch * self.seq)
    }

    /// The running time index (steps read so far, never reset by epochs).
    pub fn time_idx(&self) -> usize {
        self.time_idx
    }

    /// Sets the time index, e.g. to resume training where a checkpoint stopped.
    pub fn set_time_idx(&mut self, time_idx: usize) {
        self.time_idx = time_idx;
    }

    /// Back to the start of every stream (time index 0).
    pub fn reset(&mut self) {
        self.time_idx = 0;
    }

    /// The next window; the time index advances by `seq`.
    pub fn next_batch(&mut self) -> Batch {
        let (b, s, n) = (self.batch, self.seq, self.data_size());
        let mut inputs = vec![0; b * s];
        let mut targets = vec![0; b * s];
        for t in 0..s {
            for i in 0..b {
                // i * jump < n, so this cannot overflow whatever set_time_idx was given.
                let pos = (i * self.jump + self.time_idx % n) % n;
                inputs[i * s + t] = self.tokens[pos];
                targets[i * s + t] = self.tokens[pos + 1];
            }
            // Only time_idx % n matters, so at usize::MAX it continues from its remainder.
            self.time_idx = self
                .time_idx
                .checked_add(1)
                .unwrap_or(self.time_idx % n + 1);
        }
        Batch {
            inputs,
            targets,
            batch: b,
            seq: s,
        }
    }

    /// The next [`iters_per_epoch`](Self::iters_per_epoch) windows.
    pub fn epoch(&mut self) -> impl Iterator<Item = Batch> + '_ {
        (0..self.iters_per_epoch()).map(move |_| self.next_batch())
    }
}
