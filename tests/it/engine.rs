//! The engine end to end on a tiny random llama that the test writes itself (GGUF with a
//! byte-level BPE tokenizer and a ChatML template): generation, stop conditions, seeds,
//! cache reuse, stop and reset.

use ember::sampling::SamplingConfig;
pub use ember::testkit::tiny_model_bytes;
use ember::{Backend, Engine, Error, GenerateOptions, LoadOptions, Message, Prompt, StopReason};

pub fn tiny_engine() -> Engine {
    let dev = ember::backend::Device::Cpu;
    Engine::load(&tiny_model_bytes(), dev, LoadOptions { max_context: 96, ..LoadOptions::default() }).unwrap()
}

/// The loop guard on its own: a stretch repeated back to back over the last max(4 · period, 32)
/// tokens is a loop; three repeats, 31 identical tokens, or a list whose items change are not.
#[test]
fn the_loop_guard_finds_repeated_stretches_only() {
    use ember::engine::repeating;
    let phrase: Vec<u32> = (100..107).collect(); // 7 tokens: 4 repeats = 28 < 32, so 5 are needed
    let times = |n: usize| -> Vec<u32> { std::iter::repeat_n(phrase.clone(), n).flatten().collect() };
    assert!(!repeating(&times(4)), "28 tokens of a 7-token phrase");
    assert!(repeating(&[&[1, 2, 3][..], &times(5)].concat()), "35 tokens of it, after other text");
    assert!(repeating(&[9; 32]), "32 identical tokens");
    assert!(!repeating(&[9; 31]), "31 identical tokens");
    let long: Vec<u32> = (200..240).collect(); // a 40-token stretch needs 160 tokens
    let long_times = |n: usize| -> Vec<u32> { std::iter::repeat_n(long.clone(), n).flatten().collect() };
    assert!(!repeating(&long_times(3)) && repeating(&long_times(4)));
    // "1. a\n2. b\n…": the shape repeats, the tokens do not.
    let list: Vec<u32> = (0..40u32).flat_map(|i| [1000 + i, 5, 2000 + i, 7]).collect();
    assert!(!repeating(&list));
}

/// Forced into a loop, an answer ends with `Repeating` at the 32nd identical token; with the
/// guard off it runs to the cap.
#[test]
fn a_looping_answer_stops_with_a_reason() {
    let prompt = Prompt::Text("the".into());
    for (guard, want_len, want) in [(true, 32, StopReason::Repeating), (false, 40, StopReason::MaxTokens)] {
        let mut e = tiny_engine();
        e.start(&prompt, GenerateOptions { stop_repeats: guard, ..greedy(40) }).unwrap();
        let mut last = None;
        while pollster::block_on(e.peek_async()).unwrap().is_some() {
            let step = e.commit(Some(100)).unwrap().unwrap();
            last = step.done;
            if last.is_some() {
                break;
            }
        }
        assert_eq!((e.produced().len(), last), (want_len, Some(want)), "guard {guard}");
    }
}

/// A model that can only loop (`testkit::tiny_loop_model_bytes`: it says "a" forever) is
/// stopped by the guard after 32 tokens, with the reason; the browser suite loads the same file
/// (`tests/artifacts/tiny-loop.gguf`) to see the notice and Continue.
#[test]
fn a_model_that_loops_is_stopped_by_the_guard() {
    let a = tiny_engine().tokenizer().encode("a").unwrap();
    assert_eq!(a.len(), 1);
    let bytes = ember::testkit::tiny_loop_model_bytes(a[0]);
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tiny-loop.gguf"), &bytes).unwrap();
    // The same made to end at once (it says <|im_end|>, id 2): the classroom's end-of-answer chip.
    std::fs::write(dir.join("tiny-eos.gguf"), ember::testkit::tiny_loop_model_bytes(2)).unwrap();
    let mut e = Engine::load(&bytes, ember::backend::Device::Cpu, LoadOptions { max_context: 128, ..LoadOptions::default() }).unwrap();
    let chat = Prompt::Chat(vec![Message::new("user", "hi")]);
    let (ids, text, done) = run(&mut e, &chat, GenerateOptions { stop_repeats: true, ..greedy(80) });
    assert_eq!((ids.len(), done), (32, Some(StopReason::Repeating)));
    assert_eq!(text, "a".repeat(32));
    e.reset();
    let (ids, _, done) = run(&mut e, &chat, greedy(80));
    assert_eq!((ids.len(), done), (80, Some(StopReason::MaxTokens)), "the guard off");
}

