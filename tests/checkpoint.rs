//! Training checkpoints: stop after k steps, save, rebuild everything fresh, load, continue —
//! the result must be bit-identical to the uninterrupted run. Plus the file layout and
//! corrupted/mismatched input.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use rand::{Rng, SeedableRng};
use retrograd::checkpoint::{Checkpoint, TrainRng};
use retrograd::nn::serialize::{self, tmp_path};
use retrograd::nn::{join_name, CrossEntropyLoss, Embedding, Linear, Module};
use retrograd::optim::{
    clip_grad_norm, Adam, AdamConfig, LrScheduler, NormType, Optimizer, Sgd, SgdConfig, StepLr,
};
use retrograd::{Parameter, Result};

struct Net {
    emb: Embedding<f32>,
    fc: Linear<f32>,
}

impl Module<f32> for Net {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Parameter<f32>)) {
        self.emb.visit_params(&join_name(prefix, "emb"), f);
        self.fc.visit_params(&join_name(prefix, "fc"), f);
    }
}

fn net(seed: u64) -> Net {
    let mut r = TrainRng::seed_from_u64(seed);
    Net {
        emb: Embedding::new(10, 6, &mut r).unwrap(),
        fc: Linear::new(6, 10, true, &mut r).unwrap(),
    }
}

fn adam(model: &Net) -> Adam<f32> {
    Adam::new(model.named_parameters(), AdamConfig::default().lr(0.05)).unwrap()
}

/// Training steps `from..to` on batches drawn from `rng`; returns the losses.
fn train(
    model: &Net,
    opt: &mut dyn Optimizer<f32>,
    sched: &mut StepLr,
    rng: &mut TrainRng,
    from: u64,
    to: u64,
) -> Result<Vec<f32>> {
    let mut losses = vec![];
    for step in from..to {
        let ids: Vec<usize> = (0..8).map(|_| rng.random_range(0..10)).collect();
        let targets: Vec<i64> = ids.iter().map(|&i| ((i * 3 + 1) % 10) as i64).collect();
        let logits = model.fc.forward(&model.emb.forward(&ids, &[2, 4])?)?;
        let loss = CrossEntropyLoss::new().forward(&logits, &targets)?;
        losses.push(loss.item()?);
        let mut grads = loss.backward()?;
        clip_grad_norm(&mut grads, &model.parameters(), 1.0, NormType::L2, true)?;
        opt.step(&grads)?;
        if step % 3 == 2 {
            opt.set_lr(sched.step())?;
        }
    }
    Ok(losses)
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("retrograd-ckpt-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn bits(m: &Net) -> Vec<(String, Vec<u32>)> {
    m.named_parameters()
        .into_iter()
        .map(|(n, p)| (n, p.to_vec().iter().map(|v| v.to_bits()).collect()))
        .collect()
}

#[test]
fn resume_from_checkpoint_is_bit_identical() -> Result<()> {
    let dir = scratch("resume");
    let path = dir.join("run.ckpt.safetensors");
    let (k, n) = (7, 16);

    // the uninterrupted run, saving a checkpoint after step k
    let model = net(1);
    let mut opt = adam(&model);
    let mut sched = StepLr::new(0.05, 2, 0.5)?;
    let mut rng = TrainRng::seed_from_u64(99);
    let mut losses = train(&model, &mut opt, &mut sched, &mut rng, 0, k)?;
    Checkpoint::capture(&model, &opt, k, 0)
        .with_scheduler(sched.state_dict())
        .with_rng("data", &rng)
        .with_extra("note", "unit test")
        .save(&path)?;
    assert!(!tmp_path(&path).exists());
    losses.extend(train(&model, &mut opt, &mut sched, &mut rng, k, n)?);

    // a fresh process: different initial weights, fresh optimizer/scheduler/rng
    let resumed = net(2);
    assert_ne!(bits(&resumed), bits(&model));
    let mut opt2 = adam(&resumed);
    let mut sched2 = StepLr::new(0.05, 2, 0.5)?;
    let ck = Checkpoint::<f32>::load(&path)?;
    assert_eq!((ck.step, ck.epoch), (k, 0));
    assert_eq!(ck.extra["note"], "unit test");
    ck.restore(&resumed, Some(&mut opt2))?;
    sched2.load_state_dict(ck.scheduler.as_ref().expect("scheduler saved"))?;
    let mut rng2 = ck.rng("data")?;
    // two scheduler steps (after steps 2 and 5) with step_size 2: 0.05 -> 0.05 -> 0.025
    assert_eq!(
        opt2.lr(),
        0.025,
        "the scheduled lr comes back with the optimizer state"
    );
    assert_eq!(sched2.lr(), 0.025);
    let tail = train(&resumed, &mut opt2, &mut sched2, &mut rng2, ck.step, n)?;
    assert_eq!(bits(&resumed), bits(&model), "resumed parameters differ");
    assert_eq!(tail, losses[k as usize..], "resumed losses differ");
    assert_eq!(rng2.random::<u64>(), rng.random::<u64>());

    // control: the same resume without the optimizer state diverges, so the check above can fail
    let control = net(3);
    let mut fresh = adam(&control);
    ck.restore(&control, None)?;
    let mut sched3 = StepLr::new(0.05, 2, 0.5)?;
    sched3.load_state_dict(ck.scheduler.as_ref().unwrap())?;
    fresh.set_lr(sched3.lr())?;
    train(
        &control,
        &mut fresh,
        &mut sched3,
        &mut ck.rng("data")?,
        k,
        n,
    )?;
    assert_ne!(bits(&control), bits(&model));
    std::fs::remove_dir_all(dir).unwrap();
    Ok(())
}

#[test]
fn file_layout_has_prefixed_tensors_and_a_plain_model_state_dict() -> Result<()> {
    let model = net(4);
    let mut opt = adam(&model);
    let mut rng = TrainRng::seed_from_u64(1);
    train(
        &model,
        &mut opt,
        &mut StepLr::new(0.05, 2, 0.5)?,
        &mut rng,
        0,
        2,
    )?;
    let bytes = Checkpoint::capture(&model, &opt, 2, 1)
        .with_rng("data", &rng)
        .to_bytes()?;
    let (sd, meta) = serialize::from_bytes::<f32>(&bytes)?;
    assert!(sd
        .keys()
        .all(|k| k.starts_with("model.") || k.starts_with("optim.")));
    assert!(
        sd.contains_key("optim.state.fc.weight.exp_avg"),
        "{:?}",
        sd.keys()
    );
    assert_eq!(meta["step"], "2");
    assert_eq!(meta["epoch"], "1");
    assert_eq!(meta["optim.kind"], "Adam");
    assert_eq!(meta["rng.data.seed"].len(), 64);
    // the model.* tensors are the state dict: they load into a model after stripping the prefix
    let plain: retrograd::nn::StateDict<f32> = sd
        .into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("model.")?.to_string(), v)))
        .collect();
    let other = net(5);
    other.load_state_dict(&plain, true)?;
    assert_eq!(bits(&other), bits(&model));
    Ok(())
}

