//! End-to-end: a 2-8-1 tanh MLP in f64 learns XOR with plain full-batch gradient descent,
//! written here with `Parameter::update` (no optimizer crate).

mod common;

use rand::{rngs::StdRng, SeedableRng};
use retrograd_core::{Parameter, Result, Tensor};

struct Mlp {
    w1: Parameter<f64>,
    b1: Parameter<f64>,
    w2: Parameter<f64>,
    b2: Parameter<f64>,
}

impl Mlp {
    fn new(seed: u64) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        Ok(Mlp {
            w1: Parameter::new(Tensor::rand_uniform(&[2, 8], -1.0, 1.0, &mut rng)?),
            b1: Parameter::new(Tensor::rand_uniform(&[8], -1.0, 1.0, &mut rng)?),
            w2: Parameter::new(Tensor::rand_uniform(&[8, 1], -0.5, 0.5, &mut rng)?),
            b2: Parameter::new(Tensor::zeros(&[1])),
        })
    }

    fn params(&self) -> [&Parameter<f64>; 4] {
        [&self.w1, &self.b1, &self.w2, &self.b2]
    }

    /// `tanh(x W1 + b1) W2 + b2`, shape [N, 1].
    fn forward(&self, x: &Tensor<f64>) -> Result<Tensor<f64>> {
        let h = x.matmul(&self.w1.value())?.add(&self.b1.value())?.tanh();
        h.matmul(&self.w2.value())?.add(&self.b2.value())
    }
}

#[test]
fn mlp_learns_xor_with_gradient_descent() -> Result<()> {
    let x = Tensor::<f64>::from_vec(vec![0., 0., 0., 1., 1., 0., 1., 1.], &[4, 2])?;
    let y = Tensor::<f64>::from_vec(vec![0., 1., 1., 0.], &[4, 1])?;
    let net = Mlp::new(7)?;
    let lr = 0.2;
    let first = net.forward(&x)?.mse(&y)?.item()?;
    let mut loss_value = first;
    for _ in 0..2000 {
        let loss = net.forward(&x)?.mse(&y)?;
        loss_value = loss.item()?;
        let grads = loss.backward()?;
        drop(loss);
        for p in net.params() {
            let g = grads
                .get_id(p.id())
                .expect("every parameter gets a gradient")
                .to_vec();
            p.update(|w| {
                for (w, g) in w.iter_mut().zip(&g) {
                    *w -= lr * g;
                }
            })?;
        }
    }
    let pred = net.forward(&x)?.to_vec();
    let final_loss = net.forward(&x)?.mse(&y)?.item()?;
    assert!(
        first > 0.1,
        "the untrained net should not already solve XOR ({first})"
    );
    assert!(final_loss <= loss_value + 1e-12, "loss went up at the end");
    assert!(final_loss < 0.01, "final loss {final_loss} (start {first})");
    for (p, t) in pred.iter().zip([0.0, 1.0, 1.0, 0.0]) {
        assert_eq!(*p > 0.5, t > 0.5, "prediction {p} for target {t}: {pred:?}");
    }
    Ok(())
}
