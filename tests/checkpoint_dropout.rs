//! Training checkpoints with active dropout: the module-owned random streams (the LM's
//! `Dropout` and the LSTM's inter-layer dropout) are saved and restored, so a resumed run draws
//! the same masks — and reaches the same bits — as an uninterrupted one.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use retrograd::checkpoint::{Checkpoint, TrainRng};
use retrograd::nn::Module;
use retrograd::optim::{Adam, AdamConfig, Optimizer};
use retrograd::text::{CellType, LmConfig, RnnLm};
use retrograd::Result;

const VOCAB: usize = 12;
const SEQ: usize = 5;
const BATCH: usize = 3;

fn lm(seed: u64) -> RnnLm<f32> {
    let cfg = LmConfig {
        num_layers: 2,
        cell: CellType::Lstm,
        dropout: 0.3,
        ..LmConfig::new(VOCAB, 8, 8)
    };
    RnnLm::new(cfg, &mut TrainRng::seed_from_u64(seed)).unwrap()
}

fn adam(model: &RnnLm<f32>) -> Adam<f32> {
    Adam::new(model.named_parameters(), AdamConfig::default().lr(0.02)).unwrap()
}

/// `steps` training steps on windows drawn from `data`; returns the losses' bits.
fn train(
    model: &RnnLm<f32>,
    opt: &mut dyn Optimizer<f32>,
    data: &mut TrainRng,
    steps: usize,
) -> Result<Vec<u32>> {
    let mut losses = vec![];
    for _ in 0..steps {
        let ids: Vec<usize> = (0..SEQ * BATCH)
            .map(|_| data.random_range(0..VOCAB))
            .collect();
        let targets: Vec<i64> = ids.iter().map(|&i| ((i * 5 + 3) % VOCAB) as i64).collect();
        let (logits, _) = model.forward(&ids, SEQ, BATCH, None)?;
        let loss = logits.cross_entropy(&targets)?;
        losses.push(loss.item()?.to_bits());
        opt.step(&loss.backward()?)?;
    }
    Ok(losses)
}

fn bits(m: &RnnLm<f32>) -> Vec<(String, Vec<u32>)> {
    m.named_parameters()
        .into_iter()
        .map(|(n, p)| (n, p.to_vec().iter().map(|v| v.to_bits()).collect()))
        .collect()
}

/// Runs k steps, checkpoints (through bytes), runs m more; returns the checkpoint bytes, the
/// final model and the losses of the last m steps.
fn uninterrupted(k: usize, m: usize) -> Result<(Vec<u8>, RnnLm<f32>, Vec<u32>)> {
    let model = lm(1);
    let mut opt = adam(&model);
    let mut data = TrainRng::seed_from_u64(99);
    train(&model, &mut opt, &mut data, k)?;
    let bytes = Checkpoint::capture(&model, &opt, k as u64, 0)
        .with_rng("data", &data)
        .to_bytes()?;
    let tail = train(&model, &mut opt, &mut data, m)?;
    Ok((bytes, model, tail))
}

/// A fresh model (other seed) restored from `ck`, trained m steps.
fn resumed(ck: &Checkpoint<f32>, m: usize) -> Result<(RnnLm<f32>, Vec<u32>)> {
    let model = lm(2);
    let mut opt = adam(&model);
    ck.restore(&model, Some(&mut opt))?;
    let mut data = ck.rng("data")?;
    let tail = train(&model, &mut opt, &mut data, m)?;
    Ok((model, tail))
}

#[test]
fn resume_with_dropout_is_bit_identical() -> Result<()> {
    let (k, m) = (4, 5);
    let (bytes, model, tail) = uninterrupted(k, m)?;
    let ck = Checkpoint::<f32>::from_bytes(&bytes)?;
    assert_eq!(
        ck.module_rngs.keys().collect::<Vec<_>>(),
        ["dropout.rng", "rnn.rng"],
        "both module streams are in the checkpoint"
    );
    let (model2, tail2) = resumed(&ck, m)?;
    assert_eq!(tail2, tail, "resumed losses differ");
    assert_eq!(bits(&model2), bits(&model), "resumed parameters differ");
    assert_eq!(model2.rng_states(), model.rng_states());
    Ok(())
}

#[test]
fn without_module_streams_the_resumed_run_differs() -> Result<()> {
    // the control: the same checkpoint minus its module streams (as a file from before they
    // were saved) still loads and restores, but the masks — hence losses and weights — differ
    let (k, m) = (4, 5);
    let (bytes, model, tail) = uninterrupted(k, m)?;
    let mut ck = Checkpoint::<f32>::from_bytes(&bytes)?;
    ck.module_rngs.clear();
    let old_style = Checkpoint::<f32>::from_bytes(&ck.to_bytes()?)?;
    assert!(old_style.module_rngs.is_empty());

    let fresh = lm(2);
    let streams_before = fresh.rng_states();
    old_style.restore(&fresh, None)?;
    assert_eq!(
        fresh.rng_states(),
        streams_before,
        "no saved streams: the model's own are left alone"
    );

    let (model2, tail2) = resumed(&old_style, m)?;
    assert_ne!(
        tail2, tail,
        "dropout masks should differ without the module streams"
    );
    assert_ne!(bits(&model2), bits(&model));
    Ok(())
}

#[test]
fn mismatched_module_streams_are_rejected_and_nothing_changes() -> Result<()> {
    let (bytes, _, _) = uninterrupted(2, 0)?;
    let mut ck = Checkpoint::<f32>::from_bytes(&bytes)?;
    let state = ck.module_rngs.remove("rnn.rng").unwrap();
    ck.module_rngs.insert("decoder.rng".into(), state);

    let fresh = lm(3);
    let (weights, streams) = (bits(&fresh), fresh.rng_states());
    let err = ck.restore(&fresh, None).unwrap_err().to_string();
    assert!(
        err.contains("missing random stream 'rnn.rng'")
            && err.contains("unexpected random stream 'decoder.rng'"),
        "{err}"
    );
    assert_eq!(
        bits(&fresh),
        weights,
        "weights put back after the failed restore"
    );
    assert_eq!(fresh.rng_states(), streams);

    let err = fresh
        .load_rng_states(&BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing random stream 'dropout.rng'"), "{err}");
    Ok(())
}

#[test]
fn corrupt_module_stream_metadata_is_an_error() -> Result<()> {
    let (bytes, _, _) = uninterrupted(1, 0)?;
    let ck = Checkpoint::<f32>::from_bytes(&bytes)?;
    let (tensors, mut meta) = retrograd::nn::serialize::from_bytes::<f32>(&bytes)?;
    assert_eq!(
        meta["module_rng.rnn.rng.word_pos"],
        ck.module_rngs["rnn.rng"].word_pos.to_string()
    );
    meta.insert("module_rng.rnn.rng.word_pos".into(), "many".into());
    let bad = retrograd::nn::serialize::to_bytes(&tensors, Some(meta))?;
    let err = Checkpoint::<f32>::from_bytes(&bad).unwrap_err().to_string();
    assert!(err.contains("rnn.rng") && err.contains("word_pos"), "{err}");
    Ok(())
}
