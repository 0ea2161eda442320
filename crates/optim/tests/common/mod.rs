//! Shared helpers for the optim tests: reading the PyTorch reference fixtures and comparing.

#![allow(dead_code)]

use std::collections::BTreeMap;

use retrograd_core::{GradStore, Parameter, Tensor};
use safetensors::{Dtype, SafeTensors};

/// Where the committed PyTorch fixtures live.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/ref");

/// One fixture file: its config strings and its (float64) tensors.
pub struct Fixture {
    pub name: String,
    pub meta: BTreeMap<String, String>,
    pub tensors: BTreeMap<String, Tensor<f64>>,
}

impl Fixture {
    /// Reads `ref/<name>.safetensors`, panicking with the file name on any problem.
    pub fn load(name: &str) -> Fixture {
        let path = format!("{FIXTURES}/{name}.safetensors");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{name}: reading {path}: {e}"));
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .unwrap_or_else(|e| panic!("{name}: bad safetensors header: {e}"));
        let meta: BTreeMap<String, String> = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let st = SafeTensors::deserialize(&bytes)
            .unwrap_or_else(|e| panic!("{name}: bad safetensors file: {e}"));
        let mut tensors = BTreeMap::new();
        for (key, view) in st.tensors() {
            assert_eq!(view.dtype(), Dtype::F64, "{name}: tensor {key} is not F64");
            let data: Vec<f64> = view
                .data()
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            let t = Tensor::from_vec(data, view.shape())
                .unwrap_or_else(|e| panic!("{name}: tensor {key}: {e}"));
            tensors.insert(key, t);
        }
        Fixture {
            name: name.to_string(),
            meta,
            tensors,
        }
    }

    /// A tensor that must be present.
    pub fn t(&self, key: &str) -> &Tensor<f64> {
        self.tensors
            .get(key)
            .unwrap_or_else(|| panic!("{}: no tensor '{key}'", self.name))
    }

    /// A metadata string that must be present.
    pub fn m(&self, key: &str) -> &str {
        self.meta
            .get(key)
            .unwrap_or_else(|| panic!("{}: no metadata '{key}'", self.name))
    }

    /// The `hparams` metadata parsed as JSON.
    pub fn hparams(&self) -> serde_json::Value {
        serde_json::from_str(self.m("hparams"))
            .unwrap_or_else(|e| panic!("{}: hparams is not JSON: {e}", self.name))
    }
}

/// Reads a number from the hparams JSON (ints and floats both).
pub fn num(hp: &serde_json::Value, key: &str) -> f64 {
    hp[key]
        .as_f64()
        .unwrap_or_else(|| panic!("hparams.{key} is not a number: {}", hp[key]))
}

/// Reads a bool from the hparams JSON.
pub fn flag(hp: &serde_json::Value, key: &str) -> bool {
    hp[key]
        .as_bool()
        .unwrap_or_else(|| panic!("hparams.{key} is not a bool: {}", hp[key]))
}

/// The tolerance of every fixture comparison: relative 1e-12 (computing in f64).
pub const REL_TOL: f64 = 1e-12;

/// Asserts `got` equals `want` elementwise to relative `REL_TOL` (an absolute 1e-15 floor for
/// entries at zero), naming `what` and the element on failure. Returns the worst relative error.
pub fn assert_close(what: &str, got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = 0.0f64;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        assert!(
            err <= REL_TOL * w.abs() + 1e-15,
            "{what}[{i}]: got {g:e}, want {w:e} (abs err {err:e}, rel {:e})",
            err / w.abs()
        );
        if *w != 0.0 {
            worst = worst.max(err / w.abs());
        }
    }
    worst
}

/// A gradient store holding `grads[k]` for parameter `params[k]`.
pub fn store<E: retrograd_core::Element>(
    params: &[&Parameter<E>],
    grads: &[Tensor<E>],
) -> GradStore<E> {
    let mut s = GradStore::new();
    for (p, g) in params.iter().zip(grads) {
        s.insert(p.id(), g.clone());
    }
    s
}
