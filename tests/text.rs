//! Tests of `retrograd::text`: vocabularies, the truncated-BPTT batcher, split, perplexity and
//! sampling.

use std::panic::catch_unwind;

use rand::rngs::StdRng;
use rand::SeedableRng;
use retrograd::text::{
    detokenize_words, generate, perplexity, sample_logits, tokenize_words, train_val_split,
    BpttBatcher, CharVocab, LossMeter, SampleOptions, TokenPredictor, WordVocab, EOS, UNK,
};
use retrograd::{Result, Tensor};

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("retrograd-text-{}-{name}", std::process::id()))
}

#[test]
fn char_vocab_round_trip() -> Result<()> {
    let text = "First Citizen:\nBefore we proceed any further, hear me speak.\n";
    let v = CharVocab::build(text)?;
    let mut sorted: Vec<char> = text.chars().collect();
    sorted.sort();
    sorted.dedup();
    assert_eq!(v.chars(), sorted.as_slice());
    let ids = v.encode(text)?;
    assert_eq!(ids.len(), text.chars().count());
    assert_eq!(v.decode(&ids)?, text);
    // ids follow sorted order: '\n' is the smallest code point here
    assert_eq!(v.id('\n'), Some(0));

    let back = CharVocab::from_json(&v.to_json())?;
    assert_eq!(back, v);
    let path = temp_path("chars.json");
    v.save(&path)?;
    let loaded = CharVocab::load(&path)?;
    std::fs::remove_file(&path).ok();
    assert_eq!(loaded.encode(text)?, ids);
    Ok(())
}

#[test]
fn char_vocab_handles_non_ascii_and_quotes_in_json() -> Result<()> {
    let v = CharVocab::build("é\"\\ü\t日")?;
    assert_eq!(CharVocab::from_json(&v.to_json())?, v);
    assert_eq!(v.decode(&v.encode("日é")?)?, "日é");
    Ok(())
}

#[test]
fn word_vocab_round_trip_and_first_appearance_ids() -> Result<()> {
    let tokens = tokenize_words("you say goodbye and i say hello .\n");
    let v = WordVocab::build(&tokens);
    assert_eq!(
        v.words(),
        ["you", "say", "goodbye", "and", "i", "hello", ".", EOS]
    );
    let ids = v.encode(&tokens)?;
    assert_eq!(ids, [0, 1, 2, 3, 4, 1, 5, 6, 7]);
    assert_eq!(v.decode(&ids)?, tokens);
    let path = temp_path("words.json");
    v.save(&path)?;
    let loaded = WordVocab::load(&path)?;
    std::fs::remove_file(&path).ok();
    assert_eq!(loaded, v);
    // a char vocabulary file is not a word vocabulary
    let chars = CharVocab::build("abc")?.to_json();
    let err = WordVocab::from_json(&chars).unwrap_err().to_string();
    assert!(err.contains("char vocabulary"), "{err}");
    Ok(())
}

#[test]
fn unknown_tokens() -> Result<()> {
    let cv = CharVocab::build("hello")?;
    let err = cv.encode("help!").unwrap_err().to_string();
    assert!(err.contains("'p'") && err.contains("position 3"), "{err}");
    assert!(cv.decode(&[0, 9]).unwrap_err().to_string().contains("9"));

    // without <unk>: error naming the word
    let wv = WordVocab::build(&["the", "cat", "sat"]);
    let err = wv.encode(&["the", "dog"]).unwrap_err().to_string();
    assert!(
        err.contains("\"dog\"") && err.contains("position 1"),
        "{err}"
    );
    // with <unk> (PTB style): mapped to it
    let ptb = WordVocab::build(&tokenize_words("the <unk> sat on the mat\n"));
    let unk = ptb.id(UNK).unwrap();
    assert_eq!(ptb.encode(&["the", "dog", "sat"])?, [0, unk, 2]);
    Ok(())
}

