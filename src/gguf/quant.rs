//! GGML block formats and their dequantisers.
//!
//! One table ([`BlockLayout`], a row per quantised type) says where each block's scale,
//! minimum, sub-block scales, high bits and quants sit and in which order its elements come;
//! [`unpack`] reads a block through it into 32-element [`Sub`]s, which the dequantiser here, the
//! CPU repacking (`model::qmatrix`) and the GPU packing (`model::gpu`) all start from.
//!
//! Dequantisation does llama.cpp's reference arithmetic (`dequantize_row_*` in ggml-quants.c),
//! in the same order of f32 operations, so results are bit-identical to llama.cpp and to the
//! PyPI `gguf` package (proven by `tests/it/gguf.rs` against fixtures from the latter).

use half::{bf16, f16};

use crate::error::{Error, Result};

/// Elements per K-quant super-block.
const QK_K: usize = 256;

/// The tensor types Ember reads: the ones found in common small-model files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types, missing_docs)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4_K,
    Q5_K,
    Q6_K,
}

/// The refusal of a tensor stored in a type Ember does not read, named as llama.cpp names it
/// (`ggml.h`'s `ggml_type`), so that a person knows which file to pick instead.
pub fn unsupported_type(tensor: &str, code: u32) -> Error {
    const NAMES: [(u32, &str); 16] = [
        (10, "Q2_K"),
        (11, "Q3_K"),
        (15, "Q8_K"),
        (16, "IQ2_XXS"),
        (17, "IQ2_XS"),
        (18, "IQ3_XXS"),
        (19, "IQ1_S"),
        (20, "IQ4_NL"),
        (21, "IQ3_S"),
        (22, "IQ2_S"),
        (23, "IQ4_XS"),
        (24, "I8"),
        (26, "I32"),
        (29, "IQ1_M"),
        (34, "TQ1_0"),
        (39, "MXFP4"),
    ];
    let ty = NAMES.iter().find(|(c, _)| *c == code).map_or_else(|| format!("number {code}"), |(_, n)| n.to_string());
    let supported = GgmlType::ALL.map(GgmlType::name).join(", ");
    Error::UnsupportedType { name: tensor.to_string(), ty, supported }
}

impl GgmlType {
    /// Every supported type.
    pub const ALL: [GgmlType; 11] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ];

    /// From GGML's numeric type id; `None` for types Ember does not read.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }

    /// GGML's numeric type id.
    pub fn code(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q4_K => 12,
            GgmlType::Q5_K => 13,
            GgmlType::Q6_K => 14,
            GgmlType::BF16 => 30,
        }
    }

    /// The name llama.cpp uses.
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::BF16 => "BF16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q4_K => "Q4_K",
            GgmlType::Q5_K => "Q5_K",
            GgmlType::Q6_K => "Q6_K",
        }
    }

    /// Elements per block.
    pub fn block_size(self) -> usize {
        match self.layout() {
            Some(l) => l.elements,
            None => 1,
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        match (self, self.layout()) {
            (_, Some(l)) => l.bytes,
            (GgmlType::F32, None) => 4,
            _ => 2, // F16, BF16
        }
    }

    /// Bytes that `n` elements take as stored (`n` a whole number of blocks).
    pub fn stored_bytes(self, n: usize) -> usize {
        n / self.block_size() * self.type_size()
    }

    /// Where a quantised type's fields sit in its blocks; `None` for F32, F16 and BF16.
    pub fn layout(self) -> Option<&'static BlockLayout> {
        LAYOUTS.iter().find(|l| l.ty == self)
    }
}

/// How a block's quants, scales and minimum make its values (`s` the scale of the element's
/// half of its 32-element sub-block, `m` the sub-block's offset; see [`Sub`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// `s·(q − zero)`: Q4_0 (8), Q5_0 (16), Q6_K (32).
    Centered(i32),
    /// `s·q` with `q` a signed byte: Q8_0.
    Signed,
    /// `s·q + m`: Q4_1, Q5_1.
    PlusMin,
    /// `s·q − m`: Q4_K, Q5_K.
    MinusMin,
}

