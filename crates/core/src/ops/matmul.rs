//! Matrix products: through a GEMM library (`gemm.rs`), the direct loops of `gemm.rs`, or a reused
//! right-hand side's packed panels (`panel/`). Operands are passed by stride, so a transposed
//! view (`b.t()`) costs no copy.

use super::gemm::{block_product, gemm, packs, two_way_split, Half, MatRef};
use super::reduce::column_sums;
use super::{constant, grads2};
use crate::element::{Element, PanelTiles};
use crate::error::{Error, Result};
use crate::panel::{self, Read};
use crate::tape::{InputGrads, Op};
use crate::tensor::Tensor;
use std::sync::Arc;

/// Elementwise work on a finished block of a 2-D product, run by the thread that computed the
/// block, so that the helper's half of a split product does its share: the added term of
/// [`Addmm`] and [`AddmmAct`](super::addmm_act::AddmmAct), and the latter's activations.
pub(crate) type Epilogue<E> = Arc<dyn Fn(Block<'_, E>) + Send + Sync>;

/// Rows `i0..i0 + rows` and columns `j0..j0 + cols` of a product, row `r` at
/// `data[r * ld..r * ld + cols]`.
pub(crate) struct Block<'a, E> {
    pub(crate) i0: usize,
    pub(crate) j0: usize,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) data: &'a mut [E],
    pub(crate) ld: usize,
}

impl<'a, E> Block<'a, E> {
    /// The whole `m x n` product in `c`.
    fn whole(m: usize, n: usize, c: &'a mut [E]) -> Self {
        Block {
            i0: 0,
            j0: 0,
            rows: m,
            cols: n,
            data: c,
            ld: n,
        }
    }

    /// The caller's block of a split product in `c` (the whole `m x n` product).
    fn first(half: Half, (m, n): (usize, usize), c: &'a mut [E]) -> Self {
        match half {
            Half::Rows(r0) => Block::whole(r0, n, &mut c[..r0 * n]),
            Half::Cols(j0) => Block {
                cols: j0,
                ..Block::whole(m, n, c)
            },
        }
    }

    /// The helper's block of a split product, in its own dense buffer.
    fn second(half: Half, (m, n): (usize, usize), out: &'a mut [E]) -> Self {
        match half {
            Half::Rows(r0) => Block {
                i0: r0,
                ..Block::whole(m - r0, n, out)
            },
            Half::Cols(j0) => Block {
                j0,
                ..Block::whole(m, n - j0, out)
            },
        }
    }
}

/// Runs `epi`, if any, on `block`.
fn finish<E>(epi: Option<&Epilogue<E>>, block: Block<'_, E>) {
    if let Some(f) = epi {
        f(block);
    }
}

/// The strided view of a rank-2 slice of a tensor for GEMM.
fn gemm_view<E: Element>(t: &Tensor<E>, batch: Option<usize>) -> MatRef<'_, E> {
    let l = t.layout();
    let r = l.rank();
    let base = l.offset() + batch.map_or(0, |b| b * l.strides()[0]);
    MatRef {
        data: &t.storage()[base..],
        rs: l.strides()[r - 2],
        cs: l.strides()[r - 1],
    }
}

/// Where GEMM reads an operand: a strided view of a storage, or (for a right-hand `w.t()`)
/// that storage's row-major transposed copy. It owns its storage handle, so a block of the
/// product can be computed on the helper thread; cloning it only bumps that handle.
#[derive(Clone)]
struct Operand<E: Element> {
    storage: Arc<crate::storage::Storage<E>>,
    offset: usize,
    rs: usize,
    cs: usize,
    /// `Some((rows, cols))`: read `storage.transposed(rows, cols)`, row stride `rows`.
    twin: Option<(usize, usize)>,
    /// `Some((read, k, n))`: a right-hand side read through `storage.panels(read, k, n)` by the
    /// panel kernel (see [`crate::panel`]).
    panels: Option<(Read, usize, usize)>,
}

