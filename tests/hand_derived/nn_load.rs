//! Loading notebook weights into `retrograd::nn` modules and reading their gradients back.

use super::mat::Mat;
use super::mat_of;
use retrograd::core::GradStore;
use retrograd::nn::{Module, StateDict};
use retrograd::Tensor;

/// Loads exactly these named tensors (strict: every parameter must be given, no extras).
pub fn load<M: Module<f64>>(m: &M, entries: Vec<(String, Tensor<f64>)>) {
    let sd: StateDict<f64> = entries.into_iter().collect();
    m.load_state_dict(&sd, true)
        .unwrap_or_else(|e| panic!("load_state_dict of notebook weights failed: {e}"));
}

/// The gradient of the module's parameter `name`, as a matrix (rank-1 as a `1 x n` row).
pub fn param_grad<M: Module<f64>>(m: &M, g: &GradStore<f64>, name: &str) -> Mat {
    let (_, p) = m
        .named_parameters()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("module has no parameter '{name}'"));
    mat_of(
        g.get_id(p.id())
            .unwrap_or_else(|| panic!("the tape produced no gradient for parameter '{name}'")),
    )
}

/// `(name, tensor)` for a state-dict entry.
pub fn entry(name: impl Into<String>, t: Tensor<f64>) -> (String, Tensor<f64>) {
    (name.into(), t)
}
