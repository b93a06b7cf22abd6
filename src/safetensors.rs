//! Hugging Face safetensors files and the `config.json` beside them: the readers, validated as
//! strictly as the GGUF one (`model::weights` builds models from them, `hf` reads the folder).
//! A safetensors file is an 8-byte little-endian header length, a JSON
//! header `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {..}}`, then the
//! data, which the tensors must cover exactly, in order, without holes or overlaps. The header
//! is read first and each tensor when asked for (from a [`ByteSource`]), so that a browser can
//! load a file of gigabytes a tensor at a time.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::gguf::ByteSource;

/// The largest header a file may have: the `safetensors` package's own limit.
const MAX_HEADER: usize = 100 << 20;

/// Element types Ember reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// IEEE float32.
    F32,
    /// IEEE float16.
    F16,
    /// bfloat16: the top half of a float32.
    BF16,
}

impl Dtype {
    fn parse(name: &str, tensor: &str) -> Result<Self> {
        Ok(match name {
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            other => return Err(Error::tensor(tensor, format!("has dtype {other} (Ember reads F32, F16 and BF16)"))),
        })
    }
    /// Bytes per element.
    pub fn size(self) -> usize {
        self.ggml().type_size()
    }
    /// The same element type in GGML's terms.
    pub fn ggml(self) -> crate::gguf::quant::GgmlType {
        use crate::gguf::quant::GgmlType;
        match self {
            Dtype::F32 => GgmlType::F32,
            Dtype::F16 => GgmlType::F16,
            Dtype::BF16 => GgmlType::BF16,
        }
    }
}

/// One tensor's header entry, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Its name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Row-major shape (safetensors stores it as numpy does).
    pub shape: Vec<usize>,
    /// Byte range in the data section.
    pub begin: usize,
    /// End of that range.
    pub end: usize,
}

/// A parsed safetensors file: its header, and the source its tensors are read from.
pub struct Safetensors<'a> {
    /// Tensors in data order.
    pub tensors: Vec<TensorInfo>,
    /// `__metadata__`: free-form strings.
    pub metadata: BTreeMap<String, String>,
    source: Box<dyn ByteSource + 'a>,
    /// Where the data section starts in the file.
    data_at: usize,
}

impl std::fmt::Debug for Safetensors<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Safetensors").field("tensors", &self.tensors.len()).field("metadata", &self.metadata).finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Format(format!("invalid safetensors file: {}", msg.into()))
}

impl<'a> Safetensors<'a> {
    /// Parses and validates the header of a file in memory.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        Self::read(Box::new(bytes))
    }

    /// Parses and validates the header, reading only it from `source` (the tensors are read
    /// when asked for).
    pub fn read(source: Box<dyn ByteSource + 'a>) -> Result<Self> {
        let file_len = source.len();
        if file_len < 8 {
            return Err(bad("shorter than its 8-byte header length"));
        }
        let n = u64::from_le_bytes(source.read(0, 8)?.as_ref().try_into().expect("8 bytes"));
        let n = usize::try_from(n).ok().filter(|&n| n <= MAX_HEADER && n <= file_len - 8).ok_or_else(|| {
            bad(format!("its header claims {n} bytes, but the file holds {} after the length (and at most {MAX_HEADER} are allowed)", file_len - 8))
        })?;
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&source.read(8, n)?).map_err(|e| bad(format!("its header is not a JSON object: {e}")))?;
        let data_len = file_len - 8 - n;
        let mut metadata = BTreeMap::new();
        let mut tensors = Vec::with_capacity(header.len());
        for (name, value) in header {
            if name == "__metadata__" {
                metadata = serde_json::from_value(value).map_err(|_| bad("`__metadata__` must map strings to strings"))?;
                continue;
            }
            let raw: RawEntry = serde_json::from_value(value).map_err(|e| Error::tensor(&name, format!("has a malformed header entry: {e}")))?;
            let dtype = Dtype::parse(&raw.dtype, &name)?;
            let shape: Vec<usize> =
                raw.shape.iter().map(|&d| usize::try_from(d).map_err(|_| Error::tensor(&name, format!("has an invalid dim {d}")))).collect::<Result<_>>()?;
            let bytes_needed =
                shape.iter().try_fold(dtype.size(), |a, &d| a.checked_mul(d)).ok_or_else(|| Error::tensor(&name, format!("shape {shape:?} overflows")))?;
            let [begin, end] = raw.data_offsets;
            let (begin, end) = (usize::try_from(begin).unwrap_or(usize::MAX), usize::try_from(end).unwrap_or(usize::MAX));
            if begin > end || end > data_len {
                return Err(Error::tensor(&name, format!("its data [{begin}, {end}) lies outside the {data_len} bytes of data")));
            }
            if end - begin != bytes_needed {
                return Err(Error::tensor(&name, format!("holds {} bytes, but shape {shape:?} of {} needs {bytes_needed}", end - begin, raw.dtype)));
            }
            tensors.push(TensorInfo { name, dtype, shape, begin, end });
        }
        // The data must be covered exactly: in order, no holes, no overlaps.
        tensors.sort_by_key(|t| (t.begin, t.end));
        let mut at = 0;
        for t in &tensors {
            if t.begin != at {
                let what = if t.begin < at { "overlaps the tensor before it" } else { "leaves a hole before it in the data" };
                return Err(Error::tensor(&t.name, what));
            }
            at = t.end;
        }
        if at != data_len {
            return Err(bad(format!("{} bytes of data after the last tensor", data_len - at)));
        }
        Ok(Safetensors { tensors, metadata, source, data_at: 8 + n })
    }

    /// The file's length in bytes.
    pub fn file_size(&self) -> usize {
        self.source.len()
    }

    /// A tensor's header entry by name.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// A tensor's stored bytes (read from the source now) and their element type, in GGML's terms.
    pub fn raw(&self, name: &str) -> Result<(crate::gguf::quant::GgmlType, Cow<'_, [u8]>)> {
        let t = self.info(name).ok_or_else(|| Error::tensor(name, "is missing from the file"))?;
        Ok((t.dtype.ggml(), self.source.read(self.data_at + t.begin, t.end - t.begin)?))
    }

    /// A tensor's values as f32 (row-major).
    pub fn to_f32(&self, name: &str) -> Result<Vec<f32>> {
        let (ty, bytes) = self.raw(name)?;
        crate::gguf::quant::dequantize(ty, &bytes, bytes.len() / ty.type_size())
    }
}

/// A Hugging Face `config.json`, read through one helper that names a missing or mistyped key.
#[derive(Debug, Clone)]
pub struct HfConfig {
    json: serde_json::Map<String, serde_json::Value>,
}

impl HfConfig {
    /// Parses `config.json`.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let json = serde_json::from_slice(bytes).map_err(|e| Error::Format(format!("config.json is not a JSON object: {e}")))?;
        Ok(HfConfig { json })
    }

    /// `model_type`: `llama`, `qwen2`, `gpt2`, …
    pub fn model_type(&self) -> Result<String> {
        self.req("model_type")
    }

    /// A required key.
    pub fn req<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T> {
        self.opt(key)?.ok_or_else(|| Error::MissingKey(format!("{key} (config.json)")))
    }

    /// An optional key: absent or null is `None`, present with the wrong type an error.
    pub fn opt<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.json.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => T::deserialize(v).map(Some).map_err(|e| Error::bad_key(&format!("{key} (config.json)"), e.to_string())),
        }
    }
}
