//! Shape, index and nn ops given bad shapes / dims / indices / arguments return an `Err` whose
//! message names the op and the offending shapes or values, and never panic (each call runs
//! under `catch_unwind`, see `common::run_error_cases`).

mod common;

use common::*;
use rand::{rngs::StdRng, SeedableRng};
use retrograd_core::{CrossEntropyOptions, Reduction, Tensor};

fn x23() -> Tensor<f64> {
    t64(&[1., 2., 3., 4., 5., 6.], &[2, 3])
}

#[test]
fn shape_op_errors() {
    let a = x23;
    run_error_cases(vec![
        case(
            "reshape",
            move || a().reshape(&[4]),
            &["reshape", "[2, 3]", "[4]"],
        ),
        case(
            "permute dup",
            move || a().permute(&[0, 0]),
            &["permute", "[0, 0]", "[2, 3]"],
        ),
        case(
            "permute len",
            move || a().permute(&[1]),
            &["permute", "[1]", "[2, 3]"],
        ),
        case(
            "transpose",
            move || a().transpose(0, 2),
            &["transpose", "dim 2", "rank 2"],
        ),
        case(
            "t of 3-D",
            || Tensor::<f64>::zeros(&[2, 3, 4]).t(),
            &["t:", "[2, 3, 4]"],
        ),
        case(
            "narrow range",
            move || a().narrow(1, 2, 2),
            &["narrow", "2..4", "[2, 3]"],
        ),
        case(
            "narrow dim",
            move || a().narrow(2, 0, 1),
            &["narrow", "dim 2", "rank 2"],
        ),
        case(
            "narrow overflow",
            move || a().narrow(1, usize::MAX, 2),
            &["narrow", "[2, 3]"],
        ),
        case(
            "select index",
            move || a().select(0, 2),
            &["select", "index 2", "size 2"],
        ),
        case(
            "select dim",
            move || a().select(3, 0),
            &["select", "dim 3", "rank 2"],
        ),
        case(
            "squeeze non-1",
            move || a().squeeze(0),
            &["squeeze", "dim 0", "[2, 3]"],
        ),
        case(
            "squeeze dim",
            move || a().squeeze(-3),
            &["squeeze", "dim -3", "rank 2"],
        ),
        case(
            "unsqueeze",
            move || a().unsqueeze(3),
            &["unsqueeze", "dim 3", "rank 2"],
        ),
        case(
            "broadcast_to",
            move || a().broadcast_to(&[3, 3]),
            &["broadcast_to", "[2, 3]", "[3, 3]"],
        ),
        case(
            "broadcast_to lower rank",
            move || a().broadcast_to(&[3]),
            &["broadcast_to", "[2, 3]", "[3]"],
        ),
        case(
            "cat none",
            || Tensor::<f64>::cat(&[], 0),
            &["cat", "at least one"],
        ),
        case(
            "cat shapes",
            move || Tensor::cat(&[&a(), &Tensor::zeros(&[3, 3])], 1),
            &["cat", "[2, 3]", "[3, 3]"],
        ),
        case(
            "cat ranks",
            move || Tensor::cat(&[&a(), &Tensor::zeros(&[3])], 0),
            &["cat", "[2, 3]", "[3]"],
        ),
        case(
            "cat dim",
            move || Tensor::cat(&[&a(), &a()], 2),
            &["cat", "dim 2", "rank 2"],
        ),
        case(
            "stack none",
            || Tensor::<f64>::stack(&[], 0),
            &["stack", "at least one"],
        ),
        case(
            "stack shapes",
            move || Tensor::stack(&[&a(), &a().t()?], 0),
            &["stack", "[2, 3]", "[3, 2]"],
        ),
        case(
            "stack dim",
            move || Tensor::stack(&[&a(), &a()], 3),
            &["stack", "dim 3", "rank 2"],
        ),
        case(
            "split size 0",
            move || a().split(0, 1),
            &["split", "positive"],
        ),
        case(
            "split dim",
            move || a().split(1, 2),
            &["split", "dim 2", "rank 2"],
        ),
        case("chunk 0", move || a().chunk(0, 0), &["chunk", "positive"]),
        case(
            "chunk dim",
            move || a().chunk(2, -3),
            &["chunk", "dim -3", "rank 2"],
        ),
    ]);
}

