//! Character-level language model (Karpathy's char-rnn) on the bundled Shakespeare corpus:
//! trains an LSTM (or RNN / GRU) with stateful truncated BPTT, shows a progress bar, evaluates
//! validation loss and perplexity, saves a resumable checkpoint with a CSV + SVG loss curve,
//! and prints sampled text.
//!
//! ```sh
//! cargo run --release --example char_rnn                       # train with the defaults
//! cargo run --release --example char_rnn -- --cell gru --layers 2 --steps 3000
//! cargo run --release --example char_rnn -- --resume runs/char_rnn/checkpoint.safetensors
//! cargo run --release --example char_rnn -- --sample-only runs/char_rnn/checkpoint.safetensors \
//!     --prompt "ROMEO:" --len 400 --temperature 0.7
//! ```

mod common;

/// mimalloc keeps freed pages for reuse. With the system allocator, the packing buffers that
/// `matrixmultiply` allocates for every large product go back to the OS and are faulted in
/// again: char_rnn trained at 65-79k characters/s that way against 85-87k with mimalloc.
/// Binaries built on retrograd can do the same.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use common::ckpt::{params_finite, Checkpoint};
use common::lm::{LmSession, LmTrainConfig};
use common::plot::Curve;
use common::{
    default_corpus, human, is_non_finite, prepare_out_dir, read_corpus, AnyResult, OPTIMIZERS,
};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::SeedableRng;
use retrograd::nn::Module;
use retrograd::text::{
    generate, sample_logits, train_val_split, CellType, CharVocab, LossMeter, RnnLm, SampleOptions,
};
use retrograd::{Error, Result};

const EXAMPLE: &str = "char_rnn";
/// Training loss is averaged and recorded in the curve every this many steps.
const LOG_EVERY: usize = 25;

/// Train a character-level RNN / LSTM / GRU language model and sample text from it.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Text file to train on [default: data/tinyshakespeare.txt of this crate]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Recurrent cell
    #[arg(long, default_value = "lstm", value_parser = ["rnn", "lstm", "gru"])]
    cell: String,
    /// Stacked recurrent layers
    #[arg(long, default_value_t = 1)]
    layers: usize,
    /// Hidden size
    #[arg(long, default_value_t = 256)]
    hidden: usize,
    /// Character embedding size
    #[arg(long, default_value_t = 64)]
    embed: usize,
    /// Truncated-BPTT window (characters per step and stream)
    #[arg(long, default_value_t = 64)]
    seq: usize,
    /// Parallel streams per step
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Rejected: a bidirectional model reads the future, so it cannot generate text
    #[arg(long)]
    bidirectional: bool,
    /// Dropout (embedding, between layers, before the output layer)
    #[arg(long, default_value_t = 0.0)]
    dropout: f64,
    /// Learning rate
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Optimizer: sgd, adam, adamw, rmsprop or adagrad
    #[arg(long, default_value = "adam")]
    optimizer: String,
    /// Clip the gradients' total L2 norm to this (0 = no clipping)
    #[arg(long, default_value_t = 5.0)]
    clip: f64,
    /// Training steps (windows of batch x seq characters) [default: 4000]
    #[arg(long, conflicts_with = "epochs")]
    steps: Option<usize>,
    /// Train for this many passes over the training text instead of --steps
    #[arg(long)]
    epochs: Option<usize>,
    /// Evaluate, checkpoint and plot every this many steps
    #[arg(long, default_value_t = 500)]
    eval_every: usize,
    /// Share of the text held out for validation (the end of the file)
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    /// Continue training from this checkpoint (its model and optimizer settings win)
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Only sample from this checkpoint, no training
    #[arg(long, conflicts_with = "resume")]
    sample_only: Option<PathBuf>,
    /// Text to start sampling from [default: a newline]
    #[arg(long)]
    prompt: Option<String>,
    /// Characters to sample
    #[arg(long, default_value_t = 600)]
    len: usize,
    /// Sampling temperature (0 = always the most likely character)
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    temperature: f64,
    /// Sample only among the k most likely characters
    #[arg(long)]
    top_k: Option<usize>,
    /// Seed of the initialisation, dropout and sampling
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output directory for the checkpoint and curves [default: runs/char_rnn of this crate]
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The prompt (default: a newline, or the first character) as ids, and the sampling options,
/// checked before any training so a bad `--prompt` or `--temperature` fails at once.
fn sample_setup(vocab: &CharVocab, args: &Args) -> Result<(String, Vec<usize>, SampleOptions)> {
    let prompt = match &args.prompt {
        Some(p) => p.clone(),
        None if vocab.id('\n').is_some() => "\n".to_string(),
        None => vocab.chars()[0].to_string(),
    };
    if prompt.is_empty() {
        return Err(Error::invalid("--prompt", "the prompt is empty"));
    }
    let ids = vocab.encode(&prompt).map_err(|e| e.context("--prompt"))?;
    let opts = SampleOptions {
        temperature: args.temperature,
        top_k: args.top_k,
    };
    // rejects a negative temperature or --top-k 0
    sample_logits(&[0.0], &opts, &mut StdRng::seed_from_u64(0))
        .map_err(|e| e.context("--temperature / --top-k"))?;
    Ok((prompt, ids, opts))
}

