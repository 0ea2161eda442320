//! The elementwise part of a GRU step as one op: from the step's input projection, the hidden
//! projection and the previous hidden state to the new hidden state. The composite it replaces
//! is thirteen nodes a step with `b_hn` (two `narrow`s, `add`, `sigmoid`, three `narrow`s, the
//! `b_hn` `add` with its broadcast, a `narrow` of the input projection, `addcmul`, `tanh`,
//! `lerp`), each an allocation and a tape record for 16 x 128 elements in B4, which runs 512
//! such steps per training step; values and gradients are computed in the composite's order,
//! so they have its bits.

use smallvec::SmallVec;

use super::{constant, out, rows};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::tape::{InputGrads, Op};
use crate::tensor::Tensor;

/// `h'` from the input projection `x = [x_r | x_z | x_n]` and the hidden projection
/// `w = [w_r | w_z | w_n]` of one step (`[N, 3H]` each, PyTorch's gate order, the input biases
/// and `b_hr`, `b_hz` already in them), the previous hidden state `h` (`[N, H]`) and, when given,
/// `b_hn` (`[H]`):
///
/// `r = σ(x_r + w_r)`, `z = σ(x_z + w_z)`, `m = w_n + b_hn`, `n = tanh(x_n + r ⊙ m)`,
/// `h' = n + z ⊙ (h − n)`.
///
/// With `g = ∂L/∂h'`: `dn = g − g ⊙ z`, `dz = g ⊙ (h − n)`, `∂h = g ⊙ z`;
/// `dp = dn ⊙ (1 − n²)` (`= ∂x_n`), `dr = dp ⊙ m`, `dm = dp ⊙ r` (`= ∂w_n`, and `∂b_hn` is its
/// column sums); `∂x_{r,z} = ∂w_{r,z} = d{r,z} ⊙ {r,z} ⊙ (1 − {r,z})`.
///
/// Computed as the composite (`add`, `sigmoid`, `add`, `addcmul`, `tanh`, `lerp`) computes it,
/// so it has the composite's bits, and so do its gradients.
pub struct GruCell<E: Element> {
    /// `r`, `z`, `n` and `m`, each `[N, H]`: tensors, so their buffers go back to the storage
    /// cache with the graph, as every saved tensor's do.
    rznm: [Tensor<E>; 4],
}

/// Checks the shapes: `x` and `w` `[N, 3H]`, `h` `[N, H]`, `b` `[H]`; returns `(N, H)`.
fn dims<E: Element>(
    x: &Tensor<E>,
    w: &Tensor<E>,
    h: &Tensor<E>,
    b: Option<&Tensor<E>>,
) -> Result<(usize, usize)> {
    match (x.shape(), w.shape(), h.shape(), b.map(Tensor::shape)) {
        (&[n, x3], &[nw, w3], &[nh, hs], None | Some(&[_]))
            if n == nw
                && n == nh
                && x3 == 3 * hs
                && w3 == 3 * hs
                && b.is_none_or(|b| b.shape() == [hs]) =>
        {
            Ok((n, hs))
        }
        _ => Err(Error::shape(
            "gru_cell",
            format!(
                "input projection {:?}, hidden projection {:?}, hidden state {:?}, b_hn {:?} \
                 (want [N, 3H], [N, 3H], [N, H], [H])",
                x.shape(),
                w.shape(),
                h.shape(),
                b.map(Tensor::shape)
            ),
        )),
    }
}

impl<E: Element> GruCell<E> {
    /// Applies the op (no broadcasting; see [`GruCell`] for the shapes).
    pub fn forward(
        x: &Tensor<E>,
        w: &Tensor<E>,
        h: &Tensor<E>,
        b: Option<&Tensor<E>>,
    ) -> Result<Tensor<E>> {
        let (n, hs) = dims(x, w, h, b)?;
        let (xd, xs) = rows(x);
        let (wd, ws) = rows(w);
        let (hd, hst) = rows(h);
        let bd = b.map(Tensor::contiguous_data);
        let one = E::one();
        let len = n * hs;
        let [mut r, mut z, mut nn, mut m] = [0; 4].map(|_| crate::storage::overwritable(len));
        let mut y = crate::storage::overwritable(len);
        for row in 0..n {
            let xr = &xd[row * xs..row * xs + 3 * hs];
            let wr = &wd[row * ws..row * ws + 3 * hs];
            let hr = &hd[row * hst..row * hst + hs];
            let span = row * hs..(row + 1) * hs;
            let (rr, zr, nr) = (
                &mut r[span.clone()],
                &mut z[span.clone()],
                &mut nn[span.clone()],
            );
            for ((rv, &xv), &wv) in rr.iter_mut().zip(&xr[..hs]).zip(&wr[..hs]) {
                *rv = (xv + wv).sigmoid_k();
            }
            for ((zv, &xv), &wv) in zr.iter_mut().zip(&xr[hs..2 * hs]).zip(&wr[hs..2 * hs]) {
                *zv = (xv + wv).sigmoid_k();
            }
            let mr = &mut m[span.clone()];
            match &bd {
                Some(bd) => {
                    for ((mv, &wv), &bv) in mr.iter_mut().zip(&wr[2 * hs..]).zip(bd.iter()) {
                        *mv = wv + bv;
                    }
                }
                None => mr.copy_from_slice(&wr[2 * hs..]),
            }
            for (((nv, &xv), &rv), &mv) in nr.iter_mut().zip(&xr[2 * hs..]).zip(&*rr).zip(&*mr) {
                *nv = (xv + one * (rv * mv)).tanh_k();
            }
            for (((yv, &nv), &hv), &zv) in y[span].iter_mut().zip(&*nr).zip(hr).zip(&*zr) {
                *yv = nv + zv * (hv - nv);
            }
        }
        let (d, l) = out(y, &[n, hs]);
        let mut inputs: SmallVec<[&Tensor<E>; 4]> = smallvec::smallvec![x, w, h];
        inputs.extend(b);
        // tensors before the op is made: when nothing records, they are dropped into the cache
        let rznm = [r, z, nn, m].map(|v| constant(v, &[n, hs]));
        Ok(Tensor::from_op(d, l, &inputs, || GruCell { rznm }))
    }
}

