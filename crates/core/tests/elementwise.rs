//! Elementwise ops (unary, scalar, binary with broadcasting): hand-computed values and
//! gradients, then one gradcheck row per op.

mod common;

use common::*;
use retrograd_core::Tensor;

const LN2: f64 = std::f64::consts::LN_2;
const LN3: f64 = 1.098_612_288_668_109_8;

/// Forward values and d(sum y)/dx of a unary op, both worked out by hand.
#[track_caller]
fn unary_case(
    f: impl Fn(&Tensor<f64>) -> Tensor<f64>,
    x: &[f64],
    expected_y: &[f64],
    expected_dx: &[f64],
) {
    let x = leaf(x, &[x.len()]);
    let y = f(&x);
    assert_tensor(&y, &[expected_y.len()], expected_y, 1e-12);
    let g = y.sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &x), expected_dx, 1e-12);
}

#[test]
fn neg_values() {
    // y = -x; dy/dx = -1.
    unary_case(
        |x| x.neg(),
        &[1.5, -2.0, 0.0],
        &[-1.5, 2.0, 0.0],
        &[-1.0; 3],
    );
}

#[test]
fn exp_values() {
    // exp(0) = 1, exp(ln 2) = 2; dy/dx = exp(x) = [1, 2].
    unary_case(|x| x.exp(), &[0.0, LN2], &[1.0, 2.0], &[1.0, 2.0]);
}

#[test]
fn log_values() {
    // ln 1 = 0, ln 4 = 2 ln 2, ln 0.5 = -ln 2; dy/dx = 1/x = [1, 0.25, 2].
    unary_case(
        |x| x.log(),
        &[1.0, 4.0, 0.5],
        &[0.0, 2.0 * LN2, -LN2],
        &[1.0, 0.25, 2.0],
    );
}

#[test]
fn sqrt_values() {
    // sqrt 4 = 2, sqrt 2.25 = 1.5; dy/dx = 1/(2 sqrt x) = [1/4, 1/3].
    unary_case(|x| x.sqrt(), &[4.0, 2.25], &[2.0, 1.5], &[0.25, 1.0 / 3.0]);
}

#[test]
fn tanh_values() {
    // tanh(ln 2) = (e^{2 ln 2} - 1)/(e^{2 ln 2} + 1) = (4 - 1)/(4 + 1) = 0.6;
    // dy/dx = 1 - y² = [1, 1 - 0.36 = 0.64].
    unary_case(|x| x.tanh(), &[0.0, LN2], &[0.0, 0.6], &[1.0, 0.64]);
}

#[test]
fn sigmoid_values() {
    // sigmoid(ln 3) = 1/(1 + 1/3) = 3/4, sigmoid(-ln 3) = 1/(1 + 3) = 1/4 (the x < 0 branch);
    // dy/dx = y(1-y) = [1/4, 3/16, 3/16].
    unary_case(
        |x| x.sigmoid(),
        &[0.0, LN3, -LN3],
        &[0.5, 0.75, 0.25],
        &[0.25, 0.1875, 0.1875],
    );
}

#[test]
fn sigmoid_saturates_without_nan() {
    // sigmoid(±800): exp(800) overflows f64, the stable form must still give exactly 1 and 0.
    let y = t64(&[800.0, -800.0], &[2]).sigmoid();
    assert_eq!(y.to_vec(), vec![1.0, 0.0]);
}

#[test]
fn relu_values() {
    // relu(-1) = 0, relu(0) = 0, relu(2) = 2; gradient 0 at x <= 0 (PyTorch uses 0 at 0).
    unary_case(
        |x| x.relu(),
        &[-1.0, 0.0, 2.0],
        &[0.0, 0.0, 2.0],
        &[0.0, 0.0, 1.0],
    );
}

#[test]
fn powf_values() {
    // x^2 at [3, -1.5] = [9, 2.25], d = 2x = [6, -3].
    unary_case(|x| x.powf(2.0), &[3.0, -1.5], &[9.0, 2.25], &[6.0, -3.0]);
    // 9^0.5 = 3, d = 0.5 * 9^-0.5 = 1/6.
    unary_case(|x| x.powf(0.5), &[9.0], &[3.0], &[1.0 / 6.0]);
    // 4^-1 = 0.25, d = -1 * 4^-2 = -1/16.
    unary_case(|x| x.powf(-1.0), &[4.0], &[0.25], &[-0.0625]);
    // x^0 = 1 everywhere, d = 0 (also at x = 0).
    unary_case(|x| x.powf(0.0), &[5.0, 0.0], &[1.0, 1.0], &[0.0, 0.0]);
}

