//! A recurrent stack fed straight from an [`Embedding`] projects the embedding table instead
//! of every looked-up row (`(T[ids]) W = (T W)[ids]`). These tests check that this is
//! invisible: outputs, states and every gradient match the same stack fed a copy of the
//! embedded input (which the stack cannot see through), for all three cell kinds, both
//! layouts and padded batches, and the gradients also pass a finite-difference check.

use rand::{rngs::StdRng, SeedableRng};
use retrograd_core::{gradcheck_params, GradcheckOptions, Parameter, Result, Tensor};
use retrograd_nn::{Embedding, Gru, Lstm, Module, Rnn, RnnConfig};

const VOCAB: usize = 4;
const DIM: usize = 3;
const HID: usize = 2;
const SEQ: usize = 5;
const BATCH: usize = 3;
/// 15 ids from a table of 4 rows, so the stack takes the table route.
const IDS: [usize; SEQ * BATCH] = [0, 3, 1, 1, 2, 0, 3, 3, 2, 1, 0, 2, 2, 1, 3];
const LENGTHS: [usize; BATCH] = [5, 2, 4];

enum Stack {
    Rnn(Rnn<f64>),
    Lstm(Lstm<f64>),
    Gru(Gru<f64>),
}

struct Model {
    emb: Embedding<f64>,
    stack: Stack,
    batch_first: bool,
    lengths: bool,
}

impl Model {
    fn new(kind: &str, batch_first: bool, lengths: bool) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(7);
        let emb = Embedding::new(VOCAB, DIM, &mut rng)?;
        let cfg = RnnConfig::new(DIM, HID)
            .num_layers(2)
            .bidirectional(true)
            .batch_first(batch_first);
        let stack = match kind {
            "rnn" => Stack::Rnn(Rnn::new(cfg, &mut rng)?),
            "lstm" => Stack::Lstm(Lstm::new(cfg, &mut rng)?),
            _ => Stack::Gru(Gru::new(cfg, &mut rng)?),
        };
        Ok(Model {
            emb,
            stack,
            batch_first,
            lengths,
        })
    }

    fn params(&self) -> Vec<Parameter<f64>> {
        let mut ps = self.emb.parameters();
        ps.extend(match &self.stack {
            Stack::Rnn(m) => m.parameters(),
            Stack::Lstm(m) => m.parameters(),
            Stack::Gru(m) => m.parameters(),
        });
        ps
    }

    /// Output and final state(s), flattened into one vector. With `copy`, the embedded
    /// input passes through `× 1` first, which hides the lookup from the stack.
    fn run(&self, copy: bool) -> Result<Tensor<f64>> {
        let shape = if self.batch_first {
            [BATCH, SEQ]
        } else {
            [SEQ, BATCH]
        };
        let mut x = self.emb.forward(&IDS, &shape)?;
        if copy {
            x = x.mul_scalar(1.0);
        }
        let lengths = self.lengths.then_some(&LENGTHS[..]);
        let parts = match &self.stack {
            Stack::Rnn(m) => {
                let (o, h) = match lengths {
                    Some(l) => m.forward_with_lengths(&x, l, None)?,
                    None => m.forward(&x, None)?,
                };
                vec![o, h]
            }
            Stack::Gru(m) => {
                let (o, h) = match lengths {
                    Some(l) => m.forward_with_lengths(&x, l, None)?,
                    None => m.forward(&x, None)?,
                };
                vec![o, h]
            }
            Stack::Lstm(m) => {
                let (o, s) = match lengths {
                    Some(l) => m.forward_with_lengths(&x, l, None)?,
                    None => m.forward(&x, None)?,
                };
                vec![o, s.h, s.c]
            }
        };
        let flat = parts
            .iter()
            .map(|t| t.reshape(&[t.numel()]))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&flat.iter().collect::<Vec<_>>(), 0)
    }

    /// The values and every parameter's gradient of a weighted sum of `run(copy)`.
    fn values_and_grads(&self, copy: bool) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
        let y = self.run(copy)?;
        let n = y.numel();
        let weights = Tensor::from_vec((0..n).map(|i| (i as f64 * 0.37).sin()).collect(), &[n])?;
        let grads = y.mul(&weights)?.sum_all().backward()?;
        let per_param = self
            .params()
            .iter()
            .map(|p| {
                grads
                    .get_id(p.id())
                    .map(|g| g.to_vec())
                    .unwrap_or_else(|| vec![0.0; p.numel()])
            })
            .collect();
        Ok((y.to_vec(), per_param))
    }
}

fn assert_near(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-12 * (1.0 + y.abs()),
            "{what}[{i}]: {x} through the table vs {y} through the copy"
        );
    }
}

fn check(kind: &str) -> Result<()> {
    for (batch_first, lengths) in [(false, false), (true, false), (true, true), (false, true)] {
        let model = Model::new(kind, batch_first, lengths)?;
        let case = format!("{kind} batch_first={batch_first} lengths={lengths}");
        let (y_table, g_table) = model.values_and_grads(false)?;
        let (y_copy, g_copy) = model.values_and_grads(true)?;
        assert_near(&y_table, &y_copy, &format!("{case}: output"));
        let names = model.emb.named_parameters().into_iter().map(|(n, _)| n);
        let names: Vec<String> = names
            .chain(
                match &model.stack {
                    Stack::Rnn(m) => m.named_parameters(),
                    Stack::Lstm(m) => m.named_parameters(),
                    Stack::Gru(m) => m.named_parameters(),
                }
                .into_iter()
                .map(|(n, _)| n),
            )
            .collect();
        for ((name, a), b) in names.iter().zip(&g_table).zip(&g_copy) {
            assert_near(a, b, &format!("{case}: d/d{name}"));
        }
        // the embedding table really receives a gradient through the table route
        assert!(
            g_table[0].iter().any(|g| g.abs() > 1e-6),
            "{case}: no table gradient"
        );
        gradcheck_params(
            || model.run(false),
            &model.params(),
            GradcheckOptions::default(),
        )?;
    }
    Ok(())
}

#[test]
fn rnn_fed_by_an_embedding_matches_a_copy_of_its_input() -> Result<()> {
    check("rnn")
}

#[test]
fn lstm_fed_by_an_embedding_matches_a_copy_of_its_input() -> Result<()> {
    check("lstm")
}

#[test]
fn gru_fed_by_an_embedding_matches_a_copy_of_its_input() -> Result<()> {
    check("gru")
}
