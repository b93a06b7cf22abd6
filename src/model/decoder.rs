//! The one model description: the decoder of every family Ember runs, written once over a small
//! set of operations ([`Executor`]) that each backend implements. The GPU executor
//! (`model::wgpu`) runs them with burn and Ember's CubeCL kernels; the CPU executor
//! (`model::cpu`) with the quantised kernels of `model::qmatrix`. What differs between families
//! is data ([`Family`]); the weights come from the one weights walk (`model::weights`).
//!
//! Activations are f32 and laid out `[tokens, width]` (batch 1), a head's values contiguous
//! within a row (`[tokens, heads · head_dim]`). The KV cache is preallocated, and the next
//! position is always `cache.len()`.

use std::future::Future;
use std::pin::Pin;

use super::config::{Activation, DecoderConfig, Family};
use super::weights::{Raw, Tensors};
use crate::error::{Error, Result};

/// What an executor does for the model description. Each operation takes and returns the
/// executor's own activations, so that a GPU executor queues work and reads back only once, in
/// [`Executor::read`].
pub trait Executor: Sized {
    /// Activations, `[tokens, width]`.
    type Act;
    /// A weight matrix, `(out, in)`, as the executor keeps it (blocks or f32).
    type Matrix;
    /// An f32 vector: a norm's weights, a bias, RoPE's tables.
    type Vector;
    /// One block's keys or values for every position the cache holds.
    type Kv;

    /// Takes a weight matrix from the file's stored bytes (its canonical `(rows, cols)` form).
    /// `table` says it is looked up by row (an embedding) rather than multiplied by.
    fn matrix(&self, raw: Raw, table: bool) -> Result<Self::Matrix>;
    /// Takes an f32 vector.
    fn vector(&self, values: Vec<f32>) -> Result<Self::Vector>;
    /// A zeroed cache buffer for `capacity` positions of one block.
    fn kv(&self, capacity: usize, heads: Heads) -> Self::Kv;
    /// Activations from the CPU, `width` values a row (the tests' inputs).
    fn input(&self, values: Vec<f32>, width: usize) -> Self::Act;

    /// Rows `ids` of `table`: `[ids, cols]`.
    fn embed(&self, table: &Self::Matrix, ids: &[u32]) -> Self::Act;
    /// `x·Wᵀ`: `[t, in]` → `[t, out]`.
    fn matmul(&self, x: &Self::Act, w: &Self::Matrix) -> Self::Act;
    /// `x + y`, elementwise.
    fn add(&self, x: Self::Act, y: &Self::Act) -> Self::Act;
    /// `x · s`, elementwise.
    fn scale(&self, x: Self::Act, s: f32) -> Self::Act;
    /// `x + b` on every row.
    fn add_bias(&self, x: Self::Act, b: &Self::Vector) -> Self::Act;
    /// RMSNorm (`beta` None) or LayerNorm over each row, or over each `gamma`-wide piece of a
    /// row where `gamma` is narrower than the row (QK-norm: each head of a query or key row).
    fn norm(&self, x: &Self::Act, norm: &Norm<Self>) -> Self::Act;
    /// RoPE on interleaved pairs of each of `heads` heads; row `i` is at position `pos0 + i`.
    fn rope(&self, x: Self::Act, rope: &Rope<Self>, heads: usize, pos0: usize) -> Self::Act;
    /// Writes `k` and `v` (`[t, kv_heads · head_dim]`) into the cache at `pos0..pos0 + t`, then
    /// attends from `q` (`[t, heads · head_dim]`) to every cached position up to each query's
    /// own (causal), consecutive query heads sharing a KV head; in a local layer
    /// (`heads.window`), only the `window` positions up to its own (the query's included).
    /// Scores are scaled by `heads.scale`. Returns `[t, heads · head_dim]`.
    fn attend(&self, q: Self::Act, k: Self::Act, v: Self::Act, cache: (&mut Self::Kv, &mut Self::Kv), heads: Heads, pos0: usize) -> Self::Act;
    /// `act(gate) · up`, elementwise.
    fn glu(&self, gate: Self::Act, up: Self::Act, act: Activation) -> Self::Act;
    /// `act(x)`, elementwise.
    fn activate(&self, x: Self::Act, act: Activation) -> Self::Act;
    /// Columns `range` of every `width`-wide row: `[t, range.len()]`.
    fn columns(&self, x: &Self::Act, width: usize, range: std::ops::Range<usize>) -> Self::Act;

