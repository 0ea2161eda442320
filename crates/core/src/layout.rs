//! Shapes, strides and offsets: how a tensor's logical elements map into its storage.

use smallvec::SmallVec;

use crate::error::{Error, Result};

/// Dimension list; four dims inline before spilling to the heap.
pub type Dims = SmallVec<[usize; 4]>;

/// Number of elements of a shape (1 for a 0-d scalar).
/// Saturates at `usize::MAX` instead of overflowing (such a shape can never match real data,
/// so constructors reject it with an error rather than panicking).
#[inline]
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().fold(1usize, |a, &d| a.saturating_mul(d))
}

/// Row-major (C-contiguous) strides of a shape.
pub fn contiguous_strides(shape: &[usize]) -> Dims {
    let mut strides: Dims = SmallVec::from_elem(0, shape.len());
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        strides[i] = acc;
        acc = acc.saturating_mul(shape[i]);
    }
    strides
}

/// Where a tensor's elements live in its storage: element `[i0, i1, ...]` is at
/// `offset + i0 * strides[0] + i1 * strides[1] + ...`. Stride 0 marks a broadcast dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    shape: Dims,
    strides: Dims,
    offset: usize,
}

impl Layout {
    /// A contiguous row-major layout starting at offset 0.
    pub fn contiguous(shape: &[usize]) -> Self {
        Layout {
            shape: shape.into(),
            strides: contiguous_strides(shape),
            offset: 0,
        }
    }

    /// A layout from its parts (no validation: callers derive it from a valid layout).
    pub(crate) fn from_parts(shape: Dims, strides: Dims, offset: usize) -> Self {
        Layout {
            shape,
            strides,
            offset,
        }
    }

    /// The shape.
    #[inline]
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The strides (in elements).
    #[inline]
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// Offset of element zero in storage.
    #[inline]
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Rank.
    #[inline]
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    #[inline]
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// True if elements are row-major and dense (any offset).
    #[inline]
    pub fn is_contiguous(&self) -> bool {
        let mut acc = 1;
        for i in (0..self.shape.len()).rev() {
            if self.shape[i] != 1 && self.strides[i] != acc {
                return false;
            }
            acc *= self.shape[i];
        }
        true
    }

    /// Largest storage index touched plus one (0 for an empty tensor).
    pub fn extent(&self) -> usize {
        if self.numel() == 0 {
            return 0;
        }
        self.offset
            + self
                .shape
                .iter()
                .zip(&self.strides)
                .map(|(&d, &s)| (d - 1) * s)
                .sum::<usize>()
            + 1
    }

    /// Length of the longest dense row-major run at the end of the dims: the product of the
    /// trailing dims whose strides are those of a contiguous block (size-1 dims don't break it).
    #[inline]
    pub fn inner_run(&self) -> usize {
        let mut run = 1;
        for i in (0..self.rank()).rev() {
            if self.shape[i] != 1 && self.strides[i] != run {
                break;
            }
            run *= self.shape[i];
        }
        run
    }

    /// The number of trailing dims that repeat one element (stride 0, a broadcast, or size 1),
    /// and how many elements they span: a broadcast row or scalar is copied by filling runs of
    /// that many copies instead of one element at a time.
    pub fn repeated_tail(&self) -> (usize, usize) {
        let (mut dims, mut len) = (0, 1);
        for i in (0..self.rank()).rev() {
            if self.strides[i] != 0 && self.shape[i] != 1 {
                break;
            }
            dims += 1;
            len *= self.shape[i];
        }
        (dims, len)
    }

    /// Calls `f(offset, len)` for consecutive dense runs of `run` elements (which must divide the
    /// numel and be at most [`Layout::inner_run`]), in row-major logical order.
    pub fn for_each_run(&self, run: usize, mut f: impl FnMut(usize)) {
        let n = self.numel();
        if n == 0 {
            return;
        }
        debug_assert!(run >= 1 && n.is_multiple_of(run) && run <= self.inner_run().max(1));
        // collapse the dims covered by the run, then walk the rest as an odometer
        let mut covered = 1;
        let mut split = self.rank();
        while split > 0 && covered < run {
            split -= 1;
            covered *= self.shape[split];
        }
        let outer = Layout::from_parts(
            self.shape[..split].into(),
            self.strides[..split].into(),
            self.offset,
        );
        if outer.rank() == 0 {
            f(self.offset);
            return;
        }
        outer.for_each_offset(f);
    }

    /// Calls `f` with the storage offset of every element, in row-major logical order.
    /// Iterative (no recursion); the innermost dimension runs as a tight loop.
    pub fn for_each_offset(&self, mut f: impl FnMut(usize)) {
        let n = self.numel();
        if n == 0 {
            return;
        }
        let rank = self.rank();
        if rank == 0 {
            f(self.offset);
            return;
        }
        let inner = self.shape[rank - 1];
        let inner_stride = self.strides[rank - 1];
        let mut idx: Dims = SmallVec::from_elem(0, rank);
        let mut base = self.offset;
        let outer_count = n / inner;
        for _ in 0..outer_count {
            let mut o = base;
            for _ in 0..inner {
                f(o);
                o += inner_stride;
            }
            // advance the outer index (dims 0..rank-1)
            let mut d = rank - 1;
            while d > 0 {
                d -= 1;
                idx[d] += 1;
                base += self.strides[d];
                if idx[d] < self.shape[d] {
                    break;
                }
                base -= self.strides[d] * self.shape[d];
                idx[d] = 0;
            }
        }
    }

