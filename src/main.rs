//! `ember`: the native command line on the same engine as the browser app.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ember::engine::{load_file, Stats};
use ember::{Backend, Engine, GenerateOptions, LoadOptions, Message, Prompt, SamplingConfig};

const USAGE: &str = "usage:
  ember generate --model F --prompt T [--max-tokens N] [--temperature X] [--top-k K] [--top-p P]
                 [--min-p P] [--repeat-penalty R] [--seed S] [--stop S]... [--backend cpu|wgpu] [--json]
                 [--tokenizer tokenizer.json] [--ignore-eos] [--repeat N] [--threads N] [--stats]
                 [--json-schema FILE]
  ember chat     --model F [--system S] [--max-tokens N] [--backend cpu|wgpu] [--threads N] [sampling options as above]
  ember tokenize --model F --text T [--json]
  ember info     --model F [--json]

--model is a GGUF file or a Hugging Face model folder (config.json, model.safetensors or its
shards with the index, tokenizer.json, tokenizer_config.json, generation_config.json); Llama,
Qwen2, Qwen3, Gemma 3, SmolLM3, Phi-3 and GPT-2 models run. It defaults to $EMBER_MODEL, else models/SmolLM2-135M-Instruct.Q4_1.gguf
(fetch it with models/fetch.sh). A base model (no chat template) continues text: chat joins the
turns as one document (completion mode). --temperature 0 is greedy. --threads N (default: every
core) splits the CPU's work, with the same results. --json-schema FILE holds the answer to JSON valid against that schema. --stats counts wgpu's calls (dispatches,
submits, bind groups, host writes, readbacks) per prompt token and per decoded token. In chat, Ctrl-C stops the answer; Ctrl-D or /exit
quits, /reset starts a new conversation.";

const DEFAULT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// A usage error (exit 2) or a runtime error (exit 1).
enum Fail {
    Usage(String),
    Run(String),
}

impl From<ember::Error> for Fail {
    fn from(e: ember::Error) -> Self {
        Fail::Run(e.to_string())
    }
}

struct Args {
    items: Vec<String>,
}

impl Args {
    /// Takes `--name value`; the value must be present.
    fn value(&mut self, name: &str) -> Result<Option<String>, Fail> {
        let Some(i) = self.items.iter().position(|a| a == name) else { return Ok(None) };
        if i + 1 >= self.items.len() {
            return Err(Fail::Usage(format!("{name} needs a value")));
        }
        let v = self.items.remove(i + 1);
        self.items.remove(i);
        Ok(Some(v))
    }
    fn values(&mut self, name: &str) -> Result<Vec<String>, Fail> {
        let mut out = Vec::new();
        while let Some(v) = self.value(name)? {
            out.push(v);
        }
        Ok(out)
    }
    fn parsed<T: std::str::FromStr>(&mut self, name: &str) -> Result<Option<T>, Fail> {
        self.value(name)?.map(|v| v.parse::<T>().map_err(|_| Fail::Usage(format!("{name}: `{v}` is not a valid value")))).transpose()
    }
    fn flag(&mut self, name: &str) -> bool {
        let found = self.items.iter().position(|a| a == name);
        found.map(|i| self.items.remove(i)).is_some()
    }
    fn finish(&self) -> Result<(), Fail> {
        match self.items.first() {
            Some(a) => Err(Fail::Usage(format!("unexpected argument `{a}`"))),
            None => Ok(()),
        }
    }
}

fn model_path(args: &mut Args) -> Result<PathBuf, Fail> {
    let path = args.value("--model")?.or_else(|| std::env::var("EMBER_MODEL").ok()).unwrap_or_else(|| DEFAULT_MODEL.into());
    let path = PathBuf::from(path);
    if !path.exists() {
        return Err(Fail::Run(format!("model file {} not found (run models/fetch.sh for the default model, or pass --model)", path.display())));
    }
    Ok(path)
}

fn backend(args: &mut Args) -> Result<Backend, Fail> {
    match args.value("--backend")? {
        None => Ok(Backend::Cpu),
        Some(b) => Backend::parse(&b).ok_or_else(|| Fail::Usage(format!("--backend: `{b}` is not cpu or wgpu"))),
    }
}

fn sampling(args: &mut Args, defaults: SamplingConfig) -> Result<SamplingConfig, Fail> {
    fn set<T: std::str::FromStr>(args: &mut Args, name: &str, slot: &mut T) -> Result<(), Fail> {
        if let Some(v) = args.parsed(name)? {
            *slot = v;
        }
        Ok(())
    }
    let mut s = defaults;
    set(args, "--temperature", &mut s.temperature)?;
    set(args, "--top-k", &mut s.top_k)?;
    set(args, "--top-p", &mut s.top_p)?;
    set(args, "--min-p", &mut s.min_p)?;
    set(args, "--repeat-penalty", &mut s.repeat_penalty)?;
    set(args, "--seed", &mut s.seed)?;
    s.validate()?;
    Ok(s)
}

