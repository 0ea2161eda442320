//! The examples' core routines at tiny sizes: each must learn (loss well below the uniform
//! baseline ln V), checkpoints must round-trip and resume exactly, and bad inputs must be
//! clear errors.

#[path = "../examples/common/mod.rs"]
mod common;

use common::ckpt::{params_finite, Checkpoint};
use common::lm::{char_core, word_core, LmSession, LmTrainConfig};
use common::toys;
use retrograd::nn::Module;
use retrograd::text::{BpttBatcher, CellType, CharVocab};
use retrograd::Result;

const TEXT: &str = "the quick brown fox jumps over the lazy dog. \
                    the lazy dog sleeps in the sun. the quick fox runs away.\n";

fn cfg(cell: CellType, optimizer: &str, lr: f64) -> LmTrainConfig {
    LmTrainConfig {
        cell,
        layers: 1,
        hidden: 32,
        embed: 16,
        seq: 16,
        batch: 4,
        dropout: 0.0,
        lr,
        optimizer: optimizer.into(),
        clip: Some(5.0),
        seed: 3,
    }
}

fn tail_mean(losses: &[f64], n: usize) -> f64 {
    losses[losses.len() - n..].iter().sum::<f64>() / n as f64
}

#[test]
fn char_core_learns_with_every_cell() -> Result<()> {
    let text = TEXT.repeat(4);
    for (cell, steps) in [
        (CellType::Lstm, 80),
        (CellType::Gru, 80),
        (CellType::Rnn, 80),
    ] {
        let run = char_core(&text, &cfg(cell, "adam", 0.02), steps)?;
        let uniform = (run.vocab_size as f64).ln();
        assert!(
            (run.losses[0] - uniform).abs() < 0.5,
            "{cell}: first loss {} vs ln V {uniform}",
            run.losses[0]
        );
        let end = tail_mean(&run.losses, 5);
        assert!(
            end < 0.4 * uniform,
            "{cell}: final loss {end} vs ln V {uniform}"
        );
    }
    Ok(())
}

#[test]
fn word_core_learns_with_the_default_sgd_recipe() -> Result<()> {
    // word_lm's defaults, scaled down: SGD lr 20 with clipping at 0.25
    let text = TEXT.repeat(12);
    let mut c = cfg(CellType::Lstm, "sgd", 20.0);
    c.clip = Some(0.25);
    c.seq = 8;
    let run = word_core(&text, &c, 100, 120)?;
    let uniform = (run.vocab_size as f64).ln();
    let end = tail_mean(&run.losses, 10);
    assert!(end < 0.4 * uniform, "final loss {end} vs ln V {uniform}");
    // a vocabulary limit maps rare words to <unk> and still trains
    let small = word_core(&text, &cfg(CellType::Rnn, "adam", 0.02), 8, 40)?;
    assert_eq!(small.vocab_size, 8);
    assert!(tail_mean(&small.losses, 5) < small.losses[0]);
    Ok(())
}

#[test]
fn toys_reach_full_accuracy() -> Result<()> {
    for task in [toys::apple(), toys::hello(), toys::ship()] {
        let mut seen_steps = 0;
        let report = toys::train_toy(&task, 0, |p| seen_steps = p.step)?;
        assert_eq!(
            report.accuracy, 1.0,
            "{}: {:?}",
            task.name, report.predictions
        );
        assert_eq!(seen_steps, report.losses.len());
        assert!(report.losses.len() < task.max_steps, "{}", task.name);
        let uniform = (report.vocab_size as f64).ln();
        assert!(
            *report.losses.last().unwrap() < 0.5 * uniform,
            "{}",
            task.name
        );
    }
    let apple = toys::train_toy(&toys::apple(), 0, |_| {})?;
    assert_eq!(apple.predictions, ["pple!"]);
    Ok(())
}

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "retrograd-examples-core-{}-{name}",
        std::process::id()
    ))
}

