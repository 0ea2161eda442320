//! Anomaly detection: with `detect_anomaly(true)` the first op producing a non-finite output is
//! reported by name, and backward fails naming the op whose gradient is not finite.

mod common;

use common::*;
use retrograd_core::{detect_anomaly, forward_anomaly, is_anomaly_enabled, Error};

#[test]
fn forward_anomaly_names_the_first_non_finite_op() {
    let _on = detect_anomaly(true);
    let x = leaf(&[1.0, -1.0], &[2]);
    let y = x.exp(); // finite
    assert!(forward_anomaly().is_none());
    let z = y.log().mul(&x.log()).unwrap(); // log(-1) = NaN: the first anomaly is `log`
    let report = forward_anomaly().expect("log(-1) is NaN");
    assert!(report.contains("log") && report.contains("[2]"), "{report}");
    assert!(forward_anomaly().is_none(), "taking the report resets it");
    drop(z);
}

#[test]
fn backward_anomaly_names_the_op() {
    // sqrt at 0: value 0 (finite), gradient 1/(2·0) = inf.
    let x = leaf(&[0.0, 4.0], &[2]);
    {
        let _on = detect_anomaly(true);
        assert!(is_anomaly_enabled());
        match x.sqrt().sum_all().backward().err() {
            Some(Error::NonFinite(m)) => assert!(m.contains("sqrt"), "{m}"),
            other => panic!("expected a NonFinite error, got {other:?}"),
        }
    }
    // off again after the guard: the same backward silently yields inf
    assert!(!is_anomaly_enabled());
    let g = x.sqrt().sum_all().backward().unwrap();
    assert_eq!(grad_of(&g, &x)[0], f64::INFINITY);
    assert_eq!(grad_of(&g, &x)[1], 0.25);
}
