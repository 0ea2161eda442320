//! [`GradStore`]: the gradients one backward pass leaves, by leaf id, and for a gradient that
//! only looked-up rows reached (an embedding table's), which rows those were.

use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;

use crate::element::Element;
use crate::error::{Error, Result, ResultExt};
use crate::tape::{add_into, no_grad};
use crate::tensor::{Tensor, TensorId};

/// Gradients from one backward pass, keyed by the id of the leaf (tensor or parameter).
///
/// A 2-D gradient that the backward pass formed only from rows picked out of its leaf (an
/// `Embedding` table read through `index_select` along dim 0) also records those rows
/// ([`nonzero_rows`](Self::nonzero_rows)): every other row is zero, and clipping or a plain
/// SGD step can skip them.
#[derive(Clone, Default)]
pub struct GradStore<E: Element = f32> {
    grads: HashMap<TensorId, Tensor<E>>,
    /// Sorted, without repeats: the only rows of the gradient under the id that may be
    /// nonzero.
    rows: HashMap<TensorId, Arc<[usize]>>,
}

impl<E: Element> std::fmt::Debug for GradStore<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<_> = self
            .grads
            .iter()
            .map(|(id, g)| (id.as_u64(), g.shape().to_vec()))
            .collect();
        ids.sort();
        f.debug_map().entries(ids).finish()
    }
}

impl<E: Element> Drop for GradStore<E> {
    /// A row-sparse gradient nothing else holds goes back to the buffer cache with its few
    /// rows zeroed, all zero, so that the next backward pass's gradient of the same table
    /// starts from it without zero-filling the whole table (B2: 8 MB, for 400 rows).
    fn drop(&mut self) {
        for (id, rows) in self.rows.drain() {
            let Some(g) = self.grads.remove(&id) else {
                continue;
            };
            let cols = g.shape()[1];
            if let Ok(mut v) = g.into_own_vec() {
                for &r in rows.iter() {
                    v[r * cols..(r + 1) * cols].fill(E::zero());
                }
                crate::storage::give_zeroed(v);
            }
        }
    }
}

/// `rows` sorted, without repeats.
fn row_set(mut rows: Vec<usize>) -> Arc<[usize]> {
    rows.sort_unstable();
    rows.dedup();
    rows.into()
}

impl<E: Element> GradStore<E> {
    /// An empty store.
    pub fn new() -> Self {
        GradStore {
            grads: HashMap::default(),
            rows: HashMap::default(),
        }
    }

    /// The gradient of a leaf tensor, if it received one.
    pub fn get(&self, t: &Tensor<E>) -> Option<&Tensor<E>> {
        self.grads.get(&t.id())
    }

    /// The gradient stored under an id (a parameter's id, say).
    pub fn get_id(&self, id: TensorId) -> Option<&Tensor<E>> {
        self.grads.get(&id)
    }

    /// The rows of the 2-D gradient under `id` that may be nonzero, sorted and without
    /// repeats, when it is known that all the others are zero: the backward pass formed the
    /// gradient only from rows picked out of the leaf (an embedding table's lookups). `None`
    /// for every other gradient, and once [`insert`](Self::insert) or
    /// [`accumulate`](Self::accumulate) has changed it with one that is not known to be
    /// row-sparse.
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// let table = Tensor::<f32>::ones(&[5, 2]).requires_grad();
    /// let grads = table.index_select(0, &[3, 1, 3])?.sum_all().backward()?;
    /// assert_eq!(grads.nonzero_rows(table.id()), Some(&[1, 3][..]));
    /// assert_eq!(grads.get(&table).unwrap().to_vec(), [0., 0., 1., 1., 0., 0., 2., 2., 0., 0.]);
    /// let dense = table.exp().sum_all().backward()?;
    /// assert_eq!(dense.nonzero_rows(table.id()), None);
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn nonzero_rows(&self, id: TensorId) -> Option<&[usize]> {
        self.rows.get(&id).map(|r| &r[..])
    }

    /// Stores (replacing) a gradient.
    pub fn insert(&mut self, id: TensorId, grad: Tensor<E>) {
        self.rows.remove(&id);
        self.grads.insert(id, grad);
    }

