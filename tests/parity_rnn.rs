//! Parity of the recurrent stacks with PyTorch: every `kind = "rnn_stack"` fixture in
//! `tests/fixtures/ref/` (see `tests/fixtures/README.md`) is rebuilt in f64 from its metadata,
//! its PyTorch `state_dict` is loaded by name (strict, which proves the parameter names), and
//! the forward values and every gradient of
//! `loss = Σ output·grad_output + Σ h_n·grad_h_n (+ Σ c_n·grad_c_n)` are compared.
//!
//! Tolerance: |ours − torch| ≤ 1e-10 + 1e-10·|torch| for every element when run in f64, and
//! ≤ 1e-5 + 1e-5·|torch| when the same fixtures run in f32 (weights and inputs rounded to f32,
//! compared with PyTorch's f64 results: this exercises the f32 kernels, which differ from f64's).
//! All failures are collected and reported together, each naming its fixture file.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use rand::{rngs::StdRng, SeedableRng};
use retrograd::core::Element;
use retrograd::nn::{Gru, Lstm, LstmState, Module, Nonlinearity, Rnn, RnnConfig, StateDict};
use retrograd::{Result, Tensor};
use safetensors::{Dtype, SafeTensors};

/// (absolute, relative) tolerance of the f64 run.
const TOL_F64: (f64, f64) = (1e-10, 1e-10);
/// (absolute, relative) tolerance of the f32 run.
const TOL_F32: (f64, f64) = (1e-5, 1e-5);
const EXPECTED_FIXTURES: usize = 120;

fn ref_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ref")
}

/// The `rnn_stack` entries of the manifest: (file name, config).
fn rnn_fixtures() -> Vec<(String, HashMap<String, String>)> {
    let text =
        std::fs::read_to_string(ref_dir().join("manifest.json")).expect("read manifest.json");
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("parse manifest.json");
    let files = manifest["files"]
        .as_array()
        .expect("manifest has a files array");
    files
        .iter()
        .filter(|f| f["config"]["kind"] == "rnn_stack")
        .map(|f| {
            let config = f["config"]
                .as_object()
                .expect("config is an object")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            (f["file"].as_str().expect("file name").to_string(), config)
        })
        .collect()
}

struct Fixture<'a> {
    st: SafeTensors<'a>,
}

impl Fixture<'_> {
    fn has(&self, name: &str) -> bool {
        self.st.tensor(name).is_ok()
    }

    fn f64(&self, name: &str) -> std::result::Result<Tensor<f64>, String> {
        let v = self
            .st
            .tensor(name)
            .map_err(|e| format!("tensor {name}: {e}"))?;
        if v.dtype() != Dtype::F64 {
            return Err(format!("tensor {name} is {:?}, expected F64", v.dtype()));
        }
        let data = v
            .data()
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        Tensor::from_vec(data, v.shape()).map_err(|e| e.to_string())
    }

    fn lengths(&self) -> std::result::Result<Vec<usize>, String> {
        let v = self.st.tensor("lengths").map_err(|e| e.to_string())?;
        Ok(v.data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
            .collect())
    }

    /// A fixture tensor rounded to the element type under test.
    fn get<E: Element>(&self, name: &str) -> std::result::Result<Tensor<E>, String> {
        Ok(self.f64(name)?.cast::<E>())
    }

    fn state_dict<E: Element>(&self) -> std::result::Result<StateDict<E>, String> {
        let mut sd = BTreeMap::new();
        for name in self.st.names() {
            if let Some(p) = name.strip_prefix("param.") {
                sd.insert(p.to_string(), self.get(name)?);
            }
        }
        Ok(sd)
    }
}

enum Model<E: Element> {
    Rnn(Rnn<E>),
    Lstm(Lstm<E>),
    Gru(Gru<E>),
}

/// Forward values: output, h_n, c_n.
type Outputs<E> = (Tensor<E>, Tensor<E>, Option<Tensor<E>>);

