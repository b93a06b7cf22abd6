//! A Hugging Face model folder: `config.json`, the weights (`model.safetensors`, or shards
//! `model-0000x-of-0000y.safetensors` listed by `model.safetensors.index.json`),
//! `tokenizer.json`, `tokenizer_config.json` (special tokens, often the chat template),
//! `chat_template.jinja` (where newer `transformers` put the template) and
//! `generation_config.json` (the ids that end a generation). Natively it is read from a directory;
//! in the browser the page hands over the picked or downloaded files by name.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::gguf::ByteSource;
use crate::safetensors::{HfConfig, Safetensors};

/// The one-file weights.
pub const SINGLE: &str = "model.safetensors";
/// The index of sharded weights.
pub const INDEX: &str = "model.safetensors.index.json";
/// The files of a folder besides the weights, required first.
pub const REQUIRED: &[&str] = &["config.json", "tokenizer.json"];
/// Optional files besides the weights.
pub const OPTIONAL: &[&str] = &["tokenizer_config.json", "generation_config.json", "chat_template.jinja"];

/// A model folder's files, by file name (no directories).
#[derive(Default)]
pub struct HfFolder {
    files: BTreeMap<String, Vec<u8>>,
    /// Weight files read a tensor at a time rather than held (a browser's `Blob`s).
    sources: BTreeMap<String, Box<dyn ByteSource>>,
}

/// The special tokens a folder names, as ids.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Specials {
    /// Beginning of sequence.
    pub bos: Option<u32>,
    /// End of sequence.
    pub eos: Option<u32>,
    /// Whether encoding prepends BOS (`add_bos_token`).
    pub add_bos: bool,
    /// Every id that ends a generation (`generation_config.json`'s `eos_token_id`, one or a list).
    pub stops: Vec<u32>,
}

fn json(name: &str, bytes: &[u8]) -> Result<serde_json::Map<String, Value>> {
    serde_json::from_slice(bytes).map_err(|e| Error::Format(format!("{name} is not a JSON object: {e}")))
}

impl std::fmt::Debug for HfFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfFolder").field("files", &self.names().collect::<Vec<_>>()).finish()
    }
}

impl HfFolder {
    /// A folder from `(file name, bytes)` pairs. Paths are cut to their last component, so that
    /// a browser's folder pick (`repo/config.json`) gives the same names.
    pub fn new(files: impl IntoIterator<Item = (String, Vec<u8>)>) -> Self {
        let files = files.into_iter().map(|(name, bytes)| (name.rsplit(['/', '\\']).next().unwrap_or_default().to_string(), bytes)).collect();
        HfFolder { files, sources: BTreeMap::new() }
    }

    /// Adds a file read from `source` when its tensors are taken, rather than held.
    pub fn with_source(mut self, name: &str, source: Box<dyn ByteSource>) -> Self {
        self.sources.insert(name.rsplit(['/', '\\']).next().unwrap_or_default().to_string(), source);
        self
    }