fn greedy(max_tokens: usize) -> GenerateOptions {
    GenerateOptions { sampling: SamplingConfig::greedy(), max_tokens, stop: vec![], top_n: 5, ignore_eos: false, stop_repeats: false, grammar: None }
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
    assert!((1..=6).contains(&n));
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
    let o = |seed| GenerateOptions {
        sampling: SamplingConfig { temperature: 1.5, top_k: 0, top_p: 1.0, min_p: 0.0, seed, ..SamplingConfig::default() },
        max_tokens: 16,
        stop: vec![],
        top_n: 1,
        ignore_eos: false,
        stop_repeats: false,
        grammar: None,
    };
    let p = Prompt::Text("the".into());
    let a = run(&mut e, &p, o(1)).0;
    e.reset();
    assert_eq!(a, run(&mut e, &p, o(1)).0);
    e.reset();
    assert_ne!(a, run(&mut e, &p, o(2)).0);
}

/// Each step carries its token's probability in the distribution it was drawn from (the API's
/// logprobs) and the token's own text: at temperature 1 with every filter off, the probability
/// is the model's softmax at the token (the logits read back separately), and it equals the
/// token's candidate entry wherever the candidates list it.
#[test]
fn a_step_carries_its_tokens_probability_and_text() {
    let mut e = tiny_engine();
    let sampling = SamplingConfig { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, repeat_penalty: 1.0, seed: 5, ..SamplingConfig::default() };
    let o = GenerateOptions { sampling, max_tokens: 6, stop: vec![], top_n: 8, ignore_eos: true, stop_repeats: false, grammar: None };
    let start = e.start(&Prompt::Text("the theme".into()), o).unwrap();
    let mut ids = start.prompt_ids.clone();
    let mut steps = Vec::new();
    while let Some(step) = e.next().unwrap() {
        ids.push(step.token);
        steps.push(step);
    }
    for (i, step) in steps.iter().enumerate() {
        let context = &ids[..start.prompt_ids.len() + i];
        let logits = e.logits(context).unwrap();
        let max = logits.iter().cloned().fold(f32::MIN, f32::max);
        let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
        let want = ((logits[step.token as usize] - max) as f64).exp() / sum;
        assert!((step.prob as f64 - want).abs() < 1e-5, "step {i}: prob {} vs softmax {want}", step.prob);
        if let Some(c) = step.top.iter().find(|c| c.token == step.token) {
            assert_eq!(c.prob, step.prob);
        }
        assert_eq!(step.piece, e.tokenizer().decode(&[step.token]).unwrap());
    }
}

#[test]
fn follow_up_turns_reuse_the_cache_and_match_a_fresh_run() {
    let mut e = tiny_engine();
    let mut chat = vec![Message::new("user", "the he")];
    run(&mut e, &Prompt::Chat(chat.clone()), greedy(5));
    chat.push(Message::new("assistant", e.text()));
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
    let dev = ember::backend::Device::Cpu;
    let load = |b: &[u8]| Engine::load(b, dev.clone(), LoadOptions::default()).map(|_| ()).unwrap_err().to_string();
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
    let options = LoadOptions { max_context: 96, tokenizer_json: Some(serde_json::to_vec(&json).unwrap()), ..LoadOptions::default() };
    let e2 = Engine::load(&tiny_model_bytes(), ember::backend::Device::Cpu, options).unwrap();
    let ids = e2.tokenizer().encode(" the").unwrap();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(e2.tokenizer().decode(&ids).unwrap(), " the");
    assert_eq!(e2.tokenizer().eos(), Some(2), "BOS/EOS still come from the GGUF metadata");
    let bad = LoadOptions { tokenizer_json: Some(b"{not json".to_vec()), ..LoadOptions::default() };
    let err = Engine::load(&tiny_model_bytes(), ember::backend::Device::Cpu, bad).unwrap_err();
    assert!(err.to_string().starts_with("tokenizer:"), "{err}");
}

fn conversation(turns: usize) -> Vec<Message> {
    let mut m = vec![Message::new("system", "be brief")];
    for i in 0..turns {
        m.push(Message::new("user", &format!("question {i} the")));
        m.push(Message::new("assistant", &format!("answer {i} he")));
    }
    m.push(Message::new("user", "last"));
    m
}

