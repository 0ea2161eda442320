//! Word-level language model: the seeds' `SimpleRnnlm` (`--cell rnn`) or LSTM `Rnnlm` with
//! stateful truncated BPTT on a word-tokenized text file. Reports training and validation
//! perplexity every epoch, divides the learning rate by 4 whenever validation perplexity
//! fails to improve, keeps the best model as a checkpoint and plots the perplexity curves.
//!
//! ```sh
//! cargo run --release --example word_lm                        # bundled corpus as words
//! cargo run --release --example word_lm -- --data ptb.train.txt --max-vocab 10000
//! # the seed notebook's SimpleRnnlm run: first 1000 words, batch 10, seq 5, SGD 0.1
//! cargo run --release --example word_lm -- --cell rnn --limit 1000 --batch 10 --seq 5 \
//!     --embed 100 --hidden 100 --lr 0.1 --clip 0 --epochs 100 --val-fraction 0.1
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
use std::time::Instant;

use clap::Parser;
use common::ckpt::{params_finite, Checkpoint};
use common::lm::{LmSession, LmTrainConfig};
use common::plot::Curve;
use common::{default_corpus, human, is_non_finite, prepare_out_dir, read_corpus, AnyResult};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::SeedableRng;
use retrograd::nn::Module;
use retrograd::optim::{PlateauConfig, ReduceLrOnPlateau};
use retrograd::text::{
    detokenize_words, generate, tokenize_words, train_val_split, CellType, LossMeter,
    SampleOptions, WordVocab, EOS,
};
use retrograd::Error;

const EXAMPLE: &str = "word_lm";

/// Train a word-level RNN / LSTM language model with stateful truncated BPTT.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Text file; whitespace-separated words, punctuation split off, one <eos> per line
    /// (PTB files with <unk>/<eos> work as they are) [default: data/tinyshakespeare.txt]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Keep upper case (by default the text is lowercased)
    #[arg(long)]
    keep_case: bool,
    /// Use only the first N words of the corpus
    #[arg(long)]
    limit: Option<usize>,
    /// Largest vocabulary; rarer words become <unk>
    #[arg(long, default_value_t = 5000)]
    max_vocab: usize,
    /// Recurrent cell (rnn = the seeds' SimpleRnnlm)
    #[arg(long, default_value = "lstm", value_parser = ["rnn", "lstm", "gru"])]
    cell: String,
    /// Stacked recurrent layers
    #[arg(long, default_value_t = 1)]
    layers: usize,
    /// Hidden size
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// Word vector size
    #[arg(long, default_value_t = 128)]
    embed: usize,
    /// Truncated-BPTT window (words per step and stream)
    #[arg(long, default_value_t = 35)]
    seq: usize,
    /// Parallel streams per step
    #[arg(long, default_value_t = 20)]
    batch: usize,
    /// Dropout
    #[arg(long, default_value_t = 0.0)]
    dropout: f64,
    /// Learning rate (divided by 4 when validation perplexity gets worse)
    #[arg(long, default_value_t = 20.0)]
    lr: f64,
    /// Optimizer: sgd, adam, adamw, rmsprop or adagrad
    #[arg(long, default_value = "sgd")]
    optimizer: String,
    /// Clip the gradients' total L2 norm to this (0 = no clipping)
    #[arg(long, default_value_t = 0.25)]
    clip: f64,
    /// Keep the learning rate constant (the seeds' SimpleRnnlm run); by default it is divided
    /// by 4 whenever validation perplexity fails to improve
    #[arg(long)]
    no_decay: bool,
    /// Passes over the training text
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    /// Share of the text held out for validation (the end of the file)
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    /// Continue from this checkpoint (model, optimizer, learning-rate schedule)
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Seed of the initialisation, dropout and the final sample
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output directory [default: runs/word_lm of this crate]
    #[arg(long)]
    out: Option<PathBuf>,
}

