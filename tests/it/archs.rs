//! Llama, Qwen2, Qwen3, Gemma 3, SmolLM3, Phi-3 and GPT-2, each as a Hugging Face folder and as GGUF, against `transformers`:
//! tiny random models and the logits, greedy continuations and token ids that `transformers`
//! and `tokenizers` gave for them (`tests/fixtures/make_hf_models.py`).

use ember::engine::load_file;
use ember::hf::HfFolder;
use ember::model::{rope_interleave, Arch, DecoderConfig, Llama3Rope, LongRope};
use ember::{Engine, GenerateOptions, LoadOptions, Message, Prompt, SamplingConfig};
use serde_json::Value;

use crate::{assert_close, backends, fixture, json, u32s};

/// The fixtures: `llama3` is a Llama with Llama 3's RoPE scaling and tokenizer.
const ARCHS: [&str; 8] = ["llama", "qwen2", "gpt2", "qwen3", "llama3", "gemma3", "smollm3", "phi3"];
/// Logits are f32 on both sides; the models are tiny, so sums are short.
const TOL: f32 = 2e-4;

fn options() -> LoadOptions {
    LoadOptions { max_context: 128, ..LoadOptions::default() }
}

/// Each model in both formats on every test backend, with its fixture.
fn each(mut f: impl FnMut(&str, &str, &mut Engine, &Value)) {
    for arch in ARCHS {
        let fx = json(&format!("hf/{arch}.json"));
        for b in backends() {
            for (format, path) in [("folder", fixture(&format!("hf/{arch}"))), ("gguf", fixture(&format!("hf/{arch}.gguf")))] {
                let mut e = load_file(&path, b, options()).unwrap_or_else(|e| panic!("{arch} {format} on {b:?}: {e}"));
                f(arch, &format!("{arch} {format} on {b:?}"), &mut e, &fx);
            }
        }
    }
}

#[test]
fn logits_match_transformers_in_both_formats() {
    each(|_, what, e, fx| {
        // A case past the context first trained on has a test of its own (a longer context).
        for case in fx["cases"].as_array().unwrap().iter().filter(|c| c["long"].is_null()) {
            let ids = u32s(&case["ids"]);
            for (n, want) in case["logits"].as_object().unwrap() {
                let n: usize = n.parse().unwrap();
                let got = e.logits(&ids[..n]).unwrap();
                assert_close(&got, &crate::f32s(want), TOL, &format!("{what}, {n} of {} tokens", ids.len()));
            }
        }
    });
}

#[test]
fn greedy_continuations_match_transformers() {
    each(|_, what, e, fx| {
        let messages: Option<Vec<Message>> = fx["chat"].as_object().map(|c| serde_json::from_value(c["messages"].clone()).unwrap());
        let encodings = fx["encodings"].as_array().unwrap();
        // The cases' prompts: texts 1 and 3, then the conversation.
        let mut prompts = vec![Prompt::Text(encodings[1]["text"].as_str().unwrap().into()), Prompt::Text(encodings[3]["text"].as_str().unwrap().into())];
        prompts.extend(messages.map(Prompt::Chat));
        for (prompt, case) in prompts.iter().zip(fx["cases"].as_array().unwrap()) {
            let want = u32s(&case["greedy"]);
            let options = GenerateOptions { sampling: SamplingConfig::greedy(), max_tokens: want.len(), ..GenerateOptions::default() };
            let start = e.generate(prompt, options, |_| {}).unwrap();
            assert_eq!(start.prompt_ids, u32s(&case["ids"]), "{what}: prompt tokens");
            assert_eq!(e.produced(), want, "{what}: greedy continuation");
            e.reset();
        }
    });
}