#[test]
fn checkpoint_resumes_bit_for_bit() -> Result<()> {
    let vocab = CharVocab::build(TEXT)?;
    let ids = vocab.encode(&TEXT.repeat(3))?;
    let c = cfg(CellType::Lstm, "adam", 0.01);
    let mut a = LmSession::new(&c, vocab.len(), ids.clone())?;
    a.train(3, |_, _| {})?;
    let path = temp("resume.safetensors");
    Checkpoint::capture("char_rnn", &a, vocab.to_json(), 0).save(&path)?;

    let ck = Checkpoint::load(&path, "char_rnn")?;
    assert_eq!(ck.config, *a.model.config());
    assert_eq!(CharVocab::from_json(&ck.vocab_json)?, vocab);
    let mut other = c.clone();
    other.seed = 99; // different initial weights, all replaced by the checkpoint
    let mut b = LmSession::new(&other, vocab.len(), ids)?;
    assert!(ck.state.is_some());
    assert_eq!(ck.resume(&mut b)?, 0);
    assert_eq!(b.step, 3);

    let la = a.train(3, |_, _| {})?;
    let lb = b.train(3, |_, _| {})?;
    assert_eq!(la, lb);
    for ((na, pa), (nb, pb)) in a
        .model
        .named_parameters()
        .iter()
        .zip(b.model.named_parameters())
    {
        assert_eq!(na, &nb);
        assert_eq!(pa.to_vec(), pb.to_vec(), "{na}");
    }

    // incompatible uses are errors naming the problem
    let err = Checkpoint::load(&path, "word_lm")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("char_rnn"), "{err}");
    let mut bigger = c.clone();
    bigger.hidden = 48;
    let wrong = LmSession::new(&bigger, vocab.len(), vocab.encode(TEXT)?)?;
    let err = ck.restore_model(&wrong.model).unwrap_err().to_string();
    assert!(err.contains("shape"), "{err}");
    std::fs::write(&path, b"not a checkpoint")?;
    assert!(Checkpoint::load(&path, "char_rnn").is_err());
    std::fs::remove_file(&path).ok();
    Ok(())
}

#[test]
fn nan_loss_stops_without_touching_the_weights() -> Result<()> {
    let vocab = CharVocab::build(TEXT)?;
    let mut s = LmSession::new(
        &cfg(CellType::Gru, "sgd", 0.1),
        vocab.len(),
        vocab.encode(TEXT)?,
    )?;
    s.train(2, |_, _| {})?;
    assert!(params_finite(&s.model));
    // poison the output bias: every logit, hence the loss, becomes NaN
    let params = s.model.named_parameters();
    let (_, bias) = params.iter().find(|(n, _)| n == "fc.bias").unwrap();
    bias.update(|b| b[0] = f32::NAN)?;
    let before: Vec<Vec<f32>> = params.iter().map(|(_, p)| p.to_vec()).collect();
    let err = s.step().unwrap_err();
    assert!(common::is_non_finite(&err), "{err}");
    assert!(err.to_string().contains("step 3"), "{err}");
    let after: Vec<Vec<f32>> = params.iter().map(|(_, p)| p.to_vec()).collect();
    // unchanged (NaN != NaN, so compare bit patterns)
    let bits = |v: &Vec<Vec<f32>>| -> Vec<Vec<u32>> {
        v.iter()
            .map(|p| p.iter().map(|x| x.to_bits()).collect())
            .collect()
    };
    assert_eq!(bits(&before), bits(&after));
    assert_eq!(s.step, 2);
    assert!(!params_finite(&s.model));
    Ok(())
}

#[test]
fn corpus_errors_are_clear() {
    let missing = std::path::Path::new("/nonexistent/corpus.txt");
    let err = common::read_corpus(missing).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/corpus.txt"), "{err}");
    let empty = temp("empty.txt");
    std::fs::write(&empty, "  \n").unwrap();
    let err = common::read_corpus(&empty).unwrap_err().to_string();
    assert!(err.contains("empty"), "{err}");
    std::fs::remove_file(&empty).ok();

    let c = cfg(CellType::Lstm, "adam", 0.01); // batch 4 x seq 16 needs 65 tokens
    let err = LmSession::new(&c, 10, vec![1; 64])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("shorter than one batch window"), "{err}");
    assert!(LmSession::new(&c, 10, vec![1; 65]).is_ok());
    let err = char_core("", &c, 1).unwrap_err().to_string();
    assert!(err.contains("empty"), "{err}");
    let mut bad = c.clone();
    bad.optimizer = "lbfgs".into();
    let err = LmSession::new(&bad, 10, vec![1; 65])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("lbfgs"), "{err}");
    // the validation stream can use fewer streams than training, as the examples do
    assert!(BpttBatcher::new(vec![0; 20], 1, 16).is_ok());
}
