//! GGUF: the file format of llama.cpp (versions 2 and 3).
//!
//! The reader takes the file from a [`ByteSource`]: its header, metadata and tensor table are
//! read first (the file's first megabytes), and each tensor's bytes only when it is asked for,
//! so that a model loads a tensor at a time rather than held whole beside its weights. It
//! validates everything before it allocates: every count is checked against the bytes that
//! remain, every tensor against the end of the file, so a corrupt or hostile file yields an
//! [`Error`] and never a panic or a huge allocation. Tensors stay typed by their block format
//! ([`TensorView`]); [`quant`] dequantises them.

pub mod quant;
pub mod writer;

use std::borrow::Cow;
use std::collections::HashMap;

use crate::error::{Error, Result};
pub use quant::GgmlType;

/// `GGUF` read as a little-endian u32.
pub const MAGIC: u32 = 0x4655_4747;
/// Alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Arrays may hold arrays; deeper nesting than this is treated as hostile.
const MAX_ARRAY_DEPTH: u32 = 3;
/// llama.cpp's GGML_MAX_DIMS.
const MAX_DIMS: u32 = 4;
/// The first read of a file's header; a longer header is read again, four times larger.
const FIRST_HEAD: usize = 4 << 20;
/// The longest header (metadata and tensor table) accepted: real ones take a few megabytes
/// (Gemma 3's 262k-token vocabulary about 8 MB), so more is a hostile file, refused before it
/// is read into memory.
pub const MAX_HEAD: usize = 256 << 20;

/// Where a model file's bytes come from: memory, a file on disk, or in the browser a `Blob`
/// read a range at a time. Reads are in bounds (the reader checks them against `len`).
pub trait ByteSource {
    /// The file's length in bytes.
    fn len(&self) -> usize;
    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `len` bytes at `offset`: borrowed where the file is in memory, read where it is not. A
    /// source holding only the file's start may give fewer (the header parse then stops).
    fn read(&self, offset: usize, len: usize) -> Result<Cow<'_, [u8]>>;
}

impl ByteSource for [u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
    fn read(&self, offset: usize, len: usize) -> Result<Cow<'_, [u8]>> {
        Ok(Cow::Borrowed(&self[offset..offset + len]))
    }
}

/// A borrowed source is a source (a file in memory, `&[u8]`; one held elsewhere, `&dyn`).
impl<T: ByteSource + ?Sized> ByteSource for &T {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn read(&self, offset: usize, len: usize) -> Result<Cow<'_, [u8]>> {
        (**self).read(offset, len)
    }
}

/// A file on disk, read a range at a time (`pread`), so that loading never holds it whole.
#[cfg(not(target_arch = "wasm32"))]
pub struct FileSource {
    file: std::fs::File,
    len: usize,
}

#[cfg(not(target_arch = "wasm32"))]
impl FileSource {
    /// Opens `path`.
    pub fn open(path: &std::path::Path) -> Result<Self> {
        let named = |e: std::io::Error| Error::Io(std::io::Error::new(e.kind(), format!("{}: {e}", path.display())));
        let file = std::fs::File::open(path).map_err(named)?;
        let len = file.metadata().map_err(named)?.len();
        let len = usize::try_from(len).map_err(|_| Error::gguf("the file is larger than this machine can address"))?;
        Ok(FileSource { file, len })
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl ByteSource for FileSource {
    fn len(&self) -> usize {
        self.len
    }
    fn read(&self, offset: usize, len: usize) -> Result<Cow<'_, [u8]>> {
        let mut buf = vec![0u8; len];
        #[cfg(unix)]
        std::os::unix::fs::FileExt::read_exact_at(&self.file, &mut buf, offset as u64)?;
        #[cfg(windows)]
        {
            let mut done = 0;
            while done < len {
                let n = std::os::windows::fs::FileExt::seek_read(&self.file, &mut buf[done..], (offset + done) as u64)?;
                if n == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
                }
                done += n;
            }
        }
        Ok(Cow::Owned(buf))
    }
}

