//! The three character toys of the reference notebooks: one-hot characters into an Elman RNN
//! and a linear layer, trained full-batch with Adam until every next character is right.

use rand::rngs::StdRng;
use rand::SeedableRng;
use retrograd::nn::rnn::{Rnn, RnnConfig};
use retrograd::nn::{Linear, Module};
use retrograd::optim::{Adam, AdamConfig, Optimizer};
use retrograd::text::CharVocab;
use retrograd::{Error, Result, Tensor};

/// A toy task: equally long input/target strings, and the network to learn them with.
#[derive(Debug, Clone)]
pub struct ToyTask {
    /// Title printed by the example.
    pub name: &'static str,
    /// Input strings (one sequence each).
    pub inputs: Vec<String>,
    /// Targets: each input shifted by one character.
    pub targets: Vec<String>,
    /// Recurrent layers.
    pub layers: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Give up after this many steps.
    pub max_steps: usize,
    /// Print predictions every this many steps.
    pub print_every: usize,
    /// Score only the last position of each input (the character that follows a whole
    /// window), instead of every position.
    pub score_last_only: bool,
    /// Stop once accuracy is 100% and the loss is below this.
    pub stop_loss: f64,
}

/// "apple" → "pple!" with a 1-layer RNN of hidden size 5 (the first notebook toy).
pub fn apple() -> ToyTask {
    ToyTask {
        name: "apple -> pple! (1-layer RNN, hidden 5)",
        inputs: vec!["apple".into()],
        targets: vec!["pple!".into()],
        layers: 1,
        hidden: 5,
        lr: 0.1,
        max_steps: 300,
        print_every: 1,
        score_last_only: false,
        stop_loss: 0.05,
    }
}

/// The sentence of the second notebook toy.
pub const SHIP: &str = "if you want to build a ship, don't drum up people together to \
    collect wood and don't assign them tasks and work, but rather teach them to long for the \
    endless immensity of the sea.";

/// The ship sentence cut into every 10-character window, each predicting the window one
/// character later, with a 2-layer RNN whose hidden size is the vocabulary size (25).
///
/// Training uses every position (as the notebook does), but a window's first characters have
/// almost no context (an `i` starting a window is followed by `f`, `l`, `p`, `g`, `m` or `t`),
/// so accuracy is scored on what the task is about: the character that follows each whole
/// 10-character window, which the previous ten characters always determine.
pub fn ship() -> ToyTask {
    let chars: Vec<char> = SHIP.chars().collect();
    let n = 10;
    let (mut inputs, mut targets) = (vec![], vec![]);
    for i in 0..chars.len() - n {
        inputs.push(chars[i..i + n].iter().collect());
        targets.push(chars[i + 1..i + n + 1].iter().collect());
    }
    ToyTask {
        name: "the ship sentence from 10-character windows (2-layer RNN, hidden 25)",
        inputs,
        targets,
        layers: 2,
        hidden: 25,
        lr: 0.1,
        max_steps: 1000,
        print_every: 10,
        score_last_only: true,
        stop_loss: f64::INFINITY,
    }
}

/// The sentence of the third notebook toy.
pub const HELLO: &str = "hello world! nice to meet you! i love iron-man";

/// One sequence: every character of [`HELLO`] predicting the next (1-layer RNN, hidden 20).
pub fn hello() -> ToyTask {
    ToyTask {
        name: "hello world! nice to meet you! i love iron-man (1-layer RNN, hidden 20)",
        inputs: vec![HELLO[..HELLO.len() - 1].to_string()],
        targets: vec![HELLO[1..].to_string()],
        layers: 1,
        hidden: 20,
        lr: 0.05,
        max_steps: 1000,
        print_every: 2,
        score_last_only: false,
        stop_loss: 0.05,
    }
}

/// Progress of a toy run, given to the callback after every step.
pub struct ToyProgress<'a> {
    /// Step number (1-based).
    pub step: usize,
    /// Mean cross-entropy.
    pub loss: f64,
    /// Share of characters predicted right.
    pub accuracy: f64,
    /// The predicted strings, one per input.
    pub predictions: &'a [String],
}

/// The end of a toy run.
#[derive(Debug, Clone)]
pub struct ToyReport {
    /// Loss of every step.
    pub losses: Vec<f64>,
    /// Final next-character accuracy (of the final weights).
    pub accuracy: f64,
    /// The final predictions.
    pub predictions: Vec<String>,
    /// Vocabulary size.
    pub vocab_size: usize,
}

