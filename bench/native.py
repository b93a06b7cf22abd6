"""The native benchmark: the `ember` command line (CPU and wgpu) against llama.cpp
through llama-cpp-python, on the same GGUF file and prompt as bench/browser.mjs. Each subject
loads once, runs one unmeasured warm-up generation, then `--runs` measured ones from an empty
cache: prefill of the prompt, then a fixed number of greedy tokens past end-of-sequence.

Figures are each engine's own: Ember's `--json` stats, llama.cpp's `llama_perf_context` counters
(the ones llama-cli prints). `ember-cli-structured` measures structured output on the CPU: the
JSON-schema mask per drawn token against the decode step it is part of. Adds a "native" section to bench/latest.json and writes
bench/results/native-<time>.json.

    bench/.venv/bin/python bench/native.py [--runs 5] [--n-predict 128] [--ember PATH]
        [--model FILE --out bench/latest-X.json]   (another file of models/, its own results file)
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import statistics
import subprocess
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"  # --model replaces it


def prompt():
    """The browser benchmark's prompt, read from bench/browser.mjs so that the two never differ."""
    src = (ROOT / "bench" / "browser.mjs").read_text()
    body = re.search(r"const PROMPT = (.*?);\n", src, re.S).group(1)
    return "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', body))


def stats(xs):
    xs = sorted(x for x in xs if x is not None)
    return {"median": statistics.median(xs), "min": xs[0], "max": xs[-1], "n": len(xs)} if xs else None


def ember(exe, backend, text, runs, n, threads=1):
    cmd = [str(exe), "generate", "--model", str(MODEL), "--prompt", text, "--max-tokens", str(n), "--temperature", "0",
           "--ignore-eos", "--json", "--backend", backend, "--repeat", str(runs + 1), "--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    lines = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    measured = lines[1:]  # the first is the warm-up (it also compiles the GPU kernels)
    return {
        "prefill_tok_s": stats([l["prefill_tok_s"] for l in measured]),
        "decode_tok_s": stats([l["decode_tok_s"] for l in measured]),
        "load_s": stats([lines[0]["load_s"]]),
        "prompt_tokens": measured[0]["prefill_tokens"],
        "decode_tokens": measured[0]["decode_tokens"],
        "runs": len(measured),
        **({"threads": lines[0]["threads"], "cpu_kernels": lines[0]["cpu_kernels"]} if "threads" in lines[0] else {}),
    }


def llama_cpp_run(threads, text, runs, n):
    import llama_cpp
    import numpy as np

    t0 = time.perf_counter()
    llm = llama_cpp.Llama(model_path=str(MODEL), n_ctx=1024, n_threads=threads, n_threads_batch=threads, verbose=False)
    load_s = time.perf_counter() - t0
    tokens = llm.tokenize(text.encode(), add_bos=False, special=False)
    ctx = llm._ctx.ctx
    n_vocab = llm.n_vocab()

    def generate(count):
        llm.reset()
        llama_cpp.llama_perf_context_reset(ctx)
        llm.eval(tokens)  # the prompt, in llama.cpp's batches
        for _ in range(count):
            # Greedy on the last position's logits; end-of-sequence is not special here.
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
            tok = int(np.argmax(logits))
            llm.eval([tok])
        p = llama_cpp.llama_perf_context(ctx)
        return p.n_p_eval / (p.t_p_eval_ms / 1000), p.n_eval / (p.t_eval_ms / 1000), p.n_p_eval, p.n_eval

    generate(4)  # warm-up
    measured = [generate(n) for _ in range(runs)]
    return {
        "prefill_tok_s": stats([m[0] for m in measured]),
        "decode_tok_s": stats([m[1] for m in measured]),
        "load_s": stats([load_s]),
        "prompt_tokens": measured[0][2],
        "decode_tokens": measured[0][3],
        "runs": len(measured),
        "threads": threads,
        "version": llama_cpp.__version__,
        "system_info": llama_cpp.llama_print_system_info().decode().strip(),  # its CPU features
    }


def structured(exe, runs):
    """Structured output's cost on the CPU: the grammar's mask per drawn token against the decode
    step it is part of, for each schema of tests/fixtures/json-schemas.json (its first prompt)."""
    fx = json.loads((ROOT / "tests" / "fixtures" / "json-schemas.json").read_text())
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, schema in fx["schemas"].items():
            path = pathlib.Path(tmp) / f"{name}.json"
            path.write_text(json.dumps(schema))
            cmd = [str(exe), "generate", "--model", str(MODEL), "--prompt", f"Answer in JSON ({name}): {fx['prompts'][0]}", "--max-tokens", "64",
                   "--temperature", "0", "--json", "--backend", "cpu", "--repeat", str(runs + 1), "--json-schema", str(path)]
            lines = [json.loads(l) for l in subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines() if l.startswith("{")][1:]
            # One mask per drawn token: after the prompt, and after each decoded token.
            mask_ms = [1000 * l["mask_s"] / (l["decode_tokens"] + 1) for l in lines]
            step_ms = [1000 / l["decode_tok_s"] for l in lines if l["decode_tok_s"] > 0]
            out[name] = {"mask_ms_per_token": stats(mask_ms), "decode_step_ms": stats(step_ms), "tokens": lines[0]["decode_tokens"] + 1, "threads": lines[0].get("threads"),
                         "mask_fraction_of_step": statistics.median(mask_ms) / statistics.median(step_ms)}
    return out


def wgpu_counters(exe, text):
    """wgpu's calls per prompt token and per decoded token (`--stats`: counts, the same every run)."""
    cmd = [str(exe), "generate", "--model", str(MODEL), "--prompt", text, "--max-tokens", "16", "--temperature", "0",
           "--ignore-eos", "--json", "--stats", "--backend", "wgpu"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])["gpu_calls"]


