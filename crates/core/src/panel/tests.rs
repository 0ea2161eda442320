use super::*;
use crate::element::{AccTileFn, CmMode};
use crate::ops::gemm::naive;

#[test]
fn packing_pads_the_last_panel_with_zeros() {
    // b = [[0, 1, ..., 69], [70, ...]]: 2 x 70, two panels
    let b: Vec<f64> = (0..140).map(f64::from).collect();
    let p = pack(
        2,
        70,
        MatRef {
            data: &b,
            rs: 70,
            cs: 1,
        },
    );
    assert_eq!(p.len(), 2 * 2 * NR);
    assert_eq!(p.as_ptr() as usize % 64, 0, "panels start on a cache line");
    assert_eq!(p[0], 0.0);
    assert_eq!(p[NR - 1], 63.0);
    assert_eq!(p[NR], 70.0); // row 1 of panel 0
    assert_eq!(p[2 * NR], 64.0); // panel 1, row 0, column 64
    assert_eq!(p[2 * NR + 5], 69.0);
    assert_eq!(p[2 * NR + 6], 0.0); // padding
    assert_eq!(p[3 * NR + 5], 139.0);

    // the buffer is not zeroed first: a recycled one full of NaN still gets zero padding
    let (k, n): (usize, usize) = (40, 70);
    let len = n.div_ceil(NR) * k * NR + LineAligned::<f64>::LINE;
    let b: Vec<f64> = (0..k * n).map(|i| i as f64).collect();
    for _ in 0..4 {
        crate::storage::give(vec![f64::NAN; len]);
        let p = pack(
            k,
            n,
            MatRef {
                data: &b,
                rs: n,
                cs: 1,
            },
        );
        for (i, panel) in p.chunks_exact(k * NR).enumerate() {
            for (r, row) in panel.chunks_exact(NR).enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    let c = i * NR + j;
                    let want = if c < n { (r * n + c) as f64 } else { 0.0 };
                    assert_eq!(
                        v.to_bits(),
                        want.to_bits(),
                        "panel {i}, row {r}, column {j}"
                    );
                }
            }
        }
    }
}

#[test]
fn packing_reads_every_layout_of_b() {
    // a 5 x 139 matrix (three panels, the last ragged, columns not a multiple of eight)
    // stored row-major, transposed (column-major), and with both strides above one
    let (k, n) = (5, 139);
    let val = |p: usize, j: usize| (p * 1000 + j) as f64;
    let row_major: Vec<f64> = (0..k * n).map(|x| val(x / n, x % n)).collect();
    let col_major: Vec<f64> = (0..k * n).map(|x| val(x % k, x / k)).collect();
    let spread: Vec<f64> = (0..k * n * 2)
        .map(|x| val(x / (2 * n), x % (2 * n) / 2))
        .collect();
    for (data, rs, cs) in [(&row_major, n, 1), (&col_major, 1, k), (&spread, 2 * n, 2)] {
        let p = pack(k, n, MatRef { data, rs, cs });
        for q in 0..n.div_ceil(NR) {
            for pp in 0..k {
                for jj in 0..NR {
                    let j = q * NR + jj;
                    let want = if j < n { val(pp, j) } else { 0.0 };
                    assert_eq!(
                        p[(q * k + pp) * NR + jj],
                        want,
                        "strides {rs},{cs}: ({pp}, {j})"
                    );
                }
            }
        }
    }
}

