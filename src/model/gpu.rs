//! GGUF blocks on the GPU: quantised weights stay in (nearly) their file size in GPU memory, and
//! two CubeCL kernels read them there, through burn's backend-extension API
//! (`Tensor::try_into_primitive`, a kernel launch, `Tensor::from_primitive`):
//!
//! - `q_matmul`: `Y = X·Wᵀ` for `t` tokens. A cube of 64 units takes one row of `W` and up to
//!   four tokens; each unit loads its blocks' words into registers once for all of them and sums
//!   `scale·Σ qᵢ·xᵢ + offset·Σ xᵢ` per block, in f32 with `x` as given (no 8-bit rounding of the
//!   activations, unlike llama.cpp), then the cube adds up its 64 partial sums. That is the
//!   decoding path (reading a token's weights once is what bounds it). A prompt of 8 or more
//!   tokens instead dequantises each weight into a transient f32 matrix and uses burn's tiled
//!   matmul, as llama.cpp's GPU backends do for batches.
//! - `q_rows`: rows of `W` dequantised (the token embedding, and so a tied head's table).
//!
//! Every format the reader knows is laid out at load as 32-element blocks (the K-quants' 256
//! super-blocks are eight of them): 16 bytes of low nibbles (element `j` in the low half of byte
//! `j`, element `j + 16` in the high half, Q4_0's order), then one word of fifth bits (Q5_0, Q5_1,
//! Q5_K) or two words of fifth and sixth bits (Q6_K), or 32 signed bytes for Q8_0; and the
//! scales: an f32 scale (and offset) per block for the 32-element formats; for Q4_K/Q5_K the
//! f32 `d` and `dmin` per super-block with each block's 6-bit scale and minimum in a word; for
//! Q6_K the f32 `d` per super-block with each block's two 8-bit scales in a word.
//!
//! Dequantisation is llama.cpp's reference arithmetic, operation for operation: scales are f16
//! in the file (exact in f32), a K-quant block's scale is `d·sc` rounded once as llama.cpp
//! rounds it, and `scale·q + offset` (or `scale·(q − 8)`, …) is the same f32 expression; `q_rows`
//! reproduces the CPU dequantiser bit for bit. Only the order of a product's sum differs from a
//! dense f32 matmul. GPU memory is 1.06× (Q8_0) to 1.2× (Q4_1) the file's tensor bytes, against
//! 3.8× to 7.1× for f32 weights ([`QFormat::held_bytes`]).

use burn::tensor::{Device, Int, Tensor, TensorData};
use burn_cubecl::ops::numeric::empty_device;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeBackend;
use cubecl::{calculate_cube_count_elemwise, CubeCount, CubeDim};

use kernels::{q_matmul_kernel, q_rows_kernel};

use crate::error::{Error, Result};
use crate::gguf::quant::{subs, GgmlType};

/// Elements per block.
const QK: usize = 32;
/// Units per cube of `q_matmul` (the partial sums it adds up).
const UNITS: u32 = 64;
/// Tokens a cube of `q_matmul` takes during prefill.
const TILE: usize = 4;
/// From this many tokens on, a product dequantises the weight into a transient f32 matrix and
/// uses burn's tiled matmul: the kernel re-reads the blocks for every four tokens, which made a
/// 133-token prefill ten times slower on lavapipe (`bench/PROFILE.md`).
const DENSE_FROM: usize = 8;
/// WebGPU's limit on cubes along one axis: larger row counts spill into the third axis.
const MAX_CUBES: usize = 65535;

// Kernel codes of the formats (comptime: each compiles its own kernel).
const Q4_0: u32 = 0;
const Q4_1: u32 = 1;
const Q8_0: u32 = 2;
const Q5_0: u32 = 3;
const Q5_1: u32 = 4;
const Q4_K: u32 = 5;
const Q5_K: u32 = 6;
const Q6_K: u32 = 7;

/// Bits per quant of a kernel code.
const fn qbits(code: u32) -> u32 {
    match code {
        Q8_0 => 8,
        Q5_0 | Q5_1 | Q5_K => 5,
        Q6_K => 6,
        _ => 4,
    }
}

/// u32 words of quants per 32-element block: 16 bytes of nibbles and the high bits, or 32 bytes.
const fn words_of(code: u32) -> usize {
    match qbits(code) {
        8 => 8,
        b => 4 + (b as usize - 4),
    }
}

/// The block formats the GPU kernels read: every quantised type the GGUF reader knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QFormat {
    /// `d·(q − 8)`, 4-bit `q`.
    Q4_0,
    /// `d·q + m`, 4-bit `q`.
    Q4_1,
    /// `d·q`, signed 8-bit `q`.
    Q8_0,
    /// `d·(q − 16)`, 5-bit `q`.
    Q5_0,
    /// `d·q + m`, 5-bit `q`.
    Q5_1,
    /// `(d·scᵦ)·q − dmin·mᵦ` over 256-element super-blocks, 4-bit `q`.
    Q4K,
    /// As Q4_K with 5-bit `q`.
    Q5K,
    /// `(d·scₕ)·(q − 32)`, 6-bit `q`, a signed 8-bit scale per 16 elements.
    Q6K,
}

impl QFormat {
    /// The format of a GGUF type, if it is quantised (f32, f16 and bf16 go to the GPU as f32).
    pub fn of(ty: GgmlType) -> Option<Self> {
        Some(match ty {
            GgmlType::Q4_0 => QFormat::Q4_0,
            GgmlType::Q4_1 => QFormat::Q4_1,
            GgmlType::Q8_0 => QFormat::Q8_0,
            GgmlType::Q5_0 => QFormat::Q5_0,
            GgmlType::Q5_1 => QFormat::Q5_1,
            GgmlType::Q4_K => QFormat::Q4K,
            GgmlType::Q5_K => QFormat::Q5K,
            GgmlType::Q6_K => QFormat::Q6K,
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => return None,
        })
    }
    fn code(self) -> u32 {
        match self {
            QFormat::Q4_0 => Q4_0,
            QFormat::Q4_1 => Q4_1,
            QFormat::Q8_0 => Q8_0,
            QFormat::Q5_0 => Q5_0,
            QFormat::Q5_1 => Q5_1,
            QFormat::Q4K => Q4_K,
            QFormat::Q5K => Q5_K,
            QFormat::Q6K => Q6_K,
        }
    }
    fn words(self) -> usize {
        words_of(self.code())
    }
    /// Whether the 32-element format has an offset per block.
    fn has_offset(self) -> bool {
        matches!(self, QFormat::Q4_1 | QFormat::Q5_1)
    }
    /// Bytes `n` weights take in GPU memory in this format's layout.
    pub fn held_bytes(self, n: u64) -> u64 {
        let blocks = n / QK as u64;
        let per_block = 4 * self.words() as u64
            + match self {
                QFormat::Q4_1 | QFormat::Q5_1 => 8,
                _ => 4, // a scale, or a K-quant block's word of scales
            };
        // The K-quants' f32 d (and dmin) per super-block.
        let supers = match self {
            QFormat::Q4K | QFormat::Q5K => n / 256 * 8,
            QFormat::Q6K => n / 256 * 4,
            _ => 0,
        };
        blocks * per_block + supers
    }
}

