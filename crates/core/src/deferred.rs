//! Deferred weight gradients: a weight used by a matmul at every time step receives
//! `dL/dW = Σ_t a_tᵀ g_t`. Instead of one thin GEMM per step (inner size = the batch), the tape
//! collects the factor pairs and forms the sum from products over stacked factors.
//!
//! The stacked rows of the thin pairs (one per time step) are cut into chunks of
//! [`CHUNK_ROWS`]. A chunk's product is handed to the helper thread as a background job as
//! soon as the chunk is complete, so that on two threads it runs while the backward chain goes
//! on, and the job adds it to the weight's running sum, in chunk order ([`Running`]); when the
//! weight's turn comes (after every use, by creation order) the rest is multiplied and added.
//! On one thread a panel-route chunk's product is formed at once on the calling thread, while
//! its factors (the last few time steps' inputs and gate gradients) are still in cache: left
//! to the weight's turn, they had to come back from beyond L2 (B1 and B4 one-thread steps
//! took about 2.7% longer so). From the second chunk on, its tiles are added straight into
//! the running sum ([`Running::fold`]), with the bits of a product buffer added after it but
//! without the buffer: B1's eight 1 MB chunk products a step are no longer written out and
//! read back.
//!
//! On two threads the pairs of a weight read as `w.t()` are recorded for `w` (the tape follows
//! the transpose, `Op::transposes`), in the view's orientation, and the sum is transposed when
//! taken: it is then wanted only at `w`'s turn, at the end of the backward pass. A thick pair,
//! one product over all time steps already (a decoder's `gᵀ h` over every token), is recorded
//! once for its weight; its product starts at once, cut by rows into blocks that the helper
//! works through during the rest of the backward pass ([`Early`]).
//!
//! `CHUNK_ROWS` is `matrixmultiply`'s depth block (its `KC`, 256 for f32 and f64), and a GEMM
//! over the whole stack adds one such block's product into its result after another, in the
//! same order. Every chunk is one block, and the rows after the last chunk are added a block
//! at a time, so where the products go through `matrixmultiply` the chunked sum has the bits
//! of the single product over all stacked rows, whichever thread computes which chunk.
//!
//! Where an `f32` panel kernel exists and `g` fills whole panels ([`panel_tiles`]), each
//! chunk's product goes through it instead, from the pairs themselves: the `a`s transposed
//! side by side, the `g`s' rows packed into panels, no stacked copy for `matrixmultiply` to
//! pack again. Over a chunk's depth the panel kernel gives `matrixmultiply`'s bits, and the
//! chunks are still added in order (one chunk's rows at a time on one thread too), so the
//! gradient is the same either way. That route forms `aᵀ g` row-major; the sum is transposed
//! once at the end when the weight is read transposed (`x.matmul(&w.t())`).
//!
//! A gradient laid out column-major (read through `w.t()`) whose `a`s fill whole panels
//! takes neither: where the column-major six-row tile exists, each chunk is formed as rows of
//! the transposed gradient, `gᵀ a` in `w`'s own layout ([`deferred_rows`]), the running sum
//! kept so; on one thread a chunk is added into it as the tiles are stored. The sums are the
//! panel route's, without its transposes.
//!
//! On two threads a panel-route chunk is two background jobs, one per block of whole panels
//! (columns of `aᵀ g`), each with its own running sum ([`Part`]). The last chunk is complete
//! only when the backward chain has finished, and the helper starts it at once; as one job
//! it kept the caller waiting at the weight's turn for all of it (about 1 ms of B1's step),
//! where now the caller takes the block the helper has not started. A block of columns
//! changes no sum: each output is the same tile's walk over the same rows of `aᵀ`.

use std::sync::{Arc, Mutex, OnceLock};

use rustc_hash::FxHashMap as HashMap;

use crate::deferred_rows;
use crate::element::{CmMode, Element, PanelTiles, WideKernels};
use crate::error::Result;
use crate::helper::{background, Background};
use crate::layout::Layout;
use crate::ops::gemm::MatRef;
use crate::ops::matmul::column_major;
use crate::panel;
use crate::tensor::{Tensor, TensorId};
use crate::threads::lock;
use crate::twin::transpose_into;

/// A factor pair `(a, g)` standing for the product `aᵀ g`.
type Factors<E> = (Tensor<E>, Tensor<E>);

/// Stacked rows per chunk: the depth block of `matrixmultiply` (see the module doc).
pub(crate) const CHUNK_ROWS: usize = 256;

/// Only gradients whose chunk product has this many multiply-adds are chunked (a smaller one
/// is not worth a job, and could go through the direct loops, which sum in another order).
const CHUNK_MIN_FMAS: usize = 2 << 20;

/// From this many multiply-adds, the product of a thick pair that comes first for its tensor
/// starts at once, in row blocks on the helper ([`Early`]).
const EARLY_MIN_FMAS: usize = 32 << 20;

