//! One time step of each recurrence, written with differentiable core ops only (so the tape
//! provides backpropagation through time). Shared by the cells and the stack driver.

use retrograd_core::{Activation, Element, Error, Result, Tensor};

use super::config::{CellKind, Nonlinearity};
use super::params::Prepared;

/// The recurrent state of one layer-direction: `h [N, H_out]`, and `c [N, H]` for an LSTM.
#[derive(Clone)]
pub(crate) struct Carry<E: Element> {
    pub(crate) h: Tensor<E>,
    pub(crate) c: Option<Tensor<E>>,
}

/// The input half of one step's pre-activations ([N, G·H], biases already added as
/// [`Prepared`] arranges them).
pub(crate) enum StepInput<'a, E: Element> {
    /// The step's projected rows.
    Dense(Tensor<E>),
    /// Rows `ids` of a projected embedding table, added inside the recurrent product
    /// (`index_addmm_acts`) where the step has one, instead of picked into a copy first.
    Picked {
        table: &'a Tensor<E>,
        ids: &'a [usize],
    },
}

impl<E: Element> StepInput<'_, E> {
    /// `acts(self + h @ w)` by column block.
    fn addmm_acts(&self, h: &Tensor<E>, w: &Tensor<E>, acts: &[Activation]) -> Result<Tensor<E>> {
        match self {
            StepInput::Dense(gx) => gx.addmm_acts(h, w, acts),
            StepInput::Picked { table, ids } => table.index_addmm_acts(ids, h, w, acts),
        }
    }

    /// The rows themselves.
    fn rows(&self) -> Result<Tensor<E>> {
        match self {
            StepInput::Dense(gx) => Ok(gx.clone()),
            StepInput::Picked { table, ids } => table.index_select(0, ids),
        }
    }
}

/// Computes the next state from `gx` = the input projection of this step and the previous
/// state.
///
/// * RNN: `h' = act(gx + h Whhᵀ)` (one `addmm_act`, or `index_addmm_acts` from a table)
/// * LSTM: `i,f,g,o = σ,σ,tanh,σ(gx + h Whhᵀ)` by column block (one `addmm_acts` or
///   `index_addmm_acts`, narrowed into the four gates); `c' = f⊙c + i⊙g` (one
///   `mul_add_mul`); `h' = o⊙tanh(c')` (one `mul_act`), then `h' Whrᵀ` with a projection.
/// * GRU: `[0, 0, b_hn] + h Whhᵀ` (one `addmm`, its bias row added after the product), then
///   `r,z = σ(gx_{r,z} + (h Whhᵀ)_{r,z})` (one `add_act`; `b_hr`, `b_hz` are in `gx`),
///   `n = tanh(gx_n + r⊙((h Whhᵀ)_n + b_hn))` (one `addcmul_act`), `h' = (1-z)⊙n + z⊙h`,
///   computed as `n + z⊙(h - n)` (one `lerp`).
///
/// Every op here is a general-purpose core op with its own gradient; no op knows it is part of a
/// recurrent cell, so the cell's backward is whatever the tape derives from these.
pub(crate) fn step<E: Element>(
    kind: CellKind,
    p: &Prepared<E>,
    gx: &StepInput<'_, E>,
    state: &Carry<E>,
) -> Result<Carry<E>> {
    let h = &state.h;
    match kind {
        CellKind::Rnn(act) => {
            let act = match act {
                Nonlinearity::Tanh => Activation::Tanh,
                Nonlinearity::Relu => Activation::Relu,
            };
            let h = gx.addmm_acts(h, &p.w_hh_t, &[act])?;
            Ok(Carry { h, c: None })
        }
        CellKind::Lstm => {
            let c = state.c.as_ref().ok_or_else(|| {
                Error::invalid("lstm", "internal: an lstm step needs a cell state")
            })?;
            use Activation::{Sigmoid, Tanh};
            let gates = gx.addmm_acts(h, &p.w_hh_t, &[Sigmoid, Sigmoid, Tanh, Sigmoid])?;
            let hs = c.shape()[1];
            let i = gates.narrow(1, 0, hs)?;
            let f = gates.narrow(1, hs, hs)?;
            let g = gates.narrow(1, 2 * hs, hs)?;
            let o = gates.narrow(1, 3 * hs, hs)?;
            let c = f.mul_add_mul(c, &i, &g)?;
            let h = o.mul_act(&c, Tanh)?;
            let h = match &p.w_hr_t {
                Some(w) => h.matmul(w)?,
                None => h,
            };
            Ok(Carry { h, c: Some(c) })
        }
        CellKind::Gru => {
            let gx = gx.rows()?;
            let hw = match &p.b_h {
                Some(b) => b.addmm(h, &p.w_hh_t)?,
                None => h.matmul(&p.w_hh_t)?,
            };
            let hs = h.shape()[1];
            let rz = gx
                .narrow(1, 0, 2 * hs)?
                .add_act(&hw.narrow(1, 0, 2 * hs)?, Activation::Sigmoid)?;
            let r = rz.narrow(1, 0, hs)?;
            let z = rz.narrow(1, hs, hs)?;
            let hw_n = hw.narrow(1, 2 * hs, hs)?;
            let n = gx
                .narrow(1, 2 * hs, hs)?
                .addcmul_act(&r, &hw_n, 1.0, Activation::Tanh)?;
            let h = n.lerp(h, &z)?;
            Ok(Carry { h, c: None })
        }
    }
}
