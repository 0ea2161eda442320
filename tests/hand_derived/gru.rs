//! A GRU cell and its time loop with a backward pass derived by hand (none of the notebooks
//! writes one), in PyTorch's convention and layout:
//!
//! ```text
//! gi = x @ W_ih^T + b_ih            (blocks r, z, n; W_ih is [3H, D])
//! gh = h @ W_hh^T + b_hh            (blocks r, z, n; W_hh is [3H, H])
//! r  = sigmoid(gi_r + gh_r)
//! z  = sigmoid(gi_z + gh_z)
//! n  = tanh(gi_n + r * gh_n)        (gh_n = W_hn h + b_hn, inside the reset gate)
//! h' = (1 - z) * n + z * h
//! ```
//!
//! Backward, given `dh'`:
//!
//! ```text
//! dn = dh' * (1 - z)      dz = dh' * (h - n)      dh (direct) = dh' * z
//! da_n  = dn * (1 - n^2)                 (pre-activation of n; this is dgi_n)
//! dr    = da_n * gh_n      dgh_n = da_n * r
//! da_z  = dz * z (1 - z)   da_r = dr * r (1 - r)
//! dgi = [da_r, da_z, da_n]               dgh = [da_r, da_z, dgh_n]
//! dW_ih = dgi^T @ x   db_ih = sum_rows(dgi)   dx = dgi @ W_ih
//! dW_hh = dgh^T @ h   db_hh = sum_rows(dgh)   dh = dgh @ W_hh + dh (direct)
//! ```

use super::mat::{sigmoid, Arr3, Mat};

/// `weight_ih [3H, D]`, `weight_hh [3H, H]`, `bias_ih [1, 3H]`, `bias_hh [1, 3H]`.
#[derive(Clone, Debug)]
pub struct GruParams {
    pub w_ih: Mat,
    pub w_hh: Mat,
    pub b_ih: Mat,
    pub b_hh: Mat,
}

/// Gradients of the four parameters (same shapes).
#[derive(Clone, Debug)]
pub struct GruGrads {
    pub dw_ih: Mat,
    pub dw_hh: Mat,
    pub db_ih: Mat,
    pub db_hh: Mat,
}

impl GruGrads {
    pub fn zeros_like(p: &GruParams) -> GruGrads {
        GruGrads {
            dw_ih: Mat::zeros(p.w_ih.rows, p.w_ih.cols),
            dw_hh: Mat::zeros(p.w_hh.rows, p.w_hh.cols),
            db_ih: Mat::zeros(1, p.b_ih.cols),
            db_hh: Mat::zeros(1, p.b_hh.cols),
        }
    }

    pub fn add_assign(&mut self, g: &GruGrads) {
        self.dw_ih = self.dw_ih.add(&g.dw_ih);
        self.dw_hh = self.dw_hh.add(&g.dw_hh);
        self.db_ih = self.db_ih.add(&g.db_ih);
        self.db_hh = self.db_hh.add(&g.db_hh);
    }
}

/// What the backward pass needs from the forward pass of one step.
pub struct GruCache {
    x: Mat,
    h_prev: Mat,
    r: Mat,
    z: Mat,
    n: Mat,
    gh_n: Mat,
}

/// One GRU step: returns `h'` and the cache.
pub fn gru_forward(p: &GruParams, x: &Mat, h_prev: &Mat) -> (Mat, GruCache) {
    let h = h_prev.cols;
    let gi = x.matmul(&p.w_ih.t()).add_row(&p.b_ih);
    let gh = h_prev.matmul(&p.w_hh.t()).add_row(&p.b_hh);
    let r = gi.cols_range(0, h).add(&gh.cols_range(0, h)).map(sigmoid);
    let z = gi.cols_range(h, h).add(&gh.cols_range(h, h)).map(sigmoid);
    let gh_n = gh.cols_range(2 * h, h);
    let n = gi.cols_range(2 * h, h).add(&r.mul(&gh_n)).map(f64::tanh);
    let one_minus_z = z.map(|v| 1.0 - v);
    let h_next = one_minus_z.mul(&n).add(&z.mul(h_prev));
    let cache = GruCache {
        x: x.clone(),
        h_prev: h_prev.clone(),
        r,
        z,
        n,
        gh_n,
    };
    (h_next, cache)
}

/// One GRU step backward: returns `(dx, dh_prev, grads)`.
pub fn gru_backward(p: &GruParams, c: &GruCache, dh_next: &Mat) -> (Mat, Mat, GruGrads) {
    let dn = dh_next.mul(&c.z.map(|v| 1.0 - v));
    let dz = dh_next.mul(&c.h_prev.sub(&c.n));
    let dh_direct = dh_next.mul(&c.z);
    let da_n = dn.mul(&c.n.map(|v| 1.0 - v * v));
    let dr = da_n.mul(&c.gh_n);
    let dgh_n = da_n.mul(&c.r);
    let da_z = dz.mul(&c.z.map(|v| v * (1.0 - v)));
    let da_r = dr.mul(&c.r.map(|v| v * (1.0 - v)));
    let dgi = Mat::hstack(&[&da_r, &da_z, &da_n]);
    let dgh = Mat::hstack(&[&da_r, &da_z, &dgh_n]);
    let grads = GruGrads {
        dw_ih: dgi.t().matmul(&c.x),
        dw_hh: dgh.t().matmul(&c.h_prev),
        db_ih: dgi.sum_rows(),
        db_hh: dgh.sum_rows(),
    };
    let dx = dgi.matmul(&p.w_ih);
    let dh_prev = dgh.matmul(&p.w_hh).add(&dh_direct);
    (dx, dh_prev, grads)
}

/// The time loop, in the notebooks' `TimeRNN` style: `xs [N, T, D]`, initial state `h0`.
pub struct TimeGru {
    pub params: GruParams,
    pub grads: GruGrads,
    caches: Vec<GruCache>,
    pub dh0: Option<Mat>,
}

impl TimeGru {
    pub fn new(params: GruParams) -> TimeGru {
        let grads = GruGrads::zeros_like(&params);
        TimeGru {
            params,
            grads,
            caches: Vec::new(),
            dh0: None,
        }
    }

    /// Returns `hs [N, T, H]`.
    pub fn forward(&mut self, xs: &Arr3, h0: &Mat) -> Arr3 {
        let mut hs = Arr3::zeros(xs.n, xs.t, h0.cols);
        self.caches.clear();
        let mut h = h0.clone();
        for t in 0..xs.t {
            let (h_next, cache) = gru_forward(&self.params, &xs.step(t), &h);
            hs.set_step(t, &h_next);
            self.caches.push(cache);
            h = h_next;
        }
        hs
    }

    /// Returns `dxs [N, T, D]`; param grads summed over time, `dh0` kept.
    pub fn backward(&mut self, dhs: &Arr3) -> Arr3 {
        let mut dxs = Arr3::zeros(dhs.n, dhs.t, self.params.w_ih.cols);
        let mut dh = Mat::zeros(dhs.n, dhs.d);
        let mut grads = GruGrads::zeros_like(&self.params);
        for t in (0..dhs.t).rev() {
            let (dx, dh_prev, g) =
                gru_backward(&self.params, &self.caches[t], &dhs.step(t).add(&dh));
            dxs.set_step(t, &dx);
            grads.add_assign(&g);
            dh = dh_prev;
        }
        self.grads = grads;
        self.dh0 = Some(dh);
        dxs
    }
}
