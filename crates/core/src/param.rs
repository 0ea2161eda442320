//! Trainable parameters: leaves with a stable id whose values an optimizer updates in place.

use crate::storage::Storage;
use std::sync::{Arc, RwLock};

use crate::element::Element;
use crate::error::{Error, Result};
use crate::layout::{numel, Dims};
use crate::tensor::{Tensor, TensorId};

/// A trainable tensor shared between a module and its optimizer.
///
/// [`Parameter::value`] gives a leaf [`Tensor`] carrying the parameter's id, so the gradient of
/// every use lands in the [`GradStore`](crate::GradStore) under that id. Updates are
/// copy-on-write: graphs still holding an old value keep seeing the old values.
///
/// ```
/// use retrograd_core::{Parameter, Tensor};
/// let p = Parameter::new(Tensor::<f32>::ones(&[2]));
/// let g = p.value().mul_scalar(3.0).sum_all().backward()?;
/// let grad = g.get_id(p.id()).unwrap().to_vec();
/// p.update(|w| for (w, g) in w.iter_mut().zip(&grad) { *w -= 0.1 * g })?;
/// assert_eq!(p.value().to_vec(), vec![0.7, 0.7]);
/// # Ok::<(), retrograd_core::Error>(())
/// ```
pub struct Parameter<E: Element = f32> {
    inner: Arc<ParamInner<E>>,
}

struct ParamInner<E: Element> {
    id: TensorId,
    shape: Dims,
    data: RwLock<Arc<Storage<E>>>,
}

impl<E: Element> Clone for Parameter<E> {
    fn clone(&self) -> Self {
        Parameter {
            inner: self.inner.clone(),
        }
    }
}

impl<E: Element> std::fmt::Debug for Parameter<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Parameter(id={}, shape={:?})",
            self.inner.id.as_u64(),
            self.shape()
        )
    }
}

impl<E: Element> Parameter<E> {
    /// A parameter holding a copy of `t`'s values, with a fresh id.
    pub fn new(t: Tensor<E>) -> Self {
        Parameter {
            inner: Arc::new(ParamInner {
                id: TensorId::fresh(),
                shape: t.shape().into(),
                data: RwLock::new(Arc::new(Storage::from(t.to_vec()))),
            }),
        }
    }

    /// The stable id its gradients are stored under.
    pub fn id(&self) -> TensorId {
        self.inner.id
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.inner.shape
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.inner.shape)
    }

    fn read(&self) -> Arc<Storage<E>> {
        // A poisoned lock only means another thread panicked mid-update; the Vec is still valid.
        self.inner
            .data
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The current value as a gradient-collecting leaf (no copy).
    pub fn value(&self) -> Tensor<E> {
        Tensor::leaf_with_id(self.read(), &self.inner.shape, self.inner.id)
    }

    /// The current values as a constant tensor (no gradient).
    pub fn value_detached(&self) -> Tensor<E> {
        self.value().detach()
    }

    /// A copy of the current values.
    pub fn to_vec(&self) -> Vec<E> {
        self.read().to_vec()
    }

    /// Updates the values in place (copy-on-write if a graph still holds the old values).
    pub fn update<R>(&self, f: impl FnOnce(&mut [E]) -> R) -> Result<R> {
        let mut guard = self.inner.data.write().unwrap_or_else(|p| p.into_inner());
        let data = Arc::make_mut(&mut guard);
        Ok(f(&mut data[..]))
    }

    /// Replaces the values; the shape must match.
    pub fn set(&self, t: &Tensor<E>) -> Result<()> {
        if t.shape() != self.shape() {
            return Err(Error::shape(
                "Parameter::set",
                format!("new value {:?} vs parameter {:?}", t.shape(), self.shape()),
            ));
        }
        let v = t.to_vec();
        let mut guard = self.inner.data.write().unwrap_or_else(|p| p.into_inner());
        *guard = Arc::new(Storage::from(v));
        Ok(())
    }
}