/// About this many multiply-adds per row block of an [`Early`] product.
const EARLY_BLOCK_FMAS: usize = 64 << 20;

/// The product of a thick pair (one product over all time steps already, such as a decoder's
/// `gᵀ h`) started when it was recorded: its rows cut into blocks, each a background job. The
/// helper works through them in its spare time while the backward pass goes on (the weight's
/// turn comes after every op that used it, at the end for a parameter), and whatever it has
/// not started when the sum is wanted is computed by the caller.
///
/// A block holds whole rows of the product, each element summed over the full depth by the
/// same `matrixmultiply` call shape as the whole product (the left operand a transposed view,
/// at least [`panel::BIG_M`] rows, so neither the `gemm` crate nor the panel kernel takes
/// it), so the blocks put together have the whole product's bits. A wide gradient (B2's
/// decoder, see [`wide_gradient`](crate::ops::wide::wide_gradient)) is cut at multiples of
/// [`WIDE_BLOCK`](crate::ops::wide::WIDE_BLOCK) rows instead, each block formed as `at_g_like`
/// forms the whole, so the bits are those of one thread's. A product with too few
/// rows or multiply-adds for two blocks is one block, the whole product, formed on one thread
/// wherever it runs (the helper's jobs keep their products on its thread, and the caller
/// taking it back does too), so its bits do not depend on which thread formed it. Used only
/// while the pair is the tensor's sole one: when another comes, the sum is formed over all
/// pairs, stacked, as without this.
struct Early<E: Element> {
    product: Arc<RowsOf<E>>,
    blocks: Vec<EarlyBlock>,
    /// The product, `[rows, cols]` in memory, each block copied in by the thread that
    /// computed it (while the block is still in that core's cache).
    out: Arc<Mutex<Vec<E>>>,
}

/// One row block of an [`Early`] product, rows `r0..r0 + rows` of the whole.
struct EarlyBlock {
    r0: usize,
    rows: usize,
    job: Background<Result<()>>,
}

/// `aᵀ g` laid out like a `like` (see [`at_g_like`](crate::ops::matmul::at_g_like)), formed a
/// block of its rows in memory at a time: of the contiguous `[n, k]` buffer `gᵀ a` for a
/// column-major `like`, else of `[k, n]` `aᵀ g`. Each block's rows are formed as the whole
/// product would form them, so blocks put together have one product's bits: a wide gradient
/// ([`wide_gradient`](crate::ops::wide::wide_gradient)) through
/// [`wide::at_g_rows`](crate::ops::wide::at_g_rows), blocks starting at multiples of
/// [`unit`](Self::unit) rows; any other as `leadᵀ other` over the block's columns of `lead`
/// through `matrixmultiply` (see [`Early`]).
struct RowsOf<E: Element> {
    /// The factor whose columns are the product's rows: `g` for a column-major `like`, `a`
    /// otherwise (for a wide gradient, `g`'s columns are the rows and `wide` holds `a`).
    lead: Tensor<E>,
    /// The other factor.
    other: Tensor<E>,
    /// A wide gradient's `a`, prepared for [`wide::at_g_rows`](crate::ops::wide::at_g_rows).
    wide: Option<crate::ops::wide::Lead<E>>,
    /// Whether the product is seen transposed (`like` column-major).
    transposed: bool,
}

impl<E: Element> RowsOf<E> {
    fn new(a: &Tensor<E>, g: &Tensor<E>, like: &Layout) -> Result<Self> {
        let transposed = column_major(like);
        // the product in memory: `leadᵀ other` (`at_g_like` forms `(gᵀ a)ᵀ` for `transposed`)
        let (lead, other) = if transposed { (g, a) } else { (a, g) };
        let (depth, rows) = (lead.shape()[0], lead.shape()[1]);
        let wide = transposed && crate::ops::wide::wide_gradient::<E>(depth, a.shape()[1], rows);
        Ok(RowsOf {
            lead: lead.clone(),
            other: other.clone(),
            wide: wide.then(|| crate::ops::wide::Lead::new(a)).transpose()?,
            transposed,
        })
    }

    /// `(rows, cols)` of the product in memory.
    fn shape(&self) -> (usize, usize) {
        (self.lead.shape()[1], self.other.shape()[1])
    }

    /// Blocks start at multiples of this many rows.
    fn unit(&self) -> usize {
        match self.wide {
            Some(_) => crate::ops::wide::WIDE_BLOCK,
            None => 1,
        }
    }

    /// Rows `r0..r0 + rows`, written row-major into `out`.
    fn form(&self, (r0, rows): (usize, usize), out: &mut [E]) -> Result<()> {
        match &self.wide {
            Some(a) => crate::ops::wide::at_g_rows(a, &self.lead, (r0, r0 + rows), out),
            None => {
                let lead_t = self.lead.narrow(1, r0, rows)?.t()?;
                crate::ops::matmul::matmul_into(&lead_t, &self.other, out)
            }
        }
    }
}