#[test]
fn rows_packed_source_by_source_equal_the_whole_packed_at_once() {
    // a 7 x 128 rhs (two panels) packed as rows 0..3 then 3..7 from two sources, whole and
    // one panel's columns
    let (k, n) = (7, 2 * NR);
    let b: Vec<f64> = (0..k * n).map(|x| x as f64).collect();
    let whole = pack(
        k,
        n,
        MatRef {
            data: &b,
            rs: n,
            cs: 1,
        },
    );
    let mut parts = vec![-1.0; k * n];
    pack_rows(&b[..3 * n], n, (k, n), 0, &mut parts);
    pack_rows(&b[3 * n..], n, (k, n), 3, &mut parts);
    assert_eq!(parts[..], whole[..]);
    // the second panel alone, from sources that start at its first column of the wide rows
    let mut second = vec![-1.0; k * NR];
    pack_rows(&b[NR..3 * n], n, (k, NR), 0, &mut second);
    pack_rows(&b[3 * n + NR..], n, (k, NR), 3, &mut second);
    assert_eq!(second[..], whole[k * NR..]);
}

/// The row-major `m x k` matrix `a` stored column-major.
fn column_major<E: Copy>(a: &[E], m: usize, k: usize) -> Vec<E> {
    (0..m * k).map(|x| a[(x % m) * k + x / m]).collect()
}

/// Test operands of an `m x k x n` product: `a` row-major, its column-major copy `at`, `b`
/// row-major (smooth values, all different) and `b` packed in panels.
fn operands<E: Element>(m: usize, k: usize, n: usize) -> (Vec<E>, Vec<E>, Vec<E>, LineAligned<E>) {
    let a: Vec<E> = (0..m * k)
        .map(|i| E::of_f64((i as f64 * 0.37).sin()))
        .collect();
    let b: Vec<E> = (0..k * n)
        .map(|i| E::of_f64((i as f64 * 0.11).cos()))
        .collect();
    let at = column_major(&a, m, k);
    let panels = pack(k, n, rows_of(&b, n));
    (a, at, b, panels)
}

/// A row-major matrix of `n` columns.
fn rows_of<E>(b: &[E], n: usize) -> MatRef<'_, E> {
    MatRef {
        data: b,
        rs: n,
        cs: 1,
    }
}

/// One `m x k` left operand read row-major from `a` and as the transpose of `at` (its
/// column-major copy): the in-place and the copied paths of `product`.
fn both_layouts<'a, E>(a: &'a [E], at: &'a [E], m: usize, k: usize) -> [MatRef<'a, E>; 2] {
    [
        MatRef {
            data: a,
            rs: k,
            cs: 1,
        },
        MatRef {
            data: at,
            rs: 1,
            cs: m,
        },
    ]
}

#[test]
fn products_over_panels_match_the_naive_product() {
    // ragged rows (m % MR), ragged columns (n % NR), a transposed and strided lhs, and a
    // computed column range starting at a later panel
    for &(m, k, n) in &[
        (1, 3, 5),
        (5, 7, 64),
        (9, 33, 130),
        (32, 40, 200),
        (4, 1, 65),
        // every remainder of six-row tiles: 0, 1, 2 (two fours), 3, 4, 5 (a padded six)
        (6, 5, 64),
        (7, 5, 64),
        (8, 5, 64),
        (2, 5, 64),
        (10, 5, 64),
        (11, 5, 64),
        (20, 9, 70),
    ] {
        let (a, at, b, panels) = operands::<f64>(m, k, n);
        let bm = rows_of(&b, n);
        for am in both_layouts(&a, &at, m, k) {
            let want = naive(m, k, n, am, bm);
            for j0 in (0..n).step_by(NR) {
                let w = n - j0;
                let mut c = vec![f64::NAN; m * w];
                product(
                    Tiles::Whole {
                        four: scalar_tile,
                        six: scalar_tile6,
                    },
                    (m, k, n),
                    j0,
                    am,
                    &panels,
                    &mut c,
                    w,
                );
                for i in 0..m {
                    for j in 0..w {
                        let (x, y) = (c[i * w + j], want[i * n + j0 + j]);
                        assert!((x - y).abs() < 1e-12, "{m}x{k}x{n} from {j0}: {x} vs {y}");
                    }
                }
            }
        }
    }
}

