//! Right-hand operands packed once, for the products that read them again and again.
//!
//! A recurrent weight is the right-hand side of two products at every time step: `h @ w.t()`
//! forward and `g @ w` backward. `matrixmultiply` packs its operands on every call: in a
//! one-thread B1 profile, packing was 21% of the step and the kernel 58%. So a storage read
//! whole as a right-hand side keeps a copy of itself packed in panels of [`NR`] columns (each
//! panel `k x NR`, row-major, the last one padded with zeros), one per orientation ([`Read`]),
//! and products read that. The copy is made on the second such read; see [`plan`] for the
//! products left to the GEMM libraries. It is dropped when the storage is
//! mutated (an optimizer step) or freed, like the transposed copy of [`crate::twin`].
//!
//! [`product`] runs a tile kernel over every (panel, block of rows) pair, reading the rows of
//! the left operand in place: with AVX-512, blocks of six rows and of [`MR`] (four) where six
//! do not fit; with AVX2, blocks of four whose panel depth is walked in chunks that every block
//! takes in turn (see [`Tiles`]); a one-row product (a batch-1
//! step) runs a row kernel over two panels at a time. The kernels exist for `f32` on x86-64
//! CPUs with AVX-512 (`avx512.rs`), or with AVX2 and FMA (`avx2.rs`); [`kernels`] detects
//! them at run time. Elsewhere, and for `f64`, products go to `matrixmultiply` as before.
//! Every output is `fma(a[i][p], b[p][j], acc)` over `p = 0, 1, ..., k - 1` in order, starting from zero: the same bits as the test-only
//! references `scalar_tile` and `scalar_row`, which the tests hold the kernels to, and as
//! `matrixmultiply`'s for `k <= 256`.
//!
//! On the project's AVX-512 machine (Zen 5, one thread, the weight packed beforehand), a
//! 32x256x1024 product took about 70 µs this way against 131–160 µs through
//! `matrixmultiply`, a 32x1024x256 one 68 against 110 µs, and a 16x128x384 one 6.7 against
//! 11–20 µs. On the AVX2 machine (Zen 3) of the sixth session, 32x256x1024 took 260–300 µs
//! against 300–380, and 32x1024x256 230–255 against 255–295, before the chunked walk of
//! [`Tiles::Chunked`] took about a fifth off both (see [`product`]). On the Intel AVX-512
//! machine of the fourteenth session (scratch, one thread, 64-byte-aligned panels) the four-row
//! tile ran 32x256x1024 and 32x1024x256 at 142–146 GFLOP/s, the six-row one at 167–171, against
//! 107–114 through `matrixmultiply` (its AVX-512 kernel) and a measured FMA peak of ~210.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

pub(crate) use crate::element::PanelTiles as Tiles;
use crate::element::{Element, RowFn};
use crate::ops::gemm::MatRef;
use crate::twin::transpose_into;

/// Columns per panel: four AVX-512 vectors of `f32`.
pub(crate) const NR: usize = 64;

/// Rows per tile: with [`NR`], sixteen AVX-512 accumulator registers (the AVX2 kernel takes
/// the tile in three column blocks).
pub(crate) const MR: usize = 4;

/// The largest inner size packed: a panel of `k x NR` then stays within 512 KiB, in L2.
pub(crate) const MAX_K: usize = 2048;

/// The largest left operand (elements) streamed once per panel: 1 MiB of `f32`, one core's L2.
const MAX_A: usize = 256 * 1024;

/// From this many rows a product is left to the GEMM libraries, which pack both operands in
/// their own blocks: `gemm` (with AVX-512 kernels since 0.19's `x86-v4`) beat the panels on
/// every such shape of B1, B2 and B4 measured on the Intel AVX-512 machine of the fourteenth
/// session (one thread, the weight packed beforehand, min of 200 products: B2's
/// 400x200x10000 decoder 10.7 ms against 12.6, B1's 2048x1024x64 input gradient 1.63 against
/// 1.89, B4's 2048x256x384 projection 2.34 against 3.00), and with the AVX2 kernels
/// `matrixmultiply` did on Zen 3 (2048x64x1024: 3.9 against 7.0 ms). At 128 rows they were
/// even (128x256x1024: 0.48 ms both ways).
pub(crate) const BIG_M: usize = 128;

