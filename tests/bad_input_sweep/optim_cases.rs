//! Optimizer rows: invalid hyperparameters, parameter lists, gradient shapes, state dicts that
//! do not match the optimizer; gradient clipping; learning-rate schedules and their states.

use retrograd::optim::{
    clip_grad_norm, clip_grad_value, Adagrad, AdagradConfig, Adam, AdamConfig, AdamW, AdamWConfig,
    CosineAnnealingLr, ExponentialLr, LinearLr, LrScheduler, NormType, OptimState, Optimizer,
    PlateauConfig, ReduceLrOnPlateau, RmsProp, RmsPropConfig, Sgd, SgdConfig, StepLr,
};
use retrograd::{GradStore, Parameter, Tensor};

use super::harness::{case, Case};

fn params() -> Vec<(String, Parameter<f32>)> {
    vec![
        ("w".into(), Parameter::new(Tensor::ones(&[2, 3]))),
        ("b".into(), Parameter::new(Tensor::ones(&[3]))),
    ]
}

fn sgd(cfg: SgdConfig) -> retrograd::Result<Sgd<f32>> {
    Sgd::new(params(), cfg)
}

/// An Adam state after one step, with `edit` applied.
fn adam_state(edit: impl FnOnce(&mut OptimState<f32>)) -> OptimState<f32> {
    let ps = params();
    let mut opt = Adam::new(ps.clone(), AdamConfig::default()).unwrap();
    let mut g = GradStore::new();
    for (_, p) in &ps {
        g.insert(p.id(), Tensor::ones(p.shape()));
    }
    opt.step(&g).unwrap();
    let mut st = opt.state_dict();
    edit(&mut st);
    st
}

fn load_into_adam(st: OptimState<f32>) -> retrograd::Result<()> {
    Adam::new(params(), AdamConfig::default())?.load_state_dict(&st)
}

pub fn constructors() -> Vec<Case> {
    vec![
        case(
            "SGD lr -0.1",
            || sgd(SgdConfig::new(-0.1)),
            &["SGD", "learning rate", "-0.1"],
        ),
        case(
            "SGD lr NaN",
            || sgd(SgdConfig::new(f64::NAN)),
            &["SGD", "NaN"],
        ),
        case(
            "SGD momentum -0.9",
            || sgd(SgdConfig::new(0.1).momentum(-0.9)),
            &["SGD", "momentum", "-0.9"],
        ),
        case(
            "SGD Nesterov without momentum",
            || sgd(SgdConfig::new(0.1).nesterov(true)),
            &["SGD", "Nesterov", "momentum 0"],
        ),
        case(
            "SGD Nesterov with dampening",
            || {
                sgd(SgdConfig::new(0.1)
                    .momentum(0.9)
                    .dampening(0.5)
                    .nesterov(true))
            },
            &["SGD", "Nesterov", "dampening 0.5"],
        ),
        case(
            "SGD dampening 2",
            || sgd(SgdConfig::new(0.1).dampening(2.0)),
            &["SGD", "dampening", "2"],
        ),
        case(
            "SGD weight_decay -1",
            || sgd(SgdConfig::new(0.1).weight_decay(-1.0)),
            &["SGD", "weight_decay", "-1"],
        ),
        case(
            "SGD over no parameters",
            || Sgd::<f32>::new(Vec::new(), SgdConfig::new(0.1)),
            &["SGD", "empty parameter list"],
        ),
        case(
            "SGD over the same name twice",
            || {
                let mut ps = params();
                ps[1].0 = "w".into();
                Sgd::new(ps, SgdConfig::new(0.1))
            },
            &["SGD", "'w' appears twice"],
        ),
        case(
            "Adam over the same parameter twice",
            || {
                let mut ps = params();
                ps[1].1 = ps[0].1.clone();
                Adam::new(ps, AdamConfig::default())
            },
            &["Adam", "'b'", "same parameter"],
        ),
        case(
            "Adam beta1 = 1",
            || Adam::new(params(), AdamConfig::default().betas(1.0, 0.999)),
            &["Adam", "beta1", "[0, 1)"],
        ),
        case(
            "Adam eps -1e-8",
            || Adam::new(params(), AdamConfig::default().eps(-1e-8)),
            &["Adam", "eps"],
        ),
        case(
            "AdamW lr -1",
            || AdamW::new(params(), AdamWConfig::default().lr(-1.0)),
            &["AdamW", "learning rate", "-1"],
        ),
        case(
            "RMSprop alpha 1.5",
            || RmsProp::new(params(), RmsPropConfig::default().alpha(1.5)),
            &["alpha", "1.5"],
        ),
        case(
            "RMSprop momentum -0.1",
            || RmsProp::new(params(), RmsPropConfig::default().momentum(-0.1)),
            &["momentum", "-0.1"],
        ),
        case(
            "Adagrad lr_decay -1",
            || Adagrad::new(params(), AdagradConfig::default().lr_decay(-1.0)),
            &["Adagrad", "lr_decay", "-1"],
        ),
        case(
            "set_lr(-1)",
            || sgd(SgdConfig::new(0.1))?.set_lr(-1.0),
            &["SGD::set_lr", "-1"],
        ),
        case(
            "step with a gradient of the wrong shape",
            || {
                let ps = params();
                let mut opt = Adam::new(ps.clone(), AdamConfig::default())?;
                let mut g = GradStore::new();
                g.insert(ps[0].1.id(), Tensor::ones(&[3, 2]));
                opt.step(&g)
            },
            &["Adam::step", "'w'", "[3, 2]", "[2, 3]"],
        ),
    ]
}

