//! Indexing ops (index_select, gather, masked_fill, where_cond): hand-computed values and
//! gradients, then gradcheck rows.

mod common;

use common::*;
use retrograd_core::Tensor;

/// [[1,2,3],[4,5,6]]
fn x23() -> Tensor<f64> {
    leaf(&[1., 2., 3., 4., 5., 6.], &[2, 3])
}

#[test]
fn index_select_rows_with_repeated_ids() {
    // table [[0,1],[2,3],[4,5]], ids [2,0,2] → [[4,5],[0,1],[4,5]].
    let table = leaf(&[0., 1., 2., 3., 4., 5.], &[3, 2]);
    let y = table.index_select(0, &[2, 0, 2]).unwrap();
    assert_tensor(&y, &[3, 2], &[4., 5., 0., 1., 4., 5.], 0.0);
    // upstream [[1,2],[3,4],[5,6]]: row 0 ← [3,4], row 1 ← nothing, row 2 ← [1+5, 2+6] = [6,8].
    let g = y
        .backward_with(&t64(&[1., 2., 3., 4., 5., 6.], &[3, 2]))
        .unwrap();
    assert_close(&grad_of(&g, &table), &[3., 4., 0., 0., 6., 8.], 0.0);
}

#[test]
fn rows_picked_step_by_step_add_into_one_gradient() {
    // A recurrent layer picks one batch of rows of a projected table per step. The tape adds
    // each pick's rows into the table's gradient (`grad_rows`), after whatever came first:
    // here `2 * table` (the last use, so its gradient arrives first), then the picks.
    // table [[0,1],[2,3],[4,5]]; steps pick [1,1] and [0,2]; loss = Σ w ⊙ picks + Σ 2 table.
    let table = leaf(&[0., 1., 2., 3., 4., 5.], &[3, 2]);
    let a = table.index_select(0, &[1, 1]).unwrap();
    let b = table.index_select(0, &[0, 2]).unwrap();
    let wa = t64(&[1., 2., 3., 4.], &[2, 2]);
    let wb = t64(&[10., 20., 30., 40.], &[2, 2]);
    let loss = a
        .mul(&wa)
        .unwrap()
        .sum_all()
        .add(&b.mul(&wb).unwrap().sum_all())
        .unwrap()
        .add(&table.mul_scalar(2.0).sum_all())
        .unwrap();
    let g = loss.backward().unwrap();
    // row 0: 2 + [10, 20]; row 1: 2 + [1, 2] + [3, 4]; row 2: 2 + [30, 40]
    assert_close(&grad_of(&g, &table), &[12., 22., 6., 8., 32., 42.], 0.0);
    // a 3-D input takes index_select's own backward (rows of a matrix only go by grad_rows)
    let x = leaf(&[1., 2., 3., 4., 5., 6., 7., 8.], &[2, 2, 2]);
    let g = x
        .index_select(0, &[1, 1])
        .unwrap()
        .sum_all()
        .backward()
        .unwrap();
    assert_close(&grad_of(&g, &x), &[0., 0., 0., 0., 2., 2., 2., 2.], 0.0);
}

#[test]
fn index_select_along_dim_1() {
    // columns [2,2,0] of [[1,2,3],[4,5,6]] → [[3,3,1],[6,6,4]];
    // d(sum): column 0 used once, column 1 never, column 2 twice.
    let x = x23();
    let y = x.index_select(1, &[2, 2, 0]).unwrap();
    assert_tensor(&y, &[2, 3], &[3., 3., 1., 6., 6., 4.], 0.0);
    let g = y.sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &x), &[1., 0., 2., 1., 0., 2.], 0.0);
    // empty id list: shape [2, 0]
    assert_eq!(x.index_select(1, &[]).unwrap().shape(), &[2, 0]);
}

#[test]
fn gather_along_dims() {
    // dim 1, index [[2,0],[1,1]]: [[x02, x00],[x11, x11]] = [[3,1],[5,5]];
    // d(sum): x00 once, x02 once, x11 twice.
    let x = x23();
    let y = x.gather(1, &[2, 0, 1, 1], &[2, 2]).unwrap();
    assert_tensor(&y, &[2, 2], &[3., 1., 5., 5.], 0.0);
    let g = y.sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &x), &[1., 0., 1., 0., 2., 0.], 0.0);
    // dim 0, index [[1,0,1]]: [x10, x01, x12] = [4,2,6].
    let y = x.gather(0, &[1, 0, 1], &[1, 3]).unwrap();
    assert_tensor(&y, &[1, 3], &[4., 2., 6.], 0.0);
    let g = y.backward_with(&t64(&[10., 20., 30.], &[1, 3])).unwrap();
    assert_close(&grad_of(&g, &x), &[0., 20., 0., 10., 0., 30.], 0.0);
}

#[test]
fn masked_fill_values_and_gradient() {
    // mask positions 1 and 3 filled with -1: [1,-1,3,-1,5,6]; gradient 0 where filled.
    let x = x23();
    let mask = [false, true, false, true, false, false];
    let y = x.masked_fill(&mask, -1.0).unwrap();
    assert_tensor(&y, &[2, 3], &[1., -1., 3., -1., 5., 6.], 0.0);
    let g = y.sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &x), &[1., 0., 1., 0., 1., 1.], 0.0);
    // the mask follows the logical (row-major) order of a transposed view: xᵀ = [[1,4],[2,5],[3,6]]
    let y = x.t().unwrap().masked_fill(&mask, 0.0).unwrap();
    assert_tensor(&y, &[3, 2], &[1., 0., 2., 0., 3., 6.], 0.0);
    // -inf fill (attention-style masking) followed by softmax gives exact zeros there.
    let p = t64(&[0., 0., 0.], &[3])
        .masked_fill(&[false, true, false], f64::NEG_INFINITY)
        .unwrap()
        .softmax(0)
        .unwrap();
    assert_tensor(&p, &[3], &[0.5, 0., 0.5], 1e-15);
}

