//! The notebooks' hand-written `RNN.backward` / `TimeRNN.backward` (DLFS2 convention
//! `h' = tanh(h @ Wh + x @ Wx + b)`, `Wx [D, H]`) used as oracles for the tape.
//!
//! Every comparison is in `f64` with tolerance `TOL = 1e-10` (absolute, every entry).

mod hand_derived;

use hand_derived::mat::{Arr3, Mat};
use hand_derived::nn_load::{assert_notebook_layer_grads, load, notebook_torch_entries};
use hand_derived::numpy_rnn::{Rnn, RnnParams, TimeRnn};
use hand_derived::{assert_close, assert_close3, grad_arr3, grad_mat, mat_of, t2, t3, TOL};
use hand_derived::{assert_grad, assert_notebook_grads, notebook_leaves, NotebookLeaves, PLAIN};
use rand::rngs::StdRng;
use rand::SeedableRng;
use retrograd::nn::rnn::{CellConfig, Rnn as NnRnn, RnnCell, RnnConfig};
use retrograd::{Result, Tensor};

fn params(d: usize, h: usize, rng: &mut StdRng) -> RnnParams {
    RnnParams {
        wx: Mat::rand(d, h, 0.6, rng),
        wh: Mat::rand(h, h, 0.6, rng),
        b: Mat::rand(1, h, 0.3, rng),
    }
}

/// `RNN.forward` from core ops.
fn tape_step(
    x: &Tensor<f64>,
    h: &Tensor<f64>,
    (wx, wh, b): &NotebookLeaves,
) -> Result<Tensor<f64>> {
    Ok(h.matmul(wh)?.add(&x.matmul(wx)?)?.add(b)?.tanh())
}

/// `TimeRNN.forward` from core ops: `xs [N, T, D]`, initial `h0` -> `(hs [N, T, H], h_T)`.
fn tape_time_rnn(
    xs: &Tensor<f64>,
    h0: &Tensor<f64>,
    w: &NotebookLeaves,
) -> Result<(Tensor<f64>, Tensor<f64>)> {
    let mut h = h0.clone();
    let mut hs = Vec::new();
    for t in 0..xs.dim(1)? {
        h = tape_step(&xs.select(1, t)?, &h, w)?;
        hs.push(h.clone());
    }
    let hs = Tensor::stack(&hs.iter().collect::<Vec<_>>(), 1)?;
    Ok((hs, h))
}

#[test]
fn rnn_cell_backward_matches_notebook_rnn_backward() -> Result<()> {
    // tolerance: TOL = 1e-10
    let mut rng = StdRng::seed_from_u64(11);
    let (n, d, h) = (3, 4, 5);
    let p = params(d, h, &mut rng);
    let x = Mat::rand(n, d, 1.0, &mut rng);
    let h_prev = Mat::rand(n, h, 0.8, &mut rng);
    let dh_next = Mat::rand(n, h, 1.0, &mut rng);

    let mut cell = Rnn::new(p.clone());
    let h_next = cell.forward(&x, &h_prev);
    let (dx, dh_prev) = cell.backward(&dh_next);

    let w = notebook_leaves(&p);
    let (xt, ht) = (t2(&x).requires_grad(), t2(&h_prev).requires_grad());
    let out = tape_step(&xt, &ht, &w)?;
    assert_close("h_next", &mat_of(&out), &h_next, TOL);
    let g = out.backward_with(&t2(&dh_next))?;
    assert_grad("dx", &g, &xt, "x", &dx);
    assert_grad("dh_prev", &g, &ht, "h_prev", &dh_prev);
    assert_notebook_grads(&g, &w, &cell.grads, "", "");
    Ok(())
}

