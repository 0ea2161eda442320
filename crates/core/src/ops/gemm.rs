//! The GEMM dispatcher: a packing GEMM library for real work (`Element::gemm`: for `f32`, the
//! `gemm` crate when the left operand's rows are contiguous, else `matrixmultiply`; see
//! `element::prefers_gemm_crate`), direct loops for tiny products (batch-1 recurrent steps,
//! outer products) where packing costs more than the arithmetic.

use crate::element::Element;

/// Up to this many multiply-adds, direct loops beat `matrixmultiply`'s packing.
const SMALL_GEMM_FMAS: usize = 32 * 1024;

/// From this many multiply-adds a product is split over the rayon pool. Measured on this
/// project's 2-core machine: B4's 16x128x384 recurrent steps (0.8M) are faster on one thread,
/// B2's 20x200x800 (3.2M) and B1's 32x256x1024 (8.4M) gain from two.
const THREADED_MIN_FMAS: usize = 2 << 20;

/// A strided read-only matrix operand: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a, E> {
    pub data: &'a [E],
    pub rs: usize,
    pub cs: usize,
}

impl<E> MatRef<'_, E> {
    /// The operand from row `i` on.
    pub(crate) fn rows_from(self, i: usize) -> Self {
        MatRef {
            data: &self.data[(i * self.rs).min(self.data.len())..],
            ..self
        }
    }

    /// The operand from column `j` on.
    fn cols_from(self, j: usize) -> Self {
        MatRef {
            data: &self.data[(j * self.cs).min(self.data.len())..],
            ..self
        }
    }
}

/// Whether [`gemm`] hands an `m x k x n` product to a GEMM library (which packs its operands)
/// rather than to the direct loops.
pub(crate) fn packs(m: usize, k: usize, n: usize) -> bool {
    m * k * n > SMALL_GEMM_FMAS && m > 1
}

/// `c = a @ b` for `a: m x k`, `b: k x n` and a dense row-major `c: m x n` (overwritten).
///
/// Large products are split into one block per thread (the caller and the pool's workers), each a
/// single-threaded `Element::gemm` call: by rows when `m >= n` (the blocks of `c` are then
/// contiguous), else by columns (every thread but the first writes its columns into a scratch
/// block, copied in afterwards). The split is static, so a given thread count always gives the
/// same bits.
pub(crate) fn gemm<E: Element>(
    m: usize,
    k: usize,
    n: usize,
    a: MatRef<E>,
    b: MatRef<E>,
    c: &mut [E],
) {
    debug_assert_eq!(c.len(), m * n);
    if m * n == 0 {
        return;
    }
    if k == 0 {
        c.fill(E::zero());
        return;
    }
    if packs(m, k, n) {
        let threads = crate::threads::product_threads();
        if threads > 1 && m * k * n >= THREADED_MIN_FMAS {
            if m >= n {
                split_rows(m, k, n, a, b, c, threads);
            } else {
                split_cols(m, k, n, a, b, c, threads);
            }
        } else {
            serial(m, k, n, a, b, c, n);
        }
        return;
    }
    direct(m, k, n, a, b, c);
}

/// How a product is cut in two for the helper thread (see [`two_way_split`]).
#[derive(Clone, Copy)]
pub(crate) enum Half {
    /// The helper computes rows `r0..m`.
    Rows(usize),
    /// The helper computes columns `j0..n`.
    Cols(usize),
}

/// From this many multiply-adds, a one-row product (batch-1 sampling) is split in two.
const SPLIT_ROW_MIN_FMAS: usize = 1 << 16;

/// How `matmul` cuts a product in two, the second block for the helper thread (`helper.rs`),
/// or `None` to leave it to [`gemm`]:
/// * with two threads, by rows when `m >= n`, else by columns, as [`gemm`] itself cuts (a
///   product over packed panels may then be cut by rows after all, see `matmul.rs`). The
///   helper is awake between products, where a rayon worker sleeps (the caller waited 52 µs
///   on average for the worker's block of B1's 32x256x1024 products);
/// * with two threads or more, one-row products from [`SPLIT_ROW_MIN_FMAS`] by columns
///   (too small for rayon: sampling got slower through it).
pub(crate) fn two_way_split(m: usize, k: usize, n: usize) -> Option<Half> {
    let threads = crate::threads::product_threads();
    if packs(m, k, n) && m * k * n >= THREADED_MIN_FMAS && threads == 2 {
        Some(if m >= n {
            Half::Rows(block(m, 2, 1).0)
        } else {
            Half::Cols(block(n, 2, 1).0)
        })
    } else if m == 1 && n > 1 && k * n >= SPLIT_ROW_MIN_FMAS && threads >= 2 {
        Some(Half::Cols(n / 2))
    } else {
        None
    }
}

