//! The engine end to end on a tiny random llama that the test writes itself (GGUF with a
//! byte-level BPE tokenizer and a ChatML template): generation, stop conditions, seeds,
//! cache reuse, stop and reset.

use ember::gguf::writer::GgufWriter;
use ember::gguf::{quant, GgmlType, Value};
use ember::sampling::SamplingConfig;
use ember::{Backend, Engine, Error, GenerateOptions, LoadOptions, Message, Prompt, StopReason};

/// GPT-2's byte → printable character table.
fn byte_chars() -> Vec<char> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec![' '; 256];
    for (b, c) in bs.iter().zip(cs) {
        table[*b as usize] = char::from_u32(c).unwrap();
    }
    table
}

const CHATML: &str = "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A tiny llama GGUF: 2 blocks of width 64, 4 heads over 2 KV heads, random weights.
pub fn tiny_model_bytes() -> Vec<u8> {
    let chars = byte_chars();
    let mut tokens: Vec<String> = vec!["<|endoftext|>".into(), "<|im_start|>".into(), "<|im_end|>".into()];
    let mut types = vec![3i32; 3];
    tokens.extend(chars.iter().map(|c| c.to_string()));
    types.extend(std::iter::repeat_n(1, 256));
    let sp = chars[b' ' as usize];
    let merges = [(format!("{sp}"), "t".to_string()), ("h".into(), "e".into()), (format!("{sp}t"), "he".to_string())];
    for (a, b) in &merges {
        tokens.push(format!("{a}{b}"));
        types.push(1);
    }
    let vocab = tokens.len();
    let (d, nh, nkv, ff, nl) = (64usize, 4usize, 2usize, 128usize, 2usize);
    let hd = d / nh;

    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut rand = |n: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect()
    };
    let mut w = GgufWriter::new();
    let s = |x: &str| Value::String(x.into());
    w.meta("general.architecture", s("llama"))
        .meta("general.name", s("tiny test llama"))
        .meta("llama.block_count", Value::U32(nl as u32))
        .meta("llama.context_length", Value::U32(128))
        .meta("llama.embedding_length", Value::U32(d as u32))
        .meta("llama.feed_forward_length", Value::U32(ff as u32))
        .meta("llama.attention.head_count", Value::U32(nh as u32))
        .meta("llama.attention.head_count_kv", Value::U32(nkv as u32))
        .meta("llama.rope.freq_base", Value::F32(10000.0))
        .meta("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5))
        .meta("tokenizer.ggml.model", s("gpt2"))
        .meta("tokenizer.ggml.pre", s("smollm"))
        .meta("tokenizer.ggml.tokens", Value::Array(tokens.iter().map(|t| s(t)).collect()))
        .meta("tokenizer.ggml.token_type", Value::Array(types.iter().map(|&t| Value::I32(t)).collect()))
        .meta("tokenizer.ggml.merges", Value::Array(merges.iter().map(|(a, b)| s(&format!("{a} {b}"))).collect()))
        .meta("tokenizer.ggml.bos_token_id", Value::U32(1))
        .meta("tokenizer.ggml.eos_token_id", Value::U32(2))
        .meta("tokenizer.chat_template", s(CHATML));
    w.tensor("token_embd.weight", &[d, vocab], GgmlType::Q8_0, quant::quantize_q8_0(&rand(d * vocab, 1.0)));
    for l in 0..nl {
        let p = |n: &str| format!("blk.{l}.{n}.weight");
        // GGUF dims are [in, out].
        w.tensor_f32(&p("attn_norm"), &[d], &vec![1.0; d]);
        w.tensor_f32(&p("attn_q"), &[d, d], &rand(d * d, 0.3));
        w.tensor_f32(&p("attn_k"), &[d, nkv * hd], &rand(d * nkv * hd, 0.3));
        w.tensor_f32(&p("attn_v"), &[d, nkv * hd], &rand(d * nkv * hd, 0.3));
        w.tensor(&p("attn_output"), &[d, d], GgmlType::Q4_1, quant::quantize_q4_1(&rand(d * d, 0.3)));
        w.tensor_f32(&p("ffn_norm"), &[d], &vec![1.0; d]);
        w.tensor_f32(&p("ffn_gate"), &[d, ff], &rand(d * ff, 0.3));
        w.tensor_f32(&p("ffn_up"), &[d, ff], &rand(d * ff, 0.3));
        w.tensor_f32(&p("ffn_down"), &[ff, d], &rand(ff * d, 0.3));
    }
    w.tensor_f32("output_norm.weight", &[d], &vec![1.0; d]);
    w.to_bytes()
}

