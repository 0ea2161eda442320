//! Neural-network ops (softmax, log_softmax, cross_entropy, mse, dropout): hand-computed
//! values and gradients, PyTorch edge cases, then gradcheck rows.

mod common;

use common::*;
use rand::{rngs::StdRng, SeedableRng};
use retrograd_core::{CrossEntropyOptions, Reduction, Tensor};

const LN2: f64 = std::f64::consts::LN_2;
const LN3: f64 = 1.098_612_288_668_109_8;

/// Logits [[0, ln2, ln3], [0, 0, 0]]: row 0 has softmax [1/6, 1/3, 1/2] (exp = 1, 2, 3 over 6),
/// row 1 has softmax [1/3, 1/3, 1/3].
fn logits() -> Tensor<f64> {
    leaf(&[0., LN2, LN3, 0., 0., 0.], &[2, 3])
}

fn ce(x: &Tensor<f64>, t: &[i64], ignore_index: i64, reduction: Reduction) -> Tensor<f64> {
    x.cross_entropy_with(
        t,
        CrossEntropyOptions {
            ignore_index,
            reduction,
        },
    )
    .unwrap()
}

#[test]
fn softmax_values_and_gradient() {
    let x = leaf(&[0., LN2, LN3], &[3]);
    let y = x.softmax(0).unwrap();
    assert_tensor(&y, &[3], &[1. / 6., 1. / 3., 0.5], 1e-15);
    // upstream g = [1,0,0]: Σ g·y = 1/6, dx_i = y_i (g_i - 1/6) = [5/36, -1/18, -1/12].
    let g = y.backward_with(&t64(&[1., 0., 0.], &[3])).unwrap();
    assert_close(&grad_of(&g, &x), &[5. / 36., -1. / 18., -1. / 12.], 1e-15);
    // dim 0 of [[0,0],[ln3,0]]: column 0 → exp [1,3]/4, column 1 → [1/2, 1/2].
    let y = t64(&[0., 0., LN3, 0.], &[2, 2]).softmax(0).unwrap();
    assert_tensor(&y, &[2, 2], &[0.25, 0.5, 0.75, 0.5], 1e-15);
}

#[test]
fn log_softmax_values_and_gradient() {
    // [0, ln2, ln3] - ln 6 = [-ln6, -ln3, -ln2].
    let x = leaf(&[0., LN2, LN3], &[3]);
    let y = x.log_softmax(-1).unwrap();
    assert_tensor(&y, &[3], &[-(LN2 + LN3), -LN3, -LN2], 1e-15);
    // upstream [1,0,0]: dx = g - softmax · Σg = [1 - 1/6, -1/3, -1/2].
    let g = y.backward_with(&t64(&[1., 0., 0.], &[3])).unwrap();
    assert_close(&grad_of(&g, &x), &[5. / 6., -1. / 3., -0.5], 1e-15);
}

#[test]
fn softmax_of_large_inputs_stays_finite() {
    // log_softmax([1000, 0]) = [-ln(1 + e^-1000), -1000 - ln(1 + e^-1000)] = [0, -1000] in f64;
    // a naive exp(1000) would be inf.
    let x = leaf(&[1000., 0.], &[2]);
    let y = x.log_softmax(0).unwrap();
    assert_tensor(&y, &[2], &[0., -1000.], 1e-15);
    let g = y.sum_all().backward().unwrap();
    // dx = 1 - softmax · 2 = [1 - 2, 1 - 0] = [-1, 1]
    assert_close(&grad_of(&g, &x), &[-1., 1.], 1e-15);
    // equal large (and very negative) logits: softmax 1/2 each, log_softmax -ln 2 each.
    for v in [1000.0, -1000.0] {
        let t = t64(&[v, v], &[1, 2]);
        assert_tensor(&t.softmax(1).unwrap(), &[1, 2], &[0.5, 0.5], 1e-15);
        assert_tensor(&t.log_softmax(1).unwrap(), &[1, 2], &[-LN2, -LN2], 1e-15);
    }
    // also in f32, and through the fused cross-entropy.
    let x = Tensor::<f32>::from_vec(vec![1000., 0., -1000.], &[1, 3]).unwrap();
    let lp = x.log_softmax(1).unwrap().to_vec();
    assert!(lp.iter().all(|v| v.is_finite()), "{lp:?}");
    assert_eq!(lp[0], 0.0);
    let loss = x.requires_grad().cross_entropy(&[1]).unwrap();
    assert!((loss.item().unwrap() - 1000.0).abs() < 1e-3);
    let g = loss.backward().unwrap();
    assert!(g
        .iter()
        .all(|(_, t)| t.to_vec().iter().all(|v| v.is_finite())));
}

