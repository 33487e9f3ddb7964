//! Sentences of a post, and the normal form phrasings are compared in: exemplars are counted,
//! deduplicated and checked against a response by it.

/// A sentence: `[start, end)` in chars (Unicode scalar values) of the text, trimmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sentence {
    pub start: usize,
    pub end: usize,
}

/// Splits at `.`, `!`, `?` (and runs of them) followed by white space, and at line breaks.
pub fn sentences(text: &str) -> Vec<Sentence> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let push = |from: usize, to: usize, out: &mut Vec<Sentence>| {
        let (mut a, mut b) = (from, to);
        while a < b && chars[a].is_whitespace() {
            a += 1;
        }
        while b > a && chars[b - 1].is_whitespace() {
            b -= 1;
        }
        if a < b {
            out.push(Sentence { start: a, end: b });
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            push(start, i, &mut out);
            start = i + 1;
        } else if matches!(c, '.' | '!' | '?') {
            let mut j = i + 1;
            while j < chars.len() && matches!(chars[j], '.' | '!' | '?') {
                j += 1;
            }
            if j == chars.len() || chars[j].is_whitespace() {
                push(start, j, &mut out);
                start = j;
            }
            i = j;
            continue;
        }
        i += 1;
    }
    push(start, chars.len(), &mut out);
    out
}

/// The chars `[start, end)` of `text`.
pub fn slice(text: &str, start: usize, end: usize) -> String {
    text.chars().skip(start).take(end - start).collect()
}

/// Lower case, curly quotes straight, white space collapsed, punctuation and quotes trimmed
/// from both ends: "I'm  so sorry!!" and "i’m so sorry" are one phrasing.
pub fn normalize(s: &str) -> String {
    let lowered: String = s
        .chars()
        .map(|c| match c {
            '\u{2018}' | '\u{2019}' | '\u{02bc}' => '\'',
            '\u{201c}' | '\u{201d}' => '"',
            c => c,
        })
        .flat_map(char::to_lowercase)
        .collect();
    let collapsed = lowered.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(t: &str) -> Vec<String> {
        sentences(t)
            .into_iter()
            .map(|s| slice(t, s.start, s.end))
            .collect()
    }

    #[test]
    fn splits_at_end_marks_and_line_breaks_keeping_char_offsets() {
        assert_eq!(
            texts("I'm so sorry!! What happened?\nHang in there. 3.5 weeks is long"),
            [
                "I'm so sorry!!",
                "What happened?",
                "Hang in there.",
                "3.5 weeks is long"
            ]
        );
        let t = "Ça va? Très bien.";
        let s = sentences(t);
        assert_eq!(slice(t, s[1].start, s[1].end), "Très bien.");
        assert!(sentences("  \n ").is_empty());
    }

    #[test]
    fn normal_form_ignores_case_quotes_spacing_and_end_punctuation() {
        assert_eq!(normalize("  I\u{2019}m  SO sorry!! "), "i'm so sorry");
        assert_eq!(normalize("\"What happened?\""), "what happened");
    }
}
