//! A row-major copy of a storage read as a transposed matrix, kept for the products that read
//! it again.
//!
//! `x.matmul(&w.t())` (every `Linear` and recurrent product, with PyTorch's `[out, in]` weight
//! layout) hands `matrixmultiply` a column-major right-hand side. It packs that one element
//! at a time, where it packs a row-major one a row of sixteen at a time: a 32x256x1024 product
//! took 180 µs with the transposed operand against 131 µs with a row-major copy, and a
//! 16x128x384 one 19.8 against 10.4 µs (one thread, on this project's machine). A recurrent
//! weight is read that way at every time step, so from the second such read of a storage the
//! product reads a transposed copy instead, made once and dropped when the storage is
//! mutated (an optimizer step) or freed. The copy holds the same values, and packing
//! puts them in the same order as before, so products give the same bits either way.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use crate::element::Element;

/// The transposed copy of one storage, and how often a product has asked for it.
#[derive(Debug, Default)]
pub(crate) struct Twin<E> {
    copy: OnceLock<Transposed<E>>,
    reads: AtomicU32,
}

/// `data` is the `[cols, rows]` row-major transpose of the storage read as `[rows, cols]`.
#[derive(Debug)]
struct Transposed<E> {
    rows: usize,
    cols: usize,
    data: Vec<E>,
}

impl<E: Element> Twin<E> {
    /// The `[cols, rows]` row-major transpose of `src` (read as a row-major `[rows, cols]`),
    /// from the second request on; `None` on the first, or when a copy of other dimensions
    /// was made first.
    pub(crate) fn transposed(&self, src: &[E], rows: usize, cols: usize) -> Option<&[E]> {
        debug_assert_eq!(src.len(), rows * cols);
        if self.copy.get().is_none() && self.reads.fetch_add(1, Ordering::Relaxed) == 0 {
            return None;
        }
        let t = self.copy.get_or_init(|| Transposed {
            rows,
            cols,
            data: transpose(src, rows, cols),
        });
        (t.rows == rows && t.cols == cols).then_some(&t.data[..])
    }

    /// Forgets the copy (the storage is about to change), returning its buffer.
    pub(crate) fn clear(&mut self) -> Option<Vec<E>> {
        *self.reads.get_mut() = 0;
        self.copy.take().map(|t| t.data)
    }
}

/// The row-major `[cols, rows]` transpose of a row-major `[rows, cols]` matrix (see
/// [`transpose_into`]).
fn transpose<E: Element>(src: &[E], rows: usize, cols: usize) -> Vec<E> {
    // every element is written below
    let mut out = crate::storage::overwritable(rows * cols);
    transpose_into(src, rows, cols, &mut out, rows);
    out
}

/// Writes the transpose of `src`, a row-major `[rows, cols]` matrix, into `dst` with row
/// stride `ld` (`dst[c * ld + r] = src[r * cols + c]`; with `ld > rows` the columns
/// `rows..ld` of `dst` are left as they are), eight source columns at a time: each source row
/// gives one element to each of eight output rows, so reads stay sequential and eight write
/// streams advance together (a 1024x256 matrix took 64 µs this way and 675 µs in 16x16
/// tiles, whose column-wise writes were 4 KiB apart).
pub(crate) fn transpose_into<E: Element>(
    src: &[E],
    rows: usize,
    cols: usize,
    dst: &mut [E],
    ld: usize,
) {
    const W: usize = 8;
    debug_assert!(ld >= rows && src.len() == rows * cols);
    let full = cols / W * W;
    for c0 in (0..full).step_by(W) {
        // the eight output rows this strip writes (the last one up to its `rows` columns)
        let strip = &mut dst[c0 * ld..(c0 + W - 1) * ld + rows];
        for (r, row) in src.chunks_exact(cols).enumerate() {
            let s: &[E; W] = row[c0..c0 + W].try_into().expect("eight columns");
            for (j, &v) in s.iter().enumerate() {
                strip[j * ld + r] = v;
            }
        }
    }
    for c in full..cols {
        for (r, row) in src.chunks_exact(cols).enumerate() {
            dst[c * ld + r] = row[c];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_comes_on_the_second_read_and_goes_on_clear() {
        let src: Vec<f64> = (0..6).map(f64::from).collect(); // [[0,1,2],[3,4,5]]
        let mut twin = Twin::default();
        assert_eq!(twin.transposed(&src, 2, 3), None);
        assert_eq!(
            twin.transposed(&src, 2, 3),
            Some(&[0.0, 3.0, 1.0, 4.0, 2.0, 5.0][..])
        );
        // a copy of other dimensions is never handed out
        assert_eq!(twin.transposed(&src, 3, 2), None);
        assert_eq!(twin.clear().map(|v| v.len()), Some(6));
        assert_eq!(twin.transposed(&src, 3, 2), None);
        assert_eq!(
            twin.transposed(&src, 3, 2),
            Some(&[0.0, 2.0, 4.0, 1.0, 3.0, 5.0][..])
        );
    }

    #[test]
    fn the_transpose_covers_ragged_edges() {
        let (rows, cols) = (37, 21);
        let src: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let t = transpose(&src, rows, cols);
        for r in 0..rows {
            for c in 0..cols {
                assert_eq!(t[c * rows + r], src[r * cols + c]);
            }
        }
    }

    #[test]
    fn a_transpose_into_a_wider_buffer_fills_its_own_columns_only() {
        // two 3x2 blocks side by side in a [2, 7] buffer: columns 0..3 and 3..6, column 6 kept
        let a: Vec<f32> = (0..6).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..6).map(|i| 10.0 + i as f32).collect();
        let mut dst = vec![-1.0f32; 14];
        transpose_into(&a, 3, 2, &mut dst, 7);
        transpose_into(&b, 3, 2, &mut dst[3..], 7);
        assert_eq!(
            dst,
            [0., 2., 4., 10., 12., 14., -1., 1., 3., 5., 11., 13., 15., -1.]
        );
    }
}
