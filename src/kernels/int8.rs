//! Quantized inference products: int8 weights (per output channel), activations quantized per
//! row to u8 when the product runs, i32 accumulation, f32 everywhere else (bias, norms,
//! softmax, GELU). Selected per run (`--precision int8`); fp32 stays the default.
//!
//! The micro-kernel is AVX2's u8 × i8 multiply-add (`vpmaddubsw`, 32 products per
//! instruction, summed in pairs to i16) followed by `vpmaddwd` against ones (to i32): 4 k of
//! 16 columns for a row in six instructions, where f32 needs eight fused multiply-adds. The
//! pair sums saturate at ±32767, so weights use 7 bits (±63): 2 · 255 · 63 < 32767, the
//! "reduce range" that ONNX Runtime recommends for AVX2 without VNNI.
//!
//! With AVX-512 VNNI, `vpdpbusd` adds four u8 × i8 products straight into i32 (64 products per
//! instruction, nothing saturates), so weights keep all 8 bits (±127): half the rounding error
//! of 7 bits, and a quarter of the instructions per product.

use super::{dispatch_simd, for_each_block, linear_product, max, min, Isa, SharedMut};
use candle_core::{Result, Tensor};
use rayon::prelude::*;

/// Output columns per panel.
const NR: usize = 16;
/// Rows per AVX2 tile: 4 × 2 accumulators, 2 weight registers, the broadcast input and the
/// ones.
const MR_AVX2: usize = 4;
/// Rows per VNNI tile, which spans two panels: 12 × 2 accumulators and 2 weight registers of
/// AVX-512's 32.
const MR_VNNI: usize = 12;
/// Rows per block: their quantized values (64 × in bytes) stay in the L2 cache while every
/// panel passes over them.
const ROW_BLOCK: usize = 64;

/// A (out, in) weight quantized per output channel, in panels of [`NR`] columns; within a
/// panel, groups of 4 k, each 16 columns × 4 bytes.
#[derive(Debug)]
pub struct QuantizedWeight {
    out: usize,
    inp: usize,
    /// `inp` rounded up to a multiple of 4.
    kp: usize,
    data: Vec<i8>,
    /// Per output column, padded with 1 to whole panels.
    scales: Vec<f32>,
    /// Σ_k of each column's quantized weights, for the activations' zero point; padded with 0.
    col_sums: Vec<i32>,
    /// The micro-kernel that multiplies by it: VNNI's, or AVX2's (for any other set).
    isa: Isa,
}

impl QuantizedWeight {
    /// `None` when the CPU lacks AVX2 (the f32 path runs instead).
    pub fn quantize(w: &[f32], out: usize, inp: usize) -> Option<Self> {
        Self::quantize_for(w, out, inp, Isa::best()?)
    }

    /// As [`QuantizedWeight::quantize`], for the micro-kernel of `isa` (which tests compare
    /// with the others); `None` also when the CPU cannot run it.
    pub fn quantize_for(w: &[f32], out: usize, inp: usize, isa: Isa) -> Option<Self> {
        if Some(isa) > Isa::best() || w.len() != out * inp || inp == 0 {
            return None;
        }
        let isa = match isa {
            Isa::Avx512Vnni => Isa::Avx512Vnni,
            Isa::Avx2 | Isa::Avx512 => Isa::Avx2,
        };
        // The largest weight magnitude after quantization: 8 bits where nothing saturates.
        let wmax = f32::from(weight_max(isa));
        let kp = inp.div_ceil(4) * 4;
        let panels = out.div_ceil(NR);
        let mut data = vec![0i8; panels * kp * NR];
        let mut scales = vec![1f32; panels * NR];
        let mut col_sums = vec![0i32; panels * NR];
        for c in 0..out {
            let row = &w[c * inp..(c + 1) * inp];
            let max = row.iter().fold(0f32, |m, &v| m.max(v.abs()));
            let scale = if max > 0.0 { max / wmax } else { 1.0 };
            scales[c] = scale;
            let (p, j) = (c / NR, c % NR);
            for (k, &v) in row.iter().enumerate() {
                let q = (v / scale).round().clamp(-wmax, wmax) as i8;
                col_sums[c] += q as i32;
                data[p * kp * NR + (k / 4) * NR * 4 + j * 4 + k % 4] = q;
            }
        }
        Some(Self {
            out,
            inp,
            kp,
            data,
            scales,
            col_sums,
            isa,
        })
    }

    pub fn in_dim(&self) -> usize {
        self.inp
    }

