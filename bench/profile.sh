#!/usr/bin/env bash
# Where the CPU path's time goes: `perf record` of the native CLI on the reference model, once
# decoding (a 12-token prompt, 128 greedy tokens) and once prefilling (a 133-token prompt, one
# token), and the functions that take the most samples in each. bench/PROFILE.md holds the
# summaries this printed before and after the quantised CPU kernels.
#
# Usage: bench/profile.sh [path/to/ember] [cpu|wgpu]   (default: the dev-profile build on the
# CPU; needs Debian's linux-perf, and kernel.perf_event_paranoid <= 2). With wgpu the GPU is
# Mesa's lavapipe here, so the profile shows the CPU side of each kernel launch; decoding is
# shorter (32 tokens), since lavapipe takes about a second a token.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/env.sh
bin="${1:-}"
backend="${2:-cpu}"
if [ -z "$bin" ]; then
  cargo build --locked --bin ember >&2
  bin="$CARGO_TARGET_DIR/debug/ember"
fi
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$model" ] || models/fetch.sh >&2
long="$(printf 'The quick brown fox jumps over the lazy dog. %.0s' $(seq 12))"
out="$(mktemp -d)"
run() { # name, prompt, max tokens
  perf record -q -g -o "$out/$1.data" "$bin" generate --model "$model" --backend "$backend" --temperature 0 \
    --ignore-eos --json --prompt "$2" --max-tokens "$3" 2>/dev/null | tail -1 > "$out/$1.json"
  echo "## $1 ($(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"prefill {d['prefill_tok_s']:.1f} tok/s, decode {d['decode_tok_s']:.1f} tok/s\")" "$out/$1.json"))"
  echo
  echo '```'
  perf report -i "$out/$1.data" --no-children --stdio --percent-limit 1.5 2>/dev/null \
    | grep -E '^ +[0-9.]+%' | sed -E 's/ +\[\.\] / /; s/ +/ /g' | cut -c1-120
  echo '```'
  echo
}
if [ "$backend" = cpu ]; then n=128; else n=32; fi
run decode "The quick brown fox jumps over the lazy dog." "$n"
run prefill "$long" 1
rm -rf "$out"
