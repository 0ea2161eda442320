//! Unit tests of Linear, Embedding, Dropout and state-dict naming/loading.

use std::panic::{catch_unwind, AssertUnwindSafe};

use rand::rngs::StdRng;
use rand::SeedableRng;
use retrograd_core::{gradcheck, gradcheck_params, Error, GradcheckOptions, Parameter, Tensor};
use retrograd_nn::{join_name, Dropout, Embedding, Linear, Module, StateDict};

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Runs `f`, asserting it neither panics nor succeeds, and returns the error message.
fn err_of<T>(what: &str, f: impl FnOnce() -> retrograd_core::Result<T>) -> String {
    match catch_unwind(AssertUnwindSafe(f)) {
        Err(_) => panic!("{what}: panicked instead of returning Err"),
        Ok(Ok(_)) => panic!("{what}: succeeded, expected an error"),
        Ok(Err(e)) => e.to_string(),
    }
}

fn assert_close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol, "{what}[{i}]: {x} vs {y}");
    }
}

#[test]
fn linear_output_shapes() {
    let fc = Linear::<f32>::new(4, 3, true, &mut rng(0)).unwrap();
    assert_eq!((fc.in_features(), fc.out_features()), (4, 3));
    for (input, output) in [
        (vec![4], vec![3]),
        (vec![5, 4], vec![5, 3]),
        (vec![2, 5, 4], vec![2, 5, 3]),
        (vec![2, 1, 3, 4], vec![2, 1, 3, 3]),
        (vec![0, 4], vec![0, 3]),
    ] {
        let y = fc.forward(&Tensor::ones(&input)).unwrap();
        assert_eq!(y.shape(), &output[..], "input {input:?}");
    }
}

#[test]
fn linear_init_stays_within_bound_and_uses_the_range() {
    let fc = Linear::<f64>::new(64, 256, true, &mut rng(1)).unwrap();
    let bound = 1.0 / 8.0;
    for (name, p) in fc.named_parameters() {
        let v = p.to_vec();
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
        assert!(
            lo >= -bound && hi <= bound,
            "{name}: range [{lo}, {hi}] exceeds ±{bound}"
        );
        assert!(
            lo < -0.95 * bound && hi > 0.95 * bound,
            "{name}: range [{lo}, {hi}] barely used"
        );
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        // U(-b, b): mean 0, variance b²/3.
        assert!(
            mean.abs() < 4.0 * bound / (3.0 * n).sqrt(),
            "{name}: mean {mean}"
        );
        assert!(
            (var / (bound * bound / 3.0) - 1.0).abs() < 0.15,
            "{name}: var {var}"
        );
    }
    // a different in_features changes the bound
    let wide = Linear::<f64>::new(400, 8, false, &mut rng(2)).unwrap();
    assert!(wide.weight.to_vec().iter().all(|w| w.abs() <= 0.05));
}

#[test]
fn embedding_init_is_standard_normal() {
    let emb = Embedding::<f64>::new(100, 100, &mut rng(3)).unwrap();
    let v = emb.weight.to_vec();
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    assert!(mean.abs() < 0.04, "mean {mean}");
    assert!((std - 1.0).abs() < 0.03, "std {std}");
    assert!(
        v.iter().any(|x| x.abs() > 3.0),
        "no tail values in 10000 N(0,1) draws"
    );
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let fc = Linear::<f32>::new(4, 3, true, &mut rng(0)).unwrap();
    let e = err_of("linear last dim", || fc.forward(&Tensor::ones(&[2, 5])));
    assert!(
        e.contains("linear") && e.contains("input [2, 5] last dim 5 vs in_features 4"),
        "{e}"
    );
    let e = err_of("linear scalar", || fc.forward(&Tensor::scalar(1.0)));
    assert!(e.contains("linear") && e.contains("scalar"), "{e}");
    let e = err_of("linear zero", || {
        Linear::<f32>::new(0, 3, true, &mut rng(0))
    });
    assert!(e.contains("linear") && e.contains('0'), "{e}");
    err_of("linear zero out", || {
        Linear::<f32>::new(3, 0, false, &mut rng(0))
    });
    let e = err_of("linear from_weights rank", || {
        Linear::from_weights(Tensor::<f32>::ones(&[3]), None)
    });
    assert!(e.contains("[3]"), "{e}");
    let e = err_of("linear bias shape", || {
        Linear::from_weights(Tensor::<f32>::ones(&[2, 3]), Some(Tensor::ones(&[3])))
    });
    assert!(e.contains("bias [3]") && e.contains("[2, 3]"), "{e}");

    let emb = Embedding::<f32>::new(65, 8, &mut rng(0)).unwrap();
    let e = err_of("embedding id", || emb.forward(&[1, 70, 2], &[3]));
    assert!(
        e.contains("embedding: ") && e.contains("token id 70 out of range for vocabulary size 65"),
        "{e}"
    );
    let e = err_of("embedding negative", || emb.forward_i64(&[1, -3], &[2]));
    assert!(e.contains("token id -3"), "{e}");
    let e = err_of("embedding count", || emb.forward(&[1, 2, 3], &[2, 2]));
    assert!(e.contains("3 ids") && e.contains("[2, 2]"), "{e}");
    err_of("embedding zero", || {
        Embedding::<f32>::new(0, 8, &mut rng(0))
    });
    err_of("embedding from_weights", || {
        Embedding::from_weights(Tensor::<f32>::ones(&[4]))
    });

    for p in [1.0, -0.1, 1.5, f64::NAN] {
        let e = err_of("dropout p", || Dropout::<f32>::new(p, &mut rng(0)));
        assert!(e.contains("dropout") && e.contains("[0, 1)"), "p={p}: {e}");
    }
}