    /// The largest quantized weight magnitude: 127, or 63 where pairs of products would
    /// saturate (AVX2).
    pub fn weight_max(&self) -> i8 {
        weight_max(self.isa)
    }

    pub fn out_dim(&self) -> usize {
        self.out
    }
}

/// The smallest decision margin (a level's lead in log-probability plus offset, as
/// `LevelOffsets::margin` measures it) that the products of `isa`'s kernel are trusted not to
/// overturn.
///
/// Measured on the shipped model over the 2,626 pairs of the shared IP file, against f32
/// (the seeker encoder in f32, as it runs): among decisions whose int8 margin was under 1,
/// the margin moved by at most 0.26 with VNNI's 8-bit weights (99th percentile 0.16) and 0.52
/// with AVX2's 7-bit ones (0.27). The limits keep about 15% above those. Under them lie about
/// 18% (VNNI) and 33% (AVX2) of the pairs.
pub fn close_call_margin(isa: Isa) -> f32 {
    if weight_max(isa) == 127 {
        0.3
    } else {
        0.6
    }
}

fn weight_max(isa: Isa) -> i8 {
    if isa == Isa::Avx512Vnni {
        127
    } else {
        63
    }
}

/// Activations quantized per row: u8 with a scale and a zero point, rows `kp` apart.
struct QuantizedRows {
    data: Vec<u8>,
    scales: Vec<f32>,
    zero_points: Vec<i32>,
}

dispatch_simd! {
    /// One row to u8: its scale and zero point map [min(x, 0), max(x, 0)] onto 0..=255.
    fn quantize_row(row: &[f32], q: &mut [u8], out: &mut (f32, i32)) {
        let (lo, hi) = min_max(row);
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let s = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
        let z = (-lo / s + 0.5).floor().clamp(0.0, 255.0);
        let inv = 1.0 / s;
        // + 0.5 and truncation round to nearest: every value is at least -0.5 here.
        let done = to_u8_simd(row, q, inv, z + 0.5);
        for (q, &v) in q.iter_mut().zip(row).skip(done) {
            *q = (v * inv + (z + 0.5)).clamp(0.0, 255.0) as u8;
        }
        *out = (s, z as i32);
    }
}

