//! Fused CPU kernels for the encoder, as candle custom ops with their own backward passes.
//!
//! candle's CPU backend runs most elementwise and reduction ops on one thread, allocates a
//! tensor per elementary op, and runs a batched matrix product as one multi-threaded `gemm`
//! call per (batch, head) matrix: for MiniLM at batch 32 × 64 that is 384 thread hand-offs
//! for products of 64 × 32 × 64. The composite layers that gave training its gradients
//! (layer norm and softmax from a dozen ops each, GELU's erf on one thread) cost as much as
//! the matrix products themselves. Each op here does one layer's arithmetic in one pass over
//! contiguous f32 rows, spread over rayon's threads, and computes its gradient itself, so the
//! same kernel serves inference and training. The matrix products still go through `gemm`,
//! which picks its micro-kernels by CPU feature at run time; the elementwise loops are
//! compiled three times, for the baseline, AVX2 + FMA and AVX-512, and the variant is chosen at
//! run time ([`Isa`]).

pub mod attention;
pub mod dropout;
pub mod gelu;
pub mod int8;
pub mod layer_norm;
pub mod linear;
mod matmul;
pub mod packed;

pub use attention::{attention, AttentionDropout};
pub use dropout::dropout;
pub use gelu::gelu_erf;
pub use int8::{linear_int8, linear_int8_gelu, QuantizedWeight};
pub use layer_norm::{add_layer_norm, layer_norm};
pub use linear::{linear, linear_transposed};
pub use packed::{linear_packed, linear_packed_gelu, PackedWeight};

use candle_core::{CpuStorage, Layout, Result, Shape, Tensor};

/// The number format of an inference run's matrix products.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 throughout.
    #[default]
    F32,
    /// The responder encoder's products with int8 weights and u8 activations ([`int8`]);
    /// the seeker encoder, norms, softmax, GELU and the mechanism heads stay f32. A pair whose
    /// decision int8 could have changed (its margin is under [`Precision::close_call_margin`])
    /// is scored again in f32. Needs AVX2; elsewhere f32 runs.
    Int8,
    /// Int8 where the CPU has AVX-512 VNNI, f32 elsewhere: int8 is the faster there, and its
    /// levels are f32's (docs/RESULTS.md); on AVX2 alone its gain is smaller and more of its
    /// decisions are close calls.
    Auto,
}

impl Precision {
    /// What [`Precision::Auto`] is on this CPU; the others as they are.
    pub fn resolve(self) -> Precision {
        match self {
            Precision::Auto if Isa::best() == Some(Isa::Avx512Vnni) => Precision::Int8,
            Precision::Auto => Precision::F32,
            other => other,
        }
    }

    /// Under int8 products, the margin (`LevelOffsets::margin`) below which a decision is a
    /// close call, to be taken again in f32; `None` where nothing is quantized.
    pub fn close_call_margin(self) -> Option<f32> {
        match (self.resolve(), Isa::best()) {
            (Precision::Int8, Some(isa)) => Some(int8::close_call_margin(isa)),
            _ => None,
        }
    }
}

/// The f32 elements of a contiguous tensor, from its storage and layout.
pub(crate) fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &'static str,
) -> Result<&'a [f32]> {
    let data = match storage {
        CpuStorage::F32(v) => v.as_slice(),
        _ => candle_core::bail!("{op}: expected an f32 tensor"),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: the input must be contiguous"),
    }
}

/// Runs `f` on a tensor's f32 elements, made contiguous first if they are not (backward
/// passes get their arguments as tensors, not as storage).
pub(crate) fn with_f32<R>(t: &Tensor, op: &'static str, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(cpu) => Ok(f(contiguous_f32(cpu, layout, op)?)),
        _ => candle_core::bail!("{op}: only the CPU is supported"),
    }
}

/// An inference product of a linear layer whose weight is (`out`, `inp`): `x` (..., inp) and
/// `bias` (out) checked against it and handed to `product` as f32 values, its rows of `out`
/// values shaped (..., out).
pub(crate) fn linear_product(
    x: &Tensor,
    bias: &Tensor,
    (out, inp): (usize, usize),
    op: &'static str,
    product: impl FnOnce(&[f32], &[f32]) -> Vec<f32>,
) -> Result<Tensor> {
    let dims = x.dims();
    if dims.last() != Some(&inp) || bias.elem_count() != out {
        candle_core::bail!("{op}: input {dims:?} does not fit a {out} × {inp} weight");
    }
    let y = with_f32(x, op, |xv| with_f32(bias, op, |b| product(xv, b)))??;
    tensor(y, with_last_dim(dims, out))
}

/// `dims` with its last dimension replaced by `last`: the shape of a linear layer's output.
pub(crate) fn with_last_dim(dims: &[usize], last: usize) -> Vec<usize> {
    let mut shape = dims.to_vec();
    if let Some(d) = shape.last_mut() {
        *d = last;
    }
    shape
}

