//! Loading reads a GGUF file's header first and then a tensor at a time, so that a model never
//! takes the whole file and its weights in memory at once (issue 17: peak ≤ 1.3 × the file).

use std::borrow::Cow;
use std::cell::RefCell;

use ember::backend::Device;
use ember::engine::{load_file, Engine, LoadOptions};
use ember::gguf::{ByteSource, Gguf, Value};
use ember::testkit::{tiny_model_bytes, tiny_model_writer, write_random_model, RandomShape};
use ember::{Backend, Error};

use crate::alloc::peak_during;

/// 19 MB in Q8_0: large enough that the weights, not the tokenizer, are what loading holds.
const MID: RandomShape = RandomShape { width: 512, heads: 8, kv_heads: 2, ff: 1536, layers: 6 };

/// A file in memory that records every read.
struct Counting<'a> {
    bytes: &'a [u8],
    reads: RefCell<Vec<(usize, usize)>>,
}

impl ByteSource for &Counting<'_> {
    fn len(&self) -> usize {
        self.bytes.len()
    }
    fn read(&self, offset: usize, len: usize) -> ember::Result<Cow<'_, [u8]>> {
        self.reads.borrow_mut().push((offset, len));
        Ok(Cow::Owned(self.bytes[offset..offset + len].to_vec()))
    }
}

fn mid_model() -> Vec<u8> {
    let mut bytes = Vec::new();
    write_random_model(&mut bytes, MID).unwrap();
    bytes
}

fn options() -> LoadOptions {
    // The KV cache is not the file: a short one keeps it out of the measure.
    LoadOptions { max_context: 64, ..LoadOptions::default() }
}

/// The header is one read, then each tensor is read once, in a read of its own size: never the
/// whole file. The weights are those of the file in memory (same logits).
#[test]
fn the_header_then_each_tensor_once() {
    let bytes = mid_model();
    let counting = Counting { bytes: &bytes, reads: RefCell::new(Vec::new()) };
    let mut engine = Engine::load_source(Box::new(&counting), Device::Cpu, options(), &mut |_, _| {}).unwrap();
    let reads = counting.reads.borrow().clone();
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!(reads[0], (0, bytes.len().min(4 << 20)), "the header's read");
    let mut tensors: Vec<(usize, usize)> = g.tensors.iter().map(|t| (g.data_offset + t.offset, t.size)).collect();
    let mut rest = reads[1..].to_vec();
    tensors.sort();
    rest.sort();
    assert_eq!(rest, tensors, "each tensor read once, and nothing else");
    let largest = tensors.iter().map(|t| t.1).max().unwrap();
    assert!(largest * 10 < bytes.len(), "the largest read ({largest} bytes) is a small part of the file");

    let ids = [1u32, 40, 77, 200];
    let mut whole = Engine::load(&bytes, Device::Cpu, options()).unwrap();
    assert_eq!(engine.logits(&ids).unwrap(), whole.logits(&ids).unwrap());
}

