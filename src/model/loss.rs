//! The multi-task loss: λ_EI·CE(level) + λ_RE·CE(rationale tokens), summed over mechanisms.

use candle_core::{Result, Tensor, D};

/// Weighted cross-entropy: `logits` (n, c), `one_hot` (n, c) targets, `weights` (n).
/// Returns Σ wᵢ·nllᵢ / Σ wᵢ, as PyTorch's weighted mean; a weight of 0 leaves a row out.
pub fn weighted_cross_entropy(
    logits: &Tensor,
    one_hot: &Tensor,
    weights: &Tensor,
) -> Result<Tensor> {
    let nll = (candle_nn::ops::log_softmax(logits, D::Minus1)? * one_hot)?
        .sum(D::Minus1)?
        .neg()?;
    let total = (nll * weights)?.sum_all()?;
    let denom = weights.sum_all()?.clamp(1e-12, f64::INFINITY)?;
    total.div(&denom)
}

/// One-hot rows for `labels` over `classes` classes, as f32 on `device`.
pub fn one_hot(labels: &[u8], classes: usize, device: &candle_core::Device) -> Result<Tensor> {
    let mut v = vec![0f32; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        v[i * classes + l as usize] = 1.0;
    }
    Tensor::from_vec(v, (labels.len(), classes), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_hand_computed_cross_entropy() {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[2.0f32, 0.0, 0.0], [0.0, 0.0, 0.0]], &dev).unwrap();
        let targets = one_hot(&[0, 2], 3, &dev).unwrap();
        let w = Tensor::new(&[1.0f32, 1.0], &dev).unwrap();
        let l = weighted_cross_entropy(&logits, &targets, &w)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let a = -(2f32.exp() / (2f32.exp() + 2.0)).ln();
        let b = 3f32.ln();
        assert!((l - (a + b) / 2.0).abs() < 1e-5);
        let w = Tensor::new(&[0.0f32, 1.0], &dev).unwrap();
        let l = weighted_cross_entropy(&logits, &targets, &w)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((l - b).abs() < 1e-5);
    }
}
