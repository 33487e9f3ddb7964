//! Scaled dot-product attention over heads, fused: scores, key mask, softmax, dropout and the
//! weighted sum of values in one pass per (batch row, head), the gradient likewise. It serves
//! both the encoder's multi-head self-attention (Hugging Face's `BertSelfAttention`) and the
//! bi-encoder's one-head attention from response tokens to seeker tokens.
//!
//! Nothing of size tokens² is kept between the forward and the backward pass: the backward
//! pass recomputes the probabilities (a small product next to the gradient's four), and
//! dropout masks come from a hash of the position, so they need not be stored either.

use super::dropout::keep_factor;
use super::matmul::{matmul, matmul_raw, Mat, Threads};
use super::{contiguous_f32, dispatch_simd, dot, softmax_rows, tensor, with_f32, SharedMut};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Dropout on the attention probabilities, drawn from `seed` by position.
#[derive(Clone, Copy, Debug)]
pub struct AttentionDropout {
    pub p: f32,
    pub seed: u64,
}

/// `q` (batch, queries, heads·d), `k` and `v` (batch, keys, heads·d) → (batch, queries,
/// heads·d): each head's softmax(q kᵀ / √d) v over the first `key_lengths[b]` keys of row b.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    key_lengths: &[usize],
    dropout: Option<AttentionDropout>,
) -> Result<Tensor> {
    let op = Attention {
        heads,
        key_lengths: key_lengths.to_vec(),
        dropout: dropout.filter(|d| d.p > 0.0),
    };
    q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, op)
}

struct Attention {
    heads: usize,
    key_lengths: Vec<usize>,
    dropout: Option<AttentionDropout>,
}

#[derive(Clone, Copy)]
struct Dims {
    batch: usize,
    queries: usize,
    keys: usize,
    hidden: usize,
    head_dim: usize,
}

impl Dims {
    /// Where head h of batch row b starts in q (and in the output).
    fn query_offset(&self, b: usize, h: usize) -> usize {
        b * self.queries * self.hidden + h * self.head_dim
    }

    /// Where head h of batch row b starts in k and v.
    fn key_offset(&self, b: usize, h: usize) -> usize {
        b * self.keys * self.hidden + h * self.head_dim
    }
}

impl Attention {
    fn dims(&self, q: &Shape, k: &Shape, v: &Shape) -> Result<Dims> {
        let (batch, queries, hidden) = q.dims3()?;
        let (kb, keys, kh) = k.dims3()?;
        if (kb, keys, kh) != v.dims3()? || kb != batch || kh != hidden {
            candle_core::bail!("attention: q {q:?}, k {k:?}, v {v:?} do not fit");
        }
        if self.heads == 0 || hidden % self.heads != 0 {
            candle_core::bail!(
                "attention: {hidden} is not a multiple of {} heads",
                self.heads
            );
        }
        if self.key_lengths.len() != batch || self.key_lengths.iter().any(|&l| l > keys) {
            candle_core::bail!("attention: key lengths do not fit {batch} rows of {keys} keys");
        }
        Ok(Dims {
            batch,
            queries,
            keys,
            hidden,
            head_dim: hidden / self.heads,
        })
    }

    fn scale(&self, d: Dims) -> f32 {
        1.0 / (d.head_dim as f32).sqrt()
    }

    /// The multiplier of each kept probability under dropout, 0 for a dropped one.
    fn dropout_factor(&self, d: Dims, task: usize, i: usize, j: usize) -> f32 {
        match self.dropout {
            None => 1.0,
            Some(AttentionDropout { p, seed }) => {
                keep_factor(seed, ((task * d.queries + i) * d.keys + j) as u64, p)
            }
        }
    }

    /// The (queries × len) probabilities of one (row, head), before dropout.
    fn probabilities(&self, d: Dims, q: &[f32], k: &[f32], b: usize, h: usize) -> Vec<f32> {
        let len = self.key_lengths[b];
        let mut p = vec![0f32; d.queries * len];
        let (q_off, k_off) = (d.query_offset(b, h), d.key_offset(b, h));
        matmul(
            &mut p,
            len,
            d.queries,
            len,
            d.head_dim,
            false,
            self.scale(d),
            Mat::rows(&q[q_off..], d.hidden),
            Mat::transposed(&k[k_off..], d.hidden),
            Threads::One,
        );
        softmax_rows(&mut p, len);
        p
    }

    fn apply_dropout(&self, d: Dims, p: &mut [f32], task: usize, len: usize) {
        if self.dropout.is_some() && len > 0 {
            for (i, row) in p.chunks_exact_mut(len).enumerate() {
                for (j, x) in row.iter_mut().enumerate() {
                    *x *= self.dropout_factor(d, task, i, j);
                }
            }
        }
    }
}

