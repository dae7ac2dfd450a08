//! The fast integer product under the native executor's MatMul, ActMatMul
//! and Conv: `sums[j][i] = sum_k a[i][k] * b[j][k]` in wrapping `i32`.
//!
//! Operands are packed once into [`Panel`]s: rows of `i16` (every `i8` and
//! `i16` operand of the IR widens exactly), each zero-padded to a multiple
//! of 16 values, the row count padded to the micro-kernel's block. Zero
//! padding adds nothing, so the sums are the IR's. Every product of two
//! `i16` fits in `i32`, and addition modulo `2^32` is associative and
//! commutative, so any summation order (SIMD lanes, `pmaddwd` pairs,
//! blocks, threads) gives the IR's wrapping sum bit for bit.
//!
//! The micro-kernel computes a block of 2 `a` rows by 4 `b` rows. On
//! x86-64 with AVX2 (detected at run time) it uses `_mm256_madd_epi16`
//! (16 products per instruction, pairs summed with wrapping, exactly the
//! wrapping sum); elsewhere a portable loop. Large products split their `b`
//! rows over threads ([`native_threads`]).

use std::sync::atomic::{AtomicUsize, Ordering};

/// `k` is padded to a multiple of this many `i16` (one AVX2 register).
const KB: usize = 16;
/// Rows of `a` per micro-kernel block.
pub(crate) const MR: usize = 2;
/// Rows of `b` per micro-kernel block.
pub(crate) const NR: usize = 4;
/// Multiply-accumulates below which a product runs on one thread (thread
/// start-up costs tens of microseconds).
pub(crate) const PARALLEL_MACS: u64 = 1 << 21;

static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Caps the threads of the native executor's large products (`0`: as many
/// as the machine has, the default). Results do not depend on it.
pub fn set_native_threads(n: usize) {
    THREADS.store(n, Ordering::Relaxed);
}

/// The threads a large native product uses.
pub fn native_threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Threads for `macs` multiply-accumulates split into at most `parts`.
pub(crate) fn threads_for(macs: u64, parts: usize) -> usize {
    if macs < PARALLEL_MACS {
        1
    } else {
        native_threads().min(parts).max(1)
    }
}

/// Rows of `i16`, zero-padded (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Panel {
    /// Rows holding data.
    pub rows: usize,
    /// Values per row holding data.
    pub k: usize,
    /// Padded row length (a multiple of 16).
    kp: usize,
    /// Padded row count (a multiple of the block).
    rows_p: usize,
    data: Vec<i16>,
}

impl Panel {
    /// `rows` rows of `k` values; `fill(r, row)` writes row `r`
    /// (`row.len() == k`). `block` is [`MR`] for an `a` operand, [`NR`]
    /// for a `b` operand.
    pub fn new(
        rows: usize,
        k: usize,
        block: usize,
        mut fill: impl FnMut(usize, &mut [i16]),
    ) -> Self {
        let kp = k.div_ceil(KB).max(1) * KB;
        let rows_p = rows.div_ceil(block) * block;
        let mut data = vec![0i16; rows_p * kp];
        for (r, row) in data.chunks_exact_mut(kp).take(rows).enumerate() {
            fill(r, &mut row[..k]);
        }
        Self {
            rows,
            k,
            kp,
            rows_p,
            data,
        }
    }

    /// Sets value `c` of row `r`.
    #[inline]
    pub(crate) fn set(&mut self, r: usize, c: usize, v: i16) {
        debug_assert!(r < self.rows && c < self.k);
        self.data[r * self.kp + c] = v;
    }

    /// Rows of `i8` bytes: row `r` is `k` values starting at byte
    /// `at + r * row`, `col` bytes apart.
    pub fn from_i8(
        mem: &[u8],
        at: usize,
        rows: usize,
        k: usize,
        row: usize,
        col: usize,
        block: usize,
    ) -> Self {
        Self::new(rows, k, block, |r, dst| {
            let base = at + r * row;
            if col == 1 {
                for (d, s) in dst.iter_mut().zip(&mem[base..base + k]) {
                    *d = i16::from(*s as i8);
                }
            } else {
                for (kk, d) in dst.iter_mut().enumerate() {
                    *d = i16::from(mem[base + kk * col] as i8);
                }
            }
        })
    }