/// (min, max) of `row` in one pass where the CPU has AVX-512, else in two. This pass reads a
/// product's inputs from memory (a batch's activations outgrow the L2 cache), and it was most
/// of the quantization's time; LLVM did not make one vectorized pass of the scalar loops.
#[inline(always)]
fn min_max(row: &[f32]) -> (f32, f32) {
    #[cfg(target_arch = "x86_64")]
    if Isa::best() >= Some(Isa::Avx512) {
        // SAFETY: the CPU has AVX-512 F; every access is within `row`.
        return unsafe { min_max_sixteens(row) };
    }
    (min(row), max(row))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn min_max_sixteens(row: &[f32]) -> (f32, f32) {
    use std::arch::x86_64::*;
    let n = row.len() / 16 * 16;
    let mut lo = _mm512_set1_ps(f32::INFINITY);
    let mut hi = _mm512_set1_ps(f32::NEG_INFINITY);
    for i in (0..n).step_by(16) {
        let v = _mm512_loadu_ps(row.as_ptr().add(i));
        // min and max return their second operand when the first is NaN: NaN is passed over,
        // as `min` and `max` pass it.
        lo = _mm512_min_ps(v, lo);
        hi = _mm512_max_ps(v, hi);
    }
    let (tail_lo, tail_hi) = (min(&row[n..]), max(&row[n..]));
    (
        _mm512_reduce_min_ps(lo).min(tail_lo),
        _mm512_reduce_max_ps(hi).max(tail_hi),
    )
}

/// `clamp(v · inv + offset, 0, 255) as u8` for whole sixteens of `row`, where the CPU has
/// AVX-512; returns how many were done. LLVM turns the scalar loop's saturating `as u8` into
/// one conversion and one byte insert per value there: that loop was 25% of an int8
/// `predict`'s profile on the AVX-512 host, as much as the VNNI products. The same multiply,
/// add, clamp (NaN to 0, as `as` gives) and truncation, sixteen at a time, give the same
/// bytes. (The same by eights with AVX2 made a one-sequence pass 10% faster and batches of 32
/// 5–10% slower, measured with `EPITOME_ISA=avx2`: not kept.)
#[inline(always)]
fn to_u8_simd(row: &[f32], q: &mut [u8], inv: f32, offset: f32) -> usize {
    #[cfg(target_arch = "x86_64")]
    if Isa::best() >= Some(Isa::Avx512) {
        // SAFETY: the CPU has AVX-512 F; every access is within the values returned.
        return unsafe { to_u8_sixteens(row, q, inv, offset) };
    }
    0
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn to_u8_sixteens(row: &[f32], q: &mut [u8], inv: f32, offset: f32) -> usize {
    use std::arch::x86_64::*;
    let n = row.len().min(q.len()) / 16 * 16;
    let (inv, offset) = (_mm512_set1_ps(inv), _mm512_set1_ps(offset));
    let (zero, top) = (_mm512_setzero_ps(), _mm512_set1_ps(255.0));
    for i in (0..n).step_by(16) {
        let v = _mm512_add_ps(
            _mm512_mul_ps(_mm512_loadu_ps(row.as_ptr().add(i)), inv),
            offset,
        );
        // max returns its second operand when the first is NaN: NaN becomes 0.
        let v = _mm512_min_ps(_mm512_max_ps(v, zero), top);
        let bytes = _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(v));
        _mm_storeu_si128(q.as_mut_ptr().add(i) as *mut __m128i, bytes);
    }
    n
}

fn quantize_rows(x: &[f32], rows: usize, inp: usize, kp: usize) -> QuantizedRows {
    let mut data = vec![0u8; rows * kp];
    let mut params = vec![(1f32, 0i32); rows];
    // Padding k stay 0: their weights are 0, and the zero-point correction counts only real
    // k (`col_sums`). Rows go to the threads in runs of 16, not one by one.
    const ROWS_PER_TASK: usize = 16;
    data.par_chunks_mut(kp * ROWS_PER_TASK)
        .zip(params.par_chunks_mut(ROWS_PER_TASK))
        .enumerate()
        .for_each(|(t, (q, p))| {
            for (i, (q, p)) in q.chunks_exact_mut(kp).zip(p).enumerate() {
                let r = t * ROWS_PER_TASK + i;
                quantize_row(&x[r * inp..(r + 1) * inp], &mut q[..inp], p);
            }
        });
    QuantizedRows {
        data,
        scales: params.iter().map(|p| p.0).collect(),
        zero_points: params.iter().map(|p| p.1).collect(),
    }
}

/// `x · Wᵀ + b` with `w` quantized; x (..., in) → (..., out).
pub fn linear_int8(x: &Tensor, w: &QuantizedWeight, bias: &Tensor) -> Result<Tensor> {
    linear_int8_then(x, w, bias, None)
}

/// `gelu(x · Wᵀ + b)` with `w` quantized, the GELU applied to each tile's rows as soon as it
/// has written them, while they are in L1: no second buffer of the (rows × 1536) output, and
/// no second pass over it from memory. The same values as [`linear_int8`] followed by
/// [`super::gelu_erf`].
pub fn linear_int8_gelu(x: &Tensor, w: &QuantizedWeight, bias: &Tensor) -> Result<Tensor> {
    linear_int8_then(x, w, bias, Some(super::gelu::gelu_in_place))
}

fn linear_int8_then(
    x: &Tensor,
    w: &QuantizedWeight,
    bias: &Tensor,
    epilogue: Option<fn(&mut [f32])>,
) -> Result<Tensor> {
    linear_product(x, bias, (w.out, w.inp), "int8 linear", |xv, b| {
        forward(w, xv, b, epilogue)
    })
}

fn forward(
    w: &QuantizedWeight,
    x: &[f32],
    bias: &[f32],
    epilogue: Option<fn(&mut [f32])>,
) -> Vec<f32> {
    let rows = x.len() / w.inp;
    let q = quantize_rows(x, rows, w.inp, w.kp);
    let mut bias = bias.to_vec();
    bias.resize(w.scales.len(), 0.0);
    let bias = bias.as_slice();
    // Every element is written by a tile (a partial panel's own columns only), so the buffer
    // is not zeroed first.
    let mut y: Vec<f32> = Vec::with_capacity(rows * w.out);
    // SAFETY: the CPU runs `w.isa` (checked when `w` was quantized), and y holds rows × out
    // values.
    unsafe {
        match w.isa {
            Isa::Avx512Vnni => {
                in_tiles::<MR_VNNI, 2>(w, &q, bias, y.as_mut_ptr(), epilogue, tile_vnni)
            }
            Isa::Avx2 | Isa::Avx512 => {
                in_tiles::<MR_AVX2, 1>(w, &q, bias, y.as_mut_ptr(), epilogue, tile_avx2)
            }
        }
    }
    // SAFETY: the tiles together wrote every column of every row.
    unsafe { y.set_len(rows * w.out) };
    y
}

/// The whole product in tiles of `MR` rows × `P` panels computed by `kernel`, then
/// `epilogue` on each tile's output, its blocks spread over the threads.
///
/// # Safety
/// `kernel` must run on this CPU, and `y` must hold the output rows × `w.out` values.
unsafe fn in_tiles<const MR: usize, const P: usize>(
    w: &QuantizedWeight,
    q: &QuantizedRows,
    bias: &[f32],
    y: *mut f32,
    epilogue: Option<fn(&mut [f32])>,
    kernel: unsafe fn(TileJob<'_>),
) {
    let rows = q.scales.len();
    let dst = SharedMut(y);
    let threads = rayon::current_num_threads().max(1);
    for_each_block(rows, MR, w.out.div_ceil(NR), threads, |rows, panels| {
        // SAFETY: as this function's; each block writes only its own rows and panels of y.
        unsafe { block::<MR, P>(w, q, bias, rows, panels, dst.get(), epilogue, kernel) }
    });
}

/// Where a micro-kernel reads and writes: `height` rows from `row` × `panels` panels from
/// column `c0`.
#[derive(Clone, Copy)]
struct TileJob<'a> {
    w: &'a QuantizedWeight,
    q: &'a QuantizedRows,
    bias: &'a [f32],
    row: usize,
    height: usize,
    c0: usize,
    panels: usize,
    y: *mut f32,
}

impl TileJob<'_> {
    /// The quantized inputs of the tile's row `r` (its last row for any `r` beyond its height,
    /// so that a short tile reads only its own rows).
    fn x(&self, r: usize) -> *const u8 {
        // SAFETY: the row is one of the tile's, inside `q.data`.
        unsafe {
            self.q
                .data
                .as_ptr()
                .add((self.row + r.min(self.height - 1)) * self.w.kp)
        }
    }
}

