//! CrossEntropyLoss over (N, T, V) against the reference notebooks' TimeSoftmaxWithLoss
//! (re-derived here), and MseLoss.

use std::panic::{catch_unwind, AssertUnwindSafe};

use rand::rngs::StdRng;
use rand::SeedableRng;
use retrograd_core::{gradcheck, GradcheckOptions, Reduction, Tensor};
use retrograd_nn::{cross_entropy, CrossEntropyLoss, MseLoss};

fn err_of<T>(what: &str, f: impl FnOnce() -> retrograd_core::Result<T>) -> String {
    match catch_unwind(AssertUnwindSafe(f)) {
        Err(_) => panic!("{what}: panicked instead of returning Err"),
        Ok(Ok(_)) => panic!("{what}: succeeded, expected an error"),
        Ok(Err(e)) => e.to_string(),
    }
}

/// TimeSoftmaxWithLoss by hand: rows r = n*T + t, mask = target != ignore,
/// loss = -Σ mask·log softmax(x_r)[t_r] / Σ mask, dx_r = (softmax(x_r) - onehot(t_r))·mask / Σ mask.
fn time_softmax_with_loss(x: &[f64], v: usize, targets: &[i64], ignore: i64) -> (f64, Vec<f64>) {
    let count = targets.iter().filter(|&&t| t != ignore).count() as f64;
    let mut loss = 0.0;
    let mut dx = vec![0.0; x.len()];
    for (r, &t) in targets.iter().enumerate() {
        if t == ignore {
            continue;
        }
        let row = &x[r * v..(r + 1) * v];
        let m = row.iter().cloned().fold(f64::MIN, f64::max);
        let z: f64 = row.iter().map(|a| (a - m).exp()).sum();
        loss -= (row[t as usize] - m) - z.ln();
        for j in 0..v {
            dx[r * v + j] = (row[j] - m).exp() / z / count;
        }
        dx[r * v + t as usize] -= 1.0 / count;
    }
    (loss / count, dx)
}

#[test]
fn time_distributed_cross_entropy_matches_the_notebook_formula() {
    let (n, t, v) = (2, 4, 6);
    let x = Tensor::<f64>::randn(&[n, t, v], 0.0, 2.0, &mut StdRng::seed_from_u64(1)).unwrap();
    let targets = [0, 5, -1, 2, 3, -1, -1, 1];
    let xl = x.requires_grad();
    let ce = CrossEntropyLoss::new().with_ignore_index(-1);
    let loss = ce.forward(&xl, &targets).unwrap();
    let (want, want_dx) = time_softmax_with_loss(&x.to_vec(), v, &targets, -1);
    assert!(
        (loss.item().unwrap() - want).abs() < 1e-12,
        "{} vs {want}",
        loss.item().unwrap()
    );
    let g = loss.backward().unwrap();
    let dx = g.get(&xl).unwrap();
    assert_eq!(dx.shape(), &[n, t, v]);
    for (i, (a, b)) in dx.to_vec().iter().zip(&want_dx).enumerate() {
        assert!((a - b).abs() < 1e-12, "dx[{i}]: {a} vs {b}");
    }
    // ignored rows get exactly zero gradient
    assert!(dx.to_vec()[2 * v..3 * v].iter().all(|&d| d == 0.0));
}

#[test]
fn three_d_reductions_agree_with_flattened_rows() {
    let x = Tensor::<f64>::randn(&[3, 2, 5], 0.0, 1.0, &mut StdRng::seed_from_u64(2)).unwrap();
    let flat = x.reshape(&[6, 5]).unwrap();
    let targets = [4, 0, -100, 1, 2, 3];
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        let ce = CrossEntropyLoss::new().with_reduction(reduction);
        let a = ce.forward(&x, &targets).unwrap();
        let b = ce.forward(&flat, &targets).unwrap();
        let want_shape: &[usize] = if reduction == Reduction::None {
            &[3, 2]
        } else {
            &[]
        };
        assert_eq!(a.shape(), want_shape, "{reduction:?}");
        assert_eq!(a.to_vec(), b.to_vec(), "{reduction:?}");
    }
    let none = CrossEntropyLoss::new().with_reduction(Reduction::None);
    let per = none.forward(&x, &targets).unwrap().to_vec();
    assert_eq!(per[2], 0.0, "ignored target contributes 0");
    let mean = cross_entropy(&x, &targets).unwrap().item().unwrap();
    assert!(
        (mean - per.iter().sum::<f64>() / 5.0).abs() < 1e-12,
        "mean over 5 counted"
    );
    gradcheck(
        |t| none.forward(&t[0], &targets),
        std::slice::from_ref(&x),
        GradcheckOptions::default(),
    )
    .unwrap();
}

#[test]
fn loss_errors_name_the_shapes() {
    let ce = CrossEntropyLoss::new();
    let x3 = Tensor::<f32>::zeros(&[2, 3, 4]);
    let e = err_of("3-D count", || ce.forward(&x3, &[0; 5]));
    assert!(
        e.contains("cross_entropy_loss")
            && e.contains("[2, 3, 4]")
            && e.contains("need 6 targets (N*T), got 5"),
        "{e}"
    );
    let x2 = Tensor::<f32>::zeros(&[4, 3]);
    let e = err_of("2-D count", || ce.forward(&x2, &[0; 6]));
    assert!(
        e.contains("[4, 3]") && e.contains("need 4 targets (N), got 6"),
        "{e}"
    );
    let e = err_of("rank", || ce.forward(&Tensor::<f32>::zeros(&[4]), &[0; 4]));
    assert!(
        e.contains("(N, C) or (N, T, V)") && e.contains("[4]"),
        "{e}"
    );
    let e = err_of("class range", || ce.forward(&x2, &[0, 1, 3, 2]));
    assert!(e.contains('3') && e.contains("cross_entropy"), "{e}");
    let e = err_of("negative class", || ce.forward(&x3, &[0, 1, -1, 2, 0, 0]));
    assert!(e.contains("-1"), "{e}");
    let e = err_of("mse", || {
        MseLoss::new().forward(&x2, &Tensor::zeros(&[3, 4]))
    });
    assert!(
        e.contains("mse") && e.contains("[4, 3]") && e.contains("[3, 4]"),
        "{e}"
    );
}

#[test]
fn mse_values_and_gradient() {
    let y = Tensor::<f64>::from_vec(vec![1.0, -2.0, 0.5, 3.0], &[2, 2])
        .unwrap()
        .requires_grad();
    let t = Tensor::<f64>::from_vec(vec![0.0, 0.0, 0.5, 1.0], &[2, 2]).unwrap();
    let loss = MseLoss::new().forward(&y, &t).unwrap();
    assert!((loss.item().unwrap() - (1.0 + 4.0 + 0.0 + 4.0) / 4.0).abs() < 1e-12);
    let g = loss.backward().unwrap();
    // d/dy mean((y-t)²) = 2(y-t)/n
    assert_eq!(g.get(&y).unwrap().to_vec(), vec![0.5, -1.0, 0.0, 1.0]);
    let none = MseLoss {
        reduction: Reduction::None,
    }
    .forward(&y, &t)
    .unwrap();
    assert_eq!(none.to_vec(), vec![1.0, 4.0, 0.0, 4.0]);
}
