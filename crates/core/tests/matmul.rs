//! Matrix products (2-D, batched 3-D, 3-D times a shared 2-D rhs, transposed and strided
//! operands, and sizes large enough for the matrixmultiply path): hand-computed values and
//! gradients, naive-product comparisons, then gradcheck rows.

mod common;

use common::*;
use retrograd_core::{Activation, Tensor};

#[test]
fn matmul_2d_values_and_gradients() {
    // [[1,2],[3,4]] @ [[5,6],[7,8]] = [[1·5+2·7, 1·6+2·8], [3·5+4·7, 3·6+4·8]] = [[19,22],[43,50]].
    // d(sum)/dA_ik = Σ_j B_kj (row sums of B: 11, 15); d(sum)/dB_kj = Σ_i A_ik (column sums
    // of A: 4, 6).
    let a = leaf(&[1., 2., 3., 4.], &[2, 2]);
    let b = leaf(&[5., 6., 7., 8.], &[2, 2]);
    let c = a.matmul(&b).unwrap();
    assert_tensor(&c, &[2, 2], &[19., 22., 43., 50.], 0.0);
    let g = c.sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &a), &[11., 15., 11., 15.], 0.0);
    assert_close(&grad_of(&g, &b), &[4., 4., 6., 6.], 0.0);
    // Non-square: [[1,2,3],[4,5,6]] @ [[1],[0],[-1]] = [[1-3],[4-6]] = [[-2],[-2]].
    let w = t64(&[1., 0., -1.], &[3, 1]);
    let x = t64(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
    assert_tensor(&x.matmul(&w).unwrap(), &[2, 1], &[-2., -2.], 0.0);
}

#[test]
fn addmm_values_gradients_and_errors() {
    // C + A B with A B = [[19,22],[43,50]] (as above) and C = [[1,-1],[2,0]]:
    // [[20,21],[45,50]]. d(sum)/dC = 1 everywhere; dA and dB as for the plain product.
    let a = leaf(&[1., 2., 3., 4.], &[2, 2]);
    let b = leaf(&[5., 6., 7., 8.], &[2, 2]);
    let c = leaf(&[1., -1., 2., 0.], &[2, 2]);
    let y = c.addmm(&a, &b).unwrap();
    assert_tensor(&y, &[2, 2], &[20., 21., 45., 50.], 0.0);
    let g = y.sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &c), &[1., 1., 1., 1.], 0.0);
    assert_close(&grad_of(&g, &a), &[11., 15., 11., 15.], 0.0);
    assert_close(&grad_of(&g, &b), &[4., 4., 6., 6.], 0.0);
    // A bias row broadcast over the rows gets the column sums of G (here 2 each), and so does
    // a 1-D bias row added by addmm itself. With G = y² (dL/dy = 2y), the column sums are
    // 2·(29 + 53) = 164 and 2·(42 + 70) = 224.
    let bias = leaf(&[10., 20.], &[2]);
    let y = bias.broadcast_to(&[2, 2]).unwrap().addmm(&a, &b).unwrap();
    assert_tensor(&y, &[2, 2], &[29., 42., 53., 70.], 0.0);
    let g = y.sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &bias), &[2., 2.], 0.0);
    let y = bias.addmm(&a, &b).unwrap();
    assert_tensor(&y, &[2, 2], &[29., 42., 53., 70.], 0.0);
    let g = y.mul(&y).unwrap().sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &bias), &[164., 224.], 0.0);
    assert_close(
        &grad_of(&g, &a),
        &[
            2. * (29. * 5. + 42. * 6.),
            2. * (29. * 7. + 42. * 8.),
            2. * (53. * 5. + 70. * 6.),
            2. * (53. * 7. + 70. * 8.),
        ],
        0.0,
    );
    // The added term must have the product's shape or be a row of its width; factors must
    // be 2-D.
    let err = |r: retrograd_core::Result<retrograd_core::Tensor<f64>>| r.unwrap_err().to_string();
    let msg = err(leaf(&[1., 2., 3.], &[3]).addmm(&a, &b));
    assert!(msg.contains("addmm") && msg.contains("[3]"), "{msg}");
    let msg = err(leaf(&[1., 2.], &[1, 2]).addmm(&a, &b));
    assert!(msg.contains("addmm") && msg.contains("[1, 2]"), "{msg}");
    let msg = err(c.addmm(&t64(&[1., 2.], &[2]), &b));
    assert!(msg.contains("addmm") && msg.contains("2-D"), "{msg}");
}

#[test]
fn a_bias_row_gets_the_bits_of_the_broadcast_routes_gradient_on_one_and_two_threads() {
    // 300 x 400 = 120k gradient elements: on two threads the helper sums half of the columns
    use rand::{rngs::StdRng, SeedableRng};
    let rng = &mut StdRng::seed_from_u64(11);
    let x = Tensor::<f32>::randn(&[300, 24], 0.0, 1.0, rng).unwrap();
    let w = Tensor::<f32>::randn(&[400, 24], 0.0, 1.0, rng).unwrap();
    let bias = Tensor::<f32>::randn(&[400], 0.0, 1.0, rng)
        .unwrap()
        .requires_grad();
    let grad = |y: Tensor<f32>| {
        let g = y.mul(&y).unwrap().sum_all().backward().unwrap();
        g.get(&bias).unwrap().to_vec()
    };
    let mut all = Vec::new();
    for threads in [1, 2] {
        pool(threads).install(|| {
            let row = grad(bias.addmm(&x, &w.t().unwrap()).unwrap());
            let broadcast = bias.broadcast_to(&[300, 400]).unwrap();
            let full = grad(broadcast.addmm(&x, &w.t().unwrap()).unwrap());
            assert_eq!(row, full, "{threads} thread(s)");
            all.push(row);
        });
    }
    assert_eq!(all[0], all[1], "one and two threads");
}