/// The file's blocks laid out for the kernels (see the module comment).
struct Packed {
    /// Quant words per 32-element block. // [blocks · words]
    qs: Vec<u32>,
    /// Per block: 32-element formats' scale; per super-block: K-quants' `d`.
    d: Vec<f32>,
    /// Per block: Q4_1/Q5_1 offset; per super-block: Q4_K/Q5_K `dmin`. Empty otherwise.
    m: Vec<f32>,
    /// Per block (K-quants): the 6-bit scale and minimum (Q4_K, Q5_K) or two signed 8-bit
    /// scales (Q6_K), one byte each from the lowest. Empty otherwise.
    sm: Vec<u32>,
}

/// Packs 32 quants of `bits` bits (element order) into the kernels' words.
fn pack_block(q: &[u8; 32], bits: u32, out: &mut Vec<u32>) {
    if bits == 8 {
        out.extend(q.chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])));
        return;
    }
    let byte = |i: usize| (q[i] & 0x0F) as u32 | ((q[i + 16] & 0x0F) as u32) << 4;
    for w in 0..4 {
        out.push((0..4).map(|k| byte(4 * w + k) << (8 * k)).fold(0, |a, b| a | b));
    }
    match bits {
        5 => out.push((0..32).map(|j| ((q[j] >> 4) as u32 & 1) << j).fold(0, |a, b| a | b)),
        6 => {
            for half in 0..2 {
                out.push((0..16).map(|i| ((q[16 * half + i] >> 4) as u32 & 3) << (2 * i)).fold(0, |a, b| a | b));
            }
        }
        _ => {}
    }
}

impl Packed {
    /// The file's blocks, through the one block-layout table (`gguf::quant::unpack`).
    fn new(format: QFormat, ty: GgmlType, bytes: &[u8]) -> Self {
        let layout = ty.layout().expect("QFormat::of admits quantised types only");
        let n_blocks = bytes.len() / ty.type_size() * (ty.block_size() / QK);
        let mut p = Packed { qs: Vec::with_capacity(n_blocks * format.words()), d: Vec::new(), m: Vec::new(), sm: Vec::new() };
        let byte = |v: i32| (v as u8) as u32;
        for (i, s) in subs(layout, bytes).enumerate() {
            pack_block(&s.q, layout.bits, &mut p.qs);
            match format {
                // The super-block's f32 `d` (and `dmin`) once, each block's scale bytes in a word.
                QFormat::Q4K | QFormat::Q5K | QFormat::Q6K => {
                    if i % 8 == 0 {
                        p.d.push(s.d);
                        if format != QFormat::Q6K {
                            p.m.push(s.dmin);
                        }
                    }
                    let second = if format == QFormat::Q6K { s.sc[1] } else { s.mn };
                    p.sm.push(byte(s.sc[0]) | byte(second) << 8);
                }
                _ => {
                    p.d.push(s.d);
                    if format.has_offset() {
                        p.m.push(s.dmin);
                    }
                }
            }
        }
        p
    }
}

/// A `rows × cols` weight matrix in GPU memory in its GGUF block format.
#[derive(Debug, Clone)]
pub struct QWeight {
    /// Quant words (bit patterns in burn's i32 ints). // [rows · blocks · words]
    qs: Tensor<1, Int>,
    /// Scales: per block, or the K-quants' `d` per super-block.
    d: Tensor<1>,
    /// Q4_1/Q5_1 offsets per block, Q4_K/Q5_K `dmin` per super-block; else `d` again, unread.
    m: Tensor<1>,
    /// The K-quants' per-block scale bytes; else `qs` again, unread.
    sm: Tensor<1, Int>,
    format: QFormat,
    /// The first of the buffers' rows this matrix is (a view of a stack: `Executor::matrices`).
    row0: usize,
    rows: usize,
    cols: usize,
}

impl QWeight {
    /// Uploads `rows × cols` elements stored as `ty` (whole blocks per row) to `device`, which
    /// must be a CubeCL (wgpu) device.
    pub fn new(ty: GgmlType, bytes: &[u8], rows: usize, cols: usize, device: &Device) -> Result<Self> {
        let format = QFormat::of(ty).ok_or_else(|| Error::Unsupported(format!("{} blocks on the GPU", ty.name())))?;
        let (bs, ts) = (ty.block_size(), ty.type_size());
        if !cols.is_multiple_of(bs) || bytes.len() != rows * cols / bs * ts {
            return Err(Error::gguf(format!("{} data of {} bytes is not {rows} rows of {cols}", ty.name(), bytes.len())));
        }
        let p = Packed::new(format, ty, bytes);
        let ints = |v: Vec<u32>| {
            let n = v.len();
            Tensor::<1, Int>::from_data(TensorData::new(v.into_iter().map(|w| w as i32).collect::<Vec<_>>(), [n]), device)
        };
        let floats = |v: Vec<f32>| {
            let n = v.len();
            Tensor::<1>::from_data(TensorData::new(v, [n]), device)
        };
        let qs = ints(p.qs);
        let d = floats(p.d);
        let m = if p.m.is_empty() { d.clone() } else { floats(p.m) };
        let sm = if p.sm.is_empty() { qs.clone() } else { ints(p.sm) };
        // The kernels read the words as u32: the ints must be 32-bit, and on a CubeCL device.
        let words = qs.clone().try_into_primitive::<CubeBackend>().map_err(|e| Error::Device(format!("GGUF blocks need a wgpu device ({e:?})")))?;
        if words.dtype.size() != 4 {
            return Err(Error::Device(format!("GGUF blocks need 32-bit ints on the GPU, not {:?}", words.dtype)));
        }
        Ok(QWeight { qs, d, m, sm, format, row0: 0, rows, cols })
    }

    /// Rows `row0..row0 + rows` of this matrix, sharing its buffers.
    pub fn view(&self, row0: usize, rows: usize) -> QWeight {
        assert!(row0 + rows <= self.rows, "QWeight::view: rows {row0}..{} of {}", row0 + rows, self.rows);
        QWeight { row0: self.row0 + row0, rows, ..self.clone() }
    }

    /// Output width.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input width.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The format of the blocks.
    pub fn format(&self) -> QFormat {
        self.format
    }

    /// The operands as CubeCL tensors (checked to convert in `new`).
    fn parts(&self) -> [CubeTensor; 4] {
        let cube = "QWeight::new checked the device";
        [
            self.qs.clone().try_into_primitive::<CubeBackend>().expect(cube),
            self.d.clone().try_into_primitive::<CubeBackend>().expect(cube),
            self.m.clone().try_into_primitive::<CubeBackend>().expect(cube),
            self.sm.clone().try_into_primitive::<CubeBackend>().expect(cube),
        ]
    }

