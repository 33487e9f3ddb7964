//! The classical rows of the paper's table: the majority class and TF-IDF logistic regression.
//! They predict levels only; with no rationale predicted, T-F1 and IOU-F1 are the share of dev
//! responses that have no gold rationale (the floor a rationale model must beat).

use super::Scores;
use crate::data::Example;
use crate::mechanism::{Mechanism, NUM_LEVELS};
use crate::metrics::level_metrics;
use linfa::prelude::*;
use linfa_logistic::MultiLogisticRegression;
use linfa_preprocessing::tf_idf_vectorization::TfIdfVectorizer;
use ndarray::{Array1, Array2};

/// What a TF-IDF model reads of a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextOf {
    Response,
    /// Seeker and response as one document (their words are not told apart).
    SeekerAndResponse,
}

#[derive(Debug, thiserror::Error)]
#[error("{row}: {message}")]
pub struct BaselineError {
    pub row: &'static str,
    pub message: String,
}

/// The vocabulary kept: the most frequent words of the training side.
const MAX_FEATURES: usize = 5000;
/// L2 penalty of the logistic regression, on L2-normalised TF-IDF rows.
const L2_PENALTY: f64 = 1e-3;

/// Predicts each mechanism's most frequent training level for every dev pair.
pub fn majority(train: &[&Example], dev: &[&Example]) -> [Scores; 3] {
    Mechanism::ALL.map(|m| {
        let mut counts = [0usize; NUM_LEVELS];
        for e in train {
            counts[e.label(m).level as usize] += 1;
        }
        let most = (0..NUM_LEVELS).max_by_key(|&l| counts[l]).unwrap_or(0) as u8;
        scores_without_rationales(m, dev, &vec![most; dev.len()])
    })
}

/// Multinomial logistic regression on TF-IDF features, one model per mechanism.
pub fn tfidf_logistic(
    train: &[&Example],
    dev: &[&Example],
    text: TextOf,
) -> Result<[Scores; 3], BaselineError> {
    let row = match text {
        TextOf::Response => "TF-IDF + logistic regression (response)",
        TextOf::SeekerAndResponse => "TF-IDF + logistic regression (seeker + response)",
    };
    let fail = |message: String| BaselineError { row, message };
    let docs = |set: &[&Example]| -> Array1<String> {
        set.iter()
            .map(|e| match text {
                TextOf::Response => e.response_post.clone(),
                TextOf::SeekerAndResponse => format!("{} {}", e.seeker_post, e.response_post),
            })
            .collect()
    };
    let (train_docs, dev_docs) = (docs(train), docs(dev));
    let vectorizer = TfIdfVectorizer::default()
        .max_features(Some(MAX_FEATURES))
        .convert_to_lowercase(true)
        .fit(&train_docs)
        .map_err(|e| fail(e.to_string()))?;
    let features = |d: &Array1<String>| -> Result<Array2<f64>, BaselineError> {
        let mut x = vectorizer
            .transform(d)
            .map_err(|e| fail(e.to_string()))?
            .to_dense();
        for mut r in x.rows_mut() {
            let norm = r.dot(&r).sqrt();
            if norm > 0.0 {
                r /= norm;
            }
        }
        Ok(x)
    };
    let (x_train, x_dev) = (features(&train_docs)?, features(&dev_docs)?);
    let mut out = Vec::with_capacity(3);
    for m in Mechanism::ALL {
        let y: Array1<usize> = train.iter().map(|e| e.label(m).level as usize).collect();
        let predicted: Vec<u8> = if y.iter().all(|&l| l == y[0]) {
            // One level only: nothing to regress, and linfa refuses a single class.
            vec![y[0] as u8; dev.len()]
        } else {
            let dataset = Dataset::new(x_train.clone(), y);
            let model = MultiLogisticRegression::default()
                .alpha(L2_PENALTY)
                .max_iterations(200)
                .fit(&dataset)
                .map_err(|e| fail(format!("{}: {e}", m.code())))?;
            model.predict(&x_dev).iter().map(|&l| l as u8).collect()
        };
        out.push(scores_without_rationales(m, dev, &predicted));
    }
    out.try_into()
        .map_err(|_| fail("expected three mechanisms".into()))
}

fn scores_without_rationales(m: Mechanism, dev: &[&Example], predicted: &[u8]) -> Scores {
    let gold: Vec<u8> = dev.iter().map(|e| e.label(m).level).collect();
    let level = level_metrics(&gold, predicted);
    let without =
        dev.iter().filter(|e| e.label(m).spans.is_empty()).count() as f64 / dev.len().max(1) as f64;
    Scores {
        accuracy: level.accuracy,
        macro_f1: level.macro_f1,
        t_f1: without,
        iou_f1: without,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{CharSpan, MechanismLabel};

    fn example(i: usize, response: &str, er: u8) -> Example {
        let label = |level: u8| MechanismLabel {
            level,
            spans: if level > 0 {
                vec![CharSpan { start: 0, end: 5 }]
            } else {
                vec![]
            },
        };
        Example {
            occurrence: 1,
            sp_id: i.to_string(),
            rp_id: i.to_string(),
            seeker_post: format!("seeker post number {i}"),
            response_post: response.into(),
            labels: [label(er), label(0), label(0)],
        }
    }

    fn set() -> Vec<Example> {
        (0..90)
            .map(|i| match i % 3 {
                0 => example(i, "so sorry, that is awful, hugs", 2),
                1 => example(i, "sorry to hear that", 1),
                _ => example(i, "try restarting the router", 0),
            })
            .collect()
    }

    #[test]
    fn tfidf_logistic_learns_words_that_mark_the_levels() {
        let all = set();
        let refs: Vec<&Example> = all.iter().collect();
        let (train, dev) = refs.split_at(60);
        let [er, ip, _] = tfidf_logistic(train, dev, TextOf::Response).unwrap();
        assert_eq!((er.accuracy, er.macro_f1), (1.0, 1.0));
        // Two thirds of the dev responses have a gold ER rationale, none is predicted.
        assert!((er.t_f1 - 1.0 / 3.0).abs() < 1e-12);
        // IP is always 0 in training: predicted 0 without a model.
        assert_eq!(ip.accuracy, 1.0);
        let with_seeker = tfidf_logistic(train, dev, TextOf::SeekerAndResponse).unwrap();
        assert_eq!(with_seeker[0].accuracy, 1.0);
    }

    #[test]
    fn majority_predicts_the_most_frequent_training_level() {
        let mut all = set();
        all.push(example(90, "so sorry", 2));
        let refs: Vec<&Example> = all.iter().collect();
        let [er, ..] = majority(&refs, &refs);
        assert!((er.accuracy - 31.0 / 91.0).abs() < 1e-12, "{}", er.accuracy);
    }
}