impl<E: Element> Operand<E> {
    /// The 2-D view of `t` (batch `batch` of a 3-D tensor).
    fn of(t: &Tensor<E>, batch: Option<usize>) -> Self {
        let l = t.layout();
        let r = l.rank();
        Operand {
            storage: t.storage_arc().clone(),
            offset: l.offset() + batch.map_or(0, |b| b * l.strides()[0]),
            rs: l.strides()[r - 2],
            cs: l.strides()[r - 1],
            twin: None,
            panels: None,
        }
    }

    /// The right-hand operand of an `m x k x n` product that packs, or of a one-row product of
    /// [`panel::row_product`] size. A whole `[k, n]` storage, read as stored or as the
    /// transpose of `[n, k]` (`w.t()`), is read from the storage's packed panels once it has
    /// them, where this CPU has a panel kernel for `E` (see [`crate::panel`]; `a_rows` says
    /// whether the left operand's rows are contiguous, which [`panel::plan`] weighs).
    /// Elsewhere a plain `w.t()` is read from the storage's row-major transposed copy once it
    /// has one (see [`crate::twin`]): `matrixmultiply` packs a row-major operand faster, and
    /// to the same packed values.
    fn rhs(b: &Tensor<E>, m: usize, a_rows: bool) -> Self {
        let mut op = Self::of(b, None);
        let [k, n] = *b.shape() else {
            return op;
        };
        let whole = op.offset == 0 && b.storage().len() == k * n && k > 1 && n > 1;
        let (packed, row) = (packs(m, k, n), panel::row_product(m, k, n));
        if !whole || !(packed || row) {
            return op;
        }
        let read = match (op.rs, op.cs) {
            (rs, 1) if rs == n => Some(Read::AsStored),
            (1, cs) if cs == k => Some(Read::Transposed),
            _ => None,
        };
        let plan = E::panel_tile().is_some() && panel::plan(m, k, n, a_rows);
        match (read, plan) {
            // asked for here, so that the copy is made by the caller
            (Some(read), true) => {
                op.panels = b.storage_arc().panels(read, (k, n)).map(|_| (read, k, n));
            }
            (Some(Read::Transposed), false)
                if packed && b.storage_arc().transposed(n, k).is_some() =>
            {
                op.twin = Some((n, k));
            }
            _ => {}
        }
        op
    }

    /// The packed panels this operand is read through, if any.
    fn panel_data(&self) -> Option<&[E]> {
        let (read, k, n) = self.panels?;
        self.storage.panels(read, (k, n))
    }

    fn view(&self) -> MatRef<'_, E> {
        if let Some((rows, cols)) = self.twin {
            if let Some(data) = self.storage.transposed(rows, cols) {
                return MatRef {
                    data,
                    rs: rows,
                    cs: 1,
                };
            }
        }
        // the plain view holds the same values (a copy dropped meanwhile lands here)
        MatRef {
            data: &self.storage[self.offset..],
            rs: self.rs,
            cs: self.cs,
        }
    }
}

/// `c = a @ b` for one 2-D product, its second block on the helper thread when `half` says how
/// to cut it (see [`two_way_split`]) and the helper is free; else through [`gemm`]. A block
/// of rows is written in place when the helper polls for work ([`rows_in_place`]); otherwise
/// the helper's block comes back in a buffer of its own ([`split_with_helper`]).
fn gemm_operands<E: Element>(
    (m, k, n): (usize, usize, usize),
    half: Option<Half>,
    a: Operand<E>,
    b: Operand<E>,
    c: &mut [E],
    epi: Option<&Epilogue<E>>,
) {
    if let (Some(tiles), Some(panels)) = (E::panel_tile(), b.panel_data()) {
        panel_operands(tiles, (m, k, n), half, (&a, &b), panels, c, epi);
        return;
    }
    if let Some(Half::Rows(r0)) = half {
        let rows = |i0: usize, count: usize, out: &mut [E]| {
            block_product((count, k, n), a.view().rows_from(i0), b.view(), out, n)
        };
        if rows_in_place(r0, (m, n), c, rows, epi) {
            return;
        }
    }
    if let Some(half) = half {
        let (ha, hb, he) = (a.clone(), b.clone(), epi.cloned());
        let first = |c: &mut [E]| half.first((m, k, n), a.view(), b.view(), c);
        let second = move || {
            let mut out = half.second((m, k, n), ha.view(), hb.view());
            finish(he.as_ref(), Block::second(half, (m, n), &mut out));
            out
        };
        if split_with_helper(half, (m, n), c, first, second, epi) {
            return;
        }
    }
    gemm(m, k, n, a.view(), b.view(), c);
    finish(epi, Block::whole(m, n, c));
}

