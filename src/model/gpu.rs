//! GGUF blocks on the GPU: Q4_0, Q4_1 and Q8_0 weights stay in their block formats in GPU
//! memory, and two CubeCL kernels read them there, through burn's backend-extension API
//! (`Tensor::try_into_primitive`, a kernel launch, `Tensor::from_primitive`):
//!
//! - `q_matmul`: `Y = X·Wᵀ` for `t` tokens. A cube of 64 units takes one row of `W` and up to
//!   four tokens; each unit unpacks its blocks into registers once for all of them and sums
//!   `d·Σ qᵢ·xᵢ + m·Σ xᵢ` per block, in f32 with `x` as given (no 8-bit rounding of the
//!   activations, unlike llama.cpp), then the cube adds up its 64 partial sums.
//! - `q_rows`: rows of `W` dequantised (the token embedding, when the head is tied to it).
//!
//! Dequantisation is exact: `d` and `m` are f16 in the file (so exact in f32) and `q` a small
//! integer, so `d·q + m` rounds once, as llama.cpp's reference does; only the order of the sum
//! differs from a dense f32 matmul. GPU memory per 32 weights: 16 bytes of quants (32 for Q8_0)
//! and a 4-byte scale (and a 4-byte offset for Q4_1): 1.2× a Q4_1 file, 1.11× Q4_0, 1.06× Q8_0,
//! against 6.4×, 7.1× and 3.8× for f32 weights.

use burn::tensor::{Device, Int, Tensor, TensorData};
use burn_cubecl::ops::numeric::empty_device;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeBackend;
use cubecl::{calculate_cube_count_elemwise, CubeCount, CubeDim};

use kernels::{q_matmul_kernel, q_rows_kernel};
use half::f16;

use crate::error::{Error, Result};
use crate::gguf::quant::GgmlType;

/// Elements per block.
const QK: usize = 32;
/// Units per cube of `q_matmul` (the partial sums it adds up).
const UNITS: u32 = 64;
/// Tokens a cube of `q_matmul` takes during prefill.
const TILE: usize = 4;
/// WebGPU's limit on cubes along one axis: larger row counts spill into the third axis.
const MAX_CUBES: usize = 65535;

// Kernel codes of the formats (comptime: each compiles its own kernel).
const Q4_0: u32 = 0;
const Q4_1: u32 = 1;
const Q8_0: u32 = 2;

/// A block format the GPU kernels read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QFormat {
    /// `d·(q − 8)`, 4-bit `q`.
    Q4_0,
    /// `d·q + m`, 4-bit `q`.
    Q4_1,
    /// `d·q`, signed 8-bit `q`.
    Q8_0,
}

impl QFormat {
    /// The format of a GGUF type, if the kernels read it (the others are dequantised to f32).
    pub fn of(ty: GgmlType) -> Option<Self> {
        match ty {
            GgmlType::Q4_0 => Some(QFormat::Q4_0),
            GgmlType::Q4_1 => Some(QFormat::Q4_1),
            GgmlType::Q8_0 => Some(QFormat::Q8_0),
            _ => None,
        }
    }
    fn code(self) -> u32 {
        match self {
            QFormat::Q4_0 => Q4_0,
            QFormat::Q4_1 => Q4_1,
            QFormat::Q8_0 => Q8_0,
        }
    }
    /// u32 words of quants per block.
    fn words(self) -> usize {
        match self {
            QFormat::Q8_0 => 8,
            _ => 4,
        }
    }
    /// Bytes a block takes in GPU memory: the quants, an f32 scale, and Q4_1's f32 offset.
    pub fn held_block_bytes(self) -> usize {
        4 * self.words() + if self == QFormat::Q4_1 { 8 } else { 4 }
    }
}

/// A `rows × cols` weight matrix in GPU memory in its GGUF block format.
#[derive(Debug, Clone)]
pub struct QWeight {
    /// The quants, in the file's byte order, as u32 words (bit patterns in burn's i32 ints).
    /// // [rows · blocks · words]
    qs: Tensor<1, Int>,
    /// Scale per block. // [rows · blocks]
    d: Tensor<1>,
    /// Offset per block (Q4_1); the others pass `d` in its place, unread.
    m: Tensor<1>,
    format: QFormat,
    rows: usize,
    cols: usize,
}

