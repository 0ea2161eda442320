//! safetensors state-dict I/O: exact round trips, dtype policy, PyTorch files, strict loading,
//! atomic writes, and corrupted input (truncations and byte flips never panic).

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use retrograd_core::{Element, Parameter, Tensor};
use retrograd_nn::serialize::{self, from_bytes, from_bytes_as, tmp_path, to_bytes};
use retrograd_nn::{join_name, Embedding, Linear, Module, StateDict};

/// A fresh, empty directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("retrograd-nn-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sample<E: Element>(seed: u64) -> StateDict<E> {
    let mut r = StdRng::seed_from_u64(seed);
    let mut sd = StateDict::new();
    for (name, shape) in [
        ("encoder.weight", vec![7, 3]),
        ("decoder.weight", vec![3, 7]),
        ("decoder.bias", vec![3]),
        ("rnn.weight_ih_l0_reverse", vec![2, 2, 2]),
        ("scalar", vec![]),
        ("empty", vec![0, 4]),
    ] {
        sd.insert(
            name.to_string(),
            Tensor::randn(&shape, 0.0, 1.0, &mut r).unwrap(),
        );
    }
    sd
}

fn assert_bits_equal<E: Element>(a: &StateDict<E>, b: &StateDict<E>) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, t) in a {
        assert_eq!(t.shape(), b[k].shape(), "{k}");
        let bits = |t: &Tensor<E>| {
            t.to_f64_vec()
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(t), bits(&b[k]), "{k}");
    }
}

#[test]
fn round_trip_is_exact_in_f32_and_f64() {
    let meta = BTreeMap::from([("hidden_size".to_string(), "7".to_string())]);
    let sd32 = sample::<f32>(1);
    let (back, m) = from_bytes::<f32>(&to_bytes(&sd32, Some(meta.clone())).unwrap()).unwrap();
    assert_bits_equal(&sd32, &back);
    assert_eq!(m, meta);
    let sd64 = sample::<f64>(2);
    let (back, m) = from_bytes::<f64>(&to_bytes(&sd64, None).unwrap()).unwrap();
    assert_bits_equal(&sd64, &back);
    assert!(m.is_empty());
    // through files too
    let dir = scratch("roundtrip");
    let path = dir.join("m.safetensors");
    serialize::save_safetensors(&sd64, &path, Some(meta.clone())).unwrap();
    let (back, m) = serialize::load_safetensors::<f64>(&path).unwrap();
    assert_bits_equal(&sd64, &back);
    assert_eq!(m, meta);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn files_use_the_safetensors_layout_pytorch_reads() {
    let sd = sample::<f32>(3);
    let bytes = to_bytes(&sd, None).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = st.names();
    names.sort();
    assert_eq!(names, sd.keys().map(String::as_str).collect::<Vec<_>>());
    let w = st.tensor("encoder.weight").unwrap();
    assert_eq!(w.dtype(), safetensors::Dtype::F32);
    assert_eq!(w.shape(), &[7, 3]);
    let first = f32::from_le_bytes(w.data()[..4].try_into().unwrap());
    assert_eq!(
        first,
        sd["encoder.weight"].to_vec()[0],
        "row-major little-endian data"
    );
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(header_len % 8, 0, "header padded to 8 bytes");
    assert_eq!(bytes[8], b'{');
}

#[test]
fn dtype_mismatch_is_an_error_unless_converting() {
    let sd64 = sample::<f64>(4);
    let bytes = to_bytes(&sd64, None).unwrap();
    let e = from_bytes::<f32>(&bytes).unwrap_err().to_string();
    assert!(
        e.contains("F64") && e.contains("f32") && e.contains("load_safetensors_as"),
        "{e}"
    );
    assert!(
        sd64.keys().any(|k| e.contains(&format!("'{k}'"))),
        "names a tensor: {e}"
    );
    let (sd32, _) = from_bytes_as::<f32>(&bytes).unwrap();
    for (k, t) in &sd64 {
        let want: Vec<f32> = t.to_vec().iter().map(|&v| v as f32).collect();
        assert_eq!(sd32[k].to_vec(), want, "{k}");
    }
    // f32 → f64 widening is exact
    let (wide, _) = from_bytes_as::<f64>(&to_bytes(&sd32, None).unwrap()).unwrap();
    for (k, t) in &sd32 {
        assert_eq!(wide[k].to_vec(), t.to_f64_vec(), "{k}");
    }
}

#[test]
fn pytorch_written_fixture_loads_and_integer_tensors_are_refused() {
    let refs = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/ref"
    ));
    let (sd, meta) =
        serialize::load_safetensors::<f64>(refs.join("linear_2d.safetensors")).unwrap();
    assert_eq!(meta["kind"], "linear");
    assert_eq!(sd["param.weight"].shape(), &[4, 3]);
    let e = serialize::load_safetensors::<f32>(refs.join("linear_2d.safetensors")).unwrap_err();
    assert!(
        e.to_string().contains("linear_2d.safetensors"),
        "names the file: {e}"
    );
    let e = serialize::load_safetensors_as::<f32>(refs.join("embedding.safetensors")).unwrap_err();
    assert!(
        e.to_string().contains("'ids'") && e.to_string().contains("I64"),
        "{e}"
    );
}

