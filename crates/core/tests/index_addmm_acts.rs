//! `index_addmm_acts`: `act(table[rows] + a @ b)` in one op, the added rows read from the
//! table instead of from a picked copy, and the tape's `Op::grad_rows_of` that routes the
//! table's gradient rows. Hand-computed values and gradients, errors, gradcheck rows, the bits
//! of `index_select` then `addmm_acts` on one and two threads, and a custom op whose
//! `grad_rows_of` report is checked.

mod common;

use std::sync::Arc;

use common::*;
use retrograd_core::{
    gradcheck, Activation, Element, Error, InputGrads, Layout, Op, Result, Tensor,
};

use Activation::{Relu, Sigmoid, Tanh};

#[test]
fn index_addmm_acts_values_and_gradients_with_a_repeated_row() {
    // table rows t0 = [1, -1], t1 = [0, 2]; rows [1, 0, 1]; a = [[1, 0], [0, 1], [1, 1]],
    // b = I: a b = a. Pre-activations: [0+1, 2+0], [1+0, -1+1], [0+1, 2+1] = [[1, 2], [1, 0],
    // [1, 3]]; relu keeps them. For d(sum): G' = [y > 0] = [[1, 1], [1, 0], [1, 1]].
    // d table: row 1 gets G' rows 0 and 2 = [2, 2]; row 0 gets G' row 1 = [1, 0].
    // da = G' bᵀ = G'; db = aᵀ G' = [[1+0+1, 1+0+1], [0+1+1, 0+0+1]] = [[2, 2], [2, 1]].
    let table = leaf(&[1., -1., 0., 2.], &[2, 2]);
    let a = leaf(&[1., 0., 0., 1., 1., 1.], &[3, 2]);
    let b = leaf(&[1., 0., 0., 1.], &[2, 2]);
    let y = table.index_addmm_acts(&[1, 0, 1], &a, &b, &[Relu]).unwrap();
    assert_tensor(&y, &[3, 2], &[1., 2., 1., 0., 1., 3.], 0.0);
    let g = y.sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &table), &[1., 0., 2., 2.], 0.0);
    assert_close(&grad_of(&g, &a), &[1., 1., 1., 0., 1., 1.], 0.0);
    assert_close(&grad_of(&g, &b), &[2., 2., 2., 1.], 0.0);
    // by column block: sigmoid on column 0, tanh on column 1
    let y = table
        .index_addmm_acts(&[0], &a.narrow(0, 0, 1).unwrap(), &b, &[Sigmoid, Tanh])
        .unwrap();
    let (s, t) = (1.0 / (1.0 + (-2.0f64).exp()), (-1.0f64).tanh());
    assert_tensor(&y, &[1, 2], &[s, t], 1e-15);
}

#[test]
fn index_addmm_acts_rejects_rows_that_do_not_fit() {
    let (table, a, b) = (rnd(&[3, 4], 1), rnd(&[2, 5], 2), rnd(&[5, 4], 3));
    let cases: [(&[usize], &[&str]); 3] = [
        (&[0, 3], &["addmm_act", "largest Some(3)", "[3, 4]"]),
        (&[0], &["addmm_act", "rows 1", "[2, 4]"]),
        (&[0, 1, 2], &["rows 3"]),
    ];
    for (rows, want) in cases {
        let err = table
            .index_addmm_acts(rows, &a, &b, &[Tanh])
            .unwrap_err()
            .to_string();
        for w in want {
            assert!(err.contains(w), "{rows:?}: {err}");
        }
    }
    // a table of other width than the product, or not a matrix
    let err = rnd(&[3, 2], 4)
        .index_addmm_acts(&[0, 1], &a, &b, &[Tanh])
        .unwrap_err()
        .to_string();
    assert!(err.contains("added table [3, 2]"), "{err}");
    let err = rnd(&[12], 5)
        .index_addmm_acts(&[0, 1], &a, &b, &[Tanh])
        .unwrap_err()
        .to_string();
    assert!(err.contains("added table [12]"), "{err}");
}

#[test]
fn gradcheck_index_addmm_acts_table() {
    check_rows(vec![
        row(
            "index_addmm_acts σ,tanh, repeated rows, rhs transposed and used twice (two steps)",
            |x| {
                let wt = x[2].t()?;
                let h1 = x[0].index_addmm_acts(&[2, 0, 2], &x[1], &wt, &[Sigmoid, Tanh])?;
                x[0].index_addmm_acts(&[1, 2, 2], &h1.narrow(1, 0, 2)?, &wt, &[Sigmoid, Tanh])
            },
            vec![rnd(&[3, 4], 10), rnd(&[3, 2], 11), rnd(&[4, 2], 12)],
        ),
        row(
            "index_addmm_acts tanh, table a slice of a wider tensor",
            |x| {
                x[0].narrow(1, 1, 3)?
                    .index_addmm_acts(&[1, 1], &x[1], &x[2], &[Tanh])
            },
            vec![rnd(&[2, 5], 13), rnd(&[2, 2], 14), rnd(&[2, 3], 15)],
        ),
    ]);
}

