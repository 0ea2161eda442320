//! Each optimizer steps a one-element parameter through a fixed gradient sequence; the expected
//! values are worked out by hand from the update formulas (arithmetic in the comments) and
//! compared to 1e-12 relative in f64.

mod common;

use common::store;
use retrograd_core::{Parameter, Tensor};
use retrograd_optim::*;

fn scalar_param(v: f64) -> Parameter<f64> {
    Parameter::new(Tensor::from_vec(vec![v], &[1]).unwrap())
}

/// Steps `opt` with each gradient in turn and returns the parameter value after each step.
fn run(opt: &mut dyn Optimizer<f64>, w: &Parameter<f64>, grads: &[f64]) -> Vec<f64> {
    grads
        .iter()
        .map(|&g| {
            let t = Tensor::from_vec(vec![g], &[1]).unwrap();
            opt.step(&store(&[w], &[t])).unwrap();
            w.to_vec()[0]
        })
        .collect()
}

fn check(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-12 * w.abs().max(1e-300),
            "{what}: after step {}: got {g:.17}, want {w:.17}",
            k + 1
        );
    }
}

fn named(w: &Parameter<f64>) -> [(String, Parameter<f64>); 1] {
    [("w".to_string(), w.clone())]
}

#[test]
fn sgd_plain() {
    // w = 1, lr 0.1: w -= 0.1 g for g = 1, 2, -1  ->  0.9, 0.7, 0.8
    let w = scalar_param(1.0);
    let mut opt = Sgd::new(named(&w), SgdConfig::new(0.1)).unwrap();
    check(
        "sgd",
        &run(&mut opt, &w, &[1.0, 2.0, -1.0]),
        &[0.9, 0.7, 0.8],
    );
}

#[test]
fn sgd_momentum_dampening_weight_decay() {
    // lr 0.1, mu 0.9, dampening 0.1, wd 0.1, w = 1, g = 0.5, -1, 0.3
    // 1: d = 0.5 + 0.1*1 = 0.6; b = d = 0.6 (first step: no dampening); w = 1 - 0.06 = 0.94
    // 2: d = -1 + 0.094 = -0.906; b = 0.9*0.6 + 0.9*(-0.906) = -0.2754; w = 0.94 + 0.02754
    // 3: d = 0.3 + 0.096754 = 0.396754; b = 0.9*(-0.2754) + 0.9*0.396754 = 0.1092186;
    //    w = 0.96754 - 0.01092186 = 0.95661814
    let w = scalar_param(1.0);
    let cfg = SgdConfig::new(0.1)
        .momentum(0.9)
        .dampening(0.1)
        .weight_decay(0.1);
    let mut opt = Sgd::new(named(&w), cfg).unwrap();
    check(
        "sgd momentum",
        &run(&mut opt, &w, &[0.5, -1.0, 0.3]),
        &[0.94, 0.96754, 0.95661814],
    );
}

#[test]
fn sgd_nesterov() {
    // lr 0.1, mu 0.9, w = 1, g = 1, 2, -1; direction = g + mu*b
    // 1: b = 1;              dir = 1 + 0.9 = 1.9;        w = 1 - 0.19 = 0.81
    // 2: b = 0.9 + 2 = 2.9;  dir = 2 + 2.61 = 4.61;      w = 0.81 - 0.461 = 0.349
    // 3: b = 2.61 - 1 = 1.61; dir = -1 + 1.449 = 0.449;  w = 0.349 - 0.0449 = 0.3041
    let w = scalar_param(1.0);
    let cfg = SgdConfig::new(0.1).momentum(0.9).nesterov(true);
    let mut opt = Sgd::new(named(&w), cfg).unwrap();
    check(
        "sgd nesterov",
        &run(&mut opt, &w, &[1.0, 2.0, -1.0]),
        &[0.81, 0.349, 0.3041],
    );
}

#[test]
fn adam_three_steps() {
    // lr 0.1, betas (0.9, 0.999), eps 1e-8, w = 1, g = 1, -1, 2
    // 1: m = 0.1, v = 0.001; bc1 = 0.1, bc2 = 0.001
    //    w1 = 1 - (0.1/0.1) * 0.1 / (sqrt(0.001)/sqrt(0.001) + 1e-8)
    // 2: m = 0.09 - 0.1 = -0.01, v = 0.000999 + 0.001 = 0.001999; bc1 = 0.19, bc2 = 0.001999
    //    w2 = w1 - (0.1/0.19) * (-0.01) / (1 + 1e-8)
    // 3: m = -0.009 + 0.2 = 0.191, v = 0.001997001 + 0.004 = 0.005997001;
    //    bc1 = 0.271, bc2 = 1 - 0.999^3 = 0.002997001
    //    w3 = w2 - (0.1/0.271) * 0.191 / (sqrt(0.005997001)/sqrt(0.002997001) + 1e-8)
    let w1 = 1.0 - (0.1 / 0.1) * 0.1 / (1.0 + 1e-8);
    let w2 = w1 - (0.1 / 0.19) * (-0.01) / (1.0 + 1e-8);
    let w3 = w2 - (0.1 / 0.271) * 0.191 / (0.005997001f64.sqrt() / 0.002997001f64.sqrt() + 1e-8);
    let w = scalar_param(1.0);
    let mut opt = Adam::new(named(&w), AdamConfig::default().lr(0.1)).unwrap();
    check("adam", &run(&mut opt, &w, &[1.0, -1.0, 2.0]), &[w1, w2, w3]);
}

