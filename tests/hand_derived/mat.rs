//! A tiny row-major `f64` matrix (and a 3-d `[N, T, D]` array) for re-deriving the notebooks'
//! numpy code by hand. Deliberately independent of retrograd: these are the test oracles.
//! Shape mismatches panic (this is test code; a panic is a failed test).

use rand::Rng;

/// A row-major `rows x cols` matrix (numpy's 2-d `ndarray`; a bias `b` of shape `(H,)` is a
/// `1 x H` row).
#[derive(Clone, Debug, PartialEq)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

impl Mat {
    pub fn zeros(rows: usize, cols: usize) -> Mat {
        Mat {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    pub fn from_vec(rows: usize, cols: usize, data: Vec<f64>) -> Mat {
        assert_eq!(data.len(), rows * cols, "Mat::from_vec {rows}x{cols}");
        Mat { rows, cols, data }
    }

    pub fn from_fn(rows: usize, cols: usize, f: impl Fn(usize, usize) -> f64) -> Mat {
        let mut data = Vec::with_capacity(rows * cols);
        for i in 0..rows {
            for j in 0..cols {
                data.push(f(i, j));
            }
        }
        Mat { rows, cols, data }
    }

    /// Uniform entries in `[-scale, scale)`.
    pub fn rand(rows: usize, cols: usize, scale: f64, rng: &mut impl Rng) -> Mat {
        let data = (0..rows * cols)
            .map(|_| rng.random_range(-scale..scale))
            .collect();
        Mat { rows, cols, data }
    }

    pub fn shape(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }

    pub fn at(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.cols + j]
    }

    pub fn at_mut(&mut self, i: usize, j: usize) -> &mut f64 {
        &mut self.data[i * self.cols + j]
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// `np.dot(self, other)`.
    pub fn matmul(&self, other: &Mat) -> Mat {
        assert_eq!(
            self.cols,
            other.rows,
            "matmul {:?} @ {:?}",
            self.shape(),
            other.shape()
        );
        let mut out = Mat::zeros(self.rows, other.cols);
        for i in 0..self.rows {
            for k in 0..self.cols {
                let a = self.at(i, k);
                for j in 0..other.cols {
                    out.data[i * other.cols + j] += a * other.at(k, j);
                }
            }
        }
        out
    }

    /// `self.T`.
    pub fn t(&self) -> Mat {
        Mat::from_fn(self.cols, self.rows, |i, j| self.at(j, i))
    }

    fn zip(&self, other: &Mat, what: &str, f: impl Fn(f64, f64) -> f64) -> Mat {
        assert_eq!(self.shape(), other.shape(), "elementwise {what}");
        let data = self
            .data
            .iter()
            .zip(&other.data)
            .map(|(&a, &b)| f(a, b))
            .collect();
        Mat::from_vec(self.rows, self.cols, data)
    }

    pub fn add(&self, other: &Mat) -> Mat {
        self.zip(other, "add", |a, b| a + b)
    }

    pub fn sub(&self, other: &Mat) -> Mat {
        self.zip(other, "sub", |a, b| a - b)
    }

    /// Elementwise product (numpy `*`).
    pub fn mul(&self, other: &Mat) -> Mat {
        self.zip(other, "mul", |a, b| a * b)
    }

    pub fn map(&self, f: impl Fn(f64) -> f64) -> Mat {
        Mat::from_vec(
            self.rows,
            self.cols,
            self.data.iter().map(|&v| f(v)).collect(),
        )
    }

    pub fn scale(&self, s: f64) -> Mat {
        self.map(|v| v * s)
    }

    /// `self + b` with numpy broadcasting of a `1 x cols` row over the rows.
    pub fn add_row(&self, b: &Mat) -> Mat {
        assert_eq!(
            (b.rows, b.cols),
            (1, self.cols),
            "add_row {:?} + {:?}",
            self.shape(),
            b.shape()
        );
        Mat::from_fn(self.rows, self.cols, |i, j| self.at(i, j) + b.data[j])
    }

    /// `np.sum(self, axis=0)` as a `1 x cols` row.
    pub fn sum_rows(&self) -> Mat {
        let mut out = Mat::zeros(1, self.cols);
        for i in 0..self.rows {
            for j in 0..self.cols {
                out.data[j] += self.at(i, j);
            }
        }
        out
    }

    pub fn sum_all(&self) -> f64 {
        self.data.iter().sum()
    }

    /// `self[:, start:start+len]`.
    pub fn cols_range(&self, start: usize, len: usize) -> Mat {
        assert!(start + len <= self.cols, "cols_range out of bounds");
        Mat::from_fn(self.rows, len, |i, j| self.at(i, start + j))
    }

    /// `self[start:start+len, :]`.
    pub fn rows_range(&self, start: usize, len: usize) -> Mat {
        assert!(start + len <= self.rows, "rows_range out of bounds");
        Mat::from_vec(
            len,
            self.cols,
            self.data[start * self.cols..(start + len) * self.cols].to_vec(),
        )
    }

    /// `np.hstack(parts)`.
    pub fn hstack(parts: &[&Mat]) -> Mat {
        let rows = parts[0].rows;
        assert!(parts.iter().all(|p| p.rows == rows), "hstack rows differ");
        let cols = parts.iter().map(|p| p.cols).sum();
        let mut out = Mat::zeros(rows, cols);
        let mut off = 0;
        for p in parts {
            for i in 0..rows {
                for j in 0..p.cols {
                    *out.at_mut(i, off + j) = p.at(i, j);
                }
            }
            off += p.cols;
        }
        out
    }

    /// `np.vstack(parts)`.
    pub fn vstack(parts: &[&Mat]) -> Mat {
        let cols = parts[0].cols;
        assert!(parts.iter().all(|p| p.cols == cols), "vstack cols differ");
        let data: Vec<f64> = parts.iter().flat_map(|p| p.data.iter().copied()).collect();
        Mat::from_vec(data.len() / cols.max(1), cols, data)
    }

    pub fn max_abs_diff(&self, other: &Mat) -> f64 {
        assert_eq!(self.shape(), other.shape(), "max_abs_diff");
        self.data
            .iter()
            .zip(&other.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    }
}

pub fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// A row-major `[N, T, D]` array (the notebooks' `xs`, `hs`, `dhs`, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct Arr3 {
    pub n: usize,
    pub t: usize,
    pub d: usize,
    pub data: Vec<f64>,
}

impl Arr3 {
    /// `np.empty((N, T, D))` (zero-filled here).
    pub fn zeros(n: usize, t: usize, d: usize) -> Arr3 {
        Arr3 {
            n,
            t,
            d,
            data: vec![0.0; n * t * d],
        }
    }

    pub fn rand(n: usize, t: usize, d: usize, scale: f64, rng: &mut impl Rng) -> Arr3 {
        let m = Mat::rand(n * t, d, scale, rng);
        Arr3::from_rows(n, t, &m)
    }

    pub fn shape(&self) -> [usize; 3] {
        [self.n, self.t, self.d]
    }

    /// `self[:, t, :]`, an `N x D` matrix.
    pub fn step(&self, t: usize) -> Mat {
        Mat::from_fn(self.n, self.d, |i, j| {
            self.data[(i * self.t + t) * self.d + j]
        })
    }

    /// `self[:, t, :] = m`.
    pub fn set_step(&mut self, t: usize, m: &Mat) {
        assert_eq!((m.rows, m.cols), (self.n, self.d), "set_step");
        for i in 0..self.n {
            for j in 0..self.d {
                self.data[(i * self.t + t) * self.d + j] = m.at(i, j);
            }
        }
    }

    /// `self.reshape(N*T, D)` (row `n*T + t`).
    pub fn to_rows(&self) -> Mat {
        Mat::from_vec(self.n * self.t, self.d, self.data.clone())
    }

    /// `m.reshape(N, T, -1)`.
    pub fn from_rows(n: usize, t: usize, m: &Mat) -> Arr3 {
        assert_eq!(m.rows, n * t, "from_rows");
        Arr3 {
            n,
            t,
            d: m.cols,
            data: m.data.clone(),
        }
    }

    pub fn max_abs_diff(&self, other: &Arr3) -> f64 {
        assert_eq!(self.shape(), other.shape(), "max_abs_diff");
        self.to_rows().max_abs_diff(&other.to_rows())
    }
}