/// Computes `c` (`m x n`) in two blocks of rows at the same time, rows `..r0` here and the
/// rest on the helper, each written straight into its part of `c` by `rows(i0, count, out)`
/// (rows `i0..i0 + count` of the product into the dense `out`) and finished by `epi` on the
/// thread that computed it. Returns `false`, having computed nothing, when the helper is not
/// polling for work (see [`crate::helper::split_in_place`]); the caller then splits through
/// [`split_with_helper`].
fn rows_in_place<E: Element>(
    r0: usize,
    (m, n): (usize, usize),
    c: &mut [E],
    rows: impl Fn(usize, usize, &mut [E]) + Sync,
    epi: Option<&Epilogue<E>>,
) -> bool {
    let block = |i0: usize, count: usize, out: &mut [E]| {
        rows(i0, count, out);
        finish(
            epi,
            Block {
                i0,
                ..Block::whole(count, n, out)
            },
        );
    };
    let (lo, hi) = c.split_at_mut(r0 * n);
    crate::helper::split_in_place(|| block(0, r0, lo), || block(r0, m - r0, hi)).is_ok()
}

/// Computes `c` (`m x n`) in the two blocks `half` cuts it into: the second on the helper
/// thread (`second` returns it as a dense buffer, its epilogue done), the first here (`first`
/// writes it into `c`, then `epi` runs on it). Returns `false`, having computed nothing, when
/// the helper is busy.
fn split_with_helper<E: Element>(
    half: Half,
    (m, n): (usize, usize),
    c: &mut [E],
    first: impl FnOnce(&mut [E]),
    second: impl FnOnce() -> Vec<E> + Send + 'static,
    epi: Option<&Epilogue<E>>,
) -> bool {
    let Ok(pending) = crate::helper::spawn(second) else {
        return false;
    };
    first(c);
    finish(epi, Block::first(half, (m, n), c));
    let block = pending.wait();
    half.place_shared((m, n), &block, c);
    crate::storage::give(block);
    true
}

/// A product over packed panels with fewer rows than columns is cut by rows all the same from
/// this many rows...
const ROWS_CUT_MIN_ROWS: usize = 16;

/// ...when its panels take at most this many bytes.
const ROWS_CUT_MAX_PANELS: usize = 1 << 20;