/// From this many multiply-adds a one-row product may read a whole right-hand side through
/// panels (from its second read); below, the direct loops of `gemm.rs` run.
const ROW_MIN_FMAS: usize = 4096;

/// Whether a one-row product is large enough for the panel path (when the rhs has panels).
pub(crate) fn row_product(m: usize, k: usize, n: usize) -> bool {
    m == 1 && k * n >= ROW_MIN_FMAS
}

/// Whether an `m x k x n` product reads a whole right-hand side through panels (from its
/// second read on). Not from [`BIG_M`] rows, nor when `k` is beyond [`MAX_K`], nor when a left
/// operand beyond [`MAX_A`] would be streamed from beyond L2 once per panel for more than
/// four panels or copied to row-major first (`a_rows`: its rows are contiguous). A weight
/// gradient `gᵀ x` has such a transposed left operand: through panels, B1's 1024x2048x256 one
/// ran at a third of `matrixmultiply`'s speed.
///
/// Below [`BIG_M`] rows the panels are kept: on the Zen 3 AVX2 machine (one thread), a
/// 32x256x1024 product took 260–300 µs through panels against 300–380 through
/// `matrixmultiply`, and a 32x1024x256 one 230–255 against 255–295. On the Intel AVX-512
/// machine (one thread, the four-row tile) 32x256x1024 took 119 µs against 157 through
/// `matrixmultiply` and 214 through `gemm` (`w.t()`); 32x1024x256 115 against 147 and 92–100
/// (row-major `w`): there `gemm` was faster, but sending those products to it made B1 faster
/// on one thread (33.1 → 31.2 ms a step) and slower on two (19.9 → 21.4), so they stay here.
pub(crate) fn plan(m: usize, k: usize, n: usize, a_rows: bool) -> bool {
    let a_fits = m * k <= MAX_A || (a_rows && n <= 4 * NR);
    m < BIG_M && k <= MAX_K && a_fits
}

/// How a product reads a storage as its right-hand side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// As stored: a row-major `[k, n]` matrix.
    AsStored,
    /// Transposed: the storage is a row-major `[n, k]` matrix read as its transpose (`w.t()`).
    Transposed,
}

/// The packed copies of one storage (one per [`Read`]), and how often each was asked for.
#[derive(Debug, Default)]
pub(crate) struct PanelCache<E> {
    slots: [Slot<E>; 2],
}

#[derive(Debug, Default)]
struct Slot<E> {
    packed: OnceLock<Packed<E>>,
    reads: AtomicU32,
}

#[derive(Debug)]
struct Packed<E> {
    k: usize,
    n: usize,
    data: LineAligned<E>,
}

/// `len` elements starting on a 64-byte boundary, inside a (recycled) buffer a line longer.
///
/// The AVX-512 kernels load a panel row 64 bytes at a time; from a buffer where the allocator
/// happened to put it (16-byte aligned), every such load straddles two cache lines. On the
/// Intel AVX-512 machine of the fourteenth session (one thread, a scratch copy of the tile
/// kernel), aligned panels took a 32x256x1024 product from 148 to 119 µs and 32x1024x256 from
/// 144 to 115 µs.
#[derive(Debug)]
pub(crate) struct LineAligned<E> {
    buf: Vec<E>,
    start: usize,
    len: usize,
}

impl<E: Element> LineAligned<E> {
    /// Elements in a 64-byte line (the most a start may be moved by, plus one).
    const LINE: usize = 64 / std::mem::size_of::<E>();

    fn place(buf: Vec<E>, len: usize) -> Self {
        // `align_offset` may give up (usize::MAX): the elements then start where they are
        let start = buf.as_ptr().align_offset(64);
        let start = if start < Self::LINE { start } else { 0 };
        LineAligned { buf, start, len }
    }

    /// `len` elements of unspecified values, for a caller that writes every one.
    pub(crate) fn overwritable(len: usize) -> Self {
        Self::place(crate::storage::overwritable(len + Self::LINE), len)
    }

    /// The whole buffer, to hand back to the storage cache.
    pub(crate) fn into_vec(self) -> Vec<E> {
        self.buf
    }
}

impl<E> std::ops::Deref for LineAligned<E> {
    type Target = [E];
    fn deref(&self) -> &[E] {
        &self.buf[self.start..self.start + self.len]
    }
}

