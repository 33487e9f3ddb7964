//! Rationale labels per token, from character spans.

use super::Encoded;
use crate::data::CharSpan;

/// 1 for each token whose char range overlaps a rationale span, 0 otherwise. Special tokens
/// and empty-range tokens are never rationale tokens. A span cut off by truncation labels the
/// tokens that remain.
pub fn token_labels(encoded: &Encoded, spans: &[CharSpan]) -> Vec<u8> {
    encoded
        .offsets
        .iter()
        .zip(&encoded.special)
        .map(|(&(start, end), &special)| {
            let token = CharSpan { start, end };
            u8::from(!special && !token.is_empty() && spans.iter().any(|s| s.overlaps(&token)))
        })
        .collect()
}

/// Char spans covered by maximal runs of flagged tokens: from the start of a run's first token
/// to the end of its last.
pub fn spans_from_tokens(encoded: &Encoded, flags: &[bool]) -> Vec<CharSpan> {
    let mut spans = Vec::new();
    let mut current: Option<CharSpan> = None;
    for ((&(start, end), &special), &flag) in
        encoded.offsets.iter().zip(&encoded.special).zip(flags)
    {
        if flag && !special && end > start {
            current = Some(match current {
                Some(c) => CharSpan {
                    start: c.start,
                    end: end.max(c.end),
                },
                None => CharSpan { start, end },
            });
        } else if let Some(c) = current.take() {
            spans.push(c);
        }
    }
    spans.extend(current);
    spans
}
