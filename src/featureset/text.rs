//! The three text forms of a featureset, parsed strictly and printed canonically.
//!
//! | form | example | printed as | parsed from |
//! |---|---|---|---|
//! | Xen words (`xen-cpuid`) | `178bfbff:f6f83203:…` | `%08x` joined by `:` | 1–8 hex digits per word, `:` or `-` between |
//! | XAPI string (`host.cpu_info`) | `178bfbff-f6f83203-…` | `%08x` joined by `-` | 1–8 hex digits per word, `-` between |
//! | feature names | `fpu,sse2,avx` | Xen's names joined by `,` | names or `word:bit`, split by `,` or blanks |
//!
//! Length rules, the same for every form: fewer words than [`NR_WORDS`] are zero-extended; a
//! word past the last one that has any bit set is an error naming that word, because a feature
//! this build does not know must never be dropped silently. An empty string is the empty set,
//! as in XAPI. Every error names the column (1-based, in characters) and word it found.

use core::fmt;

use super::Featureset;
use crate::feature::{Feature, NR_WORDS};

/// Why a featureset could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeaturesetError {
    /// A word beyond the ones this build knows has bits set.
    UnknownWord {
        /// Its index.
        word: usize,
        /// Its value.
        value: u32,
    },
    /// A character that is neither a hex digit nor a separator.
    BadCharacter {
        /// 1-based column of the character.
        column: usize,
        /// The word being read.
        word: usize,
        /// The character.
        found: char,
    },
    /// A word with more than 8 hex digits.
    WordTooLong {
        /// 1-based column of the ninth digit.
        column: usize,
        /// The word.
        word: usize,
    },
    /// Two separators in a row, or one at either end.
    EmptyWord {
        /// 1-based column where a word should start.
        column: usize,
        /// The word that is missing.
        word: usize,
    },
    /// A name the feature table does not have.
    UnknownName {
        /// 1-based column where the name starts.
        column: usize,
        /// The name (cut to fit).
        name: ShortText,
    },
    /// A `word:bit` item outside the featureset.
    BadBit {
        /// 1-based column where the item starts.
        column: usize,
        /// The item (cut to fit).
        item: ShortText,
    },
}

impl fmt::Display for FeaturesetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeaturesetError::UnknownWord { word, value } => write!(
                f,
                "word {word} ({value:#010x}) has bits set, but this build knows only words 0-{}",
                NR_WORDS - 1
            ),
            FeaturesetError::BadCharacter {
                column,
                word,
                found,
            } => {
                write!(
                    f,
                    "column {column} (word {word}): {found:?} is not a hex digit"
                )
            }
            FeaturesetError::WordTooLong { column, word } => {
                write!(f, "column {column}: word {word} has more than 8 hex digits")
            }
            FeaturesetError::EmptyWord { column, word } => {
                write!(f, "column {column}: word {word} is empty")
            }
            FeaturesetError::UnknownName { column, name } => {
                write!(f, "column {column}: unknown feature name `{name}`")
            }
            FeaturesetError::BadBit { column, item } => write!(
                f,
                "column {column}: `{item}` is not a feature number (word 0-{}, bit 0-31)",
                NR_WORDS - 1
            ),
        }
    }
}

impl core::error::Error for FeaturesetError {}

/// A piece of input kept for an error message, without allocating; long text is cut with `…`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ShortText {
    bytes: [u8; Self::CAPACITY],
    len: u8,
    cut: bool,
}

impl ShortText {
    const CAPACITY: usize = 32;

    /// Keep `text`, cut to at most 32 bytes on a character boundary.
    pub fn new(text: &str) -> ShortText {
        let mut end = text.len().min(Self::CAPACITY);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0; Self::CAPACITY];
        bytes[..end].copy_from_slice(&text.as_bytes()[..end]);
        ShortText {
            bytes,
            len: end as u8,
            cut: end < text.len(),
        }
    }

    /// The kept text.
    pub fn as_str(&self) -> &str {
        // Cut on a character boundary in `new`, so always valid UTF-8.
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

impl fmt::Display for ShortText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())?;
        if self.cut { f.write_str("…") } else { Ok(()) }
    }
}

impl fmt::Debug for ShortText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// 1-based character column of byte offset `at` in `text`.
fn column(text: &str, at: usize) -> usize {
    text[..at].chars().count() + 1
}