#[test]
fn addmm_act_values_gradients_and_errors() {
    // c + a b = [[0.5 + 1, -1 + 2]] = [[1.5, 1]] (b is the identity); relu keeps both, and
    // with c = [[-3, -3]] gives [[0, 0]]; tanh and sigmoid match the f64 formulas.
    let a = leaf(&[1., 2.], &[1, 2]);
    let b = leaf(&[1., 0., 0., 1.], &[2, 2]);
    let c = leaf(&[0.5, -1.], &[1, 2]);
    let relu = c.addmm_act(&a, &b, Activation::Relu).unwrap();
    assert_tensor(&relu, &[1, 2], &[1.5, 1.], 0.0);
    let neg = t64(&[-3., -3.], &[1, 2]);
    assert_tensor(
        &neg.addmm_act(&a, &b, Activation::Relu).unwrap(),
        &[1, 2],
        &[0., 0.],
        0.0,
    );
    let tanh = c.addmm_act(&a, &b, Activation::Tanh).unwrap();
    assert_tensor(&tanh, &[1, 2], &[1.5f64.tanh(), 1f64.tanh()], 1e-15);
    let sig = c.addmm_act(&a, &b, Activation::Sigmoid).unwrap();
    let s = |x: f64| 1.0 / (1.0 + (-x).exp());
    assert_tensor(&sig, &[1, 2], &[s(1.5), s(1.0)], 1e-15);
    // d(sum tanh)/dc = 1 - y², dA = G' Bᵀ = G', dB = Aᵀ G'
    let g = tanh.sum_all().backward().unwrap();
    let gp = [1. - 1.5f64.tanh().powi(2), 1. - 1f64.tanh().powi(2)];
    assert_close(&grad_of(&g, &c), &gp, 1e-15);
    assert_close(&grad_of(&g, &a), &gp, 1e-15);
    assert_close(
        &grad_of(&g, &b),
        &[gp[0], gp[1], 2. * gp[0], 2. * gp[1]],
        1e-15,
    );
    let err = t64(&[1., 2., 3.], &[1, 3])
        .addmm_act(&a, &b, Activation::Tanh)
        .unwrap_err()
        .to_string();
    assert!(err.contains("addmm_act"), "{err}");
}

#[test]
fn addmm_act_is_addmm_then_the_activation_bit_for_bit() {
    // The fused op computes the same values and gradients as the two ops it replaces, in f64
    // and f32, for every activation, with a bias row and a transposed, twice-used weight.
    fn run<E: retrograd_core::Element>(fused: bool, act: Activation) -> Vec<Vec<f64>> {
        let x = rnd(&[3, 4], 90).cast::<E>().requires_grad();
        let w = rnd(&[5, 4], 91).cast::<E>().requires_grad();
        let bias = rnd(&[5], 92).cast::<E>().requires_grad();
        let wt = w.t().unwrap();
        let c = bias.broadcast_to(&[3, 5]).unwrap();
        let step = |c: &Tensor<E>, a: &Tensor<E>| {
            if fused {
                c.addmm_act(a, &wt, act).unwrap()
            } else {
                let p = c.addmm(a, &wt).unwrap();
                match act {
                    Activation::Tanh => p.tanh(),
                    Activation::Sigmoid => p.sigmoid(),
                    Activation::Relu => p.relu(),
                }
            }
        };
        let h = step(&c, &x);
        let y = step(&c, &h.narrow(1, 1, 4).unwrap());
        let g = y.sum_all().backward().unwrap();
        vec![
            y.to_f64_vec(),
            g.get(&x).unwrap().to_f64_vec(),
            g.get(&w).unwrap().to_f64_vec(),
            g.get(&bias).unwrap().to_f64_vec(),
        ]
    }
    for act in [Activation::Tanh, Activation::Sigmoid, Activation::Relu] {
        assert_eq!(run::<f64>(true, act), run::<f64>(false, act), "{act:?} f64");
        assert_eq!(run::<f32>(true, act), run::<f32>(false, act), "{act:?} f32");
    }
}

#[test]
fn matmul_with_transposed_operands() {
    // bt = [[5,7],[6,8]] so bt.t() = [[5,6],[7,8]]; at = [[1,3],[2,4]] so at.t() = [[1,2],[3,4]].
    // All products equal [[19,22],[43,50]]; the gradients are the 2-D ones transposed back:
    // d/dbt = [[4,4],[6,6]]ᵀ = [[4,6],[4,6]], d/dat = [[11,15],[11,15]]ᵀ = [[11,11],[15,15]].
    let a = leaf(&[1., 2., 3., 4.], &[2, 2]);
    let at = leaf(&[1., 3., 2., 4.], &[2, 2]);
    let bt = leaf(&[5., 7., 6., 8.], &[2, 2]);
    let c = a.matmul(&bt.t().unwrap()).unwrap();
    assert_tensor(&c, &[2, 2], &[19., 22., 43., 50.], 0.0);
    let g = c.sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &bt), &[4., 6., 4., 6.], 0.0);
    let c = at.t().unwrap().matmul(&bt.t().unwrap()).unwrap();
    assert_tensor(&c, &[2, 2], &[19., 22., 43., 50.], 0.0);
    let g = c.sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &at), &[11., 11., 15., 15.], 0.0);
    assert_close(&grad_of(&g, &bt), &[4., 6., 4., 6.], 0.0);
}

