//! Every public fallible core function, given bad shapes / dims / indices / arguments, returns
//! an `Err` whose message names the op and the offending shapes or values, and never panics
//! (each call runs under `catch_unwind`).

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::*;
use rand::{rngs::StdRng, SeedableRng};
use retrograd_core::{
    gradcheck, CrossEntropyOptions, Error, GradStore, Parameter, Reduction, Result, Tensor,
};

type Call = Box<dyn Fn() -> Result<()>>;

/// One bad call and the fragments its error message must contain.
struct Case {
    what: &'static str,
    call: Call,
    expect: &'static [&'static str],
}

fn case<T>(
    what: &'static str,
    f: impl Fn() -> Result<T> + 'static,
    expect: &'static [&'static str],
) -> Case {
    Case {
        what,
        call: Box::new(move || f().map(|_| ())),
        expect,
    }
}

/// Runs every case; fails listing each one that panicked, succeeded, or had a vague message.
fn run(cases: Vec<Case>) {
    let mut problems = Vec::new();
    for c in &cases {
        match catch_unwind(AssertUnwindSafe(|| (c.call)())) {
            Err(_) => problems.push(format!("{}: PANICKED", c.what)),
            Ok(Ok(())) => problems.push(format!("{}: returned Ok", c.what)),
            Ok(Err(e)) => {
                let msg = e.to_string();
                let missing: Vec<_> = c.expect.iter().filter(|s| !msg.contains(**s)).collect();
                if !missing.is_empty() {
                    problems.push(format!("{}: {msg:?} lacks {missing:?}", c.what));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} error cases are wrong:\n  {}",
        problems.len(),
        cases.len(),
        problems.join("\n  ")
    );
}

fn x23() -> Tensor<f64> {
    t64(&[1., 2., 3., 4., 5., 6.], &[2, 3])
}

#[test]
fn construction_and_accessor_errors() {
    run(vec![
        case(
            "from_vec",
            || Tensor::<f64>::from_vec(vec![1., 2., 3.], &[2, 2]),
            &["from_vec", "3 elements", "[2, 2]"],
        ),
        case(
            "from_slice",
            || Tensor::<f32>::from_slice(&[1.], &[2]),
            &["from_slice", "1 elements", "[2]"],
        ),
        case(
            "rand_uniform low > high",
            || Tensor::<f32>::rand_uniform(&[2], 1.0, 0.0, &mut StdRng::seed_from_u64(0)),
            &["rand_uniform", "[1, 0)"],
        ),
        case(
            "rand_uniform infinite",
            || Tensor::<f32>::rand_uniform(&[2], 0.0, f64::INFINITY, &mut StdRng::seed_from_u64(0)),
            &["rand_uniform", "inf"],
        ),
        case(
            "randn negative std",
            || Tensor::<f32>::randn(&[2], 0.0, -1.0, &mut StdRng::seed_from_u64(0)),
            &["randn", "std -1"],
        ),
        case("dim", || x23().dim(2), &["dim", "dim 2", "rank 2"]),
        case(
            "dim negative",
            || x23().dim(-3),
            &["dim", "dim -3", "rank 2"],
        ),
        case("dims1", || x23().dims1(), &["dims1", "rank-1", "[2, 3]"]),
        case("dims3", || x23().dims3(), &["dims3", "rank-3", "[2, 3]"]),
        case(
            "dims2",
            || t64(&[1.], &[1]).dims2(),
            &["dims2", "rank-2", "[1]"],
        ),
        case("item", || x23().item(), &["item", "[2, 3]"]),
        case(
            "Parameter::set",
            || Parameter::new(x23()).set(&t64(&[1., 2.], &[2])),
            &["Parameter::set", "[2]", "[2, 3]"],
        ),
    ]);
}

#[test]
fn elementwise_and_reduction_errors() {
    run(vec![
        case(
            "add",
            || x23().add(&t64(&[1., 2.], &[2])),
            &["add", "[2, 3]", "[2]"],
        ),
        case(
            "sub",
            || x23().sub(&t64(&[1., 2.], &[2])),
            &["sub", "[2, 3]", "[2]"],
        ),
        case(
            "mul",
            || x23().mul(&Tensor::zeros(&[3, 3])),
            &["mul", "[2, 3]", "[3, 3]"],
        ),
        case(
            "div",
            || Tensor::<f64>::zeros(&[4, 1]).div(&x23()),
            &["div", "[4, 1]", "[2, 3]"],
        ),
        case(
            "sum dim",
            || x23().sum(&[2], false),
            &["sum", "dim 2", "rank 2"],
        ),
        case(
            "sum dim twice",
            || x23().sum(&[0, -2], false),
            &["sum", "twice", "[0, -2]"],
        ),
        case(
            "mean dim",
            || x23().mean(&[-3], true),
            &["mean", "dim -3", "rank 2"],
        ),
        case(
            "max dim",
            || x23().max(&[5], false),
            &["max", "dim 5", "rank 2"],
        ),
        case(
            "max empty",
            || Tensor::<f64>::zeros(&[0, 3]).max(&[0], false),
            &["max", "empty"],
        ),
    ]);
}

#[test]
fn matmul_errors() {
    run(vec![
        case(
            "matmul inner",
            || x23().matmul(&x23()),
            &["matmul", "lhs [2, 3] vs rhs [2, 3]"],
        ),
        case(
            "matmul 1-D",
            || t64(&[1., 2., 3.], &[3]).matmul(&x23().t()?),
            &["matmul", "lhs [3] vs rhs [3, 2]"],
        ),
        case(
            "matmul batch",
            || Tensor::<f64>::zeros(&[2, 2, 3]).matmul(&Tensor::zeros(&[3, 3, 2])),
            &["matmul", "lhs [2, 2, 3] vs rhs [3, 3, 2]"],
        ),
        case(
            "matmul 2-D x 3-D",
            || x23().matmul(&Tensor::zeros(&[2, 3, 4])),
            &["matmul", "lhs [2, 3] vs rhs [2, 3, 4]"],
        ),
        case(
            "matmul 4-D",
            || Tensor::<f64>::zeros(&[1, 1, 2, 2]).matmul(&Tensor::zeros(&[2, 2])),
            &["matmul", "lhs [1, 1, 2, 2] vs rhs [2, 2]"],
        ),
    ]);
}

#[test]
fn shape_op_errors() {
    let a = x23;
    run(vec![
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
    run(vec![
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
    run(vec![
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

#[test]
fn tape_and_gradcheck_errors() {
    run(vec![
        case(
            "backward of a constant",
            || x23().sum_all().backward(),
            &["backward", "does not track"],
        ),
        case(
            "backward of non-scalar",
            || x23().requires_grad().exp().backward(),
            &["backward", "[2, 3]"],
        ),
        case(
            "backward_with wrong shape",
            || {
                x23()
                    .requires_grad()
                    .exp()
                    .backward_with(&Tensor::zeros(&[3, 2]))
            },
            &["backward", "[3, 2]", "[2, 3]"],
        ),
        case(
            "GradStore::accumulate",
            || {
                let mut g = GradStore::<f64>::new();
                let id = x23().id();
                g.accumulate(id, x23())?;
                g.accumulate(id, Tensor::zeros(&[3]))
            },
            &["GradStore::accumulate", "[3]", "[2, 3]"],
        ),
        case(
            "gradcheck propagates the function's error",
            || gradcheck(|x| x[0].matmul(&x[0]), &[x23()], Default::default()),
            &["matmul", "lhs [2, 3] vs rhs [2, 3]"],
        ),
        case(
            "gradcheck of a function ignoring its inputs",
            || {
                gradcheck(
                    |_| Ok(Tensor::<f64>::ones(&[2])),
                    &[x23()],
                    Default::default(),
                )
            },
            &["backward", "does not track"],
        ),
    ]);
}

#[test]
fn errors_are_matchable_and_carry_context() {
    // The variants carry the structured data, and context wraps without losing it.
    match x23().index_select(0, &[7]).unwrap_err() {
        Error::Index { op, index, size } => assert_eq!((op, index, size), ("index_select", 7, 2)),
        e => panic!("expected Error::Index, got {e:?}"),
    }
    match x23().softmax(4).unwrap_err() {
        Error::Dim { op, dim, rank } => assert_eq!((op, dim, rank), ("softmax", 4, 2)),
        e => panic!("expected Error::Dim, got {e:?}"),
    }
    let e = x23().reshape(&[5]).unwrap_err().context("layer 3");
    assert!(e.to_string().starts_with("layer 3: reshape: "), "{e}");
}