    /// Rows of little-endian `i16`: element strides `row` and `col`,
    /// `at` in bytes.
    pub fn from_i16(
        mem: &[u8],
        at: usize,
        rows: usize,
        k: usize,
        row: usize,
        col: usize,
        block: usize,
    ) -> Self {
        Self::new(rows, k, block, |r, dst| {
            for (kk, d) in dst.iter_mut().enumerate() {
                let e = at + 2 * (r * row + kk * col);
                *d = i16::from_le_bytes([mem[e], mem[e + 1]]);
            }
        })
    }
}

/// The sums of [`gemm`]: `get(i, j)` for `i < a.rows`, `j < b.rows`.
#[derive(Clone, Debug)]
pub struct Sums {
    ld: usize,
    data: Vec<i32>,
}

impl Sums {
    #[inline]
    pub fn get(&self, i: usize, j: usize) -> i32 {
        self.data[j * self.ld + i]
    }

    /// The sums of `b` row `j` against every (padded) `a` row.
    #[inline]
    pub fn column(&self, j: usize) -> &[i32] {
        &self.data[j * self.ld..(j + 1) * self.ld]
    }
}

/// `sums[j][i] = sum_k a[i][k] * b[j][k]` (wrapping), on up to `threads`
/// threads (split over blocks of `b` rows).
pub fn gemm(a: &Panel, b: &Panel, threads: usize) -> Sums {
    assert_eq!(a.kp, b.kp, "panels of different depth");
    let ld = a.rows_p;
    let mut data = vec![0i32; b.rows_p * ld];
    let blocks = b.rows_p / NR;
    let threads = threads.clamp(1, blocks.max(1));
    if threads <= 1 || a.rows == 0 {
        blocks_of(a, b, 0, &mut data);
    } else {
        let per = blocks.div_ceil(threads);
        std::thread::scope(|s| {
            for (t, out) in data.chunks_mut(per * NR * ld).enumerate() {
                s.spawn(move || blocks_of(a, b, t * per, out));
            }
        });
    }
    Sums { ld, data }
}

/// Fills `out` (whole blocks of `NR` columns of `a.rows_p` sums) starting
/// at block `jb0` of `b`.
fn blocks_of(a: &Panel, b: &Panel, jb0: usize, out: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked just above).
            unsafe { avx2::blocks(a, b, jb0, out) };
            return;
        }
    }
    portable_blocks(a, b, jb0, out);
}

