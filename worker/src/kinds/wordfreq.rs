//! Word frequencies in bounded memory, for the `text` kind's `top_words`.
//!
//! An exact count needs one entry per distinct word: 8 MiB of distinct
//! words took 169 MB per run, four runs at once on a worker. [`WordCounter`]
//! keeps at most [`MAX_DISTINCT_WORDS`] entries and is exact while the text
//! has no more distinct words than that, which ordinary prose of the 8 MiB
//! a run may send does not exceed (a novel has some 10,000 to 30,000).
//!
//! Past the bound it is the Misra-Gries summary (Misra and Gries, "Finding
//! repeated elements", 1982): a word not in a full table is not added;
//! instead every count drops by one and the words left at zero go. Each
//! such round takes one occurrence away from `capacity + 1` different words
//! (the new one and every entry), so over `n` words there are at most
//! `n / (capacity + 1)` rounds, and:
//! - every count is at most that far below the true one, never above it;
//! - every word occurring more than `n / (capacity + 1)` times is kept.
//!
//! With the default bound and 8 MiB of text (at most about 4 million words)
//! that error is at most 64 occurrences, so the frequent words of a large
//! text of many distinct words are still listed, with counts that may be a
//! little low. [`WordCounter::is_exact`] says which case an answer is.
//! The rounds cost `O(capacity)` each but remove at least one occurrence
//! per entry, so the total work stays linear in the input.

use std::collections::HashMap;

/// Most distinct words counted at once. With short words an entry takes
/// about 80 bytes (the table slot, the string's header and heap block), so
/// the table stays near 5 MiB per run.
pub const MAX_DISTINCT_WORDS: usize = 65_536;

/// Counts words in at most `capacity` entries; see the module doc.
#[derive(Debug)]
pub struct WordCounter {
    /// Word -> count (exact, or a lower bound once `rounds > 0`).
    counts: HashMap<String, u64>,
    /// Most entries `counts` may hold.
    capacity: usize,
    /// Decrement rounds so far: the most any count may be below the truth.
    rounds: u64,
}

impl WordCounter {
    /// A counter of at most `capacity` distinct words (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        WordCounter {
            // Grows as needed: small texts must not pay for the bound.
            counts: HashMap::new(),
            capacity,
            rounds: 0,
        }
    }

    /// Counts one occurrence of `word` (already normalised).
    pub fn add(&mut self, word: &str) {
        if let Some(n) = self.counts.get_mut(word) {
            *n += 1;
        } else if self.counts.len() < self.capacity {
            self.counts.insert(word.to_owned(), 1);
        } else {
            // Full: this occurrence and one of every entry cancel out.
            self.rounds += 1;
            self.counts.retain(|_, n| {
                *n -= 1;
                *n > 0
            });
        }
    }

    /// Entries held now; never more than the capacity.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether no word has been counted.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Whether every count is the true one: no round has been needed, i.e.
    /// the text had at most `capacity` distinct words.
    pub fn is_exact(&self) -> bool {
        self.rounds == 0
    }

    /// The `top` most frequent words, most frequent first, ties in
    /// alphabetical order so the answer is stable.
    pub fn top(self, top: usize) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self.counts.into_iter().collect();
        all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(top);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(words: &[&str], capacity: usize) -> WordCounter {
        let mut c = WordCounter::new(capacity);
        for w in words {
            c.add(w);
        }
        c
    }

    #[test]
    fn exact_while_the_distinct_words_fit() {
        let c = count(&["b", "a", "b", "c", "b", "a"], 3);
        assert!(c.is_exact());
        assert_eq!(
            c.top(10),
            [("b".into(), 3), ("a".into(), 2), ("c".into(), 1)]
        );
    }

    #[test]
    fn never_holds_more_than_its_capacity() {
        let mut c = WordCounter::new(100);
        for i in 0..100_000 {
            c.add(&format!("w{i}"));
            assert!(c.len() <= 100, "{} entries after {i} words", c.len());
        }
        assert!(!c.is_exact());
    }

    #[test]
    fn a_frequent_word_survives_many_distinct_ones_within_the_error_bound() {
        // "the" is every 4th word: 25,000 of 100,000, far above the
        // n / (capacity + 1) = 990 a word needs to be kept.
        let mut c = WordCounter::new(100);
        let mut n = 0u64;
        for i in 0..25_000 {
            for w in ["the", &format!("x{i}"), &format!("y{i}"), &format!("z{i}")] {
                c.add(w);
                n += 1;
            }
        }
        let bound = n / 101;
        let top = c.top(1);
        assert_eq!(top[0].0, "the");
        assert!(top[0].1 <= 25_000 && top[0].1 + bound >= 25_000, "{top:?}");
    }
}