#[test]
fn fit_chat_leaves_out_the_oldest_turns_never_the_system_prompt() {
    let e = tiny_engine();
    // A short conversation fits whole.
    let short = conversation(1);
    let fit = e.fit_chat(&short, 8).unwrap();
    assert_eq!((fit.first, fit.dropped, fit.limit), (1, 0, 96));
    assert_eq!(fit.tokens, e.count_chat(&short).unwrap());
    assert_eq!(fit.tokens, fit.total_tokens);

    let long = conversation(12);
    let reserve = 20;
    let fit = e.fit_chat(&long, reserve).unwrap();
    assert!(fit.dropped > 0 && fit.total_tokens > fit.tokens);
    assert_eq!(long[fit.first].role, "user", "what is kept starts with a user turn");
    let kept: Vec<Message> = long[..1].iter().chain(&long[fit.first..]).cloned().collect();
    assert_eq!(kept[0].role, "system");
    assert_eq!(fit.tokens, e.count_chat(&kept).unwrap());
    assert!(fit.tokens + reserve <= fit.limit);
    // As much as fits is kept: one more turn would not fit.
    let earlier = (1..fit.first).rev().find(|&i| long[i].role == "user").unwrap();
    let more: Vec<Message> = long[..1].iter().chain(&long[earlier..]).cloned().collect();
    assert!(e.count_chat(&more).unwrap() + reserve > fit.limit);
    // The reserve is capped at a quarter of the window.
    assert_eq!(e.fit_chat(&long, 1000).unwrap().reserve, 24);
    // A last message that cannot fit is an error, not a silent cut.
    let huge = vec![Message::new("user", &"the ".repeat(200))];
    assert!(matches!(e.fit_chat(&huge, 8), Err(Error::ContextFull { .. })));
}

#[test]
fn a_chunked_prefill_gives_the_same_tokens_and_can_be_stopped_part_way() {
    let prompt = Prompt::Chat(conversation(1));
    let mut e = tiny_engine();
    let (want, _, _) = run(&mut e, &prompt, greedy(8));

    let mut e = tiny_engine();
    let start = e.start(&prompt, greedy(8)).unwrap();
    let n = start.prompt_ids.len();
    let mut left = usize::MAX;
    let mut calls = 0;
    while left > 0 {
        left = pollster::block_on(e.prefill_async(7)).unwrap();
        calls += 1;
    }
    assert_eq!(calls, (n - 1).div_ceil(7));
    assert_eq!(e.cached_tokens(), &start.prompt_ids[..n - 1]);
    let mut got = Vec::new();
    while let Some(step) = e.next().unwrap() {
        got.push(step.token);
    }
    assert_eq!(got, want);
    assert_eq!(e.stats().prefill_tokens, n);

    // Stopped after one chunk: the chunk stays cached and the next turn reuses it.
    let mut e = tiny_engine();
    e.start(&prompt, greedy(8)).unwrap();
    pollster::block_on(e.prefill_async(5)).unwrap();
    e.stop();
    assert!(e.next().unwrap().is_none());
    assert_eq!(e.cached_tokens(), &start.prompt_ids[..5]);
    let again = e.start(&prompt, greedy(8)).unwrap();
    assert_eq!(again.reused, 5);
}

#[test]
fn loading_reports_progress_and_refuses_a_model_too_large_for_the_device() {
    let bytes = tiny_model_bytes();
    let dev = ember::backend::Device::Cpu;
    let mut seen = Vec::new();
    let e = Engine::load_with_progress(&bytes, dev.clone(), LoadOptions::default(), &mut |d, t| seen.push((d, t))).unwrap();
    let n = ember::gguf::Gguf::parse(&bytes).unwrap().tensors.len();
    assert_eq!(seen, (1..=n).map(|d| (d, n)).collect::<Vec<_>>());
    // The CPU path holds the file's blocks (scales widened to f32): at most 1.2 × the file's
    // tensor data (the Q8_0 and Q4_1 tensors are not widened to f32's 4 bytes a weight).
    let weights = e.info().weight_bytes;
    let stored: u64 = ember::gguf::Gguf::parse(&bytes).unwrap().tensors.iter().map(|t| t.size as u64).sum();
    assert!(stored < weights && weights <= stored * 6 / 5, "{weights} bytes held for {stored} stored");

    // Loading holds the weights and, while it builds one, that tensor as read from the file.
    let largest = ember::gguf::Gguf::parse(&bytes).unwrap().tensors.iter().map(|t| t.size as u64).max().unwrap();
    let small = LoadOptions { memory_limit: Some(weights + largest - 1), ..LoadOptions::default() };
    let err = Engine::load(&bytes, dev.clone(), small).unwrap_err();
    assert!(matches!(err, Error::TooLarge { what: "this device's memory", .. }), "{err}");
    assert!(err.to_string().contains("too large"), "{err}");
    assert!(Engine::load(&bytes, dev.clone(), LoadOptions { memory_limit: Some(weights + largest), ..LoadOptions::default() }).is_ok());
    // The f32 feed-forward matrices (64 × 128) are the largest tensors on the GPU: the Q8_0
    // embedding (64 × vocab) stays in its blocks there, 72 bytes a row. (The limit is checked
    // before anything reaches the device.)
    let vocab = e.tokenizer().vocab_size() as u64;
    assert!(vocab * 72 < 64 * 128 * 4);
    let gpu = ember::backend::device(Backend::Wgpu).unwrap();
    let fits = LoadOptions { tensor_limit: Some(64 * 128 * 4), ..LoadOptions::default() };
    assert!(Engine::load(&bytes, gpu.clone(), fits).is_ok());
    let narrow = LoadOptions { tensor_limit: Some(64 * 128 * 4 - 1), ..LoadOptions::default() };
    let err = Engine::load(&bytes, gpu, narrow).unwrap_err();
    assert!(matches!(err, Error::TooLarge { what: "its largest GPU buffer", .. }), "{err}");
}

