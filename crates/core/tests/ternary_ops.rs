//! `addcmul`, `lerp` and `mul_add_mul`: hand-computed values and gradients, broadcasting,
//! gradcheck rows, and the composites' bits (values and gradients, on contiguous and strided
//! operands), which is what lets the GRU and LSTM steps use them without changing a result.

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
fn mul_add_mul_values_and_gradients_by_hand() {
    // y = a·b + c·d: [1·3 + 5·2, 2·4 + (-1)·0.5] = [13, 7.5]
    let (a, b, c, d) = (
        leaf(&[1., 2.], &[2]),
        leaf(&[3., 4.], &[2]),
        leaf(&[5., -1.], &[2]),
        leaf(&[2., 0.5], &[2]),
    );
    let y = a.mul_add_mul(&b, &c, &d).unwrap();
    assert_tensor(&y, &[2], &[13., 7.5], 0.0);
    // upstream [1, 10]: da = g·b = [3, 40], db = g·a = [1, 20], dc = g·d = [2, 5],
    // dd = g·c = [5, -10]
    let g = y.backward_with(&t64(&[1., 10.], &[2])).unwrap();
    assert_close(&grad_of(&g, &a), &[3., 40.], 0.0);
    assert_close(&grad_of(&g, &b), &[1., 20.], 0.0);
    assert_close(&grad_of(&g, &c), &[2., 5.], 0.0);
    assert_close(&grad_of(&g, &d), &[5., -10.], 0.0);
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
    // a ⊙ b + c ⊙ 0.5: y[i][j] = a[i][j]·b[j] + c[i]/2; dd = Σ c over [2, 2] = 0
    let y = a.mul_add_mul(&b, &c, &half).unwrap();
    assert_tensor(&y, &[2, 2], &[10.5, 40.5, 29.5, 79.5], 0.0);
    let g = y.sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &b), &[4., 6.], 0.0);
    assert_close(&grad_of(&g, &c), &[1., 1.], 0.0);
    let err = a
        .mul_add_mul(&b, &c, &t64(&[1., 2., 3.], &[3]))
        .unwrap_err();
    assert!(err.to_string().contains("mul_add_mul"), "{err}");
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
        row(
            "mul_add_mul",
            |x| x[0].mul_add_mul(&x[1], &x[2], &x[3]),
            vec![
                rnd(&[2, 3], 13),
                rnd(&[2, 3], 14),
                rnd(&[2, 3], 15),
                rnd(&[2, 3], 16),
            ],
        ),
        row(
            "mul_add_mul broadcast",
            |x| x[0].mul_add_mul(&x[1], &x[2], &x[3]),
            vec![
                rnd(&[2, 3], 17),
                rnd(&[3], 18),
                rnd(&[2, 1], 19),
                rnd(&[1], 20),
            ],
        ),
    ]);
}

#[test]
fn ternary_ops_have_the_bits_of_their_composites() {
    type Operands = fn(&[Tensor<f32>]) -> Result<[Tensor<f32>; 4]>;
    let f32_leaf = |shape: &[usize], seed| rnd(shape, seed).cast::<f32>().requires_grad();
    // four whole [5, 4] tensors, or four column blocks of one [5, 16] (strided, as the gate
    // slices of a recurrent step are); addcmul and lerp take the first three
    let whole: (Vec<Tensor<f32>>, Operands) =
        ((0..4).map(|j| f32_leaf(&[5, 4], 40 + j)).collect(), |l| {
            Ok([l[0].clone(), l[1].clone(), l[2].clone(), l[3].clone()])
        });
    let strided: (Vec<Tensor<f32>>, Operands) = (vec![f32_leaf(&[5, 16], 50)], |l| {
        Ok([
            l[0].narrow(1, 0, 4)?,
            l[0].narrow(1, 4, 4)?,
            l[0].narrow(1, 8, 4)?,
            l[0].narrow(1, 12, 4)?,
        ])
    });
    for (name, (leaves, ops)) in [("whole", whole), ("strided", strided)] {
        let fused = bits_of(&leaves, |l| {
            let [a, b, c, _] = ops(l)?;
            a.addcmul(&b, &c, 1.0)
        });
        let composite = bits_of(&leaves, |l| {
            let [a, b, c, _] = ops(l)?;
            a.add(&b.mul(&c)?)
        });
        assert_eq!(fused, composite, "addcmul, {name} operands");
        let fused = bits_of(&leaves, |l| {
            let [a, b, w, _] = ops(l)?;
            a.lerp(&b, &w)
        });
        let composite = bits_of(&leaves, |l| {
            let [a, b, w, _] = ops(l)?;
            a.add(&w.mul(&b.sub(&a)?)?)
        });
        assert_eq!(fused, composite, "lerp, {name} operands");
        // the LSTM's f ⊙ c + i ⊙ g, as it was composed before (mul, then addcmul)
        let fused = bits_of(&leaves, |l| {
            let [a, b, c, d] = ops(l)?;
            a.mul_add_mul(&b, &c, &d)
        });
        type Composite = fn(&[Tensor<f32>; 4]) -> Result<Tensor<f32>>;
        let composites: [Composite; 2] = [
            |[a, b, c, d]| a.mul(b)?.add(&c.mul(d)?),
            |[a, b, c, d]| a.mul(b)?.addcmul(c, d, 1.0),
        ];
        for composite in composites {
            let composite = bits_of(&leaves, |l| composite(&ops(l)?));
            assert_eq!(fused, composite, "mul_add_mul, {name} operands");
        }
    }
}