/// Loads the model, with `--tokenizer tokenizer.json` replacing the file's own tokenizer.
fn load(args: &mut Args, path: &std::path::Path, backend: Backend) -> Result<Engine, Fail> {
    let tokenizer_json = match args.value("--tokenizer")? {
        Some(p) => Some(std::fs::read(&p).map_err(|e| Fail::Run(format!("{p}: {e}")))?),
        None => None,
    };
    threads(args)?;
    args.finish()?;
    Ok(load_file(path, backend, LoadOptions { tokenizer_json, ..LoadOptions::default() })?)
}

/// `--threads N` (default: every core): the CPU products split their rows among N threads. The
/// results do not depend on it.
fn threads(args: &mut Args) -> Result<(), Fail> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let n: usize = args.parsed("--threads")?.unwrap_or(cores);
    if n == 0 {
        return Err(Fail::Usage("--threads: at least 1".into()));
    }
    ember::model::pool::set_threads(n);
    Ok(())
}

fn cmd_generate(mut args: Args) -> Result<(), Fail> {
    let path = model_path(&mut args)?;
    let prompt = args.value("--prompt")?.ok_or_else(|| Fail::Usage("generate needs --prompt".into()))?;
    let max_tokens = args.parsed("--max-tokens")?.unwrap_or(128);
    let sampling = sampling(&mut args, SamplingConfig::default())?;
    let stop = args.values("--stop")?;
    let backend = backend(&mut args)?;
    let json = args.flag("--json");
    let ignore_eos = args.flag("--ignore-eos");
    // Structured output: the answer is JSON valid against the schema in this file.
    let grammar = match args.value("--json-schema")? {
        Some(file) => {
            let text = std::fs::read_to_string(&file).map_err(|e| Fail::Run(format!("--json-schema {file}: {e}")))?;
            let schema = serde_json::from_str(&text).map_err(|e| Fail::Run(format!("--json-schema {file}: not JSON ({e})")))?;
            Some(ember::grammar::Grammar::JsonSchema { schema })
        }
        None => None,
    };
    // Counting needs the logger before the device starts; the CPU makes no GPU calls.
    let stats = args.flag("--stats") && backend == Backend::Wgpu;
    if stats && !ember::gpu_calls::install() {
        return Err(Fail::Run("--stats: wgpu's calls cannot be counted (another logger is installed)".into()));
    }
    // Benchmarks: the same generation several times in one process, from an empty cache each time.
    let repeat: Option<usize> = args.parsed("--repeat")?;
    let t0 = std::time::Instant::now();
    let mut engine = load(&mut args, &path, backend)?;
    let load_s = t0.elapsed().as_secs_f64();
    for _ in 0..repeat.unwrap_or(1).max(1) {
        engine.reset();
        let options =
            GenerateOptions { sampling: sampling.clone(), max_tokens, stop: stop.clone(), top_n: 0, ignore_eos, stop_repeats: true, grammar: grammar.clone() };
        // The JSON line keeps its documented keys; `--repeat` (the benchmark) adds its counts.
        generate_once(&mut engine, &prompt, options, (json, stats), backend, repeat.map(|_| load_s))?;
    }
    Ok(())
}

