//! Safetensors state dicts from arbitrary bytes: `serialize::from_bytes` (strict dtype) and
//! `from_bytes_as` (converting) must return `Err` on anything malformed and never panic. What
//! parses must survive a round trip (`to_bytes` then `from_bytes` gives the same tensors and
//! metadata, bit for bit) and loading it into a model must be `Ok` or `Err`, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand::{rngs::StdRng, SeedableRng};
use retrograd::nn::rnn::{Lstm, RnnConfig};
use retrograd::nn::{serialize, Module, StateDict};

fn bits(sd: &StateDict<f32>) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    sd.iter()
        .map(|(k, t)| {
            let v = t.to_vec().iter().map(|x| x.to_bits()).collect();
            (k.clone(), t.shape().to_vec(), v)
        })
        .collect()
}

/// One shared model serves every input: loading only checks names and shapes, which a
/// successful load of earlier values does not change.
fn model() -> &'static Lstm<f32> {
    static MODEL: OnceLock<Lstm<f32>> = OnceLock::new();
    MODEL.get_or_init(|| {
        Lstm::new(RnnConfig::new(2, 3), &mut StdRng::seed_from_u64(0)).expect("valid config")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = serialize::from_bytes::<f64>(data);
    let _ = serialize::from_bytes_as::<f64>(data);
    let Ok((sd, meta)) = serialize::from_bytes_as::<f32>(data) else {
        return;
    };
    let again = serialize::to_bytes(&sd, Some(meta.clone())).expect("a parsed dict serializes");
    let (sd2, meta2) = serialize::from_bytes::<f32>(&again).expect("own output parses");
    assert_eq!(bits(&sd), bits(&sd2));
    assert_eq!(meta, meta2);
    for strict in [true, false] {
        let _ = model().load_state_dict(&sd, strict);
    }
});
