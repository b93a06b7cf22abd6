//! The tokenizer, built with HF `tokenizers` from GGUF metadata (or from a `tokenizer.json`),
//! and a streaming detokeniser that never emits half a UTF-8 character.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, Tokenizer as HfTokenizer};

use crate::error::{Error, Result};
use crate::gguf::Metadata;

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_CONTROL: i128 = 3;
const TOKEN_TYPE_USER_DEFINED: i128 = 4;

/// Special tokens that end an assistant turn in the common chat formats, besides EOS.
const END_OF_TURN: &[&str] = &["<|im_end|>", "<|eot_id|>", "<|end|>", "<|endoftext|>", "<end_of_turn>", "</s>"];

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
    /// model) with the pre-tokenizer `tokenizer.ggml.pre` names, control and user-defined
    /// tokens as added tokens, and the BOS/EOS ids and flags.
    pub fn from_gguf(meta: &Metadata) -> Result<Self> {
        let model: String = meta.req("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(Error::Unsupported(format!("tokenizer model `{model}` (Ember reads byte-level BPE, `gpt2`; give a tokenizer.json for others)")));
        }
        let tokens: Vec<String> = meta.req("tokenizer.ggml.tokens")?;
        let merges: Vec<String> = meta.req("tokenizer.ggml.merges")?;
        let types: Option<Vec<i128>> = match meta.get("tokenizer.ggml.token_type") {
            None => None,
            Some(crate::gguf::Value::Array(a)) => {
                Some(a.iter().map(|v| v.as_i128().ok_or_else(|| Error::bad_key("tokenizer.ggml.token_type", "expected integers"))).collect::<Result<_>>()?)
            }
            Some(_) => return Err(Error::bad_key("tokenizer.ggml.token_type", "expected an array")),
        };
        if let Some(t) = &types {
            if t.len() != tokens.len() {
                return Err(Error::bad_key("tokenizer.ggml.token_type", format!("has {} entries for {} tokens", t.len(), tokens.len())));
            }
        }
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
        let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(tk_err)?;

        let pre: String = meta.opt("tokenizer.ggml.pre")?.unwrap_or_else(|| "default".into());
        // llama.cpp's names for the pre-tokenizer regexes (llama-vocab.cpp).
        let byte_level = PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true));
        let pre_tokenizer = match pre.as_str() {
            // GPT-2's own split.
            "default" | "gpt2" | "gpt-2" => byte_level,
            // Each digit alone, then GPT-2's split (SmolLM, StarCoder).
            "smollm" | "starcoder" | "refact" => PreTokenizerWrapper::Sequence(Sequence::new(vec![PreTokenizerWrapper::Digits(Digits::new(true)), byte_level])),
            other => {
                return Err(Error::Unsupported(format!("pre-tokenizer `{other}` (supported: default, gpt2, smollm, starcoder); give a tokenizer.json instead")))
            }
        };
        let mut inner = HfTokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        if let Some(types) = &types {
            let added = |want: i128, special: bool| {
                tokens
                    .iter()
                    .zip(types)
                    .filter(move |(_, &t)| t == want)
                    .map(move |(s, _)| AddedToken::from(s.clone(), special).normalized(false))
                    .collect::<Vec<_>>()
            };
            inner.add_special_tokens(added(TOKEN_TYPE_CONTROL, true)).map_err(tk_err)?;
            inner.add_tokens(added(TOKEN_TYPE_USER_DEFINED, false)).map_err(tk_err)?;
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
        let add_bos = meta.opt("tokenizer.ggml.add_bos_token")?.unwrap_or(false) && bos.is_some();
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
    /// special token; BOS is prepended only when the model's metadata asks for it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(tk_err)?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if self.add_bos {
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
