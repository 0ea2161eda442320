//! Vocabulary files and corpora from arbitrary bytes.
//!
//! * The bytes as a vocabulary file: `CharVocab::from_json` / `WordVocab::from_json` return
//!   `Err` or a vocabulary that survives `to_json` → `from_json` unchanged.
//! * The bytes as a corpus: a character vocabulary built from the text encodes it and decodes
//!   it back exactly; the word tokenizer's tokens round-trip through a word vocabulary (also a
//!   size-limited one, where unknown words map to `<unk>`); the ids feed the BPTT batcher with
//!   fuzzed batch / seq / time index and the train/validation split. Nothing panics.
#![no_main]

mod input;

use input::Input;
use libfuzzer_sys::fuzz_target;
use retrograd::text::{
    detokenize_words, tokenize_words, train_val_split, BpttBatcher, CharVocab, WordVocab, UNK,
};

fn vocab_files(text: &str) {
    if let Ok(v) = CharVocab::from_json(text) {
        assert_eq!(CharVocab::from_json(&v.to_json()).as_ref(), Ok(&v));
    }
    if let Ok(v) = WordVocab::from_json(text) {
        assert_eq!(WordVocab::from_json(&v.to_json()).as_ref(), Ok(&v));
    }
}

fn corpus(text: &str, inp: &mut Input) {
    match CharVocab::build(text) {
        Ok(v) => {
            let ids = v
                .encode(text)
                .expect("every character of the text is in its vocabulary");
            assert_eq!(v.decode(&ids).as_deref(), Ok(text));
            assert!(v.decode(&[v.len()]).is_err());
            batches(ids, inp);
        }
        Err(_) => assert!(text.is_empty()),
    }
    let tokens = tokenize_words(text);
    let _ = detokenize_words(&tokens);
    let words = WordVocab::build(&tokens);
    let ids = words
        .encode(&tokens)
        .expect("every token is in its vocabulary");
    assert_eq!(
        words.decode(&ids).ok(),
        Some(tokens.iter().map(String::as_str).collect())
    );
    if let Ok(small) = WordVocab::build_limited(&tokens, inp.below(8)) {
        let ids = small
            .encode(&tokens)
            .expect("a limited vocabulary has <unk>");
        for (id, tok) in ids.iter().zip(&tokens) {
            let w = small
                .word(*id)
                .expect("encode returns ids of the vocabulary");
            assert!(w == tok || w == UNK, "{tok:?} encoded as {w:?}");
        }
    }
    let _ = train_val_split(&ids, inp.param());
}

fn batches(ids: Vec<usize>, inp: &mut Input) {
    let (batch, seq) = match inp.below(4) {
        0 => (usize::MAX, inp.below(4)),
        1 => (inp.below(4), usize::MAX / 2 + 2),
        _ => (inp.below(5), inp.below(5)),
    };
    let Ok(mut b) = BpttBatcher::new(ids.clone(), batch, seq) else {
        return;
    };
    if inp.bool() {
        b.set_time_idx(usize::MAX - inp.below(8));
    }
    for _ in 0..inp.below(4) {
        let w = b.next_batch();
        assert_eq!(w.inputs.len(), batch * seq);
        for (x, y) in w.inputs.iter().zip(&w.targets) {
            assert!(ids.contains(x) && ids.contains(y));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes steer the choices, the rest is the text.
    let (control, text) = data.split_at(data.len().min(8));
    let text = String::from_utf8_lossy(text);
    vocab_files(&text);
    corpus(&text, &mut Input::new(control));
});