impl QWeight {
    /// Uploads `rows × cols` elements stored as `ty` (whole blocks per row) to `device`, which
    /// must be a CubeCL (wgpu) device.
    pub fn new(ty: GgmlType, bytes: &[u8], rows: usize, cols: usize, device: &Device) -> Result<Self> {
        let format = QFormat::of(ty).ok_or_else(|| Error::Unsupported(format!("{} blocks on the GPU", ty.name())))?;
        let ts = ty.type_size();
        if cols % QK != 0 || bytes.len() != rows * cols / QK * ts {
            return Err(Error::gguf(format!("{} data of {} bytes is not {rows} rows of {cols}", ty.name(), bytes.len())));
        }
        let n = rows * cols / QK;
        let (mut d, mut m) = (Vec::with_capacity(n), Vec::with_capacity(if format == QFormat::Q4_1 { n } else { 0 }));
        let mut qs = Vec::with_capacity(n * format.words());
        let f16_at = |b: &[u8], i: usize| f16::from_le_bytes([b[i], b[i + 1]]).to_f32();
        for block in bytes.chunks_exact(ts) {
            d.push(f16_at(block, 0));
            // Block layouts: Q4_0 `d, qs[16]`; Q4_1 `d, m, qs[16]`; Q8_0 `d, qs[32]`.
            let quants = match format {
                QFormat::Q4_1 => {
                    m.push(f16_at(block, 2));
                    &block[4..]
                }
                _ => &block[2..],
            };
            // Little-endian words: byte `i` of the block's quants is byte `i % 4` of word `i / 4`.
            qs.extend(quants.chunks_exact(4).map(|w| i32::from_le_bytes([w[0], w[1], w[2], w[3]])));
        }
        let qs = Tensor::<1, Int>::from_data(TensorData::new(qs, [n * format.words()]), device);
        let d = Tensor::<1>::from_data(TensorData::new(d, [n]), device);
        let m = if format == QFormat::Q4_1 { Tensor::<1>::from_data(TensorData::new(m, [n]), device) } else { d.clone() };
        // The kernels read the words as u32: the ints must be 32-bit, and on a CubeCL device.
        let words = qs.clone().try_into_primitive::<CubeBackend>().map_err(|e| Error::Device(format!("GGUF blocks need a wgpu device ({e:?})")))?;
        if words.dtype.size() != 4 {
            return Err(Error::Device(format!("GGUF blocks need 32-bit ints on the GPU, not {:?}", words.dtype)));
        }
        Ok(QWeight { qs, d, m, format, rows, cols })
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
    fn parts(&self) -> (CubeTensor, CubeTensor, CubeTensor) {
        let cube = "QWeight::new checked the device";
        (
            self.qs.clone().try_into_primitive::<CubeBackend>().expect(cube),
            self.d.clone().try_into_primitive::<CubeBackend>().expect(cube),
            self.m.clone().try_into_primitive::<CubeBackend>().expect(cube),
        )
    }

    /// `Y = X·Wᵀ`: `x` `[t, cols]` → `[t, rows]`.
    pub fn matmul(&self, x: Tensor<2>) -> Tensor<2> {
        let [t, cols] = x.dims();
        assert_eq!(cols, self.cols, "QWeight::matmul: input width");
        let x = x.try_into_primitive::<CubeBackend>().expect("x lives on the weights' device");
        let x = burn_cubecl::kernel::into_contiguous(x);
        let (qs, d, m) = self.parts();
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
            y.clone().into_tensor_arg(),
            self.format.code(),
            self.format.words(),
            tile,
        );
        Tensor::from_primitive::<CubeBackend>(y)
    }

    /// Rows `ids` of `W`, dequantised: `[n]` → `[n, cols]`.
    pub fn rows_of(&self, ids: Tensor<1, Int>) -> Tensor<2> {
        let [n] = ids.dims();
        let ids = ids.try_into_primitive::<CubeBackend>().expect("ids live on the weights' device");
        let ids = burn_cubecl::kernel::into_contiguous(ids);
        let (qs, d, m) = self.parts();
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
            out.clone().into_tensor_arg(),
            self.format.code(),
            self.format.words(),
            ids_ty,
        );
        Tensor::from_primitive::<CubeBackend>(out)
    }
}

/// The kernels (CubeCL's `Tensor`, not burn's).
mod kernels {
    use super::{Q4_0, Q4_1, Q8_0};
    use cubecl::prelude::*;

    /// Quant `j` (0..32) of the block whose words start at `base`, as f32 (signed for Q8_0).
    #[cube]
    fn quant(qs: &Tensor<u32>, base: usize, j: usize, #[comptime] format: u32) -> f32 {
        if comptime![format == Q8_0] {
            let b = (qs[base + j / 4] >> (8 * (j % 4)) as u32) & 0xFF;
            let v = f32::cast_from(b);
            select(b >= 128, v - 256.0, v)
        } else {
            // Element j < 16 is the low nibble of byte j, element j + 16 its high nibble.
            let i = j % 16;
            let shift = (8 * (i % 4) + 4 * (j / 16)) as u32;
            f32::cast_from((qs[base + i / 4] >> shift) & 0xF)
        }
    }
    
    /// One block's contribution, `d·Σqx + m·Σx`, in each format's terms.
    #[cube]
    fn block_sum(qx: f32, xs: f32, d: f32, m: f32, #[comptime] format: u32) -> f32 {
        if comptime![format == Q4_1] {
            d * qx + m * xs
        } else if comptime![format == Q4_0] {
            d * (qx - 8.0 * xs)
        } else {
            d * qx
        }
    }
    