    /// Multiplies the gradients under `ids` by `coef`: each in its own buffer when nothing
    /// else holds it, shared between threads as [`map_by_size`](crate::threads::map_by_size)
    /// shares; ids without a gradient, or repeated, are skipped. A gradient with [`nonzero_rows`](Self::nonzero_rows) has only those rows
    /// multiplied when `coef` is finite (the others stay zero, as `0·coef` is); a non-finite
    /// `coef` multiplies every element (`0·∞` is NaN) and the rows are forgotten.
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// let w = Tensor::<f64>::ones(&[2]).requires_grad();
    /// let mut grads = w.mul_scalar(3.0).sum_all().backward()?;
    /// grads.scale(&[w.id()], 0.5);
    /// assert_eq!(grads.get(&w).unwrap().to_vec(), vec![1.5, 1.5]);
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn scale(&mut self, ids: &[TensorId], coef: E) {
        let finite = coef.is_finite();
        let mut taken = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(g) = self.grads.remove(id) else {
                continue;
            };
            let rows = if finite {
                self.rows.get(id).cloned()
            } else {
                self.rows.remove(id);
                None
            };
            taken.push((*id, g, rows));
        }
        let work = |(_, g, rows): &(TensorId, Tensor<E>, Option<Arc<[usize]>>)| match rows {
            Some(r) => r.len() * g.shape()[1],
            None => g.numel(),
        };
        let scaled = crate::threads::map_by_size(taken, work, |(id, g, rows)| {
            let shape = g.shape().to_vec();
            let mut v = g.into_vec();
            match rows {
                Some(rows) => {
                    let cols = shape[1];
                    for &r in rows.iter() {
                        v[r * cols..(r + 1) * cols]
                            .iter_mut()
                            .for_each(|x| *x *= coef);
                    }
                }
                None => v.iter_mut().for_each(|x| *x *= coef),
            }
            (id, crate::ops::constant(v, &shape))
        });
        for (id, g) in scaled {
            self.grads.insert(id, g);
        }
    }

    /// Removes and returns a gradient.
    pub fn remove(&mut self, id: TensorId) -> Option<Tensor<E>> {
        self.rows.remove(&id);
        self.grads.remove(&id)
    }

    /// Adds `grad` to the gradient under `id` (storing it if there is none yet). The shapes
    /// must match exactly (no broadcasting); on error the stored gradient is left unchanged.
    pub fn accumulate(&mut self, id: TensorId, grad: Tensor<E>) -> Result<()> {
        self.accumulate_reached(id, grad, None)
    }

    /// [`accumulate`](Self::accumulate) for a gradient that only rows `reached` (any order,
    /// repeats allowed) may have made nonzero, when that is known. The stored gradient keeps
    /// a row set while everything added to it had one (the union of the sets).
    pub(crate) fn accumulate_reached(
        &mut self,
        id: TensorId,
        grad: Tensor<E>,
        reached: Option<Vec<usize>>,
    ) -> Result<()> {
        let _g = no_grad();
        if let Some(prev) = self.grads.get(&id) {
            if prev.shape() != grad.shape() {
                return Err(Error::shape(
                    "GradStore::accumulate",
                    format!(
                        "gradient {:?} vs stored gradient {:?} for id {}",
                        grad.shape(),
                        prev.shape(),
                        id.as_u64()
                    ),
                ));
            }
        }
        let reached = reached.filter(|_| grad.rank() == 2);
        match self.grads.remove(&id) {
            Some(prev) => {
                let sum = add_into(prev, &grad).context("accumulating gradients")?;
                self.grads.insert(id, sum);
                // the sum keeps a row set only if both had one
                if let (Some(had), Some(new)) = (self.rows.remove(&id), reached) {
                    let mut all = had.to_vec();
                    all.extend(new);
                    self.rows.insert(id, row_set(all));
                }
            }
            None => {
                self.grads.insert(id, grad);
                if let Some(rows) = reached {
                    self.rows.insert(id, row_set(rows));
                }
            }
        }
        Ok(())
    }

    /// Adds every gradient of `other` into this store (gradient accumulation over batches).
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// let w = Tensor::<f64>::ones(&[2]).requires_grad();
    /// let mut g = w.sum_all().backward()?;
    /// g.merge(&w.mul_scalar(3.0).sum_all().backward()?)?;
    /// assert_eq!(g.get(&w).unwrap().to_vec(), vec![4.0, 4.0]);
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn merge(&mut self, other: &GradStore<E>) -> Result<()> {
        for (id, g) in &other.grads {
            let reached = other.rows.get(id).map(|r| r.to_vec());
            self.accumulate_reached(*id, g.clone(), reached)?;
        }
        Ok(())
    }

    /// Number of stored gradients.
    pub fn len(&self) -> usize {
        self.grads.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.grads.is_empty()
    }

    /// Iterates over `(id, gradient)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&TensorId, &Tensor<E>)> {
        self.grads.iter()
    }
}
