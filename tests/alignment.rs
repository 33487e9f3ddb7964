//! Rationale alignment through the real tokenizers: from annotated spans to token labels.

mod common;

use common::*;
use epitome::data::locate_spans;
use epitome::encoder::PretrainedEncoder;
use epitome::text::labels::{spans_from_tokens, token_labels};

fn tiny(max_len: usize) -> epitome::text::TextEncoder {
    PretrainedEncoder::open(&fixtures().join("tiny-roberta"))
        .unwrap()
        .text_encoder(max_len)
        .unwrap()
}

#[test]
fn a_span_cut_by_truncation_labels_the_tokens_that_remain() {
    let text = tiny(8);
    let response = "I am here for you and I am so sorry that this happened to you";
    let spans = locate_spans(response, &["so sorry that this happened"]).spans;
    let full = tiny(64).encode(response).unwrap();
    let cut = text.encode(response).unwrap();
    assert_eq!(cut.len(), 8);
    assert!(cut.truncated && !full.truncated);
    let full_labels = token_labels(&full, &spans);
    let cut_labels = token_labels(&cut, &spans);
    // Nothing before the cut changes, and the cut span keeps no label past the end.
    assert_eq!(&cut_labels[..7], &full_labels[..7]);
    assert_eq!(
        *cut_labels.last().unwrap(),
        0,
        "the closing special token is never a rationale"
    );

    // A span that straddles the cut keeps its first tokens.
    let straddling = locate_spans(response, &["for you and I am so sorry"]).spans;
    let labels = token_labels(&cut, &straddling);
    assert!(labels.contains(&1));
    let first = cut
        .offsets
        .iter()
        .zip(&labels)
        .find(|(_, &l)| l == 1)
        .unwrap()
        .0;
    assert_eq!(first.0, response.find("for").unwrap());
}

#[test]
fn labels_round_trip_to_spans_with_emoji_accents_and_double_spaces() {
    let text = tiny(64);
    let response = "Naïve café 😢  I'm so  sorry, résumé later";
    let spans = locate_spans(response, &["I'm so sorry,"]).spans;
    assert_eq!(spans.len(), 1);
    let enc = text.encode(response).unwrap();
    let labels: Vec<bool> = token_labels(&enc, &spans)
        .into_iter()
        .map(|l| l == 1)
        .collect();
    let back = spans_from_tokens(&enc, &labels);
    assert_eq!(back.len(), 1);
    let got: String = response
        .chars()
        .skip(back[0].start)
        .take(back[0].len())
        .collect();
    assert_eq!(got, "I'm so  sorry,");
}

#[test]
fn a_response_without_rationale_has_no_rationale_tokens() {
    let enc = tiny(64).encode("thanks for sharing").unwrap();
    assert!(token_labels(&enc, &[]).iter().all(|&l| l == 0));
    assert!(enc.special[0] && *enc.special.last().unwrap());
}