#[test]
fn limited_word_vocab_keeps_frequent_words() -> Result<()> {
    let tokens = ["b", "a", "a", "c", "b", "a", "d", "c", "e"];
    let v = WordVocab::build_limited(&tokens, 4)?;
    // counts a:3, b:2, c:2 (b first), then <unk>
    assert_eq!(v.words(), ["a", "b", "c", UNK]);
    assert_eq!(v.encode(&["d", "e", "a"])?, [3, 3, 0]);
    // large enough: unchanged, no <unk> added
    assert_eq!(
        WordVocab::build_limited(&tokens, 10)?,
        WordVocab::build(&tokens)
    );
    Ok(())
}

#[test]
fn word_tokenizer_and_detokenizer() {
    let t = tokenize_words("KING RICHARD III:\nNow is the winter; (of) \"our\" discontent.\n\n");
    assert_eq!(
        t,
        [
            "KING",
            "RICHARD",
            "III",
            ":",
            EOS,
            "Now",
            "is",
            "the",
            "winter",
            ";",
            "(",
            "of",
            ")",
            "\"",
            "our",
            "\"",
            "discontent",
            ".",
            EOS,
            EOS
        ]
    );
    let ptb = "no it was n't black monday <eos> but while the new york stock exchange";
    assert_eq!(tokenize_words(ptb).join(" "), ptb);
    assert_eq!(
        detokenize_words(&tokenize_words("Well, sir: go!\nAy.")),
        "Well, sir: go!\nAy."
    );
}