#[test]
fn the_cache_packs_on_the_second_read_and_after_clear_on_the_first() {
    let src: Vec<f64> = (0..6).map(f64::from).collect(); // [[0,1,2],[3,4,5]]
    let mut cache = PanelCache::default();
    assert!(cache.panels(&src, Read::AsStored, (2, 3)).is_none());
    let p = cache.panels(&src, Read::AsStored, (2, 3)).unwrap();
    assert_eq!(
        (p.len(), p[0], p[1], p[2], p[3], p[NR]),
        (2 * NR, 0.0, 1.0, 2.0, 0.0, 3.0)
    );
    // the transposed read has its own count: w.t() of [[0,1,2],[3,4,5]] is 3 x 2
    assert!(cache.panels(&src, Read::Transposed, (3, 2)).is_none());
    let t = cache.panels(&src, Read::Transposed, (3, 2)).unwrap();
    assert_eq!((t[0], t[1], t[NR], t[NR + 1]), (0.0, 3.0, 1.0, 4.0));
    // panels of other dimensions are never handed out
    assert!(cache.panels(&src, Read::AsStored, (3, 2)).is_none());
    let mut freed = 0;
    cache.clear(|v| freed += v.len());
    // k = 2 and k = 3 rows of one panel each, each buffer a cache line longer (for alignment)
    assert_eq!(freed, (2 + 3) * NR + 2 * LineAligned::<f64>::LINE);
    // both reads had panels: after the values change, each packs again on its first request,
    // from the new values
    let new: Vec<f64> = (10..16).map(f64::from).collect();
    let p = cache.panels(&new, Read::AsStored, (2, 3)).unwrap();
    assert_eq!((p[0], p[2], p[NR]), (10.0, 12.0, 13.0));
    assert!(cache.panels(&new, Read::Transposed, (3, 2)).is_some());
    // a read that never had panels still waits for its second request after a clear
    let mut fresh = PanelCache::default();
    assert!(fresh.panels(&src, Read::AsStored, (2, 3)).is_none());
    fresh.clear(|_| {});
    assert!(fresh.panels(&src, Read::AsStored, (2, 3)).is_none());
    assert!(fresh.panels(&src, Read::AsStored, (2, 3)).is_some());
    // and a cleared cache forgets the copies it had: clearing again frees nothing new
    let mut again = 0;
    fresh.clear(|v| again += v.len());
    fresh.clear(|v| again += v.len());
    assert_eq!(again, 2 * NR + LineAligned::<f64>::LINE);
}

/// Every kernel set this CPU can run: the one `kernels` picks and, where that is AVX-512,
/// the AVX2 one too (so an AVX-512 machine tests both).
fn kernel_sets() -> Vec<(&'static str, Kernels)> {
    let mut sets = Vec::new();
    // the AVX-512 set is the one that walks whole tiles
    let wide = kernels().is_some_and(|k| matches!(k.tiles, Tiles::Whole { .. }));
    if let Some(k) = kernels() {
        sets.push((if wide { "avx512" } else { "avx2" }, k));
    }
    #[cfg(target_arch = "x86_64")]
    if let (Some(k), true) = (avx2_kernels(), wide) {
        sets.push(("avx2", k));
    }
    if sets.is_empty() {
        eprintln!("this CPU has neither AVX-512 nor AVX2 with FMA: no f32 panel kernel here");
    }
    sets
}

#[test]
fn six_and_four_row_tiles_cover_the_rows_with_at_most_one_padded_tile() {
    for m in 1..200 {
        let (sixes, fours) = six_row_tiles(m);
        let covered = 6 * sixes + MR * fours;
        assert!(covered >= m, "{m} rows: {sixes} sixes, {fours} fours");
        // padding only in the last tile, and none for even m above two
        assert!(covered - m < MR.min(6), "{m} rows: {covered} covered");
        if m % 2 == 0 && m > 2 {
            assert_eq!(covered, m, "{m} rows");
        }
    }
    assert_eq!(six_row_tiles(32), (4, 2));
    assert_eq!(six_row_tiles(16), (2, 1));
    assert_eq!(six_row_tiles(20), (2, 2));
}

