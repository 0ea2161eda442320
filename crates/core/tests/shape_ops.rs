//! Shape ops (reshape, permute/transpose, narrow, select, squeeze/unsqueeze, cat, stack,
//! chunk/split, broadcast_to, contiguous): hand-computed values and gradients, then gradcheck
//! rows.

mod common;

use common::*;
use retrograd_core::Tensor;

/// [[1,2,3],[4,5,6]]
fn x23() -> Tensor<f64> {
    leaf(&[1., 2., 3., 4., 5., 6.], &[2, 3])
}

const U6: [f64; 6] = [10., 20., 30., 40., 50., 60.];

#[test]
fn reshape_values_and_gradient() {
    let x = x23();
    let y = x.reshape(&[3, 2]).unwrap();
    assert_tensor(&y, &[3, 2], &[1., 2., 3., 4., 5., 6.], 0.0);
    // Row-major order is unchanged, so the gradient is the upstream, reshaped back.
    let g = y.backward_with(&t64(&U6, &[3, 2])).unwrap();
    assert_close(&grad_of(&g, &x), &U6, 0.0);
}

#[test]
fn reshape_of_a_transposed_view() {
    // xᵀ = [[1,4],[2,5],[3,6]] flattens to [1,4,2,5,3,6]. Upstream u lands on x[i][j] from
    // position 2j + i: x[0][0]←u0, x[1][0]←u1, x[0][1]←u2, x[1][1]←u3, x[0][2]←u4, x[1][2]←u5.
    let x = x23();
    let y = x.t().unwrap().reshape(&[6]).unwrap();
    assert_tensor(&y, &[6], &[1., 4., 2., 5., 3., 6.], 0.0);
    let g = y.backward_with(&t64(&U6, &[6])).unwrap();
    assert_close(&grad_of(&g, &x), &[10., 30., 50., 20., 40., 60.], 0.0);
}

#[test]
fn transpose_and_t_values_and_gradient() {
    let x = x23();
    for y in [
        x.t().unwrap(),
        x.transpose(0, 1).unwrap(),
        x.transpose(-1, -2).unwrap(),
    ] {
        assert_tensor(&y, &[3, 2], &[1., 4., 2., 5., 3., 6.], 0.0);
        // upstream [[10,20],[30,40],[50,60]] transposed back: [[10,30,50],[20,40,60]].
        let g = y.backward_with(&t64(&U6, &[3, 2])).unwrap();
        assert_close(&grad_of(&g, &x), &[10., 30., 50., 20., 40., 60.], 0.0);
    }
}

#[test]
fn permute_3d_values_and_gradient() {
    // x[i][j][k] = 12i + 4j + k (shape [2,3,4]); y = x.permute([2,0,1]) has y[k][i][j] = x[i][j][k].
    let x = Tensor::<f64>::arange(24)
        .reshape(&[2, 3, 4])
        .unwrap()
        .requires_grad();
    let y = x.permute(&[2, 0, 1]).unwrap();
    assert_eq!(y.shape(), &[4, 2, 3]);
    // k = 0 block: i=0 → 0,4,8; i=1 → 12,16,20. k = 3 block: 3,7,11, 15,19,23.
    let v = y.to_vec();
    assert_eq!(&v[..6], &[0., 4., 8., 12., 16., 20.]);
    assert_eq!(&v[18..], &[3., 7., 11., 15., 19., 23.]);
    // With upstream u[k][i][j] = 6k + 3i + j (its row-major position), x[i][j][k] gets 6k+3i+j.
    let up = Tensor::<f64>::arange(24).reshape(&[4, 2, 3]).unwrap();
    let g = y.backward_with(&up).unwrap();
    let gx = grad_of(&g, &x);
    for i in 0..2 {
        for j in 0..3 {
            for k in 0..4 {
                assert_eq!(gx[12 * i + 4 * j + k], (6 * k + 3 * i + j) as f64);
            }
        }
    }
}

