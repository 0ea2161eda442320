//! Shapes, names, modes and error handling of the recurrent cells and stacks: every layout
//! combination, unbatched input, variable lengths, inter-layer dropout, and errors (returned,
//! never panics).

use std::panic::{catch_unwind, AssertUnwindSafe};

use rand::{rngs::StdRng, SeedableRng};
use retrograd_core::{Result, Tensor};
use retrograd_nn::{
    CellConfig, Gru, GruCell, Lstm, LstmCell, LstmState, Module, Nonlinearity, Rnn, RnnCell,
    RnnConfig,
};

const IN: usize = 3;
const HID: usize = 4;
const L: usize = 5;
const N: usize = 3;

fn randn(shape: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::randn(shape, 0.0, 1.0, &mut StdRng::seed_from_u64(seed)).expect("valid randn")
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Rnn,
    Lstm,
    Gru,
}

/// Any of the three stacks behind one call: returns (output, h_n, c_n).
enum AnyStack {
    Rnn(Rnn<f64>),
    Lstm(Lstm<f64>),
    Gru(Gru<f64>),
}

type Out = (Tensor<f64>, Tensor<f64>, Option<Tensor<f64>>);

impl AnyStack {
    fn new(kind: Kind, cfg: RnnConfig, seed: u64) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        Ok(match kind {
            Kind::Rnn => AnyStack::Rnn(Rnn::new(cfg, &mut rng)?),
            Kind::Lstm => AnyStack::Lstm(Lstm::new(cfg, &mut rng)?),
            Kind::Gru => AnyStack::Gru(Gru::new(cfg, &mut rng)?),
        })
    }

    fn module(&mut self) -> &mut dyn Module<f64> {
        match self {
            AnyStack::Rnn(m) => m,
            AnyStack::Lstm(m) => m,
            AnyStack::Gru(m) => m,
        }
    }

    fn run(
        &self,
        x: &Tensor<f64>,
        lengths: Option<&[usize]>,
        h0: Option<&Tensor<f64>>,
        c0: Option<&Tensor<f64>>,
    ) -> Result<Out> {
        match self {
            AnyStack::Rnn(m) => {
                let (o, h) = match lengths {
                    Some(l) => m.forward_with_lengths(x, l, h0)?,
                    None => m.forward(x, h0)?,
                };
                Ok((o, h, None))
            }
            AnyStack::Gru(m) => {
                let (o, h) = match lengths {
                    Some(l) => m.forward_with_lengths(x, l, h0)?,
                    None => m.forward(x, h0)?,
                };
                Ok((o, h, None))
            }
            AnyStack::Lstm(m) => {
                let s = match (h0, c0) {
                    (Some(h), Some(c)) => Some(LstmState::new(h.clone(), c.clone())),
                    _ => None,
                };
                let (o, s) = match lengths {
                    Some(l) => m.forward_with_lengths(x, l, s.as_ref())?,
                    None => m.forward(x, s.as_ref())?,
                };
                Ok((o, s.h, Some(s.c)))
            }
        }
    }
}

/// Asserts that `f` returns an error (not Ok, not a panic) whose message contains every part.
fn expect_err<T>(f: impl FnOnce() -> Result<T>, parts: &[&str]) {
    let message = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(_)) => panic!("expected an error containing {parts:?}, got Ok"),
        Ok(Err(e)) => e.to_string(),
        Err(_) => panic!("expected an error containing {parts:?}, got a panic"),
    };
    for part in parts {
        assert!(
            message.contains(part),
            "{message:?} should contain {part:?}"
        );
    }
}

fn assert_close(a: &Tensor<f64>, b: &Tensor<f64>, what: &str) {
    assert_eq!(a.shape(), b.shape(), "{what}: shapes");
    for (i, (x, y)) in a.to_vec().iter().zip(b.to_vec()).enumerate() {
        assert!((x - y).abs() < 1e-12, "{what}: element {i}: {x} vs {y}");
    }
}

