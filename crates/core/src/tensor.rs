//! The [`Tensor`] handle: shared storage plus a layout, and (when it tracks gradients) its place
//! in the autodiff graph.

use crate::storage::Storage;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rand::Rng;
use rand_distr::{Distribution, Normal};
use smallvec::SmallVec;

use crate::element::Element;
use crate::error::{Error, Result};
use crate::layout::{numel, Layout};
use crate::tape::{GradSlot, Node, Op};

/// Identifier of a tensor or parameter in the autodiff graph. Ids are handed out in creation
/// order, so an op's output always has a larger id than its inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(u64);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl TensorId {
    /// A fresh id, larger than every id handed out before.
    pub fn fresh() -> Self {
        TensorId(NEXT_ID.fetch_add(1, Ordering::Relaxed))
    }

    /// The raw number.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

/// An n-dimensional array of `E` (`f32` by default) that can record the ops applied to it.
///
/// Cloning is cheap (an `Arc` bump). Views (transpose, narrow, broadcast, reshape of contiguous
/// data) share storage. A tensor *tracks gradients* when it is a leaf created with
/// [`Tensor::requires_grad`] (or a [`Parameter`](crate::Parameter)'s value), or when an op was
/// applied to a tracking tensor outside a [`no_grad`](crate::no_grad) scope.
///
/// ```
/// use retrograd_core::Tensor;
/// let x = Tensor::<f32>::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2])?.requires_grad();
/// let y = x.mul(&x)?.sum_all();
/// let grads = y.backward()?;
/// assert_eq!(grads.get(&x).unwrap().to_vec(), vec![2.0, 4.0, 6.0, 8.0]);
/// # Ok::<(), retrograd_core::Error>(())
/// ```
pub struct Tensor<E: Element = f32> {
    pub(crate) inner: Arc<Inner<E>>,
}

pub(crate) struct Inner<E: Element> {
    pub(crate) id: TensorId,
    pub(crate) data: Arc<Storage<E>>,
    pub(crate) layout: Layout,
    pub(crate) grad: GradSlot<E>,
}

impl<E: Element> Clone for Tensor<E> {
    fn clone(&self) -> Self {
        Tensor {
            inner: self.inner.clone(),
        }
    }
}

impl<E: Element> Tensor<E> {
    // ---------------------------------------------------------------- construction

    pub(crate) fn build(
        data: Arc<Storage<E>>,
        layout: Layout,
        grad: GradSlot<E>,
        id: TensorId,
    ) -> Self {
        Tensor {
            inner: Arc::new(Inner {
                id,
                data,
                layout,
                grad,
            }),
        }
    }

    /// A constant (non-tracking) view of an existing storage through `layout` (which must stay
    /// inside it), without a copy: an op's own output saved for its backward, or a slice of a
    /// gradient handed to an input.
    pub(crate) fn constant_over(data: Arc<Storage<E>>, layout: Layout) -> Self {
        debug_assert!(layout.extent() <= data.len());
        Self::build(data, layout, GradSlot::None, TensorId::fresh())
    }

    /// A constant (non-tracking) contiguous tensor from a buffer whose length is known to match.
    pub(crate) fn from_parts(data: Vec<E>, shape: &[usize]) -> Self {
        debug_assert_eq!(
            data.len(),
            numel(shape),
            "from_parts: data length must match shape"
        );
        Self::build(
            Arc::new(Storage::from(data)),
            Layout::contiguous(shape),
            GradSlot::None,
            TensorId::fresh(),
        )
    }

    /// The output of an op: a new tensor over `data`/`layout` that records `make_op()` and
    /// `inputs` on the tape when some input tracks gradients and grad mode is on. Otherwise no
    /// graph node is allocated and `make_op` is never called.
    ///
    /// This is the one place where the tape records; custom ops call it too.
    pub fn from_op<O: Op<E>>(
        data: Arc<Storage<E>>,
        layout: Layout,
        inputs: &[&Tensor<E>],
        make_op: impl FnOnce() -> O,
    ) -> Self {
        let track = crate::tape::is_grad_enabled() && inputs.iter().any(|t| t.tracks_grad());
        let grad = if track {
            GradSlot::Node(Node {
                op: Box::new(make_op()),
                inputs: inputs.iter().map(|t| (*t).clone()).collect::<SmallVec<_>>(),
            })
        } else {
            GradSlot::None
        };
        let out = Self::build(data, layout, grad, TensorId::fresh());
        if track {
            crate::anomaly::check_forward(&out);
        }
        out
    }

