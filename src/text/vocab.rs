//! Character and word vocabularies: build, encode, decode, save and load (JSON).

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Value};

use super::tokenize::UNK;
use crate::{Error, Result};

const FORMAT: &str = "retrograd-vocab";

/// A character vocabulary: every distinct character of a text, sorted, with ids `0..len`.
///
/// Encoding a character the vocabulary does not hold is an error naming the character (a
/// character model has no unknown token).
///
/// ```
/// use retrograd::text::CharVocab;
/// let v = CharVocab::build("apple!")?;
/// assert_eq!(v.chars(), ['!', 'a', 'e', 'l', 'p']);
/// assert_eq!(v.encode("pple!")?, [4, 4, 3, 2, 0]);
/// assert_eq!(v.decode(&[1, 4, 4, 3, 2])?, "apple");
/// assert!(v.encode("pear").unwrap_err().to_string().contains("'r'"));
/// # Ok::<(), retrograd::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CharVocab {
    chars: Vec<char>,
    ids: HashMap<char, usize>,
}

impl CharVocab {
    /// Builds the vocabulary of `text`'s distinct characters, sorted by code point.
    /// Errors on empty text.
    pub fn build(text: &str) -> Result<Self> {
        if text.is_empty() {
            return Err(Error::invalid(
                "CharVocab::build",
                "the text is empty; a vocabulary needs at least one character",
            ));
        }
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Self::from_chars(chars)
    }

    /// A vocabulary with exactly these characters, in this order (id = position).
    /// Errors on an empty list or a repeated character.
    ///
    /// ```
    /// use retrograd::text::CharVocab;
    /// let v = CharVocab::from_chars(vec!['b', 'a'])?;
    /// assert_eq!(v.id('a'), Some(1));
    /// assert!(CharVocab::from_chars(vec!['a', 'a']).is_err());
    /// # Ok::<(), retrograd::Error>(())
    /// ```
    pub fn from_chars(chars: Vec<char>) -> Result<Self> {
        if chars.is_empty() {
            return Err(Error::invalid("CharVocab", "no characters given"));
        }
        let mut ids = HashMap::with_capacity(chars.len());
        for (i, &c) in chars.iter().enumerate() {
            if ids.insert(c, i).is_some() {
                return Err(Error::invalid(
                    "CharVocab",
                    format!("character {c:?} appears twice"),
                ));
            }
        }
        Ok(CharVocab { chars, ids })
    }

    /// Number of characters.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// Whether the vocabulary is empty (never true for a built one).
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// The characters, in id order.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// The id of `c`, if it is in the vocabulary.
    pub fn id(&self, c: char) -> Option<usize> {
        self.ids.get(&c).copied()
    }

    /// The character with id `id`, if any.
    pub fn char(&self, id: usize) -> Option<char> {
        self.chars.get(id).copied()
    }

    /// Encodes `text` to ids. Errors on the first character outside the vocabulary, naming
    /// it and its position.
    pub fn encode(&self, text: &str) -> Result<Vec<usize>> {
        text.chars()
            .enumerate()
            .map(|(pos, c)| {
                self.id(c).ok_or_else(|| {
                    Error::invalid(
                        "CharVocab::encode",
                        format!(
                            "character {c:?} (U+{:04X}) at position {pos} is not in the \
                             vocabulary of {} characters",
                            c as u32,
                            self.len()
                        ),
                    )
                })
            })
            .collect()
    }

    /// Decodes ids to text. Errors on an id `>= len()`.
    pub fn decode(&self, ids: &[usize]) -> Result<String> {
        ids.iter()
            .map(|&id| {
                self.char(id).ok_or(Error::Index {
                    op: "CharVocab::decode",
                    index: id as i64,
                    size: self.len(),
                })
            })
            .collect()
    }

    /// The vocabulary as JSON: `{"format": "retrograd-vocab", "kind": "char", "tokens": [..]}`.
    pub fn to_json(&self) -> String {
        let tokens: Vec<String> = self.chars.iter().map(|c| c.to_string()).collect();
        json!({"format": FORMAT, "kind": "char", "tokens": tokens}).to_string()
    }