/// One block of a split product into `c` (row stride `ldc`): `Element::gemm` when it packs,
/// else the direct loops (only one-row products are split below that size).
pub(crate) fn block_product<E: Element>(
    (m, k, n): (usize, usize, usize),
    a: MatRef<E>,
    b: MatRef<E>,
    c: &mut [E],
    ldc: usize,
) {
    if packs(m, k, n) {
        serial(m, k, n, a, b, c, ldc);
    } else {
        debug_assert_eq!(
            m, 1,
            "only one-row products are split below the packing size"
        );
        direct(m, k, n, a, b, &mut c[..m * n]);
    }
}

impl Half {
    /// Computes the caller's block straight into `c` (`m x n`, dense).
    pub(crate) fn first<E: Element>(
        self,
        (m, k, n): (usize, usize, usize),
        a: MatRef<E>,
        b: MatRef<E>,
        c: &mut [E],
    ) {
        match self {
            Half::Rows(r0) => block_product((r0, k, n), a, b, &mut c[..r0 * n], n),
            Half::Cols(j0) => block_product((m, k, j0), a, b, c, n),
        }
    }

    /// Computes the helper's block into a dense buffer of its own.
    pub(crate) fn second<E: Element>(
        self,
        (m, k, n): (usize, usize, usize),
        a: MatRef<E>,
        b: MatRef<E>,
    ) -> Vec<E> {
        match self {
            Half::Rows(r0) => {
                let mut out = crate::storage::overwritable((m - r0) * n);
                block_product((m - r0, k, n), a.rows_from(r0), b, &mut out, n);
                out
            }
            Half::Cols(j0) => {
                let mut out = crate::storage::overwritable(m * (n - j0));
                block_product((m, k, n - j0), a, b.cols_from(j0), &mut out, n - j0);
                out
            }
        }
    }

    /// Copies the helper's block into `c`.
    pub(crate) fn place<E: Element>(self, (m, n): (usize, usize), block: &[E], c: &mut [E]) {
        match self {
            Half::Rows(r0) => c[r0 * n..m * n].copy_from_slice(block),
            Half::Cols(j0) => {
                for (row, src) in c.chunks_exact_mut(n).zip(block.chunks_exact(n - j0)) {
                    row[j0..].copy_from_slice(src);
                }
            }
        }
    }

    /// [`Half::place`], a large block of columns copied in by two threads, the top half of
    /// its rows here and the bottom half on the helper when it polls for work (otherwise all
    /// here). Returns whether the helper took its half. B2's decoder on two threads: the
    /// forward pass 8.0 → 7.6 ms.
    pub(crate) fn place_shared<E: Element>(
        self,
        (m, n): (usize, usize),
        block: &[E],
        c: &mut [E],
    ) -> bool {
        if let Half::Cols(j0) = self {
            if block.len() >= PLACE_SHARED_MIN && m >= 2 {
                let (r, w) = (m / 2, n - j0);
                let (top, bottom) = c.split_at_mut(r * n);
                let (from_top, from_bottom) = block.split_at(r * w);
                let shared = crate::helper::split_in_place(
                    || self.place((r, n), from_top, top),
                    || self.place((m - r, n), from_bottom, bottom),
                );
                if shared.is_ok() {
                    return true;
                }
            }
        }
        self.place((m, n), block, c);
        false
    }
}

/// From this many elements, the helper's block of columns is copied in by both threads
/// (B2's decoder: 400 rows of 5,000 columns).
const PLACE_SHARED_MIN: usize = 1 << 18;

/// One single-threaded `Element::gemm` call writing `c` with row stride `ldc`.
fn serial<E: Element>(
    m: usize,
    k: usize,
    n: usize,
    a: MatRef<E>,
    b: MatRef<E>,
    c: &mut [E],
    ldc: usize,
) {
    E::gemm(
        m,
        k,
        n,
        E::one(),
        a.data,
        a.rs as isize,
        a.cs as isize,
        b.data,
        b.rs as isize,
        b.cs as isize,
        E::zero(),
        c,
        ldc as isize,
        1,
    );
}

/// Block `i` of `parts` near-equal blocks of `len`: `(start, size)`.
pub(crate) fn block(len: usize, parts: usize, i: usize) -> (usize, usize) {
    let (q, r) = (len / parts, len % parts);
    (i * q + i.min(r), q + usize::from(i < r))
}

