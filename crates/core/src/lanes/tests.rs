//! Every kernel of [`f32_lanes`] against the scalar loop it replaces, bit for bit, over
//! lengths with and without a tail and over the inputs where the formulas switch branches.

use super::f32_lanes;
use crate::element::{tanh_f32, Element};
use crate::ops::addmm_act::Activation;

const ACTS: [Activation; 3] = [Activation::Tanh, Activation::Sigmoid, Activation::Relu];

/// Values across the range, the clamps and the specials, `n` of them.
fn inputs(n: usize, salt: u32) -> Vec<f32> {
    let specials = [
        0.0,
        -0.0,
        1e-30,
        -1e-30,
        9.0,
        -9.0,
        9.5,
        87.0,
        -87.0,
        88.0,
        88.8,
        -87.4,
        -88.8,
        100.0,
        -100.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MIN_POSITIVE,
    ];
    (0..n)
        .map(|i| {
            let k = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(salt);
            if k.is_multiple_of(7) {
                specials[(k as usize / 7) % specials.len()]
            } else {
                (k % 40_000) as f32 / 1000.0 - 20.0
            }
        })
        .collect()
}

fn scalar_act(act: Activation, v: f32) -> f32 {
    match act {
        Activation::Tanh => tanh_f32(v),
        Activation::Sigmoid => v.sigmoid_k(),
        Activation::Relu => {
            if v > 0.0 {
                v
            } else {
                0.0
            }
        }
    }
}

fn assert_bits(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g.to_bits(),
            w.to_bits(),
            "{what}: element {i}: {g} against {w}"
        );
    }
}

/// The lengths: empty, shorter than a vector, whole vectors, whole vectors and a tail.
const LENS: [usize; 6] = [0, 5, 16, 64, 250, 1037];

#[test]
fn every_kernel_gives_the_scalar_bits() {
    let Some(lanes) = f32_lanes() else {
        // no AVX-512 here: the scalar loops run, nothing to compare
        return;
    };
    for act in ACTS {
        for n in LENS {
            let (x, a, b) = (inputs(n, 1), inputs(n, 2), inputs(n, 3));
            let name = |k: &str| format!("{k} {act:?} n={n}");

            let mut y = x.clone();
            (lanes.added)(act, &mut y, &a);
            let want: Vec<f32> = x
                .iter()
                .zip(&a)
                .map(|(&x, &c)| scalar_act(act, x + c))
                .collect();
            assert_bits(&y, &want, &name("added"));

            let mut y = x.clone();
            (lanes.apply)(act, &mut y);
            let want: Vec<f32> = x.iter().map(|&x| scalar_act(act, x)).collect();
            assert_bits(&y, &want, &name("apply"));

            // written over whatever `out` held
            let mut out = vec![7.0; n];
            (lanes.act)(act, &mut out, &x);
            assert_bits(&out, &want, &name("act"));

            let mut out = vec![7.0; n];
            (lanes.mul_act)(act, &mut out, &x, &a);
            let want: Vec<f32> = x
                .iter()
                .zip(&a)
                .map(|(&x, &a)| a * scalar_act(act, x))
                .collect();
            assert_bits(&out, &want, &name("mul_act"));

            // outputs of the activation, as the gradients read them
            let y: Vec<f32> = x.iter().map(|&x| scalar_act(act, x)).collect();
            let mut out = vec![7.0; n];
            (lanes.grads)(act, &mut out, &a, &y);
            let want: Vec<f32> = a.iter().zip(&y).map(|(&g, &y)| act.grad(g, y)).collect();
            assert_bits(&out, &want, &name("grads"));

            let mut out = vec![7.0; n];
            (lanes.scaled_grads)(act, &mut out, &a, &b, &y);
            let want: Vec<f32> = (a.iter().zip(&b).zip(&y))
                .map(|((&g, &b), &y)| act.grad(g * b, y))
                .collect();
            assert_bits(&out, &want, &name("scaled_grads"));
        }
    }
}

#[test]
fn the_softmax_kernels_give_the_scalar_bits() {
    let Some(lanes) = f32_lanes() else {
        return;
    };
    for n in LENS {
        let x = inputs(n, 4);
        // a row maximum, a large shift, and no shift
        for m in [3.5f32, -90.0, 0.0] {
            let mut out = vec![7.0; n];
            (lanes.exp_shifted)(&mut out, &x, m);
            let want: Vec<f32> = x.iter().map(|&x| (x - m).exp_k()).collect();
            assert_bits(&out, &want, &format!("exp_shifted m={m} n={n}"));

            let (z, w) = (41.25f32, -0.0078125f32);
            let mut out = vec![7.0; n];
            (lanes.softmax_scaled)(&mut out, &x, m, z, w);
            let want: Vec<f32> = x.iter().map(|&x| w * ((x - m).exp_k() / z)).collect();
            assert_bits(&out, &want, &format!("softmax_scaled m={m} n={n}"));
        }
    }
}

#[test]
fn the_kernels_are_handed_out_exactly_where_the_cpu_has_avx512() {
    #[cfg(target_arch = "x86_64")]
    let has = pulp::x86::V4::try_new().is_some();
    #[cfg(not(target_arch = "x86_64"))]
    let has = false;
    assert_eq!(f32_lanes().is_some(), has);
    assert_eq!(<f32 as Element>::lanes().is_some(), has);
    assert!(<f64 as Element>::lanes().is_none());
}