#[test]
fn matmul_batched_3d() {
    // batch 0: [[1,2],[3,4]] @ [[5,6],[7,8]] = [[19,22],[43,50]]; batch 1: I @ [[2,3],[4,5]].
    let a = leaf(&[1., 2., 3., 4., 1., 0., 0., 1.], &[2, 2, 2]);
    let b = leaf(&[5., 6., 7., 8., 2., 3., 4., 5.], &[2, 2, 2]);
    let c = a.matmul(&b).unwrap();
    assert_tensor(&c, &[2, 2, 2], &[19., 22., 43., 50., 2., 3., 4., 5.], 0.0);
    // d(sum)/dA per batch: row sums of that batch's B → [11,15] and [5,9];
    // d(sum)/dB: column sums of that batch's A → [4,6] and [1,1].
    let g = c.sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &a), &[11., 15., 11., 15., 5., 9., 5., 9.], 0.0);
    assert_close(&grad_of(&g, &b), &[4., 4., 6., 6., 1., 1., 1., 1.], 0.0);
}

#[test]
fn matmul_3d_with_shared_2d_rhs() {
    // a = [[[1,2]],[[3,4]]] (shape [2,1,2]) times B = [[5,6],[7,8]]: [[[19,22]],[[43,50]]].
    // d/dB sums over the batch: Σ_b a_bᵀ 1 = [[1+3,1+3],[2+4,2+4]] = [[4,4],[6,6]];
    // d/da_b = 1 Bᵀ = [11, 15] for each batch.
    let a = leaf(&[1., 2., 3., 4.], &[2, 1, 2]);
    let b = leaf(&[5., 6., 7., 8.], &[2, 2]);
    let c = a.matmul(&b).unwrap();
    assert_tensor(&c, &[2, 1, 2], &[19., 22., 43., 50.], 0.0);
    let g = c.sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &a), &[11., 15., 11., 15.], 0.0);
    assert_close(&grad_of(&g, &b), &[4., 4., 6., 6.], 0.0);
}

#[test]
fn gradcheck_matmul_table() {
    check_rows(vec![
        row(
            "matmul 2-D",
            |x| x[0].matmul(&x[1]),
            vec![rnd(&[3, 4], 20), rnd(&[4, 2], 21)],
        ),
        row(
            "matmul a @ bᵀ",
            |x| x[0].matmul(&x[1].t()?),
            vec![rnd(&[3, 4], 22), rnd(&[2, 4], 23)],
        ),
        row(
            "matmul aᵀ @ b",
            |x| x[0].t()?.matmul(&x[1]),
            vec![rnd(&[4, 3], 24), rnd(&[4, 2], 25)],
        ),
        row(
            "matmul aᵀ @ bᵀ",
            |x| x[0].t()?.matmul(&x[1].t()?),
            vec![rnd(&[4, 3], 26), rnd(&[2, 4], 27)],
        ),
        row(
            "matmul batched 3-D",
            |x| x[0].matmul(&x[1]),
            vec![rnd(&[2, 3, 4], 28), rnd(&[2, 4, 2], 29)],
        ),
        row(
            "matmul batched, rhs transposed in the last two dims",
            |x| x[0].matmul(&x[1].transpose(1, 2)?),
            vec![rnd(&[2, 3, 4], 30), rnd(&[2, 2, 4], 31)],
        ),
        row(
            "matmul batched, lhs permuted (batch not outermost in storage)",
            |x| x[0].permute(&[1, 0, 2])?.matmul(&x[1]),
            vec![rnd(&[3, 2, 4], 32), rnd(&[2, 4, 2], 33)],
        ),
        row(
            "matmul 3-D x shared 2-D",
            |x| x[0].matmul(&x[1]),
            vec![rnd(&[2, 3, 4], 34), rnd(&[4, 2], 35)],
        ),
        row(
            "matmul 3-D x shared 2-D transposed (Linear on a sequence)",
            |x| x[0].matmul(&x[1].t()?),
            vec![rnd(&[2, 3, 4], 36), rnd(&[2, 4], 37)],
        ),
        row(
            "one transposed rhs used twice (deferred, gradient formed as (gᵀa)ᵀ)",
            |x| {
                let wt = x[1].t()?;
                x[0].matmul(&wt)?.tanh().matmul(&wt)
            },
            vec![rnd(&[3, 4], 42), rnd(&[4, 4], 43)],
        ),
        row(
            "addmm, full added term",
            |x| x[0].addmm(&x[1], &x[2]),
            vec![rnd(&[3, 2], 44), rnd(&[3, 4], 45), rnd(&[4, 2], 46)],
        ),
        row(
            "addmm, 1-D bias row added by the op and transposed rhs (Linear)",
            |x| x[0].addmm(&x[1], &x[2].t()?),
            vec![rnd(&[2], 63), rnd(&[3, 4], 64), rnd(&[2, 4], 65)],
        ),
        row(
            "addmm, broadcast bias row and transposed rhs",
            |x| x[0].broadcast_to(&[3, 2])?.addmm(&x[1], &x[2].t()?),
            vec![rnd(&[2], 47), rnd(&[3, 4], 48), rnd(&[2, 4], 49)],
        ),
        row(
            "addmm, added term a slice of a wider tensor, rhs used twice (recurrent step)",
            |x| {
                let wt = x[2].t()?;
                let h = x[0].narrow(1, 0, 3)?.addmm(&x[1], &wt)?.tanh();
                x[0].narrow(1, 3, 3)?.addmm(&h, &wt)
            },
            vec![rnd(&[2, 6], 50), rnd(&[2, 3], 51), rnd(&[3, 3], 52)],
        ),
        row(
            "addmm with a constant rhs (no deferred product)",
            |x| x[0].addmm(&x[1], &rnd(&[4, 2], 53).detach()),
            vec![rnd(&[3, 2], 54), rnd(&[3, 4], 55)],
        ),
        row(
            "addmm_act tanh, added term a slice, rhs used twice (an RNN step)",
            |x| {
                let wt = x[2].t()?;
                let h = x[0]
                    .narrow(1, 0, 3)?
                    .addmm_act(&x[1], &wt, Activation::Tanh)?;
                x[0].narrow(1, 3, 3)?.addmm_act(&h, &wt, Activation::Tanh)
            },
            vec![rnd(&[2, 6], 56), rnd(&[2, 3], 57), rnd(&[3, 3], 58)],
        ),
        row(
            "addmm_act sigmoid, broadcast bias row and transposed rhs",
            |x| {
                x[0].broadcast_to(&[3, 2])?
                    .addmm_act(&x[1], &x[2].t()?, Activation::Sigmoid)
            },
            vec![rnd(&[2], 59), rnd(&[3, 4], 60), rnd(&[2, 4], 61)],
        ),
        row(
            "addmm_act relu (pre-activations kept 0.04 away from the kink)",
            |x| x[0].addmm_act(&x[1].mul_scalar(0.04), &x[2], Activation::Relu),
            vec![
                away_from_zero(&[3, 2], 62),
                rnd(&[3, 4], 63),
                rnd(&[4, 2], 64),
            ],
        ),
        row(
            "matmul of narrowed (offset) operands",
            |x| x[0].narrow(0, 1, 2)?.matmul(&x[1].narrow(1, 1, 2)?),
            vec![rnd(&[3, 4], 38), rnd(&[4, 3], 39)],
        ),
        row(
            "matmul of a broadcast (stride-0) operand",
            |x| x[0].broadcast_to(&[3, 4])?.matmul(&x[1]),
            vec![rnd(&[1, 4], 40), rnd(&[4, 2], 41)],
        ),
    ]);
}