/// One generation; with `stats` (wgpu), wgpu's calls per token are counted and reported.
fn generate_once(
    engine: &mut Engine,
    prompt: &str,
    options: GenerateOptions,
    (json, stats): (bool, bool),
    backend: Backend,
    load_s: Option<f64>,
) -> Result<(), Fail> {
    let mut out = std::io::stdout();
    let constrained = options.grammar.is_some();
    let start = engine.start(&Prompt::Text(prompt.to_string()), options)?;
    // Counting as the browser's worker does: the prompt but its last token, then one step per
    // token, the first of which runs that last prompt token (so it is not counted as decoding).
    // Otherwise the first step runs the whole prompt, one pass (as the speed figures always did).
    let at_start = ember::gpu_calls::snapshot();
    if stats {
        pollster::block_on(engine.prefill_async(usize::MAX))?;
    }
    let (after_prefill, prefilled) = (ember::gpu_calls::snapshot(), engine.stats().prefill_tokens);
    let (mut after_first, mut steps) = (at_start, 0usize);
    while let Some(step) = engine.next()? {
        steps += 1;
        if steps == 1 {
            after_first = ember::gpu_calls::snapshot();
        }
        if !json {
            let _ = write!(out, "{}", step.text);
            let _ = out.flush();
        }
    }
    let calls = stats.then(|| GpuCallsPerToken {
        prompt_token: after_prefill.per_token(&at_start, prefilled),
        decode_token: ember::gpu_calls::snapshot().per_token(&after_first, steps.saturating_sub(1)),
    });
    let stats = engine.stats();
    if json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            prompt_ids: &'a [u32],
            ids: &'a [u32],
            text: &'a str,
            prefill_tok_s: f64,
            decode_tok_s: f64,
            backend: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            prefill_tokens: Option<usize>,
            #[serde(skip_serializing_if = "Option::is_none")]
            decode_tokens: Option<usize>,
            #[serde(skip_serializing_if = "Option::is_none")]
            load_s: Option<f64>,
            /// With `--json-schema`: seconds spent on the grammar's token masks (in the steps' times).
            #[serde(skip_serializing_if = "Option::is_none")]
            mask_s: Option<f64>,
            /// On the CPU: the integer kernels this CPU runs (AVX2, SSE2, NEON) and the threads.
            #[serde(skip_serializing_if = "Option::is_none")]
            cpu_kernels: Option<&'static str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            threads: Option<usize>,
            /// With `--stats` on wgpu: its calls per prompt token and per decoded token.
            #[serde(skip_serializing_if = "Option::is_none")]
            gpu_calls: Option<GpuCallsPerToken>,
            /// With `--stats` on wgpu: the adapter it ran on.
            #[serde(skip_serializing_if = "Option::is_none")]
            adapter: Option<&'static str>,
        }
        let cpu = backend == Backend::Cpu;
        let line = serde_json::to_string(&Out {
            prompt_ids: &start.prompt_ids,
            ids: engine.produced(),
            text: engine.text(),
            prefill_tok_s: stats.prefill_tok_s(),
            decode_tok_s: stats.decode_tok_s(),
            backend: backend.name(),
            prefill_tokens: load_s.map(|_| stats.prefill_tokens),
            decode_tokens: load_s.map(|_| stats.decode_tokens),
            load_s,
            mask_s: constrained.then_some(stats.mask_s),
            cpu_kernels: cpu.then(|| ember::model::qmatrix::Isa::best().name()),
            threads: cpu.then(ember::model::pool::threads),
            gpu_calls: calls,
            adapter: calls.and(ember::backend::wgpu_adapter()),
        })
        .map_err(|e| Fail::Run(e.to_string()))?;
        println!("{line}");
    } else {
        println!();
        eprintln!("{}", stats_line(stats));
        if let Some(c) = calls {
            eprintln!("[wgpu adapter: {}]", ember::backend::wgpu_adapter().unwrap_or("unknown"));
            eprintln!("[wgpu calls per prompt token: {}; per decoded token: {}]", calls_line(c.prompt_token), calls_line(c.decode_token));
        }
    }
    Ok(())
}

/// wgpu's calls per token (`--stats`), as `bench/latest.json`'s `counters` hold them.
#[derive(serde::Serialize, Clone, Copy)]
struct GpuCallsPerToken {
    prompt_token: Option<ember::gpu_calls::GpuCalls>,
    decode_token: Option<ember::gpu_calls::GpuCalls>,
}

fn calls_line(c: Option<ember::gpu_calls::GpuCalls>) -> String {
    c.map_or("none".into(), |c| {
        format!(
            "{} dispatches, {} submits, {} bind groups, {} writes, {} readbacks of {} bytes",
            c.dispatches, c.submits, c.bind_groups, c.writes, c.readbacks, c.readback_bytes
        )
    })
}

fn stats_line(s: &Stats) -> String {
    format!("[prefill {} tokens at {:.1} tok/s, decode {} tokens at {:.1} tok/s]", s.prefill_tokens, s.prefill_tok_s(), s.decode_tokens, s.decode_tok_s())
}

