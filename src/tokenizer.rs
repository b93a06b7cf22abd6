//! The tokenizer, built with HF `tokenizers` from GGUF metadata (or from a `tokenizer.json`),
//! and a streaming detokeniser that never emits half a UTF-8 character.

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, Model, SplitDelimiterBehavior, Tokenizer as HfTokenizer};

use crate::error::{Error, Result};
use crate::gguf::Metadata;

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_CONTROL: i128 = 3;
const TOKEN_TYPE_USER_DEFINED: i128 = 4;

/// Special tokens that end an assistant turn in the common chat formats, besides EOS.
const END_OF_TURN: &[&str] = &["<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|end|>", "<|endoftext|>", "<end_of_turn>", "</s>"];

/// Text ↔ token ids for one model.
#[derive(Clone)]
pub struct Tokenizer {
    inner: HfTokenizer,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    /// Tokens that end generation: EOS, EOT and the end-of-turn markers the vocabulary has.
    stop_ids: Vec<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer").field("vocab", &self.vocab_size()).field("bos", &self.bos).field("eos", &self.eos).finish()
    }
}

fn tk_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

impl Tokenizer {
    /// Builds the tokenizer that `tokenizer.ggml.*` describes: a byte-level BPE (`gpt2`
    /// model) with the pre-tokenizer `tokenizer.ggml.pre` names, or a SentencePiece vocabulary
    /// (`llama` model: a BPE whose merges the scores rank, with byte fallback), as transformers'
    /// GGUF loader builds each; control tokens as special tokens, user-defined ones as added
    /// tokens matched as written; the BOS/EOS ids and flags.
    pub fn from_gguf(meta: &Metadata) -> Result<Self> {
        let model: String = meta.req("tokenizer.ggml.model")?;
        let tokens: Vec<String> = meta.req("tokenizer.ggml.tokens")?;
        let types = token_types(meta, tokens.len())?;
        let (mut inner, sentencepiece) = match model.as_str() {
            "gpt2" => (byte_level_bpe(meta, &tokens)?, false),
            "llama" => (sentencepiece_bpe(meta, &tokens)?, true),
            other => {
                return Err(Error::Unsupported(format!(
                    "tokenizer model `{other}` (Ember reads byte-level BPE, `gpt2`, and SentencePiece, `llama`; give a tokenizer.json for others)"
                )))
            }
        };
        if let Some(types) = &types {
            let of_type = |want: i128| tokens.iter().zip(types).filter(move |(_, &t)| t == want).map(|(s, _)| s);
            let control: Vec<AddedToken> = of_type(TOKEN_TYPE_CONTROL).map(|s| AddedToken::from(s.clone(), true).normalized(false)).collect();
            inner.add_special_tokens(control).map_err(tk_err)?;
            // Only those the model's vocabulary spells as the file does (a Gemma file's runs of
            // spaces are respelled for its BPE, and stay there).
            let model = inner.get_model();
            let user: Vec<AddedToken> = of_type(TOKEN_TYPE_USER_DEFINED)
                .filter(|s| model.token_to_id(s).is_some())
                .map(|s| AddedToken::from(s.clone(), false).normalized(false))
                .collect();
            inner.add_tokens(user).map_err(tk_err)?;
        }

        let id = |key: &str| -> Result<Option<u32>> {
            match meta.opt::<u32>(key)? {
                Some(i) if (i as usize) >= tokens.len() => Err(Error::bad_key(key, format!("token id {i} is past the vocabulary"))),
                v => Ok(v),
            }
        };
        let bos = id("tokenizer.ggml.bos_token_id")?;
        let eos = id("tokenizer.ggml.eos_token_id")?;
        let eot = id("tokenizer.ggml.eot_token_id")?;
        // llama.cpp adds BOS to a SentencePiece vocabulary whose file does not say otherwise.
        let add_bos = meta.opt("tokenizer.ggml.add_bos_token")?.unwrap_or(sentencepiece) && bos.is_some();
        Ok(Self::assemble(inner, bos, eos, add_bos, eot))
    }

    /// Loads a Hugging Face `tokenizer.json`. BOS/EOS come from the GGUF metadata when given.
    pub fn from_json(json: &[u8], meta: Option<&Metadata>) -> Result<Self> {
        let inner = HfTokenizer::from_bytes(json).map_err(tk_err)?;
        let get = |k: &str| meta.map(|m| m.opt::<u32>(k)).transpose().map(Option::flatten);
        let bos = get("tokenizer.ggml.bos_token_id")?;
        let eos = get("tokenizer.ggml.eos_token_id")?;
        let eot = get("tokenizer.ggml.eot_token_id")?;
        let add_bos = meta.map(|m| m.opt::<bool>("tokenizer.ggml.add_bos_token")).transpose()?.flatten().unwrap_or(false);
        Ok(Self::assemble(inner, bos, eos, add_bos && bos.is_some(), eot))
    }