#[test]
fn cross_entropy_reductions() {
    // targets [2, 0]: row losses -ln(1/2) = ln2 and -ln(1/3) = ln3.
    let x = logits();
    assert_tensor(
        &ce(&x, &[2, 0], -100, Reduction::None),
        &[2],
        &[LN2, LN3],
        1e-15,
    );
    assert_tensor(
        &ce(&x, &[2, 0], -100, Reduction::Sum),
        &[],
        &[LN2 + LN3],
        1e-15,
    );
    let mean = x.cross_entropy(&[2, 0]).unwrap();
    assert_tensor(&mean, &[], &[(LN2 + LN3) / 2.], 1e-15);
    // mean: (softmax - onehot) / 2 per row:
    // row 0 ([1/6,1/3,1/2] - [0,0,1]) / 2 = [1/12, 1/6, -1/4];
    // row 1 ([1/3,1/3,1/3] - [1,0,0]) / 2 = [-1/3, 1/6, 1/6].
    let g = mean.backward().unwrap();
    let expected_mean = [1. / 12., 1. / 6., -0.25, -1. / 3., 1. / 6., 1. / 6.];
    assert_close(&grad_of(&g, &x), &expected_mean, 1e-15);
    // sum: twice the mean gradient.
    let g = ce(&x, &[2, 0], -100, Reduction::Sum).backward().unwrap();
    let expected_sum: Vec<f64> = expected_mean.iter().map(|v| 2.0 * v).collect();
    assert_close(&grad_of(&g, &x), &expected_sum, 1e-15);
    // none with upstream [1, 10]: row 0 [1/6,1/3,-1/2], row 1 10·[-2/3,1/3,1/3].
    let g = ce(&x, &[2, 0], -100, Reduction::None)
        .backward_with(&t64(&[1., 10.], &[2]))
        .unwrap();
    assert_close(
        &grad_of(&g, &x),
        &[1. / 6., 1. / 3., -0.5, -20. / 3., 10. / 3., 10. / 3.],
        1e-14,
    );
}

#[test]
fn cross_entropy_ignore_index() {
    let x = logits();
    let row0_grad = [1. / 6., 1. / 3., -0.5, 0., 0., 0.];
    // default -100: row 1 ignored and not counted: mean = ln2 / 1; its gradient row is 0.
    let loss = x.cross_entropy(&[2, -100]).unwrap();
    assert_tensor(&loss, &[], &[LN2], 1e-15);
    assert_close(&grad_of(&loss.backward().unwrap(), &x), &row0_grad, 1e-15);
    assert_tensor(
        &ce(&x, &[2, -100], -100, Reduction::None),
        &[2],
        &[LN2, 0.],
        1e-15,
    );
    // custom ignore_index 0: target 0 of row 1 is skipped the same way.
    let loss = ce(&x, &[2, 0], 0, Reduction::Mean);
    assert_tensor(&loss, &[], &[LN2], 1e-15);
    assert_close(&grad_of(&loss.backward().unwrap(), &x), &row0_grad, 1e-15);
    // with a custom ignore_index, -100 is just an invalid class.
    assert!(x
        .cross_entropy_with(
            &[2, -100],
            CrossEntropyOptions {
                ignore_index: 0,
                reduction: Reduction::Mean
            }
        )
        .is_err());
}

#[test]
fn cross_entropy_all_ignored_matches_pytorch() {
    // PyTorch: mean over zero counted rows is 0/0 = nan, and the gradient is all zeros.
    let x = logits();
    let loss = x.cross_entropy(&[-100, -100]).unwrap();
    assert!(loss.item().unwrap().is_nan());
    assert_close(&grad_of(&loss.backward().unwrap(), &x), &[0.; 6], 0.0);
    // sum over nothing is 0.
    assert_tensor(
        &ce(&x, &[-100, -100], -100, Reduction::Sum),
        &[],
        &[0.],
        0.0,
    );
}

#[test]
fn cross_entropy_equals_composite() {
    // The fused op must agree with -mean(gather(log_softmax(x), t)) in value and gradient.
    let x = rnd(&[4, 5], 3).requires_grad();
    let t = [4usize, 0, 2, 2];
    let fused = x.cross_entropy(&[4, 0, 2, 2]).unwrap();
    let composite = x
        .log_softmax(1)
        .unwrap()
        .gather(1, &t, &[4, 1])
        .unwrap()
        .mean_all()
        .neg();
    assert_close(&fused.to_vec(), &composite.to_vec(), 1e-14);
    let (gf, gc) = (fused.backward().unwrap(), composite.backward().unwrap());
    assert_close(&grad_of(&gf, &x), &grad_of(&gc, &x), 1e-14);
}

