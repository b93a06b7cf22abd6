//! The native integer kernels: one arithmetic, written portably and for SSE2, AVX2 and NEON,
//! each giving the portable result bit for bit.
//!
//! The arithmetic is fixed lane by lane, so that any vector width can carry it. For block `b`
//! of a row (weights `w`, 32 values as i16, `q − zero`) and a token's 16-bit block `x`, eight
//! lanes `l` hold
//!
//! - `p0[l] = w[2l]·x[2l] + w[2l+1]·x[2l+1]` (elements 0..16) and
//!   `p1[l] = w[16+2l]·x[16+2l] + w[17+2l]·x[17+2l]` (elements 16..32): exact integers, `pmaddwd`
//!   on x86-64, `smull` + `addp` on NEON;
//! - `acc[l] += f32(p0[l] + p1[l]) · (s_x·s_0)`, or where the halves have their own scales (Q6_K)
//!   `acc[l] += f32(p0[l])·(s_x·s_0) + f32(p1[l])·(s_x·s_1)`: separate multiplies and adds, never
//!   fused. A lane's integer is at most 4·128·32767 < 2²⁴, so its conversion to f32 is exact.
//!
//! At the end of the row `v[l] = acc[l] + acc[l+4]`, and the result is `(v0 + v2) + (v1 + v3)`.
//! So only the order of f32 operations matters, and every path performs the same ones. A token's
//! arithmetic does not depend on the tokens beside it, so a prompt run in one pass gives the
//! keys and values of the tokens run one by one. (The wasm kernel has its own four lanes.)

use super::{unnibble, Row, SubRow, QK, X16};

/// The instruction sets a native kernel is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust: the definition the others are tested against.
    Portable,
    /// x86-64's baseline (every x86-64 CPU).
    #[cfg(target_arch = "x86_64")]
    Sse2,
    /// x86-64 with AVX2, chosen at run time where the CPU has it.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// aarch64's baseline.
    #[cfg(target_arch = "aarch64")]
    Neon,
}

impl Isa {
    /// The fastest this CPU runs, detected once.
    pub fn best() -> Isa {
        static BEST: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| *Isa::available().last().expect("portable code runs everywhere"))
    }

    /// Every kernel this CPU runs, slowest first.
    pub fn available() -> Vec<Isa> {
        #[allow(unused_mut)]
        let mut all = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            all.push(Isa::Sse2);
            if std::arch::is_x86_feature_detected!("avx2") {
                all.push(Isa::Avx2);
            }
        }
        #[cfg(target_arch = "aarch64")]
        all.push(Isa::Neon);
        all
    }

    /// How the model card and `--stats` name it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Isa::Sse2 => "SSE2",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "AVX2",
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => "NEON",
        }
    }
}

/// `out[k]` = row · `xs[k]` for one or four tokens, on `isa` (one of [`Isa::available`]).
pub fn dot(isa: Isa, row: &Row, xs: &[&X16], out: &mut [f32; 4]) {
    let nb = match row {
        Row::Q8 { d, q } => {
            assert_eq!(q.len(), d.len() * QK);
            d.len()
        }
        Row::Q4 { d, q } => {
            assert_eq!(q.len(), d.len() * 16);
            d.len()
        }
        Row::Sub(s) => {
            let nb = s.blocks();
            assert!(s.lo.len() == nb * 16 && s.hi.len() == nb * s.planes);
            nb
        }
    };
    // The SIMD paths read 32 values of every token's block b < nb unchecked.
    assert!(xs.iter().all(|x| x.q.len() == nb * QK && x.s.len() == nb));
    match *xs {
        [a] => out[0] = one(isa, row, [a])[0],
        [a, b, c, d] => *out = one(isa, row, [a, b, c, d]),
        _ => unreachable!("one token or four"),
    }
}

fn one<const K: usize>(isa: Isa, row: &Row, xs: [&X16; K]) -> [f32; K] {
    match isa {
        Isa::Portable => portable::row(row, xs),
        // SAFETY: the lengths were checked by `dot`; SSE2 is part of x86-64.
        #[cfg(target_arch = "x86_64")]
        Isa::Sse2 => unsafe { sse2::row(row, xs) },
        // SAFETY: as above; `Isa::Avx2` is only offered where the CPU has AVX2.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::row(row, xs) },
        // SAFETY: as above; NEON is part of aarch64.
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { neon::row(row, xs) },
    }
}

