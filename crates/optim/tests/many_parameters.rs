//! Optimizer steps and gradient clipping over parameter sets large enough to be spread over
//! two threads (more than 65,536 elements in all) give the bits of the same work done one
//! parameter at a time, where each set is small and runs on the calling thread.

mod common;

use common::store;
use rand::{rngs::StdRng, Rng, SeedableRng};
use retrograd_core::{Parameter, Tensor};
use retrograd_optim::*;

/// Sizes that deal unevenly over two sides, the largest first and a one-element bias last.
const SIZES: [usize; 6] = [40_000, 25_000, 12_000, 7_001, 300, 1];

fn random(n: usize, rng: &mut StdRng) -> Tensor<f32> {
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(v, &[n]).unwrap()
}

/// The parameters (fresh copies of the same values each call) and three steps of gradients.
fn setup() -> (Vec<Parameter<f32>>, Vec<Vec<Tensor<f32>>>) {
    let mut rng = StdRng::seed_from_u64(11);
    let params = SIZES
        .iter()
        .map(|&n| Parameter::new(random(n, &mut rng)))
        .collect();
    let grads = (0..3)
        .map(|_| SIZES.iter().map(|&n| random(n, &mut rng)).collect())
        .collect();
    (params, grads)
}

/// Three steps of the optimizer `make` builds, over all parameters at once and over each
/// parameter with its own optimizer; both must leave the same bits.
fn same_as_one_at_a_time<O: Optimizer<f32>>(make: impl Fn(Vec<(String, Parameter<f32>)>) -> O) {
    let named = |ps: &[Parameter<f32>]| -> Vec<(String, Parameter<f32>)> {
        ps.iter()
            .enumerate()
            .map(|(i, p)| (format!("p{i}"), p.clone()))
            .collect()
    };
    let (together, grads) = setup();
    let mut opt = make(named(&together));
    for step in &grads {
        let refs: Vec<&Parameter<f32>> = together.iter().collect();
        opt.step(&store(&refs, step)).unwrap();
    }
    let (apart, _) = setup();
    for (i, p) in apart.iter().enumerate() {
        let mut opt = make(named(std::slice::from_ref(p)));
        for step in &grads {
            opt.step(&store(&[p], std::slice::from_ref(&step[i])))
                .unwrap();
        }
    }
    for (i, (a, b)) in together.iter().zip(&apart).enumerate() {
        assert_eq!(
            a.to_vec(),
            b.to_vec(),
            "parameter {i} ({} elements)",
            SIZES[i]
        );
    }
    // and the step did something
    let (fresh, _) = setup();
    assert_ne!(together[0].to_vec(), fresh[0].to_vec());
}

#[test]
fn sgd_with_momentum_over_many_parameters() {
    same_as_one_at_a_time(|ps| {
        Sgd::new(ps, SgdConfig::new(0.1).momentum(0.9).nesterov(true)).unwrap()
    });
}

#[test]
fn adam_over_many_parameters() {
    same_as_one_at_a_time(|ps| Adam::new(ps, AdamConfig::default().lr(1e-2)).unwrap());
}

#[test]
fn clipping_many_parameters_scales_every_gradient_once() {
    let (params, grads) = setup();
    let refs: Vec<&Parameter<f32>> = params.iter().collect();
    let mut g = store(&refs, &grads[0]);
    let total = clip_grad_norm(&mut g, refs.iter().copied(), 1.0, NormType::L2, true).unwrap();
    // the total against a plain f64 sum over all elements
    let want: f64 = grads[0]
        .iter()
        .flat_map(|t| t.to_vec())
        .map(|x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    assert!((total - want).abs() < 1e-9 * want, "{total} vs {want}");
    // every gradient scaled by the same coefficient, exactly once
    let coef = 1.0f32 / (total as f32 + 1e-6f32);
    assert!(coef < 1.0);
    for (p, raw) in params.iter().zip(&grads[0]) {
        let scaled: Vec<f32> = raw.to_vec().iter().map(|&x| x * coef).collect();
        assert_eq!(g.get_id(p.id()).unwrap().to_vec(), scaled);
    }
}

#[test]
fn a_parameter_with_most_of_the_work_is_updated_in_shared_pieces_with_the_values_of_one_pass() {
    // plain SGD keeps no state, so a parameter holding most of a step's values (300,001 of
    // 305,004 here) is cut into pieces that both threads take; every value must still be
    // `w - lr g` exactly once (a piece left out or run twice shows), as one loop computes it
    let mut rng = StdRng::seed_from_u64(12);
    let sizes = [5_000, 300_001, 3];
    let values: Vec<Tensor<f32>> = sizes.iter().map(|&n| random(n, &mut rng)).collect();
    let grads: Vec<Tensor<f32>> = sizes.iter().map(|&n| random(n, &mut rng)).collect();
    let params: Vec<Parameter<f32>> = values.iter().map(|v| Parameter::new(v.clone())).collect();
    let named: Vec<(String, Parameter<f32>)> = params
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("p{i}"), p.clone()))
        .collect();
    let lr = 0.37f32;
    let mut opt = Sgd::new(named, SgdConfig::new(f64::from(lr))).unwrap();
    let refs: Vec<&Parameter<f32>> = params.iter().collect();
    opt.step(&store(&refs, &grads)).unwrap();
    for (i, ((p, v), g)) in params.iter().zip(&values).zip(&grads).enumerate() {
        let want: Vec<f32> = v
            .to_vec()
            .iter()
            .zip(g.to_vec())
            .map(|(&w, g)| w + (-lr) * g)
            .collect();
        assert!(p.to_vec() == want, "parameter {i} ({} values)", sizes[i]);
    }
}
