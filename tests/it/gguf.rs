//! The GGUF reader: exact dequantisation, and clear errors on corrupt files.

use ember::gguf::quant::{dequantize, GgmlType};
use ember::gguf::writer::GgufWriter;
use ember::gguf::{Gguf, Value};
use ember::Error;

use crate::{f32s, json};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn dequantisation_is_bit_exact_against_gguf_py() {
    let fx = json("dequant.json");
    let mut seen = 0;
    for ty in GgmlType::ALL {
        let case = &fx[ty.name()];
        assert!(case.is_object(), "no fixture for {}", ty.name());
        let bytes = hex(case["bytes"].as_str().unwrap());
        let want = f32s(&case["values"]);
        let got = dequantize(ty, &bytes, case["n"].as_u64().unwrap() as usize).unwrap();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{} element {i}: {g} != {w}", ty.name());
        }
        seen += 1;
    }
    assert_eq!(seen, 11);
}

#[test]
fn dequantise_rejects_a_size_mismatch() {
    let err = dequantize(GgmlType::Q4_1, &[0u8; 19], 32).unwrap_err();
    assert!(err.to_string().contains("does not hold 32 elements"), "{err}");
}

fn sample_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.meta("general.architecture", Value::String("llama".into()))
        .meta("u8", Value::U8(7))
        .meta("i64", Value::I64(-3))
        .meta("f64", Value::F64(0.25))
        .meta("flag", Value::Bool(true))
        .meta("list", Value::Array(vec![Value::String("a".into()), Value::String("bc".into())]))
        .meta("nested", Value::Array(vec![Value::Array(vec![Value::U32(1)]), Value::Array(vec![Value::U32(2)])]));
    w.tensor_f32("a", &[4, 2], &[1., 2., 3., 4., 5., 6., 7., 8.]);
    w.tensor("b", &[32], GgmlType::Q8_0, ember::gguf::quant::quantize_q8_0(&[0.5; 32]));
    w.to_bytes()
}

#[test]
fn reads_every_value_type_and_tensor_infos() {
    let bytes = sample_file();
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!(g.version, 3);
    let m = &g.metadata;
    assert_eq!(m.req::<usize>("u8").unwrap(), 7);
    assert_eq!(m.get("i64"), Some(&Value::I64(-3)));
    assert_eq!(m.req::<f32>("f64").unwrap(), 0.25);
    assert!(m.req::<bool>("flag").unwrap());
    assert_eq!(m.req::<Vec<String>>("list").unwrap(), vec!["a", "bc"]);
    assert_eq!(m.get("nested").unwrap(), &Value::Array(vec![Value::Array(vec![Value::U32(1)]), Value::Array(vec![Value::U32(2)])]));
    let a = g.tensor("a").unwrap().unwrap();
    assert_eq!(a.info.shape(), vec![2, 4]);
    assert_eq!(a.to_f32().unwrap(), vec![1., 2., 3., 4., 5., 6., 7., 8.]);
    let b = g.tensor("b").unwrap().unwrap();
    assert_eq!(b.info.ty, GgmlType::Q8_0);
    assert!(b.to_f32().unwrap().iter().all(|&v| (v - 0.5).abs() < 1e-3));
    assert_eq!(g.data_offset % 32, 0);
}

#[test]
fn missing_and_mistyped_keys_are_named() {
    let bytes = sample_file();
    let g = Gguf::parse(&bytes).unwrap();
    match g.metadata.req::<usize>("llama.block_count") {
        Err(Error::MissingKey(k)) => assert_eq!(k, "llama.block_count"),
        other => panic!("{other:?}"),
    }
    let err = g.metadata.req::<usize>("list").unwrap_err().to_string();
    assert!(err.contains("`list`") && err.contains("expected an integer"), "{err}");
}

fn parse_err(bytes: &[u8]) -> String {
    Gguf::parse(bytes).map(|_| ()).expect_err("must be rejected").to_string()
}

#[test]
fn corrupt_files_get_clear_errors() {
    let good = sample_file();
    assert!(parse_err(b"GGML\x03\0\0\0").contains("wrong magic"));
    assert!(parse_err(b"").contains("truncated"));
    let mut v1 = good.clone();
    v1[4] = 1;
    assert!(parse_err(&v1).contains("version 1 is not supported"));
    let mut huge = good.clone();
    huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes()); // metadata count
    assert!(parse_err(&huge).contains("metadata count"), "{}", parse_err(&huge));
    // Every truncation is an error, never a panic.
    let header_end = Gguf::parse(&good).unwrap().data_offset;
    for cut in (0..good.len()).step_by(7).chain([header_end, good.len() - 1]) {
        assert!(Gguf::parse(&good[..cut]).is_err(), "truncated at {cut} parsed");
    }
}

