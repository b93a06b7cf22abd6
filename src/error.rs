//! The crate's one error type. It is converted to `JsError` only at the wasm boundary.

use thiserror::Error;

/// Everything that can go wrong in Ember, each with a message a user can act on.
#[derive(Debug, Error)]
pub enum Error {
    /// The model file is not a valid GGUF file, or is corrupt or hostile.
    #[error("invalid GGUF file: {0}")]
    Gguf(String),
    /// The file ends before what its header describes: a download or copy cut short. (The
    /// message names where, as `Gguf` would; the page needs only the kind.)
    #[error("invalid GGUF file: {0}")]
    Truncated(String),
    /// A tensor is stored in a GGML type Ember does not read (Q2_K, Q3_K, the IQ types, …).
    #[error("tensor `{name}`: type {ty} is not one Ember reads (it reads {supported})")]
    UnsupportedType {
        /// The tensor's name in the file.
        name: String,
        /// llama.cpp's name for the type, or its number where unnamed.
        ty: String,
        /// The types Ember reads, for the message.
        supported: String,
    },
    /// A safetensors file or a `config.json` is invalid (the message names which).
    #[error("{0}")]
    Format(String),
    /// A metadata key the model needs is absent.
    #[error("the model file lacks the metadata key `{0}`")]
    MissingKey(String),
    /// A metadata key is present but has the wrong type or an unusable value.
    #[error("metadata key `{key}`: {msg}")]
    BadKey {
        /// The key.
        key: String,
        /// What is wrong with it.
        msg: String,
    },
    /// The file describes a model Ember cannot run.
    #[error("unsupported model: {0}")]
    Unsupported(String),
    /// The file is of an architecture Ember does not run (named, with the list of those it runs).
    #[error("unsupported model: architecture `{name}` (Ember runs {supported})")]
    UnsupportedArch {
        /// `general.architecture` or `model_type`.
        name: String,
        /// The architectures Ember runs, for the message.
        supported: &'static str,
    },
    /// A tensor is missing, unexpected or has the wrong shape.
    #[error("tensor `{name}`: {msg}")]
    Tensor {
        /// The tensor's name in the file.
        name: String,
        /// What is wrong with it.
        msg: String,
    },
    /// The tokenizer could not be built or used.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template could not be rendered.
    #[error("chat template: {0}")]
    Template(String),
    /// A sampling setting is out of range.
    #[error("invalid sampling setting `{name}`: {msg}")]
    Sampling {
        /// The setting.
        name: &'static str,
        /// Why it was rejected.
        msg: String,
    },
    /// The prompt plus the answer would not fit in the model's context window.
    #[error("the context window is full: {needed} tokens needed, the model holds {limit}")]
    ContextFull {
        /// Tokens needed.
        needed: usize,
        /// The context length.
        limit: usize,
    },
    /// The model's weights would not fit in the memory this device allows.
    #[error("the model is too large for this device: its weights need about {needed_mb} MB, {what} allows {limit_mb} MB")]
    TooLarge {
        /// Megabytes the weights need once loaded, as the backend holds them.
        needed_mb: u64,
        /// Megabytes allowed.
        limit_mb: u64,
        /// Which limit: the device's memory, or its largest buffer.
        what: &'static str,
    },
    /// `next()` was called without a generation in progress.
    #[error("no generation in progress: call start first")]
    NotStarted,
    /// The compute device failed (GPU lost, out of memory, readback failure).
    #[error("device error: {0}")]
    Device(String),
    /// Reading a file failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// What went wrong, as a stable name the page translates (`context_full`, `too_large`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Gguf(_) => "bad_gguf",
            Error::Truncated(_) => "truncated",
            Error::UnsupportedType { .. } => "unsupported_type",
            Error::Format(_) => "bad_format",
            Error::MissingKey(_) => "missing_key",
            Error::BadKey { .. } => "bad_key",
            Error::Unsupported(_) => "unsupported",
            Error::UnsupportedArch { .. } => "unsupported_arch",
            Error::Tensor { .. } => "bad_tensor",
            Error::Tokenizer(_) => "tokenizer",
            Error::Template(_) => "template",
            Error::Sampling { .. } => "bad_setting",
            Error::ContextFull { .. } => "context_full",
            Error::TooLarge { .. } => "too_large",
            Error::NotStarted => "not_started",
            Error::Device(_) => "device",
            Error::Io(_) => "io",
        }
    }

    /// The error's arguments by name, for a translated message (`{needed, limit}` for a full
    /// context); free text under `detail`.
    pub fn vars(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Error::Gguf(m) | Error::Truncated(m) | Error::Format(m) | Error::Unsupported(m) | Error::Tokenizer(m) | Error::Template(m) | Error::Device(m) => {
                json!({ "detail": m })
            }
            Error::MissingKey(key) => json!({ "key": key }),
            Error::UnsupportedArch { name, supported } => json!({ "name": name, "supported": supported }),
            Error::UnsupportedType { name, ty, supported } => json!({ "name": name, "type": ty, "supported": supported }),
            Error::BadKey { key, msg } => json!({ "key": key, "detail": msg }),
            Error::Tensor { name, msg } => json!({ "name": name, "detail": msg }),
            Error::Sampling { name, msg } => json!({ "name": name, "detail": msg }),
            Error::ContextFull { needed, limit } => json!({ "needed": needed, "limit": limit }),
            Error::TooLarge { needed_mb, limit_mb, what } => json!({ "needed_mb": needed_mb, "limit_mb": limit_mb, "what": what }),
            Error::NotStarted => json!({}),
            Error::Io(e) => json!({ "detail": e.to_string() }),
        }
    }

    pub(crate) fn gguf(msg: impl Into<String>) -> Self {
        Error::Gguf(msg.into())
    }
    pub(crate) fn tensor(name: &str, msg: impl Into<String>) -> Self {
        Error::Tensor { name: name.to_string(), msg: msg.into() }
    }
    pub(crate) fn bad_key(key: &str, msg: impl Into<String>) -> Self {
        Error::BadKey { key: key.to_string(), msg: msg.into() }
    }
}
