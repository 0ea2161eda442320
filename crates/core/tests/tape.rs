//! The tape: long chains (no stack overflow in backward or drop), repeated backward, GradStore
//! merging, no_grad, detach, leaves-only stores, backward errors, and graph memory being freed.
//!
//! Graph liveness is observed through the public API: a custom `Tag` op (identity) counts how
//! many of its nodes were created and dropped. A node is dropped exactly when the graph
//! holding it is freed.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use retrograd_core::{no_grad, Error, InputGrads, Layout, Op, Parameter, Result, Tensor};

/// Counts of `Tag` nodes made and dropped.
#[derive(Default, Clone)]
struct Counter {
    made: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
}

impl Counter {
    fn made(&self) -> usize {
        self.made.load(Ordering::SeqCst)
    }
    fn live(&self) -> usize {
        self.made() - self.dropped.load(Ordering::SeqCst)
    }
}

/// Identity op that reports its own drop.
struct Tag {
    dropped: Arc<AtomicUsize>,
}

impl Drop for Tag {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

impl Op<f64> for Tag {
    fn name(&self) -> &'static str {
        "tag"
    }
    fn backward(&self, _: &[Tensor<f64>], g: &Tensor<f64>) -> Result<InputGrads<f64>> {
        Ok(std::iter::once(Some(g.clone())).collect())
    }
}

fn tag(x: &Tensor<f64>, c: &Counter) -> Tensor<f64> {
    Tensor::from_op(
        Arc::new(x.to_vec().into()),
        Layout::contiguous(x.shape()),
        &[x],
        || {
            c.made.fetch_add(1, Ordering::SeqCst);
            Tag {
                dropped: c.dropped.clone(),
            }
        },
    )
}

/// Runs `f` on a thread with a small stack (256 KiB), so that recursion over a long graph
/// would overflow while a loop does not.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("the thread must not overflow its stack or panic")
}

#[test]
fn ten_thousand_step_chain_backpropagates() {
    // h_{n+1} = tanh(0.5 h_n + b), 10,000 steps (30,000 nodes), with a bias leaf b used at
    // every step. Forward-mode in plain f64 gives the oracle:
    //   dh_{n+1}/db = (1 - h_{n+1}²)(0.5 dh_n/db + 1),
    //   dh_{n+1}/dx = (1 - h_{n+1}²) 0.5 dh_n/dx   (underflows to 0: 0.48^10000).
    let (gb, db, gx, dx) = on_small_stack(|| {
        let x = leaf(&[0.3], &[1]);
        let b = leaf(&[0.1], &[1]);
        let mut h = x.clone();
        let (mut v, mut db, mut dx) = (0.3f64, 0.0f64, 1.0f64);
        for _ in 0..10_000 {
            h = h.affine(0.5, 0.0).add(&b).unwrap().tanh();
            v = (0.5 * v + 0.1).tanh();
            db = (1.0 - v * v) * (0.5 * db + 1.0);
            dx *= (1.0 - v * v) * 0.5;
        }
        assert!((h.item().unwrap() - v).abs() < 1e-12);
        let g = h.sum_all().backward().unwrap();
        (grad_of(&g, &b)[0], db, grad_of(&g, &x)[0], dx)
    });
    assert!(db > 1.0, "the bias gradient sums many contributions: {db}");
    assert!((gb - db).abs() < 1e-12 * db, "{gb} vs {db}");
    assert_eq!((gx, dx), (0.0, 0.0));

    // A chain with a gradient that stays O(1): h_{n+1} = h_n + 0.001·tanh(h_n).
    let (g, v) = on_small_stack(|| {
        let x = leaf(&[0.5], &[1]);
        let mut h = x.clone();
        let (mut v, mut d) = (0.5f64, 1.0f64);
        for _ in 0..10_000 {
            h = h.add(&h.tanh().mul_scalar(0.001)).unwrap();
            let t = v.tanh();
            d *= 1.0 + 0.001 * (1.0 - t * t);
            v += 0.001 * t;
        }
        let g = h.sum_all().backward().unwrap();
        (grad_of(&g, &x)[0], d)
    });
    assert!((g - v).abs() < 1e-9 * v, "{g} vs {v}");
}

