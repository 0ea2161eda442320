//! Reductions (sum, mean, max over dims, with keepdim, and over all): hand-computed values and
//! gradients, then gradcheck rows.

mod common;

use common::*;
use retrograd_core::Tensor;

/// [[1,2,3],[4,5,6]]
fn x23() -> Tensor<f64> {
    leaf(&[1., 2., 3., 4., 5., 6.], &[2, 3])
}

/// arange(24) as [2,3,4]: element (i,j,k) = 12i + 4j + k.
fn x234() -> Tensor<f64> {
    Tensor::<f64>::arange(24)
        .reshape(&[2, 3, 4])
        .unwrap()
        .requires_grad()
}

#[test]
fn sum_over_dims_values() {
    let x = x23();
    // columns: 1+4, 2+5, 3+6; rows: 1+2+3, 4+5+6; all: 21.
    assert_tensor(&x.sum(&[0], false).unwrap(), &[3], &[5., 7., 9.], 0.0);
    assert_tensor(&x.sum(&[0], true).unwrap(), &[1, 3], &[5., 7., 9.], 0.0);
    assert_tensor(&x.sum(&[-1], false).unwrap(), &[2], &[6., 15.], 0.0);
    assert_tensor(&x.sum(&[1], true).unwrap(), &[2, 1], &[6., 15.], 0.0);
    assert_tensor(&x.sum_all(), &[], &[21.], 0.0);
    assert_tensor(&x.sum(&[], true).unwrap(), &[1, 1], &[21.], 0.0);
    assert_tensor(&x.sum(&[0, 1], false).unwrap(), &[], &[21.], 0.0);
    // 3-D over dims 0 and 2: Σ_i Σ_k (12i + 4j + k) = 48 + 32j + 12 = [60, 92, 124].
    assert_tensor(
        &x234().sum(&[0, 2], false).unwrap(),
        &[3],
        &[60., 92., 124.],
        0.0,
    );
}

#[test]
fn sum_gradient_broadcasts_upstream_back() {
    // y_i = Σ_j x_ij, upstream [1, 10]: dx_ij = upstream_i.
    let x = x23();
    for keepdim in [false, true] {
        let y = x.sum(&[1], keepdim).unwrap();
        let up = t64(&[1., 10.], y.shape());
        let g = y.backward_with(&up).unwrap();
        assert_close(&grad_of(&g, &x), &[1., 1., 1., 10., 10., 10.], 0.0);
    }
}

#[test]
fn mean_values_and_gradient() {
    let x = x23();
    // rows: 6/3, 15/3; columns kept: 5/2, 7/2, 9/2; all: 21/6.
    assert_tensor(&x.mean(&[1], false).unwrap(), &[2], &[2., 5.], 1e-15);
    assert_tensor(
        &x.mean(&[0], true).unwrap(),
        &[1, 3],
        &[2.5, 3.5, 4.5],
        1e-15,
    );
    assert_tensor(&x.mean_all(), &[], &[3.5], 1e-15);
    // 3-D over dims 0 and 2 (8 elements each): [60, 92, 124] / 8.
    assert_tensor(
        &x234().mean(&[0, 2], false).unwrap(),
        &[3],
        &[7.5, 11.5, 15.5],
        1e-15,
    );
    // d(Σ_i mean_j x_ij)/dx = 1/3; d(mean_all)/dx = 1/6.
    let g = x.mean(&[1], false).unwrap().sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &x), &[1. / 3.; 6], 1e-15);
    let g = x.mean_all().backward().unwrap();
    assert_close(&grad_of(&g, &x), &[1. / 6.; 6], 1e-15);
}

#[test]
fn mean_of_empty_is_nan() {
    // PyTorch: torch.zeros(0).mean() is nan.
    assert!(Tensor::<f64>::zeros(&[0])
        .mean_all()
        .item()
        .unwrap()
        .is_nan());
}

#[test]
fn max_values_and_gradient() {
    let x = x23();
    assert_tensor(&x.max(&[1], false).unwrap(), &[2], &[3., 6.], 0.0);
    assert_tensor(&x.max(&[0], true).unwrap(), &[1, 3], &[4., 5., 6.], 0.0);
    assert_tensor(&x.max(&[], false).unwrap(), &[], &[6.], 0.0);
    // max over dims 0, 2 of 12i + 4j + k: i = 1, k = 3 → 15 + 4j.
    assert_tensor(
        &x234().max(&[0, 2], false).unwrap(),
        &[3],
        &[15., 19., 23.],
        0.0,
    );
    // all negative: the max is -2, not 0 or -inf.
    assert_tensor(
        &t64(&[-5., -2., -9.], &[3]).max(&[0], false).unwrap(),
        &[],
        &[-2.],
        0.0,
    );
    // The gradient of the overall max goes to the single argmax (index 5).
    let g = x.max(&[], false).unwrap().backward().unwrap();
    assert_close(&grad_of(&g, &x), &[0., 0., 0., 0., 0., 1.], 0.0);
}

#[test]
fn max_ties_send_gradient_to_the_first_maximum() {
    // rows [1,3,3] and [2,2,0]: maxima 3 (first at column 1) and 2 (first at column 0).
    let x = leaf(&[1., 3., 3., 2., 2., 0.], &[2, 3]);
    let y = x.max(&[1], false).unwrap();
    assert_tensor(&y, &[2], &[3., 2.], 0.0);
    let g = y.backward_with(&t64(&[1., 10.], &[2])).unwrap();
    assert_close(&grad_of(&g, &x), &[0., 1., 0., 10., 0., 0.], 0.0);
}

#[test]
fn gradcheck_reduce_table() {
    check_rows(vec![
        row(
            "sum dim 0",
            |x| x[0].sum(&[0], false),
            vec![rnd(&[3, 4], 1)],
        ),
        row(
            "sum dim -1 keepdim",
            |x| x[0].sum(&[-1], true),
            vec![rnd(&[3, 4], 2)],
        ),
        row(
            "sum dims 0,2",
            |x| x[0].sum(&[0, 2], false),
            vec![rnd(&[2, 3, 4], 3)],
        ),
        row("sum all", |x| Ok(x[0].sum_all()), vec![rnd(&[2, 3], 4)]),
        row(
            "sum of a transposed view",
            |x| x[0].t()?.sum(&[1], false),
            vec![rnd(&[3, 4], 5)],
        ),
        row(
            "mean dim 1",
            |x| x[0].mean(&[1], false),
            vec![rnd(&[3, 4], 6)],
        ),
        row(
            "mean dims 0,1 keepdim",
            |x| x[0].mean(&[0, 1], true),
            vec![rnd(&[2, 3, 4], 7)],
        ),
        row("mean all", |x| Ok(x[0].mean_all()), vec![rnd(&[2, 3], 8)]),
        row(
            "max dim 1",
            |x| x[0].max(&[1], false),
            vec![rnd(&[3, 4], 9)],
        ),
        row(
            "max dim 0 keepdim",
            |x| x[0].max(&[0], true),
            vec![rnd(&[3, 4], 10)],
        ),
        row(
            "max dims 0,2",
            |x| x[0].max(&[0, 2], false),
            vec![rnd(&[2, 3, 4], 11)],
        ),
        row("max all", |x| x[0].max(&[], false), vec![rnd(&[2, 3], 12)]),
    ]);
}
