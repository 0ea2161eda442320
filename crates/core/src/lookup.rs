//! Seeing an embedding lookup in the graph: [`Tensor::row_lookup`].
//!
//! A recorded tensor whose rows are rows of a small table picked by id (an `index_select` along
//! dim 0, possibly reshaped) can be multiplied by a matrix more cheaply through the table:
//! `(T[ids]) @ W = (T @ W)[ids]`. With a 65-symbol table and 2,048 looked-up rows, the product
//! on the right is 30 times smaller, and so are both products of its backward. Recurrent
//! layers use this for their input projection; the result is the same function of the same
//! leaves, so gradients flow to the table through the tape as before.

use crate::element::Element;
use crate::tape::GradSlot;
use crate::tensor::Tensor;

/// How the rows of an op's output relate to the rows of its only input, when they do in a way
/// [`Tensor::row_lookup`] can follow. Returned by [`Op::row_source`](crate::Op::row_source).
#[derive(Debug, Clone, Copy)]
pub enum RowSource<'a> {
    /// Output row `r` is input row `ids[r]` (an `index_select` along dim 0 of a matrix).
    Picked(&'a [usize]),
    /// The same elements in the same order under a new shape (a reshape of contiguous data).
    Reshaped,
}

/// What [`Tensor::row_lookup`] found: the tensor's rows, read in row-major order over all but
/// the last dim, are `table`'s rows `ids`.
#[derive(Debug, Clone)]
pub struct RowLookup<E: Element> {
    /// The looked-up matrix `[rows, features]`, as recorded (the embedding weight).
    pub table: Tensor<E>,
    /// One table row per row of the tensor.
    pub ids: Vec<usize>,
}

impl<E: Element> Tensor<E> {
    /// If this recorded tensor is a lookup of rows of a matrix (an `index_select` along dim 0,
    /// then any reshapes that end with the matrix's row length as the last dim), the matrix
    /// and the row ids; else `None`.
    ///
    /// Only the tape can tell, so a tensor computed without recording (a constant input, or
    /// under [`no_grad`](crate::no_grad)) gives `None`. Follows the chain in a loop.
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// let table = Tensor::<f32>::arange(6).reshape(&[3, 2])?.requires_grad();
    /// let x = table.index_select(0, &[2, 0, 2, 1])?.reshape(&[2, 2, 2])?;
    /// let found = x.row_lookup().unwrap();
    /// assert_eq!(found.table.id(), table.id());
    /// assert_eq!(found.ids, vec![2, 0, 2, 1]);
    /// assert!(x.exp().row_lookup().is_none());
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn row_lookup(&self) -> Option<RowLookup<E>> {
        let features = *self.shape().last()?;
        if !self.is_contiguous() {
            return None;
        }
        let mut cur = self.clone();
        loop {
            let GradSlot::Node(node) = &cur.inner.grad else {
                return None;
            };
            let [input] = node.inputs.as_slice() else {
                return None;
            };
            match node.op.row_source()? {
                RowSource::Picked(ids) => {
                    return match input.shape() {
                        &[_, f] if f == features => Some(RowLookup {
                            table: input.clone(),
                            ids: ids.to_vec(),
                        }),
                        _ => None,
                    };
                }
                // A reshape keeps the element order (its recorded input is contiguous), so only
                // the last dim at the lookup itself decides what a row is.
                RowSource::Reshaped => cur = input.clone(),
            }
        }
    }
}
