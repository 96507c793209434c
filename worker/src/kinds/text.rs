//! `text`: UTF-8 text in, statistics out as JSON.
//!
//! Counting rules, chosen to match what people expect from `wc` and from a
//! word-frequency list:
//! - `lines`: as `str::lines` counts them: a final line without a newline
//!   counts, an empty input has 0 lines, `\r\n` is one line end;
//! - `words`: runs of non-whitespace (Unicode whitespace), like `wc -w`;
//! - `characters`: Unicode scalar values; `bytes`: the UTF-8 length;
//! - `top_words`: words for frequency are runs of letters, digits and inner
//!   apostrophes, lower-cased, so "The", "the" and "the," are one word; the
//!   [`TOP_WORDS`] most frequent (or the job's `top` parameter, see
//!   [`crate::params::text_top`]), ties broken alphabetically so the output
//!   is stable. Counted in bounded memory: exact up to
//!   [`MAX_DISTINCT_WORDS`] distinct words, a documented approximation past
//!   it, said by `top_words_exact` ([`super::wordfreq`]).

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::wordfreq::{MAX_DISTINCT_WORDS, WordCounter};
use super::{RunError, essence};

/// How many words `top_words` lists when the job does not say.
pub const TOP_WORDS: usize = 10;

/// The JSON answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TextStats {
    /// Number of lines.
    pub lines: u64,
    /// Number of whitespace-separated words.
    pub words: u64,
    /// Number of Unicode scalar values.
    pub characters: u64,
    /// Number of bytes.
    pub bytes: u64,
    /// SHA-256 of the bytes, lower-case hex.
    pub sha256: String,
    /// The most frequent words, most frequent first.
    pub top_words: Vec<WordCount>,
    /// Whether `top_words` is exact: the text had at most
    /// [`MAX_DISTINCT_WORDS`] distinct words. When false, the counts are
    /// Misra-Gries lower bounds ([`super::wordfreq`]).
    pub top_words_exact: bool,
}

/// One entry of `top_words`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WordCount {
    /// The word, lower-cased.
    pub word: String,
    /// How often it occurs.
    pub count: u64,
}

/// Refuses a `Content-Type` that is not text; a missing type is accepted.
/// A charset other than UTF-8 is refused rather than misread.
pub fn check_content_type(content_type: Option<&str>) -> Result<(), RunError> {
    let Some(ct) = content_type else {
        return Ok(());
    };
    let refuse = || RunError::UnsupportedType {
        got: ct.to_owned(),
        accepted: "text/* (UTF-8) or application/octet-stream",
    };
    let e = essence(ct);
    if !(e.starts_with("text/") || e == "application/octet-stream") {
        return Err(refuse());
    }
    let charset = ct.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_ascii_lowercase())
    });
    match charset.as_deref() {
        None | Some("utf-8" | "utf8" | "us-ascii") => Ok(()),
        Some(_) => Err(refuse()),
    }
}