#[test]
fn affine_and_scalar_values() {
    // 2x - 1 at [1, -0.5] = [1, -2], d = 2.
    unary_case(
        |x| x.affine(2.0, -1.0),
        &[1.0, -0.5],
        &[1.0, -2.0],
        &[2.0, 2.0],
    );
    // -3 * 2 = -6, d = -3.
    unary_case(|x| x.mul_scalar(-3.0), &[2.0], &[-6.0], &[-3.0]);
    // 2 + 0.5 = 2.5, d = 1.
    unary_case(|x| x.add_scalar(0.5), &[2.0], &[2.5], &[1.0]);
}

#[test]
fn add_broadcasts_both_ways() {
    // [[1,2,3],[4,5,6]] + [10,20,30] = [[11,22,33],[14,25,36]], and the same with sides swapped.
    // d(sum)/da = 1 everywhere; d(sum)/db = 2 per element (b is used by both rows).
    let a = leaf(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
    let b = leaf(&[10., 20., 30.], &[3]);
    let expected = [11., 22., 33., 14., 25., 36.];
    for y in [a.add(&b).unwrap(), b.add(&a).unwrap()] {
        assert_tensor(&y, &[2, 3], &expected, 0.0);
        let g = y.sum_all().backward().unwrap();
        assert_close(&grad_of(&g, &a), &[1.0; 6], 0.0);
        assert_close(&grad_of(&g, &b), &[2.0; 3], 0.0);
    }
}

#[test]
fn sub_broadcasts_lhs() {
    // [10,20,30] - [[1,2,3],[4,5,6]] = [[9,18,27],[6,15,24]];
    // d(sum)/db = 2 per element, d(sum)/da = -1.
    let a = leaf(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
    let b = leaf(&[10., 20., 30.], &[3]);
    let y = b.sub(&a).unwrap();
    assert_tensor(&y, &[2, 3], &[9., 18., 27., 6., 15., 24.], 0.0);
    let g = y.sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &b), &[2.0; 3], 0.0);
    assert_close(&grad_of(&g, &a), &[-1.0; 6], 0.0);
}

#[test]
fn mul_outer_broadcast() {
    // [[1],[2]] * [[3,4,5]] = [[3,4,5],[6,8,10]] (both operands broadcast).
    // d(sum)/da_i = Σ_j b_j = 12; d(sum)/db_j = Σ_i a_i = 3.
    let a = leaf(&[1., 2.], &[2, 1]);
    let b = leaf(&[3., 4., 5.], &[1, 3]);
    let y = a.mul(&b).unwrap();
    assert_tensor(&y, &[2, 3], &[3., 4., 5., 6., 8., 10.], 0.0);
    let g = y.sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &a), &[12., 12.], 0.0);
    assert_close(&grad_of(&g, &b), &[3., 3., 3.], 0.0);
}

#[test]
fn mul_same_tensor_twice() {
    // x * x = [4, 9]; both uses contribute: d/dx = 2x = [4, 6].
    let x = leaf(&[2., 3.], &[2]);
    let y = x.mul(&x).unwrap();
    assert_tensor(&y, &[2], &[4., 9.], 0.0);
    assert_close(
        &grad_of(&y.sum_all().backward().unwrap(), &x),
        &[4., 6.],
        0.0,
    );
}

#[test]
fn div_broadcasts_column() {
    // [[2,4,6],[3,9,12]] / [[2],[3]] = [[1,2,3],[1,3,4]].
    // d/da = 1/b: row 0 → 1/2, row 1 → 1/3.
    // d/db_i = -Σ_j a_ij / b_i²: row 0 → -(2+4+6)/4 = -3, row 1 → -(3+9+12)/9 = -8/3.
    let a = leaf(&[2., 4., 6., 3., 9., 12.], &[2, 3]);
    let b = leaf(&[2., 3.], &[2, 1]);
    let y = a.div(&b).unwrap();
    assert_tensor(&y, &[2, 3], &[1., 2., 3., 1., 3., 4.], 1e-15);
    let g = y.sum_all().backward().unwrap();
    let third = 1.0 / 3.0;
    assert_close(
        &grad_of(&g, &a),
        &[0.5, 0.5, 0.5, third, third, third],
        1e-15,
    );
    assert_close(&grad_of(&g, &b), &[-3.0, -8.0 / 3.0], 1e-15);
}