#[test]
fn time_rnn_bptt_matches_notebook_time_rnn_backward() -> Result<()> {
    // tolerance: TOL = 1e-10
    let mut rng = StdRng::seed_from_u64(12);
    let (n, t, d, h) = (2, 6, 3, 4);
    let p = params(d, h, &mut rng);
    let xs = Arr3::rand(n, t, d, 1.0, &mut rng);
    let dhs = Arr3::rand(n, t, h, 1.0, &mut rng);
    let h0 = Mat::rand(n, h, 0.5, &mut rng);

    // stateful TimeRNN whose state was set by `set_state` (so dh is the gradient of h0)
    let mut layer = TimeRnn::new(p.clone(), true);
    layer.set_state(h0.clone());
    let hs = layer.forward(&xs);
    let dxs = layer.backward(&dhs);

    let w = notebook_leaves(&p);
    let (xs_t, h0_t) = (t3(&xs).requires_grad(), t2(&h0).requires_grad());
    let (hs_t, h_last) = tape_time_rnn(&xs_t, &h0_t, &w)?;
    assert_close3("hs", &hand_derived::arr3_of(&hs_t), &hs, TOL);
    assert_close("final h", &mat_of(&h_last), layer.h.as_ref().unwrap(), TOL);
    let g = hs_t.backward_with(&t3(&dhs))?;
    assert_close3("dxs", &grad_arr3(&g, &xs_t, "xs"), &dxs, TOL);
    assert_notebook_grads(&g, &w, &layer.grads, "", " (summed over time)");
    assert_grad(
        "dh (TimeRNN.dh)",
        &g,
        &h0_t,
        "h0",
        layer.dh.as_ref().unwrap(),
    );
    Ok(())
}

#[test]
fn time_rnn_zero_initial_state_matches_notebook() -> Result<()> {
    // tolerance: TOL = 1e-10. Non-stateful: the notebook starts from np.zeros((N, H)).
    let mut rng = StdRng::seed_from_u64(13);
    let (n, t, d, h) = (3, 4, 2, 3);
    let p = params(d, h, &mut rng);
    let xs = Arr3::rand(n, t, d, 1.0, &mut rng);
    let dhs = Arr3::rand(n, t, h, 1.0, &mut rng);

    let mut layer = TimeRnn::new(p.clone(), false);
    layer.set_state(Mat::rand(n, h, 1.0, &mut rng)); // ignored: not stateful
    let hs = layer.forward(&xs);
    let dxs = layer.backward(&dhs);

    let w = notebook_leaves(&p);
    let xs_t = t3(&xs).requires_grad();
    let h0_t = Tensor::<f64>::zeros(&[n, h]).requires_grad();
    let (hs_t, _) = tape_time_rnn(&xs_t, &h0_t, &w)?;
    assert_close3("hs", &hand_derived::arr3_of(&hs_t), &hs, TOL);
    let g = hs_t.backward_with(&t3(&dhs))?;
    assert_close3("dxs", &grad_arr3(&g, &xs_t, "xs"), &dxs, TOL);
    assert_notebook_grads(&g, &w, &layer.grads, "", "");
    assert_grad("dh0", &g, &h0_t, "h0", layer.dh.as_ref().unwrap());
    Ok(())
}