impl<E> std::ops::DerefMut for LineAligned<E> {
    fn deref_mut(&mut self) -> &mut [E] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

impl<E: Element> PanelCache<E> {
    /// The panels of `src` read as a `k x n` right-hand side the way `read` says, from the
    /// second request on; `None` before, or when panels of other dimensions were made first.
    /// `src` must hold exactly `k * n` elements.
    pub(crate) fn panels(&self, src: &[E], read: Read, (k, n): (usize, usize)) -> Option<&[E]> {
        debug_assert_eq!(src.len(), k * n);
        let slot = &self.slots[read as usize];
        if slot.packed.get().is_none() && slot.reads.fetch_add(1, Ordering::Relaxed) == 0 {
            return None;
        }
        let p = slot.packed.get_or_init(|| {
            let b = match read {
                Read::AsStored => MatRef {
                    data: src,
                    rs: n,
                    cs: 1,
                },
                Read::Transposed => MatRef {
                    data: src,
                    rs: 1,
                    cs: k,
                },
            };
            Packed {
                k,
                n,
                data: pack(k, n, b),
            }
        });
        (p.k == k && p.n == n).then_some(&p.data[..])
    }

    /// Forgets the copies (the storage is about to change), handing their buffers to `give`.
    /// A read that had panels counts as read once already: such a storage is a weight that an
    /// optimizer updates in place and the next step reads the same way, so its first request
    /// after the update packs the new values instead of going without panels. On this
    /// project's AVX-512 machine that first product had taken 100-300 µs against the 43 of a
    /// product through panels (B2's recurrent steps), on top of the pack at the second.
    pub(crate) fn clear(&mut self, mut give: impl FnMut(Vec<E>)) {
        for slot in &mut self.slots {
            let packed = slot.packed.take();
            *slot.reads.get_mut() = u32::from(packed.is_some());
            if let Some(p) = packed {
                give(p.data.into_vec());
            }
        }
    }
}

/// The panels of a `k x n` matrix `b`: panel `q` holds columns `q * NR ..` as a row-major
/// `k x NR` block, columns past `n` zero.
pub(crate) fn pack<E: Element>(k: usize, n: usize, b: MatRef<E>) -> LineAligned<E> {
    let panels = n.div_ceil(NR);
    // every element is written below: the columns of b, then zeros past them (the last
    // panel); zeroing the whole buffer first took as long as packing (a cold 650 KB)
    let mut out = LineAligned::overwritable(panels * k * NR);
    for (q, panel) in out.chunks_exact_mut(k * NR).enumerate() {
        let cols = NR.min(n - q * NR);
        if cols < NR {
            for dst in panel.chunks_exact_mut(NR) {
                dst[cols..].fill(E::zero());
            }
        }
        let col = |jj: usize| q * NR + jj;
        if b.cs == 1 {
            // rows of b are contiguous: one copy per panel row
            for (p, dst) in panel.chunks_exact_mut(NR).enumerate() {
                let src = p * b.rs + col(0);
                dst[..cols].copy_from_slice(&b.data[src..src + cols]);
            }
        } else if b.rs == 1 && b.cs == k {
            // `w.t()` of a row-major `w`: the panel is the transpose of `cols` whole rows of `w`
            let s = col(0) * k;
            transpose_into(&b.data[s..s + cols * k], cols, k, panel, NR);
        } else {
            for (p, dst) in panel.chunks_exact_mut(NR).enumerate() {
                for (jj, d) in dst[..cols].iter_mut().enumerate() {
                    *d = b.data[p * b.rs + col(jj) * b.cs];
                }
            }
        }
    }
    out
}

/// Packs rows `row0..row0 + r` of a `k x n` right-hand side into `panels`, laid out as
/// [`pack`] lays out the whole matrix; `src` holds those `r` rows, row-major with row stride
/// `ld` (each row's `n` values first, the last row's `ld - n` after them left out, so `src`
/// may start at a column of a wider matrix and end at its row's end). `n` must be a multiple
/// of [`NR`] (no panel is padded), so that the rows of several sources can be packed one
/// source after the other (the stacked gradient factors of `deferred.rs`).
pub(crate) fn pack_rows<E: Element>(
    src: &[E],
    ld: usize,
    (k, n): (usize, usize),
    row0: usize,
    panels: &mut [E],
) {
    debug_assert!(n.is_multiple_of(NR) && ld >= n && panels.len() == k * n);
    for (p, row) in src.chunks(ld).enumerate() {
        for (q, cols) in row[..n].chunks_exact(NR).enumerate() {
            let dst = (q * k + row0 + p) * NR;
            panels[dst..dst + NR].copy_from_slice(cols);
        }
    }
}

/// `c = a @ b` for `a: m x k` and `b` given as the panels of a `k x n` matrix (see [`pack`]),
/// writing the `m x n` result into `c` with row stride `ldc`. Only columns `j0..n` are
/// computed when `j0 > 0` (a multiple of [`NR`]); they land in `c` from its column 0.
///
/// The tile kernel reads [`MR`] rows of `a` in place when they are contiguous (a row-major
/// `a`, the usual case); other layouts are copied to row-major first. `tiles` says how it
/// walks a panel: each block of rows whole, or the depth in chunks of [`KC`] (see [`Tiles`];
/// on the AVX2 machine the chunks took a 32x256x1024 product from 237–244 to 194–205 µs and
/// 32x1024x256 from 246–255 to 196–207, one thread, in a scratch program over the kernel).
/// In the chunked walk a whole `MR x NR` tile keeps its sums in `c` itself (the kernel takes
/// an output row stride), so only ragged tiles go through a buffer and a copy; that took the
/// copy out of B1's LSTM steps (min of 40 steps, one thread: forward 17.5–17.8 → 16.6–16.9 ms,
/// backward 34.1–35.2 → 33.2–34.0 ms).
pub(crate) fn product<E: Element>(
    tiles: Tiles<E>,
    (m, k, n): (usize, usize, usize),
    j0: usize,
    a: MatRef<E>,
    panels: &[E],
    c: &mut [E],
    ldc: usize,
) {
    product_folded(tiles, (m, k, n), j0, a, panels, c, ldc, Fold::Write);
}

/// How [`product_folded`] puts a finished tile into the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fold {
    /// Over what was there: [`product`].
    Write,
    /// Added to what was there (`c += a @ b`): every output is `c + s` for `s` the sum
    /// [`product`] would have written, the bits of `product` into a buffer followed by an
    /// addition of that buffer into `c` (a deferred weight gradient's running sum, see
    /// `deferred.rs`), without the buffer. A one-row product then takes the tile walk, not
    /// the row kernel.
    Add,
}

