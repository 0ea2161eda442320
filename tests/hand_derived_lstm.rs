//! The notebook's hand-written `LSTM.backward` / `TimeLSTM.backward` (DLFS2: `A = x @ Wx +
//! h @ Wh + b`, gate blocks sliced **f, g, i, o**) used as oracles for the tape.
//!
//! Every comparison is in `f64` with tolerance `TOL = 1e-10` (absolute, every entry).

mod hand_derived;

use hand_derived::mat::{Arr3, Mat};
use hand_derived::nn_load::{assert_notebook_layer_grads, load, notebook_torch_entries};
use hand_derived::numpy_lstm::{Lstm, LstmParams, TimeLstm};
use hand_derived::{
    arr3_of, assert_close, assert_close3, assert_grad, assert_notebook_grads, grad_arr3, mat_of,
    notebook_leaves, t2, t3, NotebookLeaves, FGIO_TO_IFGO, IFGO_TO_FGIO, TOL,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use retrograd::nn::rnn::{CellConfig, Lstm as NnLstm, LstmCell, LstmState, RnnConfig};
use retrograd::{Result, Tensor};

fn params(d: usize, h: usize, rng: &mut StdRng) -> LstmParams {
    LstmParams {
        wx: Mat::rand(d, 4 * h, 0.6, rng),
        wh: Mat::rand(h, 4 * h, 0.6, rng),
        b: Mat::rand(1, 4 * h, 0.4, rng),
    }
}

/// `LSTM.forward` from core ops, slicing the fused pre-activation `A` as f, g, i, o.
fn tape_step(
    x: &Tensor<f64>,
    h: &Tensor<f64>,
    c: &Tensor<f64>,
    (wx, wh, b): &NotebookLeaves,
) -> Result<(Tensor<f64>, Tensor<f64>)> {
    let hd = h.dim(1)?;
    let a = x.matmul(wx)?.add(&h.matmul(wh)?)?.add(b)?;
    let f = a.narrow(1, 0, hd)?.sigmoid();
    let g = a.narrow(1, hd, hd)?.tanh();
    let i = a.narrow(1, 2 * hd, hd)?.sigmoid();
    let o = a.narrow(1, 3 * hd, hd)?.sigmoid();
    let c_next = f.mul(c)?.add(&g.mul(&i)?)?;
    let h_next = o.mul(&c_next.tanh())?;
    Ok((h_next, c_next))
}

/// `TimeLSTM.forward` from core ops -> `(hs [N, T, H], h_T, c_T)`.
fn tape_time_lstm(
    xs: &Tensor<f64>,
    h0: &Tensor<f64>,
    c0: &Tensor<f64>,
    w: &NotebookLeaves,
) -> Result<(Tensor<f64>, Tensor<f64>, Tensor<f64>)> {
    let (mut h, mut c) = (h0.clone(), c0.clone());
    let mut hs = Vec::new();
    for t in 0..xs.dim(1)? {
        (h, c) = tape_step(&xs.select(1, t)?, &h, &c, w)?;
        hs.push(h.clone());
    }
    Ok((Tensor::stack(&hs.iter().collect::<Vec<_>>(), 1)?, h, c))
}

/// `sum(h * dh) + sum(c * dc)`: backward of it seeds `dh_next`, `dc_next` exactly.
fn weighted(h: &Tensor<f64>, dh: &Mat, c: &Tensor<f64>, dc: &Mat) -> Result<Tensor<f64>> {
    h.mul(&t2(dh))?.sum_all().add(&c.mul(&t2(dc))?.sum_all())
}

#[test]
fn lstm_cell_backward_matches_notebook_lstm_backward() -> Result<()> {
    // tolerance: TOL = 1e-10
    let mut rng = StdRng::seed_from_u64(21);
    let (n, d, h) = (3, 4, 5);
    let p = params(d, h, &mut rng);
    let x = Mat::rand(n, d, 1.0, &mut rng);
    let (h_prev, c_prev) = (
        Mat::rand(n, h, 0.8, &mut rng),
        Mat::rand(n, h, 1.0, &mut rng),
    );
    let (dh_next, dc_next) = (
        Mat::rand(n, h, 1.0, &mut rng),
        Mat::rand(n, h, 1.0, &mut rng),
    );

    let mut cell = Lstm::new(p.clone());
    let (h_next, c_next) = cell.forward(&x, &h_prev, &c_prev);
    let (dx, dh_prev, dc_prev) = cell.backward(&dh_next, &dc_next);

    let w = notebook_leaves(&p);
    let (xt, ht, ct) = (
        t2(&x).requires_grad(),
        t2(&h_prev).requires_grad(),
        t2(&c_prev).requires_grad(),
    );
    let (hn, cn) = tape_step(&xt, &ht, &ct, &w)?;
    assert_close("h_next", &mat_of(&hn), &h_next, TOL);
    assert_close("c_next", &mat_of(&cn), &c_next, TOL);
    let g = weighted(&hn, &dh_next, &cn, &dc_next)?.backward()?;
    assert_grad("dx", &g, &xt, "x", &dx);
    assert_grad("dh_prev", &g, &ht, "h_prev", &dh_prev);
    assert_grad("dc_prev", &g, &ct, "c_prev", &dc_prev);
    assert_notebook_grads(&g, &w, &cell.grads, "", "");
    Ok(())
}

#[test]
fn time_lstm_bptt_matches_notebook_time_lstm_backward() -> Result<()> {
    // tolerance: TOL = 1e-10. Stateful TimeLSTM with (h, c) set by set_state, so the
    // gradients of the initial state (dh, and the dc the notebook computes but drops) count.
    let mut rng = StdRng::seed_from_u64(22);
    let (n, t, d, h) = (2, 5, 3, 4);
    let p = params(d, h, &mut rng);
    let xs = Arr3::rand(n, t, d, 1.0, &mut rng);
    let dhs = Arr3::rand(n, t, h, 1.0, &mut rng);
    let (h0, c0) = (
        Mat::rand(n, h, 0.5, &mut rng),
        Mat::rand(n, h, 0.8, &mut rng),
    );

    let mut layer = TimeLstm::new(p.clone(), true);
    layer.set_state(h0.clone(), Some(c0.clone()));
    let hs = layer.forward(&xs);
    let dxs = layer.backward(&dhs);

    let w = notebook_leaves(&p);
    let (xs_t, h0_t, c0_t) = (
        t3(&xs).requires_grad(),
        t2(&h0).requires_grad(),
        t2(&c0).requires_grad(),
    );
    let (hs_t, h_last, c_last) = tape_time_lstm(&xs_t, &h0_t, &c0_t, &w)?;
    assert_close3("hs", &arr3_of(&hs_t), &hs, TOL);
    assert_close("final h", &mat_of(&h_last), layer.h.as_ref().unwrap(), TOL);
    assert_close("final c", &mat_of(&c_last), layer.c.as_ref().unwrap(), TOL);
    let g = hs_t.backward_with(&t3(&dhs))?;
    assert_close3("dxs", &grad_arr3(&g, &xs_t, "xs"), &dxs, TOL);
    assert_notebook_grads(&g, &w, &layer.grads, "", "");
    assert_grad("dh0", &g, &h0_t, "h0", layer.dh.as_ref().unwrap());
    assert_grad("dc0", &g, &c0_t, "c0", layer.dc.as_ref().unwrap());
    Ok(())
}

#[test]
fn time_lstm_two_chunks_carry_h_and_c_as_constants() -> Result<()> {
    // tolerance: TOL = 1e-10. Stateful TimeLSTM over two chunks: the second starts from the
    // first's final (h, c); the tape gets the same gradients once both are detached.
    let mut rng = StdRng::seed_from_u64(23);
    let (n, t, d, h) = (2, 3, 2, 3);
    let p = params(d, h, &mut rng);
    let (xs1, xs2) = (
        Arr3::rand(n, t, d, 1.0, &mut rng),
        Arr3::rand(n, t, d, 1.0, &mut rng),
    );
    let dhs2 = Arr3::rand(n, t, h, 1.0, &mut rng);

    let mut layer = TimeLstm::new(p.clone(), true);
    layer.forward(&xs1);
    let dxs2 = {
        layer.forward(&xs2);
        layer.backward(&dhs2)
    };

    let w = notebook_leaves(&p);
    let zeros = Tensor::<f64>::zeros(&[n, h]);
    let (_, h1, c1) = tape_time_lstm(&t3(&xs1), &zeros, &zeros, &w)?;
    let (hc, cc) = (h1.detach().requires_grad(), c1.detach().requires_grad());
    let xs2_t = t3(&xs2).requires_grad();
    let (hs2, _, _) = tape_time_lstm(&xs2_t, &hc, &cc, &w)?;
    let g = hs2.backward_with(&t3(&dhs2))?;
    assert_close3("chunk 2 dxs", &grad_arr3(&g, &xs2_t, "xs2"), &dxs2, TOL);
    assert_notebook_grads(&g, &w, &layer.grads, "chunk 2 ", "");
    assert_grad("chunk 2 dh", &g, &hc, "h carry", layer.dh.as_ref().unwrap());
    assert_grad("chunk 2 dc", &g, &cc, "c carry", layer.dc.as_ref().unwrap());
    Ok(())
}

#[test]
fn reading_the_gates_in_pytorch_order_breaks_the_match() -> Result<()> {
    // The comparison is sensitive to the slice order: an i,f,g,o reading of the notebook's
    // f,g,i,o weights gives a different h_next (guards against a vacuous oracle).
    let mut rng = StdRng::seed_from_u64(24);
    let (n, d, h) = (2, 3, 4);
    let p = params(d, h, &mut rng);
    let (x, h_prev, c_prev) = (
        Mat::rand(n, d, 1.0, &mut rng),
        Mat::rand(n, h, 0.8, &mut rng),
        Mat::rand(n, h, 1.0, &mut rng),
    );
    let (h_next, _) = Lstm::new(p.clone()).forward(&x, &h_prev, &c_prev);
    let w = notebook_leaves(&p);
    let a = t2(&x)
        .matmul(&w.0)?
        .add(&t2(&h_prev).matmul(&w.1)?)?
        .add(&w.2)?;
    let i = a.narrow(1, 0, h)?.sigmoid();
    let f = a.narrow(1, h, h)?.sigmoid();
    let g = a.narrow(1, 2 * h, h)?.tanh();
    let o = a.narrow(1, 3 * h, h)?.sigmoid();
    let c = f.mul(&t2(&c_prev))?.add(&i.mul(&g)?)?;
    let wrong = mat_of(&o.mul(&c.tanh())?);
    assert!(wrong.max_abs_diff(&h_next) > 1e-3);
    Ok(())
}

// ---- the same oracles against the nn layers: PyTorch layout and gate order i,f,g,o ----

#[test]
fn nn_lstm_cell_matches_notebook_lstm_backward() -> Result<()> {
    // tolerance: TOL = 1e-10. Notebook b loaded into bias_ih, bias_hh = 0.
    let mut rng = StdRng::seed_from_u64(25);
    let (n, d, h) = (3, 4, 5);
    let p = params(d, h, &mut rng);
    let x = Mat::rand(n, d, 1.0, &mut rng);
    let (h_prev, c_prev) = (
        Mat::rand(n, h, 0.8, &mut rng),
        Mat::rand(n, h, 1.0, &mut rng),
    );
    let (dh_next, dc_next) = (
        Mat::rand(n, h, 1.0, &mut rng),
        Mat::rand(n, h, 1.0, &mut rng),
    );
    let mut cell = Lstm::new(p.clone());
    let (h_next, c_next) = cell.forward(&x, &h_prev, &c_prev);
    let (dx, dh_prev, dc_prev) = cell.backward(&dh_next, &dc_next);

    let nn_cell = LstmCell::<f64>::new(CellConfig::new(d, h), &mut rng)?;
    load(
        &nn_cell,
        notebook_torch_entries(&p, &Mat::zeros(1, 4 * h), "", &FGIO_TO_IFGO),
    );
    let (xt, ht, ct) = (
        t2(&x).requires_grad(),
        t2(&h_prev).requires_grad(),
        t2(&c_prev).requires_grad(),
    );
    let next = nn_cell.forward(&xt, Some(&LstmState::new(ht.clone(), ct.clone())))?;
    assert_close("nn h_next", &mat_of(&next.h), &h_next, TOL);
    assert_close("nn c_next", &mat_of(&next.c), &c_next, TOL);
    let g = weighted(&next.h, &dh_next, &next.c, &dc_next)?.backward()?;
    assert_grad("nn dx", &g, &xt, "x", &dx);
    assert_grad("nn dh_prev", &g, &ht, "h_prev", &dh_prev);
    assert_grad("nn dc_prev", &g, &ct, "c_prev", &dc_prev);
    assert_notebook_layer_grads(&nn_cell, &g, "", &cell.grads, &IFGO_TO_FGIO);
    Ok(())
}

#[test]
fn nn_lstm_layer_matches_notebook_time_lstm() -> Result<()> {
    // tolerance: TOL = 1e-10. batch_first, initial (h0, c0) given, b split at random.
    let mut rng = StdRng::seed_from_u64(26);
    let (n, t, d, h) = (2, 5, 3, 4);
    let p = params(d, h, &mut rng);
    let xs = Arr3::rand(n, t, d, 1.0, &mut rng);
    let dhs = Arr3::rand(n, t, h, 1.0, &mut rng);
    let (h0, c0) = (
        Mat::rand(n, h, 0.5, &mut rng),
        Mat::rand(n, h, 0.8, &mut rng),
    );
    let split = Mat::rand(1, 4 * h, 0.5, &mut rng);
    let mut layer = TimeLstm::new(p.clone(), true);
    layer.set_state(h0.clone(), Some(c0.clone()));
    let hs = layer.forward(&xs);
    let dxs = layer.backward(&dhs);

    let lstm = NnLstm::<f64>::new(RnnConfig::new(d, h).batch_first(true), &mut rng)?;
    load(
        &lstm,
        notebook_torch_entries(&p, &split, "_l0", &FGIO_TO_IFGO),
    );
    let xs_t = t3(&xs).requires_grad();
    let h0_t = t2(&h0).reshape(&[1, n, h])?.requires_grad();
    let c0_t = t2(&c0).reshape(&[1, n, h])?.requires_grad();
    let state = LstmState::new(h0_t.clone(), c0_t.clone());
    let (out, last) = lstm.forward(&xs_t, Some(&state))?;
    assert_close3("nn output", &arr3_of(&out), &hs, TOL);
    assert_close(
        "nn h_n",
        &mat_of(&last.h.select(0, 0)?),
        layer.h.as_ref().unwrap(),
        TOL,
    );
    assert_close(
        "nn c_n",
        &mat_of(&last.c.select(0, 0)?),
        layer.c.as_ref().unwrap(),
        TOL,
    );
    let g = out.backward_with(&t3(&dhs))?;
    assert_close3("nn dxs", &grad_arr3(&g, &xs_t, "xs"), &dxs, TOL);
    assert_notebook_layer_grads(&lstm, &g, "_l0", &layer.grads, &IFGO_TO_FGIO);
    let dh0 = mat_of(&g.get(&h0_t).expect("h0 grad").select(0, 0)?);
    assert_close("nn dh0", &dh0, layer.dh.as_ref().unwrap(), TOL);
    let dc0 = mat_of(&g.get(&c0_t).expect("c0 grad").select(0, 0)?);
    assert_close("nn dc0", &dc0, layer.dc.as_ref().unwrap(), TOL);
    Ok(())
}
