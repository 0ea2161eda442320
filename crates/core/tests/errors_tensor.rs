//! Every public fallible core function (construction, accessors, elementwise, reductions,
//! matmul, the tape, gradcheck), given bad shapes / dims / indices / arguments, returns an `Err`
//! whose message names the op and the offending shapes or values, and never panics: each call
//! runs under `catch_unwind` (see `common::run_error_cases`).

mod common;

use common::*;
use rand::{rngs::StdRng, SeedableRng};
use retrograd_core::{gradcheck, Error, GradStore, Parameter, Tensor};

fn x23() -> Tensor<f64> {
    t64(&[1., 2., 3., 4., 5., 6.], &[2, 3])
}

#[test]
fn construction_and_accessor_errors() {
    run_error_cases(vec![
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
    run_error_cases(vec![
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
    run_error_cases(vec![
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
fn tape_and_gradcheck_errors() {
    run_error_cases(vec![
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

#[test]
fn overflowing_shapes_are_errors_not_panics() {
    let big = 1usize << 32;
    let r = std::panic::catch_unwind(|| {
        retrograd_core::Tensor::<f32>::from_vec(vec![], &[0, big, big])
    });
    let t = r.expect("no panic");
    assert_eq!(t.expect("a zero-size shape is valid").numel(), 0);
    let r = std::panic::catch_unwind(|| {
        retrograd_core::Tensor::<f32>::from_vec(vec![1.0], &[big, big, big])
    });
    let err = r.expect("no panic").unwrap_err().to_string();
    assert!(err.contains("from_vec"), "{err}");
}
