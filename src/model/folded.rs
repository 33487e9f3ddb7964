//! A mechanism's cross-attention and rationale head with their products multiplied out, for
//! models whose weights never change (a loaded bundle).
//!
//! The attention has one head, so for response state r and seeker states s_j
//!
//! - scores: (W_q r + b_q)·(W_k s_j + b_k) = (W_kᵀW_q r + W_kᵀb_q)·s_j + a term that is the
//!   same for every key of the query, which the softmax ignores;
//! - output: W_o(Σ_j a_j (W_v s_j + b_v)) + b_o = (W_o W_v)(Σ_j a_j s_j) + (W_o b_v + b_o),
//!   as the attention weights a_j sum to 1;
//! - rationale logits: W_R(r + output) + b_R = W_R r + (W_R W_o W_v)(Σ_j a_j s_j) + const.
//!
//! So the response tokens attend straight to the seeker states: no keys or values are computed
//! (they were two products per seeker token per mechanism, for every pair, since a file's
//! seeker cache holds states), and the full output product runs once per response, on the
//! pooled context (the level head's), every other token needing two columns of it. Equal to
//! the unfolded heads up to rounding; training keeps them unfolded, as the products of
//! learned weights.

use super::pooling::LevelPooling;
use crate::encoder::layers::Linear;
use candle_core::{DType, Module, Result, Tensor};

pub(super) struct FoldedAttention {
    /// r ↦ W_kᵀ(W_q r + b_q): the query in the seeker states' space.
    query: Linear,
    /// Σ_j a_j s_j ↦ the attention's output, W_o(W_v · + b_v) + b_o.
    output: Linear,
    /// r ↦ its rationale logits without the attention's part, W_R(r + W_o b_v + b_o) + b_R.
    rationale_response: Linear,
    /// Σ_j a_j s_j ↦ the attention's part of the rationale logits, W_R W_o W_v.
    rationale_context: Linear,
}

/// What the level and rationale heads take from the response states and the attention.
pub(super) struct FoldedOutputs {
    /// (batch, hidden): the pooled response state after the residual attention.
    pub pooled: Tensor,
    /// (batch, response tokens, 2)
    pub rationale: Tensor,
}

impl FoldedAttention {
    /// The folded form of the layers, or `None` when any of them trains (its products would go
    /// stale).
    pub fn fold(
        q: &Linear,
        k: &Linear,
        v: &Linear,
        out: &Linear,
        rationale: &Linear,
    ) -> Result<Option<Self>> {
        if ![q, k, v, out, rationale].iter().all(|l| l.is_frozen()) {
            return Ok(None);
        }
        // In f64, so that the folded weights round once, to f32, at the end.
        let weight = |l: &Linear| l.weight()?.to_dtype(DType::F64);
        let bias = |l: &Linear| l.bias().to_dtype(DType::F64)?.unsqueeze(1);
        let (wq, wk, wv, wo, wr) = (
            weight(q)?,
            weight(k)?,
            weight(v)?,
            weight(out)?,
            weight(rationale)?,
        );
        let wk_t = wk.t()?.contiguous()?;
        let query_w = wk_t.matmul(&wq)?;
        let query_b = wk_t.matmul(&bias(q)?)?;
        let output_w = wo.matmul(&wv)?;
        let output_b = (wo.matmul(&bias(v)?)? + bias(out)?)?;
        let rationale_b = (wr.matmul(&output_b)? + bias(rationale)?)?;
        let rationale_context_w = wr.matmul(&output_w)?;
        let zeros = rationale_b.zeros_like()?;
        let linear = |w: &Tensor, b: &Tensor| {
            Linear::from_tensors(
                w.to_dtype(DType::F32)?.contiguous()?,
                b.squeeze(1)?.to_dtype(DType::F32)?,
            )
        };
        Ok(Some(Self {
            query: linear(&query_w, &query_b)?,
            output: linear(&output_w, &output_b)?,
            rationale_response: linear(&wr, &rationale_b)?,
            rationale_context: linear(&rationale_context_w, &zeros)?,
        }))
    }

    /// Queries of the response states (batch, response tokens, hidden), to attend with.
    pub fn queries(&self, response: &Tensor) -> Result<Tensor> {
        self.query.forward(response)
    }

    /// The pooled state and the rationale logits, from the response states, the raw context
    /// (batch, response tokens, hidden) that the queries attended to, and the response mask.
    /// The attention's output is affine in the context, so pooling the context first and
    /// applying it once equals pooling its outputs: one row's product per response, not one
    /// per token.
    pub fn outputs(
        &self,
        response: &Tensor,
        context: &Tensor,
        pooling: LevelPooling,
        mask: &Tensor,
    ) -> Result<FoldedOutputs> {
        let pooled_context = pooling.pool(context, mask)?;
        let pooled_response = pooling.pool(response, mask)?;
        let pooled = (pooled_response + self.output.forward(&pooled_context)?)?;
        let rationale = (self.rationale_response.forward(response)?
            + self.rationale_context.forward(context)?)?;
        Ok(FoldedOutputs { pooled, rationale })
    }
}
