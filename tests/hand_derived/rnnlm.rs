//! The notebook's `SimpleRnnlm` (TimeEmbedding -> TimeRNN -> TimeAffine ->
//! TimeSoftmaxWithLoss) and the mini-batch reading of its truncated-BPTT training loop.

use rand::Rng;

use super::mat::Mat;
use super::numpy_rnn::{RnnParams, TimeRnn};
use super::time_layers::{TimeAffine, TimeEmbedding, TimeSoftmaxWithLoss};

/// Names of the six parameters, in `model.params` order.
pub const NAMES: [&str; 6] = [
    "embed W", "rnn Wx", "rnn Wh", "rnn b", "affine W", "affine b",
];

/// `embed_W [V, D]`, the RNN's `(Wx, Wh, b)`, `affine_W [H, V]`, `affine_b [1, V]`.
#[derive(Clone)]
pub struct NumpyRnnlm {
    pub embed: Mat,
    pub rnn: RnnParams,
    pub aw: Mat,
    pub ab: Mat,
}

impl NumpyRnnlm {
    pub fn new(v: usize, d: usize, h: usize, rng: &mut impl Rng) -> NumpyRnnlm {
        NumpyRnnlm {
            embed: Mat::rand(v, d, 0.5, rng),
            rnn: RnnParams {
                wx: Mat::rand(d, h, 0.6, rng),
                wh: Mat::rand(h, h, 0.6, rng),
                b: Mat::rand(1, h, 0.2, rng),
            },
            aw: Mat::rand(h, v, 0.6, rng),
            ab: Mat::rand(1, v, 0.2, rng),
        }
    }

    /// `model.params`.
    pub fn mats(&self) -> [&Mat; 6] {
        [
            &self.embed,
            &self.rnn.wx,
            &self.rnn.wh,
            &self.rnn.b,
            &self.aw,
            &self.ab,
        ]
    }

    /// `SGD(lr).update(model.params, model.grads)`: `param -= lr * grad`.
    pub fn sgd(&self, grads: &[Mat; 6], lr: f64) -> NumpyRnnlm {
        let upd = |w: &Mat, g: &Mat| w.sub(&g.scale(lr));
        NumpyRnnlm {
            embed: upd(&self.embed, &grads[0]),
            rnn: RnnParams {
                wx: upd(&self.rnn.wx, &grads[1]),
                wh: upd(&self.rnn.wh, &grads[2]),
                b: upd(&self.rnn.b, &grads[3]),
            },
            aw: upd(&self.aw, &grads[4]),
            ab: upd(&self.ab, &grads[5]),
        }
    }
}

/// `model.forward(xs, ts); model.backward()` on one `[N, T]` batch with the (possibly stateful)
/// `rnn` layer; returns the loss and the six gradients.
pub fn numpy_step(
    m: &NumpyRnnlm,
    rnn: &mut TimeRnn,
    ids: &[usize],
    ts: &[i64],
    n: usize,
) -> (f64, [Mat; 6]) {
    let t = ids.len() / n;
    let mut emb = TimeEmbedding::new(m.embed.clone());
    let mut aff = TimeAffine::new(m.aw.clone(), m.ab.clone());
    let mut sm = TimeSoftmaxWithLoss::default();
    rnn.params = m.rnn.clone();
    let loss = sm.forward(&aff.forward(&rnn.forward(&emb.forward(ids, n, t))), ts);
    emb.backward(&rnn.backward(&aff.backward(&sm.backward(1.0))));
    let g = rnn.grads.clone();
    (loss, [emb.dw, g.dwx, g.dwh, g.db, aff.dw, aff.db])
}

/// The training loop's mini-batches: `xs = corpus[:-1]`, `ts = corpus[1:]`, sample `i` reads
/// from offset `i * jump` with `jump = (corpus_size - 1) // batch_size`, and `time_idx`
/// advances once per time step across iterations. Returns `iters` batches of row-major
/// `[batch_size, time_size]` `(batch_x, batch_t)`.
pub fn notebook_batches(
    corpus: &[usize],
    batch_size: usize,
    time_size: usize,
    iters: usize,
) -> Vec<(Vec<usize>, Vec<i64>)> {
    let (xs, ts) = (&corpus[..corpus.len() - 1], &corpus[1..]);
    let data_size = xs.len();
    let jump = (corpus.len() - 1) / batch_size;
    let offsets: Vec<usize> = (0..batch_size).map(|i| i * jump).collect();
    let mut time_idx = 0;
    let mut out = Vec::new();
    for _ in 0..iters {
        let mut bx = vec![0usize; batch_size * time_size];
        let mut bt = vec![0i64; batch_size * time_size];
        for t in 0..time_size {
            for (i, off) in offsets.iter().enumerate() {
                bx[i * time_size + t] = xs[(off + time_idx) % data_size];
                bt[i * time_size + t] = ts[(off + time_idx) % data_size] as i64;
            }
            time_idx += 1;
        }
        out.push((bx, bt));
    }
    out
}
