//! nn rows: every module constructor and forward (Linear, Embedding, Dropout, the losses, the
//! recurrent stacks and cells with their lengths / initial-state shapes), and state dicts.

use rand::{rngs::StdRng, SeedableRng};
use retrograd::nn::rnn::{
    CellConfig, Gru, GruCell, Lstm, LstmCell, LstmState, Nonlinearity, Rnn, RnnCell, RnnConfig,
};
use retrograd::nn::{CrossEntropyLoss, Dropout, Embedding, Linear, Module, MseLoss, StateDict};
use retrograd::Tensor;

use super::harness::{case, Case};

fn rng() -> StdRng {
    StdRng::seed_from_u64(11)
}

fn z(shape: &[usize]) -> Tensor<f32> {
    Tensor::zeros(shape)
}

fn lstm(cfg: RnnConfig) -> Lstm<f32> {
    Lstm::new(cfg, &mut rng()).unwrap()
}

pub fn layers() -> Vec<Case> {
    vec![
        case(
            "Linear::new with in_features 0",
            || Linear::<f32>::new(0, 3, true, &mut rng()),
            &["linear", "positive", "0"],
        ),
        case(
            "Linear::new with out_features 0",
            || Linear::<f32>::new(3, 0, false, &mut rng()),
            &["linear", "positive", "0"],
        ),
        case(
            "Linear::from_weights with a rank-1 weight",
            || Linear::from_weights(z(&[3]), None),
            &["linear", "[3]"],
        ),
        case(
            "Linear::from_weights with a bias of the wrong length",
            || Linear::from_weights(z(&[2, 3]), Some(z(&[3]))),
            &["linear", "bias [3]", "[2]"],
        ),
        case(
            "Linear::forward with 4 features for in_features 3",
            || Linear::<f32>::new(3, 2, true, &mut rng())?.forward(&z(&[5, 4])),
            &["linear", "[5, 4]", "in_features 3"],
        ),
        case(
            "Linear::forward of a 0-d tensor",
            || Linear::<f32>::new(3, 2, true, &mut rng())?.forward(&Tensor::scalar(1.0)),
            &["linear", "scalar"],
        ),
        case(
            "Embedding::new with 0 rows",
            || Embedding::<f32>::new(0, 4, &mut rng()),
            &["embedding", "positive"],
        ),
        case(
            "Embedding::from_weights with an empty dim",
            || Embedding::from_weights(z(&[5, 0])),
            &["embedding", "[5, 0]"],
        ),
        case(
            "Embedding::forward with token id 10 of 10",
            || Embedding::<f32>::new(10, 4, &mut rng())?.forward(&[1, 10], &[2]),
            &["embedding", "token id 10", "size 10"],
        ),
        case(
            "Embedding::forward_i64 with a negative id",
            || Embedding::<f32>::new(10, 4, &mut rng())?.forward_i64(&[-1], &[1]),
            &["embedding", "token id -1"],
        ),
        case(
            "Embedding::forward: 3 ids for shape [2, 2]",
            || Embedding::<f32>::new(10, 4, &mut rng())?.forward(&[1, 2, 3], &[2, 2]),
            &["embedding", "3 ids", "[2, 2]"],
        ),
        case(
            "Embedding::forward with a shape whose size overflows",
            || Embedding::<f32>::new(10, 4, &mut rng())?.forward(&[1, 2], &[usize::MAX, 2]),
            &["embedding", "2 ids"],
        ),
        case(
            "Dropout::new with p = 1",
            || Dropout::<f32>::new(1.0, &mut rng()),
            &["dropout", "[0, 1)", "1"],
        ),
        case(
            "Dropout::new with p = -0.1",
            || Dropout::<f32>::new(-0.1, &mut rng()),
            &["dropout", "-0.1"],
        ),
        case(
            "Dropout::new with p = NaN",
            || Dropout::<f32>::new(f64::NAN, &mut rng()),
            &["dropout", "NaN"],
        ),
        case(
            "CrossEntropyLoss of rank-1 logits",
            || CrossEntropyLoss::new().forward(&z(&[4]), &[0]),
            &["cross_entropy_loss", "[4]"],
        ),
        case(
            "CrossEntropyLoss (N, T, V) with N*T - 1 targets",
            || CrossEntropyLoss::new().forward(&z(&[2, 3, 5]), &[0; 5]),
            &["cross_entropy_loss", "[2, 3, 5]", "6 targets", "got 5"],
        ),
        case(
            "CrossEntropyLoss target 5 of 5 classes",
            || CrossEntropyLoss::new().forward(&z(&[2, 5]), &[0, 5]),
            &["cross_entropy", "index 5", "size 5"],
        ),
        case(
            "MseLoss of different shapes",
            || MseLoss::new().forward(&z(&[2, 3]), &z(&[2])),
            &["[2, 3]", "[2]"],
        ),
    ]
}

