//! Core rows: tensor constructors, shape/index/reduction ops, losses, autodiff, parameters.

use rand::{rngs::StdRng, SeedableRng};
use retrograd::core::{CrossEntropyOptions, GradStore, Reduction};
use retrograd::{Parameter, Tensor};

use super::harness::{case, Case};

fn m23() -> Tensor<f32> {
    Tensor::from_vec(vec![1., 2., 3., 4., 5., 6.], &[2, 3]).unwrap()
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

pub fn constructors() -> Vec<Case> {
    vec![
        case(
            "from_vec: 3 values for shape [2, 2]",
            || Tensor::<f32>::from_vec(vec![1., 2., 3.], &[2, 2]),
            &["from_vec", "3 elements", "[2, 2]"],
        ),
        case(
            "from_slice: 1 value for shape [2]",
            || Tensor::<f64>::from_slice(&[1.], &[2]),
            &["from_slice", "[2]"],
        ),
        case(
            "from_vec: shape whose element count overflows usize",
            || Tensor::<f32>::from_vec(vec![1., 2.], &[usize::MAX, 3]),
            &["from_vec", "2 elements"],
        ),
        case(
            "from_vec: data for an empty shape [0, 4]",
            || Tensor::<f32>::from_vec(vec![1.], &[0, 4]),
            &["from_vec", "[0, 4]"],
        ),
        case(
            "rand_uniform: low > high",
            || Tensor::<f32>::rand_uniform(&[2], 1.0, -1.0, &mut rng()),
            &["rand_uniform", "[1, -1)"],
        ),
        case(
            "rand_uniform: NaN bound",
            || Tensor::<f32>::rand_uniform(&[2], f64::NAN, 1.0, &mut rng()),
            &["rand_uniform", "NaN"],
        ),
        case(
            "randn: negative std",
            || Tensor::<f64>::randn(&[2], 0.0, -2.0, &mut rng()),
            &["randn", "std -2"],
        ),
        case(
            "item of a [2, 3] tensor",
            || m23().item(),
            &["item", "[2, 3]"],
        ),
        case(
            "dims3 of a rank-2 tensor",
            || m23().dims3(),
            &["dims3", "rank-3", "[2, 3]"],
        ),
        case(
            "dim 5 of a rank-2 tensor",
            || m23().dim(5),
            &["dim 5", "rank 2"],
        ),
        case(
            "Parameter::set with a different shape",
            || Parameter::new(m23()).set(&Tensor::zeros(&[3, 2])),
            &["[3, 2]", "[2, 3]"],
        ),
        case(
            "GradStore::accumulate with a different shape",
            || {
                let p = Parameter::new(m23());
                let mut g = GradStore::<f32>::new();
                g.insert(p.id(), Tensor::zeros(&[2, 3]));
                g.accumulate(p.id(), Tensor::zeros(&[3]))
            },
            &["[3]", "[2, 3]"],
        ),
    ]
}

pub fn ops() -> Vec<Case> {
    vec![
        case(
            "reshape [2, 3] to 5 elements",
            || m23().reshape(&[5]),
            &["reshape", "[2, 3]", "[5]"],
        ),
        case(
            "matmul [2, 3] @ [2, 3]",
            || m23().matmul(&m23()),
            &["matmul", "[2, 3]"],
        ),
        case(
            "matmul of a rank-1 tensor",
            || Tensor::<f32>::zeros(&[3]).matmul(&m23()),
            &["matmul", "[3]"],
        ),
        case(
            "add: shapes do not broadcast",
            || m23().add(&Tensor::zeros(&[2])),
            &["add", "[2, 3]", "[2]"],
        ),
        case(
            "broadcast_to a smaller shape",
            || m23().broadcast_to(&[3]),
            &["broadcast_to", "[2, 3]", "[3]"],
        ),
        case(
            "sum over dim 2 of a rank-2 tensor",
            || m23().sum(&[2], false),
            &["sum", "dim 2", "rank 2"],
        ),
        case(
            "max over an empty dim",
            || Tensor::<f32>::zeros(&[0, 3]).max(&[0], false),
            &["max", "empty"],
        ),
        case(
            "softmax over dim -3",
            || m23().softmax(-3),
            &["softmax", "dim -3"],
        ),
        case(
            "narrow past the end",
            || m23().narrow(1, 2, 2),
            &["narrow", "[2, 3]"],
        ),
        case(
            "select index 2 of size 2",
            || m23().select(0, 2),
            &["select", "2"],
        ),
        case(
            "permute with a repeated axis",
            || m23().permute(&[0, 0]),
            &["permute", "[0, 0]"],
        ),
        case(
            "transpose dim 3",
            || m23().transpose(0, 3),
            &["transpose", "dim 3"],
        ),
        case(
            "squeeze a dim of size 3",
            || m23().squeeze(1),
            &["squeeze", "[2, 3]"],
        ),
        case(
            "unsqueeze at 4 of a rank-2 tensor",
            || m23().unsqueeze(4),
            &["unsqueeze", "4"],
        ),
        case(
            "cat of no tensors",
            || Tensor::<f32>::cat(&[], 0),
            &["cat", "at least one tensor"],
        ),
        case(
            "cat [2, 3] with [3, 2] on dim 0",
            || Tensor::cat(&[&m23(), &Tensor::zeros(&[3, 2])], 0),
            &["cat", "[2, 3]", "[3, 2]"],
        ),
        case(
            "stack of different shapes",
            || Tensor::stack(&[&m23(), &Tensor::zeros(&[3])], 0),
            &["stack", "[2, 3]", "[3]"],
        ),
        case(
            "split with size 0",
            || m23().split(0, 1),
            &["split", "size must be positive"],
        ),
        case(
            "chunk into 0 pieces",
            || m23().chunk(0, 1),
            &["chunk", "chunks must be positive"],
        ),
        case(
            "index_select index 5 of size 2",
            || m23().index_select(0, &[0, 5]),
            &["index_select", "5", "2"],
        ),
        case(
            "gather with an index shape that does not match the data",
            || m23().gather(1, &[0, 1], &[2, 2]),
            &["gather", "[2, 2]"],
        ),
        case(
            "gather index 3 of size 3",
            || m23().gather(1, &[0, 3], &[2, 1]),
            &["gather", "3"],
        ),
        case(
            "masked_fill with 2 mask entries for 6 elements",
            || m23().masked_fill(&[true, false], 0.0),
            &["masked_fill", "2", "[2, 3]"],
        ),
        case(
            "where_cond of different shapes",
            || Tensor::where_cond(&[true; 6], &m23(), &Tensor::zeros(&[6])),
            &["where", "[2, 3]", "[6]"],
        ),
        case(
            "dropout with p = 1.5",
            || m23().dropout(1.5, true, &mut rng()),
            &["dropout", "1.5"],
        ),
        case(
            "dropout with p = NaN",
            || m23().dropout(f64::NAN, true, &mut rng()),
            &["dropout", "NaN"],
        ),
    ]
}

pub fn losses_and_autodiff() -> Vec<Case> {
    vec![
        case(
            "cross_entropy target 3 of 3 classes",
            || m23().cross_entropy(&[0, 3]),
            &["cross_entropy", "index 3", "size 3"],
        ),
        case(
            "cross_entropy negative target",
            || m23().cross_entropy(&[-2, 0]),
            &["cross_entropy", "-2"],
        ),
        case(
            "cross_entropy: 3 targets for 2 rows",
            || m23().cross_entropy(&[0, 1, 2]),
            &["cross_entropy", "[2, 3]", "3 targets"],
        ),
        case(
            "cross_entropy of rank-1 logits",
            || Tensor::<f32>::zeros(&[3]).cross_entropy(&[0]),
            &["cross_entropy", "[3]"],
        ),
        case(
            "cross_entropy_with reduction None, target out of range",
            || {
                let o = CrossEntropyOptions {
                    ignore_index: 0,
                    reduction: Reduction::None,
                };
                m23().cross_entropy_with(&[0, 7], o)
            },
            &["cross_entropy", "7"],
        ),
        case(
            "mse of different shapes",
            || m23().mse(&Tensor::zeros(&[3, 2])),
            &["[2, 3]", "[3, 2]"],
        ),
        case(
            "backward of a tensor that tracks nothing",
            || m23().sum_all().backward(),
            &["backward"],
        ),
        case(
            "backward of a non-scalar",
            || m23().requires_grad().tanh().backward(),
            &["backward", "[2, 3]"],
        ),
        case(
            "backward_with a seed of the wrong shape",
            || {
                let y = m23().requires_grad().tanh();
                y.backward_with(&Tensor::zeros(&[3, 2]))
            },
            &["backward", "[3, 2]", "[2, 3]"],
        ),
    ]
}
