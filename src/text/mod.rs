//! Tokenization with character offsets, from a Hugging Face `tokenizer.json`.

pub mod labels;

use std::path::{Path, PathBuf};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("cannot load the tokenizer {}: {message}", path.display())]
    Load { path: PathBuf, message: String },
    #[error("tokenization failed: {0}")]
    Encode(String),
}

/// One tokenized text, truncated to the encoder's maximum length, unpadded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// `[start, end)` of each token in chars (Unicode scalar values) of the input text;
    /// `(0, 0)` for special tokens.
    pub offsets: Vec<(usize, usize)>,
    pub special: Vec<bool>,
    /// Whether the text had tokens beyond the maximum length.
    pub truncated: bool,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A tokenizer configured for one maximum length.
///
/// A tokenizer.json can carry its own truncation and padding (the default encoder's pads and
/// truncates to 128), so both are set here explicitly: truncate to `max_len`, never pad.
/// Batches are padded later, to their own longest text.
#[derive(Clone)]
pub struct TextEncoder {
    tokenizer: Tokenizer,
    max_len: usize,
}

impl TextEncoder {
    pub fn from_file(path: &Path, max_len: usize) -> Result<Self, TextError> {
        let load_err = |message: String| TextError::Load {
            path: path.to_path_buf(),
            message,
        };
        let mut tokenizer = Tokenizer::from_file(path).map_err(|e| load_err(e.to_string()))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| load_err(e.to_string()))?;
        Ok(Self { tokenizer, max_len })
    }

    /// Tokens the tokenizer can produce, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// The id of `token` (a special token such as `[MASK]`), where the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The start of `text` that [`TextEncoder::encode`] reads: at most
    /// [`MAX_BYTES_PER_TOKEN`] × `max_len` bytes, ending at a char boundary.
    pub fn readable_prefix<'t>(&self, text: &'t str) -> &'t str {
        let cap = self.max_len.saturating_mul(MAX_BYTES_PER_TOKEN);
        if text.len() <= cap {
            return text;
        }
        let mut end = cap;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        &text[..end]
    }

    /// Tokenizes the start of `text` that can reach the first `max_len` tokens: a post of any
    /// size (a 200 MB line) costs what its first [`MAX_BYTES_PER_TOKEN`] × `max_len` bytes
    /// cost, and is marked truncated.
    pub fn encode(&self, text: &str) -> Result<Encoded, TextError> {
        let whole = text.len();
        let text = self.readable_prefix(text);
        let cut = text.len() < whole;
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| TextError::Encode(e.to_string()))?;
        let char_of_byte = char_index_of_bytes(text);
        let offsets = enc
            .get_offsets()
            .iter()
            .map(|&(s, e)| {
                (
                    char_of_byte[s.min(text.len())],
                    char_of_byte[e.min(text.len())],
                )
            })
            .collect();
        Ok(Encoded {
            ids: enc.get_ids().to_vec(),
            type_ids: enc.get_type_ids().to_vec(),
            offsets,
            special: enc
                .get_special_tokens_mask()
                .iter()
                .map(|&s| s == 1)
                .collect(),
            truncated: cut || !enc.get_overflowing().is_empty(),
        })
    }
}

/// Bytes of text read per token of the maximum length. A token is at most one word, and
/// WordPiece reads words of up to 100 chars (400 bytes of UTF-8) before it gives up on them as
/// unknown; only runs of whitespace longer than the rest can move a token past this bound.
pub const MAX_BYTES_PER_TOKEN: usize = 1024;

/// Maps every byte position of `text` (and its end) to the index of the char it starts or
/// falls in: the tokenizers crate reports byte offsets, epitome reports char offsets.
fn char_index_of_bytes(text: &str) -> Vec<usize> {
    let mut map = Vec::with_capacity(text.len() + 1);
    let mut index = 0;
    for b in 0..=text.len() {
        // A byte inside a multi-byte char keeps the index of the char it falls in.
        if b > 0 && text.is_char_boundary(b) {
            index += 1;
        }
        map.push(index);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::char_index_of_bytes;

    #[test]
    fn byte_offsets_become_char_offsets() {
        let t = "aé😢b";
        let m = char_index_of_bytes(t);
        assert_eq!(m[0], 0);
        assert_eq!(m[1], 1); // é starts at byte 1
        assert_eq!(m[3], 2); // 😢 starts at byte 3
        assert_eq!(m[7], 3); // b
        assert_eq!(m[8], 4); // end
    }
}