    /// A view with dims reordered: new dim `i` is old dim `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Layout> {
        let rank = self.rank();
        let mut seen = vec![false; rank];
        if perm.len() != rank
            || perm
                .iter()
                .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
        {
            return Err(Error::shape(
                "permute",
                format!(
                    "permutation {perm:?} is not valid for shape {:?}",
                    self.shape()
                ),
            ));
        }
        Ok(Layout {
            shape: perm.iter().map(|&p| self.shape[p]).collect(),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
            offset: self.offset,
        })
    }

    /// A view of `len` elements of `dim` starting at `start`.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Layout {
        let mut l = self.clone();
        l.offset += start * self.strides[dim];
        l.shape[dim] = len;
        l
    }

    /// A broadcast view to `shape` (trailing-aligned, size-1 or missing dims get stride 0).
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Layout> {
        let err = || {
            Error::shape(
                "broadcast_to",
                format!("cannot broadcast {:?} to {:?}", self.shape(), shape),
            )
        };
        if shape.len() < self.rank() {
            return Err(err());
        }
        let lead = shape.len() - self.rank();
        let mut strides: Dims = SmallVec::from_elem(0, shape.len());
        for (i, &d) in shape.iter().enumerate() {
            if i < lead {
                continue;
            }
            let src = self.shape[i - lead];
            if src == d {
                strides[i] = self.strides[i - lead];
            } else if src != 1 {
                return Err(err());
            }
        }
        Ok(Layout {
            shape: shape.into(),
            strides,
            offset: self.offset,
        })
    }
}

/// The broadcast shape of two shapes (NumPy / PyTorch rules), or a shape error naming `op`.
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Dims> {
    let rank = a.len().max(b.len());
    let mut out: Dims = SmallVec::from_elem(1, rank);
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::shape(
                op,
                format!("shapes {a:?} and {b:?} cannot be broadcast together"),
            ));
        };
    }
    Ok(out)
}

/// Resolves a possibly negative dim (`-1` is the last) against a rank.
pub fn resolve_dim(op: &'static str, dim: isize, rank: usize) -> Result<usize> {
    let r = rank as isize;
    let d = if dim < 0 { dim + r } else { dim };
    if d < 0 || d >= r {
        return Err(Error::Dim { op, dim, rank });
    }
    Ok(d as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn for_each_offset_visits_transposed_order() {
        let l = Layout::contiguous(&[2, 3]).permute(&[1, 0]).unwrap();
        let mut v = vec![];
        l.for_each_offset(|o| v.push(o));
        assert_eq!(v, vec![0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn runs_cover_strided_views() {
        // rows 1..3 of a [3, 4] matrix, columns 1..3: runs of 2
        let l = Layout::contiguous(&[3, 4]).narrow(1, 1, 2).narrow(0, 1, 2);
        assert_eq!(l.inner_run(), 2);
        let mut runs = vec![];
        l.for_each_run(2, |o| runs.push(o));
        assert_eq!(runs, vec![5, 9]);
        // broadcast row: stride 0 on the outer dim
        let b = Layout::contiguous(&[4]).broadcast_to(&[3, 4]).unwrap();
        assert_eq!(b.inner_run(), 4);
        let mut runs = vec![];
        b.for_each_run(4, |o| runs.push(o));
        assert_eq!(runs, vec![0, 0, 0]);
        // fully contiguous: one run
        let c = Layout::contiguous(&[2, 3]);
        let mut runs = vec![];
        c.for_each_run(6, |o| runs.push(o));
        assert_eq!(runs, vec![0]);
    }

    #[test]
    fn broadcast_rules() {
        assert_eq!(
            broadcast_shapes("t", &[2, 1, 3], &[4, 1])
                .unwrap()
                .as_slice(),
            &[2, 4, 3]
        );
        assert!(broadcast_shapes("t", &[2, 3], &[4]).is_err());
        let l = Layout::contiguous(&[3]).broadcast_to(&[2, 3]).unwrap();
        assert_eq!(l.strides(), &[0, 1]);
        assert!(!l.is_contiguous());
    }

    #[test]
    fn huge_shapes_saturate_instead_of_overflowing() {
        let big = 1usize << 40;
        assert_eq!(numel(&[big, big]), usize::MAX);
        assert_eq!(numel(&[0, big, big]), 0);
        assert_eq!(contiguous_strides(&[0, big, big]).len(), 3);
    }

    #[test]
    fn resolve_negative_dims() {
        assert_eq!(resolve_dim("t", -1, 3).unwrap(), 2);
        assert!(resolve_dim("t", 3, 3).is_err());
        assert!(resolve_dim("t", -4, 3).is_err());
    }
}