impl<E: Element> Model<E> {
    fn build(cfg: &HashMap<String, String>) -> std::result::Result<Model<E>, String> {
        let get = |k: &str| cfg.get(k).cloned().ok_or(format!("metadata lacks {k}"));
        let num = |k: &str| -> std::result::Result<usize, String> {
            get(k)?.parse().map_err(|e| format!("{k}: {e}"))
        };
        let flag = |k: &str| -> std::result::Result<bool, String> { Ok(get(k)? == "true") };
        let config = RnnConfig::new(num("input_size")?, num("hidden_size")?)
            .num_layers(num("num_layers")?)
            .bidirectional(flag("bidirectional")?)
            .batch_first(flag("batch_first")?)
            .bias(flag("bias")?)
            .proj_size(num("proj_size")?)
            .dropout(
                get("dropout")?
                    .parse()
                    .map_err(|e| format!("dropout: {e}"))?,
            );
        let mut rng = StdRng::seed_from_u64(0);
        let mode = get("mode")?;
        let model = match mode.as_str() {
            "RNN_TANH" => Rnn::new(config, &mut rng).map(Model::Rnn),
            "RNN_RELU" => {
                Rnn::new(config.nonlinearity(Nonlinearity::Relu), &mut rng).map(Model::Rnn)
            }
            "LSTM" => Lstm::new(config, &mut rng).map(Model::Lstm),
            "GRU" => Gru::new(config, &mut rng).map(Model::Gru),
            other => return Err(format!("unknown mode {other}")),
        };
        model.map_err(|e| e.to_string())
    }

    fn module(&self) -> &dyn Module<E> {
        match self {
            Model::Rnn(m) => m,
            Model::Lstm(m) => m,
            Model::Gru(m) => m,
        }
    }

    fn run(
        &self,
        x: &Tensor<E>,
        lengths: Option<&[usize]>,
        h0: Option<&Tensor<E>>,
        c0: Option<&Tensor<E>>,
    ) -> Result<Outputs<E>> {
        match self {
            Model::Rnn(m) => {
                let (o, h) = match lengths {
                    Some(l) => m.forward_with_lengths(x, l, h0)?,
                    None => m.forward(x, h0)?,
                };
                Ok((o, h, None))
            }
            Model::Gru(m) => {
                let (o, h) = match lengths {
                    Some(l) => m.forward_with_lengths(x, l, h0)?,
                    None => m.forward(x, h0)?,
                };
                Ok((o, h, None))
            }
            Model::Lstm(m) => {
                let state = match (h0, c0) {
                    (Some(h), Some(c)) => Some(LstmState::new(h.clone(), c.clone())),
                    _ => None,
                };
                let (o, s) = match lengths {
                    Some(l) => m.forward_with_lengths(x, l, state.as_ref())?,
                    None => m.forward(x, state.as_ref())?,
                };
                Ok((o, s.h, Some(s.c)))
            }
        }
    }
}

/// True when `ours` matches `torch` to the tolerance (false for NaN).
fn within_tolerance(ours: f64, torch: f64, (atol, rtol): (f64, f64)) -> bool {
    (ours - torch).abs() <= atol + rtol * torch.abs()
}

/// Compares `ours` with PyTorch's values; returns a description of any mismatch and records the
/// largest difference in `max_diff`.
fn compare<E: Element>(
    what: &str,
    ours: Option<&Tensor<E>>,
    expected: &Tensor<f64>,
    tol: (f64, f64),
    max_diff: &mut f64,
) -> Option<String> {
    let Some(ours) = ours else {
        return Some(format!(
            "{what}: missing (expected shape {:?})",
            expected.shape()
        ));
    };
    if ours.shape() != expected.shape() {
        return Some(format!(
            "{what}: shape {:?}, expected {:?}",
            ours.shape(),
            expected.shape()
        ));
    }
    let (a, b) = (ours.to_f64_vec(), expected.to_f64_vec());
    let max = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    *max_diff = max_diff.max(max);
    let worst = a
        .iter()
        .zip(&b)
        .enumerate()
        .filter(|(_, (x, y))| !within_tolerance(**x, **y, tol))
        .max_by(|(_, (x1, y1)), (_, (x2, y2))| (*x1 - *y1).abs().total_cmp(&(*x2 - *y2).abs()));
    worst.map(|(i, (x, y))| {
        format!(
            "{what}: element {i} is {x:.15e}, expected {y:.15e} (diff {:.3e})",
            (x - y).abs()
        )
    })
}

