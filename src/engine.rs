//! The generation engine: load a model (GGUF, or a Hugging Face folder), then `start` a prompt and step it with `next`.
//!
//! Each `next` runs one forward pass (the whole prompt on the first call, one token after)
//! and reads back one `[vocab]` logits vector, asynchronously. Stopping between steps leaves
//! the engine reusable; a follow-up prompt reuses the KV cache for the tokens it shares with
//! what is cached.

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, Device};
use crate::chat::{ChatTemplate, Message};
use crate::clock::now_s;
use crate::error::{Error, Result};
use crate::gguf::quant::GgmlType;
use crate::gguf::{ByteSource, Gguf};
use crate::grammar::{Constrained, Grammar, Grammars};
use crate::hf::HfFolder;
use crate::model::decoder::DeviceMemory;
#[cfg(feature = "gpu")]
use crate::model::{gpu::QFormat, GpuExecutor};
use crate::model::{BoxedRunner, CpuExecutor, DecoderConfig, Executor, KvCache, Loaded, Tensors};
use crate::safetensors::Safetensors;
use crate::sampling::{Sampler, SamplingConfig};
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// How a model is loaded.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LoadOptions {
    /// Positions the KV cache holds (capped by the model's own context length).
    pub max_context: usize,
    /// A Hugging Face `tokenizer.json` to use instead of the one in the GGUF metadata.
    #[serde(skip)]
    pub tokenizer_json: Option<Vec<u8>>,
    /// Bytes the loaded weights may take in all, as the backend holds them: a device's memory.
    pub memory_limit: Option<u64>,
    /// Bytes one weight tensor may take: a GPU's largest storage buffer.
    pub tensor_limit: Option<u64>,
    /// The name to show (the file's, folder's or repository's, made readable); the card keeps the
    /// file's own `general.name` beside it, and it stands in where the files give none.
    pub name: Option<String>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { max_context: 2048, tokenizer_json: None, memory_limit: None, tensor_limit: None, name: None }
    }
}

/// What is known about the loaded model, for the model card.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// `general.name`, if the file has one (else the name the loader gave).
    pub name: Option<String>,
    /// The name to show: the one the loader gave (from the file's or folder's name:
    /// "SmolLM2 135M Instruct"), else `general.name`, which is often a training run's
    /// ("Smollm2 135M 8k Lc100K Mix1 Ep2").
    pub display_name: Option<String>,
    /// `general.architecture` or `model_type`: `llama`, `qwen2` or `gpt2`.
    pub architecture: String,
    /// The file format: `GGUF` or `safetensors`.
    pub format: String,
    /// The decoder's shape.
    pub config: DecoderConfig,
    /// Parameters, counted from the loaded tensors.
    pub n_params: usize,
    /// Bytes the weights take as the backend holds them: quantised types in their blocks (f32
    /// scales beside the quants), f16/bf16 as f32. Computed from the file before loading (the
    /// size checks use it).
    pub weight_bytes: u64,
    /// GPU memory the loaded weights took, as the device's allocator counts it (wgpu; `None` on
    /// the CPU or where the allocator does not report).
    pub gpu_weight_bytes: Option<u64>,
    /// Size of the model file (or folder) in bytes.
    pub file_size: usize,
    /// Tensor block formats (or dtypes) in the file and how many tensors use each (e.g. `Q4_1: 210`).
    pub tensor_types: Vec<(String, usize)>,
    /// `general.license`, if present.
    pub license: Option<String>,
    /// `general.organization`, if present.
    pub organization: Option<String>,
    /// `general.languages`, if present.
    pub languages: Vec<String>,
    /// The training data where the file names it (`general.datasets`, or `general.dataset.N.name`).
    pub datasets: Vec<String>,
    /// Positions the KV cache holds.
    pub max_context: usize,
    /// Whether the file has a chat template.
    pub has_chat_template: bool,
    /// Whether it is a reasoning model with a thinking switch (its template takes
    /// `enable_thinking`: Qwen3, SmolLM3).
    pub thinking: bool,
    /// The backend it runs on.
    pub backend: Backend,
}

/// What to generate from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Prompt {
    /// Raw text, tokenised as is (special tokens in it are encoded as special tokens).
    Text(String),
    /// A conversation, rendered with the model's chat template, ready for the assistant.
    Chat(Vec<Message>),
    /// Token ids as they are: to continue from any point of an earlier generation.
    Ids(Vec<u32>),
}

/// Settings of one generation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerateOptions {
    /// The sampler's settings.
    pub sampling: SamplingConfig,
    /// At most this many new tokens.
    pub max_tokens: usize,
    /// Generation ends before any of these strings; they are not part of the output.
    pub stop: Vec<String>,
    /// How many candidates each step reports.
    pub top_n: usize,
    /// Runs all `max_tokens` tokens, past end-of-sequence (benchmarks measure a fixed length).
    pub ignore_eos: bool,
    /// Ends the answer when its last tokens repeat a short stretch over and over ([`repeating`]):
    /// a small model's loops otherwise run to the token cap.
    pub stop_repeats: bool,
    /// What the answer's text must be (structured output: a JSON schema, any JSON object, a
    /// regex, a Lark grammar); every draw is masked to it.
    pub grammar: Option<Grammar>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            sampling: SamplingConfig::default(),
            max_tokens: 256,
            stop: Vec::new(),
            top_n: 10,
            ignore_eos: false,
            stop_repeats: true,
            grammar: None,
        }
    }
}

