//! Loading notebook weights into `retrograd::nn` modules (including a whole `SimpleRnnlm`)
//! and reading their gradients back.

use rand::Rng;
use retrograd::core::GradStore;
use retrograd::nn::rnn::{Rnn, RnnConfig};
use retrograd::nn::{CrossEntropyLoss, Embedding, Linear, Module, StateDict};
use retrograd::{Parameter, Result, Tensor};

use super::mat::Mat;
use super::numpy_rnn::{RnnGrads, RnnParams};
use super::rnnlm::NumpyRnnlm;
use super::{
    assert_close, mat_of, numpy_to_torch_bias, numpy_to_torch_weight, t1, t2, torch_to_numpy_bias,
    torch_to_numpy_weight, TOL,
};

/// Loads exactly these named tensors (strict: every parameter must be given, no extras).
pub fn load<M: Module<f64> + ?Sized>(m: &M, entries: Vec<(String, Tensor<f64>)>) {
    let sd: StateDict<f64> = entries.into_iter().collect();
    m.load_state_dict(&sd, true)
        .unwrap_or_else(|e| panic!("load_state_dict of notebook weights failed: {e}"));
}

/// The gradient of the module's parameter `name`, as a matrix (rank-1 as a `1 x n` row).
pub fn param_grad<M: Module<f64> + ?Sized>(m: &M, g: &GradStore<f64>, name: &str) -> Mat {
    let (_, p) = m
        .named_parameters()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("module has no parameter '{name}'"));
    mat_of(
        g.get_id(p.id())
            .unwrap_or_else(|| panic!("the tape produced no gradient for parameter '{name}'")),
    )
}

/// `(name, tensor)` for a state-dict entry.
pub fn entry(name: impl Into<String>, t: Tensor<f64>) -> (String, Tensor<f64>) {
    (name.into(), t)
}

/// A notebook RNN or LSTM layer's `(Wx, Wh, b)` as PyTorch entries `weight_ih{suffix}`, ...,
/// gate blocks reordered by `order` ([`super::PLAIN`] or [`super::FGIO_TO_IFGO`]); `b` is
/// split as `bias_ih = b - split`, `bias_hh = split` (only the sum matters).
pub fn notebook_torch_entries(
    p: &RnnParams,
    split: &Mat,
    suffix: &str,
    order: &[usize],
) -> Vec<(String, Tensor<f64>)> {
    vec![
        entry(
            format!("weight_ih{suffix}"),
            t2(&numpy_to_torch_weight(&p.wx, order)),
        ),
        entry(
            format!("weight_hh{suffix}"),
            t2(&numpy_to_torch_weight(&p.wh, order)),
        ),
        entry(
            format!("bias_ih{suffix}"),
            t1(&numpy_to_torch_bias(&p.b.sub(split), order)),
        ),
        entry(
            format!("bias_hh{suffix}"),
            t1(&numpy_to_torch_bias(split, order)),
        ),
    ]
}

/// The module's gradients of layer `suffix`, mapped back to notebook layout and gate order by
/// `back` ([`super::PLAIN`] or [`super::IFGO_TO_FGIO`]), against the notebook's
/// `[dWx, dWh, db]` (both biases receive `db`).
pub fn assert_notebook_layer_grads<M: Module<f64> + ?Sized>(
    m: &M,
    g: &GradStore<f64>,
    suffix: &str,
    want: &RnnGrads,
    back: &[usize],
) {
    let w = |n: &str| param_grad(m, g, &format!("{n}{suffix}"));
    let dwx = torch_to_numpy_weight(&w("weight_ih"), back);
    assert_close("nn dWx", &dwx, &want.dwx, TOL);
    let dwh = torch_to_numpy_weight(&w("weight_hh"), back);
    assert_close("nn dWh", &dwh, &want.dwh, TOL);
    let db_ih = torch_to_numpy_bias(&w("bias_ih"), back);
    assert_close("nn db (bias_ih)", &db_ih, &want.db, TOL);
    let db_hh = torch_to_numpy_bias(&w("bias_hh"), back);
    assert_close("nn db (bias_hh)", &db_hh, &want.db, TOL);
}

/// SimpleRnnlm from nn layers holding the notebook model's weights (PyTorch layout: weights
/// transposed, the notebook's b in bias_ih, bias_hh = 0).
pub struct NnRnnlm {
    pub embedding: Embedding<f64>,
    pub rnn: Rnn<f64>,
    pub linear: Linear<f64>,
}

impl NnRnnlm {
    pub fn from_numpy(m: &NumpyRnnlm, rng: &mut impl Rng) -> Result<NnRnnlm> {
        let (d, h) = (m.rnn.wx.rows, m.rnn.wx.cols);
        let rnn = Rnn::<f64>::new(RnnConfig::new(d, h).batch_first(true), rng)?;
        let sd: StateDict<f64> = [
            ("weight_ih_l0", t2(&m.rnn.wx.t())),
            ("weight_hh_l0", t2(&m.rnn.wh.t())),
            ("bias_ih_l0", t1(&m.rnn.b)),
            ("bias_hh_l0", Tensor::zeros(&[h])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        rnn.load_state_dict(&sd, true)?;
        Ok(NnRnnlm {
            embedding: Embedding::from_weights(t2(&m.embed))?,
            rnn,
            linear: Linear::from_weights(t2(&m.aw.t()), Some(t1(&m.ab)))?,
        })
    }

    pub fn named_parameters(&self) -> Vec<(String, Parameter<f64>)> {
        let mut ps = Vec::new();
        let mut push = |n: &str, p: &Parameter<f64>| ps.push((n.to_string(), p.clone()));
        self.embedding.visit_params("embedding", &mut push);
        self.rnn.visit_params("rnn", &mut push);
        self.linear.visit_params("linear", &mut push);
        ps
    }

    /// Mean cross-entropy (ignore -1) of a `[n, T]` batch from state `h0` `[1, n, H]`;
    /// returns `(loss, h_n)`.
    pub fn loss(
        &self,
        ids: &[usize],
        ts: &[i64],
        n: usize,
        h0: Option<&Tensor<f64>>,
    ) -> Result<(Tensor<f64>, Tensor<f64>)> {
        let xs = self.embedding.forward(ids, &[n, ids.len() / n])?;
        let (hs, h_n) = self.rnn.forward(&xs, h0)?;
        let scores = self.linear.forward(&hs)?;
        let loss = CrossEntropyLoss::new()
            .with_ignore_index(-1)
            .forward(&scores, ts)?;
        Ok((loss, h_n))
    }

    /// `f(name)` for the six notebook parameters in notebook layout (`bias_hh` left out: it
    /// gets the same gradient as `bias_ih`, checked separately).
    pub fn notebook_view(&self, f: impl Fn(&dyn Module<f64>, &str) -> Mat) -> [Mat; 6] {
        [
            f(&self.embedding, "weight"),
            f(&self.rnn, "weight_ih_l0").t(),
            f(&self.rnn, "weight_hh_l0").t(),
            f(&self.rnn, "bias_ih_l0"),
            f(&self.linear, "weight").t(),
            f(&self.linear, "bias"),
        ]
    }
}

/// A module parameter's current value as a matrix.
pub fn param_value(m: &dyn Module<f64>, name: &str) -> Mat {
    let (_, p) = m
        .named_parameters()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no parameter {name}"));
    mat_of(&p.value_detached())
}