#[test]
fn index_op_errors() {
    let a = x23;
    run_error_cases(vec![
        case(
            "index_select index",
            move || a().index_select(1, &[0, 3]),
            &["index_select", "index 3", "size 3"],
        ),
        case(
            "index_select dim",
            move || a().index_select(2, &[0]),
            &["index_select", "dim 2", "rank 2"],
        ),
        case(
            "gather index shape",
            move || a().gather(1, &[0, 0, 0, 0], &[2, 2, 1]),
            &["gather", "index shape [2, 2, 1]", "[2, 3]"],
        ),
        case(
            "gather other dim differs",
            move || a().gather(1, &[0, 0, 0], &[3, 1]),
            &["gather", "index shape [3, 1]", "[2, 3]"],
        ),
        case(
            "gather index count",
            move || a().gather(1, &[0, 0, 0], &[2, 2]),
            &["gather", "3 values", "[2, 2]"],
        ),
        case(
            "gather index value",
            move || a().gather(0, &[0, 2, 0], &[1, 3]),
            &["gather", "index 2", "size 2"],
        ),
        case(
            "gather dim",
            move || a().gather(-3, &[0], &[1, 1]),
            &["gather", "dim -3", "rank 2"],
        ),
        case(
            "masked_fill",
            move || a().masked_fill(&[true; 5], 0.0),
            &["masked_fill", "5 values", "[2, 3]"],
        ),
        case(
            "where shapes",
            move || Tensor::where_cond(&[true; 6], &a(), &a().t()?),
            &["where", "[2, 3]", "[3, 2]"],
        ),
        case(
            "where cond length",
            move || Tensor::where_cond(&[true; 4], &a(), &a()),
            &["where", "4 values", "[2, 3]"],
        ),
    ]);
}

#[test]
fn nn_op_errors() {
    let a = x23;
    let opts = |ignore_index, reduction| CrossEntropyOptions {
        ignore_index,
        reduction,
    };
    run_error_cases(vec![
        case(
            "softmax dim",
            move || a().softmax(2),
            &["softmax", "dim 2", "rank 2"],
        ),
        case(
            "log_softmax dim",
            move || a().log_softmax(-3),
            &["log_softmax", "dim -3", "rank 2"],
        ),
        case(
            "cross_entropy 1-D logits",
            || t64(&[1., 2.], &[2]).cross_entropy(&[0]),
            &["cross_entropy", "[N, C]", "[2]"],
        ),
        case(
            "cross_entropy target count",
            move || a().cross_entropy(&[0, 1, 2]),
            &["cross_entropy", "[2, 3]", "3 targets"],
        ),
        case(
            "cross_entropy class",
            move || a().cross_entropy(&[0, 3]),
            &["cross_entropy", "index 3", "size 3"],
        ),
        case(
            "cross_entropy negative",
            move || a().cross_entropy(&[-1, 0]),
            &["cross_entropy", "index -1", "size 3"],
        ),
        case(
            "cross_entropy_with custom ignore",
            move || a().cross_entropy_with(&[-100, 0], opts(0, Reduction::Sum)),
            &["cross_entropy", "index -100", "size 3"],
        ),
        case(
            "mse",
            move || a().mse(&t64(&[1., 2.], &[2])),
            &["mse", "[2, 3]", "[2]"],
        ),
        case(
            "mse_with",
            move || a().mse_with(&a().t()?, Reduction::None),
            &["mse", "[2, 3]", "[3, 2]"],
        ),
        case(
            "dropout p > 1",
            move || a().dropout(1.5, true, &mut StdRng::seed_from_u64(0)),
            &["dropout", "1.5"],
        ),
        case(
            "dropout p < 0",
            move || a().dropout(-0.1, false, &mut StdRng::seed_from_u64(0)),
            &["dropout", "-0.1"],
        ),
        case(
            "dropout NaN",
            move || a().dropout(f64::NAN, true, &mut StdRng::seed_from_u64(0)),
            &["dropout", "NaN"],
        ),
    ]);
}