    /// A weight file as a source: one held, or one read as it is needed.
    fn source(&self, name: &str) -> Result<Box<dyn ByteSource + '_>> {
        match (self.sources.get(name), self.files.get(name)) {
            (Some(s), _) => Ok(Box::new(&**s)),
            (None, Some(bytes)) => Ok(Box::new(bytes.as_slice())),
            (None, None) => Err(Error::Format(format!("the model folder has no {name}"))),
        }
    }

    /// Reads the files a model folder may have from `dir` (native).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_dir(dir: &std::path::Path) -> Result<Self> {
        let io = |e: std::io::Error, p: &std::path::Path| Error::Io(std::io::Error::new(e.kind(), format!("{}: {e}", p.display())));
        let mut files = Vec::new();
        let mut want: Vec<String> = REQUIRED.iter().chain(OPTIONAL).chain([&SINGLE, &INDEX]).map(|s| s.to_string()).collect();
        let index_path = dir.join(INDEX);
        if index_path.exists() {
            let bytes = std::fs::read(&index_path).map_err(|e| io(e, &index_path))?;
            want.extend(shard_names(&bytes)?);
        }
        // Weights are read a tensor at a time as the model is built; the rest is read now.
        let mut weights = Vec::new();
        for name in want {
            let path = dir.join(&name);
            if name.ends_with(".safetensors") {
                if path.exists() {
                    weights.push((name, crate::gguf::FileSource::open(&path)?));
                }
                continue;
            }
            match std::fs::read(&path) {
                Ok(bytes) => files.push((name, bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e, &path)),
            }
        }
        Ok(weights.into_iter().fold(HfFolder::new(files), |folder, (name, source)| folder.with_source(&name, Box::new(source))))
    }

    /// Whether these files look like a model folder (they have a `config.json`).
    pub fn is_folder(&self) -> bool {
        self.files.contains_key("config.json")
    }

    /// The file names held or read.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.keys().chain(self.sources.keys()).map(String::as_str)
    }

    /// Total size of the files.
    pub fn size(&self) -> usize {
        self.files.values().map(Vec::len).sum::<usize>() + self.sources.values().map(|s| s.len()).sum::<usize>()
    }

    /// A file's bytes, if present.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(Vec::as_slice)
    }

    fn req(&self, name: &str) -> Result<&[u8]> {
        self.get(name).ok_or_else(|| Error::Format(format!("the model folder has no {name}")))
    }

    /// `config.json`.
    pub fn config(&self) -> Result<HfConfig> {
        HfConfig::parse(self.req("config.json")?)
    }

    /// `tokenizer.json`.
    pub fn tokenizer_json(&self) -> Result<&[u8]> {
        self.req("tokenizer.json")
    }

    fn tokenizer_config(&self) -> Result<serde_json::Map<String, Value>> {
        self.get("tokenizer_config.json").map_or(Ok(Default::default()), |b| json("tokenizer_config.json", b))
    }

    /// The chat template: `chat_template.jinja`, else `tokenizer_config.json`'s `chat_template`
    /// (a string, or a list of named templates of which `default` is taken). `None`: a base model.
    pub fn chat_template(&self) -> Result<Option<String>> {
        if let Some(b) = self.get("chat_template.jinja") {
            let t = std::str::from_utf8(b).map_err(|_| Error::Template("chat_template.jinja is not UTF-8".into()))?;
            return Ok(Some(t.to_string()));
        }
        Ok(match self.tokenizer_config()?.get("chat_template") {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) => Some(t.clone()),
            Some(Value::Array(list)) => {
                list.iter().find(|t| t.get("name").and_then(Value::as_str) == Some("default")).and_then(|t| t.get("template")?.as_str().map(str::to_string))
            }
            Some(_) => return Err(Error::bad_key("chat_template (tokenizer_config.json)", "expected a string or a list")),
        })
    }

    /// The special tokens, resolved to ids with `token_id` (the tokenizer's lookup).
    pub fn specials(&self, token_id: impl Fn(&str) -> Option<u32>) -> Result<Specials> {
        let tc = self.tokenizer_config()?;
        // `bos_token` is a string or an AddedToken object with `content`.
        let named = |key: &str| -> Option<u32> {
            let v = tc.get(key)?;
            let text = v.as_str().or_else(|| v.get("content")?.as_str())?;
            token_id(text)
        };
        let gen = self.get("generation_config.json").map_or(Ok(Default::default()), |b| json("generation_config.json", b))?;
        let ids = |v: Option<&Value>| -> Vec<u32> {
            match v {
                Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()).into_iter().collect(),
                Some(Value::Array(a)) => a.iter().filter_map(|n| n.as_u64().and_then(|n| u32::try_from(n).ok())).collect(),
                _ => Vec::new(),
            }
        };
        let eos = named("eos_token").or_else(|| ids(gen.get("eos_token_id")).first().copied());
        let bos = named("bos_token").or_else(|| ids(gen.get("bos_token_id")).first().copied());
        let mut stops = ids(gen.get("eos_token_id"));
        stops.extend(eos);
        stops.sort_unstable();
        stops.dedup();
        let add_bos = tc.get("add_bos_token").and_then(Value::as_bool).unwrap_or(false) && bos.is_some();
        Ok(Specials { bos, eos, add_bos, stops })
    }

    /// The weight files, parsed: `model.safetensors`, or every shard the index names, in order.
    /// With an index, each tensor must be in the shard the index names for it, and every
    /// shard's tensors must be in the index.
    pub fn weights(&self) -> Result<Vec<(String, Safetensors<'_>)>> {
        let Some(index) = self.get(INDEX) else {
            if !self.files.contains_key(SINGLE) && !self.sources.contains_key(SINGLE) {
                return Err(Error::Format(format!("the model folder has neither {SINGLE} nor {INDEX}")));
            }
            return Ok(vec![(SINGLE.to_string(), Safetensors::read(self.source(SINGLE)?).map_err(|e| in_file(SINGLE, e))?)]);
        };
        let map = weight_map(index)?;
        let mut out = Vec::new();
        for shard in map.values().collect::<BTreeSet<_>>() {
            out.push((shard.clone(), Safetensors::read(self.source(shard)?).map_err(|e| in_file(shard, e))?));
        }
        for (tensor, shard) in &map {
            let (_, st) = out.iter().find(|(n, _)| n == shard).expect("every listed shard was parsed");
            if st.info(tensor).is_none() {
                return Err(Error::tensor(tensor, format!("is listed in {INDEX} as in {shard}, which does not hold it")));
            }
        }
        for (shard, st) in &out {
            if let Some(t) = st.tensors.iter().find(|t| map.get(&t.name) != Some(shard)) {
                return Err(Error::tensor(&t.name, format!("is in {shard} but {INDEX} does not list it there")));
            }
        }
        Ok(out)
    }
}

fn in_file(name: &str, e: Error) -> Error {
    match e {
        Error::Format(m) => Error::Format(format!("{name}: {m}")),
        other => other,
    }
}

/// `weight_map` of an index: tensor name → shard file name (a plain file name: no paths).
fn weight_map(index: &[u8]) -> Result<BTreeMap<String, String>> {
    let json = json(INDEX, index)?;
    let map = json.get("weight_map").and_then(Value::as_object).ok_or_else(|| Error::MissingKey(format!("weight_map ({INDEX})")))?;
    map.iter()
        .map(|(t, f)| match f.as_str() {
            Some(f) if f.ends_with(".safetensors") && !f.contains(['/', '\\']) && !f.starts_with('.') => Ok((t.clone(), f.to_string())),
            _ => Err(Error::bad_key(&format!("weight_map.{t} ({INDEX})"), "expected a .safetensors file name in the same folder")),
        })
        .collect()
}

/// The shard files an index names, each once, in order: what a loader must fetch.
pub fn shard_names(index: &[u8]) -> Result<Vec<String>> {
    Ok(weight_map(index)?.into_values().collect::<BTreeSet<_>>().into_iter().collect())
}