#[test]
fn where_cond_values_and_gradient() {
    // cond [T,F,T,F,T,F]: a where true else b → [1,20,3,40,5,60].
    let a = x23();
    let b = leaf(&[10., 20., 30., 40., 50., 60.], &[2, 3]);
    let cond = [true, false, true, false, true, false];
    let y = Tensor::where_cond(&cond, &a, &b).unwrap();
    assert_tensor(&y, &[2, 3], &[1., 20., 3., 40., 5., 60.], 0.0);
    let g = y.sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &a), &[1., 0., 1., 0., 1., 0.], 0.0);
    assert_close(&grad_of(&g, &b), &[0., 1., 0., 1., 0., 1.], 0.0);
}

#[test]
fn gradcheck_index_table() {
    check_rows(vec![
        row(
            "index_select dim 0",
            |x| x[0].index_select(0, &[2, 0]),
            vec![rnd(&[3, 4], 1)],
        ),
        row(
            "index_select repeated ids",
            |x| x[0].index_select(0, &[1, 1, 0, 1]),
            vec![rnd(&[3, 2], 2)],
        ),
        row(
            "index_select dim 1",
            |x| x[0].index_select(1, &[3, 0, 3]),
            vec![rnd(&[2, 4], 3)],
        ),
        row(
            "index_select of transposed",
            |x| x[0].t()?.index_select(-1, &[0, 2, 2]),
            vec![rnd(&[3, 2], 4)],
        ),
        row(
            "gather dim 1",
            |x| x[0].gather(1, &[2, 0, 1, 1], &[2, 2]),
            vec![rnd(&[2, 3], 5)],
        ),
        row(
            "gather dim 0, repeats",
            |x| x[0].gather(0, &[1, 0, 1, 1, 1, 0], &[2, 3]),
            vec![rnd(&[2, 3], 6)],
        ),
        row(
            "gather 3-D dim 2",
            |x| x[0].gather(2, &[0, 2, 1, 1, 2, 0], &[2, 3, 1]),
            vec![rnd(&[2, 3, 3], 7)],
        ),
        row(
            "masked_fill",
            |x| x[0].masked_fill(&[true, false, false, true, false, true], 2.0),
            vec![rnd(&[2, 3], 8)],
        ),
        row(
            "where_cond",
            |x| Tensor::where_cond(&[true, false, true, true, false, false], &x[0], &x[1]),
            vec![rnd(&[3, 2], 9), rnd(&[3, 2], 10)],
        ),
        row(
            "where_cond same tensor both sides",
            |x| Tensor::where_cond(&[true, false, true], &x[0], &x[0].mul_scalar(3.0)),
            vec![rnd(&[3], 11)],
        ),
    ]);
}

#[test]
fn row_lookup_follows_index_select_through_reshapes() {
    let table = leaf(&[0., 1., 2., 3., 4., 5.], &[3, 2]);
    let picked = table.index_select(0, &[2, 0, 2, 1]).unwrap();
    let found = picked
        .row_lookup()
        .expect("an index_select along dim 0 is a lookup");
    assert_eq!(found.table.id(), table.id());
    assert_eq!(found.ids, vec![2, 0, 2, 1]);
    // reshapes that keep the last dim keep the row order, however many times
    let x = picked
        .reshape(&[2, 2, 2])
        .unwrap()
        .reshape(&[1, 4, 2])
        .unwrap();
    let found = x
        .row_lookup()
        .expect("reshapes keeping the last dim are followed");
    assert_eq!(found.table.id(), table.id());
    assert_eq!(found.ids, vec![2, 0, 2, 1]);
    // a reshape keeps the element order, so a detour through another row length is fine
    let detour = picked.reshape(&[2, 4]).unwrap().reshape(&[4, 2]).unwrap();
    assert_eq!(
        detour.row_lookup().expect("back to rows of 2").ids,
        vec![2, 0, 2, 1]
    );
}

#[test]
fn row_lookup_refuses_what_is_not_rows_of_a_matrix() {
    let table = leaf(&[0., 1., 2., 3., 4., 5.], &[3, 2]);
    let picked = table.index_select(0, &[2, 0, 2, 1]).unwrap();
    // a reshape changing the last dim mixes rows
    assert!(picked.reshape(&[2, 4]).unwrap().row_lookup().is_none());
    assert!(picked.reshape(&[8]).unwrap().row_lookup().is_none());
    // a transposed view reads the rows in another order
    let batch = picked.reshape(&[2, 2, 2]).unwrap();
    assert!(batch.transpose(0, 1).unwrap().row_lookup().is_none());
    // any other op, and a lookup along another dim
    assert!(picked.exp().row_lookup().is_none());
    assert!(x23()
        .index_select(1, &[0, 2])
        .unwrap()
        .row_lookup()
        .is_none());
    // a table of rank 3: its "rows" are matrices
    let cube = leaf(&[0.; 8], &[2, 2, 2]);
    assert!(cube
        .index_select(0, &[1, 0, 1])
        .unwrap()
        .row_lookup()
        .is_none());
    // nothing recorded: a constant table, or grad mode off
    let constant = t64(&[0., 1., 2., 3., 4., 5.], &[3, 2]);
    assert!(constant
        .index_select(0, &[1, 1])
        .unwrap()
        .row_lookup()
        .is_none());
    let _off = retrograd_core::no_grad();
    assert!(table
        .index_select(0, &[1, 1])
        .unwrap()
        .row_lookup()
        .is_none());
}
