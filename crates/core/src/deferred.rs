//! Deferred weight gradients: a weight used by a matmul at every time step receives
//! `dL/dW = Σ_t a_tᵀ g_t`. Instead of one thin GEMM per step (inner size = the batch), the tape
//! collects the factor pairs and forms the sum from products over stacked factors.
//!
//! The stacked rows of the thin pairs (one per time step) are cut into chunks of
//! [`CHUNK_ROWS`]. A chunk's product is handed to the helper thread as a background job as
//! soon as the chunk is complete, so that on two threads it runs while the backward chain goes
//! on; when the weight's turn comes (after every use, by creation order) the rest is
//! multiplied and the partial products are added in order.
//!
//! `CHUNK_ROWS` is `matrixmultiply`'s depth block (its `KC`, 256 for f32 and f64), and a GEMM
//! over the whole stack adds one such block's product into its result after another, in the
//! same order. Every chunk is one block, and the rows after the last chunk are added a block
//! at a time, so where the products go through `matrixmultiply` the chunked sum has the bits
//! of the single product over all stacked rows, whichever thread computes which chunk.

use rustc_hash::FxHashMap as HashMap;

use crate::element::Element;
use crate::error::Result;
use crate::helper::{background, Background};
use crate::layout::Layout;
use crate::tensor::{Tensor, TensorId};

/// A factor pair `(a, g)` standing for the product `aᵀ g`.
type Factors<E> = (Tensor<E>, Tensor<E>);

/// Stacked rows per chunk: the depth block of `matrixmultiply` (see the module doc).
pub(crate) const CHUNK_ROWS: usize = 256;

/// Only gradients whose chunk product has this many multiply-adds are chunked (a smaller one
/// is not worth a job, and could go through the direct loops, which sum in another order).
const CHUNK_MIN_FMAS: usize = 2 << 20;

/// The factors recorded for one tensor: products of full chunks (started), then the pairs of
/// the chunk being filled, or of everything after the last chunk once a thick pair came.
struct Recorded<E: Element> {
    chunks: Vec<Background<Result<Tensor<E>>>>,
    open: Vec<Factors<E>>,
    open_rows: usize,
    /// No more chunks for this tensor: a pair of a chunk's rows or more came, or chunks would
    /// not pay (a small gradient, or products on one thread).
    unchunked: bool,
}

/// Factor pairs per tensor id.
#[derive(Default)]
pub(crate) struct DeferredProducts<E: Element> {
    recorded: HashMap<TensorId, Recorded<E>>,
}

/// `Σ aᵀ g` over `pairs`, the `a`s and `g`s stacked by rows, laid out like `like` (see
/// [`matmul::at_g_like`](crate::ops::matmul::at_g_like)).
fn stacked_product<E: Element>(pairs: &[Factors<E>], like: &Layout) -> Result<Tensor<E>> {
    let _no_grad = crate::tape::no_grad();
    let (a, g) = stacked(pairs)?;
    crate::ops::matmul::at_g_like(&a, &g, like)
}

/// The `a`s and the `g`s of `pairs`, stacked by rows.
fn stacked<E: Element>(pairs: &[Factors<E>]) -> Result<Factors<E>> {
    if let [(a, g)] = pairs {
        return Ok((a.clone(), g.clone()));
    }
    let a: Vec<&Tensor<E>> = pairs.iter().map(|(a, _)| a).collect();
    let g: Vec<&Tensor<E>> = pairs.iter().map(|(_, g)| g).collect();
    Ok((Tensor::cat(&a, 0)?, Tensor::cat(&g, 0)?))
}

impl<E: Element> DeferredProducts<E> {
    pub(crate) fn new() -> Self {
        DeferredProducts {
            recorded: HashMap::default(),
        }
    }

    /// Records `aᵀ g` as a gradient contribution to `id` (`a`: [m, k], `g`: [m, n]), `like`
    /// being the layout of the tensor `id` names.
    ///
    /// A pair thinner than a chunk that fills the open chunk closes it (its leading rows
    /// ending the chunk, the others opening the next), and the chunk's product starts on the
    /// helper. A thicker pair (one product over all time steps already) ends the chunking of
    /// this tensor, and so do a small gradient (under [`CHUNK_MIN_FMAS`] per chunk) and
    /// products on one thread (where a chunk could not overlap anything): the rest waits for
    /// [`take`](Self::take).
    pub(crate) fn push(
        &mut self,
        id: TensorId,
        a: Tensor<E>,
        g: Tensor<E>,
        like: &Layout,
    ) -> Result<()> {
        let r = self.recorded.entry(id).or_insert_with(|| Recorded {
            chunks: Vec::new(),
            open: Vec::new(),
            open_rows: 0,
            unchunked: false,
        });
        let rows = a.shape()[0];
        r.unchunked |= rows >= CHUNK_ROWS
            || a.shape()[1] * g.shape()[1] * CHUNK_ROWS < CHUNK_MIN_FMAS
            || crate::threads::product_threads() < 2;
        if r.unchunked || r.open_rows + rows < CHUNK_ROWS {
            r.open_rows += rows;
            r.open.push((a, g));
            return Ok(());
        }
        let head = CHUNK_ROWS - r.open_rows;
        let rest = rows - head;
        r.open.push((a.narrow(0, 0, head)?, g.narrow(0, 0, head)?));
        let pairs = std::mem::take(&mut r.open);
        let like = like.clone();
        r.chunks
            .push(background(move || stacked_product(&pairs, &like)));
        r.open_rows = rest;
        if rest > 0 {
            r.open
                .push((a.narrow(0, head, rest)?, g.narrow(0, head, rest)?));
        }
        Ok(())
    }

    /// The sum of the products recorded for `id`, if any, laid out like `like`, the tensor it
    /// is the gradient of: the chunks' products added in the order they were recorded, then
    /// those of the rows after the last chunk, one chunk's rows at a time (one product when
    /// there was no chunk), so that every sum is added in the order one product over the
    /// whole stack would add it.
    pub(crate) fn take(&mut self, id: TensorId, like: &Layout) -> Result<Option<Tensor<E>>> {
        let Some(r) = self.recorded.remove(&id) else {
            return Ok(None);
        };
        if r.chunks.is_empty() {
            return stacked_product(&r.open, like).map(Some);
        }
        let mut sum: Option<Tensor<E>> = None;
        for part in r.chunks.into_iter().map(Background::join) {
            sum = Some(accumulate(sum, part?)?);
        }
        if r.open_rows > 0 {
            let (a, g) = stacked(&r.open)?;
            for start in (0..r.open_rows).step_by(CHUNK_ROWS) {
                let len = CHUNK_ROWS.min(r.open_rows - start);
                let part = stacked_product(
                    &[(a.narrow(0, start, len)?, g.narrow(0, start, len)?)],
                    like,
                )?;
                sum = Some(accumulate(sum, part)?);
            }
        }
        Ok(sum)
    }
}

/// `sum + part` (or `part` alone), in place in `sum`'s buffer when the two are laid out alike.
fn accumulate<E: Element>(sum: Option<Tensor<E>>, part: Tensor<E>) -> Result<Tensor<E>> {
    match sum {
        None => Ok(part),
        Some(sum) => crate::tape::add_into(sum, &part),
    }
}
