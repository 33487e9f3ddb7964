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

use super::{for_each_block, linear_product, Isa, SharedMut};
use candle_core::{Result, Tensor};

/// Output columns per panel: two AVX2 registers, one AVX-512 register.
const NR: usize = 16;
/// Rows per AVX2 tile: 6 × 2 accumulators, 2 weight registers and the broadcast input fill 15
/// of AVX2's 16 registers.
const MR_AVX2: usize = 6;
/// Rows per AVX-512 tile, which spans three panels: 8 × 3 accumulators and 3 weight registers
/// of AVX-512's 32, the inputs broadcast from memory by the multiply-adds themselves. A
/// 64-token sequence is eight whole tiles, and every layer's width a whole number of panel
/// triples; against 12 rows × 2 panels (which left a tile of 4 rows at 64), alternating runs:
/// one sequence 8.9–9.1 → 8.1–8.6 ms, one pair 14.9–16.3 → 13.5–14.4 ms, batch forward within
/// noise or better, 10k pairs 59.3 → 56.0 s.
const MR_AVX512: usize = 8;
/// k per pass over a tile: a panel's 384 × 16 values (24 KiB) and a tile's 6 × 384 inputs
/// (9 KiB) stay in L1 and L2 while the tile is computed. Where a pass ends does not change
/// any sum: each output's products are added one k after another either way.
const KC: usize = 384;
/// Rows per block: their inputs (96 × 384 × 4 = 144 KiB) stay in L2 while every panel passes,
/// and a 64-token sequence is one block, so that each panel comes from memory once (the
/// weights of one pass, 42 MB, do not stay in any cache between passes). Against 48, with
/// weights too large for the caches, 64 rows × 384 → 1152 on one thread: 72–76 → 77–78 GFLOP/s
/// (medians of ten interleaved repetitions, two runs, inputs packed).
const ROW_BLOCK: usize = 96;
const _: () = assert!(
    ROW_BLOCK.is_multiple_of(MR_AVX2) && ROW_BLOCK.is_multiple_of(MR_AVX512),
    "row blocks hold whole tiles"
);
/// The most row tiles a group of panels serves for which the tiles prefetch the next group's
/// panels ([`Prefetch`]): the serving path's 64-token sequence is 8 tiles of 8 rows, and each
/// group of panels is read from L3 by its first tile. One pair, three mechanisms, six
/// interleaved pairs of 300 repetitions (Intel model 207): best 11.6–13.0 → 11.1–12.3 ms.
/// A batch's blocks of 96 rows (12 tiles) spread the first tile's wait over more tiles, and
/// there the extra instructions cost more than they saved (batch 32 × 64, four interleaved
/// pairs, best of 30 passes: 196.7–202.0 → 192.9–198.8 sequences/s).
const PREFETCH_MAX_TILES: usize = 8;
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
    /// The micro-kernel that multiplies by it.
    isa: Isa,
}

impl PackedWeight {
    /// `None` when the CPU lacks AVX2 and FMA, or the output width is not a whole number of
    /// panels (the heads' narrow layers): `gemm` serves those.
    pub fn pack(w: &[f32], out: usize, inp: usize) -> Option<Self> {
        Self::pack_for(w, out, inp, Isa::best()?)
    }

