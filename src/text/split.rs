//! Train/validation split of a token stream.

use crate::{Error, Result};

/// Splits `tokens` into a leading training part and a trailing validation part holding
/// `val_fraction` of the tokens (rounded down), keeping order so both stay running text.
/// Errors unless `0 < val_fraction < 1` and both parts are non-empty.
///
/// ```
/// use retrograd::text::train_val_split;
/// let ids: Vec<usize> = (0..10).collect();
/// let (train, val) = train_val_split(&ids, 0.2)?;
/// assert_eq!(train, [0, 1, 2, 3, 4, 5, 6, 7]);
/// assert_eq!(val, [8, 9]);
/// # Ok::<(), retrograd::Error>(())
/// ```
pub fn train_val_split<T>(tokens: &[T], val_fraction: f64) -> Result<(&[T], &[T])> {
    if !(val_fraction > 0.0 && val_fraction < 1.0) {
        return Err(Error::invalid(
            "train_val_split",
            format!("val_fraction must be in (0, 1), got {val_fraction}"),
        ));
    }
    let n_val = (tokens.len() as f64 * val_fraction).floor() as usize;
    if n_val == 0 || n_val == tokens.len() {
        return Err(Error::invalid(
            "train_val_split",
            format!(
                "{} tokens with val_fraction {val_fraction} leave an empty {} part",
                tokens.len(),
                if n_val == 0 { "validation" } else { "training" }
            ),
        ));
    }
    Ok(tokens.split_at(tokens.len() - n_val))
}