#[test]
fn tokenizers_match_python_tokenizers_and_templates_render() {
    each(|_, what, e, fx| {
        // A tokenizer that adds BOS (Gemma's) puts it before the text's own ids.
        let bos: Vec<u32> = if fx["add_bos"].as_bool().unwrap_or(false) { e.tokenizer().bos().into_iter().collect() } else { vec![] };
        assert_eq!(bos.len(), usize::from(fx["add_bos"].as_bool().unwrap_or(false)), "{what}: BOS");
        for enc in fx["encodings"].as_array().unwrap() {
            let text = enc["text"].as_str().unwrap();
            assert_eq!(e.tokenizer().encode(text).unwrap(), [&bos[..], &u32s(&enc["ids"])].concat(), "{what}: ids of {text:?}");
            assert_eq!(e.tokenizer().decode(&u32s(&enc["ids"])).unwrap(), text, "{what}: decoding {text:?}");
        }
        let mut stops = e.tokenizer().stop_ids().to_vec();
        stops.sort_unstable();
        assert_eq!(stops, u32s(&fx["stops"]), "{what}: stop tokens");
        match fx["chat"].as_object() {
            Some(chat) => {
                let messages: Vec<Message> = serde_json::from_value(chat["messages"].clone()).unwrap();
                assert_eq!(e.render_chat(&messages).unwrap(), chat["text"].as_str().unwrap(), "{what}: rendered chat");
                assert!(e.info().has_chat_template);
                // A reasoning model's thinking switch, and its earlier turns' reasoning, as jinja2 renders them.
                let variants = fx["chat_variants"].as_array().unwrap();
                assert_eq!(e.info().thinking, !variants.is_empty(), "{what}: a thinking switch");
                for v in variants {
                    let messages: Vec<Message> = serde_json::from_value(v["messages"].clone()).unwrap();
                    e.set_thinking(v["enable_thinking"].as_bool());
                    assert_eq!(e.render_chat(&messages).unwrap(), v["text"].as_str().unwrap(), "{what}: thinking {}", v["enable_thinking"]);
                    let want = u32s(&v["greedy"]);
                    let options = GenerateOptions { sampling: SamplingConfig::greedy(), max_tokens: want.len(), ..GenerateOptions::default() };
                    e.generate(&Prompt::Chat(messages), options, |_| {}).unwrap();
                    assert_eq!(e.produced(), want, "{what}: greedy answer with thinking {}", v["enable_thinking"]);
                    e.reset();
                }
                e.set_thinking(None);
            }
            None => {
                // A base model: completion mode continues the turns' text, system prompt left out.
                assert!(!e.info().has_chat_template, "{what}: a base model");
                let turns = [
                    Message::new("system", "Be brief."),
                    Message::new("user", "Once upon"),
                    Message::new("assistant", " a time"),
                    Message::new("user", " there"),
                ];
                assert_eq!(e.render_chat(&turns).unwrap(), "Once upon a time there", "{what}");
            }
        }
    });
}

