//! A GRU backward derived by hand (PyTorch convention: gates r, z, n with
//! `n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`, `h' = (1 - z) * n + z * h`; see
//! `hand_derived/gru.rs` for the derivation) used as an oracle for the tape.
//!
//! None of the notebooks writes a GRU backward, so the derivation is first checked against
//! central finite differences (tolerance 1e-7); the tape is then compared with it at
//! `TOL = 1e-10` (absolute, every entry, `f64`).

mod hand_derived;

use hand_derived::gru::{gru_backward, gru_forward, GruGrads, GruParams, TimeGru};
use hand_derived::mat::{Arr3, Mat};
use hand_derived::nn_load::{entry, load, param_grad};
use hand_derived::{
    arr3_of, assert_close, assert_close3, assert_grad, grad_arr3, mat_of, t1, t2, t3, TOL,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use retrograd::nn::rnn::{CellConfig, Gru as NnGru, GruCell, RnnConfig};
use retrograd::nn::Module;
use retrograd::{GradStore, Result, Tensor};

/// `(weight_ih, weight_hh, bias_ih, bias_hh)` as tape leaves.
type W = (Tensor<f64>, Tensor<f64>, Tensor<f64>, Tensor<f64>);

fn params(d: usize, h: usize, rng: &mut StdRng) -> GruParams {
    GruParams {
        w_ih: Mat::rand(3 * h, d, 0.6, rng),
        w_hh: Mat::rand(3 * h, h, 0.6, rng),
        b_ih: Mat::rand(1, 3 * h, 0.4, rng),
        b_hh: Mat::rand(1, 3 * h, 0.4, rng),
    }
}

fn leaves(p: &GruParams) -> W {
    (
        t2(&p.w_ih).requires_grad(),
        t2(&p.w_hh).requires_grad(),
        t1(&p.b_ih).requires_grad(),
        t1(&p.b_hh).requires_grad(),
    )
}

/// One GRU step from core ops (`x @ W^T` on PyTorch-layout weights, gates narrowed r, z, n).
fn tape_step(
    x: &Tensor<f64>,
    h: &Tensor<f64>,
    (w_ih, w_hh, b_ih, b_hh): &W,
) -> Result<Tensor<f64>> {
    let hd = h.dim(1)?;
    let gi = x.matmul(&w_ih.t()?)?.add(b_ih)?;
    let gh = h.matmul(&w_hh.t()?)?.add(b_hh)?;
    let r = gi.narrow(1, 0, hd)?.add(&gh.narrow(1, 0, hd)?)?.sigmoid();
    let z = gi.narrow(1, hd, hd)?.add(&gh.narrow(1, hd, hd)?)?.sigmoid();
    let n = gi
        .narrow(1, 2 * hd, hd)?
        .add(&r.mul(&gh.narrow(1, 2 * hd, hd)?)?)?
        .tanh();
    // h' = (1 - z) * n + z * h  ==  n + z * (h - n)
    n.add(&z.mul(&h.sub(&n)?)?)
}

fn tape_time_gru(xs: &Tensor<f64>, h0: &Tensor<f64>, w: &W) -> Result<Tensor<f64>> {
    let mut h = h0.clone();
    let mut hs = Vec::new();
    for t in 0..xs.dim(1)? {
        h = tape_step(&xs.select(1, t)?, &h, w)?;
        hs.push(h.clone());
    }
    Tensor::stack(&hs.iter().collect::<Vec<_>>(), 1)
}

/// The tape's gradients of the leaves `w` against the hand-derived ones.
fn assert_tape_grads(g: &GradStore<f64>, w: &W, want: &GruGrads) {
    assert_grad("dW_ih", g, &w.0, "W_ih", &want.dw_ih);
    assert_grad("dW_hh", g, &w.1, "W_hh", &want.dw_hh);
    assert_grad("db_ih", g, &w.2, "b_ih", &want.db_ih);
    assert_grad("db_hh", g, &w.3, "b_hh", &want.db_hh);
}

/// `sum(hs * dhs)` computed by the hand-written forward only.
fn hand_objective(p: &GruParams, xs: &Arr3, h0: &Mat, dhs: &Arr3) -> f64 {
    let hs = TimeGru::new(p.clone()).forward(xs, h0);
    hs.data.iter().zip(&dhs.data).map(|(a, b)| a * b).sum()
}

/// Central differences of `f` with respect to every entry of the matrix `pick` selects.
fn numeric_grad(
    base: &GruParams,
    pick: impl Fn(&mut GruParams) -> &mut Mat,
    f: impl Fn(&GruParams) -> f64,
) -> Mat {
    let eps = 1e-6;
    let mut p = base.clone();
    let (rows, cols) = {
        let m = pick(&mut p);
        (m.rows, m.cols)
    };
    Mat::from_fn(rows, cols, |i, j| {
        let mut plus = base.clone();
        *pick(&mut plus).at_mut(i, j) += eps;
        let mut minus = base.clone();
        *pick(&mut minus).at_mut(i, j) -= eps;
        (f(&plus) - f(&minus)) / (2.0 * eps)
    })
}

#[test]
fn hand_derived_gru_backward_agrees_with_finite_differences() {
    // tolerance: 1e-7 (central differences, eps 1e-6, in f64)
    let mut rng = StdRng::seed_from_u64(31);
    let (n, t, d, h) = (2, 3, 3, 3);
    let p = params(d, h, &mut rng);
    let xs = Arr3::rand(n, t, d, 1.0, &mut rng);
    let h0 = Mat::rand(n, h, 0.7, &mut rng);
    let dhs = Arr3::rand(n, t, h, 1.0, &mut rng);

    let mut layer = TimeGru::new(p.clone());
    layer.forward(&xs, &h0);
    layer.backward(&dhs);
    let f = |q: &GruParams| hand_objective(q, &xs, &h0, &dhs);
    let tol = 1e-7;
    let num_ih = numeric_grad(&p, |q| &mut q.w_ih, f);
    assert_close(
        "dW_ih vs finite differences",
        &layer.grads.dw_ih,
        &num_ih,
        tol,
    );
    let num_hh = numeric_grad(&p, |q| &mut q.w_hh, f);
    assert_close(
        "dW_hh vs finite differences",
        &layer.grads.dw_hh,
        &num_hh,
        tol,
    );
    let num_bih = numeric_grad(&p, |q| &mut q.b_ih, f);
    assert_close(
        "db_ih vs finite differences",
        &layer.grads.db_ih,
        &num_bih,
        tol,
    );
    let num_bhh = numeric_grad(&p, |q| &mut q.b_hh, f);
    assert_close(
        "db_hh vs finite differences",
        &layer.grads.db_hh,
        &num_bhh,
        tol,
    );

    // dh0 by perturbing the initial state
    let eps = 1e-6;
    let num_h0 = Mat::from_fn(n, h, |i, j| {
        let (mut hp, mut hm) = (h0.clone(), h0.clone());
        *hp.at_mut(i, j) += eps;
        *hm.at_mut(i, j) -= eps;
        (hand_objective(&p, &xs, &hp, &dhs) - hand_objective(&p, &xs, &hm, &dhs)) / (2.0 * eps)
    });
    assert_close(
        "dh0 vs finite differences",
        layer.dh0.as_ref().unwrap(),
        &num_h0,
        tol,
    );
}

#[test]
fn gru_cell_backward_matches_hand_derivation() -> Result<()> {
    // tolerance: TOL = 1e-10
    let mut rng = StdRng::seed_from_u64(32);
    let (n, d, h) = (3, 4, 5);
    let p = params(d, h, &mut rng);
    let x = Mat::rand(n, d, 1.0, &mut rng);
    let h_prev = Mat::rand(n, h, 0.8, &mut rng);
    let dh_next = Mat::rand(n, h, 1.0, &mut rng);
    let (h_next, cache) = gru_forward(&p, &x, &h_prev);
    let (dx, dh_prev, grads) = gru_backward(&p, &cache, &dh_next);

    let w = leaves(&p);
    let (xt, ht) = (t2(&x).requires_grad(), t2(&h_prev).requires_grad());
    let out = tape_step(&xt, &ht, &w)?;
    assert_close("h_next", &mat_of(&out), &h_next, TOL);
    let g = out.backward_with(&t2(&dh_next))?;
    assert_grad("dx", &g, &xt, "x", &dx);
    assert_grad("dh_prev", &g, &ht, "h_prev", &dh_prev);
    assert_tape_grads(&g, &w, &grads);
    // b_in and b_hn are not interchangeable (b_hn sits inside r * (.)): their grads differ
    let (db_in, db_hn) = (
        grads.db_ih.cols_range(2 * h, h),
        grads.db_hh.cols_range(2 * h, h),
    );
    assert!(db_in.max_abs_diff(&db_hn) > 1e-6);
    Ok(())
}

#[test]
fn time_gru_bptt_matches_hand_derivation() -> Result<()> {
    // tolerance: TOL = 1e-10
    let mut rng = StdRng::seed_from_u64(33);
    let (n, t, d, h) = (2, 6, 3, 4);
    let p = params(d, h, &mut rng);
    let xs = Arr3::rand(n, t, d, 1.0, &mut rng);
    let h0 = Mat::rand(n, h, 0.6, &mut rng);
    let dhs = Arr3::rand(n, t, h, 1.0, &mut rng);
    let mut layer = TimeGru::new(p.clone());
    let hs = layer.forward(&xs, &h0);
    let dxs = layer.backward(&dhs);

    let w = leaves(&p);
    let (xs_t, h0_t) = (t3(&xs).requires_grad(), t2(&h0).requires_grad());
    let hs_t = tape_time_gru(&xs_t, &h0_t, &w)?;
    assert_close3("hs", &arr3_of(&hs_t), &hs, TOL);
    let g = hs_t.backward_with(&t3(&dhs))?;
    assert_close3("dxs", &grad_arr3(&g, &xs_t, "xs"), &dxs, TOL);
    assert_tape_grads(&g, &w, &layer.grads);
    assert_grad("dh0", &g, &h0_t, "h0", layer.dh0.as_ref().unwrap());
    Ok(())
}

// ---- the same oracle against the nn layers (already PyTorch layout: loaded as is) ----

fn torch_entries(p: &GruParams, suffix: &str) -> Vec<(String, Tensor<f64>)> {
    vec![
        entry(format!("weight_ih{suffix}"), t2(&p.w_ih)),
        entry(format!("weight_hh{suffix}"), t2(&p.w_hh)),
        entry(format!("bias_ih{suffix}"), t1(&p.b_ih)),
        entry(format!("bias_hh{suffix}"), t1(&p.b_hh)),
    ]
}

fn assert_layer_grads<M: Module<f64>>(m: &M, g: &GradStore<f64>, suffix: &str, want: &GruGrads) {
    let w = |n: &str| param_grad(m, g, &format!("{n}{suffix}"));
    assert_close("nn dW_ih", &w("weight_ih"), &want.dw_ih, TOL);
    assert_close("nn dW_hh", &w("weight_hh"), &want.dw_hh, TOL);
    assert_close("nn db_ih", &w("bias_ih"), &want.db_ih, TOL);
    assert_close("nn db_hh", &w("bias_hh"), &want.db_hh, TOL);
}

#[test]
fn nn_gru_cell_matches_hand_derivation() -> Result<()> {
    // tolerance: TOL = 1e-10
    let mut rng = StdRng::seed_from_u64(34);
    let (n, d, h) = (3, 4, 5);
    let p = params(d, h, &mut rng);
    let (x, h_prev) = (
        Mat::rand(n, d, 1.0, &mut rng),
        Mat::rand(n, h, 0.8, &mut rng),
    );
    let dh_next = Mat::rand(n, h, 1.0, &mut rng);
    let (h_next, cache) = gru_forward(&p, &x, &h_prev);
    let (dx, dh_prev, grads) = gru_backward(&p, &cache, &dh_next);

    let cell = GruCell::<f64>::new(CellConfig::new(d, h), &mut rng)?;
    load(&cell, torch_entries(&p, ""));
    let (xt, ht) = (t2(&x).requires_grad(), t2(&h_prev).requires_grad());
    let out = cell.forward(&xt, Some(&ht))?;
    assert_close("nn h_next", &mat_of(&out), &h_next, TOL);
    let g = out.backward_with(&t2(&dh_next))?;
    assert_grad("nn dx", &g, &xt, "x", &dx);
    assert_grad("nn dh_prev", &g, &ht, "h_prev", &dh_prev);
    assert_layer_grads(&cell, &g, "", &grads);
    Ok(())
}

#[test]
fn nn_gru_layer_matches_hand_derivation() -> Result<()> {
    // tolerance: TOL = 1e-10. Time-major input (L, N, D), the nn default.
    let mut rng = StdRng::seed_from_u64(35);
    let (n, t, d, h) = (2, 5, 3, 4);
    let p = params(d, h, &mut rng);
    let xs = Arr3::rand(n, t, d, 1.0, &mut rng);
    let h0 = Mat::rand(n, h, 0.6, &mut rng);
    let dhs = Arr3::rand(n, t, h, 1.0, &mut rng);
    let mut layer = TimeGru::new(p.clone());
    let hs = layer.forward(&xs, &h0);
    let dxs = layer.backward(&dhs);

    let gru = NnGru::<f64>::new(RnnConfig::new(d, h), &mut rng)?;
    load(&gru, torch_entries(&p, "_l0"));
    let xs_t = t3(&xs).requires_grad();
    let x_tm = xs_t.transpose(0, 1)?; // [N, T, D] -> [T, N, D]
    let h0_t = t2(&h0).reshape(&[1, n, h])?.requires_grad();
    let (out, h_n) = gru.forward(&x_tm, Some(&h0_t))?;
    let out = out.transpose(0, 1)?; // back to [N, T, H]
    assert_close3("nn output", &arr3_of(&out.contiguous()), &hs, TOL);
    assert_close("nn h_n", &mat_of(&h_n.select(0, 0)?), &hs.step(t - 1), TOL);
    let g = out.backward_with(&t3(&dhs))?;
    assert_close3("nn dxs", &grad_arr3(&g, &xs_t, "xs"), &dxs, TOL);
    assert_layer_grads(&gru, &g, "_l0", &layer.grads);
    let dh0 = mat_of(&g.get(&h0_t).expect("h0 grad").select(0, 0)?);
    assert_close("nn dh0", &dh0, layer.dh0.as_ref().unwrap(), TOL);
    Ok(())
}