/// Rows `rows` × panels `panels` of the output, in tiles of `MR` rows × `P` panels.
///
/// # Safety
/// `kernel` must run on this CPU, and `y` must hold the output rows × `w.out` values.
#[allow(clippy::too_many_arguments)]
unsafe fn block<const MR: usize, const P: usize>(
    w: &QuantizedWeight,
    q: &QuantizedRows,
    bias: &[f32],
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
    y: *mut f32,
    epilogue: Option<fn(&mut [f32])>,
    kernel: unsafe fn(TileJob<'_>),
) {
    let mut rb = rows.start;
    while rb < rows.end {
        let rb_end = (rb + ROW_BLOCK).min(rows.end);
        let mut p = panels.start;
        while p < panels.end {
            let np = P.min(panels.end - p);
            let mut r0 = rb;
            while r0 < rb_end {
                let (height, c0) = (MR.min(rb_end - r0), p * NR);
                kernel(TileJob {
                    w,
                    q,
                    bias,
                    row: r0,
                    height,
                    c0,
                    panels: np,
                    y,
                });
                if let Some(epilogue) = epilogue {
                    let cols = (np * NR).min(w.out - c0);
                    for r in r0..r0 + height {
                        // SAFETY: the tile has just written these columns of its row, and no
                        // other block writes them.
                        epilogue(unsafe {
                            std::slice::from_raw_parts_mut(y.add(r * w.out + c0), cols)
                        });
                    }
                }
                r0 += MR;
            }
            p += np;
        }
        rb = rb_end;
    }
}

/// The AVX2 micro-kernel: one panel, up to [`MR_AVX2`] rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(job: TileJob<'_>) {
    use std::arch::x86_64::*;
    let TileJob { w, q, c0, .. } = job;
    let ones = _mm256_set1_epi16(1);
    let groups = w.kp / 4;
    let panel = w.data.as_ptr().add(c0 * w.kp);
    let mut acc = [[_mm256_setzero_si256(); 2]; MR_AVX2];
    let xs: [*const u8; MR_AVX2] = std::array::from_fn(|r| job.x(r));
    for g in 0..groups {
        let w0 = _mm256_loadu_si256(panel.add(g * 64) as *const __m256i);
        let w1 = _mm256_loadu_si256(panel.add(g * 64 + 32) as *const __m256i);
        for (r, a) in acc.iter_mut().enumerate() {
            let xv = _mm256_set1_epi32(std::ptr::read_unaligned(xs[r].add(g * 4) as *const i32));
            let t0 = _mm256_madd_epi16(_mm256_maddubs_epi16(xv, w0), ones);
            let t1 = _mm256_madd_epi16(_mm256_maddubs_epi16(xv, w1), ones);
            a[0] = _mm256_add_epi32(a[0], t0);
            a[1] = _mm256_add_epi32(a[1], t1);
        }
    }
    let sw = [
        _mm256_loadu_ps(w.scales.as_ptr().add(c0)),
        _mm256_loadu_ps(w.scales.as_ptr().add(c0 + 8)),
    ];
    let sums = [
        _mm256_loadu_si256(w.col_sums.as_ptr().add(c0) as *const __m256i),
        _mm256_loadu_si256(w.col_sums.as_ptr().add(c0 + 8) as *const __m256i),
    ];
    let b = [
        _mm256_loadu_ps(job.bias.as_ptr().add(c0)),
        _mm256_loadu_ps(job.bias.as_ptr().add(c0 + 8)),
    ];
    let cols = NR.min(w.out - c0);
    for (r, a) in acc.iter().enumerate().take(job.height) {
        let row = job.row + r;
        let zp = _mm256_set1_epi32(q.zero_points[row]);
        let sx = _mm256_set1_ps(q.scales[row]);
        let mut vals = [0f32; NR];
        for h in 0..2 {
            // y = sx · sw · (Σ qx·qw − zp · Σ qw) + b
            let exact = _mm256_sub_epi32(a[h], _mm256_mullo_epi32(zp, sums[h]));
            let scaled = _mm256_mul_ps(_mm256_mul_ps(sx, sw[h]), _mm256_cvtepi32_ps(exact));
            _mm256_storeu_ps(vals.as_mut_ptr().add(8 * h), _mm256_add_ps(scaled, b[h]));
        }
        std::ptr::copy_nonoverlapping(vals.as_ptr(), job.y.add(row * w.out + c0), cols);
    }
}