/// Windows as (input, target) strings per stream.
fn windows(b: &mut BpttBatcher, v: &CharVocab, n: usize) -> Vec<Vec<(String, String)>> {
    (0..n)
        .map(|_| {
            let w = b.next_batch();
            (0..w.batch)
                .map(|i| {
                    (
                        v.decode(w.input_row(i)).unwrap(),
                        v.decode(w.target_row(i)).unwrap(),
                    )
                })
                .collect()
        })
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn batcher_matches_the_seed_training_loop() -> Result<()> {
    // 13 tokens: xs = a..l, ts = b..m, data_size 12, batch 3, jump 4, offsets 0, 4, 8.
    let text = "abcdefghijklm";
    let v = CharVocab::build(text)?;
    let mut b = BpttBatcher::new(v.encode(text)?, 3, 2)?;
    assert_eq!((b.data_size(), b.jump(), b.iters_per_epoch()), (12, 4, 2));
    assert_eq!(b.offsets(), [0, 4, 8]);
    let got = windows(&mut b, &v, 4);
    let expected = vec![
        pairs(&[("ab", "bc"), ("ef", "fg"), ("ij", "jk")]),
        pairs(&[("cd", "de"), ("gh", "hi"), ("kl", "lm")]),
        // time_idx 4, 5: stream 2 reads positions 12 % 12 = 0 and 1
        pairs(&[("ef", "fg"), ("ij", "jk"), ("ab", "bc")]),
        pairs(&[("gh", "hi"), ("kl", "lm"), ("cd", "de")]),
    ];
    assert_eq!(got, expected);
    assert_eq!(b.time_idx(), 8);
    Ok(())
}

#[test]
fn batcher_wraps_with_uneven_jump() -> Result<()> {
    // 11 tokens: data_size 10, batch 3, jump 3 (offsets 0, 3, 6; position 9 is only read by
    // stream 2 before it wraps), one window per epoch.
    let text = "abcdefghijk";
    let v = CharVocab::build(text)?;
    let mut b = BpttBatcher::new(v.encode(text)?, 3, 2)?;
    assert_eq!((b.jump(), b.iters_per_epoch()), (3, 1));
    let got = windows(&mut b, &v, 3);
    let expected = vec![
        pairs(&[("ab", "bc"), ("de", "ef"), ("gh", "hi")]),
        pairs(&[("cd", "de"), ("fg", "gh"), ("ij", "jk")]),
        pairs(&[("ef", "fg"), ("hi", "ij"), ("ab", "bc")]),
    ];
    assert_eq!(got, expected);

    // resume: setting the time index reproduces a window; reset starts over
    b.set_time_idx(2);
    assert_eq!(windows(&mut b, &v, 1)[0], expected[1]);
    b.reset();
    assert_eq!(windows(&mut b, &v, 1)[0], expected[0]);
    Ok(())
}

#[test]
fn batch_layouts_and_epoch_iteration() -> Result<()> {
    let mut b = BpttBatcher::new((0..25).collect(), 2, 3)?; // jump 12, 4 windows per epoch
    let first = b.next_batch();
    assert_eq!(first.inputs, [0, 1, 2, 12, 13, 14]);
    assert_eq!(first.inputs_time_major(), [0, 12, 1, 13, 2, 14]);
    assert_eq!(first.targets_time_major(), [1, 13, 2, 14, 3, 15]);
    b.reset();
    let epoch: Vec<_> = b.epoch().collect();
    assert_eq!(epoch.len(), 4);
    assert_eq!(epoch[0], first);
    assert_eq!(epoch[3].input_row(0), [9, 10, 11]);
    assert_eq!(b.time_idx(), 12);
    Ok(())
}

#[test]
fn split_keeps_order() -> Result<()> {
    let ids: Vec<usize> = (0..100).collect();
    let (train, val) = train_val_split(&ids, 0.1)?;
    assert_eq!(train.len(), 90);
    assert_eq!(val, &ids[90..]);
    let (train, val) = train_val_split(&ids, 0.255)?;
    assert_eq!((train.len(), val.len()), (75, 25));
    assert!(train_val_split(&ids, 0.0).is_err());
    assert!(train_val_split(&ids, 1.0).is_err());
    assert!(train_val_split(&ids, f64::NAN).is_err());
    assert!(train_val_split(&ids[..5], 0.1).is_err()); // empty validation part
    Ok(())
}

#[test]
fn perplexity_of_a_uniform_model_is_the_vocabulary_size() -> Result<()> {
    for v in [2usize, 10, 65] {
        let mut b = BpttBatcher::new((0..200).map(|i| (i * 7) % v).collect(), 4, 5)?;
        let meter = b.evaluate(|w| {
            let logits = Tensor::<f32>::zeros(&[w.num_tokens(), v]);
            let targets: Vec<i64> = w.targets.iter().map(|&t| t as i64).collect();
            Ok(f64::from(logits.cross_entropy(&targets)?.item()?))
        })?;
        assert_eq!(meter.tokens(), 4 * 5 * (199 / 20));
        let ppl = meter.perplexity().unwrap();
        assert!((ppl - v as f64).abs() < 1e-3 * v as f64, "V {v}: ppl {ppl}");
    }
    assert!((perplexity(0.0) - 1.0).abs() < 1e-12);
    let mut m = LossMeter::new();
    assert_eq!(m.mean(), None);
    m.add(1.0, 3)?;
    assert!(m.add(f64::INFINITY, 3).is_err());
    assert_eq!(m.tokens(), 3);
    Ok(())
}

const LOGITS: [f32; 6] = [0.5, 2.0, -1.0, 1.5, 0.0, 1.0];

fn draws(opts: SampleOptions, seed: u64, n: usize) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| sample_logits(&LOGITS, &opts, &mut rng).unwrap())
        .collect()
}

fn counts(d: &[usize]) -> Vec<usize> {
    let mut c = vec![0; LOGITS.len()];
    for &i in d {
        c[i] += 1;
    }
    c
}

#[test]
fn sampling_is_deterministic_with_a_seed() {
    let opts = SampleOptions::default();
    assert_eq!(draws(opts, 7, 300), draws(opts, 7, 300));
    assert_ne!(draws(opts, 7, 300), draws(opts, 8, 300));
}

#[test]
fn sampling_follows_the_softmax() {
    let n = 20_000;
    let c = counts(&draws(SampleOptions::default(), 3, n));
    let z: f64 = LOGITS.iter().map(|&l| f64::from(l).exp()).sum();
    for (i, &l) in LOGITS.iter().enumerate() {
        let p = f64::from(l).exp() / z;
        let freq = c[i] as f64 / n as f64;
        // 5 standard deviations of a binomial proportion
        let tol = 5.0 * (p * (1.0 - p) / n as f64).sqrt();
        assert!((freq - p).abs() < tol, "token {i}: freq {freq} vs p {p}");
    }
}

