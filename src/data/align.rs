//! Locating annotated rationale spans in a response.
//!
//! Annotators' spans were cut from copies of the response whose whitespace can differ from the
//! copy we keep (double spaces collapsed, trailing spaces), so matching treats every run of
//! whitespace as one space. Offsets are in Unicode scalar values (chars), the unit of every
//! offset epitome reports.

use serde::{Deserialize, Serialize};

/// A half-open range `[start, end)` of chars in a text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CharSpan {
    pub start: usize,
    pub end: usize,
}

impl CharSpan {
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    pub fn overlaps(&self, other: &CharSpan) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// A text with whitespace runs collapsed, remembering where each kept char came from.
struct Collapsed {
    chars: Vec<char>,
    origin: Vec<usize>,
}

fn collapse(text: &str) -> Collapsed {
    let mut chars = Vec::new();
    let mut origin = Vec::new();
    let mut in_space = false;
    for (i, c) in text.chars().enumerate() {
        if c.is_whitespace() {
            if !in_space {
                chars.push(' ');
                origin.push(i);
            }
            in_space = true;
        } else {
            chars.push(c);
            origin.push(i);
            in_space = false;
        }
    }
    Collapsed { chars, origin }
}

fn find_from(haystack: &[char], needle: &[char], from: usize) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    (from..=haystack.len() - needle.len()).find(|&i| haystack[i..i + needle.len()] == *needle)
}

/// Result of aligning the spans of one response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Alignment {
    pub spans: Vec<CharSpan>,
    /// Spans that are not in the response, even up to whitespace.
    pub not_found: usize,
}

/// Locates each span in `response`. Spans are usually listed in reading order, so each search
/// starts after the previous match and falls back to the start of the response.
pub fn locate_spans<S: AsRef<str>>(response: &str, spans: &[S]) -> Alignment {
    let hay = collapse(response);
    let mut out = Alignment::default();
    let mut cursor = 0;
    for span in spans {
        let needle = collapse(span.as_ref().trim());
        if needle.chars.is_empty() {
            continue;
        }
        let found = find_from(&hay.chars, &needle.chars, cursor)
            .or_else(|| find_from(&hay.chars, &needle.chars, 0));
        match found {
            Some(i) => {
                let last = i + needle.chars.len() - 1;
                let span = CharSpan {
                    start: hay.origin[i],
                    end: hay.origin[last] + 1,
                };
                cursor = last + 1;
                out.spans.push(span);
            }
            None => out.not_found += 1,
        }
    }
    out.spans.sort();
    out.spans.dedup();
    out
}

/// Splits the EPITOME `rationales` field: spans separated by `|`, possibly with a trailing `|`.
pub fn split_rationales(field: &str) -> Vec<String> {
    field
        .split('|')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The substring of `text` covering `span`, in chars.
pub fn char_slice(text: &str, span: CharSpan) -> String {
    text.chars()
        .skip(span.start)
        .take(span.end.saturating_sub(span.start))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(response: &str, spans: &[&str]) -> Vec<String> {
        locate_spans(response, spans)
            .spans
            .iter()
            .map(|s| char_slice(response, *s))
            .collect()
    }

    #[test]
    fn annotation_with_collapsed_double_space_matches_the_response() {
        let response = "I'm so  sorry.  That must be hard";
        let a = locate_spans(response, &["so sorry."]);
        assert_eq!(a.not_found, 0);
        assert_eq!(char_slice(response, a.spans[0]), "so  sorry.");
    }

    #[test]
    fn response_with_single_space_matches_annotation_with_double_space() {
        assert_eq!(
            found("so sorry for you", &["sorry  for"]),
            vec!["sorry for"]
        );
    }

    #[test]
    fn span_at_the_very_end() {
        let response = "hang in there. how are you feeling?";
        let a = locate_spans(response, &["how are you feeling?"]);
        assert_eq!(a.spans, vec![CharSpan { start: 15, end: 35 }]);
        assert_eq!(a.spans[0].end, response.chars().count());
    }

    #[test]
    fn emoji_and_accents_use_char_offsets() {
        let response = "Naïve café 😢 so sorry, résumé later";
        let a = locate_spans(response, &["😢 so sorry"]);
        assert_eq!(a.spans, vec![CharSpan { start: 11, end: 21 }]);
        assert_eq!(char_slice(response, a.spans[0]), "😢 so sorry");
    }

    #[test]
    fn span_not_in_response_is_counted_not_fatal() {
        let a = locate_spans("I hear you", &["I hear you", "not there at all"]);
        assert_eq!(a.spans.len(), 1);
        assert_eq!(a.not_found, 1);
    }

    #[test]
    fn repeated_phrase_takes_the_next_occurrence() {
        let response = "sorry. really, sorry.";
        let a = locate_spans(response, &["sorry.", "sorry."]);
        assert_eq!(
            a.spans,
            vec![
                CharSpan { start: 0, end: 6 },
                CharSpan { start: 15, end: 21 }
            ]
        );
    }

    #[test]
    fn rationale_field_splitting_drops_trailing_separator() {
        assert_eq!(split_rationales("a b|c d|"), vec!["a b", "c d"]);
        assert!(split_rationales("").is_empty());
    }
}