struct Net {
    emb: Embedding<f32>,
    head: Linear<f32>,
}

impl Module<f32> for Net {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Parameter<f32>)) {
        self.emb.visit_params(&join_name(prefix, "emb"), f);
        self.head.visit_params(&join_name(prefix, "head"), f);
    }
}

fn net(seed: u64, hidden: usize) -> Net {
    let mut r = StdRng::seed_from_u64(seed);
    Net {
        emb: Embedding::new(10, hidden, &mut r).unwrap(),
        head: Linear::new(hidden, 10, true, &mut r).unwrap(),
    }
}

#[test]
fn module_save_and_strict_load() {
    let dir = scratch("module");
    let path = dir.join("net.safetensors");
    let a = net(1, 4);
    serialize::save(&a, &path).unwrap();
    let b = net(2, 4);
    serialize::load_into(&b, &path, true).unwrap();
    assert_bits_equal(&a.state_dict(), &b.state_dict());

    let wrong = net(3, 5);
    let e = serialize::load_into(&wrong, &path, true)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'emb.weight'") && e.contains("[10, 4]") && e.contains("[10, 5]"),
        "{e}"
    );
    assert!(e.contains("net.safetensors"), "names the file: {e}");

    let head_only = Linear::<f32>::new(4, 10, true, &mut StdRng::seed_from_u64(0)).unwrap();
    let e = serialize::load_into(&head_only, &path, true)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing tensor 'weight'") && e.contains("unexpected tensor 'head.bias'"),
        "{e}"
    );
    let e = serialize::load_into::<f64, _>(
        &Linear::<f64>::new(4, 10, true, &mut StdRng::seed_from_u64(0)).unwrap(),
        &path,
        false,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("F32") && e.to_string().contains("f64"),
        "{e}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn writes_are_atomic_and_failures_keep_the_old_file() {
    let dir = scratch("atomic");
    let path = dir.join("ckpt.safetensors");
    let old = sample::<f32>(5);
    serialize::save_safetensors(&old, &path, None).unwrap();
    assert!(!tmp_path(&path).exists(), "temporary file left behind");
    assert_eq!(tmp_path(&path), dir.join("ckpt.safetensors.tmp"));

    // A crash mid-save leaves a torn .tmp next to an intact target; the target still loads
    // and the next save replaces both.
    std::fs::write(tmp_path(&path), b"torn partial write").unwrap();
    assert_bits_equal(&old, &serialize::load_safetensors::<f32>(&path).unwrap().0);
    let new = sample::<f32>(6);
    serialize::save_safetensors(&new, &path, None).unwrap();
    assert_bits_equal(&new, &serialize::load_safetensors::<f32>(&path).unwrap().0);
    assert!(!tmp_path(&path).exists());

    // A save that cannot write its temporary file fails and leaves the old file untouched.
    std::fs::create_dir(tmp_path(&path)).unwrap();
    let e = serialize::save_safetensors(&old, &path, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("ckpt.safetensors.tmp"), "{e}");
    assert_bits_equal(&new, &serialize::load_safetensors::<f32>(&path).unwrap().0);
    std::fs::remove_dir(tmp_path(&path)).unwrap();

    // A save whose rename fails (target is a directory) cleans its temporary file up.
    let blocked = dir.join("blocked");
    std::fs::create_dir(&blocked).unwrap();
    std::fs::write(blocked.join("keep"), b"x").unwrap();
    assert!(serialize::save_safetensors(&old, &blocked, None).is_err());
    assert!(
        !tmp_path(&blocked).exists(),
        "temporary file left after a failed rename"
    );
    // Missing directory: an Io error naming the path.
    let e = serialize::save_safetensors(&old, dir.join("no/such/dir/x.st"), None).unwrap_err();
    assert!(e.to_string().contains("no/such/dir"), "{e}");
    let e = serialize::load_safetensors::<f32>(dir.join("absent.safetensors")).unwrap_err();
    assert!(e.to_string().contains("absent.safetensors"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Parses `bytes` inside catch_unwind; panics (failing the test) if parsing panicked.
fn parse_no_panic(bytes: &[u8], what: &str) -> bool {
    match catch_unwind(AssertUnwindSafe(|| {
        (
            from_bytes::<f32>(bytes).is_ok(),
            from_bytes_as::<f64>(bytes).is_ok(),
        )
    })) {
        Ok((a, b)) => {
            assert_eq!(a, b, "{what}: strict and converting parsers disagree");
            a
        }
        Err(_) => panic!("{what}: from_bytes panicked"),
    }
}

#[test]
fn corrupted_bytes_are_errors_never_panics() {
    let good = to_bytes(
        &sample::<f32>(7),
        Some(BTreeMap::from([("k".into(), "v".into())])),
    )
    .unwrap();
    assert!(parse_no_panic(&good, "intact file"));
    // every truncation is an error
    for len in 0..good.len() {
        assert!(
            !parse_no_panic(&good[..len], &format!("truncated to {len}")),
            "truncated to {len} parsed"
        );
    }
    // trailing garbage is an error too
    let mut longer = good.clone();
    longer.push(0);
    assert!(!parse_no_panic(&longer, "one extra byte"));
    // seeded random byte flips anywhere: Ok or Err, never a panic
    let header_end = 8 + u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let mut r = StdRng::seed_from_u64(42);
    let (mut header_errs, mut data_ok) = (0, 0);
    for i in 0..3000 {
        let mut bad = good.clone();
        let flips = r.random_range(1..4);
        let mut in_header = false;
        for _ in 0..flips {
            let at = r.random_range(0..bad.len());
            bad[at] ^= 1 << r.random_range(0..8);
            in_header |= at < header_end;
        }
        let ok = parse_no_panic(&bad, &format!("flip trial {i}"));
        if in_header && !ok {
            header_errs += 1;
        }
        if !in_header {
            assert!(ok, "flip trial {i}: a data-only flip must still parse");
            data_ok += 1;
        }
    }
    assert!(
        header_errs > 500 && data_ok > 100,
        "header errors {header_errs}, data-only {data_ok}"
    );
}

#[test]
fn hostile_headers_are_errors() {
    let with_header = |h: &str| {
        let mut b = (h.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(h.as_bytes());
        b
    };
    let cases = [
        // zero elements, but row-major strides would overflow usize
        with_header(
            r#"{"t":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}}"#,
        ),
        with_header(r#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#), // data missing
        with_header(r#"{"t":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#),
        with_header(r#"{"t":{"dtype":"I64","shape":[0],"data_offsets":[0,0]}}"#),
        with_header(r#"{"__metadata__":{"a":1}}"#),
        with_header("not json"),
        u64::MAX.to_le_bytes().to_vec(),
    ];
    for (i, bytes) in cases.iter().enumerate() {
        assert!(
            !parse_no_panic(bytes, &format!("hostile header {i}")),
            "hostile header {i} parsed"
        );
    }
    let e = from_bytes::<f32>(&cases[0]).unwrap_err().to_string();
    assert!(e.contains("'t'") && e.contains("too large"), "{e}");
    assert!(
        parse_no_panic(&with_header("{}"), "empty"),
        "an empty state dict is valid"
    );
}
