//! Convergence on the reference notebooks' toy tasks, with the nn layers and full-batch Adam
//! (gradient norm clipped at 5), one-hot character inputs as in the notebooks (f32, seeded,
//! tiny sizes; the whole file runs in about a second in the test profile):
//!
//! * "apple" -> "pple!": 1-layer RNN, hidden 5 (PyTorch char-RNN notebook).
//! * the "if you want to build a ship ..." sentence from 10-character windows: 2-layer RNN,
//!   hidden = vocabulary size (PyTorch notebook, "좀더 응용").
//! * "hello world! nice to meet you! i love iron-man": 1-layer RNN, hidden 20 (numpy
//!   char-RNN blog post), next character at every step of the whole string.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::SeedableRng;
use retrograd::nn::rnn::{Rnn, RnnConfig};
use retrograd::nn::{CrossEntropyLoss, Linear, Module};
use retrograd::optim::{clip_grad_norm, Adam, AdamConfig, NormType, Optimizer};
use retrograd::{Result, Tensor};

/// `nn.RNN(vocab, hidden, num_layers, batch_first=True)` followed by `nn.Linear(hidden, vocab)`.
struct CharRnn {
    rnn: Rnn,
    fc: Linear,
}

impl CharRnn {
    fn new(vocab: usize, hidden: usize, layers: usize, rng: &mut StdRng) -> Result<CharRnn> {
        let cfg = RnnConfig::new(vocab, hidden)
            .num_layers(layers)
            .batch_first(true);
        Ok(CharRnn {
            rnn: Rnn::new(cfg, rng)?,
            fc: Linear::new(hidden, vocab, true, rng)?,
        })
    }

    fn named_parameters(&self) -> Vec<(String, retrograd::Parameter)> {
        let mut ps = Vec::new();
        self.rnn
            .visit_params("rnn", &mut |n, p| ps.push((n.to_string(), p.clone())));
        self.fc
            .visit_params("fc", &mut |n, p| ps.push((n.to_string(), p.clone())));
        ps
    }

    /// Scores `[N, T, V]` for one-hot inputs `[N, T, V]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (hs, _) = self.rnn.forward(x, None)?;
        self.fc.forward(&hs)
    }
}

/// `np.eye(vocab)[ids]` for `[N, T]` ids.
fn one_hot(ids: &[Vec<usize>], vocab: usize) -> Result<Tensor> {
    let (n, t) = (ids.len(), ids[0].len());
    let mut data = vec![0f32; n * t * vocab];
    for (k, &id) in ids.iter().flatten().enumerate() {
        data[k * vocab + id] = 1.0;
    }
    Tensor::from_vec(data, &[n, t, vocab])
}

/// Trains with full-batch Adam for `epochs`; returns `(first loss, last loss, last argmax)`,
/// the argmax being per (sample, step) of the last forward pass, row-major.
fn train(
    model: &CharRnn,
    x: &Tensor,
    targets: &[i64],
    lr: f64,
    epochs: usize,
) -> Result<(f32, f32, Vec<usize>)> {
    let params = model.named_parameters();
    let mut opt = Adam::new(params.clone(), AdamConfig::default().lr(lr))?;
    let ce = CrossEntropyLoss::new();
    let (mut first, mut last, mut pred) = (f32::NAN, f32::NAN, Vec::new());
    for epoch in 0..epochs {
        let scores = model.forward(x)?;
        let loss = ce.forward(&scores, targets)?;
        let mut grads = loss.backward()?;
        clip_grad_norm(
            &mut grads,
            params.iter().map(|(_, p)| p),
            5.0,
            NormType::L2,
            true,
        )?;
        opt.step(&grads)?;
        last = loss.item()?;
        if epoch == 0 {
            first = last;
        }
        if epoch + 1 == epochs {
            pred = argmax_rows(&scores);
        }
    }
    Ok((first, last, pred))
}

fn argmax_rows(scores: &Tensor) -> Vec<usize> {
    let v = *scores.shape().last().expect("scores have a class dim");
    scores
        .to_vec()
        .chunks(v)
        .map(|row| {
            (0..v)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .expect("non-empty row")
        })
        .collect()
}

/// Sorted character vocabulary and the index of each character.
fn vocab(text: &str) -> (Vec<char>, impl Fn(char) -> usize) {
    let mut chars: Vec<char> = text.chars().collect();
    chars.sort_unstable();
    chars.dedup();
    let table = chars.clone();
    (chars, move |c| {
        table.binary_search(&c).expect("char in vocab")
    })
}

#[test]
fn rnn_learns_apple_to_pple() -> Result<()> {
    // threshold: mean cross-entropy below 0.05 after 100 Adam(lr 0.1) steps, exact "pple!".
    let (chars, idx) = vocab("apple!");
    assert_eq!(chars, vec!['!', 'a', 'e', 'l', 'p']); // the notebook's char_to_index
    let x_ids: Vec<usize> = "apple".chars().map(&idx).collect();
    let y: Vec<i64> = "pple!".chars().map(|c| idx(c) as i64).collect();
    assert_eq!(x_ids, vec![1, 4, 4, 3, 2]);

    let mut rng = StdRng::seed_from_u64(2024);
    let model = CharRnn::new(5, 5, 1, &mut rng)?;
    let x = one_hot(&[x_ids], 5)?;
    let (first, last, pred) = train(&model, &x, &y, 0.1, 100)?;
    let predicted: String = pred.iter().map(|&i| chars[i]).collect();
    assert_eq!(predicted, "pple!");
    assert!(first > 1.0, "initial loss {first} should be near ln 5");
    assert!(last < 0.05, "loss {last} not below 0.05");
    Ok(())
}

