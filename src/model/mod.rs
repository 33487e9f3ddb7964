//! The empathy model: bi-encoder layers, where its tensors come from, and its loss.

mod biencoder;
pub mod import;
pub mod loss;
pub mod params;

pub use biencoder::{
    BiEncoder, MechanismLogits, ModelConfig, ResponderSharing, RESPONDER_PREFIX, SEEKER_PREFIX,
};