/// The portable micro-kernel (also the reference of the AVX2 one in tests).
pub(crate) fn portable_blocks(a: &Panel, b: &Panel, jb0: usize, out: &mut [i32]) {
    let (kp, ld) = (a.kp, a.rows_p);
    for (jb, out) in out.chunks_exact_mut(NR * ld).enumerate() {
        let j = (jb0 + jb) * NR;
        let w = &b.data[j * kp..(j + NR) * kp];
        let (w0, w1, w2, w3) = (&w[..kp], &w[kp..2 * kp], &w[2 * kp..3 * kp], &w[3 * kp..]);
        for i in 0..a.rows {
            let x = &a.data[i * kp..(i + 1) * kp];
            let (mut s0, mut s1, mut s2, mut s3) = (0i32, 0i32, 0i32, 0i32);
            for kk in 0..kp {
                let v = i32::from(x[kk]);
                s0 = s0.wrapping_add(v * i32::from(w0[kk]));
                s1 = s1.wrapping_add(v * i32::from(w1[kk]));
                s2 = s2.wrapping_add(v * i32::from(w2[kk]));
                s3 = s3.wrapping_add(v * i32::from(w3[kk]));
            }
            out[i] = s0;
            out[ld + i] = s1;
            out[2 * ld + i] = s2;
            out[3 * ld + i] = s3;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Panel, MR, NR};
    use std::arch::x86_64::*;

    /// Sum of the eight `i32` lanes (wrapping).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn hsum(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        _mm_cvtsi128_si32(s)
    }

    /// As `portable_blocks`, 2 x 4 blocks with `vpmaddwd`.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn blocks(a: &Panel, b: &Panel, jb0: usize, out: &mut [i32]) {
        let (kp, ld) = (a.kp, a.rows_p);
        let nb = out.len() / (NR * ld);
        // Every load below lies inside these bounds.
        assert!(a.data.len() == ld * kp && ld % MR == 0 && kp % 16 == 0);
        assert!((jb0 + nb) * NR * kp <= b.data.len() && out.len() == nb * NR * ld);
        for jb in 0..nb {
            let j = (jb0 + jb) * NR;
            let pw = b.data[j * kp..(j + NR) * kp].as_ptr();
            for i in (0..a.rows).step_by(MR) {
                let pa = a.data[i * kp..(i + MR) * kp].as_ptr();
                let mut acc = [_mm256_setzero_si256(); MR * NR];
                let mut kk = 0;
                while kk < kp {
                    // SAFETY: kk + 16 <= kp and the rows are inside the
                    // slices taken above.
                    unsafe {
                        let a0 = _mm256_loadu_si256(pa.add(kk) as *const __m256i);
                        let a1 = _mm256_loadu_si256(pa.add(kp + kk) as *const __m256i);
                        for t in 0..NR {
                            let w = _mm256_loadu_si256(pw.add(t * kp + kk) as *const __m256i);
                            acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(a0, w));
                            acc[NR + t] = _mm256_add_epi32(acc[NR + t], _mm256_madd_epi16(a1, w));
                        }
                    }
                    kk += 16;
                }
                let o = &mut out[jb * NR * ld..(jb + 1) * NR * ld];
                for t in 0..NR {
                    o[t * ld + i] = hsum(acc[t]);
                    o[t * ld + i + 1] = hsum(acc[NR + t]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(a: &[Vec<i16>], b: &[Vec<i16>]) -> Vec<Vec<i32>> {
        b.iter()
            .map(|w| {
                a.iter()
                    .map(|x| {
                        x.iter().zip(w).fold(0i32, |s, (p, q)| {
                            s.wrapping_add(i32::from(*p).wrapping_mul(i32::from(*q)))
                        })
                    })
                    .collect()
            })
            .collect()
    }

    fn value() -> impl Strategy<Value = i16> {
        prop_oneof![
            Just(i16::MIN),
            Just(i16::MAX),
            Just(-128i16),
            Just(127i16),
            any::<i16>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Every path (AVX2 when present, portable, threads) equals the
        /// naive wrapping sum, extreme `i16` values included (sums wrap).
        #[test]
        fn gemm_paths_equal_the_naive_wrapping_sum(
            m in 1usize..9, n in 1usize..11, k in 0usize..70, threads in 1usize..4,
            seed in prop::collection::vec(value(), 1..64),
        ) {
            let at = |r: usize, c: usize, s: usize| seed[(r * 31 + c * 7 + s) % seed.len()];
            let a: Vec<Vec<i16>> = (0..m).map(|r| (0..k).map(|c| at(r, c, 0)).collect()).collect();
            let b: Vec<Vec<i16>> = (0..n).map(|r| (0..k).map(|c| at(r, c, 3)).collect()).collect();
            let pa = Panel::new(m, k, MR, |r, d| d.copy_from_slice(&a[r]));
            let pb = Panel::new(n, k, NR, |r, d| d.copy_from_slice(&b[r]));
            let want = naive(&a, &b);
            let fast = gemm(&pa, &pb, threads);
            let mut port = vec![0i32; pb.rows_p * pa.rows_p];
            portable_blocks(&pa, &pb, 0, &mut port);
            for j in 0..n {
                for i in 0..m {
                    prop_assert_eq!(fast.get(i, j), want[j][i]);
                    prop_assert_eq!(port[j * pa.rows_p + i], want[j][i]);
                }
            }
        }
    }

    #[test]
    fn all_minimum_values_wrap_like_the_ir() {
        // 32 products of 2^30: the wrapping sum is 0 modulo 2^32.
        let pa = Panel::new(2, 32, MR, |_, d| d.fill(i16::MIN));
        let pb = Panel::new(4, 32, NR, |_, d| d.fill(i16::MIN));
        let s = gemm(&pa, &pb, 1);
        let want = (0..32).fold(0i32, |s, _| s.wrapping_add(1 << 30));
        assert_eq!(want, 0);
        assert_eq!(s.get(1, 3), want);
        let pa = Panel::new(2, 3, MR, |_, d| d.fill(i16::MIN));
        let pb = Panel::new(4, 3, NR, |_, d| d.fill(i16::MIN));
        assert_eq!(gemm(&pa, &pb, 2).get(0, 0), 3i32.wrapping_mul(1 << 30));
    }
}
