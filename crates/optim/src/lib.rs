//! # retrograd-optim
//!
//! Optimizers, gradient clipping and learning-rate schedules for retrograd, following PyTorch's
//! formulas, defaults and operation order.
//!
//! * Optimizers ([`Sgd`], [`Adam`], [`AdamW`], [`RmsProp`], [`Adagrad`]) take a model's named
//!   parameters (`Module::named_parameters()`, or any `(String, Parameter)` pairs) and update
//!   them in place from the [`GradStore`](retrograd_core::GradStore) that `backward()` returns.
//!   They share the [`Optimizer`] trait; their state (step counts, moment buffers,
//!   hyperparameters) is an [`OptimState`] for checkpointing and bit-exact resumption.
//! * [`clip_grad_norm`] / [`clip_grad_value`] rewrite gradients in the store.
//! * Schedules: [`StepLr`], [`ExponentialLr`], [`CosineAnnealingLr`], [`LinearLr`] (warmup)
//!   implement [`LrScheduler`]; [`ReduceLrOnPlateau`] is driven by a validation metric.
//!
//! Arithmetic runs in the parameters' element type `E` (scalars such as bias corrections in
//! `f64`, as in PyTorch's Python code), so `f64` runs match PyTorch to rounding and every run
//! is deterministic.
//!
//! ```
//! use retrograd_core::{Parameter, Tensor};
//! use retrograd_optim::{clip_grad_norm, Adam, AdamConfig, NormType, Optimizer};
//! let w = Parameter::new(Tensor::<f32>::from_vec(vec![0.5, -0.5], &[2])?);
//! let mut opt = Adam::new([("w".to_string(), w.clone())], AdamConfig::default().lr(0.1))?;
//! for _ in 0..50 {
//!     // minimise sum(w^2)
//!     let v = w.value();
//!     let mut grads = v.mul(&v)?.sum_all().backward()?;
//!     clip_grad_norm(&mut grads, [&w], 5.0, NormType::L2, true)?;
//!     opt.step(&grads)?;
//! }
//! assert!(w.to_vec().iter().all(|x| x.abs() < 0.1));
//! # Ok::<(), retrograd_core::Error>(())
//! ```

#![warn(missing_docs)]

pub mod adagrad;
pub mod adam;
pub mod adamw;
pub mod clip;
pub mod optimizer;
pub mod plateau;
pub mod rmsprop;
pub mod schedule;
pub mod sgd;
mod split;
pub mod state;

pub use adagrad::{Adagrad, AdagradConfig};
pub use adam::{Adam, AdamConfig};
pub use adamw::{AdamW, AdamWConfig};
pub use clip::{clip_grad_norm, clip_grad_value, NormType};
pub use optimizer::Optimizer;
pub use plateau::{PlateauConfig, PlateauMode, ReduceLrOnPlateau, ThresholdMode};
pub use rmsprop::{RmsProp, RmsPropConfig};
pub use schedule::{CosineAnnealingLr, ExponentialLr, LinearLr, LrScheduler, SchedState, StepLr};
pub use sgd::{Sgd, SgdConfig};
pub use state::OptimState;
