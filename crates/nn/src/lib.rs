//! # retrograd-nn
//!
//! Layers built only from differentiable core ops, so backpropagation (through time, for the
//! recurrent layers) is what the tape does.

#![warn(missing_docs)]

pub mod dropout;
pub mod embedding;
pub mod linear;
pub mod loss;
pub mod module;
pub mod rng_state;
pub mod rnn;
pub mod serialize;

pub use dropout::Dropout;
pub use embedding::Embedding;
pub use linear::Linear;
pub use loss::{cross_entropy, CrossEntropyLoss, MseLoss};
pub use module::{join_name, Module, StateDict};
pub use rng_state::{ModuleRng, RngState};
pub use rnn::{
    CellConfig, Gru, GruCell, Lstm, LstmCell, LstmState, Nonlinearity, Rnn, RnnCell, RnnConfig,
};
pub use serialize::{load_into, load_safetensors, load_safetensors_as, save, save_safetensors};