/// Trains `task` until every scored character is predicted (with the loss below
/// `stop_loss`) or `max_steps` pass; `on_step` sees every step. Accuracy and predictions come from the same forward pass
/// as the loss, so the final report describes the final weights.
pub fn train_toy(
    task: &ToyTask,
    seed: u64,
    mut on_step: impl FnMut(&ToyProgress),
) -> Result<ToyReport> {
    let all: String = task.inputs.iter().chain(&task.targets).cloned().collect();
    let vocab = CharVocab::build(&all)?;
    let v = vocab.len();
    let n = task.inputs.len();
    let len = task.inputs[0].chars().count();
    let mut x_ids = Vec::with_capacity(n * len);
    let mut targets = Vec::with_capacity(n * len);
    for (x, y) in task.inputs.iter().zip(&task.targets) {
        if x.chars().count() != len || y.chars().count() != len {
            return Err(Error::invalid(
                "toy task",
                format!("all inputs and targets must have {len} characters: {x:?} / {y:?}"),
            ));
        }
        x_ids.extend(vocab.encode(x)?);
        targets.extend(vocab.encode(y)?.into_iter().map(|t| t as i64));
    }
    // one-hot rows of the identity, (N, L, V) batch-first as in the notebooks
    let mut eye = vec![0f32; v * v];
    for i in 0..v {
        eye[i * v + i] = 1.0;
    }
    let x = Tensor::from_vec(eye, &[v, v])?
        .index_select(0, &x_ids)?
        .reshape(&[n, len, v])?;

    let mut rng = StdRng::seed_from_u64(seed);
    let cfg = RnnConfig::new(v, task.hidden)
        .num_layers(task.layers)
        .batch_first(true);
    let rnn = Rnn::<f32>::new(cfg, &mut rng)?;
    let fc = Linear::<f32>::new(task.hidden, v, true, &mut rng)?;
    let mut params = rnn.named_parameters();
    params.extend(
        fc.named_parameters()
            .into_iter()
            .map(|(k, p)| (format!("fc.{k}"), p)),
    );
    let mut opt = Adam::new(params, AdamConfig::default().lr(task.lr))?;

    let mut losses = Vec::new();
    let mut predictions = Vec::new();
    let mut accuracy = 0.0;
    for step in 1..=task.max_steps {
        let (out, _) = rnn.forward(&x, None)?;
        let logits = fc.forward(&out)?.reshape(&[n * len, v])?;
        let loss = logits.cross_entropy(&targets)?;
        let loss_value = f64::from(loss.item()?);
        if !loss_value.is_finite() {
            return Err(Error::NonFinite(format!(
                "toy loss is {loss_value} at step {step}"
            )));
        }
        let pred = argmax_rows(&logits.to_vec(), v);
        let scored = pred
            .iter()
            .zip(&targets)
            .enumerate()
            .filter(|(i, _)| !task.score_last_only || i % len == len - 1);
        let (mut right, mut total) = (0, 0);
        for (_, (p, t)) in scored {
            right += usize::from(*p as i64 == *t);
            total += 1;
        }
        accuracy = right as f64 / total as f64;
        predictions = pred
            .chunks(len)
            .map(|c| vocab.decode(c))
            .collect::<Result<Vec<_>>>()?;
        losses.push(loss_value);
        on_step(&ToyProgress {
            step,
            loss: loss_value,
            accuracy,
            predictions: &predictions,
        });
        if accuracy == 1.0 && loss_value < task.stop_loss {
            break;
        }
        let grads = loss.backward()?;
        opt.step(&grads)?;
    }
    Ok(ToyReport {
        losses,
        accuracy,
        predictions,
        vocab_size: v,
    })
}

/// Index of the largest value in each row of a row-major `[rows, cols]` buffer.
pub fn argmax_rows(data: &[f32], cols: usize) -> Vec<usize> {
    data.chunks(cols)
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
                    if x > best.1 {
                        (i, x)
                    } else {
                        best
                    }
                })
                .0
        })
        .collect()
}

/// The window predictions as one string, the way the notebook shows them: `head` (the first
/// window, in full), then the last character of every window.
pub fn stitch(head: &str, predictions: &[String]) -> String {
    let mut s = head.to_string();
    for p in predictions {
        if let Some(c) = p.chars().last() {
            s.push(c);
        }
    }
    s
}