    /// `W` dequantised, `[rows, cols]` f32 (a transient copy: the blocks stay as they are).
    pub fn dequantized(&self) -> Tensor<2> {
        let ids = Tensor::<1, Int>::arange(0..self.rows as i64, &self.d.device());
        self.rows_of(ids)
    }

    /// `Y = X·Wᵀ`: `x` `[t, cols]` → `[t, rows]`. Up to [`DENSE_FROM`] tokens (decoding) the
    /// kernel reads the blocks; a longer prompt multiplies by a transient f32 copy of `W`.
    pub fn matmul(&self, x: Tensor<2>) -> Tensor<2> {
        let [t, cols] = x.dims();
        assert_eq!(cols, self.cols, "QWeight::matmul: input width");
        if t >= DENSE_FROM {
            return x.matmul(self.dequantized().transpose()); // [t, rows]
        }
        let x = x.try_into_primitive::<CubeBackend>().expect("x lives on the weights' device");
        let x = burn_cubecl::kernel::into_contiguous(x);
        let [qs, d, m, sm] = self.parts();
        let y = empty_device::<f32>(x.client.clone(), x.device.clone(), [t, self.rows].into());
        let tile = if t == 1 { 1 } else { TILE };
        let groups = t.div_ceil(tile);
        let (cx, cz) = (self.rows.min(MAX_CUBES), self.rows.div_ceil(MAX_CUBES));
        q_matmul_kernel::launch(
            &x.client.clone(),
            CubeCount::Static(cx as u32, groups as u32, cz as u32),
            CubeDim::new_1d(UNITS),
            x.into_tensor_arg(),
            qs.into_tensor_arg(),
            d.into_tensor_arg(),
            m.into_tensor_arg(),
            sm.into_tensor_arg(),
            y.clone().into_tensor_arg(),
            self.row0 as u32,
            self.format.code(),
            tile,
        );
        Tensor::from_primitive::<CubeBackend>(y)
    }

    /// Rows `ids` of `W`, dequantised: `[n]` → `[n, cols]`.
    pub fn rows_of(&self, ids: Tensor<1, Int>) -> Tensor<2> {
        let [n] = ids.dims();
        let ids = ids.try_into_primitive::<CubeBackend>().expect("ids live on the weights' device");
        let ids = burn_cubecl::kernel::into_contiguous(ids);
        let [qs, d, m, sm] = self.parts();
        let client = ids.client.clone();
        let out = empty_device::<f32>(client.clone(), ids.device.clone(), [n, self.cols].into());
        let total = n * self.cols;
        let cube_dim = CubeDim::new(&client, total);
        let ids_ty = burn::backend::cubecl::dtype_to_storage_type(ids.dtype);
        q_rows_kernel::launch(
            &client,
            calculate_cube_count_elemwise(&client, total, cube_dim),
            cube_dim,
            ids.into_tensor_arg(),
            qs.into_tensor_arg(),
            d.into_tensor_arg(),
            m.into_tensor_arg(),
            sm.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            self.row0 as u32,
            self.format.code(),
            ids_ty,
        );
        Tensor::from_primitive::<CubeBackend>(out)
    }
}

fn cube<const D: usize>(t: Tensor<D>) -> CubeTensor {
    burn_cubecl::kernel::into_contiguous(t.try_into_primitive::<CubeBackend>().expect("the GPU executor runs on a CubeCL device"))
}

/// Fused RMSNorm over the last axis, `x / sqrt(mean(x²) + ε) · γ`, in one launch where burn's
/// takes six: a cube of 64 units per row sums the squares, then scales the row. (Decoding is
/// bound by kernel launches on small models: `bench/PROFILE.md`.)
pub fn rms_norm<const D: usize>(x: Tensor<D>, gamma: &Tensor<1>, eps: f64) -> Tensor<D> {
    let dims = x.dims();
    let width = dims[D - 1];
    let rows = dims.iter().product::<usize>() / width;
    let x = cube(x);
    let gamma = cube(gamma.clone());
    let out = empty_device::<f32>(x.client.clone(), x.device.clone(), x.meta.shape().clone());
    kernels::rms_norm_kernel::launch(
        &x.client.clone(),
        CubeCount::Static(rows as u32, 1, 1),
        CubeDim::new_1d(UNITS),
        x.into_tensor_arg(),
        gamma.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        eps as f32,
    );
    Tensor::from_primitive::<CubeBackend>(out)
}

/// Fused RoPE on interleaved pairs (the decoder's `Rope::apply`): `x` `[batch, seq, heads,
/// head_dim]`, its first token at position `pos0`, with the `[positions, head_dim/2]` tables.
/// One launch, one unit per pair, where burn's operations take seven.
pub fn rope(x: Tensor<4>, cos: &Tensor<2>, sin: &Tensor<2>, pos0: usize) -> Tensor<4> {
    let x = cube(x);
    let (cos, sin) = (cube(cos.clone()), cube(sin.clone()));
    let out = empty_device::<f32>(x.client.clone(), x.device.clone(), x.meta.shape().clone());
    let pairs = x.meta.shape().num_elements() / 2;
    let client = x.client.clone();
    let cube_dim = CubeDim::new(&client, pairs);
    kernels::rope_kernel::launch(
        &client,
        calculate_cube_count_elemwise(&client, pairs, cube_dim),
        cube_dim,
        x.into_tensor_arg(),
        cos.into_tensor_arg(),
        sin.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        pos0 as u32,
    );
    Tensor::from_primitive::<CubeBackend>(out)
}

/// Fused SwiGLU, `silu(gate) · up` (`silu(g) = g / (1 + e^(−g))`), in one launch.
pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    let (gate, up) = (cube(gate), cube(up));
    let out = empty_device::<f32>(gate.client.clone(), gate.device.clone(), gate.meta.shape().clone());
    let n = gate.meta.shape().num_elements();
    let client = gate.client.clone();
    let cube_dim = CubeDim::new(&client, n);
    kernels::swiglu_kernel::launch(
        &client,
        calculate_cube_count_elemwise(&client, n, cube_dim),
        cube_dim,
        gate.into_tensor_arg(),
        up.into_tensor_arg(),
        out.clone().into_tensor_arg(),
    );
    Tensor::from_primitive::<CubeBackend>(out)
}

/// `x + y` and its RMSNorm `(x + y) / sqrt(mean((x + y)²) + ε) · γ` over the last axis, in one
/// launch: the residual stream and the next sublayer's input (the same arithmetic as
/// [`rms_norm`] of the sum).
pub fn add_rms_norm(x: Tensor<2>, y: Tensor<2>, gamma: &Tensor<1>, eps: f64) -> (Tensor<2>, Tensor<2>) {
    let [rows, _] = x.dims();
    let (x, y, gamma) = (cube(x), cube(y), cube(gamma.clone()));
    let sum = empty_device::<f32>(x.client.clone(), x.device.clone(), x.meta.shape().clone());
    let out = empty_device::<f32>(x.client.clone(), x.device.clone(), x.meta.shape().clone());
    kernels::add_norm_kernel::launch(
        &x.client.clone(),
        CubeCount::Static(rows as u32, 1, 1),
        CubeDim::new_1d(UNITS),
        x.into_tensor_arg(),
        y.into_tensor_arg(),
        gamma.into_tensor_arg(),
        sum.clone().into_tensor_arg(),
        out.clone().into_tensor_arg(),
        eps as f32,
    );
    (Tensor::from_primitive::<CubeBackend>(sum), Tensor::from_primitive::<CubeBackend>(out))
}

