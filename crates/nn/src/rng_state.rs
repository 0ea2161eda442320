//! [`ModuleRng`], the random stream a module owns (dropout masks), and [`RngState`], its exact
//! position, so a training checkpoint can save and restore it.

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha12Rng;

/// The generator behind every module-owned random stream ([`Dropout`](crate::Dropout), the
/// recurrent stacks' inter-layer dropout): ChaCha with 12 rounds — the algorithm of
/// `rand::rngs::StdRng` — but with a readable and settable position.
pub type ModuleRng = ChaCha12Rng;

/// The exact position of a ChaCha12 generator: 32-byte key, stream and word offset.
///
/// ```
/// use rand::{Rng, SeedableRng};
/// use retrograd_nn::{ModuleRng, RngState};
/// let mut rng = ModuleRng::seed_from_u64(7);
/// let _: u64 = rng.random(); // advance a little
/// let saved = RngState::capture(&rng);
/// let next: [u32; 4] = rng.random();
/// assert_eq!(saved.restore().random::<[u32; 4]>(), next);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RngState {
    /// The 32-byte key.
    pub seed: [u8; 32],
    /// The stream (nonce).
    pub stream: u64,
    /// Offset from the start of the stream, in 32-bit words.
    pub word_pos: u128,
}

impl RngState {
    /// Reads the generator's position (the generator is not advanced).
    pub fn capture(rng: &ModuleRng) -> Self {
        RngState {
            seed: rng.get_seed(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos(),
        }
    }

    /// A generator at exactly this position.
    pub fn restore(&self) -> ModuleRng {
        let mut rng = ModuleRng::from_seed(self.seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(self.word_pos);
        rng
    }
}
