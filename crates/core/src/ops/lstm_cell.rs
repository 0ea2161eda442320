//! The elementwise half of an LSTM step as one op: from the activated gates and the previous
//! cell state to the new hidden and cell states. The composite it replaces is eight nodes a
//! step (four gate `narrow`s, `mul`, `addcmul`, `tanh`, `mul`), each an allocation and a tape
//! record for 32 x 256 elements in B1 (`docs/PERFORMANCE.md` has the timings); the values and
//! gradients are computed in the composite's order, so they have its bits.

use smallvec::smallvec;

use super::{constant, out, rows};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::tape::{InputGrads, Op};
use crate::tensor::Tensor;

/// `[h'; c']` from activated gates `[i | f | g | o]` (`[N, 4H]`, PyTorch's gate order) and the
/// previous cell state `c` (`[N, H]`), as one `[2N, H]` tensor (the rows of `h'`, then those of
/// `c'`, so that each half, taken with `narrow(0, ..)`, is a contiguous `[N, H]` view):
///
/// `c' = f ⊙ c + i ⊙ g`, `h' = o ⊙ tanh(c')`.
///
/// With the output gradient's halves `dh`, `dc` and `t = tanh(c')`:
///
/// `dc' = dc + (dh ⊙ o) ⊙ (1 − t²)`; `di = dc' ⊙ g`, `df = dc' ⊙ c`, `dg = dc' ⊙ i`,
/// `do = dh ⊙ t`; `∂L/∂c = dc' ⊙ f`.
///
/// Computed as the composite `f.mul(c).addcmul(i, g, 1)` then `o.mul(tanh(c'))` computes it
/// (products rounded in the same order, `tanh` the elementwise kernels' `tanh_k`), so it has the
/// composite's bits, and so do its gradients.
pub struct LstmCell<E: Element> {
    /// `tanh(c')`, `[N, H]`: a tensor, so its buffer goes back to the storage cache with the
    /// graph, as every saved tensor's does.
    t: Tensor<E>,
}

/// The four gate blocks `[i, f, g, o]` of `h` elements each at the start of `row`.
fn gate_blocks<E>(row: &[E], h: usize) -> [&[E]; 4] {
    std::array::from_fn(|k| &row[k * h..(k + 1) * h])
}

impl<E: Element> LstmCell<E> {
    /// Applies the op (no broadcasting: `gates` must be `[N, 4H]` and `c` `[N, H]`).
    pub fn forward(gates: &Tensor<E>, c: &Tensor<E>) -> Result<Tensor<E>> {
        let (n, h) = match (gates.shape(), c.shape()) {
            (&[n, g4], &[nc, h]) if n == nc && g4 == 4 * h => (n, h),
            _ => {
                return Err(Error::shape(
                    "lstm_cell",
                    format!(
                        "gates {:?} vs cell state {:?} (want [N, 4H] and [N, H])",
                        gates.shape(),
                        c.shape()
                    ),
                ))
            }
        };
        let (gd, gs) = rows(gates);
        let (cd, cs) = rows(c);
        let one = E::one();
        let mut y = crate::storage::overwritable(2 * n * h);
        let mut t = crate::storage::overwritable(n * h);
        let (hys, cys) = y.split_at_mut(n * h);
        for r in 0..n {
            let [i, f, g, o] = gate_blocks(&gd[r * gs..], h);
            let cr = &cd[r * cs..r * cs + h];
            let (hy, cy) = (&mut hys[r * h..(r + 1) * h], &mut cys[r * h..(r + 1) * h]);
            let tr = &mut t[r * h..(r + 1) * h];
            for (((cv, (&fv, &cp)), &iv), &gv) in cy.iter_mut().zip(f.iter().zip(cr)).zip(i).zip(g)
            {
                *cv = fv * cp + one * (iv * gv);
            }
            for (tv, &cv) in tr.iter_mut().zip(cy.iter()) {
                *tv = cv.tanh_k();
            }
            for ((hv, &ov), &tv) in hy.iter_mut().zip(o).zip(tr.iter()) {
                *hv = ov * tv;
            }
        }
        let (d, l) = out(y, &[2 * n, h]);
        // a tensor before the op is made: when nothing records, it is dropped into the cache
        let t = constant(t, &[n, h]);
        Ok(Tensor::from_op(d, l, &[gates, c], || LstmCell { t }))
    }
}

