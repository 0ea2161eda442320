//! Anomaly detection (like `torch.autograd.detect_anomaly`): when switched on, the first
//! recorded op whose output, or whose backward gradient, holds NaN or ±Inf is reported by name
//! with its input shapes.

use std::cell::{Cell, RefCell};

use crate::element::Element;
use crate::error::{Error, Result};
use crate::tape::InputGrads;
use crate::tensor::Tensor;

thread_local! {
    static ANOMALY: Cell<bool> = const { Cell::new(false) };
    static FIRST_FORWARD: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Switches anomaly detection on this thread on or off until the guard drops.
///
/// With it on, [`Tensor::backward`] fails with [`Error::NonFinite`] naming the first op whose
/// gradient is not finite, and [`forward_anomaly`] reports the first op whose output was not.
///
/// ```
/// use retrograd_core::{detect_anomaly, forward_anomaly, Tensor};
/// let _on = detect_anomaly(true);
/// let x = Tensor::<f64>::from_vec(vec![-1.0, 4.0], &[2])?.requires_grad();
/// let y = x.sqrt().sum_all();
/// assert!(forward_anomaly().unwrap().contains("sqrt"));
/// assert!(y.backward().is_err());
/// # Ok::<(), retrograd_core::Error>(())
/// ```
pub fn detect_anomaly(on: bool) -> AnomalyGuard {
    let prev = ANOMALY.with(|a| a.replace(on));
    FIRST_FORWARD.with(|f| f.borrow_mut().take());
    AnomalyGuard { prev }
}

/// Restores the previous anomaly-detection mode when dropped.
pub struct AnomalyGuard {
    prev: bool,
}

impl Drop for AnomalyGuard {
    fn drop(&mut self) {
        ANOMALY.with(|a| a.set(self.prev));
    }
}

/// True if anomaly detection is on for this thread.
pub fn is_anomaly_enabled() -> bool {
    ANOMALY.with(|a| a.get())
}

/// The first non-finite forward output seen since anomaly detection was switched on, if any:
/// the op's name and its input shapes. Taking it resets the record.
pub fn forward_anomaly() -> Option<String> {
    FIRST_FORWARD.with(|f| f.borrow_mut().take())
}

/// Keeps `report` as this thread's first forward anomaly unless one is already recorded
/// (used by [`join`](crate::threads::join) to bring back what its other side saw).
pub(crate) fn record_forward(report: String) {
    FIRST_FORWARD.with(|f| {
        f.borrow_mut().get_or_insert(report);
    });
}

fn describe<E: Element>(inputs: &[Tensor<E>]) -> String {
    inputs
        .iter()
        .map(|t| format!("{:?}", t.shape()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn all_finite<E: Element>(t: &Tensor<E>) -> bool {
    t.contiguous_data().iter().all(|v| v.is_finite())
}

pub(crate) fn check_forward<E: Element>(out: &Tensor<E>) {
    if !is_anomaly_enabled() || all_finite(out) {
        return;
    }
    FIRST_FORWARD.with(|f| {
        let mut f = f.borrow_mut();
        if f.is_none() {
            let (name, inputs) = match &out.inner.grad {
                crate::tape::GradSlot::Node(n) => (n.op.name(), describe(&n.inputs)),
                _ => ("?", String::new()),
            };
            *f = Some(format!(
                "forward of {name} (inputs {inputs}) produced a non-finite value"
            ));
        }
    });
}

pub(crate) fn check_backward<E: Element>(
    name: &str,
    inputs: &[Tensor<E>],
    grads: &InputGrads<E>,
) -> Result<()> {
    if !is_anomaly_enabled() {
        return Ok(());
    }
    for (i, g) in grads.iter().enumerate() {
        if let Some(g) = g {
            if !all_finite(g) {
                return Err(Error::NonFinite(format!(
                    "backward of {name} (inputs {}) produced a non-finite gradient for input {i}",
                    describe(inputs)
                )));
            }
        }
    }
    Ok(())
}