#[test]
fn every_simd_tile_gives_the_scalar_tiles_bits() {
    for (name, kernels) in kernel_sets() {
        for k in [1, 2, 7, 256, 1000] {
            let a: Vec<f32> = (0..k * MR)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
                .collect();
            let rows: [&[f32]; MR] = std::array::from_fn(|i| &a[i * k..(i + 1) * k]);
            let b: Vec<f32> = (0..k * NR)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.021)
                .collect();
            let (mut want, mut got) = ([0f32; MR * NR], [f32::NAN; MR * NR]);
            scalar_tile(k, rows, &b, &mut want);
            match kernels.tiles {
                Tiles::Whole { four, six } => {
                    four(k, rows, &b, &mut got);
                    // six rows: the four above and two more
                    let a6: Vec<f32> = (0..k * 6)
                        .map(|i| ((i * 29 % 89) as f32 - 44.0) * 0.017)
                        .collect();
                    let rows6: [&[f32]; 6] = std::array::from_fn(|i| &a6[i * k..(i + 1) * k]);
                    let (mut want6, mut got6) = ([0f32; 6 * NR], [f32::NAN; 6 * NR]);
                    scalar_tile6(k, rows6, &b, &mut want6);
                    six(k, rows6, &b, &mut got6);
                    assert_eq!(
                        want6.map(f32::to_bits),
                        got6.map(f32::to_bits),
                        "{name} six rows, k = {k}"
                    );
                }
                Tiles::Chunked(tile) => tile(k, rows, &b, &mut got, NR, false),
            }
            assert_eq!(
                want.map(f32::to_bits),
                got.map(f32::to_bits),
                "{name}, k = {k}"
            );
        }
    }
}

#[test]
fn the_chunked_walk_gives_the_whole_tiles_bits() {
    // The AVX2 walk takes the depth in chunks of KC, continuing each tile's sums: every
    // output must still be the one fma chain of the scalar tile, for a depth below, at and
    // past KC (not a multiple of it), ragged rows, ragged columns, a later start column and a
    // transposed (copied) left operand.
    let chunked: Vec<_> = kernel_sets()
        .into_iter()
        .filter_map(|(_, k)| match k.tiles {
            Tiles::Chunked(acc) => Some(acc),
            Tiles::Whole { .. } => None,
        })
        .collect();
    if chunked.is_empty() {
        eprintln!("no chunked tile kernel on this CPU (AVX2 with FMA has one)");
    }
    for acc in chunked {
        chunked_cases(acc);
    }
}