#[test]
fn hundred_thousand_op_chain_drops_without_overflow() {
    let c = Counter::default();
    let c2 = c.clone();
    on_small_stack(move || {
        let x = leaf(&[1.0], &[1]);
        let mut h = x.clone();
        for _ in 0..50_000 {
            h = tag(&h.affine(1.0, 0.0), &c2);
        }
        assert_eq!(c2.live(), 50_000);
        drop(h); // 100,000 nodes freed in a loop, not by recursion
        assert_eq!(c2.live(), 0);
    });
    assert_eq!(c.made(), 50_000);
}

#[test]
fn backward_twice_gives_identical_gradients() {
    let x = rnd(&[3, 4], 1).requires_grad();
    let w = rnd(&[4, 2], 2).requires_grad();
    let loss = x
        .matmul(&w)
        .unwrap()
        .tanh()
        .mul(&x.sum(&[1], true).unwrap())
        .unwrap()
        .mean_all();
    let g1 = loss.backward().unwrap();
    let g2 = loss.backward().unwrap();
    assert_eq!(grad_of(&g1, &x), grad_of(&g2, &x));
    assert_eq!(grad_of(&g1, &w), grad_of(&g2, &w));
    assert_eq!(g1.len(), 2);
}

#[test]
fn grad_store_merge_accumulates() {
    // loss1 = Σ 3a, loss2 = Σ a·b: d/da = 3 + b, d/db = a (only from loss2).
    let a = leaf(&[1., 2.], &[2]);
    let b = leaf(&[5., 7.], &[2]);
    let mut g = a.mul_scalar(3.0).sum_all().backward().unwrap();
    assert!(g.get(&b).is_none());
    let g2 = a.mul(&b).unwrap().sum_all().backward().unwrap();
    g.merge(&g2).unwrap();
    assert_eq!(grad_of(&g, &a), vec![8., 10.]);
    assert_eq!(grad_of(&g, &b), vec![1., 2.]);
    // merging again adds again; g2 itself is untouched.
    g.merge(&g2).unwrap();
    assert_eq!(grad_of(&g, &a), vec![13., 17.]);
    assert_eq!(grad_of(&g2, &a), vec![5., 7.]);
    // accumulate with a mismatched shape is an error naming both shapes, and the stored
    // gradient survives it; a broadcastable shape ([1] into [2]) is a mismatch too.
    let e = g.accumulate(a.id(), Tensor::zeros(&[3])).unwrap_err();
    assert!(e.to_string().contains("[3] vs stored gradient [2]"), "{e}");
    assert!(g.accumulate(a.id(), t64(&[1.], &[1])).is_err());
    assert_eq!(grad_of(&g, &a), vec![13., 17.]);
    // remove / insert
    let ga = g.remove(a.id()).unwrap();
    assert!(g.get(&a).is_none());
    g.insert(a.id(), ga);
    assert_eq!(g.len(), 2);
}

#[test]
fn no_grad_records_nothing() {
    let c = Counter::default();
    let x = leaf(&[1., 2.], &[2]);
    let y = {
        let _g = no_grad();
        assert!(!retrograd_core::is_grad_enabled());
        let y = tag(&x.exp(), &c).matmul(&t64(&[1., 1.], &[2, 1]).t().unwrap());
        assert!(y.is_err()); // shape error still reported under no_grad
        {
            let _inner = no_grad();
        }
        // dropping a nested guard keeps grad mode off
        assert!(!retrograd_core::is_grad_enabled());
        tag(&x.mul(&x).unwrap(), &c)
    };
    assert!(retrograd_core::is_grad_enabled());
    assert_eq!(c.made(), 0, "no node may be created under no_grad");
    assert!(!y.tracks_grad());
    assert_eq!(y.op_name(), None);
    assert!(matches!(y.sum_all().backward(), Err(Error::Backward(_))));
    // recording is back on after the guard
    let z = tag(&x, &c);
    assert!(z.tracks_grad());
    assert_eq!(c.made(), 1);
}