const SHIP: &str = "if you want to build a ship, don't drum up people together to \
collect wood and don't assign them tasks and work, but rather \
teach them to long for the endless immensity of the sea.";

#[test]
fn two_layer_rnn_reproduces_the_ship_sentence_from_10_char_windows() -> Result<()> {
    // threshold: after 200 Adam(lr 0.05) steps, 100% next-character accuracy on every position
    // of every window whose in-window context determines the next character (1402 of 1700,
    // all 170 final steps among them), and mean cross-entropy within 0.05 of the lowest
    // reachable value (about 0.23, see below). Positions whose context is ambiguous (each
    // window starts from a zero state, so e.g. "t" at a window start is followed by different
    // characters in different windows) cannot all be right; they are not required. (The
    // notebook's lr 0.1 diverges for some seeds here; 0.05 with clipping converged on all ten
    // seeds tried.)
    let seq_len = 10;
    let text: Vec<char> = SHIP.chars().collect();
    let (chars, idx) = vocab(SHIP);
    let v = chars.len();
    assert_eq!(v, 25); // the notebook's dic_size
    let windows = text.len() - seq_len;
    assert_eq!(windows, 170);
    let x_ids: Vec<Vec<usize>> = (0..windows)
        .map(|i| text[i..i + seq_len].iter().map(|&c| idx(c)).collect())
        .collect();
    let y: Vec<i64> = (0..windows)
        .flat_map(|i| text[i + 1..i + seq_len + 1].iter().map(|&c| idx(c) as i64))
        .collect();

    // Every (window, step) sees exactly its in-window prefix from a zero state, so the best any
    // model can do there is the empirical distribution of what follows that prefix: that gives
    // which positions are determined and the lowest reachable mean cross-entropy.
    let mut next: HashMap<&[char], Vec<char>> = HashMap::new();
    for i in 0..windows {
        for t in 0..seq_len {
            next.entry(&text[i..=i + t])
                .or_default()
                .push(text[i + t + 1]);
        }
    }
    let mut determined = Vec::with_capacity(windows * seq_len);
    let mut floor = 0.0;
    for i in 0..windows {
        for t in 0..seq_len {
            let seen = &next[&text[i..=i + t]];
            let same = seen.iter().filter(|&&c| c == text[i + t + 1]).count();
            determined.push(same == seen.len());
            floor -= (same as f64 / seen.len() as f64).ln();
        }
    }
    let floor = (floor / (windows * seq_len) as f64) as f32;

    let mut rng = StdRng::seed_from_u64(7);
    let model = CharRnn::new(v, v, 2, &mut rng)?;
    let x = one_hot(&x_ids, v)?;
    let (first, last, pred) = train(&model, &x, &y, 0.05, 200)?;
    let wrong: Vec<usize> = (0..y.len())
        .filter(|&k| determined[k] && pred[k] as i64 != y[k])
        .collect();
    assert_eq!(determined.iter().filter(|&&d| d).count(), 1402);
    assert!((0..windows).all(|i| determined[i * seq_len + seq_len - 1]));
    assert!(
        wrong.is_empty(),
        "mispredicted determined positions {wrong:?}"
    );
    assert!(first > 2.5, "initial loss {first} should be near ln 25");
    assert!(
        last >= floor - 1e-4,
        "loss {last} below the reachable minimum {floor}"
    );
    assert!(
        last < floor + 0.05,
        "loss {last} not within 0.05 of {floor}"
    );
    Ok(())
}

#[test]
fn rnn_learns_hello_world_iron_man() -> Result<()> {
    // threshold: after 200 Adam(lr 0.02) steps the whole string is predicted exactly
    // (45 of 45 next characters) and the mean cross-entropy is below 0.05.
    let text = "hello world! nice to meet you! i love iron-man";
    let (chars, idx) = vocab(text);
    let ids: Vec<usize> = text.chars().map(&idx).collect();
    let x = one_hot(&[ids[..ids.len() - 1].to_vec()], chars.len())?;
    let y: Vec<i64> = ids[1..].iter().map(|&i| i as i64).collect();

    let mut rng = StdRng::seed_from_u64(46);
    let model = CharRnn::new(chars.len(), 20, 1, &mut rng)?;
    let (first, last, pred) = train(&model, &x, &y, 0.02, 200)?;
    let predicted: String = pred.iter().map(|&i| chars[i]).collect();
    assert_eq!(predicted, &text[1..]);
    assert!(first > 2.0, "initial loss {first} should be near ln 19");
    assert!(
        last < 0.05,
        "loss {last} not below 0.05 (started at {first})"
    );
    Ok(())
}
