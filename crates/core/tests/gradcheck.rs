//! gradcheck itself is tested: it must fail on deliberately wrong derivatives (naming the input
//! and element) and pass on the right ones. The ops here are custom ops built through the public
//! `Op` trait and `Tensor::from_op`, the same way a user would add one.

mod common;

use std::sync::Arc;

use common::*;
use retrograd_core::{
    gradcheck, gradcheck_params, Error, GradcheckOptions, InputGrads, Layout, Op, Parameter,
    Result, Tensor,
};

/// `y = x²` whose backward is `g·x` when `wrong`, `2·g·x` otherwise.
struct Square {
    wrong: bool,
}

fn square(x: &Tensor<f64>, wrong: bool) -> Tensor<f64> {
    let data: Vec<f64> = x.to_vec().iter().map(|v| v * v).collect();
    Tensor::from_op(
        Arc::new(data.into()),
        Layout::contiguous(x.shape()),
        &[x],
        || Square { wrong },
    )
}

impl Op<f64> for Square {
    fn name(&self) -> &'static str {
        "square"
    }
    fn backward(&self, x: &[Tensor<f64>], g: &Tensor<f64>) -> Result<InputGrads<f64>> {
        let k = if self.wrong { 1.0 } else { 2.0 };
        let d: Vec<f64> = g
            .to_vec()
            .iter()
            .zip(x[0].to_vec())
            .map(|(g, x)| k * g * x)
            .collect();
        Ok(smallvec_of(vec![Some(Tensor::from_vec(d, x[0].shape())?)]))
    }
}

/// `y = a ⊙ b` whose gradient for `b` is `g` alone (missing the factor `a`) when `wrong`.
struct Mul2 {
    wrong: bool,
}

fn mul2(a: &Tensor<f64>, b: &Tensor<f64>, wrong: bool) -> Tensor<f64> {
    let data: Vec<f64> = a
        .to_vec()
        .iter()
        .zip(b.to_vec())
        .map(|(x, y)| x * y)
        .collect();
    Tensor::from_op(
        Arc::new(data.into()),
        Layout::contiguous(a.shape()),
        &[a, b],
        || Mul2 { wrong },
    )
}

impl Op<f64> for Mul2 {
    fn name(&self) -> &'static str {
        "mul2"
    }
    fn backward(&self, x: &[Tensor<f64>], g: &Tensor<f64>) -> Result<InputGrads<f64>> {
        let ga = g.mul(&x[1])?;
        let gb = if self.wrong { g.clone() } else { g.mul(&x[0])? };
        Ok(smallvec_of(vec![Some(ga), Some(gb)]))
    }
}

fn smallvec_of(v: Vec<Option<Tensor<f64>>>) -> InputGrads<f64> {
    v.into_iter().collect()
}

fn expect_gradcheck_error(r: Result<()>, must_contain: &[&str]) {
    match r {
        Err(Error::Gradcheck(msg)) => {
            for s in must_contain {
                assert!(msg.contains(s), "message {msg:?} should contain {s:?}");
            }
            assert!(msg.contains("analytic") && msg.contains("numeric"), "{msg}");
        }
        other => panic!("expected Err(Error::Gradcheck), got {other:?}"),
    }
}

#[test]
fn custom_square_forward_is_right() {
    // 1.5² = 2.25, (-2)² = 4; right backward: 2x = [3, -4]; wrong: x = [1.5, -2].
    let x = leaf(&[1.5, -2.0], &[2]);
    for (wrong, expected) in [(false, [3.0, -4.0]), (true, [1.5, -2.0])] {
        let y = square(&x, wrong);
        assert_tensor(&y, &[2], &[2.25, 4.0], 0.0);
        assert_eq!(y.op_name(), Some("square"));
        assert_close(
            &grad_of(&y.sum_all().backward().unwrap(), &x),
            &expected,
            0.0,
        );
    }
}

#[test]
fn gradcheck_rejects_a_wrong_derivative_and_names_the_element() {
    let x = t64(&[0.5, -1.5, 2.0], &[3]);
    // the right derivative passes...
    gradcheck(
        |t| Ok(square(&t[0], false)),
        std::slice::from_ref(&x),
        Default::default(),
    )
    .unwrap();
    // ...the wrong one fails on the first element (every element is off by a factor of 2).
    let r = gradcheck(|t| Ok(square(&t[0], true)), &[x], Default::default());
    expect_gradcheck_error(r, &["input 0", "shape [3]", "element 0"]);
}

