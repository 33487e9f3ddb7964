//! GELU with the exact (erf) form, as Hugging Face's `GELUActivation` (`hidden_act: "gelu"`).
//!
//! candle's `gelu_erf` runs libm's erf on one thread: at batch 32 × 64 that was the largest
//! single cost of MiniLM's forward pass after the matrix products. Here erf is a rational
//! approximation (error a few 1e-7, far inside the parity tolerance) and the gradient's exp a
//! polynomial, both branch-free so that the loops vectorise.

use super::{contiguous_f32, dispatch_simd, Isa};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Elements per rayon task.
const CHUNK: usize = 1 << 14;

/// `x · Φ(x)`, elementwise.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Gelu)
}

/// e^x for x in about [-87, 88]; relative error about 2e-7. The rounding to the nearest
/// integer uses the 1.5 · 2²³ trick so that no float-to-int conversion is needed.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + MAGIC;
    let n = shifted - MAGIC;
    // Cody-Waite: ln 2 in two parts, so that r = x - n·ln 2 keeps its low bits.
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    let bits = shifted.to_bits().wrapping_sub(MAGIC.to_bits()) as i32;
    p * f32::from_bits(((bits + 127) << 23) as u32)
}

/// erf(x) as a rational function of x on [-4, 4] (beyond, erf is ±1 in f32): the
/// approximation XLA and Eigen use for f32, one division and no exp.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p - 2.101_024e-6;
    p = x2 * p - 5.692_506_4e-5;
    p = x2 * p - 7.349_906_3e-4;
    p = x2 * p - 2.954_6e-3;
    p = x2 * p - 1.609_603_3e-2;
    let mut q = x2 * -1.456_607_2e-5 - 2.133_740_6e-4;
    q = x2 * q - 1.682_827e-3;
    q = x2 * q - 7.373_329e-3;
    q = x2 * q - 1.426_474e-2;
    x * p / q
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / √(2π)
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// `y = gelu(x)`, over the shorter of the two.
fn gelu_into(x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if Isa::best() >= Some(Isa::Avx512) {
        // SAFETY: the CPU has AVX-512 F; both pointers hold `n` values.
        unsafe { gelu_avx512(x.as_ptr(), y.as_mut_ptr(), x.len().min(y.len())) };
        return;
    }
    gelu_into_autovectorised(x, y)
}

/// [`gelu_into`] where its input is its output: the epilogue of a product whose rows are
/// still in L1 ([`super::packed::linear_packed_gelu`]).
pub(crate) fn gelu_in_place(y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if Isa::best() >= Some(Isa::Avx512) {
        let p = y.as_mut_ptr();
        // SAFETY: the CPU has AVX-512 F; each value is read before it is written, through the
        // one pointer.
        unsafe { gelu_avx512(p, p, y.len()) };
        return;
    }
    gelu_in_place_autovectorised(y)
}

dispatch_simd! {
    fn gelu_into_autovectorised(x: &[f32], y: &mut [f32]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = 0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2));
        }
    }
}

dispatch_simd! {
    fn gelu_in_place_autovectorised(y: &mut [f32]) {
        for y in y.iter_mut() {
            let x = *y;
            *y = 0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2));
        }
    }
}