/// A sub-block's scales and whether its halves differ.
#[inline(always)]
fn sub_scales(s: &SubRow, b: usize) -> (f32, f32, bool) {
    let (s0, s1) = s.scales(b);
    (s0, s1, s.halves == 2)
}

/// `(v0 + v2) + (v1 + v3)` of `v[l] = acc[l] + acc[l+4]`.
#[inline(always)]
fn fold(acc: [f32; 8]) -> f32 {
    let v: [f32; 4] = std::array::from_fn(|l| acc[l] + acc[l + 4]);
    (v[0] + v[2]) + (v[1] + v[3])
}

mod portable {
    use super::*;

    /// The definition (see the module's documentation).
    pub fn row<const K: usize>(row: &Row, xs: [&X16; K]) -> [f32; K] {
        let mut acc = [[0f32; 8]; K];
        match row {
            Row::Q8 { d, q } => {
                for b in 0..d.len() {
                    let w: [i16; QK] = std::array::from_fn(|j| q[b * QK + j] as i16);
                    block(&mut acc, &w, &xs, b, (d[b], d[b], false));
                }
            }
            Row::Q4 { d, q } => {
                for b in 0..d.len() {
                    let w = unnibble(q[b * 16..(b + 1) * 16].try_into().expect("a block")).map(i16::from);
                    block(&mut acc, &w, &xs, b, (d[b], d[b], false));
                }
            }
            Row::Sub(s) => {
                for b in 0..s.blocks() {
                    block(&mut acc, &s.quants(b), &xs, b, sub_scales(s, b));
                }
            }
        }
        acc.map(fold)
    }

    #[inline(always)]
    fn block<const K: usize>(acc: &mut [[f32; 8]; K], w: &[i16; QK], xs: &[&X16; K], b: usize, (s0, s1, split): (f32, f32, bool)) {
        for (acc, x) in acc.iter_mut().zip(xs) {
            let (q, sx) = (&x.q[b * QK..(b + 1) * QK], x.s[b]);
            let pair = |j: usize| w[j] as i32 * q[j] as i32 + w[j + 1] as i32 * q[j + 1] as i32;
            for (l, acc) in acc.iter_mut().enumerate() {
                let (p0, p1) = (pair(2 * l), pair(16 + 2 * l));
                *acc += if split { p0 as f32 * (sx * s0) + p1 as f32 * (sx * s1) } else { (p0 + p1) as f32 * (sx * s0) };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::*;

    /// The definition's lanes in one register: `p0` from the 16 values of `lo` (elements
    /// 0..16), `p1` from `hi`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn row<const K: usize>(row: &Row, xs: [&X16; K]) -> [f32; K] {
        let mut acc = [_mm256_setzero_ps(); K];
        match row {
            Row::Q8 { d, q } => {
                for b in 0..d.len() {
                    let v = q.as_ptr().add(b * QK) as *const __m128i;
                    let w = (_mm256_cvtepi8_epi16(_mm_loadu_si128(v)), _mm256_cvtepi8_epi16(_mm_loadu_si128(v.add(1))));
                    block(&mut acc, w, &xs, b, (d[b], d[b], false));
                }
            }
            Row::Q4 { d, q } => {
                for b in 0..d.len() {
                    let (lo, hi) = nibbles(q.as_ptr().add(b * 16));
                    block(&mut acc, (_mm256_cvtepu8_epi16(lo), _mm256_cvtepu8_epi16(hi)), &xs, b, (d[b], d[b], false));
                }
            }
            Row::Sub(s) => {
                let zero = _mm256_set1_epi16(s.zero as i16);
                for b in 0..s.blocks() {
                    let (lo, hi) = sub_bytes(s, b);
                    let w = (_mm256_sub_epi16(_mm256_cvtepu8_epi16(lo), zero), _mm256_sub_epi16(_mm256_cvtepu8_epi16(hi), zero));
                    block(&mut acc, w, &xs, b, sub_scales(s, b));
                }
            }
        }
        acc.map(|a| {
            let mut lanes = [0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), a);
            fold(lanes)
        })
    }

    /// A block's nibbles as bytes: elements 0..16 and 16..32.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn nibbles(p: *const u8) -> (__m128i, __m128i) {
        let (v, mask) = (_mm_loadu_si128(p as *const __m128i), _mm_set1_epi8(0x0F));
        (_mm_and_si128(v, mask), _mm_and_si128(_mm_srli_epi16(v, 4), mask))
    }