fn chunked_cases(acc: AccTileFn<f32>) {
    for &(m, k, n) in &[
        (4, 1, 64),
        (5, 63, 70),
        (32, 64, 128),
        (9, 65, 130),
        (32, 256, 256),
        (7, 1000, 200),
    ] {
        let (a, at, _, panels) = operands::<f32>(m, k, n);
        for am in both_layouts(&a, &at, m, k) {
            for j0 in (0..n).step_by(NR) {
                let w = n - j0;
                // c as wide as the result, and wider (whole tiles are summed in c itself, so
                // its row stride matters; the columns past the result must stay untouched)
                for ldc in [w, w + 5] {
                    let run = |tiles| {
                        let mut c = vec![f32::NAN; m * ldc];
                        product(tiles, (m, k, n), j0, am, &panels, &mut c, ldc);
                        c.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                    };
                    assert_eq!(
                        run(Tiles::Chunked(acc)),
                        run(Tiles::Whole {
                            four: scalar_tile,
                            six: scalar_tile6,
                        }),
                        "{m}x{k}x{n} from {j0}, ldc {ldc}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_product_added_into_c_has_the_bits_of_the_product_then_an_addition() {
    // `Fold::Add` adds each tile into `c` as it places it: every output must be `c + s`
    // with `s` the sum `product` writes, on every kernel set (whole tiles and the chunked
    // walk, which otherwise sums whole tiles in `c` itself), for ragged rows and columns, a
    // depth past the chunk size, a wider `c` whose extra columns stay untouched, a transposed
    // (copied) left operand, and one row (added through the tile walk)
    for (name, kernels) in kernel_sets() {
        for &(m, k, n) in &[
            (32, 256, 1024),
            (5, 63, 70),
            (9, 130, 128),
            (6, 7, 64),
            (1, 5, 64),
        ] {
            let (a, at, _, panels) = operands::<f32>(m, k, n);
            for am in both_layouts(&a, &at, m, k) {
                for ldc in [n, n + 3] {
                    let before: Vec<f32> = (0..m * ldc).map(|i| (i as f32 * 0.71).cos()).collect();
                    let mut s = vec![f32::NAN; m * ldc];
                    product(kernels.tiles, (m, k, n), 0, am, &panels, &mut s, ldc);
                    let want: Vec<u32> = (0..m * ldc)
                        .map(|i| match i % ldc < n {
                            true => (before[i] + s[i]).to_bits(),
                            false => before[i].to_bits(),
                        })
                        .collect();
                    let mut c = before.clone();
                    let tiles = kernels.tiles;
                    product_folded(tiles, (m, k, n), 0, am, &panels, &mut c, ldc, Fold::Add);
                    let got: Vec<u32> = c.iter().map(|v| v.to_bits()).collect();
                    assert_eq!(got, want, "{name}: {m}x{k}x{n}, ldc {ldc}");
                }
            }
        }
    }
}

#[test]
fn every_simd_row_kernel_gives_the_scalar_bits_and_rows_are_products() {
    for (name, kernels) in kernel_sets() {
        row_kernel_cases(name, kernels);
    }
}

fn row_kernel_cases(name: &str, kernels: Kernels) {
    for k in [1, 5, 100, 1024] {
        let a: Vec<f32> = (0..k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
            .collect();
        let b: Vec<f32> = (0..2 * k * NR)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.021)
            .collect();
        let panels = [&b[..k * NR], &b[k * NR..]];
        let (mut want, mut got) = ([0f32; 2 * NR], [f32::NAN; 2 * NR]);
        scalar_row(k, &a, panels, &mut want);
        (kernels.row)(k, &a, panels, &mut got);
        assert_eq!(
            want.map(f32::to_bits),
            got.map(f32::to_bits),
            "{name}, k = {k}"
        );
    }
    // one-row products over 1, 2 and 3 panels (an odd last one), from a later panel, and
    // with a strided row
    for (k, n) in [(7, 50), (9, 128), (33, 150)] {
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.37).sin()).collect();
        let a: Vec<f32> = (0..2 * k).map(|i| (i as f32 * 0.11).cos()).collect();
        let panels = pack(
            k,
            n,
            MatRef {
                data: &b,
                rs: n,
                cs: 1,
            },
        );
        for (data, cs) in [(&a[..k], 1), (&a[..], 2)] {
            let want: Vec<f32> = (0..n)
                .map(|j| (0..k).map(|p| data[p * cs] * b[p * n + j]).sum())
                .collect();
            for j0 in (0..n).step_by(NR) {
                let mut c = vec![f32::NAN; n - j0];
                let am = MatRef {
                    data,
                    rs: k * cs,
                    cs,
                };
                // the row path `product` takes for m = 1, with this set's row kernel
                product_row(kernels.row, (k, n), j0, am, &panels, &mut c);
                for (x, y) in c.iter().zip(&want[j0..]) {
                    assert!(
                        (x - y).abs() < 1e-4,
                        "{name}, {k}x{n} from {j0}: {x} vs {y}"
                    );
                }
            }
        }
    }
}

/// `x @ w.t()` and `g @ w` for a weight read again and again, on `threads` threads.
fn products(
    x: &crate::Tensor<f32>,
    g: &crate::Tensor<f32>,
    w: &crate::Tensor<f32>,
    threads: usize,
) -> (Vec<f32>, Vec<f32>) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        (
            x.matmul(&w.t().unwrap()).unwrap().to_vec(),
            g.matmul(w).unwrap().to_vec(),
        )
    })
}