    /// Matrices of one input width, all multiplied by the same input (q, k and v; gate and up):
    /// each as the executor keeps it, and, where one product for all of them saves the executor
    /// work (a GPU's launches), their rows stacked in one matrix of which each is a view (no
    /// second copy). The default keeps each on its own and stacks nothing.
    fn matrices(&self, raws: Vec<Raw>) -> Result<Stacked<Self::Matrix>> {
        Ok((raws.into_iter().map(|r| self.matrix(r, false)).collect::<Result<_>>()?, None))
    }
    /// [`Executor::attend`] from one product of the stacked q, k and v (`qkv`, `[t, (heads +
    /// 2·kv_heads)·head_dim]`), after RoPE of q and k. A GPU does it in one launch per token.
    fn attend_qkv(&self, qkv: Self::Act, rope: &Rope<Self>, cache: (&mut Self::Kv, &mut Self::Kv), heads: Heads, pos0: usize) -> Self::Act {
        split_attend_qkv(self, qkv, rope, cache, heads, pos0)
    }
    /// [`Executor::glu`] from one product of the stacked gate and up (`[t, 2·d_ff]`, gate first).
    fn glu_stacked(&self, gate_up: Self::Act, act: Activation, d_ff: usize) -> Self::Act {
        split_glu(self, gate_up, act, d_ff)
    }
    /// `x + y` (the residual stream) and its norm (the next sublayer's input), at once.
    fn add_norm(&self, x: Self::Act, y: &Self::Act, norm: &Norm<Self>) -> (Self::Act, Self::Act) {
        add_then_norm(self, x, y, norm)
    }
    /// The last of `tokens` rows: `[1, width]`.
    fn last(&self, x: Self::Act, tokens: usize) -> Self::Act;
    /// The values, on the CPU: the one readback of a step (asynchronous, as the web requires).
    fn read(&self, x: Self::Act) -> impl Future<Output = Result<Vec<f32>>>;
    /// Live buffers and bytes of the device's allocator, where it reports them.
    fn memory(&self) -> Option<DeviceMemory> {
        None
    }
}

/// [`Executor::attend_qkv`] in the plain operations: the columns split, RoPE, then attend.
pub fn split_attend_qkv<E: Executor>(exec: &E, qkv: E::Act, rope: &Rope<E>, cache: (&mut E::Kv, &mut E::Kv), heads: Heads, pos0: usize) -> E::Act {
    let (nq, nkv) = (heads.n_head * heads.head_dim, heads.n_kv_head * heads.head_dim);
    let w = nq + 2 * nkv;
    let q = exec.rope(exec.columns(&qkv, w, 0..nq), rope, heads.n_head, pos0);
    let k = exec.rope(exec.columns(&qkv, w, nq..nq + nkv), rope, heads.n_kv_head, pos0);
    let v = exec.columns(&qkv, w, nq + nkv..w);
    exec.attend(q, k, v, cache, heads, pos0)
}

/// [`Executor::glu_stacked`] in the plain operations.
pub fn split_glu<E: Executor>(exec: &E, gate_up: E::Act, act: Activation, d_ff: usize) -> E::Act {
    let gate = exec.columns(&gate_up, 2 * d_ff, 0..d_ff);
    exec.glu(gate, exec.columns(&gate_up, 2 * d_ff, d_ff..2 * d_ff), act)
}

/// [`Executor::add_norm`] in the plain operations.
pub fn add_then_norm<E: Executor>(exec: &E, x: E::Act, y: &E::Act, norm: &Norm<E>) -> (E::Act, E::Act) {
    let x = exec.add(x, y);
    let h = exec.norm(&x, norm);
    (x, h)
}

/// Matrices taken together ([`Executor::matrices`]): each (a view of the stack, where there is
/// one), and their stack.
pub type Stacked<M, S = M> = (Vec<M>, Option<S>);

/// A device allocator's count of what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceMemory {
    /// Live allocations.
    pub buffers: u64,
    /// Bytes in use.
    pub bytes: u64,
}

/// The attention's shape: its heads, the scores' scale, and a local layer's window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heads {
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (fewer: grouped-query attention).
    pub n_kv_head: usize,
    /// Width of a head.
    pub head_dim: usize,
    /// The scores' scale (`1/√head_dim` but where a family says otherwise).
    pub scale: f32,
    /// Keys a local (sliding-window) layer sees; `None` in a global layer.
    pub window: Option<usize>,
}