/// `n` class ids for `c` classes: row `i` is ignored (-100) when `every` divides it, else
/// class `i·step mod c`.
fn targets_ignoring_every(every: usize, step: usize, n: usize, c: usize) -> Vec<i64> {
    (0..n)
        .map(|i| {
            if i % every == 0 {
                -100
            } else {
                ((i * step) % c) as i64
            }
        })
        .collect()
}

#[test]
fn large_cross_entropy_split_over_threads_equals_composite() {
    // 300 x 400 logits (120k elements) take the row-block parallel path, forward and
    // backward, with a 3-thread pool so the blocks are uneven; every 7th row is ignored.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    pool.install(|| {
        let (n, c) = (300usize, 400usize);
        let x = rnd(&[n, c], 11).mul_scalar(5.0).requires_grad();
        let t = targets_ignoring_every(7, 37, n, c);
        let fused = x.cross_entropy(&t).unwrap();
        let kept: Vec<usize> = (0..n).filter(|i| i % 7 != 0).collect();
        let idx: Vec<usize> = kept.iter().map(|&i| t[i] as usize).collect();
        let composite = x
            .index_select(0, &kept)
            .unwrap()
            .log_softmax(1)
            .unwrap()
            .gather(1, &idx, &[kept.len(), 1])
            .unwrap()
            .mean_all()
            .neg();
        assert_close(&fused.to_vec(), &composite.to_vec(), 1e-13);
        let (gf, gc) = (fused.backward().unwrap(), composite.backward().unwrap());
        let gfx = grad_of(&gf, &x);
        assert_close(&gfx, &grad_of(&gc, &x), 1e-13);
        assert!(
            gfx[..c].iter().all(|&v| v == 0.0),
            "ignored row 0 has zero gradient"
        );
    });
}

#[test]
fn cross_entropy_gradient_is_the_softmax_op_bit_for_bit() {
    // The backward pass recomputes each row's softmax from the logits and the forward pass's
    // shift and sum: dL/dx = w·softmax(x) - w·onehot(t) with w = 1/count, the softmax the
    // bits of the softmax op's. f32, 400 x 700 logits (row blocks over two threads), every
    // 9th row ignored (exactly zero).
    for threads in [1, 2] {
        pool(threads).install(|| {
            let (n, c) = (400usize, 700usize);
            let x = rnd(&[n, c], 12)
                .mul_scalar(4.0)
                .cast::<f32>()
                .requires_grad();
            let t = targets_ignoring_every(9, 53, n, c);
            let count = t.iter().filter(|&&v| v >= 0).count();
            let g = x.cross_entropy(&t).unwrap().backward().unwrap();
            let got = g.get(&x).unwrap().to_vec();
            let p = {
                let _off = retrograd_core::no_grad();
                x.softmax(1).unwrap().to_vec()
            };
            let w = 1.0f32 / count as f32;
            for (i, &ti) in t.iter().enumerate() {
                for j in 0..c {
                    let want = if ti < 0 {
                        0.0
                    } else if j == ti as usize {
                        w * p[i * c + j] - w
                    } else {
                        w * p[i * c + j]
                    };
                    assert_eq!(
                        got[i * c + j].to_bits(),
                        want.to_bits(),
                        "threads {threads}, row {i}, column {j}"
                    );
                }
            }
        });
    }
}

#[test]
fn mse_values_and_gradient() {
    // diff [1,0,-2], squares [1,0,4]: mean 5/3, sum 5, none [1,0,4].
    let x = leaf(&[1., 2., 3.], &[3]);
    let t = leaf(&[0., 2., 5.], &[3]);
    let loss = x.mse(&t).unwrap();
    assert_tensor(&loss, &[], &[5. / 3.], 1e-15);
    assert_tensor(&x.mse_with(&t, Reduction::Sum).unwrap(), &[], &[5.], 0.0);
    assert_tensor(
        &x.mse_with(&t, Reduction::None).unwrap(),
        &[3],
        &[1., 0., 4.],
        0.0,
    );
    // d(mean)/dx = 2·diff/3 = [2/3, 0, -4/3]; the target gets the negative.
    let g = loss.backward().unwrap();
    assert_close(&grad_of(&g, &x), &[2. / 3., 0., -4. / 3.], 1e-15);
    assert_close(&grad_of(&g, &t), &[-2. / 3., 0., 4. / 3.], 1e-15);
}

