//! The weights of one cell (or one layer-direction of a stack) and their per-call views.

use rand::Rng;
use retrograd_core::{Element, Parameter, Result, Tensor};

use super::config::CellKind;
use super::step::StepInput;
use crate::module::join_name;

/// `weight_ih [G·H, in]`, `weight_hh [G·H, H_out]`, optional biases `[G·H]` and (LSTM with
/// projection) `weight_hr [P, H]`, all drawn from U(-1/√H, 1/√H) like PyTorch.
pub(crate) struct CellParams<E: Element> {
    pub(crate) weight_ih: Parameter<E>,
    pub(crate) weight_hh: Parameter<E>,
    pub(crate) bias_ih: Option<Parameter<E>>,
    pub(crate) bias_hh: Option<Parameter<E>>,
    pub(crate) weight_hr: Option<Parameter<E>>,
}

/// Sizes needed to build a [`CellParams`].
pub(crate) struct CellShape {
    pub(crate) kind: CellKind,
    pub(crate) input_size: usize,
    pub(crate) hidden_size: usize,
    pub(crate) proj_size: usize,
    pub(crate) bias: bool,
}

impl<E: Element> CellParams<E> {
    pub(crate) fn new(s: &CellShape, rng: &mut impl Rng) -> Result<Self> {
        let h = s.hidden_size;
        let gh = s.kind.gates() * h;
        let h_out = if s.proj_size > 0 { s.proj_size } else { h };
        let k = 1.0 / (h as f64).sqrt();
        let mut init = |shape: &[usize]| -> Result<Parameter<E>> {
            Ok(Parameter::new(Tensor::rand_uniform(shape, -k, k, rng)?))
        };
        Ok(CellParams {
            weight_ih: init(&[gh, s.input_size])?,
            weight_hh: init(&[gh, h_out])?,
            bias_ih: s.bias.then(|| init(&[gh])).transpose()?,
            bias_hh: s.bias.then(|| init(&[gh])).transpose()?,
            weight_hr: (s.proj_size > 0)
                .then(|| init(&[s.proj_size, h]))
                .transpose()?,
        })
    }

    /// Visits the parameters in PyTorch's order, named `weight_ih{suffix}` and so on.
    pub(crate) fn visit(&self, prefix: &str, suffix: &str, f: &mut dyn FnMut(&str, &Parameter<E>)) {
        let mut put =
            |name: &str, p: &Parameter<E>| f(&join_name(prefix, &format!("{name}{suffix}")), p);
        put("weight_ih", &self.weight_ih);
        put("weight_hh", &self.weight_hh);
        if let Some(b) = &self.bias_ih {
            put("bias_ih", b);
        }
        if let Some(b) = &self.bias_hh {
            put("bias_hh", b);
        }
        if let Some(w) = &self.weight_hr {
            put("weight_hr", w);
        }
    }

    /// The values for one forward call, as leaves on the tape, arranged for the driver.
    pub(crate) fn prepare(&self, kind: CellKind) -> Result<Prepared<E>> {
        let (b_ih, b_hh) = (
            self.bias_ih.as_ref().map(Parameter::value),
            self.bias_hh.as_ref().map(Parameter::value),
        );
        // RNN and LSTM add both biases to the same pre-activation, so they are summed once and
        // folded into the input projection. So are a GRU's r and z parts of b_hh; only b_hn
        // stays with the recurrent product, inside r ⊙ (W_hn h + b_hn).
        // (The two biases exist together or not at all.)
        let (b_x, b_h) = match (b_ih, b_hh) {
            (Some(a), Some(b)) if matches!(kind, CellKind::Gru) => {
                let h = b.shape()[0] / 3;
                let rz = a.narrow(0, 0, 2 * h)?.add(&b.narrow(0, 0, 2 * h)?)?;
                let bx = Tensor::cat(&[&rz, &a.narrow(0, 2 * h, h)?], 0)?;
                // the recurrent product's bias row: `b_hn` for its `n` columns, zero for the
                // others (adding +0 changes no value)
                let bh = Tensor::cat(&[&Tensor::zeros(&[2 * h]), &b.narrow(0, 2 * h, h)?], 0)?;
                (Some(bx), Some(bh))
            }
            (Some(a), Some(b)) => (Some(a.add(&b)?), None),
            _ => (None, None),
        };
        Ok(Prepared {
            w_ih_t: self.weight_ih.value().t()?,
            w_hh_t: self.weight_hh.value().t()?,
            w_hr_t: self.weight_hr.as_ref().map(|w| w.value().t()).transpose()?,
            b_x,
            b_h,
        })
    }
}

/// One call's view of a [`CellParams`]: transposed weights (views, no copy) and biases placed
/// where the recurrence adds them.
pub(crate) struct Prepared<E: Element> {
    /// `weight_ih`ᵀ [in, G·H].
    pub(crate) w_ih_t: Tensor<E>,
    /// `weight_hh`ᵀ [H_out, G·H].
    pub(crate) w_hh_t: Tensor<E>,
    /// `weight_hr`ᵀ [H, P] (LSTM projection).
    pub(crate) w_hr_t: Option<Tensor<E>>,
    /// Bias added to the input projection.
    pub(crate) b_x: Option<Tensor<E>>,
    /// `[0, 0, b_hn]` (GRU only): the bias row of the step's product `b_h + h @ weight_hhᵀ`,
    /// which so adds `b_hn` to its n block.
    pub(crate) b_h: Option<Tensor<E>>,
}

