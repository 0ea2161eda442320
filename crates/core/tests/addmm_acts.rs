//! `addmm_acts`: `c + a @ b` with one activation per column block, in one op (an LSTM's
//! four gates). Hand-computed values and gradients, errors, gradcheck rows, and the bits of
//! the composite it replaces (`addmm`, `narrow`, one activation op per block) on one and two
//! threads, where each half of a split product is activated by the thread that computed it.

mod common;

use common::*;
use retrograd_core::{Activation, Element, Tensor};

use Activation::{Relu, Sigmoid, Tanh};

#[test]
fn addmm_acts_values_and_gradients_by_column_block() {
    // a b = [[1, 2, 1, 2]] (b = [I | I]); c + a b = [[0, 0, 1.5, -1]]. Blocks of two columns:
    // sigmoid on the first (σ(0) = 0.5), relu on the second → [[0.5, 0.5, 1.5, 0]].
    // G' = [σ(0)(1 - σ(0)), same, 1, 0] = [0.25, 0.25, 1, 0] for d(sum): dc = G',
    // da = G' bᵀ = [0.25 + 1, 0.25 + 0], db = aᵀ G' = [G', 2 G'].
    let a = leaf(&[1., 2.], &[1, 2]);
    let b = leaf(&[1., 0., 1., 0., 0., 1., 0., 1.], &[2, 4]);
    let c = leaf(&[-1., -2., 0.5, -3.], &[1, 4]);
    let y = c.addmm_acts(&a, &b, &[Sigmoid, Relu]).unwrap();
    assert_tensor(&y, &[1, 4], &[0.5, 0.5, 1.5, 0.], 0.0);
    let g = y.sum_all().backward().unwrap();
    let gp = [0.25, 0.25, 1., 0.];
    assert_close(&grad_of(&g, &c), &gp, 0.0);
    assert_close(&grad_of(&g, &a), &[1.25, 0.25], 0.0);
    assert_close(
        &grad_of(&g, &b),
        &[0.25, 0.25, 1., 0., 0.5, 0.5, 2., 0.],
        0.0,
    );
    // one activation is addmm_act's single block
    let one = c.addmm_acts(&a, &b, &[Tanh]).unwrap();
    assert_eq!(one.to_vec(), c.addmm_act(&a, &b, Tanh).unwrap().to_vec());
}

#[test]
fn addmm_acts_rejects_blocks_that_do_not_divide_the_columns() {
    let (a, b, c) = (rnd(&[1, 2], 1), rnd(&[2, 4], 2), rnd(&[1, 4], 3));
    let err = c
        .addmm_acts(&a, &b, &[Sigmoid, Tanh, Relu])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("addmm_act") && err.contains("3 activations") && err.contains("4 columns"),
        "{err}"
    );
    let err = c.addmm_acts(&a, &b, &[]).unwrap_err().to_string();
    assert!(err.contains("0 activations"), "{err}");
    // an empty product (no columns, or no rows) has empty values and gradients
    for (m, n) in [(2, 0), (0, 4)] {
        let a = rnd(&[m, 3], 5).requires_grad();
        let b = rnd(&[3, n], 6).requires_grad();
        let y = rnd(&[m, n], 7)
            .addmm_acts(&a, &b, &[Sigmoid, Tanh])
            .unwrap();
        assert_eq!(y.shape(), &[m, n]);
        let g = y.sum_all().backward().unwrap();
        assert_eq!(grad_of(&g, &a), vec![0.0; m * 3]);
        assert_eq!(grad_of(&g, &b), vec![0.0; 3 * n]);
    }
    let err = rnd(&[1, 3], 4)
        .addmm_acts(&a, &b, &[Sigmoid, Tanh])
        .unwrap_err()
        .to_string();
    assert!(err.contains("added term [1, 3]"), "{err}");
    // a 1-D bias row is a plain addmm's alone: with activations the added term is 2-D
    let err = rnd(&[4], 8)
        .addmm_acts(&a, &b, &[Sigmoid, Tanh])
        .unwrap_err()
        .to_string();
    assert!(err.contains("added term [4]"), "{err}");
}

#[test]
fn gradcheck_addmm_acts_table() {
    check_rows(vec![
        row(
            "addmm_acts σ,σ,tanh,σ, added term a slice, rhs transposed and used twice (LSTM gates)",
            |x| {
                let wt = x[2].t()?;
                let acts = [Sigmoid, Sigmoid, Tanh, Sigmoid];
                let g1 = x[0].narrow(1, 0, 8)?.addmm_acts(&x[1], &wt, &acts)?;
                x[0].narrow(1, 8, 8)?
                    .addmm_acts(&g1.narrow(1, 2, 2)?, &wt, &acts)
            },
            vec![rnd(&[3, 16], 10), rnd(&[3, 2], 11), rnd(&[8, 2], 12)],
        ),
        row(
            "addmm_acts tanh,σ, broadcast bias row",
            |x| {
                x[0].broadcast_to(&[3, 4])?
                    .addmm_acts(&x[1], &x[2].t()?, &[Tanh, Sigmoid])
            },
            vec![rnd(&[4], 13), rnd(&[3, 5], 14), rnd(&[4, 5], 15)],
        ),
        row(
            "addmm_acts relu,tanh, added term transposed (pre-activations kept away from the kink)",
            |x| {
                x[0].t()?
                    .addmm_acts(&x[1].mul_scalar(0.04), &x[2], &[Relu, Tanh])
            },
            vec![
                away_from_zero(&[4, 2], 16),
                rnd(&[2, 3], 17),
                rnd(&[3, 4], 18),
            ],
        ),
    ]);
}

