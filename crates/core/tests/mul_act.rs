//! `mul_act` (`a ⊙ act(b)`, the LSTM's `o ⊙ tanh(c)`): hand-computed values and gradients for
//! each activation, broadcasting and the bad-shape error, gradcheck rows, and the composite's
//! bits (`a.mul(&b.tanh())` and the like, values and gradients, on contiguous and strided
//! operands), which is what lets the LSTM step use it without changing a result.

mod common;

use common::*;
use retrograd_core::{Activation, Result, Tensor};

const LN2: f64 = std::f64::consts::LN_2;
const LN3: f64 = 1.098_612_288_668_109_8;

#[test]
fn mul_act_values_and_gradients_by_hand() {
    // tanh: t = tanh([ln 2, 0]) = [0.6, 0]; y = a·t = [2·0.6, -1·0] = [1.2, 0].
    // Upstream [1, 10]: da = g·t = [0.6, 0], db = g·a·(1 − t²) = [2·0.64, -10·1] = [1.28, -10]
    let (a, b) = (leaf(&[2., -1.], &[2]), leaf(&[LN2, 0.], &[2]));
    let y = a.mul_act(&b, Activation::Tanh).unwrap();
    assert_tensor(&y, &[2], &[1.2, 0.], 1e-12);
    let g = y.backward_with(&t64(&[1., 10.], &[2])).unwrap();
    assert_close(&grad_of(&g, &a), &[0.6, 0.], 1e-12);
    assert_close(&grad_of(&g, &b), &[1.28, -10.], 1e-12);
    // sigmoid: s = σ([ln 3, 0]) = [0.75, 0.5]; y = [4·0.75, 2·0.5] = [3, 1].
    // Upstream ones: da = s, db = a·s·(1 − s) = [4·0.1875, 2·0.25] = [0.75, 0.5]
    let (a, b) = (leaf(&[4., 2.], &[2]), leaf(&[LN3, 0.], &[2]));
    let y = a.mul_act(&b, Activation::Sigmoid).unwrap();
    assert_tensor(&y, &[2], &[3., 1.], 1e-12);
    let g = y.sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &a), &[0.75, 0.5], 1e-12);
    assert_close(&grad_of(&g, &b), &[0.75, 0.5], 1e-12);
    // relu: y = [3·max(-2, 0), 5·max(0.5, 0)] = [0, 2.5]; da = [0, 0.5], db = [0, 5]
    let (a, b) = (leaf(&[3., 5.], &[2]), leaf(&[-2., 0.5], &[2]));
    let y = a.mul_act(&b, Activation::Relu).unwrap();
    assert_tensor(&y, &[2], &[0., 2.5], 0.0);
    let g = y.sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &a), &[0., 0.5], 0.0);
    assert_close(&grad_of(&g, &b), &[0., 5.], 0.0);
}

#[test]
fn mul_act_broadcasts_and_names_bad_shapes() {
    // a [2, 2] times relu of a row [2]: y[i][j] = a[i][j]·max(b[j], 0)
    let a = leaf(&[1., 2., 3., 4.], &[2, 2]);
    let b = leaf(&[-1., 10.], &[2]);
    let y = a.mul_act(&b, Activation::Relu).unwrap();
    assert_tensor(&y, &[2, 2], &[0., 20., 0., 40.], 0.0);
    // db[j] = Σ_i a[i][j]·relu'(b[j]) = [0, 6]
    let g = y.sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &b), &[0., 6.], 0.0);
    let err = a
        .mul_act(&t64(&[1., 2., 3.], &[3]), Activation::Tanh)
        .unwrap_err();
    assert!(err.to_string().contains("mul_act"), "{err}");
}

#[test]
fn gradcheck_mul_act() {
    check_rows(vec![
        row(
            "mul_act tanh",
            |x| x[0].mul_act(&x[1], Activation::Tanh),
            vec![rnd(&[2, 3], 1), rnd(&[2, 3], 2)],
        ),
        row(
            "mul_act sigmoid",
            |x| x[0].mul_act(&x[1], Activation::Sigmoid),
            vec![rnd(&[2, 3], 3), rnd(&[2, 3], 4)],
        ),
        row(
            "mul_act relu",
            |x| x[0].mul_act(&x[1], Activation::Relu),
            vec![rnd(&[2, 3], 5), away_from_zero(&[2, 3], 6)],
        ),
        row(
            "mul_act tanh, broadcast",
            |x| x[0].mul_act(&x[1], Activation::Tanh),
            vec![rnd(&[2, 1], 7), rnd(&[3], 8)],
        ),
    ]);
}

#[test]
fn mul_act_has_the_bits_of_its_composite() {
    type Operands = fn(&[Tensor<f32>]) -> Result<[Tensor<f32>; 2]>;
    let f32_leaf = |shape: &[usize], seed| rnd(shape, seed).cast::<f32>().requires_grad();
    // two whole [5, 4] tensors, or two column blocks of one [5, 8] (strided, as an LSTM's
    // output gate is)
    let whole: (Vec<Tensor<f32>>, Operands) =
        ((0..2).map(|j| f32_leaf(&[5, 4], 60 + j)).collect(), |l| {
            Ok([l[0].clone(), l[1].clone()])
        });
    let strided: (Vec<Tensor<f32>>, Operands) = (vec![f32_leaf(&[5, 8], 70)], |l| {
        Ok([l[0].narrow(1, 0, 4)?, l[0].narrow(1, 4, 4)?])
    });
    for (name, (leaves, ops)) in [("whole", whole), ("strided", strided)] {
        for act in [Activation::Tanh, Activation::Sigmoid, Activation::Relu] {
            let fused = bits_of(&leaves, |l| {
                let [a, b] = ops(l)?;
                a.mul_act(&b, act)
            });
            let composite = bits_of(&leaves, |l| {
                let [a, b] = ops(l)?;
                let t = match act {
                    Activation::Tanh => b.tanh(),
                    Activation::Sigmoid => b.sigmoid(),
                    Activation::Relu => b.relu(),
                };
                a.mul(&t)
            });
            assert_eq!(fused, composite, "{act:?}, {name} operands");
        }
    }
}