/// `c = a @ b` over `b`'s packed panels, cut like [`gemm_operands`] cuts (a column cut moved
/// to a panel boundary), the second block on the helper thread when it is free (in place for
/// a block of rows, as there).
///
/// A column cut becomes a row cut when the product has at least [`ROWS_CUT_MIN_ROWS`] rows
/// and panels of at most [`ROWS_CUT_MAX_PANELS`] (a recurrent weight's, which stay in each
/// core's L2 from one time step to the next): each thread then reads all the panels, but a
/// block of rows is contiguous, so the helper writes it straight into the output, where a
/// block of columns comes back in a buffer of its own and is copied in. Each output is the
/// same `fma` chain over `k` either way, so the bits do not change. B1's forward pass on two
/// threads went 8.70 → 8.21 ms (medians of eight alternating runs, lower in all eight).
fn panel_operands<E: Element>(
    tiles: PanelTiles<E>,
    (m, k, n): (usize, usize, usize),
    half: Option<Half>,
    (a, b): (&Operand<E>, &Operand<E>),
    panels: &[E],
    c: &mut [E],
    epi: Option<&Epilogue<E>>,
) {
    let rows_instead =
        m >= ROWS_CUT_MIN_ROWS && std::mem::size_of_val(panels) <= ROWS_CUT_MAX_PANELS;
    let half = half.and_then(|h| match h {
        Half::Rows(r0) => Some(h).filter(|_| r0 > 0 && r0 < m),
        Half::Cols(_) if rows_instead => Some(Half::Rows(super::gemm::block(m, 2, 1).0)),
        Half::Cols(j0) => Some(j0.div_ceil(panel::NR) * panel::NR)
            .filter(|&j| j < n)
            .map(Half::Cols),
    });
    if let Some(Half::Rows(r0)) = half {
        let rows = |i0: usize, count: usize, out: &mut [E]| {
            let av = a.view().rows_from(i0);
            panel::product(tiles, (count, k, n), 0, av, panels, out, n)
        };
        if rows_in_place(r0, (m, n), c, rows, epi) {
            return;
        }
    }
    if let Some(half) = half {
        let (ha, hb, he) = (a.clone(), b.clone(), epi.cloned());
        let second = move || {
            let mut out = second_panels(half, (m, k, n), tiles, &ha, &hb);
            finish(he.as_ref(), Block::second(half, (m, n), &mut out));
            out
        };
        let first = |c: &mut [E]| match half {
            Half::Rows(r0) => {
                panel::product(tiles, (r0, k, n), 0, a.view(), panels, &mut c[..r0 * n], n)
            }
            Half::Cols(j0) => panel::product(tiles, (m, k, j0), 0, a.view(), panels, c, n),
        };
        if split_with_helper(half, (m, n), c, first, second, epi) {
            return;
        }
    }
    panel::product(tiles, (m, k, n), 0, a.view(), panels, c, n);
    finish(epi, Block::whole(m, n, c));
}

/// The helper's block of [`panel_operands`].
fn second_panels<E: Element>(
    half: Half,
    (m, k, n): (usize, usize, usize),
    tiles: PanelTiles<E>,
    ha: &Operand<E>,
    hb: &Operand<E>,
) -> Vec<E> {
    match hb.panel_data() {
        Some(panels) => {
            let (rows, j0) = match half {
                Half::Rows(r0) => (m - r0, 0),
                Half::Cols(j0) => (m, j0),
            };
            let mut out = crate::storage::overwritable(rows * (n - j0));
            let av = match half {
                Half::Rows(r0) => ha.view().rows_from(r0),
                Half::Cols(_) => ha.view(),
            };
            panel::product(tiles, (rows, k, n), j0, av, panels, &mut out, n - j0);
            out
        }
        // the panels live as long as `hb` holds the storage; this is never taken
        None => half.second((m, k, n), ha.view(), hb.view()),
    }
}

/// Broadcast (stride-0) operands are materialized; other strided views go straight to GEMM.
fn gemm_ready<E: Element>(t: &Tensor<E>) -> Tensor<E> {
    if t.layout().strides().contains(&0) && t.numel() > 1 {
        Tensor::from_parts(t.to_vec(), t.shape())
    } else {
        t.clone()
    }
}

/// `a @ b` without recording: `[m,k]@[k,n]`, `[B,m,k]@[B,k,n]` or `[B,m,k]@[k,n]`.
pub(crate) fn matmul_raw<E: Element>(a: &Tensor<E>, b: &Tensor<E>) -> Result<Tensor<E>> {
    let (c, shape) = matmul_vec(a, b, None)?;
    Ok(constant(c, &shape))
}

