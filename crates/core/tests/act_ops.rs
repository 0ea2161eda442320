//! Elementwise ops with an activation: `mul_act` (`a ⊙ act(b)`, the LSTM's `o ⊙ tanh(c)`),
//! `add_act` (`act(a + b)`, the GRU's gates) and `addcmul_act` (`act(a + v·b ⊙ c)`, the GRU's
//! candidate state): hand-computed values and gradients, broadcasting and the bad-shape
//! errors, gradcheck rows, and the composites' bits (`a.mul(&b.tanh())` and the like, values
//! and gradients, for each activation, on contiguous and strided operands), which is what lets
//! the LSTM and GRU steps use them without changing a result.

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
fn add_act_and_addcmul_act_values_and_gradients_by_hand() {
    // add_act sigmoid: a + b = [ln 3, 0], y = σ(a + b) = [0.75, 0.5];
    // upstream [1, 4]: da = db = g·y·(1 − y) = [0.1875, 1]
    let (a, b) = (leaf(&[LN3 - 1., 0.], &[2]), leaf(&[1., 0.], &[2]));
    let y = a.add_act(&b, Activation::Sigmoid).unwrap();
    assert_tensor(&y, &[2], &[0.75, 0.5], 1e-12);
    let g = y.backward_with(&t64(&[1., 4.], &[2])).unwrap();
    assert_close(&grad_of(&g, &a), &[0.1875, 1.], 1e-12);
    assert_close(&grad_of(&g, &b), &[0.1875, 1.], 1e-12);
    // addcmul_act tanh, v = 0.5: s = a + 0.5·b·c = [0 + 0.5·2·ln 2, 1 + 0.5·(-1)·2] = [ln 2, 0],
    // y = tanh(s) = [0.6, 0]; upstream [1, 10]: g' = g·(1 − y²) = [0.64, 10],
    // da = g' = [0.64, 10], db = 0.5·g'·c = [0.32·ln 2, 10], dc = 0.5·g'·b = [0.64, -5]
    let (a, b, c) = (
        leaf(&[0., 1.], &[2]),
        leaf(&[2., -1.], &[2]),
        leaf(&[LN2, 2.], &[2]),
    );
    let y = a.addcmul_act(&b, &c, 0.5, Activation::Tanh).unwrap();
    assert_tensor(&y, &[2], &[0.6, 0.], 1e-12);
    let g = y.backward_with(&t64(&[1., 10.], &[2])).unwrap();
    assert_close(&grad_of(&g, &a), &[0.64, 10.], 1e-12);
    assert_close(&grad_of(&g, &b), &[0.32 * LN2, 10.], 1e-12);
    assert_close(&grad_of(&g, &c), &[0.64, -5.], 1e-12);
    // relu: y = relu([1 + 2·3, 1 + 2·(-3)]) = [7, 0]; upstream ones: g' = [1, 0],
    // da = [1, 0], db = g'·c = [3, 0], dc = g'·b = [2, 0]
    let (a, b, c) = (
        leaf(&[1., 1.], &[2]),
        leaf(&[2., 2.], &[2]),
        leaf(&[3., -3.], &[2]),
    );
    let y = a.addcmul_act(&b, &c, 1.0, Activation::Relu).unwrap();
    assert_tensor(&y, &[2], &[7., 0.], 0.0);
    let g = y.sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &a), &[1., 0.], 0.0);
    assert_close(&grad_of(&g, &b), &[3., 0.], 0.0);
    assert_close(&grad_of(&g, &c), &[2., 0.], 0.0);
}

#[test]
fn act_ops_broadcast_and_name_bad_shapes() {
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
    // relu(a + b) over [2, 2] + [2]: [0, 12, 2, 14]; db[j] = Σ_i relu'(...) = [1, 2] (relu' at
    // 0 is 0)
    let y = a.add_act(&b, Activation::Relu).unwrap();
    assert_tensor(&y, &[2, 2], &[0., 12., 2., 14.], 0.0);
    let g = y.sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &b), &[1., 2.], 0.0);
    // relu(a − b ⊙ c), c a column [2, 1]: relu([1 + 1, 2 − 10, 3 − 1, 4 + 10]) = [2, 0, 2, 14]
    let c = t64(&[1., -1.], &[2, 1]);
    let y = a.addcmul_act(&b, &c, -1.0, Activation::Relu).unwrap();
    assert_tensor(&y, &[2, 2], &[2., 0., 2., 14.], 0.0);
    let bad = t64(&[1., 2., 3.], &[3]);
    let err = a.add_act(&bad, Activation::Tanh).unwrap_err();
    assert!(err.to_string().contains("add_act"), "{err}");
    let err = a.addcmul_act(&b, &bad, 1.0, Activation::Tanh).unwrap_err();
    assert!(err.to_string().contains("addcmul_act"), "{err}");
}