#[test]
fn binary_with_constant_operand_gives_grad_only_to_the_leaf() {
    // c is a constant: it must not appear in the gradient store.
    let x = leaf(&[1., 2.], &[2]);
    let c = t64(&[3., 4.], &[2]);
    let g = x.div(&c).unwrap().sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &x), &[1.0 / 3.0, 0.25], 1e-15);
    assert!(g.get(&c).is_none());
    assert_eq!(g.len(), 1);
}

#[test]
fn gradcheck_elementwise_table() {
    check_rows(vec![
        row("neg", |x| Ok(x[0].neg()), vec![rnd(&[2, 3], 1)]),
        row("exp", |x| Ok(x[0].exp()), vec![rnd(&[2, 3], 2)]),
        row("log", |x| Ok(x[0].log()), vec![pos(&[2, 3], 3)]),
        row("sqrt", |x| Ok(x[0].sqrt()), vec![pos(&[2, 3], 4)]),
        row("tanh", |x| Ok(x[0].tanh()), vec![rnd(&[2, 3], 5)]),
        row("sigmoid", |x| Ok(x[0].sigmoid()), vec![rnd(&[2, 3], 6)]),
        row(
            "relu",
            |x| Ok(x[0].relu()),
            vec![away_from_zero(&[2, 3], 7)],
        ),
        row("powf 3", |x| Ok(x[0].powf(3.0)), vec![rnd(&[2, 3], 8)]),
        row("powf -1.5", |x| Ok(x[0].powf(-1.5)), vec![pos(&[4], 9)]),
        row(
            "affine",
            |x| Ok(x[0].affine(-0.7, 0.3)),
            vec![rnd(&[4], 10)],
        ),
        row(
            "mul_scalar",
            |x| Ok(x[0].mul_scalar(2.5)),
            vec![rnd(&[4], 11)],
        ),
        row(
            "add_scalar",
            |x| Ok(x[0].add_scalar(-1.25)),
            vec![rnd(&[4], 12)],
        ),
        row(
            "add",
            |x| x[0].add(&x[1]),
            vec![rnd(&[2, 3], 13), rnd(&[2, 3], 14)],
        ),
        row(
            "add [2,3]+[3]",
            |x| x[0].add(&x[1]),
            vec![rnd(&[2, 3], 15), rnd(&[3], 16)],
        ),
        row(
            "add [3]+[2,3]",
            |x| x[0].add(&x[1]),
            vec![rnd(&[3], 17), rnd(&[2, 3], 18)],
        ),
        row(
            "sub",
            |x| x[0].sub(&x[1]),
            vec![rnd(&[2, 3], 19), rnd(&[2, 3], 20)],
        ),
        row(
            "sub [2,1]-[1,3]",
            |x| x[0].sub(&x[1]),
            vec![rnd(&[2, 1], 21), rnd(&[1, 3], 22)],
        ),
        row(
            "mul",
            |x| x[0].mul(&x[1]),
            vec![rnd(&[2, 3], 23), rnd(&[2, 3], 24)],
        ),
        row(
            "mul [2,1]*[1,3]",
            |x| x[0].mul(&x[1]),
            vec![rnd(&[2, 1], 25), rnd(&[1, 3], 26)],
        ),
        row(
            "mul [3]*[2,2,3]",
            |x| x[0].mul(&x[1]),
            vec![rnd(&[3], 27), rnd(&[2, 2, 3], 28)],
        ),
        row("mul x*x", |x| x[0].mul(&x[0]), vec![rnd(&[5], 29)]),
        row(
            "div",
            |x| x[0].div(&x[1]),
            vec![rnd(&[2, 3], 30), pos(&[2, 3], 31)],
        ),
        row(
            "div [2,3]/[2,1]",
            |x| x[0].div(&x[1]),
            vec![rnd(&[2, 3], 32), pos(&[2, 1], 33)],
        ),
        row(
            "div [3]/[2,3]",
            |x| x[0].div(&x[1]),
            vec![rnd(&[3], 34), pos(&[2, 3], 35)],
        ),
        row(
            "div on transposed views",
            |x| x[0].t()?.div(&x[1].t()?),
            vec![rnd(&[3, 2], 36), pos(&[3, 2], 37)],
        ),
    ]);
}