pub fn tiny_engine() -> Engine {
    let dev = ember::backend::cpu_device();
    Engine::load(&tiny_model_bytes(), dev, Backend::Cpu, LoadOptions { max_context: 96, ..LoadOptions::default() }).unwrap()
}

fn greedy(max_tokens: usize) -> GenerateOptions {
    GenerateOptions { sampling: SamplingConfig::greedy(), max_tokens, stop: vec![], top_n: 5 }
}

/// Runs a generation to its end; returns (tokens, text, last stop reason).
fn run(e: &mut Engine, prompt: &Prompt, o: GenerateOptions) -> (Vec<u32>, String, Option<StopReason>) {
    e.start(prompt, o).unwrap();
    let (mut text, mut done) = (String::new(), None);
    while let Some(step) = e.next().unwrap() {
        text.push_str(&step.text);
        done = step.done;
    }
    (e.produced().to_vec(), text, done)
}

#[test]
fn generates_and_reports_the_distribution_of_each_step() {
    let mut e = tiny_engine();
    assert_eq!(e.info().name.as_deref(), Some("tiny test llama"));
    assert!(e.info().config.tied_embeddings);
    assert_eq!(e.info().n_params, e.info().config.n_params());
    let start = e.start(&Prompt::Text("the theme".into()), greedy(6)).unwrap();
    assert_eq!(start.reused, 0);
    let mut n = 0;
    while let Some(step) = e.next().unwrap() {
        n += 1;
        assert_eq!(step.top[0].token, step.token, "greedy picks the most probable");
        assert!(step.top.windows(2).all(|w| w[0].prob >= w[1].prob));
        let sum: f32 = step.top.iter().map(|c| c.prob).sum();
        assert!(sum <= 1.0 + 1e-5 && step.top.len() == 5);
    }
    assert!(n >= 1 && n <= 6);
    assert!(e.next().unwrap().is_none(), "a finished generation stays finished");
}

#[test]
fn max_tokens_ends_a_generation_and_stop_strings_cut_it() {
    let mut e = tiny_engine();
    let prompt = Prompt::Text("he the".into());
    let (ids, text, done) = run(&mut e, &prompt, greedy(12));
    if done == Some(StopReason::MaxTokens) {
        assert_eq!(ids.len(), 12);
    } else {
        assert_eq!(done, Some(StopReason::Eos));
    }
    // Stop at a piece of the greedy text: the output is exactly what came before it.
    let chars: Vec<char> = text.chars().collect();
    assert!(chars.len() >= 6, "greedy text too short for this test: {text:?}");
    let stop: String = chars[3..5].iter().collect();
    let before = &text[..text.find(&stop).unwrap()];
    let (_, cut, done) = run(&mut e, &prompt, GenerateOptions { stop: vec![stop.clone()], ..greedy(12) });
    assert_eq!(done, Some(StopReason::StopString));
    assert_eq!(cut, before, "stop string {stop:?}");
    assert_eq!(e.text(), before);
}

#[test]
fn the_same_seed_gives_the_same_tokens() {
    let mut e = tiny_engine();
    let o = |seed| GenerateOptions { sampling: SamplingConfig { temperature: 1.5, top_k: 0, top_p: 1.0, min_p: 0.0, seed, ..SamplingConfig::default() }, max_tokens: 16, stop: vec![], top_n: 1 };
    let p = Prompt::Text("the".into());
    let a = run(&mut e, &p, o(1)).0;
    e.reset();
    assert_eq!(a, run(&mut e, &p, o(1)).0);
    e.reset();
    assert_ne!(a, run(&mut e, &p, o(2)).0);
}

#[test]
fn follow_up_turns_reuse_the_cache_and_match_a_fresh_run() {
    let mut e = tiny_engine();
    let mut chat = vec![Message::new("user", "the he")];
    run(&mut e, &Prompt::Chat(chat.clone()), greedy(5));
    chat.push(Message::new("assistant", &e.text().to_string()));
    chat.push(Message::new("user", "he"));
    let start = e.start(&Prompt::Chat(chat.clone()), greedy(5)).unwrap();
    assert!(start.reused >= 5, "reused only {} tokens", start.reused);
    let mut reused = Vec::new();
    while let Some(s) = e.next().unwrap() {
        reused.push((s.token, s.top.iter().map(|c| c.prob).collect::<Vec<_>>()));
    }
    e.reset();
    assert_eq!(e.start(&Prompt::Chat(chat), greedy(5)).unwrap().reused, 0);
    let mut fresh = Vec::new();
    while let Some(s) = e.next().unwrap() {
        fresh.push((s.token, s.top.iter().map(|c| c.prob).collect::<Vec<_>>()));
    }
    assert_eq!(reused.len(), fresh.len());
    for ((ta, pa), (tb, pb)) in reused.iter().zip(&fresh) {
        assert_eq!(ta, tb);
        crate::assert_close(pa, pb, 1e-5, "probabilities with and without reuse");
    }
}