/// [`product`], with `fold` saying how a finished tile goes into `c`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn product_folded<E: Element>(
    tiles: Tiles<E>,
    (m, k, n): (usize, usize, usize),
    j0: usize,
    a: MatRef<E>,
    panels: &[E],
    c: &mut [E],
    ldc: usize,
    fold: Fold,
) {
    debug_assert_eq!(j0 % NR, 0);
    debug_assert!(panels.len() >= n.div_ceil(NR) * k * NR);
    if let (1, Some(row), Fold::Write) = (m, E::panel_row(), fold) {
        product_row(row, (k, n), j0, a, panels, &mut c[..n - j0]);
        return;
    }
    let copy = (a.cs != 1).then(|| {
        let mut rows = crate::storage::overwritable(m * k);
        for (i, row) in rows.chunks_exact_mut(k).enumerate() {
            for (p, v) in row.iter_mut().enumerate() {
                *v = a.data[i * a.rs + p * a.cs];
            }
        }
        rows
    });
    let (data, rs) = match &copy {
        Some(rows) => (&rows[..], k),
        None => (a.data, a.rs),
    };
    // rows past m read zeros (and are not written back); the six-row cover of a whole walk
    // pads only where m % MR != 0 too (an odd m, or m = 2)
    let (sixes, fours) = six_row_tiles(m);
    debug_assert!(6 * sixes + MR * fours == m || m % MR != 0);
    let zero = if m % MR == 0 {
        Vec::new()
    } else {
        crate::storage::zeros(k)
    };
    let row = |i: usize| {
        if i < m {
            &data[i * rs..i * rs + k]
        } else {
            &zero[..]
        }
    };
    // one tile at a time for whole blocks; a chunked walk sums whole tiles in `c` and needs
    // a tile per block of rows (in a recycled buffer) only when some tiles are ragged, or
    // when the tiles are added into `c`
    let mut out = [E::zero(); MR * NR];
    let blocks = m.div_ceil(MR);
    let ragged = m % MR != 0 || n % NR != 0;
    let mut outs = match tiles {
        Tiles::Chunked(_) if ragged || fold == Fold::Add => crate::storage::zeros(blocks * MR * NR),
        _ => Vec::new(),
    };
    let place = |c: &mut [E], i0: usize, c0: usize, cols: usize, out: &[E]| {
        for i in 0..(out.len() / NR).min(m - i0) {
            let dst = &mut c[(i0 + i) * ldc + c0..(i0 + i) * ldc + c0 + cols];
            let src = &out[i * NR..i * NR + cols];
            match fold {
                Fold::Write => dst.copy_from_slice(src),
                Fold::Add => dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s),
            }
        }
    };
    let mut out6 = [E::zero(); 6 * NR];
    for q in j0 / NR..n.div_ceil(NR) {
        let panel = &panels[q * k * NR..(q + 1) * k * NR];
        let (c0, cols) = (q * NR - j0, NR.min(n - q * NR));
        match tiles {
            Tiles::Whole { four, six } => {
                for t in 0..sixes {
                    let i0 = 6 * t;
                    six(k, std::array::from_fn(|i| row(i0 + i)), panel, &mut out6);
                    place(c, i0, c0, cols, &out6);
                }
                for t in 0..fours {
                    let i0 = 6 * sixes + MR * t;
                    four(k, std::array::from_fn(|i| row(i0 + i)), panel, &mut out);
                    place(c, i0, c0, cols, &out);
                }
            }
            Tiles::Chunked(acc) => {
                // a whole tile (MR rows, NR columns) keeps its sums in `c` itself; a ragged
                // one in its own tile of `outs`, copied out at the end
                let whole = |t: usize| (t + 1) * MR <= m && cols == NR && fold == Fold::Write;
                for p0 in (0..k).step_by(KC) {
                    let p1 = (p0 + KC).min(k);
                    for t in 0..blocks {
                        let rows = std::array::from_fn(|i| &row(t * MR + i)[p0..p1]);
                        let (dst, ld) = if whole(t) {
                            (&mut c[t * MR * ldc + c0..], ldc)
                        } else {
                            (&mut outs[t * MR * NR..(t + 1) * MR * NR], NR)
                        };
                        acc(p1 - p0, rows, &panel[p0 * NR..p1 * NR], dst, ld, p0 > 0);
                    }
                }
                for t in (0..blocks).filter(|&t| !whole(t)) {
                    place(c, t * MR, c0, cols, &outs[t * MR * NR..(t + 1) * MR * NR]);
                }
            }
        }
    }
    if let Some(rows) = copy {
        crate::storage::give(rows);
    }
    crate::storage::give(zero);
    crate::storage::give(outs);
}

