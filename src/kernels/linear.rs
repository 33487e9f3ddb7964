//! `y = x · Wᵀ + b`, as Hugging Face's `nn.Linear`, with the bias added inside the product.

use super::matmul::{matmul, Mat, Threads};
use super::{contiguous_f32, dispatch_simd, tensor, with_f32, with_last_dim};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

/// `x` (..., in), `weight` (out, in), `bias` (out) → (..., out).
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, Linear)
}

/// [`linear`] for inference, against the weight stored transposed, (in, out) row-major.
/// `gemm` computes a row-major product as its transpose, `W · xᵀ`, and its micro-kernel reads
/// the left operand by columns: from W as stored, (out, in), it gathers every element one by
/// one (21% of a 64-token forward pass on one thread); from Wᵀ it copies whole columns.
/// No gradient flows through it.
pub fn linear_transposed(x: &Tensor, weight_t: &[f32], bias: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    let inp = *dims.last().unwrap_or(&0);
    let out = bias.elem_count();
    if weight_t.len() != inp * out {
        candle_core::bail!("linear: input {dims:?} does not fit a {inp} × {out} weight");
    }
    let y = with_f32(x, "linear", |xv| {
        with_f32(bias, "linear", |b| {
            biased_product(xv, inp, Mat::rows(weight_t, out), b)
        })
    })??;
    tensor(y, with_last_dim(dims, out))
}

/// The rows of `x` (`inp` wide) times `w` (inp × bias.len()), plus `bias` on every row: the
/// output starts as the bias and the product adds into it.
fn biased_product(x: &[f32], inp: usize, w: Mat, bias: &[f32]) -> Vec<f32> {
    let (rows, out) = (x.len() / inp.max(1), bias.len());
    let mut y = Vec::with_capacity(rows * out);
    for _ in 0..rows {
        y.extend_from_slice(bias);
    }
    matmul(
        &mut y,
        out,
        rows,
        out,
        inp,
        true,
        1.0,
        Mat::rows(x, inp),
        w,
        Threads::All,
    );
    y
}

struct Linear;

fn dims(x: &Layout, w: &Layout) -> Result<(usize, usize, usize, Shape)> {
    let (out, inp) = w.shape().dims2()?;
    let xd = x.shape().dims();
    if xd.last() != Some(&inp) {
        candle_core::bail!("linear: input {:?} does not end in {inp}", xd);
    }
    let rows = x.shape().elem_count() / inp.max(1);
    Ok((rows, inp, out, with_last_dim(xd, out).into()))
}

dispatch_simd! {
    fn add_rows_into(sum: &mut [f32], rows: &[f32]) {
        for row in rows.chunks_exact(sum.len()) {
            for (s, &v) in sum.iter_mut().zip(row) {
                *s += v;
            }
        }
    }
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "epitome-linear"
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
        let (rows, inp, out, shape) = dims(xl, wl)?;
        let x = contiguous_f32(xs, xl, "linear")?;
        let w = contiguous_f32(ws, wl, "linear")?;
        let b = contiguous_f32(bs, bl, "linear")?;
        if b.len() != out {
            candle_core::bail!("linear: bias of {} for {out} outputs", b.len());
        }
        debug_assert_eq!(x.len(), rows * inp);
        let y = biased_product(x, inp, Mat::transposed(w, inp), b);
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (out, inp) = w.dims2()?;
        let rows = x.elem_count() / inp.max(1);
        let (dx, dw, db) = with_f32(grad, "linear backward", |g| {
            with_f32(x, "linear backward", |xv| {
                with_f32(w, "linear backward", |wv| {
                    let mut dx = vec![0f32; rows * inp];
                    matmul(
                        &mut dx,
                        inp,
                        rows,
                        inp,
                        out,
                        false,
                        1.0,
                        Mat::rows(g, out),
                        Mat::rows(wv, inp),
                        Threads::All,
                    );
                    let mut dw = vec![0f32; out * inp];
                    matmul(
                        &mut dw,
                        inp,
                        out,
                        inp,
                        rows,
                        false,
                        1.0,
                        Mat::transposed(g, out),
                        Mat::rows(xv, inp),
                        Threads::All,
                    );
                    let mut db = vec![0f32; out];
                    add_rows_into(&mut db, g);
                    (dx, dw, db)
                })
            })
        })???;
        Ok((
            Some(tensor(dx, x.shape().clone())?),
            Some(tensor(dw, (out, inp))?),
            Some(tensor(db, out)?),
        ))
    }
}
