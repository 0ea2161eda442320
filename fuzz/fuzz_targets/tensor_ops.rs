//! Tensor constructors and ops on shapes, data and arguments chosen by the fuzzer.
//!
//! A shape (rank 0-4, dims 0-5) and raw f32 bit patterns build a tensor with `from_vec` (the data
//! length is sometimes deliberately wrong, which must be an `Err`); then a sequence of ops with
//! fuzzed dims, indices, masks and second operands is applied. Every op may return `Err`, none
//! may panic. When the chain tracks gradients, backward of its sum must succeed and give the
//! leaf a gradient of the leaf's shape.
#![no_main]

mod input;

use input::Input;
use libfuzzer_sys::fuzz_target;
use rand::{rngs::StdRng, SeedableRng};
use retrograd::core::{CrossEntropyOptions, Reduction};
use retrograd::{Result, Tensor};

/// Results larger than this are dropped (keeps each run fast; cat/stack/broadcast grow).
const MAX_NUMEL: usize = 4096;

fn shape(inp: &mut Input) -> Vec<usize> {
    let rank = inp.below(5);
    (0..rank).map(|_| inp.below(6)).collect()
}

fn values(inp: &mut Input, n: usize) -> Vec<f32> {
    (0..n).map(|_| inp.f32()).collect()
}

/// A second operand: same shape, a fuzzed shape, or a broadcastable slice of `t`'s shape.
fn other(inp: &mut Input, t: &Tensor<f32>) -> Tensor<f32> {
    let s = match inp.below(3) {
        0 => t.shape().to_vec(),
        1 => shape(inp),
        _ => t.shape()[inp.below(t.rank() + 1)..].to_vec(),
    };
    let n = s.iter().product();
    Tensor::from_vec(values(inp, n), &s).expect("values() fills the shape")
}

fn dims(inp: &mut Input) -> Vec<isize> {
    (0..inp.below(3)).map(|_| inp.dim()).collect()
}

fn indices(inp: &mut Input) -> Vec<usize> {
    (0..inp.below(5)).map(|_| inp.below(7)).collect()
}

/// The first piece of a split; there is always one (an empty dim gives one empty piece).
fn first(mut parts: Vec<Tensor<f32>>) -> Tensor<f32> {
    assert!(!parts.is_empty(), "split/chunk returned no pieces");
    parts.swap_remove(0)
}

fn apply(inp: &mut Input, t: &Tensor<f32>, rng: &mut StdRng) -> Result<Tensor<f32>> {
    Ok(match inp.below(30) {
        0 => t.reshape(&shape(inp))?,
        1 => t.transpose(inp.dim(), inp.dim())?,
        2 => t.narrow(inp.dim(), inp.below(7), inp.below(7))?,
        3 => t.select(inp.dim(), inp.below(7))?,
        4 => t.squeeze(inp.dim())?,
        5 => t.unsqueeze(inp.below(6))?,
        6 => {
            let perm: Vec<usize> = (0..inp.below(6)).map(|_| inp.below(5)).collect();
            t.permute(&perm)?
        }
        7 => t.sum(&dims(inp), inp.bool())?,
        8 => t.mean(&dims(inp), inp.bool())?,
        9 => t.max(&dims(inp), inp.bool())?,
        10 => t.softmax(inp.dim())?,
        11 => t.log_softmax(inp.dim())?,
        12 => t.index_select(inp.dim(), &indices(inp))?,
        13 => {
            let idx = indices(inp);
            t.gather(inp.dim(), &idx, &shape(inp))?
        }
        14 => {
            let n = if inp.bool() { t.numel() } else { inp.below(9) };
            let mask: Vec<bool> = (0..n).map(|_| inp.bool()).collect();
            t.masked_fill(&mask, inp.param())?
        }
        15 => {
            let b = other(inp, t);
            let n = if inp.bool() { t.numel() } else { inp.below(9) };
            let cond: Vec<bool> = (0..n).map(|_| inp.bool()).collect();
            Tensor::where_cond(&cond, t, &b)?
        }
        16 => Tensor::cat(&[t, &other(inp, t)], inp.dim())?,
        17 => Tensor::stack(&[t, &other(inp, t)], inp.below(6))?,
        18 => first(t.split(inp.below(4), inp.dim())?),
        19 => first(t.chunk(inp.below(4), inp.dim())?),
        20 => t.broadcast_to(&shape(inp))?,
        21 => t.matmul(&other(inp, t).t()?)?,
        22 => t.matmul(&other(inp, t))?,
        23 => match inp.below(4) {
            0 => t.add(&other(inp, t))?,
            1 => t.sub(&other(inp, t))?,
            2 => t.mul(&other(inp, t))?,
            _ => t.div(&other(inp, t))?,
        },
        24 => {
            let targets: Vec<i64> = (0..inp.below(7)).map(|_| inp.below(9) as i64 - 2).collect();
            let reduction = [Reduction::Mean, Reduction::Sum, Reduction::None][inp.below(3)];
            let opts = CrossEntropyOptions {
                ignore_index: -1,
                reduction,
            };
            t.cross_entropy_with(&targets, opts)?
        }
        25 => t.mse(&other(inp, t))?,
        26 => t.dropout(inp.param(), inp.bool(), rng)?,
        27 => match inp.below(6) {
            0 => t.exp(),
            1 => t.log(),
            2 => t.sqrt(),
            3 => t.tanh().sigmoid(),
            4 => t.powf(inp.param()),
            _ => t.relu().affine(inp.param(), inp.param()),
        },
        28 => {
            // accessors must agree with the shape
            assert_eq!(t.to_vec().len(), t.numel());
            assert_eq!(t.item().is_ok(), t.numel() == 1);
            assert_eq!(t.dims2().is_ok(), t.rank() == 2);
            t.contiguous()
        }
        _ => t.mean_all(),
    })
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let s = shape(&mut inp);
    let numel: usize = s.iter().product();
    let len = if inp.below(8) == 0 {
        inp.below(40)
    } else {
        numel
    };
    let vals = values(&mut inp, len);
    let t = match Tensor::from_vec(vals.clone(), &s) {
        Ok(t) => t,
        Err(e) => {
            assert_ne!(len, numel, "from_vec rejected matching data: {e}");
            return;
        }
    };
    assert_eq!(len, numel, "from_vec accepted {len} values for {s:?}");
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&t.to_vec()), bits(&vals));
    assert_eq!(
        Tensor::from_slice(&vals, &s).map(|t| t.shape().to_vec()),
        Ok(s.clone())
    );

    let track = inp.bool();
    let leaf = if track { t.requires_grad() } else { t };
    let mut rng = StdRng::seed_from_u64(0);
    let mut cur = leaf.clone();
    for _ in 0..8 {
        if inp.is_empty() {
            break;
        }
        if let Ok(next) = apply(&mut inp, &cur, &mut rng) {
            if next.numel() <= MAX_NUMEL {
                cur = next;
            }
        }
    }
    if track && cur.tracks_grad() {
        let grads = cur
            .sum_all()
            .backward()
            .unwrap_or_else(|e| panic!("backward of a valid forward failed: {e}"));
        if let Some(g) = grads.get(&leaf) {
            assert_eq!(g.shape(), leaf.shape(), "gradient shape of the leaf");
        }
    }
});
