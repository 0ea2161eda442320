//! Gradient clipping by total norm and by value, with PyTorch's semantics
//! (`torch.nn.utils.clip_grad_norm_` / `clip_grad_value_`).

use std::collections::HashSet;

use retrograd_core::{Element, Error, GradStore, Parameter, Result, Tensor};

use crate::split::map_split;

/// Which vector norm [`clip_grad_norm`] measures.
///
/// ```
/// use retrograd_optim::NormType;
/// assert_eq!(NormType::L2.to_string(), "2");
/// assert_eq!(NormType::P(1.5).to_string(), "1.5");
/// assert_eq!(NormType::Inf.to_string(), "inf");
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NormType {
    /// The Euclidean norm `sqrt(sum x^2)` (PyTorch's default, `norm_type=2.0`).
    L2,
    /// The largest absolute value (`norm_type=inf`).
    Inf,
    /// `(sum |x|^p)^(1/p)` for a finite `p > 0`; `P(2.0)` equals `L2`.
    P(f64),
}

impl std::fmt::Display for NormType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NormType::L2 => write!(f, "2"),
            NormType::Inf => write!(f, "inf"),
            NormType::P(p) => write!(f, "{p}"),
        }
    }
}

/// The rows of a gradient that may be nonzero ([`GradStore::nonzero_rows`]) and its row width.
type RowsOf<'a> = (&'a [usize], usize);

impl NormType {
    /// The norm of `values`, accumulated in `f64`.
    fn norm<I: Iterator<Item = f64>>(self, values: I) -> f64 {
        match self {
            NormType::L2 => values.map(|x| x * x).sum::<f64>().sqrt(),
            NormType::Inf => values.map(f64::abs).fold(0.0, nan_max),
            NormType::P(p) => values.map(|x| x.abs().powf(p)).sum::<f64>().powf(1.0 / p),
        }
    }

    /// The norm of one gradient's elements `v`; with `rows = Some((rows, cols))`, `v` is rows
    /// of `cols` elements of which only `rows` (sorted) may be nonzero, and the others are
    /// skipped. The L2 norm runs in eight f64 lanes over chunks, which vectorizes (clipping
    /// was 9% of a B3 step with one dependent add chain, and still 9% with lanes indexed by
    /// `i & 7`, which does not vectorize). Skipping rows keeps every element in lane
    /// `index % 8`, in index order, when `cols` is a multiple of 8, and a skipped zero adds
    /// nothing, so the result has the bits of the whole gradient's norm (other widths go over
    /// every element).
    fn norm_of_rows<E: Element>(self, v: &[E], rows: Option<RowsOf>) -> f64 {
        let rows = rows.filter(|&(_, cols)| cols > 0 && cols.is_multiple_of(8));
        let pieces: Box<dyn Iterator<Item = &[E]>> = match rows {
            Some((rows, cols)) => Box::new(rows.iter().map(move |&r| &v[r * cols..(r + 1) * cols])),
            None => Box::new(std::iter::once(v)),
        };
        match self {
            NormType::L2 => {
                const LANES: usize = 8;
                let mut acc = [0.0f64; LANES];
                let mut tail = 0.0;
                for piece in pieces {
                    let mut chunks = piece.chunks_exact(LANES);
                    for c in &mut chunks {
                        for (a, x) in acc.iter_mut().zip(c) {
                            let x = x.as_f64();
                            *a += x * x;
                        }
                    }
                    tail += chunks
                        .remainder()
                        .iter()
                        .map(|x| x.as_f64() * x.as_f64())
                        .sum::<f64>();
                }
                (acc.iter().sum::<f64>() + tail).sqrt()
            }
            _ => self.norm(pieces.flat_map(|p| p.iter().map(|x| x.as_f64()))),
        }
    }

    fn validate(self, op: &'static str) -> Result<NormType> {
        match self {
            NormType::P(p) if p == f64::INFINITY => Ok(NormType::Inf),
            NormType::P(p) if !(p.is_finite() && p > 0.0) => Err(Error::invalid(
                op,
                format!("norm_type P(p) needs a finite p > 0 (or NormType::Inf), got {p}"),
            )),
            n => Ok(n),
        }
    }
}

/// `max` that propagates NaN (like `torch.max`), so a NaN gradient gives a NaN inf-norm.
fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// The gradients of `params` present in `grads`, each parameter once, in order.
fn present<'a, E: Element>(
    grads: &GradStore<E>,
    params: impl IntoIterator<Item = &'a Parameter<E>>,
) -> Vec<(usize, Parameter<E>)> {
    let mut seen = HashSet::new();
    params
        .into_iter()
        .enumerate()
        .filter(|(_, p)| seen.insert(p.id()) && grads.get_id(p.id()).is_some())
        .map(|(i, p)| (i, p.clone()))
        .collect()
}

