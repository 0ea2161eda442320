//! The differentiable ops, one type per op, grouped by family. Each type documents its formula
//! and derivative, has a public `forward`, and implements [`Op`](crate::Op) for the backward half.
//! Tensor methods (`x.tanh()`, `a.matmul(&b)`, ...) are thin wrappers over these types.

pub mod binary;
pub mod broadcast;
pub mod dropout;
mod gemm;
pub mod index;
pub mod loss;
pub mod matmul;
pub mod reduce;
pub mod shape;
pub mod softmax;
pub mod unary;

use std::sync::Arc;

use crate::element::Element;
use crate::layout::Layout;
use crate::tape::InputGrads;
use crate::tensor::Tensor;

/// Applies `f` to every element, returning a contiguous buffer.
pub(crate) fn map<E: Element>(x: &Tensor<E>, f: impl Fn(E) -> E) -> Vec<E> {
    x.contiguous_data().iter().map(|&v| f(v)).collect()
}

/// Applies `f` pairwise to two tensors of the same shape, returning a contiguous buffer.
pub(crate) fn zip_map<E: Element>(a: &Tensor<E>, b: &Tensor<E>, f: impl Fn(E, E) -> E) -> Vec<E> {
    debug_assert_eq!(a.shape(), b.shape(), "zip_map needs equal shapes");
    let (da, db) = (a.contiguous_data(), b.contiguous_data());
    da.iter().zip(db.iter()).map(|(&x, &y)| f(x, y)).collect()
}

/// Storage and layout for a fresh contiguous op output.
pub(crate) fn out<E: Element>(data: Vec<E>, shape: &[usize]) -> (Arc<Vec<E>>, Layout) {
    (Arc::new(data), Layout::contiguous(shape))
}

/// A constant contiguous tensor (used for gradients).
pub(crate) fn constant<E: Element>(data: Vec<E>, shape: &[usize]) -> Tensor<E> {
    Tensor::from_parts(data, shape)
}

/// One input gradient.
pub(crate) fn grads1<E: Element>(g: Tensor<E>) -> InputGrads<E> {
    smallvec::smallvec![Some(g)]
}

/// Two input gradients.
pub(crate) fn grads2<E: Element>(a: Option<Tensor<E>>, b: Option<Tensor<E>>) -> InputGrads<E> {
    smallvec::smallvec![a, b]
}