pub fn recurrent_constructors() -> Vec<Case> {
    vec![
        case(
            "Lstm with hidden_size 0",
            || Lstm::<f32>::new(RnnConfig::new(3, 0), &mut rng()),
            &["lstm", "hidden_size", "0"],
        ),
        case(
            "Gru with input_size 0",
            || Gru::<f32>::new(RnnConfig::new(0, 4), &mut rng()),
            &["gru", "input_size", "0"],
        ),
        case(
            "Rnn with 0 layers",
            || Rnn::<f32>::new(RnnConfig::new(3, 4).num_layers(0), &mut rng()),
            &["rnn", "num_layers"],
        ),
        case(
            "Lstm with dropout 1.0",
            || Lstm::<f32>::new(RnnConfig::new(3, 4).dropout(1.0), &mut rng()),
            &["lstm", "dropout", "[0, 1)"],
        ),
        case(
            "Gru with dropout -0.5",
            || Gru::<f32>::new(RnnConfig::new(3, 4).dropout(-0.5), &mut rng()),
            &["gru", "dropout", "-0.5"],
        ),
        case(
            "Gru with proj_size",
            || Gru::<f32>::new(RnnConfig::new(3, 4).proj_size(2), &mut rng()),
            &["gru", "proj_size 2"],
        ),
        case(
            "Lstm with proj_size >= hidden_size",
            || Lstm::<f32>::new(RnnConfig::new(3, 4).proj_size(4), &mut rng()),
            &["lstm", "proj_size 4", "hidden_size 4"],
        ),
        case(
            "Lstm with a relu nonlinearity",
            || {
                let cfg = RnnConfig::new(3, 4).nonlinearity(Nonlinearity::Relu);
                Lstm::<f32>::new(cfg, &mut rng())
            },
            &["lstm", "relu"],
        ),
        case(
            "RnnCell with hidden_size 0",
            || RnnCell::<f32>::new(CellConfig::new(3, 0), &mut rng()),
            &["rnn_cell", "hidden_size"],
        ),
        case(
            "LstmCell with input_size 0",
            || LstmCell::<f32>::new(CellConfig::new(0, 2), &mut rng()),
            &["lstm_cell", "input_size"],
        ),
        case(
            "GruCell with relu",
            || {
                let cfg = CellConfig::new(3, 2).nonlinearity(Nonlinearity::Relu);
                GruCell::<f32>::new(cfg, &mut rng())
            },
            &["gru_cell", "relu"],
        ),
    ]
}

