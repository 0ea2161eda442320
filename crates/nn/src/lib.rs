//! # retrograd-nn
//!
//! Layers built only from differentiable core ops, so backpropagation (through time, for the
//! recurrent layers) is what the tape does.

#![warn(missing_docs)]

pub mod module;

pub use module::{join_name, Module, StateDict};