/// Row-major `a [m,k] @ b [k,n]` by the textbook triple loop.
fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    c
}

/// Row-major transpose of an `r x c` matrix.
fn transposed(x: &[f64], r: usize, c: usize) -> Vec<f64> {
    (0..r * c).map(|i| x[(i % r) * c + i / r]).collect()
}

#[test]
fn matmul_large_operands_match_naive_products() {
    // 40x33 @ 33x50 is 66,000 multiply-adds: large enough for the matrixmultiply path (tiny
    // products take direct loops). Forward, dA = G Bᵀ and dB = Aᵀ G are compared with the
    // triple loop for plain and transposed operand layouts.
    let (m, k, n) = (40, 33, 50);
    let a = rnd(&[m, k], 50).to_vec();
    let b = rnd(&[k, n], 51).to_vec();
    let up = rnd(&[m, n], 52);
    let want_c = naive(&a, &b, m, k, n);
    let want_da = naive(&up.to_vec(), &transposed(&b, k, n), m, n, k);
    let want_db = naive(&transposed(&a, m, k), &up.to_vec(), k, m, n);
    for (a_t, b_t) in [(false, false), (true, false), (false, true), (true, true)] {
        // a leaf holding the matrix, or its transpose (then viewed back with .t())
        let a_leaf = if a_t {
            leaf(&transposed(&a, m, k), &[k, m])
        } else {
            leaf(&a, &[m, k])
        };
        let b_leaf = if b_t {
            leaf(&transposed(&b, k, n), &[n, k])
        } else {
            leaf(&b, &[k, n])
        };
        let av = if a_t {
            a_leaf.t().unwrap()
        } else {
            a_leaf.clone()
        };
        let bv = if b_t {
            b_leaf.t().unwrap()
        } else {
            b_leaf.clone()
        };
        let c = av.matmul(&bv).unwrap();
        assert_tensor(&c, &[m, n], &want_c, 1e-12);
        let g = c.backward_with(&up).unwrap();
        let (da, db) = (grad_of(&g, &a_leaf), grad_of(&g, &b_leaf));
        let da = if a_t { transposed(&da, k, m) } else { da };
        let db = if b_t { transposed(&db, n, k) } else { db };
        assert_close(&da, &want_da, 1e-12);
        assert_close(&db, &want_db, 1e-12);
    }
    // 3-D x shared 2-D at the same size per batch: batch b of the product is a_b @ B, and dB
    // sums a_bᵀ G_b over both batches.
    let a3 = rnd(&[2, m, k], 53).requires_grad();
    let bl = leaf(&b, &[k, n]);
    let up3 = rnd(&[2, m, n], 54);
    let c = a3.matmul(&bl).unwrap();
    let (av, uv) = (a3.to_vec(), up3.to_vec());
    let mut want = naive(&av[..m * k], &b, m, k, n);
    want.extend(naive(&av[m * k..], &b, m, k, n));
    assert_tensor(&c, &[2, m, n], &want, 1e-12);
    let g = c.backward_with(&up3).unwrap();
    let db0 = naive(&transposed(&av[..m * k], m, k), &uv[..m * n], k, m, n);
    let db1 = naive(&transposed(&av[m * k..], m, k), &uv[m * n..], k, m, n);
    let want_db: Vec<f64> = db0.iter().zip(&db1).map(|(x, y)| x + y).collect();
    assert_close(&grad_of(&g, &bl), &want_db, 1e-12);
}