    /// `y[t, r] = Σ_b block_sum(row r's block b, x[t]'s block b)`. Cube (x + z·count_x) is a row,
    /// cube y a group of `tile` tokens; each of the 64 units takes every 64th block.
    #[cube(launch)]
    pub(super) fn q_matmul_kernel(
        x: &Tensor<f32>,  // [t, cols]
        qs: &Tensor<u32>, // [rows · blocks · words]
        d: &Tensor<f32>,  // [rows · blocks]
        m: &Tensor<f32>,  // [rows · blocks] (Q4_1)
        y: &mut Tensor<f32>, // [t, rows]
        #[comptime] format: u32,
        #[comptime] words: usize,
        #[comptime] tile: usize,
    ) {
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
                let blk = row * nb + b;
                let base = blk * words;
                let xb = b * 32;
                let mut qx = Array::<f32>::new(tile);
                let mut xs = Array::<f32>::new(tile);
                #[unroll]
                for k in 0..tile {
                    qx[k] = 0.0;
                    xs[k] = 0.0;
                }
                #[unroll]
                for j in 0..32 {
                    let q = quant(qs, base, j, format);
                    #[unroll]
                    for k in 0..tile {
                        let v = x[xrow[k] + xb + j];
                        qx[k] += q * v;
                        xs[k] += v;
                    }
                }
                let db = d[blk];
                let mut mb = 0.0;
                if comptime![format == Q4_1] {
                    mb = m[blk];
                }
                #[unroll]
                for k in 0..tile {
                    acc[k] += block_sum(qx[k], xs[k], db, mb, format);
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
        ids: &Tensor<I>,  // [n]
        qs: &Tensor<u32>, // [rows · blocks · words]
        d: &Tensor<f32>,  // [rows · blocks]
        m: &Tensor<f32>,  // [rows · blocks] (Q4_1)
        out: &mut Tensor<f32>, // [n, cols]
        #[comptime] format: u32,
        #[comptime] words: usize,
        #[define(I)] _ids: ElemType,
    ) {
        let cols = out.shape(1);
        if ABSOLUTE_POS >= out.shape(0) * cols {
            terminate!();
        }
        let c = ABSOLUTE_POS % cols;
        let row = u32::cast_from(ids[ABSOLUTE_POS / cols]) as usize;
        let blk = row * (cols / 32) + c / 32;
        let q = quant(qs, blk * words, c % 32, format);
        let mut mb = 0.0;
        if comptime![format == Q4_1] {
            mb = m[blk];
        }
        // A one-element block sum: d·q + m (Q4_1), d·(q − 8), d·q.
        out[ABSOLUTE_POS] = block_sum(q, 1.0, d[blk], mb, format);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::quant::dequantize;

    /// Random blocks of `ty` for a `rows × cols` matrix: scales and offsets of either sign
    /// as f16, quants uniformly random.
    fn blocks(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        let mut next = move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 33) as u32
        };
        let n = rows * cols / QK;
        let mut out = Vec::with_capacity(n * ty.type_size());
        for _ in 0..n {
            let mut f16v = || f16::from_f32((next() % 2001) as f32 / 1000.0 - 1.0).to_le_bytes();
            out.extend(f16v());
            if ty == GgmlType::Q4_1 {
                out.extend(f16v());
            }
            let quant_bytes = ty.type_size() - out.len() % ty.type_size();
            out.extend((0..quant_bytes).map(|_| next() as u8));
        }
        out
    }

    fn device() -> Device {
        crate::backend::wgpu_device().expect("wgpu (lavapipe) for the GPU kernel tests")
    }

    /// `q_matmul` against an f64 product with the reference dequantisation, for every format,
    /// one token (decode) and token counts around the 4-token tile, with blocks per row below
    /// and above the 64 units of a cube.
    #[test]
    fn matmul_equals_dequantised_reference() {
        let dev = device();
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
            for (rows, cols) in [(37, 96), (9, 66 * 32)] {
                let w = dequantize(ty, &blocks(ty, rows, cols, 7), rows * cols).unwrap();
                let q = QWeight::new(ty, &blocks(ty, rows, cols, 7), rows, cols, &dev).unwrap();
                for t in [1, 3, 4, 6] {
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
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
            let (rows, cols) = (11, 64);
            let bytes = blocks(ty, rows, cols, 3);
            let w = dequantize(ty, &bytes, rows * cols).unwrap();
            let q = QWeight::new(ty, &bytes, rows, cols, &dev).unwrap();
            let ids = [10, 0, 3, 3];
            let got = q.rows_of(Tensor::<1, Int>::from_data(TensorData::new(ids.to_vec(), [4]), &dev)).into_data().try_into_vec::<f32>().unwrap();
            let want: Vec<f32> = ids.iter().flat_map(|&r| w[r as usize * cols..][..cols].to_vec()).collect();
            assert_eq!(got, want, "{ty:?}");
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

    /// What the model card reports: within 1.2× the file for the formats the kernels read.
    #[test]
    fn held_bytes_near_the_file() {
        for (ty, f) in [(GgmlType::Q4_0, QFormat::Q4_0), (GgmlType::Q4_1, QFormat::Q4_1), (GgmlType::Q8_0, QFormat::Q8_0)] {
            let ratio = f.held_block_bytes() as f64 / ty.type_size() as f64;
            assert!(ratio <= 1.2, "{ty:?}: {ratio}");
        }
    }
}
