//! Invalid hyperparameters, bad gradients and mismatched state dicts give errors that name the
//! optimizer and the offending value, and change nothing.

mod common;

use common::store;
use retrograd_core::{Error, GradStore, Parameter, Tensor};
use retrograd_optim::*;

fn p(shape: &[usize]) -> Parameter<f32> {
    Parameter::new(Tensor::<f32>::ones(shape))
}

fn named(ps: &[(&str, &Parameter<f32>)]) -> Vec<(String, Parameter<f32>)> {
    ps.iter()
        .map(|(n, p)| (n.to_string(), (*p).clone()))
        .collect()
}

/// Asserts an InvalidArgument error whose message contains every one of `needles`.
fn assert_invalid<T>(r: Result<T, Error>, needles: &[&str]) {
    let Err(e) = r else {
        panic!("expected an error mentioning {needles:?}")
    };
    assert!(
        matches!(e, Error::InvalidArgument { .. }),
        "wrong kind: {e}"
    );
    let msg = e.to_string();
    for n in needles {
        assert!(msg.contains(n), "'{msg}' does not mention '{n}'");
    }
}

fn one() -> Vec<(String, Parameter<f32>)> {
    named(&[("w", &p(&[2]))])
}

#[test]
fn invalid_hyperparameters_are_rejected_naming_optimizer_and_value() {
    assert_invalid(
        Sgd::new(one(), SgdConfig::new(-0.1)),
        &["SGD", "learning rate", "-0.1"],
    );
    assert_invalid(Sgd::new(one(), SgdConfig::new(f64::NAN)), &["SGD", "NaN"]);
    assert_invalid(
        Sgd::new(one(), SgdConfig::new(0.1).momentum(-0.5)),
        &["SGD", "momentum", "-0.5"],
    );
    assert_invalid(
        Sgd::new(one(), SgdConfig::new(0.1).weight_decay(-1.0)),
        &["SGD", "weight_decay"],
    );
    assert_invalid(
        Sgd::new(one(), SgdConfig::new(0.1).dampening(1.5)),
        &["SGD", "dampening", "1.5"],
    );
    assert_invalid(
        Sgd::new(one(), SgdConfig::new(0.1).nesterov(true)),
        &["SGD", "Nesterov", "momentum > 0", "momentum 0"],
    );
    assert_invalid(
        Sgd::new(
            one(),
            SgdConfig::new(0.1)
                .momentum(0.9)
                .dampening(0.1)
                .nesterov(true),
        ),
        &["SGD", "Nesterov", "dampening 0.1"],
    );
    assert_invalid(
        Adam::new(one(), AdamConfig::default().lr(-1e-3)),
        &["Adam", "-0.001"],
    );
    assert_invalid(
        Adam::new(one(), AdamConfig::default().betas(1.0, 0.999)),
        &["Adam", "beta1", "1"],
    );
    assert_invalid(
        Adam::new(one(), AdamConfig::default().betas(0.9, -0.1)),
        &["Adam", "beta2", "-0.1"],
    );
    assert_invalid(
        Adam::new(one(), AdamConfig::default().eps(-1e-8)),
        &["Adam", "eps"],
    );
    assert_invalid(
        AdamW::new(one(), AdamWConfig::default().weight_decay(-0.01)),
        &["AdamW", "weight_decay"],
    );
    assert_invalid(
        RmsProp::new(one(), RmsPropConfig::default().alpha(1.5)),
        &["RMSprop", "alpha", "1.5"],
    );
    assert_invalid(
        RmsProp::new(one(), RmsPropConfig::default().momentum(-0.9)),
        &["RMSprop", "momentum"],
    );
    assert_invalid(
        RmsProp::new(one(), RmsPropConfig::default().eps(f64::INFINITY)),
        &["RMSprop", "eps", "inf"],
    );
    assert_invalid(
        Adagrad::new(one(), AdagradConfig::default().lr_decay(-0.1)),
        &["Adagrad", "lr_decay"],
    );
    assert_invalid(
        Adagrad::new(
            one(),
            AdagradConfig::default().initial_accumulator_value(-1.0),
        ),
        &["Adagrad", "initial_accumulator_value", "-1"],
    );
    // Valid edge values are accepted.
    assert!(Adam::new(
        one(),
        AdamConfig::default().betas(0.0, 0.0).eps(0.0).lr(0.0)
    )
    .is_ok());
    assert!(Sgd::new(one(), SgdConfig::new(0.1).momentum(0.9).nesterov(true)).is_ok());
}

#[test]
fn bad_parameter_lists_are_rejected() {
    let empty: Vec<(String, Parameter<f32>)> = vec![];
    assert_invalid(Adam::new(empty, AdamConfig::default()), &["Adam", "empty"]);
    let a = p(&[2]);
    assert_invalid(
        Sgd::new(named(&[("w", &a), ("w", &p(&[1]))]), SgdConfig::new(0.1)),
        &["'w'", "twice"],
    );
    assert_invalid(
        Sgd::new(named(&[("w", &a), ("v", &a)]), SgdConfig::new(0.1)),
        &["'v'", "same parameter"],
    );
}

