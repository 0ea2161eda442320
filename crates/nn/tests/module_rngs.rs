//! Module-owned random streams: `visit_rngs` names, and `rng_states` / `load_rng_states`
//! putting a dropout stream back at a saved position.

use std::collections::BTreeMap;

use rand::{rngs::StdRng, SeedableRng};
use retrograd_core::Tensor;
use retrograd_nn::{Dropout, Linear, Lstm, Module, RnnConfig};

#[test]
fn dropout_masks_repeat_after_restoring_the_stream() {
    let d = Dropout::<f32>::new(0.5, &mut StdRng::seed_from_u64(4)).unwrap();
    let x = Tensor::<f32>::ones(&[64]);
    d.forward(&x).unwrap();
    let saved = d.rng_states();
    assert_eq!(saved.keys().collect::<Vec<_>>(), ["rng"]);
    let next = d.forward(&x).unwrap().to_vec();
    assert_ne!(d.forward(&x).unwrap().to_vec(), next, "masks advance");
    d.load_rng_states(&saved).unwrap();
    assert_eq!(d.forward(&x).unwrap().to_vec(), next);
}

#[test]
fn lstm_inter_layer_dropout_stream_is_restored() {
    let cfg = RnnConfig::new(3, 4).num_layers(2).dropout(0.4);
    let lstm = Lstm::<f32>::new(cfg, &mut StdRng::seed_from_u64(5)).unwrap();
    let x = Tensor::<f32>::ones(&[6, 2, 3]);
    let saved = lstm.rng_states();
    assert_eq!(saved.keys().collect::<Vec<_>>(), ["rng"]);
    let first = lstm.forward(&x, None).unwrap().0.to_vec();
    assert_ne!(lstm.forward(&x, None).unwrap().0.to_vec(), first);
    lstm.load_rng_states(&saved).unwrap();
    assert_eq!(lstm.forward(&x, None).unwrap().0.to_vec(), first);
}

#[test]
fn streamless_modules_have_none_and_names_must_match() {
    let lin = Linear::<f32>::new(2, 2, true, &mut StdRng::seed_from_u64(0)).unwrap();
    assert!(lin.rng_states().is_empty());
    lin.load_rng_states(&BTreeMap::new()).unwrap();
    let d = Dropout::<f32>::new(0.1, &mut StdRng::seed_from_u64(0)).unwrap();
    let err = lin
        .load_rng_states(&d.rng_states())
        .unwrap_err()
        .to_string();
    assert!(err.contains("unexpected random stream 'rng'"), "{err}");
}