fn cmd_chat(mut args: Args) -> Result<(), Fail> {
    let path = model_path(&mut args)?;
    let system = args.value("--system")?;
    let sampling = sampling(&mut args, SamplingConfig::default())?;
    let max_tokens = args.parsed("--max-tokens")?.unwrap_or(512);
    let backend = backend(&mut args)?;
    eprintln!("loading {} on {}...", path.display(), backend.name());
    let mut engine = load(&mut args, &path, backend)?;
    let info = engine.info();
    eprintln!(
        "{} ({:.0}M parameters). Ctrl-C stops an answer; Ctrl-D or /exit quits; /reset starts over.",
        info.name.as_deref().unwrap_or("model"),
        info.n_params as f64 / 1e6
    );
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).map_err(|e| Fail::Run(e.to_string()))?;
    }
    let fresh = || system.iter().map(|s| Message::new("system", s)).collect::<Vec<_>>();
    let mut messages = fresh();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    loop {
        print!("\n> ");
        let _ = out.flush();
        let mut line = String::new();
        interrupted.store(false, Ordering::SeqCst);
        if stdin.lock().read_line(&mut line).map_err(|e| Fail::Run(e.to_string()))? == 0 {
            println!();
            return Ok(());
        }
        let line = line.trim_end_matches(['\n', '\r']);
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => return Ok(()),
            "/reset" => {
                messages = fresh();
                engine.reset();
                eprintln!("(new conversation)");
                continue;
            }
            _ => {}
        }
        messages.push(Message::new("user", line));
        let options =
            GenerateOptions { sampling: sampling.clone(), max_tokens, stop: Vec::new(), top_n: 0, ignore_eos: false, stop_repeats: true, grammar: None };
        if let Err(e) = engine.start(&Prompt::Chat(messages.clone()), options) {
            eprintln!("error: {e}");
            messages.pop();
            continue;
        }
        loop {
            if interrupted.swap(false, Ordering::SeqCst) {
                engine.stop();
                print!(" [stopped]");
                break;
            }
            match engine.next() {
                Ok(Some(step)) => {
                    print!("{}", step.text);
                    let _ = out.flush();
                }
                Ok(None) => break,
                Err(e) => {
                    eprintln!("\nerror: {e}");
                    break;
                }
            }
        }
        println!();
        eprintln!("{}", stats_line(engine.stats()));
        messages.push(Message::new("assistant", engine.text()));
    }
}

fn cmd_tokenize(mut args: Args) -> Result<(), Fail> {
    let path = model_path(&mut args)?;
    let text = args.value("--text")?.ok_or_else(|| Fail::Usage("tokenize needs --text".into()))?;
    let json = args.flag("--json");
    args.finish()?;
    // Only the tokenizer is needed: no weights are loaded.
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| Fail::Run(format!("{}: {e}", p.display())));
    let tokenizer = if path.is_dir() {
        let files = ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]
            .iter()
            .filter(|n| path.join(n).exists())
            .map(|n| Ok((n.to_string(), read(&path.join(n))?)))
            .collect::<Result<Vec<_>, Fail>>()?;
        ember::Tokenizer::from_hf(&ember::hf::HfFolder::new(files))?
    } else {
        // The header only: the tensors are not read.
        let gguf = ember::gguf::Gguf::read(Box::new(ember::gguf::FileSource::open(path.as_ref())?))?;
        ember::Tokenizer::from_gguf(&gguf.metadata)?
    };
    let ids = tokenizer.encode(&text)?;
    if json {
        println!("{}", serde_json::json!({ "ids": ids }));
    } else {
        let strs: Vec<String> = ids.iter().map(|&i| format!("{i}:{:?}", tokenizer.decode(&[i]).unwrap_or_default())).collect();
        println!("{}", strs.join(" "));
    }
    Ok(())
}

fn cmd_info(mut args: Args) -> Result<(), Fail> {
    let path = model_path(&mut args)?;
    let json = args.flag("--json");
    let engine = load(&mut args, &path, Backend::Cpu)?;
    let info = engine.info();
    if json {
        println!("{}", serde_json::to_string(info).map_err(|e| Fail::Run(e.to_string()))?);
    } else {
        let c = &info.config;
        println!("name           {}", info.name.as_deref().unwrap_or("-"));
        println!("architecture   {} ({})", info.architecture, info.format);
        println!("parameters     {} ({:.1}M)", info.n_params, info.n_params as f64 / 1e6);
        println!("layers         {}", c.n_layer);
        println!("heads          {} query, {} key/value", c.n_head, c.n_kv_head);
        println!("width          {} (FFN {})", c.d_model, c.d_ff);
        println!("vocabulary     {}", c.vocab_size);
        println!("context        {} (cache {})", c.context_length, info.max_context);
        println!("chat template  {}", if info.has_chat_template { "yes" } else { "no (a base model: completion mode)" });
        println!("file           {} bytes, {:?}", info.file_size, info.tensor_types);
        println!("licence        {}", info.license.as_deref().unwrap_or("-"));
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut items: Vec<String> = std::env::args().skip(1).collect();
    if items.is_empty() || items.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return if items.is_empty() { ExitCode::from(2) } else { ExitCode::SUCCESS };
    }
    let cmd = items.remove(0);
    let args = Args { items };
    let result = match cmd.as_str() {
        "generate" => cmd_generate(args),
        "chat" => cmd_chat(args),
        "tokenize" => cmd_tokenize(args),
        "info" => cmd_info(args),
        other => Err(Fail::Usage(format!("unknown command `{other}`"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Usage(m)) => {
            eprintln!("ember: {m}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Fail::Run(m)) => {
            eprintln!("ember: error: {m}");
            ExitCode::from(1)
        }
    }
}
