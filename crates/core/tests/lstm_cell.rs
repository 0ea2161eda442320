//! `lstm_cell`: hand-computed values and gradients, a gradcheck row, bad shapes, and the bits
//! of the composite it replaces in the LSTM step (values and gradients, on contiguous and
//! strided operands).

mod common;

use common::*;
use retrograd_core::{Result, Tensor};

#[test]
fn lstm_cell_values_and_gradients_by_hand() {
    // one row, H = 2: i = [0.5, 1], f = [0.25, 0], g = [0.8, -0.5], o = [1, 0.5]; c = [2, 3]
    let gates = leaf(&[0.5, 1.0, 0.25, 0.0, 0.8, -0.5, 1.0, 0.5], &[1, 8]);
    let c = leaf(&[2.0, 3.0], &[1, 2]);
    let y = gates.lstm_cell(&c).unwrap();
    // c' = f c + i g = [0.5 + 0.4, 0 - 0.5]; h' = o tanh(c')
    let (t0, t1) = (0.9f64.tanh(), (-0.5f64).tanh());
    assert_tensor(&y, &[2, 2], &[t0, 0.5 * t1, 0.9, -0.5], 1e-15);
    // upstream dh = [1, 2], dc = [3, -1]:
    // dc' = dc + dh o (1 - t²), di = dc' g, df = dc' c, dg = dc' i, do = dh t, ∂c = dc' f
    let g = y
        .backward_with(&t64(&[1.0, 2.0, 3.0, -1.0], &[2, 2]))
        .unwrap();
    let d0 = 3.0 + 1.0 * 1.0 * (1.0 - t0 * t0);
    let d1 = -1.0 + 2.0 * 0.5 * (1.0 - t1 * t1);
    #[rustfmt::skip]
    let want = [
        d0 * 0.8, d1 * -0.5, // di
        d0 * 2.0, d1 * 3.0,  // df
        d0 * 0.5, d1 * 1.0,  // dg
        1.0 * t0, 2.0 * t1,  // do
    ];
    assert_close(&grad_of(&g, &gates), &want, 1e-15);
    assert_close(&grad_of(&g, &c), &[d0 * 0.25, d1 * 0.0], 1e-15);
}

#[test]
fn gradcheck_lstm_cell() {
    check_rows(vec![
        row(
            "lstm_cell",
            |x| x[0].lstm_cell(&x[1]),
            vec![rnd(&[3, 8], 1), rnd(&[3, 2], 2)],
        ),
        row(
            "lstm_cell, strided cell state",
            |x| x[0].lstm_cell(&x[1].narrow(1, 1, 3)?),
            vec![rnd(&[2, 12], 3), rnd(&[2, 5], 4)],
        ),
    ]);
}

#[test]
fn lstm_cell_names_bad_shapes() {
    run_error_cases(vec![
        case(
            "gates not 4H wide",
            || t64(&[0.; 14], &[2, 7]).lstm_cell(&t64(&[0.; 4], &[2, 2])),
            &["lstm_cell", "[2, 7]", "[2, 2]"],
        ),
        case(
            "batch sizes differ",
            || t64(&[0.; 16], &[2, 8]).lstm_cell(&t64(&[0.; 6], &[3, 2])),
            &["lstm_cell", "[2, 8]", "[3, 2]"],
        ),
        case(
            "a 1-D cell state",
            || t64(&[0.; 8], &[1, 8]).lstm_cell(&t64(&[0.; 2], &[2])),
            &["lstm_cell", "[2]"],
        ),
    ]);
}

#[test]
fn lstm_cell_has_the_bits_of_its_composite() {
    type Operands = fn(&[Tensor<f32>]) -> Result<(Tensor<f32>, Tensor<f32>)>;
    let f32_leaf = |shape: &[usize], seed| rnd(shape, seed).cast::<f32>().requires_grad();
    // gates [5, 12] and c [5, 3] whole, or both column blocks of wider tensors (strided)
    let whole: (Vec<Tensor<f32>>, Operands) =
        (vec![f32_leaf(&[5, 12], 60), f32_leaf(&[5, 3], 61)], |l| {
            Ok((l[0].clone(), l[1].clone()))
        });
    let strided: (Vec<Tensor<f32>>, Operands) =
        (vec![f32_leaf(&[5, 15], 62), f32_leaf(&[5, 7], 63)], |l| {
            Ok((l[0].narrow(1, 2, 12)?, l[1].narrow(1, 4, 3)?))
        });
    for (name, (leaves, ops)) in [("whole", whole), ("strided", strided)] {
        let fused = bits_of(&leaves, |l| {
            let (gates, c) = ops(l)?;
            gates.lstm_cell(&c)
        });
        // the LSTM step before the fused op: four gate slices, mul, addcmul, tanh, mul
        let composite = bits_of(&leaves, |l| {
            let (gates, c) = ops(l)?;
            let hs = c.shape()[1];
            let [i, f, g, o] = [0, 1, 2, 3].map(|k| gates.narrow(1, k * hs, hs).unwrap());
            let c = f.mul(&c)?.addcmul(&i, &g, 1.0)?;
            let h = o.mul(&c.tanh())?;
            Tensor::cat(&[&h, &c], 0)
        });
        assert_eq!(fused, composite, "lstm_cell, {name} operands");
    }
}