/// How [`Tiles::Whole`] covers `m` rows: `(sixes, fours)`, the six-row tiles first, then the
/// four-row ones, so that at most one tile reads rows past `m` (as zeros), and none when `m`
/// is even and above two (32 rows: four sixes and two fours).
fn six_row_tiles(m: usize) -> (usize, usize) {
    let (sixes, rest) = (m / 6, m % 6);
    match rest {
        0 => (sixes, 0),
        2 if sixes > 0 => (sixes - 1, 2),
        5 => (sixes + 1, 0),
        _ => (sixes, rest.div_ceil(MR)),
    }
}

/// The depth of one chunk in [`Tiles::Chunked`].
const KC: usize = 64;

/// [`product`] for one row: `c = a @ b[:, j0..n]` two panels at a time.
fn product_row<E: Element>(
    row: RowFn<E>,
    (k, n): (usize, usize),
    j0: usize,
    a: MatRef<E>,
    panels: &[E],
    c: &mut [E],
) {
    let copy = (a.cs != 1).then(|| (0..k).map(|p| a.data[p * a.cs]).collect::<Vec<E>>());
    let a = copy.as_deref().unwrap_or(&a.data[..k]);
    let panel = |q: usize| &panels[q * k * NR..(q + 1) * k * NR];
    let mut out = [E::zero(); 2 * NR];
    let last = n.div_ceil(NR);
    for q in (j0 / NR..last).step_by(2) {
        // an odd last panel is paired with itself, its second half discarded
        row(k, a, [panel(q), panel((q + 1).min(last - 1))], &mut out);
        let (c0, cols) = (q * NR - j0, (2 * NR).min(n - q * NR));
        c[c0..c0 + cols].copy_from_slice(&out[..cols]);
    }
}

