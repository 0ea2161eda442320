//! `addcmul` and `lerp`: hand-computed values and gradients, broadcasting, gradcheck rows, and
//! the composites' bits (values and gradients, on contiguous and strided operands), which is
//! what lets the GRU and LSTM steps use them without changing a result.

mod common;

use common::*;
use retrograd_core::{Result, Tensor};

#[test]
fn addcmul_values_and_gradients_by_hand() {
    // y = a + v·b·c with v = 2: [1 + 2·3·5, 2 + 2·4·(-1)] = [31, -6]
    let (a, b, c) = (
        leaf(&[1., 2.], &[2]),
        leaf(&[3., 4.], &[2]),
        leaf(&[5., -1.], &[2]),
    );
    let y = a.addcmul(&b, &c, 2.0).unwrap();
    assert_tensor(&y, &[2], &[31., -6.], 0.0);
    // upstream [1, 10]: da = g = [1, 10], db = 2·g·c = [10, -20], dc = 2·g·b = [6, 80]
    let g = y.backward_with(&t64(&[1., 10.], &[2])).unwrap();
    assert_close(&grad_of(&g, &a), &[1., 10.], 0.0);
    assert_close(&grad_of(&g, &b), &[10., -20.], 0.0);
    assert_close(&grad_of(&g, &c), &[6., 80.], 0.0);
}

#[test]
fn lerp_values_and_gradients_by_hand() {
    // y = a + w·(b − a): [0 + 0.25·(4 − 0), 10 + 1·(20 − 10), 2 + 0·(7 − 2)] = [1, 20, 2]
    let (a, b, w) = (
        leaf(&[0., 10., 2.], &[3]),
        leaf(&[4., 20., 7.], &[3]),
        leaf(&[0.25, 1.0, 0.0], &[3]),
    );
    let y = a.lerp(&b, &w).unwrap();
    assert_tensor(&y, &[3], &[1., 20., 2.], 0.0);
    // upstream [2, 3, 4]: da = g(1 − w) = [1.5, 0, 4], db = g·w = [0.5, 3, 0],
    // dw = g(b − a) = [8, 30, 20]
    let g = y.backward_with(&t64(&[2., 3., 4.], &[3])).unwrap();
    assert_close(&grad_of(&g, &a), &[1.5, 0., 4.], 0.0);
    assert_close(&grad_of(&g, &b), &[0.5, 3., 0.], 0.0);
    assert_close(&grad_of(&g, &w), &[8., 30., 20.], 0.0);
}

#[test]
fn ternary_ops_broadcast_and_name_bad_shapes() {
    // a [2, 2], b a row [2], c a column [2, 1]: y[i][j] = a[i][j] + b[j]·c[i]
    let a = leaf(&[1., 2., 3., 4.], &[2, 2]);
    let b = leaf(&[10., 20.], &[2]);
    let c = leaf(&[1., -1.], &[2, 1]);
    let y = a.addcmul(&b, &c, 1.0).unwrap();
    assert_tensor(&y, &[2, 2], &[11., 22., -7., -16.], 0.0);
    // db[j] = Σ_i c[i] = 0, dc[i] = Σ_j b[j] = 30
    let g = y.sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &b), &[0., 0.], 0.0);
    assert_close(&grad_of(&g, &c), &[30., 30.], 0.0);
    // a scalar weight
    let half = t64(&[0.5], &[1]);
    let mid = a.lerp(&t64(&[3., 4., 5., 6.], &[2, 2]), &half).unwrap();
    assert_tensor(&mid, &[2, 2], &[2., 3., 4., 5.], 0.0);
    let err = a.addcmul(&b, &t64(&[1., 2., 3.], &[3]), 1.0).unwrap_err();
    assert!(err.to_string().contains("addcmul"), "{err}");
    let err = a.lerp(&t64(&[1., 2., 3.], &[3]), &half).unwrap_err();
    assert!(err.to_string().contains("lerp"), "{err}");
}

#[test]
fn gradcheck_ternary_ops() {
    check_rows(vec![
        row(
            "addcmul",
            |x| x[0].addcmul(&x[1], &x[2], 1.0),
            vec![rnd(&[2, 3], 1), rnd(&[2, 3], 2), rnd(&[2, 3], 3)],
        ),
        row(
            "addcmul value -0.7, broadcast",
            |x| x[0].addcmul(&x[1], &x[2], -0.7),
            vec![rnd(&[2, 3], 4), rnd(&[3], 5), rnd(&[2, 1], 6)],
        ),
        row(
            "lerp",
            |x| x[0].lerp(&x[1], &x[2]),
            vec![rnd(&[2, 3], 7), rnd(&[2, 3], 8), rnd(&[2, 3], 9)],
        ),
        row(
            "lerp broadcast weight",
            |x| x[0].lerp(&x[1], &x[2]),
            vec![rnd(&[2, 3], 10), rnd(&[2, 3], 11), rnd(&[3], 12)],
        ),
    ]);
}

#[test]
fn ternary_ops_have_the_bits_of_their_composites() {
    type Operands = fn(&[Tensor<f32>]) -> Result<[Tensor<f32>; 3]>;
    let f32_leaf = |shape: &[usize], seed| rnd(shape, seed).cast::<f32>().requires_grad();
    // three whole [5, 4] tensors, or three column blocks of one [5, 12] (strided, as the gate
    // slices of a recurrent step are)
    let whole: (Vec<Tensor<f32>>, Operands) =
        ((0..3).map(|j| f32_leaf(&[5, 4], 40 + j)).collect(), |l| {
            Ok([l[0].clone(), l[1].clone(), l[2].clone()])
        });
    let strided: (Vec<Tensor<f32>>, Operands) = (vec![f32_leaf(&[5, 12], 50)], |l| {
        Ok([
            l[0].narrow(1, 0, 4)?,
            l[0].narrow(1, 4, 4)?,
            l[0].narrow(1, 8, 4)?,
        ])
    });
    for (name, (leaves, ops)) in [("whole", whole), ("strided", strided)] {
        let fused = bits_of(&leaves, |l| {
            let [a, b, c] = ops(l)?;
            a.addcmul(&b, &c, 1.0)
        });
        let composite = bits_of(&leaves, |l| {
            let [a, b, c] = ops(l)?;
            a.add(&b.mul(&c)?)
        });
        assert_eq!(fused, composite, "addcmul, {name} operands");
        let fused = bits_of(&leaves, |l| {
            let [a, b, w] = ops(l)?;
            a.lerp(&b, &w)
        });
        let composite = bits_of(&leaves, |l| {
            let [a, b, w] = ops(l)?;
            a.add(&w.mul(&b.sub(&a)?)?)
        });
        assert_eq!(fused, composite, "lerp, {name} operands");
    }
}