/// `act(gate) · up` from one product of the stacked gate and up, `[t, 2·d_ff]` (gate first) →
/// `[t, d_ff]`, one element per unit: SiLU as [`swiglu`], or GELU's tanh form (`gelu`).
pub fn glu_stacked(gate_up: Tensor<2>, gelu: bool) -> Tensor<2> {
    let [t, w] = gate_up.dims();
    let gate_up = cube(gate_up);
    let out = empty_device::<f32>(gate_up.client.clone(), gate_up.device.clone(), [t, w / 2].into());
    let n = t * w / 2;
    let client = gate_up.client.clone();
    let cube_dim = CubeDim::new(&client, n);
    kernels::glu_stacked_kernel::launch(
        &client,
        calculate_cube_count_elemwise(&client, n, cube_dim),
        cube_dim,
        gate_up.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        gelu,
    );
    Tensor::from_primitive::<CubeBackend>(out)
}

/// The widest head [`attend_step`] takes (its shared memory is sized at compile time).
pub const MAX_HEAD_DIM: usize = 256;
/// Keys whose scores [`attend_step`] holds at once (4 KiB of shared memory).
const CHUNK: usize = 1024;

/// Attention for one new token, in one launch: RoPE of its query and key, the key and value
/// written into the cache at `pos`, and every query head's attention over the keys `first..=pos`
/// (scaled by `scale`; consecutive query heads share a KV head). `qkv`: `[1, (heads +
/// 2·kv_heads)·head_dim]` (one product of the stacked weights); `kc`, `vc`: `[1, kv_heads,
/// capacity, head_dim]`, written in place; `cos`, `sin`: `[positions · head_dim/2]`. Returns
/// `[1, heads·head_dim]`.
#[allow(clippy::too_many_arguments)] // the kernel's operands
pub fn attend_step(
    qkv: Tensor<2>,
    kc: &Tensor<4>,
    vc: &Tensor<4>,
    cos: &Tensor<1>,
    sin: &Tensor<1>,
    n_head: usize,
    (pos, first): (usize, usize),
    scale: f32,
) -> Tensor<2> {
    let [_, _, _, hd] = kc.dims();
    assert!(hd <= MAX_HEAD_DIM && hd % 2 == 0, "attend_step: head_dim {hd}");
    let qkv = cube(qkv);
    let (kc, vc, cos, sin) = (cube(kc.clone()), cube(vc.clone()), cube(cos.clone()), cube(sin.clone()));
    let out = empty_device::<f32>(qkv.client.clone(), qkv.device.clone(), [1, n_head * hd].into());
    kernels::attend_step_kernel::launch(
        &qkv.client.clone(),
        CubeCount::Static(n_head as u32, 1, 1),
        CubeDim::new_1d(UNITS),
        qkv.into_tensor_arg(),
        kc.into_tensor_arg(),
        vc.into_tensor_arg(),
        cos.into_tensor_arg(),
        sin.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        pos as u32,
        first as u32,
        scale,
    );
    Tensor::from_primitive::<CubeBackend>(out)
}

/// The kernels (CubeCL's `Tensor`, not burn's).
mod kernels {
    use super::{qbits, words_of, CHUNK, MAX_HEAD_DIM, Q4_0, Q4_1, Q4_K, Q5_0, Q5_1, Q5_K, Q6_K, Q8_0};
    use cubecl::prelude::*;

    /// Quant `j` of a block whose words are `w` (registers; `j` known at compile time).
    #[cube]
    fn quant_reg(w: &Array<u32>, #[comptime] j: usize, #[comptime] code: u32) -> f32 {
        let q = if comptime![code == Q8_0] {
            (w[j / 4] >> comptime![(8 * (j % 4)) as u32]) & 0xFF
        } else {
            let lo = (w[(j % 16) / 4] >> comptime![(8 * ((j % 16) % 4) + 4 * (j / 16)) as u32]) & 0xF;
            if comptime![qbits(code) == 5] {
                lo | (((w[4] >> comptime![j as u32]) & 1) << 4)
            } else if comptime![qbits(code) == 6] {
                lo | (((w[4 + j / 16] >> comptime![(2 * (j % 16)) as u32]) & 3) << 4)
            } else {
                lo
            }
        };
        to_value(q, code)
    }

    /// Quant `j` of the block whose words start at `base` (global memory; `j` at run time).
    #[cube]
    fn quant_at(qs: &Tensor<u32>, base: usize, j: usize, #[comptime] code: u32) -> f32 {
        let i = j % 16;
        let q = if comptime![code == Q8_0] {
            (qs[base + j / 4] >> (8 * (j % 4)) as u32) & 0xFF
        } else {
            let lo = (qs[base + i / 4] >> (8 * (i % 4) + 4 * (j / 16)) as u32) & 0xF;
            if comptime![qbits(code) == 5] {
                lo | (((qs[base + 4] >> j as u32) & 1) << 4)
            } else if comptime![qbits(code) == 6] {
                lo | (((qs[base + 4 + j / 16] >> (2 * i) as u32) & 3) << 4)
            } else {
                lo
            }
        };
        to_value(q, code)
    }

    /// A quant as f32: Q8_0's byte is signed.
    #[cube]
    fn to_value(q: u32, #[comptime] code: u32) -> f32 {
        let v = f32::cast_from(q);
        if comptime![code == Q8_0] {
            select(q >= 128, v - 256.0, v)
        } else {
            v
        }
    }

    /// A signed byte of a word.
    #[cube]
    fn signed_byte(w: u32, #[comptime] shift: u32) -> f32 {
        let b = (w >> shift) & 0xFF;
        let v = f32::cast_from(b);
        select(b >= 128, v - 256.0, v)
    }

    /// Block `blk`'s scale for its first 16 elements (`hi` false) or last 16, as llama.cpp
    /// computes it (K-quants: `d·sc`, rounded once).
    #[cube]
    fn scale(d: &Tensor<f32>, sm: &Tensor<u32>, blk: usize, #[comptime] hi: bool, #[comptime] code: u32) -> f32 {
        if comptime![code == Q4_K || code == Q5_K] {
            d[blk / 8] * f32::cast_from(sm[blk] & 0xFF)
        } else if comptime![code == Q6_K] {
            d[blk / 8] * signed_byte(sm[blk], comptime![if hi { 8u32 } else { 0u32 }])
        } else {
            d[blk]
        }
    }