    /// Loads a Hugging Face model folder's `tokenizer.json`, with the special tokens its
    /// `tokenizer_config.json` and `generation_config.json` name.
    pub fn from_hf(folder: &crate::hf::HfFolder) -> Result<Self> {
        let inner = HfTokenizer::from_bytes(folder.tokenizer_json()?).map_err(|e| Error::Tokenizer(format!("tokenizer.json: {e}")))?;
        let sp = folder.specials(|t| inner.token_to_id(t))?;
        let mut tok = Self::assemble(inner, sp.bos, sp.eos, sp.add_bos, None);
        tok.stop_ids.extend(sp.stops);
        tok.stop_ids.sort_unstable();
        tok.stop_ids.dedup();
        Ok(tok)
    }

    fn assemble(inner: HfTokenizer, bos: Option<u32>, eos: Option<u32>, add_bos: bool, eot: Option<u32>) -> Self {
        let mut stop_ids: Vec<u32> = eos.into_iter().chain(eot).collect();
        stop_ids.extend(END_OF_TURN.iter().filter_map(|t| inner.token_to_id(t)));
        stop_ids.sort_unstable();
        stop_ids.dedup();
        Tokenizer { inner, bos, eos, add_bos, stop_ids }
    }

    /// Encodes raw text. Special tokens written in the text (`<|im_start|>`) become the
    /// special token; BOS is prepended only when the model's metadata asks for it, and not
    /// where the text already starts with it (a chat template that writes `bos_token`, as
    /// Gemma's and Llama 3's do, while their files also ask for BOS: never two).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(tk_err)?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if self.add_bos && enc.get_ids().first() != self.bos.as_ref() {
            ids.extend(self.bos);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Decodes ids to text, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(tk_err)
    }

    /// The token's own string in the vocabulary (e.g. `Ġthe`).
    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The tokenizer as Hugging Face `tokenizer.json` text.
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(false).map_err(tk_err)
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// End-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Tokens that end generation.
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// The text of a token by id, for the chat template's `bos_token`/`eos_token`.
    pub fn token_text(&self, id: Option<u32>) -> String {
        id.and_then(|i| self.inner.id_to_token(i)).unwrap_or_default()
    }
}

/// `tokenizer.ggml.token_type`, one per token, where the file has it.
fn token_types(meta: &Metadata, n: usize) -> Result<Option<Vec<i128>>> {
    let types: Option<Vec<i128>> = match meta.get("tokenizer.ggml.token_type") {
        None => None,
        Some(crate::gguf::Value::Array(a)) => {
            Some(a.iter().map(|v| v.as_i128().ok_or_else(|| Error::bad_key("tokenizer.ggml.token_type", "expected integers"))).collect::<Result<_>>()?)
        }
        Some(_) => return Err(Error::bad_key("tokenizer.ggml.token_type", "expected an array")),
    };
    if let Some(t) = types.as_ref().filter(|t| t.len() != n) {
        return Err(Error::bad_key("tokenizer.ggml.token_type", format!("has {} entries for {n} tokens", t.len())));
    }
    Ok(types)
}

/// Llama 3's split (llama.cpp's `llama-bpe`; transformers' and the Llama 3 tokenizer.json's regex).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's: Llama 3's with single digits.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GPT-2's byte → character table, which byte-level vocabularies are written in: printable
/// bytes stand for themselves, the others for characters from U+0100 on, in byte order.
pub fn byte_level_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 0x100u32;
    for (b, slot) in table.iter_mut().enumerate() {
        let c = b as u8 as char;
        *slot = if matches!(c, '!'..='~' | '\u{A1}'..='\u{AC}' | '\u{AE}'..='\u{FF}') {
            c
        } else {
            next += 1;
            char::from_u32(next - 1).unwrap_or('\0')
        };
    }
    table
}