    /// A contiguous tensor from a buffer and a shape.
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// let t = Tensor::<f64>::from_vec(vec![1., 2., 3., 4., 5., 6.], &[2, 3])?;
    /// assert_eq!(t.shape(), &[2, 3]);
    /// assert!(Tensor::<f64>::from_vec(vec![1.0], &[2]).is_err());
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn from_vec(data: Vec<E>, shape: &[usize]) -> Result<Self> {
        let expected = numel(shape);
        if data.len() != expected {
            return Err(Error::DataLen {
                op: "from_vec",
                len: data.len(),
                shape: shape.to_vec(),
                expected,
            });
        }
        Ok(Self::from_parts(data, shape))
    }

    /// A contiguous tensor copied from a slice.
    pub fn from_slice(data: &[E], shape: &[usize]) -> Result<Self> {
        let expected = numel(shape);
        if data.len() != expected {
            return Err(Error::DataLen {
                op: "from_slice",
                len: data.len(),
                shape: shape.to_vec(),
                expected,
            });
        }
        Ok(Self::from_parts(data.to_vec(), shape))
    }

    /// A 0-d tensor holding `v`.
    pub fn scalar(v: E) -> Self {
        Self::from_parts(vec![v], &[])
    }

    /// A tensor filled with `v`.
    pub fn full(shape: &[usize], v: E) -> Self {
        Self::from_parts(vec![v; numel(shape)], shape)
    }

    /// A tensor of zeros.
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// assert_eq!(Tensor::<f32>::zeros(&[2]).to_vec(), vec![0.0, 0.0]);
    /// ```
    pub fn zeros(shape: &[usize]) -> Self {
        Self::full(shape, E::zero())
    }

    /// A tensor of ones.
    pub fn ones(shape: &[usize]) -> Self {
        Self::full(shape, E::one())
    }

    /// Zeros with this tensor's shape.
    pub fn zeros_like(&self) -> Self {
        Self::zeros(self.shape())
    }

    /// Ones with this tensor's shape.
    pub fn ones_like(&self) -> Self {
        Self::ones(self.shape())
    }

    /// `[0, 1, ..., n-1]` as a 1-d tensor (like `torch.arange(n)`).
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// assert_eq!(Tensor::<f32>::arange(3).to_vec(), vec![0.0, 1.0, 2.0]);
    /// ```
    pub fn arange(n: usize) -> Self {
        Self::from_parts((0..n).map(|i| E::of_f64(i as f64)).collect(), &[n])
    }

    /// Values drawn from U(low, high), from the given RNG.
    ///
    /// ```
    /// use rand::{rngs::StdRng, SeedableRng};
    /// use retrograd_core::Tensor;
    /// let mut rng = StdRng::seed_from_u64(0);
    /// let t = Tensor::<f32>::rand_uniform(&[100], -0.5, 0.5, &mut rng)?;
    /// assert!(t.to_vec().iter().all(|v| (-0.5..0.5).contains(v)));
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn rand_uniform(shape: &[usize], low: f64, high: f64, rng: &mut impl Rng) -> Result<Self> {
        if !(low.is_finite() && high.is_finite() && low <= high) {
            return Err(Error::invalid(
                "rand_uniform",
                format!("bounds must be finite with low <= high, got [{low}, {high})"),
            ));
        }
        let data = (0..numel(shape))
            .map(|_| E::of_f64(low + (high - low) * rng.random::<f64>()))
            .collect();
        Ok(Self::from_parts(data, shape))
    }