/// One block of an [`Early`] product, copied into its rows `r0..r0 + rows` of `out`.
fn early_block<E: Element>(
    product: &RowsOf<E>,
    (r0, rows): (usize, usize),
    out: &Mutex<Vec<E>>,
) -> Result<()> {
    let _no_grad = crate::tape::no_grad();
    let cols = product.shape().1;
    let mut block = crate::storage::overwritable(rows * cols);
    product.form((r0, rows), &mut block)?;
    let mut out = lock(out);
    out[r0 * cols..(r0 + rows) * cols].copy_from_slice(&block);
    drop(out);
    crate::storage::give(block);
    Ok(())
}

impl<E: Element> Early<E> {
    /// Starts the row blocks of `aᵀ g`, laid out like `like`, or returns `None` when the
    /// product is small, the products run on one thread, or a factor is not row-major.
    fn start(a: &Tensor<E>, g: &Tensor<E>, like: &Layout) -> Option<Self> {
        let fmas = a.shape()[0] * a.shape()[1] * g.shape()[1];
        if fmas < EARLY_MIN_FMAS
            || crate::threads::product_threads() < 2
            || !a.is_contiguous()
            || !g.is_contiguous()
        {
            return None;
        }
        let product = Arc::new(RowsOf::new(a, g, like).ok()?);
        let ((rows, cols), unit) = (product.shape(), product.unit());
        // two blocks at least, so that the caller can take one back; of at least `BIG_M`
        // rows each, or one block of all rows; a wide gradient's of whole `WIDE_BLOCK`s
        let units = rows.div_ceil(unit);
        let parts = fmas
            .div_ceil(EARLY_BLOCK_FMAS)
            .max(2)
            .min(rows / panel::BIG_M)
            .min(units)
            .max(1);
        let out = Arc::new(Mutex::new(crate::storage::overwritable(rows * cols)));
        let blocks = (0..parts)
            .map(|i| {
                let (u0, count) = crate::ops::gemm::block(units, parts, i);
                let r0 = u0 * unit;
                let len = (count * unit).min(rows - r0);
                let (product, dst) = (product.clone(), out.clone());
                EarlyBlock {
                    r0,
                    rows: len,
                    job: background(move || early_block(&product, (r0, len), &dst)),
                }
            })
            .collect();
        Some(Early {
            product,
            blocks,
            out,
        })
    }

    /// The product, once every block is in: the last blocks first, which the helper (taking
    /// jobs in order) is the least likely to have started. A block it has not started is
    /// taken back and computed here (the same product, so the same bits); one it has is
    /// waited for.
    fn join(self) -> Result<Tensor<E>> {
        let whole = self.blocks.len() == 1;
        for block in self.blocks.into_iter().rev() {
            if block.job.cancel() {
                let run = || early_block(&self.product, (block.r0, block.rows), &self.out);
                // one block of any shape is the whole product on one thread, as on the helper
                if whole {
                    crate::threads::single_threaded(run)?;
                } else {
                    run()?;
                }
            } else {
                block.job.join()?;
            }
        }
        let out = std::mem::take(&mut *lock(&self.out));
        let (rows, cols) = self.product.shape();
        let sum = crate::ops::constant(out, &[rows, cols]);
        if self.product.transposed {
            sum.t()
        } else {
            Ok(sum)
        }
    }
}

/// The running sum of one tensor's chunk products. Each chunk's job adds its product in right
/// after forming it (on the helper, while the backward chain goes on, the product still in
/// that core's cache) once every earlier chunk is in; a product that comes before its turn
/// waits in `ahead`. So the products are added in chunk order, as one thread would add them,
/// and the end of the backward pass has only the additions of the chunks the helper has not
/// reached left (the caller runs those, see [`DeferredProducts::take`]). On B1 (eight
/// 1 MB chunks of the recurrent weight's gradient) the seven additions had taken the calling
/// thread 0.45-0.5 ms after the recurrent chain, with the helper idle.
struct Running<E: Element> {
    sum: Option<Tensor<E>>,
    /// How many chunks are in `sum`.
    added: usize,
    /// Products of later chunks that were formed before an earlier one was added.
    ahead: Vec<(usize, Tensor<E>)>,
}

impl<E: Element> Running<E> {
    fn new() -> Self {
        Running {
            sum: None,
            added: 0,
            ahead: Vec::new(),
        }
    }

