//! Parity with PyTorch for Linear, Embedding and CrossEntropyLoss, on the committed reference
//! fixtures (`tests/fixtures/ref`, written by PyTorch, contract in `tests/fixtures/README.md`).
//!
//! Everything runs in f64 and must match to an absolute difference of at most 1e-10
//! (the fixtures are f64 too; the only differences are summation order).

use std::collections::BTreeMap;
use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::SeedableRng;
use retrograd_core::{Reduction, Tensor};
use retrograd_nn::{CrossEntropyLoss, Embedding, Linear, Module, StateDict};
use safetensors::{Dtype, SafeTensors};

const TOL: f64 = 1e-10;

fn ref_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/ref"
    ))
}

/// One fixture file: f64 tensors, i64 tensors and the metadata strings.
struct Fixture {
    name: String,
    f64s: BTreeMap<String, Tensor<f64>>,
    i64s: BTreeMap<String, Vec<i64>>,
    meta: BTreeMap<String, String>,
}

impl Fixture {
    fn load(file: &str) -> Fixture {
        let path = ref_dir().join(file);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let st = SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let (mut f64s, mut i64s) = (BTreeMap::new(), BTreeMap::new());
        for (name, view) in st.tensors() {
            match view.dtype() {
                Dtype::F64 => {
                    let v = view
                        .data()
                        .chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                        .collect();
                    f64s.insert(name, Tensor::from_vec(v, view.shape()).unwrap());
                }
                Dtype::I64 => {
                    let v = view
                        .data()
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                        .collect();
                    i64s.insert(name, v);
                }
                d => panic!("{file}: tensor {name} has unexpected dtype {d:?}"),
            }
        }
        Fixture {
            name: file.to_string(),
            f64s,
            i64s,
            meta,
        }
    }

    fn t(&self, name: &str) -> &Tensor<f64> {
        self.f64s
            .get(name)
            .unwrap_or_else(|| panic!("{}: no tensor '{name}'", self.name))
    }

    fn ids(&self, name: &str) -> &[i64] {
        self.i64s
            .get(name)
            .unwrap_or_else(|| panic!("{}: no i64 tensor '{name}'", self.name))
    }

    fn meta(&self, key: &str) -> &str {
        self.meta
            .get(key)
            .unwrap_or_else(|| panic!("{}: no metadata '{key}'", self.name))
    }

    /// The `param.*` tensors, with the prefix stripped: a PyTorch `state_dict`.
    fn state_dict(&self) -> StateDict<f64> {
        self.f64s
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("param.")?.to_string(), v.clone())))
            .collect()
    }

    /// Asserts `got` matches tensor `name` in shape and to `TOL`.
    fn check(&self, name: &str, got: &Tensor<f64>) {
        let want = self.t(name);
        assert_eq!(got.shape(), want.shape(), "{}: shape of {name}", self.name);
        for (i, (a, b)) in got.to_vec().iter().zip(want.to_vec()).enumerate() {
            assert!(
                (a - b).abs() <= TOL,
                "{}: {name}[{i}] = {a:e}, PyTorch {b:e} (tolerance {TOL:e})",
                self.name
            );
        }
    }
}

fn files_with_prefix(prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(ref_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix) && n.ends_with(".safetensors"))
        .collect();
    v.sort();
    v
}

#[test]
fn linear_matches_pytorch() {
    let files = files_with_prefix("linear_");
    assert_eq!(
        files,
        [
            "linear_2d.safetensors",
            "linear_2d_nobias.safetensors",
            "linear_3d.safetensors"
        ]
    );
    for file in &files {
        let fx = Fixture::load(file);
        assert_eq!(fx.meta("kind"), "linear", "{file}");
        let bias = fx.meta("bias") == "true";
        let (i, o): (usize, usize) = (
            fx.meta("in_features").parse().unwrap(),
            fx.meta("out_features").parse().unwrap(),
        );
        // Build with our own init, then load PyTorch's state_dict by name (strict).
        let fc = Linear::<f64>::new(i, o, bias, &mut StdRng::seed_from_u64(0)).unwrap();
        fc.load_state_dict(&fx.state_dict(), true)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let x = fx.t("input").requires_grad();
        let y = fc.forward(&x).unwrap();
        fx.check("output", &y);
        let grads = y
            .mul(fx.t("grad_output"))
            .unwrap()
            .sum_all()
            .backward()
            .unwrap();
        fx.check("grad.input", grads.get(&x).unwrap());
        fx.check("grad.weight", grads.get_id(fc.weight.id()).unwrap());
        match &fc.bias {
            Some(b) => fx.check("grad.bias", grads.get_id(b.id()).unwrap()),
            None => assert!(
                !fx.f64s.contains_key("grad.bias"),
                "{file}: unexpected grad.bias"
            ),
        }
    }
}