/// Builds a one-tensor file and lets `patch` corrupt its tensor header.
fn with_tensor_header(patch: impl Fn(&mut Vec<u8>, usize)) -> String {
    let mut w = GgufWriter::new();
    w.tensor_f32("t", &[8], &[0.0; 8]);
    let mut bytes = w.to_bytes();
    // Header: magic, version, counts (24 bytes), then the tensor info: name (8 + 1), n_dims (4),
    // dim (8), type (4), offset (8).
    patch(&mut bytes, 24 + 9);
    parse_err(&bytes)
}

/// The errors a person meets most (a file cut short, a quantisation Ember does not read) carry
/// their own kind and arguments, so that the page can say them in its own language.
#[test]
fn common_refusals_have_their_own_kind() {
    let good = sample_file();
    for cut in [0, 12, good.len() - 1] {
        let e = Gguf::parse(&good[..cut]).map(|_| ()).expect_err("cut short");
        assert_eq!(e.kind(), "truncated", "cut at {cut}: {e}");
    }
    let mut w = GgufWriter::new();
    w.tensor_f32("blk.0.ffn_up.weight", &[8], &[0.0; 8]);
    let mut bytes = w.to_bytes();
    let ty = 24 + 8 + 19 + 12; // counts, the name's length and bytes, n_dims and the dim
    bytes[ty..ty + 4].copy_from_slice(&11u32.to_le_bytes()); // Q3_K
    let e = Gguf::parse(&bytes).map(|_| ()).expect_err("Q3_K");
    assert_eq!(e.kind(), "unsupported_type", "{e}");
    let vars = e.vars();
    assert_eq!((vars["type"].as_str(), vars["name"].as_str()), (Some("Q3_K"), Some("blk.0.ffn_up.weight")));
    assert!(vars["supported"].as_str().unwrap().contains("Q4_K"), "{vars}");
}

#[test]
fn hostile_tensor_headers_are_rejected() {
    let e = with_tensor_header(|b, at| b[at + 12..at + 16].copy_from_slice(&99u32.to_le_bytes()));
    assert!(e.contains("type number 99 is not one Ember reads"), "{e}");
    let e = with_tensor_header(|b, at| b[at..at + 4].copy_from_slice(&7u32.to_le_bytes()));
    assert!(e.contains("7 dims"), "{e}");
    let e = with_tensor_header(|b, at| b[at + 4..at + 12].copy_from_slice(&(1u64 << 40).to_le_bytes()));
    assert!(e.contains("past the end of the file"), "{e}");
    let e = with_tensor_header(|b, at| b[at + 16..at + 24].copy_from_slice(&4096u64.to_le_bytes()));
    assert!(e.contains("past the end"), "{e}");
    let e = with_tensor_header(|b, at| b[at + 16..at + 24].copy_from_slice(&3u64.to_le_bytes()));
    assert!(e.contains("not aligned"), "{e}");
    let e = with_tensor_header(|b, at| b[at + 4..at + 12].copy_from_slice(&0u64.to_le_bytes()));
    assert!(e.contains("invalid dim 0"), "{e}");
}

#[test]
fn overlapping_and_duplicate_tensors_are_rejected() {
    let mut w = GgufWriter::new();
    w.tensor_f32("x", &[8], &[0.0; 8]).tensor_f32("y", &[8], &[0.0; 8]);
    let mut bytes = w.to_bytes();
    // Point y's offset (the last 8 bytes of its header) at x's data.
    let y_info = 24 + (8 + 1 + 4 + 8 + 4 + 8) + (8 + 1);
    bytes[y_info + 16..y_info + 24].copy_from_slice(&0u64.to_le_bytes());
    assert!(parse_err(&bytes).contains("overlaps"));

    let mut w = GgufWriter::new();
    w.tensor_f32("x", &[8], &[0.0; 8]).tensor_f32("x", &[8], &[0.0; 8]);
    assert!(parse_err(&w.to_bytes()).contains("appears twice"));
}

#[test]
fn a_huge_byte_array_cannot_make_the_parser_allocate_many_times_the_file() {
    // 40 MB of u8 elements would become 1.3 GB of parsed values.
    let n = 40usize << 20;
    let mut bytes = Vec::with_capacity(n + 64);
    bytes.extend_from_slice(&ember::gguf::MAGIC.to_le_bytes());
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&0u64.to_le_bytes()); // tensors
    bytes.extend_from_slice(&1u64.to_le_bytes()); // metadata entries
    bytes.extend_from_slice(&4u64.to_le_bytes());
    bytes.extend_from_slice(b"blob");
    bytes.extend_from_slice(&9u32.to_le_bytes()); // array
    bytes.extend_from_slice(&0u32.to_le_bytes()); // of u8
    bytes.extend_from_slice(&(n as u64).to_le_bytes());
    bytes.resize(bytes.len() + n, 7);
    let e = parse_err(&bytes);
    assert!(e.contains("more memory than a file of this size"), "{e}");
}
