//! Gradient clipping and learning-rate schedules checked against values worked out by hand.

mod common;

use common::store;
use retrograd_core::{Parameter, Tensor};
use retrograd_optim::*;

/// Gradients a = [3, 4] (L2 norm 5, max 4, L1 7) and b = [12] (norm 12).
fn setup() -> (
    Parameter<f64>,
    Parameter<f64>,
    retrograd_core::GradStore<f64>,
) {
    let a = Parameter::new(Tensor::<f64>::zeros(&[2]));
    let b = Parameter::new(Tensor::<f64>::zeros(&[1]));
    let g = store(
        &[&a, &b],
        &[
            Tensor::from_vec(vec![3.0, 4.0], &[2]).unwrap(),
            Tensor::from_vec(vec![12.0], &[1]).unwrap(),
        ],
    );
    (a, b, g)
}

fn grad(g: &retrograd_core::GradStore<f64>, p: &Parameter<f64>) -> Vec<f64> {
    g.get_id(p.id()).unwrap().to_vec()
}

#[test]
fn clip_l2_by_hand() {
    // total = sqrt(5^2 + 12^2) = 13; coefficient 6.5 / (13 + 1e-6)
    let (a, b, mut g) = setup();
    let total = clip_grad_norm(&mut g, [&a, &b], 6.5, NormType::L2, true).unwrap();
    assert_eq!(total, 13.0);
    let c = 6.5 / (13.0 + 1e-6);
    assert_eq!(grad(&g, &a), vec![3.0 * c, 4.0 * c]);
    assert_eq!(grad(&g, &b), vec![12.0 * c]);
    // The clipped total is max_norm up to the 1e-6: 13 c = 6.5 * 13 / 13.000001.
    let after = clip_grad_norm(&mut g, [&a, &b], 1e9, NormType::L2, true).unwrap();
    assert!((after - 6.5).abs() < 1e-6, "{after}");
}

#[test]
fn clip_scales_a_sole_gradient_in_its_buffer_and_leaves_a_held_copy_alone() {
    let (a, b, mut g) = setup();
    let held = g.get_id(b.id()).unwrap().clone(); // the caller keeps b's gradient
    let a_buffer = g.get_id(a.id()).unwrap().storage().as_ptr();
    clip_grad_norm(&mut g, [&a, &b], 6.5, NormType::L2, true).unwrap();
    let c = 6.5 / (13.0 + 1e-6);
    assert_eq!(g.get_id(a.id()).unwrap().storage().as_ptr(), a_buffer);
    assert_eq!(grad(&g, &a), vec![3.0 * c, 4.0 * c]);
    assert_eq!(grad(&g, &b), vec![12.0 * c]);
    assert_eq!(held.to_vec(), vec![12.0]);
}

#[test]
fn clip_inf_and_p_norms_by_hand() {
    // inf: total = max(4, 12) = 12; coefficient 6 / (12 + 1e-6)
    let (a, b, mut g) = setup();
    let total = clip_grad_norm(&mut g, [&a, &b], 6.0, NormType::Inf, false).unwrap();
    assert_eq!(total, 12.0);
    assert_eq!(grad(&g, &b), vec![12.0 * (6.0 / (12.0 + 1e-6))]);
    // p = 1: per-parameter norms 7 and 12, total 19; P(inf) is the inf norm.
    let (a, b, mut g) = setup();
    assert_eq!(
        clip_grad_norm(&mut g, [&a, &b], 100.0, NormType::P(1.0), false).unwrap(),
        19.0
    );
    assert_eq!(
        clip_grad_norm(&mut g, [&a, &b], 100.0, NormType::P(f64::INFINITY), false).unwrap(),
        12.0
    );
    // p = 2 through P gives the L2 total.
    assert!(
        (clip_grad_norm(&mut g, [&a, &b], 100.0, NormType::P(2.0), false).unwrap() - 13.0).abs()
            < 1e-12
    );
}

#[test]
fn clip_under_threshold_changes_nothing() {
    let (a, b, mut g) = setup();
    let total = clip_grad_norm(&mut g, [&a, &b], 13.5, NormType::L2, true).unwrap();
    assert_eq!(total, 13.0);
    assert_eq!(grad(&g, &a), vec![3.0, 4.0]);
    assert_eq!(grad(&g, &b), vec![12.0]);
    // Exactly at the threshold: 13 / (13 + 1e-6) < 1, so PyTorch scales (by a hair) too.
    clip_grad_norm(&mut g, [&a, &b], 13.0, NormType::L2, true).unwrap();
    assert!(grad(&g, &b)[0] < 12.0);
}

#[test]
fn clip_only_touches_the_listed_parameters_once_each() {
    let (a, b, mut g) = setup();
    // Only `a` listed (twice): total 5, b untouched.
    let total = clip_grad_norm(&mut g, [&a, &a], 1.0, NormType::L2, false).unwrap();
    assert_eq!(total, 5.0);
    let c = 1.0 / (5.0 + 1e-6);
    assert_eq!(grad(&g, &a), vec![3.0 * c, 4.0 * c]);
    assert_eq!(grad(&g, &b), vec![12.0]);
    // A parameter without a gradient is skipped; none at all gives norm 0.
    let lonely = Parameter::new(Tensor::<f64>::zeros(&[3]));
    assert_eq!(
        clip_grad_norm(&mut g, [&lonely], 1.0, NormType::L2, true).unwrap(),
        0.0
    );
}

