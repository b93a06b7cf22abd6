//! Weight matrices kept in their GGUF block formats on the CPU, and the matrix-vector and
//! matrix-matrix products over them: the CPU path's whole arithmetic cost.
//!
//! - **Q4_0, Q4_1, Q8_0**: each block's 4- or 8-bit values meet `x` as integers. `x` is rounded
//!   to 16 bits per 32-value block ([`X16`], error at most `max|x_b|/65534` a value: 256 times
//!   finer than llama.cpp's 8-bit rounding, and well inside the reference tolerances, as the
//!   golden tests show), so a block's products are exact integer multiply-adds
//!   (`i32x4.dot_i16x8_s` in wasm) and its scales apply once:
//!   `Σ (d·qᵢ + m)·xᵢ ≈ d·s·Σ qᵢ·x̂ᵢ + m·Σ xᵢ`, the offset term from the exact f32 sums. Prefill
//!   unpacks a block once for every token natively (for four in wasm); a token's result does not
//!   depend on the batch.
//! - **Q5_0, Q5_1, Q4_K, Q5_K, Q6_K** the same way, over 32-value sub-blocks ([`Subs`]): a
//!   value is `s_h·(q − z) + m`, with `s_h` the scale of its half (Q6_K scales each 16 values;
//!   the others one per sub-block), so a half's integer sum is scaled once:
//!   `Σ_h s_h·s·Σ (qᵢ − z)·x̂ᵢ + m·Σ xᵢ`.
//! - **f32 and f16/bf16**: each row is dequantised once, with llama.cpp's reference
//!   arithmetic, and multiplied in f32 by every token, two rows by four tokens per step.
//!
//! Every quantised type is repacked at load: scales become f32 (exact: they are f16 in the file,
//! or a K-quant's `d·sc`, the one f32 product llama.cpp's dequantiser makes) in their own
//! arrays, and the quants lie contiguous so that loads are aligned: 32 bytes per block for Q8_0,
//! 16 bytes of nibbles for the 4-bit low parts of the others, and for 5- and 6-bit quants one or
//! two 32-bit planes of their high bits. In wasm the inner loops use SIMD128 (the integer ones
//! sum each block's products per lane); natively the f32 loops use SSE2 or AVX2, and the
//! integer ones are [`lanes`]: one arithmetic fixed lane by lane, written portably and for SSE2,
//! AVX2 (chosen at run time) and NEON, every one giving the portable bits.

use super::pool;
use crate::error::{Error, Result};
use crate::gguf::quant::{dequantize_into, subs, GgmlType, Sub, Value};

pub(crate) use kernels::dot;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub use kernels::{dot_row, Isa};
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
pub use lanes::{dot as dot_row, Isa};

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod lanes;

/// Elements per block of the 32-element formats.
const QK: usize = 32;

/// A `rows × cols` row-major matrix in one of the GGUF formats.
#[derive(Debug, Clone)]
pub struct QMatrix {
    rows: usize,
    cols: usize,
    data: QData,
}

#[derive(Debug, Clone)]
enum QData {
    F32(Vec<f32>),
    /// `d` per block; `q` 32 signed bytes per block.
    Q8_0 {
        d: Vec<f32>,
        q: Vec<i8>,
    },
    /// `d` per block; 16 bytes per block, element `j` in the low nibble of byte `j` and
    /// element `j + 16` in its high nibble (the file's order); value `d·(q − 8)`.
    Q4_0 {
        d: Vec<f32>,
        q: Vec<u8>,
    },
    /// As Q4_0 with an offset `m` per block; value `d·q + m`.
    Q4_1 {
        d: Vec<f32>,
        m: Vec<f32>,
        q: Vec<u8>,
    },
    /// Q5_0, Q5_1 and the K-quants, by 32-value sub-block.
    Subs(Subs),
}

/// Quants of up to 6 bits in 32-value sub-blocks, value `s_h·(q − zero) + m` for the sub-block's
/// half `h` (elements 0..16, 16..32): Q5_0 and Q6_K (centered), Q5_1 (`+m`), Q4_K and Q5_K
/// (`−m`, kept negated). The layout is the kernels' contract.
#[derive(Debug, Clone)]
pub struct Subs {
    /// 16 bytes per sub-block: the low 4 bits, element `j` in the low nibble of byte `j` and
    /// element `j + 16` in its high nibble.
    lo: Vec<u8>,
    /// `planes` words per sub-block: bit `j` of word `p` is bit `4 + p` of element `j`.
    hi: Vec<u32>,
    planes: usize,
    /// `halves` scales per sub-block (2 for Q6_K, whose scales cover 16 values; else 1).
    s: Vec<f32>,
    halves: usize,
    /// The offset per sub-block (empty for the centered types).
    m: Vec<f32>,
    zero: i32,
}

/// Byte `j` of `SPREAD[v]` is bit `j` of `v`: a plane's bits become one per quant byte.
const SPREAD: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut v = 0;
    while v < 256 {
        let mut j = 0;
        while j < 8 {
            t[v] |= (((v >> j) & 1) as u64) << (8 * j);
            j += 1;
        }
        v += 1;
    }
    t
};

/// One row of a block-format matrix, as the integer kernels read it.
pub enum Row<'a> {
    /// `d` per block, 32 signed bytes per block.
    Q8 { d: &'a [f32], q: &'a [i8] },
    /// `d` per block, 16 bytes of nibbles per block (an offset, if any, is added outside).
    Q4 { d: &'a [f32], q: &'a [u8] },
    /// The sub-block formats.
    Sub(SubRow<'a>),
}

/// One row of a [`Subs`] matrix.
pub struct SubRow<'a> {
    lo: &'a [u8],
    hi: &'a [u32],
    planes: usize,
    s: &'a [f32],
    halves: usize,
    zero: i32,
}

/// How a sub-block format is held: its high-bit planes, scales per sub-block, zero, and the
/// sign its offset is kept with (0: centered, no offset). [`Subs::new`] and [`held_bytes`]
/// both read it.
struct SubShape {
    planes: usize,
    halves: usize,
    zero: i32,
    sign: f32,
}

impl SubShape {
    fn of(ty: GgmlType) -> Self {
        let layout = ty.layout().expect("a block format");
        let (zero, sign) = match layout.value {
            Value::Centered(z) => (z, 0.0),
            Value::PlusMin => (0, 1.0),
            Value::MinusMin => (0, -1.0),
            Value::Signed => unreachable!("Q8_0 has its own kernel"),
        };
        // Q6_K's scales cover 16 values, the others' a whole sub-block.
        SubShape { planes: layout.bits as usize - 4, halves: if ty == GgmlType::Q6_K { 2 } else { 1 }, zero, sign }
    }
}