#[test]
fn stop_leaves_the_engine_reusable() {
    let mut e = tiny_engine();
    assert!(matches!(e.next(), Err(Error::NotStarted)));
    e.start(&Prompt::Text("the".into()), greedy(20)).unwrap();
    e.next().unwrap().unwrap();
    e.stop();
    assert!(e.next().unwrap().is_none());
    let (ids, _, _) = run(&mut e, &Prompt::Text("he".into()), greedy(3));
    assert!(!ids.is_empty());
    e.reset();
    assert!(e.cached_tokens().is_empty());
}

#[test]
fn a_full_context_is_a_clear_error_or_a_clean_end() {
    let mut e = tiny_engine();
    let long = "the ".repeat(120);
    match e.start(&Prompt::Text(long), greedy(4)) {
        Err(Error::ContextFull { limit: 96, .. }) => {}
        other => panic!("{other:?}"),
    }
    let (ids, _, done) = run(&mut e, &Prompt::Text("the ".repeat(40)), greedy(200));
    assert!(matches!(done, Some(StopReason::ContextFull) | Some(StopReason::Eos)), "{done:?}");
    assert!(ids.len() < 96 - 40);
}

#[test]
fn invalid_sampling_is_rejected_at_start() {
    let mut e = tiny_engine();
    let o = GenerateOptions { sampling: SamplingConfig { top_p: 0.0, ..SamplingConfig::default() }, ..Default::default() };
    assert!(matches!(e.start(&Prompt::Text("x".into()), o), Err(Error::Sampling { name: "top_p", .. })));
}

#[test]
fn model_file_errors_name_the_problem() {
    let dev = ember::backend::cpu_device();
    let load = |b: &[u8]| Engine::load(b, dev.clone(), Backend::Cpu, LoadOptions::default()).map(|_| ()).unwrap_err().to_string();
    // The Python-written fixture has no tokenizer.
    let no_tok = std::fs::read(crate::fixture("tiny-llama.gguf")).unwrap();
    assert!(load(&no_tok).contains("tokenizer.ggml.model"), "{}", load(&no_tok));
    // Truncating the tiny model cuts into a tensor.
    let bytes = tiny_model_bytes();
    let e = load(&bytes[..bytes.len() - 100]);
    assert!(e.contains("past the end of the file"), "{e}");
    assert!(load(b"not a model").contains("GGUF"));
}

#[test]
fn a_tokenizer_json_replaces_the_files_tokenizer() {
    let e = tiny_engine();
    let own = e.tokenizer().encode(" the").unwrap();
    assert_eq!(own.len(), 1, "\" the\" is one merged token: {own:?}");
    // The same tokenizer as JSON, without its last merge (\"Ġt he\" → \"Ġthe\").
    let mut json: serde_json::Value = serde_json::from_str(&e.tokenizer().to_json().unwrap()).unwrap();
    let merges = json["model"]["merges"].as_array_mut().unwrap();
    assert_eq!(merges.len(), 3);
    merges.pop();
    let options = LoadOptions { max_context: 96, tokenizer_json: Some(serde_json::to_vec(&json).unwrap()) };
    let e2 = Engine::load(&tiny_model_bytes(), ember::backend::cpu_device(), Backend::Cpu, options).unwrap();
    let ids = e2.tokenizer().encode(" the").unwrap();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(e2.tokenizer().decode(&ids).unwrap(), " the");
    assert_eq!(e2.tokenizer().eos(), Some(2), "BOS/EOS still come from the GGUF metadata");
    let bad = LoadOptions { tokenizer_json: Some(b"{not json".to_vec()), ..LoadOptions::default() };
    let err = Engine::load(&tiny_model_bytes(), ember::backend::cpu_device(), Backend::Cpu, bad).unwrap_err();
    assert!(err.to_string().starts_with("tokenizer:"), "{err}");
}