#[test]
fn a_weight_read_transposed_again_gives_the_same_bits_and_follows_updates() {
    // From its second read as `w.t()`, a weight's product reads a cached row-major transpose,
    // or in f32 on a CPU with AVX-512 its packed panels (`panel/`; the same bits as
    // matrixmultiply's for k <= 256). Every read must give the bits of the first (which used
    // the strided view), for f64 and f32, and an update of the weight must drop the copy
    // (else the third product below would use the old values).
    use retrograd_core::Parameter;
    let (m, k, n) = (24, 40, 60); // 57,600 multiply-adds: the packing path
    let x = rnd(&[m, k], 60);
    let w = Parameter::new(rnd(&[n, k], 61));
    let first = x.matmul(&w.value().t().unwrap()).unwrap().to_vec();
    assert_close(
        &first,
        &naive(&x.to_vec(), &transposed(&w.to_vec(), n, k), m, k, n),
        1e-12,
    );
    for _ in 0..3 {
        assert_eq!(x.matmul(&w.value().t().unwrap()).unwrap().to_vec(), first);
    }
    let xf = x.cast::<f32>();
    let wf = Parameter::new(w.value().cast::<f32>());
    let firstf = xf.matmul(&wf.value().t().unwrap()).unwrap().to_vec();
    for _ in 0..3 {
        assert_eq!(
            xf.matmul(&wf.value().t().unwrap()).unwrap().to_vec(),
            firstf
        );
    }
    // the same through addmm, with a bias row broadcast over the rows
    let bias = rnd(&[n], 62).broadcast_to(&[m, n]).unwrap();
    let y1 = bias.addmm(&x, &w.value().t().unwrap()).unwrap().to_vec();
    let y2 = bias.addmm(&x, &w.value().t().unwrap()).unwrap().to_vec();
    assert_eq!(y1, y2);
    // an optimizer-style in-place update: the next product sees the new values
    w.update(|d| d.iter_mut().for_each(|v| *v *= 2.0)).unwrap();
    let doubled: Vec<f64> = first.iter().map(|v| 2.0 * v).collect();
    assert_close(
        &x.matmul(&w.value().t().unwrap()).unwrap().to_vec(),
        &doubled,
        1e-12,
    );
}

#[test]
fn one_row_products_split_with_the_helper_thread_give_the_same_bits() {
    // A 1x256x1024 product (and its transposed-weight form) is split between the caller and
    // the helper thread when the pool has two threads. Each column is the same sum either
    // way, so one and two threads must agree bit for bit, also when several threads compete
    // for the helper (the losers compute alone). Checked against the triple loop too. The
    // first read of `w` runs the direct loops; later ones, on a CPU with AVX-512, its packed
    // panels (a different summation order), so the reference is the second read. The
    // contiguous copy is a new storage each time: always the direct loops.
    let (k, n) = (256, 1024);
    let x = rnd(&[1, k], 70).cast::<f32>();
    let w = rnd(&[n, k], 71).cast::<f32>();
    let pool = |t| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .unwrap()
    };
    let product = |t| {
        pool(t).install(|| {
            (
                x.matmul(&w.t().unwrap()).unwrap().to_vec(),
                x.matmul(&w.t().unwrap().contiguous()).unwrap().to_vec(),
            )
        })
    };
    let first = product(1);
    let one = product(1);
    let want = naive(&x.to_f64_vec(), &transposed(&w.to_f64_vec(), n, k), 1, k, n);
    assert_close(
        &first.0.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        &want,
        1e-3,
    );
    assert_close(
        &one.0.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        &want,
        1e-3,
    );
    for _ in 0..20 {
        assert_eq!(product(2), one);
    }
    std::thread::scope(|s| {
        let racers: Vec<_> = (0..4)
            .map(|_| s.spawn(|| (0..20).all(|_| product(2) == one)))
            .collect();
        assert!(racers.into_iter().all(|r| r.join().unwrap()));
    });
}