    /// As [`PackedWeight::pack`], for the micro-kernel of `isa` (which tests compare with the
    /// others); `None` also when the CPU cannot run it. Every variant adds each output's
    /// products in the same order, so their results are identical.
    pub fn pack_for(w: &[f32], out: usize, inp: usize, isa: Isa) -> Option<Self> {
        if Some(isa) > Isa::best() || w.len() != out * inp || inp == 0 || !out.is_multiple_of(NR) {
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
        Some(Self {
            out,
            inp,
            data,
            isa,
        })
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
    linear_packed_then(x, w, bias, None)
}

/// `gelu(x · Wᵀ + b)`, the GELU applied to each tile as its last pass over k ends, while its
/// rows are still in L1: no second pass over the (rows × 1536) output, and no buffer of its
/// own for the activation. The same values as the product followed by [`super::gelu_erf`].
pub fn linear_packed_gelu(x: &Tensor, w: &PackedWeight, bias: &Tensor) -> Result<Tensor> {
    linear_packed_then(x, w, bias, Some(super::gelu::gelu_in_place))
}

fn linear_packed_then(
    x: &Tensor,
    w: &PackedWeight,
    bias: &Tensor,
    epilogue: Option<fn(&mut [f32])>,
) -> Result<Tensor> {
    linear_product(x, bias, (w.out, w.inp), "linear", |xv, b| {
        product(w, xv, b, epilogue)
    })
}

fn product(
    w: &PackedWeight,
    x: &[f32],
    bias: &[f32],
    epilogue: Option<fn(&mut [f32])>,
) -> Vec<f32> {
    let rows = x.len() / w.inp;
    // Every element is written by the first pass over k (bias + product), so the buffer is
    // not zeroed first (2% of a scored pair's profile).
    let mut y: Vec<f32> = Vec::with_capacity(rows * w.out);
    let out = Out {
        y: y.as_mut_ptr(),
        epilogue,
    };
    // SAFETY: the CPU runs `w.isa` (checked when `w` was packed), and y holds rows × out
    // values.
    unsafe {
        match w.isa {
            Isa::Avx2 => in_tiles::<MR_AVX2, 1>(w, x, bias, out, tile_avx2),
            Isa::Avx512 | Isa::Avx512Vnni => in_tiles::<MR_AVX512, 3>(w, x, bias, out, tile_avx512),
        }
    }
    // SAFETY: the parts together wrote every row of every panel, and panels cover `out`.
    unsafe { y.set_len(rows * w.out) };
    y
}

/// The whole product in tiles of `MR` rows × `P` panels computed by `kernel`, its blocks
/// spread over the threads.
///
/// # Safety
/// `kernel` must run on this CPU, and `out.y` must hold the output rows × `w.out` values.
unsafe fn in_tiles<const MR: usize, const P: usize>(
    w: &PackedWeight,
    x: &[f32],
    bias: &[f32],
    out: Out,
    kernel: unsafe fn(TileJob),
) {
    let rows = x.len() / w.inp;
    let (dst, epilogue) = (SharedMut(out.y), out.epilogue);
    // On one thread the parts would only pack the same inputs again.
    let parts = match rayon::current_num_threads() {
        0 | 1 => 1,
        threads => threads * PARTS_PER_THREAD,
    };
    for_each_block(rows, MR, w.out / NR, parts, |rows, panels| {
        TILES.with_borrow_mut(|tiles| {
            let (x, y) = (
                Rows { x, rows },
                Out {
                    y: dst.get(),
                    epilogue,
                },
            );
            // SAFETY: as this function's; each block writes only its own rows and panels.
            unsafe { block::<MR, P>(w, x, bias, panels, y, tiles, kernel) }
        })
    });
}

/// The product's output, rows of the weight's `out` values, and what to apply to each tile's
/// values once they are complete.
struct Out {
    y: *mut f32,
    epilogue: Option<fn(&mut [f32])>,
}

/// A block's rows of the input (rows of the weight's `inp` values).
struct Rows<'a> {
    x: &'a [f32],
    rows: std::ops::Range<usize>,
}

/// Where a micro-kernel reads and writes: `height` rows × `panels` panels, over `kn` k.
#[derive(Clone, Copy)]
struct TileJob {
    height: usize,
    panels: usize,
    /// The packed tile: for each k, its rows' inputs side by side.
    a: *const f32,
    /// The first panel at this pass's first k; the next one `panel_stride` further on.
    panel: *const f32,
    panel_stride: usize,
    kn: usize,
    /// The tile's first output, rows `y_rs` apart.
    y: *mut f32,
    y_rs: usize,
    /// The bias on the first pass over k; later passes add to what `y` holds.
    bias: Option<*const f32>,
    /// This tile's share of the panels the next tile group reads (one cache line per k in
    /// each of `P` panels, `panel_stride` apart), to prefetch into L2 while it computes. The
    /// AVX-512 kernel prefetches; the AVX2 one ignores it (not measured on an AVX2 host).
    prefetch: Prefetch,
}

/// Cache lines to prefetch: `lines` lines from `first` in each of `panels` panels,
/// `panel_stride` floats apart.
#[derive(Clone, Copy)]
struct Prefetch {
    first: *const f32,
    panels: usize,
    lines: usize,
}

impl Prefetch {
    const NONE: Self = Self {
        first: std::ptr::null(),
        panels: 0,
        lines: 0,
    };
}

thread_local! {
    /// Each thread's packed input tiles, kept between products: zeroing a fresh buffer for
    /// every product was 2% of an encoder pass.
    static TILES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Rows `x.rows` × panels `panels` of the output, with `tiles` as the packed inputs' buffer,
/// tiles of `MR` rows × `P` panels computed by `kernel`.
///
/// Each block of rows is copied, one pass over k at a time, into tiles of `MR` rows laid out
/// k-major (a tile's inputs for one k side by side), so that the micro-kernel reads its
/// broadcasts from one stream instead of `MR` rows `inp` apart, with constant offsets the
/// compiler folds into the loads. On the serving path (one pair of the shipped model, each
/// encoder on a thread of its own, its weights coming from memory), medians of five
/// interleaved runs on the AMD EPYC host: 37.4 → 30.2 ms, where row blocks of 96 alone gave
/// 39.7. A product repeated on weights already in cache is no faster (about 85 GFLOP/s on one
/// thread either way, near the 90 this micro-kernel reaches on data in L1).
///
/// # Safety
/// `kernel` must run on this CPU, and `y.y` must hold the output rows × `w.out` values.
unsafe fn block<const MR: usize, const P: usize>(
    w: &PackedWeight,
    x: Rows<'_>,
    bias: &[f32],
    panels: std::ops::Range<usize>,
    y: Out,
    tiles: &mut Vec<f32>,
    kernel: unsafe fn(TileJob),
) {
    let len = ROW_BLOCK * KC.min(w.inp);
    if tiles.len() < len {
        tiles.resize(len, 0.0);
    }
    let (inp, out) = (w.inp, w.out);
    let mut rb = x.rows.start;
    while rb < x.rows.end {
        let rb_end = (rb + ROW_BLOCK).min(x.rows.end);
        let mut k0 = 0;
        while k0 < inp {
            let kn = KC.min(inp - k0);
            pack_tiles::<MR>(x.x, inp, rb..rb_end, k0, kn, tiles);
            let tiles_per_group = (rb_end - rb).div_ceil(MR);
            let mut p = panels.start;
            while p < panels.end {
                let np = P.min(panels.end - p);
                let c0 = p * NR;
                // The panels after these, at the same k (or, after the last, at the next pass's
                // k or the next block's first), stream from L3 or memory: each tile of this
                // group prefetches its share into L2, so that the next group's first tile does
                // not wait for them.
                let next = if p + np < panels.end {
                    Some((p + np, k0, kn))
                } else if k0 + kn < inp {
                    Some((panels.start, k0 + kn, KC.min(inp - k0 - kn)))
                } else if rb_end < x.rows.end {
                    Some((panels.start, 0, KC.min(inp)))
                } else {
                    None
                };
                let share = match next {
                    Some((_, _, nkn)) if tiles_per_group <= PREFETCH_MAX_TILES => {
                        nkn.div_ceil(tiles_per_group)
                    }
                    _ => 0,
                };
                let mut r0 = rb;
                while r0 < rb_end {
                    let height = (rb_end - r0).min(MR);
                    let first = y.y.add(r0 * out + c0);
                    let t = (r0 - rb) / MR;
                    let prefetch = match next {
                        Some((np0, nk0, nkn)) if t * share < nkn => Prefetch {
                            first: w.data.as_ptr().add(np0 * inp * NR + (nk0 + t * share) * NR),
                            panels: P.min(panels.end - np0),
                            lines: share.min(nkn - t * share),
                        },
                        _ => Prefetch::NONE,
                    };
                    kernel(TileJob {
                        height,
                        panels: np,
                        a: tiles.as_ptr().add((r0 - rb) * kn),
                        panel: w.data.as_ptr().add(p * inp * NR + k0 * NR),
                        panel_stride: inp * NR,
                        kn,
                        y: first,
                        y_rs: out,
                        bias: (k0 == 0).then(|| bias.as_ptr().add(c0)),
                        prefetch,
                    });
                    if let (Some(f), true) = (y.epilogue, k0 + kn == inp) {
                        for r in 0..height {
                            f(std::slice::from_raw_parts_mut(first.add(r * out), np * NR));
                        }
                    }
                    r0 += MR;
                }
                p += np;
            }
            k0 += kn;
        }
        rb = rb_end;
    }
}

/// Copies `x[rows, k0..k0 + kn]` into `tiles`: tile t (rows `MR·t..`) starts at `MR·t·kn`
/// and holds, for each k, its rows' values side by side.
fn pack_tiles<const MR: usize>(
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
        // The last tile's missing rows repeat its last (never read).
        let src: [&[f32]; MR] =
            std::array::from_fn(|r| &x[(r0 + r.min(height - 1)) * inp + k0..][..kn]);
        // SAFETY: a packed weight exists only where the CPU has AVX2.
        let done = unsafe { transpose_eights(&src, tile) };
        for (k, slots) in tile.chunks_exact_mut(MR).enumerate().skip(done) {
            for (slot, row) in slots.iter_mut().zip(&src) {
                *slot = row[k];
            }
        }
    }
}

/// Copies the rows `src` into `tile` k-major, eight k at a time, by 8 × 8 and 4 × 8 transposes
/// in registers (a scalar copy was 5% of `predict`'s profile on the AVX-512 host); returns the
/// k done. Tiles of 8 rows take one 8 × 8, tiles of 6 one 4 × 8 (their last two rows, and
/// other heights, are left to the caller).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_eights<const MR: usize>(src: &[&[f32]; MR], tile: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    if MR != 8 && MR != 6 {
        return 0;
    }
    let kn = src[0].len();
    let out = tile.as_mut_ptr();
    let mut k = 0;
    while k + 8 <= kn {
        let load = |r: usize| _mm256_loadu_ps(src[r].as_ptr().add(k));
        if MR == 8 {
            let r: [__m256; 8] = std::array::from_fn(load);
            let t: [__m256; 8] = std::array::from_fn(|i| {
                let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
                if i % 2 == 0 {
                    _mm256_unpacklo_ps(a, b)
                } else {
                    _mm256_unpackhi_ps(a, b)
                }
            });
            // s[i]: rows 0..3 (i < 4) or 4..7, for k + (i % 4) in the low lane and k + 4 + i % 4
            // in the high one.
            let s: [__m256; 8] = std::array::from_fn(|i| {
                let (base, j) = (i / 4 * 4, i % 4);
                let (a, b) = (t[base + j / 2], t[base + 2 + j / 2]);
                if j % 2 == 0 {
                    _mm256_shuffle_ps::<0x44>(a, b)
                } else {
                    _mm256_shuffle_ps::<0xEE>(a, b)
                }
            });
            for j in 0..4 {
                let lo = _mm256_permute2f128_ps::<0x20>(s[j], s[4 + j]);
                let hi = _mm256_permute2f128_ps::<0x31>(s[j], s[4 + j]);
                _mm256_storeu_ps(out.add((k + j) * MR), lo);
                _mm256_storeu_ps(out.add((k + 4 + j) * MR), hi);
            }
        } else {
            // Rows 0..3 by a 4 × 8 transpose, rows 4 and 5 one value at a time.
            let q: [__m256; 4] = std::array::from_fn(load);
            let (t0, t1) = (
                _mm256_unpacklo_ps(q[0], q[1]),
                _mm256_unpackhi_ps(q[0], q[1]),
            );
            let (t2, t3) = (
                _mm256_unpacklo_ps(q[2], q[3]),
                _mm256_unpackhi_ps(q[2], q[3]),
            );
            let c = [
                _mm256_shuffle_ps::<0x44>(t0, t2),
                _mm256_shuffle_ps::<0xEE>(t0, t2),
                _mm256_shuffle_ps::<0x44>(t1, t3),
                _mm256_shuffle_ps::<0xEE>(t1, t3),
            ];
            for (j, c) in c.iter().enumerate() {
                _mm_storeu_ps(out.add((k + j) * MR), _mm256_castps256_ps128(*c));
                _mm_storeu_ps(out.add((k + 4 + j) * MR), _mm256_extractf128_ps::<1>(*c));
            }
            for j in 0..8 {
                *out.add((k + j) * MR + 4) = src[4][k + j];
                *out.add((k + j) * MR + 5) = src[5][k + j];
            }
        }
        k += 8;
    }
    k
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn transpose_eights<const MR: usize>(_: &[&[f32]; MR], _: &mut [f32]) -> usize {
    0
}

