//! The three character-level toy tasks of the reference notebooks, each printing its
//! predictions as it learns and finishing at 100% next-character accuracy:
//!
//! 1. "apple" → "pple!" with a 1-layer RNN,
//! 2. the ship sentence from 10-character windows with a 2-layer RNN,
//! 3. "hello world! nice to meet you! i love iron-man" with a 1-layer RNN.
//!
//! ```sh
//! cargo run --release --example char_toys            # all three
//! cargo run --release --example char_toys -- ship    # one of apple | ship | hello
//! ```

mod common;

use std::process::ExitCode;

use clap::Parser;
use common::toys::{self, stitch, ToyProgress, ToyTask};
use common::AnyResult;

/// Character-level toy tasks from the reference notebooks.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Which toys to run (apple, ship, hello); all three if none given.
    tasks: Vec<String>,
    /// Seed of the weight initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn run_task(task: &ToyTask, seed: u64) -> AnyResult<()> {
    println!("=== {}", task.name);
    // Windows: show the first window (given) followed by the predicted next character of
    // every window, as one line of text.
    let many = task.inputs.len() > 1;
    let show = |p: &ToyProgress| {
        if many {
            stitch(&task.inputs[0], p.predictions)
        } else {
            p.predictions[0].clone()
        }
    };
    let mut solved = false;
    let report = toys::train_toy(task, seed, |p| {
        let first_solve = p.accuracy == 1.0 && !solved;
        solved |= p.accuracy == 1.0;
        if p.step % task.print_every == 0 || p.step == 1 || first_solve {
            println!(
                "step {:4}  loss {:.4}  acc {:6.2}%  prediction: {:?}",
                p.step,
                p.loss,
                100.0 * p.accuracy,
                show(p)
            );
        }
    })?;
    let target = if many {
        stitch(&task.inputs[0], &task.targets)
    } else {
        task.targets[0].clone()
    };
    println!(
        "done after {} steps (loss {:.4}): next-character accuracy {:.2}%\n  target:     {:?}\n  prediction: {:?}\n",
        report.losses.len(),
        report.losses.last().copied().unwrap_or(f64::NAN),
        100.0 * report.accuracy,
        target,
        if many { stitch(&task.inputs[0], &report.predictions) } else { report.predictions[0].clone() },
    );
    if report.accuracy < 1.0 {
        return Err(format!(
            "{}: reached only {:.2}% accuracy in {} steps",
            task.name,
            100.0 * report.accuracy,
            task.max_steps
        )
        .into());
    }
    Ok(())
}

fn run(args: Args) -> AnyResult<()> {
    let names = if args.tasks.is_empty() {
        vec!["apple".to_string(), "ship".into(), "hello".into()]
    } else {
        args.tasks
    };
    for name in names {
        let task = match name.as_str() {
            "apple" => toys::apple(),
            "ship" => toys::ship(),
            "hello" => toys::hello(),
            other => {
                return Err(format!("unknown toy {other:?}; choose apple, ship or hello").into())
            }
        };
        run_task(&task, args.seed)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