/// Row blocks of `c`, one per thread, shared through [`crate::threads::map_claimed`] (the
/// calling thread starts with the first; a block a late worker has not taken is computed here).
fn split_rows<E: Element>(
    m: usize,
    k: usize,
    n: usize,
    a: MatRef<E>,
    b: MatRef<E>,
    c: &mut [E],
    threads: usize,
) {
    let parts = threads.min(m);
    let mut rest = c;
    let blocks: Vec<(usize, usize, &mut [E])> = (0..parts)
        .map(|i| {
            let (i0, rows) = block(m, parts, i);
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(rows * n);
            rest = tail;
            (i0, rows, head)
        })
        .collect();
    crate::threads::map_claimed(blocks, |(i0, rows, out)| {
        serial(rows, k, n, a.rows_from(i0), b, out, n)
    });
}

/// Column blocks of `c`, one per thread, shared like [`split_rows`]: the first is written into
/// `c` in place, the others into scratch blocks that are copied in afterwards.
fn split_cols<E: Element>(
    m: usize,
    k: usize,
    n: usize,
    a: MatRef<E>,
    b: MatRef<E>,
    c: &mut [E],
    threads: usize,
) {
    let parts = threads.min(n);
    let mut first = Some(&mut *c);
    let blocks: Vec<(usize, usize, Option<&mut [E]>)> = (0..parts)
        .map(|i| {
            let (j0, cols) = block(n, parts, i);
            (j0, cols, first.take())
        })
        .collect();
    let scratch = crate::threads::map_claimed(blocks, |(j0, cols, dest)| match dest {
        Some(c) => {
            serial(m, k, cols, a, b, c, n);
            None
        }
        None => {
            let mut buf = crate::storage::overwritable(m * cols);
            serial(m, k, cols, a, b.cols_from(j0), &mut buf, cols);
            Some((j0, cols, buf))
        }
    });
    for (j0, cols, buf) in scratch.into_iter().flatten() {
        for (row, src) in c.chunks_exact_mut(n).zip(buf.chunks_exact(cols)) {
            row[j0..j0 + cols].copy_from_slice(src);
        }
        crate::storage::give(buf);
    }
}

/// Direct loops for products too small to pay for packing.
fn direct<E: Element>(m: usize, k: usize, n: usize, a: MatRef<E>, b: MatRef<E>, c: &mut [E]) {
    if b.rs == 1 && a.cs == 1 {
        // rows of a and columns of b are contiguous: dot products
        for i in 0..m {
            let ar = &a.data[i * a.rs..i * a.rs + k];
            for (j, cv) in c[i * n..(i + 1) * n].iter_mut().enumerate() {
                *cv = dot(ar, &b.data[j * b.cs..j * b.cs + k]);
            }
        }
    } else if b.cs == 1 {
        // rows of b are contiguous: accumulate scaled rows (axpy)
        c.fill(E::zero());
        for i in 0..m {
            let cr = &mut c[i * n..(i + 1) * n];
            for p in 0..k {
                let av = a.data[i * a.rs + p * a.cs];
                let br = &b.data[p * b.rs..p * b.rs + n];
                for (cv, &bv) in cr.iter_mut().zip(br) {
                    *cv += av * bv;
                }
            }
        }
    } else {
        for i in 0..m {
            for j in 0..n {
                let mut s = E::zero();
                for p in 0..k {
                    s += a.data[i * a.rs + p * a.cs] * b.data[p * b.rs + j * b.cs];
                }
                c[i * n + j] = s;
            }
        }
    }
}

/// Dot product with sixteen independent accumulators so it vectorizes (one AVX-512 register of
/// f32; measured 1.5x faster than eight on a 1x256x1024 product, which is L2-bandwidth bound).
fn dot<E: Element>(a: &[E], b: &[E]) -> E {
    const LANES: usize = 16;
    let mut acc = [E::zero(); LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = E::zero();
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += *x * *y;
    }
    super::reduce_lanes(acc) + s
}