/// RMSNorm `x / rms(x) · γ`, or LayerNorm `(x − mean) / std · γ + β` when it has a `beta`.
pub struct Norm<E: Executor> {
    /// γ, `[width]`.
    pub gamma: E::Vector,
    /// LayerNorm's β, `[width]`; `None` for RMSNorm.
    pub beta: Option<E::Vector>,
    /// Added to the mean square (or variance).
    pub eps: f64,
}

/// A projection `x·Wᵀ + b`.
pub struct Linear<E: Executor> {
    /// `(out, in)`.
    pub weight: E::Matrix,
    /// `[out]`.
    pub bias: Option<E::Vector>,
}

impl<E: Executor> Linear<E> {
    /// `[t, in]` → `[t, out]`.
    pub fn forward(&self, exec: &E, x: &E::Act) -> E::Act {
        let y = exec.matmul(x, &self.weight);
        match &self.bias {
            Some(b) => exec.add_bias(y, b),
            None => y,
        }
    }
}

/// Rotary position embedding on interleaved pairs `(x[2i], x[2i+1])`.
///
/// This is llama.cpp's "normal" RoPE, the convention of GGUF `llama` files: the converter
/// (convert_hf_to_gguf.py) permuted the rows of Q and K from Hugging Face's half-split
/// ("rotate_half") order, so those weights are used as stored. Sources still in half-split order
/// (Hugging Face Llama and Qwen2 weights, GGUF `qwen2`, which llama.cpp runs as "NeoX" RoPE) are
/// permuted into this order once, at load (`weights::rope_interleave`). Proven by the golden tests.
pub struct Rope<E: Executor> {
    /// cos(pos · θ^(-2i/d)) for every position, `[max_pos · head_dim/2]`.
    pub cos: E::Vector,
    /// sin of the same angles.
    pub sin: E::Vector,
    /// Width of a head.
    pub head_dim: usize,
    /// Positions the tables cover.
    pub max_pos: usize,
}

/// What RoPE's tables are made of.
#[derive(Debug, Clone)]
pub struct RopeSpec<'a> {
    /// Width of a head.
    pub head_dim: usize,
    /// Dims of a head that rotate (the first ones; the rest pass through).
    pub rot_dims: usize,
    /// The base θ.
    pub theta: f64,
    /// Each rotating pair's frequency divisor, `[rot_dims/2]` (Llama 3, LongRoPE).
    pub factors: Option<&'a [f32]>,
    /// What multiplies cos and sin of the rotating pairs (LongRoPE's attention factor; else 1).
    pub mscale: f64,
}

impl<E: Executor> Rope<E> {
    /// Tables for `max_pos` positions.
    pub fn new(exec: &E, head_dim: usize, max_pos: usize, theta: f64) -> Result<Self> {
        Self::with_spec(exec, &RopeSpec { head_dim, rot_dims: head_dim, theta, factors: None, mscale: 1.0 }, max_pos)
    }

    /// Tables of `spec` for `max_pos` positions.
    pub fn with_spec(exec: &E, spec: &RopeSpec<'_>, max_pos: usize) -> Result<Self> {
        let (cos, sin) = rope_tables(spec, max_pos);
        Ok(Rope { cos: exec.vector(cos)?, sin: exec.vector(sin)?, head_dim: spec.head_dim, max_pos })
    }
}

/// RoPE's cos and sin of `pos · θ^(-2i/rot_dims) / factors[i]` (times `mscale`) for the rotating
/// pairs `i < rot_dims/2`, and 1 and 0 (the identity) for the pairs past them, `[max_pos,
/// head_dim/2]` each: the executors rotate every pair, so partial rotary is the tables' alone.
/// Angles are computed in f64, then rounded, as the reference does.
pub fn rope_tables(spec: &RopeSpec<'_>, max_pos: usize) -> (Vec<f32>, Vec<f32>) {
    let (half, rot_half) = (spec.head_dim / 2, spec.rot_dims / 2);
    let mut cos = Vec::with_capacity(max_pos * half);
    let mut sin = Vec::with_capacity(max_pos * half);
    for p in 0..max_pos {
        for i in 0..half {
            if i >= rot_half {
                cos.push(1.0);
                sin.push(0.0);
                continue;
            }
            let divisor = spec.factors.map_or(1.0, |f| f64::from(f[i]));
            let a = p as f64 * spec.theta.powf(-((2 * i) as f64) / spec.rot_dims as f64) / divisor;
            cos.push((a.cos() * spec.mscale) as f32);
            sin.push((a.sin() * spec.mscale) as f32);
        }
    }
    (cos, sin)
}