    /// Block `blk`'s offset: Q4_1/Q5_1 `m`; Q4_K/Q5_K `dmin·min` (subtracted); else 0.
    #[cube]
    fn offset(m: &Tensor<f32>, sm: &Tensor<u32>, blk: usize, #[comptime] code: u32) -> f32 {
        if comptime![code == Q4_1 || code == Q5_1] {
            m[blk]
        } else if comptime![code == Q4_K || code == Q5_K] {
            m[blk / 8] * f32::cast_from((sm[blk] >> 8) & 0xFF)
        } else {
            f32::new(0.0)
        }
    }

    /// What 16 elements add to a dot product, from `qx = Σ qᵢxᵢ` and `xs = Σ xᵢ` over them.
    #[cube]
    fn half_sum(qx: f32, xs: f32, s: f32, o: f32, #[comptime] code: u32) -> f32 {
        if comptime![code == Q4_0] {
            s * (qx - 8.0 * xs)
        } else if comptime![code == Q5_0] {
            s * (qx - 16.0 * xs)
        } else if comptime![code == Q6_K] {
            s * (qx - 32.0 * xs)
        } else if comptime![code == Q4_1 || code == Q5_1] {
            s * qx + o * xs
        } else if comptime![code == Q4_K || code == Q5_K] {
            s * qx - o * xs
        } else {
            s * qx
        }
    }

    /// One weight, exactly as llama.cpp's reference dequantises it.
    #[cube]
    fn weight(q: f32, s: f32, o: f32, #[comptime] code: u32) -> f32 {
        if comptime![code == Q4_0] {
            s * (q - 8.0)
        } else if comptime![code == Q5_0] {
            s * (q - 16.0)
        } else if comptime![code == Q6_K] {
            s * (q - 32.0)
        } else if comptime![code == Q4_1 || code == Q5_1] {
            s * q + o
        } else if comptime![code == Q4_K || code == Q5_K] {
            s * q - o
        } else {
            s * q
        }
    }

    /// `y[t, r] = Σ_b (row r's block b)·(x[t]'s block b)`. Cube (x + z·count_x) is a row, cube y
    /// a group of `tile` tokens; each of the 64 units takes every 64th block.
    #[cube(launch)]
    pub(super) fn q_matmul_kernel(
        x: &Tensor<f32>,     // [t, cols]
        qs: &Tensor<u32>,    // [rows · blocks · words]
        d: &Tensor<f32>,     // scales
        m: &Tensor<f32>,     // offsets
        sm: &Tensor<u32>,    // K-quant scale bytes
        y: &mut Tensor<f32>, // [t, rows]
        row0: u32,           // the view's first row in the buffers
        #[comptime] code: u32,
        #[comptime] tile: usize,
    ) {
        let words = comptime![words_of(code)];
        let t = x.shape(0);
        let cols = x.shape(1);
        let rows = y.shape(1);
        let nb = cols / 32;
        let row = (CUBE_POS_Z * CUBE_COUNT_X + CUBE_POS_X) as usize;
        let t0 = CUBE_POS_Y as usize * tile;
        let unit = UNIT_POS_X as usize;

        // Tokens past the last one re-read the last one and are not written, so loads need no branch.
        let mut xrow = Array::<usize>::new(tile);
        let mut acc = Array::<f32>::new(tile);
        #[unroll]
        for k in 0..tile {
            xrow[k] = clamp_max(t0 + k, t - 1) * cols;
            acc[k] = 0.0;
        }
        if row < rows {
            let mut b = unit;
            while b < nb {
                let blk = (row0 as usize + row) * nb + b;
                let mut w = Array::<u32>::new(words);
                #[unroll]
                for i in 0..words {
                    w[i] = qs[blk * words + i];
                }
                let s_lo = scale(d, sm, blk, false, code);
                let s_hi = scale(d, sm, blk, true, code);
                let o = offset(m, sm, blk, code);
                let xb = b * 32;
                #[unroll]
                for k in 0..tile {
                    let mut qx_lo = 0.0f32;
                    let mut xs_lo = 0.0f32;
                    let mut qx_hi = 0.0f32;
                    let mut xs_hi = 0.0f32;
                    #[unroll]
                    for j in 0..16 {
                        let v = x[xrow[k] + xb + j];
                        qx_lo += quant_reg(&w, j, code) * v;
                        xs_lo += v;
                    }
                    #[unroll]
                    for j in 16..32 {
                        let v = x[xrow[k] + xb + j];
                        qx_hi += quant_reg(&w, j, code) * v;
                        xs_hi += v;
                    }
                    acc[k] += half_sum(qx_lo, xs_lo, s_lo, o, code) + half_sum(qx_hi, xs_hi, s_hi, o, code);
                }
                b += CUBE_DIM_X as usize;
            }
        }

        // The cube's 64 partial sums per token, added up by one unit per token.
        let mut partial = Shared::<[f32]>::new_slice(tile * 64);
        #[unroll]
        for k in 0..tile {
            partial[k * 64 + unit] = acc[k];
        }
        sync_cube();
        if unit < tile && row < rows && t0 + unit < t {
            let mut s = 0.0;
            for i in 0..64 {
                s += partial[unit * 64 + i];
            }
            y[(t0 + unit) * rows + row] = s;
        }
    }

    /// `out[i, c] = W[ids[i], c]`, one element per unit.
    #[cube(launch)]
    pub(super) fn q_rows_kernel<I: Numeric>(
        ids: &Tensor<I>,       // [n]
        qs: &Tensor<u32>,      // [rows · blocks · words]
        d: &Tensor<f32>,       // scales
        m: &Tensor<f32>,       // offsets
        sm: &Tensor<u32>,      // K-quant scale bytes
        out: &mut Tensor<f32>, // [n, cols]
        row0: u32,             // the view's first row in the buffers
        #[comptime] code: u32,
        #[define(I)] _id_type: ElemType,
    ) {
        let cols = out.shape(1);
        if ABSOLUTE_POS >= out.shape(0) * cols {
            terminate!();
        }
        let c = ABSOLUTE_POS % cols;
        let row = (u32::cast_from(ids[ABSOLUTE_POS / cols]) + row0) as usize;
        let blk = row * (cols / 32) + c / 32;
        let j = c % 32;
        let q = quant_at(qs, blk * comptime![words_of(code)], j, code);
        let mut s = scale(d, sm, blk, false, code);
        if j >= 16 {
            s = scale(d, sm, blk, true, code);
        }
        out[ABSOLUTE_POS] = weight(q, s, offset(m, sm, blk, code), code);
    }

    /// The sum of the 64 units' `v`, in every unit: they meet in shared memory (added in unit
    /// order, so every unit gets the same bits). The caller syncs before it calls again.
    #[cube]
    fn cube_sum(v: f32) -> f32 {
        let mut red = Shared::<[f32]>::new_slice(64usize);
        red[UNIT_POS_X as usize] = v;
        sync_cube();
        let mut total = 0.0f32;
        for k in 0..64 {
            total += red[k];
        }
        total
    }