#[test]
fn clip_nonfinite_without_error_scales_like_pytorch() {
    let w = Parameter::new(Tensor::<f32>::zeros(&[2]));
    let mut g = store(
        &[&w],
        &[Tensor::from_vec(vec![f32::INFINITY, 1.0], &[2]).unwrap()],
    );
    let total = clip_grad_norm(&mut g, [&w], 1.0, NormType::L2, false).unwrap();
    assert_eq!(total, f64::INFINITY);
    // coefficient 1 / inf = 0: inf * 0 = NaN, 1 * 0 = 0
    let v = g.get_id(w.id()).unwrap().to_vec();
    assert!(v[0].is_nan() && v[1] == 0.0, "{v:?}");
}

#[test]
fn clip_by_value() {
    let (a, b, mut g) = setup();
    clip_grad_value(&mut g, [&a], 3.5).unwrap();
    assert_eq!(grad(&g, &a), vec![3.0, 3.5]);
    assert_eq!(grad(&g, &b), vec![12.0]);
    clip_grad_value(&mut g, [&a, &b], 0.0).unwrap();
    assert_eq!(grad(&g, &b), vec![0.0]);
}

fn lrs(s: &mut dyn LrScheduler, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let lr = s.lr();
            s.step();
            lr
        })
        .collect()
}

#[test]
fn cosine_recurrence_follows_the_closed_form_past_t_max() {
    // eta_min + (base - eta_min)(1 + cos(pi e / T)) / 2, through three half periods.
    let (base, t, eta) = (0.5, 6u64, 0.01);
    let mut s = CosineAnnealingLr::new(base, t, eta).unwrap();
    for (e, lr) in lrs(&mut s, 20).into_iter().enumerate() {
        let closed =
            eta + (base - eta) * (1.0 + (std::f64::consts::PI * e as f64 / t as f64).cos()) / 2.0;
        assert!((lr - closed).abs() < 1e-13, "epoch {e}: {lr} vs {closed}");
    }
}

#[test]
fn step_exponential_and_linear_by_hand() {
    assert_eq!(
        lrs(&mut StepLr::new(1.0, 2, 0.1).unwrap(), 5),
        vec![1.0, 1.0, 0.1, 0.1, 0.1 * 0.1]
    );
    assert_eq!(
        lrs(&mut ExponentialLr::new(2.0, 0.5).unwrap(), 4),
        vec![2.0, 1.0, 0.5, 0.25]
    );
    // Decay from factor 1 to 0.5 over 2 epochs: 1 * (1 + (-0.5)/(2*1 + 0)) = 0.75, then
    // 0.75 * (1 + (-0.5)/(2 - 0.5)) = 0.5, then constant.
    assert_eq!(
        lrs(&mut LinearLr::new(1.0, 1.0, 0.5, 2).unwrap(), 4),
        vec![1.0, 0.75, 0.5, 0.5]
    );
}

#[test]
fn plateau_modes_thresholds_cooldown_and_min_lr() {
    // mode max, absolute threshold 0.1, patience 1, cooldown 1, min_lr 0.3, factor 0.5
    let cfg = PlateauConfig {
        mode: PlateauMode::Max,
        factor: 0.5,
        patience: 1,
        threshold: 0.1,
        threshold_mode: ThresholdMode::Abs,
        cooldown: 1,
        min_lr: 0.3,
        ..PlateauConfig::default()
    };
    let mut s = ReduceLrOnPlateau::new(1.0, cfg).unwrap();
    let metrics = [0.5, 0.55, 0.58, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9];
    let reduced: Vec<bool> = metrics.iter().map(|&m| s.step_with(m)).collect();
    // 0.5 best; 0.55 (< 0.5 + 0.1) bad 1; 0.58 bad 2 > patience -> lr 0.5, cooldown 1;
    // 0.9 improves (best 0.9), cooldown resets the count; 0.9 bad 1; 0.9 bad 2 -> 0.3 (min_lr
    // clamps 0.25); 0.9 cooldown; 0.9 bad 1; 0.9 bad 2 -> max(0.15, 0.3) = 0.3: no change
    // (reported as not reduced), cooldown again; then a cooldown epoch.
    assert_eq!(
        reduced,
        vec![false, false, true, false, false, true, false, false, false, false]
    );
    assert_eq!(s.lr(), 0.3);
    assert_eq!(s.best(), 0.9);
    assert_eq!(s.epoch(), 10);

    // NaN never improves.
    let mut s = ReduceLrOnPlateau::new(1.0, PlateauConfig::divide_by_4_when_worse()).unwrap();
    assert!(!s.step_with(1.0));
    assert!(s.step_with(f64::NAN));
    assert_eq!(s.lr(), 0.25);
}

#[test]
fn scheduler_state_round_trip_continues_identically() {
    let mut a = CosineAnnealingLr::new(0.1, 10, 0.001).unwrap();
    for _ in 0..4 {
        a.step();
    }
    let mut b = CosineAnnealingLr::new(0.1, 10, 0.001).unwrap();
    b.load_state_dict(&a.state_dict()).unwrap();
    assert_eq!(b.epoch(), 4);
    let (la, lb) = (lrs(&mut a, 10), lrs(&mut b, 10));
    assert_eq!(
        la.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        lb.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );
}
