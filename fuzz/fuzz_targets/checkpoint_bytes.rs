//! Training checkpoints from untrusted bytes (`Checkpoint::from_bytes`, the entry point behind
//! `Checkpoint::load`), then restored into a model, an optimizer and a scheduler.
//!
//! Two modes, picked by the first byte:
//! * raw: the remaining bytes are the file;
//! * edited: a valid checkpoint (Linear(3, 2) + one optimizer step of SGD / Adam / RMSprop /
//!   Adagrad + a scheduler + an RNG) has metadata entries replaced, added or removed and tensors
//!   reshaped or dropped as the fuzzer chooses, so the parser, the optimizer state readers and
//!   the scheduler state readers see well-formed files with hostile contents.
//!
//! Parsing, restoring, then stepping the optimizer and scheduler may fail but never panic; a
//! checkpoint that parses must round-trip through `to_bytes`.
#![no_main]

mod input;

use std::sync::OnceLock;

use input::Input;
use libfuzzer_sys::fuzz_target;
use rand::{rngs::StdRng, SeedableRng};
use retrograd::checkpoint::{Checkpoint, TrainRng};
use retrograd::nn::{serialize, Linear, Module};
use retrograd::optim::*;
use retrograd::{GradStore, Tensor};

fn model() -> Linear<f32> {
    Linear::new(3, 2, true, &mut StdRng::seed_from_u64(1)).expect("valid sizes")
}

fn optimizer(kind: usize, m: &Linear<f32>) -> Box<dyn Optimizer<f32>> {
    let p = m.named_parameters();
    match kind {
        0 => Box::new(Sgd::new(p, SgdConfig::new(0.1).momentum(0.9).nesterov(true)).unwrap()),
        1 => Box::new(Adam::new(p, AdamConfig::default().amsgrad(true)).unwrap()),
        2 => Box::new(
            RmsProp::new(p, RmsPropConfig::default().momentum(0.5).centered(true)).unwrap(),
        ),
        _ => Box::new(Adagrad::new(p, AdagradConfig::default()).unwrap()),
    }
}

fn scheduler(kind: usize) -> Box<dyn LrScheduler> {
    match kind {
        0 => Box::new(StepLr::new(0.1, 2, 0.5).unwrap()),
        1 => Box::new(ExponentialLr::new(0.1, 0.9).unwrap()),
        2 => Box::new(CosineAnnealingLr::new(0.1, 4, 0.001).unwrap()),
        _ => Box::new(LinearLr::new(0.1, 0.25, 1.0, 3).unwrap()),
    }
}

fn ones_grads(m: &Linear<f32>) -> GradStore<f32> {
    let mut g = GradStore::new();
    for p in m.parameters() {
        g.insert(p.id(), Tensor::full(p.shape(), 0.5));
    }
    g
}

/// Valid checkpoint bytes for optimizer kind `k` and scheduler kind `k`, built once.
fn template(k: usize) -> &'static [u8] {
    static T: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    &T.get_or_init(|| {
        (0..4)
            .map(|k| {
                let m = model();
                let mut opt = optimizer(k, &m);
                opt.step(&ones_grads(&m)).unwrap();
                let mut sched = scheduler(k);
                sched.step();
                let rng = <TrainRng as rand::SeedableRng>::seed_from_u64(9);
                Checkpoint::capture(&m, opt.as_ref(), 7, 1)
                    .with_scheduler(sched.state_dict())
                    .with_rng("shuffle", &rng)
                    .with_extra("note", "fuzz")
                    .to_bytes()
                    .unwrap()
            })
            .collect()
    })[k]
}

/// Applies the fuzzer's edits to a valid checkpoint of kind `k`.
fn edited(inp: &mut Input, k: usize) -> Vec<u8> {
    let (mut tensors, mut meta) = serialize::from_bytes::<f32>(template(k)).unwrap();
    for _ in 0..inp.below(4) + 1 {
        let keys: Vec<String> = meta.keys().cloned().collect();
        let key = keys[inp.below(keys.len())].clone();
        match inp.below(6) {
            0 => {
                meta.remove(&key);
            }
            1 => {
                // a new entry under a known prefix
                let prefix = [
                    "optim.",
                    "sched.",
                    "rng.x.",
                    "optim.state.weight.",
                    "model.",
                ];
                let name = format!("{}{}", prefix[inp.below(prefix.len())], inp.text());
                meta.insert(name, inp.text());
            }
            2 => {
                let names: Vec<String> = tensors.keys().cloned().collect();
                let name = &names[inp.below(names.len())];
                if inp.bool() {
                    tensors.remove(name);
                } else {
                    let n = inp.below(7);
                    tensors.insert(name.clone(), Tensor::full(&[n], inp.param() as f32));
                }
            }
            _ => {
                meta.insert(key, inp.text());
            }
        }
    }
    serialize::to_bytes(&tensors, Some(meta)).unwrap()
}

fn exercise(ck: &Checkpoint<f32>, inp: &mut Input) {
    let again = ck.to_bytes().expect("a parsed checkpoint serializes");
    let back = Checkpoint::<f32>::from_bytes(&again).expect("own output parses");
    assert_eq!((back.step, back.epoch), (ck.step, ck.epoch));
    assert_eq!(back.extra, ck.extra);
    assert_eq!(back.rngs, ck.rngs);
    let _ = ck.rng("shuffle");

    let m = model();
    let mut opt = optimizer(inp.below(4), &m);
    if ck.restore(&m, Some(opt.as_mut())).is_ok() {
        let _ = opt.step(&ones_grads(&m));
    }
    if let Some(st) = &ck.scheduler {
        let mut sched = scheduler(inp.below(4));
        if sched.load_state_dict(st).is_ok() {
            sched.step();
        }
        let mut plateau = ReduceLrOnPlateau::new(0.1, PlateauConfig::default()).unwrap();
        if plateau.load_state_dict(st).is_ok() {
            plateau.step_with(inp.param());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let bytes = if inp.bool() {
        inp.rest().to_vec()
    } else {
        let k = inp.below(4);
        edited(&mut inp, k)
    };
    let _ = Checkpoint::<f64>::from_bytes(&bytes);
    if let Ok(ck) = Checkpoint::<f32>::from_bytes(&bytes) {
        exercise(&ck, &mut inp);
    }
});