#[test]
fn the_model_card_shows_each_architecture() {
    each(|arch, what, e, fx| {
        let info = e.info();
        let c = &fx["config"];
        let u = |k: &str| c[k].as_u64().unwrap() as usize;
        let want = if arch == "gpt2" {
            DecoderConfig::new(u("n_layer"), u("n_embd"), u("n_head"), u("n_head"), u("n_inner"), u("vocab_size"), u("n_positions"))
                .with_arch(Arch::Gpt2)
                .with_norm_eps(c["layer_norm_epsilon"].as_f64().unwrap())
        } else {
            let rope = &c["rope_parameters"];
            let want = DecoderConfig::new(
                u("num_hidden_layers"),
                u("hidden_size"),
                u("num_attention_heads"),
                u("num_key_value_heads"),
                u("intermediate_size"),
                u("vocab_size"),
                u("max_position_embeddings"),
            )
            .with_arch(Arch::parse(fx["architecture"].as_str().unwrap()).unwrap())
            .with_norm_eps(c["rms_norm_eps"].as_f64().unwrap())
            .with_head_width(c["head_dim"].as_u64().map(|h| h as usize));
            if arch == "gemma3" {
                let theta = |kind: &str| rope[kind]["rope_theta"].as_f64().unwrap();
                want.with_rope_theta(theta("full_attention"))
                    .with_sliding_window(Some(u("sliding_window")))
                    .with_swa_pattern(6)
                    .with_rope_theta_local(Some(theta("sliding_attention")))
            } else if arch == "phi3" {
                let floats = |k: &str| rope[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect::<Vec<_>>();
                let orig = u("original_max_position_embeddings");
                let attn = LongRope::default_attn_factor(u("max_position_embeddings") as f64 / orig as f64, orig);
                let rot = (c["hidden_size"].as_f64().unwrap() / c["num_attention_heads"].as_f64().unwrap() * rope["partial_rotary_factor"].as_f64().unwrap())
                    as usize;
                // A GGUF file holds the factors as tensors, and the attention factor as an f32.
                let (attn, factors) =
                    if what.contains("gguf") { (attn as f32 as f64, None) } else { (attn, Some((floats("short_factor"), floats("long_factor")))) };
                want.with_rope_theta(rope["rope_theta"].as_f64().unwrap()).with_rope_dims(Some(rot)).with_longrope(Some(LongRope {
                    original_context: orig,
                    attn_factor: attn,
                    factors,
                }))
            } else {
                let want = if arch == "smollm3" { want.with_nope_interval(Some(u("no_rope_layer_interval"))) } else { want };
                want.with_rope_theta(c["rope_theta"].as_f64().or(rope["rope_theta"].as_f64()).unwrap()).with_rope_llama3(rope.as_object().map(|r| Llama3Rope {
                    factor: r["factor"].as_f64().unwrap(),
                    low_freq_factor: r["low_freq_factor"].as_f64().unwrap(),
                    high_freq_factor: r["high_freq_factor"].as_f64().unwrap(),
                    original_context: r["original_max_position_embeddings"].as_f64().unwrap(),
                }))
            }
        };
        let gguf = what.contains("gguf");
        // GGUF stores epsilon as f32; llama.cpp's converter writes GPT-2's tied head out as a copy.
        // A GGUF file holds Llama 3's RoPE scaling as a tensor, not as parameters.
        let want = if gguf { want.clone().with_norm_eps(want.norm_eps as f32 as f64).with_rope_llama3(None) } else { want };
        let tied = !(arch == "llama" || arch == "phi3" || (arch == "gpt2" && gguf));
        assert_eq!(info.config, want.with_tied_embeddings(tied), "{what}");
        assert_eq!(info.architecture, fx["architecture"].as_str().unwrap(), "{what}");
        assert_eq!(info.format, if gguf { "GGUF" } else { "safetensors" }, "{what}");
        let extra_head = if arch == "gpt2" && gguf { u("vocab_size") * u("n_embd") } else { 0 };
        assert_eq!(info.n_params, fx["n_params"].as_u64().unwrap() as usize + extra_head, "{what}: parameters (transformers counts)");
        assert_eq!(info.n_params, info.config.n_params(), "{what}: the shape's own count");
        if !gguf {
            let dtype = match arch {
                "llama" | "qwen3" | "llama3" | "gemma3" | "smollm3" | "phi3" => "F32",
                "qwen2" => "BF16",
                _ => "F16",
            };
            assert_eq!(info.tensor_types.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), [dtype], "{what}");
        }
    });
}

/// The permutation on its own, against the numpy expression convert_hf_to_gguf.py uses
/// (`w.reshape(heads, 2, hd/2, cols).swapaxes(1, 2).reshape(w.shape)`), written out for 2 heads
/// of width 4 and 1 column: row r of head h holds 10·h + r.
#[test]
fn rope_interleave_is_convert_hf_to_gguf_permute() {
    let x: Vec<f32> = (0..2).flat_map(|h| (0..4).map(move |r| (10 * h + r) as f32)).collect();
    // Per head, half-split rows [0, 1 | 2, 3] pair (0, 2) and (1, 3): interleaved, 0 2 1 3.
    assert_eq!(rope_interleave(&x, 2, 4, 4, 1), [0., 2., 1., 3., 10., 12., 11., 13.]);
    // With columns, whole rows move.
    let x2: Vec<f32> = x.iter().flat_map(|&v| [v, -v]).collect();
    assert_eq!(rope_interleave(&x2, 2, 4, 4, 2)[..4], [0., -0., 2., -2.]);
    // Partial rotary (2 of 4 dims rotate): rows 0 and 1 pair up (already in order), 2 and 3 stay.
    let x3: Vec<f32> = (0..6).map(|r| r as f32).collect();
    assert_eq!(rope_interleave(&x3, 1, 6, 4, 1), [0., 2., 1., 3., 4., 5.]);
    assert_eq!(rope_interleave(&x, 2, 4, 2, 1), x, "one rotating pair of rows 0 and 1 is already interleaved");
}

