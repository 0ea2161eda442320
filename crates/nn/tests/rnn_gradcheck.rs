//! Finite-difference checks (f64) of the gradients the tape computes through the recurrent
//! cells and stacks, w.r.t. every parameter and w.r.t. the input and initial state, plus the
//! stateful truncated-BPTT contract. Sizes are tiny (input 2, hidden 3, seq 3, batch 2).

use rand::{rngs::StdRng, SeedableRng};
use retrograd_core::{gradcheck, gradcheck_params, GradcheckOptions, Result, Tensor};
use retrograd_nn::{
    CellConfig, Gru, GruCell, Lstm, LstmCell, LstmState, Module, Nonlinearity, Rnn, RnnCell,
    RnnConfig,
};

const IN: usize = 2;
const HID: usize = 3;
const SEQ: usize = 3;
const BATCH: usize = 2;

fn randn(shape: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::randn(shape, 0.0, 1.0, &mut StdRng::seed_from_u64(seed)).expect("valid randn")
}

/// Flattens and concatenates several outputs into one tensor for gradcheck.
fn flat(ts: &[&Tensor<f64>]) -> Result<Tensor<f64>> {
    let parts = ts
        .iter()
        .map(|t| t.reshape(&[t.numel()]))
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&parts.iter().collect::<Vec<_>>(), 0)
}

fn opts() -> GradcheckOptions {
    GradcheckOptions::default()
}

// ------------------------------------------------------------------------------------- cells

fn check_rnn_cell(act: Nonlinearity) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(1);
    let cell = RnnCell::<f64>::new(CellConfig::new(IN, HID).nonlinearity(act), &mut rng)?;
    let (x, h) = (randn(&[BATCH, IN], 2), randn(&[BATCH, HID], 3));
    gradcheck_params(|| cell.forward(&x, Some(&h)), &cell.parameters(), opts())?;
    gradcheck(|t| cell.forward(&t[0], Some(&t[1])), &[x, h], opts())
}

#[test]
fn rnn_cell_tanh_gradients() -> Result<()> {
    check_rnn_cell(Nonlinearity::Tanh)
}

#[test]
fn rnn_cell_relu_gradients() -> Result<()> {
    check_rnn_cell(Nonlinearity::Relu)
}

#[test]
fn lstm_cell_gradients() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(4);
    let cell = LstmCell::<f64>::new(CellConfig::new(IN, HID), &mut rng)?;
    let (x, h, c) = (
        randn(&[BATCH, IN], 5),
        randn(&[BATCH, HID], 6),
        randn(&[BATCH, HID], 7),
    );
    let run = |x: &Tensor<f64>, h: &Tensor<f64>, c: &Tensor<f64>| -> Result<Tensor<f64>> {
        let s = cell.forward(x, Some(&LstmState::new(h.clone(), c.clone())))?;
        flat(&[&s.h, &s.c])
    };
    gradcheck_params(|| run(&x, &h, &c), &cell.parameters(), opts())?;
    gradcheck(|t| run(&t[0], &t[1], &t[2]), &[x, h, c], opts())
}

#[test]
fn gru_cell_gradients() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(8);
    let cell = GruCell::<f64>::new(CellConfig::new(IN, HID), &mut rng)?;
    let (x, h) = (randn(&[BATCH, IN], 9), randn(&[BATCH, HID], 10));
    gradcheck_params(|| cell.forward(&x, Some(&h)), &cell.parameters(), opts())?;
    gradcheck(|t| cell.forward(&t[0], Some(&t[1])), &[x, h], opts())
}

#[test]
fn gru_cell_without_bias_unbatched_gradients() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(11);
    let cell = GruCell::<f64>::new(CellConfig::new(IN, HID).bias(false), &mut rng)?;
    assert_eq!(cell.parameters().len(), 2);
    let x = randn(&[IN], 12); // unbatched
    gradcheck_params(|| cell.forward(&x, None), &cell.parameters(), opts())?;
    gradcheck(|t| cell.forward(&t[0], None), &[x], opts())
}

// ------------------------------------------------------------------------------------ stacks

/// A 2-layer bidirectional stack of one kind, run on (input, h0[, c0]) with optional lengths.
enum Stack {
    Rnn(Rnn<f64>),
    Lstm(Lstm<f64>),
    Gru(Gru<f64>),
}

impl Stack {
    fn params(&self) -> Vec<retrograd_core::Parameter<f64>> {
        match self {
            Stack::Rnn(m) => m.parameters(),
            Stack::Lstm(m) => m.parameters(),
            Stack::Gru(m) => m.parameters(),
        }
    }

    /// Output, h_n (and c_n) flattened into one tensor.
    fn run(&self, t: &[Tensor<f64>], lengths: Option<&[usize]>) -> Result<Tensor<f64>> {
        let (x, h0) = (&t[0], Some(&t[1]));
        match self {
            Stack::Rnn(m) => {
                let (o, h) = match lengths {
                    Some(l) => m.forward_with_lengths(x, l, h0)?,
                    None => m.forward(x, h0)?,
                };
                flat(&[&o, &h])
            }
            Stack::Gru(m) => {
                let (o, h) = match lengths {
                    Some(l) => m.forward_with_lengths(x, l, h0)?,
                    None => m.forward(x, h0)?,
                };
                flat(&[&o, &h])
            }
            Stack::Lstm(m) => {
                let s = LstmState::new(t[1].clone(), t[2].clone());
                let (o, s) = match lengths {
                    Some(l) => m.forward_with_lengths(x, l, Some(&s))?,
                    None => m.forward(x, Some(&s))?,
                };
                flat(&[&o, &s.h, &s.c])
            }
        }
    }
}

