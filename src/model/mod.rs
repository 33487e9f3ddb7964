//! The empathy model: bi-encoder layers, where its tensors come from, and its loss.

mod biencoder;
mod folded;
pub mod import;
mod level_head;
pub mod loss;
pub mod offsets;
pub mod params;
mod pooling;

pub use biencoder::{
    BiEncoder, MechanismLogits, ModelConfig, ResponderSharing, SeekerSide, RESPONDER_PREFIX,
    SEEKER_PREFIX,
};
pub use level_head::LevelHead;
pub use offsets::LevelOffsets;
pub use pooling::LevelPooling;

/// candle attaches a backtrace to its errors when RUST_BACKTRACE is set: kilobytes of build
/// paths that tell a user nothing. The message is what comes before it.
pub fn without_backtrace(e: &candle_core::Error) -> String {
    let text = e.to_string();
    let is_frame = |line: &str| {
        let t = line.trim_start();
        t.split_once(':')
            .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
            && line.starts_with(' ')
    };
    text.lines()
        .take_while(|line| !is_frame(line))
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_owned()
}