/// The order of a block's elements in its bytes, and where their high bits come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// 32 bytes, element `j` in byte `j` (Q8_0).
    Bytes,
    /// 16 bytes of nibbles: element `j` in the low half of byte `j`, element `j + 16` in its
    /// high half; the fifth bit of element `j` is bit `j` of the little-endian u32 at `qh`
    /// (Q5_0, Q5_1).
    Nibbles,
    /// A 256-element super-block of eight 32-element sub-blocks: sub-block `2c` is the low
    /// nibbles of `qs[32c..32c + 32]`, sub-block `2c + 1` their high nibbles; the fifth bit of
    /// element `l` of sub-block `s` is bit `s` of `qh[l]` (Q5_K); sub-block `s`'s 6-bit scale and
    /// minimum are [`scale_min_k4`]`(s)` of the 12 bytes at `scales`.
    KQuant,
    /// Q6_K's two halves of 128: element `128h + 32k + l` takes a nibble of
    /// `ql[64h + l + 32·(k % 2)]` (the low one for k < 2) and the two bits `2k..2k+2` of
    /// `qh[32h + l]`; its scale is the signed byte `scales[e / 16]`.
    Q6K,
}

/// Where each field of a quantised block sits: the one description of each GGUF block format
/// that the dequantiser, the CPU repacking (`model::qmatrix`) and the GPU packing (`model::gpu`)
/// all read, through [`unpack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLayout {
    /// The type.
    pub ty: GgmlType,
    /// Elements per block (32, or a K-quant's 256).
    pub elements: usize,
    /// Bytes per block.
    pub bytes: usize,
    /// Bits per quant.
    pub bits: u32,
    /// How quants, scales and minimum make values.
    pub value: Value,
    /// Offset of the f16 scale `d` (a K-quant's super-block scale).
    pub d_at: usize,
    /// Offset of the f16 minimum (Q4_1/Q5_1 `m`, a K-quant's `dmin`).
    pub m_at: Option<usize>,
    /// Offset of the sub-block scales (K-quants).
    pub scales_at: Option<usize>,
    /// Offset of the high bits.
    pub qh_at: Option<usize>,
    /// Offset of the quants (their low bits).
    pub qs_at: usize,
    /// The element order.
    pub order: Order,
}

/// ggml-common.h's `block_*` structs, field by field.
const LAYOUTS: [BlockLayout; 8] = {
    use GgmlType as T;
    #[allow(clippy::too_many_arguments)]
    const fn l(
        ty: T,
        elements: usize,
        bytes: usize,
        bits: u32,
        value: Value,
        d_at: usize,
        m_at: Option<usize>,
        scales_at: Option<usize>,
        qh_at: Option<usize>,
        qs_at: usize,
        order: Order,
    ) -> BlockLayout {
        BlockLayout { ty, elements, bytes, bits, value, d_at, m_at, scales_at, qh_at, qs_at, order }
    }
    [
        // d, qs[16]
        l(T::Q4_0, 32, 18, 4, Value::Centered(8), 0, None, None, None, 2, Order::Nibbles),
        // d, m, qs[16]
        l(T::Q4_1, 32, 20, 4, Value::PlusMin, 0, Some(2), None, None, 4, Order::Nibbles),
        // d, qh[4], qs[16]
        l(T::Q5_0, 32, 22, 5, Value::Centered(16), 0, None, None, Some(2), 6, Order::Nibbles),
        // d, m, qh[4], qs[16]
        l(T::Q5_1, 32, 24, 5, Value::PlusMin, 0, Some(2), None, Some(4), 8, Order::Nibbles),
        // d, qs[32]
        l(T::Q8_0, 32, 34, 8, Value::Signed, 0, None, None, None, 2, Order::Bytes),
        // d, dmin, scales[12], qs[128]
        l(T::Q4_K, QK_K, 144, 4, Value::MinusMin, 0, Some(2), Some(4), None, 16, Order::KQuant),
        // d, dmin, scales[12], qh[32], qs[128]
        l(T::Q5_K, QK_K, 176, 5, Value::MinusMin, 0, Some(2), Some(4), Some(16), 48, Order::KQuant),
        // ql[128], qh[64], scales[16], d
        l(T::Q6_K, QK_K, 210, 6, Value::Centered(32), 208, None, Some(192), Some(128), 0, Order::Q6K),
    ]
};