/// `a @ b` by the textbook triple loop, the reference of the product tests.
#[cfg(test)]
pub(crate) fn naive(m: usize, k: usize, n: usize, a: MatRef<f64>, b: MatRef<f64>) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            for p in 0..k {
                c[i * n + j] += a.data[i * a.rs + p * a.cs] * b.data[p * b.rs + j * b.cs];
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs [`gemm`] on `a: m x k` and `b: k x n` (given row-major) in every pair of layouts,
    /// each operand row-major or stored transposed, on pools of `1..=max_threads` threads, and
    /// hands each result (its `c` started as NaN) to `check` with a label.
    fn on_every_layout<E: Element>(
        (m, k, n): (usize, usize, usize),
        (a, b): (&[E], &[E]),
        max_threads: usize,
        mut check: impl FnMut(&[E], &str),
    ) {
        // a(i, p) stored transposed at p * m + i, and b(p, j) at j * k + p
        let at: Vec<E> = (0..m * k).map(|x| a[(x % m) * k + x / m]).collect();
        let bt: Vec<E> = (0..k * n).map(|x| b[(x % k) * n + x / k]).collect();
        /// A `rows x cols` matrix given row-major (`plain`) or stored transposed (`t`).
        fn view<'a, E>(
            plain: &'a [E],
            t: &'a [E],
            transposed: bool,
            rows: usize,
            cols: usize,
        ) -> MatRef<'a, E> {
            if transposed {
                MatRef {
                    data: t,
                    rs: 1,
                    cs: rows,
                }
            } else {
                MatRef {
                    data: plain,
                    rs: cols,
                    cs: 1,
                }
            }
        }
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let am = view(a, &at, ta, m, k);
            let bm = view(b, &bt, tb, k, n);
            for threads in 1..=max_threads {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut c = vec![E::nan(); m * n];
                pool.install(|| gemm(m, k, n, am, bm, &mut c));
                check(
                    &c,
                    &format!("{m}x{k}x{n} a^T {ta} b^T {tb}, {threads} threads"),
                );
            }
        }
    }

    #[test]
    fn every_f32_path_is_close_to_the_exact_product() {
        // f32 products go to the `gemm` crate or to `matrixmultiply` by shape and layout (see
        // `element::prefers_gemm_crate`); each pair of layouts below takes both backends
        for &(m, k, n) in &[
            (40, 64, 96),
            (200, 64, 96),
            (300, 129, 40),
            (1, 64, 640),
            (300, 129, 1), // one column
            (130, 300, 2),
        ] {
            let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
            let exact = |i: usize, j: usize| -> f64 {
                (0..k)
                    .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                    .sum()
            };
            on_every_layout((m, k, n), (&a, &b), 2, |c, label| {
                for i in 0..m {
                    for j in 0..n {
                        let (x, y) = (c[i * n + j] as f64, exact(i, j));
                        assert!((x - y).abs() < 1e-5 * k as f64, "{label}: {x} vs {y}");
                    }
                }
            });
        }
    }

    #[test]
    fn every_path_matches_the_naive_product() {
        for &(m, k, n) in &[
            (1, 100, 100),
            (1, 37, 6),   // ragged lanes
            (1, 200, 10), // several 16-lane chunks and a tail
            (2, 130, 7),
            (3, 5, 7),
            (64, 64, 64),
            (1, 1, 9),
            (9, 1, 1),
            (40, 33, 50),
            (16, 128, 384), // one matrixmultiply call
            (40, 200, 300), // split by columns over the pool
            (300, 200, 40), // split by rows
        ] {
            let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.11).cos()).collect();
            let (am, bm) = (
                MatRef {
                    data: &a[..],
                    rs: k,
                    cs: 1,
                },
                MatRef {
                    data: &b[..],
                    rs: n,
                    cs: 1,
                },
            );
            let want = naive(m, k, n, am, bm);
            // one thread, two, and three (uneven blocks)
            on_every_layout((m, k, n), (&a, &b), 3, |c, label| {
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-9, "{label}: {x} vs {y}");
                }
            });
        }
    }

    #[test]
    fn a_block_of_columns_copied_in_by_two_threads_lands_where_one_thread_puts_it() {
        let _alone = crate::helper::TEST_LOCK
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // seven rows (an uneven cut: three here, four on the helper), columns 20000.. copied
        for (m, n, j0) in [(7, 60000, 20000), (2, 140000, 5)] {
            let half = Half::Cols(j0);
            let block: Vec<f32> = (0..m * (n - j0)).map(|i| i as f32).collect();
            let start: Vec<f32> = (0..m * n).map(|i| -(i as f32)).collect();
            let mut want = start.clone();
            half.place((m, n), &block, &mut want);
            let mut got = start.clone();
            crate::helper::until_taken(|| {
                got.copy_from_slice(&start);
                half.place_shared((m, n), &block, &mut got)
            });
            assert!(got == want, "{m}x{n} from column {j0}");
            // the columns before j0 are untouched, the block's are its values
            assert_eq!(got[j0 - 1], start[j0 - 1]);
            assert_eq!(got[(m - 1) * n + j0], block[(m - 1) * (n - j0)]);
        }
    }
}