/// The browser tests run the same tiny model: its file goes to `tests/artifacts/`, and the
/// native engine's greedy tokens (on every backend) must equal `tests/fixtures/tiny-chat-greedy.json`,
/// which the wasm tests compare the browser's against. `EMBER_BLESS=1` rewrites the fixture.
#[test]
fn tiny_model_greedy_tokens_for_the_browser_tests() {
    let bytes = tiny_model_bytes();
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tiny-chat.gguf"), &bytes).unwrap();
    std::fs::write(dir.join("tiny-long.gguf"), ember::testkit::tiny_model_writer_with_context(1024).to_bytes()).unwrap();
    let messages = vec![Message::new("system", "be brief"), Message::new("user", "the theme")];
    let mut runs = Vec::new();
    for backend in crate::backends() {
        let dev = ember::backend::device(backend).unwrap();
        let mut e = Engine::load(&bytes, dev, LoadOptions::default()).unwrap();
        let (tokens, text, _) = run(&mut e, &Prompt::Chat(messages.clone()), greedy(12));
        runs.push((backend, tokens, text));
    }
    for (b, t, _) in &runs[1..] {
        assert_eq!(t, &runs[0].1, "{b:?} differs from the CPU");
    }
    let got = serde_json::json!({"messages": messages, "max_tokens": 12, "tokens": runs[0].1, "text": runs[0].2});
    let path = crate::fixture("tiny-chat-greedy.json");
    if std::env::var_os("EMBER_BLESS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
    }
    assert_eq!(crate::json("tiny-chat-greedy.json"), got, "native greedy tokens changed: the browser fixture is stale");
}

#[test]
fn peek_then_commit_steps_like_next_and_a_forced_token_continues_like_a_fresh_start() {
    let prompt = Prompt::Text("the theme".into());
    let mut e = tiny_engine();
    let (want, _, _) = run(&mut e, &prompt, greedy(6));

    let mut e = tiny_engine();
    let start = e.start(&prompt, greedy(6)).unwrap();
    let mut got = Vec::new();
    while let Some(cands) = pollster::block_on(e.peek_async()).unwrap() {
        // Peeking twice runs nothing again.
        let cached = e.cached_tokens().len();
        assert_eq!(pollster::block_on(e.peek_async()).unwrap().unwrap().len(), cands.len());
        assert_eq!(e.cached_tokens().len(), cached);
        let pipeline = e.pipeline(None, 5).unwrap();
        assert_eq!(pipeline.tokens[0].token, cands[0].token);
        let step = e.commit(None).unwrap().unwrap();
        assert_eq!(step.top.iter().map(|c| c.token).collect::<Vec<_>>(), cands.iter().map(|c| c.token).collect::<Vec<_>>());
        got.push(step.token);
        if step.done.is_some() {
            break;
        }
    }
    assert_eq!(got, want, "peek + commit = next");

    // Forcing the second-best first token, then greedy: the same as starting from those ids.
    let mut e = tiny_engine();
    e.start(&prompt, greedy(5)).unwrap();
    let second = pollster::block_on(e.peek_async()).unwrap().unwrap()[1].token;
    assert!(matches!(e.commit(Some(1_000_000)), Err(Error::Sampling { name: "token", .. })), "an id outside the vocabulary");
    assert_eq!(e.commit(Some(second)).unwrap().unwrap().token, second);
    let mut forced = vec![second];
    while let Some(s) = e.next().unwrap() {
        forced.push(s.token);
    }
    let mut ids = start.prompt_ids.clone();
    ids.push(second);
    let mut f = tiny_engine();
    let (fresh, _, _) = run(&mut f, &Prompt::Ids(ids), greedy(4));
    assert_eq!(&forced[1..], &fresh[..], "continuing after a forced token");
}