/// 32 elements of a block, unpacked: the raw quants with the factors of their scale and offset.
/// Element `j`'s scale is `d · sc[j / 16]` and the offset `dmin · mn`, each one f32 product as
/// llama.cpp computes them (for the 32-element formats the factors are 1, which is exact).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sub {
    /// Quants of `bits` bits, unsigned (Q8_0: the byte, whose value is signed).
    pub q: [u8; 32],
    /// The block's scale (a K-quant's super-block `d`).
    pub d: f32,
    /// The block's minimum (Q4_1/Q5_1 `m`, a K-quant's `dmin`); 0 otherwise.
    pub dmin: f32,
    /// Factors of `d` for elements 0..16 and 16..32: a K-quant's 6-bit scale, Q6_K's two
    /// signed 8-bit scales; 1 otherwise.
    pub sc: [i32; 2],
    /// Factor of `dmin`: a K-quant's 6-bit minimum; 1 otherwise.
    pub mn: i32,
}

impl Sub {
    /// The scale of elements `16·half .. 16·half + 16`.
    pub fn scale(&self, half: usize) -> f32 {
        self.d * self.sc[half] as f32
    }

    /// The offset (added for `PlusMin`, subtracted for `MinusMin`).
    pub fn offset(&self) -> f32 {
        self.dmin * self.mn as f32
    }

    /// The 32 values, with llama.cpp's reference arithmetic operation for operation.
    pub fn dequantize(&self, value: Value, out: &mut [f32]) {
        let (lo, hi, m) = (self.scale(0), self.scale(1), self.offset());
        for (j, (y, &q)) in out.iter_mut().zip(&self.q).enumerate() {
            let s = if j < 16 { lo } else { hi };
            *y = match value {
                Value::Centered(zero) => s * (q as i32 - zero) as f32,
                Value::Signed => s * (q as i8) as f32,
                Value::PlusMin => s * q as f32 + m,
                Value::MinusMin => s * q as f32 - m,
            };
        }
    }
}

/// Unpacks one block (`layout.bytes` bytes) into its `layout.elements / 32` sub-blocks.
pub fn unpack(layout: &BlockLayout, b: &[u8], out: &mut [Sub]) {
    debug_assert!(b.len() == layout.bytes && out.len() == layout.elements / 32);
    let d = f16_at(b, layout.d_at);
    let dmin = layout.m_at.map_or(0.0, |at| f16_at(b, at));
    let qs = &b[layout.qs_at..];
    let one = Sub { q: [0; 32], d, dmin, sc: [1, 1], mn: 1 };
    match layout.order {
        Order::Bytes => {
            out[0] = one;
            out[0].q.copy_from_slice(&qs[..32]);
        }
        Order::Nibbles => {
            let qh = layout.qh_at.map_or(0, |at| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]));
            out[0] = one;
            for (j, &b) in qs[..16].iter().enumerate() {
                out[0].q[j] = (b & 0x0F) | (((qh >> j) & 1) << 4) as u8;
                out[0].q[j + 16] = (b >> 4) | (((qh >> (j + 16)) & 1) << 4) as u8;
            }
        }
        Order::KQuant => {
            let scales = &b[layout.scales_at.expect("K-quants have scales")..][..12];
            for (s, sub) in out.iter_mut().enumerate() {
                let (sc, mn) = scale_min_k4(s, scales);
                *sub = Sub { q: [0; 32], d, dmin, sc: [sc as i32; 2], mn: mn as i32 };
                let c = 32 * (s / 2);
                for l in 0..32 {
                    let v = qs[c + l];
                    let low = if s % 2 == 1 { v >> 4 } else { v & 0x0F };
                    let high = layout.qh_at.map_or(0, |at| ((b[at + l] >> s) & 1) << 4);
                    sub.q[l] = low | high;
                }
            }
        }
        Order::Q6K => {
            let (qh, scales) = (&b[layout.qh_at.expect("Q6_K has high bits")..], &b[layout.scales_at.expect("Q6_K has scales")..]);
            for (s, sub) in out.iter_mut().enumerate() {
                *sub = Sub { q: [0; 32], d, dmin, sc: [scales[2 * s] as i8 as i32, scales[2 * s + 1] as i8 as i32], mn: 1 };
                let (h, k) = (s / 4, s % 4);
                for l in 0..32 {
                    let low = qs[64 * h + l + 32 * (k % 2)];
                    let low = if k < 2 { low & 0x0F } else { low >> 4 };
                    sub.q[l] = low | (((qh[32 * h + l] >> (2 * k)) & 3) << 4);
                }
            }
        }
    }
}