    /// The largest of the 64 units' `v` and `floor`, in every unit (as `cube_sum`).
    #[cube]
    fn cube_max(v: f32, floor: f32) -> f32 {
        let mut red = Shared::<[f32]>::new_slice(64usize);
        red[UNIT_POS_X as usize] = v;
        sync_cube();
        let mut mx = floor;
        for k in 0..64 {
            mx = select(red[k] > mx, red[k], mx);
        }
        mx
    }

    /// A row's root mean square from each unit's sum of squares, with `eps` inside the root.
    #[cube]
    fn row_rms(ss: f32, width: usize, eps: f32) -> f32 {
        (cube_sum(ss) / f32::cast_from(width as u32) + eps).sqrt()
    }

    /// One row per cube: the units' sums of squares meet in shared memory, every unit reads
    /// the total and scales its elements (as burn's RmsNorm: `x / rms · γ`).
    #[cube(launch)]
    pub(super) fn rms_norm_kernel(
        x: &Tensor<f32>,       // [rows, width] (flattened)
        gamma: &Tensor<f32>,   // [width]
        out: &mut Tensor<f32>, // like x
        eps: f32,
    ) {
        let width = gamma.shape(0);
        let base = CUBE_POS_X as usize * width;
        let unit = UNIT_POS_X as usize;
        let mut ss = 0.0f32;
        let mut i = unit;
        while i < width {
            let v = x[base + i];
            ss += v * v;
            i += 64;
        }
        let rms = row_rms(ss, width, eps);
        let mut i = unit;
        while i < width {
            out[base + i] = x[base + i] / rms * gamma[i];
            i += 64;
        }
    }

    /// One unit per pair `(x[2i], x[2i+1])` of a head at sequence position `s`:
    /// `(x0·cos − x1·sin, x0·sin + x1·cos)` with the angles of position `pos0 + s`.
    #[cube(launch)]
    pub(super) fn rope_kernel(
        x: &Tensor<f32>,       // [batch, seq, heads, head_dim]
        cos: &Tensor<f32>,     // [positions, head_dim/2]
        sin: &Tensor<f32>,     // [positions, head_dim/2]
        out: &mut Tensor<f32>, // like x
        pos0: u32,
    ) {
        let half = x.shape(3) / 2;
        let per_pos = x.shape(2) * half;
        if ABSOLUTE_POS >= x.shape(0) * x.shape(1) * per_pos {
            terminate!();
        }
        let i = ABSOLUTE_POS % half;
        let s = (ABSOLUTE_POS / per_pos) % x.shape(1);
        let at = (pos0 as usize + s) * half + i;
        let c = cos[at];
        let n = sin[at];
        let x0 = x[2 * ABSOLUTE_POS];
        let x1 = x[2 * ABSOLUTE_POS + 1];
        out[2 * ABSOLUTE_POS] = x0 * c - x1 * n;
        out[2 * ABSOLUTE_POS + 1] = x0 * n + x1 * c;
    }

    /// `x + y` and its RMSNorm, one row per cube, as `rms_norm_kernel` (each unit writes the
    /// sum of its elements and scales the same sums).
    #[cube(launch)]
    pub(super) fn add_norm_kernel(
        x: &Tensor<f32>,       // [rows, width]
        y: &Tensor<f32>,       // like x
        gamma: &Tensor<f32>,   // [width]
        sum: &mut Tensor<f32>, // x + y
        out: &mut Tensor<f32>, // its norm
        eps: f32,
    ) {
        let width = gamma.shape(0);
        let base = CUBE_POS_X as usize * width;
        let unit = UNIT_POS_X as usize;
        let mut ss = 0.0f32;
        let mut i = unit;
        while i < width {
            let v = x[base + i] + y[base + i];
            sum[base + i] = v;
            ss += v * v;
            i += 64;
        }
        let rms = row_rms(ss, width, eps);
        let mut i = unit;
        while i < width {
            out[base + i] = (x[base + i] + y[base + i]) / rms * gamma[i];
            i += 64;
        }
    }

    /// `act(gate) · up` from the stacked `[t, 2·d_ff]`, one element of `[t, d_ff]` per unit.
    #[cube(launch)]
    pub(super) fn glu_stacked_kernel(gate_up: &Tensor<f32>, out: &mut Tensor<f32>, #[comptime] gelu: bool) {
        if ABSOLUTE_POS >= out.len() {
            terminate!();
        }
        let f = out.shape(1);
        let at = (ABSOLUTE_POS / f) * 2 * f + ABSOLUTE_POS % f;
        let g = gate_up[at];
        let a = if comptime![gelu] {
            // 0.5·g·(1 + tanh(√(2/π)·(g + 0.044715·g³))), tanh(z) = 1 − 2/(e^(2z) + 1).
            let z = 0.797_884_6f32 * (g + 0.044715f32 * g * g * g);
            0.5f32 * g * (2.0f32 - 2.0f32 / ((2.0f32 * z).exp() + 1.0f32))
        } else {
            g / (1.0 + (-g).exp())
        };
        out[ABSOLUTE_POS] = a * gate_up[at + f];
    }

