//! Structured output: a generation held to a grammar (a JSON schema, any JSON object, a regex or
//! a Lark grammar) by masking, before each draw, every token that cannot continue it, so that the
//! text always parses. llguidance (the library llama.cpp and vLLM use) computes the masks from a
//! trie of the vocabulary's bytes; the trie is built once per model ([`Grammars`]), a matcher
//! once per generation ([`Constrained`]).

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::tokenizer::{byte_level_chars, Tokenizer};

/// What a generation's text must be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Grammar {
    /// Any JSON object.
    JsonObject,
    /// JSON valid against `schema` (JSON Schema).
    JsonSchema {
        /// The schema.
        schema: Value,
    },
    /// Text matching the regular expression `pattern` as a whole.
    Regex {
        /// The expression (Rust regex syntax).
        pattern: String,
    },
    /// Text of a Lark grammar (llguidance's dialect).
    Lark {
        /// The grammar.
        grammar: String,
    },
}

/// llguidance's error, its first line (the rest is a dump of the parser's state).
fn bad(msg: impl std::fmt::Display) -> Error {
    Error::Sampling { name: "grammar", msg: msg.to_string().lines().next().unwrap_or_default().to_string() }
}

/// The masks' factory for one model: its vocabulary's bytes in a trie.
pub struct Grammars {
    factory: ParserFactory,
    /// Tokens that end a generation (end-of-sequence, end-of-turn): allowed wherever the grammar
    /// allows its end.
    stop_ids: Vec<u32>,
}

impl Grammars {
    /// The trie of `tokenizer`'s vocabulary, for logits of `vocab_size` entries.
    pub fn new(tokenizer: &Tokenizer, vocab_size: usize) -> Result<Self> {
        let json: Value = serde_json::from_str(&tokenizer.to_json()?).map_err(|e| Error::Tokenizer(format!("the tokenizer as JSON: {e}")))?;
        let mut words = token_bytes(&json)?;
        words.resize(words.len().max(vocab_size), Vec::new());
        let eos = tokenizer.stop_ids().first().copied().or(tokenizer.eos()).ok_or_else(|| bad("the model names no end-of-sequence token"))?;
        let info = TokRxInfo::new(words.len() as u32, eos);
        let env = ApproximateTokEnv::new(TokTrie::from(&info, &words));
        let mut factory = ParserFactory::new_simple(&(std::sync::Arc::new(env) as llguidance::toktrie::TokEnv)).map_err(bad)?;
        factory.quiet();
        Ok(Grammars { factory, stop_ids: tokenizer.stop_ids().to_vec() })
    }

    /// A matcher of `grammar` at the start of an answer.
    pub fn start(&self, grammar: &Grammar) -> Result<Constrained> {
        let top = match grammar {
            Grammar::JsonObject => TopLevelGrammar::from_json_schema(compact(serde_json::json!({ "type": "object" }))),
            Grammar::JsonSchema { schema } => TopLevelGrammar::from_json_schema(compact(schema.clone())),
            Grammar::Regex { pattern } => TopLevelGrammar::from_regex(pattern),
            Grammar::Lark { grammar } => TopLevelGrammar::from_lark(grammar.clone()),
        };
        let matcher = Matcher::new(self.factory.create_parser(top));
        if let Some(e) = matcher.get_error() {
            return Err(bad(e));
        }
        Ok(Constrained { matcher, stop_ids: self.stop_ids.clone() })
    }
}

/// JSON without free whitespace between its tokens, unless the schema says otherwise
/// (llguidance's `x-guidance` options): a small model left free to indent can indent forever.
fn compact(mut schema: Value) -> Value {
    if let Some(o) = schema.as_object_mut() {
        o.entry("x-guidance").or_insert_with(|| serde_json::json!({ "whitespace_flexible": false }));
    }
    schema
}

/// One generation's grammar state.
pub struct Constrained {
    matcher: Matcher,
    stop_ids: Vec<u32>,
}

impl Constrained {
    /// Sets to −∞ the logits of every token the grammar does not allow next (an end token is
    /// allowed exactly where the grammar may end).
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<()> {
        // Once the grammar is complete, only an end token may follow.
        let allowed = self.matcher.compute_mask_or_eos().map_err(bad)?;
        let n = allowed.len();
        let may_end = self.stop_ids.iter().any(|&t| (t as usize) < n && allowed.is_allowed(t));
        for (i, l) in logits.iter_mut().enumerate() {
            let ok = if self.stop_ids.contains(&(i as u32)) { may_end } else { i < n && allowed.is_allowed(i as u32) };
            if !ok {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    /// Moves the grammar past `token` (an end token ends it).
    pub fn accept(&mut self, token: u32) -> Result<()> {
        if self.stop_ids.contains(&token) {
            return Ok(());
        }
        self.matcher.consume_token(token).map_err(bad)
    }
}

/// Each token's bytes, from a Hugging Face tokenizer.json: byte-level BPE (GPT-2's byte-to-char
/// map undone), or SentencePiece with byte fallback (`<0xNN>` tokens, `▁` for a space). Special
/// tokens get toktrie's marker byte first, so that no grammar matches their text. Never panics:
/// a token it cannot read has no bytes, and no grammar allows it.
fn token_bytes(json: &Value) -> Result<Vec<Vec<u8>>> {
    let decoders = match json["decoder"]["type"].as_str() {
        Some("Sequence") => json["decoder"]["decoders"].as_array().cloned().unwrap_or_default(),
        _ => vec![json["decoder"].clone()],
    };
    let byte_level = decoders.iter().any(|d| d["type"] == "ByteLevel");
    let byte_fallback = decoders.iter().any(|d| d["type"] == "ByteFallback");
    if !byte_level && !byte_fallback {
        return Err(bad("structured output needs a byte-level or byte-fallback tokenizer"));
    }
    let unbyte: std::collections::HashMap<char, u8> = byte_level_chars().iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
    let mut words: Vec<Vec<u8>> = Vec::new();
    let mut put = |id: usize, bytes: Vec<u8>| {
        if words.len() <= id {
            words.resize(id + 1, Vec::new());
        }
        words[id] = bytes;
    };
    let vocab = json["model"]["vocab"].as_object().ok_or_else(|| bad("the tokenizer has no vocabulary map"))?;
    for (name, id) in vocab {
        let Some(id) = id.as_u64().map(|i| i as usize) else { continue };
        let bytes = if byte_level {
            name.chars().map(|c| unbyte.get(&c).copied()).collect::<Option<Vec<u8>>>().unwrap_or_default()
        } else if let Some(b) = name.strip_prefix("<0x").and_then(|h| h.strip_suffix('>')).filter(|h| h.len() == 2).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            vec![b]
        } else {
            name.replace('▁', " ").into_bytes()
        };
        put(id, bytes);
    }
    for t in json["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(content)) = (t["id"].as_u64(), t["content"].as_str()) else { continue };
        let mut bytes = content.as_bytes().to_vec();
        if t["special"].as_bool().unwrap_or(false) {
            bytes.insert(0, TokTrie::SPECIAL_TOKEN_MARKER);
        }
        put(id as usize, bytes);
    }
    Ok(words)
}
