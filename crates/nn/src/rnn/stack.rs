//! The one driver behind [`Rnn`](super::Rnn), [`Lstm`](super::Lstm) and [`Gru`](super::Gru):
//! layers × directions, each a single input-projection matmul followed by a loop of cell steps.

use std::sync::Mutex;

use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use retrograd_core::{Element, Error, Parameter, Result, ResultExt, Tensor};

use super::config::{CellKind, RnnConfig};
use super::lengths::{Lengths, StepMasks};
use super::params::{CellParams, CellShape};
use super::step::{step, Carry};
use crate::rng_state::ModuleRng;

/// Parameters and mode of a recurrent stack.
pub(crate) struct Stack<E: Element> {
    kind: CellKind,
    pub(crate) config: RnnConfig,
    /// One entry per layer-direction, index `layer * dirs + dir` (PyTorch's order).
    cells: Vec<CellParams<E>>,
    pub(crate) training: bool,
    /// Draws the inter-layer dropout masks; seeded from the constructor's RNG.
    pub(crate) rng: Mutex<ModuleRng>,
}

/// What a forward pass returns: output, h_n and (LSTM) c_n.
pub(crate) struct StackOutput<E: Element> {
    pub(crate) output: Tensor<E>,
    pub(crate) h_n: Tensor<E>,
    pub(crate) c_n: Option<Tensor<E>>,
}

/// Per-step masks of a variable-length batch, for h and (LSTM) c.
struct Masks {
    h: StepMasks,
    c: Option<StepMasks>,
}

impl<E: Element> Stack<E> {
    pub(crate) fn new(kind: CellKind, config: RnnConfig, rng: &mut impl Rng) -> Result<Self> {
        config.validate(kind)?;
        let dirs = config.num_directions();
        let mut cells = Vec::with_capacity(config.num_layers * dirs);
        for layer in 0..config.num_layers {
            let shape = CellShape {
                kind,
                input_size: if layer == 0 {
                    config.input_size
                } else {
                    dirs * config.output_size()
                },
                hidden_size: config.hidden_size,
                proj_size: config.proj_size,
                bias: config.bias,
            };
            for _ in 0..dirs {
                cells.push(CellParams::new(&shape, rng)?);
            }
        }
        Ok(Stack {
            kind,
            config,
            cells,
            training: true,
            rng: Mutex::new(ModuleRng::seed_from_u64(rng.random())),
        })
    }