    /// A sub-block's quants as bytes (before the zero): the nibbles, then each plane's bit `j`
    /// spread to byte `j` (`pshufb` puts the word's byte `j / 8` in byte `j`, a mask picks bit
    /// `j % 8`).
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn sub_bytes(s: &SubRow, b: usize) -> (__m128i, __m128i) {
        let (mut lo, mut hi) = nibbles(s.lo.as_ptr().add(b * 16));
        let bit = _mm_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        let (first, second) = (_mm_set_epi64x(0x0101_0101_0101_0101, 0), _mm_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202));
        for p in 0..s.planes {
            let word = _mm_set1_epi32(s.hi[b * s.planes + p] as i32);
            let add = _mm_set1_epi8((16 << p) as i8);
            lo = _mm_or_si128(lo, spread(word, first, bit, add));
            hi = _mm_or_si128(hi, spread(word, second, bit, add));
        }
        (lo, hi)
    }

    /// `add` in each byte whose bit (`bit`) is set in the word's byte picked by `idx`.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn spread(word: __m128i, idx: __m128i, bit: __m128i, add: __m128i) -> __m128i {
        _mm_and_si128(add, _mm_cmpeq_epi8(_mm_and_si128(_mm_shuffle_epi8(word, idx), bit), bit))
    }

    /// One block's weights `(lo, hi)` met by every token.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn block<const K: usize>(acc: &mut [__m256; K], (wl, wh): (__m256i, __m256i), xs: &[&X16; K], b: usize, (s0, s1, split): (f32, f32, bool)) {
        for (acc, x) in acc.iter_mut().zip(xs) {
            let (q, sx) = (x.q.as_ptr().add(b * QK) as *const __m256i, x.s[b]);
            let p0 = _mm256_madd_epi16(wl, _mm256_loadu_si256(q));
            let p1 = _mm256_madd_epi16(wh, _mm256_loadu_si256(q.add(1)));
            let term = if split {
                _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(sx * s0)), _mm256_mul_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(sx * s1)))
            } else {
                _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(p0, p1)), _mm256_set1_ps(sx * s0))
            };
            *acc = _mm256_add_ps(*acc, term);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::*;

    use super::*;

    /// The definition's lanes in two registers each: lanes 0..4 from values 0..8 (and 16..24),
    /// lanes 4..8 from values 8..16 (and 24..32).
    pub unsafe fn row<const K: usize>(row: &Row, xs: [&X16; K]) -> [f32; K] {
        let mut acc = [[_mm_setzero_ps(); 2]; K];
        match row {
            Row::Q8 { d, q } => {
                for b in 0..d.len() {
                    let v = q.as_ptr().add(b * QK) as *const __m128i;
                    // Sign-extended: each byte doubled into a 16-bit lane, shifted down.
                    let widen = |v: __m128i| [_mm_srai_epi16(_mm_unpacklo_epi8(v, v), 8), _mm_srai_epi16(_mm_unpackhi_epi8(v, v), 8)];
                    let ([a, b_], [c, e]) = (widen(_mm_loadu_si128(v)), widen(_mm_loadu_si128(v.add(1))));
                    block(&mut acc, [a, b_, c, e], &xs, b, (d[b], d[b], false));
                }
            }
            Row::Q4 { d, q } => {
                let (mask, none) = (_mm_set1_epi8(0x0F), _mm_setzero_si128());
                for b in 0..d.len() {
                    let v = _mm_loadu_si128(q.as_ptr().add(b * 16) as *const __m128i);
                    let (lo, hi) = (_mm_and_si128(v, mask), _mm_and_si128(_mm_srli_epi16(v, 4), mask));
                    let w = [_mm_unpacklo_epi8(lo, none), _mm_unpackhi_epi8(lo, none), _mm_unpacklo_epi8(hi, none), _mm_unpackhi_epi8(hi, none)];
                    block(&mut acc, w, &xs, b, (d[b], d[b], false));
                }
            }
            Row::Sub(s) => {
                // SSE2 has no byte shuffle: the planes are spread as the portable code does.
                for b in 0..s.blocks() {
                    let q = s.quants(b);
                    let w = std::array::from_fn(|i| _mm_loadu_si128(q.as_ptr().add(8 * i) as *const __m128i));
                    block(&mut acc, w, &xs, b, sub_scales(s, b));
                }
            }
        }
        acc.map(|[a, b]| {
            let mut lanes = [0f32; 8];
            _mm_storeu_ps(lanes.as_mut_ptr(), a);
            _mm_storeu_ps(lanes.as_mut_ptr().add(4), b);
            fold(lanes)
        })
    }

    /// One block's weights (values 0..8, 8..16, 16..24, 24..32) met by every token.
    #[inline(always)]
    unsafe fn block<const K: usize>(acc: &mut [[__m128; 2]; K], w: [__m128i; 4], xs: &[&X16; K], b: usize, (s0, s1, split): (f32, f32, bool)) {
        for (acc, x) in acc.iter_mut().zip(xs) {
            let (q, sx) = (x.q.as_ptr().add(b * QK) as *const __m128i, x.s[b]);
            let p = |i: usize| _mm_madd_epi16(w[i], _mm_loadu_si128(q.add(i)));
            let (c0, c1) = (_mm_set1_ps(sx * s0), _mm_set1_ps(sx * s1));
            for (h, acc) in acc.iter_mut().enumerate() {
                let (p0, p1) = (p(h), p(h + 2));
                let term = if split {
                    _mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(p0), c0), _mm_mul_ps(_mm_cvtepi32_ps(p1), c1))
                } else {
                    _mm_mul_ps(_mm_cvtepi32_ps(_mm_add_epi32(p0, p1)), c0)
                };
                *acc = _mm_add_ps(*acc, term);
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    use super::*;

    /// As SSE2's: two registers of four lanes; `pmaddwd` is `smull` of each half and `addp`.
    pub unsafe fn row<const K: usize>(row: &Row, xs: [&X16; K]) -> [f32; K] {
        let mut acc = [[vdupq_n_f32(0.0); 2]; K];
        match row {
            Row::Q8 { d, q } => {
                for b in 0..d.len() {
                    let (v0, v1) = (vld1q_s8(q.as_ptr().add(b * QK)), vld1q_s8(q.as_ptr().add(b * QK + 16)));
                    let w = [vmovl_s8(vget_low_s8(v0)), vmovl_high_s8(v0), vmovl_s8(vget_low_s8(v1)), vmovl_high_s8(v1)];
                    block(&mut acc, w, &xs, b, (d[b], d[b], false));
                }
            }
            Row::Q4 { d, q } => {
                for b in 0..d.len() {
                    let v = vld1q_u8(q.as_ptr().add(b * 16));
                    let (lo, hi) = (vandq_u8(v, vdupq_n_u8(0x0F)), vshrq_n_u8(v, 4));
                    let widen = |v: uint8x16_t| [vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(v))), vreinterpretq_s16_u16(vmovl_high_u8(v))];
                    let ([a, b_], [c, e]) = (widen(lo), widen(hi));
                    block(&mut acc, [a, b_, c, e], &xs, b, (d[b], d[b], false));
                }
            }
            Row::Sub(s) => {
                for b in 0..s.blocks() {
                    let q = s.quants(b);
                    let w = std::array::from_fn(|i| vld1q_s16(q.as_ptr().add(8 * i)));
                    block(&mut acc, w, &xs, b, sub_scales(s, b));
                }
            }
        }
        acc.map(|[a, b]| {
            let mut lanes = [0f32; 8];
            vst1q_f32(lanes.as_mut_ptr(), a);
            vst1q_f32(lanes.as_mut_ptr().add(4), b);
            fold(lanes)
        })
    }

    #[inline(always)]
    unsafe fn block<const K: usize>(acc: &mut [[float32x4_t; 2]; K], w: [int16x8_t; 4], xs: &[&X16; K], b: usize, (s0, s1, split): (f32, f32, bool)) {
        for (acc, x) in acc.iter_mut().zip(xs) {
            let (q, sx) = (x.q.as_ptr().add(b * QK), x.s[b]);
            let p = |i: usize| {
                let xv = vld1q_s16(q.add(8 * i));
                vpaddq_s32(vmull_s16(vget_low_s16(w[i]), vget_low_s16(xv)), vmull_high_s16(w[i], xv))
            };
            let (c0, c1) = (vdupq_n_f32(sx * s0), vdupq_n_f32(sx * s1));
            for (h, acc) in acc.iter_mut().enumerate() {
                let (p0, p1) = (p(h), p(h + 2));
                let term = if split {
                    vaddq_f32(vmulq_f32(vcvtq_f32_s32(p0), c0), vmulq_f32(vcvtq_f32_s32(p1), c1))
                } else {
                    vmulq_f32(vcvtq_f32_s32(vaddq_s32(p0, p1)), c0)
                };
                *acc = vaddq_f32(*acc, term);
            }
        }
    }
}