    /// Values drawn from N(mean, std²), from the given RNG.
    pub fn randn(shape: &[usize], mean: f64, std: f64, rng: &mut impl Rng) -> Result<Self> {
        if !(mean.is_finite() && std.is_finite() && std >= 0.0) {
            return Err(Error::invalid(
                "randn",
                format!("mean {mean}, std {std}: need a finite mean and a finite std >= 0"),
            ));
        }
        let dist = Normal::new(mean, std)
            .map_err(|e| Error::invalid("randn", format!("mean {mean}, std {std}: {e}")))?;
        let data = (0..numel(shape))
            .map(|_| E::of_f64(dist.sample(rng)))
            .collect();
        Ok(Self::from_parts(data, shape))
    }

    // ---------------------------------------------------------------- accessors

    /// This tensor's id in the autodiff graph.
    #[inline]
    pub fn id(&self) -> TensorId {
        self.inner.id
    }

    /// The shape.
    #[inline]
    pub fn shape(&self) -> &[usize] {
        self.inner.layout.shape()
    }

    /// The rank (number of dims).
    #[inline]
    pub fn rank(&self) -> usize {
        self.inner.layout.rank()
    }

    /// The number of elements.
    #[inline]
    pub fn numel(&self) -> usize {
        self.inner.layout.numel()
    }

    /// The layout (shape, strides, offset).
    #[inline]
    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    /// The whole underlying storage (use [`Tensor::layout`] to index it).
    #[inline]
    pub fn storage(&self) -> &[E] {
        &self.inner.data
    }

    #[inline]
    pub(crate) fn storage_arc(&self) -> &Arc<Storage<E>> {
        &self.inner.data
    }

    /// Size of `dim` (negative counts from the end), or an error naming the rank.
    pub fn dim(&self, dim: isize) -> Result<usize> {
        let d = crate::layout::resolve_dim("dim", dim, self.rank())?;
        Ok(self.shape()[d])
    }

    fn dims_n<const N: usize>(&self, op: &'static str) -> Result<[usize; N]> {
        self.shape().try_into().map_err(|_| {
            Error::shape(
                op,
                format!("expected a rank-{N} tensor, got shape {:?}", self.shape()),
            )
        })
    }

    /// The shape of a rank-1 tensor.
    pub fn dims1(&self) -> Result<usize> {
        Ok(self.dims_n::<1>("dims1")?[0])
    }

    /// The shape of a rank-2 tensor.
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// let t = Tensor::<f32>::zeros(&[2, 3]);
    /// assert_eq!(t.dims2()?, (2, 3));
    /// assert!(t.dims3().is_err());
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn dims2(&self) -> Result<(usize, usize)> {
        let [a, b] = self.dims_n::<2>("dims2")?;
        Ok((a, b))
    }

    /// The shape of a rank-3 tensor.
    pub fn dims3(&self) -> Result<(usize, usize, usize)> {
        let [a, b, c] = self.dims_n::<3>("dims3")?;
        Ok((a, b, c))
    }

    /// True if the elements are dense and row-major.
    #[inline]
    pub fn is_contiguous(&self) -> bool {
        self.inner.layout.is_contiguous()
    }

