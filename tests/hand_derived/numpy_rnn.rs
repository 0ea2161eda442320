//! The notebooks' `RNN` and `TimeRNN` (DLFS2 style, numpy convention `x @ Wx + h @ Wh + b`,
//! `Wx` is `[D, H]`), transcribed line by line with their hand-written backward passes.

use super::mat::{Arr3, Mat};

/// `self.params = [Wx, Wh, b]`: `Wx [D, H]`, `Wh [H, H]`, `b [1, H]`.
#[derive(Clone, Debug)]
pub struct RnnParams {
    pub wx: Mat,
    pub wh: Mat,
    pub b: Mat,
}

/// `self.grads = [dWx, dWh, db]`.
#[derive(Clone, Debug)]
pub struct RnnGrads {
    pub dwx: Mat,
    pub dwh: Mat,
    pub db: Mat,
}

impl RnnGrads {
    pub fn zeros_like(p: &RnnParams) -> RnnGrads {
        RnnGrads {
            dwx: Mat::zeros(p.wx.rows, p.wx.cols),
            dwh: Mat::zeros(p.wh.rows, p.wh.cols),
            db: Mat::zeros(1, p.b.cols),
        }
    }

    /// `grads[i] += grad` (TimeRNN's sum over time).
    pub fn add_assign(&mut self, g: &RnnGrads) {
        self.dwx = self.dwx.add(&g.dwx);
        self.dwh = self.dwh.add(&g.dwh);
        self.db = self.db.add(&g.db);
    }
}

/// `RNN`: one time step; `cache = (x, h_prev, h_next)`.
pub struct Rnn {
    pub params: RnnParams,
    pub grads: RnnGrads,
    cache: Option<(Mat, Mat, Mat)>,
}

impl Rnn {
    pub fn new(params: RnnParams) -> Rnn {
        let grads = RnnGrads::zeros_like(&params);
        Rnn {
            params,
            grads,
            cache: None,
        }
    }

    /// `t = h_prev @ Wh + x @ Wx + b; h_next = tanh(t)`.
    pub fn forward(&mut self, x: &Mat, h_prev: &Mat) -> Mat {
        let p = &self.params;
        let t = h_prev.matmul(&p.wh).add(&x.matmul(&p.wx)).add_row(&p.b);
        let h_next = t.map(f64::tanh);
        self.cache = Some((x.clone(), h_prev.clone(), h_next.clone()));
        h_next
    }

    /// Returns `(dx, dh_prev)` and stores `[dWx, dWh, db]` in `self.grads`.
    pub fn backward(&mut self, dh_next: &Mat) -> (Mat, Mat) {
        let p = &self.params;
        let (x, h_prev, h_next) = self.cache.as_ref().expect("RNN.backward before forward");
        let dt = dh_next.mul(&h_next.map(|h| 1.0 - h * h)); // tanh' = 1 - y^2
        let db = dt.sum_rows();
        let dwh = h_prev.t().matmul(&dt);
        let dh_prev = dt.matmul(&p.wh.t());
        let dwx = x.t().matmul(&dt);
        let dx = dt.matmul(&p.wx.t());
        self.grads = RnnGrads { dwx, dwh, db };
        (dx, dh_prev)
    }
}

/// `TimeRNN`: `T` RNN steps sharing the params; `stateful` keeps `h` between `forward` calls.
pub struct TimeRnn {
    pub params: RnnParams,
    pub grads: RnnGrads,
    layers: Vec<Rnn>,
    pub h: Option<Mat>,
    pub dh: Option<Mat>,
    pub stateful: bool,
}

impl TimeRnn {
    pub fn new(params: RnnParams, stateful: bool) -> TimeRnn {
        let grads = RnnGrads::zeros_like(&params);
        TimeRnn {
            params,
            grads,
            layers: Vec::new(),
            h: None,
            dh: None,
            stateful,
        }
    }

    pub fn set_state(&mut self, h: Mat) {
        self.h = Some(h);
    }

    pub fn reset_state(&mut self) {
        self.h = None;
    }

    /// `xs [N, T, D] -> hs [N, T, H]`.
    pub fn forward(&mut self, xs: &Arr3) -> Arr3 {
        let (n, t_len) = (xs.n, xs.t);
        let hdim = self.params.wx.cols;
        self.layers.clear();
        let mut hs = Arr3::zeros(n, t_len, hdim);
        if !self.stateful || self.h.is_none() {
            self.h = Some(Mat::zeros(n, hdim));
        }
        for t in 0..t_len {
            let mut layer = Rnn::new(self.params.clone());
            let h = layer.forward(&xs.step(t), self.h.as_ref().expect("h set above"));
            hs.set_step(t, &h);
            self.h = Some(h);
            self.layers.push(layer);
        }
        hs
    }

    /// `dhs [N, T, H] -> dxs [N, T, D]`; `dh` carried backwards across steps, param grads
    /// summed over time, the gradient of the initial state kept in `self.dh`.
    pub fn backward(&mut self, dhs: &Arr3) -> Arr3 {
        let (n, t_len) = (dhs.n, dhs.t);
        let d = self.params.wx.rows;
        let mut dxs = Arr3::zeros(n, t_len, d);
        let mut dh = Mat::zeros(n, dhs.d); // `dh = 0`
        let mut grads = RnnGrads::zeros_like(&self.params);
        for t in (0..t_len).rev() {
            let layer = &mut self.layers[t];
            let (dx, dh_prev) = layer.backward(&dhs.step(t).add(&dh));
            dxs.set_step(t, &dx);
            dh = dh_prev;
            grads.add_assign(&layer.grads);
        }
        self.grads = grads;
        self.dh = Some(dh);
        dxs
    }
}
