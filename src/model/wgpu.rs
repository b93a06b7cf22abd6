//! The GPU executor: the model description's operations with burn on its wgpu device (WebGPU in
//! the browser, Vulkan natively), through Ember's CubeCL kernels where they exist
//! (`model::gpu`: GGUF blocks in GPU memory, fused RMSNorm, RoPE and SwiGLU) and burn's
//! operations elsewhere. Nothing is read back but the logits, once a step ([`Executor::read`]).

use burn::tensor::module::{embedding, layer_norm, linear};
use burn::tensor::{activation, Device, Int, Tensor, TensorData};

use super::config::Activation;
use super::decoder::{self as desc, DeviceMemory, Executor, Heads, Norm, Rope, Stacked};
use super::gpu::{self, QFormat, QWeight};
use super::weights::Raw;
use crate::error::{Error, Result};

/// The most bytes one weight buffer holds. WebGPU guarantees storage bindings of 128 MiB, and
/// no more without asking (lavapipe allows no more at all), while a 262k-row embedding (Gemma 3)
/// or a 152k-row one (Qwen3) takes 160 MB and up: larger matrices are kept as blocks of rows.
pub const MAX_PART_BYTES: usize = 64 << 20;

/// Runs the model on a wgpu device.
#[derive(Debug, Clone)]
pub struct GpuExecutor {
    device: Device,
    /// The most bytes a weight buffer holds ([`MAX_PART_BYTES`]; smaller in tests).
    part_bytes: usize,
}

impl GpuExecutor {
    /// An executor on `device`, a wgpu (CubeCL) device.
    pub fn new(device: Device) -> Self {
        GpuExecutor { device, part_bytes: MAX_PART_BYTES }
    }

    /// The same, with weight matrices split into buffers of at most `bytes` (the tests split
    /// tiny models as real ones are split).
    pub fn with_part_bytes(mut self, bytes: usize) -> Self {
        self.part_bytes = bytes.max(1);
        self
    }

    /// Its device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    fn ids(&self, ids: &[u32]) -> Tensor<1, Int> {
        Tensor::from_data(TensorData::new(ids.iter().map(|&i| i as i32).collect::<Vec<_>>(), [ids.len()]), &self.device)
    }
}

/// A weight matrix in GPU memory: one or more blocks of consecutive rows, each in its own buffers
/// (see [`MAX_PART_BYTES`]).
#[derive(Debug, Clone)]
pub struct GpuMatrix {
    /// The blocks of rows, in order, with the first row of each.
    parts: Vec<(usize, Part)>,
}

/// One block of a matrix's rows.
#[derive(Debug, Clone)]
enum Part {
    /// f32 projection weights stored transposed, `[in, out]`, as burn's `linear` reads them.
    Projection(Tensor<2>),
    /// An f32 table `[rows, cols]`: looked up by row, or multiplied by as a tied head.
    Table(Tensor<2>),
    /// GGUF blocks ([`QWeight`]; boxed: it is four tensors).
    Blocks(Box<QWeight>),
}

impl Part {
    /// Rows `ids` (of this part) → `[ids, cols]`.
    fn embed(&self, exec: &GpuExecutor, ids: &[u32]) -> Tensor<2> {
        let t = ids.len();
        match self {
            Part::Table(w) | Part::Projection(w) => {
                let w = if matches!(self, Part::Projection(_)) { w.clone().transpose() } else { w.clone() };
                let d = w.dims()[1];
                embedding(w, exec.ids(ids).reshape([1, t])).reshape([t, d]) // [t, cols]
            }
            Part::Blocks(q) => q.rows_of(exec.ids(ids)), // [t, cols]
        }
    }

    /// `x·Wᵀ` for this part's rows: `[t, in]` → `[t, rows]`.
    fn matmul(&self, x: &Tensor<2>) -> Tensor<2> {
        match self {
            Part::Projection(w) => linear(x.clone(), w.clone(), None),
            // Multiply the row-major [rows, cols] table by the column vectors, rather than the
            // rows by the table's transposed view, which backends may copy on every token.
            Part::Table(w) => w.clone().matmul(x.clone().transpose()).transpose(), // [rows, t] → [t, rows]
            Part::Blocks(q) => q.matmul(x.clone()),
        }
    }
}

impl GpuExecutor {
    /// One block of rows as the GPU keeps it: quantised types in their blocks; f32, f16 and
    /// bf16 as f32.
    fn part(&self, raw: Raw, table: bool) -> Result<Part> {
        let [rows, cols] = raw.shape[..] else {
            return Err(Error::Unsupported(format!("a {}-D weight matrix", raw.shape.len())));
        };
        if QFormat::of(raw.ty).is_some() {
            return Ok(Part::Blocks(Box::new(QWeight::new(raw.ty, &raw.bytes, rows, cols, &self.device)?)));
        }
        let values = raw.to_f32()?;
        Ok(if table {
            Part::Table(Tensor::from_data(TensorData::new(values, [rows, cols]), &self.device))
        } else {
            // Canonical (out, in) → burn's [in, out], transposed once here.
            Part::Projection(Tensor::from_data(TensorData::new(super::weights::transpose(&values, rows, cols), [cols, rows]), &self.device))
        })
    }
}