#[test]
fn the_pipeline_redraws_under_new_settings_without_running_the_model() {
    let mut e = tiny_engine();
    e.start(
        &Prompt::Text("he the".into()),
        GenerateOptions { sampling: SamplingConfig::default(), max_tokens: 4, stop: vec![], top_n: 10, ignore_eos: false, stop_repeats: false, grammar: None },
    )
    .unwrap();
    let cands = pollster::block_on(e.peek_async()).unwrap().unwrap();
    let cached = e.cached_tokens().to_vec();
    let p = e.pipeline(None, 10).unwrap();
    let last = &p.stages[4];
    for c in &cands {
        let i = p.tokens.iter().position(|t| t.token == c.token).unwrap();
        assert!((last.probs[i] - c.prob).abs() < 1e-6, "the last stage is the distribution peeked");
    }
    let narrow = SamplingConfig { top_k: 2, ..SamplingConfig::default() };
    let q = e.pipeline(Some(&narrow), 10).unwrap();
    assert!(q.stages[2].kept == 2 && q.stages[4].probs.iter().filter(|&&x| x > 0.0).count() <= 2);
    assert_eq!(e.cached_tokens(), &cached[..], "nothing ran");
    // New settings take effect for the draw.
    e.set_sampling(SamplingConfig { temperature: 0.0, ..narrow }).unwrap();
    assert_eq!(e.commit(None).unwrap().unwrap().token, q.tokens[0].token);
    assert!(e.set_sampling(SamplingConfig { top_p: 2.0, ..SamplingConfig::default() }).is_err());
}

#[test]
fn the_model_card_names_the_maker_languages_and_training_data_when_the_file_does() {
    use ember::gguf::Value;
    let s = |x: &str| Value::String(x.into());
    let e = tiny_engine();
    assert_eq!((e.info().organization.as_deref(), e.info().languages.len(), e.info().datasets.len()), (None, 0, 0));
    let bytes = ember::testkit::tiny_model_with(&[
        ("general.license", s("apache-2.0")),
        ("general.organization", s("Test Org")),
        ("general.languages", Value::Array(vec![s("en"), s("zh")])),
        ("general.dataset.count", Value::U32(2)),
        ("general.dataset.0.name", s("FineWeb-Edu")),
        ("general.dataset.1.name", s("The Stack")),
    ]);
    let e = Engine::load(&bytes, ember::backend::Device::Cpu, LoadOptions::default()).unwrap();
    let i = e.info();
    assert_eq!(i.license.as_deref(), Some("apache-2.0"));
    assert_eq!(i.organization.as_deref(), Some("Test Org"));
    assert_eq!(i.languages, ["en", "zh"]);
    assert_eq!(i.datasets, ["FineWeb-Edu", "The Stack"]);
    let legacy = ember::testkit::tiny_model_with(&[("general.datasets", Value::Array(vec![s("a"), s("b")]))]);
    let e = Engine::load(&legacy, ember::backend::Device::Cpu, LoadOptions::default()).unwrap();
    assert_eq!(e.info().datasets, ["a", "b"]);
}

/// End-of-sequence ends a generation, unless `ignore_eos` (benchmarks run a fixed length):
/// then it is one more token and the generation runs to `max_tokens`.
#[test]
fn ignore_eos_runs_past_end_of_sequence() {
    let mut e = tiny_engine();
    let eos = e.tokenizer().eos().unwrap();
    for ignore_eos in [false, true] {
        e.reset();
        e.start(&Prompt::Text("the theme".into()), GenerateOptions { ignore_eos, ..greedy(4) }).unwrap();
        pollster::block_on(e.peek_async()).unwrap();
        let step = e.commit(Some(eos)).unwrap().unwrap();
        assert_eq!(step.done, if ignore_eos { None } else { Some(StopReason::Eos) }, "ignore_eos {ignore_eos}");
        let mut n = 1;
        while let Some(step) = e.next().unwrap() {
            n += 1;
            if step.done.is_some() {
                assert_eq!(step.done, Some(StopReason::MaxTokens));
            }
        }
        assert_eq!(n, if ignore_eos { 4 } else { 1 }, "tokens with ignore_eos {ignore_eos}");
    }
}