#[test]
fn products_split_in_two_give_the_same_bits_whoever_computes_the_second_block() {
    // Products from 2M multiply-adds are cut in two on a two-thread pool, by columns when
    // n > m and by rows otherwise; the second block goes to the helper thread, or to a rayon
    // worker while the helper is busy (four threads race for it below). Both compute the same
    // block with the same call, so every run must give the first run's bits, and the values
    // must match the triple loop. The w.t() operands also cover the transposed-copy path, or
    // with AVX-512 the packed panels (k <= 256 here: the same bits as matrixmultiply's).
    // Over panels (from a weight's second read), a product of 16 rows or more whose panels
    // take at most 1 MiB is cut by rows even when n > m, the helper writing its rows in place
    // (32 x 256 x 1024, an LSTM step; 64 x 256 x 256); with 2 MiB of panels it stays cut by
    // columns (20 x 256 x 2048). Products under 128 rows must also give the one-thread bits:
    // each output is the same chain of multiply-adds over k whoever computes it.
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for (m, k, n) in [
        (64, 256, 256),
        (32, 256, 1024),
        (20, 256, 2048),
        (300, 200, 100),
    ] {
        let x = rnd(&[m, k], 80).cast::<f32>();
        let w = rnd(&[n, k], 81).cast::<f32>();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let product = || pool.install(|| x.matmul(&w.t().unwrap()).unwrap().to_vec());
        let first = product();
        let want = naive(&x.to_f64_vec(), &transposed(&w.to_f64_vec(), n, k), m, k, n);
        assert_close(
            &first.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            &want,
            1e-3,
        );
        std::thread::scope(|s| {
            let racers: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..5).all(|_| product() == first)))
                .collect();
            assert!(racers.into_iter().all(|r| r.join().unwrap()));
        });
        if m < 128 {
            let alone = one.install(|| x.matmul(&w.t().unwrap()).unwrap().to_vec());
            assert!(alone == first, "{m}x{k}x{n}: one thread gave other bits");
        }
    }
}

#[test]
fn a_weight_used_at_every_step_gets_the_bits_of_one_product_over_the_stacked_steps() {
    // On two threads the tape forms such a weight's gradient from chunks of 256 stacked rows
    // (the depth block of matrixmultiply) on the helper thread, and adds them in order; on one
    // thread it forms a panel-route chunk's product at once, and leaves `matrixmultiply`'s to
    // one product at the end. Either way: the bits of one product over all stacked steps,
    // taken in backward order (the last use first). Rows per use, in that order: thin uses
    // crossing chunk boundaries, then thick ones, which end the chunking (the rows after the
    // last chunk are added a chunk's rows at a time). Both layouts of the gradient: `x @ w`
    // and `addmm(x, w.t())` (gradient formed transposed, partial sums added in place).
    let rows = [513, 300, 32, 32, 100, 92, 7, 250, 32, 64, 40, 200, 9];
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            // factors whose `g` fills whole 64-column panels take the panel kernel where the CPU
            // has one (`deferred::panel_tiles`), on two threads in two blocks of panels from
            // two panels on (128 columns: one panel each; 192: one and two); 100 and 130
            // columns take `matrixmultiply`, except that a gradient read transposed whose `a`
            // fills whole panels (128 columns) is formed as its transpose's rows where the CPU
            // has the column-major tile (`deferred_rows`), whatever `g`'s width
            for (transposed, (k, n)) in [
                (false, (64, 128)),
                (true, (128, 64)),
                (true, (64, 192)),
                (false, (100, 130)),
                (true, (130, 100)),
                (true, (128, 100)),
            ] {
                let w = if transposed {
                    rnd(&[n, k], 90).cast::<f32>().requires_grad()
                } else {
                    rnd(&[k, n], 90).cast::<f32>().requires_grad()
                };
                let xs: Vec<Tensor<f32>> = rows
                    .iter()
                    .enumerate()
                    .map(|(i, &r)| rnd(&[r, k], 100 + i as u64).cast::<f32>())
                    .collect();
                let cs: Vec<Tensor<f32>> = rows
                    .iter()
                    .enumerate()
                    .map(|(i, &r)| rnd(&[r, n], 200 + i as u64).cast::<f32>())
                    .collect();
                let wt = w.t().unwrap();
                let mut loss = Tensor::<f32>::zeros(&[]);
                for (x, c) in xs.iter().zip(&cs) {
                    let y = if transposed {
                        Tensor::zeros(&[x.shape()[0], n]).addmm(x, &wt)
                    } else {
                        x.matmul(&w)
                    }
                    .unwrap();
                    loss = loss.add(&y.mul(c).unwrap().sum_all()).unwrap();
                }
                let grads = loss.backward().unwrap();
                let got = grads.get(&w).unwrap().to_vec();
                let _off = retrograd_core::no_grad();
                let xr: Vec<&Tensor<f32>> = xs.iter().rev().collect();
                let cr: Vec<&Tensor<f32>> = cs.iter().rev().collect();
                let (x, c) = (Tensor::cat(&xr, 0).unwrap(), Tensor::cat(&cr, 0).unwrap());
                let want = if transposed {
                    c.t().unwrap().matmul(&x)
                } else {
                    x.t().unwrap().matmul(&c)
                }
                .unwrap()
                .to_vec();
                let differ = got
                    .iter()
                    .zip(&want)
                    .filter(|(a, b)| a.to_bits() != b.to_bits())
                    .count();
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert_eq!(
                    (got.len(), differ),
                    (want.len(), 0),
                    "threads {threads}, transposed {transposed}, k {k}, n {n}: largest difference {worst}"
                );
            }
        });
    }
}

