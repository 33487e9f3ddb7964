//! AdamW with decoupled weight decay, updating each parameter in one pass over its values.
//!
//! candle-nn's AdamW builds about a dozen temporary tensors per parameter and step; on a
//! 2-core CPU that was a sixth of a MiniLM training step. Here the moments live in plain vectors
//! and each parameter is updated where it is stored: read, updated and written once.

use crate::kernels::dispatch_simd;
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, InplaceOp1, Layout, Result, Var};
use rayon::prelude::*;
use std::cell::RefCell;

/// Flattened gradients, one entry per optimised variable; `None` where a variable got none.
pub type Gradients = Vec<Option<Vec<f32>>>;

pub struct AdamW {
    vars: Vec<Var>,
    /// Each variable's learning rate as a multiple of the step's (1 unless set).
    lr_scales: Vec<f64>,
    first: Vec<Vec<f32>>,
    second: Vec<Vec<f32>>,
    step: i32,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamW {
    pub fn new(vars: Vec<Var>, weight_decay: f64, eps: f64) -> Self {
        let first = vars.iter().map(|v| vec![0f32; v.elem_count()]).collect();
        let second = vars.iter().map(|v| vec![0f32; v.elem_count()]).collect();
        Self {
            lr_scales: vec![1.0; vars.len()],
            vars,
            first,
            second,
            step: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps,
            weight_decay,
        }
    }

    /// Each variable's learning rate as `scale(index)` times the step's: new layers may learn
    /// faster than the pretrained ones they sit on.
    pub fn with_lr_scales(mut self, scale: impl Fn(usize) -> f64) -> Self {
        self.lr_scales = (0..self.vars.len()).map(scale).collect();
        self
    }

    /// The gradients of the optimised variables, flattened; `None` where a variable got none.
    pub fn gradients(&self, grads: &GradStore) -> Result<Gradients> {
        self.vars
            .iter()
            .map(|v| {
                grads
                    .get(v.as_tensor())
                    .map(|g| g.flatten_all()?.to_vec1::<f32>())
                    .transpose()
            })
            .collect()
    }

    /// Global L2 norm of the gradients, as `torch.nn.utils.clip_grad_norm_` computes it.
    /// Each variable's sum is its own task (the same sums, added in the same order).
    pub fn global_norm(gradients: &[Option<Vec<f32>>]) -> f64 {
        let sums: Vec<f64> = gradients
            .par_iter()
            .flatten()
            .map(|g| g.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>())
            .collect();
        sums.iter().sum::<f64>().sqrt()
    }

    /// The gradients' global norm and the factor that clips it to `max_norm`, as
    /// `torch.nn.utils.clip_grad_norm_` scales: 1 when the norm is within it.
    pub fn clipping(gradients: &[Option<Vec<f32>>], max_norm: f64) -> (f64, f64) {
        let norm = Self::global_norm(gradients);
        let scale = if norm > max_norm {
            max_norm / (norm + 1e-6)
        } else {
            1.0
        };
        (norm, scale)
    }

    /// One update at learning rate `lr`, gradients scaled by `grad_scale` (clipping).
    pub fn step(&mut self, gradients: &[Option<Vec<f32>>], lr: f64, grad_scale: f64) -> Result<()> {
        self.step += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let bias1 = 1.0 - b1.powi(self.step);
        let bias2 = 1.0 - b2.powi(self.step);
        let constants = |lr: f64| Constants {
            b1: b1 as f32,
            b2: b2 as f32,
            scale: grad_scale as f32,
            decay: (1.0 - lr * self.weight_decay) as f32,
            step_size: (lr / bias1) as f32,
            inv_sqrt_bias2: (1.0 / bias2.sqrt()) as f32,
            eps: self.eps as f32,
        };
        // Parameters update independently: one rayon task each (the large ones dominate).
        self.vars
            .par_iter()
            .zip(&self.lr_scales)
            .zip(self.first.par_iter_mut().zip(self.second.par_iter_mut()))
            .zip(gradients.par_iter())
            .try_for_each(|(((var, &lr_scale), (m, v)), g)| -> Result<()> {
                let Some(g) = g else { return Ok(()) };
                var.as_tensor().inplace_op1(&Update {
                    gradient: g,
                    moments: RefCell::new((m, v)),
                    constants: constants(lr * lr_scale),
                })
            })?;
        Ok(())
    }
}

/// The learning rate at step `step` (from 0) of `total`: a linear warm-up over the first
/// `warmup` share of the steps, then a linear decay to 0 at the last.
pub fn linear_schedule(lr: f64, warmup: f64, step: usize, total: usize) -> f64 {
    let (step, total) = (step as f64, total.max(1) as f64);
    let warm = (warmup * total).round();
    let factor = if step < warm {
        (step + 1.0) / warm
    } else {
        ((total - step) / (total - warm).max(1.0)).max(0.0)
    };
    lr * factor
}

#[derive(Clone, Copy)]
struct Constants {
    b1: f32,
    b2: f32,
    scale: f32,
    decay: f32,
    step_size: f32,
    inv_sqrt_bias2: f32,
    eps: f32,
}

/// One variable's update, applied to its storage in place: the variable's values are not
/// copied out and back (two copies of every parameter per step, the word embeddings' 47 MB
/// among them). `InplaceOp1::cpu_fwd` takes `&self`, hence the cell around the moments.
struct Update<'a> {
    gradient: &'a [f32],
    moments: RefCell<(&'a mut Vec<f32>, &'a mut Vec<f32>)>,
    constants: Constants,
}

impl InplaceOp1 for Update<'_> {
    fn name(&self) -> &'static str {
        "epitome-adamw"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let CpuStorage::F32(values) = storage else {
            candle_core::bail!("adamw: expected an f32 parameter");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("adamw: the parameter must be contiguous");
        };
        let theta = &mut values[start..end];
        let (m, v) = &mut *self.moments.borrow_mut();
        if theta.len() != self.gradient.len() || theta.len() != m.len() || m.len() != v.len() {
            candle_core::bail!(
                "adamw: {} values, {} gradients, {} and {} moments",
                theta.len(),
                self.gradient.len(),
                m.len(),
                v.len()
            );
        }
        update(theta, self.gradient, m, v, self.constants);
        Ok(())
    }
}

dispatch_simd! {
    /// AdamW on one parameter's values. The arithmetic is the scalar loop's, element by
    /// element in the same order (LLVM contracts nothing into fused multiply-adds), so the
    /// vector code gives the same values.
    fn update(theta: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: Constants) {
        let (one_minus_b1, one_minus_b2) = (1.0 - c.b1, 1.0 - c.b2);
        for (((t, &g), m), v) in theta.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let gi = g * c.scale;
            *m = c.b1 * *m + one_minus_b1 * gi;
            *v = c.b2 * *v + one_minus_b2 * gi * gi;
            let denom = v.sqrt() * c.inv_sqrt_bias2 + c.eps;
            *t = *t * c.decay - c.step_size * *m / denom;
        }
    }
}
