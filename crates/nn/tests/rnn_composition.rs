//! The recurrent steps are compositions of general-purpose core ops (issue #7's rule: no op
//! whose backward is a cell's hand-derived backward). The states a step returns are the
//! outputs of those ops, so the tape, not a cell op, derives the step's gradient.

use rand::{rngs::StdRng, SeedableRng};
use retrograd_core::{Result, Tensor};
use retrograd_nn::{CellConfig, GruCell, LstmCell, LstmState};

fn randn(shape: &[usize], seed: u64) -> Tensor<f32> {
    Tensor::randn(shape, 0.0, 1.0, &mut StdRng::seed_from_u64(seed)).expect("valid randn")
}

#[test]
fn lstm_step_states_come_from_general_ops() -> Result<()> {
    let cell = LstmCell::<f32>::new(CellConfig::new(3, 4), &mut StdRng::seed_from_u64(1))?;
    let (x, h, c) = (randn(&[2, 3], 2), randn(&[2, 4], 3), randn(&[2, 4], 4));
    let s = cell.forward(&x, Some(&LstmState::new(h, c)))?;
    // c' = f ⊙ c + i ⊙ g, h' = o ⊙ tanh(c')
    assert_eq!(s.c.op_name(), Some("mul_add_mul"));
    assert_eq!(s.h.op_name(), Some("mul_act"));
    Ok(())
}

#[test]
fn gru_step_state_comes_from_general_ops() -> Result<()> {
    let cell = GruCell::<f32>::new(CellConfig::new(3, 4), &mut StdRng::seed_from_u64(5))?;
    let (x, h) = (randn(&[2, 3], 6), randn(&[2, 4], 7));
    // h' = n + z ⊙ (h − n)
    assert_eq!(cell.forward(&x, Some(&h))?.op_name(), Some("lerp"));
    Ok(())
}