/// The reference for a row kernel: `out[h * NR + j] = Σ_p a[p] b[h][p][j]`, one `mul_add` per
/// term in `p` order, for two panels `b[0]`, `b[1]`.
#[cfg(test)]
pub(crate) fn scalar_row<E: Element>(k: usize, a: &[E], b: [&[E]; 2], out: &mut [E; 2 * NR]) {
    out.fill(E::zero());
    for (half, panel) in out.chunks_exact_mut(NR).zip(b) {
        for (&av, bp) in a[..k].iter().zip(panel.chunks_exact(NR)) {
            for (o, &bv) in half.iter_mut().zip(bp) {
                *o = av.mul_add(bv, *o);
            }
        }
    }
}

#[cfg(test)]
/// The reference tile: `out[i][j] = Σ_p a[i][p] b[p][j]` as one `mul_add` per term, in `p`
/// order, for `MR` rows of `a` and `b` one panel `[p][NR]`.
pub(crate) fn scalar_tile<E: Element>(k: usize, a: [&[E]; MR], b: &[E], out: &mut [E; MR * NR]) {
    scalar_rows(k, &a, b, out);
}

#[cfg(test)]
/// [`scalar_tile`] for six rows.
pub(crate) fn scalar_tile6<E: Element>(k: usize, a: [&[E]; 6], b: &[E], out: &mut [E; 6 * NR]) {
    scalar_rows(k, &a, b, out);
}

#[cfg(test)]
fn scalar_rows<E: Element>(k: usize, a: &[&[E]], b: &[E], out: &mut [E]) {
    out.fill(E::zero());
    for (p, bp) in b[..k * NR].chunks_exact(NR).enumerate() {
        for (i, row) in a.iter().enumerate() {
            for (o, &bv) in out[i * NR..(i + 1) * NR].iter_mut().zip(bp) {
                *o = row[p].mul_add(bv, *o);
            }
        }
    }
}

/// The `f32` tile kernel for this CPU and its walk, if it has one: AVX-512 where the CPU
/// reports AVX-512F, else AVX2 with FMA where it reports both (checked once).
pub(crate) fn f32_tile() -> Option<Tiles<f32>> {
    kernels().map(|k| k.tiles)
}

/// The `f32` one-row kernel for this CPU, from the same instruction set as [`f32_tile`].
pub(crate) fn f32_row() -> Option<RowFn<f32>> {
    kernels().map(|k| k.row)
}

/// The `f32` kernels of a wide weight gradient without transposes: AVX-512 only (elsewhere
/// such gradients keep the `gemm` blocks of `ops::wide::at_g_rows`).
pub(crate) fn f32_wide() -> Option<crate::element::WideKernels<f32>> {
    #[cfg(target_arch = "x86_64")]
    {
        static WIDE: OnceLock<Option<crate::element::WideKernels<f32>>> = OnceLock::new();
        *WIDE.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx512f").then_some(crate::element::WideKernels {
                six: avx512::tile6_cm_entry,
                cols8: avx512::cols8_entry,
            })
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// The `f32` panel kernels of one instruction set.
#[derive(Clone, Copy)]
pub(crate) struct Kernels {
    /// The tile kernel and its walk: whole tiles for AVX-512, chunks for AVX2.
    pub(crate) tiles: Tiles<f32>,
    pub(crate) row: RowFn<f32>,
}

/// The kernels of the widest instruction set this CPU reports, if any (checked once).
pub(crate) fn kernels() -> Option<Kernels> {
    #[cfg(target_arch = "x86_64")]
    {
        static KERNELS: OnceLock<Option<Kernels>> = OnceLock::new();
        *KERNELS.get_or_init(|| {
            if std::arch::is_x86_feature_detected!("avx512f") {
                Some(Kernels {
                    tiles: Tiles::Whole {
                        four: avx512::tile_entry,
                        six: avx512::tile6_entry,
                    },
                    row: avx512::row_entry,
                })
            } else {
                avx2_kernels()
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// The AVX2 kernels, if this CPU reports AVX2 and FMA (used where AVX-512 is missing; the
/// tests run them on any CPU that has them).
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx2_kernels() -> Option<Kernels> {
    (std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"))
        .then_some(Kernels {
            tiles: Tiles::Chunked(avx2::tile_entry),
            row: avx2::row_entry,
        })
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

#[cfg(test)]
mod tests;
