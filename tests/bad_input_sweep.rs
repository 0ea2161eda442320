//! Bad input never panics: every public entry point that takes user data, given wrong ranks or
//! shapes, mismatched dtypes, out-of-range indices or token ids, empty inputs, invalid
//! hyperparameters or a state that does not match, returns an `Err` whose message names the
//! problem. Each row of the inventory runs under `catch_unwind` (see `bad_input_sweep/harness.rs`);
//! `cargo test --test bad_input_sweep -- --nocapture` prints every row with its message.
//!
//! The end of the file holds regression tests: the inputs that fuzzing (fuzz/) or this sweep
//! found crashing, fed back as plain tests.

#[path = "bad_input_sweep/core_cases.rs"]
mod core_cases;
#[path = "bad_input_sweep/harness.rs"]
mod harness;
#[path = "bad_input_sweep/io_cases.rs"]
mod io_cases;
#[path = "bad_input_sweep/nn_cases.rs"]
mod nn_cases;
#[path = "bad_input_sweep/optim_cases.rs"]
mod optim_cases;
#[path = "bad_input_sweep/text_cases.rs"]
mod text_cases;

use harness::{case, run_group, verdict};

#[test]
fn the_harness_rejects_ok_panics_and_vague_messages() {
    let ok = case("returns Ok", || Ok::<_, retrograd::Error>(1), &["x"]);
    assert!(verdict(ok).unwrap_err().contains("returned Ok"));
    let panics = case(
        "panics",
        || -> retrograd::Result<()> { panic!("boom") },
        &["x"],
    );
    assert!(verdict(panics).unwrap_err().contains("PANICKED (boom)"));
    let vague = case(
        "vague",
        || Err::<(), _>(retrograd::Error::invalid("op", "bad")),
        &["op", "the value 3"],
    );
    assert!(verdict(vague)
        .unwrap_err()
        .contains("lacks \"the value 3\""));
    let good = case(
        "good",
        || Err::<(), _>(retrograd::Error::invalid("op", "value 3")),
        &["op", "value 3"],
    );
    assert_eq!(verdict(good).unwrap(), "op: invalid argument: value 3");
}

#[test]
fn core_constructors() {
    run_group("core constructors", core_cases::constructors());
}

#[test]
fn core_ops() {
    run_group("core ops", core_cases::ops());
}

#[test]
fn core_losses_and_autodiff() {
    run_group("core losses/autodiff", core_cases::losses_and_autodiff());
}

#[test]
fn nn_layers_and_losses() {
    run_group("nn layers", nn_cases::layers());
}

#[test]
fn nn_recurrent_constructors() {
    run_group("nn recurrent new", nn_cases::recurrent_constructors());
}

#[test]
fn nn_recurrent_forward() {
    run_group("nn recurrent forward", nn_cases::recurrent_forward());
}

#[test]
fn nn_state_dicts() {
    run_group("nn state dicts", nn_cases::state_dicts());
}

#[test]
fn serialize_loaders() {
    /// Removes the scratch files whether the rows pass or not.
    struct Cleanup;
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(io_cases::scratch_dir());
        }
    }
    let _cleanup = Cleanup;
    run_group("serialize", io_cases::state_dict_files());
}

#[test]
fn checkpoint_loading() {
    run_group("checkpoint", io_cases::checkpoints());
}

#[test]
fn optimizer_constructors() {
    run_group("optim new", optim_cases::constructors());
}

#[test]
fn optimizer_state_dicts() {
    run_group("optim state", optim_cases::state_dicts());
}

#[test]
fn clipping_and_schedules() {
    run_group("clip/schedules", optim_cases::clipping_and_schedules());
}

#[test]
fn text_vocabularies() {
    run_group("text vocab", text_cases::vocabularies());
}

#[test]
fn text_batching_and_sampling() {
    run_group("text batch/sample", text_cases::batching_and_sampling());
}

#[test]
fn text_language_model() {
    run_group("text lm", text_cases::language_model());
}

// ------------------------------------------------------------------ regressions

/// Runs `f`, failing the test with `what` if it panics.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| panic!("{what}: panicked"))
}