#[test]
fn narrow_and_select_values_and_gradient() {
    let x = x23();
    // columns 1..3: [[2,3],[5,6]]; gradient of the sum is 1 on those columns.
    let y = x.narrow(1, 1, 2).unwrap();
    assert_tensor(&y, &[2, 2], &[2., 3., 5., 6.], 0.0);
    let g = y.sum_all().backward().unwrap();
    assert_close(&grad_of(&g, &x), &[0., 1., 1., 0., 1., 1.], 0.0);
    assert_tensor(&x.narrow(0, 1, 1).unwrap(), &[1, 3], &[4., 5., 6.], 0.0);
    // select column 2 → [3, 6]; upstream [1, 10] lands on x[0][2], x[1][2].
    let y = x.select(1, 2).unwrap();
    assert_tensor(&y, &[2], &[3., 6.], 0.0);
    let g = y.backward_with(&t64(&[1., 10.], &[2])).unwrap();
    assert_close(&grad_of(&g, &x), &[0., 0., 1., 0., 0., 10.], 0.0);
    assert_tensor(&x.select(0, 0).unwrap(), &[3], &[1., 2., 3.], 0.0);
    assert_tensor(&x.select(-1, 0).unwrap(), &[2], &[1., 4.], 0.0);
}

#[test]
fn squeeze_unsqueeze_values_and_gradient() {
    let x = leaf(&[1., 2., 3., 4., 5., 6.], &[2, 1, 3]);
    let y = x.squeeze(1).unwrap();
    assert_tensor(&y, &[2, 3], &[1., 2., 3., 4., 5., 6.], 0.0);
    assert_eq!(y.unsqueeze(0).unwrap().shape(), &[1, 2, 3]);
    assert_eq!(y.unsqueeze(2).unwrap().shape(), &[2, 3, 1]);
    let z = y.unsqueeze(1).unwrap();
    assert_eq!(z.shape(), &[2, 1, 3]);
    let g = z.backward_with(&t64(&U6, &[2, 1, 3])).unwrap();
    assert_close(&grad_of(&g, &x), &U6, 0.0);
    // on a non-contiguous view: xᵀ (3x2) unsqueezed keeps the transposed order.
    let x = x23();
    let z = x.t().unwrap().unsqueeze(0).unwrap();
    assert_tensor(&z, &[1, 3, 2], &[1., 4., 2., 5., 3., 6.], 0.0);
}

#[test]
fn cat_values_and_gradient() {
    // dim 0: [[1,2]] ++ [[3,4],[5,6]] = [[1,2],[3,4],[5,6]].
    let a = leaf(&[1., 2.], &[1, 2]);
    let b = leaf(&[3., 4., 5., 6.], &[2, 2]);
    let y = Tensor::cat(&[&a, &b], 0).unwrap();
    assert_tensor(&y, &[3, 2], &[1., 2., 3., 4., 5., 6.], 0.0);
    let g = y.backward_with(&t64(&U6, &[3, 2])).unwrap();
    assert_close(&grad_of(&g, &a), &[10., 20.], 0.0);
    assert_close(&grad_of(&g, &b), &[30., 40., 50., 60.], 0.0);
    // dim 1: [[1],[2]] ++ [[3,4],[5,6]] = [[1,3,4],[2,5,6]]; upstream [[10,20,30],[40,50,60]]
    // splits into [10,40] for the column and [20,30,50,60] for the block.
    let c = leaf(&[1., 2.], &[2, 1]);
    let y = Tensor::cat(&[&c, &b], 1).unwrap();
    assert_tensor(&y, &[2, 3], &[1., 3., 4., 2., 5., 6.], 0.0);
    let g = y.backward_with(&t64(&U6, &[2, 3])).unwrap();
    assert_close(&grad_of(&g, &c), &[10., 40.], 0.0);
    assert_close(&grad_of(&g, &b), &[20., 30., 50., 60.], 0.0);
    // the same tensor twice: both slices' gradients add up.
    let y = Tensor::cat(&[&a, &a], -1).unwrap();
    assert_tensor(&y, &[1, 4], &[1., 2., 1., 2.], 0.0);
    let g = y.backward_with(&t64(&[1., 2., 30., 40.], &[1, 4])).unwrap();
    assert_close(&grad_of(&g, &a), &[31., 42.], 0.0);
}

