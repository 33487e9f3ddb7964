//! Which response state a mechanism's level head reads.
//!
//! The paper's head reads the first response token (RoBERTa's `<s>`, trained for it). The
//! default encoder, all-MiniLM-L6-v2, was trained by sentence-transformers to be read as the
//! mean of its token states: its first token carries no summary until fine-tuning makes one
//! from 2,364 pairs. The mean also takes in what every response token attended to in the seeker
//! post, not only what the first token did, which is what an interpretation is about.

use candle_core::{Result, Tensor, D};
use serde::{Deserialize, Serialize};

/// How the level head pools a response's states (after the cross-attention).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LevelPooling {
    /// The first response token's state, as in the paper.
    #[default]
    First,
    /// The mean of the real tokens' states (padding left out), as sentence-transformers reads
    /// the default encoder.
    Mean,
}

impl LevelPooling {
    pub fn is_first(&self) -> bool {
        *self == Self::First
    }

    /// (batch, hidden) from `states` (batch, tokens, hidden) and their `mask` (batch, tokens),
    /// 1 for real tokens and 0 for padding.
    pub fn pool(self, states: &Tensor, mask: &Tensor) -> Result<Tensor> {
        match self {
            Self::First => states.narrow(1, 0, 1)?.squeeze(1),
            Self::Mean => masked_mean(states, mask),
        }
    }
}

/// The mean over the tokens whose mask is 1, from ops that all have a backward pass. Every row
/// has at least its first token, so no count is 0.
pub(super) fn masked_mean(states: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let mask = mask.to_dtype(states.dtype())?;
    let sum = states.broadcast_mul(&mask.unsqueeze(D::Minus1)?)?.sum(1)?;
    sum.broadcast_div(&mask.sum_keepdim(1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_mean_leaves_padding_out_and_first_takes_the_first_token() {
        let dev = Device::Cpu;
        // Two rows of three tokens, hidden 2; the second row has one padding token, whose
        // state is large so that counting it would show.
        let states = Tensor::new(
            &[
                [[1f32, 2.], [3., 4.], [5., 6.]],
                [[1., -1.], [3., 1.], [100., 100.]],
            ],
            &dev,
        )
        .unwrap();
        let mask = Tensor::new(&[[1f32, 1., 1.], [1., 1., 0.]], &dev).unwrap();
        let mean = LevelPooling::Mean.pool(&states, &mask).unwrap();
        assert_eq!(
            mean.to_vec2::<f32>().unwrap(),
            vec![vec![3., 4.], vec![2., 0.]]
        );
        let first = LevelPooling::First.pool(&states, &mask).unwrap();
        assert_eq!(
            first.to_vec2::<f32>().unwrap(),
            vec![vec![1., 2.], vec![1., -1.]]
        );
    }

    #[test]
    fn the_mean_passes_gradients_to_the_real_tokens_only() {
        let dev = Device::Cpu;
        let states =
            candle_core::Var::from_tensor(&Tensor::new(&[[[1f32], [2.], [3.]]], &dev).unwrap())
                .unwrap();
        let mask = Tensor::new(&[[1f32, 1., 0.]], &dev).unwrap();
        let loss = masked_mean(states.as_tensor(), &mask)
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let g = grads.get(states.as_tensor()).unwrap();
        assert_eq!(
            g.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![0.5, 0.5, 0.]
        );
    }
}
