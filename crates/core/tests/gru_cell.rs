//! `gru_cell`: hand-computed values and gradients, gradcheck rows, bad shapes, and the bits of
//! the composite it replaces in the GRU step (values and gradients, on contiguous and strided
//! operands, with and without `b_hn`).

mod common;

use common::*;
use retrograd_core::{Result, Tensor};

#[test]
fn gru_cell_values_and_gradients_by_hand() {
    // one row, H = 1: x = [0, ln 3, 0.5], w = [0, 0, 1], h = 2, b_hn = 0.5
    // r = σ(0) = 1/2, z = σ(ln 3) = 3/4, m = 1 + 0.5 = 1.5, n = tanh(0.5 + 0.75) = tanh(1.25)
    let l3 = 3f64.ln();
    let x = leaf(&[0.0, l3, 0.5], &[1, 3]);
    let w = leaf(&[0.0, 0.0, 1.0], &[1, 3]);
    let h = leaf(&[2.0], &[1, 1]);
    let b = leaf(&[0.5], &[1]);
    let y = x.gru_cell(&w, &h, Some(&b)).unwrap();
    let n = 1.25f64.tanh();
    let (r, z) = (0.5, 0.75);
    assert_tensor(&y, &[1, 1], &[n + z * (2.0 - n)], 1e-15);
    // upstream 2: dn = 2 (1 − z), dp = dn (1 − n²), dr = dp m, dm = dp r,
    // dz = 2 (h − n); ∂x_r = ∂w_r = dr r (1 − r), ∂x_z = ∂w_z = dz z (1 − z), ∂x_n = dp,
    // ∂w_n = ∂b_hn = dm, ∂h = 2 z
    let g = y.backward_with(&t64(&[2.0], &[1, 1])).unwrap();
    let dp = 2.0 * (1.0 - z) * (1.0 - n * n);
    let (dr, dm, dz) = (dp * 1.5, dp * r, 2.0 * (2.0 - n));
    let (dxr, dxz) = (dr * r * (1.0 - r), dz * z * (1.0 - z));
    assert_close(&grad_of(&g, &x), &[dxr, dxz, dp], 1e-15);
    assert_close(&grad_of(&g, &w), &[dxr, dxz, dm], 1e-15);
    assert_close(&grad_of(&g, &h), &[2.0 * z], 1e-15);
    assert_close(&grad_of(&g, &b), &[dm], 1e-15);
}

#[test]
fn gradcheck_gru_cell() {
    check_rows(vec![
        row(
            "gru_cell",
            |x| x[0].gru_cell(&x[1], &x[2], Some(&x[3])),
            vec![
                rnd(&[3, 6], 1),
                rnd(&[3, 6], 2),
                rnd(&[3, 2], 3),
                rnd(&[2], 4),
            ],
        ),
        row(
            "gru_cell without b_hn, strided hidden state",
            |x| x[0].gru_cell(&x[1], &x[2].narrow(1, 1, 2)?, None),
            vec![rnd(&[2, 6], 5), rnd(&[2, 6], 6), rnd(&[2, 4], 7)],
        ),
    ]);
}

#[test]
fn gru_cell_names_bad_shapes() {
    let z = |shape: &[usize]| t64(&vec![0.; shape.iter().product()], shape);
    run_error_cases(vec![
        case(
            "projections not 3H wide",
            move || z(&[2, 5]).gru_cell(&z(&[2, 6]), &z(&[2, 2]), None),
            &["gru_cell", "[2, 5]", "[2, 6]", "[2, 2]"],
        ),
        case(
            "batch sizes differ",
            move || z(&[2, 6]).gru_cell(&z(&[2, 6]), &z(&[3, 2]), None),
            &["gru_cell", "[3, 2]"],
        ),
        case(
            "b_hn of the wrong length",
            move || z(&[2, 6]).gru_cell(&z(&[2, 6]), &z(&[2, 2]), Some(&z(&[3]))),
            &["gru_cell", "b_hn", "[3]"],
        ),
    ]);
}

/// The GRU step before the fused op.
fn composite(
    gx: &Tensor<f32>,
    hw: &Tensor<f32>,
    h: &Tensor<f32>,
    b: Option<&Tensor<f32>>,
) -> Result<Tensor<f32>> {
    let hs = h.shape()[1];
    let rz = gx
        .narrow(1, 0, 2 * hs)?
        .add(&hw.narrow(1, 0, 2 * hs)?)?
        .sigmoid();
    let (r, z) = (rz.narrow(1, 0, hs)?, rz.narrow(1, hs, hs)?);
    let hw_n = hw.narrow(1, 2 * hs, hs)?;
    let hw_n = match b {
        Some(b) => hw_n.add(b)?,
        None => hw_n,
    };
    let n = gx.narrow(1, 2 * hs, hs)?.addcmul(&r, &hw_n, 1.0)?.tanh();
    n.lerp(h, &z)
}

#[test]
fn gru_cell_has_the_bits_of_its_composite() {
    type Operands = fn(&[Tensor<f32>]) -> Result<[Tensor<f32>; 3]>;
    let f32_leaf = |shape: &[usize], seed| rnd(shape, seed).cast::<f32>().requires_grad();
    // x, w [6, 12] and h [6, 4] whole, or column blocks of wider tensors (strided)
    let whole: (Vec<Tensor<f32>>, Operands) = (
        vec![
            f32_leaf(&[6, 12], 70),
            f32_leaf(&[6, 12], 71),
            f32_leaf(&[6, 4], 72),
            f32_leaf(&[4], 73),
        ],
        |l| Ok([l[0].clone(), l[1].clone(), l[2].clone()]),
    );
    let strided: (Vec<Tensor<f32>>, Operands) = (
        vec![
            f32_leaf(&[6, 14], 74),
            f32_leaf(&[6, 13], 75),
            f32_leaf(&[6, 9], 76),
            f32_leaf(&[4], 77),
        ],
        |l| {
            Ok([
                l[0].narrow(1, 2, 12)?,
                l[1].narrow(1, 1, 12)?,
                l[2].narrow(1, 5, 4)?,
            ])
        },
    );
    for (name, (leaves, ops)) in [("whole", whole), ("strided", strided)] {
        for with_b in [true, false] {
            let used = if with_b { &leaves[..] } else { &leaves[..3] };
            let fused = bits_of(used, |l| {
                let [x, w, h] = ops(l)?;
                x.gru_cell(&w, &h, l.get(3))
            });
            let reference = bits_of(used, |l| {
                let [x, w, h] = ops(l)?;
                composite(&x, &w, &h, l.get(3))
            });
            assert_eq!(fused, reference, "gru_cell, {name} operands, b_hn {with_b}");
        }
    }
}
