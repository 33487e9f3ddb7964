//! Layers written with differentiable candle ops only.
//!
//! candle's fused softmax and layer-norm kernels have no backward pass: gradients stop there
//! without an error, and only the layers above them train. Everything here is composed of
//! elementary ops that candle can differentiate.

use crate::rng::SplitMix64;
use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};
use std::sync::Mutex;

/// Whether a forward pass trains (dropout on, drawing from the seeded generator) or infers.
#[derive(Clone, Copy)]
pub enum Mode<'a> {
    Infer,
    Train(&'a Mutex<SplitMix64>),
}

impl Mode<'_> {
    pub fn is_train(&self) -> bool {
        matches!(self, Mode::Train(_))
    }
}

/// Hugging Face's initialisation for new layers: N(0, 0.02) weights, zero biases.
pub const WEIGHT_INIT: Init = Init::Randn {
    mean: 0.0,
    stdev: 0.02,
};

#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    pub fn load(vb: VarBuilder, in_dim: usize, out_dim: usize) -> Result<Self> {
        let weight = vb.get_with_hints((out_dim, in_dim), "weight", WEIGHT_INIT)?;
        let bias = vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?;
        Ok(Self {
            weight,
            bias: Some(bias),
        })
    }
}

impl Module for Linear {
    /// Folds leading dimensions into one so that each call is a single matrix product.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = dims[dims.len() - 1];
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let x2 = x.reshape((rows, in_dim))?;
        let y = x2.matmul(&self.weight.t()?)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out_dims = dims;
        let last = out_dims.len() - 1;
        out_dims[last] = self.weight.dim(0)?;
        y.reshape(out_dims)
    }
}

#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn load(vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
            eps,
        })
    }
}

impl LayerNorm {
    /// Inference uses candle's fused kernel; training the differentiable composite below.
    pub fn forward_t(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        if mode.is_train() {
            self.forward(x)
        } else {
            candle_nn::ops::layer_norm(&x.contiguous()?, &self.weight, &self.bias, self.eps as f32)
        }
    }
}

impl Module for LayerNorm {
    /// Differentiable (candle's fused layer norm has no backward pass).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let std = (var + self.eps)?.sqrt()?;
        let normed = centered.broadcast_div(&std)?;
        normed
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// Softmax over the last dimension: candle's fused kernel for inference, the differentiable
/// composite for training.
pub fn softmax_last_dim_t(x: &Tensor, mode: Mode) -> Result<Tensor> {
    if mode.is_train() {
        softmax_last_dim(x)
    } else {
        candle_nn::ops::softmax_last_dim(&x.contiguous()?)
    }
}

/// Softmax over the last dimension. The maximum is subtracted for stability and detached:
/// softmax is invariant to the shift, so its gradient would be zero anyway.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let exp = x.broadcast_sub(&max)?.exp()?;
    let sum = exp.sum_keepdim(D::Minus1)?;
    exp.broadcast_div(&sum)
}

/// Log-softmax over the last dimension, differentiable.
pub fn log_softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let log_sum = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&log_sum)
}

/// Inverted dropout with masks drawn from the model's seeded generator.
#[derive(Clone, Copy, Debug)]
pub struct Dropout {
    p: f32,
}

impl Dropout {
    pub fn new(p: f64) -> Self {
        Self { p: p as f32 }
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let rng = match mode {
            Mode::Train(rng) if self.p > 0.0 => rng,
            _ => return Ok(x.clone()),
        };
        let keep = 1.0 / (1.0 - self.p);
        let n = x.elem_count();
        let mask: Vec<f32> = {
            let mut rng = rng.lock().unwrap_or_else(|e| e.into_inner());
            (0..n)
                .map(|_| if rng.next_f32() < self.p { 0.0 } else { keep })
                .collect()
        };
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        x.mul(&mask)
    }
}

/// Additive attention bias from a (batch, keys) 0/1 mask: 0 where attended, a large negative
/// number where masked. Returned as (batch, 1, keys) to broadcast over queries.
pub fn attention_bias(mask: &Tensor) -> Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?;
    ((mask - 1.0)? * 1e9)?.unsqueeze(1)
}