/// The longest stretch the loop guard looks for, in tokens.
pub const LOOP_PERIOD_MAX: usize = 64;
/// A loop is a stretch of `p` tokens repeated to fill the last `max(LOOP_REPEATS · p, LOOP_MIN_SPAN)`
/// tokens: four times over for a phrase, 32 tokens for a short one (a run of one character).
pub const LOOP_REPEATS: usize = 4;
/// See [`LOOP_REPEATS`].
pub const LOOP_MIN_SPAN: usize = 32;

/// Whether `tokens` end in a loop: some stretch of 1 to [`LOOP_PERIOD_MAX`] tokens repeated
/// back to back over the last `max(4 · period, 32)` tokens. A list or a table repeats its shape,
/// not its tokens (the numbers, names and cells change), so it does not count.
pub fn repeating(tokens: &[u32]) -> bool {
    let n = tokens.len();
    (1..=LOOP_PERIOD_MAX).any(|p| {
        let span = (LOOP_REPEATS * p).max(LOOP_MIN_SPAN);
        span <= n && (n - span + p..n).all(|i| tokens[i] == tokens[i - p])
    })
}

/// What `start` did.
#[derive(Debug, Clone, Serialize)]
pub struct StartInfo {
    /// The exact text the model sees.
    pub prompt_text: String,
    /// Its tokens.
    pub prompt_ids: Vec<u32>,
    /// Leading prompt tokens whose keys and values were already cached.
    pub reused: usize,
}

/// A token the sampler could have picked.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// Token id.
    pub token: u32,
    /// Its probability in the distribution the token was drawn from.
    pub prob: f32,
    /// The token's text (may be part of a character).
    pub text: String,
}

/// How a conversation fits the context window (see [`Engine::fit_chat`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatFit {
    /// Index of the first message after the leading system messages that stays in the prompt;
    /// the messages between those and it are left out.
    pub first: usize,
    /// Messages left out.
    pub dropped: usize,
    /// Prompt tokens of what is kept.
    pub tokens: usize,
    /// Prompt tokens of the whole conversation.
    pub total_tokens: usize,
    /// Tokens kept free for the answer.
    pub reserve: usize,
    /// The context window.
    pub limit: usize,
}

impl ChatFit {
    /// The messages that stay in the prompt: the leading system messages, then `first` on.
    pub fn kept(&self, messages: &[Message]) -> Vec<Message> {
        kept(messages, self.first)
    }
}

/// How many system messages lead the conversation (they always stay in the prompt).
fn leading_system(messages: &[Message]) -> usize {
    messages.iter().take_while(|m| m.role == "system").count()
}

/// The leading system messages and the messages from `first` on.
fn kept(messages: &[Message], first: usize) -> Vec<Message> {
    let sys = leading_system(messages);
    messages[..sys].iter().chain(&messages[first.max(sys)..]).cloned().collect()
}

/// The sampler pipeline for the next token (see [`Engine::pipeline`]).
#[derive(Debug, Clone, Serialize)]
pub struct Pipeline {
    /// The most probable tokens, in order; each stage's `probs` follow it.
    pub tokens: Vec<Candidate>,
    /// softmax → temperature → top-k → top-p → min-p.
    pub stages: Vec<crate::sampling::Stage>,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model emitted an end-of-sequence or end-of-turn token.
    Eos,
    /// `max_tokens` were generated.
    MaxTokens,
    /// A stop string appeared.
    StopString,
    /// The context window is full.
    ContextFull,
    /// The answer's last tokens were one stretch repeated over and over ([`repeating`]).
    Repeating,
}

/// One generated token.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// The token picked.
    pub token: u32,
    /// Its probability in the distribution it was drawn from (0 for a forced token outside it):
    /// the API's logprobs.
    pub prob: f32,
    /// The token's own text (may be part of a character, or a special token's name).
    pub piece: String,
    /// New text since the last step: whole characters only, and nothing of a stop string.
    pub text: String,
    /// The most probable candidates of the distribution it was drawn from.
    pub top: Vec<Candidate>,
    /// Set on the last step.
    pub done: Option<StopReason>,
}

/// Timing of the current or last generation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Prompt tokens run through the model (the reused ones are not).
    pub prefill_tokens: usize,
    /// Seconds of the first step: prefill and the first token.
    pub prefill_s: f64,
    /// Tokens decoded after the first.
    pub decode_tokens: usize,
    /// Seconds spent on them.
    pub decode_s: f64,
    /// Seconds spent computing structured output's token masks (included in the steps' times).
    pub mask_s: f64,
}

impl Stats {
    /// Prompt tokens per second.
    pub fn prefill_tok_s(&self) -> f64 {
        if self.prefill_s > 0.0 {
            self.prefill_tokens as f64 / self.prefill_s
        } else {
            0.0
        }
    }
    /// Generated tokens per second, after the first.
    pub fn decode_tok_s(&self) -> f64 {
        if self.decode_s > 0.0 {
            self.decode_tokens as f64 / self.decode_s
        } else {
            0.0
        }
    }
}