#[test]
fn set_lr_rejects_negative_and_nan() {
    let mut opt = RmsProp::new(one(), RmsPropConfig::default()).unwrap();
    assert_invalid(opt.set_lr(-1.0), &["RMSprop::set_lr", "-1"]);
    assert_invalid(opt.set_lr(f64::NAN), &["RMSprop::set_lr"]);
    assert_eq!(opt.lr(), 1e-2);
}

#[test]
fn wrong_gradient_shape_fails_before_anything_changes() {
    let a = p(&[2]);
    let b = p(&[3]);
    let mut opt = Adam::new(named(&[("a", &a), ("b", &b)]), AdamConfig::default()).unwrap();
    let grads = store(&[&a, &b], &[Tensor::ones(&[2]), Tensor::ones(&[2, 2])]);
    let e = opt.step(&grads).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
    let msg = e.to_string();
    for n in ["Adam::step", "'b'", "[2, 2]", "[3]"] {
        assert!(msg.contains(n), "'{msg}' does not mention {n}");
    }
    // `a` comes first and had a good gradient, but nothing moved and no state was created.
    assert_eq!(a.to_vec(), vec![1.0, 1.0]);
    assert!(opt.state_dict().tensors.is_empty());
    // An empty store is a no-op.
    opt.step(&GradStore::new()).unwrap();
    assert_eq!(a.to_vec(), vec![1.0, 1.0]);
}

/// Two parameters, one Adam step, and its state.
fn trained_adam() -> (Vec<(String, Parameter<f32>)>, OptimState<f32>) {
    let params = named(&[("enc.weight", &p(&[2, 3])), ("enc.bias", &p(&[3]))]);
    let mut opt = Adam::new(params.clone(), AdamConfig::default().amsgrad(true)).unwrap();
    let ps: Vec<&Parameter<f32>> = params.iter().map(|(_, p)| p).collect();
    opt.step(&store(&ps, &[Tensor::ones(&[2, 3]), Tensor::ones(&[3])]))
        .unwrap();
    (params, opt.state_dict())
}

/// Loading `st` into a fresh Adam (amsgrad) over `params` fails with a Checkpoint error naming
/// each of `needles`, and leaves the optimizer as it was (no state, original lr).
fn assert_load_fails(
    params: Vec<(String, Parameter<f32>)>,
    st: &OptimState<f32>,
    needles: &[&str],
) {
    let mut opt = Adam::new(params, AdamConfig::default().lr(0.5).amsgrad(true)).unwrap();
    let e = opt.load_state_dict(st).unwrap_err();
    assert!(matches!(e, Error::Checkpoint(_)), "wrong kind: {e}");
    let msg = e.to_string();
    for n in needles {
        assert!(msg.contains(n), "'{msg}' does not mention '{n}'");
    }
    assert_eq!(opt.lr(), 0.5, "failed load must not change the lr");
    assert!(
        opt.state_dict().tensors.is_empty(),
        "failed load must not install state"
    );
}