/// GELU of `n` values from `x` into `y` (which may be `x`), 16 at a time, [`erf`]'s quotient
/// taken as `p · (1/q)` with the reciprocal from `vrcp14ps` (14 bits) refined by one Newton
/// step. `vdivps` on 512 bits issues once per about ten cycles, more than the rest of the loop
/// (16 multiply-adds); the division made GELU 3.9% of an f32 forward pass (`perf`, batch
/// 32 × 64, the Intel Xeon of docs/PERFORMANCE.md). The refined reciprocal is within about an
/// ulp of the quotient: the values are the autovectorised loop's within a few 1e-7
/// (`the_avx512_gelu_is_the_portable_one_within_rounding`), not bit for bit.
///
/// # Safety
/// The CPU must have AVX-512 F; `x` and `y` must hold `n` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gelu_avx512(x: *const f32, y: *mut f32, n: usize) {
    use std::arch::x86_64::*;
    let c = _mm512_set1_ps;
    let gelu = |v: __m512| {
        let t = _mm512_mul_ps(v, c(FRAC_1_SQRT_2));
        let t = _mm512_min_ps(_mm512_max_ps(t, c(-4.0)), c(4.0));
        let t2 = _mm512_mul_ps(t, t);
        let mut p = _mm512_fmadd_ps(t2, c(-2.726_142_3e-10), c(2.770_681_4e-8));
        for k in [
            -2.101_024e-6,
            -5.692_506_4e-5,
            -7.349_906_3e-4,
            -2.954_6e-3,
            -1.609_603_3e-2,
        ] {
            p = _mm512_fmadd_ps(t2, p, c(k));
        }
        let mut q = _mm512_fmadd_ps(t2, c(-1.456_607_2e-5), c(-2.133_740_6e-4));
        for k in [-1.682_827e-3, -7.373_329e-3, -1.426_474e-2] {
            q = _mm512_fmadd_ps(t2, q, c(k));
        }
        // r ← r + r·(1 − q·r): the Newton step that doubles the reciprocal's bits.
        let r = _mm512_rcp14_ps(q);
        let r = _mm512_fmadd_ps(r, _mm512_fnmadd_ps(q, r, c(1.0)), r);
        let erf = _mm512_mul_ps(_mm512_mul_ps(t, p), r);
        let half = _mm512_mul_ps(v, c(0.5));
        _mm512_fmadd_ps(half, erf, half)
    };
    let mut i = 0;
    while i + 16 <= n {
        _mm512_storeu_ps(y.add(i), gelu(_mm512_loadu_ps(x.add(i))));
        i += 16;
    }
    if i < n {
        let mask: __mmask16 = (1u16 << (n - i)) - 1;
        let v = _mm512_maskz_loadu_ps(mask, x.add(i));
        _mm512_mask_storeu_ps(y.add(i), mask, gelu(v));
    }
}

dispatch_simd! {
    /// dx = dy · (Φ(x) + x · φ(x)).
    fn gelu_grad_into(x: &[f32], dy: &[f32], dx: &mut [f32]) {
        for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
            let cdf = 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2));
            let pdf = INV_SQRT_2PI * exp(-0.5 * x * x);
            *dx = dy * (cdf + x * pdf);
        }
    }
}

struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "epitome-gelu-erf"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l, "gelu")?;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(y, x)| gelu_into(x, y));
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            x.contiguous()?
                .apply_op2_no_bwd(&grad.contiguous()?, &GeluGrad)?,
        ))
    }
}

/// The gradient of [`Gelu`] as an op of its own, so that it works on storage directly.
struct GeluGrad;

impl CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "epitome-gelu-erf-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(xs, xl, "gelu backward")?;
        let g = contiguous_f32(gs, gl, "gelu backward")?;
        if x.len() != g.len() {
            candle_core::bail!("gelu backward: {} inputs, {} gradients", x.len(), g.len());
        }
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
            .for_each(|(dx, (x, g))| gelu_grad_into(x, g, dx));
        Ok((CpuStorage::F32(dx), xl.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_avx512_gelu_is_the_portable_one_within_rounding() {
        if Isa::best() < Some(Isa::Avx512) {
            return;
        }
        // Every width's tail (n % 16) and the clamped range beyond ±4√2.
        let x: Vec<f32> = (-1000..=1000).map(|i| i as f32 / 100.0).collect();
        for n in [x.len(), 1, 15, 16, 17, 33] {
            let mut fast = vec![f32::NAN; n];
            unsafe { gelu_avx512(x.as_ptr(), fast.as_mut_ptr(), n) };
            let mut portable = vec![0f32; n];
            gelu_into_autovectorised(&x[..n], &mut portable);
            for ((&x, &f), &p) in x.iter().zip(&fast).zip(&portable) {
                assert!(
                    (f - p).abs() <= 4e-7 * x.abs().max(1.0),
                    "gelu({x}): {f} against {p}"
                );
            }
        }
        let mut in_place = x.clone();
        gelu_in_place(&mut in_place);
        let mut apart = vec![0f32; x.len()];
        gelu_into(&x, &mut apart);
        assert_eq!(in_place, apart, "in place and apart differ");
    }

    #[test]
    fn exp_and_erf_are_accurate() {
        for i in -2000..=2000 {
            let x = i as f32 / 100.0;
            let e = exp(x) as f64;
            let want = (x as f64).exp();
            assert!(
                ((e - want) / want).abs() < 5e-7,
                "exp({x}) = {e}, want {want}"
            );
        }
        // erf against a reference computed by its Taylor series in f64.
        for i in -400..=400 {
            let x = i as f64 / 100.0;
            let mut term = x;
            let mut sum = x;
            for n in 1..200 {
                term *= -x * x / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            let want = sum * 2.0 / std::f64::consts::PI.sqrt();
            let got = erf(x as f32) as f64;
            // The approximation's own error and f32 rounding of its two polynomials.
            assert!((got - want).abs() < 5e-7, "erf({x}) = {got}, want {want}");
        }
    }
}