#[test]
fn adam_amsgrad_uses_the_running_max() {
    // g = 2, 0: v1 = 0.001*4 = 0.004, v2 = 0.999*0.004 = 0.003996 < v1, so AMSGrad uses 0.004.
    // 1: m = 0.2; w1 = 1 - (0.1/0.1) * 0.2 / (sqrt(0.004)/sqrt(0.001) + 1e-8) = 1 - 0.2/(2+1e-8)
    // 2: m = 0.18; w2 = w1 - (0.1/0.19) * 0.18 / (sqrt(vhat)/sqrt(0.001999) + 1e-8)
    let w1 = 1.0 - 0.2 / (2.0 + 1e-8);
    let step2 = |vhat: f64| (0.1 / 0.19) * 0.18 / (vhat.sqrt() / 0.001999f64.sqrt() + 1e-8);
    for (ams, vhat) in [(true, 0.004), (false, 0.003996)] {
        let w = scalar_param(1.0);
        let mut opt = Adam::new(named(&w), AdamConfig::default().lr(0.1).amsgrad(ams)).unwrap();
        let got = run(&mut opt, &w, &[2.0, 0.0]);
        check(
            &format!("adam amsgrad={ams}"),
            &got,
            &[w1, w1 - step2(vhat)],
        );
    }
}

#[test]
fn adam_l2_vs_adamw_decoupled() {
    // wd 0.1, lr 0.1, w = 1, g = 1, -1.
    // Adam (L2): d1 = 1 + 0.1 = 1.1; m = 0.11, v = 0.00121: m_hat/sqrt(v_hat) = 1
    //   w1 = 1 - 0.1 * 0.11/0.1 / (sqrt(0.00121)/sqrt(0.001) + 1e-8) = 1 - 0.11/(1.1 + 1e-8)
    let adam_w1 = 1.0 - 0.11 / (1.1 + 1e-8);
    // AdamW: w1 = 1 * (1 - 0.1*0.1) - 0.1 * 1/(1 + 1e-8) = 0.99 - 0.1/(1+1e-8)
    //   2: w2 = w1 * 0.99 - (0.1/0.19) * (-0.01)/(1 + 1e-8)    (m = -0.01 as in adam_three_steps)
    let adamw_w1 = 0.99 - 0.1 / (1.0 + 1e-8);
    let adamw_w2 = adamw_w1 * 0.99 + (0.1 / 0.19) * 0.01 / (1.0 + 1e-8);

    let w = scalar_param(1.0);
    let mut opt = Adam::new(named(&w), AdamConfig::default().lr(0.1).weight_decay(0.1)).unwrap();
    check("adam wd", &run(&mut opt, &w, &[1.0]), &[adam_w1]);

    let w = scalar_param(1.0);
    let cfg = AdamWConfig::default().lr(0.1).weight_decay(0.1);
    let mut opt = AdamW::new(named(&w), cfg).unwrap();
    check(
        "adamw",
        &run(&mut opt, &w, &[1.0, -1.0]),
        &[adamw_w1, adamw_w2],
    );
}

#[test]
fn rmsprop_plain_and_centered_momentum() {
    // lr 0.01, alpha 0.99, eps 1e-8, w = 1, g = 1, -2
    // plain: s1 = 0.01;  w1 = 1 - 0.01 * 1/(0.1 + 1e-8)
    //        s2 = 0.0099 + 0.04 = 0.0499;  w2 = w1 + 0.01 * 2/(sqrt(0.0499) + 1e-8)
    let p1 = 1.0 - 0.01 / (0.1 + 1e-8);
    let p2 = p1 + 0.02 / (0.0499f64.sqrt() + 1e-8);
    let w = scalar_param(1.0);
    let mut opt = RmsProp::new(named(&w), RmsPropConfig::default()).unwrap();
    check("rmsprop", &run(&mut opt, &w, &[1.0, -2.0]), &[p1, p2]);

    // centered, momentum 0.5:
    // 1: s = 0.01, a = 0.01 (lerp 0 -> 1 by 0.01); avg = sqrt(0.01 - 0.0001) + 1e-8
    //    b = 1/avg; w1 = 1 - 0.01 b
    // 2: s = 0.0499, a = 0.0099 - 0.02 = -0.0101; avg = sqrt(0.0499 - 0.00010201) + 1e-8
    //    b = 0.5 b1 - 2/avg; w2 = w1 - 0.01 b
    let b1 = 1.0 / (0.0099f64.sqrt() + 1e-8);
    let b2 = 0.5 * b1 - 2.0 / (0.04979799f64.sqrt() + 1e-8);
    let c1 = 1.0 - 0.01 * b1;
    let c2 = c1 - 0.01 * b2;
    let w = scalar_param(1.0);
    let cfg = RmsPropConfig::default().centered(true).momentum(0.5);
    let mut opt = RmsProp::new(named(&w), cfg).unwrap();
    check(
        "rmsprop centered momentum",
        &run(&mut opt, &w, &[1.0, -2.0]),
        &[c1, c2],
    );
}

