//! Inverted dropout whose mask is a hash of (seed, element index): drawn in parallel, the same
//! on every thread count, and never stored, since the backward pass draws it again.

use super::{contiguous_f32, dispatch_simd};
use crate::rng;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

const CHUNK: usize = 1 << 14;

/// Zeroes each element of `x` with probability `p` and scales the rest by 1 / (1 − p).
pub fn dropout(x: &Tensor, p: f32, seed: u64) -> Result<Tensor> {
    if p <= 0.0 {
        return Ok(x.clone());
    }
    x.contiguous()?.apply_op1(Dropout { p, seed })
}

#[derive(Clone, Copy)]
struct Dropout {
    p: f32,
    seed: u64,
}

/// The multiplier of element `index`: 0 with probability `p`, else 1 / (1 − p).
#[inline(always)]
pub(crate) fn keep_factor(seed: u64, index: u64, p: f32) -> f32 {
    let u = rng::unit_f32(rng::mix64(seed ^ index.wrapping_mul(rng::GOLDEN_GAMMA)));
    if u < p {
        0.0
    } else {
        1.0 / (1.0 - p)
    }
}

dispatch_simd! {
    fn apply_into(x: &[f32], first: u64, seed: u64, p: f32, y: &mut [f32]) {
        for (i, (y, &x)) in y.iter_mut().zip(x).enumerate() {
            *y = x * keep_factor(seed, first + i as u64, p);
        }
    }
}

impl Dropout {
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .enumerate()
            .for_each(|(c, (y, x))| apply_into(x, (c * CHUNK) as u64, self.seed, self.p, y));
        y
    }
}

impl CustomOp1 for Dropout {
    fn name(&self) -> &'static str {
        "epitome-dropout"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l, "dropout")?;
        Ok((CpuStorage::F32(self.apply(x)), l.shape().clone()))
    }

    /// The same mask on the gradient: the op is linear in its input.
    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(self)?))
    }
}
