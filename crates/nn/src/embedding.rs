//! [`Embedding`]: a lookup table from token ids to vectors (PyTorch's `nn.Embedding`).

use rand::Rng;
use retrograd_core::{Element, Error, Parameter, Result, Tensor};

use crate::module::{join_name, Module};

/// A table of `num_embeddings` vectors of size `embedding_dim`; `forward` looks rows up by id.
///
/// `weight` is `[num_embeddings, embedding_dim]` (PyTorch's name and layout), initialised from
/// N(0, 1) like PyTorch. The lookup is one `index_select`, whose backward scatter-adds, so an id
/// used several times accumulates its gradient rows and unused rows get exactly 0.
///
/// ```
/// use rand::{rngs::StdRng, SeedableRng};
/// use retrograd_nn::Embedding;
///
/// let mut rng = StdRng::seed_from_u64(0);
/// let emb = Embedding::<f32>::new(65, 8, &mut rng)?;
/// let ids = [3, 1, 4, 1, 5, 9]; // a (2, 3) batch of token ids, row-major
/// let x = emb.forward(&ids, &[2, 3])?;
/// assert_eq!(x.shape(), &[2, 3, 8]);
/// let err = emb.forward(&[70], &[1]).unwrap_err().to_string();
/// assert!(err.contains("token id 70 out of range for vocabulary size 65"));
/// # Ok::<(), retrograd_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Embedding<E: Element = f32> {
    /// `[num_embeddings, embedding_dim]`.
    pub weight: Parameter<E>,
    num_embeddings: usize,
    embedding_dim: usize,
}

impl<E: Element> Embedding<E> {
    /// A table initialised from N(0, 1) drawn from `rng`. Zero sizes are an error.
    pub fn new(num_embeddings: usize, embedding_dim: usize, rng: &mut impl Rng) -> Result<Self> {
        if num_embeddings == 0 || embedding_dim == 0 {
            return Err(Error::invalid(
                "embedding",
                format!(
                    "num_embeddings and embedding_dim must be positive, got {num_embeddings} and {embedding_dim}"
                ),
            ));
        }
        let w = Tensor::randn(&[num_embeddings, embedding_dim], 0.0, 1.0, rng)?;
        Ok(Embedding {
            weight: Parameter::new(w),
            num_embeddings,
            embedding_dim,
        })
    }

    /// A table holding a copy of `weight` (`[num_embeddings, embedding_dim]`, both > 0).
    ///
    /// ```
    /// use retrograd_core::Tensor;
    /// use retrograd_nn::Embedding;
    /// let w = Tensor::<f64>::from_vec(vec![0., 0., 1., 1., 2., 2.], &[3, 2])?;
    /// let emb = Embedding::from_weights(w)?;
    /// assert_eq!(emb.forward(&[2, 0], &[2])?.to_vec(), vec![2., 2., 0., 0.]);
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn from_weights(weight: Tensor<E>) -> Result<Self> {
        match weight.shape() {
            &[v, d] if v > 0 && d > 0 => Ok(Embedding {
                weight: Parameter::new(weight),
                num_embeddings: v,
                embedding_dim: d,
            }),
            s => Err(Error::shape(
                "embedding",
                format!("weight must be [num_embeddings, embedding_dim] with both > 0, got {s:?}"),
            )),
        }
    }

    /// Vocabulary size (number of rows).
    pub fn num_embeddings(&self) -> usize {
        self.num_embeddings
    }

    /// Size of each vector.
    pub fn embedding_dim(&self) -> usize {
        self.embedding_dim
    }

    /// Looks up `ids` (row-major, filling `shape`) and returns `shape + [embedding_dim]`.
    /// An id `>= num_embeddings` is an error naming the id and the vocabulary size; so is an id
    /// count that does not fill `shape`.
    pub fn forward(&self, ids: &[usize], shape: &[usize]) -> Result<Tensor<E>> {
        // Saturates instead of overflowing: such a shape can never match real ids.
        let expected = retrograd_core::layout::numel(shape);
        if ids.len() != expected {
            return Err(Error::shape(
                "embedding",
                format!(
                    "{} ids do not fill shape {shape:?} ({expected} elements)",
                    ids.len()
                ),
            ));
        }
        if let Some(&bad) = ids.iter().find(|&&i| i >= self.num_embeddings) {
            return Err(self.out_of_range(bad as i128));
        }
        let rows = self.weight.value().index_select(0, ids)?;
        let mut out_shape = shape.to_vec();
        out_shape.push(self.embedding_dim);
        rows.reshape(&out_shape)
    }

    /// Like [`Embedding::forward`] for `i64` ids (as PyTorch and the fixtures store them);
    /// a negative id is an error naming it.
    ///
    /// ```
    /// use rand::{rngs::StdRng, SeedableRng};
    /// use retrograd_nn::Embedding;
    /// let emb = Embedding::<f32>::new(10, 4, &mut StdRng::seed_from_u64(0))?;
    /// assert_eq!(emb.forward_i64(&[1, 2, 3], &[3])?.shape(), &[3, 4]);
    /// assert!(emb.forward_i64(&[1, -1, 3], &[3]).is_err());
    /// # Ok::<(), retrograd_core::Error>(())
    /// ```
    pub fn forward_i64(&self, ids: &[i64], shape: &[usize]) -> Result<Tensor<E>> {
        let mut converted = Vec::with_capacity(ids.len());
        for &id in ids {
            match usize::try_from(id) {
                Ok(u) => converted.push(u),
                Err(_) => return Err(self.out_of_range(id as i128)),
            }
        }
        self.forward(&converted, shape)
    }

    fn out_of_range(&self, id: i128) -> Error {
        Error::invalid(
            "embedding",
            format!(
                "token id {id} out of range for vocabulary size {}",
                self.num_embeddings
            ),
        )
    }
}

impl<E: Element> Module<E> for Embedding<E> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Parameter<E>)) {
        f(&join_name(prefix, "weight"), &self.weight);
    }
}
