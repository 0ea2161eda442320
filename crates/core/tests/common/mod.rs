//! Shared helpers for the core integration tests: approximate comparison, small seeded input
//! tensors, and the gradcheck table runner (one row per op: name, closure, inputs).
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};

use rand::{rngs::StdRng, Rng, SeedableRng};
use retrograd_core::{gradcheck, GradcheckOptions, Result, Tensor};

/// `[y1, y2, d/dx for x in inputs]` for the loss `sum(y2²)` of a two-step chain, as f64
/// (an input that got no gradient gives an empty vector): what the two-step bit tests compare.
pub fn two_step_values_and_grads<E: retrograd_core::Element>(
    y1: &Tensor<E>,
    y2: &Tensor<E>,
    inputs: &[&Tensor<E>],
) -> Vec<Vec<f64>> {
    let g = y2.mul(y2).unwrap().sum_all().backward().unwrap();
    let grad = |t: &Tensor<E>| g.get(t).map(|g| g.to_f64_vec()).unwrap_or_default();
    [y1.to_f64_vec(), y2.to_f64_vec()]
        .into_iter()
        .chain(inputs.iter().map(|t| grad(t)))
        .collect()
}

/// A rayon pool of `threads` threads, to run a check under a given thread count.
pub fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// Asserts `actual` and `expected` have the same length and agree elementwise within `tol`
/// (absolute, plus `tol` relative to the expected magnitude).
#[track_caller]
pub fn assert_close(actual: &[f64], expected: &[f64], tol: f64) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "length mismatch: got {actual:?}, expected {expected:?}"
    );
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let ok = (a - e).abs() <= tol * (1.0 + e.abs());
        assert!(
            ok,
            "element {i}: got {a}, expected {e} (tol {tol})\n  got      {actual:?}\n  expected {expected:?}"
        );
    }
}

/// `assert_close` on a tensor's values (any element type), also checking its shape.
#[track_caller]
pub fn assert_tensor<E: retrograd_core::Element>(
    t: &Tensor<E>,
    shape: &[usize],
    expected: &[f64],
    tol: f64,
) {
    assert_eq!(t.shape(), shape, "shape mismatch");
    assert_close(&t.to_f64_vec(), expected, tol);
}

/// An f64 tensor from literal values.
pub fn t64(data: &[f64], shape: &[usize]) -> Tensor<f64> {
    Tensor::from_slice(data, shape).expect("test literal must fill its shape")
}

/// An f64 leaf that tracks gradients.
pub fn leaf(data: &[f64], shape: &[usize]) -> Tensor<f64> {
    t64(data, shape).requires_grad()
}

/// The gradient of `x` in `grads` as f64 values (panics if there is none).
#[track_caller]
pub fn grad_of(grads: &retrograd_core::GradStore<f64>, x: &Tensor<f64>) -> Vec<f64> {
    grads
        .get(x)
        .expect("the leaf should have received a gradient")
        .to_vec()
}

/// Seeded values in `[lo, hi)`.
pub fn uniform(shape: &[usize], lo: f64, hi: f64, seed: u64) -> Tensor<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    Tensor::rand_uniform(shape, lo, hi, &mut rng).expect("valid bounds")
}

/// Seeded values in `[-1, 1)`.
pub fn rnd(shape: &[usize], seed: u64) -> Tensor<f64> {
    uniform(shape, -1.0, 1.0, seed)
}

/// Seeded positive values in `[0.5, 2)` (for log, sqrt, division, fractional powers).
pub fn pos(shape: &[usize], seed: u64) -> Tensor<f64> {
    uniform(shape, 0.5, 2.0, seed)
}

/// Seeded values with `0.2 <= |x| < 1` (for ops with a kink at 0, like relu).
pub fn away_from_zero(shape: &[usize], seed: u64) -> Tensor<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| {
            let m = rng.random_range(0.2..1.0);
            if rng.random::<bool>() {
                m
            } else {
                -m
            }
        })
        .collect();
    t64(&v, shape)
}

/// The function a gradcheck row differentiates.
pub type CheckFn = Box<dyn Fn(&[Tensor<f64>]) -> Result<Tensor<f64>>>;

/// One gradcheck row: an op (or op configuration), the function applying it, its inputs.
pub struct Row {
    pub name: &'static str,
    pub f: CheckFn,
    pub inputs: Vec<Tensor<f64>>,
}

/// Builds a [`Row`].
pub fn row(
    name: &'static str,
    f: impl Fn(&[Tensor<f64>]) -> Result<Tensor<f64>> + 'static,
    inputs: Vec<Tensor<f64>>,
) -> Row {
    Row {
        name,
        f: Box::new(f),
        inputs,
    }
}

/// Runs gradcheck on every row with default options and fails listing every failing row.
#[track_caller]
pub fn check_rows(rows: Vec<Row>) {
    assert!(!rows.is_empty(), "a gradcheck table needs rows");
    let mut failures = Vec::new();
    for r in &rows {
        if let Err(e) = gradcheck(&*r.f, &r.inputs, GradcheckOptions::default()) {
            failures.push(format!("{}: {e}", r.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} gradcheck rows failed:\n  {}",
        failures.len(),
        rows.len(),
        failures.join("\n  ")
    );
}

/// A call expected to fail.
pub type Call = Box<dyn Fn() -> Result<()>>;

/// One bad call and the fragments its error message must contain.
pub struct Case {
    pub what: &'static str,
    pub call: Call,
    pub expect: &'static [&'static str],
}

/// Builds a [`Case`].
pub fn case<T>(
    what: &'static str,
    f: impl Fn() -> Result<T> + 'static,
    expect: &'static [&'static str],
) -> Case {
    Case {
        what,
        call: Box::new(move || f().map(|_| ())),
        expect,
    }
}

/// Runs every case; fails listing each one that panicked, succeeded, or had a vague message.
#[track_caller]
pub fn run_error_cases(cases: Vec<Case>) {
    let mut problems = Vec::new();
    for c in &cases {
        match catch_unwind(AssertUnwindSafe(|| (c.call)())) {
            Err(_) => problems.push(format!("{}: PANICKED", c.what)),
            Ok(Ok(())) => problems.push(format!("{}: returned Ok", c.what)),
            Ok(Err(e)) => {
                let msg = e.to_string();
                let missing: Vec<_> = c.expect.iter().filter(|s| !msg.contains(**s)).collect();
                if !missing.is_empty() {
                    problems.push(format!("{}: {msg:?} lacks {missing:?}", c.what));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} error cases are wrong:\n  {}",
        problems.len(),
        cases.len(),
        problems.join("\n  ")
    );
}

/// The bits of `f`'s value and of the gradients of every leaf, for a fixed upstream gradient:
/// what a fused op is compared with its composite by.
pub fn bits_of(
    leaves: &[Tensor<f32>],
    f: impl Fn(&[Tensor<f32>]) -> Result<Tensor<f32>>,
) -> (Vec<u32>, Vec<Vec<u32>>) {
    let y = f(leaves).unwrap();
    let up = Tensor::<f32>::from_vec(
        (0..y.numel()).map(|i| (i as f32 * 0.731).sin()).collect(),
        y.shape(),
    )
    .unwrap();
    let g = y.backward_with(&up).unwrap();
    let bits = |t: &Tensor<f32>| t.to_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    // a leaf `f` leaves out has no gradient (empty here)
    let grads = leaves
        .iter()
        .map(|x| g.get(x).map(bits).unwrap_or_default())
        .collect();
    (bits(&y), grads)
}