    /// The elements in row-major order: borrowed when contiguous, gathered otherwise.
    pub fn contiguous_data(&self) -> Cow<'_, [E]> {
        let l = &self.inner.layout;
        if l.is_contiguous() {
            Cow::Borrowed(&self.inner.data[l.offset()..l.offset() + l.numel()])
        } else {
            let d = &self.inner.data;
            let run = l.inner_run();
            if run > 1 {
                let mut v = crate::storage::take(l.numel());
                l.for_each_run(run, |o| v.extend_from_slice(&d[o..o + run]));
                Cow::Owned(v)
            } else if l.rank() >= 2 && l.strides()[l.rank() - 2] == 1 {
                Cow::Owned(gather_transposed(d, l))
            } else if let (dims @ 1.., len @ 2..) = l.repeated_tail() {
                // broadcast trailing dims (a scalar or row spread over a matrix): fill runs
                let keep = l.rank() - dims;
                let outer = Layout::from_parts(
                    l.shape()[..keep].into(),
                    l.strides()[..keep].into(),
                    l.offset(),
                );
                let mut v = crate::storage::take(l.numel());
                outer.for_each_offset(|o| v.extend(std::iter::repeat_n(d[o], len)));
                Cow::Owned(v)
            } else {
                let mut v = Vec::with_capacity(l.numel());
                l.for_each_offset(|o| v.push(d[o]));
                Cow::Owned(v)
            }
        }
    }

    /// The elements in row-major order, copied into a `Vec`.
    pub fn to_vec(&self) -> Vec<E> {
        match self.contiguous_data() {
            Cow::Borrowed(d) => {
                let mut v = crate::storage::take(d.len());
                v.extend_from_slice(d);
                v
            }
            Cow::Owned(v) => v,
        }
    }

    /// The elements in row-major order as a `Vec`, moved out without a copy when this is the
    /// only handle to the tensor and to its storage and the tensor covers the whole storage in
    /// order (a gradient taken out of a [`GradStore`](crate::GradStore), say); copied as
    /// [`Tensor::to_vec`] does otherwise.
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// let t = Tensor::<f32>::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2])?;
    /// let at = t.storage().as_ptr();
    /// let v = t.into_vec();
    /// assert_eq!(v, vec![1.0, 2.0, 3.0, 4.0]);
    /// assert_eq!(v.as_ptr(), at); // the same buffer: no copy
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn into_vec(self) -> Vec<E> {
        match self.into_own_vec() {
            Ok(v) => v,
            Err(t) => t.to_vec(),
        }
    }

    /// The elements in row-major order, moved out, when this is the only handle to the tensor
    /// and to its storage and the tensor covers the whole storage in order; else the tensor
    /// back, untouched.
    pub(crate) fn into_own_vec(mut self) -> std::result::Result<Vec<E>, Self> {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            let l = &inner.layout;
            let whole = l.is_contiguous() && l.offset() == 0 && l.numel() == inner.data.len();
            if let Some(storage) = Arc::get_mut(&mut inner.data).filter(|_| whole) {
                return Ok(storage.take_vec());
            }
        }
        Err(self)
    }

    /// The elements converted to `f64`.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        self.contiguous_data().iter().map(|v| v.as_f64()).collect()
    }

    /// The value of a one-element tensor (any shape with numel 1), like `tensor.item()`.
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// assert_eq!(Tensor::<f32>::scalar(2.5).item()?, 2.5);
    /// assert!(Tensor::<f32>::zeros(&[2]).item().is_err());
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn item(&self) -> Result<E> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "item",
                format!(
                    "only one-element tensors have an item, got shape {:?}",
                    self.shape()
                ),
            ));
        }
        Ok(self.inner.data[self.inner.layout.offset()])
    }

    /// A contiguous copy when not already contiguous; the same tensor otherwise.
    /// Differentiable (gradient passes through unchanged).
    pub fn contiguous(&self) -> Tensor<E> {
        if self.is_contiguous() {
            return self.clone();
        }
        crate::ops::shape::Contiguous::forward(self)
    }

    /// The same values cast to another element type (a constant: the result does not track).
    pub fn cast<F: Element>(&self) -> Tensor<F> {
        Tensor::from_parts(
            self.contiguous_data()
                .iter()
                .map(|v| F::of_f64(v.as_f64()))
                .collect(),
            self.shape(),
        )
    }

    // ---------------------------------------------------------------- autodiff state

    /// True if gradients flow to or through this tensor.
    #[inline]
    pub fn tracks_grad(&self) -> bool {
        !matches!(self.inner.grad, GradSlot::None)
    }

    /// True if this tensor is a leaf of the graph that collects gradients.
    #[inline]
    pub fn is_leaf(&self) -> bool {
        matches!(self.inner.grad, GradSlot::Leaf)
    }

    /// A new leaf sharing these values that collects gradients (like `requires_grad_()`).
    pub fn requires_grad(&self) -> Tensor<E> {
        Self::build(
            self.inner.data.clone(),
            self.inner.layout.clone(),
            GradSlot::Leaf,
            TensorId::fresh(),
        )
    }

    /// A leaf with a given id (used by parameters so their id is stable across steps).
    pub(crate) fn leaf_with_id(data: Arc<Storage<E>>, shape: &[usize], id: TensorId) -> Self {
        Self::build(data, Layout::contiguous(shape), GradSlot::Leaf, id)
    }

    /// The same values cut from the graph: no gradient flows back through the result.
    /// Used between truncated-BPTT chunks so memory stays flat.
    pub fn detach(&self) -> Tensor<E> {
        Self::build(
            self.inner.data.clone(),
            self.inner.layout.clone(),
            GradSlot::None,
            TensorId::fresh(),
        )
    }

    /// The name of the op that produced this tensor, if it is a recorded op output.
    pub fn op_name(&self) -> Option<&'static str> {
        match &self.inner.grad {
            GradSlot::Node(n) => Some(n.op.name()),
            _ => None,
        }
    }
}

