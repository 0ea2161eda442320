//! The public recurrent stacks [`Rnn`], [`Lstm`] and [`Gru`] (like `torch.nn.RNN`, `LSTM`,
//! `GRU`): thin typed fronts over the shared driver.

use std::sync::Mutex;

use rand::Rng;
use retrograd_core::{Element, Error, Parameter, Result, Tensor};

use super::config::{CellKind, RnnConfig};
use super::stack::Stack;
use super::state::LstmState;
use crate::module::{join_name, Module};
use crate::rng_state::ModuleRng;

/// Shared body of the `forward` / `forward_with_lengths` of the single-state stacks ([`Rnn`],
/// [`Gru`]): the driver from `h0`, returning `(output, h_n)`.
fn run_hidden<E: Element>(
    stack: &Stack<E>,
    x: &Tensor<E>,
    lengths: Option<&[usize]>,
    h0: Option<&Tensor<E>>,
) -> Result<(Tensor<E>, Tensor<E>)> {
    let out = stack.forward(x, lengths, h0, None)?;
    Ok((out.output, out.h_n))
}

macro_rules! stack_module {
    ($ty:ident) => {
        impl<E: Element> $ty<E> {
            /// The configuration it was built with.
            pub fn config(&self) -> &RnnConfig {
                &self.stack.config
            }

            /// True in training mode (inter-layer dropout active); the default, as in PyTorch.
            pub fn is_training(&self) -> bool {
                self.stack.training
            }
        }

        impl<E: Element> Module<E> for $ty<E> {
            /// Per layer `k`: `weight_ih_l{k}`, `weight_hh_l{k}`, `bias_ih_l{k}`, `bias_hh_l{k}`
            /// (and `weight_hr_l{k}`), then the same with `_reverse`: PyTorch's order.
            fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Parameter<E>)) {
                self.stack.visit(prefix, f);
            }

            /// The inter-layer dropout stream, as `rng`.
            fn visit_rngs(&self, prefix: &str, f: &mut dyn FnMut(&str, &Mutex<ModuleRng>)) {
                f(&join_name(prefix, "rng"), &self.stack.rng);
            }

            fn set_training(&mut self, training: bool) {
                self.stack.training = training;
            }
        }
    };
}

/// A multi-layer Elman RNN with tanh or relu (`torch.nn.RNN`).
///
/// Input (L, N, H_in), or (N, L, H_in) with `batch_first`, or unbatched (L, H_in). Returns
/// `(output, h_n)`: output (L, N, D·H) (batch-first if configured), h_n (layers·D, N, H) with
/// row `layer·D + dir` whatever `batch_first` is. Parameters per layer as in PyTorch:
/// `weight_ih_l{k} [H, in]`, `weight_hh_l{k} [H, H]`, `bias_ih_l{k}`, `bias_hh_l{k} [H]`, plus
/// `_reverse` copies when bidirectional.
///
/// ```
/// use rand::{rngs::StdRng, SeedableRng};
/// use retrograd_core::Tensor;
/// use retrograd_nn::rnn::{Nonlinearity, Rnn, RnnConfig};
/// let mut rng = StdRng::seed_from_u64(0);
/// let cfg = RnnConfig::new(3, 4).num_layers(2).nonlinearity(Nonlinearity::Relu).batch_first(true);
/// let rnn = Rnn::<f32>::new(cfg, &mut rng)?;
/// let x = Tensor::randn(&[2, 5, 3], 0.0, 1.0, &mut rng)?; // (N, L, H_in)
/// let (out, h_n) = rnn.forward(&x, None)?;
/// assert_eq!((out.shape(), h_n.shape()), (&[2, 5, 4][..], &[2, 2, 4][..]));
/// # Ok::<(), retrograd_core::Error>(())
/// ```
pub struct Rnn<E: Element = f32> {
    stack: Stack<E>,
}

impl<E: Element> Rnn<E> {
    /// Builds the stack with PyTorch's initialization, drawing from `rng` (which also seeds the
    /// module's dropout RNG). Errors name the bad value (zero size, dropout outside [0, 1),
    /// a `proj_size`).
    pub fn new(config: RnnConfig, rng: &mut impl Rng) -> Result<Self> {
        let stack = Stack::new(CellKind::Rnn(config.nonlinearity), config, rng)?;
        Ok(Rnn { stack })
    }

    /// Runs every time step; `h0` (layers·D, N, H) defaults to zeros. Returns `(output, h_n)`.
    pub fn forward(&self, x: &Tensor<E>, h0: Option<&Tensor<E>>) -> Result<(Tensor<E>, Tensor<E>)> {
        run_hidden(&self.stack, x, None, h0)
    }

    /// Like [`Rnn::forward`] for a padded batch whose sequence `n` has `lengths[n]` valid steps
    /// (any order, each in `1..=L`): what PyTorch computes on a packed sequence. Padded steps
    /// never reach the state, h_n is taken at each sequence's last valid step, the reverse
    /// direction starts at each sequence's end, and padded output positions are 0.
    pub fn forward_with_lengths(
        &self,
        x: &Tensor<E>,
        lengths: &[usize],
        h0: Option<&Tensor<E>>,
    ) -> Result<(Tensor<E>, Tensor<E>)> {
        run_hidden(&self.stack, x, Some(lengths), h0)
    }
}
stack_module!(Rnn);

