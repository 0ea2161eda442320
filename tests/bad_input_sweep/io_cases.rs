//! Loader rows: safetensors state dicts (missing, empty, truncated, garbage, wrong dtype) and
//! training checkpoints (wrong format/version/dtype, bad counters and RNG states, restoring into
//! a model or optimizer that does not match).

use std::path::PathBuf;

use rand::{rngs::StdRng, SeedableRng};
use retrograd::checkpoint::{Checkpoint, TrainRng};
use retrograd::nn::rnn::{Lstm, RnnConfig};
use retrograd::nn::{serialize, Linear, Module, StateDict};
use retrograd::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use retrograd::Tensor;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

use super::harness::{case, Case};

/// This process's scratch directory (removed by `serialize_loaders` when its rows are done).
pub fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!("retrograd-sweep-{}", std::process::id()))
}

fn scratch(name: &str) -> PathBuf {
    let dir = scratch_dir();
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn linear<E: retrograd::core::Element>(seed: u64) -> Linear<E> {
    Linear::new(3, 2, true, &mut StdRng::seed_from_u64(seed)).unwrap()
}

fn bytes_f32() -> Vec<u8> {
    serialize::to_bytes(&linear::<f32>(1).state_dict(), None).unwrap()
}

fn bytes_f64() -> Vec<u8> {
    serialize::to_bytes(&linear::<f64>(1).state_dict(), None).unwrap()
}

/// A safetensors buffer holding one I32 tensor named `weight`.
fn bytes_i32() -> Vec<u8> {
    let data: Vec<u8> = [1i32, 2, 3, 4, 5, 6]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let view = TensorView::new(Dtype::I32, vec![2, 3], &data).unwrap();
    safetensors::serialize([("weight", view)], None).unwrap()
}

/// Checkpoint bytes of a Linear(3, 2) with `meta` entries overriding / added to the real ones.
fn checkpoint_with(meta: &[(&str, &str)]) -> Vec<u8> {
    let ck = Checkpoint::new(linear::<f32>(1).state_dict()).with_rng("shuffle", &rng0());
    let (tensors, mut m) = serialize::from_bytes::<f32>(&ck.to_bytes().unwrap()).unwrap();
    for (k, v) in meta {
        m.insert(k.to_string(), v.to_string());
    }
    serialize::to_bytes(&tensors, Some(m)).unwrap()
}

fn rng0() -> TrainRng {
    <TrainRng as rand_chacha::rand_core::SeedableRng>::seed_from_u64(3)
}

pub fn state_dict_files() -> Vec<Case> {
    vec![
        case(
            "load_safetensors of a missing file",
            || serialize::load_safetensors::<f32>("/nonexistent/dir/w.safetensors"),
            &["io", "/nonexistent/dir/w.safetensors"],
        ),
        case(
            "from_bytes of an empty buffer",
            || serialize::from_bytes::<f32>(&[]),
            &["checkpoint", "not a valid safetensors buffer"],
        ),
        case(
            "from_bytes of a buffer cut in half",
            || {
                let b = bytes_f32();
                serialize::from_bytes::<f32>(&b[..b.len() / 2])
            },
            &["not a valid safetensors buffer"],
        ),
        case(
            "from_bytes with a header length past the end",
            || serialize::from_bytes::<f32>(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, b'{', b'}']),
            &["not a valid safetensors buffer"],
        ),
        case(
            "from_bytes of a header that is not JSON",
            || serialize::from_bytes::<f32>(&[4, 0, 0, 0, 0, 0, 0, 0, b'n', b'o', b'p', b'e']),
            &["not a valid safetensors buffer"],
        ),
        case(
            "from_bytes: F64 tensors into an f32 model",
            || serialize::from_bytes::<f32>(&bytes_f64()),
            &["stored as F64", "model uses f32", "from_bytes_as"],
        ),
        case(
            "from_bytes_as: an I32 tensor",
            || serialize::from_bytes_as::<f32>(&bytes_i32()),
            &["'weight'", "I32", "only F32 and F64"],
        ),
        case(
            "load_into: F64 file into an f32 model",
            || {
                let p = scratch("f64.safetensors");
                std::fs::write(&p, bytes_f64()).unwrap();
                serialize::load_into(&linear::<f32>(2), &p, true)
            },
            &["f64.safetensors", "F64", "f32"],
        ),
        case(
            "load_into: a file of another model shape",
            || {
                let p = scratch("lstm.safetensors");
                let l = Lstm::<f32>::new(RnnConfig::new(3, 2), &mut StdRng::seed_from_u64(0))?;
                serialize::save(&l, &p)?;
                serialize::load_into(&linear::<f32>(2), &p, true)
            },
            &["lstm.safetensors", "missing tensor 'weight'"],
        ),
        case(
            "load_safetensors of a truncated file",
            || {
                let p = scratch("truncated.safetensors");
                let b = bytes_f32();
                std::fs::write(&p, &b[..b.len() - 3]).unwrap();
                serialize::load_safetensors::<f32>(&p)
            },
            &["truncated.safetensors", "not a valid safetensors buffer"],
        ),
    ]
}

