//! The LSTM's two-part state. (RNN and GRU states are plain tensors; [`Tensor::detach`] cuts
//! them from the graph the same way.)

use retrograd_core::{Element, Tensor};

/// An LSTM state: hidden `h` and cell `c`.
///
/// For a [`Lstm`](super::Lstm) stack, `h` is (layers·dirs, N, H_out) and `c` is
/// (layers·dirs, N, H) (no batch dim for unbatched input), row `layer·dirs + dir`. For an
/// [`LstmCell`](super::LstmCell) they are (N, H) (or (H)).
///
/// Truncated BPTT carries the state into the next chunk after [`LstmState::detach`], so the
/// next backward pass stops at the chunk boundary and the old graph is freed.
///
/// ```
/// use rand::{rngs::StdRng, SeedableRng};
/// use retrograd_core::Tensor;
/// use retrograd_nn::rnn::{Lstm, RnnConfig};
/// let mut rng = StdRng::seed_from_u64(0);
/// let lstm = Lstm::<f32>::new(RnnConfig::new(3, 4), &mut rng)?;
/// let chunk = Tensor::randn(&[5, 2, 3], 0.0, 1.0, &mut rng)?;
/// let (_, state) = lstm.forward(&chunk, None)?;
/// assert!(state.h.tracks_grad());
/// let state = state.detach();
/// assert!(!state.h.tracks_grad() && !state.c.tracks_grad());
/// let (_, next) = lstm.forward(&chunk, Some(&state))?;
/// assert_eq!(next.c.shape(), &[1, 2, 4]);
/// # Ok::<(), retrograd_core::Error>(())
/// ```
#[derive(Clone)]
pub struct LstmState<E: Element = f32> {
    /// Hidden state.
    pub h: Tensor<E>,
    /// Cell state.
    pub c: Tensor<E>,
}

impl<E: Element> LstmState<E> {
    /// A state from its two parts (shapes are checked when it is used).
    pub fn new(h: Tensor<E>, c: Tensor<E>) -> Self {
        LstmState { h, c }
    }

    /// The same values cut from the graph (both parts), for truncated BPTT.
    pub fn detach(&self) -> Self {
        LstmState {
            h: self.h.detach(),
            c: self.c.detach(),
        }
    }
}

impl<E: Element> std::fmt::Debug for LstmState<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LstmState(h: {:?}, c: {:?})",
            self.h.shape(),
            self.c.shape()
        )
    }
}