#[test]
fn truncated_bptt_second_chunk_treats_carried_state_as_constant() -> Result<()> {
    // tolerance: TOL = 1e-10. Chunk 2 starts from chunk 1's final h (stateful TimeRNN); the
    // notebook's backward of chunk 2 stops there, the tape does so after `detach()`.
    let mut rng = StdRng::seed_from_u64(14);
    let (n, t, d, h) = (2, 4, 3, 4);
    let p = params(d, h, &mut rng);
    let (xs1, xs2) = (
        Arr3::rand(n, t, d, 1.0, &mut rng),
        Arr3::rand(n, t, d, 1.0, &mut rng),
    );
    let (dhs1, dhs2) = (
        Arr3::rand(n, t, h, 1.0, &mut rng),
        Arr3::rand(n, t, h, 1.0, &mut rng),
    );

    let mut layer = TimeRnn::new(p.clone(), true);
    layer.forward(&xs1);
    layer.backward(&dhs1);
    let chunk1 = layer.grads.clone();
    let carried = layer.h.clone().unwrap();
    let hs2 = layer.forward(&xs2);
    let dxs2 = layer.backward(&dhs2);

    let w = notebook_leaves(&p);
    let xs1_t = t3(&xs1).requires_grad();
    let (hs1_t, h1) = tape_time_rnn(&xs1_t, &Tensor::zeros(&[n, h]), &w)?;
    let g1 = hs1_t.backward_with(&t3(&dhs1))?;
    assert_notebook_grads(&g1, &w, &chunk1, "chunk 1 ", "");
    assert_close("carried h", &mat_of(&h1), &carried, TOL);

    // the carried state becomes a fresh leaf: gradients stop at the chunk boundary
    let carry = h1.detach().requires_grad();
    let xs2_t = t3(&xs2).requires_grad();
    let (hs2_t, _) = tape_time_rnn(&xs2_t, &carry, &w)?;
    assert_close3("chunk 2 hs", &hand_derived::arr3_of(&hs2_t), &hs2, TOL);
    let g2 = hs2_t.backward_with(&t3(&dhs2))?;
    assert!(g2.get(&xs1_t).is_none(), "chunk 2 reached chunk 1's inputs");
    assert_close3("chunk 2 dxs", &grad_arr3(&g2, &xs2_t, "xs2"), &dxs2, TOL);
    assert_notebook_grads(&g2, &w, &layer.grads, "chunk 2 ", "");
    assert_grad(
        "chunk 2 dh",
        &g2,
        &carry,
        "carry",
        layer.dh.as_ref().unwrap(),
    );

    // without the detach the tape runs on into chunk 1 and the gradients differ
    let (hs2_full, _) = tape_time_rnn(&xs2_t, &h1, &w)?;
    let g_full = hs2_full.backward_with(&t3(&dhs2))?;
    assert!(g_full.get(&xs1_t).is_some());
    let leak = grad_mat(&g_full, &w.1, "Wh").max_abs_diff(&layer.grads.dwh);
    assert!(
        leak > 1e-6,
        "untruncated BPTT should differ from the notebook's truncated one"
    );
    Ok(())
}

// ---- the same oracles against the nn layers (PyTorch layout: weight_ih = Wx^T, ...) ----

#[test]
fn nn_rnn_cell_matches_notebook_rnn_backward() -> Result<()> {
    // tolerance: TOL = 1e-10. Notebook b loaded into bias_ih, bias_hh = 0.
    let mut rng = StdRng::seed_from_u64(15);
    let (n, d, h) = (3, 4, 5);
    let p = params(d, h, &mut rng);
    let (x, h_prev) = (
        Mat::rand(n, d, 1.0, &mut rng),
        Mat::rand(n, h, 0.8, &mut rng),
    );
    let dh_next = Mat::rand(n, h, 1.0, &mut rng);
    let mut cell = Rnn::new(p.clone());
    let h_next = cell.forward(&x, &h_prev);
    let (dx, dh_prev) = cell.backward(&dh_next);

    let nn_cell = RnnCell::<f64>::new(CellConfig::new(d, h), &mut rng)?;
    load(
        &nn_cell,
        notebook_torch_entries(&p, &Mat::zeros(1, h), "", &PLAIN),
    );
    let (xt, ht) = (t2(&x).requires_grad(), t2(&h_prev).requires_grad());
    let out = nn_cell.forward(&xt, Some(&ht))?;
    assert_close("nn h_next", &mat_of(&out), &h_next, TOL);
    let g = out.backward_with(&t2(&dh_next))?;
    assert_grad("nn dx", &g, &xt, "x", &dx);
    assert_grad("nn dh_prev", &g, &ht, "h_prev", &dh_prev);
    assert_notebook_layer_grads(&nn_cell, &g, "", &cell.grads, &PLAIN);
    Ok(())
}

