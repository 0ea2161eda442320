//! Losses: fused cross-entropy (log-softmax + negative log-likelihood) and mean squared error.

use std::sync::Arc;

use super::{constant, grads1, out};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::tape::{InputGrads, Op};
use crate::tensor::Tensor;

/// How per-element losses are combined (like PyTorch's `reduction=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// Mean over the counted elements (the default).
    #[default]
    Mean,
    /// Sum.
    Sum,
    /// No reduction: one loss per element.
    None,
}

/// Options of [`Tensor::cross_entropy_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrossEntropyOptions {
    /// Targets equal to this are skipped and not counted in the mean (PyTorch default -100).
    pub ignore_index: i64,
    /// How the per-row losses are combined.
    pub reduction: Reduction,
}

impl Default for CrossEntropyOptions {
    fn default() -> Self {
        CrossEntropyOptions {
            ignore_index: -100,
            reduction: Reduction::Mean,
        }
    }
}

/// `loss_i = -log softmax(x_i)[t_i]` for logits `x` of shape `[N, C]` and class targets `t`,
/// rows with `t_i = ignore_index` contributing 0 and not counted; combined by `reduction`
/// (mean divides by the number of counted rows: NaN when there are none, as PyTorch).
/// `dL/dx_i = w_i (softmax(x_i) - onehot(t_i))`, `w_i` the upstream weight of row `i`.
///
/// The forward pass keeps no probabilities, only each row's shift and sum: the backward pass
/// computes the softmax again from the logits (the same operations, so the same values),
/// which for a large vocabulary saves writing and reading back an `[N, C]` buffer (32 MB of
/// memory traffic for B2's 400 x 10000 logits).
pub struct CrossEntropy<E: Element> {
    targets: Arc<Vec<Option<usize>>>,
    /// Each row's softmax shift `m` (its maximum) and sum `z` of `exp(x - m)`.
    shift_sum: Vec<(E, E)>,
    reduction: Reduction,
    count: usize,
}

impl<E: Element> CrossEntropy<E> {
    /// Applies the op.
    pub fn forward(
        logits: &Tensor<E>,
        targets: &[i64],
        opts: CrossEntropyOptions,
    ) -> Result<Tensor<E>> {
        let (n, c) = logits.dims2().map_err(|_| {
            Error::shape(
                "cross_entropy",
                format!("logits must be [N, C], got {:?}", logits.shape()),
            )
        })?;
        if targets.len() != n {
            return Err(Error::shape(
                "cross_entropy",
                format!("logits {:?} vs {} targets", logits.shape(), targets.len()),
            ));
        }
        let mut tg = Vec::with_capacity(n);
        for &t in targets {
            if t == opts.ignore_index {
                tg.push(None);
            } else if t < 0 || t as usize >= c {
                return Err(Error::Index {
                    op: "cross_entropy",
                    index: t,
                    size: c,
                });
            } else {
                tg.push(Some(t as usize));
            }
        }
        // per row: the shift m and the sum z of exp(x - m), kept for backward; the row's loss
        // is log Σ exp(x) = m + ln z less the target logit
        let x = logits.contiguous_data();
        let mut shift_sum = vec![(E::zero(), E::zero()); n];
        super::for_row_blocks(&x, &mut [], &mut shift_sum, c, |_, xb, _, sb| {
            // one row's exponentials at a time, in a buffer that stays in cache
            let mut row = vec![E::zero(); c];
            for (xr, s) in xb.chunks_exact(c).zip(sb) {
                *s = super::softmax::exp_shifted(xr, &mut row);
            }
        });
        let per_row: Vec<E> = tg
            .iter()
            .zip(&shift_sum)
            .enumerate()
            .map(|(i, (t, &(m, z)))| t.map_or(E::zero(), |t| m + z.ln() - x[i * c + t]))
            .collect();
        let count = tg.iter().filter(|t| t.is_some()).count();
        let (data, shape): (Vec<E>, Vec<usize>) = match opts.reduction {
            Reduction::None => (per_row, vec![n]),
            Reduction::Sum => (vec![per_row.iter().copied().sum()], vec![]),
            Reduction::Mean => {
                let s: E = per_row.iter().copied().sum();
                (vec![s / E::of_f64(count as f64)], vec![])
            }
        };
        let (d, l) = out(data, &shape);
        Ok(Tensor::from_op(d, l, &[logits], || CrossEntropy {
            targets: Arc::new(tg),
            shift_sum,
            reduction: opts.reduction,
            count,
        }))
    }
}