/// The VNNI micro-kernel: up to two panels, up to [`MR_VNNI`] rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_vnni(job: TileJob<'_>) {
    if job.panels == 2 {
        tile_vnni_panels::<2>(job)
    } else {
        tile_vnni_panels::<1>(job)
    }
}

/// `MR_VNNI` rows × `P` panels: a short tile repeats its last row's inputs, and writes only
/// its own rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn tile_vnni_panels<const P: usize>(job: TileJob<'_>) {
    use std::arch::x86_64::*;
    let TileJob { w, q, c0, .. } = job;
    let groups = w.kp / 4;
    let panel = w.data.as_ptr().add(c0 * w.kp);
    let mut acc = [[_mm512_setzero_si512(); P]; MR_VNNI];
    let xs: [*const u8; MR_VNNI] = std::array::from_fn(|r| job.x(r));
    for g in 0..groups {
        let wq: [__m512i; P] = std::array::from_fn(|p| {
            _mm512_loadu_si512(panel.add(p * w.kp * NR + g * 64) as *const __m512i)
        });
        for (r, a) in acc.iter_mut().enumerate() {
            let xv = _mm512_set1_epi32(std::ptr::read_unaligned(xs[r].add(g * 4) as *const i32));
            for (v, wp) in a.iter_mut().zip(&wq) {
                *v = _mm512_dpbusd_epi32(*v, xv, *wp);
            }
        }
    }
    for p in 0..P {
        let c = c0 + p * NR;
        let sw = _mm512_loadu_ps(w.scales.as_ptr().add(c));
        let sums = _mm512_loadu_si512(w.col_sums.as_ptr().add(c) as *const __m512i);
        let b = _mm512_loadu_ps(job.bias.as_ptr().add(c));
        let mask: __mmask16 = ((1u32 << NR.min(w.out - c)) - 1) as u16;
        for (r, a) in acc.iter().enumerate().take(job.height) {
            let row = job.row + r;
            let zp = _mm512_set1_epi32(q.zero_points[row]);
            let sx = _mm512_set1_ps(q.scales[row]);
            // y = sx · sw · (Σ qx·qw − zp · Σ qw) + b
            let exact = _mm512_sub_epi32(a[p], _mm512_mullo_epi32(zp, sums));
            let scaled = _mm512_mul_ps(_mm512_mul_ps(sx, sw), _mm512_cvtepi32_ps(exact));
            _mm512_mask_storeu_ps(job.y.add(row * w.out + c), mask, _mm512_add_ps(scaled, b));
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn tile_avx2(_: TileJob<'_>) {
    unreachable!("quantize() returns None off x86-64")
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn tile_vnni(_: TileJob<'_>) {
    unreachable!("quantize() returns None off x86-64")
}