impl<E: Element> Prepared<E> {
    /// `x @ weight_ihᵀ + b_x` for a [rows, in] input: the input half of every gate at once.
    pub(crate) fn project_input(&self, x: &Tensor<E>) -> Result<Tensor<E>> {
        crate::linear::affine(x, &self.w_ih_t, self.b_x.as_ref())
    }

    /// The input projection of a whole (L, N, F) sequence, or (N, L, F) when `batch_first`,
    /// with time-major rows: step t's rows are block t·N... of an [L·N, G·H] projection.
    ///
    /// A batch-first input is copied time-major first (one pass over x); read as a column
    /// block of [N, L·G], a step would touch N rows a page apart.
    ///
    /// When x is an embedding lookup ([`Tensor::row_lookup`]) with more rows than the table,
    /// the table is projected instead and each step takes its rows: `(T[ids]) W = (T W)[ids]`.
    /// For a 65-symbol table and 2,048 tokens that is 30 times less work in the product and in
    /// both products of its backward. The rows are taken step by step ([`Projected::step`])
    /// from a projected table small enough to stay in cache: picking all steps' rows up front
    /// wrote (and the backward read back) an [L·N, G·H] copy of 8 MB in B1. An RNN or LSTM
    /// step adds them inside its product without a copy (see [`StepInput`]); each step's
    /// gradient rows go back into the projected table's gradient through the tape
    /// (`grad_rows_of`, or `grad_rows` for a GRU step's pick).
    pub(crate) fn project_sequence(
        &self,
        x: &Tensor<E>,
        batch_first: bool,
    ) -> Result<Projected<E>> {
        let (a, b, features) = x.dims3()?;
        if let Some(lookup) = x.row_lookup() {
            if lookup.ids.len() > lookup.table.shape()[0] {
                let ids = if batch_first {
                    // x row n·L + l holds (n, l); time-major row l·N + n wants it.
                    (0..b)
                        .flat_map(|l| (0..a).map(move |n| n * b + l))
                        .map(|r| lookup.ids[r])
                        .collect()
                } else {
                    lookup.ids
                };
                let table = self.project_input(&lookup.table)?;
                return Ok(Projected::Picked { table, ids });
            }
        }
        let rows = if batch_first {
            x.transpose(0, 1)?
        } else {
            x.clone()
        };
        Ok(Projected::Rows(
            self.project_input(&rows.reshape(&[a * b, features])?)?,
        ))
    }
}

/// The input projection of a sequence (see [`Prepared::project_sequence`]).
pub(crate) enum Projected<E: Element> {
    /// Every row projected: [L·N, G·H], time-major.
    Rows(Tensor<E>),
    /// A projected table and the table row of each time-major input row.
    Picked { table: Tensor<E>, ids: Vec<usize> },
}

impl<E: Element> Projected<E> {
    /// The projection of step `t`'s `batch` rows, [N, G·H]: a view of the projected rows, or
    /// the step's rows of the projected table (added by the step's product, see
    /// [`StepInput`]).
    #[inline]
    pub(crate) fn step(&self, t: usize, batch: usize) -> Result<StepInput<'_, E>> {
        Ok(match self {
            Projected::Rows(gx) => StepInput::Dense(gx.narrow(0, t * batch, batch)?),
            Projected::Picked { table, ids } => StepInput::Picked {
                table,
                ids: &ids[t * batch..(t + 1) * batch],
            },
        })
    }

    /// Which route made the projection (for the route test).
    #[cfg(test)]
    fn route(&self) -> &'static str {
        match self {
            Projected::Rows(_) => "rows",
            Projected::Picked { .. } => "picked",
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{rngs::StdRng, SeedableRng};

    use super::*;

    /// The route `project_sequence` takes: a lookup with more rows than its table projects
    /// the table and picks each step's rows from it; anything else projects its rows.
    /// (That both routes give the same values and gradients is `tests/embedded_input.rs`.)
    #[test]
    fn an_embedding_lookup_projects_the_table() -> Result<()> {
        let mut rng = StdRng::seed_from_u64(3);
        let shape = CellShape {
            kind: CellKind::Lstm,
            input_size: 2,
            hidden_size: 3,
            proj_size: 0,
            bias: true,
        };
        let p = CellParams::<f64>::new(&shape, &mut rng)?.prepare(CellKind::Lstm)?;
        let table = Tensor::<f64>::randn(&[4, 2], 0.0, 1.0, &mut rng)?.requires_grad();
        let route = |ids: &[usize], copy: bool| -> Result<&'static str> {
            let mut x = table
                .index_select(0, ids)?
                .reshape(&[2, ids.len() / 2, 2])?;
            if copy {
                x = x.mul_scalar(1.0);
            }
            Ok(p.project_sequence(&x, true)?.route())
        };
        assert_eq!(route(&[0, 1, 3, 2, 1, 0], false)?, "picked");
        // as many rows as the table: nothing to gain
        assert_eq!(route(&[0, 1, 3, 2], false)?, "rows");
        // not a lookup any more
        assert_eq!(route(&[0, 1, 3, 2, 1, 0], true)?, "rows");
        // dropout records an op in training and is the identity in eval mode
        let x = table
            .index_select(0, &[0, 1, 3, 2, 1, 0])?
            .reshape(&[2, 3, 2])?;
        let dropped = |training| x.dropout(0.5, training, &mut StdRng::seed_from_u64(4));
        let eval = p.project_sequence(&dropped(false)?, true)?;
        assert_eq!(eval.route(), "picked");
        let train = p.project_sequence(&dropped(true)?, true)?;
        assert_eq!(train.route(), "rows");
        Ok(())
    }
}