#[test]
fn gradcheck_names_the_right_input_and_element() {
    // Only b's derivative is wrong, and only where a ≠ 1: element 2 of input 1.
    let a = t64(&[1.0, 1.0, 3.0, 1.0], &[2, 2]);
    let b = t64(&[0.3, -0.2, 0.7, 1.1], &[2, 2]);
    let inputs = [a, b];
    gradcheck(
        |t| Ok(mul2(&t[0], &t[1], false)),
        &inputs,
        Default::default(),
    )
    .unwrap();
    let r = gradcheck(
        |t| Ok(mul2(&t[0], &t[1], true)),
        &inputs,
        Default::default(),
    );
    expect_gradcheck_error(r, &["input 1", "shape [2, 2]", "element 2"]);
}

#[test]
fn gradcheck_rejects_a_wrong_derivative_inside_a_larger_graph() {
    // The wrong op sits between ordinary ops: the error still surfaces.
    let x = rnd(&[2, 3], 4);
    let w = rnd(&[3, 2], 5);
    let f = |wrong: bool| {
        move |t: &[Tensor<f64>]| Ok(square(&t[0].matmul(&t[1])?.tanh(), wrong).sum_all())
    };
    let inputs = [x, w];
    gradcheck(f(false), &inputs, Default::default()).unwrap();
    expect_gradcheck_error(
        gradcheck(f(true), &inputs, Default::default()),
        &["input 0"],
    );
}

#[test]
fn gradcheck_tolerances_are_honoured() {
    // A 1% error in the derivative passes with rtol 5% and fails with the default 0.1%.
    struct Scaled;
    impl Op<f64> for Scaled {
        fn name(&self) -> &'static str {
            "scaled"
        }
        fn backward(&self, _: &[Tensor<f64>], g: &Tensor<f64>) -> Result<InputGrads<f64>> {
            Ok(smallvec_of(vec![Some(g.mul_scalar(2.0 * 1.01))]))
        }
    }
    let f = |t: &[Tensor<f64>]| {
        let x = &t[0];
        Ok(Tensor::from_op(
            Arc::new(x.to_vec().iter().map(|v| 2.0 * v).collect()),
            Layout::contiguous(x.shape()),
            &[x],
            || Scaled,
        ))
    };
    let x = [t64(&[1.0, 2.0], &[2])];
    let loose = GradcheckOptions {
        rtol: 0.05,
        ..Default::default()
    };
    gradcheck(f, &x, loose).unwrap();
    expect_gradcheck_error(gradcheck(f, &x, Default::default()), &["element 0"]);
}

#[test]
fn gradcheck_params_rejects_a_wrong_derivative() {
    let p = Parameter::new(t64(&[0.4, -0.8, 1.2], &[3]));
    let right = gradcheck_params(
        || Ok(square(&p.value(), false).sum_all()),
        std::slice::from_ref(&p),
        Default::default(),
    );
    right.unwrap();
    let wrong = gradcheck_params(
        || Ok(square(&p.value(), true).sum_all()),
        std::slice::from_ref(&p),
        Default::default(),
    );
    expect_gradcheck_error(wrong, &["parameter 0", "element 0"]);
    // the parameter is restored after perturbation
    assert_eq!(p.to_vec(), vec![0.4, -0.8, 1.2]);
}

/// Rows `1..1 + rows` of a matrix, declaring through `Op::grad_slice` that its gradient is the
/// upstream written at `(dim 0, reported_start)`: right when `reported_start` is 1.
struct RowSlice {
    reported: (usize, usize),
}

impl Op<f64> for RowSlice {
    fn name(&self) -> &'static str {
        "row_slice"
    }
    fn backward(&self, _: &[Tensor<f64>], _: &Tensor<f64>) -> Result<InputGrads<f64>> {
        Err(Error::invalid("row_slice", "the tape must use grad_slice"))
    }
    fn grad_slice(&self) -> Option<(usize, usize)> {
        Some(self.reported)
    }
}

fn row_slice(x: &Tensor<f64>, rows: usize, reported: (usize, usize)) -> Result<Tensor<f64>> {
    let cols = x.dims2()?.1;
    let data = x.to_vec()[cols..cols * (1 + rows)].to_vec();
    Ok(Tensor::from_op(
        Arc::new(data.into()),
        Layout::contiguous(&[rows, cols]),
        &[x],
        || RowSlice { reported },
    ))
}