pub fn state_dicts() -> Vec<Case> {
    vec![
        case(
            "Adam state into SGD",
            || sgd(SgdConfig::new(0.1))?.load_state_dict(&adam_state(|_| {})),
            &["SGD::load_state_dict", "'Adam'", "'SGD'"],
        ),
        case(
            "state for a parameter of another shape",
            || {
                let mut other = params();
                other[1].1 = Parameter::new(Tensor::ones(&[4]));
                Adam::new(other, AdamConfig::default())?.load_state_dict(&adam_state(|_| {}))
            },
            &["parameter 'b'", "[4]", "[3]"],
        ),
        case(
            "state without one of the parameters",
            || {
                load_into_adam(adam_state(|st| {
                    st.metadata.remove("param.b");
                }))
            },
            &["no parameter named 'b'"],
        ),
        case(
            "state with an extra parameter",
            || {
                load_into_adam(adam_state(|st| {
                    st.metadata.insert("param.c".into(), "[1]".into());
                }))
            },
            &["parameter 'c'", "does not have"],
        ),
        case(
            "state with a buffer of the wrong shape",
            || {
                load_into_adam(adam_state(|st| {
                    st.tensors
                        .insert("state.w.exp_avg".into(), Tensor::ones(&[6]));
                }))
            },
            &["'state.w.exp_avg'", "[6]", "[2, 3]"],
        ),
        case(
            "state missing a buffer",
            || {
                load_into_adam(adam_state(|st| {
                    st.tensors.remove("state.b.exp_avg_sq");
                }))
            },
            &["missing buffer 'state.b.exp_avg_sq'"],
        ),
        case(
            "state with a negative learning rate",
            || {
                load_into_adam(adam_state(|st| {
                    st.metadata.insert("hparam.lr".into(), "-0.5".into());
                }))
            },
            &["Adam::load_state_dict", "-0.5"],
        ),
        case(
            "state with a step count that is not a number",
            || {
                load_into_adam(adam_state(|st| {
                    st.metadata.insert("state.w.step".into(), "two".into());
                }))
            },
            &["'state.w.step' = 'two'"],
        ),
    ]
}

fn grads_with(values: &[f32]) -> (Parameter<f32>, GradStore<f32>) {
    let p = Parameter::new(Tensor::zeros(&[values.len()]));
    let mut g = GradStore::new();
    g.insert(p.id(), Tensor::from_slice(values, &[values.len()]).unwrap());
    (p, g)
}