/// The elements and shape of `a @ b` (see [`matmul_raw`]).
fn matmul_vec<E: Element>(
    a: &Tensor<E>,
    b: &Tensor<E>,
    epi: Option<&Epilogue<E>>,
) -> Result<(Vec<E>, Vec<usize>)> {
    let err = || {
        Error::shape(
            "matmul",
            format!("lhs {:?} vs rhs {:?}", a.shape(), b.shape()),
        )
    };
    let (a, b) = (gemm_ready(a), gemm_ready(b));
    let (batch, m, k) = match a.rank() {
        2 => (None, a.shape()[0], a.shape()[1]),
        3 => (Some(a.shape()[0]), a.shape()[1], a.shape()[2]),
        _ => return Err(err()),
    };
    let (b_batched, kb, n) = match b.rank() {
        2 => (false, b.shape()[0], b.shape()[1]),
        3 => (true, b.shape()[1], b.shape()[2]),
        _ => return Err(err()),
    };
    if kb != k || (b_batched && (batch.is_none() || b.shape()[0] != batch.unwrap_or(0))) {
        return Err(err());
    }
    let nb = batch.unwrap_or(1);
    let mut c = crate::storage::overwritable(nb * m * n);
    if m * n > 0 {
        for i in 0..nb {
            let ci = &mut c[i * m * n..(i + 1) * m * n];
            let (ai, bi) = (batch.map(|_| i), b_batched.then_some(i));
            product_into((m, k, n), (&a, ai), (&b, bi), ci, epi);
        }
    }
    let shape: Vec<usize> = match batch {
        Some(bs) => vec![bs, m, n],
        None => vec![m, n],
    };
    Ok((c, shape))
}

/// `c = a @ b` for one `m x k x n` product (batch `ai` of `a` and `bi` of `b` when they are
/// 3-D), into the dense row-major `c`, then `epi` on it.
fn product_into<E: Element>(
    (m, k, n): (usize, usize, usize),
    (a, ai): (&Tensor<E>, Option<usize>),
    (b, bi): (&Tensor<E>, Option<usize>),
    c: &mut [E],
    epi: Option<&Epilogue<E>>,
) {
    let half = two_way_split(m, k, n);
    if half.is_none() && !packs(m, k, n) && !panel::row_product(m, k, n) {
        // direct loops: no transposed copy or split applies, so no owned operands
        gemm(m, k, n, gemm_view(a, ai), gemm_view(b, bi), c);
        finish(epi, Block::whole(m, n, c));
        return;
    }
    let av = Operand::of(a, ai);
    let bv = if bi.is_some() {
        Operand::of(b, bi)
    } else {
        Operand::rhs(b, m, a.layout().strides()[a.rank() - 1] == 1)
    };
    gemm_operands((m, k, n), half, av, bv, c, epi);
}

/// `c = a @ b` for 2-D `a: [m, k]` and `b: [k, n]` without recording, into the dense
/// row-major `c` (`m * n` elements), by the same route as [`matmul_raw`] (so with its bits).
pub(crate) fn matmul_into<E: Element>(a: &Tensor<E>, b: &Tensor<E>, c: &mut [E]) -> Result<()> {
    let (a, b) = (gemm_ready(a), gemm_ready(b));
    let ((m, k), (kb, n)) = (a.dims2()?, b.dims2()?);
    if kb != k || c.len() != m * n {
        return Err(Error::shape(
            "matmul",
            format!(
                "lhs {:?} vs rhs {:?} into {} elements",
                a.shape(),
                b.shape(),
                c.len()
            ),
        ));
    }
    if m * n > 0 {
        product_into((m, k, n), (&a, None), (&b, None), c, None);
    }
    Ok(())
}

/// Whether a 2-D layout is column-major (a transposed view): the `w.t()` of
/// `x.matmul(&w.t())`, whose gradient [`at_g_like`] forms as `(gᵀ a)ᵀ`.
pub(crate) fn column_major(like: &crate::layout::Layout) -> bool {
    let s = like.strides();
    s.len() == 2 && s[0] == 1 && s[1] > 1
}

/// `aᵀ g` for 2-D `a: [m, k]`, `g: [m, n]`, laid out like `like` (a `[k, n]` layout).
///
/// When `like` is a transposed view (column-major, as the `w.t()` of `x.matmul(&w.t())` is), the
/// product is formed as `(gᵀ a)ᵀ`: a contiguous `[n, k]` buffer seen through a transpose. The
/// gradient then flows back through the transpose as a plain view instead of a strided copy
/// of the whole weight gradient. The values are the same sums either way. A wide `g` (see
/// [`wide_gradient`](super::wide::wide_gradient)) has that buffer's rows formed by
/// [`at_g_rows`](super::wide::at_g_rows).
pub(crate) fn at_g_like<E: Element>(
    a: &Tensor<E>,
    g: &Tensor<E>,
    like: &crate::layout::Layout,
) -> Result<Tensor<E>> {
    if column_major(like) {
        let (m, k, n) = (a.shape()[0], a.shape()[1], g.shape()[1]);
        if super::wide::wide_gradient::<E>(m, k, n) {
            let mut out = crate::storage::overwritable(n * k);
            super::wide::at_g_rows(&super::wide::Lead::new(a)?, g, (0, n), &mut out)?;
            return constant(out, &[n, k]).t();
        }
        matmul_raw(&g.t()?, a)?.t()
    } else {
        matmul_raw(&a.t()?, g)
    }
}