/// A byte-level BPE from the file's tokens and merges, with the pre-tokenizer
/// `tokenizer.ggml.pre` names (llama.cpp's names for its regexes, llama-vocab.cpp).
fn byte_level_bpe(meta: &Metadata, tokens: &[String]) -> Result<HfTokenizer> {
    let merges: Vec<String> = meta.req("tokenizer.ggml.merges")?;
    let mut vocab = tokenizers::models::bpe::Vocab::default();
    vocab.reserve(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        if vocab.insert(t.clone(), i as u32).is_some() {
            return Err(Error::Tokenizer(format!("the vocabulary lists `{t}` twice")));
        }
    }
    let merges = merges
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let (a, b) = m.split_once(' ').ok_or_else(|| Error::Tokenizer(format!("merge {i} `{m}` is not two tokens")))?;
            if !vocab.contains_key(a) || !vocab.contains_key(b) || !vocab.contains_key(&format!("{a}{b}")) {
                return Err(Error::Tokenizer(format!("merge {i} `{m}` uses tokens that are not in the vocabulary")));
            }
            Ok((a.to_string(), b.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;

    let pre: String = meta.opt("tokenizer.ggml.pre")?.unwrap_or_else(|| "default".into());
    let byte_level = |regex| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, regex));
    let split = |re: &str| -> Result<PreTokenizerWrapper> {
        Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Split(Split::new(SplitPattern::Regex(re.into()), SplitDelimiterBehavior::Isolated, false).map_err(tk_err)?),
            byte_level(false),
        ])))
    };
    // (pre-tokenizer, NFC first, whole pre-tokens in the vocabulary skip the merges)
    let (pre_tokenizer, nfc, ignore_merges) = match pre.as_str() {
        // GPT-2's own split.
        "default" | "gpt2" | "gpt-2" => (byte_level(true), false, false),
        // Each digit alone, then GPT-2's split (SmolLM, StarCoder).
        "smollm" | "starcoder" | "refact" => {
            (PreTokenizerWrapper::Sequence(Sequence::new(vec![PreTokenizerWrapper::Digits(Digits::new(true)), byte_level(true)])), false, false)
        }
        // Llama 3 (its tokenizer.json sets `ignore_merges`; llama.cpp does the same).
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" => (split(LLAMA3_SPLIT)?, false, true),
        "dbrx" | "smaug-bpe" => (split(LLAMA3_SPLIT)?, false, false),
        // Qwen2, Qwen2.5, Qwen3 (their tokenizer.json normalises to NFC first).
        "qwen2" | "deepseek-r1-qwen" | "megrez" => (split(QWEN2_SPLIT)?, true, false),
        other => {
            return Err(Error::Unsupported(format!(
                "pre-tokenizer `{other}` (supported: default, gpt2, smollm, starcoder, llama-bpe, qwen2); give a tokenizer.json instead"
            )))
        }
    };
    let bpe = BPE::builder().vocab_and_merges(vocab, merges).ignore_merges(ignore_merges).build().map_err(tk_err)?;
    let mut inner = HfTokenizer::new(bpe);
    if nfc {
        inner.with_normalizer(Some(NormalizerWrapper::NFC(NFC))).map_err(tk_err)?;
    }
    inner.with_pre_tokenizer(Some(pre_tokenizer));
    inner.with_decoder(Some(ByteLevelDecoder::default()));
    Ok(inner)
}

