//! Layer normalisation over the last dimension, as PyTorch's `nn.LayerNorm`.

use super::{chunk_rows, contiguous_f32, dispatch_simd, dot, sum, tensor, with_f32};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Rows per task of the weight-gradient sums. Fixed, not derived from the thread count, so
/// that the sums add up in the same order on every machine and training is reproducible.
const GRAD_ROWS: usize = 64;

/// `(x - mean) / sqrt(var + eps) · weight + bias` over the last dimension of `x`.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        LayerNorm { eps: eps as f32 },
    )
}

/// `layer_norm(x + residual)` for inference, in one pass: the sum is never a tensor of its own,
/// and no gradient is recorded. Each value is what the two ops give one after the other.
/// (candle's addition of two large tensors runs on candle's own thread pool, whose spinning
/// worker competed with the encoder threads for the cores: 7% of `predict`'s profile.)
pub fn add_layer_norm(
    x: &Tensor,
    residual: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    if x.dims() != residual.dims() {
        candle_core::bail!(
            "layer norm: input {:?} and residual {:?} differ",
            x.dims(),
            residual.dims()
        );
    }
    let eps = eps as f32;
    let y = with_f32(x, "layer norm", |xv| {
        with_f32(residual, "layer norm", |rv| {
            with_f32(weight, "layer norm", |w| {
                with_f32(bias, "layer norm", |b| {
                    let h = check(x.layout(), w, b)?;
                    let chunk = chunk_rows(xv.len() / h.max(1), 8) * h;
                    let mut y = vec![0f32; xv.len()];
                    y.par_chunks_mut(chunk)
                        .zip(xv.par_chunks(chunk).zip(rv.par_chunks(chunk)))
                        .for_each(|(y, (x, r))| add_normalize_rows(x, r, w, b, eps, y));
                    Ok::<_, candle_core::Error>(y)
                })
            })
        })
    })?????;
    tensor(y, x.shape().clone())
}

struct LayerNorm {
    eps: f32,
}

/// Mean and 1/std of a row, two-pass as PyTorch computes them.
#[inline(always)]
fn moments(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = sum(x) / n;
    let mut lanes = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|&v| (v - mean) * (v - mean))
        .sum();
    for c in chunks {
        for i in 0..8 {
            lanes[i] += (c[i] - mean) * (c[i] - mean);
        }
    }
    let var = (lanes.iter().sum::<f32>() + tail) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

dispatch_simd! {
    fn normalize_rows(x: &[f32], w: &[f32], b: &[f32], eps: f32, y: &mut [f32]) {
        let h = w.len();
        for (x, y) in x.chunks_exact(h).zip(y.chunks_exact_mut(h)) {
            let (mean, rstd) = moments(x, eps);
            for (((y, &x), &w), &b) in y.iter_mut().zip(x).zip(w).zip(b) {
                *y = (x - mean) * rstd * w + b;
            }
        }
    }
}

dispatch_simd! {
    fn add_normalize_rows(x: &[f32], r: &[f32], w: &[f32], b: &[f32], eps: f32, y: &mut [f32]) {
        let h = w.len();
        for ((x, r), y) in x.chunks_exact(h).zip(r.chunks_exact(h)).zip(y.chunks_exact_mut(h)) {
            for ((y, &x), &r) in y.iter_mut().zip(x).zip(r) {
                *y = x + r;
            }
            let (mean, rstd) = moments(y, eps);
            for ((y, &w), &b) in y.iter_mut().zip(w).zip(b) {
                *y = (*y - mean) * rstd * w + b;
            }
        }
    }
}

dispatch_simd! {
    /// dx for rows of x and dy, and the rows' contributions to dw and db (added into them).
    fn backward_rows(
        x: &[f32],
        dy: &[f32],
        w: &[f32],
        eps: f32,
        dx: &mut [f32],
        dw: &mut [f32],
        db: &mut [f32],
    ) {
        let h = w.len();
        let n = h as f32;
        let mut g = vec![0f32; h];
        let mut xhat = vec![0f32; h];
        for ((x, dy), dx) in x.chunks_exact(h).zip(dy.chunks_exact(h)).zip(dx.chunks_exact_mut(h)) {
            let (mean, rstd) = moments(x, eps);
            for i in 0..h {
                xhat[i] = (x[i] - mean) * rstd;
                g[i] = dy[i] * w[i];
                dw[i] += dy[i] * xhat[i];
                db[i] += dy[i];
            }
            let (mean_g, mean_gx) = (sum(&g) / n, dot(&g, &xhat) / n);
            for i in 0..h {
                dx[i] = rstd * (g[i] - mean_g - xhat[i] * mean_gx);
            }
        }
    }
}

fn check(x: &Layout, w: &[f32], b: &[f32]) -> Result<usize> {
    let h = w.len();
    if b.len() != h || x.shape().dims().last() != Some(&h) {
        candle_core::bail!(
            "layer norm: input {:?} with weight {h} and bias {}",
            x.shape().dims(),
            b.len()
        );
    }
    Ok(h)
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "epitome-layer-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(xs, xl, "layer norm")?;
        let w = contiguous_f32(ws, wl, "layer norm")?;
        let b = contiguous_f32(bs, bl, "layer norm")?;
        let h = check(xl, w, b)?;
        let rows = x.len() / h.max(1);
        let chunk = chunk_rows(rows, 8) * h;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .for_each(|(y, x)| normalize_rows(x, w, b, self.eps, y));
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let h = w.elem_count();
        let eps = self.eps;
        let (dx, dw, db) = with_f32(x, "layer norm backward", |xv| {
            with_f32(grad, "layer norm backward", |g| {
                with_f32(w, "layer norm backward", |wv| {
                    let mut dx = vec![0f32; xv.len()];
                    let chunk = GRAD_ROWS * h;
                    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
                        .par_chunks_mut(chunk)
                        .zip(xv.par_chunks(chunk).zip(g.par_chunks(chunk)))
                        .map(|(dx, (x, g))| {
                            let (mut dw, mut db) = (vec![0f32; h], vec![0f32; h]);
                            backward_rows(x, g, wv, eps, dx, &mut dw, &mut db);
                            (dw, db)
                        })
                        .collect();
                    let (mut dw, mut db) = (vec![0f32; h], vec![0f32; h]);
                    for (pw, pb) in &partials {
                        for i in 0..h {
                            dw[i] += pw[i];
                            db[i] += pb[i];
                        }
                    }
                    (dx, dw, db)
                })
            })
        })???;
        Ok((
            Some(tensor(dx, x.shape().clone())?),
            Some(tensor(dw, h)?),
            Some(tensor(db, h)?),
        ))
    }
}
