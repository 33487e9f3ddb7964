//! The layers the encoder and the bi-encoder are built from. Their arithmetic is in
//! [`crate::kernels`], whose fused ops carry their own backward passes, so one code path serves
//! inference and training (candle's fused CPU softmax and layer norm have no backward pass:
//! gradients would stop there without an error). Where candle-nn's composite ops are what is
//! wanted, they are used (the loss's `log_softmax`); the fused kernels replace the others for
//! speed, measured in docs/PERFORMANCE.md, and tests/kernels.rs checks them against candle's
//! ops, values and gradients.

use crate::kernels::{self, AttentionDropout, PackedWeight, QuantizedWeight};
use crate::rng::SplitMix64;
use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use std::sync::Mutex;
use std::sync::{Arc, OnceLock};

/// Whether a forward pass trains (dropout on, drawing from the seeded generator) or infers.
///
/// This stands where candle-nn has `ModuleT::forward_t(x, train: bool)`: a bool cannot carry
/// the run's seeded generator (dropout masks repeat from `--seed`), nor say that inference
/// runs the int8 products.
#[derive(Clone, Copy)]
pub enum Mode<'a> {
    Infer,
    /// Inference with the encoder's products quantized to int8 (`Precision::Int8`).
    Quantized,
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

/// Hugging Face's `nn.Linear` with bias: `x · Wᵀ + b` over the last dimension.
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Weight,
    bias: Tensor,
    /// The weight quantized for int8 inference, made on first use when no gradient can reach
    /// it.
    quantized: Arc<OnceLock<Option<QuantizedWeight>>>,
}

/// A linear layer's weight, (out, in) as Hugging Face stores it.
#[derive(Clone, Debug)]
enum Weight {
    /// A trainable variable: the training kernels read it as stored.
    Trainable(Tensor),
    /// A weight that never changes (a loaded model, the frozen seeker encoder), laid out once
    /// at load for the AVX2 kernel ([`kernels::packed`]). The stored tensor is not kept: a
    /// loaded model held every weight twice, 85 MB for MiniLM's two encoders.
    Packed(Arc<PackedWeight>),
    /// The same, (in, out) row-major for `gemm`: without AVX2, or for outputs narrower than a
    /// panel.
    Transposed {
        values: Arc<Vec<f32>>,
        out: usize,
        inp: usize,
    },
}

impl Weight {
    fn new(weight: Tensor) -> Result<Self> {
        if weight.track_op() {
            return Ok(Self::Trainable(weight));
        }
        let (out, inp) = weight.dims2()?;
        // Packed from the tensor's own storage: a copy beside it would be one more buffer
        // of each weight's size for the allocator to keep.
        if let Some(p) = kernels::with_f32(&weight, "linear", |w| PackedWeight::pack(w, out, inp))?
        {
            return Ok(Self::Packed(Arc::new(p)));
        }
        let values = weight.t()?.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        Ok(Self::Transposed {
            values: Arc::new(values),
            out,
            inp,
        })
    }

    /// The weight as stored, (out, in).
    fn tensor(&self) -> Result<Tensor> {
        match self {
            Self::Trainable(t) => Ok(t.clone()),
            Self::Packed(p) => Tensor::from_vec(
                p.unpack(),
                (p.out_dim(), p.in_dim()),
                &candle_core::Device::Cpu,
            ),
            Self::Transposed { values, out, inp } => {
                Tensor::from_slice(values, (*inp, *out), &candle_core::Device::Cpu)?
                    .t()?
                    .contiguous()
            }
        }
    }
}

impl Linear {
    pub fn load(vb: VarBuilder, in_dim: usize, out_dim: usize) -> Result<Self> {
        let weight = vb.get_with_hints((out_dim, in_dim), "weight", WEIGHT_INIT)?;
        let bias = vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?;
        Ok(Self {
            weight: Weight::new(weight)?,
            bias,
            quantized: Arc::new(OnceLock::new()),
        })
    }