/// Swaps the last two dims (a view).
fn mt<E: Element>(t: &Tensor<E>) -> Result<Tensor<E>> {
    let r = t.rank();
    t.transpose(r as isize - 2, r as isize - 1)
}

/// Matrix product `C = A B` (2-D, batched 3-D, or 3-D times a shared 2-D rhs).
/// `dA = dC Bᵀ`, `dB = Aᵀ dC` (summed over the batch when `B` is shared).
pub struct Matmul;

impl Matmul {
    /// Applies the op.
    pub fn forward<E: Element>(a: &Tensor<E>, b: &Tensor<E>) -> Result<Tensor<E>> {
        let c = matmul_raw(a, b)?;
        Ok(Tensor::from_op(
            c.storage_arc().clone(),
            c.layout().clone(),
            &[a, b],
            || Matmul,
        ))
    }
}

impl<E: Element> Op<E> for Matmul {
    fn name(&self) -> &'static str {
        "matmul"
    }
    /// 2-D products defer `dL/db = aᵀ g`: a weight multiplied at every time step then gets one
    /// GEMM over all steps (inner size steps x batch) instead of one per step (inner size batch).
    fn deferred_input(&self, inputs: &[Tensor<E>]) -> Option<usize> {
        (inputs[0].rank() == 2 && inputs[1].rank() == 2).then_some(1)
    }
    fn backward_deferring(
        &self,
        x: &[Tensor<E>],
        g: &Tensor<E>,
    ) -> Result<(InputGrads<E>, Tensor<E>, Tensor<E>)> {
        let ga = if x[0].tracks_grad() {
            Some(matmul_raw(g, &mt(&x[1])?)?)
        } else {
            None
        };
        Ok((grads2(ga, None), x[0].detach(), g.clone()))
    }
    fn backward(&self, x: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let (a, b) = (&x[0], &x[1]);
        let ga = if a.tracks_grad() {
            Some(matmul_raw(g, &mt(b)?)?)
        } else {
            None
        };
        let gb = if !b.tracks_grad() {
            None
        } else if a.rank() == 3 && b.rank() == 2 {
            // shared rhs: fold the batch into the rows
            let (bs, m, k) = a.dims3()?;
            let a2 = a.reshape(&[bs * m, k])?;
            let g2 = g.reshape(&[bs * m, g.shape()[2]])?;
            Some(at_g_like(&a2, &g2, b.layout())?)
        } else if a.rank() == 2 {
            Some(at_g_like(a, g, b.layout())?)
        } else {
            Some(matmul_raw(&mt(a)?, g)?)
        };
        Ok(grads2(ga, gb))
    }
}

/// `Y = C + A B` (PyTorch's `addmm`) for 2-D `A: [m,k]`, `B: [k,n]` and `C: [m,n]`, which may
/// be any view of that shape: a slice of a wider tensor, or a bias row broadcast over the rows
/// (`b.broadcast_to(&[m, n])`, whose backward sums the rows). One node and one pass instead of
/// a product followed by an add; the values are the same (the product is rounded, then `C`
/// added).
/// `dC = G`, `dA = G Bᵀ`, `dB = Aᵀ G` (deferred like [`Matmul`]'s, so a weight used at every
/// time step gets one stacked product).
///
/// `C` may also be a 1-D row of `n` values added to every row of the product (a bias, as
/// PyTorch's `addmm` broadcasts it); its gradient is then the column sums of `G`, `Σ_i G_ij`,
/// summed over the rows in order (the bits of `c.broadcast_to(..)`'s gradient). They are
/// formed first in the backward pass, while `G` is fresh from the op that wrote it and the
/// helper thread is free to sum half of the columns.
pub struct Addmm;

