//! Checkpoint/resume: train N steps, save the optimizer (and scheduler) state, push it through a
//! safetensors byte round trip, load it into a fresh optimizer over freshly built parameters,
//! train M more steps; the parameters must equal those of an uninterrupted N+M-step run
//! bit for bit (f32).

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::SeedableRng;
use retrograd_core::{GradStore, Parameter, Tensor};
use retrograd_optim::*;
use safetensors::{Dtype, SafeTensors};

const N: usize = 5;
const M: usize = 4;
/// The parameter `late` first receives a gradient at this step (after the checkpoint), so the
/// saved state has nothing for it.
const LATE: usize = 7;

type Params = Vec<(String, Parameter<f32>)>;

/// Parameters with fixed seeded values (the same every call, but new ids).
fn init_params() -> Params {
    let mut rng = StdRng::seed_from_u64(17);
    let w = Tensor::<f32>::randn(&[3, 4], 0.0, 0.5, &mut rng).unwrap();
    let b = Tensor::<f32>::randn(&[4], 0.0, 0.5, &mut rng).unwrap();
    let late = Tensor::<f32>::randn(&[2], 0.0, 0.5, &mut rng).unwrap();
    vec![
        ("layer.weight".into(), Parameter::new(w)),
        ("layer.bias".into(), Parameter::new(b)),
        ("late".into(), Parameter::new(late)),
    ]
}

/// Copies of the current values under new ids, as a reload from a checkpoint would give.
fn reload(params: &Params) -> Params {
    params
        .iter()
        .map(|(n, p)| (n.clone(), Parameter::new(p.value_detached())))
        .collect()
}

/// The gradients of step `k`: loss = sum(tanh(x_k W + b) * t_k) (+ sum(late^2) from step LATE).
fn grads_at(k: usize, params: &Params) -> GradStore<f32> {
    let mut rng = StdRng::seed_from_u64(1000 + k as u64);
    let x = Tensor::<f32>::randn(&[2, 3], 0.0, 1.0, &mut rng).unwrap();
    let t = Tensor::<f32>::randn(&[2, 4], 0.0, 1.0, &mut rng).unwrap();
    let h = x.matmul(&params[0].1.value()).unwrap();
    let mut loss = h
        .add(&params[1].1.value())
        .unwrap()
        .tanh()
        .mul(&t)
        .unwrap()
        .sum_all();
    if k >= LATE {
        let l = params[2].1.value();
        loss = loss.add(&l.mul(&l).unwrap().sum_all()).unwrap();
    }
    loss.backward().unwrap()
}

fn bits(params: &Params) -> Vec<Vec<u32>> {
    params
        .iter()
        .map(|(_, p)| p.to_vec().iter().map(|x| x.to_bits()).collect())
        .collect()
}

/// Stores an OptimState as safetensors bytes and reads it back (what a checkpoint does).
fn through_safetensors(st: &OptimState<f32>) -> OptimState<f32> {
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors
        .iter()
        .map(|(k, t)| {
            let bytes = t.to_vec().iter().flat_map(|x| x.to_le_bytes()).collect();
            (k.clone(), t.shape().to_vec(), bytes)
        })
        .collect();
    let views = raw.iter().map(|(k, s, b)| {
        (
            k.as_str(),
            safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
        )
    });
    let meta: HashMap<String, String> = st.metadata.clone().into_iter().collect();
    let bytes = safetensors::serialize(views, Some(meta)).unwrap();

    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let mut out = OptimState::new();
    out.metadata = header.metadata().clone().unwrap().into_iter().collect();
    for (k, v) in SafeTensors::deserialize(&bytes).unwrap().tensors() {
        let data = v
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        out.tensors
            .insert(k, Tensor::from_vec(data, v.shape()).unwrap());
    }
    out
}

type Factory = fn(Params, f64) -> Box<dyn Optimizer<f32>>;

fn factories() -> Vec<(&'static str, Factory)> {
    vec![
        ("sgd nesterov wd", |p, lr| {
            let cfg = SgdConfig::new(lr)
                .momentum(0.9)
                .nesterov(true)
                .weight_decay(1e-2);
            Box::new(Sgd::new(p, cfg).unwrap())
        }),
        ("sgd momentum dampening", |p, lr| {
            Box::new(Sgd::new(p, SgdConfig::new(lr).momentum(0.8).dampening(0.3)).unwrap())
        }),
        ("adam amsgrad wd", |p, lr| {
            let cfg = AdamConfig::default()
                .lr(lr)
                .amsgrad(true)
                .weight_decay(1e-2);
            Box::new(Adam::new(p, cfg).unwrap())
        }),
        ("adamw", |p, lr| {
            Box::new(AdamW::new(p, AdamWConfig::default().lr(lr)).unwrap())
        }),
        ("rmsprop centered momentum", |p, lr| {
            let cfg = RmsPropConfig::default().lr(lr).centered(true).momentum(0.9);
            Box::new(RmsProp::new(p, cfg).unwrap())
        }),
        ("adagrad", |p, lr| {
            let cfg = AdagradConfig::default()
                .lr(lr)
                .lr_decay(0.1)
                .initial_accumulator_value(0.1);
            Box::new(Adagrad::new(p, cfg).unwrap())
        }),
    ]
}