/// Keys and values of every block for the positions seen so far, preallocated to a capacity.
/// The next token's position is always `len()`.
pub struct KvCache<E: Executor> {
    /// Per block.
    k: Vec<E::Kv>,
    /// Per block.
    v: Vec<E::Kv>,
    len: usize,
    capacity: usize,
}

impl<E: Executor> KvCache<E> {
    /// A cache for `capacity` positions of a model of shape `config`.
    pub fn new(exec: &E, config: &DecoderConfig, capacity: usize) -> Self {
        let heads = config.heads();
        let buffers = || (0..config.n_layer).map(|_| exec.kv(capacity, heads)).collect();
        KvCache { k: buffers(), v: buffers(), len: 0, capacity }
    }
    /// Positions filled.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Positions the cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Forgets every position (a new conversation). The buffers are kept.
    pub fn reset(&mut self) {
        self.len = 0;
    }
    /// Keeps the first `len` positions: later ones are overwritten by the next forward.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
    /// Block `l`'s keys and values.
    pub fn layer(&mut self, l: usize) -> (&mut E::Kv, &mut E::Kv) {
        (&mut self.k[l], &mut self.v[l])
    }
}

/// One decoder block: a pre-norm attention and a pre-norm feed-forward network, each with a
/// residual (the same order in every family), and where a family has them, norms of each
/// head's query and key and norms after the attention and the network.
pub struct Layer<E: Executor> {
    /// Norm before attention.
    pub attn_norm: Norm<E>,
    /// QK-norm: RMSNorm of each query head, `[head_dim]`.
    pub q_norm: Option<Norm<E>>,
    /// QK-norm: RMSNorm of each key head, `[head_dim]`.
    pub k_norm: Option<Norm<E>>,
    /// Norm of the attention's output, before its residual add.
    pub post_attn_norm: Option<Norm<E>>,
    /// Norm of the network's output, before its residual add.
    pub post_ffn_norm: Option<Norm<E>>,
    /// Keys a local block sees (sliding-window attention); `None` for a global block.
    pub window: Option<usize>,
    /// Whether it rotates queries and keys (not in a NoPE block).
    pub rope: bool,
    /// q, k and v's weights stacked (`((heads + 2·kv_heads) · head_dim, d_model)`), where the
    /// executor stacks them ([`Executor::matrices`]); `q`, `k` and `v` are then its views.
    pub qkv: Option<E::Matrix>,
    /// q, k and v's biases end to end, `[(heads + 2·kv_heads) · head_dim]`, where `qkv` is
    /// stacked and the family has them (Qwen2).
    pub qkv_bias: Option<E::Vector>,
    /// Gate and up's weights stacked (`(2·d_ff, d_model)`), where the executor stacks them.
    pub gate_up: Option<E::Matrix>,
    /// Query projection, `(heads · head_dim, d_model)`.
    pub q: Linear<E>,
    /// Key projection, `(kv_heads · head_dim, d_model)`.
    pub k: Linear<E>,
    /// Value projection, `(kv_heads · head_dim, d_model)`.
    pub v: Linear<E>,
    /// Output projection, `(d_model, heads · head_dim)`.
    pub o: Linear<E>,
    /// Norm before the feed-forward network.
    pub ffn_norm: Norm<E>,
    /// The gate, `(d_ff, d_model)`, when the network is gated.
    pub gate: Option<Linear<E>>,
    /// Up projection, `(d_ff, d_model)`.
    pub up: Linear<E>,
    /// Down projection, `(d_model, d_ff)`.
    pub down: Linear<E>,
}

