//! Test support shared by the `hand_derived_*` and `toy_tasks` test crates: the reference
//! notebooks' numpy layers (forward + hand-written backward) re-derived on `f64` with a tiny
//! matrix type, a hand-derived GRU, conversions to and from retrograd tensors, layout mapping
//! between the notebooks' `x @ Wx` convention and PyTorch's `weight_ih [G*H, in]`, and
//! closeness assertions.
//!
//! Each test crate uses a different subset, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod gru;
pub mod mat;
pub mod nn_load;
pub mod numpy_lstm;
pub mod numpy_rnn;
pub mod rnnlm;
pub mod time_layers;

use mat::{Arr3, Mat};
use numpy_rnn::{RnnGrads, RnnParams};
use retrograd::core::GradStore;
use retrograd::Tensor;

/// Agreement required between the tape and the hand-derived formulas (absolute, every entry).
/// Both sides compute in `f64` on values of order one, so only summation order differs.
pub const TOL: f64 = 1e-10;

/// A `[rows, cols]` tensor holding `m`.
pub fn t2(m: &Mat) -> Tensor<f64> {
    Tensor::from_vec(m.data.clone(), &[m.rows, m.cols]).expect("t2: data length matches shape")
}

/// A `[cols]` tensor holding the `1 x cols` row `b` (numpy's `(H,)` bias).
pub fn t1(b: &Mat) -> Tensor<f64> {
    assert_eq!(b.rows, 1, "t1 wants a row vector");
    Tensor::from_vec(b.data.clone(), &[b.cols]).expect("t1: data length matches shape")
}

/// A `[N, T, D]` tensor holding `a`.
pub fn t3(a: &Arr3) -> Tensor<f64> {
    Tensor::from_vec(a.data.clone(), &[a.n, a.t, a.d]).expect("t3: data length matches shape")
}

/// A rank-2 tensor as a matrix; a rank-1 tensor as a `1 x n` row.
pub fn mat_of(t: &Tensor<f64>) -> Mat {
    match *t.shape() {
        [r, c] => Mat::from_vec(r, c, t.to_vec()),
        [c] => Mat::from_vec(1, c, t.to_vec()),
        _ => panic!(
            "mat_of: rank-1 or rank-2 tensor expected, got {:?}",
            t.shape()
        ),
    }
}

/// A rank-3 tensor as an `Arr3`.
pub fn arr3_of(t: &Tensor<f64>) -> Arr3 {
    let &[n, tt, d] = t.shape() else {
        panic!("arr3_of: rank-3 tensor expected, got {:?}", t.shape())
    };
    Arr3 {
        n,
        t: tt,
        d,
        data: t.to_vec(),
    }
}

/// The gradient the tape stored for leaf `t`, as a matrix.
pub fn grad_mat(grads: &GradStore<f64>, t: &Tensor<f64>, what: &str) -> Mat {
    mat_of(
        grads
            .get(t)
            .unwrap_or_else(|| panic!("the tape produced no gradient for {what}")),
    )
}

/// The gradient the tape stored for rank-3 leaf `t`.
pub fn grad_arr3(grads: &GradStore<f64>, t: &Tensor<f64>, what: &str) -> Arr3 {
    arr3_of(
        grads
            .get(t)
            .unwrap_or_else(|| panic!("the tape produced no gradient for {what}")),
    )
}

/// Panics naming `what` unless `got` (the tape's result) and `want` (the hand-derived
/// reference) agree entrywise within `tol`.
pub fn assert_close(what: &str, got: &Mat, want: &Mat, tol: f64) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes differ");
    let diff = got.max_abs_diff(want);
    assert!(
        diff <= tol,
        "{what}: result and reference differ by {diff:e} (tolerance {tol:e})\n  result:    {:?}\n  reference: {:?}",
        got.data,
        want.data
    );
    // A comparison of two all-zero results proves nothing.
    assert!(
        want.data.iter().any(|v| v.abs() > 1e-6),
        "{what}: the reference is (nearly) all zeros, the comparison would be vacuous"
    );
}