impl Executor for GpuExecutor {
    type Act = Tensor<2>;
    type Matrix = GpuMatrix;
    type Vector = Tensor<1>;
    /// `[1, kv_heads, capacity, head_dim]`.
    type Kv = Tensor<4>;

    /// Every quantised type stays in its blocks; f32, f16 and bf16 become f32, one block of rows
    /// at a time, so that the f32 copy of the whole model never sits in (wasm) memory beside the
    /// file. A matrix larger than a buffer may be is split into blocks of rows.
    fn matrix(&self, raw: Raw, table: bool) -> Result<GpuMatrix> {
        let [rows, cols] = raw.shape[..] else {
            return Err(Error::Unsupported(format!("a {}-D weight matrix", raw.shape.len())));
        };
        let held_row = QFormat::of(raw.ty).map_or(4 * cols, |f| f.held_bytes(cols as u64) as usize).max(1);
        let per_part = (self.part_bytes / held_row).clamp(1, rows.max(1));
        let stored_row = raw.row_bytes()?;
        let parts = (0..rows)
            .step_by(per_part)
            .map(|r0| {
                let r1 = (r0 + per_part).min(rows);
                let bytes = std::borrow::Cow::Borrowed(&raw.bytes[r0 * stored_row..r1 * stored_row]);
                Ok((r0, self.part(Raw { ty: raw.ty, bytes, shape: vec![r1 - r0, cols] }, table)?))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GpuMatrix { parts })
    }

    fn vector(&self, values: Vec<f32>) -> Result<Tensor<1>> {
        let n = values.len();
        Ok(Tensor::from_data(TensorData::new(values, [n]), &self.device))
    }

    fn kv(&self, capacity: usize, heads: Heads) -> Tensor<4> {
        Tensor::zeros([1, heads.n_kv_head, capacity, heads.head_dim], &self.device)
    }

    fn input(&self, values: Vec<f32>, width: usize) -> Tensor<2> {
        let t = values.len() / width;
        Tensor::from_data(TensorData::new(values, [t, width]), &self.device)
    }

    /// With several parts, each looks up its own ids; the rows are then put back in the ids'
    /// order (the ids are on the CPU, so the grouping is too).
    fn embed(&self, table: &GpuMatrix, ids: &[u32]) -> Tensor<2> {
        if let [(_, part)] = &table.parts[..] {
            return part.embed(self, ids); // [t, cols]
        }
        let (mut pieces, mut order) = (Vec::new(), Vec::with_capacity(ids.len()));
        for (i, (r0, part)) in table.parts.iter().enumerate() {
            let r1 = table.parts.get(i + 1).map_or(u32::MAX as usize, |p| p.0);
            let mine: Vec<(usize, u32)> =
                ids.iter().enumerate().filter(|(_, &id)| (*r0..r1).contains(&(id as usize))).map(|(at, &id)| (at, id - *r0 as u32)).collect();
            if !mine.is_empty() {
                pieces.push(part.embed(self, &mine.iter().map(|m| m.1).collect::<Vec<_>>())); // [n_part, cols]
                order.extend(mine.iter().map(|m| m.0));
            }
        }
        // Row j of the result is the piece row holding position j.
        let mut back = vec![0u32; ids.len()];
        for (row, &at) in order.iter().enumerate() {
            back[at] = row as u32;
        }
        Tensor::cat(pieces, 0).select(0, self.ids(&back)) // [t, cols]
    }

    fn matmul(&self, x: &Tensor<2>, w: &GpuMatrix) -> Tensor<2> {
        match &w.parts[..] {
            [(_, part)] => part.matmul(x),
            parts => Tensor::cat(parts.iter().map(|(_, p)| p.matmul(x)).collect(), 1), // [t, rows]
        }
    }

    fn add(&self, x: Tensor<2>, y: &Tensor<2>) -> Tensor<2> {
        x + y.clone()
    }

    fn scale(&self, x: Tensor<2>, s: f32) -> Tensor<2> {
        x.mul_scalar(s)
    }

    fn add_bias(&self, x: Tensor<2>, b: &Tensor<1>) -> Tensor<2> {
        x + b.clone().unsqueeze()
    }

    fn norm(&self, x: &Tensor<2>, n: &Norm<Self>) -> Tensor<2> {
        let ([t, width], [d]) = (x.dims(), n.gamma.dims());
        match &n.beta {
            // QK-norm: each head is a row of its own.
            None if d != width => gpu::rms_norm(x.clone().reshape([t * width / d, d]), &n.gamma, n.eps).reshape([t, width]),
            None => gpu::rms_norm(x.clone(), &n.gamma, n.eps),
            Some(beta) => layer_norm(x.clone(), n.gamma.clone(), Some(beta.clone()), n.eps),
        }
    }

    fn rope(&self, x: Tensor<2>, rope: &Rope<Self>, heads: usize, pos0: usize) -> Tensor<2> {
        let [t, width] = x.dims();
        let (hd, half) = (rope.head_dim, rope.head_dim / 2);
        let table = |v: &Tensor<1>| v.clone().reshape([rope.max_pos, half]); // [positions, head_dim/2]
        let x = x.reshape([1, t, heads, hd]); // [batch, seq, heads, head_dim]
        gpu::rope(x, &table(&rope.cos), &table(&rope.sin), pos0).reshape([t, width])
    }

    fn attend(&self, q: Tensor<2>, k: Tensor<2>, v: Tensor<2>, (kc, vc): (&mut Tensor<4>, &mut Tensor<4>), heads: Heads, pos0: usize) -> Tensor<2> {
        let Heads { n_head: nh, n_kv_head: nkv, head_dim: hd, scale, window } = heads;
        let [t, _] = q.dims();
        let q = q.reshape([1, t, nh, hd]).swap_dims(1, 2); // [batch, heads, seq, head_dim]
        let k = k.reshape([1, t, nkv, hd]).swap_dims(1, 2); // [batch, kv_heads, seq, head_dim]
        let v = v.reshape([1, t, nkv, hd]).swap_dims(1, 2);
        let end = pos0 + t;
        kc.inplace(|c| c.slice_assign([0..1, 0..nkv, pos0..end, 0..hd], k));
        vc.inplace(|c| c.slice_assign([0..1, 0..nkv, pos0..end, 0..hd], v));
        // Keys from the first query's window on (all of them in a global layer); the mask
        // hides what the later queries' windows have left.
        let first = window.map_or(0, |w| (pos0 + 1).saturating_sub(w));
        let k = kc.clone().slice([0..1, 0..nkv, first..end, 0..hd]); // [batch, kv_heads, keys, head_dim]
        let v = vc.clone().slice([0..1, 0..nkv, first..end, 0..hd]);
        let mask = attention_mask(pos0, t, first, window, &self.device);
        attend(q, k, v, scale, mask.as_ref()).swap_dims(1, 2).reshape([t, nh * hd])
        // [seq, heads·head_dim]
    }

    fn glu(&self, gate: Tensor<2>, up: Tensor<2>, act: Activation) -> Tensor<2> {
        match act {
            Activation::Silu => gpu::swiglu(gate, up),
            Activation::GeluTanh => activation::gelu_approximate(gate) * up,
        }
    }

    fn activate(&self, x: Tensor<2>, act: Activation) -> Tensor<2> {
        match act {
            Activation::Silu => activation::silu(x),
            Activation::GeluTanh => activation::gelu_approximate(x),
        }
    }

    fn columns(&self, x: &Tensor<2>, _width: usize, range: std::ops::Range<usize>) -> Tensor<2> {
        let [t, _] = x.dims();
        x.clone().slice([0..t, range])
    }

    /// Quantised matrices of one type and width are stacked into one buffer (at most a part's
    /// bytes): one launch multiplies by all of them, and each is a view of its rows.
    fn matrices(&self, raws: Vec<Raw>) -> Result<Stacked<GpuMatrix>> {
        let shapes: Vec<[usize; 2]> = raws.iter().filter_map(|r| r.shape[..].try_into().ok()).collect();
        let rows: usize = shapes.iter().map(|s| s[0]).sum();
        let stackable = shapes.len() == raws.len()
            && raws.len() > 1
            && raws.iter().all(|r| r.ty == raws[0].ty)
            && shapes.iter().all(|s| s[1] == shapes[0][1])
            && QFormat::of(raws[0].ty).is_some_and(|f| f.held_bytes((rows * shapes[0][1]) as u64) <= self.part_bytes as u64);
        if !stackable {
            return Ok((raws.into_iter().map(|r| self.matrix(r, false)).collect::<Result<_>>()?, None));
        }
        let bytes: Vec<u8> = raws.iter().flat_map(|r| r.bytes.iter().copied()).collect();
        let stack = QWeight::new(raws[0].ty, &bytes, rows, shapes[0][1], &self.device)?;
        let mut r0 = 0;
        let views = shapes
            .iter()
            .map(|s| {
                let view = GpuMatrix { parts: vec![(0, Part::Blocks(Box::new(stack.view(r0, s[0]))))] };
                r0 += s[0];
                view
            })
            .collect();
        Ok((views, Some(GpuMatrix { parts: vec![(0, Part::Blocks(Box::new(stack)))] })))
    }

    /// One token: one kernel (`gpu::attend_step`); a prompt: the plain operations.
    fn attend_qkv(&self, qkv: Tensor<2>, rope: &Rope<Self>, (kc, vc): (&mut Tensor<4>, &mut Tensor<4>), heads: Heads, pos0: usize) -> Tensor<2> {
        let [t, _] = qkv.dims();
        if t != 1 || heads.head_dim > gpu::MAX_HEAD_DIM || !heads.head_dim.is_multiple_of(2) {
            return desc::split_attend_qkv(self, qkv, rope, (kc, vc), heads, pos0);
        }
        let first = heads.window.map_or(0, |w| (pos0 + 1).saturating_sub(w));
        gpu::attend_step(qkv, kc, vc, &rope.cos, &rope.sin, heads.n_head, (pos0, first), heads.scale)
    }

    fn glu_stacked(&self, gate_up: Tensor<2>, act: Activation, _d_ff: usize) -> Tensor<2> {
        gpu::glu_stacked(gate_up, act == Activation::GeluTanh)
    }

    /// RMSNorm over whole rows in one kernel with the add; LayerNorm and QK-norm widths as two.
    fn add_norm(&self, x: Tensor<2>, y: &Tensor<2>, n: &Norm<Self>) -> (Tensor<2>, Tensor<2>) {
        let ([_, width], [d]) = (x.dims(), n.gamma.dims());
        if n.beta.is_some() || d != width {
            return desc::add_then_norm(self, x, y, n);
        }
        gpu::add_rms_norm(x, y.clone(), &n.gamma, n.eps)
    }

    fn last(&self, x: Tensor<2>, tokens: usize) -> Tensor<2> {
        let [_, d] = x.dims();
        x.slice([tokens - 1..tokens, 0..d])
    }

    async fn read(&self, x: Tensor<2>) -> Result<Vec<f32>> {
        let data = x.into_data_async().await.map_err(|e| Error::Device(format!("reading logits back failed: {e:?}")))?;
        data.try_into_vec::<f32>().map_err(|e| Error::Device(format!("{e:?}")))
    }

    fn memory(&self) -> Option<DeviceMemory> {
        self.device.memory_pool_usage().map(|u| DeviceMemory { buffers: u.number_allocs, bytes: u.bytes_in_use })
    }
}

/// Scaled dot-product attention of `q` over `k`/`v` with fewer key/value heads: consecutive
/// query heads share one KV head (HF's `repeat_kv`, ggml's broadcast), so the query heads are
/// grouped per KV head by a reshape and K/V are never copied.
///
/// `q`: `[batch, heads, seq, head_dim]`; `k`, `v`: `[batch, kv_heads, keys, head_dim]`;
/// `mask`: additive, `[1, 1, 1, seq, keys]`. Returns `[batch, heads, seq, head_dim]`.
fn attend(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, scale: f32, mask: Option<&Tensor<5>>) -> Tensor<4> {
    let [b, nh, t, hd] = q.dims();
    let [_, nkv, s, _] = k.dims();
    let g = nh / nkv;
    let q = q.reshape([b, nkv, g * t, hd]); // [batch, kv_heads, group·seq, head_dim]
    let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale); // [batch, kv_heads, group·seq, keys]
    let scores = match mask {
        Some(m) => (scores.reshape([b, nkv, g, t, s]) + m.clone()).reshape([b, nkv, g * t, s]),
        None => scores,
    };
    let probs = activation::softmax(scores, 3);
    probs.matmul(v).reshape([b, nh, t, hd])
}

/// The additive mask for `seq` new positions after `past` cached ones, over the keys from
/// position `first` on: causal, and with a `window`, each query sees only the `window` positions
/// up to its own. `None` when a single new token may see every key given. // [1, 1, 1, seq, keys]
fn attention_mask(past: usize, seq: usize, first: usize, window: Option<usize>, device: &Device) -> Option<Tensor<5>> {
    if seq <= 1 {
        return None;
    }
    let keys = past + seq - first;
    let visible = |i: usize, j: usize| j <= past + i && window.is_none_or(|w| past + i - j < w);
    // A large finite value rather than -inf: exp() gives exactly 0 either way, and no backend
    // can turn inf - inf into NaN.
    let data = (0..seq).flat_map(|i| (first..first + keys).map(move |j| if visible(i, j) { 0.0f32 } else { -1e30 })).collect::<Vec<_>>();
    Some(Tensor::from_data(TensorData::new(data, [1, 1, 1, seq, keys]), device))
}