/// The decoder: its weights as the executor holds them.
pub struct Decoder<E: Executor> {
    /// Its shape and family.
    pub config: DecoderConfig,
    /// Token embedding, `(vocab, d_model)`.
    pub embed: E::Matrix,
    /// Learned absolute positions, `(context, d_model)`; `None` with RoPE.
    pub positions: Option<E::Matrix>,
    /// The blocks.
    pub layers: Vec<Layer<E>>,
    /// Final norm.
    pub norm: Norm<E>,
    /// Output head, `(vocab, d_model)`; `None` when tied to the embedding.
    pub output: Option<E::Matrix>,
    /// RoPE's tables; `None` with learned positions.
    pub rope: Option<Rope<E>>,
    /// The local blocks' RoPE tables, where their base differs (Gemma 3).
    pub rope_local: Option<Rope<E>>,
    /// Positions the model can take: the RoPE tables' or the position embedding's length.
    pub max_pos: usize,
}

impl<E: Executor> Decoder<E> {
    /// Runs `ids` (the positions after those in `cache`) through the decoder, appends their
    /// keys and values to the cache, and returns the logits of the last position only, `[1, vocab]`.
    pub fn forward(&self, exec: &E, ids: &[u32], cache: &mut KvCache<E>) -> Result<E::Act> {
        let c = &self.config;
        let f: Family = c.arch.family();
        let (t, pos0) = (ids.len(), cache.len());
        let needed = pos0 + t;
        let limit = cache.capacity().min(self.max_pos);
        if t == 0 || needed > limit {
            return Err(Error::ContextFull { needed, limit });
        }
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= c.vocab_size) {
            return Err(Error::Unsupported(format!("token id {bad} is outside the vocabulary of {}", c.vocab_size)));
        }
        let heads = c.heads();
        let mut x = exec.embed(&self.embed, ids); // [t, d_model]
        if f.scaled_embed {
            x = exec.scale(x, (c.d_model as f32).sqrt());
        }
        if let Some(p) = &self.positions {
            let at: Vec<u32> = (pos0..needed).map(|p| p as u32).collect();
            x = exec.add(x, &exec.embed(p, &at)); // [t, d_model]
        }
        // Each residual add is fused with the norm that follows it (the next sublayer's).
        let mut h = exec.norm(&x, self.layers.first().map_or(&self.norm, |l| &l.attn_norm));
        for (l, layer) in self.layers.iter().enumerate() {
            let rope = if layer.window.is_some() { self.rope_local.as_ref().or(self.rope.as_ref()) } else { self.rope.as_ref() };
            let rope = rope.filter(|_| layer.rope);
            let heads = Heads { window: layer.window, ..heads };
            let o = match (&layer.qkv, rope) {
                // One product (and its bias), then RoPE, the cache and attention at once (no
                // QK-norm where the weights were stacked).
                (Some(qkv), Some(rope)) => {
                    let p = exec.matmul(&h, qkv); // [t, (heads + 2·kv_heads)·head_dim]
                    let p = match &layer.qkv_bias {
                        Some(b) => exec.add_bias(p, b),
                        None => p,
                    };
                    exec.attend_qkv(p, rope, cache.layer(l), heads, pos0)
                }
                _ => self.attention(exec, layer, &h, rope, cache.layer(l), heads, pos0),
            }; // [t, heads·head_dim]
            let o = layer.o.forward(exec, &o); // [t, d_model]
            (x, h) = exec.add_norm(x, &post_norm(exec, o, layer.post_attn_norm.as_ref()), &layer.ffn_norm);

            let m = match (&layer.gate_up, &layer.gate) {
                (Some(gate_up), _) => exec.glu_stacked(exec.matmul(&h, gate_up), f.act, c.d_ff), // [t, d_ff]
                (None, Some(gate)) => exec.glu(gate.forward(exec, &h), layer.up.forward(exec, &h), f.act),
                (None, None) => exec.activate(layer.up.forward(exec, &h), f.act),
            };
            let m = layer.down.forward(exec, &m); // [t, d_model]
            let next = self.layers.get(l + 1).map_or(&self.norm, |n| &n.attn_norm);
            (x, h) = exec.add_norm(x, &post_norm(exec, m, layer.post_ffn_norm.as_ref()), next);
        }
        cache.len = needed;
        // `h` is the final norm of every position; only the last one's logits, `[1, vocab]`,
        // are needed.
        Ok(exec.matmul(&exec.last(h, t), self.output.as_ref().unwrap_or(&self.embed)))
    }

    /// The attention sublayer from its input `h` with separate products: biases, QK-norm and
    /// RoPE where the layer has them.
    #[allow(clippy::too_many_arguments)] // the sublayer's own parts, each used once
    fn attention(&self, exec: &E, layer: &Layer<E>, h: &E::Act, rope: Option<&Rope<E>>, cache: (&mut E::Kv, &mut E::Kv), heads: Heads, pos0: usize) -> E::Act {
        let mut q = layer.q.forward(exec, h); // [t, heads·head_dim]
        let mut k = layer.k.forward(exec, h); // [t, kv_heads·head_dim]
        let v = layer.v.forward(exec, h); // [t, kv_heads·head_dim]
        if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
            q = exec.norm(&q, qn); // each head over its head_dim
            k = exec.norm(&k, kn);
        }
        if let Some(rope) = rope {
            q = exec.rope(q, rope, heads.n_head, pos0);
            k = exec.rope(k, rope, heads.n_kv_head, pos0);
        }
        exec.attend(q, k, v, cache, heads, pos0)
    }
}

