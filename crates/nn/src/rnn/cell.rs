//! Single-step cells: [`RnnCell`], [`LstmCell`], [`GruCell`] (like `torch.nn.RNNCell`,
//! `LSTMCell`, `GRUCell`). They run the same step code as the stacks.

use rand::Rng;
use retrograd_core::{Element, Error, Parameter, Result, Tensor};

use super::config::{CellConfig, CellKind};
use super::params::{CellParams, CellShape};
use super::state::LstmState;
use super::step::{step, Carry, StepInput};
use crate::module::Module;

/// The parameters and config shared by the three cell types.
struct CellCore<E: Element> {
    kind: CellKind,
    config: CellConfig,
    params: CellParams<E>,
}

impl<E: Element> CellCore<E> {
    fn new(kind: CellKind, config: CellConfig, rng: &mut impl Rng) -> Result<Self> {
        config.validate(kind)?;
        let params = CellParams::new(
            &CellShape {
                kind,
                input_size: config.input_size,
                hidden_size: config.hidden_size,
                proj_size: 0,
                bias: config.bias,
            },
            rng,
        )?;
        Ok(CellCore {
            kind,
            config,
            params,
        })
    }

    /// One step: `x` is (N, in) or unbatched (in); `h`/`c` are (N, H) or (H), zeros if absent.
    fn forward(
        &self,
        x: &Tensor<E>,
        h: Option<&Tensor<E>>,
        c: Option<&Tensor<E>>,
    ) -> Result<Carry<E>> {
        let name = self.kind.cell_name();
        let (input_size, hidden) = (self.config.input_size, self.config.hidden_size);
        let batched = match x.rank() {
            2 => true,
            1 => false,
            _ => {
                return Err(Error::shape(
                    name,
                    format!(
                        "expected input (N, {input_size}) or ({input_size}), got shape {:?}",
                        x.shape()
                    ),
                ))
            }
        };
        let x = if batched { x.clone() } else { x.unsqueeze(0)? };
        let (batch, features) = x.dims2()?;
        if features != input_size {
            return Err(Error::shape(
                name,
                format!("input has {features} features, expected input_size {input_size}"),
            ));
        }
        let state_arg = |what: &str, t: Option<&Tensor<E>>| -> Result<Tensor<E>> {
            let Some(t) = t else {
                return Ok(Tensor::zeros(&[batch, hidden]));
            };
            let expected: &[usize] = if batched { &[batch, hidden] } else { &[hidden] };
            if t.shape() != expected {
                return Err(Error::shape(
                    name,
                    format!("{what} has shape {:?}, expected {expected:?}", t.shape()),
                ));
            }
            if batched {
                Ok(t.clone())
            } else {
                t.unsqueeze(0)
            }
        };
        let state = Carry {
            h: state_arg("h", h)?,
            c: (self.kind == CellKind::Lstm)
                .then(|| state_arg("c", c))
                .transpose()?,
        };
        let p = self.params.prepare(self.kind)?;
        let next = step(
            self.kind,
            &p,
            &StepInput::Dense(p.project_input(&x)?),
            &state,
        )?;
        if batched {
            return Ok(next);
        }
        Ok(Carry {
            h: next.h.squeeze(0)?,
            c: next.c.map(|c| c.squeeze(0)).transpose()?,
        })
    }
}

macro_rules! cell_module {
    ($ty:ident) => {
        impl<E: Element> $ty<E> {
            /// The configuration it was built with.
            pub fn config(&self) -> &CellConfig {
                &self.core.config
            }
        }

        impl<E: Element> Module<E> for $ty<E> {
            /// `weight_ih`, `weight_hh`, `bias_ih`, `bias_hh` (PyTorch's names and order).
            fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Parameter<E>)) {
                self.core.params.visit(prefix, "", f);
            }
        }
    };
}

/// An Elman RNN cell: `h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)`, act = tanh or relu.
///
/// Parameters (PyTorch's names and shapes): `weight_ih [H, in]`, `weight_hh [H, H]`,
/// `bias_ih [H]`, `bias_hh [H]`, all U(-1/√H, 1/√H).
///
/// ```
/// use rand::{rngs::StdRng, SeedableRng};
/// use retrograd_core::Tensor;
/// use retrograd_nn::rnn::{CellConfig, Nonlinearity, RnnCell};
/// let mut rng = StdRng::seed_from_u64(0);
/// let cell = RnnCell::<f32>::new(CellConfig::new(3, 4).nonlinearity(Nonlinearity::Relu), &mut rng)?;
/// let x = Tensor::randn(&[2, 3], 0.0, 1.0, &mut rng)?;
/// let h = cell.forward(&x, None)?;
/// let h = cell.forward(&x, Some(&h))?;
/// assert_eq!(h.shape(), &[2, 4]);
/// assert!(h.to_vec().iter().all(|&v| v >= 0.0));
/// # Ok::<(), retrograd_core::Error>(())
/// ```
pub struct RnnCell<E: Element = f32> {
    core: CellCore<E>,
}

