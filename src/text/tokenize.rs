//! Word tokenization: whitespace-separated words, punctuation split off, one `<eos>` per line.

/// The end-of-sentence token: [`tokenize_words`] emits it for every newline, as the PTB corpus
/// files are read in the classic training loop.
pub const EOS: &str = "<eos>";

/// The unknown-word token: [`WordVocab::encode`](super::WordVocab::encode) maps words outside
/// the vocabulary to it when the vocabulary has it.
pub const UNK: &str = "<unk>";

/// Punctuation that becomes a token of its own. Apostrophes and hyphens stay inside words
/// (`don't`, `well-a-day`), and `<` / `>` are not split so `<unk>` and `<eos>` survive.
const PUNCT: &[char] = &[
    '.', ',', ';', ':', '!', '?', '"', '(', ')', '[', ']', '{', '}',
];

fn is_punct(c: char) -> bool {
    PUNCT.contains(&c)
}

/// Splits text into word tokens: whitespace separates words, each punctuation mark in
/// `. , ; : ! ? " ( ) [ ] { }` is a token of its own, and every newline becomes [`EOS`].
/// Text already in PTB format (`<unk>`, no punctuation) comes out as its words plus `<eos>`.
///
/// ```
/// use retrograd::text::tokenize_words;
/// let t = tokenize_words("Stay, my lord!\nno <unk> here\n");
/// assert_eq!(t, ["Stay", ",", "my", "lord", "!", "<eos>", "no", "<unk>", "here", "<eos>"]);
/// ```
pub fn tokenize_words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push(EOS.to_string());
        }
        for chunk in line.split_whitespace() {
            let mut word = String::new();
            for c in chunk.chars() {
                if is_punct(c) {
                    if !word.is_empty() {
                        out.push(std::mem::take(&mut word));
                    }
                    out.push(c.to_string());
                } else {
                    word.push(c);
                }
            }
            if !word.is_empty() {
                out.push(word);
            }
        }
    }
    out
}

/// Joins word tokens back into readable text: [`EOS`] becomes a newline, punctuation that
/// usually closes a phrase (`. , ; : ! ?`) sticks to the word before it.
///
/// ```
/// use retrograd::text::{detokenize_words, tokenize_words};
/// let text = "Stay, my lord!\nGood night.";
/// assert_eq!(detokenize_words(&tokenize_words(text)), text);
/// ```
pub fn detokenize_words<S: AsRef<str>>(tokens: &[S]) -> String {
    let mut out = String::new();
    let mut line_start = true;
    for t in tokens {
        let t = t.as_ref();
        if t == EOS {
            out.push('\n');
            line_start = true;
            continue;
        }
        let closing = t.len() == 1 && matches!(t, "." | "," | ";" | ":" | "!" | "?");
        if !line_start && !closing {
            out.push(' ');
        }
        out.push_str(t);
        line_start = false;
    }
    out
}
