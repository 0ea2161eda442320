//! Finite-difference gradient checking, like `torch.autograd.gradcheck`.

use rand::{rngs::StdRng, SeedableRng};

use crate::error::{Error, Result};
use crate::param::Parameter;
use crate::tensor::Tensor;

/// Tolerances and seed of a gradient check.
#[derive(Debug, Clone, Copy)]
pub struct GradcheckOptions {
    /// Finite-difference step.
    pub eps: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance (relative to the numeric gradient).
    pub rtol: f64,
    /// Seed of the random upstream weighting.
    pub seed: u64,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions {
            eps: 1e-6,
            atol: 1e-5,
            rtol: 1e-3,
            seed: 0,
        }
    }
}

/// Compares analytic gradients with central finite differences.
///
/// `f` maps the inputs to an output of any shape; the scalar checked is `Σ w ⊙ f(inputs)` with a
/// random weighting `w` (seeded), so every output element matters. Runs in `f64`. Fails with
/// [`Error::Gradcheck`] naming the first input and element whose analytic and numeric
/// derivatives differ by more than `atol + rtol * |numeric|`.
///
/// ```
/// use retrograd_core::{gradcheck, GradcheckOptions, Tensor};
/// let x = Tensor::<f64>::from_vec(vec![0.3, -1.2, 2.0], &[3])?;
/// gradcheck(|t| Ok(t[0].tanh().mul(&t[0])?), &[x], GradcheckOptions::default())?;
/// # Ok::<(), retrograd_core::Error>(())
/// ```
pub fn gradcheck<F>(f: F, inputs: &[Tensor<f64>], opts: GradcheckOptions) -> Result<()>
where
    F: Fn(&[Tensor<f64>]) -> Result<Tensor<f64>>,
{
    let leaves: Vec<Tensor<f64>> = inputs
        .iter()
        .map(|t| t.contiguous().detach().requires_grad())
        .collect();
    let out = f(&leaves)?;
    let w = Tensor::<f64>::randn(out.shape(), 0.0, 1.0, &mut StdRng::seed_from_u64(opts.seed))?;
    let grads = out.backward_with(&w)?;
    let weighted = |xs: &[Tensor<f64>]| -> Result<f64> {
        let _g = crate::tape::no_grad();
        let y = f(xs)?;
        Ok(y.to_vec().iter().zip(w.to_vec()).map(|(a, b)| a * b).sum())
    };
    for (i, x) in leaves.iter().enumerate() {
        let analytic = grads
            .get(x)
            .map_or_else(|| vec![0.0; x.numel()], |g| g.to_vec());
        let base = x.to_vec();
        for j in 0..base.len() {
            let mut plus = base.clone();
            plus[j] += opts.eps;
            let mut minus = base.clone();
            minus[j] -= opts.eps;
            let mut xs: Vec<Tensor<f64>> = leaves.iter().map(|t| t.detach()).collect();
            xs[i] = Tensor::from_vec(plus, x.shape())?;
            let fp = weighted(&xs)?;
            xs[i] = Tensor::from_vec(minus, x.shape())?;
            let fm = weighted(&xs)?;
            compare(
                &format!("input {i} (shape {:?})", x.shape()),
                j,
                analytic[j],
                (fp - fm) / (2.0 * opts.eps),
                &opts,
            )?;
        }
    }
    Ok(())
}

/// Like [`gradcheck`], differentiating with respect to parameters (perturbed in place and
/// restored), for checking whole modules. `f` is called with no arguments and reads the
/// parameters itself.
pub fn gradcheck_params<F>(f: F, params: &[Parameter<f64>], opts: GradcheckOptions) -> Result<()>
where
    F: Fn() -> Result<Tensor<f64>>,
{
    let out = f()?;
    let w = Tensor::<f64>::randn(out.shape(), 0.0, 1.0, &mut StdRng::seed_from_u64(opts.seed))?;
    let grads = out.backward_with(&w)?;
    drop(out);
    let weighted = || -> Result<f64> {
        let _g = crate::tape::no_grad();
        let y = f()?;
        Ok(y.to_vec().iter().zip(w.to_vec()).map(|(a, b)| a * b).sum())
    };
    for (i, p) in params.iter().enumerate() {
        let analytic = grads
            .get_id(p.id())
            .map_or_else(|| vec![0.0; p.numel()], |g| g.to_vec());
        for (j, &a) in analytic.iter().enumerate() {
            let orig = p.update(|d| d[j])?;
            p.update(|d| d[j] = orig + opts.eps)?;
            let fp = weighted();
            p.update(|d| d[j] = orig - opts.eps)?;
            let fm = weighted();
            p.update(|d| d[j] = orig)?;
            compare(
                &format!("parameter {i} (shape {:?})", p.shape()),
                j,
                a,
                (fp? - fm?) / (2.0 * opts.eps),
                &opts,
            )?;
        }
    }
    Ok(())
}

fn compare(
    what: &str,
    j: usize,
    analytic: f64,
    numeric: f64,
    opts: &GradcheckOptions,
) -> Result<()> {
    let ok = (analytic - numeric).abs() <= opts.atol + opts.rtol * numeric.abs();
    if ok {
        Ok(())
    } else {
        Err(Error::Gradcheck(format!(
            "{what}, element {j}: analytic {analytic:.8e} vs numeric {numeric:.8e}"
        )))
    }
}