/// `step(k)` for each k of a pass, four per iteration, so that the loop's counter and branch
/// are shared by four steps' multiply-adds (48 on AVX2's tile instead of 12). Inlined into each
/// micro-kernel, whose target features the steps keep.
#[inline(always)]
fn for_each_k(kn: usize, mut step: impl FnMut(usize)) {
    let mut k = 0;
    while k + 4 <= kn {
        for u in 0..4 {
            step(k + u);
        }
        k += 4;
    }
    while k < kn {
        step(k);
        k += 1;
    }
}

/// The AVX2 micro-kernel: one panel, up to [`MR_AVX2`] rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(job: TileJob) {
    match job.height {
        6 => tile::<6>(job),
        5 => tile::<5>(job),
        4 => tile::<4>(job),
        3 => tile::<3>(job),
        2 => tile::<2>(job),
        _ => tile::<1>(job),
    }
}

/// The AVX-512 micro-kernel: up to three panels, up to [`MR_AVX512`] rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512(job: TileJob) {
    match job.panels {
        3 => tile_avx512_rows::<3>(job),
        2 => tile_avx512_rows::<2>(job),
        _ => tile_avx512_rows::<1>(job),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile_avx512_rows<const P: usize>(job: TileJob) {
    match job.height {
        8 => tile16::<8, P>(job),
        7 => tile16::<7, P>(job),
        6 => tile16::<6, P>(job),
        5 => tile16::<5, P>(job),
        4 => tile16::<4, P>(job),
        3 => tile16::<3, P>(job),
        2 => tile16::<2, P>(job),
        _ => tile16::<1, P>(job),
    }
}

/// `R` rows × `P` panels of 16 columns, one AVX-512 register each, over `kn` k, as [`tile`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile16<const R: usize, const P: usize>(job: TileJob) {
    use std::arch::x86_64::*;
    let TileJob {
        a,
        panel,
        panel_stride,
        kn,
        y,
        y_rs,
        bias,
        prefetch,
        ..
    } = job;
    let mut acc = [[_mm512_setzero_ps(); P]; R];
    for (r, c) in acc.iter_mut().enumerate() {
        for (q, v) in c.iter_mut().enumerate() {
            let from = match bias {
                Some(b) => b.add(q * NR),
                None => y.add(r * y_rs + q * NR) as *const f32,
            };
            *v = _mm512_loadu_ps(from);
        }
    }
    let step = |acc: &mut [[__m512; P]; R], k: usize| {
        let w: [__m512; P] =
            std::array::from_fn(|q| _mm512_loadu_ps(panel.add(q * panel_stride + k * NR)));
        for (r, c) in acc.iter_mut().enumerate() {
            let xv = _mm512_set1_ps(*a.add(k * MR_AVX512 + r));
            for (v, wq) in c.iter_mut().zip(&w) {
                *v = _mm512_fmadd_ps(xv, *wq, *v);
            }
        }
    };
    // The prefetches ride along the first steps, one line per panel per k, and the rest of
    // the pass runs the plain loop.
    let ahead = prefetch.lines.min(kn);
    if ahead == 0 {
        for_each_k(kn, |k| step(&mut acc, k));
    } else {
        for k in 0..ahead {
            step(&mut acc, k);
            for q in 0..prefetch.panels.min(P) {
                let line = prefetch.first.wrapping_add(q * panel_stride + k * NR);
                _mm_prefetch::<_MM_HINT_T1>(line as *const i8);
            }
        }
        for_each_k(kn - ahead, |k| step(&mut acc, ahead + k));
    }
    for (r, c) in acc.iter().enumerate() {
        for (q, v) in c.iter().enumerate() {
            _mm512_storeu_ps(y.add(r * y_rs + q * NR), *v);
        }
    }
}

/// `R` rows × 16 columns over `kn` k: `y = start + a · panel`, where `a` is a packed tile
/// ([`MR_AVX2`] values per k) and `start` is the bias on the first pass over k and what `y`
/// already holds on later ones.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile<const R: usize>(job: TileJob) {
    let TileJob {
        a,
        panel,
        kn,
        y,
        y_rs,
        bias,
        ..
    } = job;
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
            let xv = _mm256_broadcast_ss(&*a.add(k * MR_AVX2 + r));
            c[0] = _mm256_fmadd_ps(xv, w0, c[0]);
            c[1] = _mm256_fmadd_ps(xv, w1, c[1]);
        }
    };
    for_each_k(kn, |k| step(&mut acc, k));
    for (r, c) in acc.iter().enumerate() {
        _mm256_storeu_ps(y.add(r * y_rs), c[0]);
        _mm256_storeu_ps(y.add(r * y_rs + 8), c[1]);
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn tile_avx2(_: TileJob) {
    unreachable!("pack() returns None off x86-64")
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn tile_avx512(_: TileJob) {
    unreachable!("pack() returns None off x86-64")
}