#[test]
fn a_thick_weight_gradient_formed_early_in_row_blocks_has_the_bits_of_one_product() {
    // A weight used once by a product over many rows (a decoder's `x @ w.t()` over all
    // tokens): on two threads the tape starts `dL/dw` at once, as row blocks on the helper,
    // and puts the blocks together when w's turn comes (blocks the helper has not started are
    // computed by the caller). Every element is then still one sum over all rows: the bits
    // of a single product, on one thread and on two. Then a second use of the same weight:
    // the early blocks are dropped and the sum goes over both uses, stacked, as before: the
    // bits of one product over both. Shapes: dL/dw 512 x 640 over 256 rows (84M
    // multiply-adds: two blocks of 256 or 320 rows), and B1's decoder, 65 x 256 over 2048
    // rows (34M: one block of 65 rows, the whole product, formed on one thread wherever it
    // runs; or two of 128).
    for (m, k, n) in [(256, 640, 512), (2048, 256, 65)] {
        early_blocks_have_the_bits_of_one_product(m, k, n);
    }
}

/// The single product `dL/dw` is formed as, over all rows of `x` and `c`: `xᵀ c`, or for a
/// weight read through `w.t()` on two threads `cᵀ x`, `w`'s own gradient (on one thread the
/// tape forms the view's, `xᵀ c`, and its transpose is read). The two orientations sum the
/// same terms in the same order, but through other kernels they can give other bits (they
/// do for 2048 x 256 x 65).
fn product(x: &Tensor<f32>, c: &Tensor<f32>, transposed: bool, threads: usize) -> Tensor<f32> {
    if transposed && threads > 1 {
        c.t().unwrap().matmul(x).unwrap()
    } else if transposed {
        x.t().unwrap().matmul(c).unwrap().t().unwrap()
    } else {
        x.t().unwrap().matmul(c).unwrap()
    }
}

fn early_blocks_have_the_bits_of_one_product(m: usize, k: usize, n: usize) {
    // Every case starts from factors in new storages, and the reference is formed from copies
    // of them in storages of their own: a storage read as a right-hand side for the second
    // time is packed into panels, and a product through panels can have other bits than one
    // without (2048 x 256 x 65 does), so reusing storages would tie the reference to the
    // history of earlier cases.
    let copy = |t: &Tensor<f32>| Tensor::from_vec(t.to_vec(), t.shape()).unwrap();
    for threads in [1, 2] {
        pool(threads).install(|| {
            for transposed in [true, false] {
                let x = rnd(&[m, k], 300).cast::<f32>();
                let c = rnd(&[m, n], 301).cast::<f32>();
                let (x2, c2) = (
                    rnd(&[300, k], 302).cast::<f32>(),
                    rnd(&[300, n], 303).cast::<f32>(),
                );
                let w = if transposed {
                    rnd(&[n, k], 304).cast::<f32>().requires_grad()
                } else {
                    rnd(&[k, n], 304).cast::<f32>().requires_grad()
                };
                // one view for every use, as a layer reads its weight (two views would be two
                // tensors, each with its own product, added afterwards on one thread)
                let wt = w.t().unwrap();
                let use_w = |x: &Tensor<f32>| {
                    if transposed {
                        x.matmul(&wt)
                    } else {
                        x.matmul(&w)
                    }
                    .unwrap()
                };
                let bits = |t: &Tensor<f32>| -> Vec<u32> {
                    t.to_vec().iter().map(|v| v.to_bits()).collect()
                };
                // one use
                let loss = use_w(&x).mul(&c).unwrap().sum_all();
                let got = loss.backward().unwrap().get(&w).unwrap().clone();
                let want = {
                    let _off = retrograd_core::no_grad();
                    product(&copy(&x), &copy(&c), transposed, threads)
                };
                assert_eq!(got.shape(), w.shape());
                assert!(
                    bits(&got) == bits(&want),
                    "{m}x{k}x{n}, threads {threads}, transposed {transposed}: one use"
                );
                // two uses, the thick one recorded first (backward visits the last use first)
                let loss = use_w(&x2)
                    .mul(&c2)
                    .unwrap()
                    .sum_all()
                    .add(&use_w(&x).mul(&c).unwrap().sum_all())
                    .unwrap();
                let got = loss.backward().unwrap().get(&w).unwrap().clone();
                let want = {
                    let _off = retrograd_core::no_grad();
                    let xs = Tensor::cat(&[&x, &x2], 0).unwrap();
                    let cs = Tensor::cat(&[&c, &c2], 0).unwrap();
                    product(&xs, &cs, transposed, threads)
                };
                assert!(
                    bits(&got) == bits(&want),
                    "{m}x{k}x{n}, threads {threads}, transposed {transposed}: two uses"
                );
            }
        });
    }
}

