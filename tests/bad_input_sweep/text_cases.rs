//! Text rows: vocabularies (build, encode, decode, JSON load), the BPTT batcher, the split,
//! sampling and generation, the RnnLm language model and its config.

use std::collections::BTreeMap;

use rand::{rngs::StdRng, SeedableRng};
use retrograd::text::{
    generate, sample_logits, train_val_split, Batch, BpttBatcher, CellType, CharVocab, LmConfig,
    LmState, LossMeter, RnnLm, SampleOptions, WordVocab,
};
use retrograd::Tensor;

use super::harness::{case, Case};

fn rng() -> StdRng {
    StdRng::seed_from_u64(5)
}

fn lm(cell: CellType) -> RnnLm<f32> {
    let cfg = LmConfig {
        cell,
        ..LmConfig::new(6, 4, 5)
    };
    RnnLm::new(cfg, &mut rng()).unwrap()
}

fn opts(temperature: f64, top_k: Option<usize>) -> SampleOptions {
    SampleOptions { temperature, top_k }
}

const VOCAB_JSON: &str = r#"{"format":"retrograd-vocab","kind":"char","tokens":["a","b"]}"#;

pub fn vocabularies() -> Vec<Case> {
    vec![
        case(
            "CharVocab::build of no text",
            || CharVocab::build(""),
            &["CharVocab::build", "empty"],
        ),
        case(
            "CharVocab::from_chars with a repeat",
            || CharVocab::from_chars(vec!['x', 'y', 'x']),
            &["CharVocab", "'x' appears twice"],
        ),
        case(
            "CharVocab::encode of an unknown character",
            || CharVocab::build("abc")?.encode("abz"),
            &["CharVocab::encode", "'z'", "position 2"],
        ),
        case(
            "CharVocab::decode of id 3 of 3",
            || CharVocab::build("abc")?.decode(&[0, 3]),
            &["CharVocab::decode", "index 3", "size 3"],
        ),
        case(
            "CharVocab::from_json of broken JSON",
            || CharVocab::from_json("{\"format\": "),
            &["char vocabulary", "not valid JSON"],
        ),
        case(
            "CharVocab::from_json of a word vocabulary",
            || CharVocab::from_json(&WordVocab::build(&["hi"]).to_json()),
            &["char vocabulary", "word vocabulary"],
        ),
        case(
            "CharVocab::from_json with a number token",
            || CharVocab::from_json(&VOCAB_JSON.replace("\"b\"", "7")),
            &["char vocabulary", "token 1 is not a string"],
        ),
        case(
            "CharVocab::from_json with a two-character token",
            || CharVocab::from_json(&VOCAB_JSON.replace("\"b\"", "\"bc\"")),
            &["char vocabulary", "\"bc\"", "single character"],
        ),
        case(
            "CharVocab::from_json with no tokens",
            || CharVocab::from_json(&VOCAB_JSON.replace("\"a\",\"b\"", "")),
            &["char vocabulary", "no characters"],
        ),
        case(
            "CharVocab::load of a missing file",
            || CharVocab::load("/nonexistent/vocab.json"),
            &["io", "/nonexistent/vocab.json"],
        ),
        case(
            "WordVocab::from_words with a repeat",
            || WordVocab::from_words(vec!["a".into(), "a".into()]),
            &["WordVocab", "\"a\" appears twice"],
        ),
        case(
            "WordVocab::build_limited to 1 word",
            || WordVocab::build_limited(&["a", "b"], 1),
            &["build_limited", "max_size", "1"],
        ),
        case(
            "WordVocab::encode of an unknown word without <unk>",
            || WordVocab::build(&["a", "b"]).encode(&["a", "zebra"]),
            &["WordVocab::encode", "\"zebra\"", "position 1"],
        ),
        case(
            "WordVocab::decode of id 9",
            || WordVocab::build(&["a"]).decode(&[9]).map(|w| w.len()),
            &["WordVocab::decode", "index 9", "size 1"],
        ),
        case(
            "WordVocab::from_json of an empty list",
            || WordVocab::from_json(r#"{"format":"retrograd-vocab","kind":"word","tokens":[]}"#),
            &["word vocabulary", "no words"],
        ),
    ]
}

pub fn batching_and_sampling() -> Vec<Case> {
    vec![
        case(
            "BpttBatcher batch 0",
            || BpttBatcher::new((0..10).collect(), 0, 2),
            &["BpttBatcher", "batch 0"],
        ),
        case(
            "BpttBatcher seq 0",
            || BpttBatcher::new((0..10).collect(), 2, 0),
            &["BpttBatcher", "seq 0"],
        ),
        case(
            "BpttBatcher stream shorter than a window",
            || BpttBatcher::new((0..6).collect(), 2, 3),
            &["BpttBatcher", "6 tokens", "at least 7"],
        ),
        case(
            "BpttBatcher batch x seq overflows",
            || BpttBatcher::new((0..10).collect(), usize::MAX, 2),
            &["BpttBatcher", "10 tokens"],
        ),
        case(
            "train_val_split fraction 1",
            || train_val_split(&[1, 2, 3], 1.0),
            &["train_val_split", "(0, 1)", "1"],
        ),
        case(
            "train_val_split leaving no validation tokens",
            || train_val_split(&[1, 2, 3], 0.2),
            &["train_val_split", "empty validation"],
        ),
        case(
            "sample_logits of nothing",
            || sample_logits(&[], &opts(1.0, None), &mut rng()),
            &["sample_logits", "no logits"],
        ),
        case(
            "sample_logits with an infinite logit",
            || sample_logits(&[0.0, f32::INFINITY], &opts(1.0, None), &mut rng()),
            &["sample_logits", "logit 1", "inf"],
        ),
        case(
            "sample_logits temperature NaN",
            || sample_logits(&[0.0, 1.0], &opts(f64::NAN, None), &mut rng()),
            &["sample_logits", "temperature", "NaN"],
        ),
        case(
            "sample_logits top_k 0",
            || sample_logits(&[0.0, 1.0], &opts(1.0, Some(0)), &mut rng()),
            &["sample_logits", "top_k"],
        ),
        case(
            "generate from an empty prompt",
            || {
                generate(
                    &mut lm(CellType::Gru).predictor(),
                    &[],
                    3,
                    &opts(1.0, None),
                    &mut rng(),
                )
            },
            &["generate", "prompt is empty"],
        ),
        case(
            "generate from a prompt token outside the vocabulary",
            || {
                generate(
                    &mut lm(CellType::Rnn).predictor(),
                    &[1, 6],
                    3,
                    &opts(1.0, None),
                    &mut rng(),
                )
            },
            &["embedding", "token id 6", "size 6"],
        ),
        case(
            "LossMeter::add of a NaN loss",
            || LossMeter::new().add(f64::NAN, 10),
            &["non-finite", "NaN"],
        ),
    ]
}

pub fn language_model() -> Vec<Case> {
    vec![
        case(
            "RnnLm with vocab_size 0",
            || RnnLm::<f32>::new(LmConfig::new(0, 4, 5), &mut rng()),
            &["embedding", "positive"],
        ),
        case(
            "RnnLm with hidden_size 0",
            || RnnLm::<f32>::new(LmConfig::new(6, 4, 0), &mut rng()),
            &["lstm", "hidden_size"],
        ),
        case(
            "RnnLm with dropout 1",
            || {
                RnnLm::<f32>::new(
                    LmConfig {
                        dropout: 1.0,
                        ..LmConfig::new(6, 4, 5)
                    },
                    &mut rng(),
                )
            },
            &["dropout", "[0, 1)"],
        ),
        case(
            "RnnLm::forward with 5 ids for seq 2 x batch 3",
            || lm(CellType::Lstm).forward(&[0; 5], 2, 3, None),
            &["embedding", "5 ids", "[2, 3]"],
        ),
        case(
            "RnnLm::forward with seq x batch overflowing",
            || lm(CellType::Lstm).forward(&[0; 2], usize::MAX, 2, None),
            &["embedding", "2 ids"],
        ),
        case(
            "RnnLm (LSTM) given a plain hidden state",
            || {
                let s = LmState::Hidden(Tensor::zeros(&[1, 1, 5]));
                lm(CellType::Lstm).forward(&[0], 1, 1, Some(&s))
            },
            &["RnnLm", "lstm"],
        ),
        case(
            "RnnLm (GRU) given a hidden state of the wrong batch",
            || {
                let s = LmState::Hidden(Tensor::zeros(&[1, 2, 5]));
                lm(CellType::Gru).forward(&[0], 1, 1, Some(&s))
            },
            &["gru", "h0", "[1, 2, 5]", "[1, 1, 5]"],
        ),
        case(
            "RnnLm::loss of a Batch whose rows do not fill batch x seq",
            || {
                let b = Batch {
                    inputs: vec![0; 3],
                    targets: vec![0; 3],
                    batch: 2,
                    seq: 2,
                };
                lm(CellType::Lstm).loss(&b, None)
            },
            &["RnnLm", "3 inputs", "batch 2", "seq 2"],
        ),
        case(
            "RnnLm::loss with a target outside the vocabulary",
            || {
                let b = Batch {
                    inputs: vec![0; 4],
                    targets: vec![1, 2, 3, 6],
                    batch: 2,
                    seq: 2,
                };
                lm(CellType::Lstm).loss(&b, None)
            },
            &["cross_entropy", "index 6", "size 6"],
        ),
        case(
            "LmConfig::from_metadata without the cell",
            || {
                let mut m: BTreeMap<String, String> = LmConfig::new(6, 4, 5).to_metadata();
                m.remove("lm.cell");
                LmConfig::from_metadata(&m)
            },
            &["model config", "lm.cell"],
        ),
        case(
            "LmConfig::from_metadata with hidden size 'big'",
            || {
                let mut m = LmConfig::new(6, 4, 5).to_metadata();
                m.insert("lm.hidden_size".into(), "big".into());
                LmConfig::from_metadata(&m)
            },
            &["model config", "lm.hidden_size", "big"],
        ),
        case(
            "CellType 'cnn'",
            || "cnn".parse::<CellType>(),
            &["cell type", "\"cnn\""],
        ),
    ]
}