#[test]
fn state_dict_mismatches_are_reported_by_name() {
    let (params, st) = trained_adam();
    // Sanity: the unmodified state loads.
    let mut ok = Adam::new(params.clone(), AdamConfig::default()).unwrap();
    ok.load_state_dict(&st).unwrap();
    assert!(ok.config().amsgrad, "hyperparameters come from the state");

    // Wrong optimizer kind.
    let mut adamw = AdamW::new(params.clone(), AdamWConfig::default()).unwrap();
    let e = adamw.load_state_dict(&st).unwrap_err().to_string();
    assert!(e.contains("'Adam'") && e.contains("'AdamW'"), "{e}");
    let mut sgd = Sgd::new(params.clone(), SgdConfig::new(0.1)).unwrap();
    assert!(sgd
        .load_state_dict(&st)
        .unwrap_err()
        .to_string()
        .contains("'SGD'"));

    // A parameter of the optimizer is missing from the state.
    let renamed = vec![
        params[0].clone(),
        ("dec.bias".to_string(), params[1].1.clone()),
    ];
    assert_load_fails(renamed, &st, &["no parameter named 'dec.bias'"]);

    // The state has a parameter the optimizer lacks.
    assert_load_fails(
        vec![params[0].clone()],
        &st,
        &["'enc.bias'", "does not have"],
    );

    // Shape mismatch.
    let reshaped = vec![params[0].clone(), ("enc.bias".to_string(), p(&[4]))];
    assert_load_fails(reshaped, &st, &["'enc.bias'", "[4]", "[3]"]);

    // A buffer is missing.
    let mut missing = st.clone();
    missing.tensors.remove("state.enc.weight.exp_avg_sq");
    assert_load_fails(
        params.clone(),
        &missing,
        &["'enc.weight'", "state.enc.weight.exp_avg_sq"],
    );

    // A buffer has the wrong shape.
    let mut bad_buf = st.clone();
    bad_buf
        .tensors
        .insert("state.enc.bias.exp_avg".into(), Tensor::zeros(&[2]));
    assert_load_fails(
        params.clone(),
        &bad_buf,
        &["state.enc.bias.exp_avg", "[2]", "[3]"],
    );

    // An unknown buffer.
    let mut extra = st.clone();
    extra
        .tensors
        .insert("state.enc.bias.momentum_buffer".into(), Tensor::zeros(&[3]));
    assert_load_fails(
        params.clone(),
        &extra,
        &["unexpected tensor 'state.enc.bias.momentum_buffer'"],
    );

    // amsgrad off in the state, but the max buffer is there.
    let mut no_ams = st.clone();
    no_ams
        .metadata
        .insert("hparam.amsgrad".into(), "false".into());
    assert_load_fails(params.clone(), &no_ams, &["max_exp_avg_sq"]);

    // Corrupt step count, corrupt and invalid hyperparameters, missing kind.
    let mut bad_step = st.clone();
    bad_step
        .metadata
        .insert("state.enc.bias.step".into(), "-3".into());
    assert_load_fails(params.clone(), &bad_step, &["state.enc.bias.step", "-3"]);
    let mut bad_hp = st.clone();
    bad_hp.metadata.insert("hparam.eps".into(), "tiny".into());
    assert_load_fails(params.clone(), &bad_hp, &["hparam.eps", "tiny"]);
    let mut bad_beta = st.clone();
    bad_beta
        .metadata
        .insert("hparam.beta1".into(), "1.5".into());
    let mut opt = Adam::new(params.clone(), AdamConfig::default()).unwrap();
    let e = opt.load_state_dict(&bad_beta).unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument { .. }) && e.to_string().contains("beta1"),
        "{e}"
    );
    let mut no_kind = st.clone();
    no_kind.metadata.remove("kind");
    assert_load_fails(params.clone(), &no_kind, &["'kind' is missing"]);

    // Step without buffers (the step names a parameter that has no state).
    let mut orphan = OptimState::new();
    orphan.metadata = st.metadata.clone();
    assert_load_fails(params, &orphan, &["exp_avg"]);
}

#[test]
fn clip_rejects_bad_arguments_and_nonfinite_norms() {
    let w = p(&[2]);
    let mut grads = store(
        &[&w],
        &[Tensor::from_vec(vec![f32::NAN, 1.0], &[2]).unwrap()],
    );
    assert_invalid(
        clip_grad_norm(&mut grads, [&w], -1.0, NormType::L2, false),
        &["max_norm", "-1"],
    );
    assert_invalid(
        clip_grad_norm(&mut grads, [&w], 1.0, NormType::P(0.0), false),
        &["P(p)", "0"],
    );
    assert_invalid(clip_grad_value(&mut grads, [&w], f64::NAN), &["clip_value"]);
    let e = clip_grad_norm(&mut grads, [&w], 1.0, NormType::L2, true).unwrap_err();
    assert!(matches!(e, Error::NonFinite(_)), "{e}");
    assert!(e.to_string().contains("NaN"), "{e}");
    // Nothing was changed by the failed call.
    assert_eq!(grads.get_id(w.id()).unwrap().to_vec()[1], 1.0);
}

#[test]
fn schedulers_reject_bad_arguments_and_foreign_state() {
    assert_invalid(StepLr::new(0.1, 0, 0.5), &["StepLR", "step_size"]);
    assert_invalid(StepLr::new(-0.1, 1, 0.5), &["StepLR", "base_lr", "-0.1"]);
    assert_invalid(
        ExponentialLr::new(0.1, f64::NAN),
        &["ExponentialLR", "gamma"],
    );
    assert_invalid(
        CosineAnnealingLr::new(0.1, 0, 0.0),
        &["CosineAnnealingLR", "t_max"],
    );
    assert_invalid(
        LinearLr::new(0.1, 0.0, 1.0, 4),
        &["LinearLR", "start_factor"],
    );
    assert_invalid(LinearLr::new(0.1, 0.5, 1.5, 4), &["LinearLR", "end_factor"]);
    let cfg = PlateauConfig {
        factor: 1.0,
        ..PlateauConfig::default()
    };
    assert_invalid(
        ReduceLrOnPlateau::new(0.1, cfg),
        &["ReduceLROnPlateau", "factor"],
    );

    let st = StepLr::new(0.1, 2, 0.5).unwrap().state_dict();
    let mut cos = CosineAnnealingLr::new(0.1, 10, 0.0).unwrap();
    let e = cos.load_state_dict(&st).unwrap_err().to_string();
    assert!(
        e.contains("StepLR") && e.contains("CosineAnnealingLR"),
        "{e}"
    );
    let mut plateau = ReduceLrOnPlateau::new(0.1, PlateauConfig::default()).unwrap();
    assert!(plateau.load_state_dict(&st).is_err());
}
