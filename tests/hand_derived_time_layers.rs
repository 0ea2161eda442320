//! The notebook's `TimeEmbedding` (np.add.at), `TimeAffine` and `TimeSoftmaxWithLoss`
//! (ignore_label -1, mask, division by the number of valid labels) backward passes, the whole
//! `SimpleRnnlm`, and its truncated-BPTT training loop, used as oracles for the tape.
//!
//! Comparisons are in `f64` with tolerance `TOL = 1e-10` (absolute, every entry).

mod hand_derived;

use hand_derived::mat::{Arr3, Mat};
use hand_derived::nn_load::{param_grad, param_value, NnRnnlm};
use hand_derived::numpy_rnn::TimeRnn;
use hand_derived::rnnlm::{notebook_batches, numpy_step, NumpyRnnlm, NAMES};
use hand_derived::time_layers::{TimeAffine, TimeEmbedding, TimeSoftmaxWithLoss};
use hand_derived::{
    arr3_of, assert_close, assert_close3, grad_arr3, grad_mat, mat_of, t1, t2, t3, TOL,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use retrograd::core::{CrossEntropyOptions, Reduction};
use retrograd::nn::{CrossEntropyLoss, Embedding, Linear};
use retrograd::optim::{Optimizer, Sgd, SgdConfig};
use retrograd::{Parameter, Result, Tensor};

/// The notebook's `ignore_label`, passed to the tape's cross-entropy as `ignore_index`.
const IGNORE: CrossEntropyOptions = CrossEntropyOptions {
    ignore_index: -1,
    reduction: Reduction::Mean,
};

#[test]
fn time_embedding_backward_matches_np_add_at() -> Result<()> {
    // tolerance: TOL = 1e-10. Ids repeat within a step and across steps, so np.add.at's
    // accumulation (not overwrite) is what is being compared.
    let mut rng = StdRng::seed_from_u64(41);
    let (v, d, n, t) = (6, 3, 3, 4);
    let w = Mat::rand(v, d, 1.0, &mut rng);
    let ids: Vec<usize> = vec![2, 2, 5, 0, 1, 2, 5, 5, 0, 0, 2, 3];
    let dout = Arr3::rand(n, t, d, 1.0, &mut rng);
    let mut emb = TimeEmbedding::new(w.clone());
    let out = emb.forward(&ids, n, t);
    emb.backward(&dout);

    let wt = t2(&w).requires_grad();
    let out_t = wt.index_select(0, &ids)?.reshape(&[n, t, d])?;
    assert_close3("embedding out", &arr3_of(&out_t), &out, TOL);
    let g = out_t.backward_with(&t3(&dout))?;
    let dw = grad_mat(&g, &wt, "W");
    assert_close("TimeEmbedding dW", &dw, &emb.dw, TOL);
    assert!(dw.row(4).iter().all(|&x| x == 0.0), "id 4 is never used");
    Ok(())
}

#[test]
fn time_affine_backward_matches_notebook() -> Result<()> {
    // tolerance: TOL = 1e-10
    let mut rng = StdRng::seed_from_u64(42);
    let (n, t, d, v) = (2, 3, 4, 5);
    let (w, b) = (
        Mat::rand(d, v, 1.0, &mut rng),
        Mat::rand(1, v, 1.0, &mut rng),
    );
    let x = Arr3::rand(n, t, d, 1.0, &mut rng);
    let dout = Arr3::rand(n, t, v, 1.0, &mut rng);
    let mut aff = TimeAffine::new(w.clone(), b.clone());
    let out = aff.forward(&x);
    let dx = aff.backward(&dout);

    let (xt, wt, bt) = (
        t3(&x).requires_grad(),
        t2(&w).requires_grad(),
        t1(&b).requires_grad(),
    );
    let out_t = xt
        .reshape(&[n * t, d])?
        .matmul(&wt)?
        .add(&bt)?
        .reshape(&[n, t, v])?;
    assert_close3("affine out", &arr3_of(&out_t), &out, TOL);
    let g = out_t.backward_with(&t3(&dout))?;
    assert_close3("TimeAffine dx", &grad_arr3(&g, &xt, "x"), &dx, TOL);
    assert_close("TimeAffine dW", &grad_mat(&g, &wt, "W"), &aff.dw, TOL);
    assert_close("TimeAffine db", &grad_mat(&g, &bt, "b"), &aff.db, TOL);
    Ok(())
}

#[test]
fn time_softmax_with_loss_ignore_label_matches_notebook() -> Result<()> {
    // tolerance: TOL = 1e-10. 3 of 8 labels are -1: the mean is over the 5 valid ones and the
    // ignored rows get zero gradient.
    let mut rng = StdRng::seed_from_u64(43);
    let (n, t, v) = (2, 4, 5);
    let xs = Arr3::rand(n, t, v, 2.0, &mut rng);
    let ts: Vec<i64> = vec![3, -1, 0, 4, -1, 1, -1, 2];
    let mut layer = TimeSoftmaxWithLoss::default();
    let loss = layer.forward(&xs, &ts);
    let dout = 1.7; // an upstream gradient other than 1 checks the `dx *= dout`
    let dxs = layer.backward(dout);

    let xt = t3(&xs).requires_grad();
    let loss_t = xt.reshape(&[n * t, v])?.cross_entropy_with(&ts, IGNORE)?;
    assert!(
        (loss_t.item()? - loss).abs() <= TOL,
        "loss {} vs {loss}",
        loss_t.item()?
    );
    let g = loss_t.backward_with(&Tensor::scalar(dout))?;
    let dx_t = grad_arr3(&g, &xt, "xs");
    assert_close3("TimeSoftmaxWithLoss dx", &dx_t, &dxs, TOL);
    for r in [1, 4, 6] {
        assert!(
            dx_t.to_rows().row(r).iter().all(|&x| x == 0.0),
            "ignored row {r}"
        );
    }
    Ok(())
}

#[test]
fn all_labels_ignored_notebook_gives_nan_gradient_where_tape_gives_zero() -> Result<()> {
    // A known, intended disagreement: with every label ignored, mask.sum() is 0. Both give a
    // NaN loss (0/0); the notebook's backward divides by 0 as well (NaN gradient), while the
    // tape, like PyTorch, leaves ignored rows with gradient exactly 0.
    let mut rng = StdRng::seed_from_u64(44);
    let xs = Arr3::rand(1, 3, 4, 1.0, &mut rng);
    let ts = vec![-1i64; 3];
    let mut layer = TimeSoftmaxWithLoss::default();
    assert!(layer.forward(&xs, &ts).is_nan());
    assert!(layer.backward(1.0).data.iter().all(|x| x.is_nan()));

    let xt = t3(&xs).requires_grad();
    let loss = xt.reshape(&[3, 4])?.cross_entropy_with(&ts, IGNORE)?;
    assert!(loss.item()?.is_nan());
    let g = loss.backward()?;
    assert!(grad_arr3(&g, &xt, "xs").data.iter().all(|&x| x == 0.0));
    Ok(())
}

/// `SimpleRnnlm`'s six parameters on the tape: embed W, rnn Wx/Wh/b, affine W/b.
struct TapeRnnlm {
    params: [Parameter<f64>; 6],
}

impl TapeRnnlm {
    fn from_numpy(m: &NumpyRnnlm) -> TapeRnnlm {
        let p = |x: &Mat, bias: bool| Parameter::new(if bias { t1(x) } else { t2(x) });
        TapeRnnlm {
            params: [
                p(&m.embed, false),
                p(&m.rnn.wx, false),
                p(&m.rnn.wh, false),
                p(&m.rnn.b, true),
                p(&m.aw, false),
                p(&m.ab, true),
            ],
        }
    }

    /// Embedding -> tanh RNN from `h0` -> affine -> mean cross-entropy (ignore -1).
    /// Returns `(loss, h_T)`.
    fn loss(
        &self,
        ids: &[usize],
        ts: &[i64],
        n: usize,
        h0: &Tensor<f64>,
    ) -> Result<(Tensor<f64>, Tensor<f64>)> {
        let [emb, wx, wh, b, aw, ab] = self.params.clone().map(|p| p.value());
        let t_len = ids.len() / n;
        let xs = emb
            .index_select(0, ids)?
            .reshape(&[n, t_len, emb.dim(1)?])?;
        let mut h = h0.clone();
        let mut hs = Vec::new();
        for t in 0..t_len {
            h = h
                .matmul(&wh)?
                .add(&xs.select(1, t)?.matmul(&wx)?)?
                .add(&b)?
                .tanh();
            hs.push(h.clone());
        }
        let hs = Tensor::stack(&hs.iter().collect::<Vec<_>>(), 1)?;
        let scores = hs.reshape(&[n * t_len, h.dim(1)?])?.matmul(&aw)?.add(&ab)?;
        Ok((scores.cross_entropy_with(ts, IGNORE)?, h))
    }
}

#[test]
fn simple_rnnlm_gradients_match_notebook() -> Result<()> {
    // tolerance: TOL = 1e-10. Full model (SimpleRnnlm), two labels ignored.
    let mut rng = StdRng::seed_from_u64(45);
    let (v, d, h, n, t) = (7, 4, 5, 2, 5);
    let m = NumpyRnnlm::new(v, d, h, &mut rng);
    let ids: Vec<usize> = (0..n * t).map(|_| rng.random_range(0..v)).collect();
    let mut ts: Vec<i64> = (0..n * t).map(|_| rng.random_range(0..v as i64)).collect();
    ts[3] = -1;
    ts[7] = -1;
    let mut rnn = TimeRnn::new(m.rnn.clone(), true);
    let (loss, grads) = numpy_step(&m, &mut rnn, &ids, &ts, n);

    let tape = TapeRnnlm::from_numpy(&m);
    let (loss_t, _) = tape.loss(&ids, &ts, n, &Tensor::zeros(&[n, h]))?;
    assert!((loss_t.item()? - loss).abs() <= TOL);
    let g = loss_t.backward()?;
    for ((p, want), name) in tape.params.iter().zip(&grads).zip(NAMES) {
        let got = mat_of(g.get_id(p.id()).expect("every parameter gets a gradient"));
        assert_close(name, &got, want, TOL);
    }
    Ok(())
}

#[test]
fn truncated_bptt_training_loop_matches_notebook() -> Result<()> {
    // tolerance: TOL = 1e-10 on losses, gradients and updated weights. The notebook's loop:
    // batches read at offsets i * jump, time_idx advancing per time step, a stateful TimeRNN
    // carrying h between chunks (the tape detaches it), SGD(lr=0.1) after every chunk.
    let mut rng = StdRng::seed_from_u64(46);
    let (v, d, h) = (6, 4, 5);
    let (batch_size, time_size, lr) = (2, 4, 0.1);
    let corpus: Vec<usize> = (0..21).map(|_| rng.random_range(0..v)).collect();

    let mut m = NumpyRnnlm::new(v, d, h, &mut rng);
    let mut rnn = TimeRnn::new(m.rnn.clone(), true);
    let tape = TapeRnnlm::from_numpy(&m);
    let mut carry = Tensor::<f64>::zeros(&[batch_size, h]);
    for (chunk, (bx, bt)) in notebook_batches(&corpus, batch_size, time_size, 2)
        .iter()
        .enumerate()
    {
        let (loss, grads) = numpy_step(&m, &mut rnn, bx, bt, batch_size);
        m = m.sgd(&grads, lr);

        let (loss_t, h_last) = tape.loss(bx, bt, batch_size, &carry)?;
        assert!((loss_t.item()? - loss).abs() <= TOL, "chunk {chunk} loss");
        let g = loss_t.backward()?;
        for ((p, want), name) in tape.params.iter().zip(&grads).zip(NAMES) {
            let got = mat_of(g.get_id(p.id()).expect("gradient"));
            assert_close(&format!("chunk {chunk} d{name}"), &got, want, TOL);
            let gv = got.data;
            p.update(|w| w.iter_mut().zip(&gv).for_each(|(w, g)| *w -= lr * g))?;
        }
        carry = h_last.detach(); // TimeRNN(stateful=True): h carried, gradient cut
        let want_h = rnn.h.as_ref().unwrap();
        assert_close("carried h", &mat_of(&carry), want_h, TOL);
        for ((p, want), name) in tape.params.iter().zip(m.mats()).zip(NAMES) {
            let got = mat_of(&p.value_detached());
            assert_close(&format!("chunk {chunk} updated {name}"), &got, want, TOL);
        }
    }
    Ok(())
}

// ---- the same oracles against the nn layers (Linear stores W^T, like PyTorch) ----

#[test]
fn nn_embedding_linear_and_loss_match_notebook_time_layers() -> Result<()> {
    // tolerance: TOL = 1e-10. TimeEmbedding -> TimeAffine -> TimeSoftmaxWithLoss(-1) against
    // Embedding -> Linear -> CrossEntropyLoss(ignore_index -1) on (N, T, V) logits.
    let mut rng = StdRng::seed_from_u64(47);
    let (v, d, n, t) = (6, 4, 2, 4);
    let (ew, aw, ab) = (
        Mat::rand(v, d, 1.0, &mut rng),
        Mat::rand(d, v, 1.0, &mut rng),
        Mat::rand(1, v, 0.5, &mut rng),
    );
    let ids: Vec<usize> = vec![1, 3, 1, 0, 5, 1, 3, 3];
    let ts: Vec<i64> = vec![2, -1, 0, 5, 1, 1, -1, 4];
    let mut emb = TimeEmbedding::new(ew.clone());
    let mut aff = TimeAffine::new(aw.clone(), ab.clone());
    let mut sm = TimeSoftmaxWithLoss::default();
    let loss = sm.forward(&aff.forward(&emb.forward(&ids, n, t)), &ts);
    emb.backward(&aff.backward(&sm.backward(1.0)));

    let embedding = Embedding::<f64>::from_weights(t2(&ew))?;
    let linear = Linear::<f64>::from_weights(t2(&aw.t()), Some(t1(&ab)))?;
    let ce = CrossEntropyLoss::new().with_ignore_index(-1);
    let loss_t = ce.forward(&linear.forward(&embedding.forward(&ids, &[n, t])?)?, &ts)?;
    assert!((loss_t.item()? - loss).abs() <= TOL);
    let g = loss_t.backward()?;
    assert_close(
        "nn Embedding dW",
        &param_grad(&embedding, &g, "weight"),
        &emb.dw,
        TOL,
    );
    let dw = param_grad(&linear, &g, "weight").t();
    assert_close("nn Linear dW (transposed)", &dw, &aff.dw, TOL);
    assert_close(
        "nn Linear db",
        &param_grad(&linear, &g, "bias"),
        &aff.db,
        TOL,
    );
    Ok(())
}

#[test]
fn nn_simple_rnnlm_gradients_match_notebook() -> Result<()> {
    // tolerance: TOL = 1e-10. SimpleRnnlm from nn layers: Embedding -> Rnn (batch_first) ->
    // Linear -> CrossEntropyLoss(ignore -1), weights loaded from the notebook model.
    let mut rng = StdRng::seed_from_u64(48);
    let (v, d, h, n, t) = (7, 4, 5, 2, 5);
    let m = NumpyRnnlm::new(v, d, h, &mut rng);
    let ids: Vec<usize> = (0..n * t).map(|_| rng.random_range(0..v)).collect();
    let mut ts: Vec<i64> = (0..n * t).map(|_| rng.random_range(0..v as i64)).collect();
    ts[2] = -1;
    let mut rnn = TimeRnn::new(m.rnn.clone(), false);
    let (loss, grads) = numpy_step(&m, &mut rnn, &ids, &ts, n);

    let model = NnRnnlm::from_numpy(&m, &mut rng)?;
    let (loss_t, _) = model.loss(&ids, &ts, n, None)?;
    assert!((loss_t.item()? - loss).abs() <= TOL);
    let g = loss_t.backward()?;
    let got = model.notebook_view(|m, name| param_grad(m, &g, name));
    for ((got, want), name) in got.iter().zip(&grads).zip(NAMES) {
        assert_close(&format!("nn {name}"), got, want, TOL);
    }
    let db_hh = param_grad(&model.rnn, &g, "bias_hh_l0");
    assert_close("nn rnn b (bias_hh)", &db_hh, &grads[3], TOL);
    Ok(())
}

#[test]
fn nn_truncated_bptt_training_loop_with_sgd_matches_notebook() -> Result<()> {
    // tolerance: TOL = 1e-10 on losses, gradients and updated weights. The notebook's training
    // loop (3 chunks, stateful TimeRNN, SGD lr 0.1) against nn layers + optim::Sgd, carrying
    // h_n.detach() between chunks. The notebook's single b means bias_ih and bias_hh each
    // take an SGD step with db, so after the first update their sum moves twice as far: the
    // comparison therefore sums them, as the notebook's b.
    let mut rng = StdRng::seed_from_u64(49);
    let (v, d, h) = (6, 4, 5);
    let (batch_size, time_size, lr) = (2, 4, 0.1);
    let corpus: Vec<usize> = (0..25).map(|_| rng.random_range(0..v)).collect();
    let mut m = NumpyRnnlm::new(v, d, h, &mut rng);
    let mut rnn = TimeRnn::new(m.rnn.clone(), true);
    let model = NnRnnlm::from_numpy(&m, &mut rng)?;
    let mut opt = Sgd::new(model.named_parameters(), SgdConfig::new(lr))?;
    let mut carry: Option<Tensor<f64>> = None;
    for (chunk, (bx, bt)) in notebook_batches(&corpus, batch_size, time_size, 3)
        .iter()
        .enumerate()
    {
        let (loss, grads) = numpy_step(&m, &mut rnn, bx, bt, batch_size);
        let (loss_t, h_n) = model.loss(bx, bt, batch_size, carry.as_ref())?;
        assert!((loss_t.item()? - loss).abs() <= TOL, "chunk {chunk} loss");
        let g = loss_t.backward()?;
        let got = model.notebook_view(|m, name| param_grad(m, &g, name));
        for ((got, want), name) in got.iter().zip(&grads).zip(NAMES) {
            assert_close(&format!("chunk {chunk} nn d{name}"), got, want, TOL);
        }
        opt.step(&g)?;
        carry = Some(h_n.detach());
        let want_h = rnn.h.as_ref().unwrap();
        let got_h = mat_of(&carry.as_ref().unwrap().select(0, 0)?);
        assert_close(&format!("chunk {chunk} carried h"), &got_h, want_h, TOL);

        // the notebook model after SGD, with b doubled-stepped as explained above
        m = m.sgd(&grads, lr);
        let mut want = m.clone();
        want.rnn.b = want.rnn.b.sub(&grads[3].scale(lr));
        let mut got = model.notebook_view(param_value);
        got[3] = got[3].add(&param_value(&model.rnn, "bias_hh_l0"));
        for ((got, want), name) in got.iter().zip(want.mats()).zip(NAMES) {
            assert_close(&format!("chunk {chunk} nn updated {name}"), got, want, TOL);
        }
        // keep the notebook's b equal to bias_ih + bias_hh for the next chunk
        m.rnn.b = want.rnn.b.clone();
    }
    Ok(())
}