/// A SentencePiece vocabulary (`tokenizer.ggml.model = llama`) as the BPE it is: the merges
/// are every split of a token into two tokens, ranked by the token's score (Gemma: by its
/// place in the vocabulary, since its scores do not follow the merge order), bytes outside the
/// vocabulary fall back to `<0xNN>` tokens. transformers' GGUF loader builds the same
/// (`sentencepiece_tokenizer`, `gemma_tokenizer`, `generate_merges`), and the golden tests
/// compare against it; llama.cpp merges by the same scores.
fn sentencepiece_bpe(meta: &Metadata, tokens: &[String]) -> Result<HfTokenizer> {
    let arch: String = meta.opt("general.architecture")?.unwrap_or_default();
    let gemma = matches!(arch.as_str(), "gemma" | "gemma2" | "gemma3");
    let n = tokens.len();
    let (tokens, ranks): (Vec<String>, Vec<f32>) = if gemma {
        // Gemma files write a run of spaces with spaces, where its BPE spells it with U+2581.
        let spelled = tokens.iter().map(|t| if t.contains(' ') && t.trim().is_empty() { "\u{2581}".repeat(t.chars().count()) } else { t.clone() });
        (spelled.collect(), (0..n).map(|i| -(i as f32)).collect())
    } else {
        let scores: Vec<f32> = meta.req("tokenizer.ggml.scores")?;
        if scores.len() != n {
            return Err(Error::bad_key("tokenizer.ggml.scores", format!("has {} entries for {n} tokens", scores.len())));
        }
        (tokens.to_vec(), scores)
    };
    // Deriving the merges tries every split of every token: bounded, so that a hostile file's
    // huge tokens cannot stall the page (Gemma's 262k tokens make about 1.6 million splits).
    let splits: usize = tokens.iter().map(|t| t.chars().count().saturating_sub(1)).sum();
    if splits > MAX_SPLITS {
        return Err(Error::Tokenizer(format!(
            "the vocabulary's tokens have {splits} ways to split in two, more than the {MAX_SPLITS} Ember derives merges from"
        )));
    }
    // As a Python dict does: a token spelled twice keeps its last id.
    let vocab: tokenizers::models::bpe::Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let merges = merges_from_ranks(&tokens, &ranks, &vocab);
    let mut bpe = BPE::builder().vocab_and_merges(vocab.clone(), merges).fuse_unk(true).byte_fallback(true);
    if gemma && vocab.contains_key("<unk>") {
        bpe = bpe.unk_token("<unk>".into());
    }
    let mut inner = HfTokenizer::new(bpe.build().map_err(tk_err)?);
    let space = || Replace::new(" ", "\u{2581}").map_err(tk_err);
    let mut decoders = vec![
        DecoderWrapper::Replace(Replace::new("\u{2581}", " ").map_err(tk_err)?),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ];
    if gemma {
        // GemmaTokenizer: spaces become U+2581, no prefix space.
        inner.with_normalizer(Some(NormalizerWrapper::Replace(space()?))).map_err(tk_err)?;
        inner.with_pre_tokenizer(Some(PreTokenizerWrapper::Split(
            Split::new(SplitPattern::String(" ".into()), SplitDelimiterBehavior::MergedWithPrevious, false).map_err(tk_err)?,
        )));
    } else {
        // LlamaTokenizer: a prefix space at the start of the text (not after a special token),
        // unless the file says not to, taken off again when decoding.
        let prefix = meta.opt::<bool>("tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
        let scheme = if prefix { PrependScheme::First } else { PrependScheme::Never };
        inner.with_pre_tokenizer(Some(PreTokenizerWrapper::Metaspace(Metaspace::new('\u{2581}', scheme, false))));
        if prefix {
            decoders.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
        }
    }
    inner.with_decoder(Some(DecoderWrapper::Sequence(tokenizers::decoders::sequence::Sequence::new(decoders))));
    Ok(inner)
}

/// The most splits of tokens into two that a SentencePiece vocabulary's merges are derived from.
const MAX_SPLITS: usize = 8_000_000;

/// transformers' `generate_merges`: every split of every token into two tokens, the splits of one
/// token in the order of their pieces' ids, then all of them by rank, best first (ties: the
/// longer left piece, then the longer right one, then the order so far).
fn merges_from_ranks(tokens: &[String], ranks: &[f32], vocab: &tokenizers::models::bpe::Vocab) -> Vec<(String, String)> {
    let mut merges: Vec<(String, String, f32, usize, usize)> = Vec::new();
    // A token spelled twice is one key: its rank is the last one's, and it is split once.
    let mut rank_of: std::collections::HashMap<&str, f32> = std::collections::HashMap::with_capacity(tokens.len());
    let mut order: Vec<&str> = Vec::with_capacity(tokens.len());
    for (t, &r) in tokens.iter().zip(ranks) {
        if rank_of.insert(t.as_str(), r).is_none() {
            order.push(t.as_str());
        }
    }
    for t in order {
        let rank = rank_of[t];
        let mut local: Vec<(&str, &str)> =
            t.char_indices().skip(1).map(|(at, _)| t.split_at(at)).filter(|(l, r)| vocab.contains_key(*l) && vocab.contains_key(*r)).collect();
        local.sort_by_key(|(l, r)| (vocab[*l], vocab[*r]));
        merges.extend(local.into_iter().map(|(l, r)| (l.to_string(), r.to_string(), rank, l.chars().count(), r.chars().count())));
    }
    merges.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.3.cmp(&a.3)).then(b.4.cmp(&a.4)));
    merges.into_iter().map(|(l, r, ..)| (l, r)).collect()
}

/// Turns a stream of token ids into text deltas, holding back bytes until they complete a
/// UTF-8 character (HF's `DecodeStream` algorithm: decode a short window and diff).
#[derive(Debug, Clone, Default)]
pub struct StreamDecoder {
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
}

impl StreamDecoder {
    /// A decoder with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token; returns the new complete text, or `None` while a character is incomplete.
    pub fn step(&mut self, tok: &Tokenizer, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let before = tok.decode(&self.ids[self.prefix_offset..self.read_offset])?;
        let now = tok.decode(&self.ids[self.prefix_offset..])?;
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') && now.is_char_boundary(before.len()) {
            let delta = now[before.len()..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            Ok(Some(delta))
        } else {
            Ok(None)
        }
    }

    /// Whatever is held back (an incomplete character at the end of generation), as text.
    pub fn flush(&mut self, tok: &Tokenizer) -> Result<String> {
        let before = tok.decode(&self.ids[self.prefix_offset..self.read_offset])?;
        let now = tok.decode(&self.ids[self.prefix_offset..])?;
        self.prefix_offset = self.ids.len();
        self.read_offset = self.ids.len();
        Ok(if now.len() > before.len() && now.is_char_boundary(before.len()) { now[before.len()..].to_string() } else { String::new() })
    }
}