#[test]
fn gradcheck_checks_ops_using_grad_slice() {
    let x = [rnd(&[4, 3], 6)];
    let f = |reported| {
        move |t: &[Tensor<f64>]| {
            row_slice(&t[0], 2, reported)?
                .tanh()
                .sum_all()
                .mul(&t[0].sum_all())
        }
    };
    gradcheck(f((0, 1)), &x, Default::default()).unwrap();
    expect_gradcheck_error(gradcheck(f((0, 0)), &x, Default::default()), &["input 0"]);
}

/// Rows `picked` of a matrix, declaring through `Op::grad_rows` that row `j` of its gradient
/// belongs to input row `reported[j]`: right when `reported == picked`.
struct PickRows {
    reported: Vec<usize>,
}

impl Op<f64> for PickRows {
    fn name(&self) -> &'static str {
        "pick_rows"
    }
    fn backward(&self, _: &[Tensor<f64>], _: &Tensor<f64>) -> Result<InputGrads<f64>> {
        Err(Error::invalid("pick_rows", "the tape must use grad_rows"))
    }
    fn grad_rows(&self) -> Option<&[usize]> {
        Some(&self.reported)
    }
}

fn pick_rows(x: &Tensor<f64>, picked: &[usize], reported: &[usize]) -> Result<Tensor<f64>> {
    let cols = x.dims2()?.1;
    let v = x.to_vec();
    let data: Vec<f64> = picked
        .iter()
        .flat_map(|&i| v[i * cols..(i + 1) * cols].to_vec())
        .collect();
    Ok(Tensor::from_op(
        Arc::new(data.into()),
        Layout::contiguous(&[picked.len(), cols]),
        &[x],
        || PickRows {
            reported: reported.to_vec(),
        },
    ))
}

#[test]
fn gradcheck_checks_ops_using_grad_rows() {
    // rows picked twice, and the input used again after: the rows are added into a gradient
    // that already holds another contribution
    let x = [rnd(&[4, 3], 7)];
    let f = |reported: &'static [usize]| {
        move |t: &[Tensor<f64>]| {
            pick_rows(&t[0], &[2, 0, 2], reported)?
                .tanh()
                .sum_all()
                .mul(&t[0].sum_all())
        }
    };
    gradcheck(f(&[2, 0, 2]), &x, Default::default()).unwrap();
    expect_gradcheck_error(
        gradcheck(f(&[2, 1, 2]), &x, Default::default()),
        &["input 0"],
    );
}

#[test]
fn a_custom_op_with_inconsistent_gradients_is_an_error_not_a_panic() {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let x = leaf(&[1., 2., 3., 4., 5., 6.], &[3, 2]);
    // grad_slice pointing past the end of the input, or at a dim it does not have
    for reported in [(0, 2), (5, 0), (1, 1)] {
        let r = catch_unwind(AssertUnwindSafe(|| {
            row_slice(&x, 2, reported).unwrap().sum_all().backward()
        }));
        match r {
            Ok(Err(e)) => assert!(e.to_string().contains("row_slice"), "{e}"),
            Ok(Ok(_)) => panic!("grad_slice {reported:?} must be rejected"),
            Err(_) => panic!("grad_slice {reported:?} made backward panic"),
        }
    }
    // grad_rows naming a row past the end of the input, or too few rows for the gradient
    for reported in [&[0, 3][..], &[1][..]] {
        let r = catch_unwind(AssertUnwindSafe(|| {
            pick_rows(&x, &[0, 1], reported)
                .unwrap()
                .sum_all()
                .backward()
        }));
        match r {
            Ok(Err(e)) => assert!(e.to_string().contains("pick_rows"), "{e}"),
            Ok(Ok(_)) => panic!("grad_rows {reported:?} must be rejected"),
            Err(_) => panic!("grad_rows {reported:?} made backward panic"),
        }
    }
    // backward returning a gradient of the wrong shape
    struct BadShape;
    impl Op<f64> for BadShape {
        fn name(&self) -> &'static str {
            "bad_shape"
        }
        fn backward(&self, _: &[Tensor<f64>], _: &Tensor<f64>) -> Result<InputGrads<f64>> {
            Ok(smallvec_of(vec![Some(Tensor::zeros(&[7]))]))
        }
    }
    let y = Tensor::from_op(
        Arc::new(vec![0.0].into()),
        Layout::contiguous(&[]),
        &[&x],
        || BadShape,
    );
    let e = y
        .backward()
        .expect_err("a wrong-shaped gradient is an error");
    assert!(
        e.to_string().contains("bad_shape") && e.to_string().contains("[7]"),
        "{e}"
    );
}
