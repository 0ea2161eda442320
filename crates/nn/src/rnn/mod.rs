//! Recurrent layers: the cells [`RnnCell`], [`LstmCell`], [`GruCell`] and the multi-layer,
//! optionally bidirectional stacks [`Rnn`], [`Lstm`], [`Gru`], with PyTorch's parameter names,
//! shapes, gate order and initialization.
//!
//! Everything is built from differentiable core ops: a stack is, per layer and direction, one
//! matmul projecting the inputs of all time steps followed by a loop of cell steps, and
//! backpropagation through time is the tape replaying that loop. Truncated BPTT carries the
//! returned state into the next chunk after `detach()`.
//!
//! ```
//! use rand::{rngs::StdRng, SeedableRng};
//! use retrograd_core::Tensor;
//! use retrograd_nn::{rnn::{Gru, RnnConfig}, Module};
//! let mut rng = StdRng::seed_from_u64(0);
//! let gru = Gru::<f32>::new(RnnConfig::new(3, 4).num_layers(2), &mut rng)?;
//! let x = Tensor::randn(&[6, 2, 3], 0.0, 1.0, &mut rng)?;
//! let (out, h_n) = gru.forward(&x, None)?;
//! let loss = out.sum_all().add(&h_n.sum_all())?;
//! let grads = loss.backward()?;
//! for p in gru.parameters() {
//!     assert_eq!(grads.get_id(p.id()).unwrap().shape(), p.shape());
//! }
//! # Ok::<(), retrograd_core::Error>(())
//! ```

mod cell;
mod config;
mod layers;
mod lengths;
mod params;
mod stack;
mod state;
mod step;

pub use cell::{GruCell, LstmCell, RnnCell};
pub use config::{CellConfig, Nonlinearity, RnnConfig};
pub use layers::{Gru, Lstm, Rnn};
pub use state::LstmState;