impl<E: Element> RnnCell<E> {
    /// A cell with freshly initialized parameters; errors on a zero size.
    pub fn new(config: CellConfig, rng: &mut impl Rng) -> Result<Self> {
        Ok(RnnCell {
            core: CellCore::new(CellKind::Rnn(config.nonlinearity), config, rng)?,
        })
    }

    /// One step: `x` (N, in) or (in), `h` (N, H) or (H) (zeros if `None`); returns h'.
    pub fn forward(&self, x: &Tensor<E>, h: Option<&Tensor<E>>) -> Result<Tensor<E>> {
        Ok(self.core.forward(x, h, None)?.h)
    }
}
cell_module!(RnnCell);

/// An LSTM cell. With gates `[i, f, g, o] = x W_ihᵀ + b_ih + h W_hhᵀ + b_hh` (row blocks in
/// that order): `c' = σ(f)⊙c + σ(i)⊙tanh(g)`, `h' = σ(o)⊙tanh(c')`.
///
/// Parameters: `weight_ih [4H, in]`, `weight_hh [4H, H]`, `bias_ih [4H]`, `bias_hh [4H]`.
///
/// ```
/// use rand::{rngs::StdRng, SeedableRng};
/// use retrograd_core::Tensor;
/// use retrograd_nn::rnn::{CellConfig, LstmCell};
/// let mut rng = StdRng::seed_from_u64(0);
/// let cell = LstmCell::<f32>::new(CellConfig::new(3, 4), &mut rng)?;
/// let x = Tensor::randn(&[2, 3], 0.0, 1.0, &mut rng)?;
/// let s = cell.forward(&x, None)?;
/// let s = cell.forward(&x, Some(&s))?;
/// assert_eq!((s.h.shape(), s.c.shape()), (&[2, 4][..], &[2, 4][..]));
/// # Ok::<(), retrograd_core::Error>(())
/// ```
pub struct LstmCell<E: Element = f32> {
    core: CellCore<E>,
}

impl<E: Element> LstmCell<E> {
    /// A cell with freshly initialized parameters; errors on a zero size or relu.
    pub fn new(config: CellConfig, rng: &mut impl Rng) -> Result<Self> {
        Ok(LstmCell {
            core: CellCore::new(CellKind::Lstm, config, rng)?,
        })
    }

    /// One step: `x` (N, in) or (in), state (N, H) or (H) each (zeros if `None`);
    /// returns (h', c').
    pub fn forward(&self, x: &Tensor<E>, state: Option<&LstmState<E>>) -> Result<LstmState<E>> {
        let next = self
            .core
            .forward(x, state.map(|s| &s.h), state.map(|s| &s.c))?;
        let c = next.c.ok_or_else(|| {
            Error::invalid(
                "lstm_cell",
                "internal: the lstm step returned no cell state",
            )
        })?;
        Ok(LstmState { h: next.h, c })
    }
}
cell_module!(LstmCell);

/// A GRU cell. With `[r, z, n]` row blocks:
/// `r = σ(W_ir x + b_ir + W_hr h + b_hr)`, `z = σ(W_iz x + b_iz + W_hz h + b_hz)`,
/// `n = tanh(W_in x + b_in + r⊙(W_hn h + b_hn))`, `h' = (1-z)⊙n + z⊙h`.
///
/// Parameters: `weight_ih [3H, in]`, `weight_hh [3H, H]`, `bias_ih [3H]`, `bias_hh [3H]`.
///
/// ```
/// use rand::{rngs::StdRng, SeedableRng};
/// use retrograd_core::Tensor;
/// use retrograd_nn::{rnn::{CellConfig, GruCell}, Module};
/// let mut rng = StdRng::seed_from_u64(0);
/// let cell = GruCell::<f32>::new(CellConfig::new(3, 4), &mut rng)?;
/// assert_eq!(cell.num_parameters(), 12 * 3 + 12 * 4 + 2 * 12);
/// let h = cell.forward(&Tensor::ones(&[3]), None)?;
/// assert_eq!(h.shape(), &[4]);
/// # Ok::<(), retrograd_core::Error>(())
/// ```
pub struct GruCell<E: Element = f32> {
    core: CellCore<E>,
}

impl<E: Element> GruCell<E> {
    /// A cell with freshly initialized parameters; errors on a zero size or relu.
    pub fn new(config: CellConfig, rng: &mut impl Rng) -> Result<Self> {
        Ok(GruCell {
            core: CellCore::new(CellKind::Gru, config, rng)?,
        })
    }

    /// One step: `x` (N, in) or (in), `h` (N, H) or (H) (zeros if `None`); returns h'.
    pub fn forward(&self, x: &Tensor<E>, h: Option<&Tensor<E>>) -> Result<Tensor<E>> {
        Ok(self.core.forward(x, h, None)?.h)
    }
}
cell_module!(GruCell);
