//! The safetensors and config.json readers against a file written by the `safetensors`
//! package itself, with values from numpy and ml_dtypes (tests/fixtures/make_safetensors.py),
//! and on crafted bad files.

use ember::safetensors::{Dtype, HfConfig, Safetensors};

use crate::{f32s, fixture, json};

#[test]
fn reads_f32_f16_and_bf16_tensors_as_the_reference_does() {
    let bytes = std::fs::read(fixture("safetensors/tiny.safetensors")).unwrap();
    let want = json("safetensors/tiny.json");
    let st = Safetensors::parse(&bytes).unwrap();
    assert_eq!(st.metadata.get("format").map(String::as_str), Some("pt"));
    let tensors = want["tensors"].as_object().unwrap();
    assert_eq!(st.tensors.len(), tensors.len());
    for (name, t) in tensors {
        let info = st.info(name).unwrap_or_else(|| panic!("{name} missing"));
        let dtype = match t["dtype"].as_str().unwrap() {
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            _ => Dtype::BF16,
        };
        assert_eq!(info.dtype, dtype, "{name}");
        let shape: Vec<usize> = t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        assert_eq!(info.shape, shape, "{name}");
        // Exact: each value is the f32 widening of the stored half or bfloat16.
        assert_eq!(st.to_f32(name).unwrap(), f32s(&t["values"]), "{name}");
    }
}

#[test]
fn reads_config_json_through_one_helper_that_names_the_key() {
    let c = HfConfig::parse(&std::fs::read(fixture("safetensors/config.json")).unwrap()).unwrap();
    assert_eq!(c.model_type().unwrap(), "llama");
    assert_eq!(c.req::<usize>("hidden_size").unwrap(), 4);
    assert_eq!(c.opt::<f64>("rope_theta").unwrap(), Some(10000.0));
    assert_eq!(c.opt::<bool>("tie_word_embeddings").unwrap(), Some(false));
    assert_eq!(c.opt::<usize>("sliding_window").unwrap(), None);
    let e = c.req::<usize>("n_embd").unwrap_err().to_string();
    assert_eq!(e, "the model file lacks the metadata key `n_embd (config.json)`");
    let e = c.req::<usize>("torch_dtype").unwrap_err().to_string();
    assert!(e.starts_with("metadata key `torch_dtype (config.json)`: invalid type"), "{e}");
    assert!(HfConfig::parse(b"[1, 2]").unwrap_err().to_string().contains("config.json is not a JSON object"));
}

/// A file from a header (JSON text) and `data_len` bytes of data.
fn file(header: &str, data_len: usize) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.resize(out.len() + data_len, 0);
    out
}

#[test]
fn bad_safetensors_files_fail_with_their_own_errors() {
    let t = |dtype: &str, shape: &str, a: u64, b: u64| format!(r#""{dtype}{a}":{{"dtype":"{dtype}","shape":{shape},"data_offsets":[{a},{b}]}}"#);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("short", vec![1, 2, 3], "shorter than its 8-byte header length"),
        (
            "header-too-long",
            {
                let mut f = file("{}", 0);
                f[..8].copy_from_slice(&1000u64.to_le_bytes());
                f
            },
            "its header claims 1000 bytes",
        ),
        (
            "huge-header-claim",
            {
                let mut f = file("{}", 0);
                f[..8].copy_from_slice(&u64::MAX.to_le_bytes());
                f
            },
            "claims 18446744073709551615 bytes",
        ),
        ("not-json", file("{not json", 0), "its header is not a JSON object"),
        ("bad-dtype", file(&format!("{{{}}}", t("I64", "[1]", 0, 8)), 8), "has dtype I64"),
        ("bad-entry", file(r#"{"x":{"dtype":"F32"}}"#, 0), "`x`: has a malformed header entry"),
        ("outside", file(&format!("{{{}}}", t("F32", "[4]", 0, 16)), 8), "lies outside the 8 bytes of data"),
        ("size-mismatch", file(&format!("{{{}}}", t("F32", "[3]", 0, 16)), 16), "holds 16 bytes, but shape [3] of F32 needs 12"),
        ("shape-overflow", file(&format!("{{{}}}", t("F32", "[4294967296,4294967296,4294967296]", 0, 16)), 16), "overflows"),
        ("overlap", file(&format!("{{{},{}}}", t("F32", "[2]", 0, 8), t("F16", "[4]", 4, 12)), 12), "overlaps the tensor before it"),
        ("hole", file(&format!("{{{}}}", t("F32", "[2]", 8, 16)), 16), "leaves a hole before it"),
        ("trailing", file(&format!("{{{}}}", t("F32", "[2]", 0, 8)), 12), "4 bytes of data after the last tensor"),
        ("metadata-not-strings", file(r#"{"__metadata__":{"a":1}}"#, 0), "`__metadata__` must map strings to strings"),
    ];
    let mut seen = std::collections::HashSet::new();
    for (name, bytes, want) in cases {
        let e = Safetensors::parse(&bytes).expect_err(name).to_string();
        assert!(e.contains(want), "{name}: {e:?} lacks {want:?}");
        assert!(seen.insert(e.clone()), "{name}: the same error as another file: {e}");
    }
    // An empty file of tensors is valid, and a well-formed bf16 one reads.
    assert!(Safetensors::parse(&file("{}", 0)).unwrap().tensors.is_empty());
}
