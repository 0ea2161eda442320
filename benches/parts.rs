//! B2's step taken apart, to set beside `bench/pytorch_parts.py`: milliseconds of forward and
//! backward for the decoder with its loss, the decoder alone, and the embedding and LSTM stack
//! alone, each the median of many repeats.
//!
//! ```text
//! cargo bench --bench parts                 # default threads
//! cargo bench --bench parts -- --threads 1
//! python bench/pytorch_parts.py [--threads 1]
//! ```
//! Parts (B2's sizes: 20 x 20 tokens, vocabulary 10,000, embedding and hidden 200):
//! - `decoder+ce`: `Linear(200, 10000)` on a `[400, 200]` input, mean cross-entropy;
//! - `decoder`: the same linear layer, its output summed (no softmax);
//! - `lstm`: `Embedding(10000, 200)` and a two-layer `LSTM(200, 200)`, its output summed.
//!
//! Output lines: `part<TAB>forward_ms=..<TAB>backward_ms=..`.

use std::time::Instant;

/// As in `workloads.rs`: mimalloc keeps the large per-step buffers for reuse.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use rand::{rngs::StdRng, Rng, SeedableRng};
use retrograd::core::{Error, Result, Tensor};
use retrograd::nn::{Embedding, Linear, Lstm, RnnConfig};

/// The median of `v` (not empty).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times `forward` (building a scalar loss) and its `backward` `reps` times after three
/// warm-up repeats, and prints the medians.
fn time(name: &str, reps: usize, forward: impl Fn() -> Result<Tensor>) -> Result<()> {
    let (mut f, mut b) = (Vec::new(), Vec::new());
    for i in 0..reps + 3 {
        let t0 = Instant::now();
        let loss = forward()?;
        let t1 = Instant::now();
        let grads = loss.backward()?;
        let t2 = Instant::now();
        drop(grads);
        if i >= 3 {
            f.push((t1 - t0).as_secs_f64() * 1e3);
            b.push((t2 - t1).as_secs_f64() * 1e3);
        }
    }
    println!(
        "{name}\tforward_ms={:.2}\tbackward_ms={:.2}",
        median(f),
        median(b)
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--threads") {
        let t = args.get(i + 1).cloned().unwrap_or_default();
        let n = t
            .parse()
            .map_err(|_| Error::invalid("--threads", format!("not a count: {t}")))?;
        retrograd::core::set_num_threads(n)?;
    }
    println!("retrograd threads={}", retrograd::core::num_threads());
    let (batch, seq, vocab, width) = (20, 20, 10_000, 200);
    let n = batch * seq;
    let mut rng = StdRng::seed_from_u64(0);
    let emb = Embedding::<f32>::new(vocab, width, &mut rng)?;
    let lstm = Lstm::<f32>::new(
        RnnConfig::new(width, width).num_layers(2).batch_first(true),
        &mut rng,
    )?;
    let decoder = Linear::<f32>::new(width, vocab, true, &mut rng)?;
    let ids: Vec<usize> = (0..n).map(|_| rng.random_range(0..vocab)).collect();
    let targets: Vec<i64> = (0..n).map(|_| rng.random_range(0..vocab) as i64).collect();
    let h = Tensor::<f32>::randn(&[n, width], 0.0, 0.5, &mut rng)?.requires_grad();
    let reps = 60;
    time("decoder+ce", reps, || {
        decoder.forward(&h)?.cross_entropy(&targets)
    })?;
    time("decoder", reps, || Ok(decoder.forward(&h)?.sum_all()))?;
    time("lstm", reps, || {
        let x = emb.forward(&ids, &[batch, seq])?;
        Ok(lstm.forward(&x, None)?.0.sum_all())
    })
}