/// A metadata value, with GGUF's value types.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    /// GGUF's numeric code for this value's type.
    pub fn type_code(&self) -> u32 {
        match self {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::String(_) => 8,
            Value::Array(_) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }

    /// The value as an integer, whatever integer type the file used.
    pub fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }

    fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Bool(_) => "a bool",
            Value::F32(_) | Value::F64(_) => "a float",
            _ => "an integer",
        }
    }
}

/// Conversion from a metadata [`Value`], used by [`Metadata::req`] and [`Metadata::opt`].
pub trait FromValue: Sized {
    /// Converts, or says what was expected.
    fn from_value(v: &Value) -> std::result::Result<Self, String>;
}

impl FromValue for usize {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        let i = v.as_i128().ok_or_else(|| format!("expected an integer, found {}", v.type_name()))?;
        usize::try_from(i).map_err(|_| format!("{i} is not a valid count"))
    }
}
impl FromValue for u32 {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        let i = v.as_i128().ok_or_else(|| format!("expected an integer, found {}", v.type_name()))?;
        u32::try_from(i).map_err(|_| format!("{i} is out of range"))
    }
}
impl FromValue for f32 {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        match *v {
            Value::F32(x) => Ok(x),
            Value::F64(x) => Ok(x as f32),
            _ => v.as_i128().map(|i| i as f32).ok_or_else(|| format!("expected a number, found {}", v.type_name())),
        }
    }
}
impl FromValue for bool {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        match *v {
            Value::Bool(b) => Ok(b),
            _ => Err(format!("expected a bool, found {}", v.type_name())),
        }
    }
}
impl FromValue for String {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            _ => Err(format!("expected a string, found {}", v.type_name())),
        }
    }
}
impl<T: FromValue> FromValue for Vec<T> {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        match v {
            Value::Array(items) => items.iter().enumerate().map(|(i, x)| T::from_value(x).map_err(|e| format!("element {i}: {e}"))).collect(),
            _ => Err(format!("expected an array, found {}", v.type_name())),
        }
    }
}

/// The metadata key/value pairs of a file, in file order, with a lookup index.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

impl Metadata {
    /// All entries in file order.
    pub fn entries(&self) -> &[(String, Value)] {
        &self.entries
    }

    /// The raw value of a key, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    /// The one helper through which required keys are read: a missing key is an error that
    /// names it, and so is a value of the wrong type.
    pub fn req<T: FromValue>(&self, key: &str) -> Result<T> {
        match self.get(key) {
            None => Err(Error::MissingKey(key.to_string())),
            Some(v) => T::from_value(v).map_err(|msg| Error::bad_key(key, msg)),
        }
    }

    /// An optional key: absent is `None`, present with the wrong type is still an error.
    pub fn opt<T: FromValue>(&self, key: &str) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => T::from_value(v).map(Some).map_err(|msg| Error::bad_key(key, msg)),
        }
    }

    fn insert(&mut self, key: String, value: Value) -> Result<()> {
        if self.index.contains_key(&key) {
            return Err(Error::gguf(format!("duplicate metadata key `{key}`")));
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value));
        Ok(())
    }
}

/// Where a tensor lives in the file, as its header describes it (validated).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The tensor's name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// GGUF dims, innermost (contiguous) first: a `[in, out]` weight is row-major `(out, in)`.
    pub dims: Vec<usize>,
    /// Block format.
    pub ty: GgmlType,
    /// Byte offset from the start of the data section.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> usize {
        self.dims.iter().product()
    }
    /// The row-major shape (GGUF dims reversed), as numpy and burn see it.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }
}

/// A tensor's bytes, still in their block format.
#[derive(Debug, Clone)]
pub struct TensorView<'a> {
    /// Its header entry.
    pub info: &'a TensorInfo,
    /// Its raw blocks.
    pub data: Cow<'a, [u8]>,
}