fn run(args: &Args) -> AnyResult<()> {
    let data = args.data.clone().unwrap_or_else(default_corpus);
    let mut text = read_corpus(&data)?;
    if !args.keep_case {
        text = text.to_lowercase();
    }
    let mut tokens = tokenize_words(&text);
    if let Some(n) = args.limit {
        tokens.truncate(n);
    }
    let (out_dir, ckpt_path) = prepare_out_dir(args.out.as_deref(), EXAMPLE)?;
    let resume = Checkpoint::load_if_given(args.resume.as_deref(), EXAMPLE)?;
    let vocab = match &resume {
        Some(c) => WordVocab::from_json(&c.vocab_json)?,
        None => WordVocab::build_limited(&tokens, args.max_vocab)?,
    };
    let ids = vocab.encode(&tokens)?;
    let (train_ids, val_ids) = train_val_split(&ids, args.val_fraction)?;
    let clip = (args.clip > 0.0).then_some(args.clip);
    let cfg = match &resume {
        Some(c) => {
            let kind = c.optimizer_kind().unwrap_or("sgd").to_ascii_lowercase();
            c.train_config(kind, args.lr, clip, args.seed)?
        }
        None => LmTrainConfig {
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
        },
    };
    if cfg.batch == 0 || cfg.seq == 0 {
        return Err("--batch and --seq must be at least 1".into());
    }
    let corpus = format!("{} ({} words)", data.display(), ids.len());
    let (mut s, mut val) =
        LmSession::with_validation(&cfg, vocab.len(), train_ids, val_ids, &corpus)?;
    let mut sched = ReduceLrOnPlateau::new(cfg.lr, PlateauConfig::divide_by_4_when_worse())?;
    let mut first_epoch = 0;
    if let Some(c) = &resume {
        first_epoch = c.resume(&mut s)? as usize;
        if let Some(st) = &c.inner.scheduler {
            sched.load_state_dict(st)?;
        }
        println!("resumed after epoch {first_epoch}, lr {}", s.opt.lr());
    }
    let per_epoch = s.batcher.iters_per_epoch();
    let tokens_per_step = cfg.batch * cfg.seq;
    println!(
        "corpus {}: {} words, vocabulary {} ({} <unk>), train {} / validation {}",
        data.display(),
        human(ids.len() as f64),
        vocab.len(),
        vocab
            .id("<unk>")
            .map_or(0, |u| ids.iter().filter(|&&i| i == u).count()),
        human(train_ids.len() as f64),
        human(val_ids.len() as f64)
    );
    println!(
        "model: {}, clip {}, batch {} x seq {}, {} steps per epoch",
        s.describe(&cfg),
        clip.map_or("none".to_string(), |c| c.to_string()),
        cfg.batch,
        cfg.seq,
        per_epoch
    );

    let mut curve = Curve::new(&["epoch", "train_perplexity", "val_perplexity", "lr"]);
    let start = Instant::now();
    for epoch in first_epoch + 1..=first_epoch + args.epochs {
        let pb = ProgressBar::new(per_epoch as u64);
        pb.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len}  {msg}")?
                .progress_chars("=> "),
        );
        pb.set_prefix(epoch.to_string());
        let t = Instant::now();
        let mut meter = LossMeter::new();
        for i in 0..per_epoch {
            let loss = s.step().map_err(|e| stop(e, &ckpt_path))?;
            meter.add(loss, tokens_per_step)?;
            let tps = ((i + 1) * tokens_per_step) as f64 / t.elapsed().as_secs_f64();
            pb.set_message(format!("ppl {:.1} | {} tok/s", loss.exp(), human(tps)));
            pb.inc(1);
        }
        pb.finish_and_clear();
        let train_ppl = meter.perplexity().unwrap_or(f64::NAN);
        let v = s.evaluate(&mut val).map_err(|e| {
            stop(
                e.context(format!("validation after epoch {epoch}")),
                &ckpt_path,
            )
        })?;
        let val_ppl = v.perplexity().unwrap_or(f64::NAN);
        let improved = val_ppl < sched.best();
        let lr = s.opt.lr();
        curve.push(vec![
            Some(epoch as f64),
            Some(train_ppl),
            Some(val_ppl),
            Some(lr),
        ]);
        println!(
            "| epoch {epoch:3} | train perplexity {train_ppl:9.2} | val perplexity {val_ppl:9.2} | lr {lr:.3e} | {:.0}s",
            start.elapsed().as_secs_f64()
        );
        // the scheduler also tracks the best perplexity, so it runs with --no-decay too
        if sched.step_with(val_ppl) && !args.no_decay {
            println!(
                "  validation perplexity did not improve: lr {lr:.3e} -> {:.3e}",
                sched.lr()
            );
            s.opt.set_lr(sched.lr())?;
        }
        if improved && params_finite(&s.model) {
            Checkpoint::capture(EXAMPLE, &s, vocab.to_json(), epoch as u64)
                .with_scheduler(sched.state_dict())
                .save(&ckpt_path)?;
        }
        curve.write(
            &out_dir,
            "curve",
            "word_lm: perplexity per epoch",
            "perplexity",
            &[(1, "#1f77b4"), (2, "#d62728")],
        )?;
    }
    println!(
        "best validation perplexity {:.2}; checkpoint {} (best epoch), curve {}/curve.svg",
        sched.best(),
        ckpt_path.display(),
        out_dir.display()
    );
    let start_id = vocab.id(EOS).unwrap_or(0);
    s.model.eval();
    let opts = SampleOptions {
        temperature: 0.8,
        top_k: None,
    };
    let mut rng = StdRng::seed_from_u64(args.seed);
    let out = generate(&mut s.model.predictor(), &[start_id], 60, &opts, &mut rng)?;
    println!("--- sample ---\n{}", detokenize_words(&vocab.decode(&out)?));
    Ok(())
}

/// A clear message for a NaN loss: training stops, the best checkpoint stays.
fn stop(e: Error, ckpt: &Path) -> Box<dyn std::error::Error> {
    if is_non_finite(&e) {
        format!(
            "training stopped: {e}.\nThe checkpoint of the best epoch so far (if any) is kept at {}; \
             try a lower --lr or a smaller --clip",
            ckpt.display()
        )
        .into()
    } else {
        e.into()
    }
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
