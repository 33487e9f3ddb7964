//! A bounds-checked front to the `gemm` crate's f32 product.

use super::SharedMut;
use gemm::Parallelism;
use rayon::prelude::*;

/// A matrix read from a slice: element (r, c) is `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major matrix whose rows are `rs` apart.
    pub fn rows(data: &'a [f32], rs: usize) -> Self {
        Self { data, rs, cs: 1 }
    }

    /// The transpose of a row-major matrix whose rows are `rs` apart.
    pub fn transposed(data: &'a [f32], rs: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: rs,
        }
    }

    fn check(&self, rows: usize, cols: usize, what: &str) {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * self.rs + (cols - 1) * self.cs;
            assert!(last < self.data.len(), "{what}: matrix outside its slice");
        }
    }
}

/// Whether `gemm` may spread one product over rayon's threads.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threads {
    /// One thread: the caller already runs products in parallel.
    One,
    /// All of rayon's threads.
    All,
}

/// `dst (m × n, row-major, rows dst_rs apart) = [dst +] scale · a (m × k) · b (k × n)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    dst: &mut [f32],
    dst_rs: usize,
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
    scale: f32,
    a: Mat,
    b: Mat,
    threads: Threads,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * dst_rs + n <= dst.len(),
        "matmul: dst outside its slice"
    );
    // Operands are checked by `matmul_raw`, for each part it computes.
    let parts = match threads {
        Threads::All if m * n * k >= SPLIT_MIN_WORK => {
            rayon::current_num_threads() * PARTS_PER_THREAD
        }
        _ => 1,
    };
    if parts <= 1 {
        // SAFETY: every element read or written was checked to lie inside its slice, and
        // `dst` is borrowed mutably, so it aliases neither input.
        unsafe { matmul_raw(dst.as_mut_ptr(), dst_rs, m, n, k, accumulate, scale, a, b) };
        return;
    }
    // Single-threaded products on blocks of rows of the output, or of columns when it is wider
    // than tall. `gemm`'s own threading synchronises its threads after every
    // block; measured on a 2048 × 384 × 1536 product on 2 cores, it reached 133 GFLOP/s
    // (median) where two independent halves reached 167.
    let by_rows = m >= n;
    let extent = if by_rows { m } else { n };
    let step = extent.div_ceil(parts);
    let out = SharedMut(dst.as_mut_ptr());
    (0..extent.div_ceil(step)).into_par_iter().for_each(|p| {
        let (start, len) = (p * step, step.min(extent - p * step));
        // SAFETY: part p writes only its own rows (or columns) of dst, which was checked to
        // hold the whole product; its operands are sub-matrices of checked ones.
        unsafe {
            if by_rows {
                let a = Mat {
                    data: &a.data[start * a.rs..],
                    ..a
                };
                matmul_raw(
                    out.get().add(start * dst_rs),
                    dst_rs,
                    len,
                    n,
                    k,
                    accumulate,
                    scale,
                    a,
                    b,
                )
            } else {
                let b = Mat {
                    data: &b.data[start * b.cs..],
                    ..b
                };
                matmul_raw(
                    out.get().add(start),
                    dst_rs,
                    m,
                    len,
                    k,
                    accumulate,
                    scale,
                    a,
                    b,
                )
            }
        }
    });
}

/// Parts per thread: with exactly one, a thread that the host slows (two vCPUs shared with
/// other guests) holds up the whole product; with two, rayon hands the other thread its
/// remaining part. Interleaved runs at batch 32 × 64: 443 / 455 / 411 ms median with one part,
/// 432 / 423 / 408 ms with two.
const PARTS_PER_THREAD: usize = 2;

/// Products smaller than this many multiply-adds run on one thread.
const SPLIT_MIN_WORK: usize = 1 << 18;

/// [`matmul`] into a destination that other tasks write too, each its own region.
///
/// # Safety
/// `dst` must be valid for writes of the `m × n` block at rows `dst_rs` apart, and no other
/// thread may read or write that block during the call.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul_raw(
    dst: *mut f32,
    dst_rs: usize,
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
    scale: f32,
    a: Mat,
    b: Mat,
) {
    if m == 0 || n == 0 {
        return;
    }
    a.check(m, k, "matmul lhs");
    b.check(k, n, "matmul rhs");
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                std::ptr::write_bytes(dst.add(r * dst_rs), 0, n);
            }
        }
        return;
    }
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        a.data.as_ptr(),
        a.cs as isize,
        a.rs as isize,
        b.data.as_ptr(),
        b.cs as isize,
        b.rs as isize,
        1.0,
        scale,
        false,
        false,
        false,
        Parallelism::None,
    )
}
