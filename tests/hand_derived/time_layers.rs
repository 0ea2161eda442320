//! The notebook's `TimeEmbedding`, `TimeAffine` and `TimeSoftmaxWithLoss` (DLFS2), with their
//! hand-written backward passes.

use super::mat::{Arr3, Mat};

/// DLFS2 `Embedding` (one time step): `out = W[idx]`; backward `np.add.at(dW, idx, dout)`.
fn embedding_backward(w_shape: [usize; 2], idx: &[usize], dout: &Mat) -> Mat {
    let mut dw = Mat::zeros(w_shape[0], w_shape[1]); // dW[...] = 0
    for (row, &id) in idx.iter().enumerate() {
        // np.add.at: repeated ids accumulate (plain `dW[idx] = dout` would overwrite).
        for j in 0..dout.cols {
            *dw.at_mut(id, j) += dout.at(row, j);
        }
    }
    dw
}

/// `TimeEmbedding(W)`, `W [V, D]`; ids are `xs [N, T]` (row-major `n*T + t`).
pub struct TimeEmbedding {
    pub w: Mat,
    pub dw: Mat,
    xs: Vec<usize>,
    n: usize,
    t: usize,
}

impl TimeEmbedding {
    pub fn new(w: Mat) -> TimeEmbedding {
        let dw = Mat::zeros(w.rows, w.cols);
        TimeEmbedding {
            w,
            dw,
            xs: Vec::new(),
            n: 0,
            t: 0,
        }
    }

    fn ids_at(&self, t: usize) -> Vec<usize> {
        (0..self.n).map(|i| self.xs[i * self.t + t]).collect()
    }

    /// `out[:, t, :] = W[xs[:, t]]` for every `t`.
    pub fn forward(&mut self, xs: &[usize], n: usize, t_len: usize) -> Arr3 {
        assert_eq!(xs.len(), n * t_len, "TimeEmbedding ids");
        self.xs = xs.to_vec();
        self.n = n;
        self.t = t_len;
        let mut out = Arr3::zeros(n, t_len, self.w.cols);
        for t in 0..t_len {
            let idx = self.ids_at(t);
            let step = Mat::from_fn(n, self.w.cols, |i, j| self.w.at(idx[i], j));
            out.set_step(t, &step);
        }
        out
    }

    /// `grad = sum_t Embedding_t.backward(dout[:, t, :])`.
    pub fn backward(&mut self, dout: &Arr3) {
        let mut grad = Mat::zeros(self.w.rows, self.w.cols);
        for t in 0..self.t {
            let g = embedding_backward(self.w.shape(), &self.ids_at(t), &dout.step(t));
            grad = grad.add(&g);
        }
        self.dw = grad;
    }
}

/// `TimeAffine(W, b)`: `out = x.reshape(N*T, D) @ W + b`, `W [D, V]`, `b [1, V]`.
pub struct TimeAffine {
    pub w: Mat,
    pub b: Mat,
    pub dw: Mat,
    pub db: Mat,
    x: Option<Arr3>,
}

impl TimeAffine {
    pub fn new(w: Mat, b: Mat) -> TimeAffine {
        let (dw, db) = (Mat::zeros(w.rows, w.cols), Mat::zeros(1, b.cols));
        TimeAffine {
            w,
            b,
            dw,
            db,
            x: None,
        }
    }

    pub fn forward(&mut self, x: &Arr3) -> Arr3 {
        let out = x.to_rows().matmul(&self.w).add_row(&self.b);
        self.x = Some(x.clone());
        Arr3::from_rows(x.n, x.t, &out)
    }

    pub fn backward(&mut self, dout: &Arr3) -> Arr3 {
        let x = self.x.as_ref().expect("TimeAffine.backward before forward");
        let dout = dout.to_rows();
        let rx = x.to_rows();
        self.db = dout.sum_rows();
        self.dw = rx.t().matmul(&dout);
        let dx = dout.matmul(&self.w.t());
        Arr3::from_rows(x.n, x.t, &dx)
    }
}

/// DLFS2 `softmax` for a 2-d input: subtract the row max, exponentiate, normalise.
pub fn softmax_rows(x: &Mat) -> Mat {
    let mut out = Mat::zeros(x.rows, x.cols);
    for i in 0..x.rows {
        let m = x.row(i).iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = x.row(i).iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        for (j, v) in e.iter().enumerate() {
            *out.at_mut(i, j) = v / s;
        }
    }
    out
}

/// numpy's integer indexing of a length-`v` axis: `-1` means the last column.
fn np_index(t: i64, v: usize) -> usize {
    if t < 0 {
        (v as i64 + t) as usize
    } else {
        t as usize
    }
}

/// `self.cache = (ts, ys, mask, (N, T, V))`.
type SoftmaxCache = (Vec<i64>, Mat, Vec<f64>, [usize; 3]);

/// `TimeSoftmaxWithLoss` with `ignore_label = -1`.
pub struct TimeSoftmaxWithLoss {
    pub ignore_label: i64,
    cache: Option<SoftmaxCache>,
}

impl Default for TimeSoftmaxWithLoss {
    fn default() -> Self {
        TimeSoftmaxWithLoss {
            ignore_label: -1,
            cache: None,
        }
    }
}

impl TimeSoftmaxWithLoss {
    /// `xs [N, T, V]` scores, `ts [N*T]` labels (row-major `n*T + t`).
    pub fn forward(&mut self, xs: &Arr3, ts: &[i64]) -> f64 {
        let (n, t, v) = (xs.n, xs.t, xs.d);
        assert_eq!(ts.len(), n * t, "TimeSoftmaxWithLoss labels");
        let mask: Vec<f64> = ts
            .iter()
            .map(|&l| if l != self.ignore_label { 1.0 } else { 0.0 })
            .collect();
        let ys = softmax_rows(&xs.to_rows());
        // ls = log(ys[arange(N*T), ts]); ls *= mask (an ignored -1 reads the last column,
        // exactly as numpy does, then the mask zeroes it).
        let ls: Vec<f64> = (0..n * t)
            .map(|r| ys.at(r, np_index(ts[r], v)).ln() * mask[r])
            .collect();
        let mut loss = -ls.iter().sum::<f64>();
        loss /= mask.iter().sum::<f64>();
        self.cache = Some((ts.to_vec(), ys, mask, [n, t, v]));
        loss
    }

    pub fn backward(&mut self, dout: f64) -> Arr3 {
        let (ts, ys, mask, [n, t, v]) = self.cache.as_ref().expect("backward before forward");
        let mut dx = ys.clone();
        for (r, &l) in ts.iter().enumerate() {
            *dx.at_mut(r, np_index(l, *v)) -= 1.0;
        }
        let count: f64 = mask.iter().sum();
        let dx = dx.map(|g| g * dout / count);
        let dx = Mat::from_fn(dx.rows, dx.cols, |r, j| dx.at(r, j) * mask[r]);
        Arr3::from_rows(*n, *t, &dx)
    }
}