    /// Adds chunk `i`'s product: when it is chunk `i`'s turn and nothing waits in `ahead`,
    /// `add_to` adds it straight into the sum's buffer (the sum held by nothing else, laid out
    /// as `form` would lay the product out), saving the product's own buffer and the pass that
    /// adds it; else `form` forms it and it is added as [`add`](Self::add) adds it.
    fn fold(
        &mut self,
        i: usize,
        add_to: impl FnOnce(&mut [E]),
        form: impl FnOnce() -> Result<Tensor<E>>,
    ) -> Result<()> {
        let turn = i == self.added && self.ahead.is_empty();
        if let Some(sum) = self.sum.take_if(|_| turn) {
            let shape = sum.shape().to_vec();
            match sum.into_own_vec() {
                Ok(mut buf) => {
                    add_to(&mut buf);
                    self.sum = Some(crate::ops::constant(buf, &shape));
                    self.added += 1;
                    return Ok(());
                }
                Err(sum) => self.sum = Some(sum),
            }
        }
        self.add(i, form()?)
    }

    /// Adds chunk `i`'s product in its turn, then any later ones that were waiting for it.
    fn add(&mut self, i: usize, part: Tensor<E>) -> Result<()> {
        if i != self.added {
            self.ahead.push((i, part));
            return Ok(());
        }
        self.sum = Some(accumulate(self.sum.take(), part)?);
        self.added += 1;
        while let Some(at) = self.ahead.iter().position(|(j, _)| *j == self.added) {
            let (_, part) = self.ahead.swap_remove(at);
            self.sum = Some(accumulate(self.sum.take(), part)?);
            self.added += 1;
        }
        Ok(())
    }
}

/// The factors recorded for one tensor: products of full chunks (started, each added to the
/// running sum by its job), then the pairs of the chunk being filled, or of everything after
/// the last chunk once a thick pair came.
struct Recorded<E: Element> {
    /// The first pair's product, started early (see [`Early`]); dropped if more pairs come.
    early: Option<Early<E>>,
    /// The chunks' jobs and running sums, one part per block of columns ([`column_blocks`]).
    parts: Vec<Part<E>>,
    open: Vec<Factors<E>>,
    open_rows: usize,
    /// No more chunks for this tensor: a pair of a chunk's rows or more came, or chunks would
    /// not pay (a small gradient, or `matrixmultiply` products on one thread).
    unchunked: bool,
    /// The layout the sum is formed like (the first pair's), and whether the tensor's
    /// gradient is its transpose (the pairs came through a `w.t()`; see `push`).
    like: Layout,
    flipped: bool,
    /// How every chunk's product is formed: decided by the first pair's shapes, which every
    /// pair shares.
    route: Route<E>,
}

/// How a tensor's chunk products are formed ([`Route::of`]).
#[derive(Clone, Copy)]
enum Route<E: 'static> {
    /// As rows of the transposed gradient, the running sum kept so ([`deferred_rows`]): a
    /// large gradient laid out column-major whose `a`s fill whole panels, any width of `g`.
    Rows(WideKernels<E>),
    /// `aᵀ g` row-major through the panel kernel ([`panel_tiles`]), placed like `like` at
    /// the end.
    Panels(PanelTiles<E>),
    /// Through `matrixmultiply`, over stacked factors, laid out like `like`.
    Stacked,
}

impl<E: Element> Route<E> {
    /// The route for pairs with `a_cols` and `n` columns summed like `like`.
    fn of(a_cols: usize, n: usize, like: &Layout) -> Self {
        let large = a_cols * n * CHUNK_ROWS >= CHUNK_MIN_FMAS;
        match (large && column_major(like)).then(|| deferred_rows::kernels(a_cols, n)) {
            Some(Some(kern)) => Route::Rows(kern),
            _ => panel_tiles(a_cols, n).map_or(Route::Stacked, Route::Panels),
        }
    }

    /// Whether chunks of this route are formed through the panel kernels (rows or panels),
    /// which one thread forms as soon as they are complete.
    fn kernels(self) -> bool {
        !matches!(self, Route::Stacked)
    }
}

/// The chunks' products over one block of a gradient's columns, `cols = (first, count)`: one
/// background job per chunk on two threads, each adding its block to `running` (on one
/// thread each chunk's block is added at once, with no job).
struct Part<E: Element> {
    cols: (usize, usize),
    /// How many chunks this block has had (each is its turn in `running`).
    chunks: usize,
    jobs: Vec<Background<Result<()>>>,
    running: Arc<Mutex<Running<E>>>,
}

/// The blocks of columns a chunk's product is cut into (`(first, count)` each): two blocks of
/// whole panels on a kernel route when products run on two threads and `n` is two whole
/// panels or more, else the `n` columns whole.
fn column_blocks<E: Element>(route: Route<E>, n: usize) -> Vec<(usize, usize)> {
    let panels = n / panel::NR;
    if !route.kernels()
        || !n.is_multiple_of(panel::NR)
        || panels < 2
        || crate::threads::product_threads() < 2
    {
        return vec![(0, n)];
    }
    (0..2)
        .map(|i| {
            let (q0, count) = crate::ops::gemm::block(panels, 2, i);
            (q0 * panel::NR, count * panel::NR)
        })
        .collect()
}