#[test]
fn detach_cuts_gradient_flow() {
    // z = detach(2x)·x at x = 3: dz/dx = 2x = 6 (12 if the detached factor were differentiated).
    let x = leaf(&[3.], &[1]);
    let y = x.mul_scalar(2.0);
    let d = y.detach();
    assert!(!d.tracks_grad());
    assert_eq!(d.to_vec(), vec![6.0]);
    let z = d.mul(&x).unwrap();
    let g = z.sum_all().backward().unwrap();
    assert_eq!(grad_of(&g, &x), vec![6.0]);
    // a computation entirely on the detached value does not track at all
    assert!(matches!(
        d.exp().sum_all().backward(),
        Err(Error::Backward(_))
    ));
}

#[test]
fn grad_store_holds_only_leaves() {
    let a = leaf(&[0.1, 0.2], &[2]);
    let b = leaf(&[0.3, 0.4], &[2]);
    let h = a.mul(&b).unwrap().tanh();
    let k = h.add(&a).unwrap();
    let g = k.sum_all().backward().unwrap();
    assert_eq!(g.len(), 2);
    assert!(g.get(&h).is_none());
    assert!(g.get(&k).is_none());
    let mut ids: Vec<_> = g.iter().map(|(id, _)| *id).collect();
    ids.sort();
    let mut expected = vec![a.id(), b.id()];
    expected.sort();
    assert_eq!(ids, expected);
}

#[test]
fn backward_errors() {
    // not tracking
    let c = t64(&[1.], &[1]);
    match c.backward().err() {
        Some(Error::Backward(m)) => assert!(m.contains("does not track"), "{m}"),
        other => panic!("expected a backward error, got {other:?}"),
    }
    // non-scalar backward()
    let x = leaf(&[1., 2.], &[2]);
    match x.exp().backward().err() {
        Some(Error::Backward(m)) => assert!(m.contains("[2]"), "{m}"),
        other => panic!("expected a backward error, got {other:?}"),
    }
    // wrong-shaped upstream gradient
    let e = x
        .exp()
        .backward_with(&t64(&[1., 2., 3.], &[3]))
        .expect_err("a shape mismatch must be an error");
    assert!(
        e.to_string().contains("backward") && e.to_string().contains("[3]"),
        "{e}"
    );
}

#[test]
fn graph_is_freed_when_the_loss_is_dropped() {
    let c = Counter::default();
    let x = leaf(&[0.5, -0.5], &[2]);
    let mid = tag(&x.tanh(), &c);
    let loss = tag(&tag(&mid.exp(), &c).sum_all(), &c);
    assert_eq!(c.live(), 3);
    let g = loss.backward().unwrap();
    assert_eq!(c.live(), 3, "backward keeps the graph (it may be replayed)");
    drop(g);
    drop(loss);
    // `mid` is still held: its own node stays, the two downstream nodes are freed.
    assert_eq!(c.live(), 1);
    drop(mid);
    assert_eq!(c.live(), 0);
}

#[test]
fn truncated_bptt_with_detach_keeps_memory_flat() {
    // 30 chunks of 5 steps; hidden state carried between chunks.
    let run = |detach: bool| {
        let c = Counter::default();
        let w = Parameter::new(t64(&[0.9, 0.1, -0.2, 0.8], &[2, 2]));
        let mut h = t64(&[0.1, 0.2], &[1, 2]);
        let mut max_live = 0;
        for _ in 0..30 {
            if detach {
                h = h.detach();
            }
            for _ in 0..5 {
                h = tag(&h.matmul(&w.value()).unwrap().tanh(), &c);
            }
            let loss = h.sum_all();
            let g = loss.backward().unwrap();
            assert!(g.get_id(w.id()).is_some());
            max_live = max_live.max(c.live());
        }
        max_live
    };
    // with detach only the current chunk is alive; without it the whole history is.
    assert_eq!(run(true), 5);
    assert_eq!(run(false), 150);
}