    /// One new token's attention; cube `h` is query head `h`, its 64 units share the work.
    /// The new key's score seeds an online softmax (a running maximum `m` and sum `l`, by which
    /// each chunk rescales what came before), then the cached keys `first..pos` follow in
    /// chunks of `CHUNK` scores held in shared memory. Unit `u` owns output dims `u + 64·i`.
    #[cube(launch)]
    pub(super) fn attend_step_kernel(
        qkv: &Tensor<f32>,     // [1, (heads + 2·kv_heads)·head_dim]
        kc: &mut Tensor<f32>,  // [1, kv_heads, capacity, head_dim]
        vc: &mut Tensor<f32>,  // [1, kv_heads, capacity, head_dim]
        cos: &Tensor<f32>,     // [positions · head_dim/2]
        sin: &Tensor<f32>,     // [positions · head_dim/2]
        out: &mut Tensor<f32>, // [1, heads·head_dim]
        pos: u32,
        first: u32,
        scale: f32,
    ) {
        let hd = kc.shape(3);
        let cap = kc.shape(2);
        let nkv = kc.shape(1);
        let nh = out.shape(1) / hd;
        let half = hd / 2;
        let h = CUBE_POS_X as usize;
        let kvh = h / (nh / nkv);
        let unit = UNIT_POS_X as usize;
        let p = pos as usize;
        let mut qh = Shared::<[f32]>::new_slice(MAX_HEAD_DIM);
        let mut kn = Shared::<[f32]>::new_slice(MAX_HEAD_DIM);
        let mut vn = Shared::<[f32]>::new_slice(MAX_HEAD_DIM);
        let mut sc = Shared::<[f32]>::new_slice(CHUNK);

        // RoPE of the query and the new key (interleaved pairs); the first query head of each
        // group writes its KV head's new key and value into the cache.
        let (qb, kb, vb) = (h * hd, (nh + kvh) * hd, (nh + nkv + kvh) * hd);
        let row = (kvh * cap + p) * hd;
        let writer = kvh * (nh / nkv) == h;
        let mut i = unit;
        while i < half {
            let c = cos[p * half + i];
            let s = sin[p * half + i];
            let (q0, q1) = (qkv[qb + 2 * i], qkv[qb + 2 * i + 1]);
            qh[2 * i] = q0 * c - q1 * s;
            qh[2 * i + 1] = q0 * s + q1 * c;
            let (k0, k1) = (qkv[kb + 2 * i], qkv[kb + 2 * i + 1]);
            let (r0, r1) = (k0 * c - k1 * s, k0 * s + k1 * c);
            kn[2 * i] = r0;
            kn[2 * i + 1] = r1;
            let (v0, v1) = (qkv[vb + 2 * i], qkv[vb + 2 * i + 1]);
            vn[2 * i] = v0;
            vn[2 * i + 1] = v1;
            if writer {
                kc[row + 2 * i] = r0;
                kc[row + 2 * i + 1] = r1;
                vc[row + 2 * i] = v0;
                vc[row + 2 * i + 1] = v1;
            }
            i += 64;
        }
        sync_cube();

        let mut s_new = 0.0f32;
        for d in 0..hd {
            s_new += qh[d] * kn[d];
        }
        let mut m = s_new * scale;
        let mut l = 1.0f32;
        let mut acc = Array::<f32>::new(comptime![MAX_HEAD_DIM / 64]);
        #[unroll]
        for k in 0..comptime![MAX_HEAD_DIM / 64] {
            let d = unit + 64 * k;
            acc[k] = 0.0;
            if d < hd {
                acc[k] = vn[d];
            }
        }

        let base = kvh * cap;
        let mut c0 = first as usize;
        while c0 < p {
            let n = clamp_max(p - c0, CHUNK);
            let mut top = m;
            let mut j = unit;
            while j < n {
                let krow = (base + c0 + j) * hd;
                let mut dot = 0.0f32;
                for d in 0..hd {
                    dot += qh[d] * kc[krow + d];
                }
                let sj = dot * scale;
                sc[j] = sj;
                top = select(sj > top, sj, top);
                j += 64;
            }
            let mx = cube_max(top, m);
            let mut part = 0.0f32;
            let mut j = unit;
            while j < n {
                let e = (sc[j] - mx).exp();
                sc[j] = e;
                part += e;
                j += 64;
            }
            let total = cube_sum(part);
            let factor = (m - mx).exp();
            l = l * factor + total;
            m = mx;
            #[unroll]
            for k in 0..comptime![MAX_HEAD_DIM / 64] {
                let d = unit + 64 * k;
                if d < hd {
                    let mut a = acc[k] * factor;
                    for j in 0..n {
                        a += sc[j] * vc[(base + c0 + j) * hd + d];
                    }
                    acc[k] = a;
                }
            }
            // The scores and partial sums are rewritten by the next chunk.
            sync_cube();
            c0 += CHUNK;
        }
        #[unroll]
        for k in 0..comptime![MAX_HEAD_DIM / 64] {
            let d = unit + 64 * k;
            if d < hd {
                out[h * hd + d] = acc[k] / l;
            }
        }
    }

    /// `silu(gate) · up`, one element per unit.
    #[cube(launch)]
    pub(super) fn swiglu_kernel(gate: &Tensor<f32>, up: &Tensor<f32>, out: &mut Tensor<f32>) {
        if ABSOLUTE_POS >= out.len() {
            terminate!();
        }
        let g = gate[ABSOLUTE_POS];
        out[ABSOLUTE_POS] = g / (1.0 + (-g).exp()) * up[ABSOLUTE_POS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::quant::dequantize;
    use half::f16;

    /// Every quantised type the reader knows.
    fn types() -> impl Iterator<Item = GgmlType> {
        GgmlType::ALL.into_iter().filter(|&t| QFormat::of(t).is_some())
    }

    /// Random blocks of `ty` for a `rows × cols` matrix: every byte random (quants, high bits,
    /// K-quant scales), then the f16 scales and offsets set to values of either sign.
    fn blocks(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        let mut next = move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 33) as u32
        };
        let halves: &[usize] = match ty {
            GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
            GgmlType::Q6_K => &[208],
            _ => &[0],
        };
        let n = ty.stored_bytes(rows * cols);
        let mut out: Vec<u8> = (0..n).map(|_| next() as u8).collect();
        for block in out.chunks_exact_mut(ty.type_size()) {
            for &at in halves {
                let v = f16::from_f32((next() % 2001) as f32 / 1000.0 - 1.0).to_le_bytes();
                block[at..at + 2].copy_from_slice(&v);
            }
        }
        out
    }

    fn device() -> Device {
        crate::backend::wgpu_device().expect("wgpu (lavapipe) for the GPU kernel tests")
    }

