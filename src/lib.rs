//! # retrograd
//!
//! A pure-Rust mini-PyTorch for recurrent neural networks. This facade re-exports the three
//! crates: [`core`] (tensor + autodiff), [`nn`] (layers) and [`optim`] (optimizers).

#![warn(missing_docs)]

pub use retrograd_core as core;
pub use retrograd_core::{no_grad, Error, GradStore, Parameter, Result, Tensor};
pub use retrograd_nn as nn;
pub use retrograd_optim as optim;

pub mod checkpoint;
pub mod text;
