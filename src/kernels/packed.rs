//! f32 inference products against a weight packed once, in the layout the micro-kernel reads.
//!
//! `gemm` takes its operands as strided matrices and packs the weight into panels on every
//! call, or, below its packing threshold, reads it in place, 1.5 or 6 KiB between
//! consecutive k, a stride at which a panel's cache lines fall into a few L1 sets. For one
//! 64-token sequence that packing was 18.5% of a scored pair's profile (`perf`, the shipped
//! model), and skipping it (`gemm`'s threshold raised) was no faster: the misses cost as much.
//! A weight that never changes (a loaded model, the frozen seeker encoder) is packed here once
//! instead: panels of [`NR`] output columns, each k's 16 values contiguous, so the kernel
//! streams a panel from start to end.

use super::{for_each_block, tensor, with_f32, with_last_dim, SharedMut};
use candle_core::{Result, Tensor};

/// Output columns per panel: two 8-lane registers.
const NR: usize = 16;
/// Rows per tile: 6 × 2 accumulators, 2 weight registers and the broadcast input fill 15 of
/// AVX2's 16 registers.
const MR: usize = 6;
/// k per pass over a tile: a panel's 384 × 16 values (24 KiB) and a tile's 6 × 384 inputs
/// (9 KiB) stay in L1 and L2 while the tile is computed.
const KC: usize = 384;
/// Rows per block: their inputs (96 × 384 × 4 = 144 KiB) stay in L2 while every panel passes,
/// and a 64-token sequence is one block, so that each panel comes from memory once (the
/// weights of one pass, 42 MB, do not stay in any cache between passes). Against 48, with
/// weights too large for the caches, 64 rows × 384 → 1152 on one thread: 72–76 → 77–78 GFLOP/s
/// (medians of ten interleaved repetitions, two runs, inputs packed).
const ROW_BLOCK: usize = 96;
const _: () = assert!(ROW_BLOCK.is_multiple_of(MR), "row blocks hold whole tiles");
/// Row tiles and panel ranges per thread: with one, a thread the host slows holds up the
/// whole product (as `matmul`'s blocks).
const PARTS_PER_THREAD: usize = 2;

/// A (out, in) weight in panels of [`NR`] columns: panel p holds, for each k, the weights of
/// columns 16p..16p+16.
#[derive(Debug)]
pub struct PackedWeight {
    out: usize,
    inp: usize,
    data: Vec<f32>,
}

impl PackedWeight {
    /// `None` when the CPU lacks AVX2 and FMA, or the output width is not a whole number of
    /// panels (the heads' narrow layers): `gemm` serves those.
    pub fn pack(w: &[f32], out: usize, inp: usize) -> Option<Self> {
        if !super::has_avx2_fma() || w.len() != out * inp || inp == 0 || !out.is_multiple_of(NR) {
            return None;
        }
        let mut data = vec![0f32; out * inp];
        for (c, row) in w.chunks_exact(inp).enumerate() {
            let (p, j) = (c / NR, c % NR);
            let panel = &mut data[p * inp * NR..(p + 1) * inp * NR];
            for (k, &v) in row.iter().enumerate() {
                panel[k * NR + j] = v;
            }
        }
        Some(Self { out, inp, data })
    }

    /// The weight as it was given, (out, in).
    pub fn unpack(&self) -> Vec<f32> {
        let mut w = vec![0f32; self.out * self.inp];
        for (c, row) in w.chunks_exact_mut(self.inp).enumerate() {
            let panel = &self.data[(c / NR) * self.inp * NR..];
            for (k, v) in row.iter_mut().enumerate() {
                *v = panel[k * NR + c % NR];
            }
        }
        w
    }

    pub fn in_dim(&self) -> usize {
        self.inp
    }

    pub fn out_dim(&self) -> usize {
        self.out
    }
}

/// `x · Wᵀ + b` with `w` packed; x (..., in) → (..., out).
pub fn linear_packed(x: &Tensor, w: &PackedWeight, bias: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    if dims.last() != Some(&w.inp) || bias.elem_count() != w.out {
        candle_core::bail!(
            "linear: input {dims:?} does not fit a {} × {} weight",
            w.out,
            w.inp
        );
    }
    let y = with_f32(x, "linear", |xv| {
        with_f32(bias, "linear", |b| product(w, xv, b))
    })??;
    tensor(y, with_last_dim(&dims, w.out))
}

fn product(w: &PackedWeight, x: &[f32], bias: &[f32]) -> Vec<f32> {
    let rows = x.len() / w.inp;
    // Every element is written by the first pass over k (bias + product), so the buffer is
    // not zeroed first (2% of a scored pair's profile).
    let mut y: Vec<f32> = Vec::with_capacity(rows * w.out);
    let panels = w.out / NR;
    let dst = SharedMut(y.as_mut_ptr());
    // On one thread the parts would only pack the same inputs again.
    let parts = match rayon::current_num_threads() {
        0 | 1 => 1,
        threads => threads * PARTS_PER_THREAD,
    };
    for_each_block(rows, MR, panels, parts, |rows, panels| {
        // SAFETY: AVX2 and FMA were checked when `w` was packed; each block writes only its
        // own rows and panels of y, which holds rows × out values.
        TILES.with_borrow_mut(|tiles| unsafe { block(w, x, bias, rows, panels, dst.get(), tiles) })
    });
    // SAFETY: the parts together wrote every row of every panel, and panels cover `out`.
    unsafe { y.set_len(rows * w.out) };
    y
}

