//! Checkpoints of the original code (github.com/behavioral-data/Empathy-Mental-Health): one
//! model per mechanism, saved with PyTorch (`.pth`) or converted to safetensors.

use super::biencoder::SEEKER_PREFIX;
use crate::mechanism::Mechanism;
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Reads a `.pth` (PyTorch pickle) or `.safetensors` file.
pub fn read_checkpoint(
    path: &Path,
    device: &Device,
) -> candle_core::Result<HashMap<String, Tensor>> {
    let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
    let tensors = if is_safetensors {
        candle_core::safetensors::load(path, device)?
    } else {
        candle_core::pickle::read_all(path)?.into_iter().collect()
    };
    Ok(tensors)
}

/// Renames an original checkpoint's tensors to epitome's layout for mechanism `m`, with its
/// responder encoder under `responder_prefix` (`responder` when shared, `responder.ER` when
/// each mechanism has its own, as in the original).
///
/// `norm.*` is dropped: the original defines that layer but its forward pass never uses it.
/// So are the token-classification heads of the wrapped encoders, also unused.
pub fn rename_original(
    tensors: HashMap<String, Tensor>,
    m: Mechanism,
    responder_prefix: &str,
) -> HashMap<String, Tensor> {
    let mut out = HashMap::new();
    for (name, t) in tensors {
        let renamed = if let Some(rest) = name.strip_prefix("seeker_encoder.roberta.") {
            Some(format!("{SEEKER_PREFIX}.{rest}"))
        } else if let Some(rest) = name.strip_prefix("responder_encoder.roberta.") {
            Some(format!("{responder_prefix}.{rest}"))
        } else if ["attn.", "empathy_classifier.", "rationale_classifier."]
            .iter()
            .any(|p| name.starts_with(p))
        {
            Some(format!("{}.{name}", m.code()))
        } else {
            None
        };
        if let Some(n) = renamed {
            out.insert(n, t);
        }
    }
    out
}