#[test]
fn nn_rnn_layer_matches_notebook_time_rnn() -> Result<()> {
    // tolerance: TOL = 1e-10. batch_first (the notebook's xs is [N, T, D]); the notebook's b
    // split at random between bias_ih and bias_hh (only the sum matters).
    let mut rng = StdRng::seed_from_u64(16);
    let (n, t, d, h) = (2, 5, 3, 4);
    let p = params(d, h, &mut rng);
    let xs = Arr3::rand(n, t, d, 1.0, &mut rng);
    let dhs = Arr3::rand(n, t, h, 1.0, &mut rng);
    let h0 = Mat::rand(n, h, 0.5, &mut rng);
    let split = Mat::rand(1, h, 0.5, &mut rng);
    let mut layer = TimeRnn::new(p.clone(), true);
    layer.set_state(h0.clone());
    let hs = layer.forward(&xs);
    let dxs = layer.backward(&dhs);

    let rnn = NnRnn::<f64>::new(RnnConfig::new(d, h).batch_first(true), &mut rng)?;
    load(&rnn, notebook_torch_entries(&p, &split, "_l0", &PLAIN));
    let xs_t = t3(&xs).requires_grad();
    let h0_t = t2(&h0).reshape(&[1, n, h])?.requires_grad();
    let (out, h_n) = rnn.forward(&xs_t, Some(&h0_t))?;
    assert_close3("nn output", &hand_derived::arr3_of(&out), &hs, TOL);
    assert_close(
        "nn h_n",
        &mat_of(&h_n.select(0, 0)?),
        layer.h.as_ref().unwrap(),
        TOL,
    );
    let g = out.backward_with(&t3(&dhs))?;
    assert_close3("nn dxs", &grad_arr3(&g, &xs_t, "xs"), &dxs, TOL);
    assert_notebook_layer_grads(&rnn, &g, "_l0", &layer.grads, &PLAIN);
    let dh0 = mat_of(&g.get(&h0_t).expect("h0 grad").select(0, 0)?);
    assert_close("nn dh0", &dh0, layer.dh.as_ref().unwrap(), TOL);
    Ok(())
}

#[test]
fn nn_two_layer_rnn_matches_two_stacked_notebook_time_rnns() -> Result<()> {
    // tolerance: TOL = 1e-10. Layer 2's TimeRNN reads layer 1's hs; its dxs are layer 1's dhs.
    let mut rng = StdRng::seed_from_u64(17);
    let (n, t, d, h) = (2, 4, 3, 4);
    let (p1, p2) = (params(d, h, &mut rng), params(h, h, &mut rng));
    let xs = Arr3::rand(n, t, d, 1.0, &mut rng);
    let dhs = Arr3::rand(n, t, h, 1.0, &mut rng);
    let (h01, h02) = (
        Mat::rand(n, h, 0.5, &mut rng),
        Mat::rand(n, h, 0.5, &mut rng),
    );
    let (mut l1, mut l2) = (
        TimeRnn::new(p1.clone(), true),
        TimeRnn::new(p2.clone(), true),
    );
    l1.set_state(h01.clone());
    l2.set_state(h02.clone());
    let hs = l2.forward(&l1.forward(&xs));
    let dxs = l1.backward(&l2.backward(&dhs));

    let rnn = NnRnn::<f64>::new(
        RnnConfig::new(d, h).num_layers(2).batch_first(true),
        &mut rng,
    )?;
    let zero = Mat::zeros(1, h);
    let mut sd = notebook_torch_entries(&p1, &zero, "_l0", &PLAIN);
    sd.extend(notebook_torch_entries(&p2, &zero, "_l1", &PLAIN));
    load(&rnn, sd);
    let xs_t = t3(&xs).requires_grad();
    let h0_data = [h01.data.clone(), h02.data.clone()].concat();
    let h0_t = Tensor::from_vec(h0_data, &[2, n, h])?.requires_grad();
    let (out, _) = rnn.forward(&xs_t, Some(&h0_t))?;
    assert_close3("nn 2-layer output", &hand_derived::arr3_of(&out), &hs, TOL);
    let g = out.backward_with(&t3(&dhs))?;
    assert_close3("nn 2-layer dxs", &grad_arr3(&g, &xs_t, "xs"), &dxs, TOL);
    assert_notebook_layer_grads(&rnn, &g, "_l0", &l1.grads, &PLAIN);
    assert_notebook_layer_grads(&rnn, &g, "_l1", &l2.grads, &PLAIN);
    let dh0 = g.get(&h0_t).expect("h0 grad");
    assert_close(
        "nn dh0 layer 0",
        &mat_of(&dh0.select(0, 0)?),
        l1.dh.as_ref().unwrap(),
        TOL,
    );
    assert_close(
        "nn dh0 layer 1",
        &mat_of(&dh0.select(0, 1)?),
        l2.dh.as_ref().unwrap(),
        TOL,
    );
    Ok(())
}