impl Addmm {
    /// Applies the op.
    pub fn forward<E: Element>(c: &Tensor<E>, a: &Tensor<E>, b: &Tensor<E>) -> Result<Tensor<E>> {
        let (y, shape) = addmm_values("addmm", c, a, b, &[], None)?;
        let (d, l) = super::out(y, &shape);
        Ok(Tensor::from_op(d, l, &[c, a, b], || Addmm))
    }
}

/// The elements and shape of `c + a @ b` (2-D factors, `c` of the product's shape), with
/// errors naming `op`, then `acts` by column block (none for a plain `addmm`): `c` is added
/// and the activations applied on each block of the product by the thread that computed it
/// ([`add_then_activate`](super::addmm_act::add_then_activate)). With `rows`, product row `i`
/// gets row `rows[i]` of `c` (a `[R, n]` table) added instead of row `i`. A plain `addmm` (no
/// activations, no `rows`) also takes a 1-D `c` of `n` elements, a bias row added to every
/// row of the product.
pub(super) fn addmm_values<E: Element>(
    op: &'static str,
    c: &Tensor<E>,
    a: &Tensor<E>,
    b: &Tensor<E>,
    acts: &[super::addmm_act::Activation],
    rows: Option<&Arc<[usize]>>,
) -> Result<(Vec<E>, Vec<usize>)> {
    if a.rank() != 2 || b.rank() != 2 {
        return Err(Error::shape(
            op,
            format!("needs 2-D factors, got {:?} and {:?}", a.shape(), b.shape()),
        ));
    }
    let (m, n) = (a.shape()[0], b.shape()[1]);
    if a.shape()[1] == b.shape()[0] {
        let fits = match (rows, c.shape()) {
            (None, &[cols]) => acts.is_empty() && cols == n,
            (None, shape) => shape == [m, n],
            (Some(ids), &[r, cols]) => cols == n && ids.len() == m && ids.iter().all(|&i| i < r),
            (Some(_), _) => false,
        };
        if !fits {
            let what = match rows {
                None => format!("added term {:?}", c.shape()),
                Some(ids) => format!(
                    "rows {} (largest {:?}) of added table {:?}",
                    ids.len(),
                    ids.iter().max(),
                    c.shape()
                ),
            };
            return Err(Error::shape(
                op,
                format!(
                    "{what} vs product {:?} ({:?} @ {:?})",
                    [m, n],
                    a.shape(),
                    b.shape()
                ),
            ));
        }
    }
    // a bias row is read as a broadcast view (row stride 0), which is not recorded
    let c = match c.rank() {
        1 => c.detach().broadcast_to(&[m, n])?,
        _ => c.clone(),
    };
    let epi = super::addmm_act::add_then_activate(&c, acts, rows.cloned());
    matmul_vec(a, b, Some(&epi))
}

impl<E: Element> Op<E> for Addmm {
    fn name(&self) -> &'static str {
        "addmm"
    }
    fn deferred_input(&self, _: &[Tensor<E>]) -> Option<usize> {
        Some(2)
    }
    fn backward_deferring(
        &self,
        x: &[Tensor<E>],
        g: &Tensor<E>,
    ) -> Result<(InputGrads<E>, Tensor<E>, Tensor<E>)> {
        let gc = x[0].tracks_grad().then(|| match x[0].rank() {
            1 => constant(column_sums(g), x[0].shape()),
            _ => g.clone(),
        });
        let ga = if x[1].tracks_grad() {
            Some(matmul_raw(g, &mt(&x[2])?)?)
        } else {
            None
        };
        Ok((smallvec::smallvec![gc, ga, None], x[1].detach(), g.clone()))
    }
    fn backward(&self, x: &[Tensor<E>], g: &Tensor<E>) -> Result<InputGrads<E>> {
        let (mut grads, a, ga) = self.backward_deferring(x, g)?;
        grads[2] = x[2]
            .tracks_grad()
            .then(|| at_g_like(&a, &ga, x[2].layout()))
            .transpose()?;
        Ok(grads)
    }
}