/// Samples `--len` characters after the prompt.
fn sample(model: &mut RnnLm, vocab: &CharVocab, args: &Args) -> Result<String> {
    let (prompt, ids, opts) = sample_setup(vocab, args)?;
    model.eval();
    let mut rng = StdRng::seed_from_u64(args.seed);
    let out = generate(&mut model.predictor(), &ids, args.len, &opts, &mut rng);
    model.train();
    Ok(format!("{prompt}{}", vocab.decode(&out?)?))
}

fn sample_only(path: &Path, args: &Args) -> AnyResult<()> {
    let ckpt = Checkpoint::load(path, EXAMPLE)?;
    let vocab = CharVocab::from_json(&ckpt.vocab_json)?;
    if vocab.len() != ckpt.config.vocab_size {
        return Err(format!(
            "checkpoint {}: the vocabulary has {} characters but the model {}",
            path.display(),
            vocab.len(),
            ckpt.config.vocab_size
        )
        .into());
    }
    let mut model = RnnLm::new(ckpt.config, &mut StdRng::seed_from_u64(0))?;
    ckpt.restore_model(&model)
        .map_err(|e| e.context(format!("checkpoint {}", path.display())))?;
    println!("{}", sample(&mut model, &vocab, args)?);
    Ok(())
}

fn nan_stop(e: Error, last_good: Option<usize>, ckpt: &Path) -> Box<dyn std::error::Error> {
    if !is_non_finite(&e) {
        return e.into();
    }
    let kept = match last_good {
        Some(step) => format!(
            "the last good checkpoint (step {step}) is kept at {}; resume from it with a lower \
             --lr or a --clip",
            ckpt.display()
        ),
        None => "no checkpoint had been saved yet; try a lower --lr or a --clip".to_string(),
    };
    format!("training stopped: {e}.\n{kept}").into()
}

fn config_from(args: &Args, resume: Option<&Checkpoint>) -> AnyResult<LmTrainConfig> {
    let clip = (args.clip > 0.0).then_some(args.clip);
    let Some(c) = resume else {
        return Ok(LmTrainConfig {
            cell: args.cell.parse::<CellType>()?,
            layers: args.layers,
            hidden: args.hidden,
            embed: args.embed,
            seq: args.seq,
            batch: args.batch,
            dropout: args.dropout,
            lr: args.lr,
            optimizer: args.optimizer.clone(),
            clip,
            seed: args.seed,
        });
    };
    let kind = c.optimizer_kind().unwrap_or("adam").to_ascii_lowercase();
    if !OPTIMIZERS.contains(&kind.as_str()) {
        return Err(format!("checkpoint optimizer {kind:?} is not one of {OPTIMIZERS:?}").into());
    }
    Ok(c.train_config(kind, args.lr, clip, args.seed)?)
}