#[test]
fn parameter_update_is_copy_on_write_only_while_a_graph_holds_it() {
    let p = Parameter::new(t64(&[1., 2., 3.], &[3]));
    let ptr = || p.value().storage().as_ptr();
    let before = ptr();
    // graph alive: the update must copy so the graph keeps seeing the old values.
    let loss = p.value().mul(&p.value()).unwrap().sum_all();
    let g = loss.backward().unwrap();
    let grad = g.get_id(p.id()).unwrap().to_vec();
    assert_eq!(grad, vec![2., 4., 6.]);
    p.update(|w| w.iter_mut().for_each(|v| *v += 1.0)).unwrap();
    let after_copy = ptr();
    assert_ne!(
        after_copy, before,
        "update while a graph holds the values must copy"
    );
    assert_eq!(
        loss.backward().unwrap().get_id(p.id()).unwrap().to_vec(),
        grad
    );
    // graph dropped: nothing else holds the storage, so the update is in place.
    drop(loss);
    drop(g);
    p.update(|w| w.iter_mut().for_each(|v| *v *= 2.0)).unwrap();
    assert_eq!(
        ptr(),
        after_copy,
        "update with no graph alive must not copy"
    );
    assert_eq!(p.to_vec(), vec![4., 6., 8.]);
}

#[test]
fn parameter_used_twice_accumulates_under_its_id() {
    // loss = Σ (p·2 + p·3) → dp = 5, stored under the parameter's stable id.
    let p = Parameter::new(t64(&[1., 1.], &[2]));
    let loss = p
        .value()
        .mul_scalar(2.0)
        .add(&p.value().mul_scalar(3.0))
        .unwrap()
        .sum_all();
    let g = loss.backward().unwrap();
    assert_eq!(g.len(), 1);
    assert_eq!(g.get_id(p.id()).unwrap().to_vec(), vec![5., 5.]);
    assert_eq!(p.value().id(), p.id());
}

#[test]
fn a_gradient_only_picked_rows_reached_records_them_and_loses_them_when_mixed() {
    let table = leaf(&[1., 2., 3., 4., 5., 6., 7., 8.], &[4, 2]);
    // two lookups (rows 2, 0, 2 then 3): the rows, sorted, once each; the others zero
    let a = table.index_select(0, &[2, 0, 2]).unwrap();
    let b = table.index_select(0, &[3]).unwrap();
    let loss = a.sum_all().add(&b.mul_scalar(2.0).sum_all()).unwrap();
    let g = loss.backward().unwrap();
    assert_eq!(g.nonzero_rows(table.id()), Some(&[0, 2, 3][..]));
    assert_eq!(grad_of(&g, &table), vec![1., 1., 0., 0., 2., 2., 2., 2.]);
    // any other use of the table makes its gradient dense: no rows
    let mixed = a.sum_all().add(&table.exp().sum_all()).unwrap();
    assert_eq!(mixed.backward().unwrap().nonzero_rows(table.id()), None);
    // a product's deferred gradient too (the table as a matmul's right-hand side)
    let x = leaf(&[1., 0., 0., 1., 1., 1., 0., 0., 0., 0., 1., 1.], &[3, 4]);
    let through_matmul = a
        .sum_all()
        .add(&x.matmul(&table).unwrap().sum_all())
        .unwrap();
    assert_eq!(
        through_matmul.backward().unwrap().nonzero_rows(table.id()),
        None
    );
    // a leaf without a gradient in the store has none
    assert_eq!(g.nonzero_rows(x.id()), None);
}