#[test]
fn stack_shapes_for_every_layout() -> Result<()> {
    let mut checked = 0;
    for kind in [Kind::Rnn, Kind::Lstm, Kind::Gru] {
        for layers in [1, 2] {
            for bi in [false, true] {
                for bf in [false, true] {
                    let projs: &[usize] = if kind == Kind::Lstm { &[0, 2] } else { &[0] };
                    for &proj in projs {
                        let cfg = RnnConfig::new(IN, HID)
                            .num_layers(layers)
                            .bidirectional(bi)
                            .batch_first(bf)
                            .proj_size(proj);
                        let stack = AnyStack::new(kind, cfg, 1)?;
                        let (d, h_out) =
                            (if bi { 2 } else { 1 }, if proj > 0 { proj } else { HID });
                        let s = layers * d;
                        let x = randn(if bf { &[N, L, IN] } else { &[L, N, IN] }, 2);
                        let out_shape = if bf {
                            [N, L, d * h_out]
                        } else {
                            [L, N, d * h_out]
                        };
                        let h0 = randn(&[s, N, h_out], 3);
                        let c0 = randn(&[s, N, HID], 4);
                        let lengths = [L, 2, 4];
                        for (state, lens) in [
                            (false, None),
                            (true, None),
                            (false, Some(&lengths[..])),
                            (true, Some(&lengths[..])),
                        ] {
                            let (h, c) = if state {
                                (Some(&h0), Some(&c0))
                            } else {
                                (None, None)
                            };
                            let (o, h_n, c_n) = stack.run(&x, lens, h, c)?;
                            let what = format!("{kind:?} {cfg:?} state {state} lengths {lens:?}");
                            assert_eq!(o.shape(), &out_shape, "{what}: output");
                            assert_eq!(h_n.shape(), &[s, N, h_out], "{what}: h_n");
                            if kind == Kind::Lstm {
                                let c_n = c_n.expect("lstm returns c_n");
                                assert_eq!(c_n.shape(), &[s, N, HID], "{what}: c_n");
                            }
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(checked, 4 * (8 + 16 + 8));
    Ok(())
}

#[test]
fn unbatched_input_matches_a_batch_of_one() -> Result<()> {
    for kind in [Kind::Rnn, Kind::Lstm, Kind::Gru] {
        for bf in [false, true] {
            let cfg = RnnConfig::new(IN, HID)
                .num_layers(2)
                .bidirectional(true)
                .batch_first(bf);
            let stack = AnyStack::new(kind, cfg, 5)?;
            let x = randn(&[L, IN], 6); // (L, H_in) whatever batch_first says
            let (h0, c0) = (randn(&[4, HID], 7), randn(&[4, HID], 8));
            let (o, h_n, c_n) = stack.run(&x, None, Some(&h0), Some(&c0))?;
            assert_eq!(o.shape(), &[L, 2 * HID]);
            assert_eq!(h_n.shape(), &[4, HID]);
            let xb = if bf { x.unsqueeze(0)? } else { x.unsqueeze(1)? };
            let (ob, hb, cb) =
                stack.run(&xb, None, Some(&h0.unsqueeze(1)?), Some(&c0.unsqueeze(1)?))?;
            assert_close(&o, &ob.reshape(&[L, 2 * HID])?, "unbatched output");
            assert_close(&h_n, &hb.reshape(&[4, HID])?, "unbatched h_n");
            if let (Some(c), Some(cb)) = (c_n, cb) {
                assert_close(&c, &cb.reshape(&[4, HID])?, "unbatched c_n");
            }
        }
    }
    Ok(())
}

#[test]
fn parameter_names_and_shapes_follow_pytorch() -> Result<()> {
    let cfg = RnnConfig::new(IN, HID)
        .num_layers(2)
        .bidirectional(true)
        .proj_size(2);
    let lstm = Lstm::<f64>::new(cfg, &mut StdRng::seed_from_u64(9))?;
    let got: Vec<(String, Vec<usize>)> = lstm
        .named_parameters()
        .into_iter()
        .map(|(n, p)| (n, p.shape().to_vec()))
        .collect();
    let mut expected = Vec::new();
    for layer in 0..2 {
        let input = if layer == 0 { IN } else { 4 };
        for suffix in ["", "_reverse"] {
            let s = |name: &str| format!("{name}_l{layer}{suffix}");
            expected.push((s("weight_ih"), vec![16, input]));
            expected.push((s("weight_hh"), vec![16, 2]));
            expected.push((s("bias_ih"), vec![16]));
            expected.push((s("bias_hh"), vec![16]));
            expected.push((s("weight_hr"), vec![2, HID]));
        }
    }
    assert_eq!(got, expected);

    let gru = Gru::<f64>::new(
        RnnConfig::new(IN, HID).bias(false),
        &mut StdRng::seed_from_u64(9),
    )?;
    let names: Vec<String> = gru.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["weight_ih_l0", "weight_hh_l0"]);

    let cell = LstmCell::<f64>::new(CellConfig::new(IN, HID), &mut StdRng::seed_from_u64(9))?;
    let names: Vec<String> = cell
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]);
    Ok(())
}

#[test]
fn init_is_uniform_within_one_over_sqrt_hidden() -> Result<()> {
    let gru = Gru::<f64>::new(
        RnnConfig::new(IN, 16).num_layers(2),
        &mut StdRng::seed_from_u64(10),
    )?;
    let bound = 1.0 / 4.0;
    let values: Vec<f64> = gru.parameters().iter().flat_map(|p| p.to_vec()).collect();
    assert!(values.iter().all(|v| v.abs() <= bound));
    let (min, max) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    assert!(
        min < -0.9 * bound && max > 0.9 * bound,
        "spread [{min}, {max}]"
    );
    Ok(())
}

#[test]
fn lengths_keep_padding_out_of_states_and_outputs() -> Result<()> {
    let lengths = [5, 2, 4];
    for kind in [Kind::Rnn, Kind::Lstm, Kind::Gru] {
        let cfg = RnnConfig::new(IN, HID).num_layers(2).bidirectional(true);
        let stack = AnyStack::new(kind, cfg, 11)?;
        // Padding full of NaN must not reach anything.
        let mut data = randn(&[L, N, IN], 12).to_vec();
        for (i, v) in data.iter_mut().enumerate() {
            let (t, n) = (i / (N * IN), (i / IN) % N);
            if t >= lengths[n] {
                *v = f64::NAN;
            }
        }
        let x = Tensor::from_vec(data, &[L, N, IN])?.requires_grad();
        let (o, h_n, c_n) = stack.run(&x, Some(&lengths), None, None)?;
        let ov = o.to_vec();
        for t in 0..L {
            for n in 0..N {
                let row = &ov[(t * N + n) * 2 * HID..(t * N + n + 1) * 2 * HID];
                if t >= lengths[n] {
                    assert!(
                        row.iter().all(|&v| v == 0.0),
                        "{kind:?}: padded output at t={t}, n={n}"
                    );
                } else {
                    assert!(row.iter().all(|v| v.is_finite()));
                }
            }
        }
        // Each sequence equals the sequence run alone on its valid steps.
        for (n, &len) in lengths.iter().enumerate() {
            let alone = x.detach().narrow(0, 0, len)?.select(1, n)?;
            let (oa, ha, ca) = stack.run(&alone, None, None, None)?;
            assert_close(
                &o.narrow(0, 0, len)?.select(1, n)?,
                &oa,
                "output of one sequence",
            );
            assert_close(&h_n.select(1, n)?, &ha, "h_n of one sequence");
            if let (Some(c), Some(ca)) = (&c_n, ca) {
                assert_close(&c.select(1, n)?, &ca, "c_n of one sequence");
            }
        }
        let grads = o.sum_all().add(&h_n.sum_all())?.backward()?;
        let gx = grads.get(&x).expect("input gradient").to_vec();
        assert!(
            gx.iter().all(|v| v.is_finite()),
            "{kind:?}: input gradient is finite"
        );
    }
    Ok(())
}

#[test]
fn dropout_acts_between_layers_in_training_only() -> Result<()> {
    let x = randn(&[L, N, IN], 13);
    let cfg = RnnConfig::new(IN, HID).num_layers(2).dropout(0.5);
    let mut gru = AnyStack::new(Kind::Gru, cfg, 14)?;
    let (a, _, _) = gru.run(&x, None, None, None)?;
    let (b, _, _) = gru.run(&x, None, None, None)?;
    assert_ne!(a.to_vec(), b.to_vec(), "training: fresh masks each call");
    gru.module().eval();
    let (e1, _, _) = gru.run(&x, None, None, None)?;
    let (e2, _, _) = gru.run(&x, None, None, None)?;
    assert_eq!(e1.to_vec(), e2.to_vec());
    assert_ne!(a.to_vec(), e1.to_vec());
    let plain = AnyStack::new(Kind::Gru, cfg.dropout(0.0), 99)?;
    if let AnyStack::Gru(g) = &mut gru {
        if let AnyStack::Gru(p) = &plain {
            p.load_state_dict(&g.state_dict(), true)?;
        }
    }
    let (p, _, _) = plain.run(&x, None, None, None)?;
    assert_eq!(p.to_vec(), e1.to_vec(), "eval equals no dropout");

    // A single layer has no inter-layer dropout: training equals eval.
    let mut one = AnyStack::new(Kind::Lstm, RnnConfig::new(IN, HID).dropout(0.5), 15)?;
    let (t, _, _) = one.run(&x, None, None, None)?;
    one.module().eval();
    let (e, _, _) = one.run(&x, None, None, None)?;
    assert_eq!(t.to_vec(), e.to_vec());
    Ok(())
}

#[test]
fn cell_shapes_batched_and_unbatched() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(16);
    let rnn = RnnCell::<f64>::new(
        CellConfig::new(IN, HID).nonlinearity(Nonlinearity::Relu),
        &mut rng,
    )?;
    let lstm = LstmCell::<f64>::new(CellConfig::new(IN, HID), &mut rng)?;
    let gru = GruCell::<f64>::new(CellConfig::new(IN, HID).bias(false), &mut rng)?;
    let x = randn(&[N, IN], 17);
    assert_eq!(rnn.forward(&x, None)?.shape(), &[N, HID]);
    assert_eq!(gru.forward(&x, None)?.shape(), &[N, HID]);
    let s = lstm.forward(&x, None)?;
    assert_eq!((s.h.shape(), s.c.shape()), (&[N, HID][..], &[N, HID][..]));
    let x1 = randn(&[IN], 18);
    let h = gru.forward(&x1, None)?;
    assert_eq!(h.shape(), &[HID]);
    let batched = gru.forward(&x1.unsqueeze(0)?, None)?;
    assert_close(&h, &batched.squeeze(0)?, "unbatched cell");
    let s = lstm.forward(&x1, None)?;
    assert_eq!(lstm.forward(&x1, Some(&s))?.c.shape(), &[HID]);
    Ok(())
}

#[test]
fn bad_inputs_are_errors_naming_the_problem() -> Result<()> {
    let cfg = RnnConfig::new(IN, HID).num_layers(2);
    let lstm = Lstm::<f64>::new(cfg, &mut StdRng::seed_from_u64(19))?;
    let x = randn(&[L, N, IN], 20);
    let state = |h: &[usize], c: &[usize]| LstmState::new(randn(h, 21), randn(c, 22));

    let bad_x = randn(&[L, N, 5], 23);
    expect_err(
        || lstm.forward(&bad_x, None),
        &["lstm", "input has 5 features, expected input_size 3"],
    );
    let rank4 = randn(&[2, L, N, IN], 23);
    expect_err(|| lstm.forward(&rank4, None), &["lstm", "[2, 5, 3, 3]"]);
    let empty = Tensor::zeros(&[0, N, IN]);
    expect_err(
        || lstm.forward(&empty, None),
        &["lstm", "sequence length 0"],
    );
    let s = state(&[2, 2, HID], &[2, N, HID]);
    expect_err(
        || lstm.forward(&x, Some(&s)),
        &["h0 has shape [2, 2, 4], expected [2, 3, 4]"],
    );
    let s = state(&[2, N, HID], &[1, N, HID]);
    expect_err(
        || lstm.forward(&x, Some(&s)),
        &["c0 has shape [1, 3, 4], expected [2, 3, 4]"],
    );
    let run = |lengths: &[usize]| lstm.forward_with_lengths(&x, lengths, None);
    expect_err(|| run(&[5, 0, 2]), &["lengths[1] = 0 is outside 1..=5"]);
    expect_err(|| run(&[5, 6, 2]), &["lengths[1] = 6 is outside 1..=5"]);
    expect_err(
        || run(&[5, 2]),
        &["lengths has 2 entries, expected batch size 3"],
    );

    let cfg = RnnConfig::new(IN, HID).bidirectional(true);
    let gru = Gru::<f64>::new(cfg, &mut StdRng::seed_from_u64(24))?;
    let (x1, h1) = (randn(&[L, IN], 25), randn(&[2, 1, HID], 26));
    expect_err(
        || gru.forward(&x1, Some(&h1)),
        &["gru", "h0 has shape [2, 1, 4], expected [2, 4]"],
    );

    let cell = GruCell::<f64>::new(CellConfig::new(IN, HID), &mut StdRng::seed_from_u64(27))?;
    let (xc, hc, x3) = (
        randn(&[N, 2], 28),
        randn(&[N, 5], 29),
        randn(&[1, N, IN], 28),
    );
    let x2 = randn(&[N, IN], 30);
    expect_err(
        || cell.forward(&xc, None),
        &["gru_cell", "input has 2 features"],
    );
    expect_err(
        || cell.forward(&x2, Some(&hc)),
        &["h has shape [3, 5], expected [3, 4]"],
    );
    expect_err(|| cell.forward(&x3, None), &["gru_cell", "[1, 3, 3]"]);
    Ok(())
}

#[test]
fn bad_configs_are_errors_naming_the_value() {
    let mut rng = StdRng::seed_from_u64(30);
    let base = RnnConfig::new(IN, HID);
    let relu = Nonlinearity::Relu;
    let r = &mut rng;
    expect_err(
        || Lstm::<f32>::new(RnnConfig::new(IN, 0), r),
        &["lstm", "hidden_size must be positive, got 0"],
    );
    expect_err(
        || Gru::<f32>::new(RnnConfig::new(0, HID), r),
        &["gru", "input_size must be positive, got 0"],
    );
    expect_err(
        || Rnn::<f32>::new(base.num_layers(0), r),
        &["rnn", "num_layers must be at least 1"],
    );
    expect_err(
        || Lstm::<f32>::new(base.dropout(1.0), r),
        &["dropout must be in [0, 1), got 1"],
    );
    expect_err(|| Lstm::<f32>::new(base.dropout(-0.1), r), &["got -0.1"]);
    expect_err(|| Lstm::<f32>::new(base.dropout(f64::NAN), r), &["got NaN"]);
    expect_err(
        || Lstm::<f32>::new(base.proj_size(4), r),
        &["proj_size 4 must be smaller than hidden_size 4"],
    );
    expect_err(
        || Gru::<f32>::new(base.proj_size(2), r),
        &["gru", "proj_size 2 is only supported by lstm"],
    );
    expect_err(
        || Rnn::<f32>::new(base.proj_size(2), r),
        &["rnn", "proj_size 2"],
    );
    expect_err(
        || Lstm::<f32>::new(base.nonlinearity(relu), r),
        &["lstm", "nonlinearity relu"],
    );
    let cell = CellConfig::new(IN, HID);
    expect_err(
        || LstmCell::<f32>::new(cell.nonlinearity(relu), r),
        &["lstm_cell", "relu"],
    );
    expect_err(
        || RnnCell::<f32>::new(CellConfig::new(IN, 0), r),
        &["rnn_cell", "hidden_size"],
    );
}

#[test]
fn bidirectional_stacks_give_the_same_bits_on_one_and_two_threads() -> Result<()> {
    // The two directions are built on two threads when the pool has two; outputs, states and
    // gradients must not depend on that.
    let run = |threads: usize, kind: Kind| -> Result<Vec<Vec<f64>>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool");
        pool.install(|| {
            let cfg = RnnConfig::new(IN, HID).num_layers(2).bidirectional(true);
            let stack = AnyStack::new(kind, cfg, 21)?;
            let x = randn(&[L, N, IN], 22).requires_grad();
            let (o, h_n, c_n) = stack.run(&x, None, None, None)?;
            let loss = o.tanh().sum_all().add(&h_n.sum_all())?;
            let grads = loss.backward()?;
            let mut out = vec![
                o.to_vec(),
                h_n.to_vec(),
                grads.get(&x).expect("dx").to_vec(),
            ];
            out.extend(c_n.map(|c| c.to_vec()));
            Ok(out)
        })
    };
    for kind in [Kind::Rnn, Kind::Lstm, Kind::Gru] {
        assert_eq!(run(1, kind)?, run(2, kind)?, "{kind:?}");
    }
    Ok(())
}