pub fn recurrent_forward() -> Vec<Case> {
    let cfg = RnnConfig::new(3, 4);
    vec![
        case(
            "Lstm input of rank 4",
            move || lstm(cfg).forward(&z(&[2, 2, 2, 3]), None),
            &["lstm", "(L, N, H_in)", "[2, 2, 2, 3]"],
        ),
        case(
            "Lstm input with 5 features for input_size 3",
            move || lstm(cfg).forward(&z(&[4, 2, 5]), None),
            &["lstm", "5 features", "input_size 3"],
        ),
        case(
            "Gru input with sequence length 0",
            move || Gru::<f32>::new(cfg, &mut rng())?.forward(&z(&[0, 2, 3]), None),
            &["gru", "sequence length 0"],
        ),
        case(
            "Lstm h0 with the wrong batch size",
            move || {
                let s = LstmState::new(z(&[1, 3, 4]), z(&[1, 2, 4]));
                lstm(cfg).forward(&z(&[5, 2, 3]), Some(&s))
            },
            &["lstm", "h0", "[1, 3, 4]", "[1, 2, 4]"],
        ),
        case(
            "Lstm c0 with the wrong hidden size",
            move || {
                let s = LstmState::new(z(&[1, 2, 4]), z(&[1, 2, 5]));
                lstm(cfg).forward(&z(&[5, 2, 3]), Some(&s))
            },
            &["lstm", "c0", "[1, 2, 5]"],
        ),
        case(
            "bidirectional Gru h0 with layers*dirs 1 instead of 2",
            move || {
                let g = Gru::<f32>::new(cfg.bidirectional(true), &mut rng())?;
                g.forward(&z(&[5, 2, 3]), Some(&z(&[1, 2, 4])))
            },
            &["gru", "h0", "[1, 2, 4]", "[2, 2, 4]"],
        ),
        case(
            "batch_first Rnn h0 laid out batch-first",
            move || {
                let r = Rnn::<f32>::new(cfg.batch_first(true), &mut rng())?;
                r.forward(&z(&[2, 5, 3]), Some(&z(&[2, 1, 4])))
            },
            &["rnn", "h0", "[2, 1, 4]", "[1, 2, 4]"],
        ),
        case(
            "unbatched Rnn with a batched h0",
            move || Rnn::<f32>::new(cfg, &mut rng())?.forward(&z(&[5, 3]), Some(&z(&[1, 1, 4]))),
            &["rnn", "h0", "[1, 1, 4]", "[1, 4]"],
        ),
        case(
            "lengths with 3 entries for batch 2",
            move || lstm(cfg).forward_with_lengths(&z(&[5, 2, 3]), &[5, 4, 3], None),
            &["lstm", "lengths has 3 entries", "batch size 2"],
        ),
        case(
            "a length of 0",
            move || {
                let g = Gru::<f32>::new(cfg, &mut rng())?;
                g.forward_with_lengths(&z(&[5, 2, 3]), &[5, 0], None)
            },
            &["gru", "lengths[1] = 0"],
        ),
        case(
            "a length longer than the sequence",
            move || {
                let r = Rnn::<f32>::new(cfg, &mut rng())?;
                r.forward_with_lengths(&z(&[5, 2, 3]), &[6, 1], None)
            },
            &["rnn", "lengths[0] = 6", "1..=5"],
        ),
        case(
            "RnnCell input of rank 3",
            || {
                RnnCell::<f32>::new(CellConfig::new(3, 2), &mut rng())?
                    .forward(&z(&[1, 2, 3]), None)
            },
            &["rnn_cell", "[1, 2, 3]"],
        ),
        case(
            "GruCell input with 4 features for input_size 3",
            || GruCell::<f32>::new(CellConfig::new(3, 2), &mut rng())?.forward(&z(&[2, 4]), None),
            &["gru_cell", "4 features", "input_size 3"],
        ),
        case(
            "LstmCell c with the wrong shape",
            || {
                let cell = LstmCell::<f32>::new(CellConfig::new(3, 2), &mut rng())?;
                let s = LstmState::new(z(&[4, 2]), z(&[4, 3]));
                cell.forward(&z(&[4, 3]), Some(&s))
            },
            &["lstm_cell", "c has shape [4, 3]", "[4, 2]"],
        ),
        case(
            "unbatched GruCell with a batched h",
            || {
                GruCell::<f32>::new(CellConfig::new(3, 2), &mut rng())?
                    .forward(&z(&[3]), Some(&z(&[1, 2])))
            },
            &["gru_cell", "[1, 2]", "[2]"],
        ),
    ]
}

pub fn state_dicts() -> Vec<Case> {
    let cfg = RnnConfig::new(3, 4);
    vec![
        case(
            "load_state_dict (strict) missing a tensor",
            move || {
                let mut sd = lstm(cfg).state_dict();
                sd.remove("bias_hh_l0");
                lstm(cfg).load_state_dict(&sd, true)
            },
            &["load_state_dict", "missing tensor 'bias_hh_l0'"],
        ),
        case(
            "load_state_dict (strict) with an unexpected tensor",
            move || {
                let mut sd = lstm(cfg).state_dict();
                sd.insert("weight_ih_l1".into(), z(&[16, 4]));
                lstm(cfg).load_state_dict(&sd, true)
            },
            &["unexpected tensor 'weight_ih_l1'"],
        ),
        case(
            "load_state_dict (not strict) with a wrong shape",
            move || {
                let mut sd = StateDict::new();
                sd.insert("weight_hh_l0".to_string(), z(&[12, 4]));
                lstm(cfg).load_state_dict(&sd, false)
            },
            &["'weight_hh_l0'", "[12, 4]", "[16, 4]"],
        ),
        case(
            "Gru weights into an Lstm",
            move || {
                let g = Gru::<f32>::new(cfg, &mut rng())?;
                lstm(cfg).load_state_dict(&g.state_dict(), true)
            },
            &["'weight_ih_l0'", "[12, 3]", "[16, 3]"],
        ),
    ]
}