/// Rescales the gradients of `params` in `grads` so that their total norm is at most
/// `max_norm`, and returns the total norm measured **before** clipping (as an `f64`).
///
/// PyTorch's semantics: the total norm is the norm of the per-parameter norms (which for
/// `L2`/`P`/`Inf` equals the norm of all gradient entries together); every gradient is
/// multiplied by `min(1, max_norm / (total + 1e-6))`, the coefficient computed in `E`. Under
/// the threshold the store is left exactly as it was. Parameters without a gradient are
/// skipped; a parameter listed twice counts once. A gradient known to be zero outside some
/// rows ([`GradStore::nonzero_rows`], an embedding table's) is read and scaled on those rows
/// only, with the same result.
///
/// With `error_if_nonfinite`, a NaN or infinite total norm is an [`Error::NonFinite`] and
/// nothing is changed; without it the gradients are scaled anyway (and become NaN, as in
/// PyTorch). Fails with [`Error::InvalidArgument`] on a negative or NaN `max_norm` or a bad
/// `NormType::P`.
///
/// ```
/// use retrograd_core::{Parameter, Tensor};
/// use retrograd_optim::{clip_grad_norm, NormType};
/// let a = Parameter::new(Tensor::<f64>::zeros(&[2]));
/// let b = Parameter::new(Tensor::<f64>::zeros(&[1]));
/// // loss = 3 a0 + 0 a1 + 4 b0, so the gradients are [3, 0] and [4]: total L2 norm 5
/// let coef = Tensor::<f64>::from_vec(vec![3.0, 0.0], &[2])?;
/// let loss = a.value().mul(&coef)?.sum_all().add(&b.value().mul_scalar(4.0).sum_all())?;
/// let mut grads = loss.backward()?;
/// let total = clip_grad_norm(&mut grads, [&a, &b], 1.0, NormType::L2, false)?;
/// assert_eq!(total, 5.0);
/// let s = 1.0 / (5.0 + 1e-6);
/// assert_eq!(grads.get_id(a.id()).unwrap().to_vec(), vec![3.0 * s, 0.0]);
/// assert_eq!(grads.get_id(b.id()).unwrap().to_vec(), vec![4.0 * s]);
/// # Ok::<(), retrograd_core::Error>(())
/// ```
pub fn clip_grad_norm<'a, E: Element>(
    grads: &mut GradStore<E>,
    params: impl IntoIterator<Item = &'a Parameter<E>>,
    max_norm: f64,
    norm_type: NormType,
    error_if_nonfinite: bool,
) -> Result<f64> {
    const OP: &str = "clip_grad_norm";
    if max_norm.is_nan() || max_norm < 0.0 {
        return Err(Error::invalid(
            OP,
            format!("max_norm must be >= 0, got {max_norm}"),
        ));
    }
    let norm_type = norm_type.validate(OP)?;
    let present = present(grads, params);
    // each parameter's norm (on both threads when there are many elements), combined in
    // parameter order; a gradient known to be zero outside some rows (an embedding's) is read
    // on those rows
    let items: Vec<(&Tensor<E>, Option<RowsOf>)> = present
        .iter()
        .map(|(_, p)| {
            let g = grads
                .get_id(p.id())
                .expect("present() only keeps parameters whose gradient is in the store");
            (g, grads.nonzero_rows(p.id()).map(|r| (r, g.shape()[1])))
        })
        .collect();
    let work = |(g, rows): &(&Tensor<E>, Option<RowsOf>)| {
        rows.map_or(g.numel(), |(r, cols)| r.len() * cols)
    };
    let norms = map_split(items, work, |(g, rows)| {
        Ok(norm_type.norm_of_rows(&g.contiguous_data(), rows))
    })?;
    let total = norm_type.norm(norms.iter().copied());
    if error_if_nonfinite && !total.is_finite() {
        let culprit = present
            .iter()
            .zip(&norms)
            .find(|(_, n)| !n.is_finite())
            .map(|((i, p), n)| format!("; parameter #{i} (shape {:?}) has norm {n}", p.shape()))
            .unwrap_or_default();
        return Err(Error::NonFinite(format!(
            "{OP}: the total {norm_type}-norm of the gradients is {total}{culprit} \
             (pass error_if_nonfinite = false to clip anyway)"
        )));
    }
    // PyTorch: clamp(max_norm / (total + 1e-6), max = 1), computed in the gradients' dtype.
    let coef = E::of_f64(max_norm) / (E::of_f64(total) + E::of_f64(1e-6));
    if coef >= E::one() {
        return Ok(total);
    }
    // in their own buffers where nobody else holds them, on the known nonzero rows only
    let ids: Vec<_> = present.iter().map(|(_, p)| p.id()).collect();
    grads.scale(&ids, coef);
    Ok(total)
}

/// Clamps every gradient entry of `params` in `grads` to `[-clip_value, clip_value]`
/// (like `torch.nn.utils.clip_grad_value_`; NaN entries stay NaN). Parameters without a
/// gradient are skipped. Fails on a negative or NaN `clip_value`.
///
/// ```
/// use retrograd_core::{Parameter, Tensor};
/// use retrograd_optim::clip_grad_value;
/// let w = Parameter::new(Tensor::<f32>::zeros(&[3]));
/// let coef = Tensor::<f32>::from_vec(vec![-3.0, 0.5, 2.0], &[3])?;
/// let mut grads = w.value().mul(&coef)?.sum_all().backward()?;
/// clip_grad_value(&mut grads, [&w], 1.0)?;
/// assert_eq!(grads.get_id(w.id()).unwrap().to_vec(), vec![-1.0, 0.5, 1.0]);
/// # Ok::<(), retrograd_core::Error>(())
/// ```
pub fn clip_grad_value<'a, E: Element>(
    grads: &mut GradStore<E>,
    params: impl IntoIterator<Item = &'a Parameter<E>>,
    clip_value: f64,
) -> Result<()> {
    if clip_value.is_nan() || clip_value < 0.0 {
        return Err(Error::invalid(
            "clip_grad_value",
            format!("clip_value must be >= 0, got {clip_value}"),
        ));
    }
    let hi = E::of_f64(clip_value);
    let lo = -hi;
    for (_, p) in present(grads, params) {
        let g = grads
            .get_id(p.id())
            .expect("present() only keeps parameters whose gradient is in the store");
        let clamped: Vec<E> = g
            .contiguous_data()
            .iter()
            .map(|&x| {
                if x > hi {
                    hi
                } else if x < lo {
                    lo
                } else {
                    x
                }
            })
            .collect();
        let t = Tensor::from_vec(clamped, g.shape())?;
        grads.insert(p.id(), t);
    }
    Ok(())
}