/// Two steps of `act_blocks(c_t + h @ wᵀ)` with `h` the previous step's first block, fused or
/// composed, on a pool of `threads`: the outputs and the gradients of every input.
fn two_steps<E: Element>(
    fused: bool,
    threads: usize,
    (m, k, n): (usize, usize, usize),
    c_kind: usize,
) -> Vec<Vec<f64>> {
    pool(threads).install(|| {
        let acts = [Sigmoid, Tanh, Relu, Sigmoid];
        let h0 = rnd(&[m, k], 30).cast::<E>().requires_grad();
        let w = rnd(&[n, k], 31).cast::<E>().requires_grad();
        let wt = w.t().unwrap();
        // the added term: a slice of a wider tensor (an input projection), a broadcast bias
        // row, or a transposed view (read through a contiguous copy)
        let wide = rnd(&[m, 2 * n], 32).cast::<E>().requires_grad();
        let bias = rnd(&[n], 33).cast::<E>().requires_grad();
        let tall = rnd(&[n, m], 34).cast::<E>().requires_grad();
        let c = |t: usize| match c_kind {
            0 => wide.narrow(1, t * n, n).unwrap(),
            1 => bias.broadcast_to(&[m, n]).unwrap(),
            _ => tall.t().unwrap(),
        };
        let step = |c: Tensor<E>, h: &Tensor<E>| {
            if fused {
                return c.addmm_acts(h, &wt, &acts).unwrap();
            }
            let p = c.addmm(h, &wt).unwrap();
            let q = n / 4;
            let blocks: Vec<Tensor<E>> = acts
                .iter()
                .enumerate()
                .map(|(j, act)| {
                    let b = p.narrow(1, j * q, q).unwrap();
                    match act {
                        Tanh => b.tanh(),
                        Sigmoid => b.sigmoid(),
                        Relu => b.relu(),
                    }
                })
                .collect();
            Tensor::cat(&blocks.iter().collect::<Vec<_>>(), 1).unwrap()
        };
        let y1 = step(c(0), &h0);
        let y2 = step(c(1), &y1.narrow(1, 0, k).unwrap());
        two_step_values_and_grads(&y1, &y2, &[&h0, &w, &wide, &bias, &tall])
    })
}

#[test]
fn addmm_acts_gives_the_bits_of_addmm_narrow_and_the_activations() {
    // Sizes from 2M multiply-adds are split in two on two threads: by columns for 32 x 256 x
    // 512 (an LSTM step) at the weight's first read, and by rows from its second, when f32
    // goes through packed panels where the CPU has them (the helper then writes its rows in
    // place); by rows for 512 x 64 x 128. Every block is added and activated where it was
    // computed, and must give the composite's bits, values and gradients. A one-row product
    // of 1 x 256 x 512 (batch-1 sampling) is split by columns too.
    for threads in [1, 2] {
        for dims in [(32, 256, 512), (512, 64, 128), (1, 256, 512), (3, 4, 8)] {
            for c_kind in 0..3 {
                let what = format!("{threads} threads, {dims:?}, added term kind {c_kind}");
                assert_eq!(
                    two_steps::<f32>(true, threads, dims, c_kind),
                    two_steps::<f32>(false, threads, dims, c_kind),
                    "f32 {what}"
                );
                assert_eq!(
                    two_steps::<f64>(true, threads, dims, c_kind),
                    two_steps::<f64>(false, threads, dims, c_kind),
                    "f64 {what}"
                );
            }
        }
    }
}

#[test]
fn a_split_addmm_adds_its_term_on_both_halves() {
    // Plain addmm adds `c` through the same per-block epilogue: on two threads the helper's
    // half gets it too. Checked against the triple loop, for a column split (an LSTM step's
    // shape, as a slice of a wider tensor) and a row split (a broadcast bias row).
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    for (m, k, n) in [(32, 256, 512), (512, 64, 128)] {
        let a = rnd(&[m, k], 40);
        let b = rnd(&[k, n], 41);
        let wide = rnd(&[m, 2 * n], 42);
        let bias = rnd(&[n], 43);
        for c in [
            wide.narrow(1, n, n).unwrap(),
            bias.broadcast_to(&[m, n]).unwrap(),
        ] {
            let got = pool.install(|| c.addmm(&a, &b).unwrap().to_f64_vec());
            let (av, bv, cv) = (a.to_f64_vec(), b.to_f64_vec(), c.to_f64_vec());
            let want: Vec<f64> = (0..m * n)
                .map(|e| {
                    let (i, j) = (e / n, e % n);
                    cv[e] + (0..k).map(|p| av[i * k + p] * bv[p * n + j]).sum::<f64>()
                })
                .collect();
            assert_close(&got, &want, 1e-10);
        }
    }
}