#[test]
fn a_weight_read_again_goes_through_panels_on_one_and_two_threads() {
    let _helper = crate::helper::TEST_LOCK
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    use rand::{rngs::StdRng, SeedableRng};
    if kernels().is_none() {
        eprintln!("this CPU has no f32 panel kernel: products do not read panels here");
        return;
    };
    let rng = &mut StdRng::seed_from_u64(7);
    // B1's recurrent shapes (a column cut on two threads, k = 1024 beyond matrixmultiply's
    // 256-deep blocks), ragged ones (a cut moved to a panel boundary), and m > n from
    // BIG_M rows (a row cut, never through panels)
    for (m, k, n) in [
        (32, 256, 1024),
        (37, 200, 130),
        (300, 96, 72),
        (1, 256, 1024), // batch-1 sampling: the row kernel, a column cut on two threads
        (1, 100, 100),  // B3's step: an odd panel count
    ] {
        let used = m < BIG_M;
        let x = crate::Tensor::<f32>::randn(&[m, k], 0.0, 1.0, rng).unwrap();
        let g = crate::Tensor::<f32>::randn(&[m, n], 0.0, 1.0, rng).unwrap();
        let p = crate::Parameter::new(crate::Tensor::<f32>::randn(&[n, k], 0.0, 1.0, rng).unwrap());
        let w = p.value();
        let packed = |w: &crate::Tensor<f32>| {
            let slots = &w.storage_arc().panel_cache().slots;
            slots
                .iter()
                .map(|s| s.packed.get().is_some())
                .collect::<Vec<_>>()
        };
        // the first read does not pack (it goes to a GEMM library)
        let first = products(&x, &g, &w, 1);
        assert_eq!(packed(&w), [false; 2], "{m}x{k}x{n}");
        let one = products(&x, &g, &w, 1);
        assert_eq!(packed(&w), [used; 2], "{m}x{k}x{n}");
        // the values are the product's, and the panel kernel's sums are matrixmultiply's
        // bits up to its 256-deep blocks
        let (xv, gv, wv) = (x.to_f64_vec(), g.to_f64_vec(), w.to_f64_vec());
        let mat = |data, rs, cs| MatRef { data, rs, cs };
        let want = (
            naive(m, k, n, mat(&xv, k, 1), mat(&wv, 1, k)),
            naive(m, n, k, mat(&gv, n, 1), mat(&wv, k, 1)),
        );
        for (got, want) in [(&one.0, &want.0), (&one.1, &want.1)] {
            for (a, b) in got.iter().zip(want.iter()) {
                let a = f64::from(*a);
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "{m}x{k}x{n}: {a} vs {b}"
                );
            }
        }
        if m > 1 {
            assert_eq!(
                one.0, first.0,
                "{m}x{k}x{n}: k <= 256 gives matrixmultiply's bits"
            );
        }
        for _ in 0..3 {
            assert_eq!(products(&x, &g, &w, 2), one, "{m}x{k}x{n} on two threads");
        }
        // an optimizer-style update drops the panels: the next products see the new values,
        // and a weight that had panels packs them at its first read after the update (so the
        // doubled products have the bits of the panel route, doubled)
        drop(w);
        p.update(|d| d.iter_mut().for_each(|v| *v *= 2.0)).unwrap();
        let w = p.value();
        assert_eq!(packed(&w), [false; 2], "{m}x{k}x{n}");
        let doubled = products(&x, &g, &w, 1);
        assert_eq!(
            packed(&w),
            [used; 2],
            "{m}x{k}x{n}: packed at the first read"
        );
        for (new, old) in [(&doubled.0, &one.0), (&doubled.1, &one.1)] {
            assert!(new.iter().zip(old.iter()).all(|(a, b)| *a == 2.0 * b));
        }
    }
}