    /// Reads a vocabulary written by [`CharVocab::to_json`].
    ///
    /// ```
    /// use retrograd::text::CharVocab;
    /// let v = CharVocab::build("to be or not")?;
    /// assert_eq!(CharVocab::from_json(&v.to_json())?, v);
    /// # Ok::<(), retrograd::Error>(())
    /// ```
    pub fn from_json(s: &str) -> Result<Self> {
        let tokens = parse_tokens(s, "char")?;
        let mut chars = Vec::with_capacity(tokens.len());
        for t in tokens {
            let mut it = t.chars();
            match (it.next(), it.next()) {
                (Some(c), None) => chars.push(c),
                _ => {
                    return Err(Error::Checkpoint(format!(
                        "char vocabulary: token {t:?} is not a single character"
                    )))
                }
            }
        }
        Self::from_chars(chars).map_err(|e| Error::Checkpoint(format!("char vocabulary: {e}")))
    }

    /// Writes the JSON form to `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        write_file(path.as_ref(), &self.to_json())
    }

    /// Reads a vocabulary saved by [`CharVocab::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_json(&read_file(path.as_ref())?)
    }
}

/// A word vocabulary with ids `0..len`. Words outside it encode to [`UNK`] (`<unk>`) when
/// the vocabulary holds that token, and are an error naming the word otherwise.
///
/// ```
/// use retrograd::text::WordVocab;
/// let v = WordVocab::build(&["you", "say", "goodbye", "and", "i", "say", "hello"]);
/// assert_eq!(v.len(), 6);
/// assert_eq!(v.encode(&["i", "say"])?, [4, 1]);
/// assert_eq!(v.decode(&[0, 2])?, ["you", "goodbye"]);
/// assert!(v.encode(&["what"]).is_err());
/// # Ok::<(), retrograd::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct WordVocab {
    words: Vec<String>,
    ids: HashMap<String, usize>,
}

impl WordVocab {
    /// Builds the vocabulary of all distinct tokens, ids in order of first appearance (as the
    /// PTB loader of the classic training loop assigns them).
    pub fn build<S: AsRef<str>>(tokens: &[S]) -> Self {
        let mut words = Vec::new();
        let mut ids = HashMap::new();
        for t in tokens {
            let t = t.as_ref();
            if !ids.contains_key(t) {
                ids.insert(t.to_string(), words.len());
                words.push(t.to_string());
            }
        }
        WordVocab { words, ids }
    }

    /// Builds a vocabulary of at most `max_size` tokens: the most frequent ones (ties in order
    /// of first appearance) plus [`UNK`] if any word had to be left out. Errors when
    /// `max_size < 2`.
    ///
    /// ```
    /// use retrograd::text::WordVocab;
    /// let v = WordVocab::build_limited(&["a", "b", "a", "c", "a", "b", "d"], 3)?;
    /// assert_eq!(v.words(), ["a", "b", "<unk>"]);
    /// assert_eq!(v.encode(&["c"])?, [2]);
    /// # Ok::<(), retrograd::Error>(())
    /// ```
    pub fn build_limited<S: AsRef<str>>(tokens: &[S], max_size: usize) -> Result<Self> {
        if max_size < 2 {
            return Err(Error::invalid(
                "WordVocab::build_limited",
                format!("max_size must be at least 2 (one word and <unk>), got {max_size}"),
            ));
        }
        let all = Self::build(tokens);
        if all.len() <= max_size {
            return Ok(all);
        }
        let mut counts = vec![0usize; all.len()];
        for t in tokens {
            counts[all.ids[t.as_ref()]] += 1;
        }
        let mut order: Vec<usize> = (0..all.len()).collect();
        // Stable sort keeps first-appearance order among equal counts.
        order.sort_by(|&a, &b| counts[b].cmp(&counts[a]));
        let mut kept: Vec<&str> = order
            .iter()
            .map(|&i| all.words[i].as_str())
            .filter(|w| *w != UNK)
            .take(max_size - 1)
            .collect();
        kept.push(UNK);
        Ok(Self::build(&kept))
    }