    /// Visits every parameter in PyTorch's `state_dict` order with PyTorch's names.
    pub(crate) fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Parameter<E>)) {
        let dirs = self.config.num_directions();
        for (i, cell) in self.cells.iter().enumerate() {
            let reverse = if i % dirs == 1 { "_reverse" } else { "" };
            cell.visit(prefix, &format!("_l{}{reverse}", i / dirs), f);
        }
    }

    /// Runs the stack. `x` is (L, N, H_in), (N, L, H_in) when batch_first, or unbatched
    /// (L, H_in); `h0`/`c0` are (layers·dirs, N, ·) or unbatched (layers·dirs, ·).
    pub(crate) fn forward(
        &self,
        x: &Tensor<E>,
        lengths: Option<&[usize]>,
        h0: Option<&Tensor<E>>,
        c0: Option<&Tensor<E>>,
    ) -> Result<StackOutput<E>> {
        let name = self.kind.stack_name();
        let cfg = &self.config;
        let batched = match x.rank() {
            3 => true,
            2 => false,
            _ => {
                let layout = if cfg.batch_first {
                    "(N, L, H_in)"
                } else {
                    "(L, N, H_in)"
                };
                return Err(Error::shape(
                    name,
                    format!(
                        "expected input {layout} or unbatched (L, H_in), got shape {:?}",
                        x.shape()
                    ),
                ));
            }
        };
        let x = if batched {
            x.contiguous()
        } else {
            x.unsqueeze(1)?
        };
        let bf = batched && cfg.batch_first;
        let (a, b, features) = x.dims3()?;
        let (seq_len, batch) = if bf { (b, a) } else { (a, b) };
        if features != cfg.input_size {
            return Err(Error::shape(
                name,
                format!(
                    "input has {features} features, expected input_size {} (input shape {:?})",
                    cfg.input_size,
                    x.shape()
                ),
            ));
        }
        if seq_len == 0 {
            return Err(Error::shape(name, "input has sequence length 0"));
        }
        let dirs = cfg.num_directions();
        let layers_dirs = cfg.num_layers * dirs;
        let state_arg = |what: &str, t: &Tensor<E>, width: usize| -> Result<Tensor<E>> {
            let expected: Vec<usize> = if batched {
                vec![layers_dirs, batch, width]
            } else {
                vec![layers_dirs, width]
            };
            if t.shape() != expected.as_slice() {
                return Err(Error::shape(
                    name,
                    format!("{what} has shape {:?}, expected {expected:?}", t.shape()),
                ));
            }
            if batched {
                Ok(t.clone())
            } else {
                t.unsqueeze(1)
            }
        };
        let h_out = cfg.output_size();
        let h0 = h0.map(|h| state_arg("h0", h, h_out)).transpose()?;
        let c0 = c0
            .map(|c| state_arg("c0", c, cfg.hidden_size))
            .transpose()?;
        let lens = lengths
            .map(|l| Lengths::new(name, l, batch, seq_len))
            .transpose()?;
        let masks = lens.as_ref().map(|l| Masks {
            h: l.masks(seq_len, h_out),
            c: (self.kind == CellKind::Lstm).then(|| l.masks(seq_len, cfg.hidden_size)),
        });
        let mut input = match &lens {
            Some(l) => l.zero_padding(&x, bf)?,
            None => x,
        };

        let initial = |init: Option<&Tensor<E>>, idx: usize, width: usize| match init {
            Some(t) => t.select(0, idx),
            None => Ok(Tensor::zeros(&[batch, width])),
        };
        let mut h_n = Vec::with_capacity(layers_dirs);
        let mut c_n = Vec::with_capacity(layers_dirs);
        for layer in 0..cfg.num_layers {
            // Only the user's input and the last layer's output are batch-first: between
            // layers outputs stay time-major, so the next layer's input projection reads them
            // as one matrix with no transposing copy (forward, and again for its gradient).
            let (in_bf, out_bf) = (bf && layer == 0, bf && layer + 1 == cfg.num_layers);
            if layer > 0 && self.training && cfg.dropout > 0.0 {
                let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
                input = input.dropout(cfg.dropout, true, &mut *rng)?;
            }
            let mut inits = Vec::with_capacity(dirs);
            for dir in 0..dirs {
                let idx = layer * dirs + dir;
                inits.push(Carry {
                    h: initial(h0.as_ref(), idx, h_out)?,
                    c: match self.kind {
                        CellKind::Lstm => Some(initial(c0.as_ref(), idx, cfg.hidden_size)?),
                        _ => None,
                    },
                });
            }
            let run = |dir: usize, init: Carry<E>| {
                self.run_direction(
                    layer * dirs + dir,
                    dir == 1,
                    &input,
                    (in_bf, out_bf),
                    init,
                    masks.as_ref(),
                )
                .with_context(|| {
                    let rev = if dir == 1 { " (reverse)" } else { "" };
                    format!("{name} layer {layer}{rev}")
                })
            };
            // The two directions are independent: they build their parts of the graph at once
            // (core's join carries grad and anomaly modes over to the second thread).
            let results = match <[Carry<E>; 2]>::try_from(inits) {
                Ok([fwd, rev]) => {
                    let (f, r) = retrograd_core::threads::join(|| run(0, fwd), || run(1, rev));
                    vec![f?, r?]
                }
                Err(inits) => inits
                    .into_iter()
                    .enumerate()
                    .map(|(dir, init)| run(dir, init))
                    .collect::<Result<Vec<_>>>()?,
            };
            let mut outs = Vec::with_capacity(dirs);
            for (out, last) in results {
                outs.push(out);
                h_n.push(last.h);
                c_n.extend(last.c);
            }
            input = match outs.as_slice() {
                [fwd, rev] => Tensor::cat(&[fwd, rev], 2)?,
                _ => outs.swap_remove(0),
            };
        }

        let finish = |states: Vec<Tensor<E>>| -> Result<Tensor<E>> {
            let t = Tensor::stack(&states.iter().collect::<Vec<_>>(), 0)?;
            if batched {
                Ok(t)
            } else {
                t.squeeze(1)
            }
        };
        Ok(StackOutput {
            output: if batched { input } else { input.squeeze(1)? },
            h_n: finish(h_n)?,
            c_n: if c_n.is_empty() {
                None
            } else {
                Some(finish(c_n)?)
            },
        })
    }

    /// One layer-direction over the whole sequence: `x` is (L, N, F) or, when `bf`,
    /// (N, L, F); returns the outputs, (L, N, H) or, when `out_bf`, (N, L, H), and the final
    /// state.
    fn run_direction(
        &self,
        idx: usize,
        reverse: bool,
        x: &Tensor<E>,
        (bf, out_bf): (bool, bool),
        init: Carry<E>,
        masks: Option<&Masks>,
    ) -> Result<(Tensor<E>, Carry<E>)> {
        let p = self.cells[idx].prepare(self.kind)?;
        let (a, b, _) = x.dims3()?;
        let (seq_len, batch) = if bf { (b, a) } else { (a, b) };
        // All time steps at once (or the projected table each step picks from), time-major.
        let gx = p.project_sequence(x, bf)?;
        let mut outs: Vec<Option<Tensor<E>>> = vec![None; seq_len];
        let mut state = init;
        for s in 0..seq_len {
            let t = if reverse { seq_len - 1 - s } else { s };
            let gx_t = gx.step(t, batch)?;
            let next = step(self.kind, &p, &gx_t, &state)?;
            let mask_h = masks.and_then(|m| m.h.at(t));
            outs[t] = Some(match mask_h {
                None => {
                    state = next;
                    state.h.clone()
                }
                Some(mh) => {
                    let out = next.h.masked_fill(&mh.padded, 0.0)?;
                    state.h = Tensor::where_cond(&mh.active, &next.h, &state.h)?;
                    let mask_c = masks.and_then(|m| m.c.as_ref()).and_then(|m| m.at(t));
                    if let (Some(new), Some(old), Some(mc)) = (&next.c, &state.c, mask_c) {
                        state.c = Some(Tensor::where_cond(&mc.active, new, old)?);
                    }
                    out
                }
            });
        }
        let outs: Vec<&Tensor<E>> = outs.iter().flatten().collect();
        let output = Tensor::stack(&outs, if out_bf { 1 } else { 0 })?;
        Ok((output, state))
    }
}