    /// `q_matmul` against an f64 product with the reference dequantisation, for every type,
    /// one token (decode) and token counts around the 4-token tile, with blocks per row below
    /// and above the 64 units of a cube.
    #[test]
    fn matmul_equals_dequantised_reference() {
        let dev = device();
        for ty in types() {
            // One and nine super-blocks a row: 8 and 72 blocks for 64 units.
            for (rows, cols) in [(37, 256), (9, 9 * 256)] {
                let w = dequantize(ty, &blocks(ty, rows, cols, 7), rows * cols).unwrap();
                let q = QWeight::new(ty, &blocks(ty, rows, cols, 7), rows, cols, &dev).unwrap();
                // Up to 7 tokens the kernel, from 8 on the transient f32 copy.
                for t in [1, 3, 4, 6, 9] {
                    let x: Vec<f32> = (0..t * cols).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 3.0).collect();
                    let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [t, cols]), &dev);
                    let got = q.matmul(xt).into_data().try_into_vec::<f32>().unwrap();
                    assert_eq!(got.len(), t * rows);
                    for k in 0..t {
                        for r in 0..rows {
                            let (mut want, mut mag) = (0f64, 0f64);
                            for c in 0..cols {
                                let p = w[r * cols + c] as f64 * x[k * cols + c] as f64;
                                want += p;
                                mag += p.abs();
                            }
                            let g = got[k * rows + r] as f64;
                            // f32 sums of `cols` terms: a few ulps of the magnitude per term.
                            assert!((g - want).abs() <= 1e-6 * mag + 1e-6, "{ty:?} {rows}x{cols} t={t} [{k},{r}]: {g} vs {want}");
                        }
                    }
                }
            }
        }
    }

    /// `q_rows` gives exactly the reference dequantisation of the rows asked for.
    #[test]
    fn rows_equal_reference_dequantisation() {
        let dev = device();
        for ty in types() {
            let (rows, cols) = (11, 512);
            let bytes = blocks(ty, rows, cols, 3);
            let w = dequantize(ty, &bytes, rows * cols).unwrap();
            let q = QWeight::new(ty, &bytes, rows, cols, &dev).unwrap();
            let ids = [10, 0, 3, 3];
            let got = q.rows_of(Tensor::<1, Int>::from_data(TensorData::new(ids.to_vec(), [4]), &dev)).into_data().try_into_vec::<f32>().unwrap();
            let want: Vec<f32> = ids.iter().flat_map(|&r| w[r as usize * cols..][..cols].to_vec()).collect();
            assert_eq!(got.len(), want.len());
            // Bit for bit (the sign of zero included).
            if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
                panic!("{ty:?}: element {i} is {} on the GPU, {} in the reference", got[i], want[i]);
            }
        }
    }

    /// More rows than WebGPU allows cubes along one axis: the rows past 65535 are computed too.
    #[test]
    fn rows_beyond_one_dispatch_axis() {
        let dev = device();
        let (rows, cols, ty) = (MAX_CUBES + 2, 32, GgmlType::Q8_0);
        let bytes = blocks(ty, rows, cols, 5);
        let w = dequantize(ty, &bytes, rows * cols).unwrap();
        let q = QWeight::new(ty, &bytes, rows, cols, &dev).unwrap();
        let x: Vec<f32> = (0..cols).map(|i| i as f32 / 16.0 - 1.0).collect();
        let got = q.matmul(Tensor::<2>::from_data(TensorData::new(x.clone(), [1, cols]), &dev)).into_data().try_into_vec::<f32>().unwrap();
        for r in [0, MAX_CUBES - 1, MAX_CUBES, MAX_CUBES + 1] {
            let want: f64 = (0..cols).map(|c| w[r * cols + c] as f64 * x[c] as f64).sum();
            assert!((got[r] as f64 - want).abs() < 1e-4, "row {r}: {} vs {want}", got[r]);
        }
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i + seed) * 7919 % 2003) as f32 / 1001.0 - 1.0) * 2.0).collect()
    }

    fn read<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().unwrap()
    }

    /// The fused decode step (`attend_step`: RoPE, the cache write, attention in one launch)
    /// against the plain operations (`split_attend_qkv`), which the golden tests prove: grouped
    /// heads, a global and a local (window) layer, and a cache longer than one chunk of scores.
    #[test]
    fn attend_step_equals_the_plain_operations() {
        use crate::model::decoder::{split_attend_qkv, Executor, Heads, Rope};
        use crate::model::wgpu::GpuExecutor;
        let exec = GpuExecutor::new(device());
        let (nh, nkv, hd) = (4, 2, 8);
        let w = (nh + 2 * nkv) * hd;
        let rope = Rope::new(&exec, hd, 1100, 10000.0).unwrap();
        for (window, past) in [(None, 0), (None, 5), (Some(3), 5), (None, CHUNK + 6), (Some(CHUNK + 2), CHUNK + 6)] {
            let heads = Heads { n_head: nh, n_kv_head: nkv, head_dim: hd, scale: 0.35, window };
            let caches = || (exec.kv(past + 2, heads), exec.kv(past + 2, heads));
            let ((mut k1, mut v1), (mut k2, mut v2)) = (caches(), caches());
            if past > 0 {
                let prompt = exec.input(values(past * w, 1), w);
                split_attend_qkv(&exec, prompt.clone(), &rope, (&mut k1, &mut v1), heads, 0);
                split_attend_qkv(&exec, prompt, &rope, (&mut k2, &mut v2), heads, 0);
            }
            let step = exec.input(values(w, 3 + past), w);
            let want = read(split_attend_qkv(&exec, step.clone(), &rope, (&mut k1, &mut v1), heads, past));
            let got = read(exec.attend_qkv(step, &rope, (&mut k2, &mut v2), heads, past));
            for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                assert!((g - e).abs() <= 1e-5 * (1.0 + e.abs()), "window {window:?}, {past} cached: output {i} is {g}, want {e}");
            }
            // The cache holds the new key and value exactly as the plain operations wrote them.
            assert_eq!(read(k2), read(k1), "keys, window {window:?}, {past} cached");
            assert_eq!(read(v2), read(v1), "values, window {window:?}, {past} cached");
        }
    }

    /// The stacked products' kernels give the plain operations' bits (SiLU, the residual add
    /// and RMSNorm) or their values (GELU: burn's erf-free tanh form, another expression).
    #[test]
    fn fused_kernels_equal_the_plain_operations() {
        use crate::model::config::Activation;
        use crate::model::decoder::{add_then_norm, split_glu, Executor, Norm};
        use crate::model::wgpu::GpuExecutor;
        let exec = GpuExecutor::new(device());
        let (t, ff, width) = (3, 40, 96);
        let gu = exec.input(values(t * 2 * ff, 5), 2 * ff);
        for act in [Activation::Silu, Activation::GeluTanh] {
            let want = read(split_glu(&exec, gu.clone(), act, ff));
            let got = read(exec.glu_stacked(gu.clone(), act, ff));
            for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                let tol = if act == Activation::Silu { 0.0 } else { 1e-6 * (1.0 + e.abs()) };
                assert!((g - e).abs() <= tol, "{act:?}: element {i} is {g}, want {e}");
            }
        }
        let (x, y) = (exec.input(values(t * width, 7), width), exec.input(values(t * width, 11), width));
        let norm = Norm { gamma: exec.vector(values(width, 13)).unwrap(), beta: None, eps: 1e-5 };
        let (sum, h) = exec.add_norm(x.clone(), &y, &norm);
        let (want_sum, want_h) = add_then_norm(&exec, x, &y, &norm);
        assert_eq!(read(sum), read(want_sum));
        assert_eq!(read(h), read(want_h));
    }

    /// A view of a stack of matrices multiplies, and gives rows, as the matrix alone does.
    #[test]
    fn a_view_of_a_stack_is_its_matrix() {
        let dev = device();
        let (ty, cols) = (GgmlType::Q4_K, 256);
        let (a, b) = (blocks(ty, 5, cols, 1), blocks(ty, 7, cols, 2));
        let stack = QWeight::new(ty, &[a.clone(), b.clone()].concat(), 12, cols, &dev).unwrap();
        let alone = QWeight::new(ty, &b, 7, cols, &dev).unwrap();
        let view = stack.view(5, 7);
        let x = Tensor::<2>::from_data(TensorData::new(values(cols, 17), [1, cols]), &dev);
        assert_eq!(read(view.matmul(x.clone())), read(alone.matmul(x)));
        assert_eq!(read(view.dequantized()), read(alone.dequantized()));
    }

    /// What the model card reports: at most 1.2× the file's bytes for every type (a K-quant
    /// row of 256 weights, the others' of 32).
    #[test]
    fn held_bytes_near_the_file() {
        for ty in types() {
            let f = QFormat::of(ty).unwrap();
            let n = 256u64;
            let (held, stored) = (f.held_bytes(n), ty.stored_bytes(n as usize) as u64);
            assert!(held > stored && held * 5 <= stored * 6, "{ty:?}: {held} bytes for {stored}");
        }
    }
}
