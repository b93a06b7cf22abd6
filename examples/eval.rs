//! Chooses the app's default sampling settings by measurement: runs a model through the native
//! engine on `eval/questions.json` (facts, arithmetic, short instructions, a refusal, corrections;
//! each with its known answer) under each candidate setting, and reports accuracy and loop rate.
//!
//!     cargo run --example eval -- [model.gguf] [--runs N] [--json out.json]
//!
//! A setting that samples is run `--runs` times (seeds 1..=N; 2 by default); greedy ones once.
//! "Loops" counts answers whose tokens ended in a repeated stretch at any point (the engine's
//! [`ember::engine::repeating`] rule), whether or not the setting stops on it; "cut" counts
//! answers that reached the token cap. The README's table is this program's output.

use std::path::PathBuf;

use ember::engine::{load_file, repeating, StopReason};
use ember::{Backend, GenerateOptions, LoadOptions, Message, Prompt, SamplingConfig};
use serde::Deserialize;

#[derive(Deserialize)]
struct Question {
    kind: String,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    turns: Option<Vec<Message>>,
    expect: Vec<String>,
    #[serde(default)]
    only: bool,
}

#[derive(Deserialize)]
struct Questions {
    questions: Vec<Question>,
}

/// A candidate: its name, the sampler, the token cap, and whether the loop guard stops answers.
struct Candidate {
    name: &'static str,
    sampling: SamplingConfig,
    max_tokens: usize,
    stop_repeats: bool,
}

fn candidates() -> Vec<Candidate> {
    let sampled = |t: f32, rp: f32| SamplingConfig { temperature: t, top_k: 40, top_p: 0.9, min_p: 0.05, repeat_penalty: rp, repeat_window: 64, seed: 0 };
    let greedy = |rp: f32| SamplingConfig { repeat_penalty: rp, ..SamplingConfig::greedy() };
    vec![
        Candidate { name: "old defaults: T 0.2, top-p 0.9, no penalty, cap 512", sampling: sampled(0.2, 1.0), max_tokens: 512, stop_repeats: false },
        Candidate { name: "T 0.7, no penalty", sampling: sampled(0.7, 1.0), max_tokens: 512, stop_repeats: false },
        Candidate { name: "greedy", sampling: greedy(1.0), max_tokens: 512, stop_repeats: false },
        Candidate { name: "greedy, penalty 1.1", sampling: greedy(1.1), max_tokens: 512, stop_repeats: false },
        Candidate { name: "T 0.2, penalty 1.1", sampling: sampled(0.2, 1.1), max_tokens: 512, stop_repeats: false },
        Candidate { name: "greedy, penalty 1.1, loop guard", sampling: greedy(1.1), max_tokens: 512, stop_repeats: true },
    ]
}

/// Whether `answer` holds `phrase` as whole words (case-insensitive).
fn has_words(answer: &str, phrase: &str) -> bool {
    let (a, p) = (answer.to_lowercase(), phrase.to_lowercase());
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    a.match_indices(&p).any(|(i, _)| !word(a[..i].chars().last()) && !word(a[i + p.len()..].chars().next()))
}

fn right(q: &Question, answer: &str) -> bool {
    if q.only {
        let bare: String = answer.chars().filter(|c| c.is_alphanumeric() || c.is_whitespace()).collect();
        return q.expect.iter().any(|e| bare.trim().eq_ignore_ascii_case(e));
    }
    q.expect.iter().any(|e| has_words(answer, e))
}

#[derive(Default)]
struct Tally {
    answers: usize,
    right: usize,
    loops: usize,
    cut: usize,
    tokens: usize,
    by_kind: std::collections::BTreeMap<String, (usize, usize)>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let (mut runs, mut json_out) = (2u64, None::<PathBuf>);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().ok_or("--runs N")?.parse()?,
            "--json" => json_out = Some(args.next().ok_or("--json FILE")?.into()),
            _ => model = a.into(),
        }
    }
    let qs: Questions = serde_json::from_str(&std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("eval/questions.json"))?)?;
    let mut engine = load_file(&model, Backend::Cpu, LoadOptions::default())?;
    eprintln!("{}: {} questions", model.display(), qs.questions.len());
    let mut rows = Vec::new();
    for c in candidates() {
        let seeds: Vec<u64> = if c.sampling.temperature == 0.0 { vec![0] } else { (1..=runs).collect() };
        let mut t = Tally::default();
        for &seed in &seeds {
            for q in &qs.questions {
                let messages = q.turns.clone().unwrap_or_else(|| vec![Message::new("user", q.q.as_deref().unwrap_or_default())]);
                let options = GenerateOptions {
                    sampling: SamplingConfig { seed, ..c.sampling.clone() },
                    max_tokens: c.max_tokens,
                    stop_repeats: c.stop_repeats,
                    ..GenerateOptions::default()
                };
                let (mut looped, mut reason) = (false, None);
                engine.reset();
                engine.generate(&Prompt::Chat(messages), options, |step| {
                    reason = step.done.or(reason);
                })?;
                // Loops, whether or not the setting stopped on one: any prefix of the answer.
                let produced = engine.produced();
                for n in 1..=produced.len() {
                    looped |= repeating(&produced[..n]);
                }
                let ok = right(q, engine.text());
                t.answers += 1;
                t.right += usize::from(ok);
                t.loops += usize::from(looped);
                t.cut += usize::from(reason == Some(StopReason::MaxTokens));
                t.tokens += produced.len();
                let k = t.by_kind.entry(q.kind.clone()).or_default();
                k.0 += usize::from(ok);
                k.1 += 1;
            }
        }
        let pct = |n: usize| 100.0 * n as f64 / t.answers as f64;
        let kinds: Vec<String> = t.by_kind.iter().map(|(k, (r, n))| format!("{k} {r}/{n}")).collect();
        eprintln!(
            "{}: right {:.0}%, loops {:.0}%, cut {:.0}%, {:.0} tokens an answer ({})",
            c.name,
            pct(t.right),
            pct(t.loops),
            pct(t.cut),
            t.tokens as f64 / t.answers as f64,
            kinds.join(", ")
        );
        rows.push(serde_json::json!({
            "setting": c.name, "runs": seeds.len(), "answers": t.answers, "right": t.right, "loops": t.loops, "cut": t.cut,
            "tokens_per_answer": t.tokens as f64 / t.answers as f64,
            "by_kind": t.by_kind.iter().map(|(k, (r, n))| (k.clone(), serde_json::json!([r, n]))).collect::<serde_json::Map<_, _>>(),
        }));
    }
    println!("| setting | runs | right | loops | cut at the cap | tokens an answer |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        let n = r["answers"].as_f64().unwrap_or(1.0);
        let pct = |k: &str| 100.0 * r[k].as_f64().unwrap_or(0.0) / n;
        println!(
            "| {} | {} | {:.0} % | {:.0} % | {:.0} % | {:.0} |",
            r["setting"].as_str().unwrap_or(""),
            r["runs"],
            pct("right"),
            pct("loops"),
            pct("cut"),
            r["tokens_per_answer"].as_f64().unwrap_or(0.0)
        );
    }
    if let Some(path) = json_out {
        std::fs::write(path, serde_json::to_string_pretty(&serde_json::json!({ "model": model.display().to_string(), "rows": rows }))? + "\n")?;
    }
    Ok(())
}