/// Checks one fixture in element type `E`; returns every mismatch found.
fn check_fixture<E: Element>(
    file: &str,
    cfg: &HashMap<String, String>,
    tol: (f64, f64),
    max_diff: &mut f64,
) -> std::result::Result<Vec<String>, String> {
    let bytes = std::fs::read(ref_dir().join(file)).map_err(|e| e.to_string())?;
    let fx = Fixture {
        st: SafeTensors::deserialize(&bytes).map_err(|e| e.to_string())?,
    };
    let model = Model::<E>::build(cfg)?;
    model
        .module()
        .load_state_dict(&fx.state_dict::<E>()?, true)
        .map_err(|e| e.to_string())?;

    let x = fx.get::<E>("input")?.requires_grad();
    let h0 = if fx.has("h0") {
        Some(fx.get::<E>("h0")?.requires_grad())
    } else {
        None
    };
    let c0 = if fx.has("c0") {
        Some(fx.get::<E>("c0")?.requires_grad())
    } else {
        None
    };
    let lengths = if fx.has("lengths") {
        Some(fx.lengths()?)
    } else {
        None
    };

    let (out, h_n, c_n) = model
        .run(&x, lengths.as_deref(), h0.as_ref(), c0.as_ref())
        .map_err(|e| format!("forward: {e}"))?;
    let mut problems = Vec::new();
    let mut cmp = |what: &str, ours: Option<&Tensor<E>>, name: &str| {
        fx.f64(name)
            .map(|expected| compare(what, ours, &expected, tol, max_diff))
    };
    problems.extend(cmp("output", Some(&out), "output")?);
    problems.extend(cmp("h_n", Some(&h_n), "h_n")?);
    if fx.has("c_n") {
        problems.extend(cmp("c_n", c_n.as_ref(), "c_n")?);
    }

    let weighted = |t: &Tensor<E>, w: &str| -> std::result::Result<Tensor<E>, String> {
        t.mul(&fx.get::<E>(w)?)
            .map(|p| p.sum_all())
            .map_err(|e| e.to_string())
    };
    let mut loss = weighted(&out, "grad_output")?
        .add(&weighted(&h_n, "grad_h_n")?)
        .map_err(|e| e.to_string())?;
    if let Some(c) = &c_n {
        loss = loss
            .add(&weighted(c, "grad_c_n")?)
            .map_err(|e| e.to_string())?;
    }
    let grads = loss.backward().map_err(|e| format!("backward: {e}"))?;

    problems.extend(cmp("grad.input", grads.get(&x), "grad.input")?);
    for (name, t) in [("h0", &h0), ("c0", &c0)] {
        if let Some(t) = t {
            let key = format!("grad.{name}");
            problems.extend(cmp(&key, grads.get(t), &key)?);
        }
    }
    for (name, p) in model.module().named_parameters() {
        let key = format!("grad.{name}");
        problems.extend(cmp(&key, grads.get_id(p.id()), &key)?);
    }
    Ok(problems)
}

/// Runs every fixture in element type `E` and fails listing every mismatch.
fn check_all<E: Element>(tol: (f64, f64)) {
    let fixtures = rnn_fixtures();
    let mut failures = Vec::new();
    let mut max_diff = 0.0;
    for (file, cfg) in &fixtures {
        // one line per configuration (shown with `cargo test --test parity_rnn -- --nocapture`)
        match check_fixture::<E>(file, cfg, tol, &mut max_diff) {
            Ok(problems) => {
                println!(
                    "{file} ({:?}): {}",
                    E::DTYPE,
                    if problems.is_empty() {
                        "ok"
                    } else {
                        "MISMATCH"
                    }
                );
                failures.extend(problems.into_iter().map(|p| format!("{file}: {p}")))
            }
            Err(e) => {
                println!("{file}: could not run");
                failures.push(format!("{file}: could not run: {e}"))
            }
        }
    }
    println!(
        "checked {} rnn_stack configurations in {:?} against PyTorch (tolerance {:e} abs + {:e} rel); \
         largest difference {max_diff:.3e}",
        fixtures.len(),
        E::DTYPE,
        tol.0,
        tol.1,
    );
    assert!(
        failures.is_empty(),
        "{} mismatches in {:?}:\n{}",
        failures.len(),
        E::DTYPE,
        failures.join("\n")
    );
    assert_eq!(
        fixtures.len(),
        EXPECTED_FIXTURES,
        "the manifest should list {EXPECTED_FIXTURES} rnn_stack fixtures"
    );
}

#[test]
fn every_rnn_stack_fixture_matches_pytorch() {
    check_all::<f64>(TOL_F64);
}

#[test]
fn every_rnn_stack_fixture_matches_pytorch_in_f32() {
    check_all::<f32>(TOL_F32);
}