/// A multi-layer LSTM (`torch.nn.LSTM`), optionally with a projection (`proj_size`).
///
/// Shapes as for [`Rnn`], with H_out = `proj_size` if set, else H: output (L, N, D·H_out),
/// state h (layers·D, N, H_out) and c (layers·D, N, H). Gate rows are i, f, g, o. Parameters
/// per layer: `weight_ih_l{k} [4H, in]`, `weight_hh_l{k} [4H, H_out]`, `bias_ih_l{k}` and
/// `bias_hh_l{k} [4H]`, and with a projection `weight_hr_l{k} [P, H]`.
///
/// ```
/// use rand::{rngs::StdRng, SeedableRng};
/// use retrograd_core::Tensor;
/// use retrograd_nn::rnn::{Lstm, RnnConfig};
/// let mut rng = StdRng::seed_from_u64(0);
/// let cfg = RnnConfig::new(3, 4).num_layers(2).bidirectional(true).proj_size(2);
/// let lstm = Lstm::<f32>::new(cfg, &mut rng)?;
/// let x = Tensor::randn(&[5, 3, 3], 0.0, 1.0, &mut rng)?; // (L, N, H_in)
/// let (out, state) = lstm.forward_with_lengths(&x, &[5, 2, 4], None)?;
/// assert_eq!(out.shape(), &[5, 3, 4]);
/// assert_eq!((state.h.shape(), state.c.shape()), (&[4, 3, 2][..], &[4, 3, 4][..]));
/// # Ok::<(), retrograd_core::Error>(())
/// ```
pub struct Lstm<E: Element = f32> {
    stack: Stack<E>,
}

impl<E: Element> Lstm<E> {
    /// Builds the stack (see [`Rnn::new`]); `proj_size` must be below `hidden_size`.
    pub fn new(config: RnnConfig, rng: &mut impl Rng) -> Result<Self> {
        let stack = Stack::new(CellKind::Lstm, config, rng)?;
        Ok(Lstm { stack })
    }

    /// Runs every time step from `state` (zeros if `None`). Returns `(output, (h_n, c_n))`.
    pub fn forward(
        &self,
        x: &Tensor<E>,
        state: Option<&LstmState<E>>,
    ) -> Result<(Tensor<E>, LstmState<E>)> {
        self.run(x, None, state)
    }

    /// Variable-length batch, as in [`Rnn::forward_with_lengths`].
    pub fn forward_with_lengths(
        &self,
        x: &Tensor<E>,
        lengths: &[usize],
        state: Option<&LstmState<E>>,
    ) -> Result<(Tensor<E>, LstmState<E>)> {
        self.run(x, Some(lengths), state)
    }

    /// Shared body of both forwards: the driver from `state`, its output split into
    /// `(output, (h_n, c_n))`.
    fn run(
        &self,
        x: &Tensor<E>,
        lengths: Option<&[usize]>,
        state: Option<&LstmState<E>>,
    ) -> Result<(Tensor<E>, LstmState<E>)> {
        let (h0, c0) = (state.map(|s| &s.h), state.map(|s| &s.c));
        let out = self.stack.forward(x, lengths, h0, c0)?;
        let c = out
            .c_n
            .ok_or_else(|| Error::invalid("lstm", "internal: the driver returned no c_n"))?;
        Ok((out.output, LstmState { h: out.h_n, c }))
    }
}
stack_module!(Lstm);

/// A multi-layer GRU (`torch.nn.GRU`); gate rows r, z, n with
/// `n = tanh(W_in x + b_in + r⊙(W_hn h + b_hn))`.
///
/// Shapes and names as for [`Rnn`], with `weight_ih_l{k} [3H, in]`, `weight_hh_l{k} [3H, H]`,
/// biases `[3H]`.
///
/// ```
/// use rand::{rngs::StdRng, SeedableRng};
/// use retrograd_core::Tensor;
/// use retrograd_nn::rnn::{Gru, RnnConfig};
/// let mut rng = StdRng::seed_from_u64(0);
/// let gru = Gru::<f32>::new(RnnConfig::new(3, 4).bidirectional(true), &mut rng)?;
/// let x = Tensor::randn(&[5, 3], 0.0, 1.0, &mut rng)?; // unbatched (L, H_in)
/// let (out, h_n) = gru.forward(&x, None)?;
/// assert_eq!((out.shape(), h_n.shape()), (&[5, 8][..], &[2, 4][..]));
/// # Ok::<(), retrograd_core::Error>(())
/// ```
pub struct Gru<E: Element = f32> {
    stack: Stack<E>,
}

impl<E: Element> Gru<E> {
    /// Builds the stack (see [`Rnn::new`]).
    pub fn new(config: RnnConfig, rng: &mut impl Rng) -> Result<Self> {
        let stack = Stack::new(CellKind::Gru, config, rng)?;
        Ok(Gru { stack })
    }

    /// Runs every time step; `h0` (layers·D, N, H) defaults to zeros. Returns `(output, h_n)`.
    pub fn forward(&self, x: &Tensor<E>, h0: Option<&Tensor<E>>) -> Result<(Tensor<E>, Tensor<E>)> {
        run_hidden(&self.stack, x, None, h0)
    }

    /// Variable-length batch, as in [`Rnn::forward_with_lengths`].
    pub fn forward_with_lengths(
        &self,
        x: &Tensor<E>,
        lengths: &[usize],
        h0: Option<&Tensor<E>>,
    ) -> Result<(Tensor<E>, Tensor<E>)> {
        run_hidden(&self.stack, x, Some(lengths), h0)
    }
}
stack_module!(Gru);
