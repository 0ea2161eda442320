//! The GEMM dispatcher: `matrixmultiply` for real work, direct loops for tiny products
//! (batch-1 recurrent steps, outer products) where packing costs more than the arithmetic.

use crate::element::Element;

/// Up to this many multiply-adds, direct loops beat `matrixmultiply`'s packing.
const SMALL_GEMM_FMAS: usize = 32 * 1024;

/// `matrixmultiply` (0.3, with its `threading` feature) splits a product over its threads once
/// `m*k + k*n` reaches this (its `thread_factor` of 2^14, times two threads).
const MM_THREAD_SIZE: usize = 1 << 15;

/// Below this many multiply-adds a product runs single-threaded: measured on B4's
/// 16x128x384 recurrent steps, 2 threads were 22% slower than 1; B1's 32x256x1024 (8.4M)
/// and B2's 20x200x800 (3.2M) steps still gain from 2.
const THREADED_MIN_FMAS: usize = 2 << 20;

/// A strided read-only matrix operand: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a, E> {
    pub data: &'a [E],
    pub rs: usize,
    pub cs: usize,
}

/// `c = a @ b` for `a: m x k`, `b: k x n` and a dense row-major `c: m x n` (overwritten).
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
    if m * k * n > SMALL_GEMM_FMAS && m > 1 {
        if m * k * n < THREADED_MIN_FMAS && m * k < MM_THREAD_SIZE / 2 {
            // Mid-size product: matrixmultiply would split it over threads (it does once
            // m*k + k*n reaches MM_THREAD_SIZE), which costs more than it saves at this size.
            // Column blocks narrow enough to stay under its threshold run single-threaded.
            let cols = ((MM_THREAD_SIZE - 1 - m * k) / k).max(1);
            for j0 in (0..n).step_by(cols) {
                let w = cols.min(n - j0);
                E::gemm(
                    m,
                    k,
                    w,
                    E::one(),
                    a.data,
                    a.rs as isize,
                    a.cs as isize,
                    &b.data[j0 * b.cs..],
                    b.rs as isize,
                    b.cs as isize,
                    E::zero(),
                    &mut c[j0..],
                    n as isize,
                    1,
                );
            }
            return;
        }
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
            n as isize,
            1,
        );
        return;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, k: usize, n: usize, a: MatRef<f64>, b: MatRef<f64>) -> Vec<f64> {
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

    #[test]
    fn every_path_matches_the_naive_product() {
        for &(m, k, n) in &[
            (1, 100, 100),
            (3, 5, 7),
            (64, 64, 64),
            (1, 1, 9),
            (9, 1, 1),
            (40, 33, 50),
            (16, 128, 384), // the single-threaded column-block path
        ] {
            let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.11).cos()).collect();
            // b given row-major (cs = 1) and transposed (rs = 1); a row-major and transposed
            let layouts = [(k, 1, n, 1), (1, m, n, 1), (k, 1, 1, k), (1, m, 1, k)];
            for &(ars, acs, brs, bcs) in &layouts {
                let ad: Vec<f64> = if ars == 1 {
                    // store a transposed: a(i,p) at p*m + i
                    (0..m * k).map(|x| a[(x % m) * k + x / m]).collect()
                } else {
                    a.clone()
                };
                let bd: Vec<f64> = if brs == 1 {
                    (0..k * n).map(|x| b[(x % k) * n + x / k]).collect()
                } else {
                    b.clone()
                };
                let am = MatRef {
                    data: &ad,
                    rs: ars,
                    cs: acs,
                };
                let bm = MatRef {
                    data: &bd,
                    rs: brs,
                    cs: bcs,
                };
                let mut c = vec![f64::NAN; m * n];
                gemm(m, k, n, am, bm, &mut c);
                let want = naive(m, k, n, am, bm);
                for (x, y) in c.iter().zip(&want) {
                    assert!(
                        (x - y).abs() < 1e-9,
                        "{m}x{k}x{n} layout {ars},{acs},{brs},{bcs}: {x} vs {y}"
                    );
                }
            }
        }
    }
}