/// Past the context first trained on, LongRoPE uses its long factors (a model loaded with a
/// context of 256 against Phi-3's 128): the last logits of a 140-token prompt equal
/// transformers', which switches to the long factors for such a sequence. Loaded for 128
/// positions (the short factors), the prompt is refused as too long.
#[test]
fn phi3_uses_the_long_factors_past_its_first_context() {
    let fx = json("hf/phi3.json");
    let case = fx["cases"].as_array().unwrap().iter().find(|c| c["long"].as_bool() == Some(true)).expect("a long case");
    let ids = u32s(&case["ids"]);
    let want = crate::f32s(&case["logits"][ids.len().to_string().as_str()]);
    for b in backends() {
        for path in [fixture("hf/phi3"), fixture("hf/phi3.gguf")] {
            let what = format!("{} on {b:?}", path.display());
            let mut e = load_file(&path, b, LoadOptions { max_context: 256, ..LoadOptions::default() }).unwrap();
            assert_close(&e.logits(&ids).unwrap(), &want, TOL, &what);
            let mut short = load_file(&path, b, options()).unwrap();
            assert!(short.logits(&ids).is_err(), "{what}: 140 tokens in a context of 128");
        }
    }
}

/// Without the permutation, the Hugging Face Llama folder gives other logits: the golden
/// test above would catch a loader that skipped it.
#[test]
fn the_permutation_matters() {
    let fx = json("hf/llama.json");
    let case = &fx["cases"][0];
    let ids = u32s(&case["ids"]);
    let want = crate::f32s(&case["logits"][ids.len().to_string().as_str()]);
    // The GGUF copy holds permuted Q/K rows; read as if it were half-split (qwen2's rule), the
    // rotation pairs the wrong dims.
    let bytes = std::fs::read(fixture("hf/llama.gguf")).unwrap();
    let mut w = ember::gguf::writer::GgufWriter::from_gguf(&ember::gguf::Gguf::parse(&bytes).unwrap());
    w.set_meta("general.architecture", ember::gguf::Value::String("qwen2".into()));
    for k in [
        "block_count",
        "context_length",
        "embedding_length",
        "feed_forward_length",
        "attention.head_count",
        "attention.head_count_kv",
        "attention.layer_norm_rms_epsilon",
        "rope.freq_base",
        "rope.dimension_count",
    ] {
        let v = w.get_meta(&format!("llama.{k}")).unwrap().clone();
        w.set_meta(&format!("qwen2.{k}"), v);
        w.remove_meta(&format!("llama.{k}"));
    }
    // qwen2 also wants q/k/v biases: give zeros, which change nothing.
    let (d, kv) = (32usize, 16usize);
    for l in 0..2 {
        for (t, n) in [("attn_q", d), ("attn_k", kv), ("attn_v", kv)] {
            w.tensor_f32(&format!("blk.{l}.{t}.bias"), &[n], &vec![0.0; n]);
        }
    }
    let mut e = Engine::load(&w.to_bytes(), ember::backend::Device::Cpu, options()).unwrap();
    let got = e.logits(&ids).unwrap();
    let (d, _) = crate::max_diff(&got, &want);
    assert!(d > 100.0 * TOL, "permuting twice should change the logits (max |Δ| = {d})");
}