impl<E: Element> Tensor<E> {
    /// `self + a @ b` in one op (PyTorch's `addmm`), see [`Addmm`]. `self` has the product's
    /// shape `[m, n]`, or is a bias row `[n]` added to every row.
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// let a = Tensor::<f32>::from_vec(vec![1., 2., 3., 4.], &[2, 2])?;
    /// let i = Tensor::<f32>::from_vec(vec![1., 0., 0., 1.], &[2, 2])?;
    /// let bias = Tensor::<f32>::from_vec(vec![10., 20.], &[2])?;
    /// assert_eq!(bias.addmm(&a, &i)?.to_vec(), vec![11., 22., 13., 24.]);
    /// let full = bias.broadcast_to(&[2, 2])?; // the same values as a [2, 2] term
    /// assert_eq!(full.addmm(&a, &i)?.to_vec(), vec![11., 22., 13., 24.]);
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn addmm(&self, a: &Tensor<E>, b: &Tensor<E>) -> Result<Tensor<E>> {
        Addmm::forward(self, a, b)
    }

    /// Matrix product, see [`Matmul`].
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// let a = Tensor::<f32>::from_vec(vec![1., 2., 3., 4.], &[2, 2])?;
    /// let i = Tensor::<f32>::from_vec(vec![1., 0., 0., 1.], &[2, 2])?;
    /// assert_eq!(a.matmul(&i)?.to_vec(), a.to_vec());
    /// assert_eq!(a.matmul(&a.t()?)?.to_vec(), vec![5., 11., 11., 25.]);
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn matmul(&self, other: &Tensor<E>) -> Result<Tensor<E>> {
        Matmul::forward(self, other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::addmm_act::{add_then_activate, Activation};

    /// A product cut by rows whose second block the helper writes in place, each block added
    /// and activated where it was computed, has the bits of the whole product followed by the
    /// same epilogue: the helper's rows read their added term from row `r0` on. (The right
    /// operand is read transposed, so every block goes through `matrixmultiply`; the cut is on
    /// a multiple of its tile's rows, where its sums do not depend on the cut.)
    #[test]
    fn rows_written_in_place_by_the_helper_have_the_bits_of_the_whole_product() {
        let _alone = crate::helper::TEST_LOCK
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (m, k, n, r0) = (32, 48, 72, 16);
        let val = |i: usize, s: usize| ((i * s) % 17) as f32 / 17.0 - 0.5;
        let a: Vec<f32> = (0..m * k).map(|i| val(i, 7)).collect();
        // b (k x n) stored transposed, as `w.t()` reads a weight
        let bt: Vec<f32> = (0..k * n).map(|i| val(i, 5)).collect();
        let term = Tensor::from_vec((0..m * n).map(|i| val(i, 3)).collect(), &[m, n]).unwrap();
        let epi = add_then_activate(&term, &[Activation::Tanh, Activation::Sigmoid], None);
        let (av, bv) = (
            MatRef {
                data: &a[..],
                rs: k,
                cs: 1,
            },
            MatRef {
                data: &bt[..],
                rs: 1,
                cs: k,
            },
        );
        let mut want = vec![f32::NAN; m * n];
        block_product((m, k, n), av, bv, &mut want, n);
        finish(Some(&epi), Block::whole(m, n, &mut want));

        let mut got = vec![f32::NAN; m * n];
        let rows = |i0: usize, count: usize, out: &mut [f32]| {
            block_product((count, k, n), av.rows_from(i0), bv, out, n)
        };
        crate::helper::until_taken(|| rows_in_place(r0, (m, n), &mut got, rows, Some(&epi)));
        let differ = got
            .iter()
            .zip(&want)
            .filter(|(g, w)| g.to_bits() != w.to_bits())
            .count();
        assert_eq!(differ, 0, "{differ} of {} outputs differ", m * n);
    }
}