#[test]
fn gradcheck_act_ops() {
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
        row(
            "add_act sigmoid",
            |x| x[0].add_act(&x[1], Activation::Sigmoid),
            vec![rnd(&[2, 3], 9), rnd(&[2, 3], 10)],
        ),
        row(
            "add_act tanh, broadcast",
            |x| x[0].add_act(&x[1], Activation::Tanh),
            vec![rnd(&[2, 3], 11), rnd(&[3], 12)],
        ),
        row(
            "add_act relu",
            |x| x[0].add_act(&x[1], Activation::Relu),
            // the same values twice: a + b = 2a, away from the kink
            vec![away_from_zero(&[2, 3], 13), away_from_zero(&[2, 3], 13)],
        ),
        row(
            "addcmul_act tanh",
            |x| x[0].addcmul_act(&x[1], &x[2], 1.0, Activation::Tanh),
            vec![rnd(&[2, 3], 14), rnd(&[2, 3], 15), rnd(&[2, 3], 16)],
        ),
        row(
            "addcmul_act sigmoid, value -0.7, broadcast",
            |x| x[0].addcmul_act(&x[1], &x[2], -0.7, Activation::Sigmoid),
            vec![rnd(&[2, 3], 17), rnd(&[3], 18), rnd(&[2, 1], 19)],
        ),
    ]);
}

#[test]
fn act_ops_have_the_bits_of_their_composites() {
    type Operands = fn(&[Tensor<f32>]) -> Result<[Tensor<f32>; 3]>;
    let f32_leaf = |shape: &[usize], seed| rnd(shape, seed).cast::<f32>().requires_grad();
    // three whole [5, 4] tensors, or three column blocks of one [5, 12] (strided, as a
    // recurrent step's gates are); mul_act and add_act take the first two
    let whole: (Vec<Tensor<f32>>, Operands) =
        ((0..3).map(|j| f32_leaf(&[5, 4], 60 + j)).collect(), |l| {
            Ok([l[0].clone(), l[1].clone(), l[2].clone()])
        });
    let strided: (Vec<Tensor<f32>>, Operands) = (vec![f32_leaf(&[5, 12], 70)], |l| {
        Ok([
            l[0].narrow(1, 0, 4)?,
            l[0].narrow(1, 4, 4)?,
            l[0].narrow(1, 8, 4)?,
        ])
    });
    for (name, (leaves, ops)) in [("whole", whole), ("strided", strided)] {
        for act in [Activation::Tanh, Activation::Sigmoid, Activation::Relu] {
            for (op, fused, composite) in CASES {
                let fused = bits_of(&leaves, |l| fused(&ops(l)?, act));
                let composite = bits_of(&leaves, |l| composite(&ops(l)?, act));
                assert_eq!(fused, composite, "{op} {act:?}, {name} operands");
            }
        }
    }
}

/// An op on three operands (the first two, or all three) with an activation.
type Form = fn(&[Tensor<f32>; 3], Activation) -> Result<Tensor<f32>>;

/// Each op with an activation, beside the composite whose bits it keeps.
const CASES: [(&str, Form, Form); 3] = [
    (
        "mul_act",
        |[a, b, _], act| a.mul_act(b, act),
        |[a, b, _], act| a.mul(&single(b, act)),
    ),
    (
        "add_act",
        |[a, b, _], act| a.add_act(b, act),
        |[a, b, _], act| Ok(single(&a.add(b)?, act)),
    ),
    (
        "addcmul_act",
        |[a, b, c], act| a.addcmul_act(b, c, 1.0, act),
        |[a, b, c], act| Ok(single(&a.addcmul(b, c, 1.0)?, act)),
    ),
];

/// The single-activation op for `act`.
fn single(t: &Tensor<f32>, act: Activation) -> Tensor<f32> {
    match act {
        Activation::Tanh => t.tanh(),
        Activation::Sigmoid => t.sigmoid(),
        Activation::Relu => t.relu(),
    }
}