#[test]
fn the_wide_gradient_kernels_give_one_fma_chain_per_output_over_depth_passes() {
    // the six-row tile reading `a` column-major and the eight-column kernel, each run over
    // the depth in passes (`add` / the accumulators continuing the sums), against one f32
    // `fma` chain per output in `p` order
    let Some(kern) = f32_wide() else {
        return; // no AVX-512 on this CPU: the wide gradient takes the `gemm` blocks
    };
    let val = |i: usize, s: usize| ((i * s) % 23) as f32 / 23.0 - 0.45;
    for k in [1, 5, 64, 130] {
        let lda = 54; // six rows from column 3 of a 54-wide column-major block
        let a: Vec<f32> = (0..k * lda).map(|i| val(i, 7)).collect();
        let b: Vec<f32> = (0..k * NR).map(|i| val(i, 11)).collect();
        let want = |i: usize, j: usize| {
            (0..k).fold(0.0f32, |s, p| a[p * lda + 3 + i].mul_add(b[p * NR + j], s))
        };
        // output rows 70 apart, the depth in passes of 0..40, 40..k
        let ldo = 70;
        let mut out = vec![f32::NAN; 6 * ldo];
        let cut = k.min(40);
        (kern.six)(cut, &a[3..], lda, &b, &mut out, ldo, CmMode::Write);
        if cut < k {
            (kern.six)(
                k - cut,
                &a[cut * lda + 3..],
                lda,
                &b[cut * NR..],
                &mut out,
                ldo,
                CmMode::Continue,
            );
        }
        for i in 0..6 {
            for j in 0..NR {
                assert_eq!(
                    out[i * ldo + j].to_bits(),
                    want(i, j).to_bits(),
                    "six, k {k}"
                );
            }
            assert!(out[i * ldo + NR..(i + 1) * ldo].iter().all(|v| v.is_nan()));
        }
        // folded: the sums from zero over the whole depth, each added to the value there
        let base = |i: usize, j: usize| (i * NR + j) as f32 * 0.37 - 40.0;
        let mut folded: Vec<f32> = (0..6 * ldo).map(|o| base(o / ldo, o % ldo)).collect();
        (kern.six)(k, &a[3..], lda, &b, &mut folded, ldo, CmMode::Fold);
        for i in 0..6 {
            for j in 0..ldo {
                let want = if j < NR {
                    base(i, j) + want(i, j)
                } else {
                    base(i, j)
                };
                assert_eq!(folded[i * ldo + j].to_bits(), want.to_bits(), "fold, k {k}");
            }
        }
        // 48 rows (column-major in a 48-wide block) against columns 2..10 of a 12-wide `x`
        let a48: Vec<f32> = (0..k * 48).map(|i| val(i, 5)).collect();
        let x: Vec<f32> = (0..k * 12).map(|i| val(i, 13)).collect();
        let mut acc = [[0.0f32; 16]; 24];
        (kern.cols8)(cut, &a48, 48, &x[2..], 12, &mut acc);
        if cut < k {
            (kern.cols8)(
                k - cut,
                &a48[cut * 48..],
                48,
                &x[cut * 12 + 2..],
                12,
                &mut acc,
            );
        }
        for r in 0..48 {
            for c in 0..8 {
                let want =
                    (0..k).fold(0.0f32, |s, p| a48[p * 48 + r].mul_add(x[p * 12 + 2 + c], s));
                assert_eq!(
                    acc[3 * c + r / 16][r % 16].to_bits(),
                    want.to_bits(),
                    "cols8, k {k}"
                );
            }
        }
    }
}
