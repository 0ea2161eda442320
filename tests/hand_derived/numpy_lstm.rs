//! The notebook's `LSTM` and `TimeLSTM` (DLFS2): `A = x @ Wx + h_prev @ Wh + b` with the four
//! gate blocks sliced in the order **f, g, i, o** (`f = A[:, :H]`, `g = A[:, H:2H]`,
//! `i = A[:, 2H:3H]`, `o = A[:, 3H:]`), transcribed with its hand-written backward.

use super::mat::{sigmoid, Arr3, Mat};
use super::numpy_rnn::{RnnGrads, RnnParams};

/// Same parameter triple as the RNN, but `Wx [D, 4H]`, `Wh [H, 4H]`, `b [1, 4H]`.
pub type LstmParams = RnnParams;
/// `[dWx, dWh, db]`.
pub type LstmGrads = RnnGrads;

struct LstmCache {
    x: Mat,
    h_prev: Mat,
    c_prev: Mat,
    i: Mat,
    f: Mat,
    g: Mat,
    o: Mat,
    c_next: Mat,
}

/// `LSTM`: one time step.
pub struct Lstm {
    pub params: LstmParams,
    pub grads: LstmGrads,
    cache: Option<LstmCache>,
}

impl Lstm {
    pub fn new(params: LstmParams) -> Lstm {
        let grads = LstmGrads::zeros_like(&params);
        Lstm {
            params,
            grads,
            cache: None,
        }
    }

    /// Returns `(h_next, c_next)`.
    pub fn forward(&mut self, x: &Mat, h_prev: &Mat, c_prev: &Mat) -> (Mat, Mat) {
        let p = &self.params;
        let h = h_prev.cols;
        let a = x.matmul(&p.wx).add(&h_prev.matmul(&p.wh)).add_row(&p.b);
        let f = a.cols_range(0, h).map(sigmoid);
        let g = a.cols_range(h, h).map(f64::tanh);
        let i = a.cols_range(2 * h, h).map(sigmoid);
        let o = a.cols_range(3 * h, h).map(sigmoid);
        let c_next = f.mul(c_prev).add(&g.mul(&i));
        let h_next = o.mul(&c_next.map(f64::tanh));
        self.cache = Some(LstmCache {
            x: x.clone(),
            h_prev: h_prev.clone(),
            c_prev: c_prev.clone(),
            i,
            f,
            g,
            o,
            c_next: c_next.clone(),
        });
        (h_next, c_next)
    }

    /// Returns `(dx, dh_prev, dc_prev)` and stores `[dWx, dWh, db]` in `self.grads`.
    pub fn backward(&mut self, dh_next: &Mat, dc_next: &Mat) -> (Mat, Mat, Mat) {
        let p = &self.params;
        let c = self.cache.as_ref().expect("LSTM.backward before forward");
        let tanh_c_next = c.c_next.map(f64::tanh);

        let ds = dc_next.add(&dh_next.mul(&c.o).mul(&tanh_c_next.map(|t| 1.0 - t * t)));
        let dc_prev = ds.mul(&c.f);

        let di = ds.mul(&c.g);
        let df = ds.mul(&c.c_prev);
        let d_o = dh_next.mul(&tanh_c_next);
        let dg = ds.mul(&c.i);

        let di = di.mul(&c.i.map(|v| v * (1.0 - v))); // sigmoid'
        let df = df.mul(&c.f.map(|v| v * (1.0 - v)));
        let d_o = d_o.mul(&c.o.map(|v| v * (1.0 - v)));
        let dg = dg.mul(&c.g.map(|v| 1.0 - v * v)); // tanh'

        let da = Mat::hstack(&[&df, &dg, &di, &d_o]);

        let dwh = c.h_prev.t().matmul(&da);
        let dwx = c.x.t().matmul(&da);
        let db = da.sum_rows();
        self.grads = LstmGrads { dwx, dwh, db };

        let dx = da.matmul(&p.wx.t());
        let dh_prev = da.matmul(&p.wh.t());
        (dx, dh_prev, dc_prev)
    }
}

/// `TimeLSTM`: `T` LSTM steps; `stateful` keeps `(h, c)` between `forward` calls.
pub struct TimeLstm {
    pub params: LstmParams,
    pub grads: LstmGrads,
    layers: Vec<Lstm>,
    pub h: Option<Mat>,
    pub c: Option<Mat>,
    pub dh: Option<Mat>,
    /// Not kept by the notebook (its `backward` drops the final `dc`); kept here so the
    /// gradient of the initial cell state can be compared too.
    pub dc: Option<Mat>,
    pub stateful: bool,
}

impl TimeLstm {
    pub fn new(params: LstmParams, stateful: bool) -> TimeLstm {
        let grads = LstmGrads::zeros_like(&params);
        TimeLstm {
            params,
            grads,
            layers: Vec::new(),
            h: None,
            c: None,
            dh: None,
            dc: None,
            stateful,
        }
    }

    pub fn set_state(&mut self, h: Mat, c: Option<Mat>) {
        self.h = Some(h);
        self.c = c;
    }

    pub fn reset_state(&mut self) {
        self.h = None;
        self.c = None;
    }

    /// `xs [N, T, D] -> hs [N, T, H]`.
    pub fn forward(&mut self, xs: &Arr3) -> Arr3 {
        let (n, t_len) = (xs.n, xs.t);
        let hdim = self.params.wh.rows;
        self.layers.clear();
        let mut hs = Arr3::zeros(n, t_len, hdim);
        if !self.stateful || self.h.is_none() {
            self.h = Some(Mat::zeros(n, hdim));
        }
        if !self.stateful || self.c.is_none() {
            self.c = Some(Mat::zeros(n, hdim));
        }
        for t in 0..t_len {
            let mut layer = Lstm::new(self.params.clone());
            let (h, c) = layer.forward(
                &xs.step(t),
                self.h.as_ref().expect("h set above"),
                self.c.as_ref().expect("c set above"),
            );
            hs.set_step(t, &h);
            self.h = Some(h);
            self.c = Some(c);
            self.layers.push(layer);
        }
        hs
    }

    /// `dhs [N, T, H] -> dxs [N, T, D]`, `dh, dc = 0, 0` carried backwards.
    pub fn backward(&mut self, dhs: &Arr3) -> Arr3 {
        let (n, t_len) = (dhs.n, dhs.t);
        let d = self.params.wx.rows;
        let mut dxs = Arr3::zeros(n, t_len, d);
        let mut dh = Mat::zeros(n, dhs.d);
        let mut dc = Mat::zeros(n, dhs.d);
        let mut grads = LstmGrads::zeros_like(&self.params);
        for t in (0..t_len).rev() {
            let layer = &mut self.layers[t];
            let (dx, dh_prev, dc_prev) = layer.backward(&dhs.step(t).add(&dh), &dc);
            dxs.set_step(t, &dx);
            dh = dh_prev;
            dc = dc_prev;
            grads.add_assign(&layer.grads);
        }
        self.grads = grads;
        self.dh = Some(dh);
        self.dc = Some(dc);
        dxs
    }
}