/// An f32 view (a row of a batch, say) copied into storage of its own, element by element:
/// candle's `copy` of a view clones the whole storage beneath it, so a kept row would keep
/// its whole batch alive.
pub fn own_storage(view: &Tensor) -> Result<Tensor> {
    let values = view.flatten_all()?.to_vec1::<f32>()?;
    Tensor::from_vec(values, view.shape(), view.device())
}

/// A new f32 tensor of `shape` on the CPU.
pub(crate) fn tensor(values: Vec<f32>, shape: impl Into<Shape>) -> Result<Tensor> {
    Tensor::from_vec(values, shape.into(), &candle_core::Device::Cpu)
}

/// How many rayon tasks to cut `rows` rows into: a few per thread, so that uneven rows
/// balance, but never tasks of under `min_rows` rows, whose hand-off would cost more than
/// their work.
pub(crate) fn chunk_rows(rows: usize, min_rows: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    rows.div_ceil(threads * 4).max(min_rows).max(1)
}

/// The instruction sets the hand-written matrix kernels ([`packed`], [`int8`]) have variants
/// for, in order: each includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isa {
    /// AVX2 and FMA: 16 registers of 8 f32.
    Avx2,
    /// AVX-512 F: 32 registers of 16 f32.
    Avx512,
    /// AVX-512 with VNNI's u8 × i8 dot products into i32 (`vpdpbusd`).
    Avx512Vnni,
}

impl Isa {
    /// What `EPITOME_ISA` names, to hold the kernels to a lower set than the CPU has (to
    /// compare the variants on one machine, or to keep a host's clock off its AVX-512 licence).
    pub const ENV: &'static str = "EPITOME_ISA";

    /// The best set this CPU runs, capped by [`Isa::ENV`]; `None` without AVX2 and FMA. Read
    /// once per process.
    pub fn best() -> Option<Isa> {
        static BEST: std::sync::OnceLock<Option<Isa>> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            let cap = std::env::var(Self::ENV).ok().and_then(|v| {
                let cap = Self::parse(&v);
                if cap.is_none() {
                    tracing::warn!(
                        "{}={v:?} is not one of avx2, avx512, avx512-vnni, none: ignored",
                        Self::ENV
                    );
                }
                cap
            });
            Self::detected()
                .filter(|_| cap != Some(None))
                .map(|isa| match cap {
                    Some(Some(cap)) => isa.min(cap),
                    _ => isa,
                })
        })
    }

    /// Every set this CPU runs, capped as [`Isa::best`] is.
    pub fn available() -> Vec<Isa> {
        [Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni]
            .into_iter()
            .filter(|isa| Some(*isa) <= Self::best())
            .collect()
    }

    /// `none` holds every kernel to its portable path; an unknown name is `None` (and ignored,
    /// with a warning).
    fn parse(name: &str) -> Option<Option<Isa>> {
        match name.trim().to_ascii_lowercase().as_str() {
            "none" => Some(None),
            "avx2" => Some(Some(Isa::Avx2)),
            "avx512" => Some(Some(Isa::Avx512)),
            "avx512vnni" | "avx512-vnni" => Some(Some(Isa::Avx512Vnni)),
            _ => None,
        }
    }

    fn detected() -> Option<Isa> {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if !(has!("avx2") && has!("fma")) {
                return None;
            }
            if !(has!("avx512f") && has!("avx512bw")) {
                return Some(Isa::Avx2);
            }
            Some(if has!("avx512vnni") {
                Isa::Avx512Vnni
            } else {
                Isa::Avx512
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            None
        }
    }
}

/// Defines `$name`, which runs `$body` (a closure-like block over the arguments) compiled for
/// AVX-512 or AVX2 + FMA when the CPU has them, and for the baseline otherwise. The body is
/// plain Rust; the target features let LLVM vectorise it with 512- or 256-bit registers. The
/// variants compute the same values: the bodies fix the order of every sum (as [`sum`] does),
/// and Rust never fuses a multiply and an add on its own.
macro_rules! dispatch_simd {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
            unsafe fn avx512($($arg: $ty),*) {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            match $crate::kernels::Isa::best() {
                // SAFETY: the CPU was checked for these features at run time.
                Some($crate::kernels::Isa::Avx512 | $crate::kernels::Isa::Avx512Vnni) => {
                    return unsafe { avx512($($arg),*) };
                }
                Some($crate::kernels::Isa::Avx2) => return unsafe { avx2($($arg),*) },
                None => {}
            }
            body($($arg),*)
        }
    };
}
pub(crate) use dispatch_simd;