fn train(args: &Args) -> AnyResult<()> {
    if args.bidirectional {
        return Err(
            "--bidirectional: a bidirectional RNN reads each sequence backwards too, so \
                    it sees the characters it should predict and cannot generate text left to \
                    right; char_rnn only trains left-to-right language models"
                .into(),
        );
    }
    let data = args.data.clone().unwrap_or_else(default_corpus);
    let text = read_corpus(&data)?;
    let (out_dir, ckpt_path) = prepare_out_dir(args.out.as_deref(), EXAMPLE)?;

    let resume = Checkpoint::load_if_given(args.resume.as_deref(), EXAMPLE)?;
    let vocab = match &resume {
        Some(c) => CharVocab::from_json(&c.vocab_json)?,
        None => CharVocab::build(&text)?,
    };
    let ids = vocab.encode(&text).map_err(|e| {
        e.context(format!(
            "corpus {} vs the checkpoint's vocabulary",
            data.display()
        ))
    })?;
    let cfg = config_from(args, resume.as_ref())?;
    sample_setup(&vocab, args)?;
    if cfg.batch == 0 || cfg.seq == 0 {
        return Err("--batch and --seq must be at least 1".into());
    }
    let (train_ids, val_ids) = train_val_split(&ids, args.val_fraction)?;
    let corpus = format!("{} ({} characters)", data.display(), ids.len());
    let (mut s, mut val) =
        LmSession::with_validation(&cfg, vocab.len(), train_ids, val_ids, &corpus)?;
    if let Some(c) = &resume {
        c.resume(&mut s)?;
        let from = args.resume.as_deref().unwrap_or(Path::new("?"));
        println!("resumed from {} at step {}", from.display(), s.step);
    }
    let per_epoch = s.batcher.iters_per_epoch();
    let steps = match (args.steps, args.epochs) {
        (Some(n), _) => n,
        (None, Some(e)) => e * per_epoch,
        (None, None) => 4000,
    };
    let tokens_per_step = cfg.batch * cfg.seq;
    println!(
        "corpus {}: {} characters, vocabulary {}, train {} / validation {}",
        data.display(),
        human(ids.len() as f64),
        vocab.len(),
        human(train_ids.len() as f64),
        human(val_ids.len() as f64)
    );
    println!(
        "model: {}, batch {} x seq {}, {} steps ({:.2} epochs)",
        s.describe(&cfg),
        cfg.batch,
        cfg.seq,
        steps,
        steps as f64 / per_epoch as f64
    );
    println!(
        "uniform baseline: loss {:.3} (perplexity {})",
        (vocab.len() as f64).ln(),
        vocab.len()
    );

    let mut curve = Curve::new(&[
        "step",
        "train_loss",
        "val_loss",
        "val_perplexity",
        "seconds",
    ]);
    let pb = ProgressBar::new(steps as u64);
    pb.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} steps  {msg}")?
            .progress_chars("=> "),
    );
    let start = Instant::now();
    let mut train_time = Duration::ZERO;
    let mut window = LossMeter::new();
    let mut last_good: Option<usize> = None;
    let mut last_val = None;
    for i in 0..steps {
        let t = Instant::now();
        let loss = s.step().map_err(|e| nan_stop(e, last_good, &ckpt_path))?;
        train_time += t.elapsed();
        window.add(loss, tokens_per_step)?;
        let tps = ((i + 1) * tokens_per_step) as f64 / train_time.as_secs_f64();
        pb.set_message(format!("loss {loss:.3} | {} tok/s", human(tps)));
        pb.inc(1);
        // global step numbers, so a resumed run logs and evaluates where the first would have
        let eval_now = s.step % args.eval_every.max(1) == 0 || i + 1 == steps;
        if s.step % LOG_EVERY != 0 && !eval_now {
            continue;
        }
        let tl = window.mean().unwrap_or(f64::NAN);
        window.reset();
        let secs = start.elapsed().as_secs_f64();
        if !eval_now {
            curve.push(vec![Some(s.step as f64), Some(tl), None, None, Some(secs)]);
            continue;
        }
        let v = s.evaluate(&mut val).map_err(|e| {
            let e = e.context(format!("validation after step {}", s.step));
            nan_stop(e, last_good, &ckpt_path)
        })?;
        let (vl, vp) = (
            v.mean().unwrap_or(f64::NAN),
            v.perplexity().unwrap_or(f64::NAN),
        );
        curve.push(vec![
            Some(s.step as f64),
            Some(tl),
            Some(vl),
            Some(vp),
            Some(secs),
        ]);
        pb.suspend(|| {
            println!(
                "step {:5} | train loss {tl:.4} | val loss {vl:.4} | val ppl {vp:7.3} | {} tok/s | {secs:.0}s",
                s.step,
                human(tps)
            )
        });
        if params_finite(&s.model) {
            let epochs = (s.step / per_epoch) as u64;
            Checkpoint::capture(EXAMPLE, &s, vocab.to_json(), epochs).save(&ckpt_path)?;
            last_good = Some(s.step);
        }
        curve.write(
            &out_dir,
            "curve",
            "char_rnn: loss",
            "loss (nats / char)",
            &[(1, "#1f77b4"), (2, "#d62728")],
        )?;
        last_val = Some((vl, vp));
    }
    pb.finish_and_clear();
    let elapsed = start.elapsed().as_secs_f64();
    if let Some((vl, vp)) = last_val {
        println!(
            "finished {steps} steps in {elapsed:.1}s ({} tok/s training): validation loss {vl:.4}, \
             perplexity {vp:.3}",
            human((steps * tokens_per_step) as f64 / train_time.as_secs_f64())
        );
    }
    println!(
        "checkpoint: {}\ncurve: {}/curve.csv, {}/curve.svg\n",
        ckpt_path.display(),
        out_dir.display(),
        out_dir.display()
    );
    println!("--- sample (temperature {}) ---", args.temperature);
    println!("{}", sample(&mut s.model, &vocab, args)?);
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.sample_only {
        Some(path) => sample_only(path, &args),
        None => train(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