impl TensorView<'_> {
    /// Dequantises to row-major f32, with llama.cpp's arithmetic.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        quant::dequantize(self.info.ty, &self.data, self.info.n_elements())
    }
}

/// A parsed GGUF file: its header, and the source its tensors are read from.
pub struct Gguf<'a> {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata.
    pub metadata: Metadata,
    /// Tensor headers, in file order.
    pub tensors: Vec<TensorInfo>,
    /// Alignment of the data section.
    pub alignment: u64,
    /// Offset of the data section in the file.
    pub data_offset: usize,
    source: Box<dyn ByteSource + 'a>,
    by_name: HashMap<String, usize>,
}

impl std::fmt::Debug for Gguf<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("version", &self.version)
            .field("tensors", &self.tensors.len())
            .field("file_size", &self.source.len())
            .finish_non_exhaustive()
    }
}

struct Cursor<'a> {
    /// The file's first bytes (all of them, or enough for the header).
    buf: &'a [u8],
    /// The whole file's length: counts are checked against it.
    file_len: usize,
    /// Set when the header runs past `buf` but not past the file: read more and parse again.
    short: bool,
    pos: usize,
    /// Bytes the parsed metadata may still take in memory. A value takes more memory than
    /// file bytes (an array element of one byte becomes a 32-byte `Value`), so without a
    /// budget a hostile file could make the parser allocate many times its own size.
    budget: usize,
}

impl<'a> Cursor<'a> {
    /// What remains of the file (not only of the bytes read so far).
    fn remaining(&self) -> usize {
        self.file_len - self.pos
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::Truncated(format!("truncated: {what} needs {n} bytes at offset {}, but only {} remain", self.pos, self.remaining())));
        }
        if n > self.buf.len() - self.pos {
            self.short = true;
            return Err(Error::gguf(format!("the header is longer than the {} bytes read", self.buf.len())));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        Ok(self.take(N, what)?.try_into().expect("length checked"))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }
    /// A count that must be backed by at least `min_each` bytes per item in what remains.
    fn count(&mut self, what: &str, min_each: usize) -> Result<usize> {
        let n = self.u64(what)?;
        let fits = usize::try_from(n).ok().and_then(|n| n.checked_mul(min_each.max(1))).is_some_and(|b| b <= self.remaining());
        if !fits {
            return Err(Error::gguf(format!("{what} is {n}, more than the {} bytes left in the file could hold", self.remaining())));
        }
        Ok(n as usize)
    }
    fn charge(&mut self, bytes: usize, what: &str) -> Result<()> {
        self.budget =
            self.budget.checked_sub(bytes).ok_or_else(|| Error::gguf(format!("{what} would take more memory than a file of this size can justify")))?;
        Ok(())
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.count(what, 1)?;
        self.charge(n, what)?;
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Error::gguf(format!("{what} is not valid UTF-8")))
    }

    fn value(&mut self, ty: u32, key: &str, depth: u32) -> Result<Value> {
        let what = || format!("value of `{key}`");
        Ok(match ty {
            0 => Value::U8(self.arr::<1>(&what())?[0]),
            1 => Value::I8(self.arr::<1>(&what())?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.arr(&what())?)),
            3 => Value::I16(i16::from_le_bytes(self.arr(&what())?)),
            4 => Value::U32(self.u32(&what())?),
            5 => Value::I32(i32::from_le_bytes(self.arr(&what())?)),
            6 => Value::F32(f32::from_le_bytes(self.arr(&what())?)),
            7 => match self.arr::<1>(&what())?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(Error::gguf(format!("{} is a bool of value {b}", what()))),
            },
            8 => Value::String(self.string(&what())?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(Error::gguf(format!("{} nests arrays deeper than {MAX_ARRAY_DEPTH}", what())));
                }
                let elem_ty = self.u32(&what())?;
                let min = min_value_size(elem_ty).ok_or_else(|| Error::gguf(format!("{} is an array of unknown type {elem_ty}", what())))?;
                let n = self.count(&format!("array length of `{key}`"), min)?;
                self.charge(n * std::mem::size_of::<Value>(), &format!("array `{key}`"))?;
                // What the bytes read so far can hold: a longer array is read again from more.
                let mut items = Vec::with_capacity(n.min((self.buf.len() - self.pos) / min + 1));
                for _ in 0..n {
                    items.push(self.value(elem_ty, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(&what())?),
            11 => Value::I64(i64::from_le_bytes(self.arr(&what())?)),
            12 => Value::F64(f64::from_le_bytes(self.arr(&what())?)),
            t => return Err(Error::gguf(format!("{} has unknown value type {t}", what()))),
        })
    }
}