#[test]
fn bad_folders_fail_with_the_file_or_tensor_named() {
    let dir = fixture("hf/qwen2");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let files = |skip: &str, extra: Vec<(&str, Vec<u8>)>| {
        let mut v: Vec<(String, Vec<u8>)> = ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "model.safetensors"]
            .into_iter()
            .filter(|n| *n != skip)
            .map(|n| (n.to_string(), read(n)))
            .collect();
        v.extend(extra.into_iter().map(|(n, b)| (n.to_string(), b)));
        HfFolder::new(v)
    };
    let load = |f: HfFolder| Engine::load_hf(&f, ember::backend::Device::Cpu, options(), &mut |_, _| {}).unwrap_err().to_string();
    assert!(load(files("config.json", vec![])).contains("config.json"));
    assert!(load(files("tokenizer.json", vec![])).contains("tokenizer.json"));
    assert!(load(files("model.safetensors", vec![])).contains("model.safetensors"));
    let cfg = |edit: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut c: serde_json::Map<String, Value> = serde_json::from_slice(&read("config.json")).unwrap();
        edit(&mut c);
        serde_json::to_vec(&c).unwrap()
    };
    let with_config = |c: Vec<u8>| {
        let mut f: Vec<(String, Vec<u8>)> = files("config.json", vec![]).names().map(|n| (n.to_string(), read(n))).collect();
        f.push(("config.json".into(), c));
        load(HfFolder::new(f))
    };
    let e = with_config(cfg(&|c| {
        c.insert("model_type".into(), "mamba".into());
    }));
    assert!(e.contains("architecture `mamba`"), "{e}");
    let e = with_config(cfg(&|c| {
        c.remove("hidden_size");
    }));
    assert!(e.contains("hidden_size"), "{e}");
    let e = with_config(cfg(&|c| {
        c.insert("rope_scaling".into(), serde_json::json!({"rope_type": "yarn", "factor": 4.0}));
    }));
    assert!(e.contains("RoPE scaling"), "{e}");
    // A block the weights lack: its first tensor is named.
    let e = with_config(cfg(&|c| {
        c.insert("num_hidden_layers".into(), 3.into());
    }));
    assert!(e.contains("model.layers.2.") && e.contains("missing"), "{e}");
    // Llama weights with a Qwen2 config: q_proj.bias missing. And a GPT-2 config: unexpected names.
    let llama = fixture("hf/llama");
    let mut f: Vec<(String, Vec<u8>)> = std::fs::read_dir(&llama)
        .unwrap()
        .map(|p| p.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    let c = f.iter_mut().find(|(n, _)| n == "config.json").unwrap();
    let mut cj: serde_json::Map<String, Value> = serde_json::from_slice(&c.1).unwrap();
    cj.insert("model_type".into(), "qwen2".into());
    c.1 = serde_json::to_vec(&cj).unwrap();
    let e = load(HfFolder::new(f.clone()));
    assert!(e.contains("self_attn.q_proj.bias") && e.contains("missing"), "{e}");
    // A shard the index names is absent.
    f.retain(|(n, _)| n != "model-00002-of-00004.safetensors");
    let e = load(HfFolder::new(f));
    assert!(e.contains("model-00002-of-00004.safetensors"), "{e}");
}

/// Qwen2's q/k/v biases where wgpu stacks the three products (quantised weights of one type:
/// one product, then the three biases end to end, then the fused attention step). With Q8_0
/// q/k/v, wgpu's prompt logits and greedy tokens (each a one-token step) equal the CPU's, which
/// adds each bias after its own product; the biases are random, so a dropped or misplaced one
/// would show.
#[test]
fn qwen2_biases_on_the_stacked_product() {
    use ember::gguf::{quant::quantize_q8_0, writer::GgufWriter, GgmlType, Gguf};
    let bytes = std::fs::read(fixture("hf/qwen2.gguf")).unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    let mut w = GgufWriter::from_gguf(&g);
    let n_layer = g.metadata.req::<u32>("qwen2.block_count").unwrap() as usize;
    for l in 0..n_layer {
        for t in ["attn_q", "attn_k", "attn_v"] {
            let name = format!("blk.{l}.{t}.weight");
            let x = g.tensor(&name).unwrap().unwrap().to_f32().unwrap();
            w.edit_tensor(&name, |_, _, ty, data| {
                *ty = GgmlType::Q8_0;
                *data = quantize_q8_0(&x);
            });
        }
    }
    let file = w.to_bytes();
    // Kept for counting its GPU calls (`ember generate --stats`; README, Speed).
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("qwen2-q8_0-qkv.gguf"), &file).unwrap();
    let ids = u32s(&json("hf/qwen2.json")["cases"][0]["ids"]);
    let run = |backend| {
        let device = ember::backend::device(backend).unwrap();
        let mut e = Engine::load(&file, device, options()).unwrap();
        let logits = e.logits(&ids).unwrap();
        e.reset();
        let options = GenerateOptions { sampling: SamplingConfig::greedy(), max_tokens: 8, ignore_eos: true, ..GenerateOptions::default() };
        e.generate(&Prompt::Text("the theme".into()), options, |_| {}).unwrap();
        (logits, e.produced().to_vec())
    };
    let (cpu, cpu_ids) = run(ember::Backend::Cpu);
    for b in backends().into_iter().filter(|&b| b == ember::Backend::Wgpu) {
        let (gpu, gpu_ids) = run(b);
        // The CPU rounds x to 16 bits inside its products; wgpu keeps f32.
        assert_close(&gpu, &cpu, 2e-3, "qwen2 with Q8_0 q/k/v: wgpu against the CPU");
        assert_eq!(gpu_ids, cpu_ids, "qwen2 with Q8_0 q/k/v: greedy tokens, wgpu against the CPU");
    }
}