pub fn checkpoints() -> Vec<Case> {
    vec![
        case(
            "Checkpoint::load of a missing file",
            || Checkpoint::<f32>::load("/nonexistent/ck.safetensors"),
            &["io", "/nonexistent/ck.safetensors"],
        ),
        case(
            "Checkpoint::from_bytes of a plain state dict",
            || Checkpoint::<f32>::from_bytes(&bytes_f32()),
            &["not a training checkpoint"],
        ),
        case(
            "Checkpoint::from_bytes of truncated bytes",
            || {
                let b = checkpoint_with(&[]);
                Checkpoint::<f32>::from_bytes(&b[..b.len() - 1])
            },
            &["not a valid safetensors buffer"],
        ),
        case(
            "Checkpoint version 2",
            || Checkpoint::<f32>::from_bytes(&checkpoint_with(&[("checkpoint.version", "2")])),
            &["version '2'"],
        ),
        case(
            "Checkpoint f64 into f32",
            || {
                let b = Checkpoint::new(linear::<f64>(1).state_dict()).to_bytes()?;
                Checkpoint::<f32>::from_bytes(&b)
            },
            &["F64", "f32"],
        ),
        case(
            "Checkpoint step '-1'",
            || Checkpoint::<f32>::from_bytes(&checkpoint_with(&[("step", "-1")])),
            &["'step' = '-1'", "not a count"],
        ),
        case(
            "Checkpoint RNG seed that is not hex",
            || {
                let seed = "zz".repeat(32);
                Checkpoint::<f32>::from_bytes(&checkpoint_with(&[("rng.shuffle.seed", &seed)]))
            },
            &["rng 'shuffle'", "invalid seed"],
        ),
        case(
            "Checkpoint RNG seed of 64 bytes but non-ASCII",
            || {
                let seed = "é".repeat(32);
                Checkpoint::<f32>::from_bytes(&checkpoint_with(&[("rng.shuffle.seed", &seed)]))
            },
            &["rng 'shuffle'", "invalid seed"],
        ),
        case(
            "Checkpoint RNG with a seed only",
            || Checkpoint::<f32>::from_bytes(&checkpoint_with(&[("rng.other.seed", "00")])),
            &["'other'", "seed, stream and word_pos"],
        ),
        case(
            "Checkpoint with an unknown metadata entry",
            || Checkpoint::<f32>::from_bytes(&checkpoint_with(&[("colour", "blue")])),
            &["unexpected metadata entry 'colour'"],
        ),
        case(
            "Checkpoint with an unprefixed tensor",
            || {
                let mut sd: StateDict<f32> = StateDict::new();
                sd.insert("stray".into(), Tensor::zeros(&[1]));
                let (_, m) = serialize::from_bytes::<f32>(&checkpoint_with(&[]))?;
                Checkpoint::<f32>::from_bytes(&serialize::to_bytes(&sd, Some(m))?)
            },
            &["unexpected tensor 'stray'"],
        ),
        case(
            "Checkpoint::rng of a name it does not hold",
            || Checkpoint::<f32>::from_bytes(&checkpoint_with(&[]))?.rng("dropout"),
            &["no random generator 'dropout'", "shuffle"],
        ),
        case(
            "Checkpoint::restore into a model of another shape",
            || {
                let ck = Checkpoint::new(linear::<f32>(1).state_dict());
                let wide = Linear::<f32>::new(4, 2, true, &mut StdRng::seed_from_u64(0))?;
                ck.restore(&wide, None)
            },
            &["'weight'", "[2, 3]", "[2, 4]"],
        ),
        case(
            "Checkpoint::restore an optimizer from a checkpoint without one",
            || {
                let m = linear::<f32>(1);
                let mut opt = Sgd::new(m.named_parameters(), SgdConfig::new(0.1))?;
                Checkpoint::new(m.state_dict()).restore(&m, Some(&mut opt))
            },
            &["no optimizer state"],
        ),
        case(
            "Checkpoint::restore SGD state into Adam",
            || {
                let m = linear::<f32>(1);
                let sgd = Sgd::new(m.named_parameters(), SgdConfig::new(0.1))?;
                let ck = Checkpoint::capture(&m, &sgd, 3, 0);
                let mut adam = Adam::new(m.named_parameters(), AdamConfig::default())?;
                let bytes = ck.to_bytes()?;
                let back = Checkpoint::<f32>::from_bytes(&bytes)?;
                back.restore(&m, Some(&mut adam as &mut dyn Optimizer<f32>))
            },
            &["'SGD'", "'Adam'"],
        ),
    ]
}