/// Gradchecks a 2-layer bidirectional stack w.r.t. all parameters and (input, h0[, c0]).
/// With lengths the input is batch-first, so both layouts are covered.
fn check_stack(kind: &str, proj: usize, lengths: Option<&[usize]>) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(20);
    let cfg = RnnConfig::new(IN, HID)
        .num_layers(2)
        .bidirectional(true)
        .batch_first(lengths.is_some())
        .proj_size(proj);
    let stack = match kind {
        "rnn_tanh" => Stack::Rnn(Rnn::new(cfg, &mut rng)?),
        "rnn_relu" => Stack::Rnn(Rnn::new(cfg.nonlinearity(Nonlinearity::Relu), &mut rng)?),
        "lstm" => Stack::Lstm(Lstm::new(cfg, &mut rng)?),
        _ => Stack::Gru(Gru::new(cfg, &mut rng)?),
    };
    let x_shape = if lengths.is_some() {
        [BATCH, SEQ, IN]
    } else {
        [SEQ, BATCH, IN]
    };
    let h_out = if proj > 0 { proj } else { HID };
    let mut inputs = vec![randn(&x_shape, 21), randn(&[4, BATCH, h_out], 22)];
    if kind == "lstm" {
        inputs.push(randn(&[4, BATCH, HID], 23));
    }
    gradcheck_params(|| stack.run(&inputs, lengths), &stack.params(), opts())?;
    gradcheck(|t| stack.run(t, lengths), &inputs, opts())
}

const LENGTHS: &[usize] = &[2, 3];

#[test]
fn rnn_tanh_stack_gradients() -> Result<()> {
    check_stack("rnn_tanh", 0, None)?;
    check_stack("rnn_tanh", 0, Some(LENGTHS))
}

#[test]
fn rnn_relu_stack_gradients() -> Result<()> {
    check_stack("rnn_relu", 0, None)?;
    check_stack("rnn_relu", 0, Some(LENGTHS))
}

#[test]
fn lstm_stack_gradients() -> Result<()> {
    check_stack("lstm", 0, None)?;
    check_stack("lstm", 0, Some(LENGTHS))
}

#[test]
fn lstm_proj_stack_gradients() -> Result<()> {
    check_stack("lstm", 2, None)?;
    check_stack("lstm", 2, Some(LENGTHS))
}

#[test]
fn gru_stack_gradients() -> Result<()> {
    check_stack("gru", 0, None)?;
    check_stack("gru", 0, Some(LENGTHS))
}

// ------------------------------------------------------------------------- truncated BPTT

/// Σ w ⊙ (output, h_n, c_n), a scalar loss with a fixed random weighting.
fn chunk_loss(out: &Tensor<f64>, s: &LstmState<f64>) -> Result<Tensor<f64>> {
    let y = flat(&[out, &s.h, &s.c])?;
    Ok(y.mul(&randn(y.shape(), 99))?.sum_all())
}

#[test]
fn stateful_truncated_bptt_carries_a_detached_state() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(30);
    let lstm = Lstm::<f64>::new(RnnConfig::new(IN, HID).num_layers(2), &mut rng)?;
    let x1 = randn(&[SEQ, BATCH, IN], 31).requires_grad();
    let x2 = randn(&[SEQ, BATCH, IN], 32);

    let (out1, s1) = lstm.forward(&x1, None)?;
    let carried = s1.detach();
    assert!(!carried.h.tracks_grad() && !carried.c.tracks_grad());
    let (out2, s2) = lstm.forward(&x2, Some(&carried))?;
    let g_chunk = chunk_loss(&out2, &s2)?.backward()?;
    assert!(
        g_chunk.get(&x1).is_none(),
        "the detached state must stop backprop at the chunk boundary"
    );

    // A fresh run of chunk 2 from the same values as constants gives identical gradients.
    let fresh_state = LstmState::new(
        Tensor::from_vec(s1.h.to_vec(), s1.h.shape())?,
        Tensor::from_vec(s1.c.to_vec(), s1.c.shape())?,
    );
    let (out2b, s2b) = lstm.forward(&x2, Some(&fresh_state))?;
    let g_fresh = chunk_loss(&out2b, &s2b)?.backward()?;
    for (name, p) in lstm.named_parameters() {
        let (a, b) = (g_chunk.get_id(p.id()), g_fresh.get_id(p.id()));
        assert_eq!(
            a.map(|t| t.to_vec()),
            b.map(|t| t.to_vec()),
            "gradient of {name}"
        );
    }

    // Without detach the gradient flows into chunk 1 and differs: the check above can fail.
    let (out2c, s2c) = lstm.forward(&x2, Some(&s1))?;
    let g_full = chunk_loss(&out2c, &s2c)?.backward()?;
    assert!(g_full.get(&x1).is_some());
    let w = lstm.parameters()[0].id();
    assert_ne!(
        g_full.get_id(w).map(|t| t.to_vec()),
        g_chunk.get_id(w).map(|t| t.to_vec())
    );

    // Forward values: two chunks carrying the state equal one run over the whole sequence.
    let whole = Tensor::cat(&[&x1.detach(), &x2], 0)?;
    let (out_all, s_all) = lstm.forward(&whole, None)?;
    let joined = Tensor::cat(&[&out1, &out2], 0)?;
    for (a, b) in out_all.to_vec().iter().zip(joined.to_vec()) {
        assert!((a - b).abs() < 1e-12, "chunked output {b} vs whole {a}");
    }
    for (a, b) in s_all.c.to_vec().iter().zip(s2.c.to_vec()) {
        assert!((a - b).abs() < 1e-12, "chunked c_n {b} vs whole {a}");
    }
    Ok(())
}