#[test]
fn linear_on_a_sequence_equals_linear_per_step() {
    let fc = Linear::<f64>::new(3, 4, true, &mut rng(5)).unwrap();
    let x = Tensor::<f64>::randn(&[2, 5, 3], 0.0, 1.0, &mut rng(6)).unwrap();
    let y = fc.forward(&x).unwrap();
    for t in 0..5 {
        let step = fc.forward(&x.select(1, t).unwrap()).unwrap();
        let from_seq = y.select(1, t).unwrap();
        assert_close(
            &step.to_vec(),
            &from_seq.to_vec(),
            1e-12,
            &format!("step {t}"),
        );
    }
    // and a single vector gives the matching row, computed by hand: y = W x + b
    let w = fc.weight.to_vec();
    let b = fc.bias.as_ref().unwrap().to_vec();
    let v = x.select(0, 1).unwrap().select(0, 2).unwrap();
    let xv = v.to_vec();
    let hand: Vec<f64> = (0..4)
        .map(|o| b[o] + (0..3).map(|i| w[o * 3 + i] * xv[i]).sum::<f64>())
        .collect();
    assert_close(&fc.forward(&v).unwrap().to_vec(), &hand, 1e-12, "vector");
}

#[test]
fn linear_gradients_pass_gradcheck() {
    for bias in [true, false] {
        let fc = Linear::<f64>::new(3, 2, bias, &mut rng(7)).unwrap();
        let x = Tensor::<f64>::randn(&[2, 4, 3], 0.0, 1.0, &mut rng(8)).unwrap();
        gradcheck_params(
            || fc.forward(&x)?.tanh().mul(&fc.forward(&x)?),
            &fc.parameters(),
            GradcheckOptions::default(),
        )
        .unwrap_or_else(|e| panic!("params, bias={bias}: {e}"));
        gradcheck(
            |t| fc.forward(&t[0]),
            std::slice::from_ref(&x),
            GradcheckOptions::default(),
        )
        .unwrap_or_else(|e| panic!("input, bias={bias}: {e}"));
    }
}

#[test]
fn embedding_gradients_pass_gradcheck_and_accumulate() {
    let emb = Embedding::<f64>::new(6, 3, &mut rng(9)).unwrap();
    let ids = [0, 2, 2, 5, 0, 2];
    gradcheck_params(
        || Ok(emb.forward(&ids, &[2, 3])?.tanh()),
        &emb.parameters(),
        GradcheckOptions::default(),
    )
    .unwrap();
    let grads = emb
        .forward(&ids, &[2, 3])
        .unwrap()
        .sum_all()
        .backward()
        .unwrap();
    let g = grads.get_id(emb.weight.id()).unwrap().to_vec();
    let counts = [2.0, 0.0, 3.0, 0.0, 0.0, 1.0];
    for (row, c) in counts.iter().enumerate() {
        assert_eq!(&g[row * 3..row * 3 + 3], &[*c; 3], "row {row} gradient");
    }
}

