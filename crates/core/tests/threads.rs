//! Tensors, parameters and gradient stores cross threads: forward+backward on another thread
//! gives the same result as on this one, a shared graph can be replayed from several threads,
//! and grad mode is per thread.

mod common;

use std::thread;

use common::*;
use retrograd_core::{no_grad, Error, GradStore, Parameter, Tensor};

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn core_types_are_send_and_sync() {
    assert_send_sync::<Tensor<f32>>();
    assert_send_sync::<Tensor<f64>>();
    assert_send_sync::<Parameter<f32>>();
    assert_send_sync::<Parameter<f64>>();
    assert_send_sync::<GradStore<f32>>();
    assert_send_sync::<GradStore<f64>>();
    assert_send_sync::<Error>();
}

/// A small two-layer computation; returns (loss, d loss/dx, d loss/dw).
fn step(x: &Tensor<f64>, w: &Parameter<f64>) -> (f64, Vec<f64>, Vec<f64>) {
    let h = x.matmul(&w.value()).unwrap().tanh();
    let loss = h
        .log_softmax(1)
        .unwrap()
        .mul(&h)
        .unwrap()
        .sum(&[1], false)
        .unwrap()
        .mean_all();
    let g = loss.backward().unwrap();
    (
        loss.item().unwrap(),
        grad_of(&g, x),
        g.get_id(w.id()).unwrap().to_vec(),
    )
}

#[test]
fn forward_and_backward_on_another_thread_match() {
    let x = rnd(&[4, 3], 1).requires_grad();
    let w = Parameter::new(rnd(&[3, 5], 2));
    let here = step(&x, &w);
    let (x2, w2) = (x.clone(), w.clone());
    let there = thread::spawn(move || step(&x2, &w2)).join().unwrap();
    assert_eq!(here, there);
    assert!(here.1.iter().any(|v| *v != 0.0));
}

#[test]
fn one_graph_replayed_from_several_threads() {
    // The graph is built here and shared (Arc) with four threads that each run backward.
    let x = rnd(&[3, 4], 3).requires_grad();
    let loss = x.tanh().mul(&x).unwrap().sum_all();
    let expected = grad_of(&loss.backward().unwrap(), &x);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (loss, x) = (loss.clone(), x.clone());
            thread::spawn(move || grad_of(&loss.backward().unwrap(), &x))
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), expected);
    }
}

#[test]
fn grad_stores_and_parameter_updates_cross_threads() {
    let p = Parameter::new(t64(&[1., 2.], &[2]));
    // gradients computed on two threads, merged here: d(Σ k·p)/dp = k, so 2 + 3 = 5
    let stores: Vec<GradStore<f64>> = [2.0, 3.0]
        .into_iter()
        .map(|k| {
            let p = p.clone();
            thread::spawn(move || p.value().mul_scalar(k).sum_all().backward().unwrap())
        })
        .map(|h| h.join().unwrap())
        .collect();
    let mut total = GradStore::new();
    for s in &stores {
        total.merge(s).unwrap();
    }
    assert_eq!(total.get_id(p.id()).unwrap().to_vec(), vec![5., 5.]);
    // an update made on another thread is seen here (clones share the parameter)
    let p2 = p.clone();
    thread::spawn(move || p2.update(|w| w[1] = -7.0).unwrap())
        .join()
        .unwrap();
    assert_eq!(p.to_vec(), vec![1., -7.]);
}

#[test]
fn no_grad_is_per_thread() {
    let x = rnd(&[2], 4).requires_grad();
    let _off = no_grad();
    assert!(!x.exp().tracks_grad());
    let x2 = x.clone();
    let tracked_there = thread::spawn(move || x2.exp().tracks_grad())
        .join()
        .unwrap();
    assert!(
        tracked_there,
        "a no_grad guard on one thread must not affect another"
    );
}

#[test]
fn join_carries_grad_mode_and_anomaly_reports_to_the_other_thread() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let x = Tensor::<f64>::from_vec(vec![-1.0, 4.0], &[2])
        .unwrap()
        .requires_grad();
    // `a` sleeps so that the pool's other thread takes `b` (a worker waiting on a join
    // runs the other side itself when nobody has taken it)
    let slow_tanh = || {
        thread::sleep(std::time::Duration::from_millis(30));
        x.tanh()
    };
    let other_thread = |t: thread::ThreadId| assert_ne!(t, thread::current().id());
    pool.install(|| {
        // grad mode on: both sides record
        let (a, b) = retrograd_core::threads::join(slow_tanh, || x.exp());
        assert!(a.tracks_grad() && b.tracks_grad());
        // under no_grad on the caller, neither side records
        let off = no_grad();
        let me = thread::current().id();
        let (a, (b, _)) = retrograd_core::threads::join(slow_tanh, || {
            other_thread(me);
            (x.exp(), ())
        });
        assert!(!a.tracks_grad() && !b.tracks_grad());
        drop(off);
        // a NaN made on the spawned side is reported on the caller's thread
        let _on = retrograd_core::detect_anomaly(true);
        let (_, b) = retrograd_core::threads::join(|| x.tanh(), || x.sqrt());
        assert!(b.to_vec()[0].is_nan());
        let report = retrograd_core::forward_anomaly().expect("the sqrt of -1 is reported");
        assert!(report.contains("sqrt"), "{report}");
        // nested joins run (serially inside) without deadlock, results in order
        let ((p, q), r) =
            retrograd_core::threads::join(|| retrograd_core::threads::join(|| 1, || 2), || 3);
        assert_eq!((p, q, r), (1, 2, 3));
    });
}

#[test]
fn map_claimed_keeps_the_order_runs_each_item_once_and_shares_the_items() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let calls = AtomicUsize::new(0);
    let (squares, others) = pool.install(|| {
        let me = thread::current().id();
        let others = AtomicUsize::new(0);
        let squares = retrograd_core::threads::map_claimed((0..40u64).collect(), |i| {
            calls.fetch_add(1, Ordering::Relaxed);
            if i == 0 {
                // the caller takes the first item; while it sleeps the worker takes the rest
                thread::sleep(std::time::Duration::from_millis(30));
            }
            if thread::current().id() != me {
                others.fetch_add(1, Ordering::Relaxed);
            }
            i * i
        });
        (squares, others.into_inner())
    });
    assert_eq!(squares, (0..40u64).map(|i| i * i).collect::<Vec<_>>());
    assert_eq!(calls.into_inner(), 40);
    assert!(others > 0, "the pool's worker took no item");

    // one thread in the pool, or inside a join: everything on the caller, in order
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let on_caller = |pool: &rayon::ThreadPool, nested: bool| {
        pool.install(|| {
            let me = thread::current().id();
            let run = || {
                let ids = retrograd_core::threads::map_claimed(vec![3, 1, 2], |i| {
                    (i, thread::current().id())
                });
                ids.iter().all(|(_, t)| *t == thread::current().id())
                    && ids.iter().map(|(i, _)| *i).eq([3, 1, 2])
            };
            if nested {
                retrograd_core::threads::join(run, || ()).0
            } else {
                run() && thread::current().id() == me
            }
        })
    };
    assert!(on_caller(&one, false));
    assert!(on_caller(&pool, true));
}