/// Steps `from..to` with the lr of a step schedule (gamma 0.5 every 3 epochs) applied first.
fn train(
    opt: &mut dyn Optimizer<f32>,
    sched: &mut StepLr,
    params: &Params,
    from: usize,
    to: usize,
) {
    for k in from..to {
        opt.set_lr(sched.lr()).unwrap();
        opt.step(&grads_at(k, params)).unwrap();
        sched.step();
    }
}

#[test]
fn resume_from_state_dict_is_bitwise_identical() {
    for (name, make) in factories() {
        // Uninterrupted N + M steps.
        let full = init_params();
        let mut opt = make(full.clone(), 0.05);
        let mut sched = StepLr::new(0.05, 3, 0.5).unwrap();
        train(opt.as_mut(), &mut sched, &full, 0, N + M);

        // N steps, checkpoint.
        let first = init_params();
        let mut opt1 = make(first.clone(), 0.05);
        let mut sched1 = StepLr::new(0.05, 3, 0.5).unwrap();
        train(opt1.as_mut(), &mut sched1, &first, 0, N);
        let saved = through_safetensors(&opt1.state_dict());
        let saved_sched = sched1.state_dict();
        assert!(
            !saved.tensors.keys().any(|k| k.starts_with("state.late.")),
            "{name}"
        );

        // Fresh process: new parameters from the checkpointed values, a new optimizer built
        // with a different lr (the state's lr must win), a new scheduler.
        let second = reload(&first);
        let mut opt2 = make(second.clone(), 123.0);
        opt2.load_state_dict(&saved).unwrap();
        assert_eq!(opt2.lr(), opt1.lr(), "{name}: lr comes back from the state");
        let mut sched2 = StepLr::new(0.05, 3, 0.5).unwrap();
        sched2.load_state_dict(&saved_sched).unwrap();
        let before = bits(&second);
        train(opt2.as_mut(), &mut sched2, &second, N, N + M);

        assert_ne!(
            bits(&second),
            before,
            "{name}: the resumed steps must move the parameters"
        );
        assert_eq!(
            bits(&second),
            bits(&full),
            "{name}: resumed run differs from uninterrupted"
        );

        // Control: resuming without the optimizer state gives different bits, so the state is
        // what made the runs agree.
        let third = reload(&first);
        let mut opt3 = make(third.clone(), 0.05);
        let mut sched3 = StepLr::new(0.05, 3, 0.5).unwrap();
        sched3.load_state_dict(&saved_sched).unwrap();
        train(opt3.as_mut(), &mut sched3, &third, N, N + M);
        assert_ne!(bits(&third), bits(&full), "{name}: control should differ");
    }
}

#[test]
fn state_dict_round_trip_reproduces_the_state_exactly() {
    for (name, make) in factories() {
        let p = init_params();
        let mut opt = make(p.clone(), 0.05);
        for k in 0..LATE + 1 {
            opt.step(&grads_at(k, &p)).unwrap();
        }
        let st = opt.state_dict();
        let mut other = make(reload(&p), 1.0);
        other.load_state_dict(&through_safetensors(&st)).unwrap();
        let again = other.state_dict();
        assert_eq!(st.metadata, again.metadata, "{name}");
        assert_eq!(
            st.tensors.keys().collect::<Vec<_>>(),
            again.tensors.keys().collect::<Vec<_>>(),
            "{name}"
        );
        for (k, t) in &st.tensors {
            let a: Vec<u32> = t.to_vec().iter().map(|x| x.to_bits()).collect();
            let b: Vec<u32> = again.tensors[k]
                .to_vec()
                .iter()
                .map(|x| x.to_bits())
                .collect();
            assert_eq!(a, b, "{name}: {k}");
        }
        let late = st
            .tensors
            .keys()
            .filter(|k| k.starts_with("state.late."))
            .count();
        assert!(
            late >= 1,
            "{name}: `late` got a gradient at step {LATE} so it has state"
        );
    }
}