    /// A layer of fixed `weight` (out, in) and `bias` (out), laid out for inference.
    pub fn from_tensors(weight: Tensor, bias: Tensor) -> Result<Self> {
        Ok(Self {
            weight: Weight::new(weight)?,
            bias,
            quantized: Arc::new(OnceLock::new()),
        })
    }

    /// Whether the layer never changes: neither its weight nor its bias is trained.
    pub fn is_frozen(&self) -> bool {
        !matches!(self.weight, Weight::Trainable(_)) && !self.bias.track_op()
    }

    /// The weight as Hugging Face stores it, (out, in).
    pub fn weight(&self) -> Result<Tensor> {
        self.weight.tensor()
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// [`Module::forward`], with int8 products under [`Mode::Quantized`] when nothing needs a
    /// gradient.
    pub fn forward_t(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        if let Mode::Quantized = mode {
            if let Some(q) = self.quantized(x) {
                return kernels::linear_int8(x, q, &self.bias);
            }
        }
        self.forward(x)
    }

    /// `gelu_erf(self.forward_t(x, mode))`, fused into the product where the weight is
    /// packed and nothing needs a gradient.
    pub fn forward_gelu_t(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        if let (Mode::Infer, Weight::Packed(p)) = (mode, &self.weight) {
            if !x.track_op() && !self.bias.track_op() {
                return kernels::linear_packed_gelu(x, p, &self.bias);
            }
        }
        if let Mode::Quantized = mode {
            if let Some(q) = self.quantized(x) {
                return kernels::linear_int8_gelu(x, q, &self.bias);
            }
        }
        kernels::gelu_erf(&self.forward_t(x, mode)?)
    }

    fn quantized(&self, x: &Tensor) -> Option<&QuantizedWeight> {
        if x.track_op() || self.bias.track_op() || matches!(self.weight, Weight::Trainable(_)) {
            return None;
        }
        self.quantized
            .get_or_init(|| {
                let w = self.weight.tensor().ok()?;
                let (out, inp) = w.dims2().ok()?;
                QuantizedWeight::quantize(&w.flatten_all().ok()?.to_vec1::<f32>().ok()?, out, inp)
            })
            .as_ref()
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // With nothing upstream needing a gradient, a weight that has none takes its
        // inference layout.
        let inference = !x.track_op() && !self.bias.track_op();
        match &self.weight {
            Weight::Packed(p) if inference => kernels::linear_packed(x, p, &self.bias),
            Weight::Transposed { values, .. } if inference => {
                kernels::linear_transposed(x, values, &self.bias)
            }
            w => kernels::linear(x, &w.tensor()?, &self.bias),
        }
    }
}

/// Hugging Face's `nn.LayerNorm` over the last dimension.
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

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        kernels::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

impl LayerNorm {
    /// `self(x + residual)`: at inference one fused pass, in training the two ops (the
    /// addition's gradient is candle's).
    pub fn forward_residual(&self, x: &Tensor, residual: &Tensor, mode: Mode) -> Result<Tensor> {
        let tracked = [x, residual, &self.weight, &self.bias]
            .iter()
            .any(|t| t.track_op());
        if mode.is_train() || tracked {
            return self.forward(&(x + residual)?);
        }
        kernels::add_layer_norm(x, residual, &self.weight, &self.bias, self.eps)
    }
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

    /// Dropout of attention probabilities for one attention call: a fresh seed from the
    /// model's generator when training, none when inferring.
    pub fn attention(&self, mode: Mode) -> Option<AttentionDropout> {
        match mode {
            Mode::Train(rng) if self.p > 0.0 => Some(AttentionDropout {
                p: self.p,
                seed: rng.lock().unwrap_or_else(|e| e.into_inner()).next_u64(),
            }),
            _ => None,
        }
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        match mode {
            Mode::Train(rng) if self.p > 0.0 => {
                let seed = rng.lock().unwrap_or_else(|e| e.into_inner()).next_u64();
                kernels::dropout(x, self.p, seed)
            }
            _ => Ok(x.clone()),
        }
    }
}