/// Two steps of `acts(table[rows_t] + h @ wᵀ)`, `h` the previous step's first block, fused or
/// as `index_select` then `addmm_acts`, on a pool of `threads`: outputs and every gradient.
fn two_steps<E: Element>(
    fused: bool,
    threads: usize,
    (m, k, n): (usize, usize, usize),
) -> Vec<Vec<f64>> {
    pool(threads).install(|| {
        let acts = [Sigmoid, Sigmoid, Tanh, Sigmoid];
        let [h0, w, table] = [([m, k], 30), ([n, k], 31), ([7, n], 32)]
            .map(|(shape, seed)| rnd(&shape, seed).cast::<E>().requires_grad());
        let wt = w.t().unwrap();
        let rows = |t: usize| (0..m).map(|i| (i * 3 + t) % 7).collect::<Vec<_>>();
        let step = |t: usize, h: &Tensor<E>| {
            if fused {
                table.index_addmm_acts(&rows(t), h, &wt, &acts).unwrap()
            } else {
                let c = table.index_select(0, &rows(t)).unwrap();
                c.addmm_acts(h, &wt, &acts).unwrap()
            }
        };
        let y1 = step(0, &h0);
        let y2 = step(1, &y1.narrow(1, 0, k).unwrap());
        two_step_values_and_grads(&y1, &y2, &[&h0, &w, &table])
    })
}

#[test]
fn index_addmm_acts_gives_the_bits_of_index_select_then_addmm_acts() {
    // 32 x 256 x 1024 is B1's step (split in two on two threads, each half adding its rows);
    // 1 x 256 x 512 a batch-1 step; 3 x 4 x 8 the direct loops.
    for threads in [1, 2] {
        for dims in [(32, 256, 1024), (1, 256, 512), (3, 4, 8)] {
            let what = format!("{threads} threads, {dims:?}");
            assert_eq!(
                two_steps::<f32>(true, threads, dims),
                two_steps::<f32>(false, threads, dims),
                "f32 {what}"
            );
            assert_eq!(
                two_steps::<f64>(true, threads, dims),
                two_steps::<f64>(false, threads, dims),
                "f64 {what}"
            );
        }
    }
}

/// `table[picked] + x` as a custom op that reports `reported` through `Op::grad_rows_of(0)`:
/// right when `reported == picked`.
struct AddPicked {
    reported: Vec<usize>,
}

impl Op<f64> for AddPicked {
    fn name(&self) -> &'static str {
        "add_picked"
    }
    fn backward(&self, _: &[Tensor<f64>], g: &Tensor<f64>) -> Result<InputGrads<f64>> {
        Ok(smallvec::smallvec![Some(g.clone()), Some(g.clone())])
    }
    fn grad_rows_of(&self, input: usize) -> Option<&[usize]> {
        (input == 0).then_some(&self.reported[..])
    }
}

fn add_picked(
    table: &Tensor<f64>,
    x: &Tensor<f64>,
    picked: &[usize],
    reported: &[usize],
) -> Result<Tensor<f64>> {
    let (tv, xv, cols) = (table.to_vec(), x.to_vec(), x.dims2()?.1);
    let data: Vec<f64> = picked
        .iter()
        .enumerate()
        .flat_map(|(j, &i)| (0..cols).map(move |c| (i, j, c)))
        .map(|(i, j, c)| tv[i * cols + c] + xv[j * cols + c])
        .collect();
    Ok(Tensor::from_op(
        Arc::new(data.into()),
        Layout::contiguous(x.shape()),
        &[table, x],
        || AddPicked {
            reported: reported.to_vec(),
        },
    ))
}

#[test]
fn the_tape_routes_and_checks_grad_rows_of() {
    let inputs = [rnd(&[4, 3], 40), rnd(&[3, 3], 41)];
    let f = |reported: &'static [usize]| {
        move |t: &[Tensor<f64>]| {
            add_picked(&t[0], &t[1], &[2, 0, 2], reported)?
                .tanh()
                .sum_all()
                .mul(&t[0].sum_all())
        }
    };
    gradcheck(f(&[2, 0, 2]), &inputs, Default::default()).unwrap();
    assert!(gradcheck(f(&[2, 1, 2]), &inputs, Default::default()).is_err());
    // rows past the table's end, or fewer rows than the gradient has: an error naming the op
    let (table, x) = (leaf(&[0.; 12], &[4, 3]), leaf(&[0.; 9], &[3, 3]));
    for reported in [&[0, 1, 4][..], &[0, 1][..]] {
        let y = add_picked(&table, &x, &[0, 1, 2], reported).unwrap();
        match y.sum_all().backward() {
            Err(Error::Backward(msg)) => assert!(msg.contains("add_picked"), "{msg}"),
            other => panic!("{reported:?}: expected a backward error, got {other:?}"),
        }
    }
}