/// Σ x, over eight independent lanes: a plain running sum is one long dependency chain that
/// LLVM may not reorder, so it neither vectorises nor pipelines. Inline, so that it takes on
/// the target features of the loop it is called from.
#[inline(always)]
pub(crate) fn sum(x: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..8 {
            lanes[i] += c[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Σ a·b, over eight lanes as [`sum`].
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [0f32; 8];
    let tail: f32 = a[n - n % 8..]
        .iter()
        .zip(&b[n - n % 8..])
        .map(|(x, y)| x * y)
        .sum();
    for (ca, cb) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            lanes[i] += ca[i] * cb[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// max x (−∞ for an empty slice), over eight lanes as [`sum`].
#[inline(always)]
pub(crate) fn max(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    for c in chunks {
        for i in 0..8 {
            lanes[i] = if c[i] > lanes[i] { c[i] } else { lanes[i] };
        }
    }
    lanes.iter().fold(tail, |m, &v| if v > m { v } else { m })
}

/// min x (+∞ for an empty slice), over eight lanes as [`sum`].
#[inline(always)]
pub(crate) fn min(x: &[f32]) -> f32 {
    let mut lanes = [f32::INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::INFINITY, |m, &v| if v < m { v } else { m });
    for c in chunks {
        for i in 0..8 {
            lanes[i] = if c[i] < lanes[i] { c[i] } else { lanes[i] };
        }
    }
    lanes.iter().fold(tail, |m, &v| if v < m { v } else { m })
}

dispatch_simd! {
    /// Softmax of each `len`-long row of `x`, in place.
    pub(crate) fn softmax_rows(x: &mut [f32], len: usize) {
        if len == 0 {
            return;
        }
        for row in x.chunks_exact_mut(len) {
            let m = max(row);
            for v in row.iter_mut() {
                *v = gelu::exp(*v - m);
            }
            let inv = 1.0 / sum(row);
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }
}

/// The two one-thread pools of [`join_single_threaded`]; `None` when no thread could be started.
fn single_threaded_pools() -> Option<&'static [rayon::ThreadPool; 2]> {
    static POOLS: std::sync::OnceLock<Option<[rayon::ThreadPool; 2]>> = std::sync::OnceLock::new();
    POOLS
        .get_or_init(|| {
            let pool = || {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .thread_name(|_| "epitome-encoder".into())
                    .build()
                    .ok()
            };
            Some([pool()?, pool()?])
        })
        .as_ref()
}

/// Runs `a` and `b` at the same time, each on a thread of its own on which every kernel runs
/// single-threaded. For small batches (one pair while a supporter types), two independent
/// encoders side by side keep both cores busy without the per-product thread hand-offs that
/// splitting a 64-row product between cores costs.
pub fn join_single_threaded<RA: Send, RB: Send>(
    a: impl FnOnce() -> RA + Send,
    b: impl FnOnce() -> RB + Send,
) -> (RA, RB) {
    match single_threaded_pools() {
        // `a` is queued on pool A's thread while this thread waits for `b` on pool B's: no
        // thread is started per call (a thread per call, thousands in a `predict` run, left
        // its allocator pages behind at every exit).
        Some([pa, pb]) => {
            let mut ra = None;
            let rb = pa.in_place_scope(|scope| {
                scope.spawn(|_| ra = Some(a()));
                pb.install(b)
            });
            match ra {
                Some(ra) => (ra, rb),
                None => unreachable!("the scope returns only after its spawned job ran"),
            }
        }
        // No thread could be started: run one after the other, multi-threaded.
        None => (a(), b()),
    }
}

/// Runs `f(rows, panels)` in parallel over parts that together cover `rows` rows × `panels`
/// panels of an output, cutting the larger of the two (rows counted in tiles of `mr`) into
/// at most `parts` ranges: a 64-token sequence has fewer row tiles than a layer has panels,
/// a batch more. Each call writes only its own block.
pub(crate) fn for_each_block(
    rows: usize,
    mr: usize,
    panels: usize,
    parts: usize,
    f: impl Fn(std::ops::Range<usize>, std::ops::Range<usize>) + Sync,
) {
    use rayon::prelude::*;
    let tiles = rows.div_ceil(mr);
    if tiles >= panels {
        let per = tiles.div_ceil(parts).max(1);
        (0..tiles.div_ceil(per))
            .into_par_iter()
            .for_each(|t| f(t * per * mr..((t + 1) * per * mr).min(rows), 0..panels));
    } else {
        let per = panels.div_ceil(parts).max(1);
        (0..panels.div_ceil(per))
            .into_par_iter()
            .for_each(|t| f(0..rows, t * per..((t + 1) * per).min(panels)));
    }
}

/// A pointer that rayon tasks may share when each writes a disjoint part of the buffer.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub *mut f32);
// SAFETY: only used where every task writes a region no other task reads or writes.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The pointer. A method, not the field, so that closures capture the whole wrapper
    /// (edition 2021 closures would otherwise capture the bare, non-Send field).
    pub fn get(self) -> *mut f32 {
        self.0
    }
}