/// Read hex words split by any of `separators`.
fn parse_hex_words(text: &str, separators: &[char]) -> Result<Featureset, FeaturesetError> {
    let mut fs = Featureset::EMPTY;
    if text.is_empty() {
        return Ok(fs);
    }
    let mut word = 0;
    let mut value: u32 = 0;
    let mut digits = 0;
    let mut finish = |word: usize, value: u32, digits: usize, at: usize| {
        if digits == 0 {
            return Err(FeaturesetError::EmptyWord {
                column: column(text, at),
                word,
            });
        }
        match fs.0.get_mut(word) {
            Some(slot) => *slot = value,
            None if value != 0 => return Err(FeaturesetError::UnknownWord { word, value }),
            None => {}
        }
        Ok(())
    };
    for (at, c) in text.char_indices() {
        if separators.contains(&c) {
            finish(word, value, digits, at)?;
            word += 1;
            value = 0;
            digits = 0;
        } else if let Some(d) = c.to_digit(16) {
            if digits == 8 {
                return Err(FeaturesetError::WordTooLong {
                    column: column(text, at),
                    word,
                });
            }
            value = value << 4 | d;
            digits += 1;
        } else {
            return Err(FeaturesetError::BadCharacter {
                column: column(text, at),
                word,
                found: c,
            });
        }
    }
    finish(word, value, digits, text.len())?;
    Ok(fs)
}

impl Featureset {
    /// Parse `xen-cpuid`'s form: hex words separated by `:` (or `-`, as `xen-cpuid` accepts).
    pub fn parse_xen_words(text: &str) -> Result<Featureset, FeaturesetError> {
        parse_hex_words(text, &[':', '-'])
    }

    /// Parse XAPI's featureset string: hex words separated by `-`.
    pub fn parse_xapi(text: &str) -> Result<Featureset, FeaturesetError> {
        parse_hex_words(text, &['-'])
    }

    /// Parse a list of Xen feature names (`fpu, sse2 avx`), separated by commas and/or blanks.
    /// A bit the table does not name is written `word:bit` (`5:22`), as [`Featureset::names`]
    /// prints it.
    pub fn parse_names(text: &str) -> Result<Featureset, FeaturesetError> {
        let mut fs = Featureset::EMPTY;
        let is_separator = |c: char| c == ',' || c.is_whitespace();
        let mut rest = text;
        while let Some(start) = rest.find(|c: char| !is_separator(c)) {
            let item_and_tail = &rest[start..];
            let end = item_and_tail
                .find(is_separator)
                .unwrap_or(item_and_tail.len());
            let item = &item_and_tail[..end];
            let at = text.len() - item_and_tail.len();
            fs.insert(parse_name_item(item).ok_or_else(|| {
                let column = column(text, at);
                if item.starts_with(|c: char| c.is_ascii_digit()) && item.contains(':') {
                    FeaturesetError::BadBit {
                        column,
                        item: ShortText::new(item),
                    }
                } else {
                    FeaturesetError::UnknownName {
                        column,
                        name: ShortText::new(item),
                    }
                }
            })?);
            rest = &item_and_tail[end..];
        }
        Ok(fs)
    }
}

fn parse_name_item(item: &str) -> Option<Feature> {
    if let Some(feature) = Feature::from_name(item) {
        return Some(feature);
    }
    let (word, bit) = item.split_once(':')?;
    let all_digits =
        |s: &str| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(word) || !all_digits(bit) {
        return None;
    }
    Feature::from_index(word.parse().ok()?, bit.parse().ok()?)
}

/// Writes `%08x` words joined by `sep`.
fn write_words(fs: &Featureset, f: &mut fmt::Formatter<'_>, sep: char) -> fmt::Result {
    for (i, w) in fs.words().iter().enumerate() {
        if i > 0 {
            write!(f, "{sep}")?;
        }
        write!(f, "{w:08x}")?;
    }
    Ok(())
}

/// A featureset displayed as `xen-cpuid` prints it; see [`Featureset::xen_words`].
#[derive(Clone, Copy, Debug)]
pub struct XenWords<'a>(pub(super) &'a Featureset);

impl fmt::Display for XenWords<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_words(self.0, f, ':')
    }
}

/// A featureset displayed as XAPI stores it; see [`Featureset::xapi`].
#[derive(Clone, Copy, Debug)]
pub struct Xapi<'a>(pub(super) &'a Featureset);

impl fmt::Display for Xapi<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_words(self.0, f, '-')
    }
}

/// A featureset displayed as feature names; see [`Featureset::names`].
#[derive(Clone, Copy, Debug)]
pub struct Names<'a>(pub(super) &'a Featureset);

impl fmt::Display for Names<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, feature) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{feature}")?;
        }
        Ok(())
    }
}
