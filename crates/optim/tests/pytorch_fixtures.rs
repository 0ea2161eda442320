//! Parity with PyTorch: the optimizer trajectories, clipping results and scheduler learning
//! rates in `tests/fixtures/ref` (kind = optim / clip / sched), computed here in f64 and compared
//! to a relative tolerance of 1e-12 (`common::REL_TOL`). Every failure names the fixture file.

mod common;

use common::{assert_close, flag, num, store, Fixture};
use retrograd_core::Parameter;
use retrograd_optim::*;

const OPTIM: [&str; 16] = [
    "optim_sgd",
    "optim_sgd_momentum",
    "optim_sgd_momentum_dampening",
    "optim_sgd_nesterov",
    "optim_sgd_momentum_wd",
    "optim_adam",
    "optim_adam_amsgrad",
    "optim_adam_wd",
    "optim_adamw",
    "optim_adamw_amsgrad",
    "optim_rmsprop",
    "optim_rmsprop_centered",
    "optim_rmsprop_momentum",
    "optim_rmsprop_centered_momentum_wd",
    "optim_adagrad",
    "optim_adagrad_lrdecay_wd_init",
];
const CLIP: [&str; 3] = ["clip_l2", "clip_inf", "clip_l2_noop"];
const SCHED: [&str; 5] = [
    "sched_steplr",
    "sched_exponentiallr",
    "sched_cosineannealinglr",
    "sched_linearlr",
    "sched_reducelronplateau",
];

/// Every optim/clip/sched fixture on disk is in one of the lists above (none is skipped).
#[test]
fn every_optim_clip_sched_fixture_is_tested() {
    let mut on_disk: Vec<String> = std::fs::read_dir(common::FIXTURES)
        .expect("fixture directory")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".safetensors")?.to_string();
            let ours = ["optim_", "clip_", "sched_"]
                .iter()
                .any(|p| stem.starts_with(p));
            ours.then_some(stem)
        })
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = OPTIM
        .iter()
        .chain(&CLIP)
        .chain(&SCHED)
        .map(|s| s.to_string())
        .collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

/// Builds the optimizer a fixture describes, checking that the PyTorch-only flags are off.
fn optimizer_for(fx: &Fixture, params: Vec<(String, Parameter<f64>)>) -> Box<dyn Optimizer<f64>> {
    let hp = fx.hparams();
    assert!(!flag(&hp, "maximize"), "{}: maximize unsupported", fx.name);
    assert!(!flag(&hp, "differentiable"), "{}", fx.name);
    let kind = fx.m("optimizer");
    let lr = num(&hp, "lr");
    let wd = num(&hp, "weight_decay");
    let opt: Box<dyn Optimizer<f64>> = match kind {
        "SGD" => Box::new(
            Sgd::new(
                params,
                SgdConfig::new(lr)
                    .momentum(num(&hp, "momentum"))
                    .dampening(num(&hp, "dampening"))
                    .weight_decay(wd)
                    .nesterov(flag(&hp, "nesterov")),
            )
            .unwrap(),
        ),
        "Adam" | "AdamW" => {
            let betas = (
                hp["betas"][0].as_f64().unwrap(),
                hp["betas"][1].as_f64().unwrap(),
            );
            let decoupled = flag(&hp, "decoupled_weight_decay");
            assert_eq!(decoupled, kind == "AdamW", "{}", fx.name);
            let (eps, ams) = (num(&hp, "eps"), flag(&hp, "amsgrad"));
            if decoupled {
                let cfg = AdamWConfig::default()
                    .lr(lr)
                    .betas(betas.0, betas.1)
                    .eps(eps);
                Box::new(AdamW::new(params, cfg.weight_decay(wd).amsgrad(ams)).unwrap())
            } else {
                let cfg = AdamConfig::default()
                    .lr(lr)
                    .betas(betas.0, betas.1)
                    .eps(eps);
                Box::new(Adam::new(params, cfg.weight_decay(wd).amsgrad(ams)).unwrap())
            }
        }
        "RMSprop" => Box::new(
            RmsProp::new(
                params,
                RmsPropConfig::default()
                    .lr(lr)
                    .alpha(num(&hp, "alpha"))
                    .eps(num(&hp, "eps"))
                    .weight_decay(wd)
                    .momentum(num(&hp, "momentum"))
                    .centered(flag(&hp, "centered")),
            )
            .unwrap(),
        ),
        "Adagrad" => Box::new(
            Adagrad::new(
                params,
                AdagradConfig::default()
                    .lr(lr)
                    .lr_decay(num(&hp, "lr_decay"))
                    .weight_decay(wd)
                    .initial_accumulator_value(num(&hp, "initial_accumulator_value"))
                    .eps(num(&hp, "eps")),
            )
            .unwrap(),
        ),
        other => panic!("{}: unknown optimizer {other}", fx.name),
    };
    assert_eq!(opt.kind(), kind, "{}", fx.name);
    opt
}