#[test]
fn mismatches_are_errors_and_change_nothing() -> Result<()> {
    let model = net(6);
    let sgd = Sgd::new(model.named_parameters(), SgdConfig::new(0.1).momentum(0.9))?;
    let ck = Checkpoint::capture(&model, &sgd, 0, 0);

    let target = net(7);
    let before = bits(&target);
    let mut adam_opt = adam(&target);
    let e = ck
        .restore(&target, Some(&mut adam_opt))
        .unwrap_err()
        .to_string();
    assert!(e.contains("SGD") && e.contains("Adam"), "{e}");
    assert_eq!(
        bits(&target),
        before,
        "model changed although the optimizer state did not fit"
    );

    let e = Checkpoint::new(model.state_dict())
        .restore(&target, Some(&mut adam_opt))
        .unwrap_err();
    assert!(e.to_string().contains("no optimizer state"), "{e}");
    let e = ck.rng("data").unwrap_err().to_string();
    assert!(e.contains("'data'"), "{e}");

    // a plain state dict, another dtype
    let plain = serialize::to_bytes(&model.state_dict(), None)?;
    let e = Checkpoint::<f32>::from_bytes(&plain)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a training checkpoint"), "{e}");
    let e = Checkpoint::<f64>::from_bytes(&ck.to_bytes()?)
        .unwrap_err()
        .to_string();
    assert!(e.contains("F32") && e.contains("f64"), "{e}");
    Ok(())
}

#[test]
fn corrupted_checkpoints_are_errors_never_panics() -> Result<()> {
    let model = net(8);
    let mut opt = adam(&model);
    let mut rng = TrainRng::seed_from_u64(3);
    train(
        &model,
        &mut opt,
        &mut StepLr::new(0.05, 2, 0.5)?,
        &mut rng,
        0,
        1,
    )?;
    let good = Checkpoint::capture(&model, &opt, 1, 0)
        .with_rng("data", &rng)
        .to_bytes()?;
    let parse = |b: &[u8], what: &str| {
        catch_unwind(AssertUnwindSafe(|| {
            Checkpoint::<f32>::from_bytes(b).is_ok()
        }))
        .unwrap_or_else(|_| panic!("{what}: panicked"))
    };
    assert!(parse(&good, "intact"));
    for len in (0..good.len()).step_by(7) {
        assert!(
            !parse(&good[..len], "truncated"),
            "truncated to {len} parsed"
        );
    }
    let mut r = TrainRng::seed_from_u64(11);
    for i in 0..1500 {
        let mut bad = good.clone();
        let at = r.random_range(0..bad.len());
        bad[at] ^= 1 << r.random_range(0..8);
        parse(&bad, &format!("flip {i} at byte {at}"));
    }
    Ok(())
}
