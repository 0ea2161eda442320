//! One truncated-BPTT training step and a whole-stream evaluation for [`RnnLm`].

use retrograd_core::{no_grad, Element};
use retrograd_nn::Module;
use retrograd_optim::{clip_grad_norm, NormType, Optimizer};

use super::{Batch, BpttBatcher, LmState, LossMeter, RnnLm};
use crate::{Error, Result};

/// One training step on a window: forward from `state`, mean cross-entropy, backward, optional
/// gradient clipping to total L2 norm `clip`, optimizer step. Returns the loss and the final
/// state, already detached for the next window.
///
/// A NaN or infinite loss (or gradient norm) is an [`Error::NonFinite`] returned *before* the
/// parameters are touched, so the model still holds the last good weights.
///
/// ```
/// use rand::{rngs::StdRng, SeedableRng};
/// use retrograd::nn::Module;
/// use retrograd::optim::{Adam, AdamConfig};
/// use retrograd::text::{train_step, BpttBatcher, LmConfig, RnnLm};
/// let mut rng = StdRng::seed_from_u64(0);
/// let lm = RnnLm::<f32>::new(LmConfig::new(4, 8, 16), &mut rng)?;
/// let mut opt = Adam::new(lm.named_parameters(), AdamConfig::default().lr(0.05))?;
/// let mut batcher = BpttBatcher::new((0..200).map(|i| i % 4).collect(), 4, 8)?;
/// let (mut state, mut losses) = (None, vec![]);
/// for _ in 0..30 {
///     let (loss, next) = train_step(&lm, &mut opt, &batcher.next_batch(), state.as_ref(), Some(5.0))?;
///     losses.push(loss);
///     state = Some(next);
/// }
/// assert!(losses[29] < 0.2 * losses[0]); // 0 1 2 3 0 1 ... is easy to predict
/// # Ok::<(), retrograd::Error>(())
/// ```
pub fn train_step<E: Element>(
    model: &RnnLm<E>,
    opt: &mut dyn Optimizer<E>,
    batch: &Batch,
    state: Option<&LmState<E>>,
    clip: Option<f64>,
) -> Result<(f64, LmState<E>)> {
    let (loss, next) = model.loss(batch, state)?;
    let value = loss.item()?.as_f64();
    if !value.is_finite() {
        return Err(Error::NonFinite(format!(
            "training loss is {value}; the parameters were left unchanged"
        )));
    }
    let mut grads = loss.backward()?;
    if let Some(max_norm) = clip {
        let params = model.parameters();
        clip_grad_norm(&mut grads, params.iter(), max_norm, NormType::L2, true)?;
    }
    opt.step(&grads)?;
    Ok((value, next.detach()))
}

/// Mean loss of `model` over one epoch of `batcher` (from the start of its streams, state
/// carried across windows), with dropout off and no graph recorded. The model is put back in
/// training mode afterwards.
///
/// ```
/// use rand::{rngs::StdRng, SeedableRng};
/// use retrograd::text::{evaluate_lm, BpttBatcher, LmConfig, RnnLm};
/// let mut lm = RnnLm::<f32>::new(LmConfig::new(5, 4, 8), &mut StdRng::seed_from_u64(0))?;
/// let mut val = BpttBatcher::new((0..101).map(|i| i % 5).collect(), 2, 10)?;
/// let m = evaluate_lm(&mut lm, &mut val)?;
/// assert_eq!(m.tokens(), 100);
/// assert!(m.perplexity().unwrap() > 2.0); // untrained
/// # Ok::<(), retrograd::Error>(())
/// ```
pub fn evaluate_lm<E: Element>(
    model: &mut RnnLm<E>,
    batcher: &mut BpttBatcher,
) -> Result<LossMeter> {
    model.eval();
    let result = {
        let _guard = no_grad();
        let mut state: Option<LmState<E>> = None;
        batcher.evaluate(|w| {
            let (loss, next) = model.loss(w, state.as_ref())?;
            state = Some(next);
            Ok(loss.item()?.as_f64())
        })
    };
    model.train();
    result
}