/// Logits for the next position, computed but not yet drawn from.
struct Peeked {
    logits: Vec<f32>,
    /// The recent tokens the repetition penalty looks at.
    recent: Vec<u32>,
}

struct Generation {
    /// Tokens to run through the model on the next step.
    pending: Vec<u32>,
    peeked: Option<Peeked>,
    produced: Vec<u32>,
    sampler: Sampler,
    decoder: StreamDecoder,
    options: GenerateOptions,
    /// The grammar's state, with a grammar.
    constrained: Option<Constrained>,
    /// Text decoded so far, and how much of it was handed out.
    text: String,
    emitted: usize,
    finished: bool,
}

/// Bytes a tensor of `n` elements stored as `ty` takes on `backend`: wgpu keeps every quantised
/// type in its blocks (`gpu::QFormat::held_bytes`), the CPU repacks them (`qmatrix::held_bytes`).
fn held_bytes(backend: Backend, ty: GgmlType, n: u64) -> u64 {
    match (backend, ty) {
        (_, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) => 4 * n,
        #[cfg(feature = "gpu")]
        (Backend::Wgpu, _) => QFormat::of(ty).map_or(4 * n, |f| f.held_bytes(n)),
        _ => crate::model::qmatrix::held_bytes(ty, n),
    }
}

/// A loaded model, ready to generate.
pub struct Engine {
    runner: BoxedRunner,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    /// The tokens whose keys and values fill the cache, in order.
    cached: Vec<u32>,
    generation: Option<Generation>,
    stats: Stats,
    info: ModelInfo,
    /// The vocabulary's trie for structured output, built the first time a grammar is asked for.
    grammars: Option<Grammars>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("info", &self.info).finish_non_exhaustive()
    }
}

/// The model card's facts that come from the file rather than the weights.
struct Card {
    name: Option<String>,
    format: &'static str,
    license: Option<String>,
    organization: Option<String>,
    languages: Vec<String>,
    datasets: Vec<String>,
    file_size: usize,
}

/// A model's files as loading reads them before the weights: what a GGUF file or a Hugging
/// Face folder gives, in one shape, so that one path turns either into an engine.
struct ModelFiles<'a> {
    config: DecoderConfig,
    tensors: Tensors<'a>,
    tokenizer: Tokenizer,
    template: Option<String>,
    card: Card,
}

impl<'a> ModelFiles<'a> {
    fn gguf(gguf: &'a Gguf<'a>, options: &LoadOptions) -> Result<Self> {
        let meta = &gguf.metadata;
        let config = DecoderConfig::from_gguf(meta)?;
        let tokenizer = match &options.tokenizer_json {
            Some(json) => Tokenizer::from_json(json, Some(meta))?,
            None => Tokenizer::from_gguf(meta)?,
        };
        let card = Card {
            name: meta.opt("general.name")?,
            format: "GGUF",
            license: meta.opt("general.license")?,
            organization: meta.opt("general.organization")?,
            languages: meta.opt("general.languages")?.unwrap_or_default(),
            datasets: datasets(meta)?,
            file_size: gguf.file_size(),
        };
        Ok(ModelFiles { tensors: Tensors::gguf(gguf, &config), config, tokenizer, template: meta.opt("tokenizer.chat_template")?, card })
    }