/// A 32-value block's low 4 bits as 16 bytes: element `j` in the low nibble of byte `j`, element
/// `j + 16` in its high nibble (the file's order for Q4_0 and Q4_1).
fn nibbles(q: [u8; QK]) -> impl Iterator<Item = u8> {
    (0..16).map(move |j| (q[j] & 0x0F) | (q[j + 16] & 0x0F) << 4)
}

/// The 32 low-4-bit values of a block packed by [`nibbles`], in element order.
#[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128"), allow(dead_code))]
#[inline(always)]
fn unnibble(lo: &[u8; 16]) -> [u8; QK] {
    std::array::from_fn(|j| if j < 16 { lo[j] & 0x0F } else { lo[j - 16] >> 4 })
}

/// The scales of sub-block `b`'s two halves, from `halves` scales a sub-block.
#[inline(always)]
fn half_scales(s: &[f32], halves: usize, b: usize) -> (f32, f32) {
    if halves == 2 {
        (s[2 * b], s[2 * b + 1])
    } else {
        (s[b], s[b])
    }
}

impl Subs {
    /// Repacks `bytes` of `ty` (whole blocks), one pass over its sub-blocks.
    fn new(ty: GgmlType, bytes: &[u8], blocks: usize) -> Self {
        let layout = ty.layout().expect("a block format");
        let SubShape { planes, halves, zero, sign } = SubShape::of(ty);
        let mut p = Subs {
            lo: Vec::with_capacity(blocks * 16),
            hi: Vec::with_capacity(blocks * planes),
            planes,
            s: Vec::with_capacity(blocks * halves),
            halves,
            m: Vec::with_capacity(if sign == 0.0 { 0 } else { blocks }),
            zero,
        };
        for sub in subs(layout, bytes) {
            p.lo.extend(nibbles(sub.q));
            p.hi.extend((0..planes).map(|b| (0..32).fold(0u32, |w, j| w | (((sub.q[j] >> (4 + b)) & 1) as u32) << j)));
            p.s.extend((0..halves).map(|h| sub.scale(h)));
            if sign != 0.0 {
                p.m.push(sign * sub.offset());
            }
        }
        debug_assert_eq!((p.lo.len(), p.s.len()), (blocks * 16, blocks * halves));
        p
    }

    /// Row `r` of a matrix of `nb` sub-blocks a row.
    fn row(&self, r: usize, nb: usize) -> SubRow<'_> {
        SubRow {
            lo: &self.lo[r * nb * 16..(r + 1) * nb * 16],
            hi: &self.hi[r * nb * self.planes..(r + 1) * nb * self.planes],
            planes: self.planes,
            s: &self.s[r * nb * self.halves..(r + 1) * nb * self.halves],
            halves: self.halves,
            zero: self.zero,
        }
    }
}

impl SubRow<'_> {
    /// Sub-block `b`'s quants, `q − zero`: the nibbles, then each plane's bits spread to bytes
    /// eight at a time (`SPREAD`).
    #[inline(always)]
    fn quants(&self, b: usize) -> [i16; QK] {
        let low = unnibble(self.lo[b * 16..(b + 1) * 16].try_into().expect("a sub-block"));
        // The 32 quants as bytes, eight to a word.
        let mut q: [u64; 4] = std::array::from_fn(|k| u64::from_le_bytes(low[8 * k..8 * k + 8].try_into().expect("8 bytes")));
        for p in 0..self.planes {
            let bits = self.hi[b * self.planes + p].to_le_bytes();
            for (q, byte) in q.iter_mut().zip(bits) {
                *q |= SPREAD[byte as usize] << (4 + p);
            }
        }
        let bytes: [[u8; 8]; 4] = q.map(u64::to_le_bytes);
        std::array::from_fn(|j| bytes[j / 8][j % 8] as i16 - self.zero as i16)
    }

    /// The scales of the row's sub-block `b`'s two halves.
    fn scales(&self, b: usize) -> (f32, f32) {
        half_scales(self.s, self.halves, b)
    }

    /// The row's sub-blocks.
    fn blocks(&self) -> usize {
        self.s.len() / self.halves
    }
}

#[cfg(test)]
use pool::set_threads;
use pool::{threads, Parts};

/// A product's `n` output rows for `t` tokens into `y` (`[t, n]`), computed by `rows(r0, r1,
/// out)`, which fills rows `r0..r1` of every token into `out` (`[t, r1 − r0]`). Every row's
/// arithmetic is its own, so the rows may be split among threads with no change to any result;
/// each thread takes a few parts in turn, so that a slow one does not hold the others up.
fn split_rows(n: usize, t: usize, y: &mut [f32], rows: impl Fn(usize, usize, &mut [f32]) + Sync) {
    let threads = threads();
    if threads == 1 || n < 64 {
        return rows(0, n, y);
    }
    let chunk = n.div_ceil(threads * 4).max(16);
    let parts = n.div_ceil(chunk);
    let range = |k: usize| (k * chunk, ((k + 1) * chunk).min(n));
    if t == 1 {
        // One token: its rows are contiguous in `y`, each part written in place.
        let y = Parts::of(y);
        pool::run(parts, &|k| {
            let (r0, r1) = range(k);
            // SAFETY: the parts' ranges are disjoint and within `y`, which outlives the run.
            rows(r0, r1, unsafe { std::slice::from_raw_parts_mut(y.at(r0), r1 - r0) });
        });
        return;
    }
    let mut outs: Vec<Vec<f32>> = (0..parts).map(|k| vec![0f32; t * (range(k).1 - range(k).0)]).collect();
    let each = Parts::of(&mut outs);
    pool::run(parts, &|k| {
        let (r0, r1) = range(k);
        // SAFETY: part k alone touches `outs[k]`, and `outs` outlives the run.
        rows(r0, r1, unsafe { &mut *each.at(k) });
    });
    for (k, out) in outs.iter().enumerate() {
        let (r0, r1) = range(k);
        let len = r1 - r0;
        for i in 0..t {
            y[i * n + r0..i * n + r1].copy_from_slice(&out[i * len..(i + 1) * len]);
        }
    }
}

/// Per token the block sums of `x`, and per block the offsets they multiply.
type Offsets<'a> = (Vec<Vec<f32>>, Option<&'a Vec<f32>>);

/// `n` items in a vector of exactly that capacity.
fn exact<T>(n: usize, items: impl Iterator<Item = T>) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    v.extend(items);
    debug_assert_eq!(v.len(), n);
    v
}