    /// A vocabulary with exactly these words, in this order. Errors on a repeated word or
    /// an empty list.
    pub fn from_words(words: Vec<String>) -> Result<Self> {
        if words.is_empty() {
            return Err(Error::invalid("WordVocab", "no words given"));
        }
        let mut ids = HashMap::with_capacity(words.len());
        for (i, w) in words.iter().enumerate() {
            if ids.insert(w.clone(), i).is_some() {
                return Err(Error::invalid(
                    "WordVocab",
                    format!("word {w:?} appears twice"),
                ));
            }
        }
        Ok(WordVocab { words, ids })
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether the vocabulary is empty.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The words, in id order.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// The id of `word`, if it is in the vocabulary.
    pub fn id(&self, word: &str) -> Option<usize> {
        self.ids.get(word).copied()
    }

    /// The word with id `id`, if any.
    pub fn word(&self, id: usize) -> Option<&str> {
        self.words.get(id).map(String::as_str)
    }

    /// Encodes tokens to ids. A token outside the vocabulary becomes `<unk>` if the
    /// vocabulary has it; otherwise it is an error naming the token and its position.
    pub fn encode<S: AsRef<str>>(&self, tokens: &[S]) -> Result<Vec<usize>> {
        let unk = self.id(UNK);
        tokens
            .iter()
            .enumerate()
            .map(|(pos, t)| {
                let t = t.as_ref();
                self.id(t).or(unk).ok_or_else(|| {
                    Error::invalid(
                        "WordVocab::encode",
                        format!(
                            "word {t:?} at position {pos} is not in the vocabulary of {} words \
                             (which has no {UNK} token)",
                            self.len()
                        ),
                    )
                })
            })
            .collect()
    }

    /// Decodes ids to words. Errors on an id `>= len()`.
    pub fn decode(&self, ids: &[usize]) -> Result<Vec<&str>> {
        ids.iter()
            .map(|&id| {
                self.word(id).ok_or(Error::Index {
                    op: "WordVocab::decode",
                    index: id as i64,
                    size: self.len(),
                })
            })
            .collect()
    }

    /// The vocabulary as JSON: `{"format": "retrograd-vocab", "kind": "word", "tokens": [..]}`.
    pub fn to_json(&self) -> String {
        json!({"format": FORMAT, "kind": "word", "tokens": self.words}).to_string()
    }

    /// Reads a vocabulary written by [`WordVocab::to_json`].
    ///
    /// ```
    /// use retrograd::text::WordVocab;
    /// let v = WordVocab::build(&["the", "cat", "<unk>"]);
    /// assert_eq!(WordVocab::from_json(&v.to_json())?, v);
    /// # Ok::<(), retrograd::Error>(())
    /// ```
    pub fn from_json(s: &str) -> Result<Self> {
        let words = parse_tokens(s, "word")?;
        Self::from_words(words).map_err(|e| Error::Checkpoint(format!("word vocabulary: {e}")))
    }

    /// Writes the JSON form to `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        write_file(path.as_ref(), &self.to_json())
    }

    /// Reads a vocabulary saved by [`WordVocab::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_json(&read_file(path.as_ref())?)
    }
}

/// Parses `{"format": "retrograd-vocab", "kind": kind, "tokens": [strings]}`.
fn parse_tokens(s: &str, kind: &str) -> Result<Vec<String>> {
    let bad = |what: String| Error::Checkpoint(format!("{kind} vocabulary: {what}"));
    let v: Value = serde_json::from_str(s).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    if v.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(bad(format!("missing \"format\": \"{FORMAT}\"")));
    }
    match v.get("kind").and_then(Value::as_str) {
        Some(k) if k == kind => {}
        Some(k) => return Err(bad(format!("the file holds a {k} vocabulary"))),
        None => return Err(bad("missing \"kind\"".into())),
    }
    let arr = v
        .get("tokens")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("missing \"tokens\" array".into()))?;
    arr.iter()
        .enumerate()
        .map(|(i, t)| {
            t.as_str()
                .map(str::to_string)
                .ok_or_else(|| bad(format!("token {i} is not a string")))
        })
        .collect()
}

fn write_file(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents)
        .map_err(|e| Error::Io(format!("writing vocabulary {}: {e}", path.display())))
}

fn read_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::Io(format!("reading vocabulary {}: {e}", path.display())))
}