/// The fewest bytes a value of this type can take (so counts can be checked before allocating).
fn min_value_size(ty: u32) -> Option<usize> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10 | 11 | 12 => 8,
        9 => 12,
        _ => return None,
    })
}

/// What the header gives: everything of a [`Gguf`] but the source.
struct Header {
    version: u32,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    alignment: u64,
    data_offset: usize,
    by_name: HashMap<String, usize>,
}

impl<'a> Gguf<'a> {
    /// Parses and validates the header, metadata and tensor table of a GGUF file in memory.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        Self::read(Box::new(bytes))
    }

    /// Parses and validates a GGUF file's header, metadata and tensor table, reading only as
    /// much of `source` as they take (the tensors are read when asked for).
    pub fn read(source: Box<dyn ByteSource + 'a>) -> Result<Self> {
        let file_len = source.len();
        let mut want = FIRST_HEAD;
        loop {
            let head = source.read(0, want.min(file_len))?;
            let mut c = Cursor { buf: &head, file_len, short: false, pos: 0, budget: 0 };
            match Self::parse_header(&mut c) {
                Ok(h) => {
                    let Header { version, metadata, tensors, alignment, data_offset, by_name } = h;
                    return Ok(Gguf { version, metadata, tensors, alignment, data_offset, source, by_name });
                }
                // A source that gave less than asked (the first bytes of a download) has no more.
                Err(_) if c.short && head.len() < want.min(file_len) => {
                    return Err(Error::Io(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the header runs past the bytes at hand")))
                }
                Err(_) if c.short && want < MAX_HEAD => want = (want * 4).min(MAX_HEAD),
                Err(_) if c.short => return Err(Error::gguf(format!("its header takes more than {} MiB, more than any model's", MAX_HEAD >> 20))),
                Err(e) => return Err(e),
            }
        }
    }

    fn parse_header(c: &mut Cursor<'_>) -> Result<Header> {
        // Real files need about 3× their metadata bytes; 8× the header's bound is ample.
        c.budget = c.file_len.min(MAX_HEAD).saturating_mul(8).saturating_add(16 << 20);
        let magic = c.u32("magic")?;
        if magic != MAGIC {
            return Err(Error::gguf(format!("wrong magic {:?}: this is not a GGUF file", String::from_utf8_lossy(&magic.to_le_bytes()))));
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(Error::gguf(format!("version {version} is not supported (only 2 and 3)")));
        }
        // A tensor header takes at least 8 (name) + 4 + 8 (one dim) + 4 + 8 bytes.
        let n_tensors = c.count("tensor count", 32)?;
        let n_kv = c.count("metadata count", 12)?;

        let mut metadata = Metadata::default();
        for _ in 0..n_kv {
            let key = c.string("metadata key")?;
            let ty = c.u32("metadata value type")?;
            let value = c.value(ty, &key, 0)?;
            metadata.insert(key, value)?;
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if a.is_power_of_two() => u64::from(*a),
            Some(v) => return Err(Error::gguf(format!("general.alignment must be a power-of-two u32, found {v:?}"))),
        };

        // Capacity for what the bytes read so far can describe (a header entry takes 32 or more).
        let room = n_tensors.min((c.buf.len() - c.pos) / 32 + 1);
        let mut tensors = Vec::with_capacity(room);
        let mut by_name = HashMap::with_capacity(room);
        for _ in 0..n_tensors {
            let name = c.string("tensor name")?;
            let n_dims = c.u32("tensor dim count")?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(Error::tensor(&name, format!("has {n_dims} dims (1 to {MAX_DIMS} allowed)")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                let d = c.u64("tensor dim")?;
                let d = usize::try_from(d).ok().filter(|&d| d > 0).ok_or_else(|| Error::tensor(&name, format!("has an invalid dim {d}")))?;
                dims.push(d);
            }
            let ty_code = c.u32("tensor type")?;
            let ty = GgmlType::from_code(ty_code).ok_or_else(|| quant::unsupported_type(&name, ty_code))?;
            let offset = c.u64("tensor offset")?;
            let n = dims
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .filter(|&n| n <= i64::MAX as usize)
                .ok_or_else(|| Error::tensor(&name, format!("element count of dims {dims:?} overflows")))?;
            if dims[0] % ty.block_size() != 0 {
                return Err(Error::tensor(&name, format!("row length {} is not a multiple of the {} block size {}", dims[0], ty.name(), ty.block_size())));
            }
            let size = (n / ty.block_size()).checked_mul(ty.type_size()).ok_or_else(|| Error::tensor(&name, "byte size overflows"))?;
            if offset % alignment != 0 {
                return Err(Error::tensor(&name, format!("offset {offset} is not aligned to {alignment}")));
            }
            let offset = usize::try_from(offset).map_err(|_| Error::tensor(&name, "offset overflows"))?;
            if by_name.insert(name.clone(), tensors.len()).is_some() {
                return Err(Error::tensor(&name, "appears twice in the file"));
            }
            tensors.push(TensorInfo { name, dims, ty, offset, size });
        }

        let data_offset = (c.pos as u64).div_ceil(alignment) * alignment;
        let data_offset = usize::try_from(data_offset).map_err(|_| Error::gguf("data offset overflows"))?;
        let data_len = c.file_len.saturating_sub(data_offset);
        for t in &tensors {
            let end = t.offset.checked_add(t.size);
            if end.is_none_or(|e| e > data_len) {
                let msg = format!("its data ({} bytes at offset {}) runs past the end of the file (the data section holds {data_len} bytes)", t.size, t.offset);
                // A sum that overflows is crafted; an end past the file's is a file cut short.
                return Err(match end {
                    None => Error::tensor(&t.name, msg),
                    Some(_) => Error::Truncated(format!("tensor `{}`: {msg}", t.name)),
                });
            }
        }
        // Overlapping tensors are a sign of a crafted file.
        let mut spans: Vec<&TensorInfo> = tensors.iter().collect();
        spans.sort_by_key(|t| t.offset);
        for w in spans.windows(2) {
            if w[0].offset + w[0].size > w[1].offset {
                return Err(Error::tensor(&w[1].name, format!("overlaps the data of `{}`", w[0].name)));
            }
        }

        Ok(Header { version, metadata, tensors, alignment, data_offset, by_name })
    }

    /// A tensor by name, with its bytes (read from the source now).
    pub fn tensor(&self, name: &str) -> Result<Option<TensorView<'_>>> {
        let Some(&i) = self.by_name.get(name) else { return Ok(None) };
        let info = &self.tensors[i];
        // Bounds were validated in `parse_header`.
        let data = self.source.read(self.data_offset + info.offset, info.size)?;
        Ok(Some(TensorView { info, data }))
    }

    /// The size of the whole file in bytes.
    pub fn file_size(&self) -> usize {
        self.source.len()
    }
}