#[test]
fn a_wide_weight_gradient_is_formed_in_blocks_with_the_same_bits_on_any_thread_count() {
    // A decoder over a wide vocabulary, `x @ w.t()` with `w: [n, k]` and `n >= 8k`: its
    // gradient `cᵀ x` is formed a block of rows of `w`'s gradient at a time (`ops/wide.rs`:
    // with AVX-512, tiles over `x`'s 64-column panels and an eight-column kernel for the 8
    // columns past them, `c`'s columns copied 144 at a time, the last copy's 128 not a
    // multiple of six or of 48; elsewhere `xᵀ c` through `gemm`, 256 columns of `c` at a
    // time, each block transposed). On one thread in one pass at `w`'s turn, on two as early
    // blocks on the helper; with a second use, over both uses stacked. Every path gives the
    // bits of one f32 `fma` chain per output over the rows in order (the `gemm` route those
    // of its blocks, the same as long as its depth blocks do not cut the sum: B2's 400 rows
    // do not, these 600 do), and the values of the f64 product.
    let (m, k, n) = (600, 200, 2000);
    let x = rnd(&[m, k], 310).cast::<f32>();
    let c = rnd(&[m, n], 311).cast::<f32>();
    let (x2, c2) = (
        rnd(&[300, k], 312).cast::<f32>(),
        rnd(&[300, n], 313).cast::<f32>(),
    );
    // with the AVX-512 kernels, each output `w[j][q]` as one f32 `fma` chain over the rows `p`
    // of `c` and `x`, in order; else the same `gemm` blocks formed through the public API
    let kernels = <f32 as retrograd_core::Element>::wide_kernels().is_some();
    let blocks = |x: &Tensor<f32>, c: &Tensor<f32>| -> Vec<u32> {
        if kernels {
            let (xv, cv, rows) = (x.to_vec(), c.to_vec(), x.shape()[0]);
            let mut out = Vec::with_capacity(n * k);
            for j in 0..n {
                for q in 0..k {
                    let s = (0..rows).fold(0.0f32, |s, p| cv[p * n + j].mul_add(xv[p * k + q], s));
                    out.push(s.to_bits());
                }
            }
            return out;
        }
        pool(1).install(|| {
            let _off = retrograd_core::no_grad();
            let xt = x.t().unwrap().contiguous();
            let parts: Vec<Tensor<f32>> = (0..n)
                .step_by(256)
                .map(|j| {
                    let cj = c.narrow(1, j, 256.min(n - j)).unwrap();
                    xt.matmul(&cj).unwrap().t().unwrap()
                })
                .collect();
            let parts: Vec<&Tensor<f32>> = parts.iter().collect();
            let whole = Tensor::cat(&parts, 0).unwrap();
            whole.to_vec().iter().map(|v| v.to_bits()).collect()
        })
    };
    let (one, both) = (blocks(&x, &c), {
        let xs = Tensor::cat(&[&x, &x2], 0).unwrap();
        let cs = Tensor::cat(&[&c, &c2], 0).unwrap();
        blocks(&xs, &cs)
    });
    let exact = rnd(&[m, n], 311)
        .t()
        .unwrap()
        .matmul(&rnd(&[m, k], 310))
        .unwrap()
        .to_vec();
    for threads in [1, 2] {
        pool(threads).install(|| {
            let w = rnd(&[n, k], 314).cast::<f32>().requires_grad();
            let wt = w.t().unwrap();
            let use_w =
                |x: &Tensor<f32>, c: &Tensor<f32>| x.matmul(&wt).unwrap().mul(c).unwrap().sum_all();
            let bits = |g: retrograd_core::GradStore<f32>| -> Vec<u32> {
                let d = g.get(&w).unwrap();
                assert_eq!(d.shape(), &[n, k]);
                d.to_vec().iter().map(|v| v.to_bits()).collect()
            };
            let got = bits(use_w(&x, &c).backward().unwrap());
            assert!(got == one, "threads {threads}: one use");
            let worst = got
                .iter()
                .zip(&exact)
                .map(|(&g, &e)| (f64::from(f32::from_bits(g)) - e).abs() / e.abs().max(1.0))
                .fold(0.0, f64::max);
            assert!(
                worst < 1e-4,
                "threads {threads}: largest difference {worst}"
            );
            let loss = use_w(&x2, &c2).add(&use_w(&x, &c)).unwrap();
            assert!(
                bits(loss.backward().unwrap()) == both,
                "threads {threads}: two uses"
            );
        });
    }
}

#[test]
fn a_weight_used_through_its_transpose_and_directly_gets_both_gradients() {
    // On two threads a deferred product for w.t() is recorded for w in the view's orientation
    // and transposed when taken; a product that uses w itself is recorded transposed to match.
    // dL/dw = c1ᵀ x (from y1 = x @ w.t(), L ∋ Σ y1 ⊙ c1) + zᵀ c2 (from y2 = z @ w) + c3ᵀ x3.
    let (n, k) = (5, 3);
    let w = rnd(&[n, k], 400).requires_grad();
    let (x, c1) = (rnd(&[4, k], 401), rnd(&[4, n], 402));
    let (z, c2) = (rnd(&[6, n], 403), rnd(&[6, k], 404));
    let (x3, c3) = (rnd(&[2, k], 405), rnd(&[2, n], 406));
    for threads in [1, 2] {
        pool(threads).install(|| {
            let wt = w.t().unwrap();
            let loss = x
                .matmul(&wt)
                .unwrap()
                .mul(&c1)
                .unwrap()
                .sum_all()
                .add(&z.matmul(&w).unwrap().mul(&c2).unwrap().sum_all())
                .unwrap()
                .add(&x3.matmul(&wt).unwrap().mul(&c3).unwrap().sum_all())
                .unwrap();
            let g = loss.backward().unwrap();
            let _off = retrograd_core::no_grad();
            let want = c1
                .t()
                .unwrap()
                .matmul(&x)
                .unwrap()
                .add(&z.t().unwrap().matmul(&c2).unwrap())
                .unwrap()
                .add(&c3.t().unwrap().matmul(&x3).unwrap())
                .unwrap();
            assert_eq!(g.get(&w).unwrap().shape(), &[n, k]);
            assert_close(&grad_of(&g, &w), &want.to_vec(), 1e-12);
        });
    }
}