/// Row-major copy of a view whose last two dims are a transposed matrix (the second-to-last dim
/// has stride 1), tile by tile so both the reads and the writes stay in cache.
fn gather_transposed<E: Element>(d: &[E], l: &Layout) -> Vec<E> {
    const TILE: usize = 16;
    let r = l.rank();
    let (rows, cols) = (l.shape()[r - 2], l.shape()[r - 1]);
    let cs = l.strides()[r - 1];
    // every element is written below, so a recycled buffer needs no zeroing
    let mut out = crate::storage::overwritable(l.numel());
    let outer = Layout::from_parts(
        l.shape()[..r - 2].into(),
        l.strides()[..r - 2].into(),
        l.offset(),
    );
    let mut block = 0;
    outer.for_each_offset(|base| {
        let dst = &mut out[block * rows * cols..(block + 1) * rows * cols];
        for ib in (0..rows).step_by(TILE) {
            for jb in (0..cols).step_by(TILE) {
                for i in ib..(ib + TILE).min(rows) {
                    for j in jb..(jb + TILE).min(cols) {
                        dst[i * cols + j] = d[base + i + j * cs];
                    }
                }
            }
        }
        block += 1;
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference row-major gather through the per-element odometer.
    fn odometer(t: &Tensor<f64>) -> Vec<f64> {
        let mut v = vec![];
        t.layout().for_each_offset(|o| v.push(t.storage()[o]));
        v
    }

    #[test]
    fn transposed_views_copy_like_the_odometer() {
        let t = Tensor::<f64>::arange(2 * 37 * 19)
            .reshape(&[2, 37, 19])
            .unwrap();
        for perm in [[0, 2, 1], [2, 1, 0], [1, 2, 0]] {
            let v = t.permute(&perm).unwrap();
            assert_eq!(v.to_vec(), odometer(&v), "perm {perm:?}");
        }
        let m = t
            .select(0, 1)
            .unwrap()
            .t()
            .unwrap()
            .narrow(0, 3, 10)
            .unwrap();
        assert_eq!(m.to_vec(), odometer(&m));
    }

    #[test]
    fn broadcast_views_copy_like_the_odometer() {
        let s = Tensor::<f64>::scalar(2.5);
        let col = Tensor::<f64>::arange(3).reshape(&[3, 1]).unwrap();
        let cube = Tensor::<f64>::arange(6).reshape(&[2, 3, 1]).unwrap();
        let views = [
            s.broadcast_to(&[4, 5]).unwrap(),   // every dim repeats
            col.broadcast_to(&[3, 7]).unwrap(), // one value per row
            cube.broadcast_to(&[2, 3, 4]).unwrap(),
            col.unsqueeze(0).unwrap().broadcast_to(&[2, 3, 5]).unwrap(), // repeats outside too
            col.t().unwrap().broadcast_to(&[4, 3]).unwrap(), // a broadcast row: dense runs
        ];
        for v in &views {
            assert_eq!(v.to_vec(), odometer(v), "{:?}", v.layout());
        }
        assert_eq!(
            views[1].to_vec()[..8],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
        );
    }
}
