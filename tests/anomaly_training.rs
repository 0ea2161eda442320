//! Anomaly detection in a real training step (like `torch.autograd.detect_anomaly`): with a NaN
//! injected into an LSTM weight, the first op whose output is not finite is reported by name
//! with its input shapes, backward fails naming an op, and the text training helper refuses to
//! update anything on a non-finite loss.

use rand::{rngs::StdRng, SeedableRng};
use retrograd::core::{detect_anomaly, forward_anomaly};
use retrograd::nn::rnn::{Lstm, RnnConfig};
use retrograd::nn::{Linear, Module};
use retrograd::optim::{Adam, AdamConfig, Optimizer};
use retrograd::text::{train_step, BpttBatcher, LmConfig, RnnLm};
use retrograd::{Error, Parameter, Tensor};

/// LSTM(3 → 4) + Linear(4 → 5), sequence 6 x batch 2.
struct Net {
    lstm: Lstm<f32>,
    fc: Linear<f32>,
}

impl Net {
    fn new() -> Self {
        let mut rng = StdRng::seed_from_u64(3);
        Net {
            lstm: Lstm::new(RnnConfig::new(3, 4), &mut rng).unwrap(),
            fc: Linear::new(4, 5, true, &mut rng).unwrap(),
        }
    }

    fn param(&self, name: &str) -> Parameter<f32> {
        let all = self.lstm.named_parameters();
        all.into_iter().find(|(n, _)| n == name).unwrap().1
    }

    fn loss(&self, x: &Tensor<f32>) -> retrograd::Result<Tensor<f32>> {
        let (out, _) = self.lstm.forward(x, None)?;
        let logits = self.fc.forward(&out.reshape(&[12, 4])?)?;
        logits.cross_entropy(&[0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1])
    }
}

fn input() -> Tensor<f32> {
    Tensor::rand_uniform(&[6, 2, 3], -1.0, 1.0, &mut StdRng::seed_from_u64(4)).unwrap()
}

fn poison(p: &Parameter<f32>, i: usize) {
    p.update(|w| w[i] = f32::NAN).unwrap();
}

#[test]
fn a_clean_step_reports_no_anomaly() {
    let net = Net::new();
    let _on = detect_anomaly(true);
    let loss = net.loss(&input()).unwrap();
    assert!(forward_anomaly().is_none());
    assert!(loss.item().unwrap().is_finite());
    assert!(loss.backward().is_ok());
}

#[test]
fn nan_in_a_recurrent_weight_is_reported_at_the_first_op_that_reads_it() {
    let net = Net::new();
    poison(&net.param("weight_hh_l0"), 5);
    let _on = detect_anomaly(true);
    let loss = net.loss(&input()).unwrap();
    assert!(loss.item().unwrap().is_nan());
    // weight_hh_l0 is [16, 4]; the first recorded op reading it is its transpose (a permute
    // view), before any step's matmul.
    let report = forward_anomaly().expect("a NaN weight makes a non-finite output");
    println!("forward: {report}");
    assert!(report.contains("permute"), "{report}");
    assert!(report.contains("[16, 4]"), "{report}");
    match loss.backward() {
        Err(Error::NonFinite(m)) => {
            println!("backward: {m}");
            assert!(m.contains("backward of") && m.contains("inputs ["), "{m}");
        }
        other => panic!("expected a NonFinite backward error, got {other:?}"),
    }
}

#[test]
fn nan_in_the_input_data_names_the_input_projection_and_its_shapes() {
    let net = Net::new();
    // Weights enter through views; with the NaN in the data, the first op computing a
    // non-finite value is the input projection: bias row [16] + x [12, 3] @ W_ih^T [3, 16].
    let mut x = input().to_vec();
    x[7] = f32::NAN;
    let x = Tensor::from_vec(x, &[6, 2, 3]).unwrap();
    let _on = detect_anomaly(true);
    let loss = net.loss(&x).unwrap();
    let report = forward_anomaly().expect("a NaN input makes a non-finite output");
    println!("forward: {report}");
    assert!(report.contains("addmm"), "{report}");
    assert!(report.contains("[16], [12, 3], [3, 16]"), "{report}");
    assert!(loss.backward().is_err());
}

#[test]
fn without_detection_the_same_nan_goes_unreported() {
    let net = Net::new();
    poison(&net.param("weight_ih_l0"), 0);
    let loss = net.loss(&input()).unwrap();
    assert!(forward_anomaly().is_none(), "detection is off");
    assert!(loss.item().unwrap().is_nan());
    assert!(loss.backward().is_ok(), "NaN gradients flow silently");
}

fn lm() -> (RnnLm<f32>, BpttBatcher) {
    let mut rng = StdRng::seed_from_u64(8);
    let model = RnnLm::new(LmConfig::new(7, 4, 6), &mut rng).unwrap();
    let tokens: Vec<usize> = (0..40).map(|i| (i * 3 + i / 5) % 7).collect();
    (model, BpttBatcher::new(tokens, 2, 5).unwrap())
}

fn bits(m: &RnnLm<f32>) -> Vec<Vec<u32>> {
    m.parameters()
        .iter()
        .map(|p| p.to_vec().iter().map(|v| v.to_bits()).collect())
        .collect()
}

#[test]
fn train_step_refuses_to_update_on_a_non_finite_loss() {
    let (model, mut batcher) = lm();
    let mut opt = Adam::new(model.named_parameters(), AdamConfig::default()).unwrap();
    let w = model
        .named_parameters()
        .into_iter()
        .find(|(n, _)| n == "rnn.weight_hh_l0")
        .unwrap()
        .1;
    let clean = w.value_detached();
    poison(&w, 3);
    let before = bits(&model);
    let batch = batcher.next_batch();
    match train_step(&model, &mut opt, &batch, None, Some(5.0)) {
        Err(Error::NonFinite(m)) => assert!(m.contains("left unchanged"), "{m}"),
        other => panic!("expected NonFinite, got {:?}", other.map(|r| r.0)),
    }
    assert_eq!(bits(&model), before, "no parameter changed");
    assert!(
        !opt.state_dict()
            .metadata
            .keys()
            .any(|k| k.starts_with("state.")),
        "the optimizer took no step"
    );
    // Control: with the weight repaired the same step trains.
    w.set(&clean).unwrap();
    let (loss, state) = train_step(&model, &mut opt, &batch, None, Some(5.0)).unwrap();
    assert!(loss.is_finite() && state.is_finite());
    assert_ne!(bits(&model), before);
}
