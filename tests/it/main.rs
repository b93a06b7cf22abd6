//! Ember's integration tests: one binary (each test binary links all of burn).
//!
//! Golden values come from independent references (numpy, PyPI `gguf`, `tokenizers`,
//! `jinja2`, `transformers`), made by `tests/fixtures/make_fixtures.py` and
//! `tests/fixtures/make_hf_models.py`, and committed.

mod alloc;
mod archs;
mod chat;
mod cli;
mod engine;
mod gemma_real;
mod gguf;
mod grammar;
mod hostile;
mod layers;
mod safetensors;
mod sampling;
mod smollm;
mod streaming;
mod tiny;
mod tokenizer;

use std::path::PathBuf;

/// A file under `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A JSON fixture.
pub fn json(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// A JSON array of numbers as f32.
pub fn f32s(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

/// A JSON array of numbers as u32.
pub fn u32s(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().expect("array").iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// The reference model, fetched by `models/fetch.sh` (the test command runs it first).
pub fn real_model() -> PathBuf {
    let p = std::env::var("EMBER_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert!(p.exists(), "{} is missing: run models/fetch.sh (scripts/test does)", p.display());
    p
}

/// The reference model's metadata, parsed once for the tests that need only it.
pub fn real_metadata() -> &'static ember::gguf::Metadata {
    static META: std::sync::OnceLock<ember::gguf::Metadata> = std::sync::OnceLock::new();
    META.get_or_init(|| {
        // The header only, read from the file.
        ember::gguf::Gguf::read(Box::new(ember::gguf::FileSource::open(&real_model()).unwrap())).unwrap().metadata
    })
}

/// Largest |a - b|, and where.
pub fn max_diff(a: &[f32], b: &[f32]) -> (f32, usize) {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).enumerate().fold((0f32, 0), |(m, at), (i, (x, y))| {
        let d = (x - y).abs();
        if d > m || d.is_nan() {
            (d, i)
        } else {
            (m, at)
        }
    })
}

/// Asserts every element within `tol`.
#[track_caller]
pub fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    let (d, i) = max_diff(got, want);
    assert!(d <= tol, "{what}: max |Δ| = {d} at {i} (got {}, want {}), tolerance {tol}", got[i], want[i]);
}

/// Index of the largest value.
pub fn argmax(x: &[f32]) -> usize {
    x.iter().enumerate().fold(0, |b, (i, &v)| if v > x[b] { i } else { b })
}

/// The backends to test: the CPU always, wgpu (lavapipe natively) unless EMBER_TEST_BACKENDS
/// says otherwise (e.g. `cpu`). The CPU runs on two threads, as the CLI and the browser's
/// threaded engine do, so that the goldens check the split products (one thread's path is the
/// same code on the whole matrix, and the unit tests pin that both give the same bits).
pub fn backends() -> Vec<ember::Backend> {
    ember::model::pool::set_threads(2);
    ember::testkit::test_backends()
}

/// Runs the body once per shipping executor of [`backends`], with `$b` the backend and `$exec`
/// the executor (a different type each time, so the body is compiled for each).
#[macro_export]
macro_rules! for_each_executor {
    (|$b:ident, $exec:ident| $body:block) => {
        for $b in $crate::backends() {
            match $b {
                ember::Backend::Cpu => {
                    let $exec = ember::model::CpuExecutor;
                    $body
                }
                ember::Backend::Wgpu => {
                    let $exec = ember::model::GpuExecutor::new(ember::backend::wgpu_device().unwrap());
                    $body
                }
            }
        }
    };
}