#[test]
fn top_k_restricts_choices() {
    let c = counts(&draws(
        SampleOptions {
            temperature: 1.0,
            top_k: Some(3),
        },
        1,
        3000,
    ));
    // the three largest logits are ids 1 (2.0), 3 (1.5), 5 (1.0)
    for (i, &n) in c.iter().enumerate() {
        if [1, 3, 5].contains(&i) {
            assert!(n > 0, "token {i} never drawn");
        } else {
            assert_eq!(n, 0, "token {i} outside the top 3 was drawn");
        }
    }
    let c = counts(&draws(
        SampleOptions {
            temperature: 1.0,
            top_k: Some(1),
        },
        1,
        200,
    ));
    assert_eq!(c[1], 200);
    // k larger than the vocabulary: everything possible
    let c = counts(&draws(
        SampleOptions {
            temperature: 1.0,
            top_k: Some(100),
        },
        1,
        5000,
    ));
    assert!(c.iter().all(|&n| n > 0));
}

#[test]
fn low_temperature_approaches_argmax() {
    let n = 2000;
    let share = |t: f64| {
        counts(&draws(
            SampleOptions {
                temperature: t,
                top_k: None,
            },
            5,
            n,
        ))[1] as f64
            / n as f64
    };
    let (s1, s03, s01, s001) = (share(1.0), share(0.3), share(0.1), share(0.01));
    assert!(s1 < 0.5, "T=1 argmax share {s1}");
    assert!(s1 < s03 && s03 < s01, "{s1} {s03} {s01}");
    assert!(s01 > 0.98, "T=0.1 argmax share {s01}");
    assert_eq!(s001, 1.0);
    assert_eq!(
        draws(
            SampleOptions {
                temperature: 0.0,
                top_k: None
            },
            5,
            50
        ),
        vec![1; 50]
    );
    // high temperature flattens towards uniform
    assert!(share(100.0) < 0.2);
}

/// A bigram table as a model: logits of the next token depend on the last token read.
struct Bigram {
    table: Vec<Vec<f32>>,
    reads: usize,
}

impl TokenPredictor for Bigram {
    fn reset(&mut self) {
        self.reads = 0;
    }
    fn next_logits(&mut self, token: usize) -> Result<Vec<f32>> {
        self.reads += 1;
        self.table
            .get(token)
            .cloned()
            .ok_or_else(|| retrograd::Error::invalid("bigram", format!("token {token}")))
    }
}