#[test]
fn grad_store_row_sets_merge_as_unions_and_go_with_dense_changes() {
    let table = leaf(&[1., 2., 3., 4., 5., 6.], &[3, 2]);
    let rows = |ids: &[usize]| {
        table
            .index_select(0, ids)
            .unwrap()
            .sum_all()
            .backward()
            .unwrap()
    };
    let mut g = rows(&[2]);
    g.merge(&rows(&[0, 2])).unwrap();
    assert_eq!(g.nonzero_rows(table.id()), Some(&[0, 2][..]));
    assert_eq!(grad_of(&g, &table), vec![1., 1., 0., 0., 2., 2.]);
    // merging a dense gradient of the same leaf forgets them
    let mut dense = g.clone();
    dense
        .merge(&table.exp().sum_all().backward().unwrap())
        .unwrap();
    assert_eq!(dense.nonzero_rows(table.id()), None);
    // so do accumulate and insert (their gradients are not known to be row-sparse), and remove
    let mut acc = g.clone();
    acc.accumulate(table.id(), Tensor::zeros(&[3, 2])).unwrap();
    assert_eq!(acc.nonzero_rows(table.id()), None);
    let mut ins = g.clone();
    ins.insert(table.id(), Tensor::zeros(&[3, 2]));
    assert_eq!(ins.nonzero_rows(table.id()), None);
    let mut rem = g.clone();
    rem.remove(table.id());
    assert_eq!(rem.nonzero_rows(table.id()), None);
    // merged into an empty store, a row set comes along
    let mut empty = retrograd_core::GradStore::new();
    empty.merge(&g).unwrap();
    assert_eq!(empty.nonzero_rows(table.id()), Some(&[0, 2][..]));
}

#[test]
fn grad_store_scale_multiplies_known_rows_or_everything() {
    let table = leaf(&[1., 2., 3., 4., 5., 6.], &[3, 2]);
    let w = leaf(&[1., -1.], &[2]);
    let loss = table
        .index_select(0, &[1, 1])
        .unwrap()
        .sum_all()
        .add(&w.mul_scalar(3.0).sum_all())
        .unwrap();
    let mut g = loss.backward().unwrap();
    assert_eq!(g.nonzero_rows(table.id()), Some(&[1][..]));
    // each id once, even when listed twice; an id without a gradient is skipped
    g.scale(
        &[table.id(), w.id(), table.id(), leaf(&[0.], &[1]).id()],
        0.5,
    );
    assert_eq!(grad_of(&g, &table), vec![0., 0., 1., 1., 0., 0.]);
    assert_eq!(grad_of(&g, &w), vec![1.5, 1.5]);
    assert_eq!(g.nonzero_rows(table.id()), Some(&[1][..]));
    // a non-finite factor reaches the zero rows too (0·∞ = NaN) and the rows are forgotten
    g.scale(&[table.id()], f64::INFINITY);
    let v = grad_of(&g, &table);
    assert!(v[0].is_nan() && v[2] == f64::INFINITY, "{v:?}");
    assert_eq!(g.nonzero_rows(table.id()), None);
}

#[test]
fn a_dropped_row_sparse_gradient_comes_back_all_zero_for_the_next_pass() {
    // a shape no other test allocates (the buffer cache is shared by the tests' threads)
    let table = Tensor::<f32>::ones(&[37, 61]).requires_grad();
    let grads = table
        .index_select(0, &[5, 9])
        .unwrap()
        .sum_all()
        .backward()
        .unwrap();
    let first = grads.get(&table).unwrap().storage().as_ptr();
    drop(grads);
    // the next gradient of the table starts from that buffer: rows 5 and 9 zeroed again
    let grads = table
        .index_select(0, &[1])
        .unwrap()
        .mul_scalar(3.0)
        .sum_all()
        .backward()
        .unwrap();
    let g = grads.get(&table).unwrap();
    assert_eq!(g.storage().as_ptr(), first, "the zeroed buffer was reused");
    let v = g.to_vec();
    for (i, x) in v.iter().enumerate() {
        assert_eq!(*x, if i / 61 == 1 { 3.0 } else { 0.0 }, "element {i}");
    }
    // a gradient still held elsewhere is left as it is when the store goes
    let kept = g.clone();
    drop(grads);
    assert_eq!(kept.to_vec()[61], 3.0);
}
