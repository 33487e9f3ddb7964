//! Annotated examples tokenized for the model, with gold rationale tokens.

use crate::data::Example;
use crate::text::labels::token_labels;
use crate::text::{Encoded, TextEncoder, TextError};

#[derive(Clone, Debug)]
pub struct Features {
    pub seeker: Encoded,
    pub response: Encoded,
    /// Gold level per mechanism, indexed by [`crate::Mechanism::index`].
    pub levels: [u8; 3],
    /// Gold rationale flags per response token, per mechanism.
    pub rationale: [Vec<bool>; 3],
}

impl Features {
    pub fn new(text: &TextEncoder, example: &Example) -> Result<Self, TextError> {
        let seeker = text.encode(&example.seeker_post)?;
        let response = text.encode(&example.response_post)?;
        let rationale = std::array::from_fn(|m| {
            token_labels(&response, &example.labels[m].spans)
                .into_iter()
                .map(|l| l == 1)
                .collect()
        });
        Ok(Self {
            levels: std::array::from_fn(|m| example.labels[m].level),
            rationale,
            seeker,
            response,
        })
    }
}

pub fn featurize(text: &TextEncoder, examples: &[&Example]) -> Result<Vec<Features>, TextError> {
    examples.iter().map(|e| Features::new(text, e)).collect()
}