#[test]
fn embedding_matches_pytorch() {
    let files = files_with_prefix("embedding");
    assert_eq!(files, ["embedding.safetensors"]);
    let fx = Fixture::load(&files[0]);
    let file = &fx.name;
    let v: usize = fx.meta("num_embeddings").parse().unwrap();
    let emb = Embedding::<f64>::new(
        v,
        fx.meta("embedding_dim").parse().unwrap(),
        &mut StdRng::seed_from_u64(0),
    )
    .unwrap();
    emb.load_state_dict(&fx.state_dict(), true)
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    let ids = fx.ids("ids");
    let y = emb.forward_i64(ids, &[3, 5]).unwrap();
    fx.check("output", &y);
    let grads = y
        .mul(fx.t("grad_output"))
        .unwrap()
        .sum_all()
        .backward()
        .unwrap();
    let gw = grads.get_id(emb.weight.id()).unwrap();
    fx.check("grad.weight", gw);
    // ids repeat (rows accumulate) and the last row is unused (gradient exactly 0)
    let mut seen = vec![0; v];
    ids.iter().for_each(|&i| seen[i as usize] += 1);
    assert!(seen.iter().any(|&c| c > 1), "{file}: no repeated id");
    assert_eq!(seen[v - 1], 0, "{file}: row {} used", v - 1);
    assert!(
        gw.to_vec()[(v - 1) * 4..].iter().all(|&g| g == 0.0),
        "{file}: unused row has a gradient"
    );
}

#[test]
fn cross_entropy_matches_pytorch() {
    let files = files_with_prefix("ce_");
    assert_eq!(files.len(), 5, "cross-entropy fixtures: {files:?}");
    for file in &files {
        let fx = Fixture::load(file);
        assert_eq!(fx.meta("kind"), "cross_entropy", "{file}");
        assert_eq!(fx.meta("label_smoothing"), "0.0", "{file}");
        let reduction = match fx.meta("reduction") {
            "mean" => Reduction::Mean,
            "sum" => Reduction::Sum,
            r => panic!("{file}: reduction {r}"),
        };
        let ce = CrossEntropyLoss {
            ignore_index: fx.meta("ignore_index").parse().unwrap(),
            reduction,
        };
        let logits = fx.t("logits").requires_grad();
        let targets = fx.ids("targets");
        let loss = ce.forward(&logits, targets).unwrap();
        let want = fx.t("loss").to_vec()[0];
        let got = loss.item().unwrap();
        let all_ignored = targets.iter().all(|&t| t == ce.ignore_index);
        assert_eq!(all_ignored, file.starts_with("ce_all_ignored"), "{file}");
        if want.is_nan() {
            assert!(got.is_nan(), "{file}: loss {got}, PyTorch NaN");
            assert!(
                all_ignored && reduction == Reduction::Mean,
                "{file}: NaN without 0/0"
            );
        } else {
            assert!(
                (got - want).abs() <= TOL,
                "{file}: loss {got:e}, PyTorch {want:e}"
            );
        }
        let grads = loss.backward().unwrap();
        let g = grads.get(&logits).unwrap();
        fx.check("grad.logits", g);
        if all_ignored {
            assert!(
                g.to_vec().iter().all(|&v| v == 0.0),
                "{file}: gradient not exactly 0"
            );
        }
    }
}

#[test]
fn cross_entropy_over_time_matches_pytorch_rows() {
    // The (N, T, V) path reshapes to rows; feeding the fixture's 6 rows as (2, 3, 5) must
    // give PyTorch's loss and gradient too.
    let fx = Fixture::load("ce_mean.safetensors");
    let logits = fx
        .t("logits")
        .reshape(&[2, 3, 5])
        .unwrap()
        .contiguous()
        .detach()
        .requires_grad();
    let loss = CrossEntropyLoss::new()
        .forward(&logits, fx.ids("targets"))
        .unwrap();
    let want = fx.t("loss").to_vec()[0];
    assert!(
        (loss.item().unwrap() - want).abs() <= TOL,
        "ce_mean.safetensors as (N,T,V)"
    );
    let g = loss.backward().unwrap();
    fx.check(
        "grad.logits",
        &g.get(&logits).unwrap().reshape(&[6, 5]).unwrap(),
    );
}