    fn hf(folder: &'a HfFolder, shards: &'a [Safetensors<'a>]) -> Result<Self> {
        let hf = folder.config()?;
        let config = DecoderConfig::from_hf(&hf)?;
        let card = Card {
            // transformers records where a model came from in `_name_or_path`.
            name: hf.opt::<String>("_name_or_path")?.filter(|n| !n.is_empty()),
            format: "safetensors",
            license: None,
            organization: None,
            languages: Vec::new(),
            datasets: Vec::new(),
            file_size: folder.size(),
        };
        Ok(ModelFiles { tensors: Tensors::hf(shards, &config)?, tokenizer: Tokenizer::from_hf(folder)?, template: folder.chat_template()?, config, card })
    }
}

/// Builds the decoder on `exec` and counts the memory its weights took on the device (`None`
/// where the allocator does not report), before the KV cache is allocated.
fn runner_on<E: Executor>(
    exec: E,
    tensors: Tensors<'_>,
    config: &DecoderConfig,
    capacity: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(BoxedRunner, Option<u64>)>
where
    Loaded<E>: crate::model::Runner + 'static,
{
    let before = exec.memory();
    let decoder = crate::model::weights::build(&exec, tensors, config, capacity, progress)?;
    let weights = exec.memory().zip(before).map(|(after, before)| after.bytes.saturating_sub(before.bytes));
    let cache = KvCache::new(&exec, &decoder.config, capacity);
    Ok((Box::new(Loaded { exec, decoder, cache }), weights))
}

impl Engine {
    /// Loads a GGUF model from its bytes onto `device`.
    pub fn load(bytes: &[u8], device: Device, options: LoadOptions) -> Result<Self> {
        Self::load_with_progress(bytes, device, options, &mut |_, _| {})
    }

    /// [`Engine::load`], calling `progress(done, total)` as each weight tensor reaches the device.
    pub fn load_with_progress(bytes: &[u8], device: Device, options: LoadOptions, progress: &mut dyn FnMut(usize, usize)) -> Result<Self> {
        let gguf = Gguf::parse(bytes)?;
        let files = ModelFiles::gguf(&gguf, &options)?;
        Self::load_files(files, device, options, progress)
    }

    /// Loads a GGUF model read from `source` (a file on disk, a browser `Blob`): its header
    /// first, then a tensor at a time, so that the file is never held whole beside the weights.
    pub fn load_source(source: Box<dyn ByteSource + '_>, device: Device, options: LoadOptions, progress: &mut dyn FnMut(usize, usize)) -> Result<Self> {
        let gguf = Gguf::read(source)?;
        let files = ModelFiles::gguf(&gguf, &options)?;
        Self::load_files(files, device, options, progress)
    }

    /// Loads a Hugging Face model folder (`config.json`, safetensors weights, `tokenizer.json`
    /// and the optional tokenizer and generation configs) onto `device`.
    pub fn load_hf(folder: &HfFolder, device: Device, options: LoadOptions, progress: &mut dyn FnMut(usize, usize)) -> Result<Self> {
        let shards: Vec<Safetensors> = folder.weights()?.into_iter().map(|(_, s)| s).collect();
        let files = ModelFiles::hf(folder, &shards)?;
        Self::load_files(files, device, options, progress)
    }

    /// The one path from a model's files to an engine: the size checks before anything is
    /// allocated, the tokenizer and template checks, the weights onto the device's executor,
    /// and the model card.
    fn load_files(files: ModelFiles<'_>, device: Device, options: LoadOptions, progress: &mut dyn FnMut(usize, usize)) -> Result<Self> {
        let backend = device.backend();
        let entries = &files.tensors.entries;
        let held: Vec<u64> = entries.iter().map(|e| held_bytes(backend, e.ty, e.shape.iter().product::<usize>() as u64)).collect();
        // While the weights are built, one stored tensor is read beside them.
        let largest_read = entries.iter().map(|e| e.ty.stored_bytes(e.shape.iter().product()) as u64).max();
        check_size(&held, largest_read.unwrap_or(0), &options)?;
        let tensor_types = count_types(entries.iter().map(|e| e.ty.name()));
        let max_context = options.max_context.clamp(1, files.config.context_length);
        let template = check_tokens_and_template(&files.tokenizer, &files.config, files.template)?;
        let (runner, gpu_weight_bytes) = match device {
            Device::Cpu => runner_on(CpuExecutor, files.tensors, &files.config, max_context, progress)?,
            #[cfg(feature = "gpu")]
            Device::Wgpu(d) => runner_on(GpuExecutor::new(d), files.tensors, &files.config, max_context, progress)?,
        };
        let config = runner.config().clone();
        let card = files.card;
        let info = ModelInfo {
            display_name: options.name.clone().or(card.name.clone()),
            name: card.name.or(options.name),
            architecture: config.arch.name().to_string(),
            format: card.format.into(),
            n_params: config.n_params(),
            weight_bytes: held.iter().sum(),
            gpu_weight_bytes,
            config,
            file_size: card.file_size,
            tensor_types,
            license: card.license,
            organization: card.organization,
            languages: card.languages,
            datasets: card.datasets,
            max_context,
            has_chat_template: template.is_some(),
            thinking: template.as_ref().is_some_and(ChatTemplate::thinks),
            backend,
        };
        Ok(Engine { runner, tokenizer: files.tokenizer, template, cached: Vec::new(), generation: None, stats: Stats::default(), info, grammars: None })
    }

    /// The model card.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Timing of the current or last generation.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Tokens whose keys and values are cached.
    pub fn cached_tokens(&self) -> &[u32] {
        &self.cached
    }

    /// The exact prompt text for a conversation, ready for the assistant's turn.
    ///
    /// Turns a reasoning model's thinking on or off (`enable_thinking` in its template; `None`:
    /// the template's default). Every later render, count and fit uses it.
    pub fn set_thinking(&mut self, on: Option<bool>) {
        if let Some(t) = &mut self.template {
            t.set_thinking(on);
        }
    }

    /// A base model has no chat template and was never taught turns: it continues text. Its
    /// "conversation" is completion mode: the turns' texts joined as one document (the system
    /// prompt left out, since nothing marks it as one), so that each answer continues the text so far.
    pub fn render_chat(&self, messages: &[Message]) -> Result<String> {
        self.render_chat_as(messages, true)
    }

    /// The conversation as the model reads it, with or without the assistant's turn opened after
    /// it: without, it is the conversation as it stands (what classroom mode shows while the draft
    /// is empty, since nothing would be sent).
    pub fn render_chat_as(&self, messages: &[Message], generation_prompt: bool) -> Result<String> {
        match &self.template {
            Some(t) => t.render(messages, generation_prompt),
            None => Ok(messages.iter().filter(|m| m.role != "system").map(|m| m.content.as_str()).collect()),
        }
    }

    /// Prompt tokens of a conversation, rendered for the assistant's turn.
    pub fn count_chat(&self, messages: &[Message]) -> Result<usize> {
        Ok(self.tokenizer.encode(&self.render_chat(messages)?)?.len())
    }

    /// Which messages of a conversation fit the context window with `reserve` tokens left for
    /// the answer (at most a quarter of the window is reserved). The leading system messages are
    /// always kept; the oldest turns after them are left out, and what is kept starts with a
    /// user message. The last message must fit, or this is `Error::ContextFull`.
    pub fn fit_chat(&self, messages: &[Message], reserve: usize) -> Result<ChatFit> {
        let limit = self.runner.capacity();
        let reserve = reserve.min(limit / 4);
        let sys = leading_system(messages);
        let count_from = |first: usize| self.count_chat(&kept(messages, first));
        let total_tokens = count_from(sys)?;
        let fits = |tokens: usize| tokens + reserve <= limit;
        if fits(total_tokens) || messages.len() == sys {
            return Ok(ChatFit { first: sys, dropped: 0, tokens: total_tokens, total_tokens, reserve, limit });
        }
        // Starts a kept part may have: user turns, and the last message whatever it is.
        let mut starts: Vec<usize> = (sys + 1..messages.len()).filter(|&i| messages[i].role == "user").collect();
        if starts.last() != Some(&(messages.len() - 1)) {
            starts.push(messages.len() - 1);
        }
        // Fewer messages never need more tokens, so the first start that fits is found by bisection.
        let (mut lo, mut hi) = (0, starts.len());
        let mut best: Option<(usize, usize)> = None;
        while lo < hi {
            let mid = (lo + hi) / 2;
            let tokens = count_from(starts[mid])?;
            if fits(tokens) {
                best = Some((starts[mid], tokens));
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        match best {
            Some((first, tokens)) => Ok(ChatFit { first, dropped: first - sys, tokens, total_tokens, reserve, limit }),
            None => Err(Error::ContextFull { needed: count_from(messages.len() - 1)? + reserve, limit }),
        }
    }

    /// Prepares a generation from a conversation fitted to the context window ([`Engine::fit_chat`]
    /// with `reserve` tokens for the answer): the oldest turns are left out if it outgrows it.
    pub fn start_chat(&mut self, messages: &[Message], reserve: usize, options: GenerateOptions) -> Result<(StartInfo, ChatFit)> {
        let fit = self.fit_chat(messages, reserve)?;
        let start = self.start(&Prompt::Chat(fit.kept(messages)), options)?;
        Ok((start, fit))
    }

    /// Prepares a generation. The next call to [`Engine::next`] runs the prompt.
    pub fn start(&mut self, prompt: &Prompt, options: GenerateOptions) -> Result<StartInfo> {
        self.generation = None;
        let sampler = Sampler::new(options.sampling.clone())?;
        let (prompt_text, mut prompt_ids) = match prompt {
            Prompt::Text(t) => (t.clone(), self.tokenizer.encode(t)?),
            Prompt::Chat(m) => {
                let text = self.render_chat(m)?;
                let ids = self.tokenizer.encode(&text)?;
                (text, ids)
            }
            Prompt::Ids(ids) => {
                let vocab = self.info.config.vocab_size as u32;
                if let Some(bad) = ids.iter().find(|&&t| t >= vocab) {
                    return Err(Error::Tokenizer(format!("token id {bad} is outside the vocabulary of {vocab}")));
                }
                (self.tokenizer.decode(ids)?, ids.clone())
            }
        };
        if prompt_ids.is_empty() {
            // A model needs at least one token to predict from.
            prompt_ids.extend(self.tokenizer.bos().or(self.tokenizer.eos()));
        }
        if prompt_ids.is_empty() {
            return Err(Error::Tokenizer("the prompt is empty and the model has no BOS token".into()));
        }
        let limit = self.runner.capacity();
        if prompt_ids.len() >= limit {
            return Err(Error::ContextFull { needed: prompt_ids.len() + 1, limit });
        }
        // Reuse the cached prefix; at least one token must run to give logits.
        let shared = self.cached.iter().zip(&prompt_ids).take_while(|(a, b)| a == b).count();
        let reused = shared.min(prompt_ids.len() - 1);
        self.runner.truncate(reused);
        self.cached.truncate(reused);
        self.stats = Stats::default();
        let constrained = match &options.grammar {
            Some(g) => {
                if self.grammars.is_none() {
                    self.grammars = Some(Grammars::new(&self.tokenizer, self.info.config.vocab_size)?);
                }
                Some(self.grammars.as_ref().expect("just built").start(g)?)
            }
            None => None,
        };
        let finished = options.max_tokens == 0;
        self.generation = Some(Generation {
            pending: prompt_ids[reused..].to_vec(),
            peeked: None,
            produced: Vec::new(),
            sampler,
            decoder: StreamDecoder::new(),
            options,
            constrained,
            text: String::new(),
            emitted: 0,
            finished,
        });
        Ok(StartInfo { prompt_text, prompt_ids, reused })
    }

    /// Generates one token. `Ok(None)` once the generation has ended.
    pub async fn next_async(&mut self) -> Result<Option<Step>> {
        if !self.ensure_peeked().await? {
            return Ok(None);
        }
        self.commit(None)
    }

    /// Runs the model for the next position, once, and keeps its logits: the one GPU→CPU
    /// readback of a step. `false` once the generation has ended.
    async fn ensure_peeked(&mut self) -> Result<bool> {
        let g = self.generation.as_mut().ok_or(Error::NotStarted)?;
        if g.finished {
            return Ok(false);
        }
        if g.peeked.is_some() {
            return Ok(true);
        }
        let t0 = now_s();
        let n = g.pending.len();
        let logits = match self.runner.forward(&g.pending).await {
            Ok(l) => l,
            Err(e) => {
                g.finished = true;
                return Err(e);
            }
        };
        self.cached.append(&mut g.pending);
        let mut logits = logits;
        if let Some(c) = g.constrained.as_mut() {
            // Inside the step's time: structured output's speed is what its user waits for.
            let t_mask = now_s();
            c.mask(&mut logits)?;
            self.stats.mask_s += now_s() - t_mask;
        }
        let dt = now_s() - t0;
        if g.produced.is_empty() {
            self.stats.prefill_tokens += n;
            self.stats.prefill_s += dt;
        } else {
            self.stats.decode_tokens += 1;
            self.stats.decode_s += dt;
        }
        let recent = self.cached[self.cached.len().saturating_sub(g.options.sampling.repeat_window)..].to_vec();
        g.peeked = Some(Peeked { logits, recent });
        Ok(true)
    }

    /// The candidates for the next token, from the distribution it will be drawn from, without
    /// drawing it (runs the model once if needed). `Ok(None)` once the generation has ended.
    pub async fn peek_async(&mut self) -> Result<Option<Vec<Candidate>>> {
        if !self.ensure_peeked().await? {
            return Ok(None);
        }
        let g = self.generation.as_ref().expect("peeked");
        let p = g.peeked.as_ref().expect("peeked");
        let d = crate::sampling::distribution(&p.logits, &p.recent, g.sampler.config());
        Ok(Some(self.candidates(&d.candidates, g.options.top_n)))
    }

    /// The sampler pipeline stage by stage for the next token, under `sampling` (the running
    /// generation's settings if `None`), from the logits already computed: nothing runs again.
    pub fn pipeline(&self, sampling: Option<&SamplingConfig>, top_n: usize) -> Result<Pipeline> {
        let g = self.generation.as_ref().ok_or(Error::NotStarted)?;
        let p = g.peeked.as_ref().ok_or_else(|| Error::Sampling { name: "pipeline", msg: "no next token is computed yet: peek first".into() })?;
        let cfg = sampling.unwrap_or(g.sampler.config());
        cfg.validate()?;
        let (ids, stages) = crate::sampling::stages(&p.logits, &p.recent, cfg, top_n);
        let tokens = ids.iter().map(|&t| Candidate { token: t, prob: 0.0, text: self.tokenizer.decode(&[t]).unwrap_or_default() }).collect();
        Ok(Pipeline { tokens, stages })
    }

    /// New sampler settings for the rest of the generation (the classroom's sliders).
    pub fn set_sampling(&mut self, sampling: SamplingConfig) -> Result<()> {
        let g = self.generation.as_mut().ok_or(Error::NotStarted)?;
        g.sampler.set_config(sampling.clone())?;
        g.options.sampling = sampling;
        Ok(())
    }

    fn candidates(&self, c: &[(u32, f32)], n: usize) -> Vec<Candidate> {
        c.iter().take(n).map(|&(t, p)| Candidate { token: t, prob: p, text: self.tokenizer.decode(&[t]).unwrap_or_default() }).collect()
    }

    /// Draws the next token from the peeked distribution, or takes `forced` instead (the
    /// classroom's "what if"). Call after [`Engine::peek_async`]; `Ok(None)` once ended.
    pub fn commit(&mut self, forced: Option<u32>) -> Result<Option<Step>> {
        let vocab = self.info.config.vocab_size as u32;
        let g = self.generation.as_mut().ok_or(Error::NotStarted)?;
        if g.finished {
            return Ok(None);
        }
        let p = g.peeked.take().ok_or_else(|| Error::Sampling { name: "commit", msg: "no next token is computed yet: peek first".into() })?;
        if let Some(t) = forced.filter(|&t| t >= vocab) {
            g.peeked = Some(p);
            return Err(Error::Sampling { name: "token", msg: format!("{t} is outside the vocabulary of {vocab}") });
        }
        let pick = g.sampler.pick(&p.logits, &p.recent);
        let token = forced.unwrap_or(pick.token);
        if let Some(c) = g.constrained.as_mut() {
            if let Err(e) = c.accept(token) {
                g.peeked = Some(p);
                return Err(e);
            }
        }
        g.produced.push(token);
        let top_n = g.options.top_n;
        let top = self.candidates(&pick.distribution.candidates, top_n);
        let prob = pick.distribution.candidates.iter().find(|c| c.0 == token).map_or(0.0, |c| c.1);
        let piece = self.tokenizer.decode(&[token]).unwrap_or_default();
        let g = self.generation.as_mut().expect("started");

        let mut done = None;
        if !g.options.ignore_eos && self.tokenizer.stop_ids().contains(&token) {
            done = Some(StopReason::Eos);
        } else {
            if let Some(delta) = g.decoder.step(&self.tokenizer, token)? {
                g.text.push_str(&delta);
            }
            g.pending.push(token);
            if g.produced.len() >= g.options.max_tokens {
                done = Some(StopReason::MaxTokens);
            } else if self.cached.len() + 1 >= self.runner.capacity() {
                done = Some(StopReason::ContextFull);
            } else if g.options.stop_repeats && !g.options.ignore_eos && repeating(&g.produced) {
                done = Some(StopReason::Repeating);
            }
        }
        if done.is_some() {
            let rest = g.decoder.flush(&self.tokenizer)?;
            g.text.push_str(&rest);
        }

        // Hand out new text, but never the start of what may become a stop string.
        let mut end = g.text.len();
        if let Some(at) = g.options.stop.iter().filter(|s| !s.is_empty()).filter_map(|s| g.text[g.emitted..].find(s.as_str()).map(|i| g.emitted + i)).min() {
            end = at;
            done = Some(StopReason::StopString);
        } else if done.is_none() {
            end -= held_back(&g.text[g.emitted..], &g.options.stop);
        }
        let text = g.text[g.emitted..end].to_string();
        g.emitted = end;
        if done.is_some() {
            g.text.truncate(end);
            g.finished = true;
        }
        Ok(Some(Step { token, prob, piece, text, top, done }))
    }

    /// Runs up to `max` tokens of the prompt, so that a long prompt can be stopped part way (the
    /// caller checks for a stop between calls). The last prompt token is left to `next_async`,
    /// which turns it into the first new token. Returns how many prompt tokens still wait before
    /// that last one; 0 means the prompt is done. What ran stays cached, even after a stop.
    pub async fn prefill_async(&mut self, max: usize) -> Result<usize> {
        let g = self.generation.as_mut().ok_or(Error::NotStarted)?;
        if g.finished || !g.produced.is_empty() {
            return Ok(0);
        }
        let run = max.max(1).min(g.pending.len().saturating_sub(1));
        if run > 0 {
            let t0 = now_s();
            let chunk: Vec<u32> = g.pending[..run].to_vec();
            // The logits are not needed; reading them back waits for the work to finish.
            if let Err(e) = self.runner.forward(&chunk).await {
                g.finished = true;
                return Err(e);
            }
            g.pending.drain(..run);
            self.cached.extend(chunk);
            self.stats.prefill_tokens += run;
            self.stats.prefill_s += now_s() - t0;
        }
        Ok(g.pending.len() - 1)
    }

    /// Runs one token through the model and forgets it: shaders are compiled and buffers
    /// allocated before the first real prompt, so that its timing is honest.
    pub async fn warm_up_async(&mut self) -> Result<()> {
        let token = self.tokenizer.bos().or(self.tokenizer.eos()).unwrap_or(0);
        self.logits_async(&[token]).await?;
        self.reset();
        Ok(())
    }

    /// Native, blocking form of [`Engine::next_async`].
    #[cfg(not(target_arch = "wasm32"))]
    #[allow(clippy::should_implement_trait)] // a fallible step that may block, not an iterator
    pub fn next(&mut self) -> Result<Option<Step>> {
        pollster::block_on(self.next_async())
    }

    /// The text generated so far (without stop strings).
    pub fn text(&self) -> &str {
        self.generation.as_ref().map_or("", |g| &g.text[..g.emitted])
    }

    /// Tokens generated so far.
    pub fn produced(&self) -> &[u32] {
        self.generation.as_ref().map_or(&[], |g| &g.produced)
    }

    /// Ends the current generation. The cache keeps what was computed, for the next turn.
    pub fn stop(&mut self) {
        if let Some(g) = self.generation.as_mut() {
            g.finished = true;
        }
    }

    /// Forgets everything cached: a new conversation.
    pub fn reset(&mut self) {
        self.generation = None;
        self.runner.reset();
        self.cached.clear();
        self.stats = Stats::default();
    }

    /// Runs a whole generation (native convenience for the CLI and tests).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn generate(&mut self, prompt: &Prompt, options: GenerateOptions, mut on_step: impl FnMut(&Step)) -> Result<StartInfo> {
        let start = self.start(prompt, options)?;
        while let Some(step) = self.next()? {
            on_step(&step);
        }
        Ok(start)
    }

    /// The last position's logits after `ids`, run from an empty cache (teacher-forced
    /// evaluation). Ends any generation; the cache then holds `ids`.
    pub async fn logits_async(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        self.reset();
        let logits = self.runner.forward(ids).await?;
        self.cached = ids.to_vec();
        Ok(logits)
    }

    /// Native, blocking form of [`Engine::logits_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn logits(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        pollster::block_on(self.logits_async(ids))
    }

    /// What the device's allocator holds (wgpu), for memory checks.
    pub fn device_memory(&self) -> Option<DeviceMemory> {
        self.runner.device_memory()
    }
}

/// The training data a file names: the older `general.datasets` list, or the newer numbered
/// `general.dataset.N.name` keys.
fn datasets(meta: &crate::gguf::Metadata) -> Result<Vec<String>> {
    let mut out: Vec<String> = meta.opt("general.datasets")?.unwrap_or_default();
    let n: usize = meta.opt("general.dataset.count")?.unwrap_or(0);
    for i in 0..n.min(256) {
        out.extend(meta.opt::<String>(&format!("general.dataset.{i}.name"))?);
    }
    Ok(out)
}

/// Checks that the tokenizer fits the embedding, and compiles and tries the chat template
/// (a looping or failing one fails the load, not the first message).
fn check_tokens_and_template(tokenizer: &Tokenizer, config: &DecoderConfig, template: Option<String>) -> Result<Option<ChatTemplate>> {
    if tokenizer.vocab_size() > config.vocab_size {
        return Err(Error::Tokenizer(format!("the tokenizer has {} tokens but the model only {} embeddings", tokenizer.vocab_size(), config.vocab_size)));
    }
    let template = template.map(|t| ChatTemplate::new(&t, &tokenizer.token_text(tokenizer.bos()), &tokenizer.token_text(tokenizer.eos()))).transpose()?;
    if let Some(t) = &template {
        t.check()?;
    }
    Ok(template)
}

/// How many tensors use each block format or dtype, in order of first use.
fn count_types<'a>(names: impl Iterator<Item = &'a str>) -> Vec<(String, usize)> {
    let mut types: Vec<(String, usize)> = Vec::new();
    for name in names {
        match types.iter_mut().find(|(n, _)| n == name) {
            Some((_, c)) => *c += 1,
            None => types.push((name.to_string(), 1)),
        }
    }
    types
}

/// Refuses a model whose weights (as the backend holds them) exceed the device's limits, before any of it
/// is allocated: running out of GPU memory part way kills a WebGPU device.
fn check_size(bytes: &[u64], reading: u64, options: &LoadOptions) -> Result<()> {
    let mb = |b: u64| b.div_ceil(1 << 20);
    if let (Some(limit), Some(&largest)) = (options.tensor_limit, bytes.iter().max()) {
        // The GPU executor splits a larger matrix into buffers of at most this many bytes.
        #[cfg(feature = "gpu")]
        let largest = largest.min(crate::model::wgpu::MAX_PART_BYTES as u64);
        if largest > limit {
            return Err(Error::TooLarge { needed_mb: mb(largest), limit_mb: mb(limit), what: "its largest GPU buffer" });
        }
    }
    let total: u64 = bytes.iter().sum::<u64>() + reading;
    if let Some(limit) = options.memory_limit {
        if total > limit {
            return Err(Error::TooLarge { needed_mb: mb(total), limit_mb: mb(limit), what: "this device's memory" });
        }
    }
    Ok(())
}

/// Bytes at the end of `text` that could be the start of a stop string.
fn held_back(text: &str, stops: &[String]) -> usize {
    stops.iter().map(|s| (1..s.len().min(text.len() + 1)).rev().find(|&k| s.is_char_boundary(k) && text.ends_with(&s[..k])).unwrap_or(0)).max().unwrap_or(0)
}

/// Checks a GGUF file from its first bytes alone, as they arrive: the header, the architecture
/// and shape, the tokenizer and the chat template, so that a download of a model Ember cannot
/// run stops after its first megabytes. `head` is the file's start, `file_len` its whole length.
/// A header longer than `head` is not judged (`Ok`): the load checks it again in full.
pub fn check_gguf_head(head: &[u8], file_len: usize) -> Result<()> {
    /// The file's first bytes, standing for the whole.
    struct Head<'h>(&'h [u8], usize);
    impl ByteSource for Head<'_> {
        fn len(&self) -> usize {
            self.1
        }
        fn read(&self, offset: usize, len: usize) -> Result<std::borrow::Cow<'_, [u8]>> {
            let end = (offset + len).min(self.0.len());
            let bytes = self.0.get(offset..end).filter(|b| !b.is_empty() || len == 0).ok_or_else(|| Error::Io(std::io::ErrorKind::UnexpectedEof.into()))?;
            Ok(std::borrow::Cow::Borrowed(bytes))
        }
    }
    let gguf = match Gguf::read(Box::new(Head(head, file_len.max(head.len())))) {
        Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
        other => other?,
    };
    let files = ModelFiles::gguf(&gguf, &LoadOptions::default())?;
    check_tokens_and_template(&files.tokenizer, &files.config, files.template)?;
    Ok(())
}

/// Loads a model from disk (native): a GGUF file, or a Hugging Face model folder.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_file(path: &std::path::Path, backend: Backend, options: LoadOptions) -> Result<Engine> {
    if path.is_dir() {
        let folder = HfFolder::read_dir(path)?;
        return Engine::load_hf(&folder, crate::backend::device(backend)?, options, &mut |_, _| {});
    }
    let source = crate::gguf::FileSource::open(path)?;
    Engine::load_source(Box::new(source), crate::backend::device(backend)?, options, &mut |_, _| {})
}