/// Bytes a matrix of `n` values stored as `ty` holds once repacked (the engine's size check
/// and the model card count these): per 32 values, Q8_0 32 + 4, Q4_0 16 + 4, Q4_1 16 + 8, the
/// sub-block formats 16 bytes of nibbles, 4 per high-bit plane, 4 per scale and 4 for an offset.
pub fn held_bytes(ty: GgmlType, n: u64) -> u64 {
    let blocks = n / QK as u64;
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 4 * n,
        GgmlType::Q8_0 => blocks * (32 + 4),
        GgmlType::Q4_0 => blocks * (16 + 4),
        GgmlType::Q4_1 => blocks * (16 + 8),
        _ => {
            let SubShape { planes, halves, sign, .. } = SubShape::of(ty);
            let offset = if sign == 0.0 { 0 } else { 1 };
            blocks * (16 + 4 * (planes + halves + offset) as u64)
        }
    }
}

impl QMatrix {
    /// Takes `rows × cols` elements of type `ty` from `bytes` (whole blocks per row). Every
    /// block format is repacked from its unpacked blocks (`gguf::quant::subs`).
    pub fn new(ty: GgmlType, bytes: &[u8], rows: usize, cols: usize) -> Result<Self> {
        let (bs, ts) = (ty.block_size(), ty.type_size());
        if !cols.is_multiple_of(bs) || bytes.len() != rows * cols / bs * ts {
            return Err(Error::gguf(format!("{} data of {} bytes is not {rows} rows of {cols}", ty.name(), bytes.len())));
        }
        let subs = || ty.layout().map(|l| subs(l, bytes)).into_iter().flatten();
        let nibbles = |s: Sub| nibbles(s.q);
        // Exact capacities: `collect` from a `flat_map` grows by doubling, and a weight would
        // keep up to twice its bytes (loading a model must stay near the file's size).
        let blocks = rows * cols / QK;
        let data = match ty {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
                let mut v = vec![0f32; rows * cols];
                dequantize_into(ty, bytes, &mut v)?;
                QData::F32(v)
            }
            GgmlType::Q8_0 => QData::Q8_0 { d: exact(blocks, subs().map(|s| s.d)), q: exact(blocks * QK, subs().flat_map(|s| s.q.map(|v| v as i8))) },
            GgmlType::Q4_0 => QData::Q4_0 { d: exact(blocks, subs().map(|s| s.d)), q: exact(blocks * 16, subs().flat_map(nibbles)) },
            GgmlType::Q4_1 => {
                QData::Q4_1 { d: exact(blocks, subs().map(|s| s.d)), m: exact(blocks, subs().map(|s| s.dmin)), q: exact(blocks * 16, subs().flat_map(nibbles)) }
            }
            GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => QData::Subs(Subs::new(ty, bytes, blocks)),
        };
        Ok(QMatrix { rows, cols, data })
    }

    /// Bytes the matrix holds (its arrays' capacities).
    pub fn bytes(&self) -> u64 {
        let size = |n: usize, each: usize| (n * each) as u64;
        match &self.data {
            QData::F32(v) => size(v.capacity(), 4),
            QData::Q8_0 { d, q } => size(d.capacity(), 4) + size(q.capacity(), 1),
            QData::Q4_0 { d, q } => size(d.capacity(), 4) + size(q.capacity(), 1),
            QData::Q4_1 { d, m, q } => size(d.capacity(), 4) + size(m.capacity(), 4) + size(q.capacity(), 1),
            QData::Subs(p) => size(p.lo.capacity(), 1) + size(p.hi.capacity(), 4) + size(p.s.capacity(), 4) + size(p.m.capacity(), 4),
        }
    }

    /// Output width.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input width.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `r` dequantised into `out` (`cols` values), with llama.cpp's reference arithmetic.
    pub fn row_into(&self, r: usize, out: &mut [f32]) {
        let (c, nb) = (self.cols, self.cols / QK);
        match &self.data {
            QData::F32(v) => out.copy_from_slice(&v[r * c..(r + 1) * c]),
            QData::Q8_0 { d, q } => {
                for (b, y) in out.chunks_exact_mut(QK).enumerate() {
                    let (d, q) = (d[r * nb + b], &q[(r * nb + b) * QK..][..QK]);
                    for j in 0..QK {
                        y[j] = q[j] as f32 * d;
                    }
                }
            }
            QData::Q4_0 { d, q } => {
                for (b, y) in out.chunks_exact_mut(QK).enumerate() {
                    let (d, q) = (d[r * nb + b], &q[(r * nb + b) * 16..][..16]);
                    for j in 0..16 {
                        y[j] = d * ((q[j] & 0x0F) as i32 - 8) as f32;
                        y[j + 16] = d * ((q[j] >> 4) as i32 - 8) as f32;
                    }
                }
            }
            QData::Q4_1 { d, m, q } => {
                for (b, y) in out.chunks_exact_mut(QK).enumerate() {
                    let (d, m, q) = (d[r * nb + b], m[r * nb + b], &q[(r * nb + b) * 16..][..16]);
                    for j in 0..16 {
                        y[j] = d * (q[j] & 0x0F) as f32 + m;
                        y[j + 16] = d * (q[j] >> 4) as f32 + m;
                    }
                }
            }
            QData::Subs(p) => {
                // The reference's arithmetic: `s·(q − z)`, `s·q + m` or `s·q − m` (m kept negated).
                let row = p.row(r, nb);
                for (b, y) in out.chunks_exact_mut(QK).enumerate() {
                    let (q, (s0, s1)) = (row.quants(b), row.scales(b));
                    let m = if p.m.is_empty() { None } else { Some(p.m[r * nb + b]) };
                    for j in 0..QK {
                        let v = if j < 16 { s0 } else { s1 } * q[j] as f32;
                        y[j] = m.map_or(v, |m| v + m);
                    }
                }
            }
        }
    }

    /// `y = W·x` for one vector: `x` has `cols` values, `y` gets `rows`.
    pub fn matvec(&self, x: &[f32], y: &mut [f32]) {
        self.matmul(x, 1, y)
    }

    /// `Y = X·Wᵀ` for `t` vectors: `x` is `[t, cols]`, `y` gets `[t, rows]`.
    pub fn matmul(&self, x: &[f32], t: usize, y: &mut [f32]) {
        debug_assert_eq!((x.len(), y.len()), (t * self.cols, t * self.rows));
        let c = self.cols;
        match &self.data {
            QData::F32(v) if t == 1 => {
                for (r, y) in y.iter_mut().enumerate() {
                    *y = kernels::dot_w(&v[r * c..(r + 1) * c], x);
                }
            }
            QData::F32(v) => self.matmul_f32(v, x, t, y),
            _ => self.matmul_x16(x, t, y),
        }
    }

    /// Per token, the block sums of `x` that the offsets multiply, and the offsets:
    /// `Σ (d·q + m)·x = d·Σ q·x + m·Σ x` (Q4_1, Q5_1, the K-quants with `m` negated);
    /// `Σ d·(q − 8)·x = d·Σ q·x − 8·d·Σ x` (Q4_0). Q8_0 and the centered sub-blocks have none.
    fn offsets(&self, x: &[f32]) -> Offsets<'_> {
        let c = self.cols;
        let sums = |k: f32| -> Vec<Vec<f32>> { x.chunks_exact(c).map(|x| x.chunks_exact(QK).map(|b| k * b.iter().sum::<f32>()).collect()).collect() };
        match &self.data {
            QData::Q4_0 { d, .. } => (sums(-8.0), Some(d)),
            QData::Q4_1 { m, .. } => (sums(1.0), Some(m)),
            QData::Subs(p) if !p.m.is_empty() => (sums(1.0), Some(&p.m)),
            _ => (Vec::new(), None),
        }
    }

    /// Row `r`'s offset term for token `i` (see [`QMatrix::offsets`]).
    fn offset(&self, r: usize, i: usize, (sums, offsets): &Offsets) -> f32 {
        let nb = self.cols / QK;
        offsets.map_or(0.0, |o| o[r * nb..(r + 1) * nb].iter().zip(&sums[i]).map(|(o, s)| o * s).sum())
    }

    /// The block formats: every token's `x` rounded to 16 bits ([`X16`]), then integer dot
    /// products four tokens per pass over a row, so that its unpacked quants are reused:
    /// natively [`lanes`] (AVX2, SSE2, NEON or portable, one arithmetic), in wasm SIMD128.
    /// A token's result does not depend on how many tokens run with it: the prompt run in one
    /// pass gives the same keys and values as token by token.
    fn matmul_x16(&self, x: &[f32], t: usize, y: &mut [f32]) {
        self.matmul_x16_on(Isa::best(), x, t, y)
    }

    fn matmul_x16_on(&self, isa: Isa, x: &[f32], t: usize, y: &mut [f32]) {
        let (c, n, nb) = (self.cols, self.rows, self.cols / QK);
        let xq: Vec<X16> = x.chunks_exact(c).map(X16::new).collect();
        let offsets = self.offsets(x);
        let rows = |r0: usize, r1: usize, y: &mut [f32]| {
            let len = r1 - r0;
            for r in r0..r1 {
                let blocks = r * nb..(r + 1) * nb;
                let row = match &self.data {
                    QData::Q8_0 { d, q } => Row::Q8 { d: &d[blocks], q: &q[r * c..(r + 1) * c] },
                    QData::Q4_0 { d, q } | QData::Q4_1 { d, q, .. } => Row::Q4 { d: &d[blocks], q: &q[r * nb * 16..(r + 1) * nb * 16] },
                    QData::Subs(p) => Row::Sub(p.row(r, nb)),
                    QData::F32(_) => unreachable!("f32 rows are multiplied in f32"),
                };
                let mut i = 0;
                while i < t {
                    let k = if t - i >= 4 { 4 } else { 1 };
                    let group = [&xq[i], &xq[(i + 1).min(t - 1)], &xq[(i + 2).min(t - 1)], &xq[(i + 3).min(t - 1)]];
                    let mut out = [0f32; 4];
                    dot_row(isa, &row, &group[..k], &mut out);
                    for (j, v) in out[..k].iter().enumerate() {
                        y[(i + j) * len + r - r0] = self.offset(r, i + j, &offsets) + v;
                    }
                    i += k;
                }
            }
        };
        split_rows(n, t, y, rows);
    }

    /// f32 weights `v` (and f16/bf16, widened at load): rows taken eight at a time and met by
    /// every token, two rows by four tokens per inner step, so that each load feeds several
    /// products and the rows stay in L1. Each product is computed as `kernels::dot_w` computes
    /// it alone, so a token's result does not depend on the batch here either.
    fn matmul_f32(&self, v: &[f32], x: &[f32], t: usize, y: &mut [f32]) {
        const R: usize = 8;
        let (c, n) = (self.cols, self.rows);
        let part = |ra: usize, rb: usize, y: &mut [f32]| {
            let n = rb - ra;
            for r0 in (ra..rb).step_by(R) {
                let rows = R.min(rb - r0);
                let w = |k: usize| &v[(r0 + k) * c..(r0 + k + 1) * c];
                let xr = |i: usize| &x[i * c..(i + 1) * c];
                let r0 = r0 - ra;
                let mut i = 0;
                while i < t {
                    if i + 4 <= t {
                        let xs = [xr(i), xr(i + 1), xr(i + 2), xr(i + 3)];
                        let mut k = 0;
                        while k + 2 <= rows {
                            let s = kernels::dot2x4([w(k), w(k + 1)], xs);
                            for (dr, s) in s.iter().enumerate() {
                                for (di, v) in s.iter().enumerate() {
                                    y[(i + di) * n + r0 + k + dr] = *v;
                                }
                            }
                            k += 2;
                        }
                        for k in k..rows {
                            for (di, xv) in xs.iter().enumerate() {
                                y[(i + di) * n + r0 + k] = kernels::dot_w(w(k), xv);
                            }
                        }
                        i += 4;
                    } else {
                        for k in 0..rows {
                            y[i * n + r0 + k] = kernels::dot_w(w(k), xr(i));
                        }
                        i += 1;
                    }
                }
            }
        };
        split_rows(n, t, y, part);
    }
}

