//! Loss functions: [`CrossEntropyLoss`] over `(N, C)` or `(N, T, V)` logits, and [`MseLoss`].
//!
//! Both are thin shape-handling wrappers over the fused core ops
//! ([`Tensor::cross_entropy_with`], [`Tensor::mse_with`]). They hold no parameters, so they are
//! plain structs with a `forward` method rather than [`Module`](crate::Module)s.

use retrograd_core::{CrossEntropyOptions, Element, Error, Reduction, Result, Tensor};

/// Cross-entropy between logits and class ids, like PyTorch's `nn.CrossEntropyLoss` (without
/// class weights or label smoothing).
///
/// * logits `(N, C)` with `N` targets, or `(N, T, V)` with `N*T` targets in row-major
///   `(n, t)` order: the time-distributed softmax-with-loss of a language model, where every
///   token of every sequence is one row.
/// * Targets equal to `ignore_index` (default −100; the reference notebooks use −1 for
///   padding) contribute nothing and are not counted by the mean.
/// * `Reduction::Mean` divides by the number of counted targets (NaN if there are none, with
///   a zero gradient, as PyTorch); `Sum` adds; `None` returns per-target losses shaped `(N,)`
///   or `(N, T)`.
///
/// ```
/// use retrograd_core::{Reduction, Tensor};
/// use retrograd_nn::CrossEntropyLoss;
///
/// let logits = Tensor::<f64>::zeros(&[2, 3, 4]); // (N, T, V)
/// let targets = [0, 1, -1, 3, -1, 2];            // N*T ids, -1 = padding
/// let ce = CrossEntropyLoss { ignore_index: -1, reduction: Reduction::Mean };
/// let loss = ce.forward(&logits, &targets)?;
/// assert!((loss.item()? - 4f64.ln()).abs() < 1e-12);
/// assert!(ce.forward(&logits, &targets[..5]).is_err()); // 5 targets for (2, 3, 4)
/// # Ok::<(), retrograd_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrossEntropyLoss {
    /// Targets equal to this are skipped (PyTorch default −100).
    pub ignore_index: i64,
    /// How per-target losses are combined.
    pub reduction: Reduction,
}

impl Default for CrossEntropyLoss {
    fn default() -> Self {
        CrossEntropyLoss {
            ignore_index: -100,
            reduction: Reduction::Mean,
        }
    }
}

impl CrossEntropyLoss {
    /// Mean reduction, `ignore_index` −100 (PyTorch's defaults).
    pub fn new() -> Self {
        Self::default()
    }

    /// The same loss with another ignored class id.
    pub fn with_ignore_index(self, ignore_index: i64) -> Self {
        CrossEntropyLoss {
            ignore_index,
            ..self
        }
    }

    /// The same loss with another reduction.
    pub fn with_reduction(self, reduction: Reduction) -> Self {
        CrossEntropyLoss { reduction, ..self }
    }

    /// The loss of `logits` (`(N, C)` or `(N, T, V)`) against `targets` (`N` or `N*T` ids).
    /// A wrong target count or logits rank is an error naming the shapes; a class id out of
    /// range (and not ignored) is an error naming it.
    pub fn forward<E: Element>(&self, logits: &Tensor<E>, targets: &[i64]) -> Result<Tensor<E>> {
        let opts = CrossEntropyOptions {
            ignore_index: self.ignore_index,
            reduction: self.reduction,
        };
        match *logits.shape() {
            [n, _] => {
                if targets.len() != n {
                    return Err(target_count_error(logits.shape(), n, "N", targets.len()));
                }
                logits.cross_entropy_with(targets, opts)
            }
            [n, t, v] => {
                if targets.len() != n * t {
                    return Err(target_count_error(
                        logits.shape(),
                        n * t,
                        "N*T",
                        targets.len(),
                    ));
                }
                let flat = logits.reshape(&[n * t, v])?;
                let loss = flat.cross_entropy_with(targets, opts)?;
                match self.reduction {
                    Reduction::None => loss.reshape(&[n, t]),
                    Reduction::Mean | Reduction::Sum => Ok(loss),
                }
            }
            ref s => Err(Error::shape(
                "cross_entropy_loss",
                format!("logits must be (N, C) or (N, T, V), got {s:?}"),
            )),
        }
    }
}

fn target_count_error(shape: &[usize], want: usize, what: &str, got: usize) -> Error {
    Error::shape(
        "cross_entropy_loss",
        format!("logits {shape:?} need {want} targets ({what}), got {got}"),
    )
}

/// Mean cross-entropy with PyTorch's defaults (`ignore_index` −100) over `(N, C)` or
/// `(N, T, V)` logits; shorthand for `CrossEntropyLoss::new().forward(logits, targets)`.
///
/// ```
/// use retrograd_core::Tensor;
/// let logits = Tensor::<f32>::zeros(&[3, 2]);
/// let loss = retrograd_nn::cross_entropy(&logits, &[0, 1, -100])?;
/// assert!((loss.item()? - 2f32.ln()).abs() < 1e-6);
/// # Ok::<(), retrograd_core::Error>(())
/// ```
pub fn cross_entropy<E: Element>(logits: &Tensor<E>, targets: &[i64]) -> Result<Tensor<E>> {
    CrossEntropyLoss::new().forward(logits, targets)
}

/// Squared error between an input and a target of the same shape, like PyTorch's
/// `nn.MSELoss` (mean by default).
///
/// ```
/// use retrograd_core::{Reduction, Tensor};
/// use retrograd_nn::MseLoss;
/// let y = Tensor::<f64>::from_vec(vec![1.0, 2.0], &[2])?;
/// let t = Tensor::<f64>::from_vec(vec![0.0, 0.0], &[2])?;
/// assert_eq!(MseLoss::default().forward(&y, &t)?.item()?, 2.5);
/// assert_eq!(MseLoss { reduction: Reduction::Sum }.forward(&y, &t)?.item()?, 5.0);
/// assert!(MseLoss::default().forward(&y, &Tensor::zeros(&[3])).is_err());
/// # Ok::<(), retrograd_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MseLoss {
    /// How per-element losses are combined (default mean).
    pub reduction: Reduction,
}

impl MseLoss {
    /// Mean squared error.
    pub fn new() -> Self {
        Self::default()
    }

    /// The loss; the shapes must be equal (an error naming both otherwise).
    pub fn forward<E: Element>(&self, input: &Tensor<E>, target: &Tensor<E>) -> Result<Tensor<E>> {
        input.mse_with(target, self.reduction)
    }
}