#[test]
fn generate_reads_prompt_and_is_seeded() -> Result<()> {
    let table = vec![
        vec![0.0, 1.0, 0.5],
        vec![1.0, 0.0, 2.0],
        vec![0.2, 0.3, 0.1],
    ];
    let mut m = Bigram { table, reads: 0 };
    let opts = SampleOptions::default();
    let a = generate(
        &mut m,
        &[0, 2, 1],
        40,
        &opts,
        &mut StdRng::seed_from_u64(11),
    )?;
    // prompt (3) + every generated token but the last
    assert_eq!(m.reads, 3 + 39);
    let b = generate(
        &mut m,
        &[0, 2, 1],
        40,
        &opts,
        &mut StdRng::seed_from_u64(11),
    )?;
    assert_eq!(a, b);
    assert_eq!(a.len(), 40);
    let greedy = SampleOptions {
        temperature: 0.0,
        top_k: None,
    };
    // after 1 the argmax is 2, after 2 it is 1: alternation
    assert_eq!(
        generate(&mut m, &[1], 4, &greedy, &mut StdRng::seed_from_u64(0))?,
        [2, 1, 2, 1]
    );
    // a model error comes back as an error
    assert!(generate(&mut m, &[7], 3, &opts, &mut StdRng::seed_from_u64(0)).is_err());
    Ok(())
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    type Check = Box<dyn Fn() -> bool + std::panic::RefUnwindSafe>;
    let checks: Vec<(&str, Check)> = vec![
        (
            "empty char vocab",
            Box::new(|| CharVocab::build("").is_err()),
        ),
        (
            "repeated chars",
            Box::new(|| CharVocab::from_chars(vec!['a', 'a']).is_err()),
        ),
        (
            "unknown char",
            Box::new(|| CharVocab::build("ab").unwrap().encode("abc").is_err()),
        ),
        (
            "decode oob",
            Box::new(|| CharVocab::build("ab").unwrap().decode(&[2]).is_err()),
        ),
        (
            "bad json",
            Box::new(|| CharVocab::from_json("{not json").is_err()),
        ),
        (
            "json w/o format",
            Box::new(|| CharVocab::from_json(r#"{"tokens":["a"]}"#).is_err()),
        ),
        (
            "multi-char token",
            Box::new(|| {
                CharVocab::from_json(
                    r#"{"format":"retrograd-vocab","kind":"char","tokens":["ab"]}"#,
                )
                .is_err()
            }),
        ),
        (
            "missing file",
            Box::new(|| CharVocab::load("/nonexistent/vocab.json").is_err()),
        ),
        (
            "word decode oob",
            Box::new(|| WordVocab::build(&["a"]).decode(&[5]).is_err()),
        ),
        (
            "limited 1",
            Box::new(|| WordVocab::build_limited(&["a", "b"], 1).is_err()),
        ),
        (
            "empty words",
            Box::new(|| WordVocab::from_words(vec![]).is_err()),
        ),
        (
            "short stream",
            Box::new(|| BpttBatcher::new((0..9).collect(), 3, 3).is_err()),
        ),
        (
            "exact window ok",
            Box::new(|| BpttBatcher::new((0..10).collect(), 3, 3).is_ok()),
        ),
        (
            "empty stream",
            Box::new(|| BpttBatcher::new(vec![], 1, 1).is_err()),
        ),
        (
            "zero batch",
            Box::new(|| BpttBatcher::new((0..10).collect(), 0, 3).is_err()),
        ),
        (
            "zero seq",
            Box::new(|| BpttBatcher::new((0..10).collect(), 2, 0).is_err()),
        ),
        (
            "overflowing window",
            Box::new(|| BpttBatcher::new((0..10).collect(), usize::MAX, 2).is_err()),
        ),
        (
            "split",
            Box::new(|| train_val_split(&[1, 2, 3], -0.5).is_err()),
        ),
        (
            "no logits",
            Box::new(|| {
                sample_logits(
                    &[],
                    &SampleOptions::default(),
                    &mut StdRng::seed_from_u64(0),
                )
                .is_err()
            }),
        ),
        (
            "nan logit",
            Box::new(|| {
                sample_logits(
                    &[0.0, f32::NAN],
                    &SampleOptions::default(),
                    &mut StdRng::seed_from_u64(0),
                )
                .is_err()
            }),
        ),
        (
            "negative temperature",
            Box::new(|| {
                let o = SampleOptions {
                    temperature: -1.0,
                    top_k: None,
                };
                sample_logits(&[0.0, 1.0], &o, &mut StdRng::seed_from_u64(0)).is_err()
            }),
        ),
        (
            "top_k 0",
            Box::new(|| {
                let o = SampleOptions {
                    temperature: 1.0,
                    top_k: Some(0),
                };
                sample_logits(&[0.0, 1.0], &o, &mut StdRng::seed_from_u64(0)).is_err()
            }),
        ),
        (
            "empty prompt",
            Box::new(|| {
                let mut m = Bigram {
                    table: vec![vec![0.0]],
                    reads: 0,
                };
                generate(
                    &mut m,
                    &[],
                    3,
                    &SampleOptions::default(),
                    &mut StdRng::seed_from_u64(0),
                )
                .is_err()
            }),
        ),
    ];
    for (name, check) in checks {
        match catch_unwind(&check) {
            Ok(true) => {}
            Ok(false) => panic!("{name}: expected an error, got Ok"),
            Err(_) => panic!("{name}: panicked instead of returning an error"),
        }
    }
}
