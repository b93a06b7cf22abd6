//! A small GGUF writer: tests write tiny models in the real file format with it.

use super::{GgmlType, Value, DEFAULT_ALIGNMENT, MAGIC};

/// Builds a GGUF v3 file in memory.
#[derive(Debug, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<(String, Vec<usize>, GgmlType, Vec<u8>)>,
}

impl GgufWriter {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of a parsed file, to be edited (tests turn one model into a variant this way).
    pub fn from_gguf(g: &super::Gguf<'_>) -> Self {
        let metadata = g.metadata.entries().to_vec();
        // A listed tensor of a parsed file is in bounds; reading it fails only where its source does.
        let read = |t: &super::TensorInfo| g.tensor(&t.name).ok().flatten().expect("listed tensor, readable").data.into_owned();
        let tensors = g.tensors.iter().map(|t| (t.name.clone(), t.dims.clone(), t.ty, read(t))).collect();
        GgufWriter { metadata, tensors }
    }

    /// Each tensor's type, in order.
    pub fn tensor_types(&self) -> Vec<GgmlType> {
        self.tensors.iter().map(|t| t.2).collect()
    }

    /// A metadata entry's value.
    pub fn get_meta(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Adds a metadata entry.
    pub fn meta(&mut self, key: &str, value: Value) -> &mut Self {
        self.metadata.push((key.to_string(), value));
        self
    }

    /// Adds a tensor. `dims` are GGUF dims (innermost first); `data` is in `ty`'s block format.
    pub fn tensor(&mut self, name: &str, dims: &[usize], ty: GgmlType, data: Vec<u8>) -> &mut Self {
        self.tensors.push((name.to_string(), dims.to_vec(), ty, data));
        self
    }

    /// Adds an f32 tensor.
    pub fn tensor_f32(&mut self, name: &str, dims: &[usize], data: &[f32]) -> &mut Self {
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, dims, GgmlType::F32, bytes)
    }

    /// Replaces a metadata entry's value in place, or adds it (tests craft bad files this way).
    pub fn set_meta(&mut self, key: &str, value: Value) -> &mut Self {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.metadata.push((key.to_string(), value)),
        }
        self
    }

    /// Removes a metadata entry.
    pub fn remove_meta(&mut self, key: &str) -> &mut Self {
        self.metadata.retain(|(k, _)| k != key);
        self
    }

    /// Removes a tensor.
    pub fn remove_tensor(&mut self, name: &str) -> &mut Self {
        self.tensors.retain(|t| t.0 != name);
        self
    }

    /// Edits a tensor's name, dims, type and bytes.
    pub fn edit_tensor(&mut self, name: &str, f: impl FnOnce(&mut String, &mut Vec<usize>, &mut GgmlType, &mut Vec<u8>)) -> &mut Self {
        if let Some((n, dims, ty, data)) = self.tensors.iter_mut().find(|t| t.0 == name) {
            f(n, dims, ty, data);
        }
        self
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let align = DEFAULT_ALIGNMENT as usize;
        let sizes: Vec<usize> = self.tensors.iter().map(|t| t.3.len()).collect();
        let mut out = self.header(&sizes);
        for (i, (_, _, _, data)) in self.tensors.iter().enumerate() {
            out.extend_from_slice(data);
            // Padding separates tensors; none is needed after the last.
            if i + 1 < self.tensors.len() {
                out.resize(out.len().div_ceil(align) * align, 0);
            }
        }
        out
    }

    /// Writes the file to `out` with each tensor's bytes made as it is reached: `fill(i, buf)`
    /// fills tensor `i`'s bytes (as many as its dims and type take; data given when it was
    /// added is not used). A test writes a model far larger than it wants to hold this way.
    pub fn write_generated(&self, out: &mut impl std::io::Write, mut fill: impl FnMut(usize, &mut [u8])) -> std::io::Result<()> {
        let align = DEFAULT_ALIGNMENT as usize;
        let sizes: Vec<usize> = self.tensors.iter().map(|t| t.2.stored_bytes(t.1.iter().product())).collect();
        out.write_all(&self.header(&sizes))?;
        for (i, &n) in sizes.iter().enumerate() {
            let mut buf = vec![0u8; n.div_ceil(align) * align];
            fill(i, &mut buf[..n]);
            let keep = if i + 1 < sizes.len() { buf.len() } else { n };
            out.write_all(&buf[..keep])?;
        }
        Ok(())
    }

    /// Magic, counts, metadata and the tensor table for tensors of `sizes` bytes, padded to
    /// where the data section starts.
    fn header(&self, sizes: &[usize]) -> Vec<u8> {
        let align = DEFAULT_ALIGNMENT as usize;
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut out, k);
            out.extend_from_slice(&v.type_code().to_le_bytes());
            put_value(&mut out, v);
        }
        let mut offset = 0usize;
        for ((name, dims, ty, _), size) in self.tensors.iter().zip(sizes) {
            put_str(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for &d in dims {
                out.extend_from_slice(&(d as u64).to_le_bytes());
            }
            out.extend_from_slice(&ty.code().to_le_bytes());
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            offset += size.div_ceil(align) * align;
        }
        out.resize(out.len().div_ceil(align) * align, 0);
        out
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_str(out, s),
        Value::Array(items) => {
            let ty = items.first().map_or(4, Value::type_code);
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            items.iter().for_each(|x| put_value(out, x));
        }
    }
}