#[test]
fn dropout_train_and_eval() {
    let mut d = Dropout::<f64>::new(0.3, &mut rng(10)).unwrap();
    assert!(d.is_training());
    let x = Tensor::<f64>::ones(&[20_000]).requires_grad();
    let y = d.forward(&x).unwrap();
    let v = y.to_vec();
    let scale = 1.0 / 0.7;
    assert!(v.iter().all(|&e| e == 0.0 || (e - scale).abs() < 1e-12));
    let dropped = v.iter().filter(|&&e| e == 0.0).count() as f64 / v.len() as f64;
    assert!((dropped - 0.3).abs() < 0.02, "dropped fraction {dropped}");
    // gradient is the same mask
    let g = y.sum_all().backward().unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec(), v);
    // a second call draws a new mask; an equally seeded module repeats the first
    assert_ne!(d.forward(&x).unwrap().to_vec(), v);
    let twin = Dropout::<f64>::new(0.3, &mut rng(10)).unwrap();
    assert_eq!(twin.forward(&x).unwrap().to_vec(), v);
    d.eval();
    assert!(!d.is_training());
    assert_eq!(d.forward(&x).unwrap().to_vec(), x.to_vec());
    d.train();
    assert!(d.forward(&x).unwrap().to_vec().contains(&0.0));
    let none = Dropout::<f64>::new(0.0, &mut rng(0)).unwrap();
    assert_eq!(none.forward(&x).unwrap().to_vec(), x.to_vec());
    assert_eq!(d.num_parameters(), 0);
}

/// A two-layer model, to check nested names.
struct Net {
    emb: Embedding<f32>,
    fc: Linear<f32>,
}

impl Module<f32> for Net {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Parameter<f32>)) {
        self.emb.visit_params(&join_name(prefix, "emb"), f);
        self.fc.visit_params(&join_name(prefix, "fc"), f);
    }
}

fn net(seed: u64) -> Net {
    let mut r = rng(seed);
    Net {
        emb: Embedding::new(5, 3, &mut r).unwrap(),
        fc: Linear::new(3, 2, true, &mut r).unwrap(),
    }
}

#[test]
fn state_dict_uses_pytorch_names() {
    let fc = Linear::<f32>::new(3, 2, true, &mut rng(0)).unwrap();
    assert_eq!(
        fc.state_dict().keys().collect::<Vec<_>>(),
        ["bias", "weight"]
    );
    assert_eq!(fc.state_dict()["weight"].shape(), &[2, 3]);
    let nb = Linear::<f32>::new(3, 2, false, &mut rng(0)).unwrap();
    assert_eq!(nb.state_dict().keys().collect::<Vec<_>>(), ["weight"]);
    let emb = Embedding::<f32>::new(5, 3, &mut rng(0)).unwrap();
    assert_eq!(emb.state_dict().keys().collect::<Vec<_>>(), ["weight"]);
    let n = net(1);
    let names: Vec<String> = n.named_parameters().into_iter().map(|(k, _)| k).collect();
    assert_eq!(names, ["emb.weight", "fc.weight", "fc.bias"]);
    assert_eq!(n.num_parameters(), 5 * 3 + 2 * 3 + 2);
}

#[test]
fn load_state_dict_copies_and_reports_bad_names_and_shapes() {
    let (a, b) = (net(1), net(2));
    assert_ne!(a.fc.weight.to_vec(), b.fc.weight.to_vec());
    b.load_state_dict(&a.state_dict(), true).unwrap();
    assert_eq!(a.fc.weight.to_vec(), b.fc.weight.to_vec());
    assert_eq!(a.emb.weight.to_vec(), b.emb.weight.to_vec());

    let c = net(3);
    let before = c.state_dict();
    let check_unchanged = |c: &Net, what: &str| {
        for (k, v) in c.state_dict() {
            assert_eq!(
                v.to_vec(),
                before[&k].to_vec(),
                "{what}: '{k}' changed on error"
            );
        }
    };
    let mut missing = a.state_dict();
    missing.remove("fc.bias");
    let e = err_of("missing", || c.load_state_dict(&missing, true));
    assert!(e.contains("missing tensor 'fc.bias'"), "{e}");
    check_unchanged(&c, "missing");
    // non-strict loads what is there
    c.load_state_dict(&missing, false).unwrap();
    assert_eq!(c.fc.weight.to_vec(), a.fc.weight.to_vec());
    assert_eq!(
        c.fc.bias.as_ref().unwrap().to_vec(),
        before["fc.bias"].to_vec()
    );

    let c = net(3);
    let mut extra = a.state_dict();
    extra.insert("fc.weight_extra".into(), Tensor::zeros(&[1]));
    let e = err_of("unexpected", || c.load_state_dict(&extra, true));
    assert!(e.contains("unexpected tensor 'fc.weight_extra'"), "{e}");
    check_unchanged(&c, "unexpected");

    let mut wrong: StateDict<f32> = a.state_dict();
    wrong.insert("emb.weight".into(), Tensor::zeros(&[5, 4]));
    for strict in [true, false] {
        let e = err_of("wrong shape", || c.load_state_dict(&wrong, strict));
        assert!(
            e.contains("'emb.weight'") && e.contains("[5, 4]") && e.contains("[5, 3]"),
            "{e}"
        );
        check_unchanged(&c, "wrong shape");
    }
    assert!(matches!(
        c.load_state_dict(&wrong, true),
        Err(Error::Checkpoint(_))
    ));
}