#[test]
fn cat_and_stack_of_one_tensor_keep_its_values_and_shape() {
    let a = t64(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
    let c = Tensor::cat(&[&a], 1).unwrap();
    assert_eq!((c.shape(), c.to_vec()), (a.shape(), a.to_vec()));
    let s = Tensor::stack(&[&a], 1).unwrap();
    assert_eq!(s.shape(), &[2, 1, 3]);
    assert_eq!(s.to_vec(), a.to_vec());
    // the dim is still checked
    assert!(Tensor::cat(&[&a], 2).is_err());
}

#[test]
fn stack_values_and_gradient() {
    let a = leaf(&[1., 2.], &[2]);
    let b = leaf(&[3., 4.], &[2]);
    assert_tensor(
        &Tensor::stack(&[&a, &b], 0).unwrap(),
        &[2, 2],
        &[1., 2., 3., 4.],
        0.0,
    );
    // dim 1: [[1,3],[2,4]]; upstream [[10,20],[30,40]] gives a ← [10,30], b ← [20,40].
    let y = Tensor::stack(&[&a, &b], 1).unwrap();
    assert_tensor(&y, &[2, 2], &[1., 3., 2., 4.], 0.0);
    let g = y
        .backward_with(&t64(&[10., 20., 30., 40.], &[2, 2]))
        .unwrap();
    assert_close(&grad_of(&g, &a), &[10., 30.], 0.0);
    assert_close(&grad_of(&g, &b), &[20., 40.], 0.0);
}

#[test]
fn chunk_and_split_values_and_gradient() {
    let x = leaf(&[0., 1., 2., 3., 4.], &[5]);
    // chunk(2): size ceil(5/2) = 3 → [0,1,2], [3,4] (like torch.chunk).
    let c = x.chunk(2, 0).unwrap();
    assert_eq!(c.len(), 2);
    assert_tensor(&c[0], &[3], &[0., 1., 2.], 0.0);
    assert_tensor(&c[1], &[2], &[3., 4.], 0.0);
    // chunk(3) of 5: size 2 → [0,1],[2,3],[4]; chunk(4) of 5: size 2 → also 3 pieces.
    assert_eq!(x.chunk(3, 0).unwrap().len(), 3);
    assert_eq!(x.chunk(4, 0).unwrap().len(), 3);
    // split(2): [0,1], [2,3], [4]
    let s = x.split(2, 0).unwrap();
    assert_eq!(s.len(), 3);
    assert_tensor(&s[1], &[2], &[2., 3.], 0.0);
    assert_tensor(&s[2], &[1], &[4.], 0.0);
    // loss = sum(s0) + 10 sum(s2): gradient 1 on 0,1; 0 on 2,3; 10 on 4.
    let loss = s[0]
        .sum_all()
        .add(&s[2].sum_all().mul_scalar(10.0))
        .unwrap();
    let g = loss.backward().unwrap();
    assert_close(&grad_of(&g, &x), &[1., 1., 0., 0., 10.], 0.0);
    // along dim 1 of [2,3]: split(2) → [[1,2],[4,5]] and [[3],[6]].
    let s = x23().split(2, 1).unwrap();
    assert_tensor(&s[0], &[2, 2], &[1., 2., 4., 5.], 0.0);
    assert_tensor(&s[1], &[2, 1], &[3., 6.], 0.0);
}

#[test]
fn broadcast_to_values_and_gradient() {
    // [1,2,3] → [[1,2,3],[1,2,3]]: each element used twice, gradient of the sum = 2.
    let v = leaf(&[1., 2., 3.], &[3]);
    let y = v.broadcast_to(&[2, 3]).unwrap();
    assert_tensor(&y, &[2, 3], &[1., 2., 3., 1., 2., 3.], 0.0);
    let g = y.backward_with(&t64(&U6, &[2, 3])).unwrap();
    // upstream columns: 10+40, 20+50, 30+60.
    assert_close(&grad_of(&g, &v), &[50., 70., 90.], 0.0);
    // [[1],[2]] → [2,3]: rows sum the upstream: 10+20+30, 40+50+60.
    let c = leaf(&[1., 2.], &[2, 1]);
    let y = c.broadcast_to(&[2, 3]).unwrap();
    assert_tensor(&y, &[2, 3], &[1., 1., 1., 2., 2., 2.], 0.0);
    let g = y.backward_with(&t64(&U6, &[2, 3])).unwrap();
    assert_close(&grad_of(&g, &c), &[60., 150.], 0.0);
    // [3] → [2,2,3] (two new leading dims): each element used 4 times.
    let g = v
        .broadcast_to(&[2, 2, 3])
        .unwrap()
        .sum_all()
        .backward()
        .unwrap();
    assert_close(&grad_of(&g, &v), &[4., 4., 4.], 0.0);
}

#[test]
fn contiguous_values_and_gradient() {
    let x = x23();
    let xt = x.t().unwrap();
    assert!(!xt.is_contiguous());
    let y = xt.contiguous();
    assert!(y.is_contiguous());
    assert_tensor(&y, &[3, 2], &[1., 4., 2., 5., 3., 6.], 0.0);
    let g = y.backward_with(&t64(&U6, &[3, 2])).unwrap();
    assert_close(&grad_of(&g, &x), &[10., 30., 50., 20., 40., 60.], 0.0);
    // already contiguous: the same tensor comes back (no copy, no new node).
    assert_eq!(x.contiguous().id(), x.id());
}

#[test]
fn gradcheck_shape_table() {
    check_rows(vec![
        row(
            "reshape",
            |x| x[0].reshape(&[3, 2, 2]),
            vec![rnd(&[3, 4], 1)],
        ),
        row(
            "reshape of transposed",
            |x| x[0].t()?.reshape(&[12]),
            vec![rnd(&[3, 4], 2)],
        ),
        row(
            "permute",
            |x| x[0].permute(&[2, 0, 1]),
            vec![rnd(&[2, 3, 4], 3)],
        ),
        row(
            "transpose",
            |x| x[0].transpose(0, 2),
            vec![rnd(&[2, 3, 4], 4)],
        ),
        row("t", |x| x[0].t(), vec![rnd(&[3, 4], 5)]),
        row("narrow", |x| x[0].narrow(1, 1, 2), vec![rnd(&[3, 4], 6)]),
        row(
            "narrow of narrow",
            |x| x[0].narrow(0, 1, 2)?.narrow(1, 2, 2),
            vec![rnd(&[3, 4], 7)],
        ),
        row(
            "overlapping narrows plus a full use of the same input",
            |x| {
                let a = x[0].narrow(1, 0, 3)?;
                let b = x[0].narrow(1, 1, 3)?;
                a.mul(&b)?
                    .sum(&[1], false)?
                    .add(&x[0].tanh().sum(&[1], false)?)
            },
            vec![rnd(&[3, 4], 27)],
        ),
        row("select", |x| x[0].select(1, 2), vec![rnd(&[2, 3, 4], 8)]),
        row(
            "select every row of a matmul output (per-step slices of one projection)",
            |x| {
                let p = x[0].matmul(&x[1])?;
                let mut acc = p.select(0, 0)?.tanh();
                for t in 1..3 {
                    acc = acc.mul(&p.select(0, t)?)?.tanh();
                }
                Ok(acc)
            },
            vec![rnd(&[3, 2], 28), rnd(&[2, 4], 29)],
        ),
        row("squeeze", |x| x[0].squeeze(1), vec![rnd(&[3, 1, 2], 9)]),
        row("unsqueeze", |x| x[0].unsqueeze(1), vec![rnd(&[3, 2], 10)]),
        row(
            "unsqueeze of transposed",
            |x| x[0].t()?.unsqueeze(0),
            vec![rnd(&[3, 2], 11)],
        ),
        row(
            "cat dim 0",
            |x| Tensor::cat(&[&x[0], &x[1]], 0),
            vec![rnd(&[1, 3], 12), rnd(&[2, 3], 13)],
        ),
        row(
            "cat dim 1",
            |x| Tensor::cat(&[&x[0], &x[1]], 1),
            vec![rnd(&[2, 1], 14), rnd(&[2, 3], 15)],
        ),
        row(
            "cat and stack of a single tensor (no copy)",
            |x| Ok(Tensor::stack(&[&Tensor::cat(&[&x[0].t()?], 0)?], 1)?.tanh()),
            vec![rnd(&[2, 3], 18)],
        ),
        row(
            "cat of views, same input twice",
            |x| Tensor::cat(&[&x[0].t()?, &x[0].t()?, &x[1]], 0),
            vec![rnd(&[2, 2], 16), rnd(&[1, 2], 17)],
        ),
        row(
            "stack dim 0",
            |x| Tensor::stack(&[&x[0], &x[1]], 0),
            vec![rnd(&[2, 3], 18), rnd(&[2, 3], 19)],
        ),
        row(
            "stack dim 2",
            |x| Tensor::stack(&[&x[0], &x[1]], 2),
            vec![rnd(&[2, 3], 20), rnd(&[2, 3], 21)],
        ),
        row(
            "chunk (weighted pieces)",
            |x| {
                let c = x[0].chunk(3, 1)?;
                c[0].mul(&c[1])?.sum_all().add(&c[2].sum_all())
            },
            vec![rnd(&[2, 5], 22)],
        ),
        row(
            "split",
            |x| {
                let s = x[0].split(2, 0)?;
                Tensor::cat(&[&s[2], &s[0].mul_scalar(3.0)], 0)
            },
            vec![rnd(&[5, 2], 23)],
        ),
        row(
            "broadcast_to [3]→[2,3]",
            |x| x[0].broadcast_to(&[2, 3]),
            vec![rnd(&[3], 24)],
        ),
        row(
            "broadcast_to [2,1]→[4,2,3]",
            |x| x[0].broadcast_to(&[4, 2, 3]),
            vec![rnd(&[2, 1], 25)],
        ),
        row(
            "contiguous of transposed",
            |x| Ok(x[0].t()?.contiguous()),
            vec![rnd(&[3, 4], 26)],
        ),
    ]);
}

#[test]
fn slice_gradients_tiling_overlapping_and_mixed_with_whole_ones() {
    // x = [[1,2,3,4],[5,6,7,8]]. Column blocks 0..1, 1..3, 3..4 tile x exactly once (the tape
    // copies them into place); weights 1, 2, 3 per block make each block's gradient distinct.
    let x = leaf(&[1., 2., 3., 4., 5., 6., 7., 8.], &[2, 4]);
    let blocks = [(0, 1, 1.), (1, 2, 2.), (3, 1, 3.)];
    let loss = |x: &Tensor<f64>, blocks: &[(usize, usize, f64)]| {
        let mut l = Tensor::<f64>::zeros(&[]);
        for &(s, n, w) in blocks {
            let part = x.narrow(1, s, n).unwrap().mul_scalar(w).sum_all();
            l = l.add(&part).unwrap();
        }
        l
    };
    let g = loss(&x, &blocks).backward().unwrap();
    assert_close(&grad_of(&g, &x), &[1., 2., 2., 3., 1., 2., 2., 3.], 0.0);
    // overlapping (0..3 and 1..4) and a gap (only 1..3) are added into zeros
    let g = loss(&x, &[(0, 3, 1.), (1, 3, 10.)]).backward().unwrap();
    assert_close(
        &grad_of(&g, &x),
        &[1., 11., 11., 10., 1., 11., 11., 10.],
        0.0,
    );
    let g = loss(&x, &[(1, 2, 5.)]).backward().unwrap();
    assert_close(&grad_of(&g, &x), &[0., 5., 5., 0., 0., 5., 5., 0.], 0.0);
    // blocks along different dims (rows 0..1 and columns 2..4) do not tile
    let l = x
        .narrow(0, 0, 1)
        .unwrap()
        .sum_all()
        .add(&x.narrow(1, 2, 2).unwrap().mul_scalar(2.).sum_all())
        .unwrap();
    let g = l.backward().unwrap();
    assert_close(&grad_of(&g, &x), &[1., 1., 3., 3., 0., 0., 2., 2.], 0.0);
    // a whole gradient to a non-leaf that also gets slices, before and after them: y = 2x
    // feeds y.narrow (weights 1, 2, 3) and y itself (weight 100). Backward visits y's users
    // newest first, so the whole gradient comes first when its user is built last.
    for whole_first in [false, true] {
        let y = x.mul_scalar(2.);
        let (whole, sliced) = if whole_first {
            let sliced = loss(&y, &blocks);
            (y.mul_scalar(100.).sum_all(), sliced)
        } else {
            let whole = y.mul_scalar(100.).sum_all();
            (whole, loss(&y, &blocks))
        };
        let l = whole.add(&sliced).unwrap();
        let g = l.backward().unwrap();
        assert_close(
            &grad_of(&g, &x),
            &[202., 204., 204., 206., 202., 204., 204., 206.],
            0.0,
        );
    }
}

#[test]
fn into_vec_moves_a_sole_buffer_and_copies_a_shared_or_partial_one() {
    let data = vec![1., 2., 3., 4., 5., 6.];
    // the only handle: the buffer itself comes back
    let t = Tensor::<f64>::from_vec(data.clone(), &[2, 3]).unwrap();
    let at = t.storage().as_ptr();
    let v = t.into_vec();
    assert_eq!((v.as_ptr(), &v), (at, &data));
    // another handle to the tensor, or a view sharing its storage: a copy, the original intact
    let t = Tensor::<f64>::from_vec(data.clone(), &[2, 3]).unwrap();
    let twin = t.clone();
    let v = t.into_vec();
    assert_ne!(v.as_ptr(), twin.storage().as_ptr());
    assert_eq!((&v, twin.to_vec()), (&data, data.clone()));
    let row = twin.narrow(0, 1, 1).unwrap();
    drop(twin);
    assert_eq!(row.into_vec(), vec![4., 5., 6.]); // part of the storage: copied
                                                  // a transposed view alone on its storage still comes out in row-major order
    let tt = Tensor::<f64>::from_vec(data, &[2, 3]).unwrap().t().unwrap();
    assert_eq!(tt.into_vec(), vec![1., 4., 2., 5., 3., 6.]);
}