def main():
    global MODEL
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--n-predict", type=int, default=128)
    ap.add_argument("--ember", default=os.environ.get("EMBER_BIN", "/var/cache/ember/target/release/ember"))
    ap.add_argument("--model", default="SmolLM2-135M-Instruct.Q4_1.gguf", help="a file of models/")
    ap.add_argument("--out", default="bench/latest.json")
    ap.add_argument("--only", default="ember-cli-cpu,ember-cli-cpu-2t,ember-cli-wgpu,llama.cpp-1t,llama.cpp-2t,ember-cli-structured")
    a, _ = ap.parse_known_args()  # bench/run passes the browser half's options too
    MODEL = ROOT / "models" / a.model
    text = prompt()
    results = {}
    for which in a.only.split(","):
        print(f"== {which}: {a.runs} runs, {a.n_predict} tokens each", flush=True)
        try:
            if which == "ember-cli-structured":  # JSON-schema output: the grammar's mask per token
                results[which] = structured(a.ember, a.runs)
            elif which == "ember-cli-cpu-2t":  # the CPU products' rows on two threads (--threads 2)
                results[which] = ember(a.ember, "cpu", text, a.runs, a.n_predict, threads=2)
            elif which.startswith("ember-cli-"):
                results[which] = ember(a.ember, which.removeprefix("ember-cli-"), text, a.runs, a.n_predict)
            else:
                results[which] = llama_cpp_run(int(which.removeprefix("llama.cpp-").rstrip("t")), text, a.runs, a.n_predict)
        except Exception as e:  # one subject failing must not lose the others' figures
            results[which] = {"error": str(e)}
        print(f"   {json.dumps(results[which])}", flush=True)

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    machine = f"{cpu}, {os.cpu_count()} cores; {platform.system()} {platform.release()}; ember wgpu natively on Vulkan (lavapipe: the CPU, not a GPU)"
    date = datetime.datetime.now(datetime.timezone.utc).isoformat()
    # bench/run measures the dev-profile build the tests use (Ember's crate, where the CPU kernels
    # are, at opt-level 3 with debug assertions; dependencies at 2: Cargo.toml), labelled so.
    profile = "release" if "/release/" in a.ember else "dev profile (Ember's crate at opt-level 3 with debug assertions, dependencies at 2)"
    native = {"machine": machine, "model": MODEL.name, "date": date, "ember_build": profile,
              "settings": {"runs": a.runs, "n_predict": a.n_predict, "prompt_chars": len(text)}, "runs": results}
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"native-{date.replace(':', '-').replace('.', '-')}.json").write_text(json.dumps(native, indent=1) + "\n")
    latest_path = ROOT / a.out
    latest = json.loads(latest_path.read_text()) if latest_path.exists() else {"machine": machine, "model": str(MODEL.name), "runs": {}}
    # Structured output has its own section, so that measuring it alone keeps the speed rows.
    if "ember-cli-structured" in results:
        latest["structured"] = {"date": date, "ember_build": profile, "runs": a.runs, "schemas": results.pop("ember-cli-structured")}
    if results:
        latest["native"] = native
    if "ember-cli-wgpu" in a.only.split(","):
        try:
            latest.setdefault("counters", {})["wgpu-native"] = wgpu_counters(a.ember, text)
        except Exception as e:
            latest.setdefault("counters", {})["wgpu-native"] = {"error": str(e)}
        print(f"wgpu calls per token (native): {json.dumps(latest['counters']['wgpu-native'])}", flush=True)
    latest_path.write_text(json.dumps(latest, indent=1) + "\n")

    f = lambda s: f"{s['median']:.1f} ({s['min']:.1f}–{s['max']:.1f})" if s else "—"
    print(f"\n{machine}\nember build: {profile}\nsubject          prefill tok/s          decode tok/s")
    for k, r in results.items():
        print(f"{k:16} {'failed: ' + r['error'] if 'error' in r else f(r['prefill_tok_s']).ljust(22) + ' ' + f(r['decode_tok_s'])}")
    print("\nratios (Ember ÷ llama.cpp, medians):")
    for e, l in (("ember-cli-cpu", "llama.cpp-1t"), ("ember-cli-cpu-2t", "llama.cpp-2t"), ("ember-cli-wgpu", "llama.cpp-1t")):
        if "error" in results.get(e, {"error": 1}) or "error" in results.get(l, {"error": 1}):
            continue
        pe, pl = results[e], results[l]
        print(f"  {e} / {l}: prefill {pe['prefill_tok_s']['median'] / pl['prefill_tok_s']['median']:.3f}, "
              f"decode {pe['decode_tok_s']['median'] / pl['decode_tok_s']['median']:.3f}")

if __name__ == "__main__":
    main()
