//! The one error type of retrograd.

use thiserror::Error;

/// Everything that can go wrong in retrograd. Every shape error names the op and the shapes.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// Two or more shapes do not fit together for an op.
    #[error("{op}: shape mismatch: {detail}")]
    Shape {
        /// The op that failed.
        op: &'static str,
        /// Which shapes and why.
        detail: String,
    },
    /// A dimension index is out of range for a tensor's rank.
    #[error("{op}: dim {dim} out of range for a tensor of rank {rank}")]
    Dim {
        /// The op that failed.
        op: &'static str,
        /// The requested dim.
        dim: isize,
        /// The tensor's rank.
        rank: usize,
    },
    /// An index (token id, gather index, ...) is out of range.
    #[error("{op}: index {index} out of range for size {size}")]
    Index {
        /// The op that failed.
        op: &'static str,
        /// The offending index.
        index: i64,
        /// The size of the indexed dimension.
        size: usize,
    },
    /// A data buffer's length does not match the shape it is given with.
    #[error("{op}: {len} elements do not fill shape {shape:?} ({expected} elements)")]
    DataLen {
        /// The op that failed.
        op: &'static str,
        /// The data length given.
        len: usize,
        /// The shape given.
        shape: Vec<usize>,
        /// numel of the shape.
        expected: usize,
    },
    /// An argument outside its valid range (a probability, a learning rate, a size ...).
    #[error("{op}: invalid argument: {detail}")]
    InvalidArgument {
        /// Where.
        op: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// Backward was asked of something that does not track gradients, or of a non-scalar.
    #[error("backward: {0}")]
    Backward(String),
    /// A non-finite value was found (anomaly detection, NaN loss, ...).
    #[error("non-finite value: {0}")]
    NonFinite(String),
    /// Analytic and numeric gradients disagree (from [`gradcheck`](fn@crate::gradcheck)).
    #[error("gradcheck: {0}")]
    Gradcheck(String),
    /// Reading or writing a file failed.
    #[error("io: {0}")]
    Io(String),
    /// A checkpoint / state dict could not be used.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// An error with context added on the way up (e.g. `lstm layer 1 (reverse): ...`).
    #[error("{context}: {source}")]
    Context {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: Box<Error>,
    },
}

impl Error {
    /// Shorthand for a [`Error::Shape`] error.
    pub fn shape(op: &'static str, detail: impl Into<String>) -> Self {
        Error::Shape {
            op,
            detail: detail.into(),
        }
    }

    /// Shorthand for an [`Error::InvalidArgument`] error.
    pub fn invalid(op: &'static str, detail: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            detail: detail.into(),
        }
    }

    /// Wraps this error with context.
    pub fn context(self, context: impl Into<String>) -> Self {
        Error::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

/// `Result` with retrograd's [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds context to the error of a `Result`.
///
/// ```
/// use retrograd_core::{Error, Result, ResultExt};
/// let r: Result<()> = Err(Error::invalid("x", "bad"));
/// let e = r.context("layer 1").unwrap_err();
/// assert_eq!(e.to_string(), "layer 1: x: invalid argument: bad");
/// ```
pub trait ResultExt<T> {
    /// Wraps the error, if any, with `context`.
    fn context(self, context: impl Into<String>) -> Result<T>;
    /// Like [`ResultExt::context`], computing the context only on error.
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.context(context))
    }
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| e.context(f()))
    }
}