/// Loading a file from disk holds at most 1.3 × the file at any moment; loading it from memory
/// holds the file and the weights (about 2 ×): the measure tells them apart.
#[test]
fn loading_from_disk_holds_little_more_than_the_weights() {
    let bytes = mid_model();
    let path = std::env::temp_dir().join(format!("ember-mid-{}.gguf", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let file = bytes.len() as f64;
    let (engine, streamed) = peak_during(|| load_file(&path, Backend::Cpu, options()));
    engine.unwrap();
    let (engine, whole) = peak_during(|| {
        let bytes = std::fs::read(&path).unwrap();
        Engine::load(&bytes, Device::Cpu, options())
    });
    engine.unwrap();
    std::fs::remove_file(&path).unwrap();
    eprintln!("file {file} bytes: peak {:.3}× streamed, {:.3}× from memory", streamed as f64 / file, whole as f64 / file);
    assert!((streamed as f64) <= 1.3 * file, "streamed: peak {streamed} bytes for a file of {file}");
    assert!((whole as f64) >= 1.9 * file, "from memory: peak {whole} bytes for a file of {file}");
}

/// An architecture Ember does not run is refused from the header alone: no tensor is read.
#[test]
fn an_unsupported_architecture_is_refused_from_the_header() {
    let mut w = tiny_model_writer();
    w.set_meta("general.architecture", Value::String("mamba".into()));
    let bytes = w.to_bytes();
    let counting = Counting { bytes: &bytes, reads: RefCell::new(Vec::new()) };
    let err = Engine::load_source(Box::new(&counting), Device::Cpu, options(), &mut |_, _| {}).unwrap_err();
    assert!(matches!(&err, Error::UnsupportedArch { name, .. } if name == "mamba"), "{err}");
    assert_eq!(counting.reads.borrow().len(), 1, "only the header was read");
}

/// A download is judged from its first bytes: a model of an architecture Ember does not run is
/// refused from them (before the rest arrives), a good one passes, and a header longer than
/// what arrived is left to the load.
#[test]
fn a_download_is_judged_from_its_first_bytes() {
    use ember::engine::check_gguf_head;
    let mid = mid_model();
    check_gguf_head(&mid[..1 << 20], mid.len()).unwrap();
    let mut w = tiny_model_writer();
    w.set_meta("general.architecture", Value::String("mamba".into()));
    let bad = w.to_bytes();
    let err = check_gguf_head(&bad, bad.len() + (500 << 20)).unwrap_err();
    assert!(matches!(&err, Error::UnsupportedArch { name, .. } if name == "mamba"), "{err}");
    let err = check_gguf_head(b"<!doctype html><html>", 1 << 20).unwrap_err();
    assert!(err.to_string().contains("not a GGUF file"), "{err}");
    // Too little of a header to judge.
    check_gguf_head(&mid[..64], mid.len()).unwrap();
}

/// A header longer than the first read (a vocabulary of megabytes) is read again, larger, and
/// parses as from memory.
#[test]
fn a_long_header_is_read_in_growing_steps() {
    let mut w = tiny_model_writer();
    let filler: Vec<Value> = (0..600_000).map(|i| Value::String(format!("padding {i}"))).collect();
    w.meta("test.padding", Value::Array(filler));
    let bytes = w.to_bytes();
    let counting = Counting { bytes: &bytes, reads: RefCell::new(Vec::new()) };
    let g = Gguf::read(Box::new(&counting)).unwrap();
    assert_eq!(counting.reads.borrow().as_slice(), &[(0, 4 << 20), (0, bytes.len())], "4 MiB, then more");
    let whole = Gguf::parse(&bytes).unwrap();
    assert_eq!(g.metadata.entries(), whole.metadata.entries());
    assert_eq!(g.tensors, whole.tensors);
    assert_eq!(g.data_offset, whole.data_offset);
}

/// A Hugging Face folder's weights are read the same way: the safetensors header (its length,
/// then its JSON), then each tensor once, and the model is the one held in memory gives.
#[test]
fn a_safetensors_file_is_read_a_tensor_at_a_time() {
    let dir = crate::fixture("hf/qwen2");
    let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
    let held = |with_weights: bool| {
        let names = ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"];
        let mut files: Vec<(String, Vec<u8>)> = names.iter().map(|n| (n.to_string(), std::fs::read(dir.join(n)).unwrap())).collect();
        if with_weights {
            files.push(("model.safetensors".into(), weights.clone()));
        }
        ember::hf::HfFolder::new(files)
    };
    let counting: &'static Counting<'static> =
        Box::leak(Box::new(Counting { bytes: Box::leak(weights.clone().into_boxed_slice()), reads: RefCell::new(Vec::new()) }));
    let folder = held(false).with_source("model.safetensors", Box::new(counting));
    let mut streamed = Engine::load_hf(&folder, Device::Cpu, options(), &mut |_, _| {}).unwrap();
    let reads = counting.reads.borrow().clone();
    let st = ember::safetensors::Safetensors::parse(&weights).unwrap();
    let n = u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
    assert_eq!(reads[..2], [(0, 8), (8, n)], "the header's length, then the header");
    let mut tensors: Vec<(usize, usize)> = st.tensors.iter().map(|t| (8 + n + t.begin, t.end - t.begin)).collect();
    let mut rest = reads[2..].to_vec();
    tensors.sort();
    rest.sort();
    assert_eq!(rest, tensors, "each tensor read once, and nothing else");
    let ids = [1u32, 40, 77, 200];
    let mut whole = Engine::load_hf(&held(true), Device::Cpu, options(), &mut |_, _| {}).unwrap();
    assert_eq!(streamed.logits(&ids).unwrap(), whole.logits(&ids).unwrap());
}

/// A truncated file is refused with the same message whether it is read from memory or a
/// tensor at a time (the header parse does not mistake a short read for a short file).
#[test]
fn a_truncated_file_is_refused_the_same_way() {
    let bytes = tiny_model_bytes();
    let cut = &bytes[..bytes.len() - 100];
    let counting = Counting { bytes: cut, reads: RefCell::new(Vec::new()) };
    let a = Gguf::read(Box::new(&counting)).unwrap_err().to_string();
    let b = Gguf::parse(cut).unwrap_err().to_string();
    assert_eq!(a, b);
    assert!(a.contains("runs past the end of the file"), "{a}");
}

/// The browser suite loads a model of about 1.2 GB on the CPU (`tests/web/models.test.mjs`):
/// it is written here, a tensor at a time, unless a copy of the right size is there.
#[test]
fn the_big_model_for_the_browser() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("random-1.2gb.gguf");
    let mut counter = CountingWriter(0);
    write_random_model(&mut counter, RandomShape::BIG).unwrap_or_else(|_| unreachable!());
    if std::fs::metadata(&path).ok().map(|m| m.len()) != Some(counter.0) {
        let file = std::fs::File::create(&path).unwrap();
        write_random_model(&mut std::io::BufWriter::new(file), RandomShape::BIG).unwrap();
    }
    let g = Gguf::read(Box::new(ember::gguf::FileSource::open(&path).unwrap())).unwrap();
    assert!((1_150_000_000..1_300_000_000).contains(&g.file_size()), "{} bytes", g.file_size());
}

/// Counts what is written (the big file's size, without writing it).
struct CountingWriter(u64);

impl std::io::Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