#[test]
fn optimizers_match_pytorch_trajectories() {
    for name in OPTIM {
        let fx = Fixture::load(name);
        let steps: usize = fx.m("steps").parse().unwrap();
        let a = Parameter::new(fx.t("param.a").clone());
        let b = Parameter::new(fx.t("param.b").clone());
        let mut opt = optimizer_for(&fx, vec![("a".into(), a.clone()), ("b".into(), b.clone())]);
        let mut worst = 0.0f64;
        for k in 0..steps {
            let grads = store(
                &[&a, &b],
                &[
                    fx.t(&format!("grad.{k}.a")).clone(),
                    fx.t(&format!("grad.{k}.b")).clone(),
                ],
            );
            opt.step(&grads).unwrap();
            for (p, n) in [(&a, "a"), (&b, "b")] {
                let want = fx.t(&format!("traj.{k}.{n}")).to_vec();
                let w = assert_close(&format!("{name}: step {k}, param {n}"), &p.to_vec(), &want);
                worst = worst.max(w);
            }
        }
        // The trajectory must actually move (a fixture of constant values would prove nothing).
        assert_ne!(a.to_vec(), fx.t("param.a").to_vec(), "{name}");
        println!("{name}: {steps} steps, worst relative error {worst:.2e}");
    }
}

#[test]
fn clip_grad_norm_matches_pytorch() {
    for name in CLIP {
        let fx = Fixture::load(name);
        let max_norm: f64 = fx.m("max_norm").parse().unwrap();
        let norm_type = match fx.m("norm_type") {
            "2.0" => NormType::L2,
            "inf" => NormType::Inf,
            other => panic!("{name}: norm_type {other}"),
        };
        let error_if_nonfinite = fx.m("error_if_nonfinite") == "true";
        let a = Parameter::new(fx.t("grad.a").zeros_like());
        let b = Parameter::new(fx.t("grad.b").zeros_like());
        let mut grads = store(&[&a, &b], &[fx.t("grad.a").clone(), fx.t("grad.b").clone()]);
        let total = clip_grad_norm(
            &mut grads,
            [&a, &b],
            max_norm,
            norm_type,
            error_if_nonfinite,
        )
        .unwrap();
        assert_close(
            &format!("{name}: total_norm"),
            &[total],
            &fx.t("total_norm").to_vec(),
        );
        for n in ["a", "b"] {
            let p = if n == "a" { &a } else { &b };
            let got = grads.get_id(p.id()).unwrap().to_vec();
            let want = fx.t(&format!("clipped.{n}")).to_vec();
            assert_close(&format!("{name}: clipped.{n}"), &got, &want);
            if name == "clip_l2_noop" {
                assert_eq!(
                    got,
                    fx.t(&format!("grad.{n}")).to_vec(),
                    "{name}: must be untouched"
                );
            }
        }
    }
}

#[test]
fn schedulers_match_pytorch_lrs() {
    for name in SCHED {
        let fx = Fixture::load(name);
        let hp = fx.hparams();
        let base: f64 = fx.m("base_lr").parse().unwrap();
        let epochs: usize = fx.m("epochs").parse().unwrap();
        let want = fx.t("lrs").to_vec();
        assert_eq!(want.len(), epochs, "{name}");
        let got: Vec<f64> = if fx.m("scheduler") == "ReduceLROnPlateau" {
            assert_eq!(hp["mode"], "min", "{name}");
            assert_eq!(hp["threshold_mode"], "rel", "{name}");
            let cfg = PlateauConfig {
                mode: PlateauMode::Min,
                factor: num(&hp, "factor"),
                patience: num(&hp, "patience") as u64,
                threshold: num(&hp, "threshold"),
                threshold_mode: ThresholdMode::Rel,
                cooldown: num(&hp, "cooldown") as u64,
                min_lr: num(&hp, "min_lr"),
                eps: num(&hp, "eps"),
            };
            let mut s = ReduceLrOnPlateau::new(base, cfg).unwrap();
            let metrics = fx.t("metrics").to_vec();
            metrics
                .iter()
                .map(|&m| {
                    let lr = s.lr();
                    s.step_with(m);
                    lr
                })
                .collect()
        } else {
            assert_eq!(num(&hp, "last_epoch"), -1.0, "{name}");
            let mut s: Box<dyn LrScheduler> = match fx.m("scheduler") {
                "StepLR" => Box::new(
                    StepLr::new(base, num(&hp, "step_size") as u64, num(&hp, "gamma")).unwrap(),
                ),
                "ExponentialLR" => Box::new(ExponentialLr::new(base, num(&hp, "gamma")).unwrap()),
                "CosineAnnealingLR" => Box::new(
                    CosineAnnealingLr::new(base, num(&hp, "T_max") as u64, num(&hp, "eta_min"))
                        .unwrap(),
                ),
                "LinearLR" => Box::new(
                    LinearLr::new(
                        base,
                        num(&hp, "start_factor"),
                        num(&hp, "end_factor"),
                        num(&hp, "total_iters") as u64,
                    )
                    .unwrap(),
                ),
                other => panic!("{name}: unknown scheduler {other}"),
            };
            (0..epochs)
                .map(|_| {
                    let lr = s.lr();
                    s.step();
                    lr
                })
                .collect()
        };
        let worst = assert_close(&format!("{name}: lrs"), &got, &want);
        println!("{name}: worst relative error {worst:.2e}; lrs {got:?}");
    }
}