/// Counters restored from a state (or given to a constructor) at the top of their range keep
/// working: they saturate instead of overflowing. (Found by this sweep: each of these was an
/// `attempt to add with overflow` panic in debug builds, a wrap to 0 in release, which for Adam
/// meant a zero bias correction and NaN weights.)
#[test]
fn counters_at_the_top_of_their_range_do_not_overflow() {
    use retrograd::optim::*;
    use retrograd::{GradStore, Parameter, Tensor};

    let p = Parameter::new(Tensor::<f32>::ones(&[3]));
    let named = vec![("w".to_string(), p.clone())];
    let mut g = GradStore::new();
    g.insert(p.id(), Tensor::full(&[3], 0.5));
    let mut opts: Vec<Box<dyn Optimizer<f32>>> = vec![
        Box::new(Adam::new(named.clone(), AdamConfig::default()).unwrap()),
        Box::new(RmsProp::new(named.clone(), RmsPropConfig::default()).unwrap()),
        Box::new(Adagrad::new(named.clone(), AdagradConfig::default()).unwrap()),
    ];
    for opt in &mut opts {
        opt.step(&g).unwrap();
        let mut st = opt.state_dict();
        st.metadata
            .insert("state.w.step".into(), (u64::MAX - 1).to_string());
        opt.load_state_dict(&st).unwrap();
        let kind = opt.kind();
        no_panic(kind, || {
            opt.step(&g).unwrap();
            opt.step(&g).unwrap();
        });
        assert!(
            p.to_vec().iter().all(|w| w.is_finite()),
            "{kind}: {:?}",
            p.to_vec()
        );
    }

    let mut step_lr = StepLr::new(0.1, 3, 0.5).unwrap();
    let mut st = step_lr.state_dict();
    st.insert("epoch".into(), u64::MAX.to_string());
    step_lr.load_state_dict(&st).unwrap();
    let lr = no_panic("StepLR", || (step_lr.step(), step_lr.step()).1);
    assert!(lr.is_finite() && lr <= 0.1);

    for t_max in [u64::MAX, 1 << 63] {
        let mut cos = CosineAnnealingLr::new(0.1, t_max, 0.0).unwrap();
        let lr = no_panic("CosineAnnealingLR", || (cos.step(), cos.step()).1);
        assert!((lr - 0.1).abs() < 1e-12, "t_max {t_max}: lr {lr}");
    }
    let mut lin = LinearLr::new(0.1, 0.5, 1.0, u64::MAX).unwrap();
    assert!(no_panic("LinearLR", || lin.step()).is_finite());

    let mut plateau = ReduceLrOnPlateau::new(0.1, PlateauConfig::default()).unwrap();
    let mut st = plateau.state_dict();
    st.insert("epoch".into(), u64::MAX.to_string());
    st.insert("num_bad_epochs".into(), u64::MAX.to_string());
    st.insert("best".into(), "0.5".into());
    plateau.load_state_dict(&st).unwrap();
    // 1.0 is worse than the best 0.5: one more bad epoch, past any patience
    no_panic("ReduceLROnPlateau", || plateau.step_with(1.0));
    assert!(plateau.lr() < 0.1, "too many bad epochs reduce the rate");
}

/// A batcher resumed at any time index reads the windows it would read at that index modulo
/// the stream length, also across usize::MAX (was an overflow panic).
#[test]
fn batcher_time_index_wraps_instead_of_overflowing() {
    use retrograd::text::BpttBatcher;
    let tokens: Vec<usize> = (0..23).collect();
    let n = tokens.len() - 1;
    let mut far = BpttBatcher::new(tokens.clone(), 2, 3).unwrap();
    far.set_time_idx(usize::MAX - 1);
    let mut near = BpttBatcher::new(tokens, 2, 3).unwrap();
    near.set_time_idx((usize::MAX - 1) % n);
    for _ in 0..3 {
        let a = no_panic("next_batch", || far.next_batch());
        assert_eq!(a, near.next_batch());
    }
}

/// Found by `fuzz/tensor_ops` (input kept in fuzz/regressions/tensor_ops/): splitting or
/// chunking a dim of size 0 returned no pieces at all, so taking the first piece panicked in the
/// caller. PyTorch returns one empty piece, and so does retrograd now.
#[test]
fn split_and_chunk_of_an_empty_dim_give_one_empty_piece() {
    use retrograd::Tensor;
    let t = Tensor::<f32>::zeros(&[2, 0]).requires_grad();
    for parts in [t.split(3, 1).unwrap(), t.chunk(2, -1).unwrap()] {
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].shape(), &[2, 0]);
        let g = parts[0].sum_all().backward().unwrap();
        assert_eq!(g.get(&t).map(|g| g.shape().to_vec()), Some(vec![2, 0]));
    }
    // Non-empty dims are unchanged: 5 in pieces of 2 is 2 + 2 + 1.
    let sizes: Vec<usize> = Tensor::<f32>::zeros(&[5])
        .split(2, 0)
        .unwrap()
        .iter()
        .map(|p| p.numel())
        .collect();
    assert_eq!(sizes, [2, 2, 1]);
}
