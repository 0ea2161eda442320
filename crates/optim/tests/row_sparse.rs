//! Gradients known to be zero outside some rows (an embedding table's, see
//! `GradStore::nonzero_rows`): clipping reads and scales only those rows and plain SGD updates
//! only those rows, with the same bits as over the whole gradient.

use rand::{rngs::StdRng, SeedableRng};
use retrograd_core::{GradStore, Parameter, Tensor};
use retrograd_optim::*;

/// A `[rows, cols]` table read through lookups and a dense weight, their gradients from one
/// loss: the table's is row-sparse (rows 3, 7, 7, 11 and 40 of 50).
fn setup(cols: usize, seed: u64) -> (Parameter<f32>, Parameter<f32>, GradStore<f32>) {
    let rng = &mut StdRng::seed_from_u64(seed);
    let table = Parameter::new(Tensor::<f32>::randn(&[50, cols], 0.0, 1.0, rng).unwrap());
    let w = Parameter::new(Tensor::<f32>::randn(&[cols, 3], 0.0, 1.0, rng).unwrap());
    let picked = table.value().index_select(0, &[7, 3, 40, 7, 11]).unwrap();
    let y = picked.matmul(&w.value()).unwrap();
    let grads = y.mul(&y).unwrap().sum_all().backward().unwrap();
    assert_eq!(grads.nonzero_rows(table.id()), Some(&[3, 7, 11, 40][..]));
    (table, w, grads)
}

/// The same gradients without the row sets (re-inserted, so not known to be sparse).
fn dense(grads: &GradStore<f32>, params: &[&Parameter<f32>]) -> GradStore<f32> {
    let mut d = grads.clone();
    for p in params {
        let g = d.get_id(p.id()).unwrap().clone();
        d.insert(p.id(), g);
        assert_eq!(d.nonzero_rows(p.id()), None);
    }
    d
}

fn bits(t: &Tensor<f32>) -> Vec<u32> {
    t.to_vec().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn clipping_a_row_sparse_gradient_gives_the_bits_of_the_whole() {
    // 16 columns (rows skipped; a multiple of 8 keeps the norm's lanes) and 5 (read whole)
    for cols in [16, 5] {
        for norm in [NormType::L2, NormType::Inf, NormType::P(1.5)] {
            let (table, w, mut sparse) = setup(cols, 3);
            let mut whole = dense(&sparse, &[&table, &w]);
            let a = clip_grad_norm(&mut sparse, [&table, &w], 0.1, norm, true).unwrap();
            let b = clip_grad_norm(&mut whole, [&table, &w], 0.1, norm, true).unwrap();
            assert_eq!(a.to_bits(), b.to_bits(), "{cols} columns, {norm} norm");
            assert!(a > 0.1, "the test should clip ({a})");
            for p in [&table, &w] {
                let (s, d) = (
                    sparse.get_id(p.id()).unwrap(),
                    whole.get_id(p.id()).unwrap(),
                );
                assert_eq!(bits(s), bits(d), "{cols} columns, {norm} norm");
            }
            // scaled rows are still the only nonzero ones
            assert_eq!(sparse.nonzero_rows(table.id()), Some(&[3, 7, 11, 40][..]));
        }
    }
}

#[test]
fn plain_sgd_updates_only_the_known_rows_with_the_bits_of_the_full_update() {
    for cfg in [
        SgdConfig::new(0.5),
        SgdConfig::new(0.5).momentum(0.9),
        SgdConfig::new(0.5).weight_decay(0.1),
    ] {
        let (table, w, sparse) = setup(16, 5);
        let whole = dense(&sparse, &[&table, &w]);
        let copy = |p: &Parameter<f32>| Parameter::new(p.value_detached());
        let (t2, w2) = (copy(&table), copy(&w));
        let named = |t: &Parameter<f32>, w: &Parameter<f32>| {
            vec![
                ("table".to_string(), t.clone()),
                ("w".to_string(), w.clone()),
            ]
        };
        let mut a = Sgd::new(named(&table, &w), cfg).unwrap();
        let mut b = Sgd::new(named(&t2, &w2), cfg).unwrap();
        // the second store is keyed by the first parameters' ids: move it over
        let mut moved = GradStore::new();
        moved.insert(t2.id(), whole.get_id(table.id()).unwrap().clone());
        moved.insert(w2.id(), whole.get_id(w.id()).unwrap().clone());
        for _ in 0..2 {
            a.step(&sparse).unwrap();
            b.step(&moved).unwrap();
        }
        let before = setup(16, 5).0.value();
        assert_eq!(bits(&table.value()), bits(&t2.value()), "{cfg:?}");
        assert_eq!(bits(&w.value()), bits(&w2.value()), "{cfg:?}");
        // rows without a gradient are unchanged by plain SGD and with momentum (its buffer is
        // zero there), changed by weight decay
        let row0 = |t: &Tensor<f32>| t.to_vec()[..16].to_vec();
        let unchanged = row0(&table.value()) == row0(&before);
        assert_eq!(unchanged, cfg.weight_decay == 0.0, "{cfg:?}");
        // and rows with one moved
        let row7 = |t: &Tensor<f32>| t.to_vec()[7 * 16..8 * 16].to_vec();
        assert_ne!(row7(&table.value()), row7(&before), "{cfg:?}");
    }
}