/// A sublayer's output through its post-norm, where the family has one (Gemma's sandwich).
fn post_norm<E: Executor>(exec: &E, y: E::Act, norm: Option<&Norm<E>>) -> E::Act {
    match norm {
        Some(n) => exec.norm(&y, n),
        None => y,
    }
}

/// `Send` natively, where the engine may move between threads; nothing in wasm, where it cannot.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send> MaybeSend for T {}
/// `Send` natively, where the engine may move between threads; nothing in wasm, where it cannot.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T> MaybeSend for T {}

/// A decoder with its executor and cache: what the engine runs, whatever the backend.
pub trait Runner: MaybeSend {
    /// Runs `ids` after the cached positions and reads back the last position's logits.
    fn forward<'a>(&'a mut self, ids: &'a [u32]) -> Pin<Box<dyn Future<Output = Result<Vec<f32>>> + 'a>>;
    /// The model's shape as loaded (a tied head says so).
    fn config(&self) -> &DecoderConfig;
    /// Positions the cache holds.
    fn capacity(&self) -> usize;
    /// Keeps the first `len` cached positions.
    fn truncate(&mut self, len: usize);
    /// Forgets every cached position.
    fn reset(&mut self);
    /// What the device's allocator holds, where it reports it.
    fn device_memory(&self) -> Option<DeviceMemory>;
}

/// A [`Runner`] the engine can own.
pub type BoxedRunner = Box<dyn Runner>;

/// A loaded model on one executor.
pub struct Loaded<E: Executor> {
    /// The executor.
    pub exec: E,
    /// The weights.
    pub decoder: Decoder<E>,
    /// The KV cache.
    pub cache: KvCache<E>,
}

impl<E: Executor> Loaded<E> {
    /// Builds the decoder from a model's tensors through the weights walk, with a cache of
    /// `capacity` positions; `progress(done, total)` is called as each tensor is taken.
    pub fn new(exec: E, tensors: Tensors<'_>, config: &DecoderConfig, capacity: usize, progress: &mut dyn FnMut(usize, usize)) -> Result<Self> {
        let decoder = super::weights::build(&exec, tensors, config, capacity, progress)?;
        let cache = KvCache::new(&exec, &decoder.config, capacity);
        Ok(Loaded { exec, decoder, cache })
    }

    /// The last position's logits after `ids`, read back.
    pub async fn logits(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        let logits = self.decoder.forward(&self.exec, ids, &mut self.cache)?;
        let logits = self.exec.read(logits).await?;
        if logits.iter().any(|v| !v.is_finite()) {
            return Err(Error::Device("the model produced non-finite logits".into()));
        }
        Ok(logits)
    }
}

impl<E: Executor> Runner for Loaded<E>
where
    Loaded<E>: MaybeSend,
{
    fn forward<'a>(&'a mut self, ids: &'a [u32]) -> Pin<Box<dyn Future<Output = Result<Vec<f32>>> + 'a>> {
        Box::pin(self.logits(ids))
    }
    fn config(&self) -> &DecoderConfig {
        &self.decoder.config
    }
    fn capacity(&self) -> usize {
        self.cache.capacity()
    }
    fn truncate(&mut self, len: usize) {
        self.cache.truncate(len)
    }
    fn reset(&mut self) {
        self.cache.reset()
    }
    fn device_memory(&self) -> Option<DeviceMemory> {
        self.exec.memory()
    }
}