/// Computes the statistics of `input`, listing at most `top` words.
pub fn analyze(input: &[u8], top: usize) -> Result<TextStats, RunError> {
    let text = std::str::from_utf8(input).map_err(|e| RunError::InvalidUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;

    let freq = word_frequencies(text, MAX_DISTINCT_WORDS);
    let top_words_exact = freq.is_exact();
    let top_words = freq
        .top(top)
        .into_iter()
        .map(|(word, count)| WordCount { word, count })
        .collect();

    let count = |n: usize| n as u64;
    Ok(TextStats {
        lines: count(text.lines().count()),
        words: count(text.split_whitespace().count()),
        characters: count(text.chars().count()),
        bytes: count(input.len()),
        sha256: hex(&Sha256::digest(input)),
        top_words,
        top_words_exact,
    })
}

/// The frequency words of `text` (see the module doc), counted in at most
/// `capacity` entries.
fn word_frequencies(text: &str, capacity: usize) -> WordCounter {
    let mut freq = WordCounter::new(capacity);
    let mut lower = String::new();
    for token in text.split(|c: char| !(c.is_alphanumeric() || c == '\'')) {
        let word = token.trim_matches('\'');
        if word.is_empty() {
            continue;
        }
        // One buffer for every word: a repeated word costs no allocation.
        lower.clear();
        lower.extend(word.chars().flat_map(char::to_lowercase));
        freq.add(&lower);
    }
    freq
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        // Cannot fail: writing to a String.
        write!(s, "{b:02x}").expect("write to String");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_like_wc() {
        let s = analyze("The cat, the hat.\nThe end\n".as_bytes(), TOP_WORDS).unwrap();
        assert_eq!((s.lines, s.words, s.characters, s.bytes), (2, 6, 26, 26));
        assert_eq!(
            s.top_words[0],
            WordCount {
                word: "the".into(),
                count: 3
            }
        );
        let words: Vec<_> = s.top_words.iter().map(|w| w.word.as_str()).collect();
        assert_eq!(words, ["the", "cat", "end", "hat"]);
    }

    #[test]
    fn empty_and_unterminated_and_unicode() {
        let s = analyze(b"", TOP_WORDS).unwrap();
        assert_eq!((s.lines, s.words, s.characters, s.bytes), (0, 0, 0, 0));
        assert_eq!(
            s.sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let s = analyze("héllo wörld\r\nno newline".as_bytes(), TOP_WORDS).unwrap();
        assert_eq!((s.lines, s.words, s.characters), (2, 4, 23));
        assert_eq!(s.bytes, 25);
    }

    #[test]
    fn apostrophes_and_ties() {
        let s = analyze(b"don't 'quoted' b a b a c", TOP_WORDS).unwrap();
        let got: Vec<_> = s
            .top_words
            .iter()
            .map(|w| (w.word.as_str(), w.count))
            .collect();
        assert_eq!(
            got,
            [("a", 2), ("b", 2), ("c", 1), ("don't", 1), ("quoted", 1)]
        );
    }

    #[test]
    fn only_ten_words() {
        let input: String = (0..50).map(|i| format!("w{i} ")).collect();
        assert_eq!(
            analyze(input.as_bytes(), TOP_WORDS)
                .unwrap()
                .top_words
                .len(),
            TOP_WORDS
        );
    }

    #[test]
    fn top_sets_the_length_of_the_list() {
        let input: String = (0..50).map(|i| format!("w{i} ")).collect();
        let words = |top| analyze(input.as_bytes(), top).unwrap().top_words.len();
        assert_eq!(words(3), 3);
        assert_eq!(words(1), 1);
        assert_eq!(words(1000), 50, "no more words than the text has");
    }

    #[test]
    fn many_distinct_words_stay_within_the_bound() {
        let input: String = (0..20_000).map(|i| format!("w{i} the ")).collect();
        let freq = word_frequencies(&input, 1000);
        assert!(freq.len() <= 1000, "{} entries", freq.len());
        assert!(!freq.is_exact());
        assert_eq!(freq.top(1)[0].0, "the", "the frequent word is kept");
        // Through analyze, with the real bound: a text of more distinct
        // words than it says its answer is approximate.
        let input: String = (0..=MAX_DISTINCT_WORDS).map(|i| format!("w{i} ")).collect();
        assert!(
            !analyze(input.as_bytes(), TOP_WORDS)
                .unwrap()
                .top_words_exact
        );
    }

    #[test]
    fn exact_when_the_distinct_words_fit() {
        let input: String = (0..1000)
            .map(|i| format!("w{} ", i % 100))
            .chain(["Once once ONCE".into()])
            .collect();
        let s = analyze(input.as_bytes(), 3).unwrap();
        assert!(s.top_words_exact);
        let got: Vec<_> = s
            .top_words
            .iter()
            .map(|w| (w.word.as_str(), w.count))
            .collect();
        assert_eq!(got, [("w0", 10), ("w1", 10), ("w10", 10)]);
        let freq = word_frequencies(&input, 101);
        assert!(freq.is_exact(), "101 distinct words fit in 101 entries");
        let all = freq.top(1000);
        assert_eq!(all.len(), 101);
        assert_eq!(all.last(), Some(&("once".to_owned(), 3)), "case folded");
    }

    #[test]
    fn invalid_utf8_says_where() {
        let err = analyze(b"ok\xff\xfe", TOP_WORDS).unwrap_err();
        assert_eq!(err, RunError::InvalidUtf8 { valid_up_to: 2 });
        assert!(err.to_string().contains("byte offset 2"));
    }

    #[test]
    fn content_types() {
        assert!(check_content_type(Some("text/plain; charset=UTF-8")).is_ok());
        assert!(check_content_type(Some("text/markdown")).is_ok());
        assert!(check_content_type(Some("text/plain; charset=latin1")).is_err());
        assert!(check_content_type(Some("image/png")).is_err());
    }
}