impl<E: Element> Op<E> for GruCell<E> {
    fn name(&self) -> &'static str {
        "gru_cell"
    }
    fn backward(&self, x: &[Tensor<E>], grad: &Tensor<E>) -> Result<InputGrads<E>> {
        let (n, hs) = (x[2].shape()[0], x[2].shape()[1]);
        let (hd, hst) = rows(&x[2]);
        let has_b = x.len() > 3;
        let g = grad.contiguous_data();
        let [r_all, z_all, n_all, m_all] = self.rznm.each_ref().map(|t| t.storage());
        let one = E::one();
        let mut dx = crate::storage::overwritable(n * 3 * hs);
        let mut dw = crate::storage::overwritable(n * 3 * hs);
        let mut dh = crate::storage::overwritable(n * hs);
        let mut db = crate::storage::zeros(if has_b { hs } else { 0 });
        for row in 0..n {
            let span = row * hs..(row + 1) * hs;
            let (gr, hr) = (&g[span.clone()], &hd[row * hst..row * hst + hs]);
            let [r, z, nr, m] = [r_all, z_all, n_all, m_all].map(|a| &a[span.clone()]);
            let dxrow = &mut dx[row * 3 * hs..(row + 1) * 3 * hs];
            let (dxr, rest) = dxrow.split_at_mut(hs);
            let (dxz, dp) = rest.split_at_mut(hs);
            // lerp's gradient to n (g − g·z), then tanh's: the gradient of x_n + r·m (= ∂x_n)
            for (((pv, &gv), &zv), &nv) in dp.iter_mut().zip(gr).zip(z).zip(nr) {
                *pv = (gv - gv * zv) * (one - nv * nv);
            }
            // addcmul's gradient to r (v·(dp·m)), then sigmoid's
            for ((dv, (&pv, &mv)), &rv) in dxr.iter_mut().zip(dp.iter().zip(m)).zip(r) {
                *dv = one * (pv * mv) * rv * (one - rv);
            }
            // lerp's gradient to z (g·(h − n)), then sigmoid's
            for ((dv, (&gv, &hv)), (&nv, &zv)) in
                dxz.iter_mut().zip(gr.iter().zip(hr)).zip(nr.iter().zip(z))
            {
                *dv = gv * (hv - nv) * zv * (one - zv);
            }
            let dwr = &mut dw[row * 3 * hs..(row + 1) * 3 * hs];
            dwr[..hs].copy_from_slice(dxr);
            dwr[hs..2 * hs].copy_from_slice(dxz);
            // addcmul's gradient to m = w_n + b_hn (v·(dp·r)), summed over rows for b_hn
            for ((dv, &pv), &rv) in dwr[2 * hs..].iter_mut().zip(dp.iter()).zip(r) {
                *dv = one * (pv * rv);
            }
            for (bv, &dv) in db.iter_mut().zip(&dwr[2 * hs..]) {
                *bv += dv;
            }
            for ((dv, &gv), &zv) in dh[span].iter_mut().zip(gr).zip(z) {
                *dv = gv * zv;
            }
        }
        let mut grads: InputGrads<E> = smallvec::smallvec![
            x[0].tracks_grad().then(|| constant(dx, &[n, 3 * hs])),
            x[1].tracks_grad().then(|| constant(dw, &[n, 3 * hs])),
            x[2].tracks_grad().then(|| constant(dh, &[n, hs])),
        ];
        if has_b {
            grads.push(x[3].tracks_grad().then(|| constant(db, &[hs])));
        }
        Ok(grads)
    }
}

impl<E: Element> Tensor<E> {
    /// The new GRU hidden state `h'` (`[N, H]`) from this step's input projection
    /// (`[N, 3H]`), the hidden projection `w = h Wₕₕᵀ` (`[N, 3H]`, without `b_hn`), the previous
    /// hidden state `h` and PyTorch's `b_hn` (`[H]`) if the layer has biases; see [`GruCell`].
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// // one row, H = 1: x = [0, 0, 0.5], w = [0, 0, 1], h = 2, b_hn = 0.5
    /// let x = Tensor::<f64>::from_vec(vec![0.0, 0.0, 0.5], &[1, 3])?;
    /// let w = Tensor::<f64>::from_vec(vec![0.0, 0.0, 1.0], &[1, 3])?;
    /// let h = Tensor::<f64>::from_vec(vec![2.0], &[1, 1])?;
    /// let b = Tensor::<f64>::from_vec(vec![0.5], &[1])?;
    /// let y = x.gru_cell(&w, &h, Some(&b))?.to_vec();
    /// // r = z = σ(0) = 0.5, n = tanh(0.5 + 0.5 (1 + 0.5)) = tanh(1.25), h' = n + 0.5 (2 − n)
    /// let n = 1.25f64.tanh();
    /// assert!((y[0] - (n + 0.5 * (2.0 - n))).abs() < 1e-15);
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn gru_cell(
        &self,
        w: &Tensor<E>,
        h: &Tensor<E>,
        b_hn: Option<&Tensor<E>>,
    ) -> Result<Tensor<E>> {
        GruCell::forward(self, w, h, b_hn)
    }
}