pub fn clipping_and_schedules() -> Vec<Case> {
    vec![
        case(
            "clip_grad_norm max_norm -1",
            || {
                let (p, mut g) = grads_with(&[1.0]);
                clip_grad_norm(&mut g, [&p], -1.0, NormType::L2, true)
            },
            &["clip_grad_norm", "max_norm", "-1"],
        ),
        case(
            "clip_grad_norm with norm P(0)",
            || {
                let (p, mut g) = grads_with(&[1.0]);
                clip_grad_norm(&mut g, [&p], 1.0, NormType::P(0.0), true)
            },
            &["clip_grad_norm", "P(p)", "0"],
        ),
        case(
            "clip_grad_norm of a NaN gradient (error_if_nonfinite)",
            || {
                let (p, mut g) = grads_with(&[1.0, f32::NAN]);
                clip_grad_norm(&mut g, [&p], 1.0, NormType::L2, true)
            },
            &["non-finite", "clip_grad_norm", "NaN", "[2]"],
        ),
        case(
            "clip_grad_value -0.5",
            || {
                let (p, mut g) = grads_with(&[1.0]);
                clip_grad_value(&mut g, [&p], -0.5)
            },
            &["clip_grad_value", "-0.5"],
        ),
        case(
            "StepLR step_size 0",
            || StepLr::new(0.1, 0, 0.5),
            &["StepLR", "step_size"],
        ),
        case(
            "StepLR gamma -1",
            || StepLr::new(0.1, 2, -1.0),
            &["StepLR", "gamma", "-1"],
        ),
        case(
            "ExponentialLR base_lr NaN",
            || ExponentialLr::new(f64::NAN, 0.9),
            &["ExponentialLR", "base_lr", "NaN"],
        ),
        case(
            "CosineAnnealingLR t_max 0",
            || CosineAnnealingLr::new(0.1, 0, 0.0),
            &["CosineAnnealingLR", "t_max"],
        ),
        case(
            "LinearLR start_factor 0",
            || LinearLr::new(0.1, 0.0, 1.0, 5),
            &["LinearLR", "start_factor", "0"],
        ),
        case(
            "LinearLR total_iters 0",
            || LinearLr::new(0.1, 0.5, 1.0, 0),
            &["LinearLR", "total_iters"],
        ),
        case(
            "ReduceLROnPlateau factor 1",
            || {
                ReduceLrOnPlateau::new(
                    0.1,
                    PlateauConfig {
                        factor: 1.0,
                        ..Default::default()
                    },
                )
            },
            &["ReduceLROnPlateau", "factor", "1"],
        ),
        case(
            "StepLR state into ExponentialLR",
            || {
                let st = StepLr::new(0.1, 2, 0.5)?.state_dict();
                ExponentialLr::new(0.1, 0.9)?.load_state_dict(&st)
            },
            &["ExponentialLR", "'StepLR'"],
        ),
        case(
            "scheduler state with epoch 'x'",
            || {
                let mut st = StepLr::new(0.1, 2, 0.5)?.state_dict();
                st.insert("epoch".into(), "x".into());
                StepLr::new(0.1, 2, 0.5)?.load_state_dict(&st)
            },
            &["StepLR", "'epoch' = 'x'"],
        ),
        case(
            "scheduler state with lr -1",
            || {
                let mut st = CosineAnnealingLr::new(0.1, 4, 0.0)?.state_dict();
                st.insert("lr".into(), "-1.0".into());
                CosineAnnealingLr::new(0.1, 4, 0.0)?.load_state_dict(&st)
            },
            &["CosineAnnealingLR", "lr -1"],
        ),
        case(
            "plateau state without 'best'",
            || {
                let mut s = ReduceLrOnPlateau::new(0.1, PlateauConfig::default())?;
                let mut st = s.state_dict();
                st.remove("best");
                s.load_state_dict(&st)
            },
            &["ReduceLROnPlateau", "'best'"],
        ),
    ]
}