thread_local! {
    /// Each thread's packed input tiles, kept between products: zeroing a fresh buffer for
    /// every product was 2% of an encoder pass.
    static TILES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Rows `rows` × panels `panels` of the output, with `tiles` as the packed inputs' buffer.
///
/// Each block of rows is copied, one pass over k at a time, into tiles of [`MR`] rows laid
/// out k-major (a tile's inputs for one k side by side), so that the micro-kernel reads its
/// broadcasts from one stream instead of six rows `inp` apart, with constant offsets the
/// compiler folds into the loads. On the serving path (one pair of the shipped model, each
/// encoder on a thread of its own, its weights coming from memory), medians of five
/// interleaved runs on the AMD EPYC host: 37.4 → 30.2 ms, where row blocks of 96 alone gave
/// 39.7. A product repeated on weights already in cache is no faster (about 85 GFLOP/s on one
/// thread either way, near the 90 this micro-kernel reaches on data in L1).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block(
    w: &PackedWeight,
    x: &[f32],
    bias: &[f32],
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
    y: *mut f32,
    tiles: &mut Vec<f32>,
) {
    let len = ROW_BLOCK * KC.min(w.inp);
    if tiles.len() < len {
        tiles.resize(len, 0.0);
    }
    let (inp, out) = (w.inp, w.out);
    let mut rb = rows.start;
    while rb < rows.end {
        let rb_end = (rb + ROW_BLOCK).min(rows.end);
        let mut k0 = 0;
        while k0 < inp {
            let kn = KC.min(inp - k0);
            pack_tiles(x, inp, rb..rb_end, k0, kn, tiles);
            for p in panels.clone() {
                let panel = w.data.as_ptr().add(p * inp * NR + k0 * NR);
                let c0 = p * NR;
                let start = (k0 == 0).then(|| bias.as_ptr().add(c0));
                let mut r0 = rb;
                while r0 < rb_end {
                    let a = tiles.as_ptr().add((r0 - rb) * kn);
                    let yr = y.add(r0 * out + c0);
                    match (rb_end - r0).min(MR) {
                        6 => tile::<6>(a, panel, kn, yr, out, start),
                        5 => tile::<5>(a, panel, kn, yr, out, start),
                        4 => tile::<4>(a, panel, kn, yr, out, start),
                        3 => tile::<3>(a, panel, kn, yr, out, start),
                        2 => tile::<2>(a, panel, kn, yr, out, start),
                        _ => tile::<1>(a, panel, kn, yr, out, start),
                    }
                    r0 += MR;
                }
            }
            k0 += kn;
        }
        rb = rb_end;
    }
}

/// Copies `x[rows, k0..k0 + kn]` into `tiles`: tile t (rows `MR·t..`) starts at `MR·t·kn`
/// and holds, for each k, its rows' values side by side.
fn pack_tiles(
    x: &[f32],
    inp: usize,
    rows: std::ops::Range<usize>,
    k0: usize,
    kn: usize,
    tiles: &mut [f32],
) {
    let first = rows.start;
    for (t, tile) in tiles[..rows.len().div_ceil(MR) * MR * kn]
        .chunks_exact_mut(MR * kn)
        .enumerate()
    {
        let r0 = first + t * MR;
        let height = MR.min(rows.end - r0);
        let src: [&[f32]; MR] =
            std::array::from_fn(|r| &x[(r0 + r.min(height - 1)) * inp + k0..][..kn]);
        // Whole tiles read their six rows together and write sequentially; the last one's
        // missing rows repeat its last (never read).
        for (k, slots) in tile.chunks_exact_mut(MR).enumerate() {
            for (slot, row) in slots.iter_mut().zip(&src) {
                *slot = row[k];
            }
        }
    }
}

/// `R` rows × 16 columns over `kn` k: `y = start + a · panel`, where `a` is a packed tile
/// (`MR` values per k) and `start` is the bias on the first pass over k and what `y` already
/// holds on later ones.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile<const R: usize>(
    a: *const f32,
    panel: *const f32,
    kn: usize,
    y: *mut f32,
    y_rs: usize,
    bias: Option<*const f32>,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    for (r, c) in acc.iter_mut().enumerate() {
        let from = bias.unwrap_or(y.add(r * y_rs) as *const f32);
        c[0] = _mm256_loadu_ps(from);
        c[1] = _mm256_loadu_ps(from.add(8));
    }
    let step = |acc: &mut [[__m256; 2]; R], k: usize| {
        let w0 = _mm256_loadu_ps(panel.add(k * NR));
        let w1 = _mm256_loadu_ps(panel.add(k * NR + 8));
        for (r, c) in acc.iter_mut().enumerate() {
            let xv = _mm256_broadcast_ss(&*a.add(k * MR + r));
            c[0] = _mm256_fmadd_ps(xv, w0, c[0]);
            c[1] = _mm256_fmadd_ps(xv, w1, c[1]);
        }
    };
    // Four k per iteration, so that the loop's counter and branch are shared by 48 FMAs
    // instead of 12.
    let mut k = 0;
    while k + 4 <= kn {
        for u in 0..4 {
            step(&mut acc, k + u);
        }
        k += 4;
    }
    while k < kn {
        step(&mut acc, k);
        k += 1;
    }
    for (r, c) in acc.iter().enumerate() {
        _mm256_storeu_ps(y.add(r * y_rs), c[0]);
        _mm256_storeu_ps(y.add(r * y_rs + 8), c[1]);
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn block(
    _: &PackedWeight,
    _: &[f32],
    _: &[f32],
    _: std::ops::Range<usize>,
    _: std::ops::Range<usize>,
    _: *mut f32,
    _: &mut Vec<f32>,
) {
    unreachable!("pack() returns None off x86-64")
}
