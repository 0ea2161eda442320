//! # retrograd-core
//!
//! A tensor with tape-based reverse-mode automatic differentiation, the engine under retrograd.
//!
//! * [`Tensor`]: a cheap-to-clone handle to shared storage plus a [`Layout`]; `f32` by default,
//!   `f64` for gradient checking.
//! * Ops live in [`ops`], one type per op with its formula, forward and backward side by side.
//! * The tape ([`tape`]) records op applications in creation order; [`Tensor::backward`] replays
//!   the reachable part in reverse, in a loop, and returns a [`GradStore`].
//! * [`Parameter`]s are leaves with stable ids that optimizers update in place.
//! * [`gradcheck()`] compares analytic gradients with finite differences.
//!
//! ```
//! use retrograd_core::Tensor;
//! let w = Tensor::<f32>::from_vec(vec![0.5, -1.0], &[2, 1])?.requires_grad();
//! let x = Tensor::<f32>::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2])?;
//! let loss = x.matmul(&w)?.tanh().sum_all();
//! let grads = loss.backward()?;
//! assert_eq!(grads.get(&w).unwrap().shape(), &[2, 1]);
//! # Ok::<(), retrograd_core::Error>(())
//! ```

#![warn(missing_docs)]

pub mod anomaly;
mod deferred;
mod deferred_rows;
mod display;
pub mod element;
pub mod error;
mod grad_store;
pub mod gradcheck;
mod helper;
mod lanes;
pub mod layout;
pub mod lookup;
pub mod ops;
mod panel;
pub mod param;
mod slices;
pub mod storage;
pub mod tape;
pub mod tensor;
pub mod threads;
mod twin;

pub use anomaly::{detect_anomaly, forward_anomaly, is_anomaly_enabled};
pub use element::{DType, Element};
pub use error::{Error, Result, ResultExt};
pub use gradcheck::{gradcheck, gradcheck_params, GradcheckOptions};
pub use layout::Layout;
pub use lookup::{RowLookup, RowSource};
pub use ops::addmm_act::Activation;
pub use ops::loss::{CrossEntropyOptions, Reduction};
pub use param::Parameter;
pub use tape::{is_grad_enabled, no_grad, GradStore, InputGrads, NoGradGuard, Op};
pub use tensor::{Tensor, TensorId};
pub use threads::{num_threads, set_num_threads};

#[cfg(test)]
mod send_sync {
    fn assert_send_sync<T: Send + Sync>() {}
    #[test]
    fn tensors_params_and_grads_are_send_sync() {
        assert_send_sync::<crate::Tensor<f32>>();
        assert_send_sync::<crate::Parameter<f64>>();
        assert_send_sync::<crate::GradStore<f32>>();
    }
}