/// One chunk's factor pairs, shared by the jobs of its blocks of columns, and on the panel
/// route its `a`s transposed side by side into one row-major `aᵀ`, made by whichever job
/// needs it first.
struct ChunkInput<E: Element> {
    pairs: Vec<Factors<E>>,
    a_t: OnceLock<Vec<E>>,
}

impl<E: Element> ChunkInput<E> {
    fn new(pairs: Vec<Factors<E>>) -> Arc<Self> {
        Arc::new(ChunkInput {
            pairs,
            a_t: OnceLock::new(),
        })
    }

    /// `aᵀ`, `[a_cols, rows]` row-major.
    fn a_t(&self) -> &[E] {
        self.a_t.get_or_init(|| {
            let a_cols = self.pairs[0].0.shape()[1];
            let rows: usize = self.pairs.iter().map(|(a, _)| a.shape()[0]).sum();
            // every element is written below
            let mut at = crate::storage::overwritable(a_cols * rows);
            let mut row0 = 0;
            for (a, _) in &self.pairs {
                let r = a.shape()[0];
                transpose_into(&a.contiguous_data(), r, a_cols, &mut at[row0..], rows);
                row0 += r;
            }
            at
        })
    }

    /// Hands `aᵀ` back to the storage cache, when this is the input's last holder.
    fn done(this: Arc<Self>) {
        if let Some(at) = Arc::into_inner(this).and_then(|input| input.a_t.into_inner()) {
            crate::storage::give(at);
        }
    }
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

/// The panel kernel that forms `Σ aᵀ g` for factors of `a_cols` and `n` columns, if this
/// build and CPU have one for `E` and the product is a large one in whole tiles: its
/// right-hand side packs into whole panels (`n` a multiple of [`panel::NR`]) and `aᵀ` into
/// whole blocks of rows (`a_cols` a multiple of [`panel::MR`]), so no tile goes through the
/// kernel's buffer for ragged edges.
///
/// A chunk is at most [`CHUNK_ROWS`] stacked rows deep, and over such a depth the panel
/// kernel's sums are `matrixmultiply`'s bits (see [`panel`]), so either route gives the same
/// gradient. On the AVX2 machine (one thread) B1's 256x256x1024 chunk took 1.45–1.51 ms
/// through panels against 1.67–1.78 through `matrixmultiply`, B4's 128x256x384 0.27 against
/// 0.29–0.30; B2's 200 columns of `a` gained nothing and stay on `matrixmultiply`
/// (800 columns of `g`: twelve whole panels and a ragged one).
fn panel_tiles<E: Element>(a_cols: usize, n: usize) -> Option<PanelTiles<E>> {
    let tiles = E::panel_tile()?;
    (n.is_multiple_of(panel::NR)
        && a_cols.is_multiple_of(panel::MR)
        && a_cols * n * CHUNK_ROWS >= CHUNK_MIN_FMAS)
        .then_some(tiles)
}

/// `Σ aᵀ g` over a chunk's pairs (at most [`CHUNK_ROWS`] rows in all), columns
/// `c0..c0 + w` of it, as a row-major `[a_cols, w]` tensor, through the panel kernel: the `a`s
/// transposed side by side into one row-major `aᵀ` (shared by the chunk's blocks of columns)
/// and those columns of the `g`s' rows packed into panels, each copied once (where the
/// `matrixmultiply` route stacks them, then packs them again).
fn panel_product<E: Element>(
    tiles: PanelTiles<E>,
    input: &ChunkInput<E>,
    (c0, w): (usize, usize),
) -> Result<Tensor<E>> {
    let a_cols = input.pairs[0].0.shape()[1];
    let mut out = crate::storage::overwritable(a_cols * w);
    panel_fold(tiles, input, (c0, w), &mut out, panel::Fold::Write);
    Ok(crate::ops::constant(out, &[a_cols, w]))
}

/// [`panel_product`]'s product written into `out` (row-major `[a_cols, w]`), or added to what
/// `out` holds, as `fold` says.
fn panel_fold<E: Element>(
    tiles: PanelTiles<E>,
    input: &ChunkInput<E>,
    (c0, w): (usize, usize),
    out: &mut [E],
    fold: panel::Fold,
) {
    let pairs = &input.pairs;
    let (a_cols, n) = (pairs[0].0.shape()[1], pairs[0].1.shape()[1]);
    let rows: usize = pairs.iter().map(|(a, _)| a.shape()[0]).sum();
    debug_assert!(rows <= CHUNK_ROWS && c0 + w <= n && out.len() == a_cols * w);
    // every element is written below
    let mut panels = panel::LineAligned::overwritable(rows * w);
    let mut row0 = 0;
    for (_, g) in pairs {
        panel::pack_rows(&g.contiguous_data()[c0..], n, (rows, w), row0, &mut panels);
        row0 += g.shape()[0];
    }
    let a_t = MatRef {
        data: input.a_t(),
        rs: rows,
        cs: 1,
    };
    panel::product_folded(tiles, (a_cols, rows, w), 0, a_t, &panels, out, w, fold);
    crate::storage::give(panels.into_vec());
}

/// A chunk's product: laid out like `like` through `matrixmultiply` (all its columns), or
/// columns `cols` of it through the kernels: row-major through panels (then [`place`] lays
/// the sum out like `like`), or as those rows of the transposed gradient.
fn chunk_product<E: Element>(
    route: Route<E>,
    input: &ChunkInput<E>,
    cols: (usize, usize),
    like: &Layout,
) -> Result<Tensor<E>> {
    match route {
        Route::Rows(kern) => Ok(deferred_rows::chunk_product(kern, &input.pairs, cols)),
        Route::Panels(tiles) => panel_product(tiles, input, cols),
        Route::Stacked => stacked_product(&input.pairs, like),
    }
}

/// A kernel route's chunk product added into `sum` as its tiles are stored (the bits of
/// [`chunk_product`] followed by the addition).
fn fold_chunk<E: Element>(
    route: Route<E>,
    input: &ChunkInput<E>,
    cols: (usize, usize),
    sum: &mut [E],
) {
    match route {
        Route::Rows(kern) => deferred_rows::chunk_into(kern, &input.pairs, cols, sum, CmMode::Fold),
        Route::Panels(tiles) => panel_fold(tiles, input, cols, sum, panel::Fold::Add),
        Route::Stacked => unreachable!("a matrixmultiply-route chunk is never folded in place"),
    }
}

/// Copies `part`, columns `c0..c0 + w` of a `[k, n]` panel-route sum (row-major `[k, w]`),
/// into `out`, the whole sum laid out like `like`: row-major, or a contiguous `[n, k]`
/// transpose when `like` is column-major (one transpose per gradient, after the chunks are
/// added, so the sums are the same).
fn place<E: Element>(
    part: &[E],
    (c0, w): (usize, usize),
    (k, n): (usize, usize),
    like: &Layout,
    out: &mut [E],
) {
    if column_major(like) {
        transpose_into(part, k, w, &mut out[c0 * k..], k);
    } else {
        for (dst, src) in out.chunks_exact_mut(n).zip(part.chunks_exact(w)) {
            dst[c0..c0 + w].copy_from_slice(src);
        }
    }
}

/// `pairs` cut into groups of at most [`CHUNK_ROWS`] stacked rows (a pair crossing a group's
/// end is narrowed into both), in order.
fn chunk_groups<E: Element>(pairs: &[Factors<E>]) -> Result<Vec<Vec<Factors<E>>>> {
    let mut groups: Vec<Vec<Factors<E>>> = Vec::new();
    let mut open = CHUNK_ROWS;
    for (a, g) in pairs {
        let mut start = 0;
        let rows = a.shape()[0];
        while start < rows {
            if open == CHUNK_ROWS {
                groups.push(Vec::new());
                open = 0;
            }
            let len = (CHUNK_ROWS - open).min(rows - start);
            let last = groups.last_mut().expect("one group at least");
            if start == 0 && len == rows {
                last.push((a.clone(), g.clone()));
            } else {
                last.push((a.narrow(0, start, len)?, g.narrow(0, start, len)?));
            }
            open += len;
            start += len;
        }
    }
    Ok(groups)
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
    /// being the layout of the `[k, n]` tensor the product belongs to: the tensor `id` names,
    /// or, when `flipped`, its transpose (`w.t()`, whose product is recorded for `w` and
    /// transposed when taken, so that it is formed after every use of `w`, in the orientation
    /// it had before). A pair in the other orientation than the first one's is recorded
    /// transposed (`gᵀ a`, its factors swapped).
    ///
    /// A pair thinner than a chunk that fills the open chunk closes it (its leading rows
    /// ending the chunk, the others opening the next), and the chunk's product starts on the
    /// helper, or on one thread is formed at once. A thicker pair (one product over all time
    /// steps already) ends the chunking of this tensor, and so do a small gradient (under
    /// [`CHUNK_MIN_FMAS`] per chunk) and, on one thread, products through `matrixmultiply`
    /// (which would stack each chunk's factors into a copy; all pairs at once pack them one
    /// time): the rest waits for [`take`](Self::take).
    pub(crate) fn push(
        &mut self,
        id: TensorId,
        (a, g): Factors<E>,
        like: &Layout,
        flipped: bool,
    ) -> Result<()> {
        let first = !self.recorded.contains_key(&id);
        let r = self.recorded.entry(id).or_insert_with(|| {
            let n = g.shape()[1];
            let route = Route::of(a.shape()[1], n, like);
            let parts = column_blocks(route, n).into_iter();
            Recorded {
                early: None,
                parts: parts
                    .map(|cols| Part {
                        cols,
                        chunks: 0,
                        jobs: Vec::new(),
                        running: Arc::new(Mutex::new(Running::new())),
                    })
                    .collect(),
                open: Vec::new(),
                open_rows: 0,
                unchunked: false,
                route,
                like: like.clone(),
                flipped,
            }
        });
        let (a, g) = if flipped == r.flipped { (a, g) } else { (g, a) };
        let rows = a.shape()[0];
        let one_thread = crate::threads::product_threads() < 2;
        r.unchunked |= rows >= CHUNK_ROWS
            || a.shape()[1] * g.shape()[1] * CHUNK_ROWS < CHUNK_MIN_FMAS
            || (one_thread && !r.route.kernels());
        // a second pair drops the early blocks (one not started is not run): the sum goes over
        // all pairs
        r.early = if first && rows >= CHUNK_ROWS {
            Early::start(&a, &g, &r.like)
        } else {
            None
        };
        if r.unchunked || r.open_rows + rows < CHUNK_ROWS {
            r.open_rows += rows;
            r.open.push((a, g));
            return Ok(());
        }
        let head = CHUNK_ROWS - r.open_rows;
        let rest = rows - head;
        let (route, like) = (r.route, &r.like);
        r.open.push((a.narrow(0, 0, head)?, g.narrow(0, 0, head)?));
        let input = ChunkInput::new(std::mem::take(&mut r.open));
        for part in &mut r.parts {
            let (i, cols) = (part.chunks, part.cols);
            part.chunks += 1;
            // on one thread (where only the kernel routes are chunked) formed now, while the
            // chunk's factors are still in cache, and from the second chunk on added straight
            // into the running sum
            if one_thread && route.kernels() {
                lock(&part.running).fold(
                    i,
                    |sum| fold_chunk(route, &input, cols, sum),
                    || chunk_product(route, &input, cols, like),
                )?;
                continue;
            }
            let (input, like) = (input.clone(), like.clone());
            let running = part.running.clone();
            part.jobs.push(background(move || {
                let product = chunk_product(route, &input, cols, &like);
                ChunkInput::done(input);
                lock(&running).add(i, product?)
            }));
        }
        ChunkInput::done(input);
        r.open_rows = rest;
        if rest > 0 {
            r.open
                .push((a.narrow(0, head, rest)?, g.narrow(0, head, rest)?));
        }
        Ok(())
    }

    /// The sum of the products recorded for `id`, if any, as the gradient of that tensor
    /// (transposed when the pairs were recorded `flipped`): the chunks' products added in the
    /// order they were recorded, then those of the rows after the last chunk, one chunk's rows
    /// at a time ([`chunk_groups`]; one `matrixmultiply` product over them all when there was
    /// no chunk and no panel kernel), so that every sum is added in the order one product over
    /// the whole stack would add it.
    pub(crate) fn take(&mut self, id: TensorId) -> Result<Option<Tensor<E>>> {
        let Some(r) = self.recorded.remove(&id) else {
            return Ok(None);
        };
        let flipped = r.flipped;
        let sum = Self::sum(r)?;
        if flipped {
            sum.t().map(Some)
        } else {
            Ok(Some(sum))
        }
    }

    /// The sum of one tensor's products, laid out like its `like`.
    fn sum(r: Recorded<E>) -> Result<Tensor<E>> {
        if let Some(early) = r.early {
            return early.join();
        }
        let (route, like) = (r.route, &r.like);
        let chunked = r.parts.iter().any(|part| part.chunks > 0);
        if !chunked && !route.kernels() {
            return stacked_product(&r.open, like);
        }
        let _no_grad = crate::tape::no_grad();
        let mut rest: Vec<_> = chunk_groups(&r.open)?
            .into_iter()
            .map(ChunkInput::new)
            .collect();
        let (n, single) = (r.parts.iter().map(|p| p.cols.1).sum(), r.parts.len() == 1);
        let mut out = None;
        // the last block first, and in each the last chunks first: the helper takes jobs in
        // order, so those it has not started run here while it goes on from the front (the
        // running sums keep the order)
        for (p, part) in r.parts.into_iter().enumerate().rev() {
            let chunks = part.chunks;
            for job in part.jobs.into_iter().rev() {
                job.join()?;
            }
            let mut running = lock(&part.running);
            debug_assert!(running.added == chunks && running.ahead.is_empty());
            let mut sum = running.sum.take();
            drop(running);
            // the first block comes last: it hands each group's `aᵀ` back to the storage
            // cache as soon as it is done with it, for the next group to use
            let groups = if p == 0 {
                std::mem::take(&mut rest)
            } else {
                rest.clone()
            };
            for group in groups {
                let product = chunk_product(route, &group, part.cols, like)?;
                sum = Some(accumulate(sum, product)?);
                ChunkInput::done(group);
            }
            let sum = sum.ok_or_else(|| {
                crate::error::Error::Backward(
                    "a deferred gradient was recorded without factors".into(),
                )
            })?;
            match route {
                // the transposed gradient's rows (`like` seen transposed): whole, or a block
                // of them (`[w, k]`) copied in as it is
                Route::Rows(_) if single => return sum.t(),
                Route::Rows(_) => {
                    let ((c0, w), k) = (part.cols, sum.shape()[1]);
                    let out = out.get_or_insert_with(|| crate::storage::overwritable(k * n));
                    out[c0 * k..(c0 + w) * k].copy_from_slice(&sum.contiguous_data());
                }
                // `matrixmultiply`'s sum is laid out like `like` already (and whole), and so
                // is a whole row-major one
                Route::Stacked => return Ok(sum),
                Route::Panels(_) if single && !column_major(like) => return Ok(sum),
                Route::Panels(_) => {
                    let k = sum.shape()[0];
                    let out = out.get_or_insert_with(|| crate::storage::overwritable(k * n));
                    place(&sum.contiguous_data(), part.cols, (k, n), like, out);
                }
            }
        }
        let out = out.ok_or_else(|| {
            crate::error::Error::Backward("a deferred gradient had no block of columns".into())
        })?;
        let k = out.len() / n;
        if column_major(like) {
            crate::ops::constant(out, &[n, k]).t()
        } else {
            Ok(crate::ops::constant(out, &[k, n]))
        }
    }
}

/// `sum + part` (or `part` alone), in place in `sum`'s buffer when the two are laid out alike.
fn accumulate<E: Element>(sum: Option<Tensor<E>>, part: Tensor<E>) -> Result<Tensor<E>> {
    match sum {
        None => Ok(part),
        Some(sum) => crate::tape::add_into(sum, &part),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_one_thread_panel_route_chunks_are_formed_as_soon_as_complete_and_added_in_place() {
        if panel_tiles::<f32>(64, 128).is_none() {
            eprintln!("no f32 panel kernel on this CPU: the panel route is not taken");
            return;
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        pool.install(|| {
            let value = |i: usize| ((i * 37 % 101) as f32 - 50.0) * 0.013;
            let pair = |s: usize| {
                let a =
                    crate::ops::constant((0..16 * 64).map(|i| value(i + s)).collect(), &[16, 64]);
                let g = crate::ops::constant(
                    (0..16 * 128).map(|i| value(3 * i + s)).collect(),
                    &[16, 128],
                );
                (a, g)
            };
            let like = Layout::contiguous(&[64, 128]);
            let mut deferred = DeferredProducts::<f32>::new();
            let id = crate::ops::constant(vec![0f32; 64 * 128], &[64, 128]).id();
            let pairs: Vec<_> = (0..52).map(pair).collect();
            for (s, p) in pairs.iter().enumerate() {
                deferred.push(id, p.clone(), &like, false).unwrap();
                // every sixteen pairs of 16 rows fill a chunk of 256: three chunks (the
                // second and third added into the running sum in place), then 64 rows
                let part = &deferred.recorded[&id].parts[0];
                assert_eq!((part.chunks, part.jobs.len()), ((s + 1) / 16, 0));
            }
            let got = deferred.take(id).unwrap().unwrap().to_vec();
            let a: Vec<&Tensor<f32>> = pairs.iter().map(|(a, _)| a).collect();
            let g: Vec<&Tensor<f32>> = pairs.iter().map(|(_, g)| g).collect();
            let (a, g) = (Tensor::cat(&a, 0).unwrap(), Tensor::cat(&g, 0).unwrap());
            let want = a.t().unwrap().matmul(&g).unwrap().to_vec();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want));
        });
    }

    #[test]
    fn a_running_sum_adds_chunks_in_their_order_whatever_order_they_finish_in() {
        // f32 sums where the order shows: 1e8 + 4 rounds back to 1e8 (ties to even), so
        // (1e8 + 4) + 4 = 1e8 while 1e8 + (4 + 4) = 1e8 + 8
        let part = |v: [f32; 3]| crate::ops::constant(v.to_vec(), &[1, 3]);
        let parts = [
            [1e8, 4.0, 4.0],
            [4.0, 1e8, 4.0],
            [4.0, 4.0, 1e8],
            [-1e8, 3.0, 0.5],
        ];
        let in_order = parts
            .iter()
            .fold(None, |sum, &p| Some(accumulate(sum, part(p)).unwrap()))
            .unwrap()
            .to_vec();
        for finish in [[0, 1, 2, 3], [2, 0, 3, 1], [3, 2, 1, 0], [1, 3, 0, 2]] {
            let mut running = Running::new();
            for i in finish {
                running.add(i, part(parts[i])).unwrap();
            }
            assert_eq!((running.added, running.ahead.len()), (4, 0));
            let got = running.sum.unwrap().to_vec();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&got),
                bits(&in_order),
                "finished in the order {finish:?}"
            );
        }
    }
}