/// `x` as 16-bit integers with one f32 scale per 32-value block, `x ≈ s_b·q`: the integer
/// products with 4- and 8-bit weights are exact, and a block's error is at most
/// `max|x_b| / 65534` per value (llama.cpp rounds to 8 bits; this is 256 times finer).
pub struct X16 {
    q: Vec<i16>,
    s: Vec<f32>,
}

impl X16 {
    /// Rounds `x` (whole blocks) to nearest.
    pub fn new(x: &[f32]) -> Self {
        let mut q = vec![0i16; x.len()];
        let mut s = Vec::with_capacity(x.len() / QK);
        for (xb, qb) in x.chunks_exact(QK).zip(q.chunks_exact_mut(QK)) {
            let max = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
            let scale = max / 32767.0;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            for (q, v) in qb.iter_mut().zip(xb) {
                *q = (v * inv).round() as i16;
            }
            s.push(scale);
        }
        X16 { q, s }
    }
}

/// The inner loops: portable code the compiler vectorises natively, SIMD128 in wasm.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod kernels {
    /// `Σ a·b`, eight partial sums.
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0f32; 8];
        let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
        let (ar, br) = (ac.remainder(), bc.remainder());
        for (a, b) in ac.zip(bc) {
            for l in 0..8 {
                acc[l] += a[l] * b[l];
            }
        }
        let tail: f32 = ar.iter().zip(br).map(|(a, b)| a * b).sum();
        acc.iter().sum::<f32>() + tail
    }

    /// A weight row times x with exactly the arithmetic of one [`dot2x4`] output (the same
    /// lanes, the same fused or separate multiply-adds), so that one token alone and the same
    /// token in a batch give the same bits.
    #[cfg(target_arch = "x86_64")]
    pub fn dot_w(w: &[f32], x: &[f32]) -> f32 {
        use std::arch::x86_64::*;
        assert_eq!(w.len(), x.len());
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA; the lengths are equal.
            return unsafe { dot_w_avx2(w, x) };
        }
        let n = w.len() / 4 * 4;
        // SAFETY: SSE2 is part of x86_64; every load reads 4 floats at i + 4 <= n.
        unsafe {
            let mut acc = _mm_setzero_ps();
            for i in (0..n).step_by(4) {
                acc = _mm_add_ps(acc, _mm_mul_ps(_mm_loadu_ps(w.as_ptr().add(i)), _mm_loadu_ps(x.as_ptr().add(i))));
            }
            let mut lanes = [0f32; 4];
            _mm_storeu_ps(lanes.as_mut_ptr(), acc);
            lanes.iter().sum::<f32>() + w[n..].iter().zip(&x[n..]).map(|(a, b)| a * b).sum::<f32>()
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_w_avx2(w: &[f32], x: &[f32]) -> f32 {
        use std::arch::x86_64::*;
        let n = w.len() / 8 * 8;
        let mut acc = _mm256_setzero_ps();
        for i in (0..n).step_by(8) {
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(w.as_ptr().add(i)), _mm256_loadu_ps(x.as_ptr().add(i)), acc);
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), acc);
        lanes.iter().sum::<f32>() + w[n..].iter().zip(&x[n..]).map(|(a, b)| a * b).sum::<f32>()
    }

    /// A weight row times x (the arithmetic of one [`dot2x4`] output).
    #[cfg(not(target_arch = "x86_64"))]
    pub fn dot_w(w: &[f32], x: &[f32]) -> f32 {
        dot(w, x)
    }

    /// Dot products of two rows of W with four vectors: `out[r][k] = w[r]·x[k]`. Each chunk
    /// of `w` and `x` is loaded once for eight products (eight 4-lane accumulators in SSE
    /// registers; the compiler's own vectorisation of this spills them).
    #[cfg(target_arch = "x86_64")]
    pub fn dot2x4(w: [&[f32]; 2], x: [&[f32]; 4]) -> [[f32; 4]; 2] {
        use std::arch::x86_64::*;
        let len = w[0].len();
        assert!(w[1].len() == len && x.iter().all(|x| x.len() == len));
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA; lengths are checked above.
            return unsafe { dot2x4_avx2(w, x) };
        }
        let n = len / 4 * 4;
        let mut out = [[0f32; 4]; 2];
        // SAFETY: SSE2 is part of x86_64; every load reads 4 floats at i + 4 <= n <= len.
        unsafe {
            let mut acc = [_mm_setzero_ps(); 8];
            for i in (0..n).step_by(4) {
                let a = _mm_loadu_ps(w[0].as_ptr().add(i));
                let b = _mm_loadu_ps(w[1].as_ptr().add(i));
                for k in 0..4 {
                    let xv = _mm_loadu_ps(x[k].as_ptr().add(i));
                    acc[k] = _mm_add_ps(acc[k], _mm_mul_ps(a, xv));
                    acc[4 + k] = _mm_add_ps(acc[4 + k], _mm_mul_ps(b, xv));
                }
            }
            for r in 0..2 {
                for k in 0..4 {
                    let mut lanes = [0f32; 4];
                    _mm_storeu_ps(lanes.as_mut_ptr(), acc[4 * r + k]);
                    out[r][k] = lanes.iter().sum::<f32>() + w[r][n..].iter().zip(&x[k][n..]).map(|(a, b)| a * b).sum::<f32>();
                }
            }
        }
        out
    }

    /// [`dot2x4`] in 8-lane AVX registers with fused multiply-adds.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot2x4_avx2(w: [&[f32]; 2], x: [&[f32]; 4]) -> [[f32; 4]; 2] {
        use std::arch::x86_64::*;
        let len = w[0].len();
        let n = len / 8 * 8;
        let mut acc = [_mm256_setzero_ps(); 8];
        for i in (0..n).step_by(8) {
            let a = _mm256_loadu_ps(w[0].as_ptr().add(i));
            let b = _mm256_loadu_ps(w[1].as_ptr().add(i));
            for k in 0..4 {
                let xv = _mm256_loadu_ps(x[k].as_ptr().add(i));
                acc[k] = _mm256_fmadd_ps(a, xv, acc[k]);
                acc[4 + k] = _mm256_fmadd_ps(b, xv, acc[4 + k]);
            }
        }
        let mut out = [[0f32; 4]; 2];
        for r in 0..2 {
            for k in 0..4 {
                let mut lanes = [0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), acc[4 * r + k]);
                out[r][k] = lanes.iter().sum::<f32>() + w[r][n..].iter().zip(&x[k][n..]).map(|(a, b)| a * b).sum::<f32>();
            }
        }
        out
    }

    /// Dot products of two rows of W with four vectors: `out[r][k] = w[r]·x[k]`.
    #[cfg(not(target_arch = "x86_64"))]
    pub fn dot2x4(w: [&[f32]; 2], x: [&[f32]; 4]) -> [[f32; 4]; 2] {
        [0, 1].map(|r| [0, 1, 2, 3].map(|k| dot(w[r], x[k])))
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod kernels {
    use core::arch::wasm32::*;

    use super::QK;

    #[inline(always)]
    fn hsum(v: v128) -> f32 {
        f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v) + f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v)
    }

    #[inline(always)]
    unsafe fn load(p: &[f32], i: usize) -> v128 {
        debug_assert!(i + 4 <= p.len());
        v128_load(p.as_ptr().add(i) as *const v128)
    }

    /// `Σ a·b`, two vector accumulators.
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len()) / 8 * 8;
        let (mut s0, mut s1) = (f32x4_splat(0.0), f32x4_splat(0.0));
        // SAFETY: every load reads 4 floats at i or i + 4 < n ≤ both lengths.
        unsafe {
            for i in (0..n).step_by(8) {
                s0 = f32x4_add(s0, f32x4_mul(load(a, i), load(b, i)));
                s1 = f32x4_add(s1, f32x4_mul(load(a, i + 4), load(b, i + 4)));
            }
        }
        hsum(f32x4_add(s0, s1)) + a[n..].iter().zip(&b[n..]).map(|(a, b)| a * b).sum::<f32>()
    }

    /// A weight row times x with exactly the arithmetic of one [`dot2x4`] output, so that one
    /// token alone and the same token in a batch give the same bits.
    pub fn dot_w(w: &[f32], x: &[f32]) -> f32 {
        assert_eq!(w.len(), x.len());
        let n = w.len() / 4 * 4;
        let mut acc = f32x4_splat(0.0);
        // SAFETY: loads read 4 floats at i < n <= both lengths.
        unsafe {
            for i in (0..n).step_by(4) {
                acc = f32x4_add(acc, f32x4_mul(load(w, i), load(x, i)));
            }
        }
        hsum(acc) + w[n..].iter().zip(&x[n..]).map(|(a, b)| a * b).sum::<f32>()
    }

    /// Dot products of two rows of W with four vectors: `out[r][k] = w[r]·x[k]`. Each chunk
    /// of `w` and `x` is loaded once for eight products (eight accumulators in registers).
    pub fn dot2x4(w: [&[f32]; 2], x: [&[f32]; 4]) -> [[f32; 4]; 2] {
        let n = w[0].len() / 4 * 4;
        let mut s = [[f32x4_splat(0.0); 4]; 2];
        // SAFETY: both rows of `w` and every `x[k]` have the same length; loads read 4 at i < n.
        unsafe {
            for i in (0..n).step_by(4) {
                let (w0, w1) = (load(w[0], i), load(w[1], i));
                for k in 0..4 {
                    let xv = load(x[k], i);
                    s[0][k] = f32x4_add(s[0][k], f32x4_mul(w0, xv));
                    s[1][k] = f32x4_add(s[1][k], f32x4_mul(w1, xv));
                }
            }
        }
        let mut out = [[0f32; 4]; 2];
        for r in 0..2 {
            for k in 0..4 {
                out[r][k] = hsum(s[r][k]) + w[r][n..].iter().zip(&x[k][n..]).map(|(a, b)| a * b).sum::<f32>();
            }
        }
        out
    }

    /// Loads eight 16-bit values.
    #[inline(always)]
    unsafe fn load16(p: &[i16], i: usize) -> v128 {
        debug_assert!(i + 8 <= p.len());
        v128_load(p.as_ptr().add(i) as *const v128)
    }

    /// Sixteen-bit products of eight-lane weights `w` with token `x`'s block `b`, summed in
    /// pairs into four i32 lanes (`i32x4.dot_i16x8_s`): the same lanes for any token count.
    #[inline(always)]
    unsafe fn block_dot(w: &[v128; 4], x: &super::X16, b: usize) -> v128 {
        let mut acc = i32x4_dot_i16x8(w[0], load16(&x.q, b * QK));
        acc = i32x4_add(acc, i32x4_dot_i16x8(w[1], load16(&x.q, b * QK + 8)));
        acc = i32x4_add(acc, i32x4_dot_i16x8(w[2], load16(&x.q, b * QK + 16)));
        i32x4_add(acc, i32x4_dot_i16x8(w[3], load16(&x.q, b * QK + 24)))
    }

    /// A Q8_0 row against one to four 16-bit vectors: `out[k] = Σ_b d_b·s_kb · Σ q·x_k`, each
    /// block's weights widened once for all of them.
    pub fn dot_q8_x16(d: &[f32], q: &[i8], xs: &[&super::X16], out: &mut [f32; 4]) {
        assert!(q.len() == d.len() * QK && xs.len() <= 4 && xs.iter().all(|x| x.q.len() == q.len() && x.s.len() == d.len()));
        // SAFETY: block b spans q[32b..32b+32] and every x.q[32b..32b+32], inside the rows.
        unsafe {
            rows(d, xs, out, |b| {
                let qp = q.as_ptr().add(b * QK) as *const v128;
                let (q0, q1) = (v128_load(qp), v128_load(qp.add(1)));
                [i16x8_extend_low_i8x16(q0), i16x8_extend_high_i8x16(q0), i16x8_extend_low_i8x16(q1), i16x8_extend_high_i8x16(q1)]
            })
        }
    }

    /// A 4-bit row (nibbles, no offset) against one to four 16-bit vectors:
    /// `out[k] = Σ_b d_b·s_kb · Σ q·x_k`.
    pub fn dot_q4_x16(d: &[f32], q: &[u8], xs: &[&super::X16], out: &mut [f32; 4]) {
        assert!(q.len() == d.len() * 16 && xs.len() <= 4 && xs.iter().all(|x| x.q.len() == 2 * q.len() && x.s.len() == d.len()));
        let mask = u8x16_splat(0x0F);
        // SAFETY: block b spans q[16b..16b+16] and every x.q[32b..32b+32], inside the rows.
        unsafe {
            rows(d, xs, out, |b| {
                let v = v128_load(q.as_ptr().add(b * 16) as *const v128);
                let (lo, hi) = (v128_and(v, mask), u8x16_shr(v, 4)); // elements 0..16, 16..32
                [u16x8_extend_low_u8x16(lo), u16x8_extend_high_u8x16(lo), u16x8_extend_low_u8x16(hi), u16x8_extend_high_u8x16(hi)]
            })
        }
    }

    /// A [`super::Subs`] row against one to four 16-bit vectors:
    /// `out[k] = Σ_b s_kb · Σ_h s_bh · Σ_{j∈h} (q − z)·x_k`. A sub-block's quants are assembled
    /// once (nibbles, then each plane's bits spread to bytes) and widened to i16 for all tokens.
    pub fn dot_sub_x16(row: &super::SubRow, xs: &[&super::X16], out: &mut [f32; 4]) {
        let nb = row.blocks();
        assert!(row.lo.len() == nb * 16 && row.hi.len() == nb * row.planes && xs.len() <= 4 && xs.iter().all(|x| x.q.len() == nb * QK && x.s.len() == nb));
        let (mask, none) = (u8x16_splat(0x0F), u8x16_splat(0));
        let zero = i16x8_splat(row.zero as i16);
        // Element j's bit in a plane word: byte j / 8, bit j % 8 (elements 0..16, then 16..32).
        let (first, second) = (u8x16(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1), u8x16(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
        let bit = u8x16(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
        let mut total = [f32x4_splat(0.0); 4];
        // SAFETY: sub-block b spans lo[16b..16b+16] and every x.q[32b..32b+32] (asserted above).
        unsafe {
            for b in 0..nb {
                let v = v128_load(row.lo.as_ptr().add(b * 16) as *const v128);
                let (mut lo, mut hi) = (v128_and(v, mask), u8x16_shr(v, 4)); // elements 0..16, 16..32
                for p in 0..row.planes {
                    let word = u32x4_splat(row.hi[b * row.planes + p]);
                    let add = u8x16_splat(16 << p);
                    lo = v128_or(lo, v128_and(add, i8x16_ne(v128_and(i8x16_swizzle(word, first), bit), none)));
                    hi = v128_or(hi, v128_and(add, i8x16_ne(v128_and(i8x16_swizzle(word, second), bit), none)));
                }
                let w = [
                    i16x8_sub(u16x8_extend_low_u8x16(lo), zero),
                    i16x8_sub(u16x8_extend_high_u8x16(lo), zero),
                    i16x8_sub(u16x8_extend_low_u8x16(hi), zero),
                    i16x8_sub(u16x8_extend_high_u8x16(hi), zero),
                ];
                let (s0, s1) = row.scales(b);
                for (k, x) in xs.iter().enumerate() {
                    let at = b * QK;
                    let a0 = i32x4_add(i32x4_dot_i16x8(w[0], load16(&x.q, at)), i32x4_dot_i16x8(w[1], load16(&x.q, at + 8)));
                    let a1 = i32x4_add(i32x4_dot_i16x8(w[2], load16(&x.q, at + 16)), i32x4_dot_i16x8(w[3], load16(&x.q, at + 24)));
                    let sum = if row.halves == 1 {
                        f32x4_mul(f32x4_convert_i32x4(i32x4_add(a0, a1)), f32x4_splat(x.s[b] * s0))
                    } else {
                        f32x4_add(f32x4_mul(f32x4_convert_i32x4(a0), f32x4_splat(x.s[b] * s0)), f32x4_mul(f32x4_convert_i32x4(a1), f32x4_splat(x.s[b] * s1)))
                    };
                    total[k] = f32x4_add(total[k], sum);
                }
            }
        }
        for k in 0..xs.len() {
            out[k] = hsum(total[k]);
        }
    }

    /// The one integer kernel in wasm.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Isa {
        Simd128,
    }

    impl Isa {
        pub fn best() -> Isa {
            Isa::Simd128
        }

        pub fn name(self) -> &'static str {
            "SIMD128"
        }
    }

    /// `out[k]` = row · `xs[k]` for one to four tokens.
    pub fn dot_row(_: Isa, row: &super::Row, xs: &[&super::X16], out: &mut [f32; 4]) {
        match row {
            super::Row::Q8 { d, q } => dot_q8_x16(d, q, xs, out),
            super::Row::Q4 { d, q } => dot_q4_x16(d, q, xs, out),
            super::Row::Sub(s) => dot_sub_x16(s, xs, out),
        }
    }

    /// The shared loop: block `b`'s weights widened to i16 once (`widen`), met by each token's
    /// block, scaled by `d_b·s_kb` and summed per token.
    #[inline(always)]
    unsafe fn rows(d: &[f32], xs: &[&super::X16], out: &mut [f32; 4], widen: impl Fn(usize) -> [v128; 4]) {
        let mut total = [f32x4_splat(0.0); 4];
        for (b, &db) in d.iter().enumerate() {
            let w = widen(b);
            for (k, x) in xs.iter().enumerate() {
                let acc = block_dot(&w, x, b);
                total[k] = f32x4_add(total[k], f32x4_mul(f32x4_convert_i32x4(acc), f32x4_splat(db * x.s[b])));
            }
        }
        for k in 0..xs.len() {
            out[k] = hsum(total[k]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::quant::{dequantize, quantize_q4_1, quantize_q8_0};
    use half::f16;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                (s >> 8) as f32 / (1 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    /// Every kernel against the dequantised matrix times x, in f64.
    #[test]
    fn products_equal_the_dequantised_matrix() {
        let (rows, cols) = (7, 96);
        let w = values(rows * cols, 1);
        // Q4_0 bytes: a Q4_1 block with its offset dropped has Q4_0's layout but for the header.
        let q4_0: Vec<u8> = quantize_q4_1(&w).chunks_exact(20).flat_map(|b| [&b[0..2], &b[4..20]].concat()).collect();
        let cases = [
            (GgmlType::F32, w.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()),
            (GgmlType::Q8_0, quantize_q8_0(&w)),
            (GgmlType::Q4_1, quantize_q4_1(&w)),
            (GgmlType::Q4_0, q4_0),
            (GgmlType::F16, w.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect()),
        ];
        for (ty, bytes) in cases {
            check_products(ty, &bytes, rows, cols);
        }
        // The other formats as random blocks (every bit pattern is a valid block) with sane
        // scales, two 256-value super-blocks a row for the K-quants.
        for ty in [GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K] {
            let cols = 512;
            check_products(ty, &random_blocks(ty, rows * cols, 11), rows, cols);
        }
    }

    /// Random blocks of `ty` for `n` values, their f16 scales set to small normal values.
    fn random_blocks(ty: GgmlType, n: usize, seed: u32) -> Vec<u8> {
        let layout = ty.layout().unwrap();
        let noise = values(n / ty.block_size() * ty.type_size(), seed);
        let mut bytes: Vec<u8> = noise.iter().map(|v| ((v + 1.0) * 127.9) as u8).collect();
        for (i, b) in bytes.chunks_exact_mut(layout.bytes).enumerate() {
            let scale = |k: usize| f16::from_f32(0.01 + 0.002 * ((i + k) % 7) as f32).to_le_bytes();
            b[layout.d_at..layout.d_at + 2].copy_from_slice(&scale(0));
            if let Some(at) = layout.m_at {
                b[at..at + 2].copy_from_slice(&scale(3));
            }
        }
        bytes
    }

    /// Rows equal to the dequantiser's, bit for bit; products within x's 16-bit rounding of the
    /// f64 product of the dequantised matrix; a token's product the same alone or in a batch;
    /// the bytes held as `held_bytes` says.
    fn check_products(ty: GgmlType, bytes: &[u8], rows: usize, cols: usize) {
        let m = QMatrix::new(ty, bytes, rows, cols).unwrap();
        assert_eq!(m.bytes(), held_bytes(ty, (rows * cols) as u64), "{ty:?} bytes held");
        let dense = dequantize(ty, bytes, rows * cols).unwrap();
        let mut row = vec![0f32; cols];
        for r in 0..rows {
            m.row_into(r, &mut row);
            assert_eq!(row, dense[r * cols..(r + 1) * cols], "{ty:?} row {r}");
        }
        for t in [1, 3, 6, 9] {
            let x = values(t * cols, 7 + t as u32);
            let mut y = vec![0f32; t * rows];
            m.matmul(&x, t, &mut y);
            let quantised = !matches!(ty, GgmlType::F32 | GgmlType::F16);
            for i in 0..t {
                let x = &x[i * cols..(i + 1) * cols];
                for r in 0..rows {
                    let w = &dense[r * cols..(r + 1) * cols];
                    let want: f64 = w.iter().zip(x).map(|(w, x)| *w as f64 * *x as f64).sum();
                    // Quantised products round x to 16 bits per block (X16).
                    let rounding: f64 = if quantised {
                        w.chunks(QK)
                            .zip(x.chunks(QK))
                            .map(|(w, x)| {
                                let max = x.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
                                w.iter().map(|v| v.abs() as f64).sum::<f64>() * max / 65534.0
                            })
                            .sum()
                    } else {
                        0.0
                    };
                    let got = y[i * rows + r] as f64;
                    assert!((got - want).abs() <= 1e-5 + rounding, "{ty:?} t={t} [{i},{r}]: {got} vs {want} (rounding bound {rounding})");
                    // The same bits as the token on its own: batching changes nothing.
                    let mut alone = vec![0f32; rows];
                    m.matvec(x, &mut alone);
                    assert_eq!(alone[r].to_bits(), y[i * rows + r].to_bits(), "{ty:?} t={t} [{i},{r}]");
                }
            }
        }
    }

    /// Rows split among threads give every product bit for bit as one thread does.
    #[test]
    fn threads_change_no_result() {
        let (rows, cols) = (150, 512);
        for ty in [GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K] {
            let bytes = if ty == GgmlType::Q8_0 { quantize_q8_0(&values(rows * cols, 5)) } else { random_blocks(ty, rows * cols, 5) };
            let m = QMatrix::new(ty, &bytes, rows, cols).unwrap();
            for t in [1, 5] {
                let x = values(t * cols, 9);
                let (mut one, mut many) = (vec![0f32; t * rows], vec![0f32; t * rows]);
                m.x16_with_threads(1, &x, t, &mut one);
                m.x16_with_threads(3, &x, t, &mut many);
                assert_eq!(one.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), many.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "{ty:?} t={t}");
            }
        }
    }

    /// Every native kernel (SSE2, AVX2, NEON where the CPU has them) gives the portable
    /// kernel's products bit for bit, for every block format, one token and batched.
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    #[test]
    fn every_kernel_gives_the_portable_bits() {
        let (rows, cols) = (9, 512);
        let w = values(rows * cols, 21);
        let cases = [
            (GgmlType::Q8_0, quantize_q8_0(&w)),
            (GgmlType::Q4_1, quantize_q4_1(&w)),
            (GgmlType::Q4_0, random_blocks(GgmlType::Q4_0, rows * cols, 22)),
            (GgmlType::Q5_0, random_blocks(GgmlType::Q5_0, rows * cols, 23)),
            (GgmlType::Q5_1, random_blocks(GgmlType::Q5_1, rows * cols, 24)),
            (GgmlType::Q4_K, random_blocks(GgmlType::Q4_K, rows * cols, 25)),
            (GgmlType::Q5_K, random_blocks(GgmlType::Q5_K, rows * cols, 26)),
            (GgmlType::Q6_K, random_blocks(GgmlType::Q6_K, rows * cols, 27)),
        ];
        let isas = Isa::available();
        eprintln!("kernels: {:?}", isas);
        for (ty, bytes) in cases {
            let m = QMatrix::new(ty, &bytes, rows, cols).unwrap();
            for t in [1, 4, 6] {
                // Large and tiny values: a block's scale spans many binades.
                let x: Vec<f32> = values(t * cols, 30 + t as u32).iter().enumerate().map(|(i, v)| v * if i % 97 == 0 { 300.0 } else { 1.0 }).collect();
                let bits = |isa: Isa| {
                    let mut y = vec![0f32; t * rows];
                    m.matmul_x16_on(isa, &x, t, &mut y);
                    y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                };
                let portable = bits(Isa::Portable);
                for &isa in &isas[1..] {
                    assert_eq!(bits(isa), portable, "{ty:?} t={t} on {isa:?}");
                }
            }
        }
    }

    impl QMatrix {
        /// `matmul` with `n` threads; the setting is global, so the tests that change it hold a lock.
        fn x16_with_threads(&self, n: usize, x: &[f32], t: usize, y: &mut [f32]) {
            static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _held = LOCK.lock().unwrap();
            set_threads(n);
            self.matmul(x, t, y);
            set_threads(1);
        }
    }

    /// 16-bit rounding: each value within half a step of its block's scale.
    #[test]
    fn x16_rounds_to_within_half_a_step() {
        let mut x = values(96, 3);
        x[40] = 7.5; // one large value sets block 1's scale
        x[64..96].iter_mut().for_each(|v| *v = 0.0); // an all-zero block
        let q = X16::new(&x);
        for (b, (xb, qb)) in x.chunks(QK).zip(q.q.chunks(QK)).enumerate() {
            let max = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
            assert_eq!(q.s[b], max / 32767.0);
            assert_eq!(qb.iter().map(|v| v.unsigned_abs()).max().unwrap(), if max > 0.0 { 32767 } else { 0 });
            for (v, &qv) in xb.iter().zip(qb) {
                assert!((qv as f32 * q.s[b] - v).abs() <= q.s[b] * 0.5 + f32::EPSILON * max, "block {b}: {v} as {qv}");
            }
        }
    }

    #[test]
    fn a_row_of_partial_blocks_is_refused() {
        assert!(QMatrix::new(GgmlType::Q8_0, &[0; 34], 1, 16).is_err());
        assert!(QMatrix::new(GgmlType::Q8_0, &[0; 33], 1, 32).is_err());
    }
}