impl<E: Element> Op<E> for CrossEntropy<E> {
    fn name(&self) -> &'static str {
        "cross_entropy"
    }
    fn backward(&self, x: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let gd = g.contiguous_data();
        let logits = x[0].contiguous_data();
        let c = x[0].shape()[1];
        let mut dx = crate::storage::overwritable(logits.len());
        // per-row weight w_i = dL/dloss_i (0 for ignored rows)
        let mut w: Vec<E> = self
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| match (t, self.reduction) {
                (None, _) => E::zero(),
                (_, Reduction::None) => gd[i],
                (_, Reduction::Sum) => gd[0],
                (_, Reduction::Mean) => gd[0] / E::of_f64(self.count as f64),
            })
            .collect();
        let (targets, shift_sum) = (&self.targets, &self.shift_sum);
        super::for_row_blocks(&logits, &mut dx, &mut w, c, |r0, xb, db, wb| {
            for (i, ((xr, dr), &w)) in xb
                .chunks_exact(c)
                .zip(db.chunks_exact_mut(c))
                .zip(wb.iter())
                .enumerate()
            {
                let Some(t) = targets[r0 + i] else {
                    dr.fill(E::zero()); // ignored rows get exactly zero
                    continue;
                };
                // the row's softmax again, as the forward pass had it: exp(x - m) / z
                let (m, z) = shift_sum[r0 + i];
                super::softmax::softmax_scaled(dr, xr, m, z, w);
                dr[t] -= w;
            }
        });
        Ok(grads1(constant(dx, x[0].shape())))
    }
}

impl<E: Element> Tensor<E> {
    /// Mean cross-entropy of `[N, C]` logits against class ids (ignore_index -100), see
    /// [`CrossEntropy`].
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// let logits = Tensor::<f64>::zeros(&[2, 4]);
    /// let loss = logits.cross_entropy(&[1, 3])?;
    /// assert!((loss.item()? - 4f64.ln()).abs() < 1e-12);
    /// assert!(logits.cross_entropy(&[1, 4]).is_err()); // class 4 of 4
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn cross_entropy(&self, targets: &[i64]) -> Result<Tensor<E>> {
        CrossEntropy::forward(self, targets, CrossEntropyOptions::default())
    }

    /// Cross-entropy with explicit options, see [`CrossEntropy`].
    pub fn cross_entropy_with(
        &self,
        targets: &[i64],
        opts: CrossEntropyOptions,
    ) -> Result<Tensor<E>> {
        CrossEntropy::forward(self, targets, opts)
    }

    /// Mean squared error `mean((self - target)²)` (a composite of sub, pow and mean).
    pub fn mse(&self, target: &Tensor<E>) -> Result<Tensor<E>> {
        self.mse_with(target, Reduction::Mean)
    }

    /// Squared error with a reduction.
    pub fn mse_with(&self, target: &Tensor<E>, reduction: Reduction) -> Result<Tensor<E>> {
        if self.shape() != target.shape() {
            return Err(Error::shape(
                "mse",
                format!("input {:?} vs target {:?}", self.shape(), target.shape()),
            ));
        }
        let sq = self.sub(target)?.powf(2.0);
        Ok(match reduction {
            Reduction::Mean => sq.mean_all(),
            Reduction::Sum => sq.sum_all(),
            Reduction::None => sq,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::Tensor;

    #[test]
    fn row_blocks_on_two_threads_give_the_bits_of_one() {
        // 301 rows of 300 classes: past the split size, with halves of 151 and 150 rows; every
        // tenth target ignored, so the backward's row offsets into the targets matter
        let (n, c) = (301, 300);
        let x: Vec<f32> = (0..n * c).map(|i| (i as f32 * 0.37).sin() * 4.0).collect();
        let t: Vec<i64> = (0..n as i64)
            .map(|i| {
                if i % 10 == 3 {
                    -100
                } else {
                    (i * 37) % c as i64
                }
            })
            .collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let logits = Tensor::from_vec(x.clone(), &[n, c])
                    .unwrap()
                    .requires_grad();
                let loss = logits.cross_entropy(&t).unwrap();
                let g = loss.backward().unwrap();
                (loss.item().unwrap(), g.get(&logits).unwrap().to_vec())
            })
        };
        let (one, two) = (run(1), run(2));
        assert_eq!(one.0.to_bits(), two.0.to_bits());
        assert_eq!(one.1, two.1);
        // and the gradient is softmax minus one-hot over the counted rows
        let counted = t.iter().filter(|&&v| v >= 0).count() as f32;
        let row = 5;
        let xr = &x[row * c..(row + 1) * c];
        let m = xr.iter().copied().fold(f32::MIN, f32::max);
        let z: f32 = xr.iter().map(|v| (v - m).exp()).sum();
        let j = t[row] as usize;
        let want = ((xr[j] - m).exp() / z - 1.0) / counted;
        assert!((two.1[row * c + j] - want).abs() < 1e-7);
        assert!(two.1[3 * c..4 * c].iter().all(|&v| v == 0.0)); // an ignored row
    }
}