dispatch_simd! {
    /// dS = P ∘ (dP − rowsum(dP ∘ P)), in place of dP.
    fn softmax_backward_rows(dp: &mut [f32], p: &[f32], len: usize) {
        for (ds, p) in dp.chunks_exact_mut(len).zip(p.chunks_exact(len)) {
            let d = dot(ds, p);
            for (x, &p) in ds.iter_mut().zip(p) {
                *x = p * (*x - d);
            }
        }
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "epitome-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = self.dims(ql.shape(), kl.shape(), vl.shape())?;
        let q = contiguous_f32(qs, ql, "attention")?;
        let k = contiguous_f32(ks, kl, "attention")?;
        let v = contiguous_f32(vs, vl, "attention")?;
        let mut out = vec![0f32; d.batch * d.queries * d.hidden];
        let dst = SharedMut(out.as_mut_ptr());
        (0..d.batch * self.heads).into_par_iter().for_each(|task| {
            let (b, h) = (task / self.heads, task % self.heads);
            let len = self.key_lengths[b];
            let mut p = self.probabilities(d, q, k, b, h);
            self.apply_dropout(d, &mut p, task, len);
            let (o_off, v_off) = (d.query_offset(b, h), d.key_offset(b, h));
            // SAFETY: task (b, h) writes only row b's columns of head h, inside `out`.
            unsafe {
                matmul_raw(
                    dst.get().add(o_off),
                    d.hidden,
                    d.queries,
                    d.head_dim,
                    len,
                    false,
                    1.0,
                    Mat::rows(&p, len.max(1)),
                    Mat::rows(&v[v_off..], d.hidden),
                )
            };
        });
        Ok((CpuStorage::F32(out), ql.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = self.dims(q.shape(), k.shape(), v.shape())?;
        let scale = self.scale(d);
        let (dq, dk, dv) = with_f32(q, "attention backward", |q| {
            with_f32(k, "attention backward", |k| {
                with_f32(v, "attention backward", |v| {
                    with_f32(grad, "attention backward", |g| {
                        let mut dq = vec![0f32; q.len()];
                        let mut dk = vec![0f32; k.len()];
                        let mut dv = vec![0f32; v.len()];
                        let (pq, pk, pv) = (
                            SharedMut(dq.as_mut_ptr()),
                            SharedMut(dk.as_mut_ptr()),
                            SharedMut(dv.as_mut_ptr()),
                        );
                        (0..d.batch * self.heads).into_par_iter().for_each(|task| {
                            let (b, h) = (task / self.heads, task % self.heads);
                            let len = self.key_lengths[b];
                            if len == 0 {
                                return;
                            }
                            let (q_off, k_off) = (d.query_offset(b, h), d.key_offset(b, h));
                            let p = self.probabilities(d, q, k, b, h);
                            let mut dropped = p.clone();
                            self.apply_dropout(d, &mut dropped, task, len);
                            let g = Mat::rows(&g[q_off..], d.hidden);
                            // SAFETY (all three writes): task (b, h) writes only row b's
                            // columns of head h in each gradient, inside its buffer.
                            unsafe {
                                // dV = P'ᵀ · dO
                                matmul_raw(
                                    pv.get().add(k_off),
                                    d.hidden,
                                    len,
                                    d.head_dim,
                                    d.queries,
                                    false,
                                    1.0,
                                    Mat::transposed(&dropped, len),
                                    g,
                                );
                            }
                            // dP' = dO · Vᵀ, then through dropout and softmax.
                            let mut ds = vec![0f32; d.queries * len];
                            matmul(
                                &mut ds,
                                len,
                                d.queries,
                                len,
                                d.head_dim,
                                false,
                                1.0,
                                g,
                                Mat::transposed(&v[k_off..], d.hidden),
                                Threads::One,
                            );
                            self.apply_dropout(d, &mut ds, task, len);
                            softmax_backward_rows(&mut ds, &p, len);
                            unsafe {
                                // dQ = dS · K · scale
                                matmul_raw(
                                    pq.get().add(q_off),
                                    d.hidden,
                                    d.queries,
                                    d.head_dim,
                                    len,
                                    false,
                                    scale,
                                    Mat::rows(&ds, len),
                                    Mat::rows(&k[k_off..], d.hidden),
                                );
                                // dK = dSᵀ · Q · scale
                                matmul_raw(
                                    pk.get().add(k_off),
                                    d.hidden,
                                    len,
                                    d.head_dim,
                                    d.queries,
                                    false,
                                    scale,
                                    Mat::transposed(&ds, len),
                                    Mat::rows(&q[q_off..], d.hidden),
                                );
                            }
                        });
                        (dq, dk, dv)
                    })
                })
            })
        })????;
        Ok((
            Some(tensor(dq, q.shape().clone())?),
            Some(tensor(dk, k.shape().clone())?),
            Some(tensor(dv, v.shape().clone())?),
        ))
    }
}