#[test]
fn dropout_values_and_gradient() {
    // p = 0.25: every output is 0 or x / 0.75; about a quarter are zero; dy/dx = y / x.
    let x = Tensor::<f64>::full(&[10_000], 3.0).requires_grad();
    let y = x
        .dropout(0.25, true, &mut StdRng::seed_from_u64(5))
        .unwrap();
    let v = y.to_vec();
    assert!(
        v.iter().all(|&a| a == 0.0 || a == 4.0),
        "values not in {{0, 4}}"
    );
    let dropped = v.iter().filter(|&&a| a == 0.0).count() as f64 / 10_000.0;
    assert!(
        (0.22..0.28).contains(&dropped),
        "dropped fraction {dropped}"
    );
    let g = grad_of(&y.sum_all().backward().unwrap(), &x);
    for (gi, yi) in g.iter().zip(&v) {
        assert_eq!(*gi, yi / 3.0);
    }
    // same seed, same mask; another seed, another mask.
    let again = x
        .dropout(0.25, true, &mut StdRng::seed_from_u64(5))
        .unwrap();
    assert_eq!(again.to_vec(), v);
    let other = x
        .dropout(0.25, true, &mut StdRng::seed_from_u64(6))
        .unwrap();
    assert_ne!(other.to_vec(), v);
}

#[test]
fn dropout_edge_cases() {
    let mut rng = StdRng::seed_from_u64(0);
    let x = rnd(&[50], 1).requires_grad();
    // eval mode and p = 0 are the identity (the same tensor, nothing recorded).
    assert_eq!(x.dropout(0.5, false, &mut rng).unwrap().id(), x.id());
    assert_eq!(x.dropout(0.0, true, &mut rng).unwrap().id(), x.id());
    // p = 1 zeroes everything, gradient included.
    let y = x.dropout(1.0, true, &mut rng).unwrap();
    assert!(y.to_vec().iter().all(|&v| v == 0.0));
    assert_close(
        &grad_of(&y.sum_all().backward().unwrap(), &x),
        &[0.; 50],
        0.0,
    );
}

#[test]
fn gradcheck_nn_table() {
    check_rows(vec![
        row(
            "softmax dim -1",
            |x| x[0].softmax(-1),
            vec![rnd(&[3, 4], 1)],
        ),
        row("softmax dim 0", |x| x[0].softmax(0), vec![rnd(&[3, 4], 2)]),
        row(
            "softmax dim 1 of 3-D",
            |x| x[0].softmax(1),
            vec![rnd(&[2, 3, 2], 3)],
        ),
        row(
            "softmax of transposed",
            |x| x[0].t()?.softmax(1),
            vec![rnd(&[3, 4], 4)],
        ),
        row(
            "log_softmax dim -1",
            |x| x[0].log_softmax(-1),
            vec![rnd(&[3, 4], 5)],
        ),
        row(
            "log_softmax dim 0",
            |x| x[0].log_softmax(0),
            vec![rnd(&[3, 4], 6)],
        ),
        row(
            "log_softmax with large logits",
            |x| x[0].add_scalar(1000.0).log_softmax(1),
            vec![rnd(&[2, 3], 7)],
        ),
        row(
            "cross_entropy mean",
            |x| x[0].cross_entropy(&[1, 0, 3]),
            vec![rnd(&[3, 4], 8)],
        ),
        row(
            "cross_entropy sum",
            |x| x[0].cross_entropy_with(&[1, 0, 3], opts(-100, Reduction::Sum)),
            vec![rnd(&[3, 4], 9)],
        ),
        row(
            "cross_entropy none",
            |x| x[0].cross_entropy_with(&[2, 2, 0], opts(-100, Reduction::None)),
            vec![rnd(&[3, 4], 10)],
        ),
        row(
            "cross_entropy ignore -100",
            |x| x[0].cross_entropy(&[1, -100, 3]),
            vec![rnd(&[3, 4], 11)],
        ),
        row(
            "cross_entropy custom ignore_index",
            |x| x[0].cross_entropy_with(&[1, 3, 3], opts(3, Reduction::Mean)),
            vec![rnd(&[3, 4], 12)],
        ),
        row(
            "mse mean",
            |x| x[0].mse(&x[1]),
            vec![rnd(&[2, 3], 13), rnd(&[2, 3], 14)],
        ),
        row(
            "mse sum",
            |x| x[0].mse_with(&x[1], Reduction::Sum),
            vec![rnd(&[4], 15), rnd(&[4], 16)],
        ),
        row(
            "mse none",
            |x| x[0].mse_with(&x[1], Reduction::None),
            vec![rnd(&[4], 17), rnd(&[4], 18)],
        ),
        row(
            "dropout (same seed in every call, so the same mask)",
            |x| x[0].dropout(0.4, true, &mut StdRng::seed_from_u64(9)),
            vec![rnd(&[4, 5], 19)],
        ),
    ]);
}

fn opts(ignore_index: i64, reduction: Reduction) -> CrossEntropyOptions {
    CrossEntropyOptions {
        ignore_index,
        reduction,
    }
}
