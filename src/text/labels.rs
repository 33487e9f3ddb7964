//! Rationale labels per token, from character spans.

use super::Encoded;
use crate::data::CharSpan;

/// 1 for each token whose char range overlaps a rationale span, 0 otherwise. Special tokens
/// are never rationale tokens. A zero-width token (byte-level BPE gives one to the second of two
/// spaces) counts when it lies strictly inside a span, so that it does not split the span in two.
/// A span cut off by truncation labels the tokens that remain.
pub fn token_labels(encoded: &Encoded, spans: &[CharSpan]) -> Vec<u8> {
    encoded
        .offsets
        .iter()
        .zip(&encoded.special)
        .map(|(&(start, end), &special)| {
            let token = CharSpan { start, end };
            let inside = |s: &CharSpan| {
                if token.is_empty() {
                    s.start < start && start < s.end
                } else {
                    s.overlaps(&token)
                }
            };
            u8::from(!special && spans.iter().any(inside))
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
        if !special && end <= start {
            // Zero-width tokens cover no text: they neither extend nor end a span.
            continue;
        }
        if flag && !special {
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