/// Every 32-element sub-block of `bytes` (whole blocks of `layout`), in element order.
pub fn subs<'a>(layout: &'a BlockLayout, bytes: &'a [u8]) -> impl Iterator<Item = Sub> + 'a {
    let mut buf = [Sub::default(); QK_K / 32];
    bytes.chunks_exact(layout.bytes).flat_map(move |b| {
        let n = layout.elements / 32;
        unpack(layout, b, &mut buf[..n]);
        buf.into_iter().take(n)
    })
}

/// An f16 at byte `i` of `b`, as f32 (exact).
pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantises `n` elements of type `ty` from `data` into row-major f32.
pub fn dequantize(ty: GgmlType, data: &[u8], n: usize) -> Result<Vec<f32>> {
    let mut out = vec![0f32; n];
    dequantize_into(ty, data, &mut out)?;
    Ok(out)
}

/// Dequantises `out.len()` elements of type `ty` from `data` into `out` (no allocation: the
/// CPU kernels call it per row).
pub fn dequantize_into(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<()> {
    let n = out.len();
    let bs = ty.block_size();
    let ts = ty.type_size();
    if !n.is_multiple_of(bs) || data.len() != n / bs * ts {
        return Err(Error::gguf(format!("{} data of {} bytes does not hold {n} elements", ty.name(), data.len())));
    }
    let blocks = data.chunks_exact(ts).zip(out.chunks_exact_mut(bs));
    match ty.layout() {
        Some(layout) => {
            let mut subs = [Sub::default(); QK_K / 32];
            let subs = &mut subs[..bs / 32];
            for (b, y) in blocks {
                unpack(layout, b, subs);
                for (s, y) in subs.iter().zip(y.chunks_exact_mut(32)) {
                    s.dequantize(layout.value, y);
                }
            }
        }
        None => match ty {
            GgmlType::F32 => blocks.for_each(|(b, y)| y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            GgmlType::F16 => blocks.for_each(|(b, y)| y[0] = f16_at(b, 0)),
            _ => blocks.for_each(|(b, y)| y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        },
    }
    Ok(())
}

/// llama.cpp's `get_scale_min_k4`: 6-bit scale and min number `j` of a K-quant super-block.
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Quantises f32 values to Q8_0 (llama.cpp's `quantize_row_q8_0_ref`), for writing test files.
pub fn quantize_q8_0(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / 32 * 34);
    for b in x.chunks(32) {
        let amax = b.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        out.extend(b.iter().map(|v| (v * id).round() as i8 as u8));
    }
    out
}

/// Quantises f32 values to Q4_1 (llama.cpp's `quantize_row_q4_1_ref`), for writing test files.
pub fn quantize_q4_1(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / 32 * 20);
    for b in x.chunks(32) {
        let min = b.iter().copied().fold(f32::INFINITY, f32::min);
        let max = b.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        out.extend_from_slice(&f16::from_f32(min).to_le_bytes());
        let q = |v: f32| (((v - min) * id + 0.5) as u8).min(15);
        for j in 0..16 {
            out.push(q(b[j]) | (q(b[j + 16]) << 4));
        }
    }
    out
}