impl<E: Element> Op<E> for LstmCell<E> {
    fn name(&self) -> &'static str {
        "lstm_cell"
    }
    fn backward(&self, x: &[Tensor<E>], grad: &Tensor<E>) -> Result<InputGrads<E>> {
        let (n, h) = (x[1].shape()[0], x[1].shape()[1]);
        let (gd, gs) = rows(&x[0]);
        let (cd, cs) = rows(&x[1]);
        let dy = grad.contiguous_data();
        let t = self.t.storage();
        let one = E::one();
        let mut dgates = crate::storage::overwritable(n * 4 * h);
        let mut dc_prev = crate::storage::overwritable(n * h);
        // dc' of one row, every element written before it is read
        let mut dcn = crate::storage::overwritable(h);
        for r in 0..n {
            let [i, f, g, o] = gate_blocks(&gd[r * gs..], h);
            let cr = &cd[r * cs..r * cs + h];
            let tr = &t[r * h..(r + 1) * h];
            let (dh, dc) = (&dy[r * h..(r + 1) * h], &dy[(n + r) * h..(n + r + 1) * h]);
            let dg_row = &mut dgates[r * 4 * h..(r + 1) * 4 * h];
            let (di, rest) = dg_row.split_at_mut(h);
            let (df, rest) = rest.split_at_mut(h);
            let (dgg, d_o) = rest.split_at_mut(h);
            // the composite: mul's gradient to tanh(c'), tanh's to c', added to what c'
            // received from the next step
            for (((dv, &dcv), (&dhv, &ov)), &tv) in
                dcn.iter_mut().zip(dc).zip(dh.iter().zip(o)).zip(tr)
            {
                *dv = dcv + (dhv * ov) * (one - tv * tv);
            }
            for ((dv, &dhv), &tv) in d_o.iter_mut().zip(dh).zip(tr) {
                *dv = dhv * tv;
            }
            for ((dv, &dcv), &gv) in di.iter_mut().zip(dcn.iter()).zip(g) {
                *dv = one * (dcv * gv);
            }
            for ((dv, &dcv), &iv) in dgg.iter_mut().zip(dcn.iter()).zip(i) {
                *dv = one * (dcv * iv);
            }
            for ((dv, &dcv), &cv) in df.iter_mut().zip(dcn.iter()).zip(cr) {
                *dv = dcv * cv;
            }
            for (d, (&dv, &fv)) in dc_prev[r * h..(r + 1) * h]
                .iter_mut()
                .zip(dcn.iter().zip(f))
            {
                *d = dv * fv;
            }
        }
        crate::storage::give(dcn);
        Ok(smallvec![
            x[0].tracks_grad().then(|| constant(dgates, &[n, 4 * h])),
            x[1].tracks_grad().then(|| constant(dc_prev, &[n, h])),
        ])
    }
}

impl<E: Element> Tensor<E> {
    /// The new LSTM hidden and cell states `[h'; c']` (`[2N, H]`: the rows of `h'`, then those
    /// of `c'`) from these activated gates `[i | f | g | o]` (`[N, 4H]`) and the previous cell
    /// state `c` (`[N, H]`); see [`LstmCell`]. Take the two halves with `narrow(0, 0, N)` and
    /// `narrow(0, N, N)`.
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// // one row, H = 1: i = 0.5, f = 0.25, g = 0.8, o = 1; c = 2
    /// let gates = Tensor::<f64>::from_vec(vec![0.5, 0.25, 0.8, 1.0], &[1, 4])?;
    /// let c = Tensor::<f64>::from_vec(vec![2.0], &[1, 1])?;
    /// let hc = gates.lstm_cell(&c)?.to_vec(); // [h', c']
    /// assert_eq!(hc[1], 0.25 * 2.0 + 0.5 * 0.8); // c' = 0.9
    /// assert!((hc[0] - 0.9f64.tanh()).abs() < 1e-15); // h' = o tanh(c')
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn lstm_cell(&self, c: &Tensor<E>) -> Result<Tensor<E>> {
        LstmCell::forward(self, c)
    }
}