#[test]
fn adagrad_lr_decay_and_initial_accumulator() {
    // lr 0.1, lr_decay 0.5, initial accumulator 0.1, wd 0.1, eps 1e-10, w = 1, g = 1, 2
    // 1: d = 1.1; sum = 0.1 + 1.21 = 1.31; clr = 0.1;           w1 = 1 - 0.1 * 1.1/(sqrt(1.31)+1e-10)
    // 2: d = 2 + 0.1 w1; sum = 1.31 + d^2; clr = 0.1/(1 + 0.5); w2 = w1 - clr * d/(sqrt(sum)+1e-10)
    let w1 = 1.0 - 0.1 * 1.1 / (1.31f64.sqrt() + 1e-10);
    let d2 = 2.0 + 0.1 * w1;
    let w2 = w1 - (0.1 / 1.5) * d2 / ((1.31 + d2 * d2).sqrt() + 1e-10);
    let w = scalar_param(1.0);
    let cfg = AdagradConfig::default()
        .lr(0.1)
        .lr_decay(0.5)
        .initial_accumulator_value(0.1)
        .weight_decay(0.1);
    let mut opt = Adagrad::new(named(&w), cfg).unwrap();
    check("adagrad", &run(&mut opt, &w, &[1.0, 2.0]), &[w1, w2]);
}

#[test]
fn parameters_without_gradient_are_skipped_and_count_their_own_steps() {
    // `b` gets no gradient on step 1: it must not move and its Adam step count stays 0, so on
    // step 2 it takes a first step (bias corrections of t = 1) while `a` takes its second.
    let a = scalar_param(1.0);
    let b = scalar_param(1.0);
    let params = [("a".to_string(), a.clone()), ("b".to_string(), b.clone())];
    let mut opt = Adam::new(params, AdamConfig::default().lr(0.1)).unwrap();
    let one = || Tensor::from_vec(vec![1.0], &[1]).unwrap();
    opt.step(&store(&[&a], &[one()])).unwrap();
    assert_eq!(b.to_vec(), vec![1.0]);
    let st = opt.state_dict();
    assert_eq!(st.metadata["state.a.step"], "1");
    assert!(!st.metadata.contains_key("state.b.step"));
    assert!(!st.tensors.contains_key("state.b.exp_avg"));
    opt.step(&store(&[&a, &b], &[one(), one()])).unwrap();
    // b: first Adam step with g = 1 moves by 0.1/(1 + 1e-8), exactly as a did on step 1.
    let first = 1.0 - 0.1 / (1.0 + 1e-8);
    check("b after its first step", &b.to_vec(), &[first]);
    let st = opt.state_dict();
    assert_eq!(
        (
            st.metadata["state.a.step"].as_str(),
            st.metadata["state.b.step"].as_str()
        ),
        ("2", "1")
    );
}

#[test]
fn lr_changes_take_effect_on_the_next_step() {
    let w = scalar_param(1.0);
    let mut opt = Sgd::new(named(&w), SgdConfig::new(0.1)).unwrap();
    run(&mut opt, &w, &[1.0]);
    opt.set_lr(0.01).unwrap();
    assert_eq!(opt.lr(), 0.01);
    check("sgd after set_lr", &run(&mut opt, &w, &[1.0]), &[0.89]);
}

#[test]
fn works_with_real_backward_on_f32() {
    // minimise (w - 3)^2 with Adam in f32: gradients from the tape, 300 steps of lr 0.1.
    let w = Parameter::new(Tensor::<f32>::zeros(&[2]));
    let mut opt = Adam::new(
        [("w".to_string(), w.clone())],
        AdamConfig::default().lr(0.1),
    )
    .unwrap();
    let target = Tensor::<f32>::full(&[2], 3.0);
    for _ in 0..300 {
        let diff = w.value().sub(&target).unwrap();
        let grads = diff.mul(&diff).unwrap().sum_all().backward().unwrap();
        opt.step(&grads).unwrap();
    }
    for x in w.to_vec() {
        assert!((x - 3.0).abs() < 1e-2, "Adam did not converge: {x}");
    }
}