/// [`assert_close`] at [`TOL`] of the gradient the tape stored for leaf `t` (called `leaf` if
/// it has none) against the hand-derived `want`.
pub fn assert_grad(what: &str, g: &GradStore<f64>, t: &Tensor<f64>, leaf: &str, want: &Mat) {
    assert_close(what, &grad_mat(g, t, leaf), want, TOL);
}

/// The notebooks' `(Wx, Wh, b)` (RNN and LSTM alike) as gradient-tracking tape leaves.
pub type NotebookLeaves = (Tensor<f64>, Tensor<f64>, Tensor<f64>);

/// `p`'s `(Wx, Wh, b)` as fresh gradient-tracking leaves.
pub fn notebook_leaves(p: &RnnParams) -> NotebookLeaves {
    (
        t2(&p.wx).requires_grad(),
        t2(&p.wh).requires_grad(),
        t1(&p.b).requires_grad(),
    )
}

/// [`assert_grad`] of the leaves `w` against the notebook's `[dWx, dWh, db]`, labelled
/// `{prefix}dWx{suffix}`, `{prefix}dWh{suffix}` and `{prefix}db{suffix}`.
pub fn assert_notebook_grads(
    g: &GradStore<f64>,
    w: &NotebookLeaves,
    want: &RnnGrads,
    prefix: &str,
    suffix: &str,
) {
    let what = |name: &str| format!("{prefix}{name}{suffix}");
    assert_grad(&what("dWx"), g, &w.0, "Wx", &want.dwx);
    assert_grad(&what("dWh"), g, &w.1, "Wh", &want.dwh);
    assert_grad(&what("db"), g, &w.2, "b", &want.db);
}

/// [`assert_close`] for `[N, T, D]` arrays.
pub fn assert_close3(what: &str, got: &Arr3, want: &Arr3, tol: f64) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes differ");
    assert_close(what, &got.to_rows(), &want.to_rows(), tol);
}

/// Rearranges the `k` equal row blocks of `m`: output block `j` is input block `src[j]`.
pub fn permute_row_blocks(m: &Mat, src: &[usize]) -> Mat {
    let h = m.rows / src.len();
    assert_eq!(
        h * src.len(),
        m.rows,
        "permute_row_blocks: rows not divisible"
    );
    let parts: Vec<Mat> = src.iter().map(|&s| m.rows_range(s * h, h)).collect();
    Mat::vstack(&parts.iter().collect::<Vec<_>>())
}

/// A plain RNN has one gate block: moving to PyTorch layout only transposes.
pub const PLAIN: [usize; 1] = [0];

/// Notebook LSTM gate order f,g,i,o -> PyTorch order i,f,g,o: PyTorch block `j` is notebook
/// block `FGIO_TO_IFGO[j]`.
pub const FGIO_TO_IFGO: [usize; 4] = [2, 0, 1, 3];
/// The inverse: notebook block `j` is PyTorch block `IFGO_TO_FGIO[j]`.
pub const IFGO_TO_FGIO: [usize; 4] = [1, 2, 0, 3];

/// A notebook weight `W [in, G*H]` (used as `x @ W`) in PyTorch layout `[G*H, in]` (used as
/// `x @ W^T`), gate blocks reordered by `src` (identity for a plain RNN).
pub fn numpy_to_torch_weight(w: &Mat, src: &[usize]) -> Mat {
    permute_row_blocks(&w.t(), src)
}

/// A notebook bias `b [1, G*H]` with its gate blocks reordered by `src`.
pub fn numpy_to_torch_bias(b: &Mat, src: &[usize]) -> Mat {
    permute_row_blocks(&b.t(), src).t()
}

/// A PyTorch-layout weight gradient `[G*H, in]` back in notebook layout `[in, G*H]`.
pub fn torch_to_numpy_weight(w: &Mat, src: &[usize]) -> Mat {
    permute_row_blocks(w, src).t()
}

/// A PyTorch-layout bias gradient `[G*H]` (as a row) back in notebook gate order.
pub fn torch_to_numpy_bias(b: &Mat, src: &[usize]) -> Mat {
    permute_row_blocks(&b.t(), src).t()
}
