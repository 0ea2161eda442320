//! Thread safety: tensors, parameters, gradient stores, modules and optimizers are `Send + Sync`,
//! so two models train on two threads at once, and the results are bit-identical to training
//! the same two models one after the other. A model can also serve forward passes from several
//! threads at once.

use std::thread;

use rand::{rngs::StdRng, Rng, SeedableRng};
use retrograd::checkpoint::Checkpoint;
use retrograd::nn::rnn::{Gru, GruCell, Lstm, LstmCell, LstmState, Rnn, RnnCell};
use retrograd::nn::{CrossEntropyLoss, Dropout, Embedding, Linear, Module};
use retrograd::optim::{
    Adagrad, Adam, AdamConfig, AdamW, OptimState, Optimizer, ReduceLrOnPlateau, RmsProp, Sgd,
    StepLr,
};
use retrograd::text::{train_step, BpttBatcher, CellType, CharVocab, LmConfig, LmState, RnnLm};
use retrograd::{no_grad, GradStore, Parameter, Tensor};

fn assert_send_sync<T: Send + Sync>() {}

/// Compile-time assertions: this closure is type-checked with the crate, so a type losing
/// `Send` or `Sync` fails the build. (`Box<dyn Optimizer>` is not `Send`: the trait has no
/// `Send` bound; write `Box<dyn Optimizer<f32> + Send>` to move one between threads.)
const _: fn() = || {
    assert_send_sync::<Tensor<f32>>();
    assert_send_sync::<Tensor<f64>>();
    assert_send_sync::<Parameter<f32>>();
    assert_send_sync::<GradStore<f32>>();
    assert_send_sync::<Linear<f32>>();
    assert_send_sync::<Embedding<f32>>();
    assert_send_sync::<Dropout<f32>>();
    assert_send_sync::<Rnn<f32>>();
    assert_send_sync::<Lstm<f64>>();
    assert_send_sync::<Gru<f32>>();
    assert_send_sync::<RnnCell<f32>>();
    assert_send_sync::<LstmCell<f32>>();
    assert_send_sync::<GruCell<f32>>();
    assert_send_sync::<LstmState<f32>>();
    assert_send_sync::<CrossEntropyLoss>();
    assert_send_sync::<Sgd<f32>>();
    assert_send_sync::<Adam<f32>>();
    assert_send_sync::<AdamW<f32>>();
    assert_send_sync::<RmsProp<f32>>();
    assert_send_sync::<Adagrad<f32>>();
    assert_send_sync::<OptimState<f32>>();
    assert_send_sync::<StepLr>();
    assert_send_sync::<ReduceLrOnPlateau>();
    assert_send_sync::<RnnLm<f32>>();
    assert_send_sync::<LmState<f32>>();
    assert_send_sync::<BpttBatcher>();
    assert_send_sync::<CharVocab>();
    assert_send_sync::<Checkpoint<f32>>();
    assert_send_sync::<retrograd::Error>();
    assert_send_sync::<Box<dyn Optimizer<f32> + Send + Sync>>();
};

/// What a training run leaves behind: the losses and every parameter's bits.
#[derive(Debug, PartialEq)]
struct Outcome {
    losses: Vec<u64>,
    params: Vec<(String, Vec<u32>)>,
}

/// 20 truncated-BPTT steps of a 2-layer LSTM language model with dropout (so the modules' own
/// random streams are exercised) on a token stream drawn from `seed`.
fn train(seed: u64) -> Outcome {
    let mut rng = StdRng::seed_from_u64(seed);
    let cfg = LmConfig {
        num_layers: 2,
        dropout: 0.1,
        cell: CellType::Lstm,
        ..LmConfig::new(9, 5, 8)
    };
    let model = RnnLm::<f32>::new(cfg, &mut rng).unwrap();
    let tokens: Vec<usize> = (0..200).map(|_| rng.random_range(0..9)).collect();
    let mut batcher = BpttBatcher::new(tokens, 3, 6).unwrap();
    let mut opt = Adam::new(model.named_parameters(), AdamConfig::default().lr(0.01)).unwrap();
    let mut state = None;
    let mut losses = Vec::new();
    for _ in 0..20 {
        let batch = batcher.next_batch();
        let (loss, next) = train_step(&model, &mut opt, &batch, state.as_ref(), Some(5.0)).unwrap();
        losses.push(loss.to_bits());
        state = Some(next);
    }
    let params = model
        .named_parameters()
        .into_iter()
        .map(|(n, p)| (n, p.to_vec().iter().map(|v| v.to_bits()).collect()))
        .collect();
    Outcome { losses, params }
}

#[test]
fn two_models_train_on_two_threads_exactly_as_in_sequence() {
    let (seq_a, seq_b) = (train(1), train(2));
    let (par_a, par_b) = thread::scope(|s| {
        let a = s.spawn(|| train(1));
        let b = s.spawn(|| train(2));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(par_a, seq_a);
    assert_eq!(par_b, seq_b);
    assert_ne!(seq_a, seq_b, "different seeds train different models");
    let first = f64::from_bits(seq_a.losses[0]);
    let last = f64::from_bits(*seq_a.losses.last().unwrap());
    assert!(last < first, "training made progress: {first} -> {last}");
}

#[test]
fn one_model_serves_forward_passes_from_two_threads() {
    let mut rng = StdRng::seed_from_u64(5);
    let cfg = LmConfig {
        cell: CellType::Gru,
        ..LmConfig::new(9, 5, 8)
    };
    let mut model = RnnLm::<f32>::new(cfg, &mut rng).unwrap();
    model.eval();
    let ids: Vec<usize> = (0..12).map(|i| i % 9).collect();
    let run = |m: &RnnLm<f32>| {
        let _g = no_grad();
        let (logits, _) = m.forward(&ids, 4, 3, None).unwrap();
        logits
            .to_vec()
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
    };
    let alone = run(&model);
    let (x, y) = thread::scope(|s| {
        let x = s.spawn(|| run(&model));
        let y = s.spawn(|| run(&model));
        (x.join().unwrap(), y.join().unwrap())
    });
    assert_eq!(x, alone);
    assert_eq!(y, alone);
}

#[test]
fn an_optimizer_moves_to_another_thread_mid_training() {
    // Build and step once here, finish on another thread: same result as staying here.
    let run = |hop: bool| {
        let p = Parameter::new(Tensor::<f64>::from_vec(vec![1.0, -2.0], &[2]).unwrap());
        let mut opt = Adam::new([("p".to_string(), p.clone())], AdamConfig::default()).unwrap();
        let step = move |opt: &mut Adam<f64>, p: &Parameter<f64>| {
            let v = p.value();
            opt.step(&v.mul(&v).unwrap().sum_all().backward().unwrap())
                .unwrap();
        };
        step(&mut opt, &p);
        let (opt, p) = if hop {
            thread::spawn(move || {
                step(&mut opt, &p);
                (opt, p)
            })
            .join()
            .unwrap()
        } else {
            step(&mut opt, &p);
            (opt, p)
        };
        (p.to_vec(), opt.state_dict().tensors.len())
    };
    assert_eq!(run(true), run(false));
}
